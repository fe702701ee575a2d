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

pub mod data;
pub mod prototxt;
pub mod report;
pub mod stages;
pub mod synthetic;
mod training;

pub use data::PreparedData;
use data::{natural_gender_lmdb, prepare_data};
use training::{apply_prior_shift, train_net, write_feature_init};

use prototxt::{NetKind, Schedule};
use report::{DatasetInfo, PipelineReport};
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

pub(super) fn step_line(options: &PipelineOptions, msg: &str) {
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
