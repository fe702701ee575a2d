//! Pass/fail rules. `strict` is the golden-test rule of this project; `mvncheck` is Intel's
//! mvNCCheck rule for NCS results (errors relative to the largest reference magnitude).

use super::metrics::BlobMetrics;
use serde::Serialize;

/// A named set of thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// `max_abs ≤ T · max(1, max|ref|)` (T = 1e-4) on every output and every matched
    /// intermediate blob, and top-1 agreement of 100 % on every net output with at least
    /// two classes: the rule for checking a conversion.
    Strict,
    /// mvNCCheck: max error ≤ T (2 %), mean error ≤ T/2, RMS (L2) error ≤ T/2, all relative
    /// to max|ref|, so no element is off by more than T; judged on the outputs only
    /// (intermediate blobs still locate the first divergent layer).
    Mvncheck,
}

/// A preset with its bound T.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Tolerance {
    /// The rule.
    pub preset: Preset,
    /// Its bound (see [`Preset`]).
    pub bound: f32,
}

impl Tolerance {
    /// A preset with its default bound, or `bound` when given (`--tolerance`).
    pub fn new(preset: Preset, bound: Option<f32>) -> Self {
        let default = match preset {
            Preset::Strict => 1e-4,
            Preset::Mvncheck => 0.02,
        };
        Self {
            preset,
            bound: bound.unwrap_or(default),
        }
    }

    /// Whether a blob's error is within bounds (NaN never is).
    pub fn error_ok(&self, m: &BlobMetrics) -> bool {
        let t = self.bound;
        match self.preset {
            Preset::Strict => m.max_abs <= t * m.max_ref.max(1.0),
            Preset::Mvncheck => m.max_rel <= t && m.mean_rel <= t / 2.0 && m.rms_rel <= t / 2.0,
        }
    }

    /// Whether a net output passes: the error bounds, and for `strict` a top-1 agreement of
    /// 100 % when the output has classes.
    pub fn output_ok(&self, m: &BlobMetrics) -> bool {
        self.error_ok(m)
            && (self.preset != Preset::Strict || m.top1_agreement.is_none_or(|a| a == 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(
        max_abs: f32,
        max_ref: f32,
        mean_abs: f32,
        rms_abs: f32,
        top1: Option<f32>,
    ) -> BlobMetrics {
        BlobMetrics {
            name: "x".into(),
            max_abs,
            max_ref,
            max_rel: max_abs / max_ref,
            mean_rel: mean_abs / max_ref,
            rms_rel: rms_abs / max_ref,
            outlier_share: 0.0,
            top1_agreement: top1,
            top5_overlap: top1,
            count: 1,
            note: None,
        }
    }

    #[test]
    fn strict_is_relative_above_one_and_absolute_below() {
        let s = Tolerance::new(Preset::Strict, None);
        // max|ref| 500: 0.04 ≤ 1e-4·500 = 0.05 passes, 0.06 does not.
        assert!(s.error_ok(&m(0.04, 500.0, 0.0, 0.0, None)));
        assert!(!s.error_ok(&m(0.06, 500.0, 0.0, 0.0, None)));
        // max|ref| 0.2: the bound is 1e-4 absolute.
        assert!(s.error_ok(&m(9e-5, 0.2, 0.0, 0.0, None)));
        assert!(!s.error_ok(&m(1.1e-4, 0.2, 0.0, 0.0, None)));
        // Outputs also need every arg-max to agree.
        assert!(!s.output_ok(&m(0.0, 1.0, 0.0, 0.0, Some(0.9))));
        assert!(s.output_ok(&m(0.0, 1.0, 0.0, 0.0, Some(1.0))));
        assert!(!s.error_ok(&m(f32::NAN, 1.0, 0.0, 0.0, None)));
    }

    #[test]
    fn mvncheck_thresholds() {
        let t = Tolerance::new(Preset::Mvncheck, None);
        // max 1.9 %, mean 0.9 %, rms 0.95 %: passes; mean 1.1 %: fails; max 2.1 %: fails.
        assert!(t.output_ok(&m(1.9, 100.0, 0.9, 0.95, Some(0.5))));
        assert!(!t.output_ok(&m(1.9, 100.0, 1.1, 0.95, None)));
        assert!(!t.output_ok(&m(2.1, 100.0, 0.9, 0.95, None)));
        assert!(!t.output_ok(&m(1.0, 100.0, 0.5, 1.2, None)));
        // --tolerance 0.1 scales the bounds: max 10 %, mean and RMS 5 %.
        let loose = Tolerance::new(Preset::Mvncheck, Some(0.1));
        assert!(loose.output_ok(&m(9.0, 100.0, 4.0, 4.9, None)));
    }
}
