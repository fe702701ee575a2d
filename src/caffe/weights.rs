//! Learned blobs: copying them from a caffemodel by layer name (Caffe's
//! `Net::CopyTrainedLayersFrom`), giving legacy 4-D blobs the shapes the ops expect, and
//! filling the layers a caffemodel does not cover with their fillers.

use super::blob::tensor_from_blob;
use super::error::NetError;
use crate::ir::{BlobShapes, Filler, Layer, Net, Op, Tensor};
use crate::ops::deconv::DeconvParams;
use crate::proto::caffe::NetParameter;
use rand::SeedableRng;
use std::collections::HashMap;

/// Seed of the fill used when a caffemodel leaves a layer without weights: fixed, so that
/// loading the same files twice gives the same net.
pub const DEFAULT_FILL_SEED: u64 = 1701;

/// Number of learned blobs a layer has in Caffe (weights, then bias; BatchNorm: mean,
/// variance, moving-average factor).
pub fn expected_blob_count(layer: &Layer) -> usize {
    match &layer.op {
        Op::Convolution(p) | Op::Deconvolution(DeconvParams(p)) => 1 + p.bias_term as usize,
        Op::InnerProduct(p) => 1 + p.bias_term as usize,
        Op::PRelu(_) => 1,
        Op::BatchNorm(_) => 3,
        Op::Scale(p) => (layer.bottoms.len() < 2) as usize + p.bias_term as usize,
        _ => 0,
    }
}

/// The fillers of a layer's blobs, in blob order (BatchNorm statistics start at zero).
pub fn layer_fillers(layer: &Layer) -> Vec<Filler> {
    let zero = Filler::default;
    let mut v = match &layer.op {
        Op::Convolution(p) | Op::Deconvolution(DeconvParams(p)) => {
            vec![p.weight_filler.clone(), p.bias_filler.clone()]
        }
        Op::InnerProduct(p) => vec![p.weight_filler.clone(), p.bias_filler.clone()],
        Op::PRelu(p) => vec![p.filler.clone()],
        Op::BatchNorm(_) => vec![zero(), zero(), zero()],
        Op::Scale(p) if layer.bottoms.len() < 2 => vec![p.filler.clone(), p.bias_filler.clone()],
        Op::Scale(p) => vec![p.bias_filler.clone()],
        _ => vec![],
    };
    v.truncate(expected_blob_count(layer));
    v
}

/// The rank blob `index` of `op` has in the current layout, when it does not depend on
/// bottom shapes: Convolution and Deconvolution weights 4, InnerProduct weights 2, biases, PReLU slopes and
/// BatchNorm statistics 1, Scale `num_axes`.
fn expected_rank(op: &Op, index: usize) -> Option<usize> {
    match (op, index) {
        (Op::Convolution(_) | Op::Deconvolution(_), 0) => Some(4),
        (Op::InnerProduct(_), 0) => Some(2),
        (Op::Convolution(_) | Op::Deconvolution(_) | Op::InnerProduct(_), _) => Some(1),
        (Op::PRelu(_) | Op::BatchNorm(_), _) => Some(1),
        (Op::Scale(p), _) if p.num_axes >= 0 => Some(p.num_axes as usize),
        _ => None,
    }
}

/// A legacy 4-D blob shape (`[1, 1, 500, 800]` for an InnerProduct, `[1, 1, 1, 500]` for a
/// bias) with its leading 1-dims dropped down to the rank the op expects, which is how
/// Caffe's `ShapeEquals` lets such blobs load. Other shapes are returned unchanged.
pub fn canonical_rank_shape(op: &Op, index: usize, shape: &[usize]) -> Vec<usize> {
    let mut s = shape.to_vec();
    if let Some(rank) = expected_rank(op, index) {
        while s.len() > rank && s[0] == 1 {
            s.remove(0);
        }
    }
    s
}

/// Gives every learned blob exactly the shape its op expects (they already passed
/// Caffe's legacy `ShapeEquals` rule in `Net::infer_shapes`, so only legacy leading 1-dims
/// change).
pub fn conform_weights(net: &mut Net, shapes: &BlobShapes) {
    for l in &mut net.layers {
        if l.blobs.is_empty() {
            continue;
        }
        let bottoms: Vec<Vec<usize>> = l
            .bottoms
            .iter()
            .filter_map(|b| shapes.get(b).cloned())
            .collect();
        for (blob, want) in l.blobs.iter_mut().zip(l.op.weight_shapes(&bottoms)) {
            if blob.shape != want && blob.len() == want.iter().product::<usize>() {
                blob.shape = want;
            }
        }
    }
}

/// Copies learned blobs from `source` (an upgraded caffemodel) into the layers of `net`
/// with the same name, as `CopyTrainedLayersFrom` does: source layers with no counterpart
/// are ignored (the train net's data, loss, accuracy and split layers), a blob count that
/// differs from what the layer needs is an error. Returns the names of the layers that need
/// weights and got none. Shapes are checked afterwards by `Net::infer_shapes`.
pub fn copy_weights_by_name(net: &mut Net, source: &NetParameter) -> Result<Vec<String>, NetError> {
    let index: HashMap<String, usize> = net
        .layers
        .iter()
        .enumerate()
        .map(|(i, l)| (l.name.clone(), i))
        .collect();
    let mut got = vec![false; net.layers.len()];
    for src in &source.layer {
        let Some(&i) = index.get(src.name()) else {
            continue;
        };
        let layer = &mut net.layers[i];
        let expected = expected_blob_count(layer);
        if src.blobs.len() != expected {
            return Err(NetError::BlobCount {
                layer: layer.name.clone(),
                expected,
                found: src.blobs.len(),
            });
        }
        layer.blobs = src
            .blobs
            .iter()
            .enumerate()
            .map(|(index, b)| {
                let t = tensor_from_blob(b).map_err(|source| NetError::Blob {
                    layer: layer.name.clone(),
                    index,
                    source,
                })?;
                let shape = canonical_rank_shape(&layer.op, index, &t.shape);
                Ok(t.reshaped(&shape).expect("same element count"))
            })
            .collect::<Result<Vec<Tensor>, NetError>>()?;
        got[i] = true;
    }
    Ok(net
        .layers
        .iter()
        .zip(got)
        .filter(|(l, got)| !got && expected_blob_count(l) > 0)
        .map(|(l, _)| l.name.clone())
        .collect())
}

/// Fills every layer that needs learned blobs and has none with its fillers (Caffe's
/// initialisation: the default filler is constant 0, so an unfilled layer gets zeros),
/// drawing random fillers from a generator seeded with `seed`, in layer order. Returns the
/// names of the filled layers. Shapes must be inferable (no `Data` layer of unknown
/// record shape); used by `bench --random-weights` and by loading with a caffemodel that
/// lacks some layers.
pub fn fill_missing_weights(net: &mut Net, seed: u64) -> Result<Vec<String>, NetError> {
    fill_missing(net, seed, false)
}

/// Like [`fill_missing_weights`], but a weight blob whose filler is Caffe's default
/// (constant 0) is drawn from gaussian(0, 0.01) instead (the `bench --random-weights` rule): deploy prototxts rarely name fillers,
/// and all-zero weights would make every activation after the first layer constant, which
/// is no use for benchmarks or smoke tests. Biases keep their fillers.
pub fn fill_missing_weights_random(net: &mut Net, seed: u64) -> Result<Vec<String>, NetError> {
    fill_missing(net, seed, true)
}

/// Largest number of values in one blob: Caffe's `Blob::Reshape` refuses a count above
/// `INT_MAX` ("blob size exceeds INT_MAX"), so a net needing more is not a Caffe net.
pub const MAX_BLOB_COUNT: usize = i32::MAX as usize;

/// Refuses a weight shape whose value count overflows or exceeds [`MAX_BLOB_COUNT`], before
/// a filler allocates it (a hostile `num_output: 1000000000` would otherwise abort).
fn check_blob_size(l: &Layer, shape: &[usize]) -> Result<(), NetError> {
    let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    match count {
        Some(c) if c <= MAX_BLOB_COUNT => Ok(()),
        _ => Err(NetError::InvalidParam {
            layer: l.name.clone(),
            kind: l.op.caffe_type().into(),
            msg: format!(
                "weight shape {shape:?} exceeds Caffe's limit of {MAX_BLOB_COUNT} values per \
                 blob (INT_MAX)"
            ),
        }),
    }
}

fn fill_missing(net: &mut Net, seed: u64, random_default: bool) -> Result<Vec<String>, NetError> {
    let shapes = net.infer_shapes()?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut filled = Vec::new();
    for l in &mut net.layers {
        if !l.blobs.is_empty() || expected_blob_count(l) == 0 {
            continue;
        }
        let bottoms: Vec<Vec<usize>> = l
            .bottoms
            .iter()
            .filter_map(|b| shapes.get(b).cloned())
            .collect();
        let mut fillers = layer_fillers(l);
        if let Some(w) = fillers.first_mut() {
            let has_weight_matrix = matches!(
                l.op,
                Op::Convolution(_) | Op::Deconvolution(_) | Op::InnerProduct(_)
            );
            if random_default && has_weight_matrix && *w == Filler::default() {
                *w = Filler::Gaussian {
                    mean: 0.0,
                    std: 0.01,
                };
            }
        }
        let shapes = l.op.weight_shapes(&bottoms);
        for shape in &shapes {
            check_blob_size(l, shape)?;
        }
        l.blobs = shapes
            .iter()
            .zip(&fillers)
            .map(|(shape, f)| f.fill(shape, &mut rng))
            .collect();
        filled.push(l.name.clone());
    }
    Ok(filled)
}

#[cfg(test)]
#[path = "weights_tests.rs"]
mod tests;
