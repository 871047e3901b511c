//! `rkdump estimate` (kdumpctl estimate): the `crashkernel=` reservation a capture needs, from
//! the capture kernel and image measured here. The arithmetic and its calibration are in
//! `rkdump_kconfig::estimate`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rkdump_kconfig::estimate::{bzimage_init_size, estimate, Estimate, Inputs};
use rkdump_mkinitrd::ImageSizes;

use crate::kexec;

const MIB: f64 = 1048576.0;

/// The capture kernel given, or the running kernel's image in /boot.
fn kernel_path(kernel: Option<&Path>) -> Result<PathBuf> {
    if let Some(k) = kernel {
        return Ok(k.to_path_buf());
    }
    let release = rkdump_mkinitrd::running_release().context("cannot tell the running kernel's release")?;
    let path = PathBuf::from(format!("/boot/vmlinuz-{release}"));
    if !path.exists() {
        anyhow::bail!("{} does not exist; name the capture kernel with --kernel", path.display());
    }
    Ok(path)
}

/// `MemTotal` of a /proc/meminfo text, in bytes.
pub fn meminfo_total(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
}

/// The first 64 KiB of a kernel image: its setup header and the version string it points at.
pub fn read_head(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut buf = Vec::new();
    std::fs::File::open(path)?.take(64 << 10).read_to_end(&mut buf)?;
    Ok(buf)
}

/// The estimate's inputs from a kernel's `init_size` and an image's sizes.
pub fn inputs(kernel_init_size: u64, image: &ImageSizes, dumped_memory: u64, capture_cpus: u64) -> Inputs {
    Inputs {
        kernel_init_size,
        image_file: image.file,
        image_unpacked: image.unpacked,
        modules: image.modules.iter().map(|(_, b)| b).sum(),
        dumped_memory,
        capture_cpus,
    }
}

/// Measures the inputs and returns the estimate with its report text.
pub fn run(
    initrd: &Path,
    kernel: Option<&Path>,
    memory_mib: Option<u64>,
    capture_cpus: u64,
) -> Result<(Estimate, String)> {
    let kernel = kernel_path(kernel)?;
    let head = read_head(&kernel).with_context(|| format!("cannot read kernel {}", kernel.display()))?;
    let init_size = bzimage_init_size(&head).with_context(|| format!("{} gives no estimate", kernel.display()))?;
    let sizes =
        rkdump_mkinitrd::sizes(initrd).with_context(|| format!("cannot measure capture image {}", initrd.display()))?;
    let dumped_memory = match memory_mib {
        Some(m) => m.saturating_mul(1 << 20),
        None => {
            let text = std::fs::read_to_string("/proc/meminfo").context("cannot read /proc/meminfo")?;
            meminfo_total(&text).context("no MemTotal in /proc/meminfo; give --memory")?
        }
    };
    let e = estimate(&inputs(init_size, &sizes, dumped_memory, capture_cpus));
    let mut out = String::new();
    let _ = writeln!(out, "capture kernel:      {}", kernel.display());
    let _ = writeln!(out, "capture image:       {} ({} modules)", initrd.display(), sizes.modules.len());
    let _ = writeln!(
        out,
        "dumped memory:       {:.1} GiB{}",
        dumped_memory as f64 / MIB / 1024.0,
        if memory_mib.is_none() { " (this machine)" } else { "" }
    );
    let _ = writeln!(out, "capture CPUs:        {capture_cpus} (nr_cpus=, one compression thread each, at most 4)");
    for p in &e.parts {
        let _ = writeln!(out, "  {:<32} {:>8.1} MiB", p.what, p.bytes as f64 / MIB);
    }
    let _ = writeln!(out, "  {:<32} {:>8.1} MiB", "total", e.total as f64 / MIB);
    let _ = writeln!(out, "recommended:         crashkernel={}", e.crashkernel());
    let _ = writeln!(out, "current reservation: {}", reservation_verdict(kexec::crash_size(), &e));
    Ok((e, out))
}

/// The current reservation against the estimate.
fn reservation_verdict(reserved: Option<u64>, e: &Estimate) -> String {
    match reserved {
        None => "unknown (/sys/kernel/kexec_crash_size is unreadable)".into(),
        Some(0) => format!("none: boot with crashkernel={}", e.crashkernel()),
        Some(r) if r < e.total => {
            format!("{:.0} MiB: too small for this capture; boot with crashkernel={}", r as f64 / MIB, e.crashkernel())
        }
        Some(r) => format!("{:.0} MiB: enough", r as f64 / MIB),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_compares_the_reservation_with_the_total() {
        let e = estimate(&Inputs { kernel_init_size: 64 << 20, ..Inputs::default() });
        assert!(reservation_verdict(None, &e).starts_with("unknown"));
        assert_eq!(reservation_verdict(Some(0), &e), format!("none: boot with crashkernel={}", e.crashkernel()));
        assert!(reservation_verdict(Some(64 << 20), &e).contains("too small"));
        assert_eq!(reservation_verdict(Some(e.total), &e), format!("{:.0} MiB: enough", e.total as f64 / MIB));
    }

    #[test]
    fn a_kernel_that_is_not_a_bzimage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let k = dir.path().join("vmlinuz");
        std::fs::write(&k, vec![0u8; 0x400]).unwrap();
        let e = run(&dir.path().join("img"), Some(&k), Some(1024), 1).unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains("vmlinuz gives no estimate") && msg.contains("not a bzImage"), "{msg}");
    }
}
