//! The `influxdb` output against Debian's InfluxDB, read back over its HTTP API with InfluxQL.
//! Needs the packages from tests/install-deps.sh.

mod common;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::time::{Duration, Instant, UNIX_EPOCH};

use common::outputs::{self, counts, send};
use common::peers::{Influx, wait_until};
use pipit::Event;
use pipit::delivery::OutputHandle;
use pipit::telemetry::get;
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(20);

fn start_output(settings: &str) -> OutputHandle {
    outputs::start(&format!(
        r#"{{"type": "influxdb", "batch_timeout": "20ms", {settings}}}"#
    ))
}

/// The single series of an InfluxQL answer: its tags, columns and rows.
fn series(influx: &Influx, db: &str, query: &str) -> Value {
    let body: Value = serde_json::from_str(&influx.query_epoch(db, query, "ms")).unwrap();
    let all = &body["results"][0]["series"];
    assert_eq!(
        all.as_array().map(Vec::len),
        Some(1),
        "expected one series for {query}: {body}"
    );
    all[0].clone()
}

/// An InfluxQL identifier in double quotes.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
}

#[test]
fn events_are_written_and_read_back_exactly_even_with_nasty_names() {
    let influx = Influx::start();
    influx.create_db("pipit");
    let handle = start_output(&format!(
        r#""url": "http://127.0.0.1:{}", "db": "pipit", "batch_size": 3"#,
        influx.port()
    ));
    let stats = handle.stats.clone();
    let time = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
    let nasty = "if,eth0 rx=bytes \"q\"";
    let mut a = Event::new(nasty, "router\\1,=x\\")
        .with_metric(-42i64)
        .with_state("ok")
        .with_time(time);
    a.attributes = BTreeMap::from([
        ("site name".into(), "ams,1=a b".into()),
        ("host".into(), "ignored".into()),
    ]);
    a.tags = vec!["edge".into(), "lab 7".into()];
    let b = Event::new("load.1", "r1")
        .with_metric(0.1)
        .with_description("said \"hi\" \\ back\\\nline two ü")
        .with_time(time + Duration::from_millis(1));
    let bare = Event::new("nothing.to.write", "r1").with_time(time);
    send(&handle, [a, b, bare]);
    wait_until("3 events delivered", DEADLINE, || {
        (get(&stats.events_out) == 3).then_some(())
    });

    let s = series(&influx, "pipit", &format!("SELECT * FROM {}", ident(nasty)));
    assert_eq!(s["name"], nasty);
    assert_eq!(
        s["columns"],
        json!(["time", "host", "site name", "state", "tags", "value"])
    );
    assert_eq!(
        s["values"],
        json!([[
            1_700_000_000_123i64,
            "router\\1,=x/",
            "ams,1=a b",
            "ok",
            "edge,lab 7",
            -42
        ]])
    );

    let s = series(&influx, "pipit", "SELECT * FROM \"load.1\"");
    assert_eq!(
        s["columns"],
        json!(["time", "description", "host", "value"])
    );
    assert_eq!(
        s["values"],
        json!([[
            1_700_000_000_124i64,
            "said \"hi\" \\ back\\ line two ü",
            "r1",
            0.1
        ]])
    );

    let body = influx.query("pipit", "SHOW MEASUREMENTS");
    assert!(
        !body.contains("nothing.to.write"),
        "an event without fields writes nothing: {body}"
    );
    outputs::stop(handle, DEADLINE);
    assert_eq!(counts(&stats), (3, 0, 0));
}

#[test]
fn a_bad_batch_is_rejected_and_dropped_while_server_trouble_is_a_failure() {
    let mut influx = Influx::start();
    influx.create_db("pipit");
    let handle = start_output(&format!(
        r#""url": "http://127.0.0.1:{}", "db": "pipit", "batch_size": 1, "retries": 0, "retry_delay": "50ms", "retry_max_delay": "200ms", "breaker_reset": "200ms""#,
        influx.port()
    ));
    let stats = handle.stats.clone();
    send(&handle, [Event::new("typed", "h").with_metric(1.5)]);
    wait_until("the float is written", DEADLINE, || {
        (get(&stats.events_out) == 1).then_some(())
    });
    // The same field as an integer: InfluxDB answers 400 (field type conflict).
    send(&handle, [Event::new("typed", "h").with_metric(2i64)]);
    wait_until("the conflicting batch is rejected", DEADLINE, || {
        (get(&stats.dropped_rejected) == 1).then_some(())
    });
    assert_eq!(counts(&stats), (1, 0, 1));

    // Server trouble is not the batch's fault: without a spool the batch is held and tried again.
    influx.stop();
    send(&handle, [Event::new("typed", "h").with_metric(2.5)]);
    wait_until("a refused connection is retried", DEADLINE, || {
        (get(&stats.retried) > 0).then_some(())
    });
    assert_eq!(counts(&stats), (1, 0, 1));
    influx.restart();
    send(&handle, [Event::new("typed", "h").with_metric(3.5)]);
    wait_until("delivery resumes", DEADLINE, || {
        (get(&stats.events_out) == 3).then_some(())
    });
    outputs::stop(handle, DEADLINE);
    assert_eq!(counts(&stats), (3, 0, 1));
    let s = series(&influx, "pipit", "SELECT value FROM typed");
    assert_eq!(
        s["values"]
            .as_array()
            .map(|v| v.iter().map(|r| r[1].clone()).collect::<Vec<_>>()),
        Some(vec![json!(1.5), json!(2.5), json!(3.5)])
    );
}

#[test]
fn a_missing_database_is_a_failure_not_a_rejection() {
    let influx = Influx::start();
    let handle = start_output(&format!(
        r#""url": "http://127.0.0.1:{}", "db": "absent", "batch_size": 1"#,
        influx.port()
    ));
    let stats = handle.stats.clone();
    send(&handle, [Event::new("x", "h").with_metric(1i64)]);
    wait_until("the 404 as the last error", DEADLINE, || {
        stats
            .last_error
            .lock()
            .unwrap()
            .contains("HTTP 404")
            .then_some(())
    });
    // Held for a retry, never rejected; counted as failed when the stop comes first.
    assert_eq!(counts(&stats), (0, 0, 0));
    outputs::stop(handle, DEADLINE);
    assert_eq!(counts(&stats), (0, 1, 0));
}

#[test]
fn a_server_that_never_answers_times_out() {
    // Accepts connections (the kernel does) and never reads or answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let handle = start_output(&format!(
        r#""url": "http://127.0.0.1:{port}", "db": "d", "batch_size": 1, "timeout": "300ms""#
    ));
    let stats = handle.stats.clone();
    let started = Instant::now();
    send(&handle, [Event::new("x", "h").with_metric(1i64)]);
    wait_until("the timeout as the last error", DEADLINE, || {
        (!stats.last_error.lock().unwrap().is_empty()).then_some(())
    });
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the whole-request timeout bounds the write"
    );
    outputs::stop(handle, DEADLINE);
    assert_eq!(get(&stats.failed), 1);
    drop(silent);
}

#[test]
fn a_dead_target_is_passed_over_for_the_live_one_with_either_strategy() {
    let influx = Influx::start();
    let dead = common::peers::free_port();
    for (strategy, db) in [("failover", "fo"), ("round_robin", "rr")] {
        influx.create_db(db);
        let handle = start_output(&format!(
            r#""targets": ["http://127.0.0.1:{dead}", "http://127.0.0.1:{}"], "strategy": "{strategy}", "db": "{db}", "batch_size": 10, "breaker_failures": 1, "breaker_reset": "1m""#,
            influx.port()
        ));
        let stats = handle.stats.clone();
        let base = 1_700_000_000_000u64;
        send(
            &handle,
            (0..50u64).map(|i| {
                Event::new("spread", "h")
                    .with_metric(i as i64)
                    .with_time(UNIX_EPOCH + Duration::from_millis(base + i))
            }),
        );
        wait_until("every event is delivered", DEADLINE, || {
            (get(&stats.events_out) == 50).then_some(())
        });
        assert_eq!(
            outputs::breaker_states(&stats),
            vec![
                (format!("http://127.0.0.1:{dead}"), "open"),
                (format!("http://127.0.0.1:{}", influx.port()), "closed"),
            ],
            "{strategy}"
        );
        outputs::stop(handle, DEADLINE);
        assert_eq!(counts(&stats), (50, 0, 0), "{strategy}");
        let s = series(&influx, db, "SELECT value FROM spread");
        let values: Vec<i64> = s["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r[1].as_i64().unwrap())
            .collect();
        assert_eq!(values, (0..50).collect::<Vec<_>>(), "{strategy}");
    }
}
