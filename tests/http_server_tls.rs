//! The `http_server` endpoint over HTTPS (the `tls` feature) in a real `pipit run`, with a
//! certificate made by `openssl` for each run and clients that verify it (curl with `--cacert`,
//! Python's ssl module). Run with `cargo test --features tls --test http_server_tls`.
#![cfg(all(feature = "http_server", feature = "tls"))]

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::certs::issue;
use common::peers::{TempDir, free_port, wait_until};
use common::pipit::{Agent, fixture};

const DEADLINE: Duration = Duration::from_secs(30);

/// An agent serving HTTPS on a free port with a certificate for 127.0.0.1, `http` extra keys in
/// its section; the CA that signed the certificate.
struct Setup {
    dir: TempDir,
    port: u16,
    ca: PathBuf,
    agent: Agent,
}

fn start(tag: &str, http: &str) -> Setup {
    let dir = TempDir::new(tag);
    let (ca, cert, key) = issue(dir.path(), "server", "serverAuth");
    let port = free_port();
    let text = format!(
        r#"{{"agent": {{"hostname": "gw1", "host_root": "{root}"}},
  "control": {{"enabled": false}},
  "http_server": {{"enabled": true, "binds": ["127.0.0.1:{port}"],
    "tls_cert": "{cert}", "tls_key": "{key}"{http}}},
  "sources": [{{"type": "load", "interval": "100ms"}}],
  "outputs": [{{"type": "stdout", "batch_timeout": "1h", "batch_size": 100000}}]}}"#,
        root = fixture("minimal").display(),
        cert = cert.display(),
        key = key.display(),
    );
    let config = dir.path().join("pipit.json");
    fs::write(&config, text).unwrap();
    let agent = Agent::start(&config, "info");
    wait_until("the endpoint to listen", DEADLINE, || {
        TcpStream::connect(("127.0.0.1", port)).ok()
    });
    Setup {
        dir,
        port,
        ca,
        agent,
    }
}

/// curl on `path` over HTTPS, trusting only `ca`: its output (the body, then the status code).
fn curl(port: u16, path: &str, ca: &Path) -> Output {
    Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-w",
            "\n%{http_code}",
            "--cacert",
        ])
        .arg(ca)
        .arg(format!("https://127.0.0.1:{port}{path}"))
        .output()
        .expect("curl runs")
}

/// The body of a `/metrics` answer once it holds `wanted`.
fn metrics_with(s: &Setup, wanted: &str) -> String {
    wait_until(&format!("/metrics to hold {wanted}"), DEADLINE, || {
        let out = curl(s.port, "/metrics", &s.ca);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.success() && text.ends_with("\n200") && text.contains(wanted)).then_some(text)
    })
}

/// The first line a plain HTTP request to `port` is answered with.
fn plain_status_line(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.lines().next().unwrap_or_default().to_owned()
}

#[test]
fn https_is_served_with_its_certificate_and_plain_http_is_refused_cleanly() {
    let s = start("https-serve", "");
    let body = metrics_with(&s, "load_1{host=\"gw1\"} 0.42");
    assert!(body.contains("# TYPE load_1 gauge"), "{body}");

    // A client trusting another CA refuses the certificate (curl's 60: peer certificate cannot
    // be authenticated).
    let other = s.dir.path().join("other");
    fs::create_dir(&other).unwrap();
    let (other_ca, _, _) = issue(&other, "other", "serverAuth");
    let refused = curl(s.port, "/metrics", &other_ca);
    assert_eq!(refused.status.code(), Some(60), "{refused:?}");

    assert_eq!(plain_status_line(s.port), "HTTP/1.1 400 Bad Request");
    let body = metrics_with(&s, "outcome=\"refused_not_tls\"} 1");
    assert!(body.contains("outcome=\"served\"}"), "{body}");
    s.agent
        .wait_stderr("the plain client to be logged", DEADLINE, |lines| {
            lines
                .iter()
                .any(|l| l.contains("refused a client at 127.0.0.1") && l.contains("speak TLS"))
        });
}

#[test]
fn a_slow_tls_client_is_cut_off_and_the_connection_limit_holds() {
    let s = start(
        "https-limits",
        r#", "max_connections": 3, "request_timeout": "1s""#,
    );
    metrics_with(&s, "load_1{");

    // After the handshake (verified against the CA), the request head comes a byte every
    // 100 ms and never ends: answered 408 at the 1 s deadline, over TLS.
    let slowloris = format!(
        r#"
import socket, ssl, time
ctx = ssl.create_default_context(cafile="{ca}")
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", {port})), server_hostname="127.0.0.1")
s.sendall(b"GET /metrics HTTP/1.1\r\n")
print("dribbling", flush=True)
start = time.monotonic()
s.settimeout(0.1)
answer = b""
while time.monotonic() - start < 5:
    try:
        s.sendall(b"X")
    except OSError:
        break
    try:
        chunk = s.recv(4096)
        if not chunk:
            break
        answer += chunk
    except socket.timeout:
        pass
    except (OSError, ssl.SSLError):
        break
print(answer.split(b"\r\n")[0].decode(), round(time.monotonic() - start, 2))
"#,
        ca = s.ca.display(),
        port = s.port,
    );
    let mut slow = Command::new("python3")
        .args(["-c", &slowloris])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut said = BufReader::new(slow.stdout.take().unwrap());
    let mut line = String::new();
    said.read_line(&mut line).unwrap();
    assert_eq!(line, "dribbling\n", "the slow client did not connect");
    // A good client is served while the slow one dribbles.
    let started = Instant::now();
    let good = curl(s.port, "/metrics", &s.ca);
    let took = started.elapsed();
    assert!(
        String::from_utf8_lossy(&good.stdout).ends_with("\n200"),
        "{good:?}"
    );
    assert!(
        took < Duration::from_millis(900),
        "the good client waited {took:?}"
    );
    let mut said_rest = String::new();
    said.read_to_string(&mut said_rest).unwrap();
    assert!(slow.wait().unwrap().success());
    let (status, after) = said_rest
        .trim()
        .rsplit_once(' ')
        .expect("the script's line");
    assert_eq!(status, "HTTP/1.1 408 Request Timeout", "{said_rest}");
    let after: f64 = after.parse().unwrap();
    assert!((0.8..3.0).contains(&after), "cut off after {after} s");

    // Three idle connections fill the limit; a fourth client is closed before its handshake.
    let idle: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(("127.0.0.1", s.port)).unwrap())
        .collect();
    let busy = wait_until("the fourth client to be refused", DEADLINE, || {
        let out = curl(s.port, "/metrics", &s.ca);
        (!out.status.success()).then_some(out)
    });
    assert_ne!(busy.status.code(), Some(60), "{busy:?}");
    for c in &idle {
        let _ = c.shutdown(Shutdown::Both);
    }
    drop(idle);
    let body = metrics_with(&s, "outcome=\"refused_timeout\"} 1");
    let busy_count: u64 = body
        .lines()
        .find_map(|l| l.strip_prefix("pipit_http_requests_total{outcome=\"refused_busy\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(busy_count >= 1, "{body}");
}

#[test]
fn a_reload_reads_a_renewed_certificate() {
    let s = start("https-renew", "");
    metrics_with(&s, "load_1{");
    let old_ca = s.dir.path().join("old-ca.pem");
    fs::copy(&s.ca, &old_ca).unwrap();
    // A new CA and certificate in the same files, as a renewal leaves them.
    issue(s.dir.path(), "server", "serverAuth");
    s.agent.signal("HUP");
    metrics_with(&s, "load_1{");
    let refused = curl(s.port, "/metrics", &old_ca);
    assert_eq!(refused.status.code(), Some(60), "{refused:?}");
}
