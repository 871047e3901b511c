//! Programs in the image: `kdump_pre`, `kdump_post`, `extra_bins`, the hooks of
//! `/etc/kdump/pre.d` and `post.d`, and everything they need to run.
//!
//! Each program is copied to the same absolute path in the image (the plan names hooks by that
//! path), with its closure:
//! - a `#!` script: its interpreter (`#!/usr/bin/env NAME`: `env` and NAME found on `PATH`);
//! - a dynamic ELF executable: its `PT_INTERP` loader and its `DT_NEEDED` libraries, found as
//!   the loader would (`DT_RPATH` when there is no `DT_RUNPATH`, `DT_RUNPATH`, the directories
//!   of `/etc/ld.so.conf`, the default ones), recursively; `/etc/ld.so.cache` goes along so the
//!   loader in the image finds them the same way;
//! - a static ELF executable: nothing more.
//!
//! Symbolic links are followed inside the build root (`--root`), and a file is stored under
//! the path it was asked for (no links in the image). Anything else (a file without `#!` or
//! ELF header, a library of another architecture only, a missing interpreter) is an error
//! naming the program and the path that led to it, so the capture never finds a hook it
//! cannot run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use goblin::elf::Elf;

pub use rkdump_init::plan::HOOK_PATH;

/// Library directories searched after the ones an executable or `ld.so.conf` names (the
/// loader's built-in ones on x86_64 Debian/Fedora-style systems).
const DEFAULT_LIB_DIRS: &[&str] =
    &["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"];

/// Directories the capture init mounts over (API filesystems, tmpfs, the target): a file
/// there in the image would be hidden when the hooks run.
const MOUNTED_OVER: &[&str] = &["/dev", "/proc", "/sys", "/run", "/tmp", "/kdumproot"];

/// Symlinks followed for one path before giving up (the kernel's limit).
const MAX_LINKS: usize = 40;
/// Interpreter chain depth (a script run by a script run by ...).
const MAX_DEPTH: usize = 8;

/// Why a program cannot go into the image.
#[derive(Debug, thiserror::Error)]
pub enum ProgramError {
    /// The file (or a link on its way) could not be read.
    #[error("{why}: cannot read {path}: {source}")]
    Read {
        /// Which directive or program led here.
        why: String,
        /// The path (in the build root).
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Not something the capture could execute.
    #[error("{why}: {path} {problem}")]
    NotRunnable {
        /// Which directive or program led here.
        why: String,
        /// The path.
        path: String,
        /// What is wrong.
        problem: String,
    },
    /// A library the loader would not find.
    #[error("{why}: library {name}, needed by {by}, is in none of {dirs}")]
    Library {
        /// Which directive or program led here.
        why: String,
        /// `DT_NEEDED` name.
        name: String,
        /// The file needing it.
        by: String,
        /// The directories searched.
        dirs: String,
    },
}

/// A file to put into the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramFile {
    /// Absolute path in the image (as asked for; links resolved only for reading).
    pub path: String,
    /// Where its bytes come from (links resolved, inside the build root).
    pub source: PathBuf,
    /// Why it is there (`kdump_post`, `interpreter of /etc/kdump/post.d/10-notify`...).
    pub why: String,
}

/// The build root: `/` or `--root`.
struct Root<'a> {
    dir: &'a Path,
}

impl Root<'_> {
    /// `path` (absolute, in the root) with every symbolic link resolved inside the root.
    fn resolve(&self, path: &str) -> std::io::Result<PathBuf> {
        let mut done = PathBuf::from("/");
        let mut todo: Vec<String> = path.split('/').filter(|c| !c.is_empty()).rev().map(str::to_string).collect();
        let mut links = 0;
        while let Some(c) = todo.pop() {
            match c.as_str() {
                "." => continue,
                ".." => {
                    done.pop();
                    continue;
                }
                _ => {}
            }
            let next = done.join(&c);
            let host = self.host(&next);
            match std::fs::symlink_metadata(&host) {
                Ok(m) if m.file_type().is_symlink() => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(std::io::Error::other("too many levels of symbolic links"));
                    }
                    let target = std::fs::read_link(&host)?;
                    let t = target.to_string_lossy();
                    if t.starts_with('/') {
                        done = PathBuf::from("/");
                    }
                    todo.extend(t.split('/').filter(|c| !c.is_empty()).rev().map(str::to_string));
                }
                Ok(_) => done = next,
                Err(e) => return Err(e),
            }
        }
        Ok(self.host(&done))
    }

    /// The build machine's path of `p` (absolute, in the root).
    fn host(&self, p: &Path) -> PathBuf {
        self.dir.join(p.strip_prefix("/").unwrap_or(p))
    }

    fn exists(&self, path: &str) -> bool {
        self.resolve(path).is_ok_and(|p| p.is_file())
    }
}

/// The directories `/etc/ld.so.conf` names (with its `include` globs of one `*`).
fn ld_so_conf_dirs(root: &Root, file: &str, depth: usize, out: &mut Vec<String>) {
    let Ok(text) = root.resolve(file).and_then(std::fs::read_to_string) else {
        return;
    };
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if let Some(pattern) = line.strip_prefix("include").filter(|r| r.starts_with(char::is_whitespace)) {
            if depth >= MAX_DEPTH {
                continue;
            }
            for pattern in pattern.split_whitespace() {
                let (dir, name) = pattern.rsplit_once('/').unwrap_or(("/etc", pattern));
                let (pre, post) = name.split_once('*').unwrap_or((name, ""));
                let mut files: Vec<String> = root
                    .resolve(dir)
                    .and_then(std::fs::read_dir)
                    .map(|rd| {
                        rd.flatten()
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .filter(|n| {
                                if name.contains('*') {
                                    n.starts_with(pre) && n.ends_with(post) && n.len() >= pre.len() + post.len()
                                } else {
                                    n == name
                                }
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                files.sort();
                for f in files {
                    ld_so_conf_dirs(root, &format!("{dir}/{f}"), depth + 1, out);
                }
            }
        } else if line.starts_with('/') && !out.iter().any(|d| d == line) {
            out.push(line.to_string());
        }
    }
}

/// Finds [`ProgramFile`]s: the programs and what they need.
struct Closure<'a> {
    root: Root<'a>,
    conf_dirs: Vec<String>,
    files: BTreeMap<String, ProgramFile>,
    /// Whether any dynamic executable was added (the loader's cache then goes along).
    dynamic: bool,
}

impl Closure<'_> {
    fn read(&self, path: &str, why: &str) -> Result<(PathBuf, Vec<u8>), ProgramError> {
        let err = |source| ProgramError::Read { why: why.to_string(), path: path.to_string(), source };
        let host = self.root.resolve(path).map_err(err)?;
        let data = std::fs::read(&host).map_err(err)?;
        Ok((host, data))
    }

    /// Adds the program at `path`, asked for by `why`; `direct`: named in kdump.conf or a
    /// hook directory (then it must be executable by mode too).
    fn add_program(&mut self, path: &str, why: &str, direct: bool, depth: usize) -> Result<(), ProgramError> {
        let not = |problem: String| ProgramError::NotRunnable { why: why.to_string(), path: path.to_string(), problem };
        if !path.starts_with('/') {
            return Err(not("is not an absolute path".into()));
        }
        if self.files.contains_key(path) {
            return Ok(());
        }
        if let Some(m) =
            MOUNTED_OVER.iter().find(|m| path.strip_prefix(*m).is_some_and(|r| r.is_empty() || r.starts_with('/')))
        {
            return Err(not(format!(
                "is under {m}, which the capture mounts over: move it elsewhere (e.g. /usr/local/sbin)"
            )));
        }
        if depth > MAX_DEPTH {
            return Err(not(format!("is more than {MAX_DEPTH} interpreters deep")));
        }
        let (host, data) = self.read(path, why)?;
        if direct {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&host).map(|m| m.permissions().mode()).unwrap_or(0);
            if mode & 0o111 == 0 {
                return Err(not("is not executable (chmod +x)".into()));
            }
        }
        self.files.insert(path.to_string(), ProgramFile { path: path.to_string(), source: host, why: why.to_string() });
        if let Some(rest) = data.strip_prefix(b"#!") {
            let line = rest.split(|&b| b == b'\n').next().unwrap_or(&[]);
            let line = String::from_utf8_lossy(line);
            let mut words = line.split_whitespace();
            let interp = words.next().ok_or_else(|| not("has an empty #! line".into()))?.to_string();
            let of = format!("interpreter of {path}");
            self.add_program(&interp, &of, false, depth + 1)?;
            if interp.rsplit('/').next() == Some("env") {
                let name =
                    words.find(|w| !w.starts_with('-')).ok_or_else(|| not("runs `env` without a program".into()))?;
                let found =
                    HOOK_PATH.split(':').map(|d| format!("{d}/{name}")).find(|p| self.root.exists(p)).ok_or_else(
                        || not(format!("runs `{name}` through env, and {name} is in none of {HOOK_PATH}")),
                    )?;
                self.add_program(&found, &of, false, depth + 1)?;
            }
            Ok(())
        } else if data.starts_with(b"\x7fELF") {
            self.add_elf(path, &data, why, depth)
        } else {
            Err(not("is neither an ELF executable nor a #! script".into()))
        }
    }

    fn add_elf(&mut self, path: &str, data: &[u8], why: &str, depth: usize) -> Result<(), ProgramError> {
        let not = |problem: String| ProgramError::NotRunnable { why: why.to_string(), path: path.to_string(), problem };
        let elf = Elf::parse(data).map_err(|e| not(format!("is not a readable ELF file ({e})")))?;
        if !elf.is_64 || elf.header.e_machine != goblin::elf::header::EM_X86_64 {
            return Err(not("is not an x86_64 executable (the capture kernel runs x86_64 programs only)".into()));
        }
        if let Some(interp) = elf.interpreter {
            self.dynamic = true;
            self.add_program(interp, &format!("loader of {path}"), false, depth + 1)?;
        }
        let origin = path.rsplit_once('/').map(|(d, _)| if d.is_empty() { "/" } else { d }).unwrap_or("/");
        let expand = |list: &[&str]| -> Vec<String> {
            list.iter()
                .flat_map(|l| l.split(':'))
                .filter(|d| !d.is_empty())
                .map(|d| d.replace("$ORIGIN", origin).replace("${ORIGIN}", origin))
                .collect()
        };
        let mut dirs = if elf.runpaths.is_empty() { expand(&elf.rpaths) } else { Vec::new() };
        dirs.extend(expand(&elf.runpaths));
        dirs.extend(self.conf_dirs.iter().cloned());
        dirs.extend(DEFAULT_LIB_DIRS.iter().map(|d| d.to_string()));
        let needed: Vec<String> = elf.libraries.iter().map(|s| s.to_string()).collect();
        for name in needed {
            let candidates: Vec<String> = if name.contains('/') {
                vec![name.clone()]
            } else {
                dirs.iter().map(|d| format!("{}/{name}", d.trim_end_matches('/'))).collect()
            };
            let found = candidates.into_iter().find(|c| {
                // The loader skips libraries of another class or machine (i386 in /lib).
                self.root
                    .resolve(c)
                    .ok()
                    .and_then(|h| std::fs::read(h).ok())
                    .and_then(|d| {
                        Elf::parse(&d).ok().map(|e| e.is_64 && e.header.e_machine == goblin::elf::header::EM_X86_64)
                    })
                    .unwrap_or(false)
            });
            let Some(lib) = found else {
                return Err(ProgramError::Library {
                    why: why.to_string(),
                    name,
                    by: path.to_string(),
                    dirs: dirs.join(":"),
                });
            };
            if !self.files.contains_key(&lib) {
                let (host, data) = self.read(&lib, why)?;
                self.files.insert(
                    lib.clone(),
                    ProgramFile { path: lib.clone(), source: host, why: format!("library of {path}") },
                );
                self.add_elf(&lib, &data, why, depth + 1)?;
            }
        }
        Ok(())
    }
}

/// The files `programs` (absolute paths, each with the directive naming it) need in the image,
/// read from `root` (default `/`), sorted by path.
pub fn closure(root: Option<&Path>, programs: &[(String, String)]) -> Result<Vec<ProgramFile>, ProgramError> {
    let root = Root { dir: root.unwrap_or(Path::new("/")) };
    let mut conf_dirs = Vec::new();
    ld_so_conf_dirs(&root, "/etc/ld.so.conf", 0, &mut conf_dirs);
    let mut c = Closure { root, conf_dirs, files: BTreeMap::new(), dynamic: false };
    for (path, why) in programs {
        c.add_program(path, why, true, 0)?;
    }
    if c.dynamic {
        if let Ok(host) = c.root.resolve("/etc/ld.so.cache") {
            c.files.entry("/etc/ld.so.cache".into()).or_insert(ProgramFile {
                path: "/etc/ld.so.cache".into(),
                source: host,
                why: "the loader's library cache".into(),
            });
        }
    }
    Ok(c.files.into_values().collect())
}

/// The executable files of `<root>/etc/kdump/<dir>.d` (`pre` or `post`), in lexical order, as
/// kdump-utils runs them; a missing directory has none.
pub fn hook_dir(root: Option<&Path>, dir: &str) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let root = Root { dir: root.unwrap_or(Path::new("/")) };
    let d = format!("/etc/kdump/{dir}.d");
    let Ok(host) = root.resolve(&d) else {
        return Vec::new();
    };
    let mut names: BTreeSet<String> = BTreeSet::new();
    for e in std::fs::read_dir(host).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let exec = std::fs::metadata(e.path()).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
        if exec && rkdump_init::plan::plan_safe(&name) && !name.contains(' ') {
            names.insert(name);
        }
    }
    names.into_iter().map(|n| format!("{d}/{n}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn write_exec(p: &Path, data: &[u8]) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn paths(files: &[ProgramFile]) -> Vec<&str> {
        files.iter().map(|f| f.path.as_str()).collect()
    }

    /// The build machine's own dynamic shell: its loader and libc come along, found the way
    /// the loader finds them.
    #[test]
    fn a_dynamic_executable_brings_its_loader_and_libraries() {
        let sh = "/bin/sh";
        if !Path::new(sh).exists() {
            eprintln!("SKIP: no {sh}");
            return;
        }
        let files = closure(None, &[(sh.into(), "kdump_post".into())]).unwrap();
        let p = paths(&files);
        assert!(p.contains(&"/bin/sh"), "{p:?}");
        let interp = Elf::parse(&std::fs::read(sh).unwrap()).unwrap().interpreter.unwrap().to_string();
        assert!(files.iter().any(|f| f.path == interp && f.why == "loader of /bin/sh"), "{files:?}");
        assert!(p.iter().any(|f| f.ends_with("/libc.so.6")), "{p:?}");
        if Path::new("/etc/ld.so.cache").exists() {
            assert!(p.contains(&"/etc/ld.so.cache"), "{p:?}");
        }
        // /bin/sh is a link (to dash on Debian): stored under its own name, read from the file.
        let sh_file = files.iter().find(|f| f.path == "/bin/sh").unwrap();
        assert!(sh_file.source.is_file() && !sh_file.source.is_symlink());
    }

    #[test]
    fn scripts_bring_their_interpreter_and_env_finds_the_program() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        let busybox = std::fs::read("/bin/busybox").ok();
        // A static "interpreter" (busybox when installed, else any ELF-less stand-in is refused).
        let Some(bb) = busybox else {
            eprintln!("SKIP: no /bin/busybox");
            return;
        };
        write_exec(&r.join("usr/bin/busybox"), &bb);
        std::fs::create_dir_all(r.join("bin")).unwrap();
        symlink("/usr/bin/busybox", r.join("bin/ash")).unwrap();
        write_exec(&r.join("usr/bin/env"), &bb);
        write_exec(&r.join("hooks/a"), b"#!/bin/ash -e\necho a\n");
        write_exec(&r.join("hooks/b"), b"#!/usr/bin/env -S ash\necho b\n");
        write_exec(&r.join("hooks/c"), b"#!/hooks/a\n");
        let files = closure(
            Some(r),
            &[
                ("/hooks/a".into(), "kdump_pre".into()),
                ("/hooks/b".into(), "kdump_post".into()),
                ("/hooks/c".into(), "extra_bins".into()),
            ],
        )
        .unwrap();
        assert_eq!(paths(&files), ["/bin/ash", "/hooks/a", "/hooks/b", "/hooks/c", "/usr/bin/env"]);
        let ash = files.iter().find(|f| f.path == "/bin/ash").unwrap();
        assert_eq!(ash.source, r.join("usr/bin/busybox"));
        assert_eq!(ash.why, "interpreter of /hooks/a");
        // Static: no loader, no ld.so.cache.
        assert!(!paths(&files).contains(&"/etc/ld.so.cache"));
    }

    #[test]
    fn what_cannot_run_is_refused_with_the_reason() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        let err = |p: &str| closure(Some(r), &[(p.into(), "kdump_pre".into())]).unwrap_err().to_string();
        assert!(err("/missing").contains("kdump_pre: cannot read /missing"), "{}", err("/missing"));
        std::fs::write(r.join("plain"), b"#!/bin/sh\n").unwrap();
        assert!(err("/plain").contains("not executable"), "{}", err("/plain"));
        write_exec(&r.join("text"), b"echo hi\n");
        assert!(err("/text").contains("neither an ELF executable nor a #! script"), "{}", err("/text"));
        write_exec(&r.join("nointerp"), b"#!/bin/nothing\n");
        let e = err("/nointerp");
        assert!(e.contains("interpreter of /nointerp: cannot read /bin/nothing"), "{e}");
        write_exec(&r.join("empty"), b"#!\n");
        assert!(err("/empty").contains("empty #! line"), "{}", err("/empty"));
        write_exec(&r.join("envless"), b"#!/envbin/env\n");
        write_exec(&r.join("envbin/env"), b"#!/envless\n");
        let e = err("/envless");
        assert!(e.contains("without a program") || e.contains("interpreters deep"), "{e}");
        write_exec(&r.join("loop1"), b"#!/loop2\n");
        write_exec(&r.join("loop2"), b"#!/loop1\n");
        // A loop of scripts ends (the second visit finds the file already taken).
        assert!(closure(Some(r), &[("/loop1".into(), "x".into())]).is_ok());
        symlink("/selflink", r.join("selflink")).unwrap();
        assert!(err("/selflink").contains("symbolic links"), "{}", err("/selflink"));
        assert!(err("relative").contains("not an absolute path"));
        write_exec(&r.join("tmp/hook"), b"#!/bin/sh\n");
        assert!(err("/tmp/hook").contains("is under /tmp, which the capture mounts over"), "{}", err("/tmp/hook"));
        assert!(err("/run/x").contains("is under /run"), "{}", err("/run/x"));
        let mut elf32 = vec![0u8; 64];
        elf32[..4].copy_from_slice(b"\x7fELF");
        write_exec(&r.join("bad.elf"), &elf32);
        assert!(err("/bad.elf").contains("ELF"), "{}", err("/bad.elf"));
    }

    /// A copy of the machine's dynamic shell in a root that lacks libc: the library is named.
    #[test]
    fn a_missing_library_is_named() {
        let Ok(sh) = std::fs::read("/bin/dash") else {
            eprintln!("SKIP: no /bin/dash");
            return;
        };
        let t = tempfile::tempdir().unwrap();
        write_exec(&t.path().join("bin/sh"), &sh);
        let e = closure(Some(t.path()), &[("/bin/sh".into(), "kdump_post".into())]).unwrap_err().to_string();
        assert!(e.contains("cannot read /lib64/ld-linux-x86-64.so.2") || e.contains("library libc.so.6"), "{e}");
    }

    #[test]
    fn ld_so_conf_includes_and_hook_dirs() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("etc/ld.so.conf.d")).unwrap();
        std::fs::write(r.join("etc/ld.so.conf"), "include /etc/ld.so.conf.d/*.conf\n/opt/lib # comment\n").unwrap();
        std::fs::write(r.join("etc/ld.so.conf.d/b.conf"), "/b/lib\n").unwrap();
        std::fs::write(r.join("etc/ld.so.conf.d/a.conf"), "/a/lib\ninclude /etc/ld.so.conf\n").unwrap();
        std::fs::write(r.join("etc/ld.so.conf.d/skip.txt"), "/nope\n").unwrap();
        let mut dirs = Vec::new();
        ld_so_conf_dirs(&Root { dir: r }, "/etc/ld.so.conf", 0, &mut dirs);
        // Each directory once, an include loop cut off.
        dirs.sort();
        assert_eq!(dirs, ["/a/lib", "/b/lib", "/opt/lib"]);

        assert!(hook_dir(Some(r), "post").is_empty());
        write_exec(&r.join("etc/kdump/post.d/20-b"), b"#!/bin/sh\n");
        write_exec(&r.join("etc/kdump/post.d/10-a"), b"#!/bin/sh\n");
        std::fs::write(r.join("etc/kdump/post.d/30-not-executable"), b"#!/bin/sh\n").unwrap();
        std::fs::create_dir_all(r.join("etc/kdump/post.d/40-dir")).unwrap();
        assert_eq!(hook_dir(Some(r), "post"), ["/etc/kdump/post.d/10-a", "/etc/kdump/post.d/20-b"]);
    }
}
