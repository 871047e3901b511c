//! The stall watchdog: work on the dump target (its mount, a save step, the final unmount and
//! sync) that makes no progress at all for the plan's `stall_timeout` ends the capture with the
//! failure action instead of hanging forever.
//!
//! A dump target can stop taking writes without ever returning an error: a thin-provisioned
//! or SAN volume out of backing space, a disk that stopped answering, or an ext4 whose journal
//! aborted under write errors while the writer sits in the kernel's dirty-page throttle. The
//! capture init would then wait for ever and the machine would never come back. The kernel's
//! hung-task detector only logs; nothing reboots.
//!
//! Progress is measured from outside the work: CPU time (above 5%) and the bytes read and written
//! (`/proc/self/task/*/stat` and `io`) of every thread of the init but the watcher itself, and
//! the sectors the block devices completed (`/proc/diskstats`). A writer blocked in the kernel
//! gains none of these once its device stops; compressing, reading `/proc/vmcore` through mmap
//! (CPU time), writing (bytes) and a slow device draining the page cache under a long `fsync`
//! (sectors) all count. The watch is armed only while the init itself works on the target:
//! mounting it, each save step, and the final unmount and sync (not during hooks, whose
//! programs are other processes and have `hook_timeout`, nor the device wait, which has its own
//! `device_timeout`).
//!
//! When it fires, the watcher logs why and applies the failure action with reboot(2) directly:
//! no `sync` (it would block on the same stuck device), no `on_failure` step (the stuck thread
//! cannot be taken back). The partial file keeps its `-incomplete` name.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// The stall limit in seconds while armed; 0 while disarmed.
static LIMIT: AtomicU64 = AtomicU64::new(0);
/// Bumped on every arm so that the watcher starts a fresh window.
static EPOCH: AtomicU64 = AtomicU64::new(0);
/// What is being watched, for the message.
static WHAT: Mutex<String> = Mutex::new(String::new());

/// The default `stall_timeout` in seconds.
pub const DEFAULT_STALL_SECS: u32 = 300;

/// Arms the watch over `what` (`saving vmcore`, `mounting /dev/vda`) with a limit of `secs`
/// (0: no watch).
fn arm(what: &str, secs: u32) {
    if let Ok(mut s) = WHAT.lock() {
        what.clone_into(&mut s);
    }
    EPOCH.fetch_add(1, Ordering::SeqCst);
    LIMIT.store(u64::from(secs), Ordering::SeqCst);
}

/// Disarms the watch (the work has returned).
fn disarm() {
    LIMIT.store(0, Ordering::SeqCst);
    EPOCH.fetch_add(1, Ordering::SeqCst);
}

/// Runs `f` under the watch over `what` with a limit of `secs` (0: no watch), disarming after.
pub fn watched<T>(what: &str, secs: u32, f: impl FnOnce() -> T) -> T {
    arm(what, secs);
    let r = f();
    disarm();
    r
}

/// What the watcher samples: the work's CPU time and I/O, summed over its threads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Activity {
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    /// rchar + wchar.
    pub io_bytes: u64,
    /// Sectors read and written by all block devices.
    pub disk_sectors: u64,
}

/// CPU time that counts as work, in clock ticks (USER_HZ, 100 on Linux) per second of the
/// window: 5%. A writer stuck in the kernel's dirty-page throttle still wakes every 200 ms and
/// is charged a tick every ten seconds or so (seen under QEMU); any real work (compressing,
/// copying, classifying) runs far above this.
pub const WORK_TICKS_PER_SEC: u64 = 5;

/// Decides, from successive samples, how long the work has made no progress.
#[derive(Debug, Default)]
pub struct Tracker {
    epoch: u64,
    /// The previous sample and when it was taken.
    last: Option<(Activity, Duration)>,
    /// Start of the window without progress.
    since: Duration,
}

impl Tracker {
    /// Feeds the sample `activity` taken at `now` under arm `epoch`; returns how long the work
    /// has made no progress. A new epoch (a re-arm), a byte read or written, a sector completed,
    /// or CPU time above [`WORK_TICKS_PER_SEC`] since the previous sample starts a new window.
    pub fn observe(&mut self, epoch: u64, activity: Activity, now: Duration) -> Duration {
        let progress = match self.last {
            Some((l, at)) if epoch == self.epoch => {
                let secs = now.saturating_sub(at).as_secs().max(1);
                l.io_bytes != activity.io_bytes
                    || l.disk_sectors != activity.disk_sectors
                    || activity.cpu_ticks < l.cpu_ticks
                    || activity.cpu_ticks - l.cpu_ticks >= WORK_TICKS_PER_SEC.saturating_mul(secs)
            }
            _ => true,
        };
        self.epoch = epoch;
        self.last = Some((activity, now));
        if progress {
            self.since = now;
        }
        now.saturating_sub(self.since)
    }
}

/// Sums [`Activity`] over the threads in `/proc/self/task` but `skip_tid`, and over the block
/// devices. Threads that end between the listing and the read are left out (the sum changes,
/// which counts as progress). `None` when `/proc` cannot be read: then nothing is known, and
/// the watch must not take that for a stall.
pub fn sample(skip_tid: i32) -> Option<Activity> {
    let dir = std::fs::read_dir("/proc/self/task").ok()?;
    let mut a = Activity {
        disk_sectors: std::fs::read_to_string("/proc/diskstats").map_or(0, |d| disk_sectors(&d)),
        ..Activity::default()
    };
    for e in dir.flatten() {
        let name = e.file_name();
        let Some(tid) = name.to_str().and_then(|t| t.parse::<i32>().ok()) else {
            continue;
        };
        if tid == skip_tid {
            continue;
        }
        let base = e.path();
        if let Ok(stat) = std::fs::read_to_string(base.join("stat")) {
            a.cpu_ticks += cpu_ticks(&stat).unwrap_or(0);
        }
        if let Ok(io) = std::fs::read_to_string(base.join("io")) {
            a.io_bytes += io_bytes(&io);
        }
    }
    Some(a)
}

/// utime + stime from a `/proc/<pid>/stat` line (fields 14 and 15; the command name in
/// parentheses may hold spaces, so fields are counted after the last `)`).
pub fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace().skip(11);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some(utime + stime)
}

/// rchar + wchar from a `/proc/<pid>/io` file.
pub fn io_bytes(io: &str) -> u64 {
    io.lines()
        .filter_map(|l| l.strip_prefix("rchar:").or_else(|| l.strip_prefix("wchar:")))
        .filter_map(|v| v.trim().parse::<u64>().ok())
        .sum()
}

/// Sectors read plus sectors written, summed over the lines of `/proc/diskstats`
/// (`major minor name reads merged sectors_read ms writes merged sectors_written ...`).
pub fn disk_sectors(diskstats: &str) -> u64 {
    diskstats
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some(f.get(5)?.parse::<u64>().ok()? + f.get(9)?.parse::<u64>().ok()?)
        })
        .fold(0, u64::wrapping_add)
}

/// The message logged when the watch fires.
pub fn stall_message(what: &str, stalled: Duration, action: &str) -> String {
    format!(
        "{what} made no progress for {} s (under 5% CPU, no bytes read or written, no disk I/O \
         completed): the dump target stopped answering; {action} without sync (stall_timeout in \
         kdump.conf); a partial file keeps its -incomplete name",
        stalled.as_secs()
    )
}

/// Starts the watcher thread (PID 1 only). It samples every second while armed and, once the
/// limit is reached, logs through `log` and calls `fire`, which applies the failure action.
pub fn spawn(log: fn(&str), fire: fn()) {
    let _ = std::thread::Builder::new().name("stall-watchdog".into()).spawn(move || {
        let me = rustix::thread::gettid().as_raw_nonzero().get();
        let start = std::time::Instant::now();
        let mut tracker = Tracker::default();
        loop {
            std::thread::sleep(Duration::from_secs(1));
            let limit = LIMIT.load(Ordering::SeqCst);
            if limit == 0 {
                continue;
            }
            let epoch = EPOCH.load(Ordering::SeqCst);
            let Some(now) = sample(me) else {
                continue;
            };
            let stalled = tracker.observe(epoch, now, start.elapsed());
            // Re-check: the step may have ended (disarm bumps the epoch) while sampling.
            if stalled.as_secs() >= limit && EPOCH.load(Ordering::SeqCst) == epoch {
                let step = WHAT.lock().map(|s| s.clone()).unwrap_or_default();
                log(&stall_message(&step, stalled, crate::boot::panic_action().as_str()));
                fire();
                return;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_without_change_counts_up_and_any_change_restarts_it() {
        let mut t = Tracker::default();
        let a = Activity { cpu_ticks: 10, io_bytes: 100, disk_sectors: 7 };
        let s = Duration::from_secs;
        assert_eq!(t.observe(1, a, s(5)), s(0));
        assert_eq!(t.observe(1, a, s(6)), s(1));
        assert_eq!(t.observe(1, a, s(65)), s(60));
        // One more byte is progress.
        let b = Activity { io_bytes: 101, ..a };
        assert_eq!(t.observe(1, b, s(70)), s(0));
        assert_eq!(t.observe(1, b, s(80)), s(10));
        // A tick now and then (a writer waking in the dirty-page throttle) is not: one tick in
        // ten one-second samples.
        for i in 1..=60 {
            let a = Activity { cpu_ticks: 10 + i / 10, ..b };
            assert_eq!(t.observe(1, a, s(80 + i)), s(10 + i));
        }
        // Work is: 100 ticks in the next second.
        let b = Activity { cpu_ticks: 116, ..b };
        assert_eq!(t.observe(1, b, s(141)), s(0));
        assert_eq!(t.observe(1, Activity { cpu_ticks: 121, ..b }, s(142)), s(0));
        assert_eq!(t.observe(1, Activity { cpu_ticks: 122, ..b }, s(143)), s(1));
        // The device completing writes (a long fsync on a slow disk) is progress too.
        let c = Activity { disk_sectors: 15, ..b };
        assert_eq!(t.observe(1, c, s(81)), s(0));
        // A re-arm (new epoch) starts afresh even with the same numbers.
        assert_eq!(t.observe(2, c, s(82)), s(0));
        assert_eq!(t.observe(2, c, s(90)), s(8));
    }

    #[test]
    fn parses_proc_stat_and_io() {
        // The command name may hold spaces and parentheses.
        let stat = "1234 (rkdump (x) y) S 1 1 1 0 -1 4194560 500 0 0 0 37 5 0 0 20 0 3 0 100 0 0";
        assert_eq!(cpu_ticks(stat), Some(42));
        assert_eq!(cpu_ticks("garbage"), None);
        assert_eq!(cpu_ticks("1 (x) S 1"), None);
        let io = "rchar: 1000\nwchar: 24\nsyscr: 5\nsyscw: 2\nread_bytes: 4096\nwrite_bytes: 0\n";
        assert_eq!(io_bytes(io), 1024);
        assert_eq!(io_bytes(""), 0);
        let diskstats = "   7       0 loop0 1858 0 121482 149 494 235 4754 159 0 288 451 0 0 0 0 319 142\n \
                         253       0 vda 10 0 80 1 20 0 160 2 0 3 3\n  8 0 short 1 2\n";
        assert_eq!(disk_sectors(diskstats), 121_482 + 4754 + 80 + 160);
        assert_eq!(disk_sectors(""), 0);
    }

    #[test]
    fn this_thread_shows_activity() {
        // Other test threads come and go (their counts leave the process's sum), so the change
        // is checked on this thread's own files, read as `sample` reads them.
        let own = || {
            let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
            let io = std::fs::read_to_string("/proc/thread-self/io").unwrap_or_default();
            (cpu_ticks(&stat), io_bytes(&io))
        };
        let before = own();
        let mut x = 0u64;
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(100) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(1));
        }
        let after = own();
        assert!(after.0 > before.0, "{before:?} -> {after:?}");
        assert!(after.1 > before.1, "{before:?} -> {after:?}");
        assert!(sample(0).is_some_and(|a| a.io_bytes >= after.1));
    }

    #[test]
    fn the_message_names_the_step_the_time_and_the_setting() {
        let m = stall_message("saving vmcore", Duration::from_secs(301), "reboot");
        assert!(m.starts_with("saving vmcore made no progress for 301 s"), "{m}");
        assert!(m.contains("reboot without sync") && m.contains("stall_timeout"), "{m}");
    }
}
