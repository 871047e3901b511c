//! A module's `.modinfo` (ELF section headers, string table, `key=value` list), plain or
//! compressed by the file name's extension, on arbitrary files.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let name = ["m.ko", "m.ko.xz", "m.ko.zst", "m.ko.gz"][usize::from(sel & 3)];
    let dir = std::env::temp_dir().join(format!("rkdump-fuzz-modinfo-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(name);
    if std::fs::write(&path, rest).is_ok() {
        let _ = rkdump_mkinitrd::modinfo::read_modinfo(&path);
    }
    let _ = std::fs::remove_file(&path);
});
