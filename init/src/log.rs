//! Logging of the capture init: `/dev/kmsg` records with a level, echoed to the console.
//!
//! Each message becomes one kmsg record `<level>rkdump: message` (so it lands in the capture
//! kernel's log and on the serial console) and, when the kernel would not print that level on
//! the console itself (`level >= console_loglevel`, e.g. under `quiet`) or kmsg is unavailable,
//! the init writes `rkdump: message` to its own stdout. A message therefore reaches the console
//! exactly once. The init also switches `printk_devkmsg` to `on` so that the kernel's default
//! kmsg rate limit (10 records per 5 s) cannot drop progress lines.

use crate::sys::{write_all, Sys};

/// Kernel log levels used by the init (`<linux/kern_levels.h>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// `KERN_ERR`.
    Err = 3,
    /// `KERN_WARNING`.
    Warning = 4,
    /// `KERN_NOTICE`.
    Notice = 5,
    /// `KERN_INFO`.
    Info = 6,
}

/// The prefix of every line the init logs.
pub const PREFIX: &str = "rkdump: ";

/// Where log lines go. Starts console-only; [`Logger::attach_kmsg`] adds `/dev/kmsg`.
#[derive(Debug)]
pub struct Logger<F> {
    kmsg: Option<F>,
    console_loglevel: Option<u8>,
}

impl<F> Default for Logger<F> {
    fn default() -> Self {
        Logger { kmsg: None, console_loglevel: None }
    }
}

impl<F> Logger<F> {
    /// Sends records to `kmsg` from now on. `console_loglevel` is the first field of
    /// `/proc/sys/kernel/printk` when known: levels below it are printed by the kernel itself.
    pub fn attach_kmsg(&mut self, kmsg: F, console_loglevel: Option<u8>) {
        self.kmsg = Some(kmsg);
        self.console_loglevel = console_loglevel;
    }

    /// Whether kmsg is attached.
    pub fn has_kmsg(&self) -> bool {
        self.kmsg.is_some()
    }

    /// Writes `msg` to kmsg only (one record per line); false if kmsg is missing or failed.
    pub fn log_kmsg_only<S: Sys<File = F>>(&mut self, sys: &mut S, level: Level, msg: &str) -> bool {
        let Some(kmsg) = self.kmsg.as_mut() else {
            return false;
        };
        let mut ok = true;
        for line in msg.lines() {
            let record = format!("<{}>{PREFIX}{line}\n", level as u8);
            ok &= write_all(sys, kmsg, record.as_bytes()).is_ok();
        }
        ok
    }

    /// Logs `msg` (possibly several lines) at `level`.
    pub fn log<S: Sys<File = F>>(&mut self, sys: &mut S, level: Level, msg: &str) {
        let mut echo = true;
        if self.kmsg.is_some() {
            let ok = self.log_kmsg_only(sys, level, msg);
            let kernel_prints = self.console_loglevel.is_some_and(|cl| (level as u8) < cl);
            echo = !(ok && kernel_prints);
        }
        if echo {
            let mut text = String::with_capacity(msg.len() + 16);
            for line in msg.lines() {
                text.push_str(PREFIX);
                text.push_str(line);
                text.push('\n');
            }
            sys.console(&text);
        }
    }
}

/// Parses the first field of `/proc/sys/kernel/printk` (`"4\t4\t1\t7\n"` -> 4).
pub fn parse_console_loglevel(text: &str) -> Option<u8> {
    text.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fake::{FakeSys, Node};
    use crate::sys::Open;

    #[test]
    fn console_only_until_kmsg() {
        let mut sys = FakeSys::new();
        let mut log = Logger::default();
        log.log(&mut sys, Level::Info, "one\ntwo");
        assert_eq!(sys.console, "rkdump: one\nrkdump: two\n");
        assert!(sys.kmsg.is_empty());
    }

    #[test]
    fn kmsg_records_and_echo_policy() {
        let mut sys = FakeSys::new();
        sys.add("/dev/kmsg", Node::Char);
        let kmsg = sys.open("/dev/kmsg", Open::Write).unwrap();
        let mut log = Logger::default();
        // quiet: console_loglevel 4, so info (6) is not printed by the kernel -> echoed.
        log.attach_kmsg(kmsg, Some(4));
        log.log(&mut sys, Level::Info, "copied 10%");
        log.log(&mut sys, Level::Err, "write failed");
        assert_eq!(sys.kmsg, vec!["<6>rkdump: copied 10%", "<3>rkdump: write failed"]);
        assert_eq!(sys.console, "rkdump: copied 10%\n");
    }

    #[test]
    fn console_loglevel_parsing() {
        assert_eq!(parse_console_loglevel("4\t4\t1\t7\n"), Some(4));
        assert_eq!(parse_console_loglevel(""), None);
    }
}
