//! Lowering: IR layers → planned stages, in layer order, as mvNCCompile's Caffe parser
//! creates them (§6.2, §6.5). Work buffers are allocated here, when a consumer attaches to
//! its producer (§5.3), because their ids and offsets depend on that order.

use super::pack::Container;
use super::{CompileError, CompileOptions, CompileWarning};
use crate::ir::{BlobShapes, Filler, InputSpec, Layer, Net, Op, Phase};
use crate::ncs::layout::{conv_to_hwck, deconv_to_hwck, depthwise_to_hwk, fc_to_hwck};
use crate::ncs::stage::{
    BufferRef, Location, PadStyle, StageOp, StageRecord, Xyz, DATATYPE_FP16, DEFAULT_OPT_MASK,
    NAME_LEN, STORAGE_ORDER_CAFFE,
};
use crate::ops::conv::ConvParams;
use crate::ops::deconv::DeconvParams;
use crate::ops::eltwise::EltwiseOp;
use crate::ops::lrn::NormRegion;
use crate::ops::pool::PoolMethod;
use half::f16;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

/// Where a stage operand comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Src {
    /// The network input, at a byte offset (channel slices).
    Input { offset: u32 },
    /// The output of an earlier stage.
    Stage(usize),
}

/// A constant array for the data section.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Const {
    /// fp16 values (weights, biases, LRN/PReLU parameters).
    F16(Vec<f16>),
    /// int32 values (dilation, softmax axis).
    I32(Vec<i32>),
}

/// One stage being built; buffer references are resolved by the packer.
#[derive(Debug, Clone)]
pub(super) struct Planned {
    pub rec: StageRecord,
    pub data: Src,
    pub taps_src: Option<Src>,
    pub bias_src: Option<Src>,
    pub taps: Option<Const>,
    pub bias: Option<Const>,
    pub params: Option<Const>,
    pub children: Vec<usize>,
    pub out: Option<BufferRef>,
    /// Bytes between the start of the work allocation and `out.pointer` that are the
    /// leading guard band: NCSDK 1 points past it, NCSDK 2 relocates to the start.
    pub guard: u32,
    pub consumers: usize,
    /// The concatenation this stage writes a channel range of, if any.
    pub concat: Option<usize>,
}

/// A Concat (axis 1) lowered as the toolkit does it: no stage, one work buffer that every
/// member writes at its channel offset (NCSDK2_GRAPH_FORMAT.md §6.3 step 5).
#[derive(Debug, Clone)]
pub(super) struct ConcatPlan {
    /// Member stages and their channel offsets, in bottom order.
    pub members: Vec<(usize, u32)>,
    /// The concatenated tensor (W, H, C_total).
    pub dims: Xyz,
}

/// The lowered net: stages in record order, the work arena, the data-section size.
#[derive(Debug)]
pub(super) struct Plan {
    pub name: String,
    pub stages: Vec<Planned>,
    pub arena: u64,
    pub const_bytes: u64,
}

/// A tensor as the device sees it.
#[derive(Debug, Clone, Copy)]
struct Producer {
    src: Src,
    dims: Xyz,
    strides: Xyz,
}

/// Dense HWC strides of a tensor: (2Z, 2Z·X, 2).
pub(super) fn dense(d: Xyz) -> Xyz {
    Xyz::new(2 * d.z, 2 * d.z * d.x, 2)
}

fn align64(n: u64) -> u64 {
    n.div_ceil(64) * 64
}

fn unsupported(l: &Layer, why: impl Into<String>) -> CompileError {
    CompileError::Unsupported {
        layer: l.name.clone(),
        kind: l.op.caffe_type().into(),
        why: why.into(),
    }
}

fn limit(l: &Layer, what: impl Into<String>) -> CompileError {
    CompileError::Limit {
        layer: l.name.clone(),
        what: what.into(),
    }
}

/// Device dims of an IR blob: N=1 C×H×W → (W, H, C); a flat 1×K → (1, 1, K).
fn dims_of(l: &Layer, shape: &[usize]) -> Result<Xyz, CompileError> {
    let fits =
        |v: usize| u32::try_from(v).map_err(|_| limit(l, format!("dimension {v} too large")));
    match shape {
        [1, c, h, w] => Ok(Xyz::new(fits(*w)?, fits(*h)?, fits(*c)?)),
        [1, k] => Ok(Xyz::new(1, 1, fits(*k)?)),
        _ => Err(unsupported(
            l,
            format!("blob shape {shape:?}: the NCS handles N=1 C×H×W or 1×K tensors"),
        )),
    }
}

/// The toolkit's pooling size (§6.4): `min(ceil((X+2p−k)/s)+1, ceil((X+p)/s))`.
pub(super) fn toolkit_pool_out(x: usize, k: usize, s: usize, p: usize) -> Option<usize> {
    let span = (x + 2 * p).checked_sub(k)?;
    let s = s.max(1);
    Some((span.div_ceil(s) + 1).min((x + p).div_ceil(s)))
}

pub(super) fn lower(
    net: &Net,
    opts: &CompileOptions,
    container: Container,
    warnings: &mut Vec<CompileWarning>,
) -> Result<Plan, CompileError> {
    // the deploy (TEST) view; layers are copied without their weights, which are read
    // from `net` in place (AgeNet's 45 MB need not be cloned)
    let mut inputs: Vec<InputSpec> = net.inputs.clone();
    let mut layers = Vec::with_capacity(net.layers.len());
    let mut orig: Vec<&Layer> = Vec::with_capacity(net.layers.len());
    for l in &net.layers {
        if l.op.is_train_only() || l.phase == Some(Phase::Train) {
            continue;
        }
        match &l.op {
            Op::Input { shapes } => {
                for (t, s) in l.tops.iter().zip(shapes) {
                    inputs.push(InputSpec {
                        name: t.clone(),
                        shape: s.clone(),
                    });
                }
            }
            _ => {
                layers.push(Layer {
                    name: l.name.clone(),
                    op: l.op.clone(),
                    bottoms: l.bottoms.clone(),
                    tops: l.tops.clone(),
                    caffe_tops: l.caffe_tops.clone(),
                    blobs: Vec::new(),
                    params: Vec::new(),
                    loss_weight: Vec::new(),
                    phase: l.phase,
                });
                orig.push(l);
            }
        }
    }
    if inputs.len() != 1 {
        return Err(CompileError::Inputs {
            found: inputs.iter().map(|i| i.name.clone()).collect(),
        });
    }
    if let Some([w, h]) = opts.input_size {
        let name = inputs[0].name.clone();
        let s = &mut inputs[0].shape;
        if s.len() == 4 && (s[2] != h || s[3] != w) {
            warnings.push(CompileWarning {
                layer: String::new(),
                message: format!(
                    "-is {w} {h}: input '{name}' resized from {}x{}; mvNCCompile ignores -is for Caffe models",
                    s[3], s[2]
                ),
            });
            s[2] = h;
            s[3] = w;
        }
    }
    let work = Net {
        name: net.name.clone(),
        inputs,
        layers,
        precision: net.precision,
    };
    let shapes = work.infer_shapes()?;
    let (first, input_blob) = cut_start(&work, opts)?;
    let last = cut_end(&work, opts, first, warnings)?;
    let live = live_layers(&work, first, last, warnings);
    let input_shape = shapes.get(&input_blob).cloned().unwrap_or_default();
    if input_shape.len() != 4 || input_shape[0] != 1 {
        return Err(CompileError::InputShape {
            input: input_blob,
            shape: input_shape,
        });
    }
    let mut lw = Lowering {
        shapes: &shapes,
        producers: HashMap::new(),
        stages: Vec::new(),
        arena: 0,
        next_work: Location::FIRST_WORK,
        const_bytes: 0,
        concats: Vec::new(),
        container,
        warnings,
    };
    lw.input_stage(&work, &input_blob)?;
    for &i in &live {
        let l = orig[i];
        let bottoms: Vec<Vec<usize>> = l.bottoms.iter().map(|b| lw.shape(b).to_vec()).collect();
        work.check_weights(l, &bottoms)?;
        lw.layer(l)?;
    }
    let out_layer = &work.layers[last];
    let out_blob = out_layer.tops.first().cloned().unwrap_or_default();
    match lw.producers.get(&out_blob).map(|p| p.src) {
        Some(Src::Stage(j)) if lw.stages[j].concat.is_some() => lw.concat_output(out_layer, j)?,
        Some(Src::Stage(j)) if j + 1 == lw.stages.len() && j > 0 => {}
        _ => {
            return Err(unsupported(
                out_layer,
                "the output is not computed by the last stage (it is the input, or an alias of an earlier tensor)",
            ))
        }
    }
    let Lowering {
        stages,
        arena,
        const_bytes,
        warnings,
        ..
    } = lw;
    let live_layers: Vec<&Layer> = live.iter().map(|&i| orig[i]).collect();
    warnings.extend(super::bounds::overflow_warnings(
        &live_layers,
        &input_blob,
        opts.input_range,
        &shapes,
    ));
    Ok(Plan {
        name: work.name,
        stages,
        arena,
        const_bytes,
    })
}

/// `-in`: index of the first kept layer and the blob that becomes the input.
fn cut_start(net: &Net, opts: &CompileOptions) -> Result<(usize, String), CompileError> {
    let Some(name) = &opts.input_layer else {
        return Ok((0, net.inputs[0].name.clone()));
    };
    let mut idx = net
        .layers
        .iter()
        .position(|l| &l.name == name)
        .ok_or_else(|| CompileError::UnknownLayer {
            option: "-in",
            name: name.clone(),
        })?;
    let l = &net.layers[idx];
    let mut blob = l
        .bottoms
        .first()
        .cloned()
        .ok_or_else(|| unsupported(l, "-in names a layer without a bottom"))?;
    // a blob that comes out of a Split: start before the Split
    while let Some(j) = net.layers[..idx]
        .iter()
        .rposition(|p| p.tops.contains(&blob) && matches!(p.op, Op::Split))
    {
        idx = j;
        blob = net.layers[j].bottoms[0].clone();
    }
    Ok((idx, blob))
}

/// `-on`: index of the last kept layer (default: producer of the first network output).
fn cut_end(
    net: &Net,
    opts: &CompileOptions,
    first: usize,
    warnings: &mut Vec<CompileWarning>,
) -> Result<usize, CompileError> {
    let idx = match &opts.output_layer {
        Some(name) => {
            let idx = net
                .layers
                .iter()
                .position(|l| &l.name == name)
                .ok_or_else(|| CompileError::UnknownLayer {
                    option: "-on",
                    name: name.clone(),
                })?;
            let l = &net.layers[idx];
            if l.caffe_tops.first() != Some(&l.name) {
                warnings.push(CompileWarning {
                    layer: l.name.clone(),
                    message: format!(
                        "-on names layer '{}' whose top is '{}'",
                        l.name,
                        l.caffe_tops.first().cloned().unwrap_or_default()
                    ),
                });
            }
            idx
        }
        None => {
            let out = net.outputs().into_iter().next().unwrap_or_default();
            net.layers
                .iter()
                .position(|l| l.tops.contains(&out))
                .ok_or_else(|| CompileError::Inputs {
                    found: net.inputs.iter().map(|i| i.name.clone()).collect(),
                })?
        }
    };
    if idx < first {
        let l = &net.layers[idx];
        return Err(unsupported(
            l,
            "the output layer comes before the -in layer",
        ));
    }
    Ok(idx)
}

/// Layers in `first..=last` that contribute to the output, in order; the others are
/// reported (mvNCCompile would emit stages whose results nobody reads).
fn live_layers(
    net: &Net,
    first: usize,
    last: usize,
    warnings: &mut Vec<CompileWarning>,
) -> Vec<usize> {
    let mut needed: HashSet<&str> = net.layers[last].tops.iter().map(String::as_str).collect();
    let mut keep = vec![false; last + 1];
    for i in (first..=last).rev() {
        let l = &net.layers[i];
        if i == last || l.tops.iter().any(|t| needed.contains(t.as_str())) {
            keep[i] = true;
            needed.extend(l.bottoms.iter().map(String::as_str));
        }
    }
    let dropped: Vec<&str> = (first..=last)
        .filter(|&i| !keep[i])
        .map(|i| net.layers[i].name.as_str())
        .collect();
    if !dropped.is_empty() {
        warnings.push(CompileWarning {
            layer: String::new(),
            message: format!(
                "layers not contributing to the output are not compiled: {}",
                dropped.join(", ")
            ),
        });
    }
    (first..=last).filter(|&i| keep[i]).collect()
}

struct Lowering<'a> {
    shapes: &'a BlobShapes,
    producers: HashMap<String, Producer>,
    stages: Vec<Planned>,
    arena: u64,
    next_work: u16,
    const_bytes: u64,
    concats: Vec<ConcatPlan>,
    /// NCSDK 2 has no third eltwise operand: a 3-bottom Eltwise becomes two stages.
    container: Container,
    warnings: &'a mut Vec<CompileWarning>,
}

/// A record with the values common to every Caffe-compiled stage (§6.5).
fn record(name: &str, op: StageOp, input: Xyz, in_strides: Xyz, output: Xyz) -> StageRecord {
    StageRecord {
        name: name.to_string(),
        op,
        opt_mask: DEFAULT_OPT_MASK,
        radix: [1, 1],
        stride: [1, 1],
        pad: [0, 0],
        pad_style: PadStyle::Caffe,
        input_dims: input,
        taps_dims: Xyz::new(0, input.z, output.z),
        output_dims: output,
        input_strides: in_strides,
        taps_strides: Xyz::new(2 * output.z, 2 * output.z, 2),
        output_strides: dense(output),
        datatype: DATATYPE_FP16,
        precision: DATATYPE_FP16,
        storage_order: STORAGE_ORDER_CAFFE,
        data: BufferRef::NONE,
        taps: BufferRef::NONE,
        bias: BufferRef::NONE,
        op_params: BufferRef::NONE,
        output: BufferRef::NONE,
        pre_op: StageOp::None,
        post_op: StageOp::None,
        post_param: 0,
        post_stride: [0, 0],
    }
}

/// fp16 round-to-nearest-even of every value (half's slice conversion uses the F16C
/// instructions when the CPU has them).
fn to_f16(v: &[f32]) -> Vec<f16> {
    use half::slice::HalfFloatSliceExt;
    let mut out = vec![f16::ZERO; v.len()];
    out.convert_from_f32_slice(v);
    out
}

impl Lowering<'_> {
    fn shape(&self, blob: &str) -> &[usize] {
        self.shapes.get(blob).map(Vec::as_slice).unwrap_or(&[])
    }

    fn producer(&self, l: &Layer, i: usize) -> Result<Producer, CompileError> {
        let blob = l
            .bottoms
            .get(i)
            .ok_or_else(|| unsupported(l, format!("expects at least {} bottom(s)", i + 1)))?;
        self.producers
            .get(blob)
            .copied()
            .ok_or_else(|| CompileError::Cut {
                layer: l.name.clone(),
                blob: blob.clone(),
            })
    }

    fn out_dims(&self, l: &Layer) -> Result<Xyz, CompileError> {
        let top = l.tops.first().map(String::as_str).unwrap_or("");
        dims_of(l, self.shape(top))
    }

    /// A stage name as the 100-byte field will hold it.
    fn stage_name(&mut self, l: &Layer, name: &str) -> Result<String, CompileError> {
        if !name.is_ascii() {
            return Err(limit(l, format!("stage name '{name}' is not ASCII")));
        }
        if name.len() > NAME_LEN {
            self.warnings.push(CompileWarning {
                layer: l.name.clone(),
                message: format!(
                    "stage name is {} bytes; truncated to {NAME_LEN} as mvNCCompile does",
                    name.len()
                ),
            });
            return Ok(name[..NAME_LEN].to_string());
        }
        Ok(name.to_string())
    }

    /// Counts a constant toward the file size before it is built (§3: 320 MiB limit).
    fn reserve(&mut self, bytes: u64) -> Result<(), CompileError> {
        self.const_bytes += align64(bytes);
        let total =
            self.const_bytes + super::super::header::buffer_start_for(self.stages.len() as u64 + 1);
        if total > super::MAX_GRAPH_BYTES {
            return Err(CompileError::GraphTooLarge {
                bytes: total,
                limit: super::MAX_GRAPH_BYTES,
            });
        }
        Ok(())
    }

    /// Learned blob `i` of a layer, or its constant filler when the weights are absent
    /// (an empty caffemodel: Caffe's fillers, constant 0 by default).
    fn weights<'l>(
        &self,
        l: &'l Layer,
        i: usize,
        count: usize,
        filler: &Filler,
    ) -> Result<Cow<'l, [f32]>, CompileError> {
        match l.blobs.get(i) {
            Some(t) if t.len() == count => Ok(Cow::Borrowed(&t.data)),
            Some(t) => Err(limit(
                l,
                format!("weight blob {i} has {} values, expected {count}", t.len()),
            )),
            None => match filler {
                Filler::Constant { value } => Ok(Cow::Owned(vec![*value; count])),
                other => Err(CompileError::MissingWeights {
                    layer: l.name.clone(),
                    filler: other.caffe_type().into(),
                }),
            },
        }
    }

    fn i32_param(&mut self, v: i32) -> Result<Option<Const>, CompileError> {
        self.reserve(4)?;
        Ok(Some(Const::I32(vec![v])))
    }

    /// Size of the guarded work buffer a producer of dims `d` receives (§5.3): the data
    /// plus a guard of `2·(W+1)·C·2` bytes on each side, rounded up to 64.
    fn buffer_size(d: Xyz) -> (u64, u64) {
        let (w, h, c) = (d.x as u64, d.y as u64, d.z as u64);
        let pad = 2 * (w + 1) * c * 2;
        (pad, align64(c * h * w * 2 + 2 * pad))
    }

    /// Refuses, before any weights are built, a consumer whose producer's buffer would
    /// push the arena over the limit.
    fn precheck(&self, src: Src) -> Result<(), CompileError> {
        if let Src::Stage(j) = src {
            let s = &self.stages[j];
            let extra = if s.out.is_none() {
                Self::buffer_size(s.rec.output_dims).1
            } else {
                0
            };
            if self.arena + extra > super::MAX_WORK_BYTES {
                return Err(CompileError::WorkTooLarge {
                    bytes: self.arena + extra,
                    limit: super::MAX_WORK_BYTES,
                });
            }
        }
        Ok(())
    }

    /// Gives producer `j` a guarded work buffer (§5.3) if it has none yet; refuses an
    /// arena over the toolkit's 100 MiB before anything large is built.
    fn attach(&mut self, src: Src) -> Result<(), CompileError> {
        let Src::Stage(j) = src else { return Ok(()) };
        if let Some(ci) = self.stages[j].concat {
            return self.attach_concat(ci);
        }
        let s = &mut self.stages[j];
        s.consumers += 1;
        if s.out.is_some() {
            return Ok(());
        }
        let (pad, size) = Self::buffer_size(s.rec.output_dims);
        let pointer = self.arena + pad;
        self.arena += size;
        s.guard = pad.min(u32::MAX as u64) as u32;
        s.out = Some(BufferRef::new(
            pointer.min(u32::MAX as u64) as u32,
            self.next_work,
        ));
        self.next_work = self.next_work.saturating_add(1);
        if self.arena > super::MAX_WORK_BYTES {
            return Err(CompileError::WorkTooLarge {
                bytes: self.arena,
                limit: super::MAX_WORK_BYTES,
            });
        }
        Ok(())
    }

    /// Allocates the shared buffer of concatenation `ci` when its first consumer attaches
    /// (§6.3 step 5): the toolkit sizes it from (H, align(W, 8), C_total) read as (C, H, W),
    /// so `pad = 2·(C_total + 1)·H·2` and `size = align64(H·align(W,8)·C_total·2 + 2·pad)`;
    /// member i writes at `base + 2·(channels before it)`.
    fn attach_concat(&mut self, ci: usize) -> Result<(), CompileError> {
        let c = &self.concats[ci];
        let first = c.members[0].0;
        if self.stages[first].out.is_some() {
            return Ok(());
        }
        let (w, h, ct) = (c.dims.x as u64, c.dims.y as u64, c.dims.z as u64);
        let pad = 2 * (ct + 1) * h * 2;
        let size = align64(h * w.div_ceil(8) * 8 * ct * 2 + 2 * pad);
        let base = self.arena;
        self.arena += size;
        if self.arena > super::MAX_WORK_BYTES || base + pad > u32::MAX as u64 {
            return Err(CompileError::WorkTooLarge {
                bytes: self.arena,
                limit: super::MAX_WORK_BYTES,
            });
        }
        let id = self.next_work;
        self.next_work = self.next_work.saturating_add(1);
        for &(j, ch) in &self.concats[ci].members.clone() {
            let s = &mut self.stages[j];
            s.guard = pad as u32;
            s.out = Some(BufferRef::new((base + pad) as u32 + 2 * ch, id));
        }
        Ok(())
    }

    /// A Concat as the network output (NCS_GRAPH_FORMAT.md §5.4, NCSDK2_GRAPH_FORMAT.md
    /// §6.3 step 5 and §8.1): no buffer is allocated; every member writes location 2 at
    /// `2·channel_offset`, keeping the concatenation's strides. The last stage must be a
    /// member (it is whenever every stage contributes to the output), so that the host's
    /// result size `outputDimX·outputDimY·outputStrideX/2` of the last record covers the
    /// whole concatenation.
    fn concat_output(&mut self, l: &Layer, member: usize) -> Result<(), CompileError> {
        let Some(ci) = self.stages[member].concat else {
            return Ok(());
        };
        let members = self.concats[ci].members.clone();
        let last = self.stages.len() - 1;
        if !members.iter().any(|&(j, _)| j == last) {
            return Err(unsupported(
                l,
                format!(
                    "the output Concat's last member is not the last stage ('{}' runs after it)",
                    self.stages[last].rec.name
                ),
            ));
        }
        for (j, ch) in members {
            let s = &mut self.stages[j];
            if s.out.is_some() {
                // a consumer attached to the concatenation: it is not only the output
                return Err(unsupported(
                    l,
                    "the output Concat is also read by a stage; the NCS output buffer cannot be read back",
                ));
            }
            s.guard = 0;
            s.out = Some(BufferRef::new(2 * ch, Location::OUTPUT));
        }
        Ok(())
    }

    /// The stage a consumer of `src` hangs under in the stage tree: the producer, or the
    /// last member of a concatenation (§10 step 6).
    fn tree_parent(&self, src: Src) -> Option<usize> {
        let Src::Stage(j) = src else { return None };
        Some(match self.stages[j].concat {
            Some(ci) => self.concats[ci]
                .members
                .iter()
                .map(|m| m.0)
                .max()
                .unwrap_or(j),
            None => j,
        })
    }

    /// Concat along channels: no stage. Every bottom must be a stage's fresh output (not
    /// yet read, not already a concat member) of the same width and height; the members'
    /// output strides become those of the joined tensor.
    fn concat(&mut self, l: &Layer, axis: i32) -> Result<(), CompileError> {
        let nd = self.shape(&l.bottoms[0]).len();
        let axis = crate::ops::canonical_axis(axis, nd).map_err(|e| unsupported(l, e.0))?;
        if axis != 1 || nd != 4 {
            return Err(unsupported(
                l,
                "only a channel (axis 1) Concat of C×H×W tensors maps to the NCS",
            ));
        }
        let mut members = Vec::new();
        let mut total = 0u32;
        let mut hw = None;
        for i in 0..l.bottoms.len() {
            let p = self.producer(l, i)?;
            let j = match p.src {
                Src::Stage(j) if j > 0 => j,
                _ => {
                    return Err(unsupported(
                        l,
                        format!(
                        "bottom '{}' is the network input; the NCS concatenates stage outputs only",
                        l.bottoms[i]
                    ),
                    ))
                }
            };
            let s = &self.stages[j];
            if s.concat.is_some()
                || s.out.is_some()
                || s.consumers > 0
                || members.iter().any(|&(m, _)| m == j)
            {
                return Err(unsupported(l, format!("bottom '{}' is already read elsewhere or part of another concat; mvNCCompile would need a copy stage", l.bottoms[i])));
            }
            let d = p.dims;
            if *hw.get_or_insert((d.x, d.y)) != (d.x, d.y) {
                return Err(unsupported(l, "bottoms differ in width or height"));
            }
            members.push((j, total));
            total += d.z;
        }
        let (w, h) = hw.unwrap_or((1, 1));
        let dims = Xyz::new(w, h, total);
        let strides = dense(dims);
        let ci = self.concats.len();
        for &(j, _) in &members {
            let s = &mut self.stages[j];
            s.rec.output_strides = strides;
            s.concat = Some(ci);
            s.consumers += 1;
        }
        let first = members[0].0;
        self.concats.push(ConcatPlan { members, dims });
        let p = Producer {
            src: Src::Stage(first),
            dims,
            strides,
        };
        for t in &l.tops {
            self.producers.insert(t.clone(), p);
        }
        Ok(())
    }

    /// Creates a stage, attaching it to its producers in operand order.
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        rec: StageRecord,
        data: Src,
        taps_src: Option<Src>,
        bias_src: Option<Src>,
        taps: Option<Const>,
        bias: Option<Const>,
        params: Option<Const>,
    ) -> Result<usize, CompileError> {
        let mut parent = 0;
        for src in [Some(data), taps_src, bias_src].into_iter().flatten() {
            self.attach(src)?;
            if let Some(j) = self.tree_parent(src) {
                parent = parent.max(j);
            }
        }
        let idx = self.stages.len();
        if idx > 0 {
            self.stages[parent].children.push(idx);
        }
        self.stages.push(Planned {
            rec,
            data,
            taps_src,
            bias_src,
            taps,
            bias,
            params,
            children: Vec::new(),
            out: None,
            guard: 0,
            consumers: 0,
            concat: None,
        });
        Ok(idx)
    }

    fn set_top(&mut self, l: &Layer, idx: usize) {
        let rec = &self.stages[idx].rec;
        let p = Producer {
            src: Src::Stage(idx),
            dims: rec.output_dims,
            strides: rec.output_strides,
        };
        for t in &l.tops {
            self.producers.insert(t.clone(), p);
        }
    }

    /// Record 0: the input stage (op 5) named after the input blob (§6.2).
    fn input_stage(&mut self, net: &Net, blob: &str) -> Result<(), CompileError> {
        let shape = self.shape(blob).to_vec();
        let fake = Layer::new(blob, Op::Split, vec![], vec![blob.to_string()]);
        let d = dims_of(&fake, &shape)?;
        let name = self.stage_name(&fake, net.caffe_name_of(blob))?;
        let mut rec = record(&name, StageOp::None, d, dense(d), d);
        rec.taps_dims = Xyz::new(1, d.z, d.z);
        rec.data = BufferRef::new(0, Location::INPUT);
        rec.output = BufferRef::new(0, Location::OUTPUT);
        self.stages.push(Planned {
            rec,
            data: Src::Input { offset: 0 },
            taps_src: None,
            bias_src: None,
            taps: None,
            bias: None,
            params: None,
            children: Vec::new(),
            out: Some(BufferRef::new(0, Location::OUTPUT)),
            guard: 0,
            consumers: 0,
            concat: None,
        });
        self.producers.insert(
            blob.to_string(),
            Producer {
                src: Src::Input { offset: 0 },
                dims: d,
                strides: dense(d),
            },
        );
        Ok(())
    }

    fn layer(&mut self, l: &Layer) -> Result<(), CompileError> {
        match &l.op {
            Op::Convolution(_) => self.convolution(l),
            Op::Pooling(_) => self.pooling(l),
            Op::Lrn(_) => self.lrn(l),
            Op::Relu(p) => self.relu(l, p.negative_slope),
            Op::InnerProduct(_) => self.inner_product(l),
            Op::Softmax(_) => self.softmax(l),
            Op::Eltwise(_) => self.eltwise(l),
            Op::BatchNorm(_) | Op::Scale(_) => self.batchnorm_or_scale(l),
            Op::PRelu(_) => self.prelu(l),
            Op::Sigmoid => self.simple(l, StageOp::Sigmoid),
            Op::TanH => self.simple(l, StageOp::TanH),
            Op::Flatten(_) => self.flatten(l),
            Op::Dropout(_) | Op::Split => {
                // no stage: every top is the bottom's tensor
                let p = self.producer(l, 0)?;
                for t in &l.tops {
                    self.producers.insert(t.clone(), p);
                }
                Ok(())
            }
            Op::Concat(p) => self.concat(l, p.axis),
            Op::Reshape(_) => Err(unsupported(l, "Reshape is not supported")),
            Op::Deconvolution(_) => self.deconvolution(l),
            Op::Input { .. }
            | Op::Data(_)
            | Op::SoftmaxWithLoss(_)
            | Op::Accuracy(_) => Err(unsupported(
                l,
                "the NCS firmware has no such layer (train/test-only layers cannot be compiled)",
            )),
        }
    }

    /// Caffe Deconvolution → stage op 22, Caffe pad style, with the conv stage's header
    /// fields and opParams {dilation} (NCS_GRAPH_FORMAT.md §5.3, "Conv/deconv opParams").
    /// The taps are the device layout the real TensorFlow-compiled graphs hold —
    /// `[ky][kx][c_in][c_out]` with the kernel rotated 180° (`layout::deconv_to_hwck`,
    /// checked against the frozen models' filters in both generations). No ×8 tap padding:
    /// the spec states it for conv and FC only.
    fn deconvolution(&mut self, l: &Layer) -> Result<(), CompileError> {
        let Op::Deconvolution(DeconvParams(p)) = &l.op else {
            unreachable!("dispatched on Deconvolution")
        };
        let src = self.producer(l, 0)?;
        let input = src.dims;
        let out = self.out_dims(l)?;
        let (c, k) = (input.z as usize, p.num_output);
        let [kh, kw] = p.kernel;
        check_window(l, p)?;
        if p.group != 1 {
            return Err(unsupported(
                l,
                format!("grouped deconvolution (group {}) has no NCS stage", p.group),
            ));
        }
        let name = self.stage_name(l, &l.name)?;
        let mut rec = record(&name, StageOp::Deconvolution, input, src.strides, out);
        rec.radix = [kw as i8, kh as i8];
        rec.stride = [p.stride[1] as u8, p.stride[0] as u8];
        rec.pad = [p.pad[1] as u8, p.pad[0] as u8];
        rec.taps_dims = Xyz::new((kh * kw) as u32, c as u32, k as u32);
        let w_count = c * k * kh * kw;
        self.reserve(2 * w_count as u64)?;
        let w = to_f16(&self.weights(l, 0, w_count, &p.weight_filler)?);
        let taps = Some(Const::F16(deconv_to_hwck(&w, c, k, kh, kw)));
        let bias = self.stage_bias(l, &mut rec, p.bias_term, k, &p.bias_filler)?;
        let params = self.i32_param(p.dilation[0] as i32)?;
        let idx = self.push(rec, src.src, None, None, taps, bias, params)?;
        self.set_top(l, idx);
        Ok(())
    }

    /// The fp16 bias (blob 1, or its filler) of a conv, deconv or FC stage with `k`
    /// outputs, which also makes the stage's post-op Bias (postOp 9); `None` without a bias
    /// term.
    fn stage_bias(
        &mut self,
        l: &Layer,
        rec: &mut StageRecord,
        bias_term: bool,
        k: usize,
        filler: &Filler,
    ) -> Result<Option<Const>, CompileError> {
        if !bias_term {
            return Ok(None);
        }
        rec.post_op = StageOp::Bias;
        self.reserve(2 * k as u64)?;
        let b = self.weights(l, 1, k, filler)?;
        Ok(Some(Const::F16(to_f16(&b))))
    }

    fn convolution(&mut self, l: &Layer) -> Result<(), CompileError> {
        let Op::Convolution(p) = &l.op else {
            unreachable!("dispatched on Convolution")
        };
        let src = self.producer(l, 0)?;
        let input = src.dims;
        let out = self.out_dims(l)?;
        let (c, k) = (input.z as usize, p.num_output);
        let [kh, kw] = p.kernel;
        check_window(l, p)?;
        if [kh, kw] == [1, 1] && p.pad != [0, 0] {
            return Err(unsupported(
                l,
                "a 1×1 kernel with padding is rejected by mvNCCompile",
            ));
        }
        let depthwise = p.group > 1 && p.group == c && k % c == 0;
        if p.group > 1 && !depthwise {
            return Err(unsupported(
                l,
                format!("grouped convolution (group {}) needs channel slices and a concat, which this compiler does not emit", p.group),
            ));
        }
        let name = self.stage_name(l, &l.name)?;
        let fc_like = !depthwise && [kh, kw] == [1, 1] && input.x == 1 && input.y == 1;
        let (op, mut rec) = if fc_like {
            (
                StageOp::FullyConnected,
                record(&name, StageOp::FullyConnected, input, src.strides, out),
            )
        } else if depthwise {
            (
                StageOp::DepthwiseConvolution,
                record(
                    &name,
                    StageOp::DepthwiseConvolution,
                    input,
                    src.strides,
                    out,
                ),
            )
        } else {
            (
                StageOp::Convolution,
                record(&name, StageOp::Convolution, input, src.strides, out),
            )
        };
        if !fc_like {
            rec.radix = [kw as i8, kh as i8];
            rec.stride = [p.stride[1] as u8, p.stride[0] as u8];
            rec.pad = [p.pad[1] as u8, p.pad[0] as u8];
            if !p.is_symmetric() {
                // the device's TensorFlow SAME style (padStyle 3) derives the pads from the
                // dims and puts the odd one at the end; nothing else is asymmetric
                let ins = [input.y as usize, input.x as usize];
                let outs = [out.y as usize, out.x as usize];
                if !is_tf_same(p, ins, outs) {
                    return Err(unsupported(
                        l,
                        format!(
                            "padding begin {:?} / end {:?} is neither symmetric (Caffe) nor TensorFlow SAME",
                            p.pad,
                            p.end_pad()
                        ),
                    ));
                }
                rec.pad_style = PadStyle::TfSame;
                rec.pad = [0, 0];
            }
        }
        rec.taps_dims = Xyz::new((kh * kw) as u32, c as u32, k as u32);
        let w_count = if depthwise {
            k * kh * kw
        } else {
            k * c * kh * kw
        };
        self.reserve(2 * w_count as u64)?;
        let w = self.weights(l, 0, w_count, &p.weight_filler)?;
        let w = to_f16(&w);
        let taps = if depthwise {
            depthwise_to_hwk(&w, k, kh, kw)
        } else {
            conv_to_hwck(&w, k, c, kh, kw)
        };
        let taps = Some(Const::F16(taps));
        let bias = self.stage_bias(l, &mut rec, p.bias_term, k, &p.bias_filler)?;
        let params = if op == StageOp::Convolution {
            self.i32_param(p.dilation[0] as i32)?
        } else {
            None
        };
        let idx = self.push(rec, src.src, None, None, taps, bias, params)?;
        self.set_top(l, idx);
        Ok(())
    }

    fn pooling(&mut self, l: &Layer) -> Result<(), CompileError> {
        let Op::Pooling(p) = &l.op else {
            unreachable!("dispatched on Pooling")
        };
        let src = self.producer(l, 0)?;
        let input = src.dims;
        let out = self.out_dims(l)?;
        let (kernel, stride, pad) = if p.global {
            ([input.y as usize, input.x as usize], p.stride, [0, 0])
        } else {
            (p.kernel, p.stride, p.pad)
        };
        if kernel.iter().any(|&k| k > 127) {
            return Err(limit(
                l,
                format!(
                    "pooling window {}x{} exceeds the 127 a signed radix byte holds",
                    kernel[0], kernel[1]
                ),
            ));
        }
        if stride.iter().chain(&pad).any(|&v| v > 255) {
            return Err(limit(l, "stride and pad must fit a byte (≤ 255)"));
        }
        let ncs = [
            toolkit_pool_out(input.y as usize, kernel[0], stride[0], pad[0]),
            toolkit_pool_out(input.x as usize, kernel[1], stride[1], pad[1]),
        ];
        if ncs != [Some(out.y as usize), Some(out.x as usize)] {
            return Err(unsupported(
                l,
                format!(
                    "the NCS computes a {:?} output where Caffe computes {}x{} (round mode or a window smaller than the stride)",
                    ncs, out.y, out.x
                ),
            ));
        }
        let op = match p.method {
            PoolMethod::Max => StageOp::MaxPooling,
            PoolMethod::Ave => StageOp::AveragePooling,
        };
        let name = self.stage_name(l, &l.name)?;
        let mut rec = record(&name, op, input, src.strides, out);
        rec.radix = [kernel[1] as i8, kernel[0] as i8];
        rec.stride = [stride[1] as u8, stride[0] as u8];
        rec.pad = [pad[1] as u8, pad[0] as u8];
        // Caffe forbids kernel_size with global_pooling, so the toolkit's k_h·k_w is 0
        let taps_x = if p.global {
            0
        } else {
            (kernel[0] * kernel[1]) as u32
        };
        rec.taps_dims = Xyz::new(taps_x, input.z, input.z);
        let idx = self.push(rec, src.src, None, None, None, None, None)?;
        self.set_top(l, idx);
        Ok(())
    }

    fn lrn(&mut self, l: &Layer) -> Result<(), CompileError> {
        let Op::Lrn(p) = &l.op else {
            unreachable!("dispatched on LRN")
        };
        let src = self.producer(l, 0)?;
        let d = src.dims;
        if p.local_size > 127 {
            return Err(limit(l, "local_size exceeds 127"));
        }
        self.reserve(8)?;
        let params = Const::F16(to_f16(&[p.k, p.alpha, p.beta, 0.0]));
        let n = p.local_size;
        match p.region {
            NormRegion::AcrossChannels => {
                let name = self.stage_name(l, &l.name)?;
                let mut rec = record(&name, StageOp::Lrn, d, src.strides, d);
                rec.radix = [n as i8, 0];
                let idx = self.push(rec, src.src, None, None, None, Some(params), None)?;
                self.set_top(l, idx);
            }
            NormRegion::WithinChannel => {
                // x² → n×n average (pad (n−1)/2) → (k + α·avg)^−β → x · that
                let sq_name = self.stage_name(l, &format!("{}_Square", l.name))?;
                let sq = self.push(
                    record(&sq_name, StageOp::Square, d, src.strides, d),
                    src.src,
                    None,
                    None,
                    None,
                    None,
                    None,
                )?;
                let pool_name = self.stage_name(l, &format!("{}_AvgPool", l.name))?;
                let mut pool = record(&pool_name, StageOp::AveragePooling, d, dense(d), d);
                let half = ((n - 1) / 2) as u8;
                pool.radix = [n as i8, n as i8];
                pool.pad = [half, half];
                pool.taps_dims = Xyz::new((n * n) as u32, d.z, d.z);
                let pool = self.push(pool, Src::Stage(sq), None, None, None, None, None)?;
                let inner_name = self.stage_name(l, &format!("{}_InnerLRN", l.name))?;
                let inner = self.push(
                    record(&inner_name, StageOp::InnerLrn, d, dense(d), d),
                    Src::Stage(pool),
                    None,
                    None,
                    None,
                    Some(params),
                    None,
                )?;
                let name = self.stage_name(l, &l.name)?;
                let prod = self.push(
                    record(&name, StageOp::EltwiseProd, d, src.strides, d),
                    src.src,
                    Some(Src::Stage(inner)),
                    None,
                    None,
                    None,
                    None,
                )?;
                self.set_top(l, prod);
            }
        }
        Ok(())
    }

    /// Fuses a ReLU into the stage producing its bottom (§6.2): postOp 6, or 42 with the
    /// slope; the stage takes the ReLU's top as its name; a bias stays applied.
    fn relu(&mut self, l: &Layer, slope: f32) -> Result<(), CompileError> {
        let src = self.producer(l, 0)?;
        let Src::Stage(j) = src.src else {
            return Err(unsupported(
                l,
                "a ReLU directly on the network input is not supported by mvNCCompile",
            ));
        };
        if self.stages[j].consumers > 0 {
            return Err(unsupported(
                l,
                format!(
                    "cannot fuse into stage '{}': another layer already reads its output",
                    self.stages[j].rec.name
                ),
            ));
        }
        let (post, param) = if slope == 0.0 {
            (StageOp::Relu, 0)
        } else {
            (StageOp::LeakyRelu, slope.to_bits())
        };
        let rec = &self.stages[j].rec;
        match rec.post_op {
            StageOp::None | StageOp::Bias => {}
            StageOp::Relu if post == StageOp::Relu => {}
            other => {
                return Err(unsupported(
                    l,
                    format!(
                        "stage '{}' already has post-op {}",
                        rec.name,
                        other.toolkit_name()
                    ),
                ))
            }
        }
        let top = l
            .caffe_tops
            .first()
            .cloned()
            .unwrap_or_else(|| l.name.clone());
        let name = self.stage_name(l, &top)?;
        let rec = &mut self.stages[j].rec;
        rec.post_op = post;
        rec.post_param = param;
        rec.name = name;
        for t in &l.tops {
            self.producers.insert(t.clone(), src);
        }
        Ok(())
    }

    fn inner_product(&mut self, l: &Layer) -> Result<(), CompileError> {
        let Op::InnerProduct(p) = &l.op else {
            unreachable!("dispatched on InnerProduct")
        };
        let src = self.producer(l, 0)?;
        let bottom = self.shape(&l.bottoms[0]).to_vec();
        let axis =
            crate::ops::canonical_axis(p.axis, bottom.len()).map_err(|e| unsupported(l, e.0))?;
        if axis != 1 {
            return Err(unsupported(
                l,
                "only axis 1 (flatten C×H×W per image) maps to the NCS",
            ));
        }
        let d = src.dims;
        let n = d.volume() as usize;
        let k = p.num_output;
        let out = Xyz::new(1, 1, k as u32);
        let name = self.stage_name(l, &l.name)?;
        let mut rec = record(
            &name,
            StageOp::FullyConnected,
            Xyz::new(1, 1, n as u32),
            src.strides,
            out,
        );
        rec.taps_dims = Xyz::new(1, n as u32, k as u32);
        self.precheck(src.src)?;
        self.reserve(2 * (k * n) as u64)?;
        let w = self.weights(l, 0, k * n, &p.weight_filler)?;
        let w: Cow<[f32]> = if p.transpose {
            let mut t = vec![0.0; k * n];
            for i in 0..n {
                for o in 0..k {
                    t[o * n + i] = w[i * k + o];
                }
            }
            Cow::Owned(t)
        } else {
            w
        };
        let taps = fc_to_hwck(&to_f16(&w), k, d.z as usize, d.y as usize, d.x as usize);
        let taps = Some(Const::F16(taps));
        let bias = self.stage_bias(l, &mut rec, p.bias_term, k, &p.bias_filler)?;
        let idx = self.push(rec, src.src, None, None, taps, bias, None)?;
        self.set_top(l, idx);
        Ok(())
    }

    fn softmax(&mut self, l: &Layer) -> Result<(), CompileError> {
        let Op::Softmax(p) = &l.op else {
            unreachable!("dispatched on Softmax")
        };
        let src = self.producer(l, 0)?;
        let ndim = self.shape(&l.bottoms[0]).len();
        let axis = crate::ops::canonical_axis(p.axis, ndim).map_err(|e| unsupported(l, e.0))?;
        if !(axis == 1 || (axis == 2 && ndim == 4)) {
            return Err(unsupported(
                l,
                format!("softmax over axis {axis}: the NCS accepts channels (1) or height (2)"),
            ));
        }
        let name = self.stage_name(l, &l.name)?;
        let mut rec = record(&name, StageOp::SoftMax, src.dims, src.strides, src.dims);
        rec.pad_style = PadStyle::None;
        let params = self.i32_param(axis as i32)?;
        let idx = self.push(rec, src.src, None, None, None, None, params)?;
        self.set_top(l, idx);
        Ok(())
    }

    fn eltwise(&mut self, l: &Layer) -> Result<(), CompileError> {
        let Op::Eltwise(p) = &l.op else {
            unreachable!("dispatched on Eltwise")
        };
        if l.bottoms.len() > 3 {
            return Err(unsupported(l, "the NCS eltwise takes at most 3 operands"));
        }
        let mut srcs = (0..l.bottoms.len())
            .map(|i| self.producer(l, i))
            .collect::<Result<Vec<_>, _>>()?;
        if srcs.len() >= 2 && matches!(srcs[0].src, Src::Input { .. }) {
            srcs.swap(0, 1);
        }
        if p.coeffs.iter().any(|&c| c != 1.0) {
            self.warnings.push(CompileWarning {
                layer: l.name.clone(),
                message: format!(
                    "eltwise coefficients {:?} are ignored by mvNCCompile: the device computes a plain {}",
                    p.coeffs,
                    "sum"
                ),
            });
        }
        let op = match p.op {
            EltwiseOp::Sum => StageOp::EltwiseSum,
            EltwiseOp::Prod => StageOp::EltwiseProd,
            EltwiseOp::Max => StageOp::EltwiseMax,
        };
        let d = srcs[0].dims;
        if srcs.len() == 3 && self.container == Container::Ncsdk2 {
            return self.eltwise_in_two(l, op, &srcs);
        }
        let name = self.stage_name(l, &l.name)?;
        let rec = record(&name, op, d, srcs[0].strides, d);
        let idx = self.push(
            rec,
            srcs[0].src,
            srcs.get(1).map(|s| s.src),
            srcs.get(2).map(|s| s.src),
            None,
            None,
            None,
        )?;
        self.set_top(l, idx);
        Ok(())
    }

    /// A 3-operand Eltwise for NCSDK 2, whose eltwise records hold two operands (input and
    /// taps, NCSDK2_GRAPH_FORMAT.md §4.4): stage `<name>/0` computes a ∘ b into a work
    /// buffer, stage `<name>` computes (a ∘ b) ∘ c. SUM, PROD and MAX are associative, so
    /// the result is the layer's up to fp16 rounding of the intermediate. Our choice: the
    /// spec gives no 3-operand form (NCSDK 1 uses the bias slot, NCS_GRAPH_FORMAT.md §6.2).
    fn eltwise_in_two(
        &mut self,
        l: &Layer,
        op: StageOp,
        srcs: &[Producer],
    ) -> Result<(), CompileError> {
        let d = srcs[0].dims;
        let first_name = self.stage_name(l, &format!("{}/0", l.name))?;
        let first = record(&first_name, op, d, srcs[0].strides, d);
        let first = self.push(
            first,
            srcs[0].src,
            Some(srcs[1].src),
            None,
            None,
            None,
            None,
        )?;
        let name = self.stage_name(l, &l.name)?;
        let rec = record(&name, op, d, dense(d), d);
        let idx = self.push(
            rec,
            Src::Stage(first),
            Some(srcs[2].src),
            None,
            None,
            None,
            None,
        )?;
        self.set_top(l, idx);
        Ok(())
    }

    fn prelu(&mut self, l: &Layer) -> Result<(), CompileError> {
        let Op::PRelu(p) = &l.op else {
            unreachable!("dispatched on PReLU")
        };
        let src = self.producer(l, 0)?;
        let c = src.dims.z as usize;
        let n = if p.channel_shared { 1 } else { c };
        self.reserve(2 * c as u64)?;
        let slopes = self.weights(l, 0, n, &p.filler)?;
        let slopes: Vec<f32> = (0..c).map(|i| slopes[i % n]).collect();
        let name = self.stage_name(l, &l.name)?;
        let rec = record(&name, StageOp::PRelu, src.dims, src.strides, src.dims);
        let idx = self.push(
            rec,
            src.src,
            None,
            None,
            None,
            Some(Const::F16(to_f16(&slopes))),
            None,
        )?;
        self.set_top(l, idx);
        Ok(())
    }

    fn simple(&mut self, l: &Layer, op: StageOp) -> Result<(), CompileError> {
        let src = self.producer(l, 0)?;
        let name = self.stage_name(l, &l.name)?;
        let rec = record(&name, op, src.dims, src.strides, src.dims);
        let idx = self.push(rec, src.src, None, None, None, None, None)?;
        self.set_top(l, idx);
        Ok(())
    }

    fn flatten(&mut self, l: &Layer) -> Result<(), CompileError> {
        let src = self.producer(l, 0)?;
        let bottom = self.shape(&l.bottoms[0]).to_vec();
        let top = self.shape(&l.tops[0]).to_vec();
        if bottom.len() == 2 && top == bottom {
            self.producers.insert(l.tops[0].clone(), src);
            return Ok(());
        }
        if bottom.len() != 4 || top.len() != 2 {
            return Err(unsupported(
                l,
                "only Flatten of C×H×W into one axis maps to the NCS",
            ));
        }
        let out = self.out_dims(l)?;
        let name = self.stage_name(l, &l.name)?;
        let rec = record(&name, StageOp::ToPlaneMajor, src.dims, src.strides, out);
        let idx = self.push(rec, src.src, None, None, None, None, None)?;
        self.set_top(l, idx);
        Ok(())
    }

    /// BatchNorm or Scale: folded into the convolution (or scale stage) that produces the
    /// bottom when nothing has read that output yet, otherwise a scale stage (op 15).
    fn batchnorm_or_scale(&mut self, l: &Layer) -> Result<(), CompileError> {
        if l.bottoms.len() != 1 {
            return Err(unsupported(
                l,
                "Scale with the factor as a second bottom is not supported",
            ));
        }
        let src = self.producer(l, 0)?;
        let c = src.dims.z as usize;
        if let Op::Scale(p) = &l.op {
            let nd = self.shape(&l.bottoms[0]).len();
            let axes = p.axes(nd).map_err(|e| unsupported(l, e.0))?;
            if axes != (1..2) {
                return Err(unsupported(l, "only a per-channel Scale maps to the NCS"));
            }
        }
        let fold = fold_of(self, l, c)?;
        let target = match src.src {
            Src::Stage(j)
                if self.stages[j].consumers == 0
                    && matches!(self.stages[j].rec.post_op, StageOp::None | StageOp::Bias)
                    && matches!(
                        self.stages[j].rec.op,
                        StageOp::Convolution | StageOp::DepthwiseConvolution | StageOp::Scale
                    ) =>
            {
                Some(j)
            }
            _ => None,
        };
        let j = match target {
            Some(j) => {
                let name = format!("{}/{}", self.stages[j].rec.name, l.name);
                self.stages[j].rec.name = self.stage_name(l, &name)?;
                j
            }
            None => {
                // a stand-alone scale stage: multipliers 1 and shifts 0, then the fold
                self.reserve(2 * c as u64)?;
                let name = self.stage_name(l, &l.name)?;
                let rec = record(&name, StageOp::Scale, src.dims, src.strides, src.dims);
                let ones = Const::F16(vec![f16::ONE; c]);
                self.push(rec, src.src, None, None, Some(ones), None, None)?
            }
        };
        let k = self.stages[j].rec.output_dims.z as usize;
        if self.stages[j].bias.is_none() {
            // a bias is created when the stage had none (postOp 9)
            self.reserve(2 * k as u64)?;
            self.stages[j].bias = Some(Const::F16(vec![f16::ZERO; k]));
        }
        let s = &mut self.stages[j];
        let (Some(Const::F16(taps)), Some(Const::F16(bias))) = (&mut s.taps, &mut s.bias) else {
            return Err(unsupported(l, "the stage to fold into has no fp16 weights"));
        };
        if bias.len() != k {
            return Err(unsupported(
                l,
                "bias length differs from the output channels",
            ));
        }
        fold.apply(taps, bias);
        if s.rec.post_op == StageOp::None {
            s.rec.post_op = StageOp::Bias;
        }
        self.set_top(l, j);
        Ok(())
    }
}

/// Per-channel affine factors of a BatchNorm or Scale layer, in the toolkit's fp16
/// arithmetic (§6.2, checked bit-exact against the SIMCAM emotion graph).
enum Fold {
    /// BN: `mult = 1/√(var + eps)` (f32), `mean`; taps · fp16(mult), bias (b − mean)·mult.
    BatchNorm { mult: Vec<f32>, mean: Vec<f32> },
    /// Scale: taps · fp16(γ), bias fp16(b·fp16(γ)) + fp16(β).
    Scale { gamma: Vec<f16>, beta: Vec<f16> },
}

fn fold_of(lw: &Lowering<'_>, l: &Layer, c: usize) -> Result<Fold, CompileError> {
    match &l.op {
        Op::BatchNorm(p) => {
            // absent statistics are Caffe's zero-initialised blobs
            let zero = Filler::Constant { value: 0.0 };
            let mean = lw.weights(l, 0, c, &zero)?.into_owned();
            let var = lw.weights(l, 1, c, &zero)?.into_owned();
            let f = lw.weights(l, 2, 1, &zero)?[0];
            let sf = if f == 0.0 { 0.0 } else { 1.0 / f };
            Ok(Fold::BatchNorm {
                mult: var.iter().map(|&v| 1.0 / (v * sf + p.eps).sqrt()).collect(),
                mean: mean.iter().map(|&m| m * sf).collect(),
            })
        }
        Op::Scale(p) => {
            let gamma = to_f16(&lw.weights(l, 0, c, &p.filler)?);
            let beta = if p.bias_term {
                to_f16(&lw.weights(l, 1, c, &p.bias_filler)?)
            } else {
                vec![f16::ZERO; c]
            };
            Ok(Fold::Scale { gamma, beta })
        }
        _ => unreachable!("only BatchNorm and Scale fold"),
    }
}

impl Fold {
    /// Applies the factors to HWCK-ordered taps (output channel fastest) and the bias.
    fn apply(&self, taps: &mut [f16], bias: &mut [f16]) {
        let k = bias.len().max(1);
        let r = |x: f32| f16::from_f32(x);
        match self {
            Fold::BatchNorm { mult, mean } => {
                let m16: Vec<f32> = mult.iter().map(|&m| f32::from(r(m))).collect();
                for (i, t) in taps.iter_mut().enumerate() {
                    *t = r(f32::from(*t) * m16[i % k]);
                }
                for (ch, b) in bias.iter_mut().enumerate() {
                    *b = r((f32::from(*b) - mean[ch]) * mult[ch]);
                }
            }
            Fold::Scale { gamma, beta } => {
                for (i, t) in taps.iter_mut().enumerate() {
                    *t = r(f32::from(*t) * f32::from(gamma[i % k]));
                }
                for (ch, b) in bias.iter_mut().enumerate() {
                    let scaled = r(f32::from(*b) * f32::from(gamma[ch]));
                    *b = r(f32::from(scaled) + f32::from(beta[ch]));
                }
            }
        }
    }
}

/// True when a convolution's padding is TensorFlow's SAME rule for these dims: the output is
/// `ceil(in / s)`, `total = (out − 1)·s + extent − in`, `begin = ⌊total/2⌋`, the rest at the end.
fn is_tf_same(p: &ConvParams, ins: [usize; 2], outs: [usize; 2]) -> bool {
    let end = p.end_pad();
    (0..2).all(|a| {
        let extent = p.dilation[a] * (p.kernel[a] - 1) + 1;
        let total = ((outs[a].max(1) - 1) * p.stride[a] + extent).saturating_sub(ins[a]);
        outs[a] == ins[a].div_ceil(p.stride[a])
            && p.pad[a] == total / 2
            && end[a] == total - total / 2
    })
}

/// The limits a conv or deconv stage header sets (NCS_GRAPH_FORMAT.md §5.3): the kernel in
/// a signed radix byte (≤ 127), stride and pad in bytes, one dilation for both axes.
fn check_window(l: &Layer, p: &ConvParams) -> Result<(), CompileError> {
    let [kh, kw] = p.kernel;
    if kh > 127 || kw > 127 {
        return Err(limit(
            l,
            format!("kernel {kh}x{kw} exceeds the 127 a signed radix byte holds"),
        ));
    }
    if p.stride.iter().chain(&p.pad).any(|&v| v > 255) {
        return Err(limit(l, "stride and pad must fit a byte (≤ 255)"));
    }
    if p.dilation[0] != p.dilation[1] {
        return Err(unsupported(l, "the graph holds one dilation for both axes"));
    }
    Ok(())
}
