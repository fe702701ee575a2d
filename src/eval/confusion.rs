//! The confusion matrix, its metrics, the text layout and the JSON form.

use super::ClassNames;
use serde::Serialize;
use std::fmt;

/// A label or prediction outside the class range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// The class id does not exist.
    #[error("{what} {value} is outside the {classes} classes (0..{classes})")]
    ClassOutOfRange {
        /// "label" or "prediction".
        what: &'static str,
        /// The offending id.
        value: i64,
        /// Number of classes.
        classes: usize,
    },
}

/// Counts of (actual, predicted) pairs: `counts[actual][predicted]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfusionMatrix {
    classes: ClassNames,
    counts: Vec<Vec<u64>>,
}

/// Recall and precision of one class. `None` where the denominator is 0.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassMetrics {
    /// Class name.
    pub label: String,
    /// Samples whose actual class this is.
    pub support: u64,
    /// Correct / actual (the row).
    pub recall: Option<f64>,
    /// Correct / predicted (the column).
    pub precision: Option<f64>,
}

/// Everything `test --json` prints and the pipeline's report stores.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalReport {
    /// correct / total (0 when empty).
    pub accuracy: f64,
    /// Samples on the diagonal.
    pub correct: u64,
    /// All samples.
    pub total: u64,
    /// Class names, the order of `confusion`'s rows and columns.
    pub labels: Vec<String>,
    /// `confusion[actual][predicted]`.
    pub confusion: Vec<Vec<u64>>,
    /// Per class.
    pub per_class: Vec<ClassMetrics>,
    /// Share predicted within one class of the truth (ordinal classes only).
    pub one_off: Option<f64>,
    /// Count behind `one_off`.
    pub one_off_correct: Option<u64>,
}

impl ConfusionMatrix {
    /// An empty matrix over these classes.
    pub fn new(classes: ClassNames) -> Self {
        let n = classes.names.len();
        Self {
            classes,
            counts: vec![vec![0; n]; n],
        }
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.counts.len()
    }

    fn index(&self, what: &'static str, v: i64) -> Result<usize, EvalError> {
        usize::try_from(v)
            .ok()
            .filter(|&i| i < self.classes())
            .ok_or(EvalError::ClassOutOfRange {
                what,
                value: v,
                classes: self.classes(),
            })
    }

    /// Records one sample. Labels come from data files, so they are checked.
    pub fn add(&mut self, actual: i64, predicted: i64) -> Result<(), EvalError> {
        let a = self.index("label", actual)?;
        let p = self.index("prediction", predicted)?;
        self.counts[a][p] += 1;
        Ok(())
    }

    /// The count of samples of class `actual` predicted as `predicted` (0 out of range).
    pub fn count(&self, actual: usize, predicted: usize) -> u64 {
        self.counts
            .get(actual)
            .and_then(|r| r.get(predicted))
            .copied()
            .unwrap_or(0)
    }

    /// All samples.
    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    /// Samples on the diagonal.
    pub fn correct(&self) -> u64 {
        (0..self.classes()).map(|i| self.counts[i][i]).sum()
    }

    /// correct / total, 0 for an empty matrix.
    pub fn accuracy(&self) -> f64 {
        ratio(self.correct(), self.total()).unwrap_or(0.0)
    }

    /// Samples whose prediction is at most one class away from the truth.
    pub fn one_off_correct(&self) -> u64 {
        let n = self.classes();
        (0..n)
            .flat_map(|a| (a.saturating_sub(1)..(a + 2).min(n)).map(move |p| (a, p)))
            .map(|(a, p)| self.counts[a][p])
            .sum()
    }

    /// Recall and precision per class.
    pub fn per_class(&self) -> Vec<ClassMetrics> {
        (0..self.classes())
            .map(|i| {
                let support: u64 = self.counts[i].iter().sum();
                let predicted: u64 = self.counts.iter().map(|r| r[i]).sum();
                ClassMetrics {
                    label: self.classes.names[i].clone(),
                    support,
                    recall: ratio(self.counts[i][i], support),
                    precision: ratio(self.counts[i][i], predicted),
                }
            })
            .collect()
    }

    /// The JSON-ready summary.
    pub fn report(&self) -> EvalReport {
        let one_off_correct = self.classes.ordinal.then(|| self.one_off_correct());
        EvalReport {
            accuracy: self.accuracy(),
            correct: self.correct(),
            total: self.total(),
            labels: self.classes.names.clone(),
            confusion: self.counts.clone(),
            per_class: self.per_class(),
            one_off: one_off_correct.map(|c| ratio(c, self.total()).unwrap_or(0.0)),
            one_off_correct,
        }
    }
}

fn ratio(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

fn percent(v: Option<f64>) -> String {
    v.map(|v| format!("{:.1}%", 100.0 * v))
        .unwrap_or_else(|| "-".into())
}

const CORNER: &str = "Actual\\Predict";

impl fmt::Display for ConfusionMatrix {
    /// The original's layout: the accuracy line, then the matrix (rows actual, columns
    /// predicted), then per-class recall/precision and, for age, one-off accuracy.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = &self.classes.names;
        writeln!(
            f,
            "Accuracy: {}, {}/{} corrects",
            percent(Some(self.accuracy())),
            self.correct(),
            self.total()
        )?;
        let first = names
            .iter()
            .map(String::len)
            .chain([CORNER.len()])
            .max()
            .unwrap_or(0);
        let widths: Vec<usize> = (0..self.classes())
            .map(|p| {
                let digits = (0..self.classes())
                    .map(|a| self.counts[a][p].to_string().len())
                    .max()
                    .unwrap_or(1);
                names[p].len().max(digits)
            })
            .collect();
        write!(f, "{CORNER:<first$}")?;
        for (name, w) in names.iter().zip(&widths) {
            write!(f, "  {name:>w$}")?;
        }
        writeln!(f)?;
        for (a, row) in self.counts.iter().enumerate() {
            write!(f, "{:<first$}", names[a])?;
            for (c, w) in row.iter().zip(&widths) {
                write!(f, "  {c:>w$}")?;
            }
            writeln!(f)?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "{:<first$}  {:>7}  {:>9}  {:>7}",
            "class", "recall", "precision", "support"
        )?;
        for m in self.per_class() {
            writeln!(
                f,
                "{:<first$}  {:>7}  {:>9}  {:>7}",
                m.label,
                percent(m.recall),
                percent(m.precision),
                m.support
            )?;
        }
        if self.classes.ordinal {
            let c = self.one_off_correct();
            writeln!(
                f,
                "One-off accuracy: {}, {}/{} within one class",
                percent(ratio(c, self.total()).or(Some(0.0))),
                c,
                self.total()
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gender matrix: 10 male (8 right), 5 female (3 right).
    fn gender() -> ConfusionMatrix {
        let mut m = ConfusionMatrix::new(ClassNames::gender());
        for (a, p, n) in [(0, 0, 8), (0, 1, 2), (1, 0, 2), (1, 1, 3)] {
            for _ in 0..n {
                m.add(a, p).unwrap();
            }
        }
        m
    }

    #[test]
    fn text_layout_matches_the_original_projects() {
        let text = gender().to_string();
        let want = "\
Accuracy: 73.3%, 11/15 corrects
Actual\\Predict  Male  Female
Male               8       2
Female             2       3

class            recall  precision  support
Male              80.0%      80.0%       10
Female            60.0%      60.0%        5
";
        assert_eq!(text, want);
    }

    #[test]
    fn the_issue_example_prints_66_5_percent() {
        // 457 of 687 on the diagonal, as in the original project's AgeNet result.
        let mut m = ConfusionMatrix::new(ClassNames::age());
        for i in 0..687 {
            let a = i % 9;
            let p = if i < 457 { a } else { (a + 1) % 9 };
            m.add(a as i64, p as i64).unwrap();
        }
        assert!(m
            .to_string()
            .starts_with("Accuracy: 66.5%, 457/687 corrects\nActual\\Predict"));
    }

    #[test]
    fn metrics_and_one_off_are_hand_computed() {
        let mut m = ConfusionMatrix::new(ClassNames::age());
        // actual 0 → 0, 1, 2; actual 8 → 8, 7; actual 4 → nothing predicted as 4.
        for (a, p) in [(0, 0), (0, 1), (0, 2), (8, 8), (8, 7), (4, 3)] {
            m.add(a, p).unwrap();
        }
        let r = m.report();
        assert_eq!((r.correct, r.total), (2, 6));
        // One-off: (0,0) (0,1) (8,8) (8,7) (4,3) = 5 of 6; (0,2) is two buckets away.
        assert_eq!(r.one_off_correct, Some(5));
        assert!((r.one_off.unwrap() - 5.0 / 6.0).abs() < 1e-12);
        assert_eq!(r.per_class[0].recall, Some(1.0 / 3.0));
        assert_eq!(r.per_class[0].precision, Some(1.0));
        assert_eq!(r.per_class[4].recall, Some(0.0));
        assert_eq!(r.per_class[4].precision, None);
        assert_eq!(r.per_class[5].recall, None);
        assert_eq!(r.confusion[0], vec![1, 1, 1, 0, 0, 0, 0, 0, 0]);
        let text = m.to_string();
        assert!(
            text.contains("One-off accuracy: 83.3%, 5/6 within one class"),
            "{text}"
        );
        assert!(text.contains("80-120"), "{text}");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["correct"], 2);
        assert_eq!(json["per_class"][4]["precision"], serde_json::Value::Null);
        assert_eq!(json["labels"][8], "80-120");
    }

    #[test]
    fn gender_has_no_one_off_and_out_of_range_ids_are_errors() {
        let r = gender().report();
        assert_eq!(r.one_off, None);
        let mut m = gender();
        assert_eq!(
            m.add(2, 0).unwrap_err().to_string(),
            "label 2 is outside the 2 classes (0..2)"
        );
        assert!(m.add(0, -1).is_err());
        assert_eq!(m.total(), 15);
        let empty = ConfusionMatrix::new(ClassNames::for_class_count(3));
        assert_eq!(empty.accuracy(), 0.0);
        assert!(empty
            .to_string()
            .starts_with("Accuracy: 0.0%, 0/0 corrects"));
    }
}
