//! The `tail` source on real files (appends, rotation, truncation, a file that appears later) and
//! real commands (lines, exit and restart, killed when the source stops).

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::peers::{TempDir, wait_until};
use common::sources::{Built, of, threads_named, value};
use pipit::event::Kind;
use pipit::pollers::command::LineCommand;

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

/// A `tail` of `sh -c SCRIPT` named `name` (its reader thread is `src/<name>`: tests running at
/// the same time need their own names).
fn command_source(name: &str, script: &str) -> Built {
    Built::new(&format!(
        r#"{{"type": "tail", "name": "{name}", "command": ["sh", "-c", "{script}"],
             "patterns": {{"error": "ERROR"}}}}"#
    ))
}

#[test]
fn reads_a_commands_output_and_stops_its_thread_with_the_source() {
    let mut source = command_source(
        "ring",
        "printf 'ERROR a\\\\nfine\\\\nERROR b\\\\n'; exec sleep 60",
    );
    let mut errors = 0.0;
    let mut lines = 0.0;
    wait_until("three lines from the command", DEADLINE, || {
        let events = source.events();
        errors += value(&events, "tail.ring.error.count");
        lines += value(&events, "tail.ring.lines");
        (lines >= 3.0).then_some(())
    });
    assert_eq!((errors, lines), (2.0, 3.0));
    assert_eq!(threads_named(std::process::id(), "src/ring"), 1);
    drop(source);
    assert_eq!(threads_named(std::process::id(), "src/ring"), 0);
}

#[test]
fn a_command_that_exits_is_reported_and_started_again() {
    let mut source = command_source("once", "echo ERROR once");
    let mut errors = 0.0;
    let mut exits = 0;
    wait_until("the command to run twice", DEADLINE, || {
        let (events, outcome) = source.collect();
        errors += value(&events, "tail.once.error.count");
        if let Err(e) = outcome {
            assert!(
                e.to_string().contains("`sh -c echo ERROR once` exited"),
                "{e}"
            );
            exits += 1;
        }
        (exits >= 2 && errors >= 2.0).then_some(())
    });
}

#[test]
fn a_command_that_cannot_start_is_an_error() {
    let mut source = Built::new(r#"{"type": "tail", "command": ["/nonexistent/logread", "-f"]}"#);
    let (_, outcome) = source.collect();
    let e = outcome.unwrap_err().to_string();
    assert!(e.contains("cannot start `/nonexistent/logread -f`"), "{e}");
}

#[test]
fn dropping_a_command_kills_and_reaps_it() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let argv: Vec<String> = ["sh", "-c", "echo ready; exec sleep 60"]
        .map(String::from)
        .into();
    let cmd = LineCommand::spawn(&argv, "test/cmd", move |l| {
        sink.lock().unwrap().push(l.to_owned())
    })
    .unwrap();
    let pid = cmd.pid();
    wait_until("the first line", DEADLINE, || {
        (seen.lock().unwrap().as_slice() == ["ready"]).then_some(())
    });
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    drop(cmd);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "killed and reaped"
    );
}

#[test]
fn dropping_a_command_kills_its_whole_process_group() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    // The shell starts a background grandchild and prints its pid.
    let argv: Vec<String> = ["sh", "-c", "sleep 60 & echo $!; wait"]
        .map(String::from)
        .into();
    let cmd = LineCommand::spawn(&argv, "test/group", move |l| {
        sink.lock().unwrap().push(l.to_owned())
    })
    .unwrap();
    let grandchild: u32 = wait_until("the grandchild's pid", DEADLINE, || {
        seen.lock().unwrap().first()?.parse().ok()
    });
    drop(cmd);
    // Killed: gone, or a zombie waiting for whoever adopted it.
    wait_until("the grandchild to be killed", DEADLINE, || {
        let stat = fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap_or_default();
        let state = stat
            .split_once(") ")
            .and_then(|(_, rest)| rest.chars().next());
        matches!(state, None | Some('Z')).then_some(())
    });
}

#[test]
fn tail_config_is_checked() {
    let text = r#"{"sources": [{"type": "tail", "path": "rel.log", "patterns": {"a.b": "x"}},
                               {"type": "tail", "name": "t2"},
                               {"type": "tail", "name": "t3", "path": "/a", "command": ["b"]}],
                  "outputs": [{"type": "stdout"}]}"#;
    let e = pipit::config::parse("t.json", text)
        .unwrap_err()
        .to_string();
    for part in [
        "an absolute path",
        "label \"a.b\" must be non-empty, without dots or spaces",
        "missing required key \"path\"",
        "not both",
    ] {
        assert!(e.contains(part), "{part}: {e}");
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
    assert!(
        !Path::new(&format!("/proc/{first}")).exists(),
        "the old one is reaped"
    );
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success());
    assert!(
        !Path::new(&format!("/proc/{second}")).exists(),
        "stopped with the agent"
    );
}
