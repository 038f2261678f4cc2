//! Carbon's pickle protocol: frames of a 4-byte big-endian length, then a protocol-2 pickle of a
//! list of `(path, (timestamp, value))` tuples.
//!
//! Only that one shape is written, with these opcodes: `PROTO 2`, `EMPTY_LIST`, `MARK`, `APPENDS`
//! and `STOP` for the list; `BINUNICODE` for the path (UTF-8); `TUPLE2` for both tuples; `BININT`
//! for whole numbers that fit a signed 32-bit integer and `LONG1` for the others (timestamps past
//! 2038, large counters); `BINFLOAT` for floats. No memo, so no state spans datapoints.

use crate::event::Metric;

/// Carbon drops the connection on a frame longer than this, in bytes (its
/// `PICKLE_RECEIVER_MAX_LENGTH`, 1 MiB).
pub const MAX_FRAME: usize = 1 << 20;

/// Most datapoints in one frame: carbon's own relay sends at most this many per message.
pub const MAX_DATAPOINTS: usize = 500;

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

/// The frames being written into one buffer: datapoints go into the open frame, and a new frame
/// starts when the open one holds [`MAX_DATAPOINTS`] or the next would take it past [`MAX_FRAME`].
#[derive(Debug, Default)]
pub struct Frames {
    /// Offset of the open frame's length field; meaningful while `count > 0`.
    start: usize,
    /// Datapoints in the open frame; 0 when none is open.
    count: usize,
}

impl Frames {
    /// Appends one datapoint whose path was checked (see [`super::datapoint::check_path`]).
    // The release build optimises for size, which leaves even tiny helpers as calls; forced inline,
    // the fixed-size copies of each entry become plain moves: about 28 ns per datapoint down to 18
    // (benches/graphite_throughput.rs).
    #[inline(always)]
    pub fn push(&mut self, out: &mut Vec<u8>, path: &str, value: Metric, timestamp: i64) {
        if self.count == MAX_DATAPOINTS {
            self.end(out);
        }
        if self.count == 0 {
            self.begin(out);
        }
        let entry = out.len();
        push_entry(out, path, value, timestamp);
        // The open frame must still close (APPENDS, STOP) within the limit.
        if out.len() + 2 - (self.start + 4) > MAX_FRAME && self.count > 0 {
            let moved = out.split_off(entry);
            self.end(out);
            self.begin(out);
            out.extend_from_slice(&moved);
        }
        self.count += 1;
    }

    /// Closes the open frame, if any, and writes its length.
    pub fn end(&mut self, out: &mut Vec<u8>) {
        if self.count == 0 {
            return;
        }
        out.push(APPENDS);
        out.push(STOP);
        let len = (out.len() - self.start - 4) as u32;
        out[self.start..self.start + 4].copy_from_slice(&len.to_be_bytes());
        self.count = 0;
    }

    fn begin(&mut self, out: &mut Vec<u8>) {
        self.start = out.len();
        out.extend_from_slice(&[0, 0, 0, 0, PROTO, 2, EMPTY_LIST, MARK]);
    }
}

#[inline(always)]
fn push_entry(out: &mut Vec<u8>, path: &str, value: Metric, timestamp: i64) {
    // The entry is built in a small buffer and copied in one go; a long path is copied on its own.
    let mut entry = [0u8; 128];
    let inline = path.len() <= entry.len() - 5 - TAIL_MAX;
    entry[0] = BINUNICODE;
    // A checked path is far below 4 GiB.
    entry[1..5].copy_from_slice(&(path.len() as u32).to_le_bytes());
    let mut n = 5;
    if inline {
        entry[5..5 + path.len()].copy_from_slice(path.as_bytes());
        n += path.len();
    } else {
        out.extend_from_slice(&entry[..5]);
        out.extend_from_slice(path.as_bytes());
        n = 0;
    }
    n = put_int(&mut entry, n, timestamp);
    n = match value {
        Metric::Int(v) => put_int(&mut entry, n, v),
        Metric::Float(v) => {
            entry[n] = BINFLOAT;
            entry[n + 1..n + 9].copy_from_slice(&v.to_be_bytes());
            n + 9
        }
    };
    entry[n] = TUPLE2;
    entry[n + 1] = TUPLE2;
    out.extend_from_slice(&entry[..n + 2]);
}

/// The most bytes after the path: two `LONG1` integers of 10 bytes and two `TUPLE2`.
const TAIL_MAX: usize = 22;

/// Writes `v` at `at`, returning the end: `BININT` (signed 32-bit, little-endian) when it fits,
/// else `LONG1`, a length byte and the shortest little-endian two's-complement form.
#[inline(always)]
fn put_int(buf: &mut [u8; 128], at: usize, v: i64) -> usize {
    if let Ok(small) = i32::try_from(v) {
        buf[at] = BININT;
        buf[at + 1..at + 5].copy_from_slice(&small.to_le_bytes());
        return at + 5;
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
    buf[at] = LONG1;
    buf[at + 1] = len as u8;
    buf[at + 2..at + 2 + len].copy_from_slice(&bytes[..len]);
    at + 2 + len
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::process::{Command, Stdio};

    use super::*;
    use crate::outputs::graphite::datapoint::{MAX_PATH, check_path};

    fn frames(points: &[(&str, Metric, i64)]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut f = Frames::default();
        for &(path, value, ts) in points {
            f.push(&mut out, path, value, ts);
        }
        f.end(&mut out);
        out
    }

    /// Each frame's length and its unpickled list, in Python's `repr`, by Python's own `pickle`.
    fn python_loads(bytes: &[u8]) -> String {
        let script = "import pickle, struct, sys\n\
            data = sys.stdin.buffer.read()\n\
            while data:\n\
            \x20   (n,) = struct.unpack('!L', data[:4])\n\
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
    fn paths_around_the_entry_buffer_size_are_whole() {
        let paths: Vec<String> = (90..=112).map(|n| "q".repeat(n)).collect();
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
    fn frames_hold_at_most_500_datapoints() {
        let points: Vec<(String, Metric, i64)> = (0..1201)
            .map(|i| (format!("m.{i}"), Metric::Int(i), i))
            .collect();
        let refs: Vec<(&str, Metric, i64)> = points
            .iter()
            .map(|(p, v, t)| (p.as_str(), *v, *t))
            .collect();
        let text = python_loads(&frames(&refs));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].matches("('m.").count(), 500);
        assert_eq!(lines[2].matches("('m.").count(), 201);
        assert!(lines[2].ends_with("('m.1200', (1200, 1200))]"));
    }

    #[test]
    fn frames_stay_under_one_mebibyte() {
        let long = "p".repeat(16_000);
        let mut out = Vec::new();
        let mut f = Frames::default();
        for i in 0..200 {
            f.push(&mut out, &long, Metric::Int(i), i);
        }
        f.end(&mut out);
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
        let text = python_loads(&out);
        assert_eq!(text.matches("pppp', (").count(), 200);
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
        let mut at = 0;
        while at < body.len() {
            let start = at;
            (body[at] == BINUNICODE).then_some(())?;
            let n = u32::from_le_bytes(body.get(at + 1..at + 5)?.try_into().ok()?) as usize;
            let path = std::str::from_utf8(body.get(at + 5..at + 5 + n)?)
                .ok()?
                .to_owned();
            at += 5 + n;
            let ts = int(body, &mut at)?;
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
                    let name: String = name
                        .chars()
                        .filter(|c| !c.is_whitespace() && !c.is_control())
                        .collect();
                    let mut path = format!("{}.{name}", "p".repeat(usize::from(*len) % MAX_PATH));
                    while path.len() > MAX_PATH {
                        path.pop();
                    }
                    let value = if *float {
                        Metric::Float(*v as f64 / 3.0)
                    } else {
                        Metric::Int(*v)
                    };
                    assert_eq!(check_path(&path), Ok(()));
                    batch.push((path, *ts, value));
                }
            }
            let mut out = Vec::new();
            let mut f = Frames::default();
            for (path, ts, value) in &batch {
                f.push(&mut out, path, *value, *ts);
            }
            f.end(&mut out);
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
