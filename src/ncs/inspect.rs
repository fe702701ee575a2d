//! `inspect`: a human table and a JSON document describing a graph file — the header and,
//! per stage, op, kernel/stride/pad, dims, post-op and buffer locations (the columns of the
//! per-stage dumps in REAL_GRAPHS.md), for the CLI's `inspect` command and for scripts.

use super::error::NcsError;
use super::graph::Graph;
use super::stage::{BufferRef, Location, PadStyle, StageOp, StageRecord, Xyz};
use serde::Serialize;
use std::fmt;
use std::path::Path;

/// Where one operand of a stage lives.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BufferReport {
    /// Byte offset inside the location (data section: from `buffer_start`).
    pub pointer: u32,
    /// Location code.
    pub location: u16,
    /// "input", "output", "blob" or "work".
    pub kind: &'static str,
}

impl BufferReport {
    /// `None` for an unused slot.
    fn of(r: BufferRef) -> Option<Self> {
        let kind = match r.loc() {
            Location::None => return None,
            Location::Input => "input",
            Location::Output => "output",
            Location::Blob => "blob",
            Location::Work(_) => "work",
        };
        Some(Self {
            pointer: r.pointer,
            location: r.location,
            kind,
        })
    }
}

/// The five operand slots of a stage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageBuffers {
    /// Input tensor.
    pub data: Option<BufferReport>,
    /// Weights or second operand.
    pub taps: Option<BufferReport>,
    /// Bias or parameters.
    pub bias: Option<BufferReport>,
    /// Op parameter array.
    pub op_params: Option<BufferReport>,
    /// Output tensor.
    pub output: Option<BufferReport>,
}

/// One stage of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageReport {
    /// Position in execution order.
    pub index: usize,
    /// Stage name.
    pub name: String,
    /// Toolkit op name.
    pub op: &'static str,
    /// Op code byte.
    pub op_code: u8,
    /// `optMask`.
    pub opt_mask: u32,
    /// Kernel (x, y).
    pub kernel: [i8; 2],
    /// Stride (x, y).
    pub stride: [u8; 2],
    /// Padding (x, y).
    pub pad: [u8; 2],
    /// Padding convention.
    pub pad_style: PadStyle,
    /// Input dims (x, y, z).
    pub input: [u32; 3],
    /// Taps dims.
    pub taps: [u32; 3],
    /// Output dims.
    pub output: [u32; 3],
    /// Input strides in bytes.
    pub input_strides: [u32; 3],
    /// Output strides in bytes.
    pub output_strides: [u32; 3],
    /// Fused post-operation.
    pub post_op: &'static str,
    /// `post_param1` as f32 (slope of a leaky ReLU / ELU α; 0 otherwise).
    pub post_param: f32,
    /// Operand locations.
    pub buffers: StageBuffers,
}

/// The whole report: header facts and the stage table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GraphReport {
    /// File the report describes.
    pub file: String,
    /// NCSDK generation (1).
    pub ncsdk: u32,
    /// Total size in bytes.
    pub file_size: u32,
    /// Format version (2).
    pub version: u32,
    /// Network name.
    pub name: String,
    /// Number of stages.
    pub stage_count: u32,
    /// Data-section offset.
    pub buffer_start: u32,
    /// First SHAVE.
    pub first_shave: u16,
    /// Last SHAVE.
    pub last_shave: u16,
    /// Bytes of weights and parameters.
    pub data_section_bytes: usize,
    /// Bytes of scratch memory the stages address.
    pub work_arena_bytes: u64,
    /// fp16 values the host reads back.
    pub output_values: u64,
    /// The stages.
    pub stages: Vec<StageReport>,
}

fn xyz(v: Xyz) -> [u32; 3] {
    [v.x, v.y, v.z]
}

impl StageReport {
    fn of(index: usize, s: &StageRecord) -> Self {
        let post_param = match s.post_op {
            StageOp::LeakyRelu | StageOp::Elu => s.post_param_f32(),
            _ => 0.0,
        };
        Self {
            index,
            name: s.name.clone(),
            op: s.op.toolkit_name(),
            op_code: s.op.code(),
            opt_mask: s.opt_mask,
            kernel: s.radix,
            stride: s.stride,
            pad: s.pad,
            pad_style: s.pad_style,
            input: xyz(s.input_dims),
            taps: xyz(s.taps_dims),
            output: xyz(s.output_dims),
            input_strides: xyz(s.input_strides),
            output_strides: xyz(s.output_strides),
            post_op: s.post_op.toolkit_name(),
            post_param,
            buffers: StageBuffers {
                data: BufferReport::of(s.data),
                taps: BufferReport::of(s.taps),
                bias: BufferReport::of(s.bias),
                op_params: BufferReport::of(s.op_params),
                output: BufferReport::of(s.output),
            },
        }
    }
}

impl GraphReport {
    /// Builds the report of an in-memory graph; `file` is only echoed.
    pub fn from_graph(g: &Graph, file: &str) -> Self {
        Self {
            file: file.to_string(),
            ncsdk: 1,
            file_size: g.header.file_size,
            version: g.header.version,
            name: g.header.name.clone(),
            stage_count: g.header.stage_count,
            buffer_start: g.header.buffer_start,
            first_shave: g.header.first_shave,
            last_shave: g.header.last_shave,
            data_section_bytes: g.data.len(),
            work_arena_bytes: g.work_arena_len(),
            output_values: g.host_output_len(),
            stages: g
                .stages
                .iter()
                .enumerate()
                .map(|(i, s)| StageReport::of(i, s))
                .collect(),
        }
    }

    /// The JSON document (`--json`): the header fields and a `"stages"` array.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// Reads a graph file (with full validation) and describes it.
pub fn inspect_graph(path: &Path) -> Result<GraphReport, NcsError> {
    let g = Graph::read(path)?;
    Ok(GraphReport::from_graph(&g, &path.display().to_string()))
}

/// The report of either NCSDK generation; JSON carries `"ncsdk": 1` or `2`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum AnyReport {
    /// An NCSDK 1.x graph.
    V1(GraphReport),
    /// An NCSDK 2.x graph (blob 2.3 / 2.4).
    V2(super::v2::V2Report),
}

impl fmt::Display for AnyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnyReport::V1(r) => r.fmt(f),
            AnyReport::V2(r) => r.fmt(f),
        }
    }
}

/// Reads a graph of either generation, detecting it from the first bytes (NCSDK 1:
/// version 2 at offset 36; NCSDK 2: blob magic at 34 or 36), and describes it.
pub fn inspect_any(path: &Path) -> Result<AnyReport, NcsError> {
    let p = path.display().to_string();
    Ok(match super::read_any(path)? {
        super::AnyGraph::V1(g) => AnyReport::V1(GraphReport::from_graph(&g, &p)),
        super::AnyGraph::V2(g) => AnyReport::V2(super::v2::V2Report::from_graph(&g, &p)),
    })
}

fn slot(b: &Option<BufferReport>) -> String {
    match b {
        Some(b) => format!("{}@{}", b.pointer, b.location),
        None => "-".into(),
    }
}

impl fmt::Display for GraphReport {
    /// A header block, then one row per stage; buffers are `pointer@location` with
    /// 1 = input, 2 = output, 3 = data section, ≥ 4 = work buffer.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "file          {}", self.file)?;
        writeln!(
            f,
            "format        NCSDK v1 graph, version {}, {} bytes",
            self.version, self.file_size
        )?;
        writeln!(f, "network       {:?}", self.name)?;
        writeln!(
            f,
            "stages        {} (data section at {}, {} bytes)",
            self.stage_count, self.buffer_start, self.data_section_bytes
        )?;
        writeln!(f, "shaves        {}..{}", self.first_shave, self.last_shave)?;
        writeln!(f, "work arena    {} bytes", self.work_arena_bytes)?;
        writeln!(f, "output        {} fp16 values", self.output_values)?;
        writeln!(f)?;
        let headers = [
            "#", "name", "op", "kernel", "stride", "pad", "input", "output", "post", "data",
            "taps", "bias", "params", "out",
        ];
        let rows: Vec<Vec<String>> = self
            .stages
            .iter()
            .map(|s| {
                let d = |v: [u32; 3]| format!("{}x{}x{}", v[0], v[1], v[2]);
                vec![
                    s.index.to_string(),
                    s.name.clone(),
                    s.op.to_string(),
                    format!("{}x{}", s.kernel[0], s.kernel[1]),
                    format!("{}x{}", s.stride[0], s.stride[1]),
                    format!("{}x{}", s.pad[0], s.pad[1]),
                    d(s.input),
                    d(s.output),
                    s.post_op.to_string(),
                    slot(&s.buffers.data),
                    slot(&s.buffers.taps),
                    slot(&s.buffers.bias),
                    slot(&s.buffers.op_params),
                    slot(&s.buffers.output),
                ]
            })
            .collect();
        let widths: Vec<usize> = (0..headers.len())
            .map(|c| {
                rows.iter()
                    .map(|r| r[c].len())
                    .chain([headers[c].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |f: &mut fmt::Formatter<'_>, cells: &[String]| -> fmt::Result {
            let mut out = String::new();
            for (c, w) in cells.iter().zip(&widths) {
                out.push_str(&format!("{c:<w$}  "));
            }
            writeln!(f, "{}", out.trim_end())
        };
        line(f, &headers.map(String::from))?;
        for r in &rows {
            line(f, r)?;
        }
        Ok(())
    }
}
