//! IR → ONNX (opset 13) with Caffe's semantics kept exactly.
//!
//! Each layer becomes one node named after it, or a short chain whose helper nodes are named
//! `<layer>/<role>` (see the module docs of [`crate::onnx`]). Mapping:
//! - Convolution → Conv; InnerProduct → Flatten + Gemm(transB = 1), or Reshape + MatMul
//!   (+ Add) when `axis ≠ 1`.
//! - Pooling → MaxPool/AveragePool with explicit pads reproducing Caffe's ceil rule
//!   ([`super::pool_map`]); AVE whose windows overhang `H + p` → Pad + AveragePool + Mul by a
//!   divisor correction, because ONNX runtimes disagree on that divisor.
//! - LRN ACROSS_CHANNELS → LRN with `bias = k`; WITHIN_CHANNEL → Mul(x, x), AveragePool
//!   (`count_include_pad`, Caffe's divisor n²), Mul α, Add 1, Pow −β, Mul x.
//! - ReLU → Relu or LeakyRelu; PReLU → PRelu with slopes `[C, 1, …]`; Sigmoid, TanH,
//!   Softmax(axis), Concat(axis); Eltwise SUM → Add (Mul by coefficients first), PROD → Mul,
//!   MAX → Max; Flatten → Flatten or Reshape; Reshape → Reshape; BatchNorm →
//!   BatchNormalization (statistics divided by Caffe's scale factor); Scale → Mul (+ Add).
//! - Dropout and Split are identities at test time and disappear (their consumers read the
//!   bottom); only when their top is a net output do they stay, as Dropout or Identity,
//!   so that output names are kept. Data, loss and accuracy layers are dropped.

use super::attr::{float, int, ints, to_i64s};
use super::pb::tensor_proto::DataType;
use super::pb::{
    tensor_shape_proto, type_proto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use super::pool_map::{divisor_correction, AxisPlan};
use super::tensor::{f32_proto, i64_proto};
use super::{
    OnnxError, OnnxResult, BATCH_SYMBOL, CAFFE_NAMES_KEY, INPUT_SHAPES_KEY, IR_VERSION,
    OPSET_VERSION,
};
use crate::ir::{Layer, Net, Op, Tensor};
use crate::ops::canonical_axis;
use crate::ops::deconv::DeconvParams;
use crate::ops::eltwise::EltwiseOp;
use crate::ops::lrn::NormRegion;
use crate::ops::pool::{PoolMethod, RoundMode};
use prost::Message;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

/// Exports a net (its deploy view: train-only layers are dropped) to an ONNX model with all
/// weights as initializers. Fails with the layer's name when a layer cannot keep Caffe's
/// semantics in ONNX or lacks its weights.
pub fn export(net: &Net) -> OnnxResult<ModelProto> {
    export_with_blob_map(net).map(|(m, _)| m)
}

/// [`export`], also returning for every IR blob of the deploy net the ONNX tensor that holds
/// its value: itself, or the bottom of the Dropout/Split chain that was removed. Used to
/// compare a native run with the exported model blob by blob.
pub fn export_with_blob_map(net: &Net) -> OnnxResult<(ModelProto, BTreeMap<String, String>)> {
    let net = net.without_train_layers();
    let shapes = net.infer_shapes()?;
    let outputs = net.outputs();
    let mut b = Builder::new();

    let mut graph_inputs = Vec::new();
    for i in &net.inputs {
        graph_inputs.push((i.name.clone(), i.shape.clone()));
    }
    for l in &net.layers {
        if let Op::Input { shapes: s } = &l.op {
            for (t, sh) in l.tops.iter().zip(s) {
                graph_inputs.push((t.clone(), sh.clone()));
            }
        }
    }
    for (name, _) in &graph_inputs {
        b.claim(name, "a graph input")?;
    }

    for l in &net.layers {
        if matches!(l.op, Op::Input { .. }) {
            continue;
        }
        let bottoms: Vec<String> = l.bottoms.iter().map(|x| b.resolve(x)).collect();
        let ctx = LayerCtx {
            layer: l,
            bottoms,
            in_shapes: l
                .bottoms
                .iter()
                .map(|x| shapes.get(x).cloned().unwrap_or_default())
                .collect(),
            out_shapes: l
                .tops
                .iter()
                .map(|x| shapes.get(x).cloned().unwrap_or_default())
                .collect(),
            is_output: l.tops.iter().map(|t| outputs.contains(t)).collect(),
        };
        emit_layer(&mut b, &ctx)?;
    }

    // The batch (dim 0) is symbolic so that other runtimes accept any batch, as Caffe
    // reshapes at run time; the declared shapes travel in the metadata for our importer.
    let batch = graph_inputs.first().and_then(|(_, s)| s.first().copied());
    let value_info = |name: &str, shape: &[usize], symbolic_batch: bool| {
        use tensor_shape_proto::dimension::Value;
        let dim = shape
            .iter()
            .enumerate()
            .map(|(i, &d)| tensor_shape_proto::Dimension {
                value: if i == 0 && symbolic_batch {
                    Some(Value::DimParam(BATCH_SYMBOL.into()))
                } else if i == 0 {
                    None
                } else {
                    Some(Value::DimValue(d as i64))
                },
                ..Default::default()
            })
            .collect();
        ValueInfoProto {
            name: name.to_string(),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: DataType::Float as i32,
                    shape: Some(TensorShapeProto { dim }),
                })),
                ..Default::default()
            }),
            ..Default::default()
        }
    };
    let mut caffe_names = BTreeMap::new();
    for l in &net.layers {
        for (i, t) in l.tops.iter().enumerate() {
            if let Some(c) = l
                .caffe_tops
                .get(i)
                .filter(|c| *c != t && b.produced.contains(t))
            {
                caffe_names.insert(t.clone(), c.clone());
            }
        }
    }
    let mut blob_map = BTreeMap::new();
    for (name, _) in &graph_inputs {
        blob_map.insert(name.clone(), name.clone());
    }
    for l in &net.layers {
        for t in &l.tops {
            blob_map.insert(t.clone(), b.resolve(t));
        }
    }
    let graph = GraphProto {
        name: if net.name.is_empty() {
            "net".into()
        } else {
            net.name.clone()
        },
        input: graph_inputs
            .iter()
            .map(|(n, s)| value_info(n, s, true))
            .collect(),
        output: outputs
            .iter()
            .map(|o| value_info(o, &shapes[o], shapes[o].first().copied() == batch))
            .collect(),
        node: b.nodes,
        initializer: b.initializers,
        ..Default::default()
    };
    let declared: BTreeMap<&str, &[usize]> = graph_inputs
        .iter()
        .map(|(n, s)| (n.as_str(), s.as_slice()))
        .collect();
    let mut metadata_props = vec![StringStringEntryProto {
        key: INPUT_SHAPES_KEY.into(),
        value: serde_json::to_string(&declared).unwrap_or_default(),
    }];
    if !caffe_names.is_empty() {
        metadata_props.push(StringStringEntryProto {
            key: CAFFE_NAMES_KEY.into(),
            value: serde_json::to_string(&caffe_names).unwrap_or_default(),
        });
    }
    let model = ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET_VERSION,
        }],
        producer_name: "agegender".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph),
        metadata_props,
        ..Default::default()
    };
    Ok((model, blob_map))
}

/// Exports `net` and writes the model atomically (temporary file, fsync, rename).
pub fn write_onnx(net: &Net, path: &Path) -> OnnxResult<()> {
    let model = export(net).map_err(|e| e.in_file(path))?;
    crate::util::atomic::atomic_write(path, &model.encode_to_vec())?;
    Ok(())
}

/// Nodes and initializers under construction, with the blob aliases of removed identity
/// layers and a check that every tensor name is produced once.
struct Builder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    names: HashSet<String>,
    produced: HashSet<String>,
    alias: HashMap<String, String>,
}

impl Builder {
    fn new() -> Self {
        Self {
            nodes: Vec::new(),
            initializers: Vec::new(),
            names: HashSet::new(),
            produced: HashSet::new(),
            alias: HashMap::new(),
        }
    }

    fn resolve(&self, blob: &str) -> String {
        let mut b = blob;
        while let Some(a) = self.alias.get(b) {
            b = a;
        }
        b.to_string()
    }

    fn claim(&mut self, name: &str, what: &str) -> OnnxResult<()> {
        if !self.names.insert(name.to_string()) {
            return Err(OnnxError::Graph(format!(
                "tensor name '{name}' ({what}) is used twice; rename the blob or layer"
            )));
        }
        Ok(())
    }

    fn node(
        &mut self,
        name: &str,
        op_type: &str,
        inputs: Vec<String>,
        output: &str,
        attribute: Vec<super::pb::AttributeProto>,
    ) -> OnnxResult<()> {
        self.claim(output, "a node output")?;
        self.produced.insert(output.to_string());
        self.nodes.push(NodeProto {
            name: name.into(),
            op_type: op_type.into(),
            input: inputs,
            output: vec![output.into()],
            attribute,
            ..Default::default()
        });
        Ok(())
    }

    fn init(&mut self, t: TensorProto) -> OnnxResult<String> {
        let name = t.name.clone();
        self.claim(&name, "an initializer")?;
        self.initializers.push(t);
        Ok(name)
    }

    fn init_f32(&mut self, name: &str, t: &Tensor) -> OnnxResult<String> {
        self.init(f32_proto(name, t))
    }

    fn scalar(&mut self, name: &str, v: f32) -> OnnxResult<String> {
        self.init_f32(
            name,
            &Tensor {
                shape: vec![],
                data: vec![v],
            },
        )
    }

    fn init_i64(&mut self, name: &str, values: &[i64]) -> OnnxResult<String> {
        self.init(i64_proto(name, &[values.len()], values))
    }
}

/// What one layer's emitter needs.
struct LayerCtx<'a> {
    layer: &'a Layer,
    bottoms: Vec<String>,
    in_shapes: Vec<Vec<usize>>,
    out_shapes: Vec<Vec<usize>>,
    is_output: Vec<bool>,
}

impl LayerCtx<'_> {
    fn err(&self, msg: impl Into<String>) -> OnnxError {
        OnnxError::Export {
            layer: self.layer.name.clone(),
            kind: self.layer.op.caffe_type().into(),
            msg: msg.into(),
        }
    }

    fn name(&self) -> &str {
        &self.layer.name
    }

    fn helper(&self, role: &str) -> String {
        format!("{}/{role}", self.layer.name)
    }

    fn top(&self) -> &str {
        &self.layer.tops[0]
    }

    /// Learned blob `i`, reshaped to the shape the op expects (legacy 4-D blobs included).
    fn blob(&self, i: usize) -> OnnxResult<Tensor> {
        let expected = self.layer.op.weight_shapes(&self.in_shapes);
        let t = self.layer.blobs.get(i).ok_or_else(|| {
            self.err(format!(
                "has {} weight blobs, needs {} (load the trained weights first)",
                self.layer.blobs.len(),
                expected.len()
            ))
        })?;
        let shape = expected.get(i).cloned().unwrap_or_else(|| t.shape.clone());
        t.clone().reshaped(&shape).ok_or_else(|| {
            self.err(format!(
                "weight blob {i} has shape {:?}, expected {shape:?}",
                t.shape
            ))
        })
    }
}

fn emit_layer(b: &mut Builder, c: &LayerCtx) -> OnnxResult<()> {
    let x = c.bottoms.first().cloned().unwrap_or_default();
    let rank = c.in_shapes.first().map(Vec::len).unwrap_or(0);
    match &c.layer.op {
        Op::Input { .. } => Ok(()),
        Op::Data(_) | Op::SoftmaxWithLoss(_) | Op::Accuracy(_) => {
            Err(c.err("train-only layer has no ONNX form; export the deploy net"))
        }
        // ConvTranspose's output size with explicit pads and no output_padding is Caffe's
        // deconvolution size, and its weight layout (C_in × C_out/group × kh × kw) is
        // Caffe's (ONNX operators.md, ConvTranspose).
        Op::Convolution(p) | Op::Deconvolution(DeconvParams(p)) => {
            let w = b.init_f32(&c.helper("weight"), &c.blob(0)?)?;
            let mut inputs = vec![x, w];
            if p.bias_term {
                inputs.push(b.init_f32(&c.helper("bias"), &c.blob(1)?)?);
            }
            let end = p.end_pad();
            let attrs = vec![
                ints("kernel_shape", &to_i64s(&p.kernel)),
                ints("strides", &to_i64s(&p.stride)),
                ints("pads", &to_i64s(&[p.pad[0], p.pad[1], end[0], end[1]])),
                ints("dilations", &to_i64s(&p.dilation)),
                int("group", p.group as i64),
            ];
            let kind = if matches!(c.layer.op, Op::Convolution(_)) {
                "Conv"
            } else {
                "ConvTranspose"
            };
            b.node(c.name(), kind, inputs, c.top(), attrs)
        }
        Op::Pooling(p) => emit_pool(b, c, p, x),
        Op::Lrn(p) => match p.region {
            NormRegion::AcrossChannels => b.node(
                c.name(),
                "LRN",
                vec![x],
                c.top(),
                vec![
                    int("size", p.local_size as i64),
                    float("alpha", p.alpha),
                    float("beta", p.beta),
                    float("bias", p.k),
                ],
            ),
            NormRegion::WithinChannel => {
                // Caffe: x · (1 + α · avg_{n×n}(x²))^−β, the average over a zero-padded
                // window with divisor n² (stride 1, pad (n−1)/2 never overhangs).
                let n = p.local_size;
                let pad = (n - 1) / 2;
                let sq = c.helper("square");
                b.node(&sq, "Mul", vec![x.clone(), x.clone()], &sq, vec![])?;
                let pool = c.helper("pool");
                b.node(
                    &pool,
                    "AveragePool",
                    vec![sq],
                    &pool,
                    vec![
                        ints("kernel_shape", &to_i64s(&[n, n])),
                        ints("strides", &[1, 1]),
                        ints("pads", &to_i64s(&[pad, pad, pad, pad])),
                        int("count_include_pad", 1),
                    ],
                )?;
                let alpha = b.scalar(&c.helper("alpha"), p.alpha)?;
                let scaled = c.helper("scale");
                b.node(&scaled, "Mul", vec![pool, alpha], &scaled, vec![])?;
                let one = b.scalar(&c.helper("one"), 1.0)?;
                let shifted = c.helper("shift");
                b.node(&shifted, "Add", vec![scaled, one], &shifted, vec![])?;
                let nb = b.scalar(&c.helper("neg_beta"), -p.beta)?;
                let pw = c.helper("pow");
                b.node(&pw, "Pow", vec![shifted, nb], &pw, vec![])?;
                b.node(c.name(), "Mul", vec![x, pw], c.top(), vec![])
            }
        },
        Op::Relu(p) => {
            if p.negative_slope == 0.0 {
                b.node(c.name(), "Relu", vec![x], c.top(), vec![])
            } else {
                b.node(
                    c.name(),
                    "LeakyRelu",
                    vec![x],
                    c.top(),
                    vec![float("alpha", p.negative_slope)],
                )
            }
        }
        Op::PRelu(p) => {
            let slope = c.blob(0)?;
            let shape = if p.channel_shared {
                vec![1]
            } else {
                // Unidirectional broadcasting aligns from the right: [C, 1, …, 1].
                let mut s = vec![slope.len()];
                s.extend(std::iter::repeat_n(1, rank.saturating_sub(2)));
                s
            };
            let slope = slope
                .reshaped(&shape)
                .ok_or_else(|| c.err("slope count does not match the channels"))?;
            let s = b.init_f32(&c.helper("slope"), &slope)?;
            b.node(c.name(), "PRelu", vec![x, s], c.top(), vec![])
        }
        Op::Sigmoid => b.node(c.name(), "Sigmoid", vec![x], c.top(), vec![]),
        Op::TanH => b.node(c.name(), "Tanh", vec![x], c.top(), vec![]),
        Op::InnerProduct(p) => {
            let in_shape = &c.in_shapes[0];
            let axis = canonical_axis(p.axis, rank).map_err(|e| c.err(e.0))?;
            let w = c.blob(0)?;
            if axis == 1 {
                let flat = if rank > 2 {
                    let f = c.helper("flatten");
                    b.node(&f, "Flatten", vec![x], &f, vec![int("axis", 1)])?;
                    f
                } else {
                    x
                };
                let wn = b.init_f32(&c.helper("weight"), &w)?;
                let mut inputs = vec![flat, wn];
                if p.bias_term {
                    inputs.push(b.init_f32(&c.helper("bias"), &c.blob(1)?)?);
                }
                b.node(
                    c.name(),
                    "Gemm",
                    inputs,
                    c.top(),
                    vec![int("transB", if p.transpose { 0 } else { 1 })],
                )
            } else {
                // MatMul needs W as [K, N].
                let k: usize = in_shape[axis..].iter().product();
                let wkn = if p.transpose {
                    w
                } else {
                    transpose_2d(&w, p.num_output, k)
                };
                let flat = if rank != axis + 1 {
                    // Copy the leading dims (0) and infer K (−1): any batch size works.
                    let mut target = vec![0i64; axis];
                    target.push(-1);
                    let shape = b.init_i64(&c.helper("shape"), &target)?;
                    let r = c.helper("reshape");
                    b.node(&r, "Reshape", vec![x, shape], &r, vec![])?;
                    r
                } else {
                    x
                };
                let wn = b.init_f32(&c.helper("weight"), &wkn)?;
                if p.bias_term {
                    let mm = c.helper("matmul");
                    b.node(&mm, "MatMul", vec![flat, wn], &mm, vec![])?;
                    let bias = b.init_f32(&c.helper("bias"), &c.blob(1)?)?;
                    b.node(c.name(), "Add", vec![mm, bias], c.top(), vec![])
                } else {
                    b.node(c.name(), "MatMul", vec![flat, wn], c.top(), vec![])
                }
            }
        }
        Op::Dropout(p) => {
            if c.is_output[0] {
                let ratio = b.scalar(&c.helper("ratio"), p.ratio)?;
                b.node(c.name(), "Dropout", vec![x, ratio], c.top(), vec![])
            } else {
                b.alias.insert(c.top().to_string(), x);
                Ok(())
            }
        }
        Op::Split => {
            for (i, t) in c.layer.tops.iter().enumerate() {
                if c.is_output[i] {
                    let name = if i == 0 {
                        c.name().to_string()
                    } else {
                        c.helper(&format!("copy{i}"))
                    };
                    b.node(&name, "Identity", vec![x.clone()], t, vec![])?;
                } else {
                    b.alias.insert(t.clone(), x.clone());
                }
            }
            Ok(())
        }
        Op::Softmax(p) => {
            let axis = canonical_axis(p.axis, rank).map_err(|e| c.err(e.0))?;
            b.node(
                c.name(),
                "Softmax",
                vec![x],
                c.top(),
                vec![int("axis", axis as i64)],
            )
        }
        Op::Concat(p) => {
            let axis = canonical_axis(p.axis, rank).map_err(|e| c.err(e.0))?;
            b.node(
                c.name(),
                "Concat",
                c.bottoms.clone(),
                c.top(),
                vec![int("axis", axis as i64)],
            )
        }
        Op::Eltwise(p) => emit_eltwise(b, c, p),
        Op::Flatten(p) => {
            let s = canonical_axis(p.axis, rank).map_err(|e| c.err(e.0))?;
            let e = canonical_axis(p.end_axis, rank).map_err(|e| c.err(e.0))?;
            if s == 1 && e + 1 == rank {
                b.node(c.name(), "Flatten", vec![x], c.top(), vec![int("axis", 1)])
            } else {
                // Leading dims are copied (0), the merged one inferred (−1), the trailing
                // ones written out (ONNX's 0 copies the same index, which shifts there).
                let mut target = vec![0i64; s];
                target.push(-1);
                target.extend(to_i64s(&c.in_shapes[0][e + 1..]));
                let shape = b.init_i64(&c.helper("shape"), &target)?;
                b.node(c.name(), "Reshape", vec![x, shape], c.top(), vec![])
            }
        }
        Op::Reshape(p) => {
            // ONNX Reshape's 0 copies the input dim at the same index and −1 infers one
            // dim, exactly Caffe's rules when Caffe reshapes from axis 0 to the end. For a
            // partial reshape, the axes before it are copied and those after it written.
            let dims = if p.axis == 0 && p.num_axes == -1 {
                p.dims.clone()
            } else {
                let out = &c.out_shapes[0];
                let start = out.len() - (rank - reshape_end(p, rank)) - p.dims.len();
                let mut t = vec![0i64; start];
                t.extend(&p.dims);
                t.extend(to_i64s(&out[start + p.dims.len()..]));
                t
            };
            let shape = b.init_i64(&c.helper("shape"), &dims)?;
            b.node(c.name(), "Reshape", vec![x, shape], c.top(), vec![])
        }
        Op::BatchNorm(p) => {
            if p.use_global_stats == Some(false) {
                return Err(c.err(
                    "use_global_stats: false normalises with batch statistics even at test time; ONNX BatchNormalization cannot",
                ));
            }
            let (mean, var, factor) = (c.blob(0)?, c.blob(1)?, c.blob(2)?);
            // Caffe divides the stored sums by the moving-average factor (0 → 0).
            let f = factor.data.first().copied().unwrap_or(1.0);
            let scale = if f == 0.0 { 0.0 } else { 1.0 / f };
            let ch = mean.len();
            let scaled = |t: Tensor| Tensor {
                shape: vec![ch],
                data: t.data.iter().map(|v| v * scale).collect(),
            };
            let inputs = vec![
                x,
                b.init_f32(&c.helper("gamma"), &Tensor::full(&[ch], 1.0))?,
                b.init_f32(&c.helper("beta"), &Tensor::zeros(&[ch]))?,
                b.init_f32(&c.helper("mean"), &scaled(mean))?,
                b.init_f32(&c.helper("var"), &scaled(var))?,
            ];
            b.node(
                c.name(),
                "BatchNormalization",
                inputs,
                c.top(),
                vec![float("epsilon", p.eps)],
            )
        }
        Op::Scale(p) => {
            let axes = p.axes(rank).map_err(|e| c.err(e.0))?;
            // γ spans axes a..e; numpy broadcasting aligns from the right, so append ones.
            let mut bshape = c.in_shapes[0][axes.clone()].to_vec();
            bshape.extend(std::iter::repeat_n(1, rank - axes.end));
            let gamma = if c.bottoms.len() > 1 {
                let shape = b.init_i64(&c.helper("gamma_shape"), &to_i64s(&bshape))?;
                let g = c.helper("gamma");
                b.node(&g, "Reshape", vec![c.bottoms[1].clone(), shape], &g, vec![])?;
                g
            } else {
                let t = c
                    .blob(0)?
                    .reshaped(&bshape)
                    .ok_or_else(|| c.err("γ does not match the covered axes"))?;
                b.init_f32(&c.helper("gamma"), &t)?
            };
            if p.bias_term {
                let bias_index = if c.bottoms.len() > 1 { 0 } else { 1 };
                let beta = c
                    .blob(bias_index)?
                    .reshaped(&bshape)
                    .ok_or_else(|| c.err("β does not match the covered axes"))?;
                let m = c.helper("mul");
                b.node(&m, "Mul", vec![x, gamma], &m, vec![])?;
                let beta = b.init_f32(&c.helper("beta"), &beta)?;
                b.node(c.name(), "Add", vec![m, beta], c.top(), vec![])
            } else {
                b.node(c.name(), "Mul", vec![x, gamma], c.top(), vec![])
            }
        }
    }
}

/// The end (exclusive) of the axes a Caffe Reshape replaces in a bottom of `rank` axes.
fn reshape_end(p: &crate::ops::reshape::ReshapeParams, rank: usize) -> usize {
    let start = if p.axis < 0 {
        (rank as i32 + 1 + p.axis).max(0) as usize
    } else {
        p.axis as usize
    };
    if p.num_axes < 0 {
        rank
    } else {
        (start + p.num_axes as usize).min(rank)
    }
}

fn transpose_2d(w: &Tensor, rows: usize, cols: usize) -> Tensor {
    let mut out = vec![0.0; rows * cols];
    for r in 0..rows {
        for k in 0..cols {
            out[k * rows + r] = w.data[r * cols + k];
        }
    }
    Tensor {
        shape: vec![cols, rows],
        data: out,
    }
}

fn emit_pool(
    b: &mut Builder,
    c: &LayerCtx,
    p: &crate::ops::pool::PoolParams,
    x: String,
) -> OnnxResult<()> {
    let global_op = match p.method {
        PoolMethod::Max => "GlobalMaxPool",
        PoolMethod::Ave => "GlobalAveragePool",
    };
    if p.global {
        return b.node(c.name(), global_op, vec![x], c.top(), vec![]);
    }
    let s = &c.in_shapes[0];
    let plan = |axis: usize| {
        AxisPlan::caffe(
            s[2 + axis],
            p.kernel[axis],
            p.stride[axis],
            p.pad[axis],
            p.round,
        )
        .map_err(|e| c.err(e.0))
    };
    let (h, w) = (plan(0)?, plan(1)?);
    // The explicit end pads make ONNX's floor and ceil formulas agree (when not clamped at
    // 0), so `ceil_mode` can carry Caffe's rounding for the importer without changing a
    // single window.
    let ceil_mode = int(
        "ceil_mode",
        (p.round == RoundMode::Ceil && h.exact() && w.exact()) as i64,
    );
    let kernel = ints("kernel_shape", &to_i64s(&p.kernel));
    let strides = ints("strides", &to_i64s(&p.stride));
    let pads = ints("pads", &to_i64s(&[h.pad, w.pad, h.pad_end, w.pad_end]));
    match p.method {
        PoolMethod::Max => b.node(
            c.name(),
            "MaxPool",
            vec![x],
            c.top(),
            vec![kernel, strides, pads, ceil_mode],
        ),
        PoolMethod::Ave if !h.overhangs() && !w.overhangs() => b.node(
            c.name(),
            "AveragePool",
            vec![x],
            c.top(),
            vec![
                kernel,
                strides,
                pads,
                ceil_mode,
                int("count_include_pad", 1),
            ],
        ),
        PoolMethod::Ave => {
            // Pad explicitly (zeros), pool without padding (divides by k_h·k_w), then
            // rescale each output to Caffe's clipped divisor.
            let pads = b.init_i64(
                &c.helper("pads"),
                &to_i64s(&[0, 0, h.pad, w.pad, 0, 0, h.pad_end, w.pad_end]),
            )?;
            let padded = c.helper("pad");
            b.node(&padded, "Pad", vec![x, pads], &padded, vec![])?;
            let pooled = c.helper("pool");
            b.node(
                &pooled,
                "AveragePool",
                vec![padded],
                &pooled,
                vec![kernel, strides, ceil_mode],
            )?;
            let corr = Tensor {
                shape: vec![1, 1, h.out, w.out],
                data: divisor_correction(&h, &w),
            };
            let corr = b.init_f32(&c.helper("divisor_correction"), &corr)?;
            b.node(c.name(), "Mul", vec![pooled, corr], c.top(), vec![])
        }
    }
}

fn emit_eltwise(
    b: &mut Builder,
    c: &LayerCtx,
    p: &crate::ops::eltwise::EltwiseParams,
) -> OnnxResult<()> {
    let n = c.bottoms.len();
    match p.op {
        EltwiseOp::Max => b.node(c.name(), "Max", c.bottoms.clone(), c.top(), vec![]),
        EltwiseOp::Prod | EltwiseOp::Sum => {
            let (op, role) = if p.op == EltwiseOp::Prod {
                ("Mul", "prod")
            } else {
                ("Add", "sum")
            };
            let mut terms = Vec::with_capacity(n);
            for (i, x) in c.bottoms.iter().enumerate() {
                let k = p.coeff(i);
                if p.op == EltwiseOp::Sum && k != 1.0 {
                    let coeff = b.scalar(&c.helper(&format!("coeff{i}")), k)?;
                    let m = c.helper(&format!("mul{i}"));
                    b.node(&m, "Mul", vec![x.clone(), coeff], &m, vec![])?;
                    terms.push(m);
                } else {
                    terms.push(x.clone());
                }
            }
            let mut acc = terms[0].clone();
            for (i, t) in terms.iter().enumerate().skip(1) {
                let (name, out) = if i + 1 == n {
                    (c.name().to_string(), c.top().to_string())
                } else {
                    let h = c.helper(&format!("{role}{i}"));
                    (h.clone(), h)
                };
                b.node(&name, op, vec![acc, t.clone()], &out, vec![])?;
                acc = out;
            }
            Ok(())
        }
    }
}
