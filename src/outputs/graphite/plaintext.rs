//! Carbon's plaintext protocol: one `path value timestamp\n` line per datapoint.

use std::io::Write;

use super::path::Naming;
use crate::event::{Event, Kind};

/// Carbon drops the connection on a line longer than this, in bytes (newline included).
pub const MAX_LINE: usize = 16_384;

/// Appends the line for `event` to `out`; returns false (writing nothing) for an event without a
/// metric, a log event, or a line carbon would refuse as too long.
pub fn encode(naming: &Naming, event: &Event, path_buf: &mut String, out: &mut Vec<u8>) -> bool {
    let Some(metric) = event.metric else {
        return false;
    };
    if event.kind != Kind::Metric {
        return false;
    }
    naming.path_into(event, path_buf);
    let start = out.len();
    let _ = writeln!(out, "{path_buf} {metric} {}", event.unix_seconds());
    if out.len() - start > MAX_LINE {
        out.truncate(start);
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    #[test]
    fn encodes_one_line_per_metric() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut out = Vec::new();
        let mut buf = String::new();
        let n = Naming::default();
        assert!(encode(
            &n,
            &Event::new("load.1", "r1").with_metric(0.25).with_time(t),
            &mut buf,
            &mut out
        ));
        assert!(encode(
            &n,
            &Event::new("memory.total", "r1")
                .with_metric(1024i64)
                .with_time(t),
            &mut buf,
            &mut out
        ));
        assert!(!encode(&n, &Event::new("note", "r1"), &mut buf, &mut out));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "r1.load.1 0.25 1700000000\nr1.memory.total 1024 1700000000\n"
        );
    }

    #[test]
    fn refuses_lines_carbon_would_drop() {
        let mut out = b"keep\n".to_vec();
        let e = Event::new("x".repeat(MAX_LINE), "h").with_metric(1i64);
        assert!(!encode(
            &Naming::default(),
            &e,
            &mut String::new(),
            &mut out
        ));
        assert_eq!(out, b"keep\n");
    }
}
