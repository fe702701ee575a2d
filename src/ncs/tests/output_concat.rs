//! A Concat as the network output, for NCSDK 1 and NCSDK 2: the members write location 2
//! at their channel offsets with the strides of the whole concatenation
//! (NCS_GRAPH_FORMAT.md §5.4; NCSDK2_GRAPH_FORMAT.md §6.2, §6.3 step 5, §8.1), the graph
//! reads back into a net whose output is that Concat, and its fp16 run passes mvNCCheck's
//! thresholds against the f32 run of the source net.

use super::{f16_graph_vs_f32_source, net_from_text, passes_mvncheck};
use crate::ir::{Net, Op};
use crate::ncs::compiler::{compile, CompileOptions};
use crate::ncs::v2::{compile_v2, to_v1_view, BlobVersion, GraphV2};
use crate::ncs::{graph_to_net, BufferRef, Graph, Location, StageOp, Xyz};

/// A trunk convolution (8 channels, ReLU) feeding two branches of 4 (1×1, ReLU) and 6
/// (3×3) channels, concatenated along channels as the last layer: 8×8×10.
pub(super) const CONCAT_OUT: &str = r#"
name: "concat_out"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
layer { name: "conv0" type: "Convolution" bottom: "data" top: "conv0"
        convolution_param { num_output: 8 kernel_size: 3 pad: 1
                            bias_filler { type: "constant" value: 0.1 } } }
layer { name: "relu0" type: "ReLU" bottom: "conv0" top: "conv0" }
layer { name: "conv_a" type: "Convolution" bottom: "conv0" top: "a"
        convolution_param { num_output: 4 kernel_size: 1
                            bias_filler { type: "constant" value: -0.05 } } }
layer { name: "relu_a" type: "ReLU" bottom: "a" top: "a" }
layer { name: "conv_b" type: "Convolution" bottom: "conv0" top: "b"
        convolution_param { num_output: 6 kernel_size: 3 pad: 1 } }
layer { name: "cat" type: "Concat" bottom: "a" bottom: "b" top: "cat" }
"#;

/// The lifted net ends in a Concat of the two branches whose top is the only output,
/// shaped as the source's 1×10×8×8.
fn assert_output_is_the_concat(lifted: &Net, what: &str) {
    let last = lifted.layers.last().unwrap();
    assert!(matches!(last.op, Op::Concat(_)), "{what}: {:?}", last.op);
    assert_eq!(last.bottoms.len(), 2, "{what}");
    assert_eq!(lifted.outputs(), last.tops, "{what}");
    let shapes = lifted.infer_shapes().unwrap();
    assert_eq!(shapes[&last.tops[0]], vec![1, 10, 8, 8], "{what}");
}

#[test]
fn ncsdk1_members_write_the_output_at_their_channel_offsets() {
    let net = net_from_text(CONCAT_OUT, 7);
    let g = compile(&net, &CompileOptions::default()).unwrap().graph;
    // records: input, conv0 (ReLU fused), conv_a (ReLU fused), conv_b; no concat stage
    let ops: Vec<StageOp> = g.stages.iter().map(|s| s.op).collect();
    assert_eq!(ops[1..], [StageOp::Convolution; 3]);
    // §5.3: the trunk's buffer, pad 2·(W+1)·C·2 = 2·9·8·2 bytes in front of the tensor
    let trunk = BufferRef::new(2 * 9 * 8 * 2, Location::FIRST_WORK);
    assert_eq!(g.stages[1].output, trunk);
    // §5.4: members write location 2 at 2·channel_offset, x-stride 2·C_total
    let cat_strides = Xyz::new(2 * 10, 2 * 10 * 8, 2);
    for (i, offset, k) in [(2, 0, 4), (3, 2 * 4, 6)] {
        let s = &g.stages[i];
        assert_eq!(s.data, trunk, "stage {i}");
        assert_eq!(
            s.output,
            BufferRef::new(offset, Location::OUTPUT),
            "stage {i}"
        );
        assert_eq!(s.output_dims, Xyz::new(8, 8, k), "stage {i}");
        assert_eq!(s.output_strides, cat_strides, "stage {i}");
        // §4: tapStrideY of a concat member is 2·its own outputDimZ
        assert_eq!(s.taps_strides.y, 2 * k, "stage {i}");
    }
    // §5.4: the host reads outputDimX·outputDimY·outputStrideX/2 of the last record
    assert_eq!(g.host_output_len(), 8 * 8 * 10);
    // the file reads back (the reader's checks pass) into a net ending in the Concat
    let back = Graph::parse(&g.to_bytes()).unwrap();
    let lifted = graph_to_net(&back).unwrap();
    assert_output_is_the_concat(&lifted, "v1");
    let m = f16_graph_vs_f32_source(&net, &lifted);
    assert!(passes_mvncheck(&m), "{m:?}");
}

#[test]
fn ncsdk2_members_write_the_output_at_their_channel_offsets() {
    let net = net_from_text(CONCAT_OUT, 7);
    let (g, _) = compile_v2(&net, &CompileOptions::default(), BlobVersion::V2_3).unwrap();
    let g = GraphV2::parse(&g.to_bytes()).unwrap();
    assert_eq!(g.stages.len(), 4);
    // §8.1: size_of_output is the element count of the whole concatenation
    assert_eq!(g.output_size, 8 * 8 * 10);
    // §6.2: locations 0–2 carry the byte offset directly, 2 × the channel offset here
    for (i, offset, k) in [(2, 0, 4), (3, 2 * 4, 6)] {
        let out = g.stages[i].operand("output").unwrap();
        assert_eq!(
            (out.location, out.offset),
            (Location::OUTPUT as u32, offset),
            "stage {i}"
        );
        assert_eq!(out.dims, Xyz::new(8, 8, k), "stage {i}");
        assert_eq!(out.strides, Xyz::new(2 * 10, 2 * 10 * 8, 2), "stage {i}");
        assert_eq!(out.order, 0, "stage {i}: orderYXZ");
    }
    // §6.2/§6.3: one work entry per work descriptor (the trunk's output and the two
    // members' inputs), all at the trunk's allocation start; no output buffer in the arena
    let work: Vec<(u32, u32)> = g
        .work_relocs
        .iter()
        .map(|r| (r.offset, r.location))
        .collect();
    assert_eq!(work, vec![(0, 4); 3]);
    // three convolutions × (taps, bias)
    assert_eq!(g.blob_relocs.len(), 6);
    let lifted = graph_to_net(&to_v1_view(&g).unwrap()).unwrap();
    assert_output_is_the_concat(&lifted, "v2");
    let m = f16_graph_vs_f32_source(&net, &lifted);
    assert!(passes_mvncheck(&m), "{m:?}");
}

#[test]
fn output_parts_that_do_not_tile_the_output_are_refused_with_the_stage_named() {
    let net = net_from_text(CONCAT_OUT, 7);
    let mut g = compile(&net, &CompileOptions::default()).unwrap().graph;
    // conv_b now writes 2 bytes past where conv_a's 4 channels end: a gap in the output
    g.stages[3].output.pointer += 2;
    let name = g.stages[3].name.clone();
    let e = graph_to_net(&g).unwrap_err().to_string();
    assert!(
        e.contains(&name) && e.contains("network output") && e.contains("tile"),
        "{e}"
    );
}
