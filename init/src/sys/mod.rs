//! The syscall layer: everything the capture init asks of the kernel goes through [`Sys`].
//!
//! [`real::RealSys`] is the only implementation that touches the machine (and the only module
//! of the crate with `unsafe`); [`fake::FakeSys`] is an in-memory recording stand-in used by the
//! unit tests, so the whole boot sequence runs as an ordinary test without root (the youki
//! `Syscall` pattern). Paths are `&str`: every path the init uses is built from the plan and
//! from `/sys`, both UTF-8.

use std::fmt;
use std::ops::Deref;
use std::time::Duration;

pub use rustix::io::Errno;
pub use rustix::mount::MountFlags;

use crate::plan::Action;

pub mod fake;
pub mod real;

/// Result of one system call.
pub type SysResult<T> = Result<T, Errno>;

/// `MODULE_INIT_COMPRESSED_FILE` from `<linux/module.h>` (5.17+): `finit_module` decompresses
/// the file itself (kernel built with `CONFIG_MODULE_DECOMPRESS`).
pub const MODULE_INIT_COMPRESSED_FILE: u32 = 4;

/// How [`Sys::open`] opens a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Open {
    /// `O_RDONLY`.
    Read,
    /// `O_RDONLY | O_NONBLOCK`: probing block devices (a CD drive without media must not block).
    ReadDevice,
    /// `O_WRONLY` on an existing file (`/dev/kmsg`, `/proc/sys/...`).
    Write,
    /// `O_WRONLY | O_CREAT | O_TRUNC` with the given permission bits.
    Create(u32),
    /// `O_RDONLY | O_DIRECTORY`: a directory handle, used to fsync a directory.
    Directory,
}

/// Kind of device node for [`Sys::mknod`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// A block device (`b`).
    Block,
    /// A character device (`c`).
    Char,
}

/// The capture init's view of the kernel. Every method is one system call (or a tiny fixed
/// group of them) with no policy: retries, fallbacks and messages live in the callers.
pub trait Sys {
    /// An open file.
    type File;
    /// A read-only mapping of part of a file; unmapped on drop.
    type Map: Deref<Target = [u8]>;

    /// `mount(2)`. An empty `data` passes NULL.
    fn mount(&mut self, source: &str, target: &str, fstype: &str, flags: MountFlags, data: &str) -> SysResult<()>;
    /// `umount2(target, 0)`.
    fn umount(&mut self, target: &str) -> SysResult<()>;
    /// `mkdir(2)`; an existing path gives `EEXIST`.
    fn mkdir(&mut self, path: &str, mode: u32) -> SysResult<()>;
    /// `mknod(2)` of a device node with permission bits 0600.
    fn mknod(&mut self, path: &str, kind: NodeKind, major: u32, minor: u32) -> SysResult<()>;
    /// Whether `path` exists (`access(path, F_OK)`).
    fn exists(&mut self, path: &str) -> bool;
    /// `open(2)` with `O_CLOEXEC`.
    fn open(&mut self, path: &str, how: Open) -> SysResult<Self::File>;
    /// `read(2)` at the file position.
    fn read(&mut self, file: &mut Self::File, buf: &mut [u8]) -> SysResult<usize>;
    /// `pread(2)`.
    fn read_at(&mut self, file: &mut Self::File, offset: u64, buf: &mut [u8]) -> SysResult<usize>;
    /// `write(2)`; may write less than `buf`.
    fn write(&mut self, file: &mut Self::File, buf: &[u8]) -> SysResult<usize>;
    /// `fsync(2)`.
    fn fsync(&mut self, file: &mut Self::File) -> SysResult<()>;
    /// `fstat(2)`'s `st_size`.
    fn size(&mut self, file: &mut Self::File) -> SysResult<u64>;
    /// `mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, offset)`; `offset` must be page aligned.
    fn mmap(&mut self, file: &Self::File, offset: u64, len: usize) -> SysResult<Self::Map>;
    /// `rename(2)`.
    fn rename(&mut self, from: &str, to: &str) -> SysResult<()>;
    /// The names in a directory (without `.` and `..`), sorted.
    fn read_dir(&mut self, path: &str) -> SysResult<Vec<String>>;
    /// `finit_module(2)`.
    fn finit_module(&mut self, file: &Self::File, params: &str, flags: u32) -> SysResult<()>;
    /// `init_module(2)` with an uncompressed image.
    fn init_module(&mut self, image: &[u8], params: &str) -> SysResult<()>;
    /// Make sure fds 0, 1 and 2 are open, opening `/dev/console` (creating the node if needed)
    /// when the kernel could not give PID 1 a console. Returns true if it had to reopen.
    fn ensure_console(&mut self) -> SysResult<bool>;
    /// Write text to the console (fd 1 of PID 1). Errors are ignored: there is nowhere to
    /// report them.
    fn console(&mut self, text: &str);
    /// `nanosleep(2)`.
    fn sleep(&mut self, duration: Duration);
    /// `CLOCK_MONOTONIC`, from an arbitrary origin.
    fn monotonic(&mut self) -> Duration;
    /// `CLOCK_REALTIME`, seconds since the Unix epoch (UTC).
    fn wall_clock(&mut self) -> u64;
    /// `sync(2)`.
    fn sync(&mut self);
    /// `reboot(2)` with the command for `action`; returns only on failure (or in the fake).
    fn reboot(&mut self, action: Action) -> SysResult<()>;
    /// Runs `program` with `args`, exactly the environment `env`, working directory `/` and
    /// PID 1's standard streams (the console), and waits for it, at most `limit` when given.
    /// Returns its exit status, or 128 + the signal's number when a signal ended it; `None`
    /// when it was still running at `limit` and was killed (SIGKILL).
    fn run_program(
        &mut self,
        program: &str,
        args: &[&str],
        env: &[(&str, &str)],
        limit: Option<Duration>,
    ) -> SysResult<Option<i32>>;
}

/// Formats an errno the way users read it: `No space left on device (os error 28)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OsError(pub Errno);

impl fmt::Display for OsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&std::io::Error::from_raw_os_error(self.0.raw_os_error()), f)
    }
}

impl std::error::Error for OsError {}

/// Writes all of `buf`, retrying short writes and `EINTR`. A write returning 0 is `EIO`.
/// On error, returns how many bytes were written before it.
pub fn write_all<S: Sys>(sys: &mut S, file: &mut S::File, mut buf: &[u8]) -> Result<(), (usize, Errno)> {
    let mut done = 0usize;
    while !buf.is_empty() {
        match sys.write(file, buf) {
            Ok(0) => return Err((done, Errno::IO)),
            Ok(n) => {
                let n = n.min(buf.len());
                done += n;
                buf = &buf[n..];
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err((done, e)),
        }
    }
    Ok(())
}

/// Fills `buf` with `pread` from `offset` until it is full or end of file; returns the count.
pub fn read_full_at<S: Sys>(sys: &mut S, file: &mut S::File, offset: u64, buf: &mut [u8]) -> SysResult<usize> {
    let mut done = 0usize;
    while done < buf.len() {
        let off = offset.checked_add(done as u64).ok_or(Errno::OVERFLOW)?;
        match sys.read_at(file, off, &mut buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n.min(buf.len() - done),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Reads a whole file of at most `max` bytes; a longer file is `EFBIG`.
pub fn read_file<S: Sys>(sys: &mut S, path: &str, max: usize) -> SysResult<Vec<u8>> {
    let mut file = sys.open(path, Open::Read)?;
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match sys.read(&mut file, &mut chunk) {
            Ok(0) => return Ok(out),
            Ok(n) => {
                let n = n.min(chunk.len());
                if out.len().saturating_add(n) > max {
                    return Err(Errno::FBIG);
                }
                out.extend_from_slice(&chunk[..n]);
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
}

/// `mkdir -p root/rel`: creates every missing component of `rel` below the existing
/// directory `root` (`"/"` for an absolute path) with `mode`.
pub fn mkdir_p<S: Sys>(sys: &mut S, root: &str, rel: &str, mode: u32) -> SysResult<()> {
    let mut cur = root.trim_end_matches('/').to_string();
    for comp in rel.split('/').filter(|c| !c.is_empty()) {
        cur.push('/');
        cur.push_str(comp);
        match sys.mkdir(&cur, mode) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Renders mount flags and data as `mount -o` would take them: `nosuid,nodev,mode=0755`.
pub fn mount_options(flags: MountFlags, data: &str) -> String {
    let mut parts: Vec<String> = flags.iter_names().map(|(name, _)| name.to_ascii_lowercase()).collect();
    if !data.is_empty() {
        parts.push(data.to_string());
    }
    parts.join(",")
}
