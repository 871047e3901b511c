//! Real vmcores against the real makedumpfile.
//!
//! For every `*/vmcore` under `$RKDUMP_VMCORES` (`make test` sets it to the crash tests' `target/e2e/vmcores`), runs
//! `makedumpfile -l -d 31 --message-level 31` and asserts that every page count of its report
//! equals rkdump's (`rkdump_vmcore::info`). If `RKDUMP_VMCORES` is set but holds no vmcore,
//! the test fails; if it is unset and nothing is found, it prints SKIPPED and returns.

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
        rkdump_vmcore::mdf::assert_same(&theirs, &ours.to_json(), &core.display().to_string());

        // The pread fallback (used when /proc/vmcore cannot be mmapped) gives the same counts.
        let opened = rkdump_vmcore::ElfVmcore::open(core).expect("open");
        opened.disable_mmap();
        let again = rkdump_vmcore::info::info_from(&opened);
        assert_eq!(again.counts, ours.counts, "{}: pread and mmap disagree", core.display());

        // Other dump levels take other branches of the decision chain.
        for level in [1u8, 16, 17, 22] {
            let theirs = rkdump_vmcore::mdf::run_makedumpfile_level(core, &tmp.path().join("out"), level)
                .unwrap_or_else(|e| panic!("{e}"));
            let ours = rkdump_vmcore::info::counts_at_level(&opened, level);
            rkdump_vmcore::mdf::assert_same(
                &theirs,
                &rkdump_vmcore::mdf::counts_json(&ours),
                &format!("{} at -d {level}", core.display()),
            );
        }
    }
}
