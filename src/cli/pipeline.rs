//! `agegender pipeline`: data preparation, training, testing, conversion to every format,
//! verification and inference in one command, with a report.

use crate::pipeline::{run as run_pipeline, PipelineOptions};
use anyhow::Result;
use clap::Args as ClapArgs;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `pipeline`.
#[derive(ClapArgs, Debug)]
#[command(after_help = "Examples:
  agegender pipeline --quick --out out/                      # the demo: a few minutes
  agegender pipeline --utkface UTKFace/ --out out/           # the full schedule
  agegender pipeline --utkface UTKFace/ --out out/ --iters-age 6000 --iters-gender 3000
  agegender pipeline --out out/ --input-size 115 --iters-age 2000 --iters-gender 1500

Writes out/models/{AgeNet,GenderNet}_deploy.prototxt, .caffemodel, .onnx, .graph,
out/age_gender_mean.npy, out/report.json and out/report.md (accuracies beside the original
project's 66.5 % / 85.2 %, confusion matrices, verification, timings, training curves).

Without --utkface it uses ../shared/data/utkface-asian when present, else a small generated
set that the report labels SYNTHETIC. UTKFace is for non-commercial research only; see the
README for where to get it.")]
pub struct Args {
    /// UTKFace image folder (aligned face crops named age_gender_race_date.jpg.chip.jpg).
    #[arg(long, value_name = "DIR")]
    pub utkface: Option<PathBuf>,
    /// Output folder.
    #[arg(long, value_name = "OUT")]
    pub out: PathBuf,
    /// AgeNet training iterations.
    #[arg(long, value_name = "N", value_parser = crate::cli::common::positive::<u64>, allow_negative_numbers = true)]
    pub iters_age: Option<u64>,
    /// GenderNet training iterations.
    #[arg(long, value_name = "N", value_parser = crate::cli::common::positive::<u64>, allow_negative_numbers = true)]
    pub iters_gender: Option<u64>,
    /// Short demo: a 400-image subset, 115-pixel input and 40 iterations per net.
    #[arg(long)]
    pub quick: bool,
    /// Worker threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Continue an earlier run in the same OUT: reuse its prepared data and resume each
    /// net's training from its latest snapshot (after Ctrl-C, or with more iterations).
    #[arg(long)]
    pub resume: bool,
    /// Input size of the nets and of the LMDB records [default: 227 (Levi & Hassner), 115
    /// with --quick]. 115 keeps every feature map at half of 227's and trains 3–4× faster
    /// on a CPU.
    #[arg(long, value_name = "PX", value_parser = clap::value_parser!(u64).range(15..=1024))]
    pub input_size: Option<u64>,
    /// Train as the original project did: records of the input size, mirroring only,
    /// instead of Levi & Hassner's larger records with random crops (256 → 227).
    #[arg(long)]
    pub no_crops: bool,
    /// Train GenderNet on the age-oversampled LMDB, as the original project did, instead of
    /// the natural train split (2,747 faces; age oversampling skews gender 60/40 male).
    #[arg(long)]
    pub gender_oversampled: bool,
    /// Train GenderNet from scratch instead of from AgeNet's trained conv1–fc7.
    #[arg(long)]
    pub no_transfer: bool,
    /// Keep fc8's bias as trained, without restoring the train split's class prior that
    /// oversampling flattened.
    #[arg(long)]
    pub no_prior_correction: bool,
    /// Write into OUT even when it already exists and is not empty (its files are replaced).
    #[arg(long)]
    pub force: bool,
}

/// Runs `pipeline`.
pub fn run(args: Args) -> Result<ExitCode> {
    // --resume continues in an existing OUT by design.
    crate::cli::common::check_output(
        &args.out,
        crate::cli::common::OutputKind::Dir,
        args.force || args.resume,
    )?;
    if let Some(dir) = &args.utkface {
        crate::cli::common::check_input_dir(dir, "UTKFace folder")?;
    }
    let report = run_pipeline(&PipelineOptions {
        utkface: args.utkface,
        out: args.out.clone(),
        iters_age: args.iters_age,
        iters_gender: args.iters_gender,
        quick: args.quick,
        threads: args.threads,
        input_size: args.input_size.map(|v| v as usize),
        verbose: true,
        resume: args.resume,
        crops: !args.no_crops,
        transfer: !args.no_transfer,
        gender_natural: !args.gender_oversampled,
        prior_correction: !args.no_prior_correction,
        stop: crate::cli::common::stop_on_signals()?,
    })?;
    println!(
        "AgeNet accuracy {:.1} % (original 66.5 %), GenderNet {:.1} % (original 85.2 %){}",
        100.0 * report.age.accuracy,
        100.0 * report.gender.accuracy,
        if report.dataset.synthetic {
            " — on SYNTHETIC stand-in data, not faces: say nothing about real accuracy"
        } else {
            ""
        }
    );
    println!("report: {}", args.out.join("report.md").display());
    let all_verified = report.verify.iter().all(|v| v.pass);
    Ok(if all_verified {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(super::EXIT_CHECK_FAILED)
    })
}
