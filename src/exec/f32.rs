//! The native f32 engine: runs an IR net layer by layer on a private rayon pool, reusing
//! memory across layers, running element-wise layers in place and folding ReLUs into the
//! Convolution or InnerProduct before them.

use super::plan::{self, is_source, Action, Plan};
use super::{ExecError, ExecOptions, LayerHook, LayerTiming, Outputs};
use crate::ir::{BlobShapes, Net, Tensor};
use crate::ops::ctx::Ctx;
use crate::ops::dispatch::{forward_fused, forward_in_place};
use crate::ops::OpError;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Largest blob the engine allocates, in values (16 GiB of f32): a bound that no real net
/// reaches, so that a corrupt shape is an error instead of an allocation failure.
pub const MAX_BLOB_VALUES: usize = 1 << 32;

/// A net prepared for repeated f32 forward passes.
pub struct Engine {
    net: Net,
    shapes: BlobShapes,
    options: ExecOptions,
    threads: usize,
    pool: rayon::ThreadPool,
    /// Blob name of every slot, in first-appearance order (inputs, then tops).
    slot_names: Vec<String>,
    /// (slot, declared shape) of every fed input.
    inputs: Vec<(usize, Vec<usize>)>,
    /// Slots returned by `run`.
    returned: Vec<usize>,
    /// Plan with fusion (when enabled) for plain runs.
    fast: Plan,
    /// Plan without fusion, for runs with a hook.
    unfused: Plan,
    /// Buffers kept between runs so that a second run allocates nothing.
    spare: Mutex<Vec<Vec<f32>>>,
    runs: AtomicU64,
}

impl Engine {
    /// Prepares `net` with the default options (all cores, TEST, outputs only).
    pub fn new(net: &Net) -> Result<Self, ExecError> {
        Self::with_options(net, ExecOptions::default())
    }

    /// Prepares `net`: applies the batch override, infers every blob's shape with Caffe's
    /// rules (which also checks the learned blobs) and plans the run.
    pub fn with_options(net: &Net, options: ExecOptions) -> Result<Self, ExecError> {
        let mut net = net.clone();
        if let Some(batch) = options.batch {
            net.set_batch(batch);
        }
        let shapes = net.infer_shapes().map_err(|source| ExecError::Net {
            net: net.name.clone(),
            source,
        })?;

        let in_order = net
            .inputs
            .iter()
            .map(|i| &i.name)
            .chain(net.layers.iter().flat_map(|l| &l.tops));
        for blob in in_order {
            let shape = &shapes[blob];
            let values = shape
                .iter()
                .try_fold(1usize, |acc, &d| acc.checked_mul(d))
                .filter(|&v| v <= MAX_BLOB_VALUES);
            if values.is_none() {
                return Err(ExecError::TooLarge {
                    blob: blob.clone(),
                    shape: shape.clone(),
                    limit: MAX_BLOB_VALUES,
                });
            }
        }

        let mut slot_names: Vec<String> = Vec::new();
        let mut slot: HashMap<String, usize> = HashMap::new();
        let mut add = |name: &str, names: &mut Vec<String>| -> usize {
            *slot.entry(name.to_string()).or_insert_with(|| {
                names.push(name.to_string());
                names.len() - 1
            })
        };
        let mut inputs = Vec::new();
        for i in &net.inputs {
            inputs.push((add(&i.name, &mut slot_names), i.shape.clone()));
        }
        for l in &net.layers {
            for t in &l.tops {
                let s = add(t, &mut slot_names);
                if is_source(&l.op) {
                    inputs.push((s, shapes[t].clone()));
                }
            }
        }
        let returned: Vec<usize> = if options.keep_all_blobs {
            (0..slot_names.len()).collect()
        } else {
            net.outputs().iter().map(|n| slot[n]).collect()
        };
        let mut keep = vec![options.keep_all_blobs; slot_names.len()];
        for &r in &returned {
            keep[r] = true;
        }
        let fuse = options.fuse_relu && !options.keep_all_blobs;
        let fast = plan::build(&net, &slot, &keep, fuse);
        let unfused = plan::build(&net, &slot, &keep, false);

        let threads = if options.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            options.threads
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("agegender-f32-{i}"))
            .build()
            .map_err(|e| ExecError::ThreadPool {
                threads,
                msg: e.to_string(),
            })?;
        Ok(Self {
            net,
            shapes,
            options,
            threads,
            pool,
            slot_names,
            inputs,
            returned,
            fast,
            unfused,
            spare: Mutex::new(Vec::new()),
            runs: AtomicU64::new(0),
        })
    }

    /// The net as run (after the batch override).
    pub fn net(&self) -> &Net {
        &self.net
    }

    /// Every blob's shape.
    pub fn shapes(&self) -> &BlobShapes {
        &self.shapes
    }

    /// Worker threads in use.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The inputs a run needs: (blob name, shape).
    pub fn inputs(&self) -> Vec<(&str, &[usize])> {
        self.inputs
            .iter()
            .map(|(s, shape)| (self.slot_names[*s].as_str(), shape.as_slice()))
            .collect()
    }

    /// Names of the blobs a run returns.
    pub fn output_names(&self) -> Vec<&str> {
        self.returned
            .iter()
            .map(|&s| self.slot_names[s].as_str())
            .collect()
    }

    /// Forward FLOPs of one run (all layers, at the engine's batch size).
    pub fn flops(&self) -> u64 {
        self.net.layers.iter().map(|l| self.layer_flops(l)).sum()
    }

    fn layer_flops(&self, l: &crate::ir::Layer) -> u64 {
        let dims = |names: &[String]| -> Vec<Vec<usize>> {
            names.iter().map(|n| self.shapes[n].clone()).collect()
        };
        l.op.flops(&dims(&l.bottoms), &dims(&l.tops))
    }

    /// Runs the net on `inputs` (blob name → tensor; every input exactly once, with its
    /// declared shape) and returns the outputs.
    pub fn run<N: AsRef<str>>(
        &self,
        inputs: impl IntoIterator<Item = (N, Tensor)>,
    ) -> Result<Outputs, ExecError> {
        self.execute(inputs, &self.fast, None, None)
    }

    /// [`Engine::run`] that also measures each layer's wall time.
    pub fn run_timed<N: AsRef<str>>(
        &self,
        inputs: impl IntoIterator<Item = (N, Tensor)>,
    ) -> Result<(Outputs, Vec<LayerTiming>), ExecError> {
        let mut timings = Vec::new();
        let out = self.execute(inputs, &self.fast, None, Some(&mut timings))?;
        Ok((out, timings))
    }

    /// [`Engine::run`] with a hook that sees (and may rewrite) every input and every
    /// layer's tops; layers are not fused in such a run.
    pub fn run_with_hook<N: AsRef<str>>(
        &self,
        inputs: impl IntoIterator<Item = (N, Tensor)>,
        hook: &mut dyn LayerHook,
    ) -> Result<Outputs, ExecError> {
        self.execute(inputs, &self.unfused, Some(hook), None)
    }

    /// Places the given tensors in their slots, checking names and shapes.
    fn feed<N: AsRef<str>>(
        &self,
        inputs: impl IntoIterator<Item = (N, Tensor)>,
        slots: &mut [Option<Tensor>],
    ) -> Result<(), ExecError> {
        for (name, tensor) in inputs {
            let name = name.as_ref();
            let Some((s, expected)) = self
                .inputs
                .iter()
                .find(|(s, _)| self.slot_names[*s] == name)
            else {
                return Err(ExecError::UnknownInput {
                    name: name.to_string(),
                    known: self
                        .inputs()
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            };
            if slots[*s].is_some() {
                return Err(ExecError::DuplicateInput(name.to_string()));
            }
            if &tensor.shape != expected || tensor.data.len() != expected.iter().product::<usize>()
            {
                return Err(ExecError::InputShape {
                    name: name.to_string(),
                    expected: expected.clone(),
                    found: tensor.shape.clone(),
                });
            }
            slots[*s] = Some(tensor);
        }
        for (s, expected) in &self.inputs {
            if slots[*s].is_none() {
                return Err(ExecError::MissingInput {
                    name: self.slot_names[*s].clone(),
                    expected: expected.clone(),
                });
            }
        }
        Ok(())
    }

    fn execute<N: AsRef<str>>(
        &self,
        inputs: impl IntoIterator<Item = (N, Tensor)>,
        plan: &Plan,
        mut hook: Option<&mut dyn LayerHook>,
        mut timings: Option<&mut Vec<LayerTiming>>,
    ) -> Result<Outputs, ExecError> {
        let mut slots: Vec<Option<Tensor>> = vec![None; self.slot_names.len()];
        self.feed(inputs, &mut slots)?;
        if let Some(h) = hook.as_deref_mut() {
            for (s, _) in &self.inputs {
                if let Some(t) = slots[*s].as_mut() {
                    h.on_input(&self.slot_names[*s], t);
                }
            }
        }
        let run = self.runs.fetch_add(1, Ordering::Relaxed);
        let mut ctx = Ctx::new(
            self.options.phase,
            self.options.seed.wrapping_add(run),
            self.threads,
        );
        ctx.give_pool(std::mem::take(
            &mut *self.spare.lock().unwrap_or_else(|e| e.into_inner()),
        ));

        let result = self.pool.install(|| -> Result<(), ExecError> {
            for step in &plan.steps {
                let layer = &self.net.layers[step.layer];
                let started = Instant::now();
                let fail = |e: OpError| ExecError::Layer {
                    layer: layer.name.clone(),
                    kind: layer.op.caffe_type().to_string(),
                    msg: e.0,
                };
                ctx.saved.clear();
                let mut tops = match step.action {
                    Action::Run { fused_relu } => {
                        let bottoms: Vec<&Tensor> = step
                            .bottoms
                            .iter()
                            .map(|&b| slots[b].as_ref().expect("plan order guarantees bottoms"))
                            .collect();
                        forward_fused(
                            &layer.op,
                            &bottoms,
                            &layer.blobs,
                            step.tops.len(),
                            &mut ctx,
                            fused_relu,
                        )
                        .map_err(fail)?
                    }
                    Action::InPlace => {
                        let mut x = slots[step.bottoms[0]]
                            .take()
                            .expect("plan order guarantees bottoms");
                        forward_in_place(&layer.op, &mut x, &layer.blobs, &mut ctx)
                            .map_err(fail)?;
                        vec![x]
                    }
                    Action::FusedAway { .. } => {
                        vec![slots[step.bottoms[0]]
                            .take()
                            .expect("plan order guarantees bottoms")]
                    }
                };
                if let Some(h) = hook.as_deref_mut() {
                    h.after_layer(layer, &mut tops);
                }
                for (&s, t) in step.tops.iter().zip(tops) {
                    slots[s] = Some(t);
                }
                for &r in &step.release {
                    if let Some(t) = slots[r].take() {
                        ctx.recycle(t);
                    }
                }
                if let Some(t) = timings.as_deref_mut() {
                    t.push(LayerTiming {
                        layer: layer.name.clone(),
                        kind: layer.op.caffe_type(),
                        time: started.elapsed(),
                        flops: self.layer_flops(layer),
                        fused_into: match step.action {
                            Action::FusedAway { into } => {
                                Some(self.net.layers[plan.steps[into].layer].name.clone())
                            }
                            _ => None,
                        },
                    });
                }
            }
            Ok(())
        });

        let mut outputs = Outputs::default();
        if result.is_ok() {
            for &s in &self.returned {
                if let Some(t) = slots[s].take() {
                    outputs.blobs.push((self.slot_names[s].clone(), t));
                }
            }
        }
        for t in slots.into_iter().flatten() {
            ctx.recycle(t);
        }
        *self.spare.lock().unwrap_or_else(|e| e.into_inner()) = ctx.take_pool();
        result.map(|()| outputs)
    }
}
