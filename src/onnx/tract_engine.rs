//! Running ONNX models with tract-onnx 0.23: from a file or from an in-memory export of any
//! [`Net`], optimised (`into_optimized`) and planned once, then run many times.
//!
//! tract's matrix products are single-threaded unless a multithreaded executor is installed
//! (tract-linalg feature `multithread-mm`, on in Cargo.toml); [`set_threads`] installs one,
//! as BASELINES.md describes. Intermediate tensors can be requested as extra outputs by their
//! ONNX names, which are the IR blob names for exported nets, for per-layer verification.

use super::pb::ModelProto;
use super::{OnnxError, OnnxResult};
use crate::ir::{Net, Tensor};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use tract_onnx::prelude::*;

/// Installs tract's default executor with `n` threads for matrix products (`n ≤ 1`:
/// single-threaded).
pub fn set_threads(n: usize) {
    use tract_linalg::multithread::{set_default_executor, Executor};
    if n <= 1 {
        set_default_executor(Executor::SingleThread);
    } else {
        set_default_executor(Executor::multithread(n));
    }
}

/// A planned tract model with named inputs and outputs.
pub struct TractModel {
    plan: Arc<TypedRunnableModel>,
    inputs: Vec<(String, Vec<usize>)>,
    outputs: Vec<String>,
}

impl std::fmt::Debug for TractModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TractModel")
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .finish()
    }
}

fn tract_err(e: impl std::fmt::Display) -> OnnxError {
    OnnxError::Tract(format!("{e:#}"))
}

impl TractModel {
    /// Plans a decoded model. `model_dir` resolves external data; `input_shapes` fixes
    /// inputs by name (required for dynamic dims); `extra_outputs` names intermediate
    /// tensors to return after the graph outputs.
    pub fn from_proto(
        model: &ModelProto,
        model_dir: Option<&Path>,
        input_shapes: &HashMap<String, Vec<usize>>,
        extra_outputs: &[String],
    ) -> OnnxResult<Self> {
        let dir = model_dir.and_then(|d| d.to_str());
        // Shapes come from the inputs alone: value_info may carry another batch size.
        let parsed = tract_onnx::onnx()
            .with_ignore_value_info(true)
            .parse(model, dir)
            .map_err(tract_err)?;
        let declared = super::declared_input_shapes(model);
        if !parsed.unresolved_inputs.is_empty() {
            return Err(OnnxError::Graph(format!(
                "unresolved inputs: {:?}",
                parsed.unresolved_inputs
            )));
        }
        let mut m = parsed.model;
        let mut inputs = Vec::new();
        for (ix, outlet) in m
            .input_outlets()
            .map_err(tract_err)?
            .to_vec()
            .iter()
            .enumerate()
        {
            let name = m.node(outlet.node).name.clone();
            let shape = match input_shapes.get(&name).or_else(|| declared.get(&name)) {
                Some(s) => s.clone(),
                None => {
                    let fact = m.input_fact(ix).map_err(tract_err)?;
                    let dims = fact.shape.as_concrete_finite().ok().flatten();
                    dims.map(|d| d.to_vec())
                        .ok_or_else(|| OnnxError::DynamicInput {
                            input: name.clone(),
                            dim: 0,
                            shape: format!("{:?}", fact.shape),
                        })?
                }
            };
            m.set_input_fact(ix, f32::fact(&shape).into())
                .map_err(tract_err)?;
            inputs.push((name, shape));
        }
        let mut outputs: Vec<String> = model
            .graph
            .as_ref()
            .map(|g| g.output.iter().map(|o| o.name.clone()).collect())
            .unwrap_or_default();
        let mut outlets = m.output_outlets().map_err(tract_err)?.to_vec();
        for e in extra_outputs {
            if outputs.contains(e) {
                continue;
            }
            let o = m.find_outlet_label(e).ok_or_else(|| {
                OnnxError::Graph(format!("no tensor named '{e}' to expose as an output"))
            })?;
            outlets.push(o);
            outputs.push(e.clone());
        }
        m.select_output_outlets(&outlets).map_err(tract_err)?;
        let plan = m
            .into_optimized()
            .map_err(tract_err)?
            .into_runnable()
            .map_err(tract_err)?;
        Ok(Self {
            plan,
            inputs,
            outputs,
        })
    }

    /// Loads and plans a file.
    pub fn from_file(
        path: &Path,
        input_shapes: &HashMap<String, Vec<usize>>,
        extra_outputs: &[String],
    ) -> OnnxResult<Self> {
        let model = super::import::read_model(path)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        Self::from_proto(&model, Some(dir), input_shapes, extra_outputs)
            .map_err(|e| e.in_file(path))
    }

    /// Exports `net` to ONNX in memory and plans it.
    pub fn from_net(net: &Net, extra_outputs: &[String]) -> OnnxResult<Self> {
        let model = super::export(net)?;
        Self::from_proto(&model, None, &HashMap::new(), extra_outputs)
    }

    /// Input names and the shapes the plan was built for.
    pub fn inputs(&self) -> &[(String, Vec<usize>)] {
        &self.inputs
    }

    /// Output names: the graph outputs, then the requested intermediates.
    pub fn outputs(&self) -> &[String] {
        &self.outputs
    }

    /// Runs one batch; `inputs` are in [`Self::inputs`] order with matching shapes.
    pub fn run(&self, inputs: &[Tensor]) -> OnnxResult<Vec<(String, Tensor)>> {
        if inputs.len() != self.inputs.len() {
            return Err(OnnxError::Graph(format!(
                "the model takes {} inputs, {} given",
                self.inputs.len(),
                inputs.len()
            )));
        }
        let mut values = TVec::new();
        for ((name, shape), t) in self.inputs.iter().zip(inputs) {
            if &t.shape != shape {
                return Err(OnnxError::Graph(format!(
                    "input '{name}' has shape {:?}, the model was planned for {shape:?}",
                    t.shape
                )));
            }
            let tt =
                tract_onnx::prelude::Tensor::from_shape(&t.shape, &t.data).map_err(tract_err)?;
            values.push(tt.into_tvalue());
        }
        let results = self.plan.run(values).map_err(tract_err)?;
        let mut out = Vec::with_capacity(results.len());
        for (name, v) in self.outputs.iter().zip(results.iter()) {
            let view = v.to_plain_array_view::<f32>().map_err(tract_err)?;
            out.push((
                name.clone(),
                Tensor {
                    shape: view.shape().to_vec(),
                    data: view.iter().copied().collect(),
                },
            ));
        }
        Ok(out)
    }
}
