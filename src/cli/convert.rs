//! `agegender convert`: any readable model to any writable format, chosen by the output
//! extension; also binaryproto means to `.npy`.

use crate::cli::common::{check_output, OutputKind};
use crate::model::load_model;
use anyhow::{bail, Result};
use clap::Args as ClapArgs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `convert`.
#[derive(ClapArgs, Debug)]
#[command(after_help = "Examples:
  agegender convert deploy.prototxt --weights net.caffemodel -o out/net.caffemodel   # + out/net.prototxt
  agegender convert old_v1.prototxt -o new.prototxt                                  # V1 → current syntax
  agegender convert deploy.prototxt --weights net.caffemodel -o net.onnx            # opset 13, Caffe semantics kept
  agegender convert deploy.prototxt --weights net.caffemodel -o net.graph           # NCS graph (see compile)
  agegender convert net.graph -o net.onnx                                            # graph → ONNX (fp16 weights)
  agegender convert net.onnx -o net.caffemodel                                       # ONNX → Caffe where the ops map
  agegender convert mean.binaryproto -o mean.npy                                     # C×H×W float32")]
pub struct Args {
    /// Source model (.prototxt, .caffemodel, .onnx, .graph) or mean (.binaryproto).
    pub model: PathBuf,
    /// Weights for a .prototxt source.
    #[arg(short, long)]
    pub weights: Option<PathBuf>,
    /// Output file; its extension selects the format.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Fill layers without weights from their fillers (seeded) before writing.
    #[arg(long, conflicts_with = "weights")]
    pub random_weights: bool,
    /// Seed for --random-weights.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Overwrite output files that already exist.
    #[arg(long)]
    pub force: bool,
}

fn ext(p: &Path) -> String {
    p.extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// Runs `convert`.
pub fn run(args: Args) -> Result<ExitCode> {
    let (src, dst) = (ext(&args.model), ext(&args.output));
    check_output(&args.output, OutputKind::File, args.force)?;
    if dst == "caffemodel" {
        check_output(
            &args.output.with_extension("prototxt"),
            OutputKind::File,
            args.force,
        )?;
    }
    if src == "binaryproto" {
        if dst != "npy" {
            bail!(
                "a .binaryproto mean converts to .npy, not {}",
                args.output.display()
            );
        }
        convert_mean(&args.model, &args.output)?;
        println!("wrote {}", args.output.display());
        return Ok(ExitCode::SUCCESS);
    }
    let net = if args.random_weights {
        crate::model::load_model_random(&args.model, args.seed)?.0
    } else {
        load_model(&args.model, args.weights.as_deref())?
    };
    net.infer_shapes()?;
    match dst.as_str() {
        "caffemodel" => {
            let proto = args.output.with_extension("prototxt");
            crate::caffe::write_caffemodel(&net, &args.output)?;
            crate::caffe::write_prototxt(&net, &proto)?;
            println!("wrote {} and {}", args.output.display(), proto.display());
        }
        "graph" | "blob" => {
            let warnings = crate::ncs::compile_to_file(&net, &crate::ncs::CompileOptions::default(), &args.output)?;
            for w in &warnings {
                eprintln!("warning: {w}");
            }
            println!("wrote {}", args.output.display());
        }
        "onnx" => {
            crate::onnx::write_onnx(&net, &args.output)?;
            println!("wrote {}", args.output.display());
        }
        "prototxt" => {
            crate::caffe::write_prototxt(&net, &args.output)?;
            println!("wrote {}", args.output.display());
        }
        _ => bail!(
            "{}: unsupported output format (use .caffemodel, .prototxt, .onnx, .graph, or .npy for a mean)",
            args.output.display()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes a binaryproto mean as a float32 C×H×W `.npy`, as the original project's
/// convert_mean.py did (`array[0]` of the 1×C×H×W blob).
pub fn convert_mean(src: &Path, dst: &Path) -> Result<()> {
    let t = crate::caffe::binaryproto::read_binaryproto(src)?;
    let shape = match t.shape.as_slice() {
        [1, c, h, w] => vec![*c, *h, *w],
        [c, h, w] => vec![*c, *h, *w],
        other => bail!(
            "{}: mean has shape {:?}, expected 1×C×H×W or C×H×W",
            src.display(),
            other
        ),
    };
    let t = t.reshaped(&shape).expect("same element count");
    crate::io::npy::write_npy(dst, &t)?;
    Ok(())
}
