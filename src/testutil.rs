//! Locating `../shared` (the real fixtures and UTKFace data) for tests.
//!
//! Tests read the shared material in place and never copy it. When it is absent a test
//! prints why it skips; under `CI=true` the absence is a failure instead.

use std::path::PathBuf;

/// Returns `<repo>/../shared/<rel>` (or `$AGEGENDER_SHARED/<rel>`) when it exists. Otherwise
/// prints a skip message and returns `None`, or panics when `CI=true`, because CI always
/// has the shared folder and a silent skip there would hide a broken test.
pub fn shared(rel: &str) -> Option<PathBuf> {
    let root = std::env::var_os("AGEGENDER_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("shared")
        });
    let path = root.join(rel);
    if path.exists() {
        return Some(path);
    }
    if std::env::var("CI").map(|v| v == "true").unwrap_or(false) {
        panic!(
            "CI=true but the shared fixture {} is missing",
            path.display()
        );
    }
    eprintln!(
        "SKIP: {} is absent (tests that need ../shared skip outside CI)",
        path.display()
    );
    None
}

/// Reads a raw little-endian f32 file (the golden format in `fixtures-real`).
pub fn read_f32_file(path: &std::path::Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}
