//! Fuzzes the .npy reader (header dictionary, dtype, shape, data length).
#![no_main]

use agegender::io::npy::decode_npy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_npy(data, None);
});
