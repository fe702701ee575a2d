//! The dataset pipeline: UTKFace names → labels, a seeded split, oversampling, and Caffe's
//! `convert_imageset` / `compute_image_mean` (LMDBs of Datum records and their mean).
//!
//! [`prepare::prepare`] runs the whole pipeline of the original project; the pieces are
//! public for the CLI (`agegender data …`) and for the trainer.

pub mod augment;
pub mod imageset;
pub mod mean;
pub mod prepare;
pub mod split;
pub mod stats;
pub mod utkface;

pub use imageset::{convert_imageset, read_image_list, ImagesetOptions, ImagesetReport, ListEntry};
pub use mean::{compute_image_mean, MeanAccumulator, MeanImage};
pub use prepare::{prepare, PrepareOptions, PrepareReport};

use std::path::PathBuf;

/// Errors of the dataset pipeline; each names the file, list line or LMDB record.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file or folder could not be read or created.
    #[error("cannot access {}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// An option is out of range.
    #[error("invalid option: {0}")]
    Options(String),
    /// A line of an image list is malformed.
    #[error("{}:{line}: {reason}", path.display())]
    List {
        /// List file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A record is inconsistent with the others.
    #[error("{}, record {key}: {reason}", path.display())]
    Record {
        /// The LMDB or image.
        path: PathBuf,
        /// The record's key or name.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// An LMDB holds no record.
    #[error("{}: the LMDB holds no record", path.display())]
    Empty {
        /// The LMDB.
        path: PathBuf,
    },
    /// No usable image was found.
    #[error("no usable image in {}", path.display())]
    NoImages {
        /// The folder.
        path: PathBuf,
    },
    /// LMDB failure.
    #[error(transparent)]
    Lmdb(#[from] crate::io::lmdb::LmdbError),
    /// Image failure.
    #[error(transparent)]
    Image(#[from] crate::io::image::ImageError),
    /// `.npy` failure.
    #[error(transparent)]
    Npy(#[from] crate::io::npy::NpyError),
    /// binaryproto failure.
    #[error(transparent)]
    BinaryProto(#[from] crate::caffe::binaryproto::BinaryProtoError),
    /// An atomic write failed.
    #[error(transparent)]
    Write(#[from] crate::util::atomic::AtomicWriteError),
    /// A stop request (SIGINT/SIGTERM) ended the run; the output folder was not written.
    #[error("interrupted; {} was not written", path.display())]
    Interrupted {
        /// The output folder.
        path: PathBuf,
    },
    /// The report could not be serialized.
    #[error("cannot encode the report: {0}")]
    Json(#[from] serde_json::Error),
}
