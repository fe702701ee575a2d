//! agegender: Caffe, ONNX and Movidius NCS model formats around one network IR, native
//! f32 and fp16 (NCS-emulating) engines, numerical verification across formats, UTKFace
//! data preparation and Caffe-compatible training of the Levi & Hassner age and gender nets.
//!
//! The architecture is a hub and spokes: every format converts to and from [`ir::Net`],
//! and every engine runs an `ir::Net`.

#![warn(missing_docs)]

pub mod caffe;
pub mod cli;
pub mod data;
pub mod eval;
pub mod exec;
pub mod infer;
pub mod io;
pub mod ir;
pub mod model;
pub mod ncs;
pub mod onnx;
pub mod ops;
pub mod pipeline;
pub mod proto;
#[doc(hidden)]
pub mod testutil;
pub mod train;
pub mod util;
pub mod verify;
