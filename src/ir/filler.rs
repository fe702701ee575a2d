//! Weight fillers (Caffe `FillerParameter`): how a blob is initialised when no trained
//! weights are given, and [`Filler::fill`], which draws the values as Caffe's fillers do.

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

impl Filler {
    /// Fills a blob of `shape` as Caffe's `Filler::Fill` does (`filler.hpp`), drawing from
    /// `rng` so that a seeded generator gives reproducible weights. Fan sizes follow Caffe:
    /// fan-in = count / `shape[0]`, fan-out = count / `shape[1]` (count for a 1-D blob).
    /// `positive_unitball` normalises each of the `shape[0]` rows to sum 1. Degenerate
    /// parameters (std ≤ 0, max ≤ min) give the mean or min, as the limit of the
    /// distribution.
    pub fn fill<R: rand::Rng + ?Sized>(&self, shape: &[usize], rng: &mut R) -> super::Tensor {
        use rand_distr::{Distribution, Uniform};
        let count: usize = shape.iter().product();
        let mut t = super::Tensor::zeros(shape);
        let num = shape.first().copied().unwrap_or(1).max(1);
        let fan_in = (count / num).max(1) as f32;
        let fan_out = match shape.get(1) {
            Some(&c) if shape.len() > 1 => (count / c.max(1)).max(1) as f32,
            _ => count.max(1) as f32,
        };
        let fan = |norm: &VarianceNorm| match norm {
            VarianceNorm::FanIn => fan_in,
            VarianceNorm::FanOut => fan_out,
            VarianceNorm::Average => (fan_in + fan_out) / 2.0,
        };
        let mut uniform = |t: &mut super::Tensor, lo: f32, hi: f32| match Uniform::new(lo, hi) {
            Ok(d) => t.data.iter_mut().for_each(|v| *v = d.sample(rng)),
            Err(_) => t.data.fill(lo),
        };
        match self {
            Filler::Constant { value } => t.data.fill(*value),
            Filler::Uniform { min, max } => uniform(&mut t, *min, *max),
            Filler::Xavier { norm } => {
                let scale = (3.0 / fan(norm)).sqrt();
                uniform(&mut t, -scale, scale)
            }
            Filler::PositiveUnitball => {
                uniform(&mut t, 0.0, 1.0);
                let dim = count / num;
                for row in t.data.chunks_mut(dim.max(1)) {
                    let sum: f32 = row.iter().sum();
                    if sum > 0.0 {
                        row.iter_mut().for_each(|v| *v /= sum);
                    }
                }
            }
            Filler::Gaussian { mean, std } => gaussian(&mut t, *mean, *std, rng),
            Filler::Msra { norm } => gaussian(&mut t, 0.0, (2.0 / fan(norm)).sqrt(), rng),
        }
        t
    }
}

fn gaussian<R: rand::Rng + ?Sized>(t: &mut super::Tensor, mean: f32, std: f32, rng: &mut R) {
    use rand_distr::{Distribution, Normal};
    match Normal::new(mean, std) {
        Ok(d) if std > 0.0 => t.data.iter_mut().for_each(|v| *v = d.sample(rng)),
        _ => t.data.fill(mean),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn rng() -> rand::rngs::StdRng {
        rand::rngs::StdRng::seed_from_u64(7)
    }

    fn mean_var(v: &[f32]) -> (f64, f64) {
        let n = v.len() as f64;
        let m = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        (
            m,
            v.iter().map(|&x| (x as f64 - m).powi(2)).sum::<f64>() / n,
        )
    }

    #[test]
    fn constant_fills_exactly() {
        let t = Filler::Constant { value: 0.25 }.fill(&[2, 3], &mut rng());
        assert_eq!(t.shape, vec![2, 3]);
        assert!(t.data.iter().all(|&v| v == 0.25));
        assert!(Filler::default()
            .fill(&[4], &mut rng())
            .data
            .iter()
            .all(|&v| v == 0.0));
    }

    #[test]
    fn xavier_bounds_follow_caffe_fan_in() {
        // conv weights [16, 3, 7, 7]: fan_in = 3·7·7 = 147, scale = √(3/147) = 1/7.
        let t = Filler::Xavier {
            norm: VarianceNorm::FanIn,
        }
        .fill(&[16, 3, 7, 7], &mut rng());
        let scale = 1.0 / 7.0;
        assert!(t.data.iter().all(|&v| v.abs() <= scale));
        assert!(t.max_abs() > 0.9 * scale, "{}", t.max_abs());
        // fan_out = count / shape[1] = 16·49 = 784: scale = √(3/784).
        let t = Filler::Xavier {
            norm: VarianceNorm::FanOut,
        }
        .fill(&[16, 3, 7, 7], &mut rng());
        let scale = (3.0f32 / 784.0).sqrt();
        assert!(t.data.iter().all(|&v| v.abs() <= scale));
        assert!(t.max_abs() > 0.9 * scale);
    }

    #[test]
    fn gaussian_and_msra_have_the_requested_moments() {
        let t = Filler::Gaussian {
            mean: 1.0,
            std: 0.5,
        }
        .fill(&[100, 100], &mut rng());
        let (m, v) = mean_var(&t.data);
        assert!(
            (m - 1.0).abs() < 0.02 && (v.sqrt() - 0.5).abs() < 0.02,
            "{m} {v}"
        );
        // msra on [64, 2352]: variance 2 / 2352.
        let t = Filler::Msra {
            norm: VarianceNorm::FanIn,
        }
        .fill(&[64, 2352], &mut rng());
        let (m, v) = mean_var(&t.data);
        assert!(
            m.abs() < 1e-3 && (v * 2352.0 / 2.0 - 1.0).abs() < 0.03,
            "{m} {v}"
        );
    }

    #[test]
    fn uniform_and_unitball_respect_their_ranges() {
        let t = Filler::Uniform {
            min: -2.0,
            max: 3.0,
        }
        .fill(&[1000], &mut rng());
        assert!(t.data.iter().all(|&v| (-2.0..3.0).contains(&v)));
        let t = Filler::PositiveUnitball.fill(&[4, 5], &mut rng());
        for row in t.data.chunks(5) {
            assert!(row.iter().all(|&v| v >= 0.0));
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_weights() {
        let f = Filler::Gaussian {
            mean: 0.0,
            std: 0.01,
        };
        assert_eq!(f.fill(&[8, 8], &mut rng()), f.fill(&[8, 8], &mut rng()));
    }
}
