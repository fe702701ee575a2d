//! `agegender run`: one N×C×H×W tensor through a model, outputs written as `.npy`.

use super::common::{
    ensure_dir, file_stem, read_input_npy, single_input, top_k, tract_model, EngineKind,
};
use crate::exec::{Engine, ExecOptions, Outputs};
use crate::ir::Net;
use crate::model::load_model;
use anyhow::{bail, Result};
use clap::Args as ClapArgs;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `run`.
#[derive(ClapArgs, Debug)]
#[command(after_help = "Examples:
  agegender run deploy.prototxt --weights net.caffemodel --input x.npy
  agegender run net.caffemodel --input x.npy --output-dir out/
  agegender run deploy.prototxt -w net.caffemodel --input x.npy --output-dir out/ --all-blobs

Outputs go to OUT/<top name>.npy; with --all-blobs every layer's output goes to
OUT/<layer name>.npy, so in-place layers (relu1 on conv1) get files of their own.")]
pub struct Args {
    /// Model (.prototxt, .caffemodel, .onnx, .graph).
    pub model: PathBuf,
    /// Weights for a .prototxt model.
    #[arg(short, long)]
    pub weights: Option<PathBuf>,
    /// Input tensor: float32 .npy of shape N×C×H×W (any N).
    #[arg(short, long)]
    pub input: PathBuf,
    /// Directory for the output .npy files (nothing is written without it).
    #[arg(short, long)]
    pub output_dir: Option<PathBuf>,
    /// Also write every layer's output.
    #[arg(long)]
    pub all_blobs: bool,
    /// Engine.
    #[arg(long, value_enum, default_value_t = EngineKind::Native)]
    pub engine: EngineKind,
    /// Worker threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Overwrite .npy files that already exist in the output directory.
    #[arg(long)]
    pub force: bool,
}

/// Runs `run`.
pub fn run(args: Args) -> Result<ExitCode> {
    let net = load_model(&args.model, args.weights.as_deref())?;
    let (input_name, declared) = single_input(&net)?;
    let x = read_input_npy(&args.input, &input_name, &declared)?;
    let outputs = match args.engine {
        EngineKind::Native => run_native(&net, &input_name, x, args.all_blobs, args.threads)?,
        EngineKind::Tract => {
            if args.all_blobs {
                bail!("--all-blobs needs the native engine (tract returns the net outputs only)");
            }
            let model = tract_model(&args.model, &net, &input_name, &x.shape, args.threads)?;
            Outputs {
                blobs: model.run(&[x])?,
            }
        }
        EngineKind::F16 => run_f16(&net, &input_name, x, args.all_blobs, args.threads)?,
    };
    let output_names = net.outputs();
    if let Some(dir) = &args.output_dir {
        // Every file is named first, so an existing one stops the run before anything
        // is written (issue 8: no overwrite without --force).
        let mut files = Vec::new();
        for name in &output_names {
            if let Some(t) = outputs.get(name) {
                files.push((format!("{}.npy", file_stem(net.caffe_name_of(name))), t));
            }
        }
        if args.all_blobs {
            for l in &net.layers {
                for (i, top) in l.tops.iter().enumerate() {
                    let Some(t) = outputs.get(top) else { continue };
                    let stem = if l.tops.len() == 1 {
                        l.name.clone()
                    } else {
                        format!("{}_{}", l.name, l.caffe_tops[i])
                    };
                    files.push((format!("{}.npy", file_stem(&stem)), t));
                }
            }
        }
        ensure_dir(dir)?;
        for (file, _) in &files {
            crate::cli::common::check_output(
                &dir.join(file),
                crate::cli::common::OutputKind::File,
                args.force,
            )?;
        }
        for (file, t) in files {
            crate::io::npy::write_npy(&dir.join(file), t)?;
        }
    }
    for name in &output_names {
        let Some(t) = outputs.get(name) else { continue };
        println!("{}: shape {:?}", net.caffe_name_of(name), t.shape);
        let n = t.shape.first().copied().unwrap_or(1).max(1);
        let row = t.len() / n;
        for (i, chunk) in t.data.chunks(row.max(1)).take(10).enumerate() {
            let best: Vec<String> = top_k(chunk, 5)
                .iter()
                .map(|(c, s)| format!("{c}:{s:.4}"))
                .collect();
            println!("  [{i}] top-5 {}", best.join("  "));
        }
        if n > 10 {
            println!("  ... {} more", n - 10);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs the native engine with the input's batch size.
pub fn run_native(
    net: &Net,
    input: &str,
    x: crate::ir::Tensor,
    all: bool,
    threads: usize,
) -> Result<Outputs> {
    let batch = x.shape.first().copied();
    let engine = Engine::with_options(
        net,
        ExecOptions {
            threads,
            keep_all_blobs: all,
            batch,
            ..ExecOptions::default()
        },
    )?;
    Ok(engine.run([(input, x)])?)
}

/// Runs the fp16 NCS emulation with the input's batch size; every overflow is reported on
/// stderr, naming the layer.
pub fn run_f16(
    net: &Net,
    input: &str,
    x: crate::ir::Tensor,
    all: bool,
    threads: usize,
) -> Result<Outputs> {
    let batch = x.shape.first().copied();
    let engine = crate::exec::f16::F16Engine::with_options(
        net,
        ExecOptions {
            threads,
            keep_all_blobs: all,
            batch,
            ..ExecOptions::default()
        },
    )?;
    let run = engine.run([(input, x)])?;
    for o in &run.overflows {
        eprintln!("warning: fp16 overflow: {o}");
    }
    Ok(run.outputs)
}
