//! VMCOREINFO text parser and typed getters.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rkdump_vmcore::VmcoreInfo;

fuzz_target!(|data: &[u8]| {
    if let Ok(vi) = VmcoreInfo::parse(data) {
        let _ = vi.symbol("mem_section");
        let _ = vi.size("page");
        let _ = vi.offset("page.flags");
        let _ = vi.length("mem_section");
        let _ = vi.number("PAGE_BUDDY_MAPCOUNT_VALUE");
        let _ = vi.number_u32("PAGE_OFFLINE_MAPCOUNT_VALUE");
        let _ = vi.page_size();
        let _ = vi.crash_time();
        let _ = vi.kernel_offset();
    }
});
