//! Caffe's `DataTransformer::Transform(const Datum&, Blob*)`: crop (random offsets in TRAIN,
//! centred in TEST), mirror (random in TRAIN when `mirror` is set), then
//! `(pixel − mean) · scale` with the mean taken from a mean file at the *uncropped* pixel
//! position, or per channel from `mean_value`.
//!
//! The random draws come in Caffe's order (mirror coin, then the row offset, then the column
//! offset) from a seeded generator, so a run is reproducible; they cannot equal Caffe's own
//! Boost Mersenne-Twister draws, which only matters for crop or mirror in TRAIN.

use crate::ir::{Phase, Tensor};
use crate::ops::data::TransformParams;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A record's pixels: uint8 `data` or `float_data`, C×H×W.
#[derive(Debug, Clone, Copy)]
pub enum Pixels<'a> {
    /// Raw bytes (convert_imageset's form).
    U8(&'a [u8]),
    /// Floats.
    F32(&'a [f32]),
}

impl Pixels<'_> {
    fn len(&self) -> usize {
        match self {
            Pixels::U8(d) => d.len(),
            Pixels::F32(d) => d.len(),
        }
    }

    fn get(&self, i: usize) -> f32 {
        match self {
            Pixels::U8(d) => f32::from(d[i]),
            Pixels::F32(d) => d[i],
        }
    }
}

/// A transform that cannot run: each names what does not fit.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TransformError {
    /// Caffe refuses `mean_file` together with `mean_value`.
    #[error("transform_param: mean_file and mean_value cannot both be given")]
    BothMeans,
    /// The mean image's shape differs from the record's.
    #[error("the mean has shape {mean:?} but the record is {record:?} (C, H, W); Caffe needs them equal")]
    MeanShape {
        /// Mean shape.
        mean: Vec<usize>,
        /// Record C, H, W.
        record: [usize; 3],
    },
    /// `mean_value` must have one value or one per channel.
    #[error("{given} mean_value(s) for {channels} channels; give one, or one per channel")]
    MeanValues {
        /// Values given.
        given: usize,
        /// Record channels.
        channels: usize,
    },
    /// The crop is larger than the record.
    #[error("crop_size {crop} exceeds the record's {height}x{width}")]
    Crop {
        /// `crop_size`.
        crop: usize,
        /// Record height.
        height: usize,
        /// Record width.
        width: usize,
    },
    /// The record's pixel count differs from its C×H×W.
    #[error("record claims {claimed:?} (C, H, W) but holds {found} values")]
    Size {
        /// C, H, W.
        claimed: [usize; 3],
        /// Values present.
        found: usize,
    },
}

/// The transformer of one Data layer.
pub struct Transformer {
    params: TransformParams,
    mean: Option<Tensor>,
    phase: Phase,
    rng: StdRng,
}

impl Transformer {
    /// Sets up a transformer; `mean` is the already-read `mean_file` (C×H×W or 1×C×H×W).
    pub fn new(
        params: TransformParams,
        mean: Option<Tensor>,
        phase: Phase,
        seed: u64,
    ) -> Result<Self, TransformError> {
        if mean.is_some() && !params.mean_value.is_empty() {
            return Err(TransformError::BothMeans);
        }
        Ok(Self {
            params,
            mean,
            phase,
            rng: StdRng::seed_from_u64(seed),
        })
    }

    /// Restarts the random draws from `seed` (the trainer reseeds per batch so that a
    /// resumed run draws the same crops and mirrors as an uninterrupted one).
    pub fn reseed(&mut self, seed: u64) {
        self.rng = StdRng::seed_from_u64(seed);
    }

    /// Output (C, H, W) for a record of (C, H, W).
    pub fn output_shape(&self, record: [usize; 3]) -> [usize; 3] {
        let k = self.params.crop_size;
        if k > 0 {
            [record[0], k, k]
        } else {
            record
        }
    }

    /// Transforms one record of shape `[c, h, w]` into `out` (C×H'×W' values).
    pub fn apply(
        &mut self,
        [c, h, w]: [usize; 3],
        pixels: Pixels<'_>,
        out: &mut [f32],
    ) -> Result<(), TransformError> {
        if pixels.len() != c * h * w {
            return Err(TransformError::Size {
                claimed: [c, h, w],
                found: pixels.len(),
            });
        }
        let mean = match &self.mean {
            Some(m) => {
                let dims: Vec<usize> = m.shape.iter().copied().skip_while(|&d| d == 1).collect();
                let squeezed: Vec<usize> =
                    [c, h, w].iter().copied().skip_while(|&d| d == 1).collect();
                if m.len() != c * h * w || dims != squeezed {
                    return Err(TransformError::MeanShape {
                        mean: m.shape.clone(),
                        record: [c, h, w],
                    });
                }
                Some(m.data.as_slice())
            }
            None => None,
        };
        let values = &self.params.mean_value;
        if !values.is_empty() && values.len() != 1 && values.len() != c {
            return Err(TransformError::MeanValues {
                given: values.len(),
                channels: c,
            });
        }
        let crop = self.params.crop_size;
        if crop > h || crop > w {
            return Err(TransformError::Crop {
                crop,
                height: h,
                width: w,
            });
        }
        let train = self.phase == Phase::Train;
        let mirror = self.params.mirror && train && self.rng.random_range(0..2u32) == 1;
        let (oh, ow, h_off, w_off) = if crop > 0 {
            if train {
                let ho = self.rng.random_range(0..=h - crop);
                let wo = self.rng.random_range(0..=w - crop);
                (crop, crop, ho, wo)
            } else {
                (crop, crop, (h - crop) / 2, (w - crop) / 2)
            }
        } else {
            (h, w, 0, 0)
        };
        let scale = self.params.scale;
        for ch in 0..c {
            let mv = values.get(if values.len() == 1 { 0 } else { ch }).copied();
            for y in 0..oh {
                let src_row = (ch * h + h_off + y) * w + w_off;
                let dst_row = (ch * oh + y) * ow;
                for x in 0..ow {
                    let src = src_row + x;
                    let dst = dst_row + if mirror { ow - 1 - x } else { x };
                    let v = pixels.get(src);
                    out[dst] = match (mean, mv) {
                        (Some(m), _) => (v - m[src]) * scale,
                        (None, Some(m)) => (v - m) * scale,
                        (None, None) => v * scale,
                    };
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(crop: usize, mirror: bool, scale: f32, mean_value: Vec<f32>) -> TransformParams {
        TransformParams {
            scale,
            mirror,
            crop_size: crop,
            mean_file: None,
            mean_value,
        }
    }

    /// A 2×4×4 record whose value encodes (c, y, x) as 100c + 10y + x.
    fn record() -> Vec<u8> {
        (0..2)
            .flat_map(|c| {
                (0..4).flat_map(move |y| (0..4).map(move |x| (100 * c + 10 * y + x) as u8))
            })
            .collect()
    }

    #[test]
    fn test_phase_crops_the_centre_and_subtracts_the_mean_at_the_source_pixel() {
        // Mean image = 0.5 everywhere except 1 at (c=1, y=1, x=2), a pixel of the centre
        // crop rows 1..3, cols 1..3; it lands at crop position (1, 0, 1).
        let mut mean = Tensor::full(&[1, 2, 4, 4], 0.5);
        mean.data[16 + 4 + 2] = 1.0;
        let mut t =
            Transformer::new(params(2, true, 2.0, vec![]), Some(mean), Phase::Test, 1).unwrap();
        let mut out = vec![0.0; 8];
        t.apply([2, 4, 4], Pixels::U8(&record()), &mut out).unwrap();
        // (v − mean)·2, no mirror in TEST.
        let want =
            [11.0, 12.0, 21.0, 22.0, 111.0, 112.0, 121.0, 122.0].map(|v: f32| (v - 0.5) * 2.0);
        let mut want = want.to_vec();
        want[5] = (112.0 - 1.0) * 2.0;
        assert_eq!(out, want);
    }

    #[test]
    fn train_phase_crops_inside_and_mirrors_about_half_the_records() {
        let mut t = Transformer::new(
            params(3, true, 1.0, vec![10.0, 20.0]),
            None,
            Phase::Train,
            7,
        )
        .unwrap();
        let rec = record();
        let mut mirrored = 0;
        let mut offsets = std::collections::HashSet::new();
        for _ in 0..400 {
            let mut out = vec![0.0; 18];
            t.apply([2, 4, 4], Pixels::U8(&rec), &mut out).unwrap();
            // Channel 0 minus 10, channel 1 minus 20: recover (y, x) of the first pixel.
            let first = out[0] + 10.0;
            let last_of_row = out[2] + 10.0;
            let (y0, x0) = ((first / 10.0) as usize, first as usize % 10);
            if x0 > last_of_row as usize % 10 {
                mirrored += 1;
                offsets.insert((y0, x0 - 2));
            } else {
                offsets.insert((y0, x0));
            }
            assert_eq!(
                out[9] + 20.0,
                first + 100.0,
                "channel 1 crop must match channel 0"
            );
        }
        assert!((150..250).contains(&mirrored), "{mirrored} of 400 mirrored");
        assert_eq!(
            offsets.len(),
            4,
            "all four 3x3 crops of a 4x4 record: {offsets:?}"
        );
    }

    #[test]
    fn float_data_and_a_single_mean_value_apply_to_every_channel() {
        let mut t =
            Transformer::new(params(0, false, 0.5, vec![1.0]), None, Phase::Test, 0).unwrap();
        let mut out = vec![0.0; 2];
        t.apply([2, 1, 1], Pixels::F32(&[3.0, 5.0]), &mut out)
            .unwrap();
        assert_eq!(out, vec![1.0, 2.0]);
    }

    #[test]
    fn what_caffe_checks_is_an_error() {
        assert_eq!(
            Transformer::new(
                params(0, false, 1.0, vec![1.0]),
                Some(Tensor::zeros(&[1])),
                Phase::Test,
                0
            )
            .err(),
            Some(TransformError::BothMeans)
        );
        let mut t = Transformer::new(
            params(0, false, 1.0, vec![]),
            Some(Tensor::zeros(&[1, 3, 4, 4])),
            Phase::Test,
            0,
        )
        .unwrap();
        let e = t
            .apply([2, 4, 4], Pixels::U8(&record()), &mut [0.0; 32])
            .unwrap_err();
        assert!(matches!(e, TransformError::MeanShape { .. }), "{e}");
        let mut t = Transformer::new(
            params(5, false, 1.0, vec![1.0, 2.0, 3.0]),
            None,
            Phase::Test,
            0,
        )
        .unwrap();
        let e = t
            .apply([2, 4, 4], Pixels::U8(&record()), &mut [0.0; 32])
            .unwrap_err();
        assert_eq!(
            e,
            TransformError::MeanValues {
                given: 3,
                channels: 2
            }
        );
        let mut t = Transformer::new(params(5, false, 1.0, vec![]), None, Phase::Test, 0).unwrap();
        let e = t
            .apply([2, 4, 4], Pixels::U8(&record()), &mut [0.0; 32])
            .unwrap_err();
        assert!(e.to_string().contains("crop_size 5"), "{e}");
        let e = t
            .apply([2, 4, 4], Pixels::U8(&[0; 7]), &mut [0.0; 32])
            .unwrap_err();
        assert!(matches!(e, TransformError::Size { found: 7, .. }));
    }
}
