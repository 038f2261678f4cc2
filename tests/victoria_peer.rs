//! The `influxdb` output feeding Debian's VictoriaMetrics through both write APIs, read back with
//! `/api/v1/export`. Needs the packages from tests/install-deps.sh.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::outputs;
use common::peers::{VictoriaMetrics, wait_until};
use pipit::Event;
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(20);

/// Now, to the millisecond (VictoriaMetrics drops samples older than its retention).
fn now_ms() -> (SystemTime, u64) {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    (UNIX_EPOCH + Duration::from_millis(ms), ms)
}

/// Writes `events` through an `influxdb` output with `settings` and waits for their delivery.
fn write(vm: &VictoriaMetrics, settings: &str, events: Vec<Event>) {
    let n = events.len() as u64;
    let handle = outputs::start(&format!(
        r#"{{"type": "influxdb", "url": "http://127.0.0.1:{}", "batch_timeout": "20ms", {settings}}}"#,
        vm.port()
    ));
    let stats = handle.stats.clone();
    outputs::send(&handle, events);
    wait_until("delivery", DEADLINE, || {
        (outputs::counts(&stats) != (0, 0, 0)).then_some(())
    });
    outputs::stop(handle, DEADLINE);
    assert_eq!(outputs::counts(&stats), (n, 0, 0));
}

/// An `influxdb` output to `vm`'s database `pipit` without string fields, with `more` settings.
fn numbers_only(vm: &VictoriaMetrics, more: &str) -> String {
    format!(
        r#"{{"type": "influxdb", "url": "http://127.0.0.1:{}", "db": "pipit", "string_fields": false, "batch_timeout": "20ms"{more}}}"#,
        vm.port()
    )
}

fn series(vm: &VictoriaMetrics, selector: &str, n: usize) -> Vec<Value> {
    let mut all: Vec<Value> = vm
        .export(selector, n, DEADLINE)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    all.sort_by_key(|v| {
        v["metric"]["__name__"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    });
    all
}

#[test]
fn v2_writes_with_a_token_arrive_as_numeric_series() {
    let vm = VictoriaMetrics::start(&[]);
    let (time, ms) = now_ms();
    let mut cpu = Event::new("cpu.user", "r1")
        .with_metric(12.5)
        .with_state("ok")
        .with_time(time);
    cpu.attributes.insert("core".into(), "0".into());
    let rx = Event::new("interface.eth0.rx_bytes", "r1")
        .with_metric(9_007_199_254_740_993i64)
        .with_time(time);
    let settings = r#""version": 2, "org": "home", "bucket": "routers", "token": "t0ken", "string_fields": false"#;
    write(&vm, settings, vec![cpu, rx]);

    let got = series(&vm, r#"{__name__=~"cpu.*|interface.*"}"#, 2);
    assert_eq!(got.len(), 2, "string fields are left out: {got:?}");
    assert_eq!(
        got[0]["metric"],
        json!({"__name__": "cpu.user_value", "core": "0", "host": "r1"})
    );
    assert_eq!(got[0]["values"], json!([12.5]));
    assert_eq!(got[0]["timestamps"], json!([ms]));
    assert_eq!(
        got[1]["metric"]["__name__"],
        "interface.eth0.rx_bytes_value"
    );
    // VictoriaMetrics keeps float64 samples: 2^53 + 1 comes back as 2^53.
    assert_eq!(got[1]["values"], json!([9_007_199_254_740_992u64]));
}

#[test]
fn v1_writes_carry_the_db_label_and_single_fields_can_keep_the_service_name() {
    let vm = VictoriaMetrics::start(&["-influxSkipSingleField"]);
    let (time, ms) = now_ms();
    let mut load = Event::new("load.1", "r1").with_metric(0.25).with_time(time);
    load.tags = vec!["edge".into(), "lab".into()];
    write(&vm, r#""db": "pipit", "string_fields": false"#, vec![load]);

    let got = series(&vm, r#"{__name__="load.1"}"#, 1);
    assert_eq!(
        got[0]["metric"],
        json!({"__name__": "load.1", "db": "pipit", "host": "r1", "tags": "edge,lab"})
    );
    assert_eq!(got[0]["values"], json!([0.25]));
    assert_eq!(got[0]["timestamps"], json!([ms]));
}

#[test]
fn an_attribute_named_db_never_moves_a_series_and_comments_are_never_written() {
    let vm = VictoriaMetrics::start(&[]);
    let (time, ms) = now_ms();
    let mut spoof = Event::new("spoof", "r1").with_metric(1.0).with_time(time);
    spoof.attributes.insert("db".into(), "other".into());
    let events = vec![
        spoof,
        Event::new("#hidden", "r1").with_metric(2.0).with_time(time),
        Event::new("shown#not.hidden", "r1")
            .with_metric(3.0)
            .with_time(time),
    ];
    let stats = outputs::account_for(&numbers_only(&vm, ""), events, DEADLINE);
    assert_eq!(outputs::counts(&stats), (2, 0, 0));
    assert_eq!(pipit::telemetry::get(&stats.dropped_unencodable), 1);

    // What was counted delivered is all stored, and nothing else is.
    let got = series(&vm, r#"{__name__=~".+"}"#, 2);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        got[0]["metric"],
        json!({"__name__": "shown#not.hidden_value", "db": "pipit", "host": "r1"})
    );
    assert_eq!(
        got[1]["metric"],
        json!({"__name__": "spoof_value", "db": "pipit", "host": "r1"})
    );
    assert_eq!(got[1]["timestamps"], json!([ms]));
}

#[test]
fn every_event_counted_delivered_is_stored_whatever_its_names() {
    let vm = VictoriaMetrics::start(&["-influxSkipSingleField"]);
    let (time, _) = now_ms();
    let services = [
        "#comment",
        "",
        " #spaced",
        "a#b",
        "tab\tx",
        "if,eth0 rx=bytes \"q\"",
        "back\\slash\\",
        "ü.unicode",
        "line\nbreak",
        "ok",
    ];
    let events: Vec<Event> = services
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut e = Event::new(*s, "h=1,2 3\\")
                .with_metric(i as f64)
                .with_time(time);
            e.attributes
                .insert("site name".into(), "ams,1=a b\\".into());
            e.attributes.insert("__name__".into(), "renamed".into());
            e
        })
        .collect();
    let stats = outputs::account_for(&numbers_only(&vm, ""), events, DEADLINE);
    let delivered = pipit::telemetry::get(&stats.events_out);
    assert_eq!(
        delivered,
        services.len() as u64 - 2,
        "# and the empty name are left out"
    );
    let got = series(&vm, r#"{db="pipit"}"#, delivered as usize);
    let values: Vec<f64> = {
        let mut v: Vec<f64> = got
            .iter()
            .map(|s| s["values"][0].as_f64().unwrap())
            .collect();
        v.sort_by(f64::total_cmp);
        v
    };
    assert!(
        got.iter().all(|s| s["metric"]["__name__"] != "renamed"),
        "an attribute __name__ never renames a series: {got:?}"
    );
    assert_eq!(
        values,
        vec![2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
        "{got:?}"
    );
}

#[test]
fn of_500_events_with_nasty_names_every_one_counted_delivered_is_stored() {
    let vm = VictoriaMetrics::start(&["-influxSkipSingleField"]);
    let (time, _) = now_ms();
    let events = outputs::nasty_events(500, time - Duration::from_secs(1));
    let stats = outputs::account_for(
        &numbers_only(&vm, r#", "batch_size": 100"#),
        events,
        DEADLINE,
    );
    let delivered = pipit::telemetry::get(&stats.events_out);
    assert_eq!(outputs::counts(&stats), (delivered, 0, 0));
    assert!(delivered > 300, "{delivered}");
    // Every sample stored, across however many series the names make.
    let samples = wait_until("every sample stored", DEADLINE, || {
        let got = vm.export(r#"{db="pipit"}"#, 1, DEADLINE);
        let n: usize = got
            .iter()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["values"]
                    .as_array()
                    .unwrap()
                    .len()
            })
            .sum();
        (n as u64 >= delivered).then_some(n)
    });
    assert_eq!(samples as u64, delivered);
}
