//! The module index (`modules.dep`, `modules.softdep`, `modules.builtin`, `modules.alias`) and
//! name/alias resolution over it, on arbitrary index files. Input: the four files and a list
//! of names to resolve, separated by NUL bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rkdump_mkinitrd::modules::ModuleIndex;

const FILES: [&str; 4] = ["modules.dep", "modules.softdep", "modules.builtin", "modules.alias"];

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|&b| b == 0);
    let dir = std::env::temp_dir().join(format!("rkdump-fuzz-modidx-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    for f in FILES {
        // A missing part leaves the file out (modules.dep missing: the tree is scanned).
        if let Some(p) = parts.next() {
            if std::fs::write(dir.join(f), p).is_err() {
                return;
            }
        }
    }
    let names = parts.next().map(String::from_utf8_lossy).unwrap_or_default();
    let Ok(mut idx) = ModuleIndex::load(&dir, "fuzz") else {
        return;
    };
    for name in names.lines().take(8) {
        let _ = idx.resolve(name);
        let _ = idx.match_alias(name);
        let _ = (idx.file(name), idx.is_builtin(name), idx.builtin_file(name));
        let _ = idx.closure(&[(name.to_string(), "fuzz".to_string())]);
    }
});
