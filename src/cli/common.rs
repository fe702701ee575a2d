//! Pieces shared by several subcommands: engine selection, input loading, output naming.

use crate::ir::{Net, Tensor};
use anyhow::{bail, Context, Result};
use std::path::Path;

/// Which engine runs a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum EngineKind {
    /// The native f32 engine (im2col + GEMM, all cores).
    #[default]
    Native,
    /// tract, running the model's ONNX form.
    Tract,
    /// fp16 emulation of the Movidius NCS.
    F16,
}

/// The net's single input, or an error listing them when there are several.
pub fn single_input(net: &Net) -> Result<(String, Vec<usize>)> {
    match net.inputs.as_slice() {
        [one] => Ok((one.name.clone(), one.shape.clone())),
        [] => bail!("net '{}' declares no input", net.name),
        many => bail!(
            "net '{}' has {} inputs ({}); this command feeds exactly one",
            net.name,
            many.len(),
            many.iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Reads an N×C×H×W f32 `.npy` for an input declared as `declared`: every dimension but
/// the batch must match.
pub fn read_input_npy(path: &Path, input: &str, declared: &[usize]) -> Result<Tensor> {
    let t = crate::io::npy::read_npy(path)?;
    let fits =
        t.shape.len() == declared.len() && t.shape.iter().skip(1).eq(declared.iter().skip(1));
    if !fits {
        let mut want = declared.to_vec();
        if let Some(n) = want.first_mut() {
            *n = 0;
        }
        bail!(
            "{}: shape {:?} does not fit input '{}' of shape {:?} (any batch N, then {:?})",
            path.display(),
            t.shape,
            input,
            declared,
            &declared[1.min(declared.len())..]
        );
    }
    Ok(t)
}

/// A blob or layer name made safe as a file name (`inception_3a/1x1` → `inception_3a_1x1`).
pub fn file_stem(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c == '/' || c == '\\' || c == ':' {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// The `k` largest entries of one row as (class, score), best first.
pub fn top_k(row: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
    idx.into_iter().take(k).map(|i| (i, row[i])).collect()
}

/// Creates an output directory (and parents) with a clear error.
pub fn ensure_dir(dir: &Path) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        bail!("{} exists and is not a directory", dir.display());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

/// Plans a model for tract at batch shape `shape`: an `.onnx` file is planned as it is, any
/// other model is exported to ONNX in memory first. Threads follow `threads` (0 = all).
pub fn tract_model(
    path: &Path,
    net: &Net,
    input: &str,
    shape: &[usize],
    threads: usize,
) -> Result<crate::onnx::tract_engine::TractModel> {
    crate::onnx::tract_engine::set_threads(if threads == 0 {
        rayon::current_num_threads()
    } else {
        threads
    });
    let shapes = std::collections::HashMap::from([(input.to_string(), shape.to_vec())]);
    let is_onnx = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"));
    let model = if is_onnx {
        crate::onnx::tract_engine::TractModel::from_file(path, &shapes, &[])?
    } else {
        let mut batched = net.clone();
        if let Some(&n) = shape.first() {
            batched.set_batch(n);
        }
        let proto = crate::onnx::export(&batched)?;
        crate::onnx::tract_engine::TractModel::from_proto(&proto, None, &shapes, &[])?
    };
    Ok(model)
}

/// A flag that SIGINT and SIGTERM set, so that long work (training) can stop after the
/// current step with a snapshot, as Caffe does on SIGINT; a second signal while the first
/// is pending terminates at once.
pub fn stop_flag_on_signals() -> anyhow::Result<std::sync::Arc<std::sync::atomic::AtomicBool>> {
    use anyhow::Context;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 1, std::sync::Arc::clone(&stop))
            .context("installing the signal handler")?;
        signal_hook::flag::register(sig, std::sync::Arc::clone(&stop))
            .context("installing the signal handler")?;
    }
    Ok(stop)
}
