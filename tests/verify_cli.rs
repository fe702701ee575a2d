//! `agegender verify` end to end through the binary: exit codes (0 pass, 1 tolerance
//! failure, 2 bad input), the JSON report, a corrupted weight named as the first divergent
//! layer, and mismatched outputs refused.

use agegender::onnx::{self, pb::ModelProto};
use agegender::testutil::shared;
use prost::Message;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/onnx")
        .join(rel)
}

fn verify(args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_agegender"))
        .arg("verify")
        .args(args)
        .arg("--threads")
        .arg("2")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn os<T: AsRef<std::ffi::OsStr> + ?Sized>(s: &T) -> &std::ffi::OsStr {
    s.as_ref()
}

/// Multiplies element `index` of initializer `name` by `factor` and writes the model.
fn corrupt(model: &ModelProto, name: &str, index: usize, factor: f32, path: &Path) {
    let mut m = model.clone();
    let t = m
        .graph
        .as_mut()
        .unwrap()
        .initializer
        .iter_mut()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no initializer {name}"));
    if t.raw_data.is_empty() {
        t.float_data[index] *= factor;
    } else {
        let b = &mut t.raw_data[4 * index..4 * index + 4];
        let v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]) * factor;
        b.copy_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, m.encode_to_vec()).unwrap();
}

#[test]
fn onnx_model_against_itself_passes_and_reports_json() {
    let model = fixture("levi_torch/model.onnx");
    let input = fixture("levi_torch/in_data.npy");
    let (code, out, err) = verify(&[
        os(&model),
        os("--against"),
        os(&model),
        os("--against-engine"),
        os("tract"),
        os("--input"),
        os(&input),
        os("--json"),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["pass"], true);
    let c = &j["comparisons"][0];
    assert!(c["reference"].as_str().unwrap().ends_with("[native]"));
    assert!(c["candidate"].as_str().unwrap().ends_with("[tract]"));
    let names: Vec<&str> = c["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["fc8", "prob"]);
    for key in [
        "max_abs",
        "max_rel",
        "mean_rel",
        "rms_rel",
        "outlier_share",
        "top1_agreement",
        "top5_overlap",
    ] {
        assert!(c["outputs"][0][key].is_number(), "{key}");
    }
    assert!(c["first_divergent_layer"].is_null());
    // Intermediate tensors matched by name (the native side imports the same file).
    assert!(c["intermediates"].as_array().unwrap().len() >= 15);
}

#[test]
fn corrupted_onnx_weight_fails_and_names_the_layer() {
    let dir = tempfile::tempdir().unwrap();
    let model_path = fixture("levi_torch/model.onnx");
    let model = onnx::import::read_model(&model_path).unwrap();
    let bad = dir.path().join("bad.onnx");
    corrupt(&model, "conv2.weight", 7, 50.0, &bad);
    let input = fixture("levi_torch/in_data.npy");
    let (code, out, err) = verify(&[
        os(&model_path),
        os("--against"),
        os(&bad),
        os("--input"),
        os(&input),
        os("--json"),
    ]);
    assert_eq!(code, 1, "{out}{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["pass"], false);
    assert_eq!(j["comparisons"][0]["first_divergent_layer"], "/conv2/Conv");
    // The layers before it still agree exactly.
    let inter = j["comparisons"][0]["intermediates"].as_array().unwrap();
    let norm1 = inter
        .iter()
        .find(|m| m["name"] == "/norm/LRN_output_0")
        .unwrap();
    assert_eq!(norm1["max_abs"], 0.0);
}

#[test]
fn corrupted_export_of_a_caffe_model_names_the_caffe_layer() {
    let Some(root) = shared("fixtures-real/caffe-oracle/levi_mini") else {
        return;
    };
    let proto = root.join("deploy.prototxt");
    let weights = root.join("levi_mini_init_iter_0.caffemodel");
    let net =
        agegender::caffe::load_net(&proto, Some(&weights), agegender::ir::Phase::Test).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("levi_mini.onnx");
    onnx::write_onnx(&net, &good).unwrap();
    let bad = dir.path().join("bad.onnx");
    corrupt(
        &onnx::import::read_model(&good).unwrap(),
        "conv3/weight",
        100,
        -40.0,
        &bad,
    );
    let input = dir.path().join("input.npy");
    let raw = std::fs::read(root.join("forward/input_data.f32")).unwrap();
    let t = agegender::ir::Tensor::from_vec(
        &[3, 3, 227, 227],
        raw.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
    .unwrap();
    agegender::io::npy::write_npy(&input, &t).unwrap();
    let base = [
        os(&proto),
        os("--weights"),
        os(&weights),
        os("--input"),
        os(&input),
        os("--json"),
    ];
    // The intact export passes (native Caffe vs tract and vs re-imported native).
    let mut args = base.to_vec();
    args.extend([
        os("--against"),
        os(&good),
        os("--against-engine"),
        os("tract"),
    ]);
    args.extend([os("--against"), os(&good)]);
    let (code, out, err) = verify(&args);
    assert_eq!(code, 0, "{out}{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["comparisons"].as_array().unwrap().len(), 2);
    // Each --against-engine applies to the --against before it.
    assert!(j["comparisons"][0]["candidate"]
        .as_str()
        .unwrap()
        .ends_with("[tract]"));
    assert!(j["comparisons"][1]["candidate"]
        .as_str()
        .unwrap()
        .ends_with("[native]"));
    // The corrupted one fails at conv3, for both engines.
    for engine in ["tract", "native"] {
        let mut args = base.to_vec();
        args.extend([
            os("--against"),
            os(&bad),
            os("--against-engine"),
            os(engine),
        ]);
        let (code, out, err) = verify(&args);
        assert_eq!(code, 1, "{engine}: {out}{err}");
        let j: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            j["comparisons"][0]["first_divergent_layer"], "conv3",
            "{engine}"
        );
    }
    // Without --against: the Caffe model vs its own export in tract (strict), and vs its
    // compiled NCS graph on the fp16 emulation, judged by mvNCCheck's rule: fp16 differs
    // from f32 (so the strict bound would fail) but stays within 2 % of max|ref|.
    let (code, out, err) = verify(&base);
    assert_eq!(code, 0, "{out}{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    let comparisons = j["comparisons"].as_array().unwrap();
    assert_eq!(comparisons.len(), 2, "{out}");
    assert!(comparisons[0]["candidate"]
        .as_str()
        .unwrap()
        .contains("tract"));
    assert_eq!(comparisons[0]["tolerance"]["preset"], "strict");
    let f16 = &comparisons[1];
    assert!(f16["candidate"].as_str().unwrap().contains("f16"), "{f16}");
    assert_eq!(f16["tolerance"]["preset"], "mvncheck");
    assert_eq!(f16["pass"], true);
    let prob = &f16["outputs"][0];
    let max_rel = prob["max_rel"].as_f64().unwrap();
    assert!(max_rel > 1e-5 && max_rel < 0.02, "{prob}");
    assert_eq!(prob["top1_agreement"], 1.0);
}

#[test]
fn mismatched_outputs_and_bad_files_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let model_path = fixture("levi_torch/model.onnx");
    let input = fixture("levi_torch/in_data.npy");
    let mut m = onnx::import::read_model(&model_path).unwrap();
    let g = m.graph.as_mut().unwrap();
    g.output.retain(|o| o.name != "fc8");
    let other = dir.path().join("one_output.onnx");
    std::fs::write(&other, m.encode_to_vec()).unwrap();
    let (code, out, err) = verify(&[
        os(&model_path),
        os("--against"),
        os(&other),
        os("--input"),
        os(&input),
    ]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("outputs differ") && err.contains("fc8"),
        "{err}"
    );

    let cut = dir.path().join("cut.onnx");
    let bytes = std::fs::read(&model_path).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
    let (code, _, err) = verify(&[os(&cut), os("--input"), os(&input)]);
    assert_eq!(code, 2);
    assert!(
        err.contains("cut.onnx") && err.contains("not a valid ONNX model"),
        "{err}"
    );

    // An input that does not fit the model.
    let wrong = fixture("torch_avgpool/in_data.npy");
    let (code, _, err) = verify(&[os(&model_path), os("--input"), os(&wrong)]);
    assert_eq!(code, 2);
    assert!(err.contains("does not fit"), "{err}");

    // --against-weights before any --against.
    let (code, _, err) = verify(&[
        os(&model_path),
        os("--against-weights"),
        os("w.caffemodel"),
        os("--input"),
        os(&input),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("must follow the --against"), "{err}");
}

#[test]
fn images_are_resized_and_mean_subtracted() {
    let Some(data) = shared("data/utkface-asian") else {
        return;
    };
    let Some(root) = shared("fixtures-real/caffe-oracle/levi_mini") else {
        return;
    };
    let image = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .min()
        .unwrap();
    let (code, out, err) = verify(&[
        os(&root.join("deploy.prototxt")),
        os("--weights"),
        os(&root.join("levi_mini_init_iter_0.caffemodel")),
        os("--input"),
        os(&image),
        os("--mean"),
        os(&root.parent().unwrap().join("mean.binaryproto")),
        os("--preset"),
        os("mvncheck"),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Mvncheck") && out.contains("PASS"), "{out}");
}

/// A net the NCS compiler refuses (a Reshape, which mvNCCompile lacks) is still verified
/// against its ONNX export; the report says why no graph was checked.
#[test]
fn a_net_the_ncs_cannot_run_gets_a_note_instead_of_a_graph_comparison() {
    let dir = tempfile::tempdir().unwrap();
    let proto = dir.path().join("reshape.prototxt");
    std::fs::write(
        &proto,
        "name: \"r\"\nlayer { name: \"data\" type: \"Input\" top: \"data\"\n  \
         input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }\n\
         layer { name: \"conv\" type: \"Convolution\" bottom: \"data\" top: \"conv\"\n  \
         convolution_param { num_output: 4 kernel_size: 3 } }\n\
         layer { name: \"flat\" type: \"Reshape\" bottom: \"conv\" top: \"flat\"\n  \
         reshape_param { shape { dim: 0 dim: -1 } } }\n\
         layer { name: \"fc\" type: \"InnerProduct\" bottom: \"flat\" top: \"fc\"\n  \
         inner_product_param { num_output: 3 } }\n\
         layer { name: \"prob\" type: \"Softmax\" bottom: \"fc\" top: \"prob\" }\n",
    )
    .unwrap();
    let mut net = agegender::caffe::load_net(&proto, None, agegender::ir::Phase::Test).unwrap();
    agegender::caffe::fill_missing_weights_random(&mut net, 7).unwrap();
    let weights = dir.path().join("reshape.caffemodel");
    agegender::caffe::write_caffemodel(&net, &weights).unwrap();
    let input = dir.path().join("x.npy");
    let x: Vec<f32> = (0..192).map(|i| ((i * 37) % 17) as f32 - 8.0).collect();
    agegender::io::npy::write_npy(
        &input,
        &agegender::ir::Tensor::from_vec(&[1, 3, 8, 8], x).unwrap(),
    )
    .unwrap();
    let (code, out, err) = verify(&[
        os(&proto),
        os("--weights"),
        os(&weights),
        os("--input"),
        os(&input),
        os("--json"),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["comparisons"].as_array().unwrap().len(), 1, "{out}");
    let note = j["notes"][0].as_str().unwrap();
    assert!(
        note.contains("NCS graph not checked") && note.contains("flat"),
        "{note}"
    );
}
