//! Softmax over Caffe's `axis` (default 1): `y = exp(x − max) / Σ exp(x − max)` for every
//! position of the other axes.

use super::ctx::Ctx;
use super::{canonical_axis, expect_bottoms, OpResult};
use crate::ir::Tensor;

/// Softmax parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct SoftmaxParams {
    /// Axis normalised over (may be negative).
    pub axis: i32,
}

impl Default for SoftmaxParams {
    fn default() -> Self {
        Self { axis: 1 }
    }
}

impl SoftmaxParams {
    /// Same shape; the axis must exist.
    pub fn output_shapes(&self, bottoms: &[Vec<usize>]) -> OpResult<Vec<Vec<usize>>> {
        expect_bottoms(bottoms, 1, 1)?;
        canonical_axis(self.axis, bottoms[0].len())?;
        Ok(vec![bottoms[0].clone()])
    }

    /// (outer, channels, inner) sizes around the softmax axis.
    pub fn split(&self, shape: &[usize]) -> OpResult<(usize, usize, usize)> {
        let a = canonical_axis(self.axis, shape.len())?;
        Ok((
            shape[..a].iter().product(),
            shape[a],
            shape[a + 1..].iter().product(),
        ))
    }
}

/// Numerically stable softmax of `x` into `y` (both `outer × channels × inner`), as Caffe's
/// `SoftmaxLayer::Forward_cpu`: subtract the maximum over the channels, exponentiate,
/// divide by the sum.
pub fn softmax_into(x: &[f32], y: &mut [f32], outer: usize, channels: usize, inner: usize) {
    let block = channels * inner;
    if block == 0 {
        return;
    }
    for (xo, yo) in x.chunks(block).zip(y.chunks_mut(block)).take(outer) {
        for i in 0..inner {
            let max = (0..channels)
                .map(|c| xo[c * inner + i])
                .fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0f32;
            for c in 0..channels {
                let e = (xo[c * inner + i] - max).exp();
                yo[c * inner + i] = e;
                sum += e;
            }
            for c in 0..channels {
                yo[c * inner + i] /= sum;
            }
        }
    }
}

impl SoftmaxParams {
    /// Forward pass (Caffe `SoftmaxLayer`).
    pub fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> OpResult<Tensor> {
        let (outer, channels, inner) = self.split(&x.shape)?;
        let mut y = ctx.tensor(&x.shape);
        softmax_into(&x.data, &mut y.data, outer, channels, inner);
        Ok(y)
    }
}

// ---- backward (training) ----

impl SoftmaxParams {
    /// Backward (Caffe `SoftmaxLayer::Backward_cpu`): for every position of the other
    /// axes, `dx = (dy − Σ_c dy·y) · y`, from the top `y`.
    pub fn backward(&self, top_diff: &Tensor, top: &Tensor) -> OpResult<Tensor> {
        let (outer, channels, inner) = self.split(&top.shape)?;
        if top_diff.shape != top.shape {
            return Err(super::OpError::new("top diff and top shapes differ"));
        }
        let mut dx = Tensor::zeros(&top.shape);
        let block = channels * inner;
        for o in 0..outer {
            let (y, dy) = (
                &top.data[o * block..][..block],
                &top_diff.data[o * block..][..block],
            );
            let d = &mut dx.data[o * block..][..block];
            for i in 0..inner {
                let dot: f32 = (0..channels)
                    .map(|c| dy[c * inner + i] * y[c * inner + i])
                    .sum();
                for c in 0..channels {
                    d[c * inner + i] = (dy[c * inner + i] - dot) * y[c * inner + i];
                }
            }
        }
        Ok(dx)
    }
}
