use super::{assert_close, run, run_phase, tensor};
use crate::ir::{Op, Phase, Tensor};
use crate::ops::activation::{PReluParams, ReluParams};
use crate::ops::batchnorm::{BatchNormParams, ScaleParams};
use crate::ops::dropout::DropoutParams;
use crate::ops::eltwise::{EltwiseOp, EltwiseParams};

fn f64s(t: &Tensor) -> Vec<f64> {
    t.data.iter().map(|&v| v as f64).collect()
}

#[test]
fn relu_and_leaky_relu() {
    let x = tensor(&[2, 3, 4, 5], 1);
    for slope in [0.0, 0.1, -0.5] {
        let want: Vec<f64> = f64s(&x)
            .into_iter()
            .map(|v| v.max(0.0) + slope * v.min(0.0))
            .collect();
        let got = run(
            &Op::Relu(ReluParams {
                negative_slope: slope as f32,
            }),
            &[&x],
            &[],
            2,
        );
        assert_close(&got[0].data, &want, 1e-7, "relu");
    }
    // Caffe's plain ReLU gives +0, not −0, for negative inputs.
    let neg = Tensor::full(&[1, 1], -3.0);
    let got = run(&Op::Relu(ReluParams::default()), &[&neg], &[], 1);
    assert!(got[0].data[0] == 0.0 && got[0].data[0].is_sign_positive());
}

#[test]
fn prelu_per_channel_and_shared() {
    let x = tensor(&[2, 3, 2, 2], 2);
    let a = Tensor::from_vec(&[3], vec![0.25, -1.0, 2.0]).unwrap();
    let want: Vec<f64> = f64s(&x)
        .into_iter()
        .enumerate()
        .map(|(i, v)| v.max(0.0) + a.data[(i / 4) % 3] as f64 * v.min(0.0))
        .collect();
    let got = run(&Op::PRelu(PReluParams::default()), &[&x], &[a], 2);
    assert_close(&got[0].data, &want, 1e-7, "prelu");

    let shared = PReluParams {
        channel_shared: true,
        ..PReluParams::default()
    };
    let want: Vec<f64> = f64s(&x)
        .into_iter()
        .map(|v| v.max(0.0) + 0.5 * v.min(0.0))
        .collect();
    let got = run(&Op::PRelu(shared), &[&x], &[Tensor::full(&[1], 0.5)], 1);
    assert_close(&got[0].data, &want, 1e-7, "shared prelu");

    // 2-D bottoms: channel = axis 1, one element per channel.
    let x2 = tensor(&[4, 3], 3);
    let a = Tensor::from_vec(&[3], vec![0.1, 0.2, 0.3]).unwrap();
    let want: Vec<f64> = f64s(&x2)
        .into_iter()
        .enumerate()
        .map(|(i, v)| v.max(0.0) + a.data[i % 3] as f64 * v.min(0.0))
        .collect();
    let got = run(&Op::PRelu(PReluParams::default()), &[&x2], &[a], 1);
    assert_close(&got[0].data, &want, 1e-7, "2-D prelu");
}

#[test]
fn sigmoid_and_tanh() {
    let mut x = tensor(&[3, 50], 4);
    for v in x.data.iter_mut() {
        *v *= 30.0;
    }
    let want: Vec<f64> = f64s(&x)
        .into_iter()
        .map(|v| 1.0 / (1.0 + (-v).exp()))
        .collect();
    let got = run(&Op::Sigmoid, &[&x], &[], 2);
    assert_close(&got[0].data, &want, 2e-7, "sigmoid");
    let want: Vec<f64> = f64s(&x).into_iter().map(f64::tanh).collect();
    let got = run(&Op::TanH, &[&x], &[], 2);
    assert_close(&got[0].data, &want, 2e-7, "tanh");
}

#[test]
fn dropout_is_identity_in_test() {
    let x = tensor(&[4, 10], 5);
    let got = run(&Op::Dropout(DropoutParams { ratio: 0.3 }), &[&x], &[], 1);
    assert_eq!(got[0].data, x.data);
}

#[test]
fn dropout_in_train_scales_kept_values_and_saves_the_mask() {
    let x = Tensor::full(&[100, 100], 3.0);
    let op = Op::Dropout(DropoutParams { ratio: 0.25 });
    let (tops, saved) = run_phase(&op, &[&x], &[], 1, Phase::Train);
    let scale = 1.0 / 0.75f32;
    assert_eq!(saved.len(), 1);
    assert_eq!(saved[0].shape, x.shape);
    let mut kept = 0;
    for (y, m) in tops[0].data.iter().zip(&saved[0].data) {
        assert!(*m == 0.0 || *m == scale, "mask value {m}");
        assert_eq!(*y, 3.0 * m);
        kept += (*m != 0.0) as usize;
    }
    // Binomial(10000, 0.75): mean 7500, σ ≈ 43; allow 5σ.
    assert!((kept as i64 - 7500).abs() < 220, "kept {kept}");
    // Same seed, same mask.
    let (again, _) = run_phase(&op, &[&x], &[], 1, Phase::Train);
    assert_eq!(again[0].data, tops[0].data);
    // Ratio 1 would divide by zero; Caffe refuses it too.
    let mut ctx = crate::ops::ctx::Ctx::new(Phase::Train, 0, 1);
    let bad = Op::Dropout(DropoutParams { ratio: 1.0 });
    assert!(crate::ops::dispatch::forward(&bad, &[&x], &[], 1, &mut ctx).is_err());
}

#[test]
fn batchnorm_with_stored_statistics_and_factor() {
    let x = tensor(&[2, 3, 2, 2], 6);
    let mean = Tensor::from_vec(&[3], vec![0.2, -0.4, 1.0]).unwrap();
    let var = Tensor::from_vec(&[3], vec![0.5, 2.0, 0.1]).unwrap();
    for factor in [2.0f32, 0.0] {
        let s = if factor == 0.0 {
            0.0
        } else {
            1.0 / factor as f64
        };
        let p = BatchNormParams::default();
        let want: Vec<f64> = f64s(&x)
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                let c = (i / 4) % 3;
                (v - mean.data[c] as f64 * s) / (var.data[c] as f64 * s + p.eps as f64).sqrt()
            })
            .collect();
        let blobs = [mean.clone(), var.clone(), Tensor::full(&[1], factor)];
        let got = run(&Op::BatchNorm(p), &[&x], &blobs, 2);
        assert_close(
            &got[0].data,
            &want,
            1e-5,
            &format!("batchnorm factor {factor}"),
        );
    }
}

#[test]
fn batchnorm_with_batch_statistics_in_train() {
    let x = tensor(&[3, 2, 2, 3], 7);
    let p = BatchNormParams {
        eps: 1e-3,
        ..BatchNormParams::default()
    };
    let (n, c, inner) = (3, 2, 6);
    let mut mean = [0.0f64; 2];
    let mut var = [0.0f64; 2];
    for ch in 0..c {
        let vals: Vec<f64> = (0..n)
            .flat_map(|i| (0..inner).map(move |j| (i, j)))
            .map(|(i, j)| x.data[(i * c + ch) * inner + j] as f64)
            .collect();
        mean[ch] = vals.iter().sum::<f64>() / vals.len() as f64;
        var[ch] = vals.iter().map(|v| (v - mean[ch]).powi(2)).sum::<f64>() / vals.len() as f64;
    }
    let want: Vec<f64> = f64s(&x)
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let ch = (i / inner) % c;
            (v - mean[ch]) / (var[ch] + 1e-3).sqrt()
        })
        .collect();
    // Stored statistics are ignored in TRAIN.
    let blobs = [
        Tensor::full(&[2], 9.0),
        Tensor::full(&[2], 9.0),
        Tensor::full(&[1], 1.0),
    ];
    let (tops, saved) = run_phase(&Op::BatchNorm(p), &[&x], &blobs, 2, Phase::Train);
    assert_close(&tops[0].data, &want, 1e-5, "batchnorm train");
    assert_close(&saved[0].data, &mean, 1e-6, "saved mean");
    assert_close(&saved[1].data, &var, 1e-6, "saved variance");
}

#[test]
fn scale_over_axes_with_bias_and_two_bottoms() {
    let x = tensor(&[2, 3, 4], 8);
    // axis 1, one axis: γ[3], β[3].
    let g = tensor(&[3], 9);
    let b = tensor(&[3], 10);
    let p = ScaleParams {
        bias_term: true,
        ..ScaleParams::default()
    };
    let want: Vec<f64> = f64s(&x)
        .into_iter()
        .enumerate()
        .map(|(i, v)| v * g.data[(i / 4) % 3] as f64 + b.data[(i / 4) % 3] as f64)
        .collect();
    let got = run(&Op::Scale(p), &[&x], &[g.clone(), b], 2);
    assert_close(&got[0].data, &want, 1e-6, "scale + bias");

    // axis 1, two axes: γ[3, 4]; given as a second bottom.
    let g2 = tensor(&[3, 4], 11);
    let p = ScaleParams {
        num_axes: 2,
        ..ScaleParams::default()
    };
    let want: Vec<f64> = f64s(&x)
        .into_iter()
        .enumerate()
        .map(|(i, v)| v * g2.data[i % 12] as f64)
        .collect();
    let got = run(&Op::Scale(p.clone()), &[&x, &g2], &[], 1);
    assert_close(&got[0].data, &want, 1e-6, "scale by bottom");
    let got = run(&Op::Scale(p), &[&x], &[g2], 1);
    assert_close(&got[0].data, &want, 1e-6, "scale two axes");
}

#[test]
fn eltwise_sum_prod_max() {
    let a = tensor(&[2, 3, 5], 12);
    let b = tensor(&[2, 3, 5], 13);
    let c = tensor(&[2, 3, 5], 14);
    let (fa, fb, fc) = (f64s(&a), f64s(&b), f64s(&c));
    let idx = 0..a.len();
    let sum = EltwiseParams {
        op: EltwiseOp::Sum,
        coeffs: vec![2.0, -0.5, 1.0],
    };
    let want: Vec<f64> = idx
        .clone()
        .map(|i| 2.0 * fa[i] - 0.5 * fb[i] + fc[i])
        .collect();
    assert_close(
        &run(&Op::Eltwise(sum), &[&a, &b, &c], &[], 1)[0].data,
        &want,
        1e-6,
        "sum",
    );
    let plain = EltwiseParams::default();
    let want: Vec<f64> = idx.clone().map(|i| fa[i] + fb[i]).collect();
    assert_close(
        &run(&Op::Eltwise(plain), &[&a, &b], &[], 1)[0].data,
        &want,
        1e-6,
        "sum 1",
    );
    let prod = EltwiseParams {
        op: EltwiseOp::Prod,
        coeffs: vec![],
    };
    let want: Vec<f64> = idx.clone().map(|i| fa[i] * fb[i] * fc[i]).collect();
    assert_close(
        &run(&Op::Eltwise(prod), &[&a, &b, &c], &[], 1)[0].data,
        &want,
        1e-6,
        "prod",
    );
    let max = EltwiseParams {
        op: EltwiseOp::Max,
        coeffs: vec![],
    };
    let want: Vec<f64> = idx.map(|i| fa[i].max(fb[i]).max(fc[i])).collect();
    assert_close(
        &run(&Op::Eltwise(max), &[&a, &b, &c], &[], 1)[0].data,
        &want,
        0.0,
        "max",
    );
}
