//! InfluxDB line protocol: one line per event.
//!
//! The mapping, chosen so that InfluxQL, Flux and VictoriaMetrics all read it naturally:
//!
//! * measurement: the whole service name, such as `interface.eth0.rx_bytes`;
//! * tags: `host`, then one per attribute (attributes named `host`, `tags`, `time` or `db`, and
//!   empty keys or values, are left out: VictoriaMetrics takes a `db` tag for the database label
//!   it sets itself), then `tags`, the event's tags joined by commas;
//! * fields: `value` (the metric), `state` and `description` (strings), each only when set;
//! * timestamp: the event's time in the chosen precision, nanoseconds kept.
//!
//! InfluxDB fixes a field's type at its first value, so a metric that is `1` one time and `1.5`
//! the next must not change type: every number is written as a float (`1.0`), unless its service
//! matches one of the `integers` patterns, which are written as integers (`42i`; a float with no
//! fraction too, and any other float as a float, which InfluxDB then refuses and pipit counts).
//!
//! An event that no line can carry is not written and [`encode`] says why: one with no field, one
//! whose service is empty or starts with `#` (InfluxDB and VictoriaMetrics read such a line as a
//! comment, answer 204, and store nothing), and one whose series key is too long for InfluxDB
//! (with a field name and 4 bytes, over 65,535 bytes).
//!
//! Escaping follows the line protocol: commas and spaces in the measurement; commas, equals signs
//! and spaces in tag keys and values; double quotes and backslashes in string field values. Line
//! protocol has no way to write a line break in a name or a value: each becomes a space; so do a
//! tab and a NUL in a name, which InfluxDB skips at the start of a line. Nor can it
//! write a backslash at the end of a name or before one of its special characters (InfluxDB reads
//! it as an escape): it becomes a slash.

use std::fmt::{self, Write};
use std::time::SystemTime;

use crate::event::{Event, Metric};
use crate::pattern::Pattern;

/// The unit of the timestamps, sent as the `precision` of the write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// Whole seconds.
    Seconds,
    /// Milliseconds.
    Millis,
    /// Microseconds.
    Micros,
    /// Nanoseconds.
    Nanos,
}

impl Precision {
    /// The timestamp of `event` in this unit, cut (not rounded) to it; times before 1970 are 0.
    pub fn timestamp(self, event: &Event) -> i64 {
        let since = event
            .time
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let value = match self {
            Precision::Seconds => u128::from(since.as_secs()),
            Precision::Millis => since.as_millis(),
            Precision::Micros => since.as_micros(),
            Precision::Nanos => since.as_nanos(),
        };
        i64::try_from(value).unwrap_or(i64::MAX)
    }
}

/// The most bytes InfluxDB takes in a series key (measurement and tags, escaped) with a field key
/// and 4 bytes more; a longer line is refused, and not counted in the `dropped=` of a partial write
/// that also refused others.
const MAX_KEY: usize = 65_535;

/// Tag keys the mapping sets itself, that InfluxDB refuses, or that VictoriaMetrics takes for its
/// own `db` label.
const RESERVED_TAGS: [&str; 4] = ["host", "tags", "time", "db"];

/// How events are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    /// The unit of the timestamps.
    pub precision: Precision,
    /// Whether `state` and `description` are written as string fields; stores that keep only
    /// numbers (VictoriaMetrics) are better off without them.
    pub string_fields: bool,
    /// Services whose metric is written as an integer; every other metric is a float.
    pub integers: Vec<Pattern>,
}

/// Why an event has no line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unencodable {
    /// No metric, and no state or description to write as a string field.
    NoField,
    /// The service is empty or starts with `#`, which line protocol reads as a comment.
    BadMeasurement,
    /// The measurement and tags as written, with a field name and 4 bytes, are over InfluxDB's
    /// 65,535 bytes.
    KeyTooLong,
}

impl fmt::Display for Unencodable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unencodable::NoField => {
                "it has no metric (nor, with string_fields, state or description)"
            }
            Unencodable::BadMeasurement => {
                "its service is empty or starts with '#', which line protocol reads as a comment"
            }
            Unencodable::KeyTooLong => {
                "its measurement, tags and field name are over the 65535 bytes InfluxDB takes"
            }
        })
    }
}

/// Appends the line of `event` to `out`, or says why it has none (appending nothing).
pub fn encode(event: &Event, format: &Format, out: &mut String) -> Result<(), Unencodable> {
    let texts = [
        ("state", event.state.as_ref().map(|s| s.as_str())),
        ("description", event.description.as_deref()),
    ];
    let texts = if format.string_fields {
        &texts[..]
    } else {
        &[]
    };
    if event.metric.is_none() && texts.iter().all(|(_, text)| text.is_none()) {
        return Err(Unencodable::NoField);
    }
    if event.service.is_empty() || event.service.starts_with('#') {
        return Err(Unencodable::BadMeasurement);
    }
    let start = out.len();
    escape(&event.service, &[',', ' '], out);
    tag("host", &event.host, out);
    for (k, v) in &event.attributes {
        if !RESERVED_TAGS.contains(&k.as_str()) {
            tag(k, v, out);
        }
    }
    if !event.tags.is_empty() {
        tag("tags", &event.tags.join(","), out);
    }
    let longest_field = event
        .metric
        .map(|_| "value")
        .into_iter()
        .chain(
            texts
                .iter()
                .filter(|(_, text)| text.is_some())
                .map(|(k, _)| *k),
        )
        .map(str::len)
        .max()
        .unwrap_or(0);
    if out.len() - start + longest_field + 4 > MAX_KEY {
        out.truncate(start);
        return Err(Unencodable::KeyTooLong);
    }
    let mut sep = ' ';
    if let Some(metric) = event.metric {
        out.push(sep);
        sep = ',';
        out.push_str("value=");
        if format.integers.iter().any(|p| p.matches(&event.service)) {
            integer(metric, out);
        } else {
            float(metric, out);
        }
    }
    for (key, text) in texts {
        if let Some(text) = text {
            out.push(sep);
            sep = ',';
            string_field(key, text, out);
        }
    }
    let _ = writeln!(out, " {}", format.precision.timestamp(event));
    Ok(())
}

/// The largest magnitude below which every whole `f64` converts to `i64` exactly.
const I64_LIMIT: f64 = 9_223_372_036_854_775_808.0;

/// A metric declared integer: `42i`, also for a float with no fraction; any other float stays a
/// float, for the server to refuse.
fn integer(metric: Metric, out: &mut String) {
    match metric {
        Metric::Int(v) => {
            let _ = write!(out, "{v}i");
        }
        Metric::Float(v) if v.fract() == 0.0 && v.abs() < I64_LIMIT => {
            let _ = write!(out, "{}i", v as i64);
        }
        Metric::Float(_) => float(metric, out),
    }
}

/// Any metric as a float. Debug keeps the decimal point (`2.0`), so InfluxDB never takes it for
/// an integer; an integer beyond 2^53 loses its last digits.
fn float(metric: Metric, out: &mut String) {
    let v = match metric {
        Metric::Int(v) => v as f64,
        Metric::Float(v) => v,
    };
    let _ = write!(out, "{v:?}");
}

fn tag(key: &str, value: &str, out: &mut String) {
    if key.is_empty() || value.is_empty() {
        return;
    }
    out.push(',');
    escape(key, &[',', '=', ' '], out);
    out.push('=');
    escape(value, &[',', '=', ' '], out);
}

fn string_field(key: &str, value: &str, out: &mut String) {
    out.push_str(key);
    out.push_str("=\"");
    for c in value.chars().map(unbreak) {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// A line break as a space: line protocol has no way to write one in a name or a value.
fn unbreak(c: char) -> char {
    if matches!(c, '\n' | '\r') { ' ' } else { c }
}

/// A line break, a tab or a NUL as a space in a name: InfluxDB skips tabs and NULs at the start
/// of a line, so a measurement starting with one would lose it, or be read as missing (and the
/// error quoting it could not even be sent back in a header).
fn blank(c: char) -> char {
    if matches!(c, '\t' | '\0') {
        ' '
    } else {
        unbreak(c)
    }
}

/// Appends `text` with a backslash before each of `special`, [`blank`]s as spaces, and a
/// backslash that InfluxDB would read as an escape (at the end, or before a special character) as
/// a slash: line protocol has no way to write it.
fn escape(text: &str, special: &[char], out: &mut String) {
    let mut chars = text.chars().map(blank).peekable();
    while let Some(c) = chars.next() {
        if c == '\\' && chars.peek().is_none_or(|next| special.contains(next)) {
            out.push('/');
            continue;
        }
        if special.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    fn format(precision: Precision, integers: &[&str]) -> Format {
        Format {
            precision,
            string_fields: true,
            integers: integers.iter().map(|p| Pattern::new(p)).collect(),
        }
    }

    fn line(event: &Event, precision: Precision) -> String {
        let mut out = String::new();
        encode(event, &format(precision, &["int.*"]), &mut out).unwrap();
        out
    }

    fn at(service: &str, micros: u64) -> Event {
        Event::new(service, "r1").with_time(SystemTime::UNIX_EPOCH + Duration::from_micros(micros))
    }

    #[test]
    fn metrics_become_value_fields() {
        assert_eq!(
            line(
                &at("load.1", 1_500_000).with_metric(2.0),
                Precision::Seconds
            ),
            "load.1,host=r1 value=2.0 1\n"
        );
        assert_eq!(
            line(
                &at("load.1", 1_500_000).with_metric(-7i64),
                Precision::Millis
            ),
            "load.1,host=r1 value=-7.0 1500\n"
        );
        assert_eq!(
            line(&at("x", 1_500_001).with_metric(1e300), Precision::Micros),
            "x,host=r1 value=1e300 1500001\n"
        );
        assert_eq!(
            line(&at("x", 2).with_metric(0.1), Precision::Nanos),
            "x,host=r1 value=0.1 2000\n"
        );
    }

    #[test]
    fn a_number_keeps_one_type_whether_it_looks_whole_or_not() {
        for (metric, plain, declared) in [
            (Metric::Int(1), "1.0", "1i"),
            (Metric::Float(1.5), "1.5", "1.5"),
            (Metric::Float(2.0), "2.0", "2i"),
            (
                Metric::Int(i64::MIN),
                "-9.223372036854776e18",
                "-9223372036854775808i",
            ),
            (Metric::Float(1e19), "1e19", "1e19"),
        ] {
            let e = at("x", 0).with_metric(metric);
            let mut out = String::new();
            encode(&e, &format(Precision::Seconds, &[]), &mut out).unwrap();
            assert_eq!(out, format!("x,host=r1 value={plain} 0\n"), "{metric:?}");
            out.clear();
            encode(&e, &format(Precision::Seconds, &["x"]), &mut out).unwrap();
            assert_eq!(out, format!("x,host=r1 value={declared} 0\n"), "{metric:?}");
        }
    }

    #[test]
    fn nanoseconds_are_kept_and_other_units_cut() {
        let e = Event::new("t", "r1")
            .with_metric(1.0)
            .with_time(SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789));
        for (precision, stamp) in [
            (Precision::Nanos, "1700000000123456789"),
            (Precision::Micros, "1700000000123456"),
            (Precision::Millis, "1700000000123"),
            (Precision::Seconds, "1700000000"),
        ] {
            assert!(line(&e, precision).ends_with(&format!(" {stamp}\n")));
        }
        let before_1970 = e.with_time(SystemTime::UNIX_EPOCH - Duration::from_secs(1));
        assert!(line(&before_1970, Precision::Nanos).ends_with(" 0\n"));
    }

    #[test]
    fn a_line_never_reads_as_a_comment() {
        let mut out = String::new();
        let f = format(Precision::Seconds, &[]);
        for service in ["#x", "#", ""] {
            let e = at(service, 0).with_metric(1.0);
            assert_eq!(encode(&e, &f, &mut out), Err(Unencodable::BadMeasurement));
        }
        assert_eq!(out, "");
        let e = at("a#b", 0).with_metric(1.0);
        encode(&e, &f, &mut out).unwrap();
        assert_eq!(out, "a#b,host=r1 value=1.0 0\n");
    }

    #[test]
    fn a_series_key_over_65535_bytes_is_left_out() {
        let f = format(Precision::Seconds, &[]);
        let mut out = String::new();
        // `,host=r1` makes 8 bytes more, `value` and 4 another 9; a space escaped takes two.
        let fits = at(&"x".repeat(MAX_KEY - 17), 0).with_metric(1.0);
        encode(&fits, &f, &mut out).unwrap();
        let before = out.len();
        let over = at(&format!("{} ", "x".repeat(MAX_KEY - 18)), 0).with_metric(1.0);
        assert_eq!(encode(&over, &f, &mut out), Err(Unencodable::KeyTooLong));
        // With a description, its longer field name counts.
        let described = at(&"x".repeat(MAX_KEY - 17), 0)
            .with_metric(1.0)
            .with_description("d");
        assert_eq!(
            encode(&described, &f, &mut out),
            Err(Unencodable::KeyTooLong)
        );
        assert_eq!(out.len(), before);
    }

    #[test]
    fn attributes_and_tags_become_tags_and_text_becomes_string_fields() {
        let mut e = at("check.http", 1_000_000)
            .with_state("critical")
            .with_description("said \"no\" \\ bye\r\nnow");
        e.attributes.insert("site".into(), "lab 1".into());
        e.attributes.insert("host".into(), "spoofed".into());
        e.attributes.insert("db".into(), "other".into());
        e.attributes.insert("empty".into(), String::new());
        e.tags = vec!["a".into(), "b=c".into()];
        assert_eq!(
            line(&e, Precision::Seconds),
            "check.http,host=r1,site=lab\\ 1,tags=a\\,b\\=c state=\"critical\",description=\"said \\\"no\\\" \\\\ bye  now\" 1\n"
        );
    }

    #[test]
    fn names_are_escaped_where_the_protocol_says() {
        let mut e = at("int.a,b c=d\ne", 0).with_metric(1i64);
        e.host = "h=1,2 3".into();
        assert_eq!(
            line(&e, Precision::Seconds),
            "int.a\\,b\\ c=d\\ e,host=h\\=1\\,2\\ 3 value=1i 0\n"
        );
        let mut e = at("\tm\0\t", 0).with_metric(1.5);
        e.host = "\0h".into();
        assert_eq!(
            line(&e, Precision::Seconds),
            "\\ m\\ \\ ,host=\\ h value=1.5 0\n",
            "tabs and NULs become spaces in names"
        );
        let mut e = at("m\\x\\", 0).with_metric(1.5);
        e.host = "a\\b\\,c\\".into();
        assert_eq!(
            line(&e, Precision::Seconds),
            "m\\x/,host=a\\b/\\,c/ value=1.5 0\n"
        );
    }

    #[test]
    fn events_without_fields_are_left_out() {
        let mut out = String::from("x");
        let all = format(Precision::Seconds, &[]);
        assert_eq!(
            encode(&at("nothing", 0), &all, &mut out),
            Err(Unencodable::NoField)
        );
        let numbers_only = Format {
            string_fields: false,
            ..all
        };
        assert_eq!(
            encode(
                &at("text.only", 0).with_state("ok"),
                &numbers_only,
                &mut out
            ),
            Err(Unencodable::NoField)
        );
        assert_eq!(out, "x");
        encode(
            &at("both", 0).with_state("ok").with_metric(1i64),
            &numbers_only,
            &mut out,
        )
        .unwrap();
        assert_eq!(out, "xboth,host=r1 value=1.0 0\n");
    }
}
