//! `agegender train`: Caffe's `caffe train` natively, from the same solver and train_val
//! files (paths inside them relative to the working directory).

use crate::train::trainer::{TrainOptions, Trainer};
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit code after a stop request (SIGINT/SIGTERM): the snapshot was written.
pub const EXIT_INTERRUPTED: u8 = 130;

/// Arguments of `train`.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  agegender train --solver solver.prototxt
  agegender train --solver solver.prototxt --weights init.caffemodel --log train_log.jsonl
  agegender train --solver solver.prototxt --snapshot snap/age_iter_1000.solverstate
  agegender plot train_log.jsonl -o curve.png

Ctrl-C (or SIGTERM) stops after the current iteration and writes a snapshot, as Caffe does;
a second Ctrl-C exits at once. --snapshot resumes exactly where the snapshot was taken.")]
pub struct TrainArgs {
    /// The solver prototxt (SolverParameter, current or legacy syntax).
    #[arg(long)]
    pub solver: PathBuf,
    /// Initial weights, copied into the train net by layer name.
    #[arg(long, conflicts_with = "snapshot")]
    pub weights: Option<PathBuf>,
    /// A `.solverstate` to resume from (its caffemodel is found through `learned_net`).
    #[arg(long)]
    pub snapshot: Option<PathBuf>,
    /// Worker threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Write one JSON object per displayed iteration and per test to this file.
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// No progress bar or display lines.
    #[arg(long)]
    pub quiet: bool,
    /// Print a JSON summary at the end.
    #[arg(long)]
    pub json: bool,
    /// Start a fresh run even though snapshots with the solver's prefix already exist
    /// (they are overwritten as the new run reaches their iterations).
    #[arg(long, conflicts_with = "snapshot")]
    pub force: bool,
}

/// Snapshot files `<prefix>_iter_<N>.caffemodel|.solverstate` that already exist.
fn existing_snapshots(prefix: &str) -> Vec<PathBuf> {
    let prefix = std::path::Path::new(prefix);
    let dir = match prefix.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let stem = format!(
        "{}_iter_",
        prefix.file_name().unwrap_or_default().to_string_lossy()
    );
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            name.strip_prefix(&stem)
                .is_some_and(|rest| rest.ends_with(".caffemodel") || rest.ends_with(".solverstate"))
        })
        .collect();
    found.sort();
    found
}

/// Runs the training.
pub fn run(args: TrainArgs) -> anyhow::Result<ExitCode> {
    let stop = crate::cli::common::stop_on_signals()?;
    let threads = if args.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        args.threads
    };
    let trainer = Trainer::new(TrainOptions {
        solver: args.solver.clone(),
        weights: args.weights,
        resume: args.snapshot.clone(),
        threads,
        log: args.log,
        verbose: !args.quiet,
        stop,
    })
    .with_context(|| format!("setting up training from {}", args.solver.display()))?;
    if args.snapshot.is_none() && !args.force {
        let old = existing_snapshots(trainer.snapshot_prefix());
        if let Some(first) = old.first() {
            anyhow::bail!(
                "{} snapshot file(s) of an earlier run exist (e.g. {}); resume with --snapshot, \
                 change snapshot_prefix, or pass --force to train afresh over them",
                old.len(),
                first.display()
            );
        }
    }
    let report = trainer.solve()?;
    let last = report.snapshots.last();
    if args.json {
        let summary = serde_json::json!({
            "iter": report.iter,
            "interrupted": report.interrupted,
            "images_per_s": report.images_per_s,
            "final_loss": report.losses.last(),
            "tests": report.tests,
            "snapshot": last.map(|s| serde_json::json!({
                "caffemodel": s.caffemodel,
                "solverstate": s.solverstate,
            })),
        });
        println!("{summary}");
    } else {
        eprintln!(
            "{} at iteration {} ({:.1} images/s){}",
            if report.interrupted {
                "stopped"
            } else {
                "finished"
            },
            report.iter,
            report.images_per_s,
            last.map(|s| format!("; snapshot {}", s.caffemodel.display()))
                .unwrap_or_default()
        );
    }
    Ok(if report.interrupted {
        ExitCode::from(EXIT_INTERRUPTED)
    } else {
        ExitCode::SUCCESS
    })
}
