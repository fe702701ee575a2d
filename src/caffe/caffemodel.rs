//! `.caffemodel` files: one binary `NetParameter` whose layers carry their learned blobs.
//!
//! Old files (Caffe before 2015, e.g. Levi & Hassner's models, the MNIST/CIFAR-10 examples)
//! use the V1 `layers` field (2) with legacy 4-D blob dims; newer ones the `layer` field
//! (100) with `BlobShape`. Both are read here and upgraded to the current syntax, so the
//! rest of the adapter sees one form. A caffemodel written by `caffe train` stores the
//! whole train net: data, loss, accuracy and automatically inserted split layers included.

use super::error::CaffeError;
use super::upgrade::upgrade_net;
use crate::proto::caffe::NetParameter;
use prost::Message;
use std::path::{Path, PathBuf};

/// Errors reading a caffemodel; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum CaffemodelError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The bytes are not a protobuf `NetParameter` (truncated, random, or another format).
    #[error("{path} is not a valid caffemodel (binary caffe.NetParameter): {source}")]
    Decode {
        /// File.
        path: PathBuf,
        /// Cause, from the protobuf decoder.
        source: prost::DecodeError,
    },
    /// The bytes decode but hold no layer at all: not a caffemodel (a 0-byte file is
    /// accepted as an empty net, as Caffe accepts it).
    #[error("{path} holds no layers; is it a caffemodel? ({bytes} bytes)")]
    NoLayers {
        /// File.
        path: PathBuf,
        /// File size.
        bytes: usize,
    },
}

/// Decodes caffemodel bytes without upgrading. `path` names the source in errors. The
/// decoder checks every length prefix against the bytes that remain, so a truncated file
/// or a huge claimed size is an error before anything is allocated for it.
pub fn decode_caffemodel(bytes: &[u8], path: &Path) -> Result<NetParameter, CaffemodelError> {
    let net = NetParameter::decode(bytes).map_err(|source| CaffemodelError::Decode {
        path: path.to_path_buf(),
        source,
    })?;
    if !bytes.is_empty() && net.layer.is_empty() && net.layers.is_empty() {
        return Err(CaffemodelError::NoLayers {
            path: path.to_path_buf(),
            bytes: bytes.len(),
        });
    }
    Ok(net)
}

/// Reads a caffemodel and upgrades it to the current syntax (V1 `layers` → `layer`).
pub fn read_caffemodel(path: &Path) -> Result<NetParameter, CaffeError> {
    let bytes = std::fs::read(path).map_err(|source| CaffemodelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut net = decode_caffemodel(&bytes, path)?;
    upgrade_net(&mut net).map_err(|e| CaffeError::in_file(path, e))?;
    Ok(net)
}

#[cfg(test)]
#[path = "caffemodel_tests.rs"]
mod tests;
