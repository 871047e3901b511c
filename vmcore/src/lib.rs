//! rkdump-vmcore: read, classify and (later) write vmcores.
//!
//! Pipeline (source -> filter -> sink):
//!
//! 1. **source** — [`elf::ElfVmcore`] reads `/proc/vmcore` or a saved ELF vmcore: headers,
//!    notes (CPU registers, VMCOREINFO) and the PT_LOAD map; it implements
//!    [`memory::PhysMemory`], the trait every dump reader provides.
//! 2. **describe** — [`vmcoreinfo::VmcoreInfo`] parses the kernel's self-description;
//!    [`kmem::KernelMemory`] translates kernel virtual addresses through the dumped page
//!    tables (x86_64, 4/5-level); [`memmap::MemMap`] finds the `struct page` array.
//! 3. **filter** — [`classify::Classifier`] classifies page frames window by window exactly as
//!    makedumpfile does (zero, cache, cache private, user, free, hwpoison, offline), with a
//!    degraded mode when the dump does not describe itself well enough.
//! 4. **sink** — dump writers (kdump-compressed, ELF, flattened): not yet written.
//!
//! [`info::info`] ties 1–3 together for `rkdump info`. [`addr`] holds the typed addresses.

pub mod addr;
pub mod classify;
pub mod diskdump;
pub mod dmesg;
pub mod elf;
pub mod flat;
pub mod info;
pub mod kmem;
pub mod mdf;
pub mod memmap;
pub mod memory;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod vmcoreinfo;
pub mod write;

#[cfg(test)]
mod synth_tests;

pub use addr::{FileOffset, Pfn, PhysAddr, VirtAddr};
pub use classify::{ClassCounts, Classifier, ClassifyOptions, PageClass};
pub use elf::{ElfVmcore, LoadSegment};
pub use info::{info, InfoReport};
pub use kmem::KernelMemory;
pub use memory::PhysMemory;
pub use vmcoreinfo::VmcoreInfo;
