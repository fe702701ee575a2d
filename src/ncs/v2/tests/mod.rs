//! Tests of the NCSDK 2 codec against the six real files in
//! `../shared/fixtures-real/ncs-v2` and the values NCSDK2_GRAPH_FORMAT.md states for them.

mod bad_input;
mod compile;
mod eltwise3;
mod golden;
mod tf_deconv;
mod tf_reference;

use crate::testutil::shared;
use std::path::PathBuf;

/// The six real NCSDK 2 files: (fixture folder, file name).
pub(super) const REAL_V2: [(&str, &str); 6] = [
    ("matpalm-conv1-valid", "graph.mv"),
    ("matpalm-conv8", "graph.mv"),
    ("matpalm-conv-deconv", "graph.mv"),
    ("squeezenet-v10-caffe", "graph"),
    ("hsinm-mnist-blob23", "graph"),
    ("hsinm-mnist-blob24", "graph"),
];

/// Path of a file in a v2 fixture folder, or `None` (with a SKIP line) when ../shared is
/// absent.
pub(super) fn real_v2(fixture: &str, file: &str) -> Option<PathBuf> {
    shared(&format!("fixtures-real/ncs-v2/{fixture}/{file}"))
}
