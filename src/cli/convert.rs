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
  agegender convert v23.graph -o v24.graph --ncsdk 2 --blob 2.4                      # NCSDK 2 blob 2.3 → 2.4
  agegender convert v1.graph -o v2.graph --ncsdk 2                                   # NCSDK 1 → NCSDK 2 (via the IR)
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
    /// For a .graph output: NCSDK generation, 1 or 2 (default: the source graph's, else 1).
    #[arg(long)]
    pub ncsdk: Option<String>,
    /// For an NCSDK 2 .graph output: blob version 2.3 or 2.4 (default: the source's, else 2.3).
    #[arg(long)]
    pub blob: Option<String>,
}

/// Graph → graph: an NCSDK 2 source to an NCSDK 2 target keeps its records, buffers and
/// relocations and only changes the container version (NCSDK2_GRAPH_FORMAT.md §3.3);
/// every other pair goes through the IR and the compiler (the fp16 weights are exact in
/// the IR, so recompiling does not change them). Returns false when the source is not a
/// graph.
fn convert_graph(args: &Args) -> Result<bool> {
    use super::compile::{parse_target, write_graph, GraphTarget};
    use crate::ncs::AnyGraph;
    if crate::model::ModelFormat::detect(&args.model).ok()
        != Some(crate::model::ModelFormat::NcsGraph)
    {
        return Ok(false);
    }
    let src = crate::ncs::read_any(&args.model)?;
    let (default_ncsdk, default_blob, shaves) = match &src {
        AnyGraph::V1(g) => ("1", None, g.header.shaves()),
        AnyGraph::V2(g) => ("2", Some(g.header.version.to_string()), g.header.num_shaves),
    };
    let ncsdk = args.ncsdk.as_deref().unwrap_or(default_ncsdk);
    let blob = match (ncsdk, &args.blob) {
        (_, Some(b)) => Some(b.clone()),
        ("2" | "v2" | "2.x", None) => default_blob,
        _ => None,
    };
    let target = parse_target(ncsdk, blob.as_deref())?;
    match (&src, target) {
        (AnyGraph::V2(g), GraphTarget::Ncsdk2(v)) => g.with_version(v).write(&args.output)?,
        _ => {
            let net = crate::ncs::read_net(&args.model)?;
            let opts = crate::ncs::CompileOptions {
                shaves: u16::try_from(shaves.clamp(1, 12)).unwrap_or(1),
                ..Default::default()
            };
            for w in write_graph(&net, &opts, target, &args.output)? {
                eprintln!("warning: {w}");
            }
        }
    }
    Ok(true)
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
    if matches!(dst.as_str(), "graph" | "blob") && convert_graph(&args)? {
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
            let target =
                super::compile::parse_target(args.ncsdk.as_deref().unwrap_or("1"), args.blob.as_deref())?;
            let warnings = super::compile::write_graph(
                &net,
                &crate::ncs::CompileOptions::default(),
                target,
                &args.output,
            )?;
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
