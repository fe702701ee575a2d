//! `inspect` for NCSDK 2 graphs: the container sections, the header, every stage with its
//! scalars and operand descriptors (relocations resolved), the constant buffers and both
//! relocation tables — a table for people and a JSON document for scripts.

use super::graph::{GraphV2, Reloc};
use super::header::BlobHeader;
use super::lift::stage_name;
use crate::ncs::error::NcsError;
use crate::ncs::stage::StageRecord;
use serde::Serialize;
use std::fmt;
use std::path::Path;

/// One region of the file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SectionReport {
    /// Region name.
    pub name: &'static str,
    /// File offset.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
}

/// One operand descriptor, with its relocation resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OperandReport {
    /// Role (input, output, taps, bias).
    pub role: &'static str,
    /// (X, Y, Z).
    pub dims: [u32; 3],
    /// Byte strides.
    pub strides: [u32; 3],
    /// MemoryIndex.
    pub location: u32,
    /// "none", "input", "output", "blob" or "work".
    pub kind: &'static str,
    /// Relocation-table index (blob and work operands).
    pub reloc_index: Option<u32>,
    /// Byte offset inside the location (resolved through the table).
    pub offset: u32,
    /// StorageOrder (v2 numbering).
    pub order: u32,
}

/// One stage record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct V2StageReport {
    /// Record index.
    pub index: usize,
    /// File offset of the record.
    pub offset: u64,
    /// Record length.
    pub bytes: usize,
    /// Synthesised name (`<op>_<index>`; NCSDK 2 stores none).
    pub name: String,
    /// Stage type name.
    pub op: &'static str,
    /// Stage type code.
    pub op_code: u8,
    /// optMask.
    pub implementation: u32,
    /// Scalar parameters, by name, in payload order.
    pub params: Vec<(&'static str, u32)>,
    /// Operands in payload order.
    pub operands: Vec<OperandReport>,
    /// Post-op name.
    pub post_op: &'static str,
    /// Post-op opX (f32), when the post-op has a payload.
    pub post_param: Option<f32>,
}

/// One referenced constant buffer of the buffer data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConstReport {
    /// Offset in the buffer data.
    pub offset: u32,
    /// Bytes up to the next referenced buffer (or the end of the data), padding and any
    /// unreferenced opParams array included.
    pub span: u32,
    /// Stages whose descriptors point here.
    pub stages: Vec<usize>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct V2Report {
    /// File described.
    pub file: String,
    /// NCSDK generation (2).
    pub ncsdk: u32,
    /// Blob header.
    pub header: BlobHeader,
    /// Stage-section header: stage count.
    pub stage_count: usize,
    /// Stage-section header: elements of the network output.
    pub output_size: u32,
    /// Regions in file order.
    pub sections: Vec<SectionReport>,
    /// Bytes of buffer data.
    pub buffer_data_bytes: usize,
    /// Lower bound of the work arena: largest end of a work tensor (§6.2).
    pub work_arena_bytes: u64,
    /// Stage records.
    pub stages: Vec<V2StageReport>,
    /// Referenced constant buffers.
    pub buffers: Vec<ConstReport>,
    /// Blob relocation table.
    pub blob_relocations: Vec<Reloc>,
    /// Work relocation table.
    pub work_relocations: Vec<Reloc>,
}

fn xyz(v: crate::ncs::stage::Xyz) -> [u32; 3] {
    [v.x, v.y, v.z]
}

impl V2Report {
    /// Builds the report of a parsed graph; `file` is echoed.
    pub fn from_graph(g: &GraphV2, file: &str) -> Self {
        let h = &g.header;
        let v = h.version;
        let hdr_end = (v.header_offset() + v.header_len()) as u64;
        let sections = vec![
            SectionReport {
                name: "prefix",
                offset: 0,
                size: v.header_offset() as u64,
            },
            SectionReport {
                name: "blob header",
                offset: v.header_offset() as u64,
                size: v.header_len() as u64,
            },
            SectionReport {
                name: "header pad",
                offset: hdr_end,
                size: h.stage_section_offset as u64 - hdr_end,
            },
            SectionReport {
                name: "stage section",
                offset: h.stage_section_offset as u64,
                size: g.stage_section_size as u64,
            },
            SectionReport {
                name: "buffer section",
                offset: h.buffer_section_offset as u64,
                size: (h.relocation_offset - h.buffer_section_offset) as u64,
            },
            SectionReport {
                name: "relocation section",
                offset: h.relocation_offset as u64,
                size: g.relocation_len(),
            },
        ];
        let mut at = h.stage_section_offset as u64 + 12;
        let mut stages = Vec::new();
        let mut arena = 0u64;
        let mut refs: std::collections::BTreeMap<u32, Vec<usize>> = Default::default();
        for (i, s) in g.stages.iter().enumerate() {
            let operands = s
                .operands
                .iter()
                .enumerate()
                .map(|(k, d)| {
                    let r = g.reloc_of(d);
                    let kind = match d.location {
                        0 => "none",
                        1 => "input",
                        2 => "output",
                        3 => "blob",
                        _ => "work",
                    };
                    if let Some(r) = r {
                        if d.location >= 4 {
                            arena =
                                arena.max(r.offset as u64 + StageRecord::extent(d.dims, d.strides));
                        } else {
                            let e = refs.entry(r.offset).or_default();
                            if !e.contains(&i) {
                                e.push(i);
                            }
                        }
                    }
                    OperandReport {
                        role: s.role(k),
                        dims: xyz(d.dims),
                        strides: xyz(d.strides),
                        location: d.location,
                        kind,
                        reloc_index: r.map(|_| d.offset),
                        offset: r.map(|r| r.offset).unwrap_or(d.offset),
                        order: d.order,
                    }
                })
                .collect();
            let names = super::record::layout(s.op).map(|l| l.0).unwrap_or(&[]);
            stages.push(V2StageReport {
                index: i,
                offset: at,
                bytes: s.encoded_len(),
                name: stage_name(i, s),
                op: s.op.toolkit_name(),
                op_code: s.op.code(),
                implementation: s.implementation,
                params: names
                    .iter()
                    .copied()
                    .zip(s.params.iter().copied())
                    .collect(),
                operands,
                post_op: s.post_op.toolkit_name(),
                post_param: s.post_payload.map(|p| f32::from_bits(p[0])),
            });
            at += s.encoded_len() as u64;
        }
        let offsets: Vec<u32> = refs.keys().copied().collect();
        let buffers = refs
            .into_iter()
            .enumerate()
            .map(|(k, (offset, stages))| ConstReport {
                offset,
                span: offsets.get(k + 1).copied().unwrap_or(g.data.len() as u32) - offset,
                stages,
            })
            .collect();
        Self {
            file: file.to_string(),
            ncsdk: 2,
            header: h.clone(),
            stage_count: g.stages.len(),
            output_size: g.output_size,
            sections,
            buffer_data_bytes: g.data.len(),
            work_arena_bytes: arena,
            stages,
            buffers,
            blob_relocations: g.blob_relocs.clone(),
            work_relocations: g.work_relocs.clone(),
        }
    }
}

/// Reads an NCSDK 2 graph (with full validation) and describes it.
pub fn inspect_v2(path: &Path) -> Result<V2Report, NcsError> {
    let g = GraphV2::read(path)?;
    Ok(V2Report::from_graph(&g, &path.display().to_string()))
}

fn relocs(f: &mut fmt::Formatter<'_>, name: &str, r: &[Reloc]) -> fmt::Result {
    writeln!(f, "{name} relocations ({}):", r.len())?;
    for (k, chunk) in r.chunks(6).enumerate() {
        let cells: Vec<String> = chunk
            .iter()
            .enumerate()
            .map(|(j, e)| format!("[{}] {}@{}", k * 6 + j, e.offset, e.location))
            .collect();
        writeln!(f, "  {}", cells.join("  "))?;
    }
    Ok(())
}

impl fmt::Display for V2Report {
    /// Header, section map, one block per stage (scalars, then one line per operand as
    /// `role dims strides kind[index]→offset order`), buffers, relocation tables.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = &self.header;
        writeln!(f, "file          {}", self.file)?;
        writeln!(
            f,
            "format        NCSDK 2 graph, blob {}, {} bytes",
            h.version, h.file_size
        )?;
        writeln!(f, "shaves        {}", h.num_shaves)?;
        if h.version == super::BlobVersion::V2_4 {
            writeln!(
                f,
                "2.4 words     patch {} / reserved(60) {}",
                h.patch, h.reserved_60
            )?;
        }
        writeln!(f, "input         {} elements (fp16 HWC)", h.size_of_input)?;
        writeln!(f, "output        {} elements", self.output_size)?;
        writeln!(f, "stages        {}", self.stage_count)?;
        writeln!(f, "work arena    ≥ {} bytes", self.work_arena_bytes)?;
        writeln!(f, "\nsections:")?;
        for s in &self.sections {
            writeln!(f, "  {:<20} @{:<9} {} bytes", s.name, s.offset, s.size)?;
        }
        writeln!(f, "\nstages:")?;
        for s in &self.stages {
            let params: Vec<String> = s.params.iter().map(|(n, v)| format!("{n}={v}")).collect();
            let post = match s.post_param {
                Some(x) => format!("{}({x})", s.post_op),
                None => s.post_op.to_string(),
            };
            writeln!(
                f,
                "  #{:<3} @{:<7} {:<24} impl 0x{:08x} post {:<10} {}",
                s.index,
                s.offset,
                s.op,
                s.implementation,
                post,
                params.join(" ")
            )?;
            for o in &s.operands {
                let at = match o.reloc_index {
                    Some(k) => format!("{}[{k}]→{}", o.kind, o.offset),
                    None => format!("{}@{}", o.kind, o.offset),
                };
                writeln!(
                    f,
                    "        {:<6} {:>5}x{:<5}x{:<5} strides {:?}  {at}  order {}",
                    o.role, o.dims[0], o.dims[1], o.dims[2], o.strides, o.order
                )?;
            }
        }
        writeln!(
            f,
            "\nbuffers ({} referenced, {} bytes of data):",
            self.buffers.len(),
            self.buffer_data_bytes
        )?;
        for b in &self.buffers {
            writeln!(
                f,
                "  @{:<9} {:>9} bytes  stages {:?}",
                b.offset, b.span, b.stages
            )?;
        }
        writeln!(f)?;
        relocs(f, "blob", &self.blob_relocations)?;
        relocs(f, "work", &self.work_relocations)
    }
}
