//! The NCSDK 2 file prefix and blob header (NCSDK2_GRAPH_FORMAT.md §3): a 34-byte ELF-like
//! prefix, then the blob header whose layout depends on the blob version — 40 bytes at 34
//! for 2.3 (NCSDK 2.04/2.05), two zero bytes and 48 bytes at 36 for 2.4 (NCSDK 2.08/2.10).

use serde::Serialize;

/// The blob magic the device firmware checks ("This is not a Fathom blob!", §9).
pub const BLOB_MAGIC: u32 = 0x2204;
/// Blob major version of every NCSDK 2 release.
pub const BLOB_MAJOR: u32 = 2;
/// The 34 prefix bytes every NCSDK 2 writer emits (§3.1): e_type 1, e_machine 2,
/// e_version 1 and e_ehsize 272 as little-endian u16s, all else zero.
pub const PREFIX: [u8; 34] = {
    let mut p = [0u8; 34];
    p[2] = 1;
    p[4] = 2;
    p[6] = 1;
    p[22] = 0x10;
    p[23] = 0x01;
    p
};

/// The blob version: the firmware accepts only its own (§0), so the target is chosen first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum BlobVersion {
    /// Blob 2.3: NCSDK 2.04 / 2.05 firmware.
    #[serde(rename = "2.3")]
    V2_3,
    /// Blob 2.4: NCSDK 2.08 / 2.10 firmware.
    #[serde(rename = "2.4")]
    V2_4,
}

impl BlobVersion {
    /// Parses "2.3" or "2.4" (the `--blob` option).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "2.3" | "23" => Some(Self::V2_3),
            "2.4" | "24" => Some(Self::V2_4),
            _ => None,
        }
    }

    /// The minor version number.
    pub fn minor(self) -> u32 {
        match self {
            Self::V2_3 => 3,
            Self::V2_4 => 4,
        }
    }

    /// Offset of the magic word (34 or 36).
    pub fn header_offset(self) -> usize {
        match self {
            Self::V2_3 => 34,
            Self::V2_4 => 36,
        }
    }

    /// Bytes of the blob header (40 or 48).
    pub fn header_len(self) -> usize {
        match self {
            Self::V2_3 => 40,
            Self::V2_4 => 48,
        }
    }

    /// Where the stage section starts: `qalign(74, 16)` = 80, or 128 (§2).
    pub fn stage_section_offset(self) -> u32 {
        match self {
            Self::V2_3 => 80,
            Self::V2_4 => 128,
        }
    }

    /// Alignment unit of the stage section's size (16 or 64, §3.3).
    pub fn stage_align(self) -> u64 {
        match self {
            Self::V2_3 => 16,
            Self::V2_4 => 64,
        }
    }

    /// Bytes of the buffer-section header (size + three 42 fillers in 2.3, none in 2.4).
    pub fn buffer_header_len(self) -> u32 {
        match self {
            Self::V2_3 => 16,
            Self::V2_4 => 0,
        }
    }
}

impl std::fmt::Display for BlobVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "2.{}", self.minor())
    }
}

/// `qalign(n, a) = n + a − (n mod a)`: the toolkit's section alignment, which adds a whole
/// unit when `n` is already aligned (§1; observed in two real 2.3 files).
pub fn qalign(n: u64, a: u64) -> u64 {
    n + a - n % a
}

/// The decoded blob header (both versions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlobHeader {
    /// Blob version (selects the layout).
    pub version: BlobVersion,
    /// Total file length.
    pub file_size: u32,
    /// `-s` value (2.3 offset 50; 2.4 offset 56, inferred §14.1).
    pub num_shaves: u32,
    /// 2.4 only, offset 52: 0 in the only real file (probably the patch version, §3.3).
    pub patch: u32,
    /// 2.4 only, offset 60: 4 in the only real file; meaning unknown (§14.1).
    pub reserved_60: u32,
    /// File offset of the stage section.
    pub stage_section_offset: u32,
    /// File offset of the buffer section.
    pub buffer_section_offset: u32,
    /// File offset of the relocation section.
    pub relocation_offset: u32,
    /// Elements of the network input tensor (W·H·C).
    pub size_of_input: u32,
    /// 0 for Myriad 2 (Myriad X hardware scheduling only).
    pub permutation_enabled: u32,
}

/// The value the single real 2.4 file holds at offset 60, copied by our 2.4 emitter.
pub const RESERVED_60_V2_4: u32 = 4;

/// Little-endian u32 at any (possibly unaligned) offset the caller has bounds-checked.
pub(crate) fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

impl BlobHeader {
    /// Appends prefix, header and the zero pad up to the stage section.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&PREFIX);
        let words: Vec<u32> = match self.version {
            BlobVersion::V2_3 => vec![
                BLOB_MAGIC,
                self.file_size,
                BLOB_MAJOR,
                3,
                self.num_shaves,
                self.stage_section_offset,
                self.buffer_section_offset,
                self.relocation_offset,
                self.size_of_input,
                self.permutation_enabled,
            ],
            BlobVersion::V2_4 => {
                out.extend_from_slice(&[0, 0]);
                vec![
                    BLOB_MAGIC,
                    self.file_size,
                    BLOB_MAJOR,
                    4,
                    self.patch,
                    self.num_shaves,
                    self.reserved_60,
                    self.stage_section_offset,
                    self.buffer_section_offset,
                    self.relocation_offset,
                    self.size_of_input,
                    self.permutation_enabled,
                ]
            }
        };
        for w in words {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out.resize(self.version.stage_section_offset() as usize, 0);
    }

    /// File offsets of (file_size, num_shaves, stage_section_offset) in this version, for
    /// error messages.
    pub fn field_offsets(version: BlobVersion) -> HeaderOffsets {
        let h = version.header_offset() as u64;
        match version {
            BlobVersion::V2_3 => HeaderOffsets {
                file_size: h + 4,
                major: h + 8,
                num_shaves: h + 16,
                stage_section: h + 20,
                buffer_section: h + 24,
                relocation: h + 28,
                size_of_input: h + 32,
                permutation: h + 36,
            },
            BlobVersion::V2_4 => HeaderOffsets {
                file_size: h + 4,
                major: h + 8,
                num_shaves: h + 20,
                stage_section: h + 28,
                buffer_section: h + 32,
                relocation: h + 36,
                size_of_input: h + 40,
                permutation: h + 44,
            },
        }
    }

    /// Decodes the header of a file whose version was detected and whose length covers the
    /// header (checked by the caller).
    pub(crate) fn decode(b: &[u8], version: BlobVersion) -> Self {
        let o = Self::field_offsets(version);
        let h = version.header_offset();
        let (patch, reserved_60) = match version {
            BlobVersion::V2_3 => (0, 0),
            BlobVersion::V2_4 => (u32_at(b, h + 16), u32_at(b, h + 24)),
        };
        let w = |off: u64| u32_at(b, off as usize);
        Self {
            version,
            file_size: w(o.file_size),
            num_shaves: w(o.num_shaves),
            patch,
            reserved_60,
            stage_section_offset: w(o.stage_section),
            buffer_section_offset: w(o.buffer_section),
            relocation_offset: w(o.relocation),
            size_of_input: w(o.size_of_input),
            permutation_enabled: w(o.permutation),
        }
    }
}

/// File offsets of the header fields of one blob version.
#[derive(Debug, Clone, Copy)]
pub struct HeaderOffsets {
    /// `file_size`.
    pub file_size: u64,
    /// `blob_major_version` (minor follows).
    pub major: u64,
    /// `num_shaves`.
    pub num_shaves: u64,
    /// `stage_section_offset`.
    pub stage_section: u64,
    /// `buffer_section_offset`.
    pub buffer_section: u64,
    /// `relocation_offset`.
    pub relocation: u64,
    /// `size_of_input`.
    pub size_of_input: u64,
    /// `permutation_enabled`.
    pub permutation: u64,
}
