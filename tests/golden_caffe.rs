//! Cross-checks of the Caffe loader + native f32 engine against independent references:
//! OpenCV's per-layer outputs (`fixtures-real/caffe/golden.json`) and real BVLC Caffe's
//! forward dump of `levi_mini` (`fixtures-real/caffe-oracle`). Tolerance: max abs error
//! ≤ 1e-4 × max(1, max|ref|) on every layer.

use agegender::caffe::load_net;
use agegender::exec::compare::{load_golden_case, load_oracle_forward, run_and_compare, LayerDiff};
use agegender::ir::Phase;
use agegender::testutil::shared;

const REL_TOL: f32 = 1e-4;

fn assert_all_pass(case: &str, diffs: &[LayerDiff], expected_layers: usize) {
    assert_eq!(
        diffs.len(),
        expected_layers,
        "{case}: compared {} layers",
        diffs.len()
    );
    for d in diffs {
        eprintln!(
            "{case} {:<10} max_abs {:.3e} (tol {:.3e}, max|ref| {:.3e})",
            d.layer, d.max_abs, d.tolerance, d.max_ref
        );
    }
    let failed: Vec<_> = diffs.iter().filter(|d| !d.passed).collect();
    assert!(
        failed.is_empty(),
        "{case}: layers over tolerance: {failed:#?}"
    );
}

fn golden_case(name: &str, prototxt_override: Option<&str>) {
    let Some(golden) = shared("fixtures-real/caffe/golden.json") else {
        return;
    };
    let root: serde_json::Value = serde_json::from_slice(&std::fs::read(&golden).unwrap()).unwrap();
    let case = root["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap();
    let dir = golden.parent().unwrap();
    let proto = dir.join(prototxt_override.unwrap_or_else(|| case["prototxt"].as_str().unwrap()));
    let weights = dir.join(case["caffemodel"].as_str().unwrap());
    let net = load_net(&proto, Some(&weights), Phase::Test).unwrap();
    let reference = load_golden_case(&golden, name).unwrap();
    let n = reference.layers.len();
    let diffs = run_and_compare(&net, &reference, REL_TOL, 2).unwrap();
    assert_all_pass(&format!("{name} ({})", proto.display()), &diffs, n);
}

#[test]
fn lenet_v1_matches_opencv_on_every_layer() {
    golden_case("lenet_rendered_digits", None);
}

#[test]
fn lenet_current_syntax_matches_opencv_on_every_layer() {
    golden_case(
        "lenet_rendered_digits",
        Some("lenet/lenet_bvlc_v2.prototxt"),
    );
}

#[test]
fn cifar10_full_within_channel_lrn_and_ave_pool_match_opencv() {
    golden_case("cifar10_full_utkface_face", None);
}

#[test]
fn cifar10_full_current_syntax_matches_opencv() {
    golden_case(
        "cifar10_full_utkface_face",
        Some("cifar10_full/cifar10_full_bvlc_v2.prototxt"),
    );
}

#[test]
fn mtcnn_det3_prelu_matches_opencv() {
    golden_case("mtcnn_det3_utkface_face", None);
}

fn levi_mini(prototxt: &str) {
    let Some(root) = shared("fixtures-real/caffe-oracle/levi_mini") else {
        return;
    };
    let net = load_net(
        &root.join(prototxt),
        Some(&root.join("levi_mini_init_iter_0.caffemodel")),
        Phase::Test,
    )
    .unwrap();
    let reference = load_oracle_forward(&root.join("forward")).unwrap();
    let n = reference.layers.len();
    assert!(n >= 19, "the oracle dumps every layer, found {n}");
    let diffs = run_and_compare(&net, &reference, REL_TOL, 2).unwrap();
    assert_all_pass(&format!("levi_mini {prototxt}"), &diffs, n);
}

#[test]
fn levi_mini_matches_real_caffe_on_every_blob() {
    levi_mini("deploy.prototxt");
}

#[test]
fn levi_mini_v1_syntax_matches_real_caffe_on_every_blob() {
    levi_mini("deploy_v1.prototxt");
}
