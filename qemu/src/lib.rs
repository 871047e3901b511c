//! rkdump-qemu: the QEMU crash test.
//!
//! Pipeline of [`crash_test`]: pick a kernel -> write a `kdump.conf` and build the capture image
//! with the real `rkdump build` (or take a given image) -> build a first-stage initramfs
//! (busybox, a static `rkdump`, the kernel and the capture image) -> make an ext4 target disk
//! (or take a given one) -> boot QEMU (TCG) with
//! `crashkernel=` -> the guest starts a workload, arms with `rkdump arm` and crashes itself with
//! sysrq-c -> the capture kernel runs our init, which writes the dump and reboots (QEMU exits,
//! `-no-reboot`) -> the dump is read back from the disk image with `debugfs` (no mount, no root
//! needed for that part) -> summary.
//!
//! **Architecture Invariant:** this crate drives the real binaries (`rkdump`, `rkdump-init`,
//! `qemu-system-x86_64`, `mkfs.ext4`, `debugfs`); it never calls capture or filter internals, so
//! the crash test exercises exactly what a user runs.

pub mod qemu_cmd;

use std::fmt;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub use qemu_cmd::QemuCommand;

/// Errors of the crash test, each naming what failed and where to look.
#[derive(Debug, thiserror::Error)]
pub enum CrashTestError {
    #[error("no kernel found: {0}")]
    NoKernel(String),
    #[error("missing tool {tool}: {hint}")]
    MissingTool { tool: String, hint: String },
    #[error("{what} failed: {detail}")]
    Step { what: String, detail: String },
    #[error("i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the guest did not finish within {secs} s (console log: {console})")]
    Timeout { secs: u64, console: PathBuf },
    #[error("no dump was written: {reason} (console log: {console})")]
    NoDump { reason: String, console: PathBuf },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CrashTestError + '_ {
    move |source| CrashTestError::Io { path: path.to_path_buf(), source }
}

/// A kernel to test: the image and its modules directory.
#[derive(Debug, Clone)]
pub struct Kernel {
    pub release: String,
    pub image: PathBuf,
    pub modules: PathBuf,
}

/// Finds `/boot/vmlinuz-R` with modules in `/lib/modules/R` or `/usr/lib/modules/R`. Without a
/// release, the newest such kernel (version order) is taken: the running kernel of a build host
/// is often not a kernel that can be booted in QEMU (containers, microVMs).
pub fn find_kernel(release: Option<&str>) -> Result<Kernel, CrashTestError> {
    let modules_of = |r: &str| {
        ["/lib/modules", "/usr/lib/modules"]
            .iter()
            .map(|d| Path::new(d).join(r))
            .find(|p| p.join("modules.dep").exists() || p.join("kernel").is_dir())
    };
    if let Some(r) = release {
        let image = PathBuf::from(format!("/boot/vmlinuz-{r}"));
        if !image.exists() {
            return Err(CrashTestError::NoKernel(format!("{} does not exist", image.display())));
        }
        let modules = modules_of(r).ok_or_else(|| {
            CrashTestError::NoKernel(format!("no modules for {r} in /lib/modules or /usr/lib/modules"))
        })?;
        return Ok(Kernel { release: r.to_string(), image, modules });
    }
    let mut found: Vec<Kernel> = fs::read_dir("/boot")
        .map_err(io_err(Path::new("/boot")))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let r = name.strip_prefix("vmlinuz-")?.to_string();
            let modules = modules_of(&r)?;
            Some(Kernel { release: r, image: e.path(), modules })
        })
        .collect();
    found.sort_by(|a, b| version_cmp(&a.release, &b.release));
    found.pop().ok_or_else(|| {
        CrashTestError::NoKernel(
            "no /boot/vmlinuz-* with modules; install one (`apt-get install linux-image-amd64`, or `make deps`)".into(),
        )
    })
}

/// Compares kernel release strings by their numeric runs (6.1.0-10 < 6.1.0-9 is wrong).
pub fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn key(s: &str) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        let mut num = String::new();
        let mut text = String::new();
        for c in s.chars() {
            if c.is_ascii_digit() {
                if !text.is_empty() {
                    out.push((0, std::mem::take(&mut text)));
                }
                num.push(c);
            } else {
                if !num.is_empty() {
                    out.push((num.parse().unwrap_or(u64::MAX), String::new()));
                    num.clear();
                }
                text.push(c);
            }
        }
        if !num.is_empty() {
            out.push((num.parse().unwrap_or(u64::MAX), String::new()));
        }
        if !text.is_empty() {
            out.push((0, text));
        }
        out
    }
    key(a).cmp(&key(b))
}

/// What to run.
#[derive(Debug, Clone)]
pub struct CrashTestOptions {
    pub kernel: Kernel,
    /// Output directory (created; must be empty or absent).
    pub out: PathBuf,
    /// A statically linked `rkdump`, copied into the guest; `rkdump-init` must sit beside it.
    pub rkdump: PathBuf,
    /// Statically linked busybox for the first-stage shell.
    pub busybox: PathBuf,
    pub memory_mib: u32,
    pub crashkernel: String,
    pub cpu: String,
    pub smp: u32,
    /// Wall-clock limit for the whole guest run.
    pub timeout: Duration,
    /// Attach the target disk (false: test that a missing target ends in a timeout + reboot).
    pub attach_target: bool,
    /// `device_timeout` written to kdump.conf.
    pub device_timeout_secs: u32,
    /// Workload sizes.
    pub anon_mib: u32,
    pub cache_mib: u32,
    /// Extra lines for kdump.conf (e.g. `core_collector ...`).
    pub extra_config: Vec<String>,
    /// Extra arguments for `rkdump build` (e.g. `--compression xz`).
    pub build_args: Vec<String>,
    /// Use this modules tree for the capture image instead of the kernel's (`--root`).
    pub build_root: Option<PathBuf>,
    /// A capture image built beforehand, used instead of building one (then `extra_config`,
    /// `build_args` and `build_root` do not apply, and the image's own plan decides the
    /// target, which `target_disk` must hold).
    pub initrd: Option<PathBuf>,
    /// A disk image to attach as the target instead of a new, empty ext4 one; it is kept, with
    /// the dump on it. Must be an ext2/3/4 image (the dump is read back with `debugfs`).
    pub target_disk: Option<PathBuf>,
    /// Directory on the target's filesystem the dump is collected from (the plan's `path`).
    pub dump_path: String,
    /// Read the dump back from the target disk (false: a raw target, read with `rkdump
    /// save-raw` from `target_disk`).
    pub collect: bool,
    /// A bzImage to capture with instead of `kernel` itself.
    pub capture_kernel: Option<PathBuf>,
    /// Throttle the target disk's writes to this many bytes per second (a slow or stuck
    /// device, for the stall watchdog).
    pub target_write_bps: Option<u64>,
    /// With `target_write_bps`: bytes the disk first takes at full speed (0: none).
    pub target_write_burst: u64,
}

impl CrashTestOptions {
    pub fn new(kernel: Kernel, out: PathBuf, rkdump: PathBuf) -> Self {
        CrashTestOptions {
            kernel,
            out,
            rkdump,
            busybox: PathBuf::from("/bin/busybox"),
            memory_mib: 2048,
            crashkernel: "256M".into(),
            cpu: "max".into(),
            smp: 2,
            timeout: Duration::from_secs(900),
            attach_target: true,
            device_timeout_secs: 30,
            anon_mib: 256,
            cache_mib: 128,
            extra_config: Vec::new(),
            build_args: Vec::new(),
            build_root: None,
            initrd: None,
            target_disk: None,
            capture_kernel: None,
            target_write_bps: None,
            target_write_burst: 0,
            dump_path: "/var/crash".into(),
            collect: true,
        }
    }
}

/// One timed phase of the run.
#[derive(Debug, Clone)]
pub struct Phase {
    pub name: &'static str,
    pub secs: f64,
}

/// The result of a crash test.
#[derive(Debug, Clone)]
pub struct Summary {
    pub release: String,
    pub panic_line: Option<String>,
    /// The dump directory copied out of the target (`OUT/127.0.0.1-<date>`), if any.
    pub dump_dir: Option<PathBuf>,
    /// Files of the dump directory with their sizes.
    pub files: Vec<(String, u64)>,
    pub console: PathBuf,
    pub phases: Vec<Phase>,
    /// Whether QEMU exited by itself (the capture kernel rebooted) before the timeout.
    pub guest_exited: bool,
}

impl Summary {
    /// Size of the `vmcore` file, if one was written completely.
    pub fn vmcore_size(&self) -> Option<u64> {
        self.files.iter().find(|(n, _)| n == "vmcore").map(|(_, s)| *s)
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "kernel:      {}", self.release)?;
        writeln!(f, "panic:       {}", self.panic_line.as_deref().unwrap_or("(no panic line in the console log)"))?;
        match &self.dump_dir {
            Some(d) => writeln!(f, "dump:        {}", d.display())?,
            None => writeln!(f, "dump:        (none)")?,
        }
        for (name, size) in &self.files {
            writeln!(f, "  {name:<22} {size:>14} bytes ({:.1} MiB)", *size as f64 / 1048576.0)?;
        }
        writeln!(f, "console log: {}", self.console.display())?;
        write!(f, "timings:    ")?;
        for p in &self.phases {
            write!(f, " {} {:.1}s;", p.name, p.secs)?;
        }
        writeln!(f)
    }
}

/// Checks that a tool exists on PATH (or as an absolute path).
fn require_tool(tool: &str, hint: &str) -> Result<(), CrashTestError> {
    let found = if tool.starts_with('/') {
        Path::new(tool).exists()
    } else {
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(tool).exists())).unwrap_or(false)
    };
    if found {
        Ok(())
    } else {
        Err(CrashTestError::MissingTool { tool: tool.into(), hint: hint.into() })
    }
}

/// Runs a command to completion, turning failure into a `Step` error with its stderr.
fn run_cmd(what: &str, cmd: &mut Command) -> Result<String, CrashTestError> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| CrashTestError::Step { what: what.into(), detail: format!("cannot start: {e}") })?;
    if !out.status.success() {
        return Err(CrashTestError::Step {
            what: what.into(),
            detail: format!(
                "{}: {}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether an ELF file has a PT_INTERP program header (i.e. is dynamically linked).
pub fn has_interp(path: &Path) -> Result<bool, CrashTestError> {
    let mut f = fs::File::open(path).map_err(io_err(path))?;
    let mut eh = [0u8; 64];
    f.read_exact(&mut eh).map_err(io_err(path))?;
    if &eh[..4] != b"\x7fELF" || eh[4] != 2 {
        return Err(CrashTestError::Step {
            what: "check binary".into(),
            detail: format!("{} is not a 64-bit ELF file", path.display()),
        });
    }
    let phoff = u64::from_le_bytes(eh[32..40].try_into().unwrap_or_default());
    let phentsize = u16::from_le_bytes([eh[54], eh[55]]) as u64;
    let phnum = u16::from_le_bytes([eh[56], eh[57]]) as u64;
    for i in 0..phnum {
        let mut ph = [0u8; 4];
        f.seek(SeekFrom::Start(phoff + i * phentsize)).map_err(io_err(path))?;
        f.read_exact(&mut ph).map_err(io_err(path))?;
        if u32::from_le_bytes(ph) == 3 {
            return Ok(true);
        }
    }
    Ok(false)
}

fn static_binary(path: &Path, what: &str) -> Result<(), CrashTestError> {
    if !path.exists() {
        return Err(CrashTestError::MissingTool {
            tool: path.display().to_string(),
            hint: format!("{what} not found; build it with `make build` (target x86_64-unknown-linux-musl)"),
        });
    }
    if has_interp(path)? {
        return Err(CrashTestError::Step {
            what: format!("check {what}"),
            detail: format!(
                "{} is dynamically linked; the guest has no libc: use the static build (`make build`, target/x86_64-unknown-linux-musl/release)",
                path.display()
            ),
        });
    }
    Ok(())
}

/// Random-enough UUID without a dependency: from /proc/sys/kernel/random/uuid.
fn new_uuid() -> Result<String, CrashTestError> {
    let p = Path::new("/proc/sys/kernel/random/uuid");
    Ok(fs::read_to_string(p).map_err(io_err(p))?.trim().to_string())
}

/// The UUID of an ext2/3/4 file system image, read from its superblock by the capture init's
/// own probe.
fn ext_uuid(disk: &Path) -> Result<String, CrashTestError> {
    let mut head = Vec::with_capacity(rkdump_init::probe::HEAD_LEN);
    fs::File::open(disk)
        .and_then(|f| f.take(rkdump_init::probe::HEAD_LEN as u64).read_to_end(&mut head))
        .map_err(io_err(disk))?;
    let what = "read the target disk's UUID";
    if head.len() < 2048 {
        return Err(CrashTestError::Step {
            what: what.into(),
            detail: format!("{} is too short for an ext2/3/4 image", disk.display()),
        });
    }
    match rkdump_init::probe::probe_ext(&head) {
        Some(fs) => Ok(fs.uuid),
        None => Err(CrashTestError::Step {
            what: what.into(),
            detail: format!(
                "{} is not an ext2/3/4 image; for another target give --initrd built for it",
                disk.display()
            ),
        }),
    }
}

/// The first-stage `/init` script: workload, arm, status, crash.
fn stage1_init(opts: &CrashTestOptions) -> String {
    format!(
        r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /tmp /run && mount -t tmpfs tmpfs /tmp && mount -t tmpfs tmpfs /run
# Progress markers go to the console and the kernel log: a kernel message printed while a
# marker is written can split the console's copy of it, never the kernel log's.
say() {{ echo "rkdump-stage1: $*"; echo "rkdump-stage1: $*" > /dev/kmsg; }}
say "booted $(uname -r)"
/rkdump crash-test-workload --anon-mib {anon} --cache-mib {cache} --cache-file /tmp/cache.dat --ready /run/workload-ready &
i=0
while [ ! -e /run/workload-ready ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
say arming
arm() {{
    if ! /rkdump arm --kernel {capture} --initrd /capture.img --append "panic=1"; then
        echo "rkdump-stage1: arm failed"; poweroff -f
    fi
}}
# Arm, disarm and arm again, so status is seen in both states.
arm
/rkdump status
/rkdump disarm
/rkdump status
arm
/rkdump status
# Is everything in place? (The kernel's .config is /config when the host has it.)
if [ -e /config ]; then kc="--kernel-config /config"; else kc=""; fi
/rkdump check --kernel /vmlinuz --initrd /capture.img $kc
say "check exit status $?"
say "triggering sysrq-c"
echo 1 > /proc/sys/kernel/sysrq
echo c > /proc/sysrq-trigger
echo "rkdump-stage1: still alive after sysrq-c"
poweroff -f
"#,
        anon = opts.anon_mib,
        cache = opts.cache_mib,
        capture = if opts.capture_kernel.is_some() { "/capture-vmlinuz" } else { "/vmlinuz" },
    )
}

fn build_stage1(opts: &CrashTestOptions, capture: &Path, dest: &Path) -> Result<(), CrashTestError> {
    use rkdump_mkinitrd::CpioWriter;
    let read = |p: &Path| fs::read(p).map_err(io_err(p));
    let step = |e: rkdump_mkinitrd::cpio::CpioError| CrashTestError::Step {
        what: "first-stage initramfs".into(),
        detail: e.to_string(),
    };
    let file = fs::File::create(dest).map_err(io_err(dest))?;
    let mut w = CpioWriter::new(io::BufWriter::new(file));
    for d in ["/bin", "/dev", "/proc", "/sys", "/tmp", "/run"] {
        w.add_dir(d, 0o755).map_err(step)?;
    }
    w.add_char_device("/dev/console", 0o600, 5, 1).map_err(step)?;
    w.add_file("/bin/busybox", 0o755, &read(&opts.busybox)?).map_err(step)?;
    w.add_file("/init", 0o755, stage1_init(opts).as_bytes()).map_err(step)?;
    w.add_file("/rkdump", 0o755, &read(&opts.rkdump)?).map_err(step)?;
    w.add_file("/vmlinuz", 0o644, &read(&opts.kernel.image)?).map_err(step)?;
    w.add_file("/capture.img", 0o644, &read(capture)?).map_err(step)?;
    if let Some(k) = &opts.capture_kernel {
        w.add_file("/capture-vmlinuz", 0o644, &read(k)?).map_err(step)?;
    }
    // For `rkdump check` in the guest (Debian kernels do not expose /proc/config.gz).
    let config = PathBuf::from(format!("/boot/config-{}", opts.kernel.release));
    if let Ok(c) = fs::read(&config) {
        w.add_file("/config", 0o644, &c).map_err(step)?;
    }
    w.finish().map_err(step)?;
    Ok(())
}

/// Runs the whole crash test. `progress` receives one line per phase.
pub fn crash_test(opts: &CrashTestOptions, progress: &mut dyn FnMut(&str)) -> Result<Summary, CrashTestError> {
    let qemu = "qemu-system-x86_64";
    require_tool(qemu, "install qemu-system-x86 (`make deps`)")?;
    require_tool("mkfs.ext4", "install e2fsprogs")?;
    require_tool("debugfs", "install e2fsprogs")?;
    static_binary(&opts.rkdump, "rkdump")?;
    let init = opts.rkdump.with_file_name("rkdump-init");
    static_binary(&init, "rkdump-init")?;
    static_binary(&opts.busybox, "busybox (package busybox-static)")?;

    for (what, given) in [("capture image", &opts.initrd), ("target disk", &opts.target_disk)] {
        if let Some(p) = given.as_ref().filter(|p| !p.is_file()) {
            return Err(CrashTestError::Step {
                what: format!("use the given {what}"),
                detail: format!("{} is not a file", p.display()),
            });
        }
    }
    let out = &opts.out;
    if out.exists() && fs::read_dir(out).map_err(io_err(out))?.next().is_some() {
        return Err(CrashTestError::Step {
            what: "prepare output".into(),
            detail: format!("{} is not empty; give an empty or new directory", out.display()),
        });
    }
    fs::create_dir_all(out).map_err(io_err(out))?;
    let work = out.join(".work");
    fs::create_dir_all(&work).map_err(io_err(&work))?;
    if let Some(w) = space_warning(opts, free_bytes(out)) {
        progress(&w);
    }
    let mut phases = Vec::new();
    let t0 = Instant::now();

    // 1. kdump.conf and the capture image, with the real `rkdump build` (or the image given).
    // A given target disk keeps its UUID, which the built kdump.conf then names.
    let uuid = match (&opts.target_disk, &opts.initrd) {
        (Some(d), None) => ext_uuid(d)?,
        _ => new_uuid()?,
    };
    let capture = out.join("capture.img");
    if let Some(img) = &opts.initrd {
        fs::copy(img, &capture).map_err(io_err(img))?;
        progress(&format!("capture image: {} (given; not built)", img.display()));
    } else {
        build_capture(opts, &uuid, &init, &capture, progress)?;
    }
    phases.push(Phase { name: "build", secs: t0.elapsed().as_secs_f64() });

    // 2. First-stage initramfs and target disk.
    let t = Instant::now();
    let stage1 = work.join("stage1.cpio");
    build_stage1(opts, &capture, &stage1)?;
    let disk = match &opts.target_disk {
        Some(d) => d.clone(),
        None => {
            let disk = work.join("target.img");
            let disk_bytes = (u64::from(opts.memory_mib) + 1024) * 1024 * 1024;
            let f = fs::File::create(&disk).map_err(io_err(&disk))?;
            f.set_len(disk_bytes).map_err(io_err(&disk))?;
            drop(f);
            run_cmd(
                "mkfs.ext4",
                Command::new("mkfs.ext4").args(["-q", "-F", "-U", &uuid, "-L", "rkdump-test"]).arg(&disk),
            )?;
            disk
        }
    };
    phases.push(Phase { name: "prepare", secs: t.elapsed().as_secs_f64() });

    // 3. Boot, crash, capture.
    let console = out.join("console.log");
    let mut q = QemuCommand::new(qemu);
    q.memory_mib(opts.memory_mib)
        .smp(opts.smp)
        .cpu(&opts.cpu)
        .kernel(&opts.kernel.image)
        .initrd(&stage1)
        .append(&format!("console=ttyS0 crashkernel={} panic=1 rdinit=/init", opts.crashkernel))
        .serial_file(&console);
    if opts.attach_target {
        q.virtio_disk(&disk, opts.target_write_bps.map(|b| (b, opts.target_write_burst)));
    }
    let cmdline_path = work.join("qemu.sh");
    fs::write(&cmdline_path, format!("{q}\n")).map_err(io_err(&cmdline_path))?;
    progress(&format!(
        "booting {} in QEMU (TCG, {} MiB, crashkernel={})",
        opts.kernel.release, opts.memory_mib, opts.crashkernel
    ));
    let t = Instant::now();
    let run = run_guest(&mut q.command(), &console, opts.timeout, progress)?;
    let boot_to_crash = run.crash_at.map(|c| c.as_secs_f64());
    if let Some(c) = boot_to_crash {
        phases.push(Phase { name: "boot+arm+crash", secs: c });
        phases.push(Phase { name: "capture", secs: t.elapsed().as_secs_f64() - c });
    } else {
        phases.push(Phase { name: "guest", secs: t.elapsed().as_secs_f64() });
    }
    let log = fs::read(&console).map_err(io_err(&console))?;
    let log = String::from_utf8_lossy(&log);
    let panic_line =
        log.lines().find(|l| l.contains("Kernel panic - not syncing")).map(|l| l.trim_end_matches('\r').to_string());
    if !run.exited {
        return Err(CrashTestError::Timeout { secs: opts.timeout.as_secs(), console });
    }

    // 4. Read the dump back without mounting.
    let t = Instant::now();
    let (dump_dir, files) = if opts.attach_target && opts.collect {
        collect_dump(&disk, &opts.dump_path, out)?
    } else {
        (None, Vec::new())
    };
    phases.push(Phase { name: "collect", secs: t.elapsed().as_secs_f64() });
    if opts.target_disk.is_none() {
        let _ = fs::remove_file(&disk);
    }
    let _ = fs::remove_file(&stage1);

    Ok(Summary {
        release: opts.kernel.release.clone(),
        panic_line,
        dump_dir,
        files,
        console,
        phases,
        guest_exited: run.exited,
    })
}

/// Free bytes for an unprivileged writer on the file system holding `dir`, if it can be asked.
fn free_bytes(dir: &Path) -> Option<u64> {
    let st = rustix::fs::statvfs(dir).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

/// A warning when the output directory may fill up: the sparse target image grows by the dump
/// and the dump is then copied out beside it, so an unfiltered dump of the guest needs about
/// twice its memory. Filtered dumps are far smaller, so this warns rather than refuses.
fn space_warning(opts: &CrashTestOptions, free: Option<u64>) -> Option<String> {
    let free_mib = free? >> 20;
    let dump_mib = u64::from(opts.memory_mib);
    let need_mib = if opts.target_disk.is_none() { 2 * dump_mib } else { dump_mib };
    (free_mib < need_mib).then(|| {
        format!(
            "warning: {free_mib} MiB free under {}; a dump of this {dump_mib} MiB guest can need up to \
             {need_mib} MiB there (the target image and the copy read back), less when filtered",
            opts.out.display()
        )
    })
}

/// Writes the crash test's `kdump.conf` (an ext4 target with `uuid`) and builds the capture
/// image with the real `rkdump build`.
fn build_capture(
    opts: &CrashTestOptions,
    uuid: &str,
    init: &Path,
    capture: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<(), CrashTestError> {
    let out = &opts.out;
    let mut conf = format!(
        "# written by rkdump crash-test\next4 UUID={uuid}\npath /var/crash\nextra_modules virtio_blk virtio_pci\ndevice_timeout {}\n",
        opts.device_timeout_secs
    );
    for l in &opts.extra_config {
        conf += l;
        conf.push('\n');
    }
    let conf_path = out.join("kdump.conf");
    fs::write(&conf_path, &conf).map_err(io_err(&conf_path))?;
    let mut build = Command::new(&opts.rkdump);
    build
        .arg("build")
        .arg("--config")
        .arg(&conf_path)
        .arg("--kernel-release")
        .arg(&opts.kernel.release)
        .arg("--init")
        .arg(init)
        .arg("--output")
        .arg(capture)
        .args(&opts.build_args);
    if let Some(root) = &opts.build_root {
        build.arg("--root").arg(root);
    }
    let built = run_cmd("rkdump build", &mut build)?;
    progress(&format!("capture image: {}", built.lines().last().unwrap_or("").trim()));
    Ok(())
}

struct GuestRun {
    exited: bool,
    crash_at: Option<Duration>,
}

/// Runs QEMU, following the console file to report phases, with a hard timeout.
fn run_guest(
    cmd: &mut Command,
    console: &Path,
    timeout: Duration,
    progress: &mut dyn FnMut(&str),
) -> Result<GuestRun, CrashTestError> {
    let qerr = console.with_extension("qemu-stderr");
    let errf = fs::File::create(&qerr).map_err(io_err(&qerr))?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(errf)
        .spawn()
        .map_err(|e| CrashTestError::Step { what: "start qemu".into(), detail: e.to_string() })?;
    let start = Instant::now();
    let markers: [(&str, &str); 5] = [
        ("rkdump-stage1: arming", "guest booted, workload ready, arming"),
        ("rkdump-stage1: triggering sysrq-c", "armed; triggering sysrq-c"),
        ("Kernel panic - not syncing", "panicked; kexec into the capture kernel"),
        ("rkdump: rkdump-init", "capture init running"),
        ("rkdump: capture complete", "dump saved"),
    ];
    let mut seen = 0;
    let mut crash_at = None;
    loop {
        if let Ok(text) = fs::read(console) {
            let text = String::from_utf8_lossy(&text);
            while seen < markers.len() && text.contains(markers[seen].0) {
                progress(&format!("[{:6.1}s] {}", start.elapsed().as_secs_f64(), markers[seen].1));
                if seen == 2 {
                    crash_at = Some(start.elapsed());
                }
                seen += 1;
            }
        }
        match child.try_wait() {
            Ok(Some(status)) => {
                if !status.success() {
                    let err = fs::read_to_string(&qerr).unwrap_or_default();
                    return Err(CrashTestError::Step {
                        what: "qemu".into(),
                        detail: format!("{status}: {}", err.trim()),
                    });
                }
                progress(&format!("[{:6.1}s] guest exited", start.elapsed().as_secs_f64()));
                return Ok(GuestRun { exited: true, crash_at });
            }
            Ok(None) => {}
            Err(e) => return Err(CrashTestError::Step { what: "wait for qemu".into(), detail: e.to_string() }),
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(GuestRun { exited: false, crash_at });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The dump directory copied out of the target, and its files with their sizes.
type Collected = (Option<PathBuf>, Vec<(String, u64)>);

/// Entries of a `debugfs ls -p` listing: `(name, size)`, the size `None` for a directory. Lines
/// look like `/inode/mode/uid/gid/name/size/`; `.` and `..` are left out.
fn parse_ls_p(listing: &str) -> Vec<(String, Option<u64>)> {
    listing
        .lines()
        .filter_map(|l| {
            let mut f = l.trim().split('/').skip(5);
            let name = f.next()?;
            let size = f.next()?.parse().ok();
            (name != "." && name != ".." && !name.is_empty()).then(|| (name.to_string(), size))
        })
        .collect()
}

/// Checks that every file of the image's dump directory was copied out whole. `debugfs rdump`
/// exits 0 even when the host disk fills up under it, which left a short vmcore that looked
/// like a finished dump.
fn check_copied(
    dir: &Path,
    in_image: &[(String, Option<u64>)],
    copied: &[(String, u64)],
) -> Result<(), CrashTestError> {
    for (name, want) in in_image.iter().filter_map(|(n, s)| Some((n, (*s)?))) {
        let got = copied.iter().find(|(n, _)| n == name).map(|&(_, l)| l);
        if got != Some(want) {
            let got = got.map_or_else(|| "missing".to_string(), |g| format!("{g} bytes"));
            return Err(CrashTestError::Step {
                what: "copy the dump out of the target image".into(),
                detail: format!(
                    "{} is {got}, the image holds {want} bytes (is the disk under {} full?)",
                    dir.join(name).display(),
                    dir.display()
                ),
            });
        }
    }
    Ok(())
}

/// Finds the newest `127.0.0.1-*` directory under `path` in the ext4 image and copies it into
/// `out` with `debugfs rdump`, checking that every file arrived whole.
fn collect_dump(disk: &Path, path: &str, out: &Path) -> Result<Collected, CrashTestError> {
    let ls = |dir: &str| {
        run_cmd("debugfs ls", Command::new("debugfs").arg("-R").arg(format!("ls -p {dir}")).arg(disk))
            .map(|l| parse_ls_p(&l))
    };
    let mut dirs: Vec<String> = ls(path)?.into_iter().map(|(n, _)| n).filter(|n| n.starts_with("127.0.0.1-")).collect();
    dirs.sort();
    let Some(name) = dirs.pop() else {
        return Ok((None, Vec::new()));
    };
    let in_image = ls(&format!("{path}/{name}"))?;
    run_cmd(
        "debugfs rdump",
        Command::new("debugfs").arg("-R").arg(format!("rdump {path}/{name} {}", out.display())).arg(disk),
    )?;
    let dir = out.join(&name);
    let mut files = Vec::new();
    for e in fs::read_dir(&dir).map_err(io_err(&dir))? {
        let e = e.map_err(io_err(&dir))?;
        let len = e.metadata().map_err(io_err(&e.path()))?.len();
        files.push((e.file_name().to_string_lossy().into_owned(), len));
    }
    files.sort();
    check_copied(&dir, &in_image, &files)?;
    Ok((Some(dir), files))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions_sort_numerically() {
        let mut v = vec!["6.1.0-9-amd64", "6.1.0-10-amd64", "5.10.0-30-amd64", "6.12.1"];
        v.sort_by(|a, b| version_cmp(a, b));
        assert_eq!(v, ["5.10.0-30-amd64", "6.1.0-9-amd64", "6.1.0-10-amd64", "6.12.1"]);
    }

    #[test]
    fn stage1_script_arms_then_crashes() {
        let k = Kernel { release: "r".into(), image: "/boot/vmlinuz-r".into(), modules: "/lib/modules/r".into() };
        let s = stage1_init(&CrashTestOptions::new(k, "/tmp/x".into(), "/x/rkdump".into()));
        let arm = s.find("/rkdump arm").unwrap_or(usize::MAX);
        let crash = s.find("echo c > /proc/sysrq-trigger").unwrap_or(0);
        assert!(arm < crash, "{s}");
        assert!(s.contains("--anon-mib 256 --cache-mib 128"));
        assert!(s.contains("/rkdump arm --kernel /vmlinuz "), "{s}");
        let mut o = CrashTestOptions::new(
            Kernel { release: "r".into(), image: "/boot/vmlinuz-r".into(), modules: "/lib/modules/r".into() },
            "/tmp/x".into(),
            "/x/rkdump".into(),
        );
        o.capture_kernel = Some("/k/bzImage".into());
        let s = stage1_init(&o);
        assert!(s.contains("/rkdump arm --kernel /capture-vmlinuz "), "{s}");
    }

    #[test]
    fn a_short_copy_of_the_dump_is_an_error() {
        // As debugfs 1.47 prints it: directories have an empty size.
        let listing = "/14/040755/0/0/.//\n/13/040755/0/0/..//\n/16/040755/0/0/sub//\n\
                       /15/100600/0/0/vmcore/1915953152/\n/17/100644/0/0/vmcore-dmesg.txt/26692/\n\n";
        let in_image = parse_ls_p(listing);
        assert_eq!(
            in_image,
            [
                ("sub".to_string(), None),
                ("vmcore".to_string(), Some(1_915_953_152)),
                ("vmcore-dmesg.txt".to_string(), Some(26_692))
            ]
        );
        let dir = Path::new("/out/127.0.0.1-x");
        let whole = [("vmcore".to_string(), 1_915_953_152), ("vmcore-dmesg.txt".to_string(), 26_692)];
        assert!(check_copied(dir, &in_image, &whole).is_ok());
        let short = [("vmcore".to_string(), 647_524_352), ("vmcore-dmesg.txt".to_string(), 26_692)];
        let e = check_copied(dir, &in_image, &short).unwrap_err().to_string();
        assert!(e.contains("647524352 bytes, the image holds 1915953152"), "{e}");
        let e = check_copied(dir, &in_image, &whole[..1]).unwrap_err().to_string();
        assert!(e.contains("vmcore-dmesg.txt is missing"), "{e}");
    }

    #[test]
    fn warns_when_the_output_disk_is_short() {
        let k = Kernel { release: "r".into(), image: "/boot/vmlinuz-r".into(), modules: "/lib/modules/r".into() };
        let mut o = CrashTestOptions::new(k, "/tmp/x".into(), "/x/rkdump".into());
        o.memory_mib = 2048;
        assert_eq!(space_warning(&o, Some(8 << 30)), None);
        assert_eq!(space_warning(&o, None), None);
        let w = space_warning(&o, Some(3 << 30)).unwrap_or_default();
        assert!(w.contains("3072 MiB free under /tmp/x") && w.contains("up to 4096 MiB"), "{w}");
        o.target_disk = Some("/dev/null".into());
        assert_eq!(space_warning(&o, Some(3 << 30)), None);
        assert!(free_bytes(Path::new("/")).is_some_and(|f| f > 0));
    }

    #[test]
    fn reads_the_uuid_of_an_ext_image() {
        let dir = std::env::temp_dir().join(format!("rkdump-qemu-uuid-{}", std::process::id()));
        let _ = fs::create_dir_all(&dir);
        let img = dir.join("sb.img");
        let mut b = vec![0u8; 4096];
        b[1024 + 0x38..1024 + 0x3a].copy_from_slice(&[0x53, 0xef]);
        for (i, x) in b[1024 + 0x68..1024 + 0x78].iter_mut().enumerate() {
            *x = 0x10 * (i as u8 % 16) + 0xa;
        }
        fs::write(&img, &b).unwrap_or_default();
        let u = ext_uuid(&img).map_err(|e| e.to_string());
        assert_eq!(u.as_deref(), Ok("0a1a2a3a-4a5a-6a7a-8a9a-aabacadaeafa"));
        b[1024 + 0x38] = 0;
        fs::write(&img, &b).unwrap_or_default();
        let e = ext_uuid(&img).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("is not an ext2/3/4 image"), "{e}");
        fs::write(&img, b"short").unwrap_or_default();
        let e = ext_uuid(&img).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("too short"), "{e}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn detects_dynamic_binaries() {
        // The test binary itself is dynamically linked on a glibc host; busybox-static is not.
        let me = std::env::current_exe().unwrap_or_default();
        if cfg!(target_env = "gnu") {
            assert!(has_interp(&me).unwrap_or(false));
        }
        if Path::new("/bin/busybox").exists() {
            assert!(!has_interp(Path::new("/bin/busybox")).unwrap_or(true));
        }
    }
}
