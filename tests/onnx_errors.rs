//! Bad ONNX input gets a typed error naming the file and the node or tensor, never a panic
//! or a huge allocation.

use agegender::onnx::pb::tensor_proto::DataType;
use agegender::onnx::pb::{
    attribute_proto::AttributeType, tensor_shape_proto, type_proto, AttributeProto, GraphProto,
    ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};
use agegender::onnx::{self, ImportOptions, OnnxError};
use std::path::Path;

fn value_info(name: &str, dims: &[i64]) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| tensor_shape_proto::Dimension {
                            value: Some(tensor_shape_proto::dimension::Value::DimValue(d)),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn node(
    name: &str,
    op: &str,
    inputs: &[&str],
    output: &str,
    attrs: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        name: name.into(),
        op_type: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        attribute: attrs,
        ..Default::default()
    }
}

fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: v.to_vec(),
        ..Default::default()
    }
}

fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i: v,
        ..Default::default()
    }
}

fn model(input_dims: &[i64], nodes: Vec<NodeProto>, init: Vec<TensorProto>) -> ModelProto {
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        graph: Some(GraphProto {
            name: "g".into(),
            input: vec![value_info("x", input_dims)],
            output: vec![value_info("y", &[])],
            node: nodes,
            initializer: init,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn import(m: &ModelProto) -> OnnxError {
    onnx::import_model(m, None, &ImportOptions::default()).unwrap_err()
}

#[test]
fn truncated_garbage_and_empty_files_are_refused_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/onnx/helper_ops/model.onnx"),
    )
    .unwrap();
    let cut = dir.path().join("cut.onnx");
    std::fs::write(&cut, &good[..good.len() / 2]).unwrap();
    let e = onnx::import(&cut).unwrap_err().to_string();
    assert!(
        e.contains("cut.onnx") && e.contains("not a valid ONNX model"),
        "{e}"
    );

    let junk = dir.path().join("junk.onnx");
    std::fs::write(&junk, [0xffu8; 16]).unwrap();
    let e = onnx::import(&junk).unwrap_err().to_string();
    assert!(
        e.contains("junk.onnx") && e.contains("not a valid ONNX model"),
        "{e}"
    );

    let empty = dir.path().join("empty.onnx");
    std::fs::write(&empty, b"").unwrap();
    let e = onnx::import(&empty).unwrap_err().to_string();
    assert!(e.contains("empty.onnx") && e.contains("no graph"), "{e}");

    let missing = dir.path().join("missing.onnx");
    let e = onnx::import(&missing).unwrap_err().to_string();
    assert!(e.contains("missing.onnx"), "{e}");
}

#[test]
fn unsupported_op_names_the_node_and_op_type() {
    let m = model(
        &[1, 3, 4, 4],
        vec![node("my_erf", "Erf", &["x"], "y", vec![])],
        vec![],
    );
    match import(&m) {
        OnnxError::UnsupportedOp { node, op_type, .. } => {
            assert_eq!((node.as_str(), op_type.as_str()), ("my_erf", "Erf"));
        }
        e => panic!("{e}"),
    }
    // Other domains are refused by name too.
    let mut n = node("q", "QuantizeLinear", &["x"], "y", vec![]);
    n.domain = "com.microsoft".into();
    let e = import(&model(&[1, 3, 4, 4], vec![n], vec![])).to_string();
    assert!(e.contains("'q'") && e.contains("com.microsoft"), "{e}");
}

#[test]
fn huge_dims_are_refused_before_allocating() {
    let m = model(
        &[1, 1 << 62],
        vec![node("r", "Relu", &["x"], "y", vec![])],
        vec![],
    );
    let e = import(&m).to_string();
    assert!(e.contains("'x'") && e.contains("exceed"), "{e}");
    // An initializer claiming 2^62 floats with 8 bytes of data.
    let w = TensorProto {
        name: "w".into(),
        dims: vec![1 << 62],
        data_type: DataType::Float as i32,
        raw_data: vec![0; 8],
        ..Default::default()
    };
    let m = model(
        &[1, 2],
        vec![node("p", "PRelu", &["x", "w"], "y", vec![])],
        vec![w],
    );
    let e = import(&m).to_string();
    assert!(e.contains("tensor 'w'") && e.contains("exceed"), "{e}");
    // A dynamic dimension, and the same fixed by the caller.
    let mut m = model(
        &[1, 3, 4, 4],
        vec![node("r", "Relu", &["x"], "y", vec![])],
        vec![],
    );
    if let Some(type_proto::Value::TensorType(t)) = m.graph.as_mut().unwrap().input[0]
        .r#type
        .as_mut()
        .unwrap()
        .value
        .as_mut()
    {
        t.shape.as_mut().unwrap().dim[0].value =
            Some(tensor_shape_proto::dimension::Value::DimParam("N".into()));
    }
    let e = import(&m);
    assert!(matches!(e, OnnxError::DynamicInput { dim: 0, .. }), "{e}");
    assert!(e.to_string().contains("Nx3x4x4"), "{e}");
    let opts = ImportOptions {
        input_shapes: [("x".to_string(), vec![2, 3, 4, 4])].into(),
    };
    let net = onnx::import_model(&m, None, &opts).unwrap();
    assert_eq!(net.inputs[0].shape, vec![2, 3, 4, 4]);
    let opts = ImportOptions {
        input_shapes: [("nope".to_string(), vec![2, 3, 4, 4])].into(),
    };
    let e = onnx::import_model(&m, None, &opts).unwrap_err().to_string();
    assert!(e.contains("no graph input named 'nope'"), "{e}");
}

fn conv_weights() -> TensorProto {
    TensorProto {
        name: "w".into(),
        dims: vec![2, 3, 3, 3],
        data_type: DataType::Float as i32,
        float_data: vec![0.5; 54],
        ..Default::default()
    }
}

#[test]
fn semantics_caffe_cannot_express_are_refused_by_node() {
    // Asymmetric convolution padding is the IR's begin/end padding (TensorFlow SAME)...
    let m = model(
        &[1, 3, 8, 8],
        vec![node(
            "c",
            "Conv",
            &["x", "w"],
            "y",
            vec![ints("pads", &[0, 0, 1, 1])],
        )],
        vec![conv_weights()],
    );
    let net = onnx::import_model(&m, None, &ImportOptions::default()).unwrap();
    match &net.layers[0].op {
        agegender::ir::Op::Convolution(p) => {
            assert_eq!((p.pad, p.end_pad()), ([0, 0], [1, 1]));
        }
        op => panic!("{op:?}"),
    }
    assert_eq!(net.infer_shapes().unwrap()["y"], vec![1, 2, 7, 7]);
    // ...but a transposed convolution cannot crop unevenly in Caffe.
    let m = model(
        &[1, 3, 8, 8],
        vec![node(
            "c",
            "ConvTranspose",
            &["x", "w"],
            "y",
            vec![ints("pads", &[0, 0, 1, 1])],
        )],
        vec![conv_weights()],
    );
    let e = import(&m).to_string();
    assert!(
        e.contains("node 'c' (ConvTranspose)") && e.contains("asymmetric"),
        "{e}"
    );
    // ConvTranspose sizes Caffe's Deconvolution cannot produce: output_padding, an
    // explicit output_shape, auto_pad SAME.
    let same = AttributeProto {
        name: "auto_pad".into(),
        r#type: AttributeType::String as i32,
        s: b"SAME_UPPER".to_vec(),
        ..Default::default()
    };
    for (attr, needle) in [
        (ints("output_padding", &[1, 1]), "output_padding"),
        (ints("output_shape", &[17, 17]), "output_shape"),
        (same, "auto_pad SAME"),
    ] {
        let m = model(
            &[1, 2, 8, 8],
            vec![node(
                "t",
                "ConvTranspose",
                &["x", "w"],
                "y",
                vec![ints("strides", &[2, 2]), attr],
            )],
            vec![conv_weights()],
        );
        let e = import(&m).to_string();
        assert!(
            e.contains("node 't' (ConvTranspose)") && e.contains(needle),
            "{e}"
        );
    }
    // AVE pooling that leaves padding out of the divisor (Caffe always counts it).
    let pool = |cip| {
        node(
            "ap",
            "AveragePool",
            &["x"],
            "y",
            vec![
                ints("kernel_shape", &[3, 3]),
                ints("strides", &[2, 2]),
                ints("pads", &[1, 1, 1, 1]),
                int("count_include_pad", cip),
            ],
        )
    };
    let e = import(&model(&[1, 3, 8, 8], vec![pool(0)], vec![])).to_string();
    assert!(
        e.contains("node 'ap' (AveragePool)") && e.contains("divisor"),
        "{e}"
    );
    assert!(onnx::import_model(
        &model(&[1, 3, 8, 8], vec![pool(1)], vec![]),
        None,
        &ImportOptions::default()
    )
    .is_ok());
    // Even LRN windows have no centre.
    let lrn = node("n", "LRN", &["x"], "y", vec![int("size", 4)]);
    let e = import(&model(&[1, 3, 8, 8], vec![lrn], vec![])).to_string();
    assert!(e.contains("node 'n' (LRN)") && e.contains("odd"), "{e}");
    // A weight that is computed, not constant.
    let e = import(&model(
        &[1, 3, 8, 8],
        vec![node("c", "Conv", &["x", "x"], "y", vec![])],
        vec![],
    ))
    .to_string();
    assert!(
        e.contains("node 'c' (Conv)") && e.contains("initializer or constant"),
        "{e}"
    );
    // An input that nothing produces.
    let e = import(&model(
        &[1, 3, 8, 8],
        vec![node("r", "Relu", &["z"], "y", vec![])],
        vec![],
    ))
    .to_string();
    assert!(e.contains("node 'r'") && e.contains("'z'"), "{e}");
}

#[test]
fn export_refuses_layers_without_weights_and_batch_statistics() {
    use agegender::ir::{InputSpec, Layer, Net, Op};
    use agegender::ops::batchnorm::BatchNormParams;
    use agegender::ops::conv::ConvParams;
    let mut net = Net {
        name: "n".into(),
        inputs: vec![InputSpec {
            name: "data".into(),
            shape: vec![1, 3, 8, 8],
        }],
        layers: vec![Layer::new(
            "conv1",
            Op::Convolution(ConvParams {
                num_output: 2,
                kernel: [3, 3],
                ..Default::default()
            }),
            vec!["data".into()],
            vec!["conv1".into()],
        )],
        ..Default::default()
    };
    let e = onnx::export(&net).unwrap_err().to_string();
    assert!(
        e.contains("layer 'conv1' (Convolution)") && e.contains("weight"),
        "{e}"
    );
    net.layers[0] = Layer::new(
        "bn",
        Op::BatchNorm(BatchNormParams {
            use_global_stats: Some(false),
            ..Default::default()
        }),
        vec!["data".into()],
        vec!["bn".into()],
    );
    let e = onnx::export(&net).unwrap_err().to_string();
    assert!(
        e.contains("layer 'bn' (BatchNorm)") && e.contains("use_global_stats"),
        "{e}"
    );
    // Nothing is written when the export fails.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bn.onnx");
    assert!(onnx::write_onnx(&net, &path).is_err());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
