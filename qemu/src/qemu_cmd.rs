//! A typed builder for the QEMU command line used by the crash test. Its `Display` is the shell
//! equivalent, written next to the artifacts so a failed run can be repeated by hand.

use std::fmt;
use std::path::Path;
use std::process::Command;

/// `qemu-system-x86_64` arguments for a headless TCG guest that exits instead of rebooting.
#[derive(Debug, Clone)]
pub struct QemuCommand {
    program: String,
    args: Vec<String>,
}

impl QemuCommand {
    pub fn new(program: &str) -> Self {
        let args = [
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
            "-machine",
            "q35",
            "-accel",
            "tcg,thread=multi",
        ];
        QemuCommand { program: program.to_string(), args: args.iter().map(|s| s.to_string()).collect() }
    }

    fn push(&mut self, a: &str, b: impl Into<String>) -> &mut Self {
        self.args.push(a.to_string());
        self.args.push(b.into());
        self
    }

    pub fn memory_mib(&mut self, m: u32) -> &mut Self {
        self.push("-m", format!("{m}M"))
    }
    pub fn smp(&mut self, n: u32) -> &mut Self {
        self.push("-smp", n.to_string())
    }
    pub fn cpu(&mut self, c: &str) -> &mut Self {
        self.push("-cpu", c)
    }
    pub fn kernel(&mut self, p: &Path) -> &mut Self {
        self.push("-kernel", p.display().to_string())
    }
    pub fn initrd(&mut self, p: &Path) -> &mut Self {
        self.push("-initrd", p.display().to_string())
    }
    pub fn append(&mut self, s: &str) -> &mut Self {
        self.push("-append", s)
    }
    pub fn serial_file(&mut self, p: &Path) -> &mut Self {
        self.push("-serial", format!("file:{}", p.display()))
    }
    /// A raw virtio disk. A host-side write or read error (a full host disk under the sparse
    /// image) reaches the guest as an I/O error (`werror=report`) instead of QEMU's default of
    /// pausing the guest, which looked like a hung capture until the timeout. `throttle`
    /// (bytes per second, burst bytes) slows the guest's writes: a slow or stuck device that
    /// first takes the burst at full speed.
    pub fn virtio_disk(&mut self, p: &Path, throttle: Option<(u64, u64)>) -> &mut Self {
        let throttle = match throttle {
            None => String::new(),
            Some((bps, 0)) => format!(",throttling.bps-write={bps}"),
            Some((bps, burst)) => format!(
                ",throttling.bps-write={bps},throttling.bps-write-max={},throttling.bps-write-max-length=1",
                burst.max(bps)
            ),
        };
        self.push(
            "-drive",
            format!("file={},format=raw,if=virtio,cache=unsafe,werror=report,rerror=report{throttle}", p.display()),
        )
    }

    /// The runnable command.
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.args);
        c
    }
}

impl fmt::Display for QemuCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.program)?;
        for a in &self.args {
            if a.chars().all(|c| c.is_ascii_alphanumeric() || "-_=,.:/+".contains(c)) {
                write!(f, " {a}")?;
            } else {
                write!(f, " '{}'", a.replace('\'', "'\\''"))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_arguments_with_spaces() {
        let mut q = QemuCommand::new("qemu-system-x86_64");
        q.memory_mib(2048).append("console=ttyS0 crashkernel=256M");
        let s = q.to_string();
        assert!(s.contains(" -m 2048M "), "{s}");
        assert!(s.ends_with(" -append 'console=ttyS0 crashkernel=256M'"), "{s}");
        assert!(s.contains("-no-reboot"));
    }
}
