//! ONNX export/import against the generated fixtures in `fixtures/onnx/` (see
//! `tools/make_onnx_fixtures.py`): expected outputs come from a numpy implementation of
//! Caffe's layers, from PyTorch, or from onnxruntime — never from this crate.

use agegender::ir::{InputSpec, Layer, Net, Op, Tensor};
use agegender::onnx::tract_engine::TractModel;
use agegender::onnx::{self, ImportOptions, OnnxError};
use agegender::ops::activation::{PReluParams, ReluParams};
use agegender::ops::batchnorm::{BatchNormParams, ScaleParams};
use agegender::ops::concat::ConcatParams;
use agegender::ops::conv::ConvParams;
use agegender::ops::eltwise::{EltwiseOp, EltwiseParams};
use agegender::ops::inner_product::InnerProductParams;
use agegender::ops::lrn::{LrnParams, NormRegion};
use agegender::ops::pool::{PoolMethod, PoolParams, RoundMode};
use agegender::ops::reshape::{FlattenParams, ReshapeParams};
use agegender::ops::softmax::SoftmaxParams;
use prost::Message;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/onnx")
        .join(case)
}

fn npy(path: &Path) -> Tensor {
    let a: ndarray::ArrayD<f32> =
        ndarray_npy::read_npy(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Tensor {
        shape: a.shape().to_vec(),
        data: a.iter().copied().collect(),
    }
}

/// The `out_<name>.npy` files of a case, by name.
fn expected(case: &str) -> Vec<(String, Tensor)> {
    let dir = fixture(case);
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().into_string().unwrap();
            let name = n.strip_prefix("out_")?.strip_suffix(".npy")?.to_string();
            Some((name.clone(), npy(&dir.join(n))))
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Strict: max|got − ref| ≤ 1e-4 · max(1, max|ref|).
fn assert_close(name: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.shape, want.shape, "{name}: shape");
    let scale = want.max_abs().max(1.0);
    let diff = got
        .data
        .iter()
        .zip(&want.data)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        diff <= 1e-4 * scale,
        "{name}: max|diff| {diff} > 1e-4 × {scale}"
    );
}

fn layer(name: &str, op: Op, bottoms: &[&str], blobs: Vec<Tensor>) -> Layer {
    let mut l = Layer::new(
        name,
        op,
        bottoms.iter().map(|s| s.to_string()).collect(),
        vec![name.to_string()],
    );
    l.blobs = blobs;
    l
}

fn input_net(name: &str, shape: &[usize], layers: Vec<Layer>) -> Net {
    Net {
        name: name.into(),
        inputs: vec![InputSpec {
            name: "data".into(),
            shape: shape.to_vec(),
        }],
        layers,
        ..Default::default()
    }
}

fn pool(method: PoolMethod, k: usize, s: usize, p: usize, round: RoundMode) -> Op {
    Op::Pooling(PoolParams {
        method,
        kernel: [k, k],
        stride: [s, s],
        pad: [p, p],
        global: false,
        round,
    })
}

/// The nets of `caffe_pool`: every Caffe pooling corner case (ceil overhang, clip rule,
/// floor, global).
fn caffe_pool_net() -> Net {
    use PoolMethod::{Ave, Max};
    use RoundMode::{Ceil, Floor};
    let global = |method| {
        Op::Pooling(PoolParams {
            method,
            global: true,
            ..Default::default()
        })
    };
    input_net(
        "caffe_pool",
        &[2, 3, 8, 8],
        vec![
            layer("pool_max_p1", pool(Max, 3, 2, 1, Ceil), &["data"], vec![]),
            layer("pool_ave_p1", pool(Ave, 3, 2, 1, Ceil), &["data"], vec![]),
            layer("pool_ave_p0", pool(Ave, 3, 2, 0, Ceil), &["data"], vec![]),
            layer(
                "pool_ave_floor",
                pool(Ave, 2, 2, 1, Floor),
                &["data"],
                vec![],
            ),
            layer("pool_global_ave", global(Ave), &["data"], vec![]),
            layer("pool_global_max", global(Max), &["data"], vec![]),
            layer(
                "pool_max_clip",
                pool(Max, 3, 3, 2, Ceil),
                &["pool_ave_p0"],
                vec![],
            ),
            layer(
                "pool_ave_clip",
                pool(Ave, 3, 3, 2, Ceil),
                &["pool_ave_p0"],
                vec![],
            ),
        ],
    )
}

fn caffe_lrn_net() -> Net {
    let lrn = |n, alpha, beta, k, region| {
        Op::Lrn(LrnParams {
            local_size: n,
            alpha,
            beta,
            k,
            region,
        })
    };
    input_net(
        "caffe_lrn",
        &[2, 6, 5, 5],
        vec![
            layer(
                "lrn_across",
                lrn(5, 0.5, 0.75, 2.0, NormRegion::AcrossChannels),
                &["data"],
                vec![],
            ),
            layer(
                "lrn_within",
                lrn(3, 0.6, 0.75, 1.0, NormRegion::WithinChannel),
                &["data"],
                vec![],
            ),
            layer(
                "lrn_within2",
                lrn(5, 2.0, 0.5, 1.0, NormRegion::WithinChannel),
                &["lrn_across"],
                vec![],
            ),
        ],
    )
}

fn caffe_mix_net() -> Net {
    let dir = fixture("caffe_mix");
    let p = |layer: &str, n: usize| -> Vec<Tensor> {
        (0..n)
            .map(|i| npy(&dir.join(format!("param_{layer}_{i}.npy"))))
            .collect()
    };
    let conv = |num_output, pad, dilation, group| {
        Op::Convolution(ConvParams {
            num_output,
            kernel: [3, 3],
            pad: [pad, pad],
            dilation: [dilation, dilation],
            group,
            ..Default::default()
        })
    };
    let ip = |num_output, axis, transpose| {
        Op::InnerProduct(InnerProductParams {
            num_output,
            axis,
            transpose,
            ..Default::default()
        })
    };
    let elt = |op, coeffs: Vec<f32>| Op::Eltwise(EltwiseParams { op, coeffs });
    input_net(
        "caffe_mix",
        &[2, 4, 6, 6],
        vec![
            layer("conv1", conv(6, 1, 1, 2), &["data"], p("conv1", 2)),
            layer(
                "prelu1",
                Op::PRelu(PReluParams::default()),
                &["conv1"],
                p("prelu1", 1),
            ),
            layer("conv_d", conv(4, 2, 2, 1), &["prelu1"], p("conv_d", 2)),
            layer(
                "bn",
                Op::BatchNorm(BatchNormParams::default()),
                &["conv_d"],
                p("bn", 3),
            ),
            layer(
                "scale",
                Op::Scale(ScaleParams {
                    bias_term: true,
                    ..Default::default()
                }),
                &["bn"],
                p("scale", 2),
            ),
            layer(
                "leaky",
                Op::Relu(ReluParams {
                    negative_slope: 0.1,
                }),
                &["scale"],
                vec![],
            ),
            layer("sig", Op::Sigmoid, &["conv_d"], vec![]),
            layer("tanh", Op::TanH, &["conv_d"], vec![]),
            layer(
                "elt_sum",
                elt(EltwiseOp::Sum, vec![0.5, -2.0]),
                &["leaky", "conv_d"],
                vec![],
            ),
            layer(
                "elt_prod",
                elt(EltwiseOp::Prod, vec![]),
                &["leaky", "sig", "tanh"],
                vec![],
            ),
            layer(
                "elt_max",
                elt(EltwiseOp::Max, vec![]),
                &["sig", "tanh", "leaky"],
                vec![],
            ),
            layer(
                "concat",
                Op::Concat(ConcatParams::default()),
                &["elt_sum", "elt_prod", "elt_max"],
                vec![],
            ),
            layer(
                "pool",
                pool(PoolMethod::Max, 2, 2, 0, RoundMode::Ceil),
                &["concat"],
                vec![],
            ),
            layer("ip1", ip(10, 1, false), &["pool"], p("ip1", 2)),
            layer("ip_t", ip(5, 1, true), &["ip1"], p("ip_t", 2)),
            layer(
                "prob",
                Op::Softmax(SoftmaxParams::default()),
                &["ip_t"],
                vec![],
            ),
            layer("ip_axis2", ip(7, 2, false), &["pool"], p("ip_axis2", 2)),
            layer(
                "flat",
                Op::Flatten(FlattenParams::default()),
                &["ip_axis2"],
                vec![],
            ),
            layer(
                "resh",
                Op::Reshape(ReshapeParams {
                    dims: vec![0, -1, 4],
                    ..Default::default()
                }),
                &["pool"],
                vec![],
            ),
            layer(
                "prob_r",
                Op::Softmax(SoftmaxParams { axis: 2 }),
                &["resh"],
                vec![],
            ),
        ],
    )
}

fn caffe_cases() -> Vec<(&'static str, Net)> {
    vec![
        ("caffe_pool", caffe_pool_net()),
        ("caffe_lrn", caffe_lrn_net()),
        ("caffe_mix", caffe_mix_net()),
    ]
}

/// Runs an ONNX model in tract with every expected tensor exposed and compares.
fn check_with_tract(case: &str, model: &onnx::pb::ModelProto, dir: Option<&Path>) {
    let exp = expected(case);
    let names: Vec<String> = exp.iter().map(|(n, _)| n.clone()).collect();
    let input = npy(&fixture(case).join("in_data.npy"));
    let shapes = HashMap::from([("data".to_string(), input.shape.clone())]);
    let m = TractModel::from_proto(model, dir, &shapes, &names)
        .unwrap_or_else(|e| panic!("{case}: {e}"));
    let out: HashMap<String, Tensor> = m.run(&[input]).unwrap().into_iter().collect();
    for (name, want) in &exp {
        assert_close(&format!("{case}/{name}"), &out[name], want);
    }
}

#[test]
fn caffe_semantics_survive_export_to_tract() {
    for (case, net) in caffe_cases() {
        let model = onnx::export(&net).unwrap();
        check_with_tract(case, &model, None);
    }
}

/// Layer equality up to what ONNX cannot carry: fillers and training settings are not
/// exported, and BatchNorm statistics come back already divided by Caffe's scale factor.
fn assert_same_net(a: &Net, b: &Net) {
    assert_eq!(a.inputs, b.inputs);
    assert_eq!(a.layers.len(), b.layers.len(), "layer count");
    for (x, y) in a.layers.iter().zip(&b.layers) {
        assert_eq!(
            (&x.name, &x.bottoms, &x.tops, &x.caffe_tops),
            (&y.name, &y.bottoms, &y.tops, &y.caffe_tops)
        );
        match (&x.op, &y.op) {
            (Op::BatchNorm(p), Op::BatchNorm(q)) => {
                assert_eq!(p.eps, q.eps);
                let f = x.blobs[2].data[0];
                for i in 0..2 {
                    let scaled: Vec<f32> = x.blobs[i].data.iter().map(|v| v * (1.0 / f)).collect();
                    assert_eq!(scaled, y.blobs[i].data, "{}: blob {i}", x.name);
                }
                assert_eq!(y.blobs[2].data, vec![1.0]);
            }
            _ => {
                assert_eq!(x.op, y.op, "{}", x.name);
                assert_eq!(x.blobs, y.blobs, "{}", x.name);
            }
        }
    }
}

#[test]
fn export_then_import_gives_the_same_net() {
    for (case, net) in caffe_cases() {
        let model = onnx::export(&net).unwrap();
        let back = onnx::import_model(&model, None, &ImportOptions::default())
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_same_net(&net, &back);
        // A second trip is byte-identical: nothing is lost or renamed after the first.
        let again = onnx::export(&back).unwrap();
        let third = onnx::import_model(&again, None, &ImportOptions::default()).unwrap();
        assert_eq!(
            onnx::export(&third).unwrap().encode_to_vec(),
            again.encode_to_vec(),
            "{case}"
        );
    }
}

/// Runs `tools/check_onnx.py` when python3 with onnx and onnxruntime is available.
fn python_checker() -> Option<PathBuf> {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import onnx, onnxruntime"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("SKIP: python3 with onnx and onnxruntime is not available; the independent onnxruntime check did not run");
        return None;
    }
    Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/check_onnx.py"))
}

#[test]
fn exports_pass_the_onnx_checker_and_onnxruntime() {
    let Some(script) = python_checker() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for (case, net) in caffe_cases() {
        let path = dir.path().join(format!("{case}.onnx"));
        onnx::write_onnx(&net, &path).unwrap();
        let out = std::process::Command::new("python3")
            .arg(&script)
            .arg(&path)
            .arg(fixture(case))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{case}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn levi_shapes() -> ImportOptions {
    ImportOptions {
        input_shapes: HashMap::from([("data".to_string(), vec![1, 3, 227, 227])]),
    }
}

#[test]
fn pytorch_export_needs_its_dynamic_batch_fixed() {
    let path = fixture("levi_torch").join("model.onnx");
    let e = onnx::import(&path).unwrap_err();
    assert!(
        matches!(&e, OnnxError::InFile { source, .. } if matches!(**source, OnnxError::DynamicInput { .. })),
        "{e}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("'data'") && msg.contains("batchx3x227x227"),
        "{msg}"
    );
}

#[test]
fn pytorch_levi_hassner_imports_and_matches_pytorch() {
    let path = fixture("levi_torch").join("model.onnx");
    let net = onnx::import_with(&path, &levi_shapes()).unwrap();
    let kinds: Vec<&str> = net.layers.iter().map(|l| l.op.caffe_type()).collect();
    assert_eq!(
        kinds,
        [
            "Convolution",
            "ReLU",
            "Pooling",
            "LRN",
            "Convolution",
            "ReLU",
            "Pooling",
            "LRN",
            "Convolution",
            "ReLU",
            "Pooling",
            "Flatten",
            "InnerProduct",
            "ReLU",
            "InnerProduct",
            "ReLU",
            "InnerProduct",
            "Softmax"
        ]
    );
    // Caffe's geometry: 227 → 56 → 28 → 14 → 7, so fc6 takes 24·7·7 inputs.
    let shapes = net.infer_shapes().unwrap();
    assert_eq!(shapes["/pool_2/MaxPool_output_0"], vec![1, 24, 7, 7]);
    // The imported net, exported again and run by tract, reproduces PyTorch.
    check_with_tract("levi_torch", &onnx::export(&net).unwrap(), None);
    // And the original file runs in tract too.
    let model = onnx::import::read_model(&path).unwrap();
    check_with_tract("levi_torch", &model, path.parent());
}

#[test]
fn pytorch_avgpool_ceil_mode_maps_to_caffe_pooling() {
    for case in ["torch_avgpool", "torch_avgpool_external"] {
        let path = fixture(case).join("model.onnx");
        let opts = ImportOptions {
            input_shapes: HashMap::from([("data".to_string(), vec![2, 3, 8, 8])]),
        };
        let net = onnx::import_with(&path, &opts).unwrap_or_else(|e| panic!("{case}: {e}"));
        let pools: Vec<&PoolParams> = net
            .layers
            .iter()
            .filter_map(|l| match &l.op {
                Op::Pooling(p) => Some(p),
                _ => None,
            })
            .collect();
        assert_eq!(pools.len(), 3);
        assert_eq!((pools[0].pad, pools[0].round), ([1, 1], RoundMode::Ceil));
        assert!(pools[2].global);
        check_with_tract("torch_avgpool", &onnx::export(&net).unwrap(), None);
    }
    // External data gives the same weights as the inline file.
    let a = onnx::import_with(
        &fixture("torch_avgpool").join("model.onnx"),
        &ImportOptions {
            input_shapes: HashMap::from([("data".to_string(), vec![2, 3, 8, 8])]),
        },
    )
    .unwrap();
    let b = onnx::import_with(
        &fixture("torch_avgpool_external").join("model.onnx"),
        &ImportOptions {
            input_shapes: HashMap::from([("data".to_string(), vec![2, 3, 8, 8])]),
        },
    )
    .unwrap();
    assert_eq!(a.layers, b.layers);
}

#[test]
fn onnx_helper_graph_imports_and_matches_onnxruntime() {
    let path = fixture("helper_ops").join("model.onnx");
    let net = onnx::import(&path).unwrap();
    let kinds: Vec<&str> = net.layers.iter().map(|l| l.op.caffe_type()).collect();
    assert!(
        kinds.contains(&"BatchNorm") && kinds.contains(&"Scale") && kinds.contains(&"PReLU"),
        "{kinds:?}"
    );
    check_with_tract("helper_ops", &onnx::export(&net).unwrap(), None);
}
