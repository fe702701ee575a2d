//! The `train`, `test` and `plot` commands end to end on the real Caffe oracle
//! (`fixtures-real/caffe-oracle`): accuracies against Caffe's own test passes, and a real
//! SIGINT to a training child process.

use agegender::testutil::shared;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_agegender"))
}

#[test]
fn test_command_reproduces_caffes_test_accuracy() {
    let Some(dir) = shared("fixtures-real/caffe-oracle") else {
        return;
    };
    // Caffe's TEST net scored 0.0833333 (2/24) with the init weights and 0.125 (3/24)
    // after 30 updates (train_trajectory.json, runs.step10000.tests).
    for (weights, line) in [
        (
            "levi_mini/levi_mini_init_iter_0.caffemodel",
            "Accuracy: 8.3%, 2/24 corrects",
        ),
        (
            "trajectory/step10000/levi_mini_nodrop_iter_30.caffemodel",
            "Accuracy: 12.5%, 3/24 corrects",
        ),
    ] {
        let out = bin()
            .current_dir(&dir)
            .args([
                "test",
                "--model",
                "levi_mini/deploy.prototxt",
                "--weights",
                weights,
            ])
            .args([
                "--lmdb",
                "utkface24_lmdb",
                "--mean",
                "mean.binaryproto",
                "--batch",
                "7",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.starts_with(line), "{text}");
        assert!(text.contains("Actual\\Predict  0-9  10-19"), "{text}");
        assert!(text.contains("One-off accuracy:"), "{text}");
    }
    // The same net compiled to an NCS graph scores the same on the fp16 emulation (the
    // default engine for a .graph): fp16 does not flip any of Caffe's 24 decisions.
    let tmp = tempfile::tempdir().unwrap();
    let graph = tmp.path().join("mini.graph");
    let out = bin()
        .current_dir(&dir)
        .args(["compile", "levi_mini/deploy.prototxt", "-w"])
        .arg("trajectory/step10000/levi_mini_nodrop_iter_30.caffemodel")
        .arg("-o")
        .arg(&graph)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for engine in [None, Some("f16"), Some("native")] {
        let mut cmd = bin();
        cmd.current_dir(&dir)
            .arg("test")
            .arg("--model")
            .arg(&graph)
            .args(["--lmdb", "utkface24_lmdb", "--mean", "mean.binaryproto"]);
        if let Some(e) = engine {
            cmd.args(["--engine", e]);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            text.starts_with("Accuracy: 12.5%, 3/24 corrects"),
            "{engine:?}: {text}"
        );
    }
    let out = bin()
        .current_dir(&dir)
        .args([
            "test",
            "--model",
            "levi_mini/deploy.prototxt",
            "--lmdb",
            "no_such_lmdb",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no_such_lmdb"));
}

/// A solver and net in `tmp` whose paths point into the oracle folder.
fn solver(tmp: &Path, dir: &Path, extra: &str) -> PathBuf {
    let abs = |rel: &str| format!("{:?}", dir.join(rel).to_string_lossy());
    let net = std::fs::read_to_string(dir.join("levi_mini/train_val.prototxt"))
        .unwrap()
        .replace("\"utkface24_lmdb\"", &abs("utkface24_lmdb"))
        .replace("\"mean.binaryproto\"", &abs("mean.binaryproto"));
    std::fs::write(tmp.join("net.prototxt"), net).unwrap();
    let text = format!(
        "net: \"net.prototxt\"\nbase_lr: 0.001\nlr_policy: \"fixed\"\nmomentum: 0.9\n\
         weight_decay: 0.0005\ndisplay: 1\nsnapshot_prefix: \"snap/mini\"\nrandom_seed: 5\n{extra}"
    );
    let p = tmp.join("solver.prototxt");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn sigint_writes_a_snapshot_that_resumes_and_the_log_plots() {
    let Some(dir) = shared("fixtures-real/caffe-oracle") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    solver(tmp.path(), &dir, "max_iter: 100000\n");
    let init = dir.join("levi_mini/levi_mini_init_iter_0.caffemodel");
    let mut child = bin()
        .current_dir(tmp.path())
        .args([
            "train",
            "--solver",
            "solver.prototxt",
            "--quiet",
            "--log",
            "log.jsonl",
            "--threads",
            "2",
        ])
        .arg("--weights")
        .arg(&init)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = tmp.path().join("log.jsonl");
    let started = Instant::now();
    loop {
        let lines = std::fs::read_to_string(&log)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if lines >= 3 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "training did not log"
        );
        assert!(child.try_wait().unwrap().is_none(), "training exited early");
        std::thread::sleep(Duration::from_millis(100));
    }
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    let snaps: Vec<PathBuf> = std::fs::read_dir(tmp.path().join("snap"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let state = snaps
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "solverstate"))
        .unwrap_or_else(|| panic!("no solverstate in {snaps:?}"))
        .clone();
    assert_eq!(
        snaps.len(),
        2,
        "one caffemodel and one solverstate: {snaps:?}"
    );
    assert!(!snaps
        .iter()
        .any(|p| p.file_name().unwrap().to_string_lossy().ends_with(".tmp")));
    let n: u64 = state
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .rsplit('_')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(n >= 2, "stopped at {n}");

    // Resume for two more iterations.
    let s = solver(tmp.path(), &dir, &format!("max_iter: {}\n", n + 2));
    let out = bin()
        .current_dir(tmp.path())
        .args(["train", "--quiet", "--log", "log.jsonl", "--solver"])
        .arg(&s)
        .arg("--snapshot")
        .arg(&state)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(tmp
        .path()
        .join(format!("snap/mini_iter_{}.caffemodel", n + 2))
        .exists());
    let text = std::fs::read_to_string(&log).unwrap();
    let iters: Vec<u64> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["iter"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(iters.last(), Some(&(n + 1)), "{text}");

    let png = tmp.path().join("curve.png");
    let out = bin()
        .args(["plot"])
        .arg(&log)
        .arg("-o")
        .arg(&png)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(image::open(&png).is_ok());
}

/// SIGTERM (what `kill`, systemd and container runtimes send) stops training like SIGINT:
/// exit 130 with one complete snapshot pair and no temporary file. A fresh run over that
/// snapshot prefix is then refused without `--force` (issue 8: no overwrite without it),
/// naming a snapshot file; resuming needs no flag.
#[test]
fn sigterm_writes_a_snapshot_and_a_fresh_run_over_it_needs_force() {
    let Some(dir) = shared("fixtures-real/caffe-oracle") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    solver(tmp.path(), &dir, "max_iter: 100000\n");
    let init = dir.join("levi_mini/levi_mini_init_iter_0.caffemodel");
    let train = |extra: &[&str]| {
        let mut c = bin();
        c.current_dir(tmp.path())
            .args(["train", "--solver", "solver.prototxt", "--quiet"])
            .args(["--threads", "2", "--log", "log.jsonl", "--weights"])
            .arg(&init)
            .args(extra);
        c
    };
    let mut child = train(&[])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = tmp.path().join("log.jsonl");
    let started = Instant::now();
    while std::fs::read_to_string(&log).map_or(0, |t| t.lines().count()) < 2 {
        assert!(started.elapsed() < Duration::from_secs(120), "no log");
        assert!(child.try_wait().unwrap().is_none(), "training exited early");
        std::thread::sleep(Duration::from_millis(100));
    }
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    let mut snaps: Vec<String> = std::fs::read_dir(tmp.path().join("snap"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    snaps.sort();
    assert_eq!(snaps.len(), 2, "{snaps:?}");
    let n = snaps[0]
        .strip_prefix("mini_iter_")
        .and_then(|r| r.strip_suffix(".caffemodel"))
        .unwrap_or_else(|| panic!("{snaps:?}"));
    assert_eq!(snaps[1], format!("mini_iter_{n}.solverstate"));

    let before = std::fs::read(tmp.path().join("snap").join(&snaps[0])).unwrap();
    let refused = train(&[]).output().unwrap();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{err}");
    assert!(
        err.contains("mini_iter_") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(tmp.path().join("snap").join(&snaps[0])).unwrap(),
        before
    );
}
