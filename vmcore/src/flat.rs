//! Flattened dump streams (makedumpfile `-F`; FORMATS.md §2): reading and unflattening.
//!
//! A flattened stream is a 4096-byte start header ("makedumpfile", type 1, version 1, all
//! big-endian) followed by records `{i64 offset; i64 size}` + payload, each one positioned
//! write of the real dump, and an end marker (-1, -1). Two ways to use one:
//!
//! - [`unflatten`] (makedumpfile `-R`): replay the records from any `Read` into a file;
//! - [`FlatFile`]: random access to a flattened file without rewriting it — an index of
//!   non-overlapping extents (a later record wins, like `-R`), unwritten gaps read as zeros.
//!   [`crate::diskdump::DiskDump`] reads kdump-compressed dumps through it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// First bytes of a flattened stream.
pub const FLAT_SIGNATURE: &[u8] = b"makedumpfile";
/// Size of the start header.
pub const FLAT_HEADER_SIZE: usize = 4096;
/// Size of a record header.
pub const FLAT_RECORD_HEADER: usize = 16;
/// Largest record payload accepted when reading (writers emit at most a few MiB per record);
/// bounds the buffer `unflatten` allocates for untrusted input.
const MAX_RECORD: i64 = 64 << 20;

/// Errors reading flattened streams.
#[derive(Debug, thiserror::Error)]
pub enum FlatError {
    /// I/O error.
    #[error("{what} of {path} failed")]
    Io {
        /// Operation.
        what: &'static str,
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Not a flattened stream.
    #[error("{path} is not a flattened dump: {why}")]
    NotFlat {
        /// File.
        path: PathBuf,
        /// Which check failed.
        why: String,
    },
    /// A record is invalid or the stream ends early.
    #[error("{path}: {why} (stream offset {at:#x})")]
    Corrupt {
        /// File.
        path: PathBuf,
        /// Where in the stream.
        at: u64,
        /// What.
        why: String,
    },
}

/// Build the start header.
pub fn start_header() -> [u8; FLAT_HEADER_SIZE] {
    let mut h = [0u8; FLAT_HEADER_SIZE];
    h[..FLAT_SIGNATURE.len()].copy_from_slice(FLAT_SIGNATURE);
    h[16..24].copy_from_slice(&1i64.to_be_bytes());
    h[24..32].copy_from_slice(&1i64.to_be_bytes());
    h
}

fn check_header(h: &[u8], path: &Path) -> Result<(), FlatError> {
    let not = |why: &str| FlatError::NotFlat { path: path.to_path_buf(), why: why.to_string() };
    if h.len() < 32 || &h[..12] != FLAT_SIGNATURE || h[12..16] != [0; 4] {
        return Err(not("no \"makedumpfile\" signature"));
    }
    let mut a = [0u8; 8];
    a.copy_from_slice(&h[16..24]);
    if i64::from_be_bytes(a) != 1 {
        return Err(not("type is not 1"));
    }
    a.copy_from_slice(&h[24..32]);
    if i64::from_be_bytes(a) != 1 {
        return Err(not("version is not 1"));
    }
    Ok(())
}

/// Parse a record header: `Ok(None)` for the end marker.
fn record(h: &[u8; 16], at: u64, path: &Path) -> Result<Option<(u64, u64)>, FlatError> {
    let mut a = [0u8; 8];
    a.copy_from_slice(&h[..8]);
    let off = i64::from_be_bytes(a);
    a.copy_from_slice(&h[8..]);
    let size = i64::from_be_bytes(a);
    if off == -1 && size == -1 {
        return Ok(None);
    }
    if off < 0 || size <= 0 || size > MAX_RECORD || off.checked_add(size).is_none() {
        return Err(FlatError::Corrupt {
            path: path.to_path_buf(),
            at,
            why: format!("invalid record (offset {off}, size {size})"),
        });
    }
    Ok(Some((off as u64, size as u64)))
}

/// Bytes of `struct disk_dump_header` that stay the same however often a stream rewrites it:
/// signature, header_version, utsname and the crash time (`status`, which follows, changes).
const KDUMP_HEADER_IDENTITY: usize = 424;

/// Checks that every record writing a kdump-compressed header at offset 0 writes the same dump's
/// header. A stream replayed from a raw device whose capture stopped early can run on into the
/// tail of an earlier dump left on the device; where a record boundary happens to line up,
/// that tail's records (its pages, its final header without the incomplete flag) would be
/// spliced in. The earlier dump's header names another crash time, which stops it here.
#[derive(Default)]
struct SameDump(Option<Vec<u8>>);

impl SameDump {
    fn check(&mut self, off: u64, payload: &[u8], at: u64, path: &Path) -> Result<(), FlatError> {
        if off != 0 || payload.len() < KDUMP_HEADER_IDENTITY || !payload.starts_with(b"KDUMP   ") {
            return Ok(());
        }
        let id = &payload[..KDUMP_HEADER_IDENTITY];
        match &self.0 {
            None => self.0 = Some(id.to_vec()),
            Some(first) if first.as_slice() != id => {
                return Err(FlatError::Corrupt {
                    path: path.to_path_buf(),
                    at,
                    why: "the stream holds records of two dumps (the kdump header is rewritten with another \
                          kernel or crash time): the capture stopped early and the rest is an earlier dump's"
                        .into(),
                })
            }
            Some(_) => {}
        }
        Ok(())
    }
}

fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// makedumpfile `-R`: replay the flattened stream `input` into `out` (positioned writes; the
/// file is extended to the end of the last record). Returns the size of the dump.
pub fn unflatten(input: &mut dyn Read, out: &File, name: &Path) -> Result<u64, FlatError> {
    let io = |what: &'static str| move |source| FlatError::Io { what, path: name.to_path_buf(), source };
    let mut h = vec![0u8; FLAT_HEADER_SIZE];
    let n = read_full(input, &mut h).map_err(io("read"))?;
    check_header(&h[..n], name)?;
    let mut at = FLAT_HEADER_SIZE as u64;
    let mut end = 0u64;
    let mut buf = Vec::new();
    let mut same = SameDump::default();
    loop {
        let mut rh = [0u8; 16];
        let n = read_full(input, &mut rh).map_err(io("read"))?;
        if n < 16 {
            return Err(FlatError::Corrupt {
                path: name.to_path_buf(),
                at,
                why: "stream ends without the end marker (incomplete dump)".into(),
            });
        }
        let Some((off, size)) = record(&rh, at, name)? else {
            break;
        };
        buf.resize(size as usize, 0);
        let n = read_full(input, &mut buf).map_err(io("read"))?;
        if n < buf.len() {
            return Err(FlatError::Corrupt {
                path: name.to_path_buf(),
                at,
                why: format!("record of {size} bytes is cut short after {n}"),
            });
        }
        same.check(off, &buf, at, name)?;
        out.write_all_at(&buf, off).map_err(io("write"))?;
        end = end.max(off + size);
        at += 16 + size;
    }
    if out.metadata().map_err(io("stat"))?.len() < end {
        out.set_len(end).map_err(io("truncate"))?;
    }
    Ok(end)
}

/// A flattened file opened for random access.
pub struct FlatFile {
    path: PathBuf,
    file: File,
    /// start -> (end, file offset of `start`'s byte), non-overlapping.
    extents: BTreeMap<u64, (u64, u64)>,
    size: u64,
}

impl FlatFile {
    /// Scan the records of `path` and build the extent index.
    pub fn open(path: &Path) -> Result<FlatFile, FlatError> {
        let io = |what: &'static str| move |source| FlatError::Io { what, path: path.to_path_buf(), source };
        let file = File::open(path).map_err(io("open"))?;
        let len = file.metadata().map_err(io("stat"))?.len();
        let mut h = vec![0u8; FLAT_HEADER_SIZE.min(len as usize)];
        file.read_exact_at(&mut h, 0).map_err(io("read"))?;
        check_header(&h, path)?;
        let mut at = FLAT_HEADER_SIZE as u64;
        let mut extents: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
        let mut size = 0u64;
        let mut same = SameDump::default();
        loop {
            let mut rh = [0u8; 16];
            if at + 16 > len {
                return Err(FlatError::Corrupt {
                    path: path.to_path_buf(),
                    at,
                    why: "file ends without the end marker (incomplete dump)".into(),
                });
            }
            file.read_exact_at(&mut rh, at).map_err(io("read"))?;
            let Some((off, sz)) = record(&rh, at, path)? else {
                break;
            };
            let payload = at + 16;
            if payload + sz > len {
                return Err(FlatError::Corrupt {
                    path: path.to_path_buf(),
                    at,
                    why: format!("record of {sz} bytes runs past the end of the file"),
                });
            }
            if off == 0 {
                let mut head = vec![0u8; sz.min(KDUMP_HEADER_IDENTITY as u64) as usize];
                file.read_exact_at(&mut head, payload).map_err(io("read"))?;
                same.check(off, &head, at, path)?;
            }
            insert_extent(&mut extents, off, off + sz, payload);
            size = size.max(off + sz);
            at = payload + sz;
        }
        Ok(FlatFile { path: path.to_path_buf(), file, extents, size })
    }

    /// Size of the dump the records describe.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The flattened file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Read dump bytes at `off`; unwritten ranges read as zeros, beyond the end is an error.
    pub fn read_at(&self, buf: &mut [u8], off: u64) -> std::io::Result<()> {
        let end = off
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= self.size)
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "read past the end of the dump"))?;
        buf.fill(0);
        // The extent containing `off`, then every extent starting before `end`.
        let first = self.extents.range(..=off).next_back().map(|(&s, _)| s).unwrap_or(off);
        for (&s, &(e, foff)) in self.extents.range(first..end) {
            let a = s.max(off);
            let b = e.min(end);
            if a >= b {
                continue;
            }
            let dst = &mut buf[(a - off) as usize..(b - off) as usize];
            self.file.read_exact_at(dst, foff + (a - s))?;
        }
        Ok(())
    }
}

/// Insert `[s, e)` stored at file offset `f`, trimming what it overlaps (later wins).
fn insert_extent(map: &mut BTreeMap<u64, (u64, u64)>, s: u64, e: u64, f: u64) {
    // An extent starting before `s` that reaches into it.
    if let Some((&ps, &(pe, pf))) = map.range(..s).next_back() {
        if pe > s {
            map.insert(ps, (s, pf));
            if pe > e {
                map.insert(e, (pe, pf + (e - ps)));
            }
        }
    }
    // Extents starting inside `[s, e)`.
    let inside: Vec<u64> = map.range(s..e).map(|(&k, _)| k).collect();
    for k in inside {
        if let Some((ie, iff)) = map.remove(&k) {
            if ie > e {
                map.insert(e, (ie, iff + (e - k)));
            }
        }
    }
    map.insert(s, (e, f));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extents_later_record_wins() {
        let mut m = BTreeMap::new();
        insert_extent(&mut m, 0, 100, 1000);
        insert_extent(&mut m, 50, 60, 5000);
        insert_extent(&mut m, 90, 120, 7000);
        let v: Vec<_> = m.iter().map(|(&s, &(e, f))| (s, e, f)).collect();
        assert_eq!(v, vec![(0, 50, 1000), (50, 60, 5000), (60, 90, 1060), (90, 120, 7000)]);
        insert_extent(&mut m, 0, 200, 9000);
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn bad_streams_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        let out = File::create(dir.path().join("o")).unwrap();
        assert!(unflatten(&mut &b"not flat"[..], &out, &p).is_err());
        let mut s = start_header().to_vec();
        // Missing end marker.
        assert!(unflatten(&mut &s[..], &out, &p).is_err());
        // Zero-length record.
        s.extend_from_slice(&0i64.to_be_bytes());
        s.extend_from_slice(&0i64.to_be_bytes());
        assert!(unflatten(&mut &s[..], &out, &p).is_err());
        // A good stream with two records, the second overwriting the first partly.
        let mut s = start_header().to_vec();
        for (off, data) in [(10i64, &b"hello"[..]), (12, &b"XY"[..])] {
            s.extend_from_slice(&off.to_be_bytes());
            s.extend_from_slice(&(data.len() as i64).to_be_bytes());
            s.extend_from_slice(data);
        }
        s.extend_from_slice(&[0xff; 16]);
        let op = dir.path().join("o2");
        let out = File::options().create(true).truncate(true).read(true).write(true).open(&op).unwrap();
        assert_eq!(unflatten(&mut &s[..], &out, &p).unwrap(), 15);
        let got = std::fs::read(&op).unwrap();
        assert_eq!(&got[10..], b"heXYo");
        assert_eq!(&got[..10], &[0u8; 10]);
        std::fs::write(&p, &s).unwrap();
        let ff = FlatFile::open(&p).unwrap();
        let mut b = [1u8; 15];
        ff.read_at(&mut b, 0).unwrap();
        assert_eq!(&b[..], &got[..]);
        assert!(ff.read_at(&mut b, 1).is_err());
    }

    /// A kdump header block as a record payload: `tv_sec` at byte 408, `status` at 424.
    fn kdump_header(tv_sec: i64, status: i32) -> Vec<u8> {
        let mut h = vec![0u8; 4096];
        h[..8].copy_from_slice(b"KDUMP   ");
        h[8..12].copy_from_slice(&6i32.to_le_bytes());
        h[408..416].copy_from_slice(&tv_sec.to_le_bytes());
        h[424..428].copy_from_slice(&status.to_le_bytes());
        h
    }

    fn stream_of(records: &[(i64, Vec<u8>)]) -> Vec<u8> {
        let mut s = start_header().to_vec();
        for (off, data) in records {
            s.extend_from_slice(&off.to_be_bytes());
            s.extend_from_slice(&(data.len() as i64).to_be_bytes());
            s.extend_from_slice(data);
        }
        s.extend_from_slice(&[0xff; 16]);
        s
    }

    #[test]
    fn a_stream_running_into_an_earlier_dump_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("flat");
        let out = |n: &str| File::options().create(true).truncate(true).read(true).write(true).open(dir.path().join(n));
        // One dump: its header written incomplete first, then rewritten complete. Fine.
        let one = stream_of(&[(0, kdump_header(1000, 1 << 3)), (4096, vec![7; 100]), (0, kdump_header(1000, 0))]);
        assert_eq!(unflatten(&mut &one[..], &out("a").unwrap(), &p).unwrap(), 4196);
        std::fs::write(&p, &one).unwrap();
        assert!(FlatFile::open(&p).is_ok());
        // The new capture's records, then an earlier crash's: its final header has another time.
        let spliced = stream_of(&[(0, kdump_header(2000, 1 << 3)), (4096, vec![7; 100]), (0, kdump_header(1000, 0))]);
        let e = unflatten(&mut &spliced[..], &out("b").unwrap(), &p).unwrap_err().to_string();
        assert!(e.contains("records of two dumps"), "{e}");
        std::fs::write(&p, &spliced).unwrap();
        let e = FlatFile::open(&p).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("records of two dumps"), "{e}");
    }
}
