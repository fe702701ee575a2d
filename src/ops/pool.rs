//! Pooling (Caffe `PoolingLayer`): MAX and AVE, global pooling, and Caffe's output size
//! rule: `ceil((H + 2p − k) / s) + 1`, minus one when the last window would start at or
//! beyond `H + p` (so every window starts inside the image or its left padding).

use super::ctx::Ctx;
pub use super::window::PoolWindow;
use super::{expect_bottoms, OpError, OpResult};
use crate::ir::Tensor;
use rayon::prelude::*;

/// Pooling method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMethod {
    /// Maximum over the window; padding never wins (acts as −∞).
    Max,
    /// Average; Caffe divides by the window clipped to `H + pad` (padding counts, the part
    /// beyond the padded border does not).
    Ave,
}

/// Output size rounding (`round_mode`, or the fork field `ceil_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoundMode {
    /// Caffe's default.
    Ceil,
    /// `round_mode: FLOOR` or `ceil_mode: false`.
    Floor,
}

/// Parameters of a pooling layer with Caffe's defaults (MAX, stride 1, pad 0, CEIL).
#[derive(Debug, Clone, PartialEq)]
pub struct PoolParams {
    /// MAX or AVE.
    pub method: PoolMethod,
    /// Window height and width (ignored when `global`).
    pub kernel: [usize; 2],
    /// Stride (height, width).
    pub stride: [usize; 2],
    /// Padding (height, width).
    pub pad: [usize; 2],
    /// Pool over the whole spatial extent (`global_pooling`).
    pub global: bool,
    /// CEIL (default) or FLOOR.
    pub round: RoundMode,
}

impl Default for PoolParams {
    fn default() -> Self {
        Self {
            method: PoolMethod::Max,
            kernel: [1, 1],
            stride: [1, 1],
            pad: [0, 0],
            global: false,
            round: RoundMode::Ceil,
        }
    }
}

impl PoolParams {
    /// The effective (kernel, stride, pad) for a bottom of spatial size `hw`; global
    /// pooling uses the whole image with stride 1 and no padding.
    pub fn effective(&self, hw: [usize; 2]) -> ([usize; 2], [usize; 2], [usize; 2]) {
        if self.global {
            (hw, [1, 1], [0, 0])
        } else {
            (self.kernel, self.stride, self.pad)
        }
    }

    /// Output size along one axis, following Caffe's `PoolingLayer::Reshape`.
    pub fn out_dim(
        input: usize,
        kernel: usize,
        stride: usize,
        pad: usize,
        round: RoundMode,
    ) -> OpResult<usize> {
        if input + 2 * pad < kernel {
            return Err(OpError::new(format!(
                "kernel {kernel} exceeds padded input {}",
                input + 2 * pad
            )));
        }
        let span = input + 2 * pad - kernel;
        let mut out = match round {
            RoundMode::Ceil => span.div_ceil(stride) + 1,
            RoundMode::Floor => span / stride + 1,
        };
        if pad > 0 && (out - 1) * stride >= input + pad {
            out -= 1;
        }
        Ok(out)
    }

    /// Output shape for an N×C×H×W bottom.
    pub fn output_shapes(&self, bottoms: &[Vec<usize>]) -> OpResult<Vec<Vec<usize>>> {
        expect_bottoms(bottoms, 1, 1)?;
        let b = &bottoms[0];
        if b.len() != 4 {
            return Err(OpError::new(format!("needs a 4-D bottom, got {:?}", b)));
        }
        let (k, s, p) = self.effective([b[2], b[3]]);
        if k.contains(&0) || s.contains(&0) {
            return Err(OpError::new("kernel and stride must be positive"));
        }
        if p[0] >= k[0] || p[1] >= k[1] {
            return Err(OpError::new(format!(
                "pad {:?} must be smaller than kernel {:?}",
                p, k
            )));
        }
        let h = Self::out_dim(b[2], k[0], s[0], p[0], self.round)?;
        let w = Self::out_dim(b[3], k[1], s[1], p[1], self.round)?;
        Ok(vec![vec![b[0], b[1], h, w]])
    }

    /// One compare or add per window element and output.
    pub fn flops(&self, bottoms: &[Vec<usize>], tops: &[Vec<usize>]) -> u64 {
        let b = &bottoms[0];
        let (k, _, _) = self.effective([b[2], b[3]]);
        (tops[0].iter().product::<usize>() * k[0] * k[1]) as u64
    }
}

impl PoolParams {
    /// The window geometry for an N×C×H×W bottom.
    pub fn window(&self, bottom: &[usize]) -> OpResult<PoolWindow> {
        let out = self.output_shapes(&[bottom.to_vec()])?;
        let (kernel, stride, pad) = self.effective([bottom[2], bottom[3]]);
        Ok(PoolWindow {
            input: [bottom[2], bottom[3]],
            output: [out[0][2], out[0][3]],
            kernel,
            stride,
            pad,
        })
    }

    /// Forward pass (Caffe `PoolingLayer::Forward_cpu`, MAX and AVE), parallel over the
    /// N·C planes.
    pub fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> OpResult<Tensor> {
        let win = self.window(&x.shape)?;
        let mut y = ctx.tensor(&[x.shape[0], x.shape[1], win.output[0], win.output[1]]);
        let (in_plane, out_plane) = (win.input[0] * win.input[1], win.output[0] * win.output[1]);
        if y.is_empty() || in_plane == 0 {
            return Ok(y);
        }
        // A few planes per task: enough to amortise the window tables, small enough to
        // split one image's channels over the threads.
        const PLANES_PER_TASK: usize = 8;
        let method = self.method;
        y.data
            .par_chunks_mut(out_plane * PLANES_PER_TASK)
            .zip(x.data.par_chunks(in_plane * PLANES_PER_TASK))
            .for_each(|(dst, src)| match method {
                PoolMethod::Max => win.max_planes(src, dst),
                PoolMethod::Ave => win.ave_planes(src, dst),
            });
        Ok(y)
    }
}
