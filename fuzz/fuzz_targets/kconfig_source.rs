//! Kernel source facts for the capture-kernel fragment: `Makefile`/`Kbuild` and `Kconfig` text
//! (the first half of the input as one, the rest as two Kconfig files, one sourcing the other), then a fragment and its check
//! against the input parsed as a `.config`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rkdump_kconfig::fragment::{fragment, KernelSource, Needs};
use rkdump_kconfig::Kconfig;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mid = text.char_indices().nth(text.chars().count() / 2).map_or(text.len(), |(i, _)| i);
    let (make, kconf) = text.split_at(mid);
    let mut src = KernelSource::default();
    src.add_makefile(make);
    // The Kconfig half as two files, the first sourcing the second under its blocks.
    let cut = kconf.char_indices().nth(kconf.chars().count() / 2).map_or(kconf.len(), |(i, _)| i);
    let (a, b) = kconf.split_at(cut);
    src.add_kconfig("Kconfig", &format!("{a}\nsource \"b/Kconfig\"\n"));
    src.add_kconfig("b/Kconfig", b);
    src.inherit_source_conditions();
    let modules: Vec<String> = make.split_whitespace().take(8).map(str::to_string).collect();
    let f = fragment(&src, &Needs { modules: &modules, initrd_option: Some("CONFIG_RD_ZSTD") });
    let _ = f.render();
    if let Ok(k) = Kconfig::parse(&text) {
        let _ = f.check(&k);
    }
});
