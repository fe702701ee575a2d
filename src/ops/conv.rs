//! Convolution (Caffe `ConvolutionLayer`): grouped, padded, strided and dilated 2-D
//! convolution with an optional bias. Output size uses floor, as Caffe's
//! `compute_output_shape`: `(H + 2p − (d(k−1)+1)) / s + 1`.

use super::{expect_bottoms, OpError, OpResult};
use crate::ir::Filler;

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
        if self.group == 0 || b[1] % self.group != 0 || self.num_output % self.group != 0 {
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
