#!/usr/bin/env python3
"""Independent check that files agegender writes are valid Caffe files: load a prototxt +
caffemodel pair with OpenCV's Caffe importer (cv2.dnn.readNetFromCaffe), run it on an
input .npy, and compare every named output with expected .npy files.

usage: check_caffe_opencv.py NET.prototxt NET.caffemodel INPUT.npy [NAME=EXPECTED.npy ...]
Prints one line per output and exits 0 when every max abs error is within
1e-4 * max(1, max|expected|), 1 otherwise. Needs opencv-python(-headless) and numpy.
"""
import sys

import cv2
import numpy as np


def main(argv):
    proto, model, inp = argv[1:4]
    net = cv2.dnn.readNetFromCaffe(proto, model)
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.enableFusion(False)
    x = np.load(inp).astype(np.float32)
    net.setInput(x)
    pairs = [a.split("=", 1) for a in argv[4:]]
    names = [n for n, _ in pairs] or None
    outs = net.forward(names) if names else [net.forward()]
    ok = True
    for (name, path), got in zip(pairs, outs):
        want = np.load(path)
        err = float(np.max(np.abs(got.reshape(want.shape) - want)))
        tol = 1e-4 * max(1.0, float(np.max(np.abs(want))))
        ok &= err <= tol
        print(f"{name}: max_abs {err:.3e} tol {tol:.3e} {'ok' if err <= tol else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
