//! `rkdump crash-test-workload` (hidden): the memory workload the crash test runs in its guest
//! before crashing it, so that the dump holds anonymous memory and page cache, not only kernel
//! pages. It fills anonymous memory with a non-zero pattern, writes a file to page cache, marks
//! itself ready and then sleeps until the machine dies.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

pub fn run(anon_mib: usize, cache_mib: usize, cache_file: &Path, ready: &Path) -> Result<()> {
    const MIB: usize = 1024 * 1024;
    let mut anon = vec![0u8; anon_mib * MIB];
    for (i, chunk) in anon.chunks_mut(4096).enumerate() {
        // A per-page pattern that is never all zeros.
        chunk.fill((i % 251) as u8 + 1);
    }
    let mut f = fs::File::create(cache_file).with_context(|| format!("create {}", cache_file.display()))?;
    let block: Vec<u8> = (0..MIB).map(|i| (i % 253) as u8 | 1).collect();
    for _ in 0..cache_mib {
        f.write_all(&block)?;
    }
    f.flush()?;
    drop(f);
    fs::write(ready, format!("anon {anon_mib} MiB, cache {cache_mib} MiB\n"))?;
    eprintln!("rkdump: workload ready: {anon_mib} MiB anonymous, {cache_mib} MiB page cache");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
        // Keep the allocation observably alive.
        std::hint::black_box(&anon);
    }
}
