//! Writing graph files: [`Graph`] → bytes in the exact v1 layout (header, packed stage
//! records, zero pad to 8, data section), and atomically to disk.

use super::error::NcsError;
use super::graph::Graph;
use super::header::{put_name, HEADER_LEN};
use super::stage::{BufferRef, StageRecord, Xyz, STAGE_RECORD_LEN};
use crate::util::atomic::atomic_write;
use std::path::Path;

impl StageRecord {
    /// Appends the 227 packed little-endian bytes of this record (§4.1).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        put_name(out, &self.name);
        out.push(self.op.code());
        out.extend_from_slice(&self.opt_mask.to_le_bytes());
        out.extend_from_slice(&[
            self.radix[0] as u8,
            self.radix[1] as u8,
            self.stride[0],
            self.stride[1],
            self.pad[0],
            self.pad[1],
            self.pad_style as u8,
        ]);
        let xyz = |out: &mut Vec<u8>, v: Xyz| {
            for n in [v.x, v.y, v.z] {
                out.extend_from_slice(&n.to_le_bytes());
            }
        };
        for v in [
            self.input_dims,
            self.taps_dims,
            self.output_dims,
            self.input_strides,
            self.taps_strides,
            self.output_strides,
        ] {
            xyz(out, v);
        }
        out.extend_from_slice(&[self.datatype, self.precision, self.storage_order]);
        let buf = |out: &mut Vec<u8>, r: BufferRef| {
            out.extend_from_slice(&r.pointer.to_le_bytes());
            out.extend_from_slice(&r.location.to_le_bytes());
        };
        for r in [self.data, self.taps, self.bias, self.op_params, self.output] {
            buf(out, r);
        }
        out.extend_from_slice(&[self.pre_op.code(), self.post_op.code()]);
        out.extend_from_slice(&self.post_param.to_le_bytes());
        out.extend_from_slice(&self.post_stride[0].to_le_bytes());
        out.extend_from_slice(&self.post_stride[1].to_le_bytes());
        debug_assert_eq!(out.len() - start, STAGE_RECORD_LEN);
    }
}

impl Graph {
    /// The file bytes. The header's `file_size`, `stage_count` and `buffer_start` are
    /// written as stored; [`Graph::seal`] makes them consistent first.
    pub fn to_bytes(&self) -> Vec<u8> {
        let table_end = HEADER_LEN + STAGE_RECORD_LEN * self.stages.len();
        let mut out = Vec::with_capacity(table_end + 8 + self.data.len());
        self.header.encode(&mut out);
        for s in &self.stages {
            s.encode(&mut out);
        }
        out.resize(self.header.buffer_start.max(table_end as u32) as usize, 0);
        out.extend_from_slice(&self.data);
        out
    }

    /// Sets `stage_count`, `buffer_start` and `file_size` from the stages and data, as the
    /// toolkit patches them after writing.
    pub fn seal(&mut self) {
        let n = self.stages.len() as u64;
        let start = super::header::buffer_start_for(n);
        self.header.stage_count = n as u32;
        self.header.buffer_start = start as u32;
        self.header.file_size = (start + self.data.len() as u64) as u32;
    }

    /// Writes the file atomically (temporary file, fsync, rename): an error never leaves a
    /// half-written graph under `path`.
    pub fn write(&self, path: &Path) -> Result<(), NcsError> {
        Ok(atomic_write(path, &self.to_bytes())?)
    }
}
