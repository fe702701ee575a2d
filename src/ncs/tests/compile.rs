//! Compiler tests against real mvNCCompile output.

use super::real_graph;
use crate::caffe::load_net;
use crate::ir::Phase;
use crate::ncs::{compile, CompileOptions, Graph};
use crate::testutil::shared;

/// `mvNCCompile -s 12 -o graph -w empty.caffemodel empty.prototxt` (COMPILE.txt) must give
/// the real file byte for byte.
#[test]
fn empty_fc_compiles_byte_identical_to_mvnccompile() {
    let (Some(proto), Some(weights), Some(real)) = (
        shared("fixtures-real/ncs/beloborodov-empty-fc/empty.prototxt"),
        shared("fixtures-real/ncs/beloborodov-empty-fc/empty.caffemodel"),
        real_graph("beloborodov-empty-fc", "graph"),
    ) else {
        return;
    };
    let net = load_net(&proto, Some(&weights), Phase::Test).unwrap();
    let opts = CompileOptions {
        shaves: 12,
        ..CompileOptions::default()
    };
    let c = compile(&net, &opts).unwrap();
    let ours = c.graph.to_bytes();
    let theirs = std::fs::read(&real).unwrap();
    assert_eq!(ours.len(), theirs.len());
    if let Some(at) = ours.iter().zip(&theirs).position(|(a, b)| a != b) {
        panic!(
            "first difference at byte {at}: ours {:?} real {:?}\n{:#?}\nvs\n{:#?}",
            &ours[at..at + 8],
            &theirs[at..at + 8],
            c.graph.stages,
            Graph::parse(&theirs).unwrap().stages
        );
    }
}

/// The constant bytes a stage points at in its slot, as the stage's op defines their size.
fn blob_bytes<'g>(g: &'g Graph, s: &crate::ncs::StageRecord, slot: &str) -> Option<&'g [u8]> {
    let r = match slot {
        "taps" => s.taps,
        "bias" => s.bias,
        _ => s.op_params,
    };
    let n = crate::ncs::decoder::slot_bytes(s, slot) as usize;
    g.blob_bytes(r, n, 1)
}

/// simcam-emotion (SIMCAM's modified 1.12 toolkit, `-s 1`): every stage record field must
/// match, including names, work buffers and post-ops, and every weight/bias/parameter array
/// must hold the same bytes. The one difference: the vendor toolkit writes a zero int32
/// opParams array for each eltwise stage (4 × 64 bytes), which stock 1.12 does not, so
/// every buffer after one of those sits 64 bytes earlier in our file.
#[test]
fn emotion_compiles_to_the_real_stage_records_and_constants() {
    let (Some(proto), Some(weights), Some(real)) = (
        shared("fixtures-real/ncs/simcam-emotion/deploy.prototxt"),
        shared("fixtures-real/ncs/simcam-emotion/emotion.caffemodel"),
        real_graph("simcam-emotion", "graph"),
    ) else {
        return;
    };
    let net = load_net(&proto, Some(&weights), Phase::Test).unwrap();
    let c = compile(&net, &CompileOptions::default()).unwrap();
    assert!(
        c.warnings
            .iter()
            .all(|w| !w.message.contains("not compiled")),
        "{:?}",
        c.warnings
    );
    let ours = &c.graph;
    let theirs = Graph::read(&real).unwrap();
    assert_eq!(ours.header.name, theirs.header.name);
    assert_eq!(ours.header.stage_count, theirs.header.stage_count);
    assert_eq!(ours.header.buffer_start, theirs.header.buffer_start);
    assert_eq!(ours.header.last_shave, theirs.header.last_shave);
    assert_eq!(ours.data.len() + 4 * 64, theirs.data.len());
    // where the vendor's eltwise arrays sit: every later buffer is 64 bytes further on
    let vendor_params: Vec<u32> = theirs
        .stages
        .iter()
        .filter(|s| s.op.code() == 12)
        .map(|s| s.op_params.pointer)
        .collect();
    let shifted = |p: u32| p - 64 * vendor_params.iter().filter(|&&v| v < p).count() as u32;
    for (i, (a, b)) in ours.stages.iter().zip(&theirs.stages).enumerate() {
        let mut b2 = b.clone();
        let a2 = a.clone();
        if b.op.code() == 12 {
            // the vendor's extra eltwise opParams: four zero bytes
            assert_eq!(blob_bytes(&theirs, b, "opParams"), Some(&[0u8; 4][..]));
            b2.op_params = crate::ncs::BufferRef::NONE;
        }
        for y in [&mut b2.taps, &mut b2.bias, &mut b2.op_params] {
            if y.location == 3 {
                // same depth-first packing order, minus the vendor's extra buffers
                y.pointer = shifted(y.pointer);
            }
        }
        assert_eq!(a2, b2, "stage {i}");
        for slot in ["taps", "bias", "opParams"] {
            if b2.op.code() == 12 && slot == "opParams" {
                continue;
            }
            assert_eq!(
                blob_bytes(ours, a, slot),
                blob_bytes(&theirs, b, slot),
                "stage {i} {} {slot}",
                a.name
            );
        }
    }
}

use super::f16_round;
use crate::ir::{Filler, InputSpec, Layer, Net, Op};
use crate::ncs::{graph_to_net, CompileError, Location, StageOp};

/// levi_mini (Levi & Hassner layer sequence, 16/32/48 filters) with Caffe's initial weights.
fn levi_mini() -> Option<Net> {
    let proto = shared("fixtures-real/caffe-oracle/levi_mini/deploy.prototxt")?;
    let model = shared("fixtures-real/caffe-oracle/levi_mini/levi_mini_init_iter_0.caffemodel")?;
    Some(load_net(&proto, Some(&model), Phase::Test).unwrap())
}

fn set_num_output(net: &mut Net, layer: &str, n: usize) {
    match &mut net.layer_mut(layer).unwrap().op {
        Op::Convolution(p) => p.num_output = n,
        Op::InnerProduct(p) => p.num_output = n,
        other => panic!("{other:?}"),
    }
}

/// NCS_GRAPH_FORMAT.md §10.3 derives, from the rules, the complete layout of the full-size
/// AgeNet (96/256/384 filters, fc 512, 9 outputs): 13 records, every data-section pointer
/// and every work buffer. The full-size prototxt is the caffe-oracle timing net; fc8 is set
/// to the 9 outputs §10.3 uses.
#[test]
fn full_agenet_layout_matches_the_spec_derivation() {
    let Some(proto) = shared("fixtures-real/caffe-oracle/timing/levi_full_deploy_b1.prototxt")
    else {
        return;
    };
    let mut net = load_net(&proto, None, Phase::Test).unwrap();
    set_num_output(&mut net, "fc8", 9);
    let g = compile(&net, &CompileOptions::default()).unwrap().graph;
    let names: Vec<&str> = g.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "data", "conv1", "pool1", "norm1", "conv2", "pool2", "norm2", "conv3", "pool5", "fc6",
            "fc7", "fc8", "prob"
        ]
    );
    assert_eq!(g.header.buffer_start, 3216);
    assert_eq!(g.data.len(), 22_831_552);
    assert_eq!(g.header.file_size, 22_834_768);
    let blob = |name: &str| g.stages.iter().find(|s| s.name == name).unwrap();
    let ptrs = |name: &str| {
        let s = blob(name);
        [s.taps, s.bias, s.op_params].map(|r| (r.location == 3).then_some(r.pointer))
    };
    assert_eq!(ptrs("conv1"), [Some(0), Some(28224), Some(28416)]);
    assert_eq!(ptrs("norm1"), [None, Some(28480), None]);
    assert_eq!(ptrs("conv2"), [Some(28544), Some(1257344), Some(1257856)]);
    assert_eq!(ptrs("norm2"), [None, Some(1257920), None]);
    assert_eq!(ptrs("conv3"), [Some(1257984), Some(3027456), Some(3028224)]);
    assert_eq!(ptrs("fc6"), [Some(3028288), Some(22295872), None]);
    assert_eq!(ptrs("fc7"), [Some(22296896), Some(22821184), None]);
    assert_eq!(ptrs("fc8"), [Some(22822208), Some(22831424), None]);
    assert_eq!(ptrs("prob"), [None, None, Some(22831488)]);
    for (name, pointer, index) in [
        ("conv1", 21888, 4),
        ("pool1", 657024, 5),
        ("norm1", 829824, 6),
        ("conv2", 1021184, 7),
        ("pool2", 1467648, 8),
        ("norm2", 1598720, 9),
        ("conv3", 1737472, 10),
        ("pool5", 1923328, 11),
        ("fc6", 1977344, 12),
        ("fc7", 1986560, 13),
        ("fc8", 1991752, 14),
    ] {
        let s = blob(name);
        assert_eq!(
            (s.output.pointer, s.output.location),
            (pointer, index),
            "{name}"
        );
    }
    assert_eq!(
        (blob("prob").output.pointer, blob("prob").output.location),
        (0, 2)
    );
    // arena 1 991 872: fc8's buffer (1×1×9, guard 2·2·9·2 = 72) ends there
    assert_eq!(1_991_752 - 72 + (18 + 144u32).div_ceil(64) * 64, 1_991_872);
    // LRN parameters {1, 1e-4, 0.75, 0} in the bias slot, alpha raw (§5.5 bytes)
    let n1 = blob("norm1");
    assert_eq!(
        g.blob_bytes(n1.bias, 8, 1).unwrap(),
        &[0x00, 0x3c, 0x8e, 0x06, 0x00, 0x3a, 0x00, 0x00]
    );
    assert_eq!((n1.radix, n1.taps_dims.x), ([5, 0], 0));
    // §6.5 record shapes: ReLUs fused, FC reads pool5's 7x7x384 HWC tensor
    assert_eq!(blob("conv1").post_op, StageOp::Relu);
    assert_eq!(blob("conv1").output_dims.to_string(), "56x56x96");
    assert_eq!(blob("pool1").output_dims.to_string(), "28x28x96");
    let fc6 = blob("fc6");
    assert_eq!(fc6.input_dims.to_string(), "1x1x18816");
    assert_eq!(fc6.input_strides.to_string(), "768x5376x2");
    assert_eq!(fc6.post_op, StageOp::Relu);
    assert_eq!(blob("prob").pad_style as u8, 0);
    assert_eq!(g.host_output_len(), 9);
}

/// compile → read → lift → compile gives the same bytes, and the lifted weights are the
/// caffemodel's rounded to fp16 (conv taps through HWCK, fc6 through the 48×7×7 reorder).
#[test]
fn compile_read_lift_compile_round_trips() {
    let Some(net) = levi_mini() else { return };
    let first = compile(&net, &CompileOptions::default()).unwrap().graph;
    let bytes = first.to_bytes();
    let read = Graph::parse(&bytes).unwrap();
    assert_eq!(read, first);
    let lifted = graph_to_net(&read).unwrap();
    for name in ["conv1", "conv2", "conv3", "fc6", "fc7", "fc8"] {
        let a = &lifted.layer(name).unwrap().blobs;
        let b = &net.layer(name).unwrap().blobs;
        for (x, y) in a.iter().zip(b) {
            assert_eq!(x.shape, y.shape, "{name}");
            assert_eq!(x.data, f16_round(&y.data), "{name}");
        }
    }
    let again = compile(&lifted, &CompileOptions::default()).unwrap().graph;
    assert!(again.to_bytes() == bytes, "recompiled bytes differ");

    // the BN-folded emotion net round-trips too
    let (Some(proto), Some(weights)) = (
        shared("fixtures-real/ncs/simcam-emotion/deploy.prototxt"),
        shared("fixtures-real/ncs/simcam-emotion/emotion.caffemodel"),
    ) else {
        return;
    };
    let emo = load_net(&proto, Some(&weights), Phase::Test).unwrap();
    let g = compile(&emo, &CompileOptions::default()).unwrap().graph;
    let back = graph_to_net(&Graph::parse(&g.to_bytes()).unwrap()).unwrap();
    let g2 = compile(&back, &CompileOptions::default()).unwrap().graph;
    assert!(
        g2.to_bytes() == g.to_bytes(),
        "emotion recompiled bytes differ"
    );
}

#[test]
fn input_and_output_cuts_follow_mvnccompile() {
    let Some(net) = levi_mini() else { return };
    let opts = CompileOptions {
        input_layer: Some("conv2".into()),
        output_layer: Some("pool5".into()),
        ..CompileOptions::default()
    };
    let g = compile(&net, &opts).unwrap().graph;
    let names: Vec<&str> = g.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["norm1", "conv2", "pool2", "norm2", "conv3", "pool5"]
    );
    let input = &g.stages[0];
    assert_eq!(input.op, StageOp::None);
    assert_eq!(input.input_dims.to_string(), "28x28x16");
    assert_eq!(g.stages[1].data.loc(), Location::Input);
    assert_eq!(g.stages[5].output.loc(), Location::Output);
    assert_eq!(g.host_output_len(), 7 * 7 * 48);
    // conv3 (stage 4) keeps its fused ReLU, conv2's weights come first in the data section
    assert_eq!(g.stages[4].post_op, StageOp::Relu);
    assert_eq!(g.stages[1].taps.pointer, 0);

    // -on a ReLU: its producer is the last stage, named after the ReLU's top
    let opts = CompileOptions {
        output_layer: Some("relu7".into()),
        ..CompileOptions::default()
    };
    let g = compile(&net, &opts).unwrap().graph;
    let last = g.stages.last().unwrap();
    assert_eq!((last.name.as_str(), last.post_op), ("fc7", StageOp::Relu));
    assert_eq!(last.output.loc(), Location::Output);
    assert_eq!(g.host_output_len(), 64);
    // -on fc7 stops before relu7: no post-op
    let opts = CompileOptions {
        output_layer: Some("fc7".into()),
        ..CompileOptions::default()
    };
    let g = compile(&net, &opts).unwrap().graph;
    assert_eq!(g.stages.last().unwrap().post_op, StageOp::Bias);

    for (inl, outl, opt) in [(Some("nope"), None, "-in"), (None, Some("nope"), "-on")] {
        let opts = CompileOptions {
            input_layer: inl.map(String::from),
            output_layer: outl.map(String::from),
            ..CompileOptions::default()
        };
        let e = compile(&net, &opts).unwrap_err();
        assert_eq!(
            e,
            CompileError::UnknownLayer {
                option: opt,
                name: "nope".into()
            }
        );
    }
}

#[test]
fn shaves_go_into_the_header_and_dropout_is_dropped() {
    let Some(net) = levi_mini() else { return };
    for s in [1u16, 6, 12] {
        let opts = CompileOptions {
            shaves: s,
            ..CompileOptions::default()
        };
        let g = compile(&net, &opts).unwrap().graph;
        assert_eq!((g.header.first_shave, g.header.last_shave), (0, s - 1));
        assert!(g.stages.iter().all(|st| !st.name.starts_with("drop")));
        assert_eq!(g.stages.len(), 13);
    }
    for s in [0u16, 13] {
        let opts = CompileOptions {
            shaves: s,
            ..CompileOptions::default()
        };
        assert_eq!(compile(&net, &opts).unwrap_err(), CompileError::Shaves(s));
    }
}

/// A one-layer net for refusal tests: input C×H×W → `op`.
fn one_layer(c: usize, h: usize, w: usize, op: Op) -> Net {
    Net {
        name: "t".into(),
        inputs: vec![InputSpec {
            name: "in".into(),
            shape: vec![1, c, h, w],
        }],
        layers: vec![Layer::new("l", op, vec!["in".into()], vec!["l".into()])],
        ..Net::default()
    }
}

#[test]
fn what_the_stick_cannot_run_is_refused_with_the_layer_named() {
    use crate::ops::{conv::ConvParams, inner_product::InnerProductParams, pool::PoolParams};
    let Some(mut net) = levi_mini() else { return };
    // batch > 1
    let mut batch = net.clone();
    batch.inputs[0].shape[0] = 10;
    assert!(matches!(
        compile(&batch, &CompileOptions::default()),
        Err(CompileError::InputShape { .. })
    ));
    // grouped convolution (not depthwise)
    let mut grouped = net.clone();
    if let Op::Convolution(p) = &mut grouped.layer_mut("conv2").unwrap().op {
        p.group = 2;
    }
    grouped.layer_mut("conv2").unwrap().blobs.clear();
    let e = compile(&grouped, &CompileOptions::default()).unwrap_err();
    assert!(
        e.to_string().contains("'conv2'") && e.to_string().contains("group 2"),
        "{e}"
    );
    // random filler without weights
    let mut nowts = net.clone();
    let l = nowts.layer_mut("fc7").unwrap();
    l.blobs.clear();
    if let Op::InnerProduct(p) = &mut l.op {
        p.weight_filler = Filler::Gaussian {
            mean: 0.0,
            std: 0.005,
        };
    }
    assert_eq!(
        compile(&nowts, &CompileOptions::default()).unwrap_err(),
        CompileError::MissingWeights {
            layer: "fc7".into(),
            filler: "gaussian".into()
        }
    );
    // a graph over 320 MiB is refused before its weights are built
    let l = net.layer_mut("fc6").unwrap();
    l.blobs.clear();
    if let Op::InnerProduct(p) = &mut l.op {
        p.num_output = 100_000;
    }
    let l = net.layer_mut("fc7").unwrap();
    l.blobs.clear();
    let e = compile(&net, &CompileOptions::default()).unwrap_err();
    assert!(matches!(e, CompileError::GraphTooLarge { .. }), "{e}");

    // kernel > 127
    let big = one_layer(
        1,
        130,
        130,
        Op::Convolution(ConvParams {
            num_output: 1,
            kernel: [128, 128],
            ..ConvParams::default()
        }),
    );
    assert!(matches!(
        compile(&big, &CompileOptions::default()),
        Err(CompileError::Limit { .. })
    ));
    // global pooling over a plane wider than 127 (the toolkit would wrap the radix byte)
    let gp = one_layer(
        2,
        4,
        200,
        Op::Pooling(PoolParams {
            global: true,
            ..PoolParams::default()
        }),
    );
    let e = compile(&gp, &CompileOptions::default()).unwrap_err();
    assert!(e.to_string().contains("127"), "{e}");
    // a pooling window smaller than its stride: NCS ceil size 2 ≠ Caffe's 3
    let pool = one_layer(
        1,
        6,
        6,
        Op::Pooling(PoolParams {
            kernel: [1, 1],
            stride: [3, 3],
            ..PoolParams::default()
        }),
    );
    let e = compile(&pool, &CompileOptions::default()).unwrap_err();
    assert!(matches!(e, CompileError::Unsupported { .. }), "{e}");
    // work memory over 100 MiB
    let wide = one_layer(
        3,
        2000,
        4000,
        Op::Convolution(ConvParams {
            num_output: 16,
            kernel: [3, 3],
            pad: [1, 1],
            ..ConvParams::default()
        }),
    );
    let mut wide = wide;
    wide.layers.push(Layer::new(
        "fc",
        Op::InnerProduct(InnerProductParams {
            num_output: 1,
            ..InnerProductParams::default()
        }),
        vec!["l".into()],
        vec!["fc".into()],
    ));
    let e = compile(&wide, &CompileOptions::default()).unwrap_err();
    assert!(matches!(e, CompileError::WorkTooLarge { .. }), "{e}");
    // firmware lacks it
    let loss = one_layer(
        4,
        1,
        1,
        Op::Concat(crate::ops::concat::ConcatParams::default()),
    );
    let e = compile(&loss, &CompileOptions::default()).unwrap_err();
    assert!(e.to_string().contains("layer 'l' (Concat)"), "{e}");
    // ReLU directly on the input
    let relu = one_layer(4, 2, 2, Op::Relu(Default::default()));
    let e = compile(&relu, &CompileOptions::default()).unwrap_err();
    assert!(e.to_string().contains("network input"), "{e}");
}

#[test]
fn names_are_truncated_to_100_bytes_with_a_warning_and_must_be_ascii() {
    let mut net = one_layer(3, 4, 4, Op::Sigmoid);
    net.layers[0].name = "s".repeat(120);
    let c = compile(&net, &CompileOptions::default()).unwrap();
    assert_eq!(c.graph.stages[1].name, "s".repeat(100));
    assert!(c
        .warnings
        .iter()
        .any(|w| w.message.contains("truncated to 100")));
    let bytes = c.graph.to_bytes();
    assert_eq!(
        &bytes[264 + 227..264 + 227 + 100],
        "s".repeat(100).as_bytes()
    );
    net.layers[0].name = "größe".into();
    assert!(matches!(
        compile(&net, &CompileOptions::default()),
        Err(CompileError::Limit { .. })
    ));
}

/// §4.4: a convolution with ≥ 200 input channels writing the network output (location 2,
/// also written by the input stage) is forced to optMask 0x00000004; elsewhere 0x80000000.
#[test]
fn wide_final_convolution_gets_the_im2col_mask() {
    use crate::ops::conv::ConvParams;
    let conv = || {
        Op::Convolution(ConvParams {
            num_output: 4,
            kernel: [3, 3],
            pad: [1, 1],
            ..ConvParams::default()
        })
    };
    let net = one_layer(256, 4, 4, conv());
    let g = compile(&net, &CompileOptions::default()).unwrap().graph;
    assert_eq!(g.stages[1].opt_mask, 4);
    let narrow = one_layer(199, 4, 4, conv());
    let g = compile(&narrow, &CompileOptions::default()).unwrap().graph;
    assert_eq!(g.stages[1].opt_mask, 0x8000_0000);
}

/// `-is` resizes the input (emotion is fully convolutional up to its global pooling).
#[test]
fn input_size_option_resizes_with_a_warning() {
    let (Some(proto), Some(weights)) = (
        shared("fixtures-real/ncs/simcam-emotion/deploy.prototxt"),
        shared("fixtures-real/ncs/simcam-emotion/emotion.caffemodel"),
    ) else {
        return;
    };
    let emo = load_net(&proto, Some(&weights), Phase::Test).unwrap();
    let opts = CompileOptions {
        input_size: Some([48, 48]),
        ..CompileOptions::default()
    };
    let c = compile(&emo, &opts).unwrap();
    assert_eq!(c.graph.stages[0].input_dims.to_string(), "48x48x1");
    // 48 → conv 46 → conv 44 → … → global pooling over 3x3 (48-4 = 44, /2 = 22, /2 = 11, /2 = 6, /2 = 3)
    let gap = c
        .graph
        .stages
        .iter()
        .find(|s| s.name == "global_average_pooling2d_1")
        .unwrap();
    assert_eq!(gap.input_dims.to_string(), "3x3x8");
    assert!(c.warnings.iter().any(|w| w.message.contains("-is 48 48")));
}

/// The LRN overflow warning depends on the declared input range: levi_mini's conv1 bound
/// is max_k Σ|W_k|·R + |b_k| (ReLU and max pooling keep it), the LRN sums 5 squares.
#[test]
fn lrn_overflow_is_warned_for_the_declared_input_range() {
    let Some(net) = levi_mini() else { return };
    let conv1 = net.layer("conv1").unwrap();
    let (w, b) = (&conv1.blobs[0], &conv1.blobs[1]);
    let per = w.len() / 16;
    let bound = |r: f32| {
        (0..16)
            .map(|k| {
                w.data[k * per..(k + 1) * per]
                    .iter()
                    .map(|v| v.abs())
                    .sum::<f32>()
                    * r
                    + b.data[k].abs()
            })
            .fold(0.0f32, f32::max)
    };
    let warned = |r: f32| {
        let opts = CompileOptions {
            input_range: [-r, r],
            ..CompileOptions::default()
        };
        compile(&net, &opts)
            .unwrap()
            .warnings
            .into_iter()
            .find(|w| w.layer == "norm1")
    };
    let w255 = warned(255.0).expect("norm1 warned for ±255");
    let squares = 5.0 * bound(255.0) * bound(255.0);
    assert!(squares > 65504.0);
    assert!(
        w255.message.contains(&format!("{squares:.4e}")),
        "{}",
        w255.message
    );
    assert!(5.0 * bound(1.0) * bound(1.0) < 65504.0);
    assert!(warned(1.0).is_none());
}

/// The original Levi & Hassner deploy files (legacy V1 syntax, `input_dim`): AgeNet
/// compiles to the 13 stages of §10.3 with 8 outputs; GenderNet declares a batch of 10
/// over-sampled crops, which the NCS cannot run.
#[test]
fn original_levi_hassner_deploys_compile_or_are_refused() {
    let (Some(age), Some(gender)) = (
        shared("fixtures-real/levi_hassner/age_net_definitions/deploy.prototxt"),
        shared("fixtures-real/levi_hassner/gender_net_definitions/deploy.prototxt"),
    ) else {
        return;
    };
    let net = load_net(&age, None, Phase::Test).unwrap();
    let g = compile(&net, &CompileOptions::default()).unwrap().graph;
    assert_eq!(g.stages.len(), 13);
    assert_eq!(g.stages[0].input_dims.to_string(), "227x227x3");
    assert_eq!(g.host_output_len(), 8);
    // 8 instead of 9 outputs: fc8 taps 8192 bytes, so prob's {axis} sits 1024 bytes earlier
    assert_eq!(g.data.len(), 22_831_552 - 1024);
    let net = load_net(&gender, None, Phase::Test).unwrap();
    let e = compile(&net, &CompileOptions::default()).unwrap_err();
    assert!(
        matches!(&e, CompileError::InputShape { shape, .. } if shape[0] == 10),
        "{e}"
    );
}

/// cifar10_full (real caffemodel): ReLU after pooling becomes the pooling stage's post-op,
/// and each WITHIN_CHANNEL LRN becomes the four stages of §6.2. Compiling, lifting the
/// graph back and running it with the fp16 emulation reproduces OpenCV's Caffe outputs
/// within mvNCCheck's 2 % of max|ref| on every layer the graph keeps.
#[test]
fn cifar10_full_compiles_lifts_and_runs_in_fp16_like_opencv() {
    use crate::exec::compare::{compare_layers, load_golden_case};
    use crate::exec::f16::{F16Engine, OverflowKind};
    use crate::exec::ExecOptions;
    let (Some(proto), Some(model), Some(golden)) = (
        shared("fixtures-real/caffe/cifar10_full/cifar10_full.prototxt"),
        shared("fixtures-real/caffe/cifar10_full/cifar10_full_iter_70000.caffemodel"),
        shared("fixtures-real/caffe/golden.json"),
    ) else {
        return;
    };
    let net = load_net(&proto, Some(&model), Phase::Test).unwrap();
    let g = compile(&net, &CompileOptions::default()).unwrap().graph;
    let names: Vec<&str> = g.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "data",
            "conv1",
            "pool1",
            "norm1_Square",
            "norm1_AvgPool",
            "norm1_InnerLRN",
            "norm1",
            "conv2",
            "pool2",
            "norm2_Square",
            "norm2_AvgPool",
            "norm2_InnerLRN",
            "norm2",
            "conv3",
            "pool3",
            "ip1",
            "prob"
        ]
    );
    // pool1 + relu1: a max pooling stage with ReLU post-op, named after relu1's top, which
    // is "pool1" because Caffe's relu1 is in place
    let pool1 = &g.stages[2];
    assert_eq!(pool1.op, StageOp::MaxPooling);
    assert_eq!(pool1.post_op, StageOp::Relu);
    let sq = &g.stages[3];
    let (avg, inner, prod) = (&g.stages[4], &g.stages[5], &g.stages[6]);
    assert_eq!(
        (sq.op, avg.op, inner.op, prod.op),
        (
            StageOp::Square,
            StageOp::AveragePooling,
            StageOp::InnerLrn,
            StageOp::EltwiseProd
        )
    );
    assert_eq!((avg.radix, avg.pad, avg.stride), ([3, 3], [1, 1], [1, 1]));
    assert_eq!(prod.data, sq.data, "the product reads the LRN input");
    assert_eq!(prod.taps, inner.output);
    assert_eq!(
        g.f32_from_f16_at(inner.bias, 4).unwrap(),
        [1.0, f32::from(half::f16::from_f32(5e-5)), 0.75, 0.0]
    );

    let lifted = graph_to_net(&Graph::parse(&g.to_bytes()).unwrap()).unwrap();
    let again = compile(&lifted, &CompileOptions::default()).unwrap().graph;
    assert!(again.to_bytes() == g.to_bytes(), "recompiled bytes differ");

    let reference = load_golden_case(&golden, "cifar10_full_utkface_face").unwrap();
    let e = F16Engine::with_options(
        &lifted,
        ExecOptions {
            keep_all_blobs: true,
            threads: 2,
            ..ExecOptions::default()
        },
    )
    .unwrap();
    let input = e.engine().inputs()[0].0.to_string();
    let run = e.run([(input, reference.input.clone())]).unwrap();
    // cifar10 takes raw 0..255 pixels: both LRNs' 3×3 sums of squares exceed fp16 (the
    // classic NCS overflow) while every stored value stays finite. The largest window sum
    // agrees with the one computed from OpenCV's own LRN inputs (relu1, pool2).
    let window_max = |t: &crate::ir::Tensor| {
        let [_, c, h, w] = t.shape[..] else { panic!() };
        let mut best = 0.0f32;
        for ch in 0..c {
            for y in 0..h {
                for x in 0..w {
                    let mut sum = 0.0;
                    for yy in y.saturating_sub(1)..(y + 2).min(h) {
                        for xx in x.saturating_sub(1)..(x + 2).min(w) {
                            sum += t.data[(ch * h + yy) * w + xx].powi(2);
                        }
                    }
                    best = best.max(sum);
                }
            }
        }
        best
    };
    let golden_of = |n: &str| &reference.layers.iter().find(|(l, _)| l == n).unwrap().1;
    let reported: Vec<(&str, OverflowKind, f32)> = run
        .overflows
        .iter()
        .map(|o| (o.layer.as_str(), o.what, o.max_abs))
        .collect();
    let layers: Vec<&str> = reported.iter().map(|r| r.0).collect();
    assert_eq!(layers, ["norm1", "norm2"], "{reported:?}");
    for ((layer, what, sum), input) in reported.iter().zip(["relu1", "pool2"]) {
        let expected = window_max(golden_of(input));
        assert_eq!(*what, OverflowKind::LrnSumOfSquares);
        assert!(expected > 65504.0);
        assert!(
            (sum - expected).abs() <= 0.01 * expected,
            "{layer}: {sum} vs {expected}"
        );
    }
    // the graph keeps the outputs of the fused groups: conv1 (no ReLU), pool1+relu1, norm1,
    // conv2+relu2, pool2, norm2, conv3+relu3, pool3, ip1, prob
    let kept = [
        "conv1", "relu1", "norm1", "relu2", "pool2", "norm2", "relu3", "pool3", "ip1", "prob",
    ];
    let mut reference = reference;
    reference.layers.retain(|(n, _)| kept.contains(&n.as_str()));
    // lifted blobs are named after stages: map the Caffe layer to the stage holding it
    fn stage_of(caffe: &str) -> &str {
        match caffe {
            "relu1" => "pool1/relu",
            "relu2" => "conv2/relu",
            "relu3" => "conv3/relu",
            other => other,
        }
    }
    for (n, _) in &mut reference.layers {
        *n = stage_of(n).to_string();
    }
    let diffs = compare_layers(e.engine().net(), &run.outputs, &reference, 1.0).unwrap();
    assert_eq!(diffs.len(), kept.len());
    for d in &diffs {
        assert!(
            d.max_abs <= 0.02 * d.max_ref,
            "{}: max error {:.3} % of max|ref|",
            d.layer,
            100.0 * d.max_abs / d.max_ref
        );
    }
}

/// MTCNN det3 (PReLU, three heads): by default the first network output (conv6-2) is
/// compiled and the other heads are left out with a warning; `-on prob1` compiles the
/// classification head. PReLU becomes its own stage with the slopes in the bias slot; the
/// lifted graph run in fp16 matches OpenCV within 2 % of max|ref|.
#[test]
fn mtcnn_det3_heads_prelu_stages_and_fp16_run() {
    use crate::exec::compare::{compare_layers, load_golden_case};
    use crate::exec::f16::F16Engine;
    use crate::exec::ExecOptions;
    let (Some(proto), Some(model), Some(golden)) = (
        shared("fixtures-real/caffe/mtcnn/det3.prototxt"),
        shared("fixtures-real/caffe/mtcnn/det3.caffemodel"),
        shared("fixtures-real/caffe/golden.json"),
    ) else {
        return;
    };
    let net = load_net(&proto, Some(&model), Phase::Test).unwrap();
    let c = compile(&net, &CompileOptions::default()).unwrap();
    assert_eq!(c.graph.stages.last().unwrap().name, "conv6-2");
    assert!(c
        .warnings
        .iter()
        .any(|w| w.message.contains("not compiled: conv6-1")));
    let opts = CompileOptions {
        output_layer: Some("prob1".into()),
        ..CompileOptions::default()
    };
    let c = compile(&net, &opts).unwrap();
    let g = &c.graph;
    let names: Vec<&str> = g.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "data", "conv1", "prelu1", "pool1", "conv2", "prelu2", "pool2", "conv3", "prelu3",
            "pool3", "conv4", "prelu4", "conv5", "prelu5", "conv6-1", "prob1"
        ]
    );
    assert!(c
        .warnings
        .iter()
        .any(|w| w.message.contains("conv6-2, conv6-3")));
    let prelu1 = &g.stages[2];
    assert_eq!(prelu1.op, StageOp::PRelu);
    assert_eq!(
        g.f32_from_f16_at(prelu1.bias, 32).unwrap(),
        f16_round(&net.layer("prelu1").unwrap().blobs[0].data)
    );
    assert_eq!(g.host_output_len(), 2);

    let lifted = graph_to_net(&Graph::parse(&g.to_bytes()).unwrap()).unwrap();
    let mut reference = load_golden_case(&golden, "mtcnn_det3_utkface_face").unwrap();
    reference
        .layers
        .retain(|(n, _)| n == "conv6-1" || n == "prob1");
    let e = F16Engine::with_options(
        &lifted,
        ExecOptions {
            keep_all_blobs: true,
            threads: 2,
            ..ExecOptions::default()
        },
    )
    .unwrap();
    let input = e.engine().inputs()[0].0.to_string();
    let run = e.run([(input, reference.input.clone())]).unwrap();
    let diffs = compare_layers(e.engine().net(), &run.outputs, &reference, 1.0).unwrap();
    assert_eq!(diffs.len(), 2);
    for d in &diffs {
        assert!(
            d.max_abs <= 0.02 * d.max_ref,
            "{}: {} vs max {}",
            d.layer,
            d.max_abs,
            d.max_ref
        );
    }
}
