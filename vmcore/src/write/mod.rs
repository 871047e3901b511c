//! Dump writers: kdump-compressed, ELF and flattened output (makedumpfile-compatible).
//!
//! Pipeline of [`filter`] (source -> classify -> compress -> sink):
//!
//! 1. **source**: a [`DumpSource`] — an ELF vmcore ([`crate::elf::ElfVmcore`]) or a
//!    kdump-compressed file ([`crate::diskdump::DiskDump`], also read from a flattened file).
//! 2. **pass 1 (plan)**: the [`crate::classify::Classifier`] classifies pfns window by window
//!    (64 Ki pfns). The kdump writer writes both bitmaps of each window right away (bitmap 2 of
//!    a pfn range depends only on that range) and counts dumpable pages; the ELF writer records
//!    its segment layout. Only bitmap 2 (one bit per pfn, at most 8 MiB) is kept in memory.
//! 3. **pass 2 (data)**: bitmap 2 of pass 1 (kept in memory up to 8 MiB; beyond that read
//!    back from the output file 64 KiB at a time, or, on a stream, a fresh classifier repeats
//!    the same windows, deterministically) gives the runs of kept pages,
//!    read into batches of [`BATCH_PAGES`] pages, zero-checked and compressed ([`parallel`]:
//!    inline, or by `num_threads` workers with results reassembled in order).
//! 4. **sink**: every write is positioned ([`PosWrite`]): the descriptor table and the data
//!    area of the kdump format are two streams at two offsets (the data start is known from
//!    pass 1's count, like makedumpfile's cyclic mode). A regular file gets `pwrite`s; the
//!    flattened format ([`flat::FlatWriter`]) turns each positioned write into a record on any
//!    `Write` (stdout).
//!
//! Incomplete dumps: a file dump is first written with the INCOMPLETE flag set (kdump status
//! 0x8, ELF `e_flags` bit 0) and the header is rewritten without it only after the last byte
//! landed, so a failed or interrupted dump is always marked. What was written stays readable:
//! descriptors are written only after the data they point to.

pub mod codec;
pub mod dedup;
pub mod elf_out;
pub mod flat;
mod hot;
pub mod kdump;
pub mod lzo;
pub mod mapped;
pub mod parallel;

pub(crate) use hot::is_zero_page;

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::addr::{Pfn, PhysAddr};
use crate::classify::{ClassCounts, Classifier, Degraded, PageClass};
use crate::diskdump::{DiskDump, DiskDumpError};
use crate::elf::{ElfError, ElfVmcore};
use crate::memory::{MemError, PhysMemory};
use crate::vmcoreinfo::VmcoreInfo;

pub use codec::Compression;

/// Pages per compression batch (1 MiB of 4 KiB pages).
pub const BATCH_PAGES: usize = 256;
/// Pfns per classification window (a multiple of 8, so bitmap windows are whole bytes).
pub const WINDOW_PFNS: u64 = 1 << 16;
/// Data buffered before a positioned write.
pub const FLUSH_BYTES: usize = 4 << 20;

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DumpFormat {
    /// kdump-compressed ("KDUMP   ", header version 6).
    Kdump,
    /// ELF (makedumpfile `-E`).
    Elf,
}

/// What to write and how (makedumpfile's flags).
#[derive(Clone, Copy, Debug)]
pub struct FilterOptions {
    /// `-d`: bit 1 zero, 2 cache, 4 cache private, 8 user, 16 free.
    pub dump_level: u8,
    /// `-c`/`-l`/`-p`/`-z` (ignored for ELF output).
    pub compression: Compression,
    /// `-E` or not.
    pub format: DumpFormat,
    /// `-F`: write the flattened format (any `Write`, e.g. stdout).
    pub flattened: bool,
    /// `--num-threads`: threads that compress, the calling thread included (0 or 1: only the
    /// calling thread; N: N - 1 workers beside it).
    pub num_threads: usize,
    /// Store a page identical to an earlier one as a second descriptor of the earlier copy
    /// (kdump-compressed output from an ELF source; see [`dedup`]). The command line's default
    /// is [`dedup::on_by_default`] of the dump level and the codec.
    pub dedup: bool,
    /// With bit 16 of the dump level, leave out the free pages of the per-CPU lists too
    /// ([`PageClass::FreePercpu`](crate::classify::PageClass::FreePercpu)); off: makedumpfile's
    /// page selection.
    pub percpu_free: bool,
}

impl Default for FilterOptions {
    fn default() -> Self {
        FilterOptions {
            dump_level: 31,
            compression: Compression::Lzo,
            format: DumpFormat::Kdump,
            flattened: false,
            num_threads: 0,
            dedup: dedup::on_by_default(31, Compression::Lzo),
            percpu_free: true,
        }
    }
}

/// Most compression threads [`default_threads`] picks: each one adds two batches (about
/// 4 MiB) and a codec context to the writer's memory.
pub const MAX_DEFAULT_THREADS: usize = 4;

/// The number of compression threads when none is given: one per available CPU, at most
/// [`MAX_DEFAULT_THREADS`]; one (no worker threads) in a capture kernel booted with
/// `nr_cpus=1`. zstd, the default codec, costs about three times LZO's time per page, so it
/// matches makedumpfile `-l` only when it can use more than one core (see BENCHMARKS.md).
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(MAX_DEFAULT_THREADS)
}

/// What [`filter`] did.
#[derive(Clone, Debug, Default)]
pub struct FilterReport {
    /// Page counts per class, makedumpfile's report semantics (zero pages counted only when
    /// dump level bit 1 is set).
    pub counts: ClassCounts,
    /// max_mapnr of the output.
    pub max_pfn: u64,
    /// Pages with data in the output (kdump: descriptors, incl. shared zero pages).
    pub written_pages: u64,
    /// Pages stored compressed.
    pub compressed_pages: u64,
    /// Pages stored raw.
    pub raw_pages: u64,
    /// Pages whose descriptor shares an identical earlier page's stored data (not counted
    /// in `compressed_pages` or `raw_pages`).
    pub shared_pages: u64,
    /// Whether identical pages were looked for: asked for, kdump-compressed output and an
    /// input whose pages can be re-read to confirm a match (an ELF vmcore).
    pub dedup: bool,
    /// Pages that could not be read from the source (written as zeros).
    pub unreadable_pages: u64,
    /// Size of the output in bytes (for flattened output: the size of the rearranged file).
    pub output_bytes: u64,
    /// Why classification fell back to presence/zero pages only, if it did.
    pub degraded: Option<Degraded>,
    /// Time spent classifying pages and writing the bitmaps (kdump pass 1; for ELF output,
    /// the layout pass).
    pub classify_time: std::time::Duration,
    /// The dump level the output was written at: the one asked for, combined with the level
    /// of an input filtered before ([`DumpSource::earlier_dump_level`]).
    pub dump_level: u8,
    /// The dump level an input filtered before was written at.
    pub input_dump_level: Option<u8>,
}

/// Errors of the writers.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The input could not be opened as any known dump format.
    #[error("cannot open input {path}")]
    OpenElf {
        /// Input path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: ElfError,
    },
    /// The input kdump-compressed (or flattened) file is unusable.
    #[error("cannot open input {path}")]
    OpenKdump {
        /// Input path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: DiskDumpError,
    },
    /// The input could not be read to identify its format.
    #[error("cannot read input {path}")]
    ReadInput {
        /// Input path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The output file could not be created.
    #[error("cannot create output {path}")]
    Create {
        /// Output path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A write failed (ENOSPC, EIO, broken pipe). The dump is marked incomplete where the
    /// format allows it.
    #[error("writing {len} bytes of {what} at output offset {offset:#x} failed; the dump is incomplete")]
    Write {
        /// Which part of the dump.
        what: &'static str,
        /// Offset in the (unflattened) dump.
        offset: u64,
        /// Length.
        len: usize,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Bitmap 2, written in pass 1, could not be read back from the output in pass 2.
    #[error("reading back {len} bytes of bitmap 2 at output offset {offset:#x} failed; the dump is incomplete")]
    ReadBack {
        /// Offset in the dump.
        offset: u64,
        /// Length.
        len: usize,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A codec failed to initialise.
    #[error("compression setup failed")]
    Codec(#[from] codec::CodecError),
    /// The dump is too large for the format (offsets overflow).
    #[error("the dump layout overflows: {0}")]
    Layout(String),
    /// The options cannot be honoured.
    #[error("unsupported option: {0}")]
    Unsupported(String),
    /// The two classification passes disagree (the source changed while being read).
    #[error("the source changed during the dump: pass 1 counted {first} dumpable pages, pass 2 {second}")]
    Inconsistent {
        /// Count of pass 1.
        first: u64,
        /// Count of pass 2.
        second: u64,
    },
}

/// A dump the writers can read: physical memory plus the metadata copied into the output.
pub trait DumpSource: PhysMemory {
    /// The ELF notes (CORE/NT_PRSTATUS, VMCOREINFO, ...) exactly as in the source's PT_NOTE.
    fn notes_bytes(&self) -> &[u8];
    /// Parsed VMCOREINFO.
    fn vmcoreinfo(&self) -> Option<&VmcoreInfo>;
    /// (offset inside [`DumpSource::notes_bytes`], size) of the VMCOREINFO note's desc.
    fn vmcoreinfo_desc(&self) -> Option<(usize, usize)>;
    /// Number of CORE/NT_PRSTATUS notes.
    fn nr_cpus(&self) -> usize;
    /// ELF machine number of the dumped kernel (62 x86_64, 183 aarch64).
    fn e_machine(&self) -> u16;
    /// The memory segments (ELF PT_LOADs) in source order. The default derives them from
    /// [`PhysMemory::ranges`] and [`PhysMemory::data_ranges`], at their direct-map addresses
    /// as in `/proc/vmcore` ([`crate::KernelMemory::direct_map_base`]), or at virtual address 0
    /// when the base cannot be found. (Readers such as drgn take `p_vaddr` at its word: 0 would
    /// place every segment over user addresses.)
    fn segments(&self) -> Vec<SourceSegment> {
        let base = self
            .vmcoreinfo()
            .and_then(|vi| crate::KernelMemory::new(self, vi).ok().and_then(|k| k.direct_map_base(vi)));
        self.ranges()
            .iter()
            .zip(self.data_ranges())
            .map(|(r, d)| SourceSegment {
                phys_start: r.start.0,
                virt_start: base.map_or(0, |b| b.wrapping_add(r.start.0)),
                mem_size: r.end.0.saturating_sub(r.start.0),
                file_size: d.end.0.saturating_sub(d.start.0),
            })
            .collect()
    }
    /// Read one page at `pa` into `buf` unless it is all zero: `Ok(true)` means zero (and
    /// `buf` is unspecified). Sources that can look at their data in place override this to
    /// skip copying zero pages.
    fn read_page_unless_zero(&self, pa: PhysAddr, buf: &mut [u8]) -> Result<bool, MemError> {
        self.read_phys(pa, buf)?;
        Ok(is_zero_page(buf))
    }
    /// Read a run of whole pages at `pa` into `buf` for the page data of a dump. The default
    /// is [`PhysMemory::read_phys`]; sources that read page contents faster by copying them
    /// than by mapping them (a file read once, sequentially) override this.
    fn read_pages(&self, pa: PhysAddr, buf: &mut [u8]) -> Result<(), MemError> {
        self.read_phys(pa, buf)
    }
    /// A thread-safe reader of page data by file offset, if the source has one: the kdump
    /// writer then leaves the reading of page runs to its compression workers.
    fn page_reader(&self) -> Option<&dyn PageReader> {
        None
    }
    /// Turn pages of the window starting at `start` whose data the source does not hold
    /// (excluded by an earlier filter) from [`PageClass::Kept`] into [`PageClass::NoData`].
    fn mark_missing(&self, _start: Pfn, _classes: &mut [PageClass]) {}
    /// Whether the source holds the data of `pfn` at all (a dump filtered earlier does not
    /// hold the pages it excluded). The ELF writer keeps short excluded runs inside a segment
    /// with their contents (makedumpfile `-E`) only where the source has them.
    fn has_page_data(&self, _pfn: Pfn) -> bool {
        true
    }
    /// The dump level a dump filtered before was written at: the pages it left out cannot
    /// come back, so a new dump of it is written at this level or higher (makedumpfile's
    /// rule). `None` for a vmcore.
    fn earlier_dump_level(&self) -> Option<u8> {
        None
    }
}

/// Page data read by file offset from any thread (see [`DumpSource::page_reader`]).
pub trait PageReader: Sync {
    /// The file offset of `[pa, pa+len)` if it lies entirely in one segment's file data.
    fn file_offset(&self, pa: PhysAddr, len: u64) -> Option<u64>;
    /// Read exactly `buf.len()` bytes at file offset `off`.
    fn read_at(&self, off: u64, buf: &mut [u8]) -> std::io::Result<()>;
    /// Like [`PageReader::read_at`] for whole pages of `ps` bytes, except that all-zero pages
    /// may be left unwritten: `zero[i]` is set to true for each such page (the slot is then
    /// unspecified). The default reads everything.
    fn read_pages_at(&self, off: u64, buf: &mut [u8], _ps: usize, _zero: &mut [bool]) -> std::io::Result<()> {
        self.read_at(off, buf)
    }
}

/// One memory segment of a source (an ELF PT_LOAD).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceSegment {
    /// `p_paddr`.
    pub phys_start: u64,
    /// `p_vaddr`.
    pub virt_start: u64,
    /// `p_memsz`.
    pub mem_size: u64,
    /// `p_filesz`.
    pub file_size: u64,
}

impl DumpSource for ElfVmcore {
    fn segments(&self) -> Vec<SourceSegment> {
        self.loads()
            .iter()
            .map(|l| SourceSegment {
                phys_start: l.phys_start.0,
                virt_start: l.virt_start.0,
                mem_size: l.mem_size,
                file_size: l.file_size,
            })
            .collect()
    }
    fn notes_bytes(&self) -> &[u8] {
        ElfVmcore::notes_bytes(self)
    }
    fn vmcoreinfo(&self) -> Option<&VmcoreInfo> {
        ElfVmcore::vmcoreinfo(self)
    }
    fn vmcoreinfo_desc(&self) -> Option<(usize, usize)> {
        self.vmcoreinfo_note().map(|n| (n.desc_offset_in_notes, n.desc_size))
    }
    fn nr_cpus(&self) -> usize {
        ElfVmcore::nr_cpus(self)
    }
    fn e_machine(&self) -> u16 {
        self.ehdr().e_machine
    }
}

/// Positioned writes into the output dump.
pub trait PosWrite {
    /// Write all of `data` at `offset` of the dump.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> std::io::Result<()>;
    /// True if earlier regions can be rewritten (false for streams: the flattened format).
    fn can_rewrite(&self) -> bool {
        true
    }
    /// Called once after the last write (flattened: end marker and flush).
    fn finish(&mut self) -> std::io::Result<()> {
        Ok(())
    }
    /// Read back `buf.len()` bytes written earlier at `offset` (pass 2 of a dump too large to
    /// keep bitmap 2 in memory reads it from the output instead of classifying again).
    /// `None`: this sink cannot be read (a stream).
    fn read_back(&mut self, offset: u64, buf: &mut [u8]) -> Option<std::io::Result<()>> {
        let _ = (offset, buf);
        None
    }
}

impl PosWrite for std::fs::File {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(self, data, offset)
    }

    fn read_back(&mut self, offset: u64, buf: &mut [u8]) -> Option<std::io::Result<()>> {
        // A file opened write-only fails here (EBADF); callers then do without.
        Some(std::os::unix::fs::FileExt::read_exact_at(self, buf, offset))
    }
}

/// Write with error context.
pub(crate) fn put(out: &mut dyn PosWrite, what: &'static str, offset: u64, data: &[u8]) -> Result<(), WriteError> {
    if data.is_empty() {
        return Ok(());
    }
    out.write_at(offset, data).map_err(|source| WriteError::Write { what, offset, len: data.len(), source })
}

/// Classify one window and apply the source's own exclusions.
pub(crate) fn classify_window<S: DumpSource + ?Sized>(
    cls: &mut Classifier<'_, S>,
    src: &S,
    start: u64,
    end: u64,
    out: &mut Vec<PageClass>,
) {
    out.clear();
    out.resize((end - start) as usize, PageClass::Hole);
    // The length matches by construction, so this cannot fail.
    let _ = cls.classify_range(Pfn(start), Pfn(end), out);
    src.mark_missing(Pfn(start), out);
}

/// Where [`filter`] writes.
pub enum Output<'a> {
    /// A file (created or truncated).
    Path(&'a Path),
    /// A stream (stdout); needs [`FilterOptions::flattened`].
    Stream(&'a mut dyn Write),
}

/// An opened input dump of any supported format.
pub enum Input {
    /// ELF vmcore or /proc/vmcore.
    Elf(Box<ElfVmcore>),
    /// kdump-compressed (possibly read from a flattened file).
    Kdump(Box<DiskDump>),
}

impl Input {
    /// Open `path`, detecting ELF, kdump-compressed and flattened files by their signature.
    pub fn open(path: &Path) -> Result<Input, WriteError> {
        let mut sig = [0u8; 16];
        let n = {
            use std::io::Read;
            let mut f = std::fs::File::open(path)
                .map_err(|source| WriteError::ReadInput { path: path.to_path_buf(), source })?;
            let mut n = 0;
            while n < sig.len() {
                match f.read(&mut sig[n..]) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(source) => return Err(WriteError::ReadInput { path: path.to_path_buf(), source }),
                }
            }
            n
        };
        let sig = &sig[..n];
        if sig.starts_with(b"KDUMP   ") || sig.starts_with(b"DISKDUMP") || sig.starts_with(crate::flat::FLAT_SIGNATURE)
        {
            DiskDump::open(path)
                .map(|d| Input::Kdump(Box::new(d)))
                .map_err(|source| WriteError::OpenKdump { path: path.to_path_buf(), source })
        } else {
            ElfVmcore::open(path)
                .map(|e| Input::Elf(Box::new(e)))
                .map_err(|source| WriteError::OpenElf { path: path.to_path_buf(), source })
        }
    }

    /// The source as a trait object.
    pub fn source(&self) -> &dyn DumpSource {
        match self {
            Input::Elf(e) => e.as_ref(),
            Input::Kdump(k) => k.as_ref(),
        }
    }
}

/// Filter and write `input` to `output` with makedumpfile semantics (`-d`, `-c/-l/-p/-z`,
/// `-E`, `-F`, `--num-threads`). `progress(done, total)` is called after each window of
/// pfns (both passes count). On a write error the dump is left marked incomplete (file
/// output) and the error says where it stopped.
pub fn filter(
    input: &Path,
    output: Output<'_>,
    opts: &FilterOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<FilterReport, WriteError> {
    let inp = Input::open(input)?;
    // ELF input: read through an LRU of mmap windows (see `mapped`), else the plain reader.
    let mapped = match &inp {
        Input::Elf(e) => mapped::MappedElf::new(e).ok(),
        Input::Kdump(_) => None,
    };
    let src: &dyn DumpSource = match &mapped {
        Some(m) => {
            m.map_zero_runs(opts.num_threads <= 1);
            m
        }
        None => inp.source(),
    };
    match output {
        Output::Path(p) => {
            // A dump holds the crashed machine's secrets: owner-only, like makedumpfile.
            use std::os::unix::fs::OpenOptionsExt;
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(p)
                .map_err(|source| WriteError::Create { path: p.to_path_buf(), source })?;
            if opts.flattened {
                let mut w = flat::FlatWriter::new(std::io::BufWriter::with_capacity(1 << 20, file));
                write_dump(src, &mut w, opts, progress)
            } else {
                let mut f = file;
                write_dump(src, &mut f, opts, progress)
            }
        }
        Output::Stream(s) => {
            if !opts.flattened {
                return Err(WriteError::Unsupported("writing to a stream needs the flattened format (-F)".into()));
            }
            let mut w = flat::FlatWriter::new(std::io::BufWriter::with_capacity(1 << 20, s));
            write_dump(src, &mut w, opts, progress)
        }
    }
}

/// Write `src` in the format of `opts` through any positioned sink.
pub fn write_dump<S: DumpSource + ?Sized>(
    src: &S,
    out: &mut dyn PosWrite,
    opts: &FilterOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<FilterReport, WriteError> {
    let input_dump_level = src.earlier_dump_level();
    let opts = &FilterOptions { dump_level: opts.dump_level | input_dump_level.unwrap_or(0), ..*opts };
    let mut r = match opts.format {
        DumpFormat::Kdump => kdump::write_kdump(src, out, opts, progress),
        DumpFormat::Elf => elf_out::write_elf(src, out, opts, progress),
    }?;
    r.input_dump_level = input_dump_level;
    out.finish().map_err(|source| WriteError::Write {
        what: "end of stream",
        offset: r.output_bytes,
        len: 0,
        source,
    })?;
    Ok(r)
}

#[cfg(test)]
mod tests;
