//! ELF header, program headers and notes parser on arbitrary files.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rkdump_vmcore::{ElfVmcore, PhysAddr, PhysMemory};

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("rkdump-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("vmcore");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(core) = ElfVmcore::open(&path) {
        let _ = core.nr_cpus();
        let _ = core.vmcoreinfo();
        let mut buf = [0u8; 256];
        for l in core.loads().iter().take(8) {
            let _ = core.read_phys(l.phys_start, &mut buf);
            let _ = core.read_phys(PhysAddr(l.phys_end().0.saturating_sub(100)), &mut buf);
        }
        // Whole-dump classification only on small memory maps (it is linear in max_pfn).
        if core.max_pfn().0 <= 1 << 16 {
            let _ = rkdump_vmcore::info::info_from(&core);
        }
    }
});
