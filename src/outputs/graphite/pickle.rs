//! Carbon's pickle protocol: frames of a 4-byte big-endian length, then a protocol-2 pickle of a
//! list of `(path, (timestamp, value))` tuples.
//!
//! Only that one shape is written, with these opcodes: `PROTO 2`, `EMPTY_LIST`, `MARK`, `APPENDS`
//! and `STOP` for the list; `BINUNICODE` for the path (UTF-8); `TUPLE2` for both tuples; `BININT`
//! for whole numbers that fit a signed 32-bit integer and `LONG1` for the others (timestamps past
//! 2038, large counters); `BINFLOAT` for floats; `BINPUT` and `BINGET` for timestamps. The datapoints
//! of one collection share their timestamp: a timestamp that differs from the one before is put in
//! the frame's memo (the first 256 of a frame), and the datapoints after it that share it get it
//! from there, 2 bytes instead of 5 or more. The memo is the frame's own, as each frame is
//! unpickled on its own.

use super::cursor::{put, put_bytes};
use crate::event::Metric;

/// Carbon drops the connection on a frame longer than this, in bytes (its
/// `PICKLE_RECEIVER_MAX_LENGTH`, 1 MiB).
pub const MAX_FRAME: usize = 1 << 20;

/// Most datapoints in one frame: carbon's own relay sends at most this many per message.
pub const MAX_DATAPOINTS: usize = 500;

/// Most timestamps put in one frame's memo: `BINPUT` and `BINGET` take a 1-byte index.
const MEMO_SLOTS: usize = 256;

const PROTO: u8 = 0x80;
const EMPTY_LIST: u8 = b']';
const MARK: u8 = b'(';
const APPENDS: u8 = b'e';
const STOP: u8 = b'.';
const BINUNICODE: u8 = b'X';
const BININT: u8 = b'J';
const LONG1: u8 = 0x8a;
const BINFLOAT: u8 = b'G';
const TUPLE2: u8 = 0x86;
const BINPUT: u8 = b'q';
const BINGET: u8 = b'h';

/// The frame header before the first entry: length (written when the frame ends), `PROTO 2`,
/// `EMPTY_LIST`, `MARK`.
const HEAD: [u8; 8] = [0, 0, 0, 0, PROTO, 2, EMPTY_LIST, MARK];

/// The most bytes of an entry besides its path: `BINUNICODE` and the length (5), the timestamp
/// as `LONG1` (10) and `BINPUT` (2), the value as `LONG1` (10), two `TUPLE2` (2).
const ENTRY_MAX: usize = 29;

/// Frames of datapoints, encoded into a buffer of their own: datapoints go into the open frame,
/// and a new frame starts when the open one holds [`MAX_DATAPOINTS`] or the next would take it
/// past [`MAX_FRAME`].
///
/// The buffer is initialised up to its size (zero-filled when it grows) and reused from batch to
/// batch, so that an entry is written in place, piece by piece, without a copy through a scratch
/// entry.
#[derive(Debug, Default)]
pub struct Frames {
    /// The encoded frames in `buf[..len]`; the rest is room for the next entries.
    buf: Vec<u8>,
    len: usize,
    /// Offset of the open frame's length field; meaningful while `count > 0`.
    start: usize,
    /// Datapoints in the open frame; 0 when none is open.
    count: usize,
    /// The timestamp last put in the open frame's memo, and its index.
    memo: Option<(i64, u8)>,
    /// Memo slots the open frame used.
    puts: usize,
}

impl Frames {
    /// Empties the frames, keeping their memory.
    pub fn clear(&mut self) {
        self.len = 0;
        self.count = 0;
    }

    /// The encoded frames (all of them closed after [`end`](Self::end)).
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Appends one datapoint whose path was checked (see [`super::datapoint::check_path`]).
    // The release build optimises for size, which leaves even tiny helpers as calls; forced inline,
    // the fixed-size writes of each entry become plain moves (benches/graphite_throughput.rs).
    #[inline(always)]
    pub fn push(&mut self, path: &str, value: Metric, timestamp: i64) {
        if self.count == MAX_DATAPOINTS {
            self.end();
        }
        if self.count == 0 {
            self.begin();
        }
        let entry = self.len;
        self.reserve(path.len() + ENTRY_MAX);
        self.len = self.put_entry(path, value, timestamp);
        // The open frame must still close (APPENDS, STOP) within the limit; if it would not, the
        // entry goes again into a frame of its own (written again, as the memo is the frame's).
        if self.len + 2 - (self.start + 4) > MAX_FRAME && self.count > 0 {
            self.len = entry;
            self.end();
            self.begin();
            self.reserve(path.len() + ENTRY_MAX);
            self.len = self.put_entry(path, value, timestamp);
        }
        self.count += 1;
    }

    /// Closes the open frame, if any, and writes its length.
    pub fn end(&mut self) {
        if self.count == 0 {
            return;
        }
        self.reserve(2);
        self.buf[self.len] = APPENDS;
        self.buf[self.len + 1] = STOP;
        self.len += 2;
        let len = (self.len - self.start - 4) as u32;
        self.buf[self.start..self.start + 4].copy_from_slice(&len.to_be_bytes());
        self.count = 0;
    }

    fn begin(&mut self) {
        self.reserve(HEAD.len());
        self.start = self.len;
        self.buf[self.len..self.len + HEAD.len()].copy_from_slice(&HEAD);
        self.len += HEAD.len();
        self.memo = None;
        self.puts = 0;
    }

    /// Makes room for `n` more bytes after `len`.
    #[inline(always)]
    fn reserve(&mut self, n: usize) {
        if self.buf.len() - self.len < n {
            self.grow(n);
        }
    }

    #[cold]
    fn grow(&mut self, n: usize) {
        let size = (self.len + n).max(2 * self.buf.len()).max(512);
        self.buf.resize(size, 0);
    }

    /// Writes the entry at `len` (room reserved) and returns where it ends.
    #[inline(always)]
    fn put_entry(&mut self, path: &str, value: Metric, timestamp: i64) -> usize {
        let memo = self.memo;
        let room = self.buf.len() - self.len;
        let Some((_, mut out)) = self.buf.split_at_mut_checked(self.len) else {
            unreachable!("the entry starts within the buffer");
        };
        // A checked path is far below 4 GiB.
        let [a, b, c, d] = (path.len() as u32).to_le_bytes();
        put(&mut out, [BINUNICODE, a, b, c, d]);
        put_bytes(&mut out, path.as_bytes());
        match memo {
            Some((stamp, index)) if stamp == timestamp => put(&mut out, [BINGET, index]),
            _ => {
                put_int(&mut out, timestamp);
                if self.puts < MEMO_SLOTS {
                    let index = self.puts as u8;
                    put(&mut out, [BINPUT, index]);
                    self.memo = Some((timestamp, index));
                    self.puts += 1;
                }
            }
        }
        match value {
            Metric::Int(v) => put_int(&mut out, v),
            Metric::Float(v) => {
                let [a, b, c, d, e, f, g, h] = v.to_be_bytes();
                put(&mut out, [BINFLOAT, a, b, c, d, e, f, g, h]);
            }
        }
        put(&mut out, [TUPLE2, TUPLE2]);
        self.len + room - out.len()
    }
}

/// Writes `v` at the cursor: `BININT` (signed 32-bit, little-endian) when it fits, else `LONG1`, a
/// length byte and the shortest little-endian two's-complement form.
#[inline(always)]
fn put_int(out: &mut &mut [u8], v: i64) {
    if let Ok(small) = i32::try_from(v) {
        let [a, b, c, d] = small.to_le_bytes();
        put(out, [BININT, a, b, c, d]);
        return;
    }
    let bytes = v.to_le_bytes();
    let mut len = bytes.len();
    // Drop sign-extension bytes while the byte below still carries the sign.
    while len > 1 {
        let (top, below) = (bytes[len - 1], bytes[len - 2]);
        if (top == 0 && below & 0x80 == 0) || (top == 0xff && below & 0x80 != 0) {
            len -= 1;
        } else {
            break;
        }
    }
    put(out, [LONG1, len as u8]);
    let Some((dst, rest)) = std::mem::take(out).split_at_mut_checked(len) else {
        unreachable!("room for the entry was reserved");
    };
    dst.copy_from_slice(&bytes[..len]);
    *out = rest;
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::process::{Command, Stdio};

    use super::*;
    use crate::outputs::graphite::datapoint::check_path;

    fn frames<P: AsRef<str>>(points: &[(P, Metric, i64)]) -> Vec<u8> {
        let mut f = Frames::default();
        for (path, value, ts) in points {
            f.push(path.as_ref(), *value, *ts);
        }
        f.end();
        f.bytes().to_vec()
    }

    /// Datapoints `m.<i>` of value and timestamp `i`, for `i` in `0..n`.
    fn numbered(n: i64) -> Vec<(String, Metric, i64)> {
        (0..n)
            .map(|i| (format!("m.{i}"), Metric::Int(i), i))
            .collect()
    }

    /// Each frame's length and its unpickled list, in Python's `repr`, by Python's own `pickle`,
    /// after `pickletools.dis` found the frame well formed (each memo slot put once, before use).
    fn python_loads(bytes: &[u8]) -> String {
        let script = "import io, pickle, pickletools, struct, sys\n\
            data = sys.stdin.buffer.read()\n\
            while data:\n\
            \x20   (n,) = struct.unpack('!L', data[:4])\n\
            \x20   pickletools.dis(data[4:4 + n], out=io.StringIO())\n\
            \x20   print(n, repr(pickle.loads(data[4:4 + n])))\n\
            \x20   data = data[4 + n:]\n";
        let python = ["/usr/bin/python3", "python3"]
            .into_iter()
            .find(|p| Command::new(p).arg("-c").arg("1").output().is_ok());
        let mut child = Command::new(python.expect("python3 is needed to check pickles"))
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(bytes).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn python_reads_what_it_writes() {
        let bytes = frames(&[
            ("a.b", Metric::Float(1.5), 1_700_000_000),
            ("ünï.cøde", Metric::Int(-7), 0),
            ("far.future", Metric::Float(-0.25), 1 << 31),
            ("y2106", Metric::Int(1 << 40), 4_294_967_296),
            ("neg", Metric::Int(i64::MIN), i64::MAX),
            (
                "edge",
                Metric::Int(i64::from(i32::MIN)),
                i64::from(i32::MAX),
            ),
            ("edge2", Metric::Int(i64::from(i32::MIN) - 1), 128),
        ]);
        let text = python_loads(&bytes);
        let list = text.split_once(' ').unwrap().1.trim();
        assert_eq!(
            list,
            "[('a.b', (1700000000, 1.5)), ('ünï.cøde', (0, -7)), ('far.future', (2147483648, -0.25)), \
             ('y2106', (4294967296, 1099511627776)), ('neg', (9223372036854775807, -9223372036854775808)), \
             ('edge', (2147483647, -2147483648)), ('edge2', (128, -2147483649))]"
        );
    }

    #[test]
    fn paths_of_every_length_around_the_copy_sizes_are_whole() {
        let paths: Vec<String> = (1..=70)
            .chain([127, 128, 129, 300])
            .map(|n| (0..n).map(|i| char::from(b'a' + (i % 26) as u8)).collect())
            .collect();
        let points: Vec<(&str, Metric, i64)> = paths
            .iter()
            .map(|p| (p.as_str(), Metric::Int(i64::MIN), i64::MAX))
            .collect();
        let text = python_loads(&frames(&points));
        for p in &paths {
            assert!(
                text.contains(&format!(
                    "('{p}', (9223372036854775807, -9223372036854775808))"
                )),
                "{}",
                p.len()
            );
        }
    }

    #[test]
    fn a_shared_timestamp_is_written_once_per_frame() {
        let points: Vec<(String, Metric, i64)> = (0..700)
            .map(|i| {
                (
                    format!("m.{i:03}"),
                    Metric::Float(0.5),
                    1_700_000_000 + i / 600,
                )
            })
            .collect();
        let bytes = frames(&points);
        // Each entry: BINUNICODE and length (5), the path (5), BINFLOAT (9), two TUPLE2 (2), and
        // the timestamp: BINGET (2), or where a frame starts or the timestamp changes, BININT and
        // BINPUT (7): twice in the second frame.
        let entry = 5 + 5 + 9 + 2 + 2;
        assert_eq!(bytes.len(), 2 * (HEAD.len() + 2) + 700 * entry + 3 * 5);
        let text = python_loads(&bytes);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].matches(", (1700000000, 0.5))").count(), 500);
        assert_eq!(lines[1].matches(", (1700000000, 0.5))").count(), 100);
        assert_eq!(lines[1].matches(", (1700000001, 0.5))").count(), 100);
    }

    #[test]
    fn more_timestamps_than_memo_slots_are_written_whole() {
        let points = numbered(500);
        let bytes = frames(&points);
        let parsed = entries(&bytes[4..]).unwrap();
        // BINUNICODE and length, BININT timestamp and value, two TUPLE2; BINPUT adds 2.
        let put = parsed
            .iter()
            .filter(|(p, _, _, n)| *n == 5 + p.len() + 5 + 5 + 2 + 2)
            .count();
        assert_eq!(put, MEMO_SLOTS);
        let read: Vec<(i64, Metric)> = parsed.iter().map(|(_, t, v, _)| (*t, *v)).collect();
        let sent: Vec<(i64, Metric)> = (0..500).map(|i| (i, Metric::Int(i))).collect();
        assert_eq!(read, sent);
        let text = python_loads(&bytes);
        assert!(text.contains("('m.0', (0, 0)), ('m.1', (1, 1))"));
        assert!(text.ends_with("('m.499', (499, 499))]\n"), "{text}");
    }

    #[test]
    fn frames_hold_at_most_500_datapoints() {
        let points = numbered(1201);
        let text = python_loads(&frames(&points));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].matches("('m.").count(), 500);
        assert_eq!(lines[2].matches("('m.").count(), 201);
        assert!(lines[2].ends_with("('m.1200', (1200, 1200))]"));
    }

    #[test]
    fn frames_stay_under_one_mebibyte() {
        let long = "p".repeat(16_000);
        let mut f = Frames::default();
        // Pairs share a timestamp, and some pairs straddle two frames.
        for i in 0..200 {
            f.push(&long, Metric::Int(i), i / 2);
        }
        f.end();
        let out = f.bytes();
        let mut at = 0;
        let mut sizes = Vec::new();
        while at < out.len() {
            let n = u32::from_be_bytes(out[at..at + 4].try_into().unwrap()) as usize;
            assert!(n <= MAX_FRAME);
            sizes.push(n);
            at += 4 + n;
        }
        assert_eq!(at, out.len());
        assert_eq!(sizes.len(), 4, "{sizes:?}");
        let text = python_loads(out);
        for i in 0..200 {
            assert_eq!(text.matches(&format!("', ({}, {i}))", i / 2)).count(), 1);
        }
    }

    /// The entries of one frame's pickle, as (path, timestamp, value, bytes the entry took), or
    /// `None` if it is not the one shape [`Frames`] writes.
    fn entries(frame: &[u8]) -> Option<Vec<(String, i64, Metric, usize)>> {
        fn int(b: &[u8], at: &mut usize) -> Option<i64> {
            match *b.get(*at)? {
                BININT => {
                    let v = i32::from_le_bytes(b.get(*at + 1..*at + 5)?.try_into().ok()?);
                    *at += 5;
                    Some(i64::from(v))
                }
                LONG1 => {
                    let n = usize::from(*b.get(*at + 1)?);
                    let bytes = b.get(*at + 2..*at + 2 + n)?;
                    let fill = if bytes.last()? & 0x80 != 0 { 0xff } else { 0 };
                    let mut full = [fill; 8];
                    full[..n].copy_from_slice(bytes);
                    *at += 2 + n;
                    Some(i64::from_le_bytes(full))
                }
                _ => None,
            }
        }
        let body = frame
            .strip_prefix(&[PROTO, 2, EMPTY_LIST, MARK])?
            .strip_suffix(&[APPENDS, STOP])?;
        let mut out = Vec::new();
        let mut memo = std::collections::HashMap::new();
        let mut at = 0;
        while at < body.len() {
            let start = at;
            (body[at] == BINUNICODE).then_some(())?;
            let n = u32::from_le_bytes(body.get(at + 1..at + 5)?.try_into().ok()?) as usize;
            let path = std::str::from_utf8(body.get(at + 5..at + 5 + n)?)
                .ok()?
                .to_owned();
            at += 5 + n;
            let ts = if body.get(at) == Some(&BINGET) {
                at += 2;
                *memo.get(body.get(at - 1)?)?
            } else {
                let ts = int(body, &mut at)?;
                if body.get(at) == Some(&BINPUT) {
                    // Each slot is put once, as Python's pickletools requires.
                    memo.insert(*body.get(at + 1)?, ts)
                        .is_none()
                        .then_some(())?;
                    at += 2;
                }
                ts
            };
            let value = if body.get(at) == Some(&BINFLOAT) {
                let v = f64::from_be_bytes(body.get(at + 1..at + 9)?.try_into().ok()?);
                at += 9;
                Metric::Float(v)
            } else {
                Metric::Int(int(body, &mut at)?)
            };
            (body.get(at..at + 2)? == [TUPLE2, TUPLE2]).then_some(())?;
            at += 2;
            out.push((path, ts, value, at - start));
        }
        Some(out)
    }

    /// Property: for any batch, the frames hold every datapoint once and in order; each frame's
    /// pickle is at most [`MAX_FRAME`] bytes and [`MAX_DATAPOINTS`] datapoints, and a frame ends
    /// early only when the next datapoint would not have fit.
    #[test]
    fn any_batch_splits_into_full_frames_under_the_limit() {
        fn prop(points: Vec<(u16, String, i64, i64, bool)>, repeat: u8) -> bool {
            let mut batch = Vec::new();
            for _ in 0..=repeat % 8 {
                for (len, name, ts, v, float) in &points {
                    let path = crate::outputs::graphite::test_path(*len, name);
                    let value = if *float {
                        Metric::Float(*v as f64 / 3.0)
                    } else {
                        Metric::Int(*v)
                    };
                    assert_eq!(check_path(&path), Ok(()));
                    batch.push((path, *ts, value));
                }
            }
            let mut f = Frames::default();
            for (path, ts, value) in &batch {
                f.push(path, *value, *ts);
            }
            f.end();
            let out = f.bytes();
            let mut frames = Vec::new();
            let mut at = 0;
            while at < out.len() {
                let Some(head) = out.get(at..at + 4) else {
                    return false;
                };
                let n = u32::from_be_bytes(head.try_into().unwrap()) as usize;
                let Some(parsed) = out.get(at + 4..at + 4 + n).and_then(entries) else {
                    return false;
                };
                if n > MAX_FRAME || parsed.is_empty() || parsed.len() > MAX_DATAPOINTS {
                    return false;
                }
                frames.push((n, parsed));
                at += 4 + n;
            }
            let full = frames.windows(2).all(|w| {
                let ((n, this), next) = (&w[0], &w[1].1);
                this.len() == MAX_DATAPOINTS || n + next[0].3 > MAX_FRAME
            });
            let read: Vec<(&str, i64, Metric)> = frames
                .iter()
                .flat_map(|(_, e)| e.iter().map(|(p, ts, v, _)| (p.as_str(), *ts, *v)))
                .collect();
            let sent: Vec<(&str, i64, Metric)> = batch
                .iter()
                .map(|(p, ts, v)| (p.as_str(), *ts, *v))
                .collect();
            full && read == sent
        }
        quickcheck::QuickCheck::new()
            .tests(40)
            .quickcheck(prop as fn(Vec<(u16, String, i64, i64, bool)>, u8) -> bool);
    }
}
