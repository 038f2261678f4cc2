//! Reading a child's output pipes with a size cap: what is over the cap is read and discarded
//! (so the child never blocks on a full pipe) and flagged.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};

/// Bytes a child wrote to one pipe, up to a cap.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    /// What was kept, at most the cap.
    pub bytes: Vec<u8>,
    /// True when the child wrote more than the cap and the rest was discarded.
    pub truncated: bool,
}

/// One output pipe of a child being read.
#[derive(Debug)]
pub struct Pipe {
    file: Option<File>,
}

impl Pipe {
    /// Reads `file` (the read end of a pipe).
    pub fn new(file: Option<File>) -> Pipe {
        Pipe { file }
    }

    /// The descriptor to poll, while the pipe is open.
    pub fn fd(&self) -> Option<RawFd> {
        self.file.as_ref().map(|f| f.as_raw_fd())
    }

    /// True once the child's end is closed and everything was read (or the pipe was dropped).
    pub fn is_closed(&self) -> bool {
        self.file.is_none()
    }

    /// Reads once, after poll said the pipe is ready, so the read does not block. Returns the
    /// bytes read (empty at end of file, which closes the pipe).
    pub fn read_ready<'b>(&mut self, scratch: &'b mut [u8]) -> &'b [u8] {
        let Some(file) = &mut self.file else {
            return &[];
        };
        match file.read(scratch) {
            Ok(0) => {
                self.file = None;
                &[]
            }
            Ok(n) => &scratch[..n],
            Err(e)
                if e.kind() == io::ErrorKind::Interrupted
                    || e.kind() == io::ErrorKind::WouldBlock =>
            {
                &[]
            }
            Err(_) => {
                self.file = None;
                &[]
            }
        }
    }

    /// Stops reading; the child gets SIGPIPE or EPIPE if it writes again.
    pub fn close(&mut self) {
        self.file = None;
    }
}

impl Captured {
    /// Appends `bytes`, keeping at most `cap` in all.
    pub fn push(&mut self, bytes: &[u8], cap: usize) {
        let room = cap.saturating_sub(self.bytes.len());
        if bytes.len() > room {
            self.truncated = true;
        }
        self.bytes
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

/// Cuts a stream of bytes into lines of at most `cap` bytes each; the rest of a longer line is
/// discarded and the line flagged.
#[derive(Debug)]
pub struct Lines {
    partial: Captured,
    cap: usize,
}

impl Lines {
    /// A splitter whose lines hold at most `cap` bytes.
    pub fn new(cap: usize) -> Lines {
        Lines {
            partial: Captured::default(),
            cap,
        }
    }

    /// Feeds `bytes`, calling `line` with each complete line (without its newline).
    pub fn feed(&mut self, mut bytes: &[u8], mut line: impl FnMut(Captured)) {
        while let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            self.partial.push(&bytes[..end], self.cap);
            line(std::mem::take(&mut self.partial));
            bytes = &bytes[end + 1..];
        }
        self.partial.push(bytes, self.cap);
    }

    /// The last line, if the stream ended without a newline.
    pub fn finish(&mut self) -> Option<Captured> {
        let rest = std::mem::take(&mut self.partial);
        (!rest.bytes.is_empty() || rest.truncated).then_some(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_at_most_the_cap_and_flags_the_rest() {
        let mut c = Captured::default();
        c.push(b"hello ", 8);
        assert!(!c.truncated);
        c.push(b"world", 8);
        assert_eq!(c.bytes, b"hello wo");
        assert!(c.truncated);
        c.push(b"more", 8);
        assert_eq!(c.bytes.len(), 8);
    }

    #[test]
    fn splits_lines_across_reads_and_cuts_long_ones() {
        let mut lines = Lines::new(4);
        let mut out = Vec::new();
        lines.feed(b"a 1\nb 2", |l| out.push(l));
        lines.feed(b"2\nlonger line\n\nc", |l| out.push(l));
        let rest = lines.finish();
        assert_eq!(
            out[0],
            Captured {
                bytes: b"a 1".to_vec(),
                truncated: false
            }
        );
        assert_eq!(
            out[1],
            Captured {
                bytes: b"b 22".to_vec(),
                truncated: false
            }
        );
        assert_eq!(
            out[2],
            Captured {
                bytes: b"long".to_vec(),
                truncated: true
            }
        );
        assert_eq!(out[3], Captured::default());
        assert_eq!(
            rest,
            Some(Captured {
                bytes: b"c".to_vec(),
                truncated: false
            })
        );
        assert_eq!(lines.finish(), None);
    }
}
