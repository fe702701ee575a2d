//! Packing: resolves every stage's buffer references, applies the optMask rule, lays the
//! constants out in the data section in depth-first stage-tree order (§5.2) and builds the
//! sealed [`Graph`].

use super::lower::{Const, Plan, Src};
use super::{CompileError, CompileOptions, MAX_GRAPH_BYTES, MAX_WORK_BYTES};
use crate::ncs::graph::Graph;
use crate::ncs::header::{buffer_start_for, GraphHeader, GRAPH_VERSION};
use crate::ncs::stage::{BufferRef, Location, StageOp};

/// Which container the packed stages are for: the two differ in where a work pointer
/// points and in the padding of conv/FC taps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// NCSDK 1.x: work pointers past the leading guard band, taps at their exact size.
    Ncsdk1,
    /// NCSDK 2.x: work offsets at the allocation start (NCSDK2_GRAPH_FORMAT.md §6.3 step
    /// 3); conv and FC taps followed by zeros up to `align(K, 8)` output channels (§5.2).
    Ncsdk2,
}

/// Appends one constant buffer, zero-padded to 64 bytes; returns its pointer.
fn append(data: &mut Vec<u8>, c: &Const) -> u32 {
    let at = data.len() as u32;
    match c {
        Const::F16(v) => {
            for x in v {
                data.extend_from_slice(&x.to_le_bytes());
            }
        }
        Const::I32(v) => {
            for x in v {
                data.extend_from_slice(&x.to_le_bytes());
            }
        }
    }
    data.resize(data.len().div_ceil(64) * 64, 0);
    at
}

/// NCSDK 2's ×8 tap padding (§5.2): conv (op 0) and FC (op 4) taps of K output channels
/// are extended with zero elements at the end to `align(K, 8) × (taps / K)`.
fn pad_taps(c: &Const, op: StageOp, k: u32) -> Option<Const> {
    let Const::F16(v) = c else { return None };
    if !matches!(op, StageOp::Convolution | StageOp::FullyConnected) || k == 0 {
        return None;
    }
    let k = k as usize;
    let rest = v.len() / k;
    let mut out = v.clone();
    out.resize(k.div_ceil(8) * 8 * rest, half::f16::ZERO);
    Some(Const::F16(out))
}

pub(super) fn pack(
    mut plan: Plan,
    opts: &CompileOptions,
    container: Container,
) -> Result<Graph, CompileError> {
    if plan.arena > MAX_WORK_BYTES {
        return Err(CompileError::WorkTooLarge {
            bytes: plan.arena,
            limit: MAX_WORK_BYTES,
        });
    }
    let n = plan.stages.len();
    let file_len = buffer_start_for(n as u64) + plan.const_bytes;
    if file_len > MAX_GRAPH_BYTES {
        return Err(CompileError::GraphTooLarge {
            bytes: file_len,
            limit: MAX_GRAPH_BYTES,
        });
    }
    // the last stage writes the network output (members of an output Concat already
    // point into it at their channel offsets)
    if let Some(last) = plan.stages.last_mut() {
        if last.out.map(|r| r.location) != Some(Location::OUTPUT) {
            last.out = Some(BufferRef::new(0, Location::OUTPUT));
        }
    }
    let out_of = |stages: &[super::lower::Planned], s: Src| match s {
        Src::Input { offset } => BufferRef::new(offset, Location::INPUT),
        Src::Stage(j) => stages[j].out.unwrap_or(BufferRef::NONE),
    };
    if container == Container::Ncsdk2 {
        for s in &mut plan.stages {
            if let Some(r) = &mut s.out {
                if r.location >= Location::FIRST_WORK {
                    r.pointer -= s.guard;
                }
            }
        }
    }
    for i in 0..n {
        let data = out_of(&plan.stages, plan.stages[i].data);
        let taps = plan.stages[i].taps_src.map(|s| out_of(&plan.stages, s));
        let bias = plan.stages[i].bias_src.map(|s| out_of(&plan.stages, s));
        let s = &mut plan.stages[i];
        s.rec.data = data;
        if let Some(t) = taps {
            s.rec.taps = t;
        }
        if let Some(b) = bias {
            s.rec.bias = b;
        }
        s.rec.output = s.out.unwrap_or(BufferRef::NONE);
    }
    // §4.4: a wide convolution writing a location another stage also writes gets im2col_v2
    for i in 0..n {
        let r = &plan.stages[i].rec;
        if r.op == StageOp::Convolution && r.input_dims.z >= 200 && r.opt_mask & 0x8000_0000 != 0 {
            let shared =
                (0..n).any(|j| j != i && plan.stages[j].rec.output.location == r.output.location);
            if shared {
                let m = &mut plan.stages[i].rec.opt_mask;
                *m = (*m & 0x7FFF_FFFF) | 4;
            }
        }
    }
    // data section: depth-first over the stage tree, taps then bias then params
    let mut data = Vec::with_capacity(plan.const_bytes as usize);
    let mut stack = vec![0usize];
    while let Some(i) = stack.pop() {
        let s = &mut plan.stages[i];
        if let Some(c) = &s.taps {
            let padded = match container {
                Container::Ncsdk2 => pad_taps(c, s.rec.op, s.rec.taps_dims.z),
                Container::Ncsdk1 => None,
            };
            s.rec.taps = BufferRef::blob(append(&mut data, padded.as_ref().unwrap_or(c)));
        }
        if let Some(c) = &s.bias {
            s.rec.bias = BufferRef::blob(append(&mut data, c));
        }
        if let Some(c) = &s.params {
            s.rec.op_params = BufferRef::blob(append(&mut data, c));
        }
        stack.extend(s.children.iter().rev());
    }
    let mut g = Graph {
        header: GraphHeader {
            file_size: 0,
            version: GRAPH_VERSION,
            name: plan.name,
            report_dir: String::new(),
            stage_count: 0,
            buffer_start: 0,
            first_shave: 0,
            last_shave: opts.shaves - 1,
            leon_mem_location: 0,
            leon_mem_size: 0,
            dma_agent: 0,
        },
        stages: plan.stages.into_iter().map(|s| s.rec).collect(),
        data,
    };
    g.seal();
    Ok(g)
}
