//! Kernel module resolution: names, aliases and modaliases -> module files in load order.
//!
//! Inputs (kmod/depmod formats, all relative to `/lib/modules/R`):
//! - `modules.dep`: `kernel/a/x.ko: kernel/b/y.ko kernel/c/z.ko` (all dependencies, transitively);
//! - `modules.alias`: `alias <glob> <module>` (fnmatch: `*`, `?`, `[...]`);
//! - `modules.softdep`: `softdep <module> pre: a b post: c`;
//! - `modules.builtin`: `kernel/x/y.ko` per built-in module (nothing to load).
//!
//! When `modules.dep` is absent the tree is scanned for `*.ko[.xz|.zst|.gz]` files and each
//! needed module's `.modinfo` (`depends=`, `softdep=`) is read instead; `alias=` entries are read
//! from every module only if an alias must be resolved and `modules.alias` is absent too.
//!
//! Module names are normalised (`-` == `_`), as kmod does. The closure is computed depth first:
//! softdep `pre:` modules, then hard dependencies, then the module, then softdep `post:`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::modinfo::{read_modinfo, ModinfoError};

/// Errors of module resolution.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// Neither `/lib/modules/R` nor `/usr/lib/modules/R` exists.
    #[error("no modules directory for kernel {release}: looked in {}", looked.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    NoModulesDir {
        /// The release.
        release: String,
        /// Where we looked.
        looked: Vec<PathBuf>,
    },
    /// An index file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A module name resolves to nothing.
    #[error("module {name:?} ({why}) not found for kernel {release}: not in {dir}/modules.dep, modules.builtin or modules.alias")]
    NotFound {
        /// The name as requested.
        name: String,
        /// Why it was needed.
        why: String,
        /// Kernel release.
        release: String,
        /// Modules directory.
        dir: PathBuf,
    },
    /// A module's metadata could not be read.
    #[error(transparent)]
    Modinfo(#[from] ModinfoError),
    /// The dependencies nest deeper than any real module tree does (a damaged or crafted
    /// `modules.dep`/`modules.softdep`); following them would exhaust the stack.
    #[error("dependencies of module {name:?} nest more than {MAX_DEP_DEPTH} levels deep in {dir}/modules.dep and modules.softdep (kernel {release}): the index is damaged; run depmod -a {release}")]
    TooDeep {
        /// The module at which the limit was reached.
        name: String,
        /// Kernel release.
        release: String,
        /// Modules directory.
        dir: PathBuf,
    },
}

/// How deep dependencies may nest. Real trees are a few levels deep (ext4 -> jbd2 -> crc16);
/// the limit only stops a damaged index from overflowing the builder's stack.
pub const MAX_DEP_DEPTH: usize = 256;

/// Normalises a module name the way kmod does (`-` -> `_`).
pub fn normalize_name(name: &str) -> String {
    name.replace('-', "_")
}

/// Module name of a module file path (`kernel/x/virtio-blk.ko.xz` -> `virtio_blk`).
pub fn name_from_path(path: &str) -> Option<String> {
    let base = path.rsplit('/').next()?;
    let stem = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"].iter().find_map(|ext| base.strip_suffix(ext))?;
    (!stem.is_empty()).then(|| normalize_name(stem))
}

/// Normalises an alias like kmod's `alias_normalize`: `-` -> `_` outside `[...]`.
fn normalize_alias(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_bracket = false;
    for c in s.chars() {
        match c {
            '[' => in_bracket = true,
            ']' => in_bracket = false,
            '-' if !in_bracket => {
                out.push('_');
                continue;
            }
            _ => {}
        }
        out.push(c);
    }
    out
}

/// fnmatch(3) without flags: `*`, `?`, `[abc]`, `[a-z]`, `[!x]`/`[^x]`.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        let step = match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
                continue;
            }
            Some('?') => Some(pi + 1),
            Some('[') => match_class(&p, pi, t[ti]),
            Some(&c) if c == t[ti] => Some(pi + 1),
            _ => None,
        };
        match step {
            Some(next) => {
                pi = next;
                ti += 1;
            }
            None => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Matches `c` against the class starting at `p[start] == '['`; returns the index after `]`.
fn match_class(p: &[char], start: usize, c: char) -> Option<usize> {
    let mut i = start + 1;
    let negate = matches!(p.get(i), Some('!' | '^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let &ch = p.get(i)?; // unterminated class: no match
        if ch == ']' && !first {
            break;
        }
        first = false;
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|&e| e != ']') {
            let hi = p[i + 2];
            if ch <= c && c <= hi {
                matched = true;
            }
            i += 3;
        } else {
            if ch == c {
                matched = true;
            }
            i += 1;
        }
    }
    (matched != negate).then_some(i + 1)
}

/// One loadable module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleFile {
    /// Normalised name.
    pub name: String,
    /// Path relative to the modules directory (`kernel/drivers/block/virtio_blk.ko`).
    pub rel_path: String,
}

impl ModuleFile {
    /// `true` for drivers that can provide a block device (block, nvme, scsi, ata, md, mmc,
    /// usb-storage). Bus drivers such as `virtio_pci` alone are not storage drivers.
    pub fn is_storage_driver(&self) -> bool {
        const DIRS: &[&str] = &[
            "drivers/block/",
            "drivers/nvme/",
            "drivers/scsi/",
            "drivers/ata/",
            "drivers/md/",
            "drivers/mmc/",
            "drivers/usb/storage/",
        ];
        DIRS.iter().any(|d| self.rel_path.contains(d))
    }
}

#[derive(Debug, Clone, Default)]
struct Softdep {
    pre: Vec<String>,
    post: Vec<String>,
}

fn parse_softdep_words<'a>(words: impl Iterator<Item = &'a str>, sd: &mut Softdep) {
    let mut post = false;
    for w in words {
        match w {
            "pre:" => post = false,
            "post:" => post = true,
            m if post => sd.post.push(m.to_string()),
            m => sd.pre.push(m.to_string()),
        }
    }
}

/// How a name resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// A loadable module (normalised name).
    Module(String),
    /// Built into the kernel.
    Builtin,
    /// An alias matching these modules (loadable ones; built-in matches dropped), and whether
    /// a built-in module also matched.
    Alias(Vec<String>, bool),
    /// Nothing.
    NotFound,
}

/// The module index of one kernel release.
#[derive(Debug)]
pub struct ModuleIndex {
    dir: PathBuf,
    release: String,
    files: BTreeMap<String, String>,
    deps: BTreeMap<String, Vec<String>>,
    softdeps: BTreeMap<String, Softdep>,
    builtin: BTreeMap<String, String>,
    aliases: Option<Vec<(String, String)>>,
    has_dep_file: bool,
    modinfo_loaded: BTreeSet<String>,
    /// Every module is taken as built in ([`ModuleIndex::builtin_only`]).
    all_builtin: bool,
}

fn read_opt(path: &Path) -> Result<Option<String>, ModuleError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ModuleError::Read { path: path.to_path_buf(), source }),
    }
}

fn parse_aliases(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next()? == "alias").then_some(())?;
            let pat = w.next()?;
            let m = w.next()?;
            Some((normalize_alias(pat), normalize_name(m)))
        })
        .collect()
}

impl ModuleIndex {
    /// Finds the modules directory of `release` under `root` (`/` when `None`):
    /// `<root>/lib/modules/R`, then `<root>/usr/lib/modules/R`.
    pub fn find_dir(root: Option<&Path>, release: &str) -> Result<PathBuf, ModuleError> {
        let root = root.unwrap_or(Path::new("/"));
        let looked: Vec<PathBuf> =
            ["lib/modules", "usr/lib/modules"].iter().map(|d| root.join(d).join(release)).collect();
        looked
            .iter()
            .find(|p| p.is_dir())
            .cloned()
            .ok_or_else(|| ModuleError::NoModulesDir { release: release.to_string(), looked })
    }

    /// The index of a kernel that has every driver built in and loads no modules (`rkdump
    /// build --no-modules`): every name resolves as built in, no alias matches.
    pub fn builtin_only(release: &str) -> Self {
        ModuleIndex { aliases: Some(Vec::new()), all_builtin: true, ..ModuleIndex::empty(Path::new(""), release) }
    }

    /// An index of `dir` with nothing read yet.
    fn empty(dir: &Path, release: &str) -> Self {
        ModuleIndex {
            dir: dir.to_path_buf(),
            release: release.to_string(),
            files: BTreeMap::new(),
            deps: BTreeMap::new(),
            softdeps: BTreeMap::new(),
            builtin: BTreeMap::new(),
            aliases: None,
            has_dep_file: false,
            modinfo_loaded: BTreeSet::new(),
            all_builtin: false,
        }
    }

    /// Whether this is a [`ModuleIndex::builtin_only`] index.
    pub fn is_builtin_only(&self) -> bool {
        self.all_builtin
    }

    /// Loads the index files of a modules directory.
    pub fn load(dir: &Path, release: &str) -> Result<Self, ModuleError> {
        let mut idx = ModuleIndex::empty(dir, release);
        if let Some(dep) = read_opt(&dir.join("modules.dep"))? {
            idx.has_dep_file = true;
            for line in dep.lines() {
                let Some((m, rest)) = line.split_once(':') else {
                    continue;
                };
                let m = m.trim();
                let Some(name) = name_from_path(m) else {
                    continue;
                };
                let deps: Vec<String> = rest.split_whitespace().filter_map(name_from_path).collect();
                idx.files.insert(name.clone(), m.to_string());
                idx.deps.insert(name, deps);
            }
        } else {
            idx.scan_tree()?;
        }
        if let Some(text) = read_opt(&dir.join("modules.softdep"))? {
            for line in text.lines() {
                let mut w = line.split_whitespace();
                if w.next() != Some("softdep") {
                    continue;
                }
                let Some(m) = w.next() else { continue };
                parse_softdep_words(w, idx.softdeps.entry(normalize_name(m)).or_default());
            }
        }
        if let Some(text) = read_opt(&dir.join("modules.builtin"))? {
            idx.builtin =
                text.lines().filter_map(|l| name_from_path(l.trim()).map(|n| (n, l.trim().to_string()))).collect();
        }
        if let Some(text) = read_opt(&dir.join("modules.alias"))? {
            idx.aliases = Some(parse_aliases(&text));
        }
        Ok(idx)
    }

    fn scan_tree(&mut self) -> Result<(), ModuleError> {
        let mut stack = vec![self.dir.clone()];
        while let Some(d) = stack.pop() {
            let rd = std::fs::read_dir(&d).map_err(|source| ModuleError::Read { path: d.clone(), source })?;
            for e in rd.flatten() {
                let p = e.path();
                let Ok(ft) = e.file_type() else { continue };
                if ft.is_dir() {
                    stack.push(p);
                } else if let Some(name) = name_from_path(&e.file_name().to_string_lossy()) {
                    let Ok(rel) = p.strip_prefix(&self.dir) else {
                        continue;
                    };
                    // Deterministic choice when two files share a name: the smaller path.
                    let rel = rel.to_string_lossy().into_owned();
                    let slot = self.files.entry(name).or_insert_with(|| rel.clone());
                    if rel < *slot {
                        *slot = rel;
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads `.modinfo` of `name` when `modules.dep` is absent (deps and softdeps).
    fn ensure_modinfo(&mut self, name: &str) -> Result<(), ModuleError> {
        if self.has_dep_file || !self.modinfo_loaded.insert(name.to_string()) {
            return Ok(());
        }
        let Some(rel) = self.files.get(name) else {
            return Ok(());
        };
        let info = read_modinfo(&self.dir.join(rel))?;
        let mut deps = Vec::new();
        let mut sd = Softdep::default();
        for (k, v) in info {
            match k.as_str() {
                "depends" => deps.extend(v.split(',').filter(|s| !s.is_empty()).map(normalize_name)),
                "softdep" => parse_softdep_words(v.split_whitespace(), &mut sd),
                _ => {}
            }
        }
        self.deps.insert(name.to_string(), deps);
        let e = self.softdeps.entry(name.to_string()).or_default();
        e.pre.extend(sd.pre);
        e.post.extend(sd.post);
        Ok(())
    }

    fn ensure_aliases(&mut self) -> Result<(), ModuleError> {
        if self.aliases.is_some() {
            return Ok(());
        }
        let mut all = Vec::new();
        let files: Vec<(String, String)> = self.files.iter().map(|(a, b)| (a.clone(), b.clone())).collect();
        for (name, rel) in files {
            for (k, v) in read_modinfo(&self.dir.join(rel))? {
                if k == "alias" {
                    all.push((normalize_alias(&v), name.clone()));
                }
            }
        }
        self.aliases = Some(all);
        Ok(())
    }

    /// The modules directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The kernel release.
    pub fn release(&self) -> &str {
        &self.release
    }

    /// The file of a loadable module.
    pub fn file(&self, name: &str) -> Option<ModuleFile> {
        let name = normalize_name(name);
        self.files.get(&name).map(|rel| ModuleFile { name, rel_path: rel.clone() })
    }

    /// `true` when `name` is built into the kernel.
    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains_key(&normalize_name(name))
    }

    /// A built-in module, with the path `modules.builtin` gives it (nothing to load).
    pub fn builtin_file(&self, name: &str) -> Option<ModuleFile> {
        let name = normalize_name(name);
        self.builtin.get(&name).map(|rel| ModuleFile { name, rel_path: rel.clone() })
    }

    /// Modules whose alias pattern matches `text` (e.g. a device's `modalias`).
    pub fn match_alias(&mut self, text: &str) -> Result<Vec<String>, ModuleError> {
        self.ensure_aliases()?;
        let t = normalize_alias(text);
        let mut out: Vec<String> = Vec::new();
        for (pat, m) in self.aliases.iter().flatten() {
            if glob_match(pat, &t) && !out.contains(m) {
                out.push(m.clone());
            }
        }
        Ok(out)
    }

    /// Resolves a module name or alias.
    pub fn resolve(&mut self, name: &str) -> Result<Resolution, ModuleError> {
        if self.all_builtin {
            return Ok(Resolution::Builtin);
        }
        let n = normalize_name(name);
        if self.files.contains_key(&n) {
            return Ok(Resolution::Module(n));
        }
        if self.builtin.contains_key(&n) {
            return Ok(Resolution::Builtin);
        }
        let matches = self.match_alias(name)?;
        if matches.is_empty() {
            return Ok(Resolution::NotFound);
        }
        let builtin = matches.iter().any(|m| self.builtin.contains_key(m));
        let loadable: Vec<String> = matches.into_iter().filter(|m| self.files.contains_key(m)).collect();
        if loadable.is_empty() && builtin {
            return Ok(Resolution::Builtin);
        }
        Ok(Resolution::Alias(loadable, builtin))
    }

    /// Computes the load order of `roots` (name or alias, and why it is needed) and their
    /// dependencies. A root that resolves to nothing is an error; a softdep that resolves to
    /// nothing is a warning (modprobe ignores it too).
    pub fn closure(&mut self, roots: &[(String, String)]) -> Result<(Vec<ModuleFile>, Vec<String>), ModuleError> {
        let mut order = Vec::new();
        let mut seen = BTreeSet::new();
        let mut warnings = Vec::new();
        for (name, why) in roots {
            match self.resolve(name)? {
                Resolution::Module(m) => self.visit(&m, 0, &mut seen, &mut order, &mut warnings)?,
                Resolution::Builtin => {}
                Resolution::Alias(ms, _) => {
                    for m in ms {
                        self.visit(&m, 0, &mut seen, &mut order, &mut warnings)?;
                    }
                }
                Resolution::NotFound => {
                    return Err(ModuleError::NotFound {
                        name: name.clone(),
                        why: why.clone(),
                        release: self.release.clone(),
                        dir: self.dir.clone(),
                    })
                }
            }
        }
        let files = order
            .into_iter()
            .filter_map(|n: String| self.files.get(&n).map(|r| ModuleFile { name: n, rel_path: r.clone() }))
            .collect();
        Ok((files, warnings))
    }

    fn visit_soft(
        &mut self,
        of: &str,
        name: &str,
        depth: usize,
        seen: &mut BTreeSet<String>,
        order: &mut Vec<String>,
        warnings: &mut Vec<String>,
    ) -> Result<(), ModuleError> {
        match self.resolve(name)? {
            Resolution::Module(m) => self.visit(&m, depth, seen, order, warnings),
            Resolution::Builtin => Ok(()),
            Resolution::Alias(ms, _) => {
                for m in ms {
                    self.visit(&m, depth, seen, order, warnings)?;
                }
                Ok(())
            }
            Resolution::NotFound => {
                warnings.push(format!("softdep {name:?} of module {of} not found; skipped"));
                Ok(())
            }
        }
    }

    fn visit(
        &mut self,
        name: &str,
        depth: usize,
        seen: &mut BTreeSet<String>,
        order: &mut Vec<String>,
        warnings: &mut Vec<String>,
    ) -> Result<(), ModuleError> {
        if !seen.insert(name.to_string()) {
            return Ok(());
        }
        if depth >= MAX_DEP_DEPTH {
            return Err(ModuleError::TooDeep {
                name: name.to_string(),
                release: self.release.clone(),
                dir: self.dir.clone(),
            });
        }
        self.ensure_modinfo(name)?;
        let sd = self.softdeps.get(name).cloned().unwrap_or_default();
        for p in &sd.pre {
            self.visit_soft(name, p, depth + 1, seen, order, warnings)?;
        }
        let deps = self.deps.get(name).cloned().unwrap_or_default();
        for d in deps {
            if self.files.contains_key(&d) {
                self.visit(&d, depth + 1, seen, order, warnings)?;
            } else if !self.builtin.contains_key(&d) {
                return Err(ModuleError::NotFound {
                    name: d,
                    why: format!("dependency of {name}"),
                    release: self.release.clone(),
                    dir: self.dir.clone(),
                });
            }
        }
        order.push(name.to_string());
        for p in &sd.post {
            self.visit_soft(name, p, depth + 1, seen, order, warnings)?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::compress::{compress, Compression};
    use crate::modinfo::tiny_module;

    #[test]
    fn globs() {
        assert!(glob_match("pci:v00001AF4d*sv*sd*bc*sc*i*", "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00"));
        assert!(!glob_match("pci:v00001AF4d*sv*sd*bc*sc*i*", "pci:v00008086d00001001sv00001AF4sd00000002bc01sc00i00"));
        assert!(glob_match("virtio:d00000002v*", "virtio:d00000002v00001AF4"));
        assert!(glob_match("a?c", "abc") && !glob_match("a?c", "ac"));
        assert!(glob_match("x[0-9]y", "x5y") && !glob_match("x[0-9]y", "xay"));
        assert!(glob_match("x[!0-9]y", "xay") && !glob_match("x[^0-9]y", "x1y"));
        assert!(glob_match("[]a]", "]"));
        assert!(!glob_match("x[0-9", "x5"));
        assert!(glob_match("*", "") && glob_match("a*b*c", "axxbyyc") && !glob_match("a*b*c", "axxbyy"));
        assert_eq!(normalize_alias("fs-ext4"), "fs_ext4");
        assert_eq!(normalize_alias("x[a-c]-y"), "x[a-c]_y");
        assert_eq!(name_from_path("kernel/a/virtio-blk.ko.xz").as_deref(), Some("virtio_blk"));
        assert_eq!(name_from_path("kernel/a/readme.txt"), None);
    }

    /// A synthetic module tree: (relative path, modinfo) with modules.* index files.
    pub(crate) fn synthetic_tree(dir: &Path, with_index: bool) {
        let mods: &[(&str, &[&str])] = &[
            ("kernel/drivers/virtio/virtio.ko", &["depends="]),
            ("kernel/drivers/virtio/virtio_ring.ko.xz", &["depends=virtio"]),
            (
                "kernel/drivers/virtio/virtio_pci.ko.zst",
                &["depends=virtio,virtio_ring", "alias=pci:v00001AF4d*sv*sd*bc*sc*i*"],
            ),
            ("kernel/drivers/block/virtio_blk.ko", &["depends=virtio,virtio_ring", "alias=virtio:d00000002v*"]),
            ("kernel/drivers/nvme/host/nvme-core.ko", &["depends="]),
            ("kernel/drivers/nvme/host/nvme.ko", &["depends=nvme-core", "alias=pci:v*d*sv*sd*bc01sc08i02*"]),
            ("kernel/drivers/scsi/scsi_mod.ko", &["depends="]),
            ("kernel/drivers/scsi/sd_mod.ko", &["depends=scsi_mod", "alias=scsi:t-0x00*"]),
            ("kernel/drivers/ata/libata.ko", &["depends=scsi_mod"]),
            ("kernel/drivers/ata/libahci.ko", &["depends=libata"]),
            ("kernel/drivers/ata/ahci.ko", &["depends=libahci,libata", "alias=pci:v*d*sv*sd*bc01sc06i01*"]),
            ("kernel/drivers/md/dm-mod.ko", &["depends="]),
            ("kernel/drivers/md/dm-crypt.ko", &["depends=dm-mod"]),
            ("kernel/fs/mbcache.ko", &["depends="]),
            ("kernel/fs/jbd2/jbd2.ko", &["depends=", "softdep=pre: crc32c"]),
            ("kernel/lib/crc16.ko", &["depends="]),
            (
                "kernel/fs/ext4/ext4.ko.gz",
                &[
                    "depends=mbcache,jbd2,crc16",
                    "softdep=pre: crypto-crc32c post: ext4_post",
                    "alias=fs-ext4",
                    "alias=fs-ext2",
                ],
            ),
            ("kernel/fs/ext4_post.ko", &["depends="]),
            ("kernel/crypto/crc32c_generic.ko", &["depends=", "alias=crypto-crc32c", "alias=crc32c"]),
            ("kernel/fs/xfs/xfs.ko", &["depends=libcrc32c"]),
            ("kernel/lib/libcrc32c.ko", &["depends="]),
        ];
        for (rel, info) in mods {
            let p = dir.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            let c = crate::modinfo::module_compression(&p);
            std::fs::write(&p, compress(&tiny_module(info), c).unwrap()).unwrap();
        }
        if !with_index {
            return;
        }
        let mut dep = String::new();
        let mut alias = String::new();
        let mut softdep = String::new();
        for (rel, info) in mods {
            let name = name_from_path(rel).unwrap();
            let mut deps = Vec::new();
            for kv in *info {
                if let Some(d) = kv.strip_prefix("depends=") {
                    // modules.dep lists the transitive closure; keep it simple: direct deps
                    // plus theirs, as depmod would.
                    for n in d.split(',').filter(|s| !s.is_empty()) {
                        deps.push(n.replace('-', "_"));
                    }
                }
                if let Some(a) = kv.strip_prefix("alias=") {
                    alias += &format!("alias {a} {name}\n");
                }
                if let Some(s) = kv.strip_prefix("softdep=") {
                    softdep += &format!("softdep {name} {s}\n");
                }
            }
            let paths: Vec<&str> = deps
                .iter()
                .map(|d| {
                    mods.iter().find(|(r, _)| name_from_path(r).as_deref() == Some(d)).map(|x| x.0).unwrap_or("MISSING")
                })
                .collect();
            dep += &format!("{rel}: {}\n", paths.join(" "));
        }
        std::fs::write(dir.join("modules.dep"), dep).unwrap();
        std::fs::write(dir.join("modules.alias"), alias).unwrap();
        std::fs::write(dir.join("modules.softdep"), softdep).unwrap();
        // crc16 is a loadable module above; libcrc32c also listed as builtin in a second
        // scenario. Here: a builtin that xfs depends on would be skipped.
        std::fs::write(dir.join("modules.builtin"), "kernel/lib/crc32c-builtin-thing.ko\nkernel/fs/fat/vfat.ko\n")
            .unwrap();
    }

    fn names(v: &[ModuleFile]) -> Vec<&str> {
        v.iter().map(|m| m.name.as_str()).collect()
    }

    fn check_ext4_virtio(idx: &mut ModuleIndex) {
        let roots = vec![
            ("ext4".to_string(), "filesystem".to_string()),
            ("virtio_blk".to_string(), "extra_modules".to_string()),
            ("virtio-pci".to_string(), "extra_modules".to_string()),
            ("vfat".to_string(), "builtin".to_string()),
        ];
        let (mods, warns) = idx.closure(&roots).unwrap();
        let n = names(&mods);
        assert_eq!(
            n,
            [
                "crc32c_generic",
                "mbcache",
                "jbd2",
                "crc16",
                "ext4",
                "ext4_post",
                "virtio",
                "virtio_ring",
                "virtio_blk",
                "virtio_pci"
            ],
            "{warns:?}"
        );
        assert!(warns.is_empty(), "{warns:?}");
        let pos = |x: &str| n.iter().position(|m| *m == x).unwrap();
        assert!(pos("crc32c_generic") < pos("ext4") && pos("ext4") < pos("ext4_post"));
        assert!(mods.iter().any(|m| m.rel_path == "kernel/fs/ext4/ext4.ko.gz"));
        assert!(mods.iter().any(|m| m.rel_path == "kernel/drivers/virtio/virtio_ring.ko.xz"));
        assert!(mods.iter().any(|m| m.name == "virtio_blk" && m.is_storage_driver()));
        assert!(!mods.iter().any(|m| m.name == "virtio_pci" && m.is_storage_driver()));
    }

    #[test]
    fn closure_from_index_files() {
        let dir = tempfile::tempdir().unwrap();
        synthetic_tree(dir.path(), true);
        let mut idx = ModuleIndex::load(dir.path(), "test").unwrap();
        check_ext4_virtio(&mut idx);
        assert!(idx.is_builtin("vfat"));
        assert_eq!(idx.resolve("fs-ext2").unwrap(), Resolution::Alias(vec!["ext4".into()], false));
        assert_eq!(idx.resolve("vfat").unwrap(), Resolution::Builtin);
        assert_eq!(idx.match_alias("virtio:d00000002v00001AF4").unwrap(), ["virtio_blk"]);
        let err = idx.closure(&[("nosuch".into(), "extra_modules".into())]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("\"nosuch\"") && msg.contains("extra_modules") && msg.contains("modules.dep"), "{msg}");
    }

    #[test]
    fn closure_from_modinfo_without_index() {
        let dir = tempfile::tempdir().unwrap();
        synthetic_tree(dir.path(), false);
        std::fs::write(dir.path().join("modules.builtin"), "kernel/fs/fat/vfat.ko\n").unwrap();
        let mut idx = ModuleIndex::load(dir.path(), "test").unwrap();
        check_ext4_virtio(&mut idx);
    }

    #[test]
    fn builtin_dependency_skipped_and_missing_dependency_named() {
        let dir = tempfile::tempdir().unwrap();
        synthetic_tree(dir.path(), true);
        std::fs::write(dir.path().join("modules.builtin"), "kernel/lib/libcrc32c.ko\n").unwrap();
        // xfs depends on libcrc32c, which is now also built in: modules.dep still names the file
        // here, so make it vanish from modules.dep to model a builtin dependency.
        let dep = std::fs::read_to_string(dir.path().join("modules.dep")).unwrap();
        let dep: String =
            dep.lines().filter(|l| !l.starts_with("kernel/lib/libcrc32c.ko:")).map(|l| format!("{l}\n")).collect();
        std::fs::write(dir.path().join("modules.dep"), &dep).unwrap();
        let mut idx = ModuleIndex::load(dir.path(), "test").unwrap();
        let (mods, _) = idx.closure(&[("xfs".into(), "filesystem".into())]).unwrap();
        assert_eq!(names(&mods), ["xfs"]);
        // Without the builtin entry the dependency is missing: a clear error.
        std::fs::write(dir.path().join("modules.builtin"), "").unwrap();
        let mut idx = ModuleIndex::load(dir.path(), "test").unwrap();
        let err = idx.closure(&[("xfs".into(), "filesystem".into())]).unwrap_err().to_string();
        assert!(err.contains("libcrc32c") && err.contains("dependency of xfs"), "{err}");
    }

    #[test]
    fn dependency_chain_deeper_than_the_limit_is_an_error_not_a_stack_overflow() {
        let dir = tempfile::tempdir().unwrap();
        // m0 -> m1 -> ... -> m99999, in modules.dep only (a damaged or crafted index).
        let n = 100_000;
        let mut dep = String::new();
        for i in 0..n {
            dep.push_str(&format!("kernel/m{i}.ko:"));
            if i + 1 < n {
                dep.push_str(&format!(" kernel/m{}.ko", i + 1));
            }
            dep.push('\n');
        }
        std::fs::write(dir.path().join("modules.dep"), dep).unwrap();
        let mut idx = ModuleIndex::load(dir.path(), "test").unwrap();
        let err = idx.closure(&[("m0".into(), "x".into())]).unwrap_err();
        assert!(matches!(err, ModuleError::TooDeep { ref name, .. } if name == &format!("m{MAX_DEP_DEPTH}")), "{err}");
        assert!(err.to_string().contains("depmod"), "{err}");
        // A chain within the limit resolves, deepest module first.
        let (mods, _) = idx.closure(&[(format!("m{}", n - 10), "x".into())]).unwrap();
        assert_eq!(mods.len(), 10);
        assert_eq!(mods[0].name, format!("m{}", n - 1));
    }

    #[test]
    fn missing_softdep_is_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        synthetic_tree(dir.path(), true);
        std::fs::write(dir.path().join("modules.softdep"), "softdep crc16 pre: nosuch_mod\n").unwrap();
        let mut idx = ModuleIndex::load(dir.path(), "test").unwrap();
        let (mods, warns) = idx.closure(&[("crc16".into(), "x".into())]).unwrap();
        assert_eq!(names(&mods), ["crc16"]);
        assert_eq!(warns.len(), 1);
        assert!(warns[0].contains("nosuch_mod"));
    }

    #[test]
    fn find_dir_under_root() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("usr/lib/modules/9.9")).unwrap();
        assert_eq!(ModuleIndex::find_dir(Some(root.path()), "9.9").unwrap(), root.path().join("usr/lib/modules/9.9"));
        std::fs::create_dir_all(root.path().join("lib/modules/9.9")).unwrap();
        assert_eq!(ModuleIndex::find_dir(Some(root.path()), "9.9").unwrap(), root.path().join("lib/modules/9.9"));
        let e = ModuleIndex::find_dir(Some(root.path()), "1.0").unwrap_err().to_string();
        assert!(e.contains("lib/modules/1.0") && e.contains("usr/lib/modules/1.0"), "{e}");
        let _ = Compression::None;
    }
}
