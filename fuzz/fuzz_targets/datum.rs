//! Fuzzes the LMDB record reader: a Caffe `Datum` decoded, its shape checked and its
//! pixels (raw or encoded image) turned into a tensor.
#![no_main]

use agegender::io::datum::{datum_shape, datum_to_tensor, decode_datum};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(datum) = decode_datum(data) else {
        return;
    };
    if !datum.encoded() {
        let _ = datum_shape(&datum);
    }
    let _ = datum_to_tensor(&datum);
});
