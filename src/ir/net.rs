//! `Net` and `Layer`: the graph structure, blob naming and shape inference.

use super::{Op, Tensor};
use std::collections::{HashMap, HashSet};

/// Caffe's phase; a deploy net is a TEST net.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    /// Training: Dropout active, Data layers crop and mirror randomly.
    Train,
    /// Testing and deployment.
    #[default]
    Test,
}

/// Precision the weights are known to hold. Graph files store fp16, so a net read from one
/// is marked `F16` (its f32 values are exactly representable in fp16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightPrecision {
    /// Full f32 weights.
    #[default]
    F32,
    /// Values rounded to fp16.
    F16,
}

/// Per-parameter-blob training settings (Caffe `ParamSpec`, or V1 `blobs_lr`/`weight_decay`).
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    /// Sharing name (empty when not shared).
    pub name: String,
    /// Learning-rate multiplier.
    pub lr_mult: f32,
    /// Weight-decay multiplier.
    pub decay_mult: f32,
}

impl Default for ParamSpec {
    fn default() -> Self {
        Self {
            name: String::new(),
            lr_mult: 1.0,
            decay_mult: 1.0,
        }
    }
}

/// A declared network input.
#[derive(Debug, Clone, PartialEq)]
pub struct InputSpec {
    /// Blob name.
    pub name: String,
    /// Shape, N×C×H×W for images.
    pub shape: Vec<usize>,
}

/// One layer: an op, its bottoms and tops (IR blob names), and its learned blobs.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    /// Layer name (unique in the net).
    pub name: String,
    /// The operator and its parameters.
    pub op: Op,
    /// IR names of the input blobs.
    pub bottoms: Vec<String>,
    /// IR names of the output blobs (unique across the net).
    pub tops: Vec<String>,
    /// The Caffe blob names of the tops as written in the source file; they differ from
    /// `tops` for in-place layers.
    pub caffe_tops: Vec<String>,
    /// Learned blobs in Caffe's order (weights, then bias; BatchNorm: mean, var, factor).
    pub blobs: Vec<Tensor>,
    /// Training settings per learned blob; may be shorter than `blobs` (defaults apply).
    pub params: Vec<ParamSpec>,
    /// Loss weights of the tops (Caffe `loss_weight`), empty for the default.
    pub loss_weight: Vec<f32>,
    /// Phase restriction kept from `include { phase: … }`, for train/test nets.
    pub phase: Option<Phase>,
}

impl Layer {
    /// A layer whose tops keep their Caffe names.
    pub fn new(name: impl Into<String>, op: Op, bottoms: Vec<String>, tops: Vec<String>) -> Self {
        Self {
            name: name.into(),
            op,
            bottoms,
            caffe_tops: tops.clone(),
            tops,
            blobs: Vec::new(),
            params: Vec::new(),
            loss_weight: Vec::new(),
            phase: None,
        }
    }

    /// The settings for learned blob `i` (Caffe defaults when not given).
    pub fn param(&self, i: usize) -> ParamSpec {
        self.params.get(i).cloned().unwrap_or_default()
    }
}

/// Errors in the structure of a net; each names the layer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IrError {
    /// A bottom that no earlier layer or input produces.
    #[error("layer '{layer}': bottom '{bottom}' is not produced by any earlier layer or input")]
    UnknownBottom {
        /// Layer name.
        layer: String,
        /// Missing blob.
        bottom: String,
    },
    /// A shape rule failed.
    #[error("layer '{layer}' ({kind}): {msg}")]
    Shape {
        /// Layer name.
        layer: String,
        /// Caffe type.
        kind: String,
        /// What went wrong.
        msg: String,
    },
    /// Learned blobs whose count or shapes do not fit the layer.
    #[error("layer '{layer}': weight blob {index} has shape {found:?}, expected {expected:?}")]
    WeightShape {
        /// Layer name.
        layer: String,
        /// Blob index.
        index: usize,
        /// Shape the layer needs.
        expected: Vec<usize>,
        /// Shape found.
        found: Vec<usize>,
    },
    /// Two producers for one IR blob, or two layers with one name.
    #[error("{0}")]
    Duplicate(String),
}

/// Shapes of every blob, by IR name.
pub type BlobShapes = HashMap<String, Vec<usize>>;

/// A network: inputs, then layers in execution order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Net {
    /// Net name (`NetParameter.name`).
    pub name: String,
    /// Inputs fed by the caller.
    pub inputs: Vec<InputSpec>,
    /// Layers in topological (file) order.
    pub layers: Vec<Layer>,
    /// Precision of the stored weights.
    pub precision: WeightPrecision,
}

impl Net {
    /// Looks a layer up by name.
    pub fn layer(&self, name: &str) -> Option<&Layer> {
        self.layers.iter().find(|l| l.name == name)
    }

    /// Mutable lookup by name.
    pub fn layer_mut(&mut self, name: &str) -> Option<&mut Layer> {
        self.layers.iter_mut().find(|l| l.name == name)
    }

    /// Blobs produced but never consumed: the net's outputs, as Caffe's `output_blobs()`.
    pub fn outputs(&self) -> Vec<String> {
        let consumed: HashSet<&str> = self
            .layers
            .iter()
            .flat_map(|l| l.bottoms.iter().map(String::as_str))
            .collect();
        let mut out = Vec::new();
        for l in &self.layers {
            for t in &l.tops {
                if !consumed.contains(t.as_str()) && !out.contains(t) {
                    out.push(t.clone());
                }
            }
        }
        out
    }

    /// The Caffe name of an IR blob (differs for the tops of in-place layers).
    pub fn caffe_name_of<'a>(&'a self, blob: &'a str) -> &'a str {
        for l in &self.layers {
            if let Some(i) = l.tops.iter().position(|t| t == blob) {
                return l.caffe_tops.get(i).map(String::as_str).unwrap_or(blob);
            }
        }
        blob
    }

    /// Checks that every bottom is produced earlier, that blob and layer names are unique,
    /// and infers every blob's shape with Caffe's rules. Also checks that learned blobs,
    /// where present, have the shapes the layer needs.
    pub fn infer_shapes(&self) -> Result<BlobShapes, IrError> {
        let mut shapes: BlobShapes = HashMap::new();
        for i in &self.inputs {
            if shapes.insert(i.name.clone(), i.shape.clone()).is_some() {
                return Err(IrError::Duplicate(format!(
                    "input '{}' declared twice",
                    i.name
                )));
            }
        }
        let mut names = HashSet::new();
        for l in &self.layers {
            if !names.insert(l.name.as_str()) {
                return Err(IrError::Duplicate(format!(
                    "two layers are named '{}'",
                    l.name
                )));
            }
            let mut bottoms = Vec::with_capacity(l.bottoms.len());
            for b in &l.bottoms {
                match shapes.get(b) {
                    Some(s) => bottoms.push(s.clone()),
                    None => {
                        return Err(IrError::UnknownBottom {
                            layer: l.name.clone(),
                            bottom: b.clone(),
                        })
                    }
                }
            }
            let tops =
                l.op.output_shapes(&bottoms, l.tops.len())
                    .map_err(|e| IrError::Shape {
                        layer: l.name.clone(),
                        kind: l.op.caffe_type().into(),
                        msg: e.0,
                    })?;
            self.check_weights(l, &bottoms)?;
            for (t, s) in l.tops.iter().zip(tops) {
                if shapes.insert(t.clone(), s).is_some() {
                    return Err(IrError::Duplicate(format!(
                        "layer '{}': blob '{}' has two producers",
                        l.name, t
                    )));
                }
            }
        }
        Ok(shapes)
    }

    /// Verifies a layer's learned blobs against the shapes its op expects. Like Caffe's
    /// `ShapeEquals`, a legacy 4-D blob matches when its dims, counted from the end, agree
    /// and the extra leading dims are 1.
    pub fn check_weights(&self, l: &Layer, bottoms: &[Vec<usize>]) -> Result<(), IrError> {
        if l.blobs.is_empty() {
            return Ok(());
        }
        let expected = l.op.weight_shapes(bottoms);
        if l.blobs.len() != expected.len() {
            return Err(IrError::Shape {
                layer: l.name.clone(),
                kind: l.op.caffe_type().into(),
                msg: format!(
                    "has {} weight blobs, expected {}",
                    l.blobs.len(),
                    expected.len()
                ),
            });
        }
        for (i, (b, e)) in l.blobs.iter().zip(&expected).enumerate() {
            if !shape_matches(&b.shape, e) {
                return Err(IrError::WeightShape {
                    layer: l.name.clone(),
                    index: i,
                    expected: e.clone(),
                    found: b.shape.clone(),
                });
            }
        }
        Ok(())
    }

    /// Sets the leading (batch) dimension of every fed blob: declared inputs, `Input` layer
    /// shapes and `Data` batch sizes. Caffe nets declare a batch (1 for age, 10 for gender in
    /// the original deploy files); engines run whatever batch they are given.
    pub fn set_batch(&mut self, batch: usize) {
        for i in &mut self.inputs {
            if let Some(d) = i.shape.first_mut() {
                *d = batch;
            }
        }
        for l in &mut self.layers {
            match &mut l.op {
                Op::Input { shapes } => {
                    for s in shapes {
                        if let Some(d) = s.first_mut() {
                            *d = batch;
                        }
                    }
                }
                Op::Data(p) => p.batch_size = batch,
                _ => {}
            }
        }
    }

    /// Total number of learned values.
    pub fn param_count(&self) -> usize {
        self.layers
            .iter()
            .flat_map(|l| &l.blobs)
            .map(Tensor::len)
            .sum()
    }

    /// The deploy (TEST) view: train-only layers (Data, loss, accuracy) removed.
    pub fn without_train_layers(&self) -> Net {
        let mut n = self.clone();
        n.layers
            .retain(|l| !l.op.is_train_only() && l.phase != Some(Phase::Train));
        n
    }
}

/// Shape equality with Caffe's legacy rule: compare from the end, extra leading dims are 1.
pub fn shape_matches(found: &[usize], expected: &[usize]) -> bool {
    if found == expected {
        return true;
    }
    let strip = |s: &[usize]| -> Vec<usize> {
        let first = s.iter().position(|&d| d != 1).unwrap_or(s.len());
        s[first..].to_vec()
    };
    found.iter().product::<usize>() == expected.iter().product::<usize>()
        && strip(found) == strip(expected)
}
