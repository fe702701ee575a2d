//! Local response normalisation (Caffe `LRNLayer`).
//!
//! ACROSS_CHANNELS: `y = x · (k + α/n · Σ_{c' ∈ window(c)} x²)^−β`, a window of `n`
//! channels centred on c with zero padding. WITHIN_CHANNEL: the same over an n×n spatial
//! window; Caffe builds it from an AVE pooling of x² (padding (n−1)/2, divisor clipped as
//! AVE pooling does) and uses `k = 1`.

use super::ctx::Ctx;
use super::window::PoolWindow;
use super::{expect_bottoms, OpError, OpResult};
use crate::ir::Tensor;
use rayon::prelude::*;

/// Normalisation region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormRegion {
    /// Across neighbouring channels (AlexNet, Levi & Hassner).
    AcrossChannels,
    /// Over a spatial square within each channel (cifar10_full).
    WithinChannel,
}

/// LRN parameters with Caffe's defaults (`local_size` 5, α 1, β 0.75, k 1, ACROSS).
#[derive(Debug, Clone, PartialEq)]
pub struct LrnParams {
    /// Window size n (odd).
    pub local_size: usize,
    /// Scale α; divided by n (ACROSS) or n² (WITHIN) as Caffe does.
    pub alpha: f32,
    /// Exponent β.
    pub beta: f32,
    /// Additive constant k (ONNX `bias`).
    pub k: f32,
    /// ACROSS_CHANNELS or WITHIN_CHANNEL.
    pub region: NormRegion,
}

impl Default for LrnParams {
    fn default() -> Self {
        Self {
            local_size: 5,
            alpha: 1.0,
            beta: 0.75,
            k: 1.0,
            region: NormRegion::AcrossChannels,
        }
    }
}

impl LrnParams {
    /// Same shape as the bottom; `local_size` must be odd, as Caffe checks.
    pub fn output_shapes(&self, bottoms: &[Vec<usize>]) -> OpResult<Vec<Vec<usize>>> {
        expect_bottoms(bottoms, 1, 1)?;
        if self.local_size.is_multiple_of(2) {
            return Err(OpError::new(format!(
                "local_size {} must be odd",
                self.local_size
            )));
        }
        if bottoms[0].len() != 4 {
            return Err(OpError::new(format!(
                "needs a 4-D bottom, got {:?}",
                bottoms[0]
            )));
        }
        Ok(vec![bottoms[0].clone()])
    }

    /// Square, window sum, scale and power per element.
    pub fn flops(&self, tops: &[Vec<usize>]) -> u64 {
        let n = tops[0].iter().product::<usize>() as u64;
        let window = match self.region {
            NormRegion::AcrossChannels => self.local_size,
            NormRegion::WithinChannel => self.local_size * self.local_size,
        } as u64;
        n * (window + 4)
    }
}

/// `scale^−β` for a slice, in place. β = 0.75 (every AlexNet-style net) is computed as
/// `1 / (√s · √√s)` with correctly rounded square roots, which vectorises and is as
/// accurate as `powf`; β = 0.5 and 1 likewise; other values use `powf`.
fn inverse_power_in_place(scale: &mut [f32], beta: f32) {
    if beta == 0.75 {
        for s in scale.iter_mut() {
            let r = s.sqrt();
            *s = 1.0 / (r * r.sqrt());
        }
    } else if beta == 0.5 {
        for s in scale.iter_mut() {
            *s = 1.0 / s.sqrt();
        }
    } else if beta == 1.0 {
        for s in scale.iter_mut() {
            *s = 1.0 / *s;
        }
    } else {
        for s in scale.iter_mut() {
            *s = s.powf(-beta);
        }
    }
}

impl LrnParams {
    /// Forward pass (Caffe `LRNLayer::CrossChannelForward_cpu` /
    /// `WithinChannelForward`), parallel over the N·C output planes.
    pub fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> OpResult<Tensor> {
        self.output_shapes(std::slice::from_ref(&x.shape))?;
        let mut y = ctx.tensor(&x.shape);
        let (channels, plane) = (x.shape[1], x.shape[2] * x.shape[3]);
        if y.is_empty() {
            return Ok(y);
        }
        match self.region {
            NormRegion::AcrossChannels => self.across_channels(x, &mut y.data, channels, plane),
            NormRegion::WithinChannel => self.within_channel(x, &mut y.data, plane),
        }
        Ok(y)
    }

    /// `y = x · (k + α/n · Σ x²)^−β` over the channels `c − (n−1)/2 ..= c + (n−1)/2` that
    /// exist (the zero padding contributes nothing).
    fn across_channels(&self, x: &Tensor, y: &mut [f32], channels: usize, plane: usize) {
        let half = (self.local_size - 1) / 2;
        let alpha_over_n = self.alpha / self.local_size as f32;
        let (k, beta) = (self.k, self.beta);
        let image = channels * plane;
        y.par_chunks_mut(plane)
            .enumerate()
            .with_min_len(4)
            .for_each(|(index, out)| {
                let (n, c) = (index / channels, index % channels);
                let src = &x.data[n * image..][..image];
                let (lo, hi) = (c.saturating_sub(half), (c + half + 1).min(channels));
                out.fill(0.0);
                for cc in lo..hi {
                    for (o, &v) in out.iter_mut().zip(&src[cc * plane..][..plane]) {
                        *o += v * v;
                    }
                }
                for o in out.iter_mut() {
                    *o = k + alpha_over_n * *o;
                }
                inverse_power_in_place(out, beta);
                for (o, &v) in out.iter_mut().zip(&src[c * plane..][..plane]) {
                    *o *= v;
                }
            });
    }

    /// The AVE pooling inside WITHIN_CHANNEL over an H×W plane: kernel n, stride 1, pad
    /// (n−1)/2, so one window per pixel.
    fn within_window(&self, [h, w]: [usize; 2]) -> PoolWindow {
        let pad = (self.local_size - 1) / 2;
        PoolWindow {
            input: [h, w],
            output: [h, w],
            kernel: [self.local_size; 2],
            stride: [1, 1],
            pad: [pad, pad],
        }
    }

    /// Caffe builds WITHIN_CHANNEL from other layers: x² → AVE pooling (kernel n, stride 1,
    /// pad (n−1)/2, Caffe's clipped divisor) → `(1 + α · avg)^−β` → times x. So k is not
    /// used and α is not divided again.
    fn within_channel(&self, x: &Tensor, y: &mut [f32], plane: usize) {
        let win = self.within_window([x.shape[2], x.shape[3]]);
        let (alpha, beta) = (self.alpha, self.beta);
        y.par_chunks_mut(plane)
            .zip(x.data.par_chunks(plane))
            .for_each(|(out, src)| {
                let squares: Vec<f32> = src.iter().map(|v| v * v).collect();
                win.ave_planes(&squares, out);
                for o in out.iter_mut() {
                    *o = 1.0 + alpha * *o;
                }
                inverse_power_in_place(out, beta);
                for (o, &v) in out.iter_mut().zip(src) {
                    *o *= v;
                }
            });
    }
}

// ---- backward (training) ----

impl LrnParams {
    /// Backward from the bottom `x`, the top `y` and the top diff `dy`.
    ///
    /// ACROSS_CHANNELS (Caffe `CrossChannelBackward_cpu`): with the scale
    /// `s_c = k + α/n · Σ_{window(c)} x²` recomputed from the bottom,
    /// `dx_c = dy_c · s_c^−β − (2αβ/n) · x_c · Σ_{c' ∈ window(c)} dy_c' · y_c' / s_c'`.
    ///
    /// WITHIN_CHANNEL (Caffe's composite of square, AVE pooling with pad (n−1)/2, power
    /// `(1 + α·avg)^−β` and a product): `dx = dy · s^−β − 2αβ · x · P(dy · y / s)`, where
    /// `P` is the backward of that AVE pooling (each position spreads its value over its
    /// window divided by the window's Caffe divisor).
    pub fn backward(&self, top_diff: &Tensor, bottom: &Tensor, top: &Tensor) -> OpResult<Tensor> {
        self.backward_into(top_diff, bottom, top, Tensor::zeros(&bottom.shape))
    }

    /// [`LrnParams::backward`] into `dx`, a zero-filled buffer of the bottom's shape (so
    /// that a training loop can reuse its buffers).
    pub fn backward_into(
        &self,
        top_diff: &Tensor,
        bottom: &Tensor,
        top: &Tensor,
        mut dx: Tensor,
    ) -> OpResult<Tensor> {
        self.output_shapes(std::slice::from_ref(&bottom.shape))?;
        if top_diff.shape != bottom.shape || top.shape != bottom.shape {
            return Err(OpError::new(format!(
                "top diff {:?} and top {:?} must have the bottom's shape {:?}",
                top_diff.shape, top.shape, bottom.shape
            )));
        }
        let (c, hw) = (bottom.shape[1], bottom.shape[2] * bottom.shape[3]);
        let image = c * hw;
        if dx.shape != bottom.shape {
            return Err(OpError::new("bottom diff buffer has the wrong shape"));
        }
        if image == 0 {
            return Ok(dx);
        }
        let chunks = dx
            .data
            .par_chunks_mut(image)
            .zip(bottom.data.par_chunks(image))
            .zip(top.data.par_chunks(image))
            .zip(top_diff.data.par_chunks(image));
        match self.region {
            NormRegion::AcrossChannels => {
                chunks.for_each(|(((dx, x), y), dy)| self.across_image(dx, x, y, dy, c, hw))
            }
            NormRegion::WithinChannel => {
                let [h, w] = [bottom.shape[2], bottom.shape[3]];
                chunks.for_each(|(((dx, x), y), dy)| {
                    for ch in 0..c {
                        let r = ch * hw..(ch + 1) * hw;
                        self.within_plane(
                            &mut dx[r.clone()],
                            &x[r.clone()],
                            &y[r.clone()],
                            &dy[r],
                            [h, w],
                        );
                    }
                })
            }
        }
        Ok(dx)
    }

    fn across_image(&self, dx: &mut [f32], x: &[f32], y: &[f32], dy: &[f32], c: usize, hw: usize) {
        let n = self.local_size;
        let pre = (n - 1) / 2;
        let alpha_over_n = self.alpha / n as f32;
        // Scale, as the forward computes it.
        let mut scale = vec![self.k; c * hw];
        for ch in 0..c {
            let lo = ch.saturating_sub(pre);
            let hi = (ch + pre + 1).min(c);
            let s = &mut scale[ch * hw..(ch + 1) * hw];
            for src in lo..hi {
                for (s, &v) in s.iter_mut().zip(&x[src * hw..(src + 1) * hw]) {
                    *s += alpha_over_n * v * v;
                }
            }
        }
        let ratio: Vec<f32> = dy
            .iter()
            .zip(y)
            .zip(&scale)
            .map(|((&g, &y), &s)| g * y / s)
            .collect();
        let cache = 2.0 * self.alpha * self.beta / n as f32;
        let mut accum = vec![0.0f32; hw];
        for ch in 0..c {
            let lo = ch.saturating_sub(pre);
            let hi = (ch + pre + 1).min(c);
            accum.iter_mut().for_each(|a| *a = 0.0);
            for src in lo..hi {
                for (a, &r) in accum.iter_mut().zip(&ratio[src * hw..(src + 1) * hw]) {
                    *a += r;
                }
            }
            let r = ch * hw..(ch + 1) * hw;
            for ((((d, &g), &s), &v), &a) in dx[r.clone()]
                .iter_mut()
                .zip(&dy[r.clone()])
                .zip(&scale[r.clone()])
                .zip(&x[r])
                .zip(&accum)
            {
                *d = g * s.powf(-self.beta) - cache * v * a;
            }
        }
    }

    fn within_plane(&self, dx: &mut [f32], x: &[f32], y: &[f32], dy: &[f32], hw: [usize; 2]) {
        let win = self.within_window(hw);
        // s = 1 + α · avg(x²) over each pixel's window (the forward's pooling).
        let squares: Vec<f32> = x.iter().map(|v| v * v).collect();
        let mut scale = vec![0.0f32; x.len()];
        win.ave_planes(&squares, &mut scale);
        scale.iter_mut().for_each(|s| *s = 1.0 + self.alpha * *s);
        // P(dy · y / s): the AVE pooling's backward spreads each value over its window.
        let t: Vec<f32> = dy
            .iter()
            .zip(y)
            .zip(&scale)
            .map(|((&g, &y), &s)| g * y / s)
            .collect();
        let mut spread = vec![0.0f32; x.len()];
        win.ave_backward_plane(&t, &mut spread);
        let cache = 2.0 * self.alpha * self.beta;
        for ((((d, &g), &s), &v), &p) in dx.iter_mut().zip(dy).zip(&scale).zip(x).zip(&spread) {
            *d = g * s.powf(-self.beta) - cache * v * p;
        }
    }
}

#[cfg(test)]
mod backward_tests {
    use super::*;
    use crate::train::gradcheck::uniform;

    /// Caffe's LRN forward in f64, straight from the formulas (the reference).
    fn naive(p: &LrnParams, x: &[f64], [n, c, h, w]: [usize; 4]) -> Vec<f64> {
        let size = p.local_size;
        let half = (size - 1) / 2;
        let (alpha, beta, k) = (p.alpha as f64, p.beta as f64, p.k as f64);
        let at = |i: usize, ch: usize, y: usize, xx: usize| x[((i * c + ch) * h + y) * w + xx];
        let mut out = vec![0.0; x.len()];
        for i in 0..n {
            for ch in 0..c {
                for y in 0..h {
                    for xx in 0..w {
                        let s = match p.region {
                            NormRegion::AcrossChannels => {
                                let sum: f64 = (ch.saturating_sub(half)..(ch + half + 1).min(c))
                                    .map(|cc| at(i, cc, y, xx).powi(2))
                                    .sum();
                                k + alpha / size as f64 * sum
                            }
                            NormRegion::WithinChannel => {
                                // AVE window: start −half, end min(start + size, H + half),
                                // divisor over that, values clipped to the image.
                                let (ys, xs) =
                                    (y as isize - half as isize, xx as isize - half as isize);
                                let ye = (ys + size as isize).min((h + half) as isize);
                                let xe = (xs + size as isize).min((w + half) as isize);
                                let div = ((ye - ys) * (xe - xs)) as f64;
                                let mut sum = 0.0;
                                for yy in ys.max(0)..ye.min(h as isize) {
                                    for xx2 in xs.max(0)..xe.min(w as isize) {
                                        sum += at(i, ch, yy as usize, xx2 as usize).powi(2);
                                    }
                                }
                                1.0 + alpha * sum / div
                            }
                        };
                        let idx = ((i * c + ch) * h + y) * w + xx;
                        out[idx] = x[idx] * s.powf(-beta);
                    }
                }
            }
        }
        out
    }

    fn check(p: LrnParams, shape: [usize; 4]) {
        let len: usize = shape.iter().product();
        let x = uniform(len, -2.0, 2.0, 11);
        let dy = uniform(len, -1.0, 1.0, 12);
        let xd: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        let y: Vec<f32> = naive(&p, &xd, shape).iter().map(|&v| v as f32).collect();
        let t = |v: Vec<f32>| Tensor::from_vec(&shape, v).unwrap();
        let dx = p.backward(&t(dy.clone()), &t(x.clone()), &t(y)).unwrap();
        let step = 1e-4;
        for i in 0..len {
            let mut xp = xd.clone();
            xp[i] += step;
            let mut xm = xd.clone();
            xm[i] -= step;
            let obj = |v: Vec<f64>| v.iter().zip(&dy).map(|(a, &b)| a * b as f64).sum::<f64>();
            let numeric = (obj(naive(&p, &xp, shape)) - obj(naive(&p, &xm, shape))) / (2.0 * step);
            let err = (dx.data[i] as f64 - numeric).abs();
            assert!(
                err <= 1e-4 * numeric.abs().max(1.0),
                "{:?} element {i}: {} vs {numeric}",
                p.region,
                dx.data[i]
            );
        }
    }

    #[test]
    fn across_channels_matches_finite_differences_of_the_f64_formula() {
        // Large α so the normalisation term matters; 7 channels exercise both edges.
        check(
            LrnParams {
                local_size: 5,
                alpha: 0.5,
                beta: 0.75,
                k: 2.0,
                region: NormRegion::AcrossChannels,
            },
            [2, 7, 3, 2],
        );
    }

    #[test]
    fn within_channel_matches_finite_differences_of_the_f64_formula() {
        check(
            LrnParams {
                local_size: 3,
                alpha: 0.8,
                beta: 0.75,
                k: 1.0,
                region: NormRegion::WithinChannel,
            },
            [1, 2, 4, 5],
        );
    }
}
