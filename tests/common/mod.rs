//! Helpers shared by several integration-test crates.

pub mod peak_alloc;
