//! Typed errors of the NCS graph adapter. Format errors name the stage (index and name) and
//! the byte offset of the offending field; [`NcsError`] adds the file.

use crate::util::atomic::AtomicWriteError;
use std::path::PathBuf;

/// Why bytes are not a valid graph file: NCSDK v1 rules (NCS_GRAPH_FORMAT.md §3, §4, §9),
/// or an NCSDK 2 error wrapped in [`FormatError::V2`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FormatError {
    /// Shorter than one header and one stage record (the host rejects these too).
    #[error("the file is {len} bytes; a v1 graph has at least {min} (264-byte header + one 227-byte stage)")]
    TooShort {
        /// Actual length.
        len: u64,
        /// Minimum length.
        min: u64,
    },
    /// Larger than the NCAPI's 512 MiB limit.
    #[error("the file is {len} bytes, more than the 512 MiB the NCAPI accepts")]
    TooLarge {
        /// Actual length.
        len: u64,
    },
    /// The version field is not 2. NCSDK 2 files carry their own magic; they are named.
    #[error("version field at offset 36 is {found}, expected 2 (NCSDK v1 graph){hint}")]
    BadVersion {
        /// The u32 at offset 36.
        found: u32,
        /// Extra explanation (for recognisable NCSDK 2 files).
        hint: &'static str,
    },
    /// The header's file size disagrees with the real length (truncated or padded file).
    #[error("header file size (offset 32) is {header} bytes but the file has {actual}: truncated or corrupt")]
    SizeMismatch {
        /// Value at offset 32.
        header: u64,
        /// Real length.
        actual: u64,
    },
    /// No stage records at all.
    #[error("stage count (offset 240) is 0; a graph needs at least one stage")]
    NoStages,
    /// The stage table would run past the end of the file.
    #[error("stage count (offset 240) is {count}: the stage table would end at byte {needed}, beyond the {len}-byte file")]
    StagesBeyondFile {
        /// Claimed count.
        count: u64,
        /// End of the table.
        needed: u64,
        /// File length.
        len: u64,
    },
    /// `buffer_start` is not `align8(264 + 227·N)`.
    #[error(
        "buffer_start (offset 244) is {found}, expected align8(264 + 227·{count}) = {expected}"
    )]
    BadBufferStart {
        /// Value found.
        found: u64,
        /// Stage count.
        count: u64,
        /// Value the format requires.
        expected: u64,
    },
    /// A stage or network name that is not valid UTF-8.
    #[error("{what} at offset {offset} is not valid UTF-8")]
    BadName {
        /// Which name.
        what: String,
        /// File offset of the field.
        offset: u64,
    },
    /// An op, pre-op, post-op or pad-style code this toolkit version does not define.
    #[error("stage {index} '{name}': unknown {field} code {code} at offset {offset}")]
    UnknownCode {
        /// Stage index.
        index: usize,
        /// Stage name.
        name: String,
        /// Field name.
        field: &'static str,
        /// The code.
        code: u32,
        /// File offset of the field.
        offset: u64,
    },
    /// A data-section reference that points outside the data section.
    #[error("stage {index} '{name}': {slot} buffer {pointer}@3 (offset {offset}) needs {needed} bytes, but the data section holds {available} from there")]
    BufferOutOfRange {
        /// Stage index.
        index: usize,
        /// Stage name.
        name: String,
        /// Slot (data, taps, bias, opParams, output).
        slot: &'static str,
        /// Pointer relative to `buffer_start`.
        pointer: u32,
        /// Bytes the stage needs there.
        needed: u64,
        /// Bytes left in the data section after the pointer (0 if past the end).
        available: u64,
        /// File offset of the pointer field.
        offset: u64,
    },
    /// A location code that makes no sense in this slot (e.g. output written into the file).
    #[error("stage {index} '{name}': {slot} location {location} (offset {offset}) is not allowed: {why}")]
    BadLocation {
        /// Stage index.
        index: usize,
        /// Stage name.
        name: String,
        /// Slot.
        slot: &'static str,
        /// Location code.
        location: u16,
        /// File offset of the location field.
        offset: u64,
        /// Reason.
        why: &'static str,
    },
    /// The last stage must write the network output (location 2).
    #[error(
        "the last stage {index} '{name}' writes {output}, not the network output (location 2)"
    )]
    LastNotOutput {
        /// Stage index.
        index: usize,
        /// Stage name.
        name: String,
        /// Its output reference.
        output: String,
    },
    /// The host would refuse to read back this many values.
    #[error(
        "the last stage '{name}' declares {count} output values; the NCAPI allows at most 64 Mi"
    )]
    OutputTooLarge {
        /// Stage name.
        name: String,
        /// `outputDimX · outputDimY · outputStrideX / 2`.
        count: u64,
    },
    /// The bytes are an NCSDK 2 graph with a structural error (NCSDK2_GRAPH_FORMAT.md §9).
    #[error("NCSDK 2 graph: {0}")]
    V2(#[from] super::v2::V2FormatError),
    /// Neither an NCSDK 1 nor an NCSDK 2 graph.
    #[error("not an NCS graph: no NCSDK 1 header (version 2 at offset 36) and no NCSDK 2 blob magic 0x2204 at offset 34 or 36")]
    UnknownContainer,
}

/// Why a graph could not be turned into an IR net: the stage is named, with the reason.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("stage {index} '{name}' ({op}): {msg}")]
pub struct ToIrError {
    /// Stage index.
    pub index: usize,
    /// Stage name.
    pub name: String,
    /// Toolkit op name.
    pub op: String,
    /// What is not representable.
    pub msg: String,
}

/// Errors of the graph adapter's file-level functions; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum NcsError {
    /// Reading the file failed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The bytes are not a valid v1 graph.
    #[error("{path}: {source}")]
    Format {
        /// File.
        path: PathBuf,
        /// Cause.
        source: FormatError,
    },
    /// The graph is valid but cannot be expressed as an IR net.
    #[error("{path}: {source}")]
    ToIr {
        /// File.
        path: PathBuf,
        /// Cause.
        source: ToIrError,
    },
    /// Writing the output failed (nothing half-written is left).
    #[error(transparent)]
    Write(#[from] AtomicWriteError),
}
