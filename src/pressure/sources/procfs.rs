//! Shared plumbing of the file-backed sources: a file kept open and re-read from offset 0
//! on every sample, and the parse error of every hand-written parser.
//!
//! procfs, sysfs and cgroupfs files are generated on `read`, so a descriptor opened once
//! returns fresh contents after a seek to 0. Re-reading an open descriptor costs about
//! 2.5 µs here against 6.5 µs for open + read, and the buffer is reused, so a steady-state
//! sample allocates nothing.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Largest file we are willing to buffer (`memory.stat` is about 1-2 KiB).
const MAX_LEN: usize = 64 * 1024;

#[derive(Debug)]
pub(crate) struct KeptFile {
    path: PathBuf,
    file: File,
    buf: Vec<u8>,
}

impl KeptFile {
    /// Opens `path` for re-reading; `None` when it does not exist or cannot be read.
    pub(crate) fn open(path: impl AsRef<Path>) -> Option<KeptFile> {
        let path = path.as_ref();
        let mut kept = KeptFile {
            path: path.to_path_buf(),
            file: File::open(path).ok()?,
            buf: Vec::with_capacity(512),
        };
        // A file that opens but cannot be read (EACCES on read, EOPNOTSUPP) is not available.
        kept.read().ok()?;
        Some(kept)
    }

    /// The path, for logs.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Re-reads the whole file from offset 0.
    pub(crate) fn read(&mut self) -> io::Result<&str> {
        self.file.seek(SeekFrom::Start(0))?;
        self.buf.clear();
        (&mut self.file)
            .take(MAX_LEN as u64)
            .read_to_end(&mut self.buf)?;
        std::str::from_utf8(&self.buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

/// Why a procfs / cgroupfs file could not be parsed. Parsers return it instead of panicking;
/// sources turn it into a NaN reading plus a `tracing` debug event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ParseError {
    /// Which file (or file kind), e.g. `"memory.max"`.
    pub(crate) file: &'static str,
    /// 1-based line number, when the problem is on one line.
    pub(crate) line: Option<usize>,
    /// What is wrong, lowercase.
    pub(crate) reason: &'static str,
}

impl ParseError {
    pub(crate) const fn new(file: &'static str, reason: &'static str) -> ParseError {
        ParseError {
            file,
            line: None,
            reason,
        }
    }

    pub(crate) const fn at(file: &'static str, line: usize, reason: &'static str) -> ParseError {
        ParseError {
            file,
            line: Some(line),
            reason,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(
                f,
                "cannot parse {} line {}: {}",
                self.file, line, self.reason
            ),
            None => write!(f, "cannot parse {}: {}", self.file, self.reason),
        }
    }
}

impl std::error::Error for ParseError {}

/// Parses a decimal `u64` (surrounding whitespace allowed).
pub(crate) fn parse_u64(file: &'static str, s: &str) -> Result<u64, ParseError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(ParseError::new(file, "empty"));
    }
    s.parse::<u64>()
        .map_err(|_| ParseError::new(file, "not an unsigned integer"))
}

/// Looks up `key` in a flat `key value` file (`memory.stat`, `cpu.stat`). `Ok(None)` when the
/// key is absent; an error when the key is present with a bad value. Lines that are not
/// `key value` pairs are an error too: the file is not what we think it is.
pub(crate) fn flat_keyed(
    file: &'static str,
    s: &str,
    key: &str,
) -> Result<Option<u64>, ParseError> {
    for (i, line) in s.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let mut it = line.split_ascii_whitespace();
        let (Some(k), Some(v), None) = (it.next(), it.next(), it.next()) else {
            return Err(ParseError::at(file, i + 1, "expected `key value`"));
        };
        if k == key {
            return v
                .parse::<u64>()
                .map(Some)
                .map_err(|_| ParseError::at(file, i + 1, "value is not an unsigned integer"));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_u64_rejects_garbage() {
        assert_eq!(parse_u64("f", " 42\n"), Ok(42));
        assert!(parse_u64("f", "").is_err());
        assert!(parse_u64("f", "-1").is_err());
        assert!(parse_u64("f", "12abc").is_err());
    }

    #[test]
    fn flat_keyed_finds_keys_and_reports_lines() {
        let s = "cache 10\ninactive_file 20480\n\nactive_file 3\n";
        assert_eq!(
            flat_keyed("memory.stat", s, "inactive_file"),
            Ok(Some(20480))
        );
        assert_eq!(flat_keyed("memory.stat", s, "missing"), Ok(None));
        let e = flat_keyed("memory.stat", "a 1\nbroken\n", "zzz").unwrap_err();
        assert_eq!(e.line, Some(2));
        assert_eq!(
            e.to_string(),
            "cannot parse memory.stat line 2: expected `key value`"
        );
        assert!(flat_keyed("memory.stat", "inactive_file x", "inactive_file").is_err());
    }

    #[test]
    fn kept_file_rereads_fresh_contents() {
        let dir = std::env::temp_dir().join(format!("tp-kept-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("value");
        std::fs::write(&path, "1\n").unwrap();
        let mut f = KeptFile::open(&path).unwrap();
        assert_eq!(f.read().unwrap(), "1\n");
        std::fs::write(&path, "22\n").unwrap();
        assert_eq!(f.read().unwrap(), "22\n");
        assert!(KeptFile::open(dir.join("absent")).is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
