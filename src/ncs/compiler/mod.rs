//! The compiler: IR net → NCSDK v1 graph, compatible with `mvNCCompile` 1.12's Caffe path
//! (NCS_GRAPH_FORMAT.md §5–§6).
//!
//! The pipeline is the toolkit's: cut the net (`-in`/`-on`), walk the layers in order
//! creating stages — an input stage first, ReLU fused as a post-op, BatchNorm/Scale folded
//! into the preceding convolution in fp16 arithmetic, Dropout/Split dropped — allocate a
//! guarded work buffer for a producer when its first consumer attaches, then pack every
//! constant (fp16 RNE, device layouts, 64-byte aligned) in depth-first stage-tree order.
//! What the stick cannot run is refused with the layer named; accuracy risks (fp16
//! overflow for the declared input range) come back as warnings.
//!
//! Verified byte for byte: the Caffe-compiled `empty` graph (NCS_GRAPH_FORMAT.md §10.1),
//! every record, constant and pointer of SIMCAM's emotion graph (apart from the vendor's
//! extra eltwise parameter arrays), and the AgeNet layout derived in §10.3.
//!
//! Deviations from mvNCCompile 1.12, each deliberate:
//! - `-is W H` resizes a Caffe net's input (mvNCCompile ignores it for Caffe) and warns.
//! - A legacy `input_dim` prototxt compiles (the Caffe loader upgrades it; mvNCCompile
//!   rejects it with "Input Layer must be in an input_shape construct").
//! - Layers that do not contribute to the output are left out with a warning.
//! - Refused rather than mis-compiled: a ReLU or BatchNorm/Scale whose producer's output
//!   another layer already reads (mvNCCompile would fuse it into what that reader sees),
//!   InnerProduct with `axis` ≠ 1, non-ASCII names. `transpose` InnerProduct weights are
//!   honoured (mvNCCompile ignores the flag).
//! - Concat (axis 1) is lowered as NCSDK 2's toolkit does it (one shared work buffer,
//!   members at channel offsets, NCSDK2_GRAPH_FORMAT.md §6.3 step 5); the buffer size for
//!   NCSDK 1 follows the same rule (inferred: the v1 document gives only the pad quirk).
//!   A Concat as the network output gets no buffer: its members write location 2 at
//!   `2·channel_offset` with the whole concatenation's strides (NCS_GRAPH_FORMAT.md §5.4,
//!   NCSDK2_GRAPH_FORMAT.md §8.1), for both generations.
//! - A 3-bottom Eltwise keeps its third operand in the bias slot for NCSDK 1 (§6.2); for
//!   NCSDK 2, whose eltwise records have no such slot, it becomes two stages, `<name>/0`
//!   (a ∘ b into a work buffer) and `<name>` ((a ∘ b) ∘ c). This split is our choice: the
//!   NCSDK 2 document gives no 3-operand form.
//! - Not implemented (refused with the layer named): Slice, grouped convolution
//!   with 1 < group < C, Reshape, grouped Deconvolution, ELU, Power, Crop, `.conf` optimisation
//!   masks.
//! - Inferred, not seen in a real file (tag I): tap dims (0, C, C) of sigmoid, tanh, PReLU,
//!   flatten and stand-alone scale stages; a Scale after a stand-alone BatchNorm scale stage
//!   folds into it; the stage-tree parent of a multi-input stage is its latest-created
//!   producer (matches the emotion graph; the toolkit's rule for other branchings is unknown).

mod bounds;
mod lower;
mod pack;

use super::error::NcsError;
use super::graph::Graph;
use crate::ir::{IrError, Net};
use std::fmt;
use std::path::Path;

/// The 1.12 toolkit's limit on the estimated file size ("NoResources").
pub const MAX_GRAPH_BYTES: u64 = 320 * 1024 * 1024;
/// The 1.12 toolkit's limit on the work-buffer arena.
pub const MAX_WORK_BYTES: u64 = 100 * 1024 * 1024;
/// Largest finite fp16 value; anything above overflows to ±inf on the device.
pub const F16_MAX: f32 = 65504.0;

/// `mvNCCompile` flags that shape the file (§6.1).
#[derive(Debug, Clone, PartialEq)]
pub struct CompileOptions {
    /// `-s N`: SHAVEs to use, 1..=12 (header `lastShave` = N − 1). Default 1.
    pub shaves: u16,
    /// `-in NAME`: start at the bottom blob of layer NAME (before a Split feeding it).
    pub input_layer: Option<String>,
    /// `-on NAME`: stop after layer NAME; default: the layer producing the first output.
    pub output_layer: Option<String>,
    /// `-is W H`: input width and height. mvNCCompile applies this to TensorFlow models
    /// only; here it resizes the IR input and a warning says so.
    pub input_size: Option<[usize; 2]>,
    /// Range the host's input values lie in, for the fp16 overflow estimate. The default
    /// [−255, 255] covers 8-bit pixels with or without mean subtraction.
    pub input_range: [f32; 2],
}

impl Default for CompileOptions {
    fn default() -> Self {
        Self {
            shaves: 1,
            input_layer: None,
            output_layer: None,
            input_size: None,
            input_range: [-255.0, 255.0],
        }
    }
}

/// A compiled graph and the warnings the compiler raised.
#[derive(Debug, Clone, PartialEq)]
pub struct Compiled {
    /// The graph, sealed (sizes and offsets consistent).
    pub graph: Graph,
    /// Accuracy risks and deviations, one per affected layer.
    pub warnings: Vec<CompileWarning>,
}

/// Something that compiles but deserves the user's attention.
#[derive(Debug, Clone, PartialEq)]
pub struct CompileWarning {
    /// Layer concerned (empty for whole-net warnings).
    pub layer: String,
    /// What and why.
    pub message: String,
}

impl fmt::Display for CompileWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.layer.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "layer '{}': {}", self.layer, self.message)
        }
    }
}

/// Why a net cannot be compiled; every variant names the layer or option concerned.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CompileError {
    /// The IR itself is inconsistent (shape inference failed).
    #[error("{0}")]
    Ir(#[from] IrError),
    /// The net has no input, or more than one.
    #[error("the NCS takes exactly one input tensor, the net declares {found:?}")]
    Inputs {
        /// Declared inputs.
        found: Vec<String>,
    },
    /// The input is not N×C×H×W with N = 1.
    #[error("input '{input}' has shape {shape:?}; the NCS runs one N=1 C×H×W image (mvNCCompile: AttemptedBatchMode)")]
    InputShape {
        /// Input blob.
        input: String,
        /// Its shape.
        shape: Vec<usize>,
    },
    /// `-in`/`-on` names no layer.
    #[error("{option} {name}: no layer has that name")]
    UnknownLayer {
        /// "-in" or "-on".
        option: &'static str,
        /// The name given.
        name: String,
    },
    /// After `-in`, a kept layer needs a blob computed before the cut.
    #[error("layer '{layer}' reads '{blob}', which is computed before the -in cut")]
    Cut {
        /// Layer.
        layer: String,
        /// Blob.
        blob: String,
    },
    /// An operation or parameter the NCS firmware (or this compiler) does not support.
    #[error("layer '{layer}' ({kind}): {why}")]
    Unsupported {
        /// Layer.
        layer: String,
        /// Caffe type.
        kind: String,
        /// Reason.
        why: String,
    },
    /// A value does not fit the record field that carries it.
    #[error("layer '{layer}': {what}")]
    Limit {
        /// Layer.
        layer: String,
        /// The violated limit.
        what: String,
    },
    /// A layer has no weights and a random filler (mvNCCompile would bake random values).
    #[error("layer '{layer}' has no weights and a {filler} filler; give a caffemodel")]
    MissingWeights {
        /// Layer.
        layer: String,
        /// Filler type.
        filler: String,
    },
    /// `-s` outside 1..=12.
    #[error("-s {0}: the Myriad 2 has 1 to 12 SHAVEs")]
    Shaves(u16),
    /// The file would exceed the toolkit's 320 MiB limit.
    #[error("the graph would be at least {bytes} bytes, over the {limit}-byte limit of the NCSDK (NoResources)")]
    GraphTooLarge {
        /// Size reached.
        bytes: u64,
        /// Limit.
        limit: u64,
    },
    /// The work arena would exceed the toolkit's 100 MiB limit.
    #[error("the intermediate tensors need {bytes} bytes of work memory, over the {limit}-byte limit of the NCSDK")]
    WorkTooLarge {
        /// Arena size.
        bytes: u64,
        /// Limit.
        limit: u64,
    },
}

/// Compiles a net with the given options.
pub fn compile(net: &Net, opts: &CompileOptions) -> Result<Compiled, CompileError> {
    if !(1..=super::header::MAX_SHAVES).contains(&opts.shaves) {
        return Err(CompileError::Shaves(opts.shaves));
    }
    let mut warnings = Vec::new();
    let plan = lower::lower(net, opts, pack::Container::Ncsdk1, &mut warnings)?;
    let graph = pack::pack(plan, opts, pack::Container::Ncsdk1)?;
    Ok(Compiled { graph, warnings })
}

/// Lowers and packs for NCSDK 2: the same stages, fp16 values and layouts as
/// [`compile`] (except that a 3-operand Eltwise becomes two 2-operand stages, see the
/// module notes), with NCSDK 2's work offsets and ×8 tap padding. The result is still in the
/// v1 record shape; `ncs::v2::emit` turns it into blob 2.3/2.4 records and relocations.
pub fn compile_for_ncsdk2(net: &Net, opts: &CompileOptions) -> Result<Compiled, CompileError> {
    if !(1..=super::header::MAX_SHAVES).contains(&opts.shaves) {
        return Err(CompileError::Shaves(opts.shaves));
    }
    let mut warnings = Vec::new();
    let plan = lower::lower(net, opts, pack::Container::Ncsdk2, &mut warnings)?;
    let graph = pack::pack(plan, opts, pack::Container::Ncsdk2)?;
    Ok(Compiled { graph, warnings })
}

/// Errors of [`compile_to_file`].
#[derive(Debug, thiserror::Error)]
pub enum CompileFileError {
    /// Compilation failed; nothing was written.
    #[error(transparent)]
    Compile(#[from] CompileError),
    /// Writing failed; no partial file is left.
    #[error(transparent)]
    Write(#[from] NcsError),
}

/// Compiles and writes the graph atomically; returns the warnings.
pub fn compile_to_file(
    net: &Net,
    opts: &CompileOptions,
    path: &Path,
) -> Result<Vec<CompileWarning>, CompileFileError> {
    let c = compile(net, opts)?;
    c.graph.write(path)?;
    Ok(c.warnings)
}
