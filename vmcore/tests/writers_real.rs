//! Writers on real vmcores, checked by real peers (crash, makedumpfile) and by our reader.
//!
//! Vmcores: `$RKDUMP_VMCORES/*/vmcore` (`make test` sets it to the crash tests' `target/e2e/vmcores`; ELF, Debian 12 kernel
//! 6.1.0-56-amd64, made by the crash-test harness). Without any, the test prints SKIPPED, or
//! fails when RKDUMP_VMCORES was set explicitly. crash needs the debug vmlinux
//! (`RKDUMP_VMLINUX`, default /usr/lib/debug/boot/vmlinux-<OSRELEASE of the vmcore>).
//!
//! For each vmcore and each codec (zlib, lzo, snappy, zstd, none) at `-d 31`:
//! (a) `crash -s` running `sys`, `log`, `bt`, `ps` and `rd -p` spot checks of kernel data prints the same as on the source (the
//!     DUMPFILE line dropped); (b) `makedumpfile --dump-dmesg` on our dump succeeds and equals
//!     its output on the source (skipped for codecs the installed makedumpfile lacks);
//! (c) every page our dump keeps equals the source via our reader; (d) `-F` then our
//! unflatten, and `-F` then `makedumpfile -R`, give files crash opens identically; `-E`
//! output too; (e) `-E -d 31` is byte-identical to makedumpfile's, and `-l -d 31` has the same
//! header, sub-header, notes and bitmaps. Also: 2 compression threads give the same file.
//! Wherever crash compares, drgn (libkdumpfile's reader for kdump-compressed files) does too:
//! the crashed thread's stack, every task, a hash of the kernel log and raw physical reads
//! print the same as on the source (`RKDUMP_DRGN`, which `make test` sets to the drgn that
//! `make deps` installs; without it those checks are skipped with a note).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rkdump_vmcore::diskdump::DiskDump;
use rkdump_vmcore::write::{filter, Compression, DumpFormat, FilterOptions, Output};
use rkdump_vmcore::{ElfVmcore, PhysAddr, PhysMemory};

/// drgn, from `RKDUMP_DRGN` (which must then work) or `make deps`' virtualenv.
fn drgn() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("RKDUMP_DRGN") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "RKDUMP_DRGN={} does not exist (run `make deps`)", p.display());
        return Some(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/drgn-venv/bin/drgn");
    p.is_file().then_some(p)
}

/// What the drgn script prints: the release, the crashed thread and its stack, every task,
/// a hash of the kernel log, and `spots` read as physical memory.
fn drgn_output(drgn: &Path, vmlinux: &Path, dump: &Path, dir: &Path, spots: &[u64]) -> String {
    let script = dir.join("probe.py");
    let mut text = String::from(
        "import hashlib\n\
         from drgn.helpers.linux.pid import for_each_task\n\
         from drgn.helpers.linux.printk import get_dmesg\n\
         print(prog['init_uts_ns'].name.release.string_().decode())\n\
         t = prog.crashed_thread()\n\
         print(t.tid, t.name)\n\
         print(t.stack_trace())\n\
         print(sorted((int(x.pid), x.comm.string_().decode()) for x in for_each_task(prog)))\n\
         print('log', hashlib.sha256(get_dmesg(prog)).hexdigest())\n",
    );
    for pa in spots {
        text += &format!("print('{pa:#x}', prog.read({pa:#x}, 32, True).hex())\n");
    }
    std::fs::write(&script, text).unwrap();
    let out = Command::new(drgn).arg("-q").arg("-c").arg(dump).arg("-s").arg(vmlinux).arg(&script).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && stdout.contains("sysrq_handle_crash"),
        "drgn failed on {}:\n{stdout}{}",
        dump.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Physical addresses of kernel data every dump level keeps (the utsname, the top page table,
/// the printk ring buffer's descriptor), for `rd -p` spot checks.
fn spot_addresses(core: &ElfVmcore) -> Vec<u64> {
    let Some(vi) = core.vmcoreinfo() else { return Vec::new() };
    let Ok(kmem) = rkdump_vmcore::KernelMemory::new(core, vi) else { return Vec::new() };
    ["init_uts_ns", "init_top_pgt", "prb", "printk_rb_static"]
        .iter()
        .filter_map(|s| vi.symbol(s))
        .filter_map(|va| kmem.translate(rkdump_vmcore::VirtAddr(va)).ok())
        .map(|pa| pa.0)
        .collect()
}

/// crash's output for sys/log/bt/ps and `rd -p` of `spots`, without the DUMPFILE line.
fn crash_output(vmlinux: &Path, dump: &Path, dir: &Path, spots: &[u64]) -> String {
    let cmds = dir.join("crash.cmds");
    let mut text = String::from("sys\nlog\nbt\nps\n");
    for pa in spots {
        text += &format!("rd -p {pa:#x} 32\n");
    }
    std::fs::write(&cmds, text + "quit\n").unwrap();
    let out = Command::new("crash")
        .arg("-s")
        .arg("-i")
        .arg(&cmds)
        .arg(vmlinux)
        .arg(dump)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("RELEASE:") && text.contains("PANIC:"),
        "crash did not open {}:\n{}",
        dump.display(),
        text.lines().take(30).collect::<Vec<_>>().join("\n")
    );
    text.lines().filter(|l| !l.contains("DUMPFILE:")).collect::<Vec<_>>().join("\n")
}

fn makedumpfile_has(lib: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("ldd \"$(command -v makedumpfile)\" | grep -q {lib}"))
        .status()
        .is_ok_and(|s| s.success())
}

fn dmesg_of(dump: &Path, out: &Path) -> Option<Vec<u8>> {
    let _ = std::fs::remove_file(out);
    let st = Command::new("makedumpfile")
        .arg("--dump-dmesg")
        .arg(dump)
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    if !st.success() {
        return None;
    }
    std::fs::read(out).ok()
}

fn check_pages(src: &ElfVmcore, dump: &DiskDump) -> u64 {
    let mut a = vec![0u8; 4096];
    let mut b = vec![0u8; 4096];
    let mut n = 0;
    for pfn in 0..dump.max_mapnr() {
        if !dump.is_dumpable(pfn) {
            continue;
        }
        let pa = PhysAddr(pfn * 4096);
        dump.read_phys(pa, &mut a).unwrap_or_else(|e| panic!("pfn {pfn:#x} of our dump: {e}"));
        src.read_phys(pa, &mut b).unwrap();
        assert!(a == b, "pfn {pfn:#x} differs from the source");
        n += 1;
    }
    n
}

#[test]
fn writers_on_real_vmcores() {
    let Some(cores) = rkdump_vmcore::mdf::real_vmcores() else { return };
    let vml = rkdump_vmcore::mdf::debug_vmlinux(&cores[0]);
    if vml.is_none() {
        // `make test` installs both; only a developer's partial setup gets here.
        eprintln!("SKIPPED (crash parts): crash or the debug vmlinux is missing (run `make deps`)");
    }
    let drgn = drgn();
    if drgn.is_none() {
        eprintln!("SKIPPED (drgn parts): drgn is missing (run `make deps`, or set RKDUMP_DRGN)");
    }
    let has_mdf = Command::new("makedumpfile").arg("-h").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    let dir = tempfile::tempdir_in(std::env::var_os("RKDUMP_TMP").unwrap_or_else(|| "/tmp".into())).unwrap();
    let d = dir.path();
    for core_path in cores {
        eprintln!("== {}", core_path.display());
        let src = ElfVmcore::open(&core_path).unwrap();
        let spots = spot_addresses(&src);
        assert!(spots.len() >= 3, "no kernel data to spot-check in {}", core_path.display());
        let want_crash = vml.as_ref().map(|v| crash_output(v, &core_path, d, &spots));
        if let Some(w) = &want_crash {
            // The spot checks really printed memory on the source (not a read error that
            // would compare equal to the same error on our dump).
            for pa in &spots {
                let tag = format!("{pa:x}:");
                assert!(
                    w.lines().any(|l| l.trim_start().starts_with(&tag)),
                    "crash rd -p {pa:#x} printed no memory on {}",
                    core_path.display()
                );
            }
        }
        let want_dmesg = if has_mdf { dmesg_of(&core_path, &d.join("src.dmesg")) } else { None };
        let want_drgn = match (&drgn, &vml) {
            (Some(g), Some(v)) => Some(drgn_output(g, v, &core_path, d, &spots)),
            _ => None,
        };
        let crash_same = |dump: &Path, what: &str| {
            if let (Some(v), Some(w)) = (&vml, &want_crash) {
                let got = crash_output(v, dump, d, &spots);
                assert!(got == *w, "crash output on {what} differs from the source:\n{}", first_diff(w, &got));
                eprintln!("  {what}: crash output identical");
            }
            if let (Some(g), Some(v), Some(w)) = (&drgn, &vml, &want_drgn) {
                let got = drgn_output(g, v, dump, d, &spots);
                assert!(got == *w, "drgn output on {what} differs from the source:\n{}", first_diff(w, &got));
                eprintln!("  {what}: drgn output identical");
            }
        };
        // Each codec as `rkdump filter -d 31` writes it by default (zstd, the default codec,
        // with identical pages stored once).
        for m in Compression::ALL {
            let out = d.join(format!("dump.{}", m.name()));
            let opts = FilterOptions {
                dump_level: 31,
                compression: m,
                num_threads: if m == Compression::Lzo { 2 } else { 0 },
                dedup: rkdump_vmcore::write::dedup::on_by_default(31, m),
                ..FilterOptions::default()
            };
            let t = std::time::Instant::now();
            let r = filter(&core_path, Output::Path(&out), &opts, &mut |_, _| {}).unwrap();
            eprintln!(
                "  {}: {} bytes in {:.2}s, {} pages ({} compressed, {} raw, {} zero, {} shared)",
                m.name(),
                r.output_bytes,
                t.elapsed().as_secs_f64(),
                r.written_pages,
                r.compressed_pages,
                r.raw_pages,
                r.counts.zero,
                r.shared_pages
            );
            assert_eq!(r.dedup, opts.dedup, "identical pages looked for as asked");
            let dump = DiskDump::open(&out).unwrap();
            let n = check_pages(&src, &dump);
            assert_eq!(n, r.written_pages);
            crash_same(&out, m.name());
            let mdf_can = match m {
                Compression::Snappy => makedumpfile_has("snappy"),
                Compression::Zstd => makedumpfile_has("zstd"),
                _ => true,
            };
            if let (Some(w), true) = (&want_dmesg, mdf_can) {
                let got = dmesg_of(&out, &d.join("our.dmesg"))
                    .unwrap_or_else(|| panic!("makedumpfile --dump-dmesg failed on our {} dump", m.name()));
                assert!(got == *w, "dmesg of our {} dump differs", m.name());
                eprintln!("  {}: makedumpfile --dump-dmesg identical", m.name());
            } else if !mdf_can {
                eprintln!("  {}: makedumpfile lacks this codec, dmesg check skipped", m.name());
            }
            if m == Compression::Lzo {
                let single = d.join("dump.lzo1");
                let o1 = FilterOptions { num_threads: 0, ..opts };
                filter(&core_path, Output::Path(&single), &o1, &mut |_, _| {}).unwrap();
                assert!(
                    std::fs::read(&single).unwrap() == std::fs::read(&out).unwrap(),
                    "1 and 2 threads give different files"
                );
            }
            std::fs::remove_file(&out).ok();
        }

        // Identical pages stored once (the default at -d 1): every page still reads back,
        // crash and makedumpfile read the shared descriptors, makedumpfile can re-filter it.
        {
            let out = d.join("dump.dedup");
            let opts = FilterOptions {
                dump_level: 1,
                compression: Compression::Lzo,
                num_threads: 2,
                dedup: true,
                ..FilterOptions::default()
            };
            let r = filter(&core_path, Output::Path(&out), &opts, &mut |_, _| {}).unwrap();
            let plain = d.join("dump.nodedup");
            let rp = filter(&core_path, Output::Path(&plain), &FilterOptions { dedup: false, ..opts }, &mut |_, _| {})
                .unwrap();
            eprintln!(
                "  -l -d 1: {} pages share an earlier copy, {} bytes against {} without",
                r.shared_pages, r.output_bytes, rp.output_bytes
            );
            assert!(r.shared_pages > 0, "no identical pages found in a real vmcore at -d 1");
            assert!(r.output_bytes < rp.output_bytes);
            std::fs::remove_file(&plain).ok();
            let dump = DiskDump::open(&out).unwrap();
            assert_eq!(check_pages(&src, &dump), r.written_pages);
            crash_same(&out, "-l -d 1 with shared pages");
            let single = d.join("dump.dedup1");
            filter(&core_path, Output::Path(&single), &FilterOptions { num_threads: 0, ..opts }, &mut |_, _| {})
                .unwrap();
            assert!(
                std::fs::read(&single).unwrap() == std::fs::read(&out).unwrap(),
                "deduplicated dumps differ between 1 and 2 threads"
            );
            std::fs::remove_file(&single).ok();
            if has_mdf {
                if let Some(w) = &want_dmesg {
                    let got = dmesg_of(&out, &d.join("our.dmesg"))
                        .expect("makedumpfile --dump-dmesg failed on a deduplicated dump");
                    assert!(got == *w, "dmesg of the deduplicated dump differs");
                    eprintln!("  -l -d 1 with shared pages: makedumpfile --dump-dmesg identical");
                }
                let refiltered = d.join("dump.dedup.mdf31");
                run_makedumpfile(&["-l", "-d", "31"], &out, &refiltered);
                crash_same(&refiltered, "makedumpfile -l -d 31 of a deduplicated dump");
                std::fs::remove_file(&refiltered).ok();
            }
            std::fs::remove_file(&out).ok();
        }

        // (d) flattened: our unflatten and makedumpfile -R.
        let flat = d.join("dump.flat");
        let opts = FilterOptions { compression: Compression::Lzo, flattened: true, ..FilterOptions::default() };
        filter(&core_path, Output::Path(&flat), &opts, &mut |_, _| {}).unwrap();
        let fd = DiskDump::open(&flat).unwrap();
        assert!(fd.is_flattened());
        check_pages(&src, &fd);
        let un = d.join("dump.unflat");
        {
            let f = std::fs::File::options().create(true).truncate(true).read(true).write(true).open(&un).unwrap();
            let mut input = std::fs::File::open(&flat).unwrap();
            rkdump_vmcore::flat::unflatten(&mut input, &f, &un).unwrap();
        }
        crash_same(&un, "-F + our unflatten");
        if has_mdf {
            let mr = d.join("dump.mdfR");
            let st = Command::new("makedumpfile")
                .arg("-R")
                .arg(&mr)
                .stdin(std::fs::File::open(&flat).unwrap())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap();
            assert!(st.success(), "makedumpfile -R rejected our flattened stream");
            assert!(
                std::fs::read(&mr).unwrap() == std::fs::read(&un).unwrap(),
                "makedumpfile -R and our unflatten differ"
            );
            crash_same(&mr, "-F + makedumpfile -R");
            std::fs::remove_file(&mr).ok();
        }
        std::fs::remove_file(&un).ok();
        std::fs::remove_file(&flat).ok();

        // ELF (-E).
        let elf = d.join("dump.elf");
        let opts = FilterOptions { format: DumpFormat::Elf, ..FilterOptions::default() };
        let r = filter(&core_path, Output::Path(&elf), &opts, &mut |_, _| {}).unwrap();
        eprintln!("  -E: {} bytes", r.output_bytes);
        crash_same(&elf, "-E");
        // ELF from our kdump-compressed dump (makedumpfile refuses -E of such an input): it
        // starts with an empty segment, and leaves out what the dump left out.
        let kd = d.join("dump.kd31");
        filter(&core_path, Output::Path(&kd), &FilterOptions::default(), &mut |_, _| {}).unwrap();
        let elf2 = d.join("dump.kd31.elf");
        let r = filter(&kd, Output::Path(&elf2), &opts, &mut |_, _| {}).unwrap();
        assert_eq!(r.unreadable_pages, 0, "-E of our kdump dump: pages the dump left out written as zeros");
        crash_same(&elf2, "-E of our kdump dump");
        std::fs::remove_file(&elf2).ok();
        std::fs::remove_file(&kd).ok();
        if has_mdf {
            // (e) makedumpfile's own output: -E byte-identical; -l identical up to the end of
            // the bitmaps (header, sub-header, notes, both bitmaps).
            // makedumpfile keeps the free pages of the per-CPU lists: without them
            // (--keep-percpu-free), the same pages, byte for byte.
            let theirs = d.join("mdf.elf");
            run_makedumpfile(&["-E", "-d", "31"], &core_path, &theirs);
            let keep = FilterOptions { percpu_free: false, ..opts };
            let elf_keep = d.join("dump.keep.elf");
            filter(&core_path, Output::Path(&elf_keep), &keep, &mut |_, _| {}).unwrap();
            assert!(
                std::fs::read(&theirs).unwrap() == std::fs::read(&elf_keep).unwrap(),
                "-E --keep-percpu-free output differs from makedumpfile -E -d 31"
            );
            eprintln!("  -E --keep-percpu-free: byte-identical to makedumpfile -E -d 31");
            std::fs::remove_file(&theirs).ok();
            std::fs::remove_file(&elf_keep).ok();
            let ours = d.join("dump.l31");
            let o = FilterOptions { compression: Compression::Lzo, percpu_free: false, ..FilterOptions::default() };
            filter(&core_path, Output::Path(&ours), &o, &mut |_, _| {}).unwrap();
            run_makedumpfile(&["-l", "-d", "31"], &core_path, &theirs);
            let (a, b) = (std::fs::read(&ours).unwrap(), std::fs::read(&theirs).unwrap());
            let dd = DiskDump::open(&ours).unwrap();
            let h = dd.header();
            let prefix = (1 + h.sub_hdr_size as usize + h.bitmap_blocks as usize) * 4096;
            assert!(a.len() > prefix && b.len() > prefix);
            assert!(a[..prefix] == b[..prefix], "-l -d 31: headers/notes/bitmaps differ from makedumpfile");
            eprintln!(
                "  -l -d 31 --keep-percpu-free: headers, notes and bitmaps identical to makedumpfile; size {} vs {}",
                a.len(),
                b.len()
            );
            // By default the per-CPU free pages leave bitmap 2, and nothing else changes.
            let o = FilterOptions { percpu_free: true, ..o };
            let r = filter(&core_path, Output::Path(&ours), &o, &mut |_, _| {}).unwrap();
            let a = std::fs::read(&ours).unwrap();
            let bm1 = (1 + h.sub_hdr_size as usize) * 4096;
            let bm2 = bm1 + h.bitmap_blocks as usize / 2 * 4096;
            assert!(a[..bm2] == b[..bm2], "-l -d 31: header, notes or bitmap 1 changed with the per-CPU free pages");
            let (mut dropped, mut added) = (0u64, 0u64);
            for (x, y) in a[bm2..prefix].iter().zip(&b[bm2..prefix]) {
                dropped += u64::from((y & !x).count_ones());
                added += u64::from((x & !y).count_ones());
            }
            assert_eq!(added, 0, "-l -d 31 keeps pages makedumpfile leaves out");
            assert_eq!(
                dropped, r.counts.free_percpu,
                "pages left out beyond makedumpfile's are not the per-CPU free ones"
            );
            assert!(dropped > 0, "no per-CPU free pages in a real vmcore");
            eprintln!("  -l -d 31: {dropped} per-CPU free pages left out, size {} vs {}", a.len(), b.len());
            std::fs::remove_file(&theirs).ok();
            std::fs::remove_file(&ours).ok();
        }
        std::fs::remove_file(&elf).ok();
    }
}

fn run_makedumpfile(args: &[&str], input: &Path, out: &Path) {
    let _ = std::fs::remove_file(out);
    let st = Command::new("makedumpfile")
        .args(args)
        .arg(input)
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "makedumpfile {args:?} failed");
}

fn first_diff(a: &str, b: &str) -> String {
    for (i, (x, y)) in a.lines().zip(b.lines()).enumerate() {
        if x != y {
            return format!("line {i}:\n- {x}\n+ {y}");
        }
    }
    format!("lengths {} vs {} lines", a.lines().count(), b.lines().count())
}
