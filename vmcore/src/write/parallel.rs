//! Batch compression, inline or on worker threads, with results delivered in input order.
//!
//! The calling thread produces batches (reads pages) and consumes results (writes them), and
//! compresses a queued batch itself when it would otherwise wait: `threads` threads compress,
//! the calling one and `threads - 1` workers, which only read, zero-check and compress. Every
//! batch carries a sequence number and results are reordered, so the output is byte-identical
//! for any number of threads. At most `2 × threads` batches are in flight, which bounds memory.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use super::codec::{Compression, PageCompressor};
use super::dedup::{page_hash, AbortOnUnwind, Mark, Resolver};
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
    /// The same bytes as page `ordinal` (descriptor index), the page of dedup slot `slot`:
    /// its descriptor is repeated (nothing in `Batch::out`).
    Dup { slot: u32, ordinal: u64 },
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
    /// One entry per page when deduplicating (else empty): [`Mark::Occupy`] tells the writer
    /// to record the page's descriptor for its slot; other marks are for the worker only.
    pub marks: Vec<Mark>,
    /// Per page, for deduplication: hash, source file offset, whether it may be shared.
    hashes: Vec<u64>,
    offs: Vec<u64>,
    eligible: Vec<bool>,
    seq: u64,
}

/// A page-data buffer for a whole batch and the offset of its first aligned byte.
fn page_buffer(page_size: usize) -> (Vec<u8>, usize) {
    let input = vec![0; page_size * BATCH_PAGES + INPUT_ALIGN];
    let start = aligned_start(input.as_ptr());
    (input, start)
}

impl Batch {
    fn new(page_size: usize) -> Batch {
        let (input, input_start) = page_buffer(page_size);
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
            marks: Vec::new(),
            hashes: Vec::new(),
            offs: Vec::new(),
            eligible: Vec::new(),
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
        self.marks.clear();
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

/// Pages a thread re-read to confirm duplicates, kept for the next duplicate of the same
/// page: direct-mapped by page offset, [`ORIGINALS`] pages (2 MiB of 4 KiB pages), allocated
/// on first use. Duplicates come in groups (a 2 GiB capture's `-d 1` dump has 118,537 of them
/// with only 29,752 distinct pages, most copied 129 or 261 times), so most confirmations
/// compare with a page in memory instead of reading it again.
struct Originals {
    offs: Vec<u64>,
    data: Vec<u8>,
}

/// Pages in [`Originals`].
const ORIGINALS: usize = 512;

impl Originals {
    fn new() -> Originals {
        Originals { offs: Vec::new(), data: Vec::new() }
    }

    /// Whether the page at file offset `off` equals `page`, reading it with `r` unless it is
    /// cached.
    fn same(&mut self, r: &dyn PageReader, off: u64, page: &[u8]) -> bool {
        let ps = page.len();
        if ps == 0 {
            return false;
        }
        if self.data.len() != ORIGINALS * ps {
            self.offs = vec![u64::MAX; ORIGINALS];
            self.data = vec![0; ORIGINALS * ps];
        }
        let i = (off / ps as u64) as usize % ORIGINALS;
        let Some(slot) = self.data.get_mut(i * ps..(i + 1) * ps) else { return false };
        if self.offs[i] != off {
            self.offs[i] = u64::MAX;
            if r.read_at(off, slot).is_err() {
                return false;
            }
            self.offs[i] = off;
        }
        slot == page
    }
}

/// A thread's own page-data buffer. Batches that the thread reads itself are read into it
/// instead of into the batch's buffer, which has been through other threads' caches since the
/// batch was last used: a `pread` into a buffer that is still in this CPU's cache, and the
/// zero check and compression after it, run markedly faster (see BENCHMARKS.md).
struct Hot {
    input: Vec<u8>,
    input_start: usize,
    originals: Originals,
}

impl Hot {
    fn new(page_size: usize) -> Hot {
        let (input, input_start) = page_buffer(page_size);
        Hot { input, input_start, originals: Originals::new() }
    }
}

/// [`process`] `b` with its page data in `hot` when the thread reads all of it itself.
fn process_hot(
    b: &mut Batch,
    hot: &mut Hot,
    c: &mut PageCompressor,
    ps: usize,
    zero_check: bool,
    reader: Option<&dyn PageReader>,
    dedup: Option<&Resolver>,
) {
    let all_read = reader.is_some() && b.reads.iter().map(|r| r.npages).sum::<usize>() == b.npages;
    if all_read {
        std::mem::swap(&mut b.input, &mut hot.input);
        std::mem::swap(&mut b.input_start, &mut hot.input_start);
        process(b, c, ps, zero_check, reader, dedup, &mut hot.originals);
        std::mem::swap(&mut b.input, &mut hot.input);
        std::mem::swap(&mut b.input_start, &mut hot.input_start);
    } else {
        process(b, c, ps, zero_check, reader, dedup, &mut hot.originals);
    }
}

fn process(
    b: &mut Batch,
    c: &mut PageCompressor,
    ps: usize,
    zero_check: bool,
    reader: Option<&dyn PageReader>,
    dedup: Option<&Resolver>,
    originals: &mut Originals,
) {
    read_pending(b, reader, ps, zero_check);
    b.out.truncate(b.out_start);
    b.results.clear();
    // Zero pages first (a result of their own); what is left is stored, or shared.
    b.eligible.clear();
    for i in 0..b.npages {
        let at = b.input_start + i * ps;
        let page = &b.input[at..at + ps];
        let (zero, data_hint) = match b.zero.get(i) {
            Some(ZeroHint::Zero) => (true, false),
            Some(ZeroHint::Data) => (false, true),
            Some(ZeroHint::Unknown) | None => (zero_check && is_zero_page(page), false),
        };
        b.results.push(if zero { PageResult::Zero } else { PageResult::Raw });
        // Unreadable pages (zeros stored as data) are never shared.
        b.eligible.push(!zero && !data_hint);
    }
    let first = match (dedup, reader) {
        (Some(r), Some(_)) => resolve(b, r, ps),
        _ => None,
    };
    if first.is_none() {
        b.marks.clear();
    }
    for i in 0..b.npages {
        if b.results[i] == PageResult::Zero {
            continue;
        }
        let at = b.input_start + i * ps;
        if let (Some(first), Some(&Mark::Candidate { slot, ordinal, off })) = (first, b.marks.get(i)) {
            let in_batch = ordinal.checked_sub(first).filter(|&j| j < i as u64).map(|j| j as usize);
            if same_as_earlier(b, ps, i, in_batch, off, reader, originals) {
                b.results[i] = PageResult::Dup { slot, ordinal };
                continue;
            }
            b.marks[i] = Mark::None;
        }
        let page = &b.input[at..at + ps];
        b.results[i] = match c.compress(page, &mut b.out) {
            Some(len) => PageResult::Compressed(len as u32),
            None => {
                b.out.extend_from_slice(page);
                PageResult::Raw
            }
        };
    }
}

/// Hash the batch's eligible pages and resolve them against the index (in batch order).
/// Returns the descriptor index of the batch's first page, or `None` if deduplication was
/// given up (every page is then stored).
fn resolve(b: &mut Batch, r: &Resolver, ps: usize) -> Option<u64> {
    b.offs.clear();
    b.offs.resize(b.npages, u64::MAX);
    for rd in &b.reads {
        for k in 0..rd.npages {
            if let Some(o) = b.offs.get_mut(rd.first + k) {
                *o = rd.off + (k * ps) as u64;
            }
        }
    }
    b.hashes.clear();
    for i in 0..b.npages {
        if b.offs[i] == u64::MAX {
            b.eligible[i] = false;
        }
        let h = if b.eligible[i] {
            let at = b.input_start + i * ps;
            page_hash(&b.input[at..at + ps])
        } else {
            0
        };
        b.hashes.push(h);
    }
    r.resolve(b.seq, b.npages, &b.hashes, &b.offs, &b.eligible, &mut b.marks)
}

/// Whether page `i` of `b` has the same bytes as the earlier page at source offset `off`:
/// page `in_batch` of this batch is compared in place, any other through `originals`.
fn same_as_earlier(
    b: &Batch,
    ps: usize,
    i: usize,
    in_batch: Option<usize>,
    off: u64,
    reader: Option<&dyn PageReader>,
    originals: &mut Originals,
) -> bool {
    let at = b.input_start + i * ps;
    if let Some(j) = in_batch {
        let bt = b.input_start + j * ps;
        return b.input[bt..bt + ps] == b.input[at..at + ps];
    }
    let Some(r) = reader else { return false };
    originals.same(r, off, &b.input[at..at + ps])
}

/// Run the pipeline: `produce` fills a batch (returns false when there is nothing more; it
/// may pre-mark zero pages in `Batch::zero`, else workers zero-check when `zero_check`),
/// `consume` receives processed batches in production order. Both run on the calling thread.
/// `reader` performs the batches' [`Batch::reads`] (on the thread that compresses the batch).
/// With `dedup` and a `reader`, pages identical to an earlier one are not stored again
/// ([`PageResult::Dup`]; see [`super::dedup`]).
#[allow(clippy::too_many_arguments)]
pub fn run<P, C>(
    threads: usize,
    method: Compression,
    page_size: usize,
    zero_check: bool,
    dedup: bool,
    reader: Option<&dyn PageReader>,
    mut produce: P,
    mut consume: C,
) -> Result<(), WriteError>
where
    P: FnMut(&mut Batch) -> Result<bool, WriteError>,
    C: FnMut(&Batch) -> Result<(), WriteError>,
{
    let resolver = (dedup && reader.is_some()).then(Resolver::new);
    let resolver = resolver.as_ref();
    if threads <= 1 {
        let mut c = PageCompressor::new(method)?;
        let mut b = Batch::new(page_size);
        let mut originals = Originals::new();
        let mut seq = 0;
        loop {
            b.reset();
            if !produce(&mut b)? {
                return Ok(());
            }
            b.seq = seq;
            seq += 1;
            process(&mut b, &mut c, page_size, zero_check, reader, resolver, &mut originals);
            consume(&b)?;
        }
    }
    // `threads` threads compress: `threads - 1` workers and this thread, which produces and
    // consumes batches and, when it has nothing else to do, compresses a queued batch itself
    // (more threads than CPUs made the producer wait for a CPU while workers starved for
    // batches).
    let mut main_comp = PageCompressor::new(method)?;
    let mut comps = Vec::with_capacity(threads - 1);
    for _ in 1..threads {
        comps.push(PageCompressor::new(method)?);
    }
    std::thread::scope(|scope| {
        let (job_tx, job_rx) = mpsc::channel::<Batch>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (done_tx, done_rx) = mpsc::channel::<Batch>();
        for mut c in comps {
            let rx = Arc::clone(&job_rx);
            let tx = done_tx.clone();
            scope.spawn(move || {
                let _abort = resolver.map(AbortOnUnwind);
                let mut hot = Hot::new(page_size);
                loop {
                    let job = {
                        let guard = rx.lock().unwrap_or_else(|e| e.into_inner());
                        guard.recv()
                    };
                    let Ok(mut b) = job else { return };
                    process_hot(&mut b, &mut hot, &mut c, page_size, zero_check, reader, resolver);
                    if tx.send(b).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        // This thread compresses too: if it panics there, workers waiting for its batch's
        // turn at the resolver must not wait forever.
        let _abort = resolver.map(AbortOnUnwind);
        let max_in_flight = 2 * threads;
        let mut main_hot = Hot::new(page_size);
        let mut free: Vec<Batch> = Vec::new();
        let mut pending: BTreeMap<u64, Batch> = BTreeMap::new();
        let (mut next_seq, mut next_out, mut in_flight) = (0u64, 0u64, 0usize);
        let mut produced_all = false;
        let exited = || WriteError::Unsupported("compression worker threads exited".into());
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
                            return Err(exited());
                        }
                    } else {
                        produced_all = true;
                        free.push(b);
                    }
                }
                if in_flight == 0 {
                    return Ok(());
                }
                let mut ready = false;
                while let Ok(b) = done_rx.try_recv() {
                    pending.insert(b.seq, b);
                    ready = true;
                }
                if !ready {
                    // Nothing finished: compress the oldest queued batch here. A worker
                    // blocked on the queue holds its lock, and then nothing is queued. Taking
                    // the oldest keeps the dedup resolver's order: every earlier batch is
                    // already on a worker.
                    let job = match job_rx.try_lock() {
                        Ok(q) => q.try_recv().ok(),
                        Err(_) => None,
                    };
                    match job {
                        Some(mut b) => {
                            process_hot(&mut b, &mut main_hot, &mut main_comp, page_size, zero_check, reader, resolver);
                            pending.insert(b.seq, b);
                        }
                        None => {
                            let b = done_rx.recv().map_err(|_| exited())?;
                            pending.insert(b.seq, b);
                        }
                    }
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Pages whose bytes are their page number; counts reads; offsets past `end` fail.
    struct Counting {
        reads: AtomicUsize,
        end: u64,
    }

    impl PageReader for Counting {
        fn file_offset(&self, _pa: crate::PhysAddr, _len: u64) -> Option<u64> {
            None
        }

        fn read_at(&self, off: u64, buf: &mut [u8]) -> std::io::Result<()> {
            self.reads.fetch_add(1, Ordering::Relaxed);
            if off >= self.end {
                return Err(std::io::Error::other("past the end"));
            }
            buf.fill((off / 4096) as u8);
            Ok(())
        }
    }

    #[test]
    fn originals_are_read_once_and_compared_in_memory() {
        let r = Counting { reads: AtomicUsize::new(0), end: 4096 * 4096 };
        let mut o = Originals::new();
        let page = |n: u8| vec![n; 4096];
        assert!(o.same(&r, 4096 * 7, &page(7)));
        assert!(o.same(&r, 4096 * 7, &page(7)));
        assert!(!o.same(&r, 4096 * 7, &page(8)), "a cached page still compares its bytes");
        assert_eq!(r.reads.load(Ordering::Relaxed), 1);
        // Another page of the same slot replaces it; the first is read again after that.
        let other = 4096 * (7 + ORIGINALS as u64);
        assert!(o.same(&r, other, &page(other.div_euclid(4096) as u8)));
        assert!(o.same(&r, 4096 * 7, &page(7)));
        assert_eq!(r.reads.load(Ordering::Relaxed), 3);
        // A failed read confirms nothing and leaves nothing cached.
        let bad = 4096 * 4096 + 4096 * 7;
        assert!(!o.same(&r, bad, &page(0)));
        assert!(!o.same(&r, bad, &page(0)));
        assert_eq!(r.reads.load(Ordering::Relaxed), 5);
        // No page size, no answer (and no division by it).
        assert!(!o.same(&r, 0, &[]));
    }
}
