//! The real TensorFlow-compiled NCSDK 2 graph `matpalm-conv-deconv` (five conv 3×3 stride 2
//! VALID + ReLU, three conv2d_transpose 3×3 stride 2 VALID + ReLU, a 1×1 conv `logits`;
//! ORIGIN.md) lifted to the IR and run on the fp16 emulation, against the frozen TensorFlow
//! model evaluated here in f32 by direct loops from `graph.frozen.pb`'s constants. The
//! loops follow TensorFlow's definitions in NHWC: conv2d VALID `y[o][x][k] = b[k] +
//! Σ x[s·o + i][s·x + j][c] · W[i][j][c][k]` (HWIO), conv2d_transpose VALID with output
//! `(in − 1)·s + k`, each input pixel scattering `x[i][j][c] · W[a][b][k][c]` (filter
//! `[h][w][out][in]`) to `y[s·i + a][s·j + b][k]`.

use super::real_v2;
use super::tf_reference::{constant, GraphDef};
use prost::Message;

/// An NHWC activation.
struct Nhwc {
    h: usize,
    w: usize,
    c: usize,
    v: Vec<f32>,
}

impl Nhwc {
    fn at(&self, y: usize, x: usize, c: usize) -> f32 {
        self.v[(y * self.w + x) * self.c + c]
    }
}

/// TensorFlow conv2d, VALID, stride `s`, HWIO kernel, bias, then ReLU when `relu`.
fn conv_valid(x: &Nhwc, ks: &[usize], k: &[f32], b: &[f32], s: usize, relu: bool) -> Nhwc {
    let (kh, kw, ci, co) = (ks[0], ks[1], ks[2], ks[3]);
    assert_eq!(ci, x.c);
    let (h, w) = ((x.h - kh) / s + 1, (x.w - kw) / s + 1);
    let mut v = vec![0.0f32; h * w * co];
    for oy in 0..h {
        for ox in 0..w {
            let out = &mut v[(oy * w + ox) * co..][..co];
            out.copy_from_slice(b);
            for i in 0..kh {
                for j in 0..kw {
                    for c in 0..ci {
                        let xv = x.at(s * oy + i, s * ox + j, c);
                        let taps = &k[((i * kw + j) * ci + c) * co..][..co];
                        for (o, t) in out.iter_mut().zip(taps) {
                            *o += xv * t;
                        }
                    }
                }
            }
            if relu {
                out.iter_mut().for_each(|o| *o = o.max(0.0));
            }
        }
    }
    Nhwc { h, w, c: co, v }
}

/// TensorFlow conv2d_transpose, VALID, stride `s`, filter `[h][w][out][in]`, then the bias
/// and ReLU (the model's BiasAdd + Relu).
fn deconv_valid(x: &Nhwc, ks: &[usize], k: &[f32], b: &[f32], s: usize) -> Nhwc {
    let (kh, kw, co, ci) = (ks[0], ks[1], ks[2], ks[3]);
    assert_eq!(ci, x.c);
    let (h, w) = ((x.h - 1) * s + kh, (x.w - 1) * s + kw);
    let mut v = vec![0.0f32; h * w * co];
    for iy in 0..x.h {
        for ix in 0..x.w {
            for a in 0..kh {
                for bb in 0..kw {
                    let out = &mut v[((s * iy + a) * w + s * ix + bb) * co..][..co];
                    for c in 0..ci {
                        let xv = x.at(iy, ix, c);
                        for (o, out_v) in out.iter_mut().enumerate() {
                            *out_v += xv * k[((a * kw + bb) * co + o) * ci + c];
                        }
                    }
                }
            }
        }
    }
    for px in v.chunks_mut(co) {
        for (o, bias) in px.iter_mut().zip(b) {
            *o = (*o + bias).max(0.0);
        }
    }
    Nhwc { h, w, c: co, v }
}

/// The frozen model's `logits/BiasAdd` for one NHWC image.
fn tensorflow(g: &GraphDef, image: Nhwc) -> Nhwc {
    let mut a = image;
    for e in ["e1", "e2", "e3", "e4", "e5"] {
        let (ks, k) = constant(g, &format!("{e}/weights"));
        let (_, b) = constant(g, &format!("{e}/biases"));
        a = conv_valid(&a, &ks, &k, &b, 2, true);
    }
    for d in ["d1", "d2", "d3"] {
        let (ks, k) = constant(g, &format!("{d}/weights"));
        let (_, b) = constant(g, &format!("{d}/biases"));
        a = deconv_valid(&a, &ks, &k, &b, 2);
    }
    let (ks, k) = constant(g, "logits/weights");
    let (_, b) = constant(g, "logits/biases");
    conv_valid(&a, &ks, &k, &b, 1, false)
}

#[test]
fn the_real_deconv_graph_in_f16_matches_the_frozen_model_within_mvncheck() {
    let (Some(pb), Some(graph)) = (
        real_v2("matpalm-conv-deconv", "graph.frozen.pb"),
        real_v2("matpalm-conv-deconv", "graph.mv"),
    ) else {
        return;
    };
    let g = GraphDef::decode(std::fs::read(pb).unwrap().as_slice()).unwrap();
    let net = crate::ncs::read_net(&graph).unwrap();
    let kinds: Vec<&str> = net.layers.iter().map(|l| l.op.caffe_type()).collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "Deconvolution").count(),
        3,
        "{kinds:?}"
    );
    let e = crate::exec::f16::F16Engine::new(&net).unwrap();
    let input = e.engine().inputs()[0].0.to_string();
    let tol = crate::verify::Tolerance::new(crate::verify::Preset::Mvncheck, None);
    for seed in 0..2u64 {
        // an NHWC image in [0, 1], seeded
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let v: Vec<f32> = (0..512 * 512 * 3)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 24) as f32
            })
            .collect();
        let mut nchw = vec![0.0f32; v.len()];
        for (i, px) in v.chunks(3).enumerate() {
            for (c, &x) in px.iter().enumerate() {
                nchw[c * 512 * 512 + i] = x;
            }
        }
        let want = tensorflow(
            &g,
            Nhwc {
                h: 512,
                w: 512,
                c: 3,
                v,
            },
        );
        assert_eq!((want.h, want.w, want.c), (127, 127, 1));
        let t = crate::ir::Tensor::from_vec(&[1, 3, 512, 512], nchw).unwrap();
        let out = e.run([(input.clone(), t)]).unwrap();
        assert!(out.overflows.is_empty(), "{:?}", out.overflows);
        let ours = &out.outputs.blobs.last().unwrap().1;
        assert_eq!(ours.shape, [1, 1, 127, 127]);
        let reference = crate::ir::Tensor::from_vec(&[1, 1, 127, 127], want.v).unwrap();
        let m = crate::verify::metrics::compare("logits", &reference, ours).unwrap();
        assert!(tol.output_ok(&m), "seed {seed}: {m:?}");
    }
}

/// The graph's records in the v1 shape, for edits the real file does not have.
fn v1_view() -> Option<crate::ncs::Graph> {
    let p = real_v2("matpalm-conv-deconv", "graph.mv")?;
    match crate::ncs::read_any(&p).unwrap() {
        crate::ncs::AnyGraph::V2(g) => Some(crate::ncs::v2::to_v1_view(&g).unwrap()),
        crate::ncs::AnyGraph::V1(_) => panic!("not an NCSDK 2 graph"),
    }
}

#[test]
fn deconvolution_padding_follows_the_pad_style() {
    use crate::ncs::{PadStyle, Xyz};
    use crate::ops::deconv::DeconvParams;
    let Some(g) = v1_view() else { return };
    // The file: padStyle 2 (Caffe) with pad 0 on a 63 → 127 stage (7).
    let net = crate::ncs::graph_to_net(&g).unwrap();
    let last = |net: &crate::ir::Net| {
        let l = net
            .layers
            .iter()
            .rfind(|l| matches!(l.op, crate::ir::Op::Deconvolution(_)))
            .unwrap();
        let crate::ir::Op::Deconvolution(DeconvParams(p)) = &l.op else {
            unreachable!()
        };
        (p.pad, l.blobs[0].shape.clone())
    };
    assert_eq!(last(&net), ([0, 0], vec![32, 16, 3, 3]));
    // TensorFlow SAME from 63 to 125 crops 2 of the full 127: Caffe pad 1; VALID is pad 0
    // whatever the record's pad says. The 1×1 stage after it reads the 125×125 tensor.
    for (style, out, pad) in [
        (PadStyle::TfSame, 125, [1, 1]),
        (PadStyle::TfValid, 127, [0, 0]),
    ] {
        let mut g = g.clone();
        g.stages[7].pad_style = style;
        g.stages[7].pad = [3, 3];
        g.stages[7].output_dims = Xyz::new(out, out, 16);
        g.stages[8].input_dims = Xyz::new(out, out, 16);
        g.stages[8].output_dims = Xyz::new(out, out, 1);
        let net = crate::ncs::graph_to_net(&g).unwrap();
        assert_eq!(last(&net).0, pad, "{style:?}");
    }
    // SAME from 63 to 126 would crop 0 on one side and 1 on the other.
    let mut g = g.clone();
    g.stages[7].pad_style = PadStyle::TfSame;
    g.stages[7].output_dims = Xyz::new(126, 126, 16);
    let e = crate::ncs::graph_to_net(&g).unwrap_err();
    assert_eq!(e.index, 7);
    assert!(
        e.msg.contains("crops 1 of 127") && e.msg.contains("same on both sides"),
        "{e}"
    );
}

/// Caffe's deconvolution blob `[c_in][c_out][ky][kx]` from a TensorFlow conv2d_transpose
/// filter `[ky][kx][c_out][c_in]`, rounded to fp16 as the toolkit stores it.
fn tf_filter_as_caffe_f16(shape: &[usize], k: &[f32]) -> Vec<f32> {
    let (kh, kw, co, ci) = (shape[0], shape[1], shape[2], shape[3]);
    let mut out = vec![0.0f32; k.len()];
    for c in 0..ci {
        for o in 0..co {
            for y in 0..kh {
                for x in 0..kw {
                    out[((c * co + o) * kh + y) * kw + x] = k[((y * kw + x) * co + o) * ci + c];
                }
            }
        }
    }
    out.iter()
        .map(|&v| half::f16::from_f32(v).to_f32())
        .collect()
}

#[test]
fn lifted_deconvolution_weights_are_the_tensorflow_filters_in_both_generations() {
    use crate::ir::Op;
    // NCSDK 2: the three deconvolutions of matpalm-conv-deconv; NCSDK 1: d1 of
    // mp-conv-deconv (its graph does not lift as a whole, so the stage is read directly).
    let Some(pb) = real_v2("matpalm-conv-deconv", "graph.frozen.pb") else {
        return;
    };
    let g = GraphDef::decode(std::fs::read(pb).unwrap().as_slice()).unwrap();
    let net = crate::ncs::read_net(&real_v2("matpalm-conv-deconv", "graph.mv").unwrap()).unwrap();
    let deconvs: Vec<_> = net
        .layers
        .iter()
        .filter(|l| matches!(l.op, Op::Deconvolution(_)))
        .collect();
    for (l, d) in deconvs.iter().zip(["d1", "d2", "d3"]) {
        let (ks, k) = constant(&g, &format!("{d}/weights"));
        assert_eq!(l.blobs[0].shape, [ks[3], ks[2], ks[0], ks[1]], "{d}");
        assert_eq!(l.blobs[0].data, tf_filter_as_caffe_f16(&ks, &k), "{d}");
        let (_, b) = constant(&g, &format!("{d}/biases"));
        let b16: Vec<f32> = b.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
        assert_eq!(l.blobs[1].data, b16, "{d}");
    }

    let (Some(pb1), Some(g1)) = (
        crate::testutil::shared("fixtures-real/ncs/mp-conv-deconv/graph.frozen.pb"),
        crate::testutil::shared("fixtures-real/ncs/mp-conv-deconv/graph.mv"),
    ) else {
        return;
    };
    let tf1 = GraphDef::decode(std::fs::read(pb1).unwrap().as_slice()).unwrap();
    let (ks, k) = constant(&tf1, "d1/weights");
    let crate::ncs::AnyGraph::V1(v1) = crate::ncs::read_any(&g1).unwrap() else {
        panic!("not an NCSDK 1 graph")
    };
    let s = &v1.stages[2];
    assert_eq!(s.op, crate::ncs::StageOp::Deconvolution);
    let taps = v1.f16_at(s.taps, k.len()).unwrap();
    let lifted: Vec<f32> = crate::ncs::layout::hwck_to_deconv(&taps, ks[3], ks[2], ks[0], ks[1])
        .iter()
        .map(|v| v.to_f32())
        .collect();
    assert_eq!(lifted, tf_filter_as_caffe_f16(&ks, &k));
}

/// TensorFlow conv2d with SAME padding: `total = (⌈H/s⌉ − 1)·s + k − H` zeros, the odd one
/// at the end (bottom/right), then the VALID convolution of the padded image.
fn conv_same(x: &Nhwc, ks: &[usize], k: &[f32], b: &[f32], s: usize, relu: bool) -> Nhwc {
    let pads = |n: usize, kk: usize| {
        let total = ((n.div_ceil(s) - 1) * s + kk).saturating_sub(n);
        (total / 2, total - total / 2)
    };
    let ((top, bottom), (left, right)) = (pads(x.h, ks[0]), pads(x.w, ks[1]));
    let (h, w) = (x.h + top + bottom, x.w + left + right);
    let mut v = vec![0.0f32; h * w * x.c];
    for y in 0..x.h {
        for xx in 0..x.w {
            let dst = ((y + top) * w + xx + left) * x.c;
            v[dst..dst + x.c].copy_from_slice(&x.v[(y * x.w + xx) * x.c..][..x.c]);
        }
    }
    conv_valid(&Nhwc { h, w, c: x.c, v }, ks, k, b, s, relu)
}

/// The NCSDK 1 graph of the same bug report (ncs/mp-conv-deconv: conv 3×3 stride 2 SAME
/// ×2, conv2d_transpose VALID, 1×1 `logits`, the slice `[..., 0:1]`, sigmoid; its
/// ORIGIN.md and graph.pbtxt): SAME padding with the odd pixel at the end, a channel slice
/// compiled to a `copy` stage, and a final sigmoid whose declared 65×65×65 output is the
/// compiler bug the repository reports. Our fp16 run must give the frozen model's 65×65×1.
#[test]
fn the_real_ncsdk1_deconv_graph_matches_the_frozen_model_within_mvncheck() {
    let (Some(pb), Some(graph)) = (
        crate::testutil::shared("fixtures-real/ncs/mp-conv-deconv/graph.frozen.pb"),
        crate::testutil::shared("fixtures-real/ncs/mp-conv-deconv/graph.mv"),
    ) else {
        return;
    };
    let g = GraphDef::decode(std::fs::read(pb).unwrap().as_slice()).unwrap();
    let net = crate::ncs::read_net(&graph).unwrap();
    let e = crate::exec::f16::F16Engine::new(&net).unwrap();
    let input = e.engine().inputs()[0].0.to_string();
    let tol = crate::verify::Tolerance::new(crate::verify::Preset::Mvncheck, None);
    let hw = 128;
    for seed in 0..3u64 {
        let px = |i: usize| ((seed * 7919 + i as u64 * 31) % 1009) as f32 / 1008.0;
        let v: Vec<f32> = (0..hw * hw * 3).map(px).collect();
        let mut nchw = vec![0.0f32; v.len()];
        for (i, p) in v.chunks(3).enumerate() {
            for (c, &x) in p.iter().enumerate() {
                nchw[c * hw * hw + i] = x;
            }
        }
        let mut a = Nhwc {
            h: hw,
            w: hw,
            c: 3,
            v,
        };
        for l in ["e1", "e2"] {
            let (ks, k) = constant(&g, &format!("{l}/weights"));
            let (_, b) = constant(&g, &format!("{l}/biases"));
            a = conv_same(&a, &ks, &k, &b, 2, true);
        }
        let (ks, k) = constant(&g, "d1/weights");
        let (_, b) = constant(&g, "d1/biases");
        a = deconv_valid(&a, &ks, &k, &b, 2);
        let (ks, k) = constant(&g, "logits/weights");
        let (_, b) = constant(&g, "logits/biases");
        a = conv_valid(&a, &ks, &k, &b, 1, false);
        assert_eq!((a.h, a.w), (65, 65));
        let want: Vec<f32> = (0..65 * 65)
            .map(|i| 1.0 / (1.0 + (-a.v[i * a.c]).exp()))
            .collect();
        let t = crate::ir::Tensor::from_vec(&[1, 3, hw, hw], nchw).unwrap();
        let out = e.run([(input.clone(), t)]).unwrap();
        let ours = &out.outputs.blobs.last().unwrap().1;
        assert_eq!(ours.shape, [1, 1, 65, 65]);
        let reference = crate::ir::Tensor::from_vec(&[1, 1, 65, 65], want).unwrap();
        let m = crate::verify::metrics::compare("output", &reference, ours).unwrap();
        assert!(tol.output_ok(&m), "seed {seed}: {m:?}");
    }
}
