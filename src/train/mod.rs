//! Native training with Caffe's semantics: the solver file (`config`), learning-rate
//! policies (`lr_policy`), the parameter update in `SGDSolver::ApplyUpdate`'s order
//! (`solver`), `.solverstate` snapshots (`state`), the JSONL training log (`log`) and
//! its plot (`plot`).

pub mod bench;
pub mod config;
pub mod data;
#[cfg(test)]
pub(crate) mod gradcheck;
pub mod log;
pub mod lr_policy;
pub mod net;
pub mod plot;
pub mod solver;
pub mod state;
pub mod trainer;
pub mod transform;

pub use config::{ConfigError, Method, NetSource, Regularization, SolverConfig, TestNet};
pub use lr_policy::LrPolicy;
pub use solver::{Learnable, SmoothedLoss, Solver, SolverError};
pub use state::{SnapshotPaths, SolverStateFile, StateError};

#[cfg(test)]
mod oracle_tests;
