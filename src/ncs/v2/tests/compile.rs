//! The NCSDK 2 emitter against the real Caffe-compiled SqueezeNet graph (structure byte
//! for byte, region by region), the IR round trip, and fp16 runs of v2 graphs.

use super::real_v2;
use crate::caffe::load_net;
use crate::ir::{Net, Op, Phase};
use crate::ncs::compiler::CompileOptions;
use crate::ncs::stage::StageOp;
use crate::ncs::v2::{compile_v2, to_v1_view, BlobVersion, GraphV2};
use crate::ncs::{graph_to_net, Graph};
use crate::testutil::shared;

/// Byte ranges of the fp16 weight and bias *values* of a graph: for every taps and bias
/// descriptor in the buffer data, the real elements (taps: dims volume, i.e. without the
/// ×8 padding; bias: K), as NCSDK2_GRAPH_FORMAT.md §4.7/§5.2 define them.
fn value_ranges(g: &GraphV2) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for s in &g.stages {
        let k = s.operand("output").map(|o| o.dims.z as usize).unwrap_or(0);
        for role in ["taps", "bias"] {
            let Some(d) = s.operand(role) else { continue };
            let Some(r) = g.reloc_of(d).filter(|_| d.location == 3) else {
                continue;
            };
            let n = if role == "taps" {
                d.dims.volume() as usize
            } else {
                k
            };
            out.push((r.offset as usize, r.offset as usize + 2 * n));
        }
    }
    out
}

/// Compares two NCSDK 2 files region by region and names the first differing field:
/// header words, stage-section header, each record, the stage padding, the buffer-section
/// header, the buffer data outside the weight/bias values (padding, ×8 zeros, opParams),
/// the relocation header and every relocation entry.
fn first_structural_difference(real: &[u8], ours: &[u8]) -> Option<String> {
    let r = GraphV2::parse(real).expect("real file parses");
    let o = match GraphV2::parse(ours) {
        Ok(o) => o,
        Err(e) => return Some(format!("our file does not parse: {e}")),
    };
    if real.len() != ours.len() {
        return Some(format!("file length {} vs real {}", ours.len(), real.len()));
    }
    let h = &r.header;
    let mut regions: Vec<(String, usize, usize)> = vec![("prefix".into(), 0, 34)];
    let names = [
        "magic",
        "file_size",
        "major",
        "minor",
        "num_shaves",
        "stage_section_offset",
        "buffer_section_offset",
        "relocation_offset",
        "size_of_input",
        "permutation_enabled",
    ];
    for (i, n) in names.iter().enumerate() {
        regions.push((format!("header {n}"), 34 + 4 * i, 38 + 4 * i));
    }
    regions.push(("header pad".into(), 74, 80));
    let ss = h.stage_section_offset as usize;
    for (i, n) in ["stage_count", "size_of_stage_section", "size_of_output"]
        .iter()
        .enumerate()
    {
        regions.push((format!("stage section {n}"), ss + 4 * i, ss + 4 + 4 * i));
    }
    let mut at = ss + 12;
    for (i, s) in r.stages.iter().enumerate() {
        // word by word, so that the message names the field
        let len = s.encoded_len();
        let params = s.params.len();
        for w in 0..len / 4 {
            let field = match w {
                0 => "next_stage".to_string(),
                1 => "stage_type".into(),
                2 => "implementation".into(),
                w if w < 3 + params => format!("param {}", w - 3),
                w if w < 3 + params + 10 * s.operands.len() => {
                    let k = (w - 3 - params) / 10;
                    format!("{} descriptor word {}", s.role(k), (w - 3 - params) % 10)
                }
                _ => "pre/post-op".into(),
            };
            regions.push((
                format!("stage {i} ({}) {field}", s.op),
                at + 4 * w,
                at + 4 * w + 4,
            ));
        }
        at += len;
    }
    let bs = h.buffer_section_offset as usize;
    regions.push(("stage section padding".into(), at, bs));
    regions.push(("buffer-section header".into(), bs, bs + 16));
    let data = bs + 16;
    let mut masked = value_ranges(&r);
    masked.sort();
    let mut cur = data;
    for (a, b) in masked {
        if data + a > cur {
            regions.push((
                format!("buffer data {}..{} (padding/opParams)", cur - data, a),
                cur,
                data + a,
            ));
        }
        cur = cur.max(data + b);
    }
    let rs = h.relocation_offset as usize;
    regions.push((
        format!("buffer data {}..end (padding/opParams)", cur - data),
        cur,
        rs,
    ));
    regions.push(("relocation header".into(), rs, rs + 20));
    for i in 0..r.blob_relocs.len() {
        let a = rs + 20 + 8 * i;
        regions.push((format!("blob relocation {i}"), a, a + 8));
    }
    for i in 0..r.work_relocs.len() {
        let a = rs + 20 + 8 * (r.blob_relocs.len() + i);
        regions.push((format!("work relocation {i}"), a, a + 8));
    }
    assert_eq!(
        regions.last().unwrap().2,
        real.len(),
        "regions cover the file"
    );
    for (name, a, b) in regions {
        if real[a..b] != ours[a..b] {
            return Some(format!(
                "{name} at {a}..{b}: ours {:02x?}, real {:02x?}",
                &ours[a..b.min(a + 16)],
                &real[a..b.min(a + 16)]
            ));
        }
    }
    // the weight values themselves are ours: the same ranges in both, nothing else
    (value_ranges(&o) != value_ranges(&r)).then(|| "weight/bias value ranges differ".into())
}

/// §13.2: SqueezeNet v1.0 compiled from `deploy_ncsdk.prototxt` with `-s 12` and seeded
/// weights equals Intel's graph everywhere outside the weight and bias values.
#[test]
fn squeezenet_structure_is_byte_exact_against_intels_graph() {
    let (Some(proto), Some(real)) = (
        real_v2("squeezenet-v10-caffe", "deploy_ncsdk.prototxt"),
        real_v2("squeezenet-v10-caffe", "graph"),
    ) else {
        return;
    };
    let mut net = load_net(&proto, None, Phase::Test).unwrap();
    crate::caffe::weights::fill_missing_weights_random(&mut net, 1).unwrap();
    let opts = CompileOptions {
        shaves: 12,
        ..CompileOptions::default()
    };
    let (g, _) = compile_v2(&net, &opts, BlobVersion::V2_3).unwrap();
    let ours = g.to_bytes();
    let real = std::fs::read(real).unwrap();
    if let Some(d) = first_structural_difference(&real, &ours) {
        panic!("first difference: {d}");
    }
    // the weights we did write are the seeded values rounded to nearest-even fp16
    let conv1 = net.layer("conv1").unwrap();
    let w = &conv1.blobs[0].data; // K×C×KH×KW = 96×3×7×7
    let taps = &g.data[0..2 * 96 * 3 * 49];
    // HWCK: element (ky, kx, c, k) at ((ky·7 + kx)·3 + c)·96 + k
    for (ky, kx, c, k) in [(0, 0, 0, 0), (6, 5, 2, 95), (3, 1, 1, 40)] {
        let i = ((ky * 7 + kx) * 3 + c) * 96 + k;
        let got = half::f16::from_le_bytes([taps[2 * i], taps[2 * i + 1]]);
        assert_eq!(got, half::f16::from_f32(w[((k * 3 + c) * 7 + ky) * 7 + kx]));
    }
    // blob 2.4 of the same net: the §3.3 rule applied to our 2.3 file
    let (g24, _) = compile_v2(&net, &opts, BlobVersion::V2_4).unwrap();
    assert_eq!(g24.to_bytes(), g.with_version(BlobVersion::V2_4).to_bytes());
    assert_eq!(g24.header.stage_section_offset, 128);
}

#[test]
fn the_region_comparison_names_the_first_differing_field() {
    let Some(real) = real_v2("matpalm-conv1-valid", "graph.mv") else {
        return;
    };
    let real = std::fs::read(real).unwrap();
    assert_eq!(first_structural_difference(&real, &real), None);
    let mut x = real.clone();
    x[104] = 5; // conv radixX
    let d = first_structural_difference(&real, &x).unwrap();
    assert!(d.starts_with("stage 0 (convolution) param 0"), "{d}");
    let mut x = real.clone();
    x[16_688 + 20 + 8] = 0xc8; // blob relocation 1 offset 448 → 456
    let d = first_structural_difference(&real, &x).unwrap();
    assert!(d.starts_with("blob relocation 1"), "{d}");
    let mut x = real.clone();
    x[624 + 448] ^= 1; // a bias value is not structure
    assert_eq!(first_structural_difference(&real, &x), None);
}

/// One layer by content: op, weight shapes, weight values.
type LayerSig = (String, Vec<Vec<usize>>, Vec<Vec<f32>>);

/// Layers by content, names aside: op, shapes of weights and their values. A Scale
/// without a bias counts as one with a zero bias: the compiler gives every stand-alone
/// scale stage a bias buffer (postOp 9), as mvNCCompile does (NCS_GRAPH_FORMAT.md §6.2).
fn signature(net: &Net) -> Vec<LayerSig> {
    net.layers
        .iter()
        .map(|l| {
            let mut shapes: Vec<Vec<usize>> = l.blobs.iter().map(|b| b.shape.clone()).collect();
            let mut values: Vec<Vec<f32>> = l.blobs.iter().map(|b| b.data.clone()).collect();
            let op = match &l.op {
                Op::Input { .. } => "input".to_string(),
                Op::Scale(p) if !p.bias_term => {
                    let mut p = p.clone();
                    p.bias_term = true;
                    shapes.push(shapes[0].clone());
                    values.push(vec![0.0; values[0].len()]);
                    format!("{:?}", Op::Scale(p))
                }
                other => format!("{other:?}"),
            };
            (op, shapes, values)
        })
        .collect()
}

/// All six real NCSDK 1 graphs go v1 → IR → v2 → IR unchanged, the TensorFlow-compiled
/// ones included (SAME padding back as padStyle 3, deconvolution, the selection layers).
#[test]
fn v1_to_ir_to_v2_to_ir_gives_equal_nets() {
    for (fx, file) in crate::ncs::tests::REAL_GRAPHS {
        let Some(p) = crate::ncs::tests::real_graph(fx, file) else {
            return;
        };
        let net = graph_to_net(&Graph::read(&p).unwrap()).unwrap();
        let (g2, _) = compile_v2(&net, &CompileOptions::default(), BlobVersion::V2_3).unwrap();
        let back = GraphV2::parse(&g2.to_bytes()).unwrap();
        let net2 = graph_to_net(&to_v1_view(&back).unwrap()).unwrap();
        assert_eq!(net2.inputs[0].shape, net.inputs[0].shape, "{fx}");
        let (a, b) = (signature(&net2), signature(&net));
        assert_eq!(a.len(), b.len(), "{fx}: layer count");
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert_eq!((&x.0, &x.1), (&y.0, &y.1), "{fx}: layer {i}");
            if let Some(k) = (0..x.2.len()).find(|&k| x.2[k] != y.2[k]) {
                let j = (0..x.2[k].len()).find(|&j| x.2[k][j] != y.2[k][j]);
                panic!("{fx}: layer {i} ({}) blob {k} differs first at {j:?}", x.0);
            }
        }
    }
}

/// mvNCCheck's preset on the Levi & Hassner layer sequence (levi_mini, Caffe's seeded
/// initial weights): the f32 Caffe net against the fp16 emulation of its NCSDK 2 graph.
#[test]
fn levi_v2_graph_in_f16_passes_mvncheck_against_f32_caffe() {
    use crate::exec::f16::F16Engine;
    use crate::exec::{f32::Engine, ExecOptions};
    let (Some(proto), Some(model)) = (
        shared("fixtures-real/caffe-oracle/levi_mini/deploy.prototxt"),
        shared("fixtures-real/caffe-oracle/levi_mini/levi_mini_init_iter_0.caffemodel"),
    ) else {
        return;
    };
    let net = load_net(&proto, Some(&model), Phase::Test).unwrap();
    let (g, _) = compile_v2(&net, &CompileOptions::default(), BlobVersion::V2_3).unwrap();
    assert!(g.stages.iter().any(|s| s.op == StageOp::Lrn));
    let lifted =
        graph_to_net(&to_v1_view(&GraphV2::parse(&g.to_bytes()).unwrap()).unwrap()).unwrap();
    let shape = net.inputs[0].shape.clone();
    let n: usize = shape.iter().product();
    // a deterministic pixel pattern in [-128, 127], as mean-subtracted BGR input is
    let x: Vec<f32> = (0..n).map(|i| ((i * 37 % 256) as f32) - 128.0).collect();
    let input = crate::ir::Tensor::from_vec(&shape, x).unwrap();
    let opts = ExecOptions {
        threads: 2,
        ..ExecOptions::default()
    };
    let f32e = Engine::with_options(&net, opts.clone()).unwrap();
    let name = net.inputs[0].name.clone();
    let a = f32e.run([(name, input.clone())]).unwrap();
    let f16e = F16Engine::with_options(&lifted, opts).unwrap();
    let lname = f16e.engine().inputs()[0].0.to_string();
    let b = f16e.run([(lname, input)]).unwrap();
    let (ra, rb) = (
        &a.blobs.last().unwrap().1,
        &b.outputs.blobs.last().unwrap().1,
    );
    assert_eq!(
        ra.shape.iter().product::<usize>(),
        rb.shape.iter().product::<usize>()
    );
    let rb = rb.clone().reshaped(&ra.shape).unwrap();
    let m = crate::verify::metrics::compare("prob", ra, &rb).unwrap();
    let tol = crate::verify::Tolerance::new(crate::verify::Preset::Mvncheck, None);
    assert!(tol.output_ok(&m), "{m:?}");
}

/// Intel's SqueezeNet graph read into the IR (fire-module concats become Concat layers)
/// and compiled again with `-s 12` gives Intel's file back byte for byte, weights included.
#[test]
fn intels_squeezenet_graph_survives_graph_to_ir_to_graph_byte_for_byte() {
    let Some(real) = real_v2("squeezenet-v10-caffe", "graph") else {
        return;
    };
    let net = crate::ncs::read_net(&real).unwrap();
    let concats = net
        .layers
        .iter()
        .filter(|l| matches!(l.op, Op::Concat(_)))
        .count();
    assert_eq!(concats, 8, "one per fire module");
    let opts = CompileOptions {
        shaves: 12,
        ..CompileOptions::default()
    };
    let (g, _) = compile_v2(&net, &opts, BlobVersion::V2_3).unwrap();
    let real = std::fs::read(&real).unwrap();
    let ours = g.to_bytes();
    if let Some(d) = first_structural_difference(&real, &ours) {
        panic!("first difference: {d}");
    }
    assert!(ours == real, "weight values differ");
}

/// SqueezeNet (seeded weights) compiled for NCSDK 2 and run on the fp16 emulator passes
/// mvNCCheck's preset against the f32 Caffe net: the shared concat buffers hold what the
/// Concat layers compute.
#[test]
fn squeezenet_v2_graph_in_f16_passes_mvncheck_against_f32_caffe() {
    use crate::exec::f16::F16Engine;
    use crate::exec::{f32::Engine, ExecOptions};
    let Some(proto) = real_v2("squeezenet-v10-caffe", "deploy_ncsdk.prototxt") else {
        return;
    };
    let mut net = load_net(&proto, None, Phase::Test).unwrap();
    crate::caffe::weights::fill_missing_weights_random(&mut net, 3).unwrap();
    let (g, _) = compile_v2(&net, &CompileOptions::default(), BlobVersion::V2_4).unwrap();
    let lifted =
        graph_to_net(&to_v1_view(&GraphV2::parse(&g.to_bytes()).unwrap()).unwrap()).unwrap();
    let n = 3 * 227 * 227;
    let x: Vec<f32> = (0..n).map(|i| ((i * 53 % 256) as f32) - 128.0).collect();
    let input = crate::ir::Tensor::from_vec(&[1, 3, 227, 227], x).unwrap();
    let opts = ExecOptions {
        threads: 2,
        ..ExecOptions::default()
    };
    let a = Engine::with_options(&net, opts.clone())
        .unwrap()
        .run([("data", input.clone())])
        .unwrap();
    let e = F16Engine::with_options(&lifted, opts).unwrap();
    let lname = e.engine().inputs()[0].0.to_string();
    let b = e.run([(lname, input)]).unwrap();
    let ra = &a.blobs.last().unwrap().1;
    let rb = b
        .outputs
        .blobs
        .last()
        .unwrap()
        .1
        .clone()
        .reshaped(&ra.shape)
        .unwrap();
    let m = crate::verify::metrics::compare("prob", ra, &rb).unwrap();
    let tol = crate::verify::Tolerance::new(crate::verify::Preset::Mvncheck, None);
    assert!(tol.output_ok(&m), "{m:?}");
}
