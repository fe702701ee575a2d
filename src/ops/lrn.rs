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

    /// Caffe builds WITHIN_CHANNEL from other layers: x² → AVE pooling (kernel n, stride 1,
    /// pad (n−1)/2, Caffe's clipped divisor) → `(1 + α · avg)^−β` → times x. So k is not
    /// used and α is not divided again.
    fn within_channel(&self, x: &Tensor, y: &mut [f32], plane: usize) {
        let (h, w) = (x.shape[2], x.shape[3]);
        let pad = (self.local_size - 1) / 2;
        let win = PoolWindow {
            input: [h, w],
            output: [h, w],
            kernel: [self.local_size; 2],
            stride: [1, 1],
            pad: [pad, pad],
        };
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
