//! Element-wise activations: ReLU (with Caffe's `negative_slope`, i.e. leaky), PReLU
//! (learned per-channel slopes), Sigmoid and TanH. All keep the bottom's shape.

use super::{expect_blob_len, expect_bottoms, OpError, OpResult};
use crate::ir::{Filler, Tensor};

/// ReLU parameters: `y = max(0, x) + negative_slope · min(0, x)`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReluParams {
    /// Slope for negative inputs (0 = plain ReLU).
    pub negative_slope: f32,
}

/// PReLU parameters: `y = max(0, x) + a_c · min(0, x)` with one learned `a` per channel, or
/// a single shared one.
#[derive(Debug, Clone, PartialEq)]
pub struct PReluParams {
    /// One slope for all channels.
    pub channel_shared: bool,
    /// Filler for the slopes (Caffe's default: constant 0.25).
    pub filler: Filler,
}

impl Default for PReluParams {
    fn default() -> Self {
        Self {
            channel_shared: false,
            filler: Filler::Constant { value: 0.25 },
        }
    }
}

impl PReluParams {
    /// Slope blob shape: `[C]`, or `[]`-like `[1]` when shared.
    pub fn weight_shapes(&self, bottoms: &[Vec<usize>]) -> Vec<Vec<usize>> {
        let c = bottoms.first().and_then(|b| b.get(1)).copied().unwrap_or(1);
        vec![vec![if self.channel_shared { 1 } else { c }]]
    }
}

/// Shape rule shared by every element-wise activation.
pub fn same_shape(bottoms: &[Vec<usize>]) -> OpResult<Vec<Vec<usize>>> {
    expect_bottoms(bottoms, 1, 1)?;
    if bottoms[0].is_empty() {
        return Err(OpError::new("bottom has no dimensions"));
    }
    Ok(vec![bottoms[0].clone()])
}

/// Caffe's ReLU on a slice: `max(x, 0) + negative_slope · min(x, 0)` (so a plain ReLU maps
/// negatives to +0, as Caffe does). Written branch-free so it vectorises.
pub fn relu_in_place(x: &mut [f32], negative_slope: f32) {
    if negative_slope == 0.0 {
        for v in x.iter_mut() {
            *v = if *v > 0.0 { *v } else { 0.0 };
        }
    } else {
        for v in x.iter_mut() {
            let pos = if *v > 0.0 { *v } else { 0.0 };
            let neg = if *v < 0.0 { *v } else { 0.0 };
            *v = pos + negative_slope * neg;
        }
    }
}

/// Caffe's sigmoid (`SigmoidLayer`): `0.5 · tanh(0.5 · x) + 0.5`, which equals
/// `1 / (1 + e^−x)` without overflowing for large |x|.
pub fn sigmoid_in_place(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = 0.5 * (0.5 * *v).tanh() + 0.5;
    }
}

/// Caffe's TanH layer.
pub fn tanh_in_place(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = v.tanh();
    }
}

/// Elements per parallel task for element-wise work: large enough to amortise rayon's
/// scheduling, small enough to split one image's activations over the threads.
pub(crate) const ELEMENTWISE_CHUNK: usize = 1 << 16;

impl ReluParams {
    /// ReLU on `x` in place, split over the rayon pool.
    pub fn apply(&self, x: &mut [f32]) {
        use rayon::prelude::*;
        let slope = self.negative_slope;
        x.par_chunks_mut(ELEMENTWISE_CHUNK)
            .for_each(|c| relu_in_place(c, slope));
    }
}

impl PReluParams {
    /// PReLU in place (Caffe `PReLULayer::Forward_cpu`): channel `c = (i / HW) % C` of a
    /// bottom whose axis 1 is the channel axis, `y = max(x, 0) + a_c · min(x, 0)`.
    pub fn apply(&self, x: &mut Tensor, blobs: &[Tensor]) -> OpResult<()> {
        let channels = if x.shape.len() > 1 { x.shape[1] } else { 1 };
        let slopes = if self.channel_shared { 1 } else { channels };
        expect_blob_len(blobs, 0, slopes, "slopes")?;
        let a = &blobs[0].data;
        let inner = x.count_from(2).max(1);
        if self.channel_shared {
            relu_in_place(&mut x.data, a[0]);
        } else {
            use rayon::prelude::*;
            x.data
                .par_chunks_mut(inner)
                .enumerate()
                .for_each(|(i, plane)| relu_in_place(plane, a[i % channels]));
        }
        Ok(())
    }
}

// ---- backward (training) ----

use rayon::prelude::*;

/// Elements per rayon task in the element-wise backward passes.
const GRAD_CHUNK: usize = 1 << 14;

/// Checks that a diff and the data it pairs with have one shape.
pub fn expect_same_len(what: &str, diff: &Tensor, data: &Tensor) -> OpResult<()> {
    if diff.shape != data.shape {
        return Err(OpError::new(format!(
            "{what}: top diff shape {:?} differs from the data's {:?}",
            diff.shape, data.shape
        )));
    }
    Ok(())
}

/// `dx[i] = dy[i] · f(y_or_x[i])` in parallel chunks, written over every element of `dx`
/// (whose contents on entry do not matter).
fn map_diff_into(
    top_diff: &Tensor,
    data: &Tensor,
    f: impl Fn(f32) -> f32 + Sync,
    mut dx: Tensor,
) -> Tensor {
    dx.data
        .par_chunks_mut(GRAD_CHUNK)
        .zip(top_diff.data.par_chunks(GRAD_CHUNK))
        .zip(data.data.par_chunks(GRAD_CHUNK))
        .for_each(|((dx, dy), v)| {
            for ((dx, &dy), &v) in dx.iter_mut().zip(dy).zip(v) {
                *dx = dy * f(v);
            }
        });
    dx
}

/// [`map_diff_into`] a fresh buffer.
fn map_diff(top_diff: &Tensor, data: &Tensor, f: impl Fn(f32) -> f32 + Sync) -> Tensor {
    map_diff_into(top_diff, data, f, Tensor::zeros(&top_diff.shape))
}

impl ReluParams {
    /// Backward (Caffe `ReLULayer::Backward_cpu`):
    /// `dx = dy · ((x > 0) + negative_slope · (x ≤ 0))`. Caffe runs ReLU in place, so its
    /// `x` is really the top; the sign pattern is the same for a non-negative slope, so
    /// either the bottom or the top may be passed.
    pub fn backward(&self, top_diff: &Tensor, x: &Tensor) -> OpResult<Tensor> {
        self.backward_into(top_diff, x, Tensor::zeros(&top_diff.shape))
    }

    /// [`ReluParams::backward`] into `dx` (any contents, the top diff's shape), so that a
    /// training loop can reuse its buffers.
    pub fn backward_into(&self, top_diff: &Tensor, x: &Tensor, dx: Tensor) -> OpResult<Tensor> {
        expect_same_len("ReLU", top_diff, x)?;
        expect_same_len("ReLU", &dx, x)?;
        let s = self.negative_slope;
        Ok(map_diff_into(
            top_diff,
            x,
            |v| if v > 0.0 { 1.0 } else { s },
            dx,
        ))
    }
}

/// Sigmoid backward (Caffe `SigmoidLayer`): `dx = dy · y · (1 − y)` from the top `y`.
pub fn sigmoid_backward(top_diff: &Tensor, top: &Tensor) -> OpResult<Tensor> {
    expect_same_len("Sigmoid", top_diff, top)?;
    Ok(map_diff(top_diff, top, |y| y * (1.0 - y)))
}

/// TanH backward (Caffe `TanHLayer`): `dx = dy · (1 − y²)` from the top `y`.
pub fn tanh_backward(top_diff: &Tensor, top: &Tensor) -> OpResult<Tensor> {
    expect_same_len("TanH", top_diff, top)?;
    Ok(map_diff(top_diff, top, |y| 1.0 - y * y))
}

impl PReluParams {
    /// Backward (Caffe `PReLULayer::Backward_cpu`) from the bottom `x` and the slopes `a`:
    /// `da_c += Σ dy · x · (x ≤ 0)` over the batch and space (all channels when shared),
    /// accumulated into `slope_diff` when given; `dx = dy · (x > 0 ? 1 : a_c)`.
    pub fn backward(
        &self,
        top_diff: &Tensor,
        x: &Tensor,
        slopes: &Tensor,
        slope_diff: Option<&mut Tensor>,
    ) -> OpResult<Tensor> {
        expect_same_len("PReLU", top_diff, x)?;
        let channels = if x.shape.len() > 1 { x.shape[1] } else { 1 };
        let inner = x.count_from(2);
        let want = if self.channel_shared { 1 } else { channels };
        if slopes.len() != want {
            return Err(OpError::new(format!(
                "PReLU has {} slopes, expected {want}",
                slopes.len()
            )));
        }
        let slope_of = |c: usize| slopes.data[if self.channel_shared { 0 } else { c }];
        if let Some(sd) = slope_diff {
            if sd.len() != want {
                return Err(OpError::new("PReLU slope diff has the wrong size"));
            }
            for (i, (dy, x)) in top_diff
                .data
                .chunks(inner.max(1))
                .zip(x.data.chunks(inner.max(1)))
                .enumerate()
            {
                let c = if self.channel_shared { 0 } else { i % channels };
                let s: f32 = dy
                    .iter()
                    .zip(x)
                    .filter(|(_, &x)| x <= 0.0)
                    .map(|(&dy, &x)| dy * x)
                    .sum();
                sd.data[c] += s;
            }
        }
        let mut dx = Tensor::zeros(&x.shape);
        for (i, ((dx, dy), x)) in dx
            .data
            .chunks_mut(inner.max(1))
            .zip(top_diff.data.chunks(inner.max(1)))
            .zip(x.data.chunks(inner.max(1)))
            .enumerate()
        {
            let a = slope_of(i % channels);
            for ((dx, &dy), &x) in dx.iter_mut().zip(dy).zip(x) {
                *dx = if x > 0.0 { dy } else { dy * a };
            }
        }
        Ok(dx)
    }
}

#[cfg(test)]
mod backward_tests {
    use super::*;

    fn t(v: &[f32]) -> Tensor {
        Tensor::from_vec(&[1, v.len(), 1, 1], v.to_vec()).unwrap()
    }

    #[test]
    fn relu_sigmoid_tanh_prelu_match_their_derivatives() {
        let x = t(&[-2.0, -0.5, 0.0, 0.5, 3.0]);
        let dy = t(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        let r = ReluParams {
            negative_slope: 0.1,
        }
        .backward(&dy, &x)
        .unwrap();
        assert_eq!(r.data, vec![0.1, 0.2, 0.3, 4.0, 5.0]);
        // y = 0.5 → y(1 − y) = 0.25; tanh y = 0.5 → 1 − 0.25.
        let y = t(&[0.5]);
        assert_eq!(sigmoid_backward(&t(&[2.0]), &y).unwrap().data, vec![0.5]);
        assert_eq!(tanh_backward(&t(&[2.0]), &y).unwrap().data, vec![1.5]);
        // PReLU over 2 channels of 2 values: slopes 0.25 and 0.5.
        let x = Tensor::from_vec(&[1, 2, 2], vec![-1.0, 2.0, -4.0, 0.0]).unwrap();
        let dy = Tensor::from_vec(&[1, 2, 2], vec![1.0, 1.0, 2.0, 3.0]).unwrap();
        let a = Tensor::from_vec(&[2], vec![0.25, 0.5]).unwrap();
        let mut da = Tensor::zeros(&[2]);
        let p = PReluParams::default();
        let dx = p.backward(&dy, &x, &a, Some(&mut da)).unwrap();
        assert_eq!(dx.data, vec![0.25, 1.0, 1.0, 1.5]);
        // da0 = 1·(−1) = −1; da1 = 2·(−4) + 3·0 = −8.
        assert_eq!(da.data, vec![-1.0, -8.0]);
        assert!(ReluParams::default().backward(&t(&[1.0]), &x).is_err());
    }
}
