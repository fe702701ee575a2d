//! `agegender pipeline`: everything the original project did, end to end, in one command:
//! 1. `data prepare` (UTKFace → split → oversampling → LMDBs + mean);
//! 2. train AgeNet, then GenderNet, from solver and train_val files written into
//!    `OUT/prototxt/` ([`prototxt`]);
//! 3. test both on the test split (accuracy, confusion matrices);
//! 4. write each trained net as `.prototxt` + `.caffemodel`, `.onnx` and an NCS `.graph`,
//!    and the mean as `age_gender_mean.npy`;
//! 5. verify every format against the f32 Caffe model;
//! 6. `infer` on a few test images with every format;
//!
//! and writes `OUT/report.json` and `OUT/report.md` ([`report`]). Without a UTKFace folder
//! it uses `../shared/data/utkface-asian` when present, else a generated set
//! ([`synthetic`]) that the report labels as synthetic.
//!
//! Layout of OUT: `models/{AgeNet,GenderNet}_deploy.prototxt`, `.caffemodel`, `.onnx`,
//! `.graph`; `age_gender_mean.npy`; `report.json`; `report.md`; `prototxt/` (solver and
//! train_val files); `data/` (LMDBs); `train/` (snapshots, logs, curves).

pub mod prototxt;
pub mod report;
pub mod stages;
pub mod synthetic;

use prototxt::{NetKind, Schedule};
use report::{DatasetInfo, PipelineReport, TrainingInfo};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Errors of the pipeline; each names the step.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A step failed.
    #[error("{step}: {msg}")]
    Step {
        /// The step.
        step: &'static str,
        /// What went wrong.
        msg: String,
    },
    /// A step needs a module that is not in this build.
    #[error("{step}: not available in this build ({needs} has not landed yet)")]
    Unavailable {
        /// The step.
        step: &'static str,
        /// What it needs.
        needs: &'static str,
    },
    /// Inference (evaluation, formats) failed.
    #[error(transparent)]
    Infer(#[from] crate::infer::InferError),
    /// A file could not be written.
    #[error(transparent)]
    Write(#[from] crate::util::atomic::AtomicWriteError),
}

/// How the pipeline runs.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// The UTKFace folder; `None` looks for `../shared/data/utkface-asian`, then generates a
    /// synthetic set.
    pub utkface: Option<PathBuf>,
    /// Output folder.
    pub out: PathBuf,
    /// AgeNet iterations (default by mode).
    pub iters_age: Option<u64>,
    /// GenderNet iterations (default by mode).
    pub iters_gender: Option<u64>,
    /// The short demo: a subset, a short schedule, a few minutes in all.
    pub quick: bool,
    /// Worker threads (0 = all cores).
    pub threads: usize,
    /// The nets' input (and record) size; `None`: Levi & Hassner's 227, or 115 with
    /// `--quick` (115 keeps every feature map at half of 227's: 28, 14, 7, 3, and trains
    /// about 3–4× faster on a CPU).
    pub input_size: Option<usize>,
    /// Progress bars and step lines on stderr.
    pub verbose: bool,
    /// Levi & Hassner's augmentation: records larger than the input
    /// ([`PipelineOptions::record_size`], 256 for 227), random crops and mirroring in
    /// TRAIN, the centre crop in TEST and at inference. Off: records of the input's size,
    /// mirroring only, as the original project trained.
    pub crops: bool,
    /// Train GenderNet on the train split as it is (2,747 faces, with crops and mirroring)
    /// instead of the age-oversampled LMDB, whose ×15 copies of the rarest age buckets skew
    /// it towards old faces and 60/40 towards men; see [`natural_gender_lmdb`].
    pub gender_natural: bool,
    /// Start GenderNet from AgeNet's trained body (conv1–fc7), see [`write_feature_init`].
    pub transfer: bool,
    /// Shift fc8's bias by the log ratio of the train split's class prior to the
    /// oversampled one ([`PreparedData::prior_shift`]) in the written models.
    pub prior_correction: bool,
    /// Reuse what an earlier run in the same OUT finished: the prepared data (same size and
    /// subset), and each net's latest snapshot, resuming its training from there (a net
    /// whose final snapshot exists is not trained again).
    pub resume: bool,
    /// Set by a signal handler: training stops after the current iteration with a
    /// snapshot, and the pipeline ends with an error that says how to resume.
    pub stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl PipelineOptions {
    /// The LMDB record size: the input scaled by Levi & Hassner's 256/227 (rounded) with
    /// [`PipelineOptions::crops`], else the input size.
    pub fn record_size(&self) -> usize {
        let input = self.input();
        if self.crops {
            (input * 256 + 113) / 227
        } else {
            input
        }
    }

    /// Preprocessing at test and inference: Caffe's TEST transform (resize to the record
    /// size, centre crop) when training used crops.
    pub fn preprocess(&self) -> crate::infer::PreprocessOptions {
        crate::infer::PreprocessOptions {
            resize_to: self.crops.then(|| self.record_size()),
            ..Default::default()
        }
    }

    /// The input size in use: the option, else 115 with `--quick`, else 227.
    pub fn input(&self) -> usize {
        self.input_size
            .unwrap_or(if self.quick { 115 } else { 227 })
    }

    /// Images used: a seeded subset of 400 with `--quick`, else all.
    pub fn limit(&self) -> Option<usize> {
        self.quick.then_some(400)
    }

    /// Training batch: 32 with `--quick`, else Levi & Hassner's 50.
    pub fn batch(&self) -> usize {
        if self.quick {
            32
        } else {
            50
        }
    }

    /// Iterations for `kind`: the option, else 40 with `--quick`, else 4,000 (AgeNet) and
    /// 2,000 (GenderNet).
    pub fn iterations(&self, kind: NetKind) -> u64 {
        let (given, full) = match kind {
            NetKind::Age => (self.iters_age, 4000),
            NetKind::Gender => (self.iters_gender, 2000),
        };
        given.unwrap_or(if self.quick { 40 } else { full })
    }
}

/// The UTKFace folder of a checkout with `../shared` beside it (or `$AGEGENDER_SHARED`).
pub fn default_utkface() -> Option<PathBuf> {
    let root = std::env::var_os("AGEGENDER_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("../shared"));
    let dir = root.join("data/utkface-asian");
    dir.is_dir().then_some(dir)
}

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
fn prepare_data(
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

/// Writes AgeNet's trained layers up to fc7 (everything but the 9-way fc8) as
/// `OUT/train/AgeNet_features.caffemodel`, GenderNet's initial weights: the two nets share
/// Levi & Hassner's body, and a face's age features carry most of what gender needs, so
/// GenderNet starts from them (copied by layer name, as `caffe train --weights` does) and
/// only its 2-way fc8 starts from the filler.
fn write_feature_init(age_net: &crate::ir::Net, out: &Path) -> Result<PathBuf, PipelineError> {
    let mut body = age_net.clone();
    body.layers.retain(|l| l.name != "fc8" && l.name != "prob");
    let path = out.join("train").join("AgeNet_features.caffemodel");
    crate::caffe::write_caffemodel(&body, &path).map_err(|e| PipelineError::Step {
        step: "train",
        msg: format!("writing {}: {e}", path.display()),
    })?;
    Ok(path)
}

/// Adds `shift[c]` to the bias of the last InnerProduct (fc8) of a trained net.
fn apply_prior_shift(net: &mut crate::ir::Net, shift: &[f32]) -> Result<(), PipelineError> {
    let fail = |msg: String| PipelineError::Step {
        step: "prior correction",
        msg,
    };
    let fc8 = net
        .layers
        .iter_mut()
        .rev()
        .find(|l| matches!(l.op, crate::ir::Op::InnerProduct(_)))
        .ok_or_else(|| fail("the net has no InnerProduct layer".into()))?;
    let bias = fc8
        .blobs
        .get_mut(1)
        .filter(|b| b.len() == shift.len())
        .ok_or_else(|| {
            fail(format!(
                "layer {} has no bias of {} classes",
                fc8.name,
                shift.len()
            ))
        })?;
    bias.data.iter_mut().zip(shift).for_each(|(b, s)| *b += s);
    Ok(())
}

/// Writes `data/lmdb/gender_train_natural_lmdb`: the records of `gender_train.txt` that are
/// original faces (not `augmented/` copies), in the same shuffled order and at the same
/// record size, as `convert_imageset` writes them. Kept when `--resume` finds it complete.
fn natural_gender_lmdb(
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
fn finished_data(out: &Path, options: &PipelineOptions) -> Option<PreparedData> {
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

/// The latest snapshot `<prefix>_iter_N.solverstate` (with its caffemodel) in the folder of
/// `prefix`, for `--resume`.
fn latest_snapshot(prefix: &Path) -> Option<(u64, PathBuf)> {
    let dir = prefix.parent()?;
    let stem = format!("{}_iter_", prefix.file_name()?.to_str()?);
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let iter: u64 = name
                .strip_prefix(&stem)?
                .strip_suffix(".solverstate")?
                .parse()
                .ok()?;
            let caffemodel = dir.join(format!("{stem}{iter}.caffemodel"));
            caffemodel.is_file().then(|| (iter, dir.join(name)))
        })
        .max_by_key(|(iter, _)| *iter)
}

/// Trains one net from its solver file with the native trainer (Caffe's SGD semantics),
/// loads the last snapshot into the deploy net, and draws the training curves into
/// `OUT/train/<Net>_curves.png`; returns the trained deploy net and what happened.
fn train_net(
    kind: NetKind,
    solver: &Path,
    deploy: &Path,
    out: &Path,
    init: Option<PathBuf>,
    options: &PipelineOptions,
) -> Result<(crate::ir::Net, TrainingInfo), PipelineError> {
    let fail = |msg: String| PipelineError::Step {
        step: "train",
        msg: format!("{}: {msg}", kind.name()),
    };
    let log = out.join("train").join(format!("{}_log.jsonl", kind.name()));
    let prefix = out.join("train").join(kind.name());
    let max_iter = options.iterations(kind);
    let resume = if options.resume {
        latest_snapshot(&prefix).filter(|(iter, _)| *iter <= max_iter)
    } else {
        None
    };
    if let Some((iter, state)) = &resume {
        step_line(
            options,
            &format!(
                "{}: resuming from {} (iteration {iter})",
                kind.name(),
                state.display()
            ),
        );
    }
    let finished = resume.as_ref().is_some_and(|(iter, _)| *iter == max_iter);
    let report = if finished {
        crate::train::trainer::TrainReport {
            iter: max_iter,
            snapshots: vec![crate::train::state::snapshot_paths(
                &prefix.display().to_string(),
                max_iter,
            )],
            ..Default::default()
        }
    } else {
        crate::train::trainer::train(crate::train::trainer::TrainOptions {
            solver: solver.to_path_buf(),
            weights: init,
            resume: resume.map(|(_, state)| state),
            threads: if options.threads == 0 {
                std::thread::available_parallelism().map_or(1, |n| n.get())
            } else {
                options.threads
            },
            log: Some(log.clone()),
            verbose: options.verbose,
            stop: options.stop.clone(),
        })
        .map_err(|e| fail(e.to_string()))?
    };
    if report.interrupted {
        return Err(fail(format!(
            "interrupted after {} iterations (snapshot written; rerun the same command with \
             --resume to continue)",
            report.iter
        )));
    }
    let snapshot = report
        .snapshots
        .last()
        .ok_or_else(|| fail("the run wrote no snapshot".into()))?;
    let net = crate::caffe::load_net(deploy, Some(&snapshot.caffemodel), crate::ir::Phase::Test)
        .map_err(|e| fail(e.to_string()))?;
    let curves = Path::new("train").join(format!("{}_curves.png", kind.name()));
    let records = crate::train::log::read_log(&log).map_err(|e| fail(e.to_string()))?;
    crate::train::plot::write_plot(&records, &out.join(&curves))
        .map_err(|e| fail(e.to_string()))?;
    // A reused run reports the throughput its log recorded last.
    let images_per_s = if finished {
        records
            .iter()
            .rev()
            .find_map(|r| match r {
                crate::train::log::LogRecord::Train(t) => Some(t.images_per_s),
                _ => None,
            })
            .unwrap_or(0.0)
    } else {
        report.images_per_s
    };
    let schedule = std::fs::read_to_string(solver).unwrap_or_default();
    let field = |name: &str| {
        schedule
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix(name)
                    .map(|v| v.trim().trim_matches('"'))
            })
            .unwrap_or("?")
            .to_string()
    };
    Ok((
        net,
        TrainingInfo {
            net: kind.name().to_string(),
            solver: format!(
                "{} lr {} {}",
                field("type:"),
                field("base_lr:"),
                field("lr_policy:")
            ),
            iterations: report.iter,
            batch: options.batch(),
            images_per_s,
            curves: curves.display().to_string(),
        },
    ))
}

fn step_line(options: &PipelineOptions, msg: &str) {
    if options.verbose {
        eprintln!("pipeline: {msg}");
    }
}

fn ensure_dir(dir: &Path) -> Result<(), PipelineError> {
    std::fs::create_dir_all(dir).map_err(|e| PipelineError::Step {
        step: "setup",
        msg: format!("cannot create {}: {e}", dir.display()),
    })
}

/// Writes the solver (tuned and original) and train_val files of `kind` into
/// `OUT/prototxt/`; returns the tuned solver's path.
pub fn write_net_files(
    kind: NetKind,
    out: &Path,
    data: &PreparedData,
    options: &PipelineOptions,
) -> Result<PathBuf, PipelineError> {
    let dir = out.join("prototxt");
    ensure_dir(&dir)?;
    ensure_dir(&out.join("train"))?;
    let abs = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
    let batch = options.batch();
    let train_val = abs(dir.join(format!("{}_train_val.prototxt", kind.name())));
    let text = prototxt::train_val_prototxt(
        kind,
        &abs(data.train_lmdb(kind, options)),
        &abs(data.lmdb(kind, "test")),
        &abs(data.mean_binaryproto()),
        batch,
        50,
        options.input(),
    );
    crate::util::atomic::atomic_write(&train_val, text.as_bytes())?;
    let test_records = data
        .records
        .get(&format!("{}_test_lmdb", kind.key()))
        .copied()
        .unwrap_or(50);
    let test_iter = test_records.div_ceil(50) as u64;
    let tuned = Schedule::tuned(options.iterations(kind), batch, test_iter, 5);
    let prefix = abs(out.join("train").join(kind.name()));
    let solver = dir.join(format!("{}_solver.prototxt", kind.name()));
    crate::util::atomic::atomic_write(
        &solver,
        prototxt::solver_prototxt(&tuned, &train_val, &prefix).as_bytes(),
    )?;
    let original = dir.join(format!("{}_solver_original.prototxt", kind.name()));
    crate::util::atomic::atomic_write(
        &original,
        prototxt::solver_prototxt(&Schedule::original(), &train_val, &prefix).as_bytes(),
    )?;
    Ok(solver)
}

/// Runs the whole pipeline and writes the report.
pub fn run(options: &PipelineOptions) -> Result<PipelineReport, PipelineError> {
    let out = options.out.as_path();
    let models = out.join("models");
    ensure_dir(&models)?;
    let mut timings = BTreeMap::new();
    let mut time = |name: &str, started: Instant| {
        timings.insert(name.to_string(), started.elapsed().as_secs_f64());
    };

    // 1. Data.
    let started = Instant::now();
    let (source, synthetic) = match options.utkface.clone().or_else(default_utkface) {
        Some(dir) => (dir, false),
        None => {
            let dir = out.join("synthetic_utkface");
            step_line(options, "no UTKFace folder: generating a synthetic set");
            synthetic::generate(&dir, if options.quick { 24 } else { 60 }, 2015).map_err(|e| {
                PipelineError::Step {
                    step: "synthetic data",
                    msg: e.to_string(),
                }
            })?;
            (dir, true)
        }
    };
    step_line(options, &format!("data prepare from {}", source.display()));
    let data = prepare_data(&source, &out.join("data"), options)?;
    if options.gender_natural {
        natural_gender_lmdb(&source, &data, options)?;
    }
    time("1 data prepare", started);

    // 2–3. Nets, training, test.
    let mean_image = crate::infer::Mean::read_image(&data.mean_binaryproto())?;
    let mean_npy = out.join("age_gender_mean.npy");
    crate::io::npy::write_npy(&mean_npy, &mean_image).map_err(|e| PipelineError::Step {
        step: "mean",
        msg: e.to_string(),
    })?;
    let mean = crate::infer::Mean::Image(mean_image);
    let mut training = Vec::new();
    let mut age_features: Option<PathBuf> = None;
    let mut prior_shifts = BTreeMap::new();
    let mut uncorrected_accuracy = BTreeMap::new();
    let mut evals = Vec::new();
    let mut files = Vec::new();
    let mut verify = Vec::new();
    let mut infer = Vec::new();
    for kind in [NetKind::Age, NetKind::Gender] {
        let started = Instant::now();
        let solver = write_net_files(kind, out, &data, options)?;
        let deploy_text = prototxt::deploy_prototxt(kind, options.input());
        let deploy = out
            .join("prototxt")
            .join(format!("{}_deploy.prototxt", kind.name()));
        crate::util::atomic::atomic_write(&deploy, deploy_text.as_bytes())?;
        step_line(options, &format!("train {}", kind.name()));
        let init = match (kind, &age_features) {
            (NetKind::Gender, Some(path)) => Some(path.clone()),
            _ => None,
        };
        let (mut net, info) = train_net(kind, &solver, &deploy, out, init, options)?;
        training.push(info);
        if kind == NetKind::Age && options.transfer {
            age_features = Some(write_feature_init(&net, out)?);
        }
        let uncorrected = net.clone();
        let oversampled = !(kind == NetKind::Gender && options.gender_natural);
        if options.prior_correction && oversampled {
            let shift = data.prior_shift(kind)?;
            apply_prior_shift(&mut net, &shift)?;
            prior_shifts.insert(kind.name().to_string(), shift);
        }
        time(&format!("2 train {}", kind.name()), started);

        let started = Instant::now();
        let test_images = stages::read_lmdb_images(&data.lmdb(kind, "test"))?;
        let predictor_options = crate::infer::PredictorOptions {
            threads: options.threads,
            preprocess: options.preprocess(),
            ..Default::default()
        };
        let predictor = crate::infer::Predictor::new(net.clone(), &mean, &predictor_options)?;
        evals.push(stages::evaluate(&predictor, kind, &test_images)?);
        if options.prior_correction && oversampled {
            let raw = crate::infer::Predictor::new(uncorrected, &mean, &predictor_options)?;
            let report = stages::evaluate(&raw, kind, &test_images)?;
            uncorrected_accuracy.insert(kind.name().to_string(), report.accuracy);
        }
        time(&format!("3 test {}", kind.name()), started);

        let started = Instant::now();
        let f = stages::write_formats(&net, kind, &models)?;
        time(&format!("4 convert {}", kind.name()), started);

        let started = Instant::now();
        let samples: Vec<_> = test_images.iter().take(8).cloned().collect();
        let inputs: Vec<crate::ir::Tensor> = predictor
            .prepare(
                &samples
                    .iter()
                    .map(|(_, img, _)| img.clone())
                    .collect::<Vec<_>>(),
            )
            .into_iter()
            .map(|x| crate::ir::Tensor {
                shape: vec![1, 3, options.input(), options.input()],
                data: x,
            })
            .collect();
        verify.extend(stages::verify_formats(kind, &f, &inputs, options.threads)?);
        time(&format!("5 verify {}", kind.name()), started);

        let started = Instant::now();
        infer.extend(stages::infer_formats(
            kind,
            &f,
            &mean,
            &samples[..samples.len().min(4)],
            options.threads,
            options.preprocess(),
        )?);
        time(&format!("6 infer {}", kind.name()), started);
        files.push(f);
    }
    let mut evals = evals.into_iter();
    let (Some(age), Some(gender)) = (evals.next(), evals.next()) else {
        return Err(PipelineError::Step {
            step: "test",
            msg: "a net was not evaluated".into(),
        });
    };
    let report = PipelineReport {
        dataset: DatasetInfo {
            source: source.display().to_string(),
            synthetic,
            images: data.images,
            records: data.records.clone(),
            record_size: options.record_size(),
            input_size: options.input(),
            resize_to: options.preprocess().resize_to,
        },
        training,
        age,
        gender,
        verify,
        infer,
        timings,
        original: BTreeMap::from([
            ("age".to_string(), report::ORIGINAL_AGE_ACCURACY),
            ("gender".to_string(), report::ORIGINAL_GENDER_ACCURACY),
        ]),
        prior_shift: prior_shifts,
        uncorrected_accuracy,
    };
    write_report(&report, out)?;
    Ok(report)
}

/// Writes `report.json` and `report.md` into `out`.
pub fn write_report(report: &PipelineReport, out: &Path) -> Result<(), PipelineError> {
    let json = serde_json::to_string_pretty(report).map_err(|e| PipelineError::Step {
        step: "report",
        msg: e.to_string(),
    })?;
    crate::util::atomic::atomic_write(&out.join("report.json"), json.as_bytes())?;
    crate::util::atomic::atomic_write(&out.join("report.md"), report.markdown().as_bytes())?;
    Ok(())
}
