//! Class names and the output lines of the original project's inference script.

use serde::Serialize;

/// The nine age buckets of the UTKFace nets, in class order (`class = min(age / 10, 8)`):
/// the data pipeline's labels, so that `infer`, `test` and `data prepare` name a class alike.
pub const AGE_LABELS: [&str; 9] = crate::data::utkface::AGE_BUCKETS;

/// The eight Adience age groups of Levi & Hassner's published AgeNet (8 outputs), in class
/// order, so that their original deploy files print readable labels too.
pub const ADIENCE_AGE_LABELS: [&str; 8] = [
    "0-2", "4-6", "8-12", "15-20", "25-32", "38-43", "48-53", "60-100",
];

/// Gender classes in label order: UTKFace and Adience both use 0 = male, 1 = female.
pub const GENDER_LABELS: [&str; 2] = ["Male", "Female"];

/// What a net predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Age bucket (AgeNet).
    Age,
    /// Gender (GenderNet).
    Gender,
}

impl Task {
    /// The word the original script starts its line with.
    pub fn title(self) -> &'static str {
        match self {
            Task::Age => "Age",
            Task::Gender => "Gender",
        }
    }

    /// Lower-case name for CSV columns and JSON keys.
    pub fn key(self) -> &'static str {
        match self {
            Task::Age => "age",
            Task::Gender => "gender",
        }
    }

    /// Class names for a net of this task with `classes` outputs: the UTKFace buckets (9)
    /// or Adience groups (8) for age, Male/Female (2) for gender, else the class ids.
    pub fn labels(self, classes: usize) -> Vec<String> {
        let known: &[&str] = match (self, classes) {
            (Task::Age, 9) => &AGE_LABELS,
            (Task::Age, 8) => &ADIENCE_AGE_LABELS,
            (Task::Gender, 2) => &GENDER_LABELS,
            _ => &[],
        };
        if known.is_empty() {
            (0..classes).map(|i| i.to_string()).collect()
        } else {
            known.iter().map(|s| s.to_string()).collect()
        }
    }
}

/// One class and its probability.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassScore {
    /// Class id (the net's output index).
    pub class: usize,
    /// Class name.
    pub label: String,
    /// Softmax probability, 0..1.
    pub probability: f32,
}

/// A net's answer for one image: the best class and the `k` best (best first).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskPrediction {
    /// The arg-max class.
    pub best: ClassScore,
    /// The top-k classes, best first (the best class included).
    pub top: Vec<ClassScore>,
    /// All class probabilities, in class order.
    pub probabilities: Vec<f32>,
}

impl TaskPrediction {
    /// Ranks a probability row. Ties go to the lower class id, as `argmax` does.
    pub fn from_probabilities(task: Task, probabilities: Vec<f32>, k: usize) -> Self {
        let labels = task.labels(probabilities.len());
        let ranked = crate::cli::common::top_k(&probabilities, k.max(1));
        let score = |(class, probability): (usize, f32)| ClassScore {
            class,
            label: labels[class].clone(),
            probability,
        };
        let top: Vec<ClassScore> = ranked.into_iter().map(score).collect();
        Self {
            best: top[0].clone(),
            top,
            probabilities,
        }
    }

    /// The original project's line: `Age predicted: 20-29, 87.12%`.
    pub fn line(&self, task: Task) -> String {
        format!(
            "{} predicted: {}, {}",
            task.title(),
            self.best.label,
            percent(self.best.probability)
        )
    }

    /// The top-k line printed under it with `--top K`:
    /// `  top-3 age: 20-29 87.12%, 30-39 8.01%, 10-19 2.00%`.
    pub fn top_line(&self, task: Task) -> String {
        let items: Vec<String> = self
            .top
            .iter()
            .map(|s| format!("{} {}", s.label, percent(s.probability)))
            .collect();
        format!(
            "  top-{} {}: {}",
            self.top.len(),
            task.key(),
            items.join(", ")
        )
    }
}

/// A probability as the original printed it: percent with two decimals.
pub fn percent(p: f32) -> String {
    format!("{:.2}%", p as f64 * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_match_the_original_script() {
        let mut probs = vec![0.0f32; 9];
        probs[2] = 0.8712;
        probs[3] = 0.1;
        probs[1] = 0.0288;
        let p = TaskPrediction::from_probabilities(Task::Age, probs, 2);
        assert_eq!(p.line(Task::Age), "Age predicted: 20-29, 87.12%");
        assert_eq!(
            p.top_line(Task::Age),
            "  top-2 age: 20-29 87.12%, 30-39 10.00%"
        );
        let g = TaskPrediction::from_probabilities(Task::Gender, vec![0.066, 0.934], 1);
        assert_eq!(g.line(Task::Gender), "Gender predicted: Female, 93.40%");
        assert_eq!(g.best.class, 1);
    }

    #[test]
    fn labels_cover_utkface_adience_and_unknown_heads() {
        assert_eq!(Task::Age.labels(9)[8], "80-120");
        assert_eq!(Task::Age.labels(8)[7], "60-100");
        assert_eq!(Task::Gender.labels(2), ["Male", "Female"]);
        assert_eq!(Task::Gender.labels(3), ["0", "1", "2"]);
    }
}
