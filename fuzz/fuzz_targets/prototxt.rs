//! Fuzzes the prototxt (text format) reader: a net definition goes on to the IR and shape
//! inference, and the same text is also read as a solver file.
#![no_main]

use agegender::caffe::net_from_proto;
use agegender::caffe::prototxt::parse_text;
use agegender::ir::Phase;
use agegender::proto::caffe::{NetParameter, SolverParameter};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let path = Path::new("fuzz.prototxt");
    let _ = parse_text::<SolverParameter>(&text, path);
    if let Ok(param) = parse_text::<NetParameter>(&text, path) {
        if let Ok(net) = net_from_proto(&param, Phase::Test) {
            let _ = net.infer_shapes();
        }
    }
});
