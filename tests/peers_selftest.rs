//! Self-tests of the test harness in tests/common/peers.rs: each real
//! backend is started and spoken to with hand-built payloads (std only).
//! Needs the packages from tests/install-deps.sh.

mod common;

use common::peers::*;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const DEADLINE: Duration = Duration::from_secs(15);

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("connect 127.0.0.1:{}: {}", port, e));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

// ------------------------------------------------------------- carbon --

/// Pickle protocol 2 of `[(metric, (timestamp, value)), ...]`, framed with a
/// 4-byte big-endian length as carbon's pickle receiver expects.
fn pickle_frame(points: &[(&str, f64, f64)]) -> Vec<u8> {
    let mut p = vec![0x80, 0x02, b']', b'(']; // PROTO 2, EMPTY_LIST, MARK
    for (metric, ts, value) in points {
        p.push(b'X'); // BINUNICODE
        p.extend_from_slice(&(metric.len() as u32).to_le_bytes());
        p.extend_from_slice(metric.as_bytes());
        p.push(b'G'); // BINFLOAT (big-endian double)
        p.extend_from_slice(&ts.to_be_bytes());
        p.push(b'G');
        p.extend_from_slice(&value.to_be_bytes());
        p.push(0x86); // TUPLE2 (timestamp, value)
        p.push(0x86); // TUPLE2 (metric, (timestamp, value))
    }
    p.push(b'e'); // APPENDS
    p.push(b'.'); // STOP
    let mut frame = (p.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&p);
    frame
}

#[test]
fn carbon_line_udp_pickle_roundtrip() {
    let carbon = CarbonCache::start();
    let t = now();

    let mut s = connect(carbon.line_port());
    write!(
        s,
        "selftest.line.a 1.5 {}\nselftest.line.a 2.5 {}\n",
        t - 2,
        t - 1
    )
    .unwrap();
    drop(s);

    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    u.send_to(
        format!("selftest.udp.b 7 {}\n", t).as_bytes(),
        ("127.0.0.1", carbon.udp_port()),
    )
    .unwrap();

    let mut s = connect(carbon.pickle_port());
    s.write_all(&pickle_frame(&[
        ("selftest.pickle.c", (t - 1) as f64, 3.25),
        ("selftest.pickle.d", t as f64, -4.0),
    ]))
    .unwrap();
    drop(s);

    let a = carbon.wait_for("selftest.line.a", |p| p.len() == 2, DEADLINE);
    assert_eq!(a, vec![(t - 2, 1.5), (t - 1, 2.5)]);
    let b = carbon.wait_for("selftest.udp.b", |p| !p.is_empty(), DEADLINE);
    assert_eq!(b, vec![(t, 7.0)]);
    let c = carbon.wait_for("selftest.pickle.c", |p| !p.is_empty(), DEADLINE);
    assert_eq!(c, vec![(t - 1, 3.25)]);
    let d = carbon.wait_for("selftest.pickle.d", |p| !p.is_empty(), DEADLINE);
    assert_eq!(d, vec![(t, -4.0)]);

    assert_eq!(
        carbon.metrics(),
        vec![
            "selftest.line.a",
            "selftest.pickle.c",
            "selftest.pickle.d",
            "selftest.udp.b"
        ]
    );
    assert!(carbon.read("selftest.never.sent").is_empty());
}

#[test]
fn carbon_restart_keeps_ports_and_data() {
    let mut carbon = CarbonCache::start();
    let (line, pickle, udp) = (carbon.line_port(), carbon.pickle_port(), carbon.udp_port());
    let first_pid = carbon.pid();
    let t = now();

    let mut s = connect(line);
    writeln!(s, "selftest.restart 1 {}", t - 3).unwrap();
    drop(s);
    carbon.wait_for("selftest.restart", |p| p.len() == 1, DEADLINE);

    carbon.stop();
    assert!(!carbon.is_running());
    let refused = TcpStream::connect(("127.0.0.1", line));
    assert!(
        refused.is_err(),
        "line port still accepts connections while stopped"
    );

    carbon.restart();
    assert_ne!(carbon.pid(), first_pid);
    assert_eq!(
        (carbon.line_port(), carbon.pickle_port(), carbon.udp_port()),
        (line, pickle, udp)
    );
    let mut s = connect(line);
    writeln!(s, "selftest.restart 2 {}", t - 2).unwrap();
    drop(s);
    let points = carbon.wait_for("selftest.restart", |p| p.len() == 2, DEADLINE);
    assert_eq!(points, vec![(t - 3, 1.0), (t - 2, 2.0)]);
}

// ------------------------------------------------------------- influx --

#[test]
fn influx_write_and_query() {
    let mut influx = Influx::start();
    assert_eq!(
        http_request(influx.port(), "GET", "/ping", b"").unwrap().0,
        204
    );
    influx.create_db("selftest");
    let t = now();
    influx.write(
        "selftest",
        "s",
        &format!("cpu,host=h1 value=1.5,count=3i {}\n", t),
    );

    let body = influx.query_epoch("selftest", "SELECT value, count, host FROM cpu", "s");
    assert!(
        body.contains(&format!("[[{},1.5,3,\"h1\"]]", t)),
        "unexpected query result: {}",
        body
    );
    let rfc = influx.query("selftest", "SELECT value FROM cpu");
    assert!(
        rfc.contains("\"columns\":[\"time\",\"value\"]"),
        "unexpected: {}",
        rfc
    );
    assert!(
        rfc.contains("Z\",1.5]"),
        "expected an RFC3339 time: {}",
        rfc
    );

    let port = influx.port();
    influx.restart();
    assert_eq!(influx.port(), port);
    let again = influx.query_epoch("selftest", "SELECT value FROM cpu", "s");
    assert!(
        again.contains(&format!("[[{},1.5]]", t)),
        "data lost across restart: {}",
        again
    );
}

// ------------------------------------------------------------ riemann --

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(field: u32, wire: u8, out: &mut Vec<u8>) {
    varint(((field as u64) << 3) | wire as u64, out);
}

fn bytes_field(field: u32, data: &[u8], out: &mut Vec<u8>) {
    key(field, 2, out);
    varint(data.len() as u64, out);
    out.extend_from_slice(data);
}

/// A Riemann Event with every field set, including time_micros (field 10).
fn full_event(service: &str) -> Vec<u8> {
    let mut e = Vec::new();
    key(1, 0, &mut e);
    varint(1_700_000_000, &mut e); // time
    bytes_field(2, b"ok", &mut e); // state
    bytes_field(3, service.as_bytes(), &mut e); // service
    bytes_field(4, b"host-1", &mut e); // host
    bytes_field(5, b"desc \"quoted\"", &mut e); // description
    bytes_field(7, b"t1", &mut e); // tags
    bytes_field(7, b"t2", &mut e);
    key(8, 5, &mut e);
    e.extend_from_slice(&30.0f32.to_le_bytes()); // ttl
    let mut attr = Vec::new();
    bytes_field(1, b"env", &mut attr);
    bytes_field(2, b"test", &mut attr);
    bytes_field(9, &attr, &mut e); // attributes
    key(10, 0, &mut e);
    varint(1_700_000_000_123_456, &mut e); // time_micros
    key(13, 0, &mut e);
    varint(((-5i64 << 1) ^ (-5i64 >> 63)) as u64, &mut e); // metric_sint64, zigzag
    key(14, 1, &mut e);
    e.extend_from_slice(&2.5f64.to_le_bytes()); // metric_d
    key(15, 5, &mut e);
    e.extend_from_slice(&0.5f32.to_le_bytes()); // metric_f
    e
}

fn msg(events: &[Vec<u8>]) -> Vec<u8> {
    let mut m = Vec::new();
    for e in events {
        bytes_field(6, e, &mut m);
    }
    m
}

fn send_frame(s: &mut TcpStream, m: &[u8]) {
    s.write_all(&(m.len() as u32).to_be_bytes()).unwrap();
    s.write_all(m).unwrap();
}

/// Reads one length-prefixed Msg and returns (ok, error).
fn read_reply(s: &mut TcpStream) -> (Option<bool>, Option<String>) {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).expect("reading reply length");
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).expect("reading reply body");
    let (mut ok, mut error, mut i) = (None, None, 0usize);
    let read_varint = |i: &mut usize| {
        let (mut v, mut shift) = (0u64, 0);
        loop {
            let b = body[*i];
            *i += 1;
            v |= ((b & 0x7f) as u64) << shift;
            shift += 7;
            if b < 0x80 {
                return v;
            }
        }
    };
    while i < body.len() {
        let k = read_varint(&mut i);
        match (k >> 3, k & 7) {
            (2, 0) => ok = Some(read_varint(&mut i) != 0),
            (3, 2) => {
                let n = read_varint(&mut i) as usize;
                error = Some(String::from_utf8_lossy(&body[i..i + n]).into_owned());
                i += n;
            }
            other => panic!("unexpected field in reply: {:?}", other),
        }
    }
    (ok, error)
}

#[test]
fn riemann_ok_decodes_every_field() {
    let peer = RiemannPeer::start("ok");
    let mut s = connect(peer.port());
    send_frame(&mut s, &msg(&[full_event("svc a"), full_event("svc b")]));
    assert_eq!(read_reply(&mut s), (Some(true), None));
    // Events are recorded before the reply is sent.
    let ev = peer.events();
    assert_eq!(ev.len(), 2, "{:#?}", ev);
    let e = &ev[0];
    assert_eq!(json_str(e, "service").as_deref(), Some("svc a"));
    assert_eq!(json_str(&ev[1], "service").as_deref(), Some("svc b"));
    assert_eq!(json_str(e, "host").as_deref(), Some("host-1"));
    assert_eq!(json_str(e, "state").as_deref(), Some("ok"));
    assert_eq!(
        json_str(e, "description").as_deref(),
        Some("desc \"quoted\"")
    );
    assert_eq!(json_field(e, "time"), Some("1700000000"));
    assert_eq!(json_field(e, "time_micros"), Some("1700000000123456"));
    assert_eq!(json_f64(e, "ttl"), Some(30.0));
    assert_eq!(json_field(e, "metric_sint64"), Some("-5"));
    assert_eq!(json_f64(e, "metric_d"), Some(2.5));
    assert_eq!(json_f64(e, "metric_f"), Some(0.5));
    assert_eq!(json_field(e, "tags"), Some(r#"["t1","t2"]"#));
    assert_eq!(json_field(e, "attributes"), Some(r#"{"env":"test"}"#));
    assert_eq!(json_str(e, "transport").as_deref(), Some("tcp"));
    let has = json_field(e, "has").unwrap();
    for f in [
        "time",
        "time_micros",
        "state",
        "service",
        "host",
        "description",
        "ttl",
        "metric_sint64",
        "metric_d",
        "metric_f",
    ] {
        assert_eq!(json_field(has, f), Some("true"), "has.{} in {}", f, e);
    }
    assert_eq!(json_field(e, "unknown_fields"), Some("[]"));

    // A sparse event: absent optional fields are null and has=false.
    let mut sparse = Vec::new();
    bytes_field(3, b"only-service", &mut sparse);
    send_frame(&mut s, &msg(&[sparse]));
    assert_eq!(read_reply(&mut s), (Some(true), None));
    let ev = peer.events();
    let e = &ev[2];
    assert_eq!(json_field(e, "metric_d"), Some("null"));
    assert_eq!(json_field(e, "time_micros"), Some("null"));
    assert_eq!(
        json_field(json_field(e, "has").unwrap(), "metric_d"),
        Some("false")
    );
    assert_eq!(
        json_field(json_field(e, "has").unwrap(), "service"),
        Some("true")
    );
}

#[test]
fn riemann_fail_mode_answers_error() {
    let peer = RiemannPeer::start("fail");
    let mut s = connect(peer.port());
    send_frame(&mut s, &msg(&[full_event("f")]));
    assert_eq!(
        read_reply(&mut s),
        (Some(false), Some("test failure".to_string()))
    );
    assert_eq!(peer.events().len(), 1);
}

#[test]
fn riemann_silent_mode_never_answers() {
    let peer = RiemannPeer::start("silent");
    let mut s = connect(peer.port());
    send_frame(&mut s, &msg(&[full_event("s")]));
    peer.wait_events(1, DEADLINE);
    // The event is recorded before any answer would be sent, so an answer
    // would already be on its way; a short read must time out.
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 4];
    match s.read(&mut buf) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("silent peer answered: {:?}", other),
    }
}

#[test]
fn riemann_close_mode_closes_without_answer() {
    let peer = RiemannPeer::start("close");
    let mut s = connect(peer.port());
    send_frame(&mut s, &msg(&[full_event("c")]));
    let mut buf = [0u8; 4];
    match s.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("expected the connection to be closed, got {:?}", other),
    }
    assert_eq!(peer.events().len(), 1);
}

#[test]
fn riemann_udp_and_restart_with_other_mode() {
    let mut peer = RiemannPeer::start_udp();
    let port = peer.port();
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    u.send_to(&msg(&[full_event("over udp")]), ("127.0.0.1", port))
        .unwrap();
    let ev = peer.wait_events(1, DEADLINE);
    assert_eq!(json_str(&ev[0], "transport").as_deref(), Some("udp"));
    assert_eq!(json_str(&ev[0], "service").as_deref(), Some("over udp"));

    peer.restart(Some("fail"));
    assert_eq!(peer.port(), port);
    let mut s = connect(port);
    send_frame(&mut s, &msg(&[full_event("after restart")]));
    assert_eq!(read_reply(&mut s).0, Some(false));
    assert_eq!(peer.events().len(), 2, "events are kept across restarts");
}

// ------------------------------------------------------------ helpers --

#[test]
fn helpers() {
    let a = free_port();
    let b = free_port();
    assert_ne!(a, b);
    assert_eq!(
        url_encode("SELECT \"x\" FROM y;"),
        "SELECT%20%22x%22%20FROM%20y%3B"
    );
    let j = r#"{"a":{"b":[1,{"c":"}"}]},"d":"x\"\u00e9","e":null}"#;
    assert_eq!(json_field(j, "a"), Some(r#"{"b":[1,{"c":"}"}]}"#));
    assert_eq!(json_str(j, "d").as_deref(), Some("x\"é"));
    assert_eq!(json_field(j, "e"), Some("null"));
    assert_eq!(json_field(j, "c"), None);
    let mut n = 0;
    assert_eq!(
        wait_until("n reaches 3", DEADLINE, || {
            n += 1;
            (n >= 3).then_some(n)
        }),
        3
    );
}

#[test]
#[should_panic(expected = "timed out after 50ms waiting for the impossible")]
fn wait_until_panics_with_name() {
    wait_until("the impossible", Duration::from_millis(50), || None::<()>);
}
