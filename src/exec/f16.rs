//! fp16 NCS emulation on the host: the f32 engine's kernels, with every stored tensor
//! rounded to fp16 the way the Movidius NCS stores it, and overflow reported by layer.
//!
//! The model (NCS_GRAPH_FORMAT.md §9, "Recommended execution model"): weights are fp16
//! (round-to-nearest-even), the input is converted to fp16 by the host, and each layer
//! reads fp16 values, **computes in f32** and rounds every element it stores to fp16 (RNE);
//! values beyond ±65504 become ±inf. The firmware is closed (§13, tag U): f32 accumulation
//! inside a layer is an assumption, backed by mvNCCheck's demand of ≤ 2 % agreement with
//! Caffe. A Deconvolution follows the same rule (fp16 taps and input, f32 sums, fp16
//! output); run that way, the real `matpalm-conv-deconv` graph matches its TensorFlow model
//! within mvNCCheck's thresholds. One internal quantity is checked separately because fp16
//! accumulation would overflow it first: an LRN's sum of squares over its window, computed
//! from the layer's actual (fp16) input.
//!
//! No kernel is duplicated: [`F16Engine`] is an [`Engine`] over a copy of the net with
//! fp16-rounded weights, run with a [`LayerHook`] that rounds and inspects each top. For
//! the device's exact weights of a net with BatchNorm/Scale (folded in fp16 by the
//! compiler), run the net lifted from its compiled graph
//! (`ncs::graph_to_net(&ncs::compile(..)?.graph)`).

use super::{Engine, ExecError, ExecOptions, LayerHook, Outputs};
use crate::ir::{Layer, Net, Op, Tensor, WeightPrecision};
use crate::ops::lrn::NormRegion;
use half::f16;
use half::slice::HalfFloatSliceExt;
use std::collections::{HashMap, HashSet};

/// Largest finite fp16 value.
pub const F16_MAX: f32 = 65504.0;

/// Rounds every value to the nearest fp16 (ties to even) and back, in place.
pub fn round_to_f16(values: &mut [f32]) {
    let mut buf = [f16::ZERO; 1024];
    for chunk in values.chunks_mut(1024) {
        let b = &mut buf[..chunk.len()];
        b.convert_from_f32_slice(chunk);
        b.convert_to_f32_slice(chunk);
    }
}

/// A copy of `net` whose weights are rounded to fp16, marked [`WeightPrecision::F16`].
pub fn with_f16_weights(net: &Net) -> Net {
    let mut n = net.clone();
    for l in &mut n.layers {
        for b in &mut l.blobs {
            round_to_f16(&mut b.data);
        }
    }
    n.precision = WeightPrecision::F16;
    n
}

/// What overflowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverflowKind {
    /// Stored values became ±inf (beyond ±65504) or NaN.
    Stored,
    /// An LRN window's sum of squares exceeds fp16's range (it would overflow if the device
    /// accumulates in fp16); the stored output itself may still be finite.
    LrnSumOfSquares,
}

/// One overflow, named by layer.
#[derive(Debug, Clone, PartialEq)]
pub struct Overflow {
    /// The layer (or input blob) whose values overflowed.
    pub layer: String,
    /// Caffe type ("Input" for a fed input).
    pub kind: &'static str,
    /// What overflowed.
    pub what: OverflowKind,
    /// Elements that are ±inf.
    pub infs: usize,
    /// Elements that are NaN.
    pub nans: usize,
    /// Largest finite magnitude involved (for `LrnSumOfSquares`: the largest window sum).
    pub max_abs: f32,
    /// True when every input of the layer was finite: the overflow starts here.
    pub introduced: bool,
}

impl std::fmt::Display for Overflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.what {
            OverflowKind::Stored => write!(
                f,
                "layer '{}' ({}): {} inf and {} NaN values in fp16{}",
                self.layer,
                self.kind,
                self.infs,
                self.nans,
                if self.introduced {
                    " (overflow starts here)"
                } else {
                    " (propagated)"
                }
            ),
            OverflowKind::LrnSumOfSquares => write!(
                f,
                "layer '{}' (LRN): sum of squares reaches {:.4e} > fp16 max {F16_MAX}",
                self.layer, self.max_abs
            ),
        }
    }
}

/// The result of an emulated run.
#[derive(Debug, Clone, Default)]
pub struct F16Run {
    /// The outputs (or every blob), all values exactly representable in fp16 (or ±inf/NaN).
    pub outputs: Outputs,
    /// Overflows in execution order; empty when every stored value stayed finite.
    pub overflows: Vec<Overflow>,
}

/// The fp16 emulation engine.
pub struct F16Engine {
    engine: Engine,
    /// LRN layers by name: (bottom blob, window, across channels).
    lrns: HashMap<String, (String, usize, bool)>,
}

impl F16Engine {
    /// Prepares `net` with fp16 weights and the default options.
    pub fn new(net: &Net) -> Result<Self, ExecError> {
        Self::with_options(net, ExecOptions::default())
    }

    /// Prepares `net` with fp16 weights. Fusion options are irrelevant: runs with a hook
    /// never fuse layers.
    pub fn with_options(net: &Net, options: ExecOptions) -> Result<Self, ExecError> {
        let engine = Engine::with_options(&with_f16_weights(net), options)?;
        let lrns = engine
            .net()
            .layers
            .iter()
            .filter_map(|l| match &l.op {
                Op::Lrn(p) => Some((
                    l.name.clone(),
                    (
                        l.bottoms.first()?.clone(),
                        p.local_size,
                        p.region == NormRegion::AcrossChannels,
                    ),
                )),
                _ => None,
            })
            .collect();
        Ok(Self { engine, lrns })
    }

    /// The underlying engine (net with fp16 weights, shapes, input names).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Runs on `inputs` (rounded to fp16 first, as the host does) and reports overflow.
    pub fn run<N: AsRef<str>>(
        &self,
        inputs: impl IntoIterator<Item = (N, Tensor)>,
    ) -> Result<F16Run, ExecError> {
        let watch: HashSet<String> = self.lrns.values().map(|(b, _, _)| b.clone()).collect();
        let mut hook = Rounding {
            lrns: &self.lrns,
            watch,
            kept: HashMap::new(),
            nonfinite: HashSet::new(),
            overflows: Vec::new(),
        };
        let outputs = self.engine.run_with_hook(inputs, &mut hook)?;
        Ok(F16Run {
            outputs,
            overflows: hook.overflows,
        })
    }
}

/// The hook: rounds, counts non-finite values, keeps LRN inputs for the square-sum check.
struct Rounding<'a> {
    lrns: &'a HashMap<String, (String, usize, bool)>,
    watch: HashSet<String>,
    kept: HashMap<String, Tensor>,
    nonfinite: HashSet<String>,
    overflows: Vec<Overflow>,
}

fn count_nonfinite(t: &Tensor) -> (usize, usize, f32) {
    let (mut infs, mut nans, mut max) = (0, 0, 0.0f32);
    for &v in &t.data {
        if v.is_nan() {
            nans += 1;
        } else if v.is_infinite() {
            infs += 1;
        } else {
            max = max.max(v.abs());
        }
    }
    (infs, nans, max)
}

/// Largest sum of squares over any LRN window of an N×C×H×W tensor.
fn max_window_squares(t: &Tensor, n: usize, across: bool) -> f32 {
    let [b, c, h, w] = match t.shape.as_slice() {
        [b, c, h, w] => [*b, *c, *h, *w],
        _ => return 0.0,
    };
    let half = (n.saturating_sub(1) / 2) as isize;
    let at = |i: usize, ch: usize, y: usize, x: usize| t.data[((i * c + ch) * h + y) * w + x];
    let mut best = 0.0f32;
    for i in 0..b {
        for ch in 0..c {
            for y in 0..h {
                for x in 0..w {
                    let mut s = 0.0f32;
                    if across {
                        for d in -half..=(n as isize - 1 - half) {
                            let cc = ch as isize + d;
                            if (0..c as isize).contains(&cc) {
                                s += at(i, cc as usize, y, x).powi(2);
                            }
                        }
                    } else {
                        for dy in -half..=half {
                            for dx in -half..=half {
                                let (yy, xx) = (y as isize + dy, x as isize + dx);
                                if (0..h as isize).contains(&yy) && (0..w as isize).contains(&xx) {
                                    s += at(i, ch, yy as usize, xx as usize).powi(2);
                                }
                            }
                        }
                    }
                    best = best.max(s);
                }
            }
        }
    }
    best
}

impl LayerHook for Rounding<'_> {
    fn on_input(&mut self, name: &str, t: &mut Tensor) {
        round_to_f16(&mut t.data);
        let (infs, nans, max_abs) = count_nonfinite(t);
        if infs + nans > 0 {
            self.nonfinite.insert(name.to_string());
            self.overflows.push(Overflow {
                layer: name.to_string(),
                kind: "Input",
                what: OverflowKind::Stored,
                infs,
                nans,
                max_abs,
                introduced: true,
            });
        }
        if self.watch.contains(name) {
            self.kept.insert(name.to_string(), t.clone());
        }
    }

    fn after_layer(&mut self, layer: &Layer, tops: &mut [Tensor]) {
        if let Some((bottom, n, across)) = self.lrns.get(&layer.name) {
            if let Some(x) = self.kept.get(bottom) {
                let s = max_window_squares(x, *n, *across);
                if s > F16_MAX {
                    self.overflows.push(Overflow {
                        layer: layer.name.clone(),
                        kind: layer.op.caffe_type(),
                        what: OverflowKind::LrnSumOfSquares,
                        infs: 0,
                        nans: 0,
                        max_abs: s,
                        introduced: true,
                    });
                }
            }
        }
        let inputs_finite = !layer.bottoms.iter().any(|b| self.nonfinite.contains(b));
        let mut infs = 0;
        let mut nans = 0;
        let mut max_abs = 0.0f32;
        for (t, name) in tops.iter_mut().zip(&layer.tops) {
            round_to_f16(&mut t.data);
            let (i, n, m) = count_nonfinite(t);
            if i + n > 0 {
                self.nonfinite.insert(name.clone());
            }
            infs += i;
            nans += n;
            max_abs = max_abs.max(m);
            if self.watch.contains(name) {
                self.kept.insert(name.clone(), t.clone());
            }
        }
        if infs + nans > 0 {
            self.overflows.push(Overflow {
                layer: layer.name.clone(),
                kind: layer.op.caffe_type(),
                what: OverflowKind::Stored,
                infs,
                nans,
                max_abs,
                introduced: inputs_finite,
            });
        }
    }
}

#[cfg(test)]
#[path = "f16_tests.rs"]
mod tests;
