//! Engine tests: a small net with every kind of step (fused ReLU, in-place layers, recycled
//! memory, per-image and threaded batches) against a chain of the f64 reference ops.

use super::{Engine, ExecError, ExecOptions, LayerHook};
use crate::ir::{InputSpec, Layer, Net, Op, Phase, Tensor};
use crate::ops::activation::ReluParams;
use crate::ops::conv::ConvParams;
use crate::ops::dropout::DropoutParams;
use crate::ops::inner_product::InnerProductParams;
use crate::ops::lrn::LrnParams;
use crate::ops::pool::PoolParams;
use crate::ops::softmax::SoftmaxParams;
use crate::ops::tests::{assert_close, tensor};
use crate::ops::tests::{conv, heads, inner_product, lrn, pool};

fn conv_p() -> ConvParams {
    ConvParams {
        num_output: 4,
        kernel: [3, 3],
        pad: [1, 1],
        ..ConvParams::default()
    }
}
fn pool_p() -> PoolParams {
    PoolParams {
        kernel: [3, 3],
        stride: [2, 2],
        ..PoolParams::default()
    }
}
fn lrn_p() -> LrnParams {
    LrnParams {
        local_size: 3,
        alpha: 0.1,
        ..LrnParams::default()
    }
}
fn ip_p(n: usize) -> InnerProductParams {
    InnerProductParams {
        num_output: n,
        ..InnerProductParams::default()
    }
}

fn layer(name: &str, op: Op, bottom: &str, top: &str, blobs: Vec<Tensor>) -> Layer {
    let mut l = Layer::new(name, op, vec![bottom.into()], vec![top.into()]);
    l.blobs = blobs;
    l
}

/// data → conv → relu → pool → lrn → fc → relu → dropout → fc → softmax.
fn small_net(batch: usize) -> Net {
    let layers = vec![
        layer(
            "conv",
            Op::Convolution(conv_p()),
            "data",
            "conv",
            vec![tensor(&[4, 3, 3, 3], 1), tensor(&[4], 2)],
        ),
        layer(
            "relu",
            Op::Relu(ReluParams::default()),
            "conv",
            "relu",
            vec![],
        ),
        layer("pool", Op::Pooling(pool_p()), "relu", "pool", vec![]),
        layer("norm", Op::Lrn(lrn_p()), "pool", "norm", vec![]),
        layer(
            "fc1",
            Op::InnerProduct(ip_p(6)),
            "norm",
            "fc1",
            vec![tensor(&[6, 64], 3), tensor(&[6], 4)],
        ),
        layer(
            "relu1",
            Op::Relu(ReluParams {
                negative_slope: 0.1,
            }),
            "fc1",
            "relu1",
            vec![],
        ),
        layer(
            "drop",
            Op::Dropout(DropoutParams::default()),
            "relu1",
            "drop",
            vec![],
        ),
        layer(
            "fc2",
            Op::InnerProduct(ip_p(3)),
            "drop",
            "fc2",
            vec![tensor(&[3, 6], 5), tensor(&[3], 6)],
        ),
        layer(
            "prob",
            Op::Softmax(SoftmaxParams::default()),
            "fc2",
            "prob",
            vec![],
        ),
    ];
    Net {
        name: "small".into(),
        inputs: vec![InputSpec {
            name: "data".into(),
            shape: vec![batch, 3, 9, 9],
        }],
        layers,
        ..Net::default()
    }
}

fn to_f32(shape: &[usize], v: Vec<f64>) -> Tensor {
    Tensor::from_vec(shape, v.into_iter().map(|x| x as f32).collect()).unwrap()
}

/// Every blob of [`small_net`] computed with the f64 reference ops, by name.
fn reference(net: &Net, x: &Tensor) -> Vec<(&'static str, Tensor)> {
    let n = x.shape[0];
    let blobs = |name: &str| &net.layer(name).unwrap().blobs;
    let relu = |t: &Tensor, s: f32| Tensor {
        shape: t.shape.clone(),
        data: t
            .data
            .iter()
            .map(|&v| v.max(0.0) + s * v.min(0.0))
            .collect(),
    };
    let c = to_f32(
        &[n, 4, 9, 9],
        conv::naive(&conv_p(), x, &blobs("conv")[0], Some(&blobs("conv")[1])),
    );
    let r = relu(&c, 0.0);
    let p = to_f32(&[n, 4, 4, 4], pool::naive(&pool_p(), &r));
    let l = to_f32(&[n, 4, 4, 4], lrn::naive(&lrn_p(), &p));
    let f1 = to_f32(
        &[n, 6],
        inner_product::naive(&ip_p(6), &l, &blobs("fc1")[0], Some(&blobs("fc1")[1])),
    );
    let r1 = relu(&f1, 0.1);
    let f2 = to_f32(
        &[n, 3],
        inner_product::naive(&ip_p(3), &r1, &blobs("fc2")[0], Some(&blobs("fc2")[1])),
    );
    let prob = to_f32(&[n, 3], heads::naive_softmax(&f2, 1));
    vec![
        ("data", x.clone()),
        ("conv", c),
        ("relu", r.clone()),
        ("pool", p),
        ("norm", l),
        ("fc1", f1),
        ("relu1", r1.clone()),
        ("drop", r1),
        ("fc2", f2),
        ("prob", prob),
    ]
}

fn input(batch: usize) -> Tensor {
    let mut x = tensor(&[batch, 3, 9, 9], 42);
    for v in x.data.iter_mut() {
        *v *= 4.0;
    }
    x
}

fn f64s(t: &Tensor) -> Vec<f64> {
    t.data.iter().map(|&v| v as f64).collect()
}

#[test]
fn outputs_match_reference_on_every_path() {
    for (batch, threads) in [(1, 1), (1, 2), (3, 2), (6, 2), (8, 1)] {
        let net = small_net(1);
        let opts = ExecOptions {
            threads,
            batch: Some(batch),
            ..ExecOptions::default()
        };
        let engine = Engine::with_options(&net, opts).unwrap();
        assert_eq!(engine.output_names(), vec!["prob"]);
        let x = input(batch);
        let want = reference(engine.net(), &x);
        // Twice: the second run reuses the first run's buffers.
        for run in 0..2 {
            let out = engine.run([("data", x.clone())]).unwrap();
            assert_eq!(out.blobs.len(), 1);
            let prob = out.get("prob").unwrap();
            assert_eq!(prob.shape, vec![batch, 3]);
            let w = &want.last().unwrap().1;
            assert_close(
                &prob.data,
                &f64s(w),
                1e-5,
                &format!("batch {batch} threads {threads} run {run}"),
            );
        }
    }
}

#[test]
fn keep_all_blobs_returns_each_layers_own_output() {
    let net = small_net(2);
    let opts = ExecOptions {
        threads: 2,
        keep_all_blobs: true,
        ..ExecOptions::default()
    };
    let engine = Engine::with_options(&net, opts).unwrap();
    let x = input(2);
    let out = engine.run([("data", x.clone())]).unwrap();
    let want = reference(&net, &x);
    let names: Vec<&str> = out.names().collect();
    assert_eq!(names, want.iter().map(|(n, _)| *n).collect::<Vec<_>>());
    for (name, w) in &want {
        let got = out.get(name).unwrap();
        assert_eq!(got.shape, w.shape, "{name}");
        assert_close(&got.data, &f64s(w), 1e-5, name);
    }
    // The convolution's own output keeps its negatives: the ReLU was not fused into it.
    assert!(out.get("conv").unwrap().data.iter().any(|&v| v < 0.0));
}

#[test]
fn timed_run_reports_every_layer_and_fusions() {
    let engine = Engine::with_options(
        &small_net(2),
        ExecOptions {
            threads: 2,
            ..ExecOptions::default()
        },
    )
    .unwrap();
    let (out, timings) = engine.run_timed([("data", input(2))]).unwrap();
    assert!(out.get("prob").is_some());
    let layers: Vec<&str> = timings.iter().map(|t| t.layer.as_str()).collect();
    assert_eq!(
        layers,
        ["conv", "relu", "pool", "norm", "fc1", "relu1", "drop", "fc2", "prob"]
    );
    assert_eq!(timings[1].fused_into.as_deref(), Some("conv"));
    assert_eq!(timings[5].fused_into.as_deref(), Some("fc1"));
    assert!(timings[0].fused_into.is_none());
    // conv: 2 · (2·4·9·9 outputs) · (3·3·3 taps).
    assert_eq!(timings[0].flops, 2 * 2 * 4 * 81 * 27);
}

#[test]
fn input_errors_name_the_input_and_shapes() {
    let engine = Engine::new(&small_net(1)).unwrap();
    let err = engine
        .run([("data", Tensor::zeros(&[1, 3, 8, 9]))])
        .unwrap_err();
    assert_eq!(
        err,
        ExecError::InputShape {
            name: "data".into(),
            expected: vec![1, 3, 9, 9],
            found: vec![1, 3, 8, 9]
        }
    );
    let msg = err.to_string();
    assert!(
        msg.contains("'data'") && msg.contains("[1, 3, 8, 9]") && msg.contains("[1, 3, 9, 9]"),
        "{msg}"
    );
    let none: [(&str, Tensor); 0] = [];
    assert!(
        matches!(engine.run(none), Err(ExecError::MissingInput { name, .. }) if name == "data")
    );
    let err = engine.run([("image", input(1))]).unwrap_err();
    assert!(
        matches!(&err, ExecError::UnknownInput { name, known } if name == "image" && known == "data"),
        "{err}"
    );
    let err = engine
        .run([("data", input(1)), ("data", input(1))])
        .unwrap_err();
    assert_eq!(err, ExecError::DuplicateInput("data".into()));
}

#[test]
fn layer_errors_name_the_layer() {
    let mut net = small_net(1);
    net.layer_mut("fc2").unwrap().blobs.clear();
    let engine = Engine::new(&net).unwrap();
    let err = engine.run([("data", input(1))]).unwrap_err();
    match err {
        ExecError::Layer { layer, kind, msg } => {
            assert_eq!((layer.as_str(), kind.as_str()), ("fc2", "InnerProduct"));
            assert!(msg.contains("missing learned blob 0"), "{msg}");
        }
        other => panic!("unexpected {other:?}"),
    }
    // A shape error is reported when the engine is built.
    let mut bad = small_net(1);
    bad.layer_mut("fc1").unwrap().blobs[0] = tensor(&[6, 63], 1);
    assert!(matches!(Engine::new(&bad), Err(ExecError::Net { .. })));
}

/// Records the layers it sees and zeroes fc2's output.
struct ZeroLogits(Vec<String>);

impl LayerHook for ZeroLogits {
    fn after_layer(&mut self, layer: &Layer, tops: &mut [Tensor]) {
        self.0.push(layer.name.clone());
        if layer.name == "fc2" {
            tops[0].data.fill(0.0);
        }
    }
}

#[test]
fn hooks_see_every_unfused_layer_and_can_rewrite_tops() {
    let engine = Engine::new(&small_net(2)).unwrap();
    let mut hook = ZeroLogits(Vec::new());
    let out = engine
        .run_with_hook([("data", input(2))], &mut hook)
        .unwrap();
    assert_eq!(
        hook.0,
        ["conv", "relu", "pool", "norm", "fc1", "relu1", "drop", "fc2", "prob"]
    );
    // Softmax of equal logits over 3 classes.
    assert!(out
        .get("prob")
        .unwrap()
        .data
        .iter()
        .all(|&p| (p - 1.0 / 3.0).abs() < 1e-7));
}

#[test]
fn train_phase_applies_dropout_with_a_seeded_mask() {
    let net = small_net(4);
    let train = |seed| {
        let opts = ExecOptions {
            phase: Phase::Train,
            seed,
            keep_all_blobs: true,
            ..ExecOptions::default()
        };
        let engine = Engine::with_options(&net, opts).unwrap();
        engine.run([("data", input(4))]).unwrap()
    };
    let (a, b, c) = (train(1), train(1), train(2));
    let (relu1, drop) = (a.get("relu1").unwrap(), a.get("drop").unwrap());
    for (r, d) in relu1.data.iter().zip(&drop.data) {
        assert!(*d == 0.0 || *d == 2.0 * r, "{d} from {r}");
    }
    assert_eq!(a.get("drop"), b.get("drop"));
    assert_ne!(a.get("drop"), c.get("drop"));
}

#[test]
fn plan_fuses_relus_runs_dropout_in_place_and_recycles_dead_blobs() {
    use super::plan::{build, Action};
    let net = small_net(1);
    let names = [
        "data", "conv", "relu", "pool", "norm", "fc1", "relu1", "drop", "fc2", "prob",
    ];
    let slot: std::collections::HashMap<String, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.to_string(), i))
        .collect();
    let mut keep = vec![false; names.len()];
    keep[9] = true; // prob, the output
    let plan = build(&net, &slot, &keep, true);
    let actions: Vec<Action> = plan.steps.iter().map(|s| s.action).collect();
    let run = |relu| Action::Run { fused_relu: relu };
    assert_eq!(
        actions,
        [
            run(Some(0.0)),
            Action::FusedAway { into: 0 },
            run(None),
            run(None),
            run(Some(0.1)),
            Action::FusedAway { into: 4 },
            Action::InPlace,
            run(None),
            run(None),
        ]
    );
    // Each computing step frees its (dead) bottom; renaming steps free nothing.
    let released: Vec<Vec<usize>> = plan.steps.iter().map(|s| s.release.clone()).collect();
    assert_eq!(
        released,
        [
            vec![0],
            vec![],
            vec![2],
            vec![3],
            vec![4],
            vec![],
            vec![],
            vec![7],
            vec![8]
        ]
    );

    // Without fusion the ReLUs run in place; keeping every blob disables both.
    let plan = build(&net, &slot, &keep, false);
    assert_eq!(plan.steps[1].action, Action::InPlace);
    let plan = build(&net, &slot, &[true; 10], true);
    assert!(plan
        .steps
        .iter()
        .all(|s| s.action == run(None) && s.release.is_empty()));
}

#[test]
fn absurd_shapes_are_refused_before_allocating() {
    let net = Net {
        name: "huge".into(),
        inputs: vec![InputSpec {
            name: "data".into(),
            shape: vec![1 << 20, 3, 1 << 12, 1 << 12],
        }],
        layers: vec![layer(
            "relu",
            Op::Relu(ReluParams::default()),
            "data",
            "relu",
            vec![],
        )],
        ..Net::default()
    };
    match Engine::new(&net) {
        Err(ExecError::TooLarge { blob, .. }) => assert_eq!(blob, "data"),
        Err(other) => panic!("unexpected {other}"),
        Ok(_) => panic!("accepted a 2^46-value input"),
    }
}
