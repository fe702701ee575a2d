use super::{assert_close, run, tensor};
use crate::ir::{Op, Tensor};
use crate::ops::conv::ConvParams;
use crate::ops::ctx::Ctx;
use crate::ops::dispatch;

/// Caffe's convolution as a direct sum: for output channel m in group g,
/// `y = b_m + Σ_{c,i,j} w[m][c][i][j] · x[g·C/G + c][y·s − p + i·d][x·s − p + j·d]`,
/// taps outside the image reading zero. With `pad_end`, the output size is ONNX's
/// `(H + p_begin + p_end − extent) / s + 1` (the end padding only adds output rows).
pub(crate) fn naive(p: &ConvParams, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Vec<f64> {
    let (n, c, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let end = p.pad_end.unwrap_or(p.pad);
    let oh = (h + p.pad[0] + end[0] - (p.dilation[0] * (p.kernel[0] - 1) + 1)) / p.stride[0] + 1;
    let ow = (wd + p.pad[1] + end[1] - (p.dilation[1] * (p.kernel[1] - 1) + 1)) / p.stride[1] + 1;
    let (m_total, c_g, m_g) = (p.num_output, c / p.group, p.num_output / p.group);
    let mut out = Vec::with_capacity(n * m_total * oh * ow);
    for img in 0..n {
        for m in 0..m_total {
            let g = m / m_g;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut sum = b.map_or(0.0, |b| b.data[m] as f64);
                    for cc in 0..c_g {
                        for i in 0..p.kernel[0] {
                            for j in 0..p.kernel[1] {
                                let iy =
                                    (oy * p.stride[0] + i * p.dilation[0]) as i64 - p.pad[0] as i64;
                                let ix =
                                    (ox * p.stride[1] + j * p.dilation[1]) as i64 - p.pad[1] as i64;
                                if iy < 0 || ix < 0 || iy >= h as i64 || ix >= wd as i64 {
                                    continue;
                                }
                                let xv = x.data[((img * c + g * c_g + cc) * h + iy as usize) * wd
                                    + ix as usize];
                                let wv =
                                    w.data[((m * c_g + cc) * p.kernel[0] + i) * p.kernel[1] + j];
                                sum += xv as f64 * wv as f64;
                            }
                        }
                    }
                    out.push(sum);
                }
            }
        }
    }
    out
}

pub(crate) fn params(
    num_output: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    pad: [usize; 2],
    dilation: [usize; 2],
    group: usize,
    bias: bool,
) -> ConvParams {
    ConvParams {
        num_output,
        kernel,
        stride,
        pad,
        dilation,
        group,
        bias_term: bias,
        ..ConvParams::default()
    }
}

fn check(p: ConvParams, input: [usize; 4], seed: u64) {
    let x = tensor(&input, seed);
    let blobs_shapes = p.weight_shapes(&[input.to_vec()]);
    let blobs: Vec<Tensor> = blobs_shapes
        .iter()
        .enumerate()
        .map(|(i, s)| tensor(s, seed + 10 + i as u64))
        .collect();
    let want = naive(&p, &x, &blobs[0], blobs.get(1));
    for threads in [1, 2] {
        let got = run(&Op::Convolution(p.clone()), &[&x], &blobs, threads);
        assert_close(
            &got[0].data,
            &want,
            1e-5,
            &format!("{p:?} {input:?} threads {threads}"),
        );
    }
}

#[test]
fn plain_strided_like_alexnet_conv1() {
    check(
        params(8, [7, 7], [4, 4], [0, 0], [1, 1], 1, true),
        [2, 3, 31, 29],
        1,
    );
}

/// TensorFlow SAME with stride 2 on an even input pads one pixel at the end only
/// (`total = (⌈H/s⌉ − 1)·s + k − H = 1`); the ONNX-style end pad gives ⌈H/s⌉ outputs.
#[test]
fn asymmetric_tensorflow_same_padding() {
    let mut p = params(5, [3, 3], [2, 2], [0, 0], [1, 1], 1, true);
    p.pad_end = Some([1, 1]);
    check(p.clone(), [2, 3, 10, 8], 21);
    assert_eq!(
        p.output_shapes(&[vec![2, 3, 10, 8]]).unwrap()[0],
        vec![2, 5, 5, 4]
    );
    // begin > end, unequal axes, dilation 2
    let mut q = params(4, [3, 2], [1, 2], [3, 1], [2, 1], 1, false);
    q.pad_end = Some([1, 2]);
    check(q, [1, 2, 9, 7], 22);
}

/// Caffe has one pad per axis: `to_symmetric` rewrites an asymmetric padding as the larger
/// pad on both sides with zero taps added on the short side, and the result must still be
/// the direct sum of the asymmetric convolution.
#[test]
fn symmetric_equivalent_of_asymmetric_padding_is_exact() {
    for (kernel, stride, pad, end, dilation, input) in [
        ([3, 3], [2, 2], [0, 0], [1, 1], [1, 1], [1, 4, 10, 8]),
        ([3, 3], [1, 2], [2, 0], [0, 1], [1, 1], [2, 2, 7, 9]),
        ([3, 2], [2, 1], [0, 3], [2, 1], [2, 2], [1, 2, 11, 8]),
    ] {
        let mut p = params(4, kernel, stride, pad, dilation, 2, true);
        p.pad_end = Some(end);
        let x = tensor(&input, 30);
        let blobs: Vec<Tensor> = p
            .weight_shapes(&[input.to_vec()])
            .iter()
            .enumerate()
            .map(|(i, s)| tensor(s, 31 + i as u64))
            .collect();
        let want = naive(&p, &x, &blobs[0], blobs.get(1));
        let (q, qb) = p.to_symmetric(&blobs).unwrap();
        assert!(q.is_symmetric() && q.pad_end.is_none());
        assert_eq!(qb[0].shape, q.weight_shapes(&[input.to_vec()])[0]);
        let got = run(&Op::Convolution(q.clone()), &[&x], &qb, 1);
        assert_close(&got[0].data, &want, 1e-5, &format!("{p:?} → {q:?}"));
    }
    // a difference that is not a multiple of the dilation has no zero-tap form
    let mut p = params(1, [3, 3], [1, 1], [0, 0], [2, 2], 1, false);
    p.pad_end = Some([1, 0]);
    assert!(p.to_symmetric(&[]).is_none());
}

#[test]
fn padded_same_size() {
    check(
        params(6, [5, 5], [1, 1], [2, 2], [1, 1], 1, true),
        [1, 4, 9, 11],
        2,
    );
}

#[test]
fn grouped() {
    check(
        params(6, [3, 3], [1, 1], [1, 1], [1, 1], 2, true),
        [3, 4, 8, 8],
        3,
    );
    check(
        params(4, [3, 3], [2, 2], [1, 1], [1, 1], 4, false),
        [1, 4, 7, 7],
        4,
    );
}

#[test]
fn dilated_and_rectangular() {
    check(
        params(5, [3, 2], [1, 2], [2, 1], [2, 3], 1, true),
        [2, 3, 10, 12],
        5,
    );
}

#[test]
fn stride_larger_than_kernel() {
    check(
        params(3, [2, 2], [3, 3], [1, 1], [1, 1], 1, true),
        [2, 2, 10, 10],
        6,
    );
}

#[test]
fn one_by_one_skips_im2col() {
    check(
        params(7, [1, 1], [1, 1], [0, 0], [1, 1], 1, true),
        [3, 5, 6, 4],
        7,
    );
    check(
        params(6, [1, 1], [1, 1], [0, 0], [1, 1], 3, false),
        [2, 6, 3, 3],
        8,
    );
}

#[test]
fn batches_on_the_per_image_parallel_path() {
    // 8 images on 2 threads take the one-image-per-task path; 3 take the threaded-GEMM one.
    check(
        params(4, [3, 3], [1, 1], [1, 1], [1, 1], 1, true),
        [8, 3, 12, 12],
        9,
    );
    check(
        params(4, [3, 3], [1, 1], [1, 1], [1, 1], 1, true),
        [3, 3, 12, 12],
        10,
    );
}

#[test]
fn fused_relu_equals_relu_of_naive() {
    let p = params(4, [3, 3], [1, 1], [1, 1], [1, 1], 1, true);
    let x = tensor(&[2, 3, 6, 6], 11);
    let w = tensor(&[4, 3, 3, 3], 12);
    let b = tensor(&[4], 13);
    let slope = 0.1;
    let want: Vec<f64> = naive(&p, &x, &w, Some(&b))
        .into_iter()
        .map(|v| if v > 0.0 { v } else { slope * v })
        .collect();
    let mut ctx = Ctx::default();
    let got = dispatch::forward_fused(
        &Op::Convolution(p),
        &[&x],
        &[w, b],
        1,
        &mut ctx,
        Some(slope as f32),
    )
    .unwrap();
    assert_close(&got[0].data, &want, 1e-5, "conv + leaky relu");
}

#[test]
fn missing_or_short_weights_are_errors() {
    let p = params(4, [3, 3], [1, 1], [0, 0], [1, 1], 1, true);
    let x = tensor(&[1, 2, 5, 5], 1);
    let mut ctx = Ctx::default();
    let op = Op::Convolution(p);
    let err = dispatch::forward(&op, &[&x], &[], 1, &mut ctx).unwrap_err();
    assert!(err.0.contains("missing learned blob 0"), "{err}");
    let err = dispatch::forward(&op, &[&x], &[tensor(&[4, 2, 3, 3], 1)], 1, &mut ctx).unwrap_err();
    assert!(err.0.contains("blob 1 (bias)"), "{err}");
    let err = dispatch::forward(
        &op,
        &[&x],
        &[tensor(&[4, 2, 3, 2], 1), tensor(&[4], 1)],
        1,
        &mut ctx,
    )
    .unwrap_err();
    assert!(err.0.contains("expected 72"), "{err}");
}

#[test]
fn single_images_split_rows_or_columns_over_threads() {
    // More output channels than positions: the output channels are split (24 + 16 rows).
    check(
        params(40, [3, 3], [1, 1], [1, 1], [1, 1], 1, true),
        [1, 3, 4, 4],
        14,
    );
    // More positions than channels: the positions are split (64 + 35 columns), per group.
    check(
        params(6, [3, 3], [1, 1], [1, 1], [1, 1], 2, true),
        [1, 4, 9, 11],
        15,
    );
}
