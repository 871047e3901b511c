//! Kernel `.config` parser on arbitrary text, and the queries the builder makes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rkdump_kconfig::Kconfig;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(k) = Kconfig::parse(&text) else {
        return;
    };
    let names = text.lines().filter_map(|l| l.split(['=', ' ']).find(|w| w.starts_with("CONFIG_"))).take(16);
    for name in names.chain(["CONFIG_RD_ZSTD", "CONFIG_MODULE_COMPRESS_XZ", "CONFIG_"]) {
        let _ = k.get(name);
        let _ = (k.is_enabled(name), k.is_builtin(name), k.is_module(name));
        let _ = (k.value(name), k.number(name));
    }
    let _ = (k.len(), k.is_empty());
});
