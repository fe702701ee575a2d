//! Engines that run an [`crate::ir::Net`]: [`f32::Engine`] (native, fast) and the seam the
//! fp16 NCS emulation builds on ([`LayerHook`] and the per-layer forward in
//! [`crate::ops::dispatch`]).
//!
//! An engine feeds the net's inputs (declared inputs, `Input` layer tops and `Data` layer
//! tops), runs the layers in file order as Caffe's `Net::Forward` does, and returns the
//! net's outputs (blobs produced but never consumed) or, on request, every blob.

pub mod compare;
pub mod f16;
pub mod f32;
mod plan;

use crate::ir::{IrError, Layer, Tensor};
use std::time::Duration;

pub use self::f32::Engine;

/// An engine error; each names the input or layer at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExecError {
    /// The net's structure or shapes are invalid.
    #[error("net '{net}': {source}")]
    Net {
        /// Net name.
        net: String,
        /// What shape inference reported.
        source: IrError,
    },
    /// A required input was not given.
    #[error("input '{name}' is missing (the net expects shape {expected:?})")]
    MissingInput {
        /// Input blob name.
        name: String,
        /// Its declared shape.
        expected: Vec<usize>,
    },
    /// A tensor was given for a blob that is not an input.
    #[error("'{name}' is not an input of the net (its inputs are: {known})")]
    UnknownInput {
        /// The name given.
        name: String,
        /// The real input names, comma-separated.
        known: String,
    },
    /// The same input was given twice.
    #[error("input '{0}' is given twice")]
    DuplicateInput(String),
    /// An input's shape differs from the declared one.
    #[error("input '{name}' has shape {found:?} but the net expects {expected:?}")]
    InputShape {
        /// Input blob name.
        name: String,
        /// Declared shape.
        expected: Vec<usize>,
        /// Shape given.
        found: Vec<usize>,
    },
    /// A layer's forward failed (missing weights, bad labels, …).
    #[error("layer '{layer}' ({kind}): {msg}")]
    Layer {
        /// Layer name.
        layer: String,
        /// Caffe type.
        kind: String,
        /// What went wrong.
        msg: String,
    },
    /// A blob is too large to allocate (a corrupt or hostile shape).
    #[error(
        "blob '{blob}' would hold {shape:?} = more than {limit} values; refusing to allocate it"
    )]
    TooLarge {
        /// IR blob name.
        blob: String,
        /// Its inferred shape.
        shape: Vec<usize>,
        /// The limit on values per blob.
        limit: usize,
    },
    /// The worker threads could not be started.
    #[error("cannot start {threads} worker threads: {msg}")]
    ThreadPool {
        /// Threads requested.
        threads: usize,
        /// The system's reason.
        msg: String,
    },
}

/// Tensors returned by a run, by IR blob name, in a stable order: the net's outputs in
/// [`crate::ir::Net::outputs`] order, or with `keep_all_blobs` the inputs and then every
/// layer's tops in execution order.
#[derive(Debug, Clone, Default)]
pub struct Outputs {
    /// (IR blob name, value) pairs.
    pub blobs: Vec<(String, Tensor)>,
}

impl Outputs {
    /// The tensor of blob `name`.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.blobs.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    /// Removes and returns the tensor of blob `name`.
    pub fn take(&mut self, name: &str) -> Option<Tensor> {
        let i = self.blobs.iter().position(|(n, _)| n == name)?;
        Some(self.blobs.remove(i).1)
    }

    /// Blob names in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.blobs.iter().map(|(n, _)| n.as_str())
    }
}

/// Wall time of one layer in a timed run (for `bench`).
#[derive(Debug, Clone, PartialEq)]
pub struct LayerTiming {
    /// Layer name.
    pub layer: String,
    /// Caffe type.
    pub kind: &'static str,
    /// Time spent in the layer (zero when it was fused into the previous layer).
    pub time: Duration,
    /// Forward FLOPs of the layer for the run's shapes ([`crate::ir::Op::flops`]).
    pub flops: u64,
    /// The layer this one was fused into (a ReLU folded into its Convolution), if any.
    pub fused_into: Option<String>,
}

/// Observes (and may modify) every stored tensor of a run: the seam for the fp16
/// emulation, which rounds each input and each layer's tops to f16 as the NCS stores them
/// and records overflow. A run with a hook never fuses layers, so the hook sees every
/// layer's own output.
///
/// The intended `exec::f16` engine: copy the net with every learned blob rounded to f16,
/// build an [`Engine`] on it, and run it with a hook that rounds each input and top through
/// `half::f16` and counts values that overflowed to ±∞. The operators are the same code.
pub trait LayerHook: Send {
    /// Called once per fed input before any layer runs.
    fn on_input(&mut self, _name: &str, _tensor: &mut Tensor) {}
    /// Called after `layer` ran, with its tops.
    fn after_layer(&mut self, _layer: &Layer, _tops: &mut [Tensor]) {}
}

/// How an engine runs.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecOptions {
    /// Worker threads; 0 uses every core.
    pub threads: usize,
    /// Return every blob (each layer's own output, unfused) instead of only the outputs.
    pub keep_all_blobs: bool,
    /// Replaces the leading (batch) dimension of every input before shapes are inferred,
    /// as Caffe's `Reshape` after changing the input blob does.
    pub batch: Option<usize>,
    /// TEST (deployment) or TRAIN (Dropout active, BatchNorm batch statistics).
    pub phase: crate::ir::Phase,
    /// Seed for Dropout masks in TRAIN; run i uses seed + i.
    pub seed: u64,
    /// Fold a ReLU into the Convolution or InnerProduct before it when nothing else reads
    /// the pre-activation blob.
    pub fuse_relu: bool,
}

impl Default for ExecOptions {
    fn default() -> Self {
        Self {
            threads: 0,
            keep_all_blobs: false,
            batch: None,
            phase: crate::ir::Phase::Test,
            seed: 0,
            fuse_relu: true,
        }
    }
}

#[cfg(test)]
mod tests;
