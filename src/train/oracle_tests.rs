//! Training against real Caffe: the levi_mini net of `fixtures-real/caffe-oracle`, its
//! initial weights and the first LMDB batch. Caffe's own backward pass (dumped with
//! pycaffe) is the reference for every parameter and blob diff.

use super::data::DataSource;
use super::net::TrainNet;
use crate::caffe::load_net;
use crate::ir::{Net, Op, Phase};
use crate::testutil::{read_f32_file, shared};
use std::path::Path;

/// Loads a levi_mini train_val net with the init weights, its Data layers pointed at the
/// oracle's LMDB and mean (the prototxt paths are relative to the oracle folder), and the
/// record shape taken from the LMDB.
pub(crate) fn levi_mini(dir: &Path, prototxt: &str, phase: Phase) -> Net {
    let mut net = load_net(
        &dir.join("levi_mini").join(prototxt),
        Some(&dir.join("levi_mini/levi_mini_init_iter_0.caffemodel")),
        phase,
    )
    .unwrap();
    for l in &mut net.layers {
        if let Op::Data(p) = &mut l.op {
            p.source = dir.join(&p.source).to_string_lossy().into_owned();
            if let Some(m) = &mut p.transform.mean_file {
                *m = dir.join(&*m).to_string_lossy().into_owned();
            }
            let src = DataSource::open(p, phase, 0).unwrap();
            p.record_shape = Some(src.output_shape());
        }
    }
    net
}

/// max |a − b| / max |b|.
pub(crate) fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs() as f64));
    let diff = a
        .iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs() as f64));
    diff / scale.max(f64::MIN_POSITIVE)
}

#[test]
fn levi_mini_backward_at_iter0_matches_caffe() {
    let Some(dir) = shared("fixtures-real/caffe-oracle") else {
        return;
    };
    let net = levi_mini(&dir, "train_val_nodropout.prototxt", Phase::Train);
    let data_params = net
        .layers
        .iter()
        .find_map(|l| match &l.op {
            Op::Data(p) => Some(p.clone()),
            _ => None,
        })
        .unwrap();
    let mut source = DataSource::open(&data_params, Phase::Train, 0).unwrap();
    let batch = source.next_batch().unwrap();
    assert_eq!(
        batch.labels.data,
        vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    );
    let mut tn = TrainNet::new(net, Phase::Train, 2, 0).unwrap();
    let loss = tn
        .forward_backward(vec![
            ("data".into(), batch.data),
            ("label".into(), batch.labels),
        ])
        .unwrap();
    assert!(
        (loss as f64 - 2.190401554107666).abs() < 1e-5,
        "loss {loss}"
    );
    let base = dir.join("levi_mini/backward_iter0");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(base.join("index.json")).unwrap()).unwrap();
    let mut report = Vec::new();
    for p in index["param_diffs"].as_array().unwrap() {
        let layer = p["layer"].as_str().unwrap();
        let i = p["index"].as_u64().unwrap() as usize;
        let want = read_f32_file(&base.join(p["file"].as_str().unwrap()));
        let li = tn.net.layers.iter().position(|l| l.name == layer).unwrap();
        let got = &tn.param_diffs(li)[i].data;
        let e = rel_err(got, &want);
        report.push(format!("param {layer}[{i}] {e:.2e}"));
        assert!(e < 1e-4, "{layer}[{i}]: relative error {e}");
    }
    for b in index["blob_diffs"].as_array().unwrap() {
        let blob = b["blob"].as_str().unwrap();
        let want = read_f32_file(&base.join(b["file"].as_str().unwrap()));
        let got = &tn
            .blob_diff(blob)
            .unwrap_or_else(|| panic!("no diff for {blob}"))
            .data;
        let e = rel_err(got, &want);
        report.push(format!("blob {blob} {e:.2e}"));
        assert!(e < 1e-4, "{blob}: relative error {e}");
    }
    eprintln!("{}", report.join("\n"));
}
