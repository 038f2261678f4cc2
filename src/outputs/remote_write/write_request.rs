//! Events as the protobuf `WriteRequest` of Prometheus remote write 1.0, encoded by hand.
//!
//! Field numbers follow Prometheus's `prompb` (proto3):
//!
//! | message | field | # | wire type |
//! |---|---|---|---|
//! | `WriteRequest` | `timeseries` (repeated `TimeSeries`) | 1 | bytes |
//! | `TimeSeries` | `labels` (repeated `Label`) | 1 | bytes |
//! | `TimeSeries` | `samples` (repeated `Sample`) | 2 | bytes |
//! | `Label` | `name`, `value` | 1, 2 | bytes |
//! | `Sample` | `value` (double) | 1 | fixed64 |
//! | `Sample` | `timestamp` (int64, milliseconds) | 2 | varint |
//!
//! Each event with a metric is one `TimeSeries` with one `Sample`: its labels are `__name__` and
//! the labels of [`crate::prometheus_name::series`] (with the output's extra labels after them),
//! sorted by name as the spec requires; a label with an empty value is left out (Prometheus
//! reads it as absent). The declaration is the one the configured sources give the service name
//! ([`declaration`]), and its unit's factor applies to the value, as on `/metrics`. Integers are
//! sent as doubles (exact up to 2^53).

use std::collections::BTreeMap;

use crate::event::Event;
use crate::prometheus_name::{Origin, SourceNames, base_unit, declaration, series};
use crate::protobuf::{BYTES, bytes_field, fixed64_field, key, varint, varint_field};

const WRITE_REQUEST_TIMESERIES: u8 = 1;
const TIMESERIES_LABELS: u8 = 1;
const TIMESERIES_SAMPLES: u8 = 2;
const LABEL_NAME: u8 = 1;
const LABEL_VALUE: u8 = 2;
const SAMPLE_VALUE: u8 = 1;
const SAMPLE_TIMESTAMP: u8 = 2;

/// Builds `WriteRequest`s, reusing its buffers from one to the next.
#[derive(Debug, Default)]
pub struct Encoder {
    /// Labels added to every series whose own labels do not have the name.
    extra: Vec<(String, String)>,
    /// The configured sources' declared metrics.
    sources: Vec<SourceNames>,
    series: Vec<u8>,
    part: Vec<u8>,
}

impl Encoder {
    /// An encoder adding `extra` labels (already valid label names), naming series by the
    /// declarations of `sources`.
    pub fn new(extra: &BTreeMap<String, String>, sources: &[SourceNames]) -> Encoder {
        Encoder {
            extra: extra.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            sources: sources.to_vec(),
            ..Encoder::default()
        }
    }

    /// Appends `event` to the `WriteRequest` in `out` as one `TimeSeries`; false (and nothing
    /// appended) when it has no metric.
    pub fn push(&mut self, event: &Event, out: &mut Vec<u8>) -> bool {
        let Some(metric) = event.metric else {
            return false;
        };
        let found = declaration(&self.sources, &event.service);
        let named = series(&Origin {
            service: &event.service,
            prefix: found.map_or("", |(prefix, _)| prefix),
            declared: found.map(|(_, declared)| declared),
            host: &event.host,
            tags: &event.tags,
            attributes: &event.attributes,
        });
        let scale = found.map_or(1.0, |(_, declared)| base_unit(declared.unit).1);
        let mut labels: Vec<(&str, &str)> = Vec::with_capacity(named.labels.len() + 1);
        labels.push(("__name__", &named.family));
        labels.extend(named.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        for (name, value) in &self.extra {
            if !labels.iter().any(|(taken, _)| taken == name) {
                labels.push((name, value));
            }
        }
        labels.retain(|(_, value)| !value.is_empty());
        labels.sort_unstable();
        self.series.clear();
        for (name, value) in labels {
            self.part.clear();
            bytes_field(LABEL_NAME, name.as_bytes(), &mut self.part);
            bytes_field(LABEL_VALUE, value.as_bytes(), &mut self.part);
            bytes_field(TIMESERIES_LABELS, &self.part, &mut self.series);
        }
        self.part.clear();
        fixed64_field(
            SAMPLE_VALUE,
            (metric.as_f64() * scale).to_bits(),
            &mut self.part,
        );
        varint_field(
            SAMPLE_TIMESTAMP,
            (event.unix_micros() / 1000) as u64,
            &mut self.part,
        );
        bytes_field(TIMESERIES_SAMPLES, &self.part, &mut self.series);
        key(WRITE_REQUEST_TIMESERIES, BYTES, out);
        varint(self.series.len() as u64, out);
        out.extend_from_slice(&self.series);
        true
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::protobuf::{Fields, Value};

    /// A decoded `TimeSeries`: its labels, and its samples as (value, milliseconds).
    type Decoded = (Vec<(String, String)>, Vec<(f64, u64)>);

    /// The labels and samples of every `TimeSeries` in `request`, decoded.
    fn decode(request: &[u8]) -> Vec<Decoded> {
        let text = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
        Fields(request)
            .map(|f| {
                let (1, Value::Bytes(ts)) = f.unwrap() else {
                    panic!("not a timeseries")
                };
                let (mut labels, mut samples) = (Vec::new(), Vec::new());
                for f in Fields(ts) {
                    match f.unwrap() {
                        (1, Value::Bytes(label)) => {
                            let fields: Vec<_> = Fields(label).map(Result::unwrap).collect();
                            let [(1, Value::Bytes(n)), (2, Value::Bytes(v))] = fields[..] else {
                                panic!("{fields:?}")
                            };
                            labels.push((text(n), text(v)));
                        }
                        (2, Value::Bytes(sample)) => {
                            let fields: Vec<_> = Fields(sample).map(Result::unwrap).collect();
                            let [(1, Value::Fixed64(v)), (2, Value::Varint(t))] = fields[..] else {
                                panic!("{fields:?}")
                            };
                            samples.push((f64::from_bits(v), t));
                        }
                        other => panic!("{other:?}"),
                    }
                }
                (labels, samples)
            })
            .collect()
    }

    #[test]
    fn declared_metrics_are_named_as_on_the_metrics_endpoint() {
        let sources = [SourceNames::new(
            "edge",
            [
                ("disk.<device>.io_time", "ms_per_second"),
                ("processes.total", "count"),
            ],
        )];
        let mut encoder = Encoder::new(&BTreeMap::new(), &sources);
        let mut out = Vec::new();
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(5);
        for (service, value) in [
            ("edge.disk.sda.io_time", 250i64),
            ("edge.processes.total", 7),
            ("processes.total", 7),
        ] {
            let event = Event::new(service, "h").with_metric(value).with_time(at);
            assert!(encoder.push(&event, &mut out));
        }
        let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        assert_eq!(
            decode(&out),
            [
                (
                    vec![
                        pair("__name__", "edge_disk_io_time_seconds_per_second"),
                        pair("device", "sda"),
                        pair("host", "h"),
                    ],
                    vec![(0.25, 5)]
                ),
                (
                    vec![pair("__name__", "edge_processes_all"), pair("host", "h")],
                    vec![(7.0, 5)]
                ),
                (
                    vec![pair("__name__", "processes_total"), pair("host", "h")],
                    vec![(7.0, 5)]
                ),
            ]
        );
    }

    #[test]
    fn a_series_has_sorted_labels_and_one_sample() {
        let mut e = Event::new("wan.rtt-ms", "gw")
            .with_metric(12i64)
            .with_time(SystemTime::UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456));
        e.tags = vec!["b".into(), "a".into()];
        e.attributes.insert("Zone".into(), "eu".into());
        e.attributes.insert("empty".into(), String::new());
        e.attributes.insert("__name__".into(), "x".into());
        let extra = BTreeMap::from([
            ("host".to_owned(), "ignored".to_owned()),
            ("site".to_owned(), "lab".to_owned()),
        ]);
        let mut encoder = Encoder::new(&extra, &[]);
        let mut out = Vec::new();
        assert!(encoder.push(&e, &mut out));
        assert!(!encoder.push(&Event::new("s", "h").with_state("ok"), &mut out));
        assert!(encoder.push(&e.clone().with_metric(-0.5), &mut out));
        let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        let labels = vec![
            pair("Zone", "eu"),
            pair("__name__", "wan_rtt_ms"),
            pair("host", "gw"),
            pair("label__name__", "x"),
            pair("site", "lab"),
            pair("tags", "b,a"),
        ];
        assert_eq!(
            decode(&out),
            [
                (labels.clone(), vec![(12.0, 1_700_000_000_123)]),
                (labels, vec![(-0.5, 1_700_000_000_123)]),
            ]
        );
    }
}
