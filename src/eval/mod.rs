//! Evaluation of a classifier on a labelled set: accuracy and the confusion matrix in the
//! original project's layout (`Accuracy: 66.5%, 457/687 corrects`, then a matrix whose
//! header row starts with `Actual\Predict`, rows = actual class, columns = predicted), plus
//! per-class recall and precision and, for the ordinal age buckets, one-off accuracy.

mod confusion;
pub mod lmdb;

pub use confusion::{ClassMetrics, ConfusionMatrix, EvalError, EvalReport};
pub use lmdb::{evaluate_lmdb, LmdbEval};

/// The age buckets the data pipeline labels with (`id = min(age / 10, 8)`), in class order.
pub use crate::data::utkface::AGE_BUCKETS;

/// The gender classes in label order (UTKFace: 0 male, 1 female).
pub const GENDERS: [&str; 2] = ["Male", "Female"];

/// Class names and whether neighbouring classes are adjacent on a scale (which makes
/// one-off accuracy meaningful).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassNames {
    /// One name per class id.
    pub names: Vec<String>,
    /// True for ordered buckets (age).
    pub ordinal: bool,
}

impl ClassNames {
    /// The nine age buckets (ordinal).
    pub fn age() -> Self {
        Self {
            names: AGE_BUCKETS.iter().map(|s| s.to_string()).collect(),
            ordinal: true,
        }
    }

    /// Male / Female.
    pub fn gender() -> Self {
        Self {
            names: GENDERS.iter().map(|s| s.to_string()).collect(),
            ordinal: false,
        }
    }

    /// Names for a net with `n` outputs: the age buckets for 9, genders for 2, otherwise
    /// the class ids `0 … n−1` (not ordinal).
    pub fn for_class_count(n: usize) -> Self {
        match n {
            9 => Self::age(),
            2 => Self::gender(),
            _ => Self {
                names: (0..n).map(|i| i.to_string()).collect(),
                ordinal: false,
            },
        }
    }
}
