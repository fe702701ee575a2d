//! Sliding-window reductions over one H×W plane with Caffe's pooling geometry: MAX and AVE
//! pooling, and the AVE pooling of x² inside WITHIN_CHANNEL LRN.
//!
//! Caffe's window for output `o` along an axis starts at `o·s − p`, ends at
//! `min(start + k, H + p)` (AVE divides by that length, padding included), and is then
//! clipped to the image. The reduction here is separable: each output row first reduces
//! its input rows element-wise (contiguous, vectorised), then every window that lies
//! wholly inside the image reads a precomputed run of `k` columns; only border windows are
//! reduced one by one.

/// The window geometry of a pooling over one H×W plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolWindow {
    /// Input height and width.
    pub input: [usize; 2],
    /// Output height and width.
    pub output: [usize; 2],
    /// Window height and width.
    pub kernel: [usize; 2],
    /// Stride (height, width).
    pub stride: [usize; 2],
    /// Padding (height, width).
    pub pad: [usize; 2],
}

/// One window along one axis: the clipped input range and Caffe's AVE divisor factor.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: usize,
    end: usize,
    /// `min(start_unclipped + k, input + pad) − start_unclipped`: the window clipped to the
    /// padded border only, as Caffe's `pool_size` counts it.
    ave_count: usize,
}

/// MAX or SUM, so that one loop serves both poolings.
trait Reduction {
    /// The starting value (Caffe starts MAX at −FLT_MAX, so padding never wins).
    const IDENTITY: f32;
    /// Folds one value in (MAX keeps the old value unless the new one is greater).
    fn combine(acc: f32, v: f32) -> f32;
    /// The output from the reduced value and the AVE divisor.
    fn finish(acc: f32, divisor: usize) -> f32;
}

struct Max;
impl Reduction for Max {
    const IDENTITY: f32 = -f32::MAX;
    #[inline(always)]
    fn combine(acc: f32, v: f32) -> f32 {
        if v > acc {
            v
        } else {
            acc
        }
    }
    #[inline(always)]
    fn finish(acc: f32, _: usize) -> f32 {
        acc
    }
}

struct Average;
impl Reduction for Average {
    const IDENTITY: f32 = 0.0;
    #[inline(always)]
    fn combine(acc: f32, v: f32) -> f32 {
        acc + v
    }
    #[inline(always)]
    fn finish(acc: f32, divisor: usize) -> f32 {
        acc / divisor as f32
    }
}

impl PoolWindow {
    /// Caffe's window for output index `o` along `axis`: `hstart = o·s − p`,
    /// `hend = min(hstart + k, H + p)`, the AVE count taken there, then both clipped to the
    /// image.
    fn span(&self, axis: usize, o: usize) -> Span {
        let (k, s, p, n) = (
            self.kernel[axis],
            self.stride[axis],
            self.pad[axis],
            self.input[axis],
        );
        // Work in coordinates shifted by +p so that everything stays unsigned.
        let start_shifted = o * s;
        let end_shifted = (start_shifted + k).min(n + 2 * p);
        let ave_count = end_shifted - start_shifted;
        let start = start_shifted.saturating_sub(p).min(n);
        let end = end_shifted.saturating_sub(p).min(n);
        Span {
            start,
            end,
            ave_count,
        }
    }

    fn spans(&self, axis: usize) -> Vec<Span> {
        (0..self.output[axis]).map(|o| self.span(axis, o)).collect()
    }

    /// MAX pooling of consecutive planes (`src` holds whole H×W planes, `dst` the matching
    /// outputs); the window tables and buffers are set up once for all of them.
    pub fn max_planes(&self, src: &[f32], dst: &mut [f32]) {
        self.reduce_planes::<Max>(src, dst);
    }

    /// AVE pooling of consecutive planes, like [`PoolWindow::max_planes`].
    pub fn ave_planes(&self, src: &[f32], dst: &mut [f32]) {
        self.reduce_planes::<Average>(src, dst);
    }

    /// MAX pooling backward of one plane: each output's diff goes to the first element of
    /// its window (row-major) equal to the forward's output `y`, i.e. the element Caffe's
    /// strictly-greater scan picked. `dx` is accumulated into.
    pub fn max_backward_plane(&self, x: &[f32], y: &[f32], dy: &[f32], dx: &mut [f32]) {
        let w = self.input[1];
        let (rows, cols) = (self.spans(0), self.spans(1));
        for (o_row, r) in rows.iter().enumerate() {
            for (o_col, c) in cols.iter().enumerate() {
                let o = o_row * cols.len() + o_col;
                let (target, g) = (y[o], dy[o]);
                'window: for row in r.start..r.end {
                    let base = row * w;
                    for (i, &v) in x[base + c.start..base + c.end].iter().enumerate() {
                        if v == target {
                            dx[base + c.start + i] += g;
                            break 'window;
                        }
                    }
                }
            }
        }
    }

    /// AVE pooling backward of one plane: each output's diff divided by Caffe's window
    /// count (padding inside `H + pad` included) is added over its clipped window.
    pub fn ave_backward_plane(&self, dy: &[f32], dx: &mut [f32]) {
        let w = self.input[1];
        let (rows, cols) = (self.spans(0), self.spans(1));
        for (o_row, r) in rows.iter().enumerate() {
            for (o_col, c) in cols.iter().enumerate() {
                let share = dy[o_row * cols.len() + o_col] / (r.ave_count * c.ave_count) as f32;
                for row in r.start..r.end {
                    for d in &mut dx[row * w + c.start..row * w + c.end] {
                        *d += share;
                    }
                }
            }
        }
    }

    fn reduce_planes<R: Reduction>(&self, src: &[f32], dst: &mut [f32]) {
        let (w, kw, sw) = (self.input[1], self.kernel[1], self.stride[1]);
        let (in_plane, out_plane) = (self.input[0] * w, self.output[0] * self.output[1]);
        if in_plane == 0 || out_plane == 0 {
            return;
        }
        let (rows, cols) = (self.spans(0), self.spans(1));
        // Output columns whose window lies wholly inside the image form one run
        // `inner_cols`; their windows start at `o·s − p`.
        let inner: Vec<usize> = (0..cols.len())
            .filter(|&o| cols[o].end - cols[o].start == kw)
            .collect();
        let inner_cols = match (inner.first(), inner.last()) {
            (Some(&a), Some(&b)) if b - a + 1 == inner.len() => a..b + 1,
            _ => 0..0,
        };
        // `whole[x]` = reduction of `acc[x .. x + kw]`, for every window start inside.
        let starts = (w + 1).saturating_sub(kw);
        let mut acc = vec![R::IDENTITY; w];
        let mut whole = vec![R::IDENTITY; starts];
        for (src, dst) in src
            .chunks_exact(in_plane)
            .zip(dst.chunks_exact_mut(out_plane))
        {
            for (dst_row, r) in dst.chunks_exact_mut(self.output[1]).zip(&rows) {
                acc.fill(R::IDENTITY);
                for row in src[r.start * w..r.end * w].chunks_exact(w) {
                    for (a, &v) in acc.iter_mut().zip(row) {
                        *a = R::combine(*a, v);
                    }
                }
                if !inner_cols.is_empty() {
                    whole.copy_from_slice(&acc[..starts]);
                    for j in 1..kw {
                        for (m, &v) in whole.iter_mut().zip(&acc[j..j + starts]) {
                            *m = R::combine(*m, v);
                        }
                    }
                    let first = cols[inner_cols.start].start;
                    let picks = whole[first..].iter().step_by(sw);
                    for ((d, &v), c) in dst_row[inner_cols.clone()]
                        .iter_mut()
                        .zip(picks)
                        .zip(&cols[inner_cols.clone()])
                    {
                        *d = R::finish(v, r.ave_count * c.ave_count);
                    }
                }
                let border = (0..inner_cols.start).chain(inner_cols.end..cols.len());
                for o in border {
                    let c = cols[o];
                    let v = acc[c.start..c.end]
                        .iter()
                        .fold(R::IDENTITY, |a, &v| R::combine(a, v));
                    dst_row[o] = R::finish(v, r.ave_count * c.ave_count);
                }
            }
        }
    }
}
