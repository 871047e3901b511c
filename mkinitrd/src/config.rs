//! `kdump.conf` parser (kdump-utils syntax, kdump.conf(5)).
//!
//! One directive per line: `keyword value...`; `#` starts a comment anywhere on a line (as
//! kdumpctl strips them); blank lines are ignored. Directives:
//!
//! | keyword | rkdump |
//! |---|---|
//! | `<fstype> <dev\|UUID=\|LABEL=\|PARTUUID=>` (ext2, ext3, ext4, xfs, btrfs) | dump target; one only; without one, the filesystem holding `path` on the build machine ([`crate::mounts`]) |
//! | `path <dir>` | directory on the target (default `/var/crash`); without a target line, a directory of the build machine |
//! | `extra_modules m1 m2` | more modules (repeatable) |
//! | `raw <device>` | dump target: the device itself, as a flattened stream (needs `-F`; `path` ignored) |
//! | `core_collector makedumpfile <flags>` / `cp` | [`CoreCollector`] -> the plan's `Collector` (`-d`, `-c/-l/-p/-z`, `-E`, `-F` for raw targets, rkdump's `--keep-percpu-free`; `scp` not yet supported) |
//! | `failure_action` / `default` | reboot, halt, poweroff; shell (`/bin/sh` goes into the image) or dump_to_rootfs (the root filesystem of the build machine), then the final action |
//! | `final_action` | reboot, halt, poweroff |
//! | `force_rebuild`, `force_no_rebuild` | `0`/`1`; every `rkdump build` rebuilds anyway |
//! | `auto_reset_crashkernel`, `override_resettable` | accepted and ignored (warning) |
//! | `device_timeout <secs>` | rkdump only: how long the capture waits for the target |
//! | `hook_timeout <secs>` | rkdump only: how long a `kdump_pre`/`kdump_post`/`pre.d`/`post.d` hook may run before it is killed and counts as failed; default 300, `0` never |
//! | `stall_timeout <secs>` | rkdump only: how long the capture's work on the target (its mount, a save step, the final unmount and sync) may make no progress at all (a stuck target) before the failure action; default 300, `0` never |
//! | `kdump_pre <program>`, `kdump_post <program>` | hooks, with `/etc/kdump/pre.d` and `post.d` ([`crate::programs`]) |
//! | `extra_bins p1 p2` | more programs in the image (repeatable) |
//! | `dracut_args` | `--add-drivers`/`--force-drivers` become `extra_modules`; `--omit`, `--omit-drivers`, `--hostonly*`, `--compress` and other size/packaging options are ignored (warning); anything else is an error |
//! | `nfs ssh sshkey fence_kdump_*` | error: not yet supported |
//!
//! Anything else is an error naming the line.

use rkdump_init::plan::{Action, Codec, Collector, DeviceSpec, DumpFormat, Plan, Target, RAW};

/// Filesystems accepted as dump targets.
pub const FILESYSTEMS: &[&str] = &["ext2", "ext3", "ext4", "xfs", "btrfs"];

/// Keywords of kdump-utils that rkdump recognises but cannot honour yet.
pub const NOT_YET_SUPPORTED: &[&str] =
    &["nfs", "nfs4", "ssh", "sshkey", "fence_kdump_args", "fence_kdump_nodes", "virtiofs", "squashfs", "minix"];

/// Why a `kdump.conf` is rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A kdump-utils keyword rkdump does not implement yet.
    #[error("kdump.conf line {line}: `{keyword}` is not yet supported by rkdump")]
    NotYetSupported {
        /// 1-based line.
        line: usize,
        /// The keyword.
        keyword: String,
    },
    /// A keyword nobody knows.
    #[error("kdump.conf line {line}: unknown keyword `{keyword}`")]
    Unknown {
        /// 1-based line.
        line: usize,
        /// The keyword.
        keyword: String,
    },
    /// A keyword without its value.
    #[error("kdump.conf line {line}: `{keyword}` needs a value")]
    MissingValue {
        /// 1-based line.
        line: usize,
        /// The keyword.
        keyword: String,
    },
    /// A value that does not fit the keyword.
    #[error("kdump.conf line {line}: bad value {value:?} for `{keyword}`: expected {expected}")]
    BadValue {
        /// 1-based line.
        line: usize,
        /// The keyword.
        keyword: String,
        /// The value.
        value: String,
        /// What would be accepted.
        expected: String,
    },
    /// A second target line.
    #[error("kdump.conf line {line}: more than one dump target (first on line {first})")]
    TwoTargets {
        /// The second target's line.
        line: usize,
        /// The first target's line.
        first: usize,
    },
    /// The file could not be read.
    #[error("cannot read {path}: {message}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        message: String,
    },
    /// `force_rebuild 1` with `force_no_rebuild 1`.
    #[error("kdump.conf line {line}: force_rebuild and force_no_rebuild are mutually exclusive")]
    RebuildConflict {
        /// Line of the second one.
        line: usize,
    },
}

/// makedumpfile's compression flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CollectorCompression {
    /// `-c`
    Zlib,
    /// `-l`
    Lzo,
    /// `-p`
    Snappy,
    /// `-z`
    Zstd,
}

/// A parsed `core_collector` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreCollector {
    /// The program (`makedumpfile`, `cp`, ...).
    pub program: String,
    /// `-d N`.
    pub dump_level: Option<u8>,
    /// `-c` / `-l` / `-p` / `-z`.
    pub compression: Option<CollectorCompression>,
    /// `-F` (flattened output).
    pub flattened: bool,
    /// `-E` (ELF output).
    pub elf: bool,
    /// `--message-level N`.
    pub message_level: Option<u32>,
    /// `--num-threads N`.
    pub num_threads: Option<u32>,
    /// `--keep-percpu-free` (rkdump's own flag): keep the free pages of the per-CPU lists.
    pub keep_percpu_free: bool,
    /// Any other argument, verbatim.
    pub other: Vec<String>,
    /// The whole command line as written.
    pub raw: String,
}

impl CoreCollector {
    /// Parses `makedumpfile -l --message-level 7 -d 31` and friends.
    pub fn parse(value: &str) -> Result<Self, String> {
        let mut words = value.split_whitespace();
        let program = words.next().ok_or("a command")?.to_string();
        let mut c = CoreCollector {
            program: program.clone(),
            dump_level: None,
            compression: None,
            flattened: false,
            elf: false,
            message_level: None,
            num_threads: None,
            keep_percpu_free: false,
            other: Vec::new(),
            raw: value.to_string(),
        };
        if program.rsplit('/').next() != Some("makedumpfile") {
            c.other = words.map(str::to_string).collect();
            return Ok(c);
        }
        let num = |w: Option<&str>, flag: &str| -> Result<u32, String> {
            w.and_then(|v| v.parse().ok()).ok_or_else(|| format!("a number after {flag}"))
        };
        while let Some(w) = words.next() {
            // `-d31` as well as `-d 31`; `--message-level=7` as well as `--message-level 7`.
            match w {
                "-d" => c.dump_level = Some(dump_level(num(words.next(), "-d")?)?),
                _ if w.starts_with("-d") && w.len() > 2 => c.dump_level = Some(dump_level(num(Some(&w[2..]), "-d")?)?),
                "--message-level" => c.message_level = Some(num(words.next(), w)?),
                "--num-threads" => c.num_threads = Some(num(words.next(), w)?),
                "--keep-percpu-free" => c.keep_percpu_free = true,
                _ if w.starts_with("--message-level=") => {
                    c.message_level = Some(num(w.split_once('=').map(|x| x.1), "--message-level")?)
                }
                _ if w.starts_with("--num-threads=") => {
                    c.num_threads = Some(num(w.split_once('=').map(|x| x.1), "--num-threads")?)
                }
                _ if w.starts_with('-') && !w.starts_with("--") && w.len() > 1 => {
                    // Bundled short flags such as `-lF`.
                    for f in w[1..].chars() {
                        match f {
                            'c' => c.compression = Some(CollectorCompression::Zlib),
                            'l' => c.compression = Some(CollectorCompression::Lzo),
                            'p' => c.compression = Some(CollectorCompression::Snappy),
                            'z' => c.compression = Some(CollectorCompression::Zstd),
                            'F' => c.flattened = true,
                            'E' => c.elf = true,
                            _ => {
                                c.other.push(w.to_string());
                                break;
                            }
                        }
                    }
                }
                _ => c.other.push(w.to_string()),
            }
        }
        Ok(c)
    }
}

impl CoreCollector {
    /// What the capture init will run for this line, for a raw target (`raw`) or a filesystem.
    /// makedumpfile's meanings: no `-d` is level 0, no codec flag is an uncompressed kdump
    /// file, `-F` a flattened stream (what a raw target needs, as kdumpctl requires). `cp`/`cat`
    /// copy `/proc/vmcore` as is. Returns the collector and notes about ignored flags.
    pub fn to_collector(&self, raw: bool) -> Result<(Collector, Vec<String>), String> {
        let program = self.program.rsplit('/').next().unwrap_or("");
        let mut notes = Vec::new();
        match program {
            "cp" | "cat" => {
                if !self.other.is_empty() {
                    notes.push(format!(
                        "core_collector {program}: options `{}` ignored; the vmcore is copied as is",
                        self.other.join(" ")
                    ));
                }
                if raw {
                    return Err(format!(
                        "core_collector {program} cannot write to a raw target: use makedumpfile -F with its flags"
                    ));
                }
                return Ok((Collector::Copy, notes));
            }
            "makedumpfile" => {}
            "scp" => return Err("core_collector scp (ssh targets) is not yet supported".into()),
            other => return Err(format!("core_collector `{other}` is not supported: use makedumpfile <flags> or cp")),
        }
        match (self.flattened, raw) {
            (true, false) => {
                return Err("core_collector makedumpfile -F writes a flattened stream, which only a raw target takes (ssh targets are not yet supported)".into())
            }
            (false, true) => return Err("a raw target needs core_collector makedumpfile -F (a flattened stream), as kdumpctl requires".into()),
            _ => {}
        }
        if raw && self.elf {
            return Err("a raw target takes a flattened kdump-compressed stream, not -E".into());
        }
        if !self.other.is_empty() {
            notes.push(format!(
                "core_collector: makedumpfile options `{}` are ignored by the rkdump capture",
                self.other.join(" ")
            ));
        }
        if let Some(n) = self.num_threads {
            notes.push(format!(
                "core_collector: `--num-threads {n}` is ignored; the capture compresses with one thread per CPU of the capture kernel, at most 4 (one with the usual nr_cpus=1)"
            ));
        }
        let dump_level = self.dump_level.unwrap_or(0);
        let collector = if self.elf {
            Collector::Filter {
                dump_level,
                format: DumpFormat::Elf,
                codec: Codec::None,
                keep_percpu_free: self.keep_percpu_free,
            }
        } else {
            let codec = match self.compression {
                Some(CollectorCompression::Zlib) => Codec::Zlib,
                Some(CollectorCompression::Lzo) => Codec::Lzo,
                Some(CollectorCompression::Snappy) => Codec::Snappy,
                Some(CollectorCompression::Zstd) => Codec::Zstd,
                None => Codec::None,
            };
            let format = if raw { DumpFormat::Flattened } else { DumpFormat::Kdump };
            Collector::Filter { dump_level, format, codec, keep_percpu_free: self.keep_percpu_free }
        };
        Ok((collector, notes))
    }
}

/// Splits a command line into words the way a shell would for simple quoting (`'...'`,
/// `"..."`, backslash).
fn shell_words(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if let Some(w) = cur.take() {
                    out.push(w);
                }
            }
            '\'' | '"' => {
                let w = cur.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some(q) if q == c => break,
                        Some('\\') if c == '"' => w.extend(chars.next()),
                        Some(x) => w.push(x),
                        None => return Err(format!("an unterminated {c} quote")),
                    }
                }
            }
            '\\' => cur.get_or_insert_with(String::new).extend(chars.next()),
            c => cur.get_or_insert_with(String::new).push(c),
        }
    }
    out.extend(cur);
    Ok(out)
}

/// dracut options of a `dracut_args` line: the drivers it adds (`--add-drivers "a b"`,
/// `--force-drivers`, `--add-drivers=a`), and the options rkdump has no use for; anything
/// else is an error naming it.
fn dracut_args(value: &str) -> Result<(Vec<String>, Vec<String>), String> {
    let words = shell_words(value)?;
    let (mut drivers, mut ignored) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i < words.len() {
        let w = words[i].as_str();
        let (opt, inline) = match w.split_once('=') {
            Some((o, v)) if o.starts_with("--") => (o, Some(v.to_string())),
            _ => (w, None),
        };
        let takes_value = matches!(
            opt,
            "--add-drivers" | "--force-drivers" | "--omit-drivers" | "--omit" | "-o" | "--compress" | "--filesystems"
        );
        let value = match (&inline, takes_value) {
            (Some(v), _) => Some(v.clone()),
            (None, true) => {
                i += 1;
                Some(words.get(i).cloned().ok_or(format!("a value after {opt}"))?)
            }
            (None, false) => None,
        };
        match opt {
            "--add-drivers" | "--force-drivers" => drivers.extend(value.unwrap_or_default().split_whitespace().map(str::to_string)),
            "--omit-drivers" | "--omit" | "-o" | "--compress" | "--filesystems" => ignored.push(format!("{opt} {}", value.unwrap_or_default())),
            "--hostonly" | "-H" | "--hostonly-mode" | "--no-hostonly" | "-N" | "--hostonly-cmdline" | "--no-hostonly-cmdline" | "--quiet" | "-q" | "--force" | "-f" | "--strip" | "--nostrip" | "--prelink" | "--noprelink" | "--no-early-microcode" | "--early-microcode" => ignored.push(opt.to_string()),
            other => return Err(format!("dracut options that rkdump can honour (--add-drivers, --force-drivers) or ignore (--omit, --omit-drivers, --hostonly, --compress...); `{other}` is not one: use kdump.conf's own keywords (extra_modules, extra_bins, a target line)")),
        }
        i += 1;
    }
    Ok((drivers, ignored))
}

/// An absolute path without whitespace that a plan line carries unchanged.
fn program_path(p: &str) -> bool {
    p.starts_with('/') && p.len() > 1 && !p.contains(char::is_whitespace) && rkdump_init::plan::plan_safe(p)
}

fn dump_level(n: u32) -> Result<u8, String> {
    u8::try_from(n).ok().filter(|&d| d <= 31).ok_or_else(|| "a dump level 0..31 after -d".into())
}

/// What `failure_action shell` and `dump_to_rootfs` ask for before the final action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureStep {
    /// An interactive shell.
    Shell,
    /// The dump to the root filesystem.
    DumpToRootfs,
}

/// Everything `kdump.conf` says, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KdumpConfig {
    /// The dump target line; `None`: the filesystem holding `path` ([`crate::mounts::resolve`]).
    pub target: Option<Target>,
    /// `path` (default `/var/crash`).
    pub path: String,
    /// `extra_modules`, in order of appearance, without duplicates.
    pub extra_modules: Vec<String>,
    /// `kdump_pre`.
    pub kdump_pre: Option<String>,
    /// `kdump_post`.
    pub kdump_post: Option<String>,
    /// `extra_bins`, in order of appearance, without duplicates.
    pub extra_bins: Vec<String>,
    /// `core_collector`.
    pub core_collector: Option<CoreCollector>,
    /// `failure_action` / `default` (default reboot).
    pub failure_action: Action,
    /// `failure_action shell` or `dump_to_rootfs` (then `failure_action` is the final action).
    pub on_failure: Option<FailureStep>,
    /// `final_action` (default reboot).
    pub final_action: Action,
    /// `force_rebuild 1`.
    pub force_rebuild: bool,
    /// `force_no_rebuild 1`.
    pub force_no_rebuild: bool,
    /// `device_timeout` (rkdump only; default 30).
    pub device_timeout_secs: u32,
    /// `stall_timeout` (rkdump only; default 300, 0 = no watchdog).
    pub stall_timeout_secs: u32,
    /// `hook_timeout` (rkdump only; default 300, 0 = no limit).
    pub hook_timeout_secs: u32,
    /// Non-fatal remarks (each names its line).
    pub warnings: Vec<String>,
}

impl KdumpConfig {
    /// Reads and parses a file.
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Read { path: path.display().to_string(), message: e.to_string() })?;
        Self::parse(&text)
    }

    /// Parses `kdump.conf` text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let mut target: Option<(usize, Target)> = None;
        let mut path = None;
        let mut extra_modules: Vec<String> = Vec::new();
        let (mut kdump_pre, mut kdump_post) = (None, None);
        let mut extra_bins: Vec<String> = Vec::new();
        let mut core_collector = None;
        let mut failure_action = Action::Reboot;
        let mut on_failure = None;
        let mut final_action = Action::Reboot;
        let mut force_rebuild = false;
        let mut force_no_rebuild = false;
        let mut device_timeout_secs = 30;
        let mut stall_timeout_secs = rkdump_init::watchdog::DEFAULT_STALL_SECS;
        let mut hook_timeout_secs = rkdump_init::plan::DEFAULT_HOOK_SECS;
        let mut warnings = Vec::new();

        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let content = raw.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                continue;
            }
            let (keyword, value) = match content.split_once(char::is_whitespace) {
                Some((k, v)) => (k, v.trim()),
                None => (content, ""),
            };
            let kw = keyword.to_string();
            let bad = |expected: &str| ConfigError::BadValue {
                line,
                keyword: kw.clone(),
                value: value.to_string(),
                expected: expected.to_string(),
            };
            if NOT_YET_SUPPORTED.contains(&keyword) {
                return Err(ConfigError::NotYetSupported { line, keyword: kw });
            }
            let known = FILESYSTEMS.contains(&keyword)
                || keyword == RAW
                || matches!(
                    keyword,
                    "path"
                        | "kdump_pre"
                        | "kdump_post"
                        | "extra_bins"
                        | "extra_modules"
                        | "core_collector"
                        | "failure_action"
                        | "default"
                        | "final_action"
                        | "force_rebuild"
                        | "force_no_rebuild"
                        | "device_timeout"
                        | "stall_timeout"
                        | "hook_timeout"
                        | "dracut_args"
                        | "auto_reset_crashkernel"
                        | "override_resettable"
                );
            if !known {
                return Err(ConfigError::Unknown { line, keyword: kw });
            }
            if value.is_empty() {
                return Err(ConfigError::MissingValue { line, keyword: kw });
            }
            match keyword {
                RAW => {
                    if let Some((first, _)) = target {
                        return Err(ConfigError::TwoTargets { line, first });
                    }
                    let device = match DeviceSpec::parse(value) {
                        Ok(d @ DeviceSpec::Path(_)) => d,
                        _ => {
                            return Err(bad(
                                "a device path such as /dev/sdb1 (a raw device has no filesystem UUID or label)",
                            ))
                        }
                    };
                    target = Some((line, Target { fstype: RAW.to_string(), device }));
                }
                fs if FILESYSTEMS.contains(&fs) => {
                    if let Some((first, _)) = target {
                        return Err(ConfigError::TwoTargets { line, first });
                    }
                    let device = DeviceSpec::parse(value)
                        .map_err(|_| bad("a device path, UUID=<uuid>, LABEL=<label> or PARTUUID=<partuuid>"))?;
                    target = Some((line, Target { fstype: fs.to_string(), device }));
                }
                "path" => {
                    if !value.starts_with('/')
                        || value.contains(char::is_whitespace)
                        || !rkdump_init::plan::plan_safe(value)
                    {
                        return Err(bad("an absolute directory without spaces or control characters"));
                    }
                    let p = value.trim_end_matches('/');
                    path = Some(if p.is_empty() { "/".to_string() } else { p.to_string() });
                }
                "kdump_pre" | "kdump_post" => {
                    if !program_path(value) {
                        return Err(bad("one absolute path of a program or script (arguments are not passed)"));
                    }
                    let slot = if keyword == "kdump_pre" { &mut kdump_pre } else { &mut kdump_post };
                    *slot = Some(value.to_string());
                }
                "extra_bins" => {
                    for b in value.split_whitespace() {
                        if !program_path(b) {
                            return Err(bad("absolute paths of programs or scripts"));
                        }
                        if !extra_bins.iter().any(|x| x == b) {
                            extra_bins.push(b.to_string());
                        }
                    }
                }
                "dracut_args" => {
                    let (drivers, ignored) = dracut_args(value).map_err(|e| bad(&e))?;
                    for m in drivers {
                        if !extra_modules.contains(&m) {
                            extra_modules.push(m);
                        }
                    }
                    if !ignored.is_empty() {
                        warnings.push(format!(
                            "kdump.conf line {line}: dracut_args `{}` ignored: rkdump's image holds only what the capture needs",
                            ignored.join(" ")
                        ));
                    }
                }
                "extra_modules" => {
                    for m in value.split_whitespace() {
                        if !extra_modules.iter().any(|x| x == m) {
                            extra_modules.push(m.to_string());
                        }
                    }
                }
                "core_collector" => {
                    // Checked against the target after the last line.
                    let c = CoreCollector::parse(value).map_err(|e| bad(&e))?;
                    core_collector = Some((line, value.to_string(), c));
                }
                "failure_action" | "default" | "final_action" => {
                    let step = match (keyword, value) {
                        ("final_action", _) => None,
                        (_, "shell") => Some(FailureStep::Shell),
                        (_, "dump_to_rootfs") => Some(FailureStep::DumpToRootfs),
                        _ => None,
                    };
                    if let Some(step) = step {
                        on_failure = Some(step);
                        continue;
                    }
                    let expected = if keyword == "final_action" {
                        "reboot, halt or poweroff"
                    } else {
                        "reboot, halt, poweroff, shell or dump_to_rootfs"
                    };
                    let action = Action::parse(value).ok_or_else(|| bad(expected))?;
                    if keyword == "final_action" {
                        final_action = action;
                    } else {
                        failure_action = action;
                        on_failure = None;
                    }
                }
                "force_rebuild" | "force_no_rebuild" => {
                    let on = match value {
                        "1" => true,
                        "0" => false,
                        _ => return Err(bad("0 or 1")),
                    };
                    if keyword == "force_rebuild" {
                        force_rebuild = on;
                    } else {
                        force_no_rebuild = on;
                    }
                    if force_rebuild && force_no_rebuild {
                        return Err(ConfigError::RebuildConflict { line });
                    }
                }
                "device_timeout" => {
                    device_timeout_secs = value
                        .parse::<u32>()
                        .ok()
                        .filter(|&s| (1..=3600).contains(&s))
                        .ok_or_else(|| bad("seconds, 1..3600"))?;
                }
                "stall_timeout" => {
                    stall_timeout_secs = value
                        .parse::<u32>()
                        .ok()
                        .filter(|&s| s == 0 || (10..=86_400).contains(&s))
                        .ok_or_else(|| bad("seconds, 10..86400, or 0 for no limit"))?;
                }
                "hook_timeout" => {
                    hook_timeout_secs = value
                        .parse::<u32>()
                        .ok()
                        .filter(|&s| s <= 86_400)
                        .ok_or_else(|| bad("seconds, 1..86400, or 0 for no limit"))?;
                }
                // auto_reset_crashkernel, override_resettable: kdumpctl policies.
                _ => warnings
                    .push(format!("kdump.conf line {line}: `{keyword}` is a kdumpctl setting; rkdump ignores it")),
            }
        }
        let raw = target.as_ref().is_some_and(|(_, t)| t.is_raw());
        if let Some((line, value, c)) = &core_collector {
            let (_, notes) = c.to_collector(raw).map_err(|e| ConfigError::BadValue {
                line: *line,
                keyword: "core_collector".into(),
                value: value.clone(),
                expected: e,
            })?;
            warnings.extend(notes.into_iter().map(|n| format!("kdump.conf line {line}: {n}")));
        }
        if raw && path.is_some() {
            warnings.push("kdump.conf: `path` is ignored with a raw target (the device holds the dump itself)".into());
        }
        let core_collector = core_collector.map(|(_, _, c)| c);
        Ok(KdumpConfig {
            target: target.map(|(_, t)| t),
            path: path.unwrap_or_else(|| "/var/crash".to_string()),
            extra_modules,
            kdump_pre,
            kdump_post,
            extra_bins,
            core_collector,
            failure_action,
            on_failure,
            final_action,
            force_rebuild,
            force_no_rebuild,
            device_timeout_secs,
            stall_timeout_secs,
            hook_timeout_secs,
            warnings,
        })
    }

    /// The capture plan (without modules; the builder fills them in) dumping to `path` on
    /// `target`: the target line and `path` as written, or what [`crate::mounts::resolve`]
    /// found for `path` when there is no target line.
    pub fn to_plan(&self, target: Target, path: String) -> Plan {
        let raw = target.is_raw();
        let mut p = Plan::new(target);
        p.path = path;
        p.device_timeout_secs = self.device_timeout_secs;
        p.stall_timeout_secs = self.stall_timeout_secs;
        p.hook_timeout_secs = self.hook_timeout_secs;
        match self.core_collector.as_ref().and_then(|c| c.to_collector(raw).ok()) {
            Some((c, _)) => p.collector = c,
            // The default collector (zstd, level 31) as a flattened stream for a raw device.
            None if raw => {
                if let Collector::Filter { format, .. } = &mut p.collector {
                    *format = DumpFormat::Flattened;
                }
            }
            None => {}
        }
        p.final_action = self.final_action;
        // After a shell or dump_to_rootfs, kdump-utils runs the final action.
        p.failure_action = if self.on_failure.is_some() { self.final_action } else { self.failure_action };
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(c: &KdumpConfig) -> Plan {
        c.to_plan(c.target.clone().unwrap(), c.path.clone())
    }

    const FULL: &str = "\
# a comment
ext4 UUID=0B6F5A6E-2b6c-4d43-9c59-2f1f5b0b8c11   # trailing comment

path /var/crash/
extra_modules virtio_blk  virtio-pci
extra_modules nvme virtio_blk
core_collector makedumpfile -l --message-level 7 -d 31
failure_action halt
final_action poweroff
force_rebuild 1
device_timeout 45
auto_reset_crashkernel yes
stall_timeout 120
hook_timeout 30
";

    #[test]
    fn full_config() {
        let c = KdumpConfig::parse(FULL).unwrap();
        assert_eq!(c.target.as_ref().unwrap().fstype, "ext4");
        assert_eq!(c.target.as_ref().unwrap().device, DeviceSpec::Uuid("0b6f5a6e-2b6c-4d43-9c59-2f1f5b0b8c11".into()));
        assert_eq!(c.path, "/var/crash");
        assert_eq!(c.extra_modules, ["virtio_blk", "virtio-pci", "nvme"]);
        let cc = c.core_collector.as_ref().unwrap();
        assert_eq!(cc.program, "makedumpfile");
        assert_eq!(cc.dump_level, Some(31));
        assert_eq!(cc.compression, Some(CollectorCompression::Lzo));
        assert_eq!(cc.message_level, Some(7));
        assert!(!cc.flattened && cc.other.is_empty());
        assert_eq!(c.failure_action, Action::Halt);
        assert_eq!(c.final_action, Action::Poweroff);
        assert!(c.force_rebuild && !c.force_no_rebuild);
        assert_eq!(c.device_timeout_secs, 45);
        // core_collector is honoured now: only the kdumpctl setting is warned about.
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("line 12") && c.warnings[0].contains("auto_reset_crashkernel"));
        let plan = plan_of(&c);
        assert_eq!(plan.collector, Collector::filter(31, DumpFormat::Kdump, Codec::Lzo));
        assert_eq!(plan.path, "/var/crash");
        assert_eq!(plan.device_timeout_secs, 45);
        assert_eq!(plan.stall_timeout_secs, 120);
        assert_eq!(plan.hook_timeout_secs, 30);
        assert_eq!(plan.failure_action, Action::Halt);
        assert_eq!(plan.final_action, Action::Poweroff);
        assert!(plan.modules.is_empty());
    }

    #[test]
    fn defaults_and_other_targets() {
        let c = KdumpConfig::parse("xfs LABEL=dump\n").unwrap();
        assert_eq!(c.target.as_ref().unwrap().device, DeviceSpec::Label("dump".into()));
        assert_eq!((c.path.as_str(), c.final_action, c.failure_action), ("/var/crash", Action::Reboot, Action::Reboot));
        assert_eq!(c.device_timeout_secs, 30);
        assert!(c.warnings.is_empty() && c.core_collector.is_none());
        let c = KdumpConfig::parse("btrfs /dev/vdb1\ndefault poweroff\n").unwrap();
        assert_eq!(c.target.as_ref().unwrap().device, DeviceSpec::Path("/dev/vdb1".into()));
        assert_eq!(c.failure_action, Action::Poweroff);
        for fs in ["ext2", "ext3"] {
            assert_eq!(KdumpConfig::parse(&format!("{fs} /dev/sda1")).unwrap().target.unwrap().fstype, fs);
        }
    }

    #[test]
    fn hooks_and_extra_bins() {
        let c = KdumpConfig::parse(
            "ext4 /dev/vda\nkdump_pre /usr/sbin/pre\nkdump_post /x/post\nkdump_post /x/post2\nextra_bins /bin/a /bin/b\nextra_bins /bin/a /bin/c\n",
        )
        .unwrap();
        assert_eq!(c.kdump_pre.as_deref(), Some("/usr/sbin/pre"));
        // The last line wins, as kdumpctl reads it.
        assert_eq!(c.kdump_post.as_deref(), Some("/x/post2"));
        assert_eq!(c.extra_bins, ["/bin/a", "/bin/b", "/bin/c"]);
        for bad in ["kdump_pre rel", "kdump_post /x --flag", "extra_bins /a rel", "kdump_pre /"] {
            let e = KdumpConfig::parse(&format!("ext4 /dev/vda\n{bad}\n")).unwrap_err();
            assert!(matches!(e, ConfigError::BadValue { line: 2, .. }), "{bad}: {e}");
        }
    }

    #[test]
    fn dracut_args_add_drivers_and_ignore_packaging() {
        let c = KdumpConfig::parse(
            "ext4 /dev/vda\nextra_modules nvme\ndracut_args --add-drivers \"ixgbe  nvme\" --omit-drivers 'snd cfg80211' -H --force-drivers=mpt3sas\n",
        )
        .unwrap();
        assert_eq!(c.extra_modules, ["nvme", "ixgbe", "mpt3sas"]);
        assert!(
            c.warnings.iter().any(|w| w.contains("line 3") && w.contains("--omit-drivers snd cfg80211 -H")),
            "{:?}",
            c.warnings
        );
        for (bad, why) in [
            ("dracut_args --mount \"/dev/vdb /mnt ext4 defaults\"", "`--mount` is not one"),
            ("dracut_args --add-drivers", "a value after --add-drivers"),
            ("dracut_args --add-drivers \"x", "unterminated \" quote"),
        ] {
            let e = KdumpConfig::parse(&format!("ext4 /dev/vda\n{bad}\n")).unwrap_err().to_string();
            assert!(e.contains("line 2") && e.contains(why), "{bad}: {e}");
        }
        assert_eq!(shell_words(r#"a "b c" 'd e'f g\ h"#).unwrap(), ["a", "b c", "d ef", "g h"]);
    }

    #[test]
    fn not_yet_supported_keywords_name_line() {
        for kw in
            ["nfs host:/x", "ssh user@host", "sshkey /root/.ssh/k", "fence_kdump_args -p 7410", "fence_kdump_nodes n1"]
        {
            let err = KdumpConfig::parse(&format!("ext4 /dev/vda\n\n{kw}\n")).unwrap_err();
            let k = kw.split(' ').next().unwrap();
            assert_eq!(err, ConfigError::NotYetSupported { line: 3, keyword: k.into() });
            assert!(err.to_string().contains("line 3") && err.to_string().contains("not yet supported"));
        }
    }

    /// `failure_action shell` / `dump_to_rootfs` (or `default`): the step, then the final
    /// action; a later plain failure action replaces the step.
    #[test]
    fn failure_steps() {
        for (v, step) in [("shell", FailureStep::Shell), ("dump_to_rootfs", FailureStep::DumpToRootfs)] {
            let c = KdumpConfig::parse(&format!("ext4 /dev/vda\nfinal_action poweroff\nfailure_action {v}\n")).unwrap();
            assert_eq!(c.on_failure, Some(step));
            assert_eq!(plan_of(&c).failure_action, Action::Poweroff);
            let c = KdumpConfig::parse(&format!("ext4 /dev/vda\ndefault {v}\nfailure_action halt\n")).unwrap();
            assert_eq!((c.on_failure, plan_of(&c).failure_action), (None, Action::Halt));
        }
        assert!(KdumpConfig::parse("ext4 /dev/vda\nfinal_action shell\n").is_err());
    }

    #[test]
    fn errors_name_lines() {
        let e = KdumpConfig::parse("ext4 /dev/vda\nfrobnicate 1\n").unwrap_err();
        assert_eq!(e, ConfigError::Unknown { line: 2, keyword: "frobnicate".into() });
        assert!(e.to_string().contains("line 2"));
        let e = KdumpConfig::parse("ext4 /dev/vda\npath\n").unwrap_err();
        assert_eq!(e, ConfigError::MissingValue { line: 2, keyword: "path".into() });
        assert!(matches!(KdumpConfig::parse("ext4 /dev/vda\npath rel\n"), Err(ConfigError::BadValue { line: 2, .. })));
        assert!(matches!(KdumpConfig::parse("ext4 vda\n"), Err(ConfigError::BadValue { line: 1, .. })));
        assert!(matches!(KdumpConfig::parse("ext4 UUID=\n"), Err(ConfigError::BadValue { line: 1, .. })));
        assert_eq!(
            KdumpConfig::parse("ext4 /dev/a\nxfs /dev/b\n").unwrap_err(),
            ConfigError::TwoTargets { line: 2, first: 1 }
        );
        // No target line: the builder resolves `path` on the build machine.
        let c = KdumpConfig::parse("path /x\n").unwrap();
        assert_eq!((c.target, c.path.as_str()), (None, "/x"));
        assert!(matches!(
            KdumpConfig::parse("ext4 /dev/a\nfinal_action explode\n"),
            Err(ConfigError::BadValue { line: 2, .. })
        ));
        assert!(matches!(
            KdumpConfig::parse("ext4 /dev/a\nforce_rebuild yes\n"),
            Err(ConfigError::BadValue { line: 2, .. })
        ));
        assert_eq!(
            KdumpConfig::parse("ext4 /dev/a\nforce_rebuild 1\nforce_no_rebuild 1\n").unwrap_err(),
            ConfigError::RebuildConflict { line: 3 }
        );
        assert!(matches!(
            KdumpConfig::parse("ext4 /dev/a\ndevice_timeout 0\n"),
            Err(ConfigError::BadValue { line: 2, .. })
        ));
        assert_eq!(KdumpConfig::parse("ext4 /dev/a\n").map(|c| c.stall_timeout_secs), Ok(300));
        assert_eq!(KdumpConfig::parse("ext4 /dev/a\nstall_timeout 0\n").map(|c| c.stall_timeout_secs), Ok(0));
        assert_eq!(KdumpConfig::parse("ext4 /dev/a\n").map(|c| c.hook_timeout_secs), Ok(300));
        assert!(matches!(
            KdumpConfig::parse("ext4 /dev/a\nhook_timeout 100000\n"),
            Err(ConfigError::BadValue { line: 2, .. })
        ));
        for bad in ["5", "-1", "100000", "soon"] {
            assert!(matches!(
                KdumpConfig::parse(&format!("ext4 /dev/a\nstall_timeout {bad}\n")),
                Err(ConfigError::BadValue { line: 2, .. })
            ));
        }
        assert!(matches!(
            KdumpConfig::parse("ext4 /dev/a\ncore_collector makedumpfile -d 99\n"),
            Err(ConfigError::BadValue { line: 2, .. })
        ));
    }

    #[test]
    fn core_collector_becomes_the_plan_collector() {
        let plan = |line: &str| KdumpConfig::parse(&format!("ext4 /dev/vdb\n{line}\n")).map(|c| plan_of(&c).collector);
        assert_eq!(plan("").unwrap(), Collector::default());
        assert_eq!(plan("core_collector cp").unwrap(), Collector::Copy);
        assert_eq!(
            plan("core_collector makedumpfile -c -d 17").unwrap(),
            Collector::filter(17, DumpFormat::Kdump, Codec::Zlib)
        );
        // makedumpfile's own defaults: level 0, no compression.
        assert_eq!(plan("core_collector makedumpfile").unwrap(), Collector::filter(0, DumpFormat::Kdump, Codec::None));
        assert_eq!(
            plan("core_collector makedumpfile -E -d 31").unwrap(),
            Collector::filter(31, DumpFormat::Elf, Codec::None)
        );
        // rkdump's own flag: makedumpfile's page selection, per-CPU free pages kept.
        assert_eq!(
            plan("core_collector makedumpfile -l --keep-percpu-free -d 31").unwrap(),
            Collector::Filter { dump_level: 31, format: DumpFormat::Kdump, codec: Codec::Lzo, keep_percpu_free: true }
        );
        for bad in ["core_collector makedumpfile -F -l -d 31", "core_collector scp", "core_collector gzip"] {
            let e = plan(bad).unwrap_err().to_string();
            assert!(e.contains("line 2"), "{bad}: {e}");
        }
        // Raw targets take a flattened stream: -F required (the collector line may come first),
        // the default collector flattened, `path` ignored.
        let raw = |text: &str| KdumpConfig::parse(text).map(|c| plan_of(&c));
        let p = raw("core_collector makedumpfile -F -l -d 31\nraw /dev/vdb\n").unwrap();
        assert_eq!((p.target.fstype.as_str(), p.target.device.to_string()), ("raw", "/dev/vdb".to_string()));
        assert_eq!(p.collector, Collector::filter(31, DumpFormat::Flattened, Codec::Lzo));
        assert_eq!(raw("raw /dev/vdb\n").unwrap().collector, Collector::filter(31, DumpFormat::Flattened, Codec::Zstd));
        let c = KdumpConfig::parse("raw /dev/vdb\npath /x\n").unwrap();
        assert!(c.warnings.iter().any(|w| w.contains("`path` is ignored")), "{:?}", c.warnings);
        for (bad, why) in [
            ("raw /dev/vdb\ncore_collector makedumpfile -l -d 31\n", "needs core_collector makedumpfile -F"),
            ("raw /dev/vdb\ncore_collector cp\n", "cannot write to a raw target"),
            ("raw /dev/vdb\ncore_collector makedumpfile -F -E -d 31\n", "not -E"),
            ("raw UUID=0b6f5a6e-2b6c-4d43-9c59-2f1f5b0b8c11\n", "no filesystem UUID or label"),
            ("raw /dev/vdb\next4 /dev/vdc\n", "more than one dump target"),
        ] {
            let e = KdumpConfig::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let c =
            KdumpConfig::parse("ext4 /dev/vdb\ncore_collector makedumpfile -l -d 31 --cyclic-buffer 100\n").unwrap();
        assert!(c.warnings.iter().any(|w| w.contains("--cyclic-buffer") && w.contains("ignored")), "{:?}", c.warnings);
        let c = KdumpConfig::parse("ext4 /dev/vdb\ncore_collector makedumpfile -l -d 31 --num-threads 4\n").unwrap();
        assert!(c.warnings.iter().any(|w| w.contains("--num-threads 4") && w.contains("ignored")), "{:?}", c.warnings);
    }

    #[test]
    fn core_collector_variants() {
        let c = CoreCollector::parse("makedumpfile -F -c -d31 --num-threads=4 --message-level=1").unwrap();
        assert_eq!((c.dump_level, c.compression, c.flattened), (Some(31), Some(CollectorCompression::Zlib), true));
        assert_eq!((c.num_threads, c.message_level), (Some(4), Some(1)));
        let c = CoreCollector::parse("/usr/sbin/makedumpfile -zE -d 1 --cyclic-buffer 100").unwrap();
        assert_eq!((c.compression, c.elf, c.dump_level), (Some(CollectorCompression::Zstd), true, Some(1)));
        assert_eq!(c.other, ["--cyclic-buffer", "100"]);
        let c = CoreCollector::parse("makedumpfile -p -d 0").unwrap();
        assert_eq!(c.compression, Some(CollectorCompression::Snappy));
        let c = CoreCollector::parse("cp --sparse=always").unwrap();
        assert_eq!((c.program.as_str(), c.other.len(), c.dump_level), ("cp", 1, None));
        assert!(CoreCollector::parse("makedumpfile -d").is_err());
    }
}
