//! The training step of the pipeline: the native trainer on the written solver, resume
//! from the latest snapshot, AgeNet's body as GenderNet's initial weights, and the fc8
//! bias shift.

use super::prototxt::NetKind;
use super::report::TrainingInfo;
use super::{step_line, PipelineError, PipelineOptions};
use std::path::{Path, PathBuf};

/// Writes AgeNet's trained layers up to fc7 (everything but the 9-way fc8) as
/// `OUT/train/AgeNet_features.caffemodel`, GenderNet's initial weights: the two nets share
/// Levi & Hassner's body, and a face's age features carry most of what gender needs, so
/// GenderNet starts from them (copied by layer name, as `caffe train --weights` does) and
/// only its 2-way fc8 starts from the filler.
pub(super) fn write_feature_init(
    age_net: &crate::ir::Net,
    out: &Path,
) -> Result<PathBuf, PipelineError> {
    let mut body = age_net.clone();
    body.layers.retain(|l| l.name != "fc8" && l.name != "prob");
    let path = out.join("train").join("AgeNet_features.caffemodel");
    crate::caffe::write_caffemodel(&body, &path).map_err(|e| PipelineError::Step {
        step: "train",
        msg: format!("writing {}: {e}", path.display()),
    })?;
    Ok(path)
}

/// Adds `shift[c]` to the bias of the last InnerProduct (fc8) of a trained net.
pub(super) fn apply_prior_shift(
    net: &mut crate::ir::Net,
    shift: &[f32],
) -> Result<(), PipelineError> {
    let fail = |msg: String| PipelineError::Step {
        step: "prior correction",
        msg,
    };
    let fc8 = net
        .layers
        .iter_mut()
        .rev()
        .find(|l| matches!(l.op, crate::ir::Op::InnerProduct(_)))
        .ok_or_else(|| fail("the net has no InnerProduct layer".into()))?;
    let bias = fc8
        .blobs
        .get_mut(1)
        .filter(|b| b.len() == shift.len())
        .ok_or_else(|| {
            fail(format!(
                "layer {} has no bias of {} classes",
                fc8.name,
                shift.len()
            ))
        })?;
    bias.data.iter_mut().zip(shift).for_each(|(b, s)| *b += s);
    Ok(())
}

/// The latest snapshot `<prefix>_iter_N.solverstate` (with its caffemodel) in the folder of
/// `prefix`, for `--resume`.
pub(super) fn latest_snapshot(prefix: &Path) -> Option<(u64, PathBuf)> {
    let dir = prefix.parent()?;
    let stem = format!("{}_iter_", prefix.file_name()?.to_str()?);
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let iter: u64 = name
                .strip_prefix(&stem)?
                .strip_suffix(".solverstate")?
                .parse()
                .ok()?;
            let caffemodel = dir.join(format!("{stem}{iter}.caffemodel"));
            caffemodel.is_file().then(|| (iter, dir.join(name)))
        })
        .max_by_key(|(iter, _)| *iter)
}

/// Trains one net from its solver file with the native trainer (Caffe's SGD semantics),
/// loads the last snapshot into the deploy net, and draws the training curves into
/// `OUT/train/<Net>_curves.png`; returns the trained deploy net and what happened.
pub(super) fn train_net(
    kind: NetKind,
    solver: &Path,
    deploy: &Path,
    out: &Path,
    init: Option<PathBuf>,
    options: &PipelineOptions,
) -> Result<(crate::ir::Net, TrainingInfo), PipelineError> {
    let fail = |msg: String| PipelineError::Step {
        step: "train",
        msg: format!("{}: {msg}", kind.name()),
    };
    let log = out.join("train").join(format!("{}_log.jsonl", kind.name()));
    let prefix = out.join("train").join(kind.name());
    let max_iter = options.iterations(kind);
    let resume = if options.resume {
        latest_snapshot(&prefix).filter(|(iter, _)| *iter <= max_iter)
    } else {
        None
    };
    if let Some((iter, state)) = &resume {
        step_line(
            options,
            &format!(
                "{}: resuming from {} (iteration {iter})",
                kind.name(),
                state.display()
            ),
        );
    }
    let finished = resume.as_ref().is_some_and(|(iter, _)| *iter == max_iter);
    let report = if finished {
        crate::train::trainer::TrainReport {
            iter: max_iter,
            snapshots: vec![crate::train::state::snapshot_paths(
                &prefix.display().to_string(),
                max_iter,
            )],
            ..Default::default()
        }
    } else {
        crate::train::trainer::train(crate::train::trainer::TrainOptions {
            solver: solver.to_path_buf(),
            weights: init,
            resume: resume.map(|(_, state)| state),
            threads: if options.threads == 0 {
                std::thread::available_parallelism().map_or(1, |n| n.get())
            } else {
                options.threads
            },
            log: Some(log.clone()),
            verbose: options.verbose,
            stop: options.stop.clone(),
        })
        .map_err(|e| fail(e.to_string()))?
    };
    if report.interrupted {
        return Err(fail(format!(
            "interrupted after {} iterations (snapshot written; rerun the same command with \
             --resume to continue)",
            report.iter
        )));
    }
    let snapshot = report
        .snapshots
        .last()
        .ok_or_else(|| fail("the run wrote no snapshot".into()))?;
    let net = crate::caffe::load_net(deploy, Some(&snapshot.caffemodel), crate::ir::Phase::Test)
        .map_err(|e| fail(e.to_string()))?;
    let curves = Path::new("train").join(format!("{}_curves.png", kind.name()));
    let records = crate::train::log::read_log(&log).map_err(|e| fail(e.to_string()))?;
    crate::train::plot::write_plot(&records, &out.join(&curves))
        .map_err(|e| fail(e.to_string()))?;
    // A reused run reports the throughput its log recorded last.
    let images_per_s = if finished {
        records
            .iter()
            .rev()
            .find_map(|r| match r {
                crate::train::log::LogRecord::Train(t) => Some(t.images_per_s),
                _ => None,
            })
            .unwrap_or(0.0)
    } else {
        report.images_per_s
    };
    let schedule = std::fs::read_to_string(solver).unwrap_or_default();
    let field = |name: &str| {
        schedule
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix(name)
                    .map(|v| v.trim().trim_matches('"'))
            })
            .unwrap_or("?")
            .to_string()
    };
    Ok((
        net,
        TrainingInfo {
            net: kind.name().to_string(),
            solver: format!(
                "{} lr {} {}",
                field("type:"),
                field("base_lr:"),
                field("lr_policy:")
            ),
            iterations: report.iter,
            batch: options.batch(),
            images_per_s,
            curves: curves.display().to_string(),
        },
    ))
}
