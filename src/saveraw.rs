//! `rkdump save-raw DEVICE`: the dump a capture wrote onto a raw target (kdump.conf `raw`)
//! copied into a file at the next boot, as kdumpctl's `save_raw` does with `makedumpfile -R`.
//!
//! The device holds a flattened stream (makedumpfile `-F`) from its first byte. It is replayed
//! into `<path>/127.0.0.1-<YYYY-MM-DD-HH:MM:SS>/vmcore` (written as `vmcore-incomplete`,
//! fsynced, renamed; files 0600, directory 0700, like a capture), the kernel log is extracted
//! beside it, and the stream's header on the device is zeroed so the same dump is not saved
//! again (`--keep` leaves it). A device without the stream's header holds no dump: nothing is
//! done. A stream that ends early (the capture did not finish) leaves what could be read as
//! `vmcore-incomplete`, the device untouched, and an error; so does one that runs on into an
//! earlier dump's records left on the device (`rkdump_vmcore::flat` refuses a kdump header
//! rewritten with another crash time).

use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rkdump_vmcore::flat::{FLAT_HEADER_SIZE, FLAT_SIGNATURE};

/// What [`save_raw`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The device does not start with a flattened stream.
    NoDump,
    /// Saved: the dump directory, the vmcore's size, and a note when the kernel log could not
    /// be extracted.
    Saved { dir: PathBuf, bytes: u64, log_note: Option<String> },
}

/// Saves the dump on `device` under `path` (see the module doc); `now` (seconds since the
/// epoch) names the directory.
pub fn save_raw(device: &Path, path: &Path, keep: bool, now: u64) -> Result<Outcome> {
    if !holds_dump(device).with_context(|| format!("cannot read {}", device.display()))? {
        return Ok(Outcome::NoDump);
    }
    std::fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))?;
    let dir = path.join(rkdump_init::save::dump_dir_name(rkdump_init::boot::LOCAL_HOST, now));
    std::fs::DirBuilder::new().mode(0o700).create(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = dir.join("vmcore-incomplete");
    // `rkdump unflatten` (makedumpfile -R): a new 0600 file, fsynced.
    let bytes = match crate::filter::unflatten(&device.to_string_lossy(), &tmp) {
        Ok(b) => b,
        Err(e) => bail!(
            "the dump on {} is incomplete or damaged ({e:#}); what could be read is in {}; the device is left as it is",
            device.display(),
            tmp.display()
        ),
    };
    let vmcore = dir.join("vmcore");
    std::fs::rename(&tmp, &vmcore).with_context(|| format!("cannot rename {} to vmcore", tmp.display()))?;
    sync_dir(&dir)?;

    // The kernel log beside it, as a capture to a filesystem leaves it (best effort).
    let log_note = match save_log(&vmcore, &dir) {
        Ok(()) => None,
        Err(e) => Some(format!("the kernel log could not be extracted: {e:#}")),
    };
    if !keep {
        let w = std::fs::OpenOptions::new()
            .write(true)
            .open(device)
            .with_context(|| format!("cannot open {} to clear the saved dump's header", device.display()))?;
        w.write_all_at(&vec![0u8; FLAT_HEADER_SIZE], 0)
            .and_then(|()| w.sync_all())
            .with_context(|| format!("cannot clear the saved dump's header on {}", device.display()))?;
    }
    Ok(Outcome::Saved { dir, bytes, log_note })
}

/// Whether `device` starts with a flattened dump stream (a capture's dump not saved yet).
pub fn holds_dump(device: &Path) -> std::io::Result<bool> {
    let mut head = [0u8; FLAT_SIGNATURE.len()];
    match std::fs::File::open(device)?.read_exact(&mut head) {
        Ok(()) => Ok(head == FLAT_SIGNATURE),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("cannot fsync {}", dir.display()))
}

fn save_log(vmcore: &Path, dir: &Path) -> Result<()> {
    let tmp = dir.join("vmcore-dmesg.txt-incomplete");
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    crate::cli::dmesg_to(vmcore, "vmcore-dmesg", &mut f)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join("vmcore-dmesg.txt"))?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A flattened stream writing `data` at offset 0 (two records), with or without its end.
    fn stream(data: &[u8], end: bool) -> Vec<u8> {
        let mut s = rkdump_vmcore::flat::start_header().to_vec();
        let (a, b) = data.split_at(data.len() / 2);
        for (off, part) in [(0usize, a), (a.len(), b)] {
            s.extend_from_slice(&(off as i64).to_be_bytes());
            s.extend_from_slice(&(part.len() as i64).to_be_bytes());
            s.extend_from_slice(part);
        }
        if end {
            s.extend_from_slice(&(-1i64).to_be_bytes());
            s.extend_from_slice(&(-1i64).to_be_bytes());
        }
        s
    }

    /// 2024-02-29 23:59:59 UTC.
    const NOW: u64 = 1_709_251_199;

    #[test]
    fn saves_clears_and_then_finds_nothing() {
        let t = tempfile::tempdir().unwrap();
        let dev = t.path().join("disk.raw");
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let mut disk = stream(&data, true);
        // What the device held before this dump follows the stream.
        disk.extend_from_slice(&[0xAB; 8192]);
        std::fs::write(&dev, &disk).unwrap();
        let out = t.path().join("crash");
        let r = save_raw(&dev, &out, false, NOW).unwrap();
        let Outcome::Saved { dir, bytes, log_note } = r else { panic!("{r:?}") };
        assert_eq!(dir, out.join("127.0.0.1-2024-02-29-23:59:59"));
        assert_eq!(bytes, data.len() as u64);
        assert_eq!(std::fs::read(dir.join("vmcore")).unwrap(), data);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(dir.join("vmcore")).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        // Not a real dump: no kernel log, said so.
        assert!(log_note.unwrap().contains("kernel log could not be extracted"));
        let after = std::fs::read(&dev).unwrap();
        assert!(after[..FLAT_HEADER_SIZE].iter().all(|&b| b == 0));
        assert_eq!(after[FLAT_HEADER_SIZE..], disk[FLAT_HEADER_SIZE..]);
        assert_eq!(save_raw(&dev, &out, false, NOW + 1).unwrap(), Outcome::NoDump);
    }

    #[test]
    fn keep_leaves_the_device_and_an_incomplete_stream_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        let dev = t.path().join("disk.raw");
        let data = vec![7u8; 5000];
        std::fs::write(&dev, stream(&data, true)).unwrap();
        let out = t.path().join("crash");
        assert!(matches!(save_raw(&dev, &out, true, NOW).unwrap(), Outcome::Saved { .. }));
        assert!(std::fs::read(&dev).unwrap().starts_with(FLAT_SIGNATURE));

        let cut = stream(&data, false);
        std::fs::write(&dev, &cut[..cut.len() - 100]).unwrap();
        let e = save_raw(&dev, &out, false, NOW + 1).unwrap_err().to_string();
        assert!(e.contains("incomplete or damaged") && e.contains("the device is left as it is"), "{e}");
        assert!(out.join("127.0.0.1-2024-03-01-00:00:00/vmcore-incomplete").exists());
        assert!(std::fs::read(&dev).unwrap().starts_with(FLAT_SIGNATURE));

        std::fs::write(&dev, b"\x53\xefnot a stream").unwrap();
        assert_eq!(save_raw(&dev, &out, false, NOW + 2).unwrap(), Outcome::NoDump);
        assert!(save_raw(&t.path().join("missing"), &out, false, NOW).is_err());
    }
}
