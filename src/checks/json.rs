//! JSON events: one object per line, or one array of objects. The fields are those of an event as
//! pipit prints them:
//!
//! ```json
//! {"service": "wan.latency", "metric": 12.5, "state": "ok", "description": "…", "host": "r1",
//!  "ttl": 60, "tags": ["wan"], "attributes": {"isp": "x"}, "time": 1700000000.5, "kind": "metric"}
//! ```
//!
//! Only `service` is required. An unknown field makes the object a problem, like an unknown config
//! key: a typo is reported rather than silently lost.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};

use super::{Problem, each_line, quote};
use crate::event::{Kind, Metric};

/// The fields an object may have.
pub const FIELDS: [&str; 10] = [
    "service",
    "metric",
    "state",
    "description",
    "host",
    "ttl",
    "tags",
    "attributes",
    "time",
    "kind",
];

/// One object read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JsonEvent {
    /// The service name.
    pub service: String,
    /// The host, when given.
    pub host: Option<String>,
    /// The state, when given.
    pub state: Option<String>,
    /// The description, when given.
    pub description: Option<String>,
    /// The value, when given.
    pub metric: Option<Metric>,
    /// The time to live, when given.
    pub ttl: Option<Duration>,
    /// Tags, added to the source's.
    pub tags: Vec<String>,
    /// Attributes, added to the source's.
    pub attributes: BTreeMap<String, String>,
    /// The time, when given.
    pub time: Option<SystemTime>,
    /// A log line rather than a measurement, when `"kind": "log"`.
    pub log: bool,
}

impl JsonEvent {
    /// The event's kind.
    pub fn kind(&self) -> Kind {
        if self.log { Kind::Log } else { Kind::Metric }
    }
}

/// Reads `text`: an array when it starts with `[`, else one object per non-blank line.
pub fn parse(text: &str, events: &mut Vec<JsonEvent>, problems: &mut Vec<Problem>) {
    if text.trim_start().starts_with('[') {
        match serde_json::from_str::<Vec<Value>>(text) {
            Ok(items) => {
                for (i, item) in items.iter().enumerate() {
                    match from_value(item) {
                        Ok(event) => events.push(event),
                        Err(message) => problems.push(Problem {
                            line: 0,
                            message: format!("item {}: {message}", i + 1),
                        }),
                    }
                }
            }
            Err(e) => problems.push(Problem {
                line: e.line(),
                message: format!("not a JSON array ({e}) in {}", quote(text.trim())),
            }),
        }
        return;
    }
    each_line(text, parse_line, events, problems);
}

/// Reads one line holding one object: `None` when the line is blank.
pub fn parse_line(line: &str) -> Result<Option<JsonEvent>, String> {
    if line.trim().is_empty() {
        return Ok(None);
    }
    let value: Value = serde_json::from_str(line)
        .map_err(|e| format!("not JSON ({e}) in {}", quote(line.trim())))?;
    from_value(&value).map(Some)
}

/// Reads one object.
pub fn from_value(value: &Value) -> Result<JsonEvent, String> {
    let Value::Object(object) = value else {
        return Err(format!(
            "expected an object, got {}",
            quote(&value.to_string())
        ));
    };
    if let Some(unknown) = object.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(format!(
            "unknown field {}; expected one of: {}",
            quote(unknown),
            FIELDS.join(", ")
        ));
    }
    let service = string(object, "service")?.ok_or("missing \"service\"")?;
    if service.is_empty() {
        return Err("\"service\" is empty".to_owned());
    }
    let metric = match object.get("metric") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_i64()
                .map(Metric::Int)
                .or_else(|| v.as_f64().and_then(Metric::float))
                .ok_or_else(|| wrong("metric", v, "a number"))?,
        ),
    };
    let ttl = match seconds(object, "ttl")? {
        None => None,
        Some(s) => {
            Some(Duration::try_from_secs_f64(s).map_err(|_| "\"ttl\" is out of range".to_owned())?)
        }
    };
    let time = match seconds(object, "time")? {
        None => None,
        Some(s) => Some(
            Duration::try_from_secs_f64(s)
                .ok()
                .and_then(|d| SystemTime::UNIX_EPOCH.checked_add(d))
                .ok_or_else(|| "\"time\" is out of range".to_owned())?,
        ),
    };
    let tags = match object.get("tags") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|t| {
                t.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| wrong("tags", t, "strings"))
            })
            .collect::<Result<_, _>>()?,
        Some(v) => return Err(wrong("tags", v, "an array of strings")),
    };
    let attributes = match object.get("attributes") {
        None => BTreeMap::new(),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| {
                Ok((
                    k.clone(),
                    v.as_str()
                        .ok_or_else(|| wrong("attributes", v, "strings"))?
                        .to_owned(),
                ))
            })
            .collect::<Result<_, String>>()?,
        Some(v) => return Err(wrong("attributes", v, "an object of strings")),
    };
    let log = match string(object, "kind")?.as_deref() {
        None | Some("metric") => false,
        Some("log") => true,
        Some(other) => {
            return Err(format!(
                "\"kind\" must be \"metric\" or \"log\", got {}",
                quote(other)
            ));
        }
    };
    Ok(JsonEvent {
        service,
        host: string(object, "host")?,
        state: string(object, "state")?,
        description: string(object, "description")?,
        metric,
        ttl,
        tags,
        attributes,
        time,
        log,
    })
}

fn wrong(field: &str, value: &Value, expected: &str) -> String {
    format!(
        "\"{field}\" must be {expected}, got {}",
        quote(&value.to_string())
    )
}

fn string(object: &Map<String, Value>, field: &str) -> Result<Option<String>, String> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(wrong(field, v, "a string")),
    }
}

fn seconds(object: &Map<String, Value>, field: &str) -> Result<Option<f64>, String> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_f64() {
            Some(s) if s >= 0.0 => Ok(Some(s)),
            _ => Err(wrong(field, v, "a number of seconds, 0 or more")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> (Vec<JsonEvent>, Vec<String>) {
        let mut events = Vec::new();
        let mut problems = Vec::new();
        parse(text, &mut events, &mut problems);
        (events, problems.iter().map(|p| p.to_string()).collect())
    }

    #[test]
    fn reads_every_field() {
        let (events, problems) = read(
            r#"{"service": "wan.rtt", "metric": 12.5, "state": "ok", "description": "fine", "host": "r1", "ttl": 60, "tags": ["wan"], "attributes": {"isp": "x"}, "time": 1700000000.5, "kind": "log"}"#,
        );
        assert!(problems.is_empty(), "{problems:?}");
        let e = &events[0];
        assert_eq!(e.service, "wan.rtt");
        assert_eq!(e.metric, Some(Metric::Float(12.5)));
        assert_eq!(e.state.as_deref(), Some("ok"));
        assert_eq!(e.description.as_deref(), Some("fine"));
        assert_eq!(e.host.as_deref(), Some("r1"));
        assert_eq!(e.ttl, Some(Duration::from_secs(60)));
        assert_eq!(e.tags, vec!["wan"]);
        assert_eq!(e.attributes["isp"], "x");
        assert_eq!(
            e.time,
            Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_500))
        );
        assert_eq!(e.kind(), Kind::Log);
    }

    #[test]
    fn reads_lines_and_arrays() {
        let (events, problems) =
            read("{\"service\": \"a\", \"metric\": 1}\n\n{\"service\": \"b\"}\n");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            events
                .iter()
                .map(|e| e.service.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(events[0].metric, Some(Metric::Int(1)));
        let (events, problems) =
            read("[{\"service\": \"a\"},\n {\"service\": \"b\", \"metric\": -2}]\n");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(events.len(), 2);
    }

    #[test]
    fn bad_objects_are_problems_and_the_rest_still_count() {
        let (events, problems) = read(
            "{\"service\": \"ok\"}\nnot json\n[1]\n{\"metric\": 1}\n{\"service\": \"x\", \"metrc\": 1}\n{\"service\": \"x\", \"metric\": \"1\"}\n{\"service\": \"x\", \"ttl\": -1}\n{\"service\": \"good\"}\n",
        );
        assert_eq!(
            events
                .iter()
                .map(|e| e.service.as_str())
                .collect::<Vec<_>>(),
            ["ok", "good"]
        );
        assert_eq!(problems.len(), 6, "{problems:#?}");
        assert!(
            problems[0].starts_with("line 2: not JSON (")
                && problems[0].ends_with(") in \"not json\""),
            "{}",
            problems[0]
        );
        assert!(
            problems[1].starts_with("line 3: expected an object, got \"[1]\""),
            "{}",
            problems[1]
        );
        assert_eq!(problems[2], "line 4: missing \"service\"");
        assert!(
            problems[3].starts_with("line 5: unknown field \"metrc\""),
            "{}",
            problems[3]
        );
        assert_eq!(
            problems[4],
            "line 6: \"metric\" must be a number, got \"\\\"1\\\"\""
        );
        assert_eq!(
            problems[5],
            "line 7: \"ttl\" must be a number of seconds, 0 or more, got \"-1\""
        );
    }

    #[test]
    fn a_bad_array_is_one_problem_and_bad_items_are_named() {
        let (events, problems) = read("[{\"service\": \"a\"}, 3, {\"service\": \"b\"}]");
        assert_eq!(events.len(), 2);
        assert_eq!(problems, vec!["item 2: expected an object, got \"3\""]);
        let (events, problems) = read("[{\"service\": \"a\"},");
        assert!(events.is_empty());
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("not a JSON array"), "{}", problems[0]);
    }
}
