use super::*;
use crate::caffe::blob::blob_shape;
use crate::testutil::shared;
use rand::{RngCore, SeedableRng};

const CAFFEMODELS: [&str; 9] = [
    "fixtures-real/caffe/lenet/lenet_iter_10000.caffemodel",
    "fixtures-real/caffe/cifar10_full/cifar10_full_iter_70000.caffemodel",
    "fixtures-real/caffe/mtcnn/det1.caffemodel",
    "fixtures-real/caffe/mtcnn/det2.caffemodel",
    "fixtures-real/caffe/mtcnn/det3.caffemodel",
    "fixtures-real/caffe-oracle/levi_mini/levi_mini_init_iter_0.caffemodel",
    "fixtures-real/caffe-oracle/trajectory/step10000/levi_mini_nodrop_iter_1.caffemodel",
    "fixtures-real/caffe-oracle/trajectory/step10000/levi_mini_nodrop_iter_30.caffemodel",
    "fixtures-real/ncs/simcam-emotion/emotion.caffemodel",
];

#[test]
fn real_caffemodels_re_encode_byte_for_byte() {
    // Files written by C++ protobuf (Caffe, 2014–2020): decoding and encoding again with our
    // schema must give the same bytes, which checks field numbers, wire types, packing and
    // field order of every message they use (V1 and V2 layers, legacy and BlobShape blobs).
    // The MTCNN files are left out: their loss layers carry two fields of the fork they were
    // trained with (softmax_param field 3, loss_param field 4), unknown to BVLC's schema and
    // so dropped by the decoder; the weights are unaffected.
    for rel in CAFFEMODELS.iter().filter(|r| !r.contains("mtcnn")) {
        let Some(p) = shared(rel) else {
            return;
        };
        let bytes = std::fs::read(&p).unwrap();
        let net = decode_caffemodel(&bytes, &p).unwrap();
        assert!(net.encode_to_vec() == bytes, "{rel} re-encodes differently");
    }
}

#[test]
fn v1_and_v2_caffemodels_decode_and_upgrade() {
    let Some(p) = shared(CAFFEMODELS[0]) else {
        return;
    };
    // LeNet: a V1 file (field 2) with legacy 4-D dims, holding the train net.
    let raw = decode_caffemodel(&std::fs::read(&p).unwrap(), &p).unwrap();
    assert_eq!((raw.layers.len(), raw.layer.len()), (9, 0));
    let net = read_caffemodel(&p).unwrap();
    assert_eq!(net.layer.len(), 9);
    let names: Vec<&str> = net.layer.iter().map(|l| l.name()).collect();
    assert_eq!(
        names,
        ["mnist", "conv1", "pool1", "conv2", "pool2", "ip1", "relu1", "ip2", "loss"]
    );
    let ip1 = &net.layer[5];
    assert_eq!(ip1.r#type(), "InnerProduct");
    assert!(ip1.blobs[0].shape.is_none());
    assert_eq!(blob_shape(&ip1.blobs[0]).unwrap(), vec![1, 1, 500, 800]);
    assert_eq!(net.layer[8].r#type(), "SoftmaxWithLoss");
    // det1: a V2 file (field 100) with BlobShape dims.
    let p = shared(CAFFEMODELS[2]).unwrap();
    let raw = decode_caffemodel(&std::fs::read(&p).unwrap(), &p).unwrap();
    assert!(raw.layers.is_empty() && !raw.layer.is_empty());
    let conv1 = raw.layer.iter().find(|l| l.name() == "conv1").unwrap();
    assert_eq!(
        conv1.blobs[0].shape.as_ref().unwrap().dim,
        vec![10, 3, 3, 3]
    );
}

#[test]
fn an_empty_file_is_an_empty_net() {
    let Some(p) = shared("fixtures-real/ncs/beloborodov-empty-fc/empty.caffemodel") else {
        return;
    };
    let net = read_caffemodel(&p).unwrap();
    assert!(net.layer.is_empty() && net.name.is_none());
}

#[test]
fn truncated_random_and_text_files_are_errors_naming_the_file() {
    let Some(src) = shared(CAFFEMODELS[2]) else {
        return;
    };
    let bytes = std::fs::read(&src).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.caffemodel");
    // Cut inside a blob's packed data, in the middle of the file and after one byte.
    for cut in [bytes.len() - 3, bytes.len() / 2, 1] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let e = read_caffemodel(&path).unwrap_err().to_string();
        assert!(e.contains("broken.caffemodel"), "cut {cut}: {e}");
        assert!(e.contains("not a valid caffemodel"), "cut {cut}: {e}");
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    for size in [16, 1000, 100_000] {
        let mut junk = vec![0u8; size];
        rng.fill_bytes(&mut junk);
        std::fs::write(&path, &junk).unwrap();
        let e = read_caffemodel(&path).unwrap_err().to_string();
        assert!(e.contains("broken.caffemodel"), "{size} random bytes: {e}");
    }
    if let Some(txt) = shared("fixtures-real/caffe/mtcnn/det1.prototxt") {
        let e = read_caffemodel(&txt).unwrap_err().to_string();
        assert!(e.contains("det1.prototxt"), "{e}");
    }
    let e = read_caffemodel(&dir.path().join("missing.caffemodel"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("cannot read") && e.contains("missing.caffemodel"),
        "{e}"
    );
}

#[test]
fn a_claimed_length_beyond_the_file_is_refused_before_allocating() {
    // Field 100 (layer), wire type 2, then a varint length of 2^40: far beyond the 8 bytes
    // that follow. The decoder must refuse instead of reserving a terabyte.
    let mut bytes = vec![0xa2, 0x06];
    let mut len: u64 = 1 << 40;
    while len >= 0x80 {
        bytes.push((len as u8) | 0x80);
        len >>= 7;
    }
    bytes.push(len as u8);
    bytes.extend_from_slice(&[0; 8]);
    let e = decode_caffemodel(&bytes, Path::new("huge.caffemodel"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("huge.caffemodel"), "{e}");
}
