//! Reading graph files: bytes → [`Graph`], validating every claim against the real length
//! before anything is allocated from it (NCS_GRAPH_FORMAT.md §9, "Reader validation").

use super::error::{FormatError, NcsError};
use super::graph::Graph;
use super::header::{
    buffer_start_for, name_at, u16_at, u32_at, GraphHeader, GRAPH_VERSION, HEADER_LEN,
    MAX_FILE_LEN, OFFSET_BUFFER_START, OFFSET_FILE_SIZE, OFFSET_NAME, OFFSET_REPORT_DIR,
    OFFSET_STAGE_COUNT, OFFSET_VERSION,
};
use super::stage::{BufferRef, Location, PadStyle, StageOp, StageRecord, Xyz, STAGE_RECORD_LEN};
use std::io::Read;
use std::path::Path;

/// Host-side limit on the number of fp16 values read back (`noutputs` ≤ 64 Mi, §3).
const MAX_HOST_OUTPUTS: u64 = 64 * 1024 * 1024;

/// Byte offsets of the buffer-reference fields inside a stage record (§4.1).
const SLOT_OFFSETS: [(&str, usize); 5] = [
    ("data", 187),
    ("taps", 193),
    ("bias", 199),
    ("opParams", 205),
    ("output", 211),
];

impl Graph {
    /// Reads and validates a graph file. The length is checked against the 512 MiB NCAPI
    /// limit before the file is read; every error names the file.
    pub fn read(path: &Path) -> Result<Graph, NcsError> {
        let bytes = read_limited(path)?;
        Graph::parse(&bytes).map_err(|source| NcsError::Format {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Parses and validates graph bytes: minimum length, version 2, header file size =
    /// length, stage table inside the file, `buffer_start` rule, known op codes, every
    /// data-section reference inside the section, sensible locations, and a last stage that
    /// writes the network output.
    pub fn parse(bytes: &[u8]) -> Result<Graph, FormatError> {
        let len = bytes.len() as u64;
        let min = (HEADER_LEN + STAGE_RECORD_LEN) as u64;
        if len > MAX_FILE_LEN {
            return Err(FormatError::TooLarge { len });
        }
        if len < min {
            return Err(FormatError::TooShort { len, min });
        }
        let version = u32_at(bytes, OFFSET_VERSION);
        if version != GRAPH_VERSION {
            return Err(FormatError::BadVersion {
                found: version,
                hint: ncsdk2_hint(bytes),
            });
        }
        let file_size = u32_at(bytes, OFFSET_FILE_SIZE);
        if file_size as u64 != len {
            return Err(FormatError::SizeMismatch {
                header: file_size as u64,
                actual: len,
            });
        }
        let stage_count = u32_at(bytes, OFFSET_STAGE_COUNT);
        if stage_count == 0 {
            return Err(FormatError::NoStages);
        }
        let table_end = HEADER_LEN as u64 + STAGE_RECORD_LEN as u64 * stage_count as u64;
        if table_end > len {
            return Err(FormatError::StagesBeyondFile {
                count: stage_count as u64,
                needed: table_end,
                len,
            });
        }
        let buffer_start = u32_at(bytes, OFFSET_BUFFER_START);
        let expected = buffer_start_for(stage_count as u64);
        if buffer_start as u64 != expected || expected > len {
            return Err(FormatError::BadBufferStart {
                found: buffer_start as u64,
                count: stage_count as u64,
                expected,
            });
        }
        let header = GraphHeader {
            file_size,
            version,
            name: name_at(bytes, OFFSET_NAME).ok_or_else(|| FormatError::BadName {
                what: "network name".into(),
                offset: OFFSET_NAME as u64,
            })?,
            report_dir: name_at(bytes, OFFSET_REPORT_DIR).ok_or_else(|| FormatError::BadName {
                what: "report directory".into(),
                offset: OFFSET_REPORT_DIR as u64,
            })?,
            stage_count,
            buffer_start,
            first_shave: u16_at(bytes, 248),
            last_shave: u16_at(bytes, 250),
            leon_mem_location: u32_at(bytes, 252),
            leon_mem_size: u32_at(bytes, 256),
            dma_agent: u32_at(bytes, 260),
        };
        let mut stages = Vec::with_capacity(stage_count as usize);
        for i in 0..stage_count as usize {
            stages.push(decode_stage(bytes, i)?);
        }
        let data = bytes[buffer_start as usize..].to_vec();
        for (i, s) in stages.iter().enumerate() {
            check_stage_buffers(i, s, data.len() as u64)?;
        }
        let (last_index, last) = (stages.len() - 1, &stages[stages.len() - 1]);
        if last.output.loc() != Location::Output {
            return Err(FormatError::LastNotOutput {
                index: last_index,
                name: last.name.clone(),
                output: last.output.to_string(),
            });
        }
        if last.host_output_len() > MAX_HOST_OUTPUTS {
            return Err(FormatError::OutputTooLarge {
                name: last.name.clone(),
                count: last.host_output_len(),
            });
        }
        Ok(Graph {
            header,
            stages,
            data,
        })
    }
}

/// Reads a whole graph file (either NCSDK generation) after checking its length against
/// the NCAPI's 512 MiB limit, so that a huge file is refused before it is read.
pub(crate) fn read_limited(path: &Path) -> Result<Vec<u8>, NcsError> {
    let io = |source| NcsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    if len > MAX_FILE_LEN {
        return Err(NcsError::Format {
            path: path.to_path_buf(),
            source: FormatError::TooLarge { len },
        });
    }
    let mut bytes = Vec::with_capacity(len as usize);
    f.read_to_end(&mut bytes).map_err(io)?;
    Ok(bytes)
}

/// NCSDK 2 files start with an ELF-like prefix and the blob magic 0x2204 at byte 34 or 36;
/// saying so turns a bare "bad version" into an actionable message.
fn ncsdk2_hint(bytes: &[u8]) -> &'static str {
    let magic_at = |o: usize| bytes.len() >= o + 4 && u32_at(bytes, o) == 0x2204;
    if magic_at(34) || magic_at(36) {
        "; this is an NCSDK 2 graph (blob magic 0x2204), which NCSDK v1 cannot load"
    } else {
        ""
    }
}

/// Decodes stage record `i`; the caller has checked that it lies inside `bytes`.
fn decode_stage(bytes: &[u8], i: usize) -> Result<StageRecord, FormatError> {
    let base = HEADER_LEN + STAGE_RECORD_LEN * i;
    let r = &bytes[base..base + STAGE_RECORD_LEN];
    let name = name_at(r, 0).ok_or_else(|| FormatError::BadName {
        what: format!("stage {i} name"),
        offset: base as u64,
    })?;
    let unknown = |field: &'static str, code: u32, off: usize| FormatError::UnknownCode {
        index: i,
        name: name.clone(),
        field,
        code,
        offset: (base + off) as u64,
    };
    let op = StageOp::from_code(r[100]).ok_or_else(|| unknown("op", r[100] as u32, 100))?;
    let pad_style =
        PadStyle::from_code(r[111]).ok_or_else(|| unknown("padStyle", r[111] as u32, 111))?;
    let pre_op = StageOp::from_code(r[217]).ok_or_else(|| unknown("preOp", r[217] as u32, 217))?;
    let post_op =
        StageOp::from_code(r[218]).ok_or_else(|| unknown("postOp", r[218] as u32, 218))?;
    let xyz = |off: usize| Xyz::new(u32_at(r, off), u32_at(r, off + 4), u32_at(r, off + 8));
    let buf = |off: usize| BufferRef::new(u32_at(r, off), u16_at(r, off + 4));
    Ok(StageRecord {
        op,
        opt_mask: u32_at(r, 101),
        radix: [r[105] as i8, r[106] as i8],
        stride: [r[107], r[108]],
        pad: [r[109], r[110]],
        pad_style,
        input_dims: xyz(112),
        taps_dims: xyz(124),
        output_dims: xyz(136),
        input_strides: xyz(148),
        taps_strides: xyz(160),
        output_strides: xyz(172),
        datatype: r[184],
        precision: r[185],
        storage_order: r[186],
        data: buf(187),
        taps: buf(193),
        bias: buf(199),
        op_params: buf(205),
        output: buf(211),
        pre_op,
        post_op,
        post_param: u32_at(r, 219),
        post_stride: [u16_at(r, 223), u16_at(r, 225)],
        name,
    })
}

/// Bytes a stage needs at each data-section slot, from its op and dims (§5.5). Unknown
/// layouts need at least one fp16 value.
pub(crate) fn slot_bytes(s: &StageRecord, slot: &str) -> u64 {
    let out_c = s.output_dims.z as u64;
    let in_c = s.input_dims.z as u64;
    match slot {
        "data" => StageRecord::extent(s.input_dims, s.input_strides),
        "output" => StageRecord::extent(s.output_dims, s.output_strides),
        "opParams" => 4,
        "taps" => match s.op {
            StageOp::Convolution | StageOp::Deconvolution | StageOp::FullyConnected => {
                s.taps_dims.volume().saturating_mul(2)
            }
            StageOp::DepthwiseConvolution => (2 * s.taps_dims.x as u64).saturating_mul(out_c),
            StageOp::Scale => 2 * out_c,
            StageOp::EltwiseSum | StageOp::EltwiseProd | StageOp::EltwiseMax => {
                StageRecord::extent(s.input_dims, s.input_strides)
            }
            _ => 2,
        },
        _ => match s.op {
            op if op.bias_slot_is_bias() => 2 * out_c,
            StageOp::Lrn | StageOp::InnerLrn => 8,
            StageOp::PRelu => 2 * in_c,
            _ => 2,
        },
    }
}

/// Checks every reference of stage `i`: data-section pointers must leave room for what the
/// op reads there, outputs must go to the network output or a work buffer, and a stage
/// must have an input.
fn check_stage_buffers(i: usize, s: &StageRecord, data_len: u64) -> Result<(), FormatError> {
    let base = (HEADER_LEN + STAGE_RECORD_LEN * i) as u64;
    for (slot, off) in SLOT_OFFSETS {
        let r = match slot {
            "data" => s.data,
            "taps" => s.taps,
            "bias" => s.bias,
            "opParams" => s.op_params,
            _ => s.output,
        };
        let bad = |why: &'static str| FormatError::BadLocation {
            index: i,
            name: s.name.clone(),
            slot,
            location: r.location,
            offset: base + off as u64 + 4,
            why,
        };
        match (slot, r.loc()) {
            ("data", Location::None) => return Err(bad("every stage reads an input")),
            ("output", Location::None | Location::Input | Location::Blob) => {
                return Err(bad("a stage writes the network output or a work buffer"))
            }
            _ => {}
        }
        if r.loc() == Location::Blob {
            let needed = slot_bytes(s, slot);
            let available = data_len.saturating_sub(r.pointer as u64);
            if r.pointer as u64 >= data_len || needed > available {
                return Err(FormatError::BufferOutOfRange {
                    index: i,
                    name: s.name.clone(),
                    slot,
                    pointer: r.pointer,
                    needed,
                    available,
                    offset: base + off as u64,
                });
            }
        }
    }
    Ok(())
}
