//! The data step of the pipeline: `data prepare` with the original project's defaults,
//! reuse of an earlier run's data (`--resume`), the natural gender train LMDB, and the
//! class-prior shift that oversampling calls for.

use super::prototxt::NetKind;
use super::{step_line, PipelineError, PipelineOptions};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What `data prepare` wrote.
#[derive(Debug, Clone)]
pub struct PreparedData {
    /// Its output folder.
    pub dir: PathBuf,
    /// Images used.
    pub images: usize,
    /// Records per LMDB, by folder name.
    pub records: BTreeMap<String, usize>,
}

impl PreparedData {
    /// `data/lmdb/<age|gender>_<train|test>_lmdb`.
    pub fn lmdb(&self, kind: NetKind, split: &str) -> PathBuf {
        self.dir
            .join("lmdb")
            .join(format!("{}_{split}_lmdb", kind.key()))
    }

    /// The train LMDB of `kind`: the natural gender LMDB with
    /// [`PipelineOptions::gender_natural`], else `data prepare`'s oversampled one.
    pub fn train_lmdb(&self, kind: NetKind, options: &PipelineOptions) -> PathBuf {
        if kind == NetKind::Gender && options.gender_natural {
            self.dir.join("lmdb").join("gender_train_natural_lmdb")
        } else {
            self.lmdb(kind, "train")
        }
    }

    /// The logit shift that restores the train split's class prior after oversampling:
    /// `ln(π_train[c] / π_oversampled[c])` per class, from `stats.json`. Oversampling trains
    /// the classifier for the oversampled prior (uniform over age buckets); adding this to
    /// fc8's bias is Bayes' rule for the prior the test data is drawn from (logit
    /// adjustment, Menon et al., ICLR 2021). It uses train-split counts only.
    pub fn prior_shift(&self, kind: NetKind) -> Result<Vec<f32>, PipelineError> {
        let fail = |msg: String| PipelineError::Step {
            step: "prior correction",
            msg,
        };
        let path = self.dir.join("stats.json");
        let stats: serde_json::Value = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            .map_err(|e| fail(format!("{}: {e}", path.display())))?;
        let key = kind.key();
        let counts = |part: &str| -> Result<Vec<f64>, PipelineError> {
            stats["counts"][part][key]
                .as_array()
                .and_then(|a| a.iter().map(|v| v.as_f64()).collect::<Option<Vec<_>>>())
                .filter(|v| v.len() == kind.classes() && v.iter().all(|&n| n > 0.0))
                .ok_or_else(|| {
                    fail(format!(
                        "{}: counts.{part}.{key} is not {} positive counts",
                        path.display(),
                        kind.classes()
                    ))
                })
        };
        let (train, over) = (counts("train")?, counts("train_oversampled")?);
        let (nt, no): (f64, f64) = (train.iter().sum(), over.iter().sum());
        Ok(train
            .iter()
            .zip(&over)
            .map(|(t, o)| ((t / nt) / (o / no)).ln() as f32)
            .collect())
    }

    /// The mean of the age train LMDB, as Caffe's binaryproto.
    pub fn mean_binaryproto(&self) -> PathBuf {
        self.dir.join("mean.binaryproto")
    }
}

/// `data prepare` into `out` with the original project's defaults (Asian faces, 80/20
/// split, seed 230, 227×227 records), on a seeded subset with `--quick`.
pub(super) fn prepare_data(
    source: &Path,
    out: &Path,
    options: &PipelineOptions,
) -> Result<PreparedData, PipelineError> {
    if options.resume {
        if let Some(done) = finished_data(out, options) {
            step_line(
                options,
                &format!("reusing the prepared data in {}", out.display()),
            );
            return Ok(done);
        }
    }
    let mut prepare = crate::data::PrepareOptions::new(source, out);
    prepare.limit = options.limit();
    prepare.size = options.record_size();
    prepare.progress = options.verbose;
    let report = crate::data::prepare(&prepare).map_err(|e| PipelineError::Step {
        step: "data prepare",
        msg: e.to_string(),
    })?;
    if options.verbose {
        eprintln!("{}", report.summary());
    }
    Ok(PreparedData {
        dir: out.to_path_buf(),
        images: report.counts.all.total,
        records: report.lmdb_records.clone(),
    })
}

/// Writes `data/lmdb/gender_train_natural_lmdb`: the records of `gender_train.txt` that are
/// original faces (not `augmented/` copies), in the same shuffled order and at the same
/// record size, as `convert_imageset` writes them. Kept when `--resume` finds it complete.
pub(super) fn natural_gender_lmdb(
    source: &Path,
    data: &PreparedData,
    options: &PipelineOptions,
) -> Result<(), PipelineError> {
    let out = data.train_lmdb(NetKind::Gender, options);
    if options.resume && out.join("data.mdb").is_file() {
        return Ok(());
    }
    let fail = |msg: String| PipelineError::Step {
        step: "data prepare",
        msg,
    };
    let list = data.dir.join("gender_train.txt");
    let entries: Vec<_> = crate::data::read_image_list(&list)
        .map_err(|e| fail(e.to_string()))?
        .into_iter()
        .filter(|e| !e.path.starts_with("augmented/"))
        .collect();
    let report = crate::data::convert_imageset(
        source,
        &entries,
        &out,
        &crate::data::ImagesetOptions {
            size: Some(options.record_size()),
            shuffle_seed: None,
            progress: options.verbose,
        },
    )
    .map_err(|e| fail(format!("{}: {e}", out.display())))?;
    if !report.failed.is_empty() {
        return Err(fail(format!(
            "{}: {} image(s) of {} could not be read",
            out.display(),
            report.failed.len(),
            list.display()
        )));
    }
    step_line(
        options,
        &format!(
            "{}: {} records (natural gender train split)",
            out.display(),
            report.written
        ),
    );
    Ok(())
}

/// The data of an earlier run in `out`, when its `stats.json` says it was prepared with the
/// same record size and subset and every LMDB it lists exists (`--resume`).
pub(super) fn finished_data(out: &Path, options: &PipelineOptions) -> Option<PreparedData> {
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("stats.json")).ok()?).ok()?;
    let same = stats["size"].as_u64() == Some(options.record_size() as u64)
        && stats["limit"].as_u64().map(|v| v as usize) == options.limit();
    let records: BTreeMap<String, usize> = stats["lmdb_records"]
        .as_object()?
        .iter()
        .map(|(k, v)| Some((k.clone(), v.as_u64()? as usize)))
        .collect::<Option<_>>()?;
    let complete = records.len() == 4
        && records
            .keys()
            .all(|k| out.join("lmdb").join(k).join("data.mdb").is_file());
    (same && complete).then(|| PreparedData {
        dir: out.to_path_buf(),
        images: stats["counts"]["all"]["total"].as_u64().unwrap_or(0) as usize,
        records,
    })
}
