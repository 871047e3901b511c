//! Synthetic x86_64 vmcores for tests and fuzzing (feature `testkit`).
//!
//! [`SynthSpec::build`] lays out a small crashed "machine" in a sparse in-memory physical
//! space ([`SparsePhys`]): 4- or 5-level page tables (1 GiB direct map, 2 MiB kernel-image
//! pages, 4 KiB and 2 MiB vmemmap pages), an EXTREME `mem_section` table with an absent
//! section, `init_uts_ns`, and `struct page`s (Linux 6.1 layout) for every page class.
//! [`Synth::write_elf`] saves it as an ELF vmcore like `/proc/vmcore` exports (one PT_NOTE with
//! two CORE/NT_PRSTATUS notes and VMCOREINFO, page-aligned PT_LOADs).

use std::collections::HashMap;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use crate::addr::{Pfn, PhysAddr};
use crate::memory::{MemError, PhysMemory, PhysRange};

const PAGE: u64 = 4096;

/// Sparse physical memory: pages not written read as zero inside the ranges.
#[derive(Clone, Debug, Default)]
pub struct SparsePhys {
    /// Present ranges (like PT_LOADs).
    pub ranges: Vec<PhysRange>,
    /// Written pages by pfn.
    pub pages: HashMap<u64, Vec<u8>>,
}

impl SparsePhys {
    /// Write bytes at a physical address (any alignment, may cross pages).
    pub fn write(&mut self, pa: u64, data: &[u8]) {
        let mut done = 0usize;
        while done < data.len() {
            let cur = pa + done as u64;
            let pfn = cur / PAGE;
            let off = (cur % PAGE) as usize;
            let n = (PAGE as usize - off).min(data.len() - done);
            let page = self.pages.entry(pfn).or_insert_with(|| vec![0u8; PAGE as usize]);
            page[off..off + n].copy_from_slice(&data[done..done + n]);
            done += n;
        }
    }

    /// Write a u64.
    pub fn write_u64(&mut self, pa: u64, v: u64) {
        self.write(pa, &v.to_le_bytes());
    }

    /// Write a u32.
    pub fn write_u32(&mut self, pa: u64, v: u32) {
        self.write(pa, &v.to_le_bytes());
    }
}

impl PhysMemory for SparsePhys {
    fn read_phys(&self, pa: PhysAddr, buf: &mut [u8]) -> Result<(), MemError> {
        let mut done = 0usize;
        while done < buf.len() {
            let cur = pa.0.checked_add(done as u64).ok_or(MemError::Overflow { pa, len: buf.len() })?;
            if !self.ranges.iter().any(|r| cur >= r.start.0 && cur < r.end.0) {
                return Err(MemError::NotPresent { pa: PhysAddr(cur) });
            }
            let off = (cur % PAGE) as usize;
            let n = (PAGE as usize - off).min(buf.len() - done);
            match self.pages.get(&(cur / PAGE)) {
                Some(p) => buf[done..done + n].copy_from_slice(&p[off..off + n]),
                None => buf[done..done + n].fill(0),
            }
            done += n;
        }
        Ok(())
    }
    fn page_size(&self) -> u64 {
        PAGE
    }
    fn ranges(&self) -> Vec<PhysRange> {
        self.ranges.clone()
    }
}

/// What to build.
#[derive(Clone, Copy, Debug)]
pub struct SynthSpec {
    /// 4 or 5 paging levels.
    pub levels: u8,
    /// Use an SME mask bit in all page-table entries.
    pub sme: bool,
    /// Add a kexec-style kernel-text PT_LOAD overlapping RAM.
    pub text_segment: bool,
    /// Give slab pages an odd `mapping` word. makedumpfile releases before 1.7.6 count such
    /// pages as anonymous (user); rkdump never does. Real 6.1 slab pages have an even word.
    pub odd_slab_mapping: bool,
}

impl Default for SynthSpec {
    fn default() -> Self {
        SynthSpec { levels: 4, sme: false, text_segment: false, odd_slab_mapping: true }
    }
}

/// Expected page counts of the synthetic image at dump level 31 (see [`SynthSpec::build`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SynthExpect {
    /// Non-private cache pages.
    pub cache: u64,
    /// Private cache pages.
    pub cache_private: u64,
    /// User pages.
    pub user: u64,
    /// Free pages.
    pub free: u64,
    /// Free pages of the per-CPU lists.
    pub free_percpu: u64,
    /// Hwpoison pages.
    pub hwpoison: u64,
    /// Offline pages.
    pub offline: u64,
}

/// A built synthetic machine.
#[derive(Clone, Debug)]
pub struct Synth {
    /// Physical memory.
    pub phys: SparsePhys,
    /// VMCOREINFO text.
    pub vmcoreinfo: String,
    /// Kernel-text segment (paddr, vaddr, size) if requested.
    pub text: Option<(u64, u64, u64)>,
    /// Direct-map base.
    pub page_offset: u64,
    /// vmemmap base.
    pub vmemmap: u64,
    /// Expected class counts.
    pub expect: SynthExpect,
}

/// `__START_KERNEL_map`.
pub const START_KERNEL_MAP: u64 = 0xffff_ffff_8000_0000;
/// Physical slide of the kernel image.
pub const PHYS_BASE: u64 = 0x20_0000;
/// `SME` bit used when [`SynthSpec::sme`] is set.
pub const SME_BIT: u64 = 1 << 47;
/// Struct page size (6.1 layout).
pub const SIZEOF_PAGE: u64 = 64;
/// The RAM ranges.
pub const RAM: [(u64, u64); 3] = [(0x1000, 0x9fc00), (0x10_0000, 0x400_0000), (0x1000_0000, 0x1040_0000)];

// struct page field offsets (6.1).
const OFF_FLAGS: u64 = 0;
const OFF_CHEAD: u64 = 8;
const OFF_DTOR: u64 = 16;
const OFF_MAPPING: u64 = 24;
const OFF_PRIVATE: u64 = 40;
const OFF_MAPCOUNT: u64 = 48;
const OFF_REFCOUNT: u64 = 52;

const PG_LRU: u64 = 4;
const PG_SLAB: u64 = 9;
const PG_SWAPCACHE: u64 = 10;
const PG_RESERVED: u64 = 12;
const PG_PRIVATE: u64 = 13;
const PG_HEAD: u64 = 16;
const PG_SWAPBACKED: u64 = 19;
const PG_HWPOISON: u64 = 23;
/// `PAGE_BUDDY_MAPCOUNT_VALUE` of 4.18–6.11.
pub const BUDDY: u32 = 0xffff_ff7f;
/// `PAGE_OFFLINE_MAPCOUNT_VALUE` of 4.18–6.11.
pub const OFFLINE: u32 = 0xffff_feff;

/// Physical addresses of the page-table pages and kernel data.
const KDATA: u64 = 0x121_0000; // == VA 0xffffffff81010000
const ROOT: u64 = KDATA;
const P4D_DM: u64 = KDATA + 0x1000;
const P4D_VM: u64 = KDATA + 0x2000;
const P4D_K: u64 = KDATA + 0x3000;
const PUD_DM: u64 = KDATA + 0x4000;
const PUD_VM: u64 = KDATA + 0x5000;
const PUD_K: u64 = KDATA + 0x6000;
const PMD_VM: u64 = KDATA + 0x7000;
const PMD_K: u64 = KDATA + 0x8000;
const PTE_VM: u64 = KDATA + 0x9000;
const UTS: u64 = KDATA + 0x10000; // VA ffffffff81020000
const MS_ROOT: u64 = KDATA + 0x20000;
const MS_SECTIONS: u64 = KDATA + 0x21000;
/// Physical home of section 0's struct pages (4 KiB-mapped) and section 2's (2 MiB-mapped).
const VMEMMAP_A: u64 = 0x200_0000;
const VMEMMAP_B: u64 = 0x220_0000;

fn kva(pa: u64) -> u64 {
    pa - PHYS_BASE + START_KERNEL_MAP
}

impl SynthSpec {
    /// Build the machine.
    pub fn build(&self) -> Synth {
        let l5 = self.levels == 5;
        let sme = if self.sme { SME_BIT } else { 0 };
        let page_offset: u64 = if l5 { 0xff11_0000_0000_0000 } else { 0xffff_8880_0000_0000 };
        let vmemmap: u64 = if l5 { 0xffd4_0000_0000_0000 } else { 0xffff_ea00_0000_0000 };
        let mut m = SparsePhys {
            ranges: RAM.iter().map(|&(s, e)| PhysRange { start: PhysAddr(s), end: PhysAddr(e) }).collect(),
            pages: HashMap::new(),
        };
        let p = 1u64 | 2; // present | rw
        let pse = 1u64 << 7;
        let idx = |va: u64, level: u32| (va >> (12 + 9 * (level - 1))) & 511;
        // Top level.
        let (dm_next, vm_next, k_next) = if l5 { (P4D_DM, P4D_VM, P4D_K) } else { (PUD_DM, PUD_VM, PUD_K) };
        let top = self.levels as u32;
        m.write_u64(ROOT + idx(page_offset, top) * 8, dm_next | p | sme);
        m.write_u64(ROOT + idx(vmemmap, top) * 8, vm_next | p | sme);
        m.write_u64(ROOT + idx(START_KERNEL_MAP, top) * 8, k_next | p | sme);
        if l5 {
            m.write_u64(P4D_DM + idx(page_offset, 4) * 8, PUD_DM | p | sme);
            m.write_u64(P4D_VM + idx(vmemmap, 4) * 8, PUD_VM | p | sme);
            m.write_u64(P4D_K + idx(START_KERNEL_MAP, 4) * 8, PUD_K | p | sme);
        }
        // Direct map: one 1 GiB page at PA 0.
        m.write_u64(PUD_DM + idx(page_offset, 3) * 8, p | pse | sme);
        // Kernel image: 2 MiB pages from phys_base.
        m.write_u64(PUD_K + idx(START_KERNEL_MAP, 3) * 8, PMD_K | p | sme);
        for i in 0..32u64 {
            m.write_u64(PMD_K + i * 8, (PHYS_BASE + i * 0x20_0000) | p | pse | sme);
        }
        // vmemmap: section 0 (first 2 MiB of vmemmap) with 4 KiB pages, section 2 with a 2 MiB
        // page (pfn 0x10000 * 64 = 4 MiB into vmemmap = PMD index 2).
        m.write_u64(PUD_VM + idx(vmemmap, 3) * 8, PMD_VM | p | sme);
        m.write_u64(PMD_VM, PTE_VM | p | sme);
        for i in 0..512u64 {
            m.write_u64(PTE_VM + i * 8, (VMEMMAP_A + i * PAGE) | p | sme);
        }
        m.write_u64(PMD_VM + 2 * 8, VMEMMAP_B | p | pse | sme);

        // init_uts_ns.name
        for (i, s) in ["Linux", "synth", "6.1.0-synth", "#1 SMP synthetic", "x86_64", "(none)"].iter().enumerate() {
            m.write(UTS + i as u64 * 65, s.as_bytes());
        }

        // mem_section: root array (one root page used) reached through the direct map.
        m.write_u64(MS_ROOT, page_offset + MS_SECTIONS);
        let pps = 1u64 << (27 - 12);
        for (nr, present) in [(0u64, true), (1, false), (2, true)] {
            if !present {
                continue;
            }
            let mm = vmemmap + nr * pps * SIZEOF_PAGE;
            let coded = mm.wrapping_sub(nr * pps * SIZEOF_PAGE) | 0x1 | 0x2 | 0x4 | 0x8;
            m.write_u64(MS_SECTIONS + nr * 16, coded);
        }

        // struct pages: every pfn of RAM gets a default page (mapcount -1, refcount 1).
        let sp = |pfn: u64| -> u64 {
            if pfn < 0x8000 {
                VMEMMAP_A + pfn * SIZEOF_PAGE
            } else {
                VMEMMAP_B + (pfn - 0x10000) * SIZEOF_PAGE
            }
        };
        let mut default_page = vec![0u8; SIZEOF_PAGE as usize];
        default_page[OFF_MAPCOUNT as usize..OFF_MAPCOUNT as usize + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        default_page[OFF_REFCOUNT as usize..OFF_REFCOUNT as usize + 4].copy_from_slice(&1u32.to_le_bytes());
        let mut all_pfns: Vec<u64> = (0..0x4000).collect();
        all_pfns.extend(0x10000..0x10400);
        let mut vm = vec![0u8; 0];
        for &pfn in &all_pfns {
            vm.clear();
            vm.extend_from_slice(&default_page);
            m.write(sp(pfn), &vm);
        }
        let set = |m: &mut SparsePhys, pfn: u64, flags: u64, mapping: u64, private: u64, mapcount: u32| {
            let a = sp(pfn);
            m.write_u64(a + OFF_FLAGS, flags);
            m.write_u64(a + OFF_MAPPING, mapping);
            m.write_u64(a + OFF_PRIVATE, private);
            m.write_u32(a + OFF_MAPCOUNT, mapcount);
        };
        let data = |m: &mut SparsePhys, pfn: u64| {
            m.write(pfn * PAGE, &[0xa5u8; 64]);
        };
        let bit = |b: u64| 1u64 << b;
        let file_mapping = page_offset + 0x1234_5600;
        let anon_mapping = page_offset + 0x1234_5601;
        let mut e = SynthExpect::default();
        // Kernel-owned data pages (page tables, uts, mem_section) are non-zero and reserved.
        for pfn in (KDATA / PAGE)..(KDATA / PAGE + 0x22) {
            set(&mut m, pfn, bit(PG_RESERVED), 0, 0, u32::MAX);
        }
        // Page cache, non-private.
        for pfn in 0x1000..0x1010 {
            set(&mut m, pfn, bit(PG_LRU), file_mapping, 0, 0);
            data(&mut m, pfn);
            e.cache += 1;
        }
        // Page cache, private (buffer heads).
        for pfn in 0x1010..0x1018 {
            set(&mut m, pfn, bit(PG_LRU) | bit(PG_PRIVATE), file_mapping, 0, 0);
            data(&mut m, pfn);
            e.cache_private += 1;
        }
        // Swap cache (swapbacked) counts as cache.
        for pfn in 0x1018..0x101c {
            set(&mut m, pfn, bit(PG_SWAPCACHE) | bit(PG_SWAPBACKED), file_mapping, 0, 0);
            data(&mut m, pfn);
            e.cache += 1;
        }
        // Anonymous pages on the LRU: user, not cache.
        for pfn in 0x1020..0x1030 {
            set(&mut m, pfn, bit(PG_LRU) | bit(PG_SWAPBACKED), anon_mapping, 0, 0);
            data(&mut m, pfn);
            e.user += 1;
        }
        // THP: anonymous order-9 folio.
        let thp = 0x2800u64;
        set(&mut m, thp, bit(PG_HEAD) | bit(PG_LRU), anon_mapping, 0, 0);
        // compound_dtor (OFFSET 16) then compound_order (OFFSET 17).
        m.write(sp(thp + 1) + OFF_DTOR, &[3u8, 9u8]);
        for pfn in thp..thp + 512 {
            if pfn != thp {
                m.write_u64(sp(pfn) + OFF_CHEAD, (vmemmap + thp * SIZEOF_PAGE) | 1);
            }
            data(&mut m, pfn);
        }
        e.user += 512;
        // hugetlbfs: order-9 page with HUGETLB_PAGE_DTOR (2), file mapping, not on the LRU.
        let huge = 0x2a00u64;
        set(&mut m, huge, bit(PG_HEAD), file_mapping, 0, 0);
        m.write(sp(huge + 1) + OFF_DTOR, &[2u8, 9u8]);
        for pfn in huge..huge + 512 {
            if pfn != huge {
                m.write_u64(sp(pfn) + OFF_CHEAD, (vmemmap + huge * SIZEOF_PAGE) | 1);
            }
            data(&mut m, pfn);
        }
        e.user += 512;
        // A non-hugetlb, non-anon compound page (e.g. kernel allocation): kept.
        let kcomp = 0x2c00u64;
        set(&mut m, kcomp, bit(PG_HEAD), 0, 0, u32::MAX);
        m.write(sp(kcomp + 1) + OFF_DTOR, &[1u8, 2u8]);
        for pfn in kcomp..kcomp + 4 {
            if pfn != kcomp {
                m.write_u64(sp(pfn) + OFF_CHEAD, (vmemmap + kcomp * SIZEOF_PAGE) | 1);
            }
            data(&mut m, pfn);
        }
        // Free buddy blocks: order 3, order 0, and one with an invalid order (skipped).
        set(&mut m, 0x1800, 0, 0, 3, BUDDY);
        e.free += 8;
        set(&mut m, 0x1808, 0, 0, 0, BUDDY);
        e.free += 1;
        set(&mut m, 0x1810, 0, 0, 11, BUDDY);
        data(&mut m, 0x1810);
        // A per-CPU free list (head in kernel data, reached through the direct map) holding an
        // order-0 page, an order-3 block (its tails unreferenced), an odd order-0 page, an
        // order-0 page followed by an allocated one, and a referenced page (kept).
        let lru = |pfn: u64| vmemmap + pfn * SIZEOF_PAGE + OFF_CHEAD;
        let head_pa = KDATA + 0x11000;
        let head = page_offset + head_pa;
        let members = [0x1c00u64, 0x1c08, 0x1c21, 0x1c60, 0x1c70];
        let unref = |m: &mut SparsePhys, pfn: u64| {
            m.write_u32(sp(pfn) + OFF_REFCOUNT, 0);
            data(m, pfn);
        };
        for (n, &pfn) in members.iter().enumerate() {
            let prev = if n == 0 { head } else { lru(members[n - 1]) };
            let next = members.get(n + 1).map_or(head, |&q| lru(q));
            m.write_u64(sp(pfn) + OFF_CHEAD, next);
            m.write_u64(sp(pfn) + OFF_CHEAD + 8, prev);
            unref(&mut m, pfn);
        }
        m.write_u32(sp(0x1c70) + OFF_REFCOUNT, 1);
        m.write_u64(head_pa, lru(members[0]));
        m.write_u64(head_pa + 8, lru(0x1c70));
        for pfn in 0x1c09..0x1c10 {
            unref(&mut m, pfn);
        }
        e.free_percpu += 1 + 8 + 1 + 1;
        for pfn in [0x1c01, 0x1c22, 0x1c61, 0x1c71] {
            data(&mut m, pfn);
        }
        // Kept: unreferenced but not on a list (its lru points at itself); the tails of an
        // order-2 allocation without __GFP_COMP (unreferenced, never linked); and one whose
        // neighbours do not point back at it.
        unref(&mut m, 0x1c40);
        m.write_u64(sp(0x1c40) + OFF_CHEAD, lru(0x1c40));
        m.write_u64(sp(0x1c40) + OFF_CHEAD + 8, lru(0x1c40));
        data(&mut m, 0x1c50);
        for pfn in 0x1c51..0x1c54 {
            unref(&mut m, pfn);
        }
        unref(&mut m, 0x1c90);
        m.write_u64(sp(0x1c90) + OFF_CHEAD, lru(0x1c00));
        m.write_u64(sp(0x1c90) + OFF_CHEAD + 8, head);
        // Slab pages whose mapping word is odd: never anon/user.
        for pfn in 0x1900..0x1904 {
            let slab_mapping = page_offset + 0x1000 + u64::from(self.odd_slab_mapping);
            set(&mut m, pfn, bit(PG_SLAB), slab_mapping, 0, u32::MAX);
            data(&mut m, pfn);
        }
        // Hardware-poisoned page and logically offline pages.
        set(&mut m, 0x1a00, bit(PG_HWPOISON), 0, 0, u32::MAX);
        data(&mut m, 0x1a00);
        e.hwpoison += 1;
        for pfn in 0x1a10..0x1a14 {
            set(&mut m, pfn, 0, 0, 0, OFFLINE);
            data(&mut m, pfn);
            e.offline += 1;
        }
        // A buddy block at the start of a window boundary used by tests (pfn 0x2000, order 4),
        // and an order-10 block in the high section.
        set(&mut m, 0x1ff0, 0, 0, 4, BUDDY);
        e.free += 16;
        set(&mut m, 0x10000, 0, 0, 10, BUDDY);
        e.free += 1024;
        // Some kept kernel data in the low segment.
        for pfn in 0x10..0x20 {
            data(&mut m, pfn);
        }

        let text =
            if self.text_segment { Some((0x100_0000u64, 0xffff_ffff_8100_0000u64, 0x200_0000u64)) } else { None };
        let vmcoreinfo = format!(
            "OSRELEASE=6.1.0-synth\nPAGESIZE=4096\n\
SYMBOL(init_uts_ns)={uts:x}\nOFFSET(uts_namespace.name)=0\n\
SYMBOL(node_online_map)=ffffffff81040000\nSYMBOL(swapper_pg_dir)={root:x}\n\
SYMBOL(_stext)=ffffffff81000000\nSYMBOL(vmap_area_list)=ffffffff81041000\n\
SYMBOL(mem_section)={ms:x}\nLENGTH(mem_section)={ms_len}\nSIZE(mem_section)=16\n\
OFFSET(mem_section.section_mem_map)=0\nNUMBER(SECTION_SIZE_BITS)=27\n\
NUMBER(MAX_PHYSMEM_BITS)={pbits}\n\
SIZE(page)=64\nSIZE(pglist_data)=171776\nSIZE(zone)=1728\nSIZE(free_area)=104\n\
SIZE(list_head)=16\nSIZE(nodemask_t)=128\n\
OFFSET(page.flags)=0\nOFFSET(page._refcount)=52\nOFFSET(page.mapping)=24\n\
OFFSET(page.lru)=8\nOFFSET(page._mapcount)=48\nOFFSET(page.private)=40\n\
OFFSET(page.compound_dtor)=16\nOFFSET(page.compound_order)=17\n\
OFFSET(page.compound_head)=8\n\
OFFSET(pglist_data.node_zones)=0\nOFFSET(pglist_data.nr_zones)=171232\n\
OFFSET(pglist_data.node_start_pfn)=171240\nOFFSET(pglist_data.node_spanned_pages)=171256\n\
OFFSET(pglist_data.node_id)=171264\nOFFSET(zone.free_area)=192\nOFFSET(zone.vm_stat)=1600\n\
OFFSET(zone.spanned_pages)=96\nOFFSET(free_area.free_list)=0\nOFFSET(list_head.next)=0\n\
OFFSET(list_head.prev)=8\nLENGTH(zone.free_area)=11\nLENGTH(free_area.free_list)=6\n\
NUMBER(NR_FREE_PAGES)=0\nNUMBER(PG_lru)=4\nNUMBER(PG_private)=13\nNUMBER(PG_swapcache)=10\n\
NUMBER(PG_swapbacked)=19\nNUMBER(PG_slab)=9\nNUMBER(PG_hwpoison)=23\n\
NUMBER(PG_head_mask)=65536\nNUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)=-129\n\
NUMBER(HUGETLB_PAGE_DTOR)=2\nNUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)=-257\n\
NUMBER(phys_base)={pb}\nSYMBOL(init_top_pgt)={root:x}\nNUMBER(pgtable_l5_enabled)={l5}\n\
KERNELOFFSET=0\nNUMBER(KERNEL_IMAGE_SIZE)=1073741824\n{sme_line}CRASHTIME=1700000000\n",
            uts = kva(UTS),
            root = kva(ROOT),
            ms = page_offset + MS_ROOT,
            ms_len = if l5 { 131072 } else { 2048 },
            pbits = if l5 { 52 } else { 46 },
            pb = PHYS_BASE,
            l5 = u8::from(l5),
            sme_line = if self.sme { format!("NUMBER(sme_mask)={:#x}\n", SME_BIT) } else { String::new() },
        );
        Synth { phys: m, vmcoreinfo, text, page_offset, vmemmap, expect: e }
    }
}

fn note(out: &mut Vec<u8>, name: &[u8], n_type: u32, desc: &[u8]) {
    out.extend_from_slice(&(name.len() as u32 + 1).to_le_bytes());
    out.extend_from_slice(&(desc.len() as u32).to_le_bytes());
    out.extend_from_slice(&n_type.to_le_bytes());
    out.extend_from_slice(name);
    out.push(0);
    while out.len() % 4 != 0 {
        out.push(0);
    }
    out.extend_from_slice(desc);
    while out.len() % 4 != 0 {
        out.push(0);
    }
}

impl Synth {
    /// The PT_NOTE bytes: two CORE/NT_PRSTATUS notes and VMCOREINFO.
    pub fn notes(&self) -> Vec<u8> {
        let mut n = Vec::new();
        note(&mut n, b"CORE", 1, &[0u8; 336]);
        note(&mut n, b"CORE", 1, &[0u8; 336]);
        note(&mut n, b"VMCOREINFO", 0, self.vmcoreinfo.as_bytes());
        n
    }

    /// Write an ELF vmcore to `path`.
    pub fn write_elf(&self, path: &Path) -> std::io::Result<()> {
        let notes = self.notes();
        // (paddr, vaddr, size)
        let mut loads: Vec<(u64, u64, u64)> = Vec::new();
        if let Some(t) = self.text {
            loads.push(t);
        }
        for &(s, e) in &RAM {
            loads.push((s, self.page_offset + s, e - s));
        }
        let phnum = 1 + loads.len();
        let mut hdr = Vec::new();
        hdr.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
        hdr.extend_from_slice(&4u16.to_le_bytes()); // ET_CORE
        hdr.extend_from_slice(&62u16.to_le_bytes()); // x86_64
        hdr.extend_from_slice(&1u32.to_le_bytes());
        hdr.extend_from_slice(&0u64.to_le_bytes());
        hdr.extend_from_slice(&64u64.to_le_bytes()); // phoff
        hdr.extend_from_slice(&0u64.to_le_bytes());
        hdr.extend_from_slice(&0u32.to_le_bytes());
        hdr.extend_from_slice(&64u16.to_le_bytes());
        hdr.extend_from_slice(&56u16.to_le_bytes());
        hdr.extend_from_slice(&(phnum as u16).to_le_bytes());
        hdr.extend_from_slice(&0u16.to_le_bytes());
        hdr.extend_from_slice(&0u16.to_le_bytes());
        hdr.extend_from_slice(&0u16.to_le_bytes());
        let ph = |h: &mut Vec<u8>, t: u32, off: u64, va: u64, pa: u64, sz: u64| {
            h.extend_from_slice(&t.to_le_bytes());
            // p_flags: RWE on PT_LOAD, as the kernel and kexec-tools write them.
            h.extend_from_slice(&(if t == 1 { 7u32 } else { 0 }).to_le_bytes());
            h.extend_from_slice(&off.to_le_bytes());
            h.extend_from_slice(&va.to_le_bytes());
            h.extend_from_slice(&pa.to_le_bytes());
            h.extend_from_slice(&sz.to_le_bytes());
            h.extend_from_slice(&sz.to_le_bytes());
            h.extend_from_slice(&0u64.to_le_bytes());
        };
        let notes_off = PAGE;
        ph(&mut hdr, 4, notes_off, 0, 0, notes.len() as u64);
        let mut off = (notes_off + notes.len() as u64).div_ceil(PAGE) * PAGE;
        let mut placed = Vec::new();
        for &(pa, va, sz) in &loads {
            let start = pa & !(PAGE - 1);
            let file_off = off + (pa - start);
            ph(&mut hdr, 1, file_off, va, pa, sz);
            placed.push((pa, file_off, sz));
            off = (file_off + sz).div_ceil(PAGE) * PAGE;
        }
        let mut f = std::fs::File::create(path)?;
        f.write_all(&hdr)?;
        f.seek(SeekFrom::Start(notes_off))?;
        f.write_all(&notes)?;
        f.set_len(off)?;
        for (pa, file_off, sz) in placed {
            let mut pfns: Vec<u64> =
                self.phys.pages.keys().copied().filter(|&pfn| pfn * PAGE + PAGE > pa && pfn * PAGE < pa + sz).collect();
            pfns.sort_unstable();
            for pfn in pfns {
                let page = &self.phys.pages[&pfn];
                let s = (pfn * PAGE).max(pa);
                let e = (pfn * PAGE + PAGE).min(pa + sz);
                let b = &page[(s - pfn * PAGE) as usize..(e - pfn * PAGE) as usize];
                f.seek(SeekFrom::Start(file_off + (s - pa)))?;
                f.write_all(b)?;
            }
        }
        f.flush()
    }

    /// Pfn of the first page of a RAM range (for tests).
    pub fn ram_pfn(i: usize) -> Pfn {
        Pfn(RAM[i].0 / PAGE)
    }
}
