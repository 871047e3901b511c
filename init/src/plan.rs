//! The capture plan: the input contract of the capture init.
//!
//! `rkdump build` (crate `mkinitrd`) validates `kdump.conf` and writes a [`Plan`] into the image
//! at [`PLAN_PATH`]; `rkdump-init` reads it at capture time and executes it. The format is a tiny
//! line-based text file so that it can be read in the image (`cat /etc/rkdump/plan`) and parsed
//! without a serialization framework in the static init:
//!
//! ```text
//! rkdump-plan 1
//! target ext4 UUID=0b6f5a6e-2b6c-4d43-9c59-2f1f5b0b8c11
//! path /var/crash
//! module /lib/modules/6.1.0-26-amd64/kernel/drivers/block/virtio_blk.ko
//! device_timeout 30
//! stall_timeout 300
//! hook_timeout 300
//! collector kdump 31 zstd
//! final_action reboot
//! failure_action reboot
//! pre /usr/local/sbin/stop-watchdog
//! post /etc/kdump/post.d/10-notify
//! ```
//!
//! `on_failure` is what runs before `failure_action` when the capture fails (kdump.conf's
//! `failure_action shell` and `dump_to_rootfs`): `on_failure shell`, or `on_failure
//! dump_to_rootfs ext4 UUID=... /var/crash` (the root filesystem and the dump directory on it).
//!
//! `pre` and `post` are the hooks, in the order they run (kdump-utils': `kdump_pre`, then
//! `/etc/kdump/pre.d/*`; `/etc/kdump/post.d/*`, then `kdump_post`).
//!
//! Unknown keys are an error: a plan written by a newer builder must not be half-executed.

use std::fmt;

/// Where the plan lives inside the capture image.
pub const PLAN_PATH: &str = "/etc/rkdump/plan";

/// `PATH` of the hooks at capture time (the builder also looks up `#!/usr/bin/env NAME` on it).
pub const HOOK_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The default `hook_timeout` in seconds: what kdump-utils' capture service allows for the whole
/// capture (systemd's start timeout), given to each hook.
pub const DEFAULT_HOOK_SECS: u32 = 300;

/// Format version written on the first line.
pub const PLAN_VERSION: u32 = 1;

/// How a dump target is named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSpec {
    /// `UUID=...` of the filesystem (probed from superblocks, no udev).
    Uuid(String),
    /// `LABEL=...` of the filesystem.
    Label(String),
    /// `PARTUUID=...` of the partition: a GPT entry's unique GUID, or `SSSSSSSS-NN` (MBR disk
    /// signature and partition number), read from the partition table.
    PartUuid(String),
    /// A device node path such as `/dev/vdb1`.
    Path(String),
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Uuid(u) => write!(f, "UUID={u}"),
            // A label with a quote at either end is written quoted, so that `parse` (which
            // removes one enclosing pair) gives it back whole.
            DeviceSpec::Label(l) if l.starts_with('"') || l.ends_with('"') => write!(f, "LABEL=\"{l}\""),
            DeviceSpec::Label(l) => write!(f, "LABEL={l}"),
            DeviceSpec::PartUuid(u) => write!(f, "PARTUUID={u}"),
            DeviceSpec::Path(p) => f.write_str(p),
        }
    }
}

/// Whether `s` survives a plan line unchanged: no control characters, no whitespace other
/// than a plain space (plan lines are split at spaces and trimmed).
pub fn plan_safe(s: &str) -> bool {
    !s.chars().any(|c| c.is_control() || (c.is_whitespace() && c != ' '))
}

impl DeviceSpec {
    /// Parses `UUID=`, `LABEL=` or an absolute device path. A value in double quotes loses that
    /// one pair (`LABEL="My Disk"`; `LABEL=""x"` is the label `"x`). Control characters,
    /// whitespace other than a space, and a label or UUID with spaces at either end are
    /// refused: the plan could not carry them unchanged.
    pub fn parse(s: &str) -> Result<Self, PlanError> {
        let bad = || PlanError::BadValue { key: "target".into(), value: s.into() };
        // Plan lines are trimmed, so a value with spaces at either end would not come back.
        let carried = |v: &str| !v.is_empty() && plan_safe(v) && v.trim_matches(' ') == v;
        if let Some(u) = s.strip_prefix("UUID=") {
            let u = u.trim_matches('"');
            if !carried(u) {
                return Err(bad());
            }
            Ok(DeviceSpec::Uuid(u.to_ascii_lowercase()))
        } else if let Some(u) = s.strip_prefix("PARTUUID=") {
            let u = u.trim_matches('"');
            if !carried(u) {
                return Err(bad());
            }
            Ok(DeviceSpec::PartUuid(u.to_ascii_lowercase()))
        } else if let Some(l) = s.strip_prefix("LABEL=") {
            // Exactly one enclosing pair: a label may itself start or end with a quote.
            let l = match l.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
                Some(inner) => inner,
                None => l,
            };
            if !carried(l) {
                return Err(bad());
            }
            Ok(DeviceSpec::Label(l.to_string()))
        } else if s.starts_with('/') && carried(s) {
            Ok(DeviceSpec::Path(s.to_string()))
        } else {
            Err(bad())
        }
    }
}

/// A dump target: a filesystem, or a raw block device (`fstype` [`RAW`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Filesystem type passed to mount(2), e.g. `ext4`; [`RAW`] for a raw device.
    pub fstype: String,
    /// The device holding it.
    pub device: DeviceSpec,
}

/// The `fstype` of a raw target: the dump is written to the device itself as a flattened
/// stream (kdump.conf `raw /dev/sdb1`), and saved from it at the next boot (`rkdump save-raw`).
pub const RAW: &str = "raw";

impl Target {
    /// Whether the dump goes to the device itself, not to a filesystem on it.
    pub fn is_raw(&self) -> bool {
        self.fstype == RAW
    }
}

/// What to do at the end of a capture (or on failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Reboot,
    Halt,
    Poweroff,
}

impl Action {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "reboot" => Some(Action::Reboot),
            "halt" => Some(Action::Halt),
            "poweroff" => Some(Action::Poweroff),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Reboot => "reboot",
            Action::Halt => "halt",
            Action::Poweroff => "poweroff",
        }
    }
}

/// How the vmcore is saved (from kdump.conf's `core_collector`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collector {
    /// Unfiltered byte copy of `/proc/vmcore` (an ELF file): `core_collector cp`/`cat`.
    Copy,
    /// Filtered with makedumpfile semantics: dump level (`-d`), kdump-compressed with `codec`
    /// or ELF (`-E`); `keep_percpu_free` (`--keep-percpu-free`): keep the free pages of the
    /// per-CPU lists, which level 16 otherwise leaves out, as makedumpfile does.
    Filter { dump_level: u8, format: DumpFormat, codec: Codec, keep_percpu_free: bool },
}

/// Output container of a filtered dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DumpFormat {
    Kdump,
    Elf,
    /// kdump-compressed, as a flattened stream (makedumpfile `-F`): what a raw target holds.
    Flattened,
}

/// Page compression of a kdump-compressed dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Zstd,
    Lzo,
    Zlib,
    Snappy,
    None,
}

impl Codec {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "zstd" => Codec::Zstd,
            "lzo" => Codec::Lzo,
            "zlib" => Codec::Zlib,
            "snappy" => Codec::Snappy,
            "none" => Codec::None,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Codec::Zstd => "zstd",
            Codec::Lzo => "lzo",
            Codec::Zlib => "zlib",
            Codec::Snappy => "snappy",
            Codec::None => "none",
        }
    }
}

impl Default for Collector {
    /// kdump-utils' default is `makedumpfile -l -d 31`; our default codec is zstd (identical
    /// pages stored once, per-CPU free pages left out too): 0.4 of that dump's size, for
    /// 0.8-0.9x makedumpfile's filtering time with two CPUs and 1.4-1.6x with one, about the
    /// time a 100 MB/s disk saves writing the smaller dump (see BENCHMARKS.md, thirteenth
    /// round).
    fn default() -> Self {
        Collector::filter(31, DumpFormat::Kdump, Codec::Zstd)
    }
}

impl fmt::Display for Collector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Collector::Filter { dump_level, format, codec, keep_percpu_free } = self else {
            return f.write_str("copy");
        };
        match format {
            DumpFormat::Elf => write!(f, "elf {dump_level}")?,
            DumpFormat::Kdump => write!(f, "kdump {dump_level} {}", codec.as_str())?,
            DumpFormat::Flattened => write!(f, "flat {dump_level} {}", codec.as_str())?,
        }
        if *keep_percpu_free {
            f.write_str(" keep_percpu_free")?;
        }
        Ok(())
    }
}

impl Collector {
    /// A filter with makedumpfile's page selection but for the per-CPU free pages (left out
    /// at level 16).
    pub fn filter(dump_level: u8, format: DumpFormat, codec: Codec) -> Self {
        Collector::Filter { dump_level, format, codec, keep_percpu_free: false }
    }

    /// Parses the plan's `collector` value (the [`Display`](fmt::Display) form).
    pub fn parse(s: &str) -> Option<Self> {
        let mut w: Vec<&str> = s.split_whitespace().collect();
        let keep = w.last() == Some(&"keep_percpu_free");
        if keep {
            w.pop();
        }
        let level = |v: &str| v.parse::<u8>().ok().filter(|l| *l <= 31);
        let (dump_level, format, codec) = match w.as_slice() {
            ["copy"] if !keep => return Some(Collector::Copy),
            ["elf", l] => (level(l)?, DumpFormat::Elf, Codec::None),
            ["kdump", l, c] => (level(l)?, DumpFormat::Kdump, Codec::parse(c)?),
            ["flat", l, c] => (level(l)?, DumpFormat::Flattened, Codec::parse(c)?),
            _ => return None,
        };
        Some(Collector::Filter { dump_level, format, codec, keep_percpu_free: keep })
    }
}

/// What runs when the capture fails, before the failure action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnFailure {
    /// An interactive `/bin/sh` on the console (kdump.conf `failure_action shell`).
    Shell,
    /// The dump again, to the root filesystem (`failure_action dump_to_rootfs`): `target`,
    /// directory `path` on it.
    DumpToRootfs { target: Target, path: String },
}

impl fmt::Display for OnFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OnFailure::Shell => f.write_str("shell"),
            OnFailure::DumpToRootfs { target, path } => {
                write!(f, "dump_to_rootfs {} {} {path}", target.fstype, target.device)
            }
        }
    }
}

impl OnFailure {
    fn parse(s: &str) -> Option<Self> {
        if s == "shell" {
            return Some(OnFailure::Shell);
        }
        let rest = s.strip_prefix("dump_to_rootfs ")?;
        let (fstype, rest) = rest.split_once(' ')?;
        // The device spec has no spaces unless it is a quoted label; the path is the rest.
        let at = rest.rfind(" /")?;
        let (dev, path) = (&rest[..at], &rest[at + 1..]);
        let device = DeviceSpec::parse(dev).ok()?;
        Some(OnFailure::DumpToRootfs { target: Target { fstype: fstype.to_string(), device }, path: path.to_string() })
    }
}

/// The whole capture plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub target: Target,
    /// Directory on the target filesystem (absolute, relative to its root), e.g. `/var/crash`.
    pub path: String,
    /// Module files inside the image, in load order (dependencies first).
    pub modules: Vec<String>,
    /// Seconds to wait for the target device to appear.
    pub device_timeout_secs: u32,
    /// Seconds the work on the target (mount, save steps, final unmount and sync) may make no
    /// progress before the failure action (0: no limit); see [`crate::watchdog`].
    pub stall_timeout_secs: u32,
    /// Seconds a `pre` or `post` hook may run before it is killed (0: no limit).
    pub hook_timeout_secs: u32,
    /// How the vmcore is written.
    pub collector: Collector,
    pub final_action: Action,
    pub failure_action: Action,
    /// Programs run after the target is mounted and before the dump; one exiting non-zero
    /// skips the dump (the final action follows, as in kdump-utils).
    pub pre: Vec<String>,
    /// Programs run after the dump (or its failure), with the status (0 or 1) as argument.
    pub post: Vec<String>,
    /// What runs on failure before `failure_action`.
    pub on_failure: Option<OnFailure>,
}

impl Plan {
    /// A plan with the defaults of kdump-utils for everything but the target.
    pub fn new(target: Target) -> Self {
        Plan {
            target,
            path: "/var/crash".into(),
            modules: Vec::new(),
            device_timeout_secs: 30,
            stall_timeout_secs: crate::watchdog::DEFAULT_STALL_SECS,
            hook_timeout_secs: DEFAULT_HOOK_SECS,
            collector: Collector::default(),
            final_action: Action::Reboot,
            failure_action: Action::Reboot,
            pre: Vec::new(),
            post: Vec::new(),
            on_failure: None,
        }
    }

    /// Renders the plan in its file format (see the module doc).
    pub fn render(&self) -> String {
        let mut s = format!("rkdump-plan {PLAN_VERSION}\n");
        s += &format!("target {} {}\n", self.target.fstype, self.target.device);
        s += &format!("path {}\n", self.path);
        for m in &self.modules {
            s += &format!("module {m}\n");
        }
        s += &format!("device_timeout {}\n", self.device_timeout_secs);
        s += &format!("stall_timeout {}\n", self.stall_timeout_secs);
        s += &format!("hook_timeout {}\n", self.hook_timeout_secs);
        s += &format!("collector {}\n", self.collector);
        s += &format!("final_action {}\n", self.final_action.as_str());
        s += &format!("failure_action {}\n", self.failure_action.as_str());
        for p in &self.pre {
            s += &format!("pre {p}\n");
        }
        for p in &self.post {
            s += &format!("post {p}\n");
        }
        if let Some(o) = &self.on_failure {
            s += &format!("on_failure {o}\n");
        }
        s
    }

    /// Parses a plan file.
    pub fn parse(text: &str) -> Result<Self, PlanError> {
        let mut lines = text.lines().enumerate();
        match lines.next() {
            Some((_, l)) if l.trim() == format!("rkdump-plan {PLAN_VERSION}") => {}
            Some((_, l)) => return Err(PlanError::BadHeader(l.to_string())),
            None => return Err(PlanError::BadHeader(String::new())),
        }
        let mut target = None;
        let mut path = None;
        let mut modules = Vec::new();
        let mut timeout = 30;
        let mut stall = crate::watchdog::DEFAULT_STALL_SECS;
        let mut hook = DEFAULT_HOOK_SECS;
        let mut collector = Collector::default();
        let mut final_action = Action::Reboot;
        let mut failure_action = Action::Reboot;
        let (mut pre, mut post) = (Vec::new(), Vec::new());
        let mut on_failure = None;
        for (no, line) in lines {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if !plan_safe(line) {
                return Err(PlanError::BadValue { key: format!("line {}", no + 1), value: line.to_string() });
            }
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            let value = value.trim();
            let bad = || PlanError::BadValue { key: key.to_string(), value: value.to_string() };
            match key {
                "target" => {
                    let (fs, dev) = value.split_once(' ').ok_or_else(bad)?;
                    target = Some(Target { fstype: fs.to_string(), device: DeviceSpec::parse(dev.trim())? });
                }
                "path" if value.starts_with('/') => path = Some(value.to_string()),
                "module" if !value.is_empty() => modules.push(value.to_string()),
                "device_timeout" => timeout = value.parse().map_err(|_| bad())?,
                "stall_timeout" => stall = value.parse().map_err(|_| bad())?,
                "hook_timeout" => hook = value.parse().map_err(|_| bad())?,
                "collector" => collector = Collector::parse(value).ok_or_else(bad)?,
                "final_action" => final_action = Action::parse(value).ok_or_else(bad)?,
                "failure_action" => failure_action = Action::parse(value).ok_or_else(bad)?,
                "on_failure" => on_failure = Some(OnFailure::parse(value).ok_or_else(bad)?),
                "pre" if value.starts_with('/') => pre.push(value.to_string()),
                "post" if value.starts_with('/') => post.push(value.to_string()),
                "path" | "module" | "pre" | "post" => return Err(bad()),
                _ => return Err(PlanError::UnknownKey { line: no + 1, key: key.to_string() }),
            }
        }
        let target = target.ok_or(PlanError::Missing("target"))?;
        Ok(Plan {
            target,
            path: path.unwrap_or_else(|| "/var/crash".into()),
            modules,
            device_timeout_secs: timeout,
            stall_timeout_secs: stall,
            hook_timeout_secs: hook,
            collector,
            final_action,
            failure_action,
            pre,
            post,
            on_failure,
        })
    }
}

/// Why a plan could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("not an rkdump plan (first line {0:?}, expected \"rkdump-plan {PLAN_VERSION}\")")]
    BadHeader(String),
    #[error("plan line {line}: unknown key {key:?}")]
    UnknownKey { line: usize, key: String },
    #[error("plan: bad value {value:?} for {key:?}")]
    BadValue { key: String, value: String },
    #[error("plan: missing {0:?}")]
    Missing(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Labels with quotes at their edges survive kdump.conf and the plan: one enclosing pair
    /// of quotes is removed, and a label that starts or ends with a quote is written quoted.
    #[test]
    fn labels_with_quotes_at_the_edges_round_trip() {
        for (text, label) in [
            ("LABEL=\"My Disk\"", "My Disk"),
            ("LABEL=dump", "dump"),
            ("LABEL=\"\"x\"", "\"x"),
            ("LABEL=\"x\"\"", "x\""),
            ("LABEL=\"\"x\"\"", "\"x\""),
            ("LABEL=\"\"\"", "\""),
            ("LABEL=a\"b", "a\"b"),
            ("LABEL=\"x", "\"x"),
        ] {
            let d = DeviceSpec::parse(text).unwrap();
            assert_eq!(d, DeviceSpec::Label(label.into()), "{text}");
            assert_eq!(DeviceSpec::parse(&d.to_string()).unwrap(), d, "{text} -> {d}");
            let mut p = sample();
            p.target.device = d.clone();
            assert_eq!(Plan::parse(&p.render()).unwrap(), p, "{text}");
        }
        assert!(DeviceSpec::parse("LABEL=\"\"").is_err(), "an empty label");
        // Every value of up to 5 characters from quotes, spaces and letters: whatever parses
        // renders to a plan that parses back to it.
        let alphabet = ['"', ' ', 'a', '='];
        let mut values = vec![String::new()];
        for _ in 0..5 {
            let longer: Vec<String> =
                values.iter().flat_map(|v| alphabet.iter().map(move |c| format!("{v}{c}"))).collect();
            for v in &longer {
                let Ok(d) = DeviceSpec::parse(&format!("LABEL={v}")) else {
                    continue;
                };
                let mut p = sample();
                p.target.device = d;
                assert_eq!(Plan::parse(&p.render()).as_ref(), Ok(&p), "LABEL={v}");
            }
            values = longer;
        }
    }

    #[test]
    fn values_a_plan_line_cannot_carry_are_refused() {
        // Found by fuzz/plan and fuzz/kdump_conf: trimming lost or moved these characters, so
        // a plan read back was not the plan written.
        for bad in ["LABEL=a\rb", "LABEL=\"a \"", "UUID= 12", "/dev/vd\u{85}a", "LABEL=a\tb"] {
            assert!(DeviceSpec::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(DeviceSpec::parse("LABEL=My Disk"), Ok(DeviceSpec::Label("My Disk".into())));
        let text = "rkdump-plan 1\ntarget ext4 /dev/vdb\nmodule a\u{b}b\n";
        assert!(matches!(Plan::parse(text), Err(PlanError::BadValue { .. })));
    }

    fn sample() -> Plan {
        let mut p = Plan::new(Target {
            fstype: "ext4".into(),
            device: DeviceSpec::Uuid("0b6f5a6e-2b6c-4d43-9c59-2f1f5b0b8c11".into()),
        });
        p.modules = vec!["/lib/modules/r/a.ko".into(), "/lib/modules/r/b.ko.xz".into()];
        p.device_timeout_secs = 7;
        p.stall_timeout_secs = 45;
        p.hook_timeout_secs = 0;
        p.failure_action = Action::Halt;
        p.pre = vec!["/usr/sbin/pre one".into()];
        p.post = vec!["/etc/kdump/post.d/10-a".into(), "/sbin/post".into()];
        p.on_failure = Some(OnFailure::DumpToRootfs {
            target: Target { fstype: "xfs".into(), device: DeviceSpec::Label("root disk".into()) },
            path: "/var/my crash".into(),
        });
        p
    }

    #[test]
    fn round_trip() {
        let p = sample();
        assert_eq!(Plan::parse(&p.render()).unwrap(), p);
    }

    #[test]
    fn rejects_unknown_key_and_bad_header() {
        let text = sample().render() + "frobnicate yes\n";
        assert!(matches!(Plan::parse(&text), Err(PlanError::UnknownKey { key, .. }) if key == "frobnicate"));
        assert!(matches!(Plan::parse("hello\n"), Err(PlanError::BadHeader(_))));
        assert_eq!(Plan::parse("rkdump-plan 1\npath /x\n"), Err(PlanError::Missing("target")));
        let mut p = sample();
        p.on_failure = Some(OnFailure::Shell);
        assert_eq!(Plan::parse(&p.render()).unwrap(), p);
        for hook in [
            "pre x",
            "post ",
            "post",
            "on_failure x",
            "on_failure dump_to_rootfs ext4 /dev/vda",
            "on_failure dump_to_rootfs ext4 vda /x",
        ] {
            let text = format!("rkdump-plan 1\ntarget ext4 /dev/vdb\n{hook}\n");
            assert!(matches!(Plan::parse(&text), Err(PlanError::BadValue { .. })), "{hook:?}");
        }
    }

    #[test]
    fn collectors_round_trip() {
        for c in [
            Collector::Copy,
            Collector::default(),
            Collector::filter(1, DumpFormat::Kdump, Codec::Lzo),
            Collector::filter(17, DumpFormat::Elf, Codec::None),
            Collector::filter(31, DumpFormat::Flattened, Codec::Lzo),
            Collector::Filter { dump_level: 31, format: DumpFormat::Kdump, codec: Codec::Lzo, keep_percpu_free: true },
            Collector::Filter { dump_level: 16, format: DumpFormat::Elf, codec: Codec::None, keep_percpu_free: true },
        ] {
            assert_eq!(Collector::parse(&c.to_string()), Some(c));
            let mut p = sample();
            p.collector = c;
            assert_eq!(Plan::parse(&p.render()).unwrap(), p);
        }
        assert_eq!(Collector::parse("kdump 32 zstd"), None);
        assert_eq!(Collector::parse("kdump 31 brotli"), None);
        assert_eq!(Collector::parse("copy keep_percpu_free"), None);
        assert_eq!(Collector::parse("kdump 31 keep_percpu_free zstd"), None);
        assert!(Plan::parse(&(sample().render() + "collector tar\n")).is_err());
    }

    #[test]
    fn device_specs() {
        assert_eq!(DeviceSpec::parse("UUID=\"ABC\"").unwrap(), DeviceSpec::Uuid("abc".into()));
        assert_eq!(DeviceSpec::parse("LABEL=dump").unwrap(), DeviceSpec::Label("dump".into()));
        assert_eq!(DeviceSpec::parse("PARTUUID=\"1234ABCD-02\"").unwrap(), DeviceSpec::PartUuid("1234abcd-02".into()));
        assert_eq!(DeviceSpec::PartUuid("1234abcd-02".into()).to_string(), "PARTUUID=1234abcd-02");
        assert!(DeviceSpec::parse("PARTUUID=").is_err());
        assert_eq!(DeviceSpec::parse("/dev/vdb").unwrap(), DeviceSpec::Path("/dev/vdb".into()));
        assert!(DeviceSpec::parse("vdb").is_err());
    }
}
