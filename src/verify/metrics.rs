//! Per-tensor error metrics in mvNCCheck's terms (errors relative to the largest reference
//! magnitude) plus classification agreement, accumulated over every input of a run.

use crate::ir::Tensor;
use serde::Serialize;

/// The share of elements counted as outliers: off by more than this fraction of max|ref|
/// (mvNCCheck's 2 % line).
pub const OUTLIER_FRACTION: f32 = 0.02;

/// Metrics of one blob over all inputs. Relative figures divide by `max_ref`, the largest
/// |reference| value over all inputs (0 when the reference is all zeros: then any error is
/// reported as infinite relative error).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BlobMetrics {
    /// Blob (tensor) name.
    pub name: String,
    /// Largest |candidate − reference|.
    pub max_abs: f32,
    /// Largest |reference| (not part of the JSON schema's required fields, kept for
    /// readers who want absolute bounds).
    pub max_ref: f32,
    /// `max_abs / max_ref`.
    pub max_rel: f32,
    /// Mean |candidate − reference| / max_ref.
    pub mean_rel: f32,
    /// √(mean (candidate − reference)²) / max_ref.
    pub rms_rel: f32,
    /// Share of elements off by more than 2 % of max_ref.
    pub outlier_share: f32,
    /// Share of rows (positions along axis 1, over all inputs) whose arg-max agrees; `null`
    /// for blobs with fewer than 2 classes.
    pub top1_agreement: Option<f32>,
    /// Mean |top-5(candidate) ∩ top-5(reference)| / min(5, classes); `null` as above.
    pub top5_overlap: Option<f32>,
    /// Elements compared.
    #[serde(skip)]
    pub count: usize,
    /// Why the blob could not be compared (shapes differ), if so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Accumulates one blob's differences over several runs.
#[derive(Debug, Clone, Default)]
pub struct Accumulator {
    max_abs: f32,
    max_ref: f32,
    sum_abs: f64,
    sum_sq: f64,
    /// Every |difference|, to count outliers against the final max|ref|.
    diffs: Vec<f32>,
    rows: usize,
    top1: usize,
    top5: f64,
    classes: usize,
    nan: bool,
}

fn rel(v: f64, max_ref: f32) -> f32 {
    if max_ref > 0.0 {
        (v / max_ref as f64) as f32
    } else if v == 0.0 {
        0.0
    } else {
        f32::INFINITY
    }
}

/// Indices of the `k` largest values (ties broken by the lower index), largest first.
fn top_k(v: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[b].total_cmp(&v[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

impl Accumulator {
    /// Adds one run's pair of tensors. Shapes must agree exactly.
    pub fn add(&mut self, reference: &Tensor, candidate: &Tensor) -> Result<(), String> {
        if reference.shape != candidate.shape {
            return Err(format!(
                "shape {:?} differs from the reference's {:?}",
                candidate.shape, reference.shape
            ));
        }
        for (&r, &c) in reference.data.iter().zip(&candidate.data) {
            let d = (c - r).abs();
            if d.is_nan() {
                self.nan = true;
            }
            self.max_abs = self.max_abs.max(d);
            self.max_ref = self.max_ref.max(r.abs());
            self.sum_abs += d as f64;
            self.sum_sq += (d as f64) * (d as f64);
            self.diffs.push(d);
        }
        // Classes along axis 1; every other position (batch, spatial) is a row.
        let s = &reference.shape;
        let classes = if s.len() >= 2 {
            s[1]
        } else {
            s.first().copied().unwrap_or(0)
        };
        let inner: usize = if s.len() >= 2 {
            s[2..].iter().product()
        } else {
            1
        };
        let outer: usize = if s.len() >= 2 { s[0] } else { 1 };
        self.classes = classes;
        if classes >= 2 {
            let k = classes.min(5);
            let mut rv = vec![0.0; classes];
            let mut cv = vec![0.0; classes];
            for o in 0..outer {
                for i in 0..inner {
                    for c in 0..classes {
                        let at = (o * classes + c) * inner + i;
                        rv[c] = reference.data[at];
                        cv[c] = candidate.data[at];
                    }
                    let (rt, ct) = (top_k(&rv, k), top_k(&cv, k));
                    self.rows += 1;
                    if rt[0] == ct[0] {
                        self.top1 += 1;
                    }
                    self.top5 += rt.iter().filter(|x| ct.contains(x)).count() as f64 / k as f64;
                }
            }
        }
        Ok(())
    }

    /// The metrics so far.
    pub fn finish(&self, name: &str) -> BlobMetrics {
        let n = self.diffs.len();
        let mean = if n > 0 { self.sum_abs / n as f64 } else { 0.0 };
        let rms = if n > 0 {
            (self.sum_sq / n as f64).sqrt()
        } else {
            0.0
        };
        let line = OUTLIER_FRACTION * self.max_ref;
        let outliers = self
            .diffs
            .iter()
            .filter(|&&d| d > line || d.is_nan())
            .count();
        let nan = if self.nan { f32::NAN } else { 0.0 };
        let (top1, top5) = if self.rows > 0 {
            (
                Some(self.top1 as f32 / self.rows as f32),
                Some((self.top5 / self.rows as f64) as f32),
            )
        } else {
            (None, None)
        };
        BlobMetrics {
            name: name.to_string(),
            max_abs: self.max_abs + nan,
            max_ref: self.max_ref,
            max_rel: rel(self.max_abs as f64, self.max_ref) + nan,
            mean_rel: rel(mean, self.max_ref) + nan,
            rms_rel: rel(rms, self.max_ref) + nan,
            outlier_share: if n > 0 {
                outliers as f32 / n as f32
            } else {
                0.0
            },
            top1_agreement: top1,
            top5_overlap: top5,
            count: n,
            note: None,
        }
    }
}

/// Metrics of a single pair of tensors.
pub fn compare(name: &str, reference: &Tensor, candidate: &Tensor) -> Result<BlobMetrics, String> {
    let mut a = Accumulator::default();
    a.add(reference, candidate)?;
    Ok(a.finish(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: &[usize], data: &[f32]) -> Tensor {
        Tensor::from_vec(shape, data.to_vec()).unwrap()
    }

    #[test]
    fn error_metrics_by_hand() {
        // reference [2, -4, 1, 0.5], candidate [2.1, -4, 0.9, 0.5]: diffs 0.1, 0, 0.1, 0.
        // max|ref| = 4: max_rel 0.025, mean |d| = 0.05 → 0.0125, rms = √(0.02/4) = 0.0707…
        // → 0.017677…; 2 % of 4 = 0.08, so both 0.1 diffs are outliers: share 0.5.
        let m = compare(
            "x",
            &t(&[4], &[2.0, -4.0, 1.0, 0.5]),
            &t(&[4], &[2.1, -4.0, 0.9, 0.5]),
        )
        .unwrap();
        assert!((m.max_abs - 0.1).abs() < 1e-6);
        assert_eq!(m.max_ref, 4.0);
        assert!((m.max_rel - 0.025).abs() < 1e-6);
        assert!((m.mean_rel - 0.0125).abs() < 1e-6);
        assert!((m.rms_rel - 0.017_677_67).abs() < 1e-6);
        assert_eq!(m.outlier_share, 0.5);
        // One row of 4 classes: arg-max 0 (2.0 vs 2.1) agrees; top-4 sets are equal.
        assert_eq!((m.top1_agreement, m.top5_overlap), (Some(1.0), Some(1.0)));
    }

    #[test]
    fn top1_and_top5_over_rows_and_inputs() {
        // 2 rows × 6 classes. Row 0: ref arg-max 5, cand arg-max 5; top-5 of ref = {5,4,3,2,1},
        // cand = {5,4,3,2,0}: overlap 4/5. Row 1: ref arg-max 0, cand arg-max 1; top-5 equal.
        let r = t(
            &[2, 6],
            &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 9.0, 8.0, 7.0, 6.0, 5.0, 4.0],
        );
        let c = t(
            &[2, 6],
            &[1.5, 1.0, 2.0, 3.0, 4.0, 5.0, 8.0, 9.0, 7.0, 6.0, 5.0, 4.0],
        );
        let mut a = Accumulator::default();
        a.add(&r, &c).unwrap();
        let m = a.finish("p");
        assert_eq!(m.top1_agreement, Some(0.5));
        assert!((m.top5_overlap.unwrap() - 0.9).abs() < 1e-6);
        // A second, identical input: 3 of 4 rows agree, overlap (0.8 + 1 + 1 + 1) / 4.
        a.add(&r, &r).unwrap();
        let m = a.finish("p");
        assert_eq!(m.top1_agreement, Some(0.75));
        assert!((m.top5_overlap.unwrap() - 0.95).abs() < 1e-6);
        // Spatial positions are rows too: [1, 2, 1, 2] has 2 rows of 2 classes.
        let m = compare(
            "s",
            &t(&[1, 2, 1, 2], &[1.0, 0.0, 0.0, 1.0]),
            &t(&[1, 2, 1, 2], &[1.0, 0.0, 2.0, 1.0]),
        )
        .unwrap();
        assert_eq!(m.top1_agreement, Some(0.5));
    }

    #[test]
    fn zero_reference_nan_and_shape_mismatch() {
        let z = t(&[3], &[0.0; 3]);
        let m = compare("z", &z, &z).unwrap();
        assert_eq!((m.max_rel, m.mean_rel, m.outlier_share), (0.0, 0.0, 0.0));
        let m = compare("z", &z, &t(&[3], &[0.0, 1e-3, 0.0])).unwrap();
        assert_eq!(m.max_rel, f32::INFINITY);
        let m = compare("n", &t(&[2], &[1.0, 2.0]), &t(&[2], &[f32::NAN, 2.0])).unwrap();
        assert!(m.max_abs.is_nan() && m.max_rel.is_nan());
        assert_eq!(m.outlier_share, 0.5);
        assert!(compare("s", &z, &t(&[1, 3], &[0.0; 3])).is_err());
    }
}
