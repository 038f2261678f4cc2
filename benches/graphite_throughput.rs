//! Graphite throughput: 1,000,000 datapoints in batches of 1,000, plaintext and pickle, sent by
//! pipit's `GraphiteClient` and by aiographite 0.2.0 (Python) to the same loopback sink
//! (`graphite_sink.py`, a separate process that checks every line or frame and sums what it got).
//!
//! Reported: datapoints per CPU-second of the sending thread (connect, encode, write, close;
//! building the datapoints is not counted on either side), the best of five runs (the least
//! disturbed by other work on the machine), and the ratio.
//!
//! Also reported: what the delivery confirmation costs pipit per batch (two TCP_INFO reads of the
//! connection in the agent, timed over 100,000 reads) as a share of its CPU per batch.
//! `PIPIT_BENCH_BATCH` sets another batch size (a router sends a few datapoints per batch:
//! `PIPIT_BENCH_BATCH=5`), `PIPIT_BENCH_COUNT` and `PIPIT_BENCH_RUNS` a shorter run.
//!
//! Run: `benches/graphite_throughput.sh` (or `cargo bench --bench graphite_throughput` with
//! aiographite installed for `$PIPIT_BENCH_PYTHON`, default `python3`).

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};

use pipit::outputs::graphite::{Datapoint, GraphiteClient, Protocol, Timeouts};

/// The number the environment variable `name` holds, or `default`.
fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(default)
}

/// Datapoints per run: 1,000,000 unless `PIPIT_BENCH_COUNT` says otherwise (benches/all.sh runs
/// fewer).
fn count() -> usize {
    setting("PIPIT_BENCH_COUNT", 1_000_000)
}

/// Datapoints per batch: 1,000 unless `PIPIT_BENCH_BATCH` says otherwise.
fn batch_size() -> usize {
    setting("PIPIT_BENCH_BATCH", 1_000)
}

/// CPU seconds of one TCP_INFO read of a connected socket, the check the client makes before
/// each batch and when the writer looks for confirmations.
fn confirmation_cost() -> f64 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
    let _server = listener.accept().expect("accept");
    const READS: usize = 100_000;
    let start = cpu_seconds();
    for _ in 0..READS {
        pipit::sys::tcp_progress(&client).expect("TCP_INFO");
    }
    (cpu_seconds() - start) / READS as f64
}

fn python() -> String {
    std::env::var("PIPIT_BENCH_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("benches")
        .join(name)
}

/// CPU time of the calling thread, in seconds (the Python side reads the same file).
fn cpu_seconds() -> f64 {
    let text =
        fs::read_to_string("/proc/thread-self/schedstat").expect("/proc/thread-self/schedstat");
    let ns: u64 = text
        .split_whitespace()
        .next()
        .and_then(|f| f.parse().ok())
        .expect("schedstat run time");
    ns as f64 / 1e9
}

/// Datapoint `i` of the benchmark; `datapoint` in graphite_aiographite.py makes the same.
fn datapoint(i: usize) -> (String, f64, i64) {
    (
        format!("bench.host{:02}.metric{:03}", i % 100, i % 1000),
        (i % 10_000) as f64 * 0.25,
        1_700_000_000 + (i / 1000) as i64,
    )
}

/// What the sink got: count, sum of values, sum of timestamps.
type Tally = (usize, f64, i64);

struct Sink {
    child: Child,
    lines: std::io::Lines<BufReader<ChildStdout>>,
    port: u16,
}

impl Sink {
    fn start(protocol: &str) -> Sink {
        let mut child = Command::new(python())
            .arg(script("graphite_sink.py"))
            .arg(protocol)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the sink");
        let mut lines = BufReader::new(child.stdout.take().expect("sink stdout")).lines();
        let ready = lines.next().and_then(Result::ok).unwrap_or_default();
        let port = ready
            .strip_prefix("READY ")
            .and_then(|p| p.trim().parse().ok())
            .expect("READY <port> from the sink");
        Sink { child, lines, port }
    }

    fn tally(mut self) -> Tally {
        let line = self.lines.next().and_then(Result::ok).unwrap_or_default();
        let status = self.child.wait().expect("wait for the sink");
        assert!(status.success(), "the sink refused what it got: {status}");
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f.first(), Some(&"OK"), "sink said {line:?}");
        (
            f[1].parse().unwrap(),
            f[2].parse().unwrap(),
            f[3].parse().unwrap(),
        )
    }
}

fn pipit_run(protocol: Protocol, name: &str, data: &[Datapoint], expected: Tally) -> f64 {
    let sink = Sink::start(name);
    let start = cpu_seconds();
    let mut client = GraphiteClient::connect(
        format!("127.0.0.1:{}", sink.port),
        protocol,
        Timeouts::default(),
    )
    .expect("connect");
    for batch in data.chunks(batch_size()) {
        client.send_many(batch).expect("send");
    }
    client.close().expect("close");
    let cpu = cpu_seconds() - start;
    assert_eq!(
        sink.tally(),
        expected,
        "pipit {name}: the sink did not get every datapoint"
    );
    cpu
}

fn aiographite_run(name: &str, expected: Tally) -> f64 {
    let sink = Sink::start(name);
    let out = Command::new(python())
        .arg(script("graphite_aiographite.py"))
        .args([
            name,
            &sink.port.to_string(),
            &count().to_string(),
            &batch_size().to_string(),
        ])
        .output()
        .expect("run aiographite");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "aiographite failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cpu = text
        .trim()
        .strip_prefix("CPU ")
        .and_then(|c| c.parse().ok())
        .expect("CPU <seconds> from aiographite");
    assert_eq!(
        sink.tally(),
        expected,
        "aiographite {name}: the sink did not get every datapoint"
    );
    cpu
}

fn best(v: Vec<f64>) -> f64 {
    v.into_iter().fold(f64::INFINITY, f64::min)
}

fn main() {
    // `cargo test --all-targets` runs bench targets too, without `--bench`: nothing to check here.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let (count, runs) = (count(), setting("PIPIT_BENCH_RUNS", 5));
    let raw: Vec<(String, f64, i64)> = (0..count).map(datapoint).collect();
    let expected: Tally = (
        count,
        raw.iter().map(|d| d.1).sum(),
        raw.iter().map(|d| d.2).sum(),
    );
    let data: Vec<Datapoint> = raw
        .into_iter()
        .map(|(p, v, t)| Datapoint::new(p, v, t).expect("valid datapoint"))
        .collect();
    let batch = batch_size();
    println!(
        "{count} datapoints in batches of {batch}, best of {runs} runs, CPU of the sending thread"
    );
    println!(
        "{:<10} {:>16} {:>16} {:>8}",
        "protocol", "pipit dp/cpu-s", "aiographite", "ratio"
    );
    for (protocol, name) in [
        (Protocol::Plaintext, "plaintext"),
        (Protocol::Pickle, "pickle"),
    ] {
        // Alternating, so that both sides see the same conditions on the machine.
        let (mut pipit, mut aio) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            pipit.push(pipit_run(protocol, name, &data, expected));
            aio.push(aiographite_run(name, expected));
        }
        let (pipit, aio) = (best(pipit), best(aio));
        let (p, a) = (count as f64 / pipit, count as f64 / aio);
        println!("{name:<10} {p:>16.0} {a:>16.0} {:>7.1}x", p / a);
        let per_batch = pipit / count.div_ceil(batch) as f64;
        let check = confirmation_cost();
        println!(
            "{name:<10} confirmation: {:.2} us per TCP_INFO read; two per batch in the agent (the send, the writer's look) are {:.1} % of pipit's {:.2} us per batch",
            check * 1e6,
            100.0 * 2.0 * check / per_batch,
            per_batch * 1e6
        );
    }
}
