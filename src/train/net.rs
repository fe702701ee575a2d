//! `TrainNet`: runs an IR net forward and backward for training, as Caffe's `Net` does in
//! `ForwardBackward`: every blob is kept for the backward pass, the loss is
//! `Σ loss_weight · top` over loss tops (SoftmaxWithLoss and other `*Loss` layers weigh 1
//! by default), and Caffe's `Net::Init` rules decide which layers and bottoms need a
//! backward (a layer needs one when a bottom does or a parameter has `lr_mult ≠ 0`, and
//! only if it contributes to a loss; Data tops never do).
//!
//! Source layers (Data, Input) are fed by the caller. Parameter diffs accumulate across
//! passes until [`TrainNet::clear_param_diffs`], which is how `iter_size` works.

use super::solver::Learnable;
use crate::ir::{BlobShapes, Net, Op, Phase, Tensor};
use crate::ops::backward::{backward, BackwardArgs};
use crate::ops::ctx::Ctx;
use crate::ops::dispatch::forward;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Errors of a training pass; each names the layer or blob.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TrainNetError {
    /// The net's structure or shapes are invalid.
    #[error("{0}")]
    Net(#[from] crate::ir::IrError),
    /// A layer's forward or backward failed.
    #[error("layer '{layer}' ({kind}): {msg}")]
    Layer {
        /// Layer name.
        layer: String,
        /// Caffe type.
        kind: String,
        /// What failed.
        msg: String,
    },
    /// A source top was not fed, or fed with the wrong shape.
    #[error("source blob '{blob}': {msg}")]
    Feed {
        /// Blob name.
        blob: String,
        /// What is wrong.
        msg: String,
    },
    /// The rayon pool could not start.
    #[error("cannot start {0} worker threads")]
    Threads(usize),
}

fn is_source(op: &Op) -> bool {
    matches!(op, Op::Input { .. } | Op::Data(_))
}

/// Loss weight of top `t` of a layer: the explicit `loss_weight`, else 1 for the first top
/// of a loss layer and 0 otherwise (Caffe's `LossLayer` default).
fn loss_weight(op: &Op, explicit: &[f32], t: usize) -> f32 {
    match explicit.get(t) {
        Some(&w) => w,
        None if t == 0 && matches!(op, Op::SoftmaxWithLoss(_)) => 1.0,
        None => 0.0,
    }
}

/// A net prepared for training or for a test pass.
pub struct TrainNet {
    /// The IR net; its layers' `blobs` are the learned weights, updated in place.
    pub net: Net,
    phase: Phase,
    shapes: BlobShapes,
    slot: HashMap<String, usize>,
    values: Vec<Option<Tensor>>,
    diffs: Vec<Option<Tensor>>,
    saved: Vec<Vec<Tensor>>,
    /// Per layer and learned blob: the accumulated diff.
    param_diffs: Vec<Vec<Tensor>>,
    need_backward: Vec<bool>,
    propagate: Vec<Vec<bool>>,
    wants_params: Vec<bool>,
    ctx: Ctx,
    pool: rayon::ThreadPool,
    /// Per layer: the last forward's and backward's wall time.
    times: Vec<(Duration, Duration)>,
}

impl TrainNet {
    /// Prepares `net` (shapes must be fully known: Data layers need their record shape)
    /// for `phase`, with `threads` workers and a seed for Dropout masks.
    pub fn new(net: Net, phase: Phase, threads: usize, seed: u64) -> Result<Self, TrainNetError> {
        let shapes = net.infer_shapes()?;
        let mut names: Vec<String> = net.inputs.iter().map(|i| i.name.clone()).collect();
        for l in &net.layers {
            names.extend(l.tops.iter().cloned());
        }
        let slot: HashMap<String, usize> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        let n_layers = net.layers.len();

        // Forward sweep: which blobs carry a gradient to something learnable.
        let mut blob_needs = vec![false; names.len()];
        let mut need_backward = vec![false; n_layers];
        let mut propagate = vec![Vec::new(); n_layers];
        let mut wants_params = vec![false; n_layers];
        for (li, l) in net.layers.iter().enumerate() {
            if is_source(&l.op) {
                continue;
            }
            let bottoms_need: Vec<bool> = l
                .bottoms
                .iter()
                .map(|b| blob_needs[slot[b]] && !matches!(l.op, Op::Accuracy(_)))
                .collect();
            let params = Self::lr_mults(l).iter().any(|&m| m != 0.0);
            wants_params[li] = params;
            need_backward[li] = params || bottoms_need.iter().any(|&b| b);
            propagate[li] = bottoms_need;
            if need_backward[li] {
                for t in &l.tops {
                    blob_needs[slot[t]] = true;
                }
            }
        }
        // Backward sweep: only layers under a loss keep their backward.
        let mut under_loss = vec![false; names.len()];
        for li in (0..n_layers).rev() {
            let l = &net.layers[li];
            let contributes = l.tops.iter().enumerate().any(|(t, name)| {
                loss_weight(&l.op, &l.loss_weight, t) != 0.0 || under_loss[slot[name]]
            });
            if !contributes {
                need_backward[li] = false;
                wants_params[li] = false;
                propagate[li].iter_mut().for_each(|p| *p = false);
            } else {
                for b in &l.bottoms {
                    under_loss[slot[b]] = true;
                }
            }
        }
        let param_diffs = net
            .layers
            .iter()
            .map(|l| l.blobs.iter().map(|b| Tensor::zeros(&b.shape)).collect())
            .collect();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .build()
            .map_err(|_| TrainNetError::Threads(threads))?;
        Ok(Self {
            phase,
            shapes,
            values: vec![None; names.len()],
            diffs: vec![None; names.len()],
            saved: vec![Vec::new(); n_layers],
            param_diffs,
            need_backward,
            propagate,
            wants_params,
            ctx: Ctx::new(phase, seed, threads.max(1)),
            pool,
            times: vec![(Duration::ZERO, Duration::ZERO); n_layers],
            slot,
            net,
        })
    }

    /// `lr_mult` of each learned blob; BatchNorm's statistics are never learned (Caffe
    /// forces their `lr_mult` to 0).
    fn lr_mults(l: &crate::ir::Layer) -> Vec<f32> {
        (0..l.blobs.len())
            .map(|i| {
                if matches!(l.op, Op::BatchNorm(_)) {
                    0.0
                } else {
                    l.param(i).lr_mult
                }
            })
            .collect()
    }

    /// Restarts the Dropout masks' generator from `seed` (the trainer reseeds per
    /// iteration, so a resumed run draws the same masks as an uninterrupted one).
    pub fn reseed(&mut self, seed: u64) {
        use rand::SeedableRng;
        self.ctx.rng = rand::rngs::StdRng::seed_from_u64(seed);
    }

    /// Per layer (in net order): the wall time of its last forward and backward.
    pub fn layer_times(&self) -> &[(Duration, Duration)] {
        &self.times
    }

    /// Shapes of every blob.
    pub fn shapes(&self) -> &BlobShapes {
        &self.shapes
    }

    /// The phase this net runs in.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The value of a blob after the last forward.
    pub fn blob(&self, name: &str) -> Option<&Tensor> {
        self.slot.get(name).and_then(|&s| self.values[s].as_ref())
    }

    /// The diff of a blob after the last backward (`None` when no gradient reached it).
    pub fn blob_diff(&self, name: &str) -> Option<&Tensor> {
        self.slot.get(name).and_then(|&s| self.diffs[s].as_ref())
    }

    /// The accumulated diffs of a layer's learned blobs.
    pub fn param_diffs(&self, layer: usize) -> &[Tensor] {
        &self.param_diffs[layer]
    }

    /// Zeroes every parameter diff (Caffe's `ClearParamDiffs`, once per iteration).
    pub fn clear_param_diffs(&mut self) {
        for d in self.param_diffs.iter_mut().flatten() {
            d.data.iter_mut().for_each(|v| *v = 0.0);
        }
    }

    /// Runs the forward pass with the source tops given by name and returns the weighted
    /// loss. Every blob is kept for [`TrainNet::backward`]. In TRAIN, BatchNorm layers that
    /// use batch statistics update their moving averages as Caffe's forward does.
    pub fn forward(&mut self, feeds: Vec<(String, Tensor)>) -> Result<f32, TrainNetError> {
        for v in self.values.iter_mut().chain(self.diffs.iter_mut()) {
            if let Some(t) = v.take() {
                self.ctx.recycle(t);
            }
        }
        for (name, t) in feeds {
            let Some(&s) = self.slot.get(&name) else {
                return Err(TrainNetError::Feed {
                    blob: name,
                    msg: "no such blob".into(),
                });
            };
            if self.shapes[&name] != t.shape {
                return Err(TrainNetError::Feed {
                    msg: format!(
                        "shape {:?}, the net expects {:?}",
                        t.shape, self.shapes[&name]
                    ),
                    blob: name,
                });
            }
            self.values[s] = Some(t);
        }
        let pool = &self.pool;
        let (net, values, saved, ctx, slot, times) = (
            &mut self.net,
            &mut self.values,
            &mut self.saved,
            &mut self.ctx,
            &self.slot,
            &mut self.times,
        );
        let phase = self.phase;
        pool.install(|| -> Result<f32, TrainNetError> {
            let mut loss = 0.0f32;
            for (li, l) in net.layers.iter_mut().enumerate() {
                if is_source(&l.op) {
                    for t in &l.tops {
                        if values[slot[t]].is_none() {
                            return Err(TrainNetError::Feed {
                                blob: t.clone(),
                                msg: format!("source layer '{}' was not fed", l.name),
                            });
                        }
                    }
                    continue;
                }
                let fail = |msg: String| TrainNetError::Layer {
                    layer: l.name.clone(),
                    kind: l.op.caffe_type().into(),
                    msg,
                };
                ctx.saved.clear();
                let started = Instant::now();
                let tops = {
                    let bottoms: Vec<&Tensor> = l
                        .bottoms
                        .iter()
                        .map(|b| {
                            values[slot[b]]
                                .as_ref()
                                .ok_or_else(|| fail(format!("bottom '{b}' has no value")))
                        })
                        .collect::<Result<_, _>>()?;
                    forward(&l.op, &bottoms, &l.blobs, l.tops.len(), ctx).map_err(|e| fail(e.0))?
                };
                times[li].0 = started.elapsed();
                saved[li] = std::mem::take(&mut ctx.saved);
                if let (Op::BatchNorm(p), Phase::Train) = (&l.op, phase) {
                    if !p.uses_global_stats(phase) {
                        update_moving_averages(
                            p.moving_average_fraction,
                            &mut l.blobs,
                            &saved[li],
                            &tops[0],
                        );
                    }
                }
                for (t, (name, top)) in l.tops.iter().zip(tops).enumerate() {
                    let w = loss_weight(&l.op, &l.loss_weight, t);
                    if w != 0.0 {
                        loss += w * top.data.iter().sum::<f32>();
                    }
                    values[slot[name]] = Some(top);
                }
            }
            Ok(loss)
        })
    }

    /// Runs the backward pass of the last forward, accumulating parameter diffs.
    pub fn backward(&mut self) -> Result<(), TrainNetError> {
        let pool = &self.pool;
        let threads = self.ctx.threads;
        let phase = self.phase;
        let (net, values, diffs, saved, param_diffs, slot) = (
            &self.net,
            &self.values,
            &mut self.diffs,
            &self.saved,
            &mut self.param_diffs,
            &self.slot,
        );
        let (need, propagate, wants) = (&self.need_backward, &self.propagate, &self.wants_params);
        let times = &mut self.times;
        let buffers = &self.ctx.buffers;
        pool.install(|| -> Result<(), TrainNetError> {
            for li in (0..net.layers.len()).rev() {
                if !need[li] {
                    continue;
                }
                let l = &net.layers[li];
                let fail = |msg: String| TrainNetError::Layer {
                    layer: l.name.clone(),
                    kind: l.op.caffe_type().into(),
                    msg,
                };
                let loss_diffs: Vec<Option<Tensor>> = (0..l.tops.len())
                    .map(|t| {
                        let w = loss_weight(&l.op, &l.loss_weight, t);
                        (w != 0.0).then(|| Tensor::full(&[1], w))
                    })
                    .collect();
                let top_diffs: Vec<Option<&Tensor>> = l
                    .tops
                    .iter()
                    .zip(&loss_diffs)
                    .map(|(name, lw)| lw.as_ref().or(diffs[slot[name]].as_ref()))
                    .collect();
                let bottoms: Vec<&Tensor> = l
                    .bottoms
                    .iter()
                    .filter_map(|b| values[slot[b]].as_ref())
                    .collect();
                let tops: Vec<&Tensor> = l
                    .tops
                    .iter()
                    .filter_map(|t| values[slot[t]].as_ref())
                    .collect();
                let started = Instant::now();
                let pd: &mut [Tensor] = if wants[li] {
                    &mut param_diffs[li]
                } else {
                    &mut []
                };
                let out = backward(
                    &BackwardArgs {
                        op: &l.op,
                        bottoms: &bottoms,
                        tops: &tops,
                        top_diffs: &top_diffs,
                        blobs: &l.blobs,
                        saved: &saved[li],
                        propagate_down: &propagate[li],
                        phase,
                        threads,
                        buffers,
                    },
                    pd,
                )
                .map_err(|e| fail(e.0))?;
                times[li].1 = started.elapsed();
                if wants[li] {
                    for (d, m) in param_diffs[li].iter_mut().zip(Self::lr_mults(l)) {
                        if m == 0.0 {
                            d.data.iter_mut().for_each(|v| *v = 0.0);
                        }
                    }
                }
                for (b, d) in l.bottoms.iter().zip(out) {
                    let Some(d) = d else { continue };
                    match &mut diffs[slot[b]] {
                        Some(acc) => {
                            acc.data.iter_mut().zip(&d.data).for_each(|(a, v)| *a += v);
                            buffers.recycle(d);
                        }
                        slot_diff @ None => *slot_diff = Some(d),
                    }
                }
            }
            Ok(())
        })
    }

    /// Forward then backward; returns the loss (Caffe's `ForwardBackward`).
    pub fn forward_backward(&mut self, feeds: Vec<(String, Tensor)>) -> Result<f32, TrainNetError> {
        let loss = self.forward(feeds)?;
        self.backward()?;
        Ok(loss)
    }

    /// Shapes of the learned blobs in Caffe's `learnable_params` order (layer order, then
    /// blob order), the order of the solver history.
    pub fn param_shapes(&self) -> Vec<Vec<usize>> {
        self.net
            .layers
            .iter()
            .flat_map(|l| l.blobs.iter().map(|b| b.shape.clone()))
            .collect()
    }

    /// Every learned blob with its diff and multipliers, in `learnable_params` order.
    pub fn learnables(&mut self) -> Vec<Learnable<'_>> {
        let mut out = Vec::new();
        for (l, diffs) in self.net.layers.iter_mut().zip(self.param_diffs.iter_mut()) {
            let mults = Self::lr_mults(l);
            let specs: Vec<f32> = (0..l.blobs.len()).map(|i| l.param(i).decay_mult).collect();
            for (((b, d), lr), decay) in l
                .blobs
                .iter_mut()
                .zip(diffs.iter_mut())
                .zip(mults)
                .zip(specs)
            {
                out.push(Learnable {
                    value: &mut b.data,
                    diff: &mut d.data,
                    lr_mult: lr,
                    decay_mult: decay,
                });
            }
        }
        out
    }
}

/// Caffe's moving-average update in `BatchNormLayer::Forward_cpu` (TRAIN): the factor blob
/// becomes `f·λ + 1`, the mean blob `mean + λ·blob`, the variance blob
/// `m/(m−1)·var + λ·blob` with m the values per channel.
fn update_moving_averages(lambda: f32, blobs: &mut [Tensor], saved: &[Tensor], top: &Tensor) {
    if blobs.len() < 3 || saved.len() < 2 {
        return;
    }
    let channels = saved[0].len().max(1);
    let m = top.len() / channels;
    let correction = if m > 1 {
        m as f32 / (m - 1) as f32
    } else {
        1.0
    };
    blobs[2].data[0] = blobs[2].data[0] * lambda + 1.0;
    for (b, &v) in blobs[0].data.iter_mut().zip(&saved[0].data) {
        *b = v + lambda * *b;
    }
    for (b, &v) in blobs[1].data.iter_mut().zip(&saved[1].data) {
        *b = correction * v + lambda * *b;
    }
}
