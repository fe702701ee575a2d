//! Per-layer comparison of an engine run against reference outputs written by real tools:
//! the OpenCV goldens (`fixtures-real/caffe/golden.json`) and the Caffe oracle's layer-by-layer
//! dumps (`caffe-oracle/levi_mini/forward/index.json`). Both store raw little-endian f32
//! files in C order; both name each output by the Caffe layer that produced it, so in-place
//! layers (a ReLU writing over its convolution) have their own entry.

use super::{Engine, ExecError, ExecOptions, Outputs};
use crate::ir::{Net, Tensor};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Why a reference could not be loaded or compared.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The index file is not the expected JSON.
    #[error("{path}: {msg}")]
    Format {
        /// The index file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// A raw f32 file's size disagrees with its declared shape.
    #[error("{path}: {found} bytes, but shape {shape:?} needs {expected}")]
    Size {
        /// The data file.
        path: PathBuf,
        /// Declared shape.
        shape: Vec<usize>,
        /// 4 × element count.
        expected: u64,
        /// Actual size.
        found: u64,
    },
    /// A reference names a layer or blob the net does not have.
    #[error("reference output '{0}' matches no layer or blob of the net")]
    UnknownOutput(String),
    /// The engine failed.
    #[error(transparent)]
    Exec(#[from] ExecError),
}

/// A forward-pass reference: the input fed and the expected output of each layer.
#[derive(Debug, Clone)]
pub struct Reference {
    /// Input blob name, when the reference names it (else the net's only input is used).
    pub input_blob: Option<String>,
    /// The input tensor.
    pub input: Tensor,
    /// (Caffe layer name, expected top) in the reference's order.
    pub layers: Vec<(String, Tensor)>,
}

/// The comparison of one layer's output.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerDiff {
    /// Caffe layer name from the reference.
    pub layer: String,
    /// IR blob compared.
    pub blob: String,
    /// Largest |ours − reference|.
    pub max_abs: f32,
    /// Largest |reference|.
    pub max_ref: f32,
    /// The tolerance applied: `rel_tol · max(1, max|ref|)`.
    pub tolerance: f32,
    /// Shapes agree and `max_abs ≤ tolerance`.
    pub passed: bool,
}

fn read_json(path: &Path) -> Result<Value, CompareError> {
    let text = std::fs::read_to_string(path).map_err(|source| CompareError::Io {
        path: path.into(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| CompareError::Format {
        path: path.into(),
        msg: e.to_string(),
    })
}

fn format_err(path: &Path, msg: impl Into<String>) -> CompareError {
    CompareError::Format {
        path: path.into(),
        msg: msg.into(),
    }
}

/// Reads `{"file": …, "shape": [...]}` relative to `dir`, checking the size first.
fn read_entry(index: &Path, dir: &Path, entry: &Value) -> Result<Tensor, CompareError> {
    let file = entry["file"]
        .as_str()
        .ok_or_else(|| format_err(index, "an entry has no \"file\""))?;
    let shape: Vec<usize> = entry["shape"]
        .as_array()
        .ok_or_else(|| format_err(index, format!("entry {file} has no \"shape\"")))?
        .iter()
        .map(|d| d.as_u64().map(|d| d as usize))
        .collect::<Option<_>>()
        .ok_or_else(|| format_err(index, format!("entry {file} has a bad shape")))?;
    let path = dir.join(file);
    let io = |source| CompareError::Io {
        path: path.clone(),
        source,
    };
    let expected = 4 * shape.iter().map(|&d| d as u64).product::<u64>();
    let found = std::fs::metadata(&path).map_err(io)?.len();
    if found != expected {
        return Err(CompareError::Size {
            path,
            shape,
            expected,
            found,
        });
    }
    let bytes = std::fs::read(&path).map_err(io)?;
    let data = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok(Tensor { shape, data })
}

/// Loads case `case` of an OpenCV `golden.json` (paths relative to its folder).
pub fn load_golden_case(golden_json: &Path, case: &str) -> Result<Reference, CompareError> {
    let root = read_json(golden_json)?;
    let dir = golden_json.parent().unwrap_or(Path::new("."));
    let entry = root["cases"]
        .as_array()
        .and_then(|cases| cases.iter().find(|c| c["name"] == case))
        .ok_or_else(|| format_err(golden_json, format!("no case named '{case}'")))?;
    let input = read_entry(golden_json, dir, &entry["input"])?;
    let outputs = entry["outputs"]
        .as_object()
        .ok_or_else(|| format_err(golden_json, format!("case '{case}' has no outputs")))?;
    let layers = outputs
        .iter()
        .map(|(name, e)| Ok((name.clone(), read_entry(golden_json, dir, e)?)))
        .collect::<Result<_, CompareError>>()?;
    Ok(Reference {
        input_blob: None,
        input,
        layers,
    })
}

/// Loads a Caffe-oracle forward dump (`<dir>/index.json` with `input` and `layers`).
pub fn load_oracle_forward(dir: &Path) -> Result<Reference, CompareError> {
    let index = dir.join("index.json");
    let root = read_json(&index)?;
    let input = read_entry(&index, dir, &root["input"])?;
    let layers = root["layers"]
        .as_array()
        .ok_or_else(|| format_err(&index, "no \"layers\" list"))?
        .iter()
        .map(|e| {
            let name = e["layer"]
                .as_str()
                .ok_or_else(|| format_err(&index, "a layer entry has no \"layer\""))?;
            Ok((name.to_string(), read_entry(&index, dir, e)?))
        })
        .collect::<Result<_, CompareError>>()?;
    Ok(Reference {
        input_blob: root["input"]["blob"].as_str().map(String::from),
        input,
        layers,
    })
}

/// The IR blob holding Caffe layer `name`'s output: the layer's first top, or else a blob
/// whose Caffe name is `name` (its last producer, i.e. after any in-place layers).
fn blob_for(net: &Net, name: &str) -> Option<String> {
    if let Some(l) = net.layer(name) {
        return l.tops.first().cloned();
    }
    net.layers
        .iter()
        .rev()
        .flat_map(|l| l.tops.iter().zip(&l.caffe_tops))
        .find(|(_, caffe)| *caffe == name)
        .map(|(ir, _)| ir.clone())
}

/// Compares every reference layer with the run's blob of the same layer, with tolerance
/// `rel_tol · max(1, max|ref|)` per layer.
pub fn compare_layers(
    net: &Net,
    outputs: &Outputs,
    reference: &Reference,
    rel_tol: f32,
) -> Result<Vec<LayerDiff>, CompareError> {
    reference
        .layers
        .iter()
        .map(|(name, want)| {
            let blob =
                blob_for(net, name).ok_or_else(|| CompareError::UnknownOutput(name.clone()))?;
            let got = outputs
                .get(&blob)
                .ok_or_else(|| CompareError::UnknownOutput(name.clone()))?;
            let max_ref = want.max_abs();
            let tolerance = rel_tol * max_ref.max(1.0);
            let same_shape = got.len() == want.len()
                && got.shape.iter().product::<usize>() == want.shape.iter().product::<usize>();
            let max_abs = if same_shape {
                got.data
                    .iter()
                    .zip(&want.data)
                    .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()))
            } else {
                f32::INFINITY
            };
            Ok(LayerDiff {
                layer: name.clone(),
                blob,
                max_abs,
                max_ref,
                tolerance,
                // NaN never passes.
                passed: max_abs <= tolerance,
            })
        })
        .collect()
}

/// Runs `net` on the reference input with the f32 engine (every blob kept, batch taken
/// from the reference) and compares every layer.
pub fn run_and_compare(
    net: &Net,
    reference: &Reference,
    rel_tol: f32,
    threads: usize,
) -> Result<Vec<LayerDiff>, CompareError> {
    let engine = Engine::with_options(
        net,
        ExecOptions {
            threads,
            keep_all_blobs: true,
            batch: reference.input.shape.first().copied(),
            ..ExecOptions::default()
        },
    )?;
    let input_name = match &reference.input_blob {
        Some(n) => n.clone(),
        None => engine
            .inputs()
            .first()
            .map(|(n, _)| n.to_string())
            .unwrap_or_default(),
    };
    let outputs = engine.run([(input_name, reference.input.clone())])?;
    compare_layers(engine.net(), &outputs, reference, rel_tol)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{InputSpec, Layer, Op};
    use crate::ops::activation::ReluParams;

    /// A net with Caffe's in-place ReLU resolved to a distinct IR blob.
    fn relu_net() -> Net {
        let mut relu = Layer::new(
            "relu",
            Op::Relu(ReluParams::default()),
            vec!["data".into()],
            vec!["data/relu".into()],
        );
        relu.caffe_tops = vec!["data".into()];
        Net {
            name: "n".into(),
            inputs: vec![InputSpec {
                name: "data".into(),
                shape: vec![1, 4],
            }],
            layers: vec![relu],
            ..Net::default()
        }
    }

    fn write(dir: &Path, name: &str, values: &[f32]) {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(dir.join(name), bytes).unwrap();
    }

    #[test]
    fn oracle_index_is_loaded_and_compared_per_layer() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "in.f32", &[-1.0, 2.0, -3.0, 4.0]);
        write(dir.path(), "relu.f32", &[0.0, 2.0, 0.0, 4.0]);
        let index = r#"{"input": {"blob": "data", "file": "in.f32", "shape": [1, 4]},
            "layers": [{"layer": "relu", "file": "relu.f32", "shape": [1, 4]}]}"#;
        std::fs::write(dir.path().join("index.json"), index).unwrap();
        let reference = load_oracle_forward(dir.path()).unwrap();
        assert_eq!(reference.input_blob.as_deref(), Some("data"));
        let diffs = run_and_compare(&relu_net(), &reference, 1e-4, 1).unwrap();
        assert_eq!(diffs.len(), 1);
        assert_eq!(
            (diffs[0].blob.as_str(), diffs[0].max_abs, diffs[0].passed),
            ("data/relu", 0.0, true)
        );

        // A reference that disagrees by more than 1e-4 · max(1, 4) fails.
        write(dir.path(), "relu.f32", &[0.0, 2.0, 0.0, 4.001]);
        let reference = load_oracle_forward(dir.path()).unwrap();
        let diffs = run_and_compare(&relu_net(), &reference, 1e-4, 1).unwrap();
        assert!(!diffs[0].passed && (diffs[0].tolerance - 4.001e-4).abs() < 1e-8);
    }

    #[test]
    fn short_files_and_unknown_layers_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "in.f32", &[1.0, 2.0, 3.0]);
        let index = r#"{"input": {"file": "in.f32", "shape": [1, 4]}, "layers": []}"#;
        std::fs::write(dir.path().join("index.json"), index).unwrap();
        let err = load_oracle_forward(dir.path()).unwrap_err();
        assert!(
            matches!(
                err,
                CompareError::Size {
                    expected: 16,
                    found: 12,
                    ..
                }
            ),
            "{err}"
        );

        let reference = Reference {
            input_blob: None,
            input: Tensor::zeros(&[1, 4]),
            layers: vec![("conv9".into(), Tensor::zeros(&[1, 4]))],
        };
        let err = run_and_compare(&relu_net(), &reference, 1e-4, 1).unwrap_err();
        assert!(
            matches!(err, CompareError::UnknownOutput(ref n) if n == "conv9"),
            "{err}"
        );
    }
}
