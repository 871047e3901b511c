//! Page classification from `struct page` (FORMATS.md §4.4–4.5), makedumpfile-compatible.
//!
//! Pipeline per window of pfns `[start, end)`:
//! 1. presence: pfns inside a memory range (makedumpfile's 1st bitmap) are [`PageClass::Kept`],
//!    the rest [`PageClass::Hole`];
//! 2. struct-page scan: `struct page`s are read in batches of 512 (aligned like makedumpfile's
//!    PGMM_CACHED cache) and each page goes through makedumpfile's first-match chain
//!    (tail -> free -> cache -> cache private -> user -> hwpoison -> offline). Multi-page
//!    exclusions (buddy blocks, THP/hugetlb folios) that run past the window are carried to the
//!    next window when windows are requested in ascending contiguous order.
//!    A page the chain keeps at a dump level that drops free pages may still be free: the
//!    page allocator's per-CPU lists hold freed pages off the buddy lists, without the buddy
//!    page type, and makedumpfile keeps them. Those proven free are
//!    [`PageClass::FreePercpu`] (see [`percpu_free_pages`]);
//! 3. zero pages (optional, [`Classifier::mark_zero_pages`]): still-kept pages whose contents
//!    are all zero.
//!
//! Every encoding comes from VMCOREINFO (`NUMBER(PG_*)`, `NUMBER(PAGE_*_MAPCOUNT_VALUE)`,
//! `OFFSET(page.*)`), never from OSRELEASE. When the keys or the mem_map are missing the
//! classifier runs in [`Mode::Degraded`]: it says which keys are missing and only presence and
//! zero pages are classified (never a guessed class). Memory use is bounded by the window size,
//! independent of the dumped machine's RAM.

use crate::addr::{Pfn, VirtAddr};
use crate::kmem::KernelMemory;
use crate::memmap::{MemMap, MemoryModel};
use crate::memory::PhysMemory;
use crate::vmcoreinfo::VmcoreInfo;

/// The class of one page frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum PageClass {
    /// Not in any memory range of the dump (a hole), or at/after max_mapnr.
    Hole = 0,
    /// Present and kept (kernel data, or not excludable).
    Kept = 1,
    /// In the memory map but without a full page of data in the dump (the partial page at
    /// the end of a range, or pages past `p_filesz`): never written, never counted as excluded
    /// (makedumpfile: set in bitmap 1, clear in bitmap 2).
    NoData = 9,
    /// All-zero contents (only set by [`Classifier::mark_zero_pages`]).
    Zero = 2,
    /// Page cache without private data.
    Cache = 3,
    /// Page cache with private data (PG_private).
    CachePrivate = 4,
    /// User data: anonymous pages, THP and hugetlbfs folios.
    User = 5,
    /// Free (buddy allocator, or unaccepted memory).
    Free = 6,
    /// Hardware-poisoned.
    Hwpoison = 7,
    /// Logically offline (balloon, memory hot-unplug).
    Offline = 8,
    /// Free, on the page allocator's per-CPU lists (`zone->per_cpu_pageset`): free pages
    /// makedumpfile keeps, left out with the buddy allocator's free pages (dump level bit 16)
    /// unless [`ClassifyOptions::percpu_free`] is off.
    FreePercpu = 10,
}

impl PageClass {
    /// True for classes a dump at `dump_level` leaves out (hwpoison and offline always).
    pub fn excluded_at(self, dump_level: u8) -> bool {
        match self {
            PageClass::Hole | PageClass::Kept | PageClass::NoData => false,
            PageClass::Zero => dump_level & 1 != 0,
            PageClass::Cache => dump_level & 6 != 0,
            PageClass::CachePrivate => dump_level & 4 != 0,
            PageClass::User => dump_level & 8 != 0,
            PageClass::Free | PageClass::FreePercpu => dump_level & 16 != 0,
            PageClass::Hwpoison | PageClass::Offline => true,
        }
    }
}

/// Options of a classifier.
#[derive(Clone, Copy, Debug)]
pub struct ClassifyOptions {
    /// makedumpfile `-d` level (0..=31); decides which branches of the chain are taken.
    pub dump_level: u8,
    /// With bit 16 of the dump level, also leave out the free pages of the per-CPU lists
    /// ([`PageClass::FreePercpu`]). Off: makedumpfile's selection, page for page.
    pub percpu_free: bool,
}

impl ClassifyOptions {
    /// The options of a dump at `dump_level`, per-CPU free pages left out with the others.
    pub fn level(dump_level: u8) -> ClassifyOptions {
        ClassifyOptions { dump_level, percpu_free: true }
    }
}

impl Default for ClassifyOptions {
    fn default() -> Self {
        ClassifyOptions::level(31)
    }
}

/// Errors from the classifier API (bad arguments; dump corruption never errors).
#[derive(Debug, thiserror::Error)]
pub enum ClassifyError {
    /// `out.len()` does not match the window.
    #[error("window [{start}, {end}) has {want} pfns but the output slice has {got}")]
    BadWindow {
        /// Start pfn.
        start: Pfn,
        /// End pfn.
        end: Pfn,
        /// Pfns in the window.
        want: u64,
        /// Slice length.
        got: usize,
    },
}

/// Page-struct encoding taken from VMCOREINFO.
#[derive(Clone, Debug)]
pub struct PageKeys {
    size: u64,
    off_flags: u64,
    off_mapping: u64,
    off_mapcount: u64,
    off_private: u64,
    off_compound_head: u64,
    pg_lru: u32,
    pg_private: u32,
    pg_swapcache: u32,
    pg_swapbacked: Option<u32>,
    pg_slab: Option<u32>,
    pg_hwpoison: Option<u32>,
    pg_buddy: Option<u32>,
    pg_hugetlb: Option<u32>,
    head_mask: Option<u64>,
    buddy_value: Option<u32>,
    offline_value: Option<u32>,
    hugetlb_value: Option<u32>,
    slab_value: Option<u32>,
    unaccepted_value: Option<u32>,
    hugetlb_dtor: Option<u64>,
    order_off: Option<u64>,
    dtor_off: Option<u64>,
    free_area_len: Option<u64>,
    percpu: Option<PercpuKeys>,
}

/// What telling a free page of a per-CPU list needs: `page._refcount`, `page.lru` and
/// `list_head`'s fields, and which low bits of `page.flags` are page flags.
#[derive(Clone, Copy, Debug)]
struct PercpuKeys {
    off_refcount: u64,
    off_lru: u64,
    list_next: u64,
    list_prev: u64,
    /// Bits 0..=the highest `PG_*` bit VMCOREINFO names: the page allocator clears all of them
    /// when it frees a page (`PAGE_FLAGS_CHECK_AT_PREP`); the node, zone and section fields
    /// sit above every flag.
    flag_mask: u64,
}

fn bitnum(vi: &VmcoreInfo, name: &str) -> Option<u32> {
    vi.number(name).filter(|v| (0..64).contains(v)).map(|v| v as u32)
}

impl PageKeys {
    /// Read the keys; `Err` lists the missing required ones.
    pub fn from_vmcoreinfo(vi: &VmcoreInfo) -> Result<PageKeys, Vec<String>> {
        let mut missing = Vec::new();
        let mut off = |name: &str| {
            let v = vi.offset(name);
            if v.is_none() {
                missing.push(format!("OFFSET({name})"));
            }
            v.unwrap_or(0)
        };
        let off_flags = off("page.flags");
        let off_mapping = off("page.mapping");
        let off_mapcount = off("page._mapcount");
        let off_private = off("page.private");
        let off_compound_head = off("page.compound_head");
        let mut num = |name: &str| {
            let v = bitnum(vi, name);
            if v.is_none() {
                missing.push(format!("NUMBER({name})"));
            }
            v.unwrap_or(0)
        };
        let pg_lru = num("PG_lru");
        let pg_private = num("PG_private");
        let pg_swapcache = num("PG_swapcache");
        let size = vi.size("page").unwrap_or(0);
        if size == 0 {
            missing.push("SIZE(page)".into());
        }
        let pg_slab = bitnum(vi, "PG_slab");
        let slab_value = vi.number_u32("PAGE_SLAB_MAPCOUNT_VALUE");
        if pg_slab.is_none() && slab_value.is_none() {
            missing.push("NUMBER(PG_slab) or NUMBER(PAGE_SLAB_MAPCOUNT_VALUE)".into());
        }
        if !missing.is_empty() {
            return Err(missing);
        }
        for (name, o) in [
            ("flags", off_flags),
            ("mapping", off_mapping),
            ("private", off_private),
            ("compound_head", off_compound_head),
        ] {
            if o.saturating_add(8) > size {
                return Err(vec![format!("OFFSET(page.{name}) = {o} outside SIZE(page) = {size}")]);
            }
        }
        if off_mapcount.saturating_add(4) > size {
            return Err(vec![format!("OFFSET(page._mapcount) = {off_mapcount} outside SIZE(page)")]);
        }
        let order_off = vi
            .offset("folio._folio_order")
            .and_then(|o| o.checked_sub(size))
            .or_else(|| vi.offset("page.compound_order"))
            .filter(|&o| o < size);
        let dtor_off = vi
            .offset("folio._folio_dtor")
            .and_then(|o| o.checked_sub(size))
            .or_else(|| vi.offset("page.compound_dtor"))
            .filter(|&o| o < size);
        Ok(PageKeys {
            size,
            off_flags,
            off_mapping,
            off_mapcount,
            off_private,
            off_compound_head,
            pg_lru,
            pg_private,
            pg_swapcache,
            pg_swapbacked: bitnum(vi, "PG_swapbacked"),
            pg_slab,
            pg_hwpoison: bitnum(vi, "PG_hwpoison"),
            pg_buddy: bitnum(vi, "PG_buddy"),
            pg_hugetlb: bitnum(vi, "PG_hugetlb"),
            head_mask: vi.number("PG_head_mask").map(|v| v as u64),
            buddy_value: vi.number_u32("PAGE_BUDDY_MAPCOUNT_VALUE"),
            offline_value: vi.number_u32("PAGE_OFFLINE_MAPCOUNT_VALUE"),
            hugetlb_value: vi.number_u32("PAGE_HUGETLB_MAPCOUNT_VALUE"),
            slab_value,
            unaccepted_value: vi.number_u32("PAGE_UNACCEPTED_MAPCOUNT_VALUE"),
            hugetlb_dtor: vi.number("HUGETLB_PAGE_DTOR").map(|v| v as u64),
            order_off,
            dtor_off,
            free_area_len: vi.length("zone.free_area"),
            percpu: percpu_keys(vi, size),
        })
    }

    /// True if free pages can be recognised (buddy page type or PG_buddy).
    pub fn has_buddy(&self) -> bool {
        self.buddy_value.is_some() || self.pg_buddy.is_some()
    }
}

/// The keys of [`PercpuKeys`], or `None` when one is missing or out of `struct page`.
fn percpu_keys(vi: &VmcoreInfo, size: u64) -> Option<PercpuKeys> {
    let off_refcount = vi.offset("page._refcount").filter(|&o| o.saturating_add(4) <= size)?;
    let off_lru = vi.offset("page.lru").filter(|&o| o.saturating_add(16) <= size)?;
    let list_next = vi.offset("list_head.next").filter(|&o| o <= 8)?;
    let list_prev = vi.offset("list_head.prev").filter(|&o| o <= 8 && o != list_next)?;
    let top = ["PG_lru", "PG_private", "PG_swapcache", "PG_swapbacked", "PG_slab", "PG_hwpoison", "PG_buddy"]
        .iter()
        .filter_map(|n| bitnum(vi, n))
        .chain(vi.number("PG_head_mask").filter(|&m| m > 0 && m < 1 << 62).map(|m| m.trailing_zeros()))
        .max()?;
    Some(PercpuKeys { off_refcount, off_lru, list_next, list_prev, flag_mask: (2u64 << top) - 1 })
}

/// Linux 6.12+ stores the page type in the top byte (`PGTY_x << 24`).
fn top_byte_encoding(value: u32) -> bool {
    value & 0x00ff_ffff == 0 && value >> 24 >= 0xf0
}

/// Exact page-type test (buddy, offline, unaccepted), as makedumpfile compares them.
fn type_is(mapcount: u32, value: u32) -> bool {
    if top_byte_encoding(value) {
        mapcount >> 24 == value >> 24
    } else {
        mapcount == value
    }
}

/// Masked page-type test used by makedumpfile for slab and hugetlb (6.9+ kernels).
fn type_has(mapcount: u32, value: u32) -> bool {
    const PAGE_TYPE_BASE: u32 = 0xf000_0000;
    if top_byte_encoding(value) {
        mapcount >> 24 == value >> 24
    } else {
        mapcount & (PAGE_TYPE_BASE | !value) == PAGE_TYPE_BASE
    }
}

fn test_bit(nr: u32, flags: u64) -> bool {
    nr < 64 && flags & (1u64 << nr) != 0
}

fn rd_u64(b: &[u8], off: u64) -> u64 {
    let o = off as usize;
    b.get(o..o + 8)
        .map(|s| {
            let mut a = [0u8; 8];
            a.copy_from_slice(s);
            u64::from_le_bytes(a)
        })
        .unwrap_or(0)
}
fn rd_u32(b: &[u8], off: u64) -> u32 {
    let o = off as usize;
    b.get(o..o + 4)
        .map(|s| {
            let mut a = [0u8; 4];
            a.copy_from_slice(s);
            u32::from_le_bytes(a)
        })
        .unwrap_or(0)
}
fn rd_u8(b: &[u8], off: u64) -> u8 {
    b.get(off as usize).copied().unwrap_or(0)
}

/// Why a classifier could not decode struct pages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Degraded {
    /// VMCOREINFO keys that are missing (empty if the cause is elsewhere).
    pub missing_keys: Vec<String>,
    /// Human-readable cause.
    pub reason: String,
}

/// Classifier mode.
#[derive(Clone, Debug)]
pub enum Mode {
    /// struct pages are decoded.
    Full {
        /// The located mem_map.
        memmap: MemMap,
        /// Page encodings.
        keys: Box<PageKeys>,
    },
    /// Only presence and zero pages: see [`Degraded`].
    Degraded(Degraded),
}

/// Anomalies found while classifying (corrupt or unreadable data).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassifyStats {
    /// struct pages that could not be read (their pages were kept).
    pub unreadable_struct_pages: u64,
    /// Free pages with an order >= LENGTH(zone.free_area) (kept, like makedumpfile).
    pub invalid_free_orders: u64,
    /// Pages whose contents could not be read for zero detection (kept).
    pub unreadable_pages: u64,
}

const PGMM_CACHED: u64 = 512;

/// `e: cause: cause...` on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Classifies page frames of one dump, window by window.
pub struct Classifier<'m, M: PhysMemory + ?Sized> {
    phys: &'m M,
    kmem: Option<KernelMemory<'m, M>>,
    mode: Mode,
    opts: ClassifyOptions,
    page_shift: u32,
    max_pfn: Pfn,
    /// (first, end) pfns of each range in makedumpfile's 1st bitmap (floor, ceil).
    present: Vec<(u64, u64)>,
    /// (first, end) pfns initially set in the 2nd bitmap (floor, floor).
    dumpable: Vec<(u64, u64)>,
    /// (first, end) pfns cleared for lack of file data (floor(start + filesz), ceil(end)).
    nodata: Vec<(u64, u64)>,
    /// (first, end) pfns whose start address is inside a range (is_in_segs).
    in_segs: Vec<(u64, u64)>,
    pending: Option<(Pfn, PageClass)>,
    next_start: Pfn,
    stats: ClassifyStats,
    scan: bool,
    buf: Vec<u8>,
    seg_mask: Vec<bool>,
}

impl<'m, M: PhysMemory + ?Sized> Classifier<'m, M> {
    /// Build a classifier. Never fails: anything missing gives [`Mode::Degraded`].
    pub fn new(phys: &'m M, vi: Option<&VmcoreInfo>, opts: ClassifyOptions) -> Self {
        let page_shift = phys.page_shift();
        let ranges = phys.ranges();
        let max_mapnr = ranges.iter().map(|r| Pfn::from_phys_roundup(r.end, page_shift)).max().unwrap_or(Pfn(0));
        let mut kmem = None;
        let mode = match vi {
            None => Mode::Degraded(Degraded {
                missing_keys: vec!["VMCOREINFO".into()],
                reason: "the dump has no VMCOREINFO note".into(),
            }),
            Some(vi) => match KernelMemory::new(phys, vi) {
                Err(e) => Mode::Degraded(Degraded {
                    missing_keys: match &e {
                        crate::kmem::KmemError::MissingKey { key } => vec![key.to_string()],
                        _ => Vec::new(),
                    },
                    reason: error_chain(&e),
                }),
                Ok(k) => {
                    let m = match PageKeys::from_vmcoreinfo(vi) {
                        Err(missing) => Mode::Degraded(Degraded {
                            reason: format!("struct page layout incomplete: {}", missing.join(", ")),
                            missing_keys: missing,
                        }),
                        Ok(keys) => match MemMap::discover(&k, vi, max_mapnr) {
                            Ok(memmap) => Mode::Full { memmap, keys: Box::new(keys) },
                            Err(e) => Mode::Degraded(Degraded {
                                missing_keys: match &e {
                                    crate::memmap::MemMapError::MissingKeys { keys } => keys.clone(),
                                    _ => Vec::new(),
                                },
                                reason: error_chain(&e),
                            }),
                        },
                    };
                    kmem = Some(k);
                    m
                }
            },
        };
        let max_pfn = match &mode {
            Mode::Full { memmap, .. } => memmap.max_pfn(),
            Mode::Degraded(_) => max_mapnr,
        };
        let present = ranges
            .iter()
            .map(|r| (Pfn::from_phys(r.start, page_shift).0, Pfn::from_phys_roundup(r.end, page_shift).0))
            .collect();
        let dumpable = ranges
            .iter()
            .map(|r| (Pfn::from_phys(r.start, page_shift).0, Pfn::from_phys(r.end, page_shift).0))
            .collect();
        let nodata = ranges
            .iter()
            .zip(phys.data_ranges())
            .filter(|(r, d)| d.end < r.end)
            .map(|(r, d)| (Pfn::from_phys(d.end, page_shift).0, Pfn::from_phys_roundup(r.end, page_shift).0))
            .collect();
        let in_segs = ranges
            .iter()
            .map(|r| (Pfn::from_phys_roundup(r.start, page_shift).0, Pfn::from_phys_roundup(r.end, page_shift).0))
            .collect();
        let scan = match &mode {
            Mode::Full { keys, .. } => {
                let dl = opts.dump_level;
                dl & (2 | 4 | 8) != 0 || (dl & 16 != 0 && keys.has_buddy()) || keys.pg_hwpoison.is_some()
            }
            Mode::Degraded(_) => false,
        };
        Classifier {
            phys,
            kmem,
            mode,
            opts,
            page_shift,
            max_pfn,
            present,
            dumpable,
            nodata,
            in_segs,
            pending: None,
            next_start: Pfn(0),
            stats: ClassifyStats::default(),
            scan,
            buf: Vec::new(),
            seg_mask: Vec::new(),
        }
    }

    /// The mode (full or degraded, with the reason).
    pub fn mode(&self) -> &Mode {
        &self.mode
    }

    /// The degradation, if any.
    pub fn degraded(&self) -> Option<&Degraded> {
        match &self.mode {
            Mode::Degraded(d) => Some(d),
            Mode::Full { .. } => None,
        }
    }

    /// Memory model, when mem_map was found.
    pub fn memory_model(&self) -> Option<MemoryModel> {
        match &self.mode {
            Mode::Full { memmap, .. } => Some(memmap.model()),
            Mode::Degraded(_) => None,
        }
    }

    /// True if free pages can be recognised in this dump.
    pub fn can_find_free_pages(&self) -> bool {
        matches!(&self.mode, Mode::Full { keys, .. } if keys.has_buddy())
    }

    /// makedumpfile's max_mapnr: one past the highest pfn classified ("Total pages").
    pub fn max_pfn(&self) -> Pfn {
        self.max_pfn
    }

    /// Anomalies seen so far.
    pub fn stats(&self) -> ClassifyStats {
        self.stats
    }

    /// The kernel memory used for struct-page reads, when translation is available.
    pub fn kernel_memory(&self) -> Option<&KernelMemory<'m, M>> {
        self.kmem.as_ref()
    }

    /// makedumpfile's "Memory Hole" count: max_mapnr minus the per-range page counts.
    pub fn memhole_pages(&self) -> u64 {
        let covered: u64 =
            self.present.iter().map(|&(s, e)| e.min(self.max_pfn.0).saturating_sub(s.min(self.max_pfn.0))).sum();
        self.max_pfn.0.saturating_sub(covered)
    }

    /// Classify pfns `[start, end)` into `out` (length `end - start`). Zero pages are not
    /// detected here (see [`Classifier::mark_zero_pages`]). Calls in ascending contiguous order
    /// reproduce makedumpfile exactly; a call that does not start where the previous one ended
    /// forgets multi-page exclusions begun before `start`.
    pub fn classify_range(&mut self, start: Pfn, end: Pfn, out: &mut [PageClass]) -> Result<(), ClassifyError> {
        let want = end.0.saturating_sub(start.0);
        if want != out.len() as u64 {
            return Err(ClassifyError::BadWindow { start, end, want, got: out.len() });
        }
        out.fill(PageClass::Hole);
        let lim = end.0.min(self.max_pfn.0);
        let mut mark = |ranges: &[(u64, u64)], from: Option<PageClass>, to: PageClass| {
            for &(s, e) in ranges {
                let (s, e) = (s.max(start.0), e.min(lim));
                if s >= e {
                    continue;
                }
                let slots = &mut out[(s - start.0) as usize..(e - start.0) as usize];
                match from {
                    None => slots.fill(to),
                    Some(f) => slots.iter_mut().filter(|x| **x == f).for_each(|x| *x = to),
                }
            }
        };
        mark(&self.present, None, PageClass::NoData);
        mark(&self.dumpable, None, PageClass::Kept);
        mark(&self.nodata, Some(PageClass::Kept), PageClass::NoData);
        self.seg_mask.clear();
        self.seg_mask.resize(out.len(), false);
        for &(s, e) in &self.in_segs {
            let (s, e) = (s.max(start.0), e.min(lim));
            if s < e {
                self.seg_mask[(s - start.0) as usize..(e - start.0) as usize].fill(true);
            }
        }
        let mut skip_until = start.0;
        if self.next_start != start {
            self.pending = None;
        }
        if let Some((pend_end, class)) = self.pending.take() {
            let stop = pend_end.0.min(end.0);
            Self::exclude(out, start.0, start.0, stop, class);
            skip_until = stop;
            if pend_end.0 > end.0 {
                self.pending = Some((pend_end, class));
            }
        }
        self.next_start = end;
        if self.scan {
            self.scan_struct_pages(start.0, lim, skip_until, out);
        }
        Ok(())
    }

    fn exclude(out: &mut [PageClass], base: u64, from: u64, to: u64, class: PageClass) {
        for p in from..to {
            if let Some(slot) = out.get_mut((p - base) as usize) {
                if *slot == PageClass::Kept {
                    *slot = class;
                }
            }
        }
    }

    fn scan_struct_pages(&mut self, start: u64, lim: u64, skip_until: u64, out: &mut [PageClass]) {
        let Mode::Full { memmap, keys } = &self.mode else {
            return;
        };
        let Some(kmem) = self.kmem.as_ref() else {
            return;
        };
        let end = start + out.len() as u64;
        let size = keys.size;
        // Pages below `skip` were covered by a multi-page exclusion and are not examined.
        let mut skip = skip_until;
        let mut pfn = skip.max(start);
        while pfn < lim {
            let Some(seg) = memmap.segment_of(Pfn(pfn)) else {
                pfn = ((pfn / PGMM_CACHED) + 1) * PGMM_CACHED;
                continue;
            };
            let batch_end = (((pfn / PGMM_CACHED) + 1) * PGMM_CACHED).min(seg.pfn_end.0).min(lim);
            let n = batch_end - pfn;
            if !self.seg_mask[(pfn - start) as usize..(batch_end - start) as usize].iter().any(|&b| b) {
                // Nothing to examine here (a hole): do not read struct pages.
                pfn = batch_end.max(skip);
                continue;
            }
            // One extra struct page (page[1] of a head at the batch end) when it exists.
            let extra = u64::from(batch_end < seg.pfn_end.0);
            let nbytes = ((n + extra) * size) as usize;
            self.buf.resize(nbytes, 0);
            let va = VirtAddr(seg.mem_map.0.wrapping_add((pfn - seg.pfn_start.0).wrapping_mul(size)));
            let mut readable = vec![true; 0];
            if kmem.read_virt(va, &mut self.buf[..nbytes]).is_err() {
                // Retry one struct page at a time so a bad vmemmap page hides only its pages.
                readable.resize((n + extra) as usize, false);
                for i in 0..n + extra {
                    let s = (i * size) as usize;
                    let v = VirtAddr(va.0.wrapping_add(i * size));
                    if kmem.read_virt(v, &mut self.buf[s..s + size as usize]).is_ok() {
                        readable[i as usize] = true;
                    } else if i < n && self.seg_mask[(pfn + i - start) as usize] {
                        self.stats.unreadable_struct_pages += 1;
                    }
                }
            }
            let ok = |i: u64| readable.is_empty() || readable.get(i as usize) == Some(&true);
            for p in pfn..batch_end {
                let i = p - pfn;
                if p < skip || !self.seg_mask[(p - start) as usize] || !ok(i) {
                    continue;
                }
                let page = &self.buf[(i * size) as usize..((i + 1) * size) as usize];
                let next = if p % PGMM_CACHED != PGMM_CACHED - 1 && i < n + extra - 1 && ok(i + 1) {
                    Some(&self.buf[((i + 1) * size) as usize..((i + 2) * size) as usize])
                } else {
                    None
                };
                let dl = self.opts.dump_level;
                let found = decide(keys, dl, p, page, next, &mut self.stats).or_else(|| {
                    let pk = keys.percpu.as_ref().filter(|_| self.opts.percpu_free && dl & 16 != 0)?;
                    let at = |j: u64| {
                        (j < n && ok(j) && self.seg_mask[(pfn + j - start) as usize])
                            .then(|| &self.buf[(j * size) as usize..((j + 1) * size) as usize])
                    };
                    let me = VirtAddr(va.0.wrapping_add(i * size));
                    percpu_free_pages(pk, keys, kmem, me, p, |j| at(i + j)).map(|nr| (PageClass::FreePercpu, nr))
                });
                if let Some((class, nr)) = found {
                    let stop = p.saturating_add(nr);
                    Self::exclude(out, start, p, stop.min(lim), class);
                    if stop > end {
                        self.pending = Some((Pfn(stop), class));
                    }
                    if nr > 1 {
                        skip = stop;
                    }
                }
            }
            pfn = batch_end.max(skip);
        }
    }

    /// Turn still-[`PageClass::Kept`] pfns of the window starting at `start` whose contents
    /// are all zero into [`PageClass::Zero`].
    pub fn mark_zero_pages(&mut self, start: Pfn, out: &mut [PageClass]) {
        let ps = self.phys.page_size() as usize;
        let mut page = vec![0u8; ps];
        for (i, slot) in out.iter_mut().enumerate() {
            if *slot != PageClass::Kept {
                continue;
            }
            let Some(pa) = Pfn(start.0 + i as u64).to_phys(self.page_shift) else {
                continue;
            };
            match self.phys.read_phys(pa, &mut page) {
                Ok(()) => {
                    if page.iter().all(|&b| b == 0) {
                        *slot = PageClass::Zero;
                    }
                }
                Err(_) => self.stats.unreadable_pages += 1,
            }
        }
    }
}

/// Largest block of free pages [`percpu_free_pages`] proves (order 9: 2 MiB, the largest
/// block x86_64's per-CPU lists hold; a block of it never crosses a batch of struct pages).
const PERCPU_MAX_ORDER: u32 = 9;

/// A page whose struct page says nothing is in it: no reference, no page flag, no mapping,
/// no page type, not a compound tail.
fn unused(k: &PageKeys, pk: &PercpuKeys, page: &[u8]) -> bool {
    rd_u32(page, pk.off_refcount) == 0
        && rd_u64(page, k.off_flags) & pk.flag_mask == 0
        && rd_u64(page, k.off_mapping) == 0
        && rd_u32(page, k.off_mapcount) == u32::MAX
        && rd_u64(page, k.off_compound_head) & 1 == 0
}

/// The number of free pages starting at pfn `pfn` (struct page at `va`) that are proven to be a
/// free block of a per-CPU list, or `None`. `page(j)` is the struct page of pfn `pfn + j`
/// when it was read and is in a memory range.
///
/// Freed pages go to the per-CPU lists of their zone (`zone->per_cpu_pageset`) before the
/// buddy lists; only the first page of a block is linked there (through `page.lru`), with no
/// buddy page type, so makedumpfile's chain keeps them. The per-CPU structure itself is not
/// described by VMCOREINFO, so the proof works from the struct pages alone:
///
/// 1. The page is [`unused`] and on a list: `lru.next->prev` and `lru.prev->next` both point
///    back at its `lru`, and neither is the page itself. The page allocator unlinks with
///    `list_del` (which poisons both pointers) before it hands a page out, and an allocated
///    page has a reference, so an unreferenced page on an intact list is free (on a per-CPU
///    list, on compaction's list of isolated free pages, or on its way back to the
///    allocator).
/// 2. The block is the largest `2^k` pages (`k <= PERCPU_MAX_ORDER`) the page is aligned to
///    whose other pages are all [`unused`]. None of those is allocated: an allocated block
///    starts at a page with a reference (or with a compound flag), and one starting before
///    them would contain the free first page. So the pages of a high-order block on a list
///    go with it, and where `k` comes out larger than the true order the extra pages are free
///    all the same.
///
/// Anything unreadable or unexpected keeps the page.
fn percpu_free_pages<'a, M: PhysMemory + ?Sized>(
    pk: &PercpuKeys,
    keys: &PageKeys,
    kmem: &KernelMemory<'_, M>,
    va: VirtAddr,
    pfn: u64,
    page: impl Fn(u64) -> Option<&'a [u8]>,
) -> Option<u64> {
    let first = page(0)?;
    if !unused(keys, pk, first) {
        return None;
    }
    let me = va.0.wrapping_add(pk.off_lru);
    let next = rd_u64(first, pk.off_lru + pk.list_next);
    let prev = rd_u64(first, pk.off_lru + pk.list_prev);
    if next == me || prev == me {
        return None;
    }
    let points_back = |node: u64, field: u64| {
        let mut b = [0u8; 8];
        kmem.read_virt(VirtAddr(node.wrapping_add(field)), &mut b).is_ok() && u64::from_le_bytes(b) == me
    };
    if !points_back(next, pk.list_prev) || !points_back(prev, pk.list_next) {
        return None;
    }
    let mut k = 0;
    while k < PERCPU_MAX_ORDER
        && pfn % (2u64 << k) == 0
        && ((1u64 << k)..(2u64 << k)).all(|j| page(j).is_some_and(|p| unused(keys, pk, p)))
    {
        k += 1;
    }
    Some(1u64 << k)
}

/// makedumpfile's decision chain for one page. Returns the class and the number of pages it
/// covers, or `None` to keep it.
fn decide(
    k: &PageKeys,
    dl: u8,
    pfn: u64,
    page: &[u8],
    next: Option<&[u8]>,
    stats: &mut ClassifyStats,
) -> Option<(PageClass, u64)> {
    let flags = rd_u64(page, k.off_flags);
    let mapping = rd_u64(page, k.off_mapping);
    let mapcount = rd_u32(page, k.off_mapcount);
    let private = rd_u64(page, k.off_private);
    let compound_head = rd_u64(page, k.off_compound_head);

    let mut order = 0u64;
    let mut hugetlb = false;
    if let (Some(mask), Some(n1)) = (k.head_mask, next) {
        if flags & mask != 0 {
            let flags1 = rd_u64(n1, k.off_flags);
            if let Some(v) = k.hugetlb_value {
                order = flags1 & 0xff;
                hugetlb = type_has(mapcount, v);
            } else if let Some(b) = k.pg_hugetlb {
                order = flags1 & 0xff;
                hugetlb = test_bit(b, flags1);
            } else {
                if let Some(o) = k.order_off {
                    order = rd_u8(n1, o) as u64;
                }
                if let Some(o) = k.dtor_off {
                    let dtor = rd_u8(n1, o) as u64;
                    hugetlb = k.hugetlb_dtor == Some(dtor);
                }
            }
            if order >= 64 || pfn & ((1u64 << order) - 1) != 0 {
                order = 0;
            }
        }
    }
    let nr_pages = 1u64 << order;
    if compound_head & 1 != 0 {
        return None;
    }
    let slab = k.slab_value.is_some_and(|v| type_has(mapcount, v)) || k.pg_slab.is_some_and(|b| test_bit(b, flags));
    let anon = !slab && mapping & 1 != 0;
    let cache = test_bit(k.pg_lru, flags)
        || (test_bit(k.pg_swapcache, flags) && k.pg_swapbacked.map_or(true, |b| test_bit(b, flags)));
    let is_private = test_bit(k.pg_private, flags);
    let buddy = if let Some(v) = k.buddy_value {
        !slab && type_is(mapcount, v)
    } else if let Some(b) = k.pg_buddy {
        test_bit(b, flags)
    } else {
        false
    };
    if dl & 16 != 0 && buddy {
        if k.free_area_len.is_some_and(|l| private >= l) || private >= 64 {
            stats.invalid_free_orders += 1;
            return None;
        }
        return Some((PageClass::Free, 1u64 << private));
    }
    if dl & 16 != 0 {
        if let (Some(v), Some(len)) = (k.unaccepted_value, k.free_area_len) {
            if type_is(mapcount, v) && (1..=64).contains(&len) {
                return Some((PageClass::Free, 1u64 << (len - 1)));
            }
        }
    }
    if dl & 2 != 0 && cache && !is_private && !anon {
        return Some((PageClass::Cache, nr_pages));
    }
    if dl & 4 != 0 && cache && !anon {
        let c = if is_private { PageClass::CachePrivate } else { PageClass::Cache };
        return Some((c, nr_pages));
    }
    if dl & 8 != 0 && (anon || hugetlb) {
        return Some((PageClass::User, nr_pages));
    }
    if k.pg_hwpoison.is_some_and(|b| test_bit(b, flags)) {
        return Some((PageClass::Hwpoison, nr_pages));
    }
    if k.offline_value.is_some_and(|v| !slab && type_is(mapcount, v)) {
        return Some((PageClass::Offline, nr_pages));
    }
    None
}

/// Page counts per class, with makedumpfile's report semantics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassCounts {
    /// makedumpfile "Total pages" (max_mapnr).
    pub total: u64,
    /// "Memory Hole".
    pub memhole: u64,
    /// "Pages filled with zero".
    pub zero: u64,
    /// "Non-private cache pages".
    pub cache: u64,
    /// "Private cache pages".
    pub cache_private: u64,
    /// "User process data pages".
    pub user: u64,
    /// "Free pages".
    pub free: u64,
    /// Free pages of the per-CPU lists (no makedumpfile counterpart: makedumpfile keeps them,
    /// and counts them among its zero pages or its remaining pages).
    pub free_percpu: u64,
    /// "Hwpoison pages".
    pub hwpoison: u64,
    /// "Offline pages".
    pub offline: u64,
}

impl ClassCounts {
    /// "Original pages" = total − memory hole.
    pub fn original(&self) -> u64 {
        self.total.saturating_sub(self.memhole)
    }
    /// "Excluded pages".
    pub fn excluded(&self) -> u64 {
        self.zero
            + self.cache
            + self.cache_private
            + self.user
            + self.free
            + self.free_percpu
            + self.hwpoison
            + self.offline
    }
    /// "Remaining pages" (makedumpfile's count also holds the non-zero pages of
    /// [`ClassCounts::free_percpu`]).
    pub fn remaining(&self) -> u64 {
        self.original().saturating_sub(self.excluded())
    }
    /// Add one page of `class`.
    pub fn add(&mut self, class: PageClass) {
        self.add_n(class, 1);
    }

    /// Count `n` pages of `class`.
    pub fn add_n(&mut self, class: PageClass, n: u64) {
        match class {
            PageClass::Hole | PageClass::Kept | PageClass::NoData => {}
            PageClass::Zero => self.zero += n,
            PageClass::Cache => self.cache += n,
            PageClass::CachePrivate => self.cache_private += n,
            PageClass::User => self.user += n,
            PageClass::Free => self.free += n,
            PageClass::FreePercpu => self.free_percpu += n,
            PageClass::Hwpoison => self.hwpoison += n,
            PageClass::Offline => self.offline += n,
        }
    }
}

/// Default window for whole-dump passes: 64 Ki pfns (64 KiB of classes, 4 MiB of struct pages).
pub const DEFAULT_WINDOW: u64 = 1 << 16;

impl<'m, M: PhysMemory + ?Sized> Classifier<'m, M> {
    /// Classify the whole dump window by window and count classes (zero pages included when
    /// `zero_pages`). Memory use is one window.
    pub fn count_all(&mut self, window: u64, zero_pages: bool) -> ClassCounts {
        let window = window.max(1);
        let mut c = ClassCounts { total: self.max_pfn.0, memhole: self.memhole_pages(), ..ClassCounts::default() };
        let mut out = Vec::new();
        let mut s = 0u64;
        while s < self.max_pfn.0 {
            let e = s.saturating_add(window).min(self.max_pfn.0);
            out.clear();
            out.resize((e - s) as usize, PageClass::Hole);
            if self.classify_range(Pfn(s), Pfn(e), &mut out).is_ok() {
                if zero_pages {
                    self.mark_zero_pages(Pfn(s), &mut out);
                }
                for &cl in &out {
                    c.add(cl);
                }
            }
            s = e;
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 6.12-style VMCOREINFO: page types in the top byte, no PG_slab flag.
    const V612: &str = "SIZE(page)=64\nOFFSET(page.flags)=0\nOFFSET(page.mapping)=24\n\
OFFSET(page._mapcount)=48\nOFFSET(page.private)=40\nOFFSET(page.compound_head)=8\n\
NUMBER(PG_lru)=5\nNUMBER(PG_private)=14\nNUMBER(PG_swapcache)=11\nNUMBER(PG_swapbacked)=20\n\
NUMBER(PG_head_mask)=64\nNUMBER(PG_hwpoison)=24\nLENGTH(zone.free_area)=11\n\
NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)=4026531840\nNUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)=4043309056\n\
NUMBER(PAGE_HUGETLB_MAPCOUNT_VALUE)=4093640704\nNUMBER(PAGE_SLAB_MAPCOUNT_VALUE)=4110417920\n\
NUMBER(PAGE_UNACCEPTED_MAPCOUNT_VALUE)=4143972352\n";

    fn keys(text: &str) -> PageKeys {
        PageKeys::from_vmcoreinfo(&VmcoreInfo::parse(text.as_bytes()).unwrap()).unwrap()
    }

    fn page(flags: u64, mapping: u64, private: u64, mapcount: u32) -> Vec<u8> {
        let mut p = vec![0u8; 64];
        p[0..8].copy_from_slice(&flags.to_le_bytes());
        p[24..32].copy_from_slice(&mapping.to_le_bytes());
        p[40..48].copy_from_slice(&private.to_le_bytes());
        p[48..52].copy_from_slice(&mapcount.to_le_bytes());
        p
    }

    fn run(k: &PageKeys, pfn: u64, p: &[u8], next: Option<&[u8]>) -> Option<(PageClass, u64)> {
        decide(k, 31, pfn, p, next, &mut ClassifyStats::default())
    }

    #[test]
    fn linux_6_12_page_types() {
        let k = keys(V612);
        // Buddy: top byte 0xf0, low bits may be used.
        assert_eq!(run(&k, 0, &page(0, 0, 2, 0xf000_0012), None), Some((PageClass::Free, 4)));
        // Slab with an odd mapping word: never user.
        assert_eq!(run(&k, 0, &page(0, 0xffff_8880_0000_1001, 0, 0xf500_0000), None), None);
        // Offline.
        assert_eq!(run(&k, 0, &page(0, 0, 0, 0xf100_0000), None), Some((PageClass::Offline, 1)));
        // Unaccepted memory: 2^(LENGTH(zone.free_area)-1) pages.
        assert_eq!(run(&k, 0, &page(0, 0, 0, 0xf700_0000), None), Some((PageClass::Free, 1024)));
        // Hugetlb folio: head _mapcount carries the type, order in page[1].flags low byte.
        let head = page(64, 0xffff_8880_1234_0000, 0, 0xf400_0000);
        let tail = page(9, 0, 0, u32::MAX);
        assert_eq!(run(&k, 512, &head, Some(&tail)), Some((PageClass::User, 512)));
        // Misaligned order is treated as order 0.
        assert_eq!(run(&k, 513, &head, Some(&tail)), Some((PageClass::User, 1)));
        // A tail page is skipped.
        let mut t = page(0, 0, 0, u32::MAX);
        t[8..16].copy_from_slice(&0xffff_ea00_0000_0001u64.to_le_bytes());
        assert_eq!(run(&k, 1, &t, None), None);
        // Swap cache without swapbacked is not cache.
        assert_eq!(run(&k, 0, &page(1 << 11, 0x1000, 0, u32::MAX), None), None);
        assert_eq!(run(&k, 0, &page((1 << 11) | (1 << 20), 0x1000, 0, u32::MAX), None), Some((PageClass::Cache, 1)));
        // Hwpoison.
        assert_eq!(run(&k, 0, &page(1 << 24, 0, 0, u32::MAX), None), Some((PageClass::Hwpoison, 1)));
    }

    #[test]
    fn linux_6_9_masked_types() {
        // 6.9–6.11: types clear a bit of 0xffffffff-based values; slab/hugetlb are masked tests.
        let text = V612
            .replace("4093640704", "-2049")
            .replace("4110417920", "-4097")
            .replace("4026531840", "-129")
            .replace("4043309056", "-257");
        let k = keys(&text);
        assert_eq!(run(&k, 0, &page(0, 0, 0, 0xffff_ff7f), None), Some((PageClass::Free, 1)));
        assert_eq!(run(&k, 0, &page(0, 1, 0, 0xffff_efff), None), None, "slab");
        let head = page(64, 0, 0, 0xffff_f7ff);
        let tail = page(2, 0, 0, u32::MAX);
        assert_eq!(run(&k, 4, &head, Some(&tail)), Some((PageClass::User, 4)));
    }

    #[test]
    fn dump_level_selects_branches() {
        let k = keys(V612);
        let cache_private = page((1 << 5) | (1 << 14), 0x1000, 0, u32::MAX);
        let mut st = ClassifyStats::default();
        assert_eq!(decide(&k, 2, 0, &cache_private, None, &mut st), None);
        assert_eq!(decide(&k, 4, 0, &cache_private, None, &mut st), Some((PageClass::CachePrivate, 1)));
        let buddy = page(0, 0, 12, 0xf000_0000);
        assert_eq!(decide(&k, 31, 0, &buddy, None, &mut st), None, "order >= LENGTH(zone.free_area)");
        assert_eq!(st.invalid_free_orders, 1);
        assert_eq!(decide(&k, 15, 0, &page(0, 0, 1, 0xf000_0000), None, &mut st), None);
    }

    #[test]
    fn missing_keys_are_listed() {
        let missing = PageKeys::from_vmcoreinfo(&VmcoreInfo::parse(b"SIZE(page)=64\n").unwrap()).unwrap_err();
        assert!(missing.contains(&"OFFSET(page.flags)".to_string()));
        assert!(missing.contains(&"NUMBER(PG_lru)".to_string()));
        let bad = V612.replace("OFFSET(page.private)=40", "OFFSET(page.private)=60");
        assert!(PageKeys::from_vmcoreinfo(&VmcoreInfo::parse(bad.as_bytes()).unwrap()).is_err());
    }

    #[test]
    fn excluded_at_levels() {
        assert!(PageClass::Zero.excluded_at(1));
        assert!(!PageClass::Zero.excluded_at(30));
        assert!(PageClass::Cache.excluded_at(2));
        assert!(!PageClass::CachePrivate.excluded_at(2));
        assert!(PageClass::Offline.excluded_at(0));
        assert!(!PageClass::NoData.excluded_at(31));
    }
}
