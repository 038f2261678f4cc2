//! A real `pipit run` against hostile peers written here: a Riemann server that answers with a
//! 4 GiB length prefix, an HTTP endpoint that streams without end, a check that prints without end,
//! a control-socket client that sends a line without end, a check naming a path too long for
//! carbon. Each is cut off at its documented limit
//! with one log line, the other sources keep delivering, and the agent's resident memory stays
//! under [`RSS_LIMIT_KIB`] throughout.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::{Duration, Instant};

use common::peers::{TempDir, wait_until};
use common::pipit::{Agent, fixture};

/// The most resident memory the agent may use while a hostile peer works on it.
const RSS_LIMIT_KIB: u64 = 32 * 1024;
const DEADLINE: Duration = Duration::from_secs(30);
/// How long the agent is watched after the cut-off: long enough for the peer to try again.
const AFTER: Duration = Duration::from_secs(3);

/// The agent's resident memory, from `/proc/<pid>/status`; `None` once it has exited.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    pipit::procfs::field_value(&status, "VmRSS")
}

/// Starts `pipit run` with a `load` source every 50 ms and a stdout output besides `sources` and
/// `outputs` (JSON members, each with a leading comma) and the `control` section.
fn start(dir: &TempDir, sources: &str, outputs: &str, control: &str) -> Agent {
    let config = dir.path().join("pipit.json");
    let text = format!(
        r#"{{"agent": {{"hostname": "h", "host_root": "{root}", "state_dir": "{state}"}},
  "control": {control},
  "sources": [{{"type": "load", "interval": "50ms"}}{sources}],
  "outputs": [{{"type": "stdout", "batch_timeout": "50ms"}}{outputs}]}}"#,
        root = fixture("minimal").display(),
        state = dir.path().join("state").display(),
    );
    fs::write(&config, text).unwrap();
    Agent::start(&config, "info")
}

/// Watches the agent until a log line contains `cut_off`, then for [`AFTER`] more: its memory
/// stays under the limit all along, it keeps running and delivering the `load` source's events,
/// and the cut-off is logged exactly once.
fn assert_cut_off_and_bounded(agent: &Agent, cut_off: &str) {
    let pid = agent.pid();
    let mut peak = 0;
    let mut sample = || {
        let rss = rss_kib(pid).expect("the agent is running");
        peak = peak.max(rss);
        assert!(
            rss < RSS_LIMIT_KIB,
            "VmRSS {rss} KiB is over {RSS_LIMIT_KIB} KiB"
        );
    };
    let logged = |agent: &Agent| {
        agent
            .stderr()
            .iter()
            .filter(|l| l.contains(cut_off))
            .count()
    };
    wait_until(&format!("a log line with {cut_off:?}"), DEADLINE, || {
        sample();
        // Paces the memory samples taken while waiting.
        thread::sleep(Duration::from_millis(10));
        (logged(agent) > 0).then_some(())
    });
    let delivered = agent.stdout().len();
    let end = Instant::now() + AFTER;
    // A window in which nothing more may be logged: it has no condition to end it, only a length.
    while Instant::now() < end {
        sample();
        thread::sleep(Duration::from_millis(10));
    }
    let stderr = agent.stderr();
    assert_eq!(logged(agent), 1, "one cut-off line: {stderr:#?}");
    let more = agent.stdout().len() - delivered;
    assert!(
        more > 0,
        "the load source kept delivering after the cut-off: {stderr:#?}"
    );
    let line = stderr.iter().find(|l| l.contains(cut_off)).unwrap();
    eprintln!("{line}\npeak VmRSS {peak} KiB; {more} lines delivered after the cut-off");
}

/// Accepts connections on 127.0.0.1 and hands each to `serve` on its own thread.
fn server(serve: fn(TcpStream)) -> u16 {
    let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            thread::spawn(move || serve(conn));
        }
    });
    port
}

#[test]
fn a_riemann_answer_announcing_4_gib_is_refused_unread() {
    // Reads each message and answers it with a length prefix of 2^32 - 1 bytes, then more junk.
    let port = server(|mut conn| {
        let mut head = [0u8; 4];
        while conn.read_exact(&mut head).is_ok() {
            let mut message = vec![0u8; u32::from_be_bytes(head) as usize];
            if conn.read_exact(&mut message).is_err()
                || conn.write_all(&[0xff; 4]).is_err()
                || conn.write_all(&[0x55; 64 * 1024]).is_err()
            {
                return;
            }
        }
    });
    let dir = TempDir::new("hostile-riemann");
    let outputs = format!(
        r#", {{"type": "riemann", "name": "liar", "host": "127.0.0.1", "port": {port},
             "batch_timeout": "50ms"}}"#
    );
    let agent = start(&dir, "", &outputs, "{}");
    assert_cut_off_and_bounded(
        &agent,
        "an answer of 4294967295 bytes announced, over the limit of 1048576",
    );
}

#[cfg(feature = "http")]
#[test]
fn an_http_body_without_end_is_cut_off_at_its_limit() {
    // Answers every request with a body that never ends (no length, never closed).
    let port = server(|mut conn| {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if conn.read(&mut byte).unwrap_or(0) == 0 {
                return;
            }
            head.push(byte[0]);
        }
        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n");
        let chunk = vec![b'x'; 64 * 1024];
        while conn.write_all(&chunk).is_ok() {}
    });
    let dir = TempDir::new("hostile-http");
    let sources = format!(
        r#", {{"type": "http", "name": "endless", "url": "http://127.0.0.1:{port}/",
             "interval": "1s", "request_timeout": "60s"}}"#
    );
    let agent = start(&dir, &sources, "", "{}");
    assert_cut_off_and_bounded(
        &agent,
        "the response body is over 16777216 bytes: cut off there",
    );
}

#[test]
fn a_check_printing_without_end_is_cut_off_at_max_output() {
    let dir = TempDir::new("hostile-exec");
    let sources = r#", {"type": "exec", "name": "endless", "command": ["yes"], "format": "value",
             "timeout": "1s", "kill_grace": "100ms", "interval": "1s"}"#;
    let agent = start(&dir, sources, "", "{}");
    assert_cut_off_and_bounded(
        &agent,
        "output over max_output (65536 bytes): the rest was discarded",
    );
}

#[test]
fn a_control_request_without_end_is_refused_at_64_kib() {
    let dir = TempDir::new("hostile-control");
    let socket = dir.path().join("pipit.sock");
    let control = format!(r#"{{"socket": "{}"}}"#, socket.display());
    let agent = start(&dir, "", "", &control);
    let mut conn = wait_until("the control socket", DEADLINE, || {
        UnixStream::connect(&socket).ok()
    });
    conn.set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // A line without end: written until the agent stops reading (16 MiB at most).
    let chunk = vec![b'x'; 64 * 1024];
    let mut sent = 0;
    while sent < 16 << 20 && conn.write_all(&chunk).is_ok() {
        sent += chunk.len();
    }
    assert!(sent < 16 << 20, "the agent read 16 MiB of one request");
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer);
    assert!(answer.contains(r#""code":"too_large""#), "{answer:?}");
    assert_cut_off_and_bounded(&agent, "a request may have at most 65536 bytes");
}

#[test]
fn a_path_too_long_for_carbon_is_logged_under_the_output_name() {
    let dir = TempDir::new("hostile-path");
    let port = server(|mut conn| {
        let _ = std::io::copy(&mut conn, &mut std::io::sink());
    });
    let agent = start(
        &dir,
        r#", {"type": "exec", "name": "long", "format": "graphite", "interval": "50ms",
             "command": ["python3", "-c", "print('x' * 20000 + ' 1')"]}"#,
        &format!(
            r#", {{"type": "graphite", "name": "carbon", "host": "127.0.0.1", "port": {port}}}"#
        ),
        r#"{"enabled": false}"#,
    );
    assert_cut_off_and_bounded(&agent, "longer than");
    let stderr = agent.stderr();
    let line = stderr.iter().find(|l| l.contains("longer than")).unwrap();
    assert!(
        line.contains("out.carbon"),
        "logged under the output's name: {line}"
    );
    assert!(
        line.len() < 300,
        "the 20,000-byte path is quoted short: {} bytes",
        line.len()
    );
}
