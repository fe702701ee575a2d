//! Graph → IR on the real graphs: structure against REAL_GRAPHS.md and the source prototxts,
//! weights against the source caffemodel rounded to fp16.

use super::{caffemodel_blobs, f16_round, real_graph};
use crate::ir::{Op, WeightPrecision};
use crate::ncs::read_net;
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

/// Every real v1 graph lifts to the IR, including the three TensorFlow-compiled ones
/// (SAME padding with the odd pixel at the end, a channel-slice `copy`, an `add` pointed
/// at the network input, a deconvolution), and its f16 run agrees with an f32 run of the
/// same weights within the mvncheck preset.
#[test]
fn every_real_graph_lifts_and_runs_within_mvncheck() {
    use crate::exec::{f16::F16Engine, Engine};
    use crate::verify::{metrics::compare, Preset, Tolerance};
    let tol = Tolerance::new(Preset::Mvncheck, None);
    for (fixture, file) in super::REAL_GRAPHS {
        let Some(p) = real_graph(fixture, file) else {
            return;
        };
        let net = read_net(&p).unwrap_or_else(|e| panic!("{fixture}: {e}"));
        let shape = net.inputs[0].shape.clone();
        let n: usize = shape.iter().product();
        let x: Vec<f32> = (0..n).map(|i| ((i * 37) % 101) as f32 / 100.0).collect();
        let x = crate::ir::Tensor::from_vec(&shape, x).unwrap();
        let name = net.inputs[0].name.clone();
        let f32_out = Engine::new(&net)
            .unwrap()
            .run([(name.clone(), x.clone())])
            .unwrap();
        let f16_out = F16Engine::new(&net).unwrap().run([(name, x)]).unwrap();
        let (blob, want) = f32_out.blobs.last().unwrap();
        let got = &f16_out.outputs.blobs.last().unwrap().1;
        let m = compare(blob, want, got).unwrap();
        assert!(tol.output_ok(&m), "{fixture}: {m:?}");
    }
}

/// watanabe-cnn-bn's `add` (stage 9) reads its second operand at 0@1: the first ten fp16
/// values of the network input (REAL_GRAPHS.md, the stage table), which the lift selects
/// with 0/1 weights. With one input channel the device's HWC order is the IR's order.
#[test]
fn watanabe_add_reads_the_first_values_of_the_input() {
    let Some(p) = real_graph("watanabe-cnn-bn", "graph") else {
        return;
    };
    let net = read_net(&p).unwrap();
    let add = net.layer("add").unwrap();
    assert!(matches!(add.op, Op::Eltwise(_)), "{:?}", add.op);
    let select = net
        .layers
        .iter()
        .find(|l| add.bottoms.contains(&l.tops[0]) && l.bottoms == [net.inputs[0].name.clone()])
        .expect("a layer reading the network input feeds the add");
    assert!(matches!(select.op, Op::InnerProduct(_)), "{:?}", select.op);
    let w = &select.blobs[0];
    assert_eq!(w.shape, vec![10, 108 * 108]);
    for r in 0..10 {
        let row = &w.data[r * 108 * 108..][..108 * 108];
        assert_eq!(row[r], 1.0);
        assert_eq!(row.iter().filter(|&&v| v != 0.0).count(), 1);
    }
}
