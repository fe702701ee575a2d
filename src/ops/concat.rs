//! Concat (Caffe `ConcatLayer`): joins bottoms along `axis` (default 1, channels); every
//! other dimension must agree.

use super::ctx::Ctx;
use super::{canonical_axis, expect_bottoms, OpError, OpResult};
use crate::ir::Tensor;

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

impl ConcatParams {
    /// Forward pass (Caffe `ConcatLayer::Forward_cpu`): for every index of the axes before
    /// `axis`, the bottoms' blocks are copied one after the other.
    pub fn forward(&self, bottoms: &[&Tensor], ctx: &mut Ctx) -> OpResult<Tensor> {
        let shapes: Vec<Vec<usize>> = bottoms.iter().map(|b| b.shape.clone()).collect();
        let out_shape = self.output_shapes(&shapes)?.remove(0);
        let axis = canonical_axis(self.axis, out_shape.len())?;
        let outer: usize = out_shape[..axis].iter().product();
        let mut y = ctx.tensor(&out_shape);
        let mut offset = 0;
        for o in 0..outer {
            for b in bottoms {
                let block = b.count_from(axis);
                y.data[offset..offset + block].copy_from_slice(&b.data[o * block..][..block]);
                offset += block;
            }
        }
        Ok(y)
    }
}

// ---- backward (training) ----

impl ConcatParams {
    /// Backward (Caffe `ConcatLayer::Backward_cpu`): the top diff is cut back into the
    /// bottoms' slices along `axis`.
    pub fn backward(
        &self,
        top_diff: &Tensor,
        bottom_shapes: &[Vec<usize>],
    ) -> OpResult<Vec<Tensor>> {
        let out = self.output_shapes(bottom_shapes)?.remove(0);
        if top_diff.shape != out {
            return Err(OpError::new(
                "top diff shape differs from the concatenation",
            ));
        }
        let a = canonical_axis(self.axis, out.len())?;
        let outer: usize = out[..a].iter().product();
        let inner: usize = out[a + 1..].iter().product();
        let top_block = out[a] * inner;
        let mut offset = 0;
        let mut diffs = Vec::with_capacity(bottom_shapes.len());
        for s in bottom_shapes {
            let block = s[a] * inner;
            let mut d = Tensor::zeros(s);
            for o in 0..outer {
                d.data[o * block..][..block]
                    .copy_from_slice(&top_diff.data[o * top_block + offset..][..block]);
            }
            offset += block;
            diffs.push(d);
        }
        Ok(diffs)
    }
}
