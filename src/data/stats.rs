//! Class counts and the tables the original project printed: images per age class and per
//! gender, for the whole set, the train part before and after oversampling, and the test
//! part.

use super::utkface::{FaceLabels, AGE_BUCKETS, GENDERS};
use serde::Serialize;
use std::fmt::Write;

/// Image counts per age class and per gender.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ClassCounts {
    /// Images per age class (index = class id, see `AGE_BUCKETS`).
    pub age: [usize; 9],
    /// Images per gender (0 male, 1 female).
    pub gender: [usize; 2],
    /// All images.
    pub total: usize,
}

impl ClassCounts {
    /// Counts a set of labels.
    pub fn of<'a>(labels: impl IntoIterator<Item = &'a FaceLabels>) -> Self {
        let mut c = ClassCounts::default();
        for l in labels {
            c.age[l.age_bucket()] += 1;
            c.gender[(l.gender as usize).min(1)] += 1;
            c.total += 1;
        }
        c
    }
}

/// Formats one table: a row per class, a column per named count set, and a total row.
fn table(title: &str, rows: &[&str], columns: &[(&str, Vec<usize>)]) -> String {
    let mut out = format!("{title}\n");
    let first = rows.iter().map(|r| r.len()).max().unwrap_or(0).max(5);
    let widths: Vec<usize> = columns.iter().map(|(n, _)| n.len().max(6)).collect();
    let _ = write!(out, "{:<first$}", "class");
    for ((name, _), w) in columns.iter().zip(&widths) {
        let _ = write!(out, "  {name:>w$}");
    }
    out.push('\n');
    let mut line = |label: &str, value: &dyn Fn(&Vec<usize>) -> usize| {
        let _ = write!(out, "{label:<first$}");
        for ((_, counts), w) in columns.iter().zip(&widths) {
            let _ = write!(out, "  {:>w$}", value(counts));
        }
        out.push('\n');
    };
    for (i, r) in rows.iter().enumerate() {
        line(r, &|c| c.get(i).copied().unwrap_or(0));
    }
    line("total", &|c| c.iter().sum());
    out
}

/// The two tables (age classes, genders) for named count sets, e.g. `all`, `train`,
/// `train oversampled`, `test`.
pub fn format_tables(sets: &[(&str, &ClassCounts)]) -> String {
    let age: Vec<(&str, Vec<usize>)> = sets.iter().map(|(n, c)| (*n, c.age.to_vec())).collect();
    let gender: Vec<(&str, Vec<usize>)> =
        sets.iter().map(|(n, c)| (*n, c.gender.to_vec())).collect();
    format!(
        "{}\n{}",
        table("Images per age class", &AGE_BUCKETS, &age),
        table("Images per gender", &GENDERS, &gender)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_tables_follow_the_labels() {
        let labels = [
            FaceLabels {
                age: 5,
                gender: 0,
                race: 2,
            },
            FaceLabels {
                age: 85,
                gender: 1,
                race: 2,
            },
            FaceLabels {
                age: 9,
                gender: 1,
                race: 2,
            },
        ];
        let c = ClassCounts::of(&labels);
        assert_eq!(c.age, [2, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!((c.gender, c.total), ([1, 2], 3));
        let text = format_tables(&[("all", &c)]);
        // Class names padded to 6, two spaces, counts right-aligned in 6.
        for row in [
            "0-9          2",
            "80-120       1",
            "female       2",
            "total        3",
        ] {
            assert!(text.lines().any(|l| l == row), "{row:?} missing in\n{text}");
        }
    }
}
