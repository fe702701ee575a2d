//! Training-only heads: SoftmaxWithLoss (Caffe `SoftmaxWithLossLayer`) and Accuracy.
//! Both take (scores, labels) and produce a scalar blob.

use super::{canonical_axis, expect_bottoms, OpError, OpResult};

/// How SoftmaxWithLoss divides the summed loss (Caffe `LossParameter.NormalizationMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normalization {
    /// Divide by the batch size times spatial positions, ignoring nothing.
    Full,
    /// Divide by the number of labels that are not `ignore_label` (Caffe's default).
    Valid,
    /// Divide by the batch size.
    BatchSize,
    /// No division.
    None,
}

/// SoftmaxWithLoss parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct SoftmaxLossParams {
    /// Class axis.
    pub axis: i32,
    /// Label value that contributes neither loss nor gradient.
    pub ignore_label: Option<i32>,
    /// Loss normalisation.
    pub normalization: Normalization,
}

impl Default for SoftmaxLossParams {
    fn default() -> Self {
        Self {
            axis: 1,
            ignore_label: None,
            normalization: Normalization::Valid,
        }
    }
}

/// Accuracy parameters (Caffe `AccuracyParameter`).
#[derive(Debug, Clone, PartialEq)]
pub struct AccuracyParams {
    /// A prediction is correct when the label is among the top k scores.
    pub top_k: usize,
    /// Class axis.
    pub axis: i32,
    /// Label value that is skipped.
    pub ignore_label: Option<i32>,
}

impl Default for AccuracyParams {
    fn default() -> Self {
        Self {
            top_k: 1,
            axis: 1,
            ignore_label: None,
        }
    }
}

/// Shape rule of both heads: (scores, labels) → a scalar; the label count must equal the
/// number of score rows.
pub fn scalar_head_shapes(axis: i32, bottoms: &[Vec<usize>]) -> OpResult<Vec<Vec<usize>>> {
    expect_bottoms(bottoms, 2, 2)?;
    let a = canonical_axis(axis, bottoms[0].len())?;
    let rows: usize =
        bottoms[0][..a].iter().product::<usize>() * bottoms[0][a + 1..].iter().product::<usize>();
    let labels: usize = bottoms[1].iter().product();
    if rows != labels {
        return Err(OpError::new(format!(
            "{labels} labels for {rows} predictions (scores {:?}, labels {:?})",
            bottoms[0], bottoms[1]
        )));
    }
    Ok(vec![vec![]])
}
