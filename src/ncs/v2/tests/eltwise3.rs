//! A 3-bottom Eltwise for NCSDK 2: the v2 eltwise record holds two operands (input and
//! taps, NCSDK2_GRAPH_FORMAT.md §4.4), so the compiler emits `<name>/0` = a ∘ b into a
//! work buffer and `<name>` = (a ∘ b) ∘ c; NCSDK 1 keeps one stage with c in the bias slot
//! (NCS_GRAPH_FORMAT.md §6.2 table, Eltwise). Both run within mvNCCheck's thresholds
//! against the f32 source net.

use crate::ir::Op;
use crate::ncs::compiler::{compile, CompileError, CompileOptions};
use crate::ncs::tests::{f16_graph_vs_f32_source, net_from_text, passes_mvncheck};
use crate::ncs::v2::{compile_v2, from_packed, to_v1_view, BlobVersion, Descriptor, GraphV2};
use crate::ncs::{graph_to_net, BufferRef, Graph, Location, StageOp, Xyz};

/// Three 4-channel convolutions a, b, c of a 6×6 input, then SUM(a, b, c),
/// MAX(sum, a, c) and PROD(max, b, c).
pub(crate) const ELTWISE3: &str = r#"
name: "eltwise3"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 1 dim: 3 dim: 6 dim: 6 } } }
layer { name: "conv_a" type: "Convolution" bottom: "data" top: "a"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "conv_b" type: "Convolution" bottom: "data" top: "b"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1
                            bias_filler { type: "constant" value: 0.5 } } }
layer { name: "conv_c" type: "Convolution" bottom: "data" top: "c"
        convolution_param { num_output: 4 kernel_size: 1 } }
layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "b" bottom: "c" top: "sum"
        eltwise_param { operation: SUM } }
layer { name: "max" type: "Eltwise" bottom: "sum" bottom: "a" bottom: "c" top: "max"
        eltwise_param { operation: MAX } }
layer { name: "prod" type: "Eltwise" bottom: "max" bottom: "b" bottom: "c" top: "prod"
        eltwise_param { operation: PROD } }
"#;

/// (location, byte offset) a descriptor addresses (§6.2: relocation entries resolved).
fn addr(g: &GraphV2, d: &Descriptor) -> (u32, u32) {
    match g.reloc_of(d) {
        Some(r) => (r.location, r.offset),
        None => (d.location, d.offset),
    }
}

#[test]
fn ncsdk2_splits_a_three_operand_eltwise_into_two_stages() {
    let net = net_from_text(ELTWISE3, 11);
    let (g, _) = compile_v2(&net, &CompileOptions::default(), BlobVersion::V2_3).unwrap();
    let g = GraphV2::parse(&g.to_bytes()).unwrap();
    let ops: Vec<StageOp> = g.stages.iter().map(|s| s.op).collect();
    let (conv, sum, max, prod) = (
        StageOp::Convolution,
        StageOp::EltwiseSum,
        StageOp::EltwiseMax,
        StageOp::EltwiseProd,
    );
    let want = [
        StageOp::None,
        conv,
        conv,
        conv,
        sum,
        sum,
        max,
        max,
        prod,
        prod,
    ];
    assert_eq!(ops, want);
    let out = |i: usize| addr(&g, g.stages[i].operand("output").unwrap());
    let (a, b, c) = (out(1), out(2), out(3));
    // each pair: x ∘ y into a fresh work buffer, then that ∘ z; x is the previous
    // layer's result after the first pair
    let mut prev = None;
    let triples = [(4, Some(a), b, c), (6, None, a, c), (8, None, b, c)];
    for (i, first, second, third) in triples {
        let (s0, s1) = (&g.stages[i], &g.stages[i + 1]);
        // §4.4: eltwise records hold input, output and taps (the second operand) only
        assert_eq!((s0.operands.len(), s1.operands.len()), (3, 3), "stage {i}");
        let x = addr(&g, s0.operand("input").unwrap());
        assert_eq!(x, first.unwrap_or_else(|| prev.unwrap()), "stage {i} input");
        assert_eq!(
            addr(&g, s0.operand("taps").unwrap()),
            second,
            "stage {i} taps"
        );
        let mid = addr(&g, s0.operand("output").unwrap());
        assert!(
            mid.0 >= Location::FIRST_WORK as u32,
            "stage {i}: a work buffer"
        );
        assert!(![a, b, c].contains(&mid), "stage {i}: a fresh buffer");
        assert_eq!(
            addr(&g, s1.operand("input").unwrap()),
            mid,
            "stage {}",
            i + 1
        );
        assert_eq!(
            addr(&g, s1.operand("taps").unwrap()),
            third,
            "stage {}",
            i + 1
        );
        for d in s0.operands.iter().chain(&s1.operands) {
            // §4.7: every operand is the 6×6×4 HWC tensor, order YXZ
            assert_eq!(
                (d.dims, d.strides, d.order),
                (Xyz::new(6, 6, 4), Xyz::new(8, 48, 2), 0)
            );
        }
        prev = Some(addr(&g, s1.operand("output").unwrap()));
    }
    // the last stage writes the network output (§8.1)
    assert_eq!(prev, Some((Location::OUTPUT as u32, 0)));
    assert_eq!(g.output_size, 6 * 6 * 4);
    // read back: two Eltwise layers of two bottoms per source layer, same result
    let lifted = graph_to_net(&to_v1_view(&g).unwrap()).unwrap();
    let elt: Vec<usize> = lifted
        .layers
        .iter()
        .filter(|l| matches!(l.op, Op::Eltwise(_)))
        .map(|l| l.bottoms.len())
        .collect();
    assert_eq!(elt, vec![2; 6]);
    let m = f16_graph_vs_f32_source(&net, &lifted);
    assert!(passes_mvncheck(&m), "{m:?}");
}

#[test]
fn ncsdk1_keeps_one_stage_with_the_third_operand_in_the_bias_slot() {
    let net = net_from_text(ELTWISE3, 11);
    let g = compile(&net, &CompileOptions::default()).unwrap().graph;
    assert_eq!(g.stages.len(), 7);
    let out = |i: usize| g.stages[i].output;
    let (a, b, c) = (out(1), out(2), out(3));
    // §6.2 table: first bottom → data, second → taps, third → bias
    let want = [(4, a, b, c), (5, out(4), a, c), (6, out(5), b, c)];
    for (i, data, taps, bias) in want {
        let s = &g.stages[i];
        assert_eq!((s.data, s.taps, s.bias), (data, taps, bias), "stage {i}");
    }
    assert_eq!(out(6), BufferRef::new(0, Location::OUTPUT));
    let lifted = graph_to_net(&Graph::parse(&g.to_bytes()).unwrap()).unwrap();
    let elt: Vec<usize> = lifted
        .layers
        .iter()
        .filter(|l| matches!(l.op, Op::Eltwise(_)))
        .map(|l| l.bottoms.len())
        .collect();
    assert_eq!(elt, vec![3; 3]);
    let m = f16_graph_vs_f32_source(&net, &lifted);
    assert!(passes_mvncheck(&m), "{m:?}");
    // the NCSDK 2 back end refuses such a stage rather than dropping the third operand
    let e = from_packed(&g, 1, BlobVersion::V2_3).unwrap_err();
    assert!(
        matches!(&e, CompileError::Unsupported { layer, .. } if layer == &g.stages[4].name),
        "{e}"
    );
}

#[test]
fn four_operand_eltwise_is_refused_for_both_generations_with_the_layer_named() {
    let text = ELTWISE3.replace(
        r#"bottom: "max" bottom: "b" bottom: "c""#,
        r#"bottom: "max" bottom: "b" bottom: "c" bottom: "a""#,
    );
    let net = net_from_text(&text, 11);
    let v1 = compile(&net, &CompileOptions::default()).unwrap_err();
    let v2 = compile_v2(&net, &CompileOptions::default(), BlobVersion::V2_3).unwrap_err();
    for e in [v1, v2] {
        let e = e.to_string();
        assert!(e.contains("'prod'") && e.contains("at most 3"), "{e}");
    }
}
