//! ELF writer with makedumpfile `-E` semantics (FORMATS.md §3).
//!
//! Pass 1 classifies windows of pfns (reading kept pages for zero detection when dump level
//! bit 1 is set) and runs one small state machine per source PT_LOAD: a run of fewer than
//! [`PFN_EXCLUDED`] excluded pages stays in the segment with its original contents; a longer
//! run, or one with a page whose contents the source does not hold (a dump filtered before),
//! ends the segment (its `p_memsz` covers the run, `p_filesz` stops before it) and a new
//! PT_LOAD starts at the next dumpable page. Pass 2 writes the headers, the notes and each
//! segment's file-backed bytes, packed with no alignment. The output is byte-identical to
//! makedumpfile's but for one case: where makedumpfile gives an empty first PT_LOAD offset 0,
//! which crash cannot open, ours is the end of the notes. Memory is bounded by the window and
//! the list of output segments.

use super::{
    classify_window, is_zero_page, put, DumpSource, FilterOptions, FilterReport, PosWrite, SourceSegment, WriteError,
    WINDOW_PFNS,
};
use crate::addr::{Pfn, PhysAddr};
use crate::classify::{ClassCounts, Classifier, ClassifyOptions, PageClass};

/// Excluded runs at least this long (in pages) split a segment.
pub const PFN_EXCLUDED: u64 = 256;
const EHDR_SIZE: u64 = 64;
const PHDR_SIZE: u64 = 56;
/// Copy chunk for segment data.
const COPY_CHUNK: usize = 1 << 20;

/// One output PT_LOAD.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutSegment {
    /// `p_paddr`.
    pub paddr: u64,
    /// `p_vaddr`.
    pub vaddr: u64,
    /// `p_memsz`.
    pub memsz: u64,
    /// `p_filesz`.
    pub filesz: u64,
    /// The last piece of its source segment (not ended by a long excluded run).
    pub last: bool,
}

/// Per-source-segment layout state.
struct SegState {
    src: SourceSegment,
    seg_start: u64,
    seg_vaddr: u64,
    file_end: u64,
    excl_run: u64,
    /// The current excluded run has a page without data in the source.
    excl_missing: bool,
    out: Vec<OutSegment>,
}

impl SegState {
    /// Lay out the page spanning `[s, e)`: `dumpable`, or else whether the source holds
    /// its contents (`has_data`).
    fn span(&mut self, s: u64, e: u64, dumpable: bool, has_data: bool) {
        if !dumpable {
            self.excl_run += 1;
            self.excl_missing |= !has_data;
            return;
        }
        if self.excl_run >= PFN_EXCLUDED || self.excl_missing {
            let memsz = s - self.seg_start;
            self.out.push(OutSegment {
                paddr: self.seg_start,
                vaddr: self.seg_vaddr,
                memsz,
                filesz: self.file_end - self.seg_start,
                last: false,
            });
            // A source without virtual addresses (a kdump-compressed dump) gives 0 throughout.
            if self.src.virt_start != 0 {
                self.seg_vaddr = self.seg_vaddr.wrapping_add(memsz);
            }
            self.seg_start = s;
        }
        self.file_end = e;
        self.excl_run = 0;
        self.excl_missing = false;
    }

    fn close(&mut self) {
        let end = self.src.phys_start + self.src.mem_size;
        self.out.push(OutSegment {
            paddr: self.seg_start,
            vaddr: self.seg_vaddr,
            memsz: end - self.seg_start,
            filesz: self.file_end - self.seg_start,
            last: true,
        });
    }
}

/// `e_flags` bit of an ELF dump whose writer has not finished (makedumpfile's
/// `DUMP_ELF_INCOMPLETE`, which crash reads too).
pub const ELF_FLAG_INCOMPLETE: u32 = 0x1;

fn ehdr(machine: u16, phnum: u16, e_flags: u32) -> [u8; 64] {
    let mut h = [0u8; 64];
    h[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
    h[16..18].copy_from_slice(&4u16.to_le_bytes()); // ET_CORE
    h[18..20].copy_from_slice(&machine.to_le_bytes());
    h[20..24].copy_from_slice(&1u32.to_le_bytes());
    h[32..40].copy_from_slice(&EHDR_SIZE.to_le_bytes()); // e_phoff
    h[48..52].copy_from_slice(&e_flags.to_le_bytes());
    h[52..54].copy_from_slice(&(EHDR_SIZE as u16).to_le_bytes());
    h[54..56].copy_from_slice(&(PHDR_SIZE as u16).to_le_bytes());
    h[56..58].copy_from_slice(&phnum.to_le_bytes());
    // e_shentsize, e_shnum, e_shstrndx stay 0: no section headers (like /proc/vmcore).
    h
}

#[allow(clippy::too_many_arguments)]
fn phdr(out: &mut Vec<u8>, ty: u32, flags: u32, off: u64, va: u64, pa: u64, filesz: u64, memsz: u64) {
    out.extend_from_slice(&ty.to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    for v in [off, va, pa, filesz, memsz, 0u64] {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// Write an ELF dump of `src` (see the module doc).
pub fn write_elf<S: DumpSource + ?Sized>(
    src: &S,
    out: &mut dyn PosWrite,
    opts: &FilterOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<FilterReport, WriteError> {
    let dl = opts.dump_level;
    let ps = src.page_size();
    let shift = src.page_shift();
    let mut cls =
        Classifier::new(src, src.vmcoreinfo(), ClassifyOptions { dump_level: dl, percpu_free: opts.percpu_free });
    let max_mapnr = cls.max_pfn().0;
    let mut counts = ClassCounts { total: max_mapnr, memhole: cls.memhole_pages(), ..ClassCounts::default() };
    let mut segs: Vec<SegState> = src
        .segments()
        .into_iter()
        .filter(|s| s.mem_size > 0)
        .map(|s| SegState {
            src: s,
            seg_start: s.phys_start,
            seg_vaddr: s.virt_start,
            file_end: s.phys_start,
            excl_run: 0,
            excl_missing: false,
            out: Vec::new(),
        })
        .collect();
    // The highest pfn any segment touches (segments may reach past max_mapnr).
    let seg_end_pfn = segs.iter().map(|s| (s.src.phys_start + s.src.mem_size).div_ceil(ps)).max().unwrap_or(0);
    let walk_end = seg_end_pfn.max(max_mapnr);
    let total_work = walk_end.saturating_mul(2);

    let pass1_start = std::time::Instant::now();
    // Pass 1: classes, zero pages, segment layout.
    let mut classes = Vec::new();
    let mut page = vec![0u8; ps as usize];
    let mut written = 0u64;
    let mut s = 0u64;
    while s < walk_end {
        let e = s.saturating_add(WINDOW_PFNS).min(walk_end);
        classify_window(&mut cls, src, s, e, &mut classes);
        if dl & 1 != 0 {
            for (i, c) in classes.iter_mut().enumerate() {
                if *c != PageClass::Kept {
                    continue;
                }
                let Some(pa) = Pfn(s + i as u64).to_phys(shift) else {
                    continue;
                };
                if src.read_phys(pa, &mut page).is_ok() && is_zero_page(&page) {
                    *c = PageClass::Zero;
                }
            }
        }
        for &c in &classes {
            counts.add(c);
            written += u64::from(c == PageClass::Kept);
        }
        for st in &mut segs {
            let a = st.src.phys_start;
            let b = a + st.src.mem_size;
            let first = (a / ps).max(s);
            let last = b.div_ceil(ps).min(e);
            for pfn in first..last {
                let span_s = (pfn * ps).max(a);
                let span_e = ((pfn + 1) * ps).min(b);
                let kept = classes[(pfn - s) as usize] == PageClass::Kept;
                st.span(span_s, span_e, kept, kept || src.has_page_data(Pfn(pfn)));
            }
        }
        progress(e, total_work);
        s = e;
    }
    let mut outsegs = Vec::new();
    for st in &mut segs {
        st.close();
        outsegs.append(&mut st.out);
    }

    // Layout and headers.
    let phnum = 1 + outsegs.len();
    if phnum >= 0xFFFF {
        return Err(WriteError::Unsupported(format!(
            "ELF output with {phnum} program headers (PN_XNUM) is not yet supported; use the kdump format"
        )));
    }
    let notes = src.notes_bytes();
    let notes_off = EHDR_SIZE + PHDR_SIZE * phnum as u64;
    let mut data_off = notes_off + notes.len() as u64;
    let mut table = Vec::with_capacity(phnum * PHDR_SIZE as usize);
    phdr(&mut table, 4, 0, notes_off, 0, 0, notes.len() as u64, notes.len() as u64);
    let mut offsets = Vec::with_capacity(outsegs.len());
    for sg in &outsegs {
        // Offsets as makedumpfile writes them: an empty piece ended by a long excluded run
        // gets 0, the last piece of a source segment the current offset even when empty. And
        // never 0 for the first PT_LOAD: crash takes its offset for the size of the headers
        // and notes, and cannot open a dump where it is 0 (a vmcore's first segment, kernel
        // text, is never empty; a dump filtered before may start with an empty piece).
        let off = if sg.filesz == 0 && !sg.last && !offsets.is_empty() { 0 } else { data_off };
        phdr(&mut table, 1, 7, off, sg.vaddr, sg.paddr, sg.filesz, sg.memsz);
        offsets.push(data_off);
        data_off = data_off.checked_add(sg.filesz).ok_or_else(|| WriteError::Layout("ELF data offset".into()))?;
    }
    let rewrite = out.can_rewrite();
    // Incomplete until the end (a stream cannot be rewritten, so it never says so).
    let e_flags = if rewrite { ELF_FLAG_INCOMPLETE } else { 0 };
    put(out, "the ELF header", 0, &ehdr(src.e_machine(), phnum as u16, e_flags))?;
    put(out, "the program headers", EHDR_SIZE, &table)?;
    put(out, "the notes", notes_off, notes)?;

    let classify_time = pass1_start.elapsed();
    // Pass 2: segment data.
    let mut buf = vec![0u8; COPY_CHUNK];
    let mut unreadable = 0u64;
    let mut done_bytes = 0u64;
    let total_bytes: u64 = outsegs.iter().map(|s| s.filesz).sum::<u64>().max(1);
    for (sg, &off) in outsegs.iter().zip(&offsets) {
        let mut pos = 0u64;
        while pos < sg.filesz {
            let n = (sg.filesz - pos).min(COPY_CHUNK as u64) as usize;
            let chunk = &mut buf[..n];
            let pa = sg.paddr + pos;
            if src.read_phys(PhysAddr(pa), chunk).is_err() {
                // Page by page; what cannot be read (excluded in a filtered source) is zero.
                let mut q = 0usize;
                while q < n {
                    let a = pa + q as u64;
                    let m = ((ps - (a % ps)) as usize).min(n - q);
                    if src.read_phys(PhysAddr(a), &mut chunk[q..q + m]).is_err() {
                        chunk[q..q + m].fill(0);
                        unreadable += 1;
                    }
                    q += m;
                }
            }
            put(out, "segment data", off + pos, chunk)?;
            pos += n as u64;
            done_bytes += n as u64;
            let frac = u128::from(walk_end) * u128::from(done_bytes) / u128::from(total_bytes);
            progress(walk_end.saturating_add(frac as u64), total_work);
        }
    }
    if rewrite {
        put(out, "the ELF header", 0, &ehdr(src.e_machine(), phnum as u16, 0))?;
    }
    progress(total_work, total_work);
    Ok(FilterReport {
        counts,
        max_pfn: max_mapnr,
        written_pages: written,
        compressed_pages: 0,
        raw_pages: written,
        shared_pages: 0,
        // ELF output has no descriptors to share.
        dedup: false,
        unreadable_pages: unreadable,
        output_bytes: data_off,
        degraded: cls.degraded().cloned(),
        classify_time,
        dump_level: opts.dump_level,
        input_dump_level: None,
    })
}
