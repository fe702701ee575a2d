//! `inspect_graph` on real files: JSON fields and table rows against REAL_GRAPHS.md §5.

use super::real_graph;
use crate::ncs::inspect_graph;

#[test]
fn emotion_report_has_header_and_stage_facts_in_json_and_table() {
    let Some(path) = real_graph("simcam-emotion", "graph") else {
        return;
    };
    let r = inspect_graph(&path).unwrap();
    let j = r.to_json();
    assert_eq!(j["file_size"], 124_760);
    assert_eq!(j["version"], 2);
    assert_eq!(j["name"], "");
    assert_eq!(j["stage_count"], 35);
    assert_eq!(j["buffer_start"], 0x2018);
    assert_eq!(j["last_shave"], 0);
    assert_eq!(j["data_section_bytes"], 116_544);
    // predictions is 1x1x2 with output stride 4: the host reads 1·1·4/2 = 2 values
    assert_eq!(j["output_values"], 2);
    // the highest work reference is dense_1's output 1226640@36, 1x1x2 → 4 bytes
    assert_eq!(j["work_arena_bytes"], 1_226_644);
    let stages = j["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 35);
    let add = &stages[9];
    assert_eq!(add["name"], "add_1");
    assert_eq!(add["op"], "eltwise_sum");
    assert_eq!(add["op_code"], 12);
    assert_eq!(add["input"], serde_json::json!([30, 30, 16]));
    assert_eq!(add["buffers"]["data"]["pointer"], 559_552);
    assert_eq!(add["buffers"]["data"]["location"], 10);
    assert_eq!(add["buffers"]["taps"]["pointer"], 592_320);
    assert_eq!(add["buffers"]["taps"]["kind"], "work");
    assert_eq!(add["buffers"]["bias"], serde_json::Value::Null);
    let pool = &stages[22];
    assert_eq!(pool["name"], "max_pooling2d_3");
    assert_eq!(pool["kernel"], serde_json::json!([3, 3]));
    assert_eq!(pool["stride"], serde_json::json!([2, 2]));
    assert_eq!(pool["pad"], serde_json::json!([1, 1]));
    assert_eq!(pool["pad_style"], "caffe");
    assert_eq!(pool["output"], serde_json::json!([8, 8, 64]));
    assert_eq!(stages[1]["post_op"], "relu");
    assert_eq!(stages[4]["post_op"], "bias");
    assert_eq!(stages[34]["buffers"]["output"]["kind"], "output");
    assert_eq!(stages[34]["buffers"]["op_params"]["pointer"], 93_952);
    assert_eq!(stages[34]["pad_style"], "none");

    let table = r.to_string();
    assert!(table.contains("stages        35 (data section at 8216, 116544 bytes)"));
    let row = table
        .lines()
        .find(|l| l.starts_with("33 "))
        .expect("row 33");
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells,
        [
            "33",
            "dense_1",
            "fully_connected_layer",
            "1x1",
            "1x1",
            "0x0",
            "1x1x8",
            "1x1x2",
            "bias",
            "1226496@35",
            "93824@3",
            "93888@3",
            "-",
            "1226640@36"
        ]
    );
}

#[test]
fn inspect_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("nothing.graph");
    let e = inspect_graph(&p).unwrap_err().to_string();
    assert!(e.contains("nothing.graph"), "{e}");
}
