//! The reproducible train/test split.
//!
//! The samples arrive sorted by name (a directory listing's order is not portable), are
//! shuffled with a seeded ChaCha8 generator (`rand_chacha`, whose output is fixed by its
//! specification and independent of platform and word size) and cut: the train part gets
//! `round(n · train_fraction)` samples (2,747 of the 3,434 Asian faces at 0.8, the
//! original project's 2,747 / 687). `stratify` cuts every age class separately instead, so
//! both parts keep the class proportions.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// ChaCha stream numbers, so that each random decision draws from its own sequence of one
/// seed and adding a step never changes the others.
pub mod streams {
    /// The split shuffle.
    pub const SPLIT: u64 = 0;
    /// The `--limit` subset.
    pub const SUBSET: u64 = 1;
    /// The order of oversampling sources within a class.
    pub const OVERSAMPLE: u64 = 2;
    /// The final train order (originals and generated samples mixed).
    pub const TRAIN_ORDER: u64 = 3;
    /// `data lmdb --shuffle`.
    pub const LIST_SHUFFLE: u64 = 4;
    /// First stream of the per-sample noise generators (one stream per generated sample).
    pub const NOISE_BASE: u64 = 1 << 32;
}

/// A seeded generator on one stream of `seed`.
pub fn seeded_rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// Shuffles a slice in place, reproducibly for a seed and stream.
pub fn seeded_shuffle<T>(items: &mut [T], seed: u64, stream: u64) {
    items.shuffle(&mut seeded_rng(seed, stream));
}

/// Train and test indices into the (sorted) sample list, each in shuffled order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    /// Train sample indices.
    pub train: Vec<usize>,
    /// Test sample indices.
    pub test: Vec<usize>,
}

/// Splits `classes.len()` samples. `classes[i]` is sample i's class, used only when
/// `stratify` is set. `train_fraction` must lie in (0, 1).
pub fn split_samples(classes: &[usize], train_fraction: f64, seed: u64, stratify: bool) -> Split {
    let n = classes.len();
    let cut = |count: usize| ((count as f64 * train_fraction).round() as usize).min(count);
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = seeded_rng(seed, streams::SPLIT);
    if !stratify {
        order.shuffle(&mut rng);
        let test = order.split_off(cut(n));
        return Split { train: order, test };
    }
    let classes_count = classes.iter().max().map_or(0, |m| m + 1);
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for class in 0..classes_count {
        let mut members: Vec<usize> = order
            .iter()
            .copied()
            .filter(|&i| classes[i] == class)
            .collect();
        members.shuffle(&mut rng);
        let rest = members.split_off(cut(members.len()));
        train.extend(members);
        test.extend(rest);
    }
    train.shuffle(&mut rng);
    test.shuffle(&mut rng);
    Split { train, test }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_3434_faces_split_2747_687_disjoint_and_deterministic() {
        let classes: Vec<usize> = (0..3434).map(|i| i % 9).collect();
        let a = split_samples(&classes, 0.8, 230, false);
        assert_eq!((a.train.len(), a.test.len()), (2747, 687));
        let mut all: Vec<usize> = a.train.iter().chain(&a.test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..3434).collect::<Vec<_>>(), "not a partition");
        assert_eq!(a, split_samples(&classes, 0.8, 230, false));
        let b = split_samples(&classes, 0.8, 231, false);
        assert_ne!(a.train, b.train, "the seed must matter");
    }

    #[test]
    fn stratified_split_keeps_each_class_proportion() {
        // Class sizes 929, 96, 1329 (the three largest Asian age classes).
        let classes: Vec<usize> = [929usize, 96, 1329]
            .iter()
            .enumerate()
            .flat_map(|(c, &n)| std::iter::repeat_n(c, n))
            .collect();
        let s = split_samples(&classes, 0.8, 230, true);
        let count = |idx: &[usize], c: usize| idx.iter().filter(|&&i| classes[i] == c).count();
        // round(0.8·929) = 743, round(0.8·96) = 77, round(0.8·1329) = 1063.
        assert_eq!([0, 1, 2].map(|c| count(&s.train, c)), [743, 77, 1063]);
        assert_eq!([0, 1, 2].map(|c| count(&s.test, c)), [186, 19, 266]);
    }
}
