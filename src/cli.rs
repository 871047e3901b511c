//! Command-line definitions and dispatch.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use crate::{kexec, workload};

/// rkdump: kdump capture images, vmcore filtering and crash tests, in one tool.
///
/// Exit status: 0 success, 1 failure (the message says what failed and what to do), 2 usage
/// error.
#[derive(Debug, Parser)]
#[command(name = "rkdump", version)]
pub struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Build the capture initramfs from kdump.conf for a kernel release (replaces mkdumprd).
    Build {
        /// kdump.conf to read.
        #[arg(long, default_value = "/etc/kdump.conf")]
        config: PathBuf,
        /// Kernel release whose modules go into the image; default: the running kernel.
        #[arg(long)]
        kernel_release: Option<String>,
        /// Build from another system's tree (modules in ROOT/lib/modules or ROOT/usr/lib/modules).
        #[arg(long)]
        root: Option<PathBuf>,
        /// Resolve the target device against this sysfs tree instead of /sys (tests).
        #[arg(long)]
        sysfs: Option<PathBuf>,
        /// Mount table to find the filesystem holding `path` in when kdump.conf has no target
        /// line, instead of /proc/self/mountinfo (tests).
        #[arg(long, value_name = "FILE")]
        mountinfo: Option<PathBuf>,
        /// The static capture init; default: `rkdump-init` next to this executable.
        #[arg(long)]
        init: Option<PathBuf>,
        /// Image compression: zstd, xz, gzip or none.
        #[arg(long, default_value = "zstd")]
        compression: String,
        /// Compression level (default: the builder's choice for size within the build budget).
        #[arg(long)]
        compression_level: Option<i32>,
        /// Where to write the image; default: /var/lib/rkdump/capture-R.img for the kernel
        /// release R (where `rkdump arm`, `check` and `estimate` look by default).
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
        /// List the contents of an existing image instead of building.
        #[arg(long, value_name = "IMG", conflicts_with = "output")]
        list: Option<PathBuf>,
        /// Pack no kernel modules, for a capture kernel with the target's drivers built in
        /// (one built from `rkdump kernel-config`); the release then needs no modules directory.
        #[arg(long)]
        no_modules: bool,
    },
    /// Load a capture kernel and image into the crash reservation (kexec_file_load, on crash).
    Arm {
        /// Capture kernel image (bzImage); default: /boot/vmlinuz-$(uname -r).
        #[arg(long)]
        kernel: Option<PathBuf>,
        /// Capture initramfs built by `rkdump build`; default: /var/lib/rkdump/capture-R.img for
        /// the kernel's release R, built from /etc/kdump.conf first when it is missing or older
        /// than the files it was built from (as kdumpctl start rebuilds).
        #[arg(long)]
        initrd: Option<PathBuf>,
        /// With the default image: never build it, arm what is there (or fail if nothing is).
        #[arg(long, conflicts_with = "initrd")]
        no_rebuild: bool,
        /// Extra capture kernel arguments, appended after the defaults
        /// (`irqpoll nr_cpus=1 reset_devices` and the running kernel's console= arguments).
        #[arg(long)]
        append: Option<String>,
        /// Replace the whole capture command line instead.
        #[arg(long, conflicts_with = "append")]
        cmdline: Option<String>,
    },
    /// Unload the capture kernel.
    Disarm,
    /// Show the crash reservation, whether a capture kernel is loaded, what `rkdump arm` loaded and whether that image is current (not older than the files it was built from).
    Status,
    /// Is this system ready to capture? Each problem with its fix; exit status 1 if any.
    ///
    /// Checks the capture kernel (a bzImage) and its .config (the options kdump needs), the
    /// capture image (built by `rkdump build`, for that kernel, in a compression the kernel
    /// unpacks), the crash reservation against what the capture needs (`rkdump estimate`),
    /// that kexec is enabled, lockdown, and that a capture kernel is loaded.
    Check {
        /// Capture kernel image; default: /boot/vmlinuz-$(uname -r).
        #[arg(long)]
        kernel: Option<PathBuf>,
        /// Capture image built by `rkdump build`; default: /var/lib/rkdump/capture-R.img of the
        /// kernel's release when it exists (else the image is not checked).
        #[arg(long)]
        initrd: Option<PathBuf>,
        /// The capture kernel's .config; default: /boot/config-R of the kernel's release.
        #[arg(long)]
        kernel_config: Option<PathBuf>,
    },
    /// Recommend a crashkernel= reservation for a capture kernel and image (kdumpctl estimate).
    ///
    /// Adds up what the capture takes: the kernel (its bzImage init_size), the image file and
    /// its unpacked files, the modules it loads, the kernel's runtime allocations and rkdump's
    /// own peak, which grows with the dumped machine's memory (at most 8 MiB more). The
    /// constants were calibrated in QEMU (see BENCHMARKS.md); confirm the result with a test
    /// crash, since some storage and network drivers allocate far more.
    Estimate {
        /// Capture image built by `rkdump build`; default: /var/lib/rkdump/capture-R.img of the
        /// kernel's release.
        #[arg(long)]
        initrd: Option<PathBuf>,
        /// Capture kernel image; default: /boot/vmlinuz-$(uname -r).
        #[arg(long)]
        kernel: Option<PathBuf>,
        /// Memory of the machine to be dumped, in MiB; default: this machine's (MemTotal).
        #[arg(long, value_name = "MIB")]
        memory: Option<u64>,
        /// CPUs of the capture kernel (its nr_cpus=; `rkdump arm` gives 1 unless told
        /// otherwise): each runs a compression thread, at most 4.
        #[arg(long, default_value_t = 1, value_name = "N")]
        capture_cpus: u64,
    },
    /// Write a minimal capture-kernel .config fragment for a kernel source tree: the kdump
    /// options and the drivers the capture image loads, built in.
    KernelConfig {
        /// Kernel source tree (its Makefiles and Kconfig files name the options).
        #[arg(long, value_name = "DIR")]
        source: PathBuf,
        /// Capture image whose modules and target filesystem the kernel must build in; default:
        /// /var/lib/rkdump/capture-R.img of the running kernel when it exists.
        #[arg(long, value_name = "IMG")]
        initrd: Option<PathBuf>,
        /// Another module to build in (repeatable), e.g. one the running kernel has built in.
        #[arg(long = "module", value_name = "NAME")]
        modules: Vec<String>,
        /// Check a .config made from the fragment (after `make olddefconfig`): list the
        /// fragment's options it does not build in, and fail if there are any.
        #[arg(long, value_name = "CONFIG")]
        check: Option<PathBuf>,
        /// Write the fragment here instead of standard output.
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Describe a dump: kernel release, crash time, CPUs, memory ranges, page classes.
    Info {
        /// Dump: ELF vmcore, /proc/vmcore, kdump-compressed or flattened file.
        vmcore: PathBuf,
        /// Machine-readable output (keys as in makedumpfile's --message-level 31 report).
        #[arg(long)]
        json: bool,
    },
    /// Print the crashed kernel's log from a dump (like vmcore-dmesg).
    Dmesg {
        /// Dump: ELF vmcore, /proc/vmcore, kdump-compressed or flattened file.
        dump: PathBuf,
        /// Output format: `vmcore-dmesg` (kexec-tools), `makedumpfile` (upstream
        /// `makedumpfile --dump-dmesg`, with caller ids) or `makedumpfile-1.7.2` (Debian 12's).
        #[arg(long, default_value = "vmcore-dmesg", value_parser = ["vmcore-dmesg", "makedumpfile", "makedumpfile-1.7.2"])]
        format: String,
    },
    /// Filter and compress a vmcore (makedumpfile, same flags).
    ///
    /// Input: an ELF vmcore, /proc/vmcore, a kdump-compressed or a flattened file. Output:
    /// kdump-compressed (default), ELF (-E) or flattened (-F). Exit status 1 with the reason on
    /// any failure; a partly written dump stays marked incomplete.
    Filter {
        /// Dump level: a mask of 1 zero, 2 cache, 4 private cache, 8 user, 16 free pages.
        #[arg(short = 'd', long = "dump-level", default_value_t = 31)]
        dump_level: u8,
        /// zlib compression.
        #[arg(short = 'c')]
        zlib: bool,
        /// LZO compression.
        #[arg(short = 'l')]
        lzo: bool,
        /// snappy compression.
        #[arg(short = 'p')]
        snappy: bool,
        /// zstd compression (the default when no codec is given).
        #[arg(short = 'z')]
        zstd: bool,
        /// Codec by name: zstd, lzo, zlib, snappy or none.
        #[arg(long)]
        codec: Option<String>,
        /// ELF output (makedumpfile -E).
        #[arg(short = 'E')]
        elf: bool,
        /// Flattened output (makedumpfile -F); to standard output when OUT is omitted.
        #[arg(short = 'F')]
        flattened: bool,
        /// Compression threads, the main thread included (it compresses between reading and
        /// writing); default: one per CPU, at most 4. The output is byte-identical for any
        /// number.
        #[arg(long)]
        num_threads: Option<usize>,
        /// Store a page identical to one already stored as a second descriptor of the earlier
        /// copy (kdump-compressed output from an ELF vmcore). Default: on with zstd, and with
        /// any codec when the dump level keeps page cache, user or free pages (so off only at
        /// -d 30 or 31 with -c, -l, -p or --codec none).
        #[arg(long, conflicts_with = "no_dedup")]
        dedup: bool,
        /// Store every page, even one identical to a page already stored.
        #[arg(long)]
        no_dedup: bool,
        /// Keep the free pages of the kernel's per-CPU lists, as makedumpfile does. By default
        /// dump level 16 leaves them out with the buddy allocator's free pages (the summary
        /// counts them as "free (per-CPU)").
        #[arg(long)]
        keep_percpu_free: bool,
        /// makedumpfile's message level, a mask: 1 the progress bar, 2 the closing lines (bytes
        /// written, time), 16 the report of pages per class; errors and warnings are always
        /// printed. Default: all of them (kdump-utils' lines give 7: no report).
        #[arg(long, value_parser = clap::value_parser!(u8).range(0..=31))]
        message_level: Option<u8>,
        /// Overwrite OUTPUT if it exists (makedumpfile -f); never the input itself.
        #[arg(short = 'f')]
        force: bool,
        /// Input dump.
        input: PathBuf,
        /// Output file (must not exist unless -f).
        output: Option<PathBuf>,
        // Last: its help heading applies to every argument after it.
        #[command(flatten)]
        ignored: crate::filter::IgnoredOptions,
    },
    /// Rearrange a flattened dump into a kdump-compressed file (makedumpfile -R).
    Unflatten {
        /// Flattened input file, or `-` for standard input.
        input: String,
        /// Output file (must not exist).
        output: PathBuf,
    },
    /// Save the dump a capture wrote onto a raw target device (kdump.conf `raw`) into a file (kdumpctl's save_raw; run it at boot, before arming)
    SaveRaw {
        /// The raw target device (or an image of it).
        device: PathBuf,
        /// Directory for the dump directory (`<path>/127.0.0.1-<date>/vmcore`).
        #[arg(long, default_value = "/var/crash")]
        path: PathBuf,
        /// Leave the dump on the device (by default its header is cleared once saved, so it is not saved twice).
        #[arg(long)]
        keep: bool,
    },
    /// Boot a kernel in QEMU, crash it with sysrq-c, capture it with rkdump, collect the dump.
    CrashTest {
        /// Kernel release to test (/boot/vmlinuz-R); default: the newest with modules.
        #[arg(long)]
        kernel_release: Option<String>,
        /// Output directory (must be empty or new).
        #[arg(long)]
        out: PathBuf,
        /// Guest memory in MiB.
        #[arg(long, default_value_t = 2048)]
        memory: u32,
        /// crashkernel= reservation for the guest.
        #[arg(long, default_value = "256M")]
        crashkernel: String,
        /// QEMU CPU model (`max,la57=off` for 4-level paging).
        #[arg(long, default_value = "max")]
        cpu: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 900)]
        timeout: u64,
        /// Do not attach the target disk (tests the missing-target timeout path).
        #[arg(long)]
        no_target: bool,
        /// Seconds the capture init waits for the target device.
        #[arg(long, default_value_t = 30)]
        device_timeout: u32,
        /// Extra kdump.conf line (repeatable).
        #[arg(long = "config-line")]
        config_lines: Vec<String>,
        /// Extra argument for `rkdump build` (repeatable), e.g. `--build-arg=--compression=xz`.
        #[arg(long = "build-arg", allow_hyphen_values = true)]
        build_args: Vec<String>,
        /// Module tree root passed to `rkdump build --root`.
        #[arg(long)]
        build_root: Option<PathBuf>,
        /// Static busybox for the guest's first stage.
        #[arg(long, default_value = "/bin/busybox")]
        busybox: PathBuf,
        /// Test this capture image (from `rkdump build`) instead of building one; its own plan
        /// names the target, which --target-disk must then hold.
        #[arg(long, value_name = "IMG", conflicts_with_all = ["config_lines", "build_args", "build_root"])]
        initrd: Option<PathBuf>,
        /// Attach this ext2/3/4 disk image as the target instead of a new, empty one; it keeps
        /// the dump.
        #[arg(long, value_name = "DISK")]
        target_disk: Option<PathBuf>,
        /// Directory on the target the dump is read back from (the image's `path`).
        #[arg(long, default_value = "/var/crash")]
        dump_path: String,
        /// Do not read the dump back (a raw target: `rkdump save-raw` reads it from --target-disk).
        #[arg(long, requires = "target_disk")]
        no_collect: bool,
        /// Capture with this kernel (a bzImage, e.g. one built from `rkdump kernel-config`'s
        /// fragment) instead of the tested kernel itself.
        #[arg(long, value_name = "BZIMAGE")]
        capture_kernel: Option<PathBuf>,
        /// Throttle the target disk's writes to this many bytes per second: a slow or stuck
        /// device (tests the stall watchdog, `stall_timeout` in kdump.conf).
        #[arg(long, value_name = "BYTES_PER_SEC", value_parser = clap::value_parser!(u64).range(1..))]
        throttle_target: Option<u64>,
        /// With --throttle-target: bytes the disk first takes at full speed (a device that
        /// stops part way through the dump).
        #[arg(long, value_name = "BYTES", requires = "throttle_target", default_value_t = 0)]
        throttle_burst: u64,
    },
    /// (internal) memory workload run inside the crash-test guest.
    #[command(hide = true)]
    CrashTestWorkload {
        #[arg(long)]
        anon_mib: usize,
        #[arg(long)]
        cache_mib: usize,
        #[arg(long)]
        cache_file: PathBuf,
        #[arg(long)]
        ready: PathBuf,
    },
}

fn list_image(img: &Path) -> Result<ExitCode> {
    let entries = rkdump_mkinitrd::list(img).with_context(|| format!("cannot list {}", img.display()))?;
    let mut total = 0u64;
    for e in &entries {
        total += e.size;
        let target = e.link_target.as_deref().map(|t| format!(" -> {t}")).unwrap_or_default();
        println!("{}{:04o} {:>10}  /{}{target}", e.kind.letter(), e.mode & 0o7777, e.size, e.path);
    }
    let packed = std::fs::metadata(img)?.len();
    println!("{} entries, {total} bytes of data, image {packed} bytes", entries.len());
    Ok(ExitCode::SUCCESS)
}

fn dmesg(dump: &Path, format: &str) -> Result<()> {
    use std::io::Write;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let damaged = dmesg_to(dump, format, &mut out)?;
    out.flush()?;
    if damaged {
        eprintln!("rkdump: warning: the kernel log was damaged; see the last lines of the output");
    }
    Ok(())
}

/// Writes the kernel log of `dump` in `format` (`vmcore-dmesg`, `makedumpfile`,
/// `makedumpfile-1.7.2`) to `out`; `Ok(true)` when the log was damaged.
pub fn dmesg_to(dump: &Path, format: &str, out: &mut dyn std::io::Write) -> Result<bool> {
    use rkdump_vmcore::dmesg::{extract, DumpSource, Format};
    let format = match format {
        "makedumpfile" => Format::Makedumpfile,
        "makedumpfile-1.7.2" => Format::Makedumpfile172,
        _ => Format::VmcoreDmesg,
    };
    let input = rkdump_vmcore::write::Input::open(dump).with_context(|| format!("cannot read {}", dump.display()))?;
    let core = input.source();
    let info = core
        .vmcoreinfo()
        .with_context(|| format!("{} has no VMCOREINFO note: the kernel log cannot be located", dump.display()))?;
    let kmem = rkdump_vmcore::KernelMemory::new(core, info)?;
    let src = DumpSource { kmem, info };
    let stats = extract(&src, format, out)?;
    Ok(stats.corrupted > 0 || stats.stopped_early.is_some())
}

/// Before arming an image whose plan dumps to a raw device: save a dump the last capture
/// left there into /var/crash, as kdumpctl start does (`rkdump save-raw`). Problems are
/// warnings: arming matters more.
fn save_pending_raw(image: &Path) {
    let Ok(Some(Ok(plan))) = rkdump_mkinitrd::plan_of(image) else {
        return;
    };
    let (true, rkdump_init::plan::DeviceSpec::Path(dev)) = (plan.target.is_raw(), &plan.target.device) else {
        return;
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    match crate::saveraw::save_raw(Path::new(dev), Path::new("/var/crash"), false, now) {
        Ok(crate::saveraw::Outcome::NoDump) => {}
        Ok(crate::saveraw::Outcome::Saved { dir, bytes, log_note }) => {
            println!("saved the dump on the raw target {dev} to {}/vmcore ({bytes} bytes)", dir.display());
            if let Some(n) = log_note {
                eprintln!("rkdump: warning: {n}");
            }
        }
        Err(e) => eprintln!("rkdump: warning: the raw target {dev} holds a dump that could not be saved: {e:#}"),
    }
}

/// The default image of `kernel` (default: the running kernel's) if it exists.
fn existing_default_image(kernel: Option<&Path>) -> Option<PathBuf> {
    let running = rkdump_mkinitrd::running_release().ok();
    let release = kernel.and_then(crate::defaults::kernel_release_of).or(running)?;
    Some(crate::defaults::image_path(&release)).filter(|p| p.exists())
}

/// The default image for `kernel` (its release from its header, else the running kernel's),
/// built first from /etc/kdump.conf when missing or stale unless `no_rebuild`.
fn default_image(kernel: &Path, no_rebuild: bool) -> Result<PathBuf> {
    let release = match crate::defaults::kernel_release_of(kernel) {
        Some(r) => r,
        None => rkdump_mkinitrd::running_release()?,
    };
    let image = crate::defaults::image_path(&release);
    let why = if !image.exists() {
        Some("it does not exist yet".to_string())
    } else {
        match rkdump_mkinitrd::freshness(&image) {
            Ok(f) if f.up_to_date() => None,
            Ok(f) if f.sources.is_empty() => Some("it does not list the files it was built from".to_string()),
            Ok(f) => Some(f.stale_reason()),
            Err(e) => Some(format!("it cannot be read ({e})")),
        }
    };
    match why {
        None => {}
        Some(why) if no_rebuild => {
            if !image.exists() {
                bail!("no capture image {} ({why}); build it with rkdump build", image.display());
            }
            eprintln!("rkdump: warning: arming {} although {why} (--no-rebuild)", image.display());
        }
        Some(why) => {
            eprintln!("rkdump: building {} for {release}: {why}", image.display());
            let opts = rkdump_mkinitrd::BuildOptions {
                kernel_release: Some(release.clone()),
                output: image.clone(),
                ..Default::default()
            };
            build_image(opts, None)?;
        }
    }
    Ok(image)
}

/// `rkdump build` with `opts` (its `init_binary` from `init`, default: `rkdump-init` next to
/// this executable), printing what went into the image.
fn build_image(opts: rkdump_mkinitrd::BuildOptions, init: Option<PathBuf>) -> Result<()> {
    let init = match init {
        Some(p) => p,
        None => exe_dir()?.join("rkdump-init"),
    };
    if !init.exists() {
        bail!("capture init {} not found; build it (`make build`) or pass --init", init.display());
    }
    let opts = rkdump_mkinitrd::BuildOptions { init_binary: init, ..opts };
    if let Some(dir) = opts.output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let r = rkdump_mkinitrd::build(&opts)?;
    for w in &r.warnings {
        eprintln!("rkdump: warning: {w}");
    }
    let device = r.target_device.as_deref().map(|d| format!(" (/dev/{d})")).unwrap_or_default();
    match &r.target_from_path {
        Some((path, mnt)) => println!(
            "target: {} {}{device}, the filesystem holding {path} (mounted at {mnt}; kdump.conf has no target line); dump directory {} on it",
            r.plan.target.fstype, r.plan.target.device, r.plan.path
        ),
        None if r.plan.target.is_raw() => println!(
            "target: raw device {}{device}: the dump is written onto it as a flattened stream (collector {}); save it at the next boot with rkdump save-raw",
            r.plan.target.device, r.plan.collector
        ),
        None => println!("target: {} {}{device}, dump directory {}", r.plan.target.fstype, r.plan.target.device, r.plan.path),
    }
    println!("kernel {} ({} modules):", r.kernel_release, r.modules.len());
    for m in &r.modules {
        println!("  {}", m.name);
    }
    if !r.programs.is_empty() {
        println!("programs ({} files):", r.programs.len());
        for p in &r.programs {
            println!("  {} ({})", p.path, p.why);
        }
    }
    for (what, list) in [("kdump_pre", &r.plan.pre), ("kdump_post", &r.plan.post)] {
        if !list.is_empty() {
            println!("{what} hooks, in order: {}", list.join(" "));
        }
    }
    println!(
        "wrote {}: {} bytes ({:.2} MiB, {}), {} bytes unpacked, in {:.0} ms",
        r.output.display(),
        r.image_size,
        r.image_size as f64 / 1048576.0,
        r.compression.as_str(),
        r.unpacked_size,
        r.elapsed.as_secs_f64() * 1000.0
    );
    Ok(())
}

/// The directory holding this executable (where `rkdump-init` is looked up).
fn exe_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the rkdump executable")?;
    Ok(exe.parent().map(Path::to_path_buf).unwrap_or_default())
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Cmd::Build {
            config,
            kernel_release,
            root,
            sysfs,
            mountinfo,
            init,
            compression,
            compression_level,
            output,
            list,
            no_modules,
        } => {
            if let Some(img) = list {
                return list_image(&img);
            }
            let output = match output {
                Some(o) => o,
                None => {
                    let release = match &kernel_release {
                        Some(r) => r.clone(),
                        None => rkdump_mkinitrd::running_release()?,
                    };
                    crate::defaults::image_path(&release)
                }
            };
            let opts = rkdump_mkinitrd::BuildOptions {
                config,
                kernel_release,
                root,
                sysfs,
                mountinfo,
                output,
                compression: compression.parse().map_err(|e| anyhow::anyhow!("--compression: {e}"))?,
                compression_level,
                no_modules,
                ..Default::default()
            };
            build_image(opts, init)?;
        }
        Cmd::Arm { kernel, initrd, no_rebuild, append, cmdline } => {
            let kernel = match kernel {
                Some(k) => k,
                None => crate::defaults::kernel_path(&rkdump_mkinitrd::running_release()?),
            };
            let initrd = match initrd {
                Some(i) => {
                    // Sources missing here are no evidence (an image built elsewhere).
                    if let Ok(f) = rkdump_mkinitrd::freshness(&i) {
                        if let Some(p) = f.newer.first() {
                            eprintln!(
                                "rkdump: warning: {} is older than {}, one of the files it was built from; rebuild it (rkdump build) to capture with the current configuration",
                                i.display(),
                                p.display()
                            );
                        }
                    }
                    i
                }
                None => default_image(&kernel, no_rebuild)?,
            };
            save_pending_raw(&initrd);
            let cmdline = match cmdline {
                Some(c) => c,
                None => {
                    let running = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
                    kexec::capture_cmdline(&running, append.as_deref())
                }
            };
            kexec::arm(&kernel, Some(&initrd), &cmdline)?;
            println!("armed: {} + {} ({cmdline})", kernel.display(), initrd.display());
            let run = Path::new(crate::armed::RUN_DIR);
            if let Err(e) =
                crate::armed::ArmRecord::now(&kernel, &initrd, &cmdline).and_then(|r| crate::armed::record(run, &r))
            {
                eprintln!("rkdump: warning: cannot record the arm in {}: {e}; rkdump status will not know which image is loaded", run.display());
            }
        }
        Cmd::Disarm => {
            kexec::disarm()?;
            println!("disarmed");
            if let Err(e) = crate::armed::forget(Path::new(crate::armed::RUN_DIR)) {
                eprintln!("rkdump: warning: cannot remove the arm record in {}: {e}", crate::armed::RUN_DIR);
            }
        }
        Cmd::Status => print!(
            "{}",
            crate::armed::status_text(kexec::crash_size(), kexec::crash_loaded(), Path::new(crate::armed::RUN_DIR))
        ),
        Cmd::Check { kernel, initrd, kernel_config } => {
            let initrd = initrd.or_else(|| existing_default_image(kernel.as_deref()));
            let sys = crate::check::System { root: PathBuf::from("/") };
            let inputs = crate::check::CheckInputs {
                kernel: kernel.as_deref(),
                initrd: initrd.as_deref(),
                kernel_config: kernel_config.as_deref(),
            };
            let (text, ready) = crate::check::report(&crate::check::run(&sys, &inputs));
            print!("{text}");
            if !ready {
                return Ok(ExitCode::FAILURE);
            }
        }
        Cmd::Estimate { initrd, kernel, memory, capture_cpus } => {
            let initrd = match initrd.or_else(|| existing_default_image(kernel.as_deref())) {
                Some(i) => i,
                None => bail!("no capture image: give one with --initrd, or build the default one with rkdump build"),
            };
            let (_, text) = crate::estimate::run(&initrd, kernel.as_deref(), memory, capture_cpus)?;
            print!("{text}");
        }
        Cmd::KernelConfig { source, initrd, modules, check, output } => {
            let initrd = initrd.or_else(|| existing_default_image(None));
            let args = crate::kernel_config::Args {
                source: &source,
                initrd: initrd.as_deref(),
                modules: &modules,
                check: check.as_deref(),
                output: output.as_deref(),
            };
            if !crate::kernel_config::run(&args)? {
                return Ok(ExitCode::FAILURE);
            }
        }
        Cmd::Info { vmcore, json } => {
            let report = rkdump_vmcore::info(&vmcore).with_context(|| format!("cannot read {}", vmcore.display()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report.to_json())?);
            } else {
                print!("{report}");
            }
        }
        Cmd::Dmesg { dump, format } => dmesg(&dump, &format)?,
        Cmd::Filter {
            dump_level,
            zlib,
            lzo,
            snappy,
            zstd,
            codec,
            elf,
            flattened,
            num_threads,
            dedup,
            no_dedup,
            keep_percpu_free,
            message_level,
            force,
            ignored,
            input,
            output,
        } => {
            let compression = crate::filter::codec(zlib, lzo, snappy, zstd, codec.as_deref())?;
            let opts = rkdump_vmcore::write::FilterOptions {
                dump_level,
                compression,
                format: if elf {
                    rkdump_vmcore::write::DumpFormat::Elf
                } else {
                    rkdump_vmcore::write::DumpFormat::Kdump
                },
                flattened,
                num_threads: num_threads.unwrap_or_else(rkdump_vmcore::write::default_threads),
                dedup: (dedup || rkdump_vmcore::write::dedup::on_by_default(dump_level, compression)) && !no_dedup,
                percpu_free: !keep_percpu_free,
            };
            if let Some(note) = ignored.note() {
                eprintln!("rkdump: note: {note}");
            }
            let report = crate::filter::run(&input, output.as_deref(), opts, message_level.unwrap_or(31), force)?;
            if dedup && !report.dedup {
                eprintln!(
                    "rkdump: note: --dedup had no effect: identical pages are stored once only in kdump-compressed output from an ELF vmcore"
                );
            }
        }
        Cmd::SaveRaw { device, path, keep } => {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            match crate::saveraw::save_raw(&device, &path, keep, now)? {
                crate::saveraw::Outcome::NoDump => {
                    println!("no dump on {} (it does not start with a flattened dump stream)", device.display())
                }
                crate::saveraw::Outcome::Saved { dir, bytes, log_note } => {
                    println!("saved the dump on {} to {}/vmcore ({bytes} bytes)", device.display(), dir.display());
                    if let Some(n) = log_note {
                        eprintln!("rkdump: warning: {n}");
                    }
                    if keep {
                        println!("the dump was left on {} (--keep)", device.display());
                    }
                }
            }
        }
        Cmd::Unflatten { input, output } => {
            let size = crate::filter::unflatten(&input, &output)?;
            eprintln!("wrote {} ({size} bytes)", output.display());
        }
        Cmd::CrashTest {
            kernel_release,
            out,
            memory,
            crashkernel,
            cpu,
            timeout,
            no_target,
            device_timeout,
            config_lines,
            build_args,
            build_root,
            busybox,
            initrd,
            target_disk,
            dump_path,
            no_collect,
            capture_kernel,
            throttle_target,
            throttle_burst,
        } => {
            let kernel = rkdump_qemu::find_kernel(kernel_release.as_deref())?;
            let rkdump = std::env::current_exe()?;
            let mut o = rkdump_qemu::CrashTestOptions::new(kernel, out, rkdump);
            o.memory_mib = memory;
            o.crashkernel = crashkernel;
            o.cpu = cpu;
            o.timeout = Duration::from_secs(timeout);
            o.attach_target = !no_target;
            o.device_timeout_secs = device_timeout;
            o.extra_config = config_lines;
            o.build_args = build_args;
            o.build_root = build_root;
            o.busybox = busybox;
            o.initrd = initrd;
            o.target_disk = target_disk;
            o.dump_path = dump_path;
            o.collect = !no_collect;
            o.capture_kernel = capture_kernel;
            o.target_write_bps = throttle_target;
            o.target_write_burst = throttle_burst;
            let summary = rkdump_qemu::crash_test(&o, &mut |l| eprintln!("crash-test: {l}"))?;
            print!("{summary}");
            if o.attach_target && o.collect && summary.vmcore_size().is_none() {
                bail!("the capture did not produce a complete vmcore; see {}", summary.console.display());
            }
        }
        Cmd::CrashTestWorkload { anon_mib, cache_mib, cache_file, ready } => {
            workload::run(anon_mib, cache_mib, &cache_file, &ready)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// makedumpfile command lines, as scripts and kdump.conf give them, parse unchanged.
    #[test]
    fn makedumpfile_command_lines_parse() {
        let parse = |line: &str| Cli::try_parse_from(line.split_whitespace());
        for line in [
            "rkdump filter -l --message-level 7 -d 31 /proc/vmcore out",
            "rkdump filter -c -d 17 -f --cyclic-buffer 1024 -D in out",
            "rkdump filter --non-cyclic --work-dir /tmp -x vmlinux --splitblock-size 1024 -z in out",
            "rkdump filter -F -l -d 31 in",
        ] {
            assert!(parse(line).is_ok(), "{line}: {:?}", parse(line).err());
        }
        let Cmd::Filter { force, ignored, dump_level, .. } =
            parse("rkdump filter -f -d 1 --cyclic-buffer 8 -x v in out").unwrap().cmd
        else {
            panic!("not filter");
        };
        assert!(force && dump_level == 1);
        assert_eq!(ignored.cyclic_buffer, Some(8));
        assert_eq!(ignored.vmlinux.as_deref(), Some(std::path::Path::new("v")));
        // Options that change what is written are not silently dropped.
        assert!(parse("rkdump filter --split in out1 out2").is_err());
    }
}
