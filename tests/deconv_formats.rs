//! Deconvolution through every format: a Caffe prototxt with Deconvolution layers (strided,
//! padded, grouped, dilated, rectangular, without bias) run natively and, exported as ONNX
//! ConvTranspose, by tract — an independent implementation of ONNX's ConvTranspose —
//! then imported back from ONNX and from the written prototxt + caffemodel; and the real
//! NCSDK 2 deconvolution graph through `run`, `convert` and `verify` on the CLI.

use agegender::exec::Engine;
use agegender::ir::{Net, Op, Tensor};
use agegender::model::{load_model, load_model_random};
use agegender::onnx::{self, tract_engine::TractModel, ImportOptions};
use agegender::testutil::shared;
use std::path::Path;
use std::process::Command;

const PROTOTXT: &str = r#"
name: "deconvs"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 4 dim: 5 dim: 6 } } }
layer { name: "up" type: "Deconvolution" bottom: "data" top: "up"
  convolution_param { num_output: 6 kernel_size: 4 stride: 2 pad: 1 group: 2
    weight_filler { type: "gaussian" std: 0.3 } bias_filler { type: "uniform" min: -1 max: 1 } } }
layer { name: "relu" type: "ReLU" bottom: "up" top: "up" }
layer { name: "dil" type: "Deconvolution" bottom: "up" top: "dil"
  convolution_param { num_output: 3 kernel_h: 2 kernel_w: 3 stride_h: 1 stride_w: 3 dilation: 2
    bias_term: false weight_filler { type: "xavier" } } }
layer { name: "one" type: "Deconvolution" bottom: "dil" top: "one"
  convolution_param { num_output: 2 kernel_size: 1 weight_filler { type: "xavier" } } }
"#;

fn input(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let data = (0..n)
        .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
        .collect();
    Tensor::from_vec(shape, data).unwrap()
}

fn run_native(net: &Net, x: &Tensor) -> Tensor {
    let out = Engine::new(net)
        .unwrap()
        .run([("data", x.clone())])
        .unwrap();
    out.blobs.last().unwrap().1.clone()
}

fn assert_close(got: &Tensor, want: &Tensor, tol: f32, what: &str) {
    assert_eq!(got.shape, want.shape, "{what}");
    let scale = want.data.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.data.iter().zip(&want.data).enumerate() {
        assert!(
            (g - w).abs() <= tol * scale,
            "{what}: element {i}: {g} vs {w}"
        );
    }
}

fn net() -> (tempfile::TempDir, Net) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("deconvs.prototxt");
    std::fs::write(&p, PROTOTXT).unwrap();
    let (net, filled) = load_model_random(&p, 7).unwrap();
    assert_eq!(filled, ["up", "dil", "one"]);
    (dir, net)
}

#[test]
fn caffe_deconvolution_exported_to_onnx_runs_in_tract_like_the_native_engine() {
    let (_dir, net) = net();
    let shapes = net.infer_shapes().unwrap();
    // s(H−1) + d(k−1) + 1 − 2p: 5 → 10, 6 → 12; then 10 → 9 + 2 + 1 = 12 (s 1, d 2, kh 2)
    // and 12 → 33 + 4 + 1 = 38 (s 3, d 2, kw 3)
    assert_eq!(shapes["up"], vec![2, 6, 10, 12]);
    assert_eq!(shapes["one"], vec![2, 2, 12, 38]);
    assert_eq!(net.layer("up").unwrap().blobs[0].shape, vec![4, 3, 4, 4]);
    let x = input(&[2, 4, 5, 6]);
    let native = run_native(&net, &x);
    let model = onnx::export(&net).unwrap();
    let kinds: Vec<&str> = model
        .graph
        .as_ref()
        .unwrap()
        .node
        .iter()
        .map(|n| n.op_type.as_str())
        .collect();
    assert_eq!(
        kinds,
        ["ConvTranspose", "Relu", "ConvTranspose", "ConvTranspose"]
    );
    let tract = TractModel::from_net(&net, &[]).unwrap();
    let got = tract.run(std::slice::from_ref(&x)).unwrap();
    assert_close(&got[0].1, &native, 1e-5, "tract vs native");

    // ONNX → IR gives the same layers and weights back
    let back = onnx::import_model(&model, None, &ImportOptions::default()).unwrap();
    for name in ["up", "dil", "one"] {
        let (a, b) = (net.layer(name).unwrap(), back.layer(name).unwrap());
        let (Op::Deconvolution(pa), Op::Deconvolution(pb)) = (&a.op, &b.op) else {
            panic!("{name}: {:?}", b.op)
        };
        let strip = |p: &agegender::ops::deconv::DeconvParams| {
            let mut q = p.0.clone();
            q.weight_filler = Default::default();
            q.bias_filler = Default::default();
            q
        };
        assert_eq!(strip(pa), strip(pb), "{name}");
        assert_eq!(a.blobs, b.blobs, "{name}");
    }
    assert_eq!(run_native(&back, &x), native);
}

#[test]
fn caffe_deconvolution_round_trips_through_prototxt_and_caffemodel() {
    let (dir, net) = net();
    let (proto, model) = (
        dir.path().join("out.prototxt"),
        dir.path().join("out.caffemodel"),
    );
    agegender::caffe::write_prototxt(&net, &proto).unwrap();
    agegender::caffe::write_caffemodel(&net, &model).unwrap();
    let text = std::fs::read_to_string(&proto).unwrap();
    assert_eq!(text.matches("type: \"Deconvolution\"").count(), 3, "{text}");
    let back = load_model(&proto, Some(&model)).unwrap();
    for name in ["up", "dil", "one"] {
        let (a, b) = (net.layer(name).unwrap(), back.layer(name).unwrap());
        assert_eq!(a.op, b.op, "{name}");
        assert_eq!(a.blobs, b.blobs, "{name}");
    }
    let x = input(&[2, 4, 5, 6]);
    assert_eq!(run_native(&back, &x), run_native(&net, &x));
}

#[test]
fn v1_deconvolution_layers_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("v1.prototxt");
    std::fs::write(
        &p,
        "input: \"data\" input_dim: 1 input_dim: 2 input_dim: 3 input_dim: 3\n\
         layers { name: \"d\" type: DECONVOLUTION bottom: \"data\" top: \"d\"\n\
           convolution_param { num_output: 4 kernel_size: 3 stride: 2 } }\n",
    )
    .unwrap();
    let (net, _) = load_model_random(&p, 1).unwrap();
    assert_eq!(net.layer("d").unwrap().op.caffe_type(), "Deconvolution");
    assert_eq!(net.infer_shapes().unwrap()["d"], vec![1, 4, 7, 7]);
}

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_agegender"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("spawn agegender")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn the_real_deconvolution_graph_runs_converts_and_verifies_on_the_cli() {
    let Some(g) = shared("fixtures-real/ncs-v2/matpalm-conv-deconv/graph.mv") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.npy");
    let t = input(&[1, 3, 512, 512]);
    let a = ndarray::ArrayD::from_shape_vec(
        t.shape.clone(),
        t.data.iter().map(|v| (v + 1.0) / 2.0).collect(),
    )
    .unwrap();
    ndarray_npy::write_npy(&x, &a).unwrap();
    let ok = |args: &[&str]| {
        let o = cli(args);
        assert!(
            o.status.success(),
            "agegender {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr)
        );
        o
    };
    let out = dir.path().join("run");
    ok(&[
        "run",
        s(&g),
        "--input",
        s(&x),
        "--engine",
        "f16",
        "--output-dir",
        s(&out),
    ]);
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1);
    let (onnx_path, caffe) = (dir.path().join("m.onnx"), dir.path().join("m.caffemodel"));
    ok(&["convert", s(&g), "-o", s(&onnx_path)]);
    ok(&["convert", s(&g), "-o", s(&caffe)]);
    // The Caffe export on the native engine is the reference; tract on the ONNX export and
    // the graph on the fp16 emulation must pass mvNCCheck's thresholds against it.
    let o = ok(&[
        "verify",
        s(&caffe),
        "--input",
        s(&x),
        "--against",
        s(&onnx_path),
        "--against-engine",
        "tract",
        "--against",
        s(&g),
        "--against-engine",
        "f16",
        "--preset",
        "mvncheck",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["pass"], true, "{v}");
}

/// A grouped deconvolution has no NCS stage: refused with the layer named, no file left.
#[test]
fn compiling_a_grouped_deconvolution_for_the_ncs_is_refused_naming_the_layer() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("deconvs.prototxt");
    // one image, as the NCS runs
    std::fs::write(&p, PROTOTXT.replace("dim: 2 dim: 4", "dim: 1 dim: 4")).unwrap();
    for ncsdk in ["1", "2"] {
        let g = dir.path().join(format!("d{ncsdk}.graph"));
        let o = Command::new(env!("CARGO_BIN_EXE_agegender"))
            .args(["compile", s(&p), "--random-weights", "--ncsdk", ncsdk, "-o"])
            .arg(&g)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{err}");
        assert!(err.contains("'up'") && err.contains("group 2"), "{err}");
        assert!(!g.exists(), "no half-written graph");
    }
}

const UNGROUPED: &str = r#"
name: "updown"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 9 dim: 11 } } }
layer { name: "down" type: "Convolution" bottom: "data" top: "down"
  convolution_param { num_output: 6 kernel_size: 3 stride: 2
    weight_filler { type: "gaussian" std: 0.3 } bias_filler { type: "uniform" min: -1 max: 1 } } }
layer { name: "relu" type: "ReLU" bottom: "down" top: "down" }
layer { name: "up" type: "Deconvolution" bottom: "down" top: "up"
  convolution_param { num_output: 5 kernel_size: 4 stride: 2 pad: 1
    weight_filler { type: "gaussian" std: 0.3 } bias_filler { type: "uniform" min: -1 max: 1 } } }
layer { name: "relu2" type: "ReLU" bottom: "up" top: "up" }
layer { name: "up2" type: "Deconvolution" bottom: "up" top: "up2"
  convolution_param { num_output: 3 kernel_h: 3 kernel_w: 2 stride: 1 bias_term: false
    weight_filler { type: "xavier" } } }
"#;

/// An ungrouped Deconvolution compiles for both generations as stage op 22 with the taps
/// in the device layout the real TensorFlow-compiled graphs hold (rotated 180°, HWCK);
/// reading the graph back gives the source's weights rounded to fp16, and the graph on
/// the fp16 emulation passes mvNCCheck's thresholds against the f32 source net.
#[test]
fn an_ungrouped_deconvolution_compiles_and_reads_back_for_both_generations() {
    use agegender::verify::{metrics::compare, Preset, Tolerance};
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("updown.prototxt");
    std::fs::write(&p, UNGROUPED).unwrap();
    let (src, _) = load_model_random(&p, 3).unwrap();
    let x = input(&[1, 3, 9, 11]);
    let want = run_native(&src, &x);
    assert_eq!(want.shape, [1, 3, 10, 11]);
    for ncsdk in ["1", "2"] {
        let g = dir.path().join(format!("u{ncsdk}.graph"));
        let o = Command::new(env!("CARGO_BIN_EXE_agegender"))
            .args([
                "compile",
                s(&p),
                "--random-weights",
                "--seed",
                "3",
                "--ncsdk",
                ncsdk,
                "-o",
            ])
            .arg(&g)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let lifted = agegender::ncs::read_net(&g).unwrap();
        // NCSDK 2 records carry no names: pair the deconvolutions in execution order
        let deconvs = |n: &Net| -> Vec<agegender::ir::Layer> {
            n.layers
                .iter()
                .filter(|l| matches!(l.op, Op::Deconvolution(_)))
                .cloned()
                .collect()
        };
        let (ours, theirs) = (deconvs(&src), deconvs(&lifted));
        assert_eq!(theirs.len(), 2, "NCSDK {ncsdk}");
        for (a, b) in ours.iter().zip(&theirs) {
            let name = &a.name;
            let geometry = |op: &Op| match op {
                Op::Deconvolution(d) => {
                    let c = &d.0;
                    (
                        c.num_output,
                        c.kernel,
                        c.stride,
                        c.pad,
                        c.dilation,
                        c.group,
                        c.bias_term,
                    )
                }
                other => panic!("{name} ({ncsdk}) lifted as {other:?}"),
            };
            assert_eq!(geometry(&a.op), geometry(&b.op), "{name} ({ncsdk})");
            for (wa, wb) in a.blobs.iter().zip(&b.blobs) {
                assert_eq!(wa.shape, wb.shape);
                for (va, vb) in wa.data.iter().zip(&wb.data) {
                    assert_eq!(half::f16::from_f32(*va).to_f32(), *vb, "{name} ({ncsdk})");
                }
            }
        }
        let e = agegender::exec::f16::F16Engine::new(&lifted).unwrap();
        let got = e.run([(lifted.inputs[0].name.clone(), x.clone())]).unwrap();
        let got = &got.outputs.blobs.last().unwrap().1;
        let m = compare("up2", &want, got).unwrap();
        assert!(
            Tolerance::new(Preset::Mvncheck, None).output_ok(&m),
            "NCSDK {ncsdk}: {m:?}"
        );
    }
}
