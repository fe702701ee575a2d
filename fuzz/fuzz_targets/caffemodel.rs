//! Fuzzes the caffemodel (binary NetParameter) reader through the V1 upgrade, the deploy
//! conversion and IR building. The first byte picks the input shape a train-net model
//! (whose images came from an LMDB) is given; the rest is the file.
#![no_main]

use agegender::caffe::caffemodel::decode_caffemodel;
use agegender::caffe::import::{build_net, check_net};
use agegender::caffe::load::caffemodel_deploy_proto;
use agegender::caffe::upgrade::upgrade_net;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

/// Input shapes of the real seed models (lenet, cifar10, the three MTCNN nets, Levi &
/// Hassner); index 6 and above means "none given".
const SHAPES: [[usize; 4]; 6] = [
    [1, 1, 28, 28],
    [1, 3, 32, 32],
    [1, 3, 12, 12],
    [1, 3, 24, 24],
    [1, 3, 48, 48],
    [1, 3, 227, 227],
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let shape = SHAPES.get(usize::from(pick)).map(|s| &s[..]);
    let Ok(mut param) = decode_caffemodel(bytes, Path::new("fuzz.caffemodel")) else {
        return;
    };
    if upgrade_net(&mut param).is_err() {
        return;
    }
    let Ok(deploy) = caffemodel_deploy_proto(&param, shape) else {
        return;
    };
    if let Ok(mut net) = build_net(&deploy) {
        let _ = check_net(&mut net);
    }
});
