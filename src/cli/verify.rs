//! `agegender verify`: compare a model against other models or engines on the same inputs.

use super::EXIT_CHECK_FAILED;
use crate::verify::{self, EngineKind, Model, Options, Preset, Subject, Tolerance};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};

/// A value with its position on the command line, so that `--against-weights` and
/// `--against-engine` attach to the `--against` before them (clap parses values in
/// command-line order).
#[derive(Debug, Clone)]
pub struct Positioned<T> {
    /// Parse order.
    pub position: u64,
    /// The value.
    pub value: T,
}

static POSITION: AtomicU64 = AtomicU64::new(0);

fn positioned_path(s: &str) -> Result<Positioned<PathBuf>, String> {
    Ok(Positioned {
        position: POSITION.fetch_add(1, Ordering::Relaxed),
        value: PathBuf::from(s),
    })
}

fn positioned_engine(s: &str) -> Result<Positioned<EngineKind>, String> {
    use clap::ValueEnum;
    let value = EngineKind::from_str(s, true)
        .map_err(|_| format!("unknown engine '{s}' (expected native or tract)"))?;
    Ok(Positioned {
        position: POSITION.fetch_add(1, Ordering::Relaxed),
        value,
    })
}

/// Compare a model with other models or engines, tensor by tensor.
#[derive(Args, Debug)]
#[command(after_help = "\
Without --against, MODEL run by --engine (native) is compared with MODEL run by tract
(a Caffe net is exported to ONNX in memory). Each --against adds a candidate; the
--against-weights and --against-engine that follow it apply to it.

Metrics per output and per intermediate blob both sides have (matched by name): max abs,
max abs / max|ref|, mean abs / max|ref|, RMS / max|ref|, share of elements off by more
than 2 % of max|ref|, top-1 agreement and top-5 overlap over all inputs, and the first
layer (in the reference's order) that exceeds the bounds.

Presets: strict: max abs <= T * max(1, max|ref|) (T = 1e-4) on every output and matched
blob, and top-1 100 % on outputs; mvncheck: on outputs, max <= T (2 %), mean <= T/2,
RMS <= T/2, relative to max|ref|.
Exit status: 0 pass, 1 a tolerance failure, 2 bad input.

Examples:
  agegender verify deploy.prototxt --weights age_net.caffemodel --input face.jpg --mean mean.binaryproto
  agegender verify deploy.prototxt --weights w.caffemodel --against model.onnx --input x.npy --json
  agegender verify model.onnx --against model.onnx --against-engine native --input faces/ \\
      --mean 104,117,123 --preset mvncheck")]
pub struct VerifyArgs {
    /// The reference model: a deploy .prototxt (with --weights), a .caffemodel or a .onnx.
    pub model: PathBuf,
    /// The reference's caffemodel.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// The reference's engine.
    #[arg(long, value_enum, default_value = "native")]
    pub engine: EngineKind,
    /// A candidate model (repeatable).
    #[arg(long, value_parser = positioned_path)]
    pub against: Vec<Positioned<PathBuf>>,
    /// The caffemodel of the --against before it.
    #[arg(long, value_parser = positioned_path)]
    pub against_weights: Vec<Positioned<PathBuf>>,
    /// The engine of the --against before it (default native).
    #[arg(long, value_parser = positioned_engine)]
    pub against_engine: Vec<Positioned<EngineKind>>,
    /// Input: a .npy tensor, an image, or a folder of images.
    #[arg(long)]
    pub input: PathBuf,
    /// Mean for images: a .binaryproto or .npy mean image, or values like 104,117,123.
    #[arg(long)]
    pub mean: Option<String>,
    /// Pass/fail rule.
    #[arg(long, value_enum, default_value = "strict")]
    pub preset: Preset,
    /// Overrides the preset's bound T.
    #[arg(long)]
    pub tolerance: Option<f32>,
    /// Worker threads per engine (0: all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

struct Candidate {
    path: PathBuf,
    weights: Option<PathBuf>,
    engine: EngineKind,
}

fn pair_candidates(args: &VerifyArgs) -> anyhow::Result<Vec<Candidate>> {
    let mut out: Vec<(u64, Candidate)> = args
        .against
        .iter()
        .map(|a| {
            (
                a.position,
                Candidate {
                    path: a.value.clone(),
                    weights: None,
                    engine: EngineKind::Native,
                },
            )
        })
        .collect();
    let owner = |pos: u64, flag: &str| -> anyhow::Result<usize> {
        out.iter()
            .rposition(|(p, _)| *p < pos)
            .ok_or_else(|| anyhow::anyhow!("{flag} must follow the --against it belongs to"))
    };
    let mut weights = Vec::new();
    for w in &args.against_weights {
        weights.push((owner(w.position, "--against-weights")?, w.value.clone()));
    }
    let mut engines = Vec::new();
    for e in &args.against_engine {
        engines.push((owner(e.position, "--against-engine")?, e.value));
    }
    for (i, w) in weights {
        anyhow::ensure!(
            out[i].1.weights.is_none(),
            "two --against-weights for one --against"
        );
        out[i].1.weights = Some(w);
    }
    for (i, e) in engines {
        out[i].1.engine = e;
    }
    Ok(out.into_iter().map(|(_, c)| c).collect())
}

/// Runs `verify`.
pub fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let candidates = pair_candidates(&args)?;
    let reference = Model::load(&args.model, args.weights.as_deref())?;
    let models = candidates
        .iter()
        .map(|c| Model::load(&c.path, c.weights.as_deref()))
        .collect::<Result<Vec<_>, _>>()?;
    let (_, declared) = reference.input()?;
    let mean = args.mean.as_deref().map(verify::parse_mean).transpose()?;
    let inputs = verify::load_inputs(&args.input, &declared, mean.as_ref())?;
    let comparisons = candidates.len().max(1);
    let progress = (inputs.len() > 1 && !args.json).then(|| {
        let p = indicatif::ProgressBar::new((inputs.len() * comparisons) as u64);
        p.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} input batches {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        p
    });
    let options = Options {
        tolerance: Tolerance::new(args.preset, args.tolerance),
        threads: args.threads,
        progress: progress.clone(),
    };
    let subjects: Vec<Subject> = models
        .iter()
        .zip(&candidates)
        .map(|(m, c)| Subject::new(m, c.engine))
        .collect();
    let report = verify::verify(
        &Subject::new(&reference, args.engine),
        &subjects,
        &inputs,
        &options,
    )?;
    if let Some(p) = progress {
        p.finish_and_clear();
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
    }
    Ok(if report.pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_CHECK_FAILED)
    })
}
