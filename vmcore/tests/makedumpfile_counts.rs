//! Real vmcores against the real makedumpfile.
//!
//! For every `*/vmcore` under `$RKDUMP_VMCORES` (`make test` sets it to the crash tests' `target/e2e/vmcores`), runs
//! `makedumpfile -l -d 31 --message-level 31` and asserts that every page count of its report
//! equals rkdump's (`rkdump_vmcore::info`) when rkdump keeps the free pages of the per-CPU
//! lists as makedumpfile does; leaving them out (the default) moves exactly those pages out of
//! makedumpfile's zero and remaining counts. If `RKDUMP_VMCORES` is set but holds no vmcore,
//! the test fails; if it is unset and nothing is found, it prints SKIPPED and returns.

use rkdump_vmcore::ClassifyOptions;

#[test]
fn page_counts_match_makedumpfile() {
    let Some(cores) = rkdump_vmcore::mdf::real_vmcores() else { return };
    if !rkdump_vmcore::mdf::available() {
        panic!("vmcores found ({}) but makedumpfile is not installed", cores[0].display());
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    for core in &cores {
        let theirs =
            rkdump_vmcore::mdf::run_makedumpfile(core, &tmp.path().join("out")).unwrap_or_else(|e| panic!("{e}"));
        let ours = rkdump_vmcore::info(core).unwrap_or_else(|e| panic!("{}: {e}", core.display()));
        eprintln!("{}: makedumpfile {theirs:?}", core.display());
        rkdump_vmcore::mdf::assert_same_but_percpu(&theirs, &ours.to_json(), &core.display().to_string());
        assert!(ours.counts.free_percpu > 0, "{}: no free pages on per-CPU lists", core.display());
        let opened = rkdump_vmcore::ElfVmcore::open(core).expect("open");
        let keep = ClassifyOptions { dump_level: 31, percpu_free: false };
        let exact = rkdump_vmcore::info::counts_with(&opened, keep);
        assert_eq!(exact.free_percpu, 0);
        rkdump_vmcore::mdf::assert_same(
            &theirs,
            &rkdump_vmcore::mdf::counts_json(&exact),
            &format!("{} keeping per-CPU free pages", core.display()),
        );

        // The pread fallback (used when /proc/vmcore cannot be mmapped) gives the same counts.
        opened.disable_mmap();
        let again = rkdump_vmcore::info::info_from(&opened);
        assert_eq!(again.counts, ours.counts, "{}: pread and mmap disagree", core.display());

        // Other dump levels take other branches of the decision chain.
        for level in [1u8, 16, 17, 22] {
            let theirs = rkdump_vmcore::mdf::run_makedumpfile_level(core, &tmp.path().join("out"), level)
                .unwrap_or_else(|e| panic!("{e}"));
            let what = format!("{} at -d {level}", core.display());
            let ours = rkdump_vmcore::info::counts_at_level(&opened, level);
            rkdump_vmcore::mdf::assert_same_but_percpu(&theirs, &rkdump_vmcore::mdf::counts_json(&ours), &what);
            let exact =
                rkdump_vmcore::info::counts_with(&opened, ClassifyOptions { dump_level: level, percpu_free: false });
            rkdump_vmcore::mdf::assert_same(&theirs, &rkdump_vmcore::mdf::counts_json(&exact), &what);
        }
    }
}
