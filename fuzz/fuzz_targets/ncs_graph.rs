//! Fuzzes the Movidius NCS graph reader: header, stage records and buffers, then the
//! graph-to-IR translation and shape inference.
#![no_main]

use agegender::ncs::{graph_to_net, Graph};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(graph) = Graph::parse(data) else {
        return;
    };
    if let Ok(net) = graph_to_net(&graph) {
        let _ = net.infer_shapes();
    }
});
