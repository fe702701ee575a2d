//! Shared I/O: `.npy` tensors, Caffe `Datum` records, LMDB databases and images.
//!
//! These are the files Caffe's tools exchange: `convert_imageset` writes LMDBs of `Datum`
//! records (uint8, C×H×W, BGR), `compute_image_mean` writes a mean `BlobProto`, and
//! goldens and means travel as NumPy `.npy`. Images are decoded into Caffe's layout (BGR
//! planes) and resized the way OpenCV's `cv::resize` does, so records match Caffe's bytes.

pub mod datum;
pub mod image;
pub mod lmdb;
pub mod npy;
