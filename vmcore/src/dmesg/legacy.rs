//! The pre-5.10 kernel log buffers.
//!
//! **Structured** (3.5-5.9): `*SYMBOL(log_buf)` is a byte buffer of `*SYMBOL(log_buf_len)`
//! bytes holding variable-length records, each a header followed by text (and a dictionary
//! that neither peer prints):
//!
//! ```text
//! struct printk_log { u64 ts_nsec; u16 len; u16 text_len; u16 dict_len; u8 facility;
//!                     u8 flags:5, level:3; [u32 caller_id;] }   // SIZE(printk_log) = 16/20
//! ```
//!
//! (3.5-3.10 call it `struct log`: `SIZE(log)`, `OFFSET(log.*)`.) The walk starts at
//! `*SYMBOL(log_first_idx)` and ends at `*SYMBOL(log_next_idx)`; `idx += len` moves to the
//! next record, and a header with `len == 0` is the wrap marker: the next record is at 0.
//! vmcore-dmesg prints the marker itself as an empty record (it reads the header before
//! checking `len`); makedumpfile prints the record at 0 in its place.
//!
//! Bounds beyond the peers: the walk may wrap once (a second wrap is a cycle), may not pass
//! `log_next_idx`, every header must lie inside the buffer and a non-zero `len` must cover
//! the header; otherwise the walk stops with a note. Text running past the buffer is a
//! corrupt record (skipped, counted).
//!
//! **Plain** (before 3.5): a character ring; `*SYMBOL(log_end)` counts bytes ever written.
//! Both peers print the last `min(log_end, log_buf_len)` bytes in order, verbatim.

use super::lockless::Window;
use super::{
    check_field, check_struct_size, need, push_caller, push_text, push_timestamp, read_u32, read_word, BufferKind,
    DmesgError, DmesgStats, Endian, Format, Key, LogSource, Sink, MAX_RING_BYTES, MAX_STRUCT_SIZE,
};

const STRUCTURED: &str = "structured printk_log buffer";
const PLAIN: &str = "plain log_buf ring";

/// Header layout of `struct printk_log` (or `struct log`).
struct Header {
    size: u64,
    ts_nsec: u64,
    len: u64,
    text_len: u64,
    caller_id: Option<u64>,
}

impl Header {
    fn from_vmcoreinfo(src: &dyn LogSource) -> Result<Self, DmesgError> {
        // vmcore-dmesg and makedumpfile accept both names; 3.11+ uses printk_log.
        let (st, size) = match (src.size("printk_log"), src.size("log")) {
            (Some(s), _) => ("printk_log", s),
            (None, Some(s)) => ("log", s),
            (None, None) => {
                return Err(DmesgError::MissingKey {
                    key: "SIZE(printk_log) (or SIZE(log) before 3.11)".to_string(),
                    buffer: STRUCTURED,
                })
            }
        };
        let off = |field: &str| need(src, Key::Offset, &format!("{st}.{field}"), STRUCTURED);
        let h = Header {
            size,
            ts_nsec: off("ts_nsec")?,
            len: off("len")?,
            text_len: off("text_len")?,
            caller_id: src.offset(&format!("{st}.caller_id")),
        };
        check_struct_size(st, h.size)?;
        check_field("printk_log.ts_nsec", h.ts_nsec, 8, h.size)?;
        check_field("printk_log.len", h.len, 2, h.size)?;
        check_field("printk_log.text_len", h.text_len, 2, h.size)?;
        if let Some(c) = h.caller_id {
            check_field("printk_log.caller_id", c, 4, h.size)?;
        }
        Ok(h)
    }
}

fn endian(src: &dyn LogSource) -> Result<Endian, DmesgError> {
    let word = src.word_size();
    if word != 4 && word != 8 {
        return Err(DmesgError::BadLayout { detail: format!("word size {word} is not 4 or 8") });
    }
    Ok(Endian { big: src.big_endian(), word })
}

/// Reads `log_buf` and `log_buf_len` and checks the length.
fn log_buf(src: &dyn LogSource, e: Endian, buffer: &'static str) -> Result<(u64, u64), DmesgError> {
    let buf_sym = need(src, Key::Symbol, "log_buf", buffer)?;
    let len_sym = need(src, Key::Symbol, "log_buf_len", buffer)?;
    let addr = read_word(src, e, "the log_buf pointer", buf_sym)?;
    // An `int` in the kernel; negative values are corrupt.
    let len = read_u32(src, e, "log_buf_len", len_sym)?;
    let len = u64::from(len);
    if len == 0 || len > MAX_RING_BYTES {
        return Err(DmesgError::TooLarge { what: "log_buf_len", value: len, limit: MAX_RING_BYTES });
    }
    Ok((addr, len))
}

/// Walks the variable-length record buffer (3.5-5.9).
pub(crate) fn walk_structured(
    src: &dyn LogSource,
    format: Format,
    sink: &mut Sink<'_>,
) -> Result<DmesgStats, DmesgError> {
    let e = endian(src)?;
    let h = Header::from_vmcoreinfo(src)?;
    let first_sym = need(src, Key::Symbol, "log_first_idx", STRUCTURED)?;
    let next_sym = need(src, Key::Symbol, "log_next_idx", STRUCTURED)?;
    let (buf_addr, buf_len) = log_buf(src, e, STRUCTURED)?;
    let first_idx = u64::from(read_u32(src, e, "log_first_idx", first_sym)?);
    let next_idx = u64::from(read_u32(src, e, "log_next_idx", next_sym)?);

    let mut stats = DmesgStats { buffer: BufferKind::Structured, ..DmesgStats::default() };
    let mut win = Window::new(src, "the log_buf records", buf_addr, buf_len);
    let hdr_len = usize::try_from(h.size).unwrap_or(MAX_STRUCT_SIZE as usize);
    let caller_off = if format == Format::Makedumpfile { h.caller_id } else { None };
    // Every step but a wrap advances by at least one header: this bounds any walk.
    let max_steps = buf_len / h.size + 2;
    let mut line: Vec<u8> = Vec::with_capacity(1024);
    let mut idx = first_idx;
    let mut wrapped = false;
    let mut steps = 0u64;

    while idx != next_idx {
        steps += 1;
        if steps > max_steps {
            stats.stopped_early = Some(format!(
                "more than {max_steps} records between log_first_idx {first_idx} and \
                 log_next_idx {next_idx}"
            ));
            break;
        }
        let hdr_end = idx.checked_add(h.size).filter(|&end| end <= buf_len);
        if hdr_end.is_none() {
            stats.stopped_early = Some(format!("record index {idx} lies outside log_buf ({buf_len} bytes)"));
            break;
        }
        let hdr = match win.get(idx, hdr_len) {
            Ok(hdr) => hdr.to_vec(),
            Err(err) => {
                if stats.records == 0 {
                    return Err(err);
                }
                stats.stopped_early = Some(format!("{err}"));
                break;
            }
        };
        let len = e.u16(&hdr, h.len).map(u64::from).unwrap_or(0);
        let is_marker = len == 0;
        if is_marker && wrapped {
            stats.stopped_early = Some(format!(
                "the walk wrapped twice (cycle) at index {idx}; log_first_idx {first_idx}, \
                 log_next_idx {next_idx}"
            ));
            break;
        }
        if !is_marker && len < h.size {
            stats.stopped_early = Some(format!("record at index {idx} has length {len}, shorter than its header"));
            break;
        }

        // The record to print: vmcore-dmesg prints the marker header itself, makedumpfile
        // the record at index 0 (and then continues after it).
        let (rec_idx, rec_hdr) = if is_marker && format != Format::VmcoreDmesg {
            match win.get(0, hdr_len) {
                Ok(hdr0) => (0, hdr0.to_vec()),
                Err(_) => {
                    stats.stopped_early = Some("cannot read the record at index 0".to_string());
                    break;
                }
            }
        } else {
            (idx, hdr)
        };
        let rec_len = e.u16(&rec_hdr, h.len).map(u64::from).unwrap_or(0);
        if is_marker && format != Format::VmcoreDmesg && rec_len < h.size {
            stats.stopped_early =
                Some(format!("record at index 0 after the wrap has length {rec_len}, shorter than its header"));
            break;
        }
        print_record(&mut win, e, &h, rec_idx, &rec_hdr, buf_len, format, caller_off, &mut line, sink, &mut stats)?;

        // Next index.
        let new_idx = if is_marker {
            wrapped = true;
            if format == Format::VmcoreDmesg {
                0
            } else {
                rec_len
            }
        } else {
            idx + len // idx + header <= buf_len and len <= u16::MAX: no overflow
        };
        // A valid walk never passes log_next_idx: before the wrap it only does so when the
        // log wraps (first > next), after the wrap never.
        let passed = if wrapped || first_idx <= next_idx { new_idx > next_idx } else { false };
        if passed {
            stats.stopped_early = Some(format!("the walk passed log_next_idx {next_idx} (at index {new_idx})"));
            break;
        }
        idx = new_idx;
    }
    Ok(stats)
}

/// Prints one structured record whose header `hdr` sits at `idx`.
#[allow(clippy::too_many_arguments)]
fn print_record(
    win: &mut Window<'_>,
    e: Endian,
    h: &Header,
    idx: u64,
    hdr: &[u8],
    buf_len: u64,
    format: Format,
    caller_off: Option<u64>,
    line: &mut Vec<u8>,
    sink: &mut Sink<'_>,
    stats: &mut DmesgStats,
) -> Result<(), DmesgError> {
    let ts = e.u64(hdr, h.ts_nsec).unwrap_or(0);
    let text_len = e.u16(hdr, h.text_len).unwrap_or(0);
    let text_off = idx + h.size;
    if text_off.checked_add(u64::from(text_len)).map_or(true, |end| end > buf_len) {
        stats.corrupted += 1;
        return Ok(());
    }
    line.clear();
    push_timestamp(line, ts);
    if let Some(c) = caller_off {
        push_caller(line, e.u32(hdr, c).unwrap_or(0));
    }
    let indent = line.len();
    match win.get(text_off, usize::from(text_len)) {
        Ok(text) => push_text(line, text, format, indent),
        Err(_) => {
            stats.corrupted += 1;
            return Ok(());
        }
    }
    line.push(b'\n');
    sink.write(line)?;
    stats.records += 1;
    Ok(())
}

/// Copies out the plain character ring (before 3.5).
pub(crate) fn walk_plain(src: &dyn LogSource, sink: &mut Sink<'_>) -> Result<DmesgStats, DmesgError> {
    let e = endian(src)?;
    let end_sym = need(src, Key::Symbol, "log_end", PLAIN)?;
    let (buf_addr, buf_len) = log_buf(src, e, PLAIN)?;
    // `unsigned` since 2.6.25 (an `unsigned long` before: its low half on little-endian).
    let log_end = u64::from(read_u32(src, e, "log_end", end_sym)?);
    let logged = log_end.min(buf_len);
    // The oldest byte kept is at (log_end - logged) % buf_len.
    let start = (log_end - logged) % buf_len;
    let mut win = Window::new(src, "the log_buf ring", buf_addr, buf_len);
    let mut done = 0u64;
    while done < logged {
        let pos = (start + done) % buf_len;
        let chunk = (logged - done).min(buf_len - pos).min(64 * 1024);
        let bytes = win.get(pos, chunk as usize)?;
        sink.write(bytes)?;
        done += chunk;
    }
    Ok(DmesgStats { buffer: BufferKind::Plain, ..DmesgStats::default() })
}
