//! The `http_server` endpoint of a real `pipit run`: `/metrics` checked by Prometheus's own
//! `promtool` and scraped by a real Prometheus server, and the endpoint's limits against clients
//! that misbehave.
#![cfg(feature = "http_server")]

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::peers::{Prometheus, TempDir, free_port, wait_until};
use common::pipit::{Agent, fixture};

const DEADLINE: Duration = Duration::from_secs(30);

/// A test agent reading the `minimal` fixture tree every 100 ms, with the endpoint on a free
/// port and `http` extra keys (JSON members, may be empty) in its section.
struct Setup {
    _dir: TempDir,
    config: PathBuf,
    port: u16,
}

fn setup(tag: &str, http: &str) -> Setup {
    let dir = TempDir::new(tag);
    let config = dir.path().join("pipit.json");
    let s = Setup {
        config,
        port: free_port(),
        _dir: dir,
    };
    s.write(s.port, http);
    s
}

impl Setup {
    fn write(&self, port: u16, http: &str) {
        let text = format!(
            r#"{{"agent": {{"hostname": "gw1", "host_root": "{root}"}},
  "control": {{"enabled": false}},
  "http_server": {{"enabled": true, "binds": ["127.0.0.1:{port}"]{http}}},
  "sources": [{{"type": "load", "interval": "100ms"}},
    {{"type": "memory", "interval": "100ms", "prefix": "edge", "tags": ["lab", "b"],
      "attributes": {{"site": "a \"quoted\" \\ name", "rack-no": "7"}}}}],
  "outputs": [{{"type": "stdout", "batch_timeout": "1h", "batch_size": 100000}}]}}"#,
            root = fixture("minimal").display(),
        );
        fs::write(&self.config, text).unwrap();
    }
}

/// One request with `extra` header lines; the status and body.
fn get(port: u16, path: &str, extra: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n"
    )
    .unwrap();
    response(&mut s)
}

fn response(s: &mut TcpStream) -> (u16, String) {
    let mut text = String::new();
    s.read_to_string(&mut text).expect("the answer is read");
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

fn metrics_when(port: u16, extra: &str, ok: impl Fn(&str) -> bool) -> String {
    wait_until("/metrics to list the sources", DEADLINE, || {
        let (status, body) = get(port, "/metrics", extra);
        (status == 200 && ok(&body)).then_some(body)
    })
}

fn count(body: &str, outcome: &str) -> u64 {
    let prefix = format!("pipit_http_requests_total{{outcome=\"{outcome}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no count of {outcome} in\n{body}"))
}

/// Asserts that `promtool check metrics` finds neither an error nor a lint problem in `body`.
fn promtool_accepts(body: &str) {
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (tests/install-deps.sh installs prometheus)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool: {}{}\n{body}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}

#[test]
fn every_host_source_passes_promtool_and_its_lint() {
    let s = setup("prom-lint", "");
    let sources = [
        "cpu",
        "interface",
        "load",
        "memory",
        "swap",
        "uptime",
        "processes",
        "disk",
        "thermal",
        "wireless",
        "conntrack",
        "tcpconns",
        "self",
    ];
    let list: Vec<String> = sources
        .iter()
        .map(|t| format!(r#"{{"type": "{t}", "interval": "100ms"}}"#))
        .collect();
    let text = format!(
        r#"{{"agent": {{"hostname": "gw1", "host_root": "{root}"}},
  "control": {{"enabled": false}},
  "http_server": {{"enabled": true, "binds": ["127.0.0.1:{port}"]}},
  "sources": [{list}, {{"type": "cpu", "name": "cores", "per_core": true, "interval": "100ms"}}],
  "outputs": [{{"type": "stdout", "batch_timeout": "1h", "batch_size": 100000}}]}}"#,
        root = fixture("openwrt").display(),
        port = s.port,
        list = list.join(", "),
    );
    fs::write(&s.config, text).unwrap();
    let _agent = Agent::start(&s.config, "info");
    let body = metrics_when(s.port, "", |b| {
        // disk's rates need two samples; the first answer may come before them.
        [
            "\nwireless_",
            "# TYPE disk_io_time_seconds_per_second gauge",
            "\ninterface_",
            "\nprocesses_all{",
        ]
        .iter()
        .all(|f| b.contains(f))
    });
    promtool_accepts(&body);
}

#[test]
fn promtool_accepts_the_answer_and_prometheus_reads_the_values_back() {
    let s = setup("prom-scrape", "");
    let _agent = Agent::start(&s.config, "info");
    let body = metrics_when(s.port, "", |b| {
        b.contains("\nload_1{") && b.contains("edge_memory_used_bytes{")
    });
    assert!(
        body.contains("# TYPE load_1 gauge\nload_1{host=\"gw1\"} 0.42\n"),
        "{body}"
    );
    assert!(
        body.contains(r#"{host="gw1",tags="lab,b",rack_no="7",site="a \"quoted\" \\ name"}"#),
        "{body}"
    );

    promtool_accepts(&body);

    let prometheus = Prometheus::start(&format!("127.0.0.1:{}", s.port), None);
    let read = |expr: &str| {
        wait_until(&format!("prometheus to have {expr}"), DEADLINE, || {
            let answer = prometheus.query(expr);
            let v: serde_json::Value = serde_json::from_str(&answer).ok()?;
            let result = v["data"]["result"].as_array()?.first()?.clone();
            Some(result)
        })
    };
    let load = read("load_1");
    assert_eq!(load["value"][1], "0.42", "{load}");
    assert_eq!(load["metric"]["host"], "gw1");
    assert_eq!(load["metric"]["job"], "pipit");
    let used = read("edge_memory_used_bytes");
    let served = body
        .lines()
        .find_map(|l| l.strip_prefix("edge_memory_used_bytes{"))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap()
        .to_owned();
    assert_eq!(used["value"][1], served.as_str(), "{used}");
    assert_eq!(used["metric"]["site"], "a \"quoted\" \\ name");
    assert_eq!(used["metric"]["tags"], "lab,b");
    let up = read("up");
    assert_eq!(up["value"][1], "1", "{up}");
}

#[test]
fn refusals_are_answered_counted_and_good_clients_still_served() {
    let s = setup(
        "prom-limits",
        r#", "basic_auth": {"username": "prom", "password": "pa:ss"}, "max_connections": 3,
            "max_request_bytes": 1024, "request_timeout": "1s""#,
    );
    let agent = Agent::start(&s.config, "info");
    // prom:pa:ss in base64.
    let good = "Authorization: Basic cHJvbTpwYTpzcw==\r\n";
    metrics_when(s.port, good, |b| b.contains("\nload_1{"));

    assert_eq!(get(s.port, "/metrics", "").0, 401);
    assert_eq!(
        get(
            s.port,
            "/metrics",
            "Authorization: Basic cHJvbTp3cm9uZw==\r\n"
        )
        .0,
        401
    );
    assert_eq!(get(s.port, "/nothing", good).0, 404);

    // Too large: a head that never ends, past the size limit.
    let mut big = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    big.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = big.write_all(format!("GET /metrics HTTP/1.1\r\nX: {}", "a".repeat(2000)).as_bytes());
    assert_eq!(response(&mut big).0, 431);

    // A slowloris client: a byte every 100 ms, never finishing; cut off at the 1 s deadline while
    // a good client is served meanwhile.
    let started = Instant::now();
    let mut slow = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
    let dribble = {
        let mut slow = slow.try_clone().unwrap();
        thread::spawn(move || {
            while slow.write_all(b"X").is_ok() {
                thread::sleep(Duration::from_millis(100));
            }
        })
    };
    assert_eq!(get(s.port, "/metrics", good).0, 200);
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let (status, _) = response(&mut slow);
    let cut_after = started.elapsed();
    assert_eq!(status, 408);
    assert!(
        cut_after >= Duration::from_millis(900) && cut_after < Duration::from_secs(3),
        "cut off after {cut_after:?}"
    );
    let _ = slow.shutdown(Shutdown::Both);
    dribble.join().unwrap();

    // The connection limit: three idle connections are held, a fourth is answered 503.
    let idle: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(("127.0.0.1", s.port)).unwrap())
        .collect();
    let (status, _) = get(s.port, "/metrics", good);
    assert_eq!(status, 503);
    drop(idle);

    let body = metrics_when(s.port, good, |b| {
        b.contains("pipit_http_requests_total{outcome=\"refused_timeout\"} 1")
    });
    assert_eq!(count(&body, "refused_auth"), 2);
    assert_eq!(count(&body, "not_found"), 1);
    assert_eq!(count(&body, "refused_too_large"), 1);
    // At least the one above; a scrape right after may still find the idle three open.
    assert!(count(&body, "refused_busy") >= 1);
    assert_eq!(count(&body, "refused_network"), 0);
    // One log line per kind of refusal, none with the credentials.
    let log = agent.wait_stderr("the refusals to be logged", DEADLINE, |lines| {
        lines
            .iter()
            .any(|l| l.contains("http_server.max_connections"))
    });
    let auth_lines = log
        .iter()
        .filter(|l| l.contains("basic auth credentials"))
        .count();
    assert_eq!(auth_lines, 1, "{log:#?}");
    assert!(
        !log.iter()
            .any(|l| l.contains("pa:ss") || l.contains("cHJvbTpwYTpzcw"))
    );
}

#[test]
fn clients_outside_the_allowed_networks_are_refused() {
    let s = setup("prom-net", r#", "allowed_networks": ["127.0.0.2/32"]"#);
    let agent = Agent::start(&s.config, "info");
    wait_until("the endpoint to listen", DEADLINE, || {
        TcpStream::connect(("127.0.0.1", s.port)).ok()
    });
    // From 127.0.0.1 (not allowed), then from 127.0.0.2 (allowed) through curl's --interface.
    assert_eq!(get(s.port, "/metrics", "").0, 403);
    let allowed = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--interface",
            "127.0.0.2",
        ])
        .arg(format!("http://127.0.0.1:{}/metrics", s.port))
        .output()
        .expect("curl runs");
    assert_eq!(String::from_utf8_lossy(&allowed.stdout), "200");
    agent.wait_stderr("the refusal to be logged", DEADLINE, |lines| {
        lines
            .iter()
            .any(|l| l.contains("refused a client at 127.0.0.1") && l.contains("allowed_networks"))
    });
}

#[test]
fn the_endpoint_follows_a_reload_and_stops_with_the_agent() {
    let s = setup("prom-reload", "");
    let mut agent = Agent::start(&s.config, "info");
    metrics_when(s.port, "", |b| b.contains("\nload_1{"));
    let moved = free_port();
    s.write(moved, "");
    agent.signal("HUP");
    metrics_when(moved, "", |b| b.contains("\nload_1{"));
    assert!(
        TcpStream::connect(("127.0.0.1", s.port)).is_err(),
        "the old port still listens"
    );
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success());
    assert!(TcpStream::connect(("127.0.0.1", moved)).is_err());
}
