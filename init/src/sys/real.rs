//! The real [`Sys`]: rustix system calls (and std for plain file I/O). This is the only module
//! of the crate with `unsafe` (the `/proc/vmcore` mapping).

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::ptr::NonNull;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustix::fs::{FileType, Mode, OFlags, CWD};
use rustix::mm::{MapFlags, ProtFlags};
use rustix::mount::UnmountFlags;
use rustix::system::RebootCommand;

use super::{Errno, MountFlags, NodeKind, Open, Sys, SysResult};
use crate::plan::Action;

/// The machine's kernel.
#[derive(Debug)]
pub struct RealSys {
    start: Instant,
}

impl RealSys {
    /// A handle on the real system calls.
    pub fn new() -> Self {
        RealSys { start: Instant::now() }
    }
}

impl Default for RealSys {
    fn default() -> Self {
        Self::new()
    }
}

/// A read-only `MAP_PRIVATE` mapping, unmapped on drop.
#[derive(Debug)]
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl std::ops::Deref for Mapping {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` is the start of a live PROT_READ mapping of `len` bytes created by
        // `RealSys::mmap` and only unmapped in `drop`; nothing writes through it (MAP_PRIVATE,
        // read-only), so a shared slice over it is valid for the borrow of `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the range is exactly the mapping returned by mmap and no slice borrowed from
        // it outlives `self` (Deref ties the borrow to `self`).
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

fn io_errno(e: &std::io::Error) -> Errno {
    Errno::from_io_error(e).unwrap_or(Errno::IO)
}

fn cstring(s: &str) -> SysResult<CString> {
    CString::new(s).map_err(|_| Errno::INVAL)
}

fn dev_t(major: u32, minor: u32) -> u64 {
    // The glibc/musl `makedev` encoding.
    let (ma, mi) = (u64::from(major), u64::from(minor));
    ((ma & 0xffff_f000) << 32) | ((ma & 0xfff) << 8) | ((mi & 0xffff_ff00) << 12) | (mi & 0xff)
}

impl Sys for RealSys {
    type File = File;
    type Map = Mapping;

    fn mount(&mut self, source: &str, target: &str, fstype: &str, flags: MountFlags, data: &str) -> SysResult<()> {
        let data_c = cstring(data)?;
        let data_arg = if data.is_empty() { None } else { Some(data_c.as_c_str()) };
        rustix::mount::mount(source, target, fstype, flags, data_arg)
    }

    fn umount(&mut self, target: &str) -> SysResult<()> {
        rustix::mount::unmount(target, UnmountFlags::empty())
    }

    fn mkdir(&mut self, path: &str, mode: u32) -> SysResult<()> {
        rustix::fs::mkdir(path, Mode::from_raw_mode(mode))
    }

    fn mknod(&mut self, path: &str, kind: NodeKind, major: u32, minor: u32) -> SysResult<()> {
        let ft = match kind {
            NodeKind::Block => FileType::BlockDevice,
            NodeKind::Char => FileType::CharacterDevice,
        };
        rustix::fs::mknodat(CWD, path, ft, Mode::from_raw_mode(0o600), dev_t(major, minor))
    }

    fn exists(&mut self, path: &str) -> bool {
        rustix::fs::access(path, rustix::fs::Access::EXISTS).is_ok()
    }

    fn open(&mut self, path: &str, how: Open) -> SysResult<File> {
        let mut o = std::fs::OpenOptions::new();
        match how {
            Open::Read => {
                o.read(true);
            }
            Open::ReadDevice => {
                o.read(true).custom_flags(OFlags::NONBLOCK.bits() as i32);
            }
            Open::Write => {
                o.write(true);
            }
            Open::Create(mode) => {
                o.write(true).create(true).truncate(true).mode(mode);
            }
            Open::Directory => {
                o.read(true).custom_flags(OFlags::DIRECTORY.bits() as i32);
            }
        }
        // std opens with O_CLOEXEC.
        o.open(path).map_err(|e| io_errno(&e))
    }

    fn read(&mut self, file: &mut File, buf: &mut [u8]) -> SysResult<usize> {
        file.read(buf).map_err(|e| io_errno(&e))
    }

    fn read_at(&mut self, file: &mut File, offset: u64, buf: &mut [u8]) -> SysResult<usize> {
        file.read_at(buf, offset).map_err(|e| io_errno(&e))
    }

    fn write(&mut self, file: &mut File, buf: &[u8]) -> SysResult<usize> {
        file.write(buf).map_err(|e| io_errno(&e))
    }

    fn fsync(&mut self, file: &mut File) -> SysResult<()> {
        rustix::fs::fsync(file.as_fd())
    }

    fn size(&mut self, file: &mut File) -> SysResult<u64> {
        let st = rustix::fs::fstat(file.as_fd())?;
        u64::try_from(st.st_size).map_err(|_| Errno::OVERFLOW)
    }

    fn mmap(&mut self, file: &File, offset: u64, len: usize) -> SysResult<Mapping> {
        if len == 0 {
            return Err(Errno::INVAL);
        }
        // SAFETY: a fresh mapping chosen by the kernel (NULL hint) cannot alias any Rust
        // object; it is read-only and private, and it is owned by the returned `Mapping`,
        // which unmaps it exactly once. /proc/vmcore is not truncated while we read it.
        let ptr = unsafe {
            rustix::mm::mmap(std::ptr::null_mut(), len, ProtFlags::READ, MapFlags::PRIVATE, file.as_fd(), offset)?
        };
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or(Errno::NOMEM)?;
        Ok(Mapping { ptr, len })
    }

    fn rename(&mut self, from: &str, to: &str) -> SysResult<()> {
        rustix::fs::rename(from, to)
    }

    fn read_dir(&mut self, path: &str) -> SysResult<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path).map_err(|e| io_errno(&e))? {
            let entry = entry.map_err(|e| io_errno(&e))?;
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn finit_module(&mut self, file: &File, params: &str, flags: u32) -> SysResult<()> {
        let params = cstring(params)?;
        let flags = i32::try_from(flags).map_err(|_| Errno::INVAL)?;
        rustix::system::finit_module(file.as_fd(), &params, flags)
    }

    fn init_module(&mut self, image: &[u8], params: &str) -> SysResult<()> {
        let params = cstring(params)?;
        rustix::system::init_module(image, &params)
    }

    fn ensure_console(&mut self) -> SysResult<bool> {
        let ok = [rustix::stdio::stdin(), rustix::stdio::stdout(), rustix::stdio::stderr()]
            .iter()
            .all(|fd| rustix::io::fcntl_getfd(fd).is_ok());
        if ok {
            return Ok(false);
        }
        if !self.exists("/dev/console") {
            // /dev/console is char 5:1.
            self.mknod("/dev/console", NodeKind::Char, 5, 1)?;
        }
        let console = rustix::fs::open("/dev/console", OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC, Mode::empty())?;
        // dup2 clears O_CLOEXEC on the new descriptors; `console` itself is closed on drop.
        rustix::stdio::dup2_stdin(&console)?;
        rustix::stdio::dup2_stdout(&console)?;
        rustix::stdio::dup2_stderr(&console)?;
        Ok(true)
    }

    fn console(&mut self, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }

    fn sleep(&mut self, duration: Duration) {
        std::thread::sleep(duration);
    }

    fn monotonic(&mut self) -> Duration {
        self.start.elapsed()
    }

    fn wall_clock(&mut self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
    }

    fn sync(&mut self) {
        rustix::fs::sync();
    }

    fn reboot(&mut self, action: Action) -> SysResult<()> {
        let cmd = match action {
            Action::Reboot => RebootCommand::Restart,
            Action::Halt => RebootCommand::Halt,
            Action::Poweroff => RebootCommand::PowerOff,
        };
        rustix::system::reboot(cmd)
    }

    fn run_program(
        &mut self,
        program: &str,
        args: &[&str],
        env: &[(&str, &str)],
        limit: Option<Duration>,
    ) -> SysResult<Option<i32>> {
        use std::os::unix::process::ExitStatusExt;
        let mut child = std::process::Command::new(program)
            .args(args)
            .env_clear()
            .envs(env.iter().copied())
            .current_dir("/")
            .spawn()
            .map_err(|e| io_errno(&e))?;
        let code = |s: std::process::ExitStatus| s.code().or_else(|| s.signal().map(|s| 128 + s)).unwrap_or(255);
        let Some(limit) = limit else {
            return child.wait().map(|s| Some(code(s))).map_err(|e| io_errno(&e));
        };
        let start = std::time::Instant::now();
        loop {
            if let Some(s) = child.try_wait().map_err(|e| io_errno(&e))? {
                return Ok(Some(code(s)));
            }
            if start.elapsed() >= limit {
                // Only the program itself: what it started is left to PID 1, which reboots soon.
                let _ = child.kill();
                let _ = child.wait();
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makedev_matches_the_libc_encoding() {
        assert_eq!(dev_t(8, 1), 0x801);
        assert_eq!(dev_t(259, 0), 0x10300);
        assert_eq!(dev_t(1, 11), 0x10b);
        assert_eq!(dev_t(8, 300), (8 << 8) | (300 & 0xff) | ((300 & !0xff) << 12));
    }

    #[test]
    fn mmap_reads_a_regular_file() {
        let dir = std::env::temp_dir().join(format!("rkdump-init-mmap-{}", std::process::id()));
        std::fs::write(&dir, b"hello mapping").unwrap();
        let mut sys = RealSys::new();
        let mut f = sys.open(dir.to_str().unwrap(), Open::Read).unwrap();
        assert_eq!(sys.size(&mut f).unwrap(), 13);
        let m = sys.mmap(&f, 0, 13).unwrap();
        assert_eq!(&m[..], b"hello mapping");
        drop(m);
        std::fs::remove_file(&dir).unwrap();
    }
}
