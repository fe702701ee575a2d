//! Fuzzes the ONNX reader: protobuf decoding, import into the IR and shape inference.
#![no_main]

use agegender::onnx::pb::ModelProto;
use agegender::onnx::{import_model, ImportOptions};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(model) = ModelProto::decode(data) else {
        return;
    };
    if let Ok(net) = import_model(&model, None, &ImportOptions::default()) {
        let _ = net.infer_shapes();
    }
});
