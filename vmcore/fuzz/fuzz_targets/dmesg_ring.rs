//! Fuzz the kernel log walks: the input is a fake dump (first byte: buffer kind and layout,
//! the rest: kernel memory holding the log symbols, ring headers, descriptors and text), and
//! `extract` must never panic, hang or allocate without bound, in every output format.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rkdump_vmcore::dmesg::{extract, testing::FakeSource, Format};

fuzz_target!(|data: &[u8]| {
    let src = FakeSource::from_fuzz(data);
    for format in [Format::VmcoreDmesg, Format::Makedumpfile, Format::Makedumpfile172] {
        let mut out = Vec::new();
        if let Ok(stats) = extract(&src, format, &mut out) {
            assert_eq!(stats.bytes_written, out.len() as u64);
        }
    }
});
