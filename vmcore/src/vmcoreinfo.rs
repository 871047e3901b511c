//! VMCOREINFO parser.
//!
//! The crashed kernel describes itself in the VMCOREINFO ELF note: ASCII lines `KEY=VALUE`.
//! Key kinds and their value syntax (kernel `kernel/vmcore_info.c`):
//!
//! | key | value |
//! |---|---|
//! | `SYMBOL(name)` | hex address without `0x` (KASLR-relocated) |
//! | `SIZE(t)`, `OFFSET(t.m)`, `LENGTH(a)` | unsigned decimal |
//! | `NUMBER(n)` | signed decimal; some arch values are `0x` hex (retried as hex) |
//! | `CONFIG_X` | `y` |
//! | `OSRELEASE`, `BUILD-ID` | strings |
//! | `PAGESIZE`, `CRASHTIME` | decimal |
//! | `KERNELOFFSET` | hex without `0x` |
//!
//! As in makedumpfile, the **first** occurrence of a key wins. Lines that are not valid UTF-8
//! or have no `=` are skipped (counted in [`VmcoreInfo::skipped_lines`]).

use std::collections::HashMap;

/// Largest VMCOREINFO accepted (the kernel's own limit is one page).
pub const MAX_VMCOREINFO_BYTES: usize = 1 << 20;

/// Errors from parsing VMCOREINFO.
#[derive(Debug, thiserror::Error)]
pub enum VmcoreInfoError {
    /// The note is larger than any kernel writes.
    #[error("vmcoreinfo is {len} bytes, more than the {max}-byte limit")]
    TooLarge {
        /// Length of the input.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Parsed VMCOREINFO: raw key/value strings plus typed getters.
#[derive(Clone, Debug, Default)]
pub struct VmcoreInfo {
    map: HashMap<String, String>,
    skipped: usize,
}

fn parse_hex(s: &str) -> Option<u64> {
    let s = s.trim();
    let s = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).unwrap_or(s);
    if s.is_empty() {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

fn parse_dec_u64(s: &str) -> Option<u64> {
    s.trim().parse::<u64>().ok()
}

/// `NUMBER()` syntax: signed decimal, then hex (with or without `0x`, optional `-`).
fn parse_number(s: &str) -> Option<i64> {
    let t = s.trim();
    if let Ok(v) = t.parse::<i64>() {
        return Some(v);
    }
    // Positive decimals above i64::MAX are kept as their two's-complement bit pattern.
    if let Ok(v) = t.parse::<u64>() {
        return Some(v as i64);
    }
    let (neg, body) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    let v = parse_hex(body)?;
    Some(if neg { (v as i64).wrapping_neg() } else { v as i64 })
}

impl VmcoreInfo {
    /// Parse the VMCOREINFO note text (the note's desc bytes).
    pub fn parse(bytes: &[u8]) -> Result<VmcoreInfo, VmcoreInfoError> {
        if bytes.len() > MAX_VMCOREINFO_BYTES {
            return Err(VmcoreInfoError::TooLarge { len: bytes.len(), max: MAX_VMCOREINFO_BYTES });
        }
        let mut info = VmcoreInfo::default();
        for raw in bytes.split(|&b| b == b'\n') {
            // The desc may be NUL-padded.
            let raw = match raw.iter().position(|&b| b == 0) {
                Some(n) => &raw[..n],
                None => raw,
            };
            if raw.is_empty() {
                continue;
            }
            let Ok(line) = std::str::from_utf8(raw) else {
                info.skipped += 1;
                continue;
            };
            let line = line.trim_end_matches('\r');
            let Some((k, v)) = line.split_once('=') else {
                info.skipped += 1;
                continue;
            };
            if k.is_empty() {
                info.skipped += 1;
                continue;
            }
            info.map.entry(k.to_string()).or_insert_with(|| v.to_string());
        }
        Ok(info)
    }

    /// Number of lines that could not be parsed.
    pub fn skipped_lines(&self) -> usize {
        self.skipped
    }

    /// Number of distinct keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when no key was found.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The raw value string of `key` (e.g. `"SYMBOL(mem_section)"`).
    pub fn get_raw(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(String::as_str)
    }

    /// True if `key` is present.
    pub fn has(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    /// `SYMBOL(name)`: a kernel virtual address.
    pub fn symbol(&self, name: &str) -> Option<u64> {
        self.get_raw(&format!("SYMBOL({name})")).and_then(parse_hex)
    }

    /// `SIZE(name)`.
    pub fn size(&self, name: &str) -> Option<u64> {
        self.get_raw(&format!("SIZE({name})")).and_then(parse_dec_u64)
    }

    /// `OFFSET(struct.member)`.
    pub fn offset(&self, name: &str) -> Option<u64> {
        self.get_raw(&format!("OFFSET({name})")).and_then(parse_dec_u64)
    }

    /// `LENGTH(name)`.
    pub fn length(&self, name: &str) -> Option<u64> {
        self.get_raw(&format!("LENGTH({name})")).and_then(parse_dec_u64)
    }

    /// `NUMBER(name)`: signed decimal, retried as hex (makedumpfile's rule).
    pub fn number(&self, name: &str) -> Option<i64> {
        self.get_raw(&format!("NUMBER({name})")).and_then(parse_number)
    }

    /// `NUMBER(name)` truncated to 32 bits, the way page-type / `_mapcount` values are compared.
    pub fn number_u32(&self, name: &str) -> Option<u32> {
        self.number(name).map(|v| v as u32)
    }

    /// `CONFIG_name` value (usually `"y"`); `name` is given without the `CONFIG_` prefix.
    pub fn config(&self, name: &str) -> Option<&str> {
        self.get_raw(&format!("CONFIG_{name}"))
    }

    /// `OSRELEASE`.
    pub fn osrelease(&self) -> Option<&str> {
        self.get_raw("OSRELEASE")
    }

    /// `PAGESIZE`.
    pub fn page_size(&self) -> Option<u64> {
        self.get_raw("PAGESIZE").and_then(parse_dec_u64)
    }

    /// `BUILD-ID` (hex string).
    pub fn build_id(&self) -> Option<&str> {
        self.get_raw("BUILD-ID")
    }

    /// `CRASHTIME` (seconds since the epoch), appended by the kernel at panic time.
    pub fn crash_time(&self) -> Option<i64> {
        self.get_raw("CRASHTIME").and_then(|s| s.trim().parse::<i64>().ok())
    }

    /// `KERNELOFFSET` (KASLR slide of the kernel image).
    pub fn kernel_offset(&self) -> Option<u64> {
        self.get_raw("KERNELOFFSET").and_then(parse_hex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "OSRELEASE=6.1.0-28-amd64\nBUILD-ID=0123456789abcdef0123456789abcdef01234567\n\
PAGESIZE=4096\nSYMBOL(init_uts_ns)=ffffffff82a13420\nSYMBOL(mem_section)=ffff88813ffd5000\n\
SYMBOL(mem_section)=1234\nLENGTH(mem_section)=2048\nSIZE(mem_section)=16\n\
OFFSET(page.flags)=0\nOFFSET(page._mapcount)=48\nNUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)=-129\n\
NUMBER(sme_mask)=0x8000000000\nNUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)=4043309056\n\
CONFIG_X86_5LEVEL=y\nKERNELOFFSET=1e000000\nCRASHTIME=1700000000\ngarbage line\n";

    #[test]
    fn parses_every_key_kind() {
        let mut bytes = TEXT.as_bytes().to_vec();
        bytes.extend_from_slice(b"\xff\xfe=1\n");
        let vi = VmcoreInfo::parse(&bytes).unwrap();
        assert_eq!(vi.osrelease(), Some("6.1.0-28-amd64"));
        assert_eq!(vi.page_size(), Some(4096));
        assert_eq!(vi.symbol("init_uts_ns"), Some(0xffffffff82a13420));
        assert_eq!(vi.length("mem_section"), Some(2048));
        assert_eq!(vi.size("mem_section"), Some(16));
        assert_eq!(vi.offset("page._mapcount"), Some(48));
        assert_eq!(vi.number("PAGE_BUDDY_MAPCOUNT_VALUE"), Some(-129));
        assert_eq!(vi.number_u32("PAGE_BUDDY_MAPCOUNT_VALUE"), Some(0xffffff7f));
        assert_eq!(vi.number("sme_mask"), Some(0x8000000000));
        assert_eq!(vi.number_u32("PAGE_OFFLINE_MAPCOUNT_VALUE"), Some(0xf1000000));
        assert_eq!(vi.config("X86_5LEVEL"), Some("y"));
        assert_eq!(vi.kernel_offset(), Some(0x1e000000));
        assert_eq!(vi.crash_time(), Some(1700000000));
        assert_eq!(vi.build_id(), Some("0123456789abcdef0123456789abcdef01234567"));
        assert_eq!(vi.skipped_lines(), 2);
        assert_eq!(vi.symbol("nope"), None);
    }

    #[test]
    fn first_occurrence_wins() {
        let vi = VmcoreInfo::parse(TEXT.as_bytes()).unwrap();
        assert_eq!(vi.symbol("mem_section"), Some(0xffff88813ffd5000));
    }

    #[test]
    fn nul_padding_and_bad_values() {
        let vi = VmcoreInfo::parse(b"PAGESIZE=abc\nSIZE(page)=64\0\0\0\0").unwrap();
        assert_eq!(vi.page_size(), None);
        assert_eq!(vi.size("page"), Some(64));
    }

    #[test]
    fn too_large_is_an_error() {
        let big = vec![b'a'; MAX_VMCOREINFO_BYTES + 1];
        assert!(VmcoreInfo::parse(&big).is_err());
    }
}
