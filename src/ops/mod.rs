//! Operators: one file per family. Each file is the single home of its layer(s): the
//! parameters (in Caffe's terms, with Caffe's defaults), the shape rule, the f32 forward,
//! the backward used by training and the FLOP count. [`crate::ir::Op`] dispatches here.
//!
//! # Forward API
//! Every op has a forward next to its shape rule, with the same shape in every file:
//! `forward(&self, bottom(s), blobs: &[Tensor], ctx: &mut Ctx, …) -> OpResult<Tensor>`, or
//! `apply(&self, x: &mut Tensor, …)` for ops Caffe may run in place (activations, Dropout,
//! BatchNorm, Scale). [`dispatch::forward`] maps an [`crate::ir::Op`] to it. A backward
//! goes next to each forward with the mirrored shape, `backward(&self, top_diff, bottoms,
//! blobs, ctx) -> OpResult<(bottom_diffs, blob_diffs)>`, reading what the forward left in
//! [`ctx::Ctx::saved`] (Dropout's mask, BatchNorm's batch statistics, the loss's
//! probabilities).
//!
//! [`ctx::Ctx`] carries the phase (TRAIN/TEST), a seeded RNG, the thread budget and a pool of
//! recycled buffers: outputs come from `Ctx::tensor`, which reuses memory freed by earlier
//! layers. Operators parallelise with rayon inside the caller's pool.

pub mod activation;
pub mod backward;
pub mod batchnorm;
pub mod col2im;
pub mod concat;
pub mod conv;
pub mod ctx;
pub mod data;
pub mod deconv;
pub mod dispatch;
pub mod dropout;
pub mod eltwise;
pub mod gemm;
pub mod im2col;
pub mod inner_product;
pub mod loss;
pub mod lrn;
pub mod pool;
pub mod reshape;
pub mod softmax;
pub mod window;

/// An error from a shape rule or a forward pass, without the layer name (the caller adds it).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct OpError(pub String);

impl OpError {
    /// Builds an error from anything printable.
    pub fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}

/// Result of an operator function.
pub type OpResult<T> = Result<T, OpError>;

/// Resolves a possibly negative Caffe axis (`CanonicalAxisIndex`) against `ndim`.
pub fn canonical_axis(axis: i32, ndim: usize) -> OpResult<usize> {
    let n = ndim as i32;
    if axis < -n || axis >= n.max(1) {
        return Err(OpError::new(format!(
            "axis {axis} out of range for a {ndim}-D blob"
        )));
    }
    Ok(if axis < 0 {
        (axis + n) as usize
    } else {
        axis as usize
    })
}

/// Checks the number of bottoms a layer receives.
pub fn expect_bottoms(bottoms: &[Vec<usize>], min: usize, max: usize) -> OpResult<()> {
    if bottoms.len() < min || bottoms.len() > max {
        let want = if min == max {
            format!("{min}")
        } else {
            format!("{min}..={max}")
        };
        return Err(OpError::new(format!(
            "expects {want} bottom blob(s), got {}",
            bottoms.len()
        )));
    }
    Ok(())
}

/// Checks that learned blob `index` exists and holds `len` values (a missing caffemodel
/// layer leaves a layer without blobs; the forward must report it, not index past the end).
pub fn expect_blob_len(
    blobs: &[crate::ir::Tensor],
    index: usize,
    len: usize,
    what: &str,
) -> OpResult<()> {
    match blobs.get(index) {
        None => Err(OpError::new(format!(
            "missing learned blob {index} ({what}); the layer has {} blob(s)",
            blobs.len()
        ))),
        Some(b) if b.len() != len => Err(OpError::new(format!(
            "learned blob {index} ({what}) has {} values, expected {len}",
            b.len()
        ))),
        Some(_) => Ok(()),
    }
}

/// Whether a batch of `images` is split one image per rayon task (each running its own
/// single-threaded GEMM, no synchronisation inside a layer) rather than processed one image
/// at a time with multithreaded kernels: only when the images spread evenly enough that no
/// thread idles for long (batch 1 on 2 threads would use one core; 3 images on 2 threads
/// would leave one idle for a third of the layer).
pub fn per_image_parallel(images: usize, threads: usize) -> bool {
    threads > 1 && images >= threads && (images.is_multiple_of(threads) || images >= 4 * threads)
}

#[cfg(test)]
pub(crate) mod tests;
