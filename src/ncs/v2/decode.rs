//! Reading NCSDK 2 graphs: bytes → [`GraphV2`], checking every claim of the file against its
//! real length before using it (NCSDK2_GRAPH_FORMAT.md §9, "Recommended reader
//! validation"): prefix, magic, version, section order, the `next_stage` chain, record
//! lengths by type, buffer-section header, relocation tables inside their section, relocation
//! entries inside the area they point into, and descriptor indices inside the tables.

use super::error::V2FormatError;
use super::graph::{GraphV2, Reloc, BUFFER_FILLER};
use super::header::{u32_at, BlobHeader, BlobVersion, BLOB_MAGIC, BLOB_MAJOR, PREFIX};
use super::record::{known_post, layout, post_has_payload, Descriptor, StageV2, DESCRIPTOR_LEN};
use crate::ncs::stage::{StageOp, StageRecord};

/// Which container a file holds, from its first bytes (§0, §3): NCSDK 1 (u32 2 at offset
/// 36 after 32 zero bytes), NCSDK 2 blob 2.3 (magic at 34) or 2.4 (magic at 36).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// NCSDK 1.x graph (version 2 header).
    V1,
    /// NCSDK 2 blob with the magic at the given version's offset.
    V2(BlobVersion),
    /// Neither.
    Unknown,
}

/// Detects the container without validating it.
pub fn detect(b: &[u8]) -> Container {
    let at = |o: usize| (b.len() >= o + 4).then(|| u32_at(b, o));
    if at(34) == Some(BLOB_MAGIC) {
        return Container::V2(BlobVersion::V2_3);
    }
    if at(36) == Some(BLOB_MAGIC) {
        return Container::V2(BlobVersion::V2_4);
    }
    if at(36) == Some(2) && b[..32].iter().all(|&x| x == 0) {
        return Container::V1;
    }
    Container::Unknown
}

/// Bytes a constant operand needs in the buffer data (§5.2): taps by their descriptor's
/// extent, bias-slot contents by the op.
fn blob_need(s: &StageV2, role: &str, d: &Descriptor) -> u64 {
    let out_c = s.operand("output").map(|o| o.dims.z as u64).unwrap_or(1);
    let in_c = s.operand("input").map(|o| o.dims.z as u64).unwrap_or(1);
    match role {
        "bias" => match s.op {
            StageOp::Lrn | StageOp::InnerLrn => 8,
            StageOp::PRelu => 2 * in_c,
            _ => 2 * out_c,
        },
        // depthwise taps are (KH, KW, K) although described as (KH·KW, C, K) (§4.7, §7)
        _ if s.op == StageOp::DepthwiseConvolution => {
            (2 * d.dims.x as u64).saturating_mul(d.dims.z as u64)
        }
        _ => StageRecord::extent(d.dims, d.strides).max(2),
    }
}

impl GraphV2 {
    /// Parses and validates NCSDK 2 graph bytes.
    pub fn parse(b: &[u8]) -> Result<GraphV2, V2FormatError> {
        let len = b.len() as u64;
        let min23 = 34 + 40;
        if len < min23 {
            return Err(V2FormatError::TooShort { len, min: min23 });
        }
        let version = match detect(b) {
            Container::V2(v) => v,
            _ => {
                return Err(V2FormatError::BadMagic {
                    found: u32_at(b, 34),
                })
            }
        };
        let min = (version.header_offset() + version.header_len()) as u64;
        if len < min {
            return Err(V2FormatError::TooShort { len, min });
        }
        let offs = BlobHeader::field_offsets(version);
        let (major, minor) = (
            u32_at(b, offs.major as usize),
            u32_at(b, offs.major as usize + 4),
        );
        if major != BLOB_MAJOR || minor != version.minor() {
            return Err(V2FormatError::UnknownVersion {
                major,
                minor,
                offset: offs.major,
            });
        }
        let mut expected_prefix = PREFIX.to_vec();
        if version == BlobVersion::V2_4 {
            expected_prefix.extend_from_slice(&[0, 0]);
        }
        if let Some(i) = (0..expected_prefix.len()).find(|&i| b[i] != expected_prefix[i]) {
            return Err(V2FormatError::BadPrefix {
                offset: i as u64,
                found: b[i],
                expected: expected_prefix[i],
            });
        }
        let header = BlobHeader::decode(b, version);
        if header.file_size as u64 != len {
            return Err(V2FormatError::SizeMismatch {
                offset: offs.file_size,
                header: header.file_size as u64,
                actual: len,
            });
        }
        // sections in order, each inside the file
        let sections = [
            (
                "stage_section",
                header.stage_section_offset,
                offs.stage_section,
                min,
            ),
            (
                "buffer_section",
                header.buffer_section_offset,
                offs.buffer_section,
                header.stage_section_offset as u64 + 12,
            ),
            (
                "relocation",
                header.relocation_offset,
                offs.relocation,
                header.buffer_section_offset as u64 + version.buffer_header_len() as u64,
            ),
        ];
        for (section, value, offset, lo) in sections {
            let hi = len.saturating_sub(if section == "relocation" { 20 } else { 0 });
            if (value as u64) < lo || value as u64 > hi {
                return Err(V2FormatError::SectionOutOfFile {
                    section,
                    value: value as u64,
                    offset,
                    lo,
                    hi,
                    len,
                });
            }
        }
        let (stages, output_size, stage_section_size) = decode_stages(b, &header)?;
        let data = decode_buffer_section(b, &header)?;
        let (blob_relocs, work_relocs) = decode_relocations(b, &header, data.len() as u64)?;
        let g = GraphV2 {
            header,
            output_size,
            stage_section_size,
            stages,
            data,
            blob_relocs,
            work_relocs,
        };
        g.check_descriptors()?;
        Ok(g)
    }

    /// Reads a file: the length is compared with the NCAPI limit before reading.
    pub fn read(path: &std::path::Path) -> Result<GraphV2, crate::ncs::NcsError> {
        let bytes = crate::ncs::decoder::read_limited(path)?;
        GraphV2::parse(&bytes).map_err(|e| crate::ncs::NcsError::Format {
            path: path.to_path_buf(),
            source: e.into(),
        })
    }

    /// Descriptor checks (§9): blob indices inside the blob table, work indices inside the
    /// work table with matching locations, constants inside the buffer data, and a last
    /// record that writes the network output.
    fn check_descriptors(&self) -> Result<(), V2FormatError> {
        let mut at = self.header.stage_section_offset as u64 + 12;
        for (i, s) in self.stages.iter().enumerate() {
            let first = at + 12 + 4 * s.params.len() as u64;
            for (k, d) in s.operands.iter().enumerate() {
                let bad = |why: String| V2FormatError::BadDescriptor {
                    index: i,
                    op: s.op.toolkit_name(),
                    slot: s.role(k),
                    offset: first + (k * DESCRIPTOR_LEN) as u64,
                    why,
                };
                match d.location {
                    3 => {
                        let Some(r) = self.blob_relocs.get(d.offset as usize) else {
                            return Err(bad(format!(
                                "blob index {} but the blob table has {} entries",
                                d.offset,
                                self.blob_relocs.len()
                            )));
                        };
                        let need = blob_need(s, s.role(k), d);
                        if r.offset as u64 + need > self.data.len() as u64 {
                            return Err(bad(format!(
                                "needs {need} bytes at buffer-data offset {} (blob entry {}), the buffer data has {}",
                                r.offset, d.offset, self.data.len()
                            )));
                        }
                    }
                    l if l >= 4 => match self.work_relocs.get(d.offset as usize) {
                        None => {
                            return Err(bad(format!(
                                "work index {} but the work table has {} entries",
                                d.offset,
                                self.work_relocs.len()
                            )))
                        }
                        Some(r) if r.location != l => {
                            return Err(bad(format!(
                                "location {l} but work entry {} is for location {}",
                                d.offset, r.location
                            )))
                        }
                        _ => {}
                    },
                    _ => {}
                }
                if s.role(k) == "output" && matches!(d.location, 0 | 1 | 3) {
                    return Err(bad(format!(
                        "a stage writes the network output or a work buffer, not location {}",
                        d.location
                    )));
                }
            }
            at += s.encoded_len() as u64;
        }
        if let Some(last) = self.stages.last() {
            if last.op != StageOp::None && last.operand("output").map(|o| o.location) != Some(2) {
                return Err(V2FormatError::BadRecord {
                    index: self.stages.len() - 1,
                    offset: at - last.encoded_len() as u64,
                    why: "the last stage does not write the network output (location 2)".into(),
                });
            }
        }
        Ok(())
    }
}

/// Walks the `next_stage` chain (§4.1–§4.2).
fn decode_stages(b: &[u8], h: &BlobHeader) -> Result<(Vec<StageV2>, u32, u32), V2FormatError> {
    let start = h.stage_section_offset as usize;
    let end = h.buffer_section_offset as usize;
    let count = u32_at(b, start);
    let size = u32_at(b, start + 4);
    let output_size = u32_at(b, start + 8);
    if size as usize != end - start {
        return Err(V2FormatError::BadField {
            field: "size_of_stage_section",
            offset: start as u64 + 4,
            found: size as u64,
            expected: (end - start) as u64,
        });
    }
    // every record is at least 20 bytes: a count beyond that cannot be real
    if count == 0 || count as usize > (end - start - 12) / 20 {
        return Err(V2FormatError::BadField {
            field: "stage_count",
            offset: start as u64,
            found: count as u64,
            expected: ((end - start - 12) / 20).max(1) as u64,
        });
    }
    let mut stages = Vec::with_capacity(count as usize);
    let mut at = start + 12;
    for index in 0..count as usize {
        let bad = |why: String| V2FormatError::BadRecord {
            index,
            offset: at as u64,
            why,
        };
        if at + 20 > end {
            return Err(bad(format!("starts past the stage section end {end}")));
        }
        let next = u32_at(b, at);
        let code = u32_at(b, at + 4);
        let op = u8::try_from(code)
            .ok()
            .and_then(StageOp::from_code)
            .filter(|op| layout(*op).is_some())
            .ok_or(V2FormatError::UnknownStageType {
                index,
                offset: at as u64,
                code,
            })?;
        let (names, roles) = layout(op).unwrap_or((&[], &[]));
        let fixed = 12 + 4 * names.len() + DESCRIPTOR_LEN * roles.len();
        if at + fixed + 8 > end {
            return Err(bad(format!(
                "a {} record needs {} bytes, past the stage section end {end}",
                op.toolkit_name(),
                fixed + 8
            )));
        }
        let words = |o: usize, n: usize| (0..n).map(|k| u32_at(b, o + 4 * k)).collect::<Vec<_>>();
        let params = words(at + 12, names.len());
        let operands = (0..roles.len())
            .map(|k| Descriptor::decode(&words(at + 12 + 4 * names.len() + DESCRIPTOR_LEN * k, 10)))
            .collect();
        let op_at = |o: usize, field: &'static str| {
            let c = u32_at(b, o);
            u8::try_from(c)
                .ok()
                .and_then(StageOp::from_code)
                .filter(|p| field == "preop_type" || known_post(*p))
                .ok_or(V2FormatError::UnknownOp {
                    index,
                    offset: o as u64,
                    field,
                    code: c,
                })
        };
        let pre_op = op_at(at + fixed, "preop_type")?;
        let post_op = op_at(at + fixed + 4, "postop_type")?;
        let mut len = fixed + 8;
        let post_payload = if post_has_payload(post_op) {
            if at + len + 12 > end {
                return Err(bad("the post-op payload runs past the stage section".into()));
            }
            let w = words(at + len, 3);
            len += 12;
            Some([w[0], w[1], w[2]])
        } else {
            None
        };
        let last = index + 1 == count as usize;
        let want_next = if last { 0 } else { (at + len - start) as u32 };
        if next != want_next {
            return Err(bad(format!(
                "next_stage is {next}, expected {want_next} ({})",
                if last {
                    "0 in the last record".to_string()
                } else {
                    format!("this {}-byte {} record ends there", len, op.toolkit_name())
                }
            )));
        }
        stages.push(StageV2 {
            op,
            implementation: u32_at(b, at + 8),
            params,
            operands,
            pre_op,
            post_op,
            post_payload,
        });
        at += len;
    }
    Ok((stages, output_size, size))
}

/// The buffer data; in 2.3 after a checked 16-byte header (size, 42, 42, 42).
fn decode_buffer_section(b: &[u8], h: &BlobHeader) -> Result<Vec<u8>, V2FormatError> {
    let start = h.buffer_section_offset as usize;
    let end = h.relocation_offset as usize;
    if h.version == BlobVersion::V2_3 {
        let size = u32_at(b, start);
        if size as usize != end - start {
            return Err(V2FormatError::BadField {
                field: "size_of_buffer_section",
                offset: start as u64,
                found: size as u64,
                expected: (end - start) as u64,
            });
        }
        for k in 1..4 {
            let w = u32_at(b, start + 4 * k);
            if w != BUFFER_FILLER {
                return Err(V2FormatError::BadField {
                    field: "buffer-section filler word",
                    offset: (start + 4 * k) as u64,
                    found: w as u64,
                    expected: BUFFER_FILLER as u64,
                });
            }
        }
    }
    Ok(b[start + h.version.buffer_header_len() as usize..end].to_vec())
}

/// The relocation section (§6.1): header, blob table, work table — each inside the section
/// — and every entry inside its target (blob offsets inside the buffer data, work entries
/// with a work location).
fn decode_relocations(
    b: &[u8],
    h: &BlobHeader,
    data_len: u64,
) -> Result<(Vec<Reloc>, Vec<Reloc>), V2FormatError> {
    let start = h.relocation_offset as u64;
    let len = b.len() as u64;
    let w = |o: u64| u32_at(b, o as usize) as u64;
    let size = w(start);
    if size != len - start {
        return Err(V2FormatError::BadRelocationSection {
            field: "relocation_buffer_size",
            offset: start,
            found: size,
            why: format!("the section runs from {start} to the end of the file at {len}"),
        });
    }
    let mut tables = Vec::new();
    for (k, name) in [(4u64, "blob"), (12, "work")] {
        let (off, sz) = (w(start + k), w(start + k + 4));
        let field = if name == "blob" {
            "blob_buffer_reloc_offset"
        } else {
            "work_buffer_reloc_offset"
        };
        if off < start + 20 || off + sz > len || !sz.is_multiple_of(8) {
            return Err(V2FormatError::BadRelocationSection {
                field,
                offset: start + k,
                found: off,
                why: format!(
                    "a {sz}-byte table there is not inside the relocation section {}..{len} (or its size is not a multiple of 8)",
                    start + 20
                ),
            });
        }
        let entries: Vec<Reloc> = (0..sz / 8)
            .map(|i| Reloc {
                offset: w(off + 8 * i) as u32,
                location: w(off + 8 * i + 4) as u32,
            })
            .collect();
        for (i, r) in entries.iter().enumerate() {
            let at = off + 8 * i as u64;
            let why = match name {
                "blob" if r.location != 3 => Some(format!(
                    "location {} in the blob table (must be 3)",
                    r.location
                )),
                "blob" if r.offset as u64 >= data_len => Some(format!(
                    "buffer-data offset {} is past the end of the {data_len}-byte buffer data",
                    r.offset
                )),
                "work" if r.location < 4 => Some(format!(
                    "location {} in the work table (work buffers are ≥ 4)",
                    r.location
                )),
                _ => None,
            };
            if let Some(why) = why {
                return Err(V2FormatError::BadRelocation {
                    table: name,
                    entry: i,
                    offset: at,
                    why,
                });
            }
        }
        tables.push(entries);
    }
    let work = tables.pop().unwrap_or_default();
    let blob = tables.pop().unwrap_or_default();
    Ok((blob, work))
}
