//! End-to-end `data prepare` on the real 3,434 Asian UTKFace faces, and on small folders
//! with corrupt and malformed files. References: the class counts published with the data
//! (`shared/data/utkface-asian/SOURCE.md`), the labels in its `manifest.tsv`, and the
//! original project's 2,747 / 687 split.

use agegender::data::augment::NOISE_SIGMA;
use agegender::data::utkface::RaceFilter;
use agegender::data::{prepare, PrepareOptions};
use agegender::io::datum::datum_to_image;
use agegender::io::image::ChwImage;
use agegender::io::lmdb::LmdbReader;
use agegender::testutil::shared;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::Instant;

/// `manifest.tsv`: file name → (age bucket, gender).
fn manifest(dir: &Path) -> HashMap<String, (i32, i32)> {
    let text = std::fs::read_to_string(dir.join("manifest.tsv")).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            (
                c[0].to_string(),
                (c[4].parse().unwrap(), c[2].parse().unwrap()),
            )
        })
        .collect()
}

/// `augmented.tsv`: generated name → (source, kind).
fn augmented(out: &Path) -> HashMap<String, (String, String)> {
    let text = std::fs::read_to_string(out.join("augmented.tsv")).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            (c[0].to_string(), (c[1].to_string(), c[2].to_string()))
        })
        .collect()
}

/// All (key, label) pairs of an LMDB, plus the images of the records named in `keep`.
fn read_all(db: &Path, keep: &HashSet<String>) -> (Vec<(String, i32)>, HashMap<String, ChwImage>) {
    let reader = LmdbReader::open(db).unwrap();
    let mut cursor = reader.cursor().unwrap();
    let (mut keys, mut images) = (Vec::new(), HashMap::new());
    while let Some((record, datum)) = cursor.next_datum().unwrap() {
        assert_eq!(
            (datum.channels(), datum.height(), datum.width()),
            (3, 227, 227)
        );
        let name = record.name();
        if keep.contains(&name) {
            images.insert(name, datum_to_image(&datum).unwrap());
        }
        keys.push((record.key_str(), datum.label()));
    }
    (keys, images)
}

#[test]
fn prepare_on_the_real_3434_faces() {
    let Some(faces) = shared("data/utkface-asian") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("prepared");
    let start = Instant::now();
    let report = prepare(&PrepareOptions::new(&faces, &out)).unwrap();
    println!(
        "data prepare on 3,434 faces: {:.1} s",
        start.elapsed().as_secs_f64()
    );
    println!("{}", report.summary());

    // SOURCE.md's table for the 3,434 Asian faces.
    let c = &report.counts;
    assert_eq!(c.all.age, [929, 96, 1329, 527, 157, 115, 95, 84, 102]);
    assert_eq!(c.all.gender, [1575, 1859]);
    assert_eq!((c.train.total, c.test.total), (2747, 687));
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    assert_eq!(report.non_image_files, 2, "manifest.tsv and SOURCE.md");
    for class in 0..9 {
        assert_eq!(c.train.age[class] + c.test.age[class], c.all.age[class]);
    }
    let largest = *c.train.age.iter().max().unwrap();
    assert_eq!(c.train_oversampled.age, [largest; 9]);
    assert_eq!(c.train_oversampled.total, 9 * largest);
    assert_eq!(report.generated["total"], 9 * largest - 2747);

    // LMDB contents: keys in order, labels from the manifest, test and train disjoint.
    let labels = manifest(&faces);
    let generated = augmented(&out);
    assert_eq!(generated.len(), 9 * largest - 2747);
    let flips: Vec<(&String, &String)> = generated
        .iter()
        .filter(|(_, (_, kind))| kind == "flip")
        .map(|(name, (source, _))| (name, source))
        .take(5)
        .collect();
    let noises: Vec<(&String, &String)> = generated
        .iter()
        .filter(|(_, (_, kind))| kind == "noise")
        .map(|(name, (source, _))| (name, source))
        .take(20)
        .collect();
    let keep: HashSet<String> = flips
        .iter()
        .chain(&noises)
        .flat_map(|(a, b)| [a.to_string(), b.to_string()])
        .collect();
    let lmdb = out.join("lmdb");
    let (age_train, images) = read_all(&lmdb.join("age_train_lmdb"), &keep);
    let (gender_train, _) = read_all(&lmdb.join("gender_train_lmdb"), &HashSet::new());
    let (age_test, _) = read_all(&lmdb.join("age_test_lmdb"), &HashSet::new());
    let (gender_test, _) = read_all(&lmdb.join("gender_test_lmdb"), &HashSet::new());
    assert_eq!((age_train.len(), age_test.len()), (9 * largest, 687));
    let mut train_originals = HashSet::new();
    for (part, age, gender) in [
        ("train", &age_train, &gender_train),
        ("test", &age_test, &gender_test),
    ] {
        let list = std::fs::read_to_string(out.join(format!("age_{part}.txt"))).unwrap();
        assert_eq!(list.lines().count(), age.len());
        for (i, (((key, age_label), (gkey, gender_label)), line)) in
            age.iter().zip(gender.iter()).zip(list.lines()).enumerate()
        {
            assert_eq!(key, gkey);
            let (index, name) = key.split_once('_').unwrap();
            assert_eq!(index, format!("{i:08}"));
            assert_eq!(line, format!("{name} {age_label}"));
            let source = generated.get(name).map_or(name, |(s, _)| s.as_str());
            assert_eq!(labels[source], (*age_label, *gender_label), "{key}");
            if part == "train" && !generated.contains_key(name) {
                train_originals.insert(name.to_string());
            } else if part == "test" {
                assert!(!train_originals.contains(name), "{name} in both parts");
            }
        }
    }
    assert_eq!(train_originals.len(), 2747);

    // Flip records are exact mirrors of their source records.
    for (name, source) in &flips {
        assert_eq!(
            images[*name],
            images[*source].flipped_horizontally(),
            "{name}"
        );
    }
    // Noise: σ of (noisy − source)/255 over mid-range source pixels (≥ 2.5σ from the
    // clipping limits, so clipping is negligible) is 0.1; 20 records give ~3 million draws.
    let (mut n, mut sum, mut sum2) = (0f64, 0f64, 0f64);
    for (name, source) in &noises {
        for (&a, &b) in images[*name].data.iter().zip(&images[*source].data) {
            if (64..=191).contains(&b) {
                let d = (a as f64 - b as f64) / 255.0;
                n += 1.0;
                sum += d;
                sum2 += d * d;
            }
        }
    }
    let sigma = (sum2 / n - (sum / n).powi(2)).sqrt();
    println!("noise σ measured on {n} values: {sigma:.5}");
    assert!((sigma - NOISE_SIGMA as f64).abs() < 0.002, "σ {sigma}");

    // Mean files: binaryproto 1×3×227×227 and npy 3×227×227 with the same values.
    let bp =
        agegender::caffe::binaryproto::read_binaryproto(&out.join("mean.binaryproto")).unwrap();
    let npy = agegender::io::npy::read_npy_expect(&out.join("mean.npy"), &[3, 227, 227]).unwrap();
    assert_eq!(bp.shape, vec![1, 3, 227, 227]);
    assert!(bp.data == npy.data);
    assert_eq!(report.mean_bgr.len(), 3);
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("stats.json")).unwrap()).unwrap();
    assert_eq!(stats["counts"]["test"]["total"], 687);
    assert_eq!(stats["lmdb_records"]["gender_test_lmdb"], 687);
}

/// Links `names` from the real folder into a new folder, to mix them with broken files.
fn folder_with(faces: &Path, names: &[String]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for n in names {
        std::os::unix::fs::symlink(faces.join(n), dir.path().join(n)).unwrap();
    }
    dir
}

#[test]
fn corrupt_and_malformed_files_are_skipped_and_counted_and_runs_repeat() {
    let Some(faces) = shared("data/utkface-asian") else {
        return;
    };
    let mut names: Vec<String> = manifest(&faces).into_keys().collect();
    names.sort();
    let names: Vec<String> = names.into_iter().step_by(100).collect();
    let input = folder_with(&faces, &names);
    std::fs::write(
        input.path().join("33_0_2_20170101000000000.jpg.chip.jpg"),
        b"\xff\xd8\xff\xe0 truncated",
    )
    .unwrap();
    std::fs::write(
        input.path().join("39_1_20170116174525125.jpg.chip.jpg"),
        b"x",
    )
    .unwrap();
    std::fs::write(
        input.path().join("40_0_1_20170101000000000.jpg.chip.jpg"),
        b"x",
    )
    .unwrap();

    let out = tempfile::tempdir().unwrap();
    let mut options = PrepareOptions::new(input.path(), &out.path().join("a"));
    options.size = 227;
    let report = prepare(&options).unwrap();
    let expected_skips = BTreeMap::from([
        ("corrupt image".to_string(), 1),
        ("malformed name: not 4 fields".to_string(), 1),
    ]);
    assert_eq!(report.skipped, expected_skips);
    assert_eq!(report.other_races, 1);
    assert_eq!(report.counts.all.total, names.len());

    // Same options, same records.
    options.out_dir = out.path().join("b");
    prepare(&options).unwrap();
    for db in ["age_train_lmdb", "gender_test_lmdb"] {
        let read = |root: &str| -> Vec<_> {
            let path = out.path().join(root).join("lmdb").join(db);
            LmdbReader::open(&path)
                .unwrap()
                .cursor()
                .unwrap()
                .map(|r| r.unwrap())
                .collect()
        };
        assert_eq!(read("a"), read("b"), "{db} differs between runs");
    }
    // A subset of the real folder with --limit, stratified, all races.
    let mut quick = PrepareOptions::new(&faces, &out.path().join("quick"));
    quick.limit = Some(60);
    quick.size = 32;
    quick.stratify = true;
    quick.race = RaceFilter::All;
    let r = prepare(&quick).unwrap();
    assert_eq!(r.counts.all.total, 60);
    assert_eq!(r.counts.train.total + r.counts.test.total, 60);
}

#[test]
fn bad_options_are_refused_before_any_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("never");
    let mut options = PrepareOptions::new(dir.path(), &out);
    options.train_fraction = 1.0;
    assert!(prepare(&options)
        .unwrap_err()
        .to_string()
        .contains("--split"));
    options.train_fraction = 0.8;
    let e = prepare(&options).unwrap_err().to_string();
    assert!(e.contains("no usable image"), "{e}");
    assert!(!out.exists());
}
