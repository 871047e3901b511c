//! Kernel log extraction: the `rkdump dmesg` command and `vmcore-dmesg.txt`.
//!
//! The dumped kernel's log lives in one of three buffers, chosen from VMCOREINFO keys only
//! (never from the kernel version), in the same order as kexec-tools' `vmcore-dmesg`:
//!
//! 1. `SYMBOL(prb)` present: the **lockless ring buffer** (Linux 5.10+), see [`lockless`].
//!    `*prb` points at a `struct printk_ringbuffer` holding a descriptor ring (`descs[]`,
//!    `infos[]`, `head_id`, `tail_id`, `count_bits`) and a text data ring (`data`,
//!    `size_bits`). The walk visits descriptor ids `tail_id ..= head_id`, prints the
//!    committed/finalized ones and resolves each text block (`begin`/`next` logical
//!    positions, a leading id word, wrapped blocks stored at ring offset 0).
//! 2. `SYMBOL(log_first_idx)` present: the **variable-length `printk_log` records**
//!    (3.5-5.9; `SIZE(log)`/`OFFSET(log.*)` on 3.5-3.10), see [`legacy`]. The walk goes
//!    from `log_first_idx` to `log_next_idx`; a zero-length header is the wrap marker.
//! 3. `SYMBOL(log_end)` present: the **plain character ring** of older kernels; the last
//!    `min(log_end, log_buf_len)` bytes are copied out verbatim.
//!
//! Records are rendered by [`Format`]: byte-identical to `vmcore-dmesg` (kexec-tools
//! 2.0.25) or to `makedumpfile --dump-dmesg` (current upstream with the caller column, or
//! 1.7.2 and older without it).
//!
//! The kernel crashed, so its log may be corrupt. Every walk is bounded (at most one pass
//! over the descriptor ring or the log buffer), every size is checked before reading or
//! allocating (descriptor ring ≤ 2^24 entries, data ring and log buffer ≤ 1 GiB), and
//! memory is read through small windows, never as one allocation of a kernel-supplied size.
//! A record whose position or length is impossible is skipped and counted in
//! [`DmesgStats::corrupted`]; the output then ends with a line
//! `rkdump: skipped N corrupted log records`. A walk that must stop early (a cycle, an index
//! outside the buffer, inconsistent head/tail ids) ends with an `rkdump:` line saying why.
//! Valid logs never trigger either line, so the output stays byte-identical to the peers.
//!
//! Not yet supported: makedumpfile's `--partial-dmesg` (start at `clear_seq`/`clear_idx`),
//! and makedumpfile's signed-char escaping of bytes >= 0x80 (`\xffffffc3`): we print
//! `\xc3` like vmcore-dmesg.

use std::fmt;
use std::io::Write;

pub mod legacy;
pub mod lockless;
#[doc(hidden)]
pub mod testing;

#[cfg(test)]
mod tests;

/// Error returned by a [`LogSource`] read; the extractor adds the address and what it read.
pub type SourceError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What the log extractor needs from a dump.
///
/// Implemented by the vmcore reader (ELF `/proc/vmcore`, kdump-compressed, ...) and by
/// [`testing::FakeSource`] for unit tests and fuzzing.
pub trait LogSource {
    /// Reads kernel virtual memory at `addr` into `buf` (the implementor translates the
    /// address). Must fill all of `buf` or fail.
    fn read_kva(&self, addr: u64, buf: &mut [u8]) -> Result<(), SourceError>;
    /// VMCOREINFO `SYMBOL(name)`: the address of a kernel variable.
    fn symbol(&self, name: &str) -> Option<u64>;
    /// VMCOREINFO `SIZE(name)`: the size of a structure.
    fn size(&self, name: &str) -> Option<u64>;
    /// VMCOREINFO `OFFSET(name)`, `name` written `"printk_info.seq"`.
    fn offset(&self, name: &str) -> Option<u64>;
    /// VMCOREINFO `LENGTH(name)`: an array length.
    fn length(&self, name: &str) -> Option<u64>;
    /// Size in bytes of a kernel `long`/pointer in the dump: 8 (ELFCLASS64, the default) or
    /// 4 (32-bit kernels). The lockless walk prefers `SIZE(atomic_long_t)` when present.
    fn word_size(&self) -> usize {
        8
    }
    /// Whether the dumped kernel is big-endian (s390x, ppc64 BE). Default: little-endian.
    fn big_endian(&self) -> bool {
        false
    }
}

/// Output format of [`extract`]. All formats print the same records; they differ in the
/// record prefix, in data-less records and in how embedded newlines are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// kexec-tools `vmcore-dmesg`: `[%5llu.%06llu] text`, no caller column, embedded
    /// newlines printed as is, data-less records printed as a bare timestamp, the legacy
    /// buffer's wrap marker printed as an empty record (as vmcore-dmesg does).
    #[default]
    VmcoreDmesg,
    /// Upstream `makedumpfile --dump-dmesg` (1.7.3+): the timestamp, then `[%8s] ` with
    /// `T<pid>`/`C<cpu>` when VMCOREINFO has `OFFSET(printk_info.caller_id)` (5.10+) or
    /// `OFFSET(printk_log.caller_id)` (CONFIG_PRINTK_CALLER); every embedded newline is
    /// followed by spaces as wide as the prefix; data-less records are skipped.
    Makedumpfile,
    /// `makedumpfile --dump-dmesg` 1.7.2 and older (the Debian 12 package): like
    /// [`Format::Makedumpfile`] without the caller column.
    Makedumpfile172,
}

impl Format {
    fn is_makedumpfile(self) -> bool {
        matches!(self, Format::Makedumpfile | Format::Makedumpfile172)
    }
}

/// Which kernel log buffer the dump holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BufferKind {
    /// Lockless `printk_ringbuffer` (5.10+).
    #[default]
    Lockless,
    /// Variable-length `printk_log` records (3.5-5.9).
    Structured,
    /// Plain character ring (before 3.5).
    Plain,
}

/// What [`extract`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DmesgStats {
    /// The buffer that was walked.
    pub buffer: BufferKind,
    /// Records written (including data-less ones printed by `vmcore-dmesg` format). For the
    /// plain ring, always 0.
    pub records: u64,
    /// Data-less records met (printed as a bare timestamp by vmcore-dmesg, skipped by
    /// makedumpfile).
    pub dataless: u64,
    /// Descriptors skipped because they were not committed/finalized or their id did not
    /// match (both peers skip these silently: normal at the tail and head of the ring).
    pub not_committed: u64,
    /// Records skipped because they were corrupt (impossible positions or lengths,
    /// unreadable memory). Non-zero adds the `rkdump: skipped N ...` line.
    pub corrupted: u64,
    /// Why the walk stopped before its normal end, if it did (also printed as an
    /// `rkdump:` line at the end of the output).
    pub stopped_early: Option<String>,
    /// Bytes written to the output, notes included.
    pub bytes_written: u64,
}

/// Errors of kernel log extraction. Corrupt records are not errors (they are counted in
/// [`DmesgStats`]); these are the failures that leave no log to print.
#[derive(Debug, thiserror::Error)]
pub enum DmesgError {
    /// No known log buffer: none of `SYMBOL(prb)`, `SYMBOL(log_first_idx)`,
    /// `SYMBOL(log_end)` is in VMCOREINFO.
    #[error(
        "no kernel log buffer in VMCOREINFO: none of SYMBOL(prb), SYMBOL(log_first_idx), \
         SYMBOL(log_end) is present; is the VMCOREINFO note missing from the dump?"
    )]
    NoLogBuffer,
    /// A VMCOREINFO key the chosen walk needs is absent.
    #[error("VMCOREINFO key {key} is missing; it is needed to read the {buffer} kernel log")]
    MissingKey {
        /// The key, e.g. `OFFSET(printk_info.text_len)`.
        key: String,
        /// Which buffer needed it.
        buffer: &'static str,
    },
    /// VMCOREINFO describes a layout that cannot be right (a field outside its struct, a
    /// struct of absurd size).
    #[error("implausible VMCOREINFO layout: {detail}")]
    BadLayout {
        /// What is wrong, with the values.
        detail: String,
    },
    /// A size read from the dump exceeds the extractor's limits (the ring is corrupt).
    #[error("{what} is {value}, above the limit of {limit}; the kernel log buffer is corrupt")]
    TooLarge {
        /// Which value.
        what: &'static str,
        /// Its value.
        value: u64,
        /// The limit.
        limit: u64,
    },
    /// Reading a structure of the log from the dump failed.
    #[error("cannot read {what} ({len} bytes at kernel address {addr:#x})")]
    Read {
        /// What was being read.
        what: &'static str,
        /// Kernel virtual address.
        addr: u64,
        /// Length of the read.
        len: usize,
        /// The source's error.
        #[source]
        source: SourceError,
    },
    /// Writing the output failed.
    #[error("cannot write the kernel log")]
    Write(#[source] std::io::Error),
}

/// Largest descriptor ring accepted: 2^24 descriptors.
pub const MAX_COUNT_BITS: u32 = 24;
/// Largest data ring or log buffer accepted: 1 GiB.
pub const MAX_RING_BYTES: u64 = 1 << 30;
/// Largest structure size accepted from VMCOREINFO (printk_info is 88 bytes on x86_64).
pub const MAX_STRUCT_SIZE: u64 = 4096;

/// Extracts the kernel log of `src` and writes it to `out` in `format`.
///
/// Chooses the buffer from VMCOREINFO (lockless, then structured, then plain), walks it
/// with bounds, and appends `rkdump:` note lines only when records were corrupt or the walk
/// had to stop early.
pub fn extract(src: &dyn LogSource, format: Format, out: &mut dyn Write) -> Result<DmesgStats, DmesgError> {
    let mut sink = Sink::new(out);
    let mut stats = if src.symbol("prb").is_some() {
        lockless::walk(src, format, &mut sink)?
    } else if src.symbol("log_first_idx").is_some() {
        legacy::walk_structured(src, format, &mut sink)?
    } else if src.symbol("log_end").is_some() {
        legacy::walk_plain(src, &mut sink)?
    } else {
        return Err(DmesgError::NoLogBuffer);
    };
    if stats.corrupted > 0 {
        let note = format!(
            "rkdump: skipped {} corrupted log record{}\n",
            stats.corrupted,
            if stats.corrupted == 1 { "" } else { "s" }
        );
        sink.write(note.as_bytes())?;
    }
    if let Some(why) = &stats.stopped_early {
        let note = format!("rkdump: kernel log walk stopped early: {why}\n");
        sink.write(note.as_bytes())?;
    }
    stats.bytes_written = sink.written;
    Ok(stats)
}

/// The output with a byte count.
pub(crate) struct Sink<'a> {
    out: &'a mut dyn Write,
    written: u64,
}

impl<'a> Sink<'a> {
    fn new(out: &'a mut dyn Write) -> Self {
        Sink { out, written: 0 }
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<(), DmesgError> {
        self.out.write_all(bytes).map_err(DmesgError::Write)?;
        self.written = self.written.saturating_add(bytes.len() as u64);
        Ok(())
    }
}

/// Byte order and word size of the dumped kernel.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Endian {
    pub(crate) big: bool,
    /// Size of a kernel `long`: 4 or 8.
    pub(crate) word: usize,
}

impl Endian {
    /// Reads an unsigned integer of `width` bytes (1..=8) at `off` in `buf`.
    pub(crate) fn uint(&self, buf: &[u8], off: u64, width: usize) -> Option<u64> {
        let start = usize::try_from(off).ok()?;
        let end = start.checked_add(width)?;
        let bytes = buf.get(start..end)?;
        let mut v: u64 = 0;
        if self.big {
            for &b in bytes {
                v = (v << 8) | u64::from(b);
            }
        } else {
            for &b in bytes.iter().rev() {
                v = (v << 8) | u64::from(b);
            }
        }
        Some(v)
    }

    pub(crate) fn u16(&self, buf: &[u8], off: u64) -> Option<u16> {
        self.uint(buf, off, 2).and_then(|v| u16::try_from(v).ok())
    }

    pub(crate) fn u32(&self, buf: &[u8], off: u64) -> Option<u32> {
        self.uint(buf, off, 4).and_then(|v| u32::try_from(v).ok())
    }

    pub(crate) fn u64(&self, buf: &[u8], off: u64) -> Option<u64> {
        self.uint(buf, off, 8)
    }

    /// Reads a kernel `long`/pointer.
    pub(crate) fn word(&self, buf: &[u8], off: u64) -> Option<u64> {
        self.uint(buf, off, self.word)
    }
}

/// Reads exactly `len` bytes at `addr`, with context on failure. `len` must already be
/// bounded by the caller.
pub(crate) fn read_vec(src: &dyn LogSource, what: &'static str, addr: u64, len: usize) -> Result<Vec<u8>, DmesgError> {
    let mut buf = vec![0u8; len];
    src.read_kva(addr, &mut buf).map_err(|source| DmesgError::Read { what, addr, len, source })?;
    Ok(buf)
}

/// Reads one kernel word at `addr`.
pub(crate) fn read_word(src: &dyn LogSource, e: Endian, what: &'static str, addr: u64) -> Result<u64, DmesgError> {
    let buf = read_vec(src, what, addr, e.word)?;
    e.word(&buf, 0).ok_or_else(|| DmesgError::BadLayout { detail: format!("word size {} is not supported", e.word) })
}

/// Reads one u32 at `addr`.
pub(crate) fn read_u32(src: &dyn LogSource, e: Endian, what: &'static str, addr: u64) -> Result<u32, DmesgError> {
    let buf = read_vec(src, what, addr, 4)?;
    e.u32(&buf, 0).ok_or_else(|| DmesgError::BadLayout { detail: format!("cannot decode {what}") })
}

/// A VMCOREINFO key kind, for lookups with a readable error.
#[derive(Clone, Copy)]
pub(crate) enum Key {
    Symbol,
    Size,
    Offset,
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Key::Symbol => "SYMBOL",
            Key::Size => "SIZE",
            Key::Offset => "OFFSET",
        })
    }
}

/// Looks up a required VMCOREINFO value.
pub(crate) fn need(src: &dyn LogSource, kind: Key, name: &str, buffer: &'static str) -> Result<u64, DmesgError> {
    let v = match kind {
        Key::Symbol => src.symbol(name),
        Key::Size => src.size(name),
        Key::Offset => src.offset(name),
    };
    v.ok_or_else(|| DmesgError::MissingKey { key: format!("{kind}({name})"), buffer })
}

/// Checks that a field of `width` bytes at `off` lies inside a struct of `size` bytes.
pub(crate) fn check_field(what: &str, off: u64, width: u64, size: u64) -> Result<(), DmesgError> {
    match off.checked_add(width) {
        Some(end) if end <= size => Ok(()),
        _ => Err(DmesgError::BadLayout {
            detail: format!("{what} (offset {off}, {width} bytes) lies outside its struct of {size} bytes"),
        }),
    }
}

/// Checks a structure size taken from VMCOREINFO.
pub(crate) fn check_struct_size(what: &str, size: u64) -> Result<(), DmesgError> {
    if size == 0 || size > MAX_STRUCT_SIZE {
        return Err(DmesgError::BadLayout { detail: format!("SIZE({what}) = {size}, expected 1..={MAX_STRUCT_SIZE}") });
    }
    Ok(())
}

/// Whether C's `isprint()` holds in the "C" locale.
fn is_print(c: u8) -> bool {
    (0x20..=0x7e).contains(&c)
}

/// Whether C's `isspace()` holds in the "C" locale.
fn is_space(c: u8) -> bool {
    c == b' ' || (0x09..=0x0d).contains(&c)
}

/// Appends `"[%5llu.%06llu] "` for a timestamp in nanoseconds.
pub(crate) fn push_timestamp(line: &mut Vec<u8>, ts_nsec: u64) {
    let secs = ts_nsec / 1_000_000_000;
    let usecs = (ts_nsec % 1_000_000_000) / 1000;
    // Writing to a Vec cannot fail.
    let _ = write!(line, "[{secs:5}.{usecs:06}] ");
}

/// Appends makedumpfile's caller column `"[%8s] "` with `T<pid>` or `C<cpu>`.
pub(crate) fn push_caller(line: &mut Vec<u8>, caller_id: u32) {
    const CPU_FLAG: u32 = 0x8000_0000;
    let kind = if caller_id & CPU_FLAG != 0 { 'C' } else { 'T' };
    let id = format!("{kind}{}", caller_id & !CPU_FLAG);
    let _ = write!(line, "[{id:>8}] ");
}

/// Appends record text, escaping as `format` does. `indent` is the prefix width
/// (makedumpfile indents continuation lines by it).
pub(crate) fn push_text(line: &mut Vec<u8>, text: &[u8], format: Format, indent: usize) {
    for &c in text {
        if c == b'\n' && format.is_makedumpfile() {
            line.push(b'\n');
            line.resize(line.len().saturating_add(indent), b' ');
        } else if is_print(c) || is_space(c) {
            line.push(c);
        } else {
            // makedumpfile passes a (signed) char here and prints e.g. "\xffffffc3" for
            // bytes >= 0x80; we print the byte unsigned, as vmcore-dmesg does.
            let _ = write!(line, "\\x{c:02x}");
        }
    }
}

/// A dump as the log extractor sees it: kernel virtual memory (translated through the
/// dumped page tables) plus the dump's VMCOREINFO.
pub struct DumpSource<'a, M: crate::memory::PhysMemory + ?Sized> {
    /// Translated kernel memory.
    pub kmem: crate::kmem::KernelMemory<'a, M>,
    /// The dump's VMCOREINFO.
    pub info: &'a crate::vmcoreinfo::VmcoreInfo,
}

impl<M: crate::memory::PhysMemory + ?Sized> LogSource for DumpSource<'_, M> {
    fn read_kva(&self, addr: u64, buf: &mut [u8]) -> Result<(), SourceError> {
        self.kmem.read_virt(crate::addr::VirtAddr(addr), buf).map_err(|e| Box::new(e) as SourceError)
    }
    fn symbol(&self, name: &str) -> Option<u64> {
        self.info.symbol(name)
    }
    fn size(&self, name: &str) -> Option<u64> {
        self.info.size(name)
    }
    fn offset(&self, name: &str) -> Option<u64> {
        self.info.offset(name)
    }
    fn length(&self, name: &str) -> Option<u64> {
        self.info.length(name)
    }
}
