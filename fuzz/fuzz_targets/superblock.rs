//! Filesystem superblock probes on arbitrary device contents. The builder (host) and the
//! capture init each recognise the dump target's filesystem from its superblock, the builder to
//! write `UUID=`/`LABEL=` into the plan and the init to find that device again: on any bytes
//! both must give the same answer, or a capture could miss its target.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rkdump_init::probe::{self, BTRFS_SB_OFFSET, HEAD_LEN};
use rkdump_mkinitrd::sysfs::{probe_superblock, PROBE_LEN};

fuzz_target!(|data: &[u8]| {
    let Some((&layout, rest)) = data.split_first() else {
        return;
    };
    // Place the input at the start of the device or at the btrfs superblock, and cut the
    // device short or not.
    let at = if layout & 1 == 0 { 0 } else { BTRFS_SB_OFFSET as usize };
    let mut dev = vec![0u8; PROBE_LEN.max(at + rest.len())];
    dev[at..at + rest.len()].copy_from_slice(rest);
    if layout & 2 != 0 {
        dev.truncate(at + rest.len());
    }
    let host = probe_superblock(&dev[..dev.len().min(PROBE_LEN)]);
    // What the init reads: the first HEAD_LEN bytes, then HEAD_LEN bytes at the btrfs offset.
    let head = &dev[..dev.len().min(HEAD_LEN)];
    let init = probe::probe_ext(head).or_else(|| probe::probe_xfs(head)).or_else(|| {
        let sb = dev.get(BTRFS_SB_OFFSET as usize..).unwrap_or(&[]);
        probe::probe_btrfs(&sb[..sb.len().min(HEAD_LEN)])
    });
    let host = host.map(|s| (s.fstype, s.uuid, s.label));
    let init = init.map(|s| (s.fstype, s.uuid, s.label));
    assert_eq!(host, init, "builder and init disagree");
});
