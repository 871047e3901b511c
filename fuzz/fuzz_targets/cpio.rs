//! Capture images read back (`rkdump build --list`, `rkdump estimate`): compression detection,
//! decompression and the newc parser on arbitrary files; parsed entries must lie inside the
//! data.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rkdump_mkinitrd::cpio::parse_archive;

fuzz_target!(|data: &[u8]| {
    if let Ok((entries, end)) = parse_archive(data) {
        assert!(end <= data.len());
        for (e, range) in &entries {
            assert!(range.start <= range.end && range.end <= end, "{} {range:?}", e.path);
        }
    }
    let dir = std::env::temp_dir().join(format!("rkdump-fuzz-cpio-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("image");
    if std::fs::write(&path, data).is_ok() {
        let _ = rkdump_mkinitrd::list(&path);
        // `rkdump estimate`'s measurement: modules decompressed, sizes summed without overflow.
        if let Ok(s) = rkdump_mkinitrd::sizes(&path) {
            assert_eq!(s.file, data.len() as u64);
        }
    }
});
