//! Eltwise (Caffe `EltwiseLayer`): element-wise PROD, SUM (with optional coefficients) or
//! MAX of two or more equal-shaped bottoms.

use super::{expect_bottoms, OpError, OpResult};

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
