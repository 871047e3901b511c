//! The all-zero page check, the filter's busiest loop at low dump levels (every page is read
//! once through it), compiled twice: for the baseline x86_64 CPU and with AVX2, picked at run
//! time. The AVX2 copy reads 32 bytes per instruction instead of 16; on the 2 GiB benchmark
//! capture (323,442 zero pages), mapping and checking the whole file took 0.20 s against
//! 0.25 s (see BENCHMARKS.md).
//!
//! **Architecture Invariant:** the one `unsafe` here calls the AVX2 copy only after the CPU
//! said it has AVX2; the code inside is the same safe loop as the baseline one.

/// True if every byte of `page` is zero.
#[inline]
pub(crate) fn is_zero_page(page: &[u8]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: `zero_avx2` needs nothing but AVX2, which the CPU has (checked just above).
        return unsafe { zero_avx2(page) };
    }
    zero_blocks(page)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn zero_avx2(page: &[u8]) -> bool {
    zero_blocks(page)
}

/// Blocks of 256 bytes are OR-reduced word by word (the compiler vectorises the inner loop)
/// and tested once per block: most non-zero pages fail in the first block, and a zero page is
/// read at memory speed instead of one branch per 16 bytes.
#[inline(always)]
fn zero_blocks(page: &[u8]) -> bool {
    const BLOCK: usize = 256;
    let mut blocks = page.chunks_exact(BLOCK);
    for b in blocks.by_ref() {
        let mut acc = 0u64;
        for w in b.chunks_exact(8) {
            let mut a = [0u8; 8];
            a.copy_from_slice(w);
            acc |= u64::from_ne_bytes(a);
        }
        if acc != 0 {
            return false;
        }
    }
    blocks.remainder().iter().all(|&b| b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_copies_see_every_byte() {
        for len in [0usize, 1, 255, 256, 257, 4096, 4097, 65536] {
            let mut page = vec![0u8; len];
            assert!(is_zero_page(&page) && zero_blocks(&page), "len {len}");
            for i in (0..len).step_by(37).chain(len.checked_sub(1)) {
                page[i] = 0x80;
                assert!(!is_zero_page(&page) && !zero_blocks(&page), "len {len}, byte {i}");
                page[i] = 0;
            }
        }
    }
}
