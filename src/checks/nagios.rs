//! Nagios plugin output: the exit code is the state; stdout is a first line of text, optional
//! long text, and performance data after `|`.
//!
//! ```text
//! DISK OK - free space: / 3326 MB (56%) | /=2643MB;5948;5958;0;5968
//! / 15272 MB (77%);
//! /boot 68 MB (69%); | /boot=68MB;88;93;0;98
//! /home=69357MB;253404;253409;0;253414
//! ```
//!
//! Each performance item is `label=value[UOM];[warn];[crit];[min];[max]`; a label with spaces or
//! `=` is in single quotes (a quote inside doubled). Values are normalised where the plugin
//! guidelines define the unit: times to seconds, sizes to bytes (1 KB = 1024 B); `%` and `c`
//! (a counter) stay as they are, as does a value in any other unit. Thresholds and bounds are
//! read past but not kept.

use super::{Problem, number, quote};
use crate::event::{Metric, State};

/// What a plugin printed, read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plugin {
    /// The first line, without its performance data.
    pub text: String,
    /// The further lines of text, joined by newlines.
    pub long_text: String,
    /// The performance data, in order.
    pub perfdata: Vec<Perf>,
    /// Performance items that could not be read.
    pub problems: Vec<Problem>,
}

/// One performance data item.
#[derive(Debug, Clone, PartialEq)]
pub struct Perf {
    /// The label, unquoted.
    pub label: String,
    /// The value, normalised to seconds or bytes where the unit says so.
    pub value: Metric,
}

/// The state a plugin's exit stands for: its exit code 0 ok, 1 warning, 2 critical, 3 and any
/// other code unknown; a plugin that did not exit normally (`None`: a signal ended it) is unknown,
/// as the plugin guidelines say, whatever code a shell would report for it (137 after SIGKILL).
pub fn state(exit_code: Option<i32>) -> &'static str {
    match exit_code {
        Some(0) => State::OK,
        Some(1) => State::WARNING,
        Some(2) => State::CRITICAL,
        _ => State::UNKNOWN,
    }
}

/// Reads a plugin's stdout.
pub fn parse(stdout: &str) -> Plugin {
    let mut plugin = Plugin::default();
    let mut lines = stdout.lines().enumerate();
    if let Some((_, first)) = lines.next() {
        let (text, perf) = first.split_once('|').unwrap_or((first, ""));
        plugin.text = text.trim().to_owned();
        read_items(perf, 1, &mut plugin);
    }
    let mut long_text: Vec<&str> = Vec::new();
    let mut in_perfdata = false;
    for (i, line) in lines {
        if in_perfdata {
            read_items(line, i + 1, &mut plugin);
        } else if let Some((text, perf)) = line.split_once('|') {
            long_text.push(text.trim_end());
            read_items(perf, i + 1, &mut plugin);
            in_perfdata = true;
        } else {
            long_text.push(line.trim_end());
        }
    }
    while long_text.last().is_some_and(|l| l.is_empty()) {
        long_text.pop();
    }
    plugin.long_text = long_text.join("\n");
    plugin
}

/// Reads the performance items of one line into `plugin`.
fn read_items(mut rest: &str, line: usize, plugin: &mut Plugin) {
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return;
        }
        let (item, after) = match split_item(rest) {
            Ok(split) => split,
            Err(bad_len) => {
                let bad = &rest[..bad_len];
                plugin.problems.push(Problem {
                    line,
                    message: format!(
                        "expected label=value in performance data, got {}",
                        quote(bad)
                    ),
                });
                rest = &rest[bad_len..];
                continue;
            }
        };
        rest = after;
        match read_value(&item.1) {
            Ok(Some(value)) => plugin.perfdata.push(Perf {
                label: item.0,
                value,
            }),
            Ok(None) => {}
            Err(why) => plugin.problems.push(Problem {
                line,
                message: format!("{why} in {}", quote(&item.2)),
            }),
        }
    }
}

/// Splits the first item off `text` (which starts with it): its label, its data after `=`, its
/// whole text, and the rest. On error, the length of the bad token to skip.
fn split_item(text: &str) -> Result<((String, String, String), &str), usize> {
    let token_end = |from: usize| {
        text[from..]
            .find(char::is_whitespace)
            .map_or(text.len(), |i| from + i)
    };
    let (label, after_label) = if let Some(quoted) = text.strip_prefix('\'') {
        let mut label = String::new();
        let mut chars = quoted.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            if c != '\'' {
                label.push(c);
            } else if quoted[i + 1..].starts_with('\'') {
                label.push('\'');
                chars.next();
            } else {
                end = Some(1 + i + 1);
                break;
            }
        }
        let Some(end) = end else {
            return Err(token_end(0));
        };
        (label, end)
    } else {
        let stop = text
            .find(|c: char| c == '=' || c.is_whitespace())
            .unwrap_or(text.len());
        (text[..stop].to_owned(), stop)
    };
    if label.is_empty() || !text[after_label..].starts_with('=') {
        return Err(token_end(after_label).max(1));
    }
    let end = token_end(after_label);
    let data = text[after_label + 1..end].to_owned();
    Ok(((label, data, text[..end].to_owned()), &text[end..]))
}

/// The value of an item's data (`value[UOM];warn;crit;min;max`): `None` for `U` (the plugin could
/// not measure it).
fn read_value(data: &str) -> Result<Option<Metric>, &'static str> {
    let value_uom = data.split(';').next().unwrap_or("");
    if value_uom == "U" {
        return Ok(None);
    }
    let split = numeric_prefix(value_uom);
    let (digits, unit) = value_uom.split_at(split);
    let value = number(digits).ok_or("value is not a number")?;
    let factor = match unit {
        "ms" => 1e-3,
        "us" => 1e-6,
        "KB" => 1024.0,
        "MB" => 1024.0 * 1024.0,
        "GB" => 1024.0 * 1024.0 * 1024.0,
        "TB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ if unit.chars().any(|c| c.is_ascii_digit()) => return Err("unit contains digits"),
        _ => return Ok(Some(value)),
    };
    Ok(Metric::float(value.as_f64() * factor))
}

/// The length of the number at the start of `text`: sign, digits, a point, and an exponent only
/// when digits follow it (so `5e` stays a number with unit `e`).
fn numeric_prefix(text: &str) -> usize {
    let bytes = text.as_bytes();
    let mut i = 0;
    if matches!(bytes.first(), Some(b'-' | b'+')) {
        i += 1;
    }
    while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
        i += 1;
    }
    if i < bytes.len() && (bytes[i] == b'e' || bytes[i] == b'E') {
        let mut j = i + 1;
        if matches!(bytes.get(j), Some(b'-' | b'+')) {
            j += 1;
        }
        if bytes.get(j).is_some_and(u8::is_ascii_digit) {
            i = j;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
        }
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perf(plugin: &Plugin) -> Vec<(String, f64)> {
        plugin
            .perfdata
            .iter()
            .map(|p| (p.label.clone(), p.value.as_f64()))
            .collect()
    }

    #[test]
    fn exit_codes_map_to_states() {
        assert_eq!(
            [0, 1, 2, 3, 4, -1, 127, 137].map(|code| state(Some(code))),
            [
                "ok", "warning", "critical", "unknown", "unknown", "unknown", "unknown", "unknown"
            ]
        );
        assert_eq!(state(None), "unknown", "a plugin a signal ended");
    }

    #[test]
    fn reads_text_and_single_line_perfdata() {
        let p = parse(
            "PING OK - Packet loss = 0%, RTA = 0.80 ms|rta=0.800000ms;100.000000;500.000000;0.000000 pl=0%;20;60;0\n",
        );
        assert_eq!(p.text, "PING OK - Packet loss = 0%, RTA = 0.80 ms");
        assert_eq!(p.long_text, "");
        assert_eq!(perf(&p), vec![("rta".into(), 0.0008), ("pl".into(), 0.0)]);
        assert!(p.problems.is_empty(), "{:?}", p.problems);
        assert_eq!(p.perfdata[1].value, Metric::Int(0));
    }

    #[test]
    fn reads_the_multi_line_form() {
        let out = "DISK OK - free space: / 3326 MB (56%); | /=2643MB;5948;5958;0;5968\n/ 15272 MB (77%);\n/boot 68 MB (69%); | /boot=68MB;88;93;0;98\n/home=69357MB;253404;253409;0;253414\n/var/log=818MB;970;975;0;980\n";
        let p = parse(out);
        assert_eq!(p.text, "DISK OK - free space: / 3326 MB (56%);");
        assert_eq!(p.long_text, "/ 15272 MB (77%);\n/boot 68 MB (69%);");
        let mb = 1024.0 * 1024.0;
        assert_eq!(
            perf(&p),
            vec![
                ("/".into(), 2643.0 * mb),
                ("/boot".into(), 68.0 * mb),
                ("/home".into(), 69357.0 * mb),
                ("/var/log".into(), 818.0 * mb)
            ]
        );
        assert!(p.problems.is_empty(), "{:?}", p.problems);
    }

    #[test]
    fn reads_quoted_labels() {
        let p = parse("OK | 'disk used'=5GB 'it''s'=1c;;;; 'a=b'=2s\n");
        assert_eq!(
            perf(&p),
            vec![
                ("disk used".into(), 5.0 * 1024.0 * 1024.0 * 1024.0),
                ("it's".into(), 1.0),
                ("a=b".into(), 2.0)
            ]
        );
        assert!(p.problems.is_empty(), "{:?}", p.problems);
    }

    #[test]
    fn normalises_units_of_the_guidelines() {
        let p = parse("OK | a=1s b=250ms c=5us d=50% e=2B f=1KB g=1TB h=7c i=3dBm j=U k=-2.5e3\n");
        let v = perf(&p);
        assert_eq!(v[0].1, 1.0);
        assert_eq!(v[1].1, 0.25);
        assert!((v[2].1 - 5e-6).abs() < 1e-15);
        assert_eq!(v[3].1, 50.0);
        assert_eq!(v[4].1, 2.0);
        assert_eq!(v[5].1, 1024.0);
        assert_eq!(v[6].1, 1024f64.powi(4));
        assert_eq!(v[7].1, 7.0);
        assert_eq!(
            v[8],
            ("i".into(), 3.0),
            "units outside the guidelines keep the value"
        );
        assert_eq!(v[9], ("k".into(), -2500.0), "U is skipped, not an error");
        assert!(p.problems.is_empty(), "{:?}", p.problems);
    }

    #[test]
    fn bad_items_are_problems_and_the_rest_still_count() {
        let p = parse(
            "WARNING - x | good=1 bad=abc noequals 'unterminated=3 also=2\nmore | x=5 =4 y=1x2\n",
        );
        assert_eq!(p.text, "WARNING - x");
        assert_eq!(
            perf(&p),
            vec![
                ("good".into(), 1.0),
                ("also".into(), 2.0),
                ("x".into(), 5.0)
            ]
        );
        let messages: Vec<String> = p.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            messages,
            vec![
                "line 1: value is not a number in \"bad=abc\"",
                "line 1: expected label=value in performance data, got \"noequals\"",
                "line 1: expected label=value in performance data, got \"'unterminated=3\"",
                "line 2: expected label=value in performance data, got \"=4\"",
                "line 2: unit contains digits in \"y=1x2\"",
            ]
        );
    }

    #[test]
    fn empty_and_binary_output_do_not_panic() {
        assert_eq!(parse(""), Plugin::default());
        let p = parse("\u{fffd}\u{0}|\u{fffd}=\u{fffd}\n|||\n");
        assert_eq!(p.problems.len(), 2, "{:?}", p.problems);
        assert!(p.perfdata.is_empty());
    }
}
