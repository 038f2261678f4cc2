//! No secret reaches a log line, a status answer or a config error: a real `pipit run` whose
//! tokens, header values, URL passwords and command environment meet every error path — a refused
//! connection, a name that does not resolve, 401 and 500 answers from a server (run here, on
//! loopback) that echoes the request's headers back, bad config values next to the secrets in
//! `pipit check`, and a refused reload through SIGHUP and through `pipit ctl reload`.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::peers::{TempDir, free_port, wait_until};
use common::pipit::{Agent, binary, text};

const DEADLINE: Duration = Duration::from_secs(30);

/// Every secret the configs hold; none may show anywhere.
const SECRETS: [&str; 12] = [
    "Tok401-q8Zr",
    "Tok500-m3Kv",
    "TokRefused-7Hn",
    "TokDns-2Wx",
    "HeaderSecret-5Jd",
    "UrlPass-9Lp",
    "WatchPass-4Qs",
    "EnvSecret-6Tb",
    "UserPair-1Aa",
    "PairPass-3Cc",
    "ReloadPass-8Ee",
    "ReloadTok-0Ff",
];

/// An HTTP server on loopback that answers every request with `status` and a body echoing the
/// request's credentials, line and headers, as some servers and proxies do; it keeps what it
/// received.
struct EchoServer {
    port: u16,
    received: Arc<Mutex<Vec<String>>>,
}

impl EchoServer {
    fn start(status: &'static str) -> EchoServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let log = log.clone();
                thread::spawn(move || answer(stream, status, &log));
            }
        });
        EchoServer { port, received }
    }

    fn received(&self) -> String {
        self.received.lock().unwrap().join("")
    }
}

fn answer(stream: TcpStream, status: &str, log: &Mutex<Vec<String>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let mut body = vec![0u8; length];
    let _ = reader.read_exact(&mut body);
    log.lock().unwrap().push(head.clone());
    // The credentials first, as a proxy that names the ones it refused does, then the rest.
    let credentials: Vec<&str> = head
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("authorization:"))
        .collect();
    let echo = format!(
        "{{\"error\":\"refused {}; request was: {}\"}}",
        credentials.join(", "),
        head.replace("\r\n", " | ")
    );
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{echo}",
        echo.len()
    );
    let _ = reader.get_mut().write_all(reply.as_bytes());
}

/// The config of the running agent: every secret next to a path that fails.
fn config(dir: &Path, e401: u16, e500: u16, refused: u16) -> String {
    format!(
        r#"{{"agent": {{"hostname": "h"}},
  "control": {{"socket": "{socket}"}},
  "sources": [
    {{"type": "http", "name": "api", "interval": "100ms", "url": "http://api:UrlPass-9Lp@127.0.0.1:{e500}/x",
      "headers": {{"Authorization": "Bearer HeaderSecret-5Jd"}}}},
    {{"type": "watch", "name": "feed", "interval": "100ms", "url": "http://w:WatchPass-4Qs@127.0.0.1:{refused}/feed"}},
    {{"type": "exec", "name": "job", "interval": "100ms", "shell": true, "command": "echo failing >&2; exit 2",
      "env": {{"API_KEY": "EnvSecret-6Tb"}}}},
    {{"type": "load", "interval": "100ms"}}],
  "outputs": [
    {{"type": "influxdb", "name": "i401", "url": "http://127.0.0.1:{e401}", "db": "d", "token": "Tok401-q8Zr",
      "batch_timeout": "50ms", "retry_delay": "50ms", "retry_max_delay": "200ms"}},
    {{"type": "influxdb", "name": "i500", "url": "http://127.0.0.1:{e500}", "db": "d", "token": "UserPair-1Aa:PairPass-3Cc",
      "batch_timeout": "50ms", "retry_delay": "50ms", "retry_max_delay": "200ms"}},
    {{"type": "influxdb", "name": "i500b", "url": "http://127.0.0.1:{e500}", "version": 2, "org": "o", "bucket": "b",
      "token": "Tok500-m3Kv", "batch_timeout": "50ms", "retry_delay": "50ms", "retry_max_delay": "200ms"}},
    {{"type": "influxdb", "name": "refused", "url": "http://127.0.0.1:{refused}", "db": "d", "token": "TokRefused-7Hn",
      "batch_timeout": "50ms", "retry_delay": "50ms", "retry_max_delay": "200ms"}},
    {{"type": "influxdb", "name": "dns", "url": "http://no-such-host.invalid:8086", "db": "d", "token": "TokDns-2Wx",
      "connect_timeout": "1s", "batch_timeout": "50ms", "retry_delay": "50ms", "retry_max_delay": "200ms"}},
    {{"type": "stdout", "batch_timeout": "50ms"}}]}}"#,
        socket = dir.join("pipit.sock").display(),
    )
}

/// A config with bad values next to secrets, each bad in a way that quotes what is there.
fn broken_config(dir: &Path) -> String {
    format!(
        r#"{{"control": {{"socket": "{socket}"}},
  "sources": [
    {{"type": "http", "url": "http://127.0.0.1:1/", "headers": {{"Authorization": "Bearer ReloadTok-0Ff\r\n"}}}},
    {{"type": "watch", "url": "ftp://w:WatchPass-4Qs@127.0.0.1/feed"}},
    {{"type": "exec", "command": "true", "env": {{"API_KEY": ["EnvSecret-6Tb"]}}}},
    {{"type": "http", "name": "h2", "url": "http://127.0.0.1:1/", "headers": {{"X-Key": 12345678}}}}],
  "outputs": [
    {{"type": "influxdb", "url": "htp://user:ReloadPass-8Ee@127.0.0.1:8086", "db": "d", "token": "Tok401-q8Zr\r\nX: y"}},
    {{"type": "influxdb", "url": "http://user:UrlPass-9Lp@127.0.0.1:8086", "db": "d", "token": 12345678}},
    {{"type": "influxdb", "url": "http://127.0.0.1:8086", "db": "d", "token": "TokDns-2Wx\u0000"}}]}}"#,
        socket = dir.join("pipit.sock").display(),
    )
}

fn ctl(config: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(binary())
        .arg("ctl")
        .arg("-c")
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!("{}{}", text(&out.stdout), text(&out.stderr)),
    )
}

/// Panics naming each secret found in `what`.
fn assert_no_secret(where_: &str, what: &str) {
    let found: Vec<&str> = SECRETS
        .iter()
        .copied()
        .filter(|s| what.contains(s))
        .collect();
    assert!(found.is_empty(), "{found:?} in {where_}:\n{what}");
}

#[test]
fn no_secret_reaches_a_log_line_a_status_answer_or_a_config_error() {
    let dir = TempDir::new("secrets");
    let (e401, e500) = (
        EchoServer::start("401 Unauthorized"),
        EchoServer::start("500 Internal Server Error"),
    );
    let refused = free_port();
    let path = dir.path().join("pipit.json");
    fs::write(&path, config(dir.path(), e401.port, e500.port, refused)).unwrap();
    let (code, checked) = {
        let out = Command::new(binary())
            .args(["check", "-c"])
            .arg(&path)
            .output()
            .unwrap();
        (
            out.status.code(),
            format!("{}{}", text(&out.stdout), text(&out.stderr)),
        )
    };
    assert_eq!(code, Some(0), "{checked}");
    assert_no_secret("pipit check of the good config", &checked);

    let mut agent = Agent::start(&path, "trace");
    wait_until("the control socket", DEADLINE, || {
        UnixStream::connect(dir.path().join("pipit.sock")).ok()
    });
    // Every error path has been met: each output holds its error, and the servers saw the secrets
    // they echo back.
    let status = wait_until("every output to have failed", DEADLINE, || {
        let (code, status) = ctl(&path, &["status", "--json"]);
        let errors: Vec<String> = ["i401", "i500", "i500b", "refused", "dns"]
            .iter()
            .filter_map(|name| {
                let v: serde_json::Value = serde_json::from_str(&status).ok()?;
                let o = v["result"]["outputs"]
                    .as_array()?
                    .iter()
                    .find(|o| o["name"] == *name)?
                    .clone();
                let e = o["last_error"].as_str()?.to_owned();
                (!e.is_empty()).then_some(e)
            })
            .collect();
        (code == 0 && errors.len() == 5).then_some((status, errors))
    });
    let (status_json, errors) = status;
    assert!(
        errors[0].contains("HTTP 401") && errors[0].contains("Token ***"),
        "{errors:?}"
    );
    assert!(
        errors[1].contains("HTTP 500") && errors[1].contains("Token ***"),
        "{errors:?}"
    );
    assert!(errors[2].contains("HTTP 500"), "{errors:?}");
    assert!(errors[3].to_lowercase().contains("refused"), "{errors:?}");
    assert!(!errors[4].is_empty(), "{errors:?}");
    assert!(e401.received().contains("Token Tok401-q8Zr"));
    assert!(e500.received().contains("Token Tok500-m3Kv"));
    assert!(e500.received().contains("Bearer HeaderSecret-5Jd"));
    assert_no_secret("pipit ctl status --json", &status_json);
    let (_, table) = ctl(&path, &["status"]);
    assert_no_secret("pipit ctl status", &table);
    agent.wait_stdout("the failing checks' events", DEADLINE, |lines| {
        lines.iter().any(|l| l.contains("http.api")) && lines.iter().any(|l| l.contains("job"))
    });

    // A broken config: in `pipit check`, in `pipit ctl reload`'s answer and in the log of a
    // reload refused on SIGHUP, each error names its key path and shows no secret.
    let broken = dir.path().join("broken.json");
    fs::write(&broken, broken_config(dir.path())).unwrap();
    let out = Command::new(binary())
        .args(["check", "-c"])
        .arg(&broken)
        .output()
        .unwrap();
    let checked = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_ne!(out.status.code(), Some(0), "{checked}");
    for expected in [
        "outputs[0].url: expected an http:// or https:// URL",
        "outputs[0].token: expected printable ASCII",
        "outputs[1].url: expected a base URL with no user",
        "outputs[1].token: expected a string, got a number (hidden)",
        "outputs[2].token: expected printable ASCII",
        "sources[1].url: expected an absolute path, file:// URL or http(s):// URL, got a URL with credentials (hidden)",
        "sources[2].env.API_KEY: expected a string, got an array",
        "sources[3].headers.X-Key: expected a string, got a number (hidden)",
        "sources[0].headers: \"Authorization\" is not a valid HTTP header",
    ] {
        assert!(checked.contains(expected), "{expected:?} in:\n{checked}");
    }
    assert_no_secret("pipit check of a broken config", &checked);

    fs::copy(&broken, &path).unwrap();
    let (code, reloaded) = ctl(&path, &["reload"]);
    assert_ne!(code, 0, "{reloaded}");
    assert!(reloaded.contains("outputs[0].token"), "{reloaded}");
    assert_no_secret("pipit ctl reload", &reloaded);
    agent.signal("HUP");
    agent.wait_stderr("the reload refused on SIGHUP", DEADLINE, |lines| {
        lines
            .iter()
            .filter(|l| l.contains("the running config stays"))
            .count()
            >= 2
    });
    agent.signal("TERM");
    agent.wait_exit(DEADLINE);
    let log = agent.stderr().join("\n");
    assert!(log.contains("HTTP 401"), "the errors were logged:\n{log}");
    assert_no_secret("the log", &log);
    assert_no_secret("the events", &agent.stdout().join("\n"));
}
