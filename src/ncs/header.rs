//! The 264-byte graph header (NCS_GRAPH_FORMAT.md §3): 32 zero bytes, file size, version,
//! network name, report directory, stage count, data-section start and the 16-byte
//! "MyriadParam" block (shave range, LEON memory, DMA agent).

use super::stage::{NAME_LEN, STAGE_RECORD_LEN};
use serde::Serialize;

/// Header size in bytes (host library `HEADER_LENGTH`).
pub const HEADER_LEN: usize = 264;
/// The only graph format version NCSDK v1 writes and accepts (offset 36).
pub const GRAPH_VERSION: u32 = 2;
/// Offset of the u32 file size.
pub const OFFSET_FILE_SIZE: usize = 32;
/// Offset of the u32 version.
pub const OFFSET_VERSION: usize = 36;
/// Offset of the 100-byte network name.
pub const OFFSET_NAME: usize = 40;
/// Offset of the 100-byte report directory.
pub const OFFSET_REPORT_DIR: usize = 140;
/// Offset of the u32 stage count.
pub const OFFSET_STAGE_COUNT: usize = 240;
/// Offset of the u32 data-section start.
pub const OFFSET_BUFFER_START: usize = 244;
/// Offset of the u16 first shave (start of MyriadParam).
pub const OFFSET_FIRST_SHAVE: usize = 248;
/// Largest file the NCAPI v1 host library sends to the stick (512 MiB).
pub const MAX_FILE_LEN: u64 = 512 * 1024 * 1024;
/// Number of SHAVE vector processors on a Myriad 2 (`-s` accepts 1..=12).
pub const MAX_SHAVES: u16 = 12;

/// The decoded header. The 32 leading bytes (the toolkit's "VCS fix") are always zero and
/// are not kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GraphHeader {
    /// Total file length in bytes.
    pub file_size: u32,
    /// Format version (2).
    pub version: u32,
    /// Network name (prototxt `name:`; TensorFlow graphs say "TensorFlow Network").
    pub name: String,
    /// Report directory (always empty).
    pub report_dir: String,
    /// Number of 227-byte stage records.
    pub stage_count: u32,
    /// File offset of the data section, `align8(264 + 227·N)`.
    pub buffer_start: u32,
    /// First SHAVE used (0).
    pub first_shave: u16,
    /// Last SHAVE used: `-s` value − 1.
    pub last_shave: u16,
    /// `leonMemLocation` (0).
    pub leon_mem_location: u32,
    /// `leonMemSize` (0).
    pub leon_mem_size: u32,
    /// `dmaAgent` (0).
    pub dma_agent: u32,
}

impl GraphHeader {
    /// Number of SHAVEs the graph was compiled for (`-s`).
    pub fn shaves(&self) -> u32 {
        self.last_shave as u32 + 1 - self.first_shave.min(self.last_shave) as u32
    }
}

/// `align8(264 + 227·N)`: where the data section starts for N stages.
pub fn buffer_start_for(stage_count: u64) -> u64 {
    (HEADER_LEN as u64 + STAGE_RECORD_LEN as u64 * stage_count).div_ceil(8) * 8
}

/// Little-endian field readers over a slice whose length the caller has checked.
pub(crate) fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

/// Reads a little-endian u32 at `off`.
pub(crate) fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// Decodes a fixed 100-byte NUL-padded name; `None` if it is not UTF-8.
pub(crate) fn name_at(b: &[u8], off: usize) -> Option<String> {
    let raw = &b[off..off + NAME_LEN];
    let end = raw.iter().position(|&c| c == 0).unwrap_or(NAME_LEN);
    String::from_utf8(raw[..end].to_vec()).ok()
}

/// Appends a name as exactly 100 bytes: truncated to 100 (no NUL then, as the toolkit
/// does) or NUL-padded.
pub(crate) fn put_name(out: &mut Vec<u8>, name: &str) {
    let bytes = name.as_bytes();
    let n = bytes.len().min(NAME_LEN);
    out.extend_from_slice(&bytes[..n]);
    out.resize(out.len() + NAME_LEN - n, 0);
}

impl GraphHeader {
    /// Encodes the 264 header bytes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[0u8; 32]);
        out.extend_from_slice(&self.file_size.to_le_bytes());
        out.extend_from_slice(&self.version.to_le_bytes());
        put_name(out, &self.name);
        put_name(out, &self.report_dir);
        out.extend_from_slice(&self.stage_count.to_le_bytes());
        out.extend_from_slice(&self.buffer_start.to_le_bytes());
        out.extend_from_slice(&self.first_shave.to_le_bytes());
        out.extend_from_slice(&self.last_shave.to_le_bytes());
        out.extend_from_slice(&self.leon_mem_location.to_le_bytes());
        out.extend_from_slice(&self.leon_mem_size.to_le_bytes());
        out.extend_from_slice(&self.dma_agent.to_le_bytes());
    }
}
