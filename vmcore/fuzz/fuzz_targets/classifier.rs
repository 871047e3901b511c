//! The classifier on a synthetic image whose struct pages, page tables and mem_section
//! entries are overwritten with fuzz input.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rkdump_vmcore::classify::{Classifier, ClassifyOptions};
use rkdump_vmcore::testkit::SynthSpec;
use rkdump_vmcore::VmcoreInfo;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let spec = SynthSpec { levels: if data[0] & 1 == 0 { 4 } else { 5 }, ..SynthSpec::default() };
    let mut s = spec.build();
    // Each 12-byte chunk: 4-byte physical address (within the first 64 MiB) + 8-byte value.
    for c in data[2..].chunks_exact(12) {
        let pa = u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as u64 & 0x3ff_fff8;
        let v = u64::from_le_bytes([c[4], c[5], c[6], c[7], c[8], c[9], c[10], c[11]]);
        s.phys.write_u64(pa, v);
    }
    let Ok(vi) = VmcoreInfo::parse(s.vmcoreinfo.as_bytes()) else {
        return;
    };
    let mut cls = Classifier::new(
        &s.phys,
        Some(&vi),
        ClassifyOptions { dump_level: data[1] & 31, percpu_free: data[0] & 1 != 0 },
    );
    let window = 1 + (data[1] as u64) * 97;
    let c = cls.count_all(window, false);
    assert!(c.excluded() <= c.total, "{c:?}");
});
