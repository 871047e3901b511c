//! Finding the `struct page` array (mem_map) from VMCOREINFO (FORMATS.md §4.3).
//!
//! SPARSEMEM (EXTREME or static root array; VMEMMAP kernels are SPARSEMEM whose
//! section_mem_map values are vmemmap addresses) and FLATMEM (`SYMBOL(mem_map)`) are supported.
//! DISCONTIGMEM is not yet supported. The result is one mem_map address per section, like
//! makedumpfile's `mem_map_data`; the section count is validated before anything is allocated.

use crate::addr::{Pfn, VirtAddr};
use crate::kmem::{KernelMemory, KmemError};
use crate::memory::PhysMemory;
use crate::vmcoreinfo::VmcoreInfo;

/// Most sections accepted (2^21 sections of 128 MiB = 256 TiB; 16 MiB of table).
pub const MAX_SECTIONS: u64 = 1 << 21;
const SECTION_MARKED_PRESENT: u64 = 1;
const SECTION_MAP_MASK: u64 = !0x1f;

/// Errors from mem_map discovery.
#[derive(Debug, thiserror::Error)]
pub enum MemMapError {
    /// Required keys are missing.
    #[error("vmcoreinfo lacks {}, needed to find mem_map", .keys.join(", "))]
    MissingKeys {
        /// The keys.
        keys: Vec<String>,
    },
    /// A value is out of range.
    #[error("implausible memory-model value: {what}")]
    Invalid {
        /// What.
        what: String,
    },
    /// Reading the section table failed.
    #[error("cannot read the mem_section table")]
    Read {
        /// The cause.
        #[source]
        source: KmemError,
    },
    /// No section decoded to a kernel address.
    #[error("no memory section has a valid mem_map (mem_section table unreadable or corrupt)")]
    NoValidSection,
}

/// The kernel's memory model as found in VMCOREINFO.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryModel {
    /// SPARSEMEM with a dynamically allocated root array.
    SparseExtreme,
    /// SPARSEMEM with a static array of `struct mem_section`.
    Sparse,
    /// FLATMEM: one `mem_map` array.
    Flat,
}

/// A contiguous run of pfns sharing one mem_map (a section, or all of FLATMEM).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemMapSegment {
    /// First pfn.
    pub pfn_start: Pfn,
    /// One past the last pfn.
    pub pfn_end: Pfn,
    /// Address of the `struct page` of `pfn_start`.
    pub mem_map: VirtAddr,
}

/// The located mem_map.
#[derive(Clone, Debug)]
pub struct MemMap {
    model: MemoryModel,
    page_struct_size: u64,
    pages_per_section: u64,
    /// mem_map VA of the first pfn of each section; 0 = no mem_map.
    sections: Vec<u64>,
    max_pfn: Pfn,
}

fn is_kvaddr(v: u64) -> bool {
    v >= 0xff00_0000_0000_0000
}

impl MemMap {
    /// Locate mem_map for pfns below `max_mapnr`.
    pub fn discover<M: PhysMemory + ?Sized>(
        kmem: &KernelMemory<'_, M>,
        vi: &VmcoreInfo,
        max_mapnr: Pfn,
    ) -> Result<MemMap, MemMapError> {
        let page_shift = kmem.phys().page_shift();
        let page_size = kmem.phys().page_size();
        let page_struct_size =
            vi.size("page").ok_or_else(|| MemMapError::MissingKeys { keys: vec!["SIZE(page)".into()] })?;
        if page_struct_size == 0 || page_struct_size > 4096 {
            return Err(MemMapError::Invalid { what: format!("SIZE(page) = {page_struct_size}") });
        }
        if let Some(ms) = vi.symbol("mem_section") {
            let mut missing = Vec::new();
            let size_ms = vi.size("mem_section");
            let off_map = vi.offset("mem_section.section_mem_map");
            if size_ms.is_none() {
                missing.push("SIZE(mem_section)".to_string());
            }
            if off_map.is_none() {
                missing.push("OFFSET(mem_section.section_mem_map)".to_string());
            }
            let (Some(size_ms), Some(off_map)) = (size_ms, off_map) else {
                return Err(MemMapError::MissingKeys { keys: missing });
            };
            if size_ms == 0 || size_ms > page_size || off_map.saturating_add(8) > size_ms {
                return Err(MemMapError::Invalid {
                    what: format!("SIZE(mem_section) = {size_ms}, section_mem_map at {off_map}"),
                });
            }
            let l5 = vi.number("pgtable_l5_enabled").unwrap_or(0) != 0;
            let section_bits = vi.number("SECTION_SIZE_BITS").unwrap_or(27);
            let physmem_bits = vi.number("MAX_PHYSMEM_BITS").unwrap_or(if l5 { 52 } else { 46 });
            if !(page_shift as i64..=40).contains(&section_bits) || !(section_bits..=64).contains(&physmem_bits) {
                return Err(MemMapError::Invalid {
                    what: format!("SECTION_SIZE_BITS = {section_bits}, MAX_PHYSMEM_BITS = {physmem_bits}"),
                });
            }
            let pfn_section_shift = section_bits as u32 - page_shift;
            let pages_per_section = 1u64 << pfn_section_shift;
            let nr_mem_sections = 1u64 << (physmem_bits - section_bits) as u32;
            let per_root_extreme = page_size / size_ms;
            let nr_roots_extreme = nr_mem_sections.div_ceil(per_root_extreme);
            let extreme = match vi.length("mem_section") {
                None => true,
                Some(l) => l == nr_roots_extreme,
            };
            let num_section = max_mapnr.0.div_ceil(pages_per_section);
            if num_section > MAX_SECTIONS || num_section > nr_mem_sections {
                return Err(MemMapError::Invalid {
                    what: format!(
                        "{num_section} memory sections for max pfn {:#x} (limit {})",
                        max_mapnr.0,
                        MAX_SECTIONS.min(nr_mem_sections)
                    ),
                });
            }
            let decode = |root_base: u64| -> Result<Vec<u64>, MemMapError> {
                let mut sections = vec![0u64; num_section as usize];
                let mut root_cache: Option<(u64, u64)> = None;
                for (nr, slot) in sections.iter_mut().enumerate() {
                    let nr = nr as u64;
                    let sec_addr = if extreme {
                        let root = nr / per_root_extreme;
                        let root_val = match root_cache {
                            Some((r, v)) if r == root => v,
                            _ => {
                                let v = kmem
                                    .read_u64(VirtAddr(root_base.wrapping_add(root * 8)))
                                    .map_err(|source| MemMapError::Read { source })?;
                                root_cache = Some((root, v));
                                v
                            }
                        };
                        if !is_kvaddr(root_val) {
                            continue;
                        }
                        root_val.wrapping_add((nr % per_root_extreme) * size_ms)
                    } else {
                        root_base.wrapping_add(nr * size_ms)
                    };
                    let Ok(val) = kmem.read_u64(VirtAddr(sec_addr.wrapping_add(off_map))) else {
                        continue;
                    };
                    if val & SECTION_MARKED_PRESENT == 0 {
                        continue;
                    }
                    let coded = val & SECTION_MAP_MASK;
                    let mm = coded.wrapping_add((nr << pfn_section_shift).wrapping_mul(page_struct_size));
                    if is_kvaddr(mm) {
                        *slot = mm;
                    }
                }
                Ok(sections)
            };
            let mut sections = decode(ms)?;
            if sections.iter().all(|&s| s == 0) {
                // SYMBOL(mem_section) may be the address of the pointer (vmlinux-style).
                if let Ok(p) = kmem.read_u64(VirtAddr(ms)) {
                    if is_kvaddr(p) {
                        sections = decode(p)?;
                    }
                }
            }
            if sections.iter().all(|&s| s == 0) {
                return Err(MemMapError::NoValidSection);
            }
            // makedumpfile lowers max_mapnr to the end of the last section with a mem_map.
            let last = sections.iter().rposition(|&s| s != 0).unwrap_or(0) as u64;
            let max_pfn = Pfn(max_mapnr.0.min((last + 1) * pages_per_section));
            return Ok(MemMap {
                model: if extreme { MemoryModel::SparseExtreme } else { MemoryModel::Sparse },
                page_struct_size,
                pages_per_section,
                sections,
                max_pfn,
            });
        }
        if let Some(mm_sym) = vi.symbol("mem_map") {
            let mm = kmem.read_u64(VirtAddr(mm_sym)).map_err(|source| MemMapError::Read { source })?;
            if !is_kvaddr(mm) {
                return Err(MemMapError::NoValidSection);
            }
            return Ok(MemMap {
                model: MemoryModel::Flat,
                page_struct_size,
                pages_per_section: max_mapnr.0.max(1),
                sections: vec![mm],
                max_pfn: max_mapnr,
            });
        }
        Err(MemMapError::MissingKeys { keys: vec!["SYMBOL(mem_section)".into(), "SYMBOL(mem_map)".into()] })
    }

    /// The memory model.
    pub fn model(&self) -> MemoryModel {
        self.model
    }

    /// `SIZE(page)`.
    pub fn page_struct_size(&self) -> u64 {
        self.page_struct_size
    }

    /// max_mapnr after lowering to the last section that has a mem_map.
    pub fn max_pfn(&self) -> Pfn {
        self.max_pfn
    }

    /// Number of sections that have a mem_map.
    pub fn valid_sections(&self) -> usize {
        self.sections.iter().filter(|&&s| s != 0).count()
    }

    /// The segment containing `pfn`, if that pfn has a mem_map.
    pub fn segment_of(&self, pfn: Pfn) -> Option<MemMapSegment> {
        if pfn >= self.max_pfn {
            return None;
        }
        let nr = pfn.0 / self.pages_per_section;
        let mm = *self.sections.get(nr as usize)?;
        if mm == 0 {
            return None;
        }
        let start = nr * self.pages_per_section;
        Some(MemMapSegment {
            pfn_start: Pfn(start),
            pfn_end: Pfn((start + self.pages_per_section).min(self.max_pfn.0)),
            mem_map: VirtAddr(mm),
        })
    }

    /// Address of the `struct page` of `pfn`.
    pub fn struct_page(&self, pfn: Pfn) -> Option<VirtAddr> {
        let seg = self.segment_of(pfn)?;
        let idx = pfn.0 - seg.pfn_start.0;
        seg.mem_map.checked_add(idx.checked_mul(self.page_struct_size)?)
    }
}
