//! The real syscall layer on ordinary files (no root needed): superblock probing of an image
//! made by `mkfs.ext4`, checked against `blkid`, and the vmcore copy through real mmap windows.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

use rkdump_init::boot::Init;
use rkdump_init::probe::probe_node;
use rkdump_init::save::{CopyVmcore, DumpDir, SaveStep};
use rkdump_init::sys::real::RealSys;

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rkdump-init-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn blkid_value(out: &str, key: &str) -> Option<String> {
    out.lines().find_map(|l| l.strip_prefix(&format!("{key}=")).map(str::to_string))
}

#[test]
fn probe_matches_blkid_on_a_real_ext4_image() {
    let (Ok(_), Ok(_)) = (Command::new("mkfs.ext4").arg("-V").output(), Command::new("blkid").arg("-V").output())
    else {
        eprintln!("SKIPPED: mkfs.ext4 or blkid not installed (e2fsprogs, util-linux)");
        return;
    };
    let dir = scratch("probe");
    let img = dir.join("fs.img");
    std::fs::File::create(&img).unwrap().set_len(8 << 20).unwrap();
    let st = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-U", "6f1e0c3a-93d4-4a5b-8e2f-0123456789ab", "-L", "rkdump-test"])
        .arg(&img)
        .status()
        .unwrap();
    assert!(st.success(), "mkfs.ext4 failed");
    let out = Command::new("blkid").args(["-p", "-o", "export"]).arg(&img).output().unwrap();
    let out = String::from_utf8_lossy(&out.stdout).into_owned();

    let info = probe_node(&mut RealSys::new(), img.to_str().unwrap()).unwrap().expect("ext4 recognized");
    assert_eq!(Some(info.uuid.clone()), blkid_value(&out, "UUID"), "blkid said:\n{out}");
    assert_eq!(Some(info.label.clone()), blkid_value(&out, "LABEL"), "blkid said:\n{out}");
    assert_eq!(info.uuid, "6f1e0c3a-93d4-4a5b-8e2f-0123456789ab");

    // A file of zeros is not a filesystem.
    let zero = dir.join("zero.img");
    std::fs::write(&zero, vec![0u8; 128 << 10]).unwrap();
    assert_eq!(probe_node(&mut RealSys::new(), zero.to_str().unwrap()).unwrap(), None);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn copy_through_real_mmap_windows() {
    let dir = scratch("copy");
    let src = dir.join("vmcore-src");
    // 3 windows of 1 MiB plus a partial page at the end.
    let data: Vec<u8> = (0..(3 << 20) + 1000).map(|i: usize| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(&src, &data).unwrap();
    let out = dir.join("dump");
    std::fs::create_dir(&out).unwrap();
    let mut init = Init::new(RealSys::new());
    let mut step = CopyVmcore { source: src.to_str().unwrap().into(), window: 1 << 20, buffer: 1 << 20 };
    let dd = DumpDir { path: out.to_str().unwrap().into(), on_target: "/var/crash/test".into() };
    step.run(&mut init, &dd).unwrap();
    let copied = std::fs::read(out.join("vmcore")).unwrap();
    assert!(copied == data, "copy differs");
    assert!(!out.join("vmcore-incomplete").exists());
    let mode = std::fs::metadata(out.join("vmcore")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode & 0o077, 0, "vmcore must not be group/other readable: {mode:o}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Hooks run through the real layer: exit status, arguments, exactly the environment given,
/// `/` as working directory, a signal as 128 + its number, a missing program as ENOENT, and a
/// program still running at the time limit killed.
#[test]
fn run_program_gives_status_arguments_and_environment() {
    use rkdump_init::sys::{Errno, Sys};
    let dir = scratch("run");
    let out = dir.join("out");
    let script = dir.join("hook");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$1 $PATH ${{HOME:-unset}} $(pwd)\" > {}\nexit $2\n", out.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut sys = RealSys::new();
    let s = script.to_str().unwrap();
    assert_eq!(sys.run_program(s, &["first", "7"], &[("PATH", "/x:/bin")], None), Ok(Some(7)));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "first /x:/bin unset /\n");
    assert_eq!(sys.run_program(s, &["again", "0"], &[], None), Ok(Some(0)));
    assert_eq!(sys.run_program("/bin/sh", &["-c", "kill -TERM $$"], &[], None), Ok(Some(128 + 15)));
    assert_eq!(sys.run_program("/nonexistent/hook", &[], &[], None), Err(Errno::NOENT));
    // A time limit: a quick program is waited for; one still running at the limit is killed.
    let second = Some(std::time::Duration::from_secs(1));
    assert_eq!(sys.run_program(s, &["limited", "4"], &[], second), Ok(Some(4)));
    let start = std::time::Instant::now();
    assert_eq!(sys.run_program("/bin/sleep", &["30"], &[], second), Ok(None));
    let took = start.elapsed();
    assert!(took >= std::time::Duration::from_secs(1) && took < std::time::Duration::from_secs(10), "{took:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// PARTUUIDs read from partition tables that sfdisk wrote: GPT entries against `sfdisk
/// --part-uuid`, MBR (with logical partitions) as `<label-id>-<number>`.
#[test]
fn partuuid_matches_sfdisk() {
    use std::os::unix::fs::FileExt;
    if Command::new("sfdisk").arg("--version").output().is_err() {
        eprintln!("SKIPPED: sfdisk not installed (fdisk)");
        return;
    }
    let dir = scratch("partuuid");
    let sfdisk = |img: &PathBuf, script: &str| {
        std::fs::File::create(img).unwrap().set_len(64 << 20).unwrap();
        let mut child = Command::new("sfdisk").arg("-q").arg(img).stdin(std::process::Stdio::piped()).spawn().unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
        assert!(child.wait().unwrap().success());
    };
    let ours = |img: &PathBuf, n: u32| {
        let f = std::fs::File::open(img).unwrap();
        let mut read = |off: u64, len: usize| {
            let mut b = vec![0u8; len];
            f.read_exact_at(&mut b, off).ok().map(|()| b)
        };
        rkdump_init::probe::partuuid(&mut read, 512, n)
    };
    let gpt = dir.join("gpt.img");
    sfdisk(&gpt, "label: gpt\n,16M,L\n,16M,L\n,,L\n");
    for n in 1..=3 {
        let out = Command::new("sfdisk").arg("--part-uuid").arg(&gpt).arg(n.to_string()).output().unwrap();
        let want = String::from_utf8_lossy(&out.stdout).trim().to_ascii_lowercase();
        assert_eq!(ours(&gpt, n).as_deref(), Some(want.as_str()), "GPT partition {n}");
    }
    assert_eq!(ours(&gpt, 4), None, "an unused GPT entry");
    let mbr = dir.join("mbr.img");
    sfdisk(&mbr, "label: dos\nlabel-id: 0xdeadbeef\n,16M,L\n,,E\n,8M,L\n,8M,L\n");
    for n in [1, 2, 5, 6] {
        assert_eq!(ours(&mbr, n), Some(format!("deadbeef-{n:02x}")), "MBR partition {n}");
    }
    let blank = dir.join("blank.img");
    std::fs::File::create(&blank).unwrap().set_len(1 << 20).unwrap();
    assert_eq!(ours(&blank, 1), None);
    let _ = std::fs::remove_dir_all(&dir);
}
