//! Deconvolution (Caffe `DeconvolutionLayer`): the transposed convolution. It reads Caffe's
//! `ConvolutionParameter` unchanged (num_output, kernel, stride, pad, dilation, group,
//! bias_term) and runs the convolution's products with the roles swapped, as Caffe does:
//! the forward is the convolution's backward-data (`Wᵀ · x` into columns, then col2im),
//! the bottom diff is a convolution of the top diff with `W`.
//!
//! As a scatter, for input channel c in group g and output channel o of that group:
//! `y[o][s·i − p + d·k] += w[c][o][k] · x[c][i]` per axis, plus the bias of o. The output
//! size is Caffe's `DeconvolutionLayer::compute_output_shape`:
//! `s·(H − 1) + d·(k − 1) + 1 − 2p`. The weight blob is `C_in × (C_out/group) × kh × kw`.

use super::conv::{bias_and_relu, BatchBackward, ConvParams, ImageGemms};
use super::ctx::Ctx;
use super::im2col::ConvGeometry;
use super::{expect_blob_len, per_image_parallel, OpError, OpResult};
use crate::ir::Tensor;
use rayon::prelude::*;

/// A deconvolution's parameters: Caffe's `ConvolutionParameter` (the same message, the same
/// defaults), read with the deconvolution's shape rule.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeconvParams(pub ConvParams);

impl DeconvParams {
    /// Output size along one axis (0 = height, 1 = width): `s·(H − 1) + d·(k − 1) + 1 − 2p`
    /// (Caffe `DeconvolutionLayer::compute_output_shape`); an error when the padding eats
    /// the whole output.
    pub fn out_dim(&self, input: usize, axis: usize) -> OpResult<usize> {
        let p = &self.0;
        let full =
            p.stride[axis] * input.saturating_sub(1) + p.dilation[axis] * (p.kernel[axis] - 1) + 1;
        if input == 0 || full <= 2 * p.pad[axis] {
            return Err(OpError::new(format!(
                "padding {} leaves no output of the {full}-wide deconvolution on axis {}",
                p.pad[axis],
                ["height", "width"][axis]
            )));
        }
        Ok(full - 2 * p.pad[axis])
    }

    /// Output shape for an N×C×H×W bottom: `N × num_output × out_dim(H) × out_dim(W)`.
    pub fn output_shapes(&self, bottoms: &[Vec<usize>]) -> OpResult<Vec<Vec<usize>>> {
        let p = &self.0;
        let b = p.check_bottom(bottoms)?;
        if !p.is_symmetric() {
            // Caffe's deconvolution crops `pad` from both sides; an uneven crop has no
            // Caffe or NCS form
            return Err(OpError::new(format!(
                "deconvolution padding must be symmetric, got begin {:?} / end {:?}",
                p.pad,
                p.end_pad()
            )));
        }
        Ok(vec![vec![
            b[0],
            p.num_output,
            self.out_dim(b[2], 0)?,
            self.out_dim(b[3], 1)?,
        ]])
    }

    /// Weight blob shapes, as Caffe's `BaseConvolutionLayer` sets them up for a
    /// deconvolution: `[C_in, num_output/group, kh, kw]` and `[num_output]`.
    pub fn weight_shapes(&self, bottoms: &[Vec<usize>]) -> Vec<Vec<usize>> {
        let p = &self.0;
        let c = bottoms.first().and_then(|b| b.get(1)).copied().unwrap_or(0);
        let mut v = vec![vec![
            c,
            p.num_output / p.group.max(1),
            p.kernel[0],
            p.kernel[1],
        ]];
        if p.bias_term {
            v.push(vec![p.num_output]);
        }
        v
    }

    /// 2 × multiply-adds: every input value meets `num_output/group · kh · kw` taps (bias
    /// adds not counted, as for the convolution).
    pub fn flops(&self, bottoms: &[Vec<usize>]) -> u64 {
        let p = &self.0;
        let per_in = (p.num_output / p.group.max(1)) * p.kernel[0] * p.kernel[1];
        2 * (bottoms[0].iter().product::<usize>() * per_in) as u64
    }

    /// The geometry of the convolution this deconvolution transposes: it maps the
    /// deconvolution's output (`num_output` channels) back onto its input.
    fn geometry(&self, bottom: &[usize]) -> OpResult<(ConvGeometry, Vec<usize>)> {
        let out = self.output_shapes(&[bottom.to_vec()])?.remove(0);
        let p = &self.0;
        let geo = ConvGeometry {
            channels: p.num_output,
            input: [out[2], out[3]],
            output: [bottom[2], bottom[3]],
            kernel: p.kernel,
            stride: p.stride,
            pad: p.pad,
            dilation: p.dilation,
        };
        Ok((geo, out))
    }

    /// Forward pass (Caffe `DeconvolutionLayer::Forward_cpu`): per image
    /// `backward_cpu_gemm(x, W)` — `Wᵀ · x` per group into columns, col2im into the
    /// output — then the bias per output channel. Batches split one image per rayon task
    /// as the convolution's do.
    pub fn forward(&self, x: &Tensor, blobs: &[Tensor], ctx: &mut Ctx) -> OpResult<Tensor> {
        let (geo, out) = self.geometry(&x.shape)?;
        let p = &self.0;
        let m = p.num_output;
        let weight_len = x.shape[1] * geo.col_rows() / p.group;
        expect_blob_len(blobs, 0, weight_len, "weights")?;
        let bias = if p.bias_term {
            expect_blob_len(blobs, 1, m, "bias")?;
            Some(&blobs[1].data[..])
        } else {
            None
        };
        let mut y = ctx.tensor(&out);
        y.data.fill(0.0);
        let (in_image, out_image) = (x.count_from(1), y.count_from(1));
        if in_image == 0 || out_image == 0 {
            return Ok(y);
        }
        let gemms = ImageGemms {
            geo: &geo,
            groups: p.group,
            weights: &blobs[0].data,
        };
        let plane = out_image / m;
        let one_image = |image: &[f32], out: &mut [f32], threads: usize| {
            gemms.backward_data(image, out, threads);
            bias_and_relu(out, plane, bias, None);
        };
        let threads = ctx.threads;
        if per_image_parallel(x.shape[0], threads) {
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

    /// Backward (Caffe `DeconvolutionLayer::Backward_cpu`), per image: `db += Σ_spatial dY`,
    /// `dW += x · im2col(dY)ᵀ` (`weight_cpu_gemm(top_diff, bottom)`) and, when wanted, the
    /// bottom diff `W · im2col(dY)` (`forward_cpu_gemm(top_diff)`). The bottom diff is
    /// accumulated into `bottom_diff` (zero-filled, the bottom's shape; `None`: not wanted)
    /// and parameter diffs into `param_diffs` (empty: skipped), as for the convolution.
    pub fn backward_into(
        &self,
        x: &Tensor,
        top_diff: &Tensor,
        blobs: &[Tensor],
        param_diffs: &mut [Tensor],
        bottom_diff: Option<Tensor>,
        threads: usize,
    ) -> OpResult<Option<Tensor>> {
        let (geo, out) = self.geometry(&x.shape)?;
        if top_diff.shape != out {
            return Err(OpError::new(format!(
                "top diff shape {:?} does not match the output {:?}",
                top_diff.shape, out
            )));
        }
        let p = &self.0;
        let weight_len = x.shape[1] * geo.col_rows() / p.group;
        expect_blob_len(blobs, 0, weight_len, "weights")?;
        let gemms = ImageGemms {
            geo: &geo,
            groups: p.group,
            weights: &blobs[0].data,
        };
        let job = BatchBackward {
            x,
            top_diff,
            weight_len,
            bias_term: p.bias_term,
            threads,
        };
        job.run(param_diffs, bottom_diff, &|image, dy, dxi, wd, t| {
            if let Some(wd) = wd {
                gemms.weight_diff(image, dy, wd, t);
            }
            if let Some(dxi) = dxi {
                gemms.forward(dy, dxi, None, None, t);
            }
        })
    }

    /// [`DeconvParams::backward_into`] with a freshly allocated bottom diff when
    /// `need_bottom`.
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
}
