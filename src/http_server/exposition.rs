//! The catalogue's last values in the Prometheus text exposition format, version 0.0.4.
//!
//! Each row is named by [`crate::prometheus_name`] (docs/http-server.md, "Names"). Values older
//! than their source's ttl are not listed, nor are state-only events.

use std::collections::HashMap;
use std::io::{self, Write};
use std::time::SystemTime;

use crate::event::Metric;
use crate::prometheus_name::{self, Declared, Origin, base_unit};
use crate::telemetry::catalogue::{Catalogue, CatalogueSource, HeldRow, MetricInfo};

/// Where one text lies in [`Lines::text`].
#[derive(Debug, Clone, Copy)]
struct Span {
    start: u32,
    len: u32,
}

/// One series to write, compact: its texts lie in the shared arena.
#[derive(Debug)]
struct Line {
    family: Span,
    /// `name="escaped value"` pairs joined with `,`, ready to print.
    labels: Span,
    /// The metric's name, the help of a family without a declaration (empty when declared).
    name: Span,
    info: Option<&'static MetricInfo>,
    value: Metric,
}

/// Every series of an exposition, about what the catalogue holds per metric or less: the texts
/// share one arena, and rows of one source with the same labels share them.
#[derive(Debug, Default)]
struct Lines {
    /// UTF-8 texts back to back, sliced as bytes (no char boundary to check).
    text: Vec<u8>,
    lines: Vec<Line>,
    /// The last labels of each source, by its address.
    labels_of: HashMap<usize, Span>,
}

impl Lines {
    fn push_text(&mut self, text: &str) -> Span {
        let start = self.text.len();
        self.text.extend_from_slice(text.as_bytes());
        Span {
            start: start as u32,
            len: text.len() as u32,
        }
    }

    fn text(&self, span: Span) -> &[u8] {
        &self.text[span.start as usize..][..span.len as usize]
    }

    /// The labels of a row of `source`: its last ones again when they are the same (every label
    /// the source's own, as for all its undeclared names).
    fn push_labels(&mut self, source: &CatalogueSource, labels: &str) -> Span {
        let key = std::ptr::from_ref(source) as usize;
        match self.labels_of.get(&key) {
            Some(&span) if self.text(span) == labels.as_bytes() => span,
            _ => {
                let span = self.push_text(labels);
                self.labels_of.insert(key, span);
                span
            }
        }
    }

    /// Adds the series of `row`, when it has a value.
    fn push(&mut self, row: &HeldRow<'_>) {
        let Some(value) = row.value else {
            return;
        };
        let series = series_of(row);
        let line = Line {
            family: self.push_text(&series.family),
            labels: self.push_labels(row.source, &series.labels),
            name: self.push_text(if row.info.is_some() { "" } else { row.name }),
            info: row.info,
            value,
        };
        self.lines.push(line);
    }
}

/// Writes every live metric of `catalogue` to `out`, family by family, as of `now`, followed by
/// `extra` (families the caller owns, already in the format).
///
/// The series are named and sorted under the catalogue's lock (a few milliseconds for 10,000
/// metrics), and written after it is released.
pub fn write(
    catalogue: &Catalogue,
    now: SystemTime,
    out: &mut impl Write,
    extra: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    let now_us = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as i64;
    let mut lines = Lines::default();
    let order = catalogue.each_held(|rows| {
        // The name of each line, by its place, while the lock keeps them: the first by name of
        // the rows naming one series is the one written.
        let mut names = Vec::with_capacity(rows.size_hint().0);
        lines.lines.reserve_exact(rows.size_hint().0);
        for row in rows {
            let ttl_us = row.source.ttl.as_micros() as i64;
            if row.value.is_some() && now_us.saturating_sub(row.time_us) <= ttl_us {
                lines.push(&row);
                names.push(row.name);
            }
        }
        let mut order: Vec<u32> = (0..lines.lines.len() as u32).collect();
        let key = |i: &u32| {
            let line = &lines.lines[*i as usize];
            (lines.text(line.family), lines.text(line.labels))
        };
        order.sort_unstable_by(|a, b| {
            key(a)
                .cmp(&key(b))
                .then(names[*a as usize].cmp(names[*b as usize]))
        });
        order.dedup_by(|a, b| key(a) == key(b));
        order
    });
    let mut family: Option<&[u8]> = None;
    for line in order.iter().map(|i| &lines.lines[*i as usize]) {
        let name = lines.text(line.family);
        if family != Some(name) {
            let help = match line.info {
                Some(info) => info.description,
                None => std::str::from_utf8(lines.text(line.name)).unwrap_or_default(),
            };
            out.write_all(b"# HELP ")?;
            out.write_all(name)?;
            out.write_all(b" ")?;
            write_escaped(out, help, false)?;
            out.write_all(b"\n# TYPE ")?;
            out.write_all(name)?;
            out.write_all(b" gauge\n")?;
            family = Some(name);
        }
        out.write_all(name)?;
        let labels = lines.text(line.labels);
        if !labels.is_empty() {
            out.write_all(b"{")?;
            out.write_all(labels)?;
            out.write_all(b"}")?;
        }
        let scale = line.info.map_or(1.0, |info| base_unit(info.unit).1);
        match line.value {
            Metric::Int(v) if scale == 1.0 => writeln!(out, " {v}")?,
            m => writeln!(out, " {}", float(m.as_f64() * scale))?,
        }
    }
    extra(out)
}

/// The family and labels of one series.
struct Series {
    family: String,
    labels: String,
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

/// The family and labels of one catalogue row, by [`prometheus_name::series`].
fn series_of(row: &HeldRow<'_>) -> Series {
    let source = row.source;
    let named = prometheus_name::series(&Origin {
        service: row.name,
        prefix: &source.prefix,
        declared: row.info.map(|info| Declared {
            name: info.name,
            unit: info.unit,
        }),
        host: &source.host,
        tags: &source.tags,
        attributes: &source.attributes,
    });
    let mut labels = String::new();
    for (name, value) in &named.labels {
        if !labels.is_empty() {
            labels.push(',');
        }
        labels.push_str(name);
        labels.push_str("=\"");
        let mut escaped = Vec::with_capacity(value.len());
        let _ = write_escaped(&mut escaped, value, true);
        labels.push_str(&String::from_utf8_lossy(&escaped));
        labels.push('"');
    }
    Series {
        family: named.family,
        labels,
    }
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
    fn floats_read_back_exactly() {
        assert_eq!(float(f64::NAN), "NaN");
        assert_eq!(float(f64::NEG_INFINITY), "-Inf");
        assert_eq!(float(0.1), "0.1");
        assert_eq!(float(1e21).parse::<f64>().unwrap(), 1e21);
    }
}
