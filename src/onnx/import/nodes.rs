//! One ONNX node → one IR layer (or a constant). Supported: Conv, MaxPool, AveragePool,
//! GlobalAveragePool, GlobalMaxPool, LRN, Relu, LeakyRelu, PRelu, Sigmoid, Tanh, Gemm,
//! MatMul, Add, Sub, Mul, Div (with a constant: Caffe Scale; between two tensors of one
//! shape: Eltwise), Sum, Max, Flatten, Reshape, Dropout, Identity, Softmax, Concat,
//! BatchNormalization and Constant.

use super::super::attr::{get_float, get_int, get_ints, get_raw, get_sizes, get_string};
use super::super::pb::NodeProto;
use super::super::pool_map::{match_caffe, Averaging, OnnxAxis};
use super::super::tensor::{read_const, Const, ConstData};
use super::super::{node_label, OnnxError, OnnxResult};
use super::{layer, Ctx};
use crate::ir::{Op, Tensor};
use crate::ops::activation::{PReluParams, ReluParams};
use crate::ops::batchnorm::{BatchNormParams, ScaleParams};
use crate::ops::concat::ConcatParams;
use crate::ops::conv::ConvParams;
use crate::ops::deconv::DeconvParams;
use crate::ops::dropout::DropoutParams;
use crate::ops::eltwise::{EltwiseOp, EltwiseParams};
use crate::ops::inner_product::InnerProductParams;
use crate::ops::lrn::{LrnParams, NormRegion};
use crate::ops::pool::{PoolMethod, PoolParams};
use crate::ops::reshape::{FlattenParams, ReshapeParams};
use crate::ops::softmax::SoftmaxParams;

/// Translates one node, appending its layer to `ctx` (or recording a constant).
pub(crate) fn translate(ctx: &mut Ctx, node: &NodeProto) -> OnnxResult<()> {
    check_extra_outputs(ctx, node)?;
    let out = node
        .output
        .first()
        .filter(|o| !o.is_empty())
        .ok_or_else(|| OnnxError::node(node, "has no output"))?
        .clone();
    let name = ctx.layer_name(node);
    let simple = |op: Op, x: String| layer(name.clone(), op, vec![x], &out, vec![]);
    let l = match node.op_type.as_str() {
        "Constant" => {
            let c = constant_value(ctx, node)?;
            ctx.consts.insert(out, c);
            return Ok(());
        }
        "Conv" | "ConvTranspose" => conv(ctx, node, &name, &out)?,
        "MaxPool" | "AveragePool" => pool(ctx, node, &name, &out)?,
        "GlobalAveragePool" | "GlobalMaxPool" => {
            let (x, s) = ctx.data_input(node, 0)?;
            if s.len() != 4 {
                return Err(OnnxError::node(
                    node,
                    format!("needs a 4-D input, got {s:?}"),
                ));
            }
            let method = if node.op_type == "GlobalMaxPool" {
                PoolMethod::Max
            } else {
                PoolMethod::Ave
            };
            simple(
                Op::Pooling(PoolParams {
                    method,
                    global: true,
                    ..Default::default()
                }),
                x,
            )
        }
        "LRN" => {
            let (x, _) = ctx.data_input(node, 0)?;
            let size = get_int(node, "size")?
                .ok_or_else(|| OnnxError::node(node, "missing attribute 'size'"))?;
            if size <= 0 || size % 2 == 0 {
                return Err(OnnxError::node(
                    node,
                    format!("size {size}: Caffe's LRN needs an odd window (centred)"),
                ));
            }
            simple(
                Op::Lrn(LrnParams {
                    local_size: size as usize,
                    alpha: get_float(node, "alpha")?.unwrap_or(1e-4),
                    beta: get_float(node, "beta")?.unwrap_or(0.75),
                    k: get_float(node, "bias")?.unwrap_or(1.0),
                    region: NormRegion::AcrossChannels,
                }),
                x,
            )
        }
        "Relu" => simple(Op::Relu(ReluParams::default()), ctx.data_input(node, 0)?.0),
        "LeakyRelu" => simple(
            Op::Relu(ReluParams {
                negative_slope: get_float(node, "alpha")?.unwrap_or(0.01),
            }),
            ctx.data_input(node, 0)?.0,
        ),
        "PRelu" => prelu(ctx, node, &name, &out)?,
        "Sigmoid" => simple(Op::Sigmoid, ctx.data_input(node, 0)?.0),
        "Tanh" => simple(Op::TanH, ctx.data_input(node, 0)?.0),
        "Gemm" => {
            let (x, s) = ctx.data_input(node, 0)?;
            gemm(ctx, node, &name, &out, x, &s)?
        }
        "MatMul" => {
            let (x, s) = ctx.data_input(node, 0)?;
            matmul(
                ctx,
                node,
                &name,
                &out,
                x,
                &s,
                s.len().saturating_sub(1),
                None,
            )?
        }
        "Add" | "Sub" | "Mul" | "Div" => binary(ctx, node, &name, &out)?,
        "Sum" | "Max" => {
            let mut bottoms = Vec::new();
            for i in 0..node.input.len() {
                bottoms.push(ctx.data_input(node, i)?.0);
            }
            let op = if node.op_type == "Sum" {
                EltwiseOp::Sum
            } else {
                EltwiseOp::Max
            };
            if bottoms.len() == 1 {
                layer(name, Op::Split, bottoms, &out, vec![])
            } else {
                layer(
                    name,
                    Op::Eltwise(EltwiseParams { op, coeffs: vec![] }),
                    bottoms,
                    &out,
                    vec![],
                )
            }
        }
        "Flatten" => {
            let (x, s) = ctx.data_input(node, 0)?;
            let axis = get_int(node, "axis")?.unwrap_or(1);
            let r = s.len() as i64;
            let a = if axis < 0 { axis + r } else { axis };
            if !(0..=r).contains(&a) {
                return Err(OnnxError::node(
                    node,
                    format!("axis {axis} out of range for {s:?}"),
                ));
            }
            if a == 1 {
                simple(Op::Flatten(FlattenParams::default()), x)
            } else {
                // ONNX always yields 2-D [prod(d[..a]), prod(d[a..])]; Caffe's Flatten
                // keeps the leading axes, so write the target shape.
                let a = a as usize;
                let dims = vec![
                    s[..a].iter().product::<usize>() as i64,
                    s[a..].iter().product::<usize>() as i64,
                ];
                simple(
                    Op::Reshape(ReshapeParams {
                        dims,
                        ..Default::default()
                    }),
                    x,
                )
            }
        }
        "Reshape" => {
            let (x, _) = ctx.data_input(node, 0)?;
            let shape = ctx.const_input(node, 1, "shape")?;
            let dims = shape
                .as_i64()
                .ok_or_else(|| OnnxError::node(node, "shape must be an int64 tensor"))?
                .to_vec();
            if get_int(node, "allowzero")? == Some(1) && dims.contains(&0) {
                return Err(OnnxError::node(
                    node,
                    "allowzero = 1 with a 0 dim is not supported",
                ));
            }
            simple(
                Op::Reshape(ReshapeParams {
                    dims,
                    ..Default::default()
                }),
                x,
            )
        }
        "Dropout" => {
            let (x, _) = ctx.data_input(node, 0)?;
            let ratio = if ctx.opset >= 12 {
                match ctx.konst(node, 1) {
                    Some(c) => c
                        .scalar()
                        .ok_or_else(|| OnnxError::node(node, "ratio must be a scalar"))?,
                    None if node.input.get(1).is_some_and(|s| !s.is_empty()) => {
                        return Err(OnnxError::node(node, "ratio must be a constant"))
                    }
                    None => 0.5,
                }
            } else {
                get_float(node, "ratio")?.unwrap_or(0.5)
            };
            if ctx
                .konst(node, 2)
                .and_then(|c| c.scalar())
                .is_some_and(|t| t != 0.0)
            {
                return Err(OnnxError::node(
                    node,
                    "training_mode = true is not an inference op",
                ));
            }
            simple(Op::Dropout(DropoutParams { ratio }), x)
        }
        "Identity" => simple(Op::Split, ctx.data_input(node, 0)?.0),
        "Softmax" => {
            let (x, s) = ctx.data_input(node, 0)?;
            let default = if ctx.opset >= 13 { -1 } else { 1 };
            let axis = get_int(node, "axis")?.unwrap_or(default);
            let a = if axis < 0 {
                axis + s.len() as i64
            } else {
                axis
            };
            if a < 0 || a as usize >= s.len() {
                return Err(OnnxError::node(
                    node,
                    format!("axis {axis} out of range for {s:?}"),
                ));
            }
            if ctx.opset < 13 && s[a as usize + 1..].iter().product::<usize>() != 1 {
                return Err(OnnxError::node(
                    node,
                    format!("before opset 13 Softmax normalises over all axes from {a} of {s:?}, which Caffe's Softmax cannot"),
                ));
            }
            simple(Op::Softmax(SoftmaxParams { axis: a as i32 }), x)
        }
        "Concat" => {
            let mut bottoms = Vec::new();
            for i in 0..node.input.len() {
                bottoms.push(ctx.data_input(node, i)?.0);
            }
            let axis = get_int(node, "axis")?
                .ok_or_else(|| OnnxError::node(node, "missing attribute 'axis'"))?;
            layer(
                name,
                Op::Concat(ConcatParams { axis: axis as i32 }),
                bottoms,
                &out,
                vec![],
            )
        }
        "BatchNormalization" => return batch_norm(ctx, node, &name, &out),
        other => {
            return Err(OnnxError::UnsupportedOp {
                node: node_label(node),
                op_type: other.to_string(),
                hint: String::new(),
            })
        }
    };
    ctx.push(node, l)
}

/// Refuses nodes whose secondary outputs (indices, masks, running statistics) are used.
fn check_extra_outputs(ctx: &Ctx, node: &NodeProto) -> OnnxResult<()> {
    for o in node.output.iter().skip(1).filter(|o| !o.is_empty()) {
        if ctx.consumers.get(o).copied().unwrap_or(0) > 0 {
            return Err(OnnxError::node(
                node,
                format!("its extra output '{o}' is used; only the first output is supported"),
            ));
        }
    }
    Ok(())
}

fn constant_value(ctx: &Ctx, node: &NodeProto) -> OnnxResult<Const> {
    if let Some(t) = get_raw(node, "value").and_then(|a| a.t.as_ref()) {
        let mut t = t.clone();
        if t.name.is_empty() {
            t.name = node_label(node);
        }
        return read_const(&t, ctx.model_dir);
    }
    if let Some(v) = get_float(node, "value_float")? {
        return Ok(Const {
            dims: vec![],
            data: ConstData::F32(vec![v]),
        });
    }
    if let Some(v) = get_int(node, "value_int")? {
        return Ok(Const {
            dims: vec![],
            data: ConstData::I64(vec![v]),
        });
    }
    if let Some(v) = get_ints(node, "value_ints")? {
        return Ok(Const {
            dims: vec![v.len()],
            data: ConstData::I64(v),
        });
    }
    if let Some(a) = get_raw(node, "value_floats") {
        return Ok(Const {
            dims: vec![a.floats.len()],
            data: ConstData::F32(a.floats.clone()),
        });
    }
    Err(OnnxError::node(
        node,
        "needs a 'value', 'value_float(s)' or 'value_int(s)' attribute",
    ))
}

/// Resolves `pads`/`auto_pad` into `[begin_h, begin_w, end_h, end_w]`.
fn resolve_pads(
    node: &NodeProto,
    hw: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
) -> OnnxResult<[usize; 4]> {
    let auto = get_string(node, "auto_pad")?.unwrap_or_else(|| "NOTSET".into());
    match auto.as_str() {
        "NOTSET" => match get_sizes(node, "pads")? {
            None => Ok([0; 4]),
            Some(p) if p.len() == 4 => Ok([p[0], p[1], p[2], p[3]]),
            Some(p) => Err(OnnxError::node(
                node,
                format!("pads {p:?}: expected 4 values (2-D)"),
            )),
        },
        "VALID" => Ok([0; 4]),
        "SAME_UPPER" | "SAME_LOWER" => {
            let mut out = [0; 4];
            for a in 0..2 {
                let o = hw[a].div_ceil(stride[a]);
                let extent = (kernel[a] - 1) * dilation[a] + 1;
                let total = ((o - 1) * stride[a] + extent).saturating_sub(hw[a]);
                let small = total / 2;
                let (begin, end) = if auto == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                };
                out[a] = begin;
                out[a + 2] = end;
            }
            Ok(out)
        }
        other => Err(OnnxError::node(node, format!("unknown auto_pad '{other}'"))),
    }
}

fn pair(node: &NodeProto, name: &str, default: usize) -> OnnxResult<[usize; 2]> {
    match get_sizes(node, name)? {
        None => Ok([default; 2]),
        Some(v) if v.len() == 2 && v.iter().all(|&x| x > 0) => Ok([v[0], v[1]]),
        Some(v) => Err(OnnxError::node(
            node,
            format!("{name} {v:?}: expected two positive values (2-D)"),
        )),
    }
}

/// `Conv`, or `ConvTranspose` as a Caffe Deconvolution: explicit (or VALID) pads only,
/// no `output_padding`/`output_shape`, whose sizes Caffe's deconvolution cannot express
/// (ONNX operators.md, ConvTranspose). Both weight layouts are Caffe's.
fn conv(ctx: &Ctx, node: &NodeProto, name: &str, out: &str) -> OnnxResult<crate::ir::Layer> {
    let transposed = node.op_type == "ConvTranspose";
    if transposed {
        for attr in ["output_padding", "output_shape"] {
            if get_sizes(node, attr)?.is_some_and(|v| v.iter().any(|&d| d != 0)) {
                return Err(OnnxError::node(
                    node,
                    format!("{attr} has no Caffe Deconvolution equivalent"),
                ));
            }
        }
        if get_string(node, "auto_pad")?.is_some_and(|a| a.starts_with("SAME")) {
            return Err(OnnxError::node(
                node,
                "ConvTranspose with auto_pad SAME has no Caffe Deconvolution equivalent",
            ));
        }
    }
    let (x, s) = ctx.data_input(node, 0)?;
    let w = ctx.const_input(node, 1, "weights")?;
    if s.len() != 4 || w.dims.len() != 4 {
        return Err(OnnxError::node(
            node,
            format!(
                "only 2-D convolution is supported (input {s:?}, weights {:?})",
                w.dims
            ),
        ));
    }
    let kernel = match get_sizes(node, "kernel_shape")? {
        Some(k) if k.len() == 2 => [k[0], k[1]],
        Some(k) => {
            return Err(OnnxError::node(
                node,
                format!("kernel_shape {k:?} is not 2-D"),
            ))
        }
        None => [w.dims[2], w.dims[3]],
    };
    let stride = pair(node, "strides", 1)?;
    let dilation = pair(node, "dilations", 1)?;
    let pads = resolve_pads(node, [s[2], s[3]], kernel, stride, dilation)?;
    // ONNX lists [begin_h, begin_w, end_h, end_w]; the IR keeps the end only when it
    // differs (TensorFlow-style SAME padding), so symmetric models stay Caffe-shaped.
    let pad_end = (pads[0] != pads[2] || pads[1] != pads[3]).then_some([pads[2], pads[3]]);
    if transposed && pad_end.is_some() {
        return Err(OnnxError::node(
            node,
            format!("asymmetric pads {pads:?}: Caffe's Deconvolution crops both sides equally"),
        ));
    }
    let group = get_int(node, "group")?.unwrap_or(1);
    let mut blobs = vec![w.to_tensor()];
    let bias = ctx.konst(node, 2);
    if node.input.get(2).is_some_and(|b| !b.is_empty()) && bias.is_none() {
        return Err(OnnxError::node(
            node,
            "bias must be an initializer or constant",
        ));
    }
    if let Some(b) = bias {
        blobs.push(b.to_tensor());
    }
    let group = usize::try_from(group).unwrap_or(0);
    let p = ConvParams {
        num_output: if transposed {
            w.dims[1] * group
        } else {
            w.dims[0]
        },
        kernel,
        stride,
        pad: [pads[0], pads[1]],
        pad_end,
        dilation,
        group,
        bias_term: bias.is_some(),
        ..Default::default()
    };
    let op = if transposed {
        Op::Deconvolution(DeconvParams(p))
    } else {
        Op::Convolution(p)
    };
    Ok(layer(name.into(), op, vec![x], out, blobs))
}

fn pool(ctx: &Ctx, node: &NodeProto, name: &str, out: &str) -> OnnxResult<crate::ir::Layer> {
    let (x, s) = ctx.data_input(node, 0)?;
    if s.len() != 4 {
        return Err(OnnxError::node(
            node,
            format!("only 2-D pooling is supported (input {s:?})"),
        ));
    }
    let kernel = pair(node, "kernel_shape", 0).and_then(|k| {
        if get_ints(node, "kernel_shape")?.is_none() {
            Err(OnnxError::node(node, "missing attribute 'kernel_shape'"))
        } else {
            Ok(k)
        }
    })?;
    let stride = pair(node, "strides", 1)?;
    if pair(node, "dilations", 1)? != [1, 1] {
        return Err(OnnxError::node(
            node,
            "dilated pooling has no Caffe equivalent",
        ));
    }
    let pads = resolve_pads(node, [s[2], s[3]], kernel, stride, [1, 1])?;
    let ceil = get_int(node, "ceil_mode")?.unwrap_or(0) == 1;
    let method = if node.op_type == "MaxPool" {
        PoolMethod::Max
    } else {
        PoolMethod::Ave
    };
    let averaging = match method {
        PoolMethod::Max => Averaging::Max,
        PoolMethod::Ave => Averaging::Ave {
            count_include_pad: get_int(node, "count_include_pad")?.unwrap_or(0) == 1,
        },
    };
    let axis = |a: usize| OnnxAxis {
        input: s[2 + a],
        kernel: kernel[a],
        stride: stride[a],
        pad_begin: pads[a],
        pad_end: pads[a + 2],
        ceil,
    };
    let round = match_caffe([axis(0), axis(1)], averaging).ok_or_else(|| {
        OnnxError::node(
            node,
            format!(
                "no Caffe pooling computes the same (kernel {kernel:?}, stride {stride:?}, pads {pads:?}, ceil_mode {}, input {s:?}){}",
                ceil as u8,
                if method == PoolMethod::Ave {
                    "; Caffe's AVE divisor counts the padding up to H + pad"
                } else {
                    ""
                }
            ),
        )
    })?;
    let p = PoolParams {
        method,
        kernel,
        stride,
        pad: [pads[0], pads[1]],
        global: false,
        round,
    };
    Ok(layer(name.into(), Op::Pooling(p), vec![x], out, vec![]))
}

fn prelu(ctx: &Ctx, node: &NodeProto, name: &str, out: &str) -> OnnxResult<crate::ir::Layer> {
    let (x, s) = ctx.data_input(node, 0)?;
    let slope = ctx.const_input(node, 1, "slope")?;
    let channels = s.get(1).copied().unwrap_or(1);
    // Accept a single shared slope, or one per channel right-aligned onto axis 1
    // ([C] for 2-D inputs, [C, 1, 1] for images).
    let shared = slope.len() == 1;
    let r = slope.dims.len();
    let per_channel = r <= s.len() && slope.len() == channels && {
        let full: Vec<usize> = std::iter::repeat_n(1, s.len() - r)
            .chain(slope.dims.iter().copied())
            .collect();
        full.iter()
            .enumerate()
            .all(|(i, &d)| d == 1 || (i == 1 && d == channels))
    };
    if !(shared || per_channel) {
        return Err(OnnxError::node(
            node,
            format!(
                "slope shape {:?} is not per-channel for input {s:?}",
                slope.dims
            ),
        ));
    }
    let n = if shared { 1 } else { channels };
    let t = Tensor::from_vec(&[n], slope.to_f32()).ok_or_else(|| {
        OnnxError::node(
            node,
            format!("slope has {} values, expected {n}", slope.len()),
        )
    })?;
    let p = PReluParams {
        channel_shared: shared,
        ..Default::default()
    };
    Ok(layer(name.into(), Op::PRelu(p), vec![x], out, vec![t]))
}

/// Gemm(A, B, C) with constant B and C: an InnerProduct on axis 1 of `x`.
pub(crate) fn gemm(
    ctx: &Ctx,
    node: &NodeProto,
    name: &str,
    out: &str,
    x: String,
    x_shape: &[usize],
) -> OnnxResult<crate::ir::Layer> {
    if get_int(node, "transA")?.unwrap_or(0) != 0 {
        return Err(OnnxError::node(node, "transA = 1 is not supported"));
    }
    let b = ctx.const_input(node, 1, "B")?;
    if b.dims.len() != 2 {
        return Err(OnnxError::node(
            node,
            format!("B must be 2-D, got {:?}", b.dims),
        ));
    }
    let trans_b = get_int(node, "transB")?.unwrap_or(0) == 1;
    let (n, k) = if trans_b {
        (b.dims[0], b.dims[1])
    } else {
        (b.dims[1], b.dims[0])
    };
    let inputs: usize = x_shape.get(1..).map(|d| d.iter().product()).unwrap_or(0);
    if x_shape.len() < 2 || inputs != k {
        return Err(OnnxError::node(
            node,
            format!("input shape {x_shape:?} does not provide K = {k} values per row"),
        ));
    }
    let alpha = get_float(node, "alpha")?.unwrap_or(1.0);
    let beta = get_float(node, "beta")?.unwrap_or(1.0);
    let mut w = b.to_tensor();
    if alpha != 1.0 {
        w.data.iter_mut().for_each(|v| *v *= alpha);
    }
    let mut blobs = vec![w];
    let c = ctx.konst(node, 2);
    if node.input.get(2).is_some_and(|s| !s.is_empty()) && c.is_none() {
        return Err(OnnxError::node(
            node,
            "C must be an initializer or constant",
        ));
    }
    if let Some(c) = c {
        let v = c.to_f32();
        let bias: Vec<f32> = if v.len() == 1 {
            vec![v[0] * beta; n]
        } else if v.len() == n && c.dims.last() == Some(&n) {
            v.iter().map(|x| x * beta).collect()
        } else {
            return Err(OnnxError::node(
                node,
                format!("C of shape {:?} is not a per-output bias of {n}", c.dims),
            ));
        };
        blobs.push(Tensor {
            shape: vec![n],
            data: bias,
        });
    }
    let p = InnerProductParams {
        num_output: n,
        bias_term: blobs.len() == 2,
        axis: 1,
        transpose: !trans_b,
        ..Default::default()
    };
    Ok(layer(name.into(), Op::InnerProduct(p), vec![x], out, blobs))
}

/// MatMul(x, W) with a constant `[K, N]` W on `x` flattened from `axis` (+ optional bias):
/// an InnerProduct with Caffe's `[N, K]` weights.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(
    ctx: &Ctx,
    node: &NodeProto,
    name: &str,
    out: &str,
    x: String,
    x_shape: &[usize],
    axis: usize,
    bias: Option<&Const>,
) -> OnnxResult<crate::ir::Layer> {
    let w = ctx.const_input(node, 1, "B")?;
    if w.dims.len() != 2 {
        return Err(OnnxError::node(
            node,
            format!(
                "only a constant 2-D right operand is supported, got {:?}",
                w.dims
            ),
        ));
    }
    let (k, n) = (w.dims[0], w.dims[1]);
    if x_shape.len() <= axis || x_shape[axis..].iter().product::<usize>() != k {
        return Err(OnnxError::node(
            node,
            format!("input shape {x_shape:?} does not provide K = {k} values from axis {axis}"),
        ));
    }
    let wd = w.to_f32();
    let mut t = vec![0.0; k * n];
    for r in 0..k {
        for c in 0..n {
            t[c * k + r] = wd[r * n + c];
        }
    }
    let mut blobs = vec![Tensor {
        shape: vec![n, k],
        data: t,
    }];
    if let Some(b) = bias {
        if b.len() != n || b.dims.last() != Some(&n) {
            return Err(OnnxError::node(
                node,
                format!("bias of shape {:?} is not per output ({n})", b.dims),
            ));
        }
        blobs.push(Tensor {
            shape: vec![n],
            data: b.to_f32(),
        });
    }
    let p = InnerProductParams {
        num_output: n,
        bias_term: blobs.len() == 2,
        axis: axis as i32,
        transpose: false,
        ..Default::default()
    };
    Ok(layer(name.into(), Op::InnerProduct(p), vec![x], out, blobs))
}

/// Maps a constant broadcast onto `x_shape` (numpy rules, right-aligned) to Caffe Scale's
/// (axis, num_axes, values over those axes).
pub(crate) fn broadcast_axes(
    node: &NodeProto,
    x_shape: &[usize],
    c: &Const,
) -> OnnxResult<(usize, usize, Tensor)> {
    let d = x_shape.len();
    if c.dims.len() > d {
        return Err(OnnxError::node(
            node,
            format!(
                "constant of shape {:?} has more axes than the input {x_shape:?}",
                c.dims
            ),
        ));
    }
    let mut full = vec![1; d - c.dims.len()];
    full.extend_from_slice(&c.dims);
    for (i, (&cd, &xd)) in full.iter().zip(x_shape).enumerate() {
        if cd != 1 && cd != xd {
            return Err(OnnxError::node(
                node,
                format!(
                    "constant of shape {:?} does not broadcast onto {x_shape:?} (axis {i})",
                    c.dims
                ),
            ));
        }
    }
    let Some(first) = full.iter().position(|&v| v != 1) else {
        return Ok((0, 0, Tensor::from_vec(&[], c.to_f32()).unwrap_or_default()));
    };
    let last = full.iter().rposition(|&v| v != 1).unwrap_or(first);
    let shape = x_shape[first..=last].to_vec();
    let src = c.to_f32();
    // Materialise size-1 axes inside the covered range (γ in Caffe has no broadcasting).
    let sub = &full[first..=last];
    let count: usize = shape.iter().product();
    let mut data = Vec::with_capacity(count);
    for flat in 0..count {
        let mut rem = flat;
        let mut src_index = 0;
        let mut src_stride = 1;
        let mut idx = vec![0; shape.len()];
        for a in (0..shape.len()).rev() {
            idx[a] = rem % shape[a];
            rem /= shape[a];
        }
        for a in (0..shape.len()).rev() {
            if sub[a] != 1 {
                src_index += idx[a] * src_stride;
                src_stride *= sub[a];
            }
        }
        data.push(src[src_index]);
    }
    Ok((first, last - first + 1, Tensor { shape, data }))
}

fn binary(ctx: &Ctx, node: &NodeProto, name: &str, out: &str) -> OnnxResult<crate::ir::Layer> {
    let op = node.op_type.as_str();
    let (a_const, b_const) = (ctx.konst(node, 0), ctx.konst(node, 1));
    match (a_const, b_const) {
        (None, None) => {
            let (a, sa) = ctx.data_input(node, 0)?;
            let (b, sb) = ctx.data_input(node, 1)?;
            if sa != sb {
                return Err(OnnxError::node(
                    node,
                    format!("broadcasting between computed tensors {sa:?} and {sb:?} is not supported (Caffe Eltwise needs equal shapes)"),
                ));
            }
            let (eop, coeffs) = match op {
                "Add" => (EltwiseOp::Sum, vec![]),
                "Sub" => (EltwiseOp::Sum, vec![1.0, -1.0]),
                "Mul" => (EltwiseOp::Prod, vec![]),
                _ => {
                    return Err(OnnxError::node(
                        node,
                        "division of two computed tensors has no Caffe layer",
                    ))
                }
            };
            Ok(layer(
                name.into(),
                Op::Eltwise(EltwiseParams { op: eop, coeffs }),
                vec![a, b],
                out,
                vec![],
            ))
        }
        (Some(_), Some(_)) => Err(OnnxError::node(
            node,
            "both operands are constants (constant folding is not supported)",
        )),
        (ca, cb) => {
            let (x_index, c) = match (ca, cb) {
                (None, Some(c)) => (0, c),
                (Some(c), None) if matches!(op, "Add" | "Mul") => (1, c),
                _ => {
                    return Err(OnnxError::node(
                        node,
                        "a constant left operand is only supported for Add and Mul",
                    ))
                }
            };
            let (x, s) = ctx.data_input(node, x_index)?;
            let (axis, num_axes, mut t) = broadcast_axes(node, &s, c)?;
            match op {
                "Sub" => t.data.iter_mut().for_each(|v| *v = -*v),
                "Div" => t.data.iter_mut().for_each(|v| *v = 1.0 / *v),
                _ => {}
            }
            let additive = matches!(op, "Add" | "Sub");
            let blobs = if additive {
                vec![Tensor::full(&t.shape, 1.0), t]
            } else {
                vec![t]
            };
            let p = ScaleParams {
                axis: axis as i32,
                num_axes: num_axes as i32,
                bias_term: additive,
                ..Default::default()
            };
            Ok(layer(name.into(), Op::Scale(p), vec![x], out, blobs))
        }
    }
}

fn batch_norm(ctx: &mut Ctx, node: &NodeProto, name: &str, out: &str) -> OnnxResult<()> {
    let (x, s) = ctx.data_input(node, 0)?;
    if get_int(node, "training_mode")?.unwrap_or(0) != 0 {
        return Err(OnnxError::node(
            node,
            "training_mode = 1 is not an inference op",
        ));
    }
    let c = s.get(1).copied().unwrap_or(0);
    let mut params = Vec::new();
    for (i, what) in ["scale", "B", "mean", "var"].iter().enumerate() {
        let t = ctx.const_input(node, i + 1, what)?;
        if t.len() != c {
            return Err(OnnxError::node(
                node,
                format!("{what} has {} values for {c} channels", t.len()),
            ));
        }
        params.push(Tensor::from_vec(&[c], t.to_f32()).unwrap_or_default());
    }
    let eps = get_float(node, "epsilon")?.unwrap_or(1e-5);
    let affine =
        params[0].data.iter().any(|&g| g != 1.0) || params[1].data.iter().any(|&b| b != 0.0);
    let bn_top = if affine {
        format!("{name}/normalized")
    } else {
        out.to_string()
    };
    let bn = layer(
        name.into(),
        Op::BatchNorm(BatchNormParams {
            eps,
            ..Default::default()
        }),
        vec![x],
        &bn_top,
        vec![
            params[2].clone(),
            params[3].clone(),
            Tensor::full(&[1], 1.0),
        ],
    );
    ctx.push(node, bn)?;
    if affine {
        let scale = layer(
            format!("{name}/scale"),
            Op::Scale(ScaleParams {
                bias_term: true,
                ..Default::default()
            }),
            vec![bn_top],
            out,
            vec![params[0].clone(), params[1].clone()],
        );
        ctx.push(node, scale)?;
    }
    Ok(())
}
