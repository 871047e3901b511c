//! Deterministic cpio "newc" (SVR4, magic `070701`) writer and reader.
//!
//! Format facts (kernel `Documentation/driver-api/early-userspace/buffer-format.rst`,
//! `init/initramfs.c`): each entry is a 110-byte ASCII header — the magic `070701` then 13
//! fields of 8 hex digits (ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor,
//! rdevmajor, rdevminor, namesize including the NUL, check = 0) — followed by the NUL-terminated
//! name, padded with NULs to a multiple of 4 bytes counted from the header start, then the data,
//! padded likewise. The archive ends with an entry named `TRAILER!!!`.
//!
//! Determinism: [`CpioWriter`] buffers entries and writes them at [`CpioWriter::finish`] sorted
//! by path (byte order, so a parent always precedes its children), adds every missing parent
//! directory (0755), numbers inodes 1, 2, 3... in output order, writes uid/gid 0 and one mtime
//! for every entry (the caller passes `SOURCE_DATE_EPOCH` or 0). Paths are stored relative
//! (`init`, `dev/console`), as the kernel and `cpio -i` expect.

use std::collections::BTreeMap;
use std::io::Write;

/// File type bits of `st_mode` (`S_IFMT` and friends).
const S_IFMT: u32 = 0o170_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;
const S_IFBLK: u32 = 0o060_000;
const S_IFIFO: u32 = 0o010_000;
const S_IFSOCK: u32 = 0o140_000;

/// Magic of a newc archive without checksums.
pub const NEWC_MAGIC: &[u8; 6] = b"070701";
/// Magic of a newc archive with checksums (read only).
pub const CRC_MAGIC: &[u8; 6] = b"070702";
/// Size of a newc header.
pub const HEADER_LEN: usize = 110;
/// Name of the last entry.
pub const TRAILER: &str = "TRAILER!!!";

/// Errors of the cpio writer and reader.
#[derive(Debug, thiserror::Error)]
pub enum CpioError {
    /// The output could not be written.
    #[error("cannot write cpio archive: {0}")]
    Write(#[from] std::io::Error),
    /// A path is empty, contains `..`, a NUL, or is the trailer name.
    #[error("invalid cpio path {0:?}")]
    BadPath(String),
    /// A path was added twice with different contents.
    #[error("cpio path {0:?} added twice")]
    Duplicate(String),
    /// A parent of a path is not a directory.
    #[error("cpio path {path:?}: parent {parent:?} is not a directory")]
    ParentNotDir {
        /// The entry.
        path: String,
        /// Its non-directory ancestor.
        parent: String,
    },
    /// A file is larger than newc's 32-bit size field.
    #[error("cpio entry {0:?} is larger than 4 GiB, which newc cannot record")]
    TooLarge(String),
    /// The archive is malformed.
    #[error("malformed cpio archive at offset {offset}: {what}")]
    Malformed {
        /// Byte offset of the entry header.
        offset: usize,
        /// What is wrong.
        what: String,
    },
}

/// The type of an archive entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EntryKind {
    /// Directory.
    Dir,
    /// Regular file.
    File,
    /// Symbolic link (the data is the target).
    Symlink,
    /// Character device.
    CharDevice,
    /// Block device.
    BlockDevice,
    /// Named pipe.
    Fifo,
    /// Socket.
    Socket,
    /// Any other `S_IFMT` value.
    Unknown,
}

impl EntryKind {
    /// From `st_mode`.
    pub fn from_mode(mode: u32) -> Self {
        match mode & S_IFMT {
            S_IFDIR => EntryKind::Dir,
            S_IFREG => EntryKind::File,
            S_IFLNK => EntryKind::Symlink,
            S_IFCHR => EntryKind::CharDevice,
            S_IFBLK => EntryKind::BlockDevice,
            S_IFIFO => EntryKind::Fifo,
            S_IFSOCK => EntryKind::Socket,
            _ => EntryKind::Unknown,
        }
    }

    /// The `ls -l` letter.
    pub fn letter(self) -> char {
        match self {
            EntryKind::Dir => 'd',
            EntryKind::File => '-',
            EntryKind::Symlink => 'l',
            EntryKind::CharDevice => 'c',
            EntryKind::BlockDevice => 'b',
            EntryKind::Fifo => 'p',
            EntryKind::Socket => 's',
            EntryKind::Unknown => '?',
        }
    }
}

/// One entry read back from an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path as stored (relative, no leading `/`).
    pub path: String,
    /// Full `st_mode` (type and permission bits).
    pub mode: u32,
    /// Type from `mode`.
    pub kind: EntryKind,
    /// Data size in bytes (for symlinks: the target length).
    pub size: u64,
    /// uid as stored.
    pub uid: u32,
    /// gid as stored.
    pub gid: u32,
    /// mtime as stored.
    pub mtime: u32,
    /// Inode number as stored.
    pub ino: u32,
    /// Device numbers for character/block devices.
    pub rdev: (u32, u32),
    /// Symlink target, for symlinks.
    pub link_target: Option<String>,
}

impl Entry {
    /// Permission bits (`mode & 0o7777`).
    pub fn perm(&self) -> u32 {
        self.mode & 0o7777
    }

    /// `ls -l` style permissions, e.g. `drwxr-xr-x`, `drwxrwxrwt`.
    pub fn mode_string(&self) -> String {
        let m = self.mode;
        let bit = |mask: u32, c: char| if m & mask != 0 { c } else { '-' };
        let special = |x: char, set: bool, upper: char, lower: char| match (x != '-', set) {
            (true, true) => lower,
            (false, true) => upper,
            _ => x,
        };
        let mut s = String::with_capacity(10);
        s.push(self.kind.letter());
        s.push(bit(0o400, 'r'));
        s.push(bit(0o200, 'w'));
        s.push(special(bit(0o100, 'x'), m & 0o4000 != 0, 'S', 's'));
        s.push(bit(0o040, 'r'));
        s.push(bit(0o020, 'w'));
        s.push(special(bit(0o010, 'x'), m & 0o2000 != 0, 'S', 's'));
        s.push(bit(0o004, 'r'));
        s.push(bit(0o002, 'w'));
        s.push(special(bit(0o001, 'x'), m & 0o1000 != 0, 'T', 't'));
        s
    }
}

/// One `rkdump build --list` line: mode, uid, gid, size (or `major, minor`), path, link target.
impl std::fmt::Display for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let size = match self.kind {
            EntryKind::CharDevice | EntryKind::BlockDevice => {
                format!("{}, {}", self.rdev.0, self.rdev.1)
            }
            _ => self.size.to_string(),
        };
        write!(f, "{} {:>4} {:>4} {:>10} /{}", self.mode_string(), self.uid, self.gid, size, self.path)?;
        if let Some(t) = &self.link_target {
            write!(f, " -> {t}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir,
    File(Vec<u8>),
    Symlink(String),
    CharDevice(u32, u32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pending {
    mode: u32,
    node: Node,
}

/// A deterministic newc writer. Entries are buffered and written sorted at [`finish`].
///
/// [`finish`]: CpioWriter::finish
#[derive(Debug)]
pub struct CpioWriter<W: Write> {
    out: W,
    mtime: u32,
    entries: BTreeMap<String, Pending>,
}

fn normalize(path: &str) -> Result<String, CpioError> {
    let trimmed = path.trim_start_matches('/').trim_end_matches('/');
    let bad = || CpioError::BadPath(path.to_string());
    if trimmed.is_empty() || trimmed == TRAILER || trimmed.contains('\0') {
        return Err(bad());
    }
    let mut parts = Vec::new();
    for c in trimmed.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(bad()),
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return Err(bad());
    }
    Ok(parts.join("/"))
}

impl<W: Write> CpioWriter<W> {
    /// A writer with mtime 0 for every entry.
    pub fn new(out: W) -> Self {
        CpioWriter { out, mtime: 0, entries: BTreeMap::new() }
    }

    /// Sets the mtime written for every entry (e.g. `SOURCE_DATE_EPOCH`).
    pub fn with_mtime(mut self, mtime: u32) -> Self {
        self.mtime = mtime;
        self
    }

    fn insert(&mut self, path: &str, mode: u32, node: Node) -> Result<(), CpioError> {
        let path = normalize(path)?;
        let pending = Pending { mode, node };
        match self.entries.get(&path) {
            // Adding the same directory twice is harmless; the later mode wins.
            Some(old) if old.node == Node::Dir && pending.node == Node::Dir => {}
            Some(old) if *old == pending => {}
            Some(_) => return Err(CpioError::Duplicate(path)),
            None => {}
        }
        self.entries.insert(path, pending);
        Ok(())
    }

    /// Adds a directory (`mode`: permission bits, e.g. 0o755).
    pub fn add_dir(&mut self, path: &str, mode: u32) -> Result<(), CpioError> {
        self.insert(path, S_IFDIR | (mode & 0o7777), Node::Dir)
    }

    /// Adds a regular file.
    pub fn add_file(&mut self, path: &str, mode: u32, data: &[u8]) -> Result<(), CpioError> {
        if u32::try_from(data.len()).is_err() {
            return Err(CpioError::TooLarge(path.to_string()));
        }
        self.insert(path, S_IFREG | (mode & 0o7777), Node::File(data.to_vec()))
    }

    /// Adds a symbolic link (mode 0777).
    pub fn add_symlink(&mut self, path: &str, target: &str) -> Result<(), CpioError> {
        if target.is_empty() || target.contains('\0') {
            return Err(CpioError::BadPath(target.to_string()));
        }
        self.insert(path, S_IFLNK | 0o777, Node::Symlink(target.to_string()))
    }

    /// Adds a character device node.
    pub fn add_char_device(&mut self, path: &str, mode: u32, major: u32, minor: u32) -> Result<(), CpioError> {
        self.insert(path, S_IFCHR | (mode & 0o7777), Node::CharDevice(major, minor))
    }

    /// Sum of the file and symlink data added so far.
    pub fn data_len(&self) -> u64 {
        self.entries
            .values()
            .map(|p| match &p.node {
                Node::File(d) => d.len() as u64,
                Node::Symlink(t) => t.len() as u64,
                _ => 0,
            })
            .sum()
    }

    /// Writes the archive (missing parents added, sorted, trailer) and returns the output.
    pub fn finish(mut self) -> Result<W, CpioError> {
        // Every parent directory must exist and be a directory.
        let paths: Vec<String> = self.entries.keys().cloned().collect();
        for path in &paths {
            let mut end = 0;
            while let Some(pos) = path[end..].find('/') {
                let parent = &path[..end + pos];
                match self.entries.get(parent) {
                    Some(p) if p.node != Node::Dir => {
                        return Err(CpioError::ParentNotDir { path: path.clone(), parent: parent.to_string() })
                    }
                    Some(_) => {}
                    None => {
                        self.entries.insert(parent.to_string(), Pending { mode: S_IFDIR | 0o755, node: Node::Dir });
                    }
                }
                end += pos + 1;
            }
        }
        let mut offset = 0usize;
        let mut ino = 0u32;
        let entries = std::mem::take(&mut self.entries);
        for (path, p) in &entries {
            ino += 1;
            let (data, nlink, rdev): (&[u8], u32, (u32, u32)) = match &p.node {
                Node::Dir => (&[], 2, (0, 0)),
                Node::File(d) => (d, 1, (0, 0)),
                Node::Symlink(t) => (t.as_bytes(), 1, (0, 0)),
                Node::CharDevice(a, b) => (&[], 1, (*a, *b)),
            };
            offset = self.write_entry(offset, path, ino, p.mode, nlink, data, rdev)?;
        }
        offset = self.write_entry(offset, TRAILER, 0, 0, 1, &[], (0, 0))?;
        // Pad the archive to 512 bytes like GNU cpio: harmless, and concatenation-friendly.
        let pad = (512 - offset % 512) % 512;
        self.out.write_all(&vec![0u8; pad])?;
        self.out.flush()?;
        Ok(self.out)
    }

    #[allow(clippy::too_many_arguments)]
    fn write_entry(
        &mut self,
        offset: usize,
        name: &str,
        ino: u32,
        mode: u32,
        nlink: u32,
        data: &[u8],
        rdev: (u32, u32),
    ) -> Result<usize, CpioError> {
        let size = u32::try_from(data.len()).map_err(|_| CpioError::TooLarge(name.to_string()))?;
        let namesize = u32::try_from(name.len() + 1).map_err(|_| CpioError::BadPath(name.to_string()))?;
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            ino, mode, 0, 0, nlink, self.mtime, size, 0, 0, rdev.0, rdev.1, namesize, 0
        );
        debug_assert_eq!(header.len(), HEADER_LEN);
        self.out.write_all(header.as_bytes())?;
        self.out.write_all(name.as_bytes())?;
        let mut pos = offset + HEADER_LEN + name.len();
        let npad = 1 + (4 - (pos + 1) % 4) % 4;
        self.out.write_all(&[0u8; 4][..npad])?;
        pos += npad;
        self.out.write_all(data)?;
        pos += data.len();
        let dpad = (4 - pos % 4) % 4;
        self.out.write_all(&[0u8; 3][..dpad])?;
        Ok(pos + dpad)
    }
}

fn hex_field(data: &[u8], at: usize, offset: usize) -> Result<u32, CpioError> {
    let malformed = |what: String| CpioError::Malformed { offset, what };
    let end = at.checked_add(8).ok_or_else(|| malformed("header overflow".into()))?;
    let s = data.get(at..end).ok_or_else(|| malformed("truncated header".into()))?;
    let s = std::str::from_utf8(s).map_err(|_| malformed("non-ASCII header field".into()))?;
    u32::from_str_radix(s, 16).map_err(|_| malformed(format!("bad hex field {s:?}")))
}

fn align4(n: usize) -> Option<usize> {
    n.checked_add(3).map(|v| v & !3)
}

/// Entries of an archive, each with the byte range of its data.
pub type ParsedEntries = Vec<(Entry, std::ops::Range<usize>)>;

/// Parses one newc archive starting at `data[0]`. Returns the entries, each with its data
/// range, and the offset just after the trailer entry.
pub fn parse_archive(data: &[u8]) -> Result<(ParsedEntries, usize), CpioError> {
    let mut out = Vec::new();
    let mut off = 0usize;
    loop {
        let malformed = |what: &str| CpioError::Malformed { offset: off, what: what.to_string() };
        let magic = data.get(off..off + 6).ok_or_else(|| malformed("truncated (no trailer)"))?;
        if magic != NEWC_MAGIC && magic != CRC_MAGIC {
            return Err(malformed("bad magic (not newc 070701/070702)"));
        }
        let f = |i: usize| hex_field(data, off + 6 + i * 8, off);
        let ino = f(0)?;
        let mode = f(1)?;
        let uid = f(2)?;
        let gid = f(3)?;
        let mtime = f(5)?;
        let size = f(6)? as usize;
        let rdev = (f(9)?, f(10)?);
        let namesize = f(11)? as usize;
        if namesize == 0 {
            return Err(malformed("zero name size"));
        }
        let name_start = off.checked_add(HEADER_LEN).ok_or_else(|| malformed("offset overflow"))?;
        let name_end = name_start.checked_add(namesize).ok_or_else(|| malformed("offset overflow"))?;
        let name_bytes = data.get(name_start..name_end).ok_or_else(|| malformed("truncated name"))?;
        let name_bytes = name_bytes.strip_suffix(&[0]).ok_or_else(|| malformed("name not NUL-terminated"))?;
        let name = String::from_utf8_lossy(name_bytes).into_owned();
        let data_start = align4(name_end).ok_or_else(|| malformed("offset overflow"))?;
        let data_end = data_start.checked_add(size).ok_or_else(|| malformed("offset overflow"))?;
        if data_end > data.len() {
            return Err(malformed("truncated data"));
        }
        let next = align4(data_end).ok_or_else(|| malformed("offset overflow"))?;
        if name == TRAILER {
            return Ok((out, next.min(data.len())));
        }
        let kind = EntryKind::from_mode(mode);
        let link_target =
            (kind == EntryKind::Symlink).then(|| String::from_utf8_lossy(&data[data_start..data_end]).into_owned());
        out.push((
            Entry { path: name, mode, kind, size: size as u64, uid, gid, mtime, ino, rdev, link_target },
            data_start..data_end,
        ));
        off = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn sample(mtime: u32) -> Vec<u8> {
        let mut w = CpioWriter::new(Vec::new()).with_mtime(mtime);
        w.add_file("/init", 0o755, b"#!/bin/sh\necho hi\n").unwrap();
        w.add_dir("/dev", 0o755).unwrap();
        w.add_char_device("/dev/console", 0o600, 5, 1).unwrap();
        w.add_file("/lib/modules/6.1/kernel/a.ko", 0o644, &[1, 2, 3, 4, 5]).unwrap();
        w.add_symlink("/bin", "usr/bin").unwrap();
        w.add_file("/etc/rkdump/plan", 0o644, b"rkdump-plan 1\n").unwrap();
        w.add_file("/empty", 0o644, b"").unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn round_trip_own_reader() {
        let a = sample(1234);
        assert_eq!(a.len() % 512, 0);
        let (entries, end) = parse_archive(&a).unwrap();
        assert!(end <= a.len());
        let paths: Vec<&str> = entries.iter().map(|(e, _)| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "bin",
                "dev",
                "dev/console",
                "empty",
                "etc",
                "etc/rkdump",
                "etc/rkdump/plan",
                "init",
                "lib",
                "lib/modules",
                "lib/modules/6.1",
                "lib/modules/6.1/kernel",
                "lib/modules/6.1/kernel/a.ko"
            ]
        );
        for (i, (e, r)) in entries.iter().enumerate() {
            assert_eq!(e.ino as usize, i + 1);
            assert_eq!((e.uid, e.gid, e.mtime), (0, 0, 1234));
            match e.path.as_str() {
                "init" => {
                    assert_eq!(e.mode, 0o100_755);
                    assert_eq!(&a[r.clone()], b"#!/bin/sh\necho hi\n");
                }
                "dev/console" => {
                    assert_eq!(e.kind, EntryKind::CharDevice);
                    assert_eq!((e.rdev, e.perm()), ((5, 1), 0o600));
                    assert_eq!(e.to_string(), "crw-------    0    0       5, 1 /dev/console");
                }
                "bin" => {
                    assert_eq!(e.link_target.as_deref(), Some("usr/bin"));
                    assert!(e.to_string().starts_with("lrwxrwxrwx") && e.to_string().ends_with("/bin -> usr/bin"));
                }
                "lib/modules/6.1/kernel/a.ko" => assert_eq!(&a[r.clone()], &[1, 2, 3, 4, 5]),
                "lib" => {
                    assert_eq!(e.mode, 0o040_755);
                    assert_eq!(e.to_string(), format!("drwxr-xr-x    0    0          0 /lib"));
                }
                _ => {}
            }
        }
        assert_eq!(sample(1234), a, "deterministic");
    }

    #[test]
    fn rejects_bad_paths_and_conflicts() {
        let mut w = CpioWriter::new(Vec::new());
        assert!(w.add_file("../x", 0o644, b"").is_err());
        assert!(w.add_file("/", 0o644, b"").is_err());
        assert!(w.add_file("TRAILER!!!", 0o644, b"").is_err());
        w.add_file("a", 0o644, b"x").unwrap();
        assert!(matches!(w.add_file("/a", 0o644, b"y"), Err(CpioError::Duplicate(_))));
        w.add_file("a/b", 0o644, b"y").unwrap();
        assert!(matches!(w.finish(), Err(CpioError::ParentNotDir { .. })));
    }

    #[test]
    fn reader_rejects_garbage_without_panicking() {
        let a = sample(0);
        for cut in [0, 5, 50, 110, 115, 200, a.len() / 2] {
            assert!(parse_archive(&a[..cut]).is_err(), "cut {cut}");
        }
        let mut b = a.clone();
        b[10] = b'z';
        assert!(parse_archive(&b).is_err());
        // Huge size field must not allocate or panic.
        let mut c = a.clone();
        c[54..62].copy_from_slice(b"ffffffff");
        assert!(parse_archive(&c).is_err());
    }

    #[test]
    fn system_cpio_lists_and_extracts() {
        if Command::new("cpio").arg("--version").output().is_err() {
            eprintln!("skipped: no cpio tool");
            return;
        }
        let a = sample(0);
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("a.cpio");
        std::fs::write(&img, &a).unwrap();
        let out = Command::new("cpio").args(["-t", "--quiet", "-F"]).arg(&img).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let listed = String::from_utf8(out.stdout).unwrap();
        let ours: Vec<String> = parse_archive(&a).unwrap().0.into_iter().map(|(e, _)| e.path).collect();
        assert_eq!(listed.lines().collect::<Vec<_>>(), ours);
        // Extract (device nodes need root: exclude them from extraction).
        let x = dir.path().join("x");
        std::fs::create_dir(&x).unwrap();
        let out = Command::new("cpio")
            .args(["-i", "-d", "--quiet", "--no-absolute-filenames", "-f", "dev/console"])
            .stdin(std::fs::File::open(&img).unwrap())
            .current_dir(&x)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(std::fs::read(x.join("init")).unwrap(), b"#!/bin/sh\necho hi\n");
        assert_eq!(std::fs::read(x.join("lib/modules/6.1/kernel/a.ko")).unwrap(), [1, 2, 3, 4, 5]);
        assert_eq!(std::fs::read_link(x.join("bin")).unwrap().to_str(), Some("usr/bin"));
        use std::os::unix::fs::PermissionsExt;
        let m = std::fs::metadata(x.join("init")).unwrap().permissions().mode();
        assert_eq!(m & 0o777, 0o755);
        // Verbose listing shows the device node with its numbers.
        let out = Command::new("cpio").args(["-tv", "--quiet", "-F"]).arg(&img).output().unwrap();
        let v = String::from_utf8_lossy(&out.stdout);
        let console = v.lines().find(|l| l.ends_with("dev/console")).unwrap();
        assert!(console.starts_with("crw-------"), "{console}");
        assert!(console.contains("5,") && console.contains(" 1 "), "{console}");
    }
}
