//! The real TensorFlow-compiled NCSDK 2 graph `matpalm-conv1-valid` run on our fp16
//! emulation against the frozen TensorFlow model, computed here without TensorFlow: the
//! constants are read from `graph.frozen.pb` (a GraphDef protobuf; field numbers from
//! TensorFlow's graph.proto, node_def.proto, attr_value.proto, tensor.proto and
//! tensor_shape.proto) and the model (conv 3×3 stride 2 VALID + ReLU → flatten → dense 1 →
//! sigmoid, described in the fixture's ORIGIN.md) is evaluated in f32 by direct loops.

use super::real_v2;
use prost::Message;
use std::collections::HashMap;

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

#[test]
fn the_real_tf_graph_in_f16_matches_the_frozen_model_within_mvncheck() {
    let (Some(pb), Some(graph)) = (
        real_v2("matpalm-conv1-valid", "graph.frozen.pb"),
        real_v2("matpalm-conv1-valid", "graph.mv"),
    ) else {
        return;
    };
    let g = GraphDef::decode(std::fs::read(pb).unwrap().as_slice()).unwrap();
    let (ks, k) = constant(&g, "e1/weights"); // HWIO
    let (_, b1) = constant(&g, "e1/biases");
    let (ws, w) = constant(&g, "fully_connected/weights"); // (961, 1)
    let (_, b2) = constant(&g, "fully_connected/biases");
    assert_eq!(
        (ks.as_slice(), ws.as_slice()),
        (&[3, 3, 3, 1][..], &[961, 1][..])
    );
    let net = crate::ncs::read_net(&graph).unwrap();
    let e = crate::exec::f16::F16Engine::new(&net).unwrap();
    let input = e.engine().inputs()[0].0.to_string();
    let tol = crate::verify::Tolerance::new(crate::verify::Preset::Mvncheck, None);
    let mut refs = Vec::new();
    let mut ours = Vec::new();
    for seed in 0..8u64 {
        // an NHWC image in [0, 1]
        let px = |y: usize, x: usize, c: usize| {
            let h = (seed * 7919 + (y * 64 + x) as u64 * 31 + c as u64 * 17) % 1009;
            h as f32 / 1008.0
        };
        // TensorFlow: conv VALID stride 2 → 31×31×1, ReLU, flatten (h, w, c), dense, sigmoid
        let mut flat = Vec::with_capacity(961);
        for oy in 0..31 {
            for ox in 0..31 {
                let mut acc = b1[0];
                for ky in 0..3 {
                    for kx in 0..3 {
                        for c in 0..3 {
                            acc += px(2 * oy + ky, 2 * ox + kx, c) * k[(ky * 3 + kx) * 3 + c];
                        }
                    }
                }
                flat.push(acc.max(0.0));
            }
        }
        let z: f32 = flat.iter().zip(&w).map(|(a, b)| a * b).sum::<f32>() + b2[0];
        refs.push(1.0 / (1.0 + (-z).exp()));
        // our fp16 emulation of Intel's graph, NCHW input
        let mut x = vec![0.0f32; 3 * 64 * 64];
        for c in 0..3 {
            for y in 0..64 {
                for xx in 0..64 {
                    x[(c * 64 + y) * 64 + xx] = px(y, xx, c);
                }
            }
        }
        let t = crate::ir::Tensor::from_vec(&[1, 3, 64, 64], x).unwrap();
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
