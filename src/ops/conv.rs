//! Convolution (Caffe `ConvolutionLayer`): grouped, padded, strided and dilated 2-D
//! convolution with an optional bias. Output size uses floor, as Caffe's
//! `compute_output_shape`: `(H + 2p − (d(k−1)+1)) / s + 1`.

use super::activation::relu_in_place;
use super::ctx::Ctx;
use super::gemm::{sgemm, Layout, MatRef};
use super::im2col::{with_scratch, ConvGeometry};
use super::{expect_blob_len, expect_bottoms, per_image_parallel, OpError, OpResult};
use crate::ir::{Filler, Tensor};
use rayon::prelude::*;

/// Parameters of a 2-D convolution, with Caffe's defaults (stride 1, pad 0, dilation 1,
/// group 1, bias on).
#[derive(Debug, Clone, PartialEq)]
pub struct ConvParams {
    /// Number of output channels (`num_output`).
    pub num_output: usize,
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Stride (height, width).
    pub stride: [usize; 2],
    /// Zero padding before the first row and column (height, width); Caffe pads both
    /// sides by this much.
    pub pad: [usize; 2],
    /// Zero padding after the last row and column, when it differs from `pad`: TensorFlow's
    /// SAME padding puts the odd extra pixel at the end, and ONNX `pads` lists begin and
    /// end separately. `None` is Caffe's symmetric rule.
    pub pad_end: Option<[usize; 2]>,
    /// Dilation (height, width).
    pub dilation: [usize; 2],
    /// Channel groups: input and output channels are split into `group` independent parts.
    pub group: usize,
    /// Whether a bias blob follows the weights.
    pub bias_term: bool,
    /// Filler for the weights when no caffemodel provides them.
    pub weight_filler: Filler,
    /// Filler for the bias.
    pub bias_filler: Filler,
}

impl Default for ConvParams {
    fn default() -> Self {
        Self {
            num_output: 0,
            kernel: [1, 1],
            stride: [1, 1],
            pad: [0, 0],
            pad_end: None,
            dilation: [1, 1],
            group: 1,
            bias_term: true,
            weight_filler: Filler::default(),
            bias_filler: Filler::default(),
        }
    }
}

impl ConvParams {
    /// Padding after the last row and column (`pad` unless `pad_end` says otherwise).
    pub fn end_pad(&self) -> [usize; 2] {
        self.pad_end.unwrap_or(self.pad)
    }

    /// True when both sides are padded equally, the only padding Caffe can write.
    pub fn is_symmetric(&self) -> bool {
        self.end_pad() == self.pad
    }

    /// The same convolution with symmetric padding, for formats that only have Caffe's one
    /// `pad` per axis (Caffe itself, the NCS compiler's Caffe pad style). Where one side
    /// is padded `m·dilation` more than the other, both sides get the larger pad and the
    /// kernel grows by `m` zero taps on the side with the smaller pad, so every output
    /// reads exactly the inputs it read before: the output size
    /// `H + 2·max − d(k + m − 1) − 1` equals `H + begin + end − d(k − 1) − 1`, and the first
    /// real tap stays at `o·s − begin`. `blobs` are the weights (and bias) in Caffe's
    /// layout; `None` when a pad difference is not a multiple of the dilation.
    pub fn to_symmetric(&self, blobs: &[Tensor]) -> Option<(ConvParams, Vec<Tensor>)> {
        if self.is_symmetric() {
            return Some((self.clone(), blobs.to_vec()));
        }
        let (begin, end) = (self.pad, self.end_pad());
        let mut p = self.clone();
        let mut lead = [0usize; 2];
        for a in 0..2 {
            let diff = begin[a].abs_diff(end[a]);
            if !diff.is_multiple_of(self.dilation[a]) {
                return None;
            }
            let m = diff / self.dilation[a];
            p.kernel[a] += m;
            p.pad[a] = begin[a].max(end[a]);
            // zero taps go first when the begin side was padded less
            lead[a] = if end[a] > begin[a] { m } else { 0 };
        }
        p.pad_end = None;
        let mut out = blobs.to_vec();
        if let Some(w) = blobs.first() {
            let [kh, kw] = self.kernel;
            let [nh, nw] = p.kernel;
            let planes = w.data.len() / (kh * kw).max(1);
            let mut grown = vec![0.0f32; planes * nh * nw];
            for (src, dst) in w
                .data
                .chunks_exact(kh * kw)
                .zip(grown.chunks_exact_mut(nh * nw))
            {
                for i in 0..kh {
                    let row = &mut dst[(i + lead[0]) * nw + lead[1]..][..kw];
                    row.copy_from_slice(&src[i * kw..][..kw]);
                }
            }
            let mut shape = w.shape.clone();
            let n = shape.len();
            if n >= 2 {
                shape[n - 2] = nh;
                shape[n - 1] = nw;
            }
            out[0] = Tensor::from_vec(&shape, grown)?;
        }
        Some((p, out))
    }

    /// Output spatial size for one axis (floor rule; with asymmetric padding the ONNX
    /// form `(H + p_begin + p_end − extent) / s + 1`).
    pub fn out_dim(&self, input: usize, axis: usize) -> OpResult<usize> {
        let extent = self.dilation[axis] * (self.kernel[axis] - 1) + 1;
        let padded = input
            .checked_add(self.pad[axis])
            .and_then(|v| v.checked_add(self.end_pad()[axis]))
            .ok_or_else(|| OpError::new("padding overflows the index range"))?;
        if padded < extent {
            return Err(OpError::new(format!(
                "kernel extent {extent} exceeds padded input {padded} on axis {}",
                ["height", "width"][axis]
            )));
        }
        Ok((padded - extent) / self.stride[axis] + 1)
    }

    /// Output shape for an N×C×H×W bottom.
    pub fn output_shapes(&self, bottoms: &[Vec<usize>]) -> OpResult<Vec<Vec<usize>>> {
        let b = self.check_bottom(bottoms)?;
        Ok(vec![vec![
            b[0],
            self.num_output,
            self.out_dim(b[2], 0)?,
            self.out_dim(b[3], 1)?,
        ]])
    }

    /// The one N×C×H×W bottom, checked against the parameters as Caffe's
    /// `BaseConvolutionLayer::LayerSetUp` does (channels and num_output divide by group;
    /// kernel, stride and dilation positive). Shared with the deconvolution.
    pub(crate) fn check_bottom<'b>(&self, bottoms: &'b [Vec<usize>]) -> OpResult<&'b [usize]> {
        expect_bottoms(bottoms, 1, 1)?;
        let b = &bottoms[0];
        if b.len() != 4 {
            return Err(OpError::new(format!("needs a 4-D bottom, got {:?}", b)));
        }
        if self.group == 0
            || !b[1].is_multiple_of(self.group)
            || !self.num_output.is_multiple_of(self.group)
        {
            return Err(OpError::new(format!(
                "channels {} and num_output {} must both divide by group {}",
                b[1], self.num_output, self.group
            )));
        }
        if self.kernel.contains(&0) || self.stride.contains(&0) || self.dilation.contains(&0) {
            return Err(OpError::new("kernel, stride and dilation must be positive"));
        }
        Ok(b)
    }

    /// Weight blob shapes: `[num_output, C/group, kh, kw]` and `[num_output]`.
    pub fn weight_shapes(&self, bottoms: &[Vec<usize>]) -> Vec<Vec<usize>> {
        let c = bottoms.first().and_then(|b| b.get(1)).copied().unwrap_or(0);
        let mut v = vec![vec![
            self.num_output,
            c / self.group.max(1),
            self.kernel[0],
            self.kernel[1],
        ]];
        if self.bias_term {
            v.push(vec![self.num_output]);
        }
        v
    }

    /// 2 × multiply-adds (the bias adds are not counted, as Caffe's and ONNX tools do).
    pub fn flops(&self, bottoms: &[Vec<usize>], tops: &[Vec<usize>]) -> u64 {
        let (b, t) = (&bottoms[0], &tops[0]);
        let per_out = (b[1] / self.group.max(1)) * self.kernel[0] * self.kernel[1];
        2 * (t.iter().product::<usize>() * per_out) as u64
    }
}

impl ConvParams {
    /// The im2col geometry for a C×H×W bottom.
    pub fn geometry(&self, bottom: &[usize]) -> OpResult<ConvGeometry> {
        let out = self.output_shapes(&[bottom.to_vec()])?;
        Ok(ConvGeometry {
            channels: bottom[1],
            input: [bottom[2], bottom[3]],
            output: [out[0][2], out[0][3]],
            kernel: self.kernel,
            stride: self.stride,
            pad: self.pad,
            dilation: self.dilation,
        })
    }

    /// Forward pass, Caffe's `BaseConvolutionLayer::forward_cpu_gemm`: per image, im2col then
    /// for each group `W_g[M/g × K/g] · col_g[K/g × OH·OW]`, then the bias per output channel.
    /// `relu` fuses a following ReLU with that negative slope into the same pass over the
    /// output (the engine does this only when nobody needs the pre-activation blob).
    ///
    /// Batches with enough images run one image per rayon task with a single-threaded GEMM
    /// (no synchronisation inside a layer). Smaller batches go image by image with a
    /// parallel im2col and the product split into one single-threaded GEMM per thread (see
    /// [`GroupProduct`]).
    pub fn forward(
        &self,
        x: &Tensor,
        blobs: &[Tensor],
        ctx: &mut Ctx,
        relu: Option<f32>,
    ) -> OpResult<Tensor> {
        let geo = self.geometry(&x.shape)?;
        let groups = self.group;
        let m = self.num_output;
        let (k_g, hw) = (geo.col_rows() / groups, geo.col_cols());
        expect_blob_len(blobs, 0, m * k_g, "weights")?;
        let bias = if self.bias_term {
            expect_blob_len(blobs, 1, m, "bias")?;
            Some(&blobs[1].data[..])
        } else {
            None
        };
        let n = x.shape[0];
        let (in_image, out_image) = (x.count_from(1), m * hw);
        let mut y = ctx.tensor(&[n, m, geo.output[0], geo.output[1]]);
        if n == 0 || out_image == 0 {
            return Ok(y);
        }
        let gemms = ImageGemms {
            geo: &geo,
            groups,
            weights: &blobs[0].data,
        };
        let one_image = |image: &[f32], out: &mut [f32], threads: usize| {
            gemms.forward(image, out, bias, relu, threads)
        };

        let threads = ctx.threads;
        if per_image_parallel(n, threads) {
            y.data
                .par_chunks_mut(out_image)
                .zip(x.data.par_chunks(in_image))
                .for_each(|(out, image)| one_image(image, out, 1));
        } else {
            for (out, image) in y.data.chunks_mut(out_image).zip(x.data.chunks(in_image)) {
                one_image(image, out, threads);
            }
        }
        Ok(y)
    }
}

/// A grouped convolution's weights over one geometry, and the three per-image products
/// that Caffe's `BaseConvolutionLayer` builds its layers from (`forward_cpu_gemm`,
/// `backward_cpu_gemm`, `weight_cpu_gemm`). The convolution uses them as named; the
/// deconvolution (`ops::deconv`) swaps forward and backward-data, as Caffe's
/// `DeconvolutionLayer` does.
pub(crate) struct ImageGemms<'a> {
    /// The convolution's geometry (for a deconvolution: the convolution it transposes).
    pub geo: &'a ConvGeometry,
    /// Channel groups.
    pub groups: usize,
    /// Weights as Caffe stores a convolution's: `M × (C/group · kh · kw)`.
    pub weights: &'a [f32],
}

impl ImageGemms<'_> {
    /// Rows of one group's weight matrix (`M / group`) and its depth (`C/group · kh · kw`).
    fn dims(&self) -> (usize, usize) {
        let k_g = self.geo.col_rows() / self.groups;
        (self.weights.len() / (k_g * self.groups).max(1), k_g)
    }

    /// `out[M × OH·OW] = W · im2col(image)` per group, plus the bias and the fused ReLU.
    pub fn forward(
        &self,
        image: &[f32],
        out: &mut [f32],
        bias: Option<&[f32]>,
        relu: Option<f32>,
        threads: usize,
    ) {
        let (m_g, k_g) = self.dims();
        let hw = self.geo.col_cols();
        let run = |col: &[f32], out: &mut [f32]| {
            for (g, out_g) in out.chunks_mut(m_g * hw).enumerate() {
                let product = GroupProduct {
                    weights: &self.weights[g * m_g * k_g..][..m_g * k_g],
                    columns: &col[g * k_g * hw..][..k_g * hw],
                    bias: bias.map(|b| &b[g * m_g..][..m_g]),
                    relu,
                    rows: m_g,
                    depth: k_g,
                    cols: hw,
                };
                product.run(out_g, threads);
            }
        };
        if self.geo.is_identity() {
            run(image, out);
        } else {
            with_scratch(self.geo.col_rows() * hw, |col| {
                self.geo.im2col(image, col, threads > 1);
                run(col, out);
            });
        }
    }

    /// `image += col2im(Wᵀ · dy)` per group (`dy`: `M × OH·OW`; `image`: C×H×W, zeroed by
    /// the caller).
    pub fn backward_data(&self, dy: &[f32], image: &mut [f32], threads: usize) {
        let (m_g, k_g) = self.dims();
        let hw = self.geo.col_cols();
        let data_gemms = |col: &mut [f32]| {
            for g in 0..self.groups {
                sgemm(
                    k_g,
                    hw,
                    m_g,
                    MatRef::transposed(&self.weights[g * m_g * k_g..][..m_g * k_g], k_g),
                    MatRef::row_major(&dy[g * m_g * hw..][..m_g * hw], hw),
                    &mut col[g * k_g * hw..][..k_g * hw],
                    hw,
                    false,
                    threads,
                );
            }
        };
        if self.geo.is_identity() {
            data_gemms(image);
        } else {
            with_col_diff(self.geo.col_rows() * hw, |col| {
                data_gemms(col);
                self.geo.col2im(col, image);
            });
        }
    }

    /// `wd += dy · im2col(image)ᵀ` per group (`wd` has the weights' size).
    pub fn weight_diff(&self, dy: &[f32], image: &[f32], wd: &mut [f32], threads: usize) {
        let (m_g, k_g) = self.dims();
        let hw = self.geo.col_cols();
        let weight_gemms = |col: &[f32], wd: &mut [f32]| {
            for g in 0..self.groups {
                sgemm(
                    m_g,
                    k_g,
                    hw,
                    MatRef::row_major(&dy[g * m_g * hw..][..m_g * hw], hw),
                    MatRef::transposed(&col[g * k_g * hw..][..k_g * hw], hw),
                    &mut wd[g * m_g * k_g..][..m_g * k_g],
                    k_g,
                    true,
                    threads,
                );
            }
        };
        if self.geo.is_identity() {
            weight_gemms(image, wd);
        } else {
            with_scratch(self.geo.col_rows() * hw, |col| {
                self.geo.im2col(image, col, threads > 1);
                weight_gemms(col, wd);
            });
        }
    }
}

/// One group's product for one image, `out[rows × cols] = W[rows × depth] · col[depth ×
/// cols] + bias`, then the fused ReLU.
struct GroupProduct<'a> {
    weights: &'a [f32],
    columns: &'a [f32],
    bias: Option<&'a [f32]>,
    relu: Option<f32>,
    rows: usize,
    depth: usize,
    cols: usize,
}

impl GroupProduct<'_> {
    /// Runs on `threads` threads, each with its own single-threaded GEMM (no
    /// synchronisation inside it). The split goes along the larger operand so that it is
    /// packed once overall rather than once per thread: output positions when the column
    /// buffer is the larger (conv1, conv2 of AgeNet), output channels otherwise (conv3).
    fn run(&self, out: &mut [f32], threads: usize) {
        if threads <= 1 {
            self.rows_block(0, out);
        } else if self.cols > self.rows {
            self.split_columns(out, threads);
        } else {
            let per_block = self
                .rows
                .div_ceil(threads)
                .next_multiple_of(8)
                .min(self.rows);
            out.par_chunks_mut(per_block * self.cols)
                .enumerate()
                .for_each(|(b, o)| self.rows_block(b * per_block, o));
        }
    }

    /// Output rows `first ..` (as many as `out` holds), with their bias and ReLU.
    fn rows_block(&self, first: usize, out: &mut [f32]) {
        let rows = out.len() / self.cols;
        sgemm(
            rows,
            self.cols,
            self.depth,
            MatRef::row_major(
                &self.weights[first * self.depth..][..rows * self.depth],
                self.depth,
            ),
            MatRef::row_major(self.columns, self.cols),
            out,
            self.cols,
            false,
            1,
        );
        let bias = self.bias.map(|b| &b[first..first + rows]);
        bias_and_relu(out, self.cols, bias, self.relu);
    }

    /// Each thread computes every output row for a block of output positions into its own
    /// buffer; the blocks are then copied into place with the bias and ReLU.
    fn split_columns(&self, out: &mut [f32], threads: usize) {
        let per_block = self
            .cols
            .div_ceil(threads)
            .next_multiple_of(16)
            .min(self.cols);
        let blocks: Vec<(usize, Vec<f32>)> = (0..self.cols.div_ceil(per_block))
            .into_par_iter()
            .map(|b| {
                let first = b * per_block;
                let width = per_block.min(self.cols - first);
                let mut block = vec![0.0f32; self.rows * width];
                let columns = MatRef {
                    data: &self.columns[first..],
                    layout: Layout::RowMajor { ld: self.cols },
                };
                sgemm(
                    self.rows,
                    width,
                    self.depth,
                    MatRef::row_major(self.weights, self.depth),
                    columns,
                    &mut block,
                    width,
                    false,
                    1,
                );
                (first, block)
            })
            .collect();
        out.par_chunks_mut(self.cols)
            .enumerate()
            .for_each(|(r, row)| {
                for (first, block) in &blocks {
                    let width = block.len() / self.rows;
                    row[*first..first + width].copy_from_slice(&block[r * width..][..width]);
                }
                let bias = self.bias.map(|b| &b[r..r + 1]);
                bias_and_relu(row, self.cols, bias, self.relu);
            });
    }
}

/// Adds one bias per output channel (rows of `plane` values) and applies the fused ReLU.
pub(crate) fn bias_and_relu(
    out: &mut [f32],
    plane: usize,
    bias: Option<&[f32]>,
    relu: Option<f32>,
) {
    match bias {
        Some(bias) => {
            for (row, &b) in out.chunks_mut(plane).zip(bias) {
                for v in row.iter_mut() {
                    *v += b;
                }
                if let Some(slope) = relu {
                    relu_in_place(row, slope);
                }
            }
        }
        None => {
            if let Some(slope) = relu {
                relu_in_place(out, slope);
            }
        }
    }
}

// ---- backward (training) ----

use std::cell::RefCell;

thread_local! {
    /// Per-thread column-diff buffer of the backward pass (the im2col buffer comes from
    /// `with_scratch`), so a batch does not allocate per image.
    static COL_DIFF: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

fn with_col_diff<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut buf = COL_DIFF.with(|s| std::mem::take(&mut *s.borrow_mut()));
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    let r = f(&mut buf[..len]);
    COL_DIFF.with(|s| *s.borrow_mut() = buf);
    r
}

impl ConvParams {
    /// Backward (Caffe `ConvolutionLayer::Backward_cpu`), per image and group:
    /// `dW_g += dY_g · col_gᵀ` (`weight_cpu_gemm`), `db += Σ_spatial dY`, and, when
    /// `need_bottom`, `col_g = W_gᵀ · dY_g` followed by col2im (`backward_cpu_gemm`).
    ///
    /// `param_diffs` receives the accumulated weight (and bias) diffs, as Caffe accumulates
    /// them for `iter_size`; pass an empty slice to skip them (no learnable parameters).
    /// Batches split one image per rayon task, each with single-threaded GEMMs and its own
    /// partial weight diff, summed at the end; small batches use multithreaded GEMMs.
    pub fn backward(
        &self,
        x: &Tensor,
        top_diff: &Tensor,
        blobs: &[Tensor],
        param_diffs: &mut [Tensor],
        need_bottom: bool,
        threads: usize,
    ) -> OpResult<Option<Tensor>> {
        let dx = need_bottom.then(|| Tensor::zeros(&x.shape));
        self.backward_into(x, top_diff, blobs, param_diffs, dx, threads)
    }

    /// [`ConvParams::backward`] with the bottom diff accumulated into `bottom_diff`, a
    /// zero-filled buffer of the bottom's shape (`None`: no bottom diff), so that a training
    /// loop can reuse its buffers.
    pub fn backward_into(
        &self,
        x: &Tensor,
        top_diff: &Tensor,
        blobs: &[Tensor],
        param_diffs: &mut [Tensor],
        bottom_diff: Option<Tensor>,
        threads: usize,
    ) -> OpResult<Option<Tensor>> {
        let geo = self.geometry(&x.shape)?;
        let (groups, m) = (self.group, self.num_output);
        let k_g = geo.col_rows() / groups;
        let n = x.shape[0];
        if top_diff.shape != [n, m, geo.output[0], geo.output[1]] {
            return Err(OpError::new(format!(
                "top diff shape {:?} does not match the output {:?}",
                top_diff.shape,
                [n, m, geo.output[0], geo.output[1]]
            )));
        }
        expect_blob_len(blobs, 0, m * k_g, "weights")?;
        let gemms = ImageGemms {
            geo: &geo,
            groups,
            weights: &blobs[0].data,
        };
        let job = BatchBackward {
            x,
            top_diff,
            weight_len: m * k_g,
            bias_term: self.bias_term,
            threads,
        };
        job.run(param_diffs, bottom_diff, &|image, dy, dxi, wd, t| {
            if let Some(wd) = wd {
                gemms.weight_diff(dy, image, wd, t);
            }
            if let Some(dxi) = dxi {
                gemms.backward_data(dy, dxi, t);
            }
        })
    }
}

/// One image's share of a backward pass: `(bottom, top diff, bottom diff, weight diff,
/// threads)`; the diffs are `None` when not wanted.
pub(crate) type ImageBackward<'a> =
    dyn Fn(&[f32], &[f32], Option<&mut [f32]>, Option<&mut [f32]>, usize) + Sync + 'a;

/// The batch loop of a convolution-like backward (Caffe `Backward_cpu` of the convolution
/// and the deconvolution): checks the diff buffers, runs [`ImageBackward`] per image, sums
/// the weight diffs over the batch in a fixed order and adds the bias diff
/// (`db += Σ_spatial dY` per top channel). Diffs accumulate into `param_diffs`, as Caffe
/// accumulates them for `iter_size`.
pub(crate) struct BatchBackward<'a> {
    /// The bottom (N × …).
    pub x: &'a Tensor,
    /// The top diff (N × M × spatial).
    pub top_diff: &'a Tensor,
    /// Values in the weight blob.
    pub weight_len: usize,
    /// Whether a bias blob (one value per top channel) follows the weights.
    pub bias_term: bool,
    /// Thread budget.
    pub threads: usize,
}

impl BatchBackward<'_> {
    /// Runs `one` over the batch; returns the bottom diff accumulated into `bottom_diff`
    /// (a zero-filled buffer of the bottom's shape, or `None` for no bottom diff).
    pub fn run(
        &self,
        param_diffs: &mut [Tensor],
        bottom_diff: Option<Tensor>,
        one: &ImageBackward<'_>,
    ) -> OpResult<Option<Tensor>> {
        let (x, top_diff, threads) = (self.x, self.top_diff, self.threads);
        let n = x.shape[0];
        let m = top_diff.shape.get(1).copied().unwrap_or(0);
        let want_params = !param_diffs.is_empty();
        if want_params && param_diffs[0].len() != self.weight_len {
            return Err(OpError::new("weight diff has the wrong size"));
        }
        let want_bias = want_params && self.bias_term && param_diffs.len() > 1;
        if want_bias && param_diffs[1].len() != m {
            return Err(OpError::new("bias diff has the wrong size"));
        }
        let (in_image, out_image) = (x.count_from(1), top_diff.count_from(1));
        let hw = out_image / m.max(1);
        if bottom_diff.as_ref().is_some_and(|d| d.shape != x.shape) {
            return Err(OpError::new("bottom diff buffer has the wrong shape"));
        }
        let mut dx = bottom_diff;
        if n == 0 || out_image == 0 {
            return Ok(dx);
        }

        // One image: its weight/bias diff contributions into (wd, bd), its bottom diff
        // into `dxi`.
        let image = |i: usize, dxi: Option<&mut [f32]>, wd: &mut [f32], bd: &mut [f32], t| {
            let dy = &top_diff.data[i * out_image..][..out_image];
            one(
                &x.data[i * in_image..][..in_image],
                dy,
                dxi,
                want_params.then_some(wd),
                t,
            );
            if want_bias {
                for (b, row) in bd.iter_mut().zip(dy.chunks(hw)) {
                    *b += row.iter().sum::<f32>();
                }
            }
        };

        let (wlen, blen) = (
            if want_params { self.weight_len } else { 0 },
            if want_bias { m } else { 0 },
        );
        let (wd, bd) = if per_image_parallel(n, threads) {
            // Contiguous groups of images, one per thread, each summing its images' weight
            // diffs in order; the partial sums are then added in group order, so the
            // result does not depend on scheduling (a resumed run reproduces bit for bit).
            let per_group = n.div_ceil(threads);
            let group = |g: usize, dxg: Option<&mut [f32]>| {
                let (mut wd, mut bd) = (vec![0.0f32; wlen], vec![0.0f32; blen]);
                let first = g * per_group;
                let count = per_group.min(n - first);
                let mut dxg = dxg;
                for i in first..first + count {
                    let dxi = dxg
                        .as_deref_mut()
                        .map(|d| &mut d[(i - first) * in_image..][..in_image]);
                    image(i, dxi, &mut wd, &mut bd, 1);
                }
                (wd, bd)
            };
            let partials: Vec<(Vec<f32>, Vec<f32>)> = match dx.as_mut() {
                Some(dx) => dx
                    .data
                    .par_chunks_mut(per_group * in_image)
                    .enumerate()
                    .map(|(g, dxg)| group(g, Some(dxg)))
                    .collect(),
                None => (0..n.div_ceil(per_group))
                    .into_par_iter()
                    .map(|g| group(g, None))
                    .collect(),
            };
            let mut it = partials.into_iter();
            let (mut wd, mut bd) = it.next().unwrap_or_default();
            for (w, b) in it {
                wd.iter_mut().zip(&w).for_each(|(a, c)| *a += c);
                bd.iter_mut().zip(&b).for_each(|(a, c)| *a += c);
            }
            (wd, bd)
        } else {
            let (mut wd, mut bd) = (vec![0.0f32; wlen], vec![0.0f32; blen]);
            for i in 0..n {
                let dxi = dx.as_mut().map(|d| &mut d.data[i * in_image..][..in_image]);
                image(i, dxi, &mut wd, &mut bd, threads);
            }
            (wd, bd)
        };
        if want_params {
            param_diffs[0]
                .data
                .iter_mut()
                .zip(&wd)
                .for_each(|(a, b)| *a += b);
        }
        if want_bias {
            param_diffs[1]
                .data
                .iter_mut()
                .zip(&bd)
                .for_each(|(a, b)| *a += b);
        }
        Ok(dx)
    }
}

#[cfg(test)]
mod backward_tests {
    use super::*;
    use crate::train::gradcheck::{check, uniform};

    fn conv_check(p: ConvParams, xs: [usize; 4], threads: usize) {
        let ws = p.weight_shapes(&[xs.to_vec()]);
        let ys = p.output_shapes(&[xs.to_vec()]).unwrap().remove(0);
        let lens: Vec<usize> = std::iter::once(xs.iter().product())
            .chain(ws.iter().map(|s| s.iter().product()))
            .collect();
        let inputs: Vec<Vec<f32>> = lens
            .iter()
            .enumerate()
            .map(|(i, &l)| uniform(l, -1.0, 1.0, 10 + i as u64))
            .collect();
        let blobs_of = |v: &[Vec<f32>]| -> Vec<Tensor> {
            ws.iter()
                .zip(&v[1..])
                .map(|(s, d)| Tensor::from_vec(s, d.clone()).unwrap())
                .collect()
        };
        let mut ctx = Ctx::new(crate::ir::Phase::Train, 0, threads);
        let mut fwd = |v: &[Vec<f32>]| {
            p.forward(
                &Tensor::from_vec(&xs, v[0].clone()).unwrap(),
                &blobs_of(v),
                &mut ctx,
                None,
            )
            .unwrap()
            .data
        };
        let dy = uniform(ys.iter().product(), -1.0, 1.0, 99);
        let mut diffs: Vec<Tensor> = ws.iter().map(|s| Tensor::zeros(s)).collect();
        let dx = p
            .backward(
                &Tensor::from_vec(&xs, inputs[0].clone()).unwrap(),
                &Tensor::from_vec(&ys, dy.clone()).unwrap(),
                &blobs_of(&inputs),
                &mut diffs,
                true,
                threads,
            )
            .unwrap()
            .unwrap();
        let mut analytic = vec![dx.data];
        analytic.extend(diffs.into_iter().map(|d| d.data));
        check("Convolution", &inputs, &dy, &analytic, &mut fwd, 1e-2, 1e-3);
    }

    #[test]
    fn convolution_gradients_pass_the_finite_difference_check() {
        // Padded and strided; grouped and dilated; 1×1 (no im2col); a batch of 4 that
        // takes the per-image parallel path with partial weight diffs.
        conv_check(
            ConvParams {
                num_output: 3,
                kernel: [3, 3],
                stride: [2, 2],
                pad: [1, 1],
                ..Default::default()
            },
            [2, 2, 5, 6],
            1,
        );
        conv_check(
            ConvParams {
                num_output: 4,
                kernel: [2, 3],
                dilation: [2, 1],
                group: 2,
                ..Default::default()
            },
            [1, 4, 6, 5],
            1,
        );
        conv_check(
            ConvParams {
                num_output: 2,
                bias_term: false,
                ..Default::default()
            },
            [2, 3, 3, 3],
            1,
        );
        conv_check(
            ConvParams {
                num_output: 3,
                kernel: [3, 3],
                pad: [1, 1],
                ..Default::default()
            },
            [4, 2, 4, 4],
            2,
        );
        // TensorFlow SAME on an even input: one pixel of padding at the end only
        conv_check(
            ConvParams {
                num_output: 2,
                kernel: [3, 3],
                stride: [2, 2],
                pad_end: Some([1, 1]),
                ..Default::default()
            },
            [2, 2, 6, 4],
            1,
        );
    }

    #[test]
    fn skipping_params_or_the_bottom_diff_gives_the_same_remaining_results() {
        let p = ConvParams {
            num_output: 2,
            kernel: [3, 3],
            ..Default::default()
        };
        let x = Tensor::from_vec(&[2, 1, 4, 4], uniform(32, -1.0, 1.0, 1)).unwrap();
        let blobs = [
            Tensor::from_vec(&[2, 1, 3, 3], uniform(18, -1.0, 1.0, 2)).unwrap(),
            Tensor::zeros(&[2]),
        ];
        let dy = Tensor::from_vec(&[2, 2, 2, 2], uniform(16, -1.0, 1.0, 3)).unwrap();
        let mut full = [Tensor::zeros(&[2, 1, 3, 3]), Tensor::zeros(&[2])];
        let dx = p
            .backward(&x, &dy, &blobs, &mut full, true, 1)
            .unwrap()
            .unwrap();
        let mut only = [Tensor::zeros(&[2, 1, 3, 3]), Tensor::zeros(&[2])];
        assert!(p
            .backward(&x, &dy, &blobs, &mut only, false, 1)
            .unwrap()
            .is_none());
        assert_eq!(only[0], full[0]);
        let dx2 = p
            .backward(&x, &dy, &blobs, &mut [], true, 1)
            .unwrap()
            .unwrap();
        assert_eq!(dx2, dx);
        // Diffs accumulate (iter_size): a second pass doubles them.
        p.backward(&x, &dy, &blobs, &mut only, false, 1).unwrap();
        for (a, b) in only[0].data.iter().zip(&full[0].data) {
            assert!((a - 2.0 * b).abs() < 1e-6);
        }
    }
}
