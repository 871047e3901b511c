//! A minimal capture-kernel `.config` fragment (`rkdump kernel-config`).
//!
//! A dedicated capture kernel needs far less than a distribution kernel: Debian's 6.1 kernel
//! asks for 63.6 MiB at boot (its bzImage `init_size`) before the image is unpacked, most of it
//! for drivers a capture never touches. The fragment names what a capture with rkdump needs,
//! all built in (`=y`), so the kernel boots without loading modules:
//!
//! - the kdump options of [`crate::checks`] and what the static init uses (ELF binaries,
//!   futexes for its threads, tmpfs, a serial console for its messages, the image's
//!   compression);
//! - one option per kernel module the capture image loads (its storage and filesystem
//!   drivers): the option that builds the module, found in the kernel source's own
//!   `Makefile`/`Kbuild` lines (`obj-$(CONFIG_VIRTIO_BLK) += virtio_blk.o`), so no table of
//!   module names goes stale;
//! - the user-visible options those depend on, from the plain `depends on A && B` lines and
//!   enclosing `if A` blocks of the source's `Kconfig` files, including the blocks around the
//!   `source` line that reads a file (`if USB` ... `source "drivers/usb/storage/Kconfig"`).
//!   A `||` or `!` term is left to the kernel's own configurator, which reports what it
//!   dropped; so does [`Fragment::check`] against the resulting `.config`.
//!
//! Merge it onto a small base: `make tinyconfig`, then `scripts/kconfig/merge_config.sh -m
//! .config capture.config && make olddefconfig`. x86_64 only, like the rest of rkdump.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::Kconfig;

/// Why a fragment could not be made.
#[derive(Debug, thiserror::Error)]
pub enum FragmentError {
    /// The directory is not a kernel source tree.
    #[error("{0} is not a kernel source tree (no Kconfig and arch/x86/Kconfig there)")]
    NotASource(PathBuf),
    /// A directory or file of the tree could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Options every capture kernel needs beside the kdump ones of [`crate::checks`], with why.
const BASE: &[(&str, &str)] = &[
    ("CONFIG_64BIT", "x86_64 (rkdump reads 64-bit vmcores)"),
    ("CONFIG_PRINTK", "kernel messages, and the init's log through /dev/kmsg"),
    ("CONFIG_TTY", "the console"),
    ("CONFIG_SERIAL_8250", "a serial console"),
    ("CONFIG_SERIAL_8250_CONSOLE", "a serial console (console=ttyS0)"),
    ("CONFIG_BINFMT_ELF", "running the static init"),
    ("CONFIG_BINFMT_SCRIPT", "running #! hooks (kdump_pre, kdump_post)"),
    ("CONFIG_FUTEX", "the init's threads (compression workers)"),
    ("CONFIG_SHMEM", "tmpfs"),
    ("CONFIG_PROC_SYSCTL", "the init reads and sets kernel.printk"),
    ("CONFIG_BLOCK", "block devices"),
    ("CONFIG_PCI", "finding the dump target's controller"),
    ("CONFIG_ACPI", "PCI interrupt routing and power-off on real machines"),
];

/// One line of a fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// `CONFIG_...`.
    pub name: String,
    /// Why it is there.
    pub why: String,
}

/// A capture-kernel fragment: options to set to `y`, and the modules no option was found for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fragment {
    /// The options, in the order they are printed.
    pub lines: Vec<Line>,
    /// Modules no `obj-$(CONFIG_...)` line of the source builds.
    pub unknown_modules: Vec<String>,
}

/// What the fragment is made from.
#[derive(Debug, Clone, Default)]
pub struct Needs<'a> {
    /// Kernel modules the capture image loads (names or `.ko` paths).
    pub modules: &'a [String],
    /// The option that lets the kernel unpack the image (`CONFIG_RD_ZSTD`; none for a plain
    /// cpio).
    pub initrd_option: Option<&'a str>,
}

/// The facts read from a kernel source tree.
#[derive(Debug, Clone, Default)]
pub struct KernelSource {
    /// Module name (`-` as `_`) -> the option that builds it.
    module_option: BTreeMap<String, String>,
    /// Option -> its entry.
    entries: BTreeMap<String, Entry>,
    /// Kconfig file (path in the tree) -> what it defines and sources.
    files: BTreeMap<String, KconfigFile>,
}

#[derive(Debug, Clone, Default)]
struct Entry {
    /// It has a prompt (a user can set it; others follow from `select` or defaults).
    prompt: bool,
    /// Options it plainly depends on.
    depends: BTreeSet<String>,
}

/// The module name of an object or `.ko` path: `drivers/block/virtio_blk.ko.xz` ->
/// `virtio_blk`, `crc32c-intel.o` -> `crc32c_intel`.
pub fn module_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let stem = base.split(".ko").next().unwrap_or(base);
    let stem = stem.strip_suffix(".o").unwrap_or(stem);
    stem.replace('-', "_")
}

/// Joins `\`-continued lines.
fn logical_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        match line.strip_suffix('\\') {
            Some(head) => {
                cur.push_str(head);
                cur.push(' ');
            }
            None => {
                cur.push_str(line);
                out.push(std::mem::take(&mut cur));
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// `obj-$(CONFIG_X) += a.o b.o dir/` lines of one Makefile or Kbuild file: module -> option.
fn parse_makefile(text: &str, out: &mut BTreeMap<String, String>) {
    for line in logical_lines(text) {
        let line = line.split('#').next().unwrap_or("");
        let Some(rest) = line.trim_start().strip_prefix("obj-$(") else { continue };
        let Some((var, rest)) = rest.split_once(')') else { continue };
        if !var.starts_with("CONFIG_") || !var[7..].chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let rest = rest.trim_start();
        let Some(objs) = rest.strip_prefix("+=").or_else(|| rest.strip_prefix(":=")) else { continue };
        for obj in objs.split_whitespace().filter(|o| o.ends_with(".o")) {
            out.entry(module_name(obj)).or_insert_with(|| var.to_string());
        }
    }
}

/// The plain symbols of a `depends on`/`if` expression that must all hold: the terms of a
/// top-level `&&` chain that are a bare symbol (`A`, `(A)`), or `A = y`. Terms with `||`, `!`
/// or a comparison to anything else are not followed.
fn required_symbols(expr: &str) -> Vec<String> {
    let expr = expr.split('#').next().unwrap_or("").trim();
    let mut out = Vec::new();
    // Split on && at parenthesis depth 0.
    let (mut depth, mut start) = (0i32, 0usize);
    let bytes = expr.as_bytes();
    let mut terms = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'(' => depth += 1,
            b')' => depth -= 1,
            b'&' if depth == 0 && bytes.get(i + 1) == Some(&b'&') => {
                terms.push(&expr[start..i]);
                start = i + 2;
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    terms.push(&expr[start..]);
    for t in terms {
        let mut t = t.trim();
        while let Some(inner) = t.strip_prefix('(').and_then(|x| x.strip_suffix(')')) {
            t = inner.trim();
        }
        let t = match t.split_once('=') {
            Some((a, b)) if !a.ends_with('!') && b.trim() == "y" => a.trim(),
            Some(_) => continue,
            None => t,
        };
        if !t.is_empty() && t.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_') {
            out.push(format!("CONFIG_{t}"));
        }
    }
    out
}

/// What one Kconfig file defines, and the files it sources with the conditions of the blocks
/// around each `source` line (a sourced file's entries inherit them).
#[derive(Debug, Clone, Default)]
struct KconfigFile {
    defined: Vec<String>,
    sources: Vec<(String, Vec<String>)>,
}

/// Entries of one Kconfig file: `config`/`menuconfig` blocks, their prompts and `depends on`
/// lines, and the conditions of enclosing `if` and `menu ... depends on` blocks.
fn parse_kconfig(text: &str, out: &mut BTreeMap<String, Entry>) -> KconfigFile {
    let mut file = KconfigFile::default();
    // Conditions of the open `if`/`menu` blocks (a menu's arrive with its `depends on`).
    let mut blocks: Vec<Vec<String>> = Vec::new();
    let mut current: Option<String> = None;
    let mut in_menu_header = false;
    for line in logical_lines(text) {
        let t = line.trim();
        let word = t.split_whitespace().next().unwrap_or("");
        let arg = t[word.len()..].trim();
        match word {
            "config" | "menuconfig" => {
                let name = format!("CONFIG_{arg}");
                file.defined.push(name.clone());
                let e = out.entry(name.clone()).or_default();
                for b in &blocks {
                    e.depends.extend(b.iter().cloned());
                }
                current = Some(name);
                in_menu_header = false;
            }
            "if" => {
                blocks.push(required_symbols(arg));
                current = None;
                in_menu_header = false;
            }
            "menu" => {
                blocks.push(Vec::new());
                current = None;
                in_menu_header = true;
            }
            "endif" | "endmenu" => {
                blocks.pop();
                current = None;
                in_menu_header = false;
            }
            "source" | "osource" => {
                let path = arg.trim_matches('"').replace("$(SRCARCH)", "x86");
                file.sources.push((path, blocks.concat()));
                current = None;
                in_menu_header = false;
            }
            "choice" | "endchoice" | "comment" | "mainmenu" => {
                current = None;
                in_menu_header = false;
            }
            "depends" => {
                let expr = arg.strip_prefix("on").unwrap_or(arg);
                let syms = required_symbols(expr);
                if in_menu_header {
                    if let Some(b) = blocks.last_mut() {
                        b.extend(syms);
                    }
                } else if let Some(e) = current.as_ref().and_then(|c| out.get_mut(c)) {
                    e.depends.extend(syms);
                }
            }
            "bool" | "tristate" | "prompt" | "int" | "hex" | "string" if arg.starts_with('"') => {
                if let Some(e) = current.as_ref().and_then(|c| out.get_mut(c)) {
                    e.prompt = true;
                }
            }
            "help" | "---help---" => current = None,
            _ => {}
        }
    }
    file
}

impl KernelSource {
    /// Reads the `Makefile`, `Kbuild` and `Kconfig*` files of a source tree (other
    /// architectures' directories skipped).
    pub fn scan(root: &Path) -> Result<KernelSource, FragmentError> {
        if !root.join("Kconfig").is_file() || !root.join("arch/x86/Kconfig").is_file() {
            return Err(FragmentError::NotASource(root.to_path_buf()));
        }
        let mut src = KernelSource::default();
        let mut dirs = vec![root.to_path_buf()];
        while let Some(dir) = dirs.pop() {
            let rd = std::fs::read_dir(&dir).map_err(|source| FragmentError::Read { path: dir.clone(), source })?;
            for ent in rd.flatten() {
                let path = ent.path();
                let name = ent.file_name().to_string_lossy().into_owned();
                let Ok(ft) = ent.file_type() else { continue };
                if ft.is_dir() {
                    let skip = name.starts_with('.')
                        || (dir == root.join("arch") && name != "x86")
                        || (dir == *root && matches!(name.as_str(), "Documentation" | "tools" | "samples"));
                    if !skip {
                        dirs.push(path);
                    }
                    continue;
                }
                let makefile = name == "Makefile" || name == "Kbuild";
                let kconfig = name.starts_with("Kconfig");
                if !makefile && !kconfig {
                    continue;
                }
                let text = std::fs::read(&path).map_err(|source| FragmentError::Read { path: path.clone(), source })?;
                let text = String::from_utf8_lossy(&text);
                if makefile {
                    src.add_makefile(&text);
                } else {
                    let rel = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().into_owned();
                    src.add_kconfig(&rel, &text);
                }
            }
        }
        src.inherit_source_conditions();
        Ok(src)
    }

    /// Adds the `obj-$(CONFIG_...)` lines of one `Makefile` or `Kbuild` file.
    pub fn add_makefile(&mut self, text: &str) {
        parse_makefile(text, &mut self.module_option);
    }

    /// Adds the entries of one `Kconfig` file (`path`: its place in the tree, as `source`
    /// lines name it).
    pub fn add_kconfig(&mut self, path: &str, text: &str) {
        let file = parse_kconfig(text, &mut self.entries);
        self.files.insert(path.to_string(), file);
    }

    /// Gives the entries of every file the conditions under which it is sourced (`if USB`
    /// around `source "drivers/usb/storage/Kconfig"`), through any depth of `source` lines.
    pub fn inherit_source_conditions(&mut self) {
        // Conditions each file is sourced under, from the files that source it, grown to a fixed
        // point (sets only grow and are bounded by the symbols named, so this ends; a file
        // sourced from two places gets both sites' conditions, a rare and conservative case).
        let mut inherited: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut changed = true;
        while changed {
            changed = false;
            for (path, f) in &self.files {
                let mine = inherited.get(path).cloned().unwrap_or_default();
                for (src, conds) in &f.sources {
                    let have = inherited.entry(src.clone()).or_default();
                    let before = have.len();
                    have.extend(mine.iter().cloned());
                    have.extend(conds.iter().cloned());
                    changed |= have.len() != before;
                }
            }
        }
        for (path, conds) in inherited {
            let Some(f) = self.files.get(&path) else { continue };
            for name in &f.defined {
                if let Some(e) = self.entries.get_mut(name) {
                    e.depends.extend(conds.iter().filter(|c| *c != name).cloned());
                }
            }
        }
    }

    /// The option that builds `module`.
    pub fn option_of_module(&self, module: &str) -> Option<&str> {
        self.module_option.get(&module_name(module)).map(String::as_str)
    }

    /// Whether the source defines `option` with a prompt (a user can set it).
    pub fn settable(&self, option: &str) -> bool {
        self.entries.get(option).is_some_and(|e| e.prompt)
    }
}

/// The fragment for a capture with `needs`, from the facts of `src`.
pub fn fragment(src: &KernelSource, needs: &Needs<'_>) -> Fragment {
    let mut frag = Fragment::default();
    let mut seen = BTreeSet::new();
    let mut push = |frag: &mut Fragment, name: &str, why: String| {
        if seen.insert(name.to_string()) {
            frag.lines.push(Line { name: name.to_string(), why });
        }
    };
    for c in crate::checks::kdump_options(&Kconfig::default()) {
        if c.need == crate::checks::Need::Required && c.role == crate::checks::Role::Capture {
            push(&mut frag, c.name, c.why.to_string());
        }
    }
    for &(name, why) in BASE {
        push(&mut frag, name, why.to_string());
    }
    if let Some(opt) = needs.initrd_option {
        push(&mut frag, opt, "unpacking the capture image".into());
    }
    for m in needs.modules {
        let name = module_name(m);
        match src.option_of_module(&name) {
            Some(opt) => push(&mut frag, opt, format!("module {name}, which the capture needs")),
            None => frag.unknown_modules.push(name),
        }
    }
    // Dependencies, breadth first, so each is explained by the first option that needs it.
    let mut i = 0;
    while i < frag.lines.len() {
        let name = frag.lines[i].name.clone();
        if let Some(e) = src.entries.get(&name) {
            let mut queue: std::collections::VecDeque<String> = e.depends.iter().cloned().collect();
            let mut visited = BTreeSet::new();
            while let Some(d) = queue.pop_front() {
                if !visited.insert(d.clone()) {
                    continue;
                }
                match src.entries.get(&d) {
                    Some(de) if de.prompt => push(&mut frag, &d, format!("needed by {name}")),
                    // A symbol without a prompt follows from others: look through it.
                    Some(de) => queue.extend(de.depends.iter().cloned()),
                    None => {}
                }
            }
        }
        i += 1;
    }
    // Options the source does not offer on x86 (or not to users) are left out: the base list
    // is written for every kernel since 5.x, and a fragment line the configurator cannot honour
    // only adds a warning.
    frag.lines.retain(|l| src.settable(&l.name));
    frag
}

impl Fragment {
    /// The fragment as a `.config` fragment, one commented line per option.
    pub fn render(&self) -> String {
        let mut s = String::from(
            "# rkdump capture-kernel fragment: merge onto `make tinyconfig` with\n\
             # scripts/kconfig/merge_config.sh -m .config THIS && make olddefconfig\n",
        );
        for l in &self.lines {
            s.push_str(&format!("{}=y\n", l.name));
            s.push_str(&format!("#   {}\n", l.why));
        }
        for m in &self.unknown_modules {
            s.push_str(&format!(
                "# module {m}: no obj-$(CONFIG_...) line of this source builds it; enable it by hand\n"
            ));
        }
        s
    }

    /// Options of the fragment that `config` (the `.config` a configurator made from it) does
    /// not build in.
    pub fn check<'a>(&'a self, config: &Kconfig) -> Vec<&'a Line> {
        self.lines.iter().filter(|l| !config.is_builtin(&l.name)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makefile_lines_map_modules_to_options() {
        let mut m = BTreeMap::new();
        parse_makefile(
            "obj-$(CONFIG_VIRTIO_BLK)\t+= virtio_blk.o\n\
             obj-$(CONFIG_VIRTIO) += virtio.o \\\n\tvirtio_ring.o # comment\n\
             obj-$(CONFIG_CRYPTO_CRC32C_INTEL) += crc32c-intel.o\n\
             crc32c-intel-y := crc32c-intel_glue.o\n\
             obj-y += core.o\n\
             obj-$(CONFIG_EXT4_FS) += ext4/\n\
             obj-$(subst m,y,$(CONFIG_X)) += odd.o\n",
            &mut m,
        );
        assert_eq!(m.get("virtio_blk").map(String::as_str), Some("CONFIG_VIRTIO_BLK"));
        assert_eq!(m.get("virtio_ring").map(String::as_str), Some("CONFIG_VIRTIO"));
        assert_eq!(m.get("crc32c_intel").map(String::as_str), Some("CONFIG_CRYPTO_CRC32C_INTEL"));
        assert!(!m.contains_key("core") && !m.contains_key("odd") && !m.contains_key("crc32c_intel_glue"));
        assert_eq!(module_name("/lib/modules/r/kernel/fs/ext4/ext4.ko.zst"), "ext4");
        assert_eq!(module_name("dm-mod.ko"), "dm_mod");
    }

    #[test]
    fn kconfig_dependencies_follow_plain_terms_and_if_blocks() {
        let mut e = BTreeMap::new();
        parse_kconfig(
            "menuconfig BLK_DEV\n\tbool \"Block devices\"\n\tdepends on BLOCK\n\
             if BLK_DEV\n\
             config VIRTIO_BLK\n\ttristate \"Virtio block driver\"\n\tdepends on VIRTIO && (PCI)\n\thelp\n\t  depends on NOTME\n\
             config ODD\n\ttristate \"x\"\n\tdepends on A || B\n\tdepends on !C && D = y && E = m\n\
             endif\n\
             menu \"Stuff\"\n\tdepends on NET\n\
             config INNER\n\tdef_bool y\n\
             endmenu\n\
             config OUTER\n\tbool\n",
            &mut e,
        );
        let deps = |n: &str| e[n].depends.iter().cloned().collect::<Vec<_>>();
        assert_eq!(deps("CONFIG_BLK_DEV"), ["CONFIG_BLOCK"]);
        assert_eq!(deps("CONFIG_VIRTIO_BLK"), ["CONFIG_BLK_DEV", "CONFIG_PCI", "CONFIG_VIRTIO"]);
        assert_eq!(deps("CONFIG_ODD"), ["CONFIG_BLK_DEV", "CONFIG_D"]);
        assert_eq!(deps("CONFIG_INNER"), ["CONFIG_NET"]);
        assert!(deps("CONFIG_OUTER").is_empty());
        assert!(e["CONFIG_VIRTIO_BLK"].prompt && e["CONFIG_BLK_DEV"].prompt);
        assert!(!e["CONFIG_INNER"].prompt && !e["CONFIG_OUTER"].prompt);
    }

    /// `if USB` around `source "drivers/usb/storage/Kconfig"`: the sourced file's entries depend
    /// on USB (and on what the sourcing file itself is sourced under), and `$(SRCARCH)` is x86.
    #[test]
    fn sourced_files_inherit_the_conditions_around_their_source_line() {
        let mut src = KernelSource::default();
        src.add_kconfig("Kconfig", "source \"drivers/Kconfig\"\nsource \"arch/$(SRCARCH)/Kconfig\"\n");
        src.add_kconfig(
            "drivers/Kconfig",
            "menuconfig USB_SUPPORT\n\tbool \"USB support\"\nif USB_SUPPORT\nconfig USB\n\ttristate \"USB\"\n\
             if USB\nsource \"drivers/usb/storage/Kconfig\"\nendif\nendif\nsource \"drivers/other/Kconfig\"\n",
        );
        src.add_kconfig(
            "drivers/usb/storage/Kconfig",
            "config USB_STORAGE\n\ttristate \"USB Mass Storage\"\n\tdepends on SCSI\n",
        );
        src.add_kconfig("drivers/other/Kconfig", "config OTHER\n\tbool \"other\"\n");
        src.add_kconfig("arch/x86/Kconfig", "config X86_THING\n\tbool \"x\"\n");
        src.inherit_source_conditions();
        let deps = |src: &KernelSource, n: &str| src.entries[n].depends.iter().cloned().collect::<Vec<_>>();
        assert_eq!(deps(&src, "CONFIG_USB_STORAGE"), ["CONFIG_SCSI", "CONFIG_USB", "CONFIG_USB_SUPPORT"]);
        assert_eq!(deps(&src, "CONFIG_USB"), ["CONFIG_USB_SUPPORT"]);
        assert!(deps(&src, "CONFIG_OTHER").is_empty() && deps(&src, "CONFIG_X86_THING").is_empty());
        assert!(src.files.contains_key("arch/x86/Kconfig"));
        // A file sourcing itself (not in real trees) ends.
        src.add_kconfig("loop/Kconfig", "if A\nsource \"loop/Kconfig\"\nendif\nconfig L\n\tbool \"l\"\n");
        src.inherit_source_conditions();
        assert_eq!(deps(&src, "CONFIG_L"), ["CONFIG_A"]);
    }

    #[test]
    fn fragment_adds_module_options_and_their_settable_dependencies() {
        let mut src = KernelSource::default();
        parse_makefile(
            "obj-$(CONFIG_VIRTIO_BLK) += virtio_blk.o\nobj-$(CONFIG_VIRTIO) += virtio.o\n",
            &mut src.module_option,
        );
        parse_kconfig(
            "config BLOCK\n\tbool \"Block layer\"\n\
             menuconfig BLK_DEV\n\tbool \"Block devices\"\n\tdepends on BLOCK\n\
             if BLK_DEV\nconfig VIRTIO_BLK\n\ttristate \"Virtio block\"\n\tdepends on VIRTIO\nendif\n\
             config VIRTIO\n\ttristate\n\tdepends on HAS_DMA\n\
             config HAS_DMA\n\tdef_bool y\n\tdepends on DMA_THING\n\
             config DMA_THING\n\tbool \"dma\"\n\
             config CRASH_DUMP\n\tbool \"kernel crash dumps\"\n\
             config RD_ZSTD\n\tbool \"zstd\"\n",
            &mut src.entries,
        );
        let modules = vec!["/lib/modules/r/kernel/drivers/block/virtio_blk.ko.xz".to_string(), "nosuch".to_string()];
        let f = fragment(&src, &Needs { modules: &modules, initrd_option: Some("CONFIG_RD_ZSTD") });
        let names: Vec<&str> = f.lines.iter().map(|l| l.name.as_str()).collect();
        // Unknown to this source (PROC_VMCORE, ...) or without a prompt (VIRTIO): left out.
        assert_eq!(
            names,
            [
                "CONFIG_CRASH_DUMP",
                "CONFIG_BLOCK",
                "CONFIG_RD_ZSTD",
                "CONFIG_VIRTIO_BLK",
                "CONFIG_BLK_DEV",
                "CONFIG_DMA_THING"
            ]
        );
        assert_eq!(f.unknown_modules, ["nosuch"]);
        let text = f.render();
        assert!(text.contains("CONFIG_VIRTIO_BLK=y\n#   module virtio_blk, which the capture needs"), "{text}");
        assert!(text.contains("CONFIG_DMA_THING=y\n#   needed by CONFIG_VIRTIO_BLK"), "{text}");
        assert!(text.contains("# module nosuch:"), "{text}");
        let got = Kconfig::parse(
            "CONFIG_CRASH_DUMP=y\nCONFIG_BLOCK=y\nCONFIG_RD_ZSTD=y\nCONFIG_VIRTIO_BLK=m\nCONFIG_BLK_DEV=y\n",
        )
        .unwrap();
        let missing: Vec<&str> = f.check(&got).iter().map(|l| l.name.as_str()).collect();
        assert_eq!(missing, ["CONFIG_VIRTIO_BLK", "CONFIG_DMA_THING"]);
    }

    #[test]
    fn a_directory_without_kconfig_is_refused() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(KernelSource::scan(d.path()), Err(FragmentError::NotASource(_))));
    }
}
