//! `rkdump filter` (makedumpfile) and `rkdump unflatten` (makedumpfile -R): argument handling,
//! progress display and the end-of-run report. The work is `rkdump_vmcore::write`.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use rkdump_vmcore::write::{self, codec::Compression, DumpFormat, FilterOptions, FilterReport, Output};

/// Progress on stderr when it is a terminal: percent, elapsed time, ETA and the rate at which
/// the dump is written, redrawn at most 10 times a second. Silent otherwise (scripts, the
/// capture console).
pub struct Progress {
    label: &'static str,
    start: Instant,
    last: Option<Instant>,
    tty: bool,
}

impl Progress {
    pub fn new(label: &'static str) -> Self {
        Progress { label, start: Instant::now(), last: None, tty: std::io::stderr().is_terminal() }
    }

    /// `written()` gives the bytes of output so far, asked only when the line is redrawn.
    pub fn update(&mut self, done: u64, total: u64, written: &dyn Fn() -> Option<u64>) {
        if !self.tty || total == 0 {
            return;
        }
        let now = Instant::now();
        if done < total && self.last.is_some_and(|l| now.duration_since(l).as_millis() < 100) {
            return;
        }
        self.last = Some(now);
        let frac = done as f64 / total as f64;
        let secs = self.start.elapsed().as_secs_f64();
        let eta = if frac > 0.0 { secs / frac - secs } else { 0.0 };
        let width = 30;
        let filled = ((frac * width as f64) as usize).min(width);
        let rate = match written() {
            Some(b) if secs > 0.0 => format!(", {:.1} MiB/s written", b as f64 / 1048576.0 / secs),
            _ => String::new(),
        };
        eprint!(
            "\r{} [{}{}] {:5.1}%  {:.1} s elapsed, ETA {:.1} s{rate} ",
            self.label,
            "#".repeat(filled),
            " ".repeat(width - filled),
            frac * 100.0,
            secs,
            eta.max(0.0)
        );
        if done >= total {
            eprintln!();
        }
    }
}

/// The codec chosen by makedumpfile's flags; none given: zstd (BENCHMARKS.md).
pub fn codec(c: bool, l: bool, p: bool, z: bool, name: Option<&str>) -> Result<Compression> {
    let flags = [(c, Compression::Zlib), (l, Compression::Lzo), (p, Compression::Snappy), (z, Compression::Zstd)];
    let chosen: Vec<Compression> = flags.iter().filter(|(on, _)| *on).map(|(_, c)| *c).collect();
    if chosen.len() > 1 || (!chosen.is_empty() && name.is_some()) {
        bail!("choose one compression: -c (zlib), -l (lzo), -p (snappy), -z (zstd) or --codec");
    }
    if let Some(c) = chosen.first() {
        return Ok(*c);
    }
    Ok(match name.unwrap_or("zstd") {
        "zstd" => Compression::Zstd,
        "lzo" => Compression::Lzo,
        "zlib" => Compression::Zlib,
        "snappy" => Compression::Snappy,
        "none" => Compression::None,
        other => bail!("unknown codec {other:?}: use zstd, lzo, zlib, snappy or none"),
    })
}

/// makedumpfile's `--message-level` bits that rkdump honours: the progress bar, the closing
/// lines, the report of pages per class.
pub const MSG_PROGRESS: u8 = 1;
pub const MSG_COMMON: u8 = 2;
pub const MSG_REPORT: u8 = 16;

/// makedumpfile options that change how makedumpfile works, not what it writes: accepted so
/// that its command lines run unchanged, and ignored with a note.
#[derive(clap::Args, Debug, Default)]
#[command(next_help_heading = "makedumpfile options accepted and ignored")]
pub struct IgnoredOptions {
    /// makedumpfile's cyclic buffer size; rkdump's memory is bounded by fixed windows at any
    /// machine size.
    #[arg(long, value_name = "KB")]
    pub cyclic_buffer: Option<u64>,
    /// makedumpfile's non-cyclic mode (whole bitmaps in memory); see --cyclic-buffer.
    #[arg(long)]
    pub non_cyclic: bool,
    /// makedumpfile's block size of --split; rkdump writes one file.
    #[arg(long, value_name = "KB")]
    pub splitblock_size: Option<u64>,
    /// makedumpfile's directory for bitmap files; rkdump keeps no temporary files.
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<std::path::PathBuf>,
    /// makedumpfile's debug messages.
    #[arg(short = 'D')]
    pub debug: bool,
    /// makedumpfile's vmlinux with debug information; rkdump needs only the dump's VMCOREINFO.
    #[arg(short = 'x', value_name = "VMLINUX")]
    pub vmlinux: Option<std::path::PathBuf>,
}

impl IgnoredOptions {
    /// One line naming the options given, or `None`.
    pub fn note(&self) -> Option<String> {
        let given: Vec<&str> = [
            (self.cyclic_buffer.is_some(), "--cyclic-buffer"),
            (self.non_cyclic, "--non-cyclic"),
            (self.splitblock_size.is_some(), "--splitblock-size"),
            (self.work_dir.is_some(), "--work-dir"),
            (self.debug, "-D"),
            (self.vmlinux.is_some(), "-x"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, name)| *name)
        .collect();
        (!given.is_empty()).then(|| {
            format!(
                "makedumpfile option{} {} ignored: rkdump's memory use is bounded at any machine size, it needs no work files and reads the kernel's layout from the dump's VMCOREINFO",
                if given.len() > 1 { "s" } else { "" },
                given.join(", ")
            )
        })
    }
}

/// Whether `out` may be written: it does not exist, or `force` is given and it is a regular
/// file other than the input (makedumpfile -f).
fn check_output(input: &Path, out: &Path, force: bool) -> Result<()> {
    let meta = match std::fs::metadata(out) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot check {}", out.display())),
    };
    if !force {
        bail!("{} already exists; remove it first, or give -f to overwrite it", out.display());
    }
    if !meta.is_file() {
        bail!("{} exists and is not a regular file; -f overwrites only a regular file", out.display());
    }
    use std::os::unix::fs::MetadataExt;
    if let Ok(inp) = std::fs::metadata(input) {
        if inp.dev() == meta.dev() && inp.ino() == meta.ino() {
            bail!("{} is the input itself; write the filtered dump to another file", out.display());
        }
    }
    Ok(())
}

/// Runs the filter. `out` None means stdout (flattened only, like makedumpfile -F).
/// `message_level` is makedumpfile's mask ([`MSG_PROGRESS`], [`MSG_COMMON`], [`MSG_REPORT`]);
/// `force` overwrites an existing output file (makedumpfile -f).
pub fn run(
    input: &Path,
    out: Option<&Path>,
    opts: FilterOptions,
    message_level: u8,
    force: bool,
) -> Result<FilterReport> {
    if opts.dump_level > 31 {
        bail!("-d {}: the dump level is a bit mask from 0 to 31", opts.dump_level);
    }
    if out.is_none() && !opts.flattened {
        bail!("no output file: give OUT, or -F to write a flattened stream to standard output");
    }
    if out.is_none() && std::io::stdout().is_terminal() {
        bail!("refusing to write a flattened dump to a terminal: redirect standard output");
    }
    if let Some(o) = out {
        check_output(input, o, force)?;
    }
    let start = Instant::now();
    let mut progress = Progress::new("filtering");
    progress.tty &= message_level & MSG_PROGRESS != 0;
    let report = match out {
        Some(path) => {
            // Bytes allocated to the file (the descriptor table is a hole until it is written).
            let written = || {
                use std::os::unix::fs::MetadataExt;
                std::fs::metadata(path).ok().map(|m| m.blocks() * 512)
            };
            write::filter(input, Output::Path(path), &opts, &mut |d, t| progress.update(d, t, &written))
        }
        None => {
            let stdout = std::io::stdout();
            let count = std::cell::Cell::new(0u64);
            let mut counted =
                Counted { inner: std::io::BufWriter::with_capacity(1 << 20, stdout.lock()), count: &count };
            let written = || Some(count.get());
            let r =
                write::filter(input, Output::Stream(&mut counted), &opts, &mut |d, t| progress.update(d, t, &written));
            counted.flush().context("flushing standard output")?;
            r
        }
    }
    .with_context(|| {
        let target = out.map(|o| o.display().to_string()).unwrap_or_else(|| "standard output".into());
        format!("filtering {} to {target} failed (a partial dump is marked incomplete)", input.display())
    })?;
    print_report(&report, &opts, start.elapsed().as_secs_f64(), out.is_some(), message_level);
    Ok(report)
}

/// A writer that counts the bytes it passes on (the progress line's rate on a stream).
struct Counted<'c, W: Write> {
    inner: W,
    count: &'c std::cell::Cell<u64>,
}

impl<W: Write> Write for Counted<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn print_report(r: &FilterReport, opts: &FilterOptions, secs: f64, to_file: bool, message_level: u8) {
    let mut e = std::io::BufWriter::new(std::io::stderr().lock());
    report_text(&mut e, r, opts, secs, to_file, message_level);
}

/// The end-of-run report: the pages per class (message level bit 16), the closing lines
/// (bit 2), warnings always. One write for the whole (stderr is unbuffered: about 160 small
/// writes otherwise).
fn report_text(e: &mut dyn Write, r: &FilterReport, opts: &FilterOptions, secs: f64, to_file: bool, message_level: u8) {
    if message_level & MSG_REPORT != 0 {
        class_table(e, r, opts);
    }
    if message_level & MSG_COMMON != 0 {
        closing_lines(e, r, opts, secs, to_file);
    }
    if r.unreadable_pages > 0 {
        let _ = writeln!(
            e,
            "rkdump: warning: {} pages could not be read from the input and were written as zeros",
            r.unreadable_pages
        );
    }
    if let Some(d) = &r.degraded {
        let _ = writeln!(e, "rkdump: warning: page classification degraded ({d:?}): only zero pages were filtered");
    }
}

fn class_table(e: &mut dyn Write, r: &FilterReport, opts: &FilterOptions) {
    let c = &r.counts;
    let original = c.original();
    let excluded = c.excluded();
    let pct = |n: u64| if original == 0 { 0.0 } else { n as f64 * 100.0 / original as f64 };
    let _ = writeln!(
        e,
        "dump level {} ({})",
        r.dump_level,
        match opts.format {
            DumpFormat::Elf => "ELF".to_string(),
            DumpFormat::Kdump => format!("kdump-compressed, {:?}", opts.compression).to_lowercase(),
        }
    );
    if let Some(l) = r.input_dump_level.filter(|_| r.dump_level != opts.dump_level) {
        let _ = writeln!(
            e,
            "  (-d {} asked; the input was written at dump level {l}, and what it left out cannot come back)",
            opts.dump_level
        );
    }
    let _ = writeln!(e, "original pages     {original:>12}");
    let _ = writeln!(e, "  zero             {:>12}", c.zero);
    let _ = writeln!(e, "  cache            {:>12}", c.cache);
    let _ = writeln!(e, "  cache private    {:>12}", c.cache_private);
    let _ = writeln!(e, "  user             {:>12}", c.user);
    let _ = writeln!(e, "  free             {:>12}", c.free);
    let _ = writeln!(e, "  free (per-CPU)   {:>12}", c.free_percpu);
    let _ = writeln!(e, "  hwpoison         {:>12}", c.hwpoison);
    let _ = writeln!(e, "  offline          {:>12}", c.offline);
    let _ = writeln!(e, "excluded pages     {excluded:>12} ({:.1}%)", pct(excluded));
    let _ = writeln!(
        e,
        "remaining pages    {:>12} ({:.1}%)",
        original.saturating_sub(excluded),
        pct(original.saturating_sub(excluded))
    );
    let _ = writeln!(e, "memory hole        {:>12}", c.memhole);
    let _ = writeln!(e, "total pages        {:>12}", c.total);
}

fn closing_lines(e: &mut dyn Write, r: &FilterReport, opts: &FilterOptions, secs: f64, to_file: bool) {
    if to_file {
        let _ =
            writeln!(e, "wrote {} bytes ({:.1} MiB) in {secs:.2} s", r.output_bytes, r.output_bytes as f64 / 1048576.0);
    } else {
        let _ = writeln!(e, "streamed a flattened dump in {secs:.2} s");
    }
    if r.shared_pages > 0 {
        let _ = writeln!(e, "  {} pages identical to an earlier page share its stored copy", r.shared_pages);
    }
    let threads =
        if opts.num_threads <= 1 { "the main thread".to_string() } else { format!("{} threads", opts.num_threads) };
    let _ = writeln!(
        e,
        "  classifying {:.3} s, page data {:.3} s on {threads}",
        r.classify_time.as_secs_f64(),
        (secs - r.classify_time.as_secs_f64()).max(0.0)
    );
}

/// makedumpfile -R: a flattened stream (a file, or `-` for standard input) into a
/// kdump-compressed file.
pub fn unflatten(input: &str, out: &Path) -> Result<u64> {
    if out.exists() {
        bail!("{} already exists; remove it first", out.display());
    }
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| format!("cannot create {}", out.display()))?;
    let size = if input == "-" {
        let stdin = std::io::stdin();
        let mut lock = std::io::BufReader::with_capacity(1 << 20, stdin.lock());
        rkdump_vmcore::flat::unflatten(&mut lock, &file, out)
    } else {
        let f = std::fs::File::open(input).with_context(|| format!("cannot open {input}"))?;
        let mut r = std::io::BufReader::with_capacity(1 << 20, f);
        rkdump_vmcore::flat::unflatten(&mut r, &file, out)
    }
    .with_context(|| format!("unflattening into {} failed", out.display()))?;
    file.sync_all().with_context(|| format!("fsync {}", out.display()))?;
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn force_overwrites_only_a_regular_file_other_than_the_input() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("vmcore");
        let out = dir.path().join("dump");
        std::fs::write(&input, b"x").unwrap();
        // A new file: fine either way.
        assert!(check_output(&input, &out, false).is_ok());
        std::fs::write(&out, b"old").unwrap();
        let e = check_output(&input, &out, false).unwrap_err().to_string();
        assert!(e.contains("already exists") && e.contains("-f"), "{e}");
        assert!(check_output(&input, &out, true).is_ok());
        // The input under another name, and a directory, are refused even with -f.
        let link = dir.path().join("same");
        std::fs::hard_link(&input, &link).unwrap();
        let e = check_output(&input, &link, true).unwrap_err().to_string();
        assert!(e.contains("the input itself"), "{e}");
        let e = check_output(&input, dir.path(), true).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
    }

    #[test]
    fn ignored_makedumpfile_options_are_named_in_one_note() {
        assert_eq!(IgnoredOptions::default().note(), None);
        let o = IgnoredOptions { cyclic_buffer: Some(1024), debug: true, ..IgnoredOptions::default() };
        let note = o.note().unwrap();
        assert!(note.starts_with("makedumpfile options --cyclic-buffer, -D ignored"), "{note}");
        let o = IgnoredOptions { work_dir: Some("/tmp".into()), ..IgnoredOptions::default() };
        assert!(o.note().unwrap().starts_with("makedumpfile option --work-dir ignored"));
    }

    #[test]
    fn codec_flags_follow_makedumpfile() {
        assert_eq!(codec(true, false, false, false, None).unwrap(), Compression::Zlib);
        assert_eq!(codec(false, true, false, false, None).unwrap(), Compression::Lzo);
        assert_eq!(codec(false, false, true, false, None).unwrap(), Compression::Snappy);
        assert_eq!(codec(false, false, false, true, None).unwrap(), Compression::Zstd);
        assert_eq!(codec(false, false, false, false, None).unwrap(), Compression::Zstd);
        assert_eq!(codec(false, false, false, false, Some("none")).unwrap(), Compression::None);
        assert!(codec(true, true, false, false, None).is_err());
        assert!(codec(true, false, false, false, Some("lzo")).is_err());
        assert!(codec(false, false, false, false, Some("brotli")).is_err());
    }

    #[test]
    fn message_level_selects_the_report_parts_and_warnings_stay() {
        let text = |level: u8, unreadable: u64| {
            let r = FilterReport { unreadable_pages: unreadable, output_bytes: 4096, ..FilterReport::default() };
            let mut out = Vec::new();
            report_text(&mut out, &r, &FilterOptions::default(), 1.0, true, level);
            String::from_utf8(out).unwrap()
        };
        let all = text(31, 0);
        assert!(all.contains("original pages") && all.contains("wrote 4096 bytes"), "{all}");
        // kdump-utils' `--message-level 7`: no report of pages per class.
        let seven = text(7, 0);
        assert!(!seven.contains("original pages") && seven.contains("wrote 4096 bytes"), "{seven}");
        let report_only = text(16, 0);
        assert!(report_only.contains("original pages") && !report_only.contains("wrote"), "{report_only}");
        assert_eq!(text(1, 0), "");
        assert!(text(0, 3).contains("3 pages could not be read"));
    }

    #[test]
    fn a_raised_dump_level_is_reported() {
        let r = FilterReport { dump_level: 31, input_dump_level: Some(31), ..FilterReport::default() };
        let opts = FilterOptions { dump_level: 1, ..FilterOptions::default() };
        let mut out = Vec::new();
        report_text(&mut out, &r, &opts, 1.0, true, 31);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("dump level 31 ("), "{text}");
        assert!(text.contains("-d 1 asked; the input was written at dump level 31"), "{text}");
        // Not raised: no note.
        let mut out = Vec::new();
        report_text(&mut out, &FilterReport { dump_level: 1, ..r }, &opts, 1.0, true, 31);
        assert!(!String::from_utf8(out).unwrap().contains("asked"));
    }
}
