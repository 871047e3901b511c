//! Block device discovery without udev or blkid: enumerate `/sys/class/block`, open the
//! devtmpfs node, read the filesystem superblock and compare its UUID or label with the plan.
//!
//! Recognized superblocks (the dump targets kdump supports on block devices):
//! - ext2/3/4: superblock at byte 1024; `s_magic` 0xEF53 (LE u16) at +0x38, `s_uuid` at +0x68,
//!   `s_volume_name[16]` at +0x78;
//! - XFS: superblock at byte 0; `"XFSB"` at +0, `sb_uuid` at +32, `sb_fname[12]` at +108;
//! - btrfs: superblock at byte 65536; `"_BHRfS_M"` at +0x40, `fsid` at +0x20, `label[256]`
//!   at +0x12b.

use std::fmt;

use crate::plan::DeviceSpec;
use crate::sys::{read_file, read_full_at, Errno, NodeKind, Open, OsError, Sys};

/// Where the kernel lists block devices (disks and partitions).
pub const SYS_CLASS_BLOCK: &str = "/sys/class/block";

/// Bytes read from the start of a device: covers the ext superblock (1024..2048) and XFS's.
pub const HEAD_LEN: usize = 4096;
/// Offset of the btrfs primary superblock.
pub const BTRFS_SB_OFFSET: u64 = 0x1_0000;

/// What a superblock says about its filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsInfo {
    /// `ext4` (for any ext2/3/4), `xfs` or `btrfs`.
    pub fstype: &'static str,
    /// Lowercase 8-4-4-4-12 UUID.
    pub uuid: String,
    /// Volume label (may be empty).
    pub label: String,
}

impl FsInfo {
    /// Whether this filesystem is the one `spec` names (`Path` specs never match here).
    pub fn matches(&self, spec: &DeviceSpec) -> bool {
        match spec {
            DeviceSpec::Uuid(u) => self.uuid.eq_ignore_ascii_case(u),
            DeviceSpec::Label(l) => !self.label.is_empty() && self.label == *l,
            DeviceSpec::Path(_) | DeviceSpec::PartUuid(_) => false,
        }
    }
}

impl fmt::Display for FsInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} UUID={}", self.fstype, self.uuid)?;
        if !self.label.is_empty() {
            write!(f, " LABEL={}", self.label)?;
        }
        Ok(())
    }
}

/// Formats 16 bytes as a lowercase 8-4-4-4-12 UUID.
pub fn format_uuid(b: &[u8; 16]) -> String {
    let mut s = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push_str(&format!("{byte:02x}"));
    }
    s
}

fn field<const N: usize>(buf: &[u8], off: usize) -> Option<[u8; N]> {
    let end = off.checked_add(N)?;
    buf.get(off..end)?.try_into().ok()
}

fn label(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// ext2/3/4 superblock offsets (relative to the superblock at byte 1024 of the device).
const EXT_SB: usize = 1024;
const EXT_MAGIC_OFF: usize = 0x38;
const EXT_MAGIC: u16 = 0xEF53;
const EXT_UUID_OFF: usize = 0x68;
const EXT_LABEL_OFF: usize = 0x78;

/// Recognizes an ext2/3/4 superblock in `head` (bytes from device offset 0, at least 2048).
pub fn probe_ext(head: &[u8]) -> Option<FsInfo> {
    let magic = u16::from_le_bytes(field::<2>(head, EXT_SB + EXT_MAGIC_OFF)?);
    if magic != EXT_MAGIC {
        return None;
    }
    let uuid = field::<16>(head, EXT_SB + EXT_UUID_OFF)?;
    let name = field::<16>(head, EXT_SB + EXT_LABEL_OFF)?;
    Some(FsInfo { fstype: "ext4", uuid: format_uuid(&uuid), label: label(&name) })
}

/// Recognizes an XFS superblock in `head` (bytes from device offset 0).
pub fn probe_xfs(head: &[u8]) -> Option<FsInfo> {
    if field::<4>(head, 0)? != *b"XFSB" {
        return None;
    }
    let uuid = field::<16>(head, 32)?;
    let name = field::<12>(head, 108)?;
    Some(FsInfo { fstype: "xfs", uuid: format_uuid(&uuid), label: label(&name) })
}

/// Recognizes a btrfs superblock in `sb` (bytes from device offset [`BTRFS_SB_OFFSET`]).
pub fn probe_btrfs(sb: &[u8]) -> Option<FsInfo> {
    if field::<8>(sb, 0x40)? != *b"_BHRfS_M" {
        return None;
    }
    let uuid = field::<16>(sb, 0x20)?;
    let name = field::<256>(sb, 0x12b)?;
    Some(FsInfo { fstype: "btrfs", uuid: format_uuid(&uuid), label: label(&name) })
}

/// The probes of a device's first [`HEAD_LEN`] bytes, in the order [`probe_node`] and
/// [`probe_bytes`] try them.
fn probe_head(head: &[u8]) -> Option<FsInfo> {
    probe_ext(head).or_else(|| probe_xfs(head))
}

/// Bytes of a device that [`probe_bytes`] looks at: up to the end of the btrfs superblock.
pub const PROBE_LEN: usize = BTRFS_SB_OFFSET as usize + HEAD_LEN;

/// Recognizes the filesystem on a device from its first bytes, looking where [`probe_node`]
/// reads ([`HEAD_LEN`] bytes at 0 and at [`BTRFS_SB_OFFSET`]). The builder probes devices this
/// way, so that it and the init can never disagree on which filesystem a device holds.
pub fn probe_bytes(dev: &[u8]) -> Option<FsInfo> {
    let head = &dev[..dev.len().min(HEAD_LEN)];
    probe_head(head).or_else(|| {
        let sb = dev.get(BTRFS_SB_OFFSET as usize..)?;
        probe_btrfs(&sb[..sb.len().min(HEAD_LEN)])
    })
}

/// A block device seen in `/sys/class/block` and what probing it gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Name in `/sys/class/block` (`vda1`; `!` stands for `/` in nested names).
    pub name: String,
    /// The node probed, `/dev/<name>`.
    pub node: String,
    /// The probe result: a recognized filesystem, none, or why the device could not be read.
    pub probe: Result<Option<FsInfo>, Errno>,
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.probe {
            Ok(Some(info)) => write!(f, "{} ({info})", self.name),
            Ok(None) => write!(f, "{} (no ext/xfs/btrfs superblock)", self.name),
            Err(e) => write!(f, "{} (unreadable: {})", self.name, OsError(*e)),
        }
    }
}

/// Parses `/sys/class/block/<dev>/dev` (`"253:1\n"`).
pub fn parse_major_minor(text: &str) -> Option<(u32, u32)> {
    let (ma, mi) = text.trim().split_once(':')?;
    Some((ma.parse().ok()?, mi.parse().ok()?))
}

/// Reads the superblocks of the device node `node`.
pub fn probe_node<S: Sys>(sys: &mut S, node: &str) -> Result<Option<FsInfo>, Errno> {
    let mut file = sys.open(node, Open::ReadDevice)?;
    let mut head = vec![0u8; HEAD_LEN];
    let n = read_full_at(sys, &mut file, 0, &mut head)?;
    head.truncate(n);
    if let Some(info) = probe_head(&head) {
        return Ok(Some(info));
    }
    let mut sb = vec![0u8; HEAD_LEN];
    // A device shorter than 64 KiB, or a read error past the ext/xfs area: not btrfs.
    let n: usize = read_full_at(sys, &mut file, BTRFS_SB_OFFSET, &mut sb).unwrap_or_default();
    sb.truncate(n);
    Ok(probe_btrfs(&sb))
}

/// Lists `/sys/class/block` and probes each device with a non-zero size. When `mknod` is
/// true (devtmpfs is not mounted) a missing `/dev/<name>` is created from the device number.
pub fn scan<S: Sys>(sys: &mut S, mknod: bool) -> Result<Vec<Device>, Errno> {
    let names = sys.read_dir(SYS_CLASS_BLOCK)?;
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let node = format!("/dev/{}", name.replace('!', "/"));
        let base = format!("{SYS_CLASS_BLOCK}/{name}");
        let size = read_file(sys, &format!("{base}/size"), 64).ok();
        if size.as_deref().map(|s| String::from_utf8_lossy(s).trim() == "0").unwrap_or(false) {
            // An unbound loop device, an empty card reader: nothing to read.
            out.push(Device { name, node, probe: Err(Errno::NOMEDIUM) });
            continue;
        }
        if mknod {
            // EEXIST from a concurrent creation is fine; any other error shows in the probe.
            make_node(sys, &name, &node);
        }
        let probe = probe_node(sys, &node);
        out.push(Device { name, node, probe });
    }
    Ok(out)
}

/// The PARTUUID of partition number `n` (1-based, sysfs `partition`) of a disk, read with
/// `read(offset, len)` from the disk whose logical block size is `lbs`:
/// - GPT (`"EFI PART"` at LBA 1): the unique partition GUID of entry `n`, formatted like a UUID
///   (first three fields little-endian);
/// - MBR (0x55AA at 510, no GPT): `<disk signature, 8 hex digits>-<n, 2 hex digits>`, as blkid
///   and the kernel's `root=PARTUUID=` name it (logical partitions count on from 5).
///
/// `None`: no table, or no such entry.
pub fn partuuid(read: &mut dyn FnMut(u64, usize) -> Option<Vec<u8>>, lbs: u64, n: u32) -> Option<String> {
    if n == 0 || !(512..=65536).contains(&lbs) {
        return None;
    }
    let le32 = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or_default());
    let le64 = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or_default());
    if let Some(h) = read(lbs, 92).filter(|h| h.len() == 92 && h.starts_with(b"EFI PART")) {
        let entries_lba = le64(&h, 72);
        let count = le32(&h, 80);
        let size = u64::from(le32(&h, 84));
        if n > count || !(128..=4096).contains(&size) {
            return None;
        }
        let off = entries_lba.checked_mul(lbs)?.checked_add(u64::from(n - 1) * size)?;
        let e = read(off, 32).filter(|e| e.len() == 32)?;
        if e[..16].iter().all(|&b| b == 0) {
            return None; // unused entry
        }
        let g = &e[16..32];
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&[g[3], g[2], g[1], g[0]]);
        b[4..6].copy_from_slice(&[g[5], g[4]]);
        b[6..8].copy_from_slice(&[g[7], g[6]]);
        b[8..].copy_from_slice(&g[8..]);
        return Some(format_uuid(&b));
    }
    let mbr = read(0, 512).filter(|m| m.len() == 512 && m[510] == 0x55 && m[511] == 0xAA)?;
    // A protective MBR without a readable GPT names nothing.
    if mbr[446 + 4] == 0xEE || n > 255 {
        return None;
    }
    Some(format!("{:08x}-{n:02x}", le32(&mbr, 440)))
}

/// The partition of `/sys/class/block` whose PARTUUID is `want` (compared without case), as
/// its `/dev` node; every partition seen goes into `seen` (name -> description). When `mknod`
/// is true (no devtmpfs) missing nodes of the disks read and of the hit are created.
pub fn find_partuuid<S: Sys>(
    sys: &mut S,
    want: &str,
    mknod: bool,
    seen: &mut std::collections::BTreeMap<String, String>,
) -> Result<Option<String>, Errno> {
    let names = sys.read_dir(SYS_CLASS_BLOCK)?;
    let number = |sys: &mut S, name: &str| -> Option<u32> {
        let t = read_file(sys, &format!("{SYS_CLASS_BLOCK}/{name}/partition"), 64).ok()?;
        String::from_utf8_lossy(&t).trim().parse().ok()
    };
    for part in &names {
        let Some(n) = number(sys, part) else { continue };
        // The disk is the device whose sysfs directory holds the partition's.
        let Some(disk) = names.iter().find(|d| *d != part && sys.exists(&format!("{SYS_CLASS_BLOCK}/{d}/{part}")))
        else {
            seen.insert(part.clone(), format!("{part} (partition {n} of an unknown disk)"));
            continue;
        };
        let node = format!("/dev/{}", disk.replace('!', "/"));
        if mknod {
            make_node(sys, disk, &node);
        }
        let lbs = read_file(sys, &format!("{SYS_CLASS_BLOCK}/{disk}/queue/logical_block_size"), 64)
            .ok()
            .and_then(|t| String::from_utf8_lossy(&t).trim().parse().ok())
            .unwrap_or(512u64);
        let uuid = match sys.open(&node, Open::ReadDevice) {
            Ok(mut f) => {
                let mut read = |off: u64, len: usize| -> Option<Vec<u8>> {
                    let mut buf = vec![0u8; len];
                    let got = read_full_at(sys, &mut f, off, &mut buf).ok()?;
                    buf.truncate(got);
                    Some(buf)
                };
                partuuid(&mut read, lbs, n)
            }
            Err(_) => None,
        };
        seen.insert(
            part.clone(),
            format!(
                "{part} (partition {n} of {disk}{})",
                uuid.as_ref().map(|u| format!(", PARTUUID={u}")).unwrap_or_default()
            ),
        );
        if uuid.is_some_and(|u| u.eq_ignore_ascii_case(want)) {
            let pnode = format!("/dev/{}", part.replace('!', "/"));
            if mknod {
                make_node(sys, part, &pnode);
            }
            return Ok(Some(pnode));
        }
    }
    Ok(None)
}

/// Creates `/dev/<name>` (the node `node`) from `/sys/class/block/<name>/dev` when it is
/// missing (no devtmpfs).
pub(crate) fn make_node<S: Sys>(sys: &mut S, name: &str, node: &str) {
    if sys.exists(node) {
        return;
    }
    let dev = read_file(sys, &format!("{SYS_CLASS_BLOCK}/{name}/dev"), 64).ok();
    if let Some((ma, mi)) = dev.and_then(|d| parse_major_minor(&String::from_utf8_lossy(&d))) {
        let _ = sys.mknod(node, NodeKind::Block, ma, mi);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const UUID: [u8; 16] =
        [0x0b, 0x6f, 0x5a, 0x6e, 0x2b, 0x6c, 0x4d, 0x43, 0x9c, 0x59, 0x2f, 0x1f, 0x5b, 0x0b, 0x8c, 0x11];

    /// A synthetic 2 KiB ext4 image head: boot block + superblock with magic, UUID and label.
    pub(crate) fn ext4_image(uuid: &[u8; 16], label: &str) -> Vec<u8> {
        let mut img = vec![0u8; 2048];
        img[EXT_SB + EXT_MAGIC_OFF..EXT_SB + EXT_MAGIC_OFF + 2].copy_from_slice(&EXT_MAGIC.to_le_bytes());
        img[EXT_SB + EXT_UUID_OFF..EXT_SB + EXT_UUID_OFF + 16].copy_from_slice(uuid);
        img[EXT_SB + EXT_LABEL_OFF..EXT_SB + EXT_LABEL_OFF + label.len()].copy_from_slice(label.as_bytes());
        img
    }

    #[test]
    fn ext4_uuid_and_label() {
        let info = probe_ext(&ext4_image(&UUID, "dump")).unwrap();
        assert_eq!(info.uuid, "0b6f5a6e-2b6c-4d43-9c59-2f1f5b0b8c11");
        assert_eq!(info.label, "dump");
        assert!(info.matches(&DeviceSpec::Uuid("0b6f5a6e-2b6c-4d43-9c59-2f1f5b0b8c11".into())));
        assert!(info.matches(&DeviceSpec::Label("dump".into())));
        assert!(!info.matches(&DeviceSpec::Label("Dump".into())));
        assert!(!info.matches(&DeviceSpec::Uuid("0b6f5a6e-2b6c-4d43-9c59-2f1f5b0b8c12".into())));
        // A full 16-byte label has no NUL terminator.
        let full = probe_ext(&ext4_image(&UUID, "0123456789abcdef")).unwrap();
        assert_eq!(full.label, "0123456789abcdef");
    }

    #[test]
    fn non_ext_rejected() {
        let mut img = ext4_image(&UUID, "dump");
        img[EXT_SB + EXT_MAGIC_OFF] = 0x54; // 0xEF54
        assert_eq!(probe_ext(&img), None);
        assert_eq!(probe_ext(&[0u8; 2048]), None);
        // Too short to hold a superblock: no panic, no match.
        assert_eq!(probe_ext(&ext4_image(&UUID, "dump")[..1100]), None);
        assert_eq!(probe_xfs(&img), None);
        assert_eq!(probe_btrfs(&img), None);
    }

    #[test]
    fn xfs_and_btrfs() {
        let mut x = vec![0u8; 512];
        x[..4].copy_from_slice(b"XFSB");
        x[32..48].copy_from_slice(&UUID);
        x[108..112].copy_from_slice(b"crsh");
        assert_eq!(probe_xfs(&x), Some(FsInfo { fstype: "xfs", uuid: format_uuid(&UUID), label: "crsh".into() }));
        let mut b = vec![0u8; 4096];
        b[0x40..0x48].copy_from_slice(b"_BHRfS_M");
        b[0x20..0x30].copy_from_slice(&UUID);
        b[0x12b..0x12f].copy_from_slice(b"bvol");
        assert_eq!(probe_btrfs(&b).unwrap().label, "bvol");
    }

    #[test]
    fn major_minor() {
        assert_eq!(parse_major_minor("253:16\n"), Some((253, 16)));
        assert_eq!(parse_major_minor("x"), None);
    }
}
