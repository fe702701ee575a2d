//! The verification report: JSON for scripts (`--json`) and a table for people.

use super::metrics::BlobMetrics;
use super::tolerance::Tolerance;
use serde::Serialize;
use std::fmt;

/// One reference/candidate pair.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// `MODEL [engine]` of the reference.
    pub reference: String,
    /// `MODEL [engine]` of the candidate.
    pub candidate: String,
    /// The rule this comparison was judged by.
    pub tolerance: Tolerance,
    /// Every output within tolerance (and, for `strict`, every matched blob).
    pub pass: bool,
    /// Metrics of each net output.
    pub outputs: Vec<BlobMetrics>,
    /// Metrics of each intermediate blob both sides expose, in the reference's order.
    pub intermediates: Vec<BlobMetrics>,
    /// The first layer (in the reference's order) whose blob exceeds the error bounds.
    pub first_divergent_layer: Option<String>,
}

/// The whole run: `{"pass", "tolerance", "inputs", "comparisons": [...]}`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Every comparison passed.
    pub pass: bool,
    /// The rule applied.
    pub tolerance: Tolerance,
    /// Input batches run.
    pub inputs: usize,
    /// One entry per candidate.
    pub comparisons: Vec<Comparison>,
    /// What was not checked, and why.
    pub notes: Vec<String>,
}

fn pct(v: Option<f32>) -> String {
    v.map_or("-".into(), |v| format!("{:.1}%", 100.0 * v))
}

fn row(f: &mut fmt::Formatter<'_>, m: &BlobMetrics, ok: bool) -> fmt::Result {
    writeln!(
        f,
        "  {:<24} {:>10.3e} {:>10.3e} {:>10.3e} {:>10.3e} {:>8.3}% {:>7} {:>7}  {}",
        m.name,
        m.max_abs,
        m.max_rel,
        m.mean_rel,
        m.rms_rel,
        100.0 * m.outlier_share,
        pct(m.top1_agreement),
        pct(m.top5_overlap),
        if ok { "ok" } else { "FAIL" }
    )?;
    if let Some(n) = &m.note {
        writeln!(f, "    {n}")?;
    }
    Ok(())
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "tolerance: {:?} (bound {}), {} input batch(es)",
            self.tolerance.preset, self.tolerance.bound, self.inputs
        )?;
        for c in &self.comparisons {
            writeln!(f, "\n{}  vs  {}", c.reference, c.candidate)?;
            if c.tolerance != self.tolerance {
                writeln!(
                    f,
                    "  judged by {:?} (bound {})",
                    c.tolerance.preset, c.tolerance.bound
                )?;
            }
            writeln!(
                f,
                "  {:<24} {:>10} {:>10} {:>10} {:>10} {:>9} {:>7} {:>7}",
                "blob", "max_abs", "max_rel", "mean_rel", "rms_rel", ">2%", "top1", "top5"
            )?;
            for m in &c.outputs {
                row(f, m, c.tolerance.output_ok(m))?;
            }
            if !c.intermediates.is_empty() {
                writeln!(f, "  intermediate blobs:")?;
                for m in &c.intermediates {
                    row(f, m, c.tolerance.error_ok(m))?;
                }
            }
            match &c.first_divergent_layer {
                Some(l) => writeln!(f, "  first divergent layer: {l}")?,
                None => writeln!(f, "  no layer diverges")?,
            }
            writeln!(f, "  {}", if c.pass { "PASS" } else { "FAIL" })?;
        }
        for n in &self.notes {
            writeln!(f, "\nnote: {n}")?;
        }
        write!(f, "\n{}", if self.pass { "PASS" } else { "FAIL" })
    }
}
