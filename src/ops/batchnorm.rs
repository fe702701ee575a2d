//! BatchNorm and Scale, as Caffe splits them: `BatchNormLayer` only normalises with stored
//! (or batch) statistics; the learned γ/β live in a following `ScaleLayer`.

use super::ctx::Ctx;
use super::{canonical_axis, expect_blob_len, expect_bottoms, OpError, OpResult};
use crate::ir::{Filler, Phase, Tensor};
use rayon::prelude::*;

/// BatchNorm parameters. Blobs: mean `[C]`, variance `[C]` and the moving-average scale
/// factor `[1]`; the stored statistics are divided by that factor (0 means 0).
#[derive(Debug, Clone, PartialEq)]
pub struct BatchNormParams {
    /// Use stored statistics; Caffe defaults to true in TEST and false in TRAIN.
    pub use_global_stats: Option<bool>,
    /// Moving-average decay (default 0.999).
    pub moving_average_fraction: f32,
    /// Added to the variance (default 1e-5).
    pub eps: f32,
}

impl Default for BatchNormParams {
    fn default() -> Self {
        Self {
            use_global_stats: None,
            moving_average_fraction: 0.999,
            eps: 1e-5,
        }
    }
}

impl BatchNormParams {
    /// Same shape; channels are axis 1.
    pub fn output_shapes(&self, bottoms: &[Vec<usize>]) -> OpResult<Vec<Vec<usize>>> {
        expect_bottoms(bottoms, 1, 1)?;
        if bottoms[0].len() < 2 {
            return Err(OpError::new(format!(
                "needs at least 2 axes, got {:?}",
                bottoms[0]
            )));
        }
        Ok(vec![bottoms[0].clone()])
    }

    /// `[C]`, `[C]`, `[1]`.
    pub fn weight_shapes(&self, bottoms: &[Vec<usize>]) -> Vec<Vec<usize>> {
        let c = bottoms.first().and_then(|b| b.get(1)).copied().unwrap_or(0);
        vec![vec![c], vec![c], vec![1]]
    }
}

/// Scale parameters (one-bottom form): `y = x · γ (+ β)` with γ broadcast over
/// `num_axes` axes from `axis`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleParams {
    /// First axis of γ's shape in the bottom (default 1).
    pub axis: i32,
    /// Number of axes γ covers (default 1; −1 = all remaining).
    pub num_axes: i32,
    /// Whether a β blob follows.
    pub bias_term: bool,
    /// Filler for γ (Caffe's default: constant 1).
    pub filler: Filler,
    /// Filler for β.
    pub bias_filler: Filler,
}

impl Default for ScaleParams {
    fn default() -> Self {
        Self {
            axis: 1,
            num_axes: 1,
            bias_term: false,
            filler: Filler::Constant { value: 1.0 },
            bias_filler: Filler::default(),
        }
    }
}

impl ScaleParams {
    /// The axes γ covers in a bottom of `ndim` axes, as a range.
    pub fn axes(&self, ndim: usize) -> OpResult<std::ops::Range<usize>> {
        let a = canonical_axis(self.axis, ndim)?;
        let end = if self.num_axes < 0 {
            ndim
        } else {
            a + self.num_axes as usize
        };
        if end > ndim {
            return Err(OpError::new(format!(
                "axis {a} + num_axes {} exceeds {ndim} axes",
                self.num_axes
            )));
        }
        Ok(a..end)
    }

    /// Same shape (the two-bottom form, where γ is a bottom, is also accepted).
    pub fn output_shapes(&self, bottoms: &[Vec<usize>]) -> OpResult<Vec<Vec<usize>>> {
        expect_bottoms(bottoms, 1, 2)?;
        self.axes(bottoms[0].len())?;
        Ok(vec![bottoms[0].clone()])
    }

    /// γ (and β) shapes.
    pub fn weight_shapes(&self, bottoms: &[Vec<usize>]) -> Vec<Vec<usize>> {
        if bottoms.len() > 1 {
            return if self.bias_term {
                vec![bottoms[1].clone()]
            } else {
                vec![]
            };
        }
        let b = bottoms.first().cloned().unwrap_or_default();
        let shape = self
            .axes(b.len())
            .map(|r| b[r].to_vec())
            .unwrap_or_default();
        let mut v = vec![shape.clone()];
        if self.bias_term {
            v.push(shape);
        }
        v
    }
}

impl BatchNormParams {
    /// Whether stored statistics are used in `phase` (Caffe: the explicit setting, else
    /// true in TEST and false in TRAIN).
    pub fn uses_global_stats(&self, phase: Phase) -> bool {
        self.use_global_stats.unwrap_or(phase == Phase::Test)
    }

    /// Forward in place (Caffe `BatchNormLayer::Forward_cpu`):
    /// `y = (x − mean_c) / √(var_c + eps)`. With global statistics, mean and variance are
    /// the stored blobs times `1 / factor` (0 when the factor is 0). Otherwise they are the
    /// batch's biased statistics over N·H·W, pushed to `ctx.saved` as `[mean, var]` for
    /// the backward pass and the moving-average update.
    pub fn apply(&self, x: &mut Tensor, blobs: &[Tensor], ctx: &mut Ctx) -> OpResult<()> {
        self.output_shapes(std::slice::from_ref(&x.shape))?;
        let channels = x.shape[1];
        let inner = x.count_from(2);
        let (mean, var) = if self.uses_global_stats(ctx.phase) {
            expect_blob_len(blobs, 0, channels, "mean")?;
            expect_blob_len(blobs, 1, channels, "variance")?;
            expect_blob_len(blobs, 2, 1, "moving-average factor")?;
            let factor = blobs[2].data[0];
            let scale = if factor == 0.0 { 0.0 } else { 1.0 / factor };
            let mean: Vec<f32> = blobs[0].data.iter().map(|m| m * scale).collect();
            let var: Vec<f32> = blobs[1].data.iter().map(|v| v * scale).collect();
            (mean, var)
        } else {
            let (mean, var) = batch_statistics(x, channels, inner);
            ctx.saved.push(Tensor {
                shape: vec![channels],
                data: mean.clone(),
            });
            ctx.saved.push(Tensor {
                shape: vec![channels],
                data: var.clone(),
            });
            (mean, var)
        };
        let inv_std: Vec<f32> = var.iter().map(|v| 1.0 / (v + self.eps).sqrt()).collect();
        if inner > 0 {
            x.data
                .par_chunks_mut(inner)
                .enumerate()
                .for_each(|(i, plane)| {
                    let c = i % channels;
                    for v in plane.iter_mut() {
                        *v = (*v - mean[c]) * inv_std[c];
                    }
                });
        }
        Ok(())
    }
}

/// Per-channel mean and biased variance over N·H·W, accumulated in f64.
fn batch_statistics(x: &Tensor, channels: usize, inner: usize) -> (Vec<f32>, Vec<f32>) {
    let mut sum = vec![0.0f64; channels];
    let mut sq = vec![0.0f64; channels];
    if inner > 0 {
        for (i, plane) in x.data.chunks(inner).enumerate() {
            let c = i % channels;
            for &v in plane {
                sum[c] += v as f64;
                sq[c] += v as f64 * v as f64;
            }
        }
    }
    let count = (x.len() / channels.max(1)).max(1) as f64;
    let mean: Vec<f64> = sum.iter().map(|s| s / count).collect();
    let var = sq
        .iter()
        .zip(&mean)
        .map(|(s, m)| (s / count - m * m).max(0.0) as f32)
        .collect();
    (mean.into_iter().map(|m| m as f32).collect(), var)
}

impl ScaleParams {
    /// Forward in place (Caffe `ScaleLayer::Forward_cpu`): `y = x · γ_s (+ β_s)` where `s`
    /// runs over the axes `axis .. axis + num_axes`. γ is the first blob, or the second
    /// bottom in the two-bottom form; β is the next blob when `bias_term`.
    pub fn apply(
        &self,
        x: &mut Tensor,
        gamma_bottom: Option<&Tensor>,
        blobs: &[Tensor],
    ) -> OpResult<()> {
        let axes = self.axes(x.shape.len())?;
        let outer: usize = x.shape[..axes.start].iter().product();
        let dim: usize = x.shape[axes.clone()].iter().product();
        let inner: usize = x.shape[axes.end..].iter().product();
        let (gamma, bias_index) = match gamma_bottom {
            Some(g) => {
                if g.len() != dim {
                    return Err(OpError::new(format!(
                        "scale bottom has {} values, expected {dim}",
                        g.len()
                    )));
                }
                (&g.data[..], 0)
            }
            None => {
                expect_blob_len(blobs, 0, dim, "scale")?;
                (&blobs[0].data[..], 1)
            }
        };
        let beta = if self.bias_term {
            expect_blob_len(blobs, bias_index, dim, "bias")?;
            Some(&blobs[bias_index].data[..])
        } else {
            None
        };
        if outer * dim * inner == 0 {
            return Ok(());
        }
        x.data
            .par_chunks_mut(inner)
            .enumerate()
            .for_each(|(i, row)| {
                let s = i % dim;
                let (g, b) = (gamma[s], beta.map_or(0.0, |b| b[s]));
                if beta.is_some() {
                    for v in row.iter_mut() {
                        *v = *v * g + b;
                    }
                } else {
                    for v in row.iter_mut() {
                        *v *= g;
                    }
                }
            });
        Ok(())
    }
}

// ---- backward (training) ----

impl BatchNormParams {
    /// Backward (Caffe `BatchNormLayer::Backward_cpu`) from the normalised top `y` and the
    /// variance the forward used (the batch's, or the stored one already divided by the
    /// factor). With global statistics `dx = dy / √(var + eps)`; with batch statistics
    /// `dx = (dy − mean(dy) − mean(dy · y) · y) / √(var + eps)`, means per channel over
    /// N and space. The statistics blobs get no gradient (Caffe fixes their lr_mult at 0).
    pub fn backward(
        &self,
        top_diff: &Tensor,
        top: &Tensor,
        var: &[f32],
        global: bool,
    ) -> OpResult<Tensor> {
        if top_diff.shape != top.shape || top.shape.len() < 2 {
            return Err(OpError::new("top diff and top shapes differ"));
        }
        let channels = top.shape[1];
        if var.len() != channels {
            return Err(OpError::new(format!(
                "{} variances for {channels} channels",
                var.len()
            )));
        }
        let inner = top.count_from(2).max(1);
        let inv_std: Vec<f32> = var.iter().map(|v| 1.0 / (v + self.eps).sqrt()).collect();
        let mut dx = top_diff.clone();
        if !global {
            let count = (top.len() / channels.max(1)).max(1) as f64;
            let mut mean_dy = vec![0.0f64; channels];
            let mut mean_dyy = vec![0.0f64; channels];
            for (i, (g, y)) in top_diff
                .data
                .chunks(inner)
                .zip(top.data.chunks(inner))
                .enumerate()
            {
                let c = i % channels;
                for (&g, &y) in g.iter().zip(y) {
                    mean_dy[c] += f64::from(g);
                    mean_dyy[c] += f64::from(g) * f64::from(y);
                }
            }
            for (i, (d, y)) in dx
                .data
                .chunks_mut(inner)
                .zip(top.data.chunks(inner))
                .enumerate()
            {
                let c = i % channels;
                let (a, b) = ((mean_dy[c] / count) as f32, (mean_dyy[c] / count) as f32);
                for (d, &y) in d.iter_mut().zip(y) {
                    *d = *d - a - b * y;
                }
            }
        }
        for (i, d) in dx.data.chunks_mut(inner).enumerate() {
            let s = inv_std[i % channels];
            d.iter_mut().for_each(|v| *v *= s);
        }
        Ok(dx)
    }
}

impl ScaleParams {
    /// Backward (Caffe `ScaleLayer::Backward_cpu`) from the bottom `x` and γ (the first
    /// blob, or the second bottom): `dγ_s += Σ dy · x` and `dβ_s += Σ dy` over the other
    /// axes (into `param_diffs` when non-empty; in the two-bottom form the γ diff is
    /// returned as a bottom diff instead), and `dx = dy · γ_s` when `need_bottom`.
    pub fn backward(
        &self,
        top_diff: &Tensor,
        x: &Tensor,
        gamma: &Tensor,
        gamma_is_bottom: bool,
        param_diffs: &mut [Tensor],
        need_bottom: bool,
    ) -> OpResult<(Option<Tensor>, Option<Tensor>)> {
        let axes = self.axes(x.shape.len())?;
        let dim: usize = x.shape[axes.clone()].iter().product();
        let inner: usize = x.shape[axes.end..].iter().product::<usize>().max(1);
        if top_diff.shape != x.shape || gamma.len() != dim {
            return Err(OpError::new(
                "Scale: top diff, bottom and scale sizes do not fit",
            ));
        }
        let mut dgamma = vec![0.0f32; dim];
        let mut dbeta = vec![0.0f32; dim];
        for (i, (g, x)) in top_diff
            .data
            .chunks(inner)
            .zip(x.data.chunks(inner))
            .enumerate()
        {
            let s = i % dim;
            dgamma[s] += g.iter().zip(x).map(|(g, x)| g * x).sum::<f32>();
            dbeta[s] += g.iter().sum::<f32>();
        }
        let mut gamma_bottom_diff = None;
        let beta_index = if gamma_is_bottom {
            gamma_bottom_diff = Some(Tensor {
                shape: gamma.shape.clone(),
                data: dgamma,
            });
            0
        } else {
            if let Some(d) = param_diffs.first_mut() {
                d.data.iter_mut().zip(&dgamma).for_each(|(a, b)| *a += b);
            }
            1
        };
        if self.bias_term {
            if let Some(d) = param_diffs.get_mut(beta_index) {
                d.data.iter_mut().zip(&dbeta).for_each(|(a, b)| *a += b);
            }
        }
        let dx = need_bottom.then(|| {
            let mut dx = top_diff.clone();
            for (i, d) in dx.data.chunks_mut(inner).enumerate() {
                let g = gamma.data[i % dim];
                d.iter_mut().for_each(|v| *v *= g);
            }
            dx
        });
        Ok((dx, gamma_bottom_diff))
    }
}
