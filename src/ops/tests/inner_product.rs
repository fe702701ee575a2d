use super::{assert_close, run, tensor};
use crate::ir::{Op, Tensor};
use crate::ops::ctx::Ctx;
use crate::ops::dispatch;
use crate::ops::inner_product::InnerProductParams;

/// `y[m][n] = b[n] + Σ_k x[m][k] · W[n][k]` (W stored `[K, N]` when transposed).
pub(crate) fn naive(
    p: &InnerProductParams,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
) -> Vec<f64> {
    let (m, k) = p.m_k(&x.shape).unwrap();
    let n = p.num_output;
    let mut y = Vec::with_capacity(m * n);
    for i in 0..m {
        for j in 0..n {
            let mut s = b.map_or(0.0, |b| b.data[j] as f64);
            for q in 0..k {
                let wv = if p.transpose {
                    w.data[q * n + j]
                } else {
                    w.data[j * k + q]
                };
                s += x.data[i * k + q] as f64 * wv as f64;
            }
            y.push(s);
        }
    }
    y
}

fn check(p: InnerProductParams, shape: &[usize], seed: u64) {
    let x = tensor(shape, seed);
    let blobs: Vec<Tensor> = p
        .weight_shapes(&[shape.to_vec()])
        .iter()
        .enumerate()
        .map(|(i, s)| tensor(s, seed + 1 + i as u64))
        .collect();
    let want = naive(&p, &x, &blobs[0], blobs.get(1));
    for threads in [1, 2] {
        let got = run(&Op::InnerProduct(p.clone()), &[&x], &blobs, threads);
        assert_close(&got[0].data, &want, 1e-5, &format!("{p:?} {shape:?}"));
    }
}

fn ip(n: usize, bias: bool, axis: i32, transpose: bool) -> InnerProductParams {
    InnerProductParams {
        num_output: n,
        bias_term: bias,
        axis,
        transpose,
        ..InnerProductParams::default()
    }
}

#[test]
fn single_rows_use_the_matrix_vector_path() {
    check(ip(37, true, 1, false), &[1, 3, 7, 5], 1);
    check(ip(40, true, 1, false), &[4, 301], 2);
}

#[test]
fn batches_use_gemm() {
    check(ip(19, true, 1, false), &[9, 4, 3, 3], 3);
    check(ip(5, false, 1, false), &[6, 50], 4);
}

#[test]
fn transposed_weights() {
    check(ip(11, true, 1, true), &[1, 23], 5);
    check(ip(11, true, 1, true), &[7, 23], 6);
}

#[test]
fn axis_two_keeps_leading_dims() {
    check(ip(3, true, 2, false), &[2, 3, 4, 5], 7);
    check(ip(3, true, -1, false), &[2, 3, 4], 8);
}

#[test]
fn fused_relu() {
    let p = ip(13, true, 1, false);
    let x = tensor(&[5, 17], 9);
    let w = tensor(&[13, 17], 10);
    let b = tensor(&[13], 11);
    let want: Vec<f64> = naive(&p, &x, &w, Some(&b))
        .into_iter()
        .map(|v| v.max(0.0))
        .collect();
    let mut ctx = Ctx::default();
    let got = dispatch::forward_fused(&Op::InnerProduct(p), &[&x], &[w, b], 1, &mut ctx, Some(0.0))
        .unwrap();
    assert_close(&got[0].data, &want, 1e-5, "ip + relu");
}
