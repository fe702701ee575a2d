//! Training-only heads: SoftmaxWithLoss (Caffe `SoftmaxWithLossLayer`) and Accuracy.
//! Both take (scores, labels) and produce a scalar blob.

use super::ctx::Ctx;
use super::softmax::softmax_into;
use super::{canonical_axis, expect_bottoms, OpError, OpResult};
use crate::ir::Tensor;

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

/// Reads label `index` as a class number: it must be a whole number in `0..classes`, or
/// the ignore label. `Ok(None)` means ignored.
fn class_of(
    labels: &Tensor,
    index: usize,
    classes: usize,
    ignore: Option<i32>,
) -> OpResult<Option<usize>> {
    let v = labels.data[index];
    if v.fract() != 0.0 || !v.is_finite() {
        return Err(OpError::new(format!(
            "label {index} is {v}, not a class number"
        )));
    }
    if ignore == Some(v as i32) {
        return Ok(None);
    }
    if v < 0.0 || v as usize >= classes {
        return Err(OpError::new(format!(
            "label {index} is {v}, outside 0..{classes}"
        )));
    }
    Ok(Some(v as usize))
}

impl SoftmaxLossParams {
    /// Forward pass (Caffe `SoftmaxWithLossLayer::Forward_cpu`): softmax over `axis`, then
    /// `−Σ log(max(p_label, FLT_MIN))` over the labels that are not ignored, divided by
    /// Caffe's normaliser (FULL: N·inner, VALID: labels counted, BATCH_SIZE: N, NONE: 1;
    /// at least 1). The probabilities go to `ctx.saved` for the backward pass.
    pub fn forward(&self, scores: &Tensor, labels: &Tensor, ctx: &mut Ctx) -> OpResult<Tensor> {
        scalar_head_shapes(self.axis, &[scores.shape.clone(), labels.shape.clone()])?;
        let axis = canonical_axis(self.axis, scores.shape.len())?;
        let outer: usize = scores.shape[..axis].iter().product();
        let classes = scores.shape[axis];
        let inner: usize = scores.shape[axis + 1..].iter().product();
        let mut prob = ctx.tensor(&scores.shape);
        softmax_into(&scores.data, &mut prob.data, outer, classes, inner);
        let mut loss = 0.0f32;
        let mut valid = 0usize;
        for o in 0..outer {
            for i in 0..inner {
                if let Some(c) = class_of(labels, o * inner + i, classes, self.ignore_label)? {
                    let p = prob.data[(o * classes + c) * inner + i];
                    loss -= p.max(f32::MIN_POSITIVE).ln();
                    valid += 1;
                }
            }
        }
        let normalizer = match self.normalization {
            Normalization::Full => (outer * inner) as f32,
            Normalization::Valid => valid as f32,
            Normalization::BatchSize => outer as f32,
            Normalization::None => 1.0,
        }
        .max(1.0);
        ctx.saved.push(prob);
        Ok(Tensor {
            shape: vec![],
            data: vec![loss / normalizer],
        })
    }
}

impl AccuracyParams {
    /// Forward pass (Caffe `AccuracyLayer::Forward_cpu`): a prediction counts as correct
    /// when fewer than `top_k` classes score at least as high as the true class (so ties
    /// count against it, as in Caffe); the result is correct / counted labels (0 when none).
    pub fn forward(&self, scores: &Tensor, labels: &Tensor) -> OpResult<Tensor> {
        scalar_head_shapes(self.axis, &[scores.shape.clone(), labels.shape.clone()])?;
        let axis = canonical_axis(self.axis, scores.shape.len())?;
        let outer: usize = scores.shape[..axis].iter().product();
        let classes = scores.shape[axis];
        let inner: usize = scores.shape[axis + 1..].iter().product();
        let (mut correct, mut count) = (0usize, 0usize);
        for o in 0..outer {
            for i in 0..inner {
                let Some(c) = class_of(labels, o * inner + i, classes, self.ignore_label)? else {
                    continue;
                };
                let at = |k: usize| scores.data[(o * classes + k) * inner + i];
                let truth = at(c);
                let better = (0..classes).filter(|&k| at(k) >= truth).count() - 1;
                if better < self.top_k {
                    correct += 1;
                }
                count += 1;
            }
        }
        let accuracy = if count == 0 {
            0.0
        } else {
            correct as f32 / count as f32
        };
        Ok(Tensor {
            shape: vec![],
            data: vec![accuracy],
        })
    }
}

// ---- backward (training) ----

impl SoftmaxLossParams {
    /// Backward (Caffe `SoftmaxWithLossLayer::Backward_cpu`) from the probabilities the
    /// forward saved: `dx = p − onehot(label)`, 0 for ignored labels, all scaled by
    /// `loss_weight / normaliser` (the normaliser as in the forward, at least 1).
    /// Labels get no gradient (Caffe refuses to backpropagate to them).
    pub fn backward(&self, prob: &Tensor, labels: &Tensor, loss_weight: f32) -> OpResult<Tensor> {
        let axis = canonical_axis(self.axis, prob.shape.len())?;
        let outer: usize = prob.shape[..axis].iter().product();
        let classes = prob.shape[axis];
        let inner: usize = prob.shape[axis + 1..].iter().product();
        if labels.len() != outer * inner {
            return Err(OpError::new(format!(
                "{} labels for {} predictions",
                labels.len(),
                outer * inner
            )));
        }
        let mut dx = prob.clone();
        let mut valid = 0usize;
        for o in 0..outer {
            for i in 0..inner {
                match class_of(labels, o * inner + i, classes, self.ignore_label)? {
                    Some(c) => {
                        dx.data[(o * classes + c) * inner + i] -= 1.0;
                        valid += 1;
                    }
                    None => {
                        for c in 0..classes {
                            dx.data[(o * classes + c) * inner + i] = 0.0;
                        }
                    }
                }
            }
        }
        let normalizer = match self.normalization {
            Normalization::Full => (outer * inner) as f32,
            Normalization::Valid => valid as f32,
            Normalization::BatchSize => outer as f32,
            Normalization::None => 1.0,
        }
        .max(1.0);
        let scale = loss_weight / normalizer;
        dx.data.iter_mut().for_each(|v| *v *= scale);
        Ok(dx)
    }
}
