//! The weight-free layers (ReLU, MAX/AVE pooling, both LRN regions, Dropout in TEST,
//! Softmax) fed with real intermediate blobs and checked against the next blob as real
//! Caffe (`caffe-oracle/levi_mini/forward`, pycaffe layer by layer) and OpenCV's Caffe
//! importer (`caffe/golden.json`) computed it. Layers with weights need the Caffe loader;
//! `agegender::exec::compare::run_and_compare` covers them once a net is loaded.

use agegender::exec::compare::{load_golden_case, load_oracle_forward, Reference};
use agegender::ir::{Op, Tensor};
use agegender::ops::activation::ReluParams;
use agegender::ops::ctx::Ctx;
use agegender::ops::dispatch;
use agegender::ops::dropout::DropoutParams;
use agegender::ops::lrn::{LrnParams, NormRegion};
use agegender::ops::pool::{PoolMethod, PoolParams};
use agegender::ops::softmax::SoftmaxParams;
use agegender::testutil::shared;

fn blob<'a>(r: &'a Reference, layer: &str) -> &'a Tensor {
    &r.layers
        .iter()
        .find(|(n, _)| n == layer)
        .unwrap_or_else(|| panic!("reference has no '{layer}'"))
        .1
}

/// Runs `op` on reference blob `from` and compares with reference blob `to`, with the
/// project's tolerance `tol · max(1, max|ref|)`.
fn check(r: &Reference, op: Op, from: &str, to: &str, tol: f32) {
    let x = blob(r, from);
    let want = blob(r, to);
    let mut ctx = Ctx::new(agegender::ir::Phase::Test, 0, 2);
    let got = dispatch::forward(&op, &[x], &[], 1, &mut ctx)
        .unwrap()
        .remove(0);
    assert_eq!(
        got.shape.iter().product::<usize>(),
        want.len(),
        "{from} → {to}: size"
    );
    let limit = tol * want.max_abs().max(1.0);
    let worst = got
        .data
        .iter()
        .zip(&want.data)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        worst <= limit,
        "{from} → {to}: max |diff| {worst} > {limit}"
    );
}

fn relu() -> Op {
    Op::Relu(ReluParams::default())
}

fn pool(method: PoolMethod, k: usize, s: usize) -> Op {
    Op::Pooling(PoolParams {
        method,
        kernel: [k, k],
        stride: [s, s],
        ..PoolParams::default()
    })
}

fn lrn(region: NormRegion, n: usize, alpha: f32) -> Op {
    Op::Lrn(LrnParams {
        local_size: n,
        alpha,
        beta: 0.75,
        k: 1.0,
        region,
    })
}

fn softmax() -> Op {
    Op::Softmax(SoftmaxParams::default())
}

#[test]
fn levi_mini_against_caffe() {
    let Some(dir) = shared("fixtures-real/caffe-oracle/levi_mini/forward") else {
        return;
    };
    let r = load_oracle_forward(&dir).unwrap();
    assert_eq!(r.input.shape, vec![3, 3, 227, 227]);
    let across = |n| lrn(NormRegion::AcrossChannels, n, 1e-4);
    check(&r, relu(), "conv1", "relu1", 0.0);
    check(&r, pool(PoolMethod::Max, 3, 2), "relu1", "pool1", 0.0);
    check(&r, across(5), "pool1", "norm1", 1e-6);
    check(&r, relu(), "conv2", "relu2", 0.0);
    check(&r, pool(PoolMethod::Max, 3, 2), "relu2", "pool2", 0.0);
    check(&r, across(5), "pool2", "norm2", 1e-6);
    check(&r, relu(), "conv3", "relu3", 0.0);
    check(&r, pool(PoolMethod::Max, 3, 2), "relu3", "pool5", 0.0);
    check(&r, relu(), "fc6", "relu6", 0.0);
    check(
        &r,
        Op::Dropout(DropoutParams::default()),
        "relu6",
        "drop6",
        0.0,
    );
    check(&r, relu(), "fc7", "relu7", 0.0);
    check(
        &r,
        Op::Dropout(DropoutParams::default()),
        "relu7",
        "drop7",
        0.0,
    );
    check(&r, softmax(), "fc8", "prob", 1e-6);
}

#[test]
fn cifar10_full_against_opencv() {
    let Some(golden) = shared("fixtures-real/caffe/golden.json") else {
        return;
    };
    let r = load_golden_case(&golden, "cifar10_full_utkface_face").unwrap();
    let within = lrn(NormRegion::WithinChannel, 3, 5e-5);
    check(&r, pool(PoolMethod::Max, 3, 2), "conv1", "pool1", 0.0);
    check(&r, relu(), "pool1", "relu1", 0.0);
    check(&r, within.clone(), "relu1", "norm1", 1e-5);
    check(&r, relu(), "conv2", "relu2", 0.0);
    // 16 → 8 with ceil rounding: the last AVE window is cut at the border (divisor 2·3).
    check(&r, pool(PoolMethod::Ave, 3, 2), "relu2", "pool2", 1e-5);
    check(&r, within, "pool2", "norm2", 1e-5);
    check(&r, relu(), "conv3", "relu3", 0.0);
    check(&r, pool(PoolMethod::Ave, 3, 2), "relu3", "pool3", 1e-5);
    check(&r, softmax(), "ip1", "prob", 1e-5);
}

#[test]
fn lenet_and_mtcnn_against_opencv() {
    let Some(golden) = shared("fixtures-real/caffe/golden.json") else {
        return;
    };
    let r = load_golden_case(&golden, "lenet_rendered_digits").unwrap();
    assert_eq!(r.input.shape, vec![10, 1, 28, 28]);
    check(&r, pool(PoolMethod::Max, 2, 2), "conv1", "pool1", 0.0);
    check(&r, pool(PoolMethod::Max, 2, 2), "conv2", "pool2", 0.0);
    check(&r, relu(), "ip1", "relu1", 0.0);
    check(&r, softmax(), "ip2", "prob", 1e-5);

    let r = load_golden_case(&golden, "mtcnn_det3_utkface_face").unwrap();
    check(&r, softmax(), "conv6-1", "prob1", 1e-5);
}
