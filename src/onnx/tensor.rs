//! `TensorProto` ↔ IR tensors: f32 weights as little-endian `raw_data` (what ONNX's own
//! writers produce), int64 shape tensors, and reading every storage form other tools use:
//! `raw_data`, typed fields (`float_data`, `int64_data`, …) and external data files
//! (`location`, `offset`, `length`, relative to the model's directory, as the ONNX external
//! data spec defines). Claimed sizes are checked against the bytes really present before
//! anything is allocated.

use super::pb::tensor_proto::{DataLocation, DataType};
use super::pb::TensorProto;
use super::{OnnxError, OnnxResult, MAX_ELEMENTS};
use crate::ir::Tensor;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path};

/// A float initializer with `raw_data` in little-endian order.
pub fn f32_proto(name: &str, t: &Tensor) -> TensorProto {
    let mut raw = Vec::with_capacity(t.data.len() * 4);
    for v in &t.data {
        raw.extend_from_slice(&v.to_le_bytes());
    }
    TensorProto {
        name: name.into(),
        dims: t.shape.iter().map(|&d| d as i64).collect(),
        data_type: DataType::Float as i32,
        raw_data: raw,
        ..Default::default()
    }
}

/// An int64 tensor (shapes, pads), stored in `int64_data`.
pub fn i64_proto(name: &str, dims: &[usize], values: &[i64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: DataType::Int64 as i32,
        int64_data: values.to_vec(),
        ..Default::default()
    }
}

/// The values of a constant, by kind. Float types (f16, f32, f64, bf16) become f32;
/// integer and bool types become i64.
#[derive(Debug, Clone, PartialEq)]
pub enum ConstData {
    /// Floating-point values.
    F32(Vec<f32>),
    /// Integer values.
    I64(Vec<i64>),
}

/// A constant tensor read from an initializer or a `Constant` node.
#[derive(Debug, Clone, PartialEq)]
pub struct Const {
    /// Dimensions (empty for a scalar).
    pub dims: Vec<usize>,
    /// The values in C order.
    pub data: ConstData,
}

impl Const {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match &self.data {
            ConstData::F32(v) => v.len(),
            ConstData::I64(v) => v.len(),
        }
    }

    /// True for an empty tensor.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values as f32 (integers converted).
    pub fn to_f32(&self) -> Vec<f32> {
        match &self.data {
            ConstData::F32(v) => v.clone(),
            ConstData::I64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    /// As an IR tensor of the constant's shape.
    pub fn to_tensor(&self) -> Tensor {
        Tensor {
            shape: self.dims.clone(),
            data: self.to_f32(),
        }
    }

    /// The values as integers; `None` for float constants.
    pub fn as_i64(&self) -> Option<&[i64]> {
        match &self.data {
            ConstData::I64(v) => Some(v),
            ConstData::F32(_) => None,
        }
    }

    /// The single value of a one-element constant.
    pub fn scalar(&self) -> Option<f32> {
        (self.len() == 1).then(|| self.to_f32()[0])
    }
}

/// Validates ONNX dims and returns them with their element count, refusing negative dims
/// and counts above [`MAX_ELEMENTS`] (checked with overflow detection).
pub fn checked_dims(name: &str, dims: &[i64]) -> OnnxResult<(Vec<usize>, usize)> {
    let mut out = Vec::with_capacity(dims.len());
    let mut count: usize = 1;
    for &d in dims {
        let u = usize::try_from(d)
            .map_err(|_| OnnxError::tensor(name, format!("negative dimension {d} in {dims:?}")))?;
        count = count
            .checked_mul(u)
            .filter(|&c| c <= MAX_ELEMENTS)
            .ok_or_else(|| {
                OnnxError::tensor(
                    name,
                    format!("dims {dims:?} exceed the limit of {MAX_ELEMENTS} elements"),
                )
            })?;
        out.push(u);
    }
    Ok((out, count))
}

fn elem_size(dt: DataType) -> Option<usize> {
    Some(match dt {
        DataType::Float | DataType::Int32 | DataType::Uint32 => 4,
        DataType::Double | DataType::Int64 | DataType::Uint64 => 8,
        DataType::Float16 | DataType::Bfloat16 | DataType::Int16 | DataType::Uint16 => 2,
        DataType::Int8 | DataType::Uint8 | DataType::Bool => 1,
        _ => return None,
    })
}

/// Decodes little-endian bytes of type `dt` into values.
fn decode_bytes(dt: DataType, b: &[u8]) -> ConstData {
    macro_rules! ints {
        ($t:ty, $n:expr) => {
            ConstData::I64(
                b.chunks_exact($n)
                    .map(|c| <$t>::from_le_bytes(c.try_into().unwrap_or([0; $n])) as i64)
                    .collect(),
            )
        };
    }
    match dt {
        DataType::Float => ConstData::F32(
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        DataType::Double => ConstData::F32(
            b.chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32)
                .collect(),
        ),
        DataType::Float16 => ConstData::F32(
            b.chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
        ),
        DataType::Bfloat16 => ConstData::F32(
            b.chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
        ),
        DataType::Int64 => ints!(i64, 8),
        DataType::Uint64 => ints!(u64, 8),
        DataType::Int32 => ints!(i32, 4),
        DataType::Uint32 => ints!(u32, 4),
        DataType::Int16 => ints!(i16, 2),
        DataType::Uint16 => ints!(u16, 2),
        DataType::Int8 => ConstData::I64(b.iter().map(|&x| x as i8 as i64).collect()),
        DataType::Uint8 | DataType::Bool => ConstData::I64(b.iter().map(|&x| x as i64).collect()),
        _ => ConstData::I64(Vec::new()),
    }
}

/// Reads an external-data tensor's bytes: `location` must be a relative path inside the
/// model's directory; `offset` and `length` are checked against the file's real size.
fn read_external(tp: &TensorProto, model_dir: Option<&Path>, want: usize) -> OnnxResult<Vec<u8>> {
    let name = tp.name.as_str();
    let mut location = None;
    let mut offset = 0u64;
    let mut length = None;
    for e in &tp.external_data {
        let parse = |v: &str| {
            v.parse::<u64>().map_err(|_| {
                OnnxError::tensor(
                    name,
                    format!("external data '{}' is not a number: {v}", e.key),
                )
            })
        };
        match e.key.as_str() {
            "location" => location = Some(e.value.clone()),
            "offset" => offset = parse(&e.value)?,
            "length" => length = Some(parse(&e.value)?),
            _ => {}
        }
    }
    let location =
        location.ok_or_else(|| OnnxError::tensor(name, "external data without a 'location'"))?;
    let rel = Path::new(&location);
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(OnnxError::tensor(
            name,
            format!("external data location '{location}' must be a relative path inside the model's directory"),
        ));
    }
    let dir = model_dir.ok_or_else(|| {
        OnnxError::tensor(
            name,
            format!("external data '{location}' needs the model's directory (load the model from a file)"),
        )
    })?;
    let path = dir.join(rel);
    let io = |source| OnnxError::Io {
        path: path.clone(),
        source,
    };
    let mut f = std::fs::File::open(&path).map_err(io)?;
    let size = f.metadata().map_err(io)?.len();
    let length = length.unwrap_or(size.saturating_sub(offset));
    let end = offset.checked_add(length);
    if end.is_none_or(|e| e > size) {
        return Err(OnnxError::tensor(
            name,
            format!(
                "external data {} bytes at offset {offset} run past the end of {} ({size} bytes)",
                length,
                path.display()
            ),
        ));
    }
    if length != want as u64 {
        return Err(OnnxError::tensor(
            name,
            format!("external data holds {length} bytes, the dims need {want}"),
        ));
    }
    f.seek(SeekFrom::Start(offset)).map_err(io)?;
    let mut buf = vec![0u8; want];
    f.read_exact(&mut buf).map_err(io)?;
    Ok(buf)
}

/// Reads any initializer or constant. `model_dir` resolves external data.
pub fn read_const(tp: &TensorProto, model_dir: Option<&Path>) -> OnnxResult<Const> {
    let name = tp.name.as_str();
    let dt = DataType::try_from(tp.data_type)
        .map_err(|_| OnnxError::tensor(name, format!("unknown data type {}", tp.data_type)))?;
    let size = elem_size(dt).ok_or_else(|| {
        OnnxError::tensor(
            name,
            format!("data type {} is not supported", dt.as_str_name()),
        )
    })?;
    let (dims, count) = checked_dims(name, &tp.dims)?;
    let want_bytes = count * size;
    let mismatch = |found: usize, what: &str| {
        OnnxError::tensor(
            name,
            format!(
                "dims {:?} need {count} values but {what} holds {found}",
                tp.dims
            ),
        )
    };
    let data = if tp.data_location == Some(DataLocation::External as i32) {
        decode_bytes(dt, &read_external(tp, model_dir, want_bytes)?)
    } else if !tp.raw_data.is_empty() {
        if tp.raw_data.len() != want_bytes {
            return Err(mismatch(tp.raw_data.len() / size, "raw_data"));
        }
        decode_bytes(dt, &tp.raw_data)
    } else {
        match dt {
            DataType::Float => ConstData::F32(tp.float_data.clone()),
            DataType::Double => ConstData::F32(tp.double_data.iter().map(|&x| x as f32).collect()),
            // float16/bfloat16 values are stored as their bit patterns in int32_data.
            DataType::Float16 => ConstData::F32(
                tp.int32_data
                    .iter()
                    .map(|&x| half::f16::from_bits(x as u16).to_f32())
                    .collect(),
            ),
            DataType::Bfloat16 => ConstData::F32(
                tp.int32_data
                    .iter()
                    .map(|&x| half::bf16::from_bits(x as u16).to_f32())
                    .collect(),
            ),
            DataType::Int64 => ConstData::I64(tp.int64_data.clone()),
            DataType::Uint64 | DataType::Uint32 => {
                ConstData::I64(tp.uint64_data.iter().map(|&x| x as i64).collect())
            }
            _ => ConstData::I64(tp.int32_data.iter().map(|&x| x as i64).collect()),
        }
    };
    let c = Const { dims, data };
    if c.len() != count {
        return Err(mismatch(c.len(), "the tensor"));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::pb::StringStringEntryProto;

    #[test]
    fn raw_data_round_trip_keeps_bits() {
        let t = Tensor::from_vec(&[2, 2], vec![1.5, -0.0, f32::MIN_POSITIVE, 3e38]).unwrap();
        let p = f32_proto("w", &t);
        // ONNX raw_data is little-endian: 1.5f32 = 0x3FC00000.
        assert_eq!(&p.raw_data[..4], &[0x00, 0x00, 0xC0, 0x3F]);
        let back = read_const(&p, None).unwrap();
        assert_eq!(
            back.to_tensor()
                .data
                .iter()
                .map(|v| v.to_bits())
                .collect::<Vec<_>>(),
            t.data.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn huge_dims_are_refused_before_allocating() {
        let p = TensorProto {
            name: "big".into(),
            dims: vec![1 << 31, 1 << 31],
            data_type: DataType::Float as i32,
            raw_data: vec![0; 8],
            ..Default::default()
        };
        let e = read_const(&p, None).unwrap_err().to_string();
        assert!(e.contains("big") && e.contains("exceed"), "{e}");
        let p = TensorProto { dims: vec![4], ..p };
        let e = read_const(&p, None).unwrap_err().to_string();
        assert!(e.contains("need 4 values") && e.contains("holds 2"), "{e}");
    }

    #[test]
    fn float16_values_decode_exactly() {
        // 0x3C00 = 1.0, 0xC000 = -2.0, 0x3555 ≈ 0.333251953125 in IEEE half precision.
        let p = TensorProto {
            name: "h".into(),
            dims: vec![3],
            data_type: DataType::Float16 as i32,
            int32_data: vec![0x3C00, 0xC000, 0x3555],
            ..Default::default()
        };
        assert_eq!(
            read_const(&p, None).unwrap().to_f32(),
            vec![1.0, -2.0, 0.333_251_95]
        );
    }

    #[test]
    fn external_data_is_bounds_checked() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = vec![0u8; 4];
        bytes.extend_from_slice(&2.5f32.to_le_bytes());
        bytes.extend_from_slice(&(-1.0f32).to_le_bytes());
        std::fs::write(dir.path().join("w.bin"), &bytes).unwrap();
        let entry = |k: &str, v: &str| StringStringEntryProto {
            key: k.into(),
            value: v.into(),
        };
        let mut p = TensorProto {
            name: "ext".into(),
            dims: vec![2],
            data_type: DataType::Float as i32,
            data_location: Some(DataLocation::External as i32),
            external_data: vec![
                entry("location", "w.bin"),
                entry("offset", "4"),
                entry("length", "8"),
            ],
            ..Default::default()
        };
        assert_eq!(
            read_const(&p, Some(dir.path())).unwrap().to_f32(),
            vec![2.5, -1.0]
        );
        p.external_data[1] = entry("offset", "8");
        let e = read_const(&p, Some(dir.path())).unwrap_err().to_string();
        assert!(e.contains("run past the end"), "{e}");
        p.external_data[0] = entry("location", "../w.bin");
        let e = read_const(&p, Some(dir.path())).unwrap_err().to_string();
        assert!(e.contains("relative path inside"), "{e}");
    }
}
