//! The `mqtt` source against Debian's mosquitto: messages published by mosquitto_pub (values,
//! collectd's time:value, JSON) become events, forwarded by the agent to an `mqtt` output on the
//! same broker and read back by an independent subscriber (paho-mqtt). Needs the packages from
//! tests/install-deps.sh.
#![cfg(feature = "mqtt")]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::peers::{MQTT_PASSWORD, MQTT_USER, Mosquitto, MqttSubscriber, TempDir};
use common::pipit::Agent;

const DEADLINE: Duration = Duration::from_secs(20);

/// Publishes `payload` on `topic` at QoS 1 with mosquitto_pub.
fn publish(broker: &Mosquitto, topic: &str, payload: &str) {
    publish_with(broker, topic, payload, &[]);
}

fn publish_with(broker: &Mosquitto, topic: &str, payload: &str, extra: &[&str]) {
    let status = Command::new("mosquitto_pub")
        .args(extra)
        .args(["-h", "127.0.0.1", "-p", &broker.port().to_string()])
        .args(["-u", MQTT_USER, "-P", MQTT_PASSWORD, "-q", "1"])
        .args(["-t", topic, "-m", payload])
        .status()
        .expect("mosquitto_pub runs (tests/install-deps.sh)");
    assert!(status.success(), "mosquitto_pub {topic}");
}

fn config(dir: &Path, broker: &Mosquitto) -> std::path::PathBuf {
    let port = broker.port();
    let auth = format!(r#""username": "{MQTT_USER}", "password": "{MQTT_PASSWORD}""#);
    let path = dir.join("pipit.json");
    std::fs::write(
        &path,
        format!(
            r#"{{"agent": {{"state_dir": "{}", "hostname": "r1"}},
                "sources": [
                  {{"type": "mqtt", "name": "values", "interval": "100ms", "host": "127.0.0.1",
                    "port": {port}, {auth}, "topics": ["home/#", "collectd/#"]}},
                  {{"type": "mqtt", "name": "zigbee", "interval": "100ms", "host": "127.0.0.1",
                    "port": {port}, {auth}, "topics": ["zig/+"], "format": "json",
                    "value_field": "temperature", "service": "zigbee.{{2}}.temperature"}}],
                "outputs": [{{"type": "mqtt", "host": "127.0.0.1", "port": {port}, {auth},
                  "prefix": "fwd", "batch_timeout": "50ms", "availability": false,
                  "include": ["home.*", "collectd.*", "zigbee.*", "mqtt.values.bad"]}}]}}"#,
            dir.display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn messages_become_events_forwarded_once_each_and_bad_ones_are_counted() {
    let mut broker = Mosquitto::start();
    let sub = MqttSubscriber::start(&broker, &["fwd/#"]);
    let dir = TempDir::new("mqtt-source");
    let config = config(dir.path(), &broker);
    // Retained: each source gets its probe when it subscribes, which says it is listening.
    publish_with(&broker, "home/probe", "0", &["-r"]);
    publish_with(&broker, "zig/probe", r#"{"temperature": 0}"#, &["-r"]);
    let agent = Agent::start(&config, "warn");
    sub.wait("both sources subscribed", DEADLINE, |m| {
        ["fwd/r1/home/probe", "fwd/r1/zigbee/probe/temperature"]
            .iter()
            .all(|p| m.iter().any(|(t, ..)| t == p))
    });
    publish(&broker, "home/kitchen/temp", "21.5");
    publish(&broker, "collectd/r1/load", "1700000000.250:0.5");
    publish(
        &broker,
        "zig/hall",
        r#"{"temperature": 19.25, "battery": 97}"#,
    );
    publish(&broker, "home/kitchen/mood", "warm");
    let want = [
        ("fwd/r1/home/kitchen/temp", "21.5"),
        ("fwd/r1/collectd/r1/load", "0.5"),
        ("fwd/r1/zigbee/hall/temperature", "19.25"),
        ("fwd/r1/mqtt/values/bad", "1"),
    ];
    sub.wait("every message forwarded", DEADLINE, |m| {
        want.iter()
            .all(|(t, p)| m.iter().any(|(mt, mp, ..)| mt == t && mp == p))
    });
    let log = agent.wait_stderr("the bad payload logged", DEADLINE, |l| {
        l.iter().any(|l| l.contains("home/kitchen/mood"))
    });
    assert!(
        log.iter()
            .any(|l| l.contains("\"warm\" is not a finite number")),
        "{log:?}"
    );
    // Killed and started again: the broker would deliver again what was not acknowledged. Each
    // message was acknowledged once its event reached the router, so each arrives once.
    agent.signal("KILL");
    drop(agent);
    let agent = Agent::start(&config, "warn");
    publish(&broker, "home/kitchen/temp", "22");
    sub.wait("the message after the restart", DEADLINE, |m| {
        m.iter()
            .any(|(t, p, ..)| t == "fwd/r1/home/kitchen/temp" && p == "22")
    });
    let temps: Vec<String> = sub
        .messages()
        .into_iter()
        .filter(|(t, ..)| t == "fwd/r1/home/kitchen/temp")
        .map(|(_, p, ..)| p)
        .collect();
    assert_eq!(temps, ["21.5", "22"]);
    // The broker restarted: the source connects again, and its persistent session got what was
    // published meanwhile.
    broker.restart();
    publish(&broker, "home/kitchen/temp", "23");
    sub.wait("the message after the broker's restart", DEADLINE, |m| {
        m.iter()
            .any(|(t, p, ..)| t == "fwd/r1/home/kitchen/temp" && p == "23")
    });
    drop(agent);
}
