//! The format registry: one table from a file's format to the adapter that reads it into
//! the IR (tract's style of a registry from format names to constructors). Commands call
//! [`load_model`] and never branch on formats themselves.

use crate::ir::{Net, Phase};
use anyhow::{bail, Context, Result};
use std::path::Path;

/// Model file formats the tool reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFormat {
    /// Caffe text net definition (`.prototxt`), optionally with a `.caffemodel`.
    Prototxt,
    /// Caffe binary net with weights (`.caffemodel`).
    CaffeModel,
    /// ONNX model (`.onnx`).
    Onnx,
    /// Movidius NCS graph file (`.graph` or a file named `graph`).
    NcsGraph,
}

impl ModelFormat {
    /// Detects a format from the file name: extension first, then the NCS convention of a
    /// file called `graph`, then the first bytes of an NCS graph under any other name
    /// (such as the `graph.mv` files TensorFlow users wrote): an NCSDK 1 header or an
    /// NCSDK 2 blob magic.
    pub fn detect(path: &Path) -> Result<Self> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        Ok(match ext.as_deref() {
            Some("prototxt") | Some("pbtxt") => ModelFormat::Prototxt,
            Some("caffemodel") => ModelFormat::CaffeModel,
            Some("onnx") => ModelFormat::Onnx,
            Some("graph") | Some("blob") => ModelFormat::NcsGraph,
            _ if name == "graph" => ModelFormat::NcsGraph,
            _ if sniff_graph(path) => ModelFormat::NcsGraph,
            _ => bail!(
                "{}: unknown model format (expected .prototxt, .caffemodel, .onnx or .graph)",
                path.display()
            ),
        })
    }
}

/// True when the file starts like an NCSDK 1 or NCSDK 2 graph (NCS_GRAPH_FORMAT.md §3,
/// NCSDK2_GRAPH_FORMAT.md §3).
fn sniff_graph(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 40];
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let n = f.read(&mut head).unwrap_or(0);
    !matches!(
        crate::ncs::v2::detect(&head[..n]),
        crate::ncs::v2::Container::Unknown
    )
}

/// Loads any supported model into the IR. `weights` applies to a prototxt (a caffemodel
/// matched by layer name); deploy nets are loaded in the TEST phase.
pub fn load_model(path: &Path, weights: Option<&Path>) -> Result<Net> {
    for p in std::iter::once(path).chain(weights) {
        if !p.exists() {
            bail!("{}: no such file", p.display());
        }
        if p.is_dir() {
            bail!("{}: is a directory; expected a model file", p.display());
        }
    }
    let format = ModelFormat::detect(path)?;
    if weights.is_some() && format != ModelFormat::Prototxt {
        bail!(
            "--weights only applies to a .prototxt model, not {}",
            path.display()
        );
    }
    let net = match format {
        ModelFormat::Prototxt => crate::caffe::load_net(path, weights, Phase::Test)?,
        ModelFormat::CaffeModel => crate::caffe::load_caffemodel_net(path)?,
        ModelFormat::Onnx => load_onnx(path)?,
        ModelFormat::NcsGraph => load_graph(path)?,
    };
    Ok(net)
}

fn load_onnx(path: &Path) -> Result<Net> {
    Ok(crate::onnx::import(path)?)
}

fn load_graph(path: &Path) -> Result<Net> {
    Ok(crate::ncs::read_net(path)?)
}

/// Loads a model and fills layers that have no weights from their fillers (seeded), for
/// benchmarking nets that exist only as a prototxt. Returns the filled layer names.
pub fn load_model_random(path: &Path, seed: u64) -> Result<(Net, Vec<String>)> {
    let mut net = load_model(path, None)?;
    let filled = crate::caffe::weights::fill_missing_weights_random(&mut net, seed)
        .with_context(|| format!("filling random weights for {}", path.display()))?;
    Ok((net, filled))
}
