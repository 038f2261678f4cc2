//! The `Event`: the one value that travels from a source to every output.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use serde::ser::{Serialize, SerializeMap, Serializer};

/// The longest state pipit keeps, in bytes; longer states are cut at a character boundary.
pub const MAX_STATE_BYTES: usize = 255;

/// A measured value: an integer or a finite float.
///
/// NaN and the infinities cannot be represented: [`Metric::float`] refuses them, so no output ever
/// has to decide what to do with one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Metric {
    /// A whole number, such as a count of bytes.
    Int(i64),
    /// A finite floating-point number, such as a percentage.
    Float(f64),
}

impl Metric {
    /// A float metric, or `None` for NaN and the infinities.
    pub fn float(value: f64) -> Option<Metric> {
        value.is_finite().then_some(Metric::Float(value))
    }

    /// The metric, or `None` for a float that is NaN or infinite.
    pub fn finite(self) -> Option<Metric> {
        match self {
            Metric::Float(v) => Metric::float(v),
            m => Some(m),
        }
    }

    /// The value as a float (integers above 2^53 lose precision).
    pub fn as_f64(self) -> f64 {
        match self {
            Metric::Int(v) => v as f64,
            Metric::Float(v) => v,
        }
    }
}

impl From<i64> for Metric {
    fn from(v: i64) -> Metric {
        Metric::Int(v)
    }
}

impl From<f64> for Metric {
    /// A float metric; [`Event::with_metric`] and the source helper drop it if it is not finite.
    fn from(v: f64) -> Metric {
        Metric::Float(v)
    }
}

impl From<u32> for Metric {
    fn from(v: u32) -> Metric {
        Metric::Int(i64::from(v))
    }
}

impl From<u64> for Metric {
    /// Values above `i64::MAX` become floats rather than wrapping negative.
    fn from(v: u64) -> Metric {
        i64::try_from(v).map_or(Metric::Float(v as f64), Metric::Int)
    }
}

impl fmt::Display for Metric {
    /// Integers print without a decimal point; floats print in their shortest exact form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Metric::Int(v) => write!(f, "{v}"),
            Metric::Float(v) => write!(f, "{v}"),
        }
    }
}

/// A state such as `ok`, `warning` or `critical`, at most [`MAX_STATE_BYTES`] long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State(String);

impl State {
    /// The state of a healthy service.
    pub const OK: &'static str = "ok";
    /// The state of a service that needs attention soon.
    pub const WARNING: &'static str = "warning";
    /// The state of a failed service.
    pub const CRITICAL: &'static str = "critical";
    /// The state of a service whose health could not be determined.
    pub const UNKNOWN: &'static str = "unknown";

    /// A state from any text, cut to [`MAX_STATE_BYTES`] at a character boundary.
    pub fn new(text: &str) -> State {
        let mut end = text.len().min(MAX_STATE_BYTES);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        State(text[..end].to_owned())
    }

    /// The state as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What an event is: a measurement, or a line of a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A measurement; outputs that only take numbers (Graphite) take these.
    Metric,
    /// A log line or a change notice; its text is in the description.
    Log,
}

impl Kind {
    /// The kind's name as used in config and JSON: `metric` or `log`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Metric => "metric",
            Kind::Log => "log",
        }
    }
}

/// One observation of one service on one host.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// What was measured, as a dotted name such as `interface.eth0.rx_bytes`.
    pub service: String,
    /// The host it was measured on; sources default it to the system's host name.
    pub host: String,
    /// A health state, when the source judges one.
    pub state: Option<State>,
    /// Free text: a check's message, a log line.
    pub description: Option<String>,
    /// The measured value, always finite.
    pub metric: Option<Metric>,
    /// How long the event stays valid; sources default it to twice their interval.
    pub ttl: Option<Duration>,
    /// Labels without values.
    pub tags: Vec<String>,
    /// Labels with values.
    pub attributes: BTreeMap<String, String>,
    /// When the observation was made.
    pub time: SystemTime,
    /// A measurement or a log line.
    pub kind: Kind,
}

impl Event {
    /// A metric event for `service` on `host`, timed now, with no other field set.
    pub fn new(service: impl Into<String>, host: impl Into<String>) -> Event {
        Event {
            service: service.into(),
            host: host.into(),
            state: None,
            description: None,
            metric: None,
            ttl: None,
            tags: Vec::new(),
            attributes: BTreeMap::new(),
            time: SystemTime::now(),
            kind: Kind::Metric,
        }
    }

    /// Sets the metric; a non-finite float leaves the event without one.
    pub fn with_metric(mut self, metric: impl Into<Metric>) -> Event {
        self.metric = metric.into().finite();
        self
    }

    /// Sets the state, cut to [`MAX_STATE_BYTES`].
    pub fn with_state(mut self, state: &str) -> Event {
        self.state = Some(State::new(state));
        self
    }

    /// Sets the description.
    pub fn with_description(mut self, text: impl Into<String>) -> Event {
        self.description = Some(text.into());
        self
    }

    /// Sets the time of the observation.
    pub fn with_time(mut self, time: SystemTime) -> Event {
        self.time = time;
        self
    }

    /// The event's time as whole seconds since the Unix epoch (0 for times before it).
    pub fn unix_seconds(&self) -> i64 {
        self.time
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    }

    /// The event's time as microseconds since the Unix epoch (0 for times before it).
    pub fn unix_micros(&self) -> i64 {
        self.time
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64)
    }
}

/// The JSON form of an event, as the stdout output and `pipit once --json` print it: fields that
/// are not set are left out; `time` is seconds since the Unix epoch with microseconds; `ttl` is in
/// seconds.
impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("service", &self.service)?;
        map.serialize_entry("host", &self.host)?;
        if let Some(state) = &self.state {
            map.serialize_entry("state", state.as_str())?;
        }
        if let Some(description) = &self.description {
            map.serialize_entry("description", description)?;
        }
        match self.metric {
            Some(Metric::Int(v)) => map.serialize_entry("metric", &v)?,
            Some(Metric::Float(v)) => map.serialize_entry("metric", &v)?,
            None => {}
        }
        if let Some(ttl) = self.ttl {
            map.serialize_entry("ttl", &ttl.as_secs_f64())?;
        }
        if !self.tags.is_empty() {
            map.serialize_entry("tags", &self.tags)?;
        }
        if !self.attributes.is_empty() {
            map.serialize_entry("attributes", &self.attributes)?;
        }
        map.serialize_entry("time", &(self.unix_micros() as f64 / 1e6))?;
        map.serialize_entry("kind", self.kind.as_str())?;
        map.end()
    }
}

impl Event {
    /// Reads an event from its JSON form (the form [`Serialize`] writes): `service` and `host` are
    /// required; a non-finite or non-numeric `metric`, an unknown `kind` or a field of the wrong
    /// type is an error naming the field.
    pub fn from_json(value: &serde_json::Value) -> Result<Event, String> {
        let obj = value.as_object().ok_or("an event must be a JSON object")?;
        let text = |key: &str| -> Result<Option<String>, String> {
            match obj.get(key) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(format!("{key}: expected a string")),
            }
        };
        let seconds = |key: &str| -> Result<Option<f64>, String> {
            match obj.get(key) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(v) => match v.as_f64() {
                    Some(s) if (0.0..1e12).contains(&s) => Ok(Some(s)),
                    _ => Err(format!("{key}: expected a number of seconds")),
                },
            }
        };
        let mut event = Event::new(
            text("service")?.ok_or("service: missing")?,
            text("host")?.ok_or("host: missing")?,
        );
        event.state = text("state")?.map(|s| State::new(&s));
        event.description = text("description")?;
        event.metric = match obj.get("metric") {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(match (v.as_i64(), v.as_f64()) {
                (Some(i), _) if !v.is_f64() => Metric::Int(i),
                (_, Some(f)) => Metric::float(f).ok_or("metric: not finite")?,
                _ => return Err("metric: expected a number".into()),
            }),
        };
        event.ttl = seconds("ttl")?.map(Duration::from_secs_f64);
        if let Some(tags) = obj.get("tags") {
            let list = tags
                .as_array()
                .ok_or("tags: expected an array of strings")?;
            event.tags = list
                .iter()
                .map(|t| {
                    t.as_str()
                        .map(str::to_owned)
                        .ok_or("tags: expected an array of strings")
                })
                .collect::<Result<_, _>>()?;
        }
        if let Some(attributes) = obj.get("attributes") {
            let map = attributes
                .as_object()
                .ok_or("attributes: expected an object of strings")?;
            for (k, v) in map {
                let v = v
                    .as_str()
                    .ok_or("attributes: expected an object of strings")?;
                event.attributes.insert(k.clone(), v.to_owned());
            }
        }
        if let Some(t) = seconds("time")? {
            event.time = SystemTime::UNIX_EPOCH + Duration::from_micros((t * 1e6).round() as u64);
        }
        event.kind = match text("kind")?.as_deref() {
            None | Some("metric") => Kind::Metric,
            Some("log") => Kind::Log,
            Some(_) => return Err("kind: expected \"metric\" or \"log\"".into()),
        };
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_floats_never_become_metrics() {
        assert_eq!(Metric::float(f64::NAN), None);
        assert_eq!(Metric::float(f64::INFINITY), None);
        assert_eq!(
            Event::new("a", "h").with_metric(f64::NEG_INFINITY).metric,
            None
        );
        assert_eq!(
            Event::new("a", "h").with_metric(1.5).metric,
            Some(Metric::Float(1.5))
        );
    }

    #[test]
    fn huge_unsigned_values_do_not_wrap() {
        assert_eq!(Metric::from(u64::MAX), Metric::Float(u64::MAX as f64));
        assert_eq!(Metric::from(42u64), Metric::Int(42));
    }

    #[test]
    fn state_is_cut_at_a_char_boundary() {
        let long = "é".repeat(200); // 400 bytes
        let s = State::new(&long);
        assert!(s.as_str().len() <= MAX_STATE_BYTES);
        assert_eq!(s.as_str().len(), 254);
        assert_eq!(State::new("ok").as_str(), "ok");
    }

    #[test]
    fn json_form_leaves_out_unset_fields() {
        let mut e = Event::new("load.1", "r1")
            .with_metric(0.5)
            .with_time(SystemTime::UNIX_EPOCH + Duration::from_millis(1500));
        e.ttl = Some(Duration::from_secs(20));
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"service":"load.1","host":"r1","metric":0.5,"ttl":20.0,"time":1.5,"kind":"metric"}"#
        );
    }

    #[test]
    fn json_form_round_trips() {
        let mut e = Event::new("disk.sda.reads", "r1")
            .with_metric(12i64)
            .with_state("warning")
            .with_description("busy")
            .with_time(SystemTime::UNIX_EPOCH + Duration::from_micros(1_795_000_000_123_456));
        e.ttl = Some(Duration::from_millis(1500));
        e.tags = vec!["a".into(), "b".into()];
        e.attributes.insert("k".into(), "v".into());
        e.kind = Kind::Log;
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(Event::from_json(&json).unwrap(), e);
        let float = Event::new("x", "h")
            .with_metric(2.5)
            .with_time(SystemTime::UNIX_EPOCH);
        assert_eq!(
            Event::from_json(&serde_json::to_value(&float).unwrap()).unwrap(),
            float
        );
    }

    #[test]
    fn json_form_errors_name_the_field() {
        let bad = |text: &str| Event::from_json(&serde_json::from_str(text).unwrap()).unwrap_err();
        assert_eq!(bad(r#"{"host": "h"}"#), "service: missing");
        assert_eq!(
            bad(r#"{"service": "s", "host": "h", "metric": "1"}"#),
            "metric: expected a number"
        );
        assert_eq!(
            bad(r#"{"service": "s", "host": "h", "tags": [1]}"#),
            "tags: expected an array of strings"
        );
        assert_eq!(
            bad(r#"{"service": "s", "host": "h", "kind": "x"}"#),
            "kind: expected \"metric\" or \"log\""
        );
        assert_eq!(
            bad(r#"{"service": "s", "host": "h", "ttl": -1}"#),
            "ttl: expected a number of seconds"
        );
        assert_eq!(bad("[]"), "an event must be a JSON object");
    }

    #[test]
    fn metrics_print_shortest_form() {
        assert_eq!(Metric::Int(-3).to_string(), "-3");
        assert_eq!(Metric::Float(0.25).to_string(), "0.25");
        assert_eq!(Metric::Float(2.0).to_string(), "2");
    }
}
