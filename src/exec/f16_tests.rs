//! fp16 emulation: hand-derived rounding and overflow cases, and the levi_mini net against
//! real Caffe's layer outputs with mvNCCheck's accuracy criterion.

use super::*;
use crate::exec::compare::{compare_layers, load_oracle_forward};
use crate::ir::{InputSpec, Phase};
use crate::ops::{
    activation::ReluParams, inner_product::InnerProductParams, lrn::LrnParams,
    softmax::SoftmaxParams,
};
use crate::testutil::shared;

/// input [1, n] → fc (1 output, weight w, bias 0) → relu → softmax over 1 value.
fn fc_net(n: usize, w: f32) -> Net {
    let mut fc = Layer::new(
        "fc",
        Op::InnerProduct(InnerProductParams {
            num_output: 1,
            ..InnerProductParams::default()
        }),
        vec!["data".into()],
        vec!["fc".into()],
    );
    fc.blobs = vec![Tensor::full(&[1, n], w), Tensor::zeros(&[1])];
    let relu = Layer::new(
        "relu",
        Op::Relu(ReluParams::default()),
        vec!["fc".into()],
        vec!["relu".into()],
    );
    let prob = Layer::new(
        "prob",
        Op::Softmax(SoftmaxParams::default()),
        vec!["relu".into()],
        vec!["prob".into()],
    );
    Net {
        name: "fc".into(),
        inputs: vec![InputSpec {
            name: "data".into(),
            shape: vec![1, n],
        }],
        layers: vec![fc, relu, prob],
        ..Net::default()
    }
}

fn all_blobs() -> ExecOptions {
    ExecOptions {
        threads: 1,
        keep_all_blobs: true,
        ..ExecOptions::default()
    }
}

#[test]
fn inputs_weights_and_outputs_are_rounded_to_nearest_even() {
    // 2049 is halfway between the fp16 neighbours 2048 and 2050: ties go to even (2048).
    // 0.1 is stored as 1638/16384 = 0.0999755859375.
    let e = F16Engine::with_options(&fc_net(1, 0.1), all_blobs()).unwrap();
    let r = e.run([("data", Tensor::full(&[1, 1], 2049.0))]).unwrap();
    assert!(r.overflows.is_empty());
    // 2048 · 0.0999755859375 = 204.75 exactly, an fp16 value
    assert_eq!(r.outputs.get("fc").unwrap().data, vec![204.75]);
    assert_eq!(r.outputs.get("prob").unwrap().data, vec![1.0]);
    // the f32 engine keeps 2049 · 0.1 (in f32)
    let f = Engine::with_options(&fc_net(1, 0.1), all_blobs()).unwrap();
    let out = f.run([("data", Tensor::full(&[1, 1], 2049.0))]).unwrap();
    assert_eq!(out.get("fc").unwrap().data, vec![2049.0f32 * 0.1f32]);
    // 1.0009765625 = 1 + 2^-10 is representable; 1 + 2^-12 rounds down to 1
    let mut v = [
        1.0f32 + 1.0 / 1024.0,
        1.0 + 1.0 / 4096.0,
        65519.0,
        65520.0,
        -1e-8,
    ];
    round_to_f16(&mut v);
    assert_eq!(v[..3], [1.0 + 1.0 / 1024.0, 1.0, 65504.0]);
    assert!(v[3].is_infinite());
    assert_eq!(v[4], -0.0);
}

#[test]
fn overflow_is_reported_where_it_starts_and_where_it_propagates() {
    // 300 · 256 = 76800 > 65504: the fc output becomes +inf; ReLU passes it on; softmax of
    // inf is NaN (inf − inf).
    let e = F16Engine::with_options(&fc_net(1, 256.0), all_blobs()).unwrap();
    let r = e.run([("data", Tensor::full(&[1, 1], 300.0))]).unwrap();
    let layers: Vec<(&str, bool, usize, usize)> = r
        .overflows
        .iter()
        .map(|o| (o.layer.as_str(), o.introduced, o.infs, o.nans))
        .collect();
    assert_eq!(
        layers,
        [
            ("fc", true, 1, 0),
            ("relu", false, 1, 0),
            ("prob", false, 0, 1)
        ]
    );
    assert_eq!(r.overflows[0].what, OverflowKind::Stored);
    assert!(r.overflows[0]
        .to_string()
        .contains("layer 'fc' (InnerProduct)"));
    // an input beyond fp16 is itself reported
    let r = e.run([("data", Tensor::full(&[1, 1], 70000.0))]).unwrap();
    assert_eq!(r.overflows[0].layer, "data");
    assert_eq!(r.overflows[0].kind, "Input");
}

/// LRN across 5 channels of equal value v: Σx² = 5v². v = 120 → 72000 > 65504 (reported);
/// v = 114 → 64980 (not reported). The stored LRN output stays finite in both cases.
#[test]
fn lrn_sum_of_squares_overflow_is_reported() {
    let lrn = Layer::new(
        "norm1",
        Op::Lrn(LrnParams {
            local_size: 5,
            alpha: 1e-4,
            beta: 0.75,
            ..LrnParams::default()
        }),
        vec!["data".into()],
        vec!["norm1".into()],
    );
    let net = Net {
        name: "lrn".into(),
        inputs: vec![InputSpec {
            name: "data".into(),
            shape: vec![1, 5, 1, 1],
        }],
        layers: vec![lrn],
        ..Net::default()
    };
    let e = F16Engine::with_options(&net, all_blobs()).unwrap();
    let r = e
        .run([("data", Tensor::full(&[1, 5, 1, 1], 120.0))])
        .unwrap();
    assert_eq!(r.overflows.len(), 1);
    let o = &r.overflows[0];
    assert_eq!(
        (o.layer.as_str(), o.what),
        ("norm1", OverflowKind::LrnSumOfSquares)
    );
    assert_eq!(o.max_abs, 72000.0);
    assert!(r
        .outputs
        .get("norm1")
        .unwrap()
        .data
        .iter()
        .all(|v| v.is_finite()));
    let r = e
        .run([("data", Tensor::full(&[1, 5, 1, 1], 114.0))])
        .unwrap();
    assert!(r.overflows.is_empty());
}

/// levi_mini with Caffe's initial weights on the oracle's three mean-subtracted images:
/// every layer of the fp16 emulation is within mvNCCheck's "max error ≤ 2 % of max|ref|"
/// of real Caffe's f32 outputs, and every stored value is an fp16 value.
#[test]
fn levi_mini_stays_within_mvncchecks_tolerance_of_real_caffe() {
    let (Some(proto), Some(model), Some(forward)) = (
        shared("fixtures-real/caffe-oracle/levi_mini/deploy.prototxt"),
        shared("fixtures-real/caffe-oracle/levi_mini/levi_mini_init_iter_0.caffemodel"),
        shared("fixtures-real/caffe-oracle/levi_mini/forward"),
    ) else {
        return;
    };
    let net = crate::caffe::load_net(&proto, Some(&model), Phase::Test).unwrap();
    let reference = load_oracle_forward(&forward).unwrap();
    let e = F16Engine::with_options(
        &net,
        ExecOptions {
            keep_all_blobs: true,
            batch: Some(reference.input.shape[0]),
            threads: 2,
            ..ExecOptions::default()
        },
    )
    .unwrap();
    let input = e.engine().inputs()[0].0.to_string();
    let run = e.run([(input, reference.input.clone())]).unwrap();
    assert!(run.overflows.is_empty(), "{:?}", run.overflows);
    let diffs = compare_layers(e.engine().net(), &run.outputs, &reference, 1.0).unwrap();
    assert_eq!(diffs.len(), 19);
    let mut worst = 0.0f32;
    for d in &diffs {
        let rel = d.max_abs / d.max_ref;
        assert!(
            rel <= 0.02,
            "{}: max error {:.3} % of max|ref|",
            d.layer,
            100.0 * rel
        );
        worst = worst.max(rel);
        let t = run.outputs.get(&d.blob).unwrap();
        let mut r = t.data.clone();
        round_to_f16(&mut r);
        assert_eq!(r, t.data, "{} holds non-fp16 values", d.layer);
    }
    eprintln!(
        "levi_mini fp16 vs Caffe: worst layer max error {:.4} % of max|ref|",
        100.0 * worst
    );
    // fp16 storage does change the numbers (the emulation is not the f32 engine)
    assert!(worst > 1e-4, "worst relative error {worst}");
}
