//! InfluxDB line protocol: one line per event.
//!
//! The mapping, chosen so that InfluxQL, Flux and VictoriaMetrics all read it naturally:
//!
//! * measurement: the whole service name, such as `interface.eth0.rx_bytes`;
//! * tags: `host`, then one per attribute (attributes named `host`, `tags` or `time`, and empty
//!   keys or values, are left out), then `tags`, the event's tags joined by commas;
//! * fields: `value` (the metric: `42i` for integers, a float otherwise), `state` and
//!   `description` (strings), each only when set; an event with none of the three is left out;
//! * timestamp: the event's time in the chosen precision.
//!
//! Escaping follows the line protocol: commas and spaces in the measurement; commas, equals signs
//! and spaces in tag keys and values; double quotes and backslashes in string field values. Line
//! protocol has no way to write a line break in a name or a value: each becomes a space. Nor can it
//! write a backslash at the end of a name or before one of its special characters (InfluxDB reads
//! it as an escape): it becomes a slash.

use std::fmt::Write;

use crate::event::{Event, Metric};

/// The unit of the timestamps, sent as the `precision` of the write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// Whole seconds.
    Seconds,
    /// Milliseconds.
    Millis,
    /// Microseconds.
    Micros,
    /// Nanoseconds (pipit's times have microseconds; the last three digits are zero).
    Nanos,
}

impl Precision {
    /// The timestamp of `event` in this unit.
    pub fn timestamp(self, event: &Event) -> i64 {
        let micros = event.unix_micros();
        match self {
            Precision::Seconds => micros / 1_000_000,
            Precision::Millis => micros / 1_000,
            Precision::Micros => micros,
            Precision::Nanos => micros.saturating_mul(1_000),
        }
    }
}

/// Tag keys the mapping sets itself, or that InfluxDB refuses.
const RESERVED_TAGS: [&str; 3] = ["host", "tags", "time"];

/// How events are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    /// The unit of the timestamps.
    pub precision: Precision,
    /// Whether `state` and `description` are written as string fields; stores that keep only
    /// numbers (VictoriaMetrics) are better off without them.
    pub string_fields: bool,
}

/// Appends the line of `event` to `out`; returns false (appending nothing) when the event has no
/// field to write.
pub fn encode(event: &Event, format: Format, out: &mut String) -> bool {
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
        return false;
    }
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
    let mut sep = ' ';
    if let Some(metric) = event.metric {
        out.push(sep);
        sep = ',';
        // Debug keeps a float's decimal point (`2.0`), so InfluxDB never takes it for an integer.
        let _ = match metric {
            Metric::Int(v) => write!(out, "value={v}i"),
            Metric::Float(v) => write!(out, "value={v:?}"),
        };
    }
    for (key, text) in texts {
        if let Some(text) = text {
            out.push(sep);
            sep = ',';
            string_field(key, text, out);
        }
    }
    let _ = writeln!(out, " {}", format.precision.timestamp(event));
    true
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

/// Appends `text` with a backslash before each of `special`, line breaks as spaces, and a
/// backslash that InfluxDB would read as an escape (at the end, or before a special character) as
/// a slash: line protocol has no way to write it.
fn escape(text: &str, special: &[char], out: &mut String) {
    let mut chars = text.chars().map(unbreak).peekable();
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

    fn line(event: &Event, precision: Precision) -> String {
        let mut out = String::new();
        encode(
            event,
            Format {
                precision,
                string_fields: true,
            },
            &mut out,
        );
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
            "load.1,host=r1 value=-7i 1500\n"
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
    fn attributes_and_tags_become_tags_and_text_becomes_string_fields() {
        let mut e = at("check.http", 1_000_000)
            .with_state("critical")
            .with_description("said \"no\" \\ bye\r\nnow");
        e.attributes.insert("site".into(), "lab 1".into());
        e.attributes.insert("host".into(), "spoofed".into());
        e.attributes.insert("empty".into(), String::new());
        e.tags = vec!["a".into(), "b=c".into()];
        assert_eq!(
            line(&e, Precision::Seconds),
            "check.http,host=r1,site=lab\\ 1,tags=a\\,b\\=c state=\"critical\",description=\"said \\\"no\\\" \\\\ bye  now\" 1\n"
        );
    }

    #[test]
    fn names_are_escaped_where_the_protocol_says() {
        let mut e = at("a,b c=d\ne", 0).with_metric(1i64);
        e.host = "h=1,2 3".into();
        assert_eq!(
            line(&e, Precision::Seconds),
            "a\\,b\\ c=d\\ e,host=h\\=1\\,2\\ 3 value=1i 0\n"
        );
        let mut e = at("m\\x\\", 0).with_metric(1i64);
        e.host = "a\\b\\,c\\".into();
        assert_eq!(
            line(&e, Precision::Seconds),
            "m\\x/,host=a\\b/\\,c/ value=1i 0\n"
        );
    }

    #[test]
    fn events_without_fields_are_left_out() {
        let mut out = String::from("x");
        let format = Format {
            precision: Precision::Seconds,
            string_fields: true,
        };
        assert!(!encode(&at("nothing", 0), format, &mut out));
        let numbers_only = Format {
            string_fields: false,
            ..format
        };
        assert!(!encode(
            &at("text.only", 0).with_state("ok"),
            numbers_only,
            &mut out
        ));
        assert_eq!(out, "x");
        assert!(encode(
            &at("both", 0).with_state("ok").with_metric(1i64),
            numbers_only,
            &mut out
        ));
        assert_eq!(out, "xboth,host=r1 value=1i 0\n");
    }
}
