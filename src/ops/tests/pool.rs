use super::{assert_close, run, tensor};
use crate::ir::{Op, Tensor};
use crate::ops::pool::{PoolMethod, PoolParams, RoundMode};

/// Caffe's `PoolingLayer::Forward_cpu` with signed window starts:
/// `hstart = ph·s − p`, `hend = min(hstart + k, H + p)`, `pool_size = (hend − hstart)·(…)`,
/// then both clipped to the image; MAX starts from −FLT_MAX, AVE divides by `pool_size`.
pub(crate) fn naive(p: &PoolParams, x: &Tensor) -> Vec<f64> {
    let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2] as i64, x.shape[3] as i64);
    let out = p
        .output_shapes(std::slice::from_ref(&x.shape))
        .unwrap()
        .remove(0);
    let (oh, ow) = (out[2] as i64, out[3] as i64);
    let (k, s, pad) = p.effective([x.shape[2], x.shape[3]]);
    let (kh, kw, sh, sw, ph, pw) = (
        k[0] as i64,
        k[1] as i64,
        s[0] as i64,
        s[1] as i64,
        pad[0] as i64,
        pad[1] as i64,
    );
    let mut y = Vec::new();
    for plane in 0..n * c {
        let src = &x.data[plane * (h * w) as usize..];
        for oy in 0..oh {
            for ox in 0..ow {
                let (mut hs, mut ws) = (oy * sh - ph, ox * sw - pw);
                let (mut he, mut we) = ((hs + kh).min(h + ph), (ws + kw).min(w + pw));
                let pool_size = ((he - hs) * (we - ws)) as f64;
                hs = hs.max(0);
                ws = ws.max(0);
                he = he.min(h);
                we = we.min(w);
                let mut acc = match p.method {
                    PoolMethod::Max => -(f32::MAX as f64),
                    PoolMethod::Ave => 0.0,
                };
                for yy in hs..he {
                    for xx in ws..we {
                        let v = src[(yy * w + xx) as usize] as f64;
                        acc = match p.method {
                            PoolMethod::Max => acc.max(v),
                            PoolMethod::Ave => acc + v,
                        };
                    }
                }
                y.push(match p.method {
                    PoolMethod::Max => acc,
                    PoolMethod::Ave => acc / pool_size,
                });
            }
        }
    }
    y
}

fn pool(method: PoolMethod, k: [usize; 2], s: [usize; 2], p: [usize; 2]) -> PoolParams {
    PoolParams {
        method,
        kernel: k,
        stride: s,
        pad: p,
        ..PoolParams::default()
    }
}

fn check(p: PoolParams, shape: [usize; 4], seed: u64) {
    let x = tensor(&shape, seed);
    let want = naive(&p, &x);
    for threads in [1, 2] {
        let got = run(&Op::Pooling(p.clone()), &[&x], &[], threads);
        assert_close(&got[0].data, &want, 1e-6, &format!("{p:?} {shape:?}"));
    }
}

#[test]
fn max_and_ave_against_caffe_formula() {
    for method in [PoolMethod::Max, PoolMethod::Ave] {
        // AlexNet-style 3/2 with a ceil-rounded last window hanging over the edge.
        check(pool(method, [3, 3], [2, 2], [0, 0]), [2, 3, 8, 8], 1);
        // Ceil rounding with padding: the last-window rule removes an output.
        check(pool(method, [3, 3], [2, 2], [1, 1]), [1, 2, 6, 6], 2);
        check(pool(method, [2, 2], [2, 2], [1, 1]), [1, 2, 5, 7], 3);
        // Stride larger than the kernel skips inputs.
        check(pool(method, [2, 2], [3, 3], [0, 0]), [2, 2, 10, 11], 4);
        // Rectangular with different pads per axis.
        check(pool(method, [3, 2], [1, 2], [1, 0]), [1, 3, 5, 6], 5);
        // Floor rounding.
        check(
            PoolParams {
                round: RoundMode::Floor,
                ..pool(method, [3, 3], [2, 2], [1, 1])
            },
            [1, 2, 8, 8],
            6,
        );
        // Global.
        check(
            PoolParams {
                global: true,
                ..pool(method, [1, 1], [1, 1], [0, 0])
            },
            [3, 4, 5, 3],
            7,
        );
    }
}

#[test]
fn max_ignores_padding_even_when_everything_is_negative() {
    let x = Tensor::from_vec(&[1, 1, 2, 2], vec![-5.0, -6.0, -7.0, -8.0]).unwrap();
    let got = run(
        &Op::Pooling(pool(PoolMethod::Max, [2, 2], [1, 1], [1, 1])),
        &[&x],
        &[],
        1,
    );
    // Windows over the padded 4×4 grid: every one contains real values only ≤ −5.
    assert_eq!(got[0].shape, vec![1, 1, 3, 3]);
    assert_eq!(
        got[0].data,
        vec![-5.0, -5.0, -6.0, -5.0, -5.0, -6.0, -7.0, -7.0, -8.0]
    );
}

#[test]
fn ave_divisor_counts_padding_but_not_beyond_it() {
    // 3×3 input 1..9, k3 s2 p1 → 2×2. Every window covers 3×3 of the padded grid (divisor
    // 9) and 2×2 real values: 1+2+4+5, 2+3+5+6, 4+5+7+8, 5+6+8+9.
    let x = Tensor::from_vec(&[1, 1, 3, 3], (1..=9).map(|v| v as f32).collect()).unwrap();
    let got = run(
        &Op::Pooling(pool(PoolMethod::Ave, [3, 3], [2, 2], [1, 1])),
        &[&x],
        &[],
        1,
    );
    let want = [12.0 / 9.0, 16.0 / 9.0, 24.0 / 9.0, 28.0 / 9.0];
    for (g, w) in got[0].data.iter().zip(want) {
        assert!((g - w).abs() < 1e-6, "{g} vs {w}");
    }

    // 4×4 ones, k3 s2 p1 → 3×3. The last window starts at 3 and is cut at H + p = 5: its
    // divisor factor is 2, not 3; it covers 1 real row. So the corner is 1·1/(2·2), the
    // first one is 2·2/(3·3), the top-right 2·1/(3·2).
    let x = Tensor::full(&[1, 1, 4, 4], 1.0);
    let got = run(
        &Op::Pooling(pool(PoolMethod::Ave, [3, 3], [2, 2], [1, 1])),
        &[&x],
        &[],
        1,
    );
    let d = &got[0].data;
    assert_eq!(got[0].shape, vec![1, 1, 3, 3]);
    assert!((d[0] - 4.0 / 9.0).abs() < 1e-7);
    assert!((d[2] - 2.0 / 6.0).abs() < 1e-7);
    assert!((d[8] - 0.25).abs() < 1e-7);
}
