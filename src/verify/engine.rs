//! Models and the engines that run them, behind one interface for `verify`, `run` and
//! `bench`.
//!
//! A [`Model`] is a loaded file (anything the format registry reads, or ONNX kept as it is
//! for tract) or an in-memory [`Net`]. A [`Side`] is a model bound to an [`EngineKind`] and an input shape: it knows
//! the blobs it can report (in execution order) and its outputs. [`Side::runner`] plans the
//! engine for the blobs wanted. New engines (the fp16 NCS emulation) add an [`EngineKind`]
//! variant and one arm in [`Side::new`] and [`Side::runner`].

use super::VerifyError;
use crate::exec::{Engine, ExecOptions};
use crate::ir::{Net, Tensor};
use crate::model::ModelFormat;
use crate::onnx::pb::ModelProto;
use crate::onnx::tract_engine::{set_threads, TractModel};
use crate::onnx::{self, ImportOptions};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

/// The engine that runs a model (`verify`, `run`, `bench`, `infer`, `test` all take this).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// The native f32 engine on the IR (ONNX files are imported first).
    #[default]
    Native,
    /// tract-onnx on the ONNX model (Caffe nets are exported first).
    Tract,
    /// The fp16 NCS emulation (`exec::f16`) on the IR: fp16 weights, every stored tensor
    /// rounded to fp16, as a compiled graph runs on the stick.
    F16,
}

impl EngineKind {
    /// The CLI name.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Native => "native",
            EngineKind::Tract => "tract",
            EngineKind::F16 => "f16",
        }
    }
}

/// A loaded model.
#[derive(Debug, Clone)]
pub enum Model {
    /// A model the format registry ([`crate::model`]) reads into the IR: a Caffe deploy
    /// prototxt (with weights), a caffemodel, an NCS graph.
    Ir {
        /// The model file.
        path: PathBuf,
        /// The TEST-phase net.
        net: Net,
    },
    /// An ONNX file, not yet interpreted: tract runs it as it is, and its input shapes
    /// may be dynamic until an input fixes them.
    Onnx {
        /// The file.
        path: PathBuf,
        /// Its decoded protobuf.
        proto: Box<ModelProto>,
    },
    /// A net built in memory.
    Net(Net),
}

impl Model {
    /// Loads `path` in the format its name says ([`ModelFormat::detect`]); `weights` is the
    /// caffemodel of a prototxt.
    pub fn load(path: &Path, weights: Option<&Path>) -> Result<Self, VerifyError> {
        let format = ModelFormat::detect(path).map_err(VerifyError::Load)?;
        if format == ModelFormat::Onnx {
            if weights.is_some() {
                return Err(VerifyError::Usage(format!(
                    "{}: an ONNX model holds its own weights; drop the weights option",
                    path.display()
                )));
            }
            return Ok(Model::Onnx {
                path: path.to_path_buf(),
                proto: Box::new(onnx::import::read_model(path)?),
            });
        }
        Ok(Model::Ir {
            path: path.to_path_buf(),
            net: crate::model::load_model(path, weights).map_err(VerifyError::Load)?,
        })
    }

    /// A short label for reports: the file, or the net's name.
    pub fn label(&self) -> String {
        match self {
            Model::Ir { path, .. } | Model::Onnx { path, .. } => path.display().to_string(),
            Model::Net(n) => format!("net '{}'", n.name),
        }
    }

    /// The single input's name and declared shape (`None` for dynamic dims).
    pub fn input(&self) -> Result<(String, Vec<Option<usize>>), VerifyError> {
        let from_net = |n: &Net| -> Result<_, VerifyError> {
            match n.inputs.as_slice() {
                [i] => Ok((i.name.clone(), i.shape.iter().map(|&d| Some(d)).collect())),
                other => Err(VerifyError::Usage(format!(
                    "{}: verify needs a net with exactly one input, this one has {}",
                    self.label(),
                    other.len()
                ))),
            }
        };
        match self {
            Model::Ir { net, .. } | Model::Net(net) => from_net(net),
            Model::Onnx { proto, .. } => {
                use crate::onnx::pb::tensor_shape_proto::dimension::Value;
                use crate::onnx::pb::type_proto;
                let g = proto.graph.as_ref().ok_or_else(|| {
                    VerifyError::Onnx(onnx::OnnxError::Graph("the model has no graph".into()))
                })?;
                let inits: HashSet<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
                let inputs: Vec<_> = g
                    .input
                    .iter()
                    .filter(|i| !inits.contains(i.name.as_str()))
                    .collect();
                let [i] = inputs.as_slice() else {
                    return Err(VerifyError::Usage(format!(
                        "{}: verify needs a model with exactly one input, this one has {}",
                        self.label(),
                        inputs.len()
                    )));
                };
                let dims = match i.r#type.as_ref().and_then(|t| t.value.as_ref()) {
                    Some(type_proto::Value::TensorType(t)) => t
                        .shape
                        .as_ref()
                        .map(|s| {
                            s.dim
                                .iter()
                                .map(|d| match d.value {
                                    Some(Value::DimValue(v)) if v > 0 => Some(v as usize),
                                    _ => None,
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    None => Vec::new(),
                };
                Ok((i.name.clone(), dims))
            }
        }
    }
}

/// Where a side's tensors come from.
enum Source {
    Net(Net),
    F16(Net),
    Onnx {
        proto: Box<ModelProto>,
        dir: Option<PathBuf>,
        /// Our blob name → the ONNX tensor holding it.
        tensors: BTreeMap<String, String>,
    },
}

/// A model bound to an engine and an input shape.
pub struct Side {
    label: String,
    engine: EngineKind,
    input: String,
    input_shape: Vec<usize>,
    source: Source,
    /// (blob, producing layer or node) in execution order, inputs excluded.
    order: Vec<(String, String)>,
    outputs: Vec<String>,
}

/// The net at the batch size of `shape` (its other dims were checked against the declared
/// input when the inputs were loaded).
fn with_input_shape(net: &Net, shape: &[usize]) -> Net {
    let mut n = net.clone();
    if let Some(&batch) = shape.first() {
        n.set_batch(batch);
    }
    n
}

fn net_order(net: &Net) -> Vec<(String, String)> {
    net.without_train_layers()
        .layers
        .iter()
        .flat_map(|l| l.tops.iter().map(move |t| (t.clone(), l.name.clone())))
        .collect()
}

fn onnx_outputs(proto: &ModelProto) -> Vec<String> {
    proto
        .graph
        .as_ref()
        .map(|g| g.output.iter().map(|o| o.name.clone()).collect())
        .unwrap_or_default()
}

impl Side {
    /// Binds `model` to `engine` for inputs of `input_shape`: imports ONNX for the native
    /// engine, exports the net for tract.
    pub fn new(
        model: &Model,
        engine: EngineKind,
        input_shape: &[usize],
    ) -> Result<Self, VerifyError> {
        let (input, _) = model.input()?;
        let label = format!("{} [{}]", model.label(), engine.name());
        let (source, order, outputs) = match (model, engine) {
            (Model::Ir { net, .. } | Model::Net(net), EngineKind::Native) => {
                let net = with_input_shape(net, input_shape);
                let order = net_order(&net);
                let outputs = net.without_train_layers().outputs();
                (Source::Net(net), order, outputs)
            }
            (Model::Ir { net, .. } | Model::Net(net), EngineKind::F16) => {
                let net = with_input_shape(net, input_shape);
                let order = net_order(&net);
                let outputs = net.without_train_layers().outputs();
                (Source::F16(net), order, outputs)
            }
            (Model::Onnx { path, proto }, EngineKind::F16) => {
                let opts = ImportOptions {
                    input_shapes: HashMap::from([(input.clone(), input_shape.to_vec())]),
                };
                let dir = path.parent().unwrap_or(Path::new("."));
                let net =
                    onnx::import_model(proto, Some(dir), &opts).map_err(|e| e.in_file(path))?;
                let order = net_order(&net);
                (Source::F16(net), order, onnx_outputs(proto))
            }
            (Model::Onnx { path, proto }, EngineKind::Native) => {
                let opts = ImportOptions {
                    input_shapes: HashMap::from([(input.clone(), input_shape.to_vec())]),
                };
                let dir = path.parent().unwrap_or(Path::new("."));
                let net =
                    onnx::import_model(proto, Some(dir), &opts).map_err(|e| e.in_file(path))?;
                let order = net_order(&net);
                (Source::Net(net), order, onnx_outputs(proto))
            }
            (Model::Ir { net, .. } | Model::Net(net), EngineKind::Tract) => {
                let net = with_input_shape(net, input_shape);
                let (proto, tensors) = onnx::export_with_blob_map(&net)?;
                let order = net_order(&net);
                let outputs = onnx_outputs(&proto);
                let source = Source::Onnx {
                    proto: Box::new(proto),
                    dir: None,
                    tensors,
                };
                (source, order, outputs)
            }
            (Model::Onnx { path, proto }, EngineKind::Tract) => {
                let mut tensors = BTreeMap::new();
                let mut order = Vec::new();
                for n in proto.graph.iter().flat_map(|g| &g.node) {
                    if let Some(o) = n.output.first().filter(|o| !o.is_empty()) {
                        tensors.insert(o.clone(), o.clone());
                        let layer = if n.name.is_empty() {
                            o.clone()
                        } else {
                            n.name.clone()
                        };
                        order.push((o.clone(), layer));
                    }
                }
                let source = Source::Onnx {
                    proto: proto.clone(),
                    dir: path.parent().map(Path::to_path_buf),
                    tensors,
                };
                (source, order, onnx_outputs(proto))
            }
        };
        Ok(Self {
            label,
            engine,
            input,
            input_shape: input_shape.to_vec(),
            source,
            order,
            outputs,
        })
    }

    /// `MODEL [engine]`.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The engine.
    pub fn engine(&self) -> EngineKind {
        self.engine
    }

    /// Output names.
    pub fn outputs(&self) -> &[String] {
        &self.outputs
    }

    /// Blobs this side can report, with the layer (or node) producing each, in execution
    /// order.
    pub fn blob_order(&self) -> &[(String, String)] {
        &self.order
    }

    /// Plans the engine to return `blobs` (outputs are always returned) with `threads`
    /// worker threads (0: all cores).
    pub fn runner(&self, blobs: &[String], threads: usize) -> Result<Runner, VerifyError> {
        let mut want: Vec<String> = self.outputs.clone();
        for b in blobs {
            if !want.contains(b) {
                want.push(b.clone());
            }
        }
        let threads = if threads == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            threads
        };
        let inner = match &self.source {
            Source::Net(net) => {
                let engine = Engine::with_options(
                    net,
                    ExecOptions {
                        threads,
                        keep_all_blobs: true,
                        ..ExecOptions::default()
                    },
                )?;
                Inner::Native(Box::new(engine))
            }
            Source::F16(net) => {
                let engine = crate::exec::f16::F16Engine::with_options(
                    net,
                    ExecOptions {
                        threads,
                        keep_all_blobs: true,
                        ..ExecOptions::default()
                    },
                )?;
                Inner::F16(Box::new(engine))
            }
            Source::Onnx {
                proto,
                dir,
                tensors,
            } => {
                set_threads(threads);
                let shapes = HashMap::from([(self.input.clone(), self.input_shape.clone())]);
                let mut extra: Vec<String> = Vec::new();
                for b in &want {
                    let t = tensors.get(b).cloned().unwrap_or_else(|| b.clone());
                    if t != self.input && !extra.contains(&t) {
                        extra.push(t);
                    }
                }
                let model = TractModel::from_proto(proto, dir.as_deref(), &shapes, &extra)?;
                Inner::Tract {
                    model,
                    tensors: tensors.clone(),
                }
            }
        };
        Ok(Runner {
            input: self.input.clone(),
            want,
            inner,
        })
    }
}

enum Inner {
    Native(Box<Engine>),
    F16(Box<crate::exec::f16::F16Engine>),
    Tract {
        model: TractModel,
        tensors: BTreeMap<String, String>,
    },
}

/// A planned engine for one side, run once per input batch.
pub struct Runner {
    input: String,
    want: Vec<String>,
    inner: Inner,
}

impl Runner {
    /// Runs one batch; returns the wanted blobs (outputs first) by name.
    pub fn run(&self, input: &Tensor) -> Result<Vec<(String, Tensor)>, VerifyError> {
        let mut got: HashMap<String, Tensor> = match &self.inner {
            Inner::Native(engine) => engine
                .run([(self.input.clone(), input.clone())])?
                .blobs
                .into_iter()
                .collect(),
            Inner::F16(engine) => engine
                .run([(self.input.clone(), input.clone())])?
                .outputs
                .blobs
                .into_iter()
                .collect(),
            Inner::Tract { model, tensors } => {
                let by_tensor: HashMap<String, Tensor> = model
                    .run(std::slice::from_ref(input))?
                    .into_iter()
                    .collect();
                self.want
                    .iter()
                    .filter_map(|b| {
                        let t = tensors.get(b).unwrap_or(b);
                        by_tensor.get(t).map(|v| (b.clone(), v.clone()))
                    })
                    .collect()
            }
        };
        Ok(self
            .want
            .iter()
            .filter_map(|b| got.remove(b).map(|t| (b.clone(), t)))
            .collect())
    }
}

/// Runs `model` with `engine` on one input batch and returns its outputs in order: the
/// entry point for `run` and `bench`. `threads` 0 uses every core.
pub fn run_model(
    engine: EngineKind,
    model: &Model,
    input: &Tensor,
    threads: usize,
) -> Result<Vec<(String, Tensor)>, VerifyError> {
    let side = Side::new(model, engine, &input.shape)?;
    let runner = side.runner(&[], threads)?;
    let mut out = runner.run(input)?;
    out.retain(|(n, _)| side.outputs.contains(n));
    Ok(out)
}
