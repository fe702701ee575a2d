//! Resource bounds (issue 8): a file that claims huge sizes is refused with a clear error
//! before anything of that size is allocated. Each test builds the hostile file from a real
//! or generated seed, feeds the reader, and checks the error and the largest single
//! allocation made meanwhile (a wrapper around the system allocator records it).

mod common;
use agegender::caffe::caffemodel::decode_caffemodel;
use agegender::caffe::load_caffemodel_net_with_input;
use agegender::caffe::load_net;
use agegender::caffe::prototxt::{parse_text, read_prototxt};
use agegender::io::datum::{datum_to_tensor, decode_datum, encode_datum};
use agegender::ir::Phase;
use agegender::ncs::header::{HEADER_LEN, OFFSET_STAGE_COUNT};
use agegender::ncs::stage::STAGE_RECORD_LEN;
use agegender::ncs::Graph;
use agegender::onnx::pb::{tensor_shape_proto::dimension, type_proto, ModelProto};
use agegender::onnx::{export, import_model, ImportOptions};
use agegender::proto::caffe::{
    BlobProto, BlobShape, Datum, InnerProductParameter, LayerParameter, NetParameter,
};
use agegender::testutil::shared;
use common::peak_alloc::{peak, reset_peak, PeakAlloc};
use prost::Message;
use std::path::{Path, PathBuf};

/// No reader may allocate more than this for one hostile file: every seed here is under
/// 200 KB, so a bigger allocation means a claimed size was trusted.
const ALLOC_BOUND: usize = 64 << 20;

#[global_allocator]
static GLOBAL: PeakAlloc = PeakAlloc;

/// Runs `f`, asserting it stays under [`ALLOC_BOUND`] for any single allocation, and
/// returns its result.
fn bounded<T>(what: &str, f: impl FnOnce() -> T) -> T {
    reset_peak();
    let out = f();
    let largest = peak();
    assert!(
        largest <= ALLOC_BOUND,
        "{what}: one allocation of {largest} bytes (bound {ALLOC_BOUND})"
    );
    out
}

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A caffemodel with an InnerProduct layer whose weight blob claims 10⁹ × 10⁹ values but
/// stores four: the count check refuses it, naming the layer and the shape.
#[test]
fn caffemodel_blob_of_1e9_by_1e9_is_refused() {
    let huge = 1_000_000_000i64;
    let model = NetParameter {
        name: Some("hostile".into()),
        layer: vec![
            LayerParameter {
                name: Some("data".into()),
                r#type: Some("Input".into()),
                top: vec!["data".into()],
                ..Default::default()
            },
            LayerParameter {
                name: Some("fc_huge".into()),
                r#type: Some("InnerProduct".into()),
                bottom: vec!["data".into()],
                top: vec!["fc".into()],
                inner_product_param: Some(InnerProductParameter {
                    num_output: Some(huge as u32),
                    bias_term: Some(false),
                    ..Default::default()
                }),
                blobs: vec![BlobProto {
                    shape: Some(BlobShape {
                        dim: vec![huge, huge],
                    }),
                    data: vec![1.0, 2.0, 3.0, 4.0],
                    ..Default::default()
                }],
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let bytes = model.encode_to_vec();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hostile.caffemodel");
    std::fs::write(&path, &bytes).unwrap();

    // The wire decode alone succeeds (the claim is only numbers)…
    bounded("decode", || decode_caffemodel(&bytes, &path)).unwrap();
    // …and building the net refuses the blob before allocating it.
    let err = bounded("load", || {
        load_caffemodel_net_with_input(&path, Some(&[1, 3, 4, 4]))
    })
    .expect_err("a 10^9 x 10^9 blob holding 4 values must be refused");
    let msg = format!("{err:#}");
    eprintln!("caffemodel 1e9 x 1e9: {msg}");
    assert!(msg.contains("fc_huge"), "the error names the layer: {msg}");
    assert!(
        msg.contains("1000000000"),
        "the error shows the claimed shape: {msg}"
    );
}

/// A prototxt whose InnerProduct claims 10⁹ outputs on a 10⁹-value input: shape inference
/// and weight filling must refuse the 10¹⁸-value weight instead of allocating it.
#[test]
fn prototxt_layer_claiming_a_1e18_weight_is_refused() {
    let text = r#"
name: "hostile"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 1 dim: 1000 dim: 1000 dim: 1000 } } }
layer { name: "fc_huge" type: "InnerProduct" bottom: "data" top: "fc"
        inner_product_param { num_output: 1000000000
                              weight_filler { type: "gaussian" std: 0.01 } } }
"#;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hostile.prototxt");
    std::fs::write(&path, text).unwrap();
    let result = bounded("load_net", || load_net(&path, None, Phase::Test));
    match result {
        Err(e) => eprintln!("prototxt 1e18 weight: refused at load: {e:#}"),
        Ok(mut net) => {
            let err = bounded("fill", || {
                agegender::caffe::fill_missing_weights(&mut net, 1)
            })
            .expect_err("filling a 10^18-value weight must be refused");
            let msg = format!("{err:#}");
            eprintln!("prototxt 1e18 weight: refused at fill: {msg}");
            assert!(msg.contains("fc_huge"), "the error names the layer: {msg}");
        }
    }
}

fn ncs_seed() -> Option<Vec<u8>> {
    let p = shared("fixtures-real/ncs/watanabe-cnn-bn/graph")?;
    let bytes = std::fs::read(p).unwrap();
    Graph::parse(&bytes).expect("the unmodified graph parses");
    Some(bytes)
}

/// A real graph whose stage count is patched to 65,535: the stage table would end far past
/// the file, which the decoder checks before reading any record.
#[test]
fn ncs_graph_with_65535_stages_is_refused() {
    let Some(mut bytes) = ncs_seed() else { return };
    bytes[OFFSET_STAGE_COUNT..OFFSET_STAGE_COUNT + 4].copy_from_slice(&65_535u32.to_le_bytes());
    let err = bounded("parse", || Graph::parse(&bytes))
        .expect_err("65,535 stages cannot fit in a 98 KB file");
    let msg = err.to_string();
    eprintln!("ncs 65535 stages: {msg}");
    assert!(msg.contains("65535"), "the error shows the count: {msg}");
}

/// A real graph with a data-section buffer pointer moved past the end of the file.
#[test]
fn ncs_graph_with_a_buffer_pointer_past_the_end_is_refused() {
    let Some(mut bytes) = ncs_seed() else { return };
    let stages = u32::from_le_bytes(
        bytes[OFFSET_STAGE_COUNT..OFFSET_STAGE_COUNT + 4]
            .try_into()
            .unwrap(),
    ) as usize;
    // Slot offsets inside a stage record: data, taps, bias, opParams, output; each is a
    // u32 pointer then a u16 location (3 = data section).
    let slot = (0..stages)
        .flat_map(|k| [187, 193, 199, 205].map(|s| HEADER_LEN + k * STAGE_RECORD_LEN + s))
        .find(|&at| u16::from_le_bytes([bytes[at + 4], bytes[at + 5]]) == 3)
        .expect("some stage reads the data section");
    bytes[slot..slot + 4].copy_from_slice(&0xFFFF_FF00u32.to_le_bytes());
    let err = bounded("parse", || Graph::parse(&bytes))
        .expect_err("a pointer past the end must be refused");
    let msg = err.to_string();
    eprintln!("ncs pointer past end: {msg}");
    assert!(
        msg.contains(&0xFFFF_FF00u32.to_string()) || msg.contains("ffffff00"),
        "the error shows the pointer: {msg}"
    );
}

fn levi_tiny_onnx() -> ModelProto {
    let net = load_net(
        &repo_file("fixtures/models/levi_tiny.prototxt"),
        Some(&repo_file("fixtures/models/levi_tiny.caffemodel")),
        Phase::Test,
    )
    .unwrap();
    export(&net).unwrap()
}

/// An ONNX initializer with a dim of 2⁶², and a graph input with a dim of 2⁶²: both are
/// refused against the element limit before any tensor is built.
#[test]
fn onnx_dim_of_2_pow_62_is_refused() {
    let opts = ImportOptions::default();
    let big = 1i64 << 62;

    let mut model = levi_tiny_onnx();
    let graph = model.graph.as_mut().unwrap();
    let init_name = graph.initializer[0].name.clone();
    graph.initializer[0].dims[0] = big;
    let bytes = model.encode_to_vec();
    let decoded = bounded("decode", || ModelProto::decode(bytes.as_slice())).unwrap();
    let err = bounded("import", || import_model(&decoded, None, &opts))
        .expect_err("an initializer dim of 2^62 must be refused");
    let msg = err.to_string();
    eprintln!("onnx initializer dim 2^62: {msg}");
    assert!(msg.contains(&init_name), "names the tensor: {msg}");
    assert!(msg.contains(&big.to_string()), "shows the dim: {msg}");

    let mut model = levi_tiny_onnx();
    model.metadata_props.clear(); // use the graph's own declaration of the input shape
    let graph = model.graph.as_mut().unwrap();
    let input = &mut graph.input[0];
    let Some(type_proto::Value::TensorType(t)) =
        input.r#type.as_mut().and_then(|t| t.value.as_mut())
    else {
        panic!("the exported input is a tensor");
    };
    let dims = &mut t.shape.as_mut().unwrap().dim;
    dims[0].value = Some(dimension::Value::DimValue(1));
    dims[1].value = Some(dimension::Value::DimValue(big));
    let err = bounded("import input", || import_model(&model, None, &opts))
        .expect_err("an input dim of 2^62 must be refused");
    let msg = err.to_string();
    eprintln!("onnx input dim 2^62: {msg}");
    assert!(msg.contains(&big.to_string()), "shows the dim: {msg}");
}

/// A Datum claiming 100,000 × 100,000 pixels with 12 bytes of data.
#[test]
fn datum_claiming_100k_by_100k_pixels_is_refused() {
    let bytes = encode_datum(&Datum {
        channels: Some(3),
        height: Some(100_000),
        width: Some(100_000),
        data: Some(vec![7; 12]),
        label: Some(1),
        encoded: Some(false),
        ..Default::default()
    });
    let err = bounded("decode", || decode_datum(&bytes))
        .expect_err("100k x 100k pixels in 12 bytes must be refused");
    let msg = err.to_string();
    eprintln!("datum 100k x 100k: {msg}");
    assert!(
        msg.contains("30000000000"),
        "shows the claimed count: {msg}"
    );
    // The record decoded leniently (prost alone) is refused again when its pixels are taken.
    let raw = Datum::decode(bytes.as_slice()).unwrap();
    bounded("to_tensor", || datum_to_tensor(&raw)).expect_err("pixels are refused too");
}

/// A prototxt nested 10⁵ levels deep: a typed syntax error, not a stack overflow. Run on a
/// thread with a 2 MiB stack (Rust's default test stack) so that unbounded recursion would
/// crash this test.
#[test]
fn prototxt_nested_1e5_deep_is_refused() {
    let depth = 100_000;
    let mut text = String::with_capacity(depth * 10);
    for _ in 0..depth {
        text.push_str("layer {\n");
    }
    for _ in 0..depth {
        text.push_str("}\n");
    }
    let handle = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let path = Path::new("nested.prototxt");
            parse_text::<NetParameter>(&text, path)
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .unwrap();
    let result = handle.join().expect("the parser must not panic");
    let msg = result.expect_err("10^5 nested messages must be refused");
    eprintln!("prototxt nested 1e5: {msg}");
    assert!(msg.contains("nested.prototxt:"), "names the file: {msg}");

    // The same through the file reader, with a nesting of a field Caffe allows to nest
    // (`layer { include { ... } }` is legal; anything deeper is not in caffe.proto).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deep.prototxt");
    let deep = "layer { include { ".repeat(depth / 2) + &"} } ".repeat(depth / 2);
    std::fs::write(&path, deep).unwrap();
    let handle = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || read_prototxt(&path).map(|_| ()).map_err(|e| e.to_string()))
        .unwrap();
    let msg = handle
        .join()
        .expect("the parser must not panic")
        .expect_err("deep nesting must be refused");
    eprintln!("prototxt nested layer/include: {msg}");

    // Binary nesting: 10^5 nested groups in an unknown field of a caffemodel. prost skips
    // unknown groups recursively under its recursion limit (100), so this is a decode error.
    let tag = |wire: u8| {
        let mut v = Vec::new();
        let mut t = (200u32 << 3) | u32::from(wire);
        while t >= 0x80 {
            v.push((t as u8) | 0x80);
            t >>= 7;
        }
        v.push(t as u8);
        v
    };
    let mut bytes = tag(3).repeat(depth);
    bytes.extend(tag(4).repeat(depth));
    let handle = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            decode_caffemodel(&bytes, Path::new("nested.caffemodel"))
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .unwrap();
    let msg = handle
        .join()
        .expect("the decoder must not panic")
        .expect_err("10^5 nested groups must be refused");
    eprintln!("caffemodel nested 1e5 groups: {msg}");
    assert!(msg.contains("nested.caffemodel"), "names the file: {msg}");
}
