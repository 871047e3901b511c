//! End-to-end tests on synthetic vmcores (see [`crate::testkit`]).

use crate::addr::{Pfn, PhysAddr, VirtAddr};
use crate::classify::{Classifier, ClassifyOptions, PageClass, DEFAULT_WINDOW};
use crate::elf::ElfVmcore;
use crate::kmem::KernelMemory;
use crate::memory::PhysMemory;
use crate::testkit::{Synth, SynthSpec};
use crate::vmcoreinfo::VmcoreInfo;

fn build(spec: SynthSpec) -> (tempfile::TempDir, std::path::PathBuf, Synth) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vmcore");
    let s = spec.build();
    s.write_elf(&path).unwrap();
    (dir, path, s)
}

#[test]
fn dump_synthetic_for_manual_check() {
    if let Ok(p) = std::env::var("RKDUMP_WRITE_SYNTH") {
        for (name, spec) in [
            ("l4", SynthSpec::default()),
            ("l5", SynthSpec { levels: 5, ..SynthSpec::default() }),
            ("text", SynthSpec { text_segment: true, ..SynthSpec::default() }),
            ("mdf", SynthSpec { odd_slab_mapping: false, ..SynthSpec::default() }),
        ] {
            let s = spec.build();
            s.write_elf(&std::path::Path::new(&p).join(name)).unwrap();
        }
    }
}

#[test]
fn info_on_synthetic_4_level() {
    let (_d, path, s) = build(SynthSpec::default());
    let r = crate::info::info(&path).unwrap();
    eprintln!("{r}");
    assert_eq!(r.cpus, 2);
    assert_eq!(r.paging_levels, Some(4));
    assert!(r.degraded.is_none(), "{:?}", r.degraded);
    let c = r.counts;
    assert_eq!(c.cache, s.expect.cache);
    assert_eq!(c.cache_private, s.expect.cache_private);
    assert_eq!(c.user, s.expect.user);
    assert_eq!(c.free, s.expect.free);
    assert_eq!(c.free_percpu, s.expect.free_percpu);
    assert_eq!(c.hwpoison, s.expect.hwpoison);
    assert_eq!(c.offline, s.expect.offline);
}

#[test]
fn print_levels_for_manual_check() {
    let Ok(p) = std::env::var("RKDUMP_LEVELS_OF") else {
        return;
    };
    let core = ElfVmcore::open(&p).unwrap();
    for d in [1u8, 16, 17, 31] {
        let c = crate::info::counts_at_level(&core, d);
        eprintln!("d={d} {c:?} original={} remaining={}", c.original(), c.remaining());
    }
}

fn classes(path: &std::path::Path, window: u64) -> Vec<PageClass> {
    classes_with(path, window, ClassifyOptions::default())
}

fn classes_with(path: &std::path::Path, window: u64, opts: ClassifyOptions) -> Vec<PageClass> {
    let core = ElfVmcore::open(path).unwrap();
    let mut cls = Classifier::new(&core, core.vmcoreinfo(), opts);
    let max = cls.max_pfn().0;
    let mut all = Vec::new();
    let mut s = 0;
    while s < max {
        let e = (s + window).min(max);
        let mut out = vec![PageClass::Hole; (e - s) as usize];
        cls.classify_range(Pfn(s), Pfn(e), &mut out).unwrap();
        cls.mark_zero_pages(Pfn(s), &mut out);
        all.extend(out);
        s = e;
    }
    all
}

#[test]
fn each_page_class_is_recognised() {
    let (_d, path, _s) = build(SynthSpec::default());
    let c = classes(&path, DEFAULT_WINDOW);
    let at = |pfn: u64| c[pfn as usize];
    assert_eq!(at(0), PageClass::Hole, "pfn 0 is below the first range");
    assert_eq!(at(0x10), PageClass::Kept, "non-zero kernel data");
    assert_eq!(at(0x20), PageClass::Zero);
    assert_eq!(at(0x9f), PageClass::NoData, "partial last page of a range");
    assert_eq!(at(0xa0), PageClass::Hole);
    assert_eq!(at(0x1000), PageClass::Cache);
    assert_eq!(at(0x1010), PageClass::CachePrivate);
    assert_eq!(at(0x1018), PageClass::Cache, "swap cache");
    assert_eq!(at(0x1020), PageClass::User, "anonymous");
    assert!((0x2800..0x2a00).all(|p| at(p) == PageClass::User), "THP folio");
    assert!((0x2a00..0x2c00).all(|p| at(p) == PageClass::User), "hugetlb folio");
    assert!((0x2c00..0x2c04).all(|p| at(p) == PageClass::Kept), "kernel compound page");
    assert!((0x1800..0x1809).all(|p| at(p) == PageClass::Free), "buddy blocks");
    assert_eq!(at(0x1810), PageClass::Kept, "buddy with an invalid order is kept");
    assert!((0x1900..0x1904).all(|p| at(p) == PageClass::Kept), "slab is never user");
    assert_eq!(at(0x1a00), PageClass::Hwpoison);
    assert_eq!(at(0x1a10), PageClass::Offline);
    assert_eq!(at(0x1210), PageClass::Kept, "page tables");
    assert!((0x8000..0x10000).all(|p| at(p) == PageClass::Hole), "absent section");
    assert!((0x10000..0x10400).all(|p| at(p) == PageClass::Free), "order-10 block");
}

#[test]
fn free_pages_of_per_cpu_lists_are_proven_not_guessed() {
    let (_d, path, _s) = build(SynthSpec::default());
    let c = classes(&path, DEFAULT_WINDOW);
    let percpu: Vec<u64> = (0..c.len() as u64).filter(|&p| c[p as usize] == PageClass::FreePercpu).collect();
    let mut want = vec![0x1c00];
    want.extend(0x1c08..0x1c10);
    want.extend([0x1c21, 0x1c60]);
    assert_eq!(percpu, want, "the listed pages and the order-3 block's tails");
    assert_eq!(c[0x1c01], PageClass::Kept, "the page after an order-0 page is referenced");
    assert_eq!(c[0x1c61], PageClass::Kept, "an allocated page stops the block");
    assert_eq!(c[0x1c70], PageClass::Kept, "a referenced page on a list");
    assert_eq!(c[0x1c40], PageClass::Kept, "unreferenced, not on a list");
    assert!((0x1c50..0x1c54).all(|p| c[p] == PageClass::Kept), "an allocation without __GFP_COMP");
    assert_eq!(c[0x1c90], PageClass::Kept, "neighbours that do not point back");
    // Switched off, or at a dump level that keeps free pages, the chain alone decides.
    let off = classes_with(&path, DEFAULT_WINDOW, ClassifyOptions { dump_level: 31, percpu_free: false });
    assert!(want.iter().all(|&p| off[p as usize] == PageClass::Kept));
    let d15 = classes_with(&path, DEFAULT_WINDOW, ClassifyOptions::level(15));
    assert!(want.iter().all(|&p| d15[p as usize] == PageClass::Kept));
    // Windows that split the list's pages give the same classes.
    assert!(c == classes(&path, 0x1c04), "window 0x1c04 differs");
}

#[test]
fn small_windows_give_the_same_classes() {
    let (_d, path, _s) = build(SynthSpec::default());
    let whole = classes(&path, DEFAULT_WINDOW * 2);
    for w in [100u64, 511, 4096] {
        assert!(whole == classes(&path, w), "window {w} differs");
    }
}

fn check_counts(spec: SynthSpec) {
    let (_d, path, s) = build(spec);
    let r = crate::info::info(&path).unwrap();
    assert!(r.degraded.is_none(), "{:?}", r.degraded);
    assert_eq!(r.paging_levels, Some(spec.levels));
    let c = r.counts;
    let e = s.expect;
    assert_eq!(
        (c.cache, c.cache_private, c.user, c.free, c.hwpoison, c.offline),
        (e.cache, e.cache_private, e.user, e.free, e.hwpoison, e.offline)
    );
    assert_eq!(c.total, 0x10400);
    assert_eq!(c.memhole, 0x10400 - (0x9f + 0x3f00 + 0x400) - if spec.text_segment { 0x2000 } else { 0 });
}

#[test]
fn counts_4_level() {
    check_counts(SynthSpec::default());
}

#[test]
fn counts_5_level() {
    check_counts(SynthSpec { levels: 5, ..SynthSpec::default() });
}

#[test]
fn counts_with_sme_mask() {
    check_counts(SynthSpec { sme: true, ..SynthSpec::default() });
    check_counts(SynthSpec { sme: true, levels: 5, ..SynthSpec::default() });
}

#[test]
fn counts_with_overlapping_text_segment() {
    check_counts(SynthSpec { text_segment: true, ..SynthSpec::default() });
}

#[test]
fn translation_of_each_page_size() {
    for levels in [4u8, 5] {
        let s = SynthSpec { levels, ..SynthSpec::default() }.build();
        let vi = VmcoreInfo::parse(s.vmcoreinfo.as_bytes()).unwrap();
        let k = KernelMemory::new(&s.phys, &vi).unwrap();
        // 1 GiB direct map.
        assert_eq!(k.translate(VirtAddr(s.page_offset + 0x123_4567)).unwrap(), PhysAddr(0x123_4567));
        // 2 MiB kernel image pages: va - __START_KERNEL_map + phys_base.
        let va = 0xffff_ffff_8102_0010u64;
        assert_eq!(k.translate(VirtAddr(va)).unwrap(), PhysAddr(0x102_0010 + crate::testkit::PHYS_BASE));
        // 4 KiB vmemmap pages and 2 MiB vmemmap page.
        assert_eq!(k.translate(VirtAddr(s.vmemmap + 0x1008)).unwrap(), PhysAddr(0x200_1008));
        assert_eq!(k.translate(VirtAddr(s.vmemmap + 0x40_0040)).unwrap(), PhysAddr(0x220_0040));
        // Unmapped.
        assert!(k.translate(VirtAddr(s.vmemmap + 0x20_0000)).is_err());
        // Page-crossing read through the direct map.
        let mut b = [0u8; 16];
        k.read_virt(VirtAddr(s.page_offset + 0x10 * 4096 - 8), &mut b).unwrap();
        assert_eq!(&b[8..], &[0xa5; 8]);
        assert_eq!(k.read_u32(VirtAddr(s.page_offset + 0x10 * 4096)).unwrap(), 0xa5a5_a5a5);
    }
}

#[test]
fn elf_reader_api() {
    let (_d, path, s) = build(SynthSpec::default());
    let core = ElfVmcore::open(&path).unwrap();
    assert_eq!(core.nr_cpus(), 2);
    assert_eq!(core.loads().len(), 3);
    let n = core.vmcoreinfo_note().unwrap();
    assert_eq!(n.desc_size, s.vmcoreinfo.len());
    let mut desc = vec![0u8; n.desc_size];
    std::os::unix::fs::FileExt::read_exact_at(&std::fs::File::open(&path).unwrap(), &mut desc, n.desc_offset.0)
        .unwrap();
    assert_eq!(desc, s.vmcoreinfo.as_bytes());
    assert_eq!(core.notes_bytes(), &s.notes()[..]);
    // Same bytes through mmap windows and through pread.
    let mut a = vec![0u8; 3 * 4096];
    let mut b = vec![0u8; 3 * 4096];
    core.read_phys(PhysAddr(0x1000 * 4096 - 100), &mut a).unwrap();
    assert!(core.mmap_enabled());
    core.disable_mmap();
    core.read_phys(PhysAddr(0x1000 * 4096 - 100), &mut b).unwrap();
    assert_eq!(a, b);
    assert_eq!(&a[100..164], &[0xa5; 64]);
    assert!(core.read_phys(PhysAddr(0x5000_0000), &mut b).is_err());
    assert_eq!(core.max_pfn(), Pfn(0x10400));
}

#[test]
fn degraded_without_mem_section_keys() {
    let mut s = SynthSpec::default().build();
    s.vmcoreinfo = s
        .vmcoreinfo
        .lines()
        .filter(|l| !l.starts_with("SIZE(mem_section)") && !l.starts_with("NUMBER(PG_lru)"))
        .map(|l| format!("{l}\n"))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vmcore");
    s.write_elf(&path).unwrap();
    let r = crate::info::info(&path).unwrap();
    let d = r.degraded.expect("must degrade");
    assert!(d.missing_keys.iter().any(|k| k == "NUMBER(PG_lru)"), "{d:?}");
    let c = r.counts;
    assert_eq!((c.cache, c.user, c.free), (0, 0, 0), "never a guessed class");
    assert!(c.zero > 10_000, "zero pages still found");
}

#[test]
fn degraded_without_vmcoreinfo_or_page_tables() {
    let s = SynthSpec::default().build();
    let vi = VmcoreInfo::parse(b"PAGESIZE=4096\n").unwrap();
    let cls = Classifier::new(&s.phys, Some(&vi), ClassifyOptions::default());
    let d = cls.degraded().unwrap();
    assert_eq!(d.missing_keys, vec!["SYMBOL(init_top_pgt)".to_string()]);
    let cls = Classifier::new(&s.phys, None, ClassifyOptions::default());
    assert!(cls.degraded().is_some());
}

#[test]
fn corrupt_struct_pages_never_panic() {
    // Garbage in every struct page of section 0: classification must finish.
    let mut s = SynthSpec::default().build();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for off in (0..0x20_0000u64).step_by(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.phys.write_u64(0x200_0000 + off, x);
    }
    let vi = VmcoreInfo::parse(s.vmcoreinfo.as_bytes()).unwrap();
    let mut cls = Classifier::new(&s.phys, Some(&vi), ClassifyOptions::default());
    let c = cls.count_all(1000, false);
    assert_eq!(c.total, 0x10400);
}

#[test]
fn the_direct_map_base_comes_from_the_mem_section_pointer() {
    for (levels, base) in [(4, 0xffff_8880_0000_0000u64), (5, 0xff11_0000_0000_0000)] {
        let s = SynthSpec { levels, ..SynthSpec::default() }.build();
        let vi = VmcoreInfo::parse(s.vmcoreinfo.as_bytes()).unwrap();
        let k = KernelMemory::new(&s.phys, &vi).unwrap();
        assert_eq!(k.direct_map_base(&vi), Some(base));
        // A mem_section in the kernel image (SPARSEMEM without EXTREME) says nothing.
        let text = s.vmcoreinfo.lines().map(|l| {
            if l.starts_with("SYMBOL(mem_section)=") {
                "SYMBOL(mem_section)=ffffffff81030000".to_string()
            } else {
                l.to_string()
            }
        });
        let vi = VmcoreInfo::parse(text.collect::<Vec<_>>().join("\n").as_bytes()).unwrap();
        assert_eq!(KernelMemory::new(&s.phys, &vi).unwrap().direct_map_base(&vi), None);
    }
}

#[test]
fn lower_dump_levels_take_fewer_branches() {
    let (_d, path, s) = build(SynthSpec::default());
    let core = ElfVmcore::open(&path).unwrap();
    let c = crate::info::counts_at_level(&core, 16);
    assert_eq!((c.zero, c.cache, c.user, c.free), (0, 0, 0, s.expect.free));
    assert_eq!(c.hwpoison, 1, "hwpoison is excluded at every level");
    let c = crate::info::counts_at_level(&core, 2);
    assert_eq!((c.cache, c.cache_private), (s.expect.cache, 0));
}

/// The oracle: makedumpfile's own report on the same synthetic vmcore.
#[test]
fn makedumpfile_agrees_on_synthetic_vmcores() {
    if !crate::mdf::available() {
        eprintln!("SKIPPED: makedumpfile is not installed");
        return;
    }
    for spec in [
        SynthSpec { odd_slab_mapping: false, ..SynthSpec::default() },
        SynthSpec { odd_slab_mapping: false, levels: 5, ..SynthSpec::default() },
        SynthSpec { odd_slab_mapping: false, text_segment: true, ..SynthSpec::default() },
    ] {
        let (d, path, _s) = build(spec);
        let theirs = crate::mdf::run_makedumpfile(&path, &d.path().join("out")).unwrap();
        let ours = crate::info::info(&path).unwrap();
        crate::mdf::assert_same_but_percpu(&theirs, &ours.to_json(), &format!("{spec:?}"));
    }
}

fn open_bytes(bytes: &[u8]) -> Result<ElfVmcore, crate::elf::ElfError> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    std::fs::write(&p, bytes).unwrap();
    ElfVmcore::open(&p)
}

#[test]
fn non_vmcore_and_corrupt_headers_are_clear_errors() {
    let (_d, path, _s) = build(SynthSpec::default());
    let good = std::fs::read(&path).unwrap();
    let msg = |r: Result<ElfVmcore, crate::elf::ElfError>| r.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(msg(open_bytes(b"")).contains("not an ELF"));
    assert!(msg(open_bytes(b"KDUMP   and more bytes to be longer than sixty-four bytes......................"))
        .contains("not an ELF"));
    let mut b = good[..4096].to_vec();
    b[4] = 1; // ELF32
    assert!(msg(open_bytes(&b)).contains("ELF64"));
    let mut b = good[..4096].to_vec();
    b[16] = 2; // ET_EXEC
    assert!(msg(open_bytes(&b)).contains("ET_CORE"));
    let mut b = good[..4096].to_vec();
    b[56] = 0xff;
    b[57] = 0x7f; // huge phnum
    assert!(msg(open_bytes(&b)).contains("past the end"));
    let mut b = good[..4096].to_vec();
    b[54] = 32; // phentsize
    assert!(msg(open_bytes(&b)).contains("e_phentsize"));
    // Notes cut short: header table ok but PT_NOTE data beyond EOF.
    assert!(msg(open_bytes(&good[..4200])).contains("past the end"));
    assert!(ElfVmcore::open("/nonexistent/vmcore").unwrap_err().to_string().contains("/nonexistent/vmcore"));
}

#[test]
fn truncated_vmcore_reads_fail_cleanly() {
    let (_d, path, _s) = build(SynthSpec::default());
    let good = std::fs::read(&path).unwrap();
    // Keep headers, notes and part of the memory.
    let cut = &good[..good.len() / 2];
    let core = open_bytes(cut).unwrap();
    assert!(core.truncated_segments() >= 1);
    let mut b = [0u8; 4096];
    let err = core.read_phys(PhysAddr(0x1000_0000), &mut b).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
    // info still completes: unreadable pages are kept, never a panic.
    let r = crate::info::info_from(&core);
    assert!(r.stats.unreadable_pages > 0 || r.stats.unreadable_struct_pages > 0);
}

#[test]
fn random_corruption_of_headers_never_panics() {
    let (_d, path, _s) = build(SynthSpec::default());
    let good = std::fs::read(&path).unwrap();
    let head = &good[..8192];
    let mut x = 0x1234_5678_9abc_def1u64;
    for _ in 0..300 {
        let mut b = head.to_vec();
        for _ in 0..4 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = (x as usize) % b.len().min(4096 + 256);
            b[i] = (x >> 32) as u8;
        }
        if let Ok(core) = open_bytes(&b) {
            let mut buf = [0u8; 64];
            let _ = core.read_phys(PhysAddr(0x1000), &mut buf);
            let _ = core.nr_cpus();
        }
    }
}

fn with_vmcoreinfo_edit(edit: impl Fn(&str) -> String, extra: impl Fn(&mut Synth)) -> crate::info::InfoReport {
    let mut s = SynthSpec::default().build();
    s.vmcoreinfo = edit(&s.vmcoreinfo);
    extra(&mut s);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vmcore");
    s.write_elf(&path).unwrap();
    let r = crate::info::info(&path).unwrap();
    let e = s.expect;
    let c = r.counts;
    assert!(r.degraded.is_none(), "{:?}", r.degraded);
    assert_eq!(
        (c.cache, c.cache_private, c.user, c.free, c.hwpoison, c.offline),
        (e.cache, e.cache_private, e.user, e.free, e.hwpoison, e.offline)
    );
    r
}

#[test]
fn flatmem_mem_map() {
    // `mem_map` is a kernel variable holding the array address; here the vmemmap base, which
    // is linear over all pfns (the unmapped middle only covers a hole).
    let var = 0x124_0000u64; // inside the kernel image mapping
    let r = with_vmcoreinfo_edit(
        |v| {
            let kept: String = v.lines().filter(|l| !l.contains("(mem_section")).map(|l| format!("{l}\n")).collect();
            format!("{kept}SYMBOL(mem_map)={:x}\n", var - crate::testkit::PHYS_BASE + crate::testkit::START_KERNEL_MAP)
        },
        |s| {
            let vm = s.vmemmap;
            s.phys.write_u64(var, vm);
        },
    );
    assert_eq!(r.memory_model.as_deref(), Some("Flat"));
    assert_eq!(r.stats.unreadable_struct_pages, 0);
}

#[test]
fn sparsemem_static_array() {
    // Not EXTREME: LENGTH(mem_section) is NR_MEM_SECTIONS and the symbol is the array itself.
    let r = with_vmcoreinfo_edit(
        |v| {
            v.lines()
                .map(|l| {
                    if l.starts_with("SYMBOL(mem_section)") {
                        "SYMBOL(mem_section)=ffff888001231000".to_string()
                    } else if l.starts_with("LENGTH(mem_section)") {
                        "LENGTH(mem_section)=524288".to_string()
                    } else {
                        l.to_string()
                    }
                })
                .map(|l| format!("{l}\n"))
                .collect()
        },
        |_| {},
    );
    assert_eq!(r.memory_model.as_deref(), Some("Sparse"));
}

#[test]
fn pn_xnum_program_header_count() {
    let (_d, path, _s) = build(SynthSpec::default());
    let mut b = std::fs::read(&path).unwrap();
    b[56..58].copy_from_slice(&0xffffu16.to_le_bytes()); // e_phnum = PN_XNUM
    b[40..48].copy_from_slice(&1024u64.to_le_bytes()); // e_shoff
    b[1024 + 44..1024 + 48].copy_from_slice(&4u32.to_le_bytes()); // sh_info = 4 phdrs
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("xnum");
    std::fs::write(&p, &b).unwrap();
    let core = ElfVmcore::open(&p).unwrap();
    assert_eq!(core.loads().len(), 3);
    assert_eq!(core.nr_cpus(), 2);
}
