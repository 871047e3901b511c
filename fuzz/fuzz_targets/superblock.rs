//! Filesystem superblock probes on arbitrary device contents. The builder finds the dump target
//! by probing superblocks and the capture init finds it again the same way (one probe,
//! `rkdump_init::probe::probe_bytes`), matching the plan's `UUID=`/`LABEL=` line. On any bytes:
//! no panic, and a filesystem that is found is found again by the plan line naming it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rkdump_init::plan::DeviceSpec;
use rkdump_init::probe::BTRFS_SB_OFFSET;
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
    let Some(sb) = probe_superblock(&dev[..dev.len().min(PROBE_LEN)]) else {
        return;
    };
    let _ = sb.to_string();
    // Every UUID a probe gives can be named in a plan, and the plan line finds it again.
    let spec = DeviceSpec::parse(&format!("UUID={}", sb.uuid)).expect("probed UUID not plan-safe");
    assert!(sb.matches(&spec), "UUID={} does not match {sb:?}", sb.uuid);
    // A label the plan can carry finds the filesystem again. Labels with control characters or
    // spaces at either end are refused by the parser, and quotes at either end are read as
    // kdump.conf quoting: such a filesystem can only be named by UUID=.
    let quoted = sb.label.starts_with('"') || sb.label.ends_with('"');
    if let (false, Ok(spec)) = (quoted, DeviceSpec::parse(&format!("LABEL={}", sb.label))) {
        assert!(sb.matches(&spec), "LABEL={:?} does not match {sb:?}", sb.label);
    }
});
