//! Errors of the Caffe adapter. Text and binary decoding errors live next to their readers
//! ([`PrototxtError`], [`CaffemodelError`]); [`NetError`] covers everything wrong with the
//! *contents* of a net (upgrade, layer parameters, topology, weights), and [`CaffeError`]
//! is what the public entry points return, with the file named wherever one is involved.

use super::blob::BlobError;
use super::caffemodel::CaffemodelError;
use super::prototxt::PrototxtError;
use crate::ir::IrError;
use crate::util::atomic::AtomicWriteError;
use std::path::PathBuf;

/// Something wrong inside a `NetParameter`: each variant names the layer (and the blob or
/// parameter) so that a user can find it in the prototxt.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NetError {
    /// A layer type this project does not implement (Caffe would fail to create it too,
    /// or it is a Caffe type outside the supported set).
    #[error("layer '{layer}': unsupported layer type '{kind}'")]
    UnsupportedType {
        /// Layer name.
        layer: String,
        /// Caffe type string.
        kind: String,
    },
    /// A parameter Caffe's `LayerSetUp` would reject (the message says which check).
    #[error("layer '{layer}' ({kind}): {msg}")]
    InvalidParam {
        /// Layer name.
        layer: String,
        /// Caffe type string.
        kind: String,
        /// What is wrong.
        msg: String,
    },
    /// The legacy (V0/V1/input) syntax could not be upgraded as `upgrade_proto.cpp` does.
    #[error("cannot upgrade the net: {0}")]
    Upgrade(String),
    /// A layer has both `include` and `exclude` rules (Caffe's `FilterNet` refuses this).
    #[error("layer '{layer}': specify either include or exclude rules, not both")]
    IncludeAndExclude {
        /// Layer name.
        layer: String,
    },
    /// A weight blob whose shape and value count disagree.
    #[error("layer '{layer}': weight blob {index}: {source}")]
    Blob {
        /// Layer name.
        layer: String,
        /// Blob index.
        index: usize,
        /// Cause.
        source: BlobError,
    },
    /// The caffemodel holds another number of blobs than the layer needs (Caffe's
    /// `CopyTrainedLayersFrom` check "Incompatible number of blobs").
    #[error("layer '{layer}': the weights hold {found} blobs, the layer needs {expected}")]
    BlobCount {
        /// Layer name.
        layer: String,
        /// Blobs the layer needs.
        expected: usize,
        /// Blobs found.
        found: usize,
    },
    /// The net's input shape could not be determined (a caffemodel alone without input
    /// fields, or an Input layer without a shape).
    #[error("cannot determine the shape of input '{blob}': {msg}")]
    InputShape {
        /// Blob name.
        blob: String,
        /// Why.
        msg: String,
    },
    /// A structural error found by the IR: an unknown bottom, a shape rule, a weight shape
    /// mismatch or a duplicate name.
    #[error(transparent)]
    Ir(#[from] IrError),
}

/// The error of every public entry point of [`crate::caffe`].
#[derive(Debug, thiserror::Error)]
pub enum CaffeError {
    /// Reading or parsing a text file (prototxt, solver).
    #[error(transparent)]
    Prototxt(#[from] PrototxtError),
    /// Reading or decoding a binary caffemodel.
    #[error(transparent)]
    Caffemodel(#[from] CaffemodelError),
    /// A net built from memory is invalid.
    #[error(transparent)]
    Net(#[from] NetError),
    /// A net read from a file is invalid; the file is named.
    #[error("{path}: {source}")]
    InFile {
        /// The prototxt or caffemodel the net came from.
        path: PathBuf,
        /// What is wrong.
        source: NetError,
    },
    /// Writing an output file failed (nothing is left under the final name).
    #[error(transparent)]
    Write(#[from] AtomicWriteError),
    /// The net uses something Caffe's format cannot express (the message names the layer).
    #[error("cannot write as Caffe: {0}")]
    Unsupported(String),
}

impl CaffeError {
    /// Attaches the file a net came from to a content error.
    pub fn in_file(path: impl Into<PathBuf>, source: impl Into<NetError>) -> Self {
        CaffeError::InFile {
            path: path.into(),
            source: source.into(),
        }
    }
}
