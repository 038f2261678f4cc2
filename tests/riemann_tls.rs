//! The Riemann client over TLS (the `tls` feature) against tests/peers/riemann_peer.py wrapped in
//! Python's ssl module, with certificates made by `openssl` for each run. Run with
//! `cargo test --features tls --test riemann_tls`.
#![cfg(all(feature = "tls", feature = "riemann"))]

mod common;

use std::time::Duration;

use common::certs::issue;
use common::peers::{PeerTls, RiemannPeer, TempDir};
use pipit::Event;
use pipit::outputs::riemann::{RiemannClient, RiemannError, Timeouts, TlsSettings, Transport};
use serde_json::Value;

#[test]
fn events_arrive_over_mutual_tls_and_a_wrong_ca_is_refused() {
    let dir = TempDir::new("riemann-tls");
    let (server_ca, server_cert, server_key) = issue(dir.path(), "server", "serverAuth");
    let (client_ca, client_cert, client_key) = issue(dir.path(), "client", "clientAuth");
    let peer = RiemannPeer::start_tls(PeerTls {
        cert: server_cert,
        key: server_key,
        client_ca: Some(client_ca.clone()),
    });
    let addr = format!("127.0.0.1:{}", peer.port());
    let timeouts = Timeouts {
        connect: Duration::from_secs(5),
        write: Duration::from_secs(5),
        ack: Duration::from_secs(10),
    };

    let tls = TlsSettings::new("127.0.0.1", &server_ca, Some((&client_cert, &client_key))).unwrap();
    let mut client = RiemannClient::connect(&addr, Transport::Tls(tls), timeouts).unwrap();
    let events: Vec<Event> = (0..3i64)
        .map(|i| Event::new(format!("tls.{i}"), "h").with_metric(i))
        .collect();
    client.send_many(&events).unwrap();
    client
        .send(&Event::new("tls.3", "h").with_metric(0.5))
        .unwrap();
    client.close().unwrap();
    let got: Vec<Value> = peer
        .wait_events(4, Duration::from_secs(15))
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let services: Vec<&str> = got.iter().map(|v| v["service"].as_str().unwrap()).collect();
    assert_eq!(services, ["tls.0", "tls.1", "tls.2", "tls.3"]);
    assert_eq!(got[3]["metric_d"], 0.5);

    // Trusting the wrong CA: the server's certificate is refused during the handshake.
    let wrong =
        TlsSettings::new("127.0.0.1", &client_ca, Some((&client_cert, &client_key))).unwrap();
    match RiemannClient::connect(&addr, Transport::Tls(wrong), timeouts) {
        Err(RiemannError::Connect(e)) => assert!(e.to_string().contains("certificate"), "{e}"),
        other => panic!("expected a certificate error, got {other:?}"),
    }
    // No client certificate: the server refuses the handshake, at the latest on the first send.
    let anonymous = TlsSettings::new("127.0.0.1", &server_ca, None).unwrap();
    let refused = RiemannClient::connect(&addr, Transport::Tls(anonymous), timeouts)
        .and_then(|mut c| c.send(&Event::new("anonymous", "h").with_metric(1i64)));
    assert!(
        refused.is_err(),
        "a client without a certificate must not get through"
    );
    assert_eq!(peer.events().len(), 4);
}
