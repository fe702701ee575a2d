//! Reading Caffe's text files (`.prototxt` nets, `solver.prototxt`) into the generated prost
//! types.
//!
//! prost has no text format, so the text is parsed by `prost-reflect` against the
//! descriptor of our own `proto/caffe.proto` (the same grammar as C++ `TextFormat::Parse`,
//! which Caffe's `ReadProtoFromTextFile` uses: `include: { phase: TRAIN }`, `1.`-style
//! floats, `#` comments, `layers{` without a space all parse), then transcoded into the
//! prost struct by encoding and decoding. Errors carry the file, line and column.
//!
//! The text is returned as written: legacy syntax is upgraded separately by
//! [`super::upgrade::upgrade_net`].

use crate::proto::caffe::{
    BlobProto, LayerParameter, NetParameter, NetState, SolverParameter, SolverState,
};
use crate::proto::caffe_pool;
use prost_reflect::DynamicMessage;
use std::path::{Path, PathBuf};

/// Errors reading a text protobuf; each names the file, and syntax errors the line and
/// column (1-based, columns counted in characters) as `file:line:col`.
#[derive(Debug, thiserror::Error)]
pub enum PrototxtError {
    /// The file could not be read (missing, permissions).
    #[error("cannot read {path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not UTF-8 text (a binary caffemodel given as a prototxt, for instance).
    #[error("{path} is not UTF-8 text (invalid byte at offset {offset}); is it a binary file?")]
    NotText {
        /// File.
        path: PathBuf,
        /// Byte offset of the first invalid byte.
        offset: usize,
    },
    /// The text does not follow the protobuf text format or the `caffe.proto` schema
    /// (unknown field, bad enum value, unbalanced brace, a singular field set twice).
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        /// File (or a description of the source for in-memory text).
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// The parsed message could not be converted into the prost type (an internal schema
    /// inconsistency, not a user error, but reported instead of panicking).
    #[error("{path}: cannot convert the parsed {message_type}: {source}")]
    Transcode {
        /// File.
        path: PathBuf,
        /// Protobuf message name.
        message_type: &'static str,
        /// Cause.
        source: prost::DecodeError,
    },
}

/// A message of `caffe.proto` that can be read from and written to the text format: the
/// link between a prost type and its descriptor in [`caffe_pool`].
pub trait TextMessage: prost::Message + Default {
    /// Fully qualified protobuf name, e.g. `caffe.NetParameter`.
    const FULL_NAME: &'static str;
}

macro_rules! text_message {
    ($($ty:ident),*) => {$(
        impl TextMessage for $ty {
            const FULL_NAME: &'static str = concat!("caffe.", stringify!($ty));
        }
    )*};
}
text_message!(
    NetParameter,
    SolverParameter,
    SolverState,
    NetState,
    LayerParameter,
    BlobProto
);

/// Converts a byte offset into a 1-based (line, column) pair, counting columns in
/// characters. An offset past the end (an unexpected end of file) points after the last
/// character.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    (line, before[line_start..].chars().count() + 1)
}

/// Parses protobuf text into `M`. `path` is only used in error messages.
pub fn parse_text<M: TextMessage>(text: &str, path: &Path) -> Result<M, PrototxtError> {
    use miette::Diagnostic;
    let desc = caffe_pool()
        .get_message_by_name(M::FULL_NAME)
        .unwrap_or_else(|| panic!("{} is declared in proto/caffe.proto", M::FULL_NAME));
    let dynamic = DynamicMessage::parse_text_format(desc, text).map_err(|e| {
        let offset = e
            .labels()
            .and_then(|mut labels| labels.next())
            .map(|l| l.offset())
            .unwrap_or(text.len());
        let (line, column) = line_col(text, offset);
        PrototxtError::Syntax {
            path: path.to_path_buf(),
            line,
            column,
            message: e.to_string(),
        }
    })?;
    dynamic
        .transcode_to::<M>()
        .map_err(|source| PrototxtError::Transcode {
            path: path.to_path_buf(),
            message_type: M::FULL_NAME,
            source,
        })
}

/// Reads a text file as UTF-8, naming the file on failure.
pub fn read_text_file(path: &Path) -> Result<String, PrototxtError> {
    let bytes = std::fs::read(path).map_err(|source| PrototxtError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    String::from_utf8(bytes).map_err(|e| PrototxtError::NotText {
        path: path.to_path_buf(),
        offset: e.utf8_error().valid_up_to(),
    })
}

/// Reads and parses a text protobuf file.
pub fn read_text<M: TextMessage>(path: &Path) -> Result<M, PrototxtError> {
    parse_text(&read_text_file(path)?, path)
}

/// Reads a net prototxt as written (V1 `layers` and `input` fields are kept; see
/// [`super::upgrade::upgrade_net`]).
pub fn read_prototxt(path: &Path) -> Result<NetParameter, PrototxtError> {
    read_text(path)
}

/// Reads a `solver.prototxt`.
pub fn read_solver(path: &Path) -> Result<SolverParameter, PrototxtError> {
    read_text(path)
}

#[cfg(test)]
#[path = "prototxt_tests.rs"]
pub(crate) mod tests;
