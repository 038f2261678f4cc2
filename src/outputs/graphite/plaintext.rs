//! Carbon's plaintext protocol: one `path value timestamp\n` line per datapoint.

use std::io::Write;

use super::path::{Naming, Unencodable};
use crate::event::{Event, Metric};

/// Carbon drops the connection on a line longer than this, in bytes (newline included).
pub const MAX_LINE: usize = 16_384;

/// Appends the line of one datapoint whose path was checked (see [`super::datapoint::check_path`]).
///
/// Integers are written as they are; floats in their shortest exact form, with an exponent when
/// very large or small (`1e300`), so a value never takes more than 24 bytes.
pub fn push_line(out: &mut Vec<u8>, path: &str, value: Metric, timestamp: i64) {
    out.extend_from_slice(path.as_bytes());
    out.push(b' ');
    match value {
        Metric::Int(v) => push_int(out, v),
        Metric::Float(v) => {
            let _ = write!(out, "{v:?}");
        }
    }
    out.push(b' ');
    push_int(out, timestamp);
    out.push(b'\n');
}

/// Appends the decimal digits of `v`.
pub fn push_int(out: &mut Vec<u8>, v: i64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = v.unsigned_abs();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&digits[i..]);
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
    use crate::outputs::graphite::datapoint::MAX_PATH;

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
