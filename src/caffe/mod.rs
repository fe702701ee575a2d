//! The Caffe format adapter: prototxt (text), caffemodel (binary) and binaryproto, read into
//! and written from the IR.
//!
//! Reading: [`prototxt`] and [`caffemodel`] decode files into the generated
//! `crate::proto::caffe` types, [`upgrade`] rewrites legacy syntax as Caffe's
//! `upgrade_proto.cpp` does, [`state`] keeps the layers of a phase, [`import`] converts to
//! [`crate::ir::Net`] and [`weights`] matches learned blobs by layer name. Writing:
//! [`export`] builds a current-syntax `NetParameter` and [`text_writer`] prints it.

pub mod binaryproto;
pub mod blob;
pub mod caffemodel;
pub mod error;
pub mod export;
mod export_ops;
pub mod import;
mod import_ops;
pub mod load;
pub mod prototxt;
pub mod state;
pub mod text_writer;
pub mod upgrade;
pub mod weights;

pub use error::{CaffeError, NetError};
pub use export::{net_to_proto, write_caffemodel, write_prototxt};
pub use import::net_from_proto;
pub use load::{load_caffemodel_net, load_caffemodel_net_with_input, load_net};
pub use weights::{fill_missing_weights, fill_missing_weights_random};
