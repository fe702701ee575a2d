//! Bad NCSDK 2 input: wrong magic, unknown blob versions, relocations outside their
//! section or target, section offsets past the end, broken stage chains — each a typed
//! error naming the field and offset (and, through `read`, the file), never a panic.

use super::real_v2;
use crate::ncs::error::FormatError;
use crate::ncs::v2::{GraphV2, V2FormatError};
use crate::ncs::{parse_any, read_any, NcsError};

fn conv1() -> Option<Vec<u8>> {
    Some(std::fs::read(real_v2("matpalm-conv1-valid", "graph.mv")?).unwrap())
}

fn put(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn wrong_magic_is_rejected_by_both_readers() {
    let Some(mut b) = conv1() else { return };
    put(&mut b, 34, 0x2205);
    assert_eq!(
        GraphV2::parse(&b).unwrap_err(),
        V2FormatError::BadMagic { found: 0x2205 }
    );
    // neither a v1 header nor a v2 magic
    assert_eq!(parse_any(&b).unwrap_err(), FormatError::UnknownContainer);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.graph");
    std::fs::write(&p, &b).unwrap();
    let e = read_any(&p).unwrap_err().to_string();
    assert!(e.contains("bad.graph") && e.contains("0x2204"), "{e}");
}

#[test]
fn unknown_blob_versions_are_named() {
    let Some(b) = conv1() else { return };
    for (off, v) in [(46, 5u32), (42, 3)] {
        let mut b = b.clone();
        put(&mut b, off, v);
        let e = GraphV2::parse(&b).unwrap_err();
        assert!(
            matches!(e, V2FormatError::UnknownVersion { offset: 42, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("2.3"), "{e}");
    }
}

#[test]
fn section_offsets_past_the_end_are_rejected() {
    let Some(b) = conv1() else { return };
    for (off, name) in [
        (54, "stage_section"),
        (58, "buffer_section"),
        (62, "relocation"),
    ] {
        let mut b = b.clone();
        put(&mut b, off, 20_000);
        match GraphV2::parse(&b).unwrap_err() {
            V2FormatError::SectionOutOfFile {
                section,
                offset,
                value,
                ..
            } => {
                assert_eq!((section, offset, value), (name, off as u64, 20_000))
            }
            e => panic!("{name}: {e}"),
        }
    }
    let mut t = b.clone();
    t.truncate(16_000);
    assert!(matches!(
        GraphV2::parse(&t).unwrap_err(),
        V2FormatError::SizeMismatch {
            header: 16_772,
            actual: 16_000,
            ..
        }
    ));
    assert!(matches!(
        GraphV2::parse(&b[..50]).unwrap_err(),
        V2FormatError::TooShort { .. }
    ));
}

#[test]
fn relocations_outside_their_section_or_target_are_rejected() {
    let Some(b) = conv1() else { return };
    let reloc = 16_688;
    // the blob table claimed beyond the relocation section
    let mut x = b.clone();
    put(&mut x, reloc + 8, 4096);
    let e = GraphV2::parse(&x).unwrap_err();
    assert!(
        matches!(
            e,
            V2FormatError::BadRelocationSection {
                field: "blob_buffer_reloc_offset",
                ..
            }
        ),
        "{e}"
    );
    // a blob entry pointing past the buffer data
    let mut x = b.clone();
    put(&mut x, reloc + 20 + 8 * 3, 70_000);
    match GraphV2::parse(&x).unwrap_err() {
        V2FormatError::BadRelocation {
            table,
            entry,
            offset,
            ..
        } => {
            assert_eq!(
                (table, entry, offset),
                ("blob", 3, (reloc + 20 + 24) as u64)
            )
        }
        e => panic!("{e}"),
    }
    // a blob entry whose buffer runs past the data (FC taps moved near the end)
    let mut x = b.clone();
    put(&mut x, reloc + 20 + 8 * 2, 16_000);
    let e = GraphV2::parse(&x).unwrap_err();
    assert!(
        matches!(
            e,
            V2FormatError::BadDescriptor {
                index: 1,
                slot: "taps",
                ..
            }
        ),
        "{e}"
    );
    // a work entry with a blob location
    let mut x = b.clone();
    put(&mut x, reloc + 20 + 32 + 4, 3);
    assert!(matches!(
        GraphV2::parse(&x).unwrap_err(),
        V2FormatError::BadRelocation {
            table: "work",
            entry: 0,
            ..
        }
    ));
    // a descriptor index past the table: conv taps (record at 92, taps descriptor at 216)
    let mut x = b.clone();
    put(&mut x, 216 + 24, 9);
    let e = GraphV2::parse(&x).unwrap_err();
    assert!(
        matches!(
            e,
            V2FormatError::BadDescriptor {
                index: 0,
                slot: "taps",
                offset: 216,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn broken_stage_chains_and_codes_are_rejected() {
    let Some(b) = conv1() else { return };
    let mut x = b.clone();
    put(&mut x, 92, 200); // conv's next_stage
    let e = GraphV2::parse(&x).unwrap_err();
    assert!(
        matches!(
            e,
            V2FormatError::BadRecord {
                index: 0,
                offset: 92,
                ..
            }
        ),
        "{e}"
    );
    let mut x = b.clone();
    put(&mut x, 96, 99); // stage type
    assert_eq!(
        GraphV2::parse(&x).unwrap_err(),
        V2FormatError::UnknownStageType {
            index: 0,
            offset: 92,
            code: 99
        }
    );
    let mut x = b.clone();
    put(&mut x, 80, 1000); // stage count
    assert!(matches!(
        GraphV2::parse(&x).unwrap_err(),
        V2FormatError::BadField {
            field: "stage_count",
            ..
        }
    ));
    let mut x = b.clone();
    put(&mut x, 612, 41); // buffer-section filler
    assert!(matches!(
        GraphV2::parse(&x).unwrap_err(),
        V2FormatError::BadField {
            offset: 612,
            found: 41,
            ..
        }
    ));
    let mut x = b.clone();
    x[2] = 7; // ELF-like prefix
    assert!(matches!(
        GraphV2::parse(&x).unwrap_err(),
        V2FormatError::BadPrefix { offset: 2, .. }
    ));
    // through the file reader the file is named
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("chain.graph");
    std::fs::write(&p, {
        let mut x = b.clone();
        put(&mut x, 96, 99);
        x
    })
    .unwrap();
    let e = read_any(&p).unwrap_err();
    assert!(matches!(e, NcsError::Format { .. }));
    let s = e.to_string();
    assert!(
        s.contains("chain.graph") && s.contains("stage type 99"),
        "{s}"
    );
}

/// Thousands of seeded single-word and single-byte corruptions of three real files: reading,
/// lifting to the IR and re-encoding must return errors, never panic.
#[test]
fn corrupted_real_files_never_panic() {
    let files = [
        (real_v2("matpalm-conv1-valid", "graph.mv"), 5000, 1800),
        (real_v2("hsinm-mnist-blob24", "graph"), 5000, 1800),
        // concat buffers, 32 records
        (real_v2("squeezenet-v10-caffe", "graph"), 600, 6600),
    ];
    let mut state = 0x2204_u64;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        state >> 33
    };
    for (f, cases, head) in files {
        let Some(p) = f else { return };
        let b = std::fs::read(p).unwrap();
        // the header, stage section and relocation section hold all the structure
        let hot: Vec<usize> = (0..b.len().min(head))
            .chain(b.len().saturating_sub(1000)..b.len())
            .collect();
        for _ in 0..cases {
            let mut x = b.clone();
            let at = hot[next() as usize % hot.len()];
            match next() % 3 {
                0 => x[at] ^= 1 << (next() % 8),
                1 => {
                    let w =
                        [0u32, 1, 2, 3, 4, 0xffff_ffff, 0x8000_0000, 65_536][next() as usize % 8];
                    let at = at.min(x.len() - 4);
                    x[at..at + 4].copy_from_slice(&w.to_le_bytes());
                }
                _ => x.truncate(at),
            }
            if let Ok(crate::ncs::AnyGraph::V2(g)) = parse_any(&x) {
                let _ = g.to_bytes();
                if let Ok(v1) = crate::ncs::v2::to_v1_view(&g) {
                    let _ = crate::ncs::graph_to_net(&v1);
                }
            }
        }
    }
}
