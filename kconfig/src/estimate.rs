//! `crashkernel=` estimate (`rkdump estimate`, like `kdumpctl estimate`): the memory a capture
//! takes, part by part, from measured sizes and a few constants calibrated in QEMU.
//!
//! The capture kernel gets the reservation and nothing else. In it live:
//! - the kernel: the bzImage header's `init_size` (the room the kernel needs from its load
//!   address to decompress and run: text, data, bss and init sections with scratch space);
//! - the capture image file (kexec loads it into the reservation; freed once unpacked) and
//!   its files unpacked into the rootfs;
//! - the kernel modules the image loads (their uncompressed size bounds what loading takes);
//! - the kernel's own runtime allocations (slab, per-CPU areas, driver rings and buffers):
//!   half its `init_size`, at least [`MIN_KERNEL_RUNTIME`] ([`kernel_runtime`]);
//! - rkdump at capture: [`CAPTURE_USERSPACE`], [`PER_THREAD`] for each further CPU, plus
//!   bitmap 2 of the dumped machine (one bit per 4 KiB page, at most 8 MiB: larger machines
//!   read it back from the dump file);
//! - the memory map (struct pages) of the reservation itself: 64 bytes per 4 KiB page.
//!
//! Calibration (BENCHMARKS.md, "crashkernel= estimate"): Debian 12's 6.1 kernel under QEMU,
//! a 2 GiB guest, the default capture image (1.4 MiB, 4.6 MiB unpacked, virtio and ext4
//! modules): the capture failed at 88 MiB (the kernel ran out of memory initialising its
//! drivers, before /init) and succeeded at 96 MiB, where the capture kernel had 45 MiB of
//! usable memory and rkdump peaked at 8 MiB. The constants below leave about a third more
//! than that; a machine whose storage or network drivers allocate large DMA pools needs more,
//! which a test crash (or `rkdump crash-test --crashkernel`) shows.
//!
//! A dedicated capture kernel (`rkdump kernel-config` on `tinyconfig`, drivers built in, no
//! module support; `init_size` 14 MiB against Debian's 63.6 MiB), same guest and collector:
//! the capture ran out of memory at 24 MiB and succeeded at 32 MiB, with 18.8 MiB available
//! and rkdump at 7.7 MiB. A fixed runtime of Debian's 32 MiB recommended 80M for it; runtime
//! scaled with the kernel's size recommends 48M. Two kernels are all this scaling rests on.

/// Offset of the bzImage setup header's signature `HdrS`.
const HDRS_OFF: usize = 0x202;
/// Offset of the boot protocol version (u16).
const VERSION_OFF: usize = 0x206;
/// Offset of `init_size` (u32, boot protocol 2.10+).
const INIT_SIZE_OFF: usize = 0x260;

const MIB: u64 = 1 << 20;

/// The least runtime allowed for any kernel (see [`kernel_runtime`]).
pub const MIN_KERNEL_RUNTIME: u64 = 8 * MIB;

/// The kernel's own allocations while it boots and runs the capture: half its `init_size`
/// (32 MiB for Debian's kernel, whose calibration the module doc gives), at least
/// [`MIN_KERNEL_RUNTIME`]. What a kernel allocates at boot grows with what is built into it,
/// as its `init_size` does.
pub fn kernel_runtime(init_size: u64) -> u64 {
    (init_size / 2).max(MIN_KERNEL_RUNTIME)
}
/// rkdump's peak at capture on one CPU (the capture command line's default `nr_cpus=1`),
/// without bitmap 2: 8 MiB measured with the default collector, twice that allowed (the `-d 1`
/// deduplication tables take 3 MiB).
pub const CAPTURE_USERSPACE: u64 = 16 * MIB;
/// Each further CPU of the capture kernel runs one more compression thread (at most 4 in
/// all), with its batches in flight: 16-26 MB against 10-16 MB for one thread in the file
/// benchmarks (BENCHMARKS.md).
pub const PER_THREAD: u64 = 8 * MIB;
/// Most compression threads at capture.
pub const MAX_THREADS: u64 = 4;
/// Largest bitmap 2 kept in memory at capture.
pub const BITMAP_MAX: u64 = 8 * MIB;
/// The recommendation is rounded up to a multiple of this.
pub const ROUND: u64 = 16 * MIB;

/// Why a kernel image gives no estimate.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EstimateError {
    /// Shorter than the setup header.
    #[error("the kernel image is {0} bytes: too short for a bzImage setup header")]
    Truncated(usize),
    /// No `HdrS` signature.
    #[error("not a bzImage (no HdrS signature at 0x202)")]
    NotBzImage,
    /// Boot protocol before 2.10 has no `init_size`.
    #[error("boot protocol {0}.{1:02} has no init_size (2.10 or later needed)")]
    OldProtocol(u8, u8),
}

/// `init_size` of a bzImage (its first 0x264 bytes suffice): the memory the kernel needs from
/// its load address.
pub fn bzimage_init_size(image: &[u8]) -> Result<u64, EstimateError> {
    let field = image.get(INIT_SIZE_OFF..INIT_SIZE_OFF + 4).ok_or(EstimateError::Truncated(image.len()))?;
    if image.get(HDRS_OFF..HDRS_OFF + 4) != Some(b"HdrS") {
        return Err(EstimateError::NotBzImage);
    }
    let version = u16::from_le_bytes([image[VERSION_OFF], image[VERSION_OFF + 1]]);
    if version < 0x020a {
        return Err(EstimateError::OldProtocol((version >> 8) as u8, version as u8));
    }
    Ok(u64::from(u32::from_le_bytes([field[0], field[1], field[2], field[3]])))
}

/// Offset of `kernel_version` (u16: the version string's offset minus 0x200).
const KERNEL_VERSION_OFF: usize = 0x20e;

/// The kernel release a bzImage names in its header (`6.1.0-57-amd64`: the first word of the
/// version string `kernel_version` points at), if it has one.
pub fn bzimage_release(image: &[u8]) -> Option<String> {
    if image.get(HDRS_OFF..HDRS_OFF + 4) != Some(b"HdrS") {
        return None;
    }
    let rel = u16::from_le_bytes([*image.get(KERNEL_VERSION_OFF)?, *image.get(KERNEL_VERSION_OFF + 1)?]);
    if rel == 0 {
        return None;
    }
    let at = usize::from(rel) + 0x200;
    let text = image.get(at..image.len().min(at + 256))?;
    let end = text.iter().position(|&b| b == 0 || b == b' ').unwrap_or(text.len());
    let release = std::str::from_utf8(&text[..end]).ok()?;
    (!release.is_empty() && release.bytes().all(|b| b.is_ascii_graphic())).then(|| release.to_string())
}

/// Measured inputs of an estimate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Inputs {
    /// The capture kernel's `init_size` ([`bzimage_init_size`]).
    pub kernel_init_size: u64,
    /// The capture image file.
    pub image_file: u64,
    /// The image's files unpacked (whole pages).
    pub image_unpacked: u64,
    /// The modules the image loads, uncompressed.
    pub modules: u64,
    /// Memory of the machine to be dumped.
    pub dumped_memory: u64,
    /// CPUs of the capture kernel (`nr_cpus=`; 0 counts as 1).
    pub capture_cpus: u64,
}

/// One line of an estimate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// What takes the memory.
    pub what: &'static str,
    /// Bytes.
    pub bytes: u64,
}

/// An estimate: its parts, their total and the recommended reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Estimate {
    /// Each consumer.
    pub parts: Vec<Part>,
    /// Sum of the parts.
    pub total: u64,
    /// The total rounded up to [`ROUND`]: the `crashkernel=` to use.
    pub recommended: u64,
}

impl Estimate {
    /// `crashkernel=` value of the recommendation (`128M`).
    pub fn crashkernel(&self) -> String {
        format!("{}M", self.recommended / MIB)
    }
}

/// The estimate for `inputs`.
pub fn estimate(inputs: &Inputs) -> Estimate {
    let bitmap = inputs.dumped_memory.div_ceil(4096).div_ceil(8).min(BITMAP_MAX);
    let threads = inputs.capture_cpus.clamp(1, MAX_THREADS);
    let mut parts = vec![
        Part { what: "kernel (bzImage init_size)", bytes: inputs.kernel_init_size },
        Part { what: "capture image file", bytes: inputs.image_file },
        Part { what: "capture image unpacked", bytes: inputs.image_unpacked },
        Part { what: "kernel modules loaded", bytes: inputs.modules },
        Part { what: "kernel runtime", bytes: kernel_runtime(inputs.kernel_init_size) },
        Part { what: "rkdump at capture", bytes: CAPTURE_USERSPACE + (threads - 1) * PER_THREAD + bitmap },
    ];
    let sum: u64 = parts.iter().map(|p| p.bytes).fold(0, u64::saturating_add);
    // The reservation's own struct pages (64 bytes per 4 KiB page): 1/64 of the total.
    let memmap = sum.div_ceil(63);
    parts.push(Part { what: "memory map of the reservation", bytes: memmap });
    let total = sum.saturating_add(memmap);
    let recommended = total.div_ceil(ROUND).saturating_mul(ROUND);
    Estimate { parts, total, recommended }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(version: u16, init_size: u32) -> Vec<u8> {
        let mut h = vec![0u8; 0x300];
        h[HDRS_OFF..HDRS_OFF + 4].copy_from_slice(b"HdrS");
        h[VERSION_OFF..VERSION_OFF + 2].copy_from_slice(&version.to_le_bytes());
        h[INIT_SIZE_OFF..INIT_SIZE_OFF + 4].copy_from_slice(&init_size.to_le_bytes());
        h
    }

    #[test]
    fn init_size_from_the_setup_header() {
        assert_eq!(bzimage_init_size(&header(0x020f, 0x3f98000)), Ok(0x3f98000));
        assert_eq!(bzimage_init_size(&header(0x0209, 1)), Err(EstimateError::OldProtocol(2, 9)));
        let mut h = header(0x020f, 1);
        h[HDRS_OFF] = b'X';
        assert_eq!(bzimage_init_size(&h), Err(EstimateError::NotBzImage));
        assert_eq!(bzimage_init_size(&h[..0x263]), Err(EstimateError::Truncated(0x263)));
        assert_eq!(bzimage_init_size(&[]), Err(EstimateError::Truncated(0)));
    }

    #[test]
    fn release_from_the_version_string() {
        let mut h = header(0x020f, 1);
        h.resize(0x1000, 0);
        h[KERNEL_VERSION_OFF..KERNEL_VERSION_OFF + 2].copy_from_slice(&0x300u16.to_le_bytes());
        let v = b"6.1.0-57-amd64 (debian-kernel@lists.debian.org) #1 SMP\0";
        h[0x500..0x500 + v.len()].copy_from_slice(v);
        assert_eq!(bzimage_release(&h).as_deref(), Some("6.1.0-57-amd64"));
        // Pointing past the end, at nothing, or no header: none.
        h[KERNEL_VERSION_OFF..KERNEL_VERSION_OFF + 2].copy_from_slice(&0xff00u16.to_le_bytes());
        assert_eq!(bzimage_release(&h), None);
        h[KERNEL_VERSION_OFF..KERNEL_VERSION_OFF + 2].copy_from_slice(&0u16.to_le_bytes());
        assert_eq!(bzimage_release(&h), None);
        assert_eq!(bzimage_release(&[0u8; 16]), None);
    }

    /// A kernel installed on this machine, if any, has a plausible init_size and names the
    /// release its file name gives.
    #[test]
    fn installed_kernels_parse() {
        for (name, path) in crate::boot_files("vmlinuz-") {
            let Ok(data) = std::fs::read(&path) else {
                continue;
            };
            let n = bzimage_init_size(&data).unwrap();
            assert!((8 * MIB..512 * MIB).contains(&n), "{name}: init_size {n}");
            assert_eq!(bzimage_release(&data).as_deref(), name.strip_prefix("vmlinuz-"));
        }
    }

    /// The QEMU calibration's inputs give 128M: above the 96 MiB that worked, with a third to
    /// spare; the parts add up and the total includes its own memory map.
    #[test]
    fn calibration_inputs_give_128m() {
        let e = estimate(&Inputs {
            kernel_init_size: 0x3f98000,
            image_file: 1_433_203,
            image_unpacked: 4_786_176,
            modules: 1_500_000,
            dumped_memory: 2 << 30,
            capture_cpus: 1,
        });
        assert_eq!(e.crashkernel(), "128M");
        assert_eq!(e.total, e.parts.iter().map(|p| p.bytes).sum::<u64>());
        let memmap = e.parts.last().unwrap().bytes;
        assert!(memmap * 64 >= e.total, "{e:?}");
        assert!(e.total > 96 * MIB + 96 * MIB / 4, "{e:?}");
        assert_eq!(e.recommended % ROUND, 0);
        assert!(e.recommended >= e.total && e.recommended - e.total < ROUND);
    }

    /// The dedicated capture kernel of BENCHMARKS.md (captured at 32M, out of memory at 24M)
    /// gets 48M: the capture's need with a third to spare, not Debian's kernel's 80M runtime.
    #[test]
    fn dedicated_kernel_inputs_give_48m() {
        let e = estimate(&Inputs {
            kernel_init_size: 14 * MIB,
            image_file: 900_000,
            image_unpacked: 2_000_000,
            modules: 0,
            dumped_memory: 2 << 30,
            capture_cpus: 1,
        });
        assert_eq!(e.crashkernel(), "48M", "{e:?}");
        assert!(e.total > 32 * MIB + 32 * MIB / 4, "{e:?}");
        let runtime = e.parts.iter().find(|p| p.what == "kernel runtime").unwrap().bytes;
        assert_eq!(runtime, MIN_KERNEL_RUNTIME);
        assert_eq!(kernel_runtime(0x3f98000), 0x3f98000 / 2);
    }

    /// The "rkdump at capture" part of an estimate.
    fn userspace(inputs: Inputs) -> u64 {
        let e = estimate(&inputs);
        e.parts.iter().find(|p| p.what == "rkdump at capture").unwrap().bytes
    }

    /// More capture CPUs, more compression threads, up to 4.
    #[test]
    fn capture_cpus_add_threads_up_to_four() {
        let at = |cpus: u64| userspace(Inputs { capture_cpus: cpus, ..Inputs::default() });
        assert_eq!(at(0), CAPTURE_USERSPACE);
        assert_eq!(at(1), CAPTURE_USERSPACE);
        assert_eq!(at(2), CAPTURE_USERSPACE + PER_THREAD);
        assert_eq!(at(4), CAPTURE_USERSPACE + 3 * PER_THREAD);
        assert_eq!(at(64), at(4));
    }

    /// Bitmap 2 grows with the dumped machine up to 8 MiB, then stops.
    #[test]
    fn dumped_memory_counts_up_to_the_bitmap_limit() {
        let at = |mem: u64| userspace(Inputs { dumped_memory: mem, ..Inputs::default() });
        assert_eq!(at(0), CAPTURE_USERSPACE);
        assert_eq!(at(64 << 30), CAPTURE_USERSPACE + 2 * MIB);
        assert_eq!(at(256 << 30), CAPTURE_USERSPACE + 8 * MIB);
        assert_eq!(at(4 << 40), CAPTURE_USERSPACE + 8 * MIB);
        assert_eq!(at(u64::MAX), CAPTURE_USERSPACE + 8 * MIB);
        let huge = estimate(&Inputs { kernel_init_size: u64::MAX, ..Inputs::default() });
        assert!(huge.total == u64::MAX || huge.recommended >= huge.total);
    }
}
