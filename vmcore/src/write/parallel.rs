//! Batch compression, inline or on worker threads, with results delivered in input order.
//!
//! The calling thread produces batches (reads pages) and consumes results (writes them);
//! workers only zero-check and compress. Every batch carries a sequence number and results
//! are reordered, so the output is byte-identical for any number of threads. At most
//! `2 × threads` batches are in flight, which bounds memory.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use super::codec::{Compression, PageCompressor};
use super::{is_zero_page, PageReader, WriteError, BATCH_PAGES};

/// How one page was stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageResult {
    /// All zero (uses the shared zero page; nothing in `Batch::out`).
    Zero,
    /// Stored uncompressed (page size bytes in `Batch::out`).
    Raw,
    /// Stored compressed (`len` bytes in `Batch::out`).
    Compressed(u32),
}

/// What the producer of a batch knows about a page being all zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZeroHint {
    /// Not known: zero-checked by the worker when zero pages are wanted.
    Unknown,
    /// All zero (its slot in `Batch::input` is unused).
    Zero,
    /// Stored as data even if it is all zero (e.g. an unreadable page written as zeros).
    Data,
}

/// A batch of pages and, once processed, how each was stored.
pub struct Batch {
    /// Page contents, `npages × page size` bytes used, from `input_start` on (see
    /// [`Batch::input_and_hints_mut`]).
    input: Vec<u8>,
    /// Offset of the first page in `input`: page data starts 4 KiB-aligned, because the
    /// kernel copies file data into an aligned buffer markedly faster (`pread` of 1 MiB into a
    /// buffer 16 bytes past a page boundary, malloc's usual placement, took 1.7x as long here).
    input_start: usize,
    /// Pages in `input`.
    pub npages: usize,
    /// Per page: what the producer knows about it being all zero (a known-zero page's slot
    /// is unused).
    pub zero: Vec<ZeroHint>,
    /// Runs of pages the worker reads itself (with the [`PageReader`] given to [`run`]) before
    /// processing the batch.
    pub reads: Vec<PendingRead>,
    /// Pages of `reads` that could not be read (written as zeros), set by the worker.
    pub unreadable: u64,
    /// Stored bytes of the non-zero pages, back to back, from `out_start` on (see
    /// [`Batch::out`]; aligned like the input, for the kernel's copy on write).
    out: Vec<u8>,
    out_start: usize,
    /// One entry per page.
    pub results: Vec<PageResult>,
    seq: u64,
}

impl Batch {
    fn new(page_size: usize) -> Batch {
        let input = vec![0; page_size * BATCH_PAGES + INPUT_ALIGN];
        let input_start = aligned_start(input.as_ptr());
        // Room for every page stored raw plus a codec's worst-case bound for the last one, so
        // the vector never reallocates (which would lose the alignment).
        let mut out: Vec<u8> = Vec::with_capacity(page_size * (BATCH_PAGES + 2) + INPUT_ALIGN + 4096);
        let out_start = aligned_start(out.as_ptr());
        out.resize(out_start, 0);
        Batch {
            input,
            input_start,
            out,
            out_start,
            npages: 0,
            zero: Vec::with_capacity(BATCH_PAGES),
            reads: Vec::new(),
            unreadable: 0,
            results: Vec::with_capacity(BATCH_PAGES),
            seq: 0,
        }
    }
}

/// A run of pages to read into a batch: `npages` pages at file offset `off`, into the batch's
/// slots `first..first + npages`.
#[derive(Clone, Copy, Debug)]
pub struct PendingRead {
    /// File offset.
    pub off: u64,
    /// First slot in the batch.
    pub first: usize,
    /// Pages.
    pub npages: usize,
}

/// Alignment of [`Batch`] page data.
const INPUT_ALIGN: usize = 4096;

/// Offset from `buf` (the start of a vector's allocation, with `INPUT_ALIGN` bytes to spare)
/// of its first [`INPUT_ALIGN`]-aligned byte.
fn aligned_start(buf: *const u8) -> usize {
    buf.align_offset(INPUT_ALIGN).min(INPUT_ALIGN)
}

impl Batch {
    /// Stored bytes of the non-zero pages, back to back.
    pub fn out(&self) -> &[u8] {
        &self.out[self.out_start..]
    }

    /// The page data area, writable, and the per-page zero hints.
    pub fn input_and_hints_mut(&mut self) -> (&mut [u8], &mut Vec<ZeroHint>) {
        (&mut self.input[self.input_start..], &mut self.zero)
    }

    /// Empty the batch for reuse.
    pub fn reset(&mut self) {
        self.npages = 0;
        self.zero.clear();
        self.reads.clear();
        self.unreadable = 0;
    }
}

/// Perform the batch's pending reads; pages that cannot be read become zeros stored as data
/// and are counted in `Batch::unreadable`, like the producer's own reads.
fn read_pending(b: &mut Batch, reader: Option<&dyn PageReader>, ps: usize, zero_check: bool) {
    let mut zeros = [false; BATCH_PAGES];
    for i in 0..b.reads.len() {
        let rd = b.reads[i];
        let start = b.input_start;
        let Some(dst) = b.input[start..].get_mut(rd.first * ps..(rd.first + rd.npages) * ps) else {
            continue;
        };
        let ok = match reader {
            Some(r) if zero_check && rd.npages <= BATCH_PAGES => {
                let z = &mut zeros[..rd.npages];
                z.fill(false);
                let ok = r.read_pages_at(rd.off, dst, ps, z).is_ok();
                if ok {
                    for (k, &zero) in z.iter().enumerate() {
                        if zero {
                            if let Some(h) = b.zero.get_mut(rd.first + k) {
                                *h = ZeroHint::Zero;
                            }
                        }
                    }
                }
                ok
            }
            Some(r) => r.read_at(rd.off, dst).is_ok(),
            None => false,
        };
        if ok {
            continue;
        }
        for k in 0..rd.npages {
            let page = &mut dst[k * ps..(k + 1) * ps];
            let off = rd.off + (k * ps) as u64;
            if !reader.is_some_and(|r| r.read_at(off, page).is_ok()) {
                page.fill(0);
                b.unreadable += 1;
                if let Some(h) = b.zero.get_mut(rd.first + k) {
                    *h = ZeroHint::Data;
                }
            }
        }
    }
}

fn process(
    b: &mut Batch,
    c: &mut PageCompressor,
    ps: usize,
    zero_check: bool,
    reader: Option<&dyn PageReader>,
) {
    read_pending(b, reader, ps, zero_check);
    b.out.truncate(b.out_start);
    b.results.clear();
    for i in 0..b.npages {
        let at = b.input_start + i * ps;
        let page = &b.input[at..at + ps];
        let zero = match b.zero.get(i) {
            Some(ZeroHint::Zero) => true,
            Some(ZeroHint::Data) => false,
            Some(ZeroHint::Unknown) | None => zero_check && is_zero_page(page),
        };
        if zero {
            b.results.push(PageResult::Zero);
            continue;
        }
        match c.compress(page, &mut b.out) {
            Some(len) => b.results.push(PageResult::Compressed(len as u32)),
            None => {
                b.out.extend_from_slice(page);
                b.results.push(PageResult::Raw);
            }
        }
    }
}

/// Run the pipeline: `produce` fills a batch (returns false when there is nothing more; it
/// may pre-mark zero pages in `Batch::zero`, else workers zero-check when `zero_check`),
/// `consume` receives processed batches in production order. Both run on the calling thread.
/// `reader` performs the batches' [`Batch::reads`] (on the workers).
#[allow(clippy::too_many_arguments)]
pub fn run<P, C>(
    threads: usize,
    method: Compression,
    page_size: usize,
    zero_check: bool,
    reader: Option<&dyn PageReader>,
    mut produce: P,
    mut consume: C,
) -> Result<(), WriteError>
where
    P: FnMut(&mut Batch) -> Result<bool, WriteError>,
    C: FnMut(&Batch) -> Result<(), WriteError>,
{
    if threads <= 1 {
        let mut c = PageCompressor::new(method)?;
        let mut b = Batch::new(page_size);
        loop {
            b.reset();
            if !produce(&mut b)? {
                return Ok(());
            }
            process(&mut b, &mut c, page_size, zero_check, reader);
            consume(&b)?;
        }
    }
    let mut comps = Vec::with_capacity(threads);
    for _ in 0..threads {
        comps.push(PageCompressor::new(method)?);
    }
    std::thread::scope(|scope| {
        let (job_tx, job_rx) = mpsc::channel::<Batch>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (done_tx, done_rx) = mpsc::channel::<Batch>();
        for mut c in comps {
            let rx = Arc::clone(&job_rx);
            let tx = done_tx.clone();
            scope.spawn(move || loop {
                let job = {
                    let guard = rx.lock().unwrap_or_else(|e| e.into_inner());
                    guard.recv()
                };
                let Ok(mut b) = job else { return };
                process(&mut b, &mut c, page_size, zero_check, reader);
                if tx.send(b).is_err() {
                    return;
                }
            });
        }
        drop(done_tx);
        let max_in_flight = 2 * threads;
        let mut free: Vec<Batch> = Vec::new();
        let mut pending: BTreeMap<u64, Batch> = BTreeMap::new();
        let (mut next_seq, mut next_out, mut in_flight) = (0u64, 0u64, 0usize);
        let mut produced_all = false;
        let result = (|| -> Result<(), WriteError> {
            loop {
                while !produced_all && in_flight < max_in_flight {
                    let mut b = free.pop().unwrap_or_else(|| Batch::new(page_size));
                    b.reset();
                    if produce(&mut b)? {
                        b.seq = next_seq;
                        next_seq += 1;
                        in_flight += 1;
                        if job_tx.send(b).is_err() {
                            return Err(WriteError::Unsupported(
                                "compression worker threads exited".into(),
                            ));
                        }
                    } else {
                        produced_all = true;
                        free.push(b);
                    }
                }
                if in_flight == 0 {
                    return Ok(());
                }
                let Ok(b) = done_rx.recv() else {
                    return Err(WriteError::Unsupported(
                        "compression worker threads exited".into(),
                    ));
                };
                pending.insert(b.seq, b);
                while let Some(b) = pending.remove(&next_out) {
                    in_flight -= 1;
                    next_out += 1;
                    consume(&b)?;
                    free.push(b);
                }
            }
        })();
        drop(job_tx);
        result
    })
}
