//! Where things are when the command line does not say: the running kernel, its bzImage in
//! /boot, and the capture image `rkdump build` writes for a release (kdumpctl keeps its image
//! in /boot as `initramfs-R kdump.img`; rkdump's lives in /var/lib/rkdump, away from the
//! bootloader's files).

use std::path::{Path, PathBuf};

/// Directory of the default capture images.
pub const IMAGE_DIR: &str = "/var/lib/rkdump";

/// The default capture image for kernel `release`.
pub fn image_path(release: &str) -> PathBuf {
    Path::new(IMAGE_DIR).join(format!("capture-{release}.img"))
}

/// The running kernel's bzImage (`/boot/vmlinuz-R`).
pub fn kernel_path(release: &str) -> PathBuf {
    PathBuf::from(format!("/boot/vmlinuz-{release}"))
}

/// The release a bzImage was built as (its header's version string), if it says.
pub fn kernel_release_of(kernel: &Path) -> Option<String> {
    crate::estimate::read_head(kernel).ok().and_then(|h| rkdump_kconfig::estimate::bzimage_release(&h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(image_path("6.1.0-57-amd64"), Path::new("/var/lib/rkdump/capture-6.1.0-57-amd64.img"));
        assert_eq!(kernel_path("6.1.0-57-amd64"), Path::new("/boot/vmlinuz-6.1.0-57-amd64"));
        assert_eq!(kernel_release_of(Path::new("/nonexistent")), None);
        // Every readable installed kernel names its own release in its header.
        for e in std::fs::read_dir("/boot").into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(r) = name
                .strip_prefix("vmlinuz-")
                .filter(|r| r.starts_with(|c: char| c.is_ascii_digit()) && !r.ends_with(".old"))
            {
                if std::fs::File::open(e.path()).is_ok() {
                    assert_eq!(kernel_release_of(&e.path()).as_deref(), Some(r), "{name}");
                }
            }
        }
    }
}
