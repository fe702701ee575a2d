use super::*;
use crate::ir::Tensor;
use crate::testutil::shared;
use std::path::PathBuf;

fn pair(proto: &str, model: &str) -> Option<(PathBuf, PathBuf)> {
    Some((
        shared(&format!("fixtures-real/{proto}"))?,
        shared(&format!("fixtures-real/{model}"))?,
    ))
}

fn shapes(net: &Net, layer: &str) -> Vec<Vec<usize>> {
    net.layer(layer)
        .unwrap_or_else(|| panic!("no layer {layer}"))
        .blobs
        .iter()
        .map(|b| b.shape.clone())
        .collect()
}

fn finite_and_varied(t: &Tensor) -> bool {
    t.data.iter().all(|v| v.is_finite()) && t.data.iter().any(|&v| v != t.data[0])
}

#[test]
fn lenet_v1_train_weights_load_against_the_deploy_prototxt() {
    let Some((proto, model)) = pair(
        "caffe/lenet/lenet.prototxt",
        "caffe/lenet/lenet_iter_10000.caffemodel",
    ) else {
        return;
    };
    let net = load_net(&proto, Some(&model), Phase::Test).unwrap();
    // Legacy dims [1,1,500,800] etc. take the current shapes; pool2 is 50×4×4 = 800.
    assert_eq!(shapes(&net, "conv1"), vec![vec![20, 1, 5, 5], vec![20]]);
    assert_eq!(shapes(&net, "conv2"), vec![vec![50, 20, 5, 5], vec![50]]);
    assert_eq!(shapes(&net, "ip1"), vec![vec![500, 800], vec![500]]);
    assert_eq!(shapes(&net, "ip2"), vec![vec![10, 500], vec![10]]);
    for l in ["conv1", "conv2", "ip1", "ip2"] {
        assert!(
            net.layer(l).unwrap().blobs.iter().all(finite_and_varied),
            "{l}"
        );
    }
    // conv1 + conv2 + ip1 + ip2 = 520 + 25,050 + 400,500 + 5,010.
    assert_eq!(net.param_count(), 431_080);
    // The same caffemodel against the BVLC V2 prototxt gives the same weights.
    let v2 = shared("fixtures-real/caffe/lenet/lenet_bvlc_v2.prototxt").unwrap();
    let b = load_net(&v2, Some(&model), Phase::Test).unwrap();
    for (x, y) in net.layers.iter().zip(&b.layers) {
        assert_eq!(x.blobs, y.blobs, "{}", x.name);
    }
}

#[test]
fn cifar10_full_v1_weights_load() {
    let Some((proto, model)) = pair(
        "caffe/cifar10_full/cifar10_full.prototxt",
        "caffe/cifar10_full/cifar10_full_iter_70000.caffemodel",
    ) else {
        return;
    };
    let net = load_net(&proto, Some(&model), Phase::Test).unwrap();
    assert_eq!(shapes(&net, "conv1"), vec![vec![32, 3, 5, 5], vec![32]]);
    assert_eq!(shapes(&net, "conv2"), vec![vec![32, 32, 5, 5], vec![32]]);
    assert_eq!(shapes(&net, "conv3"), vec![vec![64, 32, 5, 5], vec![64]]);
    // pool3 gives 64×4×4 = 1,024 inputs (32 → 16 → 8 → 4 with ceil pooling).
    assert_eq!(shapes(&net, "ip1"), vec![vec![10, 1024], vec![10]]);
    assert!(net
        .layers
        .iter()
        .flat_map(|l| &l.blobs)
        .all(finite_and_varied));
}

#[test]
fn mtcnn_v2_weights_load_and_det3_lacks_only_dropout() {
    let cases = [
        ("det1", vec![("conv1", vec![vec![10, 3, 3, 3], vec![10]])]),
        ("det2", vec![("conv3", vec![vec![64, 48, 2, 2], vec![64]])]),
        (
            "det3",
            vec![
                ("conv5", vec![vec![256, 1152], vec![256]]),
                ("prelu5", vec![vec![256]]),
                ("conv6-3", vec![vec![10, 256], vec![10]]),
            ],
        ),
    ];
    for (name, expect) in cases {
        let Some((proto, model)) = pair(
            &format!("caffe/mtcnn/{name}.prototxt"),
            &format!("caffe/mtcnn/{name}.caffemodel"),
        ) else {
            return;
        };
        let net = load_net(&proto, Some(&model), Phase::Test).unwrap();
        for (layer, s) in expect {
            assert_eq!(shapes(&net, layer), s, "{name} {layer}");
        }
        assert!(
            net.layers
                .iter()
                .flat_map(|l| &l.blobs)
                .all(|b| b.data.iter().all(|v| v.is_finite())),
            "{name}"
        );
    }
    // det3's deploy Dropout (drop5, ratio 0.25) has no counterpart in the caffemodel and
    // needs none.
    let (proto, _) = pair("caffe/mtcnn/det3.prototxt", "caffe/mtcnn/det3.caffemodel").unwrap();
    let net = load_net(&proto, None, Phase::Test).unwrap();
    assert!(
        matches!(&net.layer("drop5").unwrap().op, crate::ir::Op::Dropout(d) if d.ratio == 0.25)
    );
}

#[test]
fn levi_mini_init_weights_are_caffes_filler_output() {
    let Some((proto, model)) = pair(
        "caffe-oracle/levi_mini/deploy.prototxt",
        "caffe-oracle/levi_mini/levi_mini_init_iter_0.caffemodel",
    ) else {
        return;
    };
    let net = load_net(&proto, Some(&model), Phase::Test).unwrap();
    // README shapes: conv1 [16,3,7,7]+[16], conv2 [32,16,5,5]+[32], conv3 [48,32,3,3]+[48],
    // fc6 [64,2352]+[64], fc7 [64,64]+[64], fc8 [9,64]+[9]. They add up to 2,368 + 12,832
    // + 13,872 + 150,592 + 4,160 + 585 = 184,409 floats (the README's total, 183,961, is
    // 448 short of its own shapes).
    assert_eq!(shapes(&net, "conv3"), vec![vec![48, 32, 3, 3], vec![48]]);
    assert_eq!(shapes(&net, "fc6"), vec![vec![64, 2352], vec![64]]);
    assert_eq!(net.param_count(), 184_409);
    // train_val.prototxt's fillers, drawn by Caffe: biases constant 0 (conv1, conv3, fc8) or
    // 1 (conv2, fc6, fc7); conv1 weights gaussian with std 0.01.
    let bias = |l: &str| net.layer(l).unwrap().blobs[1].data.clone();
    for (l, v) in [
        ("conv1", 0.0),
        ("conv2", 1.0),
        ("conv3", 0.0),
        ("fc6", 1.0),
        ("fc7", 1.0),
        ("fc8", 0.0),
    ] {
        assert!(bias(l).iter().all(|&b| b == v), "{l} bias");
    }
    let w = &net.layer("conv1").unwrap().blobs[0].data;
    let std = (w.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / w.len() as f64).sqrt();
    assert!((std - 0.01).abs() < 0.0005, "conv1 std {std}");
}

#[test]
fn an_empty_caffemodel_gives_the_fillers_values_with_a_warning() {
    let Some((proto, model)) = pair(
        "ncs/beloborodov-empty-fc/empty.prototxt",
        "ncs/beloborodov-empty-fc/empty.caffemodel",
    ) else {
        return;
    };
    let net = load_net(&proto, Some(&model), Phase::Test).unwrap();
    // InnerProduct 3 outputs over 3·448·448 inputs, default filler constant 0.
    assert_eq!(
        shapes(&net, "fullconnected"),
        vec![vec![3, 602_112], vec![3]]
    );
    assert!(net.layers[0].blobs.iter().all(|b| b.max_abs() == 0.0));
}

#[test]
fn simcam_emotion_batch_norm_and_scale_weights_load() {
    let Some((proto, model)) = pair(
        "ncs/simcam-emotion/deploy.prototxt",
        "ncs/simcam-emotion/emotion.caffemodel",
    ) else {
        return;
    };
    let net = load_net(&proto, Some(&model), Phase::Test).unwrap();
    assert_eq!(
        shapes(&net, "batch_normalization_1"),
        vec![vec![8], vec![8], vec![1]]
    );
    assert_eq!(
        shapes(&net, "batch_normalization_1_scale"),
        vec![vec![8], vec![8]]
    );
    assert_eq!(shapes(&net, "conv2d_1"), vec![vec![8, 1, 3, 3]]);
    // The caffemodel alone (Input layer inside, Split layers removed) is the same net.
    let alone = load_caffemodel_net(&model).unwrap();
    assert_eq!(alone.inputs, net.inputs);
    assert_eq!(alone.layers, net.layers);
}

#[test]
fn a_caffemodel_alone_needs_or_infers_its_input_shape() {
    let Some((proto, model)) = pair(
        "caffe/lenet/lenet.prototxt",
        "caffe/lenet/lenet_iter_10000.caffemodel",
    ) else {
        return;
    };
    // The LMDB's image size is not stored: a clear error naming file, blob and layer.
    let e = load_caffemodel_net(&model).unwrap_err().to_string();
    assert!(
        e.contains("lenet_iter_10000.caffemodel") && e.contains("'data'"),
        "{e}"
    );
    assert!(
        e.contains("'mnist'") && e.contains("deploy prototxt"),
        "{e}"
    );
    let alone = load_caffemodel_net_with_input(&model, Some(&[64, 1, 28, 28])).unwrap();
    let deploy = load_net(&proto, Some(&model), Phase::Test).unwrap();
    assert_eq!(alone.inputs, deploy.inputs);
    // Same layers except the deploy-only softmax; the loss is gone.
    assert_eq!(alone.layers[..], deploy.layers[..deploy.layers.len() - 1]);
    // det3: HDF5 data with the label listed first; splits, slice and losses are dropped.
    let (proto3, model3) =
        pair("caffe/mtcnn/det3.prototxt", "caffe/mtcnn/det3.caffemodel").unwrap();
    let alone = load_caffemodel_net_with_input(&model3, Some(&[1, 3, 48, 48])).unwrap();
    assert_eq!(alone.inputs[0].name, "data48");
    let deploy = load_net(&proto3, Some(&model3), Phase::Test).unwrap();
    for l in &alone.layers {
        assert_eq!(
            Some(&l.blobs),
            deploy.layer(&l.name).map(|d| &d.blobs),
            "{}",
            l.name
        );
    }
    assert_eq!(alone.outputs(), vec!["conv6-1", "conv6-2", "conv6-3"]);
}

#[test]
fn a_data_layer_with_crop_gives_the_input_shape() {
    // V1 train net whose Data layer crops 227 and whose conv1 weights are [2, 3, 7, 7].
    let text = r#"name: "t"
        layers { name: "data" type: DATA top: "data" top: "label"
                 data_param { source: "db" batch_size: 50 crop_size: 227 } }
        layers { name: "conv1" type: CONVOLUTION bottom: "data" top: "conv1"
                 convolution_param { num_output: 2 kernel_size: 7 stride: 4 } }
        layers { name: "loss" type: SOFTMAX_LOSS bottom: "conv1" bottom: "label" top: "loss" }"#;
    let mut p: NetParameter =
        crate::caffe::prototxt::parse_text(text, std::path::Path::new("t")).unwrap();
    p.layers[1].blobs = vec![
        crate::caffe::blob::legacy_blob_from_tensor(&Tensor::full(&[2, 3, 7, 7], 0.5)),
        crate::caffe::blob::legacy_blob_from_tensor(&Tensor::full(&[1, 1, 1, 2], 0.1)),
    ];
    crate::caffe::upgrade::upgrade_net(&mut p).unwrap();
    let deploy = caffemodel_deploy_proto(&p, None).unwrap();
    let input = &deploy.layer[0];
    assert_eq!(
        input.input_param.as_ref().unwrap().shape[0].dim,
        vec![1, 3, 227, 227]
    );
    let names: Vec<&str> = deploy.layer.iter().map(|l| l.name()).collect();
    assert_eq!(names, vec!["data", "conv1"]);
}

#[test]
fn loading_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let e = load_net(&dir.path().join("none.prototxt"), None, Phase::Test)
        .unwrap_err()
        .to_string();
    assert!(e.contains("none.prototxt"), "{e}");
    let Some((proto, _)) = pair(
        "caffe-oracle/levi_mini/deploy.prototxt",
        "caffe-oracle/levi_mini/levi_mini_init_iter_0.caffemodel",
    ) else {
        return;
    };
    let e = load_net(
        &proto,
        Some(&dir.path().join("none.caffemodel")),
        Phase::Test,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("none.caffemodel"), "{e}");
}

#[test]
fn a_weight_shape_mismatch_names_layer_expected_and_found() {
    let Some((proto, model)) = pair(
        "caffe-oracle/levi_mini/deploy.prototxt",
        "caffe-oracle/levi_mini/levi_mini_init_iter_0.caffemodel",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let wider = dir.path().join("wider.prototxt");
    let text = std::fs::read_to_string(&proto).unwrap();
    std::fs::write(&wider, text.replace("num_output: 48", "num_output: 50")).unwrap();
    let e = load_net(&wider, Some(&model), Phase::Test)
        .unwrap_err()
        .to_string();
    assert!(e.contains("levi_mini_init_iter_0.caffemodel"), "{e}");
    assert!(
        e.contains("'conv3'") && e.contains("[48, 32, 3, 3]") && e.contains("[50, 32, 3, 3]"),
        "{e}"
    );
}

#[test]
fn a_bottom_no_layer_produces_names_the_layer_and_bottom() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.prototxt");
    std::fs::write(
        &p,
        "input: \"data\"\ninput_shape { dim: 1 dim: 3 }\n\
         layer { name: \"fc\" type: \"InnerProduct\" bottom: \"dat\" top: \"fc\"\n\
                 inner_product_param { num_output: 2 } }\n",
    )
    .unwrap();
    let e = load_net(&p, None, Phase::Test).unwrap_err().to_string();
    assert!(
        e.contains("bad.prototxt") && e.contains("'fc'") && e.contains("'dat'"),
        "{e}"
    );
}
