//! Safe single-precision GEMM over the `gemm` crate: `C ← A·B (+ C)`, the kernel behind
//! Convolution (weights × im2col columns, as Caffe's `forward_cpu_gemm`) and InnerProduct
//! (`x · Wᵀ`, as Caffe's `caffe_cpu_gemm(CblasNoTrans, CblasTrans, …)`).
//!
//! Operands are row-major slices, optionally read transposed, so Caffe's weight layouts are
//! used as stored without copies. The bounds of every operand are checked before the
//! unsafe call, so a wrong size is a panic (a programming error), never undefined behaviour.

use gemm::Parallelism;

/// How a row-major buffer holds a logical `rows × cols` operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Element (i, j) at `i·ld + j` (BLAS `NoTrans` with leading dimension `ld`).
    RowMajor {
        /// Distance between rows, at least `cols`.
        ld: usize,
    },
    /// Element (i, j) at `j·ld + i`: the buffer stores the transpose (BLAS `Trans`).
    Transposed {
        /// Distance between the stored rows (logical columns), at least `rows`.
        ld: usize,
    },
}

impl Layout {
    /// (row stride, column stride) in elements.
    fn strides(self) -> (usize, usize) {
        match self {
            Layout::RowMajor { ld } => (ld, 1),
            Layout::Transposed { ld } => (1, ld),
        }
    }

    /// Smallest buffer length that holds a `rows × cols` operand in this layout.
    pub fn min_len(self, rows: usize, cols: usize) -> usize {
        if rows == 0 || cols == 0 {
            return 0;
        }
        let (rs, cs) = self.strides();
        (rows - 1) * rs + (cols - 1) * cs + 1
    }
}

/// A borrowed matrix operand: the buffer and how it is laid out.
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a> {
    /// The values.
    pub data: &'a [f32],
    /// Where element (i, j) lives.
    pub layout: Layout,
}

impl<'a> MatRef<'a> {
    /// A dense row-major `rows × cols` matrix (`ld = cols`).
    pub fn row_major(data: &'a [f32], cols: usize) -> Self {
        Self {
            data,
            layout: Layout::RowMajor { ld: cols },
        }
    }

    /// The transpose of a dense row-major matrix with `stored_cols` columns: the logical
    /// operand has `stored_cols` rows.
    pub fn transposed(data: &'a [f32], stored_cols: usize) -> Self {
        Self {
            data,
            layout: Layout::Transposed { ld: stored_cols },
        }
    }
}

/// Threads a GEMM may use: 1 runs on the calling thread (used inside per-image parallel
/// loops), more splits the product over the current rayon pool.
fn parallelism(threads: usize) -> Parallelism {
    if threads <= 1 {
        Parallelism::None
    } else {
        Parallelism::Rayon(threads)
    }
}

/// `C[m×n] ← A[m×k] · B[k×n]`, or `C ← C + A·B` when `accumulate` (used to start from a
/// broadcast bias). `c` is row-major with row stride `ldc`.
///
/// # Panics
/// When a buffer is too small for its declared shape or `ldc < n`.
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    a: MatRef<'_>,
    b: MatRef<'_>,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
    threads: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(ldc >= n, "sgemm: ldc {ldc} < n {n}");
    assert!(
        c.len() >= (m - 1) * ldc + n,
        "sgemm: C has {} values, needs {}×{} with ldc {ldc}",
        c.len(),
        m,
        n
    );
    if k == 0 {
        if !accumulate {
            for row in c.chunks_mut(ldc).take(m) {
                row[..n].fill(0.0);
            }
        }
        return;
    }
    assert!(
        a.data.len() >= a.layout.min_len(m, k),
        "sgemm: A has {} values, too few for {m}×{k} in {:?}",
        a.data.len(),
        a.layout
    );
    assert!(
        b.data.len() >= b.layout.min_len(k, n),
        "sgemm: B has {} values, too few for {k}×{n} in {:?}",
        b.data.len(),
        b.layout
    );
    let (a_rs, a_cs) = a.layout.strides();
    let (b_rs, b_cs) = b.layout.strides();
    // SAFETY: every index the kernel touches, (i·rs + j·cs) for i < rows and j < cols, is
    // below the lengths checked above; `c` is borrowed mutably and cannot alias `a` or `b`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            ldc as isize,
            accumulate,
            a.data.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.data.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism(threads),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Straight triple loop in f64: the independent reference.
    fn naive(
        m: usize,
        n: usize,
        k: usize,
        a: &dyn Fn(usize, usize) -> f32,
        b: &dyn Fn(usize, usize) -> f32,
    ) -> Vec<f64> {
        let mut c = vec![0.0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a(i, p) as f64 * b(p, j) as f64).sum();
            }
        }
        c
    }

    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 1000) as f32 / 500.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn all_transpose_combinations_match_triple_loop() {
        let (m, n, k) = (37, 29, 53);
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            let a = values(m * k, 1);
            let b = values(k * n, 2);
            let ar = if ta {
                MatRef::transposed(&a, m)
            } else {
                MatRef::row_major(&a, k)
            };
            let br = if tb {
                MatRef::transposed(&b, k)
            } else {
                MatRef::row_major(&b, n)
            };
            let get_a = |i: usize, p: usize| if ta { a[p * m + i] } else { a[i * k + p] };
            let get_b = |p: usize, j: usize| if tb { b[j * k + p] } else { b[p * n + j] };
            let want = naive(m, n, k, &get_a, &get_b);
            for threads in [1, 2] {
                let mut c = vec![f32::NAN; m * n];
                sgemm(m, n, k, ar, br, &mut c, n, false, threads);
                for (x, y) in c.iter().zip(&want) {
                    assert!((*x as f64 - y).abs() < 1e-4, "{ta} {tb}: {x} vs {y}");
                }
            }
        }
    }

    #[test]
    fn accumulate_adds_to_c_and_ldc_skips_columns() {
        let (m, n, k, ldc) = (5, 3, 4, 7);
        let a = values(m * k, 3);
        let b = values(k * n, 4);
        let mut c: Vec<f32> = (0..m * ldc).map(|i| i as f32).collect();
        let before = c.clone();
        sgemm(
            m,
            n,
            k,
            MatRef::row_major(&a, k),
            MatRef::row_major(&b, n),
            &mut c,
            ldc,
            true,
            1,
        );
        let prod = naive(m, n, k, &|i, p| a[i * k + p], &|p, j| b[p * n + j]);
        for i in 0..m {
            for j in 0..ldc {
                let got = c[i * ldc + j] as f64;
                let want = before[i * ldc + j] as f64 + if j < n { prod[i * n + j] } else { 0.0 };
                assert!((got - want).abs() < 1e-4, "({i},{j}) {got} vs {want}");
            }
        }
    }

    #[test]
    fn zero_depth_clears_or_keeps() {
        let mut c = vec![3.0f32; 6];
        sgemm(
            2,
            3,
            0,
            MatRef::row_major(&[], 0),
            MatRef::row_major(&[], 3),
            &mut c,
            3,
            true,
            1,
        );
        assert_eq!(c, vec![3.0; 6]);
        sgemm(
            2,
            3,
            0,
            MatRef::row_major(&[], 0),
            MatRef::row_major(&[], 3),
            &mut c,
            3,
            false,
            1,
        );
        assert_eq!(c, vec![0.0; 6]);
    }
}
