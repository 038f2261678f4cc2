//! Home Assistant MQTT discovery: one retained config message per metric the output publishes,
//! so Home Assistant lists each as a sensor of one device (the host) without any YAML.
//!
//! The message of metric `load.1` of node `r1` goes to
//! `<discovery prefix>/sensor/r1/load_1/config` and names the metric's value topic as its state
//! topic, its declared unit (as Home Assistant spells it), a device class where the unit makes
//! one obvious, the node's `status` topic for availability, and the device. Which metrics are
//! announced is chosen by patterns, and their number is bounded.

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};

use crate::config::reader::{Field, Problems};
use crate::event::Event;
use crate::mqtt::topic::{self, Layout};
use crate::pattern::Pattern;
use crate::prometheus_name::{self, SourceNames};

/// The most sensors announced when `limit` is not set.
pub const DEFAULT_LIMIT: usize = 256;

/// The `discovery` settings of an `mqtt` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    /// The first topic level of config messages; default `homeassistant`.
    pub prefix: String,
    /// Which metrics (by service name) are announced; default all.
    pub metrics: Vec<Pattern>,
    /// The node id level of config topics and the device's identifier; default the host name's
    /// letters, digits, `_` and `-` (others become `_`).
    pub node_id: String,
    /// The most sensors announced; more names are published but not announced, with one warning.
    pub limit: usize,
    /// The configured sources' declared metrics, where a metric's unit is found (handed over at
    /// config load, as the remote-write output gets them).
    pub sources: Vec<SourceNames>,
}

/// Reads the `discovery` object; `None` when it is absent, not enabled, or wrong (then with an
/// error). `node` is the output's host name; `per_collection` says whether the output publishes
/// one message per collection, which discovery cannot describe.
pub fn read(
    field: Option<Field<'_>>,
    node: &str,
    per_collection: bool,
    problems: &mut Problems,
) -> Option<Discovery> {
    let field = field?;
    let mut t = field.table(problems)?;
    let enabled = t.get_or("enabled", false, problems);
    let prefix = match t.field("prefix") {
        None => "homeassistant".to_owned(),
        Some(f) => match f.as_str() {
            Some(p) if !p.is_empty() && !p.contains(['+', '#', '\0']) && !p.ends_with('/') => {
                p.to_owned()
            }
            _ => {
                problems.expected(
                    &f,
                    "topic levels such as \"homeassistant\" (no +, #, NUL or trailing /)",
                );
                String::new()
            }
        },
    };
    let metrics = t
        .get_or::<Vec<String>>("metrics", vec!["*".into()], problems)
        .iter()
        .map(|p| Pattern::new(p))
        .collect();
    let node_id = match t.field("node_id") {
        None => object_id(node),
        Some(f) => match f.as_str() {
            Some(id) if !id.is_empty() && object_id(id) == id => id.to_owned(),
            _ => {
                problems.expected(&f, "letters, digits, \"_\" and \"-\" only, such as \"r1\"");
                String::new()
            }
        },
    };
    let limit = t.number_in("limit", DEFAULT_LIMIT as u64, 1, 10_000, problems) as usize;
    t.finish(problems);
    if enabled && per_collection {
        problems.at(
            &field,
            "Home Assistant reads one value per state topic: discovery needs \"message_per\": \"event\"",
        );
    }
    enabled.then_some(Discovery {
        prefix,
        metrics,
        node_id,
        limit,
        sources: Vec::new(),
    })
}

/// `text` with every character other than an ASCII letter, digit, `_` or `-` turned into `_`: the
/// characters Home Assistant allows in node and object ids.
fn object_id(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A declared unit as Home Assistant spells it, and the device class it makes obvious.
fn unit_and_class(unit: &str) -> (Option<&'static str>, Option<&'static str>) {
    match unit {
        "percent" => (Some("%"), None),
        "bytes" => (Some("B"), Some("data_size")),
        "bytes_per_second" => (Some("B/s"), Some("data_rate")),
        "seconds" => (Some("s"), Some("duration")),
        "celsius" => (Some("°C"), Some("temperature")),
        "dBm" => (Some("dBm"), Some("signal_strength")),
        "per_second" => (Some("/s"), None),
        "ms_per_second" => (Some("ms/s"), None),
        _ => (None, None),
    }
}

/// What the output tells Home Assistant about the node it publishes for.
#[derive(Debug, Clone)]
pub struct Node<'a> {
    /// The output's topic prefix.
    pub prefix: &'a str,
    /// The output's host name, the device's name.
    pub host: &'a str,
    /// The output's payload layout.
    pub layout: Layout,
    /// Whether the node's `status` topic says `online` and `offline`.
    pub availability: bool,
}

/// The config messages built so far, by metric name: announced again after every new connection.
#[derive(Debug, Default)]
pub struct Announcements {
    /// Topic and payload of each announced metric, in the order they were first seen.
    pub messages: Vec<(String, Vec<u8>)>,
    names: HashSet<String>,
    objects: HashMap<String, String>,
    warned_full: bool,
}

impl Announcements {
    /// Adds the config message of `event` when it is a metric the settings choose and not yet
    /// announced; at the limit, says so once (returns the warning's text).
    pub fn add(&mut self, d: &Discovery, node: &Node<'_>, event: &Event) -> Option<String> {
        if event.metric.is_none() || !d.metrics.iter().any(|p| p.matches(&event.service)) {
            return None;
        }
        // The node's own metrics by service; another host's (a check's `host`) by both.
        let name = if event.host == node.host {
            event.service.clone()
        } else {
            format!("{}.{}", event.host, event.service)
        };
        if self.names.contains(&name) {
            return None;
        }
        if self.messages.len() >= d.limit {
            if self.warned_full {
                return None;
            }
            self.warned_full = true;
            return Some(format!(
                "Home Assistant discovery: {} sensors announced, the limit: {} and later names are not announced (raise \"discovery\".\"limit\" or narrow \"metrics\")",
                d.limit, event.service
            ));
        }
        let object = self.object_for(&name);
        let topic = format!("{}/sensor/{}/{object}/config", d.prefix, d.node_id);
        let payload = config(d, node, event, &object).to_string().into_bytes();
        self.names.insert(name);
        self.messages.push((topic, payload));
        None
    }

    /// The object id of metric `name` as an id, with a checksum of the name added when another
    /// name already took that id.
    fn object_for(&mut self, name: &str) -> String {
        let mut object = object_id(name);
        if self
            .objects
            .get(&object)
            .is_some_and(|taken| *taken != name)
        {
            object = format!("{object}_{:08x}", crate::crc32::checksum(name.as_bytes()));
        }
        self.objects.insert(object.clone(), name.to_owned());
        object
    }
}

/// The config message of `event`'s metric as Home Assistant's MQTT sensor reads it.
fn config(d: &Discovery, node: &Node<'_>, event: &Event, object: &str) -> Value {
    let mut state_topic = String::new();
    topic::event_topic(node.prefix, event, &mut state_topic);
    let mut c = json!({
        "name": event.service,
        "unique_id": format!("pipit_{}_{object}", d.node_id),
        "state_topic": state_topic,
        "state_class": "measurement",
        "device": {
            "identifiers": [format!("pipit_{}", d.node_id)],
            "name": node.host,
            "manufacturer": "pipit",
            "sw_version": concat!("pipit ", env!("CARGO_PKG_VERSION")),
        },
    });
    let declared = prometheus_name::declaration(&d.sources, &event.service)
        .map_or("", |(_, declared)| declared.unit);
    let (unit, class) = unit_and_class(declared);
    if let Some(unit) = unit {
        c["unit_of_measurement"] = json!(unit);
    }
    if let Some(class) = class {
        c["device_class"] = json!(class);
    }
    match node.layout {
        Layout::Value { timestamp: false } => {}
        Layout::Value { timestamp: true } => {
            c["value_template"] = json!("{{ value.split(':')[-1] }}");
        }
        Layout::Json => c["value_template"] = json!("{{ value_json.metric }}"),
    }
    if node.availability {
        c["availability_topic"] = json!(topic::node_topic(node.prefix, node.host, "status"));
        c["payload_available"] = json!("online");
        c["payload_not_available"] = json!("offline");
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::reader::read_section;

    fn spec(text: &str, per_collection: bool) -> Result<Option<Discovery>, Vec<String>> {
        read_section(&format!(r#"{{"discovery": {text}}}"#), |t, p| {
            Some(read(t.field("discovery"), "r1.lan", per_collection, p))
        })
    }

    const NODE: Node<'static> = Node {
        prefix: "pipit",
        host: "r1.lan",
        layout: Layout::Value { timestamp: false },
        availability: true,
    };

    #[test]
    fn settings_and_their_defaults() {
        let d = spec(r#"{"enabled": true}"#, false).unwrap().unwrap();
        assert_eq!(
            (d.prefix.as_str(), d.node_id.as_str(), d.limit),
            ("homeassistant", "r1_lan", DEFAULT_LIMIT)
        );
        assert!(d.metrics[0].matches("anything.at.all"));
        assert_eq!(spec(r#"{"prefix": "ha"}"#, false).unwrap(), None);
        let e = spec(
            r#"{"enabled": true, "node_id": "r 1", "prefix": "ha/#", "limit": 0, "colour": 1}"#,
            true,
        )
        .unwrap_err();
        assert_eq!(e.len(), 5, "{e:?}");
        assert!(
            e.iter()
                .any(|m| m.contains("discovery.node_id: expected letters")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.contains("discovery.prefix: expected topic levels")),
            "{e:?}"
        );
        assert!(
            e.iter().any(|m| m.contains("discovery.limit: expected")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.contains("discovery.colour: unknown key")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.contains("needs \"message_per\": \"event\"")),
            "{e:?}"
        );
    }

    #[test]
    fn a_config_message_says_what_home_assistant_needs() {
        let mut d = spec(
            r#"{"enabled": true, "metrics": ["memory.*", "load.*"]}"#,
            false,
        )
        .unwrap()
        .unwrap();
        // What the memory and load sources declare, as the config hands it over.
        d.sources = vec![SourceNames::new(
            "",
            [("memory.used", "bytes"), ("load.<minutes>", "")],
        )];
        let mut a = Announcements::default();
        for e in [
            Event::new("memory.used", "r1.lan").with_metric(1i64),
            Event::new("memory.used", "r1.lan").with_metric(2i64),
            Event::new("load.1", "r1.lan").with_metric(0.5),
            Event::new("load.state", "r1.lan").with_state("ok"),
            Event::new("cpu.total.user", "r1.lan").with_metric(3.0),
        ] {
            assert_eq!(a.add(&d, &NODE, &e), None);
        }
        assert_eq!(a.messages.len(), 2);
        let (topic, payload) = &a.messages[0];
        assert_eq!(topic, "homeassistant/sensor/r1_lan/memory_used/config");
        let c: Value = serde_json::from_slice(payload).unwrap();
        assert_eq!(c["state_topic"], "pipit/r1.lan/memory/used");
        assert_eq!(c["unique_id"], "pipit_r1_lan_memory_used");
        assert_eq!(
            (&c["unit_of_measurement"], &c["device_class"]),
            (&json!("B"), &json!("data_size"))
        );
        assert_eq!(c["availability_topic"], "pipit/r1.lan/status");
        assert_eq!(c["device"]["identifiers"][0], "pipit_r1_lan");
        assert_eq!(c.get("value_template"), None);
        let load: Value = serde_json::from_slice(&a.messages[1].1).unwrap();
        assert_eq!(
            (load.get("unit_of_measurement"), load.get("device_class")),
            (None, None)
        );
        assert_eq!(load["state_class"], "measurement");
    }

    #[test]
    fn object_ids_stay_distinct_and_the_count_bounded() {
        let d = spec(r#"{"enabled": true, "limit": 3}"#, false)
            .unwrap()
            .unwrap();
        let mut a = Announcements::default();
        let json = Node {
            layout: Layout::Json,
            availability: false,
            ..NODE
        };
        for name in ["a.b", "a_b", "a.b"] {
            assert_eq!(
                a.add(&d, &json, &Event::new(name, "r1.lan").with_metric(1i64)),
                None
            );
        }
        assert_eq!(
            a.add(&d, &json, &Event::new("a.b", "other").with_metric(1i64)),
            None
        );
        let topics: Vec<&str> = a.messages.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(topics[0], "homeassistant/sensor/r1_lan/a_b/config");
        assert!(
            topics[1].starts_with("homeassistant/sensor/r1_lan/a_b_") && topics[1] != topics[0]
        );
        assert_eq!(topics[2], "homeassistant/sensor/r1_lan/other_a_b/config");
        let c: Value = serde_json::from_slice(&a.messages[0].1).unwrap();
        assert_eq!(c["value_template"], "{{ value_json.metric }}");
        assert_eq!(c.get("availability_topic"), None);
        let warning = a.add(&d, &json, &Event::new("c", "r1.lan").with_metric(1i64));
        assert!(warning.is_some_and(|w| w.contains("limit")));
        assert_eq!(
            a.add(&d, &json, &Event::new("d", "r1.lan").with_metric(1i64)),
            None
        );
        assert_eq!(a.messages.len(), 3);
    }
}
