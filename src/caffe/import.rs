//! `NetParameter` → [`Net`]: upgrade, filter by phase, convert every layer, resolve
//! in-place blobs and check the topology.
//!
//! Inputs declared as `input` + `input_dim`, `input` + `input_shape` or an `Input` layer
//! all become [`Net::inputs`]; the `Input` layer itself is not an IR layer.
//!
//! In-place layers (`top == bottom`, Caffe's ReLU/Dropout idiom) get a distinct IR top
//! named after the layer (`relu1`, made unique with `_1`, `_2`, … if that name is taken),
//! so every IR blob has one producer; [`Layer::caffe_tops`] keeps the Caffe name, and later
//! consumers of that Caffe blob read the newest IR blob, as they would in Caffe.

use super::blob::tensor_from_blob;
use super::error::{CaffeError, NetError};
use super::import_ops::op_from_layer;
use super::state::{filter_net, layer_phase, NetStateFilter};
use super::upgrade::upgrade_net;
use super::weights::{canonical_rank_shape, conform_weights};
use crate::ir::{InputSpec, IrError, Layer, Net, Op, ParamSpec, Phase};
use crate::proto::caffe::{LayerParameter, NetParameter};
use std::collections::{HashMap, HashSet};

/// Converts a net (any syntax version) for `phase` (deploy = TEST). Shapes are inferred
/// and checked when every source has a known shape (see [`check_net`]).
pub fn net_from_proto(param: &NetParameter, phase: Phase) -> Result<Net, CaffeError> {
    Ok(net_from_proto_state(param, &phase.into())?)
}

/// [`net_from_proto`] for a full Caffe `NetState` (phase, level, stages).
pub fn net_from_proto_state(param: &NetParameter, state: &NetStateFilter) -> Result<Net, NetError> {
    let mut upgraded = param.clone();
    upgrade_net(&mut upgraded)?;
    let filtered = filter_net(&upgraded, state)?;
    let mut net = build_net(&filtered)?;
    check_net(&mut net)?;
    Ok(net)
}

/// Checks a freshly built net: when every source has a known shape, infers all shapes
/// (which also checks weight shapes) and reshapes legacy 4-D weight blobs to the shapes
/// the ops expect; otherwise (a `Data` layer whose record shape comes from its LMDB) only
/// checks that every bottom is produced by an earlier layer or input.
pub fn check_net(net: &mut Net) -> Result<(), NetError> {
    if has_unknown_source_shape(net) {
        check_bottoms(net)?;
    } else {
        let shapes = net.infer_shapes()?;
        conform_weights(net, &shapes);
    }
    Ok(())
}

/// True when a `Data` layer's record shape is not known yet (it is read from the LMDB).
pub fn has_unknown_source_shape(net: &Net) -> bool {
    net.layers
        .iter()
        .any(|l| matches!(&l.op, Op::Data(d) if d.record_shape.is_none()))
}

/// Every bottom must be an input or a top of an earlier layer (Caffe's "Unknown bottom
/// blob" check); no layer name and no top may repeat.
pub fn check_bottoms(net: &Net) -> Result<(), IrError> {
    let mut produced: HashSet<&str> = net.inputs.iter().map(|i| i.name.as_str()).collect();
    let mut names = HashSet::new();
    for l in &net.layers {
        if !names.insert(l.name.as_str()) {
            return Err(IrError::Duplicate(format!(
                "two layers are named '{}'",
                l.name
            )));
        }
        if let Some(b) = l.bottoms.iter().find(|b| !produced.contains(b.as_str())) {
            return Err(IrError::UnknownBottom {
                layer: l.name.clone(),
                bottom: b.clone(),
            });
        }
        for t in &l.tops {
            if !produced.insert(t.as_str()) {
                return Err(IrError::Duplicate(format!(
                    "layer '{}': blob '{t}' has two producers",
                    l.name
                )));
            }
        }
    }
    Ok(())
}

/// Shapes of an `Input` layer's tops: one shape for all tops, or one per top.
fn input_shapes(l: &LayerParameter) -> Result<Vec<Vec<usize>>, NetError> {
    let shapes = l
        .input_param
        .as_ref()
        .map(|p| p.shape.as_slice())
        .unwrap_or(&[]);
    let first_top = l.top.first().cloned().unwrap_or_default();
    let dims = |s: &crate::proto::caffe::BlobShape| -> Result<Vec<usize>, NetError> {
        s.dim
            .iter()
            .map(|&d| {
                usize::try_from(d).map_err(|_| NetError::InputShape {
                    blob: first_top.clone(),
                    msg: format!("layer '{}' gives a negative dimension {d}", l.name()),
                })
            })
            .collect()
    };
    match shapes.len() {
        1 => Ok(vec![dims(&shapes[0])?; l.top.len()]),
        n if n == l.top.len() && n > 0 => shapes.iter().map(dims).collect(),
        n => Err(NetError::InputShape {
            blob: first_top.clone(),
            msg: format!(
                "Input layer '{}' has {} top(s) and {n} shape(s); give one shape or one per top",
                l.name(),
                l.top.len()
            ),
        }),
    }
}

/// Converts an upgraded, filtered net layer by layer (no shape checks).
pub fn build_net(param: &NetParameter) -> Result<Net, NetError> {
    let mut net = Net {
        name: param.name().to_string(),
        ..Default::default()
    };
    // Every Caffe blob name is reserved so that renamed in-place tops never collide.
    let mut taken: HashSet<String> = param.layer.iter().flat_map(|l| l.top.clone()).collect();
    let mut latest: HashMap<String, String> = HashMap::new();
    for l in &param.layer {
        if l.r#type() == "Input" {
            for (top, shape) in l.top.iter().zip(input_shapes(l)?) {
                net.inputs.push(InputSpec {
                    name: top.clone(),
                    shape,
                });
                latest.insert(top.clone(), top.clone());
            }
            continue;
        }
        let op = op_from_layer(l)?;
        let bottoms: Vec<String> = l
            .bottom
            .iter()
            .map(|b| latest.get(b).cloned().unwrap_or_else(|| b.clone()))
            .collect();
        let mut tops = Vec::with_capacity(l.top.len());
        for (i, t) in l.top.iter().enumerate() {
            let ir_name = if l.bottom.get(i) == Some(t) {
                unique_name(l.name(), &mut taken)
            } else {
                t.clone()
            };
            latest.insert(t.clone(), ir_name.clone());
            tops.push(ir_name);
        }
        let mut layer = Layer::new(l.name(), op, bottoms, tops);
        layer.caffe_tops = l.top.clone();
        layer.params = l
            .param
            .iter()
            .map(|p| ParamSpec {
                name: p.name().to_string(),
                lr_mult: p.lr_mult(),
                decay_mult: p.decay_mult(),
            })
            .collect();
        layer.loss_weight = l.loss_weight.clone();
        layer.phase = layer_phase(l);
        layer.blobs = l
            .blobs
            .iter()
            .enumerate()
            .map(|(index, b)| {
                let t = tensor_from_blob(b).map_err(|source| NetError::Blob {
                    layer: l.name().into(),
                    index,
                    source,
                })?;
                let shape = canonical_rank_shape(&layer.op, index, &t.shape);
                Ok(t.reshaped(&shape).expect("same element count"))
            })
            .collect::<Result<_, NetError>>()?;
        net.layers.push(layer);
    }
    Ok(net)
}

/// `base`, or `base_1`, `base_2`, … : the first name not yet taken (and now reserved).
fn unique_name(base: &str, taken: &mut HashSet<String>) -> String {
    let mut name = base.to_string();
    let mut n = 0;
    while taken.contains(&name) {
        n += 1;
        name = format!("{base}_{n}");
    }
    taken.insert(name.clone());
    name
}

#[cfg(test)]
#[path = "import_tests.rs"]
mod tests;
