//! The network IR: the hub every format reads into and writes from, and every engine runs.
//!
//! A [`Net`] is an ordered list of [`Layer`]s over named blobs. Caffe's in-place layers
//! (`top == bottom`) are renamed on import so that every IR blob has exactly one producer;
//! the original Caffe names are kept on the layer for reports and for writing back.

mod filler;
mod net;
mod op;
pub mod report;
mod tensor;

pub use filler::{Filler, VarianceNorm};
pub use net::{BlobShapes, InputSpec, IrError, Layer, Net, ParamSpec, Phase, WeightPrecision};
pub use op::Op;
pub use tensor::{shape_string, Tensor};
