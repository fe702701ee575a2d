//! `verify`: runs the same inputs through two models or engines and compares them tensor by
//! tensor, as Intel's mvNCCheck did for the NCS (errors relative to the largest reference
//! magnitude), plus top-1/top-5 agreement and the first layer that diverges.
//!
//! Blobs are matched by name: IR blob names on the native side, ONNX tensor names on the
//! tract side (an exported net keeps its IR names; the tops of removed Dropout/Split layers
//! map to the tensor they alias). Outputs must have the same names on both sides.

pub mod engine;
pub mod input;
pub mod metrics;
pub mod report;
pub mod tolerance;

pub use engine::{run_model, EngineKind, Model, Runner, Side};
pub use input::{load_inputs, parse_mean, Mean};
pub use metrics::{Accumulator, BlobMetrics};
pub use report::{Comparison, Report};
pub use tolerance::{Preset, Tolerance};

use crate::ir::Tensor;
use std::collections::{HashMap, HashSet};

/// Errors that stop a verification (bad input, not a tolerance failure).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A Caffe file could not be loaded.
    #[error(transparent)]
    Caffe(#[from] crate::caffe::CaffeError),
    /// An ONNX file could not be loaded, imported, exported or run.
    #[error(transparent)]
    Onnx(#[from] crate::onnx::OnnxError),
    /// The native engine failed.
    #[error(transparent)]
    Exec(#[from] crate::exec::ExecError),
    /// A `.npy` file could not be read.
    #[error(transparent)]
    Npy(#[from] crate::io::npy::NpyError),
    /// An image could not be read.
    #[error(transparent)]
    Image(#[from] crate::io::image::ImageError),
    /// A model could not be loaded through the format registry.
    #[error("{0:#}")]
    Load(anyhow::Error),
    /// Arguments that do not fit the models (shapes, formats, options).
    #[error("{0}")]
    Usage(String),
    /// The two sides do not have the same outputs.
    #[error("outputs differ: {reference} has [{ref_outputs}], {candidate} has [{cand_outputs}]")]
    OutputNames {
        /// Reference label.
        reference: String,
        /// Its outputs.
        ref_outputs: String,
        /// Candidate label.
        candidate: String,
        /// Its outputs.
        cand_outputs: String,
    },
}

/// A model and the engine to run it with.
pub struct Subject<'a> {
    /// The model.
    pub model: &'a Model,
    /// The engine.
    pub engine: EngineKind,
    /// As a candidate: its own pass/fail rule instead of [`Options::tolerance`] (an fp16
    /// graph is judged by mvNCCheck's rule while an f32 conversion stays strict).
    pub tolerance: Option<Tolerance>,
}

impl<'a> Subject<'a> {
    /// `model` on `engine`, judged by the run's tolerance.
    pub fn new(model: &'a Model, engine: EngineKind) -> Self {
        Self {
            model,
            engine,
            tolerance: None,
        }
    }
}

/// How a verification runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The pass/fail rule.
    pub tolerance: Tolerance,
    /// Worker threads per engine (0: all cores).
    pub threads: usize,
    /// Ticked once per input batch and comparison.
    pub progress: Option<indicatif::ProgressBar>,
}

/// Compares `candidate` against `reference` on every input batch.
pub fn compare(
    reference: &Subject,
    candidate: &Subject,
    inputs: &[Tensor],
    options: &Options,
) -> Result<Comparison, VerifyError> {
    let tolerance = candidate.tolerance.unwrap_or(options.tolerance);
    let threads = options.threads;
    let shape = inputs
        .first()
        .map(|t| t.shape.clone())
        .ok_or_else(|| VerifyError::Usage("no inputs".into()))?;
    let r = Side::new(reference.model, reference.engine, &shape)?;
    let c = Side::new(candidate.model, candidate.engine, &shape)?;
    let (ro, co): (HashSet<&String>, HashSet<&String>) =
        (r.outputs().iter().collect(), c.outputs().iter().collect());
    // NCSDK 2 graphs store no names (NCSDK2_GRAPH_FORMAT.md §11): one output on each side
    // is paired by position, under the reference's name
    let alias = (ro != co && r.outputs().len() == 1 && c.outputs().len() == 1)
        .then(|| (c.outputs()[0].clone(), r.outputs()[0].clone()));
    if ro != co && alias.is_none() {
        return Err(VerifyError::OutputNames {
            reference: r.label().into(),
            ref_outputs: r.outputs().join(", "),
            candidate: c.label().into(),
            cand_outputs: c.outputs().join(", "),
        });
    }
    let cand_blobs: HashSet<&str> = c.blob_order().iter().map(|(b, _)| b.as_str()).collect();
    let matched: Vec<(String, String)> = r
        .blob_order()
        .iter()
        .filter(|(b, _)| cand_blobs.contains(b.as_str()))
        .cloned()
        .collect();
    let names: Vec<String> = matched.iter().map(|(b, _)| b.clone()).collect();
    let (rr, cr) = (r.runner(&names, threads)?, c.runner(&names, threads)?);

    let mut acc: HashMap<String, Accumulator> = HashMap::new();
    let mut notes: HashMap<String, String> = HashMap::new();
    for input in inputs {
        if input.shape != shape {
            return Err(VerifyError::Usage(format!(
                "inputs have different shapes ({:?} and {:?})",
                shape, input.shape
            )));
        }
        let got_r: HashMap<String, Tensor> = rr.run(input)?.into_iter().collect();
        let got_c: HashMap<String, Tensor> = cr
            .run(input)?
            .into_iter()
            .map(|(n, t)| match &alias {
                Some((from, to)) if &n == from => (to.clone(), t),
                _ => (n, t),
            })
            .collect();
        if let Some(p) = &options.progress {
            p.inc(1);
        }
        for (name, rt) in &got_r {
            let Some(ct) = got_c.get(name) else { continue };
            if let Err(e) = acc.entry(name.clone()).or_default().add(rt, ct) {
                notes.insert(name.clone(), e);
            }
        }
    }
    let metrics = |name: &str| -> Option<BlobMetrics> {
        let mut m = acc.get(name)?.finish(name);
        if let Some(n) = notes.get(name) {
            m.max_abs = f32::INFINITY;
            m.max_rel = f32::INFINITY;
            m.note = Some(n.clone());
        }
        Some(m)
    };
    let mut outputs = Vec::new();
    let mut pass = true;
    for o in r.outputs() {
        let m = metrics(o).ok_or_else(|| {
            VerifyError::Usage(format!("output '{o}' was not produced by both sides"))
        })?;
        pass &= tolerance.output_ok(&m);
        outputs.push(m);
    }
    let mut first_divergent_layer = None;
    let mut intermediates = Vec::new();
    for (blob, layer) in &matched {
        let Some(m) = metrics(blob) else { continue };
        if first_divergent_layer.is_none() && !tolerance.error_ok(&m) {
            first_divergent_layer = Some(layer.clone());
        }
        if !r.outputs().contains(blob) {
            intermediates.push(m);
        }
    }
    // strict checks a conversion: any matched blob out of bounds is a failure, even when
    // later layers hide it. mvncheck judges the outputs only, as mvNCCheck does.
    if tolerance.preset == Preset::Strict && first_divergent_layer.is_some() {
        pass = false;
    }
    Ok(Comparison {
        reference: r.label().to_string(),
        candidate: c.label().to_string(),
        tolerance,
        pass,
        outputs,
        intermediates,
        first_divergent_layer,
    })
}

/// Compares every candidate against the reference. Without candidates it checks the two
/// conversions a user of the reference would make: the model run by tract (for a Caffe net:
/// its ONNX export), under the run's tolerance, and the model compiled to an NCS graph,
/// read back and run on the fp16 NCS emulation, under mvNCCheck's rule (fp16 cannot meet
/// the strict f32 bound). A net the NCS compiler refuses gets a note instead.
pub fn verify(
    reference: &Subject,
    candidates: &[Subject],
    inputs: &[Tensor],
    options: &Options,
) -> Result<Report, VerifyError> {
    let mut notes = Vec::new();
    let compiled;
    let implicit: Vec<Subject>;
    let candidates = if candidates.is_empty() {
        compiled = compiled_graph(reference.model, &mut notes);
        let mut list = vec![Subject::new(reference.model, EngineKind::Tract)];
        if let Some(graph) = &compiled {
            list.push(Subject {
                model: graph,
                engine: EngineKind::F16,
                tolerance: Some(Tolerance::new(Preset::Mvncheck, None)),
            });
        }
        implicit = list;
        &implicit[..]
    } else {
        candidates
    };
    let mut comparisons = Vec::new();
    for c in candidates {
        comparisons.push(compare(reference, c, inputs, options)?);
    }
    Ok(Report {
        pass: comparisons.iter().all(|c| c.pass),
        tolerance: options.tolerance,
        inputs: inputs.len(),
        comparisons,
        notes,
    })
}

/// The reference compiled to an NCS graph (default `mvNCCompile` options) and read back
/// into the IR, as the NCS would run it; `None` with a note when the model is not an IR
/// net or the compiler refuses it.
fn compiled_graph(model: &Model, notes: &mut Vec<String>) -> Option<Model> {
    let net = match model {
        Model::Ir { net, .. } | Model::Net(net) => net.clone(),
        Model::Onnx { path, .. } => match crate::onnx::import::import(path) {
            Ok(net) => net,
            Err(e) => {
                notes.push(format!("NCS graph not checked: {e}"));
                return None;
            }
        },
    };
    let compiled = crate::ncs::compiler::compile(&net, &Default::default())
        .map_err(|e| e.to_string())
        .and_then(|c| crate::ncs::graph_to_net(&c.graph).map_err(|e| e.to_string()));
    match compiled {
        Ok(graph_net) => Some(Model::Net(graph_net)),
        Err(e) => {
            notes.push(format!(
                "NCS graph not checked: the compiler refuses the net: {e}"
            ));
            None
        }
    }
}
