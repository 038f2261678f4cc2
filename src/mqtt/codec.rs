//! The MQTT 3.1.1 packets a publisher and a subscriber need, written by hand.
//!
//! A publisher sends CONNECT, PUBLISH, PINGREQ and DISCONNECT and reads CONNACK, PUBACK and
//! PINGRESP; a subscriber also sends SUBSCRIBE and PUBACK and reads SUBACK and PUBLISH at QoS 0
//! or 1 (it never asks for QoS 2): a few hundred lines. The MQTT crates either bring an async runtime (rumqttc,
//! paho-mqtt's C library through FFI) or a full broker-side codec with both protocol versions,
//! several times the size of what pipit uses; this one is small enough to read whole, and its
//! decoder is fuzzed (`fuzz/fuzz_targets/mqtt_packet.rs`).
//!
//! The decoder never trusts a length: a packet announcing more than its [`Role`] allows (for a
//! publisher [`MAX_INCOMING`] bytes, since nothing a broker owes a publisher is longer than a few
//! bytes) is refused before anything is read into memory.

use std::fmt;

/// The largest packet body ("remaining length") accepted from a broker, in bytes. CONNACK and
/// PUBACK have 2, PINGRESP none; anything bigger is a broken or hostile peer.
pub const MAX_INCOMING: usize = 1024;

/// The largest remaining length MQTT can express (four length bytes).
pub const MAX_REMAINING: usize = 268_435_455;

/// What the client is, which decides what it takes from a broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Takes CONNACK, PUBACK and PINGRESP, none longer than [`MAX_INCOMING`].
    Publisher,
    /// Also takes SUBACK and PUBLISH (QoS 0 or 1), none longer than this many bytes.
    Subscriber {
        /// The largest packet body accepted.
        max_packet: usize,
    },
}

impl Role {
    /// The largest packet body (remaining length) taken.
    pub fn max_packet(self) -> usize {
        match self {
            Role::Publisher => MAX_INCOMING,
            Role::Subscriber { max_packet } => max_packet.max(MAX_INCOMING),
        }
    }
}

/// The quality of service of a PUBLISH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QoS {
    /// At most once: no acknowledgement.
    AtMostOnce = 0,
    /// At least once: the broker answers each PUBLISH with a PUBACK.
    AtLeastOnce = 1,
}

/// The Last Will of a session: what the broker publishes when the client goes away unannounced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    /// Its topic.
    pub topic: String,
    /// Its payload.
    pub payload: Vec<u8>,
    /// Its QoS.
    pub qos: QoS,
    /// Whether the broker keeps it as the topic's retained message.
    pub retain: bool,
}

/// The fields of a CONNECT packet.
#[derive(Clone, Copy)]
pub struct Connect<'a> {
    /// The client identifier (a persistent session is keyed by it).
    pub client_id: &'a str,
    /// Seconds within which the client promises to send something; 0 turns keepalive off.
    pub keepalive: u16,
    /// Whether the broker drops the session's state at connect.
    pub clean_session: bool,
    /// The Last Will, if any.
    pub will: Option<&'a Will>,
    /// The user name, if any.
    pub username: Option<&'a str>,
    /// The password, if any (sent only with a user name, as MQTT 3.1.1 requires).
    pub password: Option<&'a str>,
}

/// A PUBLISH packet to encode.
#[derive(Debug, Clone, Copy)]
pub struct Publish<'a> {
    /// The topic name (no wildcards).
    pub topic: &'a str,
    /// The payload.
    pub payload: &'a [u8],
    /// The QoS.
    pub qos: QoS,
    /// Whether the broker keeps it as the topic's retained message.
    pub retain: bool,
    /// Set when the packet is sent again under the same packet identifier.
    pub dup: bool,
    /// The packet identifier (QoS 1; ignored at QoS 0).
    pub packet_id: u16,
}

/// A message a broker delivers to a subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Its topic name.
    pub topic: String,
    /// Its payload.
    pub payload: Vec<u8>,
    /// The QoS it was delivered at.
    pub qos: QoS,
    /// Its packet identifier (QoS 1; 0 at QoS 0), to acknowledge it with.
    pub packet_id: u16,
    /// Whether the broker may have delivered it before.
    pub dup: bool,
    /// Whether it is the topic's retained message, handed over at subscription.
    pub retain: bool,
}

/// A packet a broker sends to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// The answer to CONNECT.
    ConnAck {
        /// Whether the broker still had the session of this client id.
        session_present: bool,
        /// 0 accepted; 1-5 refused (see [`connack_reason`]).
        code: u8,
    },
    /// The acknowledgement of the QoS 1 PUBLISH with this packet identifier.
    PubAck(u16),
    /// The answer to PINGREQ.
    PingResp,
    /// The answer to the SUBSCRIBE with this packet identifier; `refused` when the broker refused
    /// any of its filters.
    SubAck {
        /// The SUBSCRIBE's packet identifier.
        packet_id: u16,
        /// Whether a return code was 0x80 (failure).
        refused: bool,
    },
    /// A message for a subscriber.
    Publish(Message),
}

/// Why bytes from a broker are not a packet a publisher can take. After any of these the
/// connection cannot be trusted and is closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The remaining length took more than four bytes.
    BadLength,
    /// The packet announced this many bytes, more than the [`Role`] takes.
    TooLarge(usize),
    /// A first byte (packet type and flags) a broker never sends to a client of this role.
    Unexpected(u8),
    /// A known packet type with the wrong flags or body length.
    Malformed(&'static str),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::BadLength => f.write_str("a remaining length longer than four bytes"),
            DecodeError::TooLarge(n) => {
                write!(f, "a packet of {n} bytes announced, over the limit")
            }
            DecodeError::Unexpected(b) => {
                write!(
                    f,
                    "first byte {b:#04x} (packet type {}) is not one a broker sends this client",
                    b >> 4
                )
            }
            DecodeError::Malformed(what) => write!(f, "a malformed {what}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Reads one packet from the front of `buf`: `Ok(None)` when more bytes are needed, otherwise the
/// packet and how many bytes it took. Needs at most `role.max_packet() + 5` bytes of `buf`.
pub fn decode(buf: &[u8], role: Role) -> Result<Option<(Incoming, usize)>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    // Refuse an unknown type (or reserved flags set) before waiting for a length that may never
    // come. A subscriber takes PUBLISH at QoS 0 or 1 (any DUP and RETAIN) and SUBACK.
    let subscriber = matches!(role, Role::Subscriber { .. });
    let publish = first & 0xf0 == 0x30 && first & 0x06 <= 0x02;
    if !(matches!(first, 0x20 | 0x40 | 0xd0) || subscriber && (publish || first == 0x90)) {
        return Err(DecodeError::Unexpected(first));
    }
    let Some((len, head)) = remaining_length(&buf[1..])? else {
        return Ok(None);
    };
    if len > role.max_packet() {
        return Err(DecodeError::TooLarge(len));
    }
    let total = 1 + head + len;
    if buf.len() < total {
        return Ok(None);
    }
    let body = &buf[1 + head..total];
    let packet = match (first, body) {
        (0x20, &[flags, code]) if flags & 0xfe == 0 => Incoming::ConnAck {
            session_present: flags & 1 == 1,
            code,
        },
        (0x20, _) => return Err(DecodeError::Malformed("CONNACK")),
        (0x40, &[hi, lo]) => Incoming::PubAck(u16::from_be_bytes([hi, lo])),
        (0x40, _) => return Err(DecodeError::Malformed("PUBACK")),
        (0xd0, &[]) => Incoming::PingResp,
        (0xd0, _) => return Err(DecodeError::Malformed("PINGRESP")),
        (0x90, &[hi, lo, ref codes @ ..]) if !codes.is_empty() => Incoming::SubAck {
            packet_id: u16::from_be_bytes([hi, lo]),
            refused: codes.contains(&0x80),
        },
        (0x90, _) => return Err(DecodeError::Malformed("SUBACK")),
        _ => Incoming::Publish(publish_body(first, body).ok_or(DecodeError::Malformed("PUBLISH"))?),
    };
    Ok(Some((packet, total)))
}

/// The message of a PUBLISH whose first byte is `first`: a topic of valid UTF-8 without
/// wildcards, a packet identifier at QoS 1, the rest the payload.
fn publish_body(first: u8, body: &[u8]) -> Option<Message> {
    let qos = if first & 0x02 != 0 {
        QoS::AtLeastOnce
    } else {
        QoS::AtMostOnce
    };
    let len = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]));
    let topic = std::str::from_utf8(body.get(2..2 + len)?).ok()?;
    if topic.is_empty() || topic.contains(['+', '#', '\0']) {
        return None;
    }
    let mut rest = &body[2 + len..];
    let mut packet_id = 0;
    if qos == QoS::AtLeastOnce {
        packet_id = u16::from_be_bytes([*rest.first()?, *rest.get(1)?]);
        if packet_id == 0 {
            return None;
        }
        rest = &rest[2..];
    }
    Some(Message {
        topic: topic.to_owned(),
        payload: rest.to_vec(),
        qos,
        packet_id,
        dup: first & 0x08 != 0,
        retain: first & 0x01 != 0,
    })
}

/// The remaining length at the front of `buf` and the bytes it took; `None` when cut short.
fn remaining_length(buf: &[u8]) -> Result<Option<(usize, usize)>, DecodeError> {
    let mut value = 0usize;
    for (i, &b) in buf.iter().enumerate() {
        if i == 4 {
            return Err(DecodeError::BadLength);
        }
        value |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    if buf.len() >= 4 {
        return Err(DecodeError::BadLength);
    }
    Ok(None)
}

/// What a CONNACK refusal code means, and what to do about it.
pub fn connack_reason(code: u8) -> &'static str {
    match code {
        1 => "the broker does not speak MQTT 3.1.1",
        2 => "the broker refused the client id: set \"client_id\" to one it accepts",
        3 => "the broker is unavailable",
        4 => "bad user name or password: check \"username\" and \"password\"",
        5 => "not authorised: the broker's ACL refuses this client",
        _ => "an unknown refusal code",
    }
}

/// Appends a CONNECT packet. Fails when a field is longer than MQTT can carry (65,535 bytes).
pub fn encode_connect(c: &Connect<'_>, out: &mut Vec<u8>) -> Result<(), String> {
    let mut body = Vec::with_capacity(64);
    string(&mut body, "MQTT")?;
    body.push(4); // protocol level: 3.1.1
    let mut flags = 0u8;
    if c.clean_session {
        flags |= 0x02;
    }
    if let Some(w) = c.will {
        flags |= 0x04 | (w.qos as u8) << 3;
        if w.retain {
            flags |= 0x20;
        }
    }
    let password = c.username.and(c.password);
    if c.username.is_some() {
        flags |= 0x80;
    }
    if password.is_some() {
        flags |= 0x40;
    }
    body.push(flags);
    body.extend_from_slice(&c.keepalive.to_be_bytes());
    string(&mut body, c.client_id)?;
    if let Some(w) = c.will {
        string(&mut body, &w.topic)?;
        bytes(&mut body, &w.payload)?;
    }
    if let Some(u) = c.username {
        string(&mut body, u)?;
    }
    if let Some(p) = password {
        string(&mut body, p)?;
    }
    packet(out, 0x10, &[&body])
}

/// Appends a PUBLISH packet. Fails when the topic is longer than 65,535 bytes or the packet longer
/// than MQTT allows.
pub fn encode_publish(p: &Publish<'_>, out: &mut Vec<u8>) -> Result<(), String> {
    let mut first = 0x30 | (p.qos as u8) << 1;
    if p.retain {
        first |= 0x01;
    }
    if p.dup && p.qos != QoS::AtMostOnce {
        first |= 0x08;
    }
    let mut head = Vec::with_capacity(p.topic.len() + 4);
    string(&mut head, p.topic)?;
    if p.qos != QoS::AtMostOnce {
        head.extend_from_slice(&p.packet_id.to_be_bytes());
    }
    packet(out, first, &[&head, p.payload])
}

/// Appends a SUBSCRIBE packet for `filters`, each with the QoS asked for. Fails when a filter is
/// longer than MQTT can carry.
pub fn encode_subscribe(
    packet_id: u16,
    filters: &[(String, QoS)],
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let mut body = Vec::with_capacity(64);
    body.extend_from_slice(&packet_id.to_be_bytes());
    for (filter, qos) in filters {
        string(&mut body, filter)?;
        body.push(*qos as u8);
    }
    packet(out, 0x82, &[&body])
}

/// Appends a PUBACK packet: the acknowledgement of the QoS 1 message with this identifier.
pub fn encode_puback(packet_id: u16, out: &mut Vec<u8>) {
    out.extend_from_slice(&[0x40, 2]);
    out.extend_from_slice(&packet_id.to_be_bytes());
}

/// Appends a PINGREQ packet.
pub fn encode_pingreq(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0xc0, 0]);
}

/// Appends a DISCONNECT packet (a clean goodbye: the broker does not publish the Will).
pub fn encode_disconnect(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0xe0, 0]);
}

fn packet(out: &mut Vec<u8>, first: u8, parts: &[&[u8]]) -> Result<(), String> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    if len > MAX_REMAINING {
        return Err(format!(
            "a packet of {len} bytes, over MQTT's limit of {MAX_REMAINING}"
        ));
    }
    out.push(first);
    let mut n = len;
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            break;
        }
    }
    for p in parts {
        out.extend_from_slice(p);
    }
    Ok(())
}

fn string(out: &mut Vec<u8>, s: &str) -> Result<(), String> {
    bytes(out, s.as_bytes())
}

fn bytes(out: &mut Vec<u8>, b: &[u8]) -> Result<(), String> {
    let len = u16::try_from(b.len())
        .map_err(|_| format!("a field of {} bytes, over MQTT's limit of 65535", b.len()))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(b);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_p(buf: &[u8]) -> Result<Option<(Incoming, usize)>, DecodeError> {
        decode(buf, Role::Publisher)
    }

    #[test]
    fn connect_matches_the_specification_example() {
        let will = Will {
            topic: "p/h/status".into(),
            payload: b"offline".to_vec(),
            qos: QoS::AtLeastOnce,
            retain: true,
        };
        let mut out = Vec::new();
        encode_connect(
            &Connect {
                client_id: "c",
                keepalive: 30,
                clean_session: false,
                will: Some(&will),
                username: Some("u"),
                password: Some("pw"),
            },
            &mut out,
        )
        .unwrap();
        let mut want = vec![0x10, 0];
        want.extend_from_slice(b"\x00\x04MQTT\x04");
        want.push(0x80 | 0x40 | 0x20 | 0x08 | 0x04);
        want.extend_from_slice(
            b"\x00\x1e\x00\x01c\x00\x0ap/h/status\x00\x07offline\x00\x01u\x00\x02pw",
        );
        want[1] = (want.len() - 2) as u8;
        assert_eq!(out, want);
    }

    #[test]
    fn a_password_without_a_user_name_is_not_sent() {
        let mut out = Vec::new();
        let c = Connect {
            client_id: "c",
            keepalive: 0,
            clean_session: true,
            will: None,
            username: None,
            password: Some("pw"),
        };
        encode_connect(&c, &mut out).unwrap();
        assert_eq!(out[9], 0x02);
        assert!(!out.windows(2).any(|w| w == b"pw"));
    }

    #[test]
    fn publish_sets_flags_and_a_multi_byte_length() {
        let payload = vec![b'x'; 200];
        let mut out = Vec::new();
        let p = Publish {
            topic: "a/b",
            payload: &payload,
            qos: QoS::AtLeastOnce,
            retain: true,
            dup: true,
            packet_id: 0x0102,
        };
        encode_publish(&p, &mut out).unwrap();
        // 2 + 3 topic bytes, 2 id bytes, 200 payload bytes = 207 = 0xcf 0x01.
        assert_eq!(&out[..10], b"\x3b\xcf\x01\x00\x03a/b\x01\x02");
        assert_eq!(out.len(), 3 + 207);
        out.clear();
        encode_publish(
            &Publish {
                qos: QoS::AtMostOnce,
                ..p
            },
            &mut out,
        )
        .unwrap();
        assert_eq!(&out[..2], b"\x31\xcd");
    }

    #[test]
    fn broker_packets_decode_and_wait_for_their_bytes() {
        assert_eq!(
            decode_p(b"\x20\x02\x01\x00").unwrap(),
            Some((
                Incoming::ConnAck {
                    session_present: true,
                    code: 0
                },
                4
            ))
        );
        assert_eq!(
            decode_p(b"\x40\x02\x12\x34\xd0").unwrap(),
            Some((Incoming::PubAck(0x1234), 4))
        );
        assert_eq!(
            decode_p(b"\xd0\x00").unwrap(),
            Some((Incoming::PingResp, 2))
        );
        for cut in [&b""[..], b"\x40", b"\x40\x02\x12", b"\x20\x82"] {
            assert_eq!(decode_p(cut).unwrap(), None, "{cut:?}");
        }
    }

    #[test]
    fn hostile_packets_are_refused_before_their_body_arrives() {
        assert_eq!(
            decode_p(b"\x40\xff\xff\xff\x7f").unwrap_err(),
            DecodeError::TooLarge(MAX_REMAINING)
        );
        assert_eq!(
            decode_p(b"\x40\x80\x80\x80\x80\x01").unwrap_err(),
            DecodeError::BadLength
        );
        assert_eq!(
            decode_p(b"\x30\x00").unwrap_err(),
            DecodeError::Unexpected(0x30)
        );
        assert_eq!(
            decode_p(b"GET / HTTP/1.1").unwrap_err(),
            DecodeError::Unexpected(b'G')
        );
        assert!(matches!(
            decode_p(b"\x40\x03\x00\x01\x00").unwrap_err(),
            DecodeError::Malformed("PUBACK")
        ));
        assert_eq!(
            decode_p(b"\x42\x02\x00\x01").unwrap_err(),
            DecodeError::Unexpected(0x42)
        );
    }

    #[test]
    fn a_subscriber_takes_suback_and_publish_and_a_publisher_does_not() {
        let sub = Role::Subscriber { max_packet: 4096 };
        assert_eq!(
            decode(b"\x90\x03\x00\x07\x01", sub).unwrap(),
            Some((
                Incoming::SubAck {
                    packet_id: 7,
                    refused: false
                },
                5
            ))
        );
        assert!(matches!(
            decode(b"\x90\x04\x00\x07\x01\x80", sub).unwrap(),
            Some((Incoming::SubAck { refused: true, .. }, 6))
        ));
        let mut out = Vec::new();
        encode_publish(
            &Publish {
                topic: "a/b",
                payload: b"21.5",
                qos: QoS::AtLeastOnce,
                retain: true,
                dup: true,
                packet_id: 9,
            },
            &mut out,
        )
        .unwrap();
        let want = Message {
            topic: "a/b".into(),
            payload: b"21.5".to_vec(),
            qos: QoS::AtLeastOnce,
            packet_id: 9,
            dup: true,
            retain: true,
        };
        assert_eq!(
            decode(&out, sub).unwrap(),
            Some((Incoming::Publish(want), out.len()))
        );
        assert_eq!(
            decode(&out, Role::Publisher).unwrap_err(),
            DecodeError::Unexpected(0x3b)
        );
        for bad in [
            &b"\x30\x03\x00\x01+"[..],
            b"\x32\x05\x00\x01a\x00\x00",
            b"\x30\x02\x00\x05",
            b"\x30\x03\x00\x01\xff",
        ] {
            assert!(matches!(
                decode(bad, sub),
                Err(DecodeError::Malformed("PUBLISH"))
            ));
        }
        assert_eq!(
            decode(b"\x34\x00", sub).unwrap_err(),
            DecodeError::Unexpected(0x34)
        );
        out.clear();
        encode_subscribe(3, &[("s/#".into(), QoS::AtLeastOnce)], &mut out).unwrap();
        assert_eq!(out, b"\x82\x08\x00\x03\x00\x03s/#\x01");
        out.clear();
        encode_puback(0x0102, &mut out);
        assert_eq!(out, b"\x40\x02\x01\x02");
    }

    /// Property: any bytes decode to a packet, a wait or an error, never a panic, and a packet
    /// never takes more bytes than were given nor more than the limit.
    #[test]
    fn any_bytes_decode_within_bounds() {
        fn prop(bytes: Vec<u8>) -> bool {
            let sub = Role::Subscriber { max_packet: 2048 };
            [(Role::Publisher, MAX_INCOMING), (sub, 2048)]
                .iter()
                .all(|(role, max)| match decode(&bytes, *role) {
                    Ok(Some((_, n))) => n <= bytes.len() && n <= max + 5,
                    Ok(None) | Err(_) => true,
                })
        }
        quickcheck::quickcheck(prop as fn(Vec<u8>) -> bool);
    }
}
