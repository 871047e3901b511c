//! The save steps: what gets written into the dump directory, one pluggable step at a time.
//!
//! The boot sequence creates `<target><path>/127.0.0.1-YYYY-MM-DD-HH:MM:SS/` (0700) and runs
//! its [`SaveStep`]s in order. Every file is written under `<name>-incomplete` (0600), fsynced,
//! renamed to `<name>` and the directory fsynced ([`commit`]), so a dump is never called complete
//! when it is not. Today's only step is [`CopyVmcore`], an unfiltered copy of `/proc/vmcore`;
//! a filtering/compressing writer and a `vmcore-dmesg.txt` step slot in beside it.

use std::time::Duration;

use crate::boot::Init;
use crate::log::Level;
use crate::plan::{Codec, Collector, DumpFormat};
use crate::sys::{read_full_at, write_all, Errno, Open, OsError, Sys};

/// The dump source in the capture kernel.
pub const VMCORE: &str = "/proc/vmcore";
/// Size of one mmap window of `/proc/vmcore` (page aligned).
pub const MMAP_WINDOW: usize = 8 << 20;
/// Size of the `read()` fallback buffer.
pub const READ_BUFFER: usize = 4 << 20;
/// Suffix of a file still being written.
pub const INCOMPLETE: &str = "-incomplete";

/// Where the dump goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpDir {
    /// Absolute path in the capture environment (`/kdumproot/var/crash/127.0.0.1-...`).
    pub path: String,
    /// The same directory as seen on the target filesystem (`/var/crash/127.0.0.1-...`).
    pub on_target: String,
}

/// Why a save step failed. The partial file, if any, keeps its `-incomplete` name.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SaveError {
    #[error("cannot open {path}: {}", OsError(*.errno))]
    Open { path: String, errno: Errno },
    #[error("cannot read {path} at offset {offset}: {}", OsError(*.errno))]
    Read { path: String, offset: u64, errno: Errno },
    #[error("{path} ended at offset {offset}, expected {expected} bytes")]
    ShortSource { path: String, offset: u64, expected: u64 },
    #[error("cannot write {path} at offset {offset}: {}", OsError(*.errno))]
    Write { path: String, offset: u64, errno: Errno },
    #[error("cannot fsync {path}: {}", OsError(*.errno))]
    Fsync { path: String, errno: Errno },
    #[error("cannot rename {from} to {to}: {}", OsError(*.errno))]
    Rename { from: String, to: String, errno: Errno },
    #[error("cannot extract {what}: {reason}")]
    Extract { what: String, reason: String },
}

/// One thing saved into the dump directory.
pub trait SaveStep<S: Sys> {
    /// Short name for logs (`vmcore`, `vmcore-dmesg.txt`).
    fn name(&self) -> &str;
    /// Whether a failure of this step fails the capture (runs failure_action). A best-effort
    /// step (e.g. the kernel log) returns false: its error is logged and the next step runs.
    fn required(&self) -> bool {
        true
    }
    /// Writes the step's file(s) into `dir`.
    fn run(&mut self, init: &mut Init<S>, dir: &DumpDir) -> Result<(), SaveError>;
    /// Writes the step's data to the raw target `device` (kdump.conf `raw`). `Ok(false)`: the
    /// step has nothing for a raw device (it holds one dump and no files).
    fn run_raw(&mut self, init: &mut Init<S>, device: &str) -> Result<bool, SaveError> {
        let _ = (init, device);
        Ok(false)
    }
}

/// The default steps: the crashed kernel's log first (so that a failed vmcore still leaves the
/// panic message, as kdump-utils does), then the vmcore as the plan's collector says.
pub fn default_steps<S: Sys>() -> Vec<Box<dyn SaveStep<S>>> {
    vec![Box::new(SaveDmesg::new(vmcore_dmesg)), Box::new(SaveVmcore::new(filter_vmcore))]
}

/// Writes a filtered dump of `src` into the existing file `dst` as the collector says, calling
/// `progress(done, total)`; returns a one-line summary. The file is left marked incomplete
/// (kdump status flag / ELF e_flags) on failure.
pub type DumpWriter =
    fn(src: &str, dst: &str, collector: Collector, progress: &mut dyn FnMut(u64, u64)) -> Result<String, String>;

/// The real [`DumpWriter`]: the vmcore crate's makedumpfile-compatible filter.
pub fn filter_vmcore(
    src: &str,
    dst: &str,
    collector: Collector,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<String, String> {
    use rkdump_vmcore::write::{self, codec::Compression, FilterOptions, Output};
    let Collector::Filter { dump_level, format, codec, keep_percpu_free } = collector else {
        return Err("the copy collector has no filter".into());
    };
    let compression = match codec {
        Codec::Zstd => Compression::Zstd,
        Codec::Lzo => Compression::Lzo,
        Codec::Zlib => Compression::Zlib,
        Codec::Snappy => Compression::Snappy,
        Codec::None => Compression::None,
    };
    let opts = FilterOptions {
        dump_level,
        compression,
        format: match format {
            DumpFormat::Kdump | DumpFormat::Flattened => write::DumpFormat::Kdump,
            DumpFormat::Elf => write::DumpFormat::Elf,
        },
        flattened: format == DumpFormat::Flattened,
        // One thread per CPU of the capture kernel (one with the usual nr_cpus=1).
        num_threads: write::default_threads(),
        dedup: write::dedup::on_by_default(dump_level, compression),
        percpu_free: !keep_percpu_free,
    };
    let r = write::filter(std::path::Path::new(src), Output::Path(std::path::Path::new(dst)), &opts, progress)
        .map_err(|e| {
            // The whole chain: "cannot write ...: No space left on device".
            let mut msg = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                msg += &format!(": {c}");
                cause = c.source();
            }
            msg
        })?;
    let c = &r.counts;
    let mut summary = format!(
        "{} of {} pages kept ({} excluded: {} zero, {} cache, {} private cache, {} user, {} free, {} free per-CPU), {} bytes",
        c.original().saturating_sub(c.excluded()),
        c.original(),
        c.excluded(),
        c.zero,
        c.cache,
        c.cache_private,
        c.user,
        c.free,
        c.free_percpu,
        r.output_bytes
    );
    if r.shared_pages > 0 {
        summary += &format!("; {} pages identical to an earlier page share its copy", r.shared_pages);
    }
    if r.unreadable_pages > 0 {
        summary += &format!("; {} unreadable pages written as zeros", r.unreadable_pages);
    }
    if let Some(d) = &r.degraded {
        summary += &format!("; classification degraded ({d:?}): only zero pages were filtered");
    }
    Ok(summary)
}

/// The vmcore step: an unfiltered copy or a filtered dump, as the plan's collector says.
pub struct SaveVmcore {
    copy: CopyVmcore,
    writer: DumpWriter,
}

impl SaveVmcore {
    pub fn new(writer: DumpWriter) -> Self {
        SaveVmcore { copy: CopyVmcore::default(), writer }
    }
}

impl<S: Sys> SaveStep<S> for SaveVmcore {
    fn name(&self) -> &str {
        "vmcore"
    }

    fn run(&mut self, init: &mut Init<S>, dir: &DumpDir) -> Result<(), SaveError> {
        let collector = init.collector;
        if collector == Collector::Copy {
            return self.copy.run(init, dir);
        }
        let tmp = format!("{}/vmcore{INCOMPLETE}", dir.path);
        // Created here so the file has its 0600 mode before any byte of the dump is in it.
        let f =
            init.sys.open(&tmp, Open::Create(0o600)).map_err(|errno| SaveError::Open { path: tmp.clone(), errno })?;
        drop(f);
        init.log(Level::Info, &format!("filtering {VMCORE} to {}/vmcore (collector {collector})", dir.on_target));
        let start = init.sys.monotonic();
        let summary = write_synced(init, self.writer, &tmp, collector)?;
        commit(&mut init.sys, &dir.path, "vmcore")?;
        let secs = init.sys.monotonic().saturating_sub(start).as_secs_f64();
        init.log(Level::Info, &format!("saved {}/vmcore in {secs:.1} s: {summary}", dir.on_target));
        Ok(())
    }

    fn run_raw(&mut self, init: &mut Init<S>, device: &str) -> Result<bool, SaveError> {
        let collector = init.collector;
        if !matches!(collector, Collector::Filter { format: DumpFormat::Flattened, .. }) {
            return Err(SaveError::Extract {
                what: format!("a dump for the raw device {device}"),
                reason: format!(
                    "collector {collector} is not a flattened stream; rebuild the image with `rkdump build`"
                ),
            });
        }
        init.log(Level::Info, &format!("filtering {VMCORE} to the raw device {device} (collector {collector})"));
        let start = init.sys.monotonic();
        let summary = write_synced(init, self.writer, device, collector)?;
        let secs = init.sys.monotonic().saturating_sub(start).as_secs_f64();
        init.log(
            Level::Info,
            &format!("saved the dump to {device} in {secs:.1} s: {summary}; at the next boot, `rkdump save-raw {device}` copies it into a file"),
        );
        Ok(true)
    }
}

/// Runs `writer` from [`VMCORE`] into `dst` (logging every 10%), then fsyncs `dst`.
fn write_synced<S: Sys>(
    init: &mut Init<S>,
    writer: DumpWriter,
    dst: &str,
    collector: Collector,
) -> Result<String, SaveError> {
    let mut next = 10;
    let result = {
        let mut progress = |done: u64, total: u64| {
            let pct = done.saturating_mul(100).checked_div(total).unwrap_or(0);
            if pct >= next {
                init.log(Level::Info, &format!("vmcore: {pct}%"));
                next = (pct / 10 + 1) * 10;
            }
        };
        writer(VMCORE, dst, collector, &mut progress)
    };
    let summary = result.map_err(|reason| SaveError::Extract { what: "the filtered vmcore".into(), reason })?;
    let mut f = init.sys.open(dst, Open::Write).map_err(|errno| SaveError::Open { path: dst.to_string(), errno })?;
    init.sys.fsync(&mut f).map_err(|errno| SaveError::Fsync { path: dst.to_string(), errno })?;
    Ok(summary)
}

/// Extracts the kernel log of the dump at `path` in kexec-tools `vmcore-dmesg` format.
pub type LogExtractor = fn(path: &str) -> Result<Vec<u8>, String>;

/// The real [`LogExtractor`]: the vmcore crate's ELF reader, page tables and printk walker.
pub fn vmcore_dmesg(path: &str) -> Result<Vec<u8>, String> {
    use rkdump_vmcore::dmesg::{extract, DumpSource, Format};
    let core = rkdump_vmcore::ElfVmcore::open(path).map_err(|e| e.to_string())?;
    let info = core.vmcoreinfo().ok_or("the dump has no VMCOREINFO note")?;
    let kmem = rkdump_vmcore::KernelMemory::new(&core, info).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let stats = extract(&DumpSource { kmem, info }, Format::VmcoreDmesg, &mut out).map_err(|e| e.to_string())?;
    if stats.corrupted > 0 {
        // The note is already at the end of the text; the count goes to the console too.
        eprintln!("rkdump: kernel log: skipped {} corrupted records", stats.corrupted);
    }
    Ok(out)
}

/// Writes `vmcore-dmesg.txt` (under its `-incomplete` name, fsynced, renamed). Best effort: a
/// failure is logged and the vmcore is still saved.
pub struct SaveDmesg {
    extract: LogExtractor,
}

impl SaveDmesg {
    pub fn new(extract: LogExtractor) -> Self {
        SaveDmesg { extract }
    }
}

impl<S: Sys> SaveStep<S> for SaveDmesg {
    fn name(&self) -> &str {
        "vmcore-dmesg.txt"
    }

    fn required(&self) -> bool {
        false
    }

    fn run_raw(&mut self, init: &mut Init<S>, device: &str) -> Result<bool, SaveError> {
        init.log(
            Level::Info,
            &format!("the kernel log is not saved apart on the raw device {device}: `rkdump save-raw` extracts it from the dump"),
        );
        Ok(false)
    }

    fn run(&mut self, init: &mut Init<S>, dir: &DumpDir) -> Result<(), SaveError> {
        let text =
            (self.extract)(VMCORE).map_err(|reason| SaveError::Extract { what: "the kernel log".into(), reason })?;
        write_small_file(&mut init.sys, &dir.path, "vmcore-dmesg.txt", &text)?;
        init.log(Level::Info, &format!("saved {}/vmcore-dmesg.txt ({} bytes)", dir.on_target, text.len()));
        Ok(())
    }
}

/// Renames `<dir>/<name>-incomplete` to `<dir>/<name>` and fsyncs the directory. The file must
/// already be fsynced.
pub fn commit<S: Sys>(sys: &mut S, dir: &str, name: &str) -> Result<(), SaveError> {
    let from = format!("{dir}/{name}{INCOMPLETE}");
    let to = format!("{dir}/{name}");
    sys.rename(&from, &to).map_err(|errno| SaveError::Rename { from, to, errno })?;
    let mut d = sys.open(dir, Open::Directory).map_err(|errno| SaveError::Open { path: dir.into(), errno })?;
    sys.fsync(&mut d).map_err(|errno| SaveError::Fsync { path: dir.into(), errno })
}

/// Writes a small file completely: `<name>-incomplete` (0600), fsync, rename, fsync dir.
pub fn write_small_file<S: Sys>(sys: &mut S, dir: &str, name: &str, data: &[u8]) -> Result<(), SaveError> {
    let tmp = format!("{dir}/{name}{INCOMPLETE}");
    let mut f = sys.open(&tmp, Open::Create(0o600)).map_err(|errno| SaveError::Open { path: tmp.clone(), errno })?;
    write_all(sys, &mut f, data).map_err(|(done, errno)| SaveError::Write {
        path: tmp.clone(),
        offset: done as u64,
        errno,
    })?;
    sys.fsync(&mut f).map_err(|errno| SaveError::Fsync { path: tmp.clone(), errno })?;
    drop(f);
    commit(sys, dir, name)
}

/// Dump directory name: `<host>-YYYY-MM-DD-HH:MM:SS` in UTC, as kdump-utils names it.
pub fn dump_dir_name(host: &str, unix_secs: u64) -> String {
    let days = unix_secs / 86_400;
    let rem = unix_secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!("{host}-{y:04}-{m:02}-{d:02}-{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Days since 1970-01-01 -> (year, month, day) in the proleptic Gregorian calendar
/// (H. Hinnant's `civil_from_days`, for non-negative day counts).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn rate(bytes: u64, elapsed: Duration) -> String {
    let s = elapsed.as_secs_f64();
    if s > 0.0 {
        format!("{:.1} MiB/s", mib(bytes) / s)
    } else {
        "- MiB/s".into()
    }
}

/// Unfiltered copy of `/proc/vmcore` to `vmcore`, through mmap windows with a read() fallback.
#[derive(Debug, Clone)]
pub struct CopyVmcore {
    /// Source path (`/proc/vmcore`).
    pub source: String,
    /// mmap window size; a multiple of the page size.
    pub window: usize,
    /// read() fallback buffer size.
    pub buffer: usize,
}

impl Default for CopyVmcore {
    fn default() -> Self {
        CopyVmcore { source: VMCORE.into(), window: MMAP_WINDOW, buffer: READ_BUFFER }
    }
}

impl<S: Sys> SaveStep<S> for CopyVmcore {
    fn name(&self) -> &str {
        "vmcore"
    }

    fn run(&mut self, init: &mut Init<S>, dir: &DumpDir) -> Result<(), SaveError> {
        let src_path = self.source.clone();
        let tmp = format!("{}/vmcore{INCOMPLETE}", dir.path);
        let mut src =
            init.sys.open(&src_path, Open::Read).map_err(|errno| SaveError::Open { path: src_path.clone(), errno })?;
        // /proc/vmcore reports its size; 0 means unknown: copy until end of file.
        let total = init.sys.size(&mut src).unwrap_or(0);
        let mut dst =
            init.sys.open(&tmp, Open::Create(0o600)).map_err(|errno| SaveError::Open { path: tmp.clone(), errno })?;
        init.log(Level::Info, &format!("saving {} MiB of {src_path} to {}/vmcore", total >> 20, dir.on_target));
        let start = init.sys.monotonic();
        let mut use_mmap = total > 0 && self.window > 0;
        let mut buf: Vec<u8> = Vec::new();
        let mut offset = 0u64;
        let mut next_pct = 10u64;
        loop {
            if total > 0 && offset >= total {
                break;
            }
            let want =
                if total > 0 { (total - offset).min(self.window.max(self.buffer) as u64) } else { self.buffer as u64 };
            let n = if use_mmap {
                let len = usize::try_from(want.min(self.window as u64)).unwrap_or(self.window);
                match init.sys.mmap(&src, offset, len) {
                    Ok(map) => {
                        write_all(&mut init.sys, &mut dst, &map).map_err(|(done, errno)| SaveError::Write {
                            path: tmp.clone(),
                            offset: offset.saturating_add(done as u64),
                            errno,
                        })?;
                        map.len()
                    }
                    Err(e) => {
                        init.log(
                            Level::Warning,
                            &format!(
                                "mmap of {src_path} at offset {offset} failed ({}); falling back to read()",
                                OsError(e)
                            ),
                        );
                        use_mmap = false;
                        continue;
                    }
                }
            } else {
                if buf.is_empty() {
                    buf = vec![0u8; self.buffer.max(4096)];
                }
                let len = usize::try_from(want).unwrap_or(buf.len()).min(buf.len());
                let n = read_full_at(&mut init.sys, &mut src, offset, &mut buf[..len])
                    .map_err(|errno| SaveError::Read { path: src_path.clone(), offset, errno })?;
                if n == 0 {
                    if total > 0 {
                        return Err(SaveError::ShortSource { path: src_path, offset, expected: total });
                    }
                    break;
                }
                write_all(&mut init.sys, &mut dst, &buf[..n]).map_err(|(done, errno)| SaveError::Write {
                    path: tmp.clone(),
                    offset: offset.saturating_add(done as u64),
                    errno,
                })?;
                n
            };
            offset = offset.saturating_add(n as u64);
            if total > 0 {
                let pct = (u128::from(offset) * 100 / u128::from(total)) as u64;
                if pct >= next_pct {
                    let elapsed = init.sys.monotonic().saturating_sub(start);
                    init.log(
                        Level::Info,
                        &format!(
                            "vmcore: {pct}% ({:.0} of {:.0} MiB, {})",
                            mib(offset),
                            mib(total),
                            rate(offset, elapsed)
                        ),
                    );
                    next_pct = (pct / 10 + 1) * 10;
                }
            }
        }
        init.sys.fsync(&mut dst).map_err(|errno| SaveError::Fsync { path: tmp.clone(), errno })?;
        drop(dst);
        drop(src);
        commit(&mut init.sys, &dir.path, "vmcore")?;
        let elapsed = init.sys.monotonic().saturating_sub(start);
        init.log(
            Level::Notice,
            &format!(
                "saved {}/vmcore: {offset} bytes ({:.1} MiB) in {:.1} s, {}",
                dir.on_target,
                mib(offset),
                elapsed.as_secs_f64(),
                rate(offset, elapsed)
            ),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fake::{FakeSys, Node};

    #[test]
    fn directory_name_format() {
        assert_eq!(dump_dir_name("127.0.0.1", 0), "127.0.0.1-1970-01-01-00:00:00");
        // 2024-02-29 23:59:59 UTC (leap day).
        assert_eq!(dump_dir_name("127.0.0.1", 1_709_251_199), "127.0.0.1-2024-02-29-23:59:59");
        // 2025-06-01 08:05:03 UTC.
        assert_eq!(dump_dir_name("127.0.0.1", 1_748_765_103), "127.0.0.1-2025-06-01-08:05:03");
        // 2000-03-01 00:00:00 UTC (century leap year boundary).
        assert_eq!(dump_dir_name("127.0.0.1", 951_868_800), "127.0.0.1-2000-03-01-00:00:00");
    }

    fn setup(vmcore: Vec<u8>) -> Init<FakeSys> {
        let mut sys = FakeSys::new();
        sys.add_file(VMCORE, vmcore);
        sys.add("/d", Node::Dir);
        Init::new(sys)
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 253) as u8).collect()
    }

    fn dir() -> DumpDir {
        DumpDir { path: "/d".into(), on_target: "/var/crash/x".into() }
    }

    #[test]
    fn copy_through_mmap_windows_with_progress() {
        let data = pattern(10 * 4096 + 123);
        let mut init = setup(data.clone());
        let mut step = CopyVmcore { window: 8192, buffer: 8192, ..Default::default() };
        step.run(&mut init, &dir()).unwrap();
        assert_eq!(init.sys.file("/d/vmcore").unwrap(), &data[..]);
        assert!(init.sys.file("/d/vmcore-incomplete").is_none());
        assert_eq!(init.sys.modes["/d/vmcore"], 0o600);
        // The last, partial window cannot be mapped in the fake (like a vmcore whose size is
        // not page aligned): the tail comes through read().
        let maps = init.sys.calls_matching(&["mmap"]);
        assert_eq!(maps.len(), 6, "{maps:?}");
        assert!(init.sys.console.contains("falling back to read()"));
        let progress = init.sys.console.lines().filter(|l| l.contains("vmcore: ") && l.contains('%')).count();
        assert!((5..=10).contains(&progress), "{}", init.sys.console);
        assert!(init.sys.console.contains("vmcore: 100%"));
        let tail = init.sys.calls_matching(&["fsync", "rename"]);
        assert_eq!(tail, vec!["fsync /d/vmcore-incomplete", "rename /d/vmcore-incomplete /d/vmcore", "fsync /d"]);
    }

    #[test]
    fn copy_with_read_fallback_when_mmap_fails() {
        let data = pattern(3 * 4096);
        let mut init = setup(data.clone());
        init.sys.fail("mmap /proc/vmcore", Errno::NODEV);
        let mut step = CopyVmcore { window: 4096, buffer: 5000, ..Default::default() };
        step.run(&mut init, &dir()).unwrap();
        assert_eq!(init.sys.file("/d/vmcore").unwrap(), &data[..]);
        assert_eq!(init.sys.calls_matching(&["mmap"]).len(), 1, "mmap is not retried");
    }

    #[test]
    fn enospc_leaves_incomplete_file() {
        let data = pattern(6 * 4096);
        let mut init = setup(data.clone());
        init.sys.quota = Some(("/d/".into(), 10_000));
        let mut step = CopyVmcore { window: 4096, buffer: 4096, ..Default::default() };
        let err = step.run(&mut init, &dir()).unwrap_err();
        assert_eq!(err, SaveError::Write { path: "/d/vmcore-incomplete".into(), offset: 10_000, errno: Errno::NOSPC });
        assert!(err.to_string().contains("No space left on device"), "{err}");
        assert_eq!(init.sys.file("/d/vmcore-incomplete").unwrap(), &data[..10_000]);
        assert!(init.sys.file("/d/vmcore").is_none());
        assert!(init.sys.calls_matching(&["rename"]).is_empty());
    }

    #[test]
    fn small_file_commit() {
        let mut sys = FakeSys::new();
        sys.add("/d", Node::Dir);
        write_small_file(&mut sys, "/d", "vmcore-dmesg.txt", b"log").unwrap();
        assert_eq!(sys.file("/d/vmcore-dmesg.txt").unwrap(), b"log");
        assert_eq!(sys.modes["/d/vmcore-dmesg.txt"], 0o600);
    }
}
