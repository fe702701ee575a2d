#!/usr/bin/env python3
"""Writes the small .npy fixtures in fixtures/npy/ with NumPy itself, so that the Rust
reader and writer are checked against files written by the reference implementation.

Every array is a closed-form function of its indices (documented beside each file), so the
tests can derive the expected values by hand. Run from the repository root:

    python3 tools/make_npy_fixtures.py
"""
import os

import numpy as np

OUT = os.path.join("fixtures", "npy")
os.makedirs(OUT, exist_ok=True)

# value[i, j] = (3*i + j) / 4 - 1: exact in float32 and float64.
base = (np.arange(6).reshape(2, 3) / 4.0 - 1.0)

np.save(os.path.join(OUT, "f32_2x3.npy"), base.astype(np.float32))
np.save(os.path.join(OUT, "f64_2x3.npy"), base.astype(np.float64))
np.save(os.path.join(OUT, "f32_2x3_fortran.npy"), np.asfortranarray(base.astype(np.float32)))
np.save(os.path.join(OUT, "f32_2x3_bigendian.npy"), base.astype(">f4"))
np.save(os.path.join(OUT, "i64_2x3.npy"), np.arange(6, dtype=np.int64).reshape(2, 3))
np.save(os.path.join(OUT, "f16_2x3.npy"), base.astype(np.float16))
# A 1x3x2x2 "mean" whose value is 10*c + 2*h + w.
c, h, w = np.meshgrid(np.arange(3), np.arange(2), np.arange(2), indexing="ij")
np.save(os.path.join(OUT, "f32_1x3x2x2.npy"), (10 * c + 2 * h + w)[None].astype(np.float32))

# The f32 2x3 file with its last 5 data bytes cut off.
with open(os.path.join(OUT, "f32_2x3.npy"), "rb") as f:
    whole = f.read()
with open(os.path.join(OUT, "f32_2x3_truncated.npy"), "wb") as f:
    f.write(whole[:-5])
