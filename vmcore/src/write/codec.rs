//! Per-page compression methods of the kdump-compressed format (FORMATS.md §7).
//!
//! One [`PageCompressor`] per thread keeps its codec context (zlib stream, zstd context, LZO
//! hash table, snappy encoder) for the whole dump: no per-page allocation. [`PageDecompressor`]
//! is the reader's counterpart.

use super::lzo;

/// `DUMP_DH_COMPRESSED_ZLIB`.
pub const FLAG_ZLIB: u32 = 0x1;
/// `DUMP_DH_COMPRESSED_LZO`.
pub const FLAG_LZO: u32 = 0x2;
/// `DUMP_DH_COMPRESSED_SNAPPY`.
pub const FLAG_SNAPPY: u32 = 0x4;
/// `DUMP_DH_COMPRESSED_INCOMPLETE` (header status only).
pub const FLAG_INCOMPLETE: u32 = 0x8;
/// `DUMP_DH_EXCLUDED_VMEMMAP` (header status only).
pub const FLAG_EXCLUDED_VMEMMAP: u32 = 0x10;
/// `DUMP_DH_COMPRESSED_ZSTD`.
pub const FLAG_ZSTD: u32 = 0x20;

/// A page compression method (makedumpfile `-c`, `-l`, `-p`, `-z`, or none).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Every page stored raw.
    None,
    /// zlib-wrapped deflate (`-c`).
    Zlib,
    /// LZO1X (`-l`).
    Lzo,
    /// Raw snappy block (`-p`).
    Snappy,
    /// zstd frame, level [`ZSTD_LEVEL`] (`-z`).
    Zstd,
}

impl Compression {
    /// The flag bit stored in the header status and in page descriptors (0 for none).
    pub fn flag(self) -> u32 {
        match self {
            Compression::None => 0,
            Compression::Zlib => FLAG_ZLIB,
            Compression::Lzo => FLAG_LZO,
            Compression::Snappy => FLAG_SNAPPY,
            Compression::Zstd => FLAG_ZSTD,
        }
    }

    /// Every method, for tests and benchmarks.
    pub const ALL: [Compression; 5] =
        [Compression::None, Compression::Zlib, Compression::Lzo, Compression::Snappy, Compression::Zstd];

    /// Short lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Zlib => "zlib",
            Compression::Lzo => "lzo",
            Compression::Snappy => "snappy",
            Compression::Zstd => "zstd",
        }
    }
}

/// Errors of the codecs.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// A codec context could not be created.
    #[error("cannot create the {method} compression context")]
    Init {
        /// Method name.
        method: &'static str,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A descriptor names no known method.
    #[error("unknown page compression flags {0:#x}")]
    UnknownFlags(u32),
    /// The compressed data is corrupt.
    #[error("{method} data does not decompress: {reason}")]
    Corrupt {
        /// Method name.
        method: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// The page decompresses to the wrong size.
    #[error("{method} data decompresses to {got} bytes instead of {want}")]
    WrongSize {
        /// Method name.
        method: &'static str,
        /// Actual size.
        got: usize,
        /// Page size.
        want: usize,
    },
}

enum Ctx {
    None,
    Zlib(Box<flate2::Compress>),
    Lzo(Box<lzo::LzoCompressor>),
    Snappy(Box<snap::raw::Encoder>),
    /// The context and a reused output buffer: zstd writes into its spare capacity, so the
    /// compress bound is never zero-filled per page (only the frame is copied out).
    Zstd(Box<zstd::bulk::Compressor<'static>>, Vec<u8>),
}

/// zstd's level for every page: -1, the fastest level that still codes matches with zstd's
/// entropy coder (negative levels store literals raw). makedumpfile `-z` uses level 1. Against
/// level 1, on the benchmark captures (default two threads, alternated with makedumpfile `-l`,
/// medians; time / size against makedumpfile `-l`): `-d 31` on 2 GiB 0.91 / 0.45 -> 0.64 /
/// 0.52, on 8 GiB 1.06 / 0.34 -> 0.73 / 0.39; `-d 1` on 2 GiB 0.88 / 0.55 -> 0.70 / 0.60. Level
/// 1 was the default while its output was at the size line of the default-codec goal (0.75x
/// makedumpfile `-l`); since free per-CPU pages are left out and identical pages stored once,
/// it is far below it, and the time line is the one level 1 missed (see BENCHMARKS.md).
/// Level -3 was no faster than -1 and 8-20% larger.
pub const ZSTD_LEVEL: i32 = -1;

/// A compression context for one thread.
pub struct PageCompressor {
    method: Compression,
    ctx: Ctx,
}

impl PageCompressor {
    /// A context for `method`: zstd at [`ZSTD_LEVEL`]; zlib level 2, because the
    /// zlib-rs backend's level 1 is zlib-ng's "quick" strategy (about 20% larger output than
    /// zlib's level 1 on real vmcores), while its level 2 is both smaller than zlib level 1 and
    /// faster than makedumpfile `-c` (see ARCHITECTURE.md).
    pub fn new(method: Compression) -> Result<PageCompressor, CodecError> {
        let ctx = match method {
            Compression::None => Ctx::None,
            Compression::Zlib => Ctx::Zlib(Box::new(flate2::Compress::new(flate2::Compression::new(2), true))),
            Compression::Lzo => Ctx::Lzo(Box::default()),
            Compression::Snappy => Ctx::Snappy(Box::new(snap::raw::Encoder::new())),
            Compression::Zstd => Ctx::Zstd(
                Box::new(
                    zstd::bulk::Compressor::new(ZSTD_LEVEL)
                        .map_err(|source| CodecError::Init { method: "zstd", source })?,
                ),
                Vec::new(),
            ),
        };
        Ok(PageCompressor { method, ctx })
    }

    /// The method.
    pub fn method(&self) -> Compression {
        self.method
    }

    /// Compress `page`, appending the result to `out`. Returns the compressed length if it is
    /// strictly smaller than the page (makedumpfile's rule); otherwise `out` is restored to its
    /// original length and `None` says "store raw".
    pub fn compress(&mut self, page: &[u8], out: &mut Vec<u8>) -> Option<usize> {
        let start = out.len();
        let n = page.len();
        let ok = match &mut self.ctx {
            Ctx::None => None,
            Ctx::Zlib(_) if uniform_bytes(page) => None,
            Ctx::Zlib(c) => {
                c.reset();
                out.reserve(n + n / 8 + 64);
                match c.compress_vec(page, out, flate2::FlushCompress::Finish) {
                    Ok(flate2::Status::StreamEnd) => Some(out.len() - start),
                    _ => None,
                }
            }
            Ctx::Lzo(c) => c.compress(page, out, n).then(|| out.len() - start),
            Ctx::Snappy(e) => {
                let max = snap::raw::max_compress_len(n);
                out.resize(start + max, 0);
                e.compress(page, &mut out[start..]).ok()
            }
            Ctx::Zstd(c, buf) => {
                buf.clear();
                buf.reserve(zstd::zstd_safe::compress_bound(n));
                let len = c.compress_to_buffer(page, buf).ok();
                if len.is_some_and(|l| l < n) {
                    out.extend_from_slice(buf);
                }
                len
            }
        };
        match ok {
            Some(len) if len < n => {
                out.truncate(start + len);
                Some(len)
            }
            _ => {
                out.truncate(start);
                None
            }
        }
    }
}

/// Whether the bytes of `page` are spread over all 256 values about as evenly as random
/// bytes are: their collision sum (the sum of each value's count squared) at most 1/32 above
/// that of uniform random bytes, `n + n²/256`.
///
/// zlib cannot shrink such a page (its Huffman codes need uneven byte frequencies, and random
/// data has no repeats), yet deflating it costs about 31 us, twice a typical kernel page.
/// Most pages are turned away after their first 512 bytes, and the check costs well under
/// 1 us. On the kept pages of three real dumps, 2,400-3,000 pages per dump passed it, and zlib
/// would have saved 250-800 bytes on all of them together (a few dozen bytes on each of 4-9
/// pages). LZO gives up on such a page within 1 us and zstd within 3, so only zlib uses it.
/// A page of random bytes that repeats itself (two copies of one 2 KiB block) passes too and
/// is stored raw where zlib would halve it; no real dump here had one. See BENCHMARKS.md.
fn uniform_bytes(page: &[u8]) -> bool {
    // Quick rejections on the first 512 bytes, before the histogram of the whole page: random
    // bytes hold about 2 zero bytes and 221 distinct values there; kernel data holds far more
    // zeros, text far fewer values.
    let Some(head) = page.get(..512) else { return false };
    if head.iter().map(|&b| u32::from(b == 0)).sum::<u32>() > 8 {
        return false;
    }
    let mut seen = [0u64; 4];
    for &b in head {
        seen[usize::from(b >> 6)] |= 1 << (b & 63);
    }
    if seen.iter().map(|w| w.count_ones()).sum::<u32>() < 192 {
        return false;
    }
    let n = page.len() as u64;
    let mut h = [[0u32; 256]; 4];
    let mut quads = page.chunks_exact(4);
    for q in quads.by_ref() {
        h[0][q[0] as usize] += 1;
        h[1][q[1] as usize] += 1;
        h[2][q[2] as usize] += 1;
        h[3][q[3] as usize] += 1;
    }
    for &b in quads.remainder() {
        h[0][b as usize] += 1;
    }
    let sum: u64 = (0..256)
        .map(|i| {
            let c = u64::from(h[0][i] + h[1][i] + h[2][i] + h[3][i]);
            c * c
        })
        .sum();
    let uniform = n * n / 256 + n;
    sum <= uniform + uniform / 32
}

/// Decompression contexts for a reader.
#[derive(Default)]
pub struct PageDecompressor {
    zlib: Option<Box<flate2::Decompress>>,
    zstd: Option<Box<zstd::bulk::Decompressor<'static>>>,
    snappy: Option<snap::raw::Decoder>,
    lzo_buf: Vec<u8>,
}

impl PageDecompressor {
    /// Empty contexts, created on first use.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decompress `data` stored with descriptor `flags` into `out`, which must come out exactly
    /// full (one page). `flags` with no method bit means raw.
    pub fn decompress(&mut self, flags: u32, data: &[u8], out: &mut [u8]) -> Result<(), CodecError> {
        let want = out.len();
        let check = |method: &'static str, got: usize| {
            if got == want {
                Ok(())
            } else {
                Err(CodecError::WrongSize { method, got, want })
            }
        };
        let corrupt = |method: &'static str, reason: String| CodecError::Corrupt { method, reason };
        if flags & FLAG_ZLIB != 0 {
            let d = self.zlib.get_or_insert_with(|| Box::new(flate2::Decompress::new(true)));
            d.reset(true);
            match d.decompress(data, out, flate2::FlushDecompress::Finish) {
                Ok(flate2::Status::StreamEnd) => check("zlib", d.total_out() as usize),
                Ok(s) => Err(corrupt("zlib", format!("stream does not end ({s:?})"))),
                Err(e) => Err(corrupt("zlib", e.to_string())),
            }
        } else if flags & FLAG_LZO != 0 {
            lzo::decompress(data, &mut self.lzo_buf, want).map_err(|e| corrupt("lzo", e.to_string()))?;
            check("lzo", self.lzo_buf.len())?;
            out.copy_from_slice(&self.lzo_buf);
            Ok(())
        } else if flags & FLAG_SNAPPY != 0 {
            let len = snap::raw::decompress_len(data).map_err(|e| corrupt("snappy", e.to_string()))?;
            check("snappy", len)?;
            let d = self.snappy.get_or_insert_with(snap::raw::Decoder::new);
            let n = d.decompress(data, out).map_err(|e| corrupt("snappy", e.to_string()))?;
            check("snappy", n)
        } else if flags & FLAG_ZSTD != 0 {
            if self.zstd.is_none() {
                let d =
                    zstd::bulk::Decompressor::new().map_err(|source| CodecError::Init { method: "zstd", source })?;
                self.zstd = Some(Box::new(d));
            }
            let Some(d) = self.zstd.as_mut() else {
                return Err(CodecError::UnknownFlags(flags));
            };
            let n = d.decompress_to_buffer(data, out).map_err(|e| corrupt("zstd", e.to_string()))?;
            check("zstd", n)
        } else if flags == 0 {
            check("raw", data.len())?;
            out.copy_from_slice(data);
            Ok(())
        } else {
            Err(CodecError::UnknownFlags(flags))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xorshift_bytes(n: usize, mut x: u64) -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    /// Random bytes pass; anything with uneven byte frequencies does not, even when close to
    /// random (random bytes folded below 0xc0 still deflate by a few percent).
    #[test]
    fn uniform_bytes_only_for_random_like_pages() {
        for seed in 1..20 {
            assert!(uniform_bytes(&xorshift_bytes(4096, seed)), "seed {seed}");
        }
        assert!(uniform_bytes(&xorshift_bytes(65536, 3)));
        let text: Vec<u8> = (0..4096u32).map(|i| b"kernel data "[i as usize % 12]).collect();
        assert!(!uniform_bytes(&text));
        assert!(!uniform_bytes(&[0u8; 4096]));
        let skewed: Vec<u8> = xorshift_bytes(4096, 5).into_iter().map(|b| b % 0xc0).collect();
        assert!(!uniform_bytes(&skewed));
        // Random but for a zero-filled or text start.
        let mut zero_start = xorshift_bytes(4096, 6);
        zero_start[..64].fill(0);
        assert!(!uniform_bytes(&zero_start));
        let mut text_start = xorshift_bytes(4096, 7);
        text_start[..512].copy_from_slice(&text[..512]);
        assert!(!uniform_bytes(&text_start));
        let mut z = flate2::Compress::new(flate2::Compression::new(2), true);
        let mut out = Vec::with_capacity(8192);
        assert_eq!(
            z.compress_vec(&skewed, &mut out, flate2::FlushCompress::Finish).ok(),
            Some(flate2::Status::StreamEnd)
        );
        assert!(out.len() < 4096, "{} bytes", out.len());
        // Too short to judge, or empty.
        assert!(!uniform_bytes(&xorshift_bytes(500, 9)));
        assert!(!uniform_bytes(&[]));
        // zlib stores such a page raw, as it would have anyway.
        let mut c = PageCompressor::new(Compression::Zlib).unwrap();
        let mut out = Vec::new();
        assert_eq!(c.compress(&xorshift_bytes(4096, 11), &mut out), None);
        assert!(out.is_empty());
    }

    #[test]
    fn every_method_round_trips_and_keeps_raw_rule() {
        let text: Vec<u8> = (0..4096u32).map(|i| b"kernel data "[i as usize % 12]).collect();
        let mut x = 7u64;
        let rnd: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let mut dec = PageDecompressor::new();
        for m in Compression::ALL {
            let mut c = PageCompressor::new(m).unwrap();
            let mut out = vec![0xAA; 3];
            let len = c.compress(&text, &mut out);
            if m == Compression::None {
                assert_eq!(len, None);
                continue;
            }
            let len = len.unwrap();
            assert_eq!(out.len(), 3 + len);
            let mut back = vec![0u8; 4096];
            dec.decompress(m.flag(), &out[3..], &mut back).unwrap();
            assert_eq!(back, text, "{m:?}");
            // Incompressible data: stored raw, buffer untouched.
            assert_eq!(c.compress(&rnd, &mut out), None, "{m:?}");
            assert_eq!(out.len(), 3 + len);
            // Wrong page size is an error.
            let mut small = vec![0u8; 2048];
            assert!(dec.decompress(m.flag(), &out[3..], &mut small).is_err());
        }
    }
}
