//! Operators: one file per family. Each file is the single home of its layer(s): the
//! parameters (in Caffe's terms, with Caffe's defaults), the shape rule, the f32 forward,
//! the backward used by training and the FLOP count. [`crate::ir::Op`] dispatches here.

pub mod activation;
pub mod batchnorm;
pub mod concat;
pub mod conv;
pub mod data;
pub mod dropout;
pub mod eltwise;
pub mod gemm;
pub mod inner_product;
pub mod loss;
pub mod lrn;
pub mod pool;
pub mod reshape;
pub mod softmax;

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
