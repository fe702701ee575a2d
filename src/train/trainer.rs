//! The training loop: Caffe's `Solver::Solve` and `Solver::Step` with the same order of
//! events per iteration (test at `test_interval`, `iter_size` forward/backward passes,
//! smoothed loss display, `ApplyUpdate`, `++iter`, snapshot every `snapshot` iterations),
//! then a snapshot after the last iteration, a final display forward and a final test.
//!
//! Paths in the solver and net files are relative to the working directory, as with
//! `caffe train`. A stop request (SIGINT) ends the loop after the current iteration and
//! writes a snapshot, as Caffe's default `sigint_effect: stop` does.
//!
//! Beyond Caffe: a resumed run skips the data it already consumed and every batch and
//! iteration reseeds its random draws from its position, so training N iterations equals
//! training k, then resuming for N − k.

use super::config::{ConfigError, NetSource, SolverConfig};
use super::data::{batch_seed, DataError, DataSource, Prefetcher};
use super::log::{LogError, LogRecord, TestRecord, TrainLog, TrainRecord};
use super::net::{TrainNet, TrainNetError};
use super::solver::{SmoothedLoss, Solver, SolverError};
use super::state::{
    read_solverstate, resolve_learned_net, resolve_snapshot_prefix, snapshot_paths,
    write_solverstate, SnapshotPaths, StateError,
};
use crate::caffe::caffemodel::read_caffemodel;
use crate::caffe::import::net_from_proto_state;
use crate::caffe::prototxt::{read_prototxt, read_solver};
use crate::caffe::state::NetStateFilter;
use crate::caffe::weights::copy_weights_by_name;
use crate::caffe::{fill_missing_weights, write_caffemodel, CaffeError};
use crate::ir::{Net, Op, Phase, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Errors of a training run; each names the file, layer or record at fault.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The solver file is not valid.
    #[error("{path}: {cause}")]
    Config {
        /// Solver file.
        path: PathBuf,
        /// What is wrong.
        cause: ConfigError,
    },
    /// A prototxt or caffemodel could not be read or does not fit.
    #[error(transparent)]
    Caffe(#[from] CaffeError),
    /// The data could not be read.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A forward or backward pass failed.
    #[error(transparent)]
    Net(#[from] TrainNetError),
    /// A solver state does not fit.
    #[error(transparent)]
    State(#[from] StateError),
    /// The update failed.
    #[error(transparent)]
    Solver(#[from] SolverError),
    /// The log could not be written.
    #[error(transparent)]
    Log(#[from] LogError),
    /// A net without the layers training needs.
    #[error("{net}: {msg}")]
    Setup {
        /// Which net (train or test #k).
        net: String,
        /// What is missing.
        msg: String,
    },
}

/// How to run a training.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// The solver prototxt.
    pub solver: PathBuf,
    /// Initial weights (`--weights`), copied by layer name.
    pub weights: Option<PathBuf>,
    /// A `.solverstate` to resume from (`--snapshot`).
    pub resume: Option<PathBuf>,
    /// Worker threads.
    pub threads: usize,
    /// JSONL log (`--log`).
    pub log: Option<PathBuf>,
    /// Show a progress bar and display lines on stderr.
    pub verbose: bool,
    /// Set by a signal handler to stop after the current iteration (with a snapshot).
    pub stop: Arc<AtomicBool>,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct TrainReport {
    /// Updates applied at the end.
    pub iter: u64,
    /// The raw loss of every iteration run (index 0 = the first iteration of this run).
    pub losses: Vec<f32>,
    /// The learning rate of every update of this run.
    pub rates: Vec<f32>,
    /// Every test pass.
    pub tests: Vec<TestRecord>,
    /// Snapshots written.
    pub snapshots: Vec<SnapshotPaths>,
    /// True when a stop request ended the run early.
    pub interrupted: bool,
    /// Training images processed per second (forward + backward + update).
    pub images_per_s: f64,
}

/// One Data layer being fed: its IR tops and its prefetcher.
struct Feed {
    tops: Vec<String>,
    source: Prefetcher,
}

/// A test net with its data and the number of batches per pass.
struct TestRun {
    net: TrainNet,
    feeds: Vec<Feed>,
    iters: usize,
    index: usize,
}

const DEFAULT_SEED: u64 = 1701;

/// Builds a net of `source` for `phase`, with its Data layers opened (record shapes set)
/// and, for the train net, missing weights filled from the layers' fillers.
/// A net with its opened Data layers (their IR tops and sources).
type PreparedNet = (Net, Vec<(Vec<String>, DataSource)>);

fn prepare_net(source: &NetSource, phase: Phase, seed: u64) -> Result<PreparedNet, TrainError> {
    let mut net = match source {
        NetSource::File(path) => {
            let param = read_prototxt(Path::new(path)).map_err(CaffeError::from)?;
            net_from_proto_state(&param, &NetStateFilter::from(phase))
                .map_err(|e| CaffeError::in_file(path, e))?
        }
        NetSource::Inline(param) => {
            net_from_proto_state(param, &NetStateFilter::from(phase)).map_err(CaffeError::from)?
        }
    };
    let mut sources = Vec::new();
    for (i, l) in net.layers.iter_mut().enumerate() {
        if let Op::Data(p) = &mut l.op {
            let src = DataSource::open(p, phase, batch_seed(seed, 1 + i as u64))?;
            p.record_shape = Some(src.output_shape());
            sources.push((l.tops.clone(), src));
        }
    }
    Ok((net, sources))
}

fn feeds_from(batches: Vec<(Vec<String>, super::data::Batch)>) -> Vec<(String, Tensor)> {
    let mut out = Vec::new();
    for (tops, b) in batches {
        let mut it = tops.into_iter();
        if let Some(t) = it.next() {
            out.push((t, b.data));
        }
        if let Some(t) = it.next() {
            out.push((t, b.labels));
        }
    }
    out
}

fn next_feeds(feeds: &mut [Feed]) -> Result<(Vec<(String, Tensor)>, usize), TrainError> {
    let mut batches = Vec::new();
    let mut images = 0;
    for f in feeds.iter_mut() {
        let b = f.source.next_batch()?;
        images = images.max(b.labels.len());
        batches.push((f.tops.clone(), b));
    }
    Ok((feeds_from(batches), images))
}

/// Copies every learned blob of `from` into the same-named layer of `to` (Caffe's test
/// nets share the train net's parameters).
fn share_weights(from: &Net, to: &mut Net) {
    for l in &mut to.layers {
        if let Some(src) = from.layer(&l.name) {
            if src.blobs.len() == l.blobs.len() || l.blobs.is_empty() {
                l.blobs = src.blobs.clone();
            }
        }
    }
}

/// The training session.
pub struct Trainer {
    opts: TrainOptions,
    solver: Solver,
    train: TrainNet,
    feeds: Vec<Feed>,
    tests: Vec<TestRun>,
    prefix: String,
    log: Option<TrainLog>,
    seed: u64,
    report: TrainReport,
    bar: Option<ProgressBar>,
}

impl Trainer {
    /// Reads the solver, builds the train and test nets, loads `--weights` or restores
    /// `--snapshot`, opens the data and the log.
    pub fn new(opts: TrainOptions) -> Result<Self, TrainError> {
        let param = read_solver(&opts.solver).map_err(CaffeError::from)?;
        let config = SolverConfig::from_proto(&param).map_err(|cause| TrainError::Config {
            path: opts.solver.clone(),
            cause,
        })?;
        let seed = config.random_seed.unwrap_or(DEFAULT_SEED);
        let prefix = resolve_snapshot_prefix(config.snapshot_prefix.as_deref(), &opts.solver);
        let (mut net, sources) = prepare_net(&config.train_net, Phase::Train, seed)?;
        if sources.is_empty() {
            return Err(TrainError::Setup {
                net: "train net".into(),
                msg: "has no Data layer to read training batches from".into(),
            });
        }
        let state = match &opts.resume {
            Some(path) => Some((path.clone(), read_solverstate(path)?)),
            None => None,
        };
        let weights = match &state {
            Some((path, s)) => Some(resolve_learned_net(path, &s.learned_net)?),
            None => opts.weights.clone(),
        };
        if let Some(w) = &weights {
            let source = read_caffemodel(w)?;
            copy_weights_by_name(&mut net, &source).map_err(|e| CaffeError::in_file(w, e))?;
        }
        fill_missing_weights(&mut net, seed).map_err(CaffeError::from)?;
        let mut train = TrainNet::new(net, Phase::Train, opts.threads, seed)?;
        let mut solver = Solver::new(config.clone(), &train.param_shapes());
        if let Some((path, s)) = state {
            solver.restore(s, &path)?;
        }
        let skip = solver.iter * config.iter_size as u64;
        let feeds = sources
            .into_iter()
            .map(|(tops, mut src)| -> Result<Feed, TrainError> {
                src.skip(skip)?;
                Ok(Feed {
                    tops,
                    source: Prefetcher::spawn(src, 3),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut tests = Vec::new();
        for (index, t) in config.test_nets.iter().enumerate() {
            let (mut tnet, tsources) =
                prepare_net(&t.source, Phase::Test, seed.wrapping_add(index as u64 + 1))?;
            share_weights(&train.net, &mut tnet);
            fill_missing_weights(&mut tnet, seed).map_err(CaffeError::from)?;
            tests.push(TestRun {
                net: TrainNet::new(tnet, Phase::Test, opts.threads, seed)?,
                feeds: tsources
                    .into_iter()
                    .map(|(tops, src)| Feed {
                        tops,
                        source: Prefetcher::spawn(src, 2),
                    })
                    .collect(),
                iters: t.iters,
                index,
            });
        }
        let log = match &opts.log {
            Some(p) => Some(TrainLog::create(
                p,
                opts.resume.as_ref().map(|_| solver.iter),
            )?),
            None => None,
        };
        train.clear_param_diffs();
        Ok(Self {
            solver,
            train,
            feeds,
            tests,
            prefix,
            log,
            seed,
            report: TrainReport::default(),
            bar: None,
            opts,
        })
    }

    /// The solver (configuration, iteration, history).
    pub fn solver(&self) -> &Solver {
        &self.solver
    }

    /// The train net (its layers hold the current weights).
    pub fn net(&self) -> &Net {
        &self.train.net
    }

    /// The resolved snapshot prefix (Caffe's `snapshot_prefix` rules), so the CLI can
    /// refuse to overwrite an earlier run's snapshots without `--force` (issue 8).
    pub fn snapshot_prefix(&self) -> &str {
        &self.prefix
    }

    fn say(&self, line: String) {
        if !self.opts.verbose {
            return;
        }
        match &self.bar {
            Some(b) => b.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// Runs to `max_iter` (or until a stop request) and returns what happened.
    pub fn solve(mut self) -> Result<TrainReport, TrainError> {
        let config = self.solver.config.clone();
        let start_iter = self.solver.iter;
        if self.opts.verbose {
            let bar = ProgressBar::new(config.max_iter);
            bar.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} ETA {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_position(start_iter);
            self.bar = Some(bar);
        }
        let mut smoothed = SmoothedLoss::new(config.average_loss);
        let started = Instant::now();
        let mut images_total = 0u64;
        let mut last_display = (Instant::now(), 0u64);
        let mut just_snapshotted = false;
        while self.solver.iter < config.max_iter {
            let iter = self.solver.iter;
            self.train.clear_param_diffs();
            if config.test_interval > 0
                && iter.is_multiple_of(config.test_interval)
                && (iter > 0 || config.test_initialization)
            {
                self.test_all()?;
            }
            let display = config.display > 0 && iter.is_multiple_of(config.display);
            let mut loss = 0.0f32;
            for pass in 0..config.iter_size {
                let (feeds, images) = next_feeds(&mut self.feeds)?;
                self.train.reseed(batch_seed(
                    self.seed,
                    iter * config.iter_size as u64 + pass as u64,
                ));
                loss += self.train.forward_backward(feeds)?;
                images_total += images as u64;
                last_display.1 += images as u64;
            }
            loss /= config.iter_size as f32;
            let shown = smoothed.update(loss, iter, start_iter);
            let rate = {
                let mut params = self.train.learnables();
                self.solver.apply_update(&mut params)?
            };
            self.report.losses.push(loss);
            self.report.rates.push(rate);
            if display {
                let secs = last_display.0.elapsed().as_secs_f64().max(1e-9);
                let ips = last_display.1 as f64 / secs;
                last_display = (Instant::now(), 0);
                self.say(format!(
                    "Iteration {iter}, loss = {shown}, lr = {rate}, {ips:.1} img/s"
                ));
                if let Some(b) = &self.bar {
                    b.set_message(format!("loss {shown:.4} lr {rate:.2e} {ips:.1} img/s"));
                }
                if let Some(log) = &mut self.log {
                    log.push(LogRecord::Train(TrainRecord {
                        iter,
                        loss: shown,
                        lr: rate,
                        images_per_s: ips,
                    }))?;
                }
            }
            self.solver.iter += 1;
            if let Some(b) = &self.bar {
                b.set_position(self.solver.iter);
            }
            just_snapshotted = false;
            let stop = self.opts.stop.load(Ordering::SeqCst);
            if (config.snapshot > 0 && self.solver.iter.is_multiple_of(config.snapshot)) || stop {
                self.snapshot()?;
                just_snapshotted = true;
            }
            if stop {
                self.report.interrupted = true;
                break;
            }
        }
        let secs = started.elapsed().as_secs_f64();
        self.report.images_per_s = if secs > 0.0 {
            images_total as f64 / secs
        } else {
            0.0
        };
        let iter = self.solver.iter;
        if !self.report.interrupted {
            if config.snapshot_after_train
                && !just_snapshotted
                && (config.snapshot == 0 || !iter.is_multiple_of(config.snapshot))
            {
                self.snapshot()?;
            }
            if config.display > 0 && iter.is_multiple_of(config.display) {
                let (feeds, _) = next_feeds(&mut self.feeds)?;
                self.train
                    .reseed(batch_seed(self.seed, iter * config.iter_size as u64));
                let loss = self.train.forward(feeds)?;
                let shown = smoothed.update(loss, iter, start_iter);
                self.say(format!("Iteration {iter}, loss = {shown}"));
            }
            if config.test_interval > 0 && iter.is_multiple_of(config.test_interval) {
                self.test_all()?;
            }
        } else {
            self.say(format!("Optimization stopped early at iteration {iter}."));
        }
        if let Some(log) = &mut self.log {
            log.flush()?;
        }
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        self.report.iter = iter;
        Ok(self.report)
    }

    /// Writes `<prefix>_iter_N.caffemodel` and `.solverstate` (both atomically).
    fn snapshot(&mut self) -> Result<(), TrainError> {
        let paths = snapshot_paths(&self.prefix, self.solver.iter);
        if let Some(dir) = paths
            .caffemodel
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                TrainError::Caffe(CaffeError::Write(
                    crate::util::atomic::AtomicWriteError::Io {
                        path: dir.to_path_buf(),
                        source: e,
                    },
                ))
            })?;
        }
        write_caffemodel(&self.train.net, &paths.caffemodel)?;
        let state = self.solver.to_state(&paths.caffemodel.to_string_lossy());
        write_solverstate(&paths.solverstate, &state)?;
        self.say(format!(
            "Snapshotting to {} and {}",
            paths.caffemodel.display(),
            paths.solverstate.display()
        ));
        self.report.snapshots.push(paths);
        Ok(())
    }

    /// Runs every test net for its `test_iter` batches (Caffe's `TestAll`): each output
    /// is averaged over the batches.
    fn test_all(&mut self) -> Result<(), TrainError> {
        let iter = self.solver.iter;
        for t in &mut self.tests {
            share_weights(&self.train.net, &mut t.net.net);
            let outputs = t.net.net.outputs();
            let mut sums: BTreeMap<String, f64> = BTreeMap::new();
            for _ in 0..t.iters {
                let (feeds, _) = next_feeds(&mut t.feeds)?;
                t.net.forward(feeds)?;
                for o in &outputs {
                    if let Some(v) = t.net.blob(o) {
                        let name = t.net.net.caffe_name_of(o).to_string();
                        *sums.entry(name).or_insert(0.0) +=
                            v.data.iter().map(|&x| f64::from(x)).sum::<f64>();
                    }
                }
            }
            let n = t.iters.max(1) as f64;
            let means: BTreeMap<String, f64> = sums.into_iter().map(|(k, v)| (k, v / n)).collect();
            let kind_of = |want: fn(&Op) -> bool| -> Option<f64> {
                t.net.net.layers.iter().find(|l| want(&l.op)).and_then(|l| {
                    l.tops
                        .first()
                        .and_then(|top| means.get(t.net.net.caffe_name_of(top)).copied())
                })
            };
            let record = TestRecord {
                iter,
                test_accuracy: kind_of(|op| matches!(op, Op::Accuracy(_))),
                test_loss: kind_of(|op| matches!(op, Op::SoftmaxWithLoss(_))),
                test_net: t.index,
                outputs: means.clone(),
            };
            let line = means
                .iter()
                .map(|(k, v)| format!("{k} = {v:.6}"))
                .collect::<Vec<_>>()
                .join(", ");
            let msg = format!("Iteration {iter}, Testing net (#{}): {line}", t.index);
            if self.opts.verbose {
                match &self.bar {
                    Some(b) => b.println(msg),
                    None => eprintln!("{msg}"),
                }
            }
            if let Some(log) = &mut self.log {
                log.push(LogRecord::Test(record.clone()))?;
            }
            self.report.tests.push(record);
        }
        Ok(())
    }
}

/// Trains with `opts` (Caffe's `caffe train`).
pub fn train(opts: TrainOptions) -> Result<TrainReport, TrainError> {
    Trainer::new(opts)?.solve()
}
