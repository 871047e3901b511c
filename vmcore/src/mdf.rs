//! makedumpfile's page-count report as an oracle.
//!
//! Parses the report `makedumpfile --message-level 31` prints ("Pages filled with zero :
//! 0x...", ...) and compares it with [`crate::info::InfoReport::to_json`]. Used by the tests
//! that check rkdump's classification against the real makedumpfile. [`real_vmcores`] finds
//! the vmcores those tests run on.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Every `$RKDUMP_VMCORES/*/vmcore` (`make test` sets it to the crash tests'
/// `target/e2e/vmcores`), sorted. `None`, after printing SKIPPED, when the variable is unset
/// and nothing is found; a panic when it is set but holds no vmcore, so that a test run meant
/// to use real vmcores cannot pass without them.
pub fn real_vmcores() -> Option<Vec<PathBuf>> {
    let explicit = std::env::var_os("RKDUMP_VMCORES");
    let root = explicit.clone().map(PathBuf::from).unwrap_or_default();
    let mut cores: Vec<PathBuf> = std::fs::read_dir(&root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("vmcore"))
        .filter(|p| p.is_file())
        .collect();
    cores.sort();
    if cores.is_empty() {
        assert!(explicit.is_none(), "RKDUMP_VMCORES={} holds no */vmcore", root.display());
        eprintln!("SKIPPED: no */vmcore under {} (set RKDUMP_VMCORES to run)", root.display());
        return None;
    }
    Some(cores)
}

/// The debug vmlinux crash needs for the kernel that wrote the vmcore at `core`
/// (`RKDUMP_VMLINUX`, else `/usr/lib/debug/boot/vmlinux-<its OSRELEASE>`, which `make deps`
/// installs), when that file exists and crash runs.
pub fn debug_vmlinux(core: &Path) -> Option<PathBuf> {
    let release = crate::ElfVmcore::open(core)
        .ok()
        .and_then(|e| e.vmcoreinfo().and_then(|v| v.osrelease()).map(str::to_string))
        .unwrap_or_default();
    let p = std::env::var_os("RKDUMP_VMLINUX")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(format!("/usr/lib/debug/boot/vmlinux-{release}")));
    let crash_ok = Command::new("crash")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    (p.is_file() && crash_ok).then_some(p)
}

/// Counts from a makedumpfile report, keyed like [`crate::info::InfoReport::to_json`].
pub type MdfCounts = Vec<(&'static str, u64)>;

const LINES: [(&str, &str); 11] = [
    ("Original pages", "original"),
    ("Pages filled with zero", "zero"),
    ("Non-private cache pages", "cache"),
    ("Private cache pages", "cache_private"),
    ("User process data pages", "user"),
    ("Free pages", "free"),
    ("Hwpoison pages", "hwpoison"),
    ("Offline pages", "offline"),
    ("Remaining pages", "remaining_at_level_31"),
    ("Memory Hole", "memory_hole"),
    ("Total pages", "total"),
];

/// Parse the report text; `None` if any expected line is missing.
pub fn parse_report(text: &str) -> Option<MdfCounts> {
    let mut out = Vec::new();
    for (label, key) in LINES {
        let v = text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            if k.trim() != label {
                return None;
            }
            u64::from_str_radix(v.trim().trim_start_matches("0x"), 16).ok()
        })?;
        out.push((key, v));
    }
    Some(out)
}

/// Run `makedumpfile -l -d 31 --message-level 31 VMCORE OUT` and parse its report.
pub fn run_makedumpfile(vmcore: &Path, out: &Path) -> Result<MdfCounts, String> {
    run_makedumpfile_level(vmcore, out, 31)
}

/// [`ClassCounts`](crate::classify::ClassCounts) keyed like makedumpfile's report (the
/// `remaining_at_level_31` key holds the remaining pages at whatever level was counted).
pub fn counts_json(c: &crate::classify::ClassCounts) -> serde_json::Value {
    serde_json::json!({
        "original": c.original(), "zero": c.zero, "cache": c.cache,
        "cache_private": c.cache_private, "user": c.user, "free": c.free, "free_percpu": c.free_percpu,
        "hwpoison": c.hwpoison, "offline": c.offline,
        "remaining_at_level_31": c.remaining(), "memory_hole": c.memhole, "total": c.total,
    })
}

/// Whether makedumpfile runs here (tests that take it as their oracle skip without it).
pub fn available() -> bool {
    Command::new("makedumpfile").arg("-v").output().is_ok()
}

/// Run `makedumpfile -l -d LEVEL --message-level 31 VMCORE OUT` and parse its report.
pub fn run_makedumpfile_level(vmcore: &Path, out: &Path, level: u8) -> Result<MdfCounts, String> {
    let _ = std::fs::remove_file(out);
    let o = Command::new("makedumpfile")
        .args(["-l", "-d", &level.to_string(), "--message-level", "31"])
        .arg(vmcore)
        .arg(out)
        .output()
        .map_err(|e| format!("cannot run makedumpfile: {e}"))?;
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let _ = std::fs::remove_file(out);
    if !o.status.success() {
        return Err(format!("makedumpfile failed on {}:\n{text}", vmcore.display()));
    }
    parse_report(&text).ok_or_else(|| format!("no page report in makedumpfile output:\n{text}"))
}

/// Panic with a per-key diff unless every makedumpfile count equals rkdump's.
pub fn assert_same(theirs: &MdfCounts, ours: &serde_json::Value, what: &str) {
    let mut diffs = Vec::new();
    for (k, v) in theirs {
        let o = ours.get(*k).and_then(|x| x.as_u64());
        if o != Some(*v) {
            diffs.push(format!("{k}: makedumpfile {v}, rkdump {o:?}"));
        }
    }
    assert!(diffs.is_empty(), "{what}: counts differ:\n  {}", diffs.join("\n  "));
}

/// [`assert_same`] for counts that left out the free pages of the per-CPU lists, which
/// makedumpfile keeps and counts as zero pages or remaining pages: those two keys are
/// compared as `zero + remaining + free_percpu`, every other key as it is.
pub fn assert_same_but_percpu(theirs: &MdfCounts, ours: &serde_json::Value, what: &str) {
    let get = |k: &str| ours.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
    let kept = get("zero") + get("remaining_at_level_31") + get("free_percpu");
    let mut adjusted = ours.clone();
    let theirs_zero = theirs.iter().find(|(k, _)| *k == "zero").map_or(0, |(_, v)| *v);
    assert!(get("zero") <= theirs_zero, "{what}: {} zero pages, makedumpfile {theirs_zero}", get("zero"));
    adjusted["zero"] = theirs_zero.into();
    adjusted["remaining_at_level_31"] = kept.saturating_sub(theirs_zero).into();
    assert_same(theirs, &adjusted, what);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_report() {
        let t = "Original pages  : 0x000000000000439f\n  Excluded pages   : 0x1\n    Pages filled with zero  : 0x0000000000003a21\n    Non-private cache pages : 0x14\n    Private cache pages     : 0x8\n    User process data pages : 0x410\n    Free pages              : 0x419\n    Hwpoison pages          : 0x1\n    Offline pages           : 0x4\n  Remaining pages  : 0x134\nMemory Hole     : 0xc061\nTotal pages     : 0x10400\n";
        let r = parse_report(t).unwrap();
        assert_eq!(r[0], ("original", 0x439f));
        assert_eq!(r[10], ("total", 0x10400));
        assert!(parse_report("nothing").is_none());
    }
}
