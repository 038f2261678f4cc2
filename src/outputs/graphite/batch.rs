//! A batch of datapoints encoded for one protocol, in the pieces its transport sends: one stream
//! of lines or pickle frames for TCP, datagrams of whole lines for UDP.

use super::client::Protocol;
use super::pickle::Frames;
use super::plaintext::Lines;
use crate::event::Metric;

/// The most bytes in one UDP datagram: an Ethernet frame's payload less the IP and UDP headers,
/// so datagrams are never fragmented. A single longer line goes in a datagram of its own.
pub const MAX_DATAGRAM: usize = 1472;

/// Encoded datapoints, reused from batch to batch.
#[derive(Debug)]
pub struct Batch {
    protocol: Protocol,
    /// The lines (plaintext, UDP); pickle frames are written into `frames`.
    lines: Lines,
    frames: Frames,
    /// End offsets of the datagrams closed so far (UDP only).
    datagram_ends: Vec<usize>,
    datapoints: usize,
}

impl Batch {
    /// An empty batch for `protocol`.
    pub fn new(protocol: Protocol) -> Batch {
        Batch {
            protocol,
            lines: Lines::default(),
            frames: Frames::default(),
            datagram_ends: Vec::new(),
            datapoints: 0,
        }
    }

    /// Empties the batch, keeping its memory.
    pub fn clear(&mut self) {
        self.lines.clear();
        self.frames.clear();
        self.datagram_ends.clear();
        self.datapoints = 0;
    }

    /// Appends a datapoint whose path was checked (see [`super::datapoint::check_path`]).
    // Inline for the same reason as `Frames::push`: this runs once per datapoint.
    #[inline(always)]
    pub fn push(&mut self, path: &str, value: Metric, timestamp: i64) {
        match self.protocol {
            Protocol::Plaintext => self.lines.push(path, value, timestamp),
            Protocol::Udp => {
                let line = self.lines.len();
                self.lines.push(path, value, timestamp);
                let datagram = self.datagram_ends.last().copied().unwrap_or(0);
                if self.lines.len() - datagram > MAX_DATAGRAM && line > datagram {
                    self.datagram_ends.push(line);
                }
            }
            Protocol::Pickle => self.frames.push(path, value, timestamp),
        }
        self.datapoints += 1;
    }

    /// Closes the open pickle frame or datagram; call once after the last push.
    pub fn finish(&mut self) {
        self.frames.end();
        if self.protocol == Protocol::Udp
            && self.datagram_ends.last().copied().unwrap_or(0) < self.lines.len()
        {
            self.datagram_ends.push(self.lines.len());
        }
    }

    /// Datapoints in the batch.
    pub fn len(&self) -> usize {
        self.datapoints
    }

    /// True when the batch holds no datapoint.
    pub fn is_empty(&self) -> bool {
        self.datapoints == 0
    }

    /// All the encoded bytes, as a TCP stream takes them.
    pub fn bytes(&self) -> &[u8] {
        match self.protocol {
            Protocol::Pickle => self.frames.bytes(),
            Protocol::Plaintext | Protocol::Udp => self.lines.bytes(),
        }
    }

    /// The datagrams, for UDP (after [`finish`](Self::finish)).
    pub fn datagrams(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.datagram_ends.iter().copied());
        starts
            .zip(self.datagram_ends.iter().copied())
            .map(|(a, b)| &self.lines.bytes()[a..b])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_that_share_a_timestamp_and_lines_that_do_not() {
        let mut b = Batch::new(Protocol::Plaintext);
        for (path, v, t) in [
            ("a", 1, 1_700_000_000),
            ("b", 2, 1_700_000_000),
            ("c", 3, -5),
        ] {
            b.push(path, Metric::Int(v), t);
        }
        b.push("d", Metric::Float(0.5), -5);
        b.push("e", Metric::Int(-4), 7);
        b.finish();
        assert_eq!(
            std::str::from_utf8(b.bytes()).unwrap(),
            "a 1 1700000000\nb 2 1700000000\nc 3 -5\nd 0.5 -5\ne -4 7\n"
        );
        b.clear();
        b.push("f", Metric::Int(0), 7);
        b.finish();
        assert_eq!(b.bytes(), b"f 0 7\n");
    }

    #[test]
    fn datagrams_hold_whole_lines_under_the_limit() {
        let mut b = Batch::new(Protocol::Udp);
        for i in 0..100 {
            b.push(
                &format!("some.metric.path.{i}"),
                Metric::Int(i),
                1_700_000_000,
            );
        }
        let long = "x".repeat(3000);
        b.push(&long, Metric::Int(1), 1);
        b.push("after.long", Metric::Int(2), 2);
        b.finish();
        let datagrams: Vec<&[u8]> = b.datagrams().collect();
        assert!(datagrams.len() >= 4, "{}", datagrams.len());
        let mut lines = 0;
        for d in &datagrams {
            assert!(d.ends_with(b"\n"));
            assert!(d.len() <= MAX_DATAGRAM || d.iter().filter(|&&c| c == b'\n').count() == 1);
            lines += d.iter().filter(|&&c| c == b'\n').count();
        }
        assert_eq!(lines, 102);
        assert_eq!(datagrams.concat(), b.bytes());
        assert_eq!(b.len(), 102);
    }
}
