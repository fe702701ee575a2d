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

use super::trainer::{TrainOptions, TrainReport, Trainer};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Writes, into `tmp`, a copy of an oracle solver and its net whose relative paths
/// (net, LMDB, mean) point into the oracle folder and whose snapshots go to `tmp`.
/// `extra` is appended to the solver text (later fields override earlier ones).
fn oracle_solver(
    tmp: &Path,
    dir: &Path,
    solver: &str,
    net: &str,
    extra: &str,
) -> std::path::PathBuf {
    let abs = |rel: &str| dir.join(rel).to_string_lossy().into_owned();
    let net_text = std::fs::read_to_string(dir.join("levi_mini").join(net))
        .unwrap()
        .replace(
            "\"utkface24_lmdb\"",
            &format!("{:?}", abs("utkface24_lmdb")),
        )
        .replace(
            "\"mean.binaryproto\"",
            &format!("{:?}", abs("mean.binaryproto")),
        );
    let net_path = tmp.join(net);
    std::fs::write(&net_path, net_text).unwrap();
    let mut text = String::new();
    for line in std::fs::read_to_string(dir.join("levi_mini").join(solver))
        .unwrap()
        .lines()
    {
        let key = line.split(':').next().unwrap_or("");
        let overridden = extra.lines().any(|e| e.split(':').next() == Some(key));
        if key == "net" || key == "snapshot_prefix" || overridden {
            continue;
        }
        text.push_str(line);
        text.push('\n');
    }
    text.push_str(&format!("net: {:?}\n", net_path.to_string_lossy()));
    text.push_str(&format!(
        "snapshot_prefix: {:?}\n",
        tmp.join("snap").to_string_lossy()
    ));
    text.push_str(extra);
    let path = tmp.join(solver);
    std::fs::write(&path, text).unwrap();
    path
}

fn run(solver: &Path, weights: Option<&Path>, resume: Option<&Path>) -> TrainReport {
    Trainer::new(TrainOptions {
        solver: solver.to_path_buf(),
        weights: weights.map(Path::to_path_buf),
        resume: resume.map(Path::to_path_buf),
        threads: 2,
        log: None,
        verbose: false,
        stop: Arc::new(AtomicBool::new(false)),
    })
    .unwrap()
    .solve()
    .unwrap()
}

fn caffemodel_params(path: &Path) -> Vec<(String, Vec<Vec<f32>>)> {
    let net = crate::caffe::caffemodel::read_caffemodel(path).unwrap();
    net.layer
        .iter()
        .filter(|l| !l.blobs.is_empty())
        .map(|l| {
            (
                l.name().to_string(),
                l.blobs.iter().map(|b| b.data.clone()).collect(),
            )
        })
        .collect()
}

#[test]
fn levi_mini_trajectory_matches_caffe_across_an_lr_step() {
    let Some(dir) = shared("fixtures-real/caffe-oracle") else {
        return;
    };
    let traj: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("train_trajectory.json")).unwrap()).unwrap();
    let init = dir.join("levi_mini/levi_mini_init_iter_0.caffemodel");
    for (run_name, solver) in [
        ("step10", "solver_traj_step10.prototxt"),
        ("step10000", "solver_traj_step10000.prototxt"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let s = oracle_solver(tmp.path(), &dir, solver, "train_val_nodropout.prototxt", "");
        let report = run(&s, Some(&init), None);
        let caffe = &traj["runs"][run_name];
        let iters = caffe["iterations"].as_array().unwrap();
        assert_eq!(report.losses.len(), iters.len());
        let mut worst = 0.0f64;
        for (i, (ours, c)) in report.losses.iter().zip(iters).enumerate() {
            let want = c["loss_float32"].as_f64().unwrap();
            let rel = ((*ours as f64) - want).abs() / want.abs();
            worst = worst.max(rel);
            let tol = if i < 5 { 1e-5 } else { 1e-4 };
            assert!(
                rel < tol,
                "{run_name} iteration {i}: loss {ours} vs Caffe {want}"
            );
            let lr = c["lr"].as_f64().unwrap();
            assert!(
                ((report.rates[i] as f64) - lr).abs() <= 1e-6 * lr,
                "{run_name} lr at {i}"
            );
        }
        for t in &report.tests {
            let c = &caffe["tests"][t.iter.to_string()];
            let (acc, loss) = (c["accuracy"].as_f64().unwrap(), c["loss"].as_f64().unwrap());
            assert!(
                (t.test_accuracy.unwrap() - acc).abs() < 1e-6,
                "{run_name} test accuracy at {}",
                t.iter
            );
            assert!(
                (t.test_loss.unwrap() - loss).abs() < 1e-4 * loss,
                "{run_name} test loss at {}",
                t.iter
            );
        }
        assert_eq!(report.tests.len(), 4);
        let snap = &report.snapshots.last().unwrap().caffemodel;
        assert!(
            snap.ends_with("snap_iter_30.caffemodel"),
            "{}",
            snap.display()
        );
        eprintln!("{run_name}: worst relative loss difference over 30 iterations {worst:.2e}");
        if run_name == "step10000" {
            // Weights and momentum after 30 updates, against Caffe's snapshot.
            let want = caffemodel_params(
                &dir.join("trajectory/step10000/levi_mini_nodrop_iter_30.caffemodel"),
            );
            let got = caffemodel_params(snap);
            for ((name, w), (_, g)) in want.iter().zip(&got) {
                for (i, (w, g)) in w.iter().zip(g).enumerate() {
                    let e = rel_err(g, w);
                    eprintln!("{name}[{i}] weights after 30 updates: {e:.2e}");
                    assert!(e < 1e-3, "{name}[{i}] weights after 30 updates: {e}");
                }
            }
            let want = super::state::read_solverstate(
                &dir.join("trajectory/step10000/levi_mini_nodrop_iter_30.solverstate"),
            )
            .unwrap();
            let got = super::state::read_solverstate(&report.snapshots.last().unwrap().solverstate)
                .unwrap();
            assert_eq!((got.iter, got.current_step), (30, 0));
            for (i, (g, w)) in got.history.iter().zip(&want.history).enumerate() {
                let e = rel_err(&g.data, &w.data);
                eprintln!("history {i} after 30 updates: {e:.2e}");
                assert!(e < 1e-3, "history {i} after 30 updates: {e}");
            }
        }
    }
}

#[test]
fn resuming_from_a_snapshot_equals_training_straight_through() {
    let Some(dir) = shared("fixtures-real/caffe-oracle") else {
        return;
    };
    let init = dir.join("levi_mini/levi_mini_init_iter_0.caffemodel");
    // With dropout (random masks) and momentum, 12 iterations straight versus 5, then a
    // resume for 7, must give bit-identical weights and history.
    let straight = tempfile::tempdir().unwrap();
    let extra =
        "max_iter: 12\ntest_interval: 100\ntest_initialization: false\ndisplay: 0\nsnapshot: 5\n";
    let s = oracle_solver(
        straight.path(),
        &dir,
        "solver_traj_step10.prototxt",
        "train_val.prototxt",
        extra,
    );
    let full = run(&s, Some(&init), None);
    assert_eq!(full.iter, 12);
    let split = tempfile::tempdir().unwrap();
    let s2 = oracle_solver(
        split.path(),
        &dir,
        "solver_traj_step10.prototxt",
        "train_val.prototxt",
        &extra.replace("max_iter: 12", "max_iter: 5"),
    );
    let first = run(&s2, Some(&init), None);
    assert_eq!(first.iter, 5);
    let s3 = oracle_solver(
        split.path(),
        &dir,
        "solver_traj_step10.prototxt",
        "train_val.prototxt",
        extra,
    );
    let second = run(&s3, None, Some(&first.snapshots[0].solverstate));
    assert_eq!(second.iter, 12);
    assert_eq!(&full.losses[5..], &second.losses[..]);
    let a = caffemodel_params(&full.snapshots.last().unwrap().caffemodel);
    let b = caffemodel_params(&second.snapshots.last().unwrap().caffemodel);
    assert_eq!(a, b, "weights differ after resuming");
    let ha = super::state::read_solverstate(&full.snapshots.last().unwrap().solverstate).unwrap();
    let hb = super::state::read_solverstate(&second.snapshots.last().unwrap().solverstate).unwrap();
    assert_eq!((ha.iter, ha.history), (hb.iter, hb.history));
}
