//! `data prepare`: the whole UTKFace → Caffe LMDB pipeline of the original project.
//!
//! 1. Scan the folder; labels from the names, malformed names skipped and counted.
//! 2. Decode every image once (all cores) so corrupt files are skipped and counted before
//!    the split; the compressed bytes are kept (a few MB) for the writing pass.
//! 3. Split sorted samples with a seeded shuffle (see [`super::split`]).
//! 4. Oversample the train part by age class (see [`super::augment`]).
//! 5. Write `lmdb/{age,gender}_{test,train}_lmdb` as `convert_imageset` would (Datum,
//!    uint8 C×H×W BGR, `%08d_<name>` keys in shuffled order), decoding and resizing on all
//!    cores; each LMDB appears only when complete.
//! 6. The mean of the age train LMDB (`mean.binaryproto`, `mean.npy`), the list files
//!    (`<name> <label>` in LMDB order), `augmented.tsv` (each generated sample's source)
//!    and, last, `stats.json` with the tables and counts.
//!
//! Everything is written into a temporary sibling folder that is renamed to the output
//! folder only when complete (issue 8: no half-written LMDB after an error or a stop
//! request). A set [`PrepareOptions::stop`] flag (SIGINT/SIGTERM in the CLI) ends the run
//! at the next record with [`DataError::Interrupted`] and removes the temporary folder.

use super::augment::{plan_oversampling, Augmentation, GeneratedSample};
use super::imageset::{progress_bar, render_in_order};
use super::mean::{MeanAccumulator, MeanImage};
use super::split::{seeded_shuffle, split_samples, streams};
use super::stats::{format_tables, ClassCounts};
use super::utkface::{scan_utkface, FaceLabels, FaceSample, RaceFilter, AGE_BUCKETS, RACES};
use super::DataError;
use crate::io::datum::datum_from_image;
use crate::io::image::{decode_image, resize_linear, ChwImage};
use crate::io::lmdb::LmdbWriter;
use crate::util::atomic::{atomic_write, AtomicDir};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Options of [`prepare`]; [`PrepareOptions::new`] gives the original project's defaults.
#[derive(Clone, Debug)]
pub struct PrepareOptions {
    /// The UTKFace folder (searched recursively).
    pub utkface_dir: PathBuf,
    /// Output folder.
    pub out_dir: PathBuf,
    /// Races kept (default Asian, the original project's subset).
    pub race: RaceFilter,
    /// Share of samples in the train part (default 0.8).
    pub train_fraction: f64,
    /// Seed of every random decision (default 230, the original project's).
    pub seed: u64,
    /// Records are `size × size` (default 227, the nets' input).
    pub size: usize,
    /// Split every age class separately to keep its proportion.
    pub stratify: bool,
    /// Use only a seeded random subset of this many samples (quick end-to-end runs).
    pub limit: Option<usize>,
    /// Show progress bars.
    pub progress: bool,
    /// Set (by a signal handler) to stop at the next record; nothing is left behind.
    pub stop: Option<Arc<AtomicBool>>,
}

impl PrepareOptions {
    /// The defaults: Asian faces, 80/20 split, seed 230, 227×227 records, no stratification.
    pub fn new(utkface_dir: &Path, out_dir: &Path) -> Self {
        Self {
            utkface_dir: utkface_dir.to_path_buf(),
            out_dir: out_dir.to_path_buf(),
            race: RaceFilter::Only(2),
            train_fraction: 0.8,
            seed: 230,
            size: 227,
            stratify: false,
            limit: None,
            progress: false,
            stop: None,
        }
    }
}

/// Class counts of every stage.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StageCounts {
    /// All usable images.
    pub all: ClassCounts,
    /// The train part before oversampling.
    pub train: ClassCounts,
    /// The train part after oversampling (what the train LMDBs hold).
    pub train_oversampled: ClassCounts,
    /// The test part.
    pub test: ClassCounts,
}

/// What [`prepare`] did; written as `stats.json`.
#[derive(Clone, Debug, Serialize)]
pub struct PrepareReport {
    /// Input folder.
    pub utkface_dir: PathBuf,
    /// Output folder.
    pub out_dir: PathBuf,
    /// `all` or the race kept.
    pub race: String,
    /// Seed used.
    pub seed: u64,
    /// Train share.
    pub train_fraction: f64,
    /// Record size.
    pub size: usize,
    /// Whether the split was stratified.
    pub stratify: bool,
    /// The subset size, if limited.
    pub limit: Option<usize>,
    /// Age class names, in class-id order.
    pub age_classes: Vec<String>,
    /// Skipped image files by reason (malformed names, corrupt images).
    pub skipped: BTreeMap<String, usize>,
    /// A few examples per skip reason.
    pub skipped_examples: BTreeMap<String, Vec<String>>,
    /// Valid faces of other races, left out.
    pub other_races: usize,
    /// Non-image files ignored.
    pub non_image_files: usize,
    /// Class counts per stage.
    pub counts: StageCounts,
    /// Generated samples: total, flips, noise.
    pub generated: BTreeMap<String, usize>,
    /// Records per LMDB (by folder name).
    pub lmdb_records: BTreeMap<String, usize>,
    /// Per-channel means of the age train LMDB (B, G, R).
    pub mean_bgr: Vec<f64>,
    /// Files and folders written, relative to the output folder.
    pub outputs: Vec<String>,
}

impl PrepareReport {
    /// The original project's tables and the channel means, as printed by the CLI.
    pub fn summary(&self) -> String {
        let c = &self.counts;
        let mut s = format_tables(&[
            ("all", &c.all),
            ("train", &c.train),
            ("train oversampled", &c.train_oversampled),
            ("test", &c.test),
        ]);
        let skipped: usize = self.skipped.values().sum();
        let _ = writeln!(s, "\nSkipped {skipped} image file(s):");
        for (reason, n) in &self.skipped {
            let _ = writeln!(s, "  {n:>6}  {reason}");
        }
        let _ = writeln!(
            s,
            "Other races left out: {}; non-image files ignored: {}",
            self.other_races, self.non_image_files
        );
        let _ = writeln!(
            s,
            "Generated {} train samples ({} flips, {} noise)",
            self.generated.get("total").unwrap_or(&0),
            self.generated.get("flip").unwrap_or(&0),
            self.generated.get("noise").unwrap_or(&0)
        );
        for (name, n) in &self.lmdb_records {
            let _ = writeln!(s, "  {name}: {n} records");
        }
        if let [b, g, r] = self.mean_bgr[..] {
            let _ = writeln!(s, "Mean of age_train_lmdb: B {b:.3}  G {g:.3}  R {r:.3}");
        }
        s
    }
}

/// A record of a train or test LMDB.
#[derive(Clone, Copy, Debug)]
enum Record<'a> {
    /// A real image: index into the usable samples.
    Original(usize),
    /// A generated one.
    Generated(&'a GeneratedSample),
}

/// The usable samples and their compressed bytes.
struct Usable {
    samples: Vec<FaceSample>,
    bytes: Vec<Vec<u8>>,
}

impl Usable {
    fn source(&self, record: Record) -> usize {
        match record {
            Record::Original(i) => i,
            Record::Generated(g) => g.source,
        }
    }

    fn labels(&self, record: Record) -> FaceLabels {
        self.samples[self.source(record)].labels
    }

    fn name(&self, record: Record) -> String {
        match record {
            Record::Original(i) => self.samples[i].path.clone(),
            Record::Generated(g) => g.name(&self.samples[g.source].path),
        }
    }

    /// Decodes, resizes and (for generated samples) augments one record.
    fn render(&self, record: Record, size: usize, seed: u64) -> Result<ChwImage, DataError> {
        let i = self.source(record);
        let image = decode_image(&self.bytes[i]).map_err(|e| DataError::Record {
            path: PathBuf::from(&self.samples[i].path),
            key: self.name(record),
            reason: format!("image decoded before but not now: {e}"),
        })?;
        let resized = resize_linear(&image, size, size);
        Ok(match record {
            Record::Original(_) => resized,
            Record::Generated(g) => g.apply(&resized, seed),
        })
    }
}

fn validate(options: &PrepareOptions) -> Result<(), DataError> {
    let f = options.train_fraction;
    if !(f > 0.0 && f < 1.0) {
        return Err(DataError::Options(format!(
            "--split {f} must lie strictly between 0 and 1"
        )));
    }
    if !(1..=4096).contains(&options.size) {
        return Err(DataError::Options(format!(
            "--size {} must be in 1..=4096",
            options.size
        )));
    }
    if options.limit == Some(0) {
        return Err(DataError::Options("--limit must be at least 1".into()));
    }
    Ok(())
}

/// Runs the pipeline (see the module documentation) and returns its report, which is also
/// written to `OUT/stats.json`.
pub fn prepare(options: &PrepareOptions) -> Result<PrepareReport, DataError> {
    validate(options)?;
    let mut scan = scan_utkface(&options.utkface_dir, options.race)?;
    if let Some(limit) = options.limit {
        if limit < scan.samples.len() {
            seeded_shuffle(&mut scan.samples, options.seed, streams::SUBSET);
            scan.samples.truncate(limit);
            scan.samples.sort_by(|a, b| a.path.cmp(&b.path));
        }
    }

    // Decode every image once; keep the compressed bytes of the good ones.
    let bar = progress_bar(scan.samples.len(), "decode", options.progress);
    let checked: Vec<Result<Vec<u8>, &str>> = scan
        .samples
        .par_iter()
        .map(|s| {
            let result = std::fs::read(options.utkface_dir.join(&s.path))
                .map_err(|_| "unreadable image")
                .and_then(|bytes| match decode_image(&bytes) {
                    Ok(_) => Ok(bytes),
                    Err(_) => Err("corrupt image"),
                });
            bar.inc(1);
            result
        })
        .collect();
    bar.finish_and_clear();
    let mut usable = Usable {
        samples: Vec::new(),
        bytes: Vec::new(),
    };
    for (sample, result) in std::mem::take(&mut scan.samples).into_iter().zip(checked) {
        match result {
            Ok(bytes) => {
                usable.samples.push(sample);
                usable.bytes.push(bytes);
            }
            Err(reason) => scan.skip(reason, &sample.path),
        }
    }
    if usable.samples.is_empty() {
        return Err(DataError::NoImages {
            path: options.utkface_dir.clone(),
        });
    }

    let classes: Vec<usize> = usable
        .samples
        .iter()
        .map(|s| s.labels.age_bucket())
        .collect();
    let split = split_samples(
        &classes,
        options.train_fraction,
        options.seed,
        options.stratify,
    );
    let plan = plan_oversampling(
        &split.train,
        |i| classes[i],
        AGE_BUCKETS.len(),
        options.seed,
    );
    let mut train: Vec<Record> = split
        .train
        .iter()
        .map(|&i| Record::Original(i))
        .chain(plan.iter().map(Record::Generated))
        .collect();
    seeded_shuffle(&mut train, options.seed, streams::TRAIN_ORDER);
    let test: Vec<Record> = split.test.iter().map(|&i| Record::Original(i)).collect();

    check_stop(options)?;
    let staging = AtomicDir::new(&options.out_dir)?;
    let out = &staging.path().to_path_buf();
    let lmdb_dir = out.join("lmdb");
    std::fs::create_dir_all(&lmdb_dir).map_err(|source| DataError::Io {
        path: lmdb_dir.clone(),
        source,
    })?;
    let mut lmdb_records = BTreeMap::new();
    let mut outputs = Vec::new();
    let mut mean_bgr = Vec::new();
    for (part, records) in [("test", &test), ("train", &train)] {
        let mut mean = (part == "train").then(MeanAccumulator::default);
        let message = if part == "train" {
            "augment + write train LMDBs"
        } else {
            "write test LMDBs"
        };
        let bar = progress_bar(records.len(), message, options.progress);
        let written = write_lmdb_pair(
            &usable,
            records,
            &lmdb_dir,
            part,
            options,
            mean.as_mut(),
            &bar,
        )?;
        bar.finish_and_clear();
        for net in ["age", "gender"] {
            let name = format!("{net}_{part}_lmdb");
            lmdb_records.insert(name.clone(), written);
            outputs.push(format!("lmdb/{name}"));
        }
        let lists = write_lists(&usable, records, out, part)?;
        outputs.extend(lists);
        if let Some(mean) = mean.and_then(MeanAccumulator::finish) {
            outputs.extend(write_mean(&mean, out)?);
            mean_bgr = mean.channel_means();
        }
    }
    outputs.push(write_augmented_tsv(&usable, &plan, out)?);

    let labels_of = |records: &[Record]| -> Vec<FaceLabels> {
        records.iter().map(|&r| usable.labels(r)).collect()
    };
    let originals: Vec<FaceLabels> = usable.samples.iter().map(|s| s.labels).collect();
    let train_originals: Vec<FaceLabels> = split
        .train
        .iter()
        .map(|&i| usable.samples[i].labels)
        .collect();
    let counts = StageCounts {
        all: ClassCounts::of(&originals),
        train: ClassCounts::of(&train_originals),
        train_oversampled: ClassCounts::of(&labels_of(&train)),
        test: ClassCounts::of(&labels_of(&test)),
    };
    let flips = plan.iter().filter(|g| g.kind == Augmentation::Flip).count();
    let generated = BTreeMap::from([
        ("total".to_string(), plan.len()),
        ("flip".to_string(), flips),
        ("noise".to_string(), plan.len() - flips),
    ]);
    outputs.push("stats.json".into());
    let report = PrepareReport {
        utkface_dir: options.utkface_dir.clone(),
        out_dir: options.out_dir.clone(),
        race: match options.race {
            RaceFilter::All => "all".into(),
            RaceFilter::Only(r) => RACES.get(r as usize).unwrap_or(&"?").to_string(),
        },
        seed: options.seed,
        train_fraction: options.train_fraction,
        size: options.size,
        stratify: options.stratify,
        limit: options.limit,
        age_classes: AGE_BUCKETS.iter().map(|s| s.to_string()).collect(),
        skipped: scan.skipped,
        skipped_examples: scan.skipped_examples,
        other_races: scan.other_races,
        non_image_files: scan.non_image_files,
        counts,
        generated,
        lmdb_records,
        mean_bgr,
        outputs,
    };
    let json = serde_json::to_vec_pretty(&report)?;
    atomic_write(&out.join("stats.json"), &json)?;
    check_stop(options)?;
    staging.commit()?;
    Ok(report)
}

/// [`DataError::Interrupted`] once the stop flag is set.
fn check_stop(options: &PrepareOptions) -> Result<(), DataError> {
    match &options.stop {
        Some(flag) if flag.load(Ordering::SeqCst) => Err(DataError::Interrupted {
            path: options.out_dir.clone(),
        }),
        _ => Ok(()),
    }
}

/// Writes the age and gender LMDBs of one part in one pass (same records and keys, labels
/// differ), accumulating the mean when asked. Returns the record count.
fn write_lmdb_pair(
    usable: &Usable,
    records: &[Record],
    lmdb_dir: &Path,
    part: &str,
    options: &PrepareOptions,
    mut mean: Option<&mut MeanAccumulator>,
    bar: &indicatif::ProgressBar,
) -> Result<usize, DataError> {
    let mut age = LmdbWriter::create(&lmdb_dir.join(format!("age_{part}_lmdb")))?;
    let mut gender = LmdbWriter::create(&lmdb_dir.join(format!("gender_{part}_lmdb")))?;
    render_in_order(
        records,
        |&r| usable.render(r, options.size, options.seed),
        |index, &record, image| {
            check_stop(options)?;
            let labels = usable.labels(record);
            let name = usable.name(record);
            let mut datum = datum_from_image(&image?, labels.age_bucket() as i32);
            if let Some(m) = mean.as_deref_mut() {
                m.add(&datum).map_err(|reason| DataError::Record {
                    path: lmdb_dir.join(format!("age_{part}_lmdb")),
                    key: name.clone(),
                    reason,
                })?;
            }
            age.put_datum(index, &name, &datum)?;
            datum.label = Some(labels.gender as i32);
            gender.put_datum(index, &name, &datum)?;
            bar.inc(1);
            Ok::<(), DataError>(())
        },
    )?;
    let written = age.finish()?;
    gender.finish()?;
    Ok(written)
}

/// Writes `{age,gender}_<part>.txt` (`<name> <label>` in LMDB order).
fn write_lists(
    usable: &Usable,
    records: &[Record],
    out: &Path,
    part: &str,
) -> Result<Vec<String>, DataError> {
    let mut age = String::new();
    let mut gender = String::new();
    for &r in records {
        let (name, labels) = (usable.name(r), usable.labels(r));
        let _ = writeln!(age, "{name} {}", labels.age_bucket());
        let _ = writeln!(gender, "{name} {}", labels.gender);
    }
    let mut written = Vec::new();
    for (net, text) in [("age", age), ("gender", gender)] {
        let file = format!("{net}_{part}.txt");
        atomic_write(&out.join(&file), text.as_bytes())?;
        written.push(file);
    }
    Ok(written)
}

/// Writes `mean.binaryproto` and `mean.npy`.
fn write_mean(mean: &MeanImage, out: &Path) -> Result<Vec<String>, DataError> {
    let files = ["mean.binaryproto", "mean.npy"];
    for f in files {
        mean.save(&out.join(f))?;
    }
    Ok(files.iter().map(|f| f.to_string()).collect())
}

/// Writes `augmented.tsv`: one row per generated sample with its source and kind.
fn write_augmented_tsv(
    usable: &Usable,
    plan: &[GeneratedSample],
    out: &Path,
) -> Result<String, DataError> {
    let mut text = String::from("#name\tsource\tkind\tage_bucket\tgender\n");
    for g in plan {
        let source = &usable.samples[g.source];
        let _ = writeln!(
            text,
            "{}\t{}\t{}\t{}\t{}",
            g.name(&source.path),
            source.path,
            g.kind.name(),
            source.labels.age_bucket(),
            source.labels.gender
        );
    }
    atomic_write(&out.join("augmented.tsv"), text.as_bytes())?;
    Ok("augmented.tsv".into())
}
