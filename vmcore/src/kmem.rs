//! Kernel virtual memory: x86_64 page-table translation over a [`PhysMemory`] (FORMATS.md §4.8).
//!
//! Like makedumpfile, **every** kernel virtual address (direct map, vmemmap, kernel image) is
//! translated by walking the crashed kernel's own page tables, rooted at
//! `SYMBOL(init_top_pgt) - __START_KERNEL_map + NUMBER(phys_base)`. 4-level and 5-level
//! (`NUMBER(pgtable_l5_enabled)`) paging, 1 GiB and 2 MiB pages and the SME encryption bit
//! (`NUMBER(sme_mask)`) are handled. VMCOREINFO symbols are already KASLR-relocated and
//! phys_base carries the physical slide, so no further adjustment is needed.

use std::cell::Cell;

use crate::addr::{PhysAddr, VirtAddr};
use crate::memory::{MemError, PhysMemory};
use crate::vmcoreinfo::VmcoreInfo;

/// `__START_KERNEL_map` on x86_64.
pub const START_KERNEL_MAP: u64 = 0xffff_ffff_8000_0000;
const PTE_PRESENT: u64 = 1;
const PTE_PSE: u64 = 1 << 7;
/// Physical-address bits 12..51 of a page-table entry.
const PTE_PFN_MASK: u64 = 0x000f_ffff_ffff_f000;

/// Errors from virtual-address translation and reads.
#[derive(Debug, thiserror::Error)]
pub enum KmemError {
    /// A VMCOREINFO key needed for translation is missing.
    #[error("vmcoreinfo lacks {key}, needed for x86_64 address translation")]
    MissingKey {
        /// The key.
        key: &'static str,
    },
    /// The dump is not x86_64.
    #[error("address translation for this architecture is not yet supported (only x86_64)")]
    UnsupportedArch,
    /// A page-table entry on the way was not present.
    #[error("virtual address {va} is not mapped (entry {entry:#x} at level {level} not present)")]
    NotMapped {
        /// The address.
        va: VirtAddr,
        /// Level where the walk stopped (5 = PGD of 5-level ... 1 = PTE).
        level: u8,
        /// The entry read.
        entry: u64,
    },
    /// A page table or the data could not be read.
    #[error("cannot read memory for virtual address {va}")]
    Read {
        /// The address.
        va: VirtAddr,
        /// The cause.
        #[source]
        source: MemError,
    },
    /// Address arithmetic overflowed.
    #[error("address overflow at virtual address {va}")]
    Overflow {
        /// The address.
        va: VirtAddr,
    },
}

/// x86_64 paging parameters taken from VMCOREINFO.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct X86_64Paging {
    /// Physical address of the top-level table.
    pub root: PhysAddr,
    /// 4 or 5.
    pub levels: u8,
    /// Memory-encryption bit(s) to strip from entries.
    pub sme_mask: u64,
    /// `NUMBER(phys_base)`.
    pub phys_base: u64,
}

impl X86_64Paging {
    /// Derive paging parameters from VMCOREINFO.
    pub fn from_vmcoreinfo(vi: &VmcoreInfo) -> Result<X86_64Paging, KmemError> {
        let pgt = vi
            .symbol("init_top_pgt")
            .or_else(|| vi.symbol("init_level4_pgt"))
            .ok_or(KmemError::MissingKey { key: "SYMBOL(init_top_pgt)" })?;
        let phys_base = vi.number("phys_base").ok_or(KmemError::MissingKey { key: "NUMBER(phys_base)" })? as u64;
        // phys_base is signed: with physical KASLR the kernel can sit below its link-time
        // physical address, and the kernel computes __pa_symbol() modulo 2^64 too.
        let root =
            pgt.checked_sub(START_KERNEL_MAP).ok_or(KmemError::Overflow { va: VirtAddr(pgt) })?.wrapping_add(phys_base);
        let levels = if vi.number("pgtable_l5_enabled").unwrap_or(0) != 0 { 5 } else { 4 };
        let sme_mask = vi.number("sme_mask").unwrap_or(0) as u64;
        Ok(X86_64Paging { root: PhysAddr(root & !0xfff), levels, sme_mask, phys_base })
    }

    fn entry_mask(&self) -> u64 {
        PTE_PFN_MASK & !self.sme_mask
    }

    /// Translate `va` by walking the page tables in `mem`.
    pub fn translate<M: PhysMemory + ?Sized>(&self, mem: &M, va: VirtAddr) -> Result<PhysAddr, KmemError> {
        self.translate_leaf(mem, va).map(|(pa, _)| pa)
    }

    /// Like [`X86_64Paging::translate`], also returning the size of the leaf mapping that
    /// holds `va` (4 KiB, 2 MiB or 1 GiB): the whole leaf is physically contiguous.
    pub fn translate_leaf<M: PhysMemory + ?Sized>(&self, mem: &M, va: VirtAddr) -> Result<(PhysAddr, u64), KmemError> {
        let mask = self.entry_mask();
        let mut table = self.root.0;
        let mut level = self.levels;
        loop {
            let shift = 12 + 9 * (level as u32 - 1);
            let index = (va.0 >> shift) & 511;
            let mut e = [0u8; 8];
            mem.read_phys(PhysAddr(table + index * 8), &mut e).map_err(|source| KmemError::Read { va, source })?;
            let entry = u64::from_le_bytes(e);
            if entry & PTE_PRESENT == 0 {
                return Err(KmemError::NotMapped { va, level, entry });
            }
            let is_leaf = level == 1 || ((level == 2 || level == 3) && entry & PTE_PSE != 0);
            if is_leaf {
                let page_mask = (1u64 << shift) - 1;
                let base = entry & mask & !page_mask;
                return Ok((PhysAddr(base | (va.0 & page_mask)), 1u64 << shift));
            }
            table = entry & mask;
            level -= 1;
        }
    }
}

/// Kernel memory of the crashed machine: physical memory plus x86_64 translation.
pub struct KernelMemory<'m, M: PhysMemory + ?Sized> {
    mem: &'m M,
    paging: X86_64Paging,
    /// One-entry translation cache: (virtual start, physical start, size) of the last leaf
    /// mapping used (a 4 KiB, 2 MiB or 1 GiB page).
    tlb: Cell<Option<(u64, u64, u64)>>,
}

impl<'m, M: PhysMemory + ?Sized> KernelMemory<'m, M> {
    /// Combine `mem` with translation parameters from `vi`.
    pub fn new(mem: &'m M, vi: &VmcoreInfo) -> Result<Self, KmemError> {
        Ok(Self::with_paging(mem, X86_64Paging::from_vmcoreinfo(vi)?))
    }

    /// Combine `mem` with explicit paging parameters.
    pub fn with_paging(mem: &'m M, paging: X86_64Paging) -> Self {
        KernelMemory { mem, paging, tlb: Cell::new(None) }
    }

    /// The physical memory underneath.
    pub fn phys(&self) -> &'m M {
        self.mem
    }

    /// The paging parameters.
    pub fn paging(&self) -> &X86_64Paging {
        &self.paging
    }

    /// Translate one virtual address.
    pub fn translate(&self, va: VirtAddr) -> Result<PhysAddr, KmemError> {
        self.translate_extent(va).map(|(pa, _)| pa)
    }

    /// Translate `va` and say how many bytes from it on stay physically contiguous (to the
    /// end of its leaf mapping).
    fn translate_extent(&self, va: VirtAddr) -> Result<(PhysAddr, u64), KmemError> {
        if let Some((v, p, size)) = self.tlb.get() {
            let off = va.0.wrapping_sub(v);
            if off < size {
                return Ok((PhysAddr(p + off), size - off));
            }
        }
        let (pa, size) = self.paging.translate_leaf(self.mem, va)?;
        let off = va.0 & (size - 1);
        self.tlb.set(Some((va.0 - off, pa.0 - off, size)));
        Ok((pa, size - off))
    }

    /// Read `buf.len()` bytes at `va`: one physical read per leaf mapping it touches (a
    /// struct page array in a 2 MiB vmemmap page is one read, not one per 4 KiB).
    pub fn read_virt(&self, va: VirtAddr, buf: &mut [u8]) -> Result<(), KmemError> {
        if va.0.checked_add(buf.len() as u64).is_none() {
            return Err(KmemError::Overflow { va });
        }
        let mut done = 0usize;
        while done < buf.len() {
            let cur = VirtAddr(va.0 + done as u64);
            let (pa, extent) = self.translate_extent(cur)?;
            let n = usize::try_from(extent).unwrap_or(usize::MAX).min(buf.len() - done);
            self.mem.read_phys(pa, &mut buf[done..done + n]).map_err(|source| KmemError::Read { va: cur, source })?;
            done += n;
        }
        Ok(())
    }

    /// Read a little-endian u64 at `va`.
    pub fn read_u64(&self, va: VirtAddr) -> Result<u64, KmemError> {
        let mut b = [0u8; 8];
        self.read_virt(va, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// The start of the direct map (`page_offset_base`), from VMCOREINFO's `mem_section`
    /// pointer: on SPARSEMEM_EXTREME kernels it points at memory the direct map covers, so its
    /// virtual address less the physical one the page tables give is the base. `None` when
    /// the pointer is missing or untranslatable, lies outside the direct map's possible range
    /// (a static array in the kernel image), or gives a base that is not 1 GiB aligned (the
    /// direct map's placement unit, KASLR or not).
    pub fn direct_map_base(&self, vi: &VmcoreInfo) -> Option<u64> {
        let va = vi.symbol("mem_section")?;
        if !(0xff00_0000_0000_0000..0xffff_ffff_8000_0000).contains(&va) {
            return None;
        }
        let base = va.wrapping_sub(self.translate(VirtAddr(va)).ok()?.0);
        (base % (1 << 30) == 0 && base >= 0xff00_0000_0000_0000).then_some(base)
    }

    /// Read a little-endian u32 at `va`.
    pub fn read_u32(&self, va: VirtAddr) -> Result<u32, KmemError> {
        let mut b = [0u8; 4];
        self.read_virt(va, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
}

#[cfg(test)]
mod regression_tests {
    use super::*;

    /// A capture of the Debian 12 kernel whose physical KASLR slide put it below its link-time
    /// address: VMCOREINFO said `NUMBER(phys_base)=-218103808` and the root table address was
    /// computed with checked arithmetic, so every translation failed with "address overflow".
    #[test]
    fn negative_phys_base_is_twos_complement() {
        let text = b"SYMBOL(init_top_pgt)=ffffffffa1410000\nNUMBER(phys_base)=-218103808\n";
        let vi = VmcoreInfo::parse(text).unwrap();
        let paging = X86_64Paging::from_vmcoreinfo(&vi).unwrap();
        assert_eq!(paging.root, PhysAddr(0x2141_0000 - 218_103_808));
        assert_eq!(paging.levels, 4);
    }
}
