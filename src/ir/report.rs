//! The per-layer table that `inspect` prints (and emits as JSON): output shapes, parameter
//! counts and FLOPs (2 × multiply-adds for Convolution/InnerProduct, as Caffe-era papers and
//! ONNX profilers count them).

use super::{shape_string, IrError, Net};
use serde::Serialize;
use std::fmt;

/// A named shape.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NamedShape {
    /// Blob name (the Caffe name).
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
}

/// One row of the table.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LayerRow {
    /// Layer name.
    pub name: String,
    /// Caffe layer type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Key parameters in short form (`96 7x7 s4`).
    #[serde(skip)]
    pub summary: String,
    /// Bottom blob names.
    pub bottoms: Vec<String>,
    /// Top blobs with shapes.
    pub tops: Vec<NamedShape>,
    /// Learned values.
    pub params: usize,
    /// Forward FLOPs for the declared batch.
    pub flops: u64,
}

/// The whole table: `{"name","inputs","layers","total_params","total_flops"}`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NetReport {
    /// Net name.
    pub name: String,
    /// Declared inputs.
    pub inputs: Vec<NamedShape>,
    /// One row per layer.
    pub layers: Vec<LayerRow>,
    /// Sum of `params`.
    pub total_params: usize,
    /// Sum of `flops`.
    pub total_flops: u64,
}

impl NetReport {
    /// Infers shapes and builds the table. Parameter counts come from the expected weight
    /// shapes, so a prototxt without weights still reports them.
    pub fn build(net: &Net) -> Result<Self, IrError> {
        let shapes = net.infer_shapes()?;
        let mut layers = Vec::with_capacity(net.layers.len());
        for l in &net.layers {
            let bottoms: Vec<Vec<usize>> = l.bottoms.iter().map(|b| shapes[b].clone()).collect();
            let tops: Vec<Vec<usize>> = l.tops.iter().map(|t| shapes[t].clone()).collect();
            let params = if l.blobs.is_empty() {
                l.op.weight_shapes(&bottoms)
                    .iter()
                    .map(|s| s.iter().product::<usize>())
                    .sum()
            } else {
                l.blobs.iter().map(|b| b.len()).sum()
            };
            layers.push(LayerRow {
                name: l.name.clone(),
                kind: l.op.caffe_type().to_string(),
                summary: l.op.summary(),
                bottoms: l
                    .bottoms
                    .iter()
                    .map(|b| net.caffe_name_of(b).to_string())
                    .collect(),
                tops: l
                    .tops
                    .iter()
                    .zip(&tops)
                    .map(|(t, s)| NamedShape {
                        name: net.caffe_name_of(t).to_string(),
                        shape: s.clone(),
                    })
                    .collect(),
                params,
                flops: l.op.flops(&bottoms, &tops),
            });
        }
        Ok(Self {
            name: net.name.clone(),
            inputs: net
                .inputs
                .iter()
                .map(|i| NamedShape {
                    name: i.name.clone(),
                    shape: i.shape.clone(),
                })
                .collect(),
            total_params: layers.iter().map(|l| l.params).sum(),
            total_flops: layers.iter().map(|l| l.flops).sum(),
            layers,
        })
    }
}

/// Formats a FLOP count with an SI suffix (`1.42 G`).
pub fn human_flops(f: u64) -> String {
    let f = f as f64;
    if f >= 1e9 {
        format!("{:.3} G", f / 1e9)
    } else if f >= 1e6 {
        format!("{:.3} M", f / 1e6)
    } else if f >= 1e3 {
        format!("{:.3} K", f / 1e3)
    } else {
        format!("{f}")
    }
}

impl fmt::Display for NetReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "net: {}",
            if self.name.is_empty() {
                "(unnamed)"
            } else {
                &self.name
            }
        )?;
        for i in &self.inputs {
            writeln!(f, "input {}: {}", i.name, shape_string(&i.shape))?;
        }
        writeln!(
            f,
            "{:<16} {:<14} {:<28} {:<18} {:>11} {:>12}",
            "layer", "type", "parameters", "output", "params", "FLOPs"
        )?;
        for l in &self.layers {
            let out = l
                .tops
                .iter()
                .map(|t| shape_string(&t.shape))
                .collect::<Vec<_>>()
                .join(", ");
            writeln!(
                f,
                "{:<16} {:<14} {:<28} {:<18} {:>11} {:>12}",
                l.name,
                l.kind,
                l.summary,
                out,
                l.params,
                human_flops(l.flops)
            )?;
        }
        write!(
            f,
            "total: {} parameters, {} FLOPs",
            self.total_params,
            human_flops(self.total_flops)
        )
    }
}
