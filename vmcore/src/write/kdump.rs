//! kdump-compressed writer ("KDUMP   ", header version 6; FORMATS.md §1).
//!
//! Layout: block 0 header, block 1.. sub-header + the source's notes, bitmap 1 and bitmap 2,
//! the descriptor table (24 bytes per dumpable pfn), then page data packed back to back,
//! starting with one shared zero page when dump level bit 1 is set.
//!
//! Pass 1 classifies each window of pfns, writes its slice of both bitmaps and counts
//! dumpable pages; that count fixes where the data area starts. Pass 2 classifies again,
//! compresses kept pages and writes data and descriptors as two positioned streams.

use super::codec::FLAG_INCOMPLETE;
use super::parallel::{self, Batch, PageResult, PendingRead, ZeroHint};
use super::{
    classify_window, put, DumpSource, FilterOptions, FilterReport, PosWrite, WriteError,
    BATCH_PAGES, FLUSH_BYTES, WINDOW_PFNS,
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
pub(crate) fn utsname<S: DumpSource + ?Sized>(
    src: &S,
    kmem: Option<&KernelMemory<'_, S>>,
) -> [u8; 390] {
    let mut u = [0u8; 390];
    if let (Some(k), Some(vi)) = (kmem, src.vmcoreinfo()) {
        if let (Some(sym), Some(off)) = (vi.symbol("init_uts_ns"), vi.offset("uts_namespace.name"))
        {
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
    let key = if src.e_machine() == 183 {
        "PHYS_OFFSET"
    } else {
        "phys_base"
    };
    vi.number(key).map(|v| v as u64).unwrap_or(0)
}

fn layout_err(what: &str) -> WriteError {
    WriteError::Layout(what.to_string())
}

/// Largest bitmap 2 (bytes) kept in memory between the passes: 8 MiB covers 256 GiB of 4 KiB
/// pages. Larger dumps classify every window a second time instead.
pub(crate) const KEEP_BITMAP_MAX: usize = 8 << 20;

#[cfg(test)]
thread_local! {
    /// Tests: classify again in pass 2 even when bitmap 2 would fit in memory.
    pub(crate) static FORCE_RECLASSIFY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
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
    let mut cls1 = Classifier::new(src, vi, ClassifyOptions { dump_level: dl });
    let max_mapnr = cls1.max_pfn().0;
    let notes = src.notes_bytes();

    // Layout.
    let sub_bytes = (SIZEOF_KDUMP_SUB_HEADER as u64)
        .checked_add(notes.len() as u64)
        .ok_or_else(|| layout_err("notes size"))?;
    let sub_hdr_size = sub_bytes.div_ceil(ps);
    let half_blocks = max_mapnr.div_ceil(8).div_ceil(ps);
    let bitmap_blocks = half_blocks
        .checked_mul(2)
        .ok_or_else(|| layout_err("bitmap size"))?;
    let bitmap1_off = (1 + sub_hdr_size)
        .checked_mul(ps)
        .ok_or_else(|| layout_err("bitmap offset"))?;
    let bitmap2_off = bitmap1_off + half_blocks * ps;
    let desc_off = bitmap1_off
        .checked_add(
            bitmap_blocks
                .checked_mul(ps)
                .ok_or_else(|| layout_err("bitmap size"))?,
        )
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

    let pass1_start = std::time::Instant::now();
    // Pass 1: bitmaps, the dumpable count and the class counts. Bitmap 2 is also kept in
    // memory (one bit per pfn) when it is small enough, so pass 2 needs no classification.
    let total_work = max_mapnr.saturating_mul(2);
    let mut counts = ClassCounts {
        total: max_mapnr,
        memhole: cls1.memhole_pages(),
        ..ClassCounts::default()
    };
    let mut kept_bits: Option<Vec<u8>> = usize::try_from(max_mapnr.div_ceil(8))
        .ok()
        .filter(|&n| n <= keep_bitmap_limit())
        .map(Vec::with_capacity);
    let mut classes = Vec::new();
    let mut bm1 = Vec::new();
    let mut bm2 = Vec::new();
    let mut num_dumpable = 0u64;
    let mut s = 0u64;
    while s < max_mapnr {
        let e = s.saturating_add(WINDOW_PFNS).min(max_mapnr);
        classify_window(&mut cls1, src, s, e, &mut classes);
        let nbytes = ((e - s) as usize).div_ceil(8);
        bm1.clear();
        bm1.resize(nbytes, 0u8);
        bm2.clear();
        bm2.resize(nbytes, 0u8);
        for (i, c) in classes.iter().enumerate() {
            if *c != PageClass::Hole {
                bm1[i >> 3] |= 1 << (i & 7);
            }
            if *c == PageClass::Kept {
                bm2[i >> 3] |= 1 << (i & 7);
                num_dumpable += 1;
            }
            counts.add(*c);
        }
        if let Some(k) = kept_bits.as_mut() {
            k.extend_from_slice(&bm2);
        }
        put(out, "bitmap 1", bitmap1_off + s / 8, &bm1)?;
        put(out, "bitmap 2", bitmap2_off + s / 8, &bm2)?;
        progress(e, total_work);
        s = e;
    }
    // Pad the bitmap area to its full size (a stream has no holes to fill).
    if !rewrite && bitmap_blocks > 0 {
        let used = max_mapnr.div_ceil(8);
        let pad = half_blocks * ps - used;
        if pad > 0 {
            let z = vec![0u8; pad as usize];
            put(out, "bitmap 1", bitmap1_off + used, &z)?;
            put(out, "bitmap 2", bitmap2_off + used, &z)?;
        }
    }

    let data_off = num_dumpable
        .checked_mul(SIZEOF_PAGE_DESC as u64)
        .and_then(|v| v.checked_add(desc_off))
        .ok_or_else(|| layout_err("data offset"))?;
    let zero_pages = dl & 1 != 0;
    let mut cursor = data_off;
    if zero_pages {
        put(out, "the shared zero page", data_off, &vec![0u8; psz])?;
        cursor += ps;
    }

    let classify_time = pass1_start.elapsed();
    // Pass 2: data and descriptors.
    let degraded = cls1.degraded().cloned();
    drop(cls1);
    let mut cls2 = match kept_bits {
        Some(_) => None,
        None => Some(Classifier::new(src, vi, ClassifyOptions { dump_level: dl })),
    };
    let mut feeder = Feeder {
        kept_bits,
        classes: Vec::new(),
        win_start: 0,
        pos: 0,
        next: 0,
        max_mapnr,
        ps,
        unreadable: 0,
        dumpable: 0,
    };
    let mut w = DataWriter {
        desc_off,
        data_start: cursor,
        data: Vec::with_capacity(FLUSH_BYTES / 16 + (BATCH_PAGES + 1) * psz),
        descs: Vec::with_capacity(FLUSH_BYTES / 8),
        desc_first: 0,
        desc_count: 0,
        desc_data_mark: cursor,
        zero_off: data_off,
        ps,
        flag: opts.compression.flag(),
        compressed: 0,
        raw: 0,
        zero: 0,
        unreadable: 0,
    };
    {
        parallel::run(
            opts.num_threads,
            opts.compression,
            psz,
            zero_pages,
            src.page_reader(),
            |b: &mut Batch| {
                feeder.fill(b, cls2.as_mut(), src, &mut |d| {
                    progress(max_mapnr + d, total_work)
                })
            },
            |b: &Batch| w.consume(b, out),
        )?;
    }
    w.flush(out)?;
    if feeder.dumpable != num_dumpable {
        return Err(WriteError::Inconsistent {
            first: num_dumpable,
            second: feeder.dumpable,
        });
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
        unreadable_pages: feeder.unreadable + w.unreadable,
        output_bytes: end,
        degraded,
        classify_time,
    })
}

/// Pass-2 page source: walks windows and fills batches with the kept pages' contents.
struct Feeder {
    /// Bitmap 2 of pass 1 (LSB first), if it was kept; else windows are classified again.
    kept_bits: Option<Vec<u8>>,
    classes: Vec<PageClass>,
    win_start: u64,
    pos: usize,
    next: u64,
    max_mapnr: u64,
    ps: u64,
    unreadable: u64,
    dumpable: u64,
}

impl Feeder {
    fn fill<S: DumpSource + ?Sized>(
        &mut self,
        b: &mut Batch,
        mut cls: Option<&mut Classifier<'_, S>>,
        src: &S,
        progress: &mut dyn FnMut(u64),
    ) -> Result<bool, WriteError> {
        let ps = self.ps as usize;
        while b.npages < BATCH_PAGES {
            if self.pos >= self.classes.len() {
                if self.next >= self.max_mapnr {
                    break;
                }
                let s = self.next;
                let e = s.saturating_add(WINDOW_PFNS).min(self.max_mapnr);
                match (&self.kept_bits, cls.as_deref_mut()) {
                    (Some(bits), _) => {
                        // Windows start at multiples of 8 pfns.
                        self.classes.clear();
                        let first = (s / 8) as usize;
                        let last = (e.div_ceil(8) as usize).min(bits.len());
                        for &byte in bits.get(first..last).unwrap_or(&[]) {
                            for bit in 0..8 {
                                self.classes.push(if byte >> bit & 1 != 0 {
                                    PageClass::Kept
                                } else {
                                    PageClass::Hole
                                });
                            }
                        }
                        self.classes.resize((e - s) as usize, PageClass::Hole);
                    }
                    (None, Some(cls)) => classify_window(cls, src, s, e, &mut self.classes),
                    (None, None) => {
                        self.classes.clear();
                        self.classes.resize((e - s) as usize, PageClass::Hole);
                    }
                }
                self.dumpable += self
                    .classes
                    .iter()
                    .filter(|&&c| c == PageClass::Kept)
                    .count() as u64;
                self.win_start = s;
                self.pos = 0;
                self.next = e;
                progress(e);
                continue;
            }
            // Next run of kept pages.
            let Some(k) = self.classes[self.pos..]
                .iter()
                .position(|&c| c == PageClass::Kept)
            else {
                self.pos = self.classes.len();
                continue;
            };
            let first = self.pos + k;
            let room = BATCH_PAGES - b.npages;
            let mut n = 1;
            while n < room
                && first + n < self.classes.len()
                && self.classes[first + n] == PageClass::Kept
            {
                n += 1;
            }
            let pfn = self.win_start + first as u64;
            let at = b.npages * ps;
            let hints = b.zero.len();
            b.zero.resize(hints + n, ZeroHint::Unknown);
            // Sources with a thread-safe reader: the worker reads the run.
            let pending = src.page_reader().and_then(|r| {
                let pa = Pfn(pfn).to_phys(src.page_shift())?;
                r.file_offset(pa, (n * ps) as u64)
            });
            if let Some(off) = pending {
                b.reads.push(PendingRead {
                    off,
                    first: b.npages,
                    npages: n,
                });
                b.npages += n;
                self.pos = first + n;
                continue;
            }
            let (input, zero) = b.input_and_hints_mut();
            let dst = &mut input[at..at + n * ps];
            let read_ok = Pfn(pfn)
                .to_phys(src.page_shift())
                .is_some_and(|pa| src.read_pages(pa, dst).is_ok());
            if !read_ok {
                // Retry page by page; unreadable pages are written as zeros (as data, not as
                // zero pages) and counted.
                for i in 0..n {
                    let page = &mut dst[i * ps..(i + 1) * ps];
                    let ok = Pfn(pfn + i as u64)
                        .to_phys(src.page_shift())
                        .is_some_and(|pa| src.read_phys(pa, page).is_ok());
                    if !ok {
                        page.fill(0);
                        self.unreadable += 1;
                        zero[hints + i] = ZeroHint::Data;
                    }
                }
            }
            b.npages += n;
            self.pos = first + n;
        }
        Ok(b.npages > 0)
    }
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
    unreadable: u64,
}

impl DataWriter {
    fn consume(&mut self, b: &Batch, out: &mut dyn PosWrite) -> Result<(), WriteError> {
        let mut off = self.data_start + self.data.len() as u64;
        self.unreadable += b.unreadable;
        for r in &b.results {
            let d = match *r {
                PageResult::Zero => {
                    self.zero += 1;
                    PageDesc {
                        offset: self.zero_off as i64,
                        size: self.ps as u32,
                        flags: 0,
                        page_flags: 0,
                    }
                }
                PageResult::Raw => {
                    self.raw += 1;
                    let d = PageDesc {
                        offset: off as i64,
                        size: self.ps as u32,
                        flags: 0,
                        page_flags: 0,
                    };
                    off += self.ps;
                    d
                }
                PageResult::Compressed(len) => {
                    self.compressed += 1;
                    let d = PageDesc {
                        offset: off as i64,
                        size: len,
                        flags: self.flag,
                        page_flags: 0,
                    };
                    off += u64::from(len);
                    d
                }
            };
            self.descs.extend_from_slice(&d.to_bytes());
            self.desc_count += 1;
        }
        // Large batch output goes straight to the sink (no copy into `data`); small output is
        // gathered so each positioned write stays large. Either way data is written before the
        // descriptors that point to it.
        let stored = b.out();
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
        if self.descs.len() >= FLUSH_BYTES / 8
            || self.data_start - self.desc_data_mark >= FLUSH_BYTES as u64
        {
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
