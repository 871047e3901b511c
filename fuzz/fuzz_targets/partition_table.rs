//! PARTUUIDs from arbitrary disk bytes: never panics, never reads past what a read returns,
//! and every answer has one of the two shapes (a GPT GUID or an MBR `signature-number`).
#![no_main]
use libfuzzer_sys::fuzz_target;
use rkdump_init::probe::partuuid;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, disk)) = data.split_first() else {
        return;
    };
    let lbs = if sel & 1 == 0 { 512 } else { 4096 };
    let n = u32::from(sel >> 1) % 130;
    let mut read = |off: u64, len: usize| -> Option<Vec<u8>> {
        let start = usize::try_from(off).ok()?.min(disk.len());
        Some(disk[start..disk.len().min(start.saturating_add(len))].to_vec())
    };
    if let Some(u) = partuuid(&mut read, lbs, n) {
        let gpt = u.len() == 36
            && u.bytes()
                .enumerate()
                .all(|(i, b)| if matches!(i, 8 | 13 | 18 | 23) { b == b'-' } else { b.is_ascii_hexdigit() });
        let mbr = u.len() == 11 && u.as_bytes()[8] == b'-';
        assert!(gpt || mbr, "{u:?}");
    }
});
