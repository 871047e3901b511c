//! Image compression and detection.
//!
//! The kernel unpacks an initramfs with its own decoders (`lib/decompress_*.c`), which are
//! stricter than the userspace tools:
//! - xz: only the CRC32 (or no) integrity check is accepted (`xz_dec` has no CRC64/SHA-256
//!   without `CONFIG_XZ_DEC_ANY_CHECK`), and the dictionary is allocated at the size written in
//!   the header, so we cap it near the input size instead of preset 9's 64 MiB;
//! - zstd: the frame's window size is allocated by the kernel; the source size is pledged, so
//!   zstd shrinks the window to the image size (at most 8 MiB at the default level). The content
//!   checksum is written and verified by the kernel;
//! - gzip: plain deflate, header mtime 0 (deterministic).
//!
//! Detection is by magic: zstd `28 b5 2f fd`, xz `fd 37 7a 58 5a 00`, gzip `1f 8b`, cpio
//! `070701`/`070702`.

use std::fmt;
use std::io::{Read, Write};
use std::str::FromStr;

/// Default zstd level. Measured on the crash-test image of the Debian 6.1 kernel (3.9 MB of
/// cpio, the 1.1 MB static init included; whole `rkdump build`, 2-core VM): level 9 1098 KB in
/// 0.12 s, 12 1093 KB in 0.21 s, 15 1098 KB in 0.49 s, 17 1040 KB in 0.9 s, 19 997 KB in 1.3 s.
/// Levels above 12 buy 5% for 4-6x the time and put the 1 s build budget at risk on a busy
/// machine; `--compression-level 19` is there for the last kilobytes.
pub const ZSTD_LEVEL: i32 = 12;
/// Default xz preset (presets 7-9 only differ by dictionary size, which we cap anyway).
pub const XZ_LEVEL: u32 = 9;
/// Default gzip level.
pub const GZIP_LEVEL: u32 = 9;

/// Largest decompressed image [`decompress`] accepts (bounds memory on hostile input).
pub const MAX_UNPACKED: u64 = 1 << 30;

/// How the image is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Compression {
    /// zstd (kernel `CONFIG_RD_ZSTD`, 5.9+).
    #[default]
    Zstd,
    /// xz with a CRC32 check (`CONFIG_RD_XZ`).
    Xz,
    /// gzip (`CONFIG_RD_GZIP`).
    Gzip,
    /// Uncompressed cpio.
    None,
}

impl Compression {
    /// Name as accepted by [`FromStr`].
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Zstd => "zstd",
            Compression::Xz => "xz",
            Compression::Gzip => "gzip",
            Compression::None => "none",
        }
    }

    /// The kernel option that lets the kernel unpack an initramfs compressed this way.
    pub fn kernel_option(self) -> Option<&'static str> {
        match self {
            Compression::Zstd => Some("CONFIG_RD_ZSTD"),
            Compression::Xz => Some("CONFIG_RD_XZ"),
            Compression::Gzip => Some("CONFIG_RD_GZIP"),
            Compression::None => None,
        }
    }

    /// All variants, best first.
    pub const ALL: [Compression; 4] = [Compression::Zstd, Compression::Xz, Compression::Gzip, Compression::None];
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Compression {
    type Err = CompressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "zstd" | "zst" => Ok(Compression::Zstd),
            "xz" => Ok(Compression::Xz),
            "gzip" | "gz" => Ok(Compression::Gzip),
            "none" | "cpio" => Ok(Compression::None),
            other => Err(CompressError::UnknownName(other.to_string())),
        }
    }
}

/// Errors of compression and decompression.
#[derive(Debug, thiserror::Error)]
pub enum CompressError {
    /// Not one of zstd, xz, gzip, none.
    #[error("unknown compression {0:?} (expected zstd, xz, gzip or none)")]
    UnknownName(String),
    /// The encoder failed.
    #[error("{algo} compression failed: {source}")]
    Encode {
        /// Algorithm.
        algo: Compression,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The decoder failed (corrupt data).
    #[error("{algo} decompression failed: {source}")]
    Decode {
        /// Algorithm.
        algo: Compression,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The data is bigger than [`MAX_UNPACKED`] once unpacked.
    #[error("{algo} data unpacks to more than {MAX_UNPACKED} bytes")]
    TooLarge {
        /// Algorithm.
        algo: Compression,
    },
    /// Magic of a format the kernel knows but we do not read.
    #[error("image compressed with {0}, which `rkdump build --list` does not read (not yet supported)")]
    Unsupported(&'static str),
    /// A level outside the algorithm's range.
    #[error("{algo} level {level} out of range ({min}..={max})")]
    BadLevel {
        /// Algorithm.
        algo: Compression,
        /// Level asked for.
        level: i32,
        /// Lowest level.
        min: i32,
        /// Highest level.
        max: i32,
    },
    /// Neither a known compression nor cpio.
    #[error("unrecognised image format (first bytes {0:02x?}): not zstd, xz, gzip or cpio")]
    Unrecognised(Vec<u8>),
}

/// Compresses `data` as a kernel-readable initramfs stream at the default level.
pub fn compress(data: &[u8], c: Compression) -> Result<Vec<u8>, CompressError> {
    compress_level(data, c, None)
}

/// The range of levels of `c` (zstd 1..=22, xz 0..=9, gzip 1..=9, none 0..=0).
pub fn level_range(c: Compression) -> (i32, i32) {
    match c {
        Compression::Zstd => (1, 22),
        Compression::Xz => (0, 9),
        Compression::Gzip => (1, 9),
        Compression::None => (0, 0),
    }
}

/// Compresses `data` at `level` (`None`: [`ZSTD_LEVEL`], [`XZ_LEVEL`], [`GZIP_LEVEL`]).
pub fn compress_level(data: &[u8], c: Compression, level: Option<i32>) -> Result<Vec<u8>, CompressError> {
    let enc = |source| CompressError::Encode { algo: c, source };
    let (min, max) = level_range(c);
    if let Some(l) = level {
        if c != Compression::None && !(min..=max).contains(&l) {
            return Err(CompressError::BadLevel { algo: c, level: l, min, max });
        }
    }
    match c {
        Compression::None => Ok(data.to_vec()),
        Compression::Zstd => {
            let lvl = level.unwrap_or(ZSTD_LEVEL);
            let mut e = zstd::stream::Encoder::new(Vec::new(), lvl).map_err(enc)?;
            e.include_checksum(true).map_err(enc)?;
            e.set_pledged_src_size(Some(data.len() as u64)).map_err(enc)?;
            e.write_all(data).map_err(enc)?;
            e.finish().map_err(enc)
        }
        Compression::Xz => {
            let to_io = |e: xz2::stream::Error| enc(std::io::Error::other(e));
            let preset = level.map_or(XZ_LEVEL, |l| l.unsigned_abs());
            let mut opts = xz2::stream::LzmaOptions::new_preset(preset).map_err(to_io)?;
            // Dictionary: the next power of two >= the input, between 64 KiB and 32 MiB.
            let dict = (data.len().max(1) as u64).next_power_of_two().clamp(1 << 16, 1 << 25);
            opts.dict_size(dict as u32);
            let mut filters = xz2::stream::Filters::new();
            filters.lzma2(&opts);
            let stream = xz2::stream::Stream::new_stream_encoder(&filters, xz2::stream::Check::Crc32).map_err(to_io)?;
            let mut e = xz2::write::XzEncoder::new_stream(Vec::new(), stream);
            e.write_all(data).map_err(enc)?;
            e.finish().map_err(enc)
        }
        Compression::Gzip => {
            let mut e = flate2::GzBuilder::new()
                .mtime(0)
                .write(Vec::new(), flate2::Compression::new(level.map_or(GZIP_LEVEL, |l| l.unsigned_abs())));
            e.write_all(data).map_err(enc)?;
            e.finish().map_err(enc)
        }
    }
}

/// What a buffer looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Compressed with one of ours.
    Compressed(Compression),
    /// A bare cpio archive.
    Cpio,
}

/// Detects the format of an image by magic.
pub fn detect(data: &[u8]) -> Result<Format, CompressError> {
    const ZSTD: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
    const XZ: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0];
    if data.starts_with(ZSTD) {
        Ok(Format::Compressed(Compression::Zstd))
    } else if data.starts_with(XZ) {
        Ok(Format::Compressed(Compression::Xz))
    } else if data.starts_with(&[0x1f, 0x8b]) {
        Ok(Format::Compressed(Compression::Gzip))
    } else if data.starts_with(b"070701") || data.starts_with(b"070702") {
        Ok(Format::Cpio)
    } else if data.starts_with(&[0x02, 0x21, 0x4c, 0x18]) {
        Err(CompressError::Unsupported("lz4"))
    } else if data.starts_with(b"BZh") {
        Err(CompressError::Unsupported("bzip2"))
    } else if data.starts_with(&[0x89, b'L', b'Z', b'O']) {
        Err(CompressError::Unsupported("lzo"))
    } else if data.starts_with(&[0x5d, 0, 0]) {
        Err(CompressError::Unsupported("lzma"))
    } else {
        Err(CompressError::Unrecognised(data.iter().take(8).copied().collect()))
    }
}

fn read_bounded(r: impl Read, algo: Compression) -> Result<Vec<u8>, CompressError> {
    let mut out = Vec::new();
    r.take(MAX_UNPACKED + 1).read_to_end(&mut out).map_err(|source| CompressError::Decode { algo, source })?;
    if out.len() as u64 > MAX_UNPACKED {
        return Err(CompressError::TooLarge { algo });
    }
    Ok(out)
}

/// Decompresses one stream of the given kind (at most [`MAX_UNPACKED`] bytes out).
pub fn decompress(data: &[u8], c: Compression) -> Result<Vec<u8>, CompressError> {
    let dec = |source| CompressError::Decode { algo: c, source };
    match c {
        Compression::None => Ok(data.to_vec()),
        Compression::Zstd => read_bounded(zstd::stream::Decoder::new(data).map_err(dec)?, c),
        // Bounded decoder memory (see the init's `xz_reader`).
        Compression::Xz => {
            read_bounded(rkdump_init::modules::xz_reader(data).map_err(|e| dec(std::io::Error::other(e)))?, c)
        }
        Compression::Gzip => read_bounded(flate2::read::MultiGzDecoder::new(data), c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn payload() -> Vec<u8> {
        let mut v = Vec::new();
        for i in 0u32..50_000 {
            v.extend_from_slice(format!("line {i} {}\n", i % 7).as_bytes());
        }
        v
    }

    #[test]
    fn xz_decoder_memory_is_bounded() {
        // Found by fuzz/modinfo: an .lzma-style header asking for a 4 GiB dictionary.
        let data = [0x5d, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0x18];
        assert!(decompress(&data, Compression::Xz).is_err());
    }

    #[test]
    fn round_trip_and_detect() {
        let data = payload();
        for c in Compression::ALL {
            let z = compress(&data, c).unwrap();
            if c != Compression::None {
                assert!(z.len() < data.len() / 4, "{c}: {}", z.len());
                assert_eq!(detect(&z).unwrap(), Format::Compressed(c));
            }
            assert_eq!(decompress(&z, c).unwrap(), data, "{c}");
            assert_eq!(compress(&data, c).unwrap(), z, "{c} deterministic");
            assert_eq!(c.as_str().parse::<Compression>().unwrap(), c);
        }
        assert_eq!(detect(b"070701...").unwrap(), Format::Cpio);
        assert!(matches!(detect(b"BZh91AY"), Err(CompressError::Unsupported("bzip2"))));
        assert!(matches!(detect(b"hello"), Err(CompressError::Unrecognised(_))));
        assert!("lzo".parse::<Compression>().is_err());
        assert!(decompress(b"\x28\xb5\x2f\xfdgarbage", Compression::Zstd).is_err());
        for (c, l) in [(Compression::Zstd, 3), (Compression::Xz, 1), (Compression::Gzip, 1)] {
            let z = compress_level(&data, c, Some(l)).unwrap();
            assert_eq!(decompress(&z, c).unwrap(), data, "{c} level {l}");
        }
        assert!(matches!(compress_level(&data, Compression::Zstd, Some(23)), Err(CompressError::BadLevel { .. })));
        assert!(matches!(compress_level(&data, Compression::Gzip, Some(0)), Err(CompressError::BadLevel { .. })));
    }

    fn tool(name: &str) -> bool {
        Command::new(name).arg("--version").output().map(|o| o.status.success()).unwrap_or(false)
    }

    #[test]
    fn xz_uses_crc32_check_per_xz_tool() {
        if !tool("xz") {
            eprintln!("skipped: no xz tool");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.xz");
        std::fs::write(&p, compress(&payload(), Compression::Xz).unwrap()).unwrap();
        let t = Command::new("xz").arg("-t").arg(&p).output().unwrap();
        assert!(t.status.success(), "{}", String::from_utf8_lossy(&t.stderr));
        let l = Command::new("xz").args(["-l", "--robot"]).arg(&p).output().unwrap();
        let text = String::from_utf8_lossy(&l.stdout);
        let file_line = text.lines().find(|l| l.starts_with("file\t")).unwrap();
        assert!(file_line.contains("\tCRC32\t"), "{file_line}");
        assert!(!text.contains("CRC64"), "{text}");
    }

    #[test]
    fn zstd_and_gzip_tools_accept_our_streams() {
        let dir = tempfile::tempdir().unwrap();
        for (c, t) in [(Compression::Zstd, "zstd"), (Compression::Gzip, "gzip")] {
            if !tool(t) {
                eprintln!("skipped: no {t} tool");
                continue;
            }
            let p = dir.path().join(format!("a.{t}"));
            std::fs::write(&p, compress(&payload(), c).unwrap()).unwrap();
            let o = Command::new(t).args(["-t", "-q"]).arg(&p).output().unwrap();
            assert!(o.status.success(), "{t}: {}", String::from_utf8_lossy(&o.stderr));
            let o = Command::new(t).args(["-d", "-c"]).arg(&p).output().unwrap();
            assert_eq!(o.stdout, payload(), "{t}");
        }
    }
}
