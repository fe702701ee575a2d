#!/usr/bin/env bash
# Regenerates the project's own small fixtures from their prototxt with seeded weights.
# Run from the repository root after `cargo build --release`.
set -euo pipefail
BIN=${BIN:-target/release/agegender}
"$BIN" convert fixtures/models/levi_tiny.prototxt --random-weights --seed 2015 -o fixtures/models/levi_tiny.caffemodel
# convert writes the .prototxt beside the .caffemodel; keep the commented source instead.
git checkout -- fixtures/models/levi_tiny.prototxt 2>/dev/null || true
