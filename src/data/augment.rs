//! Oversampling of the train part: every age class is filled up to the size of the largest
//! with generated samples that alternate a horizontal flip and additive Gaussian noise.
//!
//! The noise follows the original project (`skimage.util.random_noise(mode="gaussian",
//! var=0.01)`): pixels scaled to [0, 1], `N(0, 0.1²)` added, clipped to [0, 1], then
//! rounded back to 8 bits (σ = 0.1 ≈ 25.5 grey levels). Each generated sample draws its
//! noise from its own ChaCha8 stream, so records do not depend on processing order or
//! thread count. The augmentation is applied to the resized record, so a flipped record is
//! exactly the mirror of its source's record. A source used several times alternates
//! flip and noise across its uses; its flips are identical copies, its noises all differ.

use super::split::{seeded_rng, seeded_shuffle, streams};
use crate::io::image::ChwImage;
use rand_distr::{Distribution, Normal};
use serde::Serialize;

/// Standard deviation of the additive noise on [0, 1] pixels (variance 0.01).
pub const NOISE_SIGMA: f32 = 0.1;

/// How a generated sample is derived from its source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Augmentation {
    /// Mirrored left to right.
    Flip,
    /// Additive Gaussian noise, σ = [`NOISE_SIGMA`] on [0, 1] pixels, clipped.
    Noise,
}

impl Augmentation {
    /// `flip` or `noise`.
    pub fn name(&self) -> &'static str {
        match self {
            Augmentation::Flip => "flip",
            Augmentation::Noise => "noise",
        }
    }
}

/// One generated train sample.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GeneratedSample {
    /// Position in the generated list; also its noise stream.
    pub id: usize,
    /// Index of the source sample (into the sorted sample list).
    pub source: usize,
    /// The transformation.
    pub kind: Augmentation,
}

impl GeneratedSample {
    /// The name the sample gets in list files and LMDB keys:
    /// `augmented/<id>_<kind>/<source path>`, which records where it came from.
    pub fn name(&self, source_path: &str) -> String {
        format!(
            "augmented/{:06}_{}/{source_path}",
            self.id,
            self.kind.name()
        )
    }

    /// Applies the transformation to the source's (resized) record.
    pub fn apply(&self, source: &ChwImage, seed: u64) -> ChwImage {
        match self.kind {
            Augmentation::Flip => source.flipped_horizontally(),
            Augmentation::Noise => add_gaussian_noise(
                source,
                NOISE_SIGMA,
                seed,
                streams::NOISE_BASE + self.id as u64,
            ),
        }
    }
}

/// Plans the generated samples that bring every class of `train` up to the largest class.
/// `class_of(i)` gives sample i's class; classes with no train sample cannot be filled and
/// stay empty. Within a class the sources are taken in a seeded random order, cycling; the
/// j-th use of the k-th source in that order is a flip when `j + k` is even, noise otherwise.
pub fn plan_oversampling(
    train: &[usize],
    class_of: impl Fn(usize) -> usize,
    classes: usize,
    seed: u64,
) -> Vec<GeneratedSample> {
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for &i in train {
        if let Some(m) = members.get_mut(class_of(i)) {
            m.push(i);
        }
    }
    let largest = members.iter().map(Vec::len).max().unwrap_or(0);
    let mut plan = Vec::new();
    for (class, sources) in members.iter_mut().enumerate() {
        if sources.is_empty() {
            continue;
        }
        seeded_shuffle(sources, seed, streams::OVERSAMPLE + 16 * class as u64);
        for j in 0..largest - sources.len() {
            let (round, k) = (j / sources.len(), j % sources.len());
            plan.push(GeneratedSample {
                id: plan.len(),
                source: sources[k],
                kind: if (round + k) % 2 == 0 {
                    Augmentation::Flip
                } else {
                    Augmentation::Noise
                },
            });
        }
    }
    plan
}

/// Adds `N(0, sigma²)` noise to pixels scaled to [0, 1], clips to [0, 1] and rounds back to
/// 8 bits; the noise comes from ChaCha8 stream `stream` of `seed`.
pub fn add_gaussian_noise(image: &ChwImage, sigma: f32, seed: u64, stream: u64) -> ChwImage {
    let mut rng = seeded_rng(seed, stream);
    let normal = Normal::new(0.0f32, sigma.max(0.0)).unwrap_or_else(|_| {
        Normal::new(0.0, 0.0).expect("a zero standard deviation is always valid")
    });
    let data = image
        .data
        .iter()
        .map(|&p| {
            let v = (p as f32 / 255.0 + normal.sample(&mut rng)).clamp(0.0, 1.0);
            (v * 255.0).round() as u8
        })
        .collect();
    ChwImage { data, ..*image }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_is_filled_to_the_largest_with_alternating_kinds() {
        // Classes 0, 1, 2 with 10, 3, 1 train samples; class 3 has none.
        let class_of = |i: usize| match i {
            0..10 => 0,
            10..13 => 1,
            _ => 2,
        };
        let train: Vec<usize> = (0..14).collect();
        let plan = plan_oversampling(&train, class_of, 4, 230);
        let per_class = |c| plan.iter().filter(|g| class_of(g.source) == c).count();
        assert_eq!([per_class(0), per_class(1), per_class(2)], [0, 7, 9]);
        assert_eq!(plan.len(), 16);
        // Class 2 has one source: its nine uses alternate flip, noise, flip, …
        let kinds: Vec<_> = plan
            .iter()
            .filter(|g| g.source == 13)
            .map(|g| g.kind)
            .collect();
        for (j, k) in kinds.iter().enumerate() {
            let want = if j % 2 == 0 {
                Augmentation::Flip
            } else {
                Augmentation::Noise
            };
            assert_eq!(*k, want);
        }
        // Class 1's three sources are each used at least twice, with both kinds.
        for s in 10..13 {
            let uses: Vec<_> = plan.iter().filter(|g| g.source == s).collect();
            assert!(uses.len() >= 2);
            assert!(uses.iter().any(|g| g.kind == Augmentation::Flip));
            assert!(uses.iter().any(|g| g.kind == Augmentation::Noise));
        }
        assert_eq!(plan, plan_oversampling(&train, class_of, 4, 230));
        assert!(plan.iter().enumerate().all(|(i, g)| g.id == i));
    }

    #[test]
    fn noise_has_sigma_one_tenth_on_unit_pixels() {
        // Mid-grey 128 is 5 σ from both clip limits, so clipping is negligible here
        // (P(|z| > 5) ≈ 6e-7). Rounding to 8 bits adds variance (1/255)²/12.
        let image = ChwImage {
            channels: 3,
            height: 100,
            width: 100,
            data: vec![128; 30_000],
        };
        let noisy = add_gaussian_noise(&image, NOISE_SIGMA, 230, 7);
        let diffs: Vec<f64> = noisy
            .data
            .iter()
            .map(|&p| (p as f64 - 128.0) / 255.0)
            .collect();
        let n = diffs.len() as f64;
        let mean = diffs.iter().sum::<f64>() / n;
        let var = diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n - 1.0);
        let expected_var = 0.01 + (1.0 / 255.0f64).powi(2) / 12.0;
        // Standard error of a sample variance: σ²·sqrt(2/(n−1)) ≈ 8.2e-5; allow 5 of them.
        assert!(
            (var - expected_var).abs() < 5.0 * 0.01 * (2.0 / (n - 1.0)).sqrt(),
            "var {var}"
        );
        // Standard error of the mean: 0.1/sqrt(n) ≈ 5.8e-4; allow 5 of them.
        assert!(mean.abs() < 5.0 * 0.1 / n.sqrt(), "mean {mean}");
        // Same seed and stream, same noise; another stream, other noise.
        assert_eq!(noisy, add_gaussian_noise(&image, NOISE_SIGMA, 230, 7));
        assert_ne!(noisy, add_gaussian_noise(&image, NOISE_SIGMA, 230, 8));
    }

    #[test]
    fn noise_is_clipped_at_black_and_white() {
        let image = ChwImage {
            channels: 1,
            height: 1,
            width: 4,
            data: vec![0, 0, 255, 255],
        };
        let many: Vec<u8> = (0..200)
            .flat_map(|s| add_gaussian_noise(&image, NOISE_SIGMA, 1, s).data)
            .collect();
        // Half of the draws push past the limits and must clip to exactly 0 or 255.
        let blacks = many.iter().step_by(4).filter(|&&p| p == 0).count();
        assert!((70..=130).contains(&blacks), "{blacks} of 200 stayed black");
    }

    #[test]
    fn generated_names_record_the_source() {
        let g = GeneratedSample {
            id: 12,
            source: 3,
            kind: Augmentation::Noise,
        };
        assert_eq!(g.name("a/b.jpg"), "augmented/000012_noise/a/b.jpg");
    }
}
