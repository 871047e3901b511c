//! Round trips of every writer through our readers on synthetic vmcores (crate::testkit).

use std::path::{Path, PathBuf};

use super::codec::FLAG_INCOMPLETE;
use super::*;
use crate::addr::PhysAddr;
use crate::classify::{ClassifyOptions, DEFAULT_WINDOW};
use crate::diskdump::DiskDump;
use crate::testkit::{SynthSpec, RAM};

/// `n` incompressible bytes from xorshift state `x`.
fn noise(x: &mut u64, n: usize) -> Vec<u8> {
    (0..n)
        .map(|_| {
            *x ^= *x << 13;
            *x ^= *x >> 7;
            *x ^= *x << 17;
            *x as u8
        })
        .collect()
}

/// A synthetic vmcore with extra kept pages of text-like, random and repeated data.
fn synth(dir: &Path) -> PathBuf {
    let mut s = SynthSpec::default().build();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut placed = 0;
    let mut pfn = RAM[1].1 / 4096 - 1;
    while placed < 40 {
        if !s.phys.pages.contains_key(&pfn) {
            let page: Vec<u8> = match placed % 4 {
                0 => noise(&mut x, 4096),
                1 => format!("pfn {pfn} kernel text {placed} ").bytes().cycle().take(4096).collect(),
                2 => (0..4096u32).map(|i| (i / 64) as u8).collect(),
                _ => {
                    let mut p = vec![0u8; 4096];
                    p[4095] = 1;
                    p
                }
            };
            s.phys.write(pfn * 4096, &page);
            placed += 1;
        }
        pfn -= 3;
    }
    let path = dir.join("vmcore");
    s.write_elf(&path).unwrap();
    path
}

/// The classes an independent classifier run gives (zero pages marked at bit 1).
fn expected_classes(core: &ElfVmcore, dl: u8) -> Vec<PageClass> {
    let mut cls = Classifier::new(core, core.vmcoreinfo(), ClassifyOptions::level(dl));
    let max = cls.max_pfn().0;
    let mut all = Vec::new();
    let mut s = 0;
    while s < max {
        let e = (s + DEFAULT_WINDOW).min(max);
        let mut out = vec![PageClass::Hole; (e - s) as usize];
        cls.classify_range(Pfn(s), Pfn(e), &mut out).unwrap();
        all.extend(out);
        s = e;
    }
    all
}

fn page_of(m: &dyn PhysMemory, pfn: u64) -> Option<Vec<u8>> {
    let mut b = vec![0u8; 4096];
    m.read_phys(PhysAddr(pfn * 4096), &mut b).ok().map(|_| b)
}

/// Every page the dump keeps equals the source; the kept set is exactly the classifier's.
fn check_kdump(src: &ElfVmcore, dump: &DiskDump, dl: u8, report: &FilterReport) {
    let classes = expected_classes(src, dl);
    assert_eq!(dump.max_mapnr(), classes.len() as u64);
    assert!(!dump.is_incomplete());
    let mut kept = 0u64;
    let mut nonzero_kept = 0u64;
    for (pfn, c) in classes.iter().enumerate() {
        let pfn = pfn as u64;
        assert_eq!(dump.is_in_memory_map(pfn), *c != PageClass::Hole, "pfn {pfn:#x} {c:?}");
        assert_eq!(dump.is_dumpable(pfn), *c == PageClass::Kept, "pfn {pfn:#x} {c:?}");
        if *c == PageClass::Kept {
            kept += 1;
            let want = page_of(src, pfn).unwrap();
            let got = page_of(dump, pfn).unwrap_or_else(|| panic!("pfn {pfn:#x} unreadable"));
            assert_eq!(got, want, "pfn {pfn:#x}");
            if want.iter().any(|&b| b != 0) {
                nonzero_kept += 1;
            }
        } else {
            assert!(page_of(dump, pfn).is_none(), "excluded pfn {pfn:#x} readable");
        }
    }
    assert_eq!(kept, report.written_pages);
    assert_eq!(dump.num_dumpable(), kept);
    assert!(nonzero_kept > 40, "{nonzero_kept}");
    if dl & 1 != 0 {
        assert_eq!(report.counts.zero, kept - nonzero_kept);
    }
    // Metadata.
    assert_eq!(dump.notes_bytes(), src.notes_bytes());
    assert_eq!(DumpSource::nr_cpus(dump), 2);
    assert_eq!(dump.vmcoreinfo().and_then(|v| v.osrelease()), src.vmcoreinfo().and_then(|v| v.osrelease()));
    let sub = dump.sub_header();
    assert_eq!(sub.dump_level, i32::from(dl));
    let (o, s) = src.vmcoreinfo_desc().unwrap();
    assert_eq!(sub.offset_vmcoreinfo as u64, 4096 + 104 + o as u64);
    assert_eq!(sub.size_vmcoreinfo, s as u64);
    assert_eq!(dump.header().header_version, 6);
    assert_eq!(&dump.header().signature, b"KDUMP   ");
    assert!(dump.release().len() > 2, "utsname release {:?}", dump.release());
}

fn write_file(src: &dyn DumpSource, path: &Path, opts: &FilterOptions) -> FilterReport {
    let mut f = std::fs::File::create(path).unwrap();
    write_dump(src, &mut f, opts, &mut |_, _| {}).unwrap()
}

#[test]
fn kdump_round_trip_every_codec_and_level() {
    let dir = tempfile::tempdir().unwrap();
    let vmcore = synth(dir.path());
    let core = ElfVmcore::open(&vmcore).unwrap();
    for m in Compression::ALL {
        for dl in [31u8, 1, 0, 16] {
            let opts = FilterOptions { dump_level: dl, compression: m, ..FilterOptions::default() };
            let out = dir.path().join(format!("dump-{}-{dl}", m.name()));
            let r = write_file(&core, &out, &opts);
            let dump = DiskDump::open(&out).unwrap();
            assert_eq!(dump.header().status, m.flag(), "{m:?}");
            check_kdump(&core, &dump, dl, &r);
            if m != Compression::None {
                assert!(r.compressed_pages > 0, "{m:?} compressed nothing");
            }
            assert!(r.raw_pages >= 10, "random pages must be stored raw ({m:?})");
            assert_eq!(r.output_bytes, std::fs::metadata(&out).unwrap().len());
        }
    }
}

#[test]
fn filter_api_and_report_counts() {
    let dir = tempfile::tempdir().unwrap();
    let vmcore = synth(dir.path());
    let out = dir.path().join("out");
    let mut calls = 0;
    let r = filter(&vmcore, Output::Path(&out), &FilterOptions::default(), &mut |d, t| {
        assert!(d <= t);
        calls += 1;
    })
    .unwrap();
    assert!(calls >= 2);
    let core = ElfVmcore::open(&vmcore).unwrap();
    let c = crate::info::counts_at_level(&core, 31);
    assert_eq!(r.counts, c, "report counts equal the info counts at -d 31");
    // Stream output without -F is refused.
    let mut sink = Vec::new();
    assert!(matches!(
        filter(&vmcore, Output::Stream(&mut sink), &FilterOptions::default(), &mut |_, _| {}),
        Err(WriteError::Unsupported(_))
    ));
}

#[test]
fn threads_give_identical_output() {
    let dir = tempfile::tempdir().unwrap();
    let vmcore = synth(dir.path());
    let core = ElfVmcore::open(&vmcore).unwrap();
    for m in [Compression::Lzo, Compression::Zstd, Compression::Zlib] {
        let mut outs = Vec::new();
        for t in [0usize, 2, 3] {
            let p = dir.path().join(format!("t{t}"));
            let opts = FilterOptions { compression: m, num_threads: t, ..FilterOptions::default() };
            write_file(&core, &p, &opts);
            outs.push(std::fs::read(&p).unwrap());
        }
        assert!(outs.iter().all(|o| *o == outs[0]), "{m:?}");
    }
}

#[test]
fn flattened_stream_unflattens_to_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let vmcore = synth(dir.path());
    let core = ElfVmcore::open(&vmcore).unwrap();
    for m in [Compression::Lzo, Compression::Snappy] {
        let opts = FilterOptions { compression: m, flattened: true, ..FilterOptions::default() };
        let direct = dir.path().join("direct");
        write_file(&core, &direct, &FilterOptions { flattened: false, ..opts });
        let mut stream = Vec::new();
        let r = filter(&vmcore, Output::Stream(&mut stream), &opts, &mut |_, _| {}).unwrap();
        assert_eq!(&stream[..12], b"makedumpfile");
        assert_eq!(&stream[stream.len() - 16..], &[0xff; 16]);
        let un = dir.path().join("un");
        let f = std::fs::File::options().create(true).truncate(true).read(true).write(true).open(&un).unwrap();
        let size = crate::flat::unflatten(&mut &stream[..], &f, &un).unwrap();
        assert_eq!(size, r.output_bytes);
        assert_eq!(std::fs::read(&un).unwrap(), std::fs::read(&direct).unwrap());
        // Reading the flattened file directly.
        let fp = dir.path().join("flat");
        std::fs::write(&fp, &stream).unwrap();
        let d = DiskDump::open(&fp).unwrap();
        assert!(d.is_flattened());
        check_kdump(&core, &d, 31, &r);
        // -F to a file path too.
        let fp2 = dir.path().join("flat2");
        filter(&vmcore, Output::Path(&fp2), &opts, &mut |_, _| {}).unwrap();
        assert_eq!(std::fs::read(&fp2).unwrap(), stream);
    }
}

#[test]
fn elf_output_keeps_dumpable_pages_and_splits_long_exclusions() {
    let dir = tempfile::tempdir().unwrap();
    let vmcore = synth(dir.path());
    let core = ElfVmcore::open(&vmcore).unwrap();
    for dl in [31u8, 0] {
        let out = dir.path().join(format!("elf{dl}"));
        let opts = FilterOptions { dump_level: dl, format: DumpFormat::Elf, ..FilterOptions::default() };
        let r = write_file(&core, &out, &opts);
        assert_eq!(r.output_bytes, std::fs::metadata(&out).unwrap().len());
        let e = ElfVmcore::open(&out).unwrap();
        assert_eq!(e.ehdr().e_flags, 0);
        assert_eq!(e.notes_bytes(), core.notes_bytes());
        let classes = expected_classes(&core, dl);
        let mut zeros = vec![0u8; 4096];
        for (pfn, c) in classes.iter().enumerate() {
            let want = page_of(&core, pfn as u64);
            let got = page_of(&e, pfn as u64);
            match c {
                PageClass::Kept => {
                    let w = want.unwrap();
                    let g = got.unwrap_or_else(|| panic!("pfn {pfn:#x} missing"));
                    // Zero pages (bit 1) may be left out; everything else must match.
                    if dl & 1 == 0 || w.iter().any(|&b| b != 0) {
                        assert_eq!(g, w, "pfn {pfn:#x}");
                    } else {
                        assert_eq!(g, zeros, "pfn {pfn:#x}");
                    }
                }
                PageClass::Hole => assert!(got.is_none()),
                _ => {
                    // Excluded: original contents (short run) or zeros (long run).
                    if let (Some(g), Some(w)) = (got, want) {
                        assert!(g == w || g == zeros, "pfn {pfn:#x}");
                    }
                }
            }
        }
        zeros.clear();
        if dl == 31 {
            assert!(e.loads().len() > core.loads().len(), "long excluded runs split segments");
            assert!(e.loads().iter().any(|l| l.file_size < l.mem_size));
            assert!(e.file_len() < core.file_len());
        } else {
            assert_eq!(e.loads().len(), core.loads().len());
        }
    }
}

/// A file that fails with ENOSPC once it would grow beyond `limit` bytes; rewrites of
/// existing bytes succeed (like a full filesystem).
struct FullDisk {
    file: std::fs::File,
    size: u64,
    limit: u64,
}

impl PosWrite for FullDisk {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        let end = offset + data.len() as u64;
        if end > self.size.max(self.limit) {
            // Write what fits, then fail.
            if offset < self.limit {
                let fit = (self.limit - offset) as usize;
                std::os::unix::fs::FileExt::write_all_at(&self.file, &data[..fit], offset)?;
                self.size = self.size.max(self.limit);
            }
            return Err(std::io::Error::from_raw_os_error(28));
        }
        std::os::unix::fs::FileExt::write_all_at(&self.file, data, offset)?;
        self.size = self.size.max(end);
        Ok(())
    }
}

/// A file sink that counts read-backs of bitmap 2; after `fail_after` successful reads every
/// later one fails with EIO.
struct ReadBackFile {
    file: std::fs::File,
    reads: usize,
    fail_after: Option<usize>,
}

impl ReadBackFile {
    fn create(path: &Path, fail_after: Option<usize>) -> ReadBackFile {
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path).unwrap();
        ReadBackFile { file, reads: 0, fail_after }
    }
}

impl PosWrite for ReadBackFile {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(&self.file, data, offset)
    }

    fn read_back(&mut self, offset: u64, buf: &mut [u8]) -> Option<std::io::Result<()>> {
        self.reads += 1;
        if self.fail_after.is_some_and(|n| self.reads > n) {
            return Some(Err(std::io::Error::from_raw_os_error(5)));
        }
        Some(std::os::unix::fs::FileExt::read_exact_at(&self.file, buf, offset))
    }
}

/// A dump too large to keep bitmap 2 in memory reads it back from the output file in pass 2
/// (in reads of any size, runs of kept pages crossing their boundaries): the same bytes as
/// with the bitmap kept, and as classifying again where the sink cannot be read.
#[test]
fn pass_2_reads_bitmap_2_back_from_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let vmcore = synth(dir.path());
    let core = ElfVmcore::open(&vmcore).unwrap();
    let mapped = super::mapped::MappedElf::new(&core).unwrap();
    let p = dir.path().join("out");
    for dl in [31u8, 1, 0] {
        for t in [0usize, 2] {
            let opts = FilterOptions { dump_level: dl, num_threads: t, ..FilterOptions::default() };
            let kept = write_file(&mapped, &p, &opts);
            let want = std::fs::read(&p).unwrap();
            let bitmap_bytes = kept.max_pfn.div_ceil(8) as usize;
            for chunk in [None, Some(1), Some(3), Some(1000)] {
                super::kdump::FORCE_RECLASSIFY.with(|f| f.set(true));
                super::kdump::READBACK_TEST.with(|f| f.set(chunk));
                let mut w = ReadBackFile::create(&p, None);
                let r = write_dump(&mapped, &mut w, &opts, &mut |_, _| {});
                super::kdump::FORCE_RECLASSIFY.with(|f| f.set(false));
                super::kdump::READBACK_TEST.with(|f| f.set(None));
                let what = format!("-d {dl}, {t} threads, reads of {chunk:?} bytes");
                let r = r.unwrap();
                assert_eq!(std::fs::read(&p).unwrap(), want, "{what}");
                assert_eq!(r.counts, kept.counts, "{what}");
                assert_eq!(r.written_pages, kept.written_pages, "{what}");
                // The probe, then the bitmap in reads of `chunk` bytes (at least).
                let reads = 1 + bitmap_bytes.div_ceil(chunk.unwrap_or(usize::MAX).min(bitmap_bytes));
                assert!(w.reads >= reads, "{what}: {} reads, want {reads}", w.reads);
            }
        }
    }
}

/// A read-back that fails in pass 2 stops the dump with the reason, and the dump stays
/// marked incomplete.
#[test]
fn failed_bitmap_read_back_leaves_an_incomplete_dump() {
    let dir = tempfile::tempdir().unwrap();
    let vmcore = synth(dir.path());
    let core = ElfVmcore::open(&vmcore).unwrap();
    let p = dir.path().join("out");
    for t in [0usize, 2] {
        let opts = FilterOptions { dump_level: 31, num_threads: t, ..FilterOptions::default() };
        super::kdump::FORCE_RECLASSIFY.with(|f| f.set(true));
        super::kdump::READBACK_TEST.with(|f| f.set(Some(64)));
        let mut w = ReadBackFile::create(&p, Some(2));
        let r = write_dump(&core, &mut w, &opts, &mut |_, _| {});
        super::kdump::FORCE_RECLASSIFY.with(|f| f.set(false));
        super::kdump::READBACK_TEST.with(|f| f.set(None));
        let err = r.unwrap_err();
        let msg = crate::classify::error_chain(&err);
        assert!(
            matches!(err, WriteError::ReadBack { .. })
                && msg.contains("bitmap 2")
                && msg.contains("incomplete")
                && msg.contains("os error 5"),
            "{t} threads: {msg}"
        );
        assert!(DiskDump::open(&p).unwrap().is_incomplete(), "{t} threads");
    }
}

#[test]
fn enospc_leaves_an_incomplete_but_readable_dump() {
    let dir = tempfile::tempdir().unwrap();
    let vmcore = synth(dir.path());
    let core = ElfVmcore::open(&vmcore).unwrap();
    let full = dir.path().join("full");
    let opts = FilterOptions { dump_level: 0, compression: Compression::None, ..FilterOptions::default() };
    let whole = write_file(&core, &full, &opts);
    let limit = whole.output_bytes - 20 * 4096;
    let path = dir.path().join("partial");
    let mut w = FullDisk { file: std::fs::File::create(&path).unwrap(), size: 0, limit };
    let err = write_dump(&core, &mut w, &opts, &mut |_, _| {}).unwrap_err();
    let msg = crate::classify::error_chain(&err);
    assert!(msg.contains("incomplete") && msg.contains("os error 28"), "{msg}");
    let d = DiskDump::open(&path).unwrap();
    assert!(d.is_incomplete());
    assert_ne!(d.header().status & FLAG_INCOMPLETE, 0);
    // `rkdump info` says so first.
    let report = crate::info::info(&path).unwrap();
    assert!(report.incomplete);
    assert!(report.to_string().contains("status:          INCOMPLETE"), "{report}");
    assert_eq!(report.to_json()["incomplete"], true);
    let (mut ok, mut missing) = (0, 0);
    for pfn in 0..d.max_mapnr() {
        if !d.is_dumpable(pfn) {
            continue;
        }
        match page_of(&d, pfn) {
            Some(p) => {
                assert_eq!(p, page_of(&core, pfn).unwrap(), "pfn {pfn:#x}");
                ok += 1;
            }
            None => missing += 1,
        }
    }
    assert!(ok > 1000 && missing > 0, "ok {ok} missing {missing}");
    // ELF: e_flags bit 0 stays set.
    let epath = dir.path().join("partial.elf");
    let mut w = FullDisk { file: std::fs::File::create(&epath).unwrap(), size: 0, limit: 200_000 };
    let eopts = FilterOptions { format: DumpFormat::Elf, ..opts };
    assert!(write_dump(&core, &mut w, &eopts, &mut |_, _| {}).is_err());
    let e = ElfVmcore::open(&epath).unwrap();
    assert_eq!(e.ehdr().e_flags & 1, 1);
    assert!(crate::info::info(&epath).unwrap().incomplete);
    // A finished dump is not.
    assert!(!crate::info::info(&full).unwrap().incomplete);
}

#[test]
fn refiltering_our_dump_gives_the_same_pages() {
    let dir = tempfile::tempdir().unwrap();
    let vmcore = dir.path().join("vmcore");
    // Kernel data right before and after the synthetic machine's short excluded runs (28
    // cache pages at pfn 4096, 16 user at 4128, 9 free at 6144), so the ELF writer keeps
    // those runs inside a segment when their contents exist.
    let mut s = SynthSpec::default().build();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for pfn in [4095u64, 4144, 6143, 6153] {
        s.phys.write(pfn * 4096, &noise(&mut x, 4096));
    }
    s.write_elf(&vmcore).unwrap();
    let core = ElfVmcore::open(&vmcore).unwrap();
    let classes = expected_classes(&core, 31);
    for (pfn, run) in [(4095usize, 4096..4124), (4127, 4128..4144), (6143, 6144..6153)] {
        assert_eq!((classes[pfn], classes[run.end]), (PageClass::Kept, PageClass::Kept));
        assert!(run.clone().all(|p| classes[p].excluded_at(31)), "pfns {run:?}: {:?}", &classes[run.clone()]);
    }
    let first = dir.path().join("d0");
    write_file(
        &core,
        &first,
        &FilterOptions { dump_level: 0, compression: Compression::Zstd, ..FilterOptions::default() },
    );
    let second = dir.path().join("d31");
    let r = filter(&first, Output::Path(&second), &FilterOptions::default(), &mut |_, _| {}).unwrap();
    assert_eq!((r.dump_level, r.input_dump_level), (31, Some(0)));
    let d = DiskDump::open(&second).unwrap();
    check_kdump(&core, &d, 31, &r);
    // A lower level than the input's is raised to it, as makedumpfile does: what the input
    // left out cannot come back, and the header says so.
    let lower = dir.path().join("d1");
    let r = filter(
        &second,
        Output::Path(&lower),
        &FilterOptions { dump_level: 1, ..FilterOptions::default() },
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!((r.dump_level, r.input_dump_level), (31, Some(31)));
    let dl = DiskDump::open(&lower).unwrap();
    assert_eq!(dl.sub_header().dump_level, 31);
    check_kdump(&core, &dl, 31, &r);
    assert_eq!(crate::info::info(&lower).unwrap().written_at_dump_level, Some(31));
    assert_eq!(crate::info::info(&vmcore).unwrap().written_at_dump_level, None);
    // And ELF from a kdump source.
    let third = dir.path().join("e31");
    let r = filter(
        &second,
        Output::Path(&third),
        &FilterOptions { format: DumpFormat::Elf, ..FilterOptions::default() },
        &mut |_, _| {},
    )
    .unwrap();
    let e = ElfVmcore::open(&third).unwrap();
    for pfn in 0..d.max_mapnr() {
        if let Some(p) = page_of(&d, pfn) {
            assert_eq!(page_of(&e, pfn).unwrap(), p, "pfn {pfn:#x}");
        }
    }
    // Pages the kdump dump left out are not in the ELF one either: short excluded runs keep
    // their contents only where the source has them (no zeros stand in for them).
    assert_eq!(r.unreadable_pages, 0);
    // crash reads the headers and notes up to the first PT_LOAD's offset.
    let headers = 64 + 56 * (1 + e.loads().len() as u64) + e.notes_bytes().len() as u64;
    assert_eq!(e.loads()[0].file_offset.0, headers);
    // The kdump format has no virtual addresses: each segment gets its direct-map address, as
    // in /proc/vmcore, from the base VMCOREINFO's mem_section pointer gives (p_vaddr 0 would
    // put every segment over user addresses for a reader that takes it at its word, as drgn
    // does).
    assert!(e.loads().iter().all(|l| l.virt_start.0 == 0xffff_8880_0000_0000 + l.phys_start.0));
    let short_runs = (0..d.max_mapnr()).filter(|&pfn| page_of(&d, pfn).is_none() && page_of(&core, pfn).is_some());
    assert!(short_runs.clone().count() > 0);
    let in_file =
        |pfn: u64| e.loads().iter().any(|l| pfn * 4096 >= l.phys_start.0 && pfn * 4096 < l.phys_start.0 + l.file_size);
    for pfn in short_runs {
        assert!(!in_file(pfn), "pfn {pfn:#x} excluded from the kdump dump has data in the ELF one");
    }
}

#[test]
fn corrupt_kdump_headers_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let vmcore = synth(dir.path());
    let core = ElfVmcore::open(&vmcore).unwrap();
    let out = dir.path().join("d");
    write_file(&core, &out, &FilterOptions::default());
    let good = std::fs::read(&out).unwrap();
    let bad = dir.path().join("bad");
    let mut x = 12345u64;
    for i in 0..300 {
        let mut b = good.clone();
        b.truncate(if i % 7 == 0 { (x as usize) % good.len() } else { good.len() });
        for _ in 0..8 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Mostly the header, sub-header, bitmaps and descriptors.
            let pos = (x as usize) % b.len().clamp(1, 4 * 4096 + 4096 * 8);
            if pos < b.len() {
                b[pos] = (x >> 32) as u8;
            }
        }
        std::fs::write(&bad, &b).unwrap();
        if let Ok(d) = DiskDump::open(&bad) {
            let mut page = vec![0u8; 4096];
            for pfn in (0..d.max_mapnr().min(1 << 20)).step_by(97) {
                let _ = d.read_phys(PhysAddr(pfn * 4096), &mut page);
            }
        }
    }
}

#[test]
fn mapped_source_and_second_classification_give_identical_output() {
    // The ELF source read directly, through `MappedElf` (workers read page runs), through
    // `MappedElf` mapping every run as it does on /proc/vmcore (zero-checked in place), and
    // with pass 2 classifying again: same bytes.
    let dir = tempfile::tempdir().unwrap();
    let vmcore = synth(dir.path());
    let core = ElfVmcore::open(&vmcore).unwrap();
    let mapped = super::mapped::MappedElf::new(&core).unwrap();
    let like_proc = super::mapped::MappedElf::new(&core).unwrap();
    like_proc.map_like_proc();
    // What `filter` does on one thread: runs after a mostly zero run are mapped.
    let zero_runs = super::mapped::MappedElf::new(&core).unwrap();
    zero_runs.map_zero_runs(true);
    for dl in [31u8, 1, 0] {
        for t in [0usize, 2] {
            let opts = FilterOptions { dump_level: dl, num_threads: t, ..FilterOptions::default() };
            let p = dir.path().join("plain");
            let r1 = write_file(&core, &p, &opts);
            let want = std::fs::read(&p).unwrap();
            let r2 = write_file(&mapped, &p, &opts);
            assert_eq!(std::fs::read(&p).unwrap(), want, "mapped, -d {dl}, {t} threads");
            let r4 = write_file(&like_proc, &p, &opts);
            assert_eq!(std::fs::read(&p).unwrap(), want, "runs mapped as on /proc/vmcore, -d {dl}, {t} threads");
            assert!(like_proc.still_maps_runs(), "a mapping failed: the runs were read instead");
            let before = zero_runs.zero_runs_mapped().0;
            let r5 = write_file(&zero_runs, &p, &opts);
            assert_eq!(std::fs::read(&p).unwrap(), want, "mostly zero runs mapped, -d {dl}, {t} threads");
            let (mapped_runs, on) = zero_runs.zero_runs_mapped();
            assert!(on, "a mapping failed: the runs were read instead");
            if dl == 1 {
                // The synthetic machine's free memory is zero: some run follows a zero one.
                assert!(mapped_runs > before, "no run was mapped at -d 1, {t} threads");
            }
            super::kdump::FORCE_RECLASSIFY.with(|f| f.set(true));
            // `write_file`'s file is write-only: bitmap 2 cannot be read back.
            let r3 = write_file(&mapped, &p, &opts);
            super::kdump::FORCE_RECLASSIFY.with(|f| f.set(false));
            assert_eq!(std::fs::read(&p).unwrap(), want, "reclassified, -d {dl}, {t} threads");
            for r in [&r2, &r3, &r4, &r5] {
                assert_eq!(r.counts, r1.counts);
                assert_eq!(r.written_pages, r1.written_pages);
                assert_eq!(r.compressed_pages, r1.compressed_pages);
                assert_eq!(r.unreadable_pages, r1.unreadable_pages);
            }
        }
    }
}

/// Pass 1 running ahead of the workers (small windows, so output is held) and the held-output
/// limit cutting it short both give the bytes of a single-threaded dump.
#[test]
fn overlapped_passes_give_identical_output() {
    let dir = tempfile::tempdir().unwrap();
    let vmcore = synth(dir.path());
    let core = ElfVmcore::open(&vmcore).unwrap();
    for m in [Compression::Lzo, Compression::None] {
        let one = dir.path().join("one");
        let opts = |t| FilterOptions { compression: m, dump_level: 1, num_threads: t, ..FilterOptions::default() };
        let r1 = write_file(&core, &one, &opts(1));
        let want = std::fs::read(&one).unwrap();
        for (window, hold) in [(512u64, 1usize << 30), (512, 0), (64, 8192), (1 << 16, 1 << 20)] {
            super::kdump::OVERLAP_TEST.with(|f| f.set(Some((window, hold))));
            let p = dir.path().join("two");
            let r = write_file(&core, &p, &opts(2));
            super::kdump::OVERLAP_TEST.with(|f| f.set(None));
            assert_eq!(std::fs::read(&p).unwrap(), want, "{m:?} window {window} hold {hold}");
            assert_eq!(r.counts, r1.counts);
            assert_eq!(r.written_pages, r1.written_pages);
        }
    }
}

/// Progress never goes back, ends at its total, and gives classification (pass 1) a tenth of
/// the bar: the rest follows the dumpable pages, on one thread, on two (pass 1 running ahead)
/// when pass 2 classifies again and when it reads bitmap 2 back from the output.
#[test]
fn progress_is_monotonic_and_follows_the_dumpable_pages() {
    let dir = tempfile::tempdir().unwrap();
    let vmcore = synth(dir.path());
    let core = ElfVmcore::open(&vmcore).unwrap();
    for (threads, unkept, readable) in [(1usize, false, false), (2, false, false), (1, true, false), (1, true, true)] {
        super::kdump::FORCE_RECLASSIFY.with(|f| f.set(unkept));
        let mut seen: Vec<(u64, u64)> = Vec::new();
        let opts = FilterOptions { dump_level: 31, num_threads: threads, ..FilterOptions::default() };
        let path = dir.path().join(format!("p{threads}{unkept}{readable}"));
        // A write-only file cannot be read back: pass 2 classifies again.
        let mut f =
            std::fs::OpenOptions::new().read(readable).write(true).create(true).truncate(true).open(&path).unwrap();
        let r = write_dump(&core, &mut f, &opts, &mut |d, t| seen.push((d, t))).unwrap();
        super::kdump::FORCE_RECLASSIFY.with(|f| f.set(false));
        let what = format!("{threads} threads, bitmap not kept {unkept}, readable {readable}");
        let total = seen[0].1;
        assert_eq!(total, r.max_pfn * 10, "{what}");
        assert!(seen.iter().all(|&(_, t)| t == total), "{what}");
        assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0), "{what}: {seen:?}");
        assert_eq!(seen.last().unwrap().0, total, "{what}");
        // Pass 1 alone never passes a tenth; pass 2 reports points in between.
        assert!(seen.iter().any(|&(d, _)| d > r.max_pfn && d < total), "{what}: {seen:?}");
    }
}

/// A full disk in the middle of the overlapped passes (worker threads, pass 1 running ahead,
/// output held) still leaves a marked, readable prefix, and the error says where.
#[test]
fn enospc_with_worker_threads_leaves_a_marked_dump() {
    let dir = tempfile::tempdir().unwrap();
    let vmcore = synth(dir.path());
    let core = ElfVmcore::open(&vmcore).unwrap();
    let opts =
        FilterOptions { dump_level: 0, compression: Compression::None, num_threads: 2, ..FilterOptions::default() };
    let whole = write_file(&core, &dir.path().join("full"), &opts);
    let n = whole.output_bytes;
    for (window, limit) in [(512u64, n / 2), (512, n * 3 / 4), (64, n / 3), (1 << 16, n - 4096)] {
        super::kdump::OVERLAP_TEST.with(|f| f.set(Some((window, 64 << 10))));
        let path = dir.path().join("partial");
        let mut w = FullDisk { file: std::fs::File::create(&path).unwrap(), size: 0, limit };
        let err = write_dump(&core, &mut w, &opts, &mut |_, _| {});
        super::kdump::OVERLAP_TEST.with(|f| f.set(None));
        let msg = crate::classify::error_chain(&err.unwrap_err());
        assert!(msg.contains("incomplete") && msg.contains("os error 28"), "{msg}");
        let d = DiskDump::open(&path).unwrap();
        assert!(d.is_incomplete(), "window {window} limit {limit}");
        let mut ok = 0;
        for pfn in 0..d.max_mapnr() {
            if d.is_dumpable(pfn) {
                if let Some(p) = page_of(&d, pfn) {
                    assert_eq!(p, page_of(&core, pfn).unwrap(), "pfn {pfn:#x}");
                    ok += 1;
                }
            }
        }
        // Descriptors follow every 4 MiB of data: a cut past that keeps pages readable.
        assert!(limit < 5 << 20 || ok > 0, "window {window} limit {limit}: nothing readable");
    }
}

/// A synthetic vmcore whose kept pages include copies: of an incompressible page far apart
/// (other batches) and next to each other (one batch), of a text page, and near-copies that
/// differ in one byte (must not be shared).
fn synth_with_copies(dir: &Path) -> PathBuf {
    let mut s = SynthSpec::default().build();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let random = noise(&mut x, 4096);
    let text: Vec<u8> = b"identical kernel text ".iter().copied().cycle().take(4096).collect();
    let top = RAM[1].1 / 4096;
    let mut near = random.clone();
    near[2049] ^= 0x40;
    let mut placed = 0;
    let mut pfn = top - 2;
    // Far apart: every 400th pfn downwards (the synthetic machine keeps long runs), staying
    // inside the second RAM range.
    while placed < 24 {
        assert!(pfn >= RAM[1].0 / 4096 + 400, "only {placed} far-apart copies fit");
        if !s.phys.pages.contains_key(&pfn) {
            let page = match placed % 3 {
                0 => &random,
                1 => &text,
                _ => &near,
            };
            s.phys.write(pfn * 4096, page);
            placed += 1;
        }
        pfn -= 400;
    }
    // Side by side.
    let mut run = 0;
    let mut pfn = RAM[1].0 / 4096 + 64;
    while run < 8 {
        if !s.phys.pages.contains_key(&pfn) {
            s.phys.write(pfn * 4096, &random);
            run += 1;
        }
        pfn += 1;
    }
    let path = dir.join("vmcore");
    s.write_elf(&path).unwrap();
    path
}

#[test]
fn identical_pages_share_one_stored_copy() {
    let dir = tempfile::tempdir().unwrap();
    let vmcore = synth_with_copies(dir.path());
    let core = ElfVmcore::open(&vmcore).unwrap();
    // Deduplication needs the workers' page reader (the mapped source `filter` uses).
    let mapped = super::mapped::MappedElf::new(&core).unwrap();
    for dl in [1u8, 0, 31] {
        // What should be shared: kept non-zero pages equal to an earlier kept page.
        let classes = expected_classes(&core, dl);
        let mut seen = std::collections::HashSet::new();
        let mut want_shared = 0u64;
        for (pfn, c) in classes.iter().enumerate() {
            if *c != PageClass::Kept {
                continue;
            }
            let page = page_of(&core, pfn as u64).unwrap();
            // At -d 0 zero pages are data too (stored once, then shared).
            if dl & 1 != 0 && page.iter().all(|&b| b == 0) {
                continue;
            }
            if !seen.insert(page) {
                want_shared += 1;
            }
        }
        assert!(want_shared >= 20, "-d {dl}: only {want_shared} copies in the test input");
        for m in [Compression::Lzo, Compression::Zstd, Compression::None] {
            let base = FilterOptions { dump_level: dl, compression: m, dedup: true, ..FilterOptions::default() };
            let mut outs = Vec::new();
            let mut report = None;
            for t in [0usize, 2, 3] {
                let p = dir.path().join(format!("dedup-{t}"));
                let r = write_file(&mapped, &p, &FilterOptions { num_threads: t, ..base });
                let dump = DiskDump::open(&p).unwrap();
                check_kdump(&core, &dump, dl, &r);
                assert_eq!(r.shared_pages, want_shared, "-d {dl} {m:?} {t} threads");
                outs.push(std::fs::read(&p).unwrap());
                // Shared descriptors repeat an earlier descriptor; no other two agree.
                let mut by_off = std::collections::HashMap::new();
                for pfn in 0..dump.max_mapnr() {
                    if !dump.is_dumpable(pfn) {
                        continue;
                    }
                    let d = dump.page_desc(pfn).unwrap();
                    let page = page_of(&core, pfn).unwrap();
                    if let Some(other) = by_off.insert(d.offset, page.clone()) {
                        assert_eq!(other, page, "-d {dl} {m:?}: pfn {pfn:#x} shares another page's data");
                    }
                }
                report = Some(r);
            }
            assert!(outs.iter().all(|o| *o == outs[0]), "-d {dl} {m:?}: threads differ");
            let p = dir.path().join("plain");
            let plain = write_file(&mapped, &p, &FilterOptions { dedup: false, ..base });
            assert_eq!(plain.shared_pages, 0);
            let r = report.unwrap();
            assert_eq!(plain.compressed_pages + plain.raw_pages, r.compressed_pages + r.raw_pages + r.shared_pages);
            assert!(
                r.output_bytes + want_shared * 20 <= plain.output_bytes,
                "-d {dl} {m:?}: {} bytes shared against {} plain",
                r.output_bytes,
                plain.output_bytes
            );
        }
    }
}

/// A source without a page reader (a kdump-compressed input, or the ELF reader itself) is
/// written without deduplication, even when asked for.
#[test]
fn dedup_without_a_page_reader_stores_every_page() {
    let dir = tempfile::tempdir().unwrap();
    let vmcore = synth_with_copies(dir.path());
    let core = ElfVmcore::open(&vmcore).unwrap();
    let opts = FilterOptions { dump_level: 1, dedup: true, num_threads: 2, ..FilterOptions::default() };
    let p = dir.path().join("d");
    let r = write_file(&core, &p, &opts);
    assert_eq!(r.shared_pages, 0);
    assert!(!r.dedup, "the report claims identical pages were looked for");
    check_kdump(&core, &DiskDump::open(&p).unwrap(), 1, &r);
}

/// With every page hashing alike, each page is a candidate for the first one: only byte
/// comparison keeps the dump correct (a crafted hash collision cannot alias two pages).
#[test]
fn hash_collisions_are_caught_by_comparing_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let vmcore = synth_with_copies(dir.path());
    let core = ElfVmcore::open(&vmcore).unwrap();
    let mapped = super::mapped::MappedElf::new(&core).unwrap();
    super::dedup::COLLIDE.with(|c| c.set(true));
    for t in [0usize, 2] {
        let opts = FilterOptions {
            dump_level: 1,
            compression: Compression::Zstd,
            dedup: true,
            num_threads: t,
            ..FilterOptions::default()
        };
        let p = dir.path().join("c");
        let r = write_file(&mapped, &p, &opts);
        check_kdump(&core, &DiskDump::open(&p).unwrap(), 1, &r);
        // Only copies of the first non-zero kept page can be shared.
        let classes = expected_classes(&core, 1);
        let pages: Vec<Vec<u8>> = classes
            .iter()
            .enumerate()
            .filter(|(_, c)| **c == PageClass::Kept)
            .map(|(pfn, _)| page_of(&core, pfn as u64).unwrap())
            .filter(|p| p.iter().any(|&b| b != 0))
            .collect();
        let copies_of_first = pages[1..].iter().filter(|p| **p == pages[0]).count() as u64;
        assert_eq!(r.shared_pages, copies_of_first, "{t} threads");
        assert!(r.dedup);
    }
    super::dedup::COLLIDE.with(|c| c.set(false));
}

/// The oracle for the ELF layout: makedumpfile `-E` of the same synthetic vmcores, byte for
/// byte (short excluded runs kept, long ones splitting segments, the offsets of empty pieces).
#[test]
fn elf_output_is_byte_identical_to_makedumpfile_on_synthetic_vmcores() {
    if !crate::mdf::available() {
        eprintln!("SKIPPED: makedumpfile is not installed");
        return;
    }
    for spec in [
        SynthSpec { odd_slab_mapping: false, ..SynthSpec::default() },
        SynthSpec { odd_slab_mapping: false, text_segment: true, ..SynthSpec::default() },
    ] {
        let dir = tempfile::tempdir().unwrap();
        let vmcore = dir.path().join("vmcore");
        spec.build().write_elf(&vmcore).unwrap();
        let core = ElfVmcore::open(&vmcore).unwrap();
        let ours = dir.path().join("ours");
        // makedumpfile keeps the free pages of per-CPU lists: its page selection.
        let opts = FilterOptions { format: DumpFormat::Elf, percpu_free: false, ..FilterOptions::default() };
        write_file(&core, &ours, &opts);
        let theirs = dir.path().join("theirs");
        let o = std::process::Command::new("makedumpfile")
            .args(["-E", "-d", "31"])
            .arg(&vmcore)
            .arg(&theirs)
            .output()
            .unwrap();
        assert!(o.status.success(), "makedumpfile: {}", String::from_utf8_lossy(&o.stderr));
        let (a, mut b) = (std::fs::read(&ours).unwrap(), std::fs::read(&theirs).unwrap());
        // The one difference we make: makedumpfile gives an empty first PT_LOAD offset 0,
        // which crash cannot open (it reads the headers up to that offset); ours is the end
        // of the headers and notes.
        let first = 64 + 56;
        let field = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
        if field(&b, first + 8) == 0 && field(&b, first + 32) == 0 {
            let end_of_notes = field(&b, 64 + 8) + field(&b, 64 + 32);
            b[first + 8..first + 16].copy_from_slice(&end_of_notes.to_le_bytes());
        }
        let at = a.iter().zip(&b).position(|(x, y)| x != y);
        assert!(a == b, "{spec:?}: {} and {} bytes, first difference at {at:?}", a.len(), b.len());
        // Each variant has an empty piece of either kind.
        let e = ElfVmcore::open(&ours).unwrap();
        let empty: Vec<u64> = e.loads().iter().filter(|l| l.file_size == 0).map(|l| l.file_offset.0).collect();
        assert!(empty.contains(&0) && empty.iter().any(|&o| o != 0), "{spec:?}: empty pieces at {empty:?}");
    }
}
