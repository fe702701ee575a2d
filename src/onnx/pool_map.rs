//! Caffe pooling geometry expressed in ONNX terms, and the reverse check.
//!
//! Caffe (`PoolingLayer`) sizes its output with `ceil((H + 2p − k) / s) + 1`, minus one when
//! the last window would start at or beyond `H + p`. Each window starts at `o·s − p`; MAX
//! ignores padding (acts as −∞) and AVE divides by the window clipped to `[−p, H + p)`, so
//! padding counts but the ceil overhang beyond the padded border does not.
//!
//! ONNX pooling with explicit `pads = [begin, end]` and `ceil_mode = 0` reproduces the
//! window starts exactly when `begin = p` and `end` is chosen so that the floor formula
//! gives Caffe's output size. For AVE the ONNX divisor (`count_include_pad = 1`) is the
//! window clipped to `[−begin, H + end)`, which equals Caffe's only while `end ≤ p`; beyond
//! that the exporter pads explicitly and multiplies by a precomputed divisor correction.

use crate::ops::pool::{PoolParams, RoundMode};
use crate::ops::{OpError, OpResult};

/// One spatial axis of a Caffe pooling, with the ONNX end padding that reproduces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AxisPlan {
    /// Input size H.
    pub input: usize,
    /// Kernel k.
    pub kernel: usize,
    /// Stride s.
    pub stride: usize,
    /// Caffe's symmetric pad p (ONNX begin pad).
    pub pad: usize,
    /// ONNX end pad that makes the floor formula give Caffe's output size.
    pub pad_end: usize,
    /// Caffe's output size.
    pub out: usize,
}

impl AxisPlan {
    /// Plans one axis of a Caffe pooling (`round` as in the layer).
    pub fn caffe(
        input: usize,
        kernel: usize,
        stride: usize,
        pad: usize,
        round: RoundMode,
    ) -> OpResult<Self> {
        let out = PoolParams::out_dim(input, kernel, stride, pad, round)?;
        let needed = ((out - 1) * stride + kernel) as i64 - (input + pad) as i64;
        let pad_end = needed.max(0) as usize;
        let plan = Self {
            input,
            kernel,
            stride,
            pad,
            pad_end,
            out,
        };
        let floor_out = (input + pad + pad_end - kernel) / stride + 1;
        if floor_out != out {
            return Err(OpError::new(format!(
                "cannot express Caffe's output size {out} (input {input}, kernel {kernel}, stride {stride}, pad {pad}) with explicit ONNX pads"
            )));
        }
        if pad_end >= kernel {
            return Err(OpError::new(format!(
                "end padding {pad_end} would reach kernel size {kernel}"
            )));
        }
        Ok(plan)
    }

    /// True when the padded span is a whole number of strides, so ONNX's floor and ceil
    /// output formulas agree and `ceil_mode` can record Caffe's rounding without changing
    /// a single window.
    pub fn exact(&self) -> bool {
        (self.input + self.pad + self.pad_end - self.kernel).is_multiple_of(self.stride)
    }

    /// Caffe's AVE divisor for output `o`: the window clipped to `[−p, H + p)`.
    pub fn caffe_divisor(&self, o: usize) -> usize {
        let start = (o * self.stride) as i64 - self.pad as i64;
        let end = (start + self.kernel as i64).min((self.input + self.pad) as i64);
        (end - start) as usize
    }

    /// True when some window reaches past `H + p`, so AVE cannot use a plain
    /// `count_include_pad` AveragePool.
    pub fn overhangs(&self) -> bool {
        self.pad_end > self.pad
    }
}

/// The divisor correction `k_h·k_w / (d_h·d_w)` per output position, shape `[OH·OW]` in
/// row-major order: an AveragePool without padding divides by `k_h·k_w`; Caffe divides by
/// the clipped window `d_h·d_w`.
pub fn divisor_correction(h: &AxisPlan, w: &AxisPlan) -> Vec<f32> {
    let full = (h.kernel * w.kernel) as f64;
    let mut v = Vec::with_capacity(h.out * w.out);
    for oh in 0..h.out {
        for ow in 0..w.out {
            let d = (h.caffe_divisor(oh) * w.caffe_divisor(ow)) as f64;
            v.push((full / d) as f32);
        }
    }
    v
}

/// One spatial axis of an ONNX MaxPool/AveragePool (no dilation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnnxAxis {
    /// Input size.
    pub input: usize,
    /// Kernel.
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
    /// Begin pad.
    pub pad_begin: usize,
    /// End pad.
    pub pad_end: usize,
    /// `ceil_mode = 1`.
    pub ceil: bool,
}

impl OnnxAxis {
    /// ONNX output size; in ceil mode a window that would start in the end padding is
    /// dropped (the ONNX spec's rule, as onnxruntime implements it). `None` when the kernel
    /// does not fit.
    pub fn out(&self) -> Option<usize> {
        let padded = self.input + self.pad_begin + self.pad_end;
        let span = padded.checked_sub(self.kernel)?;
        if self.stride == 0 {
            return None;
        }
        let mut out = if self.ceil {
            span.div_ceil(self.stride) + 1
        } else {
            span / self.stride + 1
        };
        if self.ceil && out > 1 && (out - 1) * self.stride >= self.input + self.pad_begin {
            out -= 1;
        }
        Some(out)
    }

    /// The AveragePool divisor for output `o`: the window clipped to `[−begin, H + end)`
    /// with `count_include_pad`, else to the real input `[0, H)`.
    pub fn divisor(&self, o: usize, count_include_pad: bool) -> usize {
        let start = (o * self.stride) as i64 - self.pad_begin as i64;
        let (lo, hi) = if count_include_pad {
            (-(self.pad_begin as i64), (self.input + self.pad_end) as i64)
        } else {
            (0, self.input as i64)
        };
        let end = (start + self.kernel as i64).min(hi);
        (end - start.max(lo)).max(0) as usize
    }
}

/// How an ONNX pooling is averaged, for [`match_caffe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Averaging {
    /// MaxPool: only the output size and window starts matter.
    Max,
    /// AveragePool with this `count_include_pad`.
    Ave {
        /// Padding counts in the divisor.
        count_include_pad: bool,
    },
}

/// Finds the Caffe pooling (`pad = begin`) that computes exactly what the ONNX pooling
/// computes on both axes: same output sizes, same window starts and, for AVE, the same
/// divisor at every output position. Where CEIL and FLOOR both fit, the one matching
/// `ceil_mode` wins. `None` when there is none.
pub fn match_caffe(axes: [OnnxAxis; 2], averaging: Averaging) -> Option<RoundMode> {
    'round: for round in preferred_rounding(axes[0].ceil) {
        for a in &axes {
            let out = a.out()?;
            if a.pad_begin >= a.kernel {
                return None;
            }
            let Ok(c) = PoolParams::out_dim(a.input, a.kernel, a.stride, a.pad_begin, round) else {
                return None;
            };
            if c != out {
                continue 'round;
            }
            let plan = AxisPlan {
                input: a.input,
                kernel: a.kernel,
                stride: a.stride,
                pad: a.pad_begin,
                pad_end: 0,
                out,
            };
            if let Averaging::Ave { count_include_pad } = averaging {
                if (0..out).any(|o| plan.caffe_divisor(o) != a.divisor(o, count_include_pad)) {
                    continue 'round;
                }
            }
        }
        return Some(round);
    }
    None
}

/// CEIL then FLOOR for `ceil_mode = 1`, the other way round for 0.
pub fn preferred_rounding(ceil_mode: bool) -> [RoundMode; 2] {
    if ceil_mode {
        [RoundMode::Ceil, RoundMode::Floor]
    } else {
        [RoundMode::Floor, RoundMode::Ceil]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levi_hassner_pool_sizes_and_pads() {
        // 56 → 28 → 14 → 7 with MAX 3/2 (DESIGN.md): 56: ceil(53/2)+1 = 28, windows end at
        // 27·2+3 = 57, one past the input, so the end pad is 1.
        let a = AxisPlan::caffe(56, 3, 2, 0, RoundMode::Ceil).unwrap();
        assert_eq!((a.out, a.pad_end), (28, 1));
        let b = AxisPlan::caffe(14, 3, 2, 0, RoundMode::Ceil).unwrap();
        assert_eq!((b.out, b.pad_end), (7, 1));
    }

    #[test]
    fn caffe_clip_rule_and_divisors_by_hand() {
        // H=4, k=3, s=3, p=2: ceil(5/3)+1 = 3 but the third window would start at 6-2 = 4
        // = H, so Caffe keeps 2 outputs. Windows [-2,1) and [1,4): divisors 3 and
        // min(4,6)-1 = 3; end pad = (2-1)*3+3-4-2 = 0.
        let a = AxisPlan::caffe(4, 3, 3, 2, RoundMode::Ceil).unwrap();
        assert_eq!((a.out, a.pad_end), (2, 0));
        assert_eq!((a.caffe_divisor(0), a.caffe_divisor(1)), (3, 3));
        // H=8, k=3, s=2, p=1 (cifar-like): 5 outputs; the last window [7,10) is clipped to
        // H+p = 9, divisor 2; end pad 2 > p, so AVE needs the correction.
        let b = AxisPlan::caffe(8, 3, 2, 1, RoundMode::Ceil).unwrap();
        assert_eq!((b.out, b.pad_end), (5, 2));
        assert_eq!(
            (0..5).map(|o| b.caffe_divisor(o)).collect::<Vec<_>>(),
            vec![3, 3, 3, 3, 2]
        );
        assert!(b.overhangs());
        // The correction for the bottom-right output is 9 / (2·2).
        let c = divisor_correction(&b, &b);
        assert_eq!(c.len(), 25);
        assert_eq!((c[0], c[24], c[4]), (1.0, 2.25, 1.5));
    }

    #[test]
    fn onnx_ceil_mode_matches_caffe_and_count_include_pad_divisors() {
        // onnxruntime and PyTorch: AveragePool k3 s2 pads 1/1 ceil on 8 gives the divisors
        // 3,3,3,3,2 (the last window is clipped to H + end pad = 9).
        let o = OnnxAxis {
            input: 8,
            kernel: 3,
            stride: 2,
            pad_begin: 1,
            pad_end: 1,
            ceil: true,
        };
        assert_eq!(o.out(), Some(5));
        assert_eq!(o.divisor(4, true), 2);
        assert_eq!(o.divisor(0, false), 2);
        let ave = Averaging::Ave {
            count_include_pad: true,
        };
        assert_eq!(match_caffe([o, o], ave), Some(RoundMode::Ceil));
        // Without count_include_pad the first window divides by 2, Caffe by 3: no match.
        let no_cip = Averaging::Ave {
            count_include_pad: false,
        };
        assert_eq!(match_caffe([o, o], no_cip), None);
        // Floor-mode ONNX with the same pads gives 4 outputs: Caffe FLOOR.
        let f = OnnxAxis { ceil: false, ..o };
        assert_eq!(match_caffe([f, f], Averaging::Max), Some(RoundMode::Floor));
        // 56 with end pad 1 (Levi & Hassner's pool1): only Caffe CEIL has 28 windows
        // (FLOOR with pad 0 has 27), whatever ceil_mode says.
        let l = OnnxAxis {
            input: 56,
            kernel: 3,
            stride: 2,
            pad_begin: 0,
            pad_end: 1,
            ceil: false,
        };
        assert_eq!(match_caffe([l, l], Averaging::Max), Some(RoundMode::Ceil));
        // 8 with k2 s2 pads 1/1: CEIL and FLOOR both give 5 windows; ceil_mode decides.
        let l = OnnxAxis {
            input: 8,
            kernel: 2,
            stride: 2,
            pad_begin: 1,
            pad_end: 1,
            ceil: false,
        };
        assert_eq!(match_caffe([l, l], Averaging::Max), Some(RoundMode::Floor));
        let l = OnnxAxis { ceil: true, ..l };
        assert_eq!(match_caffe([l, l], Averaging::Max), Some(RoundMode::Ceil));
    }
}
