//! The single entry point from an [`Op`] to its backward function, the mirror of
//! [`super::dispatch::forward`]. The trainer calls it layer by layer in reverse order; the
//! arithmetic lives next to each op's forward.

use super::ctx::BufferPool;
use super::{OpError, OpResult};
use crate::ir::{Op, Phase, Tensor};

/// Everything a layer's backward reads.
pub struct BackwardArgs<'a> {
    /// The layer's operator.
    pub op: &'a Op,
    /// Its bottoms as the forward saw them.
    pub bottoms: &'a [&'a Tensor],
    /// Its tops as the forward produced them.
    pub tops: &'a [&'a Tensor],
    /// The diff of each top; `None` when nothing downstream depends on it (a zero diff).
    /// For loss layers the (scalar) diff is the loss weight.
    pub top_diffs: &'a [Option<&'a Tensor>],
    /// Learned blobs.
    pub blobs: &'a [Tensor],
    /// What the forward left in `Ctx::saved` (Dropout's mask, BatchNorm's batch statistics,
    /// the loss's probabilities).
    pub saved: &'a [Tensor],
    /// Which bottoms need a diff (Caffe's `propagate_down`).
    pub propagate_down: &'a [bool],
    /// The phase the forward ran in.
    pub phase: Phase,
    /// Threads for GEMMs.
    pub threads: usize,
    /// Recycled buffers for the bottom diffs of the large layers.
    pub buffers: &'a BufferPool,
}

/// Runs the backward of one layer: returns one optional diff per bottom (`None` where not
/// requested or not defined) and accumulates parameter diffs into `param_diffs` (one per
/// learned blob, or empty to skip them).
pub fn backward(a: &BackwardArgs<'_>, param_diffs: &mut [Tensor]) -> OpResult<Vec<Option<Tensor>>> {
    let n_bottoms = a.bottoms.len();
    let mut out: Vec<Option<Tensor>> = vec![None; n_bottoms];
    let want = |i: usize| a.propagate_down.get(i).copied().unwrap_or(false);
    let Some(dy) = a.top_diffs.iter().flatten().next().copied() else {
        return Ok(out);
    };
    let bottom = |i: usize| -> OpResult<&Tensor> {
        a.bottoms
            .get(i)
            .copied()
            .ok_or_else(|| OpError::new(format!("backward needs bottom {i}")))
    };
    let top = |i: usize| -> OpResult<&Tensor> {
        a.tops
            .get(i)
            .copied()
            .ok_or_else(|| OpError::new(format!("backward needs top {i}")))
    };
    match a.op {
        Op::Input { .. } | Op::Data(_) | Op::Accuracy(_) => {}
        Op::Convolution(p) => {
            let x = bottom(0)?;
            let dx = want(0).then(|| a.buffers.zeroed(&x.shape));
            out[0] = p.backward_into(x, dy, a.blobs, param_diffs, dx, a.threads)?
        }
        Op::Deconvolution(p) => {
            let x = bottom(0)?;
            let dx = want(0).then(|| a.buffers.zeroed(&x.shape));
            out[0] = p.backward_into(x, dy, a.blobs, param_diffs, dx, a.threads)?
        }
        Op::InnerProduct(p) => {
            out[0] = p.backward(bottom(0)?, dy, a.blobs, param_diffs, want(0), a.threads)?
        }
        Op::Pooling(p) if want(0) => {
            let (x, y) = (bottom(0)?, top(0)?);
            out[0] = Some(p.backward_into(dy, x, y, a.buffers.zeroed(&x.shape))?)
        }
        Op::Lrn(p) if want(0) => {
            let x = bottom(0)?;
            out[0] = Some(p.backward_into(dy, x, top(0)?, a.buffers.zeroed(&x.shape))?)
        }
        Op::Relu(p) if want(0) => {
            out[0] = Some(p.backward_into(dy, top(0)?, a.buffers.tensor(&dy.shape))?)
        }
        Op::Sigmoid if want(0) => out[0] = Some(super::activation::sigmoid_backward(dy, top(0)?)?),
        Op::TanH if want(0) => out[0] = Some(super::activation::tanh_backward(dy, top(0)?)?),
        Op::PRelu(p) => {
            let slopes = a
                .blobs
                .first()
                .ok_or_else(|| OpError::new("PReLU has no slope blob"))?;
            let dx = p.backward(dy, bottom(0)?, slopes, param_diffs.first_mut())?;
            out[0] = want(0).then_some(dx);
        }
        Op::Dropout(p) if want(0) => {
            let mask = (a.phase == Phase::Train).then(|| a.saved.first()).flatten();
            out[0] = Some(p.backward_into(a.buffers.copy_of(dy), mask)?);
        }
        Op::Softmax(p) if want(0) => out[0] = Some(p.backward(dy, top(0)?)?),
        Op::SoftmaxWithLoss(p) if want(0) => {
            let prob = a.saved.first().ok_or_else(|| {
                OpError::new("SoftmaxWithLoss backward needs the forward's probabilities")
            })?;
            let weight = dy.data.first().copied().unwrap_or(0.0);
            out[0] = Some(p.backward(prob, bottom(1)?, weight)?);
        }
        Op::Concat(p) => {
            let shapes: Vec<Vec<usize>> = a.bottoms.iter().map(|b| b.shape.clone()).collect();
            for (i, d) in p.backward(dy, &shapes)?.into_iter().enumerate() {
                out[i] = want(i).then_some(d);
            }
        }
        Op::Eltwise(p) => {
            for (i, d) in p.backward(dy, a.bottoms)?.into_iter().enumerate() {
                out[i] = want(i).then_some(d);
            }
        }
        Op::Flatten(_) | Op::Reshape(_) if want(0) => {
            let shape = bottom(0)?.shape.clone();
            out[0] = Some(
                a.buffers
                    .copy_of(dy)
                    .reshaped(&shape)
                    .ok_or_else(|| OpError::new("diff size changed"))?,
            );
        }
        Op::Split if want(0) => {
            let mut sum = Tensor::zeros(&bottom(0)?.shape);
            for d in a.top_diffs.iter().flatten() {
                if d.len() != sum.len() {
                    return Err(OpError::new("Split top diff size differs from the bottom"));
                }
                sum.data.iter_mut().zip(&d.data).for_each(|(s, d)| *s += d);
            }
            out[0] = Some(sum);
        }
        Op::BatchNorm(p) if want(0) => {
            let global = p.uses_global_stats(a.phase);
            let var = if global {
                let factor = a
                    .blobs
                    .get(2)
                    .and_then(|f| f.data.first())
                    .copied()
                    .unwrap_or(0.0);
                let scale = if factor == 0.0 { 0.0 } else { 1.0 / factor };
                a.blobs
                    .get(1)
                    .ok_or_else(|| OpError::new("BatchNorm has no variance blob"))?
                    .data
                    .iter()
                    .map(|v| v * scale)
                    .collect()
            } else {
                a.saved
                    .get(1)
                    .ok_or_else(|| OpError::new("BatchNorm backward needs the batch variance"))?
                    .data
                    .clone()
            };
            out[0] = Some(p.backward(dy, top(0)?, &var, global)?);
        }
        Op::Scale(p) => {
            let two = n_bottoms > 1;
            let gamma = if two {
                bottom(1)?
            } else {
                a.blobs
                    .first()
                    .ok_or_else(|| OpError::new("Scale has no scale blob"))?
            };
            let (dx, dgamma) = p.backward(dy, bottom(0)?, gamma, two, param_diffs, want(0))?;
            out[0] = dx;
            if two && want(1) {
                out[1] = dgamma;
            }
        }
        _ => {}
    }
    Ok(out)
}

#[cfg(test)]
#[path = "backward_tests.rs"]
mod tests;
