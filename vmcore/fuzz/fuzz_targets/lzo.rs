//! LZO1X: the decompressor on arbitrary streams (errors, never panics or overruns), and the
//! compressor on arbitrary data (what it writes decompresses to the input).
#![no_main]
use libfuzzer_sys::fuzz_target;
use rkdump_vmcore::write::lzo;

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    if lzo::decompress(data, &mut out, 4096).is_ok() {
        assert!(out.len() <= 4096);
    }
    let mut c = lzo::LzoCompressor::new();
    let mut packed = Vec::new();
    if c.compress(data, &mut packed, data.len().saturating_mul(2).saturating_add(64)) {
        let mut back = Vec::new();
        lzo::decompress(&packed, &mut back, data.len()).expect("our own stream decompresses");
        assert_eq!(back, data);
    }
});
