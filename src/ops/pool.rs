//! Pooling (Caffe `PoolingLayer`): MAX and AVE, global pooling, and Caffe's output size
//! rule: `ceil((H + 2p − k) / s) + 1`, minus one when the last window would start at or
//! beyond `H + p` (so every window starts inside the image or its left padding).

use super::ctx::Ctx;
pub use super::window::PoolWindow;
use super::{expect_bottoms, OpError, OpResult};
use crate::ir::Tensor;
use rayon::prelude::*;

/// Pooling method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMethod {
    /// Maximum over the window; padding never wins (acts as −∞).
    Max,
    /// Average; Caffe divides by the window clipped to `H + pad` (padding counts, the part
    /// beyond the padded border does not).
    Ave,
}

/// Output size rounding (`round_mode`, or the fork field `ceil_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoundMode {
    /// Caffe's default.
    Ceil,
    /// `round_mode: FLOOR` or `ceil_mode: false`.
    Floor,
}

/// Parameters of a pooling layer with Caffe's defaults (MAX, stride 1, pad 0, CEIL).
#[derive(Debug, Clone, PartialEq)]
pub struct PoolParams {
    /// MAX or AVE.
    pub method: PoolMethod,
    /// Window height and width (ignored when `global`).
    pub kernel: [usize; 2],
    /// Stride (height, width).
    pub stride: [usize; 2],
    /// Padding (height, width).
    pub pad: [usize; 2],
    /// Pool over the whole spatial extent (`global_pooling`).
    pub global: bool,
    /// CEIL (default) or FLOOR.
    pub round: RoundMode,
}

impl Default for PoolParams {
    fn default() -> Self {
        Self {
            method: PoolMethod::Max,
            kernel: [1, 1],
            stride: [1, 1],
            pad: [0, 0],
            global: false,
            round: RoundMode::Ceil,
        }
    }
}

impl PoolParams {
    /// The effective (kernel, stride, pad) for a bottom of spatial size `hw`; global
    /// pooling uses the whole image with stride 1 and no padding.
    pub fn effective(&self, hw: [usize; 2]) -> ([usize; 2], [usize; 2], [usize; 2]) {
        if self.global {
            (hw, [1, 1], [0, 0])
        } else {
            (self.kernel, self.stride, self.pad)
        }
    }

    /// Output size along one axis, following Caffe's `PoolingLayer::Reshape`.
    pub fn out_dim(
        input: usize,
        kernel: usize,
        stride: usize,
        pad: usize,
        round: RoundMode,
    ) -> OpResult<usize> {
        if input + 2 * pad < kernel {
            return Err(OpError::new(format!(
                "kernel {kernel} exceeds padded input {}",
                input + 2 * pad
            )));
        }
        let span = input + 2 * pad - kernel;
        let mut out = match round {
            RoundMode::Ceil => span.div_ceil(stride) + 1,
            RoundMode::Floor => span / stride + 1,
        };
        if pad > 0 && (out - 1) * stride >= input + pad {
            out -= 1;
        }
        Ok(out)
    }

    /// Output shape for an N×C×H×W bottom.
    pub fn output_shapes(&self, bottoms: &[Vec<usize>]) -> OpResult<Vec<Vec<usize>>> {
        expect_bottoms(bottoms, 1, 1)?;
        let b = &bottoms[0];
        if b.len() != 4 {
            return Err(OpError::new(format!("needs a 4-D bottom, got {:?}", b)));
        }
        let (k, s, p) = self.effective([b[2], b[3]]);
        if k.contains(&0) || s.contains(&0) {
            return Err(OpError::new("kernel and stride must be positive"));
        }
        if p[0] >= k[0] || p[1] >= k[1] {
            return Err(OpError::new(format!(
                "pad {:?} must be smaller than kernel {:?}",
                p, k
            )));
        }
        let h = Self::out_dim(b[2], k[0], s[0], p[0], self.round)?;
        let w = Self::out_dim(b[3], k[1], s[1], p[1], self.round)?;
        Ok(vec![vec![b[0], b[1], h, w]])
    }

    /// One compare or add per window element and output.
    pub fn flops(&self, bottoms: &[Vec<usize>], tops: &[Vec<usize>]) -> u64 {
        let b = &bottoms[0];
        let (k, _, _) = self.effective([b[2], b[3]]);
        (tops[0].iter().product::<usize>() * k[0] * k[1]) as u64
    }
}

impl PoolParams {
    /// The window geometry for an N×C×H×W bottom.
    pub fn window(&self, bottom: &[usize]) -> OpResult<PoolWindow> {
        let out = self.output_shapes(&[bottom.to_vec()])?;
        let (kernel, stride, pad) = self.effective([bottom[2], bottom[3]]);
        Ok(PoolWindow {
            input: [bottom[2], bottom[3]],
            output: [out[0][2], out[0][3]],
            kernel,
            stride,
            pad,
        })
    }

    /// Forward pass (Caffe `PoolingLayer::Forward_cpu`, MAX and AVE), parallel over the
    /// N·C planes.
    pub fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> OpResult<Tensor> {
        let win = self.window(&x.shape)?;
        let mut y = ctx.tensor(&[x.shape[0], x.shape[1], win.output[0], win.output[1]]);
        let (in_plane, out_plane) = (win.input[0] * win.input[1], win.output[0] * win.output[1]);
        if y.is_empty() || in_plane == 0 {
            return Ok(y);
        }
        // A few planes per task: enough to amortise the window tables, small enough to
        // split one image's channels over the threads.
        const PLANES_PER_TASK: usize = 8;
        let method = self.method;
        y.data
            .par_chunks_mut(out_plane * PLANES_PER_TASK)
            .zip(x.data.par_chunks(in_plane * PLANES_PER_TASK))
            .for_each(|(dst, src)| match method {
                PoolMethod::Max => win.max_planes(src, dst),
                PoolMethod::Ave => win.ave_planes(src, dst),
            });
        Ok(y)
    }
}

// ---- backward (training) ----

impl PoolParams {
    /// Backward (Caffe `PoolingLayer::Backward_cpu`) into a fresh buffer; see
    /// [`PoolParams::backward_into`].
    pub fn backward(&self, top_diff: &Tensor, bottom: &Tensor, top: &Tensor) -> OpResult<Tensor> {
        self.backward_into(top_diff, bottom, top, Tensor::zeros(&bottom.shape))
    }

    /// Backward (Caffe `PoolingLayer::Backward_cpu`) accumulated into `dx`, which must be
    /// zero-filled with the bottom's shape. MAX routes each top diff to the first maximal
    /// bottom element of its window in row-major scan order, the element Caffe's forward
    /// chose (it keeps the first of equal values because only a strictly greater one
    /// replaces it): the first element equal to the forward's output `top`. AVE spreads
    /// `dy / pool_size` over the window, with Caffe's divisor that counts padding inside
    /// `H + pad`. Parallel over the N·C planes.
    pub fn backward_into(
        &self,
        top_diff: &Tensor,
        bottom: &Tensor,
        top: &Tensor,
        mut dx: Tensor,
    ) -> OpResult<Tensor> {
        let out = self.output_shapes(std::slice::from_ref(&bottom.shape))?;
        if top_diff.shape != out[0] || top.shape != out[0] {
            return Err(OpError::new(format!(
                "top diff shape {:?} and top shape {:?}, expected {:?}",
                top_diff.shape, top.shape, out[0]
            )));
        }
        if dx.shape != bottom.shape {
            return Err(OpError::new("bottom diff buffer has the wrong shape"));
        }
        let win = self.window(&bottom.shape)?;
        let (plane, out_plane) = (win.input[0] * win.input[1], win.output[0] * win.output[1]);
        if plane == 0 || out_plane == 0 {
            return Ok(dx);
        }
        let method = self.method;
        dx.data
            .par_chunks_mut(plane)
            .zip(bottom.data.par_chunks(plane))
            .zip(top.data.par_chunks(out_plane))
            .zip(top_diff.data.par_chunks(out_plane))
            .for_each(|(((dx, x), y), dy)| match method {
                PoolMethod::Max => win.max_backward_plane(x, y, dy, dx),
                PoolMethod::Ave => win.ave_backward_plane(dy, dx),
            });
        Ok(dx)
    }
}

#[cfg(test)]
mod backward_tests {
    use super::*;

    /// The forward's output, which the MAX backward reads to find each window's arg-max.
    pub(super) fn top_of(p: &PoolParams, x: &Tensor) -> Tensor {
        p.forward(x, &mut Ctx::default()).unwrap()
    }

    #[test]
    fn max_routes_to_the_first_maximum_and_ave_uses_caffes_divisor() {
        // 1×1×3×3, kernel 2 stride 1: windows at (0,0),(0,1),(1,0),(1,1).
        let x = Tensor::from_vec(
            &[1, 1, 3, 3],
            vec![1.0, 5.0, 5.0, 2.0, 3.0, 4.0, 9.0, 0.0, 4.0],
        )
        .unwrap();
        let p = PoolParams {
            kernel: [2, 2],
            ..Default::default()
        };
        let dy = Tensor::from_vec(&[1, 1, 2, 2], vec![1.0, 10.0, 100.0, 1000.0]).unwrap();
        let dx = p.backward(&dy, &x, &top_of(&p, &x)).unwrap();
        // Window (0,0) {1,5,2,3} → 5 at (0,1); (0,1) {5,5,3,4} → first 5 at (0,1);
        // (1,0) {2,3,9,0} → 9 at (2,0); (1,1) {3,4,0,4} → first 4 at (1,2).
        assert_eq!(
            dx.data,
            vec![0.0, 11.0, 0.0, 0.0, 0.0, 1000.0, 100.0, 0.0, 0.0]
        );

        // AVE 3×3, stride 2, pad 1 on a 3×3 input: output 2×2 (ceil). Window (0,0) spans
        // rows/cols −1..2 → divisor 9 (padding counts), covering x[0..2, 0..2]; window
        // (1,1) spans 1..4 clipped to H + pad = 4 → 3·3 = 9, covering x[1..3, 1..3].
        let p = PoolParams {
            method: PoolMethod::Ave,
            kernel: [3, 3],
            stride: [2, 2],
            pad: [1, 1],
            ..Default::default()
        };
        let dy = Tensor::from_vec(&[1, 1, 2, 2], vec![9.0, 0.0, 0.0, 18.0]).unwrap();
        let zeros = Tensor::zeros(&[1, 1, 3, 3]);
        let dx = p.backward(&dy, &zeros, &top_of(&p, &zeros)).unwrap();
        assert_eq!(dx.data, vec![1.0, 1.0, 0.0, 1.0, 3.0, 2.0, 0.0, 2.0, 2.0]);
        assert!(p.backward(&zeros, &x, &zeros).is_err());
    }
}

#[cfg(test)]
mod gradient_checks {
    use super::*;
    use crate::train::gradcheck::uniform;

    /// Caffe's pooling forward in f64 from the formulas (the reference).
    fn naive(p: &PoolParams, x: &[f64], shape: &[usize], out: &[usize]) -> Vec<f64> {
        let (h, w) = (shape[2], shape[3]);
        let (k, s, pad) = p.effective([h, w]);
        let planes = shape[0] * shape[1];
        let mut y = Vec::new();
        for pl in 0..planes {
            for ph in 0..out[2] {
                for pw in 0..out[3] {
                    let hs = (ph * s[0]) as isize - pad[0] as isize;
                    let ws = (pw * s[1]) as isize - pad[1] as isize;
                    let v = match p.method {
                        PoolMethod::Max => {
                            let he = (hs + k[0] as isize).min(h as isize);
                            let we = (ws + k[1] as isize).min(w as isize);
                            let mut m = f64::MIN;
                            for yy in hs.max(0)..he {
                                for xx in ws.max(0)..we {
                                    m = m.max(x[pl * h * w + yy as usize * w + xx as usize]);
                                }
                            }
                            m
                        }
                        PoolMethod::Ave => {
                            let he = (hs + k[0] as isize).min((h + pad[0]) as isize);
                            let we = (ws + k[1] as isize).min((w + pad[1]) as isize);
                            let div = ((he - hs) * (we - ws)) as f64;
                            let mut sum = 0.0;
                            for yy in hs.max(0)..he.min(h as isize) {
                                for xx in ws.max(0)..we.min(w as isize) {
                                    sum += x[pl * h * w + yy as usize * w + xx as usize];
                                }
                            }
                            sum / div
                        }
                    };
                    y.push(v);
                }
            }
        }
        y
    }

    #[test]
    fn max_and_ave_with_ceil_and_padding_match_finite_differences() {
        let shape = vec![2, 2, 5, 6];
        for method in [PoolMethod::Max, PoolMethod::Ave] {
            for (kernel, stride, pad) in [(3, 2, 0), (3, 2, 1), (2, 3, 1)] {
                let p = PoolParams {
                    method,
                    kernel: [kernel; 2],
                    stride: [stride; 2],
                    pad: [pad; 2],
                    ..Default::default()
                };
                let out = p
                    .output_shapes(std::slice::from_ref(&shape))
                    .unwrap()
                    .remove(0);
                let len: usize = shape.iter().product();
                let x = uniform(len, -3.0, 3.0, 5);
                let dy = uniform(out.iter().product(), -1.0, 1.0, 6);
                let xt = Tensor::from_vec(&shape, x.clone()).unwrap();
                let top = super::backward_tests::top_of(&p, &xt);
                let dx = p
                    .backward(&Tensor::from_vec(&out, dy.clone()).unwrap(), &xt, &top)
                    .unwrap();
                let xd: Vec<f64> = x.iter().map(|&v| v as f64).collect();
                let obj = |v: Vec<f64>| v.iter().zip(&dy).map(|(a, &b)| a * b as f64).sum::<f64>();
                for i in 0..len {
                    let (mut xp, mut xm) = (xd.clone(), xd.clone());
                    xp[i] += 1e-5;
                    xm[i] -= 1e-5;
                    let numeric = (obj(naive(&p, &xp, &shape, &out))
                        - obj(naive(&p, &xm, &shape, &out)))
                        / 2e-5;
                    assert!(
                        (dx.data[i] as f64 - numeric).abs() < 1e-4,
                        "{method:?} k{kernel} s{stride} p{pad} element {i}: {} vs {numeric}",
                        dx.data[i]
                    );
                }
            }
        }
    }
}
