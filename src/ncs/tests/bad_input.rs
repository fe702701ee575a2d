//! Bad-input tests: every validation rule of the reader gives a typed error naming the
//! file and the stage or offset, never a panic.

use super::tiny_graph;
use crate::ncs::{FormatError, Graph, NcsError};
use crate::testutil::shared;

/// Offset of stage `i`'s record.
fn stage_at(i: usize) -> usize {
    264 + 227 * i
}

fn write_tmp(bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("broken.graph");
    std::fs::write(&p, bytes).unwrap();
    (dir, p)
}

#[test]
fn the_hand_built_graph_is_valid_and_round_trips() {
    let g = tiny_graph();
    let bytes = g.to_bytes();
    assert_eq!(bytes.len(), 720 + 128);
    assert_eq!(Graph::parse(&bytes).unwrap(), g);
}

#[test]
fn wrong_version_byte_is_rejected_and_named() {
    let mut b = tiny_graph().to_bytes();
    b[36] = 3;
    assert!(matches!(
        Graph::parse(&b),
        Err(FormatError::BadVersion { found: 3, .. })
    ));
    let (_d, p) = write_tmp(&b);
    let e = Graph::read(&p).unwrap_err().to_string();
    assert!(e.contains("broken.graph") && e.contains("offset 36"), "{e}");
}

#[test]
fn an_ncsdk2_graph_is_recognised_as_such() {
    let Some(p) = shared("fixtures-real/ncs-v2/matpalm-conv1-valid/graph.mv") else {
        return;
    };
    let e = Graph::read(&p).unwrap_err();
    assert!(
        matches!(
            &e,
            NcsError::Format {
                source: FormatError::BadVersion { .. },
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("NCSDK 2"), "{e}");
}

#[test]
fn truncated_files_are_rejected_before_any_stage_is_read() {
    let b = tiny_graph().to_bytes();
    for cut in [b.len() - 1, 600, 491] {
        let e = Graph::parse(&b[..cut]).unwrap_err();
        assert!(
            matches!(e, FormatError::SizeMismatch { header: 848, .. }),
            "cut {cut}: {e}"
        );
    }
    for cut in [0, 36, 263, 490] {
        let e = Graph::parse(&b[..cut]).unwrap_err();
        assert!(matches!(e, FormatError::TooShort { .. }), "cut {cut}: {e}");
    }
    let (_d, p) = write_tmp(&b[..700]);
    let e = Graph::read(&p).unwrap_err().to_string();
    assert!(e.contains("broken.graph") && e.contains("truncated"), "{e}");
}

#[test]
fn a_stage_count_beyond_the_file_is_rejected_without_allocating() {
    let mut b = tiny_graph().to_bytes();
    for count in [4u32, 1_000_000, u32::MAX] {
        b[240..244].copy_from_slice(&count.to_le_bytes());
        let e = Graph::parse(&b).unwrap_err();
        assert!(
            matches!(e, FormatError::StagesBeyondFile { len: 848, .. }),
            "{count}: {e}"
        );
    }
    b[240..244].copy_from_slice(&0u32.to_le_bytes());
    assert_eq!(Graph::parse(&b).unwrap_err(), FormatError::NoStages);
}

#[test]
fn a_wrong_buffer_start_is_rejected() {
    let mut b = tiny_graph().to_bytes();
    b[244..248].copy_from_slice(&718u32.to_le_bytes());
    let e = Graph::parse(&b).unwrap_err();
    assert_eq!(
        e,
        FormatError::BadBufferStart {
            found: 718,
            count: 2,
            expected: 720
        }
    );
}

#[test]
fn data_section_pointers_out_of_range_name_the_stage_and_slot() {
    let base = stage_at(1);
    // bias pointer (offset 199) past the end of the 128-byte section
    let mut b = tiny_graph().to_bytes();
    b[base + 199..base + 203].copy_from_slice(&128u32.to_le_bytes());
    let e = Graph::parse(&b).unwrap_err();
    assert!(
        matches!(
            &e,
            FormatError::BufferOutOfRange {
                index: 1,
                slot: "bias",
                pointer: 128,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("'fc'"), "{e}");
    // taps pointer leaving only 100 bytes for 24 needed is fine; 120 leaves 8 < 24
    let mut b = tiny_graph().to_bytes();
    b[base + 193..base + 197].copy_from_slice(&120u32.to_le_bytes());
    let e = Graph::parse(&b).unwrap_err();
    assert!(
        matches!(
            e,
            FormatError::BufferOutOfRange {
                slot: "taps",
                needed: 24,
                available: 8,
                ..
            }
        ),
        "{e}"
    );
    // a huge claimed tap count cannot overflow the check
    let mut b = tiny_graph().to_bytes();
    b[base + 128..base + 132].copy_from_slice(&u32::MAX.to_le_bytes());
    b[base + 132..base + 136].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        Graph::parse(&b),
        Err(FormatError::BufferOutOfRange { slot: "taps", .. })
    ));
}

#[test]
fn unknown_op_codes_are_rejected_with_their_offset() {
    for (field_off, field) in [
        (100, "op"),
        (217, "preOp"),
        (218, "postOp"),
        (111, "padStyle"),
    ] {
        let mut b = tiny_graph().to_bytes();
        b[stage_at(1) + field_off] = 200;
        let e = Graph::parse(&b).unwrap_err();
        assert_eq!(
            e,
            FormatError::UnknownCode {
                index: 1,
                name: "fc".into(),
                field,
                code: 200,
                offset: (stage_at(1) + field_off) as u64,
            }
        );
    }
}

#[test]
fn locations_that_make_no_sense_are_rejected() {
    // output into the data section
    let mut b = tiny_graph().to_bytes();
    b[stage_at(1) + 215] = 3;
    assert!(matches!(
        Graph::parse(&b),
        Err(FormatError::BadLocation {
            slot: "output",
            location: 3,
            ..
        })
    ));
    // no input
    let mut b = tiny_graph().to_bytes();
    b[stage_at(1) + 191] = 0;
    assert!(matches!(
        Graph::parse(&b),
        Err(FormatError::BadLocation { slot: "data", .. })
    ));
    // last stage writing a work buffer instead of the network output
    let mut b = tiny_graph().to_bytes();
    b[stage_at(1) + 215] = 4;
    assert!(matches!(
        Graph::parse(&b),
        Err(FormatError::LastNotOutput { index: 1, .. })
    ));
}

#[test]
fn names_fill_exactly_100_bytes_and_bad_utf8_is_an_error() {
    let mut g = tiny_graph();
    g.stages[1].name = "n".repeat(100);
    let b = g.to_bytes();
    assert_eq!(Graph::parse(&b).unwrap().stages[1].name.len(), 100);
    // a longer name is truncated to the 100-byte field without a NUL, as the toolkit does
    g.stages[1].name = "x".repeat(130);
    let back = Graph::parse(&g.to_bytes()).unwrap();
    assert_eq!(back.stages[1].name, "x".repeat(100));
    let mut b = tiny_graph().to_bytes();
    b[stage_at(1)] = 0xff;
    assert!(matches!(
        Graph::parse(&b),
        Err(FormatError::BadName { offset, .. }) if offset == stage_at(1) as u64
    ));
}

#[test]
fn random_corruption_never_panics() {
    let good = tiny_graph().to_bytes();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..20_000 {
        let mut b = good.clone();
        for _ in 0..4 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let at = (state % b.len() as u64) as usize;
            b[at] = (state >> 32) as u8;
        }
        let _ = Graph::parse(&b);
    }
}
