//! The URL poller and the `http` and `tcp` probes against real servers on 127.0.0.1: a small
//! HTTP/1.1 server written here (slow responses, 304s, redirects, 404 then 200 again) and plain
//! TCP listeners.
#![cfg(all(feature = "http", feature = "watch"))]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::peers::free_port;
use common::sources::{self, Built};
use pipit::config_file;
use pipit::event::Event;
use pipit::http_client::HttpTimeouts;
use pipit::pollers::snapshot::ChangeKind;
use pipit::pollers::url::UrlPoller;

/// What the test server serves; tests change it between requests.
#[derive(Debug, Default)]
struct Site {
    /// The version of the `/etag`, `/lm` and `/plain` resources.
    version: u32,
    /// Whether `/toggle` exists.
    present: bool,
    /// Status codes sent, in order.
    sent: Vec<u16>,
    /// Request heads received, in order.
    heads: Vec<String>,
}

/// A small HTTP/1.1 server on 127.0.0.1, one thread per connection, stopped on drop.
struct Server {
    port: u16,
    site: Arc<Mutex<Site>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind");
        let port = listener.local_addr().unwrap().port();
        let site = Arc::new(Mutex::new(Site::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (site.clone(), stop.clone());
        let thread = thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let site = s.clone();
                thread::spawn(move || serve(conn, &site));
            }
        });
        Server {
            port,
            site,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn site(&self) -> std::sync::MutexGuard<'_, Site> {
        self.site.lock().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(conn: TcpStream, site: &Mutex<Site>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let header = |name: &str| -> Option<String> {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    };
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    let _ = reader.read_exact(&mut body);
    let mut parts = head.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let path = parts.next().unwrap_or("").to_owned();
    let (version, present) = {
        let mut s = site.lock().unwrap();
        s.heads.push(head.clone());
        (s.version, s.present)
    };
    let etag = format!("\"v{version}\"");
    let last_modified = format!("Mon, 0{} Jan 2024 00:00:00 GMT", version % 9 + 1);
    let (status, extra, text): (u16, String, String) = match path.as_str() {
        "/ok" => (200, String::new(), "hello world".into()),
        "/slow" => {
            thread::sleep(Duration::from_secs(2));
            (200, String::new(), "late".into())
        }
        "/etag" if header("if-none-match").as_deref() == Some(etag.as_str()) => {
            (304, format!("ETag: {etag}\r\n"), String::new())
        }
        "/etag" => (
            200,
            format!("ETag: {etag}\r\n"),
            format!("version {version}"),
        ),
        "/lm" if header("if-modified-since").as_deref() == Some(last_modified.as_str()) => {
            (304, String::new(), String::new())
        }
        "/lm" => (
            200,
            format!("Last-Modified: {last_modified}\r\n"),
            format!("version {version}"),
        ),
        "/plain" => (200, String::new(), format!("version {version}")),
        "/redirect" => (302, "Location: /ok\r\n".into(), String::new()),
        "/toggle" if present => (200, String::new(), "here".into()),
        "/toggle" => (404, String::new(), "not here".into()),
        "/gone" => (410, String::new(), String::new()),
        "/broken" => (503, String::new(), "down".into()),
        "/echo" => {
            let mut t = format!("{method}\n{head}\n");
            t.push_str(&String::from_utf8_lossy(&body));
            (200, String::new(), t)
        }
        _ => (404, String::new(), String::new()),
    };
    site.lock().unwrap().sent.push(status);
    let reply = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{text}",
        text.len()
    );
    let mut conn = conn;
    let _ = conn.write_all(reply.as_bytes());
    let _ = conn.shutdown(Shutdown::Write);
}

fn timeouts(total_ms: u64) -> HttpTimeouts {
    HttpTimeouts {
        connect: Duration::from_secs(2),
        total: Duration::from_millis(total_ms),
    }
}

fn kind(change: Result<Option<pipit::pollers::url::UrlChange>, String>) -> Option<ChangeKind> {
    change.expect("the poll succeeds").map(|c| c.kind)
}

#[test]
fn url_poller_uses_etags_and_costs_a_304_when_unchanged() {
    let server = Server::start();
    let mut p = UrlPoller::new(&server.url("/etag"), timeouts(2000));
    let first = p.poll().unwrap().expect("first seen");
    assert_eq!(first.kind, ChangeKind::Created);
    assert_eq!(first.size, Some(9));
    assert_eq!(kind(p.poll()), None);
    assert_eq!(server.site().sent, vec![200, 304]);
    assert!(
        server.site().heads[1].contains("if-none-match: \"v0\""),
        "{:?}",
        server.site().heads
    );
    server.site().version = 1;
    assert_eq!(kind(p.poll()), Some(ChangeKind::Modified));
    assert_eq!(kind(p.poll()), None);
}

#[test]
fn url_poller_uses_last_modified_when_there_is_no_etag() {
    let server = Server::start();
    let mut p = UrlPoller::new(&server.url("/lm"), timeouts(2000));
    assert_eq!(kind(p.poll()), Some(ChangeKind::Created));
    assert_eq!(kind(p.poll()), None);
    assert_eq!(server.site().sent, vec![200, 304]);
    server.site().version = 3;
    let c = p.poll().unwrap().unwrap();
    assert_eq!(c.kind, ChangeKind::Modified);
    assert_eq!(
        c.last_modified.as_deref(),
        Some("Mon, 04 Jan 2024 00:00:00 GMT")
    );
}

#[test]
fn url_poller_hashes_the_body_when_there_are_no_validators() {
    let server = Server::start();
    let mut p = UrlPoller::new(&server.url("/plain"), timeouts(2000));
    assert_eq!(kind(p.poll()), Some(ChangeKind::Created));
    assert_eq!(kind(p.poll()), None, "same body, same hash");
    server.site().version = 7;
    assert_eq!(kind(p.poll()), Some(ChangeKind::Modified));
}

#[test]
fn url_poller_sees_404_then_200_again() {
    let server = Server::start();
    let mut p = UrlPoller::new(&server.url("/toggle"), timeouts(2000));
    assert_eq!(kind(p.poll()), None, "never seen: nothing was deleted");
    server.site().present = true;
    assert_eq!(kind(p.poll()), Some(ChangeKind::Created));
    server.site().present = false;
    assert_eq!(kind(p.poll()), Some(ChangeKind::Deleted));
    assert_eq!(kind(p.poll()), None);
    server.site().present = true;
    assert_eq!(kind(p.poll()), Some(ChangeKind::Created));
    let mut gone = UrlPoller::new(&server.url("/gone"), timeouts(2000));
    assert_eq!(kind(gone.poll()), None);
}

#[test]
fn url_poller_follows_redirects() {
    let server = Server::start();
    let mut p = UrlPoller::new(&server.url("/redirect"), timeouts(2000));
    let c = p.poll().unwrap().unwrap();
    assert_eq!(
        (c.kind, c.status, c.size),
        (ChangeKind::Created, 200, Some(11))
    );
    assert_eq!(server.site().sent, vec![302, 200]);
}

#[test]
fn url_poller_reports_timeouts_and_bad_statuses_as_errors() {
    let server = Server::start();
    let started = Instant::now();
    let e = UrlPoller::new(&server.url("/slow"), timeouts(300))
        .poll()
        .unwrap_err();
    assert!(e.starts_with("timed out after 300ms"), "{e}");
    assert!(started.elapsed() < Duration::from_millis(1500));
    let e = UrlPoller::new(&server.url("/broken"), timeouts(2000))
        .poll()
        .unwrap_err();
    assert_eq!(e, "unexpected status 503");
}

/// Runs one collection of the single source in `source_json`.
fn collect(source_json: &str) -> Vec<Event> {
    Built::new(source_json).events()
}

fn find<'a>(events: &'a [Event], service: &str) -> &'a Event {
    sources::of(events, service)
        .first()
        .copied()
        .unwrap_or_else(|| panic!("no {service} in {events:?}"))
}

fn state(e: &Event) -> &str {
    e.state.as_ref().map(|s| s.as_str()).unwrap_or("")
}

fn description(e: &Event) -> &str {
    e.description.as_deref().unwrap_or("")
}

#[test]
fn http_probe_reports_latency_status_size_and_ok() {
    let server = Server::start();
    let events = collect(&format!(
        r#"{{"type": "http", "name": "web", "url": "{}", "body_pattern": "hello"}}"#,
        server.url("/ok")
    ));
    let latency = find(&events, "http.web.latency");
    assert_eq!(state(latency), "ok", "{latency:?}");
    let seconds = latency.metric.unwrap().as_f64();
    assert!(seconds > 0.0 && seconds < 2.0, "{seconds}");
    assert!(
        find(&events, "http.web.first_byte")
            .metric
            .unwrap()
            .as_f64()
            <= seconds
    );
    assert_eq!(
        find(&events, "http.web.status").metric.unwrap().as_f64(),
        200.0
    );
    assert_eq!(
        find(&events, "http.web.size").metric.unwrap().as_f64(),
        11.0
    );
    assert!(events.iter().all(|e| state(e) == "ok"));
}

#[test]
fn http_probe_is_critical_with_the_reason() {
    let server = Server::start();
    let cases = [
        (
            format!(
                r#""url": "{}", "body_pattern": "goodbye""#,
                server.url("/ok")
            ),
            "body does not match \"goodbye\"",
        ),
        (
            format!(r#""url": "{}""#, server.url("/broken")),
            "status 503, expected 2xx",
        ),
        (
            format!(
                r#""url": "{}", "follow_redirects": false"#,
                server.url("/redirect")
            ),
            "status 302, expected 2xx",
        ),
        (
            format!(
                r#""url": "{}", "status": [200, 204]"#,
                server.url("/nothing")
            ),
            "status 404, expected 200, 204",
        ),
        (
            format!(r#""url": "http://127.0.0.1:{}/""#, free_port()),
            "connection refused",
        ),
    ];
    for (keys, reason) in cases {
        let events = collect(&format!(r#"{{"type": "http", "name": "c", {keys}}}"#));
        let latency = find(&events, "http.c.latency");
        assert_eq!(state(latency), "critical", "{keys}");
        assert!(
            description(latency).contains(reason),
            "{keys}: {}",
            description(latency)
        );
    }
    let events = collect(&format!(
        r#"{{"type": "http", "name": "c", "url": "{}", "status": [503]}}"#,
        server.url("/broken")
    ));
    assert_eq!(state(find(&events, "http.c.status")), "ok");
}

#[test]
fn http_probe_times_out_on_a_slow_response() {
    let server = Server::start();
    let started = Instant::now();
    let events = collect(&format!(
        r#"{{"type": "http", "name": "slow", "url": "{}", "request_timeout": "300ms"}}"#,
        server.url("/slow")
    ));
    assert!(started.elapsed() < Duration::from_millis(1500));
    let latency = find(&events, "http.slow.latency");
    assert_eq!(state(latency), "critical");
    assert!(
        description(latency).contains("timed out after 300ms"),
        "{latency:?}"
    );
    assert!(latency.metric.unwrap().as_f64() >= 0.3);
    assert!(!events.iter().any(|e| e.service == "http.slow.status"));
}

#[test]
fn http_probe_sends_method_headers_and_body() {
    let server = Server::start();
    let events = collect(&format!(
        r#"{{"type": "http", "name": "api", "url": "{}", "method": "POST",
             "headers": {{"X-Test": "yes"}}, "body": "payload=1",
             "body_pattern": "POST*x-test: yes*payload=1"}}"#,
        server.url("/echo")
    ));
    let latency = find(&events, "http.api.latency");
    assert_eq!(
        state(latency),
        "ok",
        "{latency:?} {:?}",
        server.site().heads
    );
}

#[test]
fn http_probe_config_is_checked() {
    let text = r#"{"sources": [{"type": "http", "url": "ftp://x", "method": "G ET",
                   "status": [99], "headers": {"bad name": "v"}}],
                  "outputs": [{"type": "stdout"}]}"#;
    let e = config_file::parse("p.json", text).unwrap_err().to_string();
    for part in [
        "an http:// or https:// URL",
        "an HTTP method",
        "status codes from 100 to 599",
        "valid HTTP header",
    ] {
        assert!(e.contains(part), "{part}: {e}");
    }
}

#[cfg(not(feature = "tls"))]
#[test]
fn https_needs_the_tls_feature() {
    for kind in ["http", "watch"] {
        let text = format!(
            r#"{{"sources": [{{"type": "{kind}", "url": "https://example.org/"}}], "outputs": [{{"type": "stdout"}}]}}"#
        );
        let e = config_file::parse("p.json", &text).unwrap_err().to_string();
        assert!(e.contains("built without TLS"), "{kind}: {e}");
    }
}

#[test]
fn tcp_probe_reports_ok_and_refused() {
    let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let events = collect(&format!(
        r#"{{"type": "tcp", "name": "ssh", "address": "127.0.0.1:{port}"}}"#
    ));
    let e = find(&events, "tcp.ssh.latency");
    assert_eq!(state(e), "ok", "{e:?}");
    assert!(e.metric.unwrap().as_f64() < 1.0);
    drop(listener);
    let events = collect(&format!(
        r#"{{"type": "tcp", "name": "ssh", "address": "127.0.0.1:{port}"}}"#
    ));
    let e = find(&events, "tcp.ssh.latency");
    assert_eq!(state(e), "critical");
    assert_eq!(
        description(e),
        format!("127.0.0.1:{port}: connection refused")
    );
}

#[test]
fn tcp_probe_needs_a_port() {
    let text = r#"{"sources": [{"type": "tcp", "address": "localhost"}], "outputs": [{"type": "stdout"}]}"#;
    let e = config_file::parse("p.json", text).unwrap_err().to_string();
    assert!(e.contains("host:port"), "{e}");
}

#[test]
fn the_watch_source_polls_urls() {
    let server = Server::start();
    let events = collect(&format!(
        r#"{{"type": "watch", "name": "page", "url": "{}"}}"#,
        server.url("/etag")
    ));
    let e = find(&events, "watch.page");
    assert_eq!(e.attributes["change"], "created");
    assert_eq!(e.attributes["path"], server.url("/etag"));
    assert_eq!(e.attributes["status"], "200");
    assert_eq!(
        find(&events, "watch.page.changes").metric.unwrap().as_f64(),
        1.0
    );
    let text = r#"{"sources": [{"type": "watch", "url": "http://h/", "recursive": true}], "outputs": [{"type": "stdout"}]}"#;
    let e = config_file::parse("p.json", text).unwrap_err().to_string();
    assert!(e.contains("file watches only"), "{e}");
}
