//! The Intel Movidius NCS (first generation) graph file, NCSDK v1 format (graph version 2),
//! as specified in `ncs/NCS_GRAPH_FORMAT.md`: reader, writer, inspection report, conversion
//! to the IR and the mvNCCompile-compatible compiler.
//!
//! Layout follows image-rs codecs: [`header`] and [`stage`] hold the byte layouts,
//! [`decoder`]/[`encoder`] turn bytes into a [`Graph`] and back, [`inspect`] reports on a
//! file, [`to_ir`] lifts a graph into an [`crate::ir::Net`], and [`compiler`] lowers a net
//! into a graph.

pub mod compiler;
pub mod decoder;
pub mod encoder;
pub mod error;
pub mod graph;
pub mod header;
pub mod inspect;
pub mod layout;
pub mod stage;
pub mod to_ir;

pub use compiler::{
    compile, compile_to_file, CompileError, CompileOptions, CompileWarning, Compiled,
};
pub use error::{FormatError, NcsError, ToIrError};
pub use graph::Graph;
pub use header::GraphHeader;
pub use inspect::{inspect_graph, GraphReport};
pub use stage::{BufferRef, Location, PadStyle, StageOp, StageRecord, Xyz};
pub use to_ir::{graph_to_net, read_net};

#[cfg(test)]
mod tests;
