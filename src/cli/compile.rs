//! `agegender compile`: an mvNCCompile-compatible front end to the NCS graph compiler.

use crate::model::load_model;
use crate::ncs::{compile_to_file, CompileOptions};
use anyhow::{bail, Result};
use clap::Args as ClapArgs;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `compile`, spelled as mvNCCompile spells them (`-w`, `-s`, `-in`, `-on`,
/// `-is`, `-o`).
#[derive(ClapArgs, Debug)]
#[command(after_help = "Examples:
  agegender compile deploy.prototxt -w age_net.caffemodel -s 12 -o age.graph
  agegender compile deploy.prototxt -w net.caffemodel -on pool2 -o upto_pool2.graph   # debug a prefix
  agegender convert deploy.prototxt -w net.caffemodel -o net.graph                    # same compiler

Refused with a clear error: batch > 1, kernels > 127, graphs over 320 MB and ops the NCS
firmware lacks. Warnings flag fp16 accuracy risks such as an LRN whose sum of squares can
overflow fp16 for inputs in [-255, 255].")]
pub struct Args {
    /// The net: a deploy .prototxt (or any model the tool reads).
    pub model: PathBuf,
    /// Weights (.caffemodel) for a .prototxt.
    #[arg(short = 'w', long = "weights")]
    pub weights: Option<PathBuf>,
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
    /// NCSDK generation of the graph container (1.12 is the only one this build writes).
    #[arg(long, default_value = "1.12")]
    pub ncsdk: String,
    /// Overwrite the output graph when it exists (mvNCCompile always did; we ask first).
    #[arg(long)]
    pub force: bool,
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
    if !matches!(args.ncsdk.as_str(), "1" | "1.12" | "1.12.01" | "v1") {
        bail!(
            "--ncsdk {}: this build writes NCSDK 1.12 graphs (version 2 containers) only",
            args.ncsdk
        );
    }
    crate::cli::common::check_output(
        &args.output,
        crate::cli::common::OutputKind::File,
        args.force,
    )?;
    let net = load_model(&args.model, args.weights.as_deref())?;
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
    let warnings = compile_to_file(&net, &opts, &args.output)?;
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    println!("wrote {}", args.output.display());
    Ok(ExitCode::SUCCESS)
}
