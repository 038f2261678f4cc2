//! The status page's history: the last [`POINTS`] samples of the metrics its charts show, in a
//! ring of bounded size, sampled every `http_server.chart_step` from the catalogue's last values
//! (and, for `pipit.delivered.<output>`, from the outputs' delivered counters).
//!
//! Its size is fixed by its bounds: [`POINTS`] sample times of 4 bytes (480), and for each of at
//! most [`MAX_SERIES`] series [`POINTS`] values of 4 bytes, 40 bytes of bookkeeping and its name
//! (520 bytes and the name): 17,120 bytes and the names at most (docs/http-server.md, "The status
//! page").

use std::io::{self, Write};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::complain::Complaint;
use crate::pattern::Pattern;
use crate::telemetry::{Telemetry, get};

/// Samples kept: an hour at the default step of 30 s.
pub const POINTS: usize = 120;

/// Series kept at most; a metric matching a chart once the history holds this many is left out.
pub const MAX_SERIES: usize = 32;

/// The name prefix of the delivery-rate series, one per output.
const DELIVERED: &str = "pipit.delivered.";

/// One charted metric.
#[derive(Debug)]
struct Series {
    name: Box<str>,
    unit: &'static str,
    /// One value per slot of the ring, NaN where the metric had none.
    values: Box<[f32; POINTS]>,
}

/// The ring of samples.
#[derive(Debug)]
pub struct History {
    charts: Vec<Pattern>,
    step: Duration,
    /// When each slot was sampled, in seconds since the Unix epoch; 0 for a slot never written.
    times: Box<[u32; POINTS]>,
    /// The slot the next sample goes to.
    next: usize,
    series: Vec<Series>,
    /// Each output's delivered count and when it was read, for its rate.
    delivered: Vec<(String, u64, SystemTime)>,
    full: Complaint,
}

impl History {
    /// An empty history of the metrics matching `charts`, sampled every `step`.
    pub fn new(charts: Vec<Pattern>, step: Duration) -> History {
        History {
            charts,
            step,
            times: Box::new([0; POINTS]),
            next: 0,
            series: Vec::new(),
            delivered: Vec::new(),
            full: Complaint::new("http_server"),
        }
    }

    /// How often a sample is taken.
    pub fn step(&self) -> Duration {
        self.step
    }

    fn charted(&self, name: &str) -> bool {
        self.charts.iter().any(|p| p.matches(name))
    }

    /// Takes one sample at `now`: every live value of a charted metric, and the delivery rate of
    /// every charted output since the last sample.
    pub fn sample(&mut self, telemetry: &Telemetry, now: SystemTime) {
        let now_us = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros() as i64;
        let mut found: Vec<(String, &'static str, f64)> = telemetry.catalogue.each_held(|rows| {
            rows.filter(|row| {
                let ttl_us = row.source.ttl.as_micros() as i64;
                now_us.saturating_sub(row.time_us) <= ttl_us && self.charted(row.name)
            })
            .filter_map(|row| {
                let unit = row.info.map_or("", |info| info.unit);
                Some((row.name.to_owned(), unit, row.value?.as_f64()))
            })
            .collect()
        });
        found.sort_by(|a, b| a.0.cmp(&b.0));
        let mut delivered = Vec::new();
        for output in telemetry.outputs() {
            let name = format!("{DELIVERED}{}", output.name);
            if !self.charted(&name) {
                continue;
            }
            let count = get(&output.events_out);
            let before = self.delivered.iter().find(|(n, ..)| *n == output.name);
            if let Some((_, was, then)) = before {
                let secs = now.duration_since(*then).unwrap_or_default().as_secs_f64();
                if secs > 0.0 && count >= *was {
                    found.push((name, "per_second", (count - was) as f64 / secs));
                }
            }
            delivered.push((output.name.clone(), count, now));
        }
        self.delivered = delivered;
        self.record(now, &found);
    }

    /// Writes `found` into the next slot; a series with no value left anywhere in the ring is
    /// forgotten, to make room.
    fn record(&mut self, now: SystemTime, found: &[(String, &'static str, f64)]) {
        let slot = self.next;
        self.next = (slot + 1) % POINTS;
        self.times[slot] = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
        for series in &mut self.series {
            series.values[slot] = f32::NAN;
        }
        self.series.retain(|s| s.values.iter().any(|v| !v.is_nan()));
        let mut left_out = 0;
        for (name, unit, value) in found {
            let i = match self.series.iter().position(|s| *s.name == **name) {
                Some(i) => i,
                None if self.series.len() < MAX_SERIES => {
                    self.series.push(Series {
                        name: name.as_str().into(),
                        unit,
                        values: Box::new([f32::NAN; POINTS]),
                    });
                    self.series.len() - 1
                }
                None => {
                    left_out += 1;
                    continue;
                }
            };
            self.series[i].values[slot] = *value as f32;
        }
        if left_out > 0 {
            self.full.fail(&format!(
                "the status page's charts match more than {MAX_SERIES} metrics: {left_out} left out; narrow http_server.charts"
            ));
        } else {
            self.full.recover();
        }
    }

    /// The history as JSON, oldest sample first: `{"step", "times", "series": [{"name", "unit",
    /// "values"}]}`, with `null` for a missing value.
    pub fn write_json(&self, out: &mut impl Write) -> io::Result<()> {
        #[derive(Serialize)]
        struct Json<'a> {
            step: f64,
            times: Vec<u32>,
            series: Vec<SeriesJson<'a>>,
        }
        #[derive(Serialize)]
        struct SeriesJson<'a> {
            name: &'a str,
            unit: &'a str,
            values: Vec<Option<f32>>,
        }
        // Oldest first: the slots from `next` on, then those before it; never-written ones left out.
        let order: Vec<usize> = (self.next..POINTS)
            .chain(0..self.next)
            .filter(|&i| self.times[i] != 0)
            .collect();
        let mut series: Vec<SeriesJson<'_>> = self
            .series
            .iter()
            .map(|s| SeriesJson {
                name: &s.name,
                unit: s.unit,
                values: order
                    .iter()
                    .map(|&i| Some(s.values[i]).filter(|v| !v.is_nan()))
                    .collect(),
            })
            .collect();
        series.sort_by(|a, b| a.name.cmp(b.name));
        let json = Json {
            step: self.step.as_secs_f64(),
            times: order.iter().map(|&i| self.times[i]).collect(),
            series,
        };
        serde_json::to_writer(out, &json).map_err(io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(h: &History) -> serde_json::Value {
        let mut out = Vec::new();
        h.write_json(&mut out).unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn the_ring_keeps_the_last_points_oldest_first() {
        let mut h = History::new(vec![Pattern::new("*")], Duration::from_secs(30));
        for i in 0..POINTS as u64 + 5 {
            h.record(at(1000 + i), &[("load.1".into(), "", i as f64)]);
        }
        let j = json(&h);
        let times = j["times"].as_array().unwrap();
        assert_eq!(times.len(), POINTS);
        assert_eq!(times[0], 1005);
        assert_eq!(times[POINTS - 1], 1000 + POINTS as u64 + 4);
        let values = j["series"][0]["values"].as_array().unwrap();
        assert_eq!(values[0], 5.0);
        assert_eq!(values[POINTS - 1], POINTS as f64 + 4.0);
        assert_eq!(j["step"], 30.0);
    }

    #[test]
    fn series_are_bounded_gaps_are_null_and_gone_ones_forgotten() {
        let mut h = History::new(vec![Pattern::new("*")], Duration::from_secs(1));
        let many: Vec<(String, &str, f64)> = (0..MAX_SERIES + 3)
            .map(|i| (format!("m.{i:02}"), "bytes", 1.0))
            .collect();
        h.record(at(10), &many);
        assert_eq!(h.series.len(), MAX_SERIES);
        h.record(at(11), &[("m.00".into(), "bytes", 2.0)]);
        let j = json(&h);
        assert_eq!(j["series"][0]["values"], serde_json::json!([1.0, 2.0]));
        assert_eq!(j["series"][1]["values"], serde_json::json!([1.0, null]));
        assert_eq!(j["series"][0]["unit"], "bytes");
        // Once its last value leaves the ring, a series is dropped and its room reused.
        for i in 0..POINTS as u64 {
            h.record(at(12 + i), &[("m.00".into(), "bytes", 3.0)]);
        }
        assert_eq!(h.series.len(), 1);
    }
}
