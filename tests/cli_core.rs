//! The core commands as a user runs them: `inspect`, `run`, `convert`, `bench`, and every
//! bad-input path of the core issue (clear message, exit code 2, no panic, no output left).

use agegender::testutil::shared;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_agegender"))
}

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("spawn agegender")
}

/// Runs a command that must succeed, failing the test with its stderr otherwise.
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

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A failing command: exit code 2, a message containing every `needle`, and no panic.
fn assert_bad_input(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "exit code; stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}: {err}");
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

const TINY: &str = "fixtures/models/levi_tiny.prototxt";
const TINY_W: &str = "fixtures/models/levi_tiny.caffemodel";
const PATTERN: &str = "fixtures/inputs/pattern_1x3x227x227.npy";

#[test]
fn inspect_json_reports_levi_hassner_shapes_and_fc6_inputs() {
    let Some(p) = shared("fixtures-real/levi_hassner/age_net_definitions/deploy.prototxt") else {
        return;
    };
    let o = run_ok(&["inspect", s(&p), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let shape_of = |name: &str| -> Vec<u64> {
        let l = v["layers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == name)
            .unwrap();
        l["tops"][0]["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap())
            .collect()
    };
    // Caffe's rules: conv floor (227−7)/4+1 = 56, then ceil pooling 56 → 28 → 14 → 7.
    assert_eq!(shape_of("conv1"), [1, 96, 56, 56]);
    assert_eq!(shape_of("pool1"), [1, 96, 28, 28]);
    assert_eq!(shape_of("pool2"), [1, 256, 14, 14]);
    assert_eq!(shape_of("pool5"), [1, 384, 7, 7]);
    let fc6 = v["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "fc6")
        .unwrap();
    // 384·7·7 = 18,816 inputs → 512 outputs, plus 512 biases.
    assert_eq!(fc6["params"], 18_816 * 512 + 512);
    // 2 × multiply-adds: conv2 = 2·(256·28·28)·(96·5·5).
    let conv2 = v["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "conv2")
        .unwrap();
    assert_eq!(conv2["flops"], 2 * 256 * 28 * 28 * 96 * 25);
    assert_eq!(v["inputs"][0]["shape"], serde_json::json!([1, 3, 227, 227]));
}

#[test]
fn inspect_mean_prints_levi_hassner_channel_means() {
    let Some(p) = shared("fixtures-real/levi_hassner/models/mean.binaryproto") else {
        return;
    };
    let o = run_ok(&["inspect", s(&p)]);
    let out = String::from_utf8_lossy(&o.stdout);
    for m in ["78.43", "87.77", "114.90"] {
        assert!(out.contains(m), "{out}");
    }
}

#[test]
fn run_writes_outputs_and_every_layer_including_in_place_ones() {
    let dir = tempfile::tempdir().unwrap();
    let o = run_ok(&[
        "run",
        TINY,
        "--weights",
        TINY_W,
        "--input",
        PATTERN,
        "--output-dir",
        s(dir.path()),
        "--all-blobs",
    ]);
    for f in ["prob", "conv1", "relu1", "norm2", "fc8"] {
        assert!(
            dir.path().join(format!("{f}.npy")).exists(),
            "{f}.npy missing"
        );
    }
    let prob = agegender::io::npy::read_npy(&dir.path().join("prob.npy")).unwrap();
    assert_eq!(prob.shape, vec![1, 9]);
    let sum: f32 = prob.data.iter().sum();
    assert!((sum - 1.0).abs() < 1e-5, "softmax sums to {sum}");
    // relu1 is in place on conv1 in Caffe; both files exist and relu1 = max(conv1, 0).
    let conv1 = agegender::io::npy::read_npy(&dir.path().join("conv1.npy")).unwrap();
    let relu1 = agegender::io::npy::read_npy(&dir.path().join("relu1.npy")).unwrap();
    assert!(
        conv1.data.iter().any(|&v| v < 0.0),
        "conv1 must be the pre-ReLU blob"
    );
    assert!(conv1
        .data
        .iter()
        .zip(&relu1.data)
        .all(|(c, r)| *r == c.max(0.0)));
    assert!(String::from_utf8_lossy(&o.stdout).contains("top-5"));
}

#[test]
fn convert_to_caffemodel_round_trips_bit_exactly_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("copy.caffemodel");
    run_ok(&["convert", TINY, "--weights", TINY_W, "-o", s(&out)]);
    assert!(dir.path().join("copy.prototxt").exists());
    let a =
        agegender::caffe::load_net(&repo(TINY), Some(&repo(TINY_W)), agegender::ir::Phase::Test)
            .unwrap();
    let b = agegender::caffe::load_net(
        &dir.path().join("copy.prototxt"),
        Some(&out),
        agegender::ir::Phase::Test,
    )
    .unwrap();
    assert_eq!(a.layers.len(), b.layers.len());
    for (la, lb) in a.layers.iter().zip(&b.layers) {
        assert_eq!(la.op, lb.op, "layer {}", la.name);
        assert_eq!(la.blobs.len(), lb.blobs.len());
        for (x, y) in la.blobs.iter().zip(&lb.blobs) {
            assert_eq!(x.shape, y.shape);
            assert!(
                x.data
                    .iter()
                    .zip(&y.data)
                    .all(|(p, q)| p.to_bits() == q.to_bits()),
                "layer {}",
                la.name
            );
        }
    }
}

#[test]
fn convert_mean_binaryproto_to_npy_keeps_chw_values() {
    let Some(p) = shared("fixtures-real/levi_hassner/models/mean.binaryproto") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mean.npy");
    run_ok(&["convert", s(&p), "-o", s(&out)]);
    let npy = agegender::io::npy::read_npy(&out).unwrap();
    let blob = agegender::caffe::binaryproto::read_binaryproto(&p).unwrap();
    assert_eq!(npy.shape, vec![3, 256, 256]);
    assert_eq!(npy.data, blob.data);
}

#[test]
fn bench_reports_throughput_as_json() {
    let o = run_ok(&[
        "bench",
        TINY,
        "--random-weights",
        "--batch",
        "2",
        "--iters",
        "2",
        "--warmup",
        "0",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["batch"], 2);
    assert!(v["images_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(v["layers"].as_array().unwrap().len(), 19);
}

#[test]
fn truncated_and_random_caffemodels_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let real = std::fs::read(repo(TINY_W)).unwrap();
    let truncated = write(dir.path(), "truncated.caffemodel", &real[..real.len() / 2]);
    let o = run(&["inspect", TINY, "--weights", s(&truncated)]);
    assert_bad_input(&o, &["truncated.caffemodel"]);
    let mut state = 0x1234_5678u32;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect();
    let random = write(dir.path(), "random.caffemodel", &noise);
    let o = run(&["inspect", s(&random)]);
    assert_bad_input(&o, &["random.caffemodel"]);
}

#[test]
fn prototxt_syntax_error_gives_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "broken.prototxt", b"name: \"x\"\ninput: \"data\"\nlayer {\n  name: \"c\"\n  type: \"ReLU\"\n  bottom \"data\" }\n");
    let o = run(&["inspect", s(&p)]);
    assert_bad_input(&o, &["broken.prototxt", ":6:"]);
}

/// `inspect` on a prototxt with one 8×8 input and the given layer must fail naming `needles`.
fn inspect_layer_fails(file: &str, layer: &str, needles: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("input: \"data\"\ninput_shape {{ dim: 1 dim: 3 dim: 8 dim: 8 }}\n{layer}\n");
    let p = write(dir.path(), file, text.as_bytes());
    assert_bad_input(&run(&["inspect", s(&p)]), needles);
}

#[test]
fn unknown_layer_type_names_the_layer() {
    let layer = r#"layer { name: "weird1" type: "FancyLayer" bottom: "data" top: "y" }"#;
    inspect_layer_fails("unknown.prototxt", layer, &["weird1", "FancyLayer"]);
}

#[test]
fn bottom_that_no_layer_produces_is_named() {
    let layer = r#"layer { name: "r" type: "ReLU" bottom: "ghost" top: "y" }"#;
    inspect_layer_fails("dangling.prototxt", layer, &["'r'", "ghost"]);
}

#[test]
fn weights_of_the_wrong_shape_name_layer_and_both_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo(TINY))
        .unwrap()
        .replace("num_output: 16 pad: 2", "num_output: 12 pad: 2");
    let p = write(dir.path(), "changed.prototxt", text.as_bytes());
    let o = run(&["inspect", s(&p), "--weights", TINY_W]);
    assert_bad_input(&o, &["conv2", "[12, 8, 5, 5]", "[16, 8, 5, 5]"]);
}

#[test]
fn input_npy_of_wrong_shape_or_dtype_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let wrong_shape = dir.path().join("small.npy");
    agegender::io::npy::write_npy(&wrong_shape, &agegender::ir::Tensor::zeros(&[1, 3, 32, 32]))
        .unwrap();
    let o = run(&[
        "run",
        TINY,
        "-w",
        TINY_W,
        "--input",
        s(&wrong_shape),
        "--output-dir",
        s(&out),
    ]);
    assert_bad_input(&o, &["small.npy", "[1, 3, 32, 32]", "[1, 3, 227, 227]"]);
    assert!(!out.exists(), "no output directory after a failed run");
    // An int32 tensor of the right shape: the file is named and nothing is written.
    let int_npy = {
        let header = "{'descr': '<i4', 'fortran_order': False, 'shape': (1, 3, 227, 227), }";
        let padded = format!(
            "{header}{}\n",
            " ".repeat(64 - (10 + header.len() + 1) % 64)
        );
        let mut v = b"\x93NUMPY\x01\x00".to_vec();
        v.extend_from_slice(&(padded.len() as u16).to_le_bytes());
        v.extend_from_slice(padded.as_bytes());
        v.extend(std::iter::repeat_n(0u8, 4 * 3 * 227 * 227));
        write(dir.path(), "ints.npy", &v)
    };
    let o = run(&[
        "run",
        TINY,
        "-w",
        TINY_W,
        "--input",
        s(&int_npy),
        "--output-dir",
        s(&out),
    ]);
    assert_bad_input(&o, &["ints.npy"]);
    assert!(!out.exists());
}

#[test]
fn missing_files_are_named() {
    let o = run(&["inspect", "no/such/model.prototxt"]);
    assert_bad_input(&o, &["no/such/model.prototxt"]);
    let o = run(&[
        "run",
        TINY,
        "--weights",
        "missing.caffemodel",
        "--input",
        PATTERN,
    ]);
    assert_bad_input(&o, &["missing.caffemodel"]);
    let o = run(&["run", TINY, "--weights", TINY_W, "--input", "missing.npy"]);
    assert_bad_input(&o, &["missing.npy"]);
}

/// True when `python3 -c "import cv2, numpy; cv2.dnn.readNetFromCaffe"` works here.
fn opencv_available() -> bool {
    Command::new("python3")
        .args(["-c", "import cv2, numpy; cv2.dnn.readNetFromCaffe"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn written_caffe_files_load_in_opencv_and_give_our_outputs() {
    if !opencv_available() {
        eprintln!("SKIP: python3 with opencv-python (4.x, with the Caffe importer) and numpy is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("net.caffemodel");
    run_ok(&["convert", TINY, "-w", TINY_W, "-o", s(&model)]);
    let out = dir.path().join("out");
    let proto = dir.path().join("net.prototxt");
    run_ok(&[
        "run",
        s(&proto),
        "-w",
        s(&model),
        "--input",
        PATTERN,
        "--output-dir",
        s(&out),
        "--all-blobs",
    ]);
    let pairs: Vec<String> = ["prob", "fc8", "norm2", "pool5"]
        .iter()
        .map(|n| format!("{n}={}", out.join(format!("{n}.npy")).display()))
        .collect();
    let o = Command::new("python3")
        .arg(repo("tools/check_caffe_opencv.py"))
        .args([s(&proto), s(&model), s(&repo(PATTERN))])
        .args(&pairs)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "OpenCV disagrees:\n{report}{}",
        stderr(&o)
    );
    assert_eq!(report.matches(" ok").count(), 4, "{report}");
}

/// Max |a − b| over two equal-length tensors.
fn max_abs_diff(a: &agegender::ir::Tensor, b: &agegender::ir::Tensor) -> f32 {
    assert_eq!(a.shape, b.shape);
    a.data
        .iter()
        .zip(&b.data)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
}

#[test]
fn tract_engine_and_onnx_export_agree_with_the_native_engine() {
    let dir = tempfile::tempdir().unwrap();
    let onnx = dir.path().join("tiny.onnx");
    run_ok(&["convert", TINY, "-w", TINY_W, "-o", s(&onnx)]);
    let mut probs = Vec::new();
    for (model, engine) in [
        (TINY_W, "native"),
        (TINY_W, "tract"),
        (s(&onnx), "native"),
        (s(&onnx), "tract"),
    ] {
        let out = dir.path().join(format!("out-{engine}-{}", probs.len()));
        let o = run(&[
            "run",
            model,
            "--input",
            PATTERN,
            "--engine",
            engine,
            "--output-dir",
            s(&out),
        ]);
        assert!(o.status.success(), "{model} on {engine}: {}", stderr(&o));
        probs.push(agegender::io::npy::read_npy(&out.join("prob.npy")).unwrap());
    }
    for p in &probs[1..] {
        // The strict preset: max error ≤ 1e-4 × max(1, max|ref|) on a softmax output.
        assert!(
            max_abs_diff(&probs[0], p) <= 1e-4,
            "{:?} vs {:?}",
            probs[0].data,
            p.data
        );
    }
}

#[test]
fn compile_with_mvnccompile_flags_is_byte_exact_and_the_graph_runs_in_f16() {
    let Some(fc) = shared("fixtures-real/ncs/beloborodov-empty-fc") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("graph");
    // The fixture's recorded command: mvNCCompile -s 12 -o graph -w empty.caffemodel empty.prototxt
    run_ok(&[
        "compile",
        "-s",
        "12",
        "-o",
        s(&out),
        "-w",
        s(&fc.join("empty.caffemodel")),
        s(&fc.join("empty.prototxt")),
    ]);
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(fc.join("graph")).unwrap(),
        "not byte-identical to Intel's graph"
    );
    // inspect reads it back as a graph, with a stages array in JSON.
    let o = run_ok(&["inspect", s(&out), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["stages"].as_array().unwrap().len(), 2);
    // The tiny Levi net, compiled with a sub-network cut, and run on the fp16 emulator.
    let g = dir.path().join("tiny.graph");
    run_ok(&["compile", TINY, "-w", TINY_W, "-s", "12", "-o", s(&g)]);
    let f16_out = dir.path().join("f16");
    run_ok(&[
        "run",
        s(&g),
        "--input",
        PATTERN,
        "--engine",
        "f16",
        "--output-dir",
        s(&f16_out),
    ]);
    let f32_out = dir.path().join("f32");
    run_ok(&[
        "run",
        TINY,
        "-w",
        TINY_W,
        "--input",
        PATTERN,
        "--output-dir",
        s(&f32_out),
    ]);
    let a = agegender::io::npy::read_npy(&f32_out.join("prob.npy")).unwrap();
    let b = agegender::io::npy::read_npy(&f16_out.join("prob.npy")).unwrap();
    // mvNCCheck's limit: max error ≤ 2 % of max|ref|.
    assert!(
        max_abs_diff(&a, &b) <= 0.02 * a.max_abs(),
        "{:?} vs {:?}",
        a.data,
        b.data
    );
    let cut = dir.path().join("cut.graph");
    run_ok(&["compile", TINY, "-w", TINY_W, "-on", "pool2", "-o", s(&cut)]);
    let o = run(&["inspect", s(&cut), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let last = v["stages"].as_array().unwrap().last().unwrap().clone();
    assert!(
        last.to_string().contains("pool2"),
        "last stage of the cut: {last}"
    );
}

#[test]
fn verify_passes_mvncheck_for_a_compiled_graph_on_the_f16_engine() {
    let dir = tempfile::tempdir().unwrap();
    let g = dir.path().join("tiny.graph");
    run_ok(&["compile", TINY, "-w", TINY_W, "-o", s(&g)]);
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
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["pass"], true);
    let prob = v["comparisons"][0]["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "prob")
        .unwrap()
        .clone();
    // mvNCCheck's limits: max ≤ 2 % of max|ref|, mean ≤ 1 %, and here top-1 agrees.
    assert!(prob["max_rel"].as_f64().unwrap() <= 0.02, "{prob}");
    assert_eq!(prob["top1_agreement"].as_f64().unwrap(), 1.0, "{prob}");
}

/// A graph whose conv2 weights were corrupted (sign-flipped and scaled ×40 after a correct
/// compile, then compiled again) fails mvNCCheck's rule against the f32 Caffe model, and
/// the report names conv2 as the first layer that diverges.
#[test]
fn verify_fails_a_graph_with_corrupted_weights_and_names_the_layer() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("tiny.graph");
    run_ok(&["compile", TINY, "-w", TINY_W, "-o", s(&good)]);
    let mut net = agegender::ncs::read_net(&good).unwrap();
    let conv2 = net
        .layers
        .iter_mut()
        .find(|l| l.name.starts_with("conv2"))
        .expect("the graph has a conv2 stage");
    conv2.blobs[0].data.iter_mut().for_each(|w| *w *= -40.0);
    let bad = dir.path().join("bad.graph");
    agegender::ncs::compile_to_file(&net, &Default::default(), &bad).unwrap();
    let o = run(&[
        "verify",
        TINY,
        "--weights",
        TINY_W,
        "--against",
        s(&bad),
        "--against-engine",
        "f16",
        "--input",
        PATTERN,
        "--preset",
        "mvncheck",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["pass"], false);
    let layer = v["comparisons"][0]["first_divergent_layer"]
        .as_str()
        .unwrap();
    assert!(layer.starts_with("conv2"), "first divergent layer: {layer}");
}
