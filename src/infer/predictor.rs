//! [`Predictor`]: one classification net, its preprocessing and its engine, run on batches
//! of images.

use super::model::{default_engine, engine_name, load_for_inference, LoadedModel};
use super::preprocess::{Mean, PreprocessOptions, Preprocessor};
use super::InferError;
use crate::cli::common::EngineKind;
use crate::exec::{Engine, ExecOptions};
use crate::io::image::ChwImage;
use crate::ir::{Net, Op, Tensor};
use crate::onnx::pb::ModelProto;
use crate::onnx::tract_engine::TractModel;
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// How a predictor runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PredictorOptions {
    /// The engine; `None` picks the format's default ([`default_engine`]).
    pub engine: Option<EngineKind>,
    /// Images per forward pass (at least 1).
    pub batch: usize,
    /// Worker threads for the engine; 0 uses every core.
    pub threads: usize,
    /// Preprocessing switches.
    pub preprocess: PreprocessOptions,
}

impl Default for PredictorOptions {
    fn default() -> Self {
        Self {
            engine: None,
            batch: 16,
            threads: 0,
            preprocess: PreprocessOptions::default(),
        }
    }
}

/// One engine instance planned for one batch size.
enum Backend {
    Native(Box<Engine>),
    Tract(TractModel),
    F16(Box<crate::exec::f16::F16Engine>),
}

/// A classification net ready to run on images: input `N×C×H×W`, one output of class
/// scores. Engines are planned lazily per batch size (a directory run needs at most two:
/// the full batch and the remainder), so a single image never pays for a large batch.
pub struct Predictor {
    net: Net,
    onnx: Option<(ModelProto, Option<PathBuf>)>,
    engine: EngineKind,
    threads: usize,
    batch: usize,
    input: String,
    output: String,
    classes: usize,
    /// True when the output is not produced by a Softmax layer (raw scores), so the
    /// predictor applies Caffe's softmax itself.
    apply_softmax: bool,
    preprocessor: Preprocessor,
    backends: Mutex<HashMap<usize, Arc<Backend>>>,
}

impl std::fmt::Debug for Predictor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Predictor")
            .field("net", &self.net.name)
            .field("engine", &engine_name(self.engine))
            .field("input", &self.input)
            .field("output", &self.output)
            .field("classes", &self.classes)
            .finish()
    }
}

impl Predictor {
    /// Loads `model` (any format; `weights` for a `.prototxt`) and reads `mean_file`
    /// (`.npy` or `.binaryproto`; per-channel when `options.preprocess.mean_per_channel`).
    pub fn from_files(
        model: &Path,
        weights: Option<&Path>,
        mean_file: Option<&Path>,
        options: &PredictorOptions,
    ) -> Result<Self, InferError> {
        let loaded = load_for_inference(model, weights)?;
        let mean = match mean_file {
            Some(p) => Mean::from_file(p, options.preprocess.mean_per_channel)?,
            None => Mean::None,
        };
        let mean_error = |e: InferError| match (e, mean_file) {
            (InferError::MeanShape(source), Some(p)) => InferError::Mean {
                path: p.to_path_buf(),
                msg: format!(
                    "{source} (net input of {}{})",
                    model.display(),
                    if options.preprocess.mean_per_channel {
                        ""
                    } else {
                        "; --mean-per-channel uses its channel averages instead"
                    }
                ),
            },
            // Weights or shapes that the engines refuse: name the model file.
            (e @ (InferError::Exec(_) | InferError::Onnx(_) | InferError::Net { .. }), _) => {
                InferError::Model {
                    path: model.to_path_buf(),
                    error: e.into(),
                }
            }
            (e, _) => e,
        };
        Self::from_loaded(loaded, &mean, options).map_err(mean_error)
    }

    /// A predictor for a model already loaded with [`load_for_inference`].
    pub fn from_loaded(
        loaded: LoadedModel,
        mean: &Mean,
        options: &PredictorOptions,
    ) -> Result<Self, InferError> {
        let engine = options.engine.unwrap_or(default_engine(loaded.format));
        let dir = loaded.path.parent().map(Path::to_path_buf);
        let onnx = loaded.onnx.map(|m| (m, dir));
        Self::build(loaded.net, onnx, engine, mean, options)
    }

    /// A predictor for an IR net (run natively, or exported to ONNX for tract), e.g. a net
    /// just trained by the pipeline.
    pub fn new(net: Net, mean: &Mean, options: &PredictorOptions) -> Result<Self, InferError> {
        let engine = options.engine.unwrap_or(EngineKind::Native);
        Self::build(net, None, engine, mean, options)
    }

    fn build(
        net: Net,
        onnx: Option<(ModelProto, Option<PathBuf>)>,
        engine: EngineKind,
        mean: &Mean,
        options: &PredictorOptions,
    ) -> Result<Self, InferError> {
        let bad = |msg: String| InferError::Net {
            net: net.name.clone(),
            msg,
        };
        let (input, shape) = match net.inputs.as_slice() {
            [one] => (one.name.clone(), one.shape.clone()),
            other => {
                return Err(bad(format!(
                    "has {} inputs; an image classifier has exactly one",
                    other.len()
                )))
            }
        };
        let [_, c, h, w] = shape[..] else {
            return Err(bad(format!(
                "input '{input}' has shape {shape:?}; images need N×C×H×W"
            )));
        };
        if c != 3 {
            return Err(bad(format!(
                "input '{input}' takes {c} channels; images are decoded to 3 (BGR)"
            )));
        }
        if let Some(l) = net
            .layers
            .iter()
            .find(|l| l.blobs.len() < crate::caffe::weights::expected_blob_count(l))
        {
            return Err(bad(format!(
                "layer '{}' has no learned weights (a .prototxt needs its .caffemodel)",
                l.name
            )));
        }
        let shapes = net.infer_shapes().map_err(|e| bad(e.to_string()))?;
        let (output, apply_softmax) = class_output(&net).map_err(bad)?;
        let classes: usize = shapes[&output].iter().skip(1).product();
        if classes == 0 {
            return Err(bad(format!("output '{output}' has no classes")));
        }
        let threads = if options.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            options.threads
        };
        if engine == EngineKind::Tract {
            crate::onnx::tract_engine::set_threads(threads);
        }
        let preprocessor = Preprocessor::new([c, h, w], mean, options.preprocess)?;
        let predictor = Self {
            net,
            onnx,
            engine,
            threads,
            batch: options.batch.max(1),
            input,
            output,
            classes,
            apply_softmax,
            preprocessor,
            backends: Mutex::new(HashMap::new()),
        };
        // Plan once now so that a broken model fails before any image is read.
        predictor.backend(1)?;
        Ok(predictor)
    }

    /// The engine that runs the net.
    pub fn engine(&self) -> EngineKind {
        self.engine
    }

    /// Number of classes of the output.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// The IR net.
    pub fn net(&self) -> &Net {
        &self.net
    }

    /// The preprocessing in use.
    pub fn preprocessor(&self) -> &Preprocessor {
        &self.preprocessor
    }

    /// Images per forward pass.
    pub fn batch(&self) -> usize {
        self.batch
    }

    fn backend(&self, batch: usize) -> Result<Arc<Backend>, InferError> {
        let mut cache = self.backends.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = cache.get(&batch) {
            return Ok(b.clone());
        }
        let [c, h, w] = self.preprocessor.input();
        let backend = match self.engine {
            EngineKind::Native => Backend::Native(Box::new(Engine::with_options(
                &self.net,
                ExecOptions {
                    threads: self.threads,
                    batch: Some(batch),
                    ..ExecOptions::default()
                },
            )?)),
            EngineKind::Tract => {
                let shapes = HashMap::from([(self.input.clone(), vec![batch, c, h, w])]);
                let extra = [self.output.clone()];
                let model = match &self.onnx {
                    Some((m, dir)) => TractModel::from_proto(
                        &without_shape_hints(m),
                        dir.as_deref(),
                        &shapes,
                        &extra,
                    )?,
                    None => {
                        let m = crate::onnx::export(&self.net)?;
                        TractModel::from_proto(&without_shape_hints(&m), None, &shapes, &extra)?
                    }
                };
                Backend::Tract(model)
            }
            EngineKind::F16 => Backend::F16(Box::new(crate::exec::f16::F16Engine::with_options(
                &self.net,
                ExecOptions {
                    threads: self.threads,
                    batch: Some(batch),
                    ..ExecOptions::default()
                },
            )?)),
        };
        let backend = Arc::new(backend);
        cache.insert(batch, backend.clone());
        Ok(backend)
    }

    /// Preprocesses images (in parallel) into C×H×W inputs.
    pub fn prepare(&self, images: &[ChwImage]) -> Vec<Vec<f32>> {
        images
            .par_iter()
            .map(|img| self.preprocessor.apply(img))
            .collect()
    }

    /// Class probabilities for each image, in order.
    pub fn predict(&self, images: &[ChwImage]) -> Result<Vec<Vec<f32>>, InferError> {
        self.predict_prepared(&self.prepare(images))
    }

    /// Class probabilities for inputs already made by [`Predictor::prepare`], run in batches
    /// of [`Predictor::batch`].
    pub fn predict_prepared(&self, inputs: &[Vec<f32>]) -> Result<Vec<Vec<f32>>, InferError> {
        let mut rows = Vec::with_capacity(inputs.len());
        for chunk in inputs.chunks(self.batch) {
            rows.extend(self.run_batch(chunk)?);
        }
        Ok(rows)
    }

    fn run_batch(&self, chunk: &[Vec<f32>]) -> Result<Vec<Vec<f32>>, InferError> {
        let n = chunk.len();
        let [c, h, w] = self.preprocessor.input();
        let mut data = Vec::with_capacity(n * c * h * w);
        for x in chunk {
            data.extend_from_slice(x);
        }
        let x = Tensor {
            shape: vec![n, c, h, w],
            data,
        };
        let scores = match &*self.backend(n)? {
            Backend::Native(engine) => {
                let mut out = engine.run([(self.input.as_str(), x)])?;
                out.take(&self.output)
            }
            Backend::F16(engine) => {
                let mut run = engine.run([(self.input.as_str(), x)])?;
                run.outputs.take(&self.output)
            }
            Backend::Tract(model) => model
                .run(&[x])?
                .into_iter()
                .find(|(name, _)| *name == self.output)
                .map(|(_, t)| t),
        }
        .ok_or_else(|| InferError::Net {
            net: self.net.name.clone(),
            msg: format!("the engine returned no '{}'", self.output),
        })?;
        if scores.len() != n * self.classes {
            return Err(InferError::Net {
                net: self.net.name.clone(),
                msg: format!(
                    "output '{}' has shape {:?}, expected {n} rows of {} classes",
                    self.output, scores.shape, self.classes
                ),
            });
        }
        Ok(scores
            .data
            .chunks_exact(self.classes)
            .map(|row| {
                if self.apply_softmax {
                    softmax(row)
                } else {
                    row.to_vec()
                }
            })
            .collect())
    }
}

/// The output holding class scores: the net's only output, or else the only one produced
/// by a Softmax layer. The flag says whether softmax must still be applied.
fn class_output(net: &Net) -> Result<(String, bool), String> {
    let outputs = net.outputs();
    let from_softmax = |name: &String| {
        net.layers
            .iter()
            .any(|l| l.tops.contains(name) && matches!(l.op, Op::Softmax(_)))
    };
    let softmaxed: Vec<&String> = outputs.iter().filter(|o| from_softmax(o)).collect();
    match (outputs.as_slice(), softmaxed.as_slice()) {
        ([one], _) => Ok((one.clone(), !from_softmax(one))),
        (_, [one]) => Ok(((*one).clone(), false)),
        ([], _) => Err("has no output".into()),
        (many, _) => Err(format!(
            "has {} outputs ({}) and no single Softmax output to read classes from",
            many.len(),
            many.join(", ")
        )),
    }
}

/// The model without its intermediate and output shape annotations (`value_info`, output
/// types), which carry the batch size it was written with; tract infers them again from
/// the input shape the predictor sets. Nodes, weights and input declarations are untouched.
fn without_shape_hints(model: &ModelProto) -> ModelProto {
    let mut m = model.clone();
    if let Some(g) = m.graph.as_mut() {
        g.value_info.clear();
        for o in &mut g.output {
            o.r#type = None;
        }
    }
    m
}

/// Caffe's numerically stable softmax of one row.
fn softmax(row: &[f32]) -> Vec<f32> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = row.iter().map(|&v| (v - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}
