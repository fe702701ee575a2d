//! The Intel Movidius NCS (first generation) graph file: the NCSDK v1 format (graph
//! version 2, `ncs/NCS_GRAPH_FORMAT.md`) in this module — reader, writer, inspection report,
//! conversion to the IR and the mvNCCompile-compatible compiler — and the NCSDK 2 format
//! (blob 2.3 / 2.4, `ncs/NCSDK2_GRAPH_FORMAT.md`) in [`v2`], which reuses the compiler's
//! lowering. [`read_any`] and [`inspect_any`] detect the generation.
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
pub mod v2;

pub use compiler::{
    compile, compile_to_file, CompileError, CompileOptions, CompileWarning, Compiled,
};
pub use error::{FormatError, NcsError, ToIrError};
pub use graph::Graph;
pub use header::GraphHeader;
pub use inspect::{inspect_any, inspect_graph, AnyReport, GraphReport};
pub use stage::{BufferRef, Location, PadStyle, StageOp, StageRecord, Xyz};
pub use to_ir::{graph_to_net, read_net};

/// A graph file of either NCSDK generation.
#[derive(Debug, Clone, PartialEq)]
pub enum AnyGraph {
    /// NCSDK 1.x (graph version 2).
    V1(Graph),
    /// NCSDK 2.x (blob 2.3 / 2.4).
    V2(v2::GraphV2),
}

/// Reads a graph file, detecting its generation from the first bytes (NCSDK 1: u32 2 at
/// offset 36; NCSDK 2: magic 0x2204 at 34 or 36), then validates it by that format's rules.
/// Errors name the file.
pub fn read_any(path: &std::path::Path) -> Result<AnyGraph, NcsError> {
    let bytes = decoder::read_limited(path)?;
    parse_any(&bytes).map_err(|source| NcsError::Format {
        path: path.to_path_buf(),
        source,
    })
}

/// Parses graph bytes of either generation (see [`read_any`]).
pub fn parse_any(bytes: &[u8]) -> Result<AnyGraph, FormatError> {
    match v2::detect(bytes) {
        v2::Container::V2(_) => Ok(AnyGraph::V2(v2::GraphV2::parse(bytes)?)),
        v2::Container::V1 => Ok(AnyGraph::V1(Graph::parse(bytes)?)),
        v2::Container::Unknown if bytes.len() >= 40 && bytes[..32].iter().all(|&b| b == 0) => {
            // a v1-looking start with a bad version: the v1 reader names the field
            Ok(AnyGraph::V1(Graph::parse(bytes)?))
        }
        v2::Container::Unknown if bytes.len() < 40 => Ok(AnyGraph::V1(Graph::parse(bytes)?)),
        v2::Container::Unknown => Err(FormatError::UnknownContainer),
    }
}

#[cfg(test)]
mod tests;
