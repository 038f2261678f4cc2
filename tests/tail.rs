//! The `tail` source on real files (appends, rotation, truncation, a file that appears later) and
//! real commands run by a real supervisor (lines, exit and restart, the command and its whole
//! process group stopped with the source).
#![cfg(feature = "watch")]

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use common::peers::{TempDir, wait_until};
use common::sources::{Built, of, value};
use pipit::event::Kind;
use pipit::sources::{Emitter, Source, SourceError};

const DEADLINE: Duration = Duration::from_secs(10);

fn append(path: &Path, text: &str) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn file_source(path: &Path, extra: &str) -> Built {
    Built::new(&format!(
        r#"{{"type": "tail", "name": "app", "path": "{}",
             "patterns": {{"error": "ERROR", "oom": "*Out of memory*"}} {extra}}}"#,
        path.display()
    ))
}

/// (error count, oom count, lines) of one collection.
fn counts(source: &mut Built) -> (f64, f64, f64) {
    let events = source.events();
    (
        value(&events, "tail.app.error.count"),
        value(&events, "tail.app.oom.count"),
        value(&events, "tail.app.lines"),
    )
}

#[test]
fn counts_matching_lines_added_since_the_last_tick() {
    let dir = TempDir::new("tail-append");
    let log = dir.path().join("app.log");
    append(&log, "ERROR before the start is not counted\n");
    let mut source = file_source(&log, "");
    assert_eq!(counts(&mut source), (0.0, 0.0, 0.0));
    append(
        &log,
        "ok\nERROR one\nkernel: Out of memory: killed\nERROR two, half",
    );
    assert_eq!(
        counts(&mut source),
        (1.0, 1.0, 3.0),
        "the unfinished line waits"
    );
    append(&log, " written\n");
    assert_eq!(counts(&mut source), (1.0, 0.0, 1.0));
    assert_eq!(counts(&mut source), (0.0, 0.0, 0.0));
}

#[test]
fn survives_rotation_reading_the_old_file_to_its_end() {
    let dir = TempDir::new("tail-rotate");
    let log = dir.path().join("app.log");
    append(&log, "start\n");
    let mut source = file_source(&log, "");
    counts(&mut source);
    append(&log, "ERROR a\n");
    fs::rename(&log, dir.path().join("app.log.1")).unwrap();
    // The writer has not reopened yet: this still lands in the rotated file.
    append(&dir.path().join("app.log.1"), "ERROR b\n");
    append(&log, "ERROR c\nfine\n");
    assert_eq!(counts(&mut source), (3.0, 0.0, 4.0));
    append(&log, "ERROR d\n");
    assert_eq!(counts(&mut source), (1.0, 0.0, 1.0));
}

#[test]
fn survives_truncation_reading_again_from_the_start() {
    let dir = TempDir::new("tail-truncate");
    let log = dir.path().join("app.log");
    append(&log, "a long first line that makes the file big\n");
    let mut source = file_source(&log, "");
    counts(&mut source);
    // copytruncate: the file is emptied in place, then written again.
    fs::write(&log, "").unwrap();
    append(&log, "ERROR x\n");
    assert_eq!(counts(&mut source), (1.0, 0.0, 1.0));
}

#[test]
fn a_file_that_appears_later_is_read_from_its_start() {
    let dir = TempDir::new("tail-later");
    let log = dir.path().join("later.log");
    let mut source = file_source(&log, "");
    assert_eq!(counts(&mut source), (0.0, 0.0, 0.0));
    append(&log, "ERROR first\nsecond\n");
    assert_eq!(counts(&mut source), (1.0, 0.0, 2.0));
    fs::remove_file(&log).unwrap();
    assert_eq!(counts(&mut source), (0.0, 0.0, 0.0));
    append(&log, "ERROR again\n");
    assert_eq!(counts(&mut source), (1.0, 0.0, 1.0));
}

#[test]
fn from_start_reads_what_is_already_there() {
    let dir = TempDir::new("tail-start");
    let log = dir.path().join("app.log");
    append(&log, "ERROR old\n");
    let mut source = file_source(&log, r#", "from_start": true"#);
    assert_eq!(counts(&mut source), (1.0, 0.0, 1.0));
}

#[test]
fn forwards_matching_lines_up_to_the_limit() {
    let dir = TempDir::new("tail-forward");
    let log = dir.path().join("app.log");
    append(&log, "");
    let mut source = file_source(&log, r#", "forward": true, "max_forward": 2"#);
    source.events();
    append(&log, "ERROR 1\nnothing\nERROR 2: Out of memory\nERROR 3\n");
    let events = source.events();
    let lines = of(&events, "tail.app.line");
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0].kind, Kind::Log);
    assert_eq!(lines[0].description.as_deref(), Some("ERROR 1"));
    assert_eq!(lines[1].attributes["match"], "error,oom");
    assert_eq!(value(&events, "tail.app.dropped"), 1.0);
    assert_eq!(value(&events, "tail.app.error.count"), 3.0);
}

/// A `tail` of `sh -c SCRIPT` named `name`, counting lines with `ERROR` and forwarding every line.
fn command_source(name: &str, script: &str) -> Built {
    Built::new(&format!(
        r#"{{"type": "tail", "name": "{name}", "command": ["sh", "-c", "{script}"],
             "patterns": {{"error": "ERROR", "any": "*"}}, "forward": true}}"#
    ))
}

#[test]
fn reads_a_commands_output() {
    let mut source = command_source(
        "ring",
        "printf 'ERROR a\\\\nfine\\\\nERROR b\\\\n'; exec sleep 60",
    );
    let (mut errors, mut lines, mut unread) = (0.0, 0.0, 0.0);
    let mut text = Vec::new();
    wait_until("three lines from the command", DEADLINE, || {
        let events = source.events();
        errors += value(&events, "tail.ring.error.count");
        lines += value(&events, "tail.ring.lines");
        unread += value(&events, "tail.ring.unread");
        text.extend(
            of(&events, "tail.ring.line")
                .iter()
                .filter_map(|e| e.description.clone()),
        );
        (lines >= 3.0).then_some(())
    });
    assert_eq!((errors, lines, unread), (2.0, 3.0, 0.0));
    assert_eq!(text, ["ERROR a", "fine", "ERROR b"]);
}

/// The forwarded lines of one collection.
fn lines_of(source: &mut Built, name: &str) -> Vec<String> {
    of(&source.events(), &format!("tail.{name}.line"))
        .iter()
        .filter_map(|e| e.description.clone())
        .collect()
}

/// True when process `pid` is gone, or a zombie (killed, waiting to be reaped).
fn ended(pid: u32) -> bool {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .split_once(") ")
        .and_then(|(_, rest)| rest.chars().next());
    matches!(state, None | Some('Z'))
}

/// A source in place of the one dropped, so the test keeps its supervisor.
struct Idle;

impl Source for Idle {
    fn collect(&mut self, _: &mut Emitter<'_>) -> Result<(), SourceError> {
        Ok(())
    }
}

#[test]
fn dropping_the_source_stops_the_command_and_its_whole_process_group() {
    // The shell starts a background grandchild and prints its own pid and the grandchild's.
    let mut source = command_source("group", "sleep 60 & echo $$ $!; wait");
    let pids: Vec<u32> = wait_until("the pids", DEADLINE, || {
        let line = lines_of(&mut source, "group").pop()?;
        Some(line.split(' ').filter_map(|p| p.parse().ok()).collect())
    });
    assert_eq!(pids.len(), 2, "{pids:?}");
    assert!(pids.iter().all(|&pid| !ended(pid)), "both running");
    // Only the source goes: the supervisor that ran the command stays.
    drop(std::mem::replace(&mut source.source, Box::new(Idle)));
    wait_until(
        "the shell and its background child to end",
        DEADLINE,
        || pids.iter().all(|&pid| ended(pid)).then_some(()),
    );
}

#[test]
fn a_command_that_exits_is_reported_and_started_again() {
    let mut source = command_source("once", "echo ERROR once");
    let mut errors = 0.0;
    let mut reported = None;
    // The supervisor starts it again after 1 s, then 2 s.
    wait_until("the command to run twice", DEADLINE, || {
        let (events, outcome) = source.collect();
        errors += value(&events, "tail.once.error.count");
        if let Err(e) = outcome {
            reported = Some(e.to_string());
        }
        (errors >= 2.0).then_some(())
    });
    let reported = reported.expect("the exit was reported");
    assert!(
        reported.contains("`sh -c echo ERROR once` exited with exit code 0 after ")
            && reported.contains("; restarting in "),
        "{reported}"
    );
}

#[test]
fn a_command_that_cannot_start_is_an_error() {
    let mut source = Built::new(r#"{"type": "tail", "command": ["/nonexistent/logread", "-f"]}"#);
    let e = wait_until("the failed start", DEADLINE, || {
        source.collect().1.err().map(|e| e.to_string())
    });
    assert!(
        e.contains("cannot run /nonexistent/logread") && e.contains("trying again in 1s"),
        "{e}"
    );
}

#[test]
fn tail_config_is_checked() {
    let text = r#"{"sources": [{"type": "tail", "path": "rel.log", "patterns": {"a.b": "x"}},
                               {"type": "tail", "name": "t2"},
                               {"type": "tail", "name": "t3", "path": "/a", "command": ["b"]},
                               {"type": "tail", "name": "t4", "command": "logread -f"},
                               {"type": "tail", "name": "t5", "path": "/a", "user": "root"}],
                  "outputs": [{"type": "stdout"}]}"#;
    let e = pipit::config_file::parse("t.json", text)
        .unwrap_err()
        .to_string();
    for part in [
        "an absolute path",
        "label \"a.b\" must be non-empty, without dots or spaces",
        "missing required key \"path\"",
        "not both",
        "(a single string needs",
        "user: unknown key",
    ] {
        assert!(e.contains(part), "{part}: {e}");
    }
    // The command keys are exec's.
    let text = r#"{"sources": [{"type": "tail", "command": "logread -f", "shell": true, "user": "root",
                                "env": {"A": "1"}, "kill_grace": "1s", "max_output": 4096}],
                  "outputs": [{"type": "stdout"}]}"#;
    if let Err(e) = pipit::config_file::parse("t.json", text) {
        panic!("{e}");
    }
}

/// Children of process `parent` whose command name is `comm`.
fn children(parent: u32, comm: &str) -> Vec<u32> {
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // pid (comm) state ppid ...
            let Some((name, rest)) = stat.split_once(") ") else {
                return false;
            };
            name.ends_with(&format!("({comm}"))
                && rest.split_whitespace().nth(1) == Some(&parent.to_string())
        })
        .collect()
}

#[test]
fn the_agent_stops_the_command_on_reload_and_on_exit() {
    let dir = TempDir::new("tail-agent");
    let config = dir.path().join("pipit.json");
    let with_tail = |n: u32| {
        format!(
            r#"{{"sources": [{{"type": "tail", "name": "ring{n}", "interval": "100ms",
                 "command": ["sh", "-c", "exec sleep 300"]}}],
               "outputs": [{{"type": "stdout", "format": "json"}}]}}"#
        )
    };
    fs::write(&config, with_tail(1)).unwrap();
    let mut agent = common::pipit::Agent::start(&config, "info");
    let first = wait_until("the first command", DEADLINE, || {
        match children(agent.pid(), "sleep").as_slice() {
            [pid] => Some(*pid),
            _ => None,
        }
    });
    fs::write(&config, with_tail(2)).unwrap();
    agent.signal("HUP");
    let second = wait_until(
        "the command of the new config",
        DEADLINE,
        || match children(agent.pid(), "sleep").as_slice() {
            [pid] if *pid != first => Some(*pid),
            _ => None,
        },
    );
    wait_until("the old one to be reaped", DEADLINE, || {
        (!Path::new(&format!("/proc/{first}")).exists()).then_some(())
    });
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success());
    assert!(
        !Path::new(&format!("/proc/{second}")).exists(),
        "stopped with the agent"
    );
}

/// Matching lines past `max_forward` are counted and logged once, in a running agent.
#[test]
fn lines_not_forwarded_are_counted_and_logged_once() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let dir = TempDir::new("tail-told");
    let log = dir.path().join("app.log");
    append(&log, "");
    let config = dir.path().join("pipit.json");
    fs::write(
        &config,
        format!(
            r#"{{"agent": {{"interval": "300ms"}},
  "sources": [{{"type": "tail", "name": "app", "path": "{}", "forward": true, "max_forward": 1,
                "patterns": {{"error": "ERROR"}}}}],
  "outputs": [{{"type": "stdout", "format": "json"}}]}}"#,
            log.display()
        ),
    )
    .unwrap();
    let stderr = dir.path().join("pipit.err");
    let mut pipit = Command::new(env!("CARGO_BIN_EXE_pipit"))
        .args(["run", "-c", &config.display().to_string()])
        .stdout(Stdio::piped())
        .stderr(fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(pipit.stdout.take().unwrap()).lines();
    // The first tick opens the file at its end; lines come after it.
    let first = lines.next().expect("pipit ended early").unwrap();
    assert!(first.contains("tail.app"), "{first}");
    append(&log, "ERROR 1\nERROR 2\nERROR 3\n");
    let mut dropped = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    for line in lines.by_ref() {
        assert!(
            std::time::Instant::now() < deadline,
            "{dropped} counted dropped, not 2"
        );
        let event: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        if event["service"] == "tail.app.dropped" {
            dropped += event["metric"].as_u64().unwrap();
            if dropped == 2 {
                break;
            }
        }
    }
    assert_eq!(dropped, 2, "two of three matching lines over max_forward 1");
    let told = || {
        fs::read_to_string(&stderr)
            .unwrap()
            .lines()
            .filter(|l| l.contains("2 matching line(s) not forwarded (over max_forward 1"))
            .count()
    };
    wait_until("the log line", Duration::from_secs(5), || {
        (told() == 1).then_some(())
    });
    let _ = Command::new("kill")
        .args(["-TERM", &pipit.id().to_string()])
        .status();
    for _ in lines {}
    assert!(pipit.wait().unwrap().success());
    assert_eq!(told(), 1, "{}", fs::read_to_string(&stderr).unwrap());
}
