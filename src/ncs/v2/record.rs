//! Stage records of the NCSDK 2 stage section (NCSDK2_GRAPH_FORMAT.md §4.2–§4.4): a
//! variable-length frame of u32 words — next-record link, stage type, implementation mask,
//! the op's scalar parameters, one 40-byte buffer descriptor per operand the op uses, pre-
//! and post-op, and a 12-byte post-op payload for the ReLU family only.

use crate::ncs::stage::{StageOp, Xyz};
use serde::Serialize;

/// Bytes of one buffer descriptor (10 × u32, §4.3).
pub const DESCRIPTOR_LEN: usize = 40;
/// `DataType` fp16 in the v2 numbering (§4.6).
pub const DATA_TYPE_FP16: u32 = 0;
/// `StorageOrder` orderYXZ (HWC): activations (§4.6, v2 numbering).
pub const ORDER_YXZ: u32 = 0;
/// `StorageOrder` orderZYX: the bias / parameter slot.
pub const ORDER_ZYX: u32 = 1;
/// `StorageOrder` orderXYZ: taps.
pub const ORDER_XYZ: u32 = 3;

/// One operand of a stage (§4.3). `offset` is a byte offset for locations 0–2 and an
/// index into the blob (location 3) or work (≥ 4) relocation table otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Descriptor {
    /// (X, Y, Z) = (width, height, channels); taps use the op's own convention (§4.7).
    pub dims: Xyz,
    /// Byte strides along X, Y, Z.
    pub strides: Xyz,
    /// Byte offset (locations 0–2) or relocation-table index (3, ≥ 4).
    pub offset: u32,
    /// MemoryIndex: 0 none, 1 input, 2 output, 3 blob, ≥ 4 work buffer id.
    pub location: u32,
    /// DataType (0 = fp16).
    pub data_type: u32,
    /// StorageOrder (v2 numbering).
    pub order: u32,
}

impl Descriptor {
    /// The unused slot: all zero except the storage order (§4.3).
    pub fn unused(order: u32) -> Self {
        Self {
            order,
            ..Self::default()
        }
    }

    /// Appends the 40 bytes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        for w in [
            self.dims.x,
            self.dims.y,
            self.dims.z,
            self.strides.x,
            self.strides.y,
            self.strides.z,
            self.offset,
            self.location,
            self.data_type,
            self.order,
        ] {
            out.extend_from_slice(&w.to_le_bytes());
        }
    }

    /// Decodes 10 words.
    pub fn decode(w: &[u32]) -> Self {
        Self {
            dims: Xyz::new(w[0], w[1], w[2]),
            strides: Xyz::new(w[3], w[4], w[5]),
            offset: w[6],
            location: w[7],
            data_type: w[8],
            order: w[9],
        }
    }
}

/// Operand roles, in payload order, for the ops with descriptors.
const IN_OUT: &[&str] = &["input", "output"];
const CONV: &[&str] = &["input", "output", "taps", "bias"];
const WITH_PARAMS: &[&str] = &["input", "output", "bias"];
const ELTWISE: &[&str] = &["input", "output", "taps"];

/// Scalar parameter names of the ops that have them.
const CONV_PARAMS: &[&str] = &[
    "radixX", "radixY", "strideX", "strideY", "padX", "padY", "padStyle", "dilation",
];
const POOL_PARAMS: &[&str] = &[
    "radixX", "radixY", "strideX", "strideY", "padX", "padY", "padStyle",
];

/// The payload layout of a stage type: scalar names and descriptor roles (§4.4); `None`
/// for types the 2.05 toolkit does not write in the default parser.
pub fn layout(op: StageOp) -> Option<(&'static [&'static str], &'static [&'static str])> {
    use StageOp::*;
    Some(match op {
        Convolution | Deconvolution | DepthwiseConvolution => (CONV_PARAMS, CONV),
        MaxPooling | AveragePooling => (POOL_PARAMS, IN_OUT),
        SoftMax => (&["axis"], IN_OUT),
        FullyConnected | Scale => (&[], CONV),
        None => (&[], &[]),
        Lrn | InnerLrn => (&["size"], WITH_PARAMS),
        EltwiseSum | EltwiseProd | EltwiseMax => (&[], ELTWISE),
        PRelu => (&[], WITH_PARAMS),
        Square | Copy | Sigmoid | TanH | ToPlaneMajor => (&[], IN_OUT),
        Reshape => (&["outX", "outY", "outZ"], IN_OUT),
        Power => (&["shift", "scale", "power"], IN_OUT),
        Crop => (&["offX", "offY", "offZ"], IN_OUT),
        _ => return Option::None,
    })
}

/// Post-ops that carry the 12-byte payload (f32 opX, post_strideX, post_strideY).
pub fn post_has_payload(post: StageOp) -> bool {
    matches!(post, StageOp::Relu | StageOp::ReluX | StageOp::LeakyRelu)
}

/// Post-op codes the 2.05 writer emits (§4.2): none, bias, ReLU, ReLU-X, ELU, leaky ReLU.
pub fn known_post(post: StageOp) -> bool {
    matches!(
        post,
        StageOp::None
            | StageOp::Bias
            | StageOp::Relu
            | StageOp::ReluX
            | StageOp::Elu
            | StageOp::LeakyRelu
    )
}

/// A decoded stage record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageV2 {
    /// The stage type.
    pub op: StageOp,
    /// optMask (0x80000000 normally).
    pub implementation: u32,
    /// Scalar parameters in payload order (raw words; power's are f32 bits).
    pub params: Vec<u32>,
    /// Operand descriptors in payload order (see [`layout`]).
    pub operands: Vec<Descriptor>,
    /// Pre-op (always none).
    pub pre_op: StageOp,
    /// Post-op.
    pub post_op: StageOp,
    /// Post-op payload words (opX bits, strideX, strideY) for ReLU-family post-ops.
    pub post_payload: Option<[u32; 3]>,
}

impl StageV2 {
    /// Record length in bytes (§4.4): 12 + scalars + descriptors + 8 (+ 12).
    pub fn encoded_len(&self) -> usize {
        12 + 4 * self.params.len()
            + DESCRIPTOR_LEN * self.operands.len()
            + 8
            + if self.post_payload.is_some() { 12 } else { 0 }
    }

    /// The role of operand `i` ("input", "output", "taps", "bias").
    pub fn role(&self, i: usize) -> &'static str {
        layout(self.op)
            .and_then(|(_, roles)| roles.get(i).copied())
            .unwrap_or("operand")
    }

    /// The operand with the given role, if the op has it.
    pub fn operand(&self, role: &str) -> Option<&Descriptor> {
        let (_, roles) = layout(self.op)?;
        let i = roles.iter().position(|r| *r == role)?;
        self.operands.get(i)
    }

    /// The scalar with the given name (e.g. "dilation", "axis").
    pub fn param(&self, name: &str) -> Option<u32> {
        let (names, _) = layout(self.op)?;
        let i = names.iter().position(|n| *n == name)?;
        self.params.get(i).copied()
    }

    /// Appends the record; `next` is the link word (0 for the last record).
    pub fn encode(&self, next: u32, out: &mut Vec<u8>) {
        let mut w = |v: u32| out.extend_from_slice(&v.to_le_bytes());
        w(next);
        w(self.op.code() as u32);
        w(self.implementation);
        for &p in &self.params {
            w(p);
        }
        for d in &self.operands {
            d.encode(out);
        }
        let mut w = |v: u32| out.extend_from_slice(&v.to_le_bytes());
        w(self.pre_op.code() as u32);
        w(self.post_op.code() as u32);
        if let Some(p) = self.post_payload {
            for v in p {
                w(v);
            }
        }
    }
}
