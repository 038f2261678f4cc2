//! Graphite plaintext lines: `path value [timestamp]`, the timestamp in seconds since the Unix
//! epoch (a fraction allowed). Blank lines are skipped.

use std::time::{Duration, SystemTime};

use super::{Problem, each_line, number, quote};
use crate::event::Metric;

/// One line read.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The metric path, as printed.
    pub path: String,
    /// The value.
    pub value: Metric,
    /// The time, when the line gave one.
    pub time: Option<SystemTime>,
}

/// Reads every line of `text` into `samples`, and what cannot be read into `problems`.
pub fn parse(text: &str, samples: &mut Vec<Sample>, problems: &mut Vec<Problem>) {
    each_line(text, parse_line, samples, problems);
}

/// Reads one line: `None` when it is blank.
pub fn parse_line(line: &str) -> Result<Option<Sample>, String> {
    let mut fields = line.split_whitespace();
    let Some(path) = fields.next() else {
        return Ok(None);
    };
    let expected = || {
        format!(
            "expected \"path value [timestamp]\", got {}",
            quote(line.trim())
        )
    };
    let value = fields.next().ok_or_else(expected)?;
    let time = fields.next();
    if fields.next().is_some() {
        return Err(expected());
    }
    let value = number(value)
        .ok_or_else(|| format!("value is not a finite number in {}", quote(line.trim())))?;
    let time = match time {
        None => None,
        Some(t) => Some(timestamp(t).ok_or_else(|| {
            format!(
                "timestamp is not seconds since 1970 in {}",
                quote(line.trim())
            )
        })?),
    };
    Ok(Some(Sample {
        path: path.to_owned(),
        value,
        time,
    }))
}

/// Seconds since the Unix epoch, up to the year 10000.
fn timestamp(text: &str) -> Option<SystemTime> {
    const MAX_SECONDS: f64 = 253_402_300_800.0;
    let seconds = number(text)?.as_f64();
    if !(0.0..MAX_SECONDS).contains(&seconds) {
        return None;
    }
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_paths_values_and_timestamps() {
        let mut samples = Vec::new();
        let mut problems = Vec::new();
        parse(
            "a.b 1 1700000000\n\n  c.d\t2.5  \ne -3 1700000000.5\n",
            &mut samples,
            &mut problems,
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(samples.len(), 3);
        assert_eq!(
            samples[0],
            Sample {
                path: "a.b".into(),
                value: Metric::Int(1),
                time: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
            }
        );
        assert_eq!(
            samples[1],
            Sample {
                path: "c.d".into(),
                value: Metric::Float(2.5),
                time: None
            }
        );
        assert_eq!(
            samples[2].time,
            Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_500))
        );
    }

    #[test]
    fn bad_lines_are_problems_and_the_rest_still_count() {
        let mut samples = Vec::new();
        let mut problems = Vec::new();
        parse(
            "ok 1\nnovalue\nx nan\ny 1 yesterday\nz 1 2 3\nw 1 -5\ngood 2\n",
            &mut samples,
            &mut problems,
        );
        assert_eq!(
            samples.iter().map(|s| s.path.as_str()).collect::<Vec<_>>(),
            ["ok", "good"]
        );
        let messages: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            messages,
            vec![
                "line 2: expected \"path value [timestamp]\", got \"novalue\"",
                "line 3: value is not a finite number in \"x nan\"",
                "line 4: timestamp is not seconds since 1970 in \"y 1 yesterday\"",
                "line 5: expected \"path value [timestamp]\", got \"z 1 2 3\"",
                "line 6: timestamp is not seconds since 1970 in \"w 1 -5\"",
            ]
        );
    }

    #[test]
    fn binary_garbage_is_a_problem_not_a_panic() {
        assert!(parse_line("\u{fffd}\u{fffd} \u{0}\u{1}").is_err());
        assert_eq!(parse_line("   ").unwrap(), None);
    }
}
