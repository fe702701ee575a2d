//! ONNX: export of an [`ir::Net`](crate::ir::Net) to an ONNX model (opset 13), import of
//! ONNX files (ours and other tools') into the IR, and the tract engine that runs them.
//!
//! The protobuf types are tract-onnx's own prost 0.14 types ([`pb`]), so a model can be
//! handed to tract without re-encoding.
//!
//! Naming: ONNX tensor names are the IR blob names and the node that computes a layer's
//! top is named after the layer. Where a Caffe layer needs several ONNX nodes, the extra
//! ("helper") nodes and tensors are named `<layer>/<role>` and listed right before the
//! layer's node; the importer folds such groups back into one layer. Initializers are named
//! `<layer>/<role>` too (`conv1/weight`, `conv1/bias`). Caffe blob names that differ from
//! the IR names (tops of in-place layers) travel in the model's metadata under
//! [`CAFFE_NAMES_KEY`].

mod attr;
pub mod export;
pub mod import;
pub mod pool_map;
pub mod tensor;
pub mod tract_engine;

pub use export::{export, export_with_blob_map, write_onnx};
pub use import::{import, import_model, import_with, ImportOptions};
pub use tract_onnx::pb;

use std::path::PathBuf;

/// The opset the exporter targets. 13 is the first with Softmax over one axis (Caffe's
/// semantics), `axes` as inputs and Pad taking its pads as a tensor.
pub const OPSET_VERSION: i64 = 13;

/// ONNX IR version written with [`OPSET_VERSION`] (IR 7 is the minimum for opset 13).
pub const IR_VERSION: i64 = 8;

/// Metadata key holding a JSON object `{ir_blob: caffe_blob}` for blobs whose Caffe name
/// differs from their IR name (tops of in-place layers).
pub const CAFFE_NAMES_KEY: &str = "agegender.caffe_names";

/// Metadata key holding a JSON object `{input: [dims]}`: the input shapes the net declared.
/// Exported files give the batch axis as the symbol [`BATCH_SYMBOL`] so that any runtime
/// accepts any batch; the importer and the tract engine default to these shapes.
pub const INPUT_SHAPES_KEY: &str = "agegender.input_shapes";

/// The `dim_param` of the batch axis in exported models.
pub const BATCH_SYMBOL: &str = "batch";

/// The input shapes a model exported by this crate declares (see [`INPUT_SHAPES_KEY`]);
/// empty for other files.
pub fn declared_input_shapes(
    model: &pb::ModelProto,
) -> std::collections::HashMap<String, Vec<usize>> {
    model
        .metadata_props
        .iter()
        .find(|e| e.key == INPUT_SHAPES_KEY)
        .and_then(|e| serde_json::from_str(&e.value).ok())
        .unwrap_or_default()
}

/// Largest element count accepted for any one tensor (weights, inputs, inferred blobs).
/// Checked before anything is allocated so that dims like 2^62 are refused up front.
pub const MAX_ELEMENTS: usize = 1 << 31;

/// Errors of ONNX export, import and execution. Each names the layer, node or tensor.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// Any error while handling one file, with that file's path.
    #[error("{path}: {source}")]
    InFile {
        /// The .onnx file (or its external data file).
        path: PathBuf,
        /// What went wrong.
        source: Box<OnnxError>,
    },
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The bytes are not a valid `ModelProto` (truncated or not ONNX).
    #[error("not a valid ONNX model (protobuf decoding failed: {0})")]
    Decode(#[from] prost::DecodeError),
    /// Writing the output failed (the old file, if any, is left intact).
    #[error(transparent)]
    Write(#[from] crate::util::atomic::AtomicWriteError),
    /// An IR layer that cannot be expressed in ONNX with Caffe's exact semantics.
    #[error("layer '{layer}' ({kind}): {msg}")]
    Export {
        /// Layer name.
        layer: String,
        /// Caffe layer type.
        kind: String,
        /// Why.
        msg: String,
    },
    /// An ONNX operator the importer does not support.
    #[error("node '{node}': unsupported op type '{op_type}'{hint}")]
    UnsupportedOp {
        /// Node name (or its first output when unnamed).
        node: String,
        /// ONNX op type.
        op_type: String,
        /// Extra context, starting with a separator, or empty.
        hint: String,
    },
    /// A node whose attributes or inputs the importer cannot map onto Caffe semantics.
    #[error("node '{node}' ({op_type}): {msg}")]
    Node {
        /// Node name.
        node: String,
        /// ONNX op type.
        op_type: String,
        /// Why.
        msg: String,
    },
    /// A tensor (initializer, constant or external data) that cannot be read.
    #[error("tensor '{name}': {msg}")]
    Tensor {
        /// Tensor name.
        name: String,
        /// Why.
        msg: String,
    },
    /// A graph input whose shape is not fully known and was not given by the caller.
    #[error("graph input '{input}' has a dynamic or unknown dimension {dim} (shape {shape}); give its shape explicitly (e.g. with --input)")]
    DynamicInput {
        /// Input name.
        input: String,
        /// Index of the offending dimension.
        dim: usize,
        /// The declared shape, `?` for unknown dims.
        shape: String,
    },
    /// A structural problem with the graph (no graph, missing tensors, bad outputs).
    #[error("{0}")]
    Graph(String),
    /// The IR built from (or given to) ONNX failed Caffe's shape rules.
    #[error(transparent)]
    Ir(#[from] crate::ir::IrError),
    /// tract refused or failed to run the model.
    #[error("tract: {0}")]
    Tract(String),
}

impl OnnxError {
    /// Wraps the error with the file it concerns (once).
    pub fn in_file(self, path: impl Into<PathBuf>) -> Self {
        match self {
            e @ OnnxError::InFile { .. } => e,
            e => OnnxError::InFile {
                path: path.into(),
                source: Box::new(e),
            },
        }
    }

    pub(crate) fn node(node: &pb::NodeProto, msg: impl Into<String>) -> Self {
        OnnxError::Node {
            node: node_label(node),
            op_type: node.op_type.clone(),
            msg: msg.into(),
        }
    }

    pub(crate) fn tensor(name: &str, msg: impl Into<String>) -> Self {
        OnnxError::Tensor {
            name: name.to_string(),
            msg: msg.into(),
        }
    }
}

/// Result type of this module.
pub type OnnxResult<T> = Result<T, OnnxError>;

/// A node's name for messages: its `name`, or its first output when unnamed.
pub fn node_label(node: &pb::NodeProto) -> String {
    if !node.name.is_empty() {
        node.name.clone()
    } else if let Some(o) = node.output.first() {
        format!("<unnamed, output {o}>")
    } else {
        "<unnamed>".to_string()
    }
}
