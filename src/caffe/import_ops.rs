//! One current-syntax `LayerParameter` → one [`Op`], applying Caffe's defaults and the
//! checks its `LayerSetUp` functions make (kernel/stride/pad forms, `concat_dim` vs `axis`,
//! global pooling without a kernel, …). Fillers are converted here too.

use super::error::NetError;
use crate::ir::{Filler, Op, VarianceNorm};
use crate::ops::{
    activation::{PReluParams, ReluParams},
    batchnorm::{BatchNormParams, ScaleParams},
    concat::ConcatParams,
    conv::ConvParams,
    data::{DataParams, TransformParams},
    deconv::DeconvParams,
    dropout::DropoutParams,
    eltwise::{EltwiseOp, EltwiseParams},
    inner_product::InnerProductParams,
    loss::{AccuracyParams, Normalization, SoftmaxLossParams},
    lrn::{LrnParams, NormRegion},
    pool::{PoolMethod, PoolParams, RoundMode},
    reshape::{FlattenParams, ReshapeParams},
    softmax::SoftmaxParams,
};
use crate::proto::caffe::{
    eltwise_parameter::EltwiseOp as ProtoEltwise,
    filler_parameter::VarianceNorm as ProtoNorm,
    loss_parameter::NormalizationMode,
    lrn_parameter::NormRegion as ProtoRegion,
    pooling_parameter::{PoolMethod as ProtoPool, RoundMode as ProtoRound},
    ConvolutionParameter, FillerParameter, LayerParameter, PoolingParameter,
};

/// Builds an error for layer `l`.
fn invalid(l: &LayerParameter, msg: impl Into<String>) -> NetError {
    NetError::InvalidParam {
        layer: l.name().into(),
        kind: l.r#type().into(),
        msg: msg.into(),
    }
}

/// Converts a `FillerParameter` (Caffe's `GetFiller`); `None` gives `default`. The
/// gaussian `sparse` option is not represented and is ignored.
pub fn filler_from_proto(
    l: &LayerParameter,
    f: Option<&FillerParameter>,
    default: Filler,
) -> Result<Filler, NetError> {
    let Some(f) = f else {
        return Ok(default);
    };
    let norm = match f.variance_norm() {
        ProtoNorm::FanIn => VarianceNorm::FanIn,
        ProtoNorm::FanOut => VarianceNorm::FanOut,
        ProtoNorm::Average => VarianceNorm::Average,
    };
    Ok(match f.r#type() {
        "constant" => Filler::Constant { value: f.value() },
        "gaussian" => Filler::Gaussian {
            mean: f.mean(),
            std: f.std(),
        },
        "uniform" => Filler::Uniform {
            min: f.min(),
            max: f.max(),
        },
        "xavier" => Filler::Xavier { norm },
        "msra" => Filler::Msra { norm },
        "positive_unitball" => Filler::PositiveUnitball,
        other => return Err(invalid(l, format!("unsupported filler type '{other}'"))),
    })
}

/// Caffe's `(h, w)` from a repeated field (one value for both axes, or one per axis;
/// `default` when empty) or its `_h`/`_w` pair (`BaseConvolutionLayer::LayerSetUp`).
fn conv_pair(
    l: &LayerParameter,
    what: &str,
    repeated: &[u32],
    h: Option<u32>,
    w: Option<u32>,
    default: usize,
) -> Result<[usize; 2], NetError> {
    if h.is_some() || w.is_some() {
        if !repeated.is_empty() {
            return Err(invalid(
                l,
                format!(
                    "either {what} or {base}_h/{base}_w should be specified; not both",
                    base = what.trim_end_matches("_size")
                ),
            ));
        }
        // As in Caffe, the pair replaces the repeated field and a missing half reads as
        // the proto default 0 (so `stride_h` alone is a zero-stride error, `pad_h` alone
        // pads only the height).
        return Ok([h.unwrap_or(0) as usize, w.unwrap_or(0) as usize]);
    }
    match repeated {
        [] => Ok([default; 2]),
        [v] => Ok([*v as usize; 2]),
        [a, b] => Ok([*a as usize, *b as usize]),
        _ => Err(invalid(
            l,
            format!(
                "{what} has {} values; 2-D convolution takes 1 or 2",
                repeated.len()
            ),
        )),
    }
}

fn conv_params(l: &LayerParameter, p: &ConvolutionParameter) -> Result<ConvParams, NetError> {
    if p.axis() != 1 && p.axis() != -3 {
        return Err(invalid(l, "only channel axis 1 (N×C×H×W) is supported"));
    }
    if p.kernel_size.is_empty() && p.kernel_h.is_none() && p.kernel_w.is_none() {
        return Err(invalid(
            l,
            "kernel_size or kernel_h and kernel_w are required",
        ));
    }
    if (p.kernel_h.is_some() || p.kernel_w.is_some())
        && (p.kernel_h.is_none() || p.kernel_w.is_none())
    {
        return Err(invalid(l, "both kernel_h and kernel_w are required"));
    }
    let kernel = conv_pair(l, "kernel_size", &p.kernel_size, p.kernel_h, p.kernel_w, 0)?;
    let stride = conv_pair(l, "stride", &p.stride, p.stride_h, p.stride_w, 1)?;
    let pad = conv_pair(l, "pad", &p.pad, p.pad_h, p.pad_w, 0)?;
    let dilation = conv_pair(l, "dilation", &p.dilation, None, None, 1)?;
    if kernel.contains(&0) || stride.contains(&0) || dilation.contains(&0) {
        return Err(invalid(
            l,
            format!(
                "kernel {kernel:?}, stride {stride:?} and dilation {dilation:?} must be positive"
            ),
        ));
    }
    if p.num_output() == 0 {
        return Err(invalid(l, "num_output must be positive"));
    }
    if p.group() == 0 {
        return Err(invalid(l, "group must be positive"));
    }
    Ok(ConvParams {
        num_output: p.num_output() as usize,
        kernel,
        stride,
        pad,
        pad_end: None,
        dilation,
        group: p.group() as usize,
        bias_term: p.bias_term(),
        weight_filler: filler_from_proto(l, p.weight_filler.as_ref(), Filler::default())?,
        bias_filler: filler_from_proto(l, p.bias_filler.as_ref(), Filler::default())?,
    })
}

fn pool_params(l: &LayerParameter, p: &PoolingParameter) -> Result<PoolParams, NetError> {
    let method = match p.pool() {
        ProtoPool::Max => PoolMethod::Max,
        ProtoPool::Ave => PoolMethod::Ave,
        ProtoPool::Stochastic => return Err(invalid(l, "STOCHASTIC pooling is not supported")),
    };
    let global = p.global_pooling();
    let has_kernel = p.kernel_size.is_some() || p.kernel_h.is_some() || p.kernel_w.is_some();
    let kernel = if global {
        if has_kernel {
            return Err(invalid(
                l,
                "with global_pooling: true the filter size cannot be specified",
            ));
        }
        [1, 1]
    } else {
        match (p.kernel_size, p.kernel_h, p.kernel_w) {
            (Some(k), None, None) => [k as usize; 2],
            (None, Some(h), Some(w)) => [h as usize, w as usize],
            (Some(_), _, _) => {
                return Err(invalid(
                    l,
                    "filter size is kernel_size OR kernel_h and kernel_w; not both",
                ))
            }
            _ => {
                return Err(invalid(
                    l,
                    "kernel_size, or both kernel_h and kernel_w, are required",
                ))
            }
        }
    };
    let pair =
        |what: &str, one: Option<u32>, h: Option<u32>, w: Option<u32>, d: u32| match (one, h, w) {
            (one, None, None) => Ok([one.unwrap_or(d) as usize; 2]),
            (None, Some(h), Some(w)) => Ok([h as usize, w as usize]),
            _ => Err(invalid(
                l,
                format!("{what} is {what} OR {what}_h and {what}_w are required"),
            )),
        };
    let pad = pair("pad", p.pad, p.pad_h, p.pad_w, 0)?;
    let stride = pair("stride", p.stride, p.stride_h, p.stride_w, 1)?;
    if global && (pad != [0, 0] || stride != [1, 1]) {
        return Err(invalid(
            l,
            "with global_pooling: true only pad = 0 and stride = 1 are allowed",
        ));
    }
    if kernel.contains(&0) || stride.contains(&0) {
        return Err(invalid(l, "kernel and stride must be positive"));
    }
    if pad[0] >= kernel[0] || pad[1] >= kernel[1] {
        return Err(invalid(
            l,
            format!("pad {pad:?} must be smaller than kernel {kernel:?}"),
        ));
    }
    let round = match p.round_mode() {
        ProtoRound::Ceil => RoundMode::Ceil,
        ProtoRound::Floor => RoundMode::Floor,
    };
    Ok(PoolParams {
        method,
        kernel,
        stride,
        pad,
        global,
        round,
    })
}

/// The op of a current-syntax layer. `Input` layers are handled by the caller (they become
/// net inputs); every other type outside the supported set is an error naming the layer.
pub fn op_from_layer(l: &LayerParameter) -> Result<Op, NetError> {
    Ok(match l.r#type() {
        "Data" => {
            let d = l.data_param.clone().unwrap_or_default();
            let t = l.transform_param.clone().unwrap_or_default();
            Op::Data(DataParams {
                source: d.source().into(),
                batch_size: d.batch_size() as usize,
                transform: TransformParams {
                    scale: t.scale(),
                    mirror: t.mirror(),
                    crop_size: t.crop_size() as usize,
                    mean_file: t.mean_file.clone(),
                    mean_value: t.mean_value.clone(),
                },
                record_shape: None,
            })
        }
        "Convolution" => {
            let p = l.convolution_param.clone().unwrap_or_default();
            Op::Convolution(conv_params(l, &p)?)
        }
        "Deconvolution" => {
            let p = l.convolution_param.clone().unwrap_or_default();
            Op::Deconvolution(DeconvParams(conv_params(l, &p)?))
        }
        "Pooling" => {
            let p = l.pooling_param.unwrap_or_default();
            Op::Pooling(pool_params(l, &p)?)
        }
        "LRN" => {
            let p = l.lrn_param.unwrap_or_default();
            Op::Lrn(LrnParams {
                local_size: p.local_size() as usize,
                alpha: p.alpha(),
                beta: p.beta(),
                k: p.k(),
                region: match p.norm_region() {
                    ProtoRegion::AcrossChannels => NormRegion::AcrossChannels,
                    ProtoRegion::WithinChannel => NormRegion::WithinChannel,
                },
            })
        }
        "ReLU" => Op::Relu(ReluParams {
            negative_slope: l
                .relu_param
                .as_ref()
                .map(|p| p.negative_slope())
                .unwrap_or(0.0),
        }),
        "PReLU" => {
            let p = l.prelu_param.clone().unwrap_or_default();
            let default = PReluParams::default();
            Op::PRelu(PReluParams {
                channel_shared: p.channel_shared(),
                filler: filler_from_proto(l, p.filler.as_ref(), default.filler)?,
            })
        }
        "Sigmoid" => Op::Sigmoid,
        "TanH" => Op::TanH,
        "InnerProduct" => {
            let p = l.inner_product_param.clone().unwrap_or_default();
            if p.num_output() == 0 {
                return Err(invalid(l, "num_output must be positive"));
            }
            Op::InnerProduct(InnerProductParams {
                num_output: p.num_output() as usize,
                bias_term: p.bias_term(),
                axis: p.axis(),
                transpose: p.transpose(),
                weight_filler: filler_from_proto(l, p.weight_filler.as_ref(), Filler::default())?,
                bias_filler: filler_from_proto(l, p.bias_filler.as_ref(), Filler::default())?,
            })
        }
        "Dropout" => {
            let ratio = l
                .dropout_param
                .as_ref()
                .map(|p| p.dropout_ratio())
                .unwrap_or(0.5);
            if !(0.0..1.0).contains(&ratio) {
                return Err(invalid(
                    l,
                    format!("dropout_ratio {ratio} must be in [0, 1)"),
                ));
            }
            Op::Dropout(DropoutParams { ratio })
        }
        "Softmax" => Op::Softmax(SoftmaxParams {
            axis: l.softmax_param.as_ref().map(|p| p.axis()).unwrap_or(1),
        }),
        "SoftmaxWithLoss" => {
            let loss = l.loss_param.unwrap_or_default();
            let normalization = match (loss.normalization, loss.normalize) {
                (Some(_), _) | (None, None) => match loss.normalization() {
                    NormalizationMode::Full => Normalization::Full,
                    NormalizationMode::Valid => Normalization::Valid,
                    NormalizationMode::BatchSize => Normalization::BatchSize,
                    NormalizationMode::None => Normalization::None,
                },
                (None, Some(true)) => Normalization::Valid,
                (None, Some(false)) => Normalization::BatchSize,
            };
            Op::SoftmaxWithLoss(SoftmaxLossParams {
                axis: l.softmax_param.as_ref().map(|p| p.axis()).unwrap_or(1),
                ignore_label: loss.ignore_label,
                normalization,
            })
        }
        "Accuracy" => {
            let p = l.accuracy_param.unwrap_or_default();
            Op::Accuracy(AccuracyParams {
                top_k: p.top_k() as usize,
                axis: p.axis(),
                ignore_label: p.ignore_label,
            })
        }
        "Concat" => {
            let p = l.concat_param.unwrap_or_default();
            let axis = match (p.axis, p.concat_dim) {
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        l,
                        "either axis or concat_dim should be specified; not both",
                    ))
                }
                (None, Some(d)) => i32::try_from(d)
                    .map_err(|_| invalid(l, format!("concat_dim {d} is out of range")))?,
                (a, None) => a.unwrap_or(1),
            };
            Op::Concat(ConcatParams { axis })
        }
        "Eltwise" => {
            let p = l.eltwise_param.clone().unwrap_or_default();
            Op::Eltwise(EltwiseParams {
                op: match p.operation() {
                    ProtoEltwise::Prod => EltwiseOp::Prod,
                    ProtoEltwise::Sum => EltwiseOp::Sum,
                    ProtoEltwise::Max => EltwiseOp::Max,
                },
                coeffs: p.coeff.clone(),
            })
        }
        "Flatten" => {
            let p = l.flatten_param.unwrap_or_default();
            Op::Flatten(FlattenParams {
                axis: p.axis(),
                end_axis: p.end_axis(),
            })
        }
        "Reshape" => {
            let p = l.reshape_param.clone().unwrap_or_default();
            Op::Reshape(ReshapeParams {
                dims: p.shape.clone().map(|s| s.dim).unwrap_or_default(),
                axis: p.axis(),
                num_axes: p.num_axes(),
            })
        }
        "Split" => Op::Split,
        "BatchNorm" => {
            let p = l.batch_norm_param.unwrap_or_default();
            Op::BatchNorm(BatchNormParams {
                use_global_stats: p.use_global_stats,
                moving_average_fraction: p.moving_average_fraction(),
                eps: p.eps(),
            })
        }
        "Scale" => {
            let p = l.scale_param.clone().unwrap_or_default();
            let default = ScaleParams::default();
            Op::Scale(ScaleParams {
                axis: p.axis(),
                num_axes: p.num_axes(),
                bias_term: p.bias_term(),
                filler: filler_from_proto(l, p.filler.as_ref(), default.filler)?,
                bias_filler: filler_from_proto(l, p.bias_filler.as_ref(), default.bias_filler)?,
            })
        }
        other => {
            return Err(NetError::UnsupportedType {
                layer: l.name().into(),
                kind: other.into(),
            })
        }
    })
}
