//! Graph → IR: lifts the stages of a v1 graph back into an [`ir::Net`](crate::ir::Net) with
//! fp16-exact weights (`WeightPrecision::F16`), so that run, verify and convert work on graph
//! files.
//!
//! Each stage becomes one IR layer named after the stage, its fused post-op a second layer
//! (`<stage>/relu`, in place in Caffe terms: its Caffe top is the stage name, which is what
//! the compiler names a fused stage after). The input stage (op 5, record 0) becomes the
//! net's input. Weights are converted from the device layouts of §5.5 to Caffe's; stages
//! writing channel ranges of one buffer become a Concat layer when the buffer is read, or
//! at the end when the buffer is the network output (location 2).
//! TensorFlow SAME padding becomes the convolution's begin/end padding (the odd pixel at
//! the end). Reads of the leading values or channels of a bigger tensor (a TensorFlow
//! channel slice compiled to a `copy`, an `add` pointed at the network input) become
//! selection layers with 0/1 weights, exact in f32 and fp16. What the IR cannot express —
//! other slice views, ELU — is refused with the stage named.

use super::error::{NcsError, ToIrError};
use super::graph::Graph;
use super::layout::{hwck_to_conv, hwck_to_deconv, hwck_to_fc, hwk_to_depthwise};
use super::stage::{BufferRef, Location, PadStyle, StageOp, StageRecord, Xyz};
use crate::ir::{InputSpec, Layer, Net, Op, Tensor, WeightPrecision};
use crate::ops::activation::{PReluParams, ReluParams};
use crate::ops::batchnorm::ScaleParams;
use crate::ops::conv::ConvParams;
use crate::ops::deconv::DeconvParams;
use crate::ops::eltwise::{EltwiseOp, EltwiseParams};
use crate::ops::inner_product::InnerProductParams;
use crate::ops::lrn::{LrnParams, NormRegion};
use crate::ops::pool::{PoolMethod, PoolParams, RoundMode};
use crate::ops::reshape::FlattenParams;
use crate::ops::softmax::SoftmaxParams;
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// A tensor the stages exchange: its IR blob name, device dims and IR shape.
#[derive(Debug, Clone)]
struct Blob {
    name: String,
    dims: Xyz,
    shape: Vec<usize>,
}

/// IR shape of a device tensor: 1×1×K tensors produced by FC are 2-D in Caffe.
fn nchw(d: Xyz) -> Vec<usize> {
    vec![1, d.z as usize, d.y as usize, d.x as usize]
}

/// fp16 → f32 (exact), with the F16C instructions when the CPU has them.
fn widen(h: &[half::f16]) -> Vec<f32> {
    use half::slice::HalfFloatSliceExt;
    let mut out = vec![0.0f32; h.len()];
    h.convert_to_f32_slice(&mut out);
    out
}

/// Reads a graph file of either NCSDK generation (detected from its first bytes) and
/// converts it; errors name the file and the stage. NCSDK 2 graphs are first brought into
/// the v1 record shape ([`super::v2::to_v1_view`]).
pub fn read_net(path: &Path) -> Result<Net, NcsError> {
    let to_ir = |source| NcsError::ToIr {
        path: path.to_path_buf(),
        source,
    };
    match super::read_any(path)? {
        super::AnyGraph::V1(g) => graph_to_net(&g).map_err(to_ir),
        super::AnyGraph::V2(g) => {
            let v1 = super::v2::to_v1_view(&g).map_err(to_ir)?;
            graph_to_net(&v1).map_err(to_ir)
        }
    }
}

/// Converts a graph into an IR net with fp16-exact weights.
pub fn graph_to_net(g: &Graph) -> Result<Net, ToIrError> {
    let mut b = Lifter {
        g,
        blobs: HashMap::new(),
        parts: Vec::new(),
        layers: Vec::new(),
        names: HashSet::new(),
        derived: Vec::new(),
    };
    let (first, input) = b.input()?;
    b.names.insert(input.name.clone());
    let spec = InputSpec {
        name: input.name.clone(),
        shape: input.shape.clone(),
    };
    b.blobs.insert((Location::INPUT, 0), input);
    let mut i = first;
    while i < g.stages.len() {
        i += b.stage(i)?;
    }
    b.output_concat()?;
    let net = Net {
        name: g.header.name.clone(),
        inputs: vec![spec],
        layers: b.layers,
        precision: WeightPrecision::F16,
    };
    Ok(net)
}

struct Lifter<'a> {
    g: &'a Graph,
    blobs: HashMap<(u16, u32), Blob>,
    /// Stage outputs written into a concatenation (x-stride wider than their channels),
    /// keyed by (location, pointer, x-stride); joined when a consumer reads the whole.
    parts: Vec<(u16, u32, u32, Blob)>,
    layers: Vec<Layer>,
    names: HashSet<String>,
    /// Blobs made by the lift itself that no buffer holds (value selections).
    derived: Vec<Blob>,
}

fn err(i: usize, s: &StageRecord, msg: impl Into<String>) -> ToIrError {
    ToIrError {
        index: i,
        name: s.name.clone(),
        op: s.op.toolkit_name().into(),
        msg: msg.into(),
    }
}

impl Lifter<'_> {
    /// The network input: record 0 when it is an input stage (Caffe graphs), else the dims
    /// of the first stage that reads location 1 (TensorFlow graphs, named "input").
    fn input(&self) -> Result<(usize, Blob), ToIrError> {
        let s0 = &self.g.stages[0];
        if s0.op == StageOp::None && s0.data.loc() == Location::Input {
            let blob = Blob {
                name: s0.name.clone(),
                dims: s0.input_dims,
                shape: nchw(s0.input_dims),
            };
            return Ok((1, blob));
        }
        let Some(s) = self
            .g
            .stages
            .iter()
            .find(|s| s.data.loc() == Location::Input)
        else {
            return Err(err(0, s0, "no stage reads the network input (location 1)"));
        };
        let mut dims = s.input_dims;
        if s.op == StageOp::FullyConnected {
            // the strides still describe the producer's HWC tensor
            let c = (s.input_strides.x / 2).max(1);
            let w = if s.input_strides.y > 0 {
                s.input_strides.y / s.input_strides.x.max(1)
            } else {
                1
            };
            let h = s.input_dims.z / (c * w).max(1);
            if h * w * c == s.input_dims.z {
                dims = Xyz::new(w, h, c);
            }
        }
        Ok((
            0,
            Blob {
                name: "input".into(),
                dims,
                shape: nchw(dims),
            },
        ))
    }

    /// A fresh layer/blob name: the wanted one, or with `#<n>` appended if taken.
    fn unique(&mut self, want: &str) -> String {
        let mut name = want.to_string();
        let mut n = 1;
        while self.names.contains(&name) {
            n += 1;
            name = format!("{want}#{n}");
        }
        self.names.insert(name.clone());
        name
    }

    /// The tensor a stage reads at `r`: an earlier stage's output, or — when several
    /// stages wrote channel ranges of one buffer with x-stride `stride_x` (a Caffe Concat,
    /// NCS_GRAPH_FORMAT.md §6 / NCSDK2_GRAPH_FORMAT.md §6.3 step 5) — a Concat layer of
    /// those outputs, added here in channel order.
    fn lookup(
        &mut self,
        i: usize,
        s: &StageRecord,
        r: BufferRef,
        what: &str,
    ) -> Result<Blob, ToIrError> {
        if let Some(b) = self.blobs.get(&(r.location, r.pointer)) {
            return Ok(b.clone());
        }
        let stride_x = s.input_strides.x;
        if let Some(b) = self.join_parts(r, stride_x) {
            return Ok(b);
        }
        Err(err(
            i,
            s,
            format!("its {what} {r} is not a tensor an earlier stage wrote (slice views are not supported)"),
        ))
    }

    /// A Concat as the network output (NCS_GRAPH_FORMAT.md §5.4, NCSDK2_GRAPH_FORMAT.md
    /// §8.1): the stages that wrote channel ranges of location 2 are joined into a Concat
    /// layer, whose top becomes the net's output. Parts that do not tile the output tensor
    /// from offset 0 are refused with the last such stage named.
    fn output_concat(&mut self) -> Result<(), ToIrError> {
        let Some(stride_x) = self
            .parts
            .iter()
            .find(|p| p.0 == Location::OUTPUT)
            .map(|p| p.2)
        else {
            return Ok(());
        };
        let r = BufferRef::new(0, Location::OUTPUT);
        if self.join_parts(r, stride_x).is_some() {
            return Ok(());
        }
        let (i, s) = self
            .g
            .stages
            .iter()
            .enumerate()
            .rev()
            .find(|(_, s)| s.output.location == Location::OUTPUT)
            .unwrap_or((0, &self.g.stages[0]));
        Err(err(
            i,
            s,
            format!(
                "writes channels of the network output with x-stride {stride_x}, but the stages writing it do not tile it from offset 0"
            ),
        ))
    }

    /// Joins the concatenation parts that tile `[r.pointer, r.pointer + stride_x)` of
    /// `r.location` contiguously (same width and height) into a Concat layer.
    fn join_parts(&mut self, r: BufferRef, stride_x: u32) -> Option<Blob> {
        let mut members: Vec<&(u16, u32, u32, Blob)> = self
            .parts
            .iter()
            .filter(|p| p.0 == r.location && p.2 == stride_x && p.1 >= r.pointer)
            .collect();
        members.sort_by_key(|p| p.1);
        let end = r.pointer as u64 + stride_x as u64;
        let mut at = r.pointer as u64;
        let mut chosen: Vec<Blob> = Vec::new();
        for p in members {
            let same_width = chosen.first().is_none_or(|b| b.dims.x == p.3.dims.x);
            if p.1 as u64 != at || !same_width {
                break;
            }
            at += 2 * p.3.dims.z as u64;
            chosen.push(p.3.clone());
            if at >= end {
                break;
            }
        }
        if at != end || chosen.len() < 2 {
            return None;
        }
        let (w, h) = (chosen[0].dims.x, chosen[0].dims.y);
        if chosen.iter().any(|b| b.dims.y != h) {
            return None;
        }
        let c = stride_x / 2;
        let name = self.unique(&format!("{}/concat", chosen[0].name));
        let layer = Layer::new(
            name.clone(),
            Op::Concat(crate::ops::concat::ConcatParams { axis: 1 }),
            chosen.iter().map(|b| b.name.clone()).collect(),
            vec![name.clone()],
        );
        self.layers.push(layer);
        let dims = Xyz::new(w, h, c);
        let blob = Blob {
            name,
            dims,
            shape: nchw(dims),
        };
        self.blobs.insert((r.location, r.pointer), blob.clone());
        Some(blob)
    }

    fn f16s(
        &self,
        i: usize,
        s: &StageRecord,
        r: BufferRef,
        n: usize,
        what: &str,
    ) -> Result<Vec<half::f16>, ToIrError> {
        self.g.f16_at(r, n).ok_or_else(|| {
            err(
                i,
                s,
                format!("its {what} {r} is not {n} fp16 values in the data section"),
            )
        })
    }

    fn f32s(
        &self,
        i: usize,
        s: &StageRecord,
        r: BufferRef,
        n: usize,
        what: &str,
    ) -> Result<Vec<f32>, ToIrError> {
        self.g.f32_from_f16_at(r, n).ok_or_else(|| {
            err(
                i,
                s,
                format!("its {what} {r} is not {n} fp16 values in the data section"),
            )
        })
    }

    fn bias(&self, i: usize, s: &StageRecord, n: usize) -> Result<Option<Tensor>, ToIrError> {
        if !s.bias.is_used() {
            return Ok(None);
        }
        let v = self.f32s(i, s, s.bias, n, "bias")?;
        Ok(Tensor::from_vec(&[n], v))
    }

    /// Padding of a conv/pool stage before and after the data, per axis. TensorFlow SAME
    /// (padStyle 3) pads `total = (out − 1)·s + extent − in` and, as TensorFlow does, puts
    /// the odd pixel at the end: `begin = ⌊total/2⌋`, `end = total − begin`.
    fn stage_pads(
        &self,
        s: &StageRecord,
        kernel: [usize; 2],
        dilation: [usize; 2],
    ) -> ([usize; 2], [usize; 2]) {
        let ins = [s.input_dims.y as usize, s.input_dims.x as usize];
        let outs = [s.output_dims.y as usize, s.output_dims.x as usize];
        let strides = [s.stride[1] as usize, s.stride[0] as usize];
        match s.pad_style {
            PadStyle::Caffe | PadStyle::None => {
                let p = [s.pad[1] as usize, s.pad[0] as usize];
                (p, p)
            }
            PadStyle::TfValid => ([0, 0], [0, 0]),
            PadStyle::TfSame => {
                let (mut begin, mut end) = ([0; 2], [0; 2]);
                for a in 0..2 {
                    let extent = dilation[a] * (kernel[a].max(1) - 1) + 1;
                    let need = (outs[a].max(1) - 1) * strides[a] + extent;
                    let total = need.saturating_sub(ins[a]);
                    begin[a] = total / 2;
                    end[a] = total - begin[a];
                }
                (begin, end)
            }
        }
    }

    /// The dilation of a conv/deconv stage: its opParams int32 (NCSDK 1.12 and 2), else 1.
    fn dilation(&self, i: usize, s: &StageRecord) -> Result<usize, ToIrError> {
        if s.op_params.loc() != Location::Blob {
            return Ok(1);
        }
        match self
            .g
            .i32_at(s.op_params, 1)
            .and_then(|v| v.first().copied())
        {
            Some(d) if d >= 1 => Ok(d as usize),
            _ => Err(err(i, s, "dilation parameter is not a positive int32")),
        }
    }

    /// Padding of a deconvolution stage in Caffe terms: the stage's pad for padStyle Caffe,
    /// 0 for TensorFlow VALID, and for TensorFlow SAME the crop that turns the full
    /// `s·(in − 1) + d·(k − 1) + 1` output into the declared one — refused unless it is
    /// the same on both sides (Caffe crops symmetrically).
    fn deconv_pad(
        &self,
        i: usize,
        s: &StageRecord,
        kernel: [usize; 2],
        dilation: usize,
    ) -> Result<[usize; 2], ToIrError> {
        match s.pad_style {
            PadStyle::Caffe | PadStyle::None => Ok([s.pad[1] as usize, s.pad[0] as usize]),
            PadStyle::TfValid => Ok([0, 0]),
            PadStyle::TfSame => {
                let ins = [s.input_dims.y as usize, s.input_dims.x as usize];
                let outs = [s.output_dims.y as usize, s.output_dims.x as usize];
                let strides = [s.stride[1] as usize, s.stride[0] as usize];
                let mut pad = [0; 2];
                for a in 0..2 {
                    let full = strides[a] * ins[a].saturating_sub(1)
                        + dilation * (kernel[a].max(1) - 1)
                        + 1;
                    let crop = full.checked_sub(outs[a]).filter(|c| c % 2 == 0);
                    let Some(crop) = crop else {
                        return Err(err(
                            i,
                            s,
                            format!(
                                "TensorFlow SAME deconvolution from {} to {} on the {} axis crops {} of {full}; Caffe can only crop the same on both sides",
                                ins[a], outs[a], ["y", "x"][a], full as i64 - outs[a] as i64
                            ),
                        ));
                    };
                    pad[a] = crop / 2;
                }
                Ok(pad)
            }
        }
    }

    /// Converts stage `i` (and, for a within-channel LRN, the three after it); returns how
    /// many stages it consumed.
    fn stage(&mut self, i: usize) -> Result<usize, ToIrError> {
        let g = self.g;
        let s = &g.stages[i];
        if s.op == StageOp::Square {
            return self.within_channel_lrn(i);
        }
        let src = self.lookup(i, s, s.data, "input")?;
        if s.op != StageOp::FullyConnected
            && (s.input_dims != src.dims || s.input_strides.x as u64 != 2 * s.input_dims.z as u64)
        {
            return Err(err(
                i,
                s,
                format!(
                    "reads {} with x-stride {} but its producer wrote {} (strided views are not supported)",
                    s.input_dims, s.input_strides.x, src.dims
                ),
            ));
        }
        let (sx, sy) = (s.output_strides.x as u64, s.output_strides.y as u64);
        let dense_sx = 2 * s.output_dims.z as u64;
        let into_concat = sx != dense_sx;
        if into_concat && (sx < dense_sx || sy != sx * s.output_dims.x as u64) {
            return Err(err(
                i,
                s,
                format!(
                    "output strides {} do not describe an HWC tensor or a channel range of one",
                    s.output_strides
                ),
            ));
        }
        let (in_c, out_c) = (s.input_dims.z as usize, s.output_dims.z as usize);
        let kernel = [s.radix[1].max(0) as usize, s.radix[0].max(0) as usize];
        let stride = [s.stride[1] as usize, s.stride[0] as usize];
        let mut bottoms = vec![src.name.clone()];
        let mut blobs = Vec::new();
        let op = match s.op {
            StageOp::None => {
                // a no-op mid-graph: its output is its input
                self.blobs
                    .insert((s.output.location, s.output.pointer), src);
                return Ok(1);
            }
            StageOp::Convolution | StageOp::DepthwiseConvolution => {
                let dilation = self.dilation(i, s)?;
                let (pad, end) = self.stage_pads(s, kernel, [dilation; 2]);
                let depthwise = s.op == StageOp::DepthwiseConvolution;
                if depthwise && (in_c == 0 || out_c % in_c != 0) {
                    return Err(err(
                        i,
                        s,
                        "depthwise output channels are not a multiple of the input channels",
                    ));
                }
                let (kh, kw) = (kernel[0], kernel[1]);
                let w = if depthwise {
                    let t = self.f16s(i, s, s.taps, kh * kw * out_c, "taps")?;
                    Tensor::from_vec(
                        &[out_c, 1, kh, kw],
                        widen(&hwk_to_depthwise(&t, out_c, kh, kw)),
                    )
                } else {
                    let t = self.f16s(i, s, s.taps, kh * kw * in_c * out_c, "taps")?;
                    Tensor::from_vec(
                        &[out_c, in_c, kh, kw],
                        widen(&hwck_to_conv(&t, out_c, in_c, kh, kw)),
                    )
                };
                blobs.extend(w);
                let bias = self.bias(i, s, out_c)?;
                let bias_term = bias.is_some();
                blobs.extend(bias);
                Op::Convolution(ConvParams {
                    num_output: out_c,
                    kernel,
                    stride,
                    pad,
                    pad_end: (end != pad).then_some(end),
                    dilation: [dilation; 2],
                    group: if depthwise { in_c } else { 1 },
                    bias_term,
                    ..ConvParams::default()
                })
            }
            StageOp::Deconvolution => {
                let dilation = self.dilation(i, s)?;
                let (kh, kw) = (kernel[0], kernel[1]);
                let t = self.f16s(i, s, s.taps, kh * kw * in_c * out_c, "taps")?;
                blobs.extend(Tensor::from_vec(
                    &[in_c, out_c, kh, kw],
                    widen(&hwck_to_deconv(&t, in_c, out_c, kh, kw)),
                ));
                let bias = self.bias(i, s, out_c)?;
                let bias_term = bias.is_some();
                blobs.extend(bias);
                Op::Deconvolution(DeconvParams(ConvParams {
                    num_output: out_c,
                    kernel,
                    stride,
                    pad: self.deconv_pad(i, s, kernel, dilation)?,
                    dilation: [dilation; 2],
                    bias_term,
                    ..ConvParams::default()
                }))
            }
            StageOp::FullyConnected => {
                let n = src.dims.volume() as usize;
                if s.input_dims.z as usize != n {
                    return Err(err(
                        i,
                        s,
                        format!(
                            "reads {} values but its producer wrote {}",
                            s.input_dims.z, src.dims
                        ),
                    ));
                }
                let (w, h, c) = (
                    src.dims.x as usize,
                    src.dims.y as usize,
                    src.dims.z as usize,
                );
                let t = self.f16s(i, s, s.taps, n * out_c, "taps")?;
                // a 2-D producer blob is already flat: the layout is then the identity
                let flat = src.shape.len() == 2;
                let (c, h, w) = if flat { (n, 1, 1) } else { (c, h, w) };
                blobs.extend(Tensor::from_vec(
                    &[out_c, n],
                    widen(&hwck_to_fc(&t, out_c, c, h, w)),
                ));
                let bias = self.bias(i, s, out_c)?;
                let bias_term = bias.is_some();
                blobs.extend(bias);
                Op::InnerProduct(InnerProductParams {
                    num_output: out_c,
                    bias_term,
                    ..InnerProductParams::default()
                })
            }
            StageOp::MaxPooling | StageOp::AveragePooling => {
                let method = if s.op == StageOp::MaxPooling {
                    PoolMethod::Max
                } else {
                    PoolMethod::Ave
                };
                // an odd SAME pixel at the end is Caffe's ceil-mode partial window for MAX
                // (both ignore it); the output-size check below confirms the window count
                let (pad, end) = self.stage_pads(s, kernel, [1, 1]);
                if method == PoolMethod::Ave && s.pad_style == PadStyle::TfSame && end != [0, 0] {
                    return Err(err(i, s, "TensorFlow SAME average pooling excludes padding from the divisor; Caffe AVE includes it"));
                }
                // the compiler writes tapDimX = 0 for Caffe global pooling (no kernel_size)
                let global = s.taps_dims.x == 0
                    && kernel == [s.input_dims.y as usize, s.input_dims.x as usize]
                    && pad == [0, 0];
                let want = [s.output_dims.y as usize, s.output_dims.x as usize];
                let dims_for = |round| -> Option<[usize; 2]> {
                    let a = PoolParams::out_dim(
                        s.input_dims.y as usize,
                        kernel[0],
                        stride[0].max(1),
                        pad[0],
                        round,
                    )
                    .ok()?;
                    let b = PoolParams::out_dim(
                        s.input_dims.x as usize,
                        kernel[1],
                        stride[1].max(1),
                        pad[1],
                        round,
                    )
                    .ok()?;
                    Some([a, b])
                };
                let round = if global || dims_for(RoundMode::Ceil) == Some(want) {
                    RoundMode::Ceil
                } else if dims_for(RoundMode::Floor) == Some(want) {
                    RoundMode::Floor
                } else {
                    return Err(err(
                        i,
                        s,
                        format!(
                            "output {} matches neither Caffe's ceil nor floor pooling size",
                            s.output_dims
                        ),
                    ));
                };
                Op::Pooling(PoolParams {
                    method,
                    kernel,
                    stride,
                    pad,
                    global,
                    round,
                })
            }
            StageOp::Lrn => {
                let p = self.f32s(i, s, s.bias, 3, "LRN parameters")?;
                Op::Lrn(LrnParams {
                    local_size: s.radix[0].max(0) as usize,
                    k: p[0],
                    alpha: p[1],
                    beta: p[2],
                    region: NormRegion::AcrossChannels,
                })
            }
            StageOp::SoftMax => {
                let axis = match s.op_params.loc() {
                    Location::Blob => g
                        .i32_at(s.op_params, 1)
                        .and_then(|v| v.first().copied())
                        .ok_or_else(|| err(i, s, "softmax axis is not an int32"))?,
                    _ => 1,
                };
                Op::Softmax(SoftmaxParams { axis })
            }
            StageOp::EltwiseSum | StageOp::EltwiseProd | StageOp::EltwiseMax => {
                for (r, what) in [(s.taps, "second operand"), (s.bias, "third operand")] {
                    if r.is_used() {
                        let mut b = self.lookup(i, s, r, what)?;
                        if b.dims != src.dims && b.dims.volume() > src.dims.volume() {
                            // the device reads the first values of a bigger tensor (HWC):
                            // mvNCCompile 1.x points a TensorFlow `add` of a constant at
                            // the network input (watanabe-cnn-bn)
                            b = self.leading_values(i, s, &b, src.dims, src.shape.clone())?;
                        }
                        if b.dims != src.dims {
                            return Err(err(
                                i,
                                s,
                                format!("{what} {r} is {}, the first is {}", b.dims, src.dims),
                            ));
                        }
                        bottoms.push(b.name);
                    }
                }
                let op = match s.op {
                    StageOp::EltwiseSum => EltwiseOp::Sum,
                    StageOp::EltwiseProd => EltwiseOp::Prod,
                    _ => EltwiseOp::Max,
                };
                Op::Eltwise(EltwiseParams {
                    op,
                    coeffs: Vec::new(),
                })
            }
            StageOp::Scale => {
                let m = self.f32s(i, s, s.taps, out_c, "multipliers")?;
                blobs.extend(Tensor::from_vec(&[out_c], m));
                let bias = self.bias(i, s, out_c)?;
                let bias_term = bias.is_some();
                blobs.extend(bias);
                Op::Scale(ScaleParams {
                    bias_term,
                    ..ScaleParams::default()
                })
            }
            StageOp::PRelu => {
                let v = self.f32s(i, s, s.bias, in_c, "slopes")?;
                blobs.extend(Tensor::from_vec(&[in_c], v));
                Op::PRelu(PReluParams::default())
            }
            StageOp::Relu => Op::Relu(ReluParams::default()),
            StageOp::LeakyRelu => Op::Relu(ReluParams {
                negative_slope: s.post_param_f32(),
            }),
            StageOp::Copy if in_c == out_c => {
                // a plain copy: its output is its input
                self.blobs
                    .insert((s.output.location, s.output.pointer), src);
                return Ok(1);
            }
            StageOp::Copy
                if out_c < in_c
                    && src.shape.len() == 4
                    && s.output_dims.x == s.input_dims.x
                    && s.output_dims.y == s.input_dims.y =>
            {
                // TensorFlow's channel slice `[..., :k]`: the copy reads the first `k`
                // channels of each pixel (mp-conv-deconv's `Slice`)
                let t = self.leading_channels(&src, out_c);
                self.blobs.insert((s.output.location, s.output.pointer), t);
                return Ok(1);
            }
            StageOp::Sigmoid => Op::Sigmoid,
            StageOp::TanH => Op::TanH,
            StageOp::ToPlaneMajor => Op::Flatten(FlattenParams::default()),
            other => {
                return Err(err(
                    i,
                    s,
                    format!("op {} has no IR equivalent", other.toolkit_name()),
                ))
            }
        };
        let name = self.unique(&s.name);
        let mut layer = Layer::new(name.clone(), op, bottoms, vec![name.clone()]);
        layer.blobs = blobs;
        let (shape, dims) = self.check_output(i, s, &layer)?;
        self.layers.push(layer);
        let mut top = Blob { name, dims, shape };
        top = self.post_op(i, s, top)?;
        if into_concat {
            self.parts
                .push((s.output.location, s.output.pointer, s.output_strides.x, top));
        } else {
            self.blobs
                .insert((s.output.location, s.output.pointer), top);
        }
        Ok(1)
    }

    /// Infers the layer's output shape from its bottoms and checks it against the stage's
    /// declared output dims; returns the shape and the device dims it stands for.
    ///
    /// One declared mismatch is accepted: an element-wise last stage (writing the network
    /// output) that declares more values than it has inputs. mvNCCompile 1.x wrote the
    /// final sigmoid of mp-conv-deconv as 65×65×65 for a 65×65×1 input (the "output shape
    /// wrong" bug of that fixture); the real stick returned 274,625 values whose first
    /// 4,225 are the sigmoid of the input (its compare_inference_on_host_and_ncs.out) and
    /// the rest whatever the buffer held. The IR keeps the element-wise shape.
    fn check_output(
        &self,
        i: usize,
        s: &StageRecord,
        layer: &Layer,
    ) -> Result<(Vec<usize>, Xyz), ToIrError> {
        let shapes: Vec<Vec<usize>> = layer
            .bottoms
            .iter()
            .map(|b| {
                self.blobs
                    .values()
                    .chain(&self.derived)
                    .find(|x| &x.name == b)
                    .map(|x| x.shape.clone())
                    .unwrap_or_default()
            })
            .collect();
        let out = layer
            .op
            .output_shapes(&shapes, 1)
            .map_err(|e| err(i, s, e.0))?
            .into_iter()
            .next()
            .unwrap_or_default();
        let dims = match out.as_slice() {
            [_, c, h, w] => Xyz::new(*w as u32, *h as u32, *c as u32),
            [_, k] => Xyz::new(1, 1, *k as u32),
            _ => Xyz::default(),
        };
        let elementwise = matches!(
            layer.op,
            Op::Sigmoid | Op::TanH | Op::Relu(_) | Op::PRelu(_)
        );
        let known_overstatement = elementwise
            && s.output.loc() == Location::Output
            && s.output_dims.volume() > dims.volume();
        if dims != s.output_dims && !known_overstatement {
            return Err(err(
                i,
                s,
                format!(
                    "declares output {} but the operation gives {}",
                    s.output_dims, dims
                ),
            ));
        }
        Ok((out, dims))
    }

    /// A blob holding the first `want.volume()` values, in the device's HWC order, of
    /// `b`: an InnerProduct whose weights select them (each row one 1.0, no bias), which
    /// is exact in f32 and in the fp16 emulation.
    fn leading_values(
        &mut self,
        i: usize,
        s: &StageRecord,
        b: &Blob,
        want: Xyz,
        shape: Vec<usize>,
    ) -> Result<Blob, ToIrError> {
        let (w, h, c) = (b.dims.x as usize, b.dims.y as usize, b.dims.z as usize);
        let n = want.volume() as usize;
        let total = w * h * c;
        // a selection matrix larger than this is no real graph's (watanabe's is 10 × 11,664)
        const MAX_SELECTION: usize = 1 << 26;
        if (b.shape.len() != 4 && b.shape.len() != 2)
            || n > total
            || n.saturating_mul(total) > MAX_SELECTION
        {
            return Err(err(
                i,
                s,
                format!("cannot select the leading {} values of {}", want, b.dims),
            ));
        }
        let mut select = vec![0.0f32; n * total];
        for r in 0..n {
            // HWC index r → (y, x, ch) → the NCHW column the IR flattens it to
            let (ch, x, y) = (r % c, (r / c) % w, r / (c * w));
            let col = if b.shape.len() == 2 {
                r
            } else {
                (ch * h + y) * w + x
            };
            select[r * total + col] = 1.0;
        }
        let name = self.unique(&format!("{}/leading{n}", s.name));
        let mut layer = Layer::new(
            name.clone(),
            Op::InnerProduct(InnerProductParams {
                num_output: n,
                bias_term: false,
                ..InnerProductParams::default()
            }),
            vec![b.name.clone()],
            vec![name.clone()],
        );
        layer.blobs.extend(Tensor::from_vec(&[n, total], select));
        self.layers.push(layer);
        let blob = Blob {
            name,
            dims: want,
            shape,
        };
        self.derived.push(blob.clone());
        Ok(blob)
    }

    /// A blob holding the first `k` channels of `src`: a 1×1 convolution whose weights
    /// select them, exact in f32 and fp16.
    fn leading_channels(&mut self, src: &Blob, k: usize) -> Blob {
        let c = src.dims.z as usize;
        let mut select = vec![0.0f32; k * c];
        for o in 0..k {
            select[o * c + o] = 1.0;
        }
        let name = self.unique(&format!("{}/channels0-{k}", src.name));
        let mut layer = Layer::new(
            name.clone(),
            Op::Convolution(ConvParams {
                num_output: k,
                bias_term: false,
                ..ConvParams::default()
            }),
            vec![src.name.clone()],
            vec![name.clone()],
        );
        layer.blobs.extend(Tensor::from_vec(&[k, c, 1, 1], select));
        self.layers.push(layer);
        let mut shape = src.shape.clone();
        shape[1] = k;
        Blob {
            name,
            dims: Xyz::new(src.dims.x, src.dims.y, k as u32),
            shape,
        }
    }

    /// Adds the layer for a fused post-op and returns the blob it produces.
    fn post_op(&mut self, i: usize, s: &StageRecord, top: Blob) -> Result<Blob, ToIrError> {
        let slope = match s.post_op {
            StageOp::None | StageOp::Bias => return Ok(top),
            StageOp::Relu => 0.0,
            StageOp::LeakyRelu => s.post_param_f32(),
            other => {
                return Err(err(
                    i,
                    s,
                    format!("post-op {} has no IR equivalent", other.toolkit_name()),
                ))
            }
        };
        let name = self.unique(&format!("{}/relu", s.name));
        let mut layer = Layer::new(
            name.clone(),
            Op::Relu(ReluParams {
                negative_slope: slope,
            }),
            vec![top.name.clone()],
            vec![name.clone()],
        );
        layer.caffe_tops = vec![s.name.clone()];
        self.layers.push(layer);
        Ok(Blob { name, ..top })
    }

    /// The four stages mvNCCompile emits for a WITHIN_CHANNEL LRN (§6.2): `<n>_Square`,
    /// `<n>_AvgPool`, `<n>_InnerLRN` and the product `<n>`, folded back into one LRN layer.
    fn within_channel_lrn(&mut self, i: usize) -> Result<usize, ToIrError> {
        let g = self.g;
        let sq = &g.stages[i];
        let bad = |msg: &str| {
            err(
                i,
                sq,
                format!("square stage is not part of a within-channel LRN: {msg}"),
            )
        };
        let [pool, inner, prod] = [i + 1, i + 2, i + 3].map(|j| g.stages.get(j));
        let (Some(pool), Some(inner), Some(prod)) = (pool, inner, prod) else {
            return Err(bad("the graph ends"));
        };
        if pool.op != StageOp::AveragePooling
            || inner.op != StageOp::InnerLrn
            || prod.op != StageOp::EltwiseProd
            || pool.data != sq.output
            || inner.data != pool.output
            || prod.data != sq.data
            || prod.taps != inner.output
        {
            return Err(bad(
                "expected avgpool → innerlrn → eltwise_prod over the same input",
            ));
        }
        let src = self.lookup(i, sq, sq.data, "input")?;
        let p = self.f32s(i + 2, inner, inner.bias, 3, "LRN parameters")?;
        let name = self.unique(&prod.name);
        let layer = Layer::new(
            name.clone(),
            Op::Lrn(LrnParams {
                local_size: pool.radix[0].max(0) as usize,
                k: p[0],
                alpha: p[1],
                beta: p[2],
                region: NormRegion::WithinChannel,
            }),
            vec![src.name.clone()],
            vec![name.clone()],
        );
        let (shape, dims) = self.check_output(i + 3, prod, &layer)?;
        self.layers.push(layer);
        let top = Blob { name, dims, shape };
        let top = self.post_op(i + 3, prod, top)?;
        self.blobs
            .insert((prod.output.location, prod.output.pointer), top);
        Ok(4)
    }
}
