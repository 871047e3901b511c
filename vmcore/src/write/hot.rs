//! The filter's two loops over every byte of a page, each compiled twice, for the baseline
//! x86_64 CPU and with AVX2, picked at run time:
//!
//! - the all-zero check, the busiest loop at low dump levels (every page read goes through
//!   it). The AVX2 copy reads 32 bytes per instruction instead of 16; on the 2 GiB benchmark
//!   capture (323,442 zero pages), mapping and checking the whole file took 0.20 s against
//!   0.25 s (see BENCHMARKS.md);
//! - the page hash of deduplication ([`super::dedup`]), run on every non-zero page it looks
//!   at. Its lanes are 32x32->64-bit multiplies; the AVX2 copy computes four at a time and is
//!   written with (safe) intrinsics, the baseline copy is a plain loop; a test checks that both
//!   give the same lanes, so the hash is the same number whichever copy runs.
//!
//! **Architecture Invariant:** the two `unsafe` calls here call an AVX2 copy only after the CPU
//! said it has AVX2; the code inside is safe (the zero check's is the baseline loop itself).

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

/// A 64-bit hash of a page (any length; whole 64-byte blocks, the tail folded in).
///
/// Eight lanes of 8 bytes: per block, each word is XORed with its lane's key, the key's two
/// 32-bit halves are multiplied and the product and the word itself are added to the lane.
/// Keys advance every block, so equal blocks in another order hash differently. The lanes are
/// mixed at the end with 64x64->128-bit multiplies. Not collision resistant, and it need not
/// be: matches are verified byte for byte. Against the hash before it (one 64x64->128-bit
/// multiply per 16 bytes), 10-20% less time per page in cache, and the one-thread `-l -d 1`
/// dump of the 2 GiB benchmark capture 3-5% faster (see BENCHMARKS.md).
#[inline]
pub fn page_hash(page: &[u8]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: `lanes_avx2` needs nothing but AVX2, which the CPU has (checked just above).
        return finish(page, unsafe { lanes_avx2(page) });
    }
    finish(page, lanes(page))
}

const K: [u64; 8] = [
    0x9e37_79b9_7f4a_7c15,
    0xc2b2_ae3d_27d4_eb4f,
    0x1656_67b1_9e37_79f9,
    0xd6e8_feb8_6659_fd93,
    0x243f_6a88_85a3_08d3,
    0x1319_8a2e_0370_7344,
    0xa409_3822_299f_31d0,
    0x082e_fa98_ec4e_6c89,
];
/// Added to every key after each block.
const STEP: u64 = 0x2d35_8dcc_aa6c_78a5;

/// The little-endian word `i` of a 64-byte block.
#[inline(always)]
fn word(b: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[i * 8..i * 8 + 8]);
    u64::from_le_bytes(w)
}

/// The eight lanes over the whole 64-byte blocks, one word at a time.
fn lanes(page: &[u8]) -> [u64; 8] {
    let mut acc = [0u64; 8];
    let mut key = K;
    for b in page.chunks_exact(64) {
        for (l, (a, k)) in acc.iter_mut().zip(key.iter_mut()).enumerate() {
            let w = word(b, l);
            let d = w ^ *k;
            *a = a.wrapping_add((d & 0xffff_ffff).wrapping_mul(d >> 32)).wrapping_add(w);
            *k = k.wrapping_add(STEP);
        }
    }
    acc
}

/// [`lanes`], four lanes per instruction. Written with intrinsics: left to itself, the compiler
/// vectorises `lanes` across blocks instead of across lanes and gathers every word on its own.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn lanes_avx2(page: &[u8]) -> [u64; 8] {
    use std::arch::x86_64::*;
    let v = |a: u64, b: u64, c: u64, d: u64| _mm256_set_epi64x(d as i64, c as i64, b as i64, a as i64);
    let (mut acc0, mut acc1) = (_mm256_setzero_si256(), _mm256_setzero_si256());
    let (mut k0, mut k1) = (v(K[0], K[1], K[2], K[3]), v(K[4], K[5], K[6], K[7]));
    let step = _mm256_set1_epi64x(STEP as i64);
    for b in page.chunks_exact(64) {
        let w0 = v(word(b, 0), word(b, 1), word(b, 2), word(b, 3));
        let w1 = v(word(b, 4), word(b, 5), word(b, 6), word(b, 7));
        let d0 = _mm256_xor_si256(w0, k0);
        let d1 = _mm256_xor_si256(w1, k1);
        // mul_epu32 multiplies the low halves of each 64-bit element: d's low half by its high.
        let p0 = _mm256_mul_epu32(d0, _mm256_srli_epi64::<32>(d0));
        let p1 = _mm256_mul_epu32(d1, _mm256_srli_epi64::<32>(d1));
        acc0 = _mm256_add_epi64(acc0, _mm256_add_epi64(p0, w0));
        acc1 = _mm256_add_epi64(acc1, _mm256_add_epi64(p1, w1));
        k0 = _mm256_add_epi64(k0, step);
        k1 = _mm256_add_epi64(k1, step);
    }
    [
        _mm256_extract_epi64::<0>(acc0) as u64,
        _mm256_extract_epi64::<1>(acc0) as u64,
        _mm256_extract_epi64::<2>(acc0) as u64,
        _mm256_extract_epi64::<3>(acc0) as u64,
        _mm256_extract_epi64::<0>(acc1) as u64,
        _mm256_extract_epi64::<1>(acc1) as u64,
        _mm256_extract_epi64::<2>(acc1) as u64,
        _mm256_extract_epi64::<3>(acc1) as u64,
    ]
}

/// 64x64->128-bit multiply, halves folded.
#[inline(always)]
fn mum(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// The tail (bytes after the last whole block) and the length folded into the lanes, the
/// lanes mixed into one number.
fn finish(page: &[u8], mut acc: [u64; 8]) -> u64 {
    let mut tail = 0u64;
    for (i, &byte) in page.chunks_exact(64).remainder().iter().enumerate() {
        tail = tail.rotate_left(8) ^ u64::from(byte) ^ (i as u64) << 56;
        if i % 8 == 7 {
            acc[i / 8] = acc[i / 8].wrapping_add(mum(tail ^ K[i / 8], K[(i / 8 + 3) % 8]));
            tail = 0;
        }
    }
    let mut x = mum((page.len() as u64) ^ K[0], tail ^ K[5]);
    for (l, a) in acc.iter().enumerate() {
        x = mum(x ^ a, K[(l + 4) % 8]);
    }
    // splitmix64's finalizer.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_hash_copies_give_the_same_number() {
        for len in [0usize, 1, 3, 63, 64, 65, 4095, 4096, 8192] {
            let page: Vec<u8> = (0..len).map(|i| (i * 131 % 251) as u8).collect();
            assert_eq!(page_hash(&page), finish(&page, lanes(&page)), "len {len}");
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2 (checked just above).
                assert_eq!(unsafe { lanes_avx2(&page) }, lanes(&page), "len {len}");
            }
        }
    }

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
