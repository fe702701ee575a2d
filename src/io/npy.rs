//! NumPy `.npy` files ↔ [`Tensor`].
//!
//! Goldens and mean images travel as `.npy` (NumPy's format 1.0–3.0: magic, header dict
//! with `descr`, `fortran_order`, `shape`, then raw data). Tensors are f32; float64 files are
//! narrowed to f32 on read, any other dtype is refused with an error that names it. The
//! header's claimed shape is checked against the real file size before anything is
//! allocated, so a truncated or hostile file is an error, not an allocation failure.

use crate::ir::Tensor;
use crate::util::atomic::{atomic_write_with, AtomicWriteError};
use ndarray::{ArrayD, ArrayViewD, IxDyn};
use ndarray_npy::npy::header::Header;
use ndarray_npy::{ReadNpyExt, WriteNpyExt};
use std::fmt;
use std::path::{Path, PathBuf};

/// An error reading or writing an `.npy` file, always naming the file.
#[derive(Debug, thiserror::Error)]
#[error("{}: {kind}", path.display())]
pub struct NpyError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    pub kind: NpyErrorKind,
}

/// What went wrong with an `.npy` file.
#[derive(Debug, thiserror::Error)]
pub enum NpyErrorKind {
    /// The file could not be read.
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
    /// The magic string, version or header dictionary is invalid.
    #[error("not a valid .npy header: {0}")]
    Header(String),
    /// The element type is not float32 or float64.
    #[error("dtype is {found} ('{descr}'), expected float32 (or float64, narrowed to f32)")]
    WrongDtype {
        /// NumPy's name for the dtype (`int64`, `float16`, …) or the raw descriptor.
        found: String,
        /// The raw `descr` value of the header.
        descr: String,
    },
    /// The shape differs from the one the caller needs.
    #[error("shape is {found:?}, expected {expected:?}")]
    WrongShape {
        /// Shape required by the caller.
        expected: Vec<usize>,
        /// Shape in the file.
        found: Vec<usize>,
    },
    /// The file holds fewer data bytes than the header's shape needs.
    #[error("truncated: shape {shape:?} needs {needed} data bytes but only {present} are present")]
    Truncated {
        /// Shape claimed by the header.
        shape: Vec<usize>,
        /// Bytes the shape needs.
        needed: u64,
        /// Bytes after the header.
        present: u64,
    },
    /// Extra bytes follow the data.
    #[error("{0} unexpected bytes after the data")]
    TrailingBytes(u64),
    /// The data section could not be decoded.
    #[error("invalid data: {0}")]
    Data(String),
    /// A tensor to write has a shape that disagrees with its data length.
    #[error("tensor shape {shape:?} does not match its {len} values")]
    InconsistentTensor {
        /// The tensor's shape.
        shape: Vec<usize>,
        /// Its number of values.
        len: usize,
    },
    /// Writing failed.
    #[error("{0}")]
    Write(#[from] AtomicWriteError),
}

/// Reads a float32 (or float64, narrowed) `.npy` file of any shape into a C-order tensor.
/// Fortran-ordered files are transposed into C order, as `numpy.load` presents them.
pub fn read_npy(path: &Path) -> Result<Tensor, NpyError> {
    read_impl(path, None)
}

/// Reads an `.npy` file and checks that its shape is exactly `expected`; the error gives
/// the expected and the found shape. The shape is checked from the header, before the
/// data is read.
pub fn read_npy_expect(path: &Path, expected: &[usize]) -> Result<Tensor, NpyError> {
    read_impl(path, Some(expected))
}

/// Writes a tensor as a little-endian float32 `.npy` (format 1.0, C order, 64-byte aligned
/// header), through the atomic-write helper. The data bytes and header fields equal
/// `numpy.save`'s; only the spacing inside the header dict differs.
pub fn write_npy(path: &Path, tensor: &Tensor) -> Result<(), NpyError> {
    let at = |kind| NpyError {
        path: path.to_path_buf(),
        kind,
    };
    let view = ArrayViewD::from_shape(IxDyn(&tensor.shape), &tensor.data).map_err(|_| {
        at(NpyErrorKind::InconsistentTensor {
            shape: tensor.shape.clone(),
            len: tensor.data.len(),
        })
    })?;
    atomic_write_with(path, |w| view.write_npy(w).map_err(std::io::Error::other))
        .map_err(|e| at(e.into()))
}

fn read_impl(path: &Path, expected: Option<&[usize]>) -> Result<Tensor, NpyError> {
    let at = |kind| NpyError {
        path: path.to_path_buf(),
        kind,
    };
    let bytes = std::fs::read(path).map_err(|e| at(e.into()))?;
    decode_npy(&bytes, expected).map_err(at)
}

/// The element types this reader accepts.
#[derive(Clone, Copy)]
enum Element {
    F32,
    F64,
}

/// Decodes `.npy` bytes already in memory (what [`read_npy`] does after reading the file),
/// with the same header-before-allocation checks; `expected` as in [`read_npy_expect`].
/// Public so that the mutation tests can feed mutants without touching the disk.
pub fn decode_npy(bytes: &[u8], expected: Option<&[usize]>) -> Result<Tensor, NpyErrorKind> {
    let header_end = header_end(bytes)?;
    let header = Header::from_reader(&mut &bytes[..header_end])
        .map_err(|e| NpyErrorKind::Header(e.to_string()))?;
    let Some(descr) = header.type_descriptor.as_string().cloned() else {
        return Err(NpyErrorKind::WrongDtype {
            found: "a structured dtype".into(),
            descr: header.type_descriptor.to_string(),
        });
    };
    let element = match descr.as_str() {
        "<f4" | ">f4" | "=f4" => Element::F32,
        "<f8" | ">f8" | "=f8" => Element::F64,
        _ => {
            return Err(NpyErrorKind::WrongDtype {
                found: DtypeName(&descr).to_string(),
                descr,
            })
        }
    };
    let shape = header.shape.clone();
    if let Some(expected) = expected {
        if expected != shape.as_slice() {
            return Err(NpyErrorKind::WrongShape {
                expected: expected.to_vec(),
                found: shape,
            });
        }
    }
    let item = match element {
        Element::F32 => 4u64,
        Element::F64 => 8,
    };
    let needed = shape
        .iter()
        .try_fold(item, |acc, &d| acc.checked_mul(d as u64))
        .unwrap_or(u64::MAX);
    let present = (bytes.len() - header_end) as u64;
    if present < needed {
        return Err(NpyErrorKind::Truncated {
            shape,
            needed,
            present,
        });
    }
    if present > needed {
        return Err(NpyErrorKind::TrailingBytes(present - needed));
    }
    let data_err = |e: ndarray_npy::ReadNpyError| NpyErrorKind::Data(e.to_string());
    let data: Vec<f32> = match element {
        Element::F32 => ArrayD::<f32>::read_npy(bytes)
            .map_err(data_err)?
            .iter()
            .copied()
            .collect(),
        Element::F64 => ArrayD::<f64>::read_npy(bytes)
            .map_err(data_err)?
            .iter()
            .map(|&v| v as f32)
            .collect(),
    };
    Tensor::from_vec(&shape, data)
        .ok_or_else(|| NpyErrorKind::Data("element count differs from the shape".into()))
}

/// Finds where the header ends, checking the claimed header length against the buffer
/// (format 1.0 stores it as a u16 at offset 8, formats 2.0 and 3.0 as a u32).
fn header_end(bytes: &[u8]) -> Result<usize, NpyErrorKind> {
    const MAGIC: &[u8] = b"\x93NUMPY";
    let bad = |m: &str| NpyErrorKind::Header(m.to_string());
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(bad("missing the \\x93NUMPY magic string"));
    }
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            let b = bytes
                .get(8..12)
                .ok_or_else(|| bad("file ends inside the header length"))?;
            (u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize, 12)
        }
        v => return Err(bad(&format!("unsupported format version {v}"))),
    };
    let end = start + len;
    if end > bytes.len() {
        return Err(NpyErrorKind::Header(format!(
            "header claims {len} bytes but the file has only {}",
            bytes.len() - start
        )));
    }
    Ok(end)
}

/// NumPy's name for a simple descriptor such as `<i8` (`int64`).
struct DtypeName<'a>(&'a str);

impl fmt::Display for DtypeName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let body = self.0.trim_start_matches(['<', '>', '=', '|']);
        let (kind, size) = body.split_at(body.len().min(1));
        let bits = size.parse::<u32>().ok().map(|s| s * 8);
        match (kind, bits) {
            ("f", Some(b)) => write!(f, "float{b}"),
            ("i", Some(b)) => write!(f, "int{b}"),
            ("u", Some(b)) => write!(f, "uint{b}"),
            ("c", Some(b)) => write!(f, "complex{b}"),
            ("b", _) => write!(f, "bool"),
            _ => write!(f, "{}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/npy")
            .join(name)
    }

    /// value[i, j] = (3i + j)/4 − 1, as tools/make_npy_fixtures.py defines it.
    fn base_values() -> Vec<f32> {
        (0..6).map(|k| k as f32 / 4.0 - 1.0).collect()
    }

    #[test]
    fn reads_numpy_written_f32_f64_fortran_and_big_endian_files() {
        for name in [
            "f32_2x3.npy",
            "f64_2x3.npy",
            "f32_2x3_fortran.npy",
            "f32_2x3_bigendian.npy",
        ] {
            let t = read_npy(&fixture(name)).unwrap();
            assert_eq!(t.shape, vec![2, 3], "{name}");
            assert_eq!(t.data, base_values(), "{name}");
        }
        let mean = read_npy_expect(&fixture("f32_1x3x2x2.npy"), &[1, 3, 2, 2]).unwrap();
        let want: Vec<f32> = (0..12)
            .map(|i| (10 * (i / 4) + 2 * ((i / 2) % 2) + i % 2) as f32)
            .collect();
        assert_eq!(mean.data, want);
    }

    #[test]
    fn written_file_has_numpy_save_header_fields_and_data_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.npy");
        write_npy(&out, &Tensor::from_vec(&[2, 3], base_values()).unwrap()).unwrap();
        let ours = std::fs::read(&out).unwrap();
        let numpy = std::fs::read(fixture("f32_2x3.npy")).unwrap();
        // Same total length (header padded to 64 bytes), magic, version and data bytes.
        assert_eq!(ours.len(), numpy.len());
        assert_eq!(ours[..10], numpy[..10]);
        assert_eq!(ours[128..], numpy[128..]);
        let header = |b: &[u8]| Header::from_reader(&mut &b[..]).unwrap();
        let (a, b) = (header(&ours), header(&numpy));
        assert_eq!(
            (a.type_descriptor, a.shape, a.layout.is_fortran()),
            (b.type_descriptor, b.shape, b.layout.is_fortran())
        );
        assert_eq!(read_npy(&out).unwrap().data, base_values());
    }

    #[test]
    fn wrong_dtype_names_the_file_and_the_dtype() {
        let e = read_npy(&fixture("i64_2x3.npy")).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("i64_2x3.npy") && msg.contains("int64"),
            "{msg}"
        );
        assert!(matches!(e.kind, NpyErrorKind::WrongDtype { .. }));
        let msg = read_npy(&fixture("f16_2x3.npy")).unwrap_err().to_string();
        assert!(msg.contains("float16"), "{msg}");
    }

    #[test]
    fn wrong_shape_gives_expected_and_found() {
        let e = read_npy_expect(&fixture("f32_2x3.npy"), &[3, 2]).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: shape is [2, 3], expected [3, 2]",
                fixture("f32_2x3.npy").display()
            )
        );
    }

    #[test]
    fn truncated_files_and_lying_headers_are_refused_before_allocation() {
        let e = read_npy(&fixture("f32_2x3_truncated.npy")).unwrap_err();
        assert!(
            matches!(
                e.kind,
                NpyErrorKind::Truncated {
                    needed: 24,
                    present: 19,
                    ..
                }
            ),
            "{e}"
        );
        // A header that claims a 100000 x 100000 x 100000 array over 24 bytes of data.
        let original = std::fs::read(fixture("f32_2x3.npy")).unwrap();
        let text = String::from_utf8_lossy(&original[10..128]).into_owned();
        let forged = text.replace("(2, 3)", "(100000, 100000, 100000)");
        let forged = forged.replacen(&" ".repeat(18), "", 1);
        assert_eq!(forged.len(), text.len());
        let mut bytes = original[..10].to_vec();
        bytes.extend_from_slice(forged.as_bytes());
        bytes.extend_from_slice(&original[128..]);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("huge.npy");
        std::fs::write(&p, &bytes).unwrap();
        let e = read_npy(&p).unwrap_err();
        assert!(matches!(e.kind, NpyErrorKind::Truncated { .. }), "{e}");
        // A header length field pointing past the end of the file.
        bytes[8] = 0xff;
        bytes[9] = 0xff;
        std::fs::write(&p, &bytes).unwrap();
        let e = read_npy(&p).unwrap_err();
        assert!(matches!(e.kind, NpyErrorKind::Header(_)), "{e}");
        std::fs::write(&p, b"not an npy").unwrap();
        assert!(read_npy(&p).unwrap_err().to_string().contains("magic"));
    }

    #[test]
    fn inconsistent_tensor_is_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("bad.npy");
        let t = Tensor {
            shape: vec![2, 2],
            data: vec![0.0; 3],
        };
        assert!(write_npy(&out, &t).is_err());
        assert!(!out.exists());
    }
}
