//! rkdump-mkinitrd: `rkdump build`, the capture initramfs builder.
//!
//! Pipeline of [`build`]:
//!
//! 1. [`config`]: `kdump.conf` -> [`config::KdumpConfig`] (validated; unsupported keywords are
//!    errors naming their line) -> [`rkdump_init::plan::Plan`] without modules.
//! 2. Kernel: release (`uname -r` unless given), modules directory (`<root>/lib/modules/R` or
//!    `<root>/usr/lib/modules/R`), `<root>/boot/config-R` ([`rkdump_kconfig`]) to refuse a
//!    compression the kernel cannot unpack.
//! 3. [`sysfs`]: find the target's block device on this machine and collect the drivers and
//!    modaliases of its device stack (dm/md slaves followed).
//! 4. [`modules`]: device modules + the filesystem's module + `extra_modules` -> closure over
//!    `modules.dep` (or `.modinfo`), `modules.softdep`, `modules.alias`, `modules.builtin`,
//!    in load order.
//! 5. [`cpio`]: a deterministic newc archive: `/init`, `/etc/rkdump/plan`, the modules at
//!    `/lib/modules/R/<relative path>`, `/dev /proc /sys /run /tmp /mnt`, `/dev/console`.
//! 6. [`compress`]: zstd (default) / xz (CRC32) / gzip / none; written atomically.
//!
//! [`list`] reads an image back (compression detected by magic).

pub mod compress;
pub mod config;
pub mod cpio;
pub mod modinfo;
pub mod modules;
pub mod mounts;
pub mod programs;
pub mod sysfs;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use compress::{compress, decompress, detect, Compression, Format};
pub use cpio::{CpioWriter, Entry, EntryKind};
pub use modules::ModuleFile;
use rkdump_init::plan::{Plan, PLAN_PATH};

/// Options of [`build`].
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// `kdump.conf` (default `/etc/kdump.conf`).
    pub config: PathBuf,
    /// Kernel release; default: the running kernel.
    pub kernel_release: Option<String>,
    /// Sysroot holding `lib/modules/R` (or `usr/lib/modules/R`) and `boot/config-R`.
    pub root: Option<PathBuf>,
    /// Fake sysfs tree (tests); default `/sys`. See [`sysfs`] for the layout (device nodes in
    /// the sibling `../dev`).
    pub sysfs: Option<PathBuf>,
    /// Kernel `.config` to check the compression against; default `<root>/boot/config-R`.
    pub kernel_config: Option<PathBuf>,
    /// Mount table read when `kdump.conf` has no target line; default `/proc/self/mountinfo`.
    pub mountinfo: Option<PathBuf>,
    /// Where to write the image.
    pub output: PathBuf,
    /// The static `rkdump-init` binary, installed as `/init`.
    pub init_binary: PathBuf,
    /// Image compression.
    pub compression: Compression,
    /// Compression level; `None`: the defaults of [`compress`] (zstd 12, xz 9, gzip 9).
    pub compression_level: Option<i32>,
    /// mtime of every entry; default `SOURCE_DATE_EPOCH` from the environment, else 0.
    pub source_date_epoch: Option<u32>,
    /// Pack no kernel modules: the capture kernel has the target's drivers built in (a
    /// dedicated capture kernel, see `rkdump kernel-config`); no modules directory is needed.
    pub no_modules: bool,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            config: PathBuf::from("/etc/kdump.conf"),
            kernel_release: None,
            root: None,
            sysfs: None,
            kernel_config: None,
            mountinfo: None,
            output: PathBuf::from("rkdump-initrd.img"),
            init_binary: PathBuf::from("rkdump-init"),
            compression: Compression::Zstd,
            compression_level: None,
            source_date_epoch: None,
            no_modules: false,
        }
    }
}

/// What [`build`] did.
#[derive(Debug, Clone)]
pub struct BuildReport {
    /// The image written.
    pub output: PathBuf,
    /// Kernel release built for.
    pub kernel_release: String,
    /// Modules directory used (none with `no_modules`).
    pub modules_dir: Option<PathBuf>,
    /// Compression used.
    pub compression: Compression,
    /// Size of the image file.
    pub image_size: u64,
    /// Size of the uncompressed cpio archive.
    pub unpacked_size: u64,
    /// Modules in the image, in load order.
    pub modules: Vec<ModuleFile>,
    /// Hooks, `extra_bins` and what they need (interpreters, loader, libraries), by path.
    pub programs: Vec<programs::ProgramFile>,
    /// The files of this machine the image was made from, as recorded in it
    /// ([`SOURCES_PATH`], for [`freshness`]).
    pub sources: Vec<PathBuf>,
    /// The plan written to `/etc/rkdump/plan`.
    pub plan: Plan,
    /// Block device of the target on this machine, if found (`vda1`).
    pub target_device: Option<String>,
    /// Without a target line in `kdump.conf`: `path` as configured and where the filesystem
    /// holding it is mounted on this machine (the plan's target and path are that filesystem
    /// and the directory inside it).
    pub target_from_path: Option<(String, String)>,
    /// Non-fatal problems.
    pub warnings: Vec<String>,
    /// Wall time of the build.
    pub elapsed: Duration,
    /// Wall time per step (`config`, `modules index`, `device`, `closure`, `archive`,
    /// `compress`, `write`).
    pub phases: Vec<(&'static str, Duration)>,
}

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// `kdump.conf` rejected.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// Module resolution failed.
    #[error(transparent)]
    Modules(#[from] modules::ModuleError),
    /// sysfs walk failed.
    #[error(transparent)]
    Sysfs(#[from] sysfs::SysfsError),
    /// A hook or `extra_bins` program cannot go into the image.
    #[error(transparent)]
    Program(#[from] programs::ProgramError),
    /// No target line, and no target could be derived from `path`.
    #[error(transparent)]
    PathTarget(#[from] mounts::PathTargetError),
    /// Archive writing failed.
    #[error(transparent)]
    Cpio(#[from] cpio::CpioError),
    /// Compression failed.
    #[error(transparent)]
    Compress(#[from] compress::CompressError),
    /// The kernel config could not be read.
    #[error(transparent)]
    Kconfig(#[from] rkdump_kconfig::KconfigError),
    /// A file could not be read or written.
    #[error("{what} {path}: {source}")]
    Io {
        /// What we were doing.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The running kernel's release is unknown.
    #[error("cannot determine the running kernel release (/proc/sys/kernel/osrelease): {0}; pass a kernel release")]
    Release(std::io::Error),
    /// The kernel cannot unpack the chosen compression.
    #[error("kernel {release} cannot unpack a {compression} initramfs: {option} is not set in {config}; choose another compression (--compression {suggest})")]
    KernelCannotUnpack {
        /// Release.
        release: String,
        /// The compression asked for.
        compression: Compression,
        /// The missing option.
        option: &'static str,
        /// The config file.
        config: PathBuf,
        /// A compression the kernel supports.
        suggest: &'static str,
    },
    /// The target is not on this machine and nothing says which driver the capture needs.
    #[error("target {target} is not present on this machine, so its storage driver cannot be detected, and extra_modules names no storage driver; add the capture machine's driver to kdump.conf, e.g. `extra_modules virtio_blk virtio_pci` (QEMU virtio), `extra_modules nvme`, or `extra_modules ahci sd_mod`{notes}")]
    TargetAbsent {
        /// The target as written.
        target: String,
        /// Probe problems.
        notes: String,
    },
    /// `SOURCE_DATE_EPOCH` is not a 32-bit number of seconds.
    #[error("SOURCE_DATE_EPOCH={0:?} is not a number of seconds between 0 and 4294967295")]
    BadEpoch(String),
}

/// The running kernel's release.
pub fn running_release() -> Result<String, BuildError> {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).map_err(BuildError::Release)
}

fn source_date_epoch(opts: &BuildOptions) -> Result<u32, BuildError> {
    if let Some(e) = opts.source_date_epoch {
        return Ok(e);
    }
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().map_err(|_| BuildError::BadEpoch(v)),
        _ => Ok(0),
    }
}

/// Checks that the kernel config (when available) lets the kernel unpack `c`.
fn check_compression(opts: &BuildOptions, release: &str, warnings: &mut Vec<String>) -> Result<(), BuildError> {
    let path = opts.kernel_config.clone().unwrap_or_else(|| {
        opts.root.as_deref().unwrap_or(Path::new("/")).join("boot").join(format!("config-{release}"))
    });
    if !path.exists() {
        warnings.push(format!(
            "kernel config {} not found: cannot check that the kernel unpacks a {} initramfs",
            path.display(),
            opts.compression
        ));
        return Ok(());
    }
    let k = rkdump_kconfig::Kconfig::load(&path)?;
    let Some(option) = opts.compression.kernel_option() else {
        return Ok(());
    };
    if k.is_builtin(option) {
        return Ok(());
    }
    let suggest = Compression::ALL
        .iter()
        .find(|c| c.kernel_option().map_or(true, |o| k.is_builtin(o)))
        .map(|c| c.as_str())
        .unwrap_or("none");
    Err(BuildError::KernelCannotUnpack {
        release: release.to_string(),
        compression: opts.compression,
        option,
        config: path,
        suggest,
    })
}

fn init_binary_warnings(data: &[u8], path: &Path, warnings: &mut Vec<String>) {
    match goblin::elf::Elf::parse(data) {
        Ok(elf) => {
            if let Some(interp) = elf.interpreter {
                warnings.push(format!(
                    "init binary {} is dynamically linked (interpreter {interp}); as /init it will fail with \"no such file or directory\": build rkdump-init static (musl)",
                    path.display()
                ));
            }
        }
        Err(_) => warnings.push(format!("init binary {} is not an ELF executable", path.display())),
    }
}

/// Where an image lists the files it was built from (one absolute path per line).
pub const SOURCES_PATH: &str = "/etc/rkdump/sources";
const SOURCES_HEADER: &str =
    "# files this image was built from: rkdump status and check compare their times with the image's\n";

/// The files an image depends on: kdump.conf, the capture init, the kernel's module index
/// (rewritten by every kernel or module update; the module files themselves without one),
/// and every program copied in. Absolute, sorted, each once.
fn build_sources(
    opts: &BuildOptions,
    modules_dir: Option<&Path>,
    mods: &[ModuleFile],
    programs: &[programs::ProgramFile],
) -> Vec<PathBuf> {
    let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let mut out = vec![abs(&opts.config), abs(&opts.init_binary)];
    // None: --no-modules, nothing from a modules directory.
    if let Some(modules_dir) = modules_dir {
        let dep = modules_dir.join("modules.dep");
        if dep.is_file() {
            out.push(abs(&dep));
        } else {
            out.extend(mods.iter().map(|m| abs(&modules_dir.join(&m.rel_path))));
        }
    }
    out.extend(programs.iter().map(|p| p.source.clone()));
    out.sort();
    out.dedup();
    out
}

/// Whether an image is older than what it was built from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Freshness {
    /// The files the image lists ([`SOURCES_PATH`]); empty when it lists none (an image from
    /// an rkdump before the list, or not made by rkdump).
    pub sources: Vec<PathBuf>,
    /// Sources modified after the image file was written.
    pub newer: Vec<PathBuf>,
    /// Sources that no longer exist.
    pub missing: Vec<PathBuf>,
}

impl Freshness {
    /// Up to date: the image lists its sources, and none changed or went away.
    pub fn up_to_date(&self) -> bool {
        !self.sources.is_empty() && self.newer.is_empty() && self.missing.is_empty()
    }

    /// Why the image is stale (`changed since it was built: a, b; gone: c`); empty when no
    /// source changed or went away.
    pub fn stale_reason(&self) -> String {
        let names = |v: &[PathBuf]| v.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
        let mut why = Vec::new();
        if !self.newer.is_empty() {
            why.push(format!("changed since it was built: {}", names(&self.newer)));
        }
        if !self.missing.is_empty() {
            why.push(format!("gone: {}", names(&self.missing)));
        }
        why.join("; ")
    }
}

/// The files listed in an image's [`SOURCES_PATH`] entry.
fn parse_sources(bytes: &[u8]) -> Vec<PathBuf> {
    String::from_utf8_lossy(bytes).lines().filter(|l| l.starts_with('/')).map(PathBuf::from).collect()
}

/// Compares the modification times of the files an image was built from with the image's own,
/// as kdumpctl decides whether to rebuild.
pub fn freshness(image: &Path) -> Result<Freshness, ListError> {
    let data = read_image(image)?;
    let mut sources = Vec::new();
    let want = SOURCES_PATH.trim_start_matches('/');
    walk_image(&data, &mut |e, bytes| {
        if e.path == want {
            sources = parse_sources(bytes);
        }
        Ok(())
    })
    .map_err(|e| list_error(image, e))?;
    freshness_of(image, sources)
}

/// [`freshness`] of `image` whose source list was already read (e.g. by [`sizes`]).
pub fn freshness_of(image: &Path, sources: Vec<PathBuf>) -> Result<Freshness, ListError> {
    let built = std::fs::metadata(image)
        .and_then(|m| m.modified())
        .map_err(|source| ListError::Read { path: image.to_path_buf(), source })?;
    let mut out = Freshness { sources, ..Freshness::default() };
    for p in &out.sources {
        match std::fs::metadata(p).and_then(|m| m.modified()) {
            Ok(t) if t > built => out.newer.push(p.clone()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => out.missing.push(p.clone()),
            // Unreadable metadata (permissions): not evidence of a change.
            Err(_) => {}
        }
    }
    Ok(out)
}

/// Adds the modules of block device `dev`'s stack (drivers, modaliases) to `roots`; `what`
/// names it in the warning about dm/md stacks.
fn device_roots(
    probe: &sysfs::Probe,
    index: &mut modules::ModuleIndex,
    dev: &str,
    what: &str,
    roots: &mut Vec<(String, String)>,
    warnings: &mut Vec<String>,
) -> Result<(), BuildError> {
    let stack = probe.device_modules(dev)?;
    roots.extend(stack.modules.iter().cloned());
    for (alias, why) in &stack.modaliases {
        for m in index.match_alias(alias)? {
            roots.push((m, why.clone()));
        }
    }
    if stack.stacked {
        warnings.push(format!(
            "{what} is on a device-mapper/md stack ({}); rkdump-init does not assemble dm/md devices yet (not yet supported)",
            stack.stack.join(" <- ")
        ));
    }
    Ok(())
}

/// The module root of filesystem `fstype` (its module, or the `fs-<type>` alias).
fn fs_root(index: &mut modules::ModuleIndex, fstype: &str) -> Result<(String, String), BuildError> {
    let name = match index.resolve(fstype)? {
        modules::Resolution::NotFound => format!("fs-{fstype}"),
        _ => fstype.to_string(),
    };
    Ok((name, format!("filesystem {fstype}")))
}

/// Builds the capture image described by `opts`.
pub fn build(opts: &BuildOptions) -> Result<BuildReport, BuildError> {
    let start = Instant::now();
    let mut phases = Vec::new();
    let mut lap = Instant::now();
    let mut phase = |name: &'static str| {
        phases.push((name, lap.elapsed()));
        lap = Instant::now();
    };
    let mut warnings = Vec::new();
    let release = match &opts.kernel_release {
        Some(r) => r.clone(),
        None => running_release()?,
    };
    let mtime = source_date_epoch(opts)?;
    let cfg = config::KdumpConfig::load(&opts.config)?;
    warnings.extend(cfg.warnings.iter().cloned());
    check_compression(opts, &release, &mut warnings)?;
    phase("config");

    let (dir, mut index) = if opts.no_modules {
        warnings.push(format!(
            "no kernel modules packed (--no-modules): the capture kernel must have the target's storage and filesystem drivers built in (kernel release {release})"
        ));
        (None, modules::ModuleIndex::builtin_only(&release))
    } else {
        let dir = modules::ModuleIndex::find_dir(opts.root.as_deref(), &release)?;
        let index = modules::ModuleIndex::load(&dir, &release)?;
        (Some(dir), index)
    };
    phase("modules index");

    // Roots of the module closure: the device stack, extra_modules, the filesystem.
    let mut roots: Vec<(String, String)> = Vec::new();
    let probe = sysfs::Probe::new(opts.sysfs.as_deref());
    let mut notes = Vec::new();
    let mountinfo = opts.mountinfo.clone().unwrap_or_else(|| PathBuf::from("/proc/self/mountinfo"));
    let (target, path, target_from_path) = match &cfg.target {
        Some(t) => (t.clone(), cfg.path.clone(), None),
        None => {
            let found = mounts::resolve(&cfg.path, &mountinfo, &probe)?;
            warnings.extend(found.warnings);
            (found.target, found.path, Some((cfg.path.clone(), found.mount_point)))
        }
    };
    // failure_action dump_to_rootfs: this machine's root filesystem, `path` on it (as
    // kdump-utils saves to the root filesystem's `path`); its drivers go into the image too.
    let rootfs = match cfg.on_failure {
        Some(config::FailureStep::DumpToRootfs) => {
            let found = mounts::resolve("/", &mountinfo, &probe)?;
            warnings.extend(found.warnings.iter().map(|w| format!("dump_to_rootfs: {w}")));
            device_roots(
                &probe,
                &mut index,
                &found.device,
                "dump_to_rootfs: the root filesystem",
                &mut roots,
                &mut warnings,
            )?;
            roots.push(fs_root(&mut index, &found.target.fstype)?);
            let rpath = mounts::join_abs(&found.path, &cfg.path);
            Some(rkdump_init::plan::OnFailure::DumpToRootfs { target: found.target, path: rpath })
        }
        Some(config::FailureStep::Shell) => Some(rkdump_init::plan::OnFailure::Shell),
        None => None,
    };
    let target_device = probe.find(&target.device, &mut notes);
    match &target_device {
        Some(dev) => {
            device_roots(&probe, &mut index, dev, &format!("target {}", target.device), &mut roots, &mut warnings)?
        }
        None => {
            let storage = cfg
                .extra_modules
                .iter()
                .filter_map(|m| index.file(m).or_else(|| index.builtin_file(m)))
                .any(|f| f.is_storage_driver());
            let notes_text =
                if notes.is_empty() { String::new() } else { format!(" (probe notes: {})", notes.join("; ")) };
            if index.is_builtin_only() {
                warnings.push(format!(
                    "target {} is not present on this machine; relying on the capture kernel's built-in drivers{notes_text}",
                    target.device
                ));
            } else if !storage {
                return Err(BuildError::TargetAbsent { target: target.device.to_string(), notes: notes_text });
            } else {
                warnings.push(format!(
                    "target {} is not present on this machine; relying on extra_modules ({}) for its storage driver{notes_text}",
                    target.device,
                    cfg.extra_modules.join(" ")
                ));
            }
        }
    }
    phase("device");
    for m in &cfg.extra_modules {
        roots.push((m.clone(), "extra_modules".to_string()));
    }
    // A raw target has no filesystem to mount.
    if !target.is_raw() {
        roots.push(fs_root(&mut index, &target.fstype)?);
    }
    let (mods, mod_warnings) = index.closure(&roots)?;
    warnings.extend(mod_warnings);
    phase("closure");

    // The archive.
    let image_mod_dir = format!("/lib/modules/{release}");
    let mut plan = cfg.to_plan(target.clone(), path);
    plan.on_failure = rootfs;
    plan.modules = mods.iter().map(|m| format!("{image_mod_dir}/{}", m.rel_path)).collect();
    // Hooks in kdump-utils' order, and every program with what it needs.
    let root = opts.root.as_deref();
    plan.pre = cfg.kdump_pre.iter().cloned().chain(programs::hook_dir(root, "pre")).collect();
    plan.post = programs::hook_dir(root, "post").into_iter().chain(cfg.kdump_post.iter().cloned()).collect();
    let named = |list: &[String], why: &str| list.iter().map(|p| (p.clone(), why.to_string())).collect::<Vec<_>>();
    let mut wanted = named(&plan.pre, "kdump_pre or /etc/kdump/pre.d");
    wanted.extend(named(&plan.post, "kdump_post or /etc/kdump/post.d"));
    wanted.extend(named(&cfg.extra_bins, "extra_bins"));
    if plan.on_failure == Some(rkdump_init::plan::OnFailure::Shell) {
        wanted.push(("/bin/sh".into(), "failure_action shell".into()));
    }
    let programs = programs::closure(root, &wanted)?;
    phase("programs");
    let init = std::fs::read(&opts.init_binary).map_err(|source| BuildError::Io {
        what: "cannot read init binary",
        path: opts.init_binary.clone(),
        source,
    })?;
    init_binary_warnings(&init, &opts.init_binary, &mut warnings);

    let sources = build_sources(opts, dir.as_deref(), &mods, &programs);
    let mut sources_text = String::from(SOURCES_HEADER);
    for p in &sources {
        sources_text += &p.to_string_lossy();
        sources_text.push('\n');
    }
    let mut w = CpioWriter::new(Vec::new()).with_mtime(mtime);
    for d in ["dev", "proc", "sys", "run", "tmp", "mnt", "etc/rkdump"] {
        w.add_dir(d, 0o755)?;
    }
    w.add_dir("tmp", 0o1777)?;
    w.add_char_device("dev/console", 0o600, 5, 1)?;
    w.add_file("init", 0o755, &init)?;
    w.add_file(PLAN_PATH, 0o644, plan.render().as_bytes())?;
    w.add_file(SOURCES_PATH, 0o644, sources_text.as_bytes())?;
    if let Some(dir) = &dir {
        for (m, in_image) in mods.iter().zip(&plan.modules) {
            let src = dir.join(&m.rel_path);
            let data = std::fs::read(&src).map_err(|source| BuildError::Io {
                what: "cannot read module",
                path: src.clone(),
                source,
            })?;
            w.add_file(in_image, 0o644, &data)?;
        }
    }
    for p in &programs {
        let data = std::fs::read(&p.source).map_err(|source| BuildError::Io {
            what: "cannot read program",
            path: p.source.clone(),
            source,
        })?;
        let mode = if p.path == "/etc/ld.so.cache" { 0o644 } else { 0o755 };
        w.add_file(p.path.trim_start_matches('/'), mode, &data)?;
    }
    let archive = w.finish()?;
    phase("archive");
    let image = compress::compress_level(&archive, opts.compression, opts.compression_level)?;
    phase("compress");
    write_atomic(&opts.output, &image)?;
    phase("write");

    Ok(BuildReport {
        output: opts.output.clone(),
        kernel_release: release,
        modules_dir: dir,
        compression: opts.compression,
        image_size: image.len() as u64,
        unpacked_size: archive.len() as u64,
        modules: mods,
        programs,
        sources,
        plan,
        target_device,
        target_from_path,
        warnings,
        elapsed: start.elapsed(),
        phases,
    })
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<(), BuildError> {
    use std::io::Write;
    let io = |what, source| BuildError::Io { what, path: path.to_path_buf(), source };
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = parent.join(format!(".{name}.rkdump-tmp-{}", std::process::id()));
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(io("cannot write image", e));
    }
    Ok(())
}

/// Why an image could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// The file could not be read.
    #[error("cannot read image {path}: {source}")]
    Read {
        /// The image.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Unknown or corrupt compression.
    #[error("image {path}: {source}")]
    Compress {
        /// The image.
        path: PathBuf,
        /// The cause.
        #[source]
        source: compress::CompressError,
    },
    /// Corrupt archive.
    #[error("image {path}: {source}")]
    Cpio {
        /// The image.
        path: PathBuf,
        /// The cause.
        #[source]
        source: cpio::CpioError,
    },
}

/// Lists an image's entries (all concatenated segments; compression detected by magic).
pub fn list(image: &Path) -> Result<Vec<Entry>, ListError> {
    let mut out = Vec::new();
    let data = read_image(image)?;
    walk_image(&data, &mut |e, _| {
        out.push(e.clone());
        Ok(())
    })
    .map_err(|e| list_error(image, e))?;
    Ok(out)
}

/// The capture plan inside an image made by [`build`] (`None`: the image has none).
pub fn plan_of(image: &Path) -> Result<Option<Result<Plan, rkdump_init::plan::PlanError>>, ListError> {
    let data = read_image(image)?;
    let mut out = None;
    let want = PLAN_PATH.trim_start_matches('/');
    walk_image(&data, &mut |e, bytes| {
        if e.path == want {
            out = Some(Plan::parse(&String::from_utf8_lossy(bytes)));
        }
        Ok(())
    })
    .map_err(|e| list_error(image, e))?;
    Ok(out)
}

/// What an image takes of the capture kernel's memory (`rkdump estimate`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageSizes {
    /// The image file: loaded into the reservation, freed once unpacked.
    pub file: u64,
    /// Its files unpacked into the capture kernel's rootfs, each rounded up to 4 KiB pages.
    pub unpacked: u64,
    /// Its kernel modules: path and size uncompressed (an upper bound of what loading takes).
    pub modules: Vec<(String, u64)>,
    /// Every entry's path, in order.
    pub paths: Vec<String>,
    /// The compression of its first segment (`None`: a plain cpio first).
    pub compression: Option<Compression>,
    /// The files it was built from ([`SOURCES_PATH`]; empty if it lists none).
    pub sources: Vec<PathBuf>,
    /// Its capture plan's text ([`PLAN_PATH`]; `Plan::parse` reads it), if it has one.
    pub plan: Option<String>,
}

/// Measures an image made by [`build`] (any image the kernel could unpack).
pub fn sizes(image: &Path) -> Result<ImageSizes, ListError> {
    let data = read_image(image)?;
    let first = data.iter().position(|&b| b != 0).unwrap_or(data.len());
    let mut out = ImageSizes {
        file: data.len() as u64,
        compression: match detect(&data[first..]) {
            Ok(Format::Compressed(c)) => Some(c),
            _ => None,
        },
        ..ImageSizes::default()
    };
    walk_image(&data, &mut |e, bytes| {
        out.paths.push(e.path.clone());
        out.unpacked += e.size.div_ceil(4096) * 4096;
        if e.path == SOURCES_PATH.trim_start_matches('/') {
            out.sources = parse_sources(bytes);
        }
        if e.path == PLAN_PATH.trim_start_matches('/') {
            out.plan = Some(String::from_utf8_lossy(bytes).into_owned());
        }
        if e.kind != EntryKind::File {
            return Ok(());
        }
        let codec = if e.path.ends_with(".ko") {
            Compression::None
        } else if e.path.ends_with(".ko.xz") {
            Compression::Xz
        } else if e.path.ends_with(".ko.zst") {
            Compression::Zstd
        } else if e.path.ends_with(".ko.gz") {
            Compression::Gzip
        } else {
            return Ok(());
        };
        let size = match codec {
            Compression::None => bytes.len() as u64,
            c => decompress(bytes, c).map_err(Ok)?.len() as u64,
        };
        out.modules.push((e.path.clone(), size));
        Ok(())
    })
    .map_err(|e| list_error(image, e))?;
    Ok(out)
}

fn read_image(image: &Path) -> Result<Vec<u8>, ListError> {
    std::fs::read(image).map_err(|source| ListError::Read { path: image.to_path_buf(), source })
}

/// `Err(Ok(_))` compression errors, `Err(Err(_))` archive errors.
type WalkError = Result<compress::CompressError, cpio::CpioError>;

/// What [`walk_image`] calls with each entry and its data.
type EntryFn<'a> = dyn FnMut(&Entry, &[u8]) -> Result<(), WalkError> + 'a;

fn list_error(image: &Path, e: WalkError) -> ListError {
    match e {
        Ok(source) => ListError::Compress { path: image.to_path_buf(), source },
        Err(source) => ListError::Cpio { path: image.to_path_buf(), source },
    }
}

/// Calls `each` with every entry of an image and its data, in order.
fn walk_image(data: &[u8], each: &mut EntryFn<'_>) -> Result<(), WalkError> {
    let mut rest = data;
    // The kernel accepts a concatenation of (compressed) archives, e.g. early microcode first.
    loop {
        let skip = rest.iter().position(|&b| b != 0).unwrap_or(rest.len());
        rest = &rest[skip..];
        if rest.is_empty() {
            return Ok(());
        }
        match detect(rest).map_err(Ok)? {
            Format::Cpio => {
                let (entries, end) = cpio::parse_archive(rest).map_err(Err)?;
                for (e, range) in entries {
                    each(&e, rest.get(range).unwrap_or_default())?;
                }
                rest = &rest[end..];
            }
            Format::Compressed(c) => {
                // The decoders consume every concatenated stream of their kind; what follows
                // in another format is not listed (not yet supported).
                let raw = decompress(rest, c).map_err(Ok)?;
                return walk_image(&raw, each);
            }
        }
    }
}

#[cfg(test)]
mod tests;
