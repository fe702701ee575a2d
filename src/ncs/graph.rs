//! [`Graph`]: a whole v1 graph file in memory — header, stage records and the data section —
//! with typed access to the fp16 constants the stages point at.

use super::header::GraphHeader;
use super::stage::{BufferRef, Location, StageOp, StageRecord};
use half::f16;

/// A decoded NCSDK v1 graph. `data` is the data section (file bytes from `buffer_start`), so
/// that a location-3 pointer indexes it directly (§5.1).
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    /// The header.
    pub header: GraphHeader,
    /// Stage records in execution order.
    pub stages: Vec<StageRecord>,
    /// The data section: fp16 weights and biases, int32/f32 parameter arrays, each buffer
    /// padded to 64 bytes.
    pub data: Vec<u8>,
}

impl Graph {
    /// The bytes of `count` elements of `elem` bytes at a data-section reference, or `None`
    /// when the reference is not location 3 or runs past the section.
    pub fn blob_bytes(&self, r: BufferRef, count: usize, elem: usize) -> Option<&[u8]> {
        if r.loc() != Location::Blob {
            return None;
        }
        let start = r.pointer as usize;
        let end = start.checked_add(count.checked_mul(elem)?)?;
        self.data.get(start..end)
    }

    /// `count` fp16 values at a data-section reference.
    pub fn f16_at(&self, r: BufferRef, count: usize) -> Option<Vec<f16>> {
        Some(
            self.blob_bytes(r, count, 2)?
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]))
                .collect(),
        )
    }

    /// `count` fp16 values at a data-section reference, widened to f32 (exact).
    pub fn f32_from_f16_at(&self, r: BufferRef, count: usize) -> Option<Vec<f32>> {
        use half::slice::HalfFloatSliceExt;
        let h = self.f16_at(r, count)?;
        let mut out = vec![0.0f32; h.len()];
        h.convert_to_f32_slice(&mut out);
        Some(out)
    }

    /// `count` little-endian i32 values (opParams arrays keep their numpy int32 type).
    pub fn i32_at(&self, r: BufferRef, count: usize) -> Option<Vec<i32>> {
        Some(
            self.blob_bytes(r, count, 4)?
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        )
    }

    /// Number of fp16 values `mvncGetResult` returns: from the last stage (§3).
    pub fn host_output_len(&self) -> u64 {
        self.stages
            .last()
            .map(StageRecord::host_output_len)
            .unwrap_or(0)
    }

    /// Size of the per-inference work arena the stages address: the largest end of any
    /// work-buffer view (pointer + extent), §9. The device's guard bands lie inside it.
    pub fn work_arena_len(&self) -> u64 {
        let mut end = 0u64;
        for s in &self.stages {
            for (r, dims, strides) in [
                (s.data, s.input_dims, s.input_strides),
                (s.output, s.output_dims, s.output_strides),
            ] {
                if let Location::Work(_) = r.loc() {
                    end = end
                        .max((r.pointer as u64).saturating_add(StageRecord::extent(dims, strides)));
                }
            }
        }
        end
    }

    /// The index of the stage that writes `r` last before stage `before` (the producer a
    /// reader of `r` sees), matching on location and pointer.
    pub fn producer_of(&self, r: BufferRef, before: usize) -> Option<usize> {
        (0..before.min(self.stages.len()))
            .rev()
            .find(|&i| self.stages[i].output == r && self.stages[i].op != StageOp::None)
    }
}
