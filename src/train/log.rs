//! The training log (`train --log LOG.jsonl`): one JSON object per line, one line per
//! displayed iteration (`iter`, `loss`, `lr`, `images_per_s`) and one per test pass
//! (`iter`, `test_accuracy`, `test_loss`). `plot` reads it back.
//!
//! The file is rewritten through the atomic-write helper (at most once a second while
//! training, and always on [`TrainLog::flush`]), so a crash leaves the previous complete
//! file, never a torn line.

use crate::util::atomic::{atomic_write, AtomicWriteError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A displayed training iteration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainRecord {
    /// Iteration (updates applied before this forward pass).
    pub iter: u64,
    /// Smoothed loss over `average_loss` iterations, as Caffe displays it.
    pub loss: f32,
    /// Learning rate of this iteration's update.
    pub lr: f32,
    /// Training throughput since the previous display.
    pub images_per_s: f64,
}

/// One test pass over a test net.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestRecord {
    /// Iteration at which the test ran.
    pub iter: u64,
    /// Mean of the Accuracy output, when the test net has one.
    pub test_accuracy: Option<f64>,
    /// Mean of the loss output, when the test net has one.
    pub test_loss: Option<f64>,
    /// Which test net (0 for the first).
    #[serde(default)]
    pub test_net: usize,
    /// Every scalar output by Caffe blob name (Caffe's `Test net output #k: name = v`).
    #[serde(default)]
    pub outputs: BTreeMap<String, f64>,
}

/// A line of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LogRecord {
    /// A training display.
    Train(TrainRecord),
    /// A test pass.
    Test(TestRecord),
}

impl LogRecord {
    /// The iteration of the record.
    pub fn iter(&self) -> u64 {
        match self {
            LogRecord::Train(r) => r.iter,
            LogRecord::Test(r) => r.iter,
        }
    }
}

/// Errors reading or writing a log; each names the file (and the line when parsing).
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The file could not be read.
    #[error("cannot read log {path}: {cause}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        cause: std::io::Error,
    },
    /// A line that is not one of the two record kinds.
    #[error("{path}:{line}: not a training log record: {msg}")]
    Parse {
        /// File.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// Parser message.
        msg: String,
    },
    /// Writing failed.
    #[error(transparent)]
    Write(#[from] AtomicWriteError),
}

/// Reads every record of a log (blank lines are skipped).
pub fn read_log(path: &Path) -> Result<Vec<LogRecord>, LogError> {
    let text = std::fs::read_to_string(path).map_err(|cause| LogError::Io {
        path: path.into(),
        cause,
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| LogError::Parse {
                path: path.into(),
                line: i + 1,
                msg: e.to_string(),
            })
        })
        .collect()
}

/// An open log being written by a training run.
pub struct TrainLog {
    path: PathBuf,
    records: Vec<LogRecord>,
    last_write: Option<Instant>,
    dirty: bool,
}

impl TrainLog {
    /// Starts a log at `path`. When resuming from iteration `resume_from`, the records of
    /// an existing log before that iteration are kept (later ones are about to be
    /// recomputed); a fresh run starts empty.
    pub fn create(path: &Path, resume_from: Option<u64>) -> Result<Self, LogError> {
        let records = match resume_from {
            Some(iter) if path.exists() => read_log(path)?
                .into_iter()
                .filter(|r| r.iter() < iter)
                .collect(),
            _ => Vec::new(),
        };
        let mut log = Self {
            path: path.into(),
            records,
            last_write: None,
            dirty: true,
        };
        log.flush()?;
        Ok(log)
    }

    /// Adds a record; the file is rewritten when the last write is over a second old.
    pub fn push(&mut self, record: LogRecord) -> Result<(), LogError> {
        self.records.push(record);
        self.dirty = true;
        if self
            .last_write
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes every record now (atomically).
    pub fn flush(&mut self) -> Result<(), LogError> {
        if !self.dirty {
            return Ok(());
        }
        let mut text = String::new();
        for r in &self.records {
            // Serialising these plain structs cannot fail.
            text.push_str(&serde_json::to_string(r).unwrap_or_default());
            text.push('\n');
        }
        atomic_write(&self.path, text.as_bytes())?;
        self.last_write = Some(Instant::now());
        self.dirty = false;
        Ok(())
    }

    /// The records so far.
    pub fn records(&self) -> &[LogRecord] {
        &self.records
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn train(iter: u64, loss: f32) -> LogRecord {
        LogRecord::Train(TrainRecord {
            iter,
            loss,
            lr: 0.01,
            images_per_s: 40.0,
        })
    }

    #[test]
    fn lines_have_the_documented_keys_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log.jsonl");
        let mut log = TrainLog::create(&p, None).unwrap();
        log.push(train(0, 2.5)).unwrap();
        log.push(LogRecord::Test(TestRecord {
            iter: 0,
            test_accuracy: Some(0.25),
            test_loss: Some(2.1),
            test_net: 0,
            outputs: BTreeMap::from([("accuracy".into(), 0.25)]),
        }))
        .unwrap();
        log.flush().unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        for k in ["iter", "loss", "lr", "images_per_s"] {
            assert!(lines[0].get(k).is_some(), "{k} missing in {}", lines[0]);
        }
        for k in ["iter", "test_accuracy", "test_loss"] {
            assert!(lines[1].get(k).is_some(), "{k} missing in {}", lines[1]);
        }
        assert_eq!(read_log(&p).unwrap(), log.records());
    }

    #[test]
    fn resuming_keeps_only_earlier_records() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log.jsonl");
        let mut log = TrainLog::create(&p, None).unwrap();
        for i in 0..5 {
            log.push(train(i * 10, 2.0)).unwrap();
        }
        log.flush().unwrap();
        let resumed = TrainLog::create(&p, Some(20)).unwrap();
        let iters: Vec<u64> = resumed.records().iter().map(LogRecord::iter).collect();
        assert_eq!(iters, vec![0, 10]);
        assert_eq!(read_log(&p).unwrap().len(), 2);
    }

    #[test]
    fn a_bad_line_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.jsonl");
        std::fs::write(
            &p,
            "{\"iter\":0,\"loss\":1,\"lr\":0.1,\"images_per_s\":3}\n\n{oops\n",
        )
        .unwrap();
        let e = read_log(&p).unwrap_err().to_string();
        assert!(e.contains("bad.jsonl:3"), "{e}");
    }
}
