//! Concat (Caffe `ConcatLayer`): joins bottoms along `axis` (default 1, channels); every
//! other dimension must agree.

use super::{canonical_axis, expect_bottoms, OpError, OpResult};

/// Concat parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct ConcatParams {
    /// Axis to join along (may be negative).
    pub axis: i32,
}

impl Default for ConcatParams {
    fn default() -> Self {
        Self { axis: 1 }
    }
}

impl ConcatParams {
    /// The bottoms' shape with the `axis` dimensions summed.
    pub fn output_shapes(&self, bottoms: &[Vec<usize>]) -> OpResult<Vec<Vec<usize>>> {
        expect_bottoms(bottoms, 1, usize::MAX)?;
        let a = canonical_axis(self.axis, bottoms[0].len())?;
        let mut out = bottoms[0].clone();
        for b in &bottoms[1..] {
            if b.len() != out.len()
                || b.iter()
                    .zip(&bottoms[0])
                    .enumerate()
                    .any(|(i, (x, y))| i != a && x != y)
            {
                return Err(OpError::new(format!(
                    "shapes {:?} and {:?} differ outside axis {a}",
                    bottoms[0], b
                )));
            }
            out[a] += b[a];
        }
        Ok(vec![out])
    }
}
