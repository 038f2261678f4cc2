//! Reading a child's output pipes with a size cap: what is over the cap is read and discarded
//! (so the child never blocks on a full pipe) and flagged.
//!
//! Discarding is paced: a pipe whose bytes are being thrown away is read at most once per
//! [`DISCARD_PACE`], so a child printing without end (`cat /dev/zero`) waits on its full pipe
//! instead of costing pipit a core.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

/// The least time between two reads of a pipe whose bytes are being discarded. With reads of
/// 16 KiB that drains up to 800 KB/s, for a few microseconds of work each time (a check that
/// prints a megabyte over its cap ends about a second later than it would unpaced).
pub const DISCARD_PACE: Duration = Duration::from_millis(20);

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
    /// While set and ahead, the pipe is not read: what it holds would only be discarded.
    resting_until: Option<Instant>,
}

impl Pipe {
    /// Reads `file` (the read end of a pipe).
    pub fn new(file: File) -> Pipe {
        Pipe {
            file: Some(file),
            resting_until: None,
        }
    }

    /// The descriptor, while the pipe is open.
    pub fn fd(&self) -> Option<RawFd> {
        self.file.as_ref().map(|f| f.as_raw_fd())
    }

    /// The descriptor to poll at `now`: none while the pipe rests (see [`Pipe::rest`]).
    pub fn fd_to_poll(&self, now: Instant) -> Option<RawFd> {
        match self.resting_until {
            Some(until) if until > now => None,
            _ => self.fd(),
        }
    }

    /// When a resting pipe is to be polled again.
    pub fn resting_until(&self, now: Instant) -> Option<Instant> {
        self.resting_until
            .filter(|&until| until > now && self.file.is_some())
    }

    /// Paces the reads of a pipe whose bytes are being discarded: not read again before
    /// [`DISCARD_PACE`] has passed. With `discarding` false, it is read as soon as it has data.
    pub fn rest(&mut self, discarding: bool, now: Instant) {
        self.resting_until = discarding.then(|| now + DISCARD_PACE);
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

/// Cuts a stream of bytes into lines of at most `cap` bytes each. A longer line is handed on,
/// cut and flagged, as soon as it passes the cap (a line that never ends is not waited for), and
/// the rest of it, up to its newline, is discarded.
#[derive(Debug)]
pub struct Lines {
    partial: Captured,
    cap: usize,
    /// True from the cut of a long line to its newline.
    discarding: bool,
}

impl Lines {
    /// A splitter whose lines hold at most `cap` bytes.
    pub fn new(cap: usize) -> Lines {
        Lines {
            partial: Captured::default(),
            cap,
            discarding: false,
        }
    }

    /// Feeds `bytes`, calling `line` with each complete line (without its newline) and with each
    /// long line as soon as it is cut.
    pub fn feed(&mut self, mut bytes: &[u8], mut line: impl FnMut(Captured)) {
        while !bytes.is_empty() {
            let end = bytes.iter().position(|&b| b == b'\n');
            if !self.discarding {
                self.partial
                    .push(&bytes[..end.unwrap_or(bytes.len())], self.cap);
                if self.partial.truncated {
                    line(std::mem::take(&mut self.partial));
                    self.discarding = true;
                }
            }
            let Some(end) = end else {
                return;
            };
            if !self.discarding {
                line(std::mem::take(&mut self.partial));
            }
            self.discarding = false;
            bytes = &bytes[end + 1..];
        }
    }

    /// True while the rest of a cut line is being discarded.
    pub fn is_discarding(&self) -> bool {
        self.discarding
    }

    /// The last line, if the stream ended without a newline (and it was not already handed on
    /// cut).
    pub fn finish(&mut self) -> Option<Captured> {
        self.discarding = false;
        let rest = std::mem::take(&mut self.partial);
        (!rest.bytes.is_empty()).then_some(rest)
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

    #[test]
    fn a_line_without_end_is_handed_on_cut_once_and_the_rest_discarded() {
        let mut lines = Lines::new(4);
        let mut out = Vec::new();
        lines.feed(b"zero", |l| out.push(l));
        assert!(out.is_empty(), "at the cap, not over it");
        lines.feed(b"s", |l| out.push(l));
        assert_eq!(
            out,
            [Captured {
                bytes: b"zero".to_vec(),
                truncated: true
            }]
        );
        assert!(lines.is_discarding());
        for _ in 0..1000 {
            lines.feed(&[0; 4096], |l| out.push(l));
        }
        assert_eq!(out.len(), 1, "the rest of the line is not a line");
        lines.feed(b"s\nok\n", |l| out.push(l));
        assert!(!lines.is_discarding());
        assert_eq!(out[1].bytes, b"ok");
        assert_eq!(lines.finish(), None);
    }

    #[test]
    fn a_discarded_pipe_rests_between_reads() {
        let (reader, _writer) = std::io::pipe().unwrap();
        let mut pipe = Pipe::new(File::from(std::os::fd::OwnedFd::from(reader)));
        let now = Instant::now();
        assert!(pipe.fd_to_poll(now).is_some());
        pipe.rest(true, now);
        assert_eq!(pipe.fd_to_poll(now), None);
        assert_eq!(pipe.resting_until(now), Some(now + DISCARD_PACE));
        assert!(pipe.fd_to_poll(now + DISCARD_PACE).is_some());
        pipe.rest(false, now);
        assert!(pipe.fd_to_poll(now).is_some());
        assert_eq!(pipe.resting_until(now), None);
    }
}
