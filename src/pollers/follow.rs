//! Following a growing log file by name, the way `tail -F` does: through rotation (the name now
//! points at another inode: the old file is read to its end, then the new one from its start) and
//! truncation (the file shrank below what was read: read again from the start).

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The longest line handed on; longer lines are cut there (the rest is dropped).
pub const MAX_LINE: usize = 16 * 1024;

/// The most bytes read per [`Follower::read`], so a huge backlog is worked off over several ticks
/// rather than in one long one.
pub const MAX_READ: u64 = 4 * 1024 * 1024;

/// An open file and how far it was read.
#[derive(Debug)]
struct Open {
    file: File,
    id: (u64, u64),
    offset: u64,
}

/// Follows the file at one path.
#[derive(Debug)]
pub struct Follower {
    path: PathBuf,
    open: Option<Open>,
    /// Read from the start of the file found at the first look, rather than its end.
    from_start: bool,
    /// Whether the file was looked for once: files found later are always read from the start.
    looked: bool,
    /// The start of a line whose end has not been written yet.
    partial: Vec<u8>,
    /// True while the rest of an over-long line is being skipped.
    skipping: bool,
}

impl Follower {
    /// A follower of `path`; the first [`Follower::read`] starts at the end of the file as it is
    /// then, or at its start with `from_start`.
    pub fn new(path: &Path, from_start: bool) -> Follower {
        Follower {
            path: path.to_owned(),
            open: None,
            from_start,
            looked: false,
            partial: Vec::new(),
            skipping: false,
        }
    }

    /// The path followed.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads what was written since the last call and hands each complete line (without its
    /// newline, invalid UTF-8 replaced) to `line`. A missing file is not an error: it is
    /// followed once it appears.
    pub fn read(&mut self, line: &mut dyn FnMut(&str)) -> io::Result<()> {
        let first = !self.looked;
        self.looked = true;
        let now = match fs::metadata(&self.path) {
            Ok(meta) => Some((meta.dev(), meta.ino())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let mut budget = MAX_READ;
        if let Some(open) = &self.open {
            if now != Some(open.id) {
                // Rotated or removed: what was written to the old file before is still read.
                self.drain(&mut budget, line)?;
                self.flush_partial(line);
                self.open = None;
            }
        }
        if self.open.is_none() {
            let Some(id) = now else {
                return Ok(());
            };
            let mut file = File::open(&self.path)?;
            let offset = if first && !self.from_start {
                file.seek(SeekFrom::End(0))?
            } else {
                0
            };
            self.open = Some(Open { file, id, offset });
        }
        self.drain(&mut budget, line)
    }

    /// Reads the open file from its offset to its end (or until `budget` runs out).
    fn drain(&mut self, budget: &mut u64, line: &mut dyn FnMut(&str)) -> io::Result<()> {
        let Some(open) = &mut self.open else {
            return Ok(());
        };
        let size = open.file.metadata()?.len();
        if size < open.offset {
            // Truncated in place: start over.
            open.offset = 0;
            self.partial.clear();
            self.skipping = false;
        }
        open.file.seek(SeekFrom::Start(open.offset))?;
        let mut chunk = vec![0u8; 64 * 1024];
        while *budget > 0 {
            let want = chunk.len().min(*budget as usize);
            let n = match open.file.read(&mut chunk[..want]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            open.offset += n as u64;
            *budget -= n as u64;
            split(&chunk[..n], &mut self.partial, &mut self.skipping, line);
        }
        Ok(())
    }

    /// Hands on the unfinished last line of a file that will not grow any more.
    fn flush_partial(&mut self, line: &mut dyn FnMut(&str)) {
        if !self.partial.is_empty() {
            line(&String::from_utf8_lossy(&self.partial));
            self.partial.clear();
        }
        self.skipping = false;
    }
}

/// Splits `bytes` into lines, carrying an unfinished line over in `partial`; a line longer than
/// [`MAX_LINE`] is cut there and the rest of it skipped (`skipping`). Public for the fuzz target.
pub fn split(bytes: &[u8], partial: &mut Vec<u8>, skipping: &mut bool, line: &mut dyn FnMut(&str)) {
    let mut rest = bytes;
    while let Some(end) = rest.iter().position(|&b| b == b'\n') {
        if !*skipping {
            let whole = if partial.is_empty() {
                // The usual case: the line lies within this read; no copy.
                &rest[..end.min(MAX_LINE)]
            } else {
                take(partial, &rest[..end]);
                partial.as_slice()
            };
            let text = whole.strip_suffix(b"\r").unwrap_or(whole);
            line(&String::from_utf8_lossy(text));
        }
        partial.clear();
        *skipping = false;
        rest = &rest[end + 1..];
    }
    if !*skipping {
        take(partial, rest);
        if partial.len() >= MAX_LINE {
            // Hand on what fits now; drop the rest of this line as it comes.
            line(&String::from_utf8_lossy(partial));
            partial.clear();
            *skipping = true;
        }
    }
}

fn take(partial: &mut Vec<u8>, bytes: &[u8]) {
    let room = MAX_LINE.saturating_sub(partial.len());
    partial.extend_from_slice(&bytes[..bytes.len().min(room)]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(chunks: &[&[u8]]) -> Vec<String> {
        let mut out = Vec::new();
        let (mut partial, mut skipping) = (Vec::new(), false);
        for c in chunks {
            split(c, &mut partial, &mut skipping, &mut |l| {
                out.push(l.to_owned())
            });
        }
        out
    }

    #[test]
    fn lines_are_joined_across_reads() {
        assert_eq!(
            lines(&[b"one\ntw", b"o\r\nthr", b"ee", b"\n"]),
            vec!["one", "two", "three"]
        );
        assert_eq!(lines(&[b"no end yet"]), Vec::<String>::new());
    }

    #[test]
    fn long_lines_are_cut() {
        let long = vec![b'x'; MAX_LINE + 100];
        let out = lines(&[&long, b"\nnext\n"]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].len(), MAX_LINE);
        assert_eq!(out[1], "next");
    }
}
