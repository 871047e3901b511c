//! Kernel module loading: `finit_module` on the plan's files, in order.
//!
//! Uncompressed `.ko` files go straight to `finit_module(fd, "", 0)`. Compressed ones
//! (`.ko.xz`, `.ko.zst`, `.ko.gz`) first try `finit_module(fd, "", MODULE_INIT_COMPRESSED_FILE)`
//! (5.17+ kernels with `CONFIG_MODULE_DECOMPRESS`); when the kernel answers `EINVAL` (unknown
//! flag), `ENOPKG` or `EOPNOTSUPP` (no in-kernel decompressor) the init decompresses the file
//! itself and calls `init_module`, and keeps doing so for the remaining modules. `EEXIST`
//! (already loaded or built in) is success. Other failures are returned to the caller, which
//! logs them and carries on: a missing module only matters if the target never appears, and
//! that error names the devices seen.

use std::io::Read;

use crate::sys::{read_file, Errno, Open, OsError, Sys, MODULE_INIT_COMPRESSED_FILE};

/// Largest compressed module file read into memory (bytes).
pub const MAX_MODULE_FILE: usize = 64 << 20;
/// Largest decompressed module image (bytes); amdgpu, the largest in-tree module, is ~20 MiB.
pub const MAX_MODULE_IMAGE: u64 = 256 << 20;

/// Most memory the xz decoder may use (`xz -9` needs 65 MiB): a crafted header can ask for a
/// 4 GiB dictionary.
pub const XZ_MEMLIMIT: u64 = 128 << 20;

/// A reader of concatenated `.xz` streams (not `.lzma`) whose decoder memory is bounded by
/// [`XZ_MEMLIMIT`]; also used by the image builder.
pub fn xz_reader(data: &[u8]) -> Result<xz2::read::XzDecoder<&[u8]>, xz2::stream::Error> {
    let stream = xz2::stream::Stream::new_stream_decoder(XZ_MEMLIMIT, xz2::stream::CONCATENATED)?;
    Ok(xz2::read::XzDecoder::new_stream(data, stream))
}

/// A module file's compression, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain ELF `.ko`.
    None,
    /// `.ko.xz` (xz container, as kmod writes it).
    Xz,
    /// `.ko.zst`.
    Zstd,
    /// `.ko.gz`.
    Gzip,
}

impl Compression {
    /// From the file name's extension.
    pub fn from_path(path: &str) -> Self {
        if path.ends_with(".xz") {
            Compression::Xz
        } else if path.ends_with(".zst") {
            Compression::Zstd
        } else if path.ends_with(".gz") {
            Compression::Gzip
        } else {
            Compression::None
        }
    }

    /// From the data's magic bytes (the extension may lie).
    pub fn from_magic(data: &[u8]) -> Self {
        if data.starts_with(&[0xFD, b'7', b'z', b'X', b'Z', 0x00]) {
            Compression::Xz
        } else if data.starts_with(&[0x28, 0xB5, 0x2F, 0xFD]) {
            Compression::Zstd
        } else if data.starts_with(&[0x1F, 0x8B]) {
            Compression::Gzip
        } else {
            Compression::None
        }
    }
}

/// How a module load ended (when it did not fail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loaded {
    /// The kernel loaded it now.
    Loaded,
    /// `EEXIST`: already loaded or built into the kernel.
    AlreadyPresent,
}

/// Why a module could not be loaded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModuleError {
    #[error("cannot open module {path}: {}", OsError(*.errno))]
    Open { path: String, errno: Errno },
    #[error("cannot read module {path}: {}", OsError(*.errno))]
    Read { path: String, errno: Errno },
    #[error("cannot decompress module {path}: {reason}")]
    Decompress { path: String, reason: String },
    #[error("kernel refused module {path}: {}", OsError(*.errno))]
    Load { path: String, errno: Errno },
}

/// Decompresses a module image of the given kind, refusing images above [`MAX_MODULE_IMAGE`].
pub fn decompress(kind: Compression, data: &[u8]) -> Result<Vec<u8>, String> {
    let reader: Box<dyn Read + '_> = match kind {
        Compression::None => return Ok(data.to_vec()),
        Compression::Xz => Box::new(xz_reader(data).map_err(|e| e.to_string())?),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(data).map_err(|e| e.to_string())?),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(data)),
    };
    let mut out = Vec::new();
    // Read one byte past the limit to detect an oversized image without unbounded allocation.
    reader.take(MAX_MODULE_IMAGE + 1).read_to_end(&mut out).map_err(|e| e.to_string())?;
    if out.len() as u64 > MAX_MODULE_IMAGE {
        return Err(format!("decompressed image larger than {} MiB", MAX_MODULE_IMAGE >> 20));
    }
    Ok(out)
}

/// Loads modules, remembering whether the kernel can decompress them itself.
#[derive(Debug, Default)]
pub struct ModuleLoader {
    /// Set once the kernel refused `MODULE_INIT_COMPRESSED_FILE`.
    pub kernel_cannot_decompress: bool,
}

fn map_load(path: &str, r: Result<(), Errno>) -> Result<Loaded, ModuleError> {
    match r {
        Ok(()) => Ok(Loaded::Loaded),
        Err(Errno::EXIST) => Ok(Loaded::AlreadyPresent),
        Err(errno) => Err(ModuleError::Load { path: path.to_string(), errno }),
    }
}

impl ModuleLoader {
    /// Loads one module file.
    pub fn load<S: Sys>(&mut self, sys: &mut S, path: &str) -> Result<Loaded, ModuleError> {
        let kind = Compression::from_path(path);
        if kind == Compression::None || !self.kernel_cannot_decompress {
            let file = sys.open(path, Open::Read).map_err(|errno| ModuleError::Open { path: path.into(), errno })?;
            let flags = if kind == Compression::None { 0 } else { MODULE_INIT_COMPRESSED_FILE };
            match sys.finit_module(&file, "", flags) {
                Err(Errno::INVAL | Errno::NOPKG | Errno::OPNOTSUPP) if kind != Compression::None => {
                    self.kernel_cannot_decompress = true;
                }
                r => return map_load(path, r),
            }
        }
        let data =
            read_file(sys, path, MAX_MODULE_FILE).map_err(|errno| ModuleError::Read { path: path.into(), errno })?;
        let kind = match Compression::from_magic(&data) {
            Compression::None => kind,
            k => k,
        };
        let image = decompress(kind, &data).map_err(|reason| ModuleError::Decompress { path: path.into(), reason })?;
        map_load(path, sys.init_module(&image, ""))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::Write;

    use super::*;
    use crate::sys::fake::FakeSys;

    #[test]
    fn xz_decoder_memory_is_bounded() {
        // Found by fuzz/modinfo: an .lzma-style header asking for a 4 GiB dictionary.
        let data = [0x5d, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0x18];
        assert!(decompress(Compression::Xz, &data).is_err());
        let mut xz = Vec::new();
        let mut enc = xz2::write::XzEncoder::new(&mut xz, 9);
        enc.write_all(&[7u8; 100_000]).unwrap();
        enc.finish().unwrap();
        assert_eq!(decompress(Compression::Xz, &xz).unwrap(), vec![7u8; 100_000]);
    }

    pub(crate) fn fake_ko() -> Vec<u8> {
        let mut v = b"\x7fELF\x02\x01\x01".to_vec();
        v.extend((0..5000u32).map(|i| (i % 251) as u8));
        v
    }

    pub(crate) fn xz(data: &[u8]) -> Vec<u8> {
        let mut e = xz2::write::XzEncoder::new(Vec::new(), 6);
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn zst(data: &[u8]) -> Vec<u8> {
        zstd::stream::encode_all(data, 3).unwrap()
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn compression_detection() {
        assert_eq!(Compression::from_path("/m/a.ko"), Compression::None);
        assert_eq!(Compression::from_path("/m/a.ko.xz"), Compression::Xz);
        assert_eq!(Compression::from_path("/m/a.ko.zst"), Compression::Zstd);
        assert_eq!(Compression::from_path("/m/a.ko.gz"), Compression::Gzip);
        assert_eq!(Compression::from_magic(&xz(b"x")), Compression::Xz);
        assert_eq!(Compression::from_magic(&zst(b"x")), Compression::Zstd);
        assert_eq!(Compression::from_magic(&gz(b"x")), Compression::Gzip);
        assert_eq!(Compression::from_magic(b"\x7fELF"), Compression::None);
    }

    #[test]
    fn decompress_round_trips_and_rejects_garbage() {
        let ko = fake_ko();
        assert_eq!(decompress(Compression::Xz, &xz(&ko)).unwrap(), ko);
        assert_eq!(decompress(Compression::Zstd, &zst(&ko)).unwrap(), ko);
        assert_eq!(decompress(Compression::Gzip, &gz(&ko)).unwrap(), ko);
        assert!(decompress(Compression::Xz, b"\xfd7zXZ\0garbage").is_err());
        assert!(decompress(Compression::Zstd, &zst(&ko)[..20]).is_err());
    }

    #[test]
    fn in_process_decompression_when_kernel_lacks_it() {
        let ko = fake_ko();
        let mut sys = FakeSys::new();
        sys.add_file("/m/a.ko.xz", xz(&ko));
        sys.add_file("/m/b.ko.zst", zst(&ko));
        sys.add_file("/m/c.ko.gz", gz(&ko));
        // Debian 12's 6.1 kernel: the flag is unknown -> EINVAL.
        sys.fail("finit_module /m/a.ko.xz flags=4", Errno::INVAL);
        let mut l = ModuleLoader::default();
        assert_eq!(l.load(&mut sys, "/m/a.ko.xz"), Ok(Loaded::Loaded));
        assert!(l.kernel_cannot_decompress);
        assert_eq!(l.load(&mut sys, "/m/b.ko.zst"), Ok(Loaded::Loaded));
        assert_eq!(l.load(&mut sys, "/m/c.ko.gz"), Ok(Loaded::Loaded));
        assert_eq!(sys.module_images, vec![ko.clone(), ko.clone(), ko]);
        // Only the first compressed module tried the kernel path.
        assert_eq!(sys.calls_matching(&["finit_module"]), vec!["finit_module /m/a.ko.xz flags=4"]);
    }

    #[test]
    fn kernel_decompression_used_when_available() {
        let mut sys = FakeSys::new();
        sys.add_file("/m/a.ko.zst", zst(&fake_ko()));
        let mut l = ModuleLoader::default();
        assert_eq!(l.load(&mut sys, "/m/a.ko.zst"), Ok(Loaded::Loaded));
        assert_eq!(sys.calls_matching(&["finit_module", "init_module"]), vec!["finit_module /m/a.ko.zst flags=4"]);
        assert!(sys.module_images.is_empty());
    }

    #[test]
    fn eexist_is_success_and_other_errors_name_the_module() {
        let mut sys = FakeSys::new();
        sys.add_file("/m/a.ko", fake_ko());
        sys.add_file("/m/b.ko", fake_ko());
        sys.fail("finit_module /m/a.ko", Errno::EXIST);
        sys.fail("finit_module /m/b.ko", Errno::NOEXEC);
        let mut l = ModuleLoader::default();
        assert_eq!(l.load(&mut sys, "/m/a.ko"), Ok(Loaded::AlreadyPresent));
        let e = l.load(&mut sys, "/m/b.ko").unwrap_err();
        assert_eq!(e, ModuleError::Load { path: "/m/b.ko".into(), errno: Errno::NOEXEC });
        assert!(e.to_string().contains("/m/b.ko"), "{e}");
        assert!(e.to_string().contains("os error 8"), "{e}");
        assert!(matches!(l.load(&mut sys, "/m/missing.ko"), Err(ModuleError::Open { errno: Errno::NOENT, .. })));
    }
}
