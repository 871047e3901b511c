//! makedumpfile -R (flattened stream -> file) on arbitrary streams.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("rkdump-fuzz-flat-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("out");
    let _ = std::fs::remove_file(&path);
    let Ok(file) = std::fs::File::create(&path) else { return };
    let mut input: &[u8] = data;
    // Records may point far into the file; a sparse file keeps that cheap, but cap the damage.
    if rkdump_vmcore::flat::unflatten(&mut input, &file, &path).is_ok() {
        let _ = rkdump_vmcore::diskdump::DiskDump::open(&path);
    }
});
