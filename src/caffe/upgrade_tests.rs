use super::*;
use crate::caffe::prototxt::{parse_text, read_prototxt};
use crate::proto::caffe::{pooling_parameter, Phase as ProtoPhase};
use crate::testutil::shared;
use std::path::Path;

fn parse(text: &str) -> NetParameter {
    parse_text(text, Path::new("inline")).unwrap()
}

fn upgraded(text: &str) -> NetParameter {
    let mut n = parse(text);
    upgrade_net(&mut n).unwrap();
    n
}

#[test]
fn levi_mini_v1_upgrades_to_the_v2_file_caffe_ran_identically() {
    // caffe-oracle: Caffe upgraded deploy_v1.prototxt and produced bit-identical outputs to
    // deploy.prototxt. After our upgrade the two must be the same net; the only difference
    // is the Input layer's name ("input", Caffe's choice, vs "data" in the V2 file).
    let (Some(v1), Some(v2)) = (
        shared("fixtures-real/caffe-oracle/levi_mini/deploy_v1.prototxt"),
        shared("fixtures-real/caffe-oracle/levi_mini/deploy.prototxt"),
    ) else {
        return;
    };
    let mut a = read_prototxt(&v1).unwrap();
    assert!(needs_upgrade(&a));
    upgrade_net(&mut a).unwrap();
    let mut b = read_prototxt(&v2).unwrap();
    assert!(!needs_upgrade(&b));
    upgrade_net(&mut b).unwrap();
    assert!(a.layers.is_empty() && a.input.is_empty() && a.input_dim.is_empty());
    assert_eq!(a.layer.len(), 1 + 19); // Input + conv1 … prob (README: 19 steps)
    assert_eq!(a.layer[0].name(), "input");
    let mut input = a.layer[0].clone();
    input.name = Some("data".into());
    assert_eq!(input, b.layer[0]);
    assert_eq!(a.layer[1..], b.layer[1..]);
}

#[test]
fn v1_params_become_param_specs_as_upgrade_v1_layer_parameter_does() {
    let Some(p) =
        shared("fixtures-real/levi_hassner/age_net_definitions/train_val_test_fold_is_0.prototxt")
    else {
        return;
    };
    let mut n = read_prototxt(&p).unwrap();
    upgrade_net(&mut n).unwrap();
    // conv1 in the file: blobs_lr 1, 2 and weight_decay 1, 0.
    let conv1 = n.layer.iter().find(|l| l.name() == "conv1").unwrap();
    assert_eq!(conv1.r#type(), "Convolution");
    let specs: Vec<_> = conv1
        .param
        .iter()
        .map(|p| (p.lr_mult, p.decay_mult))
        .collect();
    assert_eq!(specs, vec![(Some(1.0), Some(1.0)), (Some(2.0), Some(0.0))]);
    // Both data layers keep their include rules and transform_param.
    let data: Vec<_> = n.layer.iter().filter(|l| l.name() == "data").collect();
    assert_eq!(data.len(), 2);
    assert_eq!(data[0].include[0].phase, Some(ProtoPhase::Train as i32));
    assert_eq!(data[1].include[0].phase, Some(ProtoPhase::Test as i32));
    let t = data[0].transform_param.as_ref().unwrap();
    assert_eq!((t.crop_size(), t.mirror()), (227, true));
    let types: Vec<&str> = n.layer.iter().map(|l| l.r#type()).collect();
    for t in [
        "Data",
        "Convolution",
        "ReLU",
        "Pooling",
        "LRN",
        "InnerProduct",
        "Dropout",
        "Accuracy",
        "SoftmaxWithLoss",
    ] {
        assert!(types.contains(&t), "{t} missing from {types:?}");
    }
}

#[test]
fn v1_type_names_follow_upgrade_v1_layer_type() {
    use LayerType as T;
    let cases = [
        (T::Convolution, "Convolution"),
        (T::Pooling, "Pooling"),
        (T::Lrn, "LRN"),
        (T::Relu, "ReLU"),
        (T::InnerProduct, "InnerProduct"),
        (T::Softmax, "Softmax"),
        (T::SoftmaxLoss, "SoftmaxWithLoss"),
        (T::Data, "Data"),
        (T::Dropout, "Dropout"),
        (T::Concat, "Concat"),
        (T::Eltwise, "Eltwise"),
        (T::Flatten, "Flatten"),
        (T::Split, "Split"),
        (T::Accuracy, "Accuracy"),
        (T::Sigmoid, "Sigmoid"),
        (T::Tanh, "TanH"),
        (T::Hdf5Data, "HDF5Data"),
        (T::Bnll, "BNLL"),
        (T::Mvn, "MVN"),
        (T::Absval, "AbsVal"),
        (T::Argmax, "ArgMax"),
        (T::None, ""),
    ];
    for (t, want) in cases {
        assert_eq!(v1_type_name(t), want);
    }
}

#[test]
fn v1_data_transform_fields_move_into_transform_param() {
    let n = upgraded(
        r#"layers { name: "d" type: DATA top: "data" top: "label"
             data_param { source: "db" batch_size: 4 scale: 0.00390625 mean_file: "m.binaryproto"
                          crop_size: 227 mirror: true } }
           layers { name: "i" type: IMAGE_DATA top: "x" top: "y"
             image_data_param { source: "list.txt" crop_size: 11 } }"#,
    );
    let d = &n.layer[0];
    assert_eq!(d.r#type(), "Data");
    let dp = d.data_param.as_ref().unwrap();
    assert!(dp.scale.is_none() && dp.mean_file.is_none() && dp.crop_size.is_none());
    assert_eq!((dp.source(), dp.batch_size()), ("db", 4));
    let t = d.transform_param.as_ref().unwrap();
    assert_eq!(t.scale(), 0.00390625);
    assert_eq!(t.mean_file(), "m.binaryproto");
    assert_eq!((t.crop_size(), t.mirror()), (227, true));
    let t = n.layer[1].transform_param.as_ref().unwrap();
    assert_eq!(t.crop_size(), 11);
    assert!(n.layer[1]
        .image_data_param
        .as_ref()
        .unwrap()
        .crop_size
        .is_none());
}

#[test]
fn inputs_become_an_input_layer_in_front() {
    let n = upgraded(
        r#"input: "a" input_dim: 1 input_dim: 3 input_dim: 4 input_dim: 5
           input: "b" input_dim: 2 input_dim: 1 input_dim: 1 input_dim: 1
           layer { name: "r" type: "ReLU" bottom: "a" top: "a" }"#,
    );
    assert_eq!(n.layer.len(), 2);
    let input = &n.layer[0];
    assert_eq!((input.name(), input.r#type()), ("input", "Input"));
    assert_eq!(input.top, vec!["a", "b"]);
    let shapes: Vec<Vec<i64>> = input
        .input_param
        .as_ref()
        .unwrap()
        .shape
        .iter()
        .map(|s| s.dim.clone())
        .collect();
    assert_eq!(shapes, vec![vec![1, 3, 4, 5], vec![2, 1, 1, 1]]);
    let n = upgraded(r#"input: "a" input_shape { dim: 1 dim: 2 } layer { name: "r" }"#);
    assert_eq!(
        n.layer[0].input_param.as_ref().unwrap().shape[0].dim,
        vec![1, 2]
    );
    // A bare input name (old caffemodels) carries nothing and is dropped.
    let n = upgraded(r#"input: "a" layer { name: "r" }"#);
    assert_eq!(n.layer.len(), 1);
}

#[test]
fn ceil_mode_maps_to_round_mode_and_batch_norm_params_are_cleared() {
    let n = upgraded(
        r#"layer { name: "p" type: "Pooling" pooling_param { kernel_size: 3 ceil_mode: false } }
           layer { name: "q" type: "Pooling" pooling_param { kernel_size: 3 ceil_mode: true } }
           layer { name: "bn" type: "BatchNorm" param { lr_mult: 0 } param { lr_mult: 0 }
                   param { lr_mult: 0 } }"#,
    );
    let p = n.layer[0].pooling_param.as_ref().unwrap();
    assert_eq!(p.round_mode(), pooling_parameter::RoundMode::Floor);
    assert!(p.ceil_mode.is_none());
    let q = n.layer[1].pooling_param.as_ref().unwrap();
    assert_eq!(q.round_mode(), pooling_parameter::RoundMode::Ceil);
    assert!(n.layer[2].param.is_empty());
    let mut bad = parse(
        r#"layer { name: "p" type: "Pooling"
                   pooling_param { kernel_size: 3 ceil_mode: false round_mode: CEIL } }"#,
    );
    let e = upgrade_net(&mut bad).unwrap_err().to_string();
    assert!(e.contains("'p'") && e.contains("disagree"), "{e}");
}

#[test]
fn inconsistent_legacy_nets_are_refused() {
    let mut both = parse(r#"layers { name: "a" type: RELU } layer { name: "b" }"#);
    let e = upgrade_net(&mut both).unwrap_err().to_string();
    assert!(e.contains("both V1"), "{e}");
    let mut v0 = parse(r#"layers { name: "old" layer { name: "old" type: "conv" } }"#);
    let e = upgrade_net(&mut v0).unwrap_err().to_string();
    assert!(e.contains("'old'") && e.contains("V0"), "{e}");
    let mut dims = parse(r#"input: "a" input_dim: 1 input_dim: 3"#);
    let e = upgrade_net(&mut dims).unwrap_err().to_string();
    assert!(e.contains("need 4 input_dim values, found 2"), "{e}");
    let mut mixed = parse(r#"input: "a" input_dim: 1 input_shape { dim: 1 }"#);
    assert!(upgrade_net(&mut mixed).is_err());
}
