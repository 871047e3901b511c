//! Finding the dump target on the build machine and the modules its device stack needs.
//!
//! 1. Name -> block device: `UUID=`/`LABEL=` through `<dev>/disk/by-uuid|by-label/<x>` (udev's
//!    links), else by probing the superblock of every `<sysfs>/class/block/<name>` through the
//!    node `<dev>/<name>` (ext2/3/4, xfs, btrfs); a path `/dev/x` through `<dev>/x` with
//!    symlinks resolved (`/dev/mapper/vg-lv` -> `dm-0`).
//! 2. Block device -> modules: resolve `<sysfs>/class/block/<name>` into `<sysfs>/devices/...`
//!    and walk up to `<sysfs>/devices`, collecting at every level the `driver/module` symlink's
//!    basename and the `modalias` file; follow `slaves/` of device-mapper and md devices
//!    (adding `dm_mod` and the target from `dm/uuid`'s prefix, or `md_mod` and the RAID
//!    personality from `md/level`).
//!
//! **Fake trees (tests, `--sysfs DIR`)**: `DIR` is laid out like `/sys` (`class/block/<name>`
//! symlinks into `devices/...`, `driver` symlinks into `bus/*/drivers/<drv>`, whose `module`
//! symlink points at `module/<name>`). Device nodes and udev links live in a sibling `dev`
//! directory: `DIR/../dev/<name>` (a regular file holding the first 68 KiB of the device is
//! enough for superblock probing) and `DIR/../dev/disk/by-uuid/<uuid> -> ../../<name>`. Without
//! that sibling, only superblock-less lookups are possible and UUID/LABEL targets are "absent".

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rkdump_init::plan::DeviceSpec;

/// Errors walking sysfs.
#[derive(Debug, thiserror::Error)]
pub enum SysfsError {
    /// A sysfs entry could not be read or resolved.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The entry.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A device names itself in its own `slaves/` chain.
    #[error("device stack of {0} is deeper than 64 levels (a loop in slaves/?)")]
    TooDeep(String),
}

/// What a target's device stack needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceModules {
    /// The block device found (`vda1`, `dm-0`).
    pub device: String,
    /// Every block device of the stack (the device, its disk, its slaves...).
    pub stack: Vec<String>,
    /// `(module name, why)` from `driver/module` links and stacking (dm/md), in discovery order.
    pub modules: Vec<(String, String)>,
    /// `(modalias, why)` values to resolve through `modules.alias`.
    pub modaliases: Vec<(String, String)>,
    /// `true` when device-mapper or md is involved.
    pub stacked: bool,
}

/// Identifies an ext2/3/4, xfs or btrfs superblock at the start of a device (giving the init's
/// `FsInfo`), with the same code the capture init uses to find the device again.
pub use rkdump_init::probe::probe_bytes as probe_superblock;
/// Bytes of a device needed by [`probe_superblock`].
pub use rkdump_init::probe::PROBE_LEN;

/// Where to look: a sysfs root and, when known, a /dev root.
#[derive(Debug, Clone)]
pub struct Probe {
    /// `/sys` or a fake tree.
    pub sysfs: PathBuf,
    /// `/dev`, a fake tree's sibling `dev`, or nothing.
    pub devfs: Option<PathBuf>,
}

fn read_trim(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

fn basename(p: &Path) -> Option<String> {
    p.file_name().map(|n| n.to_string_lossy().into_owned())
}

/// udev's escaping of `by-label` names (`/` and spaces as `\x2f`, `\x20`).
fn udev_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || "#+-.:=@_".contains(c) {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out += &format!("\\x{b:02x}");
            }
        }
    }
    out
}

impl Probe {
    /// Sysfs `root` (default `/sys`) and its device root: `/dev` for the real `/sys`,
    /// `<root>/../dev` for a fake tree when that directory exists.
    pub fn new(sysfs: Option<&Path>) -> Self {
        match sysfs {
            None => Probe { sysfs: PathBuf::from("/sys"), devfs: Some(PathBuf::from("/dev")) },
            Some(s) => {
                let dev = s.parent().map(|p| p.join("dev")).filter(|d| d.is_dir());
                Probe { sysfs: s.to_path_buf(), devfs: dev }
            }
        }
    }

    fn class_block(&self) -> PathBuf {
        self.sysfs.join("class/block")
    }

    /// The names in `<sysfs>/class/block`, sorted; `None` if it cannot be read.
    fn block_names(&self) -> Option<Vec<String>> {
        let mut names: Vec<String> = std::fs::read_dir(self.class_block())
            .ok()?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        Some(names)
    }

    fn exists_in_sysfs(&self, name: &str) -> bool {
        self.class_block().join(name).exists()
    }

    /// Finds the block device (`vda1`) holding `spec` on this machine. `Ok(None)`: absent.
    /// Devices that could not be probed are listed in `notes`.
    pub fn find(&self, spec: &DeviceSpec, notes: &mut Vec<String>) -> Option<String> {
        let dev = self.devfs.as_ref()?;
        let via_link = |sub: &str, keys: &[String]| -> Option<String> {
            keys.iter().find_map(|k| {
                let p = std::fs::canonicalize(dev.join("disk").join(sub).join(k)).ok()?;
                basename(&p).filter(|n| self.exists_in_sysfs(n))
            })
        };
        match spec {
            DeviceSpec::Path(p) => {
                let rel = p.strip_prefix("/dev/").unwrap_or(p.trim_start_matches('/'));
                let c = std::fs::canonicalize(dev.join(rel)).ok()?;
                basename(&c).filter(|n| self.exists_in_sysfs(n))
            }
            DeviceSpec::Uuid(u) => {
                via_link("by-uuid", &[u.clone(), u.to_ascii_uppercase()]).or_else(|| self.probe_all(notes, spec))
            }
            DeviceSpec::Label(l) => {
                via_link("by-label", &[l.clone(), udev_escape(l)]).or_else(|| self.probe_all(notes, spec))
            }
            DeviceSpec::PartUuid(u) => via_link("by-partuuid", &[u.to_ascii_lowercase(), u.to_ascii_uppercase()])
                .or_else(|| self.probe_partitions(notes, u)),
        }
    }

    /// The partition whose PARTUUID (read from its disk's partition table, as the capture init
    /// does) is `want`.
    fn probe_partitions(&self, notes: &mut Vec<String>, want: &str) -> Option<String> {
        use std::os::unix::fs::FileExt;
        let dev = self.devfs.as_ref()?;
        let names = self.block_names()?;
        for part in names {
            let Some(n) = read_trim(&self.class_block().join(&part).join("partition")).and_then(|t| t.parse().ok())
            else {
                continue;
            };
            // The disk's sysfs directory holds the partition's.
            let Some(disk) = std::fs::canonicalize(self.class_block().join(&part))
                .ok()
                .and_then(|p| p.parent().and_then(basename))
                .filter(|d| self.exists_in_sysfs(d))
            else {
                continue;
            };
            let lbs = read_trim(&self.class_block().join(&disk).join("queue/logical_block_size"))
                .and_then(|t| t.parse().ok())
                .unwrap_or(512);
            let node = dev.join(&disk);
            let file = match std::fs::File::open(&node) {
                Ok(f) => f,
                Err(e) => {
                    notes.push(format!("could not read the partition table of {}: {e}", node.display()));
                    continue;
                }
            };
            let mut read = |off: u64, len: usize| -> Option<Vec<u8>> {
                let mut buf = vec![0u8; len];
                let mut got = 0;
                while got < len {
                    match file.read_at(&mut buf[got..], off + got as u64) {
                        Ok(0) | Err(_) => break,
                        Ok(k) => got += k,
                    }
                }
                buf.truncate(got);
                Some(buf)
            };
            if rkdump_init::probe::partuuid(&mut read, lbs, n).is_some_and(|u| u.eq_ignore_ascii_case(want)) {
                return Some(part);
            }
        }
        None
    }

    /// The block device whose `dev` is `major:minor` (`<sysfs>/dev/block/M:m`, else a scan of
    /// `<sysfs>/class/block/*/dev`).
    pub fn by_devnum(&self, major: u32, minor: u32) -> Option<String> {
        let link = self.sysfs.join(format!("dev/block/{major}:{minor}"));
        if let Some(n) = std::fs::canonicalize(&link).ok().and_then(|p| basename(&p)) {
            if self.exists_in_sysfs(&n) {
                return Some(n);
            }
        }
        let want = format!("{major}:{minor}");
        let names = self.block_names()?;
        names.into_iter().find(|n| read_trim(&self.class_block().join(n).join("dev")).as_deref() == Some(want.as_str()))
    }

    /// The filesystem superblock of block device `name` (read through its /dev node).
    pub fn superblock(&self, name: &str) -> std::io::Result<Option<rkdump_init::probe::FsInfo>> {
        use std::io::Read;
        let dev = self
            .devfs
            .as_ref()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no /dev tree beside the sysfs tree"))?;
        let mut buf = Vec::new();
        std::fs::File::open(dev.join(name))?.take(PROBE_LEN as u64).read_to_end(&mut buf)?;
        Ok(probe_superblock(&buf))
    }

    fn probe_all(&self, notes: &mut Vec<String>, spec: &DeviceSpec) -> Option<String> {
        let dev = self.devfs.as_ref()?;
        let names = self.block_names()?;
        let mut hits = Vec::new();
        for n in names {
            match self.superblock(&n) {
                Ok(sb) => {
                    if sb.is_some_and(|sb| sb.matches(spec)) {
                        hits.push(n);
                    }
                }
                Err(e) => notes.push(format!("could not probe {}: {e}", dev.join(&n).display())),
            }
        }
        // A RAID member or dm slave can show its holder's filesystem: prefer the top device.
        let top = hits.iter().find(|n| self.holders(n).is_empty()).cloned();
        top.or_else(|| hits.into_iter().next())
    }

    fn holders(&self, name: &str) -> Vec<String> {
        std::fs::read_dir(self.class_block().join(name).join("holders"))
            .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default()
    }

    /// Collects the modules the stack under block device `name` needs.
    pub fn device_modules(&self, name: &str) -> Result<DeviceModules, SysfsError> {
        let devices_root = std::fs::canonicalize(self.sysfs.join("devices"))
            .map_err(|source| SysfsError::Read { path: self.sysfs.join("devices"), source })?;
        let mut out = DeviceModules { device: name.to_string(), ..Default::default() };
        let mut seen_mods = BTreeSet::new();
        let mut seen_alias = BTreeSet::new();
        let mut seen_dev = BTreeSet::new();
        let mut queue = vec![(name.to_string(), 0u32)];
        while let Some((dev, depth)) = queue.pop() {
            if depth > 64 {
                return Err(SysfsError::TooDeep(name.to_string()));
            }
            if !seen_dev.insert(dev.clone()) {
                continue;
            }
            out.stack.push(dev.clone());
            let link = self.class_block().join(&dev);
            let real =
                std::fs::canonicalize(&link).map_err(|source| SysfsError::Read { path: link.clone(), source })?;
            let mut add = |m: &str, why: String, out: &mut DeviceModules| {
                if seen_mods.insert(m.to_string()) {
                    out.modules.push((m.to_string(), why));
                }
            };
            // Stacking drivers.
            if real.join("dm").is_dir() {
                out.stacked = true;
                add("dm_mod", format!("device-mapper device {dev}"), &mut out);
                let uuid = read_trim(&real.join("dm/uuid")).unwrap_or_default();
                let target = if uuid.starts_with("CRYPT-") {
                    Some("dm_crypt")
                } else if uuid.starts_with("mpath-") {
                    Some("dm_multipath")
                } else {
                    None // LVM linear/striped and plain tables: dm_mod itself
                };
                if let Some(t) = target {
                    add(t, format!("device-mapper target of {dev} (dm/uuid {uuid})"), &mut out);
                }
            }
            if let Some(level) = read_trim(&real.join("md/level")) {
                out.stacked = true;
                add("md_mod", format!("md device {dev}"), &mut out);
                let pers = match level.as_str() {
                    "raid4" | "raid5" | "raid6" => Some("raid456"),
                    "raid0" | "raid1" | "raid10" | "linear" | "multipath" => Some(level.as_str()),
                    _ => None,
                };
                if let Some(p) = pers {
                    add(p, format!("md personality {level} of {dev}"), &mut out);
                }
            }
            if let Ok(rd) = std::fs::read_dir(real.join("slaves")) {
                let mut slaves: Vec<String> =
                    rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
                slaves.sort();
                for s in slaves.into_iter().rev() {
                    queue.push((s, depth + 1));
                }
            }
            // Walk up the device path.
            let mut dir = real.clone();
            while dir.starts_with(&devices_root) && dir != devices_root {
                if let Ok(drv) = std::fs::canonicalize(dir.join("driver")) {
                    if let Some(m) = std::fs::canonicalize(drv.join("module")).ok().and_then(|p| basename(&p)) {
                        let drvname = basename(&drv).unwrap_or_default();
                        let at = basename(&dir).unwrap_or_default();
                        add(&m, format!("driver {drvname} of {at} under {dev}"), &mut out);
                    }
                }
                if let Some(alias) = read_trim(&dir.join("modalias")) {
                    if seen_alias.insert(alias.clone()) {
                        let at = basename(&dir).unwrap_or_default();
                        out.modaliases.push((alias, format!("modalias of {at} under {dev}")));
                    }
                }
                if !dir.pop() {
                    break;
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// Helper building a fake `/sys` + `/dev` pair under `base`.
    pub(crate) struct FakeSys {
        pub(crate) sys: PathBuf,
        pub(crate) dev: PathBuf,
    }

    impl FakeSys {
        pub(crate) fn new(base: &Path) -> Self {
            let sys = base.join("sys");
            let dev = base.join("dev");
            std::fs::create_dir_all(sys.join("devices")).unwrap();
            std::fs::create_dir_all(sys.join("class/block")).unwrap();
            std::fs::create_dir_all(dev.join("disk/by-uuid")).unwrap();
            FakeSys { sys, dev }
        }

        /// A device directory with an optional driver (bus, driver name, module) and modalias.
        pub(crate) fn device(&self, rel: &str, driver: Option<(&str, &str, Option<&str>)>, modalias: Option<&str>) {
            let d = self.sys.join("devices").join(rel);
            std::fs::create_dir_all(&d).unwrap();
            if let Some((bus, drv, module)) = driver {
                let drvdir = self.sys.join("bus").join(bus).join("drivers").join(drv);
                std::fs::create_dir_all(&drvdir).unwrap();
                if let Some(m) = module {
                    let mdir = self.sys.join("module").join(m);
                    std::fs::create_dir_all(&mdir).unwrap();
                    let _ = symlink(&mdir, drvdir.join("module"));
                }
                symlink(&drvdir, d.join("driver")).unwrap();
            }
            if let Some(a) = modalias {
                std::fs::write(d.join("modalias"), format!("{a}\n")).unwrap();
            }
        }

        /// A block device `name` at `devices/<rel>` with a /dev node holding `content`.
        pub(crate) fn block(&self, rel: &str, content: &[u8]) {
            let d = self.sys.join("devices").join(rel);
            std::fs::create_dir_all(&d).unwrap();
            let name = d.file_name().unwrap().to_string_lossy().to_string();
            symlink(&d, self.sys.join("class/block").join(&name)).unwrap();
            std::fs::write(self.dev.join(&name), content).unwrap();
        }
    }

    /// An ext4 superblock image with a UUID and label.
    pub(crate) fn ext4_image(uuid: [u8; 16], label: &str) -> Vec<u8> {
        let mut v = vec![0u8; 4096];
        v[1024 + 0x38] = 0x53;
        v[1024 + 0x39] = 0xef;
        v[1024 + 0x68..1024 + 0x78].copy_from_slice(&uuid);
        v[1024 + 0x78..1024 + 0x78 + label.len()].copy_from_slice(label.as_bytes());
        v
    }

    pub(crate) const UUID: [u8; 16] =
        [0x0b, 0x6f, 0x5a, 0x6e, 0x2b, 0x6c, 0x4d, 0x43, 0x9c, 0x59, 0x2f, 0x1f, 0x5b, 0x0b, 0x8c, 0x11];
    pub(crate) const UUID_STR: &str = "0b6f5a6e-2b6c-4d43-9c59-2f1f5b0b8c11";

    /// QEMU virtio-blk: pci0000:00/0000:00:04.0 (virtio-pci) / virtio1 (virtio_blk) / block/vda/vda1.
    pub(crate) fn virtio_tree(base: &Path) -> FakeSys {
        let f = FakeSys::new(base);
        f.device("pci0000:00", None, None);
        f.device(
            "pci0000:00/0000:00:04.0",
            Some(("pci", "virtio-pci", Some("virtio_pci"))),
            Some("pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00"),
        );
        f.device(
            "pci0000:00/0000:00:04.0/virtio1",
            Some(("virtio", "virtio_blk", Some("virtio_blk"))),
            Some("virtio:d00000002v00001AF4"),
        );
        f.block("pci0000:00/0000:00:04.0/virtio1/block/vda", &[0u8; 4096]);
        f.block("pci0000:00/0000:00:04.0/virtio1/block/vda/vda1", &ext4_image(UUID, "dump"));
        f
    }

    #[test]
    fn superblocks() {
        let sb = probe_superblock(&ext4_image(UUID, "dump")).unwrap();
        assert_eq!((sb.fstype, sb.uuid.as_str(), sb.label.as_str()), ("ext4", UUID_STR, "dump"));
        let mut x = vec![0u8; 512];
        x[0..4].copy_from_slice(b"XFSB");
        x[32..48].copy_from_slice(&UUID);
        x[108..112].copy_from_slice(b"xlab");
        let sb = probe_superblock(&x).unwrap();
        assert_eq!((sb.fstype, sb.uuid.as_str(), sb.label.as_str()), ("xfs", UUID_STR, "xlab"));
        let mut b = vec![0u8; PROBE_LEN];
        b[0x10040..0x10048].copy_from_slice(b"_BHRfS_M");
        b[0x10020..0x10030].copy_from_slice(&UUID);
        b[0x1012b..0x1012e].copy_from_slice(b"bfs");
        let sb = probe_superblock(&b).unwrap();
        assert_eq!((sb.fstype, sb.uuid.as_str(), sb.label.as_str()), ("btrfs", UUID_STR, "bfs"));
        assert!(probe_superblock(&[0u8; 100]).is_none());
        assert!(probe_superblock(&[]).is_none());
    }

    #[test]
    fn virtio_by_probe_link_and_path() {
        let t = tempfile::tempdir().unwrap();
        let f = virtio_tree(t.path());
        let p = Probe::new(Some(&f.sys));
        assert_eq!(p.devfs.as_deref(), Some(f.dev.as_path()));
        let mut notes = Vec::new();
        // Superblock probing (no by-uuid link yet).
        assert_eq!(p.find(&DeviceSpec::Uuid(UUID_STR.into()), &mut notes).as_deref(), Some("vda1"));
        assert_eq!(p.find(&DeviceSpec::Label("dump".into()), &mut notes).as_deref(), Some("vda1"));
        assert_eq!(p.find(&DeviceSpec::Uuid("1111".into()), &mut notes), None);
        assert_eq!(p.find(&DeviceSpec::Path("/dev/vda1".into()), &mut notes).as_deref(), Some("vda1"));
        assert_eq!(p.find(&DeviceSpec::Path("/dev/vdz".into()), &mut notes), None);
        // udev link wins.
        symlink("../../vda", f.dev.join("disk/by-uuid/abcd")).unwrap();
        assert_eq!(p.find(&DeviceSpec::Uuid("abcd".into()), &mut notes).as_deref(), Some("vda"));
        assert!(notes.is_empty(), "{notes:?}");

        let m = p.device_modules("vda1").unwrap();
        let mods: Vec<&str> = m.modules.iter().map(|x| x.0.as_str()).collect();
        assert_eq!(mods, ["virtio_blk", "virtio_pci"]);
        assert!(m.modules[0].1.contains("virtio1"));
        let aliases: Vec<&str> = m.modaliases.iter().map(|x| x.0.as_str()).collect();
        assert_eq!(aliases, ["virtio:d00000002v00001AF4", "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00"]);
        assert!(!m.stacked);
        assert_eq!(m.stack, ["vda1"]);
    }

    /// `PARTUUID=`: an udev link when there is one, else the disk's partition table (MBR here:
    /// disk signature and partition number).
    #[test]
    fn partuuid_by_table_and_link() {
        let t = tempfile::tempdir().unwrap();
        let f = virtio_tree(t.path());
        let mut mbr = vec![0u8; 4096];
        mbr[440..444].copy_from_slice(&0xcafe_f00du32.to_le_bytes());
        mbr[510] = 0x55;
        mbr[511] = 0xAA;
        std::fs::write(f.dev.join("vda"), &mbr).unwrap();
        let vda1 = f.sys.join("devices/pci0000:00/0000:00:04.0/virtio1/block/vda/vda1");
        std::fs::write(vda1.join("partition"), "1\n").unwrap();
        let p = Probe::new(Some(&f.sys));
        let mut notes = Vec::new();
        assert_eq!(p.find(&DeviceSpec::PartUuid("cafef00d-01".into()), &mut notes).as_deref(), Some("vda1"));
        assert_eq!(p.find(&DeviceSpec::PartUuid("cafef00d-02".into()), &mut notes), None);
        std::fs::create_dir_all(f.dev.join("disk/by-partuuid")).unwrap();
        symlink("../../vda", f.dev.join("disk/by-partuuid/0badc0de-07")).unwrap();
        assert_eq!(p.find(&DeviceSpec::PartUuid("0BADC0DE-07".into()), &mut notes).as_deref(), Some("vda"));
        assert!(notes.is_empty(), "{notes:?}");
    }

    /// NVMe: pci0000:00/0000:00:05.0 (nvme) / nvme/nvme0 / nvme0n1 / nvme0n1p1.
    #[test]
    fn nvme_tree() {
        let t = tempfile::tempdir().unwrap();
        let f = FakeSys::new(t.path());
        f.device(
            "pci0000:00/0000:00:05.0",
            Some(("pci", "nvme", Some("nvme"))),
            Some("pci:v00001B36d00000010sv00001AF4sd00001100bc01sc08i02"),
        );
        f.device("pci0000:00/0000:00:05.0/nvme/nvme0", None, None);
        f.block("pci0000:00/0000:00:05.0/nvme/nvme0/nvme0n1", &[0u8; 16]);
        f.block("pci0000:00/0000:00:05.0/nvme/nvme0/nvme0n1/nvme0n1p1", &ext4_image(UUID, ""));
        let p = Probe::new(Some(&f.sys));
        let dev = p.find(&DeviceSpec::Uuid(UUID_STR.into()), &mut Vec::new()).unwrap();
        assert_eq!(dev, "nvme0n1p1");
        let m = p.device_modules(&dev).unwrap();
        assert_eq!(m.modules.iter().map(|x| x.0.as_str()).collect::<Vec<_>>(), ["nvme"]);
        assert_eq!(m.modaliases.len(), 1);
    }

    /// dm-0 (LVM) on sda2 on a SATA disk behind AHCI.
    pub(crate) fn dm_on_scsi_tree(base: &Path) -> FakeSys {
        let f = FakeSys::new(base);
        f.device(
            "pci0000:00/0000:00:1f.2",
            Some(("pci", "ahci", Some("ahci"))),
            Some("pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01"),
        );
        f.device("pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0", None, None);
        f.device(
            "pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0",
            Some(("scsi", "sd", Some("sd_mod"))),
            Some("scsi:t-0x00"),
        );
        f.block("pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda", &[0u8; 16]);
        f.block("pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda/sda2", &[0u8; 4096]);
        f.block("virtual/block/dm-0", &ext4_image(UUID, "root"));
        let dm = f.sys.join("devices/virtual/block/dm-0");
        std::fs::create_dir_all(dm.join("dm")).unwrap();
        std::fs::write(dm.join("dm/uuid"), "LVM-abcdef\n").unwrap();
        std::fs::write(dm.join("dm/name"), "vg-root\n").unwrap();
        std::fs::create_dir_all(dm.join("slaves")).unwrap();
        symlink(
            f.sys.join("devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda/sda2"),
            dm.join("slaves/sda2"),
        )
        .unwrap();
        let sda2 = f.sys.join("devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda/sda2");
        std::fs::create_dir_all(sda2.join("holders")).unwrap();
        symlink(&dm, sda2.join("holders/dm-0")).unwrap();
        std::fs::create_dir_all(f.dev.join("mapper")).unwrap();
        symlink("../dm-0", f.dev.join("mapper/vg-root")).unwrap();
        f
    }

    #[test]
    fn dm_on_scsi() {
        let t = tempfile::tempdir().unwrap();
        let f = dm_on_scsi_tree(t.path());
        let p = Probe::new(Some(&f.sys));
        assert_eq!(p.find(&DeviceSpec::Path("/dev/mapper/vg-root".into()), &mut Vec::new()).as_deref(), Some("dm-0"));
        assert_eq!(p.find(&DeviceSpec::Label("root".into()), &mut Vec::new()).as_deref(), Some("dm-0"));
        let m = p.device_modules("dm-0").unwrap();
        let mods: Vec<&str> = m.modules.iter().map(|x| x.0.as_str()).collect();
        assert_eq!(mods, ["dm_mod", "sd_mod", "ahci"]);
        assert!(m.stacked);
        assert_eq!(m.stack, ["dm-0", "sda2"]);
        assert!(m.modaliases.iter().any(|a| a.0 == "scsi:t-0x00"));
    }

    #[test]
    fn md_and_crypt_stacks() {
        let t = tempfile::tempdir().unwrap();
        let f = FakeSys::new(t.path());
        f.device("pci0000:00/0000:00:05.0", Some(("pci", "nvme", Some("nvme"))), None);
        f.block("pci0000:00/0000:00:05.0/nvme/nvme0/nvme0n1", &[0u8; 16]);
        f.block("virtual/block/md0", &[0u8; 16]);
        f.block("virtual/block/dm-1", &[0u8; 16]);
        let md = f.sys.join("devices/virtual/block/md0");
        std::fs::create_dir_all(md.join("md")).unwrap();
        std::fs::write(md.join("md/level"), "raid5\n").unwrap();
        std::fs::create_dir_all(md.join("slaves")).unwrap();
        symlink(f.sys.join("devices/pci0000:00/0000:00:05.0/nvme/nvme0/nvme0n1"), md.join("slaves/nvme0n1")).unwrap();
        let dm = f.sys.join("devices/virtual/block/dm-1");
        std::fs::create_dir_all(dm.join("dm")).unwrap();
        std::fs::write(dm.join("dm/uuid"), "CRYPT-LUKS2-xyz\n").unwrap();
        std::fs::create_dir_all(dm.join("slaves")).unwrap();
        symlink(&md, dm.join("slaves/md0")).unwrap();
        let m = Probe::new(Some(&f.sys)).device_modules("dm-1").unwrap();
        let mods: Vec<&str> = m.modules.iter().map(|x| x.0.as_str()).collect();
        assert_eq!(mods, ["dm_mod", "dm_crypt", "md_mod", "raid456", "nvme"]);
        assert_eq!(m.stack, ["dm-1", "md0", "nvme0n1"]);
    }

    #[test]
    fn escapes_and_missing_devfs() {
        assert_eq!(udev_escape("my disk/x"), "my\\x20disk\\x2fx");
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("sysonly/class/block")).unwrap();
        let p = Probe::new(Some(&t.path().join("sysonly")));
        assert!(p.devfs.is_none());
        assert_eq!(p.find(&DeviceSpec::Uuid(UUID_STR.into()), &mut Vec::new()), None);
        assert!(p.device_modules("vda").is_err());
    }
}
