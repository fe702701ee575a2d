//! `BlobProto` ↔ [`Tensor`]: the one place that knows Caffe's two blob shape encodings.
//!
//! New blobs carry `shape { dim: … }`; legacy ones carry `num/channels/height/width`.
//! Values are in `data` (f32) or `double_data` (f64, narrowed here).

use crate::ir::Tensor;
use crate::proto::caffe::{BlobProto, BlobShape};

/// Why a blob could not be decoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BlobError {
    /// The element count implied by the shape differs from the stored values.
    #[error("blob shape {shape:?} needs {expected} values but {found} are stored")]
    CountMismatch {
        /// Decoded shape.
        shape: Vec<usize>,
        /// Product of the shape.
        expected: usize,
        /// Values present.
        found: usize,
    },
    /// A negative or absurd dimension.
    #[error("blob has an invalid dimension {0}")]
    BadDim(i64),
}

/// The blob's shape: `shape.dim` when present, otherwise the legacy 4-D dims. A legacy blob
/// with no dims at all but with data is treated as 1-D.
pub fn blob_shape(b: &BlobProto) -> Result<Vec<usize>, BlobError> {
    let dims: Vec<i64> = match &b.shape {
        Some(s) => s.dim.clone(),
        None if b.num.is_some()
            || b.channels.is_some()
            || b.height.is_some()
            || b.width.is_some() =>
        {
            vec![
                b.num() as i64,
                b.channels() as i64,
                b.height() as i64,
                b.width() as i64,
            ]
        }
        None => vec![stored_len(b) as i64],
    };
    dims.iter()
        .map(|&d| {
            if (0..=i32::MAX as i64).contains(&d) {
                Ok(d as usize)
            } else {
                Err(BlobError::BadDim(d))
            }
        })
        .collect()
}

fn stored_len(b: &BlobProto) -> usize {
    if b.data.is_empty() {
        b.double_data.len()
    } else {
        b.data.len()
    }
}

/// Decodes a blob into a tensor, checking that the shape and value count agree (the check
/// happens before any allocation proportional to the claimed shape).
pub fn tensor_from_blob(b: &BlobProto) -> Result<Tensor, BlobError> {
    let shape = blob_shape(b)?;
    let found = stored_len(b);
    let expected = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .unwrap_or(usize::MAX);
    if expected != found {
        return Err(BlobError::CountMismatch {
            shape,
            expected,
            found,
        });
    }
    let data = if b.data.is_empty() {
        b.double_data.iter().map(|&v| v as f32).collect()
    } else {
        b.data.clone()
    };
    Ok(Tensor { shape, data })
}

/// Encodes a tensor in the current form (`shape` + `data`), as Caffe's `ToProto` does.
pub fn blob_from_tensor(t: &Tensor) -> BlobProto {
    BlobProto {
        shape: Some(BlobShape {
            dim: t.shape.iter().map(|&d| d as i64).collect(),
        }),
        data: t.data.clone(),
        ..Default::default()
    }
}

/// Encodes a 4-D tensor with the legacy `num/channels/height/width` fields (as
/// `compute_image_mean` writes means); other ranks fall back to [`blob_from_tensor`].
pub fn legacy_blob_from_tensor(t: &Tensor) -> BlobProto {
    if t.shape.len() != 4 {
        return blob_from_tensor(t);
    }
    BlobProto {
        num: Some(t.shape[0] as i32),
        channels: Some(t.shape[1] as i32),
        height: Some(t.shape[2] as i32),
        width: Some(t.shape[3] as i32),
        data: t.data.clone(),
        ..Default::default()
    }
}
