//! Element-wise activations: ReLU (with Caffe's `negative_slope`, i.e. leaky), PReLU
//! (learned per-channel slopes), Sigmoid and TanH. All keep the bottom's shape.

use super::{expect_blob_len, expect_bottoms, OpError, OpResult};
use crate::ir::{Filler, Tensor};

/// ReLU parameters: `y = max(0, x) + negative_slope · min(0, x)`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReluParams {
    /// Slope for negative inputs (0 = plain ReLU).
    pub negative_slope: f32,
}

/// PReLU parameters: `y = max(0, x) + a_c · min(0, x)` with one learned `a` per channel, or
/// a single shared one.
#[derive(Debug, Clone, PartialEq)]
pub struct PReluParams {
    /// One slope for all channels.
    pub channel_shared: bool,
    /// Filler for the slopes (Caffe's default: constant 0.25).
    pub filler: Filler,
}

impl Default for PReluParams {
    fn default() -> Self {
        Self {
            channel_shared: false,
            filler: Filler::Constant { value: 0.25 },
        }
    }
}

impl PReluParams {
    /// Slope blob shape: `[C]`, or `[]`-like `[1]` when shared.
    pub fn weight_shapes(&self, bottoms: &[Vec<usize>]) -> Vec<Vec<usize>> {
        let c = bottoms.first().and_then(|b| b.get(1)).copied().unwrap_or(1);
        vec![vec![if self.channel_shared { 1 } else { c }]]
    }
}

/// Shape rule shared by every element-wise activation.
pub fn same_shape(bottoms: &[Vec<usize>]) -> OpResult<Vec<Vec<usize>>> {
    expect_bottoms(bottoms, 1, 1)?;
    if bottoms[0].is_empty() {
        return Err(OpError::new("bottom has no dimensions"));
    }
    Ok(vec![bottoms[0].clone()])
}

/// Caffe's ReLU on a slice: `max(x, 0) + negative_slope · min(x, 0)` (so a plain ReLU maps
/// negatives to +0, as Caffe does). Written branch-free so it vectorises.
pub fn relu_in_place(x: &mut [f32], negative_slope: f32) {
    if negative_slope == 0.0 {
        for v in x.iter_mut() {
            *v = if *v > 0.0 { *v } else { 0.0 };
        }
    } else {
        for v in x.iter_mut() {
            let pos = if *v > 0.0 { *v } else { 0.0 };
            let neg = if *v < 0.0 { *v } else { 0.0 };
            *v = pos + negative_slope * neg;
        }
    }
}

/// Caffe's sigmoid (`SigmoidLayer`): `0.5 · tanh(0.5 · x) + 0.5`, which equals
/// `1 / (1 + e^−x)` without overflowing for large |x|.
pub fn sigmoid_in_place(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = 0.5 * (0.5 * *v).tanh() + 0.5;
    }
}

/// Caffe's TanH layer.
pub fn tanh_in_place(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = v.tanh();
    }
}

/// Elements per parallel task for element-wise work: large enough to amortise rayon's
/// scheduling, small enough to split one image's activations over the threads.
pub(crate) const ELEMENTWISE_CHUNK: usize = 1 << 16;

impl ReluParams {
    /// ReLU on `x` in place, split over the rayon pool.
    pub fn apply(&self, x: &mut [f32]) {
        use rayon::prelude::*;
        let slope = self.negative_slope;
        x.par_chunks_mut(ELEMENTWISE_CHUNK)
            .for_each(|c| relu_in_place(c, slope));
    }
}

impl PReluParams {
    /// PReLU in place (Caffe `PReLULayer::Forward_cpu`): channel `c = (i / HW) % C` of a
    /// bottom whose axis 1 is the channel axis, `y = max(x, 0) + a_c · min(x, 0)`.
    pub fn apply(&self, x: &mut Tensor, blobs: &[Tensor]) -> OpResult<()> {
        let channels = if x.shape.len() > 1 { x.shape[1] } else { 1 };
        let slopes = if self.channel_shared { 1 } else { channels };
        expect_blob_len(blobs, 0, slopes, "slopes")?;
        let a = &blobs[0].data;
        let inner = x.count_from(2).max(1);
        if self.channel_shared {
            relu_in_place(&mut x.data, a[0]);
        } else {
            use rayon::prelude::*;
            x.data
                .par_chunks_mut(inner)
                .enumerate()
                .for_each(|(i, plane)| relu_in_place(plane, a[i % channels]));
        }
        Ok(())
    }
}
