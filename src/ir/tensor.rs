//! The dense f32 tensor that flows between layers and holds weights.

use std::fmt;

/// A dense, row-major (C order) f32 tensor. Caffe blobs are N×C×H×W in this order, so
/// weights and activations map onto it without transposition.
#[derive(Clone, PartialEq, Default)]
pub struct Tensor {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values in C order.
    pub data: Vec<f32>,
}

impl Tensor {
    /// A tensor of zeros.
    pub fn zeros(shape: &[usize]) -> Self {
        Self {
            shape: shape.to_vec(),
            data: vec![0.0; shape.iter().product()],
        }
    }

    /// A tensor filled with `value`.
    pub fn full(shape: &[usize], value: f32) -> Self {
        Self {
            shape: shape.to_vec(),
            data: vec![value; shape.iter().product()],
        }
    }

    /// Wraps `data`; returns `None` when its length does not match `shape`.
    pub fn from_vec(shape: &[usize], data: Vec<f32>) -> Option<Self> {
        (shape.iter().product::<usize>() == data.len()).then(|| Self {
            shape: shape.to_vec(),
            data,
        })
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Product of the dimensions from `axis` on (Caffe's `count(axis)`).
    pub fn count_from(&self, axis: usize) -> usize {
        self.shape[axis.min(self.shape.len())..].iter().product()
    }

    /// Caffe's legacy 4-D view: missing leading dims count as 1 (`LegacyShape`).
    pub fn legacy_dim(&self, index: usize) -> usize {
        let n = self.shape.len();
        if index + n >= 4 {
            self.shape[index + n - 4]
        } else {
            1
        }
    }

    /// Returns a copy with another shape of the same element count.
    pub fn reshaped(mut self, shape: &[usize]) -> Option<Self> {
        (shape.iter().product::<usize>() == self.data.len()).then(|| {
            self.shape = shape.to_vec();
            self
        })
    }

    /// Largest absolute value (0 for an empty tensor).
    pub fn max_abs(&self) -> f32 {
        self.data.iter().fold(0.0f32, |m, v| m.max(v.abs()))
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor{:?}", self.shape)?;
        if self.data.len() <= 8 {
            write!(f, " {:?}", self.data)
        } else {
            write!(
                f,
                " [{}, {}, .. {} values]",
                self.data[0],
                self.data[1],
                self.data.len()
            )
        }
    }
}

/// Formats a shape as Caffe logs it: `1 3 227 227`.
pub fn shape_string(shape: &[usize]) -> String {
    shape
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}
