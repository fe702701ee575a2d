//! Weight fillers (Caffe `FillerParameter`): how a blob is initialised when no trained
//! weights are given. The sampling itself lives in the trainer; the IR only records them.

/// Caffe `FillerParameter.VarianceNorm` for xavier and msra.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VarianceNorm {
    /// Scale by fan-in (`count / num`), Caffe's default.
    #[default]
    FanIn,
    /// Scale by fan-out (`count / channels`).
    FanOut,
    /// Scale by the mean of the two.
    Average,
}

/// A filler with its parameters. Caffe's default filler is `constant` with value 0, which
/// is why a layer missing from a caffemodel ends up with zero weights.
#[derive(Debug, Clone, PartialEq)]
pub enum Filler {
    /// Every value = `value`.
    Constant {
        /// The constant.
        value: f32,
    },
    /// N(mean, std²).
    Gaussian {
        /// Mean.
        mean: f32,
        /// Standard deviation.
        std: f32,
    },
    /// U(min, max).
    Uniform {
        /// Lower bound.
        min: f32,
        /// Upper bound.
        max: f32,
    },
    /// U(−√(3/n), √(3/n)).
    Xavier {
        /// Which fan n is.
        norm: VarianceNorm,
    },
    /// N(0, 2/n).
    Msra {
        /// Which fan n is.
        norm: VarianceNorm,
    },
    /// Uniform in [0, 1], then each row normalised to sum 1.
    PositiveUnitball,
}

impl Default for Filler {
    fn default() -> Self {
        Filler::Constant { value: 0.0 }
    }
}

impl Filler {
    /// Caffe's type string.
    pub fn caffe_type(&self) -> &'static str {
        match self {
            Filler::Constant { .. } => "constant",
            Filler::Gaussian { .. } => "gaussian",
            Filler::Uniform { .. } => "uniform",
            Filler::Xavier { .. } => "xavier",
            Filler::Msra { .. } => "msra",
            Filler::PositiveUnitball => "positive_unitball",
        }
    }
}
