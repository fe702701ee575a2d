//! Eltwise (Caffe `EltwiseLayer`): element-wise PROD, SUM (with optional coefficients) or
//! MAX of two or more equal-shaped bottoms.

use super::ctx::Ctx;
use super::{expect_bottoms, OpError, OpResult};
use crate::ir::Tensor;

/// Eltwise operation; Caffe's default is SUM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EltwiseOp {
    /// Product.
    Prod,
    /// Weighted sum.
    Sum,
    /// Maximum.
    Max,
}

/// Eltwise parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct EltwiseParams {
    /// The operation.
    pub op: EltwiseOp,
    /// One coefficient per bottom for SUM (empty means all 1).
    pub coeffs: Vec<f32>,
}

impl Default for EltwiseParams {
    fn default() -> Self {
        Self {
            op: EltwiseOp::Sum,
            coeffs: Vec::new(),
        }
    }
}

impl EltwiseParams {
    /// All bottoms must have one shape; coefficients only with SUM, one per bottom.
    pub fn output_shapes(&self, bottoms: &[Vec<usize>]) -> OpResult<Vec<Vec<usize>>> {
        expect_bottoms(bottoms, 2, usize::MAX)?;
        if let Some(b) = bottoms.iter().find(|b| *b != &bottoms[0]) {
            return Err(OpError::new(format!(
                "bottom shapes {:?} and {:?} differ",
                bottoms[0], b
            )));
        }
        if !self.coeffs.is_empty()
            && (self.op != EltwiseOp::Sum || self.coeffs.len() != bottoms.len())
        {
            return Err(OpError::new(
                "coefficients need operation SUM and one per bottom",
            ));
        }
        Ok(vec![bottoms[0].clone()])
    }

    /// Coefficient of bottom `i` (1 when none are given).
    pub fn coeff(&self, i: usize) -> f32 {
        self.coeffs.get(i).copied().unwrap_or(1.0)
    }
}

impl EltwiseParams {
    /// Forward pass (Caffe `EltwiseLayer::Forward_cpu`): PROD multiplies the bottoms in
    /// order; SUM starts from 0 and adds `coeff_i · b_i` in order; MAX keeps the larger
    /// value (a later bottom wins only when strictly greater).
    pub fn forward(&self, bottoms: &[&Tensor], ctx: &mut Ctx) -> OpResult<Tensor> {
        let shapes: Vec<Vec<usize>> = bottoms.iter().map(|b| b.shape.clone()).collect();
        let out_shape = self.output_shapes(&shapes)?.remove(0);
        let mut y = ctx.tensor(&out_shape);
        match self.op {
            EltwiseOp::Prod => {
                y.data.copy_from_slice(&bottoms[0].data);
                for b in &bottoms[1..] {
                    for (v, x) in y.data.iter_mut().zip(&b.data) {
                        *v *= x;
                    }
                }
            }
            EltwiseOp::Sum => {
                y.data.fill(0.0);
                for (i, b) in bottoms.iter().enumerate() {
                    let c = self.coeff(i);
                    for (v, x) in y.data.iter_mut().zip(&b.data) {
                        *v += c * x;
                    }
                }
            }
            EltwiseOp::Max => {
                y.data.copy_from_slice(&bottoms[0].data);
                for b in &bottoms[1..] {
                    for (v, &x) in y.data.iter_mut().zip(&b.data) {
                        if x > *v {
                            *v = x;
                        }
                    }
                }
            }
        }
        Ok(y)
    }
}

// ---- backward (training) ----

impl EltwiseParams {
    /// Backward (Caffe `EltwiseLayer::Backward_cpu`). SUM: `dx_i = coeff_i · dy`. PROD
    /// (Caffe's default stable gradient): `dx_i = dy · Π_{j≠i} x_j`. MAX: `dy` goes to the
    /// bottom Caffe's forward marked as the maximum: bottom 1 unless bottom 0 is strictly
    /// greater, then a later bottom only when strictly greater than the running maximum.
    pub fn backward(&self, top_diff: &Tensor, bottoms: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let shapes: Vec<Vec<usize>> = bottoms.iter().map(|b| b.shape.clone()).collect();
        let out = self.output_shapes(&shapes)?.remove(0);
        if top_diff.shape != out {
            return Err(OpError::new("top diff shape differs from the bottoms'"));
        }
        let n = top_diff.len();
        let mut diffs: Vec<Tensor> = shapes.iter().map(|s| Tensor::zeros(s)).collect();
        match self.op {
            EltwiseOp::Sum => {
                for (i, d) in diffs.iter_mut().enumerate() {
                    let c = self.coeff(i);
                    d.data
                        .iter_mut()
                        .zip(&top_diff.data)
                        .for_each(|(d, g)| *d = c * g);
                }
            }
            EltwiseOp::Prod => {
                for (i, d) in diffs.iter_mut().enumerate() {
                    for (k, v) in d.data.iter_mut().enumerate() {
                        let others: f32 = bottoms
                            .iter()
                            .enumerate()
                            .filter(|(j, _)| *j != i)
                            .map(|(_, b)| b.data[k])
                            .product();
                        *v = top_diff.data[k] * others;
                    }
                }
            }
            EltwiseOp::Max => {
                for k in 0..n {
                    let (a, b) = (bottoms[0].data[k], bottoms[1].data[k]);
                    let (mut best, mut at) = if a > b { (a, 0) } else { (b, 1) };
                    for (j, x) in bottoms.iter().enumerate().skip(2) {
                        if x.data[k] > best {
                            best = x.data[k];
                            at = j;
                        }
                    }
                    diffs[at].data[k] = top_diff.data[k];
                }
            }
        }
        Ok(diffs)
    }
}
