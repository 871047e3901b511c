//! `rkdump-init`: as PID 1 it runs the capture ([`rkdump_init::boot::run`]); otherwise it is
//! a small developer tool that never mounts or reboots (`--help`, `--print-plan`,
//! `--dry-run`, `--probe`).
//!
//! Exit codes (developer mode): 0 success, 1 error, 2 usage error.
//!
//! `#![no_main]`: std's runtime start-up replaces closed fds 0-2 with `/dev/null` and *aborts*
//! when `/dev/null` cannot be opened, which is exactly the situation of PID 1 in an image
//! without `/dev/console` (the kernel then starts init with no fds, and nothing is mounted
//! yet): a kernel panic "Attempted to kill init". Starting from the C `main` skips that; the
//! boot sequence reopens `/dev/console` itself after mounting devtmpfs
//! ([`rkdump_init::sys::Sys::ensure_console`]). Arguments are read from `/proc/self/cmdline`
//! in developer mode, as std's argument capture is part of the skipped start-up on musl.
#![cfg_attr(not(test), no_main)]

use std::io::Write;
use std::time::Duration;

use rkdump_init::boot::{self, Init};
use rkdump_init::plan::{Plan, PLAN_PATH};
use rkdump_init::probe;
use rkdump_init::save::default_steps;
use rkdump_init::sys::real::RealSys;
use rkdump_init::sys::Sys;
use rkdump_init::watchdog;

const USAGE: &str = "\
rkdump-init: the capture init of rkdump (runs as PID 1 in the kdump capture kernel)

As PID 1 it mounts /proc, /sys, /dev, /run and /tmp, reads the capture plan
(/etc/rkdump/plan), loads its modules, waits for the dump target, saves
/proc/vmcore into <path>/127.0.0.1-YYYY-MM-DD-HH:MM:SS/vmcore and runs the
plan's final_action (failure_action on any error).

Not as PID 1 it never mounts or reboots:
  rkdump-init --help               this text
  rkdump-init --version            print the version
  rkdump-init --print-plan FILE    parse a capture plan and print it
  rkdump-init --dry-run [FILE]     print the boot sequence a plan would run
                                   (default /etc/rkdump/plan)
  rkdump-init --probe              list block devices with the filesystem UUID
                                   and LABEL the init would see (reads /dev/*)

Exit codes: 0 success, 1 error, 2 usage error.
";

/// The C entry point (see the module doc for why not `fn main`).
#[cfg(not(test))]
#[no_mangle]
pub extern "C" fn main(_argc: std::ffi::c_int, _argv: *const *const std::ffi::c_char) -> std::ffi::c_int {
    if rustix::process::getpid().is_init() {
        pid1();
    }
    let args: Vec<String> = match std::fs::read("/proc/self/cmdline") {
        Ok(raw) => raw
            .split(|&b| b == 0)
            .skip(1)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
        Err(e) => {
            eprintln!("rkdump-init: cannot read /proc/self/cmdline for the arguments: {e}");
            return 2;
        }
    };
    let code = cli(&args);
    let _ = std::io::stdout().flush();
    code
}

/// A message that must reach the console and the kernel log from outside the boot sequence's
/// logger (the panic hook, the stall watchdog): a critical kmsg record and a console line.
#[cfg_attr(test, allow(dead_code))]
fn emergency_log(msg: &str) {
    let msg = msg.replace('\n', " ");
    if let Ok(mut kmsg) = std::fs::OpenOptions::new().write(true).open("/dev/kmsg") {
        let _ = kmsg.write_all(format!("<2>rkdump: {msg}\n").as_bytes());
    }
    let _ = writeln!(std::io::stderr(), "rkdump: {msg}");
}

/// PID 1: run the capture, then idle forever if reboot(2) returned (PID 1 must never exit).
#[cfg_attr(test, allow(dead_code))]
fn pid1() -> ! {
    std::panic::set_hook(Box::new(|info| {
        emergency_log(&format!("BUG: rkdump-init panicked: {info}"));
        let mut sys = RealSys::new();
        sys.sync();
        let _ = sys.reboot(boot::panic_action());
    }));
    // A stuck dump target: the failure action without sync (which would block on it too).
    watchdog::spawn(emergency_log, || {
        if let Err(e) = RealSys::new().reboot(boot::panic_action()) {
            emergency_log(&format!("reboot(2) failed: {}", rkdump_init::sys::OsError(e)));
        }
    });
    let mut init = Init::new(RealSys::new());
    let mut steps = default_steps();
    boot::run(&mut init, &mut steps);
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn read_plan(path: &str) -> Result<Plan, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    Plan::parse(&text).map_err(|e| format!("{path}: {e}"))
}

fn cli(args: &[String]) -> i32 {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    match a.as_slice() {
        ["--help" | "-h"] => {
            print!("{USAGE}");
            0
        }
        ["--version" | "-V"] => {
            println!("rkdump-init {}", env!("CARGO_PKG_VERSION"));
            0
        }
        ["--print-plan", file] => match read_plan(file) {
            Ok(plan) => {
                print!("{}", plan.render());
                0
            }
            Err(e) => {
                eprintln!("rkdump-init: {e}");
                1
            }
        },
        ["--dry-run"] | ["--dry-run", _] => {
            let file = a.get(1).copied().unwrap_or(PLAN_PATH);
            match read_plan(file) {
                Ok(plan) => {
                    for line in boot::describe(&plan) {
                        println!("{line}");
                    }
                    0
                }
                Err(e) => {
                    eprintln!("rkdump-init: {e}");
                    1
                }
            }
        }
        ["--probe"] => match probe::scan(&mut RealSys::new(), false) {
            Ok(devs) => {
                for d in devs {
                    println!("{}\t{d}", d.node);
                }
                0
            }
            Err(e) => {
                eprintln!("rkdump-init: cannot list {}: {}", probe::SYS_CLASS_BLOCK, rkdump_init::sys::OsError(e));
                1
            }
        },
        _ => {
            eprint!("{USAGE}");
            if a.is_empty() {
                eprintln!("\nrkdump-init: not running as PID 1; nothing done (see --dry-run)");
            } else {
                eprintln!("\nrkdump-init: unknown arguments: {}", a.join(" "));
            }
            2
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn developer_mode_exit_codes() {
        assert_eq!(cli(&args(&["--help"])), 0);
        assert_eq!(cli(&args(&["--version"])), 0);
        assert_eq!(cli(&args(&[])), 2);
        assert_eq!(cli(&args(&["--reboot-now"])), 2);
        assert_eq!(cli(&args(&["--print-plan", "/nonexistent/plan"])), 1);
        assert!(USAGE.contains("--print-plan FILE"));
    }

    #[test]
    fn print_plan_and_dry_run() {
        let path = std::env::temp_dir().join(format!("rkdump-init-cli-plan-{}", std::process::id()));
        std::fs::write(&path, "rkdump-plan 1\ntarget xfs LABEL=dump\n").unwrap();
        let p = path.to_str().unwrap();
        assert_eq!(read_plan(p).unwrap().target.fstype, "xfs");
        assert_eq!(cli(&args(&["--print-plan", p])), 0);
        assert_eq!(cli(&args(&["--dry-run", p])), 0);
        std::fs::write(&path, "rkdump-plan 1\nfrobnicate\n").unwrap();
        let e = read_plan(p).unwrap_err();
        assert!(e.contains("unknown key \"frobnicate\""), "{e}");
        assert_eq!(cli(&args(&["--print-plan", p])), 1);
        std::fs::remove_file(&path).unwrap();
    }
}
