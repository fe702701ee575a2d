//! Caffe-faithful preprocessing of a face image into a net input.
//!
//! The steps, in order, for one image already decoded to BGR planes by
//! [`crate::io::image::read_image`] (a greyscale file has its one channel replicated into
//! B, G and R, as OpenCV's `IMREAD_COLOR` does):
//! 1. optional face crop ([`FaceCrop::Centre`]: the largest centred square, so that a
//!    non-square photo is not squashed; UTKFace images are already aligned face crops);
//! 2. bilinear resize to the net's input with OpenCV's exact `INTER_LINEAR`
//!    ([`crate::io::image::resize_linear`]);
//! 3. 8-bit values to f32 (0–255, no scaling: the Levi & Hassner nets were trained that way);
//! 4. optional `--legacy-rgb` channel swap, see [`PreprocessOptions::legacy_rgb`];
//! 5. mean subtraction as Caffe's `DataTransformer` does: the mean image centre-cropped to
//!    the input (a 256×256 mean for a 227×227 net), or one value per channel.

use super::InferError;
use crate::io::image::{resize_linear, subtract_mean_image, subtract_mean_values, ChwImage};
use crate::ir::Tensor;
use std::path::Path;

/// Which part of the image holds the face.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum FaceCrop {
    /// The largest centred square (for photos whose face is centred but not cropped).
    Centre,
    /// The whole image, resized as it is (UTKFace crops, the original script's behaviour).
    #[default]
    None,
}

/// Preprocessing switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PreprocessOptions {
    /// Subtract the mean file's per-channel averages instead of the (cropped) mean image,
    /// as deploy scripts that use `MODEL_MEAN_VALUES` do.
    pub mean_per_channel: bool,
    /// Reproduce the original project's bug: it fed the net **RGB** pixels and subtracted a
    /// **BGR**-ordered mean (so R − mean(B) and B − mean(R)). Caffe nets are trained on BGR,
    /// so this lowers accuracy; it exists only to reproduce the original's numbers.
    pub legacy_rgb: bool,
    /// Face crop before the resize.
    pub face_crop: FaceCrop,
    /// Resize to `S × S` first, then take the centre crop of the net's input, as Caffe's
    /// TEST-phase transform does on records of size S (Levi & Hassner: 256 → 227). Use it for
    /// nets trained on random crops of larger records, so that a face has the scale it had
    /// in training. `None` (or S not larger than the input): resize straight to the input.
    pub resize_to: Option<usize>,
}

/// The mean to subtract.
#[derive(Debug, Clone, PartialEq)]
pub enum Mean {
    /// A C×H×W mean image (1×C×H×W accepted), centre-cropped to the input when larger.
    Image(Tensor),
    /// One value per channel (B, G, R), or one value for all.
    PerChannel(Vec<f32>),
    /// Nothing is subtracted.
    None,
}

impl Mean {
    /// Reads a mean image from a `.npy` (float C×H×W or 1×C×H×W, as `age_gender_mean.npy`)
    /// or a Caffe `.binaryproto` (BlobProto, legacy num/channels/height/width or `shape`).
    pub fn read_image(path: &Path) -> Result<Tensor, InferError> {
        let fail = |msg: String| InferError::Mean {
            path: path.to_path_buf(),
            msg,
        };
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let t = match ext.as_deref() {
            Some("npy") => crate::io::npy::read_npy(path).map_err(|e| fail(e.to_string()))?,
            Some("binaryproto") => crate::caffe::binaryproto::read_binaryproto(path)
                .map_err(|e| fail(e.to_string()))?,
            _ => return Err(fail("expected a .npy or .binaryproto mean file".into())),
        };
        let chw = match t.shape.as_slice() {
            [c, h, w] | [1, c, h, w] => [*c, *h, *w],
            other => {
                return Err(fail(format!(
                    "shape {other:?}; a mean image is C×H×W or 1×C×H×W"
                )))
            }
        };
        if chw.contains(&0) {
            return Err(fail(format!("empty mean image of shape {:?}", t.shape)));
        }
        t.reshaped(&chw)
            .ok_or_else(|| fail("data does not match its shape".into()))
    }

    /// Reads a mean file and keeps it as an image, or reduces it to its per-channel
    /// averages when `per_channel` is set.
    pub fn from_file(path: &Path, per_channel: bool) -> Result<Self, InferError> {
        let t = Self::read_image(path)?;
        Ok(if per_channel {
            Mean::PerChannel(channel_averages(&t))
        } else {
            Mean::Image(t)
        })
    }
}

/// Per-channel averages of a C×H×W tensor (accumulated in f64), e.g. B 78.43, G 87.77,
/// R 114.90 for Levi & Hassner's `mean.binaryproto`.
pub fn channel_averages(t: &Tensor) -> Vec<f32> {
    let c = t.shape.first().copied().unwrap_or(1).max(1);
    let plane = (t.len() / c).max(1);
    t.data
        .chunks(plane)
        .map(|p| (p.iter().map(|&v| v as f64).sum::<f64>() / p.len().max(1) as f64) as f32)
        .collect()
}

/// The mean as it is subtracted from every image of one input size.
#[derive(Debug, Clone, PartialEq)]
enum PreparedMean {
    /// C×H×W values, already cropped to the input.
    Image(Vec<f32>),
    /// One value per channel (or one for all).
    PerChannel(Vec<f32>),
    /// Nothing.
    None,
}

/// Turns decoded images into the net's C×H×W input.
#[derive(Debug, Clone, PartialEq)]
pub struct Preprocessor {
    channels: usize,
    height: usize,
    width: usize,
    mean: PreparedMean,
    options: PreprocessOptions,
}

impl Preprocessor {
    /// Prepares for a net input of `[channels, height, width]`. The mean must fit: the same
    /// channels, and a mean image at least as large as the input.
    pub fn new(
        input: [usize; 3],
        mean: &Mean,
        options: PreprocessOptions,
    ) -> Result<Self, InferError> {
        let [channels, height, width] = input;
        let mean = match mean {
            Mean::Image(m) => {
                // Cropping and checks are io::image's (Caffe's TEST-phase centre crop);
                // subtracting from zeros gives the negated crop once for all images.
                let mut zero = Tensor::zeros(&[channels, height, width]);
                subtract_mean_image(&mut zero, m)?;
                PreparedMean::Image(zero.data.iter().map(|v| -v).collect())
            }
            Mean::PerChannel(v) => {
                let mut zero = Tensor::zeros(&[channels, 1, 1]);
                subtract_mean_values(&mut zero, v)?;
                PreparedMean::PerChannel(v.clone())
            }
            Mean::None => PreparedMean::None,
        };
        Ok(Self {
            channels,
            height,
            width,
            mean,
            options,
        })
    }

    /// `[C, H, W]` of the tensors this produces.
    pub fn input(&self) -> [usize; 3] {
        [self.channels, self.height, self.width]
    }

    /// One image as the net's input, C×H×W f32 values.
    pub fn apply(&self, image: &ChwImage) -> Vec<f32> {
        let cropped;
        let source = match self.options.face_crop {
            FaceCrop::Centre if image.height != image.width => {
                cropped = centre_square(image);
                &cropped
            }
            _ => image,
        };
        let resized = match self.options.resize_to {
            Some(s) if s > self.height && s > self.width => {
                centre_crop(&resize_linear(source, s, s), self.height, self.width)
            }
            _ => resize_linear(source, self.height, self.width),
        };
        let plane = self.height * self.width;
        let mut data: Vec<f32> = resized.data.iter().map(|&v| v as f32).collect();
        if self.options.legacy_rgb && self.channels == 3 {
            let (b, rest) = data.split_at_mut(plane);
            b.swap_with_slice(&mut rest[plane..2 * plane]);
        }
        match &self.mean {
            PreparedMean::Image(m) => data.iter_mut().zip(m).for_each(|(v, m)| *v -= m),
            PreparedMean::PerChannel(values) => {
                for (c, p) in data.chunks_exact_mut(plane.max(1)).enumerate() {
                    let m = if values.len() == 1 {
                        values[0]
                    } else {
                        values[c]
                    };
                    p.iter_mut().for_each(|v| *v -= m);
                }
            }
            PreparedMean::None => {}
        }
        data
    }
}

/// The largest centred square of an image (offsets `(H − S)/2`, `(W − S)/2`, rounded down
/// like Caffe's centre crop).
pub fn centre_square(image: &ChwImage) -> ChwImage {
    let side = image.height.min(image.width);
    centre_crop(image, side, side)
}

/// The centred `h × w` window of an image (`h`, `w` at most its size), at offsets
/// `(H − h)/2`, `(W − w)/2` rounded down, as Caffe's `DataTransformer` crops in TEST.
pub fn centre_crop(image: &ChwImage, h: usize, w: usize) -> ChwImage {
    let (h, w) = (h.min(image.height), w.min(image.width));
    let (top, left) = ((image.height - h) / 2, (image.width - w) / 2);
    let mut data = Vec::with_capacity(image.channels * h * w);
    for c in 0..image.channels {
        let plane = image.plane(c);
        for y in top..top + h {
            data.extend_from_slice(&plane[y * image.width + left..y * image.width + left + w]);
        }
    }
    ChwImage {
        channels: image.channels,
        height: h,
        width: w,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 2×4 BGR image with values chosen so that every averaged pair is easy to follow.
    fn tiny() -> ChwImage {
        #[rustfmt::skip]
        let data = vec![
            10, 20, 30, 40, 50, 60, 70, 80, // B
            11, 20, 0, 255, 1, 2, 3, 4,     // G
            100, 100, 100, 100, 100, 100, 100, 100, // R
        ];
        ChwImage {
            channels: 3,
            height: 2,
            width: 4,
            data,
        }
    }

    /// 3×4×4 mean whose value is 100·c + 10·y + x.
    fn mean_image() -> Tensor {
        let data = (0..48)
            .map(|i| (100 * (i / 16) + 10 * ((i / 4) % 4) + i % 4) as f32)
            .collect();
        Tensor::from_vec(&[3, 4, 4], data).unwrap()
    }

    fn run(mean: &Mean, options: PreprocessOptions) -> Vec<f32> {
        Preprocessor::new([3, 2, 2], mean, options)
            .unwrap()
            .apply(&tiny())
    }

    // Resize 2×4 → 2×2 by hand with OpenCV's fixed-point INTER_LINEAR: columns sample at
    // x = 2·(d + 0.5) − 0.5 = 0.5 and 2.5, so each output averages a pair with weights
    // 1024/1024; rows map 1:1 (weights 2048/0). The vertical pass gives
    // ((2048·((1024·(a + b)) >> 4)) >> 16 + 2) >> 2 = (2·(a + b) + 2) >> 2, the average
    // rounded half up: B 15 35 55 75, G (11,20)→16 (0,255)→128 (1,2)→2 (3,4)→4, R 100.
    // The mean's centre 2×2 crop starts at (1, 1): 100c + 11, 12, 21, 22.
    #[test]
    fn hand_computed_pipeline_resizes_then_subtracts_the_centre_cropped_mean() {
        let x = run(&Mean::Image(mean_image()), PreprocessOptions::default());
        #[rustfmt::skip]
        let expected = [
            4.0, 23.0, 34.0, 53.0,
            16.0 - 111.0, 128.0 - 112.0, 2.0 - 121.0, 4.0 - 122.0,
            -111.0, -112.0, -121.0, -122.0,
        ];
        assert_eq!(x, expected);
    }

    // The original script's bug: R, G, B planes minus the B, G, R mean.
    #[test]
    fn legacy_rgb_swaps_pixel_planes_but_not_the_mean() {
        let options = PreprocessOptions {
            legacy_rgb: true,
            ..Default::default()
        };
        let x = run(&Mean::Image(mean_image()), options);
        #[rustfmt::skip]
        let expected = [
            89.0, 88.0, 79.0, 78.0,
            16.0 - 111.0, 128.0 - 112.0, 2.0 - 121.0, 4.0 - 122.0,
            15.0 - 211.0, 35.0 - 212.0, 55.0 - 221.0, 75.0 - 222.0,
        ];
        assert_eq!(x, expected);
    }

    // Channel averages of 100c + 10y + x over 4×4: 100c + 15 + 1.5.
    #[test]
    fn per_channel_mean_uses_the_mean_files_channel_averages() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mean.npy");
        crate::io::npy::write_npy(&path, &mean_image()).unwrap();
        let mean = Mean::from_file(&path, true).unwrap();
        assert_eq!(mean, Mean::PerChannel(vec![16.5, 116.5, 216.5]));
        let x = run(&mean, PreprocessOptions::default());
        #[rustfmt::skip]
        let expected = [
            -1.5, 18.5, 38.5, 58.5,
            16.0 - 116.5, 128.0 - 116.5, 2.0 - 116.5, 4.0 - 116.5,
            -116.5, -116.5, -116.5, -116.5,
        ];
        assert_eq!(x, expected);
    }

    // Caffe's TEST transform on S×S records: a 4×4 image "resized" to 4×4 (OpenCV's
    // same-size INTER_LINEAR is a copy), then the centre 2×2 at offset ((4 − 2)/2, (4 − 2)/2)
    // = (1, 1): rows 1–2, columns 1–2 of each plane.
    #[test]
    fn resize_then_centre_crop_takes_the_middle_of_the_resized_image() {
        let image = ChwImage {
            channels: 3,
            height: 4,
            width: 4,
            data: (0..48u32)
                .map(|i| (100 * (i / 16) + 10 * ((i / 4) % 4) + i % 4) as u8)
                .collect(),
        };
        let options = PreprocessOptions {
            resize_to: Some(4),
            ..Default::default()
        };
        let x = Preprocessor::new([3, 2, 2], &Mean::None, options)
            .unwrap()
            .apply(&image);
        #[rustfmt::skip]
        let expected = [
            11.0, 12.0, 21.0, 22.0,
            111.0, 112.0, 121.0, 122.0,
            211.0, 212.0, 221.0, 222.0,
        ];
        assert_eq!(x, expected);
    }

    // The largest centred square of a 2×4 image is columns 1..3; it is already 2×2.
    #[test]
    fn centre_face_crop_takes_the_middle_square() {
        let options = PreprocessOptions {
            face_crop: FaceCrop::Centre,
            ..Default::default()
        };
        let x = run(&Mean::None, options);
        assert_eq!(
            x,
            [20.0, 30.0, 60.0, 70.0, 20.0, 0.0, 2.0, 3.0, 100.0, 100.0, 100.0, 100.0]
        );
    }

    #[test]
    fn a_mean_that_does_not_fit_is_an_error() {
        let small = Mean::Image(Tensor::zeros(&[3, 1, 1]));
        let e = Preprocessor::new([3, 2, 2], &small, PreprocessOptions::default()).unwrap_err();
        assert!(e.to_string().contains("smaller than the input"), "{e}");
        let grey = Mean::Image(Tensor::zeros(&[1, 4, 4]));
        assert!(Preprocessor::new([3, 2, 2], &grey, PreprocessOptions::default()).is_err());
        let two = Mean::PerChannel(vec![1.0, 2.0]);
        assert!(Preprocessor::new([3, 2, 2], &two, PreprocessOptions::default()).is_err());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mean.txt");
        std::fs::write(&path, "1 2 3").unwrap();
        let e = Mean::from_file(&path, false).unwrap_err().to_string();
        assert!(e.contains("mean.txt"), "{e}");
    }
}
