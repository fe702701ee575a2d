//! Pieces shared by several subcommands: engine selection, input loading, output naming.

use crate::ir::{Net, Tensor};
use anyhow::{bail, Context, Result};
use std::path::Path;

/// Which engine runs a model: one enum for every subcommand, defined next to the engines.
pub use crate::verify::EngineKind;

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

/// What a command is about to write at an output path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// One file (a model, a mean, a report, an image).
    File,
    /// A folder the command fills (an LMDB, a run's outputs).
    Dir,
}

/// Checks an output path before anything is computed or written (issue 8: "output paths
/// that already exist are not overwritten without `--force`"). A path of the wrong kind (a
/// directory where a file goes, or the reverse) is refused even with `force`, since
/// replacing it would destroy something of another kind. An existing directory output
/// counts as taken only when it is not empty.
pub fn check_output(path: &Path, kind: OutputKind, force: bool) -> Result<()> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(());
    };
    match (kind, meta.is_dir()) {
        (OutputKind::File, true) => bail!(
            "{} is a directory; the output here is a file, give a file name",
            path.display()
        ),
        (OutputKind::Dir, false) => bail!(
            "{} exists and is not a directory; the output here is a folder",
            path.display()
        ),
        (OutputKind::File, false) if !force => bail!(
            "{} already exists; pass --force to overwrite it",
            path.display()
        ),
        (OutputKind::Dir, true) if !force && !dir_is_empty(path)? => bail!(
            "{} already exists and is not empty; pass --force to replace its contents",
            path.display()
        ),
        _ => Ok(()),
    }
}

fn dir_is_empty(dir: &Path) -> Result<bool> {
    let mut entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    Ok(entries.next().is_none())
}

/// Checks an input path that must be a regular file (issue 8: a directory where a file is
/// expected gets a clear error naming the path, not the OS's "Is a directory").
pub fn check_input_file(path: &Path, what: &str) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => bail!("{what} {} is a directory; expected a file", path.display()),
        Ok(_) => Ok(()),
        Err(e) => {
            Err(anyhow::Error::new(e).context(format!("cannot read {what} {}", path.display())))
        }
    }
}

/// Checks an input path that must be a directory (an LMDB, an image folder).
pub fn check_input_dir(path: &Path, what: &str) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if !m.is_dir() => bail!("{what} {} is a file; expected a directory", path.display()),
        Ok(_) => Ok(()),
        Err(e) => {
            Err(anyhow::Error::new(e).context(format!("cannot read {what} {}", path.display())))
        }
    }
}

/// A clap value parser for counts and sizes that must be at least 1 (issue 8: "a negative
/// or zero batch, iteration count or size" gets a clear error, not a panic or an empty run).
/// Pair it with `allow_negative_numbers = true` so `-3` reaches it instead of being taken
/// for a flag.
pub fn positive<T: TryFrom<i128>>(s: &str) -> std::result::Result<T, String> {
    match s.trim().parse::<i128>() {
        Ok(v) if v >= 1 => T::try_from(v).map_err(|_| format!("{s} is too large")),
        Ok(v) => Err(format!("must be at least 1, got {v}")),
        Err(_) => Err(format!("expected a whole number of at least 1, got '{s}'")),
    }
}

/// Installs SIGINT and SIGTERM handlers that set the returned flag, so a long command
/// (`train`, `data prepare`) can stop at a safe point and leave complete files only, as
/// Caffe's `sigint_effect: stop` does. A second signal while the first is pending ends the
/// process at once.
pub fn stop_on_signals() -> Result<std::sync::Arc<std::sync::atomic::AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 1, std::sync::Arc::clone(&stop))
            .context("installing the signal handler")?;
        signal_hook::flag::register(sig, std::sync::Arc::clone(&stop))
            .context("installing the signal handler")?;
    }
    Ok(stop)
}
