//! The Riemann client and output against a Riemann server that decodes with a schema pipit did not
//! write: tests/peers/riemann_peer.py, built on the riemann-client package's `riemann_pb2`.
//! Needs the packages from tests/install-deps.sh.
#![cfg(feature = "riemann")]

mod common;

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::outputs;
use common::peers::{RiemannPeer, wait_until};
use pipit::outputs::riemann::{MAX_DATAGRAM, RiemannClient, RiemannError, Timeouts, Transport};
use pipit::{Event, Metric};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(15);

fn addr(peer: &RiemannPeer) -> String {
    format!("127.0.0.1:{}", peer.port())
}

fn timeouts(ack: Duration) -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(5),
        write: Duration::from_secs(5),
        ack,
    }
}

fn tcp_client(peer: &RiemannPeer) -> RiemannClient {
    RiemannClient::connect(
        &addr(peer),
        Transport::Tcp,
        timeouts(Duration::from_secs(10)),
    )
    .unwrap()
}

fn received(peer: &RiemannPeer, n: usize) -> Vec<Value> {
    let lines = peer.wait_events(n, DEADLINE);
    lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// 2023-11-14 22:13:20.123456 UTC.
fn when() -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456)
}

fn full_event(service: &str, metric: Metric) -> Event {
    let mut e = Event::new(service, "router-1")
        .with_metric(metric)
        .with_state("warning")
        .with_description("load is \"high\"\nsecond line ü")
        .with_time(when());
    e.ttl = Some(Duration::from_millis(2500));
    e.tags = vec!["edge".into(), "lab 7".into()];
    e.attributes = BTreeMap::from([
        ("site".into(), "ams-1".into()),
        ("owner".into(), "ops=ü".into()),
    ]);
    e
}

/// Checks every field the Python schema decodes, and `time_micros`, which it does not know and
/// the peer reads from the unknown fields.
fn assert_full(v: &Value, service: &str) {
    assert_eq!(v["service"], service, "{v}");
    assert_eq!(v["host"], "router-1");
    assert_eq!(v["state"], "warning");
    assert_eq!(v["description"], "load is \"high\"\nsecond line ü");
    assert_eq!(v["time"], 1_700_000_000i64);
    assert_eq!(v["time_micros"], 1_700_000_000_123_456i64);
    assert_eq!(v["ttl"], 2.5);
    assert_eq!(v["tags"], serde_json::json!(["edge", "lab 7"]));
    assert_eq!(
        v["attributes"],
        serde_json::json!({"owner": "ops=ü", "site": "ams-1"})
    );
    assert_eq!(
        v["unknown_fields"],
        serde_json::json!([]),
        "every field but time_micros is in riemann-client's schema"
    );
}

#[test]
fn every_field_arrives_for_each_metric_variant() {
    let peer = RiemannPeer::start("ok");
    let mut client = tcp_client(&peer);
    let big = -1_234_567_890_123i64;
    let events = vec![
        full_event("int", Metric::Int(big)),
        full_event("float", Metric::Float(0.1)),
        Event::new("bare", "router-1").with_time(when()),
    ];
    client.send_many(&events).unwrap();
    client.send(&full_event("single", Metric::Int(7))).unwrap();
    client.close().unwrap();
    let got = received(&peer, 4);
    assert_eq!(got.len(), 4);

    assert_full(&got[0], "int");
    assert_eq!(got[0]["metric_sint64"], big);
    assert_eq!(got[0]["metric_f"], f64::from(big as f32));
    assert_eq!(got[0]["has"]["metric_d"], false);

    assert_full(&got[1], "float");
    assert_eq!(got[1]["metric_d"], 0.1);
    assert_eq!(got[1]["metric_f"], f64::from(0.1f32));
    assert_eq!(got[1]["has"]["metric_sint64"], false);

    let bare = &got[2];
    assert_eq!(bare["service"], "bare");
    for absent in [
        "state",
        "description",
        "ttl",
        "metric_sint64",
        "metric_d",
        "metric_f",
    ] {
        assert_eq!(
            bare["has"][absent], false,
            "{absent} should be absent: {bare}"
        );
    }
    assert_eq!(bare["tags"], serde_json::json!([]));
    assert_eq!(bare["attributes"], serde_json::json!({}));

    assert_full(&got[3], "single");
    assert_eq!(got[3]["metric_sint64"], 7);
    assert_eq!(got[0]["msg"], got[2]["msg"], "one batch is one message");
    assert_ne!(got[0]["msg"], got[3]["msg"]);
}

#[test]
fn metric_f_is_sent_only_when_a_float_represents_the_metric() {
    let peer = RiemannPeer::start("ok");
    let mut client = tcp_client(&peer);
    let values = [1e300, -1e300, 1e-50, 1e-40, 3.0e38, 1.5e-38, 0.0];
    let events: Vec<Event> = values
        .iter()
        .map(|&v| full_event(&format!("m{v:e}"), Metric::Float(v)))
        .collect();
    client.send_many(&events).unwrap();
    client.close().unwrap();
    let got = received(&peer, values.len());
    for (v, event) in values.iter().zip(&got) {
        assert_full(event, &format!("m{v:e}"));
        // serde_json (without its float_roundtrip feature) may read the last digit one ulp off.
        let d = event["metric_d"].as_f64().unwrap();
        assert!((d - v).abs() <= v.abs() * 1e-15, "metric_d: {event}");
        let a = v.abs();
        let representable =
            a == 0.0 || (f64::from(f32::MIN_POSITIVE)..=f64::from(f32::MAX)).contains(&a);
        assert_eq!(event["has"]["metric_f"], representable, "{event}");
        if representable {
            let f = event["metric_f"].as_f64().unwrap() as f32;
            assert_eq!(f, *v as f32, "{event}");
        }
    }
}

#[test]
fn a_refusal_is_an_error_and_the_connection_stays_usable() {
    let peer = RiemannPeer::start("fail");
    let mut client = tcp_client(&peer);
    for _ in 0..2 {
        match client.send(&Event::new("x", "h").with_metric(1i64)) {
            Err(RiemannError::Refused(e)) => assert_eq!(e, "test failure"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
    let got = received(&peer, 2);
    assert_eq!(
        got[0]["conn"], got[1]["conn"],
        "a refusal does not close the connection"
    );
}

#[test]
fn a_silent_server_times_out_and_the_next_send_reconnects() {
    let peer = RiemannPeer::start("silent");
    let ack = Duration::from_millis(300);
    let mut client = RiemannClient::connect(&addr(&peer), Transport::Tcp, timeouts(ack)).unwrap();
    for service in ["x", "y"] {
        match client.send(&Event::new(service, "h").with_metric(1i64)) {
            Err(RiemannError::AckTimeout(d)) => assert_eq!(d, ack),
            other => panic!("expected an ack timeout, got {other:?}"),
        }
    }
    let got = received(&peer, 2);
    assert_ne!(
        got[0]["conn"], got[1]["conn"],
        "after a timeout the client opens a new connection"
    );
}

/// The way clients lose events unnoticed: the server restarts, the old connection still takes
/// writes, and only reading the ack shows that nothing arrived. Every send that succeeds must have
/// been recorded by the server.
#[test]
fn after_a_server_restart_no_send_succeeds_without_arriving() {
    let mut peer = RiemannPeer::start("ok");
    let mut client = tcp_client(&peer);
    client
        .send(&Event::new("before", "h").with_metric(1i64))
        .unwrap();
    peer.restart(None);
    let mut ok = 1;
    let mut failed = 0;
    for i in 0..3 {
        match client.send(&Event::new(format!("after.{i}"), "h").with_metric(1i64)) {
            Ok(()) => ok += 1,
            Err(RiemannError::Read(_) | RiemannError::Write(_)) => failed += 1,
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(
        failed, 1,
        "the first send on the dead connection fails, the next ones reconnect"
    );
    let got = received(&peer, ok);
    assert_eq!(got.len(), ok);
}

#[test]
fn the_output_holds_refused_and_unanswered_batches_until_the_server_takes_them() {
    let mut peer = RiemannPeer::start("ok");
    let handle = outputs::start(&format!(
        r#"{{"type": "riemann", "host": "127.0.0.1", "port": {}, "ack_timeout": "300ms", "batch_size": 5, "batch_timeout": "50ms", "retries": 0, "retry_delay": "50ms", "retry_max_delay": "200ms", "breaker_failures": 100}}"#,
        peer.port()
    ));
    let stats = handle.stats.clone();
    let send = |mode: &str| {
        outputs::send(
            &handle,
            (0..5i64).map(|n| Event::new(format!("{mode}.{n}"), "h").with_metric(n)),
        )
    };
    send("ok");
    wait_until("the first batch", DEADLINE, || {
        (outputs::counts(&stats) == (5, 0, 0)).then_some(())
    });
    // Without a spool, a batch the server refuses or leaves unanswered is held and tried again.
    for (mode, error) in [("fail", "refused"), ("silent", "no answer within 300 ms")] {
        peer.restart(Some(mode));
        send(mode);
        wait_until(&format!("the {mode} error"), DEADLINE, || {
            stats
                .last_error
                .lock()
                .unwrap()
                .contains(error)
                .then_some(())
        });
        assert_eq!(outputs::counts(&stats), (5, 0, 0), "{mode}");
        assert!(pipit::telemetry::get(&stats.retried) > 0, "{mode}");
    }
    peer.restart(Some("ok"));
    send("later");
    wait_until("every batch delivered", DEADLINE, || {
        (outputs::counts(&stats) == (20, 0, 0)).then_some(())
    });
    outputs::stop(handle, DEADLINE);
    let services: std::collections::HashSet<String> = peer
        .events()
        .iter()
        .filter_map(|l| common::peers::json_str(l, "service"))
        .collect();
    assert_eq!(services.len(), 20, "{services:?}");
}

#[test]
fn udp_batches_are_split_into_datagrams_and_arrive_exactly_once() {
    let peer = RiemannPeer::start_udp();
    let mut client =
        RiemannClient::connect(&addr(&peer), Transport::Udp, Timeouts::default()).unwrap();
    let events: Vec<Event> = (0..600i64)
        .map(|i| {
            Event::new(format!("udp.{i:04}"), "h")
                .with_metric(i)
                .with_description("d".repeat(100))
        })
        .collect();
    client.send_many(&events).unwrap();
    let got = received(&peer, 600);
    let mut services: Vec<&str> = got.iter().map(|v| v["service"].as_str().unwrap()).collect();
    services.sort_unstable();
    let expected: Vec<String> = (0..600).map(|i| format!("udp.{i:04}")).collect();
    assert_eq!(
        services,
        expected.iter().map(String::as_str).collect::<Vec<_>>()
    );
    let mut messages: Vec<i64> = got.iter().map(|v| v["msg"].as_i64().unwrap()).collect();
    messages.dedup();
    assert!(
        messages.len() >= 5,
        "600 events of ~130 bytes need at least 5 datagrams, got {}",
        messages.len()
    );
}

#[test]
fn every_datagram_stays_under_the_limit() {
    let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    receiver.set_read_timeout(Some(DEADLINE)).unwrap();
    let to = receiver.local_addr().unwrap().to_string();
    let mut client = RiemannClient::connect(&to, Transport::Udp, Timeouts::default()).unwrap();
    let events: Vec<Event> = (0..200)
        .map(|i| Event::new(format!("s.{i}"), "h").with_description("x".repeat(300)))
        .collect();
    client.send_many(&events).unwrap();
    let mut buf = vec![0u8; 65_536];
    let mut sizes = Vec::new();
    let mut total = 0;
    while total < 200 {
        let n = receiver.recv(&mut buf).unwrap();
        sizes.push(n);
        // Each event is one `events` field of the Msg: key 0x32 and a two-byte length here.
        let mut i = 0;
        while i < n {
            assert_eq!(buf[i], 0x32);
            let len = (buf[i + 1] & 0x7f) as usize | ((buf[i + 2] as usize) << 7);
            i += 3 + len;
            total += 1;
        }
        assert_eq!(i, n, "a datagram holds whole events only");
    }
    assert_eq!(total, 200);
    assert!(sizes.iter().all(|&n| n < MAX_DATAGRAM), "{sizes:?}");
    assert!(
        sizes.iter().any(|&n| n > MAX_DATAGRAM - 400),
        "datagrams are filled: {sizes:?}"
    );

    let huge = Event::new("huge", "h").with_description("x".repeat(MAX_DATAGRAM));
    assert!(matches!(client.send(&huge), Err(RiemannError::TooLarge(n)) if n > MAX_DATAGRAM));
}
