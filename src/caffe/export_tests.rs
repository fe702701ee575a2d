use super::*;
use crate::caffe::caffemodel::read_caffemodel;
use crate::caffe::import::net_from_proto;
use crate::caffe::load::load_net;
use crate::caffe::prototxt::{parse_text, read_prototxt};
use crate::ir::Phase;
use crate::testutil::shared;

fn reimport(net: &Net, phase: Phase) -> Net {
    let text = net_to_prototxt(net);
    let p: NetParameter = parse_text(&text, Path::new("exported")).unwrap();
    net_from_proto(&p, phase).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[test]
fn prototxt_to_ir_to_prototxt_to_ir_is_exact_for_every_real_net() {
    let Some(files) = crate::caffe::prototxt::tests::all_prototxts() else {
        return;
    };
    let mut checked = 0;
    for f in files
        .iter()
        .filter(|f| !crate::caffe::prototxt::tests::is_solver(f))
    {
        let p = read_prototxt(f).unwrap();
        for phase in [Phase::Test, Phase::Train] {
            // The timing net's DummyData is outside the IR (see the import tests).
            let Ok(net) = net_from_proto(&p, phase) else {
                continue;
            };
            assert_eq!(reimport(&net, phase), net, "{} {phase:?}", f.display());
            checked += 1;
        }
    }
    assert!(checked >= 60, "{checked}");
}

#[test]
fn the_exported_levi_mini_deploy_is_the_file_caffe_ran() {
    // deploy.prototxt was written by Python protobuf for the Caffe runs; our export of the
    // net read from it (or from its V1 twin) prints the same bytes: Input layer named after
    // the blob, in-place ReLU/Dropout written back in place, only non-default fields.
    let (Some(v2), Some(v1)) = (
        shared("fixtures-real/caffe-oracle/levi_mini/deploy.prototxt"),
        shared("fixtures-real/caffe-oracle/levi_mini/deploy_v1.prototxt"),
    ) else {
        return;
    };
    let original = std::fs::read_to_string(&v2).unwrap();
    for src in [&v2, &v1] {
        let net = load_net(src, None, Phase::Test).unwrap();
        assert_eq!(net_to_prototxt(&net), original, "{}", src.display());
    }
}

#[test]
fn caffemodel_to_ir_to_caffemodel_to_ir_keeps_weights_bit_identical() {
    let cases = [
        (
            "caffe-oracle/levi_mini/deploy.prototxt",
            "caffe-oracle/levi_mini/levi_mini_init_iter_0.caffemodel",
        ),
        (
            "caffe/lenet/lenet.prototxt",
            "caffe/lenet/lenet_iter_10000.caffemodel",
        ),
        ("caffe/mtcnn/det3.prototxt", "caffe/mtcnn/det3.caffemodel"),
        (
            "ncs/simcam-emotion/deploy.prototxt",
            "ncs/simcam-emotion/emotion.caffemodel",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (proto, model) in cases {
        let (Some(proto), Some(model)) = (
            shared(&format!("fixtures-real/{proto}")),
            shared(&format!("fixtures-real/{model}")),
        ) else {
            return;
        };
        let net = load_net(&proto, Some(&model), Phase::Test).unwrap();
        let out = dir.path().join("out.caffemodel");
        write_caffemodel(&net, &out).unwrap();
        let again = load_net(&proto, Some(&out), Phase::Test).unwrap();
        assert_eq!(again, net, "{}", model.display());
        let bits = |n: &Net| -> Vec<u32> {
            n.layers
                .iter()
                .flat_map(|l| &l.blobs)
                .flat_map(|b| b.data.iter().map(|v| v.to_bits()))
                .collect()
        };
        assert_eq!(bits(&again), bits(&net));
        // The file alone holds the same net (its Input layer gives the shape).
        let alone = crate::caffe::load::load_caffemodel_net(&out).unwrap();
        assert_eq!(alone, net, "{} alone", model.display());
        // Written in the current form: V2 layers, BlobShape dims, no legacy fields.
        let raw = read_caffemodel(&out).unwrap();
        let decoded =
            <NetParameter as Message>::decode(std::fs::read(&out).unwrap().as_slice()).unwrap();
        assert!(decoded.layers.is_empty() && decoded.layer.len() == raw.layer.len());
        for b in decoded.layer.iter().flat_map(|l| &l.blobs) {
            assert!(b.shape.is_some() && b.num.is_none() && b.channels.is_none());
        }
        // Writing what was read gives the same bytes again.
        let out2 = dir.path().join("out2.caffemodel");
        write_caffemodel(&again, &out2).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&out2).unwrap());
    }
}

#[test]
fn in_place_layers_are_written_back_in_place() {
    let Some(p) = shared("fixtures-real/levi_hassner/age_net_definitions/deploy.prototxt") else {
        return;
    };
    let net = load_net(&p, None, Phase::Test).unwrap();
    let proto = net_to_proto(&net, false);
    let find = |name: &str| proto.layer.iter().find(|l| l.name() == name).unwrap();
    assert_eq!(
        (find("relu1").bottom.clone(), find("relu1").top.clone()),
        (vec!["conv1".to_string()], vec!["conv1".to_string()])
    );
    assert_eq!(find("drop6").top, vec!["fc6"]);
    assert_eq!(find("pool1").bottom, vec!["conv1"]);
    assert_eq!(find("fc7").bottom, vec!["fc6"]);
    let input = &proto.layer[0];
    assert_eq!(
        (input.name(), input.r#type(), input.top.clone()),
        ("data", "Input", vec!["data".to_string()])
    );
    assert!(proto.layers.is_empty() && proto.input.is_empty());
}

#[test]
fn a_failed_write_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let net = Net::default();
    let target = dir.path().join("no_such_dir").join("net.prototxt");
    let e = write_prototxt(&net, &target).unwrap_err().to_string();
    assert!(e.contains("net.prototxt"), "{e}");
    let e = write_caffemodel(&net, &dir.path().join("no_such_dir").join("w.caffemodel"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("w.caffemodel"), "{e}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
