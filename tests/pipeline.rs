//! The pipeline's pieces against independent references: the nets and solvers it writes
//! against Levi & Hassner's original files, the test step against real Caffe's records and
//! forward pass, the format/verify/infer steps on a real net, the report's layout, and
//! (once data prepare and training have landed) `pipeline --quick` end to end.

use agegender::caffe::load_net;
use agegender::caffe::prototxt::read_solver;
use agegender::eval::{ClassNames, ConfusionMatrix};
use agegender::infer::{Mean, Predictor, PredictorOptions};
use agegender::ir::{Net, Op, Phase};
use agegender::pipeline::prototxt::{
    deploy_prototxt, solver_prototxt, train_val_prototxt, NetKind, Schedule,
};
use agegender::pipeline::report::{DatasetInfo, PipelineReport};
use agegender::pipeline::stages;
use agegender::testutil::{read_f32_file, shared};
use agegender::train::{LrPolicy, Method, SolverConfig};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Every layer of `ours` equals the same-named layer of `original` (op with its fillers,
/// learning-rate and decay multipliers, phase), except fc8's class count.
fn assert_same_layers(ours: &Net, original: &Net, classes: usize, skip_data: bool) {
    let names = |n: &Net| n.layers.iter().map(|l| l.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(ours), names(original));
    for (a, b) in ours.layers.iter().zip(&original.layers) {
        if skip_data && matches!(a.op, Op::Data(_)) {
            continue;
        }
        let mut op = a.op.clone();
        if let (Op::InnerProduct(p), "fc8") = (&mut op, a.name.as_str()) {
            assert_eq!(p.num_output, classes);
            let Op::InnerProduct(q) = &b.op else { panic!() };
            p.num_output = q.num_output;
        }
        assert_eq!(op, b.op, "layer {}", a.name);
        let specs = |l: &agegender::ir::Layer| (0..2).map(|i| l.param(i)).collect::<Vec<_>>();
        assert_eq!(specs(a), specs(b), "layer {} params", a.name);
        assert_eq!(a.phase, b.phase, "layer {} phase", a.name);
    }
}

#[test]
fn written_nets_have_levi_hassners_layers_fillers_and_multipliers() {
    let Some(orig) = shared("fixtures-real/levi_hassner/age_net_definitions") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    for kind in [NetKind::Age, NetKind::Gender] {
        let tv = write(
            tmp.path(),
            "tv.prototxt",
            &train_val_prototxt(
                kind,
                Path::new("/data/age_train_lmdb"),
                Path::new("/data/age_test_lmdb"),
                Path::new("/data/mean.binaryproto"),
                50,
                50,
                227,
            ),
        );
        let original = orig.join("train_val_test_fold_is_0.prototxt");
        for phase in [Phase::Train, Phase::Test] {
            let ours = load_net(&tv, None, phase).unwrap();
            let theirs = load_net(&original, None, phase).unwrap();
            assert_same_layers(&ours, &theirs, kind.classes(), true);
            // The transform of the original: crop 227, mirror in TRAIN only, batch 50.
            let Op::Data(d) = &ours.layers[0].op else {
                panic!()
            };
            let Op::Data(o) = &theirs.layers[0].op else {
                panic!()
            };
            assert_eq!(d.transform.crop_size, o.transform.crop_size);
            assert_eq!(d.transform.mirror, o.transform.mirror);
            assert_eq!(d.batch_size, o.batch_size);
            let source = match phase {
                Phase::Train => "/data/age_train_lmdb",
                Phase::Test => "/data/age_test_lmdb",
            };
            assert_eq!(d.source, source);
        }
        let deploy = write(tmp.path(), "deploy.prototxt", &deploy_prototxt(kind, 227));
        let ours = load_net(&deploy, None, Phase::Test).unwrap();
        let theirs = load_net(&orig.join("deploy.prototxt"), None, Phase::Test).unwrap();
        // The original deploy omits fillers and multipliers, so compare shapes and types.
        let shapes = ours.infer_shapes().unwrap();
        assert_eq!(shapes["pool5"], [1, 384, 7, 7]); // 227 → 56 → 28 → 14 → 7
        assert_eq!(ours.outputs(), ["prob"]);
        assert_eq!(shapes["prob"], [1, kind.classes()]);
        let kinds = |n: &Net| {
            n.layers
                .iter()
                .map(|l| l.op.caffe_type())
                .collect::<Vec<_>>()
        };
        assert_eq!(kinds(&ours), kinds(&theirs));
        assert_eq!(ours.inputs[0].shape, theirs.inputs[0].shape);
    }
}

#[test]
fn solvers_carry_the_original_and_the_tuned_schedules() {
    let Some(orig) =
        shared("fixtures-real/levi_hassner/age_net_definitions/solver_test_fold_is_0.prototxt")
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let parse = |p: &Path| SolverConfig::from_proto(&read_solver(p).unwrap()).unwrap();
    let net = Path::new("train_val.prototxt");
    let ours = parse(&write(
        tmp.path(),
        "s.prototxt",
        &solver_prototxt(&Schedule::original(), net, Path::new("snap/AgeNet")),
    ));
    let theirs = parse(&orig);
    assert_eq!(ours.method, theirs.method);
    assert_eq!(ours.base_lr, theirs.base_lr);
    assert_eq!(ours.lr_policy, theirs.lr_policy);
    assert_eq!(ours.momentum, theirs.momentum);
    assert_eq!(ours.weight_decay, theirs.weight_decay);
    assert_eq!(ours.max_iter, theirs.max_iter);
    assert_eq!(ours.test_interval, theirs.test_interval);
    assert_eq!(ours.snapshot, theirs.snapshot);
    assert_eq!(
        ours.lr_policy,
        LrPolicy::Step {
            gamma: 0.1,
            stepsize: 10000
        }
    );

    let tuned = parse(&write(
        tmp.path(),
        "t.prototxt",
        &solver_prototxt(
            &Schedule::tuned(400, 32, 3, 5),
            net,
            Path::new("snap/AgeNet"),
        ),
    ));
    assert_eq!(tuned.method, Method::Adam);
    assert_eq!(tuned.base_lr, 3e-4);
    assert_eq!(tuned.max_iter, 400);
    assert_eq!(tuned.test_interval, 80);
    assert_eq!(tuned.momentum2, 0.999);
    assert_eq!(tuned.snapshot_prefix.as_deref(), Some("snap/AgeNet"));
}

/// The test step on Caffe's own 24 records (convert_imageset) with levi_mini's initial
/// weights and Caffe's mean: the actual classes come from the list file, and the first
/// three predictions are those of Caffe's forward pass (argmax 6 for all three).
#[test]
fn test_step_on_caffes_records_counts_labels_and_caffes_predictions() {
    let Some(root) = shared("fixtures-real/caffe-oracle") else {
        return;
    };
    let records = stages::read_lmdb_images(&root.join("utkface24_lmdb")).unwrap();
    assert_eq!(records.len(), 24);
    let list = std::fs::read_to_string(root.join("utkface24_list.txt")).unwrap();
    let labels: Vec<i64> = list
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap().parse().unwrap())
        .collect();
    let record_labels: Vec<i64> = records.iter().map(|r| r.2).collect();
    assert_eq!(record_labels, labels);

    let predictor = Predictor::from_files(
        &root.join("levi_mini/deploy.prototxt"),
        Some(&root.join("levi_mini/levi_mini_init_iter_0.caffemodel")),
        Some(&root.join("mean.binaryproto")),
        &PredictorOptions::default(),
    )
    .unwrap();
    let report = stages::evaluate(&predictor, NetKind::Age, &records).unwrap();
    assert_eq!(report.total, 24);
    for class in 0..9 {
        let actual = labels.iter().filter(|&&l| l == class as i64).count() as u64;
        assert_eq!(report.confusion[class].iter().sum::<u64>(), actual);
    }
    let prob = read_f32_file(&root.join("levi_mini/forward/18_prob.f32"));
    let first3 = predictor
        .predict(&records[..3].iter().map(|r| r.1.clone()).collect::<Vec<_>>())
        .unwrap();
    for (i, row) in first3.iter().enumerate() {
        let caffe = &prob[i * 9..(i + 1) * 9];
        let best = |r: &[f32]| (0..9).max_by(|&a, &b| r[a].total_cmp(&r[b])).unwrap();
        assert_eq!(best(row), best(caffe));
        assert!(report.confusion[labels[i] as usize][best(caffe)] >= 1);
    }
}

/// Formats, verification and inference on levi_tiny standing in for a trained AgeNet:
/// the four files appear under their names, every format passes its preset against the
/// caffemodel, and every format predicts the caffemodel's classes.
#[test]
fn formats_verify_and_infer_steps_on_a_levi_net() {
    let Some(faces) = shared("data/utkface-asian") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let net = agegender::model::load_model(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/models/levi_tiny.caffemodel"),
        None,
    )
    .unwrap();
    let files = stages::write_formats(&net, NetKind::Age, tmp.path()).unwrap();
    for (f, name) in [
        (&files.deploy, "AgeNet_deploy.prototxt"),
        (&files.caffemodel, "AgeNet.caffemodel"),
        (&files.onnx, "AgeNet.onnx"),
        (&files.graph, "AgeNet.graph"),
    ] {
        assert_eq!(f, &tmp.path().join(name));
        assert!(f.metadata().unwrap().len() > 0);
    }
    let mut names: Vec<_> = std::fs::read_dir(&faces)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let images: Vec<_> = names
        .iter()
        .step_by(500)
        .take(6)
        .map(|n| {
            let img = agegender::io::image::read_image(&faces.join(n)).unwrap();
            let label = (n.split('_').next().unwrap().parse::<i64>().unwrap() / 10).min(8);
            (
                n.clone(),
                agegender::io::image::resize_linear(&img, 227, 227),
                label,
            )
        })
        .collect();
    let mean = Mean::PerChannel(vec![104.0, 117.0, 123.0]);
    let predictor = Predictor::new(net.clone(), &mean, &PredictorOptions::default()).unwrap();
    let inputs: Vec<_> = predictor
        .prepare(&images.iter().map(|i| i.1.clone()).collect::<Vec<_>>())
        .into_iter()
        .map(|x| agegender::ir::Tensor {
            shape: vec![1, 3, 227, 227],
            data: x,
        })
        .collect();
    let rows = stages::verify_formats(NetKind::Age, &files, &inputs, 0).unwrap();
    assert_eq!(rows.len(), 3);
    for r in &rows {
        assert!(r.pass, "{r:?}");
    }
    let inferred =
        stages::infer_formats(NetKind::Age, &files, &mean, &images, 0, Default::default()).unwrap();
    assert_eq!(inferred.len(), 5 * images.len());
    let reference: Vec<_> = predictor
        .predict(&images.iter().map(|i| i.1.clone()).collect::<Vec<_>>())
        .unwrap();
    for (i, r) in inferred.iter().enumerate() {
        let want = &reference[i % images.len()];
        let got = &r.prediction.probabilities;
        let diff = got
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        let tol = if r.format == "graph/f16" { 1e-3 } else { 5e-4 };
        assert!(diff < tol, "{} {}: {diff}", r.format, r.image);
        assert!(r.line.starts_with("Age predicted: "), "{}", r.line);
    }
}

/// `report.json` has the fields the checks read, with the numbers given to it, and
/// `report.md` puts the accuracies beside the original's.
#[test]
fn report_has_the_required_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let mut age = ConfusionMatrix::new(ClassNames::age());
    for (a, p) in [(2, 2), (2, 3), (5, 5), (0, 8)] {
        age.add(a, p).unwrap();
    }
    let mut gender = ConfusionMatrix::new(ClassNames::gender());
    for (a, p) in [(0, 0), (1, 1), (1, 0)] {
        gender.add(a, p).unwrap();
    }
    let report = PipelineReport {
        dataset: DatasetInfo {
            source: "synthetic".into(),
            synthetic: true,
            images: 4,
            records: BTreeMap::new(),
            record_size: 227,
            input_size: 227,
            resize_to: None,
        },
        training: vec![],
        age: age.report(),
        gender: gender.report(),
        verify: vec![],
        infer: vec![],
        timings: BTreeMap::from([("1 data prepare".to_string(), 1.5)]),
        prior_shift: BTreeMap::new(),
        uncorrected_accuracy: BTreeMap::new(),
        original: BTreeMap::new(),
    };
    agegender::pipeline::write_report(&report, tmp.path()).unwrap();
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("report.json")).unwrap()).unwrap();
    // 2 of 4 age samples right; one-off: (2,2), (2,3), (5,5) are within one bucket.
    assert_eq!(v["age"]["accuracy"], 0.5);
    assert_eq!(v["age"]["correct"], 2);
    assert_eq!(v["age"]["total"], 4);
    assert_eq!(v["age"]["one_off"], 0.75);
    assert_eq!(v["age"]["confusion"][2][3], 1);
    assert_eq!(v["gender"]["correct"], 2);
    assert!(v["verify"].is_array());
    assert_eq!(v["timings"]["1 data prepare"], 1.5);
    let md = std::fs::read_to_string(tmp.path().join("report.md")).unwrap();
    assert!(md.contains("SYNTHETIC"));
    assert!(
        md.contains("| AgeNet | 50.0 % | 2/4 | 75.0 % | 66.5 % |"),
        "{md}"
    );
    assert!(
        md.contains("| GenderNet | 66.7 % | 2/3 | - | 85.2 % |"),
        "{md}"
    );
    assert!(md.contains("| Actual\\Predict | Male | Female |"), "{md}");
}

/// The synthetic set is named as UTKFace names its files, one age per bucket range.
#[test]
fn synthetic_faces_carry_utkface_names() {
    let tmp = tempfile::tempdir().unwrap();
    let files = agegender::pipeline::synthetic::generate(tmp.path(), 2, 1).unwrap();
    assert_eq!(files.len(), 18);
    for (i, f) in files.iter().enumerate() {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.ends_with(".jpg.chip.jpg"), "{name}");
        let parts: Vec<&str> = name.split('_').collect();
        let age: usize = parts[0].parse().unwrap();
        assert_eq!(age / 10, i / 2, "{name}");
        assert_eq!(parts[1], (i % 2).to_string());
        assert_eq!(parts[2], "2");
        let img = agegender::io::image::read_image(f).unwrap();
        assert_eq!((img.height, img.width), (200, 200));
    }
}

/// `pipeline --quick` end to end on the real faces: the layout the checks read, a report
/// whose numbers add up (the 80/20 split of the 400-image subset, confusion matrices that
/// sum to the test set, accuracies equal to their diagonals), trained weights that are the
/// last snapshot, every format verified, and the training curves drawn.
#[test]
fn pipeline_quick_runs_end_to_end() {
    let Some(faces) = shared("data/utkface-asian") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_agegender"))
        .args(["pipeline", "--quick", "--threads", "2", "--utkface"])
        .arg(&faces)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("(original 66.5 %)"), "{stdout}");
    for net in ["AgeNet", "GenderNet"] {
        for ext in ["_deploy.prototxt", ".caffemodel", ".onnx", ".graph"] {
            assert!(out.join("models").join(format!("{net}{ext}")).is_file());
        }
        assert!(out
            .join("train")
            .join(format!("{net}_curves.png"))
            .is_file());
        // The model written is the trained one: the last snapshot's weights.
        let deploy = out.join("models").join(format!("{net}_deploy.prototxt"));
        let model = out.join("models").join(format!("{net}.caffemodel"));
        let snapshot = out.join("train").join(format!("{net}_iter_40.caffemodel"));
        let a = load_net(&deploy, Some(&model), Phase::Test).unwrap();
        let b = load_net(&deploy, Some(&snapshot), Phase::Test).unwrap();
        for (la, lb) in a.layers.iter().zip(&b.layers) {
            if la.name == "fc8" && net == "AgeNet" {
                assert_eq!(la.blobs[0], lb.blobs[0], "{net} fc8 weights");
                // The bias carries the train split's prior: + ln(π_train / π_oversampled),
                // computed here from the class counts data prepare wrote.
                let stats: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(out.join("data/stats.json")).unwrap())
                        .unwrap();
                let key = "age";
                let counts = |part: &str| -> Vec<f64> {
                    stats["counts"][part][key]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_f64().unwrap())
                        .collect()
                };
                let (train, over) = (counts("train"), counts("train_oversampled"));
                let (nt, no) = (train.iter().sum::<f64>(), over.iter().sum::<f64>());
                for c in 0..train.len() {
                    let shift = ((train[c] / nt) / (over[c] / no)).ln();
                    let got = la.blobs[1].data[c] as f64 - lb.blobs[1].data[c] as f64;
                    assert!(
                        (got - shift).abs() < 1e-5,
                        "{net} class {c}: {got} vs {shift}"
                    );
                }
            } else {
                assert_eq!(la.blobs, lb.blobs, "{net} layer {}", la.name);
            }
        }
        // --quick trains at 115 px: 115 → 28 → 14 → 7 → 3.
        assert_eq!(a.infer_shapes().unwrap()["pool5"], [1, 384, 3, 3]);
    }
    let mean = agegender::io::npy::read_npy(&out.join("age_gender_mean.npy")).unwrap();
    // Levi & Hassner's recipe scaled to 115: records of 115·256/227 ≈ 130, random crops.
    assert_eq!(mean.shape, [3, 130, 130]);
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    for k in ["age", "gender"] {
        let total = v[k]["total"].as_u64().unwrap();
        // 400 images, 80/20: 80 test images.
        assert_eq!(total, 80, "{k}");
        let confusion: Vec<Vec<u64>> = v[k]["confusion"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c.as_u64().unwrap())
                    .collect()
            })
            .collect();
        assert_eq!(confusion.len(), if k == "age" { 9 } else { 2 });
        assert_eq!(confusion.iter().flatten().sum::<u64>(), total);
        let diagonal: u64 = (0..confusion.len()).map(|i| confusion[i][i]).sum();
        assert_eq!(v[k]["correct"].as_u64().unwrap(), diagonal);
        let accuracy = v[k]["accuracy"].as_f64().unwrap();
        assert!((accuracy - diagonal as f64 / total as f64).abs() < 1e-9);
    }
    assert_eq!(v["dataset"]["record_size"], 130);
    assert_eq!(v["dataset"]["resize_to"], 130);
    let verify = v["verify"].as_array().unwrap();
    assert!(verify.len() >= 4, "{verify:?}");
    assert!(verify.iter().all(|r| r["pass"] == true), "{verify:?}");
    // GenderNet trained on the natural train split (the 320 original faces of the subset,
    // no augmented copies) and started from AgeNet's trained body; its fc8 keeps the
    // trained bias (its training prior is already the natural one).
    let natural = out.join("data/lmdb/gender_train_natural_lmdb");
    assert_eq!(
        agegender::io::lmdb::LmdbReader::open(&natural)
            .unwrap()
            .len()
            .unwrap(),
        320
    );
    let tv = std::fs::read_to_string(out.join("prototxt/GenderNet_train_val.prototxt")).unwrap();
    assert!(tv.contains("gender_train_natural_lmdb"), "{tv}");
    assert!(
        v["prior_shift"].get("GenderNet").is_none(),
        "{}",
        v["prior_shift"]
    );
    // GenderNet started from AgeNet's trained body.
    assert!(out.join("train/AgeNet_features.caffemodel").is_file());
    assert!(v["uncorrected_accuracy"]["AgeNet"].as_f64().is_some());
    let timings = v["timings"].as_object().unwrap();
    assert!(timings.keys().any(|k| k.contains("train AgeNet")));
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("66.5") && md.contains("85.2"), "{md}");

    // --resume with 4 more GenderNet iterations: the data and the finished AgeNet are
    // reused (same test result), GenderNet continues from its iteration-40 snapshot.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_agegender"))
        .args(["pipeline", "--quick", "--resume", "--iters-gender", "44"])
        .args(["--threads", "2", "--utkface"])
        .arg(&faces)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("reusing the prepared data"), "{err}");
    assert!(
        err.contains("AgeNet: resuming from") && err.contains("(iteration 40)"),
        "{err}"
    );
    assert!(err.contains("GenderNet: resuming from"), "{err}");
    assert!(out.join("train/GenderNet_iter_44.caffemodel").is_file());
    assert!(!out.join("train/AgeNet_iter_44.caffemodel").exists());
    let again: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(again["age"]["confusion"], v["age"]["confusion"]);
    let gender_log = std::fs::read_to_string(out.join("train/GenderNet_log.jsonl")).unwrap();
    // The first run displayed up to iteration 40 (display every 2); iteration 42 is the
    // resumed run's (Caffe displays before an update, so 44 itself is not a display line).
    assert!(gender_log.contains("\"iter\":42"), "{gender_log}");
}
