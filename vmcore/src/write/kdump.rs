//! kdump-compressed writer ("KDUMP   ", header version 6; FORMATS.md §1).
//!
//! Layout: block 0 header, block 1.. sub-header + the source's notes, bitmap 1 and bitmap 2,
//! the descriptor table (24 bytes per dumpable pfn), then page data packed back to back,
//! starting with one shared zero page when dump level bit 1 is set.
//!
//! Pass 1 classifies each window of pfns, writes its slice of both bitmaps and counts
//! dumpable pages; that count fixes where the data area starts. Pass 2 walks bitmap 2 of
//! pass 1 (or classifies again when it was too large to keep), compresses kept pages and
//! writes data and descriptors as two positioned streams. With worker threads and a file
//! output, pass 1 runs ahead of pass 2 and the workers' output is held until it ends.

use super::codec::FLAG_INCOMPLETE;
use super::dedup::{Mark, WriterSlots};
use super::parallel::{self, Batch, PageResult, PendingRead, ZeroHint};
use super::{
    classify_window, put, DumpSource, FilterOptions, FilterReport, PosWrite, WriteError, BATCH_PAGES, FLUSH_BYTES,
    WINDOW_PFNS,
};
use crate::addr::{Pfn, VirtAddr};
use crate::classify::{ClassCounts, Classifier, ClassifyOptions, PageClass};
use crate::kmem::KernelMemory;

/// `struct disk_dump_header` (LP64).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DiskDumpHeader {
    /// "KDUMP   ".
    pub signature: [u8; 8],
    /// 6.
    pub header_version: i32,
    /// `struct new_utsname`: sysname, nodename, release, version, machine, domainname.
    pub utsname: [u8; 390],
    /// Alignment padding.
    pub pad: [u8; 6],
    /// Crash time (CRASHTIME), seconds.
    pub tv_sec: i64,
    /// Always 0 (see FORMATS.md §1.2).
    pub tv_usec: i64,
    /// Compression flag | incomplete | excluded vmemmap.
    pub status: u32,
    /// Page size.
    pub block_size: i32,
    /// Blocks of sub-header + notes.
    pub sub_hdr_size: i32,
    /// Blocks of both bitmaps.
    pub bitmap_blocks: u32,
    /// min(max_mapnr, u32::MAX).
    pub max_mapnr: u32,
    /// 0.
    pub total_ram_blocks: u32,
    /// 0.
    pub device_blocks: u32,
    /// 0.
    pub written_blocks: u32,
    /// 0.
    pub current_cpu: u32,
    /// CORE/NT_PRSTATUS notes.
    pub nr_cpus: i32,
}

/// Size of [`DiskDumpHeader`] on disk.
pub const SIZEOF_DISK_DUMP_HEADER: usize = 464;
const _: () = assert!(std::mem::size_of::<DiskDumpHeader>() == SIZEOF_DISK_DUMP_HEADER);

/// `struct kdump_sub_header` (LP64, version 6).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KdumpSubHeader {
    /// NUMBER(phys_base) (x86_64) or NUMBER(PHYS_OFFSET) (arm64).
    pub phys_base: u64,
    /// `-d`.
    pub dump_level: i32,
    /// 0 (no --split).
    pub split: i32,
    /// Split only.
    pub start_pfn: u64,
    /// Split only.
    pub end_pfn: u64,
    /// File offset of the VMCOREINFO note's desc.
    pub offset_vmcoreinfo: i64,
    /// Its size.
    pub size_vmcoreinfo: u64,
    /// File offset of the notes (block size + 104).
    pub offset_note: i64,
    /// Size of the notes.
    pub size_note: u64,
    /// 0.
    pub offset_eraseinfo: i64,
    /// 0.
    pub size_eraseinfo: u64,
    /// Split only.
    pub start_pfn_64: u64,
    /// Split only.
    pub end_pfn_64: u64,
    /// max_mapnr.
    pub max_mapnr_64: u64,
}

/// Size of [`KdumpSubHeader`] on disk.
pub const SIZEOF_KDUMP_SUB_HEADER: usize = 104;
const _: () = assert!(std::mem::size_of::<KdumpSubHeader>() == SIZEOF_KDUMP_SUB_HEADER);

/// `struct page_desc`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PageDesc {
    /// Absolute file offset of the data.
    pub offset: i64,
    /// Stored length.
    pub size: u32,
    /// Compression flag, 0 = raw.
    pub flags: u32,
    /// Always 0.
    pub page_flags: u64,
}

/// Size of [`PageDesc`] on disk.
pub const SIZEOF_PAGE_DESC: usize = 24;
const _: () = assert!(std::mem::size_of::<PageDesc>() == SIZEOF_PAGE_DESC);

impl DiskDumpHeader {
    /// Little-endian bytes.
    pub fn to_bytes(&self) -> [u8; SIZEOF_DISK_DUMP_HEADER] {
        let mut b = [0u8; SIZEOF_DISK_DUMP_HEADER];
        b[0..8].copy_from_slice(&self.signature);
        b[8..12].copy_from_slice(&self.header_version.to_le_bytes());
        b[12..402].copy_from_slice(&self.utsname);
        b[408..416].copy_from_slice(&self.tv_sec.to_le_bytes());
        b[416..424].copy_from_slice(&self.tv_usec.to_le_bytes());
        b[424..428].copy_from_slice(&self.status.to_le_bytes());
        b[428..432].copy_from_slice(&self.block_size.to_le_bytes());
        b[432..436].copy_from_slice(&self.sub_hdr_size.to_le_bytes());
        b[436..440].copy_from_slice(&self.bitmap_blocks.to_le_bytes());
        b[440..444].copy_from_slice(&self.max_mapnr.to_le_bytes());
        b[444..448].copy_from_slice(&self.total_ram_blocks.to_le_bytes());
        b[448..452].copy_from_slice(&self.device_blocks.to_le_bytes());
        b[452..456].copy_from_slice(&self.written_blocks.to_le_bytes());
        b[456..460].copy_from_slice(&self.current_cpu.to_le_bytes());
        b[460..464].copy_from_slice(&self.nr_cpus.to_le_bytes());
        b
    }

    /// Parse little-endian bytes.
    pub fn from_bytes(b: &[u8; SIZEOF_DISK_DUMP_HEADER]) -> DiskDumpHeader {
        let i32_at = |o: usize| i32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let i64_at = |o: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[o..o + 8]);
            i64::from_le_bytes(a)
        };
        let mut signature = [0u8; 8];
        signature.copy_from_slice(&b[0..8]);
        let mut utsname = [0u8; 390];
        utsname.copy_from_slice(&b[12..402]);
        DiskDumpHeader {
            signature,
            header_version: i32_at(8),
            utsname,
            pad: [0; 6],
            tv_sec: i64_at(408),
            tv_usec: i64_at(416),
            status: u32_at(424),
            block_size: i32_at(428),
            sub_hdr_size: i32_at(432),
            bitmap_blocks: u32_at(436),
            max_mapnr: u32_at(440),
            total_ram_blocks: u32_at(444),
            device_blocks: u32_at(448),
            written_blocks: u32_at(452),
            current_cpu: u32_at(456),
            nr_cpus: i32_at(460),
        }
    }
}

impl KdumpSubHeader {
    /// Little-endian bytes.
    pub fn to_bytes(&self) -> [u8; SIZEOF_KDUMP_SUB_HEADER] {
        let mut b = [0u8; SIZEOF_KDUMP_SUB_HEADER];
        let words: [u64; 13] = [
            self.phys_base,
            self.start_pfn,
            self.end_pfn,
            self.offset_vmcoreinfo as u64,
            self.size_vmcoreinfo,
            self.offset_note as u64,
            self.size_note,
            self.offset_eraseinfo as u64,
            self.size_eraseinfo,
            self.start_pfn_64,
            self.end_pfn_64,
            self.max_mapnr_64,
            0,
        ];
        b[0..8].copy_from_slice(&words[0].to_le_bytes());
        b[8..12].copy_from_slice(&self.dump_level.to_le_bytes());
        b[12..16].copy_from_slice(&self.split.to_le_bytes());
        for (i, w) in words[1..12].iter().enumerate() {
            let o = 16 + 8 * i;
            b[o..o + 8].copy_from_slice(&w.to_le_bytes());
        }
        b
    }

    /// Parse little-endian bytes.
    pub fn from_bytes(b: &[u8; SIZEOF_KDUMP_SUB_HEADER]) -> KdumpSubHeader {
        let u64_at = |o: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[o..o + 8]);
            u64::from_le_bytes(a)
        };
        let i32_at = |o: usize| i32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        KdumpSubHeader {
            phys_base: u64_at(0),
            dump_level: i32_at(8),
            split: i32_at(12),
            start_pfn: u64_at(16),
            end_pfn: u64_at(24),
            offset_vmcoreinfo: u64_at(32) as i64,
            size_vmcoreinfo: u64_at(40),
            offset_note: u64_at(48) as i64,
            size_note: u64_at(56),
            offset_eraseinfo: u64_at(64) as i64,
            size_eraseinfo: u64_at(72),
            start_pfn_64: u64_at(80),
            end_pfn_64: u64_at(88),
            max_mapnr_64: u64_at(96),
        }
    }
}

impl PageDesc {
    /// Little-endian bytes.
    pub fn to_bytes(&self) -> [u8; SIZEOF_PAGE_DESC] {
        let mut b = [0u8; SIZEOF_PAGE_DESC];
        b[0..8].copy_from_slice(&self.offset.to_le_bytes());
        b[8..12].copy_from_slice(&self.size.to_le_bytes());
        b[12..16].copy_from_slice(&self.flags.to_le_bytes());
        b[16..24].copy_from_slice(&self.page_flags.to_le_bytes());
        b
    }

    /// Parse little-endian bytes.
    pub fn from_bytes(b: &[u8; SIZEOF_PAGE_DESC]) -> PageDesc {
        let mut o = [0u8; 8];
        o.copy_from_slice(&b[0..8]);
        let mut pf = [0u8; 8];
        pf.copy_from_slice(&b[16..24]);
        PageDesc {
            offset: i64::from_le_bytes(o),
            size: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
            flags: u32::from_le_bytes([b[12], b[13], b[14], b[15]]),
            page_flags: u64::from_le_bytes(pf),
        }
    }
}

/// `struct new_utsname` of the dumped kernel: read from `init_uts_ns` through the kernel's
/// page tables, else built from OSRELEASE and the ELF machine.
pub(crate) fn utsname<S: DumpSource + ?Sized>(src: &S, kmem: Option<&KernelMemory<'_, S>>) -> [u8; 390] {
    let mut u = [0u8; 390];
    if let (Some(k), Some(vi)) = (kmem, src.vmcoreinfo()) {
        if let (Some(sym), Some(off)) = (vi.symbol("init_uts_ns"), vi.offset("uts_namespace.name")) {
            if k.read_virt(VirtAddr(sym.wrapping_add(off)), &mut u).is_ok() && u[0] != 0 {
                return u;
            }
        }
    }
    u = [0u8; 390];
    let mut set = |i: usize, s: &[u8]| {
        let n = s.len().min(64);
        u[i * 65..i * 65 + n].copy_from_slice(&s[..n]);
    };
    set(0, b"Linux");
    if let Some(r) = src.vmcoreinfo().and_then(|v| v.osrelease()) {
        set(2, r.as_bytes());
    }
    set(
        4,
        match src.e_machine() {
            62 => b"x86_64".as_slice(),
            183 => b"aarch64".as_slice(),
            _ => b"unknown".as_slice(),
        },
    );
    u
}

/// phys_base for the sub-header.
pub(crate) fn phys_base<S: DumpSource + ?Sized>(src: &S) -> u64 {
    let Some(vi) = src.vmcoreinfo() else { return 0 };
    let key = if src.e_machine() == 183 { "PHYS_OFFSET" } else { "phys_base" };
    vi.number(key).map(|v| v as u64).unwrap_or(0)
}

fn layout_err(what: &str) -> WriteError {
    WriteError::Layout(what.to_string())
}

/// Largest bitmap 2 (bytes) kept in memory between the passes: 8 MiB covers 256 GiB of 4 KiB
/// pages. For larger dumps pass 2 reads bitmap 2 back from the output file, [`READBACK_BYTES`]
/// at a time, or (on a stream) classifies every window a second time.
pub(crate) const KEEP_BITMAP_MAX: usize = 8 << 20;

/// Bytes of bitmap 2 read back from the output at a time (2 GiB of 4 KiB pages per read).
const READBACK_BYTES: usize = 64 << 10;

#[cfg(test)]
thread_local! {
    /// Tests: classify again in pass 2 even when bitmap 2 would fit in memory.
    pub(crate) static FORCE_RECLASSIFY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

#[cfg(test)]
thread_local! {
    /// Tests: pass 1 window (a multiple of 8 pfns) and held-output limit of the overlapped
    /// passes, small so that one synthetic dump exercises holding and its limit.
    pub(crate) static OVERLAP_TEST: std::cell::Cell<Option<(u64, usize)>> = const { std::cell::Cell::new(None) };
}

#[cfg(test)]
thread_local! {
    /// Tests: bytes of bitmap 2 read back at a time, small so that runs of kept pages cross
    /// the reads' boundaries.
    pub(crate) static READBACK_TEST: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// Bytes of bitmap 2 read back from the output at a time.
fn readback_bytes() -> usize {
    #[cfg(test)]
    if let Some(n) = READBACK_TEST.with(|f| f.get()) {
        return n;
    }
    READBACK_BYTES
}

/// Pass 1 window and held-output limit (see `overlap` in [`write_kdump`]).
fn overlap_params() -> (u64, usize) {
    #[cfg(test)]
    if let Some(p) = OVERLAP_TEST.with(|f| f.get()) {
        return p;
    }
    (WINDOW_PFNS, HOLD_BYTES)
}

fn keep_bitmap_limit() -> usize {
    #[cfg(test)]
    if FORCE_RECLASSIFY.with(|f| f.get()) {
        return 0;
    }
    KEEP_BITMAP_MAX
}

/// Write a kdump-compressed dump of `src` (see the module doc).
pub fn write_kdump<S: DumpSource + ?Sized>(
    src: &S,
    out: &mut dyn PosWrite,
    opts: &FilterOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<FilterReport, WriteError> {
    let dl = opts.dump_level;
    let vi = src.vmcoreinfo();
    let ps = src.page_size();
    let psz = usize::try_from(ps).map_err(|_| layout_err("page size"))?;
    let copts = ClassifyOptions { dump_level: dl, percpu_free: opts.percpu_free };
    let cls1 = Classifier::new(src, vi, copts);
    let max_mapnr = cls1.max_pfn().0;
    let notes = src.notes_bytes();

    // Layout.
    let sub_bytes =
        (SIZEOF_KDUMP_SUB_HEADER as u64).checked_add(notes.len() as u64).ok_or_else(|| layout_err("notes size"))?;
    let sub_hdr_size = sub_bytes.div_ceil(ps);
    let half_blocks = max_mapnr.div_ceil(8).div_ceil(ps);
    let bitmap_blocks = half_blocks.checked_mul(2).ok_or_else(|| layout_err("bitmap size"))?;
    let bitmap1_off = (1 + sub_hdr_size).checked_mul(ps).ok_or_else(|| layout_err("bitmap offset"))?;
    let bitmap2_off = bitmap1_off + half_blocks * ps;
    let desc_off = bitmap1_off
        .checked_add(bitmap_blocks.checked_mul(ps).ok_or_else(|| layout_err("bitmap size"))?)
        .ok_or_else(|| layout_err("descriptor offset"))?;
    let to_i32 = |v: u64, what: &str| i32::try_from(v).map_err(|_| layout_err(what));

    let uts = utsname(src, cls1.kernel_memory());
    let rewrite = out.can_rewrite();
    let mut header = DiskDumpHeader {
        signature: *b"KDUMP   ",
        header_version: 6,
        utsname: uts,
        pad: [0; 6],
        tv_sec: vi.and_then(|v| v.crash_time()).unwrap_or(0),
        tv_usec: 0,
        status: opts.compression.flag() | if rewrite { FLAG_INCOMPLETE } else { 0 },
        block_size: to_i32(ps, "block size")?,
        sub_hdr_size: to_i32(sub_hdr_size, "sub-header size")?,
        bitmap_blocks: u32::try_from(bitmap_blocks).map_err(|_| layout_err("bitmap blocks"))?,
        max_mapnr: max_mapnr.min(u64::from(u32::MAX)) as u32,
        total_ram_blocks: 0,
        device_blocks: 0,
        written_blocks: 0,
        current_cpu: 0,
        nr_cpus: src.nr_cpus().min(i32::MAX as usize) as i32,
    };
    let offset_note = ps + SIZEOF_KDUMP_SUB_HEADER as u64;
    let (off_vi, size_vi) = match src.vmcoreinfo_desc() {
        Some((o, s)) => (offset_note + o as u64, s as u64),
        None => (0, 0),
    };
    let sub = KdumpSubHeader {
        phys_base: phys_base(src),
        dump_level: i32::from(dl),
        offset_vmcoreinfo: off_vi as i64,
        size_vmcoreinfo: size_vi,
        offset_note: offset_note as i64,
        size_note: notes.len() as u64,
        max_mapnr_64: max_mapnr,
        ..KdumpSubHeader::default()
    };
    let mut block0 = vec![0u8; psz];
    block0[..SIZEOF_DISK_DUMP_HEADER].copy_from_slice(&header.to_bytes());
    put(out, "the header", 0, &block0)?;
    let mut subblk = Vec::with_capacity((sub_hdr_size * ps) as usize);
    subblk.extend_from_slice(&sub.to_bytes());
    subblk.extend_from_slice(notes);
    subblk.resize((sub_hdr_size * ps) as usize, 0);
    put(out, "the sub-header and notes", ps, &subblk)?;

    // Pass 1 (`Plan`): bitmaps, the dumpable count and the class counts. Bitmap 2 is also kept
    // in memory (one bit per pfn) when it is small enough, so pass 2 needs no classification.
    // Progress units: pass 1 (classification, under a tenth of the time) one per pfn; pass 2
    // (page data) nine per pfn, handed out in proportion to the dumpable pages it has read, so
    // the share of the bar follows the work rather than the pfn position (kept pages bunch
    // together: most of the pfns past the kernel's are free or user pages).
    let total_work = max_mapnr.saturating_mul(1 + PASS2_SHARE);
    let pass2_done = |dumpable_done: u64, num_dumpable: u64| -> u64 {
        let share = u128::from(max_mapnr) * u128::from(PASS2_SHARE) * u128::from(dumpable_done)
            / u128::from(num_dumpable.max(1));
        max_mapnr.saturating_add(share.min(u128::from(u64::MAX)) as u64).min(total_work)
    };
    let counts = ClassCounts { total: max_mapnr, memhole: cls1.memhole_pages(), ..ClassCounts::default() };
    let kept_bits: Option<Vec<u8>> =
        usize::try_from(max_mapnr.div_ceil(8)).ok().filter(|&n| n <= keep_bitmap_limit()).map(Vec::with_capacity);
    // With worker threads, a file output and bitmap 2 in memory, pass 1 runs ahead of pass 2
    // instead of before it: the main thread classifies a window or two per batch while the
    // workers compress the pages already classified, and their output is held (at most
    // HOLD_BYTES) until the dumpable count fixes where the data area starts. Otherwise (one
    // thread, a stream, a huge machine) pass 1 completes first.
    let overlap = opts.num_threads > 1 && rewrite && kept_bits.is_some();
    let (window, hold_limit) = overlap_params();
    let plan = std::cell::RefCell::new(Plan {
        cls: cls1,
        window,
        next: 0,
        max_mapnr,
        bitmap1_off,
        bitmap2_off,
        classes: Vec::new(),
        bm1: Vec::new(),
        bm2: Vec::new(),
        counts,
        num_dumpable: 0,
        kept_bits,
        elapsed: std::time::Duration::ZERO,
    });
    let out = std::cell::RefCell::new(out);
    let zero_pages = dl & 1 != 0;
    let layout = DataLayout {
        desc_off,
        bitmap1_off,
        bitmap2_off,
        half_bytes: half_blocks * ps,
        pad_bitmaps: !rewrite && bitmap_blocks > 0,
        ps,
        zero_pages,
        flag: opts.compression.flag(),
    };
    let writer: std::cell::RefCell<Option<DataWriter>> = std::cell::RefCell::new(None);
    // Runs pass 1 to its end and sets up the pass-2 sink.
    let finish_plan = |plan: &mut Plan<'_, S>, out: &mut dyn PosWrite| -> Result<(), WriteError> {
        while plan.next < plan.max_mapnr {
            plan.step(src, out)?;
        }
        let mut w = writer.borrow_mut();
        if w.is_none() {
            *w = Some(layout.start(plan.num_dumpable, plan.max_mapnr, out)?);
        }
        Ok(())
    };
    if !overlap {
        let mut pl = plan.borrow_mut();
        let mut o = out.borrow_mut();
        while pl.next < max_mapnr {
            pl.step(src, &mut **o)?;
            progress(pl.next, total_work);
        }
        finish_plan(&mut pl, &mut **o)?;
    }

    // Pass 2: data and descriptors.
    let degraded = plan.borrow().cls.degraded().cloned();
    // Bitmap 2 not kept in memory: read it back from the output if the sink allows (a file
    // opened for reading too), else classify every window again. Classifying again costs as
    // much as pass 1 (serial, on the main thread): 5-7% of a `-l -d 31` dump.
    let read_back = plan.borrow().kept_bits.is_none() && {
        let mut probe = [0u8; 1];
        matches!(out.borrow_mut().read_back(bitmap2_off, &mut probe), Some(Ok(())))
    };
    let mut cls2 = match plan.borrow().kept_bits {
        Some(_) => None,
        None if read_back => None,
        None => Some(Classifier::new(src, vi, copts)),
    };
    let mut feeder = Feeder {
        classes: Vec::new(),
        win_start: 0,
        pos: 0,
        next: 0,
        max_mapnr,
        ps,
        unreadable: 0,
        dumpable: 0,
        handed: 0,
        back: Vec::new(),
        back_start: 0,
    };
    let mut held: Vec<HeldBatch> = Vec::new();
    let mut held_bytes = 0usize;
    let held_over = std::cell::Cell::new(false);
    // Identical pages are looked for only where a match can be confirmed by re-reading the
    // earlier page (`parallel::run` needs the reader for that).
    let dedup = opts.dedup && src.page_reader().is_some();
    {
        let progress = std::cell::RefCell::new(&mut *progress);
        parallel::run(
            opts.num_threads,
            opts.compression,
            psz,
            zero_pages,
            dedup,
            src.page_reader(),
            |b: &mut Batch| {
                let mut pl = plan.borrow_mut();
                let mut o = out.borrow_mut();
                // Classify up to `n` more windows, or all of them once too much output is
                // held; the last one sets up the sink.
                let plan_steps = |pl: &mut Plan<'_, S>, o: &mut dyn PosWrite, n: usize| {
                    for _ in 0..n {
                        if pl.next >= pl.max_mapnr {
                            break;
                        }
                        pl.step(src, o)?;
                    }
                    if held_over.get() || pl.next >= pl.max_mapnr {
                        finish_plan(pl, o)?;
                    }
                    Ok::<(), WriteError>(())
                };
                if pl.kept_bits.is_none() {
                    // Pass 1 is complete; bitmap 2 is read back from the output, or every
                    // window is classified again (see KEEP_BITMAP_MAX).
                    let more = if read_back {
                        feeder.fill_from_output(b, &mut **o, bitmap2_off, src)
                    } else {
                        feeder.fill(b, cls2.as_mut(), src)
                    };
                    (progress.borrow_mut())(pass2_done(feeder.handed, pl.num_dumpable), total_work);
                    return more;
                }
                // Classify ahead, then take kept runs up to where pass 1 has got.
                if pl.next < pl.max_mapnr {
                    plan_steps(&mut pl, &mut **o, 2)?;
                }
                loop {
                    let limit = pl.next;
                    let bits = pl.kept_bits.as_deref().unwrap_or(&[]);
                    feeder.fill_from_bits(b, bits, 0, limit, src);
                    // While pass 1 runs ahead, only its share counts.
                    let done =
                        if pl.next >= pl.max_mapnr { pass2_done(feeder.handed, pl.num_dumpable) } else { pl.next };
                    (progress.borrow_mut())(done, total_work);
                    if b.npages == BATCH_PAGES || pl.next >= pl.max_mapnr {
                        return Ok(b.npages > 0);
                    }
                    plan_steps(&mut pl, &mut **o, 1)?;
                }
            },
            |b: &Batch| {
                let mut o = out.borrow_mut();
                let mut w = writer.borrow_mut();
                let Some(w) = w.as_mut() else {
                    // Pass 1 is still running: hold the batch's output.
                    held_bytes += b.out().len();
                    held.push(HeldBatch {
                        results: b.results.clone(),
                        marks: b.marks.clone(),
                        stored: b.out().to_vec(),
                        unreadable: b.unreadable,
                    });
                    if held_bytes > hold_limit {
                        held_over.set(true);
                    }
                    return Ok(());
                };
                for h in held.drain(..) {
                    w.consume(&h.results, &h.marks, &h.stored, h.unreadable, &mut **o)?;
                }
                w.consume(&b.results, &b.marks, b.out(), b.unreadable, &mut **o)
            },
        )?;
    }
    let out = out.into_inner();
    let mut pl = plan.into_inner();
    // Pass 1 is complete once nothing is left to produce, but with no batch at all (nothing
    // dumpable) the sink may not exist yet.
    finish_plan(&mut pl, out)?;
    let mut w = writer.into_inner().ok_or_else(|| layout_err("pass 1 did not finish"))?;
    for h in held.drain(..) {
        w.consume(&h.results, &h.marks, &h.stored, h.unreadable, out)?;
    }
    let num_dumpable = pl.num_dumpable;
    let mut counts = pl.counts;
    let classify_time = pl.elapsed;
    w.flush(out)?;
    if feeder.dumpable != num_dumpable {
        return Err(WriteError::Inconsistent { first: num_dumpable, second: feeder.dumpable });
    }
    counts.zero = w.zero;
    let end = w.data_start;
    if rewrite {
        header.status &= !FLAG_INCOMPLETE;
        let hb = header.to_bytes();
        put(out, "the header", 0, &hb)?;
    }
    progress(total_work, total_work);
    Ok(FilterReport {
        counts,
        max_pfn: max_mapnr,
        written_pages: num_dumpable,
        compressed_pages: w.compressed,
        raw_pages: w.raw,
        shared_pages: w.dup,
        dedup,
        unreadable_pages: feeder.unreadable + w.unreadable,
        output_bytes: end,
        degraded,
        classify_time,
        dump_level: opts.dump_level,
        input_dump_level: None,
    })
}

/// Both bitmaps of one window (`bm1`, `bm2` zeroed, one bit per class) and its class counts;
/// returns the number of kept pages. Eight classes make one bitmap byte; the counts come from
/// a histogram indexed by the class value, so the loop has no branch per page.
fn summarize_window(classes: &[PageClass], bm1: &mut [u8], bm2: &mut [u8], counts: &mut ClassCounts) -> u64 {
    let mut hist = [0u64; 16];
    for ((chunk, b1), b2) in classes.chunks(8).zip(bm1.iter_mut()).zip(bm2.iter_mut()) {
        let (mut x1, mut x2) = (0u8, 0u8);
        for (bit, &c) in chunk.iter().enumerate() {
            x1 |= u8::from(c != PageClass::Hole) << bit;
            x2 |= u8::from(c == PageClass::Kept) << bit;
            hist[c as usize & 15] += 1;
        }
        *b1 = x1;
        *b2 = x2;
    }
    for (class, n) in [
        (PageClass::Zero, hist[PageClass::Zero as usize]),
        (PageClass::Cache, hist[PageClass::Cache as usize]),
        (PageClass::CachePrivate, hist[PageClass::CachePrivate as usize]),
        (PageClass::User, hist[PageClass::User as usize]),
        (PageClass::Free, hist[PageClass::Free as usize]),
        (PageClass::FreePercpu, hist[PageClass::FreePercpu as usize]),
        (PageClass::Hwpoison, hist[PageClass::Hwpoison as usize]),
        (PageClass::Offline, hist[PageClass::Offline as usize]),
    ] {
        counts.add_n(class, n);
    }
    hist[PageClass::Kept as usize]
}

/// Output of a batch compressed before pass 1 ended, waiting for the data area's offset.
struct HeldBatch {
    results: Vec<PageResult>,
    marks: Vec<Mark>,
    stored: Vec<u8>,
    unreadable: u64,
}

/// Progress units of pass 2 per pfn, against one of pass 1 (see `total_work` in
/// [`write_kdump`]).
const PASS2_SHARE: u64 = 9;

/// Most batch output held while pass 1 runs ahead (see `overlap` in [`write_kdump`]); past
/// it, pass 1 is finished at once.
const HOLD_BYTES: usize = 4 << 20;

/// Pass 1: classification window by window, both bitmaps, class counts, bitmap 2 kept.
struct Plan<'s, S: DumpSource + ?Sized> {
    cls: Classifier<'s, S>,
    /// Pfns per window (a multiple of 8).
    window: u64,
    /// First pfn not classified yet.
    next: u64,
    max_mapnr: u64,
    bitmap1_off: u64,
    bitmap2_off: u64,
    classes: Vec<PageClass>,
    bm1: Vec<u8>,
    bm2: Vec<u8>,
    counts: ClassCounts,
    num_dumpable: u64,
    /// Bitmap 2 (LSB first) of the pfns below `next`, if small enough to keep.
    kept_bits: Option<Vec<u8>>,
    /// Time spent in `step`.
    elapsed: std::time::Duration,
}

impl<S: DumpSource + ?Sized> Plan<'_, S> {
    /// Classify the next window and write its slice of both bitmaps.
    fn step(&mut self, src: &S, out: &mut dyn PosWrite) -> Result<(), WriteError> {
        let t = std::time::Instant::now();
        let r = self.classify_next(src, out);
        self.elapsed += t.elapsed();
        r
    }

    fn classify_next(&mut self, src: &S, out: &mut dyn PosWrite) -> Result<(), WriteError> {
        let s = self.next;
        let e = s.saturating_add(self.window).min(self.max_mapnr);
        if s >= e {
            return Ok(());
        }
        classify_window(&mut self.cls, src, s, e, &mut self.classes);
        let nbytes = ((e - s) as usize).div_ceil(8);
        self.bm1.clear();
        self.bm1.resize(nbytes, 0u8);
        self.bm2.clear();
        self.bm2.resize(nbytes, 0u8);
        self.num_dumpable += summarize_window(&self.classes, &mut self.bm1, &mut self.bm2, &mut self.counts);
        if let Some(k) = self.kept_bits.as_mut() {
            k.extend_from_slice(&self.bm2);
        }
        put(out, "bitmap 1", self.bitmap1_off + s / 8, &self.bm1)?;
        put(out, "bitmap 2", self.bitmap2_off + s / 8, &self.bm2)?;
        self.next = e;
        Ok(())
    }
}

/// Where pass 2 writes, once pass 1 has counted the dumpable pages.
struct DataLayout {
    desc_off: u64,
    bitmap1_off: u64,
    bitmap2_off: u64,
    /// Size of one bitmap in the file (whole blocks).
    half_bytes: u64,
    /// Write the bitmaps' padding (a stream has no holes to leave).
    pad_bitmaps: bool,
    ps: u64,
    zero_pages: bool,
    flag: u32,
}

impl DataLayout {
    /// Pad the bitmaps if needed, write the shared zero page and return the pass-2 sink.
    fn start(&self, num_dumpable: u64, max_mapnr: u64, out: &mut dyn PosWrite) -> Result<DataWriter, WriteError> {
        if self.pad_bitmaps {
            let used = max_mapnr.div_ceil(8);
            let pad = self.half_bytes.saturating_sub(used);
            if pad > 0 {
                let z = vec![0u8; pad as usize];
                put(out, "bitmap 1", self.bitmap1_off + used, &z)?;
                put(out, "bitmap 2", self.bitmap2_off + used, &z)?;
            }
        }
        let data_off = num_dumpable
            .checked_mul(SIZEOF_PAGE_DESC as u64)
            .and_then(|v| v.checked_add(self.desc_off))
            .ok_or_else(|| layout_err("data offset"))?;
        let psz = self.ps as usize;
        let mut cursor = data_off;
        if self.zero_pages {
            put(out, "the shared zero page", data_off, &vec![0u8; psz])?;
            cursor += self.ps;
        }
        Ok(DataWriter {
            desc_off: self.desc_off,
            data_start: cursor,
            data: Vec::with_capacity(FLUSH_BYTES / 16 + (BATCH_PAGES + 1) * psz),
            descs: Vec::with_capacity(FLUSH_BYTES / 8),
            desc_first: 0,
            desc_count: 0,
            desc_data_mark: cursor,
            zero_off: data_off,
            ps: self.ps,
            flag: self.flag,
            compressed: 0,
            raw: 0,
            zero: 0,
            dup: 0,
            unreadable: 0,
            slots: WriterSlots::new(),
        })
    }
}

/// Pass-2 page source: fills batches with the kept pages' contents, walking bitmap 2 of pass 1
/// (or classifying each window again when it was not kept).
struct Feeder {
    classes: Vec<PageClass>,
    win_start: u64,
    pos: usize,
    next: u64,
    max_mapnr: u64,
    ps: u64,
    unreadable: u64,
    /// Kept pages classified (checked against pass 1's count at the end).
    dumpable: u64,
    /// Kept pages handed out in batches (progress).
    handed: u64,
    /// Bitmap 2 read back from the output (see [`Feeder::fill_from_output`]) ...
    back: Vec<u8>,
    /// ... from this pfn on (a multiple of 8).
    back_start: u64,
}

impl Feeder {
    fn fill<S: DumpSource + ?Sized>(
        &mut self,
        b: &mut Batch,
        mut cls: Option<&mut Classifier<'_, S>>,
        src: &S,
    ) -> Result<bool, WriteError> {
        while b.npages < BATCH_PAGES {
            if self.pos >= self.classes.len() {
                if self.next >= self.max_mapnr {
                    break;
                }
                let s = self.next;
                let e = s.saturating_add(WINDOW_PFNS).min(self.max_mapnr);
                // Bitmap 2 was not kept (see `KEEP_BITMAP_MAX`): classify again.
                match cls.as_deref_mut() {
                    Some(cls) => classify_window(cls, src, s, e, &mut self.classes),
                    None => {
                        self.classes.clear();
                        self.classes.resize((e - s) as usize, PageClass::Hole);
                    }
                }
                self.dumpable += self.classes.iter().filter(|&&c| c == PageClass::Kept).count() as u64;
                self.win_start = s;
                self.pos = 0;
                self.next = e;
                continue;
            }
            // Next run of kept pages.
            let Some(k) = self.classes[self.pos..].iter().position(|&c| c == PageClass::Kept) else {
                self.pos = self.classes.len();
                continue;
            };
            let first = self.pos + k;
            let room = BATCH_PAGES - b.npages;
            let mut n = 1;
            while n < room && first + n < self.classes.len() && self.classes[first + n] == PageClass::Kept {
                n += 1;
            }
            let pfn = self.win_start + first as u64;
            self.push_run(b, src, pfn, n);
            self.pos = first + n;
        }
        Ok(b.npages > 0)
    }

    /// Add the `n` kept pages from `pfn` on to `b`: as a read for the thread that compresses
    /// the batch when the source has a thread-safe reader, else read here (page by page on
    /// error; unreadable pages become zeros stored as data, and are counted).
    fn push_run<S: DumpSource + ?Sized>(&mut self, b: &mut Batch, src: &S, pfn: u64, n: usize) {
        self.handed += n as u64;
        let ps = self.ps as usize;
        let at = b.npages * ps;
        let hints = b.zero.len();
        b.zero.resize(hints + n, ZeroHint::Unknown);
        // Sources with a thread-safe reader: the compressing thread reads the run.
        let pending = src.page_reader().and_then(|r| {
            let pa = Pfn(pfn).to_phys(src.page_shift())?;
            r.file_offset(pa, (n * ps) as u64)
        });
        if let Some(off) = pending {
            b.reads.push(PendingRead { off, first: b.npages, npages: n });
            b.npages += n;
            return;
        }
        let (input, zero) = b.input_and_hints_mut();
        let dst = &mut input[at..at + n * ps];
        let read_ok = Pfn(pfn).to_phys(src.page_shift()).is_some_and(|pa| src.read_pages(pa, dst).is_ok());
        if !read_ok {
            // Retry page by page; unreadable pages are written as zeros (as data, not as
            // zero pages) and counted.
            for i in 0..n {
                let page = &mut dst[i * ps..(i + 1) * ps];
                let ok =
                    Pfn(pfn + i as u64).to_phys(src.page_shift()).is_some_and(|pa| src.read_phys(pa, page).is_ok());
                if !ok {
                    page.fill(0);
                    self.unreadable += 1;
                    zero[hints + i] = ZeroHint::Data;
                }
            }
        }
        b.npages += n;
    }

    /// Pass 2 driven by bitmap 2 of pass 1 (`bits`, whose bit 0 is pfn `base`, a multiple of
    /// 8; valid below pfn `limit`): adds runs of kept pages to `b` until it is full or `limit`
    /// is reached.
    fn fill_from_bits<S: DumpSource + ?Sized>(&mut self, b: &mut Batch, bits: &[u8], base: u64, limit: u64, src: &S) {
        while b.npages < BATCH_PAGES {
            let run = next_run(bits, self.next - base, limit - base, BATCH_PAGES - b.npages);
            let Some((p, n)) = run else {
                self.next = self.next.max(limit);
                return;
            };
            let pfn = base + p;
            self.dumpable += n as u64;
            self.push_run(b, src, pfn, n);
            self.next = pfn + n as u64;
        }
    }

    /// Pass 2 driven by bitmap 2 read back from the output (at `bitmap2_off`), for dumps whose
    /// bitmap was too large to keep: adds runs of kept pages to `b` until it is full or the
    /// last pfn is reached.
    fn fill_from_output<S: DumpSource + ?Sized>(
        &mut self,
        b: &mut Batch,
        out: &mut dyn PosWrite,
        bitmap2_off: u64,
        src: &S,
    ) -> Result<bool, WriteError> {
        while b.npages < BATCH_PAGES && self.next < self.max_mapnr {
            let loaded_end = self.back_start + 8 * self.back.len() as u64;
            if self.next >= loaded_end {
                let start = self.next / 8 * 8;
                let chunk = readback_bytes().max(1) as u64;
                let len = (self.max_mapnr - start).div_ceil(8).min(chunk) as usize;
                self.back.clear();
                self.back.resize(len, 0);
                let offset = bitmap2_off + start / 8;
                let r = out.read_back(offset, &mut self.back).unwrap_or_else(|| {
                    Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "the output cannot be read"))
                });
                if let Err(source) = r {
                    self.back.clear();
                    return Err(WriteError::ReadBack { offset, len, source });
                }
                self.back_start = start;
                continue;
            }
            let back = std::mem::take(&mut self.back);
            self.fill_from_bits(b, &back, self.back_start, loaded_end.min(self.max_mapnr), src);
            self.back = back;
        }
        Ok(b.npages > 0)
    }
}

/// The first run of set bits (LSB first) at or after bit `from` and before `end`: its start
/// and length, at most `max`.
fn next_run(bits: &[u8], from: u64, end: u64, max: usize) -> Option<(u64, usize)> {
    let mut p = from;
    // Skip clear bits: whole zero bytes at once.
    loop {
        if p >= end {
            return None;
        }
        let byte = *bits.get((p / 8) as usize)? >> (p % 8);
        if byte == 0 {
            p = (p / 8 + 1) * 8;
            continue;
        }
        p += u64::from(byte.trailing_zeros());
        break;
    }
    if p >= end {
        return None;
    }
    let start = p;
    let limit = end.min(start.saturating_add(max as u64));
    while p < limit {
        let byte = bits.get((p / 8) as usize).map_or(0, |&b| b >> (p % 8));
        let ones = u64::from((!byte).trailing_zeros()).min(8 - p % 8);
        p += ones;
        if ones < 8 - (p - ones) % 8 {
            break;
        }
    }
    Some((start, (p.min(limit) - start) as usize))
}

/// Pass-2 sink: assigns offsets, buffers data and descriptors, flushes data before the
/// descriptors that point to it.
struct DataWriter {
    desc_off: u64,
    /// File offset of the first byte in `data`.
    data_start: u64,
    data: Vec<u8>,
    descs: Vec<u8>,
    desc_first: u64,
    desc_count: u64,
    /// `data_start` when descriptors were last written.
    desc_data_mark: u64,
    zero_off: u64,
    ps: u64,
    flag: u32,
    compressed: u64,
    raw: u64,
    zero: u64,
    /// Pages sharing an earlier page's stored data.
    dup: u64,
    unreadable: u64,
    /// Descriptors of the dedup slots' pages.
    slots: WriterSlots,
}

impl DataWriter {
    /// Assign offsets to one batch's pages (`results`, their stored bytes back to back in
    /// `stored`; `marks`: which of them become dedup slots' pages, empty if none) and buffer
    /// or write them.
    fn consume(
        &mut self,
        results: &[PageResult],
        marks: &[Mark],
        stored: &[u8],
        unreadable: u64,
        out: &mut dyn PosWrite,
    ) -> Result<(), WriteError> {
        let mut off = self.data_start + self.data.len() as u64;
        self.unreadable += unreadable;
        for (i, r) in results.iter().enumerate() {
            let d = match *r {
                PageResult::Zero => {
                    self.zero += 1;
                    PageDesc { offset: self.zero_off as i64, size: self.ps as u32, flags: 0, page_flags: 0 }
                }
                PageResult::Raw => {
                    self.raw += 1;
                    let d = PageDesc { offset: off as i64, size: self.ps as u32, flags: 0, page_flags: 0 };
                    off += self.ps;
                    d
                }
                PageResult::Compressed(len) => {
                    self.compressed += 1;
                    let d = PageDesc { offset: off as i64, size: len, flags: self.flag, page_flags: 0 };
                    off += u64::from(len);
                    d
                }
                PageResult::Dup { slot, ordinal } => {
                    let s = self
                        .slots
                        .get(slot, ordinal)
                        .ok_or_else(|| layout_err("a duplicate page's earlier copy was not recorded"))?;
                    self.dup += 1;
                    PageDesc { offset: s.offset, size: s.size, flags: s.flags, page_flags: 0 }
                }
            };
            if let Some(&Mark::Occupy(slot)) = marks.get(i) {
                if !matches!(r, PageResult::Zero | PageResult::Dup { .. }) {
                    self.slots.record(slot, self.desc_count, d.offset, d.size, d.flags);
                }
            }
            self.descs.extend_from_slice(&d.to_bytes());
            self.desc_count += 1;
        }
        // Large batch output goes straight to the sink (no copy into `data`); small output is
        // gathered so each positioned write stays large. Either way data is written before the
        // descriptors that point to it.
        if self.data.is_empty() && stored.len() >= FLUSH_BYTES / 16 {
            put(out, "page data", self.data_start, stored)?;
            self.data_start += stored.len() as u64;
        } else {
            self.data.extend_from_slice(stored);
        }
        if self.data.len() >= FLUSH_BYTES / 16 {
            self.flush_data(out)?;
        }
        // Descriptors follow every FLUSH_BYTES of data, so a dump cut short by a write error
        // keeps the pages written up to a recent point readable.
        if self.descs.len() >= FLUSH_BYTES / 8 || self.data_start - self.desc_data_mark >= FLUSH_BYTES as u64 {
            self.flush(out)?;
        }
        Ok(())
    }

    fn flush_data(&mut self, out: &mut dyn PosWrite) -> Result<(), WriteError> {
        put(out, "page data", self.data_start, &self.data)?;
        self.data_start += self.data.len() as u64;
        self.data.clear();
        Ok(())
    }

    fn flush(&mut self, out: &mut dyn PosWrite) -> Result<(), WriteError> {
        self.flush_data(out)?;
        let at = self.desc_off + self.desc_first * SIZEOF_PAGE_DESC as u64;
        put(out, "page descriptors", at, &self.descs)?;
        self.desc_data_mark = self.data_start;
        self.desc_first = self.desc_count;
        self.descs.clear();
        Ok(())
    }
}

#[cfg(test)]
mod run_tests {
    use super::next_run;

    #[test]
    fn next_run_matches_a_bit_by_bit_scan() {
        let mut x = 0x2545_f491u32;
        let mut bits = vec![0u8; 64];
        for b in bits.iter_mut() {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            // Long runs of ones and of zeros as well as noise.
            *b = match x % 4 {
                0 => 0,
                1 => 0xff,
                _ => x as u8,
            };
        }
        let bit = |p: u64| bits[(p / 8) as usize] >> (p % 8) & 1 != 0;
        let end = 64 * 8 - 3;
        for max in [1usize, 3, 8, 13, 256] {
            let mut from = 0;
            while let Some((start, n)) = next_run(&bits, from, end, max) {
                assert!((from..start).all(|p| !bit(p)), "from {from} start {start}");
                assert!(n >= 1 && n <= max);
                assert!((start..start + n as u64).all(bit));
                let stop = start + n as u64;
                assert!(n == max || stop == end || !bit(stop), "run at {start} cut at {n}");
                from = stop;
            }
            assert!((from..end).all(|p| !bit(p)));
        }
        assert_eq!(next_run(&[0xff], 3, 5, 256), Some((3, 2)));
        assert_eq!(next_run(&[], 0, 100, 256), None);
    }
}
