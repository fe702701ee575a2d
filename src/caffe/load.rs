//! The entry points: a net from a prototxt (with or without a caffemodel), and a net from a
//! caffemodel alone.

use super::caffemodel::read_caffemodel;
use super::error::{CaffeError, NetError};
use super::import::{build_net, check_net, has_unknown_source_shape, net_from_proto_state};
use super::prototxt::read_prototxt;
use super::state::{filter_net, NetStateFilter};
use super::weights::{copy_weights_by_name, fill_missing_weights, DEFAULT_FILL_SEED};
use crate::ir::{Net, Phase};
use crate::proto::caffe::{BlobShape, InputParameter, LayerParameter, NetParameter};
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// Loads a net definition for `phase` (deploy = TEST) and, when given, its weights.
///
/// Weights are matched by layer name, so a caffemodel of the train net (with data, loss,
/// accuracy and split layers) loads against a deploy prototxt. A layer the caffemodel does
/// not cover keeps its filler's values, as in Caffe (the default filler is constant 0, so
/// an empty caffemodel gives zero weights); random fillers are drawn with
/// [`DEFAULT_FILL_SEED`], and a warning on stderr names those layers. A blob count or
/// shape that does not fit is an error naming the layer (and the shapes).
pub fn load_net(prototxt: &Path, weights: Option<&Path>, phase: Phase) -> Result<Net, CaffeError> {
    let param = read_prototxt(prototxt)?;
    let mut net = net_from_proto_state(&param, &NetStateFilter::from(phase))
        .map_err(|e| CaffeError::in_file(prototxt, e))?;
    let Some(weights) = weights else {
        return Ok(net);
    };
    let source = read_caffemodel(weights)?;
    let in_weights = |e: NetError| CaffeError::in_file(weights, e);
    let missing = copy_weights_by_name(&mut net, &source).map_err(in_weights)?;
    if has_unknown_source_shape(&net) {
        if !missing.is_empty() {
            eprintln!(
                "warning: {} has no weights for layer(s) {}; they stay empty until the data \
                 shape is known (fill_missing_weights)",
                weights.display(),
                missing.join(", ")
            );
        }
        return Ok(net);
    }
    // Shapes first, so that a mismatch is reported as such rather than hidden by a fill.
    check_net(&mut net).map_err(in_weights)?;
    if !missing.is_empty() {
        fill_missing_weights(&mut net, DEFAULT_FILL_SEED).map_err(in_weights)?;
        eprintln!(
            "warning: {} has no weights for layer(s) {}; they keep their fillers' values \
             (constant fillers exactly, random ones seeded with {DEFAULT_FILL_SEED})",
            weights.display(),
            missing.join(", ")
        );
    }
    check_net(&mut net).map_err(in_weights)?;
    Ok(net)
}

/// Layer types that read data from outside the net (their first top is the image batch).
const SOURCE_TYPES: [&str; 8] = [
    "Data",
    "ImageData",
    "HDF5Data",
    "MemoryData",
    "WindowData",
    "DummyData",
    "Python",
    "Input",
];

/// True for layers a deploy net does not run: sources, losses, accuracy, silence.
fn is_train_only_type(t: &str) -> bool {
    SOURCE_TYPES.contains(&t) || t.ends_with("Loss") || t == "Accuracy" || t == "Silence"
}

/// Loads a net from a caffemodel alone; see [`load_caffemodel_net_with_input`].
pub fn load_caffemodel_net(path: &Path) -> Result<Net, CaffeError> {
    load_caffemodel_net_with_input(path, None)
}

/// Loads a net from a caffemodel alone: its own layers become the deploy (TEST) net.
///
/// What is done, in order: layers excluded from TEST are dropped; data sources, losses,
/// accuracy and silence layers are dropped; Split layers (Caffe inserts them when it saves
/// a train net) are removed and their consumers read the split blob directly; layers left
/// without their bottoms (label processing) are dropped. The input is the top of the net's
/// data layer that a deploy layer reads (or its `input` fields / `Input` layer). Its shape
/// is `input_shape` when given; otherwise `input`/`Input` shapes, a `MemoryData`/`DummyData`
/// shape, or `1 × C × crop × crop` for a `Data`/`ImageData` layer with `crop_size`, C being
/// read from the first convolution's weights. When none of these exist (an LMDB's record size is not
/// stored in the caffemodel), the error asks for a deploy prototxt or an input shape.
pub fn load_caffemodel_net_with_input(
    path: &Path,
    input_shape: Option<&[usize]>,
) -> Result<Net, CaffeError> {
    let param = read_caffemodel(path)?;
    let deploy =
        caffemodel_deploy_proto(&param, input_shape).map_err(|e| CaffeError::in_file(path, e))?;
    let mut net = build_net(&deploy).map_err(|e| CaffeError::in_file(path, e))?;
    check_net(&mut net).map_err(|e| CaffeError::in_file(path, e))?;
    Ok(net)
}

/// The deploy view of an upgraded caffemodel net (see [`load_caffemodel_net_with_input`]).
pub fn caffemodel_deploy_proto(
    param: &NetParameter,
    input_shape: Option<&[usize]>,
) -> Result<NetParameter, NetError> {
    let source = param
        .layer
        .iter()
        .find(|l| SOURCE_TYPES.contains(&l.r#type()) && !l.top.is_empty());
    let test = filter_net(param, &NetStateFilter::from(Phase::Test))?;
    let mut out = NetParameter {
        name: param.name.clone(),
        ..Default::default()
    };
    let blob = match source {
        Some(src) => data_top(src, &test),
        None => first_unproduced_bottom(&test).ok_or_else(|| NetError::InputShape {
            blob: String::new(),
            msg: "the net has no data layer, no input and no bottom to feed".into(),
        })?,
    };
    let shape = match (input_shape, source) {
        (Some(s), _) => s.iter().map(|&d| d as i64).collect(),
        (None, Some(src)) => source_shape(src, &blob, &test)?,
        (None, None) => {
            return Err(NetError::InputShape {
                blob,
                msg: "the caffemodel declares no input shape; give a deploy prototxt or an \
                      explicit input shape"
                    .into(),
            })
        }
    };
    out.layer.push(LayerParameter {
        name: Some(blob.clone()),
        r#type: Some("Input".into()),
        top: vec![blob],
        input_param: Some(InputParameter {
            shape: vec![BlobShape { dim: shape }],
        }),
        ..Default::default()
    });
    let mut rename: HashMap<String, String> = HashMap::new();
    let mut available: HashSet<String> = out.layer.iter().flat_map(|l| l.top.clone()).collect();
    for l in &test.layer {
        let kind = l.r#type();
        if is_train_only_type(kind) {
            continue;
        }
        let mut l = l.clone();
        for b in &mut l.bottom {
            if let Some(to) = rename.get(b.as_str()) {
                *b = to.clone();
            }
        }
        if !l.bottom.iter().all(|b| available.contains(b)) {
            continue;
        }
        if kind == "Split" && l.bottom.len() == 1 {
            for t in &l.top {
                rename.insert(t.clone(), l.bottom[0].clone());
            }
            continue;
        }
        available.extend(l.top.iter().cloned());
        out.layer.push(l);
    }
    Ok(out)
}

/// The top of a source layer that carries the images: the first one a layer of the deploy
/// net reads (HDF5 sources often list the label first), else the first top.
fn data_top(src: &LayerParameter, net: &NetParameter) -> String {
    let read_by_deploy_layer = |t: &String| {
        net.layer.iter().any(|l| {
            !is_train_only_type(l.r#type()) && l.r#type() != "Slice" && l.bottom.contains(t)
        })
    };
    src.top
        .iter()
        .find(|t| read_by_deploy_layer(t))
        .unwrap_or(&src.top[0])
        .clone()
}

/// The first bottom that no layer of the net produces (the implicit input of a legacy
/// caffemodel whose `input` fields carried no dims).
fn first_unproduced_bottom(net: &NetParameter) -> Option<String> {
    let produced: HashSet<&str> = net
        .layer
        .iter()
        .flat_map(|l| l.top.iter().map(String::as_str))
        .collect();
    net.layer
        .iter()
        .flat_map(|l| l.bottom.iter())
        .find(|b| !produced.contains(b.as_str()))
        .cloned()
}

/// The input shape a source layer implies, as described on
/// [`load_caffemodel_net_with_input`].
fn source_shape(
    src: &LayerParameter,
    blob: &str,
    net: &NetParameter,
) -> Result<Vec<i64>, NetError> {
    let unknown = |msg: &str| NetError::InputShape {
        blob: blob.into(),
        msg: format!(
            "{msg}; give a deploy prototxt or an explicit input shape (layer '{}', {})",
            src.name(),
            src.r#type()
        ),
    };
    match src.r#type() {
        "Input" => {
            let shapes = src.input_param.as_ref().map(|p| p.shape.as_slice());
            return shapes
                .and_then(|s| s.first())
                .map(|s| s.dim.clone())
                .ok_or_else(|| unknown("the Input layer has no shape"));
        }
        "MemoryData" => {
            let p = src.memory_data_param.unwrap_or_default();
            return Ok(vec![
                1,
                p.channels() as i64,
                p.height() as i64,
                p.width() as i64,
            ]);
        }
        "DummyData" => {
            let p = src.dummy_data_param.clone().unwrap_or_default();
            if let Some(s) = p.shape.first() {
                let mut dim = s.dim.clone();
                if let Some(n) = dim.first_mut() {
                    *n = 1;
                }
                return Ok(dim);
            }
            if let (Some(c), Some(h), Some(w)) =
                (p.channels.first(), p.height.first(), p.width.first())
            {
                return Ok(vec![1, *c as i64, *h as i64, *w as i64]);
            }
            return Err(unknown("the DummyData layer has no shape"));
        }
        _ => {}
    }
    let crop = src
        .transform_param
        .as_ref()
        .map(|t| t.crop_size())
        .unwrap_or(0);
    let (h, w) = match (crop, src.image_data_param.as_ref()) {
        (c, _) if c > 0 => (c, c),
        (_, Some(p)) if p.new_height() > 0 && p.new_width() > 0 => (p.new_height(), p.new_width()),
        _ => return Err(unknown("the caffemodel does not record the image size")),
    };
    let consumer = net.layer.iter().find(|l| {
        l.bottom.first().map(String::as_str) == Some(blob) && l.r#type() == "Convolution"
    });
    let channels = consumer.and_then(|l| {
        let b = l.blobs.first()?;
        let dims = super::blob::blob_shape(b).ok()?;
        let group = l.convolution_param.as_ref().map(|p| p.group()).unwrap_or(1);
        Some(*dims.get(1)? as i64 * group as i64)
    });
    let c = channels.ok_or_else(|| unknown("no convolution with weights reads the data"))?;
    Ok(vec![1, c, h as i64, w as i64])
}

#[cfg(test)]
#[path = "load_tests.rs"]
mod tests;
