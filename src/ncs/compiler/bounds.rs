//! fp16 range estimate: worst-case bounds on |activation| propagated through the net from
//! the declared input range, to warn where the device's fp16 storage can overflow to ±inf
//! (max 65504). LRN gets its own check because its sum of squares overflows first: five
//! activations of 115 already exceed fp16 (§13: device arithmetic is unknown, so this is a
//! risk warning, not a prediction).

use super::{CompileWarning, F16_MAX};
use crate::ir::{Filler, Layer, Op};
use crate::ops::eltwise::EltwiseOp;
use crate::ops::lrn::NormRegion;
use std::collections::HashMap;

/// Learned blob `i`, or its constant filler expanded lazily as (value, count).
fn abs_row_sums(l: &Layer, i: usize, rows: usize, filler: &Filler) -> Option<Vec<f32>> {
    match l.blobs.get(i) {
        Some(t) if rows > 0 && t.len() % rows == 0 => {
            let per = t.len() / rows;
            Some(
                t.data
                    .chunks(per.max(1))
                    .map(|r| r.iter().map(|v| v.abs()).sum())
                    .collect(),
            )
        }
        Some(_) => None,
        None => match filler {
            Filler::Constant { value } => Some(vec![value.abs(); rows]),
            _ => None,
        },
    }
}

fn abs_values(l: &Layer, i: usize, n: usize, filler: &Filler) -> Vec<f32> {
    match l.blobs.get(i) {
        Some(t) => t.data.iter().map(|v| v.abs()).collect(),
        None => match filler {
            Filler::Constant { value } => vec![value.abs(); n],
            _ => vec![0.0; n],
        },
    }
}

/// Returns the warnings for the `live` layers (in order) fed by `input` with values in `range`.
pub(super) fn overflow_warnings(
    live: &[&Layer],
    input: &str,
    range: [f32; 2],
    shapes: &crate::ir::BlobShapes,
) -> Vec<CompileWarning> {
    let mut bound: HashMap<&str, f32> = HashMap::new();
    bound.insert(input, range[0].abs().max(range[1].abs()));
    let mut warnings = Vec::new();
    let mut reported_general = false;
    for &l in live {
        let ins: Vec<f32> = l
            .bottoms
            .iter()
            .map(|b| bound.get(b.as_str()).copied().unwrap_or(f32::INFINITY))
            .collect();
        let m = ins.first().copied().unwrap_or(0.0);
        let channels = l
            .bottoms
            .first()
            .and_then(|b| shapes.get(b))
            .and_then(|s| s.get(1))
            .copied()
            .unwrap_or(1);
        let out = match &l.op {
            Op::Convolution(p) => {
                let sums = abs_row_sums(l, 0, p.num_output, &p.weight_filler);
                let bias = if p.bias_term {
                    abs_values(l, 1, p.num_output, &p.bias_filler)
                } else {
                    vec![0.0; p.num_output]
                };
                match sums {
                    Some(s) => s
                        .iter()
                        .zip(bias.iter().chain(std::iter::repeat(&0.0)))
                        .map(|(s, b)| s * m + b)
                        .fold(0.0, f32::max),
                    None => f32::INFINITY,
                }
            }
            Op::InnerProduct(p) if !p.transpose => {
                let sums = abs_row_sums(l, 0, p.num_output, &p.weight_filler);
                let bias = if p.bias_term {
                    abs_values(l, 1, p.num_output, &p.bias_filler)
                } else {
                    vec![0.0; p.num_output]
                };
                match sums {
                    Some(s) => s
                        .iter()
                        .zip(bias.iter().chain(std::iter::repeat(&0.0)))
                        .map(|(s, b)| s * m + b)
                        .fold(0.0, f32::max),
                    None => f32::INFINITY,
                }
            }
            Op::Lrn(p) => {
                let window = match p.region {
                    NormRegion::AcrossChannels => p.local_size,
                    NormRegion::WithinChannel => p.local_size * p.local_size,
                } as f32;
                let squares = window * m * m;
                if squares > F16_MAX {
                    warnings.push(CompileWarning {
                        layer: l.name.clone(),
                        message: format!(
                            "LRN sum of squares of {window} values can reach {squares:.4e} > fp16 max {F16_MAX} for inputs in [{}, {}] (activation bound {m:.4e}); the device may produce inf/NaN",
                            range[0], range[1]
                        ),
                    });
                }
                if p.k > 0.0 {
                    m * p.k.powf(-p.beta).max(1.0)
                } else {
                    m
                }
            }
            Op::BatchNorm(p) => {
                let mean = abs_values(l, 0, channels, &Filler::default());
                let var = abs_values(l, 1, channels, &Filler::default());
                let f = l
                    .blobs
                    .get(2)
                    .and_then(|t| t.data.first().copied())
                    .unwrap_or(0.0);
                let sf = if f == 0.0 { 0.0 } else { 1.0 / f };
                mean.iter()
                    .zip(&var)
                    .map(|(mu, v)| (m + mu * sf) / (v * sf + p.eps).sqrt())
                    .fold(0.0, f32::max)
            }
            Op::Scale(p) => {
                let g = abs_values(l, 0, channels, &p.filler);
                let b = if p.bias_term {
                    abs_values(l, 1, channels, &p.bias_filler)
                } else {
                    vec![0.0; g.len()]
                };
                g.iter().zip(&b).map(|(g, b)| m * g + b).fold(0.0, f32::max)
            }
            Op::Eltwise(p) => match p.op {
                EltwiseOp::Sum => ins
                    .iter()
                    .enumerate()
                    .map(|(i, v)| v * p.coeff(i).abs())
                    .sum(),
                EltwiseOp::Prod => ins.iter().product(),
                EltwiseOp::Max => ins.iter().copied().fold(0.0, f32::max),
            },
            Op::PRelu(p) => {
                let a = abs_values(l, 0, channels, &p.filler);
                m * a.iter().copied().fold(1.0, f32::max)
            }
            Op::Softmax(_) | Op::Sigmoid | Op::TanH => 1.0,
            Op::Concat(_) => ins.iter().copied().fold(0.0, f32::max),
            _ => m,
        };
        if out > F16_MAX && !reported_general && !matches!(l.op, Op::Lrn(_)) {
            reported_general = true;
            warnings.push(CompileWarning {
                layer: l.name.clone(),
                message: format!(
                    "worst-case activation bound {out:.4e} exceeds fp16 max {F16_MAX} for inputs in [{}, {}]; later layers may overflow too",
                    range[0], range[1]
                ),
            });
        }
        for t in &l.tops {
            bound.insert(t.as_str(), out);
        }
    }
    warnings
}
