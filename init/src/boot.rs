//! The boot sequence of the capture init, as PID 1:
//!
//! 1. [`setup`]: mount proc, sysfs, devtmpfs, tmpfs on /run and /tmp ([`EARLY_MOUNTS`]); make
//!    sure fds 0-2 are the console; open `/dev/kmsg` (creating the node if devtmpfs failed)
//!    and turn off its rate limit. Messages from before kmsg is open are replayed into it.
//! 2. [`capture`]: `/proc/vmcore` must exist; read the plan; load its modules; wait (bounded)
//!    for the target device; mount it on [`TARGET_MNT`]; create `<path>/127.0.0.1-<time>/`;
//!    run the [`SaveStep`]s.
//! 3. [`finish`]: unmount the target, sync, and `reboot(2)` with final_action (or
//!    failure_action after any error).
//!
//! [`run`] does all three and returns the action it applied; it never panics on bad input and
//! never waits unboundedly. All effects go through [`Sys`], so the tests run the whole sequence
//! against the recording fake.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use crate::log::{parse_console_loglevel, Level, Logger};
use crate::modules::{Loaded, ModuleLoader};
use crate::plan::{Action, Collector, DeviceSpec, OnFailure, Plan, PlanError, HOOK_PATH, PLAN_PATH};
use crate::probe::{self, Device};
use crate::save::{dump_dir_name, DumpDir, SaveError, SaveStep, VMCORE};
use crate::sys::{mkdir_p, read_file, Errno, MountFlags, NodeKind, Open, OsError, Sys};
use crate::watchdog;

/// Where the dump target is mounted.
pub const TARGET_MNT: &str = "/kdumproot";
/// The host part of the dump directory name (local targets; kdump-utils does the same).
pub const LOCAL_HOST: &str = "127.0.0.1";
/// Interval between two scans for the target device.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Interval between two "still waiting" messages.
pub const WAIT_NOTE_INTERVAL: Duration = Duration::from_secs(5);
/// Largest plan file accepted (bytes).
pub const MAX_PLAN: usize = 1 << 20;

/// One API filesystem mounted at boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MountPoint {
    /// `source` argument of mount(2).
    pub source: &'static str,
    /// Mount point (created if missing).
    pub target: &'static str,
    /// Filesystem type.
    pub fstype: &'static str,
    /// Mount flags.
    pub flags: MountFlags,
    /// Filesystem options.
    pub data: &'static str,
}

impl fmt::Display for MountPoint {
    /// The shell equivalent, for logs and `--dry-run`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opts = crate::sys::mount_options(self.flags, self.data);
        let opts = if opts.is_empty() { String::new() } else { format!(" -o {opts}") };
        write!(f, "mount -t {}{opts} {} {}", self.fstype, self.source, self.target)
    }
}

const NOSUID_NODEV: MountFlags = MountFlags::NOSUID.union(MountFlags::NODEV);
const NOSUID_NODEV_NOEXEC: MountFlags = NOSUID_NODEV.union(MountFlags::NOEXEC);

/// The API filesystems, in mount order (devtmpfs before anything opens `/dev`).
pub const EARLY_MOUNTS: [MountPoint; 5] = [
    MountPoint { source: "proc", target: "/proc", fstype: "proc", flags: NOSUID_NODEV_NOEXEC, data: "" },
    MountPoint { source: "sysfs", target: "/sys", fstype: "sysfs", flags: NOSUID_NODEV_NOEXEC, data: "" },
    MountPoint { source: "devtmpfs", target: "/dev", fstype: "devtmpfs", flags: MountFlags::NOSUID, data: "mode=0755" },
    MountPoint { source: "tmpfs", target: "/run", fstype: "tmpfs", flags: NOSUID_NODEV, data: "mode=0755" },
    MountPoint { source: "tmpfs", target: "/tmp", fstype: "tmpfs", flags: NOSUID_NODEV, data: "mode=1777" },
];

static PANIC_ACTION: AtomicU8 = AtomicU8::new(0);

fn action_code(a: Action) -> u8 {
    match a {
        Action::Reboot => 0,
        Action::Halt => 1,
        Action::Poweroff => 2,
    }
}

/// The failure action the panic hook applies (the plan's once it is read; reboot before).
pub fn panic_action() -> Action {
    match PANIC_ACTION.load(Ordering::Relaxed) {
        1 => Action::Halt,
        2 => Action::Poweroff,
        _ => Action::Reboot,
    }
}

/// Why the capture failed. Every message says what failed, on what, and what to do.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CaptureError {
    #[error("not a capture boot (no {VMCORE}): this image only runs in a kdump capture kernel")]
    NotCaptureBoot,
    #[error("cannot read the capture plan {path}: {}; rebuild the image with `rkdump build`", OsError(*.errno))]
    PlanRead { path: String, errno: Errno },
    #[error("bad capture plan {path}: {source}; rebuild the image with `rkdump build`")]
    Plan { path: String, source: PlanError },
    #[error("capture plan {path} is not UTF-8; rebuild the image with `rkdump build`")]
    PlanEncoding { path: String },
    #[error(
        "target {spec} did not appear within {secs} s; block devices seen: {seen}; check extra_modules and the target line in kdump.conf"
    )]
    DeviceTimeout { spec: String, secs: u32, seen: String },
    #[error("cannot mount {device} ({fstype}) on {mnt}: {}{hint}", OsError(*.errno))]
    MountTarget { device: String, fstype: String, mnt: String, errno: Errno, hint: String },
    #[error("bad dump path {path:?}: it must be absolute and must not contain \"..\"")]
    BadPath { path: String },
    #[error("cannot create {path}: {}", OsError(*.errno))]
    Mkdir { path: String, errno: Errno },
    #[error("saving {step} failed: {source}; the partial file keeps its -incomplete name")]
    Save { step: String, source: SaveError },
    /// A `kdump_pre` hook failed: no dump, and (as in kdump-utils) the final action follows.
    #[error("kdump_pre {program} {how}: the dump is skipped")]
    PreHook { program: String, how: String, final_action: Action },
}

/// The capture init's state: the system, the log, and what to undo at the end.
#[derive(Debug)]
pub struct Init<S: Sys> {
    /// The system calls.
    pub sys: S,
    /// Where messages go.
    pub log: Logger<S::File>,
    /// Action on failure: reboot until the plan says otherwise.
    pub failure_action: Action,
    /// Whether the target is mounted on [`TARGET_MNT`].
    pub target_mounted: bool,
    /// Whether devtmpfs is mounted on `/dev` (otherwise device nodes are created by hand).
    pub devtmpfs: bool,
    /// How the plan says the vmcore is written (set once the plan is read).
    pub collector: Collector,
    /// The dump directory, once made (given to the hooks as `RKDUMP_DUMP_DIR`).
    pub dump_dir: Option<String>,
    /// The raw target's device node, once found (given to the hooks as `RKDUMP_RAW_DEVICE`).
    pub raw_device: Option<String>,
    /// The plan, once read (for the failure handling of `on_failure`).
    pub plan: Option<Plan>,
    /// Messages logged before kmsg was opened (replayed into it); None once setup is done.
    early: Option<Vec<(Level, String)>>,
}

impl<S: Sys> Init<S> {
    /// A fresh init over `sys`, logging to the console only.
    pub fn new(sys: S) -> Self {
        Init {
            sys,
            log: Logger::default(),
            failure_action: Action::Reboot,
            target_mounted: false,
            devtmpfs: false,
            collector: Collector::default(),
            dump_dir: None,
            raw_device: None,
            plan: None,
            early: Some(Vec::new()),
        }
    }

    /// Logs a message (see [`crate::log`]).
    pub fn log(&mut self, level: Level, msg: &str) {
        self.log.log(&mut self.sys, level, msg);
        if let Some(early) = self.early.as_mut() {
            early.push((level, msg.to_string()));
        }
    }

    fn set_failure_action(&mut self, a: Action) {
        self.failure_action = a;
        PANIC_ACTION.store(action_code(a), Ordering::Relaxed);
    }
}

/// Step 1: API filesystems, console, kmsg.
pub fn setup<S: Sys>(init: &mut Init<S>) {
    for m in EARLY_MOUNTS {
        if !init.sys.exists(m.target) {
            if let Err(e) = init.sys.mkdir(m.target, 0o755) {
                if e != Errno::EXIST {
                    init.log(Level::Err, &format!("cannot create mount point {}: {}", m.target, OsError(e)));
                }
            }
        }
        match init.sys.mount(m.source, m.target, m.fstype, m.flags, m.data) {
            // EBUSY: already mounted (e.g. by the kernel).
            Ok(()) | Err(Errno::BUSY) => {
                if m.fstype == "devtmpfs" {
                    init.devtmpfs = true;
                }
            }
            Err(e) => init.log(Level::Err, &format!("{m} failed: {}", OsError(e))),
        }
    }
    match init.sys.ensure_console() {
        Ok(true) => init.log(Level::Warning, "PID 1 had no console; reopened /dev/console"),
        Ok(false) => {}
        Err(e) => init.log(Level::Warning, &format!("cannot open /dev/console: {}", OsError(e))),
    }
    let mut kmsg = init.sys.open("/dev/kmsg", Open::Write);
    if matches!(kmsg, Err(Errno::NOENT)) && init.sys.mknod("/dev/kmsg", NodeKind::Char, 1, 11).is_ok() {
        kmsg = init.sys.open("/dev/kmsg", Open::Write);
    }
    match kmsg {
        Ok(file) => {
            // Without this the kernel drops user records beyond 10 per 5 s.
            if let Ok(mut f) = init.sys.open("/proc/sys/kernel/printk_devkmsg", Open::Write) {
                let _ = crate::sys::write_all(&mut init.sys, &mut f, b"on\n");
            }
            let cl = read_file(&mut init.sys, "/proc/sys/kernel/printk", 256)
                .ok()
                .and_then(|t| parse_console_loglevel(&String::from_utf8_lossy(&t)));
            init.log.attach_kmsg(file, cl);
            // Replay what was only on the console into the kernel log (it already was echoed).
            for (level, msg) in init.early.take().unwrap_or_default() {
                init.log.log_kmsg_only(&mut init.sys, level, &msg);
            }
        }
        Err(e) => {
            init.log(Level::Warning, &format!("cannot open /dev/kmsg ({}); logging to the console only", OsError(e)))
        }
    }
    init.early = None;
    init.log(Level::Notice, &format!("rkdump-init {} starting", env!("CARGO_PKG_VERSION")));
}

fn read_plan<S: Sys>(init: &mut Init<S>) -> Result<Plan, CaptureError> {
    let path = PLAN_PATH.to_string();
    let bytes = read_file(&mut init.sys, &path, MAX_PLAN)
        .map_err(|errno| CaptureError::PlanRead { path: path.clone(), errno })?;
    let text = String::from_utf8(bytes).map_err(|_| CaptureError::PlanEncoding { path: path.clone() })?;
    Plan::parse(&text).map_err(|source| CaptureError::Plan { path, source })
}

fn load_modules<S: Sys>(init: &mut Init<S>, modules: &[String]) {
    if modules.is_empty() {
        return;
    }
    let mut loader = ModuleLoader::default();
    let (mut loaded, mut present, mut failed) = (0, 0, 0);
    for (i, m) in modules.iter().enumerate() {
        match loader.load(&mut init.sys, m) {
            Ok(Loaded::Loaded) => loaded += 1,
            Ok(Loaded::AlreadyPresent) => present += 1,
            // A kernel built without module support (a dedicated capture kernel from `rkdump
            // kernel-config`, which builds the drivers in): say so once, not per module.
            Err(crate::modules::ModuleError::Load { errno: Errno::NOSYS, .. }) => {
                init.log(
                    Level::Warning,
                    &format!(
                        "this kernel cannot load modules (no module support): skipping the image's {} modules; the target's drivers must be built in",
                        modules.len() - i
                    ),
                );
                failed += modules.len() - i;
                break;
            }
            Err(e) => {
                failed += 1;
                init.log(Level::Err, &format!("{e}; continuing"));
            }
        }
    }
    let how = if loader.kernel_cannot_decompress { " (decompressed in-process)" } else { "" };
    init.log(
        Level::Info,
        &format!("modules: {loaded} loaded{how}, {present} already present or built in, {failed} failed"),
    );
}

fn describe_seen(seen: &BTreeMap<String, String>, scan_error: Option<Errno>) -> String {
    const MAX: usize = 32;
    if seen.is_empty() {
        return match scan_error {
            Some(e) => format!("none (cannot list {}: {})", probe::SYS_CLASS_BLOCK, OsError(e)),
            None => "none".into(),
        };
    }
    let parts: Vec<&str> = seen.values().map(String::as_str).take(MAX).collect();
    let more = seen.len().saturating_sub(MAX);
    let more = if more > 0 { format!(" and {more} more") } else { String::new() };
    format!("{}{more}", parts.join(", "))
}

/// Waits for the plan's target device and returns its node path.
fn wait_for_target<S: Sys>(init: &mut Init<S>, plan: &Plan) -> Result<String, CaptureError> {
    let spec = &plan.target.device;
    let timeout = Duration::from_secs(u64::from(plan.device_timeout_secs));
    let start = init.sys.monotonic();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut scan_error;
    let mut next_note = WAIT_NOTE_INTERVAL;
    init.log(Level::Info, &format!("waiting up to {} s for target {spec}", plan.device_timeout_secs));
    loop {
        let found = match spec {
            DeviceSpec::Path(p) => {
                if !init.devtmpfs {
                    if let Some(name) = p.strip_prefix("/dev/") {
                        probe::make_node(&mut init.sys, &name.replace('/', "!"), p);
                    }
                }
                match init.sys.read_dir(probe::SYS_CLASS_BLOCK) {
                    Ok(names) => {
                        scan_error = None;
                        for n in names {
                            seen.insert(n.clone(), n);
                        }
                    }
                    Err(e) => scan_error = Some(e),
                }
                init.sys.exists(p).then(|| p.clone())
            }
            DeviceSpec::Uuid(_) | DeviceSpec::Label(_) => match probe::scan(&mut init.sys, !init.devtmpfs) {
                Ok(devs) => {
                    scan_error = None;
                    let hit = devs
                        .iter()
                        .find(|d| matches!(&d.probe, Ok(Some(i)) if i.matches(spec)))
                        .map(|d| d.node.clone());
                    for d in devs {
                        let Device { name, .. } = &d;
                        seen.insert(name.clone(), d.to_string());
                    }
                    hit
                }
                Err(e) => {
                    scan_error = Some(e);
                    None
                }
            },
            DeviceSpec::PartUuid(u) => match probe::find_partuuid(&mut init.sys, u, !init.devtmpfs, &mut seen) {
                Ok(hit) => {
                    scan_error = None;
                    hit
                }
                Err(e) => {
                    scan_error = Some(e);
                    None
                }
            },
        };
        let elapsed = init.sys.monotonic().saturating_sub(start);
        if let Some(node) = found {
            init.log(Level::Info, &format!("found target {spec} at {node} after {:.1} s", elapsed.as_secs_f64()));
            return Ok(node);
        }
        if elapsed >= timeout {
            return Err(CaptureError::DeviceTimeout {
                spec: spec.to_string(),
                secs: plan.device_timeout_secs,
                seen: describe_seen(&seen, scan_error),
            });
        }
        if elapsed >= next_note {
            init.log(
                Level::Info,
                &format!("still waiting for {spec} ({} of {} s)", elapsed.as_secs(), plan.device_timeout_secs),
            );
            next_note += WAIT_NOTE_INTERVAL;
        }
        init.sys.sleep(POLL_INTERVAL.min(timeout - elapsed));
    }
}

fn mount_target<S: Sys>(init: &mut Init<S>, plan: &Plan, device: &str) -> Result<(), CaptureError> {
    let fstype = plan.target.fstype.as_str();
    mkdir_p(&mut init.sys, "/", TARGET_MNT, 0o755)
        .map_err(|errno| CaptureError::Mkdir { path: TARGET_MNT.into(), errno })?;
    let mounted = watchdog::watched(&format!("mounting {device}"), plan.stall_timeout_secs, || {
        init.sys.mount(device, TARGET_MNT, fstype, MountFlags::empty(), "")
    });
    mounted.map_err(|errno| {
        let hint = match errno {
            Errno::NODEV => format!("; the capture kernel has no {fstype} driver: add its module to extra_modules"),
            Errno::INVAL => {
                format!("; is {device} really {fstype}? check the target line in kdump.conf")
            }
            _ => String::new(),
        };
        CaptureError::MountTarget { device: device.into(), fstype: fstype.into(), mnt: TARGET_MNT.into(), errno, hint }
    })?;
    init.target_mounted = true;
    init.log(Level::Info, &format!("mounted {device} ({fstype}) on {TARGET_MNT}"));
    Ok(())
}

fn make_dump_dir<S: Sys>(init: &mut Init<S>, plan: &Plan) -> Result<DumpDir, CaptureError> {
    let path = plan.path.trim_end_matches('/');
    if !plan.path.starts_with('/') || path.split('/').any(|c| c == "..") {
        return Err(CaptureError::BadPath { path: plan.path.clone() });
    }
    let base = format!("{TARGET_MNT}{path}");
    mkdir_p(&mut init.sys, TARGET_MNT, path, 0o755)
        .map_err(|errno| CaptureError::Mkdir { path: base.clone(), errno })?;
    let now = init.sys.wall_clock();
    let name = dump_dir_name(LOCAL_HOST, now);
    let dir = DumpDir { path: format!("{base}/{name}"), on_target: format!("{path}/{name}") };
    match init.sys.mkdir(&dir.path, 0o700) {
        Ok(()) | Err(Errno::EXIST) => Ok(dir),
        Err(errno) => Err(CaptureError::Mkdir { path: dir.path, errno }),
    }
}

/// Step 2: everything between the mounts and the final action. Returns the final action.
pub fn capture<S: Sys>(init: &mut Init<S>, steps: &mut [Box<dyn SaveStep<S>>]) -> Result<Action, CaptureError> {
    if !init.sys.exists(VMCORE) {
        return Err(CaptureError::NotCaptureBoot);
    }
    let plan = read_plan(init)?;
    init.set_failure_action(plan.failure_action);
    init.collector = plan.collector;
    init.plan = Some(plan.clone());
    init.log(
        Level::Info,
        &format!(
            "plan: target {} {}, path {}, {} module(s), collector {}, final_action {}, failure_action {}",
            plan.target.fstype,
            plan.target.device,
            plan.path,
            plan.modules.len(),
            plan.collector,
            plan.final_action.as_str(),
            plan.failure_action.as_str()
        ),
    );
    load_modules(init, &plan.modules);
    let device = wait_for_target(init, &plan)?;
    if plan.target.is_raw() {
        return capture_raw(init, &plan, &device, steps);
    }
    let dir = mount_and_make_dir(init, &plan, &device)?;
    run_pre_hooks(init, &plan)?;
    save_steps(init, &dir, steps)?;
    Ok(plan.final_action)
}

/// Runs the plan's `pre` hooks in order; the first that fails stops the capture.
fn run_pre_hooks<S: Sys>(init: &mut Init<S>, plan: &Plan) -> Result<(), CaptureError> {
    for program in &plan.pre {
        if let Err(how) = run_hook(init, "kdump_pre", program, &[], hook_limit(init)) {
            return Err(CaptureError::PreHook { program: program.clone(), how, final_action: plan.final_action });
        }
    }
    Ok(())
}

/// The plan's `stall_timeout` (no watch before the plan is read).
fn stall_secs<S: Sys>(init: &Init<S>) -> u32 {
    init.plan.as_ref().map_or(0, |p| p.stall_timeout_secs)
}

/// Runs the save steps into `dir`: a required step's failure stops them.
fn save_steps<S: Sys>(
    init: &mut Init<S>,
    dir: &DumpDir,
    steps: &mut [Box<dyn SaveStep<S>>],
) -> Result<(), CaptureError> {
    let stall = stall_secs(init);
    for step in steps.iter_mut() {
        let name = step.name().to_string();
        let r = watchdog::watched(&format!("saving {name}"), stall, || step.run(init, dir));
        if let Err(source) = r {
            if step.required() {
                return Err(CaptureError::Save { step: name, source });
            }
            init.log(Level::Warning, &format!("saving {name} failed: {source}; continuing"));
        }
    }
    Ok(())
}

/// `failure_action dump_to_rootfs`: the dump again, to the root filesystem, after the primary
/// target failed (its mount, if any, undone first). A flattened collector (for a raw target)
/// writes an ordinary kdump-compressed file there.
fn dump_to_rootfs<S: Sys>(
    init: &mut Init<S>,
    target: &crate::plan::Target,
    path: &str,
    steps: &mut [Box<dyn SaveStep<S>>],
) -> Result<(), CaptureError> {
    let Some(mut plan) = init.plan.clone() else {
        return Ok(());
    };
    if init.target_mounted {
        let what = format!("unmounting the failed target from {TARGET_MNT}");
        let unmounted = watchdog::watched(&what, plan.stall_timeout_secs, || init.sys.umount(TARGET_MNT));
        match unmounted {
            Ok(()) => init.target_mounted = false,
            Err(errno) => {
                return Err(CaptureError::MountTarget {
                    device: "the failed target".into(),
                    fstype: plan.target.fstype.clone(),
                    mnt: TARGET_MNT.into(),
                    errno,
                    hint: "; it could not be unmounted to mount the root filesystem there".into(),
                })
            }
        }
    }
    plan.target = target.clone();
    plan.path = path.to_string();
    if let Collector::Filter { format, .. } = &mut plan.collector {
        if *format == crate::plan::DumpFormat::Flattened {
            *format = crate::plan::DumpFormat::Kdump;
        }
    }
    init.collector = plan.collector;
    init.raw_device = None;
    init.dump_dir = None;
    init.log(Level::Notice, &format!("dump_to_rootfs: saving the dump to {} {}, {path}", target.fstype, target.device));
    let device = wait_for_target(init, &plan)?;
    let dir = mount_and_make_dir(init, &plan, &device)?;
    save_steps(init, &dir, steps)
}

/// Mounts the plan's filesystem target from `device` and makes the dump directory (given to the
/// hooks as `RKDUMP_DUMP_DIR`).
fn mount_and_make_dir<S: Sys>(init: &mut Init<S>, plan: &Plan, device: &str) -> Result<DumpDir, CaptureError> {
    mount_target(init, plan, device)?;
    let dir = make_dump_dir(init, plan)?;
    init.dump_dir = Some(dir.path.clone());
    Ok(dir)
}

/// The capture to a raw device: no filesystem, no dump directory; the hooks, then the steps'
/// raw writes (the vmcore as a flattened stream).
fn capture_raw<S: Sys>(
    init: &mut Init<S>,
    plan: &Plan,
    device: &str,
    steps: &mut [Box<dyn SaveStep<S>>],
) -> Result<Action, CaptureError> {
    init.raw_device = Some(device.to_string());
    run_pre_hooks(init, plan)?;
    let mut written = false;
    for step in steps.iter_mut() {
        let name = step.name().to_string();
        let r = watchdog::watched(&format!("saving {name}"), plan.stall_timeout_secs, || step.run_raw(init, device));
        match r {
            Ok(w) => written |= w,
            Err(source) if step.required() => return Err(CaptureError::Save { step: name, source }),
            Err(source) => init.log(Level::Warning, &format!("saving {name} failed: {source}; continuing")),
        }
    }
    if !written {
        return Err(CaptureError::Save {
            step: "vmcore".into(),
            source: SaveError::Extract {
                what: format!("a dump for the raw device {device}"),
                reason: "no save step writes to raw devices".into(),
            },
        });
    }
    Ok(plan.final_action)
}

/// The plan's `hook_timeout` for the `pre`/`post` hooks (none before the plan is read, or 0).
fn hook_limit<S: Sys>(init: &Init<S>) -> Option<Duration> {
    let secs = init.plan.as_ref().map_or(0, |p| p.hook_timeout_secs);
    (secs > 0).then(|| Duration::from_secs(u64::from(secs)))
}

/// Runs one hook with the hooks' environment (`PATH`, `RKDUMP_TARGET` and `RKDUMP_DUMP_DIR`
/// once known), logging it, and kills it at `limit` (the `pre`/`post` hooks get
/// [`hook_limit`]; the failure action's shell none). `Err`: how it failed (a non-zero status,
/// the time limit, or why it could not run).
fn run_hook<S: Sys>(
    init: &mut Init<S>,
    kind: &str,
    program: &str,
    args: &[&str],
    limit: Option<Duration>,
) -> Result<(), String> {
    init.log(
        Level::Info,
        &format!("running {kind} {program}{}", args.iter().map(|a| format!(" {a}")).collect::<String>()),
    );
    let mut env: Vec<(&str, &str)> = vec![("PATH", HOOK_PATH), ("HOME", "/")];
    if init.target_mounted {
        env.push(("RKDUMP_TARGET", TARGET_MNT));
    }
    let dir = init.dump_dir.clone();
    if let Some(d) = &dir {
        env.push(("RKDUMP_DUMP_DIR", d));
    }
    let raw = init.raw_device.clone();
    if let Some(d) = &raw {
        env.push(("RKDUMP_RAW_DEVICE", d));
    }
    match init.sys.run_program(program, args, &env, limit) {
        Ok(Some(0)) => Ok(()),
        Ok(Some(status)) => Err(format!("exited with status {status}")),
        Ok(None) => Err(format!(
            "did not finish within {} s and was killed (hook_timeout in kdump.conf)",
            limit.unwrap_or_default().as_secs()
        )),
        Err(errno) => Err(format!("could not be run: {}", OsError(errno))),
    }
}

/// Runs the plan's `post` hooks (none before the plan is read) with the capture's status
/// (0: dump saved) as their argument; their failures are logged and change nothing.
fn run_post_hooks<S: Sys>(init: &mut Init<S>, status: u8) {
    let status = status.to_string();
    let post = init.plan.as_ref().map(|p| p.post.clone()).unwrap_or_default();
    for program in post {
        if let Err(how) = run_hook(init, "kdump_post", &program, &[&status], hook_limit(init)) {
            init.log(Level::Err, &format!("kdump_post {program} {how}"));
        }
    }
}

/// Step 3: unmount the target, sync, apply `action` with reboot(2).
pub fn finish<S: Sys>(init: &mut Init<S>, action: Action) {
    // A target that stopped answering (after a failed dump, its dirty pages) could block both.
    watchdog::watched(&format!("unmounting {TARGET_MNT} and sync"), stall_secs(init), || {
        if init.target_mounted {
            match init.sys.umount(TARGET_MNT) {
                Ok(()) => init.target_mounted = false,
                Err(e) => init.log(Level::Warning, &format!("cannot unmount {TARGET_MNT}: {}", OsError(e))),
            }
        }
        init.sys.sync();
    });
    init.log(Level::Notice, &format!("{}ing", action_verb(action)));
    if let Err(e) = init.sys.reboot(action) {
        init.log(Level::Err, &format!("reboot(2) for {} failed: {}", action.as_str(), OsError(e)));
    }
}

/// `", peak memory X MiB of Y MiB"`: this process's peak resident size (`VmHWM`) against the
/// capture kernel's memory (`MemTotal`), for sizing `crashkernel=` (see `rkdump estimate`).
fn memory_note<S: Sys>(sys: &mut S) -> Option<String> {
    let kib = |text: &[u8], key: &str| -> Option<u64> {
        let text = std::str::from_utf8(text).ok()?;
        let line = text.lines().find(|l| l.starts_with(key))?;
        line[key.len()..].trim().trim_end_matches("kB").trim().parse().ok()
    };
    let status = read_file(sys, "/proc/self/status", 64 << 10).ok()?;
    let meminfo = read_file(sys, "/proc/meminfo", 64 << 10).ok()?;
    let peak = kib(&status, "VmHWM:")?;
    let total = kib(&meminfo, "MemTotal:")?;
    Some(format!(", peak memory {:.1} MiB of {:.1} MiB", peak as f64 / 1024.0, total as f64 / 1024.0))
}

fn action_verb(a: Action) -> &'static str {
    match a {
        Action::Reboot => "reboot",
        Action::Halt => "halt",
        Action::Poweroff => "power",
    }
}

/// The whole PID 1 sequence; returns the action applied (reboot(2) only returns in tests or
/// on failure, after which the caller must idle forever: PID 1 never exits).
pub fn run<S: Sys>(init: &mut Init<S>, steps: &mut [Box<dyn SaveStep<S>>]) -> Action {
    setup(init);
    let start = init.sys.monotonic();
    let (action, status) = match capture(init, steps) {
        Ok(a) => {
            let secs = init.sys.monotonic().saturating_sub(start).as_secs_f64();
            let memory = memory_note(&mut init.sys).unwrap_or_default();
            init.log(Level::Notice, &format!("capture complete in {secs:.1} s{memory}; final action {}", a.as_str()));
            (a, 0)
        }
        Err(CaptureError::PreHook { program, how, final_action }) => {
            // kdump-utils: a failing kdump_pre skips the dump and runs the final action
            // (not the failure action, and no kdump_post).
            init.log(
                Level::Err,
                &format!("kdump_pre {program} {how}: no dump written; final action {}", final_action.as_str()),
            );
            finish(init, final_action);
            return final_action;
        }
        Err(e) => {
            init.log(Level::Err, &e.to_string());
            let a = init.failure_action;
            let on_failure = init.plan.as_ref().and_then(|p| p.on_failure.clone());
            let status = match on_failure {
                None => 1,
                Some(OnFailure::Shell) => {
                    init.log(
                        Level::Err,
                        &format!("capture failed; failure_action shell: /bin/sh on the console, then {}", a.as_str()),
                    );
                    if let Err(how) = run_hook(init, "failure_action shell", "/bin/sh", &[], None) {
                        init.log(Level::Err, &format!("failure_action shell: /bin/sh {how}"));
                    }
                    1
                }
                Some(OnFailure::DumpToRootfs { target, path }) => match dump_to_rootfs(init, &target, &path, steps) {
                    Ok(()) => {
                        init.log(Level::Notice, &format!("dump_to_rootfs: dump saved; {}", a.as_str()));
                        0
                    }
                    Err(e) => {
                        init.log(Level::Err, &format!("dump_to_rootfs failed too: {e}"));
                        1
                    }
                },
            };
            if status != 0 {
                init.log(Level::Err, &format!("capture failed; failure action {}", a.as_str()));
            }
            (a, status)
        }
    };
    run_post_hooks(init, status);
    finish(init, action);
    action
}

/// The boot sequence the plan would run, as shell-like lines (for `--dry-run`).
pub fn describe(plan: &Plan) -> Vec<String> {
    let mut out: Vec<String> = EARLY_MOUNTS.iter().map(|m| m.to_string()).collect();
    out.push("exec >/dev/console 2>&1  # only if PID 1 has no console".into());
    out.push("echo on >/proc/sys/kernel/printk_devkmsg; log to /dev/kmsg".into());
    out.push(format!("test -e {VMCORE} || failure_action {}", plan.failure_action.as_str()));
    for m in &plan.modules {
        out.push(format!("finit_module {m}"));
    }
    out.push(format!("wait up to {} s for {}", plan.device_timeout_secs, plan.target.device));
    out.push(match plan.stall_timeout_secs {
        0 => "# no stall watchdog (stall_timeout 0)".to_string(),
        s => format!(
            "# while saving: no progress for {s} s -> {} without sync (stall_timeout)",
            plan.failure_action.as_str()
        ),
    });
    if !plan.pre.is_empty() || !plan.post.is_empty() {
        out.push(match plan.hook_timeout_secs {
            0 => "# hooks run without a time limit (hook_timeout 0)".to_string(),
            s => format!("# a hook still running after {s} s is killed and counts as failed (hook_timeout)"),
        });
    }
    if plan.target.is_raw() {
        for p in &plan.pre {
            out.push(format!("{p} || {{ {}; }}  # kdump_pre: non-zero skips the dump", plan.final_action.as_str()));
        }
        out.push(format!("makedumpfile -F ({}) {VMCORE} > {} && sync", plan.collector, plan.target.device));
        for p in &plan.post {
            out.push(format!("{p} $status  # kdump_post: 0 if the dump was saved"));
        }
        out.push(format!("sync; {}  # on any error: {}", plan.final_action.as_str(), plan.failure_action.as_str()));
        return out;
    }
    out.push(format!("mount -t {} <device> {TARGET_MNT}", plan.target.fstype));
    let path = plan.path.trim_end_matches('/');
    out.push(format!("mkdir -p {TARGET_MNT}{path}"));
    let dir = format!("{TARGET_MNT}{path}/{LOCAL_HOST}-YYYY-MM-DD-HH:MM:SS");
    out.push(format!("mkdir -m 0700 {dir}"));
    for p in &plan.pre {
        out.push(format!("{p} || {{ {}; }}  # kdump_pre: non-zero skips the dump", plan.final_action.as_str()));
    }
    out.push(format!("cp {VMCORE} {dir}/vmcore-incomplete && sync && mv {dir}/vmcore-incomplete {dir}/vmcore"));
    for p in &plan.post {
        out.push(format!("{p} $status  # kdump_post: 0 if the dump was saved"));
    }
    out.push(format!(
        "umount {TARGET_MNT}; sync; {}  # on any error: {}{}",
        plan.final_action.as_str(),
        plan.on_failure.as_ref().map(|o| format!("{o}, then ")).unwrap_or_default(),
        plan.failure_action.as_str()
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::tests::{fake_ko, xz};
    use crate::probe::tests::{ext4_image, UUID};
    use crate::save::{CopyVmcore, SaveDmesg, SaveVmcore};
    use crate::sys::fake::{FakeSys, Node};

    const UUID_STR: &str = "0b6f5a6e-2b6c-4d43-9c59-2f1f5b0b8c11";
    /// 2024-02-29 23:59:59 UTC.
    const WALL: u64 = 1_709_251_199;
    const DIR: &str = "/kdumproot/var/crash/127.0.0.1-2024-02-29-23:59:59";

    fn vmcore() -> Vec<u8> {
        (0..5 * 4096).map(|i| (i % 241) as u8).collect()
    }

    fn plan_text(target: &str, extra: &str) -> String {
        format!(
            "rkdump-plan 1\ntarget ext4 {target}\npath /var/crash\nmodule /lib/modules/virtio_blk.ko.xz\nmodule /lib/modules/ext4.ko\ndevice_timeout 3\ncollector copy\n{extra}"
        )
    }

    fn add_block(sys: &mut FakeSys, name: &str, devno: &str, content: Vec<u8>) {
        sys.add_file(&format!("/sys/class/block/{name}/dev"), format!("{devno}\n"));
        sys.add_file(&format!("/sys/class/block/{name}/size"), format!("{}\n", content.len() / 512));
        sys.add(&format!("/dev/{name}"), Node::Block(content));
    }

    /// A capture kernel after kexec: /proc/vmcore, a plan, two modules; vda (no filesystem)
    /// exists from the start; vdb (the ext4 target) appears once virtio_blk is loaded.
    fn capture_kernel(plan: &str) -> FakeSys {
        let mut sys = FakeSys::new();
        sys.wall = WALL;
        sys.add_file(VMCORE, vmcore());
        sys.add("/dev/kmsg", Node::Char);
        sys.add_file("/proc/sys/kernel/printk", "4\t4\t1\t7\n");
        sys.add_file(PLAN_PATH, plan);
        sys.add_file("/lib/modules/virtio_blk.ko.xz", xz(&fake_ko()));
        sys.add_file("/lib/modules/ext4.ko", fake_ko());
        // Debian 12's 6.1: no in-kernel module decompression.
        sys.fail("finit_module /lib/modules/virtio_blk.ko.xz flags=4", Errno::INVAL);
        add_block(&mut sys, "vda", "254:0", vec![0xAA; 8192]);
        for (path, node) in [
            ("/sys/class/block/vdb/dev", Node::File(b"254:16\n".to_vec())),
            ("/sys/class/block/vdb/size", Node::File(b"4\n".to_vec())),
            ("/dev/vdb", Node::Block(ext4_image(&UUID, "crashdump"))),
        ] {
            sys.appear_on.push(("init_module".into(), path.into(), node));
        }
        sys
    }

    const LOG: &[u8] = b"[    8.083923] Kernel panic - not syncing: sysrq triggered crash\n";

    fn fake_log(path: &str) -> Result<Vec<u8>, String> {
        assert_eq!(path, VMCORE);
        Ok(LOG.to_vec())
    }

    fn broken_log(_: &str) -> Result<Vec<u8>, String> {
        Err("the dump has no VMCOREINFO note".into())
    }

    thread_local! {
        /// What the fake dump writer was asked to do, in this test's thread.
        static WRITER_CALLS: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    fn fake_writer(src: &str, dst: &str, c: Collector, progress: &mut dyn FnMut(u64, u64)) -> Result<String, String> {
        for done in [0, 3, 7, 10] {
            progress(done, 10);
        }
        WRITER_CALLS.with(|w| w.borrow_mut().push(format!("{src} -> {dst} ({c})")));
        Ok("12 of 100 pages kept".into())
    }

    fn full_disk_writer(_: &str, _: &str, _: Collector, _: &mut dyn FnMut(u64, u64)) -> Result<String, String> {
        Err("cannot write the dump at offset 8192: No space left on device (os error 28)".into())
    }

    /// The default steps with the kernel log and the filtered dump faked.
    fn steps(log: crate::save::LogExtractor) -> Vec<Box<dyn SaveStep<FakeSys>>> {
        vec![Box::new(SaveDmesg::new(log)), Box::new(SaveVmcore::new(fake_writer))]
    }

    fn run_fake(sys: FakeSys) -> (Action, Init<FakeSys>) {
        let mut init = Init::new(sys);
        let mut steps = steps(fake_log);
        let action = run(&mut init, &mut steps);
        (action, init)
    }

    const SEQUENCE: &[&str] = &[
        "mount",
        "umount",
        "mkdir",
        "mknod",
        "finit_module",
        "init_module",
        "ensure_console",
        "fsync",
        "rename",
        "sync",
        "reboot",
    ];

    #[test]
    fn happy_path_call_sequence() {
        let (action, init) = run_fake(capture_kernel(&plan_text(&format!("UUID={UUID_STR}"), "")));
        assert_eq!(action, Action::Reboot);
        let expected = vec![
            "mount -t proc -o nodev,noexec,nosuid proc /proc".to_string(),
            "mount -t sysfs -o nodev,noexec,nosuid sysfs /sys".into(),
            "mount -t devtmpfs -o nosuid,mode=0755 devtmpfs /dev".into(),
            "mkdir -m 755 /run".into(),
            "mount -t tmpfs -o nodev,nosuid,mode=0755 tmpfs /run".into(),
            "mkdir -m 755 /tmp".into(),
            "mount -t tmpfs -o nodev,nosuid,mode=1777 tmpfs /tmp".into(),
            "ensure_console".into(),
            "finit_module /lib/modules/virtio_blk.ko.xz flags=4".into(),
            format!("init_module {} bytes", fake_ko().len()),
            "finit_module /lib/modules/ext4.ko flags=0".into(),
            "mkdir -m 755 /kdumproot".into(),
            "mount -t ext4 /dev/vdb /kdumproot".into(),
            "mkdir -m 755 /kdumproot/var".into(),
            "mkdir -m 755 /kdumproot/var/crash".into(),
            format!("mkdir -m 700 {DIR}"),
            format!("fsync {DIR}/vmcore-dmesg.txt-incomplete"),
            format!("rename {DIR}/vmcore-dmesg.txt-incomplete {DIR}/vmcore-dmesg.txt"),
            format!("fsync {DIR}"),
            format!("fsync {DIR}/vmcore-incomplete"),
            format!("rename {DIR}/vmcore-incomplete {DIR}/vmcore"),
            format!("fsync {DIR}"),
            "umount /kdumproot".into(),
            "sync".into(),
            "reboot reboot".into(),
        ];
        assert_eq!(init.sys.calls_matching(SEQUENCE), expected);
        // kmsg is opened after devtmpfs is mounted.
        let calls = &init.sys.calls;
        let devtmpfs = calls.iter().position(|c| c.contains("devtmpfs /dev")).unwrap();
        let kmsg = calls.iter().position(|c| c == "open /dev/kmsg write").unwrap();
        assert!(devtmpfs < kmsg);
        assert_eq!(init.sys.file(&format!("{DIR}/vmcore")).unwrap(), &vmcore()[..]);
        assert_eq!(init.sys.modes[DIR], 0o700);
        assert_eq!(init.sys.modes[&format!("{DIR}/vmcore")], 0o600);
        assert_eq!(init.sys.file("/proc/sys/kernel/printk_devkmsg"), None, "only written when present");
        let kmsg = init.sys.kmsg.join("\n");
        assert!(kmsg.contains("<5>rkdump: rkdump-init 0.1.0 starting"), "{kmsg}");
        assert!(kmsg.contains(&format!("found target UUID={UUID_STR} at /dev/vdb")), "{kmsg}");
        assert!(kmsg.contains("modules: 2 loaded (decompressed in-process), 0 already present"), "{kmsg}");
        assert!(kmsg.contains("<5>rkdump: capture complete"), "{kmsg}");
        assert!(kmsg.contains("vmcore: 100%"), "{kmsg}");
        // console_loglevel 4 (quiet): the kernel does not print info/notice lines: echoed.
        assert!(init.sys.console.contains("rkdump: vmcore: 100%"));
        assert!(init.sys.console.contains("rkdump: capture complete"));
    }

    /// The closing line gives the init's peak memory against the capture kernel's, read from
    /// /proc; without them it says nothing of memory.
    #[test]
    fn capture_complete_line_gives_peak_memory() {
        let mut sys = capture_kernel(&plan_text(&format!("UUID={UUID_STR}"), ""));
        sys.add_file("/proc/self/status", "Name:\tinit\nVmPeak:\t  30000 kB\nVmHWM:\t   14848 kB\n");
        sys.add_file("/proc/meminfo", "MemTotal:          98932 kB\nMemFree:  1 kB\n");
        let (_, init) = run_fake(sys);
        let kmsg = init.sys.kmsg.join("\n");
        assert!(
            kmsg.contains("capture complete in 0.0 s, peak memory 14.5 MiB of 96.6 MiB; final action reboot"),
            "{kmsg}"
        );
        let (_, init) = run_fake(capture_kernel(&plan_text(&format!("UUID={UUID_STR}"), "")));
        let kmsg = init.sys.kmsg.join("\n");
        assert!(kmsg.contains("capture complete in 0.0 s; final action reboot"), "{kmsg}");
    }

    #[test]
    fn not_a_capture_boot() {
        let mut sys = capture_kernel(&plan_text(&format!("UUID={UUID_STR}"), ""));
        sys.nodes.remove(VMCORE);
        let (action, init) = run_fake(sys);
        assert_eq!(action, Action::Reboot);
        assert!(
            init.sys.kmsg.iter().any(|l| l.starts_with("<3>rkdump: not a capture boot (no /proc/vmcore)")),
            "{:?}",
            init.sys.kmsg
        );
        // KERN_ERR is below console_loglevel 4: the kernel prints it, no duplicate echo.
        assert!(!init.sys.console.contains("not a capture boot"), "{}", init.sys.console);
        assert!(init.sys.calls_matching(&["open /etc/rkdump/plan", "finit_module", "umount"]).is_empty());
        assert_eq!(init.sys.calls.last().unwrap(), "reboot reboot");
        assert_eq!(init.sys.calls[init.sys.calls.len() - 2], "sync");
    }

    #[test]
    fn bad_or_missing_plan_runs_failure_action() {
        let (_, init) = run_fake(capture_kernel("rkdump-plan 1\ntarget ext4 /dev/vdb\nfrobnicate yes\n"));
        let kmsg = init.sys.kmsg.join("\n");
        assert!(kmsg.contains("bad capture plan /etc/rkdump/plan: plan line 3: unknown key \"frobnicate\""), "{kmsg}");
        assert!(kmsg.contains("rebuild the image with `rkdump build`"));
        assert_eq!(init.sys.calls.last().unwrap(), "reboot reboot");
        assert!(init.sys.calls_matching(&["finit_module"]).is_empty());

        let mut sys = capture_kernel("");
        sys.nodes.remove(PLAN_PATH);
        let (_, init) = run_fake(sys);
        let kmsg = init.sys.kmsg.join("\n");
        assert!(kmsg.contains("cannot read the capture plan /etc/rkdump/plan: No such file or directory"), "{kmsg}");
        assert_eq!(init.sys.calls.last().unwrap(), "reboot reboot");
    }

    #[test]
    fn module_failures_are_logged_and_capture_continues() {
        let plan = format!(
            "rkdump-plan 1\ntarget ext4 UUID={UUID_STR}\nmodule /lib/modules/virtio_blk.ko.xz\nmodule /lib/modules/ext4.ko\nmodule /lib/modules/gone.ko\nmodule /lib/modules/bad.ko\n"
        );
        let mut sys = capture_kernel(&plan);
        sys.add_file("/lib/modules/bad.ko", b"junk".to_vec());
        sys.fail("finit_module /lib/modules/ext4.ko", Errno::EXIST);
        sys.fail("finit_module /lib/modules/bad.ko", Errno::NOEXEC);
        let (action, init) = run_fake(sys);
        assert_eq!(action, Action::Reboot);
        let kmsg = init.sys.kmsg.join("\n");
        assert!(
            kmsg.contains("<3>rkdump: cannot open module /lib/modules/gone.ko: No such file or directory (os error 2); continuing"),
            "{kmsg}"
        );
        assert!(
            kmsg.contains("<3>rkdump: kernel refused module /lib/modules/bad.ko: Exec format error (os error 8)"),
            "{kmsg}"
        );
        assert!(
            kmsg.contains("modules: 1 loaded (decompressed in-process), 1 already present or built in, 2 failed"),
            "{kmsg}"
        );
        assert!(init.sys.file(&format!("{DIR}/vmcore")).is_some(), "the capture went on");
    }

    #[test]
    fn a_kernel_without_module_support_is_told_once_and_the_capture_goes_on() {
        let plan = format!(
            "rkdump-plan 1\ntarget ext4 UUID={UUID_STR}\nmodule /lib/modules/ext4.ko\nmodule /lib/modules/virtio_blk.ko.xz\nmodule /lib/modules/jbd2.ko\n"
        );
        let mut sys = capture_kernel(&plan);
        sys.fail("finit_module /lib/modules/ext4.ko", Errno::NOSYS);
        // The drivers are built in: the target is there from the start.
        for (path, node) in std::mem::take(&mut sys.appear_on).into_iter().map(|(_, p, n)| (p, n)) {
            sys.add(&path, node);
        }
        let (action, init) = run_fake(sys);
        assert_eq!(action, Action::Reboot);
        let kmsg = init.sys.kmsg.join("\n");
        assert!(
            kmsg.contains(
                "<4>rkdump: this kernel cannot load modules (no module support): skipping the image's 3 modules"
            ),
            "{kmsg}"
        );
        assert!(kmsg.contains("modules: 0 loaded, 0 already present or built in, 3 failed"), "{kmsg}");
        assert!(!kmsg.contains("kernel refused module"), "{kmsg}");
        assert_eq!(init.sys.calls_matching(&["finit_module"]).len(), 1, "no module tried after the first");
        assert!(init.sys.file(&format!("{DIR}/vmcore")).is_some(), "the capture went on");
    }

    #[test]
    fn device_wait_times_out_naming_devices_seen() {
        let mut sys = capture_kernel(&plan_text("UUID=11111111-2222-3333-4444-555555555555", "failure_action halt\n"));
        add_block(&mut sys, "sr0", "11:0", Vec::new());
        let (action, init) = run_fake(sys);
        assert_eq!(action, Action::Halt);
        // 3 s at 100 ms per poll, with a fake clock: it terminates and does not oversleep.
        assert_eq!(init.sys.sleeps, 30);
        assert_eq!(init.sys.now, Duration::from_secs(3));
        let msg = init.sys.kmsg.iter().find(|l| l.contains("did not appear")).unwrap().clone();
        assert_eq!(
            msg,
            format!(
                "<3>rkdump: target UUID=11111111-2222-3333-4444-555555555555 did not appear within 3 s; block devices seen: \
                 sr0 (unreadable: No medium found (os error 123)), vda (no ext/xfs/btrfs superblock), \
                 vdb (ext4 UUID={UUID_STR} LABEL=crashdump); check extra_modules and the target line in kdump.conf"
            )
        );
        assert!(init.sys.calls_matching(&["mount -t ext4", "umount"]).is_empty());
        let tail = &init.sys.calls[init.sys.calls.len() - 2..];
        assert_eq!(tail, ["sync", "reboot halt"]);
        assert_eq!(init.failure_action, Action::Halt);
    }

    #[test]
    fn device_wait_with_no_block_devices_at_all() {
        let mut sys = capture_kernel(&plan_text("/dev/sdz", ""));
        sys.appear_on.clear();
        // sysfs without a block class at all.
        sys.nodes.retain(|k, _| !k.starts_with("/sys/class"));
        let (_, init) = run_fake(sys);
        let kmsg = init.sys.kmsg.join("\n");
        assert!(
            kmsg.contains(
                "target /dev/sdz did not appear within 3 s; block devices seen: none (cannot list /sys/class/block"
            ),
            "{kmsg}"
        );
    }

    #[test]
    fn label_and_late_path_targets() {
        let (_, init) = run_fake(capture_kernel(&plan_text("LABEL=crashdump", "")));
        assert_eq!(init.sys.calls_matching(&["mount -t ext4"]), vec!["mount -t ext4 /dev/vdb /kdumproot"]);

        // A device path that shows up 1.5 s after the modules are loaded.
        let mut sys = capture_kernel(&plan_text("/dev/vdc", ""));
        sys.appear_at.push((Duration::from_millis(1500), "/dev/vdc".into(), Node::Block(vec![0; 4096])));
        let (action, init) = run_fake(sys);
        assert_eq!(action, Action::Reboot);
        assert_eq!(init.sys.sleeps, 15);
        assert_eq!(init.sys.calls_matching(&["mount -t ext4"]), vec!["mount -t ext4 /dev/vdc /kdumproot"]);
    }

    #[test]
    fn enospc_during_copy_leaves_incomplete_and_runs_failure_action() {
        let mut sys =
            capture_kernel(&plan_text(&format!("UUID={UUID_STR}"), "final_action halt\nfailure_action poweroff\n"));
        sys.quota = Some(("/kdumproot/".into(), 6000));
        let mut init = Init::new(sys);
        let mut steps: Vec<Box<dyn SaveStep<FakeSys>>> =
            vec![Box::new(SaveDmesg::new(fake_log)), Box::new(CopyVmcore { window: 4096, ..Default::default() })];
        let action = run(&mut init, &mut steps);
        assert_eq!(action, Action::Poweroff);
        // The kernel log was saved first and survives the failed vmcore (issue 5).
        assert_eq!(init.sys.file(&format!("{DIR}/vmcore-dmesg.txt")).unwrap(), LOG);
        // The quota covers the whole target: the kernel log took its share first.
        let room = 6000 - LOG.len();
        assert!(init.sys.file(&format!("{DIR}/vmcore-incomplete")).unwrap() == &vmcore()[..room]);
        assert!(init.sys.file(&format!("{DIR}/vmcore")).is_none());
        let kmsg = init.sys.kmsg.join("\n");
        assert!(
            kmsg.contains(&format!(
                "saving vmcore failed: cannot write {DIR}/vmcore-incomplete at offset {room}: No space left on device (os error 28)"
            )),
            "{kmsg}"
        );
        assert!(!kmsg.contains("capture complete"));
        let tail = &init.sys.calls[init.sys.calls.len() - 3..];
        assert_eq!(tail, ["umount /kdumproot", "sync", "reboot poweroff"]);
    }

    const HOOKS: &str =
        "final_action halt\nfailure_action poweroff\npre /sbin/pre\npost /etc/kdump/post.d/10-a\npost /sbin/post\n";

    fn with_hooks(sys: &mut FakeSys) {
        for p in ["/sbin/pre", "/etc/kdump/post.d/10-a", "/sbin/post"] {
            sys.add_file(p, "#!/bin/sh\n");
        }
    }

    /// kdump_pre runs once the target is mounted and the dump directory made, before the
    /// dump; the post hooks run after it, in order, with status 0, before the unmount. Every
    /// hook gets PATH, the target and the dump directory.
    #[test]
    fn hooks_run_around_the_dump() {
        let mut sys = capture_kernel(&plan_text(&format!("UUID={UUID_STR}"), HOOKS));
        with_hooks(&mut sys);
        let (action, init) = run_fake(sys);
        assert_eq!(action, Action::Halt);
        let calls = init.sys.calls_matching(&["run", "rename", "umount /kdumproot", "reboot"]);
        assert_eq!(
            calls,
            [
                "run /sbin/pre".to_string(),
                format!("rename {DIR}/vmcore-dmesg.txt-incomplete {DIR}/vmcore-dmesg.txt"),
                format!("rename {DIR}/vmcore-incomplete {DIR}/vmcore"),
                "run /etc/kdump/post.d/10-a 0".into(),
                "run /sbin/post 0".into(),
                "umount /kdumproot".into(),
                "reboot halt".into(),
            ]
        );
        let env = &init.sys.program_envs[0];
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("PATH"), Some(HOOK_PATH));
        assert_eq!(get("RKDUMP_TARGET"), Some(TARGET_MNT));
        assert_eq!(get("RKDUMP_DUMP_DIR"), Some(DIR));
        let kmsg = init.sys.kmsg.join("\n");
        assert!(kmsg.contains("running kdump_post /sbin/post 0"), "{kmsg}");
    }

    /// A kdump_pre that fails, or cannot run, skips the dump; kdump-utils then runs the final
    /// action (not the failure action) and no kdump_post.
    #[test]
    fn a_failing_kdump_pre_skips_the_dump() {
        for (status, how) in
            [(Some(3), "exited with status 3"), (None, "could not be run: No such file or directory (os error 2)")]
        {
            let mut sys = capture_kernel(&plan_text(&format!("UUID={UUID_STR}"), HOOKS));
            with_hooks(&mut sys);
            match status {
                Some(s) => {
                    sys.exit_status.insert("/sbin/pre".into(), s);
                }
                None => {
                    sys.nodes.remove("/sbin/pre");
                }
            }
            let (action, init) = run_fake(sys);
            assert_eq!(action, Action::Halt, "{how}");
            assert!(init.sys.file(&format!("{DIR}/vmcore")).is_none());
            assert!(init.sys.file(&format!("{DIR}/vmcore-incomplete")).is_none());
            assert_eq!(init.sys.calls_matching(&["run"]), ["run /sbin/pre"]);
            let kmsg = init.sys.kmsg.join("\n");
            assert!(kmsg.contains(&format!("kdump_pre /sbin/pre {how}: no dump written; final action halt")), "{kmsg}");
            assert!(!kmsg.contains("capture complete") && !kmsg.contains("capture failed"), "{kmsg}");
            let tail = &init.sys.calls[init.sys.calls.len() - 3..];
            assert_eq!(tail, ["umount /kdumproot", "sync", "reboot halt"]);
        }
    }

    /// A hook that never finishes is killed at `hook_timeout` and counts as failed: a hung
    /// kdump_pre skips the dump like a failing one, a hung post hook is logged and the next
    /// runs. Without the limit the capture would never reach its final action.
    #[test]
    fn a_hung_hook_is_killed_at_hook_timeout() {
        let hooks = format!("{HOOKS}hook_timeout 20\n");
        let mut sys = capture_kernel(&plan_text(&format!("UUID={UUID_STR}"), &hooks));
        with_hooks(&mut sys);
        sys.hangs.insert("/sbin/pre".into());
        let (action, init) = run_fake(sys);
        assert_eq!(action, Action::Halt);
        assert_eq!(init.sys.program_limits, [Some(Duration::from_secs(20))]);
        assert!(init.sys.file(&format!("{DIR}/vmcore")).is_none());
        let kmsg = init.sys.kmsg.join("\n");
        assert!(
            kmsg.contains("kdump_pre /sbin/pre did not finish within 20 s and was killed (hook_timeout in kdump.conf): no dump written; final action halt"),
            "{kmsg}"
        );

        let mut sys = capture_kernel(&plan_text(&format!("UUID={UUID_STR}"), &hooks));
        with_hooks(&mut sys);
        sys.hangs.insert("/etc/kdump/post.d/10-a".into());
        let (action, init) = run_fake(sys);
        assert_eq!(action, Action::Halt);
        assert!(init.sys.file(&format!("{DIR}/vmcore")).is_some());
        assert_eq!(
            init.sys.calls_matching(&["run"]),
            ["run /sbin/pre", "run /etc/kdump/post.d/10-a 0", "run /sbin/post 0"]
        );
        let kmsg = init.sys.kmsg.join("\n");
        assert!(kmsg.contains("kdump_post /etc/kdump/post.d/10-a did not finish within 20 s and was killed"), "{kmsg}");

        // `hook_timeout 0`: no limit; the default is 300 s.
        let mut sys = capture_kernel(&plan_text(&format!("UUID={UUID_STR}"), &format!("{HOOKS}hook_timeout 0\n")));
        with_hooks(&mut sys);
        let (_, init) = run_fake(sys);
        assert_eq!(init.sys.program_limits, [None, None, None]);
        let mut sys = capture_kernel(&plan_text(&format!("UUID={UUID_STR}"), HOOKS));
        with_hooks(&mut sys);
        let (_, init) = run_fake(sys);
        assert_eq!(init.sys.program_limits, [Some(Duration::from_secs(300)); 3]);
    }

    /// After a failed dump the post hooks still run, with status 1; a failing post hook is
    /// logged and changes nothing.
    #[test]
    fn post_hooks_learn_of_a_failed_dump() {
        let plan = plan_text(&format!("UUID={UUID_STR}"), HOOKS).replace("collector copy", "collector kdump 31 lzo");
        let mut sys = capture_kernel(&plan);
        with_hooks(&mut sys);
        sys.exit_status.insert("/etc/kdump/post.d/10-a".into(), 1);
        let mut init = Init::new(sys);
        let mut steps: Vec<Box<dyn SaveStep<FakeSys>>> =
            vec![Box::new(SaveDmesg::new(fake_log)), Box::new(SaveVmcore::new(full_disk_writer))];
        let action = run(&mut init, &mut steps);
        assert_eq!(action, Action::Poweroff);
        assert_eq!(
            init.sys.calls_matching(&["run"]),
            ["run /sbin/pre", "run /etc/kdump/post.d/10-a 1", "run /sbin/post 1"]
        );
        let kmsg = init.sys.kmsg.join("\n");
        assert!(kmsg.contains("kdump_post /etc/kdump/post.d/10-a exited with status 1"), "{kmsg}");
        let tail = &init.sys.calls[init.sys.calls.len() - 3..];
        assert_eq!(tail, ["umount /kdumproot", "sync", "reboot poweroff"]);
    }

    /// Without a target (the device never appeared) the post hooks run too, without
    /// RKDUMP_TARGET or RKDUMP_DUMP_DIR.
    #[test]
    fn post_hooks_run_without_a_target() {
        let mut sys = capture_kernel(&plan_text("LABEL=nowhere", HOOKS));
        with_hooks(&mut sys);
        let (action, init) = run_fake(sys);
        assert_eq!(action, Action::Poweroff);
        assert_eq!(init.sys.calls_matching(&["run"]), ["run /etc/kdump/post.d/10-a 1", "run /sbin/post 1"]);
        assert!(init.sys.program_envs.iter().all(|e| e.iter().all(|(k, _)| !k.starts_with("RKDUMP_"))));
    }

    /// A raw target: the device is waited for but not mounted, the dump goes onto it as a
    /// flattened stream and is fsynced; nothing else is written, hooks see the device.
    #[test]
    fn raw_target_gets_a_flattened_stream() {
        let plan = plan_text("/dev/vdb", "pre /sbin/pre\n")
            .replace("target ext4", "target raw")
            .replace("collector copy", "collector flat 31 lzo");
        let mut sys = capture_kernel(&plan);
        sys.add_file("/sbin/pre", "#!/bin/sh\n");
        WRITER_CALLS.with(|w| w.borrow_mut().clear());
        let (action, init) = run_fake(sys);
        assert_eq!(action, Action::Reboot);
        assert_eq!(WRITER_CALLS.with(|w| w.borrow().clone()), ["/proc/vmcore -> /dev/vdb (flat 31 lzo)"]);
        assert!(init.sys.calls.iter().all(|c| !c.contains("/kdumproot")), "{:?}", init.sys.calls);
        assert!(init.sys.calls.contains(&"fsync /dev/vdb".to_string()), "{:?}", init.sys.calls);
        let env = &init.sys.program_envs[0];
        assert!(env.contains(&("RKDUMP_RAW_DEVICE".into(), "/dev/vdb".into())), "{env:?}");
        let kmsg = init.sys.kmsg.join("\n");
        assert!(kmsg.contains("`rkdump save-raw /dev/vdb` copies it into a file"), "{kmsg}");
        assert!(kmsg.contains("capture complete"), "{kmsg}");

        // A plan whose collector is not a flattened stream cannot write to a raw device.
        let plan = plan_text("/dev/vdb", "failure_action halt\n")
            .replace("target ext4", "target raw")
            .replace("collector copy", "collector kdump 31 lzo");
        let (action, init) = run_fake(capture_kernel(&plan));
        assert_eq!(action, Action::Halt);
        let kmsg = init.sys.kmsg.join("\n");
        assert!(kmsg.contains("is not a flattened stream"), "{kmsg}");
    }

    /// A GPT disk head whose entry 1 has the unique GUID `guid` (on-disk byte order).
    fn gpt_disk(guid: [u8; 16]) -> Vec<u8> {
        let mut d = vec![0u8; 4096];
        d[512..520].copy_from_slice(b"EFI PART");
        d[512 + 72..512 + 80].copy_from_slice(&2u64.to_le_bytes());
        d[512 + 80..512 + 84].copy_from_slice(&128u32.to_le_bytes());
        d[512 + 84..512 + 88].copy_from_slice(&128u32.to_le_bytes());
        d[1024..1040].copy_from_slice(&[0xAF; 16]);
        d[1040..1056].copy_from_slice(&guid);
        d
    }

    /// `PARTUUID=`: the partition is found through its disk's GPT, without devtmpfs nodes
    /// of either made by hand; a PARTUUID nobody has times out listing what was seen.
    #[test]
    fn partuuid_target_is_found_in_the_partition_table() {
        let guid = [0x78, 0x56, 0x34, 0x12, 0xbc, 0x9a, 0xf0, 0xde, 1, 2, 3, 4, 5, 6, 7, 8];
        let partuuid = "12345678-9abc-def0-0102-030405060708";
        // vdc holds a GPT whose first partition, vdc1, holds ext4.
        let partitioned = |plan: &str| {
            let mut sys = capture_kernel(plan);
            add_block(&mut sys, "vdc", "254:32", gpt_disk(guid));
            add_block(&mut sys, "vdc1", "254:33", ext4_image(&UUID, "part"));
            sys.add_file("/sys/class/block/vdc1/partition", "1\n");
            sys.add("/sys/class/block/vdc/vdc1", Node::Dir);
            sys
        };
        let (action, init) = run_fake(partitioned(&plan_text(&format!("PARTUUID={partuuid}"), "")));
        assert_eq!(action, Action::Reboot);
        assert!(init.sys.calls.contains(&"mount -t ext4 /dev/vdc1 /kdumproot".to_string()), "{:?}", init.sys.calls);
        let kmsg = init.sys.kmsg.join("\n");
        assert!(kmsg.contains(&format!("found target PARTUUID={partuuid} at /dev/vdc1")), "{kmsg}");

        let (action, init) = run_fake(partitioned(&plan_text("PARTUUID=00000000-01", "failure_action halt\n")));
        assert_eq!(action, Action::Halt);
        let kmsg = init.sys.kmsg.join("\n");
        assert!(kmsg.contains(&format!("vdc1 (partition 1 of vdc, PARTUUID={partuuid})")), "{kmsg}");
    }

    /// `failure_action dump_to_rootfs`: the target never appears, so the dump goes to the root
    /// filesystem's directory instead, and the failure action (the final one, as the builder
    /// writes it) follows; a root filesystem that fails too leaves status 1 for the hooks.
    #[test]
    fn dump_to_rootfs_after_the_target_failed() {
        let plan = plan_text(
            "LABEL=nowhere",
            &format!(
                "failure_action halt\non_failure dump_to_rootfs ext4 UUID={UUID_STR} /var/crash\npost /sbin/post\n"
            ),
        );
        let mut sys = capture_kernel(&plan);
        sys.add_file("/sbin/post", "#!/bin/sh\n");
        let (action, init) = run_fake(sys);
        assert_eq!(action, Action::Halt);
        assert_eq!(init.sys.file(&format!("{DIR}/vmcore")).unwrap(), vmcore());
        let kmsg = init.sys.kmsg.join("\n");
        assert!(kmsg.contains("target LABEL=nowhere did not appear"), "{kmsg}");
        assert!(
            kmsg.contains(&format!("dump_to_rootfs: saving the dump to ext4 UUID={UUID_STR}, /var/crash")),
            "{kmsg}"
        );
        assert!(kmsg.contains("dump_to_rootfs: dump saved; halt"), "{kmsg}");
        assert!(!kmsg.contains("capture failed; failure action"), "{kmsg}");
        assert_eq!(init.sys.calls_matching(&["run"]), ["run /sbin/post 0"]);

        let plan =
            plan_text("LABEL=nowhere", "failure_action halt\non_failure dump_to_rootfs ext4 LABEL=gone /var/crash\n");
        let (action, init) = run_fake(capture_kernel(&plan));
        assert_eq!(action, Action::Halt);
        let kmsg = init.sys.kmsg.join("\n");
        assert!(kmsg.contains("dump_to_rootfs failed too: target LABEL=gone did not appear"), "{kmsg}");
        assert!(kmsg.contains("capture failed; failure action halt"), "{kmsg}");
    }

    /// `failure_action shell`: /bin/sh runs on the console, then the failure action.
    #[test]
    fn shell_after_a_failed_capture() {
        let plan = plan_text("LABEL=nowhere", "failure_action poweroff\non_failure shell\n");
        let mut sys = capture_kernel(&plan);
        sys.add_file("/bin/sh", "#!dummy\n");
        let (action, init) = run_fake(sys);
        assert_eq!(action, Action::Poweroff);
        assert_eq!(init.sys.calls_matching(&["run"]), ["run /bin/sh"]);
        let kmsg = init.sys.kmsg.join("\n");
        assert!(kmsg.contains("failure_action shell: /bin/sh on the console, then poweroff"), "{kmsg}");
        // Without a shell in the image the failure is said, and the action still follows.
        let (action, init) = run_fake(capture_kernel(&plan));
        assert_eq!(action, Action::Poweroff);
        assert!(init.sys.kmsg.join("\n").contains("failure_action shell: /bin/sh could not be run"));
    }

    #[test]
    fn kernel_log_is_saved_before_the_vmcore() {
        let (action, init) = run_fake(capture_kernel(&plan_text(&format!("UUID={UUID_STR}"), "")));
        assert_eq!(action, Action::Reboot);
        assert_eq!(init.sys.file(&format!("{DIR}/vmcore-dmesg.txt")).unwrap(), LOG);
        assert_eq!(init.sys.modes[&format!("{DIR}/vmcore-dmesg.txt")], 0o600);
        let pos = |needle: &str| init.sys.calls.iter().position(|c| c.contains(needle)).unwrap();
        assert!(
            pos("rename {DIR}/vmcore-dmesg.txt-incomplete".replace("{DIR}", DIR).as_str()) < pos("vmcore-incomplete")
        );
    }

    #[test]
    fn the_plan_collector_filters_the_vmcore() {
        let plan = plan_text(&format!("UUID={UUID_STR}"), "").replace("collector copy", "collector kdump 31 zstd");
        let (action, init) = run_fake(capture_kernel(&plan));
        assert_eq!(action, Action::Reboot);
        let calls = WRITER_CALLS.with(|w| w.borrow().clone());
        assert_eq!(calls, [format!("/proc/vmcore -> {DIR}/vmcore-incomplete (kdump 31 zstd)")]);
        // Created 0600 before any byte is written, fsynced, then renamed.
        assert_eq!(init.sys.modes[&format!("{DIR}/vmcore")], 0o600);
        let seq: Vec<&String> = init.sys.calls.iter().filter(|c| c.contains("vmcore-incomplete")).collect();
        assert_eq!(
            seq,
            [
                &format!("open {DIR}/vmcore-incomplete create 600"),
                &format!("open {DIR}/vmcore-incomplete write"),
                &format!("fsync {DIR}/vmcore-incomplete"),
                &format!("rename {DIR}/vmcore-incomplete {DIR}/vmcore"),
            ]
        );
        let kmsg = init.sys.kmsg.join("\n");
        assert!(kmsg.contains("collector kdump 31 zstd"), "{kmsg}");
        assert!(kmsg.contains("vmcore: 30%") && kmsg.contains("vmcore: 100%"), "{kmsg}");
        assert!(kmsg.contains("12 of 100 pages kept"), "{kmsg}");
    }

    #[test]
    fn a_failed_filtered_dump_stays_incomplete() {
        let plan = plan_text(&format!("UUID={UUID_STR}"), "failure_action halt\n")
            .replace("collector copy", "collector kdump 31 lzo");
        let mut init = Init::new(capture_kernel(&plan));
        let mut steps: Vec<Box<dyn SaveStep<FakeSys>>> =
            vec![Box::new(SaveDmesg::new(fake_log)), Box::new(SaveVmcore::new(full_disk_writer))];
        let action = run(&mut init, &mut steps);
        assert_eq!(action, Action::Halt);
        assert!(init.sys.file(&format!("{DIR}/vmcore-incomplete")).is_some());
        assert!(init.sys.file(&format!("{DIR}/vmcore")).is_none());
        assert_eq!(init.sys.file(&format!("{DIR}/vmcore-dmesg.txt")).unwrap(), LOG);
        let kmsg = init.sys.kmsg.join("\n");
        assert!(kmsg.contains("No space left on device"), "{kmsg}");
        assert!(!kmsg.contains("capture complete"), "{kmsg}");
    }

    #[test]
    fn a_failed_kernel_log_does_not_stop_the_vmcore() {
        let mut init = Init::new(capture_kernel(&plan_text(&format!("UUID={UUID_STR}"), "")));
        let mut steps = steps(broken_log);
        let action = run(&mut init, &mut steps);
        assert_eq!(action, Action::Reboot);
        assert!(init.sys.file(&format!("{DIR}/vmcore-dmesg.txt")).is_none());
        assert_eq!(init.sys.file(&format!("{DIR}/vmcore")).unwrap(), &vmcore()[..]);
        let kmsg = init.sys.kmsg.join("\n");
        assert!(kmsg.contains("the dump has no VMCOREINFO note"), "{kmsg}");
        assert!(kmsg.contains("capture complete"), "{kmsg}");
    }

    #[test]
    fn devtmpfs_failure_still_logs_and_creates_nodes() {
        let mut sys = capture_kernel(&plan_text(&format!("UUID={UUID_STR}"), ""));
        sys.fail("mount -t devtmpfs", Errno::PERM);
        // Without devtmpfs there are no nodes: only sysfs knows the devices.
        sys.nodes.retain(|k, _| !k.starts_with("/dev/"));
        sys.appear_on.retain(|(_, p, _)| !p.starts_with("/dev/"));
        sys.block_devices.insert((254, 16), ext4_image(&UUID, "crashdump"));
        let (action, init) = run_fake(sys);
        assert_eq!(action, Action::Reboot);
        let failed =
            "rkdump: mount -t devtmpfs -o nosuid,mode=0755 devtmpfs /dev failed: Operation not permitted (os error 1)";
        assert!(init.sys.console.contains(failed), "{}", init.sys.console);
        // kmsg was created by hand and the early error replayed into it.
        assert!(init.sys.calls.contains(&"mknod /dev/kmsg c 1 11".to_string()));
        assert!(init.sys.kmsg.iter().any(|l| l.ends_with(failed)), "{:?}", init.sys.kmsg);
        assert!(init.sys.calls.contains(&"mknod /dev/vdb b 254 16".to_string()));
        assert_eq!(init.sys.calls_matching(&["mount -t ext4"]), vec!["mount -t ext4 /dev/vdb /kdumproot"]);
    }

    #[test]
    fn no_kmsg_falls_back_to_console() {
        let mut sys = capture_kernel(&plan_text(&format!("UUID={UUID_STR}"), ""));
        sys.fail("open /dev/kmsg", Errno::ACCESS);
        let (_, init) = run_fake(sys);
        assert!(init.sys.kmsg.is_empty());
        assert!(init
            .sys
            .console
            .contains("rkdump: cannot open /dev/kmsg (Permission denied (os error 13)); logging to the console only"));
        assert!(init.sys.console.contains("rkdump: capture complete"));
    }

    #[test]
    fn dump_path_with_dotdot_is_refused() {
        let plan = plan_text(&format!("UUID={UUID_STR}"), "").replace("path /var/crash", "path /var/../../etc");
        let (_, init) = run_fake(capture_kernel(&plan));
        assert!(init.sys.kmsg.iter().any(|l| l.contains("bad dump path \"/var/../../etc\"")));
        assert_eq!(init.sys.calls.last().unwrap(), "reboot reboot");
        assert!(init.sys.calls.contains(&"umount /kdumproot".to_string()));
    }

    #[test]
    fn describe_lists_the_sequence() {
        let plan = Plan::parse(&plan_text(&format!("UUID={UUID_STR}"), "")).unwrap();
        let lines = describe(&plan);
        assert_eq!(lines[0], "mount -t proc -o nodev,noexec,nosuid proc /proc");
        assert!(lines.contains(&"finit_module /lib/modules/virtio_blk.ko.xz".to_string()));
        assert!(lines.last().unwrap().starts_with("umount /kdumproot; sync; reboot"));
    }
}
