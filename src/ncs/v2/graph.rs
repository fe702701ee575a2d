//! [`GraphV2`]: a whole NCSDK 2 graph in memory — header, stage records, buffer data and
//! both relocation tables — with the layout rules that place the sections (§2, §5, §6)
//! and the writer that turns it back into bytes.

use super::header::{qalign, BlobHeader, BlobVersion, RESERVED_60_V2_4};
use super::record::StageV2;
use crate::ncs::error::NcsError;
use crate::util::atomic::atomic_write;
use serde::Serialize;
use std::path::Path;

/// One relocation-table entry (§6.1): a byte offset in the buffer data (blob table,
/// location 3) or in the work arena (work table, location = work buffer id ≥ 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Reloc {
    /// Byte offset inside the target area.
    pub offset: u32,
    /// MemoryIndex of the target area.
    pub location: u32,
}

/// A decoded NCSDK 2 graph. `data` is the buffer data (after the 2.3 buffer header), so
/// a blob relocation offset indexes it directly.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphV2 {
    /// Blob header (version, shaves, section offsets, input size).
    pub header: BlobHeader,
    /// Stage-section header word 2: elements of the network output.
    pub output_size: u32,
    /// Stage-section header word 1: bytes from the section start to the buffer section.
    pub stage_section_size: u32,
    /// Records in execution order.
    pub stages: Vec<StageV2>,
    /// Constant buffers, each padded to 64 bytes.
    pub data: Vec<u8>,
    /// Blob relocation table (one entry per location-3 descriptor, file order).
    pub blob_relocs: Vec<Reloc>,
    /// Work relocation table (one entry per location-≥4 descriptor, file order).
    pub work_relocs: Vec<Reloc>,
}

/// Filler word of the 2.3 buffer-section header (§5.1).
pub const BUFFER_FILLER: u32 = 42;

impl GraphV2 {
    /// Bytes of the stage records (without the 12-byte section header and padding).
    pub fn records_len(&self) -> u64 {
        self.stages.iter().map(|s| s.encoded_len() as u64).sum()
    }

    /// Recomputes every size and offset from the content, as the toolkit fills them in
    /// after writing (§10 steps 8–9): stage section `qalign(12 + Σ, 16)` (2.3) or
    /// `qalign(12 + Σ, 64)` (2.4), buffer section, relocation section, file size.
    pub fn seal(&mut self) {
        let v = self.header.version;
        let stage_size = qalign(12 + self.records_len(), v.stage_align());
        self.stage_section_size = stage_size as u32;
        self.header.stage_section_offset = v.stage_section_offset();
        self.header.buffer_section_offset = v.stage_section_offset() + stage_size as u32;
        self.header.relocation_offset =
            self.header.buffer_section_offset + v.buffer_header_len() + self.data.len() as u32;
        self.header.file_size = self.header.relocation_offset + self.relocation_len() as u32;
    }

    /// Bytes of the relocation section: 20 + 8 per entry.
    pub fn relocation_len(&self) -> u64 {
        20 + 8 * (self.blob_relocs.len() + self.work_relocs.len()) as u64
    }

    /// The same graph in another blob version (§3.3): records, data and tables are shared;
    /// only the header, the stage-section padding and the absolute offsets change. 2.4
    /// gets the words the real 2.4 file holds (patch 0, the shaves, 4).
    pub fn with_version(&self, version: BlobVersion) -> GraphV2 {
        let mut g = self.clone();
        g.header.version = version;
        let (patch, reserved) = match version {
            BlobVersion::V2_3 => (0, 0),
            BlobVersion::V2_4 => (0, RESERVED_60_V2_4),
        };
        g.header.patch = patch;
        g.header.reserved_60 = reserved;
        g.seal();
        g
    }

    /// The file bytes, laid out from the stored header offsets (call [`GraphV2::seal`]
    /// first for a consistent file).
    pub fn to_bytes(&self) -> Vec<u8> {
        let h = &self.header;
        let mut out = Vec::with_capacity(h.file_size as usize);
        h.encode(&mut out);
        out.resize(h.stage_section_offset as usize, 0);
        let section = out.len();
        for w in [
            self.stages.len() as u32,
            self.stage_section_size,
            self.output_size,
        ] {
            out.extend_from_slice(&w.to_le_bytes());
        }
        let n = self.stages.len();
        for (i, s) in self.stages.iter().enumerate() {
            let next = if i + 1 == n {
                0
            } else {
                (out.len() - section + s.encoded_len()) as u32
            };
            s.encode(next, &mut out);
        }
        out.resize(h.buffer_section_offset as usize, 0);
        if h.version == BlobVersion::V2_3 {
            let size = 16 + self.data.len() as u32;
            for w in [size, BUFFER_FILLER, BUFFER_FILLER, BUFFER_FILLER] {
                out.extend_from_slice(&w.to_le_bytes());
            }
        }
        out.extend_from_slice(&self.data);
        out.resize(h.relocation_offset as usize, 0);
        let at = h.relocation_offset;
        let (nb, nw) = (self.blob_relocs.len() as u32, self.work_relocs.len() as u32);
        for w in [
            self.relocation_len() as u32,
            at + 20,
            8 * nb,
            at + 20 + 8 * nb,
            8 * nw,
        ] {
            out.extend_from_slice(&w.to_le_bytes());
        }
        for r in self.blob_relocs.iter().chain(&self.work_relocs) {
            out.extend_from_slice(&r.offset.to_le_bytes());
            out.extend_from_slice(&r.location.to_le_bytes());
        }
        out
    }

    /// Writes the file atomically: an error never leaves a half-written graph.
    pub fn write(&self, path: &Path) -> Result<(), NcsError> {
        Ok(atomic_write(path, &self.to_bytes())?)
    }

    /// The relocation entry a descriptor resolves to: blob entries for location 3, work
    /// entries for ≥ 4; `None` for locations 0–2 or a bad index.
    pub fn reloc_of(&self, d: &super::record::Descriptor) -> Option<Reloc> {
        match d.location {
            3 => self.blob_relocs.get(d.offset as usize).copied(),
            l if l >= 4 => self.work_relocs.get(d.offset as usize).copied(),
            _ => None,
        }
    }
}
