//! Issue 8, "writes and long runs" and "input validation at the CLI", as a user meets them:
//! an existing output is not overwritten without `--force` (and is left byte-identical), a
//! path of the wrong kind (directory for file or the reverse) is refused, zero and negative
//! counts and sizes are refused by name, images and means that do not fit the net are
//! refused. Every refusal is exit code 2 with a message naming the path or option, no panic.
//! The reference is the issue's rule itself: what the file held before, and the exit code.

use agegender::testutil::shared;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_agegender"))
}

fn repo(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(rel)
        .to_string_lossy()
        .into_owned()
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("spawn agegender")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit code 2, every needle in the message, no panic.
fn assert_refused(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "exit code; stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    for n in needles {
        assert!(err.contains(n), "missing {n:?} in: {err}");
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

const OLD: &[u8] = b"an earlier result that must survive";

/// Writes the sentinel `OLD` at `path`.
fn sentinel(path: &Path) -> PathBuf {
    std::fs::write(path, OLD).unwrap();
    path.to_path_buf()
}

#[test]
fn convert_and_compile_keep_an_existing_output_without_force() {
    let tmp = tempfile::tempdir().unwrap();
    let (proto, weights) = (
        repo("fixtures/models/levi_tiny.prototxt"),
        repo("fixtures/models/levi_tiny.caffemodel"),
    );
    for ext in ["onnx", "graph", "caffemodel"] {
        let out = sentinel(&tmp.path().join(format!("net.{ext}")));
        let o = run(&["convert", &proto, "-w", &weights, "-o", s(&out)]);
        assert_refused(&o, &[s(&out), "--force"]);
        assert_eq!(std::fs::read(&out).unwrap(), OLD, "{ext} overwritten");
        let o = run(&["convert", &proto, "-w", &weights, "-o", s(&out), "--force"]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_ne!(std::fs::read(&out).unwrap(), OLD);
    }
    // convert to .caffemodel also writes the .prototxt beside it: that one is guarded too.
    let model = tmp.path().join("pair.caffemodel");
    let beside = sentinel(&tmp.path().join("pair.prototxt"));
    let o = run(&["convert", &proto, "-w", &weights, "-o", s(&model)]);
    assert_refused(&o, &[s(&beside)]);
    assert!(!model.exists());
    assert_eq!(std::fs::read(&beside).unwrap(), OLD);

    let graph = sentinel(&tmp.path().join("graph"));
    let o = run(&["compile", &proto, "-w", &weights, "-o", s(&graph)]);
    assert_refused(&o, &[s(&graph), "--force"]);
    assert_eq!(std::fs::read(&graph).unwrap(), OLD);
    let o = run(&[
        "compile",
        &proto,
        "-w",
        &weights,
        "-o",
        s(&graph),
        "--force",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_directory_is_never_replaced_by_a_file_output() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("out.onnx");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("keep"), b"x").unwrap();
    let proto = repo("fixtures/models/levi_tiny.prototxt");
    let weights = repo("fixtures/models/levi_tiny.caffemodel");
    for force in [false, true] {
        let mut args = vec!["convert", &proto, "-w", &weights, "-o", s(&dir)];
        if force {
            args.push("--force");
        }
        assert_refused(&run(&args), &[s(&dir), "is a directory"]);
        assert!(dir.join("keep").exists());
    }
}

#[test]
fn run_outputs_are_not_overwritten_without_force() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    std::fs::create_dir(&out).unwrap();
    let prob = sentinel(&out.join("prob.npy"));
    let args = [
        "run",
        &repo("fixtures/models/levi_tiny.prototxt"),
        "-w",
        &repo("fixtures/models/levi_tiny.caffemodel"),
        "--input",
        &repo("fixtures/inputs/pattern_1x3x227x227.npy"),
        "--output-dir",
        s(&out),
        "--all-blobs",
    ];
    assert_refused(&run(&args), &[s(&prob), "--force"]);
    assert_eq!(std::fs::read(&prob).unwrap(), OLD);
    // Nothing else was written either: the check comes before the first file.
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1);
    let mut forced = args.to_vec();
    forced.push("--force");
    let o = run(&forced);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_ne!(std::fs::read(&prob).unwrap(), OLD);
}

#[test]
fn data_and_pipeline_output_folders_are_not_replaced_without_force() {
    let Some(faces) = shared("data/utkface-asian") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("prepared");
    std::fs::create_dir(&out).unwrap();
    let keep = sentinel(&out.join("notes.txt"));
    let o = run(&[
        "data",
        "prepare",
        "--utkface",
        s(&faces),
        "--out",
        s(&out),
        "--limit",
        "4",
        "--size",
        "8",
    ]);
    assert_refused(&o, &[s(&out), "--force"]);
    let o = run(&["pipeline", "--quick", "--out", s(&out)]);
    assert_refused(&o, &[s(&out), "--force"]);
    let list = tmp.path().join("list.txt");
    std::fs::write(&list, "x.jpg 0\n").unwrap();
    let o = run(&[
        "data",
        "lmdb",
        "--list",
        s(&list),
        "--root",
        s(&faces),
        "--out",
        s(&out),
    ]);
    assert_refused(&o, &[s(&out), "--force"]);
    assert_eq!(std::fs::read(&keep).unwrap(), OLD);
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1);
    // A file where the output folder goes is refused even with --force.
    let o = run(&[
        "data",
        "prepare",
        "--utkface",
        s(&faces),
        "--out",
        s(&keep),
        "--force",
    ]);
    assert_refused(&o, &[s(&keep), "not a directory"]);
    assert_eq!(std::fs::read(&keep).unwrap(), OLD);
}

#[test]
fn infer_and_plot_output_files_are_not_overwritten_without_force() {
    let Some(faces) = shared("data/utkface-asian") else {
        return;
    };
    let Some(mean) = shared("fixtures-real/levi_hassner/models/mean.binaryproto") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let image = std::fs::read_dir(&faces)
        .unwrap()
        .map(|e| e.unwrap().path())
        .min()
        .unwrap();
    let out = sentinel(&tmp.path().join("rows.csv"));
    let args = [
        "infer",
        "--age",
        &repo("fixtures/models/levi_tiny.caffemodel"),
        "--mean_file",
        s(&mean),
        "--image_path",
        s(&image),
        "-o",
        s(&out),
    ];
    assert_refused(&run(&args), &[s(&out), "--force"]);
    assert_eq!(std::fs::read(&out).unwrap(), OLD);
    let mut forced = args.to_vec();
    forced.push("--force");
    let o = run(&forced);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_ne!(std::fs::read(&out).unwrap(), OLD);

    let png = sentinel(&tmp.path().join("curve.png"));
    let log = tmp.path().join("log.jsonl");
    std::fs::write(&log, "").unwrap();
    assert_refused(
        &run(&["plot", s(&log), "-o", s(&png)]),
        &[s(&png), "--force"],
    );
    assert_eq!(std::fs::read(&png).unwrap(), OLD);
}

#[test]
fn zero_and_negative_counts_and_sizes_are_refused_by_name() {
    let proto = repo("fixtures/models/levi_tiny.prototxt");
    let model = repo("fixtures/models/levi_tiny.caffemodel");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("o");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["bench", &proto, "--random-weights", "--batch", "0"],
            "--batch",
        ),
        (
            vec!["bench", &proto, "--random-weights", "--batch", "-4"],
            "--batch",
        ),
        (
            vec!["bench", &proto, "--random-weights", "--iters", "0"],
            "--iters",
        ),
        (
            vec!["bench", &proto, "--random-weights", "--iters", "-1"],
            "--iters",
        ),
        (
            vec![
                "infer",
                "--age",
                &model,
                "--mean_file",
                "m",
                "--image_path",
                "i",
                "--batch",
                "-2",
            ],
            "--batch",
        ),
        (
            vec!["test", "--model", &model, "--lmdb", "l", "--batch", "0"],
            "--batch",
        ),
        (
            vec!["pipeline", "--out", s(&out), "--iters-age", "0"],
            "--iters-age",
        ),
        (
            vec!["pipeline", "--out", s(&out), "--iters-gender", "-5"],
            "--iters-gender",
        ),
        (
            vec![
                "data",
                "prepare",
                "--utkface",
                "u",
                "--out",
                s(&out),
                "--size",
                "0",
            ],
            "--size",
        ),
        (
            vec![
                "data",
                "prepare",
                "--utkface",
                "u",
                "--out",
                s(&out),
                "--size",
                "-227",
            ],
            "--size",
        ),
        (
            vec![
                "data",
                "lmdb",
                "--list",
                "l",
                "--root",
                "r",
                "--out",
                s(&out),
                "--size",
                "0",
            ],
            "--size",
        ),
        (
            vec![
                "compile",
                &proto,
                "-w",
                &model,
                "-is",
                "0",
                "0",
                "-o",
                s(&out),
            ],
            "-is 0 0",
        ),
    ];
    for (args, name) in cases {
        let o = run(&args);
        assert_refused(&o, &[name]);
        let err = stderr(&o);
        assert!(
            err.contains("at least 1") || err.contains("must be at least 1"),
            "{args:?}: {err}"
        );
        assert!(!out.exists(), "{args:?} wrote {}", out.display());
    }
}

#[test]
fn a_directory_where_a_file_is_expected_and_the_reverse_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let model = repo("fixtures/models/levi_tiny.caffemodel");
    let proto = repo("fixtures/models/levi_tiny.prototxt");
    let file = sentinel(&dir.join("plain.txt"));
    let cases: Vec<(Vec<&str>, &str, &str)> = vec![
        (vec!["inspect", s(dir)], s(dir), "is a directory"),
        (
            vec!["convert", &proto, "-w", s(dir), "-o", "x.onnx"],
            s(dir),
            "is a directory",
        ),
        (
            vec![
                "infer",
                "--age",
                &model,
                "--mean_file",
                s(dir),
                "--image_path",
                &proto,
            ],
            s(dir),
            "is a directory",
        ),
        (
            vec![
                "data",
                "lmdb",
                "--list",
                s(dir),
                "--root",
                s(dir),
                "--out",
                "o",
            ],
            s(dir),
            "is a directory",
        ),
        (vec!["data", "show", s(&file)], s(&file), "is a file"),
        (
            vec!["data", "mean", s(&file), "-o", "m.npy"],
            s(&file),
            "is a file",
        ),
        (
            vec!["data", "prepare", "--utkface", s(&file), "--out", "o"],
            s(&file),
            "is a file",
        ),
        (
            vec!["pipeline", "--utkface", s(&file), "--out", "o"],
            s(&file),
            "is a file",
        ),
    ];
    for (args, path, what) in cases {
        let o = bin().current_dir(dir).args(&args).output().unwrap();
        assert_refused(&o, &[path, what]);
    }
    assert!(!dir.join("o").exists() && !dir.join("x.onnx").exists());
}

#[test]
fn images_and_means_that_do_not_fit_the_net_are_refused() {
    let (Some(lenet), Some(weights), Some(mean), Some(faces)) = (
        shared("fixtures-real/caffe/lenet/lenet.prototxt"),
        shared("fixtures-real/caffe/lenet/lenet_iter_10000.caffemodel"),
        shared("fixtures-real/levi_hassner/models/mean.binaryproto"),
        shared("data/utkface-asian"),
    ) else {
        return;
    };
    let image = std::fs::read_dir(&faces)
        .unwrap()
        .map(|e| e.unwrap().path())
        .min()
        .unwrap();
    // LeNet takes 1 channel; every image decodes to 3 (greyscale is replicated).
    let o = run(&[
        "infer",
        "--age",
        s(&lenet),
        "--age-weights",
        s(&weights),
        "--mean_file",
        s(&mean),
        "--image_path",
        s(&image),
    ]);
    assert_refused(&o, &["1 channel", "3"]);
    // A 3×2×2 mean is smaller than the 227×227 input.
    let small = repo("fixtures/npy/f32_1x3x2x2.npy");
    let o = run(&[
        "infer",
        "--age",
        &repo("fixtures/models/levi_tiny.caffemodel"),
        "--mean_file",
        &small,
        "--image_path",
        s(&image),
    ]);
    assert_refused(&o, &["mean"]);
}
