//! `agegender plot`: the training log as a PNG of loss and test accuracy against the
//! iteration.

use crate::train::{log::read_log, plot::write_plot};
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// Draws a `train --log` file.
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    agegender train --solver solver.prototxt --log train_log.jsonl\n  \
    agegender plot train_log.jsonl -o curve.png")]
pub struct PlotArgs {
    /// The JSONL log written by `train --log`.
    pub log: PathBuf,
    /// The PNG to write.
    #[arg(short, long)]
    pub out: PathBuf,
    /// Overwrite the PNG when it exists.
    #[arg(long)]
    pub force: bool,
}

/// Reads the log and writes the PNG.
pub fn run(args: PlotArgs) -> anyhow::Result<ExitCode> {
    crate::cli::common::check_output(&args.out, crate::cli::common::OutputKind::File, args.force)?;
    let records = read_log(&args.log)?;
    write_plot(&records, &args.out).with_context(|| format!("plotting {}", args.log.display()))?;
    eprintln!("wrote {} ({} records)", args.out.display(), records.len());
    Ok(ExitCode::SUCCESS)
}
