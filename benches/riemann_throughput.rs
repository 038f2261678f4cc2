//! Riemann client throughput: pipit's `RiemannClient` against PyPI's riemann-client, side by side.
//!
//! Each sender sends the same datapoints (service, host, time, ttl, one tag, one attribute, a
//! float metric) in batches over TCP to one loopback sink, a child process that decodes every frame
//! and every event in it, checks the fields each event must have, and acknowledges the frame.
//! Only the senders' CPU time is compared: each reads its own from /proc/self/schedstat.
//!
//! `cargo bench --bench riemann_throughput` (or benches/riemann_throughput.sh); under `cargo test`
//! only a short smoke run. Settings:
//! `PIPIT_BENCH_EVENTS` (default 1,000,000), `PIPIT_BENCH_BATCH` (default 1,000),
//! `PIPIT_TEST_PYTHON` (a Python with riemann-client; default python3).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, SystemTime};

use pipit::outputs::riemann::{RiemannClient, Timeouts, Transport};
use pipit::protobuf::{Fields, Value};
use pipit::{Event, Metric};

fn main() {
    if std::env::args().nth(1).as_deref() == Some("--sink") {
        sink();
        return;
    }
    // `cargo test --all-targets` runs this too, without `--bench`: then only a short smoke run
    // checks that both senders still deliver every datapoint.
    let measuring = std::env::args().any(|a| a == "--bench");
    let events = if measuring {
        setting("PIPIT_BENCH_EVENTS", 1_000_000)
    } else {
        2_000
    };
    let batch = setting("PIPIT_BENCH_BATCH", 1_000);
    let python = std::env::var("PIPIT_TEST_PYTHON").unwrap_or_else(|_| "python3".into());

    let exe = std::env::current_exe().expect("own executable");
    let mut sink = Command::new(exe)
        .arg("--sink")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the sink");
    let mut reports = BufReader::new(sink.stdout.take().expect("sink stdout"));
    let port: u16 = read_line(&mut reports)
        .strip_prefix("PORT ")
        .and_then(|p| p.parse().ok())
        .expect("the sink's port");

    let pipit_cpu = send_with_pipit(port, events, batch);
    let pipit_sink = sink_report(&mut reports);

    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/benches/riemann_client_sender.py"
    );
    let out = Command::new(&python)
        .args([
            script,
            "--port",
            &port.to_string(),
            "--events",
            &events.to_string(),
            "--batch",
            &batch.to_string(),
        ])
        .output()
        .expect("run the riemann-client sender");
    assert!(
        out.status.success(),
        "riemann-client sender failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let peer_cpu = stdout
        .split_whitespace()
        .find_map(|w| w.strip_prefix("cpu_ns="))
        .and_then(|n| n.parse::<u64>().ok())
        .map(|ns| ns as f64 / 1e9)
        .expect("cpu_ns from the riemann-client sender");
    let peer_sink = sink_report(&mut reports);
    stop(sink);

    for (who, report) in [("pipit", &pipit_sink), ("riemann-client", &peer_sink)] {
        assert_eq!(
            report.events, events,
            "{who}: the sink verified {} of {events} events",
            report.events
        );
        assert_eq!(
            report.bad, 0,
            "{who}: {} frames failed to decode",
            report.bad
        );
    }
    if !measuring {
        println!(
            "riemann_throughput: smoke run of {events} datapoints passed; `cargo bench` measures"
        );
        return;
    }
    let pipit_rate = events as f64 / pipit_cpu;
    let peer_rate = events as f64 / peer_cpu;
    println!(
        "riemann_throughput: {events} datapoints in batches of {batch}, TCP to a loopback sink verifying every frame"
    );
    println!(
        "{:<16} {:>12} {:>8} {:>14} {:>20}",
        "sender", "datapoints", "frames", "CPU seconds", "datapoints/CPU-s"
    );
    for (who, cpu, report) in [
        ("pipit", pipit_cpu, &pipit_sink),
        ("riemann-client", peer_cpu, &peer_sink),
    ] {
        println!(
            "{who:<16} {:>12} {:>8} {cpu:>14.3} {:>20.0}",
            report.events,
            report.frames,
            events as f64 / cpu
        );
    }
    println!(
        "ratio pipit / riemann-client: {:.1}x",
        pipit_rate / peer_rate
    );
}

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU time of this (single-threaded) process so far, in seconds.
fn cpu_seconds() -> f64 {
    let text = std::fs::read_to_string("/proc/self/schedstat").expect("/proc/self/schedstat");
    text.split_whitespace()
        .next()
        .and_then(|n| n.parse::<u64>().ok())
        .expect("schedstat CPU time") as f64
        / 1e9
}

/// Sends like the Python sender: the events of each batch are made, then sent as one message.
fn send_with_pipit(port: u16, events: u64, batch: u64) -> f64 {
    let start = cpu_seconds();
    let timeouts = Timeouts {
        ack: Duration::from_secs(30),
        ..Timeouts::default()
    };
    let mut client = RiemannClient::connect(&format!("127.0.0.1:{port}"), Transport::Tcp, timeouts)
        .expect("connect");
    let mut buf: Vec<Event> = Vec::with_capacity(batch as usize);
    let mut sent = 0;
    while sent < events {
        let now = SystemTime::now();
        buf.clear();
        for i in sent..(sent + batch).min(events) {
            let mut e = Event::new(format!("bench.metric.{}", i % 100), "bench-host")
                .with_metric(Metric::Float(i as f64 * 0.5))
                .with_time(now);
            e.ttl = Some(Duration::from_secs(60));
            e.tags = vec!["bench".into()];
            e.attributes = BTreeMap::from([("dc".into(), "lab".into())]);
            buf.push(e);
        }
        client.send_many(&buf).expect("send");
        sent += buf.len() as u64;
    }
    client.close().expect("close");
    cpu_seconds() - start
}

#[derive(Debug)]
struct Report {
    events: u64,
    frames: u64,
    bad: u64,
}

fn read_line(from: &mut BufReader<ChildStdout>) -> String {
    let mut line = String::new();
    from.read_line(&mut line).expect("read from the sink");
    line.trim().to_owned()
}

/// The sink's line for the next connection that closed: `events=E frames=F bad=B`.
fn sink_report(from: &mut BufReader<ChildStdout>) -> Report {
    let line = read_line(from);
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in the sink's report {line:?}"))
    };
    Report {
        events: field("events"),
        frames: field("frames"),
        bad: field("bad"),
    }
}

fn stop(mut sink: Child) {
    let _ = sink.kill();
    let _ = sink.wait();
}

/// The sink: serves one connection at a time on a free loopback port, printing `PORT <n>` first
/// and a report line when each connection closes.
fn sink() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the sink");
    println!(
        "PORT {}",
        listener.local_addr().expect("sink address").port()
    );
    for stream in listener.incoming().flatten() {
        let report = serve(stream);
        println!(
            "events={} frames={} bad={}",
            report.events, report.frames, report.bad
        );
    }
}

fn serve(mut stream: TcpStream) -> Report {
    const OK: [u8; 6] = [0, 0, 0, 2, 0x10, 1];
    let mut report = Report {
        events: 0,
        frames: 0,
        bad: 0,
    };
    let mut frame = Vec::new();
    loop {
        let mut head = [0u8; 4];
        if stream.read_exact(&mut head).is_err() {
            return report;
        }
        frame.resize(u32::from_be_bytes(head) as usize, 0);
        if stream.read_exact(&mut frame).is_err() {
            return report;
        }
        report.frames += 1;
        match verify(&frame) {
            Some(n) => report.events += n,
            None => report.bad += 1,
        }
        if stream.write_all(&OK).is_err() {
            return report;
        }
    }
}

/// The number of events in a `Msg`, or `None` when it or an event in it is malformed or lacks
/// time, service, host or a metric.
fn verify(msg: &[u8]) -> Option<u64> {
    let mut n = 0;
    for field in Fields(msg) {
        let (6, Value::Bytes(event)) = field.ok()? else {
            continue;
        };
        let mut seen = 0u32;
        for field in Fields(event) {
            let (number, _) = field.ok()?;
            seen |= 1 << number.min(31);
        }
        let required = 1 << 1 | 1 << 3 | 1 << 4 | 1 << 15;
        if seen & required != required || seen & (1 << 13 | 1 << 14) == 0 {
            return None;
        }
        n += 1;
    }
    Some(n)
}
