//! `.binaryproto` files: one serialized `BlobProto`, used for mean images.

use super::blob::{legacy_blob_from_tensor, tensor_from_blob, BlobError};
use crate::ir::Tensor;
use crate::proto::caffe::BlobProto;
use crate::util::atomic::{atomic_write, AtomicWriteError};
use prost::Message;
use std::path::{Path, PathBuf};

/// Errors reading or writing a binaryproto; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum BinaryProtoError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Not a valid protobuf `BlobProto`.
    #[error("{path} is not a valid BlobProto: {source}")]
    Decode {
        /// File.
        path: PathBuf,
        /// Cause.
        source: prost::DecodeError,
    },
    /// The blob's shape and data disagree.
    #[error("{path}: {source}")]
    Blob {
        /// File.
        path: PathBuf,
        /// Cause.
        source: BlobError,
    },
    /// Writing failed.
    #[error(transparent)]
    Write(#[from] AtomicWriteError),
}

/// Reads a mean (or any blob) from a binaryproto. Legacy 4-D and new `shape` forms both work.
pub fn read_binaryproto(path: &Path) -> Result<Tensor, BinaryProtoError> {
    let bytes = std::fs::read(path).map_err(|source| BinaryProtoError::Io {
        path: path.into(),
        source,
    })?;
    decode_binaryproto(&bytes).map_err(|e| match e {
        DecodeFailure::Proto(source) => BinaryProtoError::Decode {
            path: path.into(),
            source,
        },
        DecodeFailure::Blob(source) => BinaryProtoError::Blob {
            path: path.into(),
            source,
        },
    })
}

/// Why an in-memory binaryproto failed to decode.
#[derive(Debug)]
pub enum DecodeFailure {
    /// Protobuf wire error.
    Proto(prost::DecodeError),
    /// Shape/data mismatch.
    Blob(BlobError),
}

/// Decodes binaryproto bytes.
pub fn decode_binaryproto(bytes: &[u8]) -> Result<Tensor, DecodeFailure> {
    let blob = BlobProto::decode(bytes).map_err(DecodeFailure::Proto)?;
    tensor_from_blob(&blob).map_err(DecodeFailure::Blob)
}

/// Writes a tensor as a binaryproto with legacy 4-D dims when it is 4-D (the layout
/// `compute_image_mean` produces and every Caffe reader accepts).
pub fn write_binaryproto(path: &Path, t: &Tensor) -> Result<(), BinaryProtoError> {
    let bytes = legacy_blob_from_tensor(t).encode_to_vec();
    Ok(atomic_write(path, &bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::shared;

    #[test]
    fn reads_the_levi_hassner_mean_with_its_known_channel_means() {
        let Some(p) = shared("fixtures-real/levi_hassner/models/mean.binaryproto") else {
            return;
        };
        let t = read_binaryproto(&p).unwrap();
        assert_eq!(t.shape, vec![1, 3, 256, 256]);
        let hw = 256 * 256;
        let means: Vec<f64> = (0..3)
            .map(|c| {
                t.data[c * hw..(c + 1) * hw]
                    .iter()
                    .map(|&v| v as f64)
                    .sum::<f64>()
                    / hw as f64
            })
            .collect();
        for (m, want) in means.iter().zip([78.43, 87.77, 114.90]) {
            assert!((m - want).abs() < 0.01, "channel means {means:?}");
        }
    }

    #[test]
    fn round_trip_is_byte_exact_for_a_caffe_written_mean() {
        let Some(p) = shared("fixtures-real/caffe-oracle/mean.binaryproto") else {
            return;
        };
        let original = std::fs::read(&p).unwrap();
        let t = read_binaryproto(&p).unwrap();
        assert_eq!(t.shape, vec![1, 3, 227, 227]);
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("m.binaryproto");
        write_binaryproto(&out, &t).unwrap();
        assert_eq!(
            std::fs::read(&out).unwrap(),
            original,
            "re-encoded bytes differ from Caffe's"
        );
    }

    #[test]
    fn truncated_and_inconsistent_blobs_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.binaryproto");
        let mut bytes = legacy_blob_from_tensor(&Tensor::full(&[1, 3, 2, 2], 1.0)).encode_to_vec();
        bytes.truncate(bytes.len() - 3);
        std::fs::write(&p, &bytes).unwrap();
        let e = read_binaryproto(&p).unwrap_err().to_string();
        assert!(e.contains("bad.binaryproto"), "{e}");
        let wrong = BlobProto {
            num: Some(1),
            channels: Some(3),
            height: Some(2),
            width: Some(2),
            data: vec![0.0; 5],
            ..Default::default()
        };
        std::fs::write(&p, wrong.encode_to_vec()).unwrap();
        let e = read_binaryproto(&p).unwrap_err().to_string();
        assert!(e.contains("needs 12 values but 5"), "{e}");
    }
}
