//! The real Caffe models in `../shared/fixtures-real` (lenet, cifar10_full, MTCNN det3 with
//! OpenCV goldens; levi_mini with real BVLC Caffe's per-layer dump) through ONNX:
//! 1. the ONNX export run by tract, and
//! 2. that ONNX re-imported and run by the native engine
//!
//! both match the references on every layer within 1e-4 × max(1, max|ref|). The ONNX
//! export is also checked by onnxruntime (tools/check_onnx.py) when Python has it, and the
//! round trip Caffe → IR → ONNX → IR gives the same net (Dropout removed, fillers and
//! training settings not carried).

use agegender::caffe::load_net;
use agegender::exec::compare::{
    compare_layers, load_golden_case, load_oracle_forward, run_and_compare, LayerDiff, Reference,
};
use agegender::exec::Outputs;
use agegender::ir::{Net, Op, Phase};
use agegender::onnx::tract_engine::TractModel;
use agegender::onnx::{self, ImportOptions};
use agegender::testutil::shared;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const REL_TOL: f32 = 1e-4;

fn assert_pass(what: &str, diffs: &[LayerDiff], expected: usize) {
    assert_eq!(diffs.len(), expected, "{what}: layers compared");
    for d in diffs {
        eprintln!(
            "{what} {:<10} max_abs {:.3e} (tol {:.3e})",
            d.layer, d.max_abs, d.tolerance
        );
    }
    let failed: Vec<_> = diffs.iter().filter(|d| !d.passed).collect();
    assert!(failed.is_empty(), "{what}: {failed:#?}");
}

/// The net with its input batch set to the reference's.
fn with_batch(mut net: Net, batch: usize) -> Net {
    net.inputs[0].shape[0] = batch;
    net
}

/// Runs the ONNX export in tract, every IR blob exposed (aliases of removed Dropout tops
/// read the tensor they alias), and compares every reference layer.
fn tract_diffs(net: &Net, reference: &Reference) -> Vec<LayerDiff> {
    let (model, map) = onnx::export_with_blob_map(net).unwrap();
    let input = net.inputs[0].name.clone();
    let mut extra: Vec<String> = map.values().filter(|t| **t != input).cloned().collect();
    extra.sort();
    extra.dedup();
    let shapes = HashMap::from([(input.clone(), reference.input.shape.clone())]);
    let tract = TractModel::from_proto(&model, None, &shapes, &extra).unwrap();
    let got: HashMap<String, _> = tract
        .run(std::slice::from_ref(&reference.input))
        .unwrap()
        .into_iter()
        .collect();
    let outputs = Outputs {
        blobs: map
            .iter()
            .filter_map(|(blob, t)| got.get(t).map(|v| (blob.clone(), v.clone())))
            .collect(),
    };
    compare_layers(net, &outputs, reference, REL_TOL).unwrap()
}

/// What a net looks like after a trip through ONNX: no Dropout layers (their consumers
/// read the bottom), no fillers, parameter specs, loss weights or phases.
fn as_onnx_carries_it(net: &Net) -> Net {
    let mut out = net.clone();
    let mut alias: HashMap<String, String> = HashMap::new();
    out.layers.retain(|l| {
        if matches!(l.op, Op::Dropout(_)) && !net.outputs().contains(&l.tops[0]) {
            alias.insert(l.tops[0].clone(), l.bottoms[0].clone());
            false
        } else {
            true
        }
    });
    for l in &mut out.layers {
        for b in &mut l.bottoms {
            while let Some(a) = alias.get(b.as_str()) {
                *b = a.clone();
            }
        }
        l.params.clear();
        l.loss_weight.clear();
        l.phase = None;
        match &mut l.op {
            Op::Convolution(p) => {
                p.weight_filler = Default::default();
                p.bias_filler = Default::default();
            }
            Op::InnerProduct(p) => {
                p.weight_filler = Default::default();
                p.bias_filler = Default::default();
            }
            Op::PRelu(p) => p.filler = agegender::ops::activation::PReluParams::default().filler,
            _ => {}
        }
    }
    out
}

fn check_round_trip(net: &Net, back: &Net) {
    let want = as_onnx_carries_it(net);
    let shapes = want.infer_shapes().unwrap();
    assert_eq!(want.inputs, back.inputs);
    assert_eq!(want.name, back.name);
    let names = |n: &Net| n.layers.iter().map(|l| l.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&want), names(back));
    for (a, b) in want.layers.iter().zip(&back.layers) {
        assert_eq!(a.op, b.op, "{}", a.name);
        assert_eq!(
            (&a.bottoms, &a.tops, &a.caffe_tops),
            (&b.bottoms, &b.tops, &b.caffe_tops),
            "{}",
            a.name
        );
        let bottoms: Vec<Vec<usize>> = a.bottoms.iter().map(|x| shapes[x].clone()).collect();
        let expected = a.op.weight_shapes(&bottoms);
        assert_eq!(a.blobs.len(), b.blobs.len(), "{}", a.name);
        for ((x, y), shape) in a.blobs.iter().zip(&b.blobs).zip(&expected) {
            assert_eq!(x.data, y.data, "{}: weights", a.name);
            assert_eq!(&y.shape, shape, "{}: weight shape", a.name);
        }
    }
}

/// Exports `net`, checks the ONNX with onnxruntime against the reference's outputs
/// (written as .npy into a temporary fixture folder) when Python has onnx + onnxruntime.
fn onnxruntime_check(case: &str, net: &Net, reference: &Reference) {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import onnx, onnxruntime"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("SKIP: python3 with onnx and onnxruntime is not available; {case} was not checked by onnxruntime");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.onnx");
    onnx::write_onnx(net, &model).unwrap();
    let fixture = dir.path().join("fixture");
    std::fs::create_dir(&fixture).unwrap();
    let input = &net.inputs[0].name;
    agegender::io::npy::write_npy(&fixture.join(format!("in_{input}.npy")), &reference.input)
        .unwrap();
    for (layer, t) in &reference.layers {
        // Outputs of layers whose top keeps the layer's name (the intermediate tensors
        // onnxruntime can expose); in-place layers are compared by the Rust tests.
        if net
            .layer(layer)
            .is_some_and(|l| l.tops[0] == *layer && !matches!(l.op, Op::Dropout(_)))
        {
            agegender::io::npy::write_npy(&fixture.join(format!("out_{layer}.npy")), t).unwrap();
        }
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/check_onnx.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(&model)
        .arg(&fixture)
        .output()
        .unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        out.status.success(),
        "{case}: onnxruntime disagrees: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn through_onnx(case: &str, net: Net, reference: &Reference) {
    let n = reference.layers.len();
    let net = with_batch(net, reference.input.shape[0]);
    // 1. The export, run by tract.
    assert_pass(&format!("{case} [tract]"), &tract_diffs(&net, reference), n);
    // 2. Re-imported, run natively. Dropout layers vanish in ONNX; their reference entries
    // are checked against the blob they alias, which the next layer reads.
    let model = onnx::export(&net).unwrap();
    let back = onnx::import_model(&model, None, &ImportOptions::default()).unwrap();
    check_round_trip(&net, &back);
    let dropped: Vec<&str> = net
        .layers
        .iter()
        .filter(|l| back.layer(&l.name).is_none())
        .map(|l| {
            assert!(
                matches!(l.op, Op::Dropout(_)),
                "{case}: {} vanished",
                l.name
            );
            l.name.as_str()
        })
        .collect();
    let kept = Reference {
        layers: reference
            .layers
            .iter()
            .filter(|(l, _)| !dropped.contains(&l.as_str()))
            .cloned()
            .collect(),
        ..reference.clone()
    };
    let diffs = run_and_compare(&back, &kept, REL_TOL, 2).unwrap();
    assert_pass(
        &format!("{case} [onnx → native]"),
        &diffs,
        kept.layers.len(),
    );
    onnxruntime_check(case, &net, reference);
}

fn golden(case: &str, proto_override: Option<&str>) {
    let Some(golden) = shared("fixtures-real/caffe/golden.json") else {
        return;
    };
    let root: serde_json::Value = serde_json::from_slice(&std::fs::read(&golden).unwrap()).unwrap();
    let entry = root["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == case)
        .unwrap()
        .clone();
    let dir = golden.parent().unwrap();
    let proto: PathBuf =
        dir.join(proto_override.unwrap_or_else(|| entry["prototxt"].as_str().unwrap()));
    let weights = dir.join(entry["caffemodel"].as_str().unwrap());
    let net = load_net(&proto, Some(&weights), Phase::Test).unwrap();
    let reference = load_golden_case(&golden, case).unwrap();
    through_onnx(case, net, &reference);
}

#[test]
fn lenet_through_onnx_matches_opencv() {
    golden("lenet_rendered_digits", None);
}

#[test]
fn cifar10_full_ave_pool_and_within_channel_lrn_through_onnx_match_opencv() {
    golden("cifar10_full_utkface_face", None);
}

#[test]
fn mtcnn_det3_prelu_dropout_and_three_outputs_through_onnx_match_opencv() {
    golden("mtcnn_det3_utkface_face", None);
}

#[test]
fn levi_mini_through_onnx_matches_real_caffe() {
    let Some(root) = shared("fixtures-real/caffe-oracle/levi_mini") else {
        return;
    };
    for proto in ["deploy.prototxt", "deploy_v1.prototxt"] {
        let net = load_net(
            &root.join(proto),
            Some(&root.join("levi_mini_init_iter_0.caffemodel")),
            Phase::Test,
        )
        .unwrap();
        let reference = load_oracle_forward(&root.join("forward")).unwrap();
        through_onnx(&format!("levi_mini {proto}"), net, &reference);
    }
}
