//! Topic names and payloads built from events.
//!
//! An event's topic is `<prefix>/<host>/<service as topic levels>`: the service's dot-separated
//! parts become topic levels, as collectd's mqtt plugin and Telegraf lay them out. Within a level
//! (a part of the service, or the whole host) the bytes that would change the topic's structure
//! are percent-escaped: `%` as `%25`, `/` as `%2F`, `+` as `%2B`, `#` as `%23` and NUL as `%00`;
//! every other byte is kept. The inverse ([`service_of`]) splits the levels after the host on `/`,
//! decodes each and joins them with `.`, so a subscriber gets the service name back exactly.
//!
//! The events of one collection can also go as one message ([`collection_topic`],
//! [`collection_payload`]) on `<prefix>/<host>/<source>`, the source being the first part of the
//! service names (`interface` of `interface.eth0.rx_bytes`), as Telegraf's `batch` mode publishes
//! one message per plugin.

use crate::event::{Event, Metric};

/// Appends `level` to `out` with `%`, `/`, `+`, `#` and NUL escaped.
pub fn push_level(out: &mut String, level: &str) {
    for c in level.chars() {
        match c {
            '%' => out.push_str("%25"),
            '/' => out.push_str("%2F"),
            '+' => out.push_str("%2B"),
            '#' => out.push_str("%23"),
            '\0' => out.push_str("%00"),
            c => out.push(c),
        }
    }
}

/// Writes into `out` the topic of `event`: `<prefix>/<host>/<service levels>`.
pub fn event_topic(prefix: &str, event: &Event, out: &mut String) {
    out.clear();
    out.push_str(prefix);
    out.push('/');
    push_level(out, &event.host);
    for part in event.service.split('.') {
        out.push('/');
        push_level(out, part);
    }
}

/// The first part of a service name: the source that emitted it (or the source's `prefix`).
pub fn source_of(service: &str) -> &str {
    service.split('.').next().unwrap_or(service)
}

/// Writes into `out` the topic of the collection `event` belongs to: `<prefix>/<host>/<source>`,
/// host and source escaped as levels.
pub fn collection_topic(prefix: &str, event: &Event, out: &mut String) {
    out.clear();
    out.push_str(prefix);
    out.push('/');
    push_level(out, &event.host);
    out.push('/');
    push_level(out, source_of(&event.service));
}

/// Writes into `out` the payload of one collection: `{"events": [...]}`, each event in the form of
/// the `json` layout.
pub fn collection_payload<'a>(events: impl IntoIterator<Item = &'a Event>, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(b"{\"events\":[");
    for (i, event) in events.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Writing an event to a Vec cannot fail: every field serialises.
        let _ = serde_json::to_writer(&mut *out, event);
    }
    out.extend_from_slice(b"]}");
}

/// The topic `<prefix>/<host>/<name>` of one of the node's own messages (`status`), the host
/// escaped as a level.
pub fn node_topic(prefix: &str, host: &str, name: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + host.len() + name.len() + 2);
    out.push_str(prefix);
    out.push('/');
    push_level(&mut out, host);
    out.push('/');
    out.push_str(name);
    out
}

/// The host and service of a topic built by [`event_topic`] under `prefix`; `None` when the topic
/// is not under the prefix or an escape is not one this module writes.
pub fn service_of(prefix: &str, topic: &str) -> Option<(String, String)> {
    let rest = topic.strip_prefix(prefix)?.strip_prefix('/')?;
    let mut levels = rest.split('/');
    let host = unescape(levels.next()?)?;
    let parts = levels.map(unescape).collect::<Option<Vec<_>>>()?;
    if parts.is_empty() {
        return None;
    }
    Some((host, parts.join(".")))
}

fn unescape(level: &str) -> Option<String> {
    let mut out = String::with_capacity(level.len());
    let mut rest = level;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let c = match rest.get(i + 1..i + 3)? {
            "25" => '%',
            "2F" => '/',
            "2B" => '+',
            "23" => '#',
            "00" => '\0',
            _ => return None,
        };
        out.push(c);
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// How an event becomes a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// The metric as text (`42`, `0.5`), or `<unix seconds>:<metric>` (`1700000000.250:42`, as
    /// collectd writes it) with `timestamp`. An event without a metric publishes its state; one
    /// with neither cannot be encoded.
    Value {
        /// Whether the time goes before the value.
        timestamp: bool,
    },
    /// The event as one JSON object: service, host, state, description, metric, ttl, tags,
    /// attributes, time, kind (the form `pipit once --json` prints).
    Json,
}

/// Writes into `out` the payload of `event`; false when the layout cannot carry the event.
pub fn payload(layout: Layout, event: &Event, out: &mut Vec<u8>) -> bool {
    use std::io::Write;
    out.clear();
    match layout {
        Layout::Value { timestamp } => {
            if timestamp {
                let ms = event.unix_micros() / 1000;
                let _ = write!(out, "{}.{:03}:", ms / 1000, ms % 1000);
            }
            match (event.metric, &event.state) {
                (Some(Metric::Int(v)), _) => {
                    let _ = write!(out, "{v}");
                }
                (Some(Metric::Float(v)), _) => {
                    let _ = write!(out, "{v}");
                }
                (None, Some(state)) => out.extend_from_slice(state.as_str().as_bytes()),
                (None, None) => return false,
            }
            true
        }
        Layout::Json => serde_json::to_writer(out, event).is_ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    #[test]
    fn services_become_levels_and_structure_characters_are_escaped() {
        let mut topic = String::new();
        let e = Event::new("interface.eth0.rx_bytes", "r1.lan");
        event_topic("pipit", &e, &mut topic);
        assert_eq!(topic, "pipit/r1.lan/interface/eth0/rx_bytes");
        let e = Event::new("df./mnt/a+b#c.100%\0", "h/+");
        event_topic("p", &e, &mut topic);
        assert_eq!(topic, "p/h%2F%2B/df/%2Fmnt%2Fa%2Bb%23c/100%25%00");
        assert_eq!(
            service_of("p", &topic),
            Some(("h/+".into(), "df./mnt/a+b#c.100%\0".into()))
        );
        assert_eq!(node_topic("p", "h#", "status"), "p/h%23/status");
        assert_eq!(service_of("p", "p/h/a/%4"), None);
        assert_eq!(service_of("q", "p/h/a"), None);
    }

    /// Property: the topic never holds a wildcard or NUL, has exactly one level per service part
    /// after the prefix and host, and decodes back to the host and service.
    #[test]
    fn topics_decode_back_to_host_and_service() {
        fn prop(host: String, service: String) -> bool {
            let mut topic = String::new();
            event_topic(
                "pre",
                &Event::new(service.as_str(), host.as_str()),
                &mut topic,
            );
            !topic.contains(['+', '#', '\0'])
                && topic.split('/').count() == 2 + service.split('.').count()
                && service_of("pre", &topic) == Some((host, service))
        }
        quickcheck::quickcheck(prop as fn(String, String) -> bool);
    }

    #[test]
    fn a_collection_is_one_message_under_its_source() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_250);
        let events = [
            Event::new("interface.eth0.rx_bytes", "r/1")
                .with_metric(1i64)
                .with_time(t),
            Event::new("interface.eth0.tx_bytes", "r/1")
                .with_metric(0.5)
                .with_time(t),
        ];
        let mut topic = String::new();
        collection_topic("p", &events[0], &mut topic);
        assert_eq!(topic, "p/r%2F1/interface");
        let mut out = Vec::new();
        collection_payload(&events, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let back: Vec<Event> = v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| Event::from_json(e).unwrap())
            .collect();
        assert_eq!(back, events);
        assert_eq!(source_of("load"), "load");
    }

    #[test]
    fn payloads_by_layout() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_250);
        let mut out = Vec::new();
        let value = Layout::Value { timestamp: false };
        assert!(payload(
            value,
            &Event::new("a", "h").with_metric(42i64),
            &mut out
        ));
        assert_eq!(out, b"42");
        assert!(payload(
            value,
            &Event::new("a", "h").with_metric(0.5),
            &mut out
        ));
        assert_eq!(out, b"0.5");
        assert!(payload(
            value,
            &Event::new("a", "h").with_state("ok"),
            &mut out
        ));
        assert_eq!(out, b"ok");
        assert!(!payload(value, &Event::new("a", "h"), &mut out));
        let e = Event::new("a", "h").with_metric(42i64).with_time(t);
        assert!(payload(Layout::Value { timestamp: true }, &e, &mut out));
        assert_eq!(out, b"1700000000.250:42");
        assert!(payload(Layout::Json, &e, &mut out));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(Event::from_json(&v).unwrap(), e);
    }
}
