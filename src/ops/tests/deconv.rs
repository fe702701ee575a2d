//! Deconvolution against direct loops written from its scatter definition (Caffe
//! `DeconvolutionLayer`, ONNX ConvTranspose): input pixel `i` of channel `c` adds
//! `w[c][o][k] · x[c][i]` to output pixel `s·i − p + d·k` of each output channel `o` of its
//! group, per axis; positions outside the output (the cropped padding) are dropped.

use super::{assert_close, run, tensor};
use crate::ir::{Op, Tensor};
use crate::ops::conv::ConvParams;
use crate::ops::ctx::Ctx;
use crate::ops::deconv::DeconvParams;
use crate::ops::dispatch;

/// `(output size, output position of input i and tap k)` along one axis, or `None` when
/// the tap lands in the cropped padding.
fn tap(p: &ConvParams, axis: usize, input: usize, i: usize, k: usize) -> (usize, Option<usize>) {
    let full = p.stride[axis] * (input - 1) + p.dilation[axis] * (p.kernel[axis] - 1) + 1;
    let size = full - 2 * p.pad[axis];
    let at = (p.stride[axis] * i + p.dilation[axis] * k) as i64 - p.pad[axis] as i64;
    (
        size,
        (at >= 0 && (at as usize) < size).then_some(at as usize),
    )
}

/// Visits every (image, c, o, ky, kx, input y, input x, output y, output x) the scatter
/// touches, with the flat indices of x, w and y.
fn scatter(p: &ConvParams, xs: &[usize], mut f: impl FnMut(usize, usize, usize)) -> Vec<usize> {
    let (n, c, h, w) = (xs[0], xs[1], xs[2], xs[3]);
    let (oh, ow) = (tap(p, 0, h, 0, 0).0, tap(p, 1, w, 0, 0).0);
    let (c_g, o_g) = (c / p.group, p.num_output / p.group);
    for img in 0..n {
        for ci in 0..c {
            let g = ci / c_g;
            for oo in 0..o_g {
                let o = g * o_g + oo;
                for ky in 0..p.kernel[0] {
                    for kx in 0..p.kernel[1] {
                        let wi = ((ci * o_g + oo) * p.kernel[0] + ky) * p.kernel[1] + kx;
                        for iy in 0..h {
                            let Some(y) = tap(p, 0, h, iy, ky).1 else {
                                continue;
                            };
                            for ix in 0..w {
                                let Some(x) = tap(p, 1, w, ix, kx).1 else {
                                    continue;
                                };
                                let xi = ((img * c + ci) * h + iy) * w + ix;
                                let yi = ((img * p.num_output + o) * oh + y) * ow + x;
                                f(xi, wi, yi);
                            }
                        }
                    }
                }
            }
        }
    }
    vec![n, p.num_output, oh, ow]
}

/// The forward as a direct scatter in f64, plus the bias.
pub(crate) fn naive(p: &ConvParams, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Vec<f64> {
    let mut y = Vec::new();
    let shape = scatter(p, &x.shape, |_, _, _| {});
    y.resize(shape.iter().product(), 0.0f64);
    scatter(p, &x.shape, |xi, wi, yi| {
        y[yi] += x.data[xi] as f64 * w.data[wi] as f64
    });
    if let Some(b) = b {
        let plane = shape[2] * shape[3];
        for (k, v) in y.iter_mut().enumerate() {
            *v += b.data[(k / plane) % p.num_output] as f64;
        }
    }
    y
}

/// A deconvolution with the convolution tests' parameter order.
fn params(
    num_output: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    pad: [usize; 2],
    dilation: [usize; 2],
    group: usize,
    bias: bool,
) -> DeconvParams {
    DeconvParams(super::conv::params(
        num_output, kernel, stride, pad, dilation, group, bias,
    ))
}

fn check(p: DeconvParams, input: [usize; 4], seed: u64) {
    let x = tensor(&input, seed);
    let blobs: Vec<Tensor> = p
        .weight_shapes(&[input.to_vec()])
        .iter()
        .enumerate()
        .map(|(i, s)| tensor(s, seed + 10 + i as u64))
        .collect();
    let want = naive(&p.0, &x, &blobs[0], blobs.get(1));
    for threads in [1, 2] {
        let got = run(&Op::Deconvolution(p.clone()), &[&x], &blobs, threads);
        assert_close(
            &got[0].data,
            &want,
            1e-5,
            &format!("{p:?} {input:?} threads {threads}"),
        );
    }
}

#[test]
fn output_size_is_caffes_deconvolution_rule() {
    // s·(H − 1) + d·(k − 1) + 1 − 2p: 15 → 31 for TF's VALID 3×3 stride 2 (matpalm's
    // first deconvolution), 4 → 8 for FCN's 4×4 stride 2 pad 1 upsampling.
    let p = params(1, [3, 3], [2, 2], [0, 0], [1, 1], 1, true);
    assert_eq!(p.out_dim(15, 0).unwrap(), 31);
    let p = params(1, [4, 4], [2, 2], [1, 1], [1, 1], 1, true);
    assert_eq!(p.out_dim(4, 1).unwrap(), 8);
    let p = params(1, [3, 2], [1, 3], [0, 0], [2, 1], 1, true);
    assert_eq!(
        p.output_shapes(&[vec![2, 3, 5, 4]]).unwrap(),
        vec![vec![2, 1, 9, 11]]
    );
    assert_eq!(
        p.weight_shapes(&[vec![2, 3, 5, 4]]),
        vec![vec![3, 1, 3, 2], vec![1]]
    );
    // A padding that leaves nothing is an error, not an underflow.
    let p = params(1, [1, 1], [1, 1], [1, 1], [1, 1], 1, true);
    assert!(p.out_dim(1, 0).unwrap_err().0.contains("padding 1"));
    let p = params(3, [3, 3], [1, 1], [0, 0], [1, 1], 2, true);
    assert!(p.output_shapes(&[vec![1, 4, 3, 3]]).is_err());
}

#[test]
fn strided_padded_and_grouped() {
    check(
        params(3, [3, 3], [2, 2], [1, 1], [1, 1], 1, true),
        [2, 4, 5, 6],
        1,
    );
    check(
        params(4, [3, 3], [2, 2], [1, 1], [1, 1], 2, true),
        [1, 4, 5, 5],
        2,
    );
    check(
        params(6, [4, 4], [2, 2], [1, 1], [1, 1], 3, false),
        [2, 3, 4, 3],
        3,
    );
}

#[test]
fn valid_stride_two_like_tensorflow_conv2d_transpose() {
    check(
        params(5, [3, 3], [2, 2], [0, 0], [1, 1], 1, true),
        [1, 6, 7, 7],
        4,
    );
}

#[test]
fn dilated_rectangular_and_one_by_one() {
    check(
        params(2, [3, 2], [1, 3], [1, 0], [2, 1], 1, true),
        [2, 3, 5, 4],
        5,
    );
    check(
        params(3, [1, 1], [1, 1], [0, 0], [1, 1], 1, true),
        [2, 4, 3, 5],
        6,
    );
    // stride larger than the kernel leaves gaps that only the bias fills
    check(
        params(2, [2, 2], [3, 3], [0, 0], [1, 1], 1, true),
        [1, 2, 3, 3],
        7,
    );
}

#[test]
fn batches_on_the_per_image_parallel_path() {
    check(
        params(3, [3, 3], [2, 2], [1, 1], [1, 1], 1, true),
        [8, 2, 6, 6],
        8,
    );
}

/// The backward as direct loops over the same scatter: `dx[xi] += w[wi]·dy[yi]`,
/// `dw[wi] += x[xi]·dy[yi]`, `db[o] += Σ dy[o]`.
#[test]
fn backward_equals_the_scatters_adjoint() {
    for (p, xs, threads) in [
        (
            params(4, [3, 3], [2, 2], [1, 1], [1, 1], 2, true),
            [2, 4, 5, 4],
            1,
        ),
        (
            params(3, [3, 2], [2, 1], [0, 1], [1, 2], 1, true),
            [8, 2, 4, 5],
            2,
        ),
        (
            params(2, [1, 1], [1, 1], [0, 0], [1, 1], 1, false),
            [3, 3, 3, 3],
            2,
        ),
    ] {
        let x = tensor(&xs, 21);
        let shapes = p.weight_shapes(&[xs.to_vec()]);
        let blobs: Vec<Tensor> = shapes.iter().map(|s| tensor(s, 22)).collect();
        let ys = p.output_shapes(&[xs.to_vec()]).unwrap().remove(0);
        let dy = tensor(&ys, 23);
        let (mut dx, mut dw) = (vec![0.0f64; x.len()], vec![0.0f64; blobs[0].len()]);
        scatter(&p.0, &xs, |xi, wi, yi| {
            dx[xi] += blobs[0].data[wi] as f64 * dy.data[yi] as f64;
            dw[wi] += x.data[xi] as f64 * dy.data[yi] as f64;
        });
        let plane = ys[2] * ys[3];
        let mut db = vec![0.0f64; p.0.num_output];
        for (k, v) in dy.data.iter().enumerate() {
            db[(k / plane) % p.0.num_output] += *v as f64;
        }
        let mut diffs: Vec<Tensor> = shapes.iter().map(|s| Tensor::zeros(s)).collect();
        let got = p
            .backward(&x, &dy, &blobs, &mut diffs, true, threads)
            .unwrap()
            .unwrap();
        let what = format!("{p:?} {xs:?}");
        assert_close(&got.data, &dx, 1e-5, &format!("dx {what}"));
        assert_close(&diffs[0].data, &dw, 1e-5, &format!("dw {what}"));
        if p.0.bias_term {
            assert_close(&diffs[1].data, &db, 1e-5, &format!("db {what}"));
        }
    }
}

#[test]
fn missing_or_short_weights_and_wrong_diffs_are_errors() {
    let p = params(4, [3, 3], [2, 2], [0, 0], [1, 1], 1, true);
    let x = tensor(&[1, 2, 3, 3], 1);
    let mut ctx = Ctx::default();
    let op = Op::Deconvolution(p.clone());
    let err = dispatch::forward(&op, &[&x], &[], 1, &mut ctx).unwrap_err();
    assert!(err.0.contains("missing learned blob 0"), "{err}");
    // Caffe's blob is C_in × C_out × kh × kw = 2·4·9 = 72 values.
    let err = dispatch::forward(&op, &[&x], &[tensor(&[2, 4, 3, 2], 1)], 1, &mut ctx).unwrap_err();
    assert!(err.0.contains("expected 72"), "{err}");
    let err = dispatch::forward(&op, &[&x], &[tensor(&[2, 4, 3, 3], 1)], 1, &mut ctx).unwrap_err();
    assert!(err.0.contains("blob 1 (bias)"), "{err}");
    let blobs = [tensor(&[2, 4, 3, 3], 1), tensor(&[4], 2)];
    let err = p
        .backward(&x, &tensor(&[1, 4, 6, 6], 3), &blobs, &mut [], true, 1)
        .unwrap_err();
    assert!(
        err.0.contains("does not match the output [1, 4, 7, 7]"),
        "{err}"
    );
    let mut short = [Tensor::zeros(&[3])];
    let err = p
        .backward(&x, &tensor(&[1, 4, 7, 7], 3), &blobs, &mut short, false, 1)
        .unwrap_err();
    assert!(err.0.contains("weight diff has the wrong size"), "{err}");
}
