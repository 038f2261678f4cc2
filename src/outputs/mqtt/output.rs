//! The `mqtt` output: one PUBLISH per event (or per collection) to an MQTT 3.1.1 broker.
//!
//! At QoS 1 an event counts as delivered only once the broker's PUBACK for it arrived; at most
//! `inflight` messages wait for theirs at any time. When a batch fails half-way the whole batch
//! counts as failed (the delivery layer retries or spools it), and the output remembers, by a key
//! of topic, payload and event time, which messages the broker acknowledged and the packet
//! identifier of each one sent without an answer: when the events come again, acknowledged ones
//! are not sent twice, and the others go with DUP and their old identifier when the broker kept
//! the session. At QoS 0 a batch counts as delivered once the
//! broker answered a PINGREQ sent after it (it has read every message; nothing more is promised).

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::discovery::{self, Announcements, Discovery};
use crate::config::AgentConfig;
use crate::config::agent::read_hostname;
use crate::config::reader::{Problems, Table};
use crate::event::Event;
use crate::liveness::Liveness;
use crate::mqtt::client::{self, Connection, MqttError, Session, Timeouts, Transport};
use crate::mqtt::codec::{self, Incoming, Publish, QoS, Role, Will};
use crate::mqtt::topic::{self, Layout};
use crate::mqtt::{DEFAULT_PORT, DEFAULT_TLS_PORT};
use crate::outputs::destination::{Destination, read_targets};
use crate::outputs::{Output, OutputError, OutputSpec, OutputType, Settings};
use crate::prometheus_name::SourceNames;
use crate::tls::TlsFiles;

/// The registry entry.
pub const TYPE: OutputType = OutputType {
    name: "mqtt",
    description: "events to an MQTT 3.1.1 broker, QoS 0 or 1 (value per topic or JSON)",
    read: crate::outputs::read::<MqttSpec>,
};

/// Settings of the `mqtt` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttSpec {
    /// The brokers: `host` and `port` (default 1883, or 8883 with TLS), or the `targets` list.
    pub targets: Vec<Destination>,
    /// Certificates, when `transport` is `tls`; plain TCP without.
    pub tls: Option<TlsFiles>,
    /// QoS of event messages; default 1.
    pub qos: QoS,
    /// The first topic level; default `pipit`.
    pub prefix: String,
    /// How events become payloads; default one value per topic.
    pub layout: Layout,
    /// Whether a message carries one event or one collection; default one event.
    pub message_per: MessagePer,
    /// Whether event messages are retained; default false.
    pub retain: bool,
    /// Most QoS 1 messages waiting for their PUBACK; default 32.
    pub inflight: usize,
    /// The agent's host name as the `status` topic shows it; default `agent.hostname`.
    pub node: String,
    /// Whether a retained `online` is published after connect, with a Will `offline`; default true.
    pub availability: bool,
    /// Home Assistant discovery, when enabled.
    pub discovery: Option<Discovery>,
    /// Client id, keepalive, clean session, credentials.
    pub session: Session,
    /// Connect, write and ack timeouts.
    pub timeouts: Timeouts,
}

/// What one message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessagePer {
    /// One event, on its own topic.
    Event,
    /// The events of one collection of one source (same host, first service part and time), as
    /// one JSON message on `<prefix>/<host>/<source>`.
    Collection,
}

impl Settings for MqttSpec {
    fn read(t: &mut Table<'_>, agent: &AgentConfig, problems: &mut Problems) -> Option<MqttSpec> {
        let tls_wanted = t.choice("transport", &["tcp", "tls"], "tcp", problems) == "tls";
        let default_port = if tls_wanted {
            DEFAULT_TLS_PORT
        } else {
            DEFAULT_PORT
        };
        let targets = read_targets(t, default_port, problems);
        let tls = TlsFiles::read(t, tls_wanted, "\"tcp\"", problems);
        let qos = match t.number_in("qos", 1, 0, 1, problems) {
            0 => QoS::AtMostOnce,
            _ => QoS::AtLeastOnce,
        };
        let prefix = read_prefix(t, problems);
        let layout = match t.choice("layout", &["value", "json"], "value", problems) {
            "json" => Layout::Json,
            _ => Layout::Value {
                timestamp: t.get_or("timestamp", false, problems),
            },
        };
        let message_per = match t.choice("message_per", &["event", "collection"], "event", problems)
        {
            "collection" => MessagePer::Collection,
            _ => MessagePer::Event,
        };
        if message_per == MessagePer::Collection && layout != Layout::Json {
            problems.at(
                t.as_field(),
                "\"message_per\": \"collection\" publishes JSON: set \"layout\": \"json\" too",
            );
        }
        let retain = t.get_or("retain", false, problems);
        let inflight = t.number_in("inflight", 32, 1, 65_535, problems) as usize;
        let node = read_hostname(t, problems).unwrap_or_else(|| agent.hostname.clone());
        let availability = t.get_or("availability", true, problems);
        let discovery = discovery::read(
            t.field("discovery"),
            &node,
            message_per == MessagePer::Collection,
            problems,
        );
        let five = Duration::from_secs(5);
        let ms = Duration::from_millis(1);
        let timeouts = Timeouts {
            connect: t.duration_at_least("connect_timeout", five, ms, problems),
            write: t.duration_at_least("write_timeout", five, ms, problems),
            ack: t.duration_at_least("ack_timeout", five, ms, problems),
            liveness: Liveness::read(t, problems),
        };
        let keepalive = t.duration_at_least(
            "keepalive",
            Duration::from_secs(30),
            Duration::ZERO,
            problems,
        );
        if keepalive.as_secs() > u64::from(u16::MAX) {
            problems.at(t.as_field(), "keepalive: expected at most 65535s");
        }
        let client_id = t
            .get::<String>("client_id", problems)
            .unwrap_or_else(|| client::default_client_id(&node));
        let (username, password) = client::read_credentials(t, problems);
        let will = availability.then(|| Will {
            topic: topic::node_topic(&prefix, &node, "status"),
            payload: b"offline".to_vec(),
            qos: QoS::AtLeastOnce,
            retain: true,
        });
        Some(MqttSpec {
            targets: targets?,
            tls,
            qos,
            prefix,
            layout,
            message_per,
            retain,
            inflight,
            node,
            availability,
            discovery,
            session: Session {
                client_id,
                keepalive,
                clean_session: t.get_or("clean_session", false, problems),
                will,
                username,
                password,
            },
            timeouts,
        })
    }
}

/// Reads `prefix`: topic levels without wildcards or NUL, not starting with `$` (the broker's own
/// topics) and not ending with `/`.
fn read_prefix(t: &mut Table<'_>, problems: &mut Problems) -> String {
    let default = "pipit".to_owned();
    let Some(field) = t.field("prefix") else {
        return default;
    };
    match field.as_str() {
        Some(p)
            if !p.is_empty()
                && !p.contains(['+', '#', '\0'])
                && !p.starts_with('$')
                && !p.ends_with('/') =>
        {
            p.to_owned()
        }
        _ => {
            problems.expected(
                &field,
                "topic levels such as \"pipit\" or \"site/a\" (no +, #, NUL, leading $ or trailing /)",
            );
            default
        }
    }
}

impl OutputSpec for MqttSpec {
    fn targets(&self) -> Vec<String> {
        self.targets.iter().map(Destination::name).collect()
    }

    fn build_target(&self, index: usize, log_target: &str) -> Result<Box<dyn Output>, OutputError> {
        let target = Destination::nth(&self.targets, index)?;
        // Certificates are read now, so a reload picks up renewed ones; the broker is connected to
        // at the first batch, so the agent starts while it is down.
        let transport = match &self.tls {
            None => Transport::Tcp,
            #[cfg(feature = "tls")]
            Some(files) => Transport::Tls(files.load(&target.node.host).map_err(OutputError::Tls)?),
            #[cfg(not(feature = "tls"))]
            Some(_) => {
                return Err(OutputError::Tls(
                    "this pipit was built without the \"tls\" feature".to_owned(),
                ));
            }
        };
        Ok(Box::new(MqttOutput {
            addr: target.addr(),
            transport,
            spec: self.clone(),
            log_target: log_target.to_owned(),
            conn: None,
            carry: Carry::default(),
            announcements: Announcements::default(),
            announced: 0,
            next_id: 0,
            unencodable: 0,
            out: Vec::new(),
        }))
    }

    fn describe(&self) -> String {
        format!(
            "mqtt{} QoS {} under \"{}\" to {}",
            if self.tls.is_some() { " over TLS" } else { "" },
            self.qos as u8,
            self.prefix,
            self.targets().join(", ")
        )
    }

    fn with_sources(&self, sources: &[SourceNames]) -> Option<Arc<dyn OutputSpec>> {
        let discovery = self.discovery.as_ref()?;
        Some(Arc::new(MqttSpec {
            discovery: Some(Discovery {
                sources: sources.to_vec(),
                ..discovery.clone()
            }),
            ..self.clone()
        }))
    }
}

/// How many messages of failed batches the output remembers (acknowledged ones, and sent ones
/// with their packet identifiers); the oldest are forgotten first.
const REMEMBERED: usize = 16_384;

/// What the output remembers of batches that failed half-way, by message key (a hash of topic,
/// payload and the event's time): which messages the broker acknowledged, and the packet
/// identifier each unacknowledged one was sent with.
#[derive(Default)]
struct Carry {
    acked: HashSet<u64>,
    sent: HashMap<u64, u16>,
    order: VecDeque<u64>,
}

impl Carry {
    fn remember(&mut self, key: u64, id: Option<u16>) {
        match id {
            Some(id) => {
                self.sent.insert(key, id);
            }
            None => {
                self.acked.insert(key);
            }
        }
        self.order.push_back(key);
        while self.order.len() > REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.acked.remove(&old);
                self.sent.remove(&old);
            }
        }
    }
}

/// A message ready to publish: its key, topic and payload.
type Message = (u64, String, Vec<u8>);

struct MqttOutput {
    addr: String,
    transport: Transport,
    spec: MqttSpec,
    log_target: String,
    conn: Option<Connection>,
    carry: Carry,
    /// Home Assistant config messages, and how many the broker acknowledged on this connection.
    announcements: Announcements,
    announced: usize,
    next_id: u16,
    unencodable: u64,
    /// Packets encoded and not yet written.
    out: Vec<u8>,
}

impl Output for MqttOutput {
    fn write(&mut self, batch: &[Event]) -> Result<(), OutputError> {
        self.discover(batch);
        let messages = self.encode(batch);
        let result = self.deliver(&messages);
        self.out.clear();
        result.map_err(|e| {
            // Dropped without DISCONNECT: the broker publishes the Will if it notices.
            self.conn = None;
            error(&self.addr, e)
        })
    }

    fn take_unencodable(&mut self) -> u64 {
        std::mem::take(&mut self.unencodable)
    }
}

impl MqttOutput {
    fn encode(&mut self, batch: &[Event]) -> Vec<Option<Message>> {
        if self.spec.message_per == MessagePer::Collection {
            return collections(&self.spec.prefix, batch);
        }
        let mut payload = Vec::new();
        batch
            .iter()
            .map(|e| {
                if !topic::payload(self.spec.layout, e, &mut payload) {
                    self.unencodable += 1;
                    return None;
                }
                let mut name = String::new();
                topic::event_topic(&self.spec.prefix, e, &mut name);
                Some((key(&name, &payload, e), name, payload.clone()))
            })
            .collect()
    }

    fn next_id(&mut self) -> u16 {
        self.next_id = self.next_id.checked_add(1).unwrap_or(1);
        self.next_id
    }

    /// Builds the Home Assistant config messages of metrics not announced before.
    fn discover(&mut self, batch: &[Event]) {
        let Some(d) = &self.spec.discovery else {
            return;
        };
        let node = discovery::Node {
            prefix: &self.spec.prefix,
            host: &self.spec.node,
            layout: self.spec.layout,
            availability: self.spec.availability,
        };
        for event in batch {
            if let Some(warning) = self.announcements.add(d, &node, event) {
                log::warn!(target: &self.log_target, "{warning}");
            }
        }
    }

    /// Publishes (retained, QoS 1, at most `inflight` at a time) the config messages the broker
    /// has not acknowledged on this connection, and waits for their PUBACKs: every one after a
    /// reconnect, since the broker may have lost its retained messages, and the new ones otherwise.
    fn announce(&mut self) -> Result<(), MqttError> {
        let ack = self.spec.timeouts.ack;
        while self.announced < self.announcements.messages.len() {
            let end = self
                .announcements
                .messages
                .len()
                .min(self.announced + self.spec.inflight);
            let mut waiting = HashSet::new();
            for i in self.announced..end {
                let id = self.next_id();
                waiting.insert(id);
                let (topic, payload) = &self.announcements.messages[i];
                codec::encode_publish(
                    &Publish {
                        topic,
                        payload,
                        qos: QoS::AtLeastOnce,
                        retain: true,
                        dup: false,
                        packet_id: id,
                    },
                    &mut self.out,
                )
                .map_err(MqttError::Encode)?;
            }
            self.flush()?;
            let conn = self.conn.as_mut().expect("connected before announcing");
            let deadline = std::time::Instant::now() + ack;
            while !waiting.is_empty() {
                if let Incoming::PubAck(id) = conn.next_packet(deadline, ack)? {
                    waiting.remove(&id);
                }
            }
            self.announced = end;
        }
        Ok(())
    }

    /// The open connection, opened (and `online` published) when there is none or the broker
    /// stopped answering while it was idle. A new connection without the old session makes every
    /// unacknowledged message a first send again.
    fn connect(&mut self) -> Result<(), MqttError> {
        let ack = self.spec.timeouts.ack;
        if self.conn.as_mut().is_some_and(|c| c.is_dead(ack)) {
            log::debug!(target: &self.log_target, "{}: connection dead while idle, reconnecting", self.addr);
            self.conn = None;
        }
        if self.conn.is_some() {
            return Ok(());
        }
        let mut conn = Connection::open(
            &self.addr,
            &self.spec.session,
            self.spec.timeouts,
            &self.transport,
            Role::Publisher,
        )?;
        if !conn.session_present {
            self.carry.sent.clear();
        }
        if self.spec.availability {
            let id = self.next_id();
            let status = topic::node_topic(&self.spec.prefix, &self.spec.node, "status");
            let online = Publish {
                topic: &status,
                payload: b"online",
                qos: QoS::AtLeastOnce,
                retain: true,
                dup: false,
                packet_id: id,
            };
            conn.publish(&online, &mut self.out)?;
            self.out.clear();
            let deadline = std::time::Instant::now() + ack;
            while conn.next_packet(deadline, ack)? != Incoming::PubAck(id) {}
        }
        log::debug!(target: &self.log_target, "{}: connected (session present: {})", self.addr, conn.session_present);
        self.conn = Some(conn);
        self.announced = 0;
        Ok(())
    }

    /// Publishes the messages; at QoS 1 returns once each is acknowledged. On failure what was
    /// acknowledged, and the identifiers of what was sent, are remembered for the next attempt.
    fn deliver(&mut self, messages: &[Option<Message>]) -> Result<(), MqttError> {
        let mut acked = vec![false; messages.len()];
        let mut ids = vec![0u16; messages.len()];
        let result = self.publish_all(messages, &mut acked, &mut ids);
        if result.is_err() {
            for (i, message) in messages.iter().enumerate() {
                if let Some((key, ..)) = message {
                    match (acked[i], ids[i]) {
                        (true, _) => self.carry.remember(*key, None),
                        (false, 0) => {}
                        (false, id) => self.carry.remember(*key, Some(id)),
                    }
                }
            }
        }
        result
    }

    fn publish_all(
        &mut self,
        messages: &[Option<Message>],
        acked: &mut [bool],
        ids: &mut [u16],
    ) -> Result<(), MqttError> {
        self.connect()?;
        self.announce()?;
        let ack = self.spec.timeouts.ack;
        let qos = self.spec.qos;
        let mut inflight: VecDeque<(u16, usize)> = VecDeque::new();
        let mut resent = 0u64;
        for (i, message) in messages.iter().enumerate() {
            let Some((key, name, payload)) = message else {
                continue;
            };
            if self.carry.acked.remove(key) {
                acked[i] = true;
                continue;
            }
            if inflight.len() >= self.spec.inflight {
                self.flush()?;
                self.await_ack(&mut inflight, acked)?;
            }
            let earlier = self.carry.sent.remove(key);
            let id = match (qos, earlier) {
                (QoS::AtMostOnce, _) => 0,
                (QoS::AtLeastOnce, Some(id)) => id,
                (QoS::AtLeastOnce, None) => self.next_id(),
            };
            resent += u64::from(earlier.is_some());
            codec::encode_publish(
                &Publish {
                    topic: name,
                    payload,
                    qos,
                    retain: self.spec.retain,
                    dup: earlier.is_some(),
                    packet_id: id,
                },
                &mut self.out,
            )
            .map_err(MqttError::Encode)?;
            if qos == QoS::AtLeastOnce {
                ids[i] = id;
                inflight.push_back((id, i));
            }
            if self.out.len() >= 16 * 1024 {
                self.flush()?;
            }
        }
        self.flush()?;
        if resent > 0 {
            log::debug!(target: &self.log_target, "{}: {resent} unacknowledged message(s) sent again with DUP", self.addr);
        }
        while !inflight.is_empty() {
            self.await_ack(&mut inflight, acked)?;
        }
        if qos == QoS::AtMostOnce {
            let conn = self.conn.as_mut().expect("connected above");
            conn.ping(ack, |_| {})?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), MqttError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let conn = self.conn.as_mut().expect("connected before sending");
        let result = conn.send(&self.out);
        self.out.clear();
        result
    }

    /// Waits for the next PUBACK (at most the ack timeout) and marks its message acknowledged; a
    /// PUBACK for a message of an earlier batch is passed over.
    fn await_ack(
        &mut self,
        inflight: &mut VecDeque<(u16, usize)>,
        acked: &mut [bool],
    ) -> Result<(), MqttError> {
        let ack = self.spec.timeouts.ack;
        let conn = self.conn.as_mut().expect("connected before waiting");
        let deadline = std::time::Instant::now() + ack;
        loop {
            if let Incoming::PubAck(id) = conn.next_packet(deadline, ack)? {
                if let Some(pos) = inflight.iter().position(|(x, _)| *x == id) {
                    if let Some((_, i)) = inflight.remove(pos) {
                        acked[i] = true;
                    }
                    return Ok(());
                }
            }
        }
    }
}

impl Drop for MqttOutput {
    /// Says goodbye: a retained `offline` first, so the status is right without the Will.
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        let mut last = Vec::new();
        if self.spec.availability {
            let status = topic::node_topic(&self.spec.prefix, &self.spec.node, "status");
            let _ = codec::encode_publish(
                &Publish {
                    topic: &status,
                    payload: b"offline",
                    qos: QoS::AtMostOnce,
                    retain: true,
                    dup: false,
                    packet_id: 0,
                },
                &mut last,
            );
        }
        conn.close(&last);
    }
}

/// The messages of `batch`, one per collection: events of the same host, source (first service
/// part) and time, in the order of each collection's first event.
fn collections(prefix: &str, batch: &[Event]) -> Vec<Option<Message>> {
    let mut index: HashMap<(&str, &str, std::time::SystemTime), usize> = HashMap::new();
    let mut groups: Vec<Vec<&Event>> = Vec::new();
    for e in batch {
        let group = *index
            .entry((e.host.as_str(), topic::source_of(&e.service), e.time))
            .or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
        groups[group].push(e);
    }
    groups
        .into_iter()
        .map(|events| {
            let mut name = String::new();
            topic::collection_topic(prefix, events[0], &mut name);
            let mut payload = Vec::new();
            topic::collection_payload(events.iter().copied(), &mut payload);
            Some((key(&name, &payload, events[0]), name, payload))
        })
        .collect()
}

/// The key of a message: a hash of its topic, payload and event time, the same when the delivery
/// layer hands the event again (a retry, a spool replay).
fn key(topic: &str, payload: &[u8], event: &Event) -> u64 {
    static KEYS: OnceLock<RandomState> = OnceLock::new();
    KEYS.get_or_init(RandomState::new)
        .hash_one((topic, payload, event.time))
}

/// The delivery error for a client error.
fn error(addr: &str, source: MqttError) -> OutputError {
    OutputError::Mqtt {
        addr: addr.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outputs::read_spec;

    fn spec(text: &str) -> Result<MqttSpec, Vec<String>> {
        read_spec(text)
    }

    #[test]
    fn defaults() {
        let s = spec(r#"{"host": "b.example", "hostname": "r1"}"#).unwrap();
        assert_eq!(s.targets[0].addr(), "b.example:1883");
        assert_eq!(
            (s.qos, s.prefix.as_str(), s.layout, s.retain, s.inflight),
            (
                QoS::AtLeastOnce,
                "pipit",
                Layout::Value { timestamp: false },
                false,
                32
            )
        );
        assert_eq!((s.message_per, &s.tls), (MessagePer::Event, &None));
        assert_eq!(s.session.client_id, "pipit-r1");
        assert!(!s.session.clean_session);
        assert_eq!(s.session.keepalive, Duration::from_secs(30));
        assert_eq!(s.session.will.as_ref().unwrap().topic, "pipit/r1/status");
        assert_eq!(s.describe(), "mqtt QoS 1 under \"pipit\" to b.example:1883");
        assert_eq!(s.timeouts.liveness, Liveness::DEFAULT);
        let s = spec(r#"{"host": "b", "tcp_user_timeout": "9s", "keepalive_count": 5}"#).unwrap();
        assert_eq!(s.timeouts.liveness.user_timeout, Duration::from_secs(9));
        assert_eq!(s.timeouts.liveness.keepalive_count, 5);
    }

    /// The `mqtt` output to broker `b` with discovery on, `extra` keys added, as a whole config
    /// with the `agent` section `agent` makes it: its spec's Debug text.
    fn loaded(agent: &str, extra: &str) -> String {
        let text = format!(
            r#"{{"agent": {agent}, "outputs": [{{"type": "mqtt", "host": "b",
            "discovery": {{"enabled": true}}{extra}}}]}}"#
        );
        let config = crate::config_file::parse("t.json", &text).unwrap_or_else(|e| panic!("{e}"));
        format!("{:?}", config.outputs[0].spec)
    }

    /// The spec of the same output with its own `hostname`, checked for the host's three places.
    fn named(hostname: &str) -> MqttSpec {
        let s = spec(&format!(
            r#"{{"host": "b", "discovery": {{"enabled": true}}, "hostname": "{hostname}"}}"#
        ))
        .unwrap();
        assert_eq!(
            s.session.will.as_ref().unwrap().topic,
            format!("pipit/{hostname}/status")
        );
        assert_eq!(s.session.client_id, format!("pipit-{hostname}"));
        assert_eq!(s.discovery.as_ref().unwrap().node_id, hostname);
        s
    }

    #[test]
    fn the_host_name_defaults_to_the_agents() {
        assert_eq!(
            loaded(r#"{"hostname": "r1"}"#, ""),
            format!("{:?}", named("r1"))
        );
    }

    #[test]
    fn the_outputs_own_host_name_wins_over_the_agents() {
        assert_eq!(
            loaded(r#"{"hostname": "r1"}"#, r#", "hostname": "r2""#),
            format!("{:?}", named("r2"))
        );
    }

    #[test]
    fn bad_settings_are_refused_with_their_key() {
        let e = spec(r#"{"host": "h", "qos": 2, "prefix": "a/+", "layout": "xml"}"#).unwrap_err();
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(
            e[0].contains("qos: expected a whole number from 0 to 1"),
            "{e:?}"
        );
        assert!(e[1].contains("prefix: expected topic levels"), "{e:?}");
        assert!(e[2].contains("layout: expected one of"), "{e:?}");
        let e = spec(r#"{"host": "h", "password": "hunter2"}"#).unwrap_err();
        assert!(e[0].contains("needs a \"username\""), "{e:?}");
        assert!(!e[0].contains("hunter2"), "{e:?}");
        let e = spec(r#"{"host": "h", "timestamp": true, "layout": "json"}"#).unwrap_err();
        assert!(e[0].contains("timestamp: unknown key"), "{e:?}");
    }

    #[test]
    fn a_collection_is_one_message_and_needs_json() {
        let s = spec(r#"{"host": "h", "layout": "json", "message_per": "collection"}"#).unwrap();
        assert_eq!(s.message_per, MessagePer::Collection);
        let e = spec(r#"{"host": "h", "message_per": "collection"}"#).unwrap_err();
        assert!(e[0].contains("set \"layout\": \"json\" too"), "{e:?}");
        let t0 = std::time::UNIX_EPOCH + Duration::from_secs(1);
        let t1 = t0 + Duration::from_secs(1);
        let at = |service: &str, host: &str, t| Event::new(service, host).with_time(t);
        let batch = [
            at("load.shortterm", "r1", t0),
            at("cpu.total.user", "r1", t0),
            at("load.midterm", "r1", t0),
            at("load.shortterm", "r1", t1),
            at("load.shortterm", "r2", t0),
        ];
        let messages: Vec<(String, usize)> = collections("p", &batch)
            .into_iter()
            .map(|m| {
                let (_, topic, payload) = m.unwrap();
                let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
                (topic, v["events"].as_array().unwrap().len())
            })
            .collect();
        assert_eq!(
            messages,
            [
                ("p/r1/load".into(), 2),
                ("p/r1/cpu".into(), 1),
                ("p/r1/load".into(), 1),
                ("p/r2/load".into(), 1)
            ]
        );
    }

    #[test]
    fn tls_keys_are_checked_at_load() {
        let e = spec(r#"{"host": "h", "tls_ca": "/ca.pem"}"#).unwrap_err();
        assert!(
            e[0].contains("only used with \"transport\": \"tls\""),
            "{e:?}"
        );
        let e = spec(r#"{"host": "h", "transport": "tls"}"#).unwrap_err();
        assert!(
            e.iter()
                .any(|m| m.contains("missing required key \"tls_ca\"")),
            "{e:?}"
        );
    }

    #[cfg(feature = "tls")]
    #[test]
    fn tls_defaults_to_port_8883_and_reads_its_files_when_built() {
        let s =
            spec(r#"{"host": "h", "transport": "tls", "tls_ca": "/nonexistent/ca.pem"}"#).unwrap();
        assert_eq!(s.targets[0].addr(), "h:8883");
        assert_eq!(
            s.describe(),
            "mqtt over TLS QoS 1 under \"pipit\" to h:8883"
        );
        let built = s.build_target(0, "out.mqtt");
        assert!(built.is_err_and(|e| e.to_string().contains("/nonexistent/ca.pem")));
    }

    #[test]
    fn what_failed_batches_leave_behind_is_bounded() {
        let mut carry = Carry::default();
        for key in 0..(REMEMBERED as u64 * 2) {
            carry.remember(key, (key % 2 == 0).then_some(7));
        }
        assert_eq!(carry.acked.len() + carry.sent.len(), REMEMBERED);
        assert!(carry.acked.contains(&(REMEMBERED as u64 * 2 - 1)));
        assert_eq!(carry.sent.get(&(REMEMBERED as u64 * 2 - 2)), Some(&7));
        assert!(!carry.acked.contains(&1) && !carry.sent.contains_key(&0));
    }

    #[test]
    fn the_password_stays_out_of_the_config_dump() {
        let s = spec(r#"{"host": "h", "username": "u", "password": "hunter2"}"#).unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
