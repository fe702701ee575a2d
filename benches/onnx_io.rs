//! ONNX export and import time for the full-size Levi & Hassner AgeNet (3×227×227, 96/256/
//! 384 filters, fc 512, 11.4 M parameters; random weights from the prototxt's fillers).
//! Target: under 0.5 s each. Run with `cargo bench --bench onnx_io`.
//!
//! Measured: building the `ModelProto` from the IR, encoding it, writing it atomically;
//! reading and decoding the file, and converting it back to the IR (shape-checked).

use agegender::ir::Phase;
use agegender::onnx::{self, ImportOptions};
use prost::Message;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn stats(name: &str, mut times: Vec<Duration>) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mean = times.iter().map(|d| ms(*d)).sum::<f64>() / times.len() as f64;
    println!(
        "{name:<34} min {:>8.1} ms  median {:>8.1} ms  mean {:>8.1} ms  ({} runs)",
        ms(times[0]),
        ms(times[times.len() / 2]),
        mean,
        times.len()
    );
}

fn main() {
    let root = std::env::var_os("AGEGENDER_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    let proto = root.join("fixtures-real/levi_hassner/age_net_definitions/deploy.prototxt");
    if !proto.exists() {
        eprintln!("SKIP: {} is absent", proto.display());
        return;
    }
    let mut net = agegender::caffe::load_net(&proto, None, Phase::Test).unwrap();
    agegender::caffe::fill_missing_weights(&mut net, 1701).unwrap();
    println!(
        "Levi & Hassner AgeNet: {} layers, {} parameters",
        net.layers.len(),
        net.param_count()
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("age_net.onnx");
    let runs = 10;

    let mut export = Vec::new();
    let mut encode = Vec::new();
    let mut write = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let model = onnx::export(&net).unwrap();
        export.push(t.elapsed());
        let t = Instant::now();
        let bytes = model.encode_to_vec();
        encode.push(t.elapsed());
        std::hint::black_box(bytes);
        let t = Instant::now();
        onnx::write_onnx(&net, &path).unwrap();
        write.push(t.elapsed());
    }
    println!(
        "file size: {} bytes",
        std::fs::metadata(&path).unwrap().len()
    );
    stats("export (IR → ModelProto)", export);
    stats("encode (ModelProto → bytes)", encode);
    stats("write_onnx (export+encode+fsync)", write);

    let mut read = Vec::new();
    let mut convert = Vec::new();
    let mut import = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let model = onnx::import::read_model(&path).unwrap();
        read.push(t.elapsed());
        let t = Instant::now();
        let back =
            onnx::import_model(&model, dir.path().into(), &ImportOptions::default()).unwrap();
        convert.push(t.elapsed());
        std::hint::black_box(back);
        let t = Instant::now();
        let back = onnx::import(&path).unwrap();
        import.push(t.elapsed());
        assert_eq!(back.param_count(), net.param_count());
    }
    stats("read + decode", read);
    stats("ModelProto → IR", convert);
    stats("import (file → IR)", import);
}
