//! The physical-memory abstraction every dump reader implements.
//!
//! Readers (ELF `/proc/vmcore` today, kdump-compressed later) expose the dumped machine's RAM
//! through [`PhysMemory`]; address translation ([`crate::kmem::KernelMemory`]) and the
//! classifier only ever see this trait.

use crate::addr::{FileOffset, Pfn, PhysAddr};

/// Errors from reading physical memory.
#[derive(Debug, thiserror::Error)]
pub enum MemError {
    /// The address is in no memory range of the dump (a hole, or excluded from it).
    #[error("physical address {pa} is not present in the dump")]
    NotPresent {
        /// The address.
        pa: PhysAddr,
    },
    /// The dump file ends before the data of this address (truncated copy).
    #[error("physical address {pa} lies at file offset {offset}, beyond the end of the file (truncated dump?)")]
    Truncated {
        /// The address.
        pa: PhysAddr,
        /// Where its bytes should have been.
        offset: FileOffset,
    },
    /// An address computation overflowed.
    #[error("address overflow reading {len} bytes at physical address {pa}")]
    Overflow {
        /// Start address.
        pa: PhysAddr,
        /// Length requested.
        len: usize,
    },
    /// The read itself failed.
    #[error("read of {len} bytes at file offset {offset} failed")]
    Io {
        /// Where.
        offset: FileOffset,
        /// How many bytes.
        len: usize,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// A half-open range of physical memory present in a dump, `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhysRange {
    /// First byte.
    pub start: PhysAddr,
    /// One past the last byte.
    pub end: PhysAddr,
}

/// Random-access reads of the dumped machine's physical memory.
pub trait PhysMemory {
    /// Fill `buf` with the bytes at `pa..pa+buf.len()`. Bytes inside a memory range but not
    /// backed by file data (past `p_filesz`) read as zero.
    fn read_phys(&self, pa: PhysAddr, buf: &mut [u8]) -> Result<(), MemError>;

    /// Page size of the dumped machine, in bytes (a power of two).
    fn page_size(&self) -> u64;

    /// The memory ranges present, in the reader's native order (may overlap).
    fn ranges(&self) -> Vec<PhysRange>;

    /// For each entry of [`PhysMemory::ranges`] (same order), the part backed by data in the
    /// dump (`[start, start + p_filesz)` for ELF). Defaults to the full ranges.
    fn data_ranges(&self) -> Vec<PhysRange> {
        self.ranges()
    }

    /// log2 of [`PhysMemory::page_size`].
    fn page_shift(&self) -> u32 {
        self.page_size().trailing_zeros()
    }

    /// True if the page `pfn` starts inside some memory range.
    fn is_present(&self, pfn: Pfn) -> bool {
        let Some(pa) = pfn.to_phys(self.page_shift()) else {
            return false;
        };
        self.ranges().iter().any(|r| pa >= r.start && pa < r.end)
    }
}
