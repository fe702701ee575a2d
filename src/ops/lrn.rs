//! Local response normalisation (Caffe `LRNLayer`).
//!
//! ACROSS_CHANNELS: `y = x · (k + α/n · Σ_{c' ∈ window(c)} x²)^−β`, a window of `n`
//! channels centred on c with zero padding. WITHIN_CHANNEL: the same over an n×n spatial
//! window; Caffe builds it from an AVE pooling of x² (padding (n−1)/2, divisor clipped as
//! AVE pooling does) and uses `k = 1`.

use super::{expect_bottoms, OpError, OpResult};

/// Normalisation region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormRegion {
    /// Across neighbouring channels (AlexNet, Levi & Hassner).
    AcrossChannels,
    /// Over a spatial square within each channel (cifar10_full).
    WithinChannel,
}

/// LRN parameters with Caffe's defaults (`local_size` 5, α 1, β 0.75, k 1, ACROSS).
#[derive(Debug, Clone, PartialEq)]
pub struct LrnParams {
    /// Window size n (odd).
    pub local_size: usize,
    /// Scale α; divided by n (ACROSS) or n² (WITHIN) as Caffe does.
    pub alpha: f32,
    /// Exponent β.
    pub beta: f32,
    /// Additive constant k (ONNX `bias`).
    pub k: f32,
    /// ACROSS_CHANNELS or WITHIN_CHANNEL.
    pub region: NormRegion,
}

impl Default for LrnParams {
    fn default() -> Self {
        Self {
            local_size: 5,
            alpha: 1.0,
            beta: 0.75,
            k: 1.0,
            region: NormRegion::AcrossChannels,
        }
    }
}

impl LrnParams {
    /// Same shape as the bottom; `local_size` must be odd, as Caffe checks.
    pub fn output_shapes(&self, bottoms: &[Vec<usize>]) -> OpResult<Vec<Vec<usize>>> {
        expect_bottoms(bottoms, 1, 1)?;
        if self.local_size % 2 == 0 {
            return Err(OpError::new(format!(
                "local_size {} must be odd",
                self.local_size
            )));
        }
        if bottoms[0].len() != 4 {
            return Err(OpError::new(format!(
                "needs a 4-D bottom, got {:?}",
                bottoms[0]
            )));
        }
        Ok(vec![bottoms[0].clone()])
    }

    /// Square, window sum, scale and power per element.
    pub fn flops(&self, tops: &[Vec<usize>]) -> u64 {
        let n = tops[0].iter().product::<usize>() as u64;
        let window = match self.region {
            NormRegion::AcrossChannels => self.local_size,
            NormRegion::WithinChannel => self.local_size * self.local_size,
        } as u64;
        n * (window + 4)
    }
}
