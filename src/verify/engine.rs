//! Models and the engines that run them, behind one interface for `verify`, `run` and
//! `bench`.
//!
//! A [`Model`] is a loaded file (Caffe prototxt + caffemodel, or ONNX) or an in-memory
//! [`Net`]. A [`Side`] is a model bound to an [`EngineKind`] and an input shape: it knows
//! the blobs it can report (in execution order) and its outputs. [`Side::runner`] plans the
//! engine for the blobs wanted. New engines (the fp16 NCS emulation) add an [`EngineKind`]
//! variant and one arm in [`Side::new`] and [`Side::runner`].

use super::VerifyError;
use crate::exec::{Engine, ExecOptions};
use crate::ir::{Net, Phase, Tensor};
use crate::onnx::pb::ModelProto;
use crate::onnx::tract_engine::{set_threads, TractModel};
use crate::onnx::{self, ImportOptions};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

/// The engine that runs a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// The native f32 engine on the IR (ONNX files are imported first).
    Native,
    /// tract-onnx on the ONNX model (Caffe nets are exported first).
    Tract,
}

impl EngineKind {
    /// The CLI name.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Native => "native",
            EngineKind::Tract => "tract",
        }
    }
}

/// A loaded model.
#[derive(Debug, Clone)]
pub enum Model {
    /// A Caffe net (deploy prototxt with weights, or a caffemodel alone).
    Caffe {
        /// The prototxt or caffemodel path.
        path: PathBuf,
        /// The TEST-phase net.
        net: Net,
    },
    /// An ONNX file, not yet interpreted (its input shapes may be dynamic).
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
    /// Loads `path` by extension: `.onnx`; `.prototxt` (with `weights`); `.caffemodel`.
    pub fn load(path: &Path, weights: Option<&Path>) -> Result<Self, VerifyError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        match ext.as_str() {
            "onnx" => {
                if weights.is_some() {
                    return Err(VerifyError::Usage(format!(
                        "{}: an ONNX model holds its own weights; drop the weights option",
                        path.display()
                    )));
                }
                Ok(Model::Onnx {
                    path: path.to_path_buf(),
                    proto: Box::new(onnx::import::read_model(path)?),
                })
            }
            "prototxt" | "txt" => Ok(Model::Caffe {
                path: path.to_path_buf(),
                net: crate::caffe::load_net(path, weights, Phase::Test)?,
            }),
            "caffemodel" => {
                if weights.is_some() {
                    return Err(VerifyError::Usage(format!(
                        "{}: a caffemodel is loaded alone; give the deploy prototxt as MODEL and the caffemodel as weights",
                        path.display()
                    )));
                }
                Ok(Model::Caffe {
                    path: path.to_path_buf(),
                    net: crate::caffe::load_caffemodel_net(path)?,
                })
            }
            _ => Err(VerifyError::Usage(format!(
                "{}: unknown model format (expected .prototxt, .caffemodel or .onnx)",
                path.display()
            ))),
        }
    }

    /// A short label for reports: the file, or the net's name.
    pub fn label(&self) -> String {
        match self {
            Model::Caffe { path, .. } | Model::Onnx { path, .. } => path.display().to_string(),
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
            Model::Caffe { net, .. } | Model::Net(net) => from_net(net),
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

fn with_input_shape(net: &Net, shape: &[usize]) -> Net {
    let mut n = net.clone();
    if let Some(i) = n.inputs.first_mut() {
        i.shape = shape.to_vec();
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
            (Model::Caffe { net, .. } | Model::Net(net), EngineKind::Native) => {
                let net = with_input_shape(net, input_shape);
                let order = net_order(&net);
                let outputs = net.without_train_layers().outputs();
                (Source::Net(net), order, outputs)
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
            (Model::Caffe { net, .. } | Model::Net(net), EngineKind::Tract) => {
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

    /// "MODEL [engine]".
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
