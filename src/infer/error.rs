//! Errors of the inference library. Each names the file (model, mean or image) at fault.

use std::path::PathBuf;

/// Why a model, mean or image could not be used for inference.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    /// The model could not be loaded (any format's error, with its file).
    #[error("cannot load model {}: {error:#}", path.display())]
    Model {
        /// The model file.
        path: PathBuf,
        /// The adapter's (or engine's) error, printed in full here.
        error: anyhow::Error,
    },
    /// The net cannot classify images: wrong input rank or channels, no class output.
    #[error("net '{net}': {msg}")]
    Net {
        /// Net name.
        net: String,
        /// What is wrong with it.
        msg: String,
    },
    /// The mean file could not be read or does not fit the net's input.
    #[error("mean file {}: {msg}", path.display())]
    Mean {
        /// The mean file.
        path: PathBuf,
        /// Why.
        msg: String,
    },
    /// A mean given in memory does not fit the net's input.
    #[error("mean: {0}")]
    MeanShape(#[from] crate::io::image::MeanError),
    /// An image could not be read or decoded.
    #[error(transparent)]
    Image(#[from] crate::io::image::ImageError),
    /// The chosen engine is not available for this model or in this build.
    #[error("engine {engine}: {msg}")]
    Engine {
        /// Engine name.
        engine: &'static str,
        /// Why.
        msg: String,
    },
    /// The native engine failed (names the layer).
    #[error(transparent)]
    Exec(#[from] crate::exec::ExecError),
    /// tract failed.
    #[error(transparent)]
    Onnx(#[from] crate::onnx::OnnxError),
    /// A directory could not be listed.
    #[error("cannot list {}: {msg}", path.display())]
    List {
        /// The directory.
        path: PathBuf,
        /// Why.
        msg: String,
    },
}
