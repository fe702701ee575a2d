use super::{assert_close, run, run_phase, tensor};
use crate::ir::{Op, Phase, Tensor};
use crate::ops::ctx::Ctx;
use crate::ops::dispatch;
use crate::ops::loss::{AccuracyParams, Normalization, SoftmaxLossParams};
use crate::ops::softmax::SoftmaxParams;

/// Softmax over `axis` of a tensor viewed as outer × channels × inner, in f64.
pub(crate) fn naive_softmax(x: &Tensor, axis: usize) -> Vec<f64> {
    let outer: usize = x.shape[..axis].iter().product();
    let ch = x.shape[axis];
    let inner: usize = x.shape[axis + 1..].iter().product();
    let mut y = vec![0.0; x.len()];
    for o in 0..outer {
        for i in 0..inner {
            let idx = |c: usize| (o * ch + c) * inner + i;
            let m = (0..ch)
                .map(|c| x.data[idx(c)] as f64)
                .fold(f64::MIN, f64::max);
            let s: f64 = (0..ch).map(|c| (x.data[idx(c)] as f64 - m).exp()).sum();
            for c in 0..ch {
                y[idx(c)] = (x.data[idx(c)] as f64 - m).exp() / s;
            }
        }
    }
    y
}

#[test]
fn softmax_over_axes_and_large_values() {
    let x = tensor(&[2, 4, 3], 1);
    let got = run(&Op::Softmax(SoftmaxParams::default()), &[&x], &[], 1);
    assert_close(&got[0].data, &naive_softmax(&x, 1), 1e-6, "axis 1");
    let got = run(&Op::Softmax(SoftmaxParams { axis: -1 }), &[&x], &[], 1);
    assert_close(&got[0].data, &naive_softmax(&x, 2), 1e-6, "axis -1");
    // exp(1000) overflows f32; the max subtraction keeps it finite.
    let big = Tensor::from_vec(&[1, 3], vec![1000.0, 1001.0, 999.0]).unwrap();
    let got = run(&Op::Softmax(SoftmaxParams::default()), &[&big], &[], 1);
    assert_close(&got[0].data, &naive_softmax(&big, 1), 1e-6, "large");
}

fn labels(v: &[f32]) -> Tensor {
    Tensor::from_vec(&[v.len()], v.to_vec()).unwrap()
}

#[test]
fn softmax_with_loss_normalisations_and_ignore_label() {
    let x = tensor(&[4, 5], 2);
    let y = labels(&[0.0, 3.0, 4.0, 3.0]);
    let p = naive_softmax(&x, 1);
    let nll = |i: usize, c: usize| -p[i * 5 + c].ln();
    let all = nll(0, 0) + nll(1, 3) + nll(2, 4) + nll(3, 3);
    let op = |ignore, normalization| {
        Op::SoftmaxWithLoss(SoftmaxLossParams {
            axis: 1,
            ignore_label: ignore,
            normalization,
        })
    };
    let cases = [
        (None, Normalization::Valid, all / 4.0),
        (None, Normalization::None, all),
        (Some(3), Normalization::Valid, (nll(0, 0) + nll(2, 4)) / 2.0),
        (Some(3), Normalization::Full, (nll(0, 0) + nll(2, 4)) / 4.0),
        (
            Some(3),
            Normalization::BatchSize,
            (nll(0, 0) + nll(2, 4)) / 4.0,
        ),
    ];
    for (ignore, norm, want) in cases {
        let (tops, saved) = run_phase(&op(ignore, norm), &[&x, &y], &[], 1, Phase::Train);
        assert!(tops[0].shape.is_empty());
        assert!(
            (tops[0].data[0] as f64 - want).abs() < 1e-6,
            "{ignore:?} {norm:?}: {} vs {want}",
            tops[0].data[0]
        );
        assert_close(&saved[0].data, &p, 1e-6, "saved probabilities");
    }
    let mut ctx = Ctx::default();
    for bad in [5.0, -1.0, 1.5] {
        let err = dispatch::forward(
            &op(None, Normalization::Valid),
            &[&x, &labels(&[0.0, bad, 0.0, 0.0])],
            &[],
            1,
            &mut ctx,
        )
        .unwrap_err();
        assert!(err.0.contains("label 1"), "{err}");
    }
}

#[test]
fn accuracy_counts_ties_against_the_true_class() {
    // Row 0: true class 2 scores 2; only class 1 (3) beats it → top-1 wrong, top-2 right.
    // Row 1: true class 1 scores 5; class 0 ties at 5 → counted better → top-1 wrong.
    let x = Tensor::from_vec(&[2, 3], vec![1.0, 3.0, 2.0, 5.0, 5.0, 0.0]).unwrap();
    let y = labels(&[2.0, 1.0]);
    let acc = |top_k, ignore| {
        run(
            &Op::Accuracy(AccuracyParams {
                top_k,
                axis: 1,
                ignore_label: ignore,
            }),
            &[&x, &y],
            &[],
            1,
        )[0]
        .data[0]
    };
    assert_eq!(acc(1, None), 0.0);
    assert_eq!(acc(2, None), 1.0);
    let z = Tensor::from_vec(&[2, 3], vec![1.0, 3.0, 2.0, 0.0, 5.0, 1.0]).unwrap();
    let got = run(&Op::Accuracy(AccuracyParams::default()), &[&z, &y], &[], 1)[0].data[0];
    assert_eq!(got, 0.5);
    // Ignoring label 2 leaves row 1 only; ignoring both leaves nothing → 0.
    assert_eq!(acc(1, Some(2)), 0.0);
    assert_eq!(acc(2, Some(2)), 1.0);
}
