//! `data lmdb` / `data mean` / `data show` against the LMDB and mean that real Caffe's
//! `convert_imageset` and `compute_image_mean` wrote for 24 UTKFace images
//! (`shared/fixtures-real/caffe-oracle`).
//!
//! Our resize is bit-exact with OpenCV's (see `io::image`); the remaining pixel differences
//! come from the JPEG decoder: the `image` crate's zune-jpeg versus the libjpeg-turbo 2.1.5
//! that Caffe's OpenCV used (IDCT, chroma upsampling and YCbCr→RGB rounding). Measured on
//! these 24 images: max 4 grey levels, mean 0.167, 85.3 % of values identical.

use agegender::caffe::binaryproto::read_binaryproto;
use agegender::data::{compute_image_mean, convert_imageset, read_image_list, ImagesetOptions};
use agegender::io::lmdb::LmdbReader;
use agegender::testutil::shared;
use std::path::PathBuf;
use std::process::Command;

/// The largest per-value difference the decoder difference produces on these images.
const MAX_PIXEL_DIFF: u8 = 4;
/// Bound on the mean absolute pixel difference (measured 0.167).
const MEAN_PIXEL_DIFF: f64 = 0.2;

struct Oracle {
    list: PathBuf,
    images: PathBuf,
    lmdb: PathBuf,
    mean: PathBuf,
}

fn oracle() -> Option<Oracle> {
    Some(Oracle {
        list: shared("fixtures-real/caffe-oracle/utkface24_list.txt")?,
        images: shared("data/utkface-asian")?,
        lmdb: shared("fixtures-real/caffe-oracle/utkface24_lmdb")?,
        mean: shared("fixtures-real/caffe-oracle/mean.binaryproto")?,
    })
}

#[test]
fn our_convert_imageset_matches_caffes_records_and_mean() {
    let Some(o) = oracle() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ours_path = dir.path().join("utk24_lmdb");
    let entries = read_image_list(&o.list).unwrap();
    let options = ImagesetOptions {
        size: Some(227),
        ..Default::default()
    };
    let report = convert_imageset(&o.images, &entries, &ours_path, &options).unwrap();
    assert_eq!((report.written, report.failed.len()), (24, 0));

    let ours = LmdbReader::open(&ours_path).unwrap();
    let caffe = LmdbReader::open(&o.lmdb).unwrap();
    assert_eq!(ours.len().unwrap(), 24);
    let (mut a, mut b) = (ours.cursor().unwrap(), caffe.cursor().unwrap());
    let (mut max, mut sum, mut n, mut same) = (0u8, 0u64, 0u64, 0u64);
    let mut channel_abs = [0u64; 3];
    let plane = 227 * 227;
    while let Some((ra, da)) = a.next_datum().unwrap() {
        let (rb, db) = b.next_datum().unwrap().unwrap();
        assert_eq!(ra.key, rb.key);
        assert_eq!(
            (da.channels, da.height, da.width, da.label, da.encoded),
            (db.channels, db.height, db.width, db.label, db.encoded)
        );
        for (i, (&x, &y)) in da.data().iter().zip(db.data()).enumerate() {
            let d = x.abs_diff(y);
            channel_abs[i / plane] += d as u64;
            max = max.max(d);
            sum += d as u64;
            same += (d == 0) as u64;
            n += 1;
        }
    }
    assert!(b.next_record().unwrap().is_none());
    let mean_diff = sum as f64 / n as f64;
    println!(
        "pixels vs Caffe: max {max}, mean {mean_diff:.4}, identical {:.2} %",
        100.0 * same as f64 / n as f64
    );
    assert!(max <= MAX_PIXEL_DIFF, "max pixel difference {max}");
    assert!(
        mean_diff < MEAN_PIXEL_DIFF,
        "mean pixel difference {mean_diff}"
    );

    // The mean of our records against Caffe's mean: each element is an average of 24
    // differences, so it is bounded by the largest pixel difference, and each channel
    // mean differs by at most that channel's mean absolute pixel difference.
    let our_mean = compute_image_mean(&ours_path).unwrap();
    let caffe_mean = read_binaryproto(&o.mean).unwrap();
    assert_eq!(our_mean.mean.shape, caffe_mean.shape);
    let diffs: Vec<f32> = our_mean
        .mean
        .data
        .iter()
        .zip(&caffe_mean.data)
        .map(|(x, y)| (x - y).abs())
        .collect();
    let max_mean_diff = diffs.iter().fold(0.0f32, |m, &d| m.max(d));
    assert!(max_mean_diff <= MAX_PIXEL_DIFF as f32, "{max_mean_diff}");
    let channel_means = our_mean.channel_means();
    println!("mean image: max diff {max_mean_diff:.4}; channel means {channel_means:?}");
    let records = 24 * plane as u64;
    for ((m, caffe), abs) in channel_means
        .iter()
        .zip([111.872, 133.012, 167.704])
        .zip(channel_abs)
    {
        let bound = abs as f64 / records as f64;
        println!("channel mean {m:.3} vs Caffe's {caffe}: bound {bound:.4}");
        // 5e-4: Caffe's log rounds the channel means to 6 significant digits.
        assert!((m - caffe).abs() <= bound + 5e-4, "{m} vs Caffe's {caffe}");
    }
}

#[test]
fn cli_converts_averages_and_shows_with_exit_codes() {
    let Some(o) = oracle() else {
        return;
    };
    let exe = env!("CARGO_BIN_EXE_agegender");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cli_lmdb");
    let status = Command::new(exe)
        .args(["data", "lmdb", "--size", "227", "--json", "--list"])
        .arg(&o.list)
        .arg("--root")
        .arg(&o.images)
        .arg("--out")
        .arg(&db)
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(0), "{status:?}");

    let npy = dir.path().join("mean.npy");
    let out = Command::new(exe)
        .args(["data", "mean", "--json", "-o"])
        .arg(&npy)
        .arg(&db)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["records"], 24);
    assert_eq!(
        agegender::io::npy::read_npy(&npy).unwrap().shape,
        vec![3, 227, 227]
    );

    let png = dir.path().join("r3.png");
    let out = Command::new(exe)
        .args(["data", "show", "--json", "--index", "3", "-o"])
        .arg(&png)
        .arg(&o.lmdb)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["records"], 24);
    assert_eq!(report["shapes"]["3x227x227"], 24);
    // utkface24_list.txt: buckets 0–5 three times each, 6–8 twice each.
    for (label, count) in [("0", 3), ("5", 3), ("6", 2), ("8", 2)] {
        assert_eq!(report["labels"][label], count, "label {label}");
    }
    assert_eq!(report["record"]["label"], 3);
    let saved = image::open(&png).unwrap().to_rgb8();
    assert_eq!(saved.dimensions(), (227, 227));

    // A list naming a missing file: the others are written, the exit code is 1.
    let list = dir.path().join("list.txt");
    let first = std::fs::read_to_string(&o.list).unwrap();
    let first = first.lines().next().unwrap();
    std::fs::write(&list, format!("{first}\nno_such_file.jpg 1\n")).unwrap();
    let out = Command::new(exe)
        .args(["data", "lmdb", "--size", "32", "--list"])
        .arg(&list)
        .arg("--root")
        .arg(&o.images)
        .arg("--out")
        .arg(dir.path().join("partial_lmdb"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let partial = LmdbReader::open(&dir.path().join("partial_lmdb")).unwrap();
    assert_eq!(partial.len().unwrap(), 1);

    // A bad list line is bad input: exit code 2, message naming the file and line.
    std::fs::write(&list, "x.jpg notanumber\n").unwrap();
    let out = Command::new(exe)
        .args(["data", "lmdb", "--list"])
        .arg(&list)
        .arg("--root")
        .arg(&o.images)
        .arg("--out")
        .arg(dir.path().join("bad_lmdb"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("list.txt:1"), "{err}");
    assert!(!dir.path().join("bad_lmdb").exists());
}
