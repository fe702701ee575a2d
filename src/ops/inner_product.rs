//! InnerProduct (Caffe `InnerProductLayer`): the bottom is flattened from `axis` into K
//! inputs, `y = x · Wᵀ + b` with W stored `[num_output, K]` (or `[K, num_output]` when
//! `transpose` is set).

use super::{canonical_axis, expect_bottoms, OpError, OpResult};
use crate::ir::Filler;

/// InnerProduct parameters with Caffe's defaults (bias on, axis 1, no transpose).
#[derive(Debug, Clone, PartialEq)]
pub struct InnerProductParams {
    /// Number of outputs N.
    pub num_output: usize,
    /// Whether a bias blob `[N]` follows the weights.
    pub bias_term: bool,
    /// First axis that is flattened into K (may be negative).
    pub axis: i32,
    /// Weights stored `[K, N]` instead of `[N, K]`.
    pub transpose: bool,
    /// Filler for the weights.
    pub weight_filler: Filler,
    /// Filler for the bias.
    pub bias_filler: Filler,
}

impl Default for InnerProductParams {
    fn default() -> Self {
        Self {
            num_output: 0,
            bias_term: true,
            axis: 1,
            transpose: false,
            weight_filler: Filler::default(),
            bias_filler: Filler::default(),
        }
    }
}

impl InnerProductParams {
    /// (M, K): rows (the product of the dims before `axis`) and inputs per row.
    pub fn m_k(&self, bottom: &[usize]) -> OpResult<(usize, usize)> {
        let axis = canonical_axis(self.axis, bottom.len())?;
        Ok((
            bottom[..axis].iter().product(),
            bottom[axis..].iter().product(),
        ))
    }

    /// Output shape: the bottom's dims before `axis`, then N.
    pub fn output_shapes(&self, bottoms: &[Vec<usize>]) -> OpResult<Vec<Vec<usize>>> {
        expect_bottoms(bottoms, 1, 1)?;
        if self.num_output == 0 {
            return Err(OpError::new("num_output must be positive"));
        }
        let axis = canonical_axis(self.axis, bottoms[0].len())?;
        let mut s = bottoms[0][..axis].to_vec();
        s.push(self.num_output);
        Ok(vec![s])
    }

    /// `[N, K]` (or `[K, N]`) and `[N]`.
    pub fn weight_shapes(&self, bottoms: &[Vec<usize>]) -> Vec<Vec<usize>> {
        let k = bottoms
            .first()
            .and_then(|b| self.m_k(b).ok())
            .map(|(_, k)| k)
            .unwrap_or(0);
        let w = if self.transpose {
            vec![k, self.num_output]
        } else {
            vec![self.num_output, k]
        };
        let mut v = vec![w];
        if self.bias_term {
            v.push(vec![self.num_output]);
        }
        v
    }

    /// 2 × M × N × K.
    pub fn flops(&self, bottoms: &[Vec<usize>]) -> u64 {
        let (m, k) = self.m_k(&bottoms[0]).unwrap_or((0, 0));
        2 * (m * k * self.num_output) as u64
    }
}
