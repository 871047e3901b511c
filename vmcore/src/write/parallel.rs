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
use super::{is_zero_page, WriteError, BATCH_PAGES};

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

/// A batch of pages and, once processed, how each was stored.
pub struct Batch {
    /// Page contents, `npages × page size` bytes used.
    pub input: Vec<u8>,
    /// Pages in `input`.
    pub npages: usize,
    /// Per page: already known to be all zero (set by the producer; its slot is unused).
    pub zero: Vec<bool>,
    /// Stored bytes of the non-zero pages, back to back.
    pub out: Vec<u8>,
    /// One entry per page.
    pub results: Vec<PageResult>,
    seq: u64,
}

impl Batch {
    fn new(page_size: usize) -> Batch {
        Batch {
            input: vec![0; page_size * BATCH_PAGES],
            npages: 0,
            zero: Vec::with_capacity(BATCH_PAGES),
            out: Vec::with_capacity(page_size * BATCH_PAGES + 4096),
            results: Vec::with_capacity(BATCH_PAGES),
            seq: 0,
        }
    }
}

fn process(b: &mut Batch, c: &mut PageCompressor, ps: usize, zero_check: bool) {
    b.out.clear();
    b.results.clear();
    for i in 0..b.npages {
        let page = &b.input[i * ps..(i + 1) * ps];
        if b.zero.get(i) == Some(&true) || (zero_check && is_zero_page(page)) {
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
pub fn run<P, C>(
    threads: usize,
    method: Compression,
    page_size: usize,
    zero_check: bool,
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
            b.npages = 0;
            b.zero.clear();
            if !produce(&mut b)? {
                return Ok(());
            }
            process(&mut b, &mut c, page_size, zero_check);
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
                process(&mut b, &mut c, page_size, zero_check);
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
                    b.npages = 0;
                    b.zero.clear();
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
