//! Fuzzes the binaryproto (mean file, one BlobProto) reader.
#![no_main]

use agegender::caffe::binaryproto::decode_binaryproto;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_binaryproto(data);
});
