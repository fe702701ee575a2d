//! Graph → IR on the real graphs: structure against REAL_GRAPHS.md and the source prototxts,
//! weights against the source caffemodel rounded to fp16.

use super::{caffemodel_blobs, f16_round, real_graph};
use crate::ir::{Op, WeightPrecision};
use crate::ncs::{read_net, NcsError};
use crate::testutil::shared;

#[test]
fn empty_fc_becomes_input_plus_inner_product() {
    let Some(p) = real_graph("beloborodov-empty-fc", "graph") else {
        return;
    };
    let net = read_net(&p).unwrap();
    assert_eq!(net.name, "empty");
    assert_eq!(net.precision, WeightPrecision::F16);
    assert_eq!(net.inputs.len(), 1);
    assert_eq!(net.inputs[0].name, "data");
    assert_eq!(net.inputs[0].shape, vec![1, 3, 448, 448]);
    assert_eq!(net.layers.len(), 1);
    let fc = &net.layers[0];
    assert_eq!(fc.name, "fullconnected");
    assert_eq!(fc.bottoms, vec!["data".to_string()]);
    let Op::InnerProduct(p) = &fc.op else {
        panic!("{:?}", fc.op)
    };
    assert_eq!(p.num_output, 3);
    assert_eq!(fc.blobs[0].shape, vec![3, 448 * 448 * 3]);
    assert!(fc.blobs[0].data.iter().all(|&v| v == 0.0));
    assert_eq!(fc.blobs[1].shape, vec![3]);
    let shapes = net.infer_shapes().unwrap();
    assert_eq!(shapes["fullconnected"], vec![1, 3]);
}

#[test]
fn emotion_graph_lifts_to_the_prototxt_structure_with_fp16_caffemodel_weights() {
    let (Some(p), Some(model)) = (
        real_graph("simcam-emotion", "graph"),
        shared("fixtures-real/ncs/simcam-emotion/emotion.caffemodel"),
    ) else {
        return;
    };
    let net = read_net(&p).unwrap();
    assert_eq!(net.inputs[0].name, "input_1");
    assert_eq!(net.inputs[0].shape, vec![1, 1, 64, 64]);
    let shapes = net.infer_shapes().unwrap();
    assert_eq!(net.outputs(), vec!["predictions".to_string()]);
    assert_eq!(shapes["predictions"], vec![1, 2]);
    // 34 stages after the input + one ReLU layer per postOp 6 (stages 1, 2, 5, 12, 19, 26)
    let relus = net
        .layers
        .iter()
        .filter(|l| matches!(l.op, Op::Relu(_)))
        .count();
    assert_eq!(relus, 6);
    assert_eq!(net.layers.len(), 34 + 6);
    // prototxt: depthwise_conv2d_1 is group 8, 3x3, pad 1, no bias
    let dw = net.layer("depthwise_conv2d_1").unwrap();
    let Op::Convolution(c) = &dw.op else { panic!() };
    assert_eq!(
        (c.group, c.num_output, c.kernel, c.pad, c.bias_term),
        (8, 8, [3, 3], [1, 1], false)
    );
    // prototxt: global average pooling, then dense_1 (2 outputs with bias)
    let gap = net.layer("global_average_pooling2d_1").unwrap();
    let Op::Pooling(pp) = &gap.op else { panic!() };
    assert!(pp.global);
    assert_eq!(shapes["global_average_pooling2d_1"], vec![1, 8, 1, 1]);
    let add = net.layer("add_1").unwrap();
    assert_eq!(add.bottoms.len(), 2);
    assert_eq!(
        add.bottoms[0],
        "conv2d_3/batch_normalization_3/batch_normalization_3_scale"
    );
    assert_eq!(add.bottoms[1], "max_pooling2d_1");

    // weights the compiler did not fold equal the caffemodel's, rounded to fp16
    let reference = caffemodel_blobs(&model);
    for name in [
        "dense_1",
        "conv2d_15",
        "depthwise_conv2d_1",
        "depthwise_conv2d_8",
    ] {
        let ours = net.layer(name).unwrap();
        let theirs = &reference[name];
        assert_eq!(ours.blobs.len(), theirs.len(), "{name}");
        for (a, b) in ours.blobs.iter().zip(theirs) {
            assert_eq!(a.shape, b.shape, "{name}");
            assert_eq!(a.data, f16_round(&b.data), "{name}");
        }
    }
}

#[test]
fn deeppicar_tensorflow_graph_lifts_with_valid_padding_and_a_final_scale() {
    let Some(p) = real_graph("deeppicar-noatan", "graph") else {
        return;
    };
    let net = read_net(&p).unwrap();
    // no input stage in TF graphs: the first stage's input dims X=66, Y=200, Z=3
    assert_eq!(net.inputs[0].name, "input");
    assert_eq!(net.inputs[0].shape, vec![1, 3, 200, 66]);
    let shapes = net.infer_shapes().unwrap();
    // output dims documented in REAL_GRAPHS.md §5 (X x Y x Z)
    for (blob, shape) in [
        ("relu1", vec![1, 24, 98, 31]),
        ("relu5", vec![1, 64, 18, 1]),
        ("relu6", vec![1, 100]),
        ("add_8", vec![1, 1]),
        ("output_y", vec![1, 1]),
    ] {
        let produced = net
            .layers
            .iter()
            .find(|l| l.caffe_tops[0] == blob)
            .map(|l| l.tops[0].clone())
            .unwrap();
        assert_eq!(shapes[&produced], shape, "{blob}");
    }
    assert!(matches!(net.layer("output_y").unwrap().op, Op::Scale(_)));
}

#[test]
fn unrepresentable_graphs_are_refused_naming_the_stage() {
    for (fixture, file, stage, what) in [
        (
            "mp-conv6-fc-sigmoid",
            "graph.mv",
            "stage 0 'e1/Relu'",
            "asymmetric",
        ),
        (
            "mp-conv-deconv",
            "graph.mv",
            "stage 0 'e1/Relu'",
            "asymmetric",
        ),
        (
            "watanabe-cnn-bn",
            "graph",
            "stage 9 'add'",
            "second operand 0@1",
        ),
    ] {
        let Some(p) = real_graph(fixture, file) else {
            return;
        };
        let e = read_net(&p).unwrap_err();
        assert!(matches!(e, NcsError::ToIr { .. }), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains(file) && msg.contains(stage) && msg.contains(what),
            "{fixture}: {msg}"
        );
    }
}
