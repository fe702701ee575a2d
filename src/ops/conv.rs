//! Convolution (Caffe `ConvolutionLayer`): grouped, padded, strided and dilated 2-D
//! convolution with an optional bias. Output size uses floor, as Caffe's
//! `compute_output_shape`: `(H + 2p − (d(k−1)+1)) / s + 1`.

use super::activation::relu_in_place;
use super::ctx::Ctx;
use super::gemm::{sgemm, MatRef};
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
    /// Zero padding (height, width).
    pub pad: [usize; 2],
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
            dilation: [1, 1],
            group: 1,
            bias_term: true,
            weight_filler: Filler::default(),
            bias_filler: Filler::default(),
        }
    }
}

impl ConvParams {
    /// Output spatial size for one axis (floor rule).
    pub fn out_dim(&self, input: usize, axis: usize) -> OpResult<usize> {
        let extent = self.dilation[axis] * (self.kernel[axis] - 1) + 1;
        let padded = input + 2 * self.pad[axis];
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
        Ok(vec![vec![
            b[0],
            self.num_output,
            self.out_dim(b[2], 0)?,
            self.out_dim(b[3], 1)?,
        ]])
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
    /// parallel im2col and the output channels split into one block per thread, each block
    /// a single-threaded GEMM over the shared columns followed by its bias and ReLU.
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
        let m_g = m / groups;
        let k_g = geo.col_rows() / groups;
        let hw = geo.col_cols();
        expect_blob_len(blobs, 0, m * k_g, "weights")?;
        let weights = &blobs[0].data;
        let bias = if self.bias_term {
            expect_blob_len(blobs, 1, m, "bias")?;
            Some(&blobs[1].data[..])
        } else {
            None
        };
        let n = x.shape[0];
        let in_image = x.count_from(1);
        let out_image = m * hw;
        let mut y = ctx.tensor(&[n, m, geo.output[0], geo.output[1]]);
        if n == 0 || out_image == 0 {
            return Ok(y);
        }

        // One image: im2col, then per group `W_g · col_g` with the bias and the fused ReLU
        // applied to each block of output rows while it is still in cache. With more than
        // one thread the output rows are split into one block per thread, each a
        // single-threaded GEMM over the shared columns (no synchronisation inside the GEMM).
        let one_image = |image: &[f32], out: &mut [f32], threads: usize| {
            let rows_per_block = if threads > 1 {
                m_g.div_ceil(threads).next_multiple_of(8).min(m_g)
            } else {
                m_g
            };
            let mut gemms = |col: &[f32]| {
                let block = |g: usize, first_row: usize, out_rows: &mut [f32]| {
                    let rows = out_rows.len() / hw;
                    let row0 = g * m_g + first_row;
                    sgemm(
                        rows,
                        hw,
                        k_g,
                        MatRef::row_major(&weights[row0 * k_g..][..rows * k_g], k_g),
                        MatRef::row_major(&col[g * k_g * hw..][..k_g * hw], hw),
                        out_rows,
                        hw,
                        false,
                        1,
                    );
                    bias_and_relu(out_rows, hw, bias.map(|b| &b[row0..row0 + rows]), relu);
                };
                for (g, out_g) in out.chunks_mut(m_g * hw).enumerate() {
                    if rows_per_block < m_g {
                        out_g
                            .par_chunks_mut(rows_per_block * hw)
                            .enumerate()
                            .for_each(|(i, o)| block(g, i * rows_per_block, o));
                    } else {
                        block(g, 0, out_g);
                    }
                }
            };
            if geo.is_identity() {
                gemms(image);
            } else {
                with_scratch(geo.col_rows() * hw, |col| {
                    geo.im2col(image, col, threads > 1);
                    gemms(col);
                });
            }
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

/// Adds one bias per output channel (rows of `plane` values) and applies the fused ReLU.
fn bias_and_relu(out: &mut [f32], plane: usize, bias: Option<&[f32]>, relu: Option<f32>) {
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
