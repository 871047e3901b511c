//! What `rkdump arm` loaded, for `rkdump status` (kdumpctl status's "is the loaded image
//! current?").
//!
//! The kernel does not say which files a loaded capture kernel came from, so `rkdump arm`
//! records them in [`RUN_DIR`]`/armed` (a tmpfs: gone at reboot, like the loaded kernel) with
//! the image's size and modification time. `rkdump status` then tells apart: an image changed
//! on disk since it was loaded (arm again), an image older than the files it was built from
//! (`mkinitrd::freshness`: rebuild, then arm again), and one that is current.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Where the record lives.
pub const RUN_DIR: &str = "/run/rkdump";
const FILE: &str = "armed";

/// One `rkdump arm`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArmRecord {
    /// The capture kernel.
    pub kernel: PathBuf,
    /// The capture image.
    pub initrd: PathBuf,
    /// The image's size when it was loaded.
    pub initrd_size: u64,
    /// The image's modification time when it was loaded (nanoseconds since the epoch).
    pub initrd_mtime_ns: u128,
    /// The capture kernel's command line.
    pub cmdline: String,
    /// When it was armed (seconds since the epoch).
    pub armed_at: u64,
}

fn mtime_ns(m: &std::fs::Metadata) -> u128 {
    m.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos())
}

impl ArmRecord {
    /// The record of loading `kernel` + `initrd` now.
    pub fn now(kernel: &Path, initrd: &Path, cmdline: &str) -> std::io::Result<Self> {
        let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        let m = std::fs::metadata(initrd)?;
        Ok(ArmRecord {
            kernel: abs(kernel),
            initrd: abs(initrd),
            initrd_size: m.len(),
            initrd_mtime_ns: mtime_ns(&m),
            cmdline: cmdline.to_string(),
            armed_at: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        })
    }

    /// The record's file format: `key value` lines.
    pub fn render(&self) -> String {
        format!(
            "kernel {}\ninitrd {}\ninitrd_size {}\ninitrd_mtime_ns {}\ncmdline {}\narmed_at {}\n",
            self.kernel.display(),
            self.initrd.display(),
            self.initrd_size,
            self.initrd_mtime_ns,
            self.cmdline,
            self.armed_at
        )
    }

    /// Reads [`ArmRecord::render`]'s format; `None` if any key is missing or malformed.
    pub fn parse(text: &str) -> Option<Self> {
        let get = |k: &str| text.lines().find_map(|l| l.strip_prefix(k)?.strip_prefix(' '));
        Some(ArmRecord {
            kernel: PathBuf::from(get("kernel")?),
            initrd: PathBuf::from(get("initrd")?),
            initrd_size: get("initrd_size")?.parse().ok()?,
            initrd_mtime_ns: get("initrd_mtime_ns")?.parse().ok()?,
            cmdline: get("cmdline").unwrap_or_default().to_string(),
            armed_at: get("armed_at")?.parse().ok()?,
        })
    }
}

/// Writes the record into `dir` (created if needed).
pub fn record(dir: &Path, r: &ArmRecord) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{FILE}.tmp"));
    std::fs::write(&tmp, r.render())?;
    std::fs::rename(tmp, dir.join(FILE))
}

/// Removes the record (after `rkdump disarm`).
pub fn forget(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(dir.join(FILE)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC`.
fn utc(secs: u64) -> String {
    let name = rkdump_init::save::dump_dir_name("", secs);
    let t = name.trim_start_matches('-');
    // `YYYY-MM-DD-HH:MM:SS` -> `YYYY-MM-DD HH:MM:SS`.
    match t.get(..10).zip(t.get(11..)) {
        Some((d, h)) => format!("{d} {h} UTC"),
        None => t.to_string(),
    }
}

/// The status lines: reservation (`size`, from `/sys/kernel/kexec_crash_size`), whether a
/// capture kernel is loaded, and, from the record in `run_dir`, what was armed and whether
/// that image is current.
pub fn status_text(size: Option<u64>, loaded: Option<bool>, run_dir: &Path) -> String {
    let mut out = String::new();
    let size = match size {
        Some(0) => "none (boot with crashkernel=, e.g. crashkernel=256M)".to_string(),
        Some(n) => format!("{} MiB ({n} bytes)", n / (1024 * 1024)),
        None => "unknown (/sys/kernel/kexec_crash_size unreadable)".to_string(),
    };
    let _ = writeln!(out, "crash reservation: {size}");
    let _ = writeln!(
        out,
        "capture kernel loaded: {}",
        match loaded {
            Some(true) => "yes",
            Some(false) => "no",
            None => "unknown",
        }
    );
    let rec = std::fs::read_to_string(run_dir.join(FILE)).ok();
    let Some(r) = rec.as_deref().and_then(ArmRecord::parse) else {
        if rec.is_some() {
            let _ = writeln!(out, "armed: {} is unreadable; run rkdump arm again", run_dir.join(FILE).display());
        } else if loaded == Some(true) {
            let _ = writeln!(
                out,
                "armed: not by rkdump arm since boot (another tool, such as kdumpctl?): the loaded image is unknown"
            );
        }
        return out;
    };
    let _ = writeln!(out, "armed: {} + {} at {}", r.kernel.display(), r.initrd.display(), utc(r.armed_at));
    let _ = writeln!(out, "capture command line: {}", r.cmdline);
    if loaded == Some(false) {
        let _ = writeln!(out, "note: nothing is loaded any more (unloaded by another tool?): run rkdump arm again");
    }
    let image = match std::fs::metadata(&r.initrd) {
        Err(_) => "removed since it was loaded; the loaded copy serves until reboot, then arm another".to_string(),
        Ok(m) if m.len() != r.initrd_size || mtime_ns(&m) != r.initrd_mtime_ns => {
            "changed since it was loaded: run rkdump arm again to load the new one".to_string()
        }
        Ok(_) => match rkdump_mkinitrd::freshness(&r.initrd) {
            Err(e) => format!("cannot be read ({e})"),
            Ok(f) if f.up_to_date() => format!("up to date with the {} files it was built from", f.sources.len()),
            Ok(f) if f.sources.is_empty() => {
                "freshness unknown: it does not list the files it was built from (built by an older rkdump?)"
                    .to_string()
            }
            Ok(f) => format!("stale ({}): rebuild it (rkdump build) and arm again", f.stale_reason()),
        },
    };
    let _ = writeln!(out, "image: {image}");
    if let Some(dev) = pending_raw_dump(&r.initrd) {
        let _ = writeln!(out, "pending dump: the raw target {dev} holds the dump of an earlier crash: save it with rkdump save-raw {dev} (rkdump arm does that first)");
    }
    out
}

/// The raw target device of `image`'s plan, if it starts with a flattened dump stream (a
/// capture's dump nobody has saved yet).
fn pending_raw_dump(image: &Path) -> Option<String> {
    let plan = rkdump_mkinitrd::plan_of(image).ok()??.ok()?;
    let rkdump_init::plan::DeviceSpec::Path(dev) = &plan.target.device else {
        return None;
    };
    if !plan.target.is_raw() {
        return None;
    }
    crate::saveraw::holds_dump(Path::new(dev)).ok()?.then(|| dev.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips() {
        let r = ArmRecord {
            kernel: "/boot/vmlinuz-6.1.0-57-amd64".into(),
            initrd: "/var/lib/rkdump/capture.img".into(),
            initrd_size: 1_434_710,
            initrd_mtime_ns: 1_780_000_000_123_456_789,
            cmdline: "irqpoll nr_cpus=1 reset_devices console=ttyS0".into(),
            armed_at: 1_780_000_001,
        };
        assert_eq!(ArmRecord::parse(&r.render()), Some(r.clone()));
        assert_eq!(ArmRecord::parse("kernel /x\n"), None);
        assert_eq!(ArmRecord::parse(&r.render().replace("initrd_size 1434710", "initrd_size x")), None);
        assert_eq!(utc(1_709_251_199), "2024-02-29 23:59:59 UTC");
    }

    /// What status says about an image as it goes stale: current, a source changed, the image
    /// rebuilt (changed since loaded), removed; and without any record.
    #[test]
    fn status_follows_the_armed_image() {
        let t = tempfile::tempdir().unwrap();
        let run = t.path().join("run");
        let conf = t.path().join("kdump.conf");
        std::fs::write(&conf, "ext4 LABEL=x\n").unwrap();
        let img = t.path().join("capture.img");
        // An image listing its source, as `rkdump build` writes it.
        let image = |extra: &[u8]| {
            let mut w = rkdump_mkinitrd::CpioWriter::new(Vec::new());
            w.add_file(rkdump_mkinitrd::SOURCES_PATH, 0o644, format!("# x\n{}\n", conf.display()).as_bytes()).unwrap();
            w.add_file("init", 0o755, extra).unwrap();
            std::fs::write(&img, w.finish().unwrap()).unwrap();
        };
        image(b"a");
        let text = status_text(Some(256 << 20), Some(true), &run);
        assert!(text.contains("crash reservation: 256 MiB"), "{text}");
        assert!(text.contains("armed: not by rkdump arm"), "{text}");

        record(&run, &ArmRecord::now(Path::new("/boot/vmlinuz"), &img, "irqpoll").unwrap()).unwrap();
        let text = status_text(Some(256 << 20), Some(true), &run);
        assert!(text.contains(&format!("+ {} at 20", std::fs::canonicalize(&img).unwrap().display())), "{text}");
        assert!(text.contains("capture command line: irqpoll"), "{text}");
        assert!(text.contains("image: up to date with the 1 files it was built from"), "{text}");

        let later = std::fs::metadata(&img).unwrap().modified().unwrap() + std::time::Duration::from_secs(5);
        std::fs::File::options().write(true).open(&conf).unwrap().set_modified(later).unwrap();
        let text = status_text(Some(256 << 20), Some(true), &run);
        assert!(text.contains("image: stale (changed since it was built: ") && text.contains("kdump.conf"), "{text}");
        assert!(text.contains("rebuild it (rkdump build) and arm again"), "{text}");

        image(b"rebuilt");
        let text = status_text(Some(256 << 20), Some(true), &run);
        assert!(text.contains("image: changed since it was loaded: run rkdump arm again"), "{text}");

        let text = status_text(Some(256 << 20), Some(false), &run);
        assert!(text.contains("note: nothing is loaded any more"), "{text}");

        std::fs::remove_file(&img).unwrap();
        let text = status_text(Some(256 << 20), Some(true), &run);
        assert!(text.contains("image: removed since it was loaded"), "{text}");

        // An image dumping to a raw device that holds an unsaved dump.
        let dev = t.path().join("raw.dev");
        std::fs::write(&dev, rkdump_vmcore::flat::start_header()).unwrap();
        let plan = format!("rkdump-plan 1\ntarget raw {}\ncollector flat 31 zstd\n", dev.display());
        let mut w = rkdump_mkinitrd::CpioWriter::new(Vec::new());
        w.add_file(rkdump_init::plan::PLAN_PATH, 0o644, plan.as_bytes()).unwrap();
        std::fs::write(&img, w.finish().unwrap()).unwrap();
        record(&run, &ArmRecord::now(Path::new("/boot/vmlinuz"), &img, "irqpoll").unwrap()).unwrap();
        let text = status_text(Some(256 << 20), Some(true), &run);
        assert!(
            text.contains(&format!(
                "pending dump: the raw target {} holds the dump of an earlier crash",
                dev.display()
            )),
            "{text}"
        );
        std::fs::write(&dev, [0u8; 4096]).unwrap();
        assert!(!status_text(Some(256 << 20), Some(true), &run).contains("pending dump"));

        forget(&run).unwrap();
        forget(&run).unwrap();
        let text = status_text(Some(0), Some(false), &run);
        assert!(text.contains("none (boot with crashkernel="), "{text}");
        assert!(!text.contains("armed:"), "{text}");
    }
}
