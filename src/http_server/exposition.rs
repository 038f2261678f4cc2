//! The catalogue's last values in the Prometheus text exposition format, version 0.0.4.
//!
//! The name rule (docs/http-server.md, "Names"): a metric's family comes from its declaration.
//! The source's prefix and the declared name are joined with `_`; a `<placeholder>` that is a whole
//! dot-separated part of the declared name is taken out of the name and becomes a label named after
//! it (`cpu.<core>.<state>` gives `cpu_percent{core="0",state="user"}`); every character other
//! than an ASCII letter, digit or `_` becomes `_`, and a name starting with a digit gets a leading
//! `_`. The declaration's unit, in lower case and as a base unit (`ms_per_second` becomes
//! `seconds_per_second`, its values divided by 1000), is appended (`_bytes`, `_seconds`,
//! `_percent`, `_per_second`, …) unless it is `count`, `state` or empty, or the name holds it
//! already. A metric without a declaration, or whose declared name would keep no literal part, is
//! named after its whole service name. Every family is a gauge: pipit's sources emit levels and
//! rates, not running totals; a name ending in `_total` (kept for counters) ends in `_all`.
//!
//! Labels, in this order: the placeholders, `host`, `tags` (the tags joined with `,`) when there
//! are any, then the source's attributes. A label whose (sanitised) name is already taken is left
//! out. Values older than their source's ttl are not listed, nor are state-only events.

use std::io::{self, Write};
use std::time::SystemTime;

use crate::event::Metric;
use crate::telemetry::catalogue::{Catalogue, Query, Row};

/// Units that add no suffix: a plain number, a count of things, a state code.
const NO_SUFFIX_UNITS: [&str; 3] = ["", "count", "state"];

/// The name and labels of one series.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Series {
    family: String,
    /// `name="escaped value"` pairs joined with `,`, ready to print.
    labels: String,
}

/// Writes every live metric of `catalogue` to `out`, family by family, as of `now`, followed by
/// `extra` (families the caller owns, already in the format).
pub fn write(
    catalogue: &Catalogue,
    now: SystemTime,
    out: &mut impl Write,
    extra: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    let found = catalogue.query(&Query {
        hidden: true,
        ..Query::default()
    });
    let now_us = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as i64;
    let mut series: Vec<(Series, usize)> = found
        .rows
        .iter()
        .enumerate()
        .filter(|(_, row)| {
            let ttl_us = row.source.ttl.as_micros() as i64;
            row.value.is_some() && now_us.saturating_sub(row.time_us) <= ttl_us
        })
        .map(|(i, row)| (series_of(row), i))
        .collect();
    series.sort();
    series.dedup_by(|a, b| a.0 == b.0);
    let mut family: Option<&str> = None;
    for (s, i) in &series {
        let row = &found.rows[*i];
        if family != Some(s.family.as_str()) {
            let help = row.info.map_or(row.name.as_str(), |info| info.description);
            out.write_all(b"# HELP ")?;
            out.write_all(s.family.as_bytes())?;
            out.write_all(b" ")?;
            write_escaped(out, help, false)?;
            writeln!(out, "\n# TYPE {} gauge", s.family)?;
            family = Some(s.family.as_str());
        }
        out.write_all(s.family.as_bytes())?;
        if !s.labels.is_empty() {
            write!(out, "{{{}}}", s.labels)?;
        }
        let scale = row.info.map_or(1.0, |info| base_unit(info.unit).1);
        match row.value {
            Some(Metric::Int(v)) if scale == 1.0 => writeln!(out, " {v}")?,
            Some(m) => writeln!(out, " {}", float(m.as_f64() * scale))?,
            None => {}
        }
    }
    extra(out)
}

/// A float as the format writes it: `NaN`, `+Inf`, `-Inf` or the shortest decimal that reads back
/// the same.
fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        format!("{v}")
    }
}

/// The family and labels of one catalogue row, by the rule in the module docs.
fn series_of(row: &Row) -> Series {
    let source = &row.source;
    let unprefixed = if source.prefix.is_empty() {
        Some(row.name.as_str())
    } else {
        row.name
            .strip_prefix(source.prefix.as_str())
            .and_then(|n| n.strip_prefix('.'))
    };
    let mut labels = Labels::default();
    let declared = row
        .info
        .zip(unprefixed)
        .and_then(|(info, name)| Some((info, split_declared(info.name, name)?)));
    let family = match declared {
        Some((info, (literal, holes))) => {
            for (label, value) in holes {
                labels.push(&label, &value);
            }
            let base = if source.prefix.is_empty() {
                literal
            } else {
                format!("{}.{literal}", source.prefix)
            };
            with_unit(sanitise(&base), info.unit)
        }
        None => {
            let name = sanitise(&row.name);
            row.info
                .map_or(name.clone(), |info| with_unit(name, info.unit))
        }
    };
    labels.push("host", &source.host);
    if !source.tags.is_empty() {
        labels.push("tags", &source.tags.join(","));
    }
    for (key, value) in &source.attributes {
        labels.push(key, value);
    }
    Series {
        family,
        labels: labels.text,
    }
}

/// A declared unit as Prometheus names it, with the factor that turns a value into it: base
/// units, lower case (`ms_per_second` becomes `seconds_per_second`, `dBm` becomes `dbm`).
fn base_unit(unit: &str) -> (String, f64) {
    match unit {
        "ms_per_second" => ("seconds_per_second".to_owned(), 0.001),
        _ => (sanitise(unit).to_ascii_lowercase(), 1.0),
    }
}

/// `name` with its unit appended unless the unit adds none or the name holds it already; words
/// the name ends with are not repeated (`rx_bytes` in `bytes_per_second` becomes
/// `rx_bytes_per_second`). A gauge never ends in `_total`, which Prometheus keeps for counters:
/// that last word becomes `_all`.
fn with_unit(name: String, unit: &str) -> String {
    let mut name = match name.strip_suffix("_total") {
        Some(head) => format!("{head}_all"),
        None if name == "total" => "all".to_owned(),
        None => name,
    };
    if NO_SUFFIX_UNITS.contains(&unit) {
        return name;
    }
    let unit = base_unit(unit).0;
    if format!("_{name}_").contains(&format!("_{unit}_")) {
        return name;
    }
    let words: Vec<&str> = unit.split('_').collect();
    let shared = (1..=words.len())
        .rev()
        .find(|&n| {
            let head = words[..n].join("_");
            name == head || name.ends_with(&format!("_{head}"))
        })
        .unwrap_or(0);
    for word in &words[shared..] {
        name.push('_');
        name.push_str(word);
    }
    name
}

/// Label pairs being built; a name already taken is skipped.
#[derive(Debug, Default)]
struct Labels {
    names: Vec<String>,
    text: String,
}

impl Labels {
    fn push(&mut self, name: &str, value: &str) {
        let mut name = sanitise(name);
        if name.starts_with("__") {
            // Reserved for Prometheus's own use.
            name.insert_str(0, "label");
        }
        if self.names.contains(&name) {
            return;
        }
        if !self.text.is_empty() {
            self.text.push(',');
        }
        self.text.push_str(&name);
        self.text.push_str("=\"");
        let mut escaped = Vec::with_capacity(value.len());
        let _ = write_escaped(&mut escaped, value, true);
        self.text.push_str(&String::from_utf8_lossy(&escaped));
        self.text.push('"');
        self.names.push(name);
    }
}

/// `name` as a metric or label name: characters other than ASCII letters, digits and `_` become
/// `_`, and a leading digit gets a `_` before it.
fn sanitise(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        out.push('_');
    }
    out.extend(name.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        }
    }));
    out
}

/// Writes `text` escaped for a `# HELP` line (`\` and newline) or, when `quoted`, for a label
/// value (also `"`).
fn write_escaped(out: &mut dyn Write, text: &str, quoted: bool) -> io::Result<()> {
    let mut start = 0;
    for (i, c) in text.char_indices() {
        let escape: &[u8] = match c {
            '\\' => b"\\\\",
            '\n' => b"\\n",
            '"' if quoted => b"\\\"",
            _ => continue,
        };
        out.write_all(&text.as_bytes()[start..i])?;
        out.write_all(escape)?;
        start = i + 1;
    }
    out.write_all(&text.as_bytes()[start..])
}

/// One part of a declared name.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Part<'a> {
    Literal(&'a str),
    Hole(&'a str),
}

/// Splits `name` (a service name without its prefix) by its `declared` name: the literal parts
/// joined with `.`, and each placeholder's name with the value it holds in `name`. `None` when a
/// placeholder is not a whole dot-separated part, no literal part is left, or `name` does not
/// match.
fn split_declared(declared: &str, name: &str) -> Option<(String, Vec<(String, String)>)> {
    let mut parts = Vec::new();
    for segment in declared.split('.') {
        match segment.strip_prefix('<').and_then(|s| s.strip_suffix('>')) {
            Some(hole) if !hole.contains(['<', '>']) => parts.push(Part::Hole(hole)),
            _ if segment.contains(['<', '>']) => return None,
            _ => parts.push(Part::Literal(segment)),
        }
    }
    if !parts.iter().any(|p| matches!(p, Part::Literal(_))) {
        return None;
    }
    let mut values = Vec::new();
    if !match_parts(&parts, name, &mut values) {
        return None;
    }
    let literal: Vec<&str> = parts
        .iter()
        .filter_map(|p| match p {
            Part::Literal(l) => Some(*l),
            Part::Hole(_) => None,
        })
        .collect();
    let holes = parts
        .iter()
        .filter_map(|p| match p {
            Part::Hole(h) => Some((*h).to_owned()),
            Part::Literal(_) => None,
        })
        .zip(values.into_iter().map(str::to_owned))
        .collect();
    Some((literal.join("."), holes))
}

/// Matches `name` against `parts` (joined by dots; a hole takes one or more characters, dots
/// included), pushing each hole's value; the first match from the left wins.
fn match_parts<'n>(parts: &[Part<'_>], name: &'n str, values: &mut Vec<&'n str>) -> bool {
    let Some((first, rest)) = parts.split_first() else {
        return name.is_empty();
    };
    // What follows the part: nothing when it is the last, else a dot and the rest.
    let next = |after: &'n str, values: &mut Vec<&'n str>| {
        if rest.is_empty() {
            after.is_empty()
        } else {
            after
                .strip_prefix('.')
                .is_some_and(|after| match_parts(rest, after, values))
        }
    };
    match first {
        Part::Literal(l) => name
            .strip_prefix(l)
            .is_some_and(|after| next(after, values)),
        Part::Hole(_) => {
            let ends = name
                .char_indices()
                .skip(1)
                .map(|(i, _)| i)
                .chain([name.len()]);
            for end in ends.filter(|&e| e > 0) {
                let depth = values.len();
                values.push(&name[..end]);
                if next(&name[end..], values) {
                    return true;
                }
                values.truncate(depth);
            }
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::sources::lookup;
    use crate::telemetry::catalogue::CatalogueSource;
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;

    fn source(kind: &str, prefix: &str, tags: &[&str]) -> Arc<CatalogueSource> {
        Arc::new(CatalogueSource {
            name: kind.into(),
            kind: lookup(kind).unwrap().name,
            metrics: lookup(kind).unwrap().metrics,
            prefix: prefix.into(),
            interval: Duration::from_secs(10),
            ttl: Duration::from_secs(20),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            host: "gw\"1".into(),
            attributes: BTreeMap::from([
                ("site name".to_owned(), "a\\b\nc".to_owned()),
                ("host".to_owned(), "shadowed".to_owned()),
            ]),
        })
    }

    fn render(c: &Catalogue) -> String {
        let mut out = Vec::new();
        write(c, SystemTime::now(), &mut out, |_| Ok(())).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn placeholders_become_labels_and_units_suffixes() {
        let c = Catalogue::default();
        c.record(
            &source("cpu", "", &[]),
            &[
                Event::new("cpu.1.user", "h").with_metric(2.5),
                Event::new("cpu.0.user", "h").with_metric(1.5),
            ],
        );
        c.record(
            &source("load", "edge", &["lab", "x"]),
            &[Event::new("edge.load.1", "h").with_metric(3i64)],
        );
        let text = render(&c);
        let expected = concat!(
            "# HELP cpu_percent the same per core, with per_core\n",
            "# TYPE cpu_percent gauge\n",
            "cpu_percent{core=\"0\",state=\"user\",host=\"gw\\\"1\",site_name=\"a\\\\b\\nc\"} 1.5\n",
            "cpu_percent{core=\"1\",state=\"user\",host=\"gw\\\"1\",site_name=\"a\\\\b\\nc\"} 2.5\n",
            "# HELP edge_load_1 run-queue length averaged over 1 minute\n",
            "# TYPE edge_load_1 gauge\n",
            "edge_load_1{host=\"gw\\\"1\",tags=\"lab,x\",site_name=\"a\\\\b\\nc\"} 3\n",
        );
        assert_eq!(text, expected);
    }

    #[test]
    fn stale_and_state_only_values_are_left_out() {
        let c = Catalogue::default();
        let old = SystemTime::now() - Duration::from_secs(21);
        c.record(
            &source("load", "", &[]),
            &[
                Event::new("load.1", "h").with_metric(1i64).with_time(old),
                Event::new("load.5", "h").with_state("ok"),
                Event::new("load.15", "h").with_metric(0.25),
            ],
        );
        let text = render(&c);
        assert!(!text.contains("load_1{"), "{text}");
        assert!(!text.contains("load_5"), "{text}");
        assert!(
            text.contains("load_15{host=\"gw\\\"1\",site_name=\"a\\\\b\\nc\"} 0.25\n"),
            "{text}"
        );
    }

    #[test]
    fn declared_names_split_into_literal_parts_and_labels() {
        let s = |d, n| split_declared(d, n);
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect()
        };
        assert_eq!(
            s("interface.<name>.rx_bytes", "interface.eth0.100.rx_bytes"),
            Some(("interface.rx_bytes".into(), pairs(&[("name", "eth0.100")])))
        );
        assert_eq!(
            s(
                "self.output.<name>.breaker.<target>",
                "self.output.g.breaker.10.0.0.1:2003"
            ),
            Some((
                "self.output.breaker".into(),
                pairs(&[("name", "g"), ("target", "10.0.0.1:2003")])
            ))
        );
        assert_eq!(s("<name>.<label>", "a.b"), None, "no literal part");
        assert_eq!(s("x<a>", "xy"), None, "a placeholder inside a part");
        assert_eq!(s("load.1", "load.15"), None);
        assert_eq!(s("cpu.<core>.user", "cpu..user"), None);
    }

    #[test]
    fn floats_read_back_exactly() {
        assert_eq!(float(f64::NAN), "NaN");
        assert_eq!(float(f64::NEG_INFINITY), "-Inf");
        assert_eq!(float(0.1), "0.1");
        assert_eq!(float(1e21).parse::<f64>().unwrap(), 1e21);
    }

    #[test]
    fn names_are_sanitised_and_suffixed_once() {
        assert_eq!(sanitise("1a.b-c"), "_1a_b_c");
        assert_eq!(sanitise("é"), "_");
        assert_eq!(with_unit("rx_bytes".into(), "bytes"), "rx_bytes");
        assert_eq!(
            with_unit("rx".into(), "bytes_per_second"),
            "rx_bytes_per_second"
        );
        assert_eq!(with_unit("procs".into(), "count"), "procs");
        assert_eq!(
            with_unit("processes_total".into(), "count"),
            "processes_all"
        );
        assert_eq!(
            with_unit("memory_percent_used".into(), "percent"),
            "memory_percent_used"
        );
        assert_eq!(with_unit("signal".into(), "dBm"), "signal_dbm");
        assert_eq!(
            with_unit("disk_io_time".into(), "ms_per_second"),
            "disk_io_time_seconds_per_second"
        );
        assert_eq!(base_unit("ms_per_second").1, 0.001);
        let mut l = Labels::default();
        l.push("__name__", "x");
        l.push("a b", "1");
        l.push("a-b", "2");
        assert_eq!(l.text, "label__name__=\"x\",a_b=\"1\"");
    }
}
