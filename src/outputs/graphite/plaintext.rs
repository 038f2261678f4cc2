//! Carbon's plaintext protocol: one `path value timestamp\n` line per datapoint.

use std::io::Write;

use super::cursor;
use super::path::{Naming, Unencodable};
use crate::event::{Event, Metric};

/// Carbon drops the connection on a line longer than this, in bytes (newline included).
pub const MAX_LINE: usize = 16_384;

/// Appends the line of one datapoint whose path was checked (see [`super::datapoint::check_path`]).
///
/// Integers are written as they are; floats in a short form that reads back as exactly the same
/// number, with an exponent when very large or small (`1e300`), so a value never takes more than
/// 24 bytes.
pub fn push_line(out: &mut Vec<u8>, path: &str, value: Metric, timestamp: i64) {
    let start = out.len();
    out.resize(start + path.len() + ROOM, 0);
    let end = match out.split_at_mut_checked(start) {
        Some((_, room)) => start + put_line(room, &mut Stamp::default(), path, value, timestamp),
        None => start,
    };
    out.truncate(end);
}

/// Lines of datapoints (see [`push_line`]), written into a buffer of their own.
///
/// The buffer is initialised up to its size (zero-filled when it grows) and reused from batch to
/// batch, so that a line is written in place, piece by piece, and its length set once.
#[derive(Debug, Default)]
pub struct Lines {
    /// The lines in `buf[..len]`; the rest is room for the next ones.
    buf: Vec<u8>,
    len: usize,
    /// The last line's timestamp text, for the next line with the same timestamp.
    stamp: Stamp,
}

impl Lines {
    /// Empties the lines, keeping their memory.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// The lines written.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Bytes of the lines written.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no line was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends the line of one datapoint whose path was checked, as [`push_line`] writes it; the
    /// digits of a timestamp are written once for the lines after it that share it.
    // The release build optimises for size, which leaves even tiny helpers as calls; forced inline,
    // the pieces of each line are written as plain moves (benches/graphite_throughput.rs).
    #[inline(always)]
    pub fn push(&mut self, path: &str, value: Metric, timestamp: i64) {
        let room = path.len() + ROOM;
        if self.buf.len() - self.len < room {
            self.grow(room);
        }
        if let Some((_, out)) = self.buf.split_at_mut_checked(self.len) {
            self.len += put_line(out, &mut self.stamp, path, value, timestamp);
        }
    }

    #[cold]
    fn grow(&mut self, n: usize) {
        let size = (self.len + n).max(2 * self.buf.len()).max(512);
        self.buf.resize(size, 0);
    }
}

/// The end of the last line written, ` <timestamp>\n`, kept for the next line with the same
/// timestamp: the datapoints of one collection share theirs, so a batch writes its digits once.
#[derive(Debug, Clone, Copy, Default)]
struct Stamp {
    timestamp: i64,
    /// Bytes of `text` in use; 0 before the first line.
    len: usize,
    text: [u8; STAMP],
}

/// Room for ` timestamp\n`: a timestamp of at most 20 bytes.
const STAMP: usize = 24;

/// Room a line needs besides its path: the value and its space (at most [`TAIL`]), and the
/// timestamp's text, written as the whole [`STAMP`] array.
const ROOM: usize = TAIL + STAMP;

/// Writes the line at the start of `out`, which has room for it (the path and [`ROOM`]), and
/// returns its length; reuses the timestamp's text from `stamp` when it is the same as the last
/// line's.
#[inline(always)]
fn put_line(out: &mut [u8], stamp: &mut Stamp, path: &str, value: Metric, timestamp: i64) -> usize {
    if stamp.len == 0 || stamp.timestamp != timestamp {
        let mut text = [0u8; TAIL];
        let mut at = put(&mut text, TAIL, b'\n');
        at = put_int(&mut text, at, timestamp);
        at = put(&mut text, at, b' ');
        stamp.len = TAIL - at;
        stamp.text[..stamp.len].copy_from_slice(&text[at..]);
        stamp.timestamp = timestamp;
    }
    // The value is built backwards in one small buffer, then copied once.
    let mut tail = [0u8; TAIL];
    let mut at = match value {
        Metric::Int(v) => put_int(&mut tail, TAIL, v),
        Metric::Float(v) => put_float(&mut tail, TAIL, v),
    };
    at = put(&mut tail, at, b' ');
    let room = out.len();
    let mut cursor = out;
    cursor::put_bytes(&mut cursor, path.as_bytes());
    if let Some((_, value)) = tail.split_at_checked(at) {
        cursor::put_bytes(&mut cursor, value);
    }
    // The whole array is one move; what follows the timestamp's text is room for the next line.
    cursor::put(&mut cursor, stamp.text);
    room - cursor.len() - (STAMP - stamp.len)
}

/// Room for ` value`, and before, for ` timestamp\n`: a value of at most 24 bytes and a
/// timestamp of at most 20.
const TAIL: usize = 48;

#[inline(always)]
fn put(buf: &mut [u8; TAIL], at: usize, b: u8) -> usize {
    buf[at - 1] = b;
    at - 1
}

/// Writes the decimal digits of `v` to end at `at`; returns where they start.
fn put_int(buf: &mut [u8; TAIL], at: usize, v: i64) -> usize {
    let (at, _) = put_digits(buf, at, v.unsigned_abs(), 0);
    if v < 0 { put(buf, at, b'-') } else { at }
}

/// Writes the last `count` digits of `n` (with leading zeros), or all of them when `count` is 0,
/// to end at `at`; returns where they start and what is left of `n`.
fn put_digits(buf: &mut [u8; TAIL], mut at: usize, mut n: u64, count: usize) -> (usize, u64) {
    let end = at;
    loop {
        let q = div10(n);
        at -= 1;
        buf[at] = b'0' + (n - q * 10) as u8;
        n = q;
        if (count == 0 && n == 0) || end - at == count {
            return (at, n);
        }
    }
}

/// `n / 10` as a multiplication: exact for every u64, and fast even where the build optimises for
/// size and would otherwise emit a slow hardware division per digit.
#[inline(always)]
fn div10(n: u64) -> u64 {
    ((u128::from(n) * 0xCCCC_CCCC_CCCC_CCCD) >> 67) as u64
}

/// Below 2^53 every integer is exact in a float.
const EXACT: f64 = 9_007_199_254_740_992.0;

/// A float with at most 6 decimals is written as those digits (`12.25`, `2.0`): the decimal is
/// k / 10^d with k and 10^d exact, so reading it back rounds to the same float as that division,
/// which is checked to give `v`. Any other float takes the general shortest form.
fn put_float(buf: &mut [u8; TAIL], at: usize, v: f64) -> usize {
    let mut scale = 1.0;
    for decimals in 0..=6 {
        let scaled = v * scale;
        let whole = scaled.abs() < EXACT && scaled == (scaled as i64) as f64;
        if whole && (decimals == 0 || scaled / scale == v) {
            let k = scaled.abs() as u64;
            let (mut at, rest) = if decimals == 0 {
                (put(buf, at, b'0'), k)
            } else {
                put_digits(buf, at, k, decimals)
            };
            at = put(buf, at, b'.');
            at = put_digits(buf, at, rest, 0).0;
            return if v.is_sign_negative() {
                put(buf, at, b'-')
            } else {
                at
            };
        }
        scale *= 10.0;
    }
    let mut text = [0u8; 32];
    let mut cursor = &mut text[..];
    let _ = write!(cursor, "{v:?}");
    let len = 32 - cursor.len();
    buf[at - len..at].copy_from_slice(&text[..len]);
    at - len
}

/// Appends the line for `event` to `out`, or says why the event has none (and writes nothing).
pub fn encode(
    naming: &Naming,
    event: &Event,
    path_buf: &mut String,
    out: &mut Vec<u8>,
) -> Result<(), Unencodable> {
    let metric = naming.prepare(event, path_buf)?;
    push_line(out, path_buf, metric, event.unix_seconds());
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::outputs::graphite::datapoint::{MAX_PATH, check_path};

    #[test]
    fn encodes_one_line_per_metric() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut out = Vec::new();
        let mut buf = String::new();
        let n = Naming::default();
        assert!(
            encode(
                &n,
                &Event::new("load.1", "r1").with_metric(0.25).with_time(t),
                &mut buf,
                &mut out
            )
            .is_ok()
        );
        assert!(
            encode(
                &n,
                &Event::new("memory.total", "r1")
                    .with_metric(1024i64)
                    .with_time(t),
                &mut buf,
                &mut out
            )
            .is_ok()
        );
        assert_eq!(
            encode(&n, &Event::new("note", "r1"), &mut buf, &mut out),
            Err(Unencodable::NoMetric)
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "r1.load.1 0.25 1700000000\nr1.memory.total 1024 1700000000\n"
        );
    }

    #[test]
    fn numbers_keep_their_exact_value() {
        let mut out = Vec::new();
        for (v, text) in [
            (Metric::Int(i64::MIN), "-9223372036854775808"),
            (Metric::Int(0), "0"),
            (Metric::Float(2.0), "2.0"),
            (Metric::Float(-0.1), "-0.1"),
            (Metric::Float(0.05), "0.05"),
            (Metric::Float(-12.000125), "-12.000125"),
            (Metric::Float(-0.0), "-0.0"),
            (Metric::Float(0.3), "0.3"),
            (Metric::Float(1.0 / 3.0), "0.3333333333333333"),
            (Metric::Float(9007199254740993.0), "9007199254740992.0"),
            (Metric::Float(1e16), "1e16"),
            (Metric::Float(1e300), "1e300"),
            (
                Metric::Float(-2.2250738585072014e-308),
                "-2.2250738585072014e-308",
            ),
        ] {
            out.clear();
            push_line(&mut out, "p", v, -1);
            assert_eq!(String::from_utf8_lossy(&out), format!("p {text} -1\n"));
        }
    }

    #[test]
    fn integers_of_every_width_are_whole() {
        let mut out = Vec::new();
        let mut p = 1u64;
        for _ in 0..20 {
            for v in [p - 1, p, p + 1, p.wrapping_mul(10).wrapping_sub(1)] {
                for v in [v as i64, (v as i64).wrapping_neg()] {
                    out.clear();
                    push_line(&mut out, "p", Metric::Int(v), v);
                    assert_eq!(String::from_utf8_lossy(&out), format!("p {v} {v}\n"));
                }
            }
            p = p.wrapping_mul(10);
        }
    }

    #[test]
    fn floats_read_back_exactly() {
        // Awkward values: random bit patterns, and short decimals near rounding edges.
        fn prop(x: u64) -> bool {
            let decimal = (x % 2_000_000_000) as f64 / 1000.0 - 1e6;
            [f64::from_bits(x), decimal]
                .into_iter()
                .filter(|v| v.is_finite())
                .all(|v| {
                    let mut out = Vec::new();
                    push_line(&mut out, "p", Metric::Float(v), 0);
                    let text = std::str::from_utf8(&out).unwrap();
                    let value = text
                        .strip_prefix("p ")
                        .and_then(|t| t.strip_suffix(" 0\n"))
                        .unwrap();
                    value.parse::<f64>().unwrap().to_bits() == v.to_bits() && value.len() <= 24
                })
        }
        quickcheck::QuickCheck::new()
            .tests(100_000)
            .max_tests(100_000)
            .quickcheck(prop as fn(u64) -> bool);
    }

    #[test]
    fn division_by_ten_is_exact() {
        for v in (0..100_000).chain([u64::MAX, u64::MAX - 1, 99, 100, 101, 1 << 63]) {
            assert_eq!(div10(v), v / 10, "{v}");
        }
        fn prop(x: u64, shift: u8) -> bool {
            [x, x >> (shift % 64)].iter().all(|&v| div10(v) == v / 10)
        }
        quickcheck::QuickCheck::new()
            .tests(100_000)
            .max_tests(100_000)
            .quickcheck(prop as fn(u64, u8) -> bool);
    }

    /// Property: lines written in place, one after the other and from batch to batch, are each the
    /// line [`push_line`] writes alone, and read back as the same path, value and timestamp.
    #[test]
    fn lines_in_place_read_back_as_written() {
        fn prop(points: Vec<(u16, String, i64, i64, bool)>, repeat: u8) -> bool {
            let mut lines = Lines::default();
            for round in 0..=repeat % 4 {
                lines.clear();
                let mut expected = Vec::new();
                for (len, name, ts, v, float) in &points {
                    let path = crate::outputs::graphite::test_path(*len, name);
                    // Runs of lines share a timestamp, as a collection's datapoints do.
                    let ts = ts >> (u32::from(round) * 20);
                    let value = if *float {
                        Metric::Float(f64::from_bits(*v as u64))
                    } else {
                        Metric::Int(*v)
                    };
                    let value = match value {
                        Metric::Float(f) if !f.is_finite() => Metric::Float(*v as f64 / 7.0),
                        other => other,
                    };
                    assert_eq!(check_path(&path), Ok(()));
                    lines.push(&path, value, ts);
                    let mut alone = Vec::new();
                    push_line(&mut alone, &path, value, ts);
                    let text = std::str::from_utf8(&alone).unwrap();
                    let mut fields = text.strip_suffix('\n').unwrap().rsplitn(3, ' ');
                    let (t, v, p) = (fields.next(), fields.next(), fields.next());
                    let read = match value {
                        Metric::Int(_) => v.and_then(|v| v.parse().ok()).map(Metric::Int),
                        Metric::Float(_) => v.and_then(|v| v.parse().ok()).map(Metric::Float),
                    };
                    let same = match (read, value) {
                        (Some(Metric::Float(a)), Metric::Float(b)) => a.to_bits() == b.to_bits(),
                        (read, value) => read == Some(value),
                    };
                    if !same || p != Some(path.as_str()) || t != Some(ts.to_string().as_str()) {
                        return false;
                    }
                    expected.extend_from_slice(&alone);
                }
                if lines.bytes() != expected || lines.len() != expected.len() {
                    return false;
                }
            }
            true
        }
        quickcheck::QuickCheck::new()
            .tests(300)
            .quickcheck(prop as fn(Vec<(u16, String, i64, i64, bool)>, u8) -> bool);
    }

    #[test]
    fn paths_of_every_length_around_the_copy_sizes_are_whole() {
        let mut lines = Lines::default();
        let mut expected = String::new();
        for n in (1..=70).chain([127, 128, 129, 300, MAX_PATH]) {
            let path: String = (0..n).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
            for (value, text) in [(Metric::Int(7), "7"), (Metric::Float(-0.5), "-0.5")] {
                lines.push(&path, value, 1_700_000_000 + n as i64 / 8);
                expected.push_str(&format!("{path} {text} {}\n", 1_700_000_000 + n as i64 / 8));
            }
        }
        assert_eq!(std::str::from_utf8(lines.bytes()).unwrap(), expected);
    }

    #[test]
    fn the_longest_path_still_fits_a_line() {
        let mut out = Vec::new();
        push_line(
            &mut out,
            &"x".repeat(MAX_PATH),
            Metric::Float(-2.2250738585072014e-308),
            i64::MIN,
        );
        assert!(out.len() <= MAX_LINE, "{}", out.len());
    }
}
