//! One [`Op`] → the type string and `*_param` of a current-syntax `LayerParameter`.
//!
//! Only values that differ from Caffe's defaults are written (plus the values a reader
//! expects to see: `num_output`, the kernel size, the pooling method), so files stay as
//! short as hand-written ones and read back to the same op. Square kernels, strides and
//! pads use the single-value fields, others the `_h`/`_w` pairs.

use crate::ir::{Filler, Op, VarianceNorm};
use crate::ops::{
    activation::PReluParams,
    batchnorm::{BatchNormParams, ScaleParams},
    conv::ConvParams,
    deconv::DeconvParams,
    eltwise::EltwiseOp,
    loss::Normalization,
    lrn::{LrnParams, NormRegion},
    pool::{PoolMethod, PoolParams, RoundMode},
};
use crate::proto::caffe::{
    data_parameter::Db, eltwise_parameter::EltwiseOp as ProtoEltwise,
    filler_parameter::VarianceNorm as ProtoNorm, loss_parameter::NormalizationMode,
    lrn_parameter::NormRegion as ProtoRegion, pooling_parameter, AccuracyParameter,
    BatchNormParameter, BlobShape, ConcatParameter, ConvolutionParameter, DataParameter,
    DropoutParameter, EltwiseParameter, FillerParameter, FlattenParameter, InnerProductParameter,
    LayerParameter, LossParameter, LrnParameter, PReLuParameter, PoolingParameter, ReLuParameter,
    ReshapeParameter, ScaleParameter, SoftmaxParameter, TransformationParameter,
};

/// `Some(v)` when `v` differs from Caffe's default `d`.
fn nd<T: PartialEq>(v: T, d: T) -> Option<T> {
    (v != d).then_some(v)
}

/// A filler as `FillerParameter`, or `None` when it equals the layer's default filler.
pub fn filler_to_proto(f: &Filler, default: &Filler) -> Option<FillerParameter> {
    if f == default {
        return None;
    }
    let norm = |n: &VarianceNorm| {
        nd(
            match n {
                VarianceNorm::FanIn => ProtoNorm::FanIn,
                VarianceNorm::FanOut => ProtoNorm::FanOut,
                VarianceNorm::Average => ProtoNorm::Average,
            } as i32,
            ProtoNorm::FanIn as i32,
        )
    };
    let mut p = FillerParameter {
        r#type: Some(f.caffe_type().into()),
        ..Default::default()
    };
    match f {
        Filler::Constant { value } => p.value = nd(*value, 0.0),
        Filler::Gaussian { mean, std } => {
            p.mean = nd(*mean, 0.0);
            p.std = Some(*std);
        }
        Filler::Uniform { min, max } => {
            p.min = Some(*min);
            p.max = Some(*max);
        }
        Filler::Xavier { norm: n } | Filler::Msra { norm: n } => p.variance_norm = norm(n),
        Filler::PositiveUnitball => {}
    }
    Some(p)
}

/// `(single, h, w)`: the single-value field when both axes agree, else the pair; nothing
/// when the value is the default.
fn hw(v: [usize; 2], default: usize) -> (Option<u32>, Option<u32>, Option<u32>) {
    if v == [default; 2] {
        (None, None, None)
    } else if v[0] == v[1] {
        (Some(v[0] as u32), None, None)
    } else {
        (None, Some(v[0] as u32), Some(v[1] as u32))
    }
}

fn conv_to_proto(p: &ConvParams) -> ConvolutionParameter {
    let d = Filler::default();
    let mut c = ConvolutionParameter {
        num_output: Some(p.num_output as u32),
        bias_term: nd(p.bias_term, true),
        group: nd(p.group as u32, 1),
        weight_filler: filler_to_proto(&p.weight_filler, &d),
        bias_filler: filler_to_proto(&p.bias_filler, &d),
        ..Default::default()
    };
    if p.kernel[0] == p.kernel[1] {
        c.kernel_size = vec![p.kernel[0] as u32];
    } else {
        c.kernel_h = Some(p.kernel[0] as u32);
        c.kernel_w = Some(p.kernel[1] as u32);
    }
    let (s, sh, sw) = hw(p.stride, 1);
    c.stride = s.into_iter().collect();
    (c.stride_h, c.stride_w) = (sh, sw);
    let (pd, ph, pw) = hw(p.pad, 0);
    c.pad = pd.into_iter().collect();
    (c.pad_h, c.pad_w) = (ph, pw);
    if p.dilation != [1, 1] {
        c.dilation = if p.dilation[0] == p.dilation[1] {
            vec![p.dilation[0] as u32]
        } else {
            p.dilation.iter().map(|&v| v as u32).collect()
        };
    }
    c
}

fn pool_to_proto(p: &PoolParams) -> PoolingParameter {
    let mut q = PoolingParameter {
        pool: Some(match p.method {
            PoolMethod::Max => pooling_parameter::PoolMethod::Max,
            PoolMethod::Ave => pooling_parameter::PoolMethod::Ave,
        } as i32),
        global_pooling: p.global.then_some(true),
        round_mode: (p.round == RoundMode::Floor)
            .then_some(pooling_parameter::RoundMode::Floor as i32),
        ..Default::default()
    };
    if !p.global {
        if p.kernel[0] == p.kernel[1] {
            q.kernel_size = Some(p.kernel[0] as u32);
        } else {
            (q.kernel_h, q.kernel_w) = (Some(p.kernel[0] as u32), Some(p.kernel[1] as u32));
        }
        (q.stride, q.stride_h, q.stride_w) = hw(p.stride, 1);
        (q.pad, q.pad_h, q.pad_w) = hw(p.pad, 0);
    }
    q
}

fn lrn_to_proto(p: &LrnParams) -> LrnParameter {
    let d = LrnParams::default();
    LrnParameter {
        local_size: Some(p.local_size as u32),
        alpha: Some(p.alpha),
        beta: Some(p.beta),
        norm_region: (p.region == NormRegion::WithinChannel)
            .then_some(ProtoRegion::WithinChannel as i32),
        k: nd(p.k, d.k),
        ..Default::default()
    }
}

fn scale_to_proto(p: &ScaleParams) -> ScaleParameter {
    let d = ScaleParams::default();
    ScaleParameter {
        axis: nd(p.axis, d.axis),
        num_axes: nd(p.num_axes, d.num_axes),
        filler: filler_to_proto(&p.filler, &d.filler),
        bias_term: nd(p.bias_term, d.bias_term),
        bias_filler: filler_to_proto(&p.bias_filler, &d.bias_filler),
    }
}

fn batch_norm_to_proto(p: &BatchNormParams) -> BatchNormParameter {
    let d = BatchNormParams::default();
    BatchNormParameter {
        use_global_stats: p.use_global_stats,
        moving_average_fraction: nd(p.moving_average_fraction, d.moving_average_fraction),
        eps: nd(p.eps, d.eps),
    }
}

fn softmax_axis(axis: i32) -> Option<SoftmaxParameter> {
    (axis != 1).then(|| SoftmaxParameter {
        axis: Some(axis),
        ..Default::default()
    })
}

/// Sets `type` and the op's `*_param` on `l`. `Input` ops (not produced by the importer,
/// which turns inputs into [`crate::ir::Net::inputs`]) are written as `Input` layers.
pub fn op_into_layer(op: &Op, l: &mut LayerParameter) {
    l.r#type = Some(op.caffe_type().to_string());
    match op {
        Op::Input { shapes } => {
            l.input_param = Some(crate::proto::caffe::InputParameter {
                shape: shapes
                    .iter()
                    .map(|s| BlobShape {
                        dim: s.iter().map(|&d| d as i64).collect(),
                    })
                    .collect(),
            })
        }
        Op::Data(p) => {
            l.data_param = Some(DataParameter {
                source: Some(p.source.clone()),
                batch_size: Some(p.batch_size as u32),
                backend: Some(Db::Lmdb as i32),
                ..Default::default()
            });
            let t = &p.transform;
            let tp = TransformationParameter {
                scale: nd(t.scale, 1.0),
                mirror: t.mirror.then_some(true),
                crop_size: nd(t.crop_size as u32, 0),
                mean_file: t.mean_file.clone(),
                mean_value: t.mean_value.clone(),
                ..Default::default()
            };
            l.transform_param = (tp != TransformationParameter::default()).then_some(tp);
        }
        Op::Convolution(p) | Op::Deconvolution(DeconvParams(p)) => {
            l.convolution_param = Some(conv_to_proto(p))
        }
        Op::Pooling(p) => l.pooling_param = Some(pool_to_proto(p)),
        Op::Lrn(p) => l.lrn_param = Some(lrn_to_proto(p)),
        Op::Relu(p) => {
            l.relu_param = (p.negative_slope != 0.0).then(|| ReLuParameter {
                negative_slope: Some(p.negative_slope),
                ..Default::default()
            })
        }
        Op::PRelu(p) => {
            let d = PReluParams::default();
            let q = PReLuParameter {
                filler: filler_to_proto(&p.filler, &d.filler),
                channel_shared: p.channel_shared.then_some(true),
            };
            l.prelu_param = (q != PReLuParameter::default()).then_some(q);
        }
        Op::Sigmoid | Op::TanH | Op::Split => {}
        Op::InnerProduct(p) => {
            let d = Filler::default();
            l.inner_product_param = Some(InnerProductParameter {
                num_output: Some(p.num_output as u32),
                bias_term: nd(p.bias_term, true),
                weight_filler: filler_to_proto(&p.weight_filler, &d),
                bias_filler: filler_to_proto(&p.bias_filler, &d),
                axis: nd(p.axis, 1),
                transpose: p.transpose.then_some(true),
            })
        }
        Op::Dropout(p) => {
            l.dropout_param = Some(DropoutParameter {
                dropout_ratio: Some(p.ratio),
            })
        }
        Op::Softmax(p) => l.softmax_param = softmax_axis(p.axis),
        Op::SoftmaxWithLoss(p) => {
            l.softmax_param = softmax_axis(p.axis);
            let q = LossParameter {
                ignore_label: p.ignore_label,
                normalization: (p.normalization != Normalization::Valid).then_some(match p
                    .normalization
                {
                    Normalization::Full => NormalizationMode::Full,
                    Normalization::Valid => NormalizationMode::Valid,
                    Normalization::BatchSize => NormalizationMode::BatchSize,
                    Normalization::None => NormalizationMode::None,
                }
                    as i32),
                ..Default::default()
            };
            l.loss_param = (q != LossParameter::default()).then_some(q);
        }
        Op::Accuracy(p) => {
            let q = AccuracyParameter {
                top_k: nd(p.top_k as u32, 1),
                axis: nd(p.axis, 1),
                ignore_label: p.ignore_label,
            };
            l.accuracy_param = (q != AccuracyParameter::default()).then_some(q);
        }
        Op::Concat(p) => {
            l.concat_param = (p.axis != 1).then_some(ConcatParameter {
                axis: Some(p.axis),
                ..Default::default()
            })
        }
        Op::Eltwise(p) => {
            let q = EltwiseParameter {
                operation: (p.op != EltwiseOp::Sum).then_some(match p.op {
                    EltwiseOp::Prod => ProtoEltwise::Prod,
                    EltwiseOp::Sum => ProtoEltwise::Sum,
                    EltwiseOp::Max => ProtoEltwise::Max,
                } as i32),
                coeff: p.coeffs.clone(),
                ..Default::default()
            };
            l.eltwise_param = (q != EltwiseParameter::default()).then_some(q);
        }
        Op::Flatten(p) => {
            let q = FlattenParameter {
                axis: nd(p.axis, 1),
                end_axis: nd(p.end_axis, -1),
            };
            l.flatten_param = (q != FlattenParameter::default()).then_some(q);
        }
        Op::Reshape(p) => {
            l.reshape_param = Some(ReshapeParameter {
                shape: Some(BlobShape {
                    dim: p.dims.clone(),
                }),
                axis: nd(p.axis, 0),
                num_axes: nd(p.num_axes, -1),
            })
        }
        Op::BatchNorm(p) => {
            let q = batch_norm_to_proto(p);
            l.batch_norm_param = (q != BatchNormParameter::default()).then_some(q);
        }
        Op::Scale(p) => {
            let q = scale_to_proto(p);
            l.scale_param = (q != ScaleParameter::default()).then_some(q);
        }
    }
}
