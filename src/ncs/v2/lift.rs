//! NCSDK 2 → the v1 record shape, so that the graph → IR lifter (`ncs::to_ir`), the
//! report code and the f16 engine path serve both generations. Relocations are resolved
//! (NCSDK2_GRAPH_FORMAT.md §6.2: blob entry → buffer-data offset, work entry → arena
//! offset), scalars go to the v1 fields, and the inline dilation/axis words become int32
//! parameter arrays appended to the data, where the v1 reader looks for them.

use super::graph::GraphV2;
use super::record::{Descriptor, StageV2};
use crate::ncs::error::ToIrError;
use crate::ncs::graph::Graph;
use crate::ncs::header::GraphHeader;
use crate::ncs::stage::{
    BufferRef, Location, PadStyle, StageOp, StageRecord, Xyz, DATATYPE_FP16, STORAGE_ORDER_CAFFE,
};

/// Largest dimension, stride or element count the lifter accepts (2^28): far above any
/// tensor the stick's 512 MiB holds in fp16, and small enough that the v1 lifter's
/// stride arithmetic (2·C·W and the like) cannot overflow.
const MAX_EXTENT: u32 = 1 << 28;

/// The name given to stage `i` (NCSDK 2 files carry no names): `<op>_<i>`; the Caffe input
/// stage is "input".
pub fn stage_name(i: usize, s: &StageV2) -> String {
    if s.op == StageOp::None {
        "input".into()
    } else {
        format!("{}_{i}", s.op.toolkit_name())
    }
}

fn err(i: usize, s: &StageV2, msg: impl Into<String>) -> ToIrError {
    ToIrError {
        index: i,
        name: stage_name(i, s),
        op: s.op.toolkit_name().into(),
        msg: msg.into(),
    }
}

/// The (W, H, C) tensor an FC stage reads as (1, 1, W·H·C): its strides still describe the
/// producer's HWC layout, (2C, 2CW, 2) (NCSDK2_GRAPH_FORMAT.md §4.7).
fn unflatten(dims: Xyz, strides: Xyz) -> Xyz {
    if dims.x != 1 || dims.y != 1 || strides.x < 2 || strides.y < strides.x {
        return dims;
    }
    let c = strides.x / 2;
    let w = strides.y / strides.x;
    let h = dims.z / (c * w).max(1);
    if c * w * h == dims.z && strides.y.is_multiple_of(strides.x) {
        Xyz::new(w, h, c)
    } else {
        dims
    }
}

/// Converts a v2 graph into the v1 in-memory shape (not a v1 file: work pointers are v2
/// arena offsets and conv/FC taps keep their ×8 padding, which readers ignore).
pub fn to_v1_view(g: &GraphV2) -> Result<Graph, ToIrError> {
    let mut data = g.data.clone();
    let mut stages = Vec::with_capacity(g.stages.len());
    // dims of the network input, from the first descriptor that reads location 1
    let input = g
        .stages
        .iter()
        .filter_map(|s| s.operand("input"))
        .find(|d| d.location == Location::INPUT as u32)
        .copied()
        .unwrap_or_default();
    for (i, s) in g.stages.iter().enumerate() {
        let resolve = |d: Option<&Descriptor>| -> Result<BufferRef, ToIrError> {
            let Some(d) = d else {
                return Ok(BufferRef::NONE);
            };
            let loc = u16::try_from(d.location)
                .map_err(|_| err(i, s, format!("location {} does not fit", d.location)))?;
            let pointer = match d.location {
                0..=2 => d.offset,
                _ => {
                    g.reloc_of(d)
                        .ok_or_else(|| err(i, s, format!("relocation index {} missing", d.offset)))?
                        .offset
                }
            };
            Ok(BufferRef::new(pointer, loc))
        };
        let small = |v: u32, what: &str| -> Result<u8, ToIrError> {
            u8::try_from(v).map_err(|_| {
                err(
                    i,
                    s,
                    format!("{what} {v} exceeds what the IR lifter takes (255)"),
                )
            })
        };
        let p = |n: &str| s.param(n).unwrap_or(0);
        let mut rec = StageRecord {
            name: stage_name(i, s),
            op: s.op,
            opt_mask: s.implementation,
            radix: [0, 0],
            stride: [1, 1],
            pad: [0, 0],
            pad_style: PadStyle::Caffe,
            input_dims: Xyz::default(),
            taps_dims: Xyz::default(),
            output_dims: Xyz::default(),
            input_strides: Xyz::default(),
            taps_strides: Xyz::default(),
            output_strides: Xyz::default(),
            datatype: DATATYPE_FP16,
            precision: DATATYPE_FP16,
            storage_order: STORAGE_ORDER_CAFFE,
            data: resolve(s.operand("input"))?,
            taps: resolve(s.operand("taps"))?,
            bias: resolve(s.operand("bias"))?,
            op_params: BufferRef::NONE,
            output: resolve(s.operand("output"))?,
            pre_op: s.pre_op,
            post_op: s.post_op,
            post_param: s.post_payload.map(|w| w[0]).unwrap_or(0),
            post_stride: [0, 0],
        };
        for (k, d) in s.operands.iter().enumerate() {
            let big = [
                d.dims.x,
                d.dims.y,
                d.dims.z,
                d.strides.x,
                d.strides.y,
                d.strides.z,
            ]
            .iter()
            .any(|&v| v > MAX_EXTENT);
            if big || d.dims.volume() > MAX_EXTENT as u64 {
                return Err(err(
                    i,
                    s,
                    format!(
                        "{} descriptor {}/{} exceeds the {MAX_EXTENT}-element limit of the IR lifter",
                        s.role(k),
                        d.dims,
                        d.strides
                    ),
                ));
            }
        }
        if let Some(d) = s.operand("input") {
            (rec.input_dims, rec.input_strides) = (d.dims, d.strides);
        }
        if let Some(d) = s.operand("output") {
            (rec.output_dims, rec.output_strides) = (d.dims, d.strides);
        }
        if let Some(d) = s.operand("taps") {
            (rec.taps_dims, rec.taps_strides) = (d.dims, d.strides);
        }
        if s.params.len() >= 7 {
            let radix =
                |v: u32| i8::try_from(v).map_err(|_| err(i, s, format!("kernel {v} exceeds 127")));
            rec.radix = [radix(p("radixX"))?, radix(p("radixY"))?];
            rec.stride = [
                small(p("strideX"), "stride")?,
                small(p("strideY"), "stride")?,
            ];
            rec.pad = [small(p("padX"), "pad")?, small(p("padY"), "pad")?];
            rec.pad_style = PadStyle::from_code(small(p("padStyle"), "padStyle")?)
                .ok_or_else(|| err(i, s, format!("unknown padStyle {}", p("padStyle"))))?;
        }
        if matches!(s.op, StageOp::Lrn | StageOp::InnerLrn) {
            rec.radix = [
                i8::try_from(p("size")).map_err(|_| err(i, s, "LRN size exceeds 127"))?,
                0,
            ];
        }
        if s.op == StageOp::SoftMax {
            rec.pad_style = PadStyle::None;
        }
        if let Some(v) = s.param("dilation").or(s.param("axis")) {
            let at = data.len() as u32;
            data.extend_from_slice(&(v as i32).to_le_bytes());
            data.resize(data.len().div_ceil(64) * 64, 0);
            rec.op_params = BufferRef::blob(at);
        }
        if s.op == StageOp::None {
            let d = unflatten(input.dims, input.strides);
            rec.input_dims = d;
            rec.output_dims = d;
            let sx = d.z.saturating_mul(2);
            rec.input_strides = Xyz::new(sx, sx.saturating_mul(d.x), 2);
            rec.output_strides = rec.input_strides;
            rec.data = BufferRef::new(0, Location::INPUT);
            rec.output = BufferRef::new(0, Location::OUTPUT);
        }
        stages.push(rec);
    }
    let mut v1 = Graph {
        header: GraphHeader {
            file_size: 0,
            version: crate::ncs::header::GRAPH_VERSION,
            name: String::new(),
            report_dir: String::new(),
            stage_count: 0,
            buffer_start: 0,
            first_shave: 0,
            last_shave: g.header.num_shaves.clamp(1, u16::MAX as u32) as u16 - 1,
            leon_mem_location: 0,
            leon_mem_size: 0,
            dma_agent: 0,
        },
        stages,
        data,
    };
    v1.seal();
    Ok(v1)
}
