//! The NCSDK 2 emitter (NCSDK2_GRAPH_FORMAT.md §10): the shared compiler lowers and packs
//! the net (stages, fp16 RNE, HWCK layouts, work buffers, ×8 tap padding), and this module
//! writes the result as blob 2.3/2.4 records — per-op scalars (§4.4), one descriptor per
//! operand with v2's storage orders (§4.7), relocation entries in file order without
//! de-duplication (§6.2) — and lays out the container.

use super::graph::{GraphV2, Reloc};
use super::header::{BlobHeader, BlobVersion, RESERVED_60_V2_4};
use super::record::{
    layout, post_has_payload, Descriptor, StageV2, DATA_TYPE_FP16, ORDER_XYZ, ORDER_YXZ, ORDER_ZYX,
};
use crate::ir::Net;
use crate::ncs::compiler::{compile_for_ncsdk2, CompileError, CompileOptions, CompileWarning};
use crate::ncs::graph::Graph;
use crate::ncs::stage::{BufferRef, Location, StageOp, StageRecord, Xyz};

/// Compiles a net into an NCSDK 2 graph of the given blob version.
pub fn compile_v2(
    net: &Net,
    opts: &CompileOptions,
    version: BlobVersion,
) -> Result<(GraphV2, Vec<CompileWarning>), CompileError> {
    let c = compile_for_ncsdk2(net, opts)?;
    let g = from_packed(&c.graph, opts.shaves as u32, version)?;
    Ok((g, c.warnings))
}

/// Appends relocation entries for descriptors as they are written (§6.2).
#[derive(Default)]
struct Tables {
    blob: Vec<Reloc>,
    work: Vec<Reloc>,
}

impl Tables {
    /// The descriptor's (offset, location) for a resolved buffer reference: locations 0–2
    /// keep their byte offset, 3 and ≥ 4 get the index of a new table entry.
    fn place(&mut self, r: BufferRef) -> (u32, u32) {
        let loc = r.location as u32;
        match r.loc() {
            Location::Blob => {
                self.blob.push(Reloc {
                    offset: r.pointer,
                    location: loc,
                });
                (self.blob.len() as u32 - 1, loc)
            }
            Location::Work(_) => {
                self.work.push(Reloc {
                    offset: r.pointer,
                    location: loc,
                });
                (self.work.len() as u32 - 1, loc)
            }
            _ => (r.pointer, loc),
        }
    }

    fn desc(&mut self, dims: Xyz, strides: Xyz, r: BufferRef, order: u32) -> Descriptor {
        let (offset, location) = self.place(r);
        Descriptor {
            dims,
            strides,
            offset,
            location,
            data_type: DATA_TYPE_FP16,
            order,
        }
    }
}

fn refuse(s: &StageRecord, why: impl Into<String>) -> CompileError {
    CompileError::Unsupported {
        layer: s.name.clone(),
        kind: s.op.toolkit_name().into(),
        why: why.into(),
    }
}

/// The int32 op parameter (dilation, softmax axis) the packer stored, or `default`.
fn op_param(g: &Graph, s: &StageRecord, default: u32) -> u32 {
    match s.op_params.loc() {
        Location::Blob => g
            .i32_at(s.op_params, 1)
            .and_then(|v| v.first().copied())
            .map(|v| v as u32)
            .unwrap_or(default),
        _ => default,
    }
}

/// Turns stages packed for NCSDK 2 (work offsets at allocation starts, padded taps) into a
/// sealed blob 2.3/2.4 graph.
pub fn from_packed(
    g: &Graph,
    num_shaves: u32,
    version: BlobVersion,
) -> Result<GraphV2, CompileError> {
    let mut t = Tables::default();
    let mut stages = Vec::with_capacity(g.stages.len());
    for s in &g.stages {
        let Some((_, roles)) = layout(s.op) else {
            return Err(refuse(
                s,
                "NCSDK 2 has no record layout for this stage type",
            ));
        };
        let has = |r: BufferRef| r.is_used();
        if matches!(
            s.op,
            StageOp::EltwiseSum | StageOp::EltwiseProd | StageOp::EltwiseMax
        ) && has(s.bias)
        {
            return Err(refuse(
                s,
                "an NCSDK 2 eltwise stage takes two operands (compile_for_ncsdk2 splits a 3-operand Eltwise into two stages)",
            ));
        }
        let [rx, ry] = s.radix.map(|v| v as u32);
        let [sx, sy] = s.stride.map(u32::from);
        let [px, py] = s.pad.map(u32::from);
        let style = s.pad_style as u32;
        let params = match s.op {
            StageOp::Convolution | StageOp::Deconvolution => {
                vec![rx, ry, sx, sy, px, py, style, op_param(g, s, 1)]
            }
            StageOp::DepthwiseConvolution => vec![rx, ry, sx, sy, px, py, style, 1],
            StageOp::MaxPooling | StageOp::AveragePooling => vec![rx, ry, sx, sy, px, py, style],
            StageOp::SoftMax => vec![op_param(g, s, 1)],
            StageOp::Lrn | StageOp::InnerLrn => vec![rx],
            StageOp::Reshape | StageOp::Power | StageOp::Crop => {
                return Err(refuse(s, "not emitted by this compiler"))
            }
            _ => vec![],
        };
        let mut operands = Vec::with_capacity(roles.len());
        for role in roles {
            let d = match *role {
                "input" => t.desc(s.input_dims, s.input_strides, s.data, ORDER_YXZ),
                "output" => t.desc(s.output_dims, s.output_strides, s.output, ORDER_YXZ),
                "taps"
                    if s.op == StageOp::EltwiseSum
                        || s.op == StageOp::EltwiseProd
                        || s.op == StageOp::EltwiseMax =>
                {
                    let d = s.input_dims;
                    t.desc(d, Xyz::new(2 * d.z, 2 * d.z * d.x, 2), s.taps, ORDER_YXZ)
                }
                "taps" => {
                    let d = s.taps_dims;
                    let st = Xyz::new(2 * d.z * d.y, 2 * d.z, 2);
                    if has(s.taps) {
                        t.desc(d, st, s.taps, ORDER_XYZ)
                    } else {
                        Descriptor::unused(ORDER_XYZ)
                    }
                }
                _ => {
                    if has(s.bias) {
                        t.desc(Xyz::default(), Xyz::default(), s.bias, ORDER_ZYX)
                    } else {
                        Descriptor::unused(ORDER_ZYX)
                    }
                }
            };
            operands.push(d);
        }
        let post_payload = post_has_payload(s.post_op).then_some([s.post_param, 0, 0]);
        stages.push(StageV2 {
            op: s.op,
            implementation: s.opt_mask,
            params,
            operands,
            pre_op: s.pre_op,
            post_op: s.post_op,
            post_payload,
        });
    }
    let first = g.stages.first();
    let last = g.stages.last();
    let mut out = GraphV2 {
        header: BlobHeader {
            version,
            file_size: 0,
            num_shaves,
            patch: 0,
            reserved_60: if version == BlobVersion::V2_4 {
                RESERVED_60_V2_4
            } else {
                0
            },
            stage_section_offset: 0,
            buffer_section_offset: 0,
            relocation_offset: 0,
            size_of_input: first.map(|s| s.input_dims.volume() as u32).unwrap_or(0),
            permutation_enabled: 0,
        },
        // §8.1: the element count of the output tensor; members of a final concat write
        // channel ranges of it, so the last record's x-stride gives its channels
        output_size: last.map(|s| s.host_output_len() as u32).unwrap_or(0),
        stage_section_size: 0,
        stages,
        data: g.data.clone(),
        blob_relocs: t.blob,
        work_relocs: t.work,
    };
    out.seal();
    Ok(out)
}

/// Compiles and writes an NCSDK 2 graph atomically; returns the warnings. Nothing is
/// written when compilation fails.
pub fn compile_v2_to_file(
    net: &Net,
    opts: &CompileOptions,
    version: BlobVersion,
    path: &std::path::Path,
) -> Result<Vec<CompileWarning>, crate::ncs::compiler::CompileFileError> {
    let (g, warnings) = compile_v2(net, opts, version)?;
    g.write(path)?;
    Ok(warnings)
}
