//! Dropout (Caffe `DropoutLayer`): inverted dropout. In TRAIN each element is kept with
//! probability 1 − ratio and scaled by 1/(1 − ratio); in TEST it is the identity.

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
