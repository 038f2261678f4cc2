//! `mqtt`: the messages of an MQTT broker's topics as events: sensors, other agents, collectd's
//! mqtt plugin, pipit's own `mqtt` output on another box.
//!
//! A thread of the instance holds the connection (the `mqtt` output's client, as a subscriber) and
//! takes what the broker delivers into a bounded queue; each tick the source turns the queued
//! messages into events. A QoS 1 message is acknowledged only once its event was handed to the
//! router ([`Source::handed_over`]): a message whose event the router refused (its queue full)
//! stays unacknowledged, and the broker delivers it again after the next reconnect of the
//! persistent session.

use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, bounded};

use super::{Build, Emitter, MetricInfo, Settings, Source, SourceContext, SourceError, SourceType};
use crate::complain::Complaint;
use crate::config::reader::{Problems, Table};
use crate::event::{Kind, Metric};
use crate::liveness::Liveness;
use crate::mqtt::client::{
    self, Acknowledger, Connection, MqttError, Session, Timeouts, Transport,
};
use crate::mqtt::codec::{Incoming, Message, QoS, Role};
use crate::mqtt::topic;
use crate::mqtt::{DEFAULT_PORT, DEFAULT_TLS_PORT};
use crate::tls::TlsFiles;

/// The registry entry.
pub const TYPE: SourceType = SourceType {
    name: "mqtt",
    description: "messages of MQTT topics as events: numbers, collectd's time:value, JSON fields",
    needs_two_samples: false,
    metrics: &[
        MetricInfo {
            name: "<service>",
            unit: "",
            description: "one event per message: the service from its topic, the value from its payload",
        },
        MetricInfo {
            name: "mqtt.<name>.messages",
            unit: "count",
            description: "messages received since the last tick",
        },
        MetricInfo {
            name: "mqtt.<name>.bad",
            unit: "count",
            description: "messages since the last tick whose topic or payload could not be read (left out)",
        },
    ],
    read: super::read::<MqttSource>,
};

/// The most messages waiting between the connection's thread and the next tick; past it the
/// thread stops reading, and the broker holds the rest.
pub const QUEUE: usize = 10_000;

/// The largest message taken, in bytes; a broker that sends a longer one is disconnected.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// The longest wait before connecting again after a failure.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How a payload becomes a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// A number, or collectd's `<unix seconds>:<number>`.
    Value,
    /// A JSON object: the value (and optionally the time and attributes) from named fields.
    Json {
        /// The field holding the value.
        value: String,
        /// The field holding the time in Unix seconds, if any.
        time: Option<String>,
        /// Fields copied into the event's attributes.
        attributes: Vec<String>,
    },
}

/// How a topic becomes a host and a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Naming {
    /// Topics as pipit's `mqtt` output writes them under this prefix: `<prefix>/<host>/<levels>`.
    Pipit(String),
    /// A template of `{topic}` (the levels joined with `.`) and `{1}`, `{2}`, … (one level each).
    Template(String),
}

/// Settings of the `mqtt` source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttSourceSpec {
    /// The broker, `host:port`.
    pub addr: String,
    /// The broker's host, the name its TLS certificate must have.
    pub host: String,
    /// Certificates, for TLS.
    pub tls: Option<TlsFiles>,
    /// The topic filters, each with the QoS asked for.
    pub topics: Vec<(String, QoS)>,
    /// How payloads are read.
    pub format: Format,
    /// How topics are named.
    pub naming: Naming,
    /// Client id (empty for `pipit-<instance>-<host name>`), keepalive, session, credentials.
    pub session: Session,
    /// Connect, write and ack timeouts.
    pub timeouts: Timeouts,
}

impl Settings for MqttSourceSpec {
    fn read(t: &mut Table<'_>, problems: &mut Problems) -> Option<MqttSourceSpec> {
        let host: Option<String> = t.require("host", problems);
        let tls_wanted = t.choice("transport", &["tcp", "tls"], "tcp", problems) == "tls";
        let default_port = if tls_wanted {
            DEFAULT_TLS_PORT
        } else {
            DEFAULT_PORT
        };
        let port = t.number_in("port", u64::from(default_port), 1, 65_535, problems);
        let tls = TlsFiles::read(t, tls_wanted, "\"tcp\"", problems);
        let qos = match t.number_in("qos", 1, 0, 1, problems) {
            0 => QoS::AtMostOnce,
            _ => QoS::AtLeastOnce,
        };
        let topics = match t.field("topics") {
            None => {
                problems.at(
                    t.as_field(),
                    "missing required key \"topics\" (topic filters such as [\"sensors/#\"])",
                );
                None
            }
            Some(f) => f.non_empty_list("topic filter", problems, |item, p| {
                let filter: String = item.parse(p)?;
                if valid_filter(&filter) {
                    Some((filter, qos))
                } else {
                    p.expected(
                        item,
                        "a topic filter such as \"sensors/#\" or \"home/+/temperature\"",
                    );
                    None
                }
            }),
        };
        let format = match t.choice("format", &["value", "json"], "value", problems) {
            "json" => Format::Json {
                value: t.get_or("value_field", "value".to_owned(), problems),
                time: t.get("time_field", problems),
                attributes: t.get_or("attribute_fields", Vec::new(), problems),
            },
            _ => Format::Value,
        };
        let naming = match (
            t.get::<String>("topic_prefix", problems),
            t.get::<String>("service", problems),
        ) {
            (Some(_), Some(_)) => {
                problems.at(
                    t.as_field(),
                    "set either \"topic_prefix\" or \"service\", not both",
                );
                Naming::Template("{topic}".into())
            }
            (Some(prefix), None) => Naming::Pipit(prefix),
            (None, template) => Naming::Template(template.unwrap_or_else(|| "{topic}".into())),
        };
        // Empty: the default, made from the instance's name when it is built.
        let client_id = t.get_or("client_id", String::new(), problems);
        let (username, password) = client::read_credentials(t, problems);
        let five = Duration::from_secs(5);
        let liveness = Liveness::read(t, problems);
        let keepalive = t.duration_at_least(
            "keepalive",
            Duration::from_secs(30),
            Duration::from_secs(1),
            problems,
        );
        let host = host?;
        let addr = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Some(MqttSourceSpec {
            addr,
            host,
            tls,
            topics: topics?,
            format,
            naming,
            session: Session {
                client_id,
                keepalive,
                clean_session: t.get_or("clean_session", false, problems),
                will: None,
                username,
                password,
            },
            timeouts: Timeouts {
                connect: five,
                write: five,
                ack: five,
                liveness,
            },
        })
    }
}

/// A topic filter MQTT accepts: `+` only as a whole level, `#` only as the whole last level.
fn valid_filter(filter: &str) -> bool {
    let levels: Vec<&str> = filter.split('/').collect();
    !filter.is_empty()
        && !filter.contains('\0')
        && levels.iter().enumerate().all(|(i, l)| {
            (*l == "#" && i + 1 == levels.len()) || *l == "+" || !l.contains(['+', '#'])
        })
}

/// The client id of instance `instance` on host `hostname` without a `client_id` key:
/// `pipit-<instance>-<hostname>`, shortened as [`client::default_client_id`] does.
fn default_client_id(instance: &str, hostname: &str) -> String {
    client::default_client_id(&format!("{instance}-{hostname}"))
}

impl Build for MqttSource {
    type Settings = MqttSourceSpec;

    fn build(spec: &MqttSourceSpec, ctx: &SourceContext) -> MqttSource {
        let (messages_tx, messages) = bounded(QUEUE);
        let (stop, stopped) = bounded(0);
        let mut listening = spec.clone();
        if listening.session.client_id.is_empty() {
            listening.session.client_id = default_client_id(&ctx.instance, &ctx.hostname);
        }
        let log_target = super::log_target(&ctx.instance);
        let transport = match &spec.tls {
            None => Ok(Transport::Tcp),
            #[cfg(feature = "tls")]
            Some(files) => files.load(&spec.host).map(Transport::Tls),
            #[cfg(not(feature = "tls"))]
            Some(_) => Err("this pipit was built without the \"tls\" feature".to_owned()),
        };
        let failed = match transport {
            Ok(transport) => {
                let started = thread::Builder::new()
                    .name(format!("mqtt-in-{}", ctx.instance))
                    .spawn(move || {
                        listen(&listening, &transport, &messages_tx, &stopped, &log_target)
                    });
                started
                    .err()
                    .map(|e| format!("cannot start the connection's thread: {e}"))
            }
            Err(e) => Some(e),
        };
        MqttSource {
            spec: spec.clone(),
            service: format!("mqtt.{}", ctx.instance),
            messages,
            _stop: stop,
            taken: Vec::new(),
            bad: Complaint::new(super::log_target(&ctx.instance)),
            failed,
        }
    }
}

/// What the connection's thread hands the source: a message, and how to acknowledge it on the
/// connection that delivered it.
type Delivered = (Acknowledger, Message);

/// Holds the connection: connects, subscribes, passes messages on, and connects again (with a
/// growing wait) when the connection fails. Ends when the source is gone (`stopped` closed).
fn listen(
    spec: &MqttSourceSpec,
    transport: &Transport,
    messages: &Sender<Delivered>,
    stopped: &Receiver<()>,
    log_target: &str,
) {
    let role = Role::Subscriber {
        max_packet: MAX_MESSAGE + 2 + 65_535,
    };
    let mut complaint = Complaint::new(log_target);
    let mut backoff = Duration::from_millis(100);
    loop {
        let result = Connection::open(&spec.addr, &spec.session, spec.timeouts, transport, role)
            .and_then(|mut conn| {
                let early = conn.subscribe(&spec.topics, spec.timeouts)?;
                complaint.recover();
                backoff = Duration::from_millis(100);
                serve(&mut conn, early, spec.timeouts.ack, messages, stopped)
            });
        match result {
            Ok(()) => return,
            Err(e) => complaint.fail(&format!("{}: {e}", spec.addr)),
        }
        if stopped
            .recv_timeout(backoff)
            .is_err_and(|e| e.is_disconnected())
        {
            return;
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Serves one connection until it fails (an error) or the source is gone (`Ok`).
fn serve(
    conn: &mut Connection,
    early: Vec<Message>,
    ack: Duration,
    messages: &Sender<Delivered>,
    stopped: &Receiver<()>,
) -> Result<(), MqttError> {
    let acker = conn.acknowledger();
    for m in early {
        if messages.send((acker.clone(), m)).is_err() {
            return Ok(());
        }
    }
    loop {
        if stopped.try_recv() == Err(TryRecvError::Disconnected) {
            return Ok(());
        }
        if messages.is_full() {
            // The source has not taken the last messages yet: the broker holds the rest. Nothing
            // is read meanwhile, so an unread PINGRESP does not count against the broker; only a
            // stop is waited for, a read slice at most, before the queue is looked at again.
            if stopped.recv_timeout(client::READ_SLICE) == Err(RecvTimeoutError::Disconnected) {
                return Ok(());
            }
            continue;
        }
        match conn.next_packet(Instant::now() + client::READ_SLICE, ack) {
            Ok(Incoming::Publish(m)) => {
                if messages.send((acker.clone(), m)).is_err() {
                    return Ok(());
                }
            }
            Ok(_) => {}
            Err(MqttError::AckTimeout(_)) if !conn.overdue(ack) => {}
            Err(e) => return Err(e),
        }
    }
}

struct MqttSource {
    spec: MqttSourceSpec,
    /// `mqtt.<instance>`, the stem of the source's own metrics.
    service: String,
    messages: Receiver<Delivered>,
    /// Dropped with the source, which ends the connection's thread.
    _stop: Sender<()>,
    /// QoS 1 messages of the last collection, to acknowledge once handed over.
    taken: Vec<(Acknowledger, u16)>,
    bad: Complaint,
    /// Why the connection's thread could not start, if it could not.
    failed: Option<String>,
}

impl Source for MqttSource {
    fn collect(&mut self, emit: &mut Emitter<'_>) -> Result<(), SourceError> {
        if let Some(e) = &self.failed {
            return Err(SourceError::Setup(e.clone()));
        }
        let (mut received, mut bad) = (0u64, 0u64);
        for (acker, m) in self.messages.try_iter().take(QUEUE) {
            received += 1;
            match read_message(&self.spec, &m) {
                Ok(reading) => {
                    let e = emit.event(&reading.service, Kind::Metric);
                    e.metric = Some(reading.metric);
                    if let Some(host) = reading.host {
                        e.host = host;
                    }
                    if let Some(time) = reading.time {
                        e.time = time;
                    }
                    e.attributes.extend(reading.attributes);
                }
                Err(why) => {
                    bad += 1;
                    self.bad
                        .fail(&format!("message on {:?} left out: {why}", m.topic));
                }
            }
            if m.qos == QoS::AtLeastOnce {
                self.taken.push((acker, m.packet_id));
            }
        }
        if bad == 0 && received > 0 {
            self.bad.recover();
        }
        emit.metric(&format!("{}.messages", self.service), received);
        emit.metric(&format!("{}.bad", self.service), bad);
        Ok(())
    }

    fn handed_over(&mut self, accepted: bool) {
        for (acker, id) in self.taken.drain(..) {
            if accepted {
                // On a connection gone since, the broker delivers the message again to the next.
                let _ = acker.puback(id);
            }
        }
    }
}

/// What one message says.
#[derive(Debug, PartialEq)]
struct Reading {
    host: Option<String>,
    service: String,
    metric: Metric,
    time: Option<SystemTime>,
    attributes: Vec<(String, String)>,
}

/// Reads a message's topic and payload; the error says what is wrong with it.
fn read_message(spec: &MqttSourceSpec, m: &Message) -> Result<Reading, String> {
    let (host, service) = match &spec.naming {
        Naming::Pipit(prefix) => topic::service_of(prefix, &m.topic)
            .map(|(h, s)| (Some(h), s))
            .ok_or_else(|| format!("not a topic under \"{prefix}\" as pipit writes them"))?,
        Naming::Template(template) => (None, fill(template, &m.topic)?),
    };
    let text = std::str::from_utf8(&m.payload).map_err(|_| "a payload that is not UTF-8")?;
    let (metric, time, attributes) = match &spec.format {
        Format::Value => {
            let (time, value) = match text.trim().split_once(':') {
                Some((t, v)) => (Some(seconds(t.parse::<f64>().ok())?), v),
                None => (None, text.trim()),
            };
            (number(value)?, time, Vec::new())
        }
        Format::Json {
            value,
            time,
            attributes,
        } => {
            let doc: serde_json::Value =
                serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
            let field = doc
                .get(value)
                .ok_or_else(|| format!("no field \"{value}\""))?;
            let metric = match field {
                serde_json::Value::Number(n) => json_number(n)?,
                serde_json::Value::String(s) => number(s)?,
                _ => return Err(format!("field \"{value}\" is not a number")),
            };
            let time = match time {
                Some(name) => Some(seconds(doc.get(name).and_then(serde_json::Value::as_f64))?),
                None => None,
            };
            let attributes = attributes
                .iter()
                .filter_map(|name| {
                    let v = doc.get(name)?;
                    let text = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                    Some((name.clone(), text))
                })
                .collect();
            (metric, time, attributes)
        }
    };
    Ok(Reading {
        host,
        service,
        metric,
        time,
        attributes,
    })
}

/// The service of `topic` by `template`.
fn fill(template: &str, topic: &str) -> Result<String, String> {
    let levels: Vec<&str> = topic.split('/').collect();
    let mut out = String::with_capacity(template.len() + topic.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..]
            .find('}')
            .ok_or("an unclosed { in \"service\"")?;
        let name = &rest[open + 1..open + close];
        if name == "topic" {
            out.push_str(&levels.join("."));
        } else {
            let level = name
                .parse::<usize>()
                .ok()
                .and_then(|n| levels.get(n.checked_sub(1)?))
                .ok_or_else(|| format!("the topic has no level {{{name}}}"))?;
            out.push_str(level);
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn number(text: &str) -> Result<Metric, String> {
    let text = text.trim();
    if let Ok(i) = text.parse::<i64>() {
        return Ok(Metric::Int(i));
    }
    text.parse::<f64>()
        .ok()
        .and_then(Metric::float)
        .ok_or_else(|| format!("{:?} is not a finite number", truncated(text)))
}

fn json_number(n: &serde_json::Number) -> Result<Metric, String> {
    match (n.as_i64(), n.as_f64()) {
        (Some(i), _) => Ok(Metric::Int(i)),
        (None, Some(f)) => Metric::float(f).ok_or_else(|| "a value that is not finite".into()),
        _ => Err("a value out of range".into()),
    }
}

/// A time in Unix seconds within the years 1970 to 33658.
fn seconds(value: Option<f64>) -> Result<SystemTime, String> {
    match value {
        Some(s) if (0.0..1e12).contains(&s) => {
            Ok(SystemTime::UNIX_EPOCH + Duration::from_micros((s * 1e6).round() as u64))
        }
        _ => Err("a time that is not Unix seconds".into()),
    }
}

/// At most 40 characters of `text`, for a log line.
fn truncated(text: &str) -> String {
    text.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::reader::read_section;

    fn spec(text: &str) -> Result<MqttSourceSpec, Vec<String>> {
        read_section(text, MqttSourceSpec::read)
    }

    #[test]
    fn the_default_client_id_names_the_instance_and_the_events_host() {
        let config = crate::config_file::parse(
            "t.json",
            r#"{"agent": {"hostname": "r1"}, "sources": [
                {"type": "mqtt", "name": "sensors", "host": "b", "topics": ["a/#"]},
                {"type": "mqtt", "name": "other", "host": "b", "topics": ["a/#"], "hostname": "gw.lan"}],
                "outputs": [{"type": "stdout"}]}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let cache = std::sync::Arc::new(crate::cache::Cache::in_memory());
        let ctx = super::super::testing::context("minimal", &cache);
        let ids: Vec<String> = config
            .sources
            .iter()
            .map(|s| {
                let ctx = ctx.for_source(s);
                default_client_id(&ctx.instance, &ctx.hostname)
            })
            .collect();
        assert_eq!(ids, ["pipit-sensors-r1", "pipit-other-gwlan"]);
    }

    fn message(topic: &str, payload: &str) -> Message {
        Message {
            topic: topic.into(),
            payload: payload.as_bytes().to_vec(),
            qos: QoS::AtLeastOnce,
            packet_id: 1,
            dup: false,
            retain: false,
        }
    }

    #[test]
    fn settings_defaults_and_errors() {
        let s = spec(r##"{"host": "b.lan", "topics": ["sensors/#"]}"##).unwrap();
        assert_eq!(s.addr, "b.lan:1883");
        assert_eq!(s.topics, [("sensors/#".to_owned(), QoS::AtLeastOnce)]);
        assert_eq!(
            (&s.format, &s.naming),
            (&Format::Value, &Naming::Template("{topic}".into()))
        );
        assert_eq!(s.session.client_id, "");
        let e = spec(r##"{"host": "b", "topics": ["a/#/b", "+x"], "qos": 2}"##).unwrap_err();
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(
            e.iter()
                .any(|m| m.contains("topics[0]: expected a topic filter")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.contains("topics[1]: expected a topic filter")),
            "{e:?}"
        );
        let e = spec(r##"{"host": "b"}"##).unwrap_err();
        assert!(e[0].contains("missing required key \"topics\""), "{e:?}");
        let e = spec(r##"{"host": "b", "topics": ["a"], "topic_prefix": "p", "service": "x"}"##)
            .unwrap_err();
        assert!(e[0].contains("not both"), "{e:?}");
        let e = spec(r##"{"host": "b", "topics": ["a"], "value_field": "v"}"##).unwrap_err();
        assert!(e[0].contains("value_field: unknown key"), "{e:?}");
    }

    #[test]
    fn values_and_collectd_time_value() {
        let s = spec(r##"{"host": "b", "topics": ["#"]}"##).unwrap();
        let r = read_message(&s, &message("home/kitchen/temp", " 21.5\n")).unwrap();
        assert_eq!(
            (r.service.as_str(), r.metric, r.time),
            ("home.kitchen.temp", Metric::Float(21.5), None)
        );
        let r = read_message(&s, &message("a", "1700000000.250:42")).unwrap();
        assert_eq!(r.metric, Metric::Int(42));
        assert_eq!(
            r.time,
            Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_250))
        );
        for bad in ["", "warm", "NaN", "inf", "x:1", "1:2:3", "-5:1"] {
            assert!(read_message(&s, &message("a", bad)).is_err(), "{bad:?}");
        }
        let mut m = message("a", "");
        m.payload = vec![0xff, b'1'];
        assert!(read_message(&s, &m).is_err());
    }

    #[test]
    fn topics_become_services_by_template_or_as_pipit_writes_them() {
        let s = spec(r##"{"host": "b", "topics": ["#"], "service": "sensor.{3}.{2}"}"##).unwrap();
        let r = read_message(&s, &message("home/kitchen/temp", "1")).unwrap();
        assert_eq!(r.service, "sensor.temp.kitchen");
        let err = read_message(&s, &message("home/kitchen", "1")).unwrap_err();
        assert!(err.contains("no level {3}"), "{err}");
        let s = spec(r##"{"host": "b", "topics": ["#"], "topic_prefix": "pipit"}"##).unwrap();
        let r = read_message(&s, &message("pipit/r%2F1/df/%2Fmnt/used", "7")).unwrap();
        assert_eq!(
            (r.host.as_deref(), r.service.as_str()),
            (Some("r/1"), "df./mnt.used")
        );
        assert!(read_message(&s, &message("other/r1/x", "7")).is_err());
    }

    #[test]
    fn json_fields_map_to_value_time_and_attributes() {
        let s = spec(
            r##"{"host": "b", "topics": ["#"], "format": "json", "value_field": "temperature",
                "time_field": "ts", "attribute_fields": ["room", "battery", "missing"]}"##,
        )
        .unwrap();
        let r = read_message(
            &s,
            &message(
                "z/1",
                r##"{"temperature": 19.25, "ts": 1700000000, "room": "hall", "battery": 97}"##,
            ),
        )
        .unwrap();
        assert_eq!(r.metric, Metric::Float(19.25));
        assert_eq!(
            r.time,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );
        assert_eq!(
            r.attributes,
            [
                ("room".into(), "hall".into()),
                ("battery".into(), "97".into())
            ]
        );
        let r = read_message(&s, &message("z/1", r##"{"temperature": "20", "ts": 1}"##)).unwrap();
        assert_eq!(r.metric, Metric::Int(20));
        for bad in [
            "{",
            "[]",
            r##"{"ts": 1}"##,
            r##"{"temperature": true, "ts": 1}"##,
            r##"{"temperature": 1}"##,
            r##"{"temperature": 1, "ts": "now"}"##,
        ] {
            assert!(read_message(&s, &message("z/1", bad)).is_err(), "{bad}");
        }
    }

    /// Property: no payload makes reading panic, in either format.
    #[test]
    fn any_payload_is_read_or_refused() {
        fn prop(topic: String, payload: Vec<u8>) -> bool {
            let specs = [
                r##"{"host": "b", "topics": ["#"], "service": "{2}.{1}"}"##,
                r##"{"host": "b", "topics": ["#"], "format": "json", "time_field": "t", "attribute_fields": ["a"]}"##,
            ];
            specs.iter().all(|text| {
                let s = spec(text).unwrap();
                let m = Message {
                    topic: topic.clone(),
                    payload: payload.clone(),
                    ..message("a", "")
                };
                let _ = read_message(&s, &m);
                true
            })
        }
        quickcheck::quickcheck(prop as fn(String, Vec<u8>) -> bool);
    }
}
