//! Test doubles: an in-memory [`LogSource`] and builders that lay out kernel log buffers
//! the way the kernel does. Public (but hidden) so that the fuzz target can use them.

use std::collections::HashMap;
use std::collections::VecDeque;

use super::{LogSource, SourceError};

/// A fake dump: a flat "kernel memory" at `base` plus VMCOREINFO tables.
#[derive(Debug, Clone, Default)]
pub struct FakeSource {
    /// Kernel virtual address of `mem[0]`.
    pub base: u64,
    /// The memory.
    pub mem: Vec<u8>,
    /// `SYMBOL(name)` values.
    pub symbols: HashMap<String, u64>,
    /// `SIZE(name)` values.
    pub sizes: HashMap<String, u64>,
    /// `OFFSET(name)` values.
    pub offsets: HashMap<String, u64>,
    /// `LENGTH(name)` values.
    pub lengths: HashMap<String, u64>,
    /// Kernel word size (4 or 8).
    pub word: usize,
    /// Big-endian kernel.
    pub big_endian: bool,
}

impl FakeSource {
    /// An empty fake with memory at `base` and 8-byte little-endian words.
    pub fn new(base: u64) -> Self {
        FakeSource { base, word: 8, ..FakeSource::default() }
    }

    /// Reserves `len` zeroed bytes aligned to 8 and returns their address.
    pub fn alloc(&mut self, len: usize) -> u64 {
        let start = (self.mem.len() + 7) & !7;
        self.mem.resize(start + len, 0);
        self.base + start as u64
    }

    fn index(&self, addr: u64, len: usize) -> Option<std::ops::Range<usize>> {
        let start = usize::try_from(addr.checked_sub(self.base)?).ok()?;
        let end = start.checked_add(len)?;
        (end <= self.mem.len()).then_some(start..end)
    }

    /// Writes `bytes` at `addr` (panics outside memory: test setup only).
    pub fn write(&mut self, addr: u64, bytes: &[u8]) {
        let r = self.index(addr, bytes.len()).expect("fake write outside memory");
        self.mem[r].copy_from_slice(bytes);
    }

    /// Writes an unsigned integer of `width` bytes in the fake's byte order.
    pub fn write_uint(&mut self, addr: u64, width: usize, v: u64) {
        let le = v.to_le_bytes();
        let mut b = le[..width].to_vec();
        if self.big_endian {
            b.reverse();
        }
        self.write(addr, &b);
    }

    /// Writes a kernel word.
    pub fn write_word(&mut self, addr: u64, v: u64) {
        self.write_uint(addr, self.word, v);
    }

    /// Sets `SYMBOL(name)`.
    pub fn set_symbol(&mut self, name: &str, v: u64) {
        self.symbols.insert(name.to_string(), v);
    }

    /// Sets `SIZE(name)`.
    pub fn set_size(&mut self, name: &str, v: u64) {
        self.sizes.insert(name.to_string(), v);
    }

    /// Sets `OFFSET(name)`.
    pub fn set_offset(&mut self, name: &str, v: u64) {
        self.offsets.insert(name.to_string(), v);
    }

    /// The VMCOREINFO note text describing this fake (sorted, one `KEY=VALUE` a line).
    pub fn vmcoreinfo_text(&self) -> String {
        let mut lines = Vec::new();
        for (k, v) in &self.symbols {
            lines.push(format!("SYMBOL({k})={v:x}"));
        }
        for (k, v) in &self.sizes {
            lines.push(format!("SIZE({k})={v}"));
        }
        for (k, v) in &self.offsets {
            lines.push(format!("OFFSET({k})={v}"));
        }
        for (k, v) in &self.lengths {
            lines.push(format!("LENGTH({k})={v}"));
        }
        lines.sort();
        let mut s = lines.join("\n");
        s.push('\n');
        s
    }

    /// Builds a fake from fuzzer bytes: the first byte picks the buffer kind and layout,
    /// the rest is kernel memory at 0x1000 with the log symbols at fixed addresses in it,
    /// so every pointer, index, id and length comes from the input.
    pub fn from_fuzz(data: &[u8]) -> FakeSource {
        let (mode, rest) = match data.split_first() {
            Some((m, r)) => (*m, r),
            None => (0, data),
        };
        let word = if mode & 4 != 0 { 4 } else { 8 };
        let mut f = FakeSource::new(0x1000);
        f.word = word;
        f.big_endian = mode & 8 != 0;
        f.mem = rest.iter().copied().take(1 << 20).collect();
        let caller = mode & 16 != 0;
        match mode & 3 {
            1 => {
                let name = if mode & 32 != 0 { "log" } else { "printk_log" };
                legacy_layout(&mut f, name, caller);
                f.set_symbol("log_buf", 0x1000);
                f.set_symbol("log_buf_len", 0x1008);
                f.set_symbol("log_first_idx", 0x1010);
                f.set_symbol("log_next_idx", 0x1014);
            }
            2 => {
                f.set_symbol("log_buf", 0x1000);
                f.set_symbol("log_buf_len", 0x1008);
                f.set_symbol("log_end", 0x1010);
            }
            _ => {
                lockless_layout(&mut f, word);
                if !caller {
                    f.offsets.remove("printk_info.caller_id");
                }
                f.set_symbol("prb", 0x1000);
            }
        }
        f
    }
}

impl LogSource for FakeSource {
    fn read_kva(&self, addr: u64, buf: &mut [u8]) -> Result<(), SourceError> {
        let r = self
            .index(addr, buf.len())
            .ok_or_else(|| format!("address {addr:#x}+{} is not in the fake dump", buf.len()))?;
        buf.copy_from_slice(&self.mem[r]);
        Ok(())
    }
    fn symbol(&self, name: &str) -> Option<u64> {
        self.symbols.get(name).copied()
    }
    fn size(&self, name: &str) -> Option<u64> {
        self.sizes.get(name).copied()
    }
    fn offset(&self, name: &str) -> Option<u64> {
        self.offsets.get(name).copied()
    }
    fn length(&self, name: &str) -> Option<u64> {
        self.lengths.get(name).copied()
    }
    fn word_size(&self) -> usize {
        self.word
    }
    fn big_endian(&self) -> bool {
        self.big_endian
    }
}

/// Byte offsets of the lockless ring structures for a word size (the x86_64 layout for 8,
/// the i386/arm layout for 4).
#[derive(Debug, Clone, Copy)]
pub struct LocklessOffsets {
    /// Word size.
    pub word: u64,
    /// Offset of `printk_ringbuffer.text_data_ring`.
    pub text_data_ring: u64,
    /// `SIZE(printk_ringbuffer)`.
    pub rb_size: u64,
    /// `SIZE(prb_desc)`.
    pub desc_size: u64,
    /// `SIZE(printk_info)`.
    pub info_size: u64,
}

impl LocklessOffsets {
    /// Offsets for `word`-byte longs.
    pub fn for_word(word: usize) -> Self {
        let w = word as u64;
        // prb_desc_ring: count_bits(u32, padded to a word), descs, infos, head_id, tail_id,
        // last_finalized_id.
        let desc_ring_size = 6 * w;
        // prb_data_ring: size_bits (padded), data, head_lpos, tail_lpos.
        let data_ring_size = 4 * w;
        LocklessOffsets {
            word: w,
            text_data_ring: desc_ring_size,
            // + fail (atomic_long_t)
            rb_size: desc_ring_size + data_ring_size + w,
            desc_size: 3 * w,
            info_size: 88,
        }
    }
}

/// Registers the VMCOREINFO of a 5.10+ lockless ring (as Linux 6.1 exports it).
pub fn lockless_layout(f: &mut FakeSource, word: usize) -> LocklessOffsets {
    let o = LocklessOffsets::for_word(word);
    let w = o.word;
    f.set_symbol("printk_rb_static", 0);
    f.set_size("printk_ringbuffer", o.rb_size);
    f.set_offset("printk_ringbuffer.desc_ring", 0);
    f.set_offset("printk_ringbuffer.text_data_ring", o.text_data_ring);
    f.set_offset("printk_ringbuffer.fail", o.text_data_ring + 4 * w);
    f.set_size("prb_desc_ring", 6 * w);
    f.set_offset("prb_desc_ring.count_bits", 0);
    f.set_offset("prb_desc_ring.descs", w);
    f.set_offset("prb_desc_ring.infos", 2 * w);
    f.set_offset("prb_desc_ring.head_id", 3 * w);
    f.set_offset("prb_desc_ring.tail_id", 4 * w);
    f.set_size("prb_desc", o.desc_size);
    f.set_offset("prb_desc.state_var", 0);
    f.set_offset("prb_desc.text_blk_lpos", w);
    f.set_size("prb_data_blk_lpos", 2 * w);
    f.set_offset("prb_data_blk_lpos.begin", 0);
    f.set_offset("prb_data_blk_lpos.next", w);
    f.set_size("printk_info", o.info_size);
    f.set_offset("printk_info.seq", 0);
    f.set_offset("printk_info.ts_nsec", 8);
    f.set_offset("printk_info.text_len", 16);
    f.set_offset("printk_info.caller_id", 20);
    f.set_offset("printk_info.dev_info", 24);
    f.set_size("dev_printk_info", 64);
    f.set_offset("dev_printk_info.subsystem", 0);
    f.set_offset("dev_printk_info.device", 16);
    f.lengths.insert("printk_info_subsystem".into(), 16);
    f.lengths.insert("printk_info_device".into(), 48);
    f.set_size("prb_data_ring", 4 * w);
    f.set_offset("prb_data_ring.size_bits", 0);
    f.set_offset("prb_data_ring.data", w);
    f.set_offset("prb_data_ring.head_lpos", 2 * w);
    f.set_offset("prb_data_ring.tail_lpos", 3 * w);
    f.set_size("atomic_long_t", w);
    f.set_offset("atomic_long_t.counter", 0);
    o
}

/// Builds a lockless ring in a [`FakeSource`] the way `printk_ringbuffer.c` fills it:
/// initial `DESC0_ID`/`BLK0_LPOS` values, data blocks with a leading id word, blocks that do
/// not fit at the end of the ring stored at offset 0, and the oldest records evicted
/// (descriptor made reusable, tail pushed) when either ring is full.
#[derive(Debug, Clone)]
pub struct RingBuilder {
    /// The fake being filled.
    pub src: FakeSource,
    o: LocklessOffsets,
    count: u64,
    size: u64,
    id_mask: u64,
    state_shift: u64,
    lpos_mask: u64,
    rb: u64,
    descs: u64,
    infos: u64,
    data: u64,
    head_id: u64,
    tail_id: u64,
    head_lpos: u64,
    /// Live data blocks, oldest first: (id, begin, next).
    live: VecDeque<(u64, u64, u64)>,
    tail_lpos: u64,
    seq: u64,
}

impl RingBuilder {
    /// A fresh (empty) ring of `2^count_bits` descriptors and `2^size_bits` data bytes.
    pub fn new(word: usize, count_bits: u32, size_bits: u32) -> Self {
        Self::new_at(0xffff_8880_0100_0000, word, count_bits, size_bits)
    }

    /// Like [`RingBuilder::new`] with the fake memory at `base` (`SYMBOL(prb)` is `base`).
    pub fn new_at(base: u64, word: usize, count_bits: u32, size_bits: u32) -> Self {
        Self::from_source(FakeSource::new(base), word, count_bits, size_bits)
    }

    /// Builds the ring into `src` (whose byte order is used for every write).
    pub fn from_source(mut src: FakeSource, word: usize, count_bits: u32, size_bits: u32) -> Self {
        src.word = word;
        let o = lockless_layout(&mut src, word);
        let count = 1u64 << count_bits;
        let size = 1u64 << size_bits;
        let (id_mask, state_shift, lpos_mask) =
            if word == 8 { (!(3u64 << 62), 62, u64::MAX) } else { (0x3fff_ffff, 30, 0xffff_ffff) };
        let prb_ptr = src.alloc(word);
        let rb = src.alloc(o.rb_size as usize);
        let descs = src.alloc((count * o.desc_size) as usize);
        let infos = src.alloc((count * o.info_size) as usize);
        let data = src.alloc(size as usize);
        src.set_symbol("prb", prb_ptr);
        src.write_word(prb_ptr, rb);
        let w = o.word;
        src.write_uint(rb, 4, u64::from(count_bits));
        src.write_word(rb + w, descs);
        src.write_word(rb + 2 * w, infos);
        src.write_uint(rb + o.text_data_ring, 4, u64::from(size_bits));
        src.write_word(rb + o.text_data_ring + w, data);
        // DESC0_ID = DESC_ID(-(count + 1)); its descriptor is reusable. BLK0_LPOS = -size.
        let id0 = 0u64.wrapping_sub(count + 1) & id_mask;
        let lpos0 = 0u64.wrapping_sub(size) & lpos_mask;
        let mut b = RingBuilder {
            src,
            o,
            count,
            size,
            id_mask,
            state_shift,
            lpos_mask,
            rb,
            descs,
            infos,
            data,
            head_id: id0,
            tail_id: id0,
            head_lpos: lpos0,
            live: VecDeque::new(),
            tail_lpos: lpos0,
            seq: 0,
        };
        b.write_desc(id0, 3, 1, 1);
        b
    }

    /// Address of the descriptor slot of `id` (to corrupt it in tests).
    pub fn desc_addr(&self, id: u64) -> u64 {
        self.descs + (id % self.count) * self.o.desc_size
    }

    /// Address of the info slot of `id`.
    pub fn info_addr(&self, id: u64) -> u64 {
        self.infos + (id % self.count) * self.o.info_size
    }

    /// Address of the data ring.
    pub fn data_addr(&self) -> u64 {
        self.data
    }

    /// Current head id.
    pub fn head_id(&self) -> u64 {
        self.head_id
    }

    /// Current tail id.
    pub fn tail_id(&self) -> u64 {
        self.tail_id
    }

    /// Word size in bytes.
    pub fn word(&self) -> u64 {
        self.o.word
    }

    fn write_desc(&mut self, id: u64, state: u64, begin: u64, next: u64) {
        let a = self.desc_addr(id);
        let w = self.o.word;
        self.src.write_word(a, (id & self.id_mask) | (state << self.state_shift));
        self.src.write_word(a + w, begin);
        self.src.write_word(a + 2 * w, next);
    }

    fn set_state(&mut self, id: u64, state: u64) {
        let a = self.desc_addr(id);
        self.src.write_word(a, (id & self.id_mask) | (state << self.state_shift));
    }

    fn evict_oldest_data(&mut self) {
        if let Some((id, _begin, next)) = self.live.pop_front() {
            self.set_state(id, 3);
            self.tail_lpos = next;
        }
    }

    /// Appends a finalized record; `text` empty makes a data-less record (`FAILED_LPOS`).
    pub fn push(&mut self, ts_nsec: u64, caller_id: u32, text: &[u8]) -> u64 {
        let id = self.head_id.wrapping_add(1) & self.id_mask;
        // desc_reserve: the slot's previous occupant must be the tail; push the tail.
        if id.wrapping_sub(self.count) & self.id_mask == self.tail_id {
            if self.live.front().map(|l| l.0) == Some(self.tail_id) {
                self.evict_oldest_data();
            } else {
                self.set_state(self.tail_id, 3);
            }
            self.tail_id = self.tail_id.wrapping_add(1) & self.id_mask;
        }
        let w = self.o.word;
        let (begin, next) = if text.is_empty() {
            (1, 1) // FAILED_LPOS
        } else {
            let blk = (text.len() as u64 + w).div_ceil(w) * w;
            assert!(blk <= self.size / 2, "record too large for the test ring");
            let begin = self.head_lpos;
            let plain_next = begin.wrapping_add(blk) & self.lpos_mask;
            let ring = self.size;
            let wraps = |l: u64| l / ring; // DATA_WRAPS
            let next = if wraps(begin) == wraps(plain_next) {
                plain_next
            } else {
                // Wrapping blocks are stored at the start of the next wrap.
                ((plain_next / self.size) * self.size).wrapping_add(blk) & self.lpos_mask
            };
            while next.wrapping_sub(self.tail_lpos) & self.lpos_mask > self.size {
                self.evict_oldest_data();
            }
            let off = if wraps(begin) == wraps(plain_next) { begin % self.size } else { 0 };
            let data = self.data;
            self.src.write_word(data + off, id);
            self.src.write(data + off + w, text);
            self.head_lpos = next;
            self.live.push_back((id, begin, next));
            (begin, next)
        };
        self.write_desc(id, 2, begin, next);
        let ia = self.info_addr(id);
        self.src.write_uint(ia, 8, self.seq);
        self.src.write_uint(ia + 8, 8, ts_nsec);
        self.src.write_uint(ia + 16, 2, text.len() as u64);
        self.src.write_uint(ia + 20, 4, u64::from(caller_id));
        self.seq += 1;
        self.head_id = id;
        self.write_ids();
        id
    }

    fn write_ids(&mut self) {
        let w = self.o.word;
        self.src.write_word(self.rb + 3 * w, self.head_id);
        self.src.write_word(self.rb + 4 * w, self.tail_id);
        self.src.write_word(self.rb + self.o.text_data_ring + 2 * w, self.head_lpos);
        self.src.write_word(self.rb + self.o.text_data_ring + 3 * w, self.tail_lpos);
    }

    /// Sets the raw head and tail ids (for corruption tests).
    pub fn set_ids(&mut self, head: u64, tail: u64) {
        self.head_id = head;
        self.tail_id = tail;
        self.write_ids();
    }
}

/// Registers the VMCOREINFO of a 3.5-5.9 structured buffer (`name` is `printk_log`, or
/// `log` before 3.11); with `caller`, the CONFIG_PRINTK_CALLER layout (20-byte header).
pub fn legacy_layout(f: &mut FakeSource, name: &str, caller: bool) -> u64 {
    let size = if caller { 20 } else { 16 };
    f.set_size(name, size);
    f.set_offset(&format!("{name}.ts_nsec"), 0);
    f.set_offset(&format!("{name}.len"), 8);
    f.set_offset(&format!("{name}.text_len"), 10);
    f.set_offset(&format!("{name}.dict_len"), 12);
    if caller {
        f.set_offset(&format!("{name}.caller_id"), 16);
    }
    size
}

/// Builds a structured (3.5-5.9) log buffer like `log_store()` does, including the wrap
/// marker and eviction of the oldest records.
#[derive(Debug, Clone)]
pub struct LegacyBuilder {
    /// The fake being filled.
    pub src: FakeSource,
    buf: u64,
    len: u64,
    hdr: u64,
    caller: bool,
    first_idx: u64,
    next_idx: u64,
    first_seq: u64,
    next_seq: u64,
    sym_first: u64,
    sym_next: u64,
}

impl LegacyBuilder {
    /// An empty buffer of `len` bytes; `name` is `printk_log` or `log`.
    pub fn new(len: u64, name: &str, caller: bool) -> Self {
        let mut src = FakeSource::new(0xffff_ffff_8200_0000);
        let hdr = legacy_layout(&mut src, name, caller);
        let p = src.alloc(8);
        let l = src.alloc(4);
        let sym_first = src.alloc(4);
        let sym_next = src.alloc(4);
        let buf = src.alloc(len as usize);
        src.write_word(p, buf);
        src.write_uint(l, 4, len);
        src.set_symbol("log_buf", p);
        src.set_symbol("log_buf_len", l);
        src.set_symbol("log_first_idx", sym_first);
        src.set_symbol("log_next_idx", sym_next);
        let clear = src.alloc(4);
        src.set_symbol("clear_idx", clear);
        LegacyBuilder {
            src,
            buf,
            len,
            hdr,
            caller,
            first_idx: 0,
            next_idx: 0,
            first_seq: 0,
            next_seq: 0,
            sym_first,
            sym_next,
        }
    }

    fn rec_len(&self, idx: u64) -> u64 {
        let a = (self.buf + idx - self.src.base) as usize;
        u64::from(u16::from_le_bytes([self.src.mem[a + 8], self.src.mem[a + 9]]))
    }

    fn log_next(&self, idx: u64) -> u64 {
        let l = self.rec_len(idx);
        if l == 0 {
            self.rec_len(0)
        } else {
            idx + l
        }
    }

    fn has_space(&self, size: u64, empty: bool) -> bool {
        let free = if self.next_idx > self.first_idx || empty {
            (self.len - self.next_idx).max(self.first_idx)
        } else {
            self.first_idx - self.next_idx
        };
        free >= size + self.hdr
    }

    /// Index of the buffer's header at `idx` (for corruption tests).
    pub fn addr_of(&self, idx: u64) -> u64 {
        self.buf + idx
    }

    /// Current log_first_idx.
    pub fn first_idx(&self) -> u64 {
        self.first_idx
    }

    /// Appends a record with `text` and a dictionary `dict` (never printed).
    pub fn push(&mut self, ts_nsec: u64, caller_id: u32, text: &[u8], dict: &[u8]) {
        let mut size = self.hdr + text.len() as u64 + dict.len() as u64;
        size += size.wrapping_neg() & 3; // LOG_ALIGN 4
        while self.first_seq < self.next_seq && !self.has_space(size, false) {
            self.first_idx = self.log_next(self.first_idx);
            self.first_seq += 1;
        }
        assert!(self.has_space(size, self.first_seq == self.next_seq));
        if self.next_idx + size + self.hdr > self.len {
            let zero = vec![0u8; self.hdr as usize];
            self.src.write(self.buf + self.next_idx, &zero);
            self.next_idx = 0;
        }
        let a = self.buf + self.next_idx;
        self.src.write_uint(a, 8, ts_nsec);
        self.src.write_uint(a + 8, 2, size);
        self.src.write_uint(a + 10, 2, text.len() as u64);
        self.src.write_uint(a + 12, 2, dict.len() as u64);
        self.src.write_uint(a + 14, 1, 0);
        self.src.write_uint(a + 15, 1, 6 << 5);
        if self.caller {
            self.src.write_uint(a + 16, 4, u64::from(caller_id));
        }
        self.src.write(a + self.hdr, text);
        self.src.write(a + self.hdr + text.len() as u64, dict);
        self.next_idx += size;
        self.next_seq += 1;
        let (f, n) = (self.first_idx, self.next_idx);
        self.src.write_uint(self.sym_first, 4, f);
        self.src.write_uint(self.sym_next, 4, n);
    }
}

/// Builds a pre-3.5 plain character ring of `len` bytes into which `text` was written.
pub fn plain_ring(len: u64, text: &[u8]) -> FakeSource {
    let mut src = FakeSource::new(0xffff_ffff_8100_0000);
    let p = src.alloc(8);
    let l = src.alloc(4);
    let e = src.alloc(4);
    let buf = src.alloc(len as usize);
    src.write_word(p, buf);
    src.write_uint(l, 4, len);
    src.write_uint(e, 4, text.len() as u64);
    for (i, &c) in text.iter().enumerate() {
        let a = buf + (i as u64 % len);
        src.write(a, &[c]);
    }
    src.set_symbol("log_buf", p);
    src.set_symbol("log_buf_len", l);
    src.set_symbol("log_end", e);
    src.set_symbol("logged_chars", e);
    src
}
