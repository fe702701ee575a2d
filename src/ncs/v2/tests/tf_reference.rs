//! The real TensorFlow-compiled graphs run on our fp16 emulation against the frozen
//! TensorFlow model, computed here without TensorFlow: the constants are read from
//! `graph.frozen.pb` (a GraphDef protobuf; field numbers from TensorFlow's graph.proto,
//! node_def.proto, attr_value.proto, tensor.proto and tensor_shape.proto) and the model
//! (conv 3×3 stride 2 + ReLU → flatten → dense 1 → sigmoid, described in each fixture's
//! ORIGIN.md) is evaluated in f32 by direct loops, with TensorFlow's padding rules: VALID
//! reads no padding; SAME pads `(⌈H/s⌉ − 1)·s + k − H` in total, the odd pixel at the end.

use super::real_v2;
use crate::testutil::shared;
use prost::Message;
use std::collections::HashMap;
use std::path::PathBuf;

#[derive(Clone, PartialEq, Message)]
pub(super) struct GraphDef {
    #[prost(message, repeated, tag = "1")]
    node: Vec<NodeDef>,
}

#[derive(Clone, PartialEq, Message)]
struct NodeDef {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    op: String,
    #[prost(map = "string, message", tag = "5")]
    attr: HashMap<String, AttrValue>,
}

#[derive(Clone, PartialEq, Message)]
struct AttrValue {
    #[prost(message, optional, tag = "8")]
    tensor: Option<TensorProto>,
}

#[derive(Clone, PartialEq, Message)]
struct TensorProto {
    #[prost(int32, tag = "1")]
    dtype: i32,
    #[prost(message, optional, tag = "2")]
    tensor_shape: Option<TensorShapeProto>,
    #[prost(bytes = "vec", tag = "4")]
    tensor_content: Vec<u8>,
    #[prost(float, repeated, tag = "5")]
    float_val: Vec<f32>,
}

#[derive(Clone, PartialEq, Message)]
struct TensorShapeProto {
    #[prost(message, repeated, tag = "2")]
    dim: Vec<Dim>,
}

#[derive(Clone, PartialEq, Message)]
struct Dim {
    #[prost(int64, tag = "1")]
    size: i64,
}

/// The f32 constant named `name` (DT_FLOAT = 1), flattened in TensorFlow's row-major order,
/// with its shape.
pub(super) fn constant(g: &GraphDef, name: &str) -> (Vec<usize>, Vec<f32>) {
    let n = g
        .node
        .iter()
        .find(|n| n.name == name && n.op == "Const")
        .unwrap();
    let t = n.attr["value"].tensor.as_ref().unwrap();
    assert_eq!(t.dtype, 1, "{name} is not DT_FLOAT");
    let shape: Vec<usize> = t
        .tensor_shape
        .as_ref()
        .unwrap()
        .dim
        .iter()
        .map(|d| d.size as usize)
        .collect();
    let count: usize = shape.iter().product();
    let v: Vec<f32> = if !t.tensor_content.is_empty() {
        t.tensor_content
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    } else {
        vec![t.float_val[0]; count]
    };
    assert_eq!(v.len(), count, "{name}");
    (shape, v)
}

/// TensorFlow's conv2d (NHWC input `px`, HWIO kernel `k`, bias `b`), stride `s`, VALID or
/// SAME padding, followed by ReLU, flattened in (h, w, c) order.
fn tf_conv_relu(
    px: &dyn Fn(usize, usize, usize) -> f32,
    hw: usize,
    k: &[f32],
    kshape: &[usize],
    b: &[f32],
    s: usize,
    same: bool,
) -> Vec<f32> {
    let (kh, kw, cin, cout) = (kshape[0], kshape[1], kshape[2], kshape[3]);
    let (out, pad_begin) = if same {
        let out = hw.div_ceil(s);
        let total = ((out - 1) * s + kh).saturating_sub(hw);
        (out, total / 2)
    } else {
        ((hw - kh) / s + 1, 0)
    };
    let mut flat = Vec::with_capacity(out * out * cout);
    for oy in 0..out {
        for ox in 0..out {
            for co in 0..cout {
                let mut acc = b[co];
                for ky in 0..kh {
                    for kx in 0..kw {
                        let (iy, ix) = (
                            (oy * s + ky) as i64 - pad_begin as i64,
                            (ox * s + kx) as i64 - pad_begin as i64,
                        );
                        if iy < 0 || ix < 0 || iy >= hw as i64 || ix >= hw as i64 {
                            continue;
                        }
                        for c in 0..cin {
                            acc += px(iy as usize, ix as usize, c)
                                * k[((ky * kw + kx) * cin + c) * cout + co];
                        }
                    }
                }
                flat.push(acc.max(0.0));
            }
        }
    }
    flat
}

/// Runs `graph` on our fp16 emulation for eight seeded images and compares the sigmoid
/// output with the frozen model in `pb` (conv `e1` → dense `fully_connected` → sigmoid),
/// asserting the mvncheck preset.
fn check_conv_dense_sigmoid(pb: PathBuf, graph: PathBuf, hw: usize, same: bool) {
    let g = GraphDef::decode(std::fs::read(pb).unwrap().as_slice()).unwrap();
    let (ks, k) = constant(&g, "e1/weights"); // HWIO
    let (_, b1) = constant(&g, "e1/biases");
    let (ws, w) = constant(&g, "fully_connected/weights"); // (flat, 1)
    let (_, b2) = constant(&g, "fully_connected/biases");
    assert_eq!((ks[0], ks[1], ks[2], ws[1]), (3, 3, 3, 1));
    let net = crate::ncs::read_net(&graph).unwrap();
    let e = crate::exec::f16::F16Engine::new(&net).unwrap();
    let input = e.engine().inputs()[0].0.to_string();
    let tol = crate::verify::Tolerance::new(crate::verify::Preset::Mvncheck, None);
    let mut refs = Vec::new();
    let mut ours = Vec::new();
    for seed in 0..8u64 {
        // an NHWC image in [0, 1]
        let px = |y: usize, x: usize, c: usize| {
            let h = (seed * 7919 + (y * hw + x) as u64 * 31 + c as u64 * 17) % 1009;
            h as f32 / 1008.0
        };
        let flat = tf_conv_relu(&px, hw, &k, &ks, &b1, 2, same);
        assert_eq!(flat.len(), ws[0]);
        let z: f32 = flat.iter().zip(&w).map(|(a, b)| a * b).sum::<f32>() + b2[0];
        refs.push(1.0 / (1.0 + (-z).exp()));
        // our fp16 emulation of Intel's graph, NCHW input
        let mut x = vec![0.0f32; 3 * hw * hw];
        for c in 0..3 {
            for y in 0..hw {
                for xx in 0..hw {
                    x[(c * hw + y) * hw + xx] = px(y, xx, c);
                }
            }
        }
        let t = crate::ir::Tensor::from_vec(&[1, 3, hw, hw], x).unwrap();
        let out = e.run([(input.clone(), t)]).unwrap();
        let v = &out.outputs.blobs.last().unwrap().1;
        assert_eq!(v.data.len(), 1);
        ours.push(v.data[0]);
    }
    let a = crate::ir::Tensor::from_vec(&[8, 1], refs).unwrap();
    let b = crate::ir::Tensor::from_vec(&[8, 1], ours).unwrap();
    let m = crate::verify::metrics::compare("output", &a, &b).unwrap();
    assert!(
        tol.output_ok(&m),
        "{m:?}\nTF {:?}\nours {:?}",
        a.data,
        b.data
    );
}

#[test]
fn the_real_tf_graph_in_f16_matches_the_frozen_model_within_mvncheck() {
    let (Some(pb), Some(graph)) = (
        real_v2("matpalm-conv1-valid", "graph.frozen.pb"),
        real_v2("matpalm-conv1-valid", "graph.mv"),
    ) else {
        return;
    };
    check_conv_dense_sigmoid(pb, graph, 64, false);
}

/// matpalm-conv8: SAME padding of one pixel at the end of each axis (64 → 32, stride 2),
/// which the IR holds as an asymmetric convolution padding.
#[test]
fn the_real_tf_same_padded_graph_matches_the_frozen_model_within_mvncheck() {
    let (Some(pb), Some(graph)) = (
        real_v2("matpalm-conv8", "graph.frozen.pb"),
        real_v2("matpalm-conv8", "graph.mv"),
    ) else {
        return;
    };
    check_conv_dense_sigmoid(pb, graph, 64, true);
}

/// The NCSDK 1 graph of the same pipeline with six filters (mp-conv6-fc-sigmoid).
#[test]
fn the_real_ncsdk1_tf_same_padded_graph_matches_the_frozen_model_within_mvncheck() {
    let (Some(pb), Some(graph)) = (
        shared("fixtures-real/ncs/mp-conv6-fc-sigmoid/graph.frozen.pb"),
        shared("fixtures-real/ncs/mp-conv6-fc-sigmoid/graph.mv"),
    ) else {
        return;
    };
    check_conv_dense_sigmoid(pb, graph, 64, true);
}
