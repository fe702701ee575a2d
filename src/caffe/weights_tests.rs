use super::*;
use crate::caffe::import::net_from_proto;
use crate::caffe::prototxt::{parse_text, read_prototxt};
use crate::ir::Phase;
use crate::proto::caffe::{BlobProto, BlobShape, LayerParameter};
use crate::testutil::shared;
use std::path::Path;

fn net(text: &str) -> Net {
    net_from_proto(&parse_text(text, Path::new("inline")).unwrap(), Phase::Test).unwrap()
}

const SMALL: &str = r#"
    input: "d" input_dim: 2 input_dim: 3 input_dim: 4 input_dim: 4
    layer { name: "conv" type: "Convolution" bottom: "d" top: "c"
            convolution_param { num_output: 5 kernel_size: 3
              weight_filler { type: "xavier" } bias_filler { type: "constant" value: 0.5 } } }
    layer { name: "r" type: "ReLU" bottom: "c" top: "c" }
    layer { name: "ip" type: "InnerProduct" bottom: "c" top: "ip"
            inner_product_param { num_output: 2 bias_term: false } }
    layer { name: "bn" type: "BatchNorm" bottom: "ip" top: "ip" }
    layer { name: "sc" type: "Scale" bottom: "ip" top: "ip" scale_param { bias_term: true } }"#;

fn blob(shape: &[i64], value: f32) -> BlobProto {
    BlobProto {
        shape: Some(BlobShape {
            dim: shape.to_vec(),
        }),
        data: vec![value; shape.iter().product::<i64>() as usize],
        ..Default::default()
    }
}

fn source(layers: Vec<(&str, Vec<BlobProto>)>) -> NetParameter {
    NetParameter {
        layer: layers
            .into_iter()
            .map(|(name, blobs)| LayerParameter {
                name: Some(name.into()),
                blobs,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

#[test]
fn blob_counts_follow_caffe_layers() {
    let n = net(SMALL);
    let counts: Vec<usize> = n.layers.iter().map(expected_blob_count).collect();
    // conv: weights + bias; ReLU none; ip without bias: weights; BatchNorm: mean, var,
    // factor; Scale with bias: scale + bias.
    assert_eq!(counts, vec![2, 0, 1, 3, 2]);
}

#[test]
fn fill_uses_each_layer_filler_and_the_seed() {
    let mut a = net(SMALL);
    let filled = fill_missing_weights(&mut a, 3).unwrap();
    assert_eq!(filled, vec!["conv", "ip", "bn", "sc"]);
    let conv = a.layer("conv").unwrap();
    assert_eq!(conv.blobs[0].shape, vec![5, 3, 3, 3]);
    // xavier with fan_in 3·3·3 = 27: |w| ≤ √(3/27) = 1/3.
    assert!(conv.blobs[0].data.iter().all(|v| v.abs() <= 1.0 / 3.0));
    assert!(conv.blobs[1].data.iter().all(|&v| v == 0.5));
    // InnerProduct without a filler: Caffe's default constant 0.
    assert_eq!(a.layer("ip").unwrap().blobs[0].shape, vec![2, 5 * 2 * 2]);
    assert!(a.layer("ip").unwrap().blobs[0]
        .data
        .iter()
        .all(|&v| v == 0.0));
    // BatchNorm statistics start at 0; Scale starts at 1 with bias 0.
    let bn = a.layer("bn").unwrap();
    assert_eq!(
        bn.blobs.iter().map(|b| b.shape.clone()).collect::<Vec<_>>(),
        vec![vec![2], vec![2], vec![1]]
    );
    let sc = a.layer("sc").unwrap();
    assert!(sc.blobs[0].data.iter().all(|&v| v == 1.0));
    assert!(sc.blobs[1].data.iter().all(|&v| v == 0.0));
    let mut b = net(SMALL);
    fill_missing_weights(&mut b, 3).unwrap();
    assert_eq!(a, b, "same seed, same weights");
    let mut c = net(SMALL);
    fill_missing_weights(&mut c, 4).unwrap();
    assert_ne!(
        a.layer("conv").unwrap().blobs[0],
        c.layer("conv").unwrap().blobs[0]
    );
    // Layers that already have weights are kept.
    assert!(fill_missing_weights(&mut c, 5).unwrap().is_empty());
}

#[test]
fn weights_are_copied_by_name_and_extra_source_layers_ignored() {
    let mut n = net(SMALL);
    let src = source(vec![
        ("data", vec![]),
        (
            "conv",
            vec![blob(&[5, 3, 3, 3], 0.25), blob(&[1, 1, 1, 5], -1.0)],
        ),
        ("loss", vec![]),
    ]);
    let missing = copy_weights_by_name(&mut n, &src).unwrap();
    assert_eq!(missing, vec!["ip", "bn", "sc"]);
    let conv = n.layer("conv").unwrap();
    assert_eq!(conv.blobs[1].shape, vec![5], "legacy bias dims dropped");
    assert_eq!(conv.blobs[1].data, vec![-1.0; 5]);
    let src = source(vec![("conv", vec![blob(&[5, 3, 3, 3], 0.25)])]);
    let e = copy_weights_by_name(&mut n, &src).unwrap_err().to_string();
    assert!(
        e.contains("'conv'") && e.contains("hold 1 blobs, the layer needs 2"),
        "{e}"
    );
    let bad = BlobProto {
        data: vec![1.0; 3],
        ..blob(&[5], 0.0)
    };
    let src = source(vec![("conv", vec![blob(&[5, 3, 3, 3], 0.25), bad])]);
    let e = copy_weights_by_name(&mut n, &src).unwrap_err().to_string();
    assert!(
        e.contains("'conv'") && e.contains("blob 1") && e.contains("needs 5 values"),
        "{e}"
    );
}

#[test]
fn a_shape_mismatch_names_layer_expected_and_found() {
    let mut n = net(SMALL);
    let src = source(vec![(
        "conv",
        vec![blob(&[5, 3, 5, 5], 0.0), blob(&[5], 0.0)],
    )]);
    copy_weights_by_name(&mut n, &src).unwrap();
    let e = n.infer_shapes().unwrap_err().to_string();
    assert!(
        e.contains("'conv'") && e.contains("[5, 3, 5, 5]") && e.contains("[5, 3, 3, 3]"),
        "{e}"
    );
}

#[test]
fn canonical_shapes_drop_only_legacy_leading_ones() {
    let n = net(SMALL);
    let ip = &n.layer("ip").unwrap().op;
    assert_eq!(canonical_rank_shape(ip, 0, &[1, 1, 2, 20]), vec![2, 20]);
    assert_eq!(
        canonical_rank_shape(ip, 0, &[3, 1, 2, 20]),
        vec![3, 1, 2, 20]
    );
    let conv = &n.layer("conv").unwrap().op;
    assert_eq!(
        canonical_rank_shape(conv, 0, &[1, 3, 3, 3]),
        vec![1, 3, 3, 3]
    );
    assert_eq!(canonical_rank_shape(conv, 1, &[1, 1, 1, 1]), vec![1]);
}

#[test]
fn random_fillers_of_the_levi_hassner_net_fill_all_11_million_weights() {
    let Some(p) = shared("fixtures-real/levi_hassner/age_net_definitions/deploy.prototxt") else {
        return;
    };
    let mut n = net_from_proto(&read_prototxt(&p).unwrap(), Phase::Test).unwrap();
    assert_eq!(n.param_count(), 0);
    let filled = fill_missing_weights(&mut n, DEFAULT_FILL_SEED).unwrap();
    assert_eq!(filled, vec!["conv1", "conv2", "conv3", "fc6", "fc7", "fc8"]);
    // The sum of the hand-derived per-layer counts of the layer-table test.
    assert_eq!(n.param_count(), 11_415_048);
    // No filler in the deploy file: Caffe's default constant 0.
    assert!(n
        .layers
        .iter()
        .flat_map(|l| &l.blobs)
        .all(|b| b.max_abs() == 0.0));
    // The benchmark variant draws gaussian(0, 0.01) weights instead (14,112 conv1 samples:
    // the sample std is within a few percent of 0.01) and keeps the biases' constant 0.
    let mut r = net_from_proto(&read_prototxt(&p).unwrap(), Phase::Test).unwrap();
    fill_missing_weights_random(&mut r, DEFAULT_FILL_SEED).unwrap();
    let conv1 = r.layer("conv1").unwrap();
    let w = &conv1.blobs[0].data;
    let mean = w.iter().map(|&v| v as f64).sum::<f64>() / w.len() as f64;
    let std = (w.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / w.len() as f64).sqrt();
    assert!(
        mean.abs() < 0.0005 && (std - 0.01).abs() < 0.0005,
        "mean {mean}, std {std}"
    );
    assert_eq!(conv1.blobs[1].max_abs(), 0.0);
    assert_eq!(r.param_count(), 11_415_048);
}
