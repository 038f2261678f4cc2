//! The few protobuf messages of Riemann's protocol, encoded and decoded by hand.
//!
//! Only what a client needs: a `Msg` carrying `Event`s out, and the `ok`/`error` of the `Msg` the
//! server answers with. Field numbers follow Riemann's `riemann.proto` (proto2):
//!
//! | Event field | # | wire type |
//! |---|---|---|
//! | `time` (int64, seconds) | 1 | varint |
//! | `state`, `service`, `host`, `description` | 2, 3, 4, 5 | bytes |
//! | `tags` (repeated) | 7 | bytes |
//! | `ttl` (float, seconds) | 8 | fixed32 |
//! | `attributes` (repeated `Attribute { key = 1; value = 2 }`) | 9 | bytes |
//! | `time_micros` (int64) | 10 | varint |
//! | `metric_sint64` (zigzag) | 13 | varint |
//! | `metric_d` (double) | 14 | fixed64 |
//! | `metric_f` (float) | 15 | fixed32 |
//!
//! `Msg`: `ok` = 2 (bool), `error` = 3 (string), `events` = 6 (repeated `Event`).
//!
//! Like Riemann's own clients, a metric is sent as `metric_sint64` (integers) or `metric_d`
//! (floats), and also as `metric_f` so that servers of any age read it, and the time is sent both
//! as `time` and `time_micros`. `metric_f` is left out when a 32-bit float cannot represent the
//! value: beyond ±3.4e38 it would be infinite, and closer to zero than 1.2e-38 it would be zero
//! or lose its precision; otherwise it is the value rounded to 24 significant bits.

use crate::event::{Event, Metric};
use crate::protobuf::{
    BYTES, Fields, Value, bytes_field, bytes_len, fixed32_field, fixed64_field, key, varint,
    varint_field, varint_len, zigzag,
};

const EVENT_TIME: u8 = 1;
const EVENT_STATE: u8 = 2;
const EVENT_SERVICE: u8 = 3;
const EVENT_HOST: u8 = 4;
const EVENT_DESCRIPTION: u8 = 5;
const EVENT_TAGS: u8 = 7;
const EVENT_TTL: u8 = 8;
const EVENT_ATTRIBUTES: u8 = 9;
const EVENT_TIME_MICROS: u8 = 10;
const EVENT_METRIC_SINT64: u8 = 13;
const EVENT_METRIC_D: u8 = 14;
const EVENT_METRIC_F: u8 = 15;
const ATTRIBUTE_KEY: u8 = 1;
const ATTRIBUTE_VALUE: u8 = 2;
const MSG_OK: u64 = 2;
const MSG_ERROR: u64 = 3;
const MSG_EVENTS: u8 = 6;

/// Appends the `events` field of a `Msg` holding `event` (a whole `Msg` is just a run of these).
pub fn encode_event(event: &Event, out: &mut Vec<u8>) {
    key(MSG_EVENTS, BYTES, out);
    varint(event_len(event) as u64, out);
    let start = out.len();
    varint_field(EVENT_TIME, event.unix_seconds() as u64, out);
    if let Some(state) = &event.state {
        bytes_field(EVENT_STATE, state.as_str().as_bytes(), out);
    }
    bytes_field(EVENT_SERVICE, event.service.as_bytes(), out);
    bytes_field(EVENT_HOST, event.host.as_bytes(), out);
    if let Some(description) = &event.description {
        bytes_field(EVENT_DESCRIPTION, description.as_bytes(), out);
    }
    for tag in &event.tags {
        bytes_field(EVENT_TAGS, tag.as_bytes(), out);
    }
    if let Some(ttl) = event.ttl {
        fixed32_field(EVENT_TTL, (ttl.as_secs_f64() as f32).to_bits(), out);
    }
    for (k, v) in &event.attributes {
        key(EVENT_ATTRIBUTES, BYTES, out);
        varint(attribute_len(k, v) as u64, out);
        bytes_field(ATTRIBUTE_KEY, k.as_bytes(), out);
        bytes_field(ATTRIBUTE_VALUE, v.as_bytes(), out);
    }
    varint_field(EVENT_TIME_MICROS, event.unix_micros() as u64, out);
    match event.metric {
        Some(Metric::Int(v)) => varint_field(EVENT_METRIC_SINT64, zigzag(v), out),
        Some(Metric::Float(v)) => fixed64_field(EVENT_METRIC_D, v.to_bits(), out),
        None => {}
    }
    if let Some(f) = event.metric.and_then(as_f32) {
        fixed32_field(EVENT_METRIC_F, f.to_bits(), out);
    }
    debug_assert_eq!(out.len() - start, event_len(event));
}

/// The bytes [`encode_event`] appends for `event`.
pub fn encoded_len(event: &Event) -> usize {
    let n = event_len(event);
    1 + varint_len(n as u64) + n
}

/// The length of the `Event` message itself, without its field key and length.
fn event_len(event: &Event) -> usize {
    let mut n = 1 + varint_len(event.unix_seconds() as u64);
    n += 1 + varint_len(event.unix_micros() as u64);
    if let Some(state) = &event.state {
        n += bytes_len(state.as_str().len());
    }
    n += bytes_len(event.service.len()) + bytes_len(event.host.len());
    if let Some(description) = &event.description {
        n += bytes_len(description.len());
    }
    n += event.tags.iter().map(|t| bytes_len(t.len())).sum::<usize>();
    if event.ttl.is_some() {
        n += 5;
    }
    n += event
        .attributes
        .iter()
        .map(|(k, v)| bytes_len(attribute_len(k, v)))
        .sum::<usize>();
    n += match event.metric {
        Some(Metric::Int(v)) => 1 + varint_len(zigzag(v)),
        Some(Metric::Float(_)) => 9,
        None => 0,
    };
    if event.metric.and_then(as_f32).is_some() {
        n += 5;
    }
    n
}

/// `metric` as a 32-bit float, when one represents it: finite, and zero or a normal number.
fn as_f32(metric: Metric) -> Option<f32> {
    let f = metric.as_f64() as f32;
    (f.is_normal() || metric.as_f64() == 0.0).then_some(f)
}

fn attribute_len(k: &str, v: &str) -> usize {
    bytes_len(k.len()) + bytes_len(v.len())
}

/// The server's answer to a `Msg`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// The `ok` field; absent counts as false.
    pub ok: bool,
    /// The `error` field, when set (lossily decoded as UTF-8).
    pub error: Option<String>,
}

/// Decodes the `ok` and `error` fields of a `Msg`, skipping every other field.
///
/// Refuses, without panicking, anything that is not a well-formed protobuf message: a length
/// that runs past the end, a truncated varint, an unknown wire type.
pub fn decode_ack(bytes: &[u8]) -> Result<Ack, String> {
    let mut ack = Ack {
        ok: false,
        error: None,
    };
    for field in Fields(bytes) {
        match field? {
            (MSG_OK, Value::Varint(v)) => ack.ok = v != 0,
            (MSG_ERROR, Value::Bytes(text)) => {
                ack.error = Some(String::from_utf8_lossy(text).into_owned())
            }
            _ => {}
        }
    }
    Ok(ack)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::protobuf::read_varint;

    fn encode(event: &Event) -> Vec<u8> {
        let mut out = Vec::new();
        encode_event(event, &mut out);
        assert_eq!(out.len(), encoded_len(event));
        out
    }

    #[test]
    fn a_small_event_has_the_exact_bytes() {
        let e = Event::new("s", "h")
            .with_metric(-1i64)
            .with_time(SystemTime::UNIX_EPOCH + Duration::from_micros(1_000_001));
        let expected = [
            0x32, 19, // Msg.events, 19 bytes
            0x08, 1, // time = 1
            0x1a, 1, b's', // service
            0x22, 1, b'h', // host
            0x50, 0xc1, 0x84, 0x3d, // time_micros = 1_000_001
            0x68, 1, // metric_sint64 = zigzag(-1) = 1
            0x7d, 0, 0, 0x80, 0xbf, // metric_f = -1.0
        ];
        assert_eq!(encode(&e), expected);
    }

    #[test]
    fn metric_f_is_sent_only_when_a_float_represents_the_value() {
        for (value, sent) in [
            (1e300, None),
            (-1e300, None),
            (1e-50, None),
            (1e-40, None),
            (0.0, Some(0.0)),
            (0.1, Some(0.1f32)),
            (3.4e38, Some(3.4e38f32)),
            (-2e-38, Some(-2e-38f32)),
        ] {
            assert_eq!(as_f32(Metric::Float(value)), sent, "{value}");
            let e = Event::new("s", "h").with_metric(value);
            let out = encode(&e);
            // metric_f, when sent, is the last field: its key and four bytes.
            assert_eq!(out[out.len() - 5] == 0x7d, sent.is_some(), "{value}");
        }
        assert_eq!(as_f32(Metric::Int(i64::MAX)), Some(9.223372e18));
    }

    #[test]
    fn every_optional_field_is_counted_in_the_length() {
        let mut e = Event::new("a".repeat(200), "host")
            .with_metric(1.5)
            .with_state("ok")
            .with_description("d\"x");
        e.ttl = Some(Duration::from_secs(20));
        e.tags = vec!["t1".into(), "t2".into()];
        e.attributes.insert("k".into(), "v".repeat(300));
        let out = encode(&e);
        assert_eq!(out[0], 0x32);
        let mut rest = &out[1..];
        let len = read_varint(&mut rest).unwrap();
        assert_eq!(len as usize, rest.len());
    }

    #[test]
    fn fields_walk_an_encoded_event() {
        let e = Event::new("svc", "h").with_metric(2.5);
        let msg = encode(&e);
        let fields: Vec<_> = Fields(&msg).collect::<Result<_, _>>().unwrap();
        let [(6, Value::Bytes(event))] = fields[..] else {
            panic!("{fields:?}")
        };
        let inner: Vec<_> = Fields(event).collect::<Result<_, _>>().unwrap();
        assert!(inner.contains(&(3, Value::Bytes(b"svc"))));
        assert!(inner.contains(&(14, Value::Fixed64(2.5f64.to_bits()))));
        assert!(inner.contains(&(15, Value::Fixed32(2.5f32.to_bits()))));
    }

    #[test]
    fn acks_decode_and_skip_unknown_fields() {
        assert_eq!(
            decode_ack(&[0x10, 1]),
            Ok(Ack {
                ok: true,
                error: None
            })
        );
        let mut msg = vec![0x10, 0, 0x1a, 4];
        msg.extend_from_slice(b"nope");
        // An unknown varint, fixed64, fixed32 and bytes field.
        msg.extend_from_slice(&[
            0x08, 0x96, 0x01, 0x39, 1, 2, 3, 4, 5, 6, 7, 8, 0x45, 1, 2, 3, 4, 0x32, 1, 0,
        ]);
        assert_eq!(
            decode_ack(&msg),
            Ok(Ack {
                ok: false,
                error: Some("nope".into())
            })
        );
        assert_eq!(
            decode_ack(&[]),
            Ok(Ack {
                ok: false,
                error: None
            })
        );
    }

    #[test]
    fn garbage_is_refused_without_panicking() {
        assert!(decode_ack(&[0x1a, 5, b'a']).is_err(), "length past the end");
        assert!(
            decode_ack(&[
                0x1a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
            ])
            .is_err()
        );
        assert!(decode_ack(&[0x10]).is_err(), "truncated varint");
        assert!(
            decode_ack(&[
                0x10, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01
            ])
            .is_err()
        );
        assert!(decode_ack(&[0x0b]).is_err(), "group wire type");
        assert!(decode_ack(&[0x39, 1, 2]).is_err());
        // Any bytes: an answer or an error, never a panic.
        fn prop(bytes: Vec<u8>) -> bool {
            let _ = decode_ack(&bytes);
            true
        }
        quickcheck::QuickCheck::new()
            .tests(20_000)
            .max_tests(20_000)
            .quickcheck(prop as fn(Vec<u8>) -> bool);
    }
}
