//! `agegender inspect`: the per-layer table of any model, or the shape and channel means of
//! a mean file.

use crate::ir::report::NetReport;
use crate::ir::Tensor;
use crate::model::load_model;
use anyhow::Result;
use clap::Args as ClapArgs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `inspect`.
#[derive(ClapArgs, Debug)]
#[command(after_help = "Examples:
  agegender inspect fixtures/models/tiny_levi.prototxt
  agegender inspect deploy.prototxt --weights age_net.caffemodel --json
  agegender inspect lenet_iter_10000.caffemodel
  agegender inspect age.graph --json          # NCS header and stages (NCSDK 1 or 2, detected)
  agegender inspect mean.binaryproto          # shape and per-channel (B, G, R) means
  agegender inspect mean.npy")]
pub struct Args {
    /// Model (.prototxt, .caffemodel, .onnx, .graph) or mean file (.binaryproto, .npy).
    pub model: PathBuf,
    /// Weights for a .prototxt model.
    #[arg(short, long)]
    pub weights: Option<PathBuf>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `inspect`.
pub fn run(args: Args) -> Result<ExitCode> {
    let ext = args
        .model
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    if ext == "npy" || ext == "binaryproto" {
        return inspect_mean(&args.model, &ext, args.json);
    }
    if crate::model::ModelFormat::detect(&args.model).ok()
        == Some(crate::model::ModelFormat::NcsGraph)
    {
        let report = crate::ncs::inspect_any(&args.model)?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            println!("{report}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let net = load_model(&args.model, args.weights.as_deref())?;
    let report = NetReport::build(&net)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Per-channel means of a C×H×W (or 1×C×H×W) tensor.
pub fn channel_means(t: &Tensor) -> Vec<f64> {
    let c = match t.shape.len() {
        4 => t.shape[1],
        3 => t.shape[0],
        _ => 1,
    };
    let plane = t.len() / c.max(1);
    (0..c)
        .map(|i| {
            t.data[i * plane..(i + 1) * plane]
                .iter()
                .map(|&v| v as f64)
                .sum::<f64>()
                / plane.max(1) as f64
        })
        .collect()
}

fn inspect_mean(path: &Path, ext: &str, json: bool) -> Result<ExitCode> {
    let t = if ext == "npy" {
        crate::io::npy::read_npy(path)?
    } else {
        crate::caffe::binaryproto::read_binaryproto(path)?
    };
    let means = channel_means(&t);
    if json {
        let v = serde_json::json!({"file": path.display().to_string(), "shape": t.shape, "channel_means": means});
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{}: shape {:?}", path.display(), t.shape);
        let names = if means.len() == 3 {
            vec!["B", "G", "R"]
        } else {
            vec![]
        };
        for (i, m) in means.iter().enumerate() {
            println!(
                "  channel {} {:<1} mean {:.2}",
                i,
                names.get(i).unwrap_or(&""),
                m
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
