//! Softmax over Caffe's `axis` (default 1): `y = exp(x − max) / Σ exp(x − max)` for every
//! position of the other axes.

use super::{canonical_axis, expect_bottoms, OpResult};

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
