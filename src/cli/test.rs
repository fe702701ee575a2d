//! `agegender test`: accuracy and the confusion matrix of a model on a labelled LMDB, in the
//! original project's layout, plus per-class recall/precision and, for age, one-off
//! accuracy.

use crate::eval::{evaluate_lmdb, ClassNames, LmdbEval};
use crate::model::load_model;
use crate::train::data::read_mean;
use anyhow::Context;
use clap::{Args, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

/// Which class names label the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Labels {
    /// Age buckets for 9 outputs, Male/Female for 2, class ids otherwise.
    Auto,
    /// The nine age buckets.
    Age,
    /// Male, Female.
    Gender,
}

/// Arguments of `test`.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  agegender test --model AgeNet_deploy.prototxt --weights AgeNet.caffemodel \\
      --lmdb out/lmdb/age_test_lmdb --mean out/mean.binaryproto
  agegender test --model GenderNet.onnx --lmdb out/lmdb/gender_test_lmdb --mean out/mean.npy --json")]
pub struct TestArgs {
    /// The model (.prototxt with --weights, .caffemodel, .onnx or .graph).
    #[arg(long)]
    pub model: PathBuf,
    /// Weights for a .prototxt model.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// The labelled test LMDB (Caffe Datum records).
    #[arg(long)]
    pub lmdb: PathBuf,
    /// Mean image (.binaryproto or .npy), subtracted as Caffe's data layer does.
    #[arg(long)]
    pub mean: Option<PathBuf>,
    /// Class names of the matrix.
    #[arg(long, value_enum, default_value_t = Labels::Auto)]
    pub labels: Labels,
    /// Images per forward pass.
    #[arg(long, default_value_t = 50, value_parser = crate::cli::common::positive::<u32>, allow_negative_numbers = true)]
    pub batch: u32,
    /// Worker threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Print one JSON object instead of the tables.
    #[arg(long)]
    pub json: bool,
    /// Engine: `native` (f32) or `f16` (the NCS emulation). Default: f16 for an NCS
    /// `.graph`, which is how it scores on the stick, native otherwise.
    #[arg(long, value_parser = ["native", "f16"])]
    pub engine: Option<String>,
}

/// Evaluates the model and prints the report.
pub fn run(args: TestArgs) -> anyhow::Result<ExitCode> {
    let net = load_model(&args.model, args.weights.as_deref())?;
    let mean = match &args.mean {
        Some(p) => Some(read_mean(p).with_context(|| format!("reading the mean {}", p.display()))?),
        None => None,
    };
    let classes = match args.labels {
        Labels::Auto => None,
        Labels::Age => Some(ClassNames::age()),
        Labels::Gender => Some(ClassNames::gender()),
    };
    let matrix = evaluate_lmdb(
        &net,
        &LmdbEval {
            lmdb: &args.lmdb,
            mean,
            batch: args.batch as usize,
            threads: args.threads,
            classes,
            progress: !args.json,
            fp16: match args.engine.as_deref() {
                Some(e) => e == "f16",
                None => {
                    crate::model::ModelFormat::detect(&args.model).ok()
                        == Some(crate::model::ModelFormat::NcsGraph)
                }
            },
        },
    )
    .with_context(|| {
        format!(
            "testing {} on {}",
            args.model.display(),
            args.lmdb.display()
        )
    })?;
    if args.json {
        let mut v = serde_json::to_value(matrix.report())?;
        v["model"] = serde_json::json!(args.model);
        println!("{v}");
    } else {
        print!("{matrix}");
    }
    Ok(ExitCode::SUCCESS)
}
