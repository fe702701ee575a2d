//! col2im (Caffe `col2im_cpu`): the adjoint of im2col. Every column-buffer entry is added
//! back to the input pixel it was sampled from (taps in the padding are dropped), which is
//! how the convolution backward turns `Wᵀ · dY` into the bottom diff.

use super::im2col::ConvGeometry;

impl ConvGeometry {
    /// Accumulates `col` (`col_rows × col_cols`, im2col's layout) into `image` (C×H×W),
    /// which the caller zeroes first.
    ///
    /// # Panics
    /// When `col` or `image` is smaller than the geometry says.
    pub fn col2im(&self, col: &[f32], image: &mut [f32]) {
        let [h, w] = self.input;
        let [oh, ow] = self.output;
        let [kh, kw] = self.kernel;
        let hw = oh * ow;
        let plane = h * w;
        let image = &mut image[..self.channels * plane];
        let col = &col[..self.col_rows() * hw];
        for (c, img) in image.chunks_mut(plane).enumerate() {
            for i in 0..kh {
                let off_h = i * self.dilation[0];
                for j in 0..kw {
                    let off_w = j * self.dilation[1];
                    let row = &col[((c * kh + i) * kw + j) * hw..][..hw];
                    // Output columns whose tap lands inside the image: ix = ox·s − p + off.
                    let (ox_lo, ox_hi) = valid(ow, w, self.stride[1], self.pad[1], off_w);
                    let (oy_lo, oy_hi) = valid(oh, h, self.stride[0], self.pad[0], off_h);
                    for oy in oy_lo..oy_hi {
                        let iy = oy * self.stride[0] + off_h - self.pad[0];
                        let dst = &mut img[iy * w..][..w];
                        let src = &row[oy * ow..][..ow];
                        let ix0 = (ox_lo * self.stride[1] + off_w).wrapping_sub(self.pad[1]);
                        if self.stride[1] == 1 {
                            let n = ox_hi.saturating_sub(ox_lo);
                            for (d, s) in dst[ix0..ix0 + n].iter_mut().zip(&src[ox_lo..ox_hi]) {
                                *d += s;
                            }
                        } else {
                            for (k, s) in src[ox_lo..ox_hi].iter().enumerate() {
                                dst[ix0 + k * self.stride[1]] += s;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Output positions `o` in `0..out` with `0 ≤ o·s − pad + offset < input`.
fn valid(out: usize, input: usize, s: usize, pad: usize, offset: usize) -> (usize, usize) {
    let lo = if offset >= pad {
        0
    } else {
        (pad - offset).div_ceil(s)
    };
    let hi = if input + pad <= offset {
        0
    } else {
        (input + pad - offset).div_ceil(s)
    };
    let (lo, hi) = (lo.min(out), hi.min(out));
    (lo, hi.max(lo))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::gradcheck::uniform;

    /// col2im is im2col's transpose: ⟨im2col(x), c⟩ = ⟨x, col2im(c)⟩ for any x and c.
    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        for (k, s, p, d) in [
            (3, 1, 1, 1),
            (3, 2, 0, 1),
            (2, 3, 1, 1),
            (3, 1, 2, 2),
            (1, 1, 0, 1),
        ] {
            let geo = ConvGeometry {
                channels: 2,
                input: [6, 7],
                output: [
                    (6 + 2 * p - (d * (k - 1) + 1)) / s + 1,
                    (7 + 2 * p - (d * (k - 1) + 1)) / s + 1,
                ],
                kernel: [k, k],
                stride: [s, s],
                pad: [p, p],
                dilation: [d, d],
            };
            let x = uniform(2 * 6 * 7, -1.0, 1.0, 1);
            let c = uniform(geo.col_rows() * geo.col_cols(), -1.0, 1.0, 2);
            let mut col = vec![0.0; c.len()];
            geo.im2col(&x, &mut col, false);
            let mut back = vec![0.0; x.len()];
            geo.col2im(&c, &mut back);
            let lhs: f64 = col.iter().zip(&c).map(|(a, b)| (a * b) as f64).sum();
            let rhs: f64 = x.iter().zip(&back).map(|(a, b)| (a * b) as f64).sum();
            assert!(
                (lhs - rhs).abs() < 1e-4,
                "k{k} s{s} p{p} d{d}: {lhs} vs {rhs}"
            );
        }
    }
}
