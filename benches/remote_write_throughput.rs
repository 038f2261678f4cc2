//! Prometheus remote-write throughput: pipit's `prometheus_remote_write` output against a Python
//! client (protobuf's Python library and python-snappy), side by side against one private
//! VictoriaMetrics.
//!
//! Both send the same datapoints (100 series, labels host, site and tags, a float value, times a
//! millisecond apart) as the same WriteRequests in batches of 500, each waiting for the 204.
//! pipit's output is driven as its writer thread drives it, configured beside a router's host
//! sources, whose declarations it looks each name up in. Only the senders' CPU time is
//! compared; afterwards VictoriaMetrics must hold every datapoint of each.
//!
//! `cargo bench --bench remote_write_throughput` (or benches/remote_write_throughput.sh); under
//! `cargo test` only a short smoke run. `PIPIT_BENCH_EVENTS` sets the count (default 200,000);
//! `PIPIT_TEST_PYTHON` the Python with protobuf and python-snappy (default python3).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pipit::Event;

const BATCH: usize = 500;

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let events = if measuring {
        std::env::var("PIPIT_BENCH_EVENTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(200_000)
    } else {
        2_000
    };
    let vm = Victoria::start();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    let base_ms = now.as_millis() as u64 - events as u64 - 60_000;
    let pipit = pipit_cpu(vm.port, events, base_ms);
    let python = python_cpu(vm.port, events, base_ms);
    for sender in ["pipit", "python"] {
        let stored = vm.count(sender, events);
        assert_eq!(stored, events, "datapoints of {sender} in VictoriaMetrics");
    }
    println!("remote write to VictoriaMetrics, {events} datapoints in batches of {BATCH}:");
    println!("  sender                 CPU seconds   datapoints per CPU-second");
    for (name, cpu) in [("pipit", pipit), ("python protobuf+snappy", python)] {
        println!("  {name:<22} {cpu:>11.3}   {:>25.0}", events as f64 / cpu);
    }
    println!("  ratio: {:.1}x", python / pipit);
}

/// CPU seconds pipit's output takes to deliver `events` datapoints.
fn pipit_cpu(port: u16, events: usize, base_ms: u64) -> f64 {
    // The host sources a router runs: each service name is looked up among their declarations
    // (and, being none of theirs, tried against every one).
    let text = format!(
        r#"{{"sources": [{{"type": "cpu"}}, {{"type": "load"}}, {{"type": "memory"}},
            {{"type": "swap"}}, {{"type": "uptime"}}, {{"type": "processes"}},
            {{"type": "interface"}}, {{"type": "df"}}, {{"type": "disk"}},
            {{"type": "wireless"}}, {{"type": "conntrack"}}, {{"type": "self"}}],
          "outputs": [{{"type": "prometheus_remote_write",
            "url": "http://127.0.0.1:{port}/api/v1/write", "labels": {{"sender": "pipit"}}}}]}}"#
    );
    let config = pipit::config_file::parse("bench.json", &text).expect("config");
    let mut output = config.outputs[0]
        .spec
        .build_target(0, "out.bench")
        .expect("output");
    let all: Vec<Event> = (0..events)
        .map(|i| {
            let mut e = Event::new(format!("bench.m{}", i % 100), "r1")
                .with_metric(i as f64 / 2.0)
                .with_time(UNIX_EPOCH + Duration::from_millis(base_ms + i as u64));
            e.tags = vec!["edge".into()];
            e.attributes.insert("site".into(), "lab".into());
            e
        })
        .collect();
    let start = cpu_seconds();
    for batch in all.chunks(BATCH) {
        output.write(batch).expect("delivered");
    }
    cpu_seconds() - start
}

/// CPU seconds the Python sender reports for the same datapoints.
fn python_cpu(port: u16, events: usize, base_ms: u64) -> f64 {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/benches/remote_write_python_sender.py"
    );
    let python = std::env::var("PIPIT_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(python)
        .args([
            script,
            &port.to_string(),
            &events.to_string(),
            &BATCH.to_string(),
        ])
        .env("BASE_MS", base_ms.to_string())
        .output()
        .expect("python3 with protobuf and python-snappy (tests/install-deps.sh)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("CPU seconds")
}

/// CPU time of this process's main thread so far, in seconds.
fn cpu_seconds() -> f64 {
    let text = std::fs::read_to_string("/proc/self/schedstat").expect("/proc/self/schedstat");
    let ns: f64 = text
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("schedstat");
    ns / 1e9
}

/// A private VictoriaMetrics on a free loopback port, with its data in its own directory.
struct Victoria {
    port: u16,
    child: Child,
    dir: std::path::PathBuf,
}

impl Victoria {
    fn start() -> Victoria {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = std::env::temp_dir().join(format!("pipit-bench-vm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("bench dir");
        let child = Command::new("/usr/bin/victoria-metrics")
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg(format!("-storageDataPath={}", dir.join("data").display()))
            .arg("-loggerLevel=ERROR")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("victoria-metrics (tests/install-deps.sh)");
        let vm = Victoria { port, child, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while vm.get("/health").is_none_or(|body| body.trim() != "OK") {
            assert!(Instant::now() < deadline, "victoria-metrics did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        vm
    }

    /// The body of a GET answered 200, read to the end of the connection.
    fn get(&self, target: &str) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        write!(stream, "GET {target} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).ok()?;
        let (head, body) = answer.split_once("\r\n\r\n")?;
        let status = head.split_whitespace().nth(1)?;
        (status == "200").then(|| body.to_owned())
    }

    /// The datapoints of `sender` stored, once they are all searchable (or after 30 s).
    fn count(&self, sender: &str, expected: usize) -> usize {
        let query = format!(
            "/api/v1/query?query=sum(count_over_time(%7Bsender%3D%22{sender}%22%7D%5B1d%5D))"
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let _ = self.get("/internal/force_flush");
            let count = self
                .get(&query)
                .and_then(|body| {
                    let value = body.split("\"value\":[").nth(1)?;
                    value.split('"').nth(1)?.parse::<f64>().ok()
                })
                .map_or(0, |n| n as usize);
            if count >= expected || Instant::now() > deadline {
                return count;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Victoria {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
