//! Golden tests: every real NCSDK 2 file parses, its header, stage and relocation facts
//! equal the values NCSDK2_GRAPH_FORMAT.md §12–§13 and the fixtures' ORIGIN.md state, it is
//! re-encoded byte for byte, and the 2.3 → 2.4 rule of §3.3 reproduces the real 2.4 file.

use super::{real_v2, REAL_V2};
use crate::ncs::stage::{StageOp, Xyz};
use crate::ncs::v2::{BlobVersion, Descriptor, GraphV2, Reloc};
use crate::ncs::{inspect_any, AnyReport};

/// (fixture, blob, bytes, shaves, stages, stage section, buffer section, relocation
/// section, input elements, output elements, blob entries, work entries).
/// Sizes from ORIGIN.md; offsets and counts from §13 where given, otherwise from the
/// §6.2 rule (one entry per location-3 / ≥4 descriptor: conv/FC taps + bias; each work
/// tensor is written once and read once in these linear nets).
#[allow(clippy::type_complexity)]
const FACTS: [(
    &str,
    BlobVersion,
    u32,
    u32,
    usize,
    u32,
    u32,
    u32,
    u32,
    u32,
    usize,
    usize,
); 6] = [
    (
        "matpalm-conv1-valid",
        BlobVersion::V2_3,
        16_772,
        12,
        3,
        80,
        608,
        16_688,
        12_288,
        1,
        4,
        4,
    ),
    (
        "matpalm-conv8",
        BlobVersion::V2_3,
        132_420,
        12,
        3,
        80,
        0,
        0,
        12_288,
        1,
        4,
        4,
    ),
    (
        "matpalm-conv-deconv",
        BlobVersion::V2_3,
        393_780,
        12,
        9,
        80,
        0,
        0,
        786_432,
        16_129,
        18,
        16,
    ),
    (
        "squeezenet-v10-caffe",
        BlobVersion::V2_3,
        2_506_244,
        12,
        32,
        80,
        6560,
        2_505_328,
        154_587,
        1000,
        52,
        60,
    ),
    (
        "hsinm-mnist-blob23",
        BlobVersion::V2_3,
        90_324,
        1,
        9,
        80,
        1632,
        90_096,
        784,
        10,
        10,
        16,
    ),
    (
        "hsinm-mnist-blob24",
        BlobVersion::V2_4,
        90_404,
        1,
        9,
        128,
        1728,
        90_176,
        784,
        10,
        10,
        16,
    ),
];

fn load(fixture: &str) -> Option<(Vec<u8>, GraphV2)> {
    let file = REAL_V2.iter().find(|f| f.0 == fixture)?.1;
    let p = real_v2(fixture, file)?;
    let bytes = std::fs::read(&p).unwrap();
    let g = GraphV2::parse(&bytes).unwrap_or_else(|e| panic!("{fixture}: {e}"));
    Some((bytes, g))
}

#[test]
fn all_six_real_files_have_the_documented_header_stages_and_relocations() {
    for (fx, ver, size, shaves, n, stage_off, buf_off, reloc_off, input, output, nb, nw) in FACTS {
        let Some((bytes, g)) = load(fx) else { return };
        let h = &g.header;
        assert_eq!(bytes.len() as u32, size, "{fx}");
        assert_eq!(h.version, ver, "{fx}");
        assert_eq!(h.file_size, size, "{fx}");
        assert_eq!(h.num_shaves, shaves, "{fx}");
        assert_eq!(g.stages.len(), n, "{fx}");
        assert_eq!(h.stage_section_offset, stage_off, "{fx}");
        if buf_off != 0 {
            assert_eq!(h.buffer_section_offset, buf_off, "{fx}");
            assert_eq!(h.relocation_offset, reloc_off, "{fx}");
        }
        assert_eq!(h.size_of_input, input, "{fx}");
        assert_eq!(g.output_size, output, "{fx}");
        assert_eq!(h.permutation_enabled, 0, "{fx}");
        if fx.starts_with("hsinm") {
            // §6.3 example: 8 work tensors, each written once and read once
            assert_eq!(g.work_relocs.len(), nw, "{fx}");
            let mut distinct: Vec<Reloc> = g.work_relocs.clone();
            distinct.dedup();
            let want = [
                (0, 4),
                (25088, 5),
                (32320, 6),
                (43136, 7),
                (46272, 8),
                (49472, 9),
                (50624, 10),
                (55232, 11),
            ];
            let got: Vec<(u32, u32)> = distinct.iter().map(|r| (r.offset, r.location)).collect();
            assert_eq!(got, want, "{fx}");
        }
        assert_eq!((g.blob_relocs.len(), g.work_relocs.len()), (nb, nw), "{fx}");
        // every record uses implementation 0x80000000 or 4 and pre-op none (§4.2)
        assert!(g.stages.iter().all(|s| s.pre_op == StageOp::None), "{fx}");
        // the writer reproduces the file exactly
        assert!(g.to_bytes() == bytes, "{fx}: re-encoding differs");
    }
}

#[test]
fn matpalm_conv1_valid_decodes_as_the_walkthrough_says() {
    let Some((_, g)) = load("matpalm-conv1-valid") else {
        return;
    };
    assert_eq!(g.stage_section_size, 528);
    let d = |dims: [u32; 3], strides: [u32; 3], offset, location, order| Descriptor {
        dims: Xyz::new(dims[0], dims[1], dims[2]),
        strides: Xyz::new(strides[0], strides[1], strides[2]),
        offset,
        location,
        data_type: 0,
        order,
    };
    let conv = &g.stages[0];
    assert_eq!(conv.op, StageOp::Convolution);
    assert_eq!(conv.implementation, 0x8000_0000);
    assert_eq!(conv.params, [3, 3, 2, 2, 0, 0, 1, 1]);
    assert_eq!(
        conv.operands,
        [
            d([64, 64, 3], [6, 384, 2], 0, 1, 0),
            d([31, 31, 1], [2, 62, 2], 0, 4, 0),
            d([9, 3, 1], [6, 2, 2], 0, 3, 3),
            d([0, 0, 0], [0, 0, 0], 1, 3, 1),
        ]
    );
    assert_eq!(
        (conv.post_op, conv.post_payload),
        (StageOp::Relu, Some([0, 0, 0]))
    );
    let fc = &g.stages[1];
    assert_eq!(
        (fc.op, fc.post_op, fc.encoded_len()),
        (StageOp::FullyConnected, StageOp::Bias, 180)
    );
    assert_eq!(fc.operands[0], d([1, 1, 961], [2, 1922, 2], 1, 4, 0));
    assert_eq!(fc.operands[2], d([1, 961, 1], [1922, 2, 2], 2, 3, 3));
    let sig = &g.stages[2];
    assert_eq!((sig.op, sig.encoded_len()), (StageOp::Sigmoid, 100));
    assert_eq!(sig.operands[1], d([1, 1, 1], [2, 2, 2], 0, 2, 0));
    let r = |offset, location| Reloc { offset, location };
    assert_eq!(g.blob_relocs, [r(0, 3), r(448, 3), r(576, 3), r(16000, 3)]);
    assert_eq!(g.work_relocs, [r(0, 4), r(0, 4), r(2240, 5), r(2240, 5)]);
    // buffer data: conv bias fp16 0x218e at 448, unreferenced opParams int32 1 at 512,
    // FC taps 961 values then 7·961 zero fp16 (the ×8 padding), FC bias 0x14a5 at 16000
    assert_eq!(g.data.len(), 16_064);
    assert_eq!(&g.data[448..450], &[0x8e, 0x21]);
    assert_eq!(&g.data[512..516], &1i32.to_le_bytes());
    assert!(g.data[576 + 2 * 961..576 + 2 * 8 * 961]
        .iter()
        .all(|&b| b == 0));
    assert_eq!(&g.data[16000..16002], &[0xa5, 0x14]);
}

#[test]
fn squeezenet_records_match_the_highlights() {
    let Some((_, g)) = load("squeezenet-v10-caffe") else {
        return;
    };
    assert_eq!(g.stage_section_size, 6480);
    let s0 = &g.stages[0];
    assert_eq!((s0.op, s0.encoded_len()), (StageOp::None, 20));
    let conv1 = &g.stages[1];
    assert_eq!(conv1.params, [7, 7, 2, 2, 0, 0, 2, 1]);
    assert_eq!(conv1.operands[0].strides, Xyz::new(6, 1362, 2));
    assert_eq!(conv1.operands[2].dims, Xyz::new(49, 3, 96));
    assert_eq!(g.blob_relocs[1].offset, 28_224);
    // fire2: both expands write work buffer 7 at +0 and +128, the next squeeze reads it
    let fire2: Vec<(u32, u32)> = g
        .work_relocs
        .iter()
        .filter(|r| r.location == 7)
        .map(|r| (r.offset, r.location))
        .collect();
    assert_eq!(fire2, [(3_179_456, 7), (3_179_584, 7), (3_179_456, 7)]);
    let avg = g
        .stages
        .iter()
        .find(|s| s.op == StageOp::AveragePooling)
        .unwrap();
    assert_eq!(avg.params, [13, 13, 1, 1, 0, 0, 2]);
    let sm = g.stages.last().unwrap();
    assert_eq!((sm.op, sm.params.as_slice()), (StageOp::SoftMax, &[1][..]));
    assert_eq!(sm.operands[1].location, 2);
}

#[test]
fn blob_2_3_mnist_converts_to_the_real_2_4_file_byte_for_byte() {
    let (Some((b23, g23)), Some((b24, g24))) =
        (load("hsinm-mnist-blob23"), load("hsinm-mnist-blob24"))
    else {
        return;
    };
    // §13.3: same records, data and tables
    assert_eq!(g23.stages, g24.stages);
    assert_eq!(g23.data, g24.data);
    assert_eq!(g24.header.patch, 0);
    assert_eq!(g24.header.reserved_60, 4);
    let converted = g23.with_version(BlobVersion::V2_4).to_bytes();
    assert_eq!(converted.len(), 90_404);
    assert!(converted == b24, "2.3 → 2.4 differs from the real 2.4 file");
    // and back
    assert!(g24.with_version(BlobVersion::V2_3).to_bytes() == b23);
}

#[test]
fn inspect_detects_both_generations_and_reports_sections_stages_and_relocations() {
    for (fx, file) in REAL_V2 {
        let Some(p) = real_v2(fx, file) else { return };
        let r = inspect_any(&p).unwrap_or_else(|e| panic!("{fx}: {e}"));
        let AnyReport::V2(v) = &r else {
            panic!("{fx} detected as NCSDK 1")
        };
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["ncsdk"], 2, "{fx}");
        assert_eq!(j["header"]["version"], v.header.version.to_string(), "{fx}");
        assert_eq!(j["stages"].as_array().unwrap().len(), v.stage_count, "{fx}");
        assert_eq!(j["sections"].as_array().unwrap().len(), 6, "{fx}");
        let text = r.to_string();
        for needle in [
            "stage section",
            "relocation section",
            "blob relocations",
            "work relocations",
        ] {
            assert!(text.contains(needle), "{fx}: {needle}");
        }
        // sections tile the file
        let end = v.sections.iter().map(|s| s.offset + s.size).max().unwrap();
        assert_eq!(end, v.header.file_size as u64, "{fx}");
    }
    let Some((_, g)) = load("matpalm-conv1-valid") else {
        return;
    };
    let r = crate::ncs::v2::V2Report::from_graph(&g, "x");
    assert_eq!(
        r.buffers.iter().map(|b| b.offset).collect::<Vec<_>>(),
        [0, 448, 576, 16000]
    );
    assert_eq!(r.work_arena_bytes, 2240 + 2);
    for (fx, file) in crate::ncs::tests::REAL_GRAPHS {
        let Some(p) = crate::ncs::tests::real_graph(fx, file) else {
            return;
        };
        let r = inspect_any(&p).unwrap();
        assert!(matches!(r, AnyReport::V1(_)), "{fx}");
        assert_eq!(serde_json::to_value(&r).unwrap()["ncsdk"], 1, "{fx}");
    }
}

/// All six real v2 files lift to the IR (matpalm-conv8's SAME padding puts one pixel at
/// the end, matpalm-conv-deconv has deconvolutions) with the file's input size.
#[test]
fn every_real_v2_graph_lifts_with_the_files_input_size() {
    for (fx, elements) in [
        ("matpalm-conv1-valid", 12_288),
        ("matpalm-conv8", 12_288),
        ("matpalm-conv-deconv", 786_432),
        ("squeezenet-v10-caffe", 154_587),
        ("hsinm-mnist-blob23", 784),
        ("hsinm-mnist-blob24", 784),
    ] {
        let file = REAL_V2.iter().find(|f| f.0 == fx).unwrap().1;
        let Some(p) = real_v2(fx, file) else { return };
        let net = crate::ncs::read_net(&p).unwrap_or_else(|e| panic!("{fx}: {e}"));
        assert_eq!(
            net.inputs[0].shape.iter().product::<usize>(),
            elements,
            "{fx}"
        );
    }
}
