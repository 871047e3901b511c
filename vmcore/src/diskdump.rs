//! Reader of kdump-compressed dumps ("KDUMP   ", "DISKDUMP" with a sub-header; FORMATS.md §1),
//! from a regular file or a flattened file ([`crate::flat::FlatFile`]).
//!
//! Opening reads the header, sub-header, notes (VMCOREINFO) and both bitmaps, and builds a
//! rank table (dumpable pages before each 512-pfn block) so a pfn's descriptor is found in
//! O(1). [`DiskDump`] implements [`PhysMemory`]: pages excluded from the dump read as
//! [`MemError::NotPresent`]; each page read decompresses one descriptor's data (a small
//! direct-mapped cache of decompressed pages serves repeated small reads).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::addr::{FileOffset, Pfn, PhysAddr};
use crate::classify::PageClass;
use crate::flat::{FlatError, FlatFile, FLAT_SIGNATURE};
use crate::memory::{MemError, PhysMemory, PhysRange};
use crate::vmcoreinfo::{VmcoreInfo, VmcoreInfoError};
use crate::write::codec::{PageDecompressor, FLAG_INCOMPLETE};
use crate::write::kdump::{
    DiskDumpHeader, KdumpSubHeader, PageDesc, SIZEOF_DISK_DUMP_HEADER, SIZEOF_KDUMP_SUB_HEADER, SIZEOF_PAGE_DESC,
};
use crate::write::DumpSource;

/// Largest accepted bitmap (covers 2^40 pages of 4 KiB).
const MAX_BITMAP_BYTES: u64 = 1 << 37;
/// Pages in the decompressed-page cache.
const CACHE_PAGES: usize = 64;

/// Errors opening a kdump-compressed dump.
#[derive(Debug, thiserror::Error)]
pub enum DiskDumpError {
    /// I/O error.
    #[error("{what} of {path} failed")]
    Io {
        /// Operation.
        what: String,
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The flattened container is invalid.
    #[error("flattened container")]
    Flat(#[from] FlatError),
    /// Not a kdump-compressed file.
    #[error("{path} is not a kdump-compressed dump (signature {sig:?})")]
    NotKdump {
        /// File.
        path: PathBuf,
        /// First 8 bytes.
        sig: String,
    },
    /// A header field is invalid.
    #[error("{path}: {what}")]
    Corrupt {
        /// File.
        path: PathBuf,
        /// What.
        what: String,
    },
    /// A feature this reader does not handle.
    #[error("{path}: {what} is not yet supported")]
    Unsupported {
        /// File.
        path: PathBuf,
        /// What.
        what: String,
    },
    /// VMCOREINFO does not parse.
    #[error("{path}: bad VMCOREINFO")]
    VmcoreInfo {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: VmcoreInfoError,
    },
}

enum Backing {
    File(File),
    Flat(FlatFile),
}

impl Backing {
    fn read_at(&self, buf: &mut [u8], off: u64) -> std::io::Result<()> {
        match self {
            Backing::File(f) => f.read_exact_at(buf, off),
            Backing::Flat(f) => f.read_at(buf, off),
        }
    }
}

struct Cache {
    dec: PageDecompressor,
    tags: Vec<u64>,
    pages: Vec<u8>,
    raw: Vec<u8>,
}

/// An opened kdump-compressed dump.
pub struct DiskDump {
    path: PathBuf,
    backing: Backing,
    size: u64,
    header: DiskDumpHeader,
    sub: KdumpSubHeader,
    block_size: u64,
    page_shift: u32,
    max_mapnr: u64,
    bitmap1: Vec<u8>,
    bitmap2: Vec<u8>,
    rank: Vec<u64>,
    desc_off: u64,
    notes: Vec<u8>,
    vmcoreinfo: Option<VmcoreInfo>,
    vmcoreinfo_desc: Option<(usize, usize)>,
    ranges: Vec<PhysRange>,
    flattened: bool,
    cache: Mutex<Cache>,
}

impl std::fmt::Debug for DiskDump {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskDump")
            .field("path", &self.path)
            .field("max_mapnr", &self.max_mapnr)
            .field("status", &self.header.status)
            .finish()
    }
}

/// Walk ELF notes; returns (name, type, desc offset, desc size) of each.
pub(crate) fn walk_notes(bytes: &[u8]) -> Vec<(Vec<u8>, u32, usize, usize)> {
    let mut v = Vec::new();
    let mut pos = 0usize;
    let u32_at = |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
    while pos + 12 <= bytes.len() {
        let namesz = u32_at(pos) as usize;
        let descsz = u32_at(pos + 4) as usize;
        let ty = u32_at(pos + 8);
        if namesz == 0 {
            break;
        }
        let name_end = match (pos + 12).checked_add(namesz) {
            Some(e) if e <= bytes.len() => e,
            _ => break,
        };
        let desc = name_end.div_ceil(4) * 4;
        let desc_end = match desc.checked_add(descsz) {
            Some(e) if e <= bytes.len() => e,
            _ => break,
        };
        let mut name = bytes[pos + 12..name_end].to_vec();
        while name.last() == Some(&0) {
            name.pop();
        }
        v.push((name, ty, desc, descsz));
        pos = desc_end.div_ceil(4) * 4;
    }
    v
}

impl DiskDump {
    /// Open `path` (a kdump-compressed file, or a flattened file holding one).
    pub fn open(path: impl AsRef<Path>) -> Result<DiskDump, DiskDumpError> {
        let path = path.as_ref().to_path_buf();
        let io = |what: &str, source| DiskDumpError::Io { what: what.to_string(), path: path.clone(), source };
        let corrupt = |what: String| DiskDumpError::Corrupt { path: path.clone(), what };
        let file = File::open(&path).map_err(|e| io("open", e))?;
        let mut sig = [0u8; 16];
        let flen = file.metadata().map_err(|e| io("stat", e))?.len();
        if flen >= 16 {
            file.read_exact_at(&mut sig, 0).map_err(|e| io("read", e))?;
        }
        let flattened = sig.starts_with(FLAT_SIGNATURE);
        let (backing, size) = if flattened {
            drop(file);
            let f = FlatFile::open(&path)?;
            let s = f.size();
            (Backing::Flat(f), s)
        } else {
            (Backing::File(file), flen)
        };
        let read = |off: u64, len: u64, what: &str| -> Result<Vec<u8>, DiskDumpError> {
            if off.checked_add(len).map_or(true, |e| e > size) {
                return Err(corrupt(format!(
                    "{what} ({len} bytes at offset {off:#x}) extends past the end of the {size}-byte dump"
                )));
            }
            let mut b = vec![0u8; len as usize];
            backing.read_at(&mut b, off).map_err(|e| io(&format!("read of {what}"), e))?;
            Ok(b)
        };
        let hb = read(0, SIZEOF_DISK_DUMP_HEADER as u64, "header")?;
        if &hb[..8] != b"KDUMP   " && &hb[..8] != b"DISKDUMP" {
            return Err(DiskDumpError::NotKdump {
                path: path.clone(),
                sig: String::from_utf8_lossy(&hb[..8]).into_owned(),
            });
        }
        let mut ha = [0u8; SIZEOF_DISK_DUMP_HEADER];
        ha.copy_from_slice(&hb);
        let header = DiskDumpHeader::from_bytes(&ha);
        let bs = header.block_size;
        if !(512..=(1 << 20)).contains(&bs) || !(bs as u32).is_power_of_two() {
            return Err(corrupt(format!("block size {bs} is not a power of two in 512..1M")));
        }
        let bs = bs as u64;
        if header.header_version < 1 {
            return Err(DiskDumpError::Unsupported {
                path: path.clone(),
                what: format!("header version {} (no sub-header)", header.header_version),
            });
        }
        if header.sub_hdr_size < 0 {
            return Err(corrupt(format!("sub_hdr_size {}", header.sub_hdr_size)));
        }
        let sb = read(bs, SIZEOF_KDUMP_SUB_HEADER as u64, "sub-header")?;
        let mut sa = [0u8; SIZEOF_KDUMP_SUB_HEADER];
        sa.copy_from_slice(&sb);
        let mut sub = KdumpSubHeader::from_bytes(&sa);
        let v = header.header_version;
        // Fields of later versions are not defined in earlier ones.
        if v < 6 {
            sub.max_mapnr_64 = 0;
            sub.start_pfn_64 = 0;
            sub.end_pfn_64 = 0;
        }
        if v < 4 {
            sub.offset_note = 0;
            sub.size_note = 0;
        }
        if v < 3 {
            sub.offset_vmcoreinfo = 0;
            sub.size_vmcoreinfo = 0;
        }
        if v >= 2 && sub.split != 0 {
            return Err(DiskDumpError::Unsupported { path: path.clone(), what: "a split dump (--split)".into() });
        }
        let max_mapnr = if v >= 6 { sub.max_mapnr_64 } else { u64::from(header.max_mapnr) };
        let bitmap_off = (1 + header.sub_hdr_size as u64) * bs;
        let bitmap_len = u64::from(header.bitmap_blocks)
            .checked_mul(bs)
            .filter(|&l| l <= MAX_BITMAP_BYTES)
            .ok_or_else(|| corrupt(format!("{} bitmap blocks", header.bitmap_blocks)))?;
        let half = max_mapnr.div_ceil(8).div_ceil(bs) * bs;
        if bitmap_len < half {
            return Err(corrupt(format!("bitmap of {bitmap_len} bytes is too small for max_mapnr {max_mapnr}")));
        }
        let bitmaps = read(bitmap_off, bitmap_len, "bitmaps")?;
        let (bitmap1, bitmap2) = if bitmap_len >= 2 * half {
            (bitmaps[..half as usize].to_vec(), bitmaps[half as usize..2 * half as usize].to_vec())
        } else {
            (bitmaps[..half as usize].to_vec(), bitmaps[..half as usize].to_vec())
        };
        let desc_off = bitmap_off + bitmap_len;

        let mut notes = Vec::new();
        let mut vmcoreinfo_desc = None;
        let mut vi_bytes = None;
        if sub.offset_note > 0 && sub.size_note > 0 {
            notes = read(sub.offset_note as u64, sub.size_note, "notes")?;
            if let Some((_, _, o, s)) = walk_notes(&notes).into_iter().find(|(n, _, _, _)| n == b"VMCOREINFO") {
                vmcoreinfo_desc = Some((o, s));
                vi_bytes = Some(notes[o..o + s].to_vec());
            }
        }
        if vi_bytes.is_none() && sub.offset_vmcoreinfo > 0 && sub.size_vmcoreinfo > 0 {
            vi_bytes = Some(read(sub.offset_vmcoreinfo as u64, sub.size_vmcoreinfo, "VMCOREINFO")?);
        }
        let vmcoreinfo = match vi_bytes {
            Some(b) => {
                Some(VmcoreInfo::parse(&b).map_err(|source| DiskDumpError::VmcoreInfo { path: path.clone(), source })?)
            }
            None => None,
        };

        let page_shift = bs.trailing_zeros();
        // Rank of each 512-pfn block of bitmap 2, and the present ranges of bitmap 1.
        let blocks = max_mapnr.div_ceil(512) as usize;
        let mut rank = Vec::with_capacity(blocks + 1);
        let mut acc = 0u64;
        for b in 0..blocks {
            rank.push(acc);
            let s = b * 64;
            let e = (s + 64).min(bitmap2.len());
            acc += bitmap2[s..e].iter().map(|x| u64::from(x.count_ones())).sum::<u64>();
        }
        rank.push(acc);
        let mut ranges = Vec::new();
        let mut run: Option<u64> = None;
        for pfn in 0..=max_mapnr {
            let set = pfn < max_mapnr && bitmap1[(pfn >> 3) as usize] & (1 << (pfn & 7)) != 0;
            match (set, run) {
                (true, None) => run = Some(pfn),
                (false, Some(s)) => {
                    ranges.push(PhysRange { start: PhysAddr(s << page_shift), end: PhysAddr(pfn << page_shift) });
                    run = None;
                }
                _ => {}
            }
        }
        let ps = bs as usize;
        Ok(DiskDump {
            path,
            backing,
            size,
            header,
            sub,
            block_size: bs,
            page_shift,
            max_mapnr,
            bitmap1,
            bitmap2,
            rank,
            desc_off,
            notes,
            vmcoreinfo,
            vmcoreinfo_desc,
            ranges,
            flattened,
            cache: Mutex::new(Cache {
                dec: PageDecompressor::new(),
                tags: vec![u64::MAX; CACHE_PAGES],
                pages: vec![0; CACHE_PAGES * ps],
                raw: vec![0; ps],
            }),
        })
    }

    /// The path.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The main header.
    pub fn header(&self) -> &DiskDumpHeader {
        &self.header
    }
    /// The sub-header.
    pub fn sub_header(&self) -> &KdumpSubHeader {
        &self.sub
    }
    /// max_mapnr (pfns covered by the bitmaps).
    pub fn max_mapnr(&self) -> u64 {
        self.max_mapnr
    }
    /// True if the header carries the INCOMPLETE flag.
    pub fn is_incomplete(&self) -> bool {
        self.header.status & FLAG_INCOMPLETE != 0
    }
    /// True if read from a flattened file.
    pub fn is_flattened(&self) -> bool {
        self.flattened
    }
    /// Size of the (unflattened) dump.
    pub fn size(&self) -> u64 {
        self.size
    }
    /// Number of pages with a descriptor.
    pub fn num_dumpable(&self) -> u64 {
        self.rank.last().copied().unwrap_or(0)
    }
    /// The release string from the header's utsname.
    pub fn release(&self) -> String {
        let r = &self.header.utsname[130..195];
        let n = r.iter().position(|&b| b == 0).unwrap_or(r.len());
        String::from_utf8_lossy(&r[..n]).into_owned()
    }

    fn bit(map: &[u8], pfn: u64) -> bool {
        map.get((pfn >> 3) as usize).is_some_and(|b| b & (1 << (pfn & 7)) != 0)
    }

    /// True if `pfn` is in the memory map (bitmap 1).
    pub fn is_in_memory_map(&self, pfn: u64) -> bool {
        pfn < self.max_mapnr && Self::bit(&self.bitmap1, pfn)
    }

    /// True if `pfn` has data in the dump (bitmap 2).
    pub fn is_dumpable(&self, pfn: u64) -> bool {
        pfn < self.max_mapnr && Self::bit(&self.bitmap1, pfn) && Self::bit(&self.bitmap2, pfn)
    }

    /// The descriptor of a dumpable pfn.
    pub fn page_desc(&self, pfn: u64) -> Result<PageDesc, MemError> {
        let pa = PhysAddr(pfn << self.page_shift);
        if !self.is_dumpable(pfn) {
            return Err(MemError::NotPresent { pa });
        }
        let block = (pfn / 512) as usize;
        let mut idx = self.rank[block];
        let first_byte = block * 64;
        let byte = (pfn >> 3) as usize;
        for b in &self.bitmap2[first_byte..byte] {
            idx += u64::from(b.count_ones());
        }
        idx += u64::from((self.bitmap2[byte] & ((1u8 << (pfn & 7)) - 1)).count_ones());
        let off = self.desc_off + idx * SIZEOF_PAGE_DESC as u64;
        let mut d = [0u8; SIZEOF_PAGE_DESC];
        self.backing.read_at(&mut d, off).map_err(|source| MemError::Io {
            offset: FileOffset(off),
            len: SIZEOF_PAGE_DESC,
            source,
        })?;
        Ok(PageDesc::from_bytes(&d))
    }

    /// Decompress page `pfn` into `out` (one page).
    pub fn read_page(&self, pfn: u64, out: &mut [u8]) -> Result<(), MemError> {
        let mut c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        self.read_page_locked(&mut c, pfn, out)
    }

    fn read_page_locked(&self, c: &mut Cache, pfn: u64, out: &mut [u8]) -> Result<(), MemError> {
        let bad = |offset: u64, msg: String| MemError::Io {
            offset: FileOffset(offset),
            len: 0,
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, msg),
        };
        let d = self.page_desc(pfn)?;
        if d.offset <= 0 {
            return Err(bad(0, format!("pfn {pfn:#x}: page descriptor never written (incomplete dump)")));
        }
        let off = d.offset as u64;
        if u64::from(d.size) > self.block_size || d.size == 0 {
            return Err(bad(off, format!("pfn {pfn:#x}: stored size {} > block size", d.size)));
        }
        let raw = &mut c.raw[..d.size as usize];
        self.backing.read_at(raw, off).map_err(|source| MemError::Io {
            offset: FileOffset(off),
            len: d.size as usize,
            source,
        })?;
        let Cache { dec, raw, .. } = c;
        dec.decompress(d.flags, &raw[..d.size as usize], out).map_err(|e| bad(off, format!("pfn {pfn:#x}: {e}")))
    }
}

impl PhysMemory for DiskDump {
    fn read_phys(&self, pa: PhysAddr, buf: &mut [u8]) -> Result<(), MemError> {
        if pa.0.checked_add(buf.len() as u64).is_none() {
            return Err(MemError::Overflow { pa, len: buf.len() });
        }
        let ps = self.block_size as usize;
        let mut c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let mut done = 0usize;
        while done < buf.len() {
            let cur = pa.0 + done as u64;
            let pfn = cur >> self.page_shift;
            let in_page = (cur & (self.block_size - 1)) as usize;
            let n = (ps - in_page).min(buf.len() - done);
            if in_page == 0 && n == ps {
                // Whole page: decompress straight into the caller's buffer.
                self.read_page_locked(&mut c, pfn, &mut buf[done..done + ps])?;
            } else {
                let slot = (pfn as usize) % CACHE_PAGES;
                if c.tags[slot] != pfn {
                    c.tags[slot] = u64::MAX;
                    let mut page = std::mem::take(&mut c.pages);
                    let r = self.read_page_locked(&mut c, pfn, &mut page[slot * ps..(slot + 1) * ps]);
                    c.pages = page;
                    r?;
                    c.tags[slot] = pfn;
                }
                buf[done..done + n].copy_from_slice(&c.pages[slot * ps + in_page..slot * ps + in_page + n]);
            }
            done += n;
        }
        Ok(())
    }

    fn page_size(&self) -> u64 {
        self.block_size
    }

    fn ranges(&self) -> Vec<PhysRange> {
        self.ranges.clone()
    }

    fn is_present(&self, pfn: Pfn) -> bool {
        self.is_in_memory_map(pfn.0)
    }
}

impl DumpSource for DiskDump {
    fn notes_bytes(&self) -> &[u8] {
        &self.notes
    }
    fn vmcoreinfo(&self) -> Option<&VmcoreInfo> {
        self.vmcoreinfo.as_ref()
    }
    fn vmcoreinfo_desc(&self) -> Option<(usize, usize)> {
        self.vmcoreinfo_desc
    }
    fn nr_cpus(&self) -> usize {
        let from_notes = walk_notes(&self.notes).iter().filter(|(n, t, _, _)| n == b"CORE" && *t == 1).count();
        if from_notes > 0 {
            from_notes
        } else {
            self.header.nr_cpus.max(0) as usize
        }
    }
    fn e_machine(&self) -> u16 {
        let m = &self.header.utsname[260..325];
        if m.starts_with(b"aarch64") {
            183
        } else {
            62
        }
    }
    fn has_page_data(&self, pfn: Pfn) -> bool {
        self.is_dumpable(pfn.0)
    }
    fn earlier_dump_level(&self) -> Option<u8> {
        u8::try_from(self.sub.dump_level).ok().filter(|&l| l <= 31)
    }
    fn mark_missing(&self, start: Pfn, classes: &mut [PageClass]) {
        for (i, c) in classes.iter_mut().enumerate() {
            if *c == PageClass::Kept && !self.is_dumpable(start.0 + i as u64) {
                *c = PageClass::NoData;
            }
        }
    }
}
