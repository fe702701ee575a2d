use super::*;
use crate::caffe::prototxt::{parse_text, read_prototxt};
use crate::ir::{shape_string, Filler, Net, VarianceNorm};
use crate::ops::{lrn::NormRegion, pool::PoolMethod, pool::RoundMode};
use crate::testutil::shared;
use std::path::Path;

fn parse(text: &str) -> NetParameter {
    parse_text(text, Path::new("inline")).unwrap()
}

fn load(rel: &str, phase: Phase) -> Option<Net> {
    let p = shared(rel)?;
    Some(
        net_from_proto(&read_prototxt(&p).unwrap(), phase).unwrap_or_else(|e| panic!("{rel}: {e}")),
    )
}

/// A deploy file: after the upgrade it has inputs and no data layers.
fn is_deploy(p: &NetParameter) -> bool {
    let mut p = p.clone();
    upgrade_net(&mut p).unwrap();
    p.layer.iter().any(|l| l.r#type() == "Input")
        && !p.layer.iter().any(|l| l.r#type().ends_with("Data"))
}

#[test]
fn every_real_net_converts_and_deploy_nets_infer_shapes() {
    let Some(files) = crate::caffe::prototxt::tests::all_prototxts() else {
        return;
    };
    let mut deploy = 0;
    let mut train = 0;
    for f in files
        .iter()
        .filter(|f| !crate::caffe::prototxt::tests::is_solver(f))
    {
        let p = read_prototxt(f).unwrap();
        let name = f.display();
        if is_deploy(&p) {
            let net = net_from_proto(&p, Phase::Test).unwrap_or_else(|e| panic!("{name}: {e}"));
            let shapes = net.infer_shapes().unwrap();
            for o in net.outputs() {
                assert!(
                    shapes[&o].iter().all(|&d| d > 0),
                    "{name}: {o} {:?}",
                    shapes[&o]
                );
            }
            deploy += 1;
        } else if p.layer.iter().any(|l| l.r#type() == "DummyData") {
            // The timing net feeds DummyData, a type outside the IR's set: a clear error.
            let e = net_from_proto(&p, Phase::Train).unwrap_err().to_string();
            assert!(
                e.contains("'data'") && e.contains("DummyData"),
                "{name}: {e}"
            );
        } else {
            for phase in [Phase::Train, Phase::Test] {
                let net = net_from_proto(&p, phase).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(
                    has_unknown_source_shape(&net),
                    "{name}: Data layer expected"
                );
            }
            train += 1;
        }
    }
    // 20 deploy nets and 12 train/val nets at the time of writing.
    assert!(
        deploy >= 20 && train >= 12,
        "deploy {deploy}, train {train}"
    );
}

/// The layer table: name, type, IR top, output shape, parameter count.
fn layer_table(net: &Net) -> String {
    let shapes = net.infer_shapes().unwrap();
    let mut out = String::new();
    for i in &net.inputs {
        out += &format!("{} Input {}\n", i.name, shape_string(&i.shape));
    }
    for l in &net.layers {
        let bottoms: Vec<Vec<usize>> = l.bottoms.iter().map(|b| shapes[b].clone()).collect();
        let params: usize =
            l.op.weight_shapes(&bottoms)
                .iter()
                .map(|s| s.iter().product::<usize>())
                .sum();
        let top = &l.tops[0];
        out += &format!(
            "{} {} {} {} {}\n",
            l.name,
            l.op.caffe_type(),
            top,
            shape_string(&shapes[top]),
            params
        );
    }
    out
}

#[test]
fn levi_hassner_age_deploy_matches_the_hand_derived_layer_table() {
    let Some(net) = load(
        "fixtures-real/levi_hassner/age_net_definitions/deploy.prototxt",
        Phase::Test,
    ) else {
        return;
    };
    // Derived by hand from the prototxt: conv1 96@7x7 s4: (227−7)/4+1 = 56; pool 3/2 with
    // Caffe's ceil: ceil((56−3)/2)+1 = 28, then 14, then 7; conv2 5x5 p2 and conv3 3x3 p1
    // keep the size; fc6 reads 384·7·7 = 18,816 values. Parameters: conv1 96·3·49+96,
    // conv2 256·96·25+256, conv3 384·256·9+384, fc6 512·18816+512, fc7 512·512+512,
    // fc8 8·512+8. In-place ReLU/Dropout tops are renamed after their layer.
    let expected = "\
data Input 1 3 227 227
conv1 Convolution conv1 1 96 56 56 14208
relu1 ReLU relu1 1 96 56 56 0
pool1 Pooling pool1 1 96 28 28 0
norm1 LRN norm1 1 96 28 28 0
conv2 Convolution conv2 1 256 28 28 614656
relu2 ReLU relu2 1 256 28 28 0
pool2 Pooling pool2 1 256 14 14 0
norm2 LRN norm2 1 256 14 14 0
conv3 Convolution conv3 1 384 14 14 885120
relu3 ReLU relu3 1 384 14 14 0
pool5 Pooling pool5 1 384 7 7 0
fc6 InnerProduct fc6 1 512 9634304
relu6 ReLU relu6 1 512 0
drop6 Dropout drop6 1 512 0
fc7 InnerProduct fc7 1 512 262656
relu7 ReLU relu7 1 512 0
drop7 Dropout drop7 1 512 0
fc8 InnerProduct fc8 1 8 4104
prob Softmax prob 1 8 0
";
    assert_eq!(layer_table(&net), expected);
    let fc6 = net.layer("fc6").unwrap();
    let shapes = net.infer_shapes().unwrap();
    let w = fc6.op.weight_shapes(&[shapes[&fc6.bottoms[0]].clone()]);
    assert_eq!(w[0], vec![512, 18_816]);
    // In-place bookkeeping: relu1 writes Caffe blob conv1, and pool1 reads relu1's output.
    let relu1 = net.layer("relu1").unwrap();
    assert_eq!(
        (relu1.bottoms[0].as_str(), relu1.caffe_tops[0].as_str()),
        ("conv1", "conv1")
    );
    assert_eq!(net.layer("pool1").unwrap().bottoms, vec!["relu1"]);
    assert_eq!(net.layer("fc7").unwrap().bottoms, vec!["drop6"]);
    assert_eq!(net.caffe_name_of("drop6"), "fc6");
    assert_eq!(net.outputs(), vec!["prob"]);
}

fn without_name(mut n: Net) -> Net {
    n.name.clear();
    n
}

#[test]
fn v1_and_v2_versions_of_lenet_and_cifar10_give_equal_nets() {
    for (v1, v2) in [
        (
            "fixtures-real/caffe/lenet/lenet.prototxt",
            "fixtures-real/caffe/lenet/lenet_bvlc_v2.prototxt",
        ),
        (
            "fixtures-real/caffe/cifar10_full/cifar10_full.prototxt",
            "fixtures-real/caffe/cifar10_full/cifar10_full_bvlc_v2.prototxt",
        ),
    ] {
        let (Some(a), Some(b)) = (load(v1, Phase::Test), load(v2, Phase::Test)) else {
            return;
        };
        assert!(a.layers.len() >= 7, "{v1}");
        // The BVLC file renames the cifar net ("CIFAR10_full_deploy"); all else is equal.
        assert_eq!(without_name(a), without_name(b), "{v1} vs {v2}");
    }
}

#[test]
fn levi_mini_train_val_keeps_fillers_param_specs_and_phases() {
    let Some(train) = load(
        "fixtures-real/caffe-oracle/levi_mini/train_val.prototxt",
        Phase::Train,
    ) else {
        return;
    };
    let test = load(
        "fixtures-real/caffe-oracle/levi_mini/train_val.prototxt",
        Phase::Test,
    )
    .unwrap();
    // README: conv1 gaussian 0.01 / bias 0, conv2 bias 1, fc6 gaussian 0.005 / bias 1,
    // lr_mult 1/2 (fc8 10/20), decay_mult 1/0; Accuracy only in TEST.
    let conv = |n: &Net, name: &str| match &n.layer(name).unwrap().op {
        Op::Convolution(p) => p.clone(),
        other => panic!("{other:?}"),
    };
    let c1 = conv(&train, "conv1");
    assert_eq!(
        c1.weight_filler,
        Filler::Gaussian {
            mean: 0.0,
            std: 0.01
        }
    );
    assert_eq!(c1.bias_filler, Filler::Constant { value: 0.0 });
    assert_eq!(
        conv(&train, "conv2").bias_filler,
        Filler::Constant { value: 1.0 }
    );
    match &train.layer("fc6").unwrap().op {
        Op::InnerProduct(p) => {
            assert_eq!(
                p.weight_filler,
                Filler::Gaussian {
                    mean: 0.0,
                    std: 0.005
                }
            );
            assert_eq!(p.bias_filler, Filler::Constant { value: 1.0 });
        }
        other => panic!("{other:?}"),
    }
    let fc8 = train.layer("fc8").unwrap();
    assert_eq!((fc8.param(0).lr_mult, fc8.param(0).decay_mult), (10.0, 1.0));
    assert_eq!((fc8.param(1).lr_mult, fc8.param(1).decay_mult), (20.0, 0.0));
    let data = train.layer("data").unwrap();
    assert_eq!(data.phase, Some(Phase::Train));
    match &data.op {
        Op::Data(d) => {
            assert_eq!((d.source.as_str(), d.batch_size), ("utkface24_lmdb", 8));
            assert_eq!(d.transform.mean_file.as_deref(), Some("mean.binaryproto"));
            assert!(!d.transform.mirror && d.transform.crop_size == 0);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(data.tops, vec!["data", "label"]);
    assert!(train.layer("accuracy").is_none());
    assert_eq!(test.layer("accuracy").unwrap().phase, Some(Phase::Test));
    assert_eq!(test.layer("data").unwrap().phase, Some(Phase::Test));
}

#[test]
fn convolution_and_pooling_forms_follow_caffe_rules() {
    let net = build_net(&parse(
        r#"layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 2 dim: 10 dim: 10 } } }
           layer { name: "a" type: "Convolution" bottom: "x" top: "a" convolution_param {
             num_output: 4 kernel_size: 3 kernel_size: 5 stride: 2 pad: 1 pad: 0 dilation: 2
             group: 2 bias_term: false weight_filler { type: "xavier" variance_norm: AVERAGE } } }
           layer { name: "b" type: "Convolution" bottom: "x" top: "b" convolution_param {
             num_output: 3 kernel_h: 3 kernel_w: 1 stride_h: 2 stride_w: 1 pad_h: 1 } }
           layer { name: "g" type: "Pooling" bottom: "b" top: "g" pooling_param { pool: AVE global_pooling: true } }
           layer { name: "f" type: "Pooling" bottom: "x" top: "f" pooling_param { kernel_size: 3 stride: 2 round_mode: FLOOR } }
           layer { name: "h" type: "Pooling" bottom: "x" top: "h" pooling_param { kernel_h: 2 kernel_w: 3 pad_h: 1 pad_w: 0 } }"#,
    ))
    .unwrap();
    let Op::Convolution(a) = &net.layer("a").unwrap().op else {
        panic!()
    };
    assert_eq!(
        (a.kernel, a.stride, a.pad, a.dilation),
        ([3, 5], [2, 2], [1, 0], [2, 2])
    );
    assert_eq!((a.group, a.bias_term), (2, false));
    assert_eq!(
        a.weight_filler,
        Filler::Xavier {
            norm: VarianceNorm::Average
        }
    );
    let Op::Convolution(b) = &net.layer("b").unwrap().op else {
        panic!()
    };
    assert_eq!(
        (b.kernel, b.stride, b.pad, b.dilation),
        ([3, 1], [2, 1], [1, 0], [1, 1])
    );
    let Op::Pooling(g) = &net.layer("g").unwrap().op else {
        panic!()
    };
    assert!(g.global && g.method == PoolMethod::Ave);
    let Op::Pooling(f) = &net.layer("f").unwrap().op else {
        panic!()
    };
    assert_eq!(
        (f.round, f.kernel, f.stride),
        (RoundMode::Floor, [3, 3], [2, 2])
    );
    let shapes = net.infer_shapes().unwrap();
    // By hand: a: H extent 2·2+1 = 5, (10+2−5)/2+1 = 4; W extent 2·4+1 = 9, (10−9)/2+1 = 1.
    assert_eq!(shapes["a"], vec![1, 4, 4, 1]);
    // b: (10+2−3)/2+1 = 5 by (10−1)/1+1 = 10; global pooling → 1×1; floor (10−3)/2+1 = 4.
    assert_eq!(shapes["b"], vec![1, 3, 5, 10]);
    assert_eq!(shapes["g"], vec![1, 3, 1, 1]);
    assert_eq!(shapes["f"], vec![1, 2, 4, 4]);
    // h: ceil((10+2−2)/1)+1 = 11; the last window starts at (11−1)·1 = 10 < H+p = 11, so
    // it is kept; W: (10−3)/1+1 = 8.
    assert_eq!(shapes["h"], vec![1, 2, 11, 8]);
}

#[test]
fn other_layer_parameters_keep_caffe_defaults() {
    let Some(simcam) = load(
        "fixtures-real/ncs/simcam-emotion/deploy.prototxt",
        Phase::Test,
    ) else {
        return;
    };
    match &simcam.layer("batch_normalization_1").unwrap().op {
        Op::BatchNorm(p) => {
            assert_eq!(p.use_global_stats, Some(true));
            assert_eq!(p.eps, 0.001_000_000_047_5_f64 as f32);
            assert_eq!(p.moving_average_fraction, 0.999);
        }
        other => panic!("{other:?}"),
    }
    match &simcam.layer("batch_normalization_1_scale").unwrap().op {
        Op::Scale(p) => {
            assert!(p.bias_term);
            assert_eq!((p.axis, p.num_axes), (1, 1));
            assert_eq!(p.filler, Filler::Constant { value: 1.0 }); // Caffe's Scale default
        }
        other => panic!("{other:?}"),
    }
    let det1 = load("fixtures-real/caffe/mtcnn/det1.prototxt", Phase::Test).unwrap();
    match &det1.layer("PReLU1").unwrap().op {
        Op::PRelu(p) => {
            assert!(!p.channel_shared);
            assert_eq!(p.filler, Filler::Constant { value: 0.25 }); // PReLU's default
        }
        other => panic!("{other:?}"),
    }
    let cifar = load(
        "fixtures-real/caffe/cifar10_full/cifar10_full_bvlc_v2.prototxt",
        Phase::Test,
    )
    .unwrap();
    match &cifar.layer("norm1").unwrap().op {
        Op::Lrn(p) => {
            assert_eq!((p.local_size, p.alpha, p.beta), (3, 5e-5, 0.75));
            assert_eq!((p.region, p.k), (NormRegion::WithinChannel, 1.0));
        }
        other => panic!("{other:?}"),
    }
    match &cifar.layer("pool2").unwrap().op {
        Op::Pooling(p) => assert_eq!(p.method, PoolMethod::Ave),
        other => panic!("{other:?}"),
    }
}

#[test]
fn in_place_tops_get_unique_names() {
    // The in-place layer "c" cannot take its own name (blob "c" exists), nor "c_1" (a
    // later layer's top), so it becomes "c_2"; "x" is free.
    let net = build_net(&parse(
        r#"layer { name: "in" type: "Input" top: "d" input_param { shape { dim: 1 dim: 3 } } }
           layer { name: "c" type: "InnerProduct" bottom: "d" top: "c" inner_product_param { num_output: 2 } }
           layer { name: "c" type: "ReLU" bottom: "c" top: "c" }
           layer { name: "x" type: "Sigmoid" bottom: "c" top: "c" }
           layer { name: "s" type: "Split" bottom: "c" top: "c_1" top: "z" }"#,
    ))
    .unwrap();
    let tops: Vec<&str> = net.layers.iter().map(|l| l.tops[0].as_str()).collect();
    assert_eq!(tops, vec!["c", "c_2", "x", "c_1"]);
    assert_eq!(net.layers[2].bottoms, vec!["c_2"]);
    assert_eq!(net.layers[3].bottoms, vec!["x"]);
    assert_eq!(net.layers[2].caffe_tops, vec!["c"]);
    // The duplicate layer name is caught by the structure check.
    let e = check_bottoms(&net).unwrap_err().to_string();
    assert!(e.contains("two layers are named 'c'"), "{e}");
}

#[test]
fn bad_nets_name_the_layer() {
    let e = net_from_proto(
        &parse(r#"layer { name: "weird" type: "Frobnicate" }"#),
        Phase::Test,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("'weird'") && e.contains("'Frobnicate'"), "{e}");
    let e = net_from_proto(
        &parse(
            r#"input: "data" input_dim: 1 input_dim: 1 input_dim: 4 input_dim: 4
               layer { name: "r" type: "ReLU" bottom: "data" top: "r" }
               layer { name: "p" type: "Pooling" bottom: "nowhere" top: "p" pooling_param { kernel_size: 2 } }"#,
        ),
        Phase::Test,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("'p'") && e.contains("'nowhere'"), "{e}");
    let e = net_from_proto(
        &parse(
            r#"layer { name: "k" type: "Convolution" convolution_param { num_output: 1 kernel_size: 3 kernel_h: 3 kernel_w: 3 } }"#,
        ),
        Phase::Test,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("'k'") && e.contains("not both"), "{e}");
    let e = net_from_proto(
        &parse(r#"layer { name: "gp" type: "Pooling" pooling_param { global_pooling: true kernel_size: 2 } }"#),
        Phase::Test,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("'gp'") && e.contains("global_pooling"), "{e}");
    let e = net_from_proto(
        &parse(r#"layer { name: "in" type: "Input" top: "a" top: "b" input_param { shape { dim: 1 } shape { dim: 2 } shape { dim: 3 } } }"#),
        Phase::Test,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("'in'") && e.contains("2 top(s) and 3 shape(s)"),
        "{e}"
    );
}

#[test]
fn weights_in_the_net_parameter_get_their_current_shapes() {
    // A legacy InnerProduct blob [1, 1, 2, 3] and bias [1, 1, 1, 2] become [2, 3] and [2].
    let mut p = parse(
        r#"input: "d" input_dim: 1 input_dim: 3 input_dim: 1 input_dim: 1
           layers { name: "ip" type: INNER_PRODUCT bottom: "d" top: "ip"
             inner_product_param { num_output: 2 }
             blobs { num: 1 channels: 1 height: 2 width: 3 data: [1, 2, 3, 4, 5, 6] }
             blobs { num: 1 channels: 1 height: 1 width: 2 data: [7, 8] } }"#,
    );
    let net = net_from_proto(&p, Phase::Test).unwrap();
    let ip = net.layer("ip").unwrap();
    assert_eq!(ip.blobs[0].shape, vec![2, 3]);
    assert_eq!(ip.blobs[1].data, vec![7.0, 8.0]);
    p.layers[0].blobs[1].data.push(9.0);
    let e = net_from_proto(&p, Phase::Test).unwrap_err().to_string();
    assert!(e.contains("'ip'") && e.contains("blob 1"), "{e}");
}

#[test]
fn a_missing_half_of_an_h_w_pair_reads_as_zero_like_caffe() {
    let conv = |params: &str| {
        let text = format!(
            r#"layer {{ name: "c" type: "Convolution" convolution_param {{ num_output: 1 {params} }} }}"#
        );
        crate::caffe::import_ops::op_from_layer(&parse(&text).layer[0])
    };
    match conv("kernel_size: 3 pad_h: 2").unwrap() {
        Op::Convolution(p) => assert_eq!(p.pad, [2, 0]),
        other => panic!("{other:?}"),
    }
    let e = conv("kernel_size: 3 stride_h: 2").unwrap_err().to_string();
    assert!(e.contains("'c'") && e.contains("stride [2, 0]"), "{e}");
    let e = conv("kernel_size: 3 kernel_h: 3 kernel_w: 3")
        .unwrap_err()
        .to_string();
    assert!(e.contains("either kernel_size or kernel_h/kernel_w"), "{e}");
    let e = conv("kernel_size: 3 kernel_size: 3 kernel_size: 3")
        .unwrap_err()
        .to_string();
    assert!(e.contains("kernel_size has 3 values"), "{e}");
}
