//! Element-wise activations: ReLU (with Caffe's `negative_slope`, i.e. leaky), PReLU
//! (learned per-channel slopes), Sigmoid and TanH. All keep the bottom's shape.

use super::{expect_bottoms, OpError, OpResult};
use crate::ir::Filler;

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
