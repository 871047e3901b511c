//! `/proc/self/mountinfo` on arbitrary text: never panics, and the mount found for a path is
//! always one whose mount point is that path or an ancestor of it, with the rest of the path
//! below it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rkdump_mkinitrd::mounts::{mount_of, parse_mountinfo};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mounts = parse_mountinfo(&text);
    for m in &mounts {
        for path in [m.mount_point.clone(), format!("{}/x", m.mount_point.trim_end_matches('/'))] {
            if !path.starts_with('/') {
                continue;
            }
            if let Some((found, rel)) = mount_of(&mounts, &path) {
                assert!(found.mount_point.len() >= m.mount_point.len() || !path.starts_with(&m.mount_point));
                assert!(rel.starts_with('/'), "{rel:?} for {path:?}");
                let mp = found.mount_point.trim_end_matches('/');
                assert!(path.starts_with(mp), "{path:?} is not below {mp:?}");
            }
        }
    }
});
