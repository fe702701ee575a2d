//! Golden tests: every header and stage field of the six real graphs against the per-stage
//! dumps published in `ncs/REAL_GRAPHS.md` §5 (decoded independently of this crate), plus
//! the hand-checked values of NCS_GRAPH_FORMAT.md §10.1 and the fixtures' ORIGIN notes.

use super::{real_graph, REAL_GRAPHS};
use crate::ncs::{Graph, Location, StageOp};
use crate::testutil::shared;

/// One documented stage row, parsed from the markdown table.
#[derive(Debug)]
struct DocStage {
    cells: Vec<String>,
}

/// One documented graph: header line and stage rows.
#[derive(Debug)]
struct DocGraph {
    header: String,
    stages: Vec<DocStage>,
}

/// Extracts the `#### <fixture>/<file>` section of REAL_GRAPHS.md.
fn documented(doc: &str, fixture: &str, file: &str) -> DocGraph {
    let title = format!("#### {fixture}/{file}");
    let start = doc
        .find(&title)
        .unwrap_or_else(|| panic!("{title} not in REAL_GRAPHS.md"));
    let section = &doc[start + title.len()..];
    let end = section.find("####").unwrap_or(section.len());
    let section = &section[..end];
    let header = section
        .lines()
        .find(|l| l.starts_with("Header:"))
        .expect("header line")
        .to_string();
    let stages = section
        .lines()
        .filter(|l| l.starts_with("| ") && l[2..].starts_with(|c: char| c.is_ascii_digit()))
        .map(|l| DocStage {
            cells: l
                .trim()
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect(),
        })
        .collect();
    DocGraph { header, stages }
}

/// The value after `key=` in the header line, up to the next space (quotes kept).
fn header_field<'a>(line: &'a str, key: &str) -> &'a str {
    let pat = format!(" {key}=");
    let at = line
        .find(&pat)
        .unwrap_or_else(|| panic!("{key} missing in {line}"))
        + pat.len();
    let rest = &line[at..];
    if let Some(q) = rest.strip_prefix('\'') {
        &q[..q.find('\'').unwrap()]
    } else {
        rest.split(' ').next().unwrap()
    }
}

fn parse_num(s: &str) -> u64 {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).unwrap(),
        None => s.parse().unwrap(),
    }
}

fn split_nums(s: &str, sep: char) -> Vec<i64> {
    s.split(sep).map(|v| v.trim().parse().unwrap()).collect()
}

#[test]
fn headers_and_stage_tables_match_the_published_dumps() {
    let Some(doc_path) = shared("ncs/REAL_GRAPHS.md") else {
        return;
    };
    let doc = std::fs::read_to_string(doc_path).unwrap();
    for (fixture, file) in REAL_GRAPHS {
        let Some(path) = real_graph(fixture, file) else {
            return;
        };
        let g = Graph::read(&path).unwrap_or_else(|e| panic!("{e}"));
        let d = documented(&doc, fixture, file);
        let h = &g.header;
        let ctx = format!("{fixture}/{file}");
        assert_eq!(
            h.file_size as u64,
            parse_num(header_field(&d.header, "filesize")),
            "{ctx}"
        );
        assert_eq!(h.version, 2, "{ctx}");
        assert_eq!(h.name, header_field(&d.header, "name"), "{ctx}");
        assert_eq!(h.report_dir, "", "{ctx}");
        assert_eq!(
            h.stage_count as u64,
            parse_num(header_field(&d.header, "stages")),
            "{ctx}"
        );
        assert_eq!(
            h.buffer_start as u64,
            parse_num(header_field(&d.header, "buffer_start")),
            "{ctx}"
        );
        let shaves = header_field(&d.header, "shaves");
        assert_eq!(
            format!("{}..{}", h.first_shave, h.last_shave),
            shaves,
            "{ctx}"
        );
        assert_eq!(
            (h.leon_mem_location, h.leon_mem_size, h.dma_agent),
            (0, 0, 0)
        );
        assert_eq!(
            g.data.len() as u64,
            parse_num(header_field(&d.header, "data_section_bytes")),
            "{ctx}"
        );
        assert_eq!(g.stages.len(), d.stages.len(), "{ctx}");
        for (i, (s, row)) in g.stages.iter().zip(&d.stages).enumerate() {
            let c = &row.cells;
            let ctx = format!("{ctx} stage {i} {}", s.name);
            assert_eq!(c[0].parse::<usize>().unwrap(), i, "{ctx}");
            assert_eq!(s.name, c[1], "{ctx}");
            let op_code: u8 = c[2].split(' ').next().unwrap().parse().unwrap();
            assert_eq!(s.op.code(), op_code, "{ctx}");
            assert_eq!(
                s.opt_mask as u64,
                u64::from_str_radix(&c[3], 16).unwrap(),
                "{ctx}"
            );
            let pair = |v: [i64; 2]| format!("{}x{}", v[0], v[1]);
            assert_eq!(pair([s.radix[0] as i64, s.radix[1] as i64]), c[4], "{ctx}");
            assert_eq!(
                pair([s.stride[0] as i64, s.stride[1] as i64]),
                c[5],
                "{ctx}"
            );
            assert_eq!(pair([s.pad[0] as i64, s.pad[1] as i64]), c[6], "{ctx}");
            assert_eq!(s.pad_style as u8 as i64, c[7].parse::<i64>().unwrap());
            assert_eq!(s.input_dims.to_string(), c[8], "{ctx}");
            assert_eq!(s.taps_dims.to_string(), c[9], "{ctx}");
            assert_eq!(s.output_dims.to_string(), c[10], "{ctx}");
            let strides = |v: crate::ncs::Xyz| vec![v.x as i64, v.y as i64, v.z as i64];
            assert_eq!(strides(s.input_strides), split_nums(&c[11], ','), "{ctx}");
            assert_eq!(strides(s.output_strides), split_nums(&c[12], ','), "{ctx}");
            assert_eq!(
                vec![
                    s.datatype as i64,
                    s.precision as i64,
                    s.storage_order as i64
                ],
                split_nums(&c[13], '/'),
                "{ctx}"
            );
            for (r, cell) in [s.data, s.taps, s.bias, s.op_params, s.output]
                .iter()
                .zip(&c[14..19])
            {
                assert_eq!(&r.to_string(), cell, "{ctx}");
            }
            assert_eq!(
                vec![s.pre_op.code() as i64, s.post_op.code() as i64],
                split_nums(&c[19], '/'),
                "{ctx}"
            );
            assert_eq!(format!("{:08x}", s.post_param.swap_bytes()), c[20], "{ctx}");
            assert_eq!(s.post_stride, [0, 0], "{ctx}");
        }
    }
}

#[test]
fn re_encoding_every_real_graph_gives_identical_bytes() {
    for (fixture, file) in REAL_GRAPHS {
        let Some(path) = real_graph(fixture, file) else {
            return;
        };
        let original = std::fs::read(&path).unwrap();
        let g = Graph::parse(&original).unwrap();
        let mut sealed = g.clone();
        sealed.seal();
        assert_eq!(
            sealed.header, g.header,
            "{fixture}: seal changes the header"
        );
        assert!(
            g.to_bytes() == original,
            "{fixture}/{file}: re-encoded bytes differ"
        );
    }
}

/// NCS_GRAPH_FORMAT.md §10.1 lists every field of the Caffe-compiled `empty` graph,
/// including the taps strides that the REAL_GRAPHS table omits.
#[test]
fn beloborodov_empty_fc_matches_the_spec_byte_walkthrough() {
    let Some(path) = real_graph("beloborodov-empty-fc", "graph") else {
        return;
    };
    let g = Graph::read(&path).unwrap();
    assert_eq!(g.header.file_size, 3_613_456);
    assert_eq!(g.header.name, "empty");
    assert_eq!(g.header.stage_count, 2);
    assert_eq!(g.header.buffer_start, 720);
    assert_eq!((g.header.first_shave, g.header.last_shave), (0, 11));
    assert_eq!(g.header.shaves(), 12, "compiled with -s 12");
    let input = &g.stages[0];
    assert_eq!(input.name, "data");
    assert_eq!(input.op, StageOp::None);
    assert_eq!(input.opt_mask, 0x8000_0000);
    assert_eq!(
        (input.taps_dims.x, input.taps_dims.y, input.taps_dims.z),
        (1, 3, 3)
    );
    assert_eq!(
        (
            input.taps_strides.x,
            input.taps_strides.y,
            input.taps_strides.z
        ),
        (6, 6, 2)
    );
    assert_eq!(input.output.loc(), Location::Output);
    let fc = &g.stages[1];
    assert_eq!(fc.op, StageOp::FullyConnected);
    assert_eq!(
        (fc.input_dims.x, fc.input_dims.y, fc.input_dims.z),
        (1, 1, 448 * 448 * 3)
    );
    assert_eq!(
        (fc.taps_strides.x, fc.taps_strides.y, fc.taps_strides.z),
        (6, 6, 2)
    );
    assert_eq!(fc.post_op, StageOp::Bias);
    assert_eq!(fc.bias.pointer as usize, 448 * 448 * 3 * 3 * 2);
    // The empty caffemodel gave all-zero weights and bias (ORIGIN note).
    assert!(g.data.iter().all(|&b| b == 0));
    assert_eq!(g.host_output_len(), 3, "host reads 1·1·6/2 values");
}
