#!/usr/bin/env python3
"""Writes fixtures/inputs/pattern_1x3x227x227.npy: a smooth deterministic float32 test
pattern (mean-subtracted pixel range, about -100..100) for `agegender run` examples and
tests. Needs only the Python standard library."""
import math, struct, sys

N, C, H, W = 1, 3, 227, 227
out = sys.argv[1] if len(sys.argv) > 1 else "fixtures/inputs/pattern_1x3x227x227.npy"
header = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d, %d, %d), }" % (N, C, H, W)
pad = 64 - (10 + len(header) + 1) % 64
header = header + " " * pad + "\n"
vals = []
for c in range(C):
    for y in range(H):
        for x in range(W):
            vals.append(100.0 * math.sin(0.05 * x + 0.9 * c) * math.cos(0.07 * y - 0.4 * c))
with open(out, "wb") as f:
    f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1"))
    f.write(struct.pack("<%df" % len(vals), *vals))
