//! The `mqtt` output over TLS (the `tls` feature) against Debian's mosquitto with TLS listeners,
//! one of them requiring a client certificate, with certificates made by `openssl` for each run;
//! what arrives is read by an independent subscriber on the plain listener. Run with
//! `cargo test --features tls --test mqtt_tls`.
#![cfg(all(feature = "tls", feature = "mqtt"))]

mod common;

use std::path::Path;
use std::time::Duration;

use common::certs::issue;
use common::outputs;
use common::peers::{MQTT_PASSWORD, MQTT_USER, Mosquitto, MqttSubscriber, PeerTls, TempDir};
use pipit::Event;
use pipit::config::secret::Secret;
use pipit::mqtt::client::{Connection, MqttError, Session, Timeouts, Transport};
use pipit::mqtt::codec::Role;
use pipit::telemetry::get;
use pipit::tls::TlsSettings;

const DEADLINE: Duration = Duration::from_secs(20);

/// An `mqtt` output over TLS to `port` under prefix `prefix`, with `extra` keys.
fn output(prefix: &str, port: u16, ca: &Path, extra: &str) -> String {
    format!(
        r#"{{"type": "mqtt", "name": "{prefix}", "host": "127.0.0.1", "port": {port},
            "transport": "tls", "tls_ca": "{}", "username": "{MQTT_USER}",
            "password": "{MQTT_PASSWORD}", "hostname": "r1", "client_id": "pipit-{prefix}",
            "prefix": "{prefix}", "batch_timeout": "50ms"{extra}}}"#,
        ca.display()
    )
}

fn session() -> Session {
    Session {
        client_id: "pipit-probe".into(),
        keepalive: Duration::ZERO,
        clean_session: true,
        will: None,
        username: Some(MQTT_USER.into()),
        password: Some(Secret::new(MQTT_PASSWORD.into())),
    }
}

#[test]
fn events_arrive_over_tls_and_mutual_tls_and_bad_certificates_are_refused_clearly() {
    let dir = TempDir::new("mqtt-tls");
    let (server_ca, server_cert, server_key) = issue(dir.path(), "server", "serverAuth");
    let (client_ca, client_cert, client_key) = issue(dir.path(), "client", "clientAuth");
    let broker = Mosquitto::start_with_tls(&[
        PeerTls {
            cert: server_cert.clone(),
            key: server_key.clone(),
            client_ca: None,
        },
        PeerTls {
            cert: server_cert,
            key: server_key,
            client_ca: Some(client_ca.clone()),
        },
    ]);
    let sub = MqttSubscriber::start(&broker, &["tls/#", "mtls/#"]);
    let tls = outputs::start(&output("tls", broker.tls_port(0), &server_ca, ""));
    let mutual = outputs::start(&output(
        "mtls",
        broker.tls_port(1),
        &server_ca,
        &format!(
            r#", "tls_cert": "{}", "tls_key": "{}""#,
            client_cert.display(),
            client_key.display()
        ),
    ));
    let events: Vec<Event> = (0..5i64)
        .map(|i| Event::new(format!("seq.{i}"), "r1").with_metric(i))
        .collect();
    outputs::send(&tls, events.clone());
    outputs::send(&mutual, events);
    let got = sub.wait("every event over both listeners", DEADLINE, |m| {
        (0..5).all(|i| {
            ["tls", "mtls"].iter().all(|p| {
                m.iter()
                    .any(|(t, v, ..)| *t == format!("{p}/r1/seq/{i}") && *v == i.to_string())
            })
        })
    });
    assert!(got.contains(&("tls/r1/status".into(), "online".into(), false, false)));
    for handle in [&tls, &mutual] {
        let stats = handle.stats.clone();
        common::peers::wait_until("every event counted as delivered", DEADLINE, || {
            (get(&stats.events_out) == 5).then_some(())
        });
    }
    outputs::stop(tls, DEADLINE);
    outputs::stop(mutual, DEADLINE);

    let timeouts = Timeouts {
        connect: Duration::from_secs(5),
        write: Duration::from_secs(5),
        ack: Duration::from_secs(5),
        liveness: pipit::liveness::Liveness::DEFAULT,
    };
    let open = |port: u16, settings: TlsSettings| {
        Connection::open(
            &format!("127.0.0.1:{port}"),
            &session(),
            timeouts,
            &Transport::Tls(settings),
            Role::Publisher,
        )
    };
    // Trusting the wrong CA: the broker's certificate is refused, and the error says what to check.
    let wrong = TlsSettings::new("127.0.0.1", &client_ca, None).unwrap();
    match open(broker.tls_port(0), wrong) {
        Err(e @ MqttError::Connect(_)) => {
            let text = e.to_string();
            assert!(
                text.contains("certificate") && text.contains("tls_ca"),
                "{text}"
            );
        }
        Err(e) => panic!("expected a certificate error, got {e}"),
        Ok(_) => panic!("a broker with a certificate of another CA was trusted"),
    }
    // A name the certificate is not issued for is refused as well.
    let misnamed = TlsSettings::new("localhost", &server_ca, None).unwrap();
    assert!(matches!(
        open(broker.tls_port(0), misnamed),
        Err(MqttError::Connect(_))
    ));
    // No client certificate where the broker requires one: refused, naming the client's files.
    let anonymous = TlsSettings::new("127.0.0.1", &server_ca, None).unwrap();
    match open(broker.tls_port(1), anonymous) {
        Err(e) => {
            let text = e.to_string();
            assert!(text.contains("tls_cert"), "{text}");
        }
        Ok(_) => panic!("a client without a certificate got through"),
    }
    // The plain listener still serves, and the wrong attempts published nothing.
    assert!(
        sub.messages()
            .iter()
            .all(|(t, ..)| t.starts_with("tls/") || t.starts_with("mtls/"))
    );
}

#[test]
fn the_mqtt_source_reads_over_tls() {
    let dir = TempDir::new("mqtt-tls-source");
    let (server_ca, server_cert, server_key) = issue(dir.path(), "server", "serverAuth");
    let broker = Mosquitto::start_with_tls(&[PeerTls {
        cert: server_cert,
        key: server_key,
        client_ca: None,
    }]);
    let sub = MqttSubscriber::start(&broker, &["fwd/#"]);
    let auth = format!(r#""username": "{MQTT_USER}", "password": "{MQTT_PASSWORD}""#);
    let config = dir.path().join("pipit.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"agent": {{"state_dir": "{}", "hostname": "r1"}},
                "sources": [{{"type": "mqtt", "interval": "100ms", "host": "127.0.0.1",
                  "port": {}, "transport": "tls", "tls_ca": "{}", {auth}, "topics": ["in/#"]}}],
                "outputs": [{{"type": "mqtt", "host": "127.0.0.1", "port": {}, {auth},
                  "prefix": "fwd", "batch_timeout": "50ms", "availability": false,
                  "include": ["in.*"]}}]}}"#,
            dir.path().display(),
            broker.tls_port(0),
            server_ca.display(),
            broker.port()
        ),
    )
    .unwrap();
    // Retained, so the source gets them whenever its subscription starts; one of 20 kB (a number
    // and white space), more than one TLS record and one read of the connection's buffer.
    let big = format!("3{}", " ".repeat(20_000));
    for (topic, payload) in [("in/a", "1.5"), ("in/b", "2"), ("in/c", big.as_str())] {
        let status = std::process::Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &broker.port().to_string()])
            .args(["-u", MQTT_USER, "-P", MQTT_PASSWORD, "-q", "1", "-r"])
            .args(["-t", topic, "-m", payload])
            .status()
            .unwrap();
        assert!(status.success());
    }
    let _agent = common::pipit::Agent::start(&config, "warn");
    sub.wait("every message read over TLS and forwarded", DEADLINE, |m| {
        [
            ("fwd/r1/in/a", "1.5"),
            ("fwd/r1/in/b", "2"),
            ("fwd/r1/in/c", "3"),
        ]
        .iter()
        .all(|(t, p)| m.iter().any(|(mt, mp, ..)| mt == t && mp == p))
    });
}
