//! Dropout (Caffe `DropoutLayer`): inverted dropout. In TRAIN each element is kept with
//! probability 1 − ratio and scaled by 1/(1 − ratio); in TEST it is the identity.

use super::ctx::Ctx;
use super::{OpError, OpResult};
use crate::ir::{Phase, Tensor};
use rand::Rng;

/// Dropout parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct DropoutParams {
    /// Probability of dropping an element (default 0.5).
    pub ratio: f32,
}

impl Default for DropoutParams {
    fn default() -> Self {
        Self { ratio: 0.5 }
    }
}

impl DropoutParams {
    /// Forward in place (Caffe `DropoutLayer::Forward_cpu`). TEST: the identity. TRAIN:
    /// each element is kept with probability `1 − ratio` and scaled by `1 / (1 − ratio)`;
    /// the scaled mask (0 or the scale, per element) is pushed to `ctx.saved` for the
    /// backward pass, which multiplies the top gradient by it.
    pub fn apply(&self, x: &mut Tensor, ctx: &mut Ctx) -> OpResult<()> {
        if ctx.phase == Phase::Test {
            return Ok(());
        }
        if !(0.0..1.0).contains(&self.ratio) {
            return Err(OpError::new(format!(
                "dropout_ratio {} must be in [0, 1)",
                self.ratio
            )));
        }
        let keep = 1.0 - self.ratio;
        let scale = 1.0 / keep;
        let mut mask = ctx.tensor(&x.shape);
        for m in mask.data.iter_mut() {
            *m = if ctx.rng.random::<f32>() < keep {
                scale
            } else {
                0.0
            };
        }
        for (v, m) in x.data.iter_mut().zip(&mask.data) {
            *v *= m;
        }
        ctx.saved.push(mask);
        Ok(())
    }
}

// ---- backward (training) ----

impl DropoutParams {
    /// Backward (Caffe `DropoutLayer::Backward_cpu`): in TRAIN `dx = dy · mask`, with the
    /// scaled mask the forward saved (0 or `1 / (1 − ratio)` per element); in TEST (no
    /// mask) the identity.
    pub fn backward(&self, top_diff: &Tensor, mask: Option<&Tensor>) -> OpResult<Tensor> {
        self.backward_into(top_diff.clone(), mask)
    }

    /// [`DropoutParams::backward`] in place on `dx`, which holds a copy of the top diff.
    pub fn backward_into(&self, mut dx: Tensor, mask: Option<&Tensor>) -> OpResult<Tensor> {
        if let Some(m) = mask {
            if m.len() != dx.len() {
                return Err(OpError::new("dropout mask size differs from the top diff"));
            }
            dx.data.iter_mut().zip(&m.data).for_each(|(d, m)| *d *= m);
        }
        Ok(dx)
    }
}
