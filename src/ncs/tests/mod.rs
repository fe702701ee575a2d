//! Tests of the graph adapter against the real NCSDK v1 files in `../shared/fixtures-real/ncs`
//! and the format documentation in `../shared/ncs`.

mod bad_input;
mod compile;
mod golden;
mod inspect;
mod output_concat;
mod to_ir;

use crate::testutil::shared;
use std::path::PathBuf;

/// The six real graph files: (fixture folder, graph file name).
pub(super) const REAL_GRAPHS: [(&str, &str); 6] = [
    ("mp-conv6-fc-sigmoid", "graph.mv"),
    ("mp-conv-deconv", "graph.mv"),
    ("watanabe-cnn-bn", "graph"),
    ("beloborodov-empty-fc", "graph"),
    ("simcam-emotion", "graph"),
    ("deeppicar-noatan", "graph"),
];

/// Path of a real graph, or `None` (with a SKIP line) when ../shared is absent.
pub(super) fn real_graph(fixture: &str, file: &str) -> Option<PathBuf> {
    shared(&format!("fixtures-real/ncs/{fixture}/{file}"))
}

use crate::ncs::{
    stage::{DATATYPE_FP16, DEFAULT_OPT_MASK, STORAGE_ORDER_CAFFE},
    BufferRef, Graph, GraphHeader, PadStyle, StageOp, StageRecord, Xyz,
};

/// A stage record with the values common to every Caffe-compiled stage (§6.5).
pub(super) fn caffe_stage(name: &str, op: StageOp) -> StageRecord {
    StageRecord {
        name: name.into(),
        op,
        opt_mask: DEFAULT_OPT_MASK,
        radix: [1, 1],
        stride: [1, 1],
        pad: [0, 0],
        pad_style: PadStyle::Caffe,
        input_dims: Xyz::default(),
        taps_dims: Xyz::default(),
        output_dims: Xyz::default(),
        input_strides: Xyz::default(),
        taps_strides: Xyz::default(),
        output_strides: Xyz::default(),
        datatype: DATATYPE_FP16,
        precision: DATATYPE_FP16,
        storage_order: STORAGE_ORDER_CAFFE,
        data: BufferRef::NONE,
        taps: BufferRef::NONE,
        bias: BufferRef::NONE,
        op_params: BufferRef::NONE,
        output: BufferRef::NONE,
        pre_op: StageOp::None,
        post_op: StageOp::None,
        post_param: 0,
        post_stride: [0, 0],
    }
}

/// A hand-built two-stage graph (input 2×2×1 → FC with 3 outputs), laid out by the rules
/// of §4–§6: the smallest valid file, for mutation tests.
pub(super) fn tiny_graph() -> Graph {
    let mut input = caffe_stage("in", StageOp::None);
    input.input_dims = Xyz::new(2, 2, 1);
    input.taps_dims = Xyz::new(1, 1, 1);
    input.output_dims = Xyz::new(2, 2, 1);
    input.input_strides = Xyz::new(2, 4, 2);
    input.taps_strides = Xyz::new(2, 2, 2);
    input.output_strides = Xyz::new(2, 4, 2);
    input.data = BufferRef::new(0, 1);
    input.output = BufferRef::new(0, 2);
    let mut fc = caffe_stage("fc", StageOp::FullyConnected);
    fc.input_dims = Xyz::new(1, 1, 4);
    fc.taps_dims = Xyz::new(1, 4, 3);
    fc.output_dims = Xyz::new(1, 1, 3);
    fc.input_strides = Xyz::new(2, 4, 2);
    fc.taps_strides = Xyz::new(6, 6, 2);
    fc.output_strides = Xyz::new(6, 6, 2);
    fc.data = BufferRef::new(0, 1);
    fc.taps = BufferRef::blob(0);
    fc.bias = BufferRef::blob(64);
    fc.output = BufferRef::new(0, 2);
    fc.post_op = StageOp::Bias;
    let mut data = vec![0u8; 128];
    for (i, v) in (1..=12).enumerate() {
        data[2 * i..2 * i + 2].copy_from_slice(&half::f16::from_f32(v as f32).to_le_bytes());
    }
    let mut g = Graph {
        header: GraphHeader {
            file_size: 0,
            version: 2,
            name: "tiny".into(),
            report_dir: String::new(),
            stage_count: 0,
            buffer_start: 0,
            first_shave: 0,
            last_shave: 0,
            leon_mem_location: 0,
            leon_mem_size: 0,
            dma_agent: 0,
        },
        stages: vec![input, fc],
        data,
    };
    g.seal();
    g
}

/// The learned blobs of every layer of a caffemodel, by layer name, decoded with the
/// generated protobuf types only (V2 `layer` and legacy V1 `layers` both), so that tests
/// have an independent reference for the weights a graph stores.
pub(super) fn caffemodel_blobs(
    path: &std::path::Path,
) -> std::collections::HashMap<String, Vec<crate::ir::Tensor>> {
    use crate::caffe::blob::tensor_from_blob;
    use crate::proto::caffe::NetParameter;
    use prost::Message;
    let bytes = std::fs::read(path).unwrap();
    let net = NetParameter::decode(bytes.as_slice()).unwrap();
    let mut out = std::collections::HashMap::new();
    for l in &net.layer {
        let blobs = l
            .blobs
            .iter()
            .map(|b| tensor_from_blob(b).unwrap())
            .collect();
        out.insert(l.name().to_string(), blobs);
    }
    for l in &net.layers {
        let blobs = l
            .blobs
            .iter()
            .map(|b| tensor_from_blob(b).unwrap())
            .collect();
        out.insert(l.name().to_string(), blobs);
    }
    out
}

/// fp16 round-to-nearest-even of every value, widened back to f32.
pub(super) fn f16_round(v: &[f32]) -> Vec<f32> {
    v.iter()
        .map(|&x| f32::from(half::f16::from_f32(x)))
        .collect()
}

/// A net from prototxt text written in a test, with seeded random weights
/// (`fill_missing_weights_random`: gaussian(0, 0.01) for default fillers, biases keep theirs).
pub(super) fn net_from_text(text: &str, seed: u64) -> crate::ir::Net {
    use crate::caffe::prototxt::parse_text;
    let param = parse_text(text, std::path::Path::new("inline.prototxt")).unwrap();
    let mut net = crate::caffe::net_from_proto(&param, crate::ir::Phase::Test).unwrap();
    crate::caffe::fill_missing_weights_random(&mut net, seed).unwrap();
    net
}

/// Runs `source` on the f32 engine and `lifted` (a compiled graph read back into the IR)
/// on the fp16 emulation with one deterministic pixel pattern in [−128, 127], as
/// mean-subtracted BGR input is, and returns the metrics of the one network output; the
/// two outputs must have the same shape. `mvNCCheck`'s preset is asserted by the caller.
pub(super) fn f16_graph_vs_f32_source(
    source: &crate::ir::Net,
    lifted: &crate::ir::Net,
) -> crate::verify::metrics::BlobMetrics {
    use crate::exec::f16::F16Engine;
    use crate::exec::{f32::Engine, ExecOptions};
    let (src_out, lifted_out) = (source.outputs(), lifted.outputs());
    assert_eq!((src_out.len(), lifted_out.len()), (1, 1), "{lifted_out:?}");
    let shape = source.inputs[0].shape.clone();
    let n: usize = shape.iter().product();
    let x: Vec<f32> = (0..n).map(|i| ((i * 37 % 256) as f32) - 128.0).collect();
    let input = crate::ir::Tensor::from_vec(&shape, x).unwrap();
    let opts = ExecOptions {
        threads: 2,
        ..ExecOptions::default()
    };
    let a = Engine::with_options(source, opts.clone())
        .unwrap()
        .run([(source.inputs[0].name.clone(), input.clone())])
        .unwrap();
    let e = F16Engine::with_options(lifted, opts).unwrap();
    let b = e.run([(lifted.inputs[0].name.clone(), input)]).unwrap();
    let (ra, rb) = (
        a.get(&src_out[0]).unwrap(),
        b.outputs.get(&lifted_out[0]).unwrap(),
    );
    assert_eq!(ra.shape, rb.shape);
    crate::verify::metrics::compare(&src_out[0], ra, rb).unwrap()
}

/// True when the metrics pass `mvNCCheck`'s thresholds (the `mvncheck` preset).
pub(super) fn passes_mvncheck(m: &crate::verify::metrics::BlobMetrics) -> bool {
    crate::verify::Tolerance::new(crate::verify::Preset::Mvncheck, None).output_ok(m)
}
