//! ONNX → IR. Reads models written by this crate and by other tools (PyTorch, the `onnx`
//! helper API): initializers inline or in external data, `Constant` nodes, the op set listed
//! in [`nodes`], and the helper-node groups the exporter writes ([`groups`]), which fold back
//! into single Caffe layers.
//!
//! Every ONNX node must map onto a Caffe layer with exactly the same arithmetic; when it
//! cannot (asymmetric padding, an AVE divisor Caffe does not use, an unsupported op), the
//! error names the node and the op type. Graph inputs need static shapes: a dynamic
//! dimension must be fixed by the caller ([`ImportOptions::input_shapes`]).

mod groups;
mod nodes;

use super::pb::{type_proto, ModelProto, NodeProto};
use super::tensor::{checked_dims, read_const, Const};
use super::{node_label, OnnxError, OnnxResult, CAFFE_NAMES_KEY, MAX_ELEMENTS};
use crate::ir::{InputSpec, IrError, Layer, Net, Tensor};
use prost::Message;
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// Options for [`import_with`].
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Shapes that replace the declared shapes of graph inputs (by name); required for
    /// inputs with dynamic dimensions such as a symbolic batch size.
    pub input_shapes: HashMap<String, Vec<usize>>,
}

/// Reads and decodes an ONNX file (no interpretation yet).
pub fn read_model(path: &Path) -> OnnxResult<ModelProto> {
    let bytes = std::fs::read(path).map_err(|source| OnnxError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    ModelProto::decode(bytes.as_slice()).map_err(|e| OnnxError::from(e).in_file(path))
}

/// Imports an ONNX file with the shapes it declares.
pub fn import(path: &Path) -> OnnxResult<Net> {
    import_with(path, &ImportOptions::default())
}

/// Imports an ONNX file; external data is resolved next to it.
pub fn import_with(path: &Path, opts: &ImportOptions) -> OnnxResult<Net> {
    let model = read_model(path)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    import_model(&model, Some(dir), opts).map_err(|e| e.in_file(path))
}

/// Imports a decoded model. `model_dir` resolves external data (`None`: none allowed).
pub fn import_model(
    model: &ModelProto,
    model_dir: Option<&Path>,
    opts: &ImportOptions,
) -> OnnxResult<Net> {
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| OnnxError::Graph("the model has no graph".into()))?;
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .unwrap_or(super::OPSET_VERSION);

    let mut ctx = Ctx {
        model_dir,
        opset,
        consts: HashMap::new(),
        shapes: HashMap::new(),
        layers: Vec::new(),
        layer_names: HashSet::new(),
        consumers: HashMap::new(),
    };
    for t in &graph.initializer {
        ctx.consts.insert(t.name.clone(), read_const(t, model_dir)?);
    }
    for n in &graph.node {
        for i in n.input.iter().filter(|i| !i.is_empty()) {
            *ctx.consumers.entry(i.clone()).or_default() += 1;
        }
    }
    for o in &graph.output {
        *ctx.consumers.entry(o.name.clone()).or_default() += 1;
    }

    let mut net = Net {
        name: graph.name.clone(),
        ..Default::default()
    };
    let declared: HashSet<&str> = graph.input.iter().map(|i| i.name.as_str()).collect();
    if let Some(unknown) = opts
        .input_shapes
        .keys()
        .find(|k| !declared.contains(k.as_str()) || ctx.consts.contains_key(*k))
    {
        return Err(OnnxError::Graph(format!(
            "no graph input named '{unknown}' (inputs: {})",
            graph
                .input
                .iter()
                .filter(|i| !ctx.consts.contains_key(&i.name))
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let declared_by_us = super::declared_input_shapes(model);
    for input in &graph.input {
        if ctx.consts.contains_key(&input.name) {
            continue; // IR < 4 lists initializers among the inputs
        }
        let shape = match (
            opts.input_shapes.get(&input.name),
            declared_by_us.get(&input.name),
        ) {
            (Some(s), _) | (None, Some(s)) => s.clone(),
            (None, None) => declared_shape(input)?,
        };
        let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        checked_dims(&input.name, &dims)?;
        ctx.shapes.insert(input.name.clone(), shape.clone());
        net.inputs.push(InputSpec {
            name: input.name.clone(),
            shape,
        });
    }

    let nodes = &graph.node;
    let first_index: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .rev()
        .filter(|(_, n)| !n.name.is_empty())
        .map(|(i, n)| (n.name.as_str(), i))
        .collect();
    let mut i = 0;
    while i < nodes.len() {
        if !nodes[i].domain.is_empty() && nodes[i].domain != "ai.onnx" {
            return Err(OnnxError::UnsupportedOp {
                node: node_label(&nodes[i]),
                op_type: nodes[i].op_type.clone(),
                hint: format!(" in domain '{}'", nodes[i].domain),
            });
        }
        if let Some(end) = group_end(nodes, i, &first_index) {
            if groups::fold(&mut ctx, &nodes[i..end], &nodes[end])? {
                i = end + 1;
                continue;
            }
        }
        nodes::translate(&mut ctx, &nodes[i])?;
        i += 1;
    }

    for o in &graph.output {
        if !ctx.shapes.contains_key(&o.name) {
            return Err(OnnxError::Graph(format!(
                "graph output '{}' is not computed by any supported node (constant outputs are not supported)",
                o.name
            )));
        }
    }
    net.layers = ctx.layers;
    apply_caffe_names(model, &mut net);
    net.infer_shapes()?;
    Ok(net)
}

/// If node `i` is a helper `L/role` of a later node named `L` and every node in between is
/// a helper of `L` too, returns the index of `L`.
fn group_end(nodes: &[NodeProto], i: usize, first_index: &HashMap<&str, usize>) -> Option<usize> {
    let (owner, _) = nodes[i].name.rsplit_once('/')?;
    let end = *first_index.get(owner)?;
    if end <= i {
        return None;
    }
    let prefix = format!("{owner}/");
    nodes[i..end]
        .iter()
        .all(|n| {
            n.name
                .strip_prefix(&prefix)
                .is_some_and(|r| !r.contains('/'))
        })
        .then_some(end)
}

fn declared_shape(input: &super::pb::ValueInfoProto) -> OnnxResult<Vec<usize>> {
    use super::pb::tensor_shape_proto::dimension::Value;
    let tensor = match input.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(t)) => t,
        None => {
            return Err(OnnxError::Graph(format!(
                "graph input '{}' has no tensor type",
                input.name
            )))
        }
    };
    use super::pb::tensor_proto::DataType;
    if tensor.elem_type != DataType::Float as i32 && tensor.elem_type != 0 {
        return Err(OnnxError::Graph(format!(
            "graph input '{}' has element type {}, only float is supported",
            input.name,
            DataType::try_from(tensor.elem_type)
                .map(|d| d.as_str_name())
                .unwrap_or("?")
        )));
    }
    let dims = tensor
        .shape
        .as_ref()
        .map(|s| s.dim.as_slice())
        .unwrap_or(&[]);
    let shown = || {
        dims.iter()
            .map(|d| match &d.value {
                Some(Value::DimValue(v)) if *v > 0 => v.to_string(),
                Some(Value::DimParam(p)) if !p.is_empty() => p.clone(),
                _ => "?".into(),
            })
            .collect::<Vec<_>>()
            .join("x")
    };
    if tensor.shape.is_none() {
        return Err(OnnxError::DynamicInput {
            input: input.name.clone(),
            dim: 0,
            shape: "unknown rank".into(),
        });
    }
    dims.iter()
        .enumerate()
        .map(|(k, d)| match d.value {
            Some(Value::DimValue(v)) if v > 0 => Ok(v as usize),
            _ => Err(OnnxError::DynamicInput {
                input: input.name.clone(),
                dim: k,
                shape: shown(),
            }),
        })
        .collect()
}

fn apply_caffe_names(model: &ModelProto, net: &mut Net) {
    let Some(entry) = model
        .metadata_props
        .iter()
        .find(|e| e.key == CAFFE_NAMES_KEY)
    else {
        return;
    };
    let Ok(map) = serde_json::from_str::<HashMap<String, String>>(&entry.value) else {
        return;
    };
    for l in &mut net.layers {
        for (t, c) in l.tops.iter().zip(l.caffe_tops.iter_mut()) {
            if let Some(name) = map.get(t) {
                *c = name.clone();
            }
        }
    }
}

/// Import state: constants, IR blob shapes and the layers built so far.
pub(crate) struct Ctx<'a> {
    pub model_dir: Option<&'a Path>,
    pub opset: i64,
    pub consts: HashMap<String, Const>,
    pub shapes: HashMap<String, Vec<usize>>,
    pub layers: Vec<Layer>,
    pub layer_names: HashSet<String>,
    /// Uses of each tensor by nodes, plus one when it is a graph output.
    pub consumers: HashMap<String, usize>,
}

impl Ctx<'_> {
    /// The constant behind input `i` of `node`, if that input is one.
    pub fn konst(&self, node: &NodeProto, i: usize) -> Option<&Const> {
        node.input.get(i).and_then(|n| self.consts.get(n))
    }

    /// Input `i` as a required constant.
    pub fn const_input(&self, node: &NodeProto, i: usize, what: &str) -> OnnxResult<&Const> {
        let name = node
            .input
            .get(i)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| OnnxError::node(node, format!("missing input {i} ({what})")))?;
        self.consts.get(name).ok_or_else(|| {
            OnnxError::node(
                node,
                format!("input {i} ({what}) '{name}' must be an initializer or constant"),
            )
        })
    }

    /// Input `i` as a computed blob (not a constant); returns its name and shape.
    pub fn data_input(&self, node: &NodeProto, i: usize) -> OnnxResult<(String, Vec<usize>)> {
        let name = node
            .input
            .get(i)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| OnnxError::node(node, format!("missing input {i}")))?;
        self.blob(node, name).map(|s| (name.clone(), s))
    }

    /// The shape of a computed blob.
    pub fn blob(&self, node: &NodeProto, name: &str) -> OnnxResult<Vec<usize>> {
        if let Some(s) = self.shapes.get(name) {
            return Ok(s.clone());
        }
        Err(OnnxError::node(
            node,
            if self.consts.contains_key(name) {
                format!("input '{name}' is a constant where a computed tensor is expected")
            } else {
                format!("input '{name}' is not produced by any earlier node or graph input")
            },
        ))
    }

    /// True when `tensor` is used exactly once (and is not a graph output).
    pub fn single_use(&self, tensor: &str) -> bool {
        self.consumers.get(tensor).copied().unwrap_or(0) == 1
    }

    /// A unique layer name for a node: its name, or its first output when unnamed.
    pub fn layer_name(&self, node: &NodeProto) -> String {
        let base = if node.name.is_empty() {
            node.output
                .first()
                .cloned()
                .unwrap_or_else(|| "node".into())
        } else {
            node.name.clone()
        };
        let mut name = base.clone();
        let mut k = 1;
        while self.layer_names.contains(&name) {
            name = format!("{base}_{k}");
            k += 1;
        }
        name
    }

    /// Appends a layer built from `node`, inferring (and size-checking) its top shapes.
    pub fn push(&mut self, node: &NodeProto, layer: Layer) -> OnnxResult<()> {
        let bottoms = layer
            .bottoms
            .iter()
            .map(|b| self.blob(node, b))
            .collect::<OnnxResult<Vec<_>>>()?;
        let tops = layer
            .op
            .output_shapes(&bottoms, layer.tops.len())
            .map_err(|e| OnnxError::node(node, e.0))?;
        Net::default()
            .check_weights(&layer, &bottoms)
            .map_err(|e| OnnxError::node(node, e.to_string()))?;
        for (t, s) in layer.tops.iter().zip(tops) {
            if s.iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .is_none_or(|n| n > MAX_ELEMENTS)
            {
                return Err(OnnxError::node(
                    node,
                    format!("output '{t}' would have shape {s:?}, beyond {MAX_ELEMENTS} elements"),
                ));
            }
            if self.shapes.insert(t.clone(), s).is_some() {
                return Err(OnnxError::Ir(IrError::Duplicate(format!(
                    "tensor '{t}' is produced twice"
                ))));
            }
        }
        self.layer_names.insert(layer.name.clone());
        self.layers.push(layer);
        Ok(())
    }
}

/// A layer with the given weights; tops keep their ONNX names.
pub(crate) fn layer(
    name: String,
    op: crate::ir::Op,
    bottoms: Vec<String>,
    top: &str,
    blobs: Vec<Tensor>,
) -> Layer {
    let mut l = Layer::new(name, op, bottoms, vec![top.to_string()]);
    l.blobs = blobs;
    l
}
