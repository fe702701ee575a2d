//! Forward tests: every op against a plain f64 implementation written from Caffe's
//! formulas (in these files, independent of the optimised code), plus hand-computed cases.

pub(crate) mod conv;
mod deconv;
mod elementwise;
pub(crate) mod heads;
pub(crate) mod inner_product;
pub(crate) mod lrn;
pub(crate) mod pool;
mod structural;

use crate::ir::{Op, Phase, Tensor};
use crate::ops::ctx::Ctx;
use crate::ops::dispatch;

/// Deterministic values in [−1, 1) (xorshift), so failures reproduce.
pub(crate) fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// A tensor of [`values`].
pub(crate) fn tensor(shape: &[usize], seed: u64) -> Tensor {
    Tensor::from_vec(shape, values(shape.iter().product(), seed)).unwrap()
}

/// Asserts `|got − want| ≤ tol · max(1, max|want|)` element-wise, with matching lengths.
pub(crate) fn assert_close(got: &[f32], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (*g as f64 - w).abs() <= tol * scale,
            "{what}: element {i}: got {g}, want {w}"
        );
    }
}

/// Runs one op through the public dispatch with `threads` threads and returns its tops,
/// checking that their shapes are the op's own shape rule.
pub(crate) fn run(op: &Op, bottoms: &[&Tensor], blobs: &[Tensor], threads: usize) -> Vec<Tensor> {
    run_phase(op, bottoms, blobs, threads, Phase::Test).0
}

/// [`run`] in a given phase, also returning what the op saved for backward.
pub(crate) fn run_phase(
    op: &Op,
    bottoms: &[&Tensor],
    blobs: &[Tensor],
    threads: usize,
    phase: Phase,
) -> (Vec<Tensor>, Vec<Tensor>) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let mut ctx = Ctx::new(phase, 7, threads);
    let shapes: Vec<Vec<usize>> = bottoms.iter().map(|b| b.shape.clone()).collect();
    let want_shapes = op.output_shapes(&shapes, 1).unwrap();
    let tops = pool.install(|| dispatch::forward(op, bottoms, blobs, 1, &mut ctx).unwrap());
    let got_shapes: Vec<Vec<usize>> = tops.iter().map(|t| t.shape.clone()).collect();
    assert_eq!(got_shapes, want_shapes, "{} top shapes", op.caffe_type());
    (tops, ctx.saved)
}
