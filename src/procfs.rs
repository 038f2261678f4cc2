//! Reading `/proc` and `/sys` under a configurable root, so every source runs on fixture trees.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Opens kernel files relative to a root directory (`/` on a real system).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Procfs {
    root: PathBuf,
}

impl Procfs {
    /// Files are read under `root`; `Procfs::new("/")` reads the live system.
    pub fn new(root: impl Into<PathBuf>) -> Procfs {
        Procfs { root: root.into() }
    }

    /// The full path of `rel` (such as `proc/stat`, with no leading slash) under the root.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel.trim_start_matches('/'))
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Reads the file `rel` into `buf`, replacing its contents; the buffer is reused between
    /// collections so a steady source allocates nothing.
    pub fn read_into(&self, rel: &str, buf: &mut String) -> Result<(), ReadError> {
        buf.clear();
        let path = self.path(rel);
        match File::open(&path).and_then(|mut f| f.read_to_string(buf)) {
            Ok(_) => Ok(()),
            Err(source) => Err(ReadError { path, source }),
        }
    }
}

/// A file that could not be read: which, and why.
#[derive(Debug)]
pub struct ReadError {
    /// The full path, under the root.
    pub path: PathBuf,
    /// What opening or reading it answered.
    pub source: io::Error,
}

impl ReadError {
    /// The kind of the underlying error (`NotFound` for a file this kernel does not have).
    pub fn kind(&self) -> io::ErrorKind {
        self.source.kind()
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.source)
    }
}

impl std::error::Error for ReadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Splits `key: value unit` lines (as in `/proc/meminfo` and `/proc/PID/status`) and returns the
/// first number after `key`, or `None` when the key is absent.
pub fn field_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        rest.split_ascii_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keyed_values() {
        let text = "MemTotal:  1000 kB\nMemFree:    200 kB\nThreads:\t7\n";
        assert_eq!(field_value(text, "MemFree"), Some(200));
        assert_eq!(field_value(text, "Threads"), Some(7));
        assert_eq!(field_value(text, "Mem"), None);
        assert_eq!(field_value(text, "Swap"), None);
    }

    #[test]
    fn errors_name_the_path() {
        let p = Procfs::new("/nonexistent-root");
        let mut buf = String::new();
        let e = p.read_into("proc/stat", &mut buf).unwrap_err();
        assert!(
            e.to_string().starts_with("/nonexistent-root/proc/stat: "),
            "{e}"
        );
    }
}
