//! [`Net`] → Caffe: a current-syntax `NetParameter`, written as a prototxt (text) or a
//! caffemodel (binary), both through the atomic writer.
//!
//! Inputs become one `Input` layer each, named after the blob (as BVLC's own deploy files
//! do). In-place layers are written back in place: each IR blob is written under the Caffe
//! name its producer recorded in [`crate::ir::Layer::caffe_tops`]. The binary form puts
//! fields in field-number order, like C++ protobuf, because `proto/caffe.proto` declares
//! them in that order and prost encodes in declaration order.

use super::blob::blob_from_tensor;
use super::error::CaffeError;
use super::export_ops::op_into_layer;
use super::state::phase_to_proto;
use super::text_writer::to_text;
use crate::ir::{Net, Op};
use crate::proto::caffe::{
    BlobShape, InputParameter, LayerParameter, NetParameter, NetStateRule, ParamSpec,
};
use crate::util::atomic::atomic_write;
use prost::Message;
use std::collections::HashMap;
use std::path::Path;

/// The net as a current-syntax `NetParameter`; learned blobs are included when
/// `with_weights` (a caffemodel) and left out otherwise (a prototxt).
pub fn net_to_proto(net: &Net, with_weights: bool) -> NetParameter {
    let mut caffe_name: HashMap<&str, &str> = HashMap::new();
    for l in &net.layers {
        for (i, t) in l.tops.iter().enumerate() {
            let name = l.caffe_tops.get(i).unwrap_or(t);
            caffe_name.insert(t.as_str(), name.as_str());
        }
    }
    let mut param = NetParameter {
        name: (!net.name.is_empty()).then(|| net.name.clone()),
        ..Default::default()
    };
    for input in &net.inputs {
        param.layer.push(LayerParameter {
            name: Some(input.name.clone()),
            r#type: Some("Input".into()),
            top: vec![input.name.clone()],
            input_param: Some(InputParameter {
                shape: vec![BlobShape {
                    dim: input.shape.iter().map(|&d| d as i64).collect(),
                }],
            }),
            ..Default::default()
        });
    }
    for l in &net.layers {
        let tops = if l.caffe_tops.len() == l.tops.len() {
            l.caffe_tops.clone()
        } else {
            l.tops.clone()
        };
        let mut p = LayerParameter {
            name: Some(l.name.clone()),
            bottom: l
                .bottoms
                .iter()
                .map(|b| caffe_name.get(b.as_str()).copied().unwrap_or(b).to_string())
                .collect(),
            top: tops,
            loss_weight: l.loss_weight.clone(),
            param: l
                .params
                .iter()
                .map(|s| ParamSpec {
                    name: (!s.name.is_empty()).then(|| s.name.clone()),
                    lr_mult: Some(s.lr_mult),
                    decay_mult: Some(s.decay_mult),
                    ..Default::default()
                })
                .collect(),
            include: l
                .phase
                .map(|ph| NetStateRule {
                    phase: Some(phase_to_proto(ph)),
                    ..Default::default()
                })
                .into_iter()
                .collect(),
            ..Default::default()
        };
        // Caffe pads both sides equally: an asymmetric (TensorFlow SAME) convolution is
        // written as its exact symmetric equivalent with zero taps (`to_symmetric`);
        // `check_caffe_expressible` refuses the rare case that has none.
        let symmetric = match &l.op {
            Op::Convolution(c) if !c.is_symmetric() => c
                .to_symmetric(&l.blobs)
                .map(|(c, blobs)| (Op::Convolution(c), blobs)),
            _ => None,
        };
        let (op, blobs) = match &symmetric {
            Some((op, blobs)) => (op, blobs.as_slice()),
            None => (&l.op, l.blobs.as_slice()),
        };
        if with_weights {
            p.blobs = blobs.iter().map(blob_from_tensor).collect();
        }
        op_into_layer(op, &mut p);
        param.layer.push(p);
    }
    param
}

/// Refuses a net that Caffe's format cannot hold: an asymmetric convolution padding whose
/// two sides differ by a non-multiple of the dilation (no zero-tap equivalent exists).
pub fn check_caffe_expressible(net: &Net) -> Result<(), CaffeError> {
    for l in &net.layers {
        if let Op::Convolution(c) = &l.op {
            if c.to_symmetric(&[]).is_none() {
                return Err(CaffeError::Unsupported(format!(
                    "layer '{}': padding begin {:?} / end {:?} with dilation {:?} has no symmetric Caffe equivalent; export it to ONNX instead",
                    l.name,
                    c.pad,
                    c.end_pad(),
                    c.dilation
                )));
            }
        }
    }
    Ok(())
}

/// The net as prototxt text (current syntax, one field per line, no weights).
pub fn net_to_prototxt(net: &Net) -> String {
    to_text(&net_to_proto(net, false))
}

/// Writes the net definition as a prototxt, atomically.
pub fn write_prototxt(net: &Net, path: &Path) -> Result<(), CaffeError> {
    check_caffe_expressible(net)?;
    Ok(atomic_write(path, net_to_prototxt(net).as_bytes())?)
}

/// The net with its weights as caffemodel bytes (V2 `layer` entries, `BlobShape` dims).
pub fn caffemodel_bytes(net: &Net) -> Vec<u8> {
    net_to_proto(net, true).encode_to_vec()
}

/// Writes the net with its weights as a caffemodel, atomically.
pub fn write_caffemodel(net: &Net, path: &Path) -> Result<(), CaffeError> {
    check_caffe_expressible(net)?;
    Ok(atomic_write(path, &caffemodel_bytes(net))?)
}

#[cfg(test)]
#[path = "export_tests.rs"]
mod tests;
