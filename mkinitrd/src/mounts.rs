//! The dump target of a `kdump.conf` without a target line: the filesystem holding `path`.
//!
//! kdump-utils' default `kdump.conf` names no target: the dump goes to `path` (default
//! `/var/crash`) on whatever filesystem holds that directory on the running system, at the
//! directory's place inside that filesystem (`/var/crash` on a separate `/var` is `/crash` on
//! the `/var` filesystem). [`resolve`] finds that filesystem in `/proc/self/mountinfo` (the
//! mount whose mount point is the longest prefix of the canonical path; of two mounts on the
//! same point, the later one, which hides the other), its block device through sysfs
//! (`major:minor`, or the mount source for btrfs, whose mounts carry an anonymous device
//! number), and names it by the UUID of its superblock, as the capture init finds it again.
//!
//! Not resolved (each a [`PathTargetError`] saying what to write instead): a path that does not
//! exist (kdumpctl refuses it too), a filesystem rkdump cannot dump to (tmpfs, overlay, nfs...),
//! a btrfs subvolume other than the top level (the capture mounts the device without
//! `subvol=`), a device missing from sysfs.

use std::path::{Path, PathBuf};

use rkdump_init::plan::{DeviceSpec, Target};

use crate::config::FILESYSTEMS;
use crate::sysfs::Probe;

/// One line of `/proc/self/mountinfo` (proc(5)), the fields rkdump uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// `major:minor` of the filesystem's device (0 for btrfs and virtual filesystems).
    pub dev: (u32, u32),
    /// The directory of the filesystem mounted here (`/` unless a bind mount or subvolume).
    pub root: String,
    /// Where it is mounted.
    pub mount_point: String,
    /// Filesystem type (`ext4`).
    pub fstype: String,
    /// Mount source (`/dev/vda1`).
    pub source: String,
}

/// Undoes mountinfo's octal escapes (`\040` space, `\011` tab, `\012` newline, `\134`
/// backslash).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (b[i + 1] - b'0') as u32 * 64 + (b[i + 2] - b'0') as u32 * 8 + (b[i + 3] - b'0') as u32;
            if let Ok(v) = u8::try_from(v) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses mountinfo text; lines that do not have its shape are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            // id parent major:minor root mount_point options [optional...] - fstype source super
            let sep = f.iter().position(|&x| x == "-")?;
            if sep < 6 || f.len() < sep + 3 {
                return None;
            }
            let (ma, mi) = f[2].split_once(':')?;
            Some(Mount {
                dev: (ma.parse().ok()?, mi.parse().ok()?),
                root: unescape(f[3]),
                mount_point: unescape(f[4]),
                fstype: unescape(f[sep + 1]),
                source: unescape(f[sep + 2]),
            })
        })
        .collect()
}

/// The path below `prefix` if `prefix` is `path` or one of its ancestors (whole components),
/// as an absolute path (`/` for `path` itself).
fn below(path: &str, prefix: &str) -> Option<String> {
    if prefix == "/" {
        return Some(path.to_string());
    }
    let rest = path.strip_prefix(prefix)?;
    if rest.is_empty() {
        Some("/".to_string())
    } else if rest.starts_with('/') {
        Some(rest.to_string())
    } else {
        None
    }
}

/// The mount holding absolute, canonical `path`, and `path` below its mount point.
pub fn mount_of<'a>(mounts: &'a [Mount], path: &str) -> Option<(&'a Mount, String)> {
    let mut best: Option<(&Mount, String)> = None;
    for m in mounts {
        if let Some(rel) = below(path, &m.mount_point) {
            // Longest mount point wins; at equal length the later mount hides the earlier.
            if best.as_ref().map_or(true, |(b, _)| m.mount_point.len() >= b.mount_point.len()) {
                best = Some((m, rel));
            }
        }
    }
    best
}

/// `a` joined with absolute `b` (`/` + `/x` = `/x`, `/sub` + `/x` = `/sub/x`).
pub(crate) fn join_abs(a: &str, b: &str) -> String {
    match (a.trim_end_matches('/'), b) {
        ("", b) => b.to_string(),
        (a, "/") => a.to_string(),
        (a, b) => format!("{a}{b}"),
    }
}

/// A target found for `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTarget {
    /// The filesystem, as the plan names it.
    pub target: Target,
    /// The dump directory inside that filesystem.
    pub path: String,
    /// The block device on this machine (`vda1`).
    pub device: String,
    /// Where the filesystem is mounted here.
    pub mount_point: String,
    /// Non-fatal remarks.
    pub warnings: Vec<String>,
}

/// Why no target could be derived from `path`.
#[derive(Debug, thiserror::Error)]
pub enum PathTargetError {
    /// `path` does not exist (or cannot be resolved).
    #[error("kdump.conf has no target line, so the dump goes to the filesystem holding `path` {path}, but {path} cannot be resolved ({source}); create it (mkdir -p {path}) or add a target line such as `ext4 UUID=<uuid>`")]
    NoPath {
        /// The path as configured.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The mount table could not be read.
    #[error("cannot read the mount table {file}: {source}")]
    Mountinfo {
        /// The file.
        file: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// No mount covers the path (an empty or foreign mount table).
    #[error(
        "no mounted filesystem holds {0} (mount table without `/`?); add a target line such as `ext4 UUID=<uuid>`"
    )]
    NoMount(String),
    /// The filesystem is not one rkdump can dump to.
    #[error("{path} is on a {fstype} filesystem ({mount_source} at {mount_point}); rkdump dumps to ext2/3/4, xfs or btrfs: set `path` to a directory on one of those, or add a target line naming the device")]
    Unsupported {
        /// The resolved path.
        path: String,
        /// Its filesystem type.
        fstype: String,
        /// Mount source.
        mount_source: String,
        /// Mount point.
        mount_point: String,
    },
    /// A btrfs subvolume other than the top level.
    #[error("{path} is in the btrfs subvolume {subvol} ({mount_source} at {mount_point}); the capture mounts the filesystem without subvol= (not yet supported): add a target line `btrfs {mount_source}` with a `path` relative to the filesystem's default subvolume")]
    BtrfsSubvolume {
        /// The resolved path.
        path: String,
        /// The subvolume (mountinfo's root).
        subvol: String,
        /// Mount source.
        mount_source: String,
        /// Mount point.
        mount_point: String,
    },
    /// The directory's name inside the filesystem cannot be carried by the plan.
    #[error("the dump directory {0:?} (inside its filesystem) has control characters, whitespace other than spaces, or spaces at either end, which the capture plan cannot carry; set `path` to a plainer directory")]
    Unrepresentable(String),
    /// The filesystem's block device is not in sysfs.
    #[error("the block device of {mount_point} ({mount_source}, {major}:{minor}) is not in {sysfs}; add a target line naming the device")]
    NoDevice {
        /// Mount point.
        mount_point: String,
        /// Mount source.
        mount_source: String,
        /// Device number.
        major: u32,
        /// Device number.
        minor: u32,
        /// The sysfs tree searched.
        sysfs: PathBuf,
    },
}

/// Finds the dump target for `path` (absolute) on this machine: `mountinfo` is
/// `/proc/self/mountinfo` or a test's copy, `probe` the sysfs and /dev trees.
pub fn resolve(path: &str, mountinfo: &Path, probe: &Probe) -> Result<PathTarget, PathTargetError> {
    let canon =
        std::fs::canonicalize(path).map_err(|source| PathTargetError::NoPath { path: path.to_string(), source })?;
    if !canon.is_dir() {
        return Err(PathTargetError::NoPath {
            path: path.to_string(),
            source: std::io::Error::other("not a directory"),
        });
    }
    let canon = canon.to_string_lossy().into_owned();
    let text = std::fs::read_to_string(mountinfo)
        .map_err(|source| PathTargetError::Mountinfo { file: mountinfo.to_path_buf(), source })?;
    let mounts = parse_mountinfo(&text);
    let (m, rel) = mount_of(&mounts, &canon).ok_or_else(|| PathTargetError::NoMount(canon.clone()))?;
    if !FILESYSTEMS.contains(&m.fstype.as_str()) {
        return Err(PathTargetError::Unsupported {
            path: canon,
            fstype: m.fstype.clone(),
            mount_source: m.source.clone(),
            mount_point: m.mount_point.clone(),
        });
    }
    if m.fstype == "btrfs" && m.root != "/" {
        return Err(PathTargetError::BtrfsSubvolume {
            path: canon,
            subvol: m.root.clone(),
            mount_source: m.source.clone(),
            mount_point: m.mount_point.clone(),
        });
    }
    let fs_path = join_abs(&m.root, &rel);
    if !rkdump_init::plan::plan_safe(&fs_path) || fs_path.trim_matches(' ') != fs_path {
        return Err(PathTargetError::Unrepresentable(fs_path));
    }
    let mut notes = Vec::new();
    let device = match m.dev {
        (0, _) => None,
        (major, minor) => probe.by_devnum(major, minor),
    }
    .or_else(|| {
        m.source.starts_with("/dev/").then(|| probe.find(&DeviceSpec::Path(m.source.clone()), &mut notes)).flatten()
    })
    .ok_or_else(|| PathTargetError::NoDevice {
        mount_point: m.mount_point.clone(),
        mount_source: m.source.clone(),
        major: m.dev.0,
        minor: m.dev.1,
        sysfs: probe.sysfs.clone(),
    })?;
    let mut warnings = Vec::new();
    let spec = match probe.superblock(&device) {
        Ok(Some(sb)) if !sb.uuid.is_empty() && sb.uuid != "00000000-0000-0000-0000-000000000000" => {
            DeviceSpec::Uuid(sb.uuid)
        }
        other => {
            let why = match other {
                Ok(Some(_)) => "it has no UUID".to_string(),
                Ok(None) => "no ext2/3/4, xfs or btrfs superblock was recognised on it".to_string(),
                Err(e) => format!("its superblock could not be read: {e}"),
            };
            warnings.push(format!(
                "the target (the filesystem holding {path}) is named /dev/{device}, not by UUID, because {why}; device names can change between boots"
            ));
            DeviceSpec::Path(format!("/dev/{device}"))
        }
    };
    Ok(PathTarget {
        target: Target { fstype: m.fstype.clone(), device: spec },
        path: fs_path,
        device,
        mount_point: m.mount_point.clone(),
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sysfs::tests::{ext4_image, virtio_tree, UUID_STR};

    const MOUNTINFO: &str = "\
21 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
22 21 0:5 / /dev rw,nosuid shared:2 - devtmpfs devtmpfs rw,size=4096k
23 21 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:5 - proc proc rw
24 21 252:2 / /var rw,relatime shared:6 - xfs /dev/vda2 rw
25 24 0:30 / /var/tmp rw - tmpfs tmpfs rw
26 21 252:1 /srv/data /mnt/with\\040space rw - ext4 /dev/vda1 rw
27 21 0:40 /@home /home rw - btrfs /dev/vdb rw
28 21 0:41 / /top rw - btrfs /dev/vdb rw
29 24 0:30 / /var rw - tmpfs tmpfs rw
bad line
";

    #[test]
    fn parses_mountinfo() {
        let m = parse_mountinfo(MOUNTINFO);
        assert_eq!(m.len(), 9);
        assert_eq!(
            m[0],
            Mount {
                dev: (252, 1),
                root: "/".into(),
                mount_point: "/".into(),
                fstype: "ext4".into(),
                source: "/dev/vda1".into()
            }
        );
        assert_eq!(m[5].mount_point, "/mnt/with space");
        assert_eq!(m[5].root, "/srv/data");
        assert_eq!(unescape(r"a\011b\134c\012"), "a\tb\\c\n");
        assert_eq!(unescape(r"trail\04"), r"trail\04");
        assert_eq!(unescape(r"\777x"), r"\777x");
    }

    #[test]
    fn longest_and_latest_mount_wins() {
        let m = parse_mountinfo(MOUNTINFO);
        let at = |p: &str| mount_of(&m, p).map(|(m, rel)| (m.mount_point.clone(), m.fstype.clone(), rel));
        assert_eq!(at("/var/crash"), Some(("/var".into(), "tmpfs".into(), "/crash".into())));
        let without_last = &m[..8];
        let (v, rel) = mount_of(without_last, "/var/crash").unwrap();
        assert_eq!((v.fstype.as_str(), rel.as_str()), ("xfs", "/crash"));
        let (v, rel) = mount_of(without_last, "/var").unwrap();
        assert_eq!((v.fstype.as_str(), rel.as_str()), ("xfs", "/"));
        // A name that only starts like a mount point is not below it.
        let (v, rel) = mount_of(without_last, "/variable/x").unwrap();
        assert_eq!((v.mount_point.as_str(), rel.as_str()), ("/", "/variable/x"));
        let (v, rel) = mount_of(without_last, "/mnt/with space/crash").unwrap();
        assert_eq!((v.root.as_str(), rel.as_str()), ("/srv/data", "/crash"));
        assert_eq!(join_abs(&v.root, &rel), "/srv/data/crash");
        assert_eq!(join_abs("/", "/crash"), "/crash");
        assert_eq!(join_abs("/x", "/"), "/x");
        assert_eq!(join_abs("/", "/"), "/");
        assert!(mount_of(&[], "/x").is_none());
    }

    /// A fake system: the virtio tree (vda1 holds ext4 with a UUID) with `dev` numbers, a
    /// directory to dump into, and a mount table that puts it on vda1 or elsewhere.
    struct Sys {
        _t: tempfile::TempDir,
        probe: Probe,
        crash: String,
        mountinfo: PathBuf,
    }

    fn sys(table: impl Fn(&str) -> String) -> Sys {
        let t = tempfile::tempdir().unwrap();
        let f = virtio_tree(t.path());
        std::fs::write(f.sys.join("class/block/vda/dev"), "252:0\n").unwrap();
        std::fs::write(f.sys.join("class/block/vda1/dev"), "252:1\n").unwrap();
        let crash = t.path().join("root/var/crash");
        std::fs::create_dir_all(&crash).unwrap();
        let mnt = std::fs::canonicalize(t.path().join("root")).unwrap();
        let mountinfo = t.path().join("mountinfo");
        std::fs::write(&mountinfo, table(mnt.to_str().unwrap())).unwrap();
        Sys { probe: Probe::new(Some(&f.sys)), crash: crash.to_string_lossy().into_owned(), mountinfo, _t: t }
    }

    #[test]
    fn resolves_the_filesystem_holding_path() {
        let s = sys(|mnt| format!("1 0 8:1 / / rw - ext4 /dev/sda1 rw\n2 1 252:1 / {mnt} rw - ext4 /dev/root rw\n"));
        let r = resolve(&s.crash, &s.mountinfo, &s.probe).unwrap();
        assert_eq!(r.target.fstype, "ext4");
        assert_eq!(r.target.device, DeviceSpec::Uuid(UUID_STR.into()));
        assert_eq!((r.path.as_str(), r.device.as_str()), ("/var/crash", "vda1"));
        assert!(r.warnings.is_empty());
        // A trailing slash and `..` resolve to the same directory.
        let r2 = resolve(&format!("{}/../crash/", s.crash), &s.mountinfo, &s.probe).unwrap();
        assert_eq!(r2, r);

        // A bind mount of a subdirectory: the path inside the filesystem includes its root.
        let s = sys(|mnt| {
            format!("2 1 252:1 /srv / rw - ext4 /dev/vda1 rw\n3 1 252:1 /data {mnt} rw - ext4 /dev/vda1 rw\n")
        });
        let r = resolve(&s.crash, &s.mountinfo, &s.probe).unwrap();
        assert_eq!(r.path, "/data/var/crash");

        // Device number 0 (btrfs): the mount source names the device.
        let s = sys(|mnt| format!("2 1 0:44 / {mnt} rw - btrfs /dev/vda1 rw\n"));
        let r = resolve(&s.crash, &s.mountinfo, &s.probe).unwrap();
        assert_eq!((r.target.fstype.as_str(), r.device.as_str()), ("btrfs", "vda1"));
    }

    #[test]
    fn explains_what_cannot_be_resolved() {
        let s = sys(|mnt| format!("2 1 252:1 / {mnt} rw - ext4 /dev/vda1 rw\n"));
        let e = resolve(&format!("{}/missing", s.crash), &s.mountinfo, &s.probe).unwrap_err();
        assert!(matches!(e, PathTargetError::NoPath { .. }), "{e}");
        assert!(e.to_string().contains("mkdir -p"), "{e}");
        let file = format!("{}/file", s.crash);
        std::fs::write(&file, "").unwrap();
        let e = resolve(&file, &s.mountinfo, &s.probe).unwrap_err();
        assert!(e.to_string().contains("not a directory"), "{e}");

        let s = sys(|mnt| format!("2 1 0:30 / {mnt} rw - tmpfs tmpfs rw\n"));
        let e = resolve(&s.crash, &s.mountinfo, &s.probe).unwrap_err();
        assert!(matches!(&e, PathTargetError::Unsupported { fstype, .. } if fstype == "tmpfs"), "{e}");

        let s = sys(|mnt| format!("2 1 0:44 /@ {mnt} rw - btrfs /dev/vda1 rw\n"));
        let e = resolve(&s.crash, &s.mountinfo, &s.probe).unwrap_err();
        assert!(matches!(&e, PathTargetError::BtrfsSubvolume { subvol, .. } if subvol == "/@"), "{e}");

        let s = sys(|mnt| format!("2 1 259:7 / {mnt} rw - ext4 /dev/nvme9n1p1 rw\n"));
        let e = resolve(&s.crash, &s.mountinfo, &s.probe).unwrap_err();
        assert!(matches!(e, PathTargetError::NoDevice { major: 259, minor: 7, .. }), "{e}");

        let s = sys(|mnt| format!("2 1 252:1 /tab\\011x {mnt} rw - ext4 /dev/vda1 rw\n"));
        let e = resolve(&s.crash, &s.mountinfo, &s.probe).unwrap_err();
        assert!(matches!(&e, PathTargetError::Unrepresentable(p) if p == "/tab\tx/var/crash"), "{e}");

        let s = sys(|_| "garbage\n".to_string());
        let e = resolve(&s.crash, &s.mountinfo, &s.probe).unwrap_err();
        assert!(matches!(e, PathTargetError::NoMount(_)), "{e}");
        let e = resolve(&s.crash, Path::new("/nonexistent/mountinfo"), &s.probe).unwrap_err();
        assert!(matches!(e, PathTargetError::Mountinfo { .. }), "{e}");
    }

    #[test]
    fn a_device_without_uuid_is_named_by_path() {
        let s = sys(|mnt| format!("2 1 252:0 / {mnt} rw - ext4 /dev/vda rw\n"));
        let r = resolve(&s.crash, &s.mountinfo, &s.probe).unwrap();
        assert_eq!(r.target.device, DeviceSpec::Path("/dev/vda".into()));
        assert!(r.warnings[0].contains("no ext2/3/4, xfs or btrfs superblock"), "{:?}", r.warnings);
        // ext4 with an all-zero UUID.
        let t = tempfile::tempdir().unwrap();
        let f = virtio_tree(t.path());
        std::fs::write(f.dev.join("vda1"), ext4_image([0; 16], "x")).unwrap();
        std::fs::write(f.sys.join("class/block/vda1/dev"), "252:1\n").unwrap();
        let mi = t.path().join("mi");
        std::fs::write(&mi, "1 0 252:1 / / rw - ext4 /dev/vda1 rw\n").unwrap();
        let r = resolve("/", &mi, &Probe::new(Some(&f.sys))).unwrap();
        assert_eq!(r.target.device, DeviceSpec::Path("/dev/vda1".into()));
        assert!(r.warnings[0].contains("no UUID"), "{:?}", r.warnings);
    }
}
