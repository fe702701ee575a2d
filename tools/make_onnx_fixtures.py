#!/usr/bin/env python3
"""Generates fixtures/onnx/: tiny nets with inputs and expected outputs as .npy.

Every expected output comes from a computation independent of agegender:
  * caffe_pool, caffe_lrn, caffe_mix: a plain numpy implementation of Caffe's layer
    semantics written here (ceil pooling with the clip rule, the AVE divisor clipped to
    H + pad, LRN across/within channels, grouped/dilated convolution, ...). The nets
    themselves are built in Rust from the same description (tests/onnx_fixtures.rs) with
    the weights stored here as param_<layer>_<i>.npy.
  * levi_torch, torch_avgpool: PyTorch models exported with torch.onnx (legacy exporter,
    opset 13, dynamic batch); the expected outputs are PyTorch's own forward pass.
  * torch_avgpool_external: the same file re-saved with external data by the onnx package.
  * helper_ops: a graph written with the onnx helper API in PyTorch's style (Constant
    nodes, auto_pad, MatMul + Add, BatchNormalization, ...); expected outputs from
    onnxruntime.

File naming: in_<input>.npy, out_<blob>.npy, param_<layer>_<index>.npy, model.onnx.
Run from the repository root:  python3 tools/make_onnx_fixtures.py
Requires numpy, onnx, onnxruntime and torch (CPU).
"""
import os
import sys
import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "onnx")


def save(case, name, arr):
    d = os.path.join(ROOT, case)
    os.makedirs(d, exist_ok=True)
    np.save(os.path.join(d, name + ".npy"), np.ascontiguousarray(arr, dtype=np.float32))


# ---------------------------------------------------------------- Caffe reference (numpy)

def caffe_conv(x, w, b, stride=1, pad=0, dilation=1, group=1):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ext_h, ext_w = dilation * (kh - 1) + 1, dilation * (kw - 1) + 1
    oh = (h + 2 * pad - ext_h) // stride + 1
    ow = (wd + 2 * pad - ext_w) // stride + 1
    y = np.zeros((n, o, oh, ow), np.float64)
    og = o // group
    for g in range(group):
        for oc in range(g * og, (g + 1) * og):
            for ic in range(cg):
                for ky in range(kh):
                    for kx in range(kw):
                        ys, xs = ky * dilation, kx * dilation
                        patch = xp[:, g * cg + ic, ys:ys + stride * (oh - 1) + 1:stride,
                                   xs:xs + stride * (ow - 1) + 1:stride]
                        y[:, oc] += w[oc, ic, ky, kx] * patch
            if b is not None:
                y[:, oc] += b[oc]
    return y


def caffe_pool_dim(h, k, s, p, ceil=True):
    span = h + 2 * p - k
    out = (-(-span // s) if ceil else span // s) + 1
    if p > 0 and (out - 1) * s >= h + p:
        out -= 1
    return out


def caffe_pool(x, method, k, s, p, ceil=True):
    n, c, h, w = x.shape
    oh, ow = caffe_pool_dim(h, k, s, p, ceil), caffe_pool_dim(w, k, s, p, ceil)
    y = np.zeros((n, c, oh, ow), np.float64)
    for i in range(oh):
        for j in range(ow):
            hs, ws = i * s - p, j * s - p
            he, we = min(hs + k, h + p), min(ws + k, w + p)
            size = (he - hs) * (we - ws)
            hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
            win = x[:, :, hs:he, ws:we]
            if method == "max":
                y[:, :, i, j] = win.max(axis=(2, 3))
            else:
                y[:, :, i, j] = win.sum(axis=(2, 3)) / size
    return y


def caffe_lrn_across(x, n, alpha, beta, k):
    sq = np.pad(x.astype(np.float64) ** 2, ((0, 0), ((n - 1) // 2, (n - 1) // 2), (0, 0), (0, 0)))
    c = x.shape[1]
    s = sum(sq[:, i:i + c] for i in range(n))
    return x * (k + alpha / n * s) ** (-beta)


def caffe_lrn_within(x, n, alpha, beta):
    avg = caffe_pool(x.astype(np.float64) ** 2, "ave", n, 1, (n - 1) // 2)
    return x * (1.0 + alpha * avg) ** (-beta)


def softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def ip(x, w, b, axis=1, transpose=False):
    lead = x.shape[:axis]
    flat = x.reshape(int(np.prod(lead)) if lead else 1, -1)
    y = flat @ (w if transpose else w.T)
    if b is not None:
        y = y + b
    return y.reshape(lead + (y.shape[-1],))


def gen_caffe_pool(rng):
    case = "caffe_pool"
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    save(case, "in_data", x)
    x = x.astype(np.float64)
    outs = {
        "pool_max_p1": caffe_pool(x, "max", 3, 2, 1),
        "pool_ave_p1": caffe_pool(x, "ave", 3, 2, 1),
        "pool_ave_p0": caffe_pool(x, "ave", 3, 2, 0),
        "pool_ave_floor": caffe_pool(x, "ave", 2, 2, 1, ceil=False),
        "pool_global_ave": x.mean(axis=(2, 3), keepdims=True),
        "pool_global_max": x.max(axis=(2, 3), keepdims=True),
    }
    p0 = outs["pool_ave_p0"]
    outs["pool_max_clip"] = caffe_pool(p0, "max", 3, 3, 2)
    outs["pool_ave_clip"] = caffe_pool(p0, "ave", 3, 3, 2)
    assert outs["pool_ave_p1"].shape[2:] == (5, 5) and p0.shape[2:] == (4, 4)
    assert outs["pool_max_clip"].shape[2:] == (2, 2)
    for k, v in outs.items():
        save(case, "out_" + k, v)


def gen_caffe_lrn(rng):
    case = "caffe_lrn"
    x = (3 * rng.standard_normal((2, 6, 5, 5))).astype(np.float32)
    save(case, "in_data", x)
    x = x.astype(np.float64)
    across = caffe_lrn_across(x, 5, 0.5, 0.75, 2.0)
    save(case, "out_lrn_across", across)
    save(case, "out_lrn_within", caffe_lrn_within(x, 3, 0.6, 0.75))
    save(case, "out_lrn_within2", caffe_lrn_within(across, 5, 2.0, 0.5))


def gen_caffe_mix(rng):
    case = "caffe_mix"
    f = lambda *s: (0.3 * rng.standard_normal(s)).astype(np.float32)
    x = rng.standard_normal((2, 4, 6, 6)).astype(np.float32)
    save(case, "in_data", x)
    x = x.astype(np.float64)
    P = {
        "conv1": [f(6, 2, 3, 3), f(6)],
        "prelu1": [np.float32([0.1, -0.2, 0.3, 0.25, 0.5, 0.0])],
        "conv_d": [f(4, 6, 3, 3), f(4)],
        "bn": [f(4) * 2, np.abs(f(4)) * 2 + 0.5, np.float32([2.0])],
        "scale": [f(4) + 1, f(4)],
        "ip1": [f(10, 108), f(10)],
        "ip_t": [f(10, 5), f(5)],
        "ip_axis2": [f(7, 9), f(7)],
    }
    for layer, blobs in P.items():
        for i, b in enumerate(blobs):
            save(case, "param_%s_%d" % (layer, i), b)
    P = {k: [b.astype(np.float64) for b in v] for k, v in P.items()}
    conv1 = caffe_conv(x, *P["conv1"], stride=1, pad=1, group=2)
    a = P["prelu1"][0].reshape(1, -1, 1, 1)
    prelu1 = np.maximum(conv1, 0) + a * np.minimum(conv1, 0)
    conv_d = caffe_conv(prelu1, *P["conv_d"], stride=1, pad=2, dilation=2)
    m, v, fac = P["bn"]
    bn = (conv_d - (m / fac).reshape(1, -1, 1, 1)) / np.sqrt((v / fac).reshape(1, -1, 1, 1) + 1e-5)
    g, be = P["scale"]
    scale = bn * g.reshape(1, -1, 1, 1) + be.reshape(1, -1, 1, 1)
    leaky = np.where(scale > 0, scale, 0.1 * scale)
    sig = 1 / (1 + np.exp(-conv_d))
    tanh = np.tanh(conv_d)
    elt_sum = 0.5 * leaky - 2.0 * conv_d
    elt_prod = leaky * sig * tanh
    elt_max = np.maximum(np.maximum(sig, tanh), leaky)
    concat = np.concatenate([elt_sum, elt_prod, elt_max], axis=1)
    pool = caffe_pool(concat, "max", 2, 2, 0)
    ip1 = ip(pool, *P["ip1"])
    ip_t = ip(ip1, *P["ip_t"], transpose=True)
    prob = softmax(ip_t, 1)
    ip_axis2 = ip(pool, *P["ip_axis2"], axis=2)
    flat = ip_axis2.reshape(2, -1)
    resh = pool.reshape(2, -1, 4)
    prob_r = softmax(resh, 2)
    outs = dict(conv1=conv1, prelu1=prelu1, conv_d=conv_d, bn=bn, scale=scale, leaky=leaky,
                sig=sig, tanh=tanh, elt_sum=elt_sum, elt_prod=elt_prod, elt_max=elt_max,
                concat=concat, pool=pool, ip1=ip1, ip_t=ip_t, prob=prob, ip_axis2=ip_axis2,
                flat=flat, resh=resh, prob_r=prob_r)
    for k, val in outs.items():
        save(case, "out_" + k, val)


# ---------------------------------------------------------------- PyTorch exports

def gen_torch():
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.manual_seed(1701)

    class LRNFn(torch.autograd.Function):
        """Caffe/ONNX cross-channel LRN; exported as one ONNX LRN node."""

        @staticmethod
        def forward(ctx, x, size, alpha, beta, k):
            return F.local_response_norm(x, size, alpha, beta, k)

        @staticmethod
        def symbolic(g, x, size, alpha, beta, k):
            return g.op("LRN", x, size_i=size, alpha_f=alpha, beta_f=beta, bias_f=k)

    class LRN(nn.Module):
        def forward(self, x):
            return LRNFn.apply(x, 5, 1e-4, 0.75, 1.0)

    class Levi(nn.Module):
        """Levi & Hassner's AgeNet layer sequence with 8/16/24 filters and fc 32."""

        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 8, 7, stride=4)
            self.conv2 = nn.Conv2d(8, 16, 5, padding=2)
            self.conv3 = nn.Conv2d(16, 24, 3, padding=1)
            self.fc6 = nn.Linear(24 * 7 * 7, 32)
            self.fc7 = nn.Linear(32, 32)
            self.fc8 = nn.Linear(32, 9)
            self.pool = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.norm = LRN()
            self.drop = nn.Dropout(0.5)

        def forward(self, x):
            x = self.norm(self.pool(F.relu(self.conv1(x))))
            x = self.norm(self.pool(F.relu(self.conv2(x))))
            x = self.pool(F.relu(self.conv3(x)))
            x = torch.flatten(x, 1)
            x = self.drop(F.relu(self.fc6(x)))
            x = self.drop(F.relu(self.fc7(x)))
            logits = self.fc8(x)
            return logits, F.softmax(logits, dim=1)

    class AvgNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.ave1 = nn.AvgPool2d(3, 2, padding=1, ceil_mode=True, count_include_pad=True)
            self.ave2 = nn.AvgPool2d(2, 2, ceil_mode=True)
            self.gap = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            a = self.ave1(self.conv(x))
            b = self.ave2(a)
            return a, b, self.fc(torch.flatten(self.gap(b), 1))

    def export(model, x, case, inputs, outputs):
        model.eval()
        d = os.path.join(ROOT, case)
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, "model.onnx")
        dyn = {n: {0: "batch"} for n in inputs + outputs}
        torch.onnx.export(model, x, path, dynamo=False, opset_version=13, input_names=inputs,
                          output_names=outputs, dynamic_axes=dyn)
        with torch.no_grad():
            ys = model(x)
        save(case, "in_" + inputs[0], x.numpy())
        for n, y in zip(outputs, ys):
            save(case, "out_" + n, y.numpy())
        return path

    x = (40 * torch.randn(1, 3, 227, 227)).float()
    export(Levi(), x, "levi_torch", ["data"], ["fc8", "prob"])
    x = torch.randn(2, 3, 8, 8)
    path = export(AvgNet(), x, "torch_avgpool", ["data"], ["ave1", "ave2", "fc"])

    import onnx
    ext = os.path.join(ROOT, "torch_avgpool_external")
    os.makedirs(ext, exist_ok=True)
    m = onnx.load(path)
    onnx.save_model(m, os.path.join(ext, "model.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    for f in os.listdir(os.path.join(ROOT, "torch_avgpool")):
        if f.endswith(".npy"):
            np.save(os.path.join(ext, f), np.load(os.path.join(ROOT, "torch_avgpool", f)))


# ---------------------------------------------------------------- onnx helper API graph

def gen_helper_ops(rng):
    import onnx
    from onnx import helper, numpy_helper, TensorProto
    import onnxruntime as ort

    case = "helper_ops"
    f = lambda *s: (0.4 * rng.standard_normal(s)).astype(np.float32)
    init = [
        numpy_helper.from_array(f(5, 3, 3, 3), "conv.weight"),
        numpy_helper.from_array(f(5), "conv.bias"),
        numpy_helper.from_array(f(5) + 1, "bn.scale"),
        numpy_helper.from_array(f(5), "bn.bias"),
        numpy_helper.from_array(f(5), "bn.mean"),
        numpy_helper.from_array(np.abs(f(5)) + 0.3, "bn.var"),
        numpy_helper.from_array(f(5, 1, 1), "prelu.slope"),
        numpy_helper.from_array(f(5, 1, 1) + 1, "affine.gamma"),
        numpy_helper.from_array(f(5, 1, 1), "affine.beta"),
        numpy_helper.from_array(f(4), "fc.bias"),
    ]
    w_fc = numpy_helper.from_array(f(15, 4), "fc.weight")
    shape = numpy_helper.from_array(np.array([2, -1], np.int64), "shape_value")
    N = helper.make_node
    nodes = [
        N("Conv", ["data", "conv.weight", "conv.bias"], ["c"], name="/conv/Conv", auto_pad="SAME_UPPER", kernel_shape=[3, 3]),
        N("BatchNormalization", ["c", "bn.scale", "bn.bias", "bn.mean", "bn.var"], ["bn"], name="/bn/BatchNormalization", epsilon=1e-3),
        N("LeakyRelu", ["bn"], ["leaky"], name="/act/LeakyRelu", alpha=0.2),
        N("PRelu", ["leaky", "prelu.slope"], ["prelu"], name="/act/PRelu"),
        N("MaxPool", ["prelu"], ["pool"], name="/pool/MaxPool", kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
        N("AveragePool", ["prelu"], ["ave"], name="/pool/AveragePool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1),
        N("Sigmoid", ["pool"], ["sig"], name="/Sigmoid"),
        N("Tanh", ["pool"], ["tanh"], name="/Tanh"),
        N("Sum", ["sig", "tanh", "pool"], ["sum"], name="/Sum"),
        N("Max", ["sig", "tanh"], ["max"], name="/Max"),
        N("Mul", ["pool", "affine.gamma"], ["scaled"], name="/affine/Mul"),
        N("Add", ["scaled", "affine.beta"], ["affine"], name="/affine/Add"),
        N("Concat", ["sum", "max", "affine"], ["cat"], name="/Concat", axis=1),
        N("Identity", ["cat"], ["cat_id"], name="/Identity"),
        N("GlobalAveragePool", ["cat_id"], ["gap"], name="/GlobalAveragePool"),
        N("Constant", [], ["shape"], name="/Constant", value=shape),
        N("Reshape", ["gap", "shape"], ["flat"], name="/Reshape"),
        N("Constant", [], ["fc.w"], name="/fc/Constant", value=w_fc),
        N("MatMul", ["flat", "fc.w"], ["mm"], name="/fc/MatMul"),
        N("Add", ["mm", "fc.bias"], ["fc"], name="/fc/Add"),
        N("Dropout", ["fc"], ["drop"], name="/Dropout"),
        N("Relu", ["drop"], ["relu"], name="/Relu"),
        N("Softmax", ["relu"], ["prob"], name="/Softmax", axis=-1),
        N("Flatten", ["pool"], ["pool_flat"], name="/Flatten", axis=1),
    ]
    vi = lambda n, s: helper.make_tensor_value_info(n, TensorProto.FLOAT, s)
    graph = helper.make_graph(nodes, "helper_ops", [vi("data", [2, 3, 6, 6])],
                              [vi("prob", [2, 4]), vi("ave", [2, 5, 3, 3]), vi("pool_flat", [2, 45]), vi("affine", [2, 5, 3, 3])],
                              initializer=init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="onnx-helper")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    d = os.path.join(ROOT, case)
    os.makedirs(d, exist_ok=True)
    onnx.save(model, os.path.join(d, "model.onnx"))
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    save(case, "in_data", x)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    for n, y in zip(names, sess.run(None, {"data": x})):
        save(case, "out_" + n, y)


def main():
    rng = np.random.default_rng(20240601)
    gen_caffe_pool(rng)
    gen_caffe_lrn(rng)
    gen_caffe_mix(rng)
    gen_helper_ops(rng)
    gen_torch()
    print("wrote", os.path.normpath(ROOT))


if __name__ == "__main__":
    sys.exit(main())
