//! NCSDK 2.x graph files ("blob 2.3 / 2.4"), as specified in `ncs/NCSDK2_GRAPH_FORMAT.md`:
//! a sibling codec of the NCSDK 1 one in the parent module.
//!
//! [`header`] holds the prefix and blob header, [`record`] the variable-length stage
//! records and buffer descriptors, [`graph`] the in-memory file and its writer, [`decode`]
//! the validating reader and version detection, [`emit`] the compiler back end (it reuses
//! the NCSDK 1 compiler's lowering and packing), [`lift`] the way back to the v1 record
//! shape for the IR lifter, and [`inspect`] the report.

pub mod decode;
pub mod emit;
pub mod error;
pub mod graph;
pub mod header;
pub mod inspect;
pub mod lift;
pub mod record;

pub use decode::{detect, Container};
pub use emit::{compile_v2, from_packed};
pub use error::V2FormatError;
pub use graph::{GraphV2, Reloc};
pub use header::{BlobHeader, BlobVersion};
pub use inspect::{inspect_v2, V2Report};
pub use lift::to_v1_view;
pub use record::{Descriptor, StageV2};

#[cfg(test)]
mod tests;
