//! A recording, in-memory [`Sys`] for tests: a tiny file tree, a fake clock, injected errors.
//!
//! State-changing calls are recorded in [`FakeSys::calls`] as shell-like lines
//! (`mount -t proc proc /proc`, `finit_module /lib/modules/a.ko flags=0`, `reboot reboot`), so a
//! test asserts the boot sequence as a list. Reads, writes, `exists`, `read_dir`, `sleep` and
//! the clocks are not recorded (the device wait polls them); sleeps are counted in
//! [`FakeSys::sleeps`] and advance the fake monotonic clock.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::time::Duration;

use super::{mount_options, Errno, MountFlags, NodeKind, Open, Sys, SysResult};
use crate::plan::Action;

/// One node of the fake file tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A directory.
    Dir,
    /// A regular file with its content.
    File(Vec<u8>),
    /// A block device with its content.
    Block(Vec<u8>),
    /// A character device (writes to `/dev/kmsg` are collected in [`FakeSys::kmsg`]).
    Char,
}

/// An open fake file.
#[derive(Debug)]
pub struct FakeFile {
    path: String,
    pos: u64,
}

/// A fake mapping: a copy of the mapped bytes.
#[derive(Debug)]
pub struct FakeMap(Vec<u8>);

impl Deref for FakeMap {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

/// The recording fake. Fields are public so tests can set up and inspect state directly.
#[derive(Debug, Default)]
pub struct FakeSys {
    /// The file tree, by absolute path.
    pub nodes: BTreeMap<String, Node>,
    /// Permission bits given to `mkdir`/`open(Create)`/`mknod`, by path.
    pub modes: BTreeMap<String, u32>,
    /// Recorded calls, in order.
    pub calls: Vec<String>,
    /// Everything written to the console.
    pub console: String,
    /// Records written to `/dev/kmsg` (one per write, trailing newline removed).
    pub kmsg: Vec<String>,
    /// Injected failures: a call whose recorded line starts with the prefix fails with the
    /// errno. Writes are matched as `write <path>`, mmap as `mmap <path>`.
    pub failures: Vec<(String, Errno)>,
    /// Bytes that may still be written to files under the prefix before `ENOSPC`.
    pub quota: Option<(String, u64)>,
    /// Nodes that appear when the fake monotonic clock reaches the time.
    pub appear_at: Vec<(Duration, String, Node)>,
    /// Nodes that appear when a call whose line starts with the prefix is made.
    pub appear_on: Vec<(String, String, Node)>,
    /// Content of block devices by (major, minor), for nodes created with `mknod`.
    pub block_devices: BTreeMap<(u32, u32), Vec<u8>>,
    /// Images given to `init_module`, in order.
    pub module_images: Vec<Vec<u8>>,
    /// The monotonic clock.
    pub now: Duration,
    /// The wall clock (seconds since the epoch).
    pub wall: u64,
    /// Number of `sleep` calls.
    pub sleeps: u64,
    /// Exit statuses of programs by path for `run_program` (absent: exit status 0; a program
    /// that does not exist in `nodes` fails with `ENOENT`).
    pub exit_status: BTreeMap<String, i32>,
    /// Environments `run_program` was given, in order of the calls.
    pub program_envs: Vec<Vec<(String, String)>>,
    /// Time limits `run_program` was given, in order of the calls.
    pub program_limits: Vec<Option<Duration>>,
    /// Programs that never finish: `run_program` with a limit reports them killed; without one
    /// it fails with `EDEADLK` (the real call would never return).
    pub hangs: std::collections::BTreeSet<String>,
}

fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

impl FakeSys {
    /// An empty tree holding only `/`.
    pub fn new() -> Self {
        let mut s = FakeSys::default();
        s.nodes.insert("/".into(), Node::Dir);
        s
    }

    /// Adds a node, creating its parent directories.
    pub fn add(&mut self, path: &str, node: Node) {
        let mut cur = String::new();
        let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        for (i, c) in comps.iter().enumerate() {
            cur.push('/');
            cur.push_str(c);
            if i + 1 < comps.len() {
                self.nodes.entry(cur.clone()).or_insert(Node::Dir);
            }
        }
        self.nodes.insert(cur, node);
    }

    /// Adds a regular file.
    pub fn add_file(&mut self, path: &str, content: impl Into<Vec<u8>>) {
        self.add(path, Node::File(content.into()));
    }

    /// Makes every call whose line starts with `prefix` fail with `errno`.
    pub fn fail(&mut self, prefix: &str, errno: Errno) {
        self.failures.push((prefix.to_string(), errno));
    }

    /// The content of a regular file, if there is one at `path`.
    pub fn file(&self, path: &str) -> Option<&[u8]> {
        match self.nodes.get(path) {
            Some(Node::File(d)) => Some(d),
            _ => None,
        }
    }

    /// Recorded calls starting with any of the prefixes.
    pub fn calls_matching(&self, prefixes: &[&str]) -> Vec<String> {
        self.calls.iter().filter(|c| prefixes.iter().any(|p| c.starts_with(p))).cloned().collect()
    }

    fn settle(&mut self) {
        let now = self.now;
        let due: Vec<(String, Node)> = {
            let (due, keep): (Vec<_>, Vec<_>) =
                std::mem::take(&mut self.appear_at).into_iter().partition(|(t, _, _)| *t <= now);
            self.appear_at = keep;
            due.into_iter().map(|(_, p, n)| (p, n)).collect()
        };
        for (p, n) in due {
            self.add(&p, n);
        }
    }

    fn check(&self, line: &str) -> SysResult<()> {
        match self.failures.iter().find(|(p, _)| line.starts_with(p.as_str())) {
            Some((_, e)) => Err(*e),
            None => Ok(()),
        }
    }

    fn record(&mut self, line: String) -> SysResult<()> {
        self.settle();
        let triggered: Vec<(String, Node)> = self
            .appear_on
            .iter()
            .filter(|(p, _, _)| line.starts_with(p.as_str()))
            .map(|(_, path, n)| (path.clone(), n.clone()))
            .collect();
        let res = self.check(&line);
        self.calls.push(line);
        if res.is_ok() {
            for (p, n) in triggered {
                self.add(&p, n);
            }
        }
        res
    }

    fn data_mut(&mut self, path: &str) -> SysResult<&mut Vec<u8>> {
        match self.nodes.get_mut(path) {
            Some(Node::File(d)) | Some(Node::Block(d)) => Ok(d),
            Some(Node::Dir) => Err(Errno::ISDIR),
            Some(Node::Char) => Err(Errno::INVAL),
            None => Err(Errno::BADF),
        }
    }

    fn read_from(&mut self, path: &str, offset: u64, buf: &mut [u8]) -> SysResult<usize> {
        self.settle();
        if matches!(self.nodes.get(path), Some(Node::Char)) {
            return Ok(0);
        }
        let data = self.data_mut(path)?;
        let start = usize::try_from(offset).map_err(|_| Errno::OVERFLOW)?.min(data.len());
        let n = buf.len().min(data.len() - start);
        buf[..n].copy_from_slice(&data[start..start + n]);
        Ok(n)
    }
}

impl Sys for FakeSys {
    type File = FakeFile;
    type Map = FakeMap;

    fn mount(&mut self, source: &str, target: &str, fstype: &str, flags: MountFlags, data: &str) -> SysResult<()> {
        let opts = mount_options(flags, data);
        let opts = if opts.is_empty() { String::new() } else { format!(" -o {opts}") };
        self.record(format!("mount -t {fstype}{opts} {source} {target}"))?;
        match self.nodes.get(target) {
            Some(Node::Dir) => Ok(()),
            Some(_) => Err(Errno::NOTDIR),
            None => Err(Errno::NOENT),
        }
    }

    fn umount(&mut self, target: &str) -> SysResult<()> {
        self.record(format!("umount {target}"))
    }

    fn mkdir(&mut self, path: &str, mode: u32) -> SysResult<()> {
        self.record(format!("mkdir -m {mode:o} {path}"))?;
        if self.nodes.contains_key(path) {
            return Err(Errno::EXIST);
        }
        if self.nodes.get(parent(path)) != Some(&Node::Dir) {
            return Err(Errno::NOENT);
        }
        self.nodes.insert(path.to_string(), Node::Dir);
        self.modes.insert(path.to_string(), mode);
        Ok(())
    }

    fn mknod(&mut self, path: &str, kind: NodeKind, major: u32, minor: u32) -> SysResult<()> {
        let k = if kind == NodeKind::Block { 'b' } else { 'c' };
        self.record(format!("mknod {path} {k} {major} {minor}"))?;
        if self.nodes.contains_key(path) {
            return Err(Errno::EXIST);
        }
        if self.nodes.get(parent(path)) != Some(&Node::Dir) {
            return Err(Errno::NOENT);
        }
        let node = if kind == NodeKind::Block {
            Node::Block(self.block_devices.get(&(major, minor)).cloned().unwrap_or_default())
        } else {
            Node::Char
        };
        self.nodes.insert(path.to_string(), node);
        Ok(())
    }

    fn exists(&mut self, path: &str) -> bool {
        self.settle();
        self.nodes.contains_key(path)
    }

    fn open(&mut self, path: &str, how: Open) -> SysResult<FakeFile> {
        let what = match how {
            Open::Read => "read".to_string(),
            Open::ReadDevice => "device".to_string(),
            Open::Write => "write".to_string(),
            Open::Create(m) => format!("create {m:o}"),
            Open::Directory => "dir".to_string(),
        };
        self.record(format!("open {path} {what}"))?;
        match (how, self.nodes.get(path)) {
            (Open::Create(mode), None | Some(Node::File(_))) => {
                if self.nodes.get(parent(path)) != Some(&Node::Dir) {
                    return Err(Errno::NOENT);
                }
                self.nodes.insert(path.to_string(), Node::File(Vec::new()));
                self.modes.insert(path.to_string(), mode);
            }
            (Open::Create(_), Some(Node::Dir)) => return Err(Errno::ISDIR),
            (_, None) => return Err(Errno::NOENT),
            (Open::Directory, Some(n)) if *n != Node::Dir => return Err(Errno::NOTDIR),
            (Open::Read | Open::ReadDevice | Open::Write, Some(Node::Dir)) => return Err(Errno::ISDIR),
            _ => {}
        }
        Ok(FakeFile { path: path.to_string(), pos: 0 })
    }

    fn read(&mut self, file: &mut FakeFile, buf: &mut [u8]) -> SysResult<usize> {
        let n = self.read_from(&file.path.clone(), file.pos, buf)?;
        file.pos += n as u64;
        Ok(n)
    }

    fn read_at(&mut self, file: &mut FakeFile, offset: u64, buf: &mut [u8]) -> SysResult<usize> {
        self.read_from(&file.path.clone(), offset, buf)
    }

    fn write(&mut self, file: &mut FakeFile, buf: &[u8]) -> SysResult<usize> {
        self.check(&format!("write {}", file.path))?;
        if file.path == "/dev/kmsg" {
            let text = String::from_utf8_lossy(buf);
            self.kmsg.push(text.trim_end_matches('\n').to_string());
            return Ok(buf.len());
        }
        if matches!(self.nodes.get(&file.path), Some(Node::Char)) {
            return Ok(buf.len());
        }
        let mut n = buf.len();
        if let Some((prefix, left)) = &mut self.quota {
            if file.path.starts_with(prefix.as_str()) {
                if *left == 0 {
                    return Err(Errno::NOSPC);
                }
                n = n.min(usize::try_from(*left).unwrap_or(usize::MAX));
                *left -= n as u64;
            }
        }
        let pos = usize::try_from(file.pos).map_err(|_| Errno::OVERFLOW)?;
        let data = self.data_mut(&file.path)?;
        if data.len() < pos + n {
            data.resize(pos + n, 0);
        }
        data[pos..pos + n].copy_from_slice(&buf[..n]);
        file.pos += n as u64;
        Ok(n)
    }

    fn fsync(&mut self, file: &mut FakeFile) -> SysResult<()> {
        self.record(format!("fsync {}", file.path))
    }

    fn size(&mut self, file: &mut FakeFile) -> SysResult<u64> {
        let path = file.path.clone();
        Ok(self.data_mut(&path)?.len() as u64)
    }

    fn mmap(&mut self, file: &FakeFile, offset: u64, len: usize) -> SysResult<FakeMap> {
        self.record(format!("mmap {} {offset} {len}", file.path))?;
        if offset % 4096 != 0 || len == 0 {
            return Err(Errno::INVAL);
        }
        let path = file.path.clone();
        let data = self.data_mut(&path)?;
        let start = usize::try_from(offset).map_err(|_| Errno::OVERFLOW)?;
        let end = start.checked_add(len).ok_or(Errno::OVERFLOW)?;
        // Like mmap_vmcore: the page-rounded mapping must lie inside the file.
        if end.div_ceil(4096) * 4096 > data.len() {
            return Err(Errno::INVAL);
        }
        Ok(FakeMap(data[start..end].to_vec()))
    }

    fn rename(&mut self, from: &str, to: &str) -> SysResult<()> {
        self.record(format!("rename {from} {to}"))?;
        let node = self.nodes.remove(from).ok_or(Errno::NOENT)?;
        self.nodes.insert(to.to_string(), node);
        if let Some(m) = self.modes.remove(from) {
            self.modes.insert(to.to_string(), m);
        }
        Ok(())
    }

    fn read_dir(&mut self, path: &str) -> SysResult<Vec<String>> {
        self.settle();
        match self.nodes.get(path) {
            Some(Node::Dir) => {}
            Some(_) => return Err(Errno::NOTDIR),
            None => return Err(Errno::NOENT),
        }
        let prefix = if path == "/" { "/".to_string() } else { format!("{path}/") };
        Ok(self
            .nodes
            .keys()
            .filter_map(|k| k.strip_prefix(prefix.as_str()))
            .filter(|rest| !rest.is_empty() && !rest.contains('/'))
            .map(str::to_string)
            .collect())
    }

    fn finit_module(&mut self, file: &FakeFile, params: &str, flags: u32) -> SysResult<()> {
        let params = if params.is_empty() { String::new() } else { format!(" {params}") };
        self.record(format!("finit_module {} flags={flags}{params}", file.path))
    }

    fn init_module(&mut self, image: &[u8], params: &str) -> SysResult<()> {
        let params = if params.is_empty() { String::new() } else { format!(" {params}") };
        self.record(format!("init_module {} bytes{params}", image.len()))?;
        self.module_images.push(image.to_vec());
        Ok(())
    }

    fn ensure_console(&mut self) -> SysResult<bool> {
        self.record("ensure_console".into())?;
        Ok(false)
    }

    fn console(&mut self, text: &str) {
        self.console.push_str(text);
    }

    fn sleep(&mut self, duration: Duration) {
        self.sleeps += 1;
        self.now += duration;
        self.settle();
    }

    fn monotonic(&mut self) -> Duration {
        self.settle();
        self.now
    }

    fn wall_clock(&mut self) -> u64 {
        self.wall
    }

    fn sync(&mut self) {
        let _ = self.record("sync".into());
    }

    fn reboot(&mut self, action: Action) -> SysResult<()> {
        self.record(format!("reboot {}", action.as_str()))
    }

    fn run_program(
        &mut self,
        program: &str,
        args: &[&str],
        env: &[(&str, &str)],
        limit: Option<Duration>,
    ) -> SysResult<Option<i32>> {
        let mut line = format!("run {program}");
        for a in args {
            line += " ";
            line += a;
        }
        self.record(line)?;
        self.program_envs.push(env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        self.program_limits.push(limit);
        if !matches!(self.nodes.get(program), Some(Node::File(_))) {
            return Err(Errno::NOENT);
        }
        if self.hangs.contains(program) {
            return match limit {
                Some(l) => {
                    self.now += l;
                    Ok(None)
                }
                None => Err(Errno::DEADLK),
            };
        }
        Ok(Some(self.exit_status.get(program).copied().unwrap_or(0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_basics() {
        let mut s = FakeSys::new();
        s.add_file("/a/b/c", b"xyz".to_vec());
        assert_eq!(s.read_dir("/a").unwrap(), vec!["b".to_string()]);
        assert_eq!(s.mkdir("/a/b", 0o755), Err(Errno::EXIST));
        assert_eq!(s.mkdir("/x/y", 0o755), Err(Errno::NOENT));
        let mut f = s.open("/a/b/c", Open::Read).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(s.read(&mut f, &mut buf).unwrap(), 3);
        assert_eq!(&buf[..3], b"xyz");
        s.quota = Some(("/out".into(), 2));
        s.add("/out", Node::Dir);
        let mut o = s.open("/out/f", Open::Create(0o600)).unwrap();
        assert_eq!(s.write(&mut o, b"abc").unwrap(), 2);
        assert_eq!(s.write(&mut o, b"c"), Err(Errno::NOSPC));
        assert_eq!(s.file("/out/f").unwrap(), b"ab");
    }
}
