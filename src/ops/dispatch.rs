//! The single entry point from an [`Op`] to its forward function. Engines (f32, the fp16
//! emulation) and the trainer call these; each op's own file holds the arithmetic.

use super::activation::{sigmoid_in_place, tanh_in_place, ReluParams, ELEMENTWISE_CHUNK};
use super::ctx::Ctx;
use super::reshape::{reshape_forward, reshape_in_place, split_forward};
use super::{expect_bottoms, OpError, OpResult};
use crate::ir::{Layer, Op, Tensor};
use rayon::prelude::*;

/// Forward of one layer: `op` over `bottoms` with learned `blobs`, producing `n_tops` tops
/// (only Split has more than one). Shapes are checked with the op's own shape rule, so a
/// caller that skipped `Net::infer_shapes` gets an error, not a panic.
pub fn forward(
    op: &Op,
    bottoms: &[&Tensor],
    blobs: &[Tensor],
    n_tops: usize,
    ctx: &mut Ctx,
) -> OpResult<Vec<Tensor>> {
    forward_fused(op, bottoms, blobs, n_tops, ctx, None)
}

/// [`forward`] with a following ReLU (negative slope `relu`) fused into the op's output
/// pass. Only Convolution and InnerProduct fuse ([`can_fuse_relu`]); for other ops the
/// ReLU is applied afterwards, so the result is the same either way.
pub fn forward_fused(
    op: &Op,
    bottoms: &[&Tensor],
    blobs: &[Tensor],
    n_tops: usize,
    ctx: &mut Ctx,
    relu: Option<f32>,
) -> OpResult<Vec<Tensor>> {
    let shapes: Vec<Vec<usize>> = bottoms.iter().map(|b| b.shape.clone()).collect();
    let out_shapes = op.output_shapes(&shapes, n_tops)?;
    let mut tops = match op {
        Op::Input { .. } | Op::Data(_) => {
            return Err(OpError::new(
                "source layers have no forward; the caller feeds their tops",
            ))
        }
        Op::Convolution(p) => return Ok(vec![p.forward(bottoms[0], blobs, ctx, relu)?]),
        Op::Deconvolution(p) => vec![p.forward(bottoms[0], blobs, ctx)?],
        Op::InnerProduct(p) => return Ok(vec![p.forward(bottoms[0], blobs, ctx, relu)?]),
        Op::Pooling(p) => vec![p.forward(bottoms[0], ctx)?],
        Op::Lrn(p) => vec![p.forward(bottoms[0], ctx)?],
        Op::Softmax(p) => vec![p.forward(bottoms[0], ctx)?],
        Op::SoftmaxWithLoss(p) => vec![p.forward(bottoms[0], bottoms[1], ctx)?],
        Op::Accuracy(p) => vec![p.forward(bottoms[0], bottoms[1])?],
        Op::Concat(p) => vec![p.forward(bottoms, ctx)?],
        Op::Eltwise(p) => vec![p.forward(bottoms, ctx)?],
        Op::Split => split_forward(bottoms[0], n_tops, ctx),
        Op::Scale(p) if bottoms.len() == 2 => {
            let mut y = copy_of(bottoms[0], ctx);
            p.apply(&mut y, Some(bottoms[1]), blobs)?;
            vec![y]
        }
        Op::Flatten(_) | Op::Reshape(_) => vec![reshape_forward(bottoms[0], &out_shapes[0], ctx)?],
        Op::Relu(_)
        | Op::PRelu(_)
        | Op::Sigmoid
        | Op::TanH
        | Op::Dropout(_)
        | Op::BatchNorm(_)
        | Op::Scale(_) => {
            let mut y = copy_of(bottoms[0], ctx);
            forward_in_place(op, &mut y, blobs, ctx)?;
            vec![y]
        }
    };
    if let (Some(slope), Some(top)) = (relu, tops.first_mut()) {
        ReluParams {
            negative_slope: slope,
        }
        .apply(&mut top.data);
    }
    Ok(tops)
}

/// [`forward`] for an IR layer with its own learned blobs and tops.
pub fn forward_layer(layer: &Layer, bottoms: &[&Tensor], ctx: &mut Ctx) -> OpResult<Vec<Tensor>> {
    forward(&layer.op, bottoms, &layer.blobs, layer.tops.len(), ctx)
}

/// True for ops that can take a following ReLU into their own output pass.
pub fn can_fuse_relu(op: &Op) -> bool {
    matches!(op, Op::Convolution(_) | Op::InnerProduct(_))
}

/// True for single-bottom, single-top ops whose output can overwrite their input (Caffe
/// runs exactly these in place when `top == bottom`); see [`forward_in_place`].
pub fn supports_in_place(op: &Op) -> bool {
    matches!(
        op,
        Op::Relu(_)
            | Op::PRelu(_)
            | Op::Sigmoid
            | Op::TanH
            | Op::Dropout(_)
            | Op::BatchNorm(_)
            | Op::Scale(_)
            | Op::Flatten(_)
            | Op::Reshape(_)
    )
}

/// Runs an in-place-capable op over `x`, overwriting it with the top. Used by the engine
/// when the bottom is not needed again, which saves a copy and keeps the data in cache.
pub fn forward_in_place(op: &Op, x: &mut Tensor, blobs: &[Tensor], ctx: &mut Ctx) -> OpResult<()> {
    let shapes = [x.shape.clone()];
    expect_bottoms(&shapes, 1, 1)?;
    match op {
        Op::Relu(p) => {
            p.apply(&mut x.data);
            Ok(())
        }
        Op::Sigmoid => {
            x.data
                .par_chunks_mut(ELEMENTWISE_CHUNK)
                .for_each(sigmoid_in_place);
            Ok(())
        }
        Op::TanH => {
            x.data
                .par_chunks_mut(ELEMENTWISE_CHUNK)
                .for_each(tanh_in_place);
            Ok(())
        }
        Op::PRelu(p) => p.apply(x, blobs),
        Op::Dropout(p) => p.apply(x, ctx),
        Op::BatchNorm(p) => p.apply(x, blobs, ctx),
        Op::Scale(p) => {
            p.output_shapes(&shapes)?;
            p.apply(x, None, blobs)
        }
        Op::Flatten(_) | Op::Reshape(_) => {
            let out = op.output_shapes(&shapes, 1)?;
            reshape_in_place(x, &out[0])
        }
        other => Err(OpError::new(format!(
            "{} cannot run in place",
            other.caffe_type()
        ))),
    }
}

/// A recycled-buffer copy of `x`.
fn copy_of(x: &Tensor, ctx: &mut Ctx) -> Tensor {
    let mut y = ctx.tensor(&x.shape);
    y.data.copy_from_slice(&x.data);
    y
}
