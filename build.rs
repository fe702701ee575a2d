//! Generates the Caffe protobuf types from `proto/caffe.proto` with pure-Rust tooling:
//! `protox` parses the schema (no `protoc` binary), `prost-build` emits the structs, and the
//! encoded descriptor set is kept for `prost-reflect`, which parses and prints the text format.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=proto/caffe.proto");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR is set by cargo"));
    let fds =
        protox::compile(["proto/caffe.proto"], ["proto"]).expect("proto/caffe.proto compiles");
    let bytes = prost::Message::encode_to_vec(&fds);
    std::fs::write(out.join("caffe_descriptor.bin"), bytes).expect("write descriptor set");
    prost_build::Config::new()
        .compile_fds(fds)
        .expect("prost-build generates caffe.rs");
}
