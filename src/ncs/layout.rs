//! Constant-data layouts of the graph file (NCS_GRAPH_FORMAT.md §5.5) and their inverses.
//!
//! Caffe stores convolution weights K×C×KH×KW and InnerProduct weights K×(C·H·W) in C
//! order. The NCS stores convolution taps **HWCK** (`((ky·KW + kx)·C + c)·K + k`), depthwise
//! taps (KH, KW, 1, K), and FC taps (H, W, C, K): the FC reads its input as the producer's
//! HWC tensor flattened (y, x, c), so the Caffe column `(c·H + h)·W + w` moves to row
//! `(h·W + w)·C + c`.
//!
//! The functions are generic over the element so that weights can be permuted after the
//! conversion to fp16, moving half the bytes.

/// Caffe K×C×KH×KW → NCS HWCK.
pub fn conv_to_hwck<T: Copy + Default>(
    w: &[T],
    k: usize,
    c: usize,
    kh: usize,
    kw: usize,
) -> Vec<T> {
    let mut out = vec![T::default(); k * c * kh * kw];
    for ki in 0..k {
        for ci in 0..c {
            for y in 0..kh {
                for x in 0..kw {
                    out[((y * kw + x) * c + ci) * k + ki] = w[((ki * c + ci) * kh + y) * kw + x];
                }
            }
        }
    }
    out
}

/// NCS HWCK → Caffe K×C×KH×KW.
pub fn hwck_to_conv<T: Copy + Default>(
    t: &[T],
    k: usize,
    c: usize,
    kh: usize,
    kw: usize,
) -> Vec<T> {
    let mut out = vec![T::default(); k * c * kh * kw];
    for ki in 0..k {
        for ci in 0..c {
            for y in 0..kh {
                for x in 0..kw {
                    out[((ki * c + ci) * kh + y) * kw + x] = t[((y * kw + x) * c + ci) * k + ki];
                }
            }
        }
    }
    out
}

/// Pairs (index in Caffe's C_in×C_out×KH×KW blob, index in the device's taps) of a
/// deconvolution: the device stores tap (c_in, c_out, y, x) at `[KH−1−y][KW−1−x][c_in][c_out]`
/// (the kernel rotated 180°; NCSDK2_GRAPH_FORMAT.md §7, the device runs a deconvolution as
/// a convolution of the zero-upsampled input). Both layout directions walk these pairs.
fn deconv_tap_pairs(
    c_in: usize,
    c_out: usize,
    kh: usize,
    kw: usize,
) -> impl Iterator<Item = (usize, usize)> {
    (0..c_in * c_out * kh * kw).map(move |caffe| {
        let (x, y) = (caffe % kw, (caffe / kw) % kh);
        let (co, ci) = ((caffe / (kw * kh)) % c_out, caffe / (kw * kh * c_out));
        let stored = (((kh - 1 - y) * kw + (kw - 1 - x)) * c_in + ci) * c_out + co;
        (caffe, stored)
    })
}

/// NCS deconvolution taps → Caffe Deconvolution C_in×C_out×KH×KW (the pairs of
/// [`deconv_tap_pairs`]).
pub fn hwck_to_deconv<T: Copy + Default>(
    t: &[T],
    c_in: usize,
    c_out: usize,
    kh: usize,
    kw: usize,
) -> Vec<T> {
    let mut out = vec![T::default(); c_in * c_out * kh * kw];
    for (caffe, stored) in deconv_tap_pairs(c_in, c_out, kh, kw) {
        out[caffe] = t[stored];
    }
    out
}

/// Caffe Deconvolution C_in×C_out×KH×KW → NCS deconvolution taps, the inverse of
/// [`hwck_to_deconv`].
pub fn deconv_to_hwck<T: Copy + Default>(
    w: &[T],
    c_in: usize,
    c_out: usize,
    kh: usize,
    kw: usize,
) -> Vec<T> {
    let mut out = vec![T::default(); c_in * c_out * kh * kw];
    for (caffe, stored) in deconv_tap_pairs(c_in, c_out, kh, kw) {
        out[stored] = w[caffe];
    }
    out
}

/// Caffe depthwise K×1×KH×KW → NCS (KH, KW, 1, K).
pub fn depthwise_to_hwk<T: Copy + Default>(w: &[T], k: usize, kh: usize, kw: usize) -> Vec<T> {
    conv_to_hwck(w, k, 1, kh, kw)
}

/// NCS (KH, KW, 1, K) → Caffe K×1×KH×KW.
pub fn hwk_to_depthwise<T: Copy + Default>(t: &[T], k: usize, kh: usize, kw: usize) -> Vec<T> {
    hwck_to_conv(t, k, 1, kh, kw)
}

/// Tile edge of the FC transposes: 32 × 32 floats keep both sides in cache.
const TILE: usize = 32;

/// Caffe InnerProduct K×(C·H·W) → NCS (H, W, C, K), for a producer of C×H×W.
///
/// With P = H·W pixels this is `out[p][c][k] = w[k][c][p]`: for every channel a tiled
/// K × P transpose, so both the reads and the writes walk contiguous runs.
pub fn fc_to_hwck<T: Copy + Default>(w: &[T], k: usize, c: usize, h: usize, wd: usize) -> Vec<T> {
    let (p, n) = (h * wd, c * h * wd);
    let mut out = vec![T::default(); k * n];
    for ci in 0..c {
        for p0 in (0..p).step_by(TILE) {
            for k0 in (0..k).step_by(TILE) {
                for pi in p0..(p0 + TILE).min(p) {
                    let dst = (pi * c + ci) * k;
                    for ki in k0..(k0 + TILE).min(k) {
                        out[dst + ki] = w[ki * n + ci * p + pi];
                    }
                }
            }
        }
    }
    out
}

/// NCS (H, W, C, K) → Caffe InnerProduct K×(C·H·W).
pub fn hwck_to_fc<T: Copy + Default>(t: &[T], k: usize, c: usize, h: usize, wd: usize) -> Vec<T> {
    let (p, n) = (h * wd, c * h * wd);
    let mut out = vec![T::default(); k * n];
    for ci in 0..c {
        for k0 in (0..k).step_by(TILE) {
            for p0 in (0..p).step_by(TILE) {
                for ki in k0..(k0 + TILE).min(k) {
                    let dst = ki * n + ci * p;
                    for pi in p0..(p0 + TILE).min(p) {
                        out[dst + pi] = t[(pi * c + ci) * k + ki];
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-derived: K=2, C=1, 1×2 kernel with Caffe weights [[a b]], [[c d]] is stored as
    /// (ky=0,kx=0): a c, (0,1): b d.
    #[test]
    fn conv_taps_follow_the_hwck_formula() {
        let caffe = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(conv_to_hwck(&caffe, 2, 1, 1, 2), vec![1.0, 3.0, 2.0, 4.0]);
        assert_eq!(hwck_to_conv(&[1.0, 3.0, 2.0, 4.0], 2, 1, 1, 2), caffe);
    }

    /// Hand-derived: one output, producer C=2, H=1, W=2. Caffe columns are (c, w) = (0,0)
    /// (0,1) (1,0) (1,1) = 10 11 12 13; the device reads x-major then channel, i.e. (w, c)
    /// = (0,0) (0,1) (1,0) (1,1) = 10 12 11 13.
    #[test]
    fn fc_taps_follow_the_producers_hwc_order() {
        let caffe = [10.0, 11.0, 12.0, 13.0];
        let t = fc_to_hwck(&caffe, 1, 2, 1, 2);
        assert_eq!(t, vec![10.0, 12.0, 11.0, 13.0]);
        assert_eq!(hwck_to_fc(&t, 1, 2, 1, 2), caffe);
    }

    #[test]
    fn layouts_invert_on_odd_sizes() {
        let (k, c, kh, kw) = (3, 5, 2, 3);
        let w: Vec<f32> = (0..k * c * kh * kw).map(|v| v as f32).collect();
        assert_eq!(
            hwck_to_conv(&conv_to_hwck(&w, k, c, kh, kw), k, c, kh, kw),
            w
        );
        assert_eq!(hwck_to_fc(&fc_to_hwck(&w, k, c, kh, kw), k, c, kh, kw), w);
        // sizes that cross the transpose tiles
        let (k, c, h, wd) = (37, 70, 3, 2);
        let w: Vec<f32> = (0..k * c * h * wd).map(|v| v as f32).collect();
        let t = fc_to_hwck(&w, k, c, h, wd);
        assert_eq!(
            t[((2 * wd + 1) * c + 5) * k + 36],
            w[36 * c * h * wd + (5 * h + 2) * wd + 1]
        );
        assert_eq!(hwck_to_fc(&t, k, c, h, wd), w);
        let d: Vec<f32> = (0..k * kh * kw).map(|v| v as f32).collect();
        assert_eq!(
            hwk_to_depthwise(&depthwise_to_hwk(&d, k, kh, kw), k, kh, kw),
            d
        );
    }
}
