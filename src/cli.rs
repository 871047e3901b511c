//! Command-line definitions and dispatch.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use crate::{kexec, workload};

/// rkdump: kdump capture images, vmcore filtering and crash tests, in one tool.
#[derive(Debug, Parser)]
#[command(name = "rkdump", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Load a capture kernel and image into the crash reservation (kexec_file_load, on crash).
    Arm {
        /// Capture kernel image (bzImage), e.g. /boot/vmlinuz-$(uname -r).
        #[arg(long)]
        kernel: PathBuf,
        /// Capture initramfs built by `rkdump build`.
        #[arg(long)]
        initrd: PathBuf,
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
    /// Show the crash reservation and whether a capture kernel is loaded.
    Status,
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

/// The directory holding this executable (where `rkdump-init` is looked up).
fn exe_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the rkdump executable")?;
    Ok(exe.parent().map(Path::to_path_buf).unwrap_or_default())
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Cmd::Arm { kernel, initrd, append, cmdline } => {
            let cmdline = match cmdline {
                Some(c) => c,
                None => {
                    let running = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
                    kexec::capture_cmdline(&running, append.as_deref())
                }
            };
            kexec::arm(&kernel, Some(&initrd), &cmdline)?;
            println!("armed: {} + {} ({cmdline})", kernel.display(), initrd.display());
        }
        Cmd::Disarm => {
            kexec::disarm()?;
            println!("disarmed");
        }
        Cmd::Status => print!("{}", kexec::status_text()),
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
            let summary = rkdump_qemu::crash_test(&o, &mut |l| eprintln!("crash-test: {l}"))?;
            print!("{summary}");
            if o.attach_target && summary.vmcore_size().is_none() {
                bail!("the capture did not produce a complete vmcore; see {}", summary.console.display());
            }
        }
        Cmd::CrashTestWorkload { anon_mib, cache_mib, cache_file, ready } => {
            workload::run(anon_mib, cache_mib, &cache_file, &ready)?;
        }
    }
    let _ = exe_dir;
    Ok(ExitCode::SUCCESS)
}
