//! `.solverstate` files (Caffe's `SolverState` message: `iter`, `learned_net`, `history`,
//! `current_step`) and snapshot naming (`<prefix>_iter_<N>.caffemodel` / `.solverstate`,
//! as `Solver::SnapshotFilename`). Writes are atomic, so an interrupted snapshot never
//! leaves a truncated file under the final name.

use super::solver::Solver;
use crate::caffe::blob::{blob_from_tensor, tensor_from_blob, BlobError};
use crate::ir::Tensor;
use crate::proto::caffe::SolverState;
use crate::util::atomic::{atomic_write, AtomicWriteError};
use prost::Message;
use std::path::{Path, PathBuf};

/// Errors reading, writing or restoring a solver state; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The file could not be read.
    #[error("cannot read solver state {path}: {cause}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        cause: std::io::Error,
    },
    /// Not a valid `SolverState` protobuf.
    #[error("{path} is not a valid SolverState: {cause}")]
    Decode {
        /// File.
        path: PathBuf,
        /// Cause.
        cause: prost::DecodeError,
    },
    /// A history blob whose shape and data disagree.
    #[error("{path}: history blob {index}: {cause}")]
    Blob {
        /// File.
        path: PathBuf,
        /// Blob index.
        index: usize,
        /// Cause.
        cause: BlobError,
    },
    /// The state does not fit the solver (another net or another method).
    #[error("{path}: {msg}")]
    Mismatch {
        /// File.
        path: PathBuf,
        /// What differs.
        msg: String,
    },
    /// The weights the state points to cannot be found.
    #[error("{path}: learned_net '{learned_net}' was found neither relative to the working directory nor next to the solver state")]
    MissingNet {
        /// File.
        path: PathBuf,
        /// The `learned_net` string.
        learned_net: String,
    },
    /// Writing failed.
    #[error(transparent)]
    Write(#[from] AtomicWriteError),
}

/// The decoded contents of a `.solverstate`.
#[derive(Debug, Clone, PartialEq)]
pub struct SolverStateFile {
    /// Updates applied (`iter`).
    pub iter: u64,
    /// Path of the matching caffemodel as the writer gave it (`learned_net`).
    pub learned_net: String,
    /// History blobs in learnable-parameter order.
    pub history: Vec<Tensor>,
    /// `current_step`.
    pub current_step: u32,
}

/// Reads a `.solverstate`. Blob sizes are checked against their stored values (which the
/// decoder has already bounded by the file size).
pub fn read_solverstate(path: &Path) -> Result<SolverStateFile, StateError> {
    let bytes = std::fs::read(path).map_err(|cause| StateError::Io {
        path: path.into(),
        cause,
    })?;
    let s = SolverState::decode(bytes.as_slice()).map_err(|cause| StateError::Decode {
        path: path.into(),
        cause,
    })?;
    let mismatch = |msg: String| StateError::Mismatch {
        path: path.into(),
        msg,
    };
    let iter =
        u64::try_from(s.iter()).map_err(|_| mismatch(format!("negative iter {}", s.iter())))?;
    let current_step = u32::try_from(s.current_step())
        .map_err(|_| mismatch(format!("negative current_step {}", s.current_step())))?;
    let history = s
        .history
        .iter()
        .enumerate()
        .map(|(index, b)| {
            tensor_from_blob(b).map_err(|cause| StateError::Blob {
                path: path.into(),
                index,
                cause,
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(SolverStateFile {
        iter,
        learned_net: s.learned_net().to_string(),
        history,
        current_step,
    })
}

/// Encodes a state as Caffe's `SnapshotSolverStateToBinaryProto` does (every field set,
/// history blobs with `shape` and `data`), so a Caffe-written state re-encodes byte for byte.
pub fn encode_solverstate(state: &SolverStateFile) -> Vec<u8> {
    SolverState {
        iter: Some(state.iter.min(i32::MAX as u64) as i32),
        learned_net: Some(state.learned_net.clone()),
        history: state.history.iter().map(blob_from_tensor).collect(),
        current_step: Some(state.current_step as i32),
    }
    .encode_to_vec()
}

/// Writes a `.solverstate` atomically.
pub fn write_solverstate(path: &Path, state: &SolverStateFile) -> Result<(), StateError> {
    Ok(atomic_write(path, &encode_solverstate(state))?)
}

/// The file names of one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotPaths {
    /// `<prefix>_iter_<N>.caffemodel`.
    pub caffemodel: PathBuf,
    /// `<prefix>_iter_<N>.solverstate`.
    pub solverstate: PathBuf,
}

/// Snapshot names after `iter` updates, as Caffe's `SnapshotFilename`.
pub fn snapshot_paths(prefix: &str, iter: u64) -> SnapshotPaths {
    SnapshotPaths {
        caffemodel: PathBuf::from(format!("{prefix}_iter_{iter}.caffemodel")),
        solverstate: PathBuf::from(format!("{prefix}_iter_{iter}.solverstate")),
    }
}

/// Caffe's `UpgradeSnapshotPrefixProperty`: without `snapshot_prefix` the solver file's
/// path minus its extension is used; a prefix naming an existing directory gets the solver
/// file's stem appended inside it.
pub fn resolve_snapshot_prefix(prefix: Option<&str>, solver_file: &Path) -> String {
    match prefix {
        None => solver_file
            .with_extension("")
            .to_string_lossy()
            .into_owned(),
        Some(p) if Path::new(p).is_dir() => {
            let stem = solver_file.file_stem().unwrap_or_default();
            Path::new(p).join(stem).to_string_lossy().into_owned()
        }
        Some(p) => p.to_string(),
    }
}

/// Where the weights of a state are: `learned_net` as written (Caffe opens it relative to
/// the working directory), or else a file of that name next to the solverstate, so a
/// snapshot folder that was moved still resumes.
pub fn resolve_learned_net(state_path: &Path, learned_net: &str) -> Result<PathBuf, StateError> {
    let direct = PathBuf::from(learned_net);
    if direct.is_file() {
        return Ok(direct);
    }
    if let (Some(dir), Some(name)) = (state_path.parent(), direct.file_name()) {
        let beside = dir.join(name);
        if beside.is_file() {
            return Ok(beside);
        }
    }
    Err(StateError::MissingNet {
        path: state_path.into(),
        learned_net: learned_net.into(),
    })
}

impl Solver {
    /// The state to snapshot after `self.iter` updates, pointing at `learned_net`.
    pub fn to_state(&self, learned_net: &str) -> SolverStateFile {
        SolverStateFile {
            iter: self.iter,
            learned_net: learned_net.to_string(),
            history: self.history.clone(),
            current_step: self.current_step,
        }
    }

    /// Restores `iter`, `current_step` and the history from a state read from `path`. The
    /// history must have one blob per history slot, each with the slot's element count
    /// (Caffe checks the count; the shape may be stored in legacy 4-D form).
    pub fn restore(&mut self, state: SolverStateFile, path: &Path) -> Result<(), StateError> {
        let mismatch = |msg: String| StateError::Mismatch {
            path: path.into(),
            msg,
        };
        if state.history.len() != self.history.len() {
            return Err(mismatch(format!(
                "{} history blobs, but a {} solver for this net needs {}",
                state.history.len(),
                self.config.method.name(),
                self.history.len()
            )));
        }
        for (i, (have, new)) in self.history.iter().zip(&state.history).enumerate() {
            if have.len() != new.len() {
                return Err(mismatch(format!(
                    "history blob {i} has shape {:?}, the net's parameter has {:?}",
                    new.shape, have.shape
                )));
            }
        }
        for (have, new) in self.history.iter_mut().zip(state.history) {
            have.data = new.data;
        }
        self.iter = state.iter;
        self.current_step = state.current_step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::config::{Method, NetSource, Regularization, SolverConfig};
    use super::super::lr_policy::LrPolicy;
    use super::super::solver::Learnable;
    use super::*;
    use crate::proto::caffe::NetParameter;
    use crate::testutil::{read_f32_file, shared};

    const ORACLE: &str = "fixtures-real/caffe-oracle";

    fn caffemodel_blobs(path: &Path) -> Vec<(String, Vec<Tensor>)> {
        let net = NetParameter::decode(std::fs::read(path).unwrap().as_slice()).unwrap();
        net.layer
            .iter()
            .filter(|l| !l.blobs.is_empty())
            .map(|l| {
                let blobs = l
                    .blobs
                    .iter()
                    .map(|b| tensor_from_blob(b).unwrap())
                    .collect();
                (l.name().to_string(), blobs)
            })
            .collect()
    }

    #[test]
    fn caffe_written_solverstate_reencodes_byte_for_byte() {
        let Some(dir) = shared(ORACLE) else { return };
        let p = dir.join("trajectory/step10000/levi_mini_nodrop_iter_30.solverstate");
        let original = std::fs::read(&p).unwrap();
        let s = read_solverstate(&p).unwrap();
        assert_eq!(s.iter, 30);
        assert_eq!(s.current_step, 0);
        assert_eq!(s.history.len(), 12);
        assert_eq!(s.history[0].shape, vec![16, 3, 7, 7]);
        assert_eq!(s.history[11].shape, vec![9]);
        assert!(
            s.learned_net
                .ends_with("levi_mini_nodrop_iter_30.caffemodel"),
            "{}",
            s.learned_net
        );
        assert_eq!(encode_solverstate(&s), original);
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("x.solverstate");
        write_solverstate(&out, &s).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), original);
    }

    /// Caffe's first update from the init weights with the iteration-0 gradients (both
    /// written by Caffe) must give Caffe's iteration-1 history and weights.
    #[test]
    fn one_sgd_update_of_caffes_iter0_gradients_gives_caffes_iter1_snapshot() {
        let Some(dir) = shared(ORACLE) else { return };
        let init = caffemodel_blobs(&dir.join("levi_mini/levi_mini_init_iter_0.caffemodel"));
        let after =
            caffemodel_blobs(&dir.join("trajectory/step10000/levi_mini_nodrop_iter_1.caffemodel"));
        let state =
            read_solverstate(&dir.join("trajectory/step10000/levi_mini_nodrop_iter_1.solverstate"))
                .unwrap();
        assert_eq!((state.iter, state.current_step), (1, 0));
        let mut values = Vec::new();
        let mut diffs = Vec::new();
        let mut mults = Vec::new();
        for (layer, blobs) in &init {
            for (i, b) in blobs.iter().enumerate() {
                let g = read_f32_file(
                    &dir.join(format!("levi_mini/backward_iter0/param_{layer}_{i}.f32")),
                );
                assert_eq!(g.len(), b.len());
                values.push(b.clone());
                diffs.push(g);
                // train_val_nodropout.prototxt: weights lr 1 decay 1, biases lr 2 decay 0,
                // fc8 lr 10 / 20.
                let lr = if layer == "fc8" { 10.0 } else { 1.0 } * if i == 0 { 1.0 } else { 2.0 };
                mults.push((lr, if i == 0 { 1.0 } else { 0.0 }));
            }
        }
        let config = SolverConfig {
            method: Method::Sgd,
            base_lr: 0.001,
            lr_policy: LrPolicy::Step {
                gamma: 0.1,
                stepsize: 10000,
            },
            momentum: 0.9,
            momentum2: 0.999,
            delta: 1e-8,
            rms_decay: 0.99,
            weight_decay: 0.0005,
            regularization: Regularization::L2,
            clip_gradients: None,
            iter_size: 1,
            max_iter: 30,
            display: 1,
            average_loss: 1,
            test_interval: 10,
            test_initialization: true,
            snapshot: 0,
            snapshot_prefix: None,
            snapshot_after_train: true,
            random_seed: Some(1701),
            train_net: NetSource::File("n".into()),
            test_nets: vec![],
        };
        let shapes: Vec<Vec<usize>> = values.iter().map(|t| t.shape.clone()).collect();
        let mut solver = Solver::new(config, &shapes);
        let mut params: Vec<Learnable> = values
            .iter_mut()
            .zip(diffs.iter_mut())
            .zip(&mults)
            .map(|((v, d), &(lr_mult, decay_mult))| Learnable {
                value: &mut v.data,
                diff: d,
                lr_mult,
                decay_mult,
            })
            .collect();
        solver.apply_update(&mut params).unwrap();
        solver.iter += 1;
        let want_weights: Vec<&Tensor> = after.iter().flat_map(|(_, b)| b).collect();
        for (i, ((h, want_h), (w, want_w))) in solver
            .history
            .iter()
            .zip(&state.history)
            .zip(values.iter().zip(want_weights))
            .enumerate()
        {
            // Measured: histories within 1.2e-7 of max|h| (OpenBLAS fuses multiply-adds),
            // weights bit-identical.
            let scale = want_h.max_abs().max(f32::MIN_POSITIVE);
            let dh = h
                .data
                .iter()
                .zip(&want_h.data)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(
                dh <= 2.5e-7 * scale,
                "history {i}: max diff {dh} vs max {scale}"
            );
            let wscale = want_w.max_abs();
            let dw = w
                .data
                .iter()
                .zip(&want_w.data)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(
                dw <= 1e-7 * wscale,
                "weights {i}: max diff {dw} vs max {wscale}"
            );
        }
        // The state we would snapshot equals Caffe's apart from float rounding.
        let ours = solver.to_state(&state.learned_net);
        assert_eq!((ours.iter, ours.current_step), (1, 0));
    }

    #[test]
    fn restore_checks_the_history_against_the_net() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("s.solverstate");
        let state = SolverStateFile {
            iter: 7,
            learned_net: "m_iter_7.caffemodel".into(),
            history: vec![Tensor::full(&[2, 3], 0.5), Tensor::full(&[3], -1.0)],
            current_step: 2,
        };
        write_solverstate(&p, &state).unwrap();
        let back = read_solverstate(&p).unwrap();
        assert_eq!(back, state);
        let config = |m| SolverConfig {
            method: m,
            ..SolverConfig::from_proto(&crate::proto::caffe::SolverParameter {
                net: Some("n".into()),
                lr_policy: Some("fixed".into()),
                ..Default::default()
            })
            .unwrap()
        };
        let mut s = Solver::new(config(Method::Sgd), &[vec![2, 3], vec![3]]);
        s.restore(back.clone(), &p).unwrap();
        assert_eq!((s.iter, s.current_step), (7, 2));
        assert_eq!(s.history[1].data, vec![-1.0; 3]);
        let mut wrong = Solver::new(config(Method::Sgd), &[vec![2, 3], vec![4]]);
        let e = wrong.restore(back.clone(), &p).unwrap_err().to_string();
        assert!(
            e.contains("s.solverstate") && e.contains("history blob 1"),
            "{e}"
        );
        let mut adam = Solver::new(config(Method::Adam), &[vec![2, 3], vec![3]]);
        let e = adam.restore(back, &p).unwrap_err().to_string();
        assert!(e.contains("needs 4"), "{e}");
    }

    #[test]
    fn truncated_state_is_an_error_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("t.solverstate");
        let mut bytes = encode_solverstate(&SolverStateFile {
            iter: 1,
            learned_net: "x".into(),
            history: vec![Tensor::full(&[4], 1.0)],
            current_step: 0,
        });
        bytes.truncate(bytes.len() - 5);
        std::fs::write(&p, bytes).unwrap();
        let e = read_solverstate(&p).unwrap_err().to_string();
        assert!(e.contains("t.solverstate"), "{e}");
        let e = read_solverstate(&tmp.path().join("missing.solverstate"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.solverstate"), "{e}");
    }

    #[test]
    fn snapshot_names_and_prefix_rules_follow_caffe() {
        let s = snapshot_paths("out/age", 1000);
        assert_eq!(s.caffemodel, PathBuf::from("out/age_iter_1000.caffemodel"));
        assert_eq!(
            s.solverstate,
            PathBuf::from("out/age_iter_1000.solverstate")
        );
        let tmp = tempfile::tempdir().unwrap();
        let solver = Path::new("nets/age_solver.prototxt");
        assert_eq!(resolve_snapshot_prefix(None, solver), "nets/age_solver");
        let d = tmp.path().to_string_lossy().into_owned();
        assert_eq!(
            resolve_snapshot_prefix(Some(&d), solver),
            tmp.path().join("age_solver").to_string_lossy()
        );
        assert_eq!(resolve_snapshot_prefix(Some("snap/x"), solver), "snap/x");
    }

    #[test]
    fn learned_net_is_found_next_to_a_moved_state() {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("a_iter_5.solverstate");
        std::fs::write(tmp.path().join("a_iter_5.caffemodel"), b"x").unwrap();
        let got = resolve_learned_net(&state, "old/place/a_iter_5.caffemodel").unwrap();
        assert_eq!(got, tmp.path().join("a_iter_5.caffemodel"));
        let e = resolve_learned_net(&state, "old/place/b.caffemodel")
            .unwrap_err()
            .to_string();
        assert!(e.contains("b.caffemodel"), "{e}");
    }
}
