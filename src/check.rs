//! `rkdump check`: is this system ready to capture? Each check says ok, what is wrong and how
//! to fix it: the kernel's configuration, the crash reservation (against `rkdump estimate`),
//! kexec, lockdown, the capture image and whether it is armed.

use std::fmt;
use std::path::{Path, PathBuf};

use rkdump_kconfig::checks::{kdump_options, Need, Role};
use rkdump_kconfig::estimate::{bzimage_init_size, bzimage_release, estimate};
use rkdump_kconfig::Kconfig;
use rkdump_mkinitrd::modules::ModuleIndex;

use crate::estimate::{inputs, meminfo_total, read_head};

/// A check's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// The capture would fail (or could not start).
    Fail,
    /// Works, with a caveat.
    Warn,
    /// Not checked (an input was not given).
    Skip,
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Check {
    pub status: Status,
    pub what: String,
    pub fix: Option<String>,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = match self.status {
            Status::Ok => "ok  ",
            Status::Fail => "FAIL",
            Status::Warn => "warn",
            Status::Skip => "skip",
        };
        write!(f, "{tag}  {}", self.what)?;
        if let Some(fix) = &self.fix {
            write!(f, "\n      fix: {fix}")?;
        }
        Ok(())
    }
}

/// Where the system is read from (the root directory in tests).
pub struct System {
    pub root: PathBuf,
}

impl System {
    fn read(&self, path: &str) -> Option<String> {
        std::fs::read_to_string(self.root.join(path.trim_start_matches('/'))).ok()
    }
    fn path(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }
}

/// What to check.
pub struct CheckInputs<'a> {
    /// The capture kernel (default: /boot/vmlinuz-R of the running kernel).
    pub kernel: Option<&'a Path>,
    /// The capture image, if one is to be checked.
    pub initrd: Option<&'a Path>,
    /// The kernel's .config (default: /boot/config-R).
    pub kernel_config: Option<&'a Path>,
}

fn ok(what: String) -> Check {
    Check { status: Status::Ok, what, fix: None }
}

fn bad(status: Status, what: String, fix: impl Into<String>) -> Check {
    Check { status, what, fix: Some(fix.into()) }
}

/// Whether the image is older than the files it was built from (kdumpctl rebuilds then).
fn freshness_check(img: &Path, sources: Vec<std::path::PathBuf>) -> Check {
    let rebuild = "rebuild it (rkdump build) and arm it again (rkdump arm)";
    match rkdump_mkinitrd::freshness_of(img, sources) {
        Ok(f) if f.up_to_date() => {
            ok(format!("capture image is newer than the {} files it was built from", f.sources.len()))
        }
        Ok(f) if f.sources.is_empty() => bad(
            Status::Skip,
            "capture image does not list the files it was built from (an older rkdump?)".into(),
            "rebuild it to let rkdump check it",
        ),
        Ok(f) => bad(Status::Warn, format!("capture image is stale ({})", f.stale_reason()), rebuild),
        Err(e) => bad(Status::Fail, format!("capture image: {e}"), "build it with rkdump build"),
    }
}

/// All checks, in report order.
pub fn run(sys: &System, inp: &CheckInputs<'_>) -> Vec<Check> {
    let mut out = Vec::new();
    let running = sys.read("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string());

    // The capture kernel and its release.
    let kernel = match inp.kernel {
        Some(k) => Some(k.to_path_buf()),
        None => running.as_ref().map(|r| sys.path(&format!("/boot/vmlinuz-{r}"))),
    };
    let head = kernel.as_ref().and_then(|k| read_head(k).ok());
    let release =
        head.as_deref().and_then(bzimage_release).or_else(|| if inp.kernel.is_none() { running.clone() } else { None });
    match (&kernel, &head) {
        (Some(k), Some(h)) if bzimage_init_size(h).is_ok() => out.push(ok(format!(
            "capture kernel {} ({})",
            k.display(),
            release.as_deref().unwrap_or("release unknown")
        ))),
        (Some(k), Some(_)) => out.push(bad(
            Status::Fail,
            format!("capture kernel {}: not a bzImage", k.display()),
            "give the kernel image (vmlinuz) with --kernel",
        )),
        (Some(k), None) if !k.exists() => out.push(bad(
            Status::Fail,
            format!("capture kernel {}: does not exist", k.display()),
            "give the capture kernel with --kernel",
        )),
        (Some(k), None) => out.push(bad(
            Status::Fail,
            format!("capture kernel {}: cannot be read", k.display()),
            "give the capture kernel with --kernel (and run as root if it is readable only by root)",
        )),
        (None, _) => out.push(bad(
            Status::Fail,
            "capture kernel: the running kernel's release is unknown".into(),
            "give the capture kernel with --kernel",
        )),
    }

    // Its configuration.
    let config_path = inp
        .kernel_config
        .map(Path::to_path_buf)
        .or_else(|| release.as_ref().map(|r| sys.path(&format!("/boot/config-{r}"))));
    let config = match &config_path {
        Some(p) => match Kconfig::load(p) {
            Ok(k) => Some(k),
            Err(e) => {
                out.push(bad(
                    Status::Warn,
                    format!("kernel config not checked: {e}"),
                    "give the capture kernel's .config with --kernel-config",
                ));
                None
            }
        },
        None => {
            out.push(bad(
                Status::Warn,
                "kernel config not checked: no release to find it by".into(),
                "give the capture kernel's .config with --kernel-config",
            ));
            None
        }
    };
    // A dedicated capture kernel (another release than the running one): the options the
    // running kernel needs (kexec_file_load, sysrq) are checked in the running kernel's config.
    let separate = match (&running, &release) {
        (Some(run), Some(cap)) => run != cap,
        _ => false,
    };
    let running_config = if separate {
        let run = running.as_deref().unwrap_or_default();
        let p = sys.path(&format!("/boot/config-{run}"));
        match Kconfig::load(&p) {
            Ok(k) => Some(k),
            Err(e) => {
                out.push(bad(
                    Status::Warn,
                    format!("running kernel {run}: config not checked: {e}"),
                    "it needs CONFIG_KEXEC_FILE=y to load the capture kernel",
                ));
                None
            }
        }
    } else {
        None
    };
    let verdicts = |k: &Kconfig, role: Role, label: &str, out: &mut Vec<Check>| {
        for c in kdump_options(k).into_iter().filter(|c| c.role == role || !separate) {
            let what = format!("{label}{}=y: {}", c.name, c.why);
            out.push(match (c.ok, c.need) {
                (true, _) => ok(what),
                (false, Need::Required) => bad(Status::Fail, what, format!("build the kernel with {}=y", c.name)),
                (false, Need::Recommended) => bad(Status::Warn, what, format!("build the kernel with {}=y", c.name)),
            });
        }
    };
    if let Some(k) = &running_config {
        verdicts(k, Role::Running, "running kernel: ", &mut out);
    }
    if let Some(k) = &config {
        verdicts(k, Role::Capture, if separate { "capture kernel: " } else { "" }, &mut out);
    }

    // The image.
    let mut sizes = None;
    match inp.initrd {
        None => out.push(bad(
            Status::Skip,
            "capture image: not given".into(),
            "give it with --initrd IMG to check it and the reservation it needs",
        )),
        Some(img) => match rkdump_mkinitrd::sizes(img) {
            Ok(s) => {
                let has = |p: &str| s.paths.iter().any(|e| e == p);
                let built_for: Option<String> = s.modules.iter().find_map(|(p, _)| {
                    p.strip_prefix("lib/modules/").and_then(|r| r.split('/').next()).map(str::to_string)
                });
                if !has("init") || !has("etc/rkdump/plan") {
                    out.push(bad(
                        Status::Fail,
                        format!("capture image {}: no /init or capture plan: not built by rkdump build", img.display()),
                        "build it with rkdump build",
                    ));
                } else {
                    match (&built_for, &release) {
                        (Some(b), Some(r)) if b != r => out.push(bad(
                            Status::Fail,
                            format!(
                                "capture image {}: its modules are for {b}, the capture kernel is {r}",
                                img.display()
                            ),
                            if !separate || ModuleIndex::find_dir(Some(&sys.root), r).is_ok() {
                                format!("rebuild it: rkdump build --kernel-release {r} --output {}", img.display())
                            } else {
                                // A dedicated capture kernel with no modules installed: its
                                // drivers are built in.
                                format!(
                                    "rebuild it without modules: rkdump build --kernel-release {r} --no-modules --output {}",
                                    img.display()
                                )
                            },
                        )),
                        _ => out.push(ok(format!(
                            "capture image {} ({} modules{})",
                            img.display(),
                            s.modules.len(),
                            built_for.map(|b| format!(" for {b}")).unwrap_or_default()
                        ))),
                    }
                    if let (Some(k), Some(c)) = (&config, s.compression) {
                        let algo = c.as_str();
                        if let Some(opt) = c.kernel_option() {
                            let what = format!("{opt}=y: the kernel unpacks the {algo} image");
                            out.push(if k.is_builtin(opt) {
                                ok(what)
                            } else {
                                bad(
                                    Status::Fail,
                                    what,
                                    format!("rebuild the image with another --compression, or the kernel with {opt}=y"),
                                )
                            });
                        }
                    }
                    // The image is read once: `sizes` also gave its source list.
                    out.push(freshness_check(img, s.sources.clone()));
                }
                sizes = Some(s);
            }
            Err(e) => out.push(bad(Status::Fail, format!("capture image: {e}"), "build it with rkdump build")),
        },
    }

    // The reservation, against the estimate when the kernel and image are known.
    let need = match (&head, &sizes) {
        (Some(h), Some(s)) => bzimage_init_size(h).ok().map(|init| {
            let mem = sys.read("/proc/meminfo").as_deref().and_then(meminfo_total).unwrap_or(0);
            estimate(&inputs(init, s, mem, 1))
        }),
        _ => None,
    };
    let advice = need
        .as_ref()
        .map(|e| format!("boot with crashkernel={} (rkdump estimate)", e.crashkernel()))
        .unwrap_or_else(|| "boot with crashkernel= (rkdump estimate --initrd IMG says how much)".into());
    match sys.read("/sys/kernel/kexec_crash_size").and_then(|s| s.trim().parse::<u64>().ok()) {
        None => out.push(bad(
            Status::Fail,
            "crash reservation: /sys/kernel/kexec_crash_size is unreadable (no kexec support?)".into(),
            "use a kernel with CONFIG_KEXEC_FILE and CONFIG_CRASH_DUMP",
        )),
        Some(0) => out.push(bad(Status::Fail, "crash reservation: none".into(), advice)),
        Some(r) => match &need {
            Some(e) if r < e.total => out.push(bad(
                Status::Fail,
                format!(
                    "crash reservation: {} MiB, the capture needs about {} MiB",
                    r >> 20,
                    e.total.div_ceil(1 << 20)
                ),
                advice,
            )),
            Some(e) => out.push(ok(format!(
                "crash reservation: {} MiB (the capture needs about {} MiB)",
                r >> 20,
                e.total.div_ceil(1 << 20)
            ))),
            None => out.push(ok(format!(
                "crash reservation: {} MiB (give --initrd to compare it with the capture's needs)",
                r >> 20
            ))),
        },
    }

    // kexec and lockdown.
    match sys.read("/proc/sys/kernel/kexec_load_disabled").map(|s| s.trim().to_string()) {
        Some(v) if v == "1" => out.push(bad(
            Status::Fail,
            "kexec is disabled (kernel.kexec_load_disabled = 1)".into(),
            "the setting stays until reboot: remove it from the sysctl configuration and reboot",
        )),
        Some(_) => out.push(ok("kexec is enabled".into())),
        None => out.push(bad(
            Status::Warn,
            "kexec: /proc/sys/kernel/kexec_load_disabled is unreadable".into(),
            "check that the kernel has CONFIG_KEXEC_FILE",
        )),
    }
    if let Some(l) = sys.read("/sys/kernel/security/lockdown") {
        if l.contains("[none]") {
            out.push(ok("lockdown: none".into()));
        } else {
            out.push(bad(
                Status::Warn,
                format!("lockdown: {}", l.trim()),
                "kexec_file_load then takes only a signed capture kernel: arm the distribution's signed vmlinuz",
            ));
        }
    }

    // Armed?
    match sys.read("/sys/kernel/kexec_crash_loaded").map(|s| s.trim().to_string()) {
        Some(v) if v == "1" => out.push(ok("a capture kernel is loaded".into())),
        _ => {
            out.push(bad(Status::Fail, "no capture kernel is loaded".into(), "rkdump arm --kernel KERNEL --initrd IMG"))
        }
    }
    out
}

/// The report and whether the system is ready (no failure).
pub fn report(checks: &[Check]) -> (String, bool) {
    let mut s = String::new();
    for c in checks {
        s.push_str(&c.to_string());
        s.push('\n');
    }
    let fails = checks.iter().filter(|c| c.status == Status::Fail).count();
    let warns = checks.iter().filter(|c| c.status == Status::Warn).count();
    if fails == 0 {
        s.push_str(&format!(
            "ready to capture{}\n",
            if warns > 0 { format!(" ({warns} warnings)") } else { String::new() }
        ));
    } else {
        s.push_str(&format!("not ready to capture: {fails} problem{}\n", if fails > 1 { "s" } else { "" }));
    }
    (s, fails == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: &str = "6.1.0-99-amd64";

    /// A bzImage setup header naming `release`, with init_size 64 MiB.
    fn bzimage(release: &str) -> Vec<u8> {
        let mut h = vec![0u8; 0x1000];
        h[0x202..0x206].copy_from_slice(b"HdrS");
        h[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        h[0x20e..0x210].copy_from_slice(&0x300u16.to_le_bytes());
        h[0x260..0x264].copy_from_slice(&(64u32 << 20).to_le_bytes());
        let v = format!("{release} (builder) #1 SMP\0");
        h[0x500..0x500 + v.len()].copy_from_slice(v.as_bytes());
        h
    }

    /// An image as `rkdump build` writes it, built from the file `source`.
    fn image_from(path: &Path, release: &str, compression: rkdump_mkinitrd::Compression, source: &Path) {
        let mut w = rkdump_mkinitrd::CpioWriter::new(Vec::new());
        w.add_file(rkdump_mkinitrd::SOURCES_PATH, 0o644, format!("{}\n", source.display()).as_bytes()).unwrap();
        w.add_file("init", 0o755, b"init").unwrap();
        w.add_file("etc/rkdump/plan", 0o644, b"plan").unwrap();
        w.add_file(&format!("lib/modules/{release}/kernel/fs/ext4/ext4.ko"), 0o644, &[7u8; 5000]).unwrap();
        let raw = w.finish().unwrap();
        std::fs::write(path, rkdump_mkinitrd::compress(&raw, compression).unwrap()).unwrap();
    }

    /// An image built from the kernel config of the ready root (its directory's parent).
    fn image(path: &Path, release: &str, compression: rkdump_mkinitrd::Compression) {
        let source = path.parent().unwrap().join(format!("boot/config-{release}"));
        image_from(path, release, compression, &source);
    }

    /// A machine ready to capture: reservation 256 MiB, armed, kexec on, no lockdown, the
    /// running kernel's image and config in /boot.
    fn ready_root() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let w = |p: &str, data: &[u8]| {
            let p = d.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, data).unwrap();
        };
        w("proc/sys/kernel/osrelease", format!("{R}\n").as_bytes());
        w("proc/sys/kernel/kexec_load_disabled", b"0\n");
        w("proc/meminfo", b"MemTotal:        2000000 kB\n");
        w("sys/kernel/kexec_crash_size", b"268435456\n");
        w("sys/kernel/kexec_crash_loaded", b"1\n");
        w("sys/kernel/security/lockdown", b"[none] integrity confidentiality\n");
        w(&format!("boot/vmlinuz-{R}"), &bzimage(R));
        let config: String =
            kdump_options(&Kconfig::parse("").unwrap()).iter().map(|c| format!("{}=y\n", c.name)).collect();
        w(&format!("boot/config-{R}"), format!("{config}CONFIG_RD_ZSTD=y\n# CONFIG_RD_XZ is not set\n").as_bytes());
        d
    }

    fn check(root: &Path, initrd: Option<&Path>) -> (Vec<Check>, String, bool) {
        let sys = System { root: root.to_path_buf() };
        let c = run(&sys, &CheckInputs { kernel: None, initrd, kernel_config: None });
        let (text, ready) = report(&c);
        (c, text, ready)
    }

    #[test]
    fn a_ready_machine_passes_every_check() {
        let root = ready_root();
        let img = root.path().join("capture.img");
        image(&img, R, rkdump_mkinitrd::Compression::Zstd);
        let (c, text, ready) = check(root.path(), Some(&img));
        assert!(ready, "{text}");
        assert!(c.iter().all(|c| c.status == Status::Ok), "{text}");
        assert!(
            text.contains(&format!("capture kernel {}", root.path().join(format!("boot/vmlinuz-{R}")).display())),
            "{text}"
        );
        assert!(text.contains("CONFIG_PROC_VMCORE=y") && text.contains("CONFIG_RD_ZSTD=y"), "{text}");
        assert!(text.contains("crash reservation: 256 MiB (the capture needs about"), "{text}");
        assert!(text.ends_with("ready to capture\n"), "{text}");
    }

    /// A dedicated capture kernel (another release) is checked for the capture options only;
    /// kexec_file_load and sysrq are the running kernel's business, checked in its config.
    #[test]
    fn a_dedicated_capture_kernel_is_checked_for_its_own_options() {
        let root = ready_root();
        let cap = root.path().join("capture-bzImage");
        std::fs::write(&cap, bzimage("6.1.192")).unwrap();
        let cap_config = root.path().join("capture.config");
        let capture_only: String = kdump_options(&Kconfig::parse("").unwrap())
            .iter()
            .filter(|c| c.role == Role::Capture)
            .map(|c| format!("{}=y\n", c.name))
            .collect();
        std::fs::write(&cap_config, format!("{capture_only}# CONFIG_KEXEC_FILE is not set\n")).unwrap();
        let sys = System { root: root.path().to_path_buf() };
        let inputs = CheckInputs { kernel: Some(&cap), initrd: None, kernel_config: Some(&cap_config) };
        let (text, _) = report(&run(&sys, &inputs));
        assert!(text.contains("ok    running kernel: CONFIG_KEXEC_FILE=y"), "{text}");
        assert!(text.contains("ok    capture kernel: CONFIG_PROC_VMCORE=y"), "{text}");
        assert!(
            !text.contains("FAIL  capture kernel: CONFIG_KEXEC_FILE") && !text.contains("FAIL  CONFIG_KEXEC_FILE"),
            "{text}"
        );

        // The running kernel without kexec_file_load fails, named as such.
        std::fs::write(root.path().join(format!("boot/config-{R}")), "CONFIG_CRASH_DUMP=y\n").unwrap();
        let (text, ready) = report(&run(&sys, &inputs));
        assert!(!ready && text.contains("FAIL  running kernel: CONFIG_KEXEC_FILE=y"), "{text}");
        assert!(text.contains("ok    capture kernel: CONFIG_PROC_VMCORE=y"), "{text}");

        // The production kernel's image: its modules will not load; no modules are installed
        // for the capture kernel, so the fix is an image without modules.
        let img = root.path().join("capture.img");
        image(&img, R, rkdump_mkinitrd::Compression::Zstd);
        let (text, _) = report(&run(&sys, &CheckInputs { initrd: Some(&img), ..inputs }));
        assert!(text.contains(&format!("its modules are for {R}, the capture kernel is 6.1.192")), "{text}");
        assert!(text.contains("rkdump build --kernel-release 6.1.192 --no-modules"), "{text}");
    }

    /// An image older than a file it was built from is stale (a warning: the capture still
    /// works, but with the old configuration); one whose source is gone too.
    #[test]
    fn a_stale_image_is_a_warning() {
        let root = ready_root();
        let img = root.path().join("capture.img");
        let conf = root.path().join("kdump.conf");
        std::fs::write(&conf, "x").unwrap();
        image_from(&img, R, rkdump_mkinitrd::Compression::Zstd, &conf);
        let later = std::fs::metadata(&img).unwrap().modified().unwrap() + std::time::Duration::from_secs(5);
        std::fs::File::options().write(true).open(&conf).unwrap().set_modified(later).unwrap();
        let (c, text, ready) = check(root.path(), Some(&img));
        assert!(ready, "{text}");
        let stale = c.iter().find(|c| c.what.starts_with("capture image is stale")).unwrap_or_else(|| panic!("{text}"));
        assert_eq!(stale.status, Status::Warn);
        assert!(stale.what.contains("changed since it was built: ") && stale.what.contains("kdump.conf"), "{text}");
        assert!(text.contains("rebuild it (rkdump build) and arm it again"), "{text}");
        std::fs::remove_file(&conf).unwrap();
        let (_, text, _) = check(root.path(), Some(&img));
        assert!(text.contains("capture image is stale (gone: "), "{text}");
    }

    #[test]
    fn each_problem_is_named_with_its_fix() {
        let root = ready_root();
        let p = |s: &str| root.path().join(s);
        std::fs::write(p("sys/kernel/kexec_crash_size"), "0\n").unwrap();
        std::fs::write(p("sys/kernel/kexec_crash_loaded"), "0\n").unwrap();
        std::fs::write(p("proc/sys/kernel/kexec_load_disabled"), "1\n").unwrap();
        std::fs::write(p("sys/kernel/security/lockdown"), "none [integrity] confidentiality\n").unwrap();
        let cfg = std::fs::read_to_string(p(&format!("boot/config-{R}"))).unwrap();
        std::fs::write(
            p(&format!("boot/config-{R}")),
            cfg.replace("CONFIG_PROC_VMCORE=y", "CONFIG_PROC_VMCORE=m").replace("CONFIG_MAGIC_SYSRQ=y", ""),
        )
        .unwrap();
        // An xz image the kernel cannot unpack, built for another release.
        let img = p("capture.img");
        image(&img, "5.10.0-1-amd64", rkdump_mkinitrd::Compression::Xz);
        let (c, text, ready) = check(root.path(), Some(&img));
        assert!(!ready, "{text}");
        for (status, what, fix) in [
            (Status::Fail, "CONFIG_PROC_VMCORE=y", "build the kernel with CONFIG_PROC_VMCORE=y"),
            (Status::Warn, "CONFIG_MAGIC_SYSRQ=y", "build the kernel with CONFIG_MAGIC_SYSRQ=y"),
            (
                Status::Fail,
                "its modules are for 5.10.0-1-amd64",
                &format!("rebuild it: rkdump build --kernel-release {R}"),
            ),
            (Status::Fail, "crash reservation: none", "boot with crashkernel="),
            (Status::Fail, "kexec is disabled", "remove it from the sysctl configuration and reboot"),
            (Status::Warn, "lockdown: none [integrity]", "signed capture kernel"),
            (Status::Fail, "no capture kernel is loaded", "rkdump arm"),
        ] {
            let hit = c.iter().find(|c| c.what.contains(what)).unwrap_or_else(|| panic!("no line for {what}:\n{text}"));
            assert_eq!(hit.status, status, "{what}:\n{text}");
            assert!(hit.fix.as_deref().unwrap_or("").contains(fix), "{what}:\n{text}");
        }
        // The image's compression against the kernel: only checked once the image is right.
        image(&img, R, rkdump_mkinitrd::Compression::Xz);
        let (c, text, _) = check(root.path(), Some(&img));
        let hit = c.iter().find(|c| c.what.contains("CONFIG_RD_XZ")).unwrap_or_else(|| panic!("{text}"));
        assert_eq!(hit.status, Status::Fail, "{text}");
        assert!(text.contains("not ready to capture: 5 problems"), "{text}");
    }

    #[test]
    fn a_missing_kernel_is_named() {
        let root = ready_root();
        std::fs::remove_file(root.path().join(format!("boot/vmlinuz-{R}"))).unwrap();
        let (c, text, ready) = check(root.path(), None);
        assert!(!ready);
        assert!(c[0].status == Status::Fail && c[0].what.ends_with("does not exist"), "{text}");
        assert!(c[0].fix.as_deref().unwrap().contains("--kernel"), "{text}");
    }

    #[test]
    fn a_reservation_below_the_estimate_fails() {
        let root = ready_root();
        std::fs::write(root.path().join("sys/kernel/kexec_crash_size"), format!("{}\n", 96u64 << 20)).unwrap();
        let img = root.path().join("capture.img");
        image(&img, R, rkdump_mkinitrd::Compression::Zstd);
        let (c, text, ready) = check(root.path(), Some(&img));
        assert!(!ready);
        let hit = c.iter().find(|c| c.what.starts_with("crash reservation")).unwrap();
        assert_eq!(hit.status, Status::Fail, "{text}");
        assert!(hit.what.contains("96 MiB, the capture needs about"), "{text}");
        assert!(hit.fix.as_deref().unwrap().contains("crashkernel=128M"), "{text}");
        // Without the image, the size cannot be judged: only "some" reservation is required.
        let (c, text, _) = check(root.path(), None);
        let hit = c.iter().find(|c| c.what.starts_with("crash reservation")).unwrap();
        assert_eq!(hit.status, Status::Ok, "{text}");
        assert!(c.iter().any(|c| c.status == Status::Skip && c.what.starts_with("capture image")), "{text}");
    }
}
