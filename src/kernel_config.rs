//! `rkdump kernel-config`: a minimal capture-kernel `.config` fragment for a kernel source tree
//! (see `rkdump_kconfig::fragment`), from the capture image's modules and target filesystem.

use std::path::Path;

use anyhow::{Context, Result};
use rkdump_kconfig::fragment::{fragment, KernelSource, Needs};
use rkdump_kconfig::Kconfig;

/// What the command was given.
pub struct Args<'a> {
    pub source: &'a Path,
    pub initrd: Option<&'a Path>,
    pub modules: &'a [String],
    pub check: Option<&'a Path>,
    pub output: Option<&'a Path>,
}

/// Writes the fragment (or checks a `.config` against it). Returns false when the check found
/// options the `.config` does not build in.
pub fn run(args: &Args<'_>) -> Result<bool> {
    let mut modules: Vec<String> = Vec::new();
    let mut initrd_option = None;
    match args.initrd {
        Some(img) => {
            let sizes = rkdump_mkinitrd::sizes(img).with_context(|| format!("cannot read {}", img.display()))?;
            modules.extend(sizes.modules.iter().map(|(path, _)| path.clone()));
            initrd_option = sizes.compression.and_then(|c| c.kernel_option());
            // The target's filesystem may be built into the running kernel (then the image
            // carries no module for it), but the capture kernel needs it all the same.
            if let Some(Ok(plan)) = sizes.plan.as_deref().map(rkdump_init::plan::Plan::parse) {
                if !plan.target.is_raw() {
                    modules.push(plan.target.fstype.clone());
                }
            }
            eprintln!("rkdump: capture image {}: {} modules", img.display(), sizes.modules.len());
        }
        None => eprintln!(
            "rkdump: warning: no capture image (give --initrd, or build the default one first): the fragment names no storage or filesystem driver"
        ),
    }
    modules.extend(args.modules.iter().cloned());
    let src = KernelSource::scan(args.source)?;
    let frag = fragment(&src, &Needs { modules: &modules, initrd_option });
    for m in &frag.unknown_modules {
        eprintln!("rkdump: warning: no option of {} builds module {m}; enable it by hand", args.source.display());
    }
    if let Some(config) = args.check {
        let k = Kconfig::load(config)?;
        let missing = frag.check(&k);
        if missing.is_empty() {
            println!("{}: all {} options of the capture fragment are built in", config.display(), frag.lines.len());
            return Ok(true);
        }
        println!(
            "{}: {} of the fragment's {} options are not built in:",
            config.display(),
            missing.len(),
            frag.lines.len()
        );
        for l in missing {
            let now = match k.value(&l.name) {
                Some(v) => format!("={v}"),
                None => " not set".to_string(),
            };
            println!("  {}{now} ({})", l.name, l.why);
        }
        println!("(the kernel's configurator drops an option whose dependencies are not met: set those too, or look them up with `make menuconfig`, `/` and the option's name)");
        return Ok(false);
    }
    let text = frag.render();
    match args.output {
        Some(p) => std::fs::write(p, &text).with_context(|| format!("cannot write {}", p.display()))?,
        None => print!("{text}"),
    }
    Ok(true)
}
