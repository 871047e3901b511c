//! `rkdump arm`, `disarm`, `status`: load and unload the capture kernel with
//! `kexec_file_load(2)` and `KEXEC_FILE_ON_CRASH`, and report the reservation.
//!
//! This is the only module of the CLI that makes raw syscalls.

use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// `KEXEC_FILE_UNLOAD` from `<linux/kexec.h>`.
const KEXEC_FILE_UNLOAD: libc::c_ulong = 0x1;
/// `KEXEC_FILE_ON_CRASH`: load into the crashkernel reservation.
const KEXEC_FILE_ON_CRASH: libc::c_ulong = 0x2;
/// `KEXEC_FILE_NO_INITRAMFS`.
const KEXEC_FILE_NO_INITRAMFS: libc::c_ulong = 0x4;

/// The arguments the capture kernel always gets (kdump-utils' defaults for x86_64).
pub const DEFAULT_CAPTURE_ARGS: &str = "irqpoll nr_cpus=1 reset_devices";

/// Builds the capture kernel command line: the defaults, the running kernel's `console=`
/// arguments (so the capture is visible where the system logs), then `append`.
pub fn capture_cmdline(running: &str, append: Option<&str>) -> String {
    let mut parts: Vec<&str> = DEFAULT_CAPTURE_ARGS.split(' ').collect();
    parts.extend(running.split_whitespace().filter(|a| a.starts_with("console=")));
    if let Some(extra) = append {
        parts.extend(extra.split_whitespace());
    }
    parts.join(" ")
}

fn kexec_file_load(
    kernel: Option<&File>,
    initrd: Option<&File>,
    cmdline: &str,
    flags: libc::c_ulong,
) -> io::Result<()> {
    let mut c = cmdline.as_bytes().to_vec();
    c.push(0);
    let kfd = kernel.map_or(-1, |f| f.as_raw_fd());
    let ifd = initrd.map_or(-1, |f| f.as_raw_fd());
    let (len, ptr) = if flags & KEXEC_FILE_UNLOAD != 0 { (0usize, std::ptr::null()) } else { (c.len(), c.as_ptr()) };
    // SAFETY: kexec_file_load takes two fds (or -1 when unloading / without an initrd), a length
    // and a pointer to a NUL-terminated buffer of that length that lives until the call returns.
    let rc = unsafe { libc::syscall(libc::SYS_kexec_file_load, kfd, ifd, len, ptr, flags) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reserved crash memory in bytes, from `/sys/kernel/kexec_crash_size`.
pub fn crash_size() -> Option<u64> {
    fs::read_to_string("/sys/kernel/kexec_crash_size").ok()?.trim().parse().ok()
}

/// Whether a capture kernel is loaded, from `/sys/kernel/kexec_crash_loaded`.
pub fn crash_loaded() -> Option<bool> {
    Some(fs::read_to_string("/sys/kernel/kexec_crash_loaded").ok()?.trim() == "1")
}

/// Loads `kernel` + `initrd` as the capture kernel.
pub fn arm(kernel: &Path, initrd: Option<&Path>, cmdline: &str) -> Result<()> {
    match crash_size() {
        Some(0) => {
            bail!("no crash kernel memory is reserved; boot with crashkernel= (e.g. crashkernel=256M) and retry")
        }
        None => eprintln!("rkdump: warning: /sys/kernel/kexec_crash_size is unreadable; trying anyway"),
        Some(_) => {}
    }
    let k = File::open(kernel).with_context(|| format!("cannot open kernel {}", kernel.display()))?;
    let i = match initrd {
        Some(p) => Some(File::open(p).with_context(|| format!("cannot open initrd {}", p.display()))?),
        None => None,
    };
    let flags = KEXEC_FILE_ON_CRASH | if i.is_none() { KEXEC_FILE_NO_INITRAMFS } else { 0 };
    kexec_file_load(Some(&k), i.as_ref(), cmdline, flags).map_err(|e| {
        let hint = match e.raw_os_error() {
            Some(libc::EPERM) => {
                "need root (CAP_SYS_BOOT), and kexec must not be disabled (kernel.kexec_load_disabled)"
            }
            Some(libc::ENOSYS) => "the kernel lacks CONFIG_KEXEC_FILE",
            Some(libc::EKEYREJECTED) | Some(libc::EBADMSG) => {
                "the kernel requires a signed image (lockdown / KEXEC_SIG_FORCE)"
            }
            Some(libc::ENOEXEC) => "the kernel image format is not recognised (expects a bzImage)",
            Some(libc::ENOMEM) | Some(libc::EADDRNOTAVAIL) => {
                "the kernel + image do not fit the crashkernel reservation: build a smaller image or reserve more"
            }
            Some(libc::EBUSY) => "a capture kernel is being used; retry",
            _ => "see dmesg for the kernel's reason",
        };
        anyhow::anyhow!("kexec_file_load of {} failed: {e} ({hint})", kernel.display())
    })?;
    Ok(())
}

/// Unloads the capture kernel.
pub fn disarm() -> Result<()> {
    kexec_file_load(None, None, "", KEXEC_FILE_UNLOAD | KEXEC_FILE_ON_CRASH)
        .context("kexec_file_load(KEXEC_FILE_UNLOAD) failed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_keeps_consoles_only() {
        let running = "BOOT_IMAGE=/vmlinuz root=/dev/sda1 console=tty0 console=ttyS0,115200 crashkernel=256M quiet";
        assert_eq!(
            capture_cmdline(running, Some("panic=1")),
            "irqpoll nr_cpus=1 reset_devices console=tty0 console=ttyS0,115200 panic=1"
        );
        assert_eq!(capture_cmdline("", None), DEFAULT_CAPTURE_ARGS);
    }
}
