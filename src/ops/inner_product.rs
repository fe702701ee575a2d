//! InnerProduct (Caffe `InnerProductLayer`): the bottom is flattened from `axis` into K
//! inputs, `y = x · Wᵀ + b` with W stored `[num_output, K]` (or `[K, num_output]` when
//! `transpose` is set).

use super::activation::relu_in_place;
use super::ctx::Ctx;
use super::gemm::{sgemm, Layout, MatRef};
use super::{canonical_axis, expect_blob_len, expect_bottoms, OpError, OpResult};
use crate::ir::{Filler, Tensor};
use rayon::prelude::*;

/// InnerProduct parameters with Caffe's defaults (bias on, axis 1, no transpose).
#[derive(Debug, Clone, PartialEq)]
pub struct InnerProductParams {
    /// Number of outputs N.
    pub num_output: usize,
    /// Whether a bias blob `[N]` follows the weights.
    pub bias_term: bool,
    /// First axis that is flattened into K (may be negative).
    pub axis: i32,
    /// Weights stored `[K, N]` instead of `[N, K]`.
    pub transpose: bool,
    /// Filler for the weights.
    pub weight_filler: Filler,
    /// Filler for the bias.
    pub bias_filler: Filler,
}

impl Default for InnerProductParams {
    fn default() -> Self {
        Self {
            num_output: 0,
            bias_term: true,
            axis: 1,
            transpose: false,
            weight_filler: Filler::default(),
            bias_filler: Filler::default(),
        }
    }
}

impl InnerProductParams {
    /// (M, K): rows (the product of the dims before `axis`) and inputs per row.
    pub fn m_k(&self, bottom: &[usize]) -> OpResult<(usize, usize)> {
        let axis = canonical_axis(self.axis, bottom.len())?;
        Ok((
            bottom[..axis].iter().product(),
            bottom[axis..].iter().product(),
        ))
    }

    /// Output shape: the bottom's dims before `axis`, then N.
    pub fn output_shapes(&self, bottoms: &[Vec<usize>]) -> OpResult<Vec<Vec<usize>>> {
        expect_bottoms(bottoms, 1, 1)?;
        if self.num_output == 0 {
            return Err(OpError::new("num_output must be positive"));
        }
        let axis = canonical_axis(self.axis, bottoms[0].len())?;
        let mut s = bottoms[0][..axis].to_vec();
        s.push(self.num_output);
        Ok(vec![s])
    }

    /// `[N, K]` (or `[K, N]`) and `[N]`.
    pub fn weight_shapes(&self, bottoms: &[Vec<usize>]) -> Vec<Vec<usize>> {
        let k = bottoms
            .first()
            .and_then(|b| self.m_k(b).ok())
            .map(|(_, k)| k)
            .unwrap_or(0);
        let w = if self.transpose {
            vec![k, self.num_output]
        } else {
            vec![self.num_output, k]
        };
        let mut v = vec![w];
        if self.bias_term {
            v.push(vec![self.num_output]);
        }
        v
    }

    /// 2 × M × N × K.
    pub fn flops(&self, bottoms: &[Vec<usize>]) -> u64 {
        let (m, k) = self.m_k(&bottoms[0]).unwrap_or((0, 0));
        2 * (m * k * self.num_output) as u64
    }
}

/// At most this many rows use the matrix-vector path: each weight row is streamed from
/// memory once and dotted with every input row, instead of being packed by the GEMM.
const GEMV_MAX_ROWS: usize = 4;

impl InnerProductParams {
    /// Forward pass (Caffe `InnerProductLayer::Forward_cpu`): `y[M×N] = x[M×K] · Wᵀ + b`
    /// (`x · W` when `transpose`). `relu` fuses a following ReLU with that slope.
    pub fn forward(
        &self,
        x: &Tensor,
        blobs: &[Tensor],
        ctx: &mut Ctx,
        relu: Option<f32>,
    ) -> OpResult<Tensor> {
        let out_shape = self
            .output_shapes(std::slice::from_ref(&x.shape))?
            .remove(0);
        let (m, k) = self.m_k(&x.shape)?;
        let n = self.num_output;
        expect_blob_len(blobs, 0, n * k, "weights")?;
        let w = &blobs[0].data;
        let bias = if self.bias_term {
            expect_blob_len(blobs, 1, n, "bias")?;
            Some(&blobs[1].data[..])
        } else {
            None
        };
        let mut y = ctx.tensor(&out_shape);
        if m == 0 || n == 0 {
            return Ok(y);
        }
        // Computed as yᵀ[N×M] = W · xᵀ, with W's rows (output units) split into one block
        // per thread: each block is an independent single-threaded product that reads its
        // weight rows once. (x · Wᵀ with the GEMM's own threading measured 3× slower for
        // AgeNet's fc6 at batch 50, and did not scale with threads.)
        let mut by_unit = ctx.tensor(&[n, m]);
        if !self.transpose && m <= GEMV_MAX_ROWS {
            gemv_rows(&x.data, w, m, k, n, &mut by_unit.data);
        } else {
            let threads = ctx.threads;
            let rows_per_block = if threads > 1 {
                n.div_ceil(threads).next_multiple_of(8).min(n)
            } else {
                n
            };
            let transpose = self.transpose;
            by_unit
                .data
                .par_chunks_mut(rows_per_block * m)
                .enumerate()
                .for_each(|(block, out)| {
                    let (first, rows) = (block * rows_per_block, out.len() / m);
                    let weights = if transpose {
                        // W stored [K, N]: unit j's weights are column j.
                        MatRef {
                            data: &w[first..],
                            layout: Layout::Transposed { ld: n },
                        }
                    } else {
                        MatRef::row_major(&w[first * k..][..rows * k], k)
                    };
                    sgemm(
                        rows,
                        m,
                        k,
                        weights,
                        MatRef::transposed(&x.data, k),
                        out,
                        m,
                        false,
                        1,
                    );
                });
        }
        for (i, row) in y.data.chunks_mut(n).enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = by_unit.data[j * m + i] + bias.map_or(0.0, |b| b[j]);
            }
            if let Some(slope) = relu {
                relu_in_place(row, slope);
            }
        }
        ctx.recycle(by_unit);
        Ok(y)
    }
}

/// `by_unit[j][i] = x_i · W_j` for a few rows `x_i`, parallel over blocks of output units.
/// Memory-bound: every weight row is read once from memory for all `m` input rows.
fn gemv_rows(x: &[f32], w: &[f32], m: usize, k: usize, n: usize, by_unit: &mut [f32]) {
    const UNITS_PER_TASK: usize = 16;
    by_unit[..n * m]
        .par_chunks_mut(UNITS_PER_TASK * m)
        .enumerate()
        .for_each(|(block, out)| {
            for (u, out_u) in out.chunks_mut(m).enumerate() {
                let j = block * UNITS_PER_TASK + u;
                let wj = &w[j * k..][..k];
                for (i, o) in out_u.iter_mut().enumerate() {
                    *o = dot(&x[i * k..][..k], wj);
                }
            }
        });
}

/// Dot product with 16 independent partial sums, so the compiler keeps several vector
/// accumulators in flight.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0.0f32; LANES];
    let (a_main, a_tail) = a.split_at(a.len() / LANES * LANES);
    let (b_main, b_tail) = b.split_at(a_main.len());
    for (ca, cb) in a_main.chunks_exact(LANES).zip(b_main.chunks_exact(LANES)) {
        for l in 0..LANES {
            acc[l] += ca[l] * cb[l];
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for (x, y) in a_tail.iter().zip(b_tail) {
        sum += x * y;
    }
    sum
}

// ---- backward (training) ----

impl InnerProductParams {
    /// Backward (Caffe `InnerProductLayer::Backward_cpu`) with x as M×K, dY as M×N:
    /// `dW += dYᵀ · x` (or `xᵀ · dY` when `transpose`, W being K×N), `db += Σ_rows dY`,
    /// and, when `need_bottom`, `dx = dY · W` (or `dY · Wᵀ`). Parameter diffs accumulate,
    /// as in Caffe; an empty `param_diffs` skips them.
    pub fn backward(
        &self,
        x: &Tensor,
        top_diff: &Tensor,
        blobs: &[Tensor],
        param_diffs: &mut [Tensor],
        need_bottom: bool,
        threads: usize,
    ) -> OpResult<Option<Tensor>> {
        let (m, k) = self.m_k(&x.shape)?;
        let n = self.num_output;
        if top_diff.len() != m * n {
            return Err(OpError::new(format!(
                "top diff has {} values, expected {m}×{n}",
                top_diff.len()
            )));
        }
        expect_blob_len(blobs, 0, n * k, "weights")?;
        let w = &blobs[0].data;
        let dy = &top_diff.data;
        if let Some(wd) = param_diffs.first_mut() {
            if wd.len() != n * k {
                return Err(OpError::new("weight diff has the wrong size"));
            }
            if self.transpose {
                sgemm(
                    k,
                    n,
                    m,
                    MatRef::transposed(&x.data, k),
                    MatRef::row_major(dy, n),
                    &mut wd.data,
                    n,
                    true,
                    threads,
                );
            } else {
                sgemm(
                    n,
                    k,
                    m,
                    MatRef::transposed(dy, n),
                    MatRef::row_major(&x.data, k),
                    &mut wd.data,
                    k,
                    true,
                    threads,
                );
            }
        }
        if self.bias_term {
            if let Some(bd) = param_diffs.get_mut(1) {
                if bd.len() != n {
                    return Err(OpError::new("bias diff has the wrong size"));
                }
                for row in dy.chunks(n) {
                    bd.data.iter_mut().zip(row).for_each(|(b, g)| *b += g);
                }
            }
        }
        if !need_bottom {
            return Ok(None);
        }
        let mut dx = Tensor::zeros(&x.shape);
        let weights = if self.transpose {
            MatRef::transposed(w, n)
        } else {
            MatRef::row_major(w, k)
        };
        sgemm(
            m,
            k,
            n,
            MatRef::row_major(dy, n),
            weights,
            &mut dx.data,
            k,
            false,
            threads,
        );
        Ok(Some(dx))
    }
}

#[cfg(test)]
mod backward_tests {
    use super::*;
    use crate::ops::ctx::Ctx;
    use crate::train::gradcheck::{check, uniform};

    #[test]
    fn inner_product_gradients_pass_the_finite_difference_check() {
        for transpose in [false, true] {
            let p = InnerProductParams {
                num_output: 3,
                transpose,
                ..Default::default()
            };
            let xs = [2, 2, 2, 2]; // M = 2, K = 8
            let ws = if transpose { vec![8, 3] } else { vec![3, 8] };
            let inputs = vec![
                uniform(16, -1.0, 1.0, 1),
                uniform(24, -1.0, 1.0, 2),
                uniform(3, -1.0, 1.0, 3),
            ];
            let dy = uniform(6, -1.0, 1.0, 4);
            let mut fwd = |v: &[Vec<f32>]| {
                let blobs = [
                    Tensor::from_vec(&ws, v[1].clone()).unwrap(),
                    Tensor::from_vec(&[3], v[2].clone()).unwrap(),
                ];
                p.forward(
                    &Tensor::from_vec(&xs, v[0].clone()).unwrap(),
                    &blobs,
                    &mut Ctx::default(),
                    None,
                )
                .unwrap()
                .data
            };
            let blobs = [
                Tensor::from_vec(&ws, inputs[1].clone()).unwrap(),
                Tensor::from_vec(&[3], inputs[2].clone()).unwrap(),
            ];
            let mut diffs = [Tensor::zeros(&ws), Tensor::zeros(&[3])];
            let dx = p
                .backward(
                    &Tensor::from_vec(&xs, inputs[0].clone()).unwrap(),
                    &Tensor::from_vec(&[2, 3], dy.clone()).unwrap(),
                    &blobs,
                    &mut diffs,
                    true,
                    1,
                )
                .unwrap()
                .unwrap();
            let analytic = vec![dx.data, diffs[0].data.clone(), diffs[1].data.clone()];
            check(
                "InnerProduct",
                &inputs,
                &dy,
                &analytic,
                &mut fwd,
                1e-2,
                1e-3,
            );
        }
    }
}
