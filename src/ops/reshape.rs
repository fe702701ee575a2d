//! Layers that only change how a blob is viewed or shared: Flatten, Reshape and Split.

use super::ctx::Ctx;
use super::{canonical_axis, expect_bottoms, OpError, OpResult};
use crate::ir::Tensor;

/// Flatten (Caffe `FlattenLayer`): merges axes `axis..=end_axis` into one.
#[derive(Debug, Clone, PartialEq)]
pub struct FlattenParams {
    /// First axis merged (default 1).
    pub axis: i32,
    /// Last axis merged (default −1).
    pub end_axis: i32,
}

impl Default for FlattenParams {
    fn default() -> Self {
        Self {
            axis: 1,
            end_axis: -1,
        }
    }
}

impl FlattenParams {
    /// The flattened shape.
    pub fn output_shapes(&self, bottoms: &[Vec<usize>]) -> OpResult<Vec<Vec<usize>>> {
        expect_bottoms(bottoms, 1, 1)?;
        let b = &bottoms[0];
        let s = canonical_axis(self.axis, b.len())?;
        let e = canonical_axis(self.end_axis, b.len())?;
        if e < s {
            return Err(OpError::new(format!("end_axis {e} is before axis {s}")));
        }
        let mut out = b[..s].to_vec();
        out.push(b[s..=e].iter().product());
        out.extend_from_slice(&b[e + 1..]);
        Ok(vec![out])
    }
}

/// Reshape (Caffe `ReshapeLayer`): dims replace `num_axes` axes from `axis`; 0 copies the
/// bottom's dim, −1 is inferred.
#[derive(Debug, Clone, PartialEq)]
pub struct ReshapeParams {
    /// Target dims (0 = copy, −1 = infer).
    pub dims: Vec<i64>,
    /// First replaced axis (default 0).
    pub axis: i32,
    /// Number of replaced axes (−1 = all from `axis`).
    pub num_axes: i32,
}

impl Default for ReshapeParams {
    fn default() -> Self {
        Self {
            dims: Vec::new(),
            axis: 0,
            num_axes: -1,
        }
    }
}

impl ReshapeParams {
    /// Caffe's reshape rule.
    pub fn output_shapes(&self, bottoms: &[Vec<usize>]) -> OpResult<Vec<Vec<usize>>> {
        expect_bottoms(bottoms, 1, 1)?;
        let b = &bottoms[0];
        let start = if self.axis < 0 {
            (b.len() as i32 + 1 + self.axis) as usize
        } else {
            self.axis as usize
        };
        if start > b.len() {
            return Err(OpError::new(format!(
                "axis {} out of range for {:?}",
                self.axis, b
            )));
        }
        let end = if self.num_axes < 0 {
            b.len()
        } else {
            start + self.num_axes as usize
        };
        if end > b.len() {
            return Err(OpError::new(format!(
                "num_axes {} out of range for {:?}",
                self.num_axes, b
            )));
        }
        let mut mid = Vec::with_capacity(self.dims.len());
        let mut infer = None;
        for (i, &d) in self.dims.iter().enumerate() {
            match d {
                0 => mid.push(
                    *b.get(start + i)
                        .ok_or_else(|| OpError::new("dim 0 copies a missing axis"))?,
                ),
                -1 if infer.is_none() => {
                    infer = Some(i);
                    mid.push(1)
                }
                d if d > 0 => mid.push(d as usize),
                _ => return Err(OpError::new(format!("invalid reshape dim {d}"))),
            }
        }
        let mut out = b[..start].to_vec();
        out.extend_from_slice(&mid);
        out.extend_from_slice(&b[end..]);
        let total: usize = b.iter().product();
        if let Some(i) = infer {
            let known: usize = out.iter().product();
            if known == 0 || !total.is_multiple_of(known) {
                return Err(OpError::new(format!(
                    "cannot infer -1: {total} elements into {:?}",
                    out
                )));
            }
            out[start + i] = total / known;
        }
        if out.iter().product::<usize>() != total {
            return Err(OpError::new(format!(
                "reshape {:?} → {:?} changes the element count",
                b, out
            )));
        }
        Ok(vec![out])
    }
}

/// Split (Caffe `SplitLayer`): every top is a copy of the single bottom.
pub fn split_shapes(bottoms: &[Vec<usize>], tops: usize) -> OpResult<Vec<Vec<usize>>> {
    expect_bottoms(bottoms, 1, 1)?;
    Ok(vec![bottoms[0].clone(); tops.max(1)])
}

/// Forward of Flatten and Reshape: the same values under the new shape (Caffe shares the
/// data; the engine moves the tensor instead of copying when the bottom is not needed
/// again, see [`reshape_in_place`]).
pub fn reshape_forward(x: &Tensor, out_shape: &[usize], ctx: &mut Ctx) -> OpResult<Tensor> {
    if out_shape.iter().product::<usize>() != x.len() {
        return Err(OpError::new(format!(
            "cannot view {} values as {:?}",
            x.len(),
            out_shape
        )));
    }
    let mut y = ctx.tensor(out_shape);
    y.data.copy_from_slice(&x.data);
    Ok(y)
}

/// Flatten or Reshape without a copy.
pub fn reshape_in_place(x: &mut Tensor, out_shape: &[usize]) -> OpResult<()> {
    if out_shape.iter().product::<usize>() != x.len() {
        return Err(OpError::new(format!(
            "cannot view {} values as {:?}",
            x.len(),
            out_shape
        )));
    }
    x.shape = out_shape.to_vec();
    Ok(())
}

/// Forward of Split (Caffe `SplitLayer`): one copy of the bottom per top.
pub fn split_forward(x: &Tensor, tops: usize, ctx: &mut Ctx) -> Vec<Tensor> {
    (0..tops.max(1))
        .map(|_| {
            let mut y = ctx.tensor(&x.shape);
            y.data.copy_from_slice(&x.data);
            y
        })
        .collect()
}
