//! NCSDK 2 graphs through the CLI: `compile --ncsdk 2 --blob`, `--random-weights`,
//! `inspect` (+ `--json`) with version detection, `convert` between blob versions and
//! generations, `run --engine f16` and `verify` on a v2 graph, and the bad-input paths.

use agegender::testutil::shared;
use std::path::Path;
use std::process::{Command, Output};

const TINY: &str = "fixtures/models/levi_tiny.prototxt";
const TINY_W: &str = "fixtures/models/levi_tiny.caffemodel";
const PATTERN: &str = "fixtures/inputs/pattern_1x3x227x227.npy";

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_agegender"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("spawn agegender")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn run_ok(args: &[&str]) -> Output {
    let o = run(args);
    assert!(
        o.status.success(),
        "agegender {}: {}",
        args.join(" "),
        stderr(&o)
    );
    o
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn compile_for_ncsdk2_in_both_blob_versions_and_inspect_them() {
    let dir = tempfile::tempdir().unwrap();
    for (blob, minor, stage_off) in [("2.3", 3, 80), ("2.4", 4, 128)] {
        let g = dir.path().join(format!("tiny{minor}.graph"));
        run_ok(&[
            "compile",
            TINY,
            "-w",
            TINY_W,
            "-s",
            "12",
            "--ncsdk",
            "2",
            "--blob",
            blob,
            "-o",
            s(&g),
        ]);
        let bytes = std::fs::read(&g).unwrap();
        // §3: magic 0x2204 at 34 (2.3) or 36 (2.4), then major 2 and the minor
        let at = if minor == 3 { 34 } else { 36 };
        let word = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap());
        assert_eq!((word(at), word(at + 8), word(at + 12)), (0x2204, 2, minor));
        assert_eq!(word(at + 4) as usize, bytes.len());
        let v = json(&run_ok(&["inspect", s(&g), "--json"]));
        assert_eq!(v["ncsdk"], 2);
        assert_eq!(v["header"]["version"], blob);
        assert_eq!(v["header"]["num_shaves"], 12);
        assert_eq!(v["header"]["stage_section_offset"], stage_off);
        let text = String::from_utf8(run_ok(&["inspect", s(&g)]).stdout).unwrap();
        assert!(
            text.contains(&format!("blob {blob}")) && text.contains("work relocations"),
            "{text}"
        );
    }
    // the NCSDK 1 file of the same net is still the default and is detected as such
    let g1 = dir.path().join("tiny1.graph");
    run_ok(&["compile", TINY, "-w", TINY_W, "-o", s(&g1)]);
    assert_eq!(json(&run_ok(&["inspect", s(&g1), "--json"]))["ncsdk"], 1);
}

#[test]
fn a_v2_graph_runs_on_the_f16_engine_and_passes_mvncheck() {
    let dir = tempfile::tempdir().unwrap();
    let g = dir.path().join("tiny.graph");
    run_ok(&["compile", TINY, "-w", TINY_W, "--ncsdk", "2", "-o", s(&g)]);
    let o = run(&[
        "verify",
        TINY,
        "--weights",
        TINY_W,
        "--against",
        s(&g),
        "--against-engine",
        "f16",
        "--input",
        PATTERN,
        "--preset",
        "mvncheck",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(json(&o)["pass"], true);
    let out = dir.path().join("f16");
    run_ok(&[
        "run",
        s(&g),
        "--input",
        PATTERN,
        "--engine",
        "f16",
        "--output-dir",
        s(&out),
    ]);
    // graph → ONNX works for v2 graphs too
    run_ok(&["convert", s(&g), "-o", s(&dir.path().join("tiny.onnx"))]);
}

#[test]
fn convert_between_blob_versions_and_generations() {
    let (Some(b23), Some(b24)) = (
        shared("fixtures-real/ncs-v2/hsinm-mnist-blob23/graph"),
        shared("fixtures-real/ncs-v2/hsinm-mnist-blob24/graph"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mnist24.graph");
    run_ok(&[
        "convert",
        s(&b23),
        "-o",
        s(&out),
        "--ncsdk",
        "2",
        "--blob",
        "2.4",
    ]);
    assert!(
        std::fs::read(&out).unwrap() == std::fs::read(&b24).unwrap(),
        "not the real 2.4 file"
    );
    // NCSDK 1 → NCSDK 2 and back through the IR
    let v1 = dir.path().join("tiny1.graph");
    run_ok(&["compile", TINY, "-w", TINY_W, "-o", s(&v1)]);
    let v2 = dir.path().join("tiny2.graph");
    run_ok(&["convert", s(&v1), "-o", s(&v2), "--ncsdk", "2"]);
    assert_eq!(json(&run_ok(&["inspect", s(&v2), "--json"]))["ncsdk"], 2);
    let back = dir.path().join("back1.graph");
    run_ok(&["convert", s(&v2), "-o", s(&back), "--ncsdk", "1"]);
    let direct = std::fs::read(&v1).unwrap();
    let again = std::fs::read(&back).unwrap();
    // the round trip keeps every record and constant; only the stage names differ
    // (NCSDK 2 stores none), so compare from the data section on
    let start = 244;
    let bs = |b: &[u8]| u32::from_le_bytes(b[start..start + 4].try_into().unwrap()) as usize;
    assert_eq!(bs(&direct), bs(&again));
    assert!(
        direct[bs(&direct)..] == again[bs(&again)..],
        "data sections differ"
    );
}

#[test]
fn bad_ncsdk2_input_and_options_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let g = dir.path().join("x.graph");
    for (args, needle) in [
        (vec!["--ncsdk", "2", "--blob", "2.5"], "--blob 2.5"),
        (vec!["--ncsdk", "1", "--blob", "2.4"], "--ncsdk 2 only"),
        (vec!["--ncsdk", "3"], "--ncsdk 3"),
    ] {
        let mut a = vec!["compile", TINY, "-w", TINY_W, "-o", s(&g)];
        a.extend(args);
        let o = run(&a);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{}", stderr(&o));
        assert!(!g.exists(), "no output on error");
    }
    let Some(real) = shared("fixtures-real/ncs-v2/matpalm-conv1-valid/graph.mv") else {
        return;
    };
    let mut b = std::fs::read(real).unwrap();
    b[46] = 9; // minor version
    let bad = dir.path().join("bad.graph");
    std::fs::write(&bad, &b).unwrap();
    for cmd in [
        &["inspect", s(&bad)][..],
        &["run", s(&bad), "--input", PATTERN],
    ] {
        let o = run(cmd);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        let e = stderr(&o);
        assert!(
            e.contains("bad.graph") && e.contains("2.9") && !e.contains("panicked"),
            "{e}"
        );
    }
}

#[test]
fn compile_random_weights_fills_a_weightless_prototxt() {
    let Some(proto) = shared("fixtures-real/ncs-v2/squeezenet-v10-caffe/deploy_ncsdk.prototxt")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.graph");
    let b = dir.path().join("b.graph");
    for p in [&a, &b] {
        run_ok(&[
            "compile",
            s(&proto),
            "--random-weights",
            "-s",
            "12",
            "--ncsdk",
            "2",
            "-o",
            s(p),
        ]);
    }
    let (ba, bb) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert_eq!(ba.len(), 2_506_244);
    assert!(ba == bb, "seeded weights are reproducible");
}

#[test]
fn inspect_reads_every_real_graph_of_both_generations_whatever_its_name() {
    let v2 = [
        ("matpalm-conv1-valid/graph.mv", 3, "2.3"),
        ("matpalm-conv8/graph.mv", 3, "2.3"),
        ("matpalm-conv-deconv/graph.mv", 9, "2.3"),
        ("squeezenet-v10-caffe/graph", 32, "2.3"),
        ("hsinm-mnist-blob23/graph", 9, "2.3"),
        ("hsinm-mnist-blob24/graph", 9, "2.4"),
    ];
    for (rel, stages, blob) in v2 {
        let Some(p) = shared(&format!("fixtures-real/ncs-v2/{rel}")) else {
            return;
        };
        let v = json(&run_ok(&["inspect", s(&p), "--json"]));
        assert_eq!(v["ncsdk"], 2, "{rel}");
        assert_eq!(v["header"]["version"], blob, "{rel}");
        assert_eq!(v["stages"].as_array().unwrap().len(), stages, "{rel}");
        let text = String::from_utf8(run_ok(&["inspect", s(&p)]).stdout).unwrap();
        assert!(text.contains("relocation section"), "{rel}");
    }
    for rel in [
        "mp-conv6-fc-sigmoid/graph.mv",
        "mp-conv-deconv/graph.mv",
        "watanabe-cnn-bn/graph",
        "beloborodov-empty-fc/graph",
        "simcam-emotion/graph",
        "deeppicar-noatan/graph",
    ] {
        let Some(p) = shared(&format!("fixtures-real/ncs/{rel}")) else {
            return;
        };
        let v = json(&run_ok(&["inspect", s(&p), "--json"]));
        assert_eq!(v["ncsdk"], 1, "{rel}");
        assert_eq!(v["version"], 2, "{rel}");
    }
}

/// A Concat of two convolution branches as the last layer (8×8×4 + 8×8×6).
const CONCAT_OUT: &str = r#"
name: "concat_out"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
layer { name: "conv_a" type: "Convolution" bottom: "data" top: "a"
        convolution_param { num_output: 4 kernel_size: 1 } }
layer { name: "conv_b" type: "Convolution" bottom: "data" top: "b"
        convolution_param { num_output: 6 kernel_size: 3 pad: 1 } }
layer { name: "cat" type: "Concat" bottom: "a" bottom: "b" top: "cat" }
"#;

/// A 3-bottom Eltwise SUM of three 6×6×4 convolutions.
const ELTWISE3: &str = r#"
name: "eltwise3"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 1 dim: 3 dim: 6 dim: 6 } } }
layer { name: "conv_a" type: "Convolution" bottom: "data" top: "a"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "conv_b" type: "Convolution" bottom: "data" top: "b"
        convolution_param { num_output: 4 kernel_size: 1 } }
layer { name: "conv_c" type: "Convolution" bottom: "data" top: "c"
        convolution_param { num_output: 4 kernel_size: 1 } }
layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "b" bottom: "c" top: "sum" }
"#;

/// `compile --ncsdk 2` takes what the NCSDK 1 path takes: an output Concat (stage count
/// without a concat stage, size_of_output the whole 8·8·10, NCSDK2_GRAPH_FORMAT.md §8.1)
/// and a 3-operand Eltwise (two eltwise records); both also compile for NCSDK 1.
#[test]
fn compile_ncsdk2_takes_an_output_concat_and_a_three_operand_eltwise() {
    let dir = tempfile::tempdir().unwrap();
    // (net, v2 stage count, v2 output elements, v1 stage count)
    for (name, text, stages, out, v1_stages) in [
        ("concat", CONCAT_OUT, 3, 8 * 8 * 10, 3),
        ("eltwise3", ELTWISE3, 6, 6 * 6 * 4, 5),
    ] {
        let proto = dir.path().join(format!("{name}.prototxt"));
        std::fs::write(&proto, text).unwrap();
        let g2 = dir.path().join(format!("{name}2.graph"));
        let p = s(&proto);
        run_ok(&[
            "compile",
            p,
            "--random-weights",
            "--ncsdk",
            "2",
            "-o",
            s(&g2),
        ]);
        let v = json(&run_ok(&["inspect", s(&g2), "--json"]));
        assert_eq!(v["ncsdk"], 2, "{name}");
        assert_eq!(v["stages"].as_array().unwrap().len(), stages, "{name}");
        assert_eq!(v["output_size"], out, "{name}");
        let g1 = dir.path().join(format!("{name}1.graph"));
        run_ok(&["compile", p, "--random-weights", "-o", s(&g1)]);
        let v = json(&run_ok(&["inspect", s(&g1), "--json"]));
        assert_eq!(v["ncsdk"], 1, "{name}");
        assert_eq!(v["stages"].as_array().unwrap().len(), v1_stages, "{name}");
    }
}
