//! Loading a model of any format for inference, and choosing the engine that runs it.
//!
//! Everything goes through the format registry ([`crate::model::load_model`]) except ONNX
//! files with a symbolic batch dimension (PyTorch exports `batch×3×227×227`): their batch is
//! fixed to 1 here, because the predictor sets the batch size itself, as Caffe's deploy
//! scripts reshape the input blob.

use super::InferError;
use crate::cli::common::EngineKind;
use crate::ir::Net;
use crate::model::ModelFormat;
use crate::onnx::pb::{tensor_shape_proto::dimension::Value, type_proto, ModelProto};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// A model ready for a predictor: its IR and, for an ONNX file, the file itself so that
/// tract runs the original bytes rather than a re-export.
#[derive(Debug, Clone)]
pub struct LoadedModel {
    /// The model file.
    pub path: PathBuf,
    /// Its format.
    pub format: ModelFormat,
    /// The IR (batch 1 where the file left it symbolic).
    pub net: Net,
    /// The decoded ONNX model, for `.onnx` files.
    pub onnx: Option<ModelProto>,
}

/// Loads `path` (with `weights` for a `.prototxt`) into the IR.
pub fn load_for_inference(path: &Path, weights: Option<&Path>) -> Result<LoadedModel, InferError> {
    let fail = |error: anyhow::Error| InferError::Model {
        path: path.to_path_buf(),
        error,
    };
    let format = ModelFormat::detect(path).map_err(fail)?;
    if format != ModelFormat::Onnx {
        let net = crate::model::load_model(path, weights).map_err(fail)?;
        return Ok(LoadedModel {
            path: path.to_path_buf(),
            format,
            net,
            onnx: None,
        });
    }
    if weights.is_some() {
        return Err(fail(anyhow::anyhow!(
            "weights only apply to a .prototxt model"
        )));
    }
    let model = crate::onnx::import::read_model(path).map_err(|e| fail(e.into()))?;
    let opts = crate::onnx::ImportOptions {
        input_shapes: batch_one_shapes(&model),
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let net = crate::onnx::import_model(&model, Some(dir), &opts)
        .map_err(|e| fail(e.in_file(path).into()))?;
    Ok(LoadedModel {
        path: path.to_path_buf(),
        format,
        net,
        onnx: Some(model),
    })
}

/// Shapes for graph inputs whose only unknown dimension is the leading (batch) one: that
/// dimension set to 1. Inputs with other unknown dimensions are left for the importer to
/// report.
pub fn batch_one_shapes(model: &ModelProto) -> HashMap<String, Vec<usize>> {
    let Some(graph) = model.graph.as_ref() else {
        return HashMap::new();
    };
    let initializers: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let mut shapes = HashMap::new();
    for input in graph
        .input
        .iter()
        .filter(|i| !initializers.contains(i.name.as_str()))
    {
        let Some(type_proto::Value::TensorType(t)) =
            input.r#type.as_ref().and_then(|t| t.value.as_ref())
        else {
            continue;
        };
        let Some(shape) = t.shape.as_ref() else {
            continue;
        };
        let known: Vec<Option<usize>> = shape
            .dim
            .iter()
            .map(|d| match d.value {
                Some(Value::DimValue(v)) if v > 0 => usize::try_from(v).ok(),
                _ => None,
            })
            .collect();
        if let Some((None, rest)) = known.split_first() {
            if let Some(rest) = rest.iter().copied().collect::<Option<Vec<usize>>>() {
                let mut s = vec![1];
                s.extend(rest);
                shapes.insert(input.name.clone(), s);
            }
        }
    }
    shapes
}

/// The engine a model runs on when `--engine` is not given: an NCS graph runs on the fp16
/// emulation of the stick (`exec::f16`, every stored tensor rounded to fp16 as the device
/// stores it), every other format on the native f32 engine.
pub fn default_engine(format: ModelFormat) -> EngineKind {
    match format {
        ModelFormat::NcsGraph => EngineKind::F16,
        _ => EngineKind::Native,
    }
}

/// Engine name for messages and reports.
pub fn engine_name(engine: EngineKind) -> &'static str {
    match engine {
        EngineKind::Native => "native",
        EngineKind::Tract => "tract",
        EngineKind::F16 => "f16",
    }
}
