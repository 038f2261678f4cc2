//! The `mqtt` output against Debian's mosquitto, checked by an independent subscriber
//! (tests/peers/mqtt_sub.py on Debian's paho-mqtt). Needs the packages from tests/install-deps.sh.
#![cfg(feature = "mqtt")]

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::outputs;
use common::peers::{MQTT_PASSWORD, MQTT_USER, Mosquitto, MqttSubscriber, TempDir, wait_until};
use common::pipit::Agent;
use pipit::Event;
use pipit::mqtt::client::{Connection, MqttError, Session, Timeouts, Transport};
use pipit::mqtt::codec::{DecodeError, Role};
use pipit::telemetry::get;

const DEADLINE: Duration = Duration::from_secs(20);

/// An `mqtt` output entry for `ports` (one target each) under prefix `t`, with `extra` keys.
fn output(ports: &[u16], extra: &str) -> String {
    output_under("t", ports, extra)
}

/// An `mqtt` output entry under `prefix`.
fn output_under(prefix: &str, ports: &[u16], extra: &str) -> String {
    let targets: Vec<String> = ports.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
    format!(
        r#"{{"type": "mqtt", "targets": [{}], "username": "{MQTT_USER}", "password": "{MQTT_PASSWORD}",
            "hostname": "r1", "prefix": "{prefix}", "batch_timeout": "50ms"{extra}}}"#,
        targets.join(", ")
    )
}

#[test]
fn every_event_arrives_with_its_topic_and_payload() {
    let broker = Mosquitto::start();
    let sub = MqttSubscriber::start(&broker, &["t/#", "j/#"]);
    let value = outputs::start(&output(&[broker.port()], r#", "timestamp": true"#));
    let json = outputs::start(&output_under(
        "j",
        &[broker.port()],
        r#", "name": "json", "client_id": "pipit-r1-json", "qos": 0, "layout": "json", "availability": false"#,
    ));
    let at = std::time::UNIX_EPOCH + Duration::from_millis(1_700_000_000_250);
    let events = vec![
        Event::new("interface.eth0.rx_bytes", "r1")
            .with_metric(12345i64)
            .with_time(at),
        Event::new("load.shortterm", "r1")
            .with_metric(0.25)
            .with_time(at),
        Event::new("df./mnt/a+b#c.used", "r1")
            .with_metric(7i64)
            .with_time(at),
        Event::new("check.ping", "r1")
            .with_state("critical")
            .with_time(at),
        Event::new("no.value", "r1").with_time(at),
    ];
    outputs::send(&value, events.clone());
    outputs::send(&json, events.clone());
    let want = [
        ("t/r1/interface/eth0/rx_bytes", "1700000000.250:12345"),
        ("t/r1/load/shortterm", "1700000000.250:0.25"),
        ("t/r1/df/%2Fmnt%2Fa%2Bb%23c/used", "1700000000.250:7"),
        ("t/r1/check/ping", "1700000000.250:critical"),
    ];
    let got = sub.wait("every event's message", DEADLINE, |m| {
        m.iter().filter(|(t, ..)| t.starts_with("j/")).count() == 5
            && want.iter().all(|(t, _)| m.iter().any(|(mt, ..)| mt == t))
    });
    for (topic, payload) in want {
        let m = got.iter().find(|(t, ..)| t == topic).unwrap();
        assert_eq!((m.1.as_str(), m.2), (payload, false), "{topic}");
    }
    assert!(
        got.iter().all(|(t, ..)| !t.starts_with("t/r1/no")),
        "{got:?}"
    );
    assert!(got.contains(&("t/r1/status".into(), "online".into(), false, false)));
    for e in &events {
        let mut topic = String::new();
        pipit::mqtt::topic::event_topic("j", e, &mut topic);
        let m = got.iter().find(|(t, ..)| *t == topic).unwrap();
        let v: serde_json::Value = serde_json::from_str(&m.1).unwrap();
        assert_eq!(&Event::from_json(&v).unwrap(), e);
    }
    let stats = value.stats.clone();
    wait_until("the counters", DEADLINE, || {
        (get(&stats.events_out) == 4 && get(&stats.dropped_unencodable) == 1).then_some(())
    });
    outputs::stop(value, DEADLINE);
    outputs::stop(json, DEADLINE);
    // A clean stop says `offline` itself (retained), since the broker drops the Will.
    sub.wait("offline at stop", DEADLINE, |m| {
        m.last()
            .is_some_and(|l| l.0 == "t/r1/status" && l.1 == "offline")
    });
}

/// Events `seq.<i>` with metric `i`.
fn numbered(range: std::ops::Range<i64>) -> Vec<Event> {
    range
        .map(|i| Event::new(format!("seq.{i}"), "r1").with_metric(i))
        .collect()
}

/// How often each `seq` number arrived.
fn arrivals(sub: &MqttSubscriber) -> BTreeMap<i64, usize> {
    let mut seen = BTreeMap::new();
    for (topic, payload, ..) in sub.messages() {
        if let Some(n) = topic.strip_prefix("t/r1/seq/") {
            assert_eq!(n, payload);
            *seen.entry(n.parse().unwrap()).or_insert(0) += 1;
        }
    }
    seen
}

#[test]
fn qos1_loses_nothing_through_five_restarts_and_a_ten_second_outage() {
    let mut broker = Mosquitto::start();
    let sub = MqttSubscriber::start(&broker, &["t/r1/seq/#"]);
    let dir = TempDir::new("mqtt-spool");
    let handle = outputs::start(&output(
        &[broker.port()],
        &format!(
            r#", "inflight": 8, "ack_timeout": "1s", "connect_timeout": "500ms", "retries": 1,
               "retry_delay": "50ms", "breaker_failures": 2, "breaker_reset": "300ms",
               "queue_size": 200000, "spool": {{"dir": "{}"}}"#,
            dir.path().join("spool").display()
        ),
    ));
    let total = 3000;
    let feeding = Arc::new(AtomicBool::new(true));
    let feeder = {
        let queue = handle.sender().unwrap();
        let feeding = feeding.clone();
        thread::spawn(move || {
            for chunk in numbered(0..total).chunks(10) {
                queue.send(chunk.to_vec()).unwrap();
                // Paces the stream over the rounds of outages below.
                thread::sleep(Duration::from_millis(20));
            }
            feeding.store(false, Ordering::SeqCst);
        })
    };
    for round in 0..5 {
        let before = arrivals(&sub).len();
        sub.wait(
            &format!("progress before restart {round}"),
            DEADLINE,
            |_| arrivals(&sub).len() > before,
        );
        broker.restart();
    }
    broker.stop();
    let down = Instant::now();
    wait_until("ten seconds of outage", Duration::from_secs(15), || {
        (down.elapsed() >= Duration::from_secs(10)).then_some(())
    });
    broker.restart();
    feeder.join().unwrap();
    assert!(!feeding.load(Ordering::SeqCst));
    let seen = wait_until(
        "every event at the subscriber",
        Duration::from_secs(60),
        || {
            let seen = arrivals(&sub);
            (seen.len() == total as usize).then_some(seen)
        },
    );
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    let flagged = sub.messages().iter().filter(|m| m.3).count();
    eprintln!("{total} events, 0 lost, {duplicates} duplicate(s), {flagged} message(s) with DUP");
    assert!(seen.keys().copied().eq(0..total));
    let stats = handle.stats.clone();
    wait_until("every event counted as delivered", DEADLINE, || {
        (get(&stats.events_out) == total as u64).then_some(())
    });
    outputs::stop(handle, DEADLINE);
}

/// A broker that takes connections and answers CONNECT with `reply`, then reads forever without
/// answering anything. Returns its port and a flag set once a client connected.
fn fake_broker(reply: &'static [u8]) -> (u16, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let connected = Arc::new(AtomicBool::new(false));
    let flag = connected.clone();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            flag.store(true, Ordering::SeqCst);
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                if stream.read(&mut buf).unwrap_or(0) > 0 {
                    let _ = stream.write_all(reply);
                }
                while stream.read(&mut buf).is_ok_and(|n| n > 0) {}
            });
        }
    });
    (port, connected)
}

#[test]
fn a_broker_that_never_acknowledges_is_taken_for_dead_and_the_next_takes_over() {
    let (silent, connected) = fake_broker(b"\x20\x02\x00\x00");
    let broker = Mosquitto::start();
    let sub = MqttSubscriber::start(&broker, &["t/r1/seq/#"]);
    let handle = outputs::start(&output(
        &[silent, broker.port()],
        r#", "ack_timeout": "300ms", "retries": 0, "breaker_failures": 1, "breaker_reset": "1h""#,
    ));
    let started = Instant::now();
    outputs::send(&handle, numbered(0..20));
    sub.wait("every event through the second broker", DEADLINE, |_| {
        arrivals(&sub).len() == 20
    });
    assert!(
        connected.load(Ordering::SeqCst),
        "the silent broker was tried first"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    outputs::stop(handle, DEADLINE);
}

#[test]
fn hostile_replies_are_refused_and_the_connection_closed() {
    let timeouts = Timeouts {
        connect: Duration::from_secs(2),
        write: Duration::from_secs(2),
        ack: Duration::from_secs(2),
        liveness: pipit::liveness::Liveness::DEFAULT,
    };
    let session = Session {
        client_id: "c".into(),
        keepalive: Duration::ZERO,
        clean_session: true,
        will: None,
        username: None,
        password: None,
    };
    let cases: [(&'static [u8], DecodeError); 3] = [
        (b"\x20\xff\xff\xff\x7f", DecodeError::TooLarge(268_435_455)),
        (b"\x20\x80\x80\x80\x80\x01", DecodeError::BadLength),
        (
            b"HTTP/1.1 400 Bad Request\r\n\r\n",
            DecodeError::Unexpected(b'H'),
        ),
    ];
    for (reply, want) in cases {
        let (port, _) = fake_broker(reply);
        let started = Instant::now();
        match Connection::open(
            &format!("127.0.0.1:{port}"),
            &session,
            timeouts,
            &Transport::Tcp,
            Role::Publisher,
        ) {
            Err(MqttError::Protocol(e)) => assert_eq!(e, want),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("a hostile reply was taken"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "refused at once"
        );
    }
}

#[test]
fn the_will_says_offline_when_pipit_is_killed() {
    let broker = Mosquitto::start();
    let sub = MqttSubscriber::start(&broker, &["t/r1/status"]);
    let dir = TempDir::new("mqtt-will");
    let config = dir.path().join("pipit.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"agent": {{"state_dir": "{}"}}, "sources": [{{"type": "load", "interval": "100ms"}}],
                "outputs": [{}]}}"#,
            dir.path().display(),
            output(&[broker.port()], r#", "keepalive": "2s""#)
        ),
    )
    .unwrap();
    let agent = Agent::start(&config, "warn");
    sub.wait("online", DEADLINE, |m| {
        m.iter().any(|(_, p, ..)| p == "online")
    });
    agent.signal("KILL");
    let got = sub.wait("offline from the Will", DEADLINE, |m| {
        m.last().is_some_and(|(_, p, ..)| p == "offline")
    });
    assert_eq!(got.last().unwrap().0, "t/r1/status");
}

#[test]
fn a_collection_is_one_json_message_and_its_events_count_one_by_one() {
    let broker = Mosquitto::start();
    let sub = MqttSubscriber::start(&broker, &["c/#", "a/#"]);
    let handle = outputs::start(&output_under(
        "c",
        &[broker.port()],
        r#", "layout": "json", "message_per": "collection", "availability": false"#,
    ));
    let t0 = std::time::UNIX_EPOCH + Duration::from_millis(1_700_000_000_250);
    let t1 = t0 + Duration::from_secs(10);
    let at = |service: &str, t, v: i64| Event::new(service, "r1").with_metric(v).with_time(t);
    let events = vec![
        at("load.shortterm", t0, 1),
        at("load.midterm", t0, 2),
        at("interface.eth0.rx_bytes", t0, 3),
        at("load.longterm", t0, 4),
        at("load.shortterm", t1, 5),
    ];
    handle.sender().unwrap().send(events.clone()).unwrap();
    let got = sub.wait("three collection messages", DEADLINE, |m| m.len() == 3);
    let decoded: Vec<(String, Vec<Event>)> = got
        .iter()
        .map(|(topic, payload, ..)| {
            let v: serde_json::Value = serde_json::from_str(payload).unwrap();
            let events = v["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| Event::from_json(e).unwrap())
                .collect();
            (topic.clone(), events)
        })
        .collect();
    let want = [
        ("c/r1/load", vec![&events[0], &events[1], &events[3]]),
        ("c/r1/interface", vec![&events[2]]),
        ("c/r1/load", vec![&events[4]]),
    ];
    for ((topic, got), (want_topic, want_events)) in decoded.iter().zip(want) {
        assert_eq!(topic, want_topic);
        assert!(got.iter().eq(want_events.into_iter()), "{topic}: {got:?}");
    }
    let stats = handle.stats.clone();
    wait_until("five events counted as delivered", DEADLINE, || {
        (get(&stats.events_out) == 5).then_some(())
    });
    outputs::stop(handle, DEADLINE);

    // From the agent: each message of the `load` source holds the three values of one collection.
    let dir = TempDir::new("mqtt-collection");
    let config = dir.path().join("pipit.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"agent": {{"state_dir": "{}"}}, "sources": [{{"type": "load", "interval": "100ms"}}],
                "outputs": [{}]}}"#,
            dir.path().display(),
            output_under(
                "a",
                &[broker.port()],
                r#", "layout": "json", "message_per": "collection", "client_id": "pipit-agent""#
            )
        ),
    )
    .unwrap();
    let _agent = Agent::start(&config, "warn");
    let got = sub.wait("three collections of the load source", DEADLINE, |m| {
        m.iter().filter(|(t, ..)| t.ends_with("/load")).count() >= 3
    });
    for (topic, payload, ..) in got.iter().filter(|(t, ..)| t.starts_with("a/")) {
        if topic == "a/r1/status" {
            continue;
        }
        assert!(topic.ends_with("/load"), "{topic}");
        let v: serde_json::Value = serde_json::from_str(payload).unwrap();
        let events: Vec<Event> = v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| Event::from_json(e).unwrap())
            .collect();
        let names: Vec<&str> = events.iter().map(|e| e.service.as_str()).collect();
        assert_eq!(names, ["load.1", "load.5", "load.15"]);
        assert!(events.iter().all(|e| e.time == events[0].time));
    }
}

/// What Home Assistant's MQTT sensor platform requires of a discovery config message, and what
/// pipit promises on top: a config topic of valid ids, the keys it needs with the right types, a
/// device to group the sensors, availability on the node's status topic, and a device class only
/// with a unit Home Assistant accepts for it. Returns the problems found.
fn home_assistant_problems(topic: &str, payload: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let id_ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    let levels: Vec<&str> = topic.split('/').collect();
    if !(levels.len() == 5
        && levels[0] == "homeassistant"
        && levels[1] == "sensor"
        && id_ok(levels[2])
        && id_ok(levels[3])
        && levels[4] == "config")
    {
        problems.push(format!(
            "{topic}: not <prefix>/sensor/<node_id>/<object_id>/config"
        ));
    }
    let Ok(c) = serde_json::from_str::<serde_json::Value>(payload) else {
        return vec![format!("{topic}: not JSON")];
    };
    for key in ["name", "unique_id", "state_topic", "availability_topic"] {
        if !c[key].is_string() {
            problems.push(format!("{topic}: {key} is not a string"));
        }
    }
    let state_topic = c["state_topic"].as_str().unwrap_or("");
    if state_topic.contains(['+', '#']) {
        problems.push(format!("{topic}: a wildcard in the state topic"));
    }
    if (
        c["payload_available"].as_str(),
        c["payload_not_available"].as_str(),
    ) != (Some("online"), Some("offline"))
    {
        problems.push(format!("{topic}: availability payloads"));
    }
    let device = &c["device"];
    let identified = device["identifiers"]
        .as_array()
        .is_some_and(|a| !a.is_empty());
    if !identified
        || !device["name"].is_string()
        || !device["sw_version"]
            .as_str()
            .is_some_and(|v| v.starts_with("pipit "))
    {
        problems.push(format!(
            "{topic}: device without identifiers, name or version"
        ));
    }
    let allowed: &[(&str, &[&str])] = &[
        ("data_size", &["B", "kB", "MB", "GB"]),
        ("data_rate", &["B/s", "kB/s"]),
        ("duration", &["s", "ms"]),
        ("temperature", &["°C"]),
        ("signal_strength", &["dBm", "dB"]),
    ];
    if let Some(class) = c.get("device_class") {
        let unit = c["unit_of_measurement"].as_str().unwrap_or("");
        let ok = allowed
            .iter()
            .any(|(k, units)| class == *k && units.contains(&unit));
        if !ok {
            problems.push(format!("{topic}: device class {class} with unit {unit:?}"));
        }
    }
    if c["state_class"] != "measurement" {
        problems.push(format!("{topic}: state_class"));
    }
    problems
}

/// The unit Home Assistant should show for a declared unit (only those of `load` and `memory`).
fn home_assistant_unit(declared: &str) -> Option<&'static str> {
    match declared {
        "bytes" => Some("B"),
        "percent" => Some("%"),
        "" => None,
        other => panic!("a unit this test does not know: {other}"),
    }
}

#[test]
fn home_assistant_discovers_each_metric_with_its_unit_and_again_after_a_broker_restart() {
    let mut broker = Mosquitto::start();
    let sub = MqttSubscriber::start(&broker, &["homeassistant/#", "t/#"]);
    let dir = TempDir::new("mqtt-discovery");
    let config = dir.path().join("pipit.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"agent": {{"state_dir": "{}", "hostname": "r1"}},
                "sources": [{{"type": "load", "interval": "100ms"}}, {{"type": "memory", "interval": "100ms"}},
                            {{"type": "uptime", "interval": "100ms"}}],
                "outputs": [{}]}}"#,
            dir.path().display(),
            output(
                &[broker.port()],
                r#", "discovery": {"enabled": true, "metrics": ["load.*", "memory.*"]}"#
            )
        ),
    )
    .unwrap();
    let declared: BTreeMap<&str, &str> = ["load", "memory"]
        .iter()
        .flat_map(|t| pipit::sources::lookup(t).unwrap().metrics)
        .map(|m| (m.name, m.unit))
        .collect();
    let agent = Agent::start(&config, "warn");
    let configs = |m: &[(String, String, bool, bool)]| -> BTreeMap<String, String> {
        m.iter()
            .filter(|(t, ..)| t.starts_with("homeassistant/"))
            .map(|(t, p, ..)| (t.clone(), p.clone()))
            .collect()
    };
    let got = sub.wait("a config per load and memory metric", DEADLINE, |m| {
        configs(m).len() == declared.len()
    });
    let mut names = Vec::new();
    for (topic, payload) in configs(&got) {
        let problems = home_assistant_problems(&topic, &payload);
        assert!(problems.is_empty(), "{problems:?}\n{payload}");
        let c: serde_json::Value = serde_json::from_str(&payload).unwrap();
        let name = c["name"].as_str().unwrap().to_owned();
        let unit = declared
            .get(name.as_str())
            .unwrap_or_else(|| panic!("{name} is not a declared load or memory metric"));
        assert_eq!(
            c["unit_of_measurement"].as_str(),
            home_assistant_unit(unit),
            "{name}"
        );
        assert_eq!(c["availability_topic"], "t/r1/status");
        let state_topic = c["state_topic"].as_str().unwrap().to_owned();
        sub.wait(&format!("a value on {state_topic}"), DEADLINE, |m| {
            m.iter()
                .any(|(t, p, ..)| *t == state_topic && p.parse::<f64>().is_ok())
        });
        names.push(name);
    }
    names.sort();
    assert!(
        names
            .iter()
            .map(String::as_str)
            .eq(declared.keys().copied())
    );
    // Retained: a subscriber that comes later gets them from the broker.
    let late = MqttSubscriber::start(&broker, &["homeassistant/#"]);
    let retained = late.wait("the retained configs", DEADLINE, |m| {
        m.iter().filter(|(.., retain, _)| *retain).count() == declared.len()
    });
    assert!(
        retained
            .iter()
            .all(|(t, ..)| t.starts_with("homeassistant/sensor/r1/"))
    );
    // Published again on the new connection after the broker restarted: live messages (not
    // retained ones the broker hands the subscriber as it subscribes again).
    let before = sub.messages().len();
    broker.restart();
    sub.wait("every config again after the restart", DEADLINE, |m| {
        m[before.min(m.len())..]
            .iter()
            .filter(|(t, _, retain, _)| t.starts_with("homeassistant/") && !retain)
            .count()
            >= declared.len()
    });
    drop(agent);
}
