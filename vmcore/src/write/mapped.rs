//! Fast physical reads of an ELF vmcore for the writers: a small LRU of mmap windows.
//!
//! The writers' access pattern interleaves three streams — page-table entries (address
//! translation), `struct page` arrays (classification) and page contents (data) — which live
//! far apart in the file. A single mmap window (what [`ElfVmcore`] keeps) is remapped on almost
//! every access; [`MappedElf`] keeps [`WINDOWS`] windows of [`WINDOW_BYTES`] each, so each
//! stream keeps its own. Memory stays bounded (`WINDOWS × WINDOW_BYTES` of mapped file), which
//! matters for `/proc/vmcore` in a small capture kernel. When mmap fails, reads use `pread`.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::{is_zero_page, DumpSource, PageReader, SourceSegment};
use crate::addr::{FileOffset, Pfn, PhysAddr};
use crate::elf::{read_loads, ElfVmcore, LoadSegment};
use crate::memory::{MemError, PhysMemory, PhysRange};
use crate::vmcoreinfo::VmcoreInfo;

/// Bytes per window (a multiple of any page size).
pub const WINDOW_BYTES: u64 = 1 << 20;
/// Windows kept.
pub const WINDOWS: usize = 8;

struct Win {
    start: u64,
    map: memmap2::Mmap,
    used: u64,
}

struct State {
    wins: Vec<Win>,
    tick: u64,
    mmap_ok: bool,
}

/// An [`ElfVmcore`] with an LRU of mmap windows for `read_phys`.
pub struct MappedElf<'a> {
    core: &'a ElfVmcore,
    file: File,
    file_len: u64,
    loads: Vec<LoadSegment>,
    state: Mutex<State>,
    pages: FileReader,
}

/// Reads of page data for the compressing threads: `pread`, or mappings (every run of
/// `/proc/vmcore`; runs of a regular file that are likely mostly zero, on one thread).
struct FileReader {
    file: File,
    file_len: u64,
    loads: Vec<LoadSegment>,
    /// Whether page runs are mapped instead of read (see [`maps_runs`]); cleared by the first
    /// mapping that fails (reads are then `pread`s).
    map_runs: AtomicBool,
    /// Whether runs that look mostly zero are mapped (see [`MappedElf::map_zero_runs`]);
    /// cleared by the first mapping that fails.
    map_zero_runs: AtomicBool,
    /// Whether the last run read was mostly zero pages: the next one is then likely to be too
    /// (zero pages come in long stretches of never-used memory).
    zero_heavy: AtomicBool,
    /// Tests: runs mapped by `map_zero_run`.
    #[cfg(test)]
    zero_runs_mapped: std::sync::atomic::AtomicUsize,
}

impl PageReader for FileReader {
    fn file_offset(&self, pa: PhysAddr, len: u64) -> Option<u64> {
        let pa = pa.0;
        // First match in file order, like `read_phys`.
        let seg = self.loads.iter().find(|l| pa >= l.phys_start.0 && pa - l.phys_start.0 < l.mem_size)?;
        let rel = pa - seg.phys_start.0;
        let off = seg.file_offset.0.checked_add(rel)?;
        (rel.checked_add(len)? <= seg.file_size && off.checked_add(len)? <= self.file_len).then_some(off)
    }

    fn read_at(&self, off: u64, buf: &mut [u8]) -> std::io::Result<()> {
        match self.map(off, buf.len()) {
            Some(map) => {
                buf.copy_from_slice(&map);
                Ok(())
            }
            None => self.file.read_exact_at(buf, off),
        }
    }

    fn read_pages_at(&self, off: u64, buf: &mut [u8], ps: usize, zero: &mut [bool]) -> std::io::Result<()> {
        // On /proc/vmcore a run is mapped, zero-checked in place and copied out page by page
        // (zero pages are never copied): its `read` maps and unmaps old memory one page at a
        // time.
        if ps == 0 {
            return self.read_at(off, buf);
        }
        // A regular file on one thread: a run that follows a mostly zero one is mapped too, so
        // that zero pages are only read, not copied (see `map_zero_runs`).
        let map = match self.map(off, buf.len()) {
            None if self.zero_heavy.load(Ordering::Relaxed) => self.map_zero_run(off, buf.len()),
            m => m,
        };
        let mut zeros = 0;
        match map {
            Some(map) => {
                for (i, (src, dst)) in map.chunks(ps).zip(buf.chunks_mut(ps)).enumerate() {
                    if is_zero_page(src) {
                        if let Some(z) = zero.get_mut(i) {
                            *z = true;
                            zeros += 1;
                            continue;
                        }
                    }
                    dst.copy_from_slice(src);
                }
            }
            None => {
                // Copy, then tell zero pages apart (they are in cache now).
                self.file.read_exact_at(buf, off)?;
                for (page, z) in buf.chunks(ps).zip(zero.iter_mut()) {
                    if is_zero_page(page) {
                        *z = true;
                        zeros += 1;
                    }
                }
            }
        }
        let heavy = zeros * 2 > buf.len() / ps;
        self.zero_heavy.store(heavy && self.map_zero_runs.load(Ordering::Relaxed), Ordering::Relaxed);
        Ok(())
    }
}

impl FileReader {
    /// `[off, off+len)` mapped, when page runs are mapped (`/proc/vmcore`) and it lies inside
    /// the file. A failed mapping turns mapping off for the rest of the dump.
    fn map(&self, off: u64, len: usize) -> Option<memmap2::Mmap> {
        if !self.map_runs.load(Ordering::Relaxed) {
            return None;
        }
        // Not mappable (an unaligned segment, a kernel without vmcore mmap): every later run
        // is read.
        self.map_or_clear(off, len, &self.map_runs)
    }

    /// `[off, off+len)` mapped for [`MappedElf::map_zero_runs`]; a failed mapping turns that
    /// off.
    fn map_zero_run(&self, off: u64, len: usize) -> Option<memmap2::Mmap> {
        #[cfg(test)]
        self.zero_runs_mapped.fetch_add(1, Ordering::Relaxed);
        self.map_or_clear(off, len, &self.map_zero_runs)
    }

    fn map_or_clear(&self, off: u64, len: usize, flag: &AtomicBool) -> Option<memmap2::Mmap> {
        if off.checked_add(len as u64).map_or(true, |e| e > self.file_len) {
            return None;
        }
        let mut opts = memmap2::MmapOptions::new();
        opts.offset(off).len(len).populate();
        // SAFETY: read-only private mapping inside the file as measured when it was opened; a
        // vmcore file or /proc/vmcore is not truncated while we read it (the only way to get
        // SIGBUS). The caller drops the mapping before it returns.
        match unsafe { opts.map(&self.file) } {
            Ok(map) => Some(map),
            Err(_) => {
                flag.store(false, Ordering::Relaxed);
                self.zero_heavy.store(false, Ordering::Relaxed);
                None
            }
        }
    }
}

/// Reads of a regular-file vmcore at least this long bypass the mmap windows.
const PREAD_MIN_BYTES: usize = 16 << 10;

/// Whether page runs of the vmcore at `path` are better mapped than read: true for
/// `/proc/vmcore`, whose `read` maps and unmaps the old kernel's memory page by page while
/// `mmap` maps a whole run at once (makedumpfile maps it too). In a capture kernel under QEMU,
/// a `-d 31` dump of a 2 GiB guest without compression took 1.6-2.1 s with every run mapped
/// and 2.4-3.2 s when only long mostly-zero runs were (see BENCHMARKS.md). A vmcore in the
/// page cache (a regular file) is read faster with large `pread`s than mapped, except for runs
/// of zero pages on one thread ([`MappedElf::map_zero_runs`]): populating and tearing down
/// page-table entries costs more than copying pages that are then compressed, and two mapping
/// threads contend on the address space lock.
fn maps_runs(path: &std::path::Path) -> bool {
    std::fs::canonicalize(path).is_ok_and(|p| p.starts_with("/proc"))
}

impl<'a> MappedElf<'a> {
    /// Re-open `core`'s file for mapped reads.
    pub fn new(core: &'a ElfVmcore) -> std::io::Result<MappedElf<'a>> {
        let file = File::open(core.path())?;
        let pages = FileReader {
            file: file.try_clone()?,
            file_len: core.file_len(),
            loads: core.loads().to_vec(),
            map_runs: AtomicBool::new(maps_runs(core.path())),
            map_zero_runs: AtomicBool::new(false),
            zero_heavy: AtomicBool::new(false),
            #[cfg(test)]
            zero_runs_mapped: Default::default(),
        };
        Ok(MappedElf {
            core,
            file,
            file_len: core.file_len(),
            loads: core.loads().to_vec(),
            pages,
            state: Mutex::new(State { wins: Vec::with_capacity(WINDOWS), tick: 0, mmap_ok: true }),
        })
    }

    /// Map runs of a regular file that follow a mostly zero run, instead of reading them: zero
    /// pages are then zero-checked where the page cache holds them and never copied. For one
    /// thread only: with more, every unmapping interrupts the other threads' CPUs to flush
    /// their TLBs, which cost more than the copies saved (8 GiB capture, `-l -d 1`, 91% zero
    /// pages: one thread 0.94 -> 0.84 of makedumpfile's time, two threads 0.53 -> 0.56; see
    /// BENCHMARKS.md). `/proc/vmcore` maps every run anyway.
    pub fn map_zero_runs(&self, on: bool) {
        self.pages.map_zero_runs.store(on, Ordering::Relaxed);
        if !on {
            self.pages.zero_heavy.store(false, Ordering::Relaxed);
        }
    }

    /// Tests: read as from `/proc/vmcore` (page runs and large metadata reads mapped),
    /// whatever the file is.
    #[cfg(test)]
    pub(crate) fn map_like_proc(&self) {
        self.pages.map_runs.store(true, Ordering::Relaxed);
    }

    /// Tests: runs mapped because the run before was mostly zero, and whether that is still on
    /// (no such mapping has failed).
    #[cfg(test)]
    pub(crate) fn zero_runs_mapped(&self) -> (usize, bool) {
        (self.pages.zero_runs_mapped.load(Ordering::Relaxed), self.pages.map_zero_runs.load(Ordering::Relaxed))
    }

    /// Tests: whether page runs are still mapped (no mapping has failed).
    #[cfg(test)]
    pub(crate) fn still_maps_runs(&self) -> bool {
        self.pages.map_runs.load(Ordering::Relaxed)
    }

    /// The mapped bytes `[off, off+len)` if they fit one window (mapping it if needed).
    fn window_slice<'s>(&self, st: &'s mut State, off: u64, len: u64) -> Option<&'s [u8]> {
        if !st.mmap_ok {
            return None;
        }
        st.tick += 1;
        let tick = st.tick;
        let fits = |w: &Win| off >= w.start && off + len <= w.start + w.map.len() as u64;
        let idx = match st.wins.iter().position(fits) {
            Some(i) => i,
            None => {
                let start = off & !(WINDOW_BYTES - 1);
                let end = start.saturating_add(WINDOW_BYTES).min(self.file_len);
                if off + len > end {
                    return None;
                }
                let mut opts = memmap2::MmapOptions::new();
                // Populate: one fault-in per window instead of one per 16 pages.
                opts.offset(start).len((end - start) as usize).populate();
                // SAFETY: read-only private mapping of [start, end), inside the file as measured
                // when it was opened. A vmcore file or /proc/vmcore is not truncated while we
                // read it (that would be the only way to get SIGBUS).
                let map = match unsafe { opts.map(&self.file) } {
                    Ok(m) => m,
                    Err(_) => {
                        st.mmap_ok = false;
                        st.wins.clear();
                        return None;
                    }
                };
                let w = Win { start, map, used: tick };
                if st.wins.len() < WINDOWS {
                    st.wins.push(w);
                    st.wins.len() - 1
                } else {
                    let (i, _) = st.wins.iter().enumerate().min_by_key(|(_, w)| w.used)?;
                    st.wins[i] = w;
                    i
                }
            }
        };
        let w = &mut st.wins[idx];
        w.used = tick;
        let s = (off - w.start) as usize;
        Some(&w.map[s..s + len as usize])
    }

    fn read_file(&self, st: &mut State, off: u64, buf: &mut [u8]) -> Result<(), MemError> {
        // Large reads (struct page arrays) of a regular file: one copy by the kernel beats
        // mapping a window and copying out of it.
        let direct = !self.pages.map_runs.load(Ordering::Relaxed) && buf.len() >= PREAD_MIN_BYTES;
        if !direct {
            if let Some(src) = self.window_slice(st, off, buf.len() as u64) {
                buf.copy_from_slice(src);
                return Ok(());
            }
        }
        self.file.read_exact_at(buf, off).map_err(|source| MemError::Io {
            offset: FileOffset(off),
            len: buf.len(),
            source,
        })
    }

    /// The file offset of `[pa, pa+len)` if it lies entirely in one segment's file data.
    fn file_backed(&self, pa: u64, len: u64) -> Option<u64> {
        self.pages.file_offset(PhysAddr(pa), len)
    }
}

impl PhysMemory for MappedElf<'_> {
    fn read_phys(&self, pa: PhysAddr, buf: &mut [u8]) -> Result<(), MemError> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        read_loads(&self.loads, self.file_len, pa, buf, |off, part| self.read_file(&mut st, off, part))
    }

    fn page_size(&self) -> u64 {
        self.core.page_size()
    }

    fn ranges(&self) -> Vec<PhysRange> {
        self.core.ranges()
    }

    fn data_ranges(&self) -> Vec<PhysRange> {
        self.core.data_ranges()
    }

    fn is_present(&self, pfn: Pfn) -> bool {
        self.core.is_present(pfn)
    }
}

impl DumpSource for MappedElf<'_> {
    fn notes_bytes(&self) -> &[u8] {
        self.core.notes_bytes()
    }
    fn vmcoreinfo(&self) -> Option<&VmcoreInfo> {
        self.core.vmcoreinfo()
    }
    fn vmcoreinfo_desc(&self) -> Option<(usize, usize)> {
        DumpSource::vmcoreinfo_desc(self.core)
    }
    fn nr_cpus(&self) -> usize {
        self.core.nr_cpus()
    }
    fn e_machine(&self) -> u16 {
        self.core.ehdr().e_machine
    }
    fn segments(&self) -> Vec<SourceSegment> {
        DumpSource::segments(self.core)
    }
    fn page_reader(&self) -> Option<&dyn PageReader> {
        Some(&self.pages)
    }
    fn read_pages(&self, pa: PhysAddr, buf: &mut [u8]) -> Result<(), MemError> {
        // Page data is read once, in file order: `pread` copies it without setting up and
        // tearing down page-table entries for windows of which only some pages are kept.
        if let Some(off) = self.file_backed(pa.0, buf.len() as u64) {
            if self.file.read_exact_at(buf, off).is_ok() {
                return Ok(());
            }
        }
        self.read_phys(pa, buf)
    }
    fn read_page_unless_zero(&self, pa: PhysAddr, buf: &mut [u8]) -> Result<bool, MemError> {
        if let Some(off) = self.file_backed(pa.0, buf.len() as u64) {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(data) = self.window_slice(&mut st, off, buf.len() as u64) {
                if is_zero_page(data) {
                    return Ok(true);
                }
                buf.copy_from_slice(data);
                return Ok(false);
            }
        }
        self.read_phys(pa, buf)?;
        Ok(is_zero_page(buf))
    }
}
