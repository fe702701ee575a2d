//! The operator enum: one variant per layer type, parameters in Caffe's terms. The rules
//! themselves live in `crate::ops`; this file only dispatches.

use crate::ops::{
    activation::{self, PReluParams, ReluParams},
    batchnorm::{BatchNormParams, ScaleParams},
    concat::ConcatParams,
    conv::ConvParams,
    data::DataParams,
    deconv::DeconvParams,
    dropout::DropoutParams,
    eltwise::EltwiseParams,
    inner_product::InnerProductParams,
    loss::{scalar_head_shapes, AccuracyParams, SoftmaxLossParams},
    lrn::LrnParams,
    pool::PoolParams,
    reshape::{split_shapes, FlattenParams, ReshapeParams},
    softmax::SoftmaxParams,
    OpError, OpResult,
};

/// One network operator. Variant names follow Caffe's layer type strings.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Network input of a fixed shape (Caffe `Input`, or `input` + `input_dim`/`input_shape`).
    Input {
        /// Shape of each top.
        shapes: Vec<Vec<usize>>,
    },
    /// LMDB data source for training and testing.
    Data(DataParams),
    /// 2-D convolution.
    Convolution(ConvParams),
    /// 2-D transposed convolution (Caffe `Deconvolution`).
    Deconvolution(DeconvParams),
    /// MAX/AVE/global pooling.
    Pooling(PoolParams),
    /// Local response normalisation.
    Lrn(LrnParams),
    /// (Leaky) ReLU.
    Relu(ReluParams),
    /// Parametric ReLU.
    PRelu(PReluParams),
    /// Logistic sigmoid.
    Sigmoid,
    /// Hyperbolic tangent.
    TanH,
    /// Fully connected layer.
    InnerProduct(InnerProductParams),
    /// Dropout (identity at test time).
    Dropout(DropoutParams),
    /// Softmax over an axis.
    Softmax(SoftmaxParams),
    /// Softmax + multinomial logistic loss (training).
    SoftmaxWithLoss(SoftmaxLossParams),
    /// Top-k accuracy (testing).
    Accuracy(AccuracyParams),
    /// Concatenation along an axis.
    Concat(ConcatParams),
    /// Element-wise sum/product/max.
    Eltwise(EltwiseParams),
    /// Merge a range of axes.
    Flatten(FlattenParams),
    /// Change the view of a blob.
    Reshape(ReshapeParams),
    /// Copy one blob to several tops.
    Split,
    /// Normalisation with stored or batch statistics.
    BatchNorm(BatchNormParams),
    /// Per-channel scale (and bias).
    Scale(ScaleParams),
}

impl Op {
    /// Caffe's layer type string (`LayerParameter.type`).
    pub fn caffe_type(&self) -> &'static str {
        match self {
            Op::Input { .. } => "Input",
            Op::Data(_) => "Data",
            Op::Convolution(_) => "Convolution",
            Op::Deconvolution(_) => "Deconvolution",
            Op::Pooling(_) => "Pooling",
            Op::Lrn(_) => "LRN",
            Op::Relu(_) => "ReLU",
            Op::PRelu(_) => "PReLU",
            Op::Sigmoid => "Sigmoid",
            Op::TanH => "TanH",
            Op::InnerProduct(_) => "InnerProduct",
            Op::Dropout(_) => "Dropout",
            Op::Softmax(_) => "Softmax",
            Op::SoftmaxWithLoss(_) => "SoftmaxWithLoss",
            Op::Accuracy(_) => "Accuracy",
            Op::Concat(_) => "Concat",
            Op::Eltwise(_) => "Eltwise",
            Op::Flatten(_) => "Flatten",
            Op::Reshape(_) => "Reshape",
            Op::Split => "Split",
            Op::BatchNorm(_) => "BatchNorm",
            Op::Scale(_) => "Scale",
        }
    }

    /// True for layers that only run while training or testing on a data set (Data, loss,
    /// accuracy); a deploy net drops them.
    pub fn is_train_only(&self) -> bool {
        matches!(self, Op::Data(_) | Op::SoftmaxWithLoss(_) | Op::Accuracy(_))
    }

    /// Output shapes for the given bottom shapes (`n_tops` is needed by Split and Data).
    pub fn output_shapes(
        &self,
        bottoms: &[Vec<usize>],
        n_tops: usize,
    ) -> OpResult<Vec<Vec<usize>>> {
        match self {
            Op::Input { shapes } => Ok(shapes.clone()),
            Op::Data(p) => p.output_shapes(n_tops),
            Op::Convolution(p) => p.output_shapes(bottoms),
            Op::Deconvolution(p) => p.output_shapes(bottoms),
            Op::Pooling(p) => p.output_shapes(bottoms),
            Op::Lrn(p) => p.output_shapes(bottoms),
            Op::Relu(_) | Op::PRelu(_) | Op::Sigmoid | Op::TanH | Op::Dropout(_) => {
                activation::same_shape(bottoms)
            }
            Op::InnerProduct(p) => p.output_shapes(bottoms),
            Op::Softmax(p) => p.output_shapes(bottoms),
            Op::SoftmaxWithLoss(p) => scalar_head_shapes(p.axis, bottoms),
            Op::Accuracy(p) => scalar_head_shapes(p.axis, bottoms),
            Op::Concat(p) => p.output_shapes(bottoms),
            Op::Eltwise(p) => p.output_shapes(bottoms),
            Op::Flatten(p) => p.output_shapes(bottoms),
            Op::Reshape(p) => p.output_shapes(bottoms),
            Op::Split => split_shapes(bottoms, n_tops),
            Op::BatchNorm(p) => p.output_shapes(bottoms),
            Op::Scale(p) => p.output_shapes(bottoms),
        }
    }

    /// Shapes of the learned blobs (`LayerParameter.blobs`) this op expects.
    pub fn weight_shapes(&self, bottoms: &[Vec<usize>]) -> Vec<Vec<usize>> {
        match self {
            Op::Convolution(p) => p.weight_shapes(bottoms),
            Op::Deconvolution(p) => p.weight_shapes(bottoms),
            Op::InnerProduct(p) => p.weight_shapes(bottoms),
            Op::PRelu(p) => p.weight_shapes(bottoms),
            Op::BatchNorm(p) => p.weight_shapes(bottoms),
            Op::Scale(p) => p.weight_shapes(bottoms),
            _ => Vec::new(),
        }
    }

    /// Floating-point operations for one forward pass (2 × multiply-adds for Convolution,
    /// Deconvolution and InnerProduct; one per element and window step elsewhere).
    pub fn flops(&self, bottoms: &[Vec<usize>], tops: &[Vec<usize>]) -> u64 {
        let top_count = || {
            tops.iter()
                .map(|t| t.iter().product::<usize>())
                .sum::<usize>() as u64
        };
        match self {
            Op::Convolution(p) => p.flops(bottoms, tops),
            Op::Deconvolution(p) => p.flops(bottoms),
            Op::InnerProduct(p) => p.flops(bottoms),
            Op::Pooling(p) => p.flops(bottoms, tops),
            Op::Lrn(p) => p.flops(tops),
            Op::Relu(_) | Op::PRelu(_) | Op::Eltwise(_) | Op::Scale(_) => top_count(),
            Op::Sigmoid | Op::TanH | Op::BatchNorm(_) => 4 * top_count(),
            Op::Softmax(_) | Op::SoftmaxWithLoss(_) => {
                5 * bottoms
                    .first()
                    .map(|b| b.iter().product::<usize>())
                    .unwrap_or(0) as u64
            }
            _ => 0,
        }
    }
}

impl From<String> for OpError {
    fn from(s: String) -> Self {
        OpError(s)
    }
}

impl Op {
    /// A one-line summary of the key parameters, for `inspect` tables.
    pub fn summary(&self) -> String {
        use crate::ops::{eltwise::EltwiseOp, lrn::NormRegion, pool::PoolMethod};
        match self {
            Op::Input { shapes } => shapes
                .iter()
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(" "),
            Op::Data(p) => format!("{} batch {}", p.source, p.batch_size),
            Op::Convolution(p) | Op::Deconvolution(DeconvParams(p)) => conv_summary(p),
            Op::Pooling(p) => {
                let m = if p.method == PoolMethod::Max {
                    "MAX"
                } else {
                    "AVE"
                };
                if p.global {
                    format!("{m} global")
                } else {
                    let mut s = format!("{m} {}x{} s{}", p.kernel[0], p.kernel[1], p.stride[0]);
                    if p.pad != [0, 0] {
                        s += &format!(" p{}", p.pad[0]);
                    }
                    s
                }
            }
            Op::Lrn(p) => {
                let r = if p.region == NormRegion::AcrossChannels {
                    "ACROSS"
                } else {
                    "WITHIN"
                };
                format!("{r} n{} a{} b{} k{}", p.local_size, p.alpha, p.beta, p.k)
            }
            Op::Relu(p) if p.negative_slope != 0.0 => format!("slope {}", p.negative_slope),
            Op::PRelu(p) if p.channel_shared => "shared".into(),
            Op::InnerProduct(p) => {
                let mut s = format!("{}", p.num_output);
                if p.axis != 1 {
                    s += &format!(" axis {}", p.axis);
                }
                if p.transpose {
                    s += " T";
                }
                s
            }
            Op::Dropout(p) => format!("ratio {}", p.ratio),
            Op::Softmax(p) if p.axis != 1 => format!("axis {}", p.axis),
            Op::Concat(p) if p.axis != 1 => format!("axis {}", p.axis),
            Op::Eltwise(p) => match p.op {
                EltwiseOp::Sum if !p.coeffs.is_empty() => format!("SUM {:?}", p.coeffs),
                EltwiseOp::Sum => "SUM".into(),
                EltwiseOp::Prod => "PROD".into(),
                EltwiseOp::Max => "MAX".into(),
            },
            Op::Reshape(p) => format!("{:?}", p.dims),
            Op::BatchNorm(p) => format!("eps {}", p.eps),
            Op::Scale(p) if p.bias_term => "bias".into(),
            _ => String::new(),
        }
    }
}

/// `inspect`'s summary of convolution parameters: `num_output kh×kw s… p… d… g…`, the
/// defaults left out.
fn conv_summary(p: &ConvParams) -> String {
    let mut s = format!(
        "{} {}x{} s{}",
        p.num_output, p.kernel[0], p.kernel[1], p.stride[0]
    );
    if p.stride[0] != p.stride[1] {
        s += &format!("x{}", p.stride[1]);
    }
    if p.pad != [0, 0] {
        s += &format!(" p{}", p.pad[0]);
        if p.pad[0] != p.pad[1] {
            s += &format!("x{}", p.pad[1]);
        }
    }
    if !p.is_symmetric() {
        let e = p.end_pad();
        s += &format!(" pe{}x{}", e[0], e[1]);
    }
    if p.dilation != [1, 1] {
        s += &format!(" d{}", p.dilation[0]);
    }
    if p.group != 1 {
        s += &format!(" g{}", p.group);
    }
    s
}
