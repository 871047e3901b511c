//! `rkdump info`: what a dump holds, with makedumpfile-compatible page counts.
//!
//! Opens the dump, classifies every page at dump level 31 in bounded windows (zero pages
//! from contents), and reports the same numbers as `makedumpfile --message-level 31`.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::classify::{ClassCounts, Classifier, ClassifyOptions, ClassifyStats, Degraded, DEFAULT_WINDOW};
use crate::elf::ElfVmcore;
use crate::write::{DumpSource, Input, WriteError};

/// Errors from [`info`].
#[derive(Debug, thiserror::Error)]
pub enum InfoError {
    /// The dump could not be opened.
    #[error("cannot read dump {path}")]
    Open {
        /// The dump.
        path: PathBuf,
        /// The cause.
        #[source]
        source: WriteError,
    },
}

/// A memory range of the dump.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RangeInfo {
    /// First physical byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

/// Everything `rkdump info` prints.
#[derive(Clone, Debug)]
pub struct InfoReport {
    /// The dump file.
    pub path: PathBuf,
    /// Container format.
    pub format: &'static str,
    /// The dump says its writer did not finish (kdump-compressed: header status INCOMPLETE;
    /// ELF: `e_flags` bit 0): pages past where it stopped read as missing.
    pub incomplete: bool,
    /// The dump level a filtered dump was written at (kdump-compressed: the sub-header's).
    pub written_at_dump_level: Option<u8>,
    /// `OSRELEASE`.
    pub kernel_release: Option<String>,
    /// `CRASHTIME` (seconds since the epoch).
    pub crash_time: Option<i64>,
    /// CPUs with a saved register set.
    pub cpus: usize,
    /// Page size.
    pub page_size: u64,
    /// 4 or 5, when translation is available.
    pub paging_levels: Option<u8>,
    /// Memory model, when mem_map was found.
    pub memory_model: Option<String>,
    /// PT_LOAD ranges.
    pub ranges: Vec<RangeInfo>,
    /// Page counts (dump level 31 semantics).
    pub counts: ClassCounts,
    /// Set when struct pages could not be decoded.
    pub degraded: Option<Degraded>,
    /// Whether free pages could be recognised.
    pub free_pages_supported: bool,
    /// Anomalies met.
    pub stats: ClassifyStats,
}

/// Build the report for the dump at `path`: an ELF vmcore (or /proc/vmcore), a
/// kdump-compressed file or a flattened stream saved to a file.
pub fn info(path: impl AsRef<Path>) -> Result<InfoReport, InfoError> {
    let path = path.as_ref();
    let input = Input::open(path).map_err(|source| InfoError::Open { path: path.to_path_buf(), source })?;
    Ok(match &input {
        Input::Elf(core) => info_from(core),
        Input::Kdump(d) => {
            let format = if d.is_flattened() { "flattened kdump-compressed" } else { "kdump-compressed" };
            InfoReport { incomplete: d.is_incomplete(), ..info_from_source(d.as_ref(), path, format) }
        }
    })
}

/// Build the report for an opened ELF dump.
pub fn info_from(core: &ElfVmcore) -> InfoReport {
    InfoReport {
        incomplete: core.ehdr().e_flags & crate::write::elf_out::ELF_FLAG_INCOMPLETE != 0,
        ..info_from_source(core, core.path(), "ELF")
    }
}

/// Build the report for any opened dump. On a filtered dump, pages it excluded read as
/// missing, so the counts describe what the dump still holds. `incomplete` is left false:
/// the callers above read it from the container's header.
pub fn info_from_source(src: &dyn DumpSource, path: &Path, format: &'static str) -> InfoReport {
    let vi = src.vmcoreinfo();
    let mut cls = Classifier::new(src, vi, ClassifyOptions::level(31));
    let counts = cls.count_all(DEFAULT_WINDOW, true);
    InfoReport {
        path: path.to_path_buf(),
        format,
        incomplete: false,
        written_at_dump_level: src.earlier_dump_level(),
        kernel_release: vi.and_then(|v| v.osrelease()).map(str::to_string),
        crash_time: vi.and_then(|v| v.crash_time()),
        cpus: src.nr_cpus(),
        page_size: src.page_size(),
        paging_levels: cls.kernel_memory().map(|k| k.paging().levels),
        memory_model: cls.memory_model().map(|m| format!("{m:?}")),
        ranges: src.ranges().iter().map(|r| RangeInfo { start: r.start.0, end: r.end.0 }).collect(),
        counts,
        degraded: cls.degraded().cloned(),
        free_pages_supported: cls.can_find_free_pages(),
        stats: cls.stats(),
    }
}

/// Page counts of an opened dump at any makedumpfile dump level (zero pages counted only
/// when bit 1 is set), with makedumpfile's report semantics.
pub fn counts_at_level(core: &ElfVmcore, dump_level: u8) -> ClassCounts {
    counts_with(core, ClassifyOptions::level(dump_level))
}

/// [`counts_at_level`] with any classifier options (`percpu_free: false`: makedumpfile's
/// page selection).
pub fn counts_with(core: &ElfVmcore, opts: ClassifyOptions) -> ClassCounts {
    let mut cls = Classifier::new(core, core.vmcoreinfo(), opts);
    cls.count_all(DEFAULT_WINDOW, opts.dump_level & 1 != 0)
}

impl InfoReport {
    /// Machine-readable form. Count keys mean what makedumpfile's `--message-level 31`
    /// report means, but for `free_percpu` (free pages of the per-CPU lists, which
    /// makedumpfile keeps): `excluded` counts them and `remaining_at_level_31` does not;
    /// makedumpfile counts them among its zero and remaining pages.
    pub fn to_json(&self) -> serde_json::Value {
        let c = &self.counts;
        serde_json::json!({
            "path": self.path.display().to_string(),
            "format": self.format,
            "incomplete": self.incomplete,
            "dump_level": self.written_at_dump_level,
            "kernel_release": self.kernel_release,
            "crash_time": self.crash_time,
            "cpus": self.cpus,
            "page_size": self.page_size,
            "paging_levels": self.paging_levels,
            "memory_model": self.memory_model,
            "memory_ranges": self.ranges.iter().map(|r| serde_json::json!({"start": r.start, "end": r.end})).collect::<Vec<_>>(),
            "total": c.total,
            "memory_hole": c.memhole,
            "original": c.original(),
            "zero": c.zero,
            "cache": c.cache,
            "cache_private": c.cache_private,
            "user": c.user,
            "free": c.free,
            "free_percpu": c.free_percpu,
            "hwpoison": c.hwpoison,
            "offline": c.offline,
            "excluded": c.excluded(),
            "remaining_at_level_31": c.remaining(),
            "free_pages_supported": self.free_pages_supported,
            "degraded": self.degraded.as_ref().map(|d| serde_json::json!({
                "missing_keys": d.missing_keys,
                "reason": d.reason,
            })),
            "unreadable_struct_pages": self.stats.unreadable_struct_pages,
            "invalid_free_orders": self.stats.invalid_free_orders,
            "unreadable_pages": self.stats.unreadable_pages,
        })
    }
}

impl fmt::Display for InfoReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counts;
        let opt = |s: &Option<String>| s.clone().unwrap_or_else(|| "unknown".into());
        writeln!(f, "dump:            {} ({})", self.path.display(), self.format)?;
        if self.incomplete {
            writeln!(
                f,
                "status:          INCOMPLETE: the writer stopped before the end (full disk, I/O error or interruption); pages it did not write read as missing"
            )?;
        }
        if let Some(l) = self.written_at_dump_level {
            writeln!(f, "written at:      dump level {l}")?;
        }
        writeln!(f, "kernel release:  {}", opt(&self.kernel_release))?;
        match self.crash_time {
            Some(t) => writeln!(f, "crash time:      {t} (seconds since the epoch)")?,
            None => writeln!(f, "crash time:      unknown")?,
        }
        writeln!(f, "cpus:            {}", self.cpus)?;
        writeln!(f, "page size:       {}", self.page_size)?;
        match self.paging_levels {
            Some(l) => writeln!(f, "paging levels:   {l}")?,
            None => writeln!(f, "paging levels:   unknown")?,
        }
        writeln!(f, "memory model:    {}", opt(&self.memory_model))?;
        writeln!(f, "memory ranges:")?;
        for r in &self.ranges {
            writeln!(f, "  {:#014x}-{:#014x} ({} KiB)", r.start, r.end, (r.end - r.start) / 1024)?;
        }
        if let Some(d) = &self.degraded {
            writeln!(f, "WARNING: page classes unavailable ({}); only zero pages are counted", d.reason)?;
        }
        if !self.free_pages_supported && self.degraded.is_none() {
            writeln!(f, "WARNING: this kernel exports no buddy page type: free pages are not recognised (free-list walk not yet supported)")?;
        }
        let pct = |n: u64| {
            if c.original() == 0 {
                0.0
            } else {
                n as f64 * 100.0 / c.original() as f64
            }
        };
        writeln!(f, "pages (dump level 31, makedumpfile semantics):")?;
        writeln!(f, "  original:                {:>12}", c.original())?;
        writeln!(f, "  excluded:                {:>12}", c.excluded())?;
        writeln!(f, "    zero:                  {:>12}", c.zero)?;
        writeln!(f, "    cache (non-private):   {:>12}", c.cache)?;
        writeln!(f, "    cache (private):       {:>12}", c.cache_private)?;
        writeln!(f, "    user:                  {:>12}", c.user)?;
        writeln!(f, "    free:                  {:>12}", c.free)?;
        writeln!(f, "    free (per-CPU lists):  {:>12}", c.free_percpu)?;
        writeln!(f, "    hwpoison:              {:>12}", c.hwpoison)?;
        writeln!(f, "    offline:               {:>12}", c.offline)?;
        writeln!(f, "  remaining:               {:>12} ({:.1}%)", c.remaining(), pct(c.remaining()))?;
        writeln!(f, "  memory hole:             {:>12}", c.memhole)?;
        writeln!(f, "  total:                   {:>12}", c.total)
    }
}
