use super::{assert_close, run, tensor};
use crate::ir::{Op, Tensor};
use crate::ops::lrn::{LrnParams, NormRegion};

/// ACROSS_CHANNELS: `y = x · (k + α/n · Σ_{c' ∈ [c−⌊n/2⌋, c+⌊n/2⌋] ∩ [0, C)} x²)^−β`.
/// WITHIN_CHANNEL: `y = x · (1 + α · Σ_window x² / pool_size)^−β` with Caffe's AVE window
/// (pad ⌊n/2⌋, stride 1, divisor clipped at H + pad only).
pub(crate) fn naive(p: &LrnParams, x: &Tensor) -> Vec<f64> {
    let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let half = (p.local_size / 2) as i64;
    let at =
        |i: usize, ch: usize, yy: usize, xx: usize| x.data[((i * c + ch) * h + yy) * w + xx] as f64;
    let mut y = Vec::new();
    for i in 0..n {
        for ch in 0..c {
            for yy in 0..h {
                for xx in 0..w {
                    let v = at(i, ch, yy, xx);
                    let scale = match p.region {
                        NormRegion::AcrossChannels => {
                            let mut s = 0.0;
                            for cc in (ch as i64 - half)..=(ch as i64 + half) {
                                if cc >= 0 && (cc as usize) < c {
                                    s += at(i, cc as usize, yy, xx).powi(2);
                                }
                            }
                            p.k as f64 + p.alpha as f64 / p.local_size as f64 * s
                        }
                        NormRegion::WithinChannel => {
                            let (hs, ws) = (yy as i64 - half, xx as i64 - half);
                            let he = (hs + p.local_size as i64).min(h as i64 + half);
                            let we = (ws + p.local_size as i64).min(w as i64 + half);
                            let size = ((he - hs) * (we - ws)) as f64;
                            let mut s = 0.0;
                            for a in hs.max(0)..he.min(h as i64) {
                                for b in ws.max(0)..we.min(w as i64) {
                                    s += at(i, ch, a as usize, b as usize).powi(2);
                                }
                            }
                            1.0 + p.alpha as f64 * s / size
                        }
                    };
                    y.push(v * scale.powf(-p.beta as f64));
                }
            }
        }
    }
    y
}

fn lrn(region: NormRegion, n: usize, alpha: f32, beta: f32, k: f32) -> LrnParams {
    LrnParams {
        local_size: n,
        alpha,
        beta,
        k,
        region,
    }
}

fn check(p: LrnParams, shape: [usize; 4], scale: f32, seed: u64) {
    let mut x = tensor(&shape, seed);
    for v in x.data.iter_mut() {
        *v *= scale;
    }
    let want = naive(&p, &x);
    for threads in [1, 2] {
        let got = run(&Op::Lrn(p.clone()), &[&x], &[], threads);
        assert_close(&got[0].data, &want, 2e-6, &format!("{p:?} {shape:?}"));
    }
}

#[test]
fn across_channels_windows_at_the_channel_edges() {
    // Large activations so that the normalisation matters (as after conv1 in AlexNet).
    check(
        lrn(NormRegion::AcrossChannels, 5, 1e-4, 0.75, 1.0),
        [2, 7, 4, 5],
        60.0,
        1,
    );
    check(
        lrn(NormRegion::AcrossChannels, 3, 0.5, 0.75, 2.0),
        [1, 4, 3, 3],
        3.0,
        2,
    );
    // Window wider than the channel count; generic β goes through powf.
    check(
        lrn(NormRegion::AcrossChannels, 7, 0.3, 0.6, 1.5),
        [2, 3, 2, 2],
        2.0,
        3,
    );
    check(
        lrn(NormRegion::AcrossChannels, 5, 0.3, 0.5, 1.0),
        [1, 6, 2, 3],
        2.0,
        4,
    );
    check(
        lrn(NormRegion::AcrossChannels, 1, 0.3, 1.0, 1.0),
        [1, 2, 2, 3],
        2.0,
        5,
    );
}

#[test]
fn within_channel_uses_clipped_ave_divisor_and_ignores_k() {
    check(
        lrn(NormRegion::WithinChannel, 3, 5e-5, 0.75, 1.0),
        [1, 3, 6, 7],
        80.0,
        6,
    );
    check(
        lrn(NormRegion::WithinChannel, 5, 0.2, 0.75, 7.0),
        [2, 2, 4, 3],
        2.0,
        7,
    );
}

#[test]
fn across_channels_hand_computed_with_k() {
    // One pixel, x = (1, 2, 3), n = 3, α = 3 (α/n = 1), β = 1, k = 2:
    // scales 2 + (1 + 4) = 7, 2 + (1 + 4 + 9) = 16, 2 + (4 + 9) = 15.
    let x = Tensor::from_vec(&[1, 3, 1, 1], vec![1.0, 2.0, 3.0]).unwrap();
    let got = run(
        &Op::Lrn(lrn(NormRegion::AcrossChannels, 3, 3.0, 1.0, 2.0)),
        &[&x],
        &[],
        1,
    );
    let want = [1.0 / 7.0, 2.0 / 16.0, 3.0 / 15.0];
    for (g, w) in got[0].data.iter().zip(want) {
        assert!((g - w).abs() < 1e-7, "{g} vs {w}");
    }
}

#[test]
fn within_channel_hand_computed() {
    // 3×3 ones, n = 3, α = 2.25, β = 1. Corner: 4 ones over a divisor of 9 → 1/(1 + 1);
    // edge: 6/9 → 1/(1 + 1.5); centre: 9/9 → 1/(1 + 2.25).
    let x = Tensor::full(&[1, 1, 3, 3], 1.0);
    let got = run(
        &Op::Lrn(lrn(NormRegion::WithinChannel, 3, 2.25, 1.0, 1.0)),
        &[&x],
        &[],
        1,
    );
    let d = &got[0].data;
    assert!((d[0] - 0.5).abs() < 1e-7);
    assert!((d[1] - 0.4).abs() < 1e-7);
    assert!((d[4] - 1.0 / 3.25).abs() < 1e-7);
}
