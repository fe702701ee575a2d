//! Legacy syntax → current syntax, as Caffe's `UpgradeNetAsNeeded` (`upgrade_proto.cpp`)
//! does before building a net, applied in the same order:
//!
//! 1. data transformation: V1 `DATA`/`IMAGE_DATA`/`WINDOW_DATA` layers keep `scale`,
//!    `mean_file`, `crop_size` and `mirror` in their data parameters; they move into
//!    `transform_param` (`UpgradeNetDataTransformation`);
//! 2. V1 → V2: `layers { type: CONVOLUTION }` becomes `layer { type: "Convolution" }`,
//!    `blobs_lr`/`weight_decay`/`param`/`blob_share_mode` become `param { lr_mult
//!    decay_mult name share_mode }`, everything else is copied (`UpgradeV1Net`);
//! 3. inputs: `input` + `input_dim` (4 per input) or `input` + `input_shape` become one
//!    `Input` layer in front, named `input` as Caffe names it (`UpgradeNetInput`); a bare
//!    `input` without dims (old caffemodels) is simply dropped;
//! 4. BatchNorm layers that declare three `param` entries lose them (`UpgradeNetBatchNorm`).
//!
//! One fork rule is added: `ceil_mode` (OpenCV/SSD forks, our private field 10013) becomes
//! `round_mode` (true → CEIL, false → FLOOR). Pre-V1 (V0) layers are refused.

use super::error::NetError;
use crate::proto::caffe::{
    pooling_parameter::RoundMode, v1_layer_parameter::LayerType, BlobShape, InputParameter,
    LayerParameter, NetParameter, ParamSpec, TransformationParameter, V1LayerParameter,
};

/// True when the net uses any legacy syntax [`upgrade_net`] rewrites.
pub fn needs_upgrade(net: &NetParameter) -> bool {
    !net.layers.is_empty()
        || !net.input.is_empty()
        || !net.input_dim.is_empty()
        || !net.input_shape.is_empty()
        || net.layer.iter().any(|l| {
            (l.r#type() == "BatchNorm" && l.param.len() == 3)
                || l.pooling_param
                    .as_ref()
                    .is_some_and(|p| p.ceil_mode.is_some())
        })
}

/// Upgrades a net in place to the current syntax. Idempotent on current nets.
pub fn upgrade_net(net: &mut NetParameter) -> Result<(), NetError> {
    if !net.layers.is_empty() && !net.layer.is_empty() {
        return Err(NetError::Upgrade(
            "the net has both V1 'layers' and current 'layer' entries".into(),
        ));
    }
    let v1 = std::mem::take(&mut net.layers);
    for mut old in v1 {
        if old.layer.is_some() {
            return Err(NetError::Upgrade(format!(
                "layer '{}' uses the pre-V1 (V0) 'layer' syntax, which is not supported",
                old.name()
            )));
        }
        move_data_transform(&mut old);
        net.layer.push(upgrade_v1_layer(old));
    }
    upgrade_inputs(net)?;
    for layer in &mut net.layer {
        if layer.r#type() == "BatchNorm" && layer.param.len() == 3 {
            layer.param.clear();
        }
        if let Some(p) = layer.pooling_param.as_mut() {
            if let Some(ceil) = p.ceil_mode.take() {
                let mode = if ceil {
                    RoundMode::Ceil
                } else {
                    RoundMode::Floor
                };
                if p.round_mode.is_some_and(|m| m != mode as i32) {
                    return Err(NetError::InvalidParam {
                        layer: layer.name().into(),
                        kind: layer.r#type().into(),
                        msg: "ceil_mode and round_mode disagree".into(),
                    });
                }
                p.round_mode = Some(mode as i32);
            }
        }
    }
    Ok(())
}

/// Caffe's current type string for a V1 enum type (`UpgradeV1LayerType`). `NONE` maps to
/// the empty string, which no layer factory knows.
pub fn v1_type_name(t: LayerType) -> &'static str {
    use LayerType as T;
    match t {
        T::None => "",
        T::Absval => "AbsVal",
        T::Accuracy => "Accuracy",
        T::Argmax => "ArgMax",
        T::Bnll => "BNLL",
        T::Concat => "Concat",
        T::ContrastiveLoss => "ContrastiveLoss",
        T::Convolution => "Convolution",
        T::Deconvolution => "Deconvolution",
        T::Data => "Data",
        T::Dropout => "Dropout",
        T::DummyData => "DummyData",
        T::EuclideanLoss => "EuclideanLoss",
        T::Eltwise => "Eltwise",
        T::Exp => "Exp",
        T::Flatten => "Flatten",
        T::Hdf5Data => "HDF5Data",
        T::Hdf5Output => "HDF5Output",
        T::HingeLoss => "HingeLoss",
        T::Im2col => "Im2col",
        T::ImageData => "ImageData",
        T::InfogainLoss => "InfogainLoss",
        T::InnerProduct => "InnerProduct",
        T::Lrn => "LRN",
        T::MemoryData => "MemoryData",
        T::MultinomialLogisticLoss => "MultinomialLogisticLoss",
        T::Mvn => "MVN",
        T::Pooling => "Pooling",
        T::Power => "Power",
        T::Relu => "ReLU",
        T::Sigmoid => "Sigmoid",
        T::SigmoidCrossEntropyLoss => "SigmoidCrossEntropyLoss",
        T::Silence => "Silence",
        T::Softmax => "Softmax",
        T::SoftmaxLoss => "SoftmaxWithLoss",
        T::Split => "Split",
        T::Slice => "Slice",
        T::Tanh => "TanH",
        T::WindowData => "WindowData",
        T::Threshold => "Threshold",
    }
}

/// Moves the legacy transform fields of a V1 data layer's parameters into
/// `transform_param`, clearing them at the source.
fn move_data_transform(l: &mut V1LayerParameter) {
    let t = l.r#type();
    let fields = match t {
        LayerType::Data => l.data_param.as_mut().map(|p| {
            (
                p.scale.take(),
                p.mean_file.take(),
                p.crop_size.take(),
                p.mirror.take(),
            )
        }),
        LayerType::ImageData => l.image_data_param.as_mut().map(|p| {
            (
                p.scale.take(),
                p.mean_file.take(),
                p.crop_size.take(),
                p.mirror.take(),
            )
        }),
        LayerType::WindowData => l.window_data_param.as_mut().map(|p| {
            (
                p.scale.take(),
                p.mean_file.take(),
                p.crop_size.take(),
                p.mirror.take(),
            )
        }),
        _ => None,
    };
    let Some((scale, mean_file, crop_size, mirror)) = fields else {
        return;
    };
    if scale.is_none() && mean_file.is_none() && crop_size.is_none() && mirror.is_none() {
        return;
    }
    let tp = l
        .transform_param
        .get_or_insert_with(TransformationParameter::default);
    tp.scale = scale.or(tp.scale);
    tp.mean_file = mean_file.or(tp.mean_file.take());
    tp.crop_size = crop_size.or(tp.crop_size);
    tp.mirror = mirror.or(tp.mirror);
}

/// `UpgradeV1LayerParameter`: one V1 layer → one current layer.
fn upgrade_v1_layer(v1: V1LayerParameter) -> LayerParameter {
    let kind = v1_type_name(v1.r#type());
    let n = v1
        .param
        .len()
        .max(v1.blob_share_mode.len())
        .max(v1.blobs_lr.len())
        .max(v1.weight_decay.len());
    let params = (0..n)
        .map(|i| ParamSpec {
            name: v1.param.get(i).cloned(),
            share_mode: v1.blob_share_mode.get(i).copied(),
            lr_mult: v1.blobs_lr.get(i).copied(),
            decay_mult: v1.weight_decay.get(i).copied(),
        })
        .collect();
    LayerParameter {
        name: v1.name,
        r#type: v1.r#type.map(|_| kind.to_string()),
        bottom: v1.bottom,
        top: v1.top,
        loss_weight: v1.loss_weight,
        param: params,
        blobs: v1.blobs,
        include: v1.include,
        exclude: v1.exclude,
        transform_param: v1.transform_param,
        loss_param: v1.loss_param,
        accuracy_param: v1.accuracy_param,
        argmax_param: v1.argmax_param,
        concat_param: v1.concat_param,
        contrastive_loss_param: v1.contrastive_loss_param,
        convolution_param: v1.convolution_param,
        data_param: v1.data_param,
        dropout_param: v1.dropout_param,
        dummy_data_param: v1.dummy_data_param,
        eltwise_param: v1.eltwise_param,
        exp_param: v1.exp_param,
        hdf5_data_param: v1.hdf5_data_param,
        hdf5_output_param: v1.hdf5_output_param,
        hinge_loss_param: v1.hinge_loss_param,
        image_data_param: v1.image_data_param,
        infogain_loss_param: v1.infogain_loss_param,
        inner_product_param: v1.inner_product_param,
        lrn_param: v1.lrn_param,
        memory_data_param: v1.memory_data_param,
        mvn_param: v1.mvn_param,
        pooling_param: v1.pooling_param,
        power_param: v1.power_param,
        relu_param: v1.relu_param,
        sigmoid_param: v1.sigmoid_param,
        softmax_param: v1.softmax_param,
        slice_param: v1.slice_param,
        tanh_param: v1.tanh_param,
        threshold_param: v1.threshold_param,
        window_data_param: v1.window_data_param,
        ..Default::default()
    }
}

/// `UpgradeNetInput`: `input` fields → one `Input` layer in front of the net.
fn upgrade_inputs(net: &mut NetParameter) -> Result<(), NetError> {
    let inputs = std::mem::take(&mut net.input);
    let dims = std::mem::take(&mut net.input_dim);
    let shapes = std::mem::take(&mut net.input_shape);
    if dims.is_empty() && shapes.is_empty() {
        // A legacy caffemodel may list input names without dims; they carry nothing.
        return Ok(());
    }
    if !dims.is_empty() && !shapes.is_empty() {
        return Err(NetError::Upgrade(
            "give either input_shape or the deprecated input_dim, not both".into(),
        ));
    }
    let shapes: Vec<BlobShape> = if shapes.is_empty() {
        if dims.len() != 4 * inputs.len() {
            return Err(NetError::Upgrade(format!(
                "{} input(s) need {} input_dim values, found {}",
                inputs.len(),
                4 * inputs.len(),
                dims.len()
            )));
        }
        dims.chunks(4)
            .map(|c| BlobShape {
                dim: c.iter().map(|&d| d as i64).collect(),
            })
            .collect()
    } else {
        if shapes.len() != inputs.len() {
            return Err(NetError::Upgrade(format!(
                "{} input(s) but {} input_shape entries",
                inputs.len(),
                shapes.len()
            )));
        }
        shapes
    };
    let layer = LayerParameter {
        name: Some("input".into()),
        r#type: Some("Input".into()),
        top: inputs,
        input_param: Some(InputParameter { shape: shapes }),
        ..Default::default()
    };
    net.layer.insert(0, layer);
    Ok(())
}

#[cfg(test)]
#[path = "upgrade_tests.rs"]
mod tests;
