//! The real TensorFlow-compiled graphs (NCSDK 1 and 2) through the CLI: `run` on the fp16
//! emulation, `convert` to ONNX and to Caffe, recompiling the Caffe export for NCSDK 2, and
//! `verify` of every form against the Caffe export
//! on the native engine: tract (an independent ONNX runtime) strictly, the graphs by
//! mvNCCheck's thresholds. The Caffe export of TensorFlow SAME padding is the exact
//! symmetric form with zero taps, so this also checks that rewrite end to end.

use agegender::testutil::shared;
use std::path::Path;
use std::process::{Command, Output};

fn cli(args: &[&str]) -> Output {
    let o = Command::new(env!("CARGO_BIN_EXE_agegender"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("spawn agegender");
    assert!(
        o.status.success(),
        "agegender {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `verify CAFFE --against A --against-engine E …` passes with `preset`.
fn verifies(caffe: &Path, x: &Path, against: &[(&Path, &str)], preset: &str) {
    let mut args = vec!["verify", s(caffe), "--input", s(x)];
    for (p, e) in against {
        args.extend(["--against", s(p), "--against-engine", e]);
    }
    args.extend(["--preset", preset, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&cli(&args).stdout).unwrap();
    assert_eq!(v["pass"], true, "{v}");
}

#[test]
fn tensorflow_compiled_graphs_run_convert_and_verify() {
    for (rel, shape) in [
        ("ncs/mp-conv6-fc-sigmoid/graph.mv", [1, 3, 64, 64]),
        ("ncs/watanabe-cnn-bn/graph", [1, 1, 108, 108]),
        ("ncs/mp-conv-deconv/graph.mv", [1, 3, 128, 128]),
        ("ncs-v2/matpalm-conv8/graph.mv", [1, 3, 64, 64]),
    ] {
        let Some(g) = shared(&format!("fixtures-real/{rel}")) else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let x = dir.path().join("x.npy");
        let n: usize = shape.iter().product();
        let a = ndarray::ArrayD::from_shape_vec(
            shape.to_vec(),
            (0..n).map(|i| ((i * 37) % 101) as f32 / 100.0).collect(),
        )
        .unwrap();
        ndarray_npy::write_npy(&x, &a).unwrap();
        let out = dir.path().join("run");
        cli(&[
            "run",
            s(&g),
            "--input",
            s(&x),
            "--engine",
            "f16",
            "--output-dir",
            s(&out),
        ]);
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1, "{rel}");
        let (onnx, caffe) = (dir.path().join("m.onnx"), dir.path().join("m.caffemodel"));
        cli(&["convert", s(&g), "-o", s(&onnx)]);
        cli(&["convert", s(&g), "-o", s(&caffe)]);
        verifies(&caffe, &x, &[(&onnx, "tract")], "strict");
        let v2 = dir.path().join("m2.graph");
        cli(&["convert", s(&caffe), "-o", s(&v2), "--ncsdk", "2"]);
        verifies(&caffe, &x, &[(&g, "f16"), (&v2, "f16")], "mvncheck");
    }
}
