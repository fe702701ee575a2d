#!/usr/bin/env python3
"""Checks an ONNX file independently of agegender: the ONNX checker (full_check, with
shape inference), then onnxruntime on the inputs in a fixture folder, compared with the
expected outputs there.

usage: check_onnx.py MODEL.onnx FIXTURE_DIR [--tolerance T] [--json]

FIXTURE_DIR holds in_<input>.npy (one per graph input) and out_<tensor>.npy. Each
out_<tensor> is compared with that tensor of the model; tensors that are not graph outputs
(intermediate blobs) are exposed as extra outputs first. Tensors absent from the model are
reported and count as failures. A tensor passes when
max|ort - expected| <= T * max(1, max|expected|)  (T defaults to 1e-4).

Exit status: 0 all match, 1 a mismatch, 2 bad input (missing files, checker failure).
"""
import argparse
import json
import os
import sys

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("fixture_dir")
    ap.add_argument("--tolerance", type=float, default=1e-4)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    try:
        import onnx
        import onnxruntime as ort
    except ImportError as e:
        print("check_onnx: %s (pip install onnx onnxruntime)" % e, file=sys.stderr)
        return 2
    try:
        model = onnx.load(args.model)
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:  # the checker raises several exception types
        print("check_onnx: %s fails the ONNX checker: %s" % (args.model, e), file=sys.stderr)
        return 2

    files = sorted(os.listdir(args.fixture_dir))
    inputs = {f[3:-4]: np.load(os.path.join(args.fixture_dir, f)) for f in files if f.startswith("in_") and f.endswith(".npy")}
    expected = {f[4:-4]: np.load(os.path.join(args.fixture_dir, f)) for f in files if f.startswith("out_") and f.endswith(".npy")}
    graph_inputs = [i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    missing = [n for n in graph_inputs if n not in inputs]
    if missing:
        print("check_onnx: no in_<name>.npy for graph inputs %s" % missing, file=sys.stderr)
        return 2

    produced = {o for n in model.graph.node for o in n.output}
    outputs = [o.name for o in model.graph.output]
    absent = [n for n in expected if n not in produced and n not in outputs]
    for n in expected:
        if n in produced and n not in outputs:
            model.graph.output.append(onnx.ValueInfoProto(name=n))
            outputs.append(n)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    feeds = {n: inputs[n].astype(np.float32) for n in graph_inputs}
    results = dict(zip(outputs, sess.run(outputs, feeds)))

    report = []
    ok = not absent
    for n, ref in expected.items():
        if n not in results:
            continue
        got = results[n]
        if got.shape != ref.shape:
            report.append({"name": n, "error": "shape %s, expected %s" % (list(got.shape), list(ref.shape))})
            ok = False
            continue
        diff = float(np.abs(got.astype(np.float64) - ref).max()) if ref.size else 0.0
        scale = max(1.0, float(np.abs(ref).max()) if ref.size else 0.0)
        passed = diff <= args.tolerance * scale
        ok &= passed
        report.append({"name": n, "max_abs": diff, "max_ref": scale, "pass": passed})
    for n in absent:
        report.append({"name": n, "error": "not a tensor of the model"})
    if args.json:
        print(json.dumps({"pass": ok, "outputs": report}))
    else:
        print("onnx.checker: ok (onnx %s, onnxruntime %s)" % (onnx.__version__, ort.__version__))
        for r in report:
            if "error" in r:
                print("  %-24s FAIL %s" % (r["name"], r["error"]))
            else:
                print("  %-24s %s max|diff| %.3g (max|ref| %.3g)" % (r["name"], "ok  " if r["pass"] else "FAIL", r["max_abs"], r["max_ref"]))
        print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
