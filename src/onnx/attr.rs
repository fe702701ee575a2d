//! Building and reading ONNX node attributes (`AttributeProto`), with typed errors that
//! name the node.

use super::pb::{attribute_proto::AttributeType, AttributeProto, NodeProto};
use super::{OnnxError, OnnxResult};

/// An INT attribute.
pub fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i: v,
        ..Default::default()
    }
}

/// An INTS attribute.
pub fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: v.to_vec(),
        ..Default::default()
    }
}

/// A FLOAT attribute.
pub fn float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Float as i32,
        f: v,
        ..Default::default()
    }
}

/// Usizes as ONNX ints.
pub fn to_i64s(v: &[usize]) -> Vec<i64> {
    v.iter().map(|&x| x as i64).collect()
}

fn find<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn check_type(node: &NodeProto, a: &AttributeProto, want: AttributeType) -> OnnxResult<()> {
    // Old writers leave `type` unset (0); accept that as "whatever field is filled".
    if a.r#type != 0 && a.r#type != want as i32 {
        return Err(OnnxError::node(
            node,
            format!(
                "attribute '{}' has type {}, expected {}",
                a.name,
                AttributeType::try_from(a.r#type)
                    .map(|t| t.as_str_name())
                    .unwrap_or("?"),
                want.as_str_name()
            ),
        ));
    }
    Ok(())
}

/// An optional INT attribute.
pub fn get_int(node: &NodeProto, name: &str) -> OnnxResult<Option<i64>> {
    match find(node, name) {
        None => Ok(None),
        Some(a) => {
            check_type(node, a, AttributeType::Int)?;
            Ok(Some(a.i))
        }
    }
}

/// An optional INTS attribute.
pub fn get_ints(node: &NodeProto, name: &str) -> OnnxResult<Option<Vec<i64>>> {
    match find(node, name) {
        None => Ok(None),
        Some(a) => {
            check_type(node, a, AttributeType::Ints)?;
            Ok(Some(a.ints.clone()))
        }
    }
}

/// An optional FLOAT attribute.
pub fn get_float(node: &NodeProto, name: &str) -> OnnxResult<Option<f32>> {
    match find(node, name) {
        None => Ok(None),
        Some(a) => {
            check_type(node, a, AttributeType::Float)?;
            Ok(Some(a.f))
        }
    }
}

/// An optional STRING attribute (UTF-8).
pub fn get_string(node: &NodeProto, name: &str) -> OnnxResult<Option<String>> {
    match find(node, name) {
        None => Ok(None),
        Some(a) => {
            check_type(node, a, AttributeType::String)?;
            String::from_utf8(a.s.clone())
                .map(Some)
                .map_err(|_| OnnxError::node(node, format!("attribute '{name}' is not UTF-8")))
        }
    }
}

/// An INTS attribute converted to non-negative sizes.
pub fn get_sizes(node: &NodeProto, name: &str) -> OnnxResult<Option<Vec<usize>>> {
    match get_ints(node, name)? {
        None => Ok(None),
        Some(v) => v
            .iter()
            .map(|&x| {
                usize::try_from(x)
                    .ok()
                    .filter(|&x| x <= u32::MAX as usize)
                    .ok_or_else(|| {
                        OnnxError::node(
                            node,
                            format!("attribute '{name}' has an invalid value {x}"),
                        )
                    })
            })
            .collect::<OnnxResult<Vec<_>>>()
            .map(Some),
    }
}

/// The raw attribute, for TENSOR-valued ones (Constant).
pub fn get_raw<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    find(node, name)
}
