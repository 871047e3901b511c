//! Flattened-format sink (makedumpfile `-F`; FORMATS.md §2): every positioned write becomes a
//! record `{offset, size}` (big-endian) + payload on a plain `Write`, after a 4096-byte start
//! header; [`PosWrite::finish`] appends the end marker. Zero-length writes are never emitted.

use std::io::Write;

use super::PosWrite;
use crate::flat::start_header;

/// A [`PosWrite`] over any `Write` (stdout, a pipe, a socket).
pub struct FlatWriter<W: Write> {
    inner: W,
    started: bool,
    end: u64,
}

impl<W: Write> FlatWriter<W> {
    /// Wrap `inner`; the start header is written with the first record.
    pub fn new(inner: W) -> Self {
        FlatWriter { inner, started: false, end: 0 }
    }

    /// Size of the unflattened dump written so far.
    pub fn dump_size(&self) -> u64 {
        self.end
    }

    /// The wrapped writer.
    pub fn into_inner(self) -> W {
        self.inner
    }

    fn start(&mut self) -> std::io::Result<()> {
        if !self.started {
            self.inner.write_all(&start_header())?;
            self.started = true;
        }
        Ok(())
    }
}

impl<W: Write> PosWrite for FlatWriter<W> {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.start()?;
        let off = i64::try_from(offset)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "offset overflow"))?;
        let mut h = [0u8; 16];
        h[..8].copy_from_slice(&off.to_be_bytes());
        h[8..].copy_from_slice(&(data.len() as i64).to_be_bytes());
        self.inner.write_all(&h)?;
        self.inner.write_all(data)?;
        self.end = self.end.max(offset + data.len() as u64);
        Ok(())
    }

    fn can_rewrite(&self) -> bool {
        false
    }

    fn finish(&mut self) -> std::io::Result<()> {
        self.start()?;
        self.inner.write_all(&[0xff; 16])?;
        self.inner.flush()
    }
}
