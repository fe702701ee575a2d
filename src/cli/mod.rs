//! The command line: a thin layer over the library. Each subcommand has its own file with
//! its clap `Args` and a `run` function.
//!
//! Exit codes: 0 success, 1 a check failed (a `verify` tolerance, a test below threshold,
//! some images in a batch failed), 2 bad input or usage (unreadable or invalid files,
//! wrong shapes), 130 interrupted.

pub mod bench;
pub mod common;
pub mod compile;
pub mod convert;
pub mod data;
pub mod infer;
pub mod inspect;
pub mod pipeline;
pub mod plot;
pub mod run;
pub mod test;
pub mod train;
pub mod verify;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Exit code for a failed check (tolerance, partial failure).
pub const EXIT_CHECK_FAILED: u8 = 1;
/// Exit code for bad input or usage.
pub const EXIT_BAD_INPUT: u8 = 2;

/// agegender: age and gender nets across Caffe, ONNX and Movidius NCS formats.
#[derive(Parser, Debug)]
#[command(name = "agegender", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// Every subcommand.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print a model's layers, shapes, parameters and FLOPs (or a mean file's channel means).
    Inspect(inspect::Args),
    /// Run one N×C×H×W .npy tensor through a model and write the outputs as .npy.
    Run(run::Args),
    /// Convert a model between formats (the output extension picks the format).
    Convert(convert::Args),
    /// Measure latency, throughput and GFLOP/s, overall and per layer.
    Bench(bench::Args),
    /// Age and gender of face images with any model format (the original's output lines).
    Infer(infer::Args),
    /// Data preparation, training, testing, every format, verification and a report.
    Pipeline(pipeline::Args),
    /// Draw a training log (`train --log`) as a PNG of loss and accuracy.
    Plot(plot::PlotArgs),
    /// Compare a model with other models or engines, tensor by tensor.
    Verify(verify::VerifyArgs),
    /// Compile a net to a Movidius NCS graph file (mvNCCompile-compatible flags).
    Compile(compile::Args),
    /// Train from a Caffe solver file (as `caffe train`), with snapshots and resume.
    Train(train::TrainArgs),
    /// Accuracy and confusion matrix of a model on an LMDB (any model format).
    Test(test::TestArgs),
    /// Dataset preparation and Caffe's LMDB tools (convert_imageset, compute_image_mean).
    Data(data::DataArgs),
}

/// Parses the arguments, runs the command and maps errors to exit codes. Errors are printed
/// with their whole context chain (file, layer, line).
pub fn main() -> ExitCode {
    // Die quietly on a closed pipe (`agegender inspect … | head`) as Unix tools do, instead
    // of panicking inside println!.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse_from(compile::normalize_args(std::env::args()));
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Inspect(a) => inspect::run(a),
        Command::Run(a) => run::run(a),
        Command::Convert(a) => convert::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Plot(a) => plot::run(a),
        Command::Infer(a) => infer::run(a),
        Command::Pipeline(a) => pipeline::run(a),
        Command::Verify(args) => verify::run(args),
        Command::Data(args) => data::run(args),
        Command::Compile(a) => compile::run(a),
        Command::Train(a) => train::run(a),
        Command::Test(a) => test::run(a),
    }
}

/// Joins an error's context chain with ": ", skipping a cause whose text the previous
/// message already contains (typed errors often print their source inline).
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut last = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !last.is_empty() && last.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
        last = text;
    }
    out
}
