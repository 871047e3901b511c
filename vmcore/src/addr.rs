//! Typed addresses.
//!
//! A vmcore mixes four address spaces: kernel virtual addresses, physical addresses, page frame
//! numbers and offsets in the dump file. Each has its own newtype so that passing one where
//! another is expected is a compile error. There are deliberately no `+`/`-` operators: every
//! step is an explicit, checked method (`checked_add`, `Pfn::from_phys`, ...), because all of
//! these values come from untrusted dump data.

use std::fmt;

macro_rules! addr_type {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub u64);

        impl $name {
            /// The raw value.
            #[inline]
            pub const fn raw(self) -> u64 {
                self.0
            }

            /// `self + delta`, or `None` on overflow.
            #[inline]
            pub fn checked_add(self, delta: u64) -> Option<Self> {
                self.0.checked_add(delta).map(Self)
            }

            /// `self - delta`, or `None` on underflow.
            #[inline]
            pub fn checked_sub(self, delta: u64) -> Option<Self> {
                self.0.checked_sub(delta).map(Self)
            }

            /// Distance `self - base` in units of the raw value, or `None` if `base > self`.
            #[inline]
            pub fn offset_from(self, base: Self) -> Option<u64> {
                self.0.checked_sub(base.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }

        impl fmt::LowerHex for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }
    };
}

addr_type!(
    /// A physical address of the dumped machine.
    PhysAddr
);
addr_type!(
    /// A kernel virtual address of the dumped machine.
    VirtAddr
);
addr_type!(
    /// A page frame number (physical address >> page shift).
    Pfn
);
addr_type!(
    /// A byte offset in the dump file.
    FileOffset
);

impl Pfn {
    /// The pfn holding physical address `pa` (rounded down).
    #[inline]
    pub fn from_phys(pa: PhysAddr, page_shift: u32) -> Pfn {
        Pfn(pa.0.checked_shr(page_shift).unwrap_or(0))
    }

    /// The pfn of the first page starting at or after `pa` (rounded up).
    #[inline]
    pub fn from_phys_roundup(pa: PhysAddr, page_shift: u32) -> Pfn {
        let mask = (1u64 << (page_shift & 63)) - 1;
        let down = Pfn::from_phys(pa, page_shift);
        if pa.0 & mask != 0 {
            Pfn(down.0.saturating_add(1))
        } else {
            down
        }
    }

    /// The physical address of the first byte of this page, or `None` on overflow.
    #[inline]
    pub fn to_phys(self, page_shift: u32) -> Option<PhysAddr> {
        if page_shift >= 64 || self.0.leading_zeros() < page_shift {
            return None;
        }
        Some(PhysAddr(self.0 << page_shift))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pfn_conversions() {
        assert_eq!(Pfn::from_phys(PhysAddr(0x1fff), 12), Pfn(1));
        assert_eq!(Pfn::from_phys_roundup(PhysAddr(0x1001), 12), Pfn(2));
        assert_eq!(Pfn::from_phys_roundup(PhysAddr(0x1000), 12), Pfn(1));
        assert_eq!(Pfn(3).to_phys(12), Some(PhysAddr(0x3000)));
        assert_eq!(Pfn(u64::MAX).to_phys(12), None);
    }

    #[test]
    fn checked_arithmetic() {
        assert_eq!(VirtAddr(u64::MAX).checked_add(1), None);
        assert_eq!(PhysAddr(5).checked_sub(6), None);
        assert_eq!(FileOffset(10).offset_from(FileOffset(4)), Some(6));
        assert_eq!(format!("{}", PhysAddr(0x10)), "0x10");
    }
}
