//! Fuzzes the Movidius NCS graph readers of both generations, as `inspect` and `convert`
//! reach them: generation detection, header, stage records and buffers (NCSDK 1) or blob
//! 2.3 / 2.4 sections (NCSDK 2), the inspection report, then the lift into the IR and
//! shape inference.
#![no_main]

use agegender::ncs::inspect::GraphReport;
use agegender::ncs::v2::{to_v1_view, V2Report};
use agegender::ncs::{graph_to_net, parse_any, AnyGraph};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(any) = parse_any(data) else {
        return;
    };
    let v1 = match any {
        AnyGraph::V1(g) => {
            let _ = GraphReport::from_graph(&g, "fuzz.graph").to_string();
            g
        }
        AnyGraph::V2(g) => {
            let _ = V2Report::from_graph(&g, "fuzz.graph").to_string();
            match to_v1_view(&g) {
                Ok(v1) => v1,
                Err(_) => return,
            }
        }
    };
    if let Ok(net) = graph_to_net(&v1) {
        let _ = net.infer_shapes();
    }
});
