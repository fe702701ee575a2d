//! Finite-difference checks of every op's backward through the dispatchers, against the
//! engine's own forward: the analytic gradient of `Σ w·top` must equal the central
//! difference of that forward (Caffe's GradientChecker rule, step 1e-2, threshold 1e-3).

use super::*;
use crate::ops::activation::{PReluParams, ReluParams};
use crate::ops::batchnorm::{BatchNormParams, ScaleParams};
use crate::ops::concat::ConcatParams;
use crate::ops::ctx::Ctx;
use crate::ops::dispatch::forward;
use crate::ops::dropout::DropoutParams;
use crate::ops::eltwise::{EltwiseOp, EltwiseParams};
use crate::ops::loss::{Normalization, SoftmaxLossParams};
use crate::ops::reshape::FlattenParams;
use crate::ops::softmax::SoftmaxParams;
use crate::train::gradcheck::{check, uniform};

/// A bottom that is either checked or held fixed (labels).
enum Input {
    Checked(Vec<usize>),
    Fixed(Vec<usize>, Vec<f32>),
}

/// Checks `op` over the given bottoms and learned blobs (blobs are checked when
/// `check_blobs`).
fn grad_check(
    name: &str,
    op: Op,
    bottoms: Vec<Input>,
    blob_shapes: Vec<Vec<usize>>,
    check_blobs: bool,
    phase: Phase,
) {
    let mut checked: Vec<Vec<f32>> = Vec::new();
    let mut fixed: Vec<Option<Vec<f32>>> = Vec::new();
    let mut shapes: Vec<Vec<usize>> = Vec::new();
    for (i, b) in bottoms.iter().enumerate() {
        match b {
            Input::Checked(s) => {
                checked.push(uniform(s.iter().product(), -1.0, 1.0, 100 + i as u64));
                fixed.push(None);
                shapes.push(s.clone());
            }
            Input::Fixed(s, v) => {
                fixed.push(Some(v.clone()));
                shapes.push(s.clone());
            }
        }
    }
    let n_checked_bottoms = checked.len();
    let blob_values: Vec<Vec<f32>> = blob_shapes
        .iter()
        .enumerate()
        .map(|(i, s)| uniform(s.iter().product(), 0.5, 1.5, 200 + i as u64))
        .collect();
    // BatchNorm's factor blob must be positive and the variance non-negative: the
    // uniform(0.5, 1.5) values are.
    if check_blobs {
        checked.extend(blob_values.iter().cloned());
    }
    let assemble = |v: &[Vec<f32>]| -> (Vec<Tensor>, Vec<Tensor>) {
        let mut it = v.iter();
        let bots: Vec<Tensor> = shapes
            .iter()
            .zip(&fixed)
            .map(|(s, f)| {
                let data = match f {
                    Some(d) => d.clone(),
                    None => it.next().unwrap().clone(),
                };
                Tensor::from_vec(s, data).unwrap()
            })
            .collect();
        let blobs: Vec<Tensor> = blob_shapes
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let data = if check_blobs {
                    it.next().unwrap().clone()
                } else {
                    blob_values[i].clone()
                };
                Tensor::from_vec(s, data).unwrap()
            })
            .collect();
        (bots, blobs)
    };
    let run = |v: &[Vec<f32>]| -> (Vec<Tensor>, Vec<Tensor>, Vec<Tensor>, Vec<Tensor>) {
        let (bots, blobs) = assemble(v);
        let refs: Vec<&Tensor> = bots.iter().collect();
        let mut ctx = Ctx::new(phase, 7, 1);
        let tops = forward(&op, &refs, &blobs, 1, &mut ctx).unwrap();
        let saved = std::mem::take(&mut ctx.saved);
        (bots, blobs, tops, saved)
    };
    let (bots, blobs, tops, saved) = run(&checked);
    let top_len: usize = tops.iter().map(Tensor::len).sum();
    let weights = uniform(top_len, -1.0, 1.0, 300);
    let top_diff = Tensor::from_vec(&tops[0].shape, weights.clone()).unwrap();
    let bot_refs: Vec<&Tensor> = bots.iter().collect();
    let top_refs: Vec<&Tensor> = tops.iter().collect();
    let propagate: Vec<bool> = fixed.iter().map(Option::is_none).collect();
    let mut param_diffs: Vec<Tensor> = blob_shapes.iter().map(|s| Tensor::zeros(s)).collect();
    let diffs = backward(
        &BackwardArgs {
            op: &op,
            bottoms: &bot_refs,
            tops: &top_refs,
            top_diffs: &[Some(&top_diff)],
            blobs: &blobs,
            saved: &saved,
            propagate_down: &propagate,
            phase,
            threads: 1,
            buffers: &Default::default(),
        },
        if check_blobs {
            &mut param_diffs
        } else {
            &mut []
        },
    )
    .unwrap();
    let mut analytic: Vec<Vec<f32>> = diffs.into_iter().flatten().map(|d| d.data).collect();
    assert_eq!(
        analytic.len(),
        n_checked_bottoms,
        "{name}: one diff per checked bottom"
    );
    if check_blobs {
        analytic.extend(param_diffs.into_iter().map(|d| d.data));
    }
    let mut fwd =
        |v: &[Vec<f32>]| -> Vec<f32> { run(v).2.into_iter().flat_map(|t| t.data).collect() };
    check(name, &checked, &weights, &analytic, &mut fwd, 1e-2, 1e-3);
}

fn c(s: &[usize]) -> Input {
    Input::Checked(s.to_vec())
}

#[test]
fn activations_and_dropout() {
    let s = vec![2, 3, 2, 2];
    grad_check(
        "ReLU",
        Op::Relu(ReluParams {
            negative_slope: 0.2,
        }),
        vec![c(&s)],
        vec![],
        false,
        Phase::Train,
    );
    grad_check(
        "Sigmoid",
        Op::Sigmoid,
        vec![c(&s)],
        vec![],
        false,
        Phase::Train,
    );
    grad_check("TanH", Op::TanH, vec![c(&s)], vec![], false, Phase::Train);
    grad_check(
        "PReLU",
        Op::PRelu(PReluParams::default()),
        vec![c(&s)],
        vec![vec![3]],
        true,
        Phase::Train,
    );
    let shared = PReluParams {
        channel_shared: true,
        ..Default::default()
    };
    grad_check(
        "PReLU shared",
        Op::PRelu(shared),
        vec![c(&s)],
        vec![vec![1]],
        true,
        Phase::Train,
    );
    grad_check(
        "Dropout",
        Op::Dropout(DropoutParams { ratio: 0.4 }),
        vec![c(&s)],
        vec![],
        false,
        Phase::Train,
    );
    grad_check(
        "Dropout TEST",
        Op::Dropout(DropoutParams { ratio: 0.4 }),
        vec![c(&s)],
        vec![],
        false,
        Phase::Test,
    );
}

#[test]
fn softmax_and_softmax_with_loss() {
    grad_check(
        "Softmax",
        Op::Softmax(SoftmaxParams { axis: 1 }),
        vec![c(&[2, 4, 3])],
        vec![],
        false,
        Phase::Train,
    );
    for (normalization, ignore) in [
        (Normalization::Valid, None),
        (Normalization::Valid, Some(2)),
        (Normalization::Full, Some(2)),
        (Normalization::BatchSize, None),
        (Normalization::None, None),
    ] {
        let p = SoftmaxLossParams {
            axis: 1,
            ignore_label: ignore,
            normalization,
        };
        // Scores 3×5×2 (spatial labels), labels 3×2 with a 2 that may be ignored.
        let labels = Input::Fixed(vec![3, 1, 2], vec![0.0, 4.0, 2.0, 1.0, 3.0, 2.0]);
        grad_check(
            "SoftmaxWithLoss",
            Op::SoftmaxWithLoss(p),
            vec![c(&[3, 5, 2]), labels],
            vec![],
            false,
            Phase::Train,
        );
    }
}

#[test]
fn concat_eltwise_flatten() {
    grad_check(
        "Concat",
        Op::Concat(ConcatParams { axis: 1 }),
        vec![c(&[2, 2, 3]), c(&[2, 3, 3])],
        vec![],
        false,
        Phase::Train,
    );
    grad_check(
        "Concat axis 2",
        Op::Concat(ConcatParams { axis: 2 }),
        vec![c(&[2, 2, 1]), c(&[2, 2, 3])],
        vec![],
        false,
        Phase::Train,
    );
    for op in [EltwiseOp::Sum, EltwiseOp::Prod, EltwiseOp::Max] {
        let p = EltwiseParams {
            op,
            coeffs: if op == EltwiseOp::Sum {
                vec![0.5, -2.0, 1.5]
            } else {
                vec![]
            },
        };
        grad_check(
            "Eltwise",
            Op::Eltwise(p),
            vec![c(&[2, 3]), c(&[2, 3]), c(&[2, 3])],
            vec![],
            false,
            Phase::Train,
        );
    }
    grad_check(
        "Flatten",
        Op::Flatten(FlattenParams::default()),
        vec![c(&[2, 3, 2])],
        vec![],
        false,
        Phase::Train,
    );
}

#[test]
fn batchnorm_with_batch_and_global_statistics_and_scale() {
    let bn = BatchNormParams::default();
    let stats = vec![vec![3], vec![3], vec![1]];
    grad_check(
        "BatchNorm TRAIN",
        Op::BatchNorm(bn.clone()),
        vec![c(&[4, 3, 2, 2])],
        stats.clone(),
        false,
        Phase::Train,
    );
    grad_check(
        "BatchNorm TEST",
        Op::BatchNorm(bn),
        vec![c(&[4, 3, 2, 2])],
        stats,
        false,
        Phase::Test,
    );
    let with_bias = ScaleParams {
        bias_term: true,
        ..Default::default()
    };
    grad_check(
        "Scale",
        Op::Scale(with_bias.clone()),
        vec![c(&[2, 3, 2])],
        vec![vec![3], vec![3]],
        true,
        Phase::Train,
    );
    grad_check(
        "Scale 2 bottoms",
        Op::Scale(with_bias),
        vec![c(&[2, 3, 2]), c(&[3])],
        vec![vec![3]],
        true,
        Phase::Train,
    );
}

#[test]
fn deconvolution_strided_padded_grouped_and_dilated() {
    use crate::ops::{deconv::DeconvParams, tests::conv::params};
    let deconv =
        |n, k, s, p, d, g, bias| Op::Deconvolution(DeconvParams(params(n, k, s, p, d, g, bias)));
    for (op, xs) in [
        (
            deconv(4, [3, 3], [2, 2], [1, 1], [1, 1], 2, true),
            vec![2, 4, 3, 4],
        ),
        (
            deconv(3, [2, 3], [1, 2], [0, 1], [2, 1], 1, false),
            vec![1, 2, 4, 3],
        ),
    ] {
        let blob_shapes = op.weight_shapes(std::slice::from_ref(&xs));
        grad_check(
            "Deconvolution",
            op,
            vec![c(&xs)],
            blob_shapes,
            true,
            Phase::Train,
        );
    }
}

#[test]
fn no_top_diff_means_no_bottom_diff() {
    let op = Op::Relu(ReluParams::default());
    let x = Tensor::zeros(&[2]);
    let d = backward(
        &BackwardArgs {
            op: &op,
            bottoms: &[&x],
            tops: &[&x],
            top_diffs: &[None],
            blobs: &[],
            saved: &[],
            propagate_down: &[true],
            phase: Phase::Train,
            threads: 1,
            buffers: &Default::default(),
        },
        &mut [],
    )
    .unwrap();
    assert!(d[0].is_none());
}
