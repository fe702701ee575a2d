//! Small shared helpers: atomic file writes.

pub mod atomic;

pub use atomic::{atomic_write, atomic_write_with, AtomicDir};
