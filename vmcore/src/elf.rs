//! ELF core reader for vmcore files and `/proc/vmcore` (FORMATS.md §5).
//!
//! Pipeline: ELF64 header -> program headers -> PT_NOTE bytes (kept verbatim, parsed into
//! [`Note`]s: CORE/NT_PRSTATUS per CPU, VMCOREINFO) -> PT_LOAD map (physical address -> file
//! offset). Physical reads go through 4 MiB read-only `mmap` windows; if `mmap` fails (old
//! `/proc/vmcore`) the reader switches to `pread` for good. Bytes past `p_filesz` read as zero.
//!
//! Parsing is hand-written over `#[repr(C)]` record definitions with size asserts rather than
//! goblin: the dump writers need the exact file offsets of the note descs and the raw note
//! bytes, every count must be checked against the file before allocating, and the two records
//! involved (64-byte Ehdr, 56-byte Phdr) are small enough that a dependency buys nothing.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::addr::{FileOffset, Pfn, PhysAddr, VirtAddr};
use crate::memory::{MemError, PhysMemory, PhysRange};
use crate::vmcoreinfo::{VmcoreInfo, VmcoreInfoError};

/// ELF64 file header (on-disk layout, little-endian).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Elf64Ehdr {
    /// Identification bytes.
    pub e_ident: [u8; 16],
    /// Object file type (4 = ET_CORE).
    pub e_type: u16,
    /// Machine (62 = x86_64, 183 = aarch64).
    pub e_machine: u16,
    /// Version.
    pub e_version: u32,
    /// Entry point.
    pub e_entry: u64,
    /// Program header table offset.
    pub e_phoff: u64,
    /// Section header table offset.
    pub e_shoff: u64,
    /// Flags (bit 0: makedumpfile's "incomplete").
    pub e_flags: u32,
    /// Header size.
    pub e_ehsize: u16,
    /// Program header entry size.
    pub e_phentsize: u16,
    /// Program header count (0xffff = PN_XNUM: real count in section 0's sh_info).
    pub e_phnum: u16,
    /// Section header entry size.
    pub e_shentsize: u16,
    /// Section header count.
    pub e_shnum: u16,
    /// Section name string table index.
    pub e_shstrndx: u16,
}
/// Size of [`Elf64Ehdr`] on disk.
pub const SIZEOF_EHDR: usize = 64;
const _: () = assert!(std::mem::size_of::<Elf64Ehdr>() == SIZEOF_EHDR);

/// ELF64 program header (on-disk layout).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Elf64Phdr {
    /// Segment type.
    pub p_type: u32,
    /// Flags.
    pub p_flags: u32,
    /// File offset of the data.
    pub p_offset: u64,
    /// Virtual address.
    pub p_vaddr: u64,
    /// Physical address.
    pub p_paddr: u64,
    /// Bytes in the file.
    pub p_filesz: u64,
    /// Bytes in memory.
    pub p_memsz: u64,
    /// Alignment.
    pub p_align: u64,
}
/// Size of [`Elf64Phdr`] on disk.
pub const SIZEOF_PHDR: usize = 56;
const _: () = assert!(std::mem::size_of::<Elf64Phdr>() == SIZEOF_PHDR);

/// `PT_LOAD`.
pub const PT_LOAD: u32 = 1;
/// `PT_NOTE`.
pub const PT_NOTE: u32 = 4;
/// `ET_CORE`.
pub const ET_CORE: u16 = 4;
/// `EM_X86_64`.
pub const EM_X86_64: u16 = 62;
/// `EM_AARCH64`.
pub const EM_AARCH64: u16 = 183;
/// `NT_PRSTATUS`.
pub const NT_PRSTATUS: u32 = 1;
const PN_XNUM: u16 = 0xffff;

/// Most program headers accepted (a machine with this many memory ranges does not exist).
pub const MAX_PHDRS: usize = 1 << 20;
/// Most bytes of PT_NOTE data accepted (vmcoredd device dumps can be large, but bounded).
pub const MAX_NOTE_BYTES: u64 = 256 << 20;
/// End of the largest physical address space of a supported architecture (52 bits).
pub const MAX_PHYS_END: u64 = 1 << 52;
/// Size of one mmap window.
pub const MMAP_WINDOW: u64 = 4 << 20;

fn u16_at(b: &[u8], off: usize) -> u16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(&b[off..off + 2]);
    u16::from_le_bytes(a)
}
fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(a)
}
fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

impl Elf64Ehdr {
    /// Decode from exactly [`SIZEOF_EHDR`] bytes.
    pub fn from_bytes(b: &[u8; SIZEOF_EHDR]) -> Elf64Ehdr {
        let mut e_ident = [0u8; 16];
        e_ident.copy_from_slice(&b[..16]);
        Elf64Ehdr {
            e_ident,
            e_type: u16_at(b, 16),
            e_machine: u16_at(b, 18),
            e_version: u32_at(b, 20),
            e_entry: u64_at(b, 24),
            e_phoff: u64_at(b, 32),
            e_shoff: u64_at(b, 40),
            e_flags: u32_at(b, 48),
            e_ehsize: u16_at(b, 52),
            e_phentsize: u16_at(b, 54),
            e_phnum: u16_at(b, 56),
            e_shentsize: u16_at(b, 58),
            e_shnum: u16_at(b, 60),
            e_shstrndx: u16_at(b, 62),
        }
    }
}

impl Elf64Phdr {
    /// Decode from exactly [`SIZEOF_PHDR`] bytes.
    pub fn from_bytes(b: &[u8]) -> Elf64Phdr {
        Elf64Phdr {
            p_type: u32_at(b, 0),
            p_flags: u32_at(b, 4),
            p_offset: u64_at(b, 8),
            p_vaddr: u64_at(b, 16),
            p_paddr: u64_at(b, 24),
            p_filesz: u64_at(b, 32),
            p_memsz: u64_at(b, 40),
            p_align: u64_at(b, 48),
        }
    }
}

/// Errors from opening or parsing an ELF vmcore.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    /// open(2) failed.
    #[error("cannot open {path}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A read of the headers failed.
    #[error("cannot read {len} bytes at offset {offset} of {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Where.
        offset: u64,
        /// How much.
        len: u64,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Too short or wrong magic.
    #[error(
        "{path} is not an ELF file (bad magic or shorter than 64 bytes); is it a kdump-compressed or flattened dump?"
    )]
    NotElf {
        /// The file.
        path: PathBuf,
    },
    /// Unsupported ELF flavour.
    #[error("{path}: unsupported ELF: {what}")]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What is unsupported.
        what: String,
    },
    /// A header field is inconsistent with the file.
    #[error("{path}: corrupt ELF header: {what}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// The VMCOREINFO note could not be parsed.
    #[error("{path}: bad VMCOREINFO note")]
    VmcoreInfo {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: VmcoreInfoError,
    },
}

/// One PT_LOAD: a physically contiguous memory range and where its bytes are in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadSegment {
    /// `p_paddr`.
    pub phys_start: PhysAddr,
    /// `p_vaddr` (direct-map or kernel-text address; informational).
    pub virt_start: VirtAddr,
    /// `p_offset`.
    pub file_offset: FileOffset,
    /// `p_filesz`: bytes present in the file.
    pub file_size: u64,
    /// `p_memsz`: bytes of memory described (the rest past `file_size` reads as zero).
    pub mem_size: u64,
}

/// Copy physical bytes `[pa, pa + buf.len())` out of the PT_LOAD segments `loads` of a file of
/// `file_len` bytes: the first segment in file order that holds an address wins (as in
/// makedumpfile), its file-backed part is read with `read(file_offset, part)`, the part past
/// `p_filesz` reads as zeros. Offsets were checked against overflow when `loads` was parsed.
pub(crate) fn read_loads(
    loads: &[LoadSegment],
    file_len: u64,
    pa: PhysAddr,
    buf: &mut [u8],
    mut read: impl FnMut(u64, &mut [u8]) -> Result<(), MemError>,
) -> Result<(), MemError> {
    if pa.0.checked_add(buf.len() as u64).is_none() {
        return Err(MemError::Overflow { pa, len: buf.len() });
    }
    let mut done = 0usize;
    while done < buf.len() {
        let cur = pa.0 + done as u64;
        let Some(seg) = loads.iter().find(|l| cur >= l.phys_start.0 && cur - l.phys_start.0 < l.mem_size) else {
            return Err(MemError::NotPresent { pa: PhysAddr(cur) });
        };
        let rel = cur - seg.phys_start.0;
        let n = ((seg.mem_size - rel) as usize).min(buf.len() - done);
        let part = &mut buf[done..done + n];
        let backed = seg.file_size.saturating_sub(rel).min(n as u64) as usize;
        if backed > 0 {
            let off = seg.file_offset.0 + rel;
            if off.checked_add(backed as u64).map_or(true, |e| e > file_len) {
                return Err(MemError::Truncated { pa: PhysAddr(cur), offset: FileOffset(off) });
            }
            read(off, &mut part[..backed])?;
        }
        part[backed..].fill(0);
        done += n;
    }
    Ok(())
}

impl LoadSegment {
    /// One past the last physical byte (`phys_start + mem_size`, saturating).
    pub fn phys_end(&self) -> PhysAddr {
        PhysAddr(self.phys_start.0.saturating_add(self.mem_size))
    }
}

/// One ELF note found in the PT_NOTE segments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// Name without the trailing NUL (e.g. `b"CORE"`, `b"VMCOREINFO"`).
    pub name: Vec<u8>,
    /// `n_type`.
    pub n_type: u32,
    /// Absolute file offset of the desc.
    pub desc_offset: FileOffset,
    /// Offset of the desc inside [`ElfVmcore::notes_bytes`].
    pub desc_offset_in_notes: usize,
    /// `n_descsz`.
    pub desc_size: usize,
}

/// A PT_NOTE segment's place in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoteSegment {
    /// `p_offset`.
    pub file_offset: FileOffset,
    /// `p_filesz`.
    pub size: u64,
}

struct Window {
    start: u64,
    map: memmap2::Mmap,
}

struct ReadState {
    window: Option<Window>,
    mmap_ok: bool,
}

/// An opened ELF vmcore (a saved file or `/proc/vmcore`).
pub struct ElfVmcore {
    path: PathBuf,
    file: File,
    file_len: u64,
    ehdr: Elf64Ehdr,
    loads: Vec<LoadSegment>,
    note_segments: Vec<NoteSegment>,
    notes_bytes: Vec<u8>,
    notes: Vec<Note>,
    vmcoreinfo: Option<VmcoreInfo>,
    vmcoreinfo_note: Option<usize>,
    page_size: u64,
    state: Mutex<ReadState>,
}

impl std::fmt::Debug for ElfVmcore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElfVmcore")
            .field("path", &self.path)
            .field("file_len", &self.file_len)
            .field("loads", &self.loads.len())
            .field("notes", &self.notes.len())
            .finish()
    }
}

fn align_up(v: u64, a: u64) -> Option<u64> {
    v.checked_add(a - 1).map(|x| x & !(a - 1))
}

/// Walk the notes in `bytes` (one PT_NOTE's data); `base_file`/`base_idx` locate it.
fn parse_notes(bytes: &[u8], base_file: u64, base_idx: usize, out: &mut Vec<Note>) {
    let mut pos = 0usize;
    while pos.checked_add(12).is_some_and(|e| e <= bytes.len()) {
        let namesz = u32_at(bytes, pos) as usize;
        let descsz = u32_at(bytes, pos + 4) as usize;
        let n_type = u32_at(bytes, pos + 8);
        if namesz == 0 {
            break; // the kernel's terminator / padding
        }
        let name_start = pos + 12;
        let Some(name_end) = name_start.checked_add(namesz) else {
            break;
        };
        let Some(desc_start) = align_up(name_end as u64, 4).map(|v| v as usize) else {
            break;
        };
        let Some(desc_end) = desc_start.checked_add(descsz) else {
            break;
        };
        if desc_end > bytes.len() || name_end > bytes.len() {
            break; // truncated note: stop, keep what was parsed
        }
        let mut name = bytes[name_start..name_end].to_vec();
        while name.last() == Some(&0) {
            name.pop();
        }
        out.push(Note {
            name,
            n_type,
            desc_offset: FileOffset(base_file.saturating_add(desc_start as u64)),
            desc_offset_in_notes: base_idx.saturating_add(desc_start),
            desc_size: descsz,
        });
        let Some(next) = align_up(desc_end as u64, 4) else {
            break;
        };
        pos = next as usize;
    }
}

impl ElfVmcore {
    /// Open and parse `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<ElfVmcore, ElfError> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|source| ElfError::Open { path: path.clone(), source })?;
        let file_len = file.metadata().map_err(|source| ElfError::Open { path: path.clone(), source })?.len();
        let read = |off: u64, len: u64| -> Result<Vec<u8>, ElfError> {
            let end = off.checked_add(len);
            if end.map_or(true, |e| e > file_len) {
                return Err(ElfError::Corrupt {
                    path: path.clone(),
                    what: format!("{len} bytes at offset {off:#x} extend past the end of the {file_len}-byte file"),
                });
            }
            let n = usize::try_from(len).map_err(|_| ElfError::Corrupt {
                path: path.clone(),
                what: format!("length {len} does not fit in memory"),
            })?;
            let mut buf = vec![0u8; n];
            file.read_exact_at(&mut buf, off).map_err(|source| ElfError::Read {
                path: path.clone(),
                offset: off,
                len,
                source,
            })?;
            Ok(buf)
        };

        if file_len < SIZEOF_EHDR as u64 {
            return Err(ElfError::NotElf { path });
        }
        let hb = read(0, SIZEOF_EHDR as u64)?;
        let mut harr = [0u8; SIZEOF_EHDR];
        harr.copy_from_slice(&hb);
        let ehdr = Elf64Ehdr::from_bytes(&harr);
        if &ehdr.e_ident[..4] != b"\x7fELF" {
            return Err(ElfError::NotElf { path });
        }
        let unsupported = |what: String| ElfError::Unsupported { path: path.clone(), what };
        let corrupt = |what: String| ElfError::Corrupt { path: path.clone(), what };
        if ehdr.e_ident[4] != 2 {
            return Err(unsupported(format!("ELF class {} (only ELF64 is supported)", ehdr.e_ident[4])));
        }
        if ehdr.e_ident[5] != 1 {
            return Err(unsupported(format!("data encoding {} (only little-endian is supported)", ehdr.e_ident[5])));
        }
        if ehdr.e_type != ET_CORE {
            return Err(unsupported(format!("e_type {} (a vmcore is ET_CORE = 4)", ehdr.e_type)));
        }
        if ehdr.e_phentsize as usize != SIZEOF_PHDR {
            return Err(corrupt(format!("e_phentsize {} (expected {SIZEOF_PHDR})", ehdr.e_phentsize)));
        }
        let mut phnum = ehdr.e_phnum as u64;
        if ehdr.e_phnum == PN_XNUM {
            // The real count is in section header 0's sh_info (offset 44 of a 64-byte Shdr).
            let sh = read(ehdr.e_shoff, 64)?;
            phnum = u32_at(&sh, 44) as u64;
        }
        if phnum as usize > MAX_PHDRS {
            return Err(corrupt(format!("{phnum} program headers (limit {MAX_PHDRS})")));
        }
        let ph_bytes = phnum
            .checked_mul(SIZEOF_PHDR as u64)
            .ok_or_else(|| corrupt("program header table size overflows".into()))?;
        let table = read(ehdr.e_phoff, ph_bytes)?;

        let mut loads = Vec::new();
        let mut note_segments = Vec::new();
        let mut note_total = 0u64;
        for chunk in table.chunks_exact(SIZEOF_PHDR) {
            let ph = Elf64Phdr::from_bytes(chunk);
            match ph.p_type {
                PT_LOAD => {
                    if ph.p_filesz > ph.p_memsz {
                        return Err(corrupt(format!(
                            "PT_LOAD at paddr {:#x}: p_filesz {:#x} > p_memsz {:#x}",
                            ph.p_paddr, ph.p_filesz, ph.p_memsz
                        )));
                    }
                    if ph.p_paddr.checked_add(ph.p_memsz).map_or(true, |e| e > MAX_PHYS_END)
                        || ph.p_offset.checked_add(ph.p_filesz).is_none()
                    {
                        return Err(corrupt(format!(
                            "PT_LOAD at paddr {:#x} size {:#x} extends past the 52-bit physical address space",
                            ph.p_paddr, ph.p_memsz
                        )));
                    }
                    loads.push(LoadSegment {
                        phys_start: PhysAddr(ph.p_paddr),
                        virt_start: VirtAddr(ph.p_vaddr),
                        file_offset: FileOffset(ph.p_offset),
                        file_size: ph.p_filesz,
                        mem_size: ph.p_memsz,
                    });
                }
                PT_NOTE => {
                    note_total = note_total.saturating_add(ph.p_filesz);
                    if note_total > MAX_NOTE_BYTES {
                        return Err(corrupt(format!("PT_NOTE data totals more than {MAX_NOTE_BYTES} bytes")));
                    }
                    note_segments.push(NoteSegment { file_offset: FileOffset(ph.p_offset), size: ph.p_filesz });
                }
                _ => {}
            }
        }
        if loads.is_empty() {
            return Err(corrupt("no PT_LOAD segment: the dump holds no memory".into()));
        }

        let mut notes_bytes = Vec::new();
        let mut notes = Vec::new();
        for seg in &note_segments {
            let data = read(seg.file_offset.0, seg.size)?;
            parse_notes(&data, seg.file_offset.0, notes_bytes.len(), &mut notes);
            notes_bytes.extend_from_slice(&data);
        }
        let vmcoreinfo_note = notes.iter().position(|n| n.name == b"VMCOREINFO");
        let vmcoreinfo = match vmcoreinfo_note {
            Some(i) => {
                let n = &notes[i];
                let desc = &notes_bytes[n.desc_offset_in_notes..n.desc_offset_in_notes + n.desc_size];
                Some(VmcoreInfo::parse(desc).map_err(|source| ElfError::VmcoreInfo { path: path.clone(), source })?)
            }
            None => None,
        };
        let page_size = vmcoreinfo
            .as_ref()
            .and_then(|v| v.page_size())
            .filter(|p| p.is_power_of_two() && (512..=(1 << 20)).contains(p))
            .unwrap_or(4096);

        Ok(ElfVmcore {
            path,
            file,
            file_len,
            ehdr,
            loads,
            note_segments,
            notes_bytes,
            notes,
            vmcoreinfo,
            vmcoreinfo_note,
            page_size,
            state: Mutex::new(ReadState { window: None, mmap_ok: true }),
        })
    }

    /// The path this dump was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The ELF header.
    pub fn ehdr(&self) -> &Elf64Ehdr {
        &self.ehdr
    }

    /// Size of the file in bytes (as reported by fstat).
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// The PT_LOAD segments in file order.
    pub fn loads(&self) -> &[LoadSegment] {
        &self.loads
    }

    /// The PT_NOTE segments in file order.
    pub fn note_segments(&self) -> &[NoteSegment] {
        &self.note_segments
    }

    /// The raw bytes of every PT_NOTE segment, concatenated in file order.
    pub fn notes_bytes(&self) -> &[u8] {
        &self.notes_bytes
    }

    /// Every note parsed from the PT_NOTE segments.
    pub fn notes(&self) -> &[Note] {
        &self.notes
    }

    /// The VMCOREINFO note (name "VMCOREINFO"), if present.
    pub fn vmcoreinfo_note(&self) -> Option<&Note> {
        self.vmcoreinfo_note.and_then(|i| self.notes.get(i))
    }

    /// The parsed VMCOREINFO, if the dump has the note.
    pub fn vmcoreinfo(&self) -> Option<&VmcoreInfo> {
        self.vmcoreinfo.as_ref()
    }

    /// Number of CORE/NT_PRSTATUS notes (one per CPU that was online at the crash).
    pub fn nr_cpus(&self) -> usize {
        self.notes.iter().filter(|n| n.name == b"CORE" && n.n_type == NT_PRSTATUS).count()
    }

    /// makedumpfile's max_mapnr: pfn of the highest PT_LOAD end, rounded up to a page.
    pub fn max_pfn(&self) -> Pfn {
        let max = self.loads.iter().map(|l| l.phys_end()).max().unwrap_or(PhysAddr(0));
        Pfn::from_phys_roundup(max, self.page_shift())
    }

    /// Number of PT_LOADs whose file data extends past the end of the file.
    pub fn truncated_segments(&self) -> usize {
        self.loads.iter().filter(|l| l.file_offset.0.saturating_add(l.file_size) > self.file_len).count()
    }

    /// Index of the segment holding `pa`: the first match in file order wins, like
    /// makedumpfile's paddr_to_offset (a kexec kernel-text PT_LOAD may overlap RAM).
    fn find_segment(&self, pa: u64) -> Option<usize> {
        self.loads.iter().position(|l| pa >= l.phys_start.0 && pa - l.phys_start.0 < l.mem_size)
    }

    /// Read file bytes `[off, off+buf.len())`, which the caller checked lie inside the file.
    fn read_file(&self, st: &mut ReadState, off: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let len = buf.len() as u64;
        if st.mmap_ok {
            let in_window = |w: &Window| off >= w.start && off + len <= w.start + w.map.len() as u64;
            if !st.window.as_ref().is_some_and(in_window) {
                st.window = None;
                let start = off & !(MMAP_WINDOW - 1);
                let end = start.saturating_add(MMAP_WINDOW).min(self.file_len);
                if off + len <= end {
                    let mut opts = memmap2::MmapOptions::new();
                    opts.offset(start).len((end - start) as usize);
                    // SAFETY: the mapping is read-only and private; [start, end) lies inside the
                    // file as measured at open time. The only way this becomes unsound is the
                    // file being truncated by another process while mapped (then SIGBUS), which
                    // a vmcore file or /proc/vmcore does not do.
                    match unsafe { opts.map(&self.file) } {
                        Ok(map) => st.window = Some(Window { start, map }),
                        Err(_) => st.mmap_ok = false,
                    }
                }
            }
            if let Some(w) = st.window.as_ref().filter(|w| in_window(w)) {
                let s = (off - w.start) as usize;
                buf.copy_from_slice(&w.map[s..s + buf.len()]);
                return Ok(());
            }
        }
        self.file.read_exact_at(buf, off).map_err(|source| MemError::Io {
            offset: FileOffset(off),
            len: buf.len(),
            source,
        })
    }

    /// Turn off mmap windows (reads use pread only). For tests and `--non-mmap`.
    pub fn disable_mmap(&self) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.mmap_ok = false;
        st.window = None;
    }

    /// True while mmap windows are in use (false after a failed mmap or [`Self::disable_mmap`]).
    pub fn mmap_enabled(&self) -> bool {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).mmap_ok
    }
}

impl PhysMemory for ElfVmcore {
    fn read_phys(&self, pa: PhysAddr, buf: &mut [u8]) -> Result<(), MemError> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        read_loads(&self.loads, self.file_len, pa, buf, |off, part| self.read_file(&mut st, off, part))
    }

    fn page_size(&self) -> u64 {
        self.page_size
    }

    fn ranges(&self) -> Vec<PhysRange> {
        self.loads.iter().map(|l| PhysRange { start: l.phys_start, end: l.phys_end() }).collect()
    }

    fn data_ranges(&self) -> Vec<PhysRange> {
        self.loads
            .iter()
            .map(|l| PhysRange { start: l.phys_start, end: PhysAddr(l.phys_start.0.saturating_add(l.file_size)) })
            .collect()
    }

    fn is_present(&self, pfn: Pfn) -> bool {
        let Some(pa) = pfn.to_phys(self.page_shift()) else {
            return false;
        };
        self.find_segment(pa.0).is_some()
    }
}
