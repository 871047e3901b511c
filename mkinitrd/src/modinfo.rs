//! Reading a kernel module's `.modinfo` section (`depends=`, `softdep=`, `alias=`...).
//!
//! A module is an ELF relocatable object, possibly compressed as a whole (`.ko.xz`, `.ko.zst`,
//! `.ko.gz`). `.modinfo` is a sequence of NUL-terminated `key=value` strings. The ELF is parsed
//! with goblin (section headers and names only matter here).

use std::path::{Path, PathBuf};

use crate::compress::{decompress, Compression};

/// Errors reading a module's metadata.
#[derive(Debug, thiserror::Error)]
pub enum ModinfoError {
    /// The file could not be read.
    #[error("cannot read module {path}: {source}")]
    Read {
        /// The module.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The compressed module could not be unpacked.
    #[error("cannot decompress module {path}: {source}")]
    Decompress {
        /// The module.
        path: PathBuf,
        /// The cause.
        #[source]
        source: crate::compress::CompressError,
    },
    /// Not a well-formed ELF object.
    #[error("module {path} is not a valid ELF object: {message}")]
    Elf {
        /// The module.
        path: PathBuf,
        /// goblin's message.
        message: String,
    },
    /// No `.modinfo` section.
    #[error("module {0} has no .modinfo section")]
    NoModinfo(PathBuf),
}

/// The compression of a module file, from its name.
pub fn module_compression(path: &Path) -> Compression {
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    if name.ends_with(".ko.xz") {
        Compression::Xz
    } else if name.ends_with(".ko.zst") {
        Compression::Zstd
    } else if name.ends_with(".ko.gz") {
        Compression::Gzip
    } else {
        Compression::None
    }
}

/// Reads the `key=value` pairs of a module's `.modinfo`, in order.
pub fn read_modinfo(path: &Path) -> Result<Vec<(String, String)>, ModinfoError> {
    let raw = std::fs::read(path).map_err(|source| ModinfoError::Read { path: path.to_path_buf(), source })?;
    let data = match module_compression(path) {
        Compression::None => raw,
        c => decompress(&raw, c).map_err(|source| ModinfoError::Decompress { path: path.to_path_buf(), source })?,
    };
    parse_modinfo_elf(&data).map_err(|e| match e {
        None => ModinfoError::NoModinfo(path.to_path_buf()),
        Some(message) => ModinfoError::Elf { path: path.to_path_buf(), message },
    })
}

/// Finds `.modinfo` in an ELF image and splits it. `Err(None)`: no such section.
fn parse_modinfo_elf(data: &[u8]) -> Result<Vec<(String, String)>, Option<String>> {
    use goblin::elf::Elf;
    let header = Elf::parse_header(data).map_err(|e| Some(e.to_string()))?;
    let ctx = goblin::container::Ctx::new(
        if header.e_ident[goblin::elf::header::EI_CLASS] == goblin::elf::header::ELFCLASS64 {
            goblin::container::Container::Big
        } else {
            goblin::container::Container::Little
        },
        if header.e_ident[goblin::elf::header::EI_DATA] == goblin::elf::header::ELFDATA2MSB {
            goblin::container::Endian::Big
        } else {
            goblin::container::Endian::Little
        },
    );
    let shdrs = goblin::elf::SectionHeader::parse(data, header.e_shoff as usize, header.e_shnum as usize, ctx)
        .map_err(|e| Some(e.to_string()))?;
    let strtab_hdr = shdrs.get(header.e_shstrndx as usize).ok_or_else(|| Some("bad e_shstrndx".to_string()))?;
    let strtab = section_bytes(data, strtab_hdr)?;
    for sh in &shdrs {
        let start = sh.sh_name;
        let Some(name) = strtab.get(start..) else {
            continue;
        };
        let name = name.split(|&b| b == 0).next().unwrap_or(&[]);
        if name == b".modinfo" {
            return Ok(split_modinfo(section_bytes(data, sh)?));
        }
    }
    Err(None)
}

fn section_bytes<'a>(data: &'a [u8], sh: &goblin::elf::SectionHeader) -> Result<&'a [u8], Option<String>> {
    let start = usize::try_from(sh.sh_offset).map_err(|_| Some("section offset".to_string()))?;
    let size = usize::try_from(sh.sh_size).map_err(|_| Some("section size".to_string()))?;
    let end = start.checked_add(size).ok_or_else(|| Some("section overflow".to_string()))?;
    data.get(start..end).ok_or_else(|| Some("section outside the file".to_string()))
}

/// Splits NUL-separated `key=value` strings.
pub fn split_modinfo(sec: &[u8]) -> Vec<(String, String)> {
    sec.split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .filter_map(|s| {
            let s = String::from_utf8_lossy(s);
            s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// Builds a minimal ELF64 relocatable with a `.modinfo` section (tests of this crate).
#[cfg(test)]
pub(crate) fn tiny_module(modinfo: &[&str]) -> Vec<u8> {
    let mut info = Vec::new();
    for kv in modinfo {
        info.extend_from_slice(kv.as_bytes());
        info.push(0);
    }
    let shstrtab = b"\0.modinfo\0.shstrtab\0".to_vec();
    let mut f = vec![0u8; 64];
    let info_off = f.len();
    f.extend_from_slice(&info);
    let str_off = f.len();
    f.extend_from_slice(&shstrtab);
    while f.len() % 8 != 0 {
        f.push(0);
    }
    let shoff = f.len();
    // ELF header.
    f[0..4].copy_from_slice(b"\x7fELF");
    f[4] = 2; // ELFCLASS64
    f[5] = 1; // little endian
    f[6] = 1; // EV_CURRENT
    f[16..18].copy_from_slice(&1u16.to_le_bytes()); // ET_REL
    f[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    f[20..24].copy_from_slice(&1u32.to_le_bytes());
    f[40..48].copy_from_slice(&(shoff as u64).to_le_bytes());
    f[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
    f[58..60].copy_from_slice(&64u16.to_le_bytes()); // e_shentsize
    f[60..62].copy_from_slice(&3u16.to_le_bytes()); // e_shnum
    f[62..64].copy_from_slice(&2u16.to_le_bytes()); // e_shstrndx
    let sh = |name: u32, ty: u32, off: usize, size: usize| {
        let mut s = vec![0u8; 64];
        s[0..4].copy_from_slice(&name.to_le_bytes());
        s[4..8].copy_from_slice(&ty.to_le_bytes());
        s[24..32].copy_from_slice(&(off as u64).to_le_bytes());
        s[32..40].copy_from_slice(&(size as u64).to_le_bytes());
        s[48..56].copy_from_slice(&1u64.to_le_bytes());
        s
    };
    f.extend_from_slice(&[0u8; 64]);
    f.extend_from_slice(&sh(1, 1, info_off, info.len())); // .modinfo, PROGBITS
    f.extend_from_slice(&sh(10, 3, str_off, shstrtab.len())); // .shstrtab, STRTAB
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compress::compress;

    #[test]
    fn tiny_module_round_trip_plain_and_compressed() {
        let m = tiny_module(&["license=GPL", "depends=a,b-c", "softdep=pre: crc32c post: x", "name=m"]);
        let dir = tempfile::tempdir().unwrap();
        for (ext, c) in [
            ("ko", Compression::None),
            ("ko.xz", Compression::Xz),
            ("ko.zst", Compression::Zstd),
            ("ko.gz", Compression::Gzip),
        ] {
            let p = dir.path().join(format!("m.{ext}"));
            std::fs::write(&p, compress(&m, c).unwrap()).unwrap();
            assert_eq!(module_compression(&p), c);
            let info = read_modinfo(&p).unwrap();
            assert_eq!(info[1], ("depends".to_string(), "a,b-c".to_string()), "{ext}");
            assert_eq!(info.len(), 4);
        }
    }

    #[test]
    fn garbage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.ko");
        std::fs::write(&p, b"\x7fELF\x02\x01\x01garbage").unwrap();
        assert!(read_modinfo(&p).is_err());
        let mut m = tiny_module(&["a=b"]);
        let n = m.len();
        m.truncate(n - 10);
        std::fs::write(&p, &m).unwrap();
        assert!(read_modinfo(&p).is_err());
        assert!(matches!(read_modinfo(&dir.path().join("none.ko")), Err(ModinfoError::Read { .. })));
    }

    #[test]
    fn real_debian_module_when_present() {
        let Ok(rd) = std::fs::read_dir("/lib/modules") else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path().join("kernel/fs/ext4/ext4.ko");
            if p.exists() {
                let info = read_modinfo(&p).unwrap();
                let deps = info.iter().find(|(k, _)| k == "depends").unwrap();
                assert!(deps.1.contains("jbd2") && deps.1.contains("mbcache"), "{deps:?}");
                assert!(info.iter().any(|(k, v)| k == "alias" && v == "fs-ext4"));
                return;
            }
        }
        eprintln!("skipped: no Debian ext4.ko");
    }
}
