//! The control socket of a real `pipit run`: every call and filter through `pipit ctl`, the
//! protocol's error forms, peers that are refused, and clients that misbehave.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::peers::{TempDir, wait_until};
use common::pipit::{Agent, binary, fixture, text};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(20);

/// A test agent: its directory, config file and socket path.
struct Setup {
    dir: TempDir,
    config: PathBuf,
    socket: PathBuf,
}

/// Writes a config whose sources read the fixture tree every 50 ms, with `control` extra keys
/// (JSON members, may be empty) and the socket at `<dir>/run/pipit.sock`.
fn setup(tag: &str, control: &str) -> Setup {
    let dir = TempDir::new(tag);
    let socket = dir.path().join("run/pipit.sock");
    let config = dir.path().join("pipit.json");
    let s = Setup {
        dir,
        config,
        socket,
    };
    s.write(&s.config_text(control, r#"{"type": "load", "interval": "50ms"}"#));
    s
}

impl Setup {
    fn config_text(&self, control: &str, extra_source: &str) -> String {
        format!(
            r#"{{"agent": {{"hostname": "h", "host_root": "{root}"}},
  "control": {{"socket": "{socket}", "request_timeout": "1s"{control}}},
  "sources": [{extra_source},
    {{"type": "memory", "interval": "50ms", "prefix": "edge", "tags": ["lab"]}},
    {{"type": "self", "interval": "50ms"}}],
  "outputs": [{{"type": "stdout", "batch_timeout": "1h", "batch_size": 100000}}]}}"#,
            root = fixture("minimal").display(),
            socket = self.socket.display(),
        )
    }

    fn write(&self, text: &str) {
        fs::write(&self.config, text).unwrap();
    }

    fn start(&self) -> Agent {
        let agent = Agent::start(&self.config, "info");
        wait_until("the control socket", DEADLINE, || {
            UnixStream::connect(&self.socket).ok()
        });
        agent
    }

    /// `pipit ctl -c CONFIG ARGS`: exit code, stdout, stderr.
    fn ctl(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(binary())
            .arg("ctl")
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            text(&out.stdout),
            text(&out.stderr),
        )
    }

    /// The `result` of `pipit ctl ARGS --json`, which must succeed and print the answer line.
    fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        let (code, stdout, stderr) = self.ctl(&args);
        assert_eq!(code, 0, "pipit ctl {args:?}: {stderr}");
        assert_eq!(stdout.lines().count(), 1, "{stdout}");
        let answer: Value = serde_json::from_str(&stdout).unwrap();
        answer["result"].clone()
    }

    /// The names `pipit ctl metrics ARGS --no-metadata` lists.
    fn names(&self, args: &[&str]) -> Vec<String> {
        let mut args = [&["metrics", "--no-metadata"], args].concat();
        args.push("--json");
        let result = self.json(&args);
        result["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap().to_owned())
            .collect()
    }

    fn wait_for_metrics(&self) {
        wait_until("the catalogue to fill", DEADLINE, || {
            let names = self.names(&["--hidden"]);
            (names.contains(&"load.1".to_owned())
                && names.contains(&"edge.memory.total".to_owned())
                && names.iter().any(|n| n.starts_with("self.source.")))
            .then_some(())
        });
    }

    /// A raw connection to the socket.
    fn connect(&self) -> UnixStream {
        let s = UnixStream::connect(&self.socket).unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        s
    }
}

/// Sends `request` (a line) on a fresh connection and returns the answer line as JSON. A refused
/// connection (busy) may be closed before the request is written: its answer is read all the same.
fn ask(socket: &Path, request: &str) -> Value {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let _ = s.write_all(request.as_bytes());
    read_answer(&mut s)
}

fn read_answer(s: &mut UnixStream) -> Value {
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
}

fn error_code(answer: &Value) -> &str {
    answer["error"]["code"].as_str().unwrap_or("")
}

#[test]
fn metrics_are_listed_with_their_metadata_and_every_filter_applies() {
    let s = setup("ctl-metrics", "");
    let _agent = s.start();
    s.wait_for_metrics();

    let all = s.json(&["metrics"]);
    let metrics = all["metrics"].as_array().unwrap();
    assert!(
        metrics
            .iter()
            .all(|m| !m["name"].as_str().unwrap().starts_with("self.")),
        "self.* metrics are hidden by default: {all}"
    );
    let load = metrics.iter().find(|m| m["name"] == "load.1").unwrap();
    assert_eq!(load["source"], "load");
    assert_eq!(load["type"], "load");
    assert_eq!(load["unit"], "");
    assert_eq!(
        load["description"],
        "run-queue length averaged over 1 minute"
    );
    assert_eq!(load["interval"], 0.05);
    assert_eq!(load["ttl"], 0.1);
    assert_eq!(load["value"], 0.42);
    assert!(load["time"].as_f64().unwrap() > 1.6e9);
    let total = metrics
        .iter()
        .find(|m| m["name"] == "edge.memory.total")
        .unwrap();
    assert_eq!(total["unit"], "bytes");
    assert_eq!(total["tags"], serde_json::json!(["lab"]));
    assert_eq!(total["value"], 129191936);

    assert_eq!(
        s.names(&["--selector", r"^load\.\d$"]),
        vec!["load.1", "load.5"]
    );
    assert_eq!(
        s.names(&[
            "--name",
            "load.15",
            "--name",
            "edge.memory.free",
            "--name",
            "nope"
        ]),
        vec!["edge.memory.free", "load.15"]
    );
    assert_eq!(
        s.names(&["--prefix", "edge.", "--infix", "percent"]),
        vec!["edge.memory.percent_used"]
    );
    let limited = s.json(&["metrics", "--limit", "2"]);
    assert_eq!(limited["metrics"].as_array().unwrap().len(), 2);
    assert_eq!(limited["metrics"][0]["name"], "edge.memory.available");
    assert_eq!(limited["matched"], 10);
    let hidden = s.names(&["--hidden", "--prefix", "self.source.load."]);
    assert_eq!(
        hidden,
        vec![
            "self.source.load.dropped",
            "self.source.load.duration",
            "self.source.load.errors",
            "self.source.load.restarts",
            "self.source.load.skipped_ticks"
        ]
    );

    let (code, table, _) = s.ctl(&["metrics", "--selector", "^load"]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("NAME     VALUE  UNIT  AGE  SOURCE  DESCRIPTION"),
        "{table}"
    );
    assert!(
        lines[1].starts_with("load.1   0.42")
            && lines[1].ends_with("run-queue length averaged over 1 minute"),
        "{table}"
    );
    let (code, table, _) = s.ctl(&["metrics", "--limit", "1", "--no-metadata"]);
    assert_eq!(code, 0);
    assert_eq!(
        table,
        "edge.memory.available\n(1 of 10 matching metrics shown)\n"
    );

    let (code, _, stderr) = s.ctl(&["metrics", "--selector", "(unclosed"]);
    assert_eq!(code, 3);
    assert!(
        stderr.starts_with("pipit: bad_regex: selector: "),
        "{stderr}"
    );
    let (code, _, stderr) = s.ctl(&["metrics", "--selector", "a", "--name", "b"]);
    assert_eq!(code, 2, "{stderr}");
}

#[test]
fn status_reports_the_config_sources_and_outputs() {
    let s = setup("ctl-status", "");
    let agent = s.start();
    s.wait_for_metrics();
    let status = s.json(&["status"]);
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(status["pid"], agent.pid());
    assert!(status["uptime"].as_f64().unwrap() > 0.0);
    assert_eq!(status["config"]["file"], s.config.display().to_string());
    assert!(status["metrics"].as_u64().unwrap() >= 10);
    let sources = status["sources"].as_array().unwrap();
    let names: Vec<&str> = sources
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["load", "memory", "self"]);
    for source in sources {
        assert!(source["runs"].as_u64().unwrap() >= 1, "{source}");
        assert!(source["last_run"].as_f64().unwrap() > 1.6e9, "{source}");
        assert_eq!(source["errors"], 0, "{source}");
        assert_eq!(source["interval"], 0.05);
    }
    let output = &status["outputs"][0];
    assert_eq!(output["name"], "stdout");
    assert_eq!(output["type"], "stdout");
    // Batches wait an hour: nothing is delivered yet.
    assert!(output["events_in"].as_u64().unwrap() > 0, "{output}");
    assert_eq!(output["events_out"], 0, "{output}");
    assert_eq!(
        output["targets"],
        serde_json::json!([{"name": "graphite lines to standard output", "breaker": "closed"}]),
        "{output}"
    );
    assert_eq!(output["spool_depth"], 0, "{output}");

    let (code, table, _) = s.ctl(&["status"]);
    assert_eq!(code, 0);
    assert!(
        table.starts_with(&format!(
            "pipit {} (pid {}), up ",
            env!("CARGO_PKG_VERSION"),
            agent.pid()
        )),
        "{table}"
    );
    assert!(
        table.contains("\nSOURCE  TYPE    INTERVAL  RUNS"),
        "{table}"
    );
    assert!(table.contains("\nOUTPUT  TYPE    IN"), "{table}");
}

#[test]
fn reload_returns_the_errors_of_a_broken_config_and_applies_a_good_one() {
    let s = setup("ctl-reload", "");
    let mut agent = s.start();
    s.wait_for_metrics();
    let loaded = s.json(&["status"])["config"]["loaded"].as_f64().unwrap();

    let good = s.config_text("", r#"{"type": "load", "interval": "50ms"}"#);
    s.write(&good.replacen("\"interval\"", "\"intervl\"", 1));
    let (code, _, stderr) = s.ctl(&["reload"]);
    assert_eq!(code, 1, "{stderr}");
    let file = s.config.display().to_string();
    assert!(
        stderr.starts_with(
            "pipit: reload_failed: the new config was refused; the running one stays:\n"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{file}:3:43: sources[0].intervl: unknown key")),
        "{stderr}"
    );
    // The agent runs on with its old config.
    let status = s.json(&["status"]);
    assert_eq!(status["config"]["loaded"].as_f64().unwrap(), loaded);
    assert_eq!(status["sources"].as_array().unwrap().len(), 3);
    let raw = ask(&s.socket, "{\"call\":\"reload\"}\n");
    assert_eq!(error_code(&raw), "reload_failed");

    s.write(&s.config_text(
        "",
        r#"{"type": "load", "name": "l2", "prefix": "new", "interval": "50ms"}"#,
    ));
    let (code, stdout, stderr) = s.ctl(&["reload"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout,
        format!("reloaded {file}: 3 source(s), 1 output(s)\n")
    );
    let status = s.json(&["status"]);
    assert!(status["config"]["loaded"].as_f64().unwrap() > loaded);
    assert_eq!(status["sources"][0]["name"], "l2");
    wait_until("the new source's metrics", DEADLINE, || {
        s.names(&["--prefix", "new."])
            .contains(&"new.load.1".to_owned())
            .then_some(())
    });
    // The removed source's metrics left the catalogue with it.
    assert!(s.names(&["--selector", "^load\\."]).is_empty());
    agent.signal("TERM");
    assert_eq!(agent.wait_exit(DEADLINE).code(), Some(0));
}

#[test]
fn stop_stops_the_agent_gracefully_and_removes_the_socket() {
    let s = setup("ctl-stop", "");
    let mut agent = s.start();
    s.wait_for_metrics();
    let (code, stdout, stderr) = s.ctl(&["stop"]);
    assert_eq!((code, stdout.as_str()), (0, "stopping\n"), "{stderr}");
    assert_eq!(agent.wait_exit(DEADLINE).code(), Some(0));
    assert!(
        agent
            .stderr()
            .iter()
            .any(|l| l.contains("stop requested over the control socket: stopping")),
        "{:?}",
        agent.stderr()
    );
    // Everything queued (batches wait an hour) was written at the stop.
    assert!(
        agent
            .stdout()
            .iter()
            .any(|l| l.starts_with("h.load.1 0.42 "))
    );
    assert!(!s.socket.exists());
    let (code, _, stderr) = s.ctl(&["status"]);
    assert_eq!(code, 4);
    assert_eq!(
        stderr,
        format!(
            "pipit: pipit is not running (no socket at {})\n",
            s.socket.display()
        )
    );
}

#[test]
fn a_stale_socket_is_replaced_and_a_live_one_is_left_alone() {
    let s = setup("ctl-stale", "");
    let mut first = s.start();
    first.signal("KILL");
    first.wait_exit(DEADLINE);
    assert!(s.socket.exists(), "a killed agent leaves its socket behind");
    let (code, _, stderr) = s.ctl(&["status"]);
    assert_eq!(code, 4);
    assert!(
        stderr.contains("pipit is not running (nothing answers on "),
        "{stderr}"
    );

    let second = s.start();
    assert_eq!(s.json(&["status"])["pid"], second.pid());
    // A third agent on the same socket runs without one, and says why.
    let third = Agent::start(&s.config, "info");
    third.wait_stderr("the refusal", DEADLINE, |l| {
        l.iter().any(|l| {
            l.contains("no control socket: another agent answers on ")
                && l.contains("stop it or set control.socket")
        })
    });
    assert_eq!(s.json(&["status"])["pid"], second.pid());
    drop(third);
    assert_eq!(s.json(&["status"])["pid"], second.pid());
}

#[test]
fn misbehaving_clients_do_not_affect_the_agent_or_other_clients() {
    let s = setup("ctl-abuse", "");
    let mut agent = s.start();
    s.wait_for_metrics();

    // A malformed request is answered, and the connection stays usable.
    let mut conn = s.connect();
    conn.write_all(b"{\"call\": \n").unwrap();
    assert_eq!(error_code(&read_answer(&mut conn)), "invalid_json");
    conn.write_all(b"{\"call\": \"dance\"}\n").unwrap();
    let answer = read_answer(&mut conn);
    assert_eq!(error_code(&answer), "invalid_request");
    assert!(
        answer["error"]["message"].as_str().unwrap().ends_with(
            "call: expected one of \"get_metrics\", \"status\", \"reload\", \"stop\", got \"dance\""
        ),
        "{answer}"
    );
    conn.write_all(b"{\"call\": \"get_metrics\", \"selector\": [\"load.1\"]}\n")
        .unwrap();
    assert_eq!(read_answer(&mut conn)["result"]["matched"], 1);

    // A slow client (connects, sends nothing) and an oversized request (1 MiB, no newline)
    // while a normal client is served.
    let started = Instant::now();
    let mut slow = s.connect();
    let mut big = s.connect();
    let writer = {
        let mut big = big.try_clone().unwrap();
        thread::spawn(move || {
            let _ = big.write_all(&vec![b'x'; 1 << 20]);
        })
    };
    assert_eq!(error_code(&read_answer(&mut big)), "too_large");
    writer.join().unwrap();
    let answered = ask(&s.socket, "{\"call\": \"status\"}\n");
    assert!(answered["result"]["uptime"].as_f64().unwrap() > 0.0);
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "the normal client waited for the slow one"
    );
    let answer = read_answer(&mut slow);
    assert_eq!(error_code(&answer), "timeout");
    assert_eq!(answer["error"]["message"], "no complete request within 1s");
    let mut rest = Vec::new();
    slow.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "the slow client's connection was closed");

    // At most four connections are served at once; the fifth is told to come back.
    let idle: Vec<UnixStream> = (0..4).map(|_| s.connect()).collect();
    let refused = wait_until("the fifth connection to be refused", DEADLINE, || {
        let answer = ask(&s.socket, "{\"call\": \"status\"}\n");
        (error_code(&answer) == "busy").then_some(answer)
    });
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("4 connections")
    );
    drop(idle);
    wait_until("a free connection", DEADLINE, || {
        ask(&s.socket, "{\"call\": \"status\"}\n")
            .get("result")
            .map(|_| ())
    });

    // The agent kept collecting throughout, and stops cleanly.
    let runs = s.json(&["status"])["sources"][0]["runs"].as_u64().unwrap();
    assert!(runs >= 20, "only {runs} collections");
    agent.signal("TERM");
    assert_eq!(agent.wait_exit(DEADLINE).code(), Some(0));
}

#[test]
fn a_uid_not_allowed_is_refused_by_the_agent() {
    // Root is not in the list: the socket lets root connect, the peer check refuses it.
    let s = setup("ctl-peer", r#", "allowed_uids": [4242]"#);
    let _agent = s.start();
    let (code, _, stderr) = s.ctl(&["status"]);
    assert_eq!(code, 4, "{stderr}");
    let me = String::from_utf8(Command::new("id").arg("-u").output().unwrap().stdout).unwrap();
    assert_eq!(
        stderr,
        format!(
            "pipit: permission denied on {}: uid {} is not in control.allowed_uids \
             (run as root or as a uid in control.allowed_uids)\n",
            s.socket.display(),
            me.trim()
        )
    );
}

/// Runs `pipit ctl --socket SOCKET status` as the user nobody, when the test runs as root and
/// `setpriv` (util-linux) exists; `None` otherwise.
fn ctl_as_nobody(socket: &Path) -> Option<(i32, String)> {
    let me = Command::new("id").arg("-u").output().ok()?;
    if text(&me.stdout).trim() != "0" {
        eprintln!("not root: skipping the second-uid check");
        return None;
    }
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            binary(),
            "ctl",
        ])
        .arg("--socket")
        .arg(socket)
        .arg("status")
        .output();
    match out {
        Ok(out) => Some((out.status.code().unwrap_or(-1), text(&out.stderr))),
        Err(e) => {
            eprintln!("no setpriv ({e}): skipping the second-uid check");
            None
        }
    }
}

#[test]
fn a_second_uid_is_refused_by_the_socket_and_by_the_agent() {
    let dir = TempDir::new("ctl-uid");
    // The directory must be traversable for the socket's own permissions to be what refuses.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let s = Setup {
        socket: dir.path().join("pipit.sock"),
        config: dir.path().join("pipit.json"),
        dir,
    };
    s.write(&s.config_text("", r#"{"type": "load", "interval": "50ms"}"#));
    let _agent = s.start();
    assert_eq!(
        fs::metadata(&s.socket).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let Some((code, stderr)) = ctl_as_nobody(&s.socket) else {
        return;
    };
    assert_eq!(code, 4, "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "pipit: permission denied on {} (run as root or as a uid in control.allowed_uids)\n",
            s.socket.display()
        )
    );
    // With the file opened up, the peer check still refuses the uid.
    fs::set_permissions(&s.socket, fs::Permissions::from_mode(0o666)).unwrap();
    let (code, stderr) = ctl_as_nobody(&s.socket).unwrap();
    assert_eq!(code, 4, "{stderr}");
    assert!(
        stderr.contains("uid 65534 is not in control.allowed_uids"),
        "{stderr}"
    );
    assert!(s.dir.path().exists());
}

#[test]
fn a_disabled_socket_is_not_created() {
    let s = setup("ctl-off", r#", "enabled": false"#);
    let mut agent = Agent::start(&s.config, "info");
    agent.wait_stderr("the agent to run", DEADLINE, |l| {
        l.iter().any(|l| l.contains("running 3 source(s)"))
    });
    agent.signal("TERM");
    assert_eq!(agent.wait_exit(DEADLINE).code(), Some(0));
    let stderr = agent.stderr();
    assert!(!stderr.iter().any(|l| l.contains("control")), "{stderr:?}");
    assert!(!s.socket.parent().unwrap().exists());
}
