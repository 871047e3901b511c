//! rkdump: the host CLI. Thin glue over the workspace crates: `mkinitrd` (build), `vmcore`
//! (info, dmesg), `qemu` (crash-test), `kconfig` (estimate); `kexec` here for arm/disarm/status.
//!
//! Exit codes: 0 success, 1 failure (the message says what and how to fix it), 2 usage error.

mod armed;
mod check;
mod cli;
mod defaults;
mod estimate;
mod filter;
mod kernel_config;
mod kexec;
mod saveraw;
mod workload;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Die quietly on a closed pipe (`rkdump dmesg DUMP | head`) like the C tools we replace,
    // instead of panicking in println!.
    // SAFETY: setting a signal disposition to SIG_DFL before any thread exists has no memory
    // safety requirements.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rkdump: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
