//! im2col (Caffe `im2col_cpu`): lays every receptive field of one image out as a column so
//! that a convolution becomes one GEMM, `weights[M × C·kh·kw] · columns[C·kh·kw × OH·OW]`.
//!
//! Row `(c·kh + i)·kw + j` of the column buffer holds input channel `c` sampled at kernel
//! offset (i, j) for every output position, with zeros where the (dilated) tap falls into
//! the padding, exactly as Caffe orders it, so Caffe's weight blob is the GEMM's left
//! operand as stored.

use rayon::prelude::*;
use std::cell::RefCell;

/// The geometry of one 2-D convolution over a single C×H×W image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Input channels.
    pub channels: usize,
    /// Input height and width.
    pub input: [usize; 2],
    /// Output height and width.
    pub output: [usize; 2],
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Stride (height, width).
    pub stride: [usize; 2],
    /// Zero padding before the first row and column (height, width); the padding after
    /// the last is implied by `output`.
    pub pad: [usize; 2],
    /// Dilation (height, width).
    pub dilation: [usize; 2],
}

impl ConvGeometry {
    /// Rows of the column buffer: `C · kh · kw`.
    pub fn col_rows(&self) -> usize {
        self.channels * self.kernel[0] * self.kernel[1]
    }

    /// Columns of the column buffer: `OH · OW`.
    pub fn col_cols(&self) -> usize {
        self.output[0] * self.output[1]
    }

    /// True when the column buffer equals the image itself (1×1 kernel, stride 1, no pad
    /// on either side), so im2col can be skipped.
    pub fn is_identity(&self) -> bool {
        self.kernel == [1, 1]
            && self.stride == [1, 1]
            && self.pad == [0, 0]
            && self.output == self.input
    }

    /// Output positions `o` in `0..out` whose tap `o·stride − pad + offset` lies inside
    /// `0..input`, as a half-open range (taps are monotonic in `o`).
    fn valid_range(
        out: usize,
        input: usize,
        stride: usize,
        pad: usize,
        offset: usize,
    ) -> (usize, usize) {
        // o·s + offset ≥ pad  ⇔  o ≥ ceil((pad − offset) / s)
        let lo = if offset >= pad {
            0
        } else {
            (pad - offset).div_ceil(stride)
        };
        // o·s + offset < input + pad  ⇔  o < ceil((input + pad − offset) / s)
        let hi = if input + pad <= offset {
            0
        } else {
            (input + pad - offset).div_ceil(stride)
        };
        (lo.min(out), hi.min(out).max(lo.min(out)))
    }

    /// Writes the `kw` rows of kernel row `i` of one input channel (`plane`, H×W) into
    /// `rows`.
    fn kernel_row(&self, plane: &[f32], i: usize, rows: &mut [f32]) {
        let [h, w] = self.input;
        let [oh, ow] = self.output;
        let hw = oh * ow;
        let off_h = i * self.dilation[0];
        let (oy_lo, oy_hi) = Self::valid_range(oh, h, self.stride[0], self.pad[0], off_h);
        for j in 0..self.kernel[1] {
            let off_w = j * self.dilation[1];
            let (ox_lo, ox_hi) = Self::valid_range(ow, w, self.stride[1], self.pad[1], off_w);
            let row = &mut rows[j * hw..][..hw];
            row[..oy_lo * ow].fill(0.0);
            row[oy_hi * ow..].fill(0.0);
            for oy in oy_lo..oy_hi {
                let iy = oy * self.stride[0] + off_h - self.pad[0];
                let src = &plane[iy * w..][..w];
                let dst = &mut row[oy * ow..][..ow];
                dst[..ox_lo].fill(0.0);
                dst[ox_hi..].fill(0.0);
                if ox_hi > ox_lo {
                    let ix0 = ox_lo * self.stride[1] + off_w - self.pad[1];
                    let dst = &mut dst[ox_lo..ox_hi];
                    if self.stride[1] == 1 {
                        dst.copy_from_slice(&src[ix0..ix0 + dst.len()]);
                    } else {
                        let taps = &src[ix0..][..(dst.len() - 1) * self.stride[1] + 1];
                        match self.stride[1] {
                            2 => gather::<2>(taps, dst),
                            4 => gather::<4>(taps, dst),
                            s => gather_dyn(taps, dst, s),
                        }
                    }
                }
            }
        }
    }

    /// im2col of one image (`image`: C×H×W) into `col` (`col_rows × col_cols`). With
    /// `parallel`, the (channel, kernel row) units are spread over the current rayon pool.
    ///
    /// # Panics
    /// When `image` or `col` is smaller than the geometry says.
    pub fn im2col(&self, image: &[f32], col: &mut [f32], parallel: bool) {
        let plane = self.input[0] * self.input[1];
        // One unit = one (channel, kernel row): `kw` rows of the column buffer. Finer than
        // a channel, so that a 3-channel first layer still spreads over the threads.
        let per_unit = self.kernel[1] * self.col_cols();
        let units = self.channels * self.kernel[0];
        let image = &image[..self.channels * plane];
        let col = &mut col[..units * per_unit];
        let unit = |u: usize, rows: &mut [f32]| {
            let (c, i) = (u / self.kernel[0], u % self.kernel[0]);
            self.kernel_row(&image[c * plane..][..plane], i, rows);
        };
        if parallel && units > 1 {
            col.par_chunks_mut(per_unit)
                .enumerate()
                .for_each(|(u, rows)| unit(u, rows));
        } else {
            for (u, rows) in col.chunks_mut(per_unit).enumerate() {
                unit(u, rows);
            }
        }
    }
}

/// `dst[k] = src[k·S]` with the stride known at compile time, which lets the compiler
/// vectorise the strided loads (Caffe's AlexNet-style conv1 has stride 4).
#[inline(always)]
fn gather<const S: usize>(src: &[f32], dst: &mut [f32]) {
    for (k, d) in dst.iter_mut().enumerate() {
        *d = src[k * S];
    }
}

/// `dst[k] = src[k·stride]` for other strides.
fn gather_dyn(src: &[f32], dst: &mut [f32], stride: usize) {
    for (d, &v) in dst.iter_mut().zip(src.iter().step_by(stride)) {
        *d = v;
    }
}

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's reusable scratch buffer of at least `len` values (contents
/// unspecified). The buffer is taken out of the thread-local while `f` runs, so a nested
/// call (rayon work-stealing into another convolution on the same thread) gets its own
/// fresh buffer instead of a borrow conflict.
pub fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut buf = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    let r = f(&mut buf[..len]);
    SCRATCH.with(|s| {
        let mut slot = s.borrow_mut();
        if slot.len() < buf.len() {
            *slot = buf;
        }
    });
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Caffe's im2col written the plain way, with signed tap coordinates.
    fn naive_im2col(g: &ConvGeometry, image: &[f32]) -> Vec<f32> {
        let [h, w] = g.input;
        let [oh, ow] = g.output;
        let mut col = vec![0.0; g.col_rows() * g.col_cols()];
        for c in 0..g.channels {
            for i in 0..g.kernel[0] {
                for j in 0..g.kernel[1] {
                    let row = (c * g.kernel[0] + i) * g.kernel[1] + j;
                    for y in 0..oh {
                        for x in 0..ow {
                            let iy = (y * g.stride[0] + i * g.dilation[0]) as i64 - g.pad[0] as i64;
                            let ix = (x * g.stride[1] + j * g.dilation[1]) as i64 - g.pad[1] as i64;
                            let v = if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w
                            {
                                image[(c * h + iy as usize) * w + ix as usize]
                            } else {
                                0.0
                            };
                            col[row * oh * ow + y * ow + x] = v;
                        }
                    }
                }
            }
        }
        col
    }

    fn out_dim(input: usize, k: usize, s: usize, p: usize, d: usize) -> usize {
        (input + 2 * p - (d * (k - 1) + 1)) / s + 1
    }

    #[test]
    fn matches_naive_for_awkward_geometries() {
        // (C, H, W, kernel, stride, pad, dilation)
        let cases = [
            (3, 11, 13, [7, 7], [4, 4], [0, 0], [1, 1]),
            (2, 9, 9, [5, 5], [1, 1], [2, 2], [1, 1]),
            (2, 10, 7, [3, 2], [2, 3], [1, 2], [2, 1]),
            (1, 6, 6, [2, 2], [5, 5], [1, 1], [1, 1]), // stride > kernel
            (2, 5, 8, [3, 3], [1, 2], [4, 3], [1, 2]), // pad wider than the taps reach
            (4, 4, 4, [1, 1], [1, 1], [0, 0], [1, 1]),
        ];
        for (c, h, w, k, s, p, d) in cases {
            let g = ConvGeometry {
                channels: c,
                input: [h, w],
                output: [
                    out_dim(h, k[0], s[0], p[0], d[0]),
                    out_dim(w, k[1], s[1], p[1], d[1]),
                ],
                kernel: k,
                stride: s,
                pad: p,
                dilation: d,
            };
            let image: Vec<f32> = (0..c * h * w).map(|i| i as f32 + 1.0).collect();
            let want = naive_im2col(&g, &image);
            for parallel in [false, true] {
                let mut col = vec![f32::NAN; want.len()];
                g.im2col(&image, &mut col, parallel);
                assert_eq!(col, want, "{g:?}");
            }
        }
    }

    #[test]
    fn scratch_is_reused_and_nested_calls_do_not_conflict() {
        let outer = with_scratch(16, |a| {
            a.fill(1.0);
            with_scratch(8, |b| {
                b.fill(2.0);
                b.len()
            }) + a.len()
        });
        assert_eq!(outer, 24);
    }
}
