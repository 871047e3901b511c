//! The lockless printk ring buffer (Linux 5.10+, `kernel/printk/printk_ringbuffer.c`).
//!
//! Layout, all offsets from VMCOREINFO:
//!
//! ```text
//! *SYMBOL(prb) -> struct printk_ringbuffer
//!    .desc_ring      { count_bits, descs -> prb_desc[count], infos -> printk_info[count],
//!                      head_id, tail_id (atomic_long_t) }
//!    .text_data_ring { size_bits, data -> u8[size] }
//! prb_desc    { state_var (atomic_long_t: 2 state bits on top, id below),
//!               text_blk_lpos { begin, next } (logical positions, unsigned long) }
//! printk_info { seq, ts_nsec, text_len (u16), caller_id (u32), dev_info, ... }
//! ```
//!
//! Walk: for `id = tail_id ..= head_id` (ids wrap in the id mask), take slot `id % count`;
//! skip it unless its state_var carries this id and the state is committed or finalized.
//! Text block: `b = begin % size`, `n = next % size`; `b == n` is a data-less record; `b > n`
//! means the block wrapped and its data is at ring offset 0; the block starts with the id
//! word, then `min(text_len, n - b)` text bytes.
//!
//! Bounds beyond the peers (which trust the ring): at most `count` ids are visited (if
//! `head_id - tail_id` is not below `count`, only the last `count` ids are walked and a
//! note says so); a block whose logical length exceeds the ring, or whose id word does not
//! fit before `next`, is counted as corrupt and skipped.

use super::{
    check_field, check_struct_size, need, push_caller, push_text, push_timestamp, read_vec, read_word, BufferKind,
    DmesgError, DmesgStats, Endian, Format, Key, LogSource, Sink, MAX_COUNT_BITS, MAX_RING_BYTES,
};

const BUF: &str = "lockless printk ring buffer";

/// Descriptor states (top two bits of `state_var`).
const DESC_COMMITTED: u64 = 1;
const DESC_FINALIZED: u64 = 2;

/// Bytes fetched per window read: amortizes many small reads of neighbouring records.
const WINDOW_BYTES: usize = 64 * 1024;

/// Memory is missing from a dump a page at a time: the unit by which the walk skips
/// unreadable descriptor and info slots.
const UNREADABLE_GRANULE: u64 = 4096;

/// Consecutive unreadable descriptor/info pages after which the walk gives up. The kernel
/// allocates these arrays in one piece, so a dump missing 1 MiB of them is missing all of them.
const MAX_UNREADABLE_PAGES: u64 = 256;

/// A read-through cache over a contiguous kernel array (descs, infos, the data ring).
pub(crate) struct Window<'a> {
    src: &'a dyn LogSource,
    what: &'static str,
    /// Kernel address of the region.
    base: u64,
    /// Region length in bytes.
    total: u64,
    /// Offset of `buf` within the region.
    start: u64,
    buf: Vec<u8>,
}

impl<'a> Window<'a> {
    pub(crate) fn new(src: &'a dyn LogSource, what: &'static str, base: u64, total: u64) -> Self {
        Window { src, what, base, total, start: 0, buf: Vec::new() }
    }

    /// Returns `len` bytes at offset `off` of the region, or an error if they lie outside
    /// the region or cannot be read.
    pub(crate) fn get(&mut self, off: u64, len: usize) -> Result<&[u8], DmesgError> {
        let len64 = len as u64;
        let end = off.checked_add(len64).filter(|&e| e <= self.total).ok_or_else(|| DmesgError::BadLayout {
            detail: format!("{} bytes at offset {off} lie outside {} ({} bytes)", len, self.what, self.total),
        })?;
        let cached_end = self.start.saturating_add(self.buf.len() as u64);
        if !(off >= self.start && end <= cached_end) {
            self.load(off, len)?;
        }
        let rel = usize::try_from(off - self.start).map_err(|_| DmesgError::BadLayout {
            detail: format!("offset {off} in {} does not fit in memory", self.what),
        })?;
        self.buf.get(rel..rel.saturating_add(len)).ok_or_else(|| DmesgError::BadLayout {
            detail: format!("window of {} is inconsistent at offset {off}", self.what),
        })
    }

    fn load(&mut self, off: u64, len: usize) -> Result<(), DmesgError> {
        let remaining = self.total - off; // off + len <= total was checked by the caller
        let want = (WINDOW_BYTES as u64).min(remaining).max(len as u64);
        let want = usize::try_from(want).unwrap_or(len);
        let addr = self.base.checked_add(off).ok_or_else(|| DmesgError::BadLayout {
            detail: format!("{} at {:#x} + {off} overflows", self.what, self.base),
        })?;
        self.buf.clear();
        self.buf.resize(want, 0);
        let mut result = self.src.read_kva(addr, &mut self.buf);
        if result.is_err() && want > len {
            // The window may reach into an unreadable page: retry the exact range.
            self.buf.truncate(len);
            result = self.src.read_kva(addr, &mut self.buf);
        }
        match result {
            Ok(()) => {
                self.start = off;
                Ok(())
            }
            Err(source) => {
                self.buf.clear();
                Err(DmesgError::Read { what: self.what, addr, len, source })
            }
        }
    }
}

/// Offsets and sizes of the lockless ring, from VMCOREINFO.
struct Layout {
    rb_size: u64,
    desc_ring: u64,
    text_data_ring: u64,
    count_bits: u64,
    descs: u64,
    infos: u64,
    head_id: u64,
    tail_id: u64,
    counter: u64,
    desc_size: u64,
    state_var: u64,
    lpos_begin: u64,
    lpos_next: u64,
    info_size: u64,
    ts_nsec: u64,
    text_len: u64,
    caller_id: Option<u64>,
    size_bits: u64,
    data: u64,
}

impl Layout {
    fn from_vmcoreinfo(src: &dyn LogSource, word: u64) -> Result<Self, DmesgError> {
        let off = |name: &str| need(src, Key::Offset, name, BUF);
        let size = |name: &str| need(src, Key::Size, name, BUF);
        let text_blk = off("prb_desc.text_blk_lpos")?;
        let l = Layout {
            rb_size: size("printk_ringbuffer")?,
            desc_ring: off("printk_ringbuffer.desc_ring")?,
            text_data_ring: off("printk_ringbuffer.text_data_ring")?,
            count_bits: off("prb_desc_ring.count_bits")?,
            descs: off("prb_desc_ring.descs")?,
            infos: off("prb_desc_ring.infos")?,
            head_id: off("prb_desc_ring.head_id")?,
            tail_id: off("prb_desc_ring.tail_id")?,
            // vmcore-dmesg treats a missing counter offset as 0; so do we.
            counter: src.offset("atomic_long_t.counter").unwrap_or(0),
            desc_size: size("prb_desc")?,
            state_var: off("prb_desc.state_var")?,
            lpos_begin: text_blk
                .checked_add(off("prb_data_blk_lpos.begin")?)
                .ok_or_else(|| overflow("prb_desc.text_blk_lpos.begin"))?,
            lpos_next: text_blk
                .checked_add(off("prb_data_blk_lpos.next")?)
                .ok_or_else(|| overflow("prb_desc.text_blk_lpos.next"))?,
            info_size: size("printk_info")?,
            ts_nsec: off("printk_info.ts_nsec")?,
            text_len: off("printk_info.text_len")?,
            caller_id: src.offset("printk_info.caller_id"),
            size_bits: off("prb_data_ring.size_bits")?,
            data: off("prb_data_ring.data")?,
        };
        check_struct_size("printk_ringbuffer", l.rb_size)?;
        check_struct_size("prb_desc", l.desc_size)?;
        check_struct_size("printk_info", l.info_size)?;
        let rb = l.rb_size;
        let sub = |a: u64, b: u64, what: &str| a.checked_add(b).ok_or_else(|| overflow(what));
        check_field("prb_desc_ring.count_bits", sub(l.desc_ring, l.count_bits, "count_bits")?, 4, rb)?;
        check_field("prb_desc_ring.descs", sub(l.desc_ring, l.descs, "descs")?, word, rb)?;
        check_field("prb_desc_ring.infos", sub(l.desc_ring, l.infos, "infos")?, word, rb)?;
        let head = sub(sub(l.desc_ring, l.head_id, "head_id")?, l.counter, "head_id")?;
        let tail = sub(sub(l.desc_ring, l.tail_id, "tail_id")?, l.counter, "tail_id")?;
        check_field("prb_desc_ring.head_id", head, word, rb)?;
        check_field("prb_desc_ring.tail_id", tail, word, rb)?;
        check_field("prb_data_ring.size_bits", sub(l.text_data_ring, l.size_bits, "size_bits")?, 4, rb)?;
        check_field("prb_data_ring.data", sub(l.text_data_ring, l.data, "data")?, word, rb)?;
        check_field("prb_desc.state_var", sub(l.state_var, l.counter, "state_var")?, word, l.desc_size)?;
        check_field("prb_data_blk_lpos.begin", l.lpos_begin, word, l.desc_size)?;
        check_field("prb_data_blk_lpos.next", l.lpos_next, word, l.desc_size)?;
        check_field("printk_info.ts_nsec", l.ts_nsec, 8, l.info_size)?;
        check_field("printk_info.text_len", l.text_len, 2, l.info_size)?;
        if let Some(c) = l.caller_id {
            check_field("printk_info.caller_id", c, 4, l.info_size)?;
        }
        Ok(l)
    }
}

fn overflow(what: &str) -> DmesgError {
    DmesgError::BadLayout { detail: format!("offset of {what} overflows") }
}

/// Walks the lockless ring and writes its records.
pub(crate) fn walk(src: &dyn LogSource, format: Format, sink: &mut Sink<'_>) -> Result<DmesgStats, DmesgError> {
    let word = match src.size("atomic_long_t") {
        Some(4) => 4,
        Some(8) => 8,
        _ => src.word_size(),
    };
    if word != 4 && word != 8 {
        return Err(DmesgError::BadLayout { detail: format!("word size {word} is not 4 or 8") });
    }
    let e = Endian { big: src.big_endian(), word };
    let word64 = word as u64;
    let l = Layout::from_vmcoreinfo(src, word64)?;
    let prb_sym = need(src, Key::Symbol, "prb", BUF)?;

    // printk_ringbuffer itself (size checked <= MAX_STRUCT_SIZE above).
    let rb_addr = read_word(src, e, "the prb pointer", prb_sym)?;
    let rb_len = usize::try_from(l.rb_size).unwrap_or(0);
    let rb = read_vec(src, "struct printk_ringbuffer", rb_addr, rb_len)?;
    let field = |v: Option<u64>| {
        v.ok_or_else(|| DmesgError::BadLayout { detail: "printk_ringbuffer field outside the struct".to_string() })
    };
    // Offsets below were checked against rb_size in from_vmcoreinfo.
    let count_bits = field(e.u32(&rb, l.desc_ring + l.count_bits).map(u64::from))?;
    let descs_addr = field(e.word(&rb, l.desc_ring + l.descs))?;
    let infos_addr = field(e.word(&rb, l.desc_ring + l.infos))?;
    let head_id = field(e.word(&rb, l.desc_ring + l.head_id + l.counter))?;
    let tail_id = field(e.word(&rb, l.desc_ring + l.tail_id + l.counter))?;
    let size_bits = field(e.u32(&rb, l.text_data_ring + l.size_bits).map(u64::from))?;
    let data_addr = field(e.word(&rb, l.text_data_ring + l.data))?;

    if count_bits > u64::from(MAX_COUNT_BITS) {
        return Err(DmesgError::TooLarge {
            what: "prb_desc_ring.count_bits",
            value: count_bits,
            limit: u64::from(MAX_COUNT_BITS),
        });
    }
    let count: u64 = 1 << count_bits;
    let ring_limit_bits = MAX_RING_BYTES.trailing_zeros() as u64;
    if size_bits > ring_limit_bits {
        return Err(DmesgError::TooLarge { what: "prb_data_ring.size_bits", value: size_bits, limit: ring_limit_bits });
    }
    let size: u64 = 1 << size_bits;

    // The id occupies the bits below the two state bits of a kernel long.
    let id_mask: u64 = if word == 8 { !(3u64 << 62) } else { !(3u64 << 30) & 0xffff_ffff };
    let word_mask: u64 = if word == 8 { u64::MAX } else { 0xffff_ffff };

    let mut stats = DmesgStats { buffer: BufferKind::Lockless, ..DmesgStats::default() };

    // Ids to visit: tail..=head. A sane ring has head - tail < count.
    let span = head_id.wrapping_sub(tail_id) & id_mask;
    let (first, n_ids) = if span < count {
        (tail_id, span + 1)
    } else {
        stats.stopped_early = Some(format!(
            "descriptor ids are inconsistent (tail_id {tail_id:#x}, head_id {head_id:#x}, \
             {count} descriptors); only the last {count} ids before head_id were walked"
        ));
        (head_id.wrapping_sub(count - 1) & id_mask, count)
    };

    let mut descs = Window::new(src, "prb_desc_ring.descs", descs_addr, count * l.desc_size);
    let mut infos = Window::new(src, "prb_desc_ring.infos", infos_addr, count * l.info_size);
    let mut data = Window::new(src, "prb_data_ring.data", data_addr, size);
    let desc_len = l.desc_size as usize;
    let info_len = l.info_size as usize;
    let mut first_error: Option<DmesgError> = None;
    let mut line: Vec<u8> = Vec::with_capacity(1024);

    let mut id = first;
    let mut visited: u64 = 0;
    let mut unreadable_pages: u64 = 0;
    while visited < n_ids {
        let slot = id % count;
        // Which array a read error came from decides how far to skip (see below).
        let mut failed_array = None;
        let rec = (|| -> Result<Outcome, DmesgError> {
            failed_array = Some(l.desc_size);
            let d = descs.get(slot * l.desc_size, desc_len)?;
            let sv = e.word(d, l.state_var + l.counter).unwrap_or(0);
            let begin = e.word(d, l.lpos_begin).unwrap_or(0);
            let next = e.word(d, l.lpos_next).unwrap_or(0);
            let state = (sv >> (word64 * 8 - 2)) & 3;
            if sv & id_mask != id || !(state == DESC_COMMITTED || state == DESC_FINALIZED) {
                return Ok(Outcome::NotCommitted);
            }
            failed_array = Some(l.info_size);
            let info = infos.get(slot * l.info_size, info_len)?;
            failed_array = None;
            let ts = e.u64(info, l.ts_nsec).unwrap_or(0);
            let text_len = e.u16(info, l.text_len).unwrap_or(0);
            let caller = l.caller_id.and_then(|c| e.u32(info, c));

            let b0 = begin % size;
            let n = next % size;
            line.clear();
            push_timestamp(&mut line, ts);
            if format == Format::Makedumpfile {
                if let Some(cid) = caller {
                    push_caller(&mut line, cid);
                }
            }
            if b0 == n {
                return Ok(Outcome::Dataless);
            }
            // A block never spans more than the ring.
            if next.wrapping_sub(begin) & word_mask > size {
                return Ok(Outcome::Corrupt);
            }
            let b = if b0 > n { 0 } else { b0 } + word64;
            if b > n {
                return Ok(Outcome::Corrupt);
            }
            let len = u64::from(text_len).min(n - b) as usize;
            let indent = line.len();
            let text = data.get(b, len)?;
            push_text(&mut line, text, format, indent);
            line.push(b'\n');
            Ok(Outcome::Printed)
        })();
        // An unreadable descriptor or info page makes every slot on that page unreadable:
        // skip to the slot after the page instead of failing on each of them (a ring of 2^24
        // descriptors over missing memory would otherwise take minutes).
        let mut step = 1;
        if let (Err(_), Some(elem)) = (&rec, failed_array) {
            let off = slot * elem;
            let page_end = (off / UNREADABLE_GRANULE + 1) * UNREADABLE_GRANULE;
            step = (page_end - off).div_ceil(elem.max(1)).clamp(1, count - slot).min(n_ids - visited);
            stats.corrupted += step - 1;
            unreadable_pages += 1;
            if unreadable_pages > MAX_UNREADABLE_PAGES {
                stats.corrupted += 1;
                stats.stopped_early = Some(format!(
                    "{MAX_UNREADABLE_PAGES} pages of descriptors in a row are missing from the dump; \
                     the rest of the ring ({} ids) was not walked",
                    n_ids - visited - step
                ));
                if first_error.is_none() {
                    if let Err(err) = rec {
                        first_error = Some(err);
                    }
                }
                break;
            }
        } else {
            unreadable_pages = 0;
        }
        match rec {
            Ok(Outcome::Printed) => {
                sink.write(&line)?;
                stats.records += 1;
            }
            Ok(Outcome::Dataless) => {
                stats.dataless += 1;
                if format == Format::VmcoreDmesg {
                    line.push(b'\n');
                    sink.write(&line)?;
                    stats.records += 1;
                }
            }
            Ok(Outcome::NotCommitted) => stats.not_committed += 1,
            Ok(Outcome::Corrupt) => stats.corrupted += 1,
            Err(err) => {
                stats.corrupted += 1;
                if first_error.is_none() {
                    first_error = Some(err);
                }
            }
        }
        id = id.wrapping_add(step) & id_mask;
        visited += step;
    }
    // Nothing printed and every failure was a read error: the reader, not the ring, is
    // the problem; report it instead of an empty log.
    if let Some(err) = first_error {
        if stats.records == 0 && stats.dataless == 0 {
            return Err(err);
        }
    }
    Ok(stats)
}

enum Outcome {
    Printed,
    Dataless,
    NotCommitted,
    Corrupt,
}
