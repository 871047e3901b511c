//! Identical pages stored once (kdump-compressed output).
//!
//! A page descriptor is an offset and a size into the data area, and nothing in the format
//! asks offsets to be distinct: makedumpfile itself points every zero page at one shared copy.
//! The writer does the same for any page whose contents equal a page stored earlier: its
//! descriptor repeats the earlier one and no data is written (or compressed) for it. A 2 GiB
//! capture keeps whole runs of identical `struct page` arrays (free memory) at `-d 31`, and at
//! `-d 1` several copies of the capture kernel and initramfs files (page cache, the kexec
//! load buffers) that no codec shrinks.
//!
//! The index is a fixed table of [`SLOTS`] entries (hash, source offset, descriptor index), so
//! memory does not grow with the vmcore. The table is four-way set-associative: a hash picks a
//! set of four slots, which hold the four pages stored last whose hashes picked it (a new page
//! replaces the one stored first). Against one slot per hash this finds 0.4% more duplicates
//! at `-d 1` on real captures and makes those dumps 1.6-2.5% smaller (they are page-cache
//! copies no codec shrinks), at the same speed; two ways gave two thirds of that. Duplicates
//! far apart in the dump can still be missed (they are then stored again, as without
//! deduplication). A hash match is only a candidate: the two pages are compared byte for byte
//! (the earlier one re-read from the source) before a descriptor is shared, so a hash
//! collision — accidental or crafted in a user page — cannot put wrong data in the dump.
//!
//! Determinism: batches are resolved against the table strictly in production order (a
//! worker waits for the batches before its own; they are already being processed), so the
//! output is byte-identical for any number of threads.

use std::sync::{Condvar, Mutex, MutexGuard};

/// Whether deduplication is on by default at `dump_level` with `compression`.
///
/// - When the dump keeps any page cache, user or free pages (dump level bits 2, 4, 8 or 16
///   clear): that is where copies are, files in the page cache and stale copies of them in
///   free pages, often incompressible (at `-d 1`, 38% of a 2 GiB capture's dump).
/// - With zstd (the default codec) at every level: it costs several microseconds per page,
///   so a page not compressed pays for hashing many. At `-d 31` the kernel pages left have
///   few duplicates on some captures and many on others: of three captures, one dump came
///   out 21% smaller at the same time, two 0.6% smaller in 1.02x (one thread) and 1.05x
///   (two threads) the time. A dump written to a disk rather than a tmpfs gains more from
///   its size than it loses in CPU time.
/// - Otherwise (`-d 30`, `-d 31` with LZO, zlib, snappy or none) off: hashing every page
///   costs LZO 4-8% more time, and makedumpfile `-l`'s speed is what kdump-utils' default
///   line is about.
///
/// See BENCHMARKS.md.
pub fn on_by_default(dump_level: u8, compression: super::Compression) -> bool {
    dump_level & 0b1_1110 != 0b1_1110 || compression == super::Compression::Zstd
}

/// log2 of the table's slots.
pub const SLOTS_LOG2: u32 = 16;
/// Slots of the index (each 24 bytes on the resolver's side and 24 on the writer's).
pub const SLOTS: usize = 1 << SLOTS_LOG2;

/// The page hash the index is keyed by (in `hot.rs`, compiled for AVX2 too).
pub use super::hot::page_hash;

/// Slots a hash may occupy: the table is set-associative, each hash's set of WAYS adjacent
/// slots keeps the pages stored last whose hashes picked it.
pub const WAYS: usize = 4;

/// The first slot of a hash's set.
pub fn set_of(hash: u64) -> u32 {
    (hash >> (64 - SLOTS_LOG2 + WAYS.trailing_zeros())) as u32 * WAYS as u32
}

/// What the resolver decided for one page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    /// Not a candidate (zero, unreadable, no source offset) or not eligible: stored normally.
    None,
    /// Stored normally, and now the slot's page: the writer records its descriptor.
    Occupy(u32),
    /// The slot's page `ordinal` (descriptor index), read from source offset `off`, has the
    /// same hash: stored as a reference to it if the bytes compare equal.
    Candidate { slot: u32, ordinal: u64, off: u64 },
}

#[derive(Clone, Copy, Default)]
struct Entry {
    hash: u64,
    /// Descriptor index + 1 (0: empty).
    ordinal1: u64,
    /// Source file offset of the page.
    off: u64,
}

/// The resolver's table: which page each slot holds, by hash.
struct Table {
    slots: Vec<Entry>,
    /// Sequence number of the next batch to resolve.
    next_seq: u64,
    /// Descriptor index of the next batch's first page.
    next_ordinal: u64,
    /// A worker died before resolving its batch: the others stop waiting.
    aborted: bool,
}

/// The shared index and the turn of the batches.
pub struct Resolver {
    table: Mutex<Table>,
    turn: Condvar,
    /// Tests: every page hashes alike (all candidates, verification decides).
    collide: bool,
}

#[cfg(test)]
thread_local! {
    /// Tests: resolvers created on this thread treat every hash as equal.
    pub(crate) static COLLIDE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl Default for Resolver {
    fn default() -> Self {
        Resolver::new()
    }
}

impl Resolver {
    /// An empty index, expecting batch 0 first.
    pub fn new() -> Resolver {
        Resolver {
            table: Mutex::new(Table {
                slots: vec![Entry::default(); SLOTS],
                next_seq: 0,
                next_ordinal: 0,
                aborted: false,
            }),
            turn: Condvar::new(),
            #[cfg(test)]
            collide: COLLIDE.with(|c| c.get()),
            #[cfg(not(test))]
            collide: false,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Resolve batch `seq` of `npages` pages once every earlier batch is resolved. `hashes[i]`
    /// and `offs[i]` are page `i`'s hash and source offset, `eligible[i]` whether it may be
    /// shared at all; `marks` receives one [`Mark`] per page. Returns the descriptor index of
    /// the batch's first page, or `None` (all marks `None`) if an earlier batch will never be
    /// resolved.
    pub fn resolve(
        &self,
        seq: u64,
        npages: usize,
        hashes: &[u64],
        offs: &[u64],
        eligible: &[bool],
        marks: &mut Vec<Mark>,
    ) -> Option<u64> {
        marks.clear();
        marks.resize(npages, Mark::None);
        let mut t = self.lock();
        while t.next_seq != seq && !t.aborted {
            t = self.turn.wait(t).unwrap_or_else(|e| e.into_inner());
        }
        if t.aborted {
            return None;
        }
        let first = t.next_ordinal;
        let pages = marks.iter_mut().zip(hashes).zip(offs).zip(eligible);
        for (i, (((mark, &hash), &off), &ok)) in pages.enumerate() {
            if !ok {
                continue;
            }
            let hash = if self.collide { 0 } else { hash };
            let set = set_of(hash) as usize;
            let ways = &mut t.slots[set..set + WAYS];
            *mark = if let Some(w) = ways.iter().position(|e| e.ordinal1 != 0 && e.hash == hash) {
                Mark::Candidate { slot: (set + w) as u32, ordinal: ways[w].ordinal1 - 1, off: ways[w].off }
            } else {
                // The way stored first gives way (an empty one has ordinal 0).
                let w = (0..WAYS).min_by_key(|&w| ways[w].ordinal1).unwrap_or(0);
                ways[w] = Entry { hash, ordinal1: first + i as u64 + 1, off };
                Mark::Occupy((set + w) as u32)
            };
        }
        t.next_seq += 1;
        t.next_ordinal += npages as u64;
        drop(t);
        self.turn.notify_all();
        Some(first)
    }

    /// Stop every wait (a worker is exiting without resolving its batch).
    pub fn abort(&self) {
        self.lock().aborted = true;
        self.turn.notify_all();
    }
}

/// Calls [`Resolver::abort`] when dropped while unwinding, so a panicking worker does not
/// leave the others waiting for its turn.
pub struct AbortOnUnwind<'a>(pub &'a Resolver);

impl Drop for AbortOnUnwind<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.abort();
        }
    }
}

/// A stored page's descriptor fields, as the writer recorded them for a slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoredDesc {
    /// Descriptor index + 1 (0: none recorded).
    pub ordinal1: u64,
    pub offset: i64,
    pub size: u32,
    pub flags: u32,
}

/// The writer's side of the index: the descriptor of each slot's page, recorded in output
/// order (so it is always the page the resolver saw at the same point).
pub struct WriterSlots {
    slots: Vec<StoredDesc>,
}

impl Default for WriterSlots {
    fn default() -> Self {
        WriterSlots::new()
    }
}

impl WriterSlots {
    /// No descriptors recorded.
    pub fn new() -> WriterSlots {
        WriterSlots { slots: Vec::new() }
    }

    /// Record descriptor `d` (index `ordinal`) as `slot`'s page.
    pub fn record(&mut self, slot: u32, ordinal: u64, offset: i64, size: u32, flags: u32) {
        if self.slots.is_empty() {
            self.slots = vec![StoredDesc::default(); SLOTS];
        }
        if let Some(s) = self.slots.get_mut(slot as usize) {
            *s = StoredDesc { ordinal1: ordinal + 1, offset, size, flags };
        }
    }

    /// The descriptor of page `ordinal` if it is `slot`'s recorded page.
    pub fn get(&self, slot: u32, ordinal: u64) -> Option<StoredDesc> {
        self.slots.get(slot as usize).copied().filter(|s| s.ordinal1 == ordinal + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_follows_the_dump_level_and_the_codec() {
        use super::super::Compression::{Lzo, None as Raw, Snappy, Zlib, Zstd};
        for c in [Lzo, Zlib, Snappy, Raw, Zstd] {
            assert!(on_by_default(0, c) && on_by_default(1, c) && on_by_default(17, c) && on_by_default(23, c));
        }
        for c in [Lzo, Zlib, Snappy, Raw] {
            assert!(!on_by_default(30, c) && !on_by_default(31, c));
        }
        assert!(on_by_default(30, Zstd) && on_by_default(31, Zstd));
    }

    #[test]
    fn hash_separates_single_word_and_single_bit_changes() {
        let mut page = vec![0u8; 4096];
        for (i, b) in page.iter_mut().enumerate() {
            *b = (i * 7 % 251) as u8;
        }
        let base = page_hash(&page);
        assert_eq!(base, page_hash(&page.clone()));
        let mut seen = std::collections::HashSet::new();
        seen.insert(base);
        for pos in (0..4096).step_by(61) {
            for bit in [0u8, 3, 7] {
                let mut p = page.clone();
                p[pos] ^= 1 << bit;
                assert!(seen.insert(page_hash(&p)), "collision at byte {pos} bit {bit}");
            }
        }
        // Length and tail bytes count.
        assert_ne!(page_hash(&page[..4095]), page_hash(&page[..4094]));
        assert_ne!(page_hash(&[1, 2, 3]), page_hash(&[1, 2, 4]));
    }

    #[test]
    fn slots_spread_over_the_table() {
        let mut used = std::collections::HashSet::new();
        for i in 0u64..4096 {
            used.insert(set_of(page_hash(&i.to_le_bytes().repeat(512))));
        }
        // 4096 keys in 16384 sets: about 12% share a set by chance.
        assert!(used.len() > 3500, "{} distinct sets", used.len());
        assert!(used.iter().all(|&s| s as usize % WAYS == 0 && (s as usize) < SLOTS));
    }

    #[test]
    fn resolver_marks_candidates_in_batch_order() {
        let r = Resolver::new();
        let mut marks = Vec::new();
        let h = [5u64 << 50, 5 << 50, 9 << 50];
        let first = r.resolve(0, 3, &h, &[0, 4096, 8192], &[true, true, true], &mut marks);
        assert_eq!(first, Some(0));
        let s5 = set_of(5 << 50);
        assert_eq!(marks[0], Mark::Occupy(s5));
        assert_eq!(marks[1], Mark::Candidate { slot: s5, ordinal: 0, off: 0 });
        assert_eq!(marks[2], Mark::Occupy(set_of(9 << 50)));
        // An ineligible page neither matches nor occupies.
        let first = r.resolve(1, 2, &h[..2], &[100, 200], &[false, true], &mut marks);
        assert_eq!(first, Some(3));
        assert_eq!(marks[0], Mark::None);
        assert_eq!(marks[1], Mark::Candidate { slot: s5, ordinal: 0, off: 0 });
    }

    #[test]
    fn a_set_keeps_its_latest_pages() {
        // WAYS + 1 hashes of one set (they differ below the set bits), then one still held and
        // the one that gave way.
        let r = Resolver::new();
        let mut marks = Vec::new();
        let mut h: Vec<u64> = (0..=WAYS as u64).map(|k| (7 << 50) | k).collect();
        h.extend([(7 << 50) | 2, 7 << 50]);
        let offs: Vec<u64> = (0..h.len() as u64).map(|i| i * 4096).collect();
        r.resolve(0, h.len(), &h, &offs, &vec![true; h.len()], &mut marks);
        let s = set_of(7 << 50);
        assert!(h.iter().all(|&x| set_of(x) == s));
        for (k, m) in marks[..WAYS].iter().enumerate() {
            assert_eq!(*m, Mark::Occupy(s + k as u32));
        }
        // The set is full: the page stored first gives way, the others stay.
        assert_eq!(marks[WAYS], Mark::Occupy(s));
        assert_eq!(marks[WAYS + 1], Mark::Candidate { slot: s + 2, ordinal: 2, off: 2 * 4096 });
        assert_eq!(marks[WAYS + 2], Mark::Occupy(s + 1));
    }

    #[test]
    fn resolver_waits_for_earlier_batches_and_aborts() {
        let r = Resolver::new();
        std::thread::scope(|s| {
            let later = s.spawn(|| {
                let mut m = Vec::new();
                r.resolve(1, 1, &[1], &[0], &[true], &mut m)
            });
            std::thread::sleep(std::time::Duration::from_millis(20));
            let mut m = Vec::new();
            assert_eq!(r.resolve(0, 4, &[0; 4], &[0; 4], &[false; 4], &mut m), Some(0));
            assert_eq!(later.join().unwrap(), Some(4));
        });
        let r = Resolver::new();
        std::thread::scope(|s| {
            let waiting = s.spawn(|| {
                let mut m = Vec::new();
                r.resolve(3, 1, &[1], &[0], &[true], &mut m)
            });
            std::thread::sleep(std::time::Duration::from_millis(20));
            r.abort();
            assert_eq!(waiting.join().unwrap(), None);
        });
    }

    #[test]
    fn writer_slots_answer_only_for_the_recorded_page() {
        let mut w = WriterSlots::new();
        assert_eq!(w.get(7, 0), None);
        w.record(7, 12, 4096, 100, 0x20);
        assert_eq!(w.get(7, 12).map(|d| (d.offset, d.size, d.flags)), Some((4096, 100, 0x20)));
        assert_eq!(w.get(7, 11), None);
        w.record(7, 40, 8192, 4096, 0);
        assert_eq!(w.get(7, 12), None);
    }
}
