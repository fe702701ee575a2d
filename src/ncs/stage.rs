//! One 227-byte stage record of an NCSDK v1 graph file, and the enumerations its bytes use.
//!
//! Layout (NCS_GRAPH_FORMAT.md §4.1): every field is little-endian and packed back to back,
//! so many u32 fields sit at odd offsets and are decoded byte-wise here.

use serde::Serialize;

/// Size of one stage record in bytes (host library `STAGE_LENGTH`).
pub const STAGE_RECORD_LEN: usize = 227;
/// Size of every fixed name field (stage and network names), NUL-padded.
pub const NAME_LEN: usize = 100;
/// The `optMask` mvNCCompile writes for every stage: bit 31 lets the firmware choose the
/// implementation (§4.4).
pub const DEFAULT_OPT_MASK: u32 = 0x8000_0000;

macro_rules! stage_types {
    ($($variant:ident = $code:literal, $name:literal, $doc:literal;)*) => {
        /// NCSDK 1.12 `StageType` (§4.2): the operation of a stage and of its fused pre/post
        /// operations. Values ≥ 28 follow the 1.12 renumbering, the firmware this crate targets.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum StageOp {
            $(#[doc = $doc] $variant = $code,)*
        }

        impl StageOp {
            /// Decodes an op byte; `None` for codes the 1.12 toolkit never writes.
            pub fn from_code(code: u8) -> Option<Self> {
                match code {
                    $($code => Some(StageOp::$variant),)*
                    _ => None,
                }
            }

            /// The toolkit's name for the op, as reports print it.
            pub fn toolkit_name(self) -> &'static str {
                match self {
                    $(StageOp::$variant => $name,)*
                }
            }
        }
    };
}

stage_types! {
    Convolution = 0, "convolution", "2-D convolution, taps HWCK.";
    MaxPooling = 1, "max_pooling", "Max pooling.";
    AveragePooling = 2, "average_pooling", "Average pooling (Caffe divisor rule).";
    SoftMax = 3, "soft_max", "Softmax over the axis in opParams.";
    FullyConnected = 4, "fully_connected_layer", "Inner product, taps (H, W, C, K).";
    None = 5, "none", "No operation: the input stage, and the value of an unused pre/post-op.";
    Relu = 6, "relu", "ReLU (as a post-op: fused into the producing stage).";
    ReluX = 7, "relu_x", "ReLU clipped at X.";
    DepthwiseConvolution = 8, "depthwise_convolution", "Depthwise convolution, taps (KH, KW, 1, K).";
    Bias = 9, "bias", "Bias add (as a post-op: the stage's bias buffer is applied).";
    PRelu = 10, "prelu", "Parametric ReLU, slopes in the bias slot.";
    Lrn = 11, "LRN", "Local response normalisation across channels; {k, α, β, 0} in the bias slot.";
    EltwiseSum = 12, "eltwise_sum", "Element-wise sum of the data and taps operands.";
    EltwiseProd = 13, "eltwise_prod", "Element-wise product.";
    EltwiseMax = 14, "eltwise_max", "Element-wise maximum.";
    Scale = 15, "scale", "Per-channel multiply (taps) and add (bias).";
    Relayout = 16, "relayout", "Layout change.";
    Square = 17, "square", "x² (within-channel LRN helper).";
    InnerLrn = 18, "innerlrn", "(k + α·x)^−β (within-channel LRN helper).";
    Copy = 19, "copy", "Copy (slices, explicit concat).";
    Sigmoid = 20, "sigmoid", "Logistic sigmoid.";
    TanH = 21, "tanh", "Hyperbolic tangent.";
    Deconvolution = 22, "deconvolution", "Transposed convolution.";
    Elu = 23, "elu", "ELU.";
    Reshape = 24, "reshape", "Reshape.";
    ToPlaneMajor = 25, "toplanemajor", "Caffe Flatten: HWC → CHW planar.";
    Power = 26, "power", "Caffe Power.";
    Crop = 27, "crop", "Crop.";
    Tile = 28, "tile", "Tile.";
    Region = 29, "region", "YOLO region.";
    Reorg = 30, "reorg", "YOLO reorg.";
    ConvertU8Fp16 = 31, "convertu8fp16", "u8 → fp16 conversion.";
    ConvertF32F16 = 32, "convertf32f16", "f32 → fp16 conversion.";
    MyriadXConvolution = 33, "myriadX_convolution", "Myriad X hardware convolution.";
    MyriadXPooling = 34, "myriadX_pooling", "Myriad X hardware pooling.";
    MyriadXFullyConnected = 35, "myriadX_fully_connected_layer", "Myriad X hardware FC.";
    MyriadXPostOps = 36, "myriadX_post_ops", "Myriad X post-ops.";
    ConvertHwSw = 37, "convertHwSw", "Hardware/software layout conversion.";
    Permute = 38, "permute", "Permute.";
    Normalize = 39, "normalize", "SSD Normalize.";
    PriorBox = 40, "prior_box", "SSD PriorBox.";
    DetectionOutput = 41, "detection_output", "SSD DetectionOutput.";
    LeakyRelu = 42, "leaky_relu", "Leaky ReLU; slope in post_param1 (f32).";
    SumReduce = 43, "sum_reduce", "Sum reduction.";
    MaxWithConst = 44, "max_with_const", "max(x, c).";
    Rsqrt = 45, "rsqrt", "1/√x.";
    ScaleWithScalar = 46, "scale_with_scalar", "x · s.";
    Dropout = 47, "dropout", "Dropout (unsupported by the firmware).";
    Maxout = 48, "maxout", "Maxout (unsupported).";
    Normalization = 49, "normalization", "Normalization (unsupported).";
    RRelu = 50, "r_relu", "Randomized ReLU (unsupported).";
    Bnll = 51, "BNLL", "BNLL (unsupported).";
    Abs = 52, "abs", "Absolute value (unsupported).";
    StochasticPooling = 53, "stochastic_pooling", "Stochastic pooling (unsupported).";
}

impl StageOp {
    /// The byte written to the file.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Ops whose bias slot holds a per-output-channel bias (§9 bias rule): conv, FC,
    /// depthwise conv, scale and deconv. Other ops use the slot for parameters.
    pub fn bias_slot_is_bias(self) -> bool {
        matches!(
            self,
            StageOp::Convolution
                | StageOp::FullyConnected
                | StageOp::DepthwiseConvolution
                | StageOp::Scale
                | StageOp::Deconvolution
        )
    }
}

impl std::fmt::Display for StageOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.toolkit_name())
    }
}

/// `PadStyle` (§4.2): how the stage's padding is interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PadStyle {
    /// No padding (softmax and other padding-free stages).
    None = 0,
    /// TensorFlow VALID.
    TfValid = 1,
    /// Caffe: symmetric `pad` on each side.
    Caffe = 2,
    /// TensorFlow SAME.
    TfSame = 3,
}

impl PadStyle {
    /// Decodes the byte; `None` for undefined values.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => PadStyle::None,
            1 => PadStyle::TfValid,
            2 => PadStyle::Caffe,
            3 => PadStyle::TfSame,
            _ => return None,
        })
    }
}

/// fp16, the only `DataType` value (2) any v1 graph uses for `datatype` and `precision`.
pub const DATATYPE_FP16: u8 = 2;
/// `StorageOrder` 4 (orderZYX): the constructor value mvNCCompile's Caffe path writes,
/// although the data is HWC (§4.1 note).
pub const STORAGE_ORDER_CAFFE: u8 = 4;
/// `StorageOrder` 2 (orderYXZ) written by the TensorFlow path.
pub const STORAGE_ORDER_TF: u8 = 2;

/// Location code of a buffer reference (`MemoryIndex`, §4.2/§5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Location {
    /// Field unused.
    None,
    /// The network input tensor passed to `mvncLoadTensor`.
    Input,
    /// The network output tensor returned by `mvncGetResult`.
    Output,
    /// The file's data section, pointer relative to `buffer_start`.
    Blob,
    /// A work buffer in the per-inference scratch arena (id ≥ 4).
    Work(u16),
}

impl Location {
    /// Location code 0.
    pub const NONE: u16 = 0;
    /// Location code 1.
    pub const INPUT: u16 = 1;
    /// Location code 2.
    pub const OUTPUT: u16 = 2;
    /// Location code 3.
    pub const BLOB: u16 = 3;
    /// The first work-buffer id the toolkit hands out.
    pub const FIRST_WORK: u16 = 4;

    /// Decodes a location code; every value ≥ 4 is a work-buffer id.
    pub fn from_code(code: u16) -> Self {
        match code {
            0 => Location::None,
            1 => Location::Input,
            2 => Location::Output,
            3 => Location::Blob,
            n => Location::Work(n),
        }
    }

    /// The code written to the file.
    pub fn code(self) -> u16 {
        match self {
            Location::None => 0,
            Location::Input => 1,
            Location::Output => 2,
            Location::Blob => 3,
            Location::Work(n) => n,
        }
    }
}

/// A (pointer, location) pair: where a stage reads or writes one operand (§5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub struct BufferRef {
    /// Byte offset inside the location.
    pub pointer: u32,
    /// Location code (0 none, 1 input, 2 output, 3 data section, ≥ 4 work buffer).
    pub location: u16,
}

impl BufferRef {
    /// The unused reference (0, 0).
    pub const NONE: BufferRef = BufferRef {
        pointer: 0,
        location: 0,
    };

    /// A reference into the data section.
    pub fn blob(pointer: u32) -> Self {
        Self {
            pointer,
            location: Location::BLOB,
        }
    }

    /// Builds a reference.
    pub fn new(pointer: u32, location: u16) -> Self {
        Self { pointer, location }
    }

    /// The decoded location.
    pub fn loc(self) -> Location {
        Location::from_code(self.location)
    }

    /// True when the field is used.
    pub fn is_used(self) -> bool {
        self.location != Location::NONE
    }
}

impl std::fmt::Display for BufferRef {
    /// `pointer@location`, the notation of REAL_GRAPHS.md.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.pointer, self.location)
    }
}

/// An (X, Y, Z) = (width, height, channels) triple, the format's axis naming (§1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub struct Xyz {
    /// Width (or the X stride in bytes).
    pub x: u32,
    /// Height.
    pub y: u32,
    /// Channels.
    pub z: u32,
}

impl Xyz {
    /// Builds a triple.
    pub const fn new(x: u32, y: u32, z: u32) -> Self {
        Self { x, y, z }
    }

    /// x·y·z, widened and saturating so that hostile dims cannot overflow.
    pub fn volume(self) -> u64 {
        (self.x as u64)
            .saturating_mul(self.y as u64)
            .saturating_mul(self.z as u64)
    }
}

impl std::fmt::Display for Xyz {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}x{}", self.x, self.y, self.z)
    }
}

/// A decoded stage record. Field names follow the toolkit's; enumerations are typed, the
/// rest is kept as stored so that encoding reproduces the bytes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageRecord {
    /// Stage name (≤ 100 bytes; a 100-byte name has no NUL).
    pub name: String,
    /// The operation.
    pub op: StageOp,
    /// Implementation-selection mask (§4.4).
    pub opt_mask: u32,
    /// Kernel width and height (`radixX`, `radixY`); signed bytes in the file.
    pub radix: [i8; 2],
    /// Stride along x and y.
    pub stride: [u8; 2],
    /// Padding along x and y (each side).
    pub pad: [u8; 2],
    /// How padding is applied.
    pub pad_style: PadStyle,
    /// Input dims (X, Y, Z).
    pub input_dims: Xyz,
    /// Taps dims (see §6.5 for what each op stores).
    pub taps_dims: Xyz,
    /// Output dims.
    pub output_dims: Xyz,
    /// Input strides in bytes.
    pub input_strides: Xyz,
    /// Taps strides in bytes (informational only).
    pub taps_strides: Xyz,
    /// Output strides in bytes.
    pub output_strides: Xyz,
    /// `DataType` of the data (2 = fp16).
    pub datatype: u8,
    /// `DataType` of the arithmetic (2 = fp16).
    pub precision: u8,
    /// `StorageOrder` byte as written (4 from Caffe, 2 from TensorFlow).
    pub storage_order: u8,
    /// Input tensor.
    pub data: BufferRef,
    /// Weights, or the second eltwise operand.
    pub taps: BufferRef,
    /// Bias, or LRN/PReLU parameters.
    pub bias: BufferRef,
    /// Op-specific parameter array (dilation, softmax axis).
    pub op_params: BufferRef,
    /// Output tensor.
    pub output: BufferRef,
    /// Fused pre-operation (always none in files seen).
    pub pre_op: StageOp,
    /// Fused post-operation (none, bias, relu, leaky relu, elu…).
    pub post_op: StageOp,
    /// Raw bits of `post_param1`: an f32 for leaky ReLU / ELU, otherwise 0.
    pub post_param: u32,
    /// `post_strideX`, `post_strideY` (0 from Caffe).
    pub post_stride: [u16; 2],
}

impl StageRecord {
    /// `post_param1` read as the f32 the toolkit writes for slope-carrying post-ops.
    pub fn post_param_f32(&self) -> f32 {
        f32::from_bits(self.post_param)
    }

    /// Number of fp16 values the host reads back when this is the last stage:
    /// `outputDimX · outputDimY · outputStrideX / 2` (§3, §5.4).
    pub fn host_output_len(&self) -> u64 {
        Xyz::new(
            self.output_dims.x,
            self.output_dims.y,
            self.output_strides.x,
        )
        .volume()
            / 2
    }

    /// Byte extent of an (dims, strides) view: `(X−1)·Sx + (Y−1)·Sy + (Z−1)·Sz + 2` (§9).
    pub fn extent(dims: Xyz, strides: Xyz) -> u64 {
        if dims.volume() == 0 {
            return 0;
        }
        // each term < 2^64 since both factors < 2^32
        ((dims.x as u64 - 1) * strides.x as u64)
            .saturating_add((dims.y as u64 - 1) * strides.y as u64)
            .saturating_add((dims.z as u64 - 1) * strides.z as u64)
            .saturating_add(2)
    }
}
