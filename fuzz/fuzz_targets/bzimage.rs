//! `rkdump estimate` and `rkdump check` reading a kernel image: the bzImage setup header's
//! init_size and release on arbitrary bytes, and the estimate built from them.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rkdump_kconfig::estimate::{bzimage_init_size, estimate, Inputs};

fuzz_target!(|data: &[u8]| {
    if let Some(r) = rkdump_kconfig::estimate::bzimage_release(data) {
        assert!(!r.is_empty() && !r.contains(' '));
    }
    if let Ok(n) = bzimage_init_size(data) {
        assert!(n <= u64::from(u32::MAX));
        let e = estimate(&Inputs {
            kernel_init_size: n,
            image_file: data.len() as u64,
            image_unpacked: n.wrapping_mul(3),
            modules: n,
            dumped_memory: n << 20,
            capture_cpus: n,
        });
        assert!(e.recommended >= e.total);
    }
});
