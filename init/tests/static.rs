//! The capture init must be a static executable: a dynamic binary as `/init` fails in the
//! capture kernel with a misleading "No such file or directory" (no loader in the image).
//! This test checks the musl release binary with `readelf`, building it first if it is missing
//! so that it can never pass without looking at a binary.

use std::path::PathBuf;
use std::process::Command;

const TARGET: &str = "x86_64-unknown-linux-musl";

fn workspace_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn binary() -> PathBuf {
    let target_dir =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target"));
    target_dir.join(TARGET).join("release").join("rkdump-init")
}

#[test]
fn musl_release_binary_has_no_interpreter() {
    let bin = binary();
    if !bin.exists() {
        eprintln!("{} missing: building it", bin.display());
        let status = Command::new(env!("CARGO"))
            .args(["build", "--release", "--target", TARGET, "-p", "rkdump-init"])
            .current_dir(workspace_root())
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build --release --target {TARGET} -p rkdump-init failed");
    }
    assert!(bin.exists(), "{} still missing after the build", bin.display());

    let out = Command::new("readelf").arg("-lW").arg(&bin).output().expect("run readelf (binutils)");
    assert!(out.status.success(), "readelf -l failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Program Headers:") && text.contains("LOAD"), "unexpected readelf output:\n{text}");
    assert!(!text.contains("INTERP"), "{} has a program interpreter (dynamically linked):\n{text}", bin.display());

    // No shared-library dependencies either.
    let out = Command::new("readelf").arg("-dW").arg(&bin).output().expect("run readelf -d");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("(NEEDED)"), "{} needs shared libraries:\n{text}", bin.display());
}
