//! Evaluating a deploy net on a labelled LMDB (what `agegender test` and the pipeline
//! run): every record, in key order, preprocessed as Caffe's TEST-phase data layer does
//! (centre crop to the net's input, mean subtraction), the prediction being the arg-max of
//! the net's output.

use super::{ClassNames, ConfusionMatrix};
use crate::exec::f16::F16Engine;
use crate::exec::{Engine, ExecOptions};
use crate::io::lmdb::LmdbReader;
use crate::ir::{Net, Phase, Tensor};
use crate::ops::data::{DataParams, TransformParams};
use crate::train::data::{DataSource, Prefetcher};
use anyhow::{bail, Context, Result};
use indicatif::ProgressBar;
use std::path::Path;

/// Options of an LMDB evaluation.
pub struct LmdbEval<'a> {
    /// The labelled records.
    pub lmdb: &'a Path,
    /// Mean image (C×H×W or 1×C×H×W; centre-cropped when larger than the records) or per
    /// channel values (`[C]`).
    pub mean: Option<Tensor>,
    /// Images per forward pass.
    pub batch: usize,
    /// Worker threads (0 = all cores).
    pub threads: usize,
    /// Class names; by default chosen from the number of outputs.
    pub classes: Option<ClassNames>,
    /// Show a progress bar.
    pub progress: bool,
    /// Run on the fp16 NCS emulation ([`crate::exec::F16Engine`]) instead of the f32
    /// engine: how a compiled graph scores on the stick.
    pub fp16: bool,
}

/// Centre crop of a C×H×W (or 1×C×H×W) tensor to `h × w`.
fn centre_crop(t: &Tensor, h: usize, w: usize) -> Result<Tensor> {
    let s: Vec<usize> = t.shape.iter().copied().skip_while(|&d| d == 1).collect();
    let s = if s.len() < 3 {
        t.shape[t.shape.len().saturating_sub(3)..].to_vec()
    } else {
        s
    };
    let [c, th, tw] = [s[0], s[1], s[2]];
    if th < h || tw < w {
        bail!("the mean is {th}x{tw}, smaller than the records' {h}x{w}");
    }
    let (y0, x0) = ((th - h) / 2, (tw - w) / 2);
    let mut out = Tensor::zeros(&[c, h, w]);
    for ch in 0..c {
        for y in 0..h {
            let src = &t.data[(ch * th + y0 + y) * tw + x0..][..w];
            out.data[(ch * h + y) * w..][..w].copy_from_slice(src);
        }
    }
    Ok(out)
}

/// The engine a test runs on.
enum Runner {
    /// The native f32 engine.
    F32(Engine),
    /// The fp16 NCS emulation.
    F16(F16Engine),
}

impl Runner {
    fn engine(&self) -> &Engine {
        match self {
            Runner::F32(e) => e,
            Runner::F16(e) => e.engine(),
        }
    }
}

/// Runs every record through `net` and returns the confusion matrix.
pub fn evaluate_lmdb(net: &Net, opts: &LmdbEval<'_>) -> Result<ConfusionMatrix> {
    let (input, in_shape) = crate::cli::common::single_input(net)?;
    if in_shape.len() != 4 {
        bail!("input '{input}' has shape {in_shape:?}; an image net takes N×C×H×W");
    }
    let total = LmdbReader::open(opts.lmdb)?.len()?;
    if total == 0 {
        bail!("{}: the database holds no record", opts.lmdb.display());
    }
    // Record shape from the first record, then the TEST transform of Caffe's data layer.
    let probe = DataSource::open(
        &DataParams {
            source: opts.lmdb.to_string_lossy().into_owned(),
            batch_size: 1,
            ..Default::default()
        },
        Phase::Test,
        0,
    )?;
    let [rc, rh, rw] = probe.output_shape();
    drop(probe);
    let [c, h, w] = [in_shape[1], in_shape[2], in_shape[3]];
    if rc != c || rh < h || rw < w {
        bail!(
            "{}: records are {rc}x{rh}x{rw} but the net's input '{input}' is {c}x{h}x{w}",
            opts.lmdb.display()
        );
    }
    let mut transform = TransformParams {
        crop_size: if (rh, rw) != (h, w) { h } else { 0 },
        ..Default::default()
    };
    if rh != rw && transform.crop_size > 0 {
        bail!("cropping non-square {rh}x{rw} records to {h}x{w} is not supported");
    }
    let mut mean_image = None;
    if let Some(m) = &opts.mean {
        if m.len() == rc {
            transform.mean_value = m.data.clone();
        } else {
            mean_image = Some(centre_crop(m, rh, rw).context("mean")?);
        }
    }
    let batch = opts.batch.max(1).min(total);
    let params = DataParams {
        source: opts.lmdb.to_string_lossy().into_owned(),
        batch_size: batch,
        transform,
        record_shape: None,
    };
    let source = DataSource::open_with_mean(&params, mean_image, Phase::Test, 0)?;
    let mut prefetch = Prefetcher::spawn(source, 2);
    let exec = ExecOptions {
        threads: opts.threads,
        batch: Some(batch),
        ..Default::default()
    };
    let runner = if opts.fp16 {
        Runner::F16(F16Engine::with_options(net, exec)?)
    } else {
        Runner::F32(Engine::with_options(net, exec)?)
    };
    let outputs = runner.engine().output_names();
    let [out_name] = outputs.as_slice() else {
        bail!(
            "the net has {} outputs ({}); test needs exactly one",
            outputs.len(),
            outputs.join(", ")
        );
    };
    let out_name = out_name.to_string();
    let mut matrix: Option<ConfusionMatrix> = None;
    let bar = if opts.progress {
        ProgressBar::new(total as u64)
    } else {
        ProgressBar::hidden()
    };
    let mut done = 0;
    while done < total {
        let b = prefetch.next_batch()?;
        let mut out = match &runner {
            Runner::F16(e) => e.run([(input.as_str(), b.data)])?.outputs,
            Runner::F32(e) => e.run([(input.as_str(), b.data)])?,
        };
        let scores = out.take(&out_name).context("the net produced no output")?;
        let classes = scores.len() / batch;
        let m = matrix.get_or_insert_with(|| {
            ConfusionMatrix::new(
                opts.classes
                    .clone()
                    .unwrap_or_else(|| ClassNames::for_class_count(classes)),
            )
        });
        if m.classes() != classes {
            bail!(
                "the net has {classes} outputs but {} class names were given",
                m.classes()
            );
        }
        let take = batch.min(total - done);
        for (row, &label) in scores.data.chunks(classes).zip(&b.labels.data).take(take) {
            let pred = row
                .iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
                    if v > best.1 {
                        (i, v)
                    } else {
                        best
                    }
                })
                .0;
            m.add(label as i64, pred as i64)
                .with_context(|| format!("{}: record {}", opts.lmdb.display(), done + 1))?;
        }
        done += take;
        bar.set_position(done as u64);
    }
    bar.finish_and_clear();
    matrix.context("no record was evaluated")
}
