//! kdump-compressed and flattened readers (header, sub-header, bitmaps, descriptors, page
//! decompression, flattened record index) on arbitrary files.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rkdump_vmcore::diskdump::DiskDump;
use rkdump_vmcore::write::DumpSource;
use rkdump_vmcore::PhysMemory;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("rkdump-fuzz-dd-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("dump");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(d) = DiskDump::open(&path) {
        let _ = d.nr_cpus();
        let _ = DumpSource::vmcoreinfo(&d);
        let mut page = vec![0u8; d.page_size() as usize];
        for pfn in 0..64u64 {
            let _ = d.read_page(pfn, &mut page);
        }
        if d.ranges().iter().map(|r| r.end.0.saturating_sub(r.start.0)).sum::<u64>() <= 1 << 28 {
            let _ = rkdump_vmcore::info::info_from_source(&d, &path, "fuzz");
        }
    }
});
