//! Reading `/proc` and `/sys` under a configurable root, so every source runs on fixture trees.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

mod kept;
mod mounts;
mod pids;

pub use kept::KeptFiles;
pub use mounts::MountTable;
pub use pids::PidFiles;

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
    /// collections so a steady source allocates nothing. The file is opened, read and closed; a
    /// source reading the same files at every collection keeps them open with [`KeptFiles`].
    pub fn read_into(&self, rel: &str, buf: &mut String) -> Result<(), ReadError> {
        let path = self.path(rel);
        match File::open(&path).and_then(|f| read_from_start(&f, buf)) {
            Ok(()) => Ok(()),
            Err(source) => Err(ReadError { path, source }),
        }
    }
}

/// Opens `rel` under `procfs` and reads it into `buf`: the file, to be read again from its start
/// ([`KeptFiles`], [`MountTable`]).
fn open_reading(procfs: &Procfs, rel: &str, buf: &mut String) -> Result<File, ReadError> {
    let path = procfs.path(rel);
    File::open(&path)
        .and_then(|f| read_from_start(&f, buf).map(|()| f))
        .map_err(|source| ReadError { path, source })
}

/// Reads `file` from offset 0 to its end into `buf`, replacing its contents, with `pread` alone:
/// no size query first, and the same descriptor can be read again later, since the kernel makes
/// its `/proc` and `/sys` files anew on a read at offset 0. On an error, text that is not UTF-8
/// (`InvalidData`) among them, `buf` is left empty.
pub fn read_from_start(file: &File, buf: &mut String) -> io::Result<()> {
    buf.clear();
    SCRATCH.with_borrow_mut(|scratch| {
        let len = read_all_at(file, scratch)?;
        let text = std::str::from_utf8(&scratch[..len]).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "stream did not contain valid UTF-8",
            )
        })?;
        buf.push_str(text);
        if scratch.len() > SCRATCH_KEPT {
            *scratch = Vec::new();
        }
        Ok(())
    })
}

/// The least room a read is given: most `/proc` files fit, so one read and the one that finds
/// the end are all it takes.
const READ_ROOM: usize = 4096;

/// The largest scratch buffer a thread keeps between reads; one grown beyond it for a larger
/// file is given back at once.
const SCRATCH_KEPT: usize = 256 * 1024;

thread_local! {
    /// Where each thread reads before the text is checked and copied out: kept zeroed to its
    /// length, so that a read zeroes only what the buffer grows by, not its whole room every
    /// time (a `/proc/PID/stat` of 300 bytes would otherwise zero 8 KiB per process).
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Reads `file` from offset 0 until a read returns nothing, into the start of `bytes`, growing it
/// as needed; how many bytes were read.
fn read_all_at(file: &File, bytes: &mut Vec<u8>) -> io::Result<usize> {
    let mut len = 0;
    loop {
        if bytes.len() - len < READ_ROOM {
            bytes.resize(bytes.len() + READ_ROOM.max(len), 0);
        }
        match file.read_at(&mut bytes[len..], len as u64) {
            Ok(0) => return Ok(len),
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
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
    fn a_read_that_fails_leaves_the_buffer_empty() {
        let p = Procfs::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/openwrt"
        ));
        let mut buf = String::from("old");
        // A directory opens, and then refuses a read (EISDIR).
        let e = p.read_into("proc", &mut buf).unwrap_err();
        assert_eq!(e.source.raw_os_error(), Some(libc::EISDIR), "{e}");
        assert_eq!(buf, "");
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
