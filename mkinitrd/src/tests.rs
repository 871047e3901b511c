//! Whole-build tests: synthetic module trees + fake sysfs, and a real build against the
//! installed Debian kernel when present.

use super::*;
use crate::modules::tests::synthetic_tree;
use crate::sysfs::tests::{dm_on_scsi_tree, virtio_tree, UUID_STR};
use std::process::Command;

struct Fixture {
    _dir: tempfile::TempDir,
    base: PathBuf,
    opts: BuildOptions,
}

/// A sysroot with `lib/modules/9.9-test`, a config, a dummy init and a fake sysfs.
fn fixture(conf: &str, with_virtio_sysfs: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_path_buf();
    let root = base.join("root");
    let mdir = root.join("lib/modules/9.9-test");
    std::fs::create_dir_all(&mdir).unwrap();
    synthetic_tree(&mdir, true);
    std::fs::write(base.join("kdump.conf"), conf).unwrap();
    std::fs::write(base.join("init"), b"#!dummy init\n").unwrap();
    let sysfs = if with_virtio_sysfs {
        virtio_tree(&base.join("fake")).sys
    } else {
        std::fs::create_dir_all(base.join("empty/sys/class/block")).unwrap();
        std::fs::create_dir_all(base.join("empty/sys/devices")).unwrap();
        base.join("empty/sys")
    };
    let opts = BuildOptions {
        config: base.join("kdump.conf"),
        kernel_release: Some("9.9-test".into()),
        root: Some(root),
        sysfs: Some(sysfs),
        kernel_config: None,
        mountinfo: None,
        output: base.join("out.img"),
        init_binary: base.join("init"),
        compression: Compression::Zstd,
        compression_level: None,
        source_date_epoch: Some(0),
        no_modules: false,
    };
    Fixture { _dir: dir, base, opts }
}

fn paths(entries: &[Entry]) -> Vec<&str> {
    entries.iter().map(|e| e.path.as_str()).collect()
}

#[test]
fn build_with_target_present_in_fake_sysfs() {
    let f = fixture(&format!("ext4 UUID={UUID_STR}\npath /var/crash\n"), true);
    let r = build(&f.opts).unwrap();
    assert_eq!(r.target_device.as_deref(), Some("vda1"));
    let names: Vec<&str> = r.modules.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "virtio",
            "virtio_ring",
            "virtio_blk",
            "virtio_pci",
            "crc32c_generic",
            "mbcache",
            "jbd2",
            "crc16",
            "ext4",
            "ext4_post"
        ],
        "{:?}",
        r.warnings
    );
    assert_eq!(r.plan.modules[0], "/lib/modules/9.9-test/kernel/drivers/virtio/virtio.ko");
    let entries = list(&f.opts.output).unwrap();
    let p = paths(&entries);
    for want in [
        "init",
        "etc/rkdump/plan",
        "dev/console",
        "proc",
        "sys",
        "run",
        "tmp",
        "mnt",
        "lib/modules/9.9-test/kernel/fs/ext4/ext4.ko.gz",
        "lib/modules/9.9-test/kernel/drivers/virtio/virtio_ring.ko.xz",
    ] {
        assert!(p.contains(&want), "{want} missing from {p:?}");
    }
    let mut sorted = p.clone();
    sorted.sort();
    assert_eq!(p, sorted);
    let init = entries.iter().find(|e| e.path == "init").unwrap();
    assert_eq!((init.perm(), init.kind), (0o755, EntryKind::File));
    let console = entries.iter().find(|e| e.path == "dev/console").unwrap();
    assert_eq!((console.kind, console.rdev, console.perm()), (EntryKind::CharDevice, (5, 1), 0o600));
    let tmp = entries.iter().find(|e| e.path == "tmp").unwrap();
    assert_eq!(tmp.perm(), 0o1777);
    assert!(tmp.to_string().starts_with("drwxrwxrwt"), "{tmp}");
    assert_eq!(r.image_size, std::fs::metadata(&f.opts.output).unwrap().len());
    assert!(r.unpacked_size > r.image_size);
    // The plan in the image parses and lists the in-image module paths.
    let raw = decompress(&std::fs::read(&f.opts.output).unwrap(), Compression::Zstd).unwrap();
    let (ents, _) = cpio::parse_archive(&raw).unwrap();
    let (_, range) = ents.iter().find(|(e, _)| e.path == "etc/rkdump/plan").unwrap();
    let plan = Plan::parse(std::str::from_utf8(&raw[range.clone()]).unwrap()).unwrap();
    assert_eq!(plan, r.plan);
    for m in &plan.modules {
        assert!(p.contains(&m.trim_start_matches('/')), "{m}");
    }
}

/// `sizes` measures the image file, its unpacked files (whole pages) and every module
/// uncompressed, whatever its compression in the tree (.ko, .ko.gz, .ko.xz).
#[test]
fn sizes_measure_the_image_and_its_modules_uncompressed() {
    let f = fixture(&format!("ext4 UUID={UUID_STR}\npath /var/crash\n"), true);
    let r = build(&f.opts).unwrap();
    let s = sizes(&f.opts.output).unwrap();
    assert_eq!(s.file, r.image_size);
    let entries = list(&f.opts.output).unwrap();
    let pages: u64 = entries.iter().map(|e| e.size.div_ceil(4096) * 4096).sum();
    assert_eq!(s.unpacked, pages);
    assert_eq!(s.paths, paths(&entries));
    assert_eq!(s.compression, Some(Compression::Zstd));
    assert_eq!(s.plan.as_deref(), Some(r.plan.render().as_str()));
    assert_eq!(s.modules.len(), r.modules.len(), "{:?}", s.modules);
    let mdir = f.base.join("root/lib/modules/9.9-test");
    let mut compressed = 0;
    for (path, size) in &s.modules {
        let rel = path.strip_prefix("lib/modules/9.9-test/").unwrap();
        let raw = std::fs::read(mdir.join(rel)).unwrap();
        let want = match detect(&raw) {
            Ok(Format::Compressed(c)) => {
                compressed += 1;
                decompress(&raw, c).unwrap().len()
            }
            _ => raw.len(),
        };
        assert_eq!(*size, want as u64, "{path}");
    }
    assert!(compressed >= 3, "the tree has .ko.gz, .ko.xz and .ko.zst modules");
    assert!(matches!(sizes(&f.base.join("nope")), Err(ListError::Read { .. })));
}

#[test]
fn target_absent_needs_a_storage_driver() {
    let f = fixture(&format!("ext4 UUID={UUID_STR}\nextra_modules virtio_pci\n"), false);
    let err = build(&f.opts).unwrap_err().to_string();
    assert!(err.contains("not present on this machine") && err.contains("extra_modules virtio_blk"), "{err}");

    let f = fixture(&format!("ext4 UUID={UUID_STR}\nextra_modules virtio_blk virtio_pci\n"), false);
    let r = build(&f.opts).unwrap();
    assert!(r.target_device.is_none());
    assert!(r.warnings.iter().any(|w| w.contains("not present on this machine")), "{:?}", r.warnings);
    let names: Vec<&str> = r.modules.iter().map(|m| m.name.as_str()).collect();
    assert!(names.contains(&"virtio_blk") && names.contains(&"virtio_pci") && names.contains(&"ext4"));
}

#[test]
fn target_absent_with_builtin_storage_driver() {
    let f = fixture(&format!("ext4 UUID={UUID_STR}\nextra_modules nvme_builtin\n"), false);
    let mdir = f.opts.root.as_ref().unwrap().join("lib/modules/9.9-test");
    std::fs::write(mdir.join("modules.builtin"), "kernel/drivers/nvme/host/nvme_builtin.ko\n").unwrap();
    let r = build(&f.opts).unwrap();
    assert!(r.modules.iter().all(|m| m.name != "nvme_builtin"));
    assert!(r.modules.iter().any(|m| m.name == "ext4"));
}

#[test]
fn no_modules_needs_no_modules_directory_and_packs_none() {
    // With the target present (its driver stack in sysfs) and absent, extra_modules given.
    for (sysfs, conf) in [
        (true, format!("ext4 UUID={UUID_STR}\n")),
        (false, format!("ext4 UUID={UUID_STR}\nextra_modules virtio_blk\n")),
    ] {
        let mut f = fixture(&conf, sysfs);
        std::fs::remove_dir_all(f.opts.root.as_ref().unwrap().join("lib/modules")).unwrap();
        assert!(build(&f.opts).unwrap_err().to_string().contains("no modules directory for kernel 9.9-test"));
        f.opts.no_modules = true;
        let r = build(&f.opts).unwrap();
        assert!(r.modules.is_empty() && r.plan.modules.is_empty(), "{:?}", r.modules);
        assert!(r.warnings.iter().any(|w| w.contains("no kernel modules packed (--no-modules)")), "{:?}", r.warnings);
        let list = list(&f.opts.output).unwrap();
        assert!(!paths(&list).iter().any(|p| p.starts_with("lib/modules")), "{:?}", paths(&list));
        assert_eq!(r.plan.target.fstype, "ext4");
    }
}

#[test]
fn missing_extra_module_is_named() {
    let f = fixture("ext4 /dev/vda1\nextra_modules virtio_blk no_such_mod\n", true);
    let err = build(&f.opts).unwrap_err().to_string();
    assert!(err.contains("no_such_mod") && err.contains("9.9-test") && err.contains("extra_modules"), "{err}");
}

#[test]
fn dm_on_scsi_build_warns_about_stack() {
    let f = fixture("ext4 LABEL=root\n", false);
    let fake = dm_on_scsi_tree(&f.base.join("dm"));
    let opts = BuildOptions { sysfs: Some(fake.sys), ..f.opts.clone() };
    let r = build(&opts).unwrap();
    assert_eq!(r.target_device.as_deref(), Some("dm-0"));
    let names: Vec<&str> = r.modules.iter().map(|m| m.name.as_str()).collect();
    for m in ["dm_mod", "scsi_mod", "sd_mod", "libata", "libahci", "ahci", "ext4"] {
        assert!(names.contains(&m), "{m} missing: {names:?}");
    }
    let pos = |x: &str| names.iter().position(|m| *m == x).unwrap();
    assert!(pos("scsi_mod") < pos("sd_mod") && pos("libata") < pos("ahci"));
    assert!(r.warnings.iter().any(|w| w.contains("device-mapper") && w.contains("not yet supported")));
}

#[test]
fn builds_are_byte_identical_and_epoch_is_honoured() {
    let f = fixture(&format!("ext4 UUID={UUID_STR}\n"), true);
    build(&f.opts).unwrap();
    let a = std::fs::read(&f.opts.output).unwrap();
    let out2 = f.base.join("out2.img");
    build(&BuildOptions { output: out2.clone(), ..f.opts.clone() }).unwrap();
    assert_eq!(a, std::fs::read(&out2).unwrap());
    let out3 = f.base.join("out3.img");
    build(&BuildOptions { output: out3.clone(), source_date_epoch: Some(1_700_000_000), ..f.opts.clone() }).unwrap();
    assert_ne!(a, std::fs::read(&out3).unwrap());
    assert!(list(&out3).unwrap().iter().all(|e| e.mtime == 1_700_000_000 && e.uid == 0 && e.gid == 0));
    assert!(list(&f.opts.output).unwrap().iter().all(|e| e.mtime == 0));
    // From the environment (the only test that reads it: the others pass Some(_)).
    std::env::set_var("SOURCE_DATE_EPOCH", "1234567");
    let out4 = f.base.join("out4.img");
    let r = build(&BuildOptions { output: out4.clone(), source_date_epoch: None, ..f.opts.clone() });
    std::env::set_var("SOURCE_DATE_EPOCH", "not-a-number");
    let bad = build(&BuildOptions { output: f.base.join("out5.img"), source_date_epoch: None, ..f.opts.clone() });
    std::env::remove_var("SOURCE_DATE_EPOCH");
    r.unwrap();
    assert!(list(&out4).unwrap().iter().all(|e| e.mtime == 1_234_567));
    assert!(matches!(bad, Err(BuildError::BadEpoch(_))));
}

#[test]
fn every_compression_lists_and_peers_agree() {
    let f = fixture(&format!("ext4 UUID={UUID_STR}\n"), true);
    let mut reference: Option<Vec<Entry>> = None;
    for c in Compression::ALL {
        let out = f.base.join(format!("img.{c}"));
        let r = build(&BuildOptions { output: out.clone(), compression: c, ..f.opts.clone() }).unwrap();
        assert_eq!(r.compression, c);
        let entries = list(&out).unwrap();
        match &reference {
            None => reference = Some(entries),
            Some(e) => assert_eq!(e, &entries, "{c}"),
        }
    }
    // Real peers: cpio -t on the bare archive, xz -t (CRC32) on the xz image.
    let ours: Vec<String> = reference.unwrap().into_iter().map(|e| e.path).collect();
    if let Ok(o) = Command::new("cpio").args(["-t", "--quiet", "-F"]).arg(f.base.join("img.none")).output() {
        assert!(o.status.success());
        assert_eq!(String::from_utf8_lossy(&o.stdout).lines().collect::<Vec<_>>(), ours);
    } else {
        eprintln!("skipped cpio peer check: no cpio");
    }
    if let Ok(o) = Command::new("xz").args(["-l", "--robot"]).arg(f.base.join("img.xz")).output() {
        let t = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success() && t.contains("\tCRC32\t") && !t.contains("CRC64"), "{t}");
        assert!(Command::new("xz").arg("-t").arg(f.base.join("img.xz")).status().unwrap().success());
    } else {
        eprintln!("skipped xz peer check: no xz");
    }
    if let Ok(o) = Command::new("sh")
        .arg("-c")
        .arg(format!("zstd -dc '{}' | cpio -t --quiet", f.base.join("img.zstd").display()))
        .output()
    {
        if o.status.success() {
            assert_eq!(String::from_utf8_lossy(&o.stdout).lines().collect::<Vec<_>>(), ours);
        }
    }
}

#[test]
fn kernel_config_refuses_compression_it_cannot_unpack() {
    let f = fixture(&format!("ext4 UUID={UUID_STR}\n"), true);
    let kc = f.base.join("config-9.9-test");
    std::fs::write(&kc, "CONFIG_RD_GZIP=y\n# CONFIG_RD_ZSTD is not set\n# CONFIG_RD_XZ is not set\n").unwrap();
    let opts = BuildOptions { kernel_config: Some(kc.clone()), ..f.opts.clone() };
    let err = build(&opts).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, BuildError::KernelCannotUnpack { option: "CONFIG_RD_ZSTD", .. }), "{msg}");
    assert!(msg.contains("--compression gzip"), "{msg}");
    build(&BuildOptions { compression: Compression::Gzip, ..opts.clone() }).unwrap();
    build(&BuildOptions { compression: Compression::None, ..opts.clone() }).unwrap();
    // Found under <root>/boot/config-R by default.
    let boot = f.opts.root.as_ref().unwrap().join("boot");
    std::fs::create_dir_all(&boot).unwrap();
    std::fs::copy(&kc, boot.join("config-9.9-test")).unwrap();
    assert!(matches!(build(&f.opts), Err(BuildError::KernelCannotUnpack { .. })));
    // No config: a warning, not an error.
    std::fs::remove_file(boot.join("config-9.9-test")).unwrap();
    let r = build(&f.opts).unwrap();
    assert!(r.warnings.iter().any(|w| w.contains("kernel config")), "{:?}", r.warnings);
}

#[test]
fn list_rejects_garbage_and_reads_concatenation() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.img");
    std::fs::write(&p, b"hello world").unwrap();
    assert!(matches!(list(&p), Err(ListError::Compress { .. })));
    assert!(matches!(list(&dir.path().join("nope")), Err(ListError::Read { .. })));
    // Early (uncompressed) cpio + compressed main archive, as distributions ship microcode.
    let mut early = CpioWriter::new(Vec::new());
    early.add_file("kernel/x86/microcode/GenuineIntel.bin", 0o644, b"ucode").unwrap();
    let mut main = CpioWriter::new(Vec::new());
    main.add_file("init", 0o755, b"x").unwrap();
    let mut img = early.finish().unwrap();
    img.extend(compress(&main.finish().unwrap(), Compression::Xz).unwrap());
    std::fs::write(&p, &img).unwrap();
    let e = list(&p).unwrap();
    assert_eq!(
        paths(&e),
        ["kernel", "kernel/x86", "kernel/x86/microcode", "kernel/x86/microcode/GenuineIntel.bin", "init"]
    );
    // Truncated compressed image: an error, not a panic.
    let z = std::fs::read(&p).unwrap();
    std::fs::write(&p, &z[..z.len() - 20]).unwrap();
    assert!(list(&p).is_err());
}

/// The installed Debian kernel (`/lib/modules/6.1.0-*-amd64`), the QEMU end-to-end shape:
/// `ext4 UUID=<random>` absent from this machine + `extra_modules virtio_blk virtio_pci`.
#[test]
fn real_debian_kernel_build() {
    let Some(release) = debian_release() else {
        eprintln!("skipped: no Debian 6.1 kernel modules installed");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("kdump.conf");
    std::fs::write(
        &conf,
        "ext4 UUID=3f1c9a2e-7b4d-4e8a-9c61-5d2e8f0a1b7c\npath /var/crash\nextra_modules virtio_blk virtio_pci\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("init"), vec![0x90u8; 600_000]).unwrap();
    std::fs::create_dir_all(dir.path().join("sys/class/block")).unwrap();
    std::fs::create_dir_all(dir.path().join("sys/devices")).unwrap();
    let opts = BuildOptions {
        config: conf,
        kernel_release: Some(release.clone()),
        root: None,
        sysfs: Some(dir.path().join("sys")),
        kernel_config: None,
        mountinfo: None,
        output: dir.path().join("img"),
        init_binary: dir.path().join("init"),
        compression: Compression::Zstd,
        compression_level: None,
        source_date_epoch: Some(0),
        no_modules: false,
    };
    let r = build(&opts).unwrap();
    let names: Vec<&str> = r.modules.iter().map(|m| m.name.as_str()).collect();
    eprintln!(
        "real build {release}: {} bytes (unpacked {}), {:?}, modules {names:?}, warnings {:?}",
        r.image_size, r.unpacked_size, r.elapsed, r.warnings
    );
    eprintln!("phases: {:?}", r.phases);
    if std::env::var_os("RKDUMP_ZSTD_LEVELS").is_some() {
        let raw = decompress(&std::fs::read(&opts.output).unwrap(), Compression::Zstd).unwrap();
        for level in [9, 12, 15, 16, 17, 18, 19] {
            let t = std::time::Instant::now();
            let n = zstd::bulk::compress(&raw, level).unwrap().len();
            eprintln!("  zstd level {level}: {n} bytes in {:?}", t.elapsed());
        }
    }
    for m in ["virtio_blk", "virtio_pci", "virtio", "virtio_ring", "ext4", "jbd2", "mbcache", "crc16", "crc32c_generic"]
    {
        assert!(names.contains(&m), "{m} missing: {names:?}");
    }
    let pos = |x: &str| names.iter().position(|m| *m == x).unwrap();
    assert!(pos("crc32c_generic") < pos("ext4") && pos("jbd2") < pos("ext4") && pos("virtio_ring") < pos("virtio_blk"));
    assert!(r.image_size <= 3 << 20, "{}", r.image_size);
    let entries = list(&opts.output).unwrap();
    assert!(entries.iter().any(|e| e.path.ends_with("kernel/fs/ext4/ext4.ko")));
    // Debian's config enables every RD_ compression.
    for c in [Compression::Xz, Compression::Gzip] {
        let out = dir.path().join(format!("img.{c}"));
        let r = build(&BuildOptions { output: out, compression: c, ..opts.clone() }).unwrap();
        eprintln!("  {c}: {} bytes in {:?}", r.image_size, r.elapsed);
    }
}

/// The real `/sys` and `/dev` of this machine: the root filesystem's device, named by path and
/// by the UUID read from its superblock, must be found and its driver stack collected.
#[test]
fn real_sysfs_root_device() {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return;
    };
    let Some((src, fstype)) = mounts.lines().find_map(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        (w.get(1) == Some(&"/")).then(|| (w[0].to_string(), w.get(2).unwrap_or(&"").to_string()))
    }) else {
        return;
    };
    let Some(name) = src.strip_prefix("/dev/").map(str::to_string) else {
        eprintln!("skipped: root is {src}, not a block device");
        return;
    };
    if !Path::new("/sys/class/block").join(&name).exists() || !crate::config::FILESYSTEMS.contains(&fstype.as_str()) {
        eprintln!("skipped: root {src} ({fstype}) is not a supported block device target");
        return;
    }
    let probe = sysfs::Probe::new(None);
    let mut notes = Vec::new();
    let spec = rkdump_init::plan::DeviceSpec::Path(src.clone());
    assert_eq!(probe.find(&spec, &mut notes).as_deref(), Some(name.as_str()));
    let stack = probe.device_modules(&name).unwrap();
    eprintln!("root {src}: modules {:?} modaliases {:?}", stack.modules, stack.modaliases);
    // Reading the superblock needs read access to the node (root).
    let mut buf = Vec::new();
    use std::io::Read;
    if std::fs::File::open(&src).and_then(|f| f.take(sysfs::PROBE_LEN as u64).read_to_end(&mut buf)).is_ok() {
        if let Some(sb) = sysfs::probe_superblock(&buf) {
            let found = probe.find(&rkdump_init::plan::DeviceSpec::Uuid(sb.uuid.clone()), &mut notes);
            assert_eq!(found.as_deref(), Some(name.as_str()), "UUID={} notes {notes:?}", sb.uuid);
        }
    }
    // A whole build for the installed Debian kernel, drivers found from the real sysfs only.
    let Some(release) = debian_release() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("kdump.conf"), format!("{fstype} {src}\n")).unwrap();
    std::fs::write(dir.path().join("init"), b"init").unwrap();
    let opts = BuildOptions {
        config: dir.path().join("kdump.conf"),
        kernel_release: Some(release),
        output: dir.path().join("img"),
        init_binary: dir.path().join("init"),
        source_date_epoch: Some(0),
        ..BuildOptions::default()
    };
    let r = build(&opts).unwrap();
    let names: Vec<&str> = r.modules.iter().map(|m| m.name.as_str()).collect();
    eprintln!("real sysfs build: {names:?} warnings {:?}", r.warnings);
    assert_eq!(r.target_device.as_deref(), Some(name.as_str()));
    if stack.modaliases.iter().any(|(a, _)| a.starts_with("virtio:d00000002v")) {
        assert!(names.contains(&"virtio_blk"), "{names:?}");
    }
}

fn debian_release() -> Option<String> {
    let mut v: Vec<String> = std::fs::read_dir("/lib/modules")
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("6.1.0-") && n.ends_with("-amd64"))
        .collect();
    v.sort();
    v.pop()
}

/// kdump-utils' default configuration: no target line, so the dump goes to the filesystem
/// holding `path` on this machine (here vda1 of the fake tree, mounted at a temporary
/// directory), in the directory `path` has inside it; its modules come from its device.
#[test]
fn build_without_target_line_uses_the_filesystem_holding_path() {
    let f = fixture("", true);
    let mnt = f.base.join("mnt");
    std::fs::create_dir_all(mnt.join("var/crash")).unwrap();
    let mnt = std::fs::canonicalize(&mnt).unwrap();
    std::fs::write(
        f.base.join("kdump.conf"),
        format!("path {}/var/crash\ncore_collector makedumpfile -l -d 31\n", mnt.display()),
    )
    .unwrap();
    let sys = f.opts.sysfs.clone().unwrap();
    std::fs::write(sys.join("class/block/vda1/dev"), "252:1\n").unwrap();
    let mountinfo = f.base.join("mountinfo");
    std::fs::write(
        &mountinfo,
        format!("1 0 8:1 / / rw - ext4 /dev/sda1 rw\n2 1 252:1 /sub {} rw - ext4 /dev/vda1 rw\n", mnt.display()),
    )
    .unwrap();
    let opts = BuildOptions { mountinfo: Some(mountinfo.clone()), ..f.opts.clone() };
    let r = build(&opts).unwrap();
    assert_eq!(r.plan.target.fstype, "ext4");
    assert_eq!(r.plan.target.device, rkdump_init::plan::DeviceSpec::Uuid(UUID_STR.into()));
    assert_eq!(r.plan.path, "/sub/var/crash");
    assert_eq!(r.target_device.as_deref(), Some("vda1"));
    assert_eq!(r.target_from_path, Some((format!("{}/var/crash", mnt.display()), mnt.display().to_string())));
    let names: Vec<&str> = r.modules.iter().map(|m| m.name.as_str()).collect();
    assert!(names.contains(&"virtio_blk") && names.contains(&"ext4"), "{names:?}");
    // The plan in the image says the same.
    let raw = decompress(&std::fs::read(&opts.output).unwrap(), Compression::Zstd).unwrap();
    let (ents, _) = cpio::parse_archive(&raw).unwrap();
    let (_, range) = ents.iter().find(|(e, _)| e.path == "etc/rkdump/plan").unwrap();
    let plan = Plan::parse(std::str::from_utf8(&raw[range.clone()]).unwrap()).unwrap();
    assert_eq!(plan, r.plan);

    // A path on a filesystem rkdump cannot dump to fails the build, naming it.
    std::fs::write(&mountinfo, format!("2 1 0:30 / {} rw - tmpfs tmpfs rw\n", mnt.display())).unwrap();
    let e = build(&opts).unwrap_err();
    assert!(matches!(e, BuildError::PathTarget(mounts::PathTargetError::Unsupported { .. })), "{e}");
    // So does a path that does not exist.
    std::fs::write(f.base.join("kdump.conf"), format!("path {}/nowhere\n", mnt.display())).unwrap();
    let e = build(&opts).unwrap_err();
    assert!(e.to_string().contains("mkdir -p"), "{e}");
}

/// kdump_pre, kdump_post, /etc/kdump/{pre,post}.d and extra_bins: the hooks are in the plan in
/// kdump-utils' order, and the image holds them, their interpreter and the extra program,
/// executable, at their own paths.
#[test]
fn hooks_and_extra_bins_go_into_the_plan_and_the_image() {
    let Ok(busybox) = std::fs::read("/bin/busybox") else {
        eprintln!("SKIP: no /bin/busybox (busybox-static)");
        return;
    };
    let f = fixture(
        &format!("ext4 UUID={UUID_STR}\nkdump_pre /usr/sbin/pre\nkdump_post /usr/sbin/post\nextra_bins /bin/busybox\n"),
        true,
    );
    let root = f.opts.root.clone().unwrap();
    let exec = |rel: &str, data: &[u8]| {
        use std::os::unix::fs::PermissionsExt;
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    exec("bin/busybox", &busybox);
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    for h in ["usr/sbin/pre", "usr/sbin/post", "etc/kdump/pre.d/50-x", "etc/kdump/post.d/10-a", "etc/kdump/post.d/20-b"]
    {
        exec(h, b"#!/bin/sh\nexit 0\n");
    }
    let r = build(&f.opts).unwrap();
    assert_eq!(r.plan.pre, ["/usr/sbin/pre", "/etc/kdump/pre.d/50-x"]);
    assert_eq!(r.plan.post, ["/etc/kdump/post.d/10-a", "/etc/kdump/post.d/20-b", "/usr/sbin/post"]);
    let files: Vec<&str> = r.programs.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        files,
        [
            "/bin/busybox",
            "/bin/sh",
            "/etc/kdump/post.d/10-a",
            "/etc/kdump/post.d/20-b",
            "/etc/kdump/pre.d/50-x",
            "/usr/sbin/post",
            "/usr/sbin/pre"
        ]
    );
    let listed = list(&f.opts.output).unwrap();
    for p in &files {
        let e = listed
            .iter()
            .find(|e| e.path == p.trim_start_matches('/'))
            .unwrap_or_else(|| panic!("{p} not in the image"));
        assert_eq!(e.mode & 0o777, 0o755, "{p}");
    }
    let sh = listed.iter().find(|e| e.path == "bin/sh").unwrap();
    assert_eq!(sh.size as usize, busybox.len(), "/bin/sh is stored as the file it links to");

    // A hook that is not executable fails the build, naming the directive.
    std::fs::write(f.base.join("kdump.conf"), format!("ext4 UUID={UUID_STR}\nkdump_post /usr/sbin/nothing\n")).unwrap();
    let e = build(&f.opts).unwrap_err();
    assert!(e.to_string().contains("kdump_post or /etc/kdump/post.d: cannot read /usr/sbin/nothing"), "{e}");
}

/// The image lists what it was built from; a source changed after the build, or gone, makes
/// it stale (kdumpctl's rebuild rule), and an image without the list is never "up to date".
#[test]
fn freshness_follows_the_sources() {
    let f = fixture(&format!("ext4 UUID={UUID_STR}\n"), true);
    let r = build(&f.opts).unwrap();
    let conf = std::fs::canonicalize(&f.opts.config).unwrap();
    assert!(r.sources.contains(&conf), "{:?}", r.sources);
    assert!(r.sources.iter().any(|p| p.ends_with("modules.dep")), "{:?}", r.sources);
    assert!(r.sources.contains(&std::fs::canonicalize(&f.opts.init_binary).unwrap()));
    let fresh = freshness(&f.opts.output).unwrap();
    assert_eq!(fresh.sources, r.sources);
    // `sizes` reads the same list on its walk (`rkdump check` reads the image once).
    assert_eq!(sizes(&f.opts.output).unwrap().sources, r.sources);
    assert!(fresh.up_to_date(), "{fresh:?}");

    let later = std::fs::metadata(&f.opts.output).unwrap().modified().unwrap() + Duration::from_secs(5);
    std::fs::File::options().write(true).open(&conf).unwrap().set_modified(later).unwrap();
    let fresh = freshness(&f.opts.output).unwrap();
    assert_eq!(fresh.newer, std::slice::from_ref(&conf));
    assert!(!fresh.up_to_date());
    assert_eq!(fresh.stale_reason(), format!("changed since it was built: {}", conf.display()));
    std::fs::remove_file(&f.opts.init_binary).unwrap();
    let fresh = freshness(&f.opts.output).unwrap();
    assert_eq!(fresh.missing, [std::fs::canonicalize(f.base.clone()).unwrap().join("init")]);

    // An archive without the list (not made by this rkdump).
    let mut w = CpioWriter::new(Vec::new());
    w.add_file("init", 0o755, b"x").unwrap();
    let other = f.base.join("other.img");
    std::fs::write(&other, w.finish().unwrap()).unwrap();
    let fresh = freshness(&other).unwrap();
    assert!(fresh.sources.is_empty() && !fresh.up_to_date());
    assert!(matches!(freshness(&f.base.join("none.img")), Err(ListError::Read { .. })));
}

/// A raw target: the device's drivers, no filesystem module, a flattened collector.
#[test]
fn raw_target_needs_no_filesystem() {
    let f = fixture("raw /dev/vda1\ncore_collector makedumpfile -F -l --message-level 7 -d 31\n", true);
    let r = build(&f.opts).unwrap();
    assert_eq!(r.target_device.as_deref(), Some("vda1"));
    assert!(r.plan.target.is_raw());
    assert_eq!(r.plan.collector.to_string(), "flat 31 lzo");
    let names: Vec<&str> = r.modules.iter().map(|m| m.name.as_str()).collect();
    assert!(names.contains(&"virtio_blk"), "{names:?}");
    assert!(!names.contains(&"ext4") && !names.contains(&"jbd2"), "{names:?}");
    // The plan reads back out of the image (`rkdump arm` looks for a raw target there).
    assert_eq!(plan_of(&f.opts.output).unwrap().unwrap().unwrap(), r.plan);
    let plain = f.base.join("plain.cpio");
    let mut w = CpioWriter::new(Vec::new());
    w.add_file("init", 0o755, b"x").unwrap();
    std::fs::write(&plain, w.finish().unwrap()).unwrap();
    assert!(plan_of(&plain).unwrap().is_none());
}

/// `failure_action dump_to_rootfs`: the root filesystem of this machine (vda1 in the mount
/// table) becomes the plan's fallback, `path` on it, with its drivers in the image;
/// `failure_action shell` brings /bin/sh.
#[test]
fn failure_steps_in_the_plan_and_the_image() {
    let f = fixture(
        "ext4 LABEL=elsewhere\nextra_modules virtio_blk\nfinal_action poweroff\nfailure_action dump_to_rootfs\n",
        true,
    );
    let sys = f.opts.sysfs.clone().unwrap();
    std::fs::write(sys.join("class/block/vda1/dev"), "252:1\n").unwrap();
    let mountinfo = f.base.join("mountinfo");
    std::fs::write(&mountinfo, "1 0 252:1 / / rw - ext4 /dev/vda1 rw\n").unwrap();
    let opts = BuildOptions { mountinfo: Some(mountinfo), ..f.opts.clone() };
    let r = build(&opts).unwrap();
    let want = rkdump_init::plan::OnFailure::DumpToRootfs {
        target: rkdump_init::plan::Target {
            fstype: "ext4".into(),
            device: rkdump_init::plan::DeviceSpec::Uuid(UUID_STR.into()),
        },
        path: "/var/crash".into(),
    };
    assert_eq!(r.plan.on_failure, Some(want));
    assert_eq!(r.plan.failure_action, rkdump_init::plan::Action::Poweroff);
    let names: Vec<&str> = r.modules.iter().map(|m| m.name.as_str()).collect();
    assert!(names.contains(&"virtio_pci") && names.contains(&"ext4"), "{names:?}");

    let Ok(busybox) = std::fs::read("/bin/busybox") else {
        eprintln!("SKIP: the shell half needs /bin/busybox (busybox-static)");
        return;
    };
    let root = f.opts.root.clone().unwrap();
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::write(root.join("bin/sh"), busybox).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root.join("bin/sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(f.base.join("kdump.conf"), format!("ext4 UUID={UUID_STR}\nfailure_action shell\n")).unwrap();
    let r = build(&f.opts).unwrap();
    assert_eq!(r.plan.on_failure, Some(rkdump_init::plan::OnFailure::Shell));
    assert!(r.programs.iter().any(|p| p.path == "/bin/sh" && p.why == "failure_action shell"), "{:?}", r.programs);
}
