//! BatchNorm and Scale, as Caffe splits them: `BatchNormLayer` only normalises with stored
//! (or batch) statistics; the learned γ/β live in a following `ScaleLayer`.

use super::{canonical_axis, expect_bottoms, OpError, OpResult};
use crate::ir::Filler;

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
