//! `agegender infer` as a user runs it, against independent references: real Caffe's
//! forward pass on real UTKFace faces (caffe-oracle), the original script's output lines,
//! agreement between the .caffemodel, .onnx and .graph forms of one net, and the
//! directory mode with a corrupt file.

use agegender::infer::{Mean, PreprocessOptions, Preprocessor};
use agegender::testutil::{read_f32_file, shared};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_agegender"))
        .args(args)
        .output()
        .expect("spawn agegender")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Per image, the probabilities of `task` from `infer --json`.
fn probabilities(o: &Output, task: &str) -> Vec<Vec<f32>> {
    assert!(o.status.success(), "infer failed: {}", stderr(o));
    let rows: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r[task]["probabilities"]
                .as_array()
                .unwrap_or_else(|| panic!("no {task} in {r}"))
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect()
        })
        .collect()
}

fn argmax(row: &[f32]) -> usize {
    (0..row.len())
        .max_by(|&a, &b| row[a].total_cmp(&row[b]).then(b.cmp(&a)))
        .unwrap()
}

/// The caffe-oracle material: levi_mini (Levi & Hassner layers, 9 outputs, Caffe's own
/// initial weights), the 24-image list, the mean Caffe computed and its forward goldens.
struct Oracle {
    deploy: PathBuf,
    weights: PathBuf,
    mean: PathBuf,
    images: Vec<PathBuf>,
    input: Vec<f32>,
    prob: Vec<f32>,
}

fn oracle() -> Option<Oracle> {
    let root = shared("fixtures-real/caffe-oracle")?;
    let faces = shared("data/utkface-asian")?;
    let list = std::fs::read_to_string(root.join("utkface24_list.txt")).unwrap();
    // The forward goldens are the first 3 records of the list, in order.
    let images = list
        .lines()
        .take(3)
        .map(|l| faces.join(l.split_whitespace().next().unwrap()))
        .collect();
    Some(Oracle {
        deploy: root.join("levi_mini/deploy.prototxt"),
        weights: root.join("levi_mini/levi_mini_init_iter_0.caffemodel"),
        mean: root.join("mean.binaryproto"),
        images,
        input: read_f32_file(&root.join("levi_mini/forward/input_data.f32")),
        prob: read_f32_file(&root.join("levi_mini/forward/18_prob.f32")),
    })
}

/// Decodes JPEGs with libjpeg-turbo's `djpeg` (the decoder behind Caffe's OpenCV) into BMPs
/// named 0.bmp, 1.bmp, … so that a directory lists them in order. None without djpeg.
fn djpeg_all(images: &[PathBuf], dir: &Path) -> Option<Vec<PathBuf>> {
    let ok = Command::new("djpeg")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIP: djpeg (libjpeg-turbo-progs) is not installed");
        return None;
    }
    let mut out = Vec::new();
    for (i, img) in images.iter().enumerate() {
        let bmp = dir.join(format!("{i}.bmp"));
        let status = Command::new("djpeg")
            .args(["-bmp", "-outfile"])
            .arg(&bmp)
            .arg(img)
            .status()
            .unwrap();
        assert!(status.success());
        out.push(bmp);
    }
    Some(out)
}

/// Given the same decoded pixels as Caffe's OpenCV, our preprocessing reproduces Caffe's
/// `DataTransformer` input bit for bit and `infer` reproduces Caffe's probabilities.
#[test]
fn infer_reproduces_real_caffe_on_real_faces() {
    let Some(o) = oracle() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let Some(bmps) = djpeg_all(&o.images, tmp.path()) else {
        return;
    };
    // Preprocessing: convert_imageset's resize, then Caffe's mean subtraction.
    let mean = Mean::Image(Mean::read_image(&o.mean).unwrap());
    let pre = Preprocessor::new([3, 227, 227], &mean, PreprocessOptions::default()).unwrap();
    for (i, bmp) in bmps.iter().enumerate() {
        let x = pre.apply(&agegender::io::image::read_image(bmp).unwrap());
        let n = x.len();
        assert!(
            x == o.input[i * n..(i + 1) * n],
            "image {i}: preprocessed input differs from Caffe's"
        );
    }
    // The whole command, on the directory of the three images.
    let out = run(&[
        "infer",
        "--age",
        s(&o.deploy),
        "--age-weights",
        s(&o.weights),
        "--mean_file",
        s(&o.mean),
        "--image_path",
        s(tmp.path()),
        "--json",
    ]);
    let probs = probabilities(&out, "age");
    assert_eq!(probs.len(), 3);
    for (i, row) in probs.iter().enumerate() {
        let caffe = &o.prob[i * 9..(i + 1) * 9];
        for (a, b) in row.iter().zip(caffe) {
            assert!(
                (a - b).abs() <= 1e-6,
                "image {i}: {row:?} vs Caffe {caffe:?}"
            );
        }
    }
}

/// The output lines are the original script's, with the numbers Caffe's probabilities give.
#[test]
fn output_lines_match_the_original_format_and_caffes_numbers() {
    let Some(o) = oracle() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let Some(bmps) = djpeg_all(&o.images[..1], tmp.path()) else {
        return;
    };
    let out = run(&[
        "infer",
        "--age",
        s(&o.deploy),
        "--age-weights",
        s(&o.weights),
        "--mean_file",
        s(&o.mean),
        "--image_path",
        s(&bmps[0]),
        "--top",
        "3",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let caffe = &o.prob[..9];
    let mut order: Vec<usize> = (0..9).collect();
    order.sort_by(|&a, &b| caffe[b].total_cmp(&caffe[a]));
    let buckets = [
        "0-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70-79", "80-120",
    ];
    let pct = |c: usize| format!("{:.2}%", caffe[c] as f64 * 100.0);
    let expected = format!(
        "Age predicted: {}, {}\n  top-3 age: {}\n",
        buckets[order[0]],
        pct(order[0]),
        order[..3]
            .iter()
            .map(|&c| format!("{} {}", buckets[c], pct(c)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    assert_eq!(stdout(&out), expected);
}

/// Runs `infer --json` on `dir` with one age model given by `args`.
fn infer_dir(model_args: &[&str], mean: &Path, dir: &Path, extra: &[&str]) -> Vec<Vec<f32>> {
    let mut args = vec!["infer"];
    args.extend_from_slice(model_args);
    args.extend(["--mean_file", s(mean), "--image_path", s(dir), "--json"]);
    args.extend_from_slice(extra);
    probabilities(&run(&args), "age")
}

/// The same net as .caffemodel, .onnx (run natively and by tract) and NCS .graph (fp16
/// weights) gives the same classes and near-equal probabilities on real faces.
#[test]
fn caffemodel_onnx_and_graph_agree_on_real_faces() {
    let (Some(faces), Some(mean)) = (
        shared("data/utkface-asian"),
        shared("fixtures-real/levi_hassner/models/mean.binaryproto"),
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("faces");
    std::fs::create_dir(&dir).unwrap();
    // Twelve real faces, linked (not copied) into a folder of their own.
    let mut names: Vec<_> = std::fs::read_dir(&faces)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".jpg"))
        .collect();
    names.sort();
    for n in names.iter().step_by(names.len() / 12).take(12) {
        std::os::unix::fs::symlink(faces.join(n), dir.join(n)).unwrap();
    }
    let caffemodel = repo("fixtures/models/levi_tiny.caffemodel");
    let net = agegender::model::load_model(&caffemodel, None).unwrap();
    let onnx = tmp.path().join("levi_tiny.onnx");
    agegender::onnx::write_onnx(&net, &onnx).unwrap();
    let graph = tmp.path().join("levi_tiny.graph");
    agegender::ncs::compile_to_file(&net, &Default::default(), &graph).unwrap();

    let reference = infer_dir(&["--age", s(&caffemodel)], &mean, &dir, &[]);
    assert_eq!(reference.len(), 12);
    let prototxt = infer_dir(
        &[
            "--age",
            s(&repo("fixtures/models/levi_tiny.prototxt")),
            "--age-weights",
            s(&caffemodel),
        ],
        &mean,
        &dir,
        &[],
    );
    let onnx_native = infer_dir(&["--age", s(&onnx)], &mean, &dir, &[]);
    let onnx_tract = infer_dir(&["--age", s(&onnx)], &mean, &dir, &["--engine", "tract"]);
    // A graph runs on the fp16 emulator by default; its fp16 weights also run in f32.
    let graph_run = infer_dir(&["--age", s(&graph)], &mean, &dir, &[]);
    let graph_f32 = infer_dir(&["--age", s(&graph)], &mean, &dir, &["--engine", "native"]);
    // f32 forms: rounding only. The graph holds fp16 weights (11-bit mantissa).
    for (name, got, tol) in [
        ("prototxt", &prototxt, 1e-6),
        ("onnx native", &onnx_native, 1e-6),
        ("onnx tract", &onnx_tract, 1e-5),
        ("graph f16", &graph_run, 1e-3),
        ("graph f32", &graph_f32, 5e-4),
    ] {
        let mut worst = 0.0f32;
        for (i, (a, b)) in got.iter().zip(&reference).enumerate() {
            let diff = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f32::max);
            worst = worst.max(diff);
            assert!(diff <= tol, "{name}, image {i}: max diff {diff} > {tol}");
            let mut sorted = b.clone();
            sorted.sort_by(|x, y| y.total_cmp(x));
            // The class must agree wherever the reference's margin exceeds the tolerance.
            if sorted[0] - sorted[1] > 2.0 * tol {
                assert_eq!(argmax(a), argmax(b), "{name}, image {i}");
            }
        }
        eprintln!("{name}: max probability difference from the caffemodel {worst:e}");
    }
}

fn write_png(path: &Path, rgb: &[u8], w: u32, h: u32) {
    image::RgbImage::from_raw(w, h, rgb.to_vec())
        .unwrap()
        .save(path)
        .unwrap();
}

/// A 40×30 RGB test pattern (smooth ramps plus a texture, no two channels alike).
fn pattern() -> Vec<u8> {
    (0..30u32)
        .flat_map(|y| {
            (0..40u32).flat_map(move |x| {
                [
                    (6 * x + y) as u8,
                    (200 - 5 * y + (x * y) % 17) as u8,
                    ((x * 37 + y * 11) % 256) as u8,
                ]
            })
        })
        .collect()
}

const TINY: &str = "fixtures/models/levi_tiny.caffemodel";

fn tiny_args<'a>(mean: &'a str, image: &'a str) -> Vec<&'a str> {
    vec![
        "infer",
        "--age",
        TINY,
        "--gender",
        TINY,
        "--mean_file",
        mean,
        "--image_path",
        image,
    ]
}

/// A flat mean (value 100 everywhere) written as .npy, 3×256×256 like the original's.
fn flat_mean(dir: &Path) -> PathBuf {
    let p = dir.join("mean.npy");
    let t = agegender::ir::Tensor::full(&[3, 256, 256], 100.0);
    agegender::io::npy::write_npy(&p, &t).unwrap();
    p
}

/// A directory with one corrupt file: it is reported (stderr and its CSV row), every other
/// image gets the same prediction as when run alone, and the exit code is 1.
#[test]
fn a_corrupt_image_in_a_directory_is_reported_and_the_rest_processed() {
    std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mean = flat_mean(tmp.path());
    let dir = tmp.path().join("imgs");
    std::fs::create_dir(&dir).unwrap();
    let rgb = pattern();
    write_png(&dir.join("a.png"), &rgb, 40, 30);
    let flipped: Vec<u8> = rgb.iter().rev().copied().collect();
    write_png(&dir.join("c.png"), &flipped, 40, 30);
    std::fs::write(dir.join("b.jpg"), b"\xff\xd8\xff\xe0 truncated jpeg").unwrap();
    std::fs::write(dir.join("notes.txt"), b"not an image, not listed").unwrap();

    let mut args = tiny_args(s(&mean), s(&dir));
    args.push("--csv");
    let out = run(&args);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("b.jpg") && !err.contains("panicked"), "{err}");
    assert!(err.contains("3 images, 2 predicted, 1 failed"), "{err}");
    let csv = stdout(&out);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "image,age,age_probability,gender,gender_probability,error"
    );
    assert_eq!(lines.len(), 4, "{csv}");
    assert!(lines[2].contains("b.jpg,,,,,"), "{csv}");
    assert!(lines[2].contains("cannot decode image"), "{csv}");
    // Each good row equals a run on that image alone.
    for (line, name) in [(lines[1], "a.png"), (lines[3], "c.png")] {
        let alone = run(&tiny_args(s(&mean), s(&dir.join(name))));
        assert!(alone.status.success(), "{}", stderr(&alone));
        let text = stdout(&alone);
        let fields: Vec<&str> = line.split(',').collect();
        let age_line = format!(
            "Age predicted: {}, {:.2}%",
            fields[1],
            fields[2].parse::<f64>().unwrap() * 100.0
        );
        assert!(text.contains(&age_line), "{text} lacks {age_line}");
        assert!(fields[0].ends_with(name));
    }
}

/// OpenCV's IMREAD_COLOR replicates a grey channel into B, G and R: a greyscale PNG must
/// give exactly the predictions of the RGB PNG with three equal channels.
#[test]
fn a_greyscale_image_equals_its_three_channel_copy() {
    std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mean = flat_mean(tmp.path());
    let grey: Vec<u8> = pattern().iter().step_by(3).copied().collect();
    let grey_path = tmp.path().join("grey.png");
    image::GrayImage::from_raw(40, 30, grey.clone())
        .unwrap()
        .save(&grey_path)
        .unwrap();
    let rgb: Vec<u8> = grey.iter().flat_map(|&v| [v, v, v]).collect();
    let rgb_path = tmp.path().join("rgb.png");
    write_png(&rgb_path, &rgb, 40, 30);
    let json = |p: &Path| {
        let mut a = tiny_args(s(&mean), s(p));
        a.push("--json");
        probabilities(&run(&a), "gender")
    };
    assert_eq!(json(&grey_path), json(&rgb_path));
}

/// `--legacy-rgb` feeds R, G, B planes where B, G, R belong: on an image it must give the
/// default predictions of the same image with its red and blue channels exchanged.
#[test]
fn legacy_rgb_equals_the_default_on_the_channel_swapped_image() {
    std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mean = flat_mean(tmp.path());
    let rgb = pattern();
    let a = tmp.path().join("a.png");
    write_png(&a, &rgb, 40, 30);
    let swapped: Vec<u8> = rgb.chunks(3).flat_map(|p| [p[2], p[1], p[0]]).collect();
    let b = tmp.path().join("b.png");
    write_png(&b, &swapped, 40, 30);
    let probs = |p: &Path, legacy: bool| {
        let mut args = tiny_args(s(&mean), s(p));
        args.push("--json");
        if legacy {
            args.push("--legacy-rgb");
        }
        probabilities(&run(&args), "age")
    };
    let legacy = probs(&a, true);
    assert_eq!(legacy, probs(&b, false));
    assert_ne!(legacy, probs(&a, false));
}

/// Bad input: exit code 2, a message naming the culprit, no panic.
#[test]
fn bad_input_is_a_clear_error() {
    std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mean = flat_mean(tmp.path());
    let img = tmp.path().join("a.png");
    write_png(&img, &pattern(), 40, 30);
    let check = |args: &[&str], needle: &str| {
        let o = run(args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(needle) && !err.contains("panicked"),
            "{args:?}: {err}"
        );
    };
    // No model at all.
    check(
        &["infer", "--mean_file", s(&mean), "--image_path", s(&img)],
        "--age",
    );
    // A missing model file.
    check(
        &tiny_args(s(&mean), s(&img))
            .iter()
            .map(|a| if *a == TINY { "missing.caffemodel" } else { a })
            .collect::<Vec<_>>(),
        "missing.caffemodel",
    );
    // A prototxt without its weights.
    check(
        &[
            "infer",
            "--age",
            "fixtures/models/levi_tiny.prototxt",
            "--mean_file",
            s(&mean),
            "--image_path",
            s(&img),
        ],
        "levi_tiny.prototxt",
    );
    // A mean smaller than the 227×227 input.
    let small = tmp.path().join("small_mean.npy");
    agegender::io::npy::write_npy(&small, &agegender::ir::Tensor::full(&[3, 8, 8], 1.0)).unwrap();
    check(&tiny_args(s(&small), s(&img)), "small_mean.npy");
    // A single corrupt image.
    let bad = tmp.path().join("bad.png");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\n broken").unwrap();
    check(&tiny_args(s(&mean), s(&bad)), "bad.png");
    // An empty directory.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    check(&tiny_args(s(&mean), s(&empty)), "no .jpg");
    // The image path does not exist.
    check(&tiny_args(s(&mean), "nowhere.jpg"), "nowhere.jpg");
}
