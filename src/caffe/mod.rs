//! The Caffe format adapter: prototxt (text), caffemodel (binary) and binaryproto, read into
//! and written from the IR.

pub mod binaryproto;
pub mod blob;
