//! A deliberately minimal Caffe prototxt + caffemodel → IR reader for the compiler tests,
//! covering only the layer types of the two Caffe fixtures (current `layer {}` syntax).
//! It exists so the compiler can be tested against real Caffe sources before the project's
//! loader (`crate::caffe`) is merged; tests should switch to that loader afterwards.

use super::caffemodel_blobs;
use crate::ir::{InputSpec, Layer, Net, Op};
use crate::ops::activation::ReluParams;
use crate::ops::batchnorm::{BatchNormParams, ScaleParams};
use crate::ops::conv::ConvParams;
use crate::ops::dropout::DropoutParams;
use crate::ops::eltwise::{EltwiseOp, EltwiseParams};
use crate::ops::inner_product::InnerProductParams;
use crate::ops::lrn::{LrnParams, NormRegion};
use crate::ops::pool::{PoolMethod, PoolParams};
use crate::ops::softmax::SoftmaxParams;
use crate::proto::caffe::NetParameter;
use prost_reflect::DynamicMessage;
use std::collections::HashMap;
use std::path::Path;

fn pick(repeated: &[u32], single: Option<u32>, default: u32) -> usize {
    single.or(repeated.first().copied()).unwrap_or(default) as usize
}

/// Loads a deploy prototxt and (optionally) its weights.
pub(super) fn load(prototxt: &Path, weights: Option<&Path>) -> Net {
    let text = std::fs::read_to_string(prototxt).unwrap();
    let desc = crate::proto::caffe_pool()
        .get_message_by_name("caffe.NetParameter")
        .unwrap();
    let np: NetParameter = DynamicMessage::parse_text_format(desc, &text)
        .unwrap()
        .transcode_to()
        .unwrap();
    let blobs = match weights {
        Some(w) if std::fs::metadata(w).unwrap().len() > 0 => caffemodel_blobs(w),
        _ => HashMap::new(),
    };
    let mut net = Net {
        name: np.name().to_string(),
        ..Net::default()
    };
    let mut current: HashMap<String, String> = HashMap::new();
    for (name, shape) in np.input.iter().zip(&np.input_shape) {
        net.inputs.push(InputSpec {
            name: name.clone(),
            shape: shape.dim.iter().map(|&d| d as usize).collect(),
        });
        current.insert(name.clone(), name.clone());
    }
    for l in &np.layer {
        let op = match l.r#type() {
            "Input" => {
                let p = l.input_param.clone().unwrap();
                for (t, s) in l.top.iter().zip(&p.shape) {
                    net.inputs.push(InputSpec {
                        name: t.clone(),
                        shape: s.dim.iter().map(|&d| d as usize).collect(),
                    });
                    current.insert(t.clone(), t.clone());
                }
                continue;
            }
            "Convolution" => {
                let p = l.convolution_param.clone().unwrap();
                Op::Convolution(ConvParams {
                    num_output: p.num_output() as usize,
                    kernel: [
                        pick(&p.kernel_size, p.kernel_h, 1),
                        pick(&p.kernel_size, p.kernel_w, 1),
                    ],
                    stride: [
                        pick(&p.stride, p.stride_h, 1),
                        pick(&p.stride, p.stride_w, 1),
                    ],
                    pad: [pick(&p.pad, p.pad_h, 0), pick(&p.pad, p.pad_w, 0)],
                    dilation: [pick(&p.dilation, None, 1); 2],
                    group: p.group() as usize,
                    bias_term: p.bias_term(),
                    ..ConvParams::default()
                })
            }
            "BatchNorm" => {
                let p = l.batch_norm_param.unwrap_or_default();
                Op::BatchNorm(BatchNormParams {
                    use_global_stats: p.use_global_stats,
                    eps: p.eps(),
                    ..BatchNormParams::default()
                })
            }
            "Scale" => {
                let p = l.scale_param.clone().unwrap_or_default();
                Op::Scale(ScaleParams {
                    bias_term: p.bias_term(),
                    ..ScaleParams::default()
                })
            }
            "ReLU" => Op::Relu(ReluParams {
                negative_slope: l.relu_param.unwrap_or_default().negative_slope(),
            }),
            "Pooling" => {
                let p = l.pooling_param.unwrap();
                let k = p.kernel_size.unwrap_or(1);
                let s = p.stride.unwrap_or(1);
                let pd = p.pad.unwrap_or(0);
                Op::Pooling(PoolParams {
                    method: if p.pool() as i32 == 0 {
                        PoolMethod::Max
                    } else {
                        PoolMethod::Ave
                    },
                    kernel: [
                        p.kernel_h.unwrap_or(k) as usize,
                        p.kernel_w.unwrap_or(k) as usize,
                    ],
                    stride: [
                        p.stride_h.unwrap_or(s) as usize,
                        p.stride_w.unwrap_or(s) as usize,
                    ],
                    pad: [
                        p.pad_h.unwrap_or(pd) as usize,
                        p.pad_w.unwrap_or(pd) as usize,
                    ],
                    global: p.global_pooling(),
                    ..PoolParams::default()
                })
            }
            "Eltwise" => {
                let p = l.eltwise_param.clone().unwrap_or_default();
                Op::Eltwise(EltwiseParams {
                    op: match p.operation() as i32 {
                        0 => EltwiseOp::Prod,
                        2 => EltwiseOp::Max,
                        _ => EltwiseOp::Sum,
                    },
                    coeffs: p.coeff.clone(),
                })
            }
            "InnerProduct" => {
                let p = l.inner_product_param.clone().unwrap();
                Op::InnerProduct(InnerProductParams {
                    num_output: p.num_output() as usize,
                    bias_term: p.bias_term(),
                    axis: p.axis(),
                    transpose: p.transpose(),
                    ..InnerProductParams::default()
                })
            }
            "Softmax" => Op::Softmax(SoftmaxParams {
                axis: l.softmax_param.unwrap_or_default().axis(),
            }),
            "Dropout" => Op::Dropout(DropoutParams::default()),
            "LRN" => {
                let p = l.lrn_param.unwrap_or_default();
                Op::Lrn(LrnParams {
                    local_size: p.local_size() as usize,
                    alpha: p.alpha(),
                    beta: p.beta(),
                    k: p.k(),
                    region: if p.norm_region() as i32 == 0 {
                        NormRegion::AcrossChannels
                    } else {
                        NormRegion::WithinChannel
                    },
                })
            }
            other => panic!("caffe_min: layer type {other} not covered"),
        };
        let bottoms: Vec<String> = l.bottom.iter().map(|b| current[b].clone()).collect();
        let tops: Vec<String> = l
            .top
            .iter()
            .map(|t| {
                if l.bottom.contains(t) {
                    format!("{t}@{}", l.name())
                } else {
                    t.clone()
                }
            })
            .collect();
        for (t, ir) in l.top.iter().zip(&tops) {
            current.insert(t.clone(), ir.clone());
        }
        let mut layer = Layer::new(l.name(), op, bottoms, tops);
        layer.caffe_tops = l.top.clone();
        layer.blobs = blobs.get(l.name()).cloned().unwrap_or_default();
        net.layers.push(layer);
    }
    net
}
