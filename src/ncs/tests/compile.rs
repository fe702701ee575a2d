//! Compiler tests against real mvNCCompile output.

use super::{caffe_min, real_graph};
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
    let net = caffe_min::load(&proto, Some(&weights));
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
    let net = caffe_min::load(&proto, Some(&weights));
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
