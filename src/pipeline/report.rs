//! `report.json` and `report.md`: what the pipeline measured, beside the original
//! project's published accuracies. Every number comes from this run.

use super::stages::{InferRow, VerifyRow};
use crate::eval::EvalReport;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The original project's test accuracies (after about 50,000 iterations on a GPU).
pub const ORIGINAL_AGE_ACCURACY: f64 = 0.665;
/// See [`ORIGINAL_AGE_ACCURACY`].
pub const ORIGINAL_GENDER_ACCURACY: f64 = 0.852;

/// Where the images came from.
#[derive(Debug, Clone, Serialize)]
pub struct DatasetInfo {
    /// The image folder.
    pub source: String,
    /// True for the generated stand-in set (not faces).
    pub synthetic: bool,
    /// Images used after filtering (and the `--quick` subset).
    pub images: usize,
    /// Train records per net (after oversampling), test records.
    pub records: BTreeMap<String, usize>,
    /// Side of the LMDB records.
    pub record_size: usize,
    /// Side of the nets' input.
    pub input_size: usize,
    /// `infer --resize` for these nets: resize to this side, then centre-crop the input
    /// (present when they were trained on random crops).
    pub resize_to: Option<usize>,
}

/// One trained net: its schedule and how long it took.
#[derive(Debug, Clone, Serialize)]
pub struct TrainingInfo {
    /// `AgeNet` or `GenderNet`.
    pub net: String,
    /// Solver type, base lr and policy.
    pub solver: String,
    /// Iterations run.
    pub iterations: u64,
    /// Batch size.
    pub batch: usize,
    /// Training throughput, images/s.
    pub images_per_s: f64,
    /// The curves PNG, relative to OUT.
    pub curves: String,
}

/// Everything the pipeline reports (`report.json`).
#[derive(Debug, Clone, Serialize)]
pub struct PipelineReport {
    /// The data.
    pub dataset: DatasetInfo,
    /// Training of each net.
    pub training: Vec<TrainingInfo>,
    /// AgeNet on the test split.
    pub age: EvalReport,
    /// GenderNet on the test split.
    pub gender: EvalReport,
    /// Every format against the f32 Caffe model.
    pub verify: Vec<VerifyRow>,
    /// `infer` with every format on a few test images.
    pub infer: Vec<InferRow>,
    /// Wall time of each step, seconds.
    pub timings: BTreeMap<String, f64>,
    /// The original project's accuracies, for comparison.
    pub original: BTreeMap<String, f64>,
    /// Per net: the fc8 bias shift that restored the train split's class prior (empty
    /// with `--no-prior-correction`).
    pub prior_shift: BTreeMap<String, Vec<f32>>,
    /// Per net: test accuracy of the trained weights before that shift.
    pub uncorrected_accuracy: BTreeMap<String, f64>,
}

fn pct(v: f64) -> String {
    format!("{:.1} %", 100.0 * v)
}

fn confusion_table(out: &mut String, r: &EvalReport) {
    let _ = writeln!(out, "| Actual\\Predict | {} |", r.labels.join(" | "));
    let _ = writeln!(out, "|---|{}", "---|".repeat(r.labels.len()));
    for (label, row) in r.labels.iter().zip(&r.confusion) {
        let cells: Vec<String> = row.iter().map(u64::to_string).collect();
        let _ = writeln!(out, "| {label} | {} |", cells.join(" | "));
    }
}

impl PipelineReport {
    /// The Markdown report: accuracies beside the original's, confusion matrices, the
    /// verification table, the predictions of every format, the timings and the curves.
    pub fn markdown(&self) -> String {
        let mut s = String::from("# agegender pipeline report\n\n");
        let d = &self.dataset;
        if d.synthetic {
            s.push_str(
                "**SYNTHETIC DATA**: no UTKFace folder was found, so these numbers come from a \
                 generated stand-in set (not faces) and say nothing about real accuracy. Get \
                 UTKFace (non-commercial research use only) and pass `--utkface DIR`.\n\n",
            );
        }
        let _ = writeln!(s, "Data: `{}`, {} images.\n", d.source, d.images);
        s.push_str("## Accuracy on the test split\n\n| net | accuracy | correct / total | one-off | original project |\n|---|---|---|---|---|\n");
        for (name, r, original) in [
            ("AgeNet", &self.age, ORIGINAL_AGE_ACCURACY),
            ("GenderNet", &self.gender, ORIGINAL_GENDER_ACCURACY),
        ] {
            let _ = writeln!(
                s,
                "| {name} | {} | {}/{} | {} | {} |",
                pct(r.accuracy),
                r.correct,
                r.total,
                r.one_off.map_or("-".into(), pct),
                pct(original)
            );
        }
        if !self.prior_shift.is_empty() {
            s.push_str(
                "\nThe models' fc8 bias carries the train split's class prior, which \
                 oversampling had flattened: `+ ln(π_train / π_oversampled)` per class \
                 (logit adjustment; train-split counts only). Accuracy of the trained weights \
                 before that shift:",
            );
            for (name, a) in &self.uncorrected_accuracy {
                let _ = write!(s, " {name} {}", pct(*a));
            }
            s.push_str(".\n");
        }
        for (name, r) in [("AgeNet", &self.age), ("GenderNet", &self.gender)] {
            let _ = writeln!(s, "\n### {name} confusion matrix (rows actual)\n");
            confusion_table(&mut s, r);
        }
        s.push_str("\n## Training\n\n| net | solver | iterations | batch | images/s | curves |\n|---|---|---|---|---|---|\n");
        for t in &self.training {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {:.1} | ![{}]({}) |",
                t.net, t.solver, t.iterations, t.batch, t.images_per_s, t.net, t.curves
            );
        }
        s.push_str("\n## Formats verified against the f32 Caffe model\n\n| net | format | engine | preset | max error / max\\|ref\\| | top-1 agreement | result |\n|---|---|---|---|---|---|---|\n");
        for v in &self.verify {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {:.2e} | {} | {} |",
                v.net,
                v.format,
                v.engine,
                v.preset,
                v.max_rel,
                v.top1_agreement.map_or("-".into(), |a| pct(a as f64)),
                if v.pass {
                    "pass".to_string()
                } else {
                    format!(
                        "FAIL (first divergent layer: {})",
                        v.first_divergent_layer.as_deref().unwrap_or("?")
                    )
                }
            );
        }
        s.push_str("\n## `infer` with every format\n\n| net | image | truth | format | output |\n|---|---|---|---|---|\n");
        for r in &self.infer {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} |",
                r.net, r.image, r.truth, r.format, r.line
            );
        }
        s.push_str("\n## Timings\n\n| step | seconds |\n|---|---|\n");
        for (step, t) in &self.timings {
            let _ = writeln!(s, "| {step} | {t:.1} |");
        }
        s
    }
}
