//! The `prometheus_remote_write` output against Debian's Prometheus 2.42 (with its remote-write
//! receiver) and VictoriaMetrics, read back through their own query APIs. Needs the packages from
//! tests/install-deps.sh.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::outputs::{self, counts, send};
use common::peers::{Prometheus, TempDir, VictoriaMetrics, free_port, url_encode, wait_until};
use common::pipit::{Agent, fixture};
use pipit::Event;
use pipit::telemetry::get;
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(30);

/// Labels of a series, and its samples as (milliseconds, value).
type Series = (BTreeMap<String, String>, Vec<(i64, f64)>);

fn output(url: &str, settings: &str) -> String {
    format!(r#"{{"type": "prometheus_remote_write", "url": "{url}", {settings}}}"#)
}

fn prometheus_url(p: &Prometheus) -> String {
    format!("http://127.0.0.1:{}/api/v1/write", p.port())
}

fn labels_of(metric: &Value) -> BTreeMap<String, String> {
    metric
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect()
}

/// Every raw sample of the series `selector` matches in the last day, from Prometheus.
fn prometheus_samples(p: &Prometheus, selector: &str) -> Vec<Series> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let expr = format!("{selector}[1d]");
    let body = common::peers::http_request(
        p.port(),
        "GET",
        &format!(
            "/api/v1/query?query={}&time={}",
            url_encode(&expr),
            now.as_secs() + 60
        ),
        b"",
    )
    .unwrap()
    .1;
    let answer: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    let mut all: Vec<Series> = answer["data"]["result"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|s| {
            let samples = s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| {
                    let ms = (v[0].as_f64().unwrap() * 1000.0).round() as i64;
                    (ms, v[1].as_str().unwrap().parse::<f64>().unwrap())
                })
                .collect();
            (labels_of(&s["metric"]), samples)
        })
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

/// The series of VictoriaMetrics matching `selector`, once there are `n`.
fn victoria_samples(vm: &VictoriaMetrics, selector: &str, n: usize) -> Vec<Series> {
    let mut all: Vec<Series> = vm
        .export(selector, n, DEADLINE)
        .iter()
        .map(|line| {
            let s: Value = serde_json::from_str(line).unwrap();
            let samples = s["timestamps"]
                .as_array()
                .unwrap()
                .iter()
                .zip(s["values"].as_array().unwrap())
                .map(|(t, v)| (t.as_i64().unwrap(), v.as_f64().unwrap()))
                .collect();
            (labels_of(&s["metric"]), samples)
        })
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

/// A time this many milliseconds after a recent whole second (Prometheus takes samples from the
/// last hour or so into a fresh database).
fn recent(base: SystemTime, ms: u64) -> SystemTime {
    base + Duration::from_millis(ms)
}

fn ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Events with a nasty name, tags, attributes, an integer, 2^53, and one without a metric, each
/// at its own millisecond after `base`, with the series they make; with `extremes`, also a float
/// near the smallest and one at the largest a double holds.
fn varied_events(base: SystemTime, extremes: bool) -> (Vec<Event>, Vec<Series>) {
    let mut a = Event::new("wan.rtt-ms", "gw \"1\"")
        .with_metric(-42i64)
        .with_time(recent(base, 1));
    a.tags = vec!["edge".into(), "lab 7".into()];
    a.attributes = BTreeMap::from([
        ("site name".into(), "ams,1=a\nb ü".into()),
        ("host".into(), "ignored".into()),
        ("__name__".into(), "kept".into()),
    ]);
    let b = Event::new("1load.1", "r1")
        .with_metric(0.1)
        .with_time(recent(base, 2));
    let c = Event::new("1load.1", "r1")
        .with_metric(-1.5e-300)
        .with_time(recent(base, 3));
    let d = Event::new("big", "r1")
        .with_metric(1.7976931348623157e308)
        .with_time(recent(base, 4));
    let e = Event::new("int.max", "r1")
        .with_metric(1i64 << 53)
        .with_time(recent(base, 5));
    let bare = Event::new("no.metric", "r1").with_state("ok");
    let mut load = vec![(ms(recent(base, 2)), 0.1)];
    if extremes {
        load.push((ms(recent(base, 3)), -1.5e-300));
    }
    let mut expected = vec![
        (
            labels(&[("__name__", "_1load_1"), ("host", "r1"), ("site", "lab")]),
            load,
        ),
        (
            labels(&[("__name__", "big"), ("host", "r1"), ("site", "lab")]),
            vec![(ms(recent(base, 4)), 1.7976931348623157e308)],
        ),
        (
            labels(&[("__name__", "int_max"), ("host", "r1"), ("site", "lab")]),
            vec![(ms(recent(base, 5)), 9007199254740992.0)],
        ),
        (
            labels(&[
                ("__name__", "wan_rtt_ms"),
                ("host", "gw \"1\""),
                ("label__name__", "kept"),
                ("site", "lab"),
                ("site_name", "ams,1=a\nb ü"),
                ("tags", "edge,lab 7"),
            ]),
            vec![(ms(recent(base, 1)), -42.0)],
        ),
    ];
    if extremes {
        (vec![a, b, c, d, e, bare], expected)
    } else {
        expected.remove(1);
        (vec![a, b, e, bare], expected)
    }
}

fn whole_second() -> SystemTime {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    UNIX_EPOCH + Duration::from_secs(now.as_secs() - 30)
}

/// VictoriaMetrics stores values as decimals (1.7976931348623157e308 comes back as
/// 1.7976931348623151e308, -1.5e-300 as 0): the extreme floats are read back from Prometheus only.
#[test]
fn samples_are_read_back_exactly_from_prometheus_and_victoriametrics() {
    let prometheus = Prometheus::start_receiver(None);
    let vm = VictoriaMetrics::start(&[]);
    let base = whole_second();
    let settings = r#""labels": {"site": "lab"}, "batch_size": 4, "batch_timeout": "50ms""#;
    let to_prometheus = outputs::start(&output(&prometheus_url(&prometheus), settings));
    let to_vm = outputs::start(&output(
        &format!("http://127.0.0.1:{}/api/v1/write", vm.port()),
        settings,
    ));
    let (events, from_prometheus) = varied_events(base, true);
    send(&to_prometheus, events);
    let (events, from_vm) = varied_events(base, false);
    send(&to_vm, events);
    for (handle, n) in [(&to_prometheus, 5), (&to_vm, 3)] {
        let stats = &handle.stats;
        wait_until("the events delivered, 1 left out", DEADLINE, || {
            (get(&stats.events_out) == n && get(&stats.dropped_unencodable) == 1).then_some(())
        });
    }
    let selector = r#"{site="lab"}"#;
    assert_eq!(prometheus_samples(&prometheus, selector), from_prometheus);
    assert_eq!(victoria_samples(&vm, selector, 3), from_vm);
    for (handle, n) in [(to_prometheus, 5), (to_vm, 3)] {
        let stats = handle.stats.clone();
        outputs::stop(handle, DEADLINE);
        assert_eq!(counts(&stats), (n, 0, 0));
    }
}

/// Prometheus 2.42 answers a request holding an out-of-order sample (or a duplicate with another
/// value) with 400 and stores none of it; the output sends the rest again and counts only the
/// refused samples as rejected.
#[test]
fn prometheus_refusals_count_only_the_refused_samples() {
    let prometheus = Prometheus::start_receiver(None);
    let base = whole_second();
    let handle = outputs::start(&output(
        &prometheus_url(&prometheus),
        r#""batch_size": 12, "batch_timeout": "500ms""#,
    ));
    let stats = handle.stats.clone();
    send(
        &handle,
        [Event::new("seen", "h")
            .with_metric(1i64)
            .with_time(recent(base, 10_000))],
    );
    wait_until("the first sample is stored", DEADLINE, || {
        (get(&stats.events_out) == 1).then_some(())
    });
    // Twelve events in one batch: two refused (older than the stored sample, and the same time
    // with another value) among ten good ones, one of them after the refused ones in its series.
    let mut batch: Vec<Event> = (0..5)
        .map(|i| {
            Event::new(format!("good.{i}"), "h")
                .with_metric(i as f64)
                .with_time(recent(base, 10_000))
        })
        .collect();
    batch.push(
        Event::new("seen", "h")
            .with_metric(2i64)
            .with_time(recent(base, 5_000)),
    );
    batch.push(
        Event::new("seen", "h")
            .with_metric(3i64)
            .with_time(recent(base, 10_000)),
    );
    batch.push(
        Event::new("seen", "h")
            .with_metric(4i64)
            .with_time(recent(base, 11_000)),
    );
    batch.extend((5..9).map(|i| {
        Event::new(format!("good.{i}"), "h")
            .with_metric(i as f64)
            .with_time(recent(base, 10_000))
    }));
    assert_eq!(batch.len(), 12);
    send(&handle, batch);
    wait_until("every event accounted for", DEADLINE, || {
        let (out, failed, rejected) = counts(&stats);
        (out + failed + rejected == 13).then_some(())
    });
    assert_eq!(counts(&stats), (11, 0, 2));
    let error = stats.last_error.lock().unwrap().clone();
    assert!(
        error.contains("HTTP 400: out of order sample")
            && error.contains("refused 2 of 12 sample(s)"),
        "{error}"
    );
    let seen = prometheus_samples(&prometheus, "seen");
    assert_eq!(
        seen[0].1,
        [
            (ms(recent(base, 10_000)), 1.0),
            (ms(recent(base, 11_000)), 4.0)
        ]
    );
    let good = prometheus_samples(&prometheus, r#"{__name__=~"good_.*"}"#);
    assert_eq!(good.len(), 9, "{good:?}");
    for (i, (labels, samples)) in good.iter().enumerate() {
        assert_eq!(labels["__name__"], format!("good_{i}"));
        assert_eq!(samples, &[(ms(recent(base, 10_000)), i as f64)]);
    }
    outputs::stop(handle, DEADLINE);
}

/// With an out-of-order window, Prometheus 2.42 answers 500 `too old sample` for a sample older
/// than the window (and stores none of the request): that sample is refused alone, not retried.
#[test]
fn a_sample_older_than_the_out_of_order_window_is_rejected_alone() {
    let prometheus = Prometheus::start_receiver(Some("1m"));
    let base = whole_second();
    let handle = outputs::start(&output(
        &prometheus_url(&prometheus),
        r#""batch_size": 4, "batch_timeout": "500ms", "retries": 0"#,
    ));
    let stats = handle.stats.clone();
    send(
        &handle,
        [Event::new("seen", "h")
            .with_metric(1i64)
            .with_time(recent(base, 10_000))],
    );
    wait_until("the first sample is stored", DEADLINE, || {
        (get(&stats.events_out) == 1).then_some(())
    });
    let at = |name: &str, value: i64, ms: u64| {
        Event::new(name, "h")
            .with_metric(value)
            .with_time(recent(base, ms))
    };
    send(
        &handle,
        [
            at("fresh", 1, 10_000),
            at("seen", 2, 0).with_time(base - Duration::from_secs(300)),
            at("seen", 3, 5_000),
            at("fresh", 4, 11_000),
        ],
    );
    wait_until("every event accounted for", DEADLINE, || {
        let (out, failed, rejected) = counts(&stats);
        (out + failed + rejected == 5).then_some(())
    });
    assert_eq!(counts(&stats), (4, 0, 1));
    let error = stats.last_error.lock().unwrap().clone();
    assert!(error.contains("HTTP 500: too old sample"), "{error}");
    let seen = prometheus_samples(&prometheus, "seen");
    assert_eq!(
        seen[0].1,
        [
            (ms(recent(base, 5_000)), 3.0),
            (ms(recent(base, 10_000)), 1.0)
        ]
    );
    outputs::stop(handle, DEADLINE);
}

/// Stops Prometheus by pid while events arrive, starts it again, and returns the output's counts
/// and every value Prometheus holds. Live batches go on between replayed ones, so a series can
/// get a new sample before its spooled older ones come.
fn outage(prometheus: &mut Prometheus, total: u64) -> ((u64, u64, u64), Vec<i64>) {
    const SERIES: u64 = 10;
    let per_phase = total / 4;
    let spool = TempDir::new("remote-write-spool");
    let base = whole_second();
    let handle = outputs::start(&output(
        &prometheus_url(prometheus),
        &format!(
            r#""batch_size": 20, "batch_timeout": "50ms", "retries": 0, "breaker_failures": 1,
               "breaker_reset": "200ms", "connect_timeout": "500ms", "spool": {{"dir": "{}"}}"#,
            spool.path().display()
        ),
    ));
    let stats = handle.stats.clone();
    let mut n = 0;
    let mut phase = |handle: &pipit::delivery::OutputHandle| {
        let events: Vec<Event> = (0..per_phase)
            .map(|_| {
                n += 1;
                Event::new(format!("outage.{}", n % SERIES), "h")
                    .with_metric(n as i64)
                    .with_time(recent(base, n))
            })
            .collect();
        send(handle, events);
    };
    phase(&handle);
    wait_until("the first events are delivered", DEADLINE, || {
        (get(&stats.events_out) == per_phase).then_some(())
    });
    prometheus.stop();
    phase(&handle);
    phase(&handle);
    wait_until("events are spooled", DEADLINE, || {
        (get(&stats.spooled_events) > 0).then_some(())
    });
    prometheus.restart();
    phase(&handle);
    wait_until("every event is accounted for", DEADLINE, || {
        let (out, failed, rejected) = counts(&stats);
        (out + failed + rejected == total && get(&stats.spool_events) == 0).then_some(())
    });
    outputs::stop(handle, DEADLINE);
    assert_eq!(get(&stats.dropped_spool_lost), 0);
    let all = prometheus_samples(prometheus, r#"{__name__=~"outage_.*"}"#);
    let mut values: Vec<i64> = all
        .iter()
        .flat_map(|(_, samples)| samples.iter().map(|(_, v)| *v as i64))
        .collect();
    values.sort_unstable();
    (counts(&stats), values)
}

/// With an out-of-order window (Prometheus 2.39 and later), every spooled sample is stored.
#[test]
fn an_outage_with_the_spool_loses_nothing() {
    const TOTAL: u64 = 200;
    let mut prometheus = Prometheus::start_receiver(Some("1h"));
    let (counts, values) = outage(&mut prometheus, TOTAL);
    assert_eq!(counts, (TOTAL, 0, 0));
    assert_eq!(values, (1..=TOTAL as i64).collect::<Vec<_>>());
}

/// Without one, Prometheus refuses a spooled sample older than a live one of its series: each
/// such sample counts as rejected, and exactly the others are stored.
#[test]
fn without_an_out_of_order_window_the_late_samples_are_counted_as_rejected() {
    const TOTAL: u64 = 200;
    let mut prometheus = Prometheus::start_receiver(None);
    let ((out, failed, rejected), values) = outage(&mut prometheus, TOTAL);
    assert_eq!(failed, 0);
    // Whether a live batch reaches the restarted Prometheus before the spool's does is a race:
    // the counts must be exact either way.
    assert_eq!(out + rejected, TOTAL);
    assert_eq!(values.len() as u64, out);
    let mut distinct = values.clone();
    distinct.dedup();
    assert_eq!(distinct, values);
}

/// The series of a `/metrics` body (the endpoint's own `pipit_http_*` families left out), each
/// as its labels with `__name__`.
fn exposed_series(body: &str) -> Vec<BTreeMap<String, String>> {
    let mut all: Vec<BTreeMap<String, String>> = body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("pipit_http_") && !l.is_empty())
        .map(|line| {
            let (series, _value) = line.rsplit_once(' ').unwrap();
            let (family, labels) = series.split_once('{').unwrap_or((series, "}"));
            let mut map = BTreeMap::from([("__name__".to_owned(), family.to_owned())]);
            let mut rest = labels.strip_suffix('}').unwrap();
            while let Some((name, after)) = rest.split_once("=\"") {
                let mut value = String::new();
                let mut chars = after.char_indices();
                let end = loop {
                    match chars.next().unwrap() {
                        (_, '\\') => match chars.next().unwrap().1 {
                            'n' => value.push('\n'),
                            c => value.push(c),
                        },
                        (i, '"') => break i,
                        (_, c) => value.push(c),
                    }
                };
                map.insert(name.to_owned(), value);
                rest = after[end + 1..].trim_start_matches(',');
            }
            map
        })
        .collect();
    all.sort();
    all
}

/// A real `pipit run` with host sources, the `/metrics` endpoint and a `prometheus_remote_write`
/// output: every series the endpoint lists, Prometheus receives by remote write under the same
/// name and labels (declared names with their placeholders as labels and their units).
#[test]
fn series_are_named_as_on_the_metrics_endpoint() {
    let prometheus = Prometheus::start_receiver(None);
    let dir = TempDir::new("remote-write-names");
    let config = dir.path().join("pipit.json");
    let port = free_port();
    std::fs::write(
        &config,
        format!(
            r#"{{"agent": {{"hostname": "gw1", "host_root": "{root}"}},
  "control": {{"enabled": false}},
  "http_server": {{"enabled": true, "binds": ["127.0.0.1:{port}"]}},
  "sources": [{{"type": "load", "interval": "100ms"}},
    {{"type": "interface", "interval": "100ms"}},
    {{"type": "memory", "interval": "100ms", "prefix": "edge", "tags": ["lab", "b"],
      "attributes": {{"site": "a \"quoted\" \\ name", "rack-no": "7"}}}}],
  "outputs": [{{"type": "prometheus_remote_write", "url": "{url}", "batch_timeout": "50ms"}}]}}"#,
            root = fixture("debian").display(),
            url = prometheus_url(&prometheus),
        ),
    )
    .unwrap();
    let _agent = Agent::start(&config, "info");
    let (exposed, received) = wait_until(
        "Prometheus to hold every series /metrics lists",
        DEADLINE,
        || {
            let (status, body) = common::peers::http_request(port, "GET", "/metrics", b"").ok()?;
            let exposed = exposed_series(&body);
            let received: Vec<BTreeMap<String, String>> =
                prometheus_samples(&prometheus, r#"{host="gw1"}"#)
                    .into_iter()
                    .map(|(labels, _)| labels)
                    .collect();
            // The interface source's rates need two readings: wait for them too.
            let rates = exposed
                .iter()
                .any(|l| l["__name__"] == "interface_rx_bytes_per_second");
            (status == 200 && rates && exposed == received).then_some((exposed, received))
        },
    );
    assert_eq!(exposed, received);
    assert!(
        received
            .iter()
            .any(|l| l["__name__"] == "interface_rx_bytes_per_second" && l["name"] == "enp1s0"),
        "{received:?}"
    );
    let memory = received
        .iter()
        .find(|l| l["__name__"] == "edge_memory_used_bytes")
        .unwrap();
    assert_eq!(memory["site"], "a \"quoted\" \\ name");
    assert_eq!(memory["rack_no"], "7");
    assert_eq!(memory["tags"], "lab,b");
}
