//! What a kernel `.config` must have for kdump with rkdump (`rkdump check`): the production
//! kernel loads the capture kernel with `kexec_file_load`, and the capture kernel (the same
//! kernel unless another is armed) boots from the reservation, unpacks our image and gives
//! `/proc/vmcore` to the init, which mounts devtmpfs, proc, sysfs and tmpfs.

use crate::Kconfig;

/// How much a missing option matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Without it there is no capture.
    Required,
    /// The capture works without it, something else does not (e.g. crash tests).
    Recommended,
}

/// Which kernel an option is needed in. They are the same kernel unless a dedicated capture
/// kernel is armed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The running (production) kernel, which loads the capture kernel and is crashed.
    Running,
    /// The capture kernel.
    Capture,
}

/// One option's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionCheck {
    /// `CONFIG_...`.
    pub name: &'static str,
    /// What it is for.
    pub why: &'static str,
    /// Required or recommended.
    pub need: Need,
    /// The kernel that needs it.
    pub role: Role,
    /// Set to `y` (built in); a module does not count for these options.
    pub ok: bool,
}

/// The options, in the order they are reported.
const OPTIONS: &[(&str, &str, Need, Role)] = &[
    ("CONFIG_KEXEC_FILE", "kexec_file_load(2), which `rkdump arm` uses", Need::Required, Role::Running),
    ("CONFIG_CRASH_DUMP", "booting as a capture kernel", Need::Required, Role::Capture),
    ("CONFIG_PROC_VMCORE", "/proc/vmcore in the capture kernel", Need::Required, Role::Capture),
    ("CONFIG_RELOCATABLE", "running from the reservation's address", Need::Required, Role::Capture),
    ("CONFIG_BLK_DEV_INITRD", "booting the capture image", Need::Required, Role::Capture),
    ("CONFIG_DEVTMPFS", "device nodes for the capture init", Need::Required, Role::Capture),
    ("CONFIG_TMPFS", "the capture init's /run and /tmp", Need::Required, Role::Capture),
    ("CONFIG_PROC_FS", "/proc in the capture kernel", Need::Required, Role::Capture),
    ("CONFIG_SYSFS", "finding the dump target's device", Need::Required, Role::Capture),
    (
        "CONFIG_MAGIC_SYSRQ",
        "test crashes with sysrq-c (`echo c > /proc/sysrq-trigger`)",
        Need::Recommended,
        Role::Running,
    ),
];

/// The kdump options of `k`, each with its verdict.
pub fn kdump_options(k: &Kconfig) -> Vec<OptionCheck> {
    OPTIONS
        .iter()
        .map(|&(name, why, need, role)| OptionCheck { name, why, need, role, ok: k.is_builtin(name) })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_options_pass_and_modules_or_unset_fail() {
        let k = Kconfig::parse(
            "CONFIG_KEXEC_FILE=y\nCONFIG_CRASH_DUMP=y\nCONFIG_PROC_VMCORE=m\n# CONFIG_RELOCATABLE is not set\n",
        )
        .unwrap();
        let v = kdump_options(&k);
        assert_eq!(v.len(), OPTIONS.len());
        let ok = |n: &str| v.iter().find(|c| c.name == n).unwrap().ok;
        assert!(ok("CONFIG_KEXEC_FILE") && ok("CONFIG_CRASH_DUMP"));
        assert!(!ok("CONFIG_PROC_VMCORE"), "a module is not enough");
        assert!(!ok("CONFIG_RELOCATABLE") && !ok("CONFIG_DEVTMPFS"));
        assert_eq!(v.iter().find(|c| c.name == "CONFIG_MAGIC_SYSRQ").unwrap().need, Need::Recommended);
    }

    /// Debian's kernel, when installed, has everything.
    #[test]
    fn installed_debian_config_passes() {
        for (name, path) in crate::boot_files("config-") {
            if !name.ends_with("-amd64") {
                continue;
            }
            let k = Kconfig::load(&path).unwrap();
            for c in kdump_options(&k) {
                assert!(c.ok, "{name}: {} not built in", c.name);
            }
            assert!(k.is_builtin("CONFIG_RD_ZSTD"), "{name}");
        }
    }
}
