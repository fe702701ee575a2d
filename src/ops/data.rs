//! Source layers: Input (deploy nets) and Data (LMDB `Datum` records with Caffe's
//! `transform_param`). They have no bottoms; the engine or trainer feeds their tops.

use super::OpResult;

/// Caffe `TransformationParameter`, applied in Caffe's order: crop (random in TRAIN,
/// centre in TEST), mirror (random in TRAIN), mean subtraction, then scale.
#[derive(Debug, Clone, PartialEq)]
pub struct TransformParams {
    /// Multiplier applied after mean subtraction (default 1).
    pub scale: f32,
    /// Random horizontal flip in TRAIN.
    pub mirror: bool,
    /// Square crop size (0 = none).
    pub crop_size: usize,
    /// Path of a binaryproto mean image.
    pub mean_file: Option<String>,
    /// Per-channel means (one, or one per channel).
    pub mean_value: Vec<f32>,
}

impl Default for TransformParams {
    fn default() -> Self {
        Self {
            scale: 1.0,
            mirror: false,
            crop_size: 0,
            mean_file: None,
            mean_value: Vec::new(),
        }
    }
}

/// Data layer parameters (Caffe `DataParameter`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DataParams {
    /// LMDB directory.
    pub source: String,
    /// Records per batch.
    pub batch_size: usize,
    /// Preprocessing.
    pub transform: TransformParams,
    /// Shape of one record (C, H, W) after cropping, when known (filled from the LMDB).
    pub record_shape: Option<[usize; 3]>,
}

impl DataParams {
    /// Tops: data `[batch, C, H, W]` and label `[batch]`. Without a known record shape the
    /// data top is `[batch, 0, 0, 0]` until the trainer opens the LMDB.
    pub fn output_shapes(&self, tops: usize) -> OpResult<Vec<Vec<usize>>> {
        let [c, h, w] = self.record_shape.unwrap_or([0, 0, 0]);
        let mut v = vec![vec![self.batch_size, c, h, w]];
        if tops > 1 {
            v.push(vec![self.batch_size]);
        }
        Ok(v)
    }
}
