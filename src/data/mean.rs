//! The mean image of an LMDB, as Caffe's `compute_image_mean` computes it.
//!
//! Caffe sums every record element-wise into a float blob (`sum += (uint8) data[i]`, or the
//! `float_data` values), divides by the record count, and stores a legacy 1×C×H×W
//! `BlobProto`. The sum is kept in f32 exactly as Caffe does (exact for integer pixels up to
//! 65,793 records), so the result is bit-identical to Caffe's.

use super::DataError;
use crate::caffe::binaryproto::write_binaryproto;
use crate::io::datum::datum_shape;
use crate::io::lmdb::LmdbReader;
use crate::io::npy::write_npy;
use crate::ir::Tensor;
use crate::proto::caffe::Datum;
use std::path::Path;

/// Accumulates records into Caffe's per-element sum.
#[derive(Clone, Debug, Default)]
pub struct MeanAccumulator {
    shape: Option<[usize; 3]>,
    sum: Vec<f32>,
    count: usize,
}

/// A mean image with its record count.
#[derive(Clone, Debug, PartialEq)]
pub struct MeanImage {
    /// The mean, `[1, C, H, W]` (Caffe's legacy blob layout).
    pub mean: Tensor,
    /// Records averaged.
    pub count: usize,
}

impl MeanImage {
    /// Mean of each channel plane (B, G, R for Caffe images), computed as
    /// `compute_image_mean` logs it: the plane's sum accumulated in f32, then divided by
    /// the plane size, so the printed values match Caffe's log digit for digit.
    pub fn channel_means(&self) -> Vec<f64> {
        let c = self.mean.shape.get(1).copied().unwrap_or(0);
        let plane = self.mean.data.len() / c.max(1);
        self.mean
            .data
            .chunks_exact(plane.max(1))
            .map(|p| (p.iter().sum::<f32>() / plane as f32) as f64)
            .collect()
    }

    /// Writes the mean as a `.binaryproto` (legacy 1×C×H×W) or, for a `.npy` path, as a
    /// float32 C×H×W array.
    pub fn save(&self, path: &Path) -> Result<(), DataError> {
        let is_npy = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
        if is_npy {
            let mut chw = self.mean.clone();
            if chw.shape.len() == 4 && chw.shape[0] == 1 {
                chw.shape.remove(0);
            }
            write_npy(path, &chw)?;
        } else {
            write_binaryproto(path, &self.mean)?;
        }
        Ok(())
    }
}

impl MeanAccumulator {
    /// Adds one record; every record must have the first record's shape.
    pub fn add(&mut self, datum: &Datum) -> Result<(), String> {
        let shape = datum_shape(datum).map_err(|e| e.to_string())?;
        match self.shape {
            None => {
                self.shape = Some(shape);
                self.sum = vec![0.0; shape.iter().product()];
            }
            Some(s) if s != shape => {
                return Err(format!(
                    "record is {}×{}×{} but the first record was {}×{}×{}",
                    shape[0], shape[1], shape[2], s[0], s[1], s[2]
                ))
            }
            Some(_) => {}
        }
        if datum.data().is_empty() {
            for (s, &v) in self.sum.iter_mut().zip(&datum.float_data) {
                *s += v;
            }
        } else {
            for (s, &v) in self.sum.iter_mut().zip(datum.data()) {
                *s += v as f32;
            }
        }
        self.count += 1;
        Ok(())
    }

    /// Records added so far.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The mean (`sum / count` in f32, as Caffe divides), or `None` with no record.
    pub fn finish(self) -> Option<MeanImage> {
        let [c, h, w] = self.shape?;
        let n = self.count as f32;
        let data = self.sum.iter().map(|&s| s / n).collect();
        Some(MeanImage {
            mean: Tensor {
                shape: vec![1, c, h, w],
                data,
            },
            count: self.count,
        })
    }
}

/// `compute_image_mean` on an LMDB: the mean of all its records.
pub fn compute_image_mean(lmdb: &Path) -> Result<MeanImage, DataError> {
    let reader = LmdbReader::open(lmdb)?;
    let mut cursor = reader.cursor()?;
    let mut acc = MeanAccumulator::default();
    while let Some((record, datum)) = cursor.next_datum()? {
        acc.add(&datum).map_err(|reason| DataError::Record {
            path: lmdb.to_path_buf(),
            key: record.key_str(),
            reason,
        })?;
    }
    acc.finish().ok_or_else(|| DataError::Empty {
        path: lmdb.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caffe::binaryproto::read_binaryproto;
    use crate::testutil::shared;

    #[test]
    fn mean_of_caffes_lmdb_is_bit_identical_to_caffes_mean() {
        let (Some(db), Some(golden)) = (
            shared("fixtures-real/caffe-oracle/utkface24_lmdb"),
            shared("fixtures-real/caffe-oracle/mean.binaryproto"),
        ) else {
            return;
        };
        let mean = compute_image_mean(&db).unwrap();
        assert_eq!(mean.count, 24);
        let want = read_binaryproto(&golden).unwrap();
        assert_eq!(mean.mean.shape, want.shape);
        assert!(mean.mean.data == want.data, "mean differs from Caffe's");
        // compute_image_mean.log prints 111.872, 133.012, 167.704 (6 significant digits).
        let printed: Vec<String> = mean
            .channel_means()
            .iter()
            .map(|m| format!("{m:.3}"))
            .collect();
        assert_eq!(printed, ["111.872", "133.012", "167.704"]);
        let dir = tempfile::tempdir().unwrap();
        let bp = dir.path().join("m.binaryproto");
        mean.save(&bp).unwrap();
        assert_eq!(std::fs::read(&bp).unwrap(), std::fs::read(&golden).unwrap());
        let npy = dir.path().join("m.npy");
        mean.save(&npy).unwrap();
        let back = crate::io::npy::read_npy_expect(&npy, &[3, 227, 227]).unwrap();
        assert!(back.data == want.data);
    }

    #[test]
    fn records_of_different_sizes_are_refused() {
        let d = |h: i32| Datum {
            channels: Some(1),
            height: Some(h),
            width: Some(1),
            data: Some(vec![9; h as usize]),
            ..Default::default()
        };
        let mut acc = MeanAccumulator::default();
        acc.add(&d(2)).unwrap();
        acc.add(&d(2)).unwrap();
        assert!(acc.add(&d(3)).unwrap_err().contains("1×3×1"));
        let m = acc.finish().unwrap();
        assert_eq!((m.count, m.mean.data.clone()), (2, vec![9.0, 9.0]));
        assert!(MeanAccumulator::default().finish().is_none());
    }
}
