//! Decompression of images (builder) and of module files (capture init) on arbitrary data:
//! errors or bounded output, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rkdump_init::modules::{self, Compression as ModCompression};
use rkdump_mkinitrd::compress::{self, Format, MAX_UNPACKED};

fuzz_target!(|data: &[u8]| {
    if let Ok(Format::Compressed(c)) = compress::detect(data) {
        if let Ok(out) = compress::decompress(data, c) {
            assert!(out.len() as u64 <= MAX_UNPACKED);
        }
    }
    let kind = ModCompression::from_magic(data);
    if let Ok(out) = modules::decompress(kind, data) {
        assert!(out.len() as u64 <= modules::MAX_MODULE_IMAGE);
    }
});
