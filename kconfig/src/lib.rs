//! rkdump-kconfig: read a kernel `.config` (`/boot/config-R`, `/proc/config.gz` unpacked) and
//! answer questions about it.
//!
//! Pipeline: [`Kconfig::load`] / [`Kconfig::parse`] -> a map `CONFIG_X -> value` ->
//! [`Kconfig::is_enabled`] (`y` or `m`), [`Kconfig::is_builtin`] (`y`), [`Kconfig::value`]
//! (the raw value, quotes removed for strings).
//!
//! Format facts (scripts/kconfig/confdata.c): one `CONFIG_NAME=value` per line; `value` is `y`,
//! `m`, a number (decimal or `0x` hex) or a double-quoted string with `\"` and `\\` escapes;
//! an unset boolean is written as the comment `# CONFIG_NAME is not set`; other comments and
//! blank lines carry no information.
//!
//! Names may be given with or without the `CONFIG_` prefix.
//!
//! [`checks`]: the options kdump needs (`rkdump check`); [`estimate`]: the `crashkernel=` a
//! capture needs (`rkdump estimate`); [`fragment`]: a minimal capture-kernel `.config` fragment
//! (`rkdump kernel-config`).

pub mod checks;
pub mod estimate;
pub mod fragment;

/// Tests: the files of /boot named `prefix...` on this machine (none where there is no /boot).
#[cfg(test)]
pub(crate) fn boot_files(prefix: &str) -> Vec<(String, PathBuf)> {
    let Ok(rd) = std::fs::read_dir("/boot") else {
        return Vec::new();
    };
    rd.flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .filter(|(name, _)| name.starts_with(prefix))
        .collect()
}

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why a kernel config could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KconfigError {
    /// The file could not be read.
    #[error("cannot read kernel config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A line is neither a comment nor `CONFIG_X=value`.
    #[error("kernel config {origin} line {line}: not a CONFIG_ assignment: {text:?}")]
    BadLine {
        /// File name (or `<memory>`).
        origin: String,
        /// 1-based line number.
        line: usize,
        /// The offending line.
        text: String,
    },
}

/// One option's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `=y`
    Yes,
    /// `=m`
    Module,
    /// `# CONFIG_X is not set`
    NotSet,
    /// Anything else (numbers, hex); strings are unquoted and unescaped.
    Other(String),
}

/// A parsed kernel configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Kconfig {
    values: BTreeMap<String, Value>,
}

fn full_name(name: &str) -> String {
    if name.starts_with("CONFIG_") {
        name.to_string()
    } else {
        format!("CONFIG_{name}")
    }
}

fn unquote(v: &str) -> String {
    let Some(inner) = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')) else {
        return v.to_string();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Kconfig {
    /// Reads and parses a `.config` file.
    pub fn load(path: &Path) -> Result<Self, KconfigError> {
        let text = std::fs::read(path).map_err(|source| KconfigError::Read { path: path.to_path_buf(), source })?;
        Self::parse_named(&String::from_utf8_lossy(&text), &path.display().to_string())
    }

    /// Parses `.config` text.
    pub fn parse(text: &str) -> Result<Self, KconfigError> {
        Self::parse_named(text, "<memory>")
    }

    fn parse_named(text: &str, origin: &str) -> Result<Self, KconfigError> {
        let mut values = BTreeMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            if let Some(comment) = line.strip_prefix('#') {
                if let Some(name) = comment.trim().strip_suffix(" is not set").filter(|n| n.starts_with("CONFIG_")) {
                    values.insert(name.trim().to_string(), Value::NotSet);
                }
                continue;
            }
            let bad = || KconfigError::BadLine { origin: origin.to_string(), line: i + 1, text: raw.to_string() };
            let (name, value) = line.split_once('=').ok_or_else(bad)?;
            if !name.starts_with("CONFIG_") || name.len() == "CONFIG_".len() {
                return Err(bad());
            }
            let v = match value {
                "y" => Value::Yes,
                "m" => Value::Module,
                "n" => Value::NotSet,
                other => Value::Other(unquote(other)),
            };
            values.insert(name.to_string(), v);
        }
        Ok(Kconfig { values })
    }

    /// The option's value, `None` when the option does not appear at all.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(&full_name(name))
    }

    /// `true` for `=y` and `=m`.
    pub fn is_enabled(&self, name: &str) -> bool {
        matches!(self.get(name), Some(Value::Yes | Value::Module))
    }

    /// `true` for `=y` only (built into the kernel image).
    pub fn is_builtin(&self, name: &str) -> bool {
        matches!(self.get(name), Some(Value::Yes))
    }

    /// `true` for `=m` only.
    pub fn is_module(&self, name: &str) -> bool {
        matches!(self.get(name), Some(Value::Module))
    }

    /// The value as text (`"y"`, `"m"`, numbers, unquoted strings); `None` when absent or
    /// not set.
    pub fn value(&self, name: &str) -> Option<String> {
        match self.get(name)? {
            Value::Yes => Some("y".into()),
            Value::Module => Some("m".into()),
            Value::NotSet => None,
            Value::Other(s) => Some(s.clone()),
        }
    }

    /// A numeric value (decimal or `0x` hex).
    pub fn number(&self, name: &str) -> Option<u64> {
        let v = self.value(name)?;
        match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => v.parse().ok(),
        }
    }

    /// Number of options recorded (set or explicitly not set).
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// `true` when no option was recorded.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "#\n# Automatically generated file; DO NOT EDIT.\n\
        CONFIG_CC_VERSION_TEXT=\"gcc (Debian 12.2.0-14) 12.2.0 \\\"x\\\"\"\n\
        CONFIG_RD_GZIP=y\n# CONFIG_RD_ZSTD is not set\nCONFIG_EXT4_FS=m\n\
        CONFIG_PHYSICAL_START=0x1000000\nCONFIG_NR_CPUS=512\n\n";

    #[test]
    fn values_and_classes() {
        let k = Kconfig::parse(SAMPLE).unwrap();
        assert!(k.is_enabled("CONFIG_RD_GZIP"));
        assert!(k.is_builtin("RD_GZIP"));
        assert!(!k.is_enabled("CONFIG_RD_ZSTD"));
        assert_eq!(k.get("CONFIG_RD_ZSTD"), Some(&Value::NotSet));
        assert_eq!(k.get("CONFIG_RD_XZ"), None);
        assert!(k.is_enabled("CONFIG_EXT4_FS"));
        assert!(k.is_module("CONFIG_EXT4_FS"));
        assert!(!k.is_builtin("CONFIG_EXT4_FS"));
        assert_eq!(k.value("CONFIG_CC_VERSION_TEXT").unwrap(), "gcc (Debian 12.2.0-14) 12.2.0 \"x\"");
        assert_eq!(k.number("CONFIG_PHYSICAL_START"), Some(0x100_0000));
        assert_eq!(k.number("CONFIG_NR_CPUS"), Some(512));
        assert_eq!(k.value("CONFIG_RD_ZSTD"), None);
        assert_eq!(k.len(), 6);
    }

    #[test]
    fn bad_line_names_line_number() {
        let err = Kconfig::parse("CONFIG_A=y\nhello\n").unwrap_err();
        assert!(matches!(err, KconfigError::BadLine { line: 2, .. }), "{err}");
        assert!(err.to_string().contains("line 2"));
        assert!(Kconfig::parse("FOO=y\n").is_err());
    }

    #[test]
    fn load_file_and_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config-test");
        std::fs::write(&p, SAMPLE).unwrap();
        let k = Kconfig::load(&p).unwrap();
        assert!(k.is_enabled("RD_GZIP"));
        let err = Kconfig::load(&dir.path().join("nope")).unwrap_err();
        assert!(err.to_string().contains("nope"));
    }

    #[test]
    fn installed_debian_config_when_present() {
        let configs = boot_files("config-");
        for (name, path) in &configs {
            let k = Kconfig::load(path).unwrap();
            assert!(k.is_enabled("CONFIG_BLOCK"), "{name}");
            assert!(k.len() > 1000, "{name}");
        }
        if configs.is_empty() {
            eprintln!("skipped: no /boot/config-* on this machine");
        }
    }
}
