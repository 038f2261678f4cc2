//! The `influxdb` output ignores proxy variables: with `ALL_PROXY` and `HTTP_PROXY` pointing at a
//! listener of this test, writes still go straight to InfluxDB and the listener sees nothing.
//! A test binary of its own, because it changes the process environment.

mod common;

use std::io::ErrorKind;
use std::net::TcpListener;
use std::time::Duration;

use common::outputs;
use common::peers::{Influx, wait_until};
use pipit::Event;
use pipit::telemetry::get;

#[test]
fn proxy_variables_are_not_read() {
    let trap = TcpListener::bind("127.0.0.1:0").unwrap();
    trap.set_nonblocking(true).unwrap();
    let proxy = format!("http://{}", trap.local_addr().unwrap());
    for name in ["ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy"] {
        // SAFETY: this binary runs this one test, and no other thread reads the environment yet.
        unsafe { std::env::set_var(name, &proxy) };
    }
    for name in ["NO_PROXY", "no_proxy"] {
        // SAFETY: as above.
        unsafe { std::env::remove_var(name) };
    }
    let influx = Influx::start();
    influx.create_db("pipit");
    let handle = outputs::start(&format!(
        r#"{{"type": "influxdb", "url": "http://127.0.0.1:{}", "db": "pipit", "batch_size": 1, "timeout": "2s"}}"#,
        influx.port()
    ));
    let stats = handle.stats.clone();
    outputs::send(&handle, [Event::new("direct", "h").with_metric(1i64)]);
    wait_until(
        "the write is delivered or fails",
        Duration::from_secs(20),
        || (get(&stats.events_out) + get(&stats.failed) > 0).then_some(()),
    );
    outputs::stop(handle, Duration::from_secs(20));
    assert_eq!(
        outputs::counts(&stats),
        (1, 0, 0),
        "the write went to InfluxDB directly"
    );
    match trap.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("the proxy listener was contacted: {other:?}"),
    }
}
