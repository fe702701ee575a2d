//! Images in Caffe's layout: 8-bit channel planes (C×H×W) in **BGR** order.
//!
//! Caffe reads images with OpenCV (`cv::imread(path, IMREAD_COLOR)`), which yields BGR
//! pixels; `convert_imageset` resizes them with `cv::resize(…, INTER_LINEAR)` and stores the
//! planes channel by channel. This module does the same with the `image` crate:
//! - JPEG, PNG and BMP decode to 3 channels, BGR. A greyscale image has its one channel
//!   replicated into B, G and R, as OpenCV's `IMREAD_COLOR` does; alpha is dropped.
//! - [`resize_linear`] reproduces OpenCV's `INTER_LINEAR` for 8-bit images exactly,
//!   including its fixed-point arithmetic (11-bit coefficients, see the function).
//! - Mean subtraction follows Caffe's `DataTransformer`: a mean image (centre-cropped when
//!   larger than the input, as deploy scripts crop a 256×256 mean to 227×227) or one value
//!   per channel.
//!
//! The JPEG decoder (the `image` crate's zune-jpeg) is not libjpeg-turbo, so decoded
//! pixels differ from OpenCV's by a few grey levels (IDCT, chroma upsampling and YCbCr→RGB
//! rounding). On the 24 UTKFace images Caffe converted (`caffe-oracle/utkface24_lmdb`) the
//! records differ by at most 4, 0.167 on average, 85.3 % identical; given libjpeg-turbo's
//! own pixels (`djpeg`), [`resize_linear`] reproduces every record bit for bit.

use crate::ir::Tensor;
use crate::util::atomic::{atomic_write, AtomicWriteError};
use image::{DynamicImage, ImageFormat, ImageReader, Limits};
use std::io::Cursor;
use std::path::{Path, PathBuf};

/// Largest width or height accepted from a file (OpenCV's own limit is 1<<20 pixels a side;
/// this project's faces are 200×200, so a far larger claim is a broken or hostile file).
pub const MAX_IMAGE_SIDE: u32 = 16_384;

/// An 8-bit image stored as channel planes, C×H×W, in Caffe's channel order (BGR for colour).
#[derive(Clone, PartialEq, Eq)]
pub struct ChwImage {
    /// Number of channels (3 for BGR, 1 for grey).
    pub channels: usize,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// `channels × height × width` bytes, plane after plane.
    pub data: Vec<u8>,
}

impl std::fmt::Debug for ChwImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ChwImage {}×{}×{}",
            self.channels, self.height, self.width
        )
    }
}

/// Why image bytes could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum ImageDecodeError {
    /// Unknown format, corrupt data or a decoder limit.
    #[error("{0}")]
    Image(#[from] image::ImageError),
    /// The format could not even be guessed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// An error reading or writing an image file, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not a decodable image.
    #[error("cannot decode image {}: {source}", path.display())]
    Decode {
        /// File.
        path: PathBuf,
        /// Cause.
        source: ImageDecodeError,
    },
    /// The image could not be encoded (e.g. an unsupported extension or channel count).
    #[error("cannot encode image {}: {reason}", path.display())]
    Encode {
        /// File.
        path: PathBuf,
        /// Cause.
        reason: String,
    },
    /// Writing failed.
    #[error(transparent)]
    Write(#[from] AtomicWriteError),
}

/// Why a mean could not be subtracted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MeanError {
    /// The input is not C×H×W or N×C×H×W, or the mean is not C×H×W or 1×C×H×W.
    #[error("{what} has shape {shape:?}; expected C×H×W or N×C×H×W")]
    Rank {
        /// `input` or `mean`.
        what: &'static str,
        /// Its shape.
        shape: Vec<usize>,
    },
    /// Channel counts differ.
    #[error("mean has {mean} channels but the input has {input}")]
    Channels {
        /// Mean channels.
        mean: usize,
        /// Input channels.
        input: usize,
    },
    /// The mean image is smaller than the input, so it cannot be centre-cropped to it.
    #[error("mean image {mean_h}×{mean_w} is smaller than the input {h}×{w}")]
    TooSmall {
        /// Mean height.
        mean_h: usize,
        /// Mean width.
        mean_w: usize,
        /// Input height.
        h: usize,
        /// Input width.
        w: usize,
    },
}

impl ChwImage {
    /// Pixels as a `[C, H, W]` f32 tensor (values 0–255), the form Caffe's data layer feeds.
    pub fn to_tensor(&self) -> Tensor {
        Tensor {
            shape: vec![self.channels, self.height, self.width],
            data: self.data.iter().map(|&v| v as f32).collect(),
        }
    }

    /// One channel plane.
    pub fn plane(&self, channel: usize) -> &[u8] {
        let n = self.height * self.width;
        &self.data[channel * n..(channel + 1) * n]
    }

    /// The image mirrored left-to-right (Caffe's `mirror`, and the flip augmentation).
    pub fn flipped_horizontally(&self) -> ChwImage {
        let mut data = Vec::with_capacity(self.data.len());
        for row in self.data.chunks_exact(self.width.max(1)) {
            data.extend(row.iter().rev());
        }
        ChwImage { data, ..*self }
    }

    /// Interleaved RGB (or grey) rows, for encoders and viewers.
    fn to_interleaved_rgb(&self) -> Vec<u8> {
        let n = self.height * self.width;
        let mut out = Vec::with_capacity(self.data.len());
        for i in 0..n {
            for c in (0..self.channels).rev() {
                out.push(self.data[c * n + i]);
            }
        }
        out
    }
}

/// Decodes JPEG, PNG or BMP bytes into a 3-channel BGR image (greyscale replicated, alpha
/// dropped), as `cv::imread(…, IMREAD_COLOR)` does. Images larger than
/// [`MAX_IMAGE_SIDE`] a side are refused before their pixels are allocated.
pub fn decode_image(bytes: &[u8]) -> Result<ChwImage, ImageDecodeError> {
    let mut reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format()?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    reader.limits(limits);
    let decoded = reader.decode()?;
    Ok(bgr_from_dynamic(&decoded))
}

fn bgr_from_dynamic(img: &DynamicImage) -> ChwImage {
    let rgb = img.to_rgb8();
    let (width, height) = (rgb.width() as usize, rgb.height() as usize);
    let n = width * height;
    let mut data = vec![0u8; 3 * n];
    for (i, px) in rgb.pixels().enumerate() {
        data[i] = px[2];
        data[n + i] = px[1];
        data[2 * n + i] = px[0];
    }
    ChwImage {
        channels: 3,
        height,
        width,
        data,
    }
}

/// Reads and decodes an image file into BGR planes (see [`decode_image`]).
pub fn read_image(path: &Path) -> Result<ChwImage, ImageError> {
    let bytes = std::fs::read(path).map_err(|source| ImageError::Io {
        path: path.into(),
        source,
    })?;
    decode_image(&bytes).map_err(|source| ImageError::Decode {
        path: path.into(),
        source,
    })
}

/// Writes a BGR (3-channel) or grey (1-channel) image as PNG, BMP or JPEG, chosen by the
/// file extension, converting back to the file's RGB order; written atomically.
pub fn write_image(path: &Path, image: &ChwImage) -> Result<(), ImageError> {
    let encode_err = |reason: String| ImageError::Encode {
        path: path.into(),
        reason,
    };
    let format = ImageFormat::from_path(path).map_err(|e| encode_err(e.to_string()))?;
    let (w, h) = (image.width as u32, image.height as u32);
    let dynamic = match image.channels {
        3 => image::RgbImage::from_raw(w, h, image.to_interleaved_rgb()).map(DynamicImage::from),
        1 => image::GrayImage::from_raw(w, h, image.data.clone()).map(DynamicImage::from),
        c => {
            return Err(encode_err(format!(
                "{c} channels (only 1 or 3 can be saved)"
            )))
        }
    }
    .ok_or_else(|| encode_err("pixel buffer does not match the size".into()))?;
    let mut bytes = Vec::new();
    dynamic
        .write_to(&mut Cursor::new(&mut bytes), format)
        .map_err(|e| encode_err(e.to_string()))?;
    Ok(atomic_write(path, &bytes)?)
}

/// OpenCV's fixed-point scale for 8-bit `INTER_LINEAR` coefficients
/// (`INTER_RESIZE_COEF_BITS = 11`).
const COEF_SCALE: f32 = 2048.0;

/// The two source taps and 11-bit weights of one output coordinate along one axis.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Tap {
    first: usize,
    second: usize,
    weight_first: i32,
    weight_second: i32,
}

/// Taps along one axis as OpenCV's `resize` computes them: `scale = 1 / (dst/src)` in
/// double, `f = float((d + 0.5)·scale − 0.5)`, `s = floor(f)`, weights `1 − (f − s)` and
/// `f − s`, each rounded (half to even, `cvRound`) to 11 bits.
///
/// `clamp_weights` selects OpenCV's horizontal rule (outside the image the coordinate is
/// clamped and the weight set to 0); the vertical rule keeps the fractional weight and
/// clamps only the row indices, so the two border rows are mixed with weights that may not
/// sum exactly to 2048.
fn taps(src: usize, dst: usize, clamp_weights: bool) -> Vec<Tap> {
    let scale = 1.0 / (dst as f64 / src as f64);
    let last = src as i64 - 1;
    (0..dst)
        .map(|d| {
            let f_full = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let mut s = f_full.floor() as i64;
            let mut f = f_full - s as f32;
            if clamp_weights {
                if s < 0 {
                    s = 0;
                    f = 0.0;
                }
                if s >= last {
                    s = last;
                    f = 0.0;
                }
            }
            Tap {
                first: s.clamp(0, last) as usize,
                second: (s + 1).clamp(0, last) as usize,
                weight_first: ((1.0 - f) * COEF_SCALE).round_ties_even() as i32,
                weight_second: (f * COEF_SCALE).round_ties_even() as i32,
            }
        })
        .collect()
}

/// Bilinear resize identical to OpenCV's `cv::resize(src, dst, Size(width, height), 0, 0,
/// INTER_LINEAR)` on 8-bit images (the generic, non-IPP code path that Caffe's
/// `ReadImageToDatum` runs):
/// - sample positions use half-pixel centres, `src = (dst + 0.5)·scale − 0.5`;
/// - the horizontal pass computes `S[x0]·α0 + S[x1]·α1` with 11-bit integer weights,
///   giving 22-bit sums;
/// - the vertical pass is OpenCV's `VResizeLinear<uchar>`:
///   `((β0·(R0 >> 4)) >> 16) + ((β1·(R1 >> 4)) >> 16) + 2) >> 2`.
///
/// Each channel plane is resized independently, as OpenCV does for interleaved channels.
pub fn resize_linear(image: &ChwImage, height: usize, width: usize) -> ChwImage {
    if (image.height, image.width) == (height, width) {
        return image.clone();
    }
    let mut data = vec![0u8; image.channels * height * width];
    if image.height == 0 || image.width == 0 {
        return ChwImage {
            channels: image.channels,
            height,
            width,
            data,
        };
    }
    let xtaps = taps(image.width, width, true);
    let ytaps = taps(image.height, height, false);
    let horizontal = |row: &[u8], out: &mut [i32]| {
        for (o, t) in out.iter_mut().zip(&xtaps) {
            *o = row[t.first] as i32 * t.weight_first + row[t.second] as i32 * t.weight_second;
        }
    };
    let mut row0 = vec![0i32; width];
    let mut row1 = vec![0i32; width];
    for (c, out_plane) in data.chunks_exact_mut(height * width).enumerate() {
        let plane = image.plane(c);
        let src_row = |y: usize| &plane[y * image.width..(y + 1) * image.width];
        let mut cached = (usize::MAX, usize::MAX);
        for (out_row, t) in out_plane.chunks_exact_mut(width).zip(&ytaps) {
            if cached != (t.first, t.second) {
                horizontal(src_row(t.first), &mut row0);
                horizontal(src_row(t.second), &mut row1);
                cached = (t.first, t.second);
            }
            for ((o, &r0), &r1) in out_row.iter_mut().zip(&row0).zip(&row1) {
                let v = (((t.weight_first * (r0 >> 4)) >> 16)
                    + ((t.weight_second * (r1 >> 4)) >> 16)
                    + 2)
                    >> 2;
                *o = v.clamp(0, 255) as u8;
            }
        }
    }
    ChwImage {
        channels: image.channels,
        height,
        width,
        data,
    }
}

/// `(channel axis, H, W)` of a C×H×W or N×C×H×W tensor.
fn chw_dims(t: &Tensor, what: &'static str) -> Result<(usize, usize, usize), MeanError> {
    let n = t.shape.len();
    if !(3..=4).contains(&n) {
        return Err(MeanError::Rank {
            what,
            shape: t.shape.clone(),
        });
    }
    Ok((t.shape[n - 3], t.shape[n - 2], t.shape[n - 1]))
}

/// Subtracts a mean image from a C×H×W or N×C×H×W input, as Caffe's `DataTransformer` does
/// with `mean_file`. A mean larger than the input is centre-cropped to it (offsets
/// `(MH − H)/2`, `(MW − W)/2`, Caffe's TEST-phase crop), as deploy scripts use a 256×256 mean
/// on 227×227 crops. The mean may carry a leading 1 (`1×C×H×W`, as binaryproto stores it).
pub fn subtract_mean_image(input: &mut Tensor, mean: &Tensor) -> Result<(), MeanError> {
    let (c, h, w) = chw_dims(input, "input")?;
    if mean.shape.len() == 4 && mean.shape[0] != 1 {
        return Err(MeanError::Rank {
            what: "mean",
            shape: mean.shape.clone(),
        });
    }
    let (mc, mh, mw) = chw_dims(mean, "mean")?;
    if mc != c {
        return Err(MeanError::Channels { mean: mc, input: c });
    }
    if mh < h || mw < w {
        return Err(MeanError::TooSmall {
            mean_h: mh,
            mean_w: mw,
            h,
            w,
        });
    }
    let (top, left) = ((mh - h) / 2, (mw - w) / 2);
    for image in input.data.chunks_exact_mut((c * h * w).max(1)) {
        for (ch, plane) in image.chunks_exact_mut((h * w).max(1)).enumerate() {
            for (y, row) in plane.chunks_exact_mut(w.max(1)).enumerate() {
                let start = (ch * mh + top + y) * mw + left;
                for (v, m) in row.iter_mut().zip(&mean.data[start..start + w]) {
                    *v -= m;
                }
            }
        }
    }
    Ok(())
}

/// Subtracts per-channel means (Caffe's `mean_value`): one value for every channel, or one
/// value per channel in the input's channel order (B, G, R for Caffe images).
pub fn subtract_mean_values(input: &mut Tensor, values: &[f32]) -> Result<(), MeanError> {
    let (c, h, w) = chw_dims(input, "input")?;
    if values.len() != 1 && values.len() != c {
        return Err(MeanError::Channels {
            mean: values.len(),
            input: c,
        });
    }
    for image in input.data.chunks_exact_mut((c * h * w).max(1)) {
        for (ch, plane) in image.chunks_exact_mut((h * w).max(1)).enumerate() {
            let m = if values.len() == 1 {
                values[0]
            } else {
                values[ch]
            };
            plane.iter_mut().for_each(|v| *v -= m);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::shared;

    fn grey_row(values: &[u8]) -> ChwImage {
        ChwImage {
            channels: 1,
            height: 1,
            width: values.len(),
            data: values.to_vec(),
        }
    }

    #[test]
    fn upscaling_a_row_follows_opencv_fixed_point_by_hand() {
        // 2 → 4 columns, scale 0.5: x = 0.5·(dx + 0.5) − 0.5 = −0.25, 0.25, 0.75, 1.25.
        // dx 0 clamps to column 0 (weights 2048, 0); dx 3 clamps to column 1.
        // dx 1: weights 1536/512 → 200·512 = 102400; vertical (1 row, β 2048/0):
        // ((2048·(102400 >> 4)) >> 16 + 2) >> 2 = (200 + 2) >> 2 = 50. dx 2 → 150.
        let out = resize_linear(&grey_row(&[0, 200]), 1, 4);
        assert_eq!(out.data, vec![0, 50, 150, 200]);
    }

    #[test]
    fn vertical_pass_mixes_rows_with_opencv_shifts_by_hand() {
        // 3 → 2 rows, scale 1.5: y = 1.5·(dy + 0.5) − 0.5 = 0.25, 1.75.
        // Horizontal pass (1 → 1 column) multiplies by 2048, then >> 4:
        // 255 → 32640, 10 → 1280, 90 → 11520.
        // Row 0 mixes rows 0, 1 with weights 1536/512:
        // (1536·32640) >> 16 = 765, (512·1280) >> 16 = 10; (765 + 10 + 2) >> 2 = 194.
        // Row 1 mixes rows 1, 2 with 512/1536:
        // (512·1280) >> 16 = 10, (1536·11520) >> 16 = 270; (10 + 270 + 2) >> 2 = 70.
        // A constant 255 column stays 255: (765 + 255 + 2) >> 2 = 255.
        let column = ChwImage {
            channels: 1,
            height: 3,
            width: 1,
            data: vec![255, 10, 90],
        };
        assert_eq!(resize_linear(&column, 2, 1).data, vec![194, 70]);
        let constant = ChwImage {
            channels: 1,
            height: 3,
            width: 1,
            data: vec![255; 3],
        };
        assert_eq!(resize_linear(&constant, 2, 1).data, vec![255, 255]);
    }

    #[test]
    fn flip_mirrors_every_row_of_every_plane() {
        let img = ChwImage {
            channels: 2,
            height: 2,
            width: 3,
            data: vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
        };
        let f = img.flipped_horizontally();
        assert_eq!(f.data, vec![3, 2, 1, 6, 5, 4, 9, 8, 7, 12, 11, 10]);
        assert_eq!(f.flipped_horizontally(), img);
    }

    #[test]
    fn colour_decodes_to_bgr_planes_and_grey_is_replicated() {
        // A 2×1 PNG with pixels RGB (10, 20, 30) and (40, 50, 60), encoded by `image`.
        let rgb = image::RgbImage::from_raw(2, 1, vec![10, 20, 30, 40, 50, 60]).unwrap();
        let mut png = Vec::new();
        DynamicImage::from(rgb)
            .write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
            .unwrap();
        let img = decode_image(&png).unwrap();
        assert_eq!((img.channels, img.height, img.width), (3, 1, 2));
        assert_eq!(img.data, vec![30, 60, 20, 50, 10, 40]);
        let grey = image::GrayImage::from_raw(2, 1, vec![7, 200]).unwrap();
        let mut png = Vec::new();
        DynamicImage::from(grey)
            .write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
            .unwrap();
        assert_eq!(
            decode_image(&png).unwrap().data,
            vec![7, 200, 7, 200, 7, 200]
        );
        // Saving converts back to RGB order.
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("back.png");
        write_image(&out, &img).unwrap();
        let back = image::open(&out).unwrap().to_rgb8();
        assert_eq!(back.into_raw(), vec![10, 20, 30, 40, 50, 60]);
    }

    #[test]
    fn corrupt_and_oversized_images_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("broken.jpg");
        std::fs::write(&p, b"\xff\xd8\xff\xe0 not really a jpeg").unwrap();
        let e = read_image(&p).unwrap_err().to_string();
        assert!(e.contains("broken.jpg"), "{e}");
        // A BMP header claiming 100000 × 100000 pixels.
        let mut bmp = Vec::new();
        bmp.extend_from_slice(b"BM");
        bmp.extend_from_slice(&(54u32).to_le_bytes());
        bmp.extend_from_slice(&[0; 4]);
        bmp.extend_from_slice(&(54u32).to_le_bytes());
        bmp.extend_from_slice(&(40u32).to_le_bytes());
        bmp.extend_from_slice(&(100_000i32).to_le_bytes());
        bmp.extend_from_slice(&(100_000i32).to_le_bytes());
        bmp.extend_from_slice(&(1u16).to_le_bytes());
        bmp.extend_from_slice(&(24u16).to_le_bytes());
        bmp.extend_from_slice(&[0; 24]);
        assert!(decode_image(&bmp).is_err());
    }

    #[test]
    fn mean_image_is_centre_cropped_and_values_are_per_channel() {
        // Input 1×2×2 of 100s; mean 1×4×4 whose value is 10·y + x: the centre 2×2 crop
        // starts at (1, 1) and holds 11, 12, 21, 22.
        let mut input = Tensor::full(&[1, 1, 2, 2], 100.0);
        let mean = Tensor::from_vec(
            &[1, 1, 4, 4],
            (0..16).map(|i| (10 * (i / 4) + i % 4) as f32).collect(),
        )
        .unwrap();
        subtract_mean_image(&mut input, &mean).unwrap();
        assert_eq!(input.data, vec![89.0, 88.0, 79.0, 78.0]);
        let mut two_channels = Tensor::full(&[2, 2, 2], 0.0);
        assert!(matches!(
            subtract_mean_image(&mut two_channels, &mean),
            Err(MeanError::Channels { .. })
        ));
        let mut big = Tensor::full(&[1, 5, 5], 0.0);
        let mean1 = mean.clone().reshaped(&[1, 4, 4]).unwrap();
        assert!(matches!(
            subtract_mean_image(&mut big, &mean1),
            Err(MeanError::TooSmall { .. })
        ));
        let mut bgr = Tensor::full(&[2, 3, 1, 1], 200.0);
        subtract_mean_values(&mut bgr, &[104.0, 117.0, 123.0]).unwrap();
        assert_eq!(bgr.data, vec![96.0, 83.0, 77.0, 96.0, 83.0, 77.0]);
        assert!(subtract_mean_values(&mut bgr, &[1.0, 2.0]).is_err());
    }

    /// With the same decoder as Caffe's OpenCV (libjpeg-turbo, via its `djpeg` tool), our
    /// resize must give Caffe's records exactly. Needs `djpeg` (Debian package
    /// libjpeg-turbo-progs); skipped with a message when it is not installed.
    #[test]
    fn resize_is_bit_exact_with_caffe_given_libjpeg_turbo_pixels() {
        let (Some(db), Some(images)) = (
            shared("fixtures-real/caffe-oracle/utkface24_lmdb"),
            shared("data/utkface-asian"),
        ) else {
            return;
        };
        let djpeg_ok = std::process::Command::new("djpeg")
            .arg("-version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !djpeg_ok {
            eprintln!("SKIP: djpeg (libjpeg-turbo-progs) is not installed");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let reader = crate::io::lmdb::LmdbReader::open(&db).unwrap();
        let mut cursor = reader.cursor().unwrap();
        let mut records = 0;
        while let Some((record, datum)) = cursor.next_datum().unwrap() {
            let bmp = tmp.path().join(format!("{records}.bmp"));
            let status = std::process::Command::new("djpeg")
                .args(["-bmp", "-outfile"])
                .arg(&bmp)
                .arg(images.join(record.name()))
                .status()
                .unwrap();
            assert!(status.success());
            let ours = resize_linear(&read_image(&bmp).unwrap(), 227, 227);
            assert!(
                ours.data == datum.data(),
                "{} differs from Caffe's record",
                record.key_str()
            );
            records += 1;
        }
        assert_eq!(records, 24);
    }
}
