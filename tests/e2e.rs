//! End-to-end tests: real kernels crashing in QEMU, captured by our static init, checked with
//! `crash` as the oracle. They take minutes under TCG, so they are `#[ignore]`d for plain
//! `cargo test` and run by `make test` (which builds the static binaries first and sets
//! `RKDUMP_BIN_DIR`). Artifacts stay under `target/e2e/<test>/` for post-mortems.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The static `rkdump` to test. Fails (never silently passes) when it is missing.
fn rkdump_bin() -> PathBuf {
    let dir = std::env::var_os("RKDUMP_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/x86_64-unknown-linux-musl/release"));
    let bin = dir.join("rkdump");
    assert!(bin.exists(), "{} missing: run `make build` (or `make test`)", bin.display());
    bin
}

/// The common start of a test that builds its own image: its artifact directory (created), the
/// static `rkdump`, and the kernel to test.
fn setup(name: &str) -> (PathBuf, PathBuf, rkdump_qemu::Kernel) {
    let base = artifacts(name);
    std::fs::create_dir_all(&base).unwrap();
    (base, rkdump_bin(), rkdump_qemu::find_kernel(None).expect("a kernel in /boot"))
}

/// A fresh artifact directory for one test.
fn artifacts(name: &str) -> PathBuf {
    let d = workspace().join("target/e2e").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.parent().unwrap()).unwrap();
    d
}

/// The debug vmlinux for `release`, installed by `make deps`.
fn debug_vmlinux(release: &str) -> PathBuf {
    let p = PathBuf::from(format!("/usr/lib/debug/boot/vmlinux-{release}"));
    assert!(p.exists(), "{} missing: run `make deps` (extracts it from linux-image-{release}-dbg)", p.display());
    p
}

fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.stdin(Stdio::null()).output().expect("spawn");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// Runs `crash -s` with commands and returns its output.
pub fn crash_cmds(vmlinux: &Path, dump: &Path, cmds: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("cmds");
    std::fs::write(&input, format!("{cmds}\nexit\n")).unwrap();
    let (ok, out, err) = run(Command::new("crash").arg("-s").arg("-i").arg(&input).arg(vmlinux).arg(dump));
    assert!(ok, "crash failed on {}: {err}\n{out}", dump.display());
    out
}

/// Links a captured vmcore into `target/e2e/vmcores/<name>/vmcore`, where `make test` points
/// the vmcore crate's real-dump tests (`RKDUMP_VMCORES`).
fn publish_vmcore(name: &str, vmcore: &Path) {
    let dir = workspace().join("target/e2e/vmcores").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::hard_link(vmcore, dir.join("vmcore"))
        .or_else(|_| std::fs::copy(vmcore, dir.join("vmcore")).map(|_| ()))
        .unwrap();
}

fn summary_value<'a>(summary: &'a str, key: &str) -> Option<&'a str> {
    summary.lines().find_map(|l| l.strip_prefix(key)).map(str::trim)
}

/// The dump directory a crash-test summary names.
fn summary_dump_dir(summary: &str) -> PathBuf {
    PathBuf::from(summary_value(summary, "dump:").expect("dump line"))
}

#[test]
#[ignore = "boots QEMU; run by `make test`"]
fn crash_test_captures_sysrq_panic_and_crash_opens_it() {
    let out = artifacts("sysrq");
    // An unfiltered ELF copy: the oracles below (vmcore-dmesg, and makedumpfile's page counts in
    // the vmcore crate's tests) need the whole /proc/vmcore.
    let (ok, stdout, stderr) =
        run(Command::new(rkdump_bin()).arg("crash-test").arg("--out").arg(&out).arg("--config-line=core_collector cp"));
    eprintln!("{stderr}{stdout}");
    assert!(ok, "crash-test failed");
    // The output directory holds what the issue promises.
    for f in ["kdump.conf", "capture.img", "console.log"] {
        assert!(out.join(f).exists(), "{f} missing in {}", out.display());
    }
    let release = summary_value(&stdout, "kernel:").expect("kernel line").to_string();
    let panic = summary_value(&stdout, "panic:").expect("panic line");
    assert!(panic.contains("sysrq triggered crash"), "panic line: {panic}");
    let dump_dir = summary_dump_dir(&stdout);
    let name = dump_dir.file_name().unwrap().to_string_lossy().to_string();
    assert!(name.starts_with("127.0.0.1-") && name.len() == "127.0.0.1-2026-01-01-00:00:00".len(), "{name}");
    let vmcore = dump_dir.join("vmcore");
    assert!(vmcore.exists(), "no vmcore in {}", dump_dir.display());
    assert!(!dump_dir.join("vmcore-incomplete").exists());
    let console = std::fs::read_to_string(out.join("console.log")).unwrap();
    assert!(console.contains("rkdump: rkdump-init"), "the capture init never logged");
    // The first stage ran arm, status, disarm, status, arm, status.
    let states: Vec<&str> = console.lines().filter(|l| l.starts_with("capture kernel loaded:")).collect();
    assert_eq!(
        states,
        ["capture kernel loaded: yes", "capture kernel loaded: no", "capture kernel loaded: yes"],
        "{console}"
    );
    assert!(console.contains("crash reservation: 256 MiB"), "{console}");
    // Status names what rkdump arm loaded (twice: the disarm forgot the first), and finds the
    // image stale: the guest lacks the build machine's files the image was built from.
    let armed: Vec<&str> = console.lines().filter(|l| l.starts_with("armed: /vmlinuz + /capture.img at 20")).collect();
    assert_eq!(armed.len(), 2, "{console}");
    assert!(
        console.contains("capture command line: irqpoll nr_cpus=1 reset_devices console=ttyS0 panic=1"),
        "{console}"
    );
    assert!(console.contains("image: stale (gone: "), "{console}");
    // `rkdump check` in the armed guest: every check passes, the reservation against the
    // estimate of this very image and kernel.
    assert!(console.contains("rkdump-stage1: check exit status 0"), "{console}");
    assert!(console.contains("\nready to capture"), "{console}");
    for want in [
        "ok    CONFIG_PROC_VMCORE=y",
        "ok    CONFIG_RD_ZSTD=y",
        "ok    capture image /capture.img",
        "ok    kexec is enabled",
        "ok    a capture kernel is loaded",
    ] {
        assert!(console.contains(want), "{want} missing:\n{console}");
    }
    assert!(
        console.lines().any(|l| l.starts_with("ok    crash reservation: 256 MiB (the capture needs about ")),
        "{console}"
    );

    // The oracle: crash opens the dump with the debug vmlinux and sees the sysrq panic.
    let sys = crash_cmds(&debug_vmlinux(&release), &vmcore, "sys");
    assert!(sys.contains(&format!("RELEASE: {release}")), "crash sys:\n{sys}");
    assert!(sys.contains("PANIC: \"Kernel panic - not syncing: sysrq triggered crash\""), "crash sys:\n{sys}");
    // The kernel log was saved beside the dump (first), identical to kexec-tools' vmcore-dmesg.
    let dmesg = std::fs::read_to_string(dump_dir.join("vmcore-dmesg.txt")).expect("vmcore-dmesg.txt in the dump dir");
    let tail: Vec<&str> = dmesg.lines().rev().take(60).collect();
    assert!(tail.iter().any(|l| l.contains("Kernel panic - not syncing: sysrq triggered crash")), "{dmesg}");
    let (ok, reference, err) = run(Command::new("vmcore-dmesg").arg(&vmcore));
    assert!(ok, "vmcore-dmesg failed: {err}");
    assert!(dmesg == reference, "vmcore-dmesg.txt differs from vmcore-dmesg's output");
    publish_vmcore("five-level", &vmcore);
}

#[test]
#[ignore = "boots QEMU; run by `make test`"]
fn crash_test_with_four_level_paging() {
    let out = artifacts("four-level");
    let (ok, stdout, stderr) = run(Command::new(rkdump_bin())
        .arg("crash-test")
        .arg("--out")
        .arg(&out)
        .arg("--cpu")
        .arg("max,la57=off")
        .arg("--config-line=core_collector cp"));
    eprintln!("{stderr}{stdout}");
    assert!(ok, "crash-test failed");
    let release = summary_value(&stdout, "kernel:").expect("kernel line").to_string();
    let vmcore = summary_dump_dir(&stdout).join("vmcore");
    let sys = crash_cmds(&debug_vmlinux(&release), &vmcore, "sys");
    assert!(sys.contains("sysrq triggered crash"), "crash sys:\n{sys}");
    publish_vmcore("four-level", &vmcore);
}

#[test]
#[ignore = "boots QEMU; run by `make test`"]
fn missing_target_times_out_with_message_and_reboots() {
    let out = artifacts("missing-target");
    let (ok, stdout, stderr) = run(Command::new(rkdump_bin())
        .arg("crash-test")
        .arg("--out")
        .arg(&out)
        .arg("--no-target")
        .arg("--device-timeout")
        .arg("5")
        .arg("--timeout")
        .arg("600"));
    eprintln!("{stderr}{stdout}");
    // crash-test only succeeds when the guest exits by itself: the init rebooted, no hang.
    assert!(ok, "crash-test failed (a hang ends in a timeout error)");
    let console = std::fs::read_to_string(out.join("console.log")).unwrap();
    let line = console
        .lines()
        .find(|l| l.contains("did not appear within 5 s"))
        .unwrap_or_else(|| panic!("no timeout message in the console log:\n{console}"));
    assert!(line.contains("UUID="), "{line}");
    assert!(line.contains("block devices seen"), "{line}");
    assert!(console.contains("reboot"), "no reboot announced:\n{console}");
}

#[test]
#[ignore = "boots QEMU; run by `make test`"]
fn a_stuck_target_ends_the_capture_with_the_failure_action() {
    // The target disk takes its first 8 MiB (the kernel log, the start of the dump) at full
    // speed, then one byte per second: the plain copy (1.8 GB, far more than the capture
    // kernel's dirty-page limit) stalls in the kernel's dirty-page throttle without an error,
    // waking now and then. The stall watchdog must end the capture after `stall_timeout`;
    // without it the guest would hang until crash-test's own timeout.
    let out = artifacts("stuck-target");
    let (ok, stdout, stderr) = run(Command::new(rkdump_bin())
        .arg("crash-test")
        .arg("--out")
        .arg(&out)
        .arg("--throttle-target")
        .arg("1")
        .arg("--throttle-burst")
        .arg("8388608")
        .arg("--config-line=stall_timeout 15")
        .arg("--config-line=core_collector cp")
        .arg("--config-line=failure_action poweroff")
        .arg("--timeout")
        .arg("300"));
    eprintln!("{stderr}{stdout}");
    assert!(!ok, "crash-test claimed a dump on a stuck target");
    assert!(
        stderr.contains("did not produce a complete vmcore"),
        "not the no-dump error (a hang ends in a timeout):\n{stderr}"
    );
    assert!(stderr.contains("guest exited"), "the guest did not end by itself:\n{stderr}");
    let console = std::fs::read_to_string(out.join("console.log")).unwrap();
    let line = console
        .lines()
        .find(|l| l.contains("made no progress for"))
        .unwrap_or_else(|| panic!("no stall message in the console log:\n{console}"));
    assert!(line.contains("saving vmcore made no progress for 15 s"), "{line}");
    assert!(line.contains("poweroff without sync"), "{line}");
    assert!(!console.contains("capture complete"), "a capture claimed complete:\n{console}");
}

/// Makes `<root>/lib/modules/<release>` holding `.ko.xz` copies of `modules` (paths relative to
/// the modules dir) and index files rewritten to name them, as xz-module distributions ship them.
fn xz_module_tree(root: &Path, src: &Path, modules: &[String]) {
    let release = src.file_name().unwrap();
    let dst = root.join("lib/modules").join(release);
    std::fs::create_dir_all(&dst).unwrap();
    for index in ["modules.dep", "modules.order"] {
        let text = std::fs::read_to_string(src.join(index)).unwrap();
        let rewritten: String = text
            .lines()
            .map(|l| {
                l.split(' ')
                    .map(|w| w.replace(".ko:", ".ko.xz:").replace(".ko", ".ko.xz").replace(".ko.xz.xz", ".ko.xz"))
                    .collect::<Vec<_>>()
                    .join(" ")
                    + "\n"
            })
            .collect();
        std::fs::write(dst.join(index), rewritten).unwrap();
    }
    for index in ["modules.alias", "modules.softdep", "modules.builtin", "modules.builtin.modinfo"] {
        if src.join(index).exists() {
            std::fs::copy(src.join(index), dst.join(index)).unwrap();
        }
    }
    for m in modules {
        let to = dst.join(format!("{m}.xz"));
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        let out = Command::new("xz").args(["--check=crc32", "-c"]).arg(src.join(m)).output().unwrap();
        assert!(out.status.success(), "xz {m}");
        std::fs::write(&to, out.stdout).unwrap();
    }
}

#[test]
#[ignore = "boots QEMU; run by `make test`"]
fn xz_compressed_modules_boot_and_capture() {
    let (base, bin, kernel) = setup("xz-modules");
    // The modules a normal image for the crash-test target holds.
    let conf = base.join("kdump.conf");
    std::fs::write(&conf, "ext4 UUID=11111111-2222-3333-4444-555555555555\nextra_modules virtio_blk virtio_pci\n")
        .unwrap();
    let plain = base.join("plain.img");
    let (ok, _, err) = run(Command::new(&bin)
        .arg("build")
        .arg("--config")
        .arg(&conf)
        .arg("--kernel-release")
        .arg(&kernel.release)
        .arg("--output")
        .arg(&plain));
    assert!(ok, "{err}");
    let (ok, listing, err) = run(Command::new(&bin).arg("build").arg("--list").arg(&plain));
    assert!(ok, "{err}");
    let prefix = format!("/lib/modules/{}/", kernel.release);
    let modules: Vec<String> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .filter_map(|p| p.strip_prefix(&prefix))
        .filter(|p| p.ends_with(".ko"))
        .map(str::to_string)
        .collect();
    assert!(modules.iter().any(|m| m.ends_with("virtio_blk.ko")), "{listing}");
    let root = base.join("root");
    xz_module_tree(&root, &kernel.modules, &modules);

    let out = base.join("run");
    let (ok, stdout, stderr) = run(Command::new(&bin)
        .arg("crash-test")
        .arg("--out")
        .arg(&out)
        .arg("--memory")
        .arg("1024")
        .arg("--build-root")
        .arg(&root)
        .arg("--build-arg=--compression=xz"));
    eprintln!("{stderr}{stdout}");
    assert!(ok, "crash-test with xz modules failed");
    // The image really carried xz modules, and the init loaded every one of them.
    let (ok, listing, _) = run(Command::new(&bin).arg("build").arg("--list").arg(out.join("capture.img")));
    assert!(ok);
    let xz = listing.lines().filter(|l| l.ends_with(".ko.xz")).count();
    assert_eq!(xz, modules.len(), "{listing}");
    let console = std::fs::read_to_string(out.join("console.log")).unwrap();
    assert!(console.contains(&format!("modules: {} loaded", modules.len())), "{console}");
    assert!(console.contains(" 0 failed"), "{console}");
    let dump = summary_dump_dir(&stdout);
    assert!(dump.join("vmcore").exists());
    // No core_collector line: the default collector (zstd at -d 31, identical pages stored
    // once), and crash opens what it wrote.
    assert!(console.contains("collector kdump 31 zstd"), "{console}");
    let release = summary_value(&stdout, "kernel:").expect("kernel line").to_string();
    let sys = crash_cmds(&debug_vmlinux(&release), &dump.join("vmcore"), "sys");
    assert!(
        sys.contains("sysrq triggered crash"),
        "crash sys:
{sys}"
    );
}

#[test]
#[ignore = "boots QEMU; run by `make test`"]
fn capture_image_on_a_normal_boot_says_so_and_reboots() {
    let (base, bin, kernel) = setup("not-a-capture-boot");
    let conf = base.join("kdump.conf");
    std::fs::write(&conf, "ext4 UUID=11111111-2222-3333-4444-555555555555\nextra_modules virtio_blk\n").unwrap();
    let img = base.join("capture.img");
    let (ok, _, err) = run(Command::new(&bin)
        .arg("build")
        .arg("--config")
        .arg(&conf)
        .arg("--kernel-release")
        .arg(&kernel.release)
        .arg("--output")
        .arg(&img));
    assert!(ok, "{err}");
    // Boot the capture image as an ordinary initramfs: there is no /proc/vmcore.
    let console = base.join("console.log");
    let mut q = rkdump_qemu::QemuCommand::new("qemu-system-x86_64");
    q.memory_mib(512)
        .smp(1)
        .cpu("max")
        .kernel(&kernel.image)
        .initrd(&img)
        .append("console=ttyS0 panic=1")
        .serial_file(&console);
    let mut child = q.command().stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("qemu");
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if start.elapsed() > std::time::Duration::from_secs(300) {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let log = std::fs::read_to_string(&console).unwrap_or_default();
    assert!(status.is_some(), "the guest hung instead of rebooting:\n{log}");
    assert!(log.contains("not a capture boot"), "{log}");
    assert!(log.contains("rkdump: rebooting") || log.contains("reboot: Restarting"), "{log}");
    assert!(!log.contains("Attempted to kill init"), "{log}");
}

/// kdump-utils' default `core_collector makedumpfile -l --message-level 7 -d 31`, honoured at
/// capture time: a filtered LZO kdump-compressed dump that crash and makedumpfile open.
#[test]
#[ignore = "boots QEMU; run by `make test`"]
fn filtered_capture_with_the_kdump_utils_default_collector() {
    let out = artifacts("filtered");
    let bin = rkdump_bin();
    let (ok, stdout, stderr) = run(Command::new(&bin)
        .arg("crash-test")
        .arg("--out")
        .arg(&out)
        .arg("--config-line=core_collector makedumpfile -l --message-level 7 -d 31"));
    eprintln!("{stderr}{stdout}");
    assert!(ok, "crash-test failed");
    let release = summary_value(&stdout, "kernel:").expect("kernel line").to_string();
    let dump_dir = summary_dump_dir(&stdout);
    let vmcore = dump_dir.join("vmcore");
    let head = std::fs::read(&vmcore).expect("vmcore");
    assert!(head.starts_with(b"KDUMP   "), "not a kdump-compressed file");
    // -d 31 of a 2 GiB guest keeps a few hundred MiB at most (the unfiltered copy is 1.8 GiB).
    let size = std::fs::metadata(&vmcore).unwrap().len();
    assert!(size < 400 << 20, "filtered dump is {size} bytes");
    let console = std::fs::read_to_string(out.join("console.log")).unwrap();
    assert!(console.contains("collector kdump 31 lzo"), "{console}");

    let sys = crash_cmds(&debug_vmlinux(&release), &vmcore, "sys");
    assert!(sys.contains("sysrq triggered crash"), "crash sys:\n{sys}");
    // Level 16 left out the crashed kernel's per-CPU free pages too, and said how many.
    let percpu: u64 = console
        .lines()
        .find_map(|l| l.split(" free per-CPU)").next().filter(|s| s.len() < l.len())?.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no per-CPU free count in the capture's summary:\n{console}"));
    assert!(percpu > 0, "no per-CPU free pages left out");
    // drgn (libkdumpfile) unwinds the crashed thread from the dump written in the capture kernel.
    if let Some(drgn) = std::env::var_os("RKDUMP_DRGN") {
        let (ok, trace, err) = run(Command::new(drgn)
            .arg("-q")
            .arg("-c")
            .arg(&vmcore)
            .arg("-s")
            .arg(debug_vmlinux(&release))
            .arg("-e")
            .arg("print(prog.crashed_thread().stack_trace())"));
        assert!(ok && trace.contains("sysrq_handle_crash"), "drgn on our dump:\n{trace}{err}");
    } else {
        eprintln!("SKIPPED (drgn part): RKDUMP_DRGN is not set");
    }
    // makedumpfile reads our dump's kernel log, and so do we, identically.
    let theirs = out.join("mdf-dmesg.txt");
    let (ok, _, err) = run(Command::new("makedumpfile").arg("--dump-dmesg").arg(&vmcore).arg(&theirs));
    assert!(ok, "makedumpfile --dump-dmesg on our dump: {err}");
    let (ok, ours, err) = run(Command::new(&bin).arg("dmesg").arg("--format").arg("makedumpfile-1.7.2").arg(&vmcore));
    assert!(ok, "{err}");
    assert!(ours.as_bytes() == std::fs::read(&theirs).unwrap(), "rkdump dmesg differs from makedumpfile --dump-dmesg");
    // The log saved at capture time is the one in the dump.
    let (ok, log, _) = run(Command::new(&bin).arg("dmesg").arg(&vmcore));
    assert!(ok);
    assert_eq!(log, std::fs::read_to_string(dump_dir.join("vmcore-dmesg.txt")).unwrap());
    let (ok, info, err) = run(Command::new(&bin).arg("info").arg("--json").arg(&vmcore));
    assert!(ok, "{err}");
    assert!(info.contains("\"format\": \"kdump-compressed\""), "{info}");
}

/// `-d 1` keeps page cache and free pages: identical pages (copies of files, stale copies in
/// free memory) are stored once, read from `/proc/vmcore` in the capture kernel, and the dump
/// still opens in crash and makedumpfile.
#[test]
#[ignore = "boots QEMU; run by `make test`"]
fn capture_at_dump_level_1_stores_identical_pages_once() {
    let out = artifacts("dedup");
    let bin = rkdump_bin();
    let (ok, stdout, stderr) = run(Command::new(&bin)
        .arg("crash-test")
        .arg("--out")
        .arg(&out)
        .arg("--config-line=core_collector makedumpfile -l -d 1"));
    eprintln!("{stderr}{stdout}");
    assert!(ok, "crash-test failed");
    let release = summary_value(&stdout, "kernel:").expect("kernel line").to_string();
    let dump_dir = summary_dump_dir(&stdout);
    let vmcore = dump_dir.join("vmcore");
    let console = std::fs::read_to_string(out.join("console.log")).unwrap();
    assert!(console.contains("collector kdump 1 lzo"), "{console}");
    let shared: u64 = console
        .find(" pages identical to an earlier page share its copy")
        .and_then(|at| console[..at].rsplit(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no shared-page count in the capture log:\n{console}"));
    assert!(shared > 1000, "only {shared} pages shared at -d 1");
    let sys = crash_cmds(&debug_vmlinux(&release), &vmcore, "sys");
    assert!(sys.contains("sysrq triggered crash"), "crash sys:\n{sys}");
    let theirs = out.join("mdf-dmesg.txt");
    let (ok, _, err) = run(Command::new("makedumpfile").arg("--dump-dmesg").arg(&vmcore).arg(&theirs));
    assert!(ok, "makedumpfile --dump-dmesg on our dump: {err}");
    let (ok, ours, err) = run(Command::new(&bin).arg("dmesg").arg("--format").arg("makedumpfile-1.7.2").arg(&vmcore));
    assert!(ok, "{err}");
    assert!(ours.as_bytes() == std::fs::read(&theirs).unwrap(), "rkdump dmesg differs from makedumpfile --dump-dmesg");
    // makedumpfile re-filters it, reading every kept page through the shared descriptors.
    let refiltered = out.join("refiltered");
    let _ = std::fs::remove_file(&refiltered);
    let (ok, _, err) = run(Command::new("makedumpfile").args(["-l", "-d", "31"]).arg(&vmcore).arg(&refiltered));
    assert!(ok, "makedumpfile -d 31 of our -d 1 dump: {err}");
    let sys = crash_cmds(&debug_vmlinux(&release), &refiltered, "sys");
    assert!(sys.contains("sysrq triggered crash"), "crash sys on the re-filtered dump:\n{sys}");
}

/// `rkdump estimate` on the capture image of a first run gives a reservation that a second run
/// captures with: the kernel, image and modules measured here, the constants calibrated in
/// QEMU (BENCHMARKS.md). The capture kernel reports the init's peak memory, which must stay
/// under the estimate's allowance for it.
#[test]
#[ignore = "boots QEMU; run by `make test`"]
fn estimated_reservation_is_enough_for_a_capture() {
    let first = artifacts("estimate-first");
    let (ok, stdout, stderr) = run(Command::new(rkdump_bin()).arg("crash-test").arg("--out").arg(&first));
    eprintln!("{stderr}{stdout}");
    assert!(ok, "first crash-test failed");
    let release = summary_value(&stdout, "kernel:").expect("kernel line").to_string();
    let (ck, mib) = estimated_crashkernel(
        &rkdump_bin(),
        Path::new(&format!("/boot/vmlinuz-{release}")),
        &first.join("capture.img"),
    );
    // A small image needs far less than kdump-utils' default for 1-4 GiB machines (192M).
    assert!((96..=160).contains(&mib), "recommended {ck}");

    let out = artifacts("estimate");
    let (ok, stdout, stderr) =
        run(Command::new(rkdump_bin()).arg("crash-test").arg("--out").arg(&out).arg("--crashkernel").arg(&ck));
    eprintln!("{stderr}{stdout}");
    assert!(ok, "crash-test with crashkernel={ck} failed");
    let console = std::fs::read_to_string(out.join("console.log")).unwrap();
    assert!(console.contains(&format!("crash reservation: {mib} MiB")), "{console}");
    let line = console.lines().find(|l| l.contains("rkdump: capture complete")).expect("capture complete line");
    let peak: f64 = line
        .split("peak memory ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no peak memory in: {line}"));
    assert!(peak > 1.0 && peak < 16.0, "{line}");
    let vmcore = summary_dump_dir(&stdout).join("vmcore");
    assert!(vmcore.exists());
}

/// The `crashkernel=` value `rkdump estimate` recommends for `kernel` and `initrd` dumping a
/// 2 GiB guest (`96M`), and the same in MiB.
fn estimated_crashkernel(bin: &Path, kernel: &Path, initrd: &Path) -> (String, u64) {
    let (ok, est, err) = run(Command::new(bin)
        .arg("estimate")
        .arg("--kernel")
        .arg(kernel)
        .arg("--initrd")
        .arg(initrd)
        .args(["--memory", "2048"]));
    eprintln!("{err}{est}");
    assert!(ok, "rkdump estimate failed: {err}");
    let ck = summary_value(&est, "recommended:")
        .and_then(|v| v.strip_prefix("crashkernel="))
        .expect("recommended line")
        .to_string();
    let mib = ck.trim_end_matches('M').parse().expect("a size in MiB");
    (ck, mib)
}

/// `rkdump build --config CONF --kernel-release R --output IMG`, which must succeed; its stdout.
fn build_from(bin: &Path, conf: &Path, release: &str, img: &Path) -> String {
    let (ok, built, err) = run(Command::new(bin)
        .arg("build")
        .arg("--config")
        .arg(conf)
        .arg("--kernel-release")
        .arg(release)
        .arg("--output")
        .arg(img));
    eprintln!("{err}{built}");
    assert!(ok, "rkdump build of {} failed", conf.display());
    built
}

/// `rkdump crash-test` of the image `img` on the disk `disk` (and `extra` arguments), which
/// must succeed; its stdout and the console log.
fn crash_test_given(bin: &Path, out: &Path, img: &Path, disk: &Path, extra: &[&str]) -> (String, String) {
    let (ok, stdout, stderr) = run(Command::new(bin)
        .arg("crash-test")
        .arg("--out")
        .arg(out)
        .arg("--initrd")
        .arg(img)
        .arg("--target-disk")
        .arg(disk)
        .args(extra));
    eprintln!("{stderr}{stdout}");
    assert!(ok, "crash-test of {} on {} failed", img.display(), disk.display());
    let console = std::fs::read_to_string(out.join("console.log")).unwrap();
    (stdout, console)
}

/// A kdump-compressed `vmcore` that crash opens as the sysrq crash of `release`.
fn assert_sysrq_dump(release: &str, vmcore: &Path) {
    assert!(
        std::fs::read(vmcore).expect("vmcore").starts_with(b"KDUMP   "),
        "{} is not kdump-compressed",
        vmcore.display()
    );
    let sys = crash_cmds(&debug_vmlinux(release), vmcore, "sys");
    assert!(sys.contains("sysrq triggered crash"), "crash sys:\n{sys}");
}

/// A new sparse 3 GiB ext4 disk image `base/name` with filesystem UUID `uuid`.
fn ext4_disk(base: &Path, name: &str, uuid: &str) -> PathBuf {
    let disk = base.join(name);
    std::fs::File::create(&disk).unwrap().set_len(3 << 30).unwrap();
    let (ok, _, err) = run(Command::new("mkfs.ext4").args(["-q", "-F", "-U", uuid]).arg(&disk));
    assert!(ok, "mkfs.ext4: {err}");
    disk
}

/// Removes a directory tree when dropped.
struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Unmounts a directory when dropped (also when an assertion fails while it is mounted).
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// kdump-utils' default `kdump.conf` names no target: the dump goes to the filesystem holding
/// `path`. Here that filesystem is an ext4 disk image mounted through a loop device: `rkdump
/// build` finds it in the real mount table and sysfs and names it by its UUID, with the
/// directory's place inside it, and the capture kernel finds that disk and writes the dump
/// there. The same configuration has `kdump_pre` and `kdump_post` scripts run by the build
/// machine's dynamic `/bin/sh`, and `extra_bins /bin/ls /bin/sleep`: the capture runs them with
/// the loader and libraries the build found. The post hook then hangs: `hook_timeout 10` kills
/// it and the capture goes on to its final action.
#[test]
#[ignore = "boots QEMU; run by `make test`"]
fn capture_without_a_target_line_goes_to_the_filesystem_holding_path() {
    let (base, bin, kernel) = setup("path-target");
    let uuid = "5d1c4a52-9b0e-4c55-8f43-1d2a3b4c5d6e";
    let disk = ext4_disk(&base, "disk.img", uuid);
    let mnt = base.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let (ok, _, err) = run(Command::new("mount").arg("-o").arg("loop").arg(&disk).arg(&mnt));
    assert!(
        ok,
        "mounting an ext4 image through a loop device (root and loop devices needed, as `make test` has): {err}"
    );
    let mounted = Unmount(mnt.clone());
    std::fs::create_dir_all(mnt.join("srv/crash")).unwrap();
    // Hooks keep their path in the image, and the capture mounts a tmpfs over /tmp (where a
    // clone of the workspace may live): keep them elsewhere.
    let hooks = PathBuf::from(format!("/var/tmp/rkdump-e2e-hooks-{}", std::process::id()));
    std::fs::create_dir_all(&hooks).unwrap();
    let _hooks_gone = RemoveDir(hooks.clone());
    let hook = |name: &str, text: &str| {
        use std::os::unix::fs::PermissionsExt;
        let p = hooks.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    };
    let pre = hook("pre.sh", "#!/bin/sh\necho \"rkdump-e2e: kdump_pre in $RKDUMP_DUMP_DIR\"\necho ran > \"$RKDUMP_DUMP_DIR/kdump_pre-ran\"\n");
    let post = hook(
        "post.sh",
        "#!/bin/sh\necho \"rkdump-e2e: kdump_post status $1\"\nls -1 \"$RKDUMP_DUMP_DIR\"\nsleep 600\n",
    );
    let conf = base.join("kdump.conf");
    std::fs::write(
        &conf,
        format!(
            "path {}/srv/crash\nextra_modules virtio_blk virtio_pci\ncore_collector makedumpfile -l --message-level 7 -d 31\nkdump_pre {}\nkdump_post {}\nextra_bins /bin/ls /bin/sleep\nhook_timeout 10\n",
            mnt.display(),
            pre.display(),
            post.display()
        ),
    )
    .unwrap();
    let img = base.join("capture.img");
    let built = build_from(&bin, &conf, &kernel.release, &img);
    assert!(built.contains(&format!("target: ext4 UUID={uuid} (/dev/loop")), "{built}");
    assert!(built.contains("dump directory /srv/crash on it"), "{built}");
    assert!(built.contains("/bin/sh (interpreter of") && built.contains("/bin/ls (extra_bins)"), "{built}");
    assert!(built.contains("libc.so.6 (library of"), "{built}");
    drop(mounted);

    let (stdout, console) = crash_test_given(&bin, &base.join("run"), &img, &disk, &["--dump-path", "/srv/crash"]);
    assert!(console.contains(&format!("target ext4 UUID={uuid}")), "{console}");
    assert!(console.contains("rkdump-e2e: kdump_pre in /kdumproot/srv/crash/127.0.0.1-"), "{console}");
    assert!(console.contains("rkdump-e2e: kdump_post status 0"), "{console}");
    assert!(!console.contains("error while loading shared libraries"), "{console}");
    // `ls` of the dump directory by the post hook, one name per line.
    assert!(console.lines().any(|l| l.trim_end_matches('\r') == "vmcore-dmesg.txt"), "{console}");
    assert!(
        console.contains(&format!("kdump_post {} did not finish within 10 s and was killed", post.display())),
        "{console}"
    );
    let dump_dir = summary_dump_dir(&stdout);
    assert_eq!(std::fs::read_to_string(dump_dir.join("kdump_pre-ran")).unwrap(), "ran\n");
    assert_sysrq_dump(&kernel.release, &dump_dir.join("vmcore"));
    let _ = std::fs::remove_file(&disk);
}

/// kdump.conf `raw /dev/vda`: the capture writes a flattened stream onto the device itself
/// (over whatever it held before), and `rkdump save-raw` saves it at the "next boot" into the
/// same file `makedumpfile -R` makes of the stream, with the kernel log beside it; crash opens
/// it, and the device's header is cleared so the dump is not saved twice.
#[test]
#[ignore = "boots QEMU; run by `make test`"]
fn raw_target_capture_is_saved_by_save_raw() {
    let (base, bin, kernel) = setup("raw-target");
    let conf = base.join("kdump.conf");
    // rkdump's --keep-percpu-free: makedumpfile's page selection, per-CPU free pages kept.
    std::fs::write(&conf, "raw /dev/vda\nextra_modules virtio_blk virtio_pci\ncore_collector makedumpfile -F -l --message-level 7 -d 31 --keep-percpu-free\n").unwrap();
    let img = base.join("capture.img");
    let built = build_from(&bin, &conf, &kernel.release, &img);
    assert!(
        built.contains("target: raw device /dev/vda") && built.contains("collector flat 31 lzo keep_percpu_free"),
        "{built}"
    );
    // A disk whose first MiB holds something else (an earlier life of the device).
    let disk = base.join("disk.raw");
    let f = std::fs::File::create(&disk).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &vec![0xAB; 1 << 20], 0).unwrap();
    f.set_len(3 << 30).unwrap();
    drop(f);

    let (_, console) = crash_test_given(&bin, &base.join("run"), &img, &disk, &["--no-collect"]);
    assert!(console.contains("rkdump: saved the dump to /dev/vda in"), "{console}");
    assert!(console.contains(" free, 0 free per-CPU), "), "{console}");
    assert!(console.contains("capture complete"), "{console}");

    // makedumpfile -R of the stream is the reference for what save-raw must write.
    let reference = base.join("vmcore.mdf");
    let status = Command::new("makedumpfile")
        .arg("-R")
        .arg(&reference)
        .stdin(std::fs::File::open(&disk).unwrap())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "makedumpfile -R on the raw device failed");
    let saved = base.join("saved");
    let (ok, said, err) = run(Command::new(&bin).arg("save-raw").arg(&disk).arg("--path").arg(&saved));
    eprintln!("{err}{said}");
    assert!(ok, "save-raw failed");
    let dir = std::fs::read_dir(&saved).unwrap().next().unwrap().unwrap().path();
    let vmcore = dir.join("vmcore");
    assert!(
        std::fs::read(&vmcore).unwrap() == std::fs::read(&reference).unwrap(),
        "save-raw and makedumpfile -R differ"
    );
    assert_sysrq_dump(&kernel.release, &vmcore);
    let log = std::fs::read_to_string(dir.join("vmcore-dmesg.txt")).unwrap();
    assert!(log.contains("sysrq triggered crash"), "{log}");
    // Saved once: the header is cleared.
    let (ok, said, _) = run(Command::new(&bin).arg("save-raw").arg(&disk).arg("--path").arg(&saved));
    assert!(ok && said.contains("no dump on"), "{said}");
    let _ = std::fs::remove_file(&disk);
}

/// `ext4 PARTUUID=...`: a GPT-partitioned disk (partitioned by sfdisk, which also names the
/// partition's GUID), the filesystem in its first partition; the capture init finds the
/// partition through the partition table and dumps into it.
#[test]
#[ignore = "boots QEMU; run by `make test`"]
fn partuuid_target_on_a_gpt_disk() {
    let (base, bin, kernel) = setup("partuuid");
    let disk = base.join("disk.img");
    std::fs::File::create(&disk).unwrap().set_len(3 << 30).unwrap();
    let sectors = (3u64 << 30) / 512 - 2 * 2048;
    let mut sfdisk = Command::new("sfdisk")
        .arg("-q")
        .arg(&disk)
        .stdin(Stdio::piped())
        .spawn()
        .expect("sfdisk (make deps installs fdisk)");
    std::io::Write::write_all(
        &mut sfdisk.stdin.take().unwrap(),
        format!("label: gpt\nstart=2048, size={sectors}, type=L\n").as_bytes(),
    )
    .unwrap();
    assert!(sfdisk.wait().unwrap().success());
    let (ok, part, err) = run(Command::new("sfdisk").arg("--part-uuid").arg(&disk).arg("1"));
    assert!(ok, "{err}");
    let partuuid = part.trim().to_ascii_lowercase();
    let (ok, _, err) = run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-E", "offset=1048576"])
        .arg(&disk)
        .arg(format!("{}k", sectors / 2)));
    assert!(ok, "mkfs.ext4: {err}");
    let conf = base.join("kdump.conf");
    std::fs::write(&conf, format!("ext4 PARTUUID={partuuid}\nextra_modules virtio_blk virtio_pci\ncore_collector makedumpfile -l --message-level 7 -d 31\n")).unwrap();
    let img = base.join("capture.img");
    build_from(&bin, &conf, &kernel.release, &img);
    let (_, console) = crash_test_given(&bin, &base.join("run"), &img, &disk, &["--no-collect"]);
    assert!(console.contains(&format!("found target PARTUUID={partuuid} at /dev/vda1")), "{console}");
    assert!(console.contains("capture complete"), "{console}");
    // Read the dump back out of the partition.
    let fs = format!("{}?offset=1048576", disk.display());
    let (ok, listing, err) = run(Command::new("debugfs").arg("-R").arg("ls -p /var/crash").arg(&fs));
    assert!(ok, "{err}");
    let name = listing
        .lines()
        .filter_map(|l| l.split('/').nth(5))
        .find(|n| n.starts_with("127.0.0.1-"))
        .expect("a dump directory");
    let (ok, _, err) =
        run(Command::new("debugfs").arg("-R").arg(format!("rdump /var/crash/{name} {}", base.display())).arg(&fs));
    assert!(ok, "{err}");
    assert_sysrq_dump(&kernel.release, &base.join(name).join("vmcore"));
    let _ = std::fs::remove_file(&disk);
}

/// Detaches a loop device when dropped.
struct Detach(String);

impl Drop for Detach {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

/// `failure_action dump_to_rootfs`: the target never appears, so the capture dumps to the
/// build machine's root filesystem instead. The "root filesystem" is an ext4 disk image
/// behind a loop device, named in the mount table the build reads (`--mountinfo`); it is the
/// disk the guest gets.
#[test]
#[ignore = "boots QEMU; run by `make test`"]
fn dump_to_rootfs_when_the_target_is_missing() {
    let (base, bin, kernel) = setup("dump-to-rootfs");
    let uuid = "3f1e6a2c-8d4b-4a55-9e0f-7c2b1d0a9e88";
    let disk = ext4_disk(&base, "rootfs.img", uuid);
    let (ok, loopdev, err) = run(Command::new("losetup").arg("-f").arg("--show").arg(&disk));
    assert!(ok, "losetup (root and loop devices needed, as `make test` has): {err}");
    let loopdev = loopdev.trim().to_string();
    let attached = Detach(loopdev.clone());
    let name = loopdev.trim_start_matches("/dev/");
    let devnum = std::fs::read_to_string(format!("/sys/class/block/{name}/dev")).unwrap();
    let mountinfo = base.join("mountinfo");
    std::fs::write(&mountinfo, format!("1 0 {} / / rw - ext4 {loopdev} rw\n", devnum.trim())).unwrap();
    let conf = base.join("kdump.conf");
    std::fs::write(&conf, "ext4 LABEL=nowhere\ndevice_timeout 3\nextra_modules virtio_blk virtio_pci\ncore_collector makedumpfile -l --message-level 7 -d 31\nfailure_action dump_to_rootfs\n").unwrap();
    let img = base.join("capture.img");
    let (ok, built, err) = run(Command::new(&bin)
        .arg("build")
        .arg("--config")
        .arg(&conf)
        .arg("--kernel-release")
        .arg(&kernel.release)
        .arg("--mountinfo")
        .arg(&mountinfo)
        .arg("--output")
        .arg(&img));
    eprintln!("{err}{built}");
    assert!(ok, "rkdump build with dump_to_rootfs failed");
    drop(attached);
    let (ok, listing, err) = run(Command::new(&bin).arg("build").arg("--list").arg(&img));
    assert!(ok, "{err}");
    assert!(listing.contains("etc/rkdump/plan"), "{listing}");

    let (stdout, console) = crash_test_given(&bin, &base.join("run"), &img, &disk, &[]);
    assert!(console.contains("target LABEL=nowhere did not appear within 3 s"), "{console}");
    assert!(console.contains(&format!("dump_to_rootfs: saving the dump to ext4 UUID={uuid}, /var/crash")), "{console}");
    assert!(console.contains("dump_to_rootfs: dump saved; reboot"), "{console}");
    let dump_dir = summary_dump_dir(&stdout);
    assert_sysrq_dump(&kernel.release, &dump_dir.join("vmcore"));
    let _ = std::fs::remove_file(&disk);
}

/// A dedicated capture kernel. `rkdump kernel-config` writes the fragment for Debian's kernel
/// source from a capture image; merged onto `tinyconfig`, the kernel's own `olddefconfig`
/// keeps every option of it (`--check`, which fails on plain `tinyconfig`), also with real
/// machines' storage drivers added (NVMe, AHCI, USB storage, SCSI HBAs, xfs, btrfs); the kernel builds,
/// and Debian's kernel kexecs into it on a crash. It has no module support: the init says so
/// once, finds the virtio disk through the built-in drivers, and the dump opens in crash; an
/// image built for it with `--no-modules` captures without that detour. Its bzImage asks for a
/// fraction of the memory Debian's does at boot.
#[test]
#[ignore = "builds a kernel and boots QEMU; run by `make test`"]
fn dedicated_capture_kernel_from_the_fragment() {
    let (base, bin, kernel) = setup("capture-kernel");
    let tarball = std::fs::read_dir("/usr/src")
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("linux-source-")))
        .filter(|p| p.to_string_lossy().ends_with(".tar.xz"))
        .max()
        .expect("/usr/src/linux-source-*.tar.xz missing: run `make deps`");
    let (ok, _, err) = run(Command::new("tar").arg("-xf").arg(&tarball).arg("-C").arg(&base));
    assert!(ok, "unpacking {}: {err}", tarball.display());
    let stem = tarball.file_name().unwrap().to_string_lossy().trim_end_matches(".tar.xz").to_string();
    let src = base.join(stem);
    let obj = base.join("obj");
    std::fs::create_dir_all(&obj).unwrap();

    let uuid = "7e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b";
    let disk = ext4_disk(&base, "disk.img", uuid);
    let conf = base.join("kdump.conf");
    std::fs::write(&conf, format!("ext4 UUID={uuid}\npath /var/crash\nextra_modules virtio_blk virtio_pci\n")).unwrap();
    let img = base.join("capture.img");
    build_from(&bin, &conf, &kernel.release, &img);

    let frag = base.join("capture.config");
    let kernel_config = |extra: &[&std::ffi::OsStr]| {
        run(Command::new(&bin).arg("kernel-config").arg("--source").arg(&src).arg("--initrd").arg(&img).args(extra))
    };
    let (ok, _, err) = kernel_config(&["-o".as_ref(), frag.as_os_str()]);
    assert!(ok, "rkdump kernel-config: {err}");
    let text = std::fs::read_to_string(&frag).unwrap();
    for opt in
        ["CONFIG_PROC_VMCORE=y", "CONFIG_VIRTIO_BLK=y", "CONFIG_VIRTIO_PCI=y", "CONFIG_EXT4_FS=y", "CONFIG_RD_ZSTD=y"]
    {
        assert!(text.contains(opt), "{opt} missing from the fragment:\n{text}");
    }
    // `make` in an object directory of the source; tinyconfig there with a fragment merged in.
    let make_in = |dir: &Path, args: &[&str]| {
        let (ok, out, err) =
            run(Command::new("make").arg("-C").arg(&src).arg(format!("O={}", dir.display())).args(args));
        assert!(ok, "make {args:?}: {err}\n{out}");
        out
    };
    let tiny_with = |dir: &Path, frag: &Path| {
        let config = dir.join(".config");
        let (ok, out, err) = run(Command::new(src.join("scripts/kconfig/merge_config.sh"))
            .arg("-m")
            .arg("-O")
            .arg(dir)
            .arg(&config)
            .arg(frag));
        assert!(ok, "merge_config.sh: {err}\n{out}");
        make_in(dir, &["olddefconfig"]);
        config
    };
    make_in(&obj, &["tinyconfig"]);
    // Plain tinyconfig lacks the kdump options: the check must say so and fail.
    let (ok, out, _) = kernel_config(&["--check".as_ref(), obj.join(".config").as_os_str()]);
    assert!(!ok && out.contains("CONFIG_PROC_VMCORE not set"), "{out}");
    let config = tiny_with(&obj, &frag);
    let (ok, out, err) = kernel_config(&["--check".as_ref(), config.as_os_str()]);
    assert!(ok && out.contains("options of the capture fragment are built in"), "{out}{err}");
    // Real machines' storage drivers too (USB storage's options sit in a file sourced inside
    // `if USB`), checked by the configurator alone, in a second object directory.
    let obj2 = base.join("obj-hw");
    std::fs::create_dir_all(&obj2).unwrap();
    let mut hw: Vec<&std::ffi::OsStr> = Vec::new();
    for m in ["nvme", "ahci", "sd_mod", "usb_storage", "xhci_pci", "virtio_scsi", "megaraid_sas", "xfs", "btrfs"] {
        hw.extend([std::ffi::OsStr::new("--module"), std::ffi::OsStr::new(m)]);
    }
    let frag2 = base.join("hw.config");
    let (ok, _, err) = kernel_config(&[hw.as_slice(), &["-o".as_ref(), frag2.as_os_str()]].concat());
    assert!(ok, "rkdump kernel-config --module ...: {err}");
    make_in(&obj2, &["tinyconfig"]);
    let config2 = tiny_with(&obj2, &frag2);
    let (ok, out, err) = kernel_config(&[hw.as_slice(), &["--check".as_ref(), config2.as_os_str()]].concat());
    assert!(ok && out.contains("options of the capture fragment are built in"), "{out}{err}");
    for opt in ["CONFIG_USB_STORAGE=y", "CONFIG_BLK_DEV_NVME=y", "CONFIG_SATA_AHCI=y", "CONFIG_XFS_FS=y"] {
        assert!(std::fs::read_to_string(&config2).unwrap().contains(opt), "{opt} not in {}", config2.display());
    }

    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    make_in(&obj, &[&format!("-j{jobs}"), "bzImage"]);
    let release = make_in(&obj, &["-s", "kernelrelease"]).trim().to_string();
    let bzimage = obj.join("arch/x86/boot/bzImage");

    let init_size = |k: &Path| -> f64 {
        let (ok, est, err) = run(Command::new(&bin).arg("estimate").arg("--kernel").arg(k).arg("--initrd").arg(&img));
        assert!(ok, "rkdump estimate: {err}");
        est.lines()
            .find(|l| l.contains("bzImage init_size"))
            .and_then(|l| l.split_whitespace().rev().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no init_size line in:\n{est}"))
    };
    let (small, debian) = (init_size(&bzimage), init_size(&kernel.image));
    eprintln!("bzImage init_size: {small} MiB for the capture kernel {release}, {debian} MiB for {}", kernel.release);
    assert!(small * 2.0 < debian, "{small} MiB against {debian} MiB");

    let bz = bzimage.to_string_lossy().to_string();
    let (stdout, console) = crash_test_given(&bin, &base.join("run"), &img, &disk, &["--capture-kernel", &bz]);
    assert!(console.contains(&format!("Linux version {release} ")), "the capture kernel did not boot:\n{console}");
    assert!(console.contains("this kernel cannot load modules (no module support)"), "{console}");
    assert!(console.contains("rkdump: capture complete"), "{console}");
    let dump_dir = summary_dump_dir(&stdout);
    assert_sysrq_dump(&kernel.release, &dump_dir.join("vmcore"));

    // An image made for it: no modules directory, no modules packed, nothing to skip.
    let (ok, built, err) = run(Command::new(&bin)
        .arg("build")
        .arg("--config")
        .arg(&conf)
        .args(["--kernel-release", &release, "--no-modules", "--output"])
        .arg(base.join("own.img")));
    assert!(ok && built.contains(&format!("kernel {release} (0 modules)")), "{err}{built}");
    // Captured with the reservation `rkdump estimate` gives this kernel and image: a third of
    // what Debian's kernel needs (96M), not Debian's kernel's runtime on top of its own.
    let (ck, mib) = estimated_crashkernel(&bin, &bzimage, &base.join("own.img"));
    assert!((32..=64).contains(&mib), "recommended {ck} for the dedicated kernel");
    let (stdout, console) = crash_test_given(
        &bin,
        &base.join("run-own"),
        &base.join("own.img"),
        &disk,
        &["--capture-kernel", &bz, "--crashkernel", &ck],
    );
    assert!(console.contains(&format!("crash reservation: {mib} MiB")), "{console}");
    assert!(console.contains(&format!("Linux version {release} ")), "{console}");
    assert!(!console.contains("cannot load modules") && !console.contains("rkdump: modules:"), "{console}");
    let dump_dir = summary_dump_dir(&stdout);
    assert_sysrq_dump(&kernel.release, &dump_dir.join("vmcore"));
    let _ = std::fs::remove_file(&disk);
    let _ = std::fs::remove_dir_all(&src);
    let _ = std::fs::remove_dir_all(&obj);
    let _ = std::fs::remove_dir_all(&obj2);
}
