//! `caffe.Datum` records: the values of Caffe's LMDB/LevelDB databases.
//!
//! `convert_imageset` stores one image per Datum: `channels`, `height`, `width`, the pixels
//! as raw uint8 in `data` (C×H×W, BGR), the `label`, and `encoded: false`. Float records use
//! `float_data` instead; `encoded: true` records hold a compressed image file in `data`.
//! Every decode checks channels×height×width against the stored bytes before anything is
//! allocated for the pixels, so a record claiming 100k×100k pixels is refused.

use super::image::{decode_image, ChwImage, ImageDecodeError};
use crate::ir::Tensor;
use crate::proto::caffe::Datum;
use prost::Message;

/// Why a Datum is invalid.
#[derive(Debug, thiserror::Error)]
pub enum DatumError {
    /// Not a valid protobuf `Datum`.
    #[error("not a valid caffe.Datum: {0}")]
    Decode(#[from] prost::DecodeError),
    /// A negative dimension, or one whose product overflows.
    #[error("invalid dimensions channels {channels} × height {height} × width {width}")]
    BadDims {
        /// Claimed channels.
        channels: i32,
        /// Claimed height.
        height: i32,
        /// Claimed width.
        width: i32,
    },
    /// The dimensions do not match the stored values.
    #[error("dimensions {channels}×{height}×{width} need {expected} values but {found} {what} are stored")]
    SizeMismatch {
        /// Channels.
        channels: usize,
        /// Height.
        height: usize,
        /// Width.
        width: usize,
        /// channels×height×width.
        expected: u64,
        /// Values present.
        found: usize,
        /// `uint8 bytes in data` or `floats in float_data`.
        what: &'static str,
    },
    /// The record is float (`float_data`) where 8-bit pixels were required.
    #[error("the record holds float_data, not uint8 pixels")]
    NotUint8,
    /// An `encoded` record whose image could not be decoded.
    #[error("encoded image: {0}")]
    Encoded(#[from] ImageDecodeError),
}

/// The validated shape of a Datum, `[channels, height, width]`, with no decoding of
/// `encoded` payloads (their shape is only known after decoding).
pub fn datum_shape(datum: &Datum) -> Result<[usize; 3], DatumError> {
    let (c, h, w) = (datum.channels(), datum.height(), datum.width());
    let bad = || DatumError::BadDims {
        channels: c,
        height: h,
        width: w,
    };
    let dims = [
        usize::try_from(c).map_err(|_| bad())?,
        usize::try_from(h).map_err(|_| bad())?,
        usize::try_from(w).map_err(|_| bad())?,
    ];
    let expected = dims[0] as u64 * dims[1] as u64 * dims[2] as u64;
    let (found, what) = if datum.data.as_ref().is_some_and(|d| !d.is_empty()) {
        (datum.data().len(), "uint8 bytes in data")
    } else {
        (datum.float_data.len(), "floats in float_data")
    };
    if expected != found as u64 {
        return Err(DatumError::SizeMismatch {
            channels: dims[0],
            height: dims[1],
            width: dims[2],
            expected,
            found,
            what,
        });
    }
    Ok(dims)
}

/// Decodes and validates a serialized Datum (see [`datum_shape`]); `encoded` records are
/// accepted as they are and validated when their pixels are taken.
pub fn decode_datum(bytes: &[u8]) -> Result<Datum, DatumError> {
    let datum = Datum::decode(bytes)?;
    if !datum.encoded() {
        datum_shape(&datum)?;
    }
    Ok(datum)
}

/// Serializes a Datum. Fields are written in field-number order as Caffe's C++ protobuf
/// does, so a record built by [`datum_from_image`] has the same bytes as Caffe's.
pub fn encode_datum(datum: &Datum) -> Vec<u8> {
    datum.encode_to_vec()
}

/// Builds the Datum `convert_imageset` writes for an 8-bit image: its dimensions, the raw
/// C×H×W bytes, the label and an explicit `encoded: false` (Caffe sets it, so it is on the
/// wire).
pub fn datum_from_image(image: &ChwImage, label: i32) -> Datum {
    Datum {
        channels: Some(image.channels as i32),
        height: Some(image.height as i32),
        width: Some(image.width as i32),
        data: Some(image.data.clone()),
        label: Some(label),
        float_data: Vec::new(),
        encoded: Some(false),
    }
}

/// The 8-bit pixels of a Datum as an image (C×H×W, in the record's channel order). An
/// `encoded` record is decoded to BGR, as Caffe's `DecodeDatumNative` does with OpenCV.
pub fn datum_to_image(datum: &Datum) -> Result<ChwImage, DatumError> {
    if datum.encoded() {
        return Ok(decode_image(datum.data())?);
    }
    let [channels, height, width] = datum_shape(datum)?;
    if datum.data().is_empty() && channels * height * width > 0 {
        return Err(DatumError::NotUint8);
    }
    Ok(ChwImage {
        channels,
        height,
        width,
        data: datum.data().to_vec(),
    })
}

/// The record's values as a `[channels, height, width]` f32 tensor, from either `data`
/// (uint8) or `float_data`, as Caffe's `DataTransformer` reads them.
pub fn datum_to_tensor(datum: &Datum) -> Result<Tensor, DatumError> {
    if datum.encoded() || datum.data.as_ref().is_some_and(|d| !d.is_empty()) {
        return Ok(datum_to_image(datum)?.to_tensor());
    }
    let shape = datum_shape(datum)?;
    Ok(Tensor {
        shape: shape.to_vec(),
        data: datum.float_data.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_bytes_follow_the_protobuf_encoding_by_hand() {
        // channels 3, height 1, width 1, data [1, 2, 3], label 7, encoded false:
        // tag 1 varint 3, tag 2 varint 1, tag 3 varint 1, tag 4 len 3, tag 5 varint 7, tag 7 0.
        let image = ChwImage {
            channels: 3,
            height: 1,
            width: 1,
            data: vec![1, 2, 3],
        };
        let bytes = encode_datum(&datum_from_image(&image, 7));
        assert_eq!(
            bytes,
            [0x08, 3, 0x10, 1, 0x18, 1, 0x22, 3, 1, 2, 3, 0x28, 7, 0x38, 0]
        );
        let back = decode_datum(&bytes).unwrap();
        assert_eq!(datum_to_image(&back).unwrap(), image);
        assert_eq!(back.label(), 7);
        let t = datum_to_tensor(&back).unwrap();
        assert_eq!((t.shape, t.data), (vec![3, 1, 1], vec![1.0, 2.0, 3.0]));
    }

    #[test]
    fn float_records_decode_from_float_data() {
        let d = Datum {
            channels: Some(1),
            height: Some(2),
            width: Some(1),
            float_data: vec![0.5, -2.0],
            ..Default::default()
        };
        let back = decode_datum(&encode_datum(&d)).unwrap();
        let t = datum_to_tensor(&back).unwrap();
        assert_eq!((t.shape, t.data), (vec![1, 2, 1], vec![0.5, -2.0]));
        assert!(matches!(datum_to_image(&back), Err(DatumError::NotUint8)));
    }

    #[test]
    fn absurd_and_inconsistent_dimensions_are_refused() {
        let huge = Datum {
            channels: Some(3),
            height: Some(100_000),
            width: Some(100_000),
            data: Some(vec![0; 10]),
            label: Some(0),
            ..Default::default()
        };
        let e = decode_datum(&encode_datum(&huge)).unwrap_err();
        assert!(
            e.to_string()
                .contains("3×100000×100000 need 30000000000 values but 10"),
            "{e}"
        );
        let negative = Datum {
            channels: Some(-3),
            height: Some(1),
            width: Some(1),
            data: Some(vec![0; 3]),
            ..Default::default()
        };
        assert!(matches!(
            decode_datum(&encode_datum(&negative)),
            Err(DatumError::BadDims { channels: -3, .. })
        ));
        assert!(matches!(
            decode_datum(&[0x22, 0x05, 1]),
            Err(DatumError::Decode(_))
        ));
    }
}
