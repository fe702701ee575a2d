//! `agegender compile`: an mvNCCompile-compatible front end to the NCS graph compiler.

use crate::ir::Net;
use crate::model::{load_model, load_model_random};
use crate::ncs::v2::{emit::compile_v2_to_file, BlobVersion};
use crate::ncs::{compile_to_file, CompileOptions, CompileWarning};
use anyhow::{bail, Result};
use clap::Args as ClapArgs;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `compile`, spelled as mvNCCompile spells them (`-w`, `-s`, `-in`, `-on`,
/// `-is`, `-o`).
#[derive(ClapArgs, Debug)]
#[command(after_help = "Examples:
  agegender compile deploy.prototxt -w age_net.caffemodel -s 12 -o age.graph --ncsdk 2   # NCSDK 2.04/2.05 stick
  agegender compile deploy.prototxt -w age_net.caffemodel -s 12 --ncsdk 2 --blob 2.4        # NCSDK 2.08/2.10
  agegender compile deploy.prototxt -w age_net.caffemodel -s 12 -o age.graph                # NCSDK 1.12
  agegender compile deploy.prototxt --random-weights -s 12 --ncsdk 2                        # structure only
  agegender compile deploy.prototxt -w net.caffemodel -on pool2 -o upto_pool2.graph   # debug a prefix
  agegender convert deploy.prototxt -w net.caffemodel -o net.graph                    # same compiler

Refused with a clear error: batch > 1, kernels > 127, graphs over 320 MB and ops the NCS
firmware lacks. Warnings flag fp16 accuracy risks such as an LRN whose sum of squares can
overflow fp16 for inputs in [-255, 255].")]
pub struct Args {
    /// The net: a deploy .prototxt (or any model the tool reads).
    pub model: PathBuf,
    /// Weights (.caffemodel) for a .prototxt.
    #[arg(short = 'w', long = "weights", conflicts_with = "random_weights")]
    pub weights: Option<PathBuf>,
    /// Fill layers without weights from their fillers, seeded (gaussian 0.01 where none is
    /// given), as `bench` does: for checking a graph's structure without a caffemodel.
    #[arg(long)]
    pub random_weights: bool,
    /// Seed for --random-weights.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// SHAVE processors to use, 1..=12.
    #[arg(short = 's', long = "shaves", default_value_t = 1)]
    pub shaves: u16,
    /// Start the graph at this layer's input.
    #[arg(long = "in", short_alias = 'i', alias = "input-node")]
    pub input_node: Option<String>,
    /// End the graph after this layer.
    #[arg(long = "on", alias = "output-node")]
    pub output_node: Option<String>,
    /// Input width and height.
    #[arg(long = "is", num_args = 2, value_names = ["WIDTH", "HEIGHT"])]
    pub input_size: Option<Vec<usize>>,
    /// Output graph file.
    #[arg(short = 'o', long = "output", default_value = "graph")]
    pub output: PathBuf,
    /// NCSDK generation of the graph container: 1 (NCSDK 1.12) or 2 (NCSDK 2.x, the last
    /// SDK for the first-generation stick). The stick only loads its own SDK's graphs.
    #[arg(long, default_value = "1")]
    pub ncsdk: String,
    /// Overwrite the output graph when it exists (mvNCCompile always did; we ask first).
    #[arg(long)]
    pub force: bool,
    /// Blob version for --ncsdk 2: 2.3 (NCSDK 2.04/2.05) or 2.4 (NCSDK 2.08/2.10).
    #[arg(long)]
    pub blob: Option<String>,
}

/// Which container to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphTarget {
    /// NCSDK 1.12 (graph version 2).
    Ncsdk1,
    /// NCSDK 2.x with the given blob version.
    Ncsdk2(BlobVersion),
}

/// Parses `--ncsdk` and `--blob`: NCSDK 2 defaults to blob 2.3 (the 2.04/2.05 releases);
/// `--blob` with NCSDK 1 is an error, since v1 files have no blob version.
pub fn parse_target(ncsdk: &str, blob: Option<&str>) -> Result<GraphTarget> {
    let v2 = match ncsdk {
        "1" | "1.12" | "1.12.01" | "v1" => false,
        "2" | "2.x" | "v2" | "2.04" | "2.05" | "2.08" | "2.10" => true,
        other => bail!("--ncsdk {other}: use 1 (NCSDK 1.12) or 2 (NCSDK 2.x)"),
    };
    match (v2, blob) {
        (false, None) => Ok(GraphTarget::Ncsdk1),
        (false, Some(b)) => {
            bail!("--blob {b} applies to --ncsdk 2 only (NCSDK 1 graphs have no blob version)")
        }
        (true, None) => Ok(GraphTarget::Ncsdk2(match ncsdk {
            "2.08" | "2.10" => BlobVersion::V2_4,
            _ => BlobVersion::V2_3,
        })),
        (true, Some(b)) => match BlobVersion::parse(b) {
            Some(v) => Ok(GraphTarget::Ncsdk2(v)),
            None => bail!(
                "--blob {b}: NCSDK 2 writes blob 2.3 (NCSDK 2.04/2.05) or 2.4 (NCSDK 2.08/2.10)"
            ),
        },
    }
}

/// Compiles `net` for the target and writes the file atomically.
pub fn write_graph(
    net: &Net,
    opts: &CompileOptions,
    target: GraphTarget,
    path: &std::path::Path,
) -> Result<Vec<CompileWarning>> {
    Ok(match target {
        GraphTarget::Ncsdk1 => compile_to_file(net, opts, path)?,
        GraphTarget::Ncsdk2(v) => compile_v2_to_file(net, opts, v, path)?,
    })
}

/// Rewrites mvNCCompile's single-dash long flags (`-in`, `-on`, `-is`) to the `--` form
/// clap parses, so commands copied from NCSDK scripts work unchanged.
pub fn normalize_args(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut in_compile = false;
    args.into_iter()
        .map(|a| {
            if a == "compile" {
                in_compile = true;
            }
            match a.as_str() {
                "-in" | "-on" | "-is" if in_compile => format!("-{a}"),
                _ => a,
            }
        })
        .collect()
}

/// Runs `compile`.
pub fn run(args: Args) -> Result<ExitCode> {
    let target = parse_target(&args.ncsdk, args.blob.as_deref())?;
    crate::cli::common::check_output(
        &args.output,
        crate::cli::common::OutputKind::File,
        args.force,
    )?;
    let net = if args.random_weights {
        let (net, filled) = load_model_random(&args.model, args.seed)?;
        if !filled.is_empty() {
            eprintln!(
                "filled {} layers with seeded random weights (seed {})",
                filled.len(),
                args.seed
            );
        }
        net
    } else {
        load_model(&args.model, args.weights.as_deref())?
    };
    let input_size = match args.input_size.as_deref() {
        None => None,
        Some([w, h]) if *w == 0 || *h == 0 => {
            bail!("-is {w} {h}: width and height must be at least 1")
        }
        Some([w, h]) => Some([*w, *h]),
        Some(_) => bail!("-is takes WIDTH HEIGHT"),
    };
    let opts = CompileOptions {
        shaves: args.shaves,
        input_layer: args.input_node,
        output_layer: args.output_node,
        input_size,
        ..CompileOptions::default()
    };
    let warnings = write_graph(&net, &opts, target, &args.output)?;
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    println!("wrote {}", args.output.display());
    Ok(ExitCode::SUCCESS)
}
