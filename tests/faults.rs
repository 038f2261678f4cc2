//! No thread dies silently: panics injected (the `fault-injection` feature, `PIPIT_FAULTS`) into
//! the `pipit run` binary at an output's write, the router, the supervisor, signal handling, the
//! control socket and a writer's loop. A panic that can be survived costs nothing, or exactly what
//! the log and counters say; one that cannot makes the agent stop, say why, and exit with status 3
//! so that its init system starts it again.

mod common;

use std::fs;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use common::peers::TempDir;
use common::pipit::{Agent, collected, number_after};

const DEADLINE: Duration = Duration::from_secs(20);

/// A config with one `load` source `l` (every 20 ms) reading the fixture tree, a stdout output
/// writing every batch at once, and the control socket in `dir`.
fn config(dir: &Path) -> String {
    format!(
        r#"{{"agent": {{"hostname": "h", "host_root": "{root}", "state_dir": "{dir}"}},
            "control": {{"socket": "{dir}/pipit.sock"}},
            "sources": [{{"type": "load", "name": "l", "interval": "20ms"}}],
            "outputs": [{{"type": "stdout", "batch_timeout": "0s"}}]}}"#,
        root = common::pipit::fixture("minimal").display(),
        dir = dir.display()
    )
}

/// Starts the agent with `faults` as `PIPIT_FAULTS`, logging each collection of `l`.
fn start(dir: &TempDir, faults: &str) -> Agent {
    let path = dir.path().join("pipit.json");
    fs::write(&path, config(dir.path())).unwrap();
    Agent::start_with(&path, "info,src.l=debug", &[("PIPIT_FAULTS", faults)])
}

fn has(lines: &[String], text: &str) -> bool {
    lines.iter().any(|l| l.contains(text))
}

/// Stops the agent with SIGTERM; its status, stdout and stderr.
fn stop(mut agent: Agent) -> (Option<i32>, Vec<String>, Vec<String>) {
    agent.signal("TERM");
    let code = agent.wait_exit(DEADLINE).code();
    (code, agent.stdout(), agent.stderr())
}

#[test]
fn a_panic_in_an_outputs_write_is_a_failed_attempt_retried_and_nothing_is_lost() {
    let dir = TempDir::new("fault-write");
    let agent = start(&dir, "writer.write@3");
    let stderr = agent.wait_stderr("the panic and later collections", DEADLINE, |l| {
        has(l, "the output panicked: fault injected at writer.write") && collected(l) >= 30
    });
    // The failed batch is retried after the backoff (a stop before that would count it failed).
    let before = collected(&stderr);
    agent.wait_stdout("the retry to deliver the failed batch", DEADLINE, |l| {
        l.len() >= before
    });
    let (code, stdout, stderr) = stop(agent);
    assert_eq!(code, Some(0), "{stderr:#?}");
    assert_eq!(
        stdout.len(),
        collected(&stderr),
        "every collected event is printed once: {stderr:#?}"
    );
    let failures = stderr
        .iter()
        .filter(|l| l.contains("the output panicked"))
        .count();
    assert_eq!(failures, 1, "{stderr:#?}");
}

#[test]
fn a_panic_in_the_router_loses_only_the_batch_in_hand_counted_and_routing_goes_on() {
    let dir = TempDir::new("fault-router");
    let agent = start(&dir, "router@4");
    let stderr = agent.wait_stderr("the router's panic", DEADLINE, |l| {
        has(l, "router: panicked routing a batch")
    });
    let lost = number_after(&stderr, "routing a batch: fault injected at router; its ") as usize;
    assert!(lost > 0, "{stderr:#?}");
    let printed = agent.stdout().len();
    agent.wait_stdout("events routed after the panic", DEADLINE, |l| {
        l.len() >= printed + 20
    });
    let (code, stdout, stderr) = stop(agent);
    assert_eq!(code, Some(0), "{stderr:#?}");
    assert_eq!(
        stdout.len() + lost,
        collected(&stderr),
        "printed + counted as lost = collected: {} + {lost} vs {}; {stderr:#?}",
        stdout.len(),
        collected(&stderr)
    );
}

/// Waits for the agent to exit on its own after a death; its status and stderr.
fn exit_after_death(mut agent: Agent, thread: &str) -> (Option<i32>, Vec<String>, Vec<String>) {
    let code = agent.wait_exit(DEADLINE).code();
    let stderr = agent.stderr();
    assert!(
        has(
            &stderr,
            &format!("ERROR agent: the {thread} thread panicked: fault injected at ")
        ),
        "{stderr:#?}"
    );
    assert!(has(&stderr, "exit with status 3"), "{stderr:#?}");
    (code, agent.stdout(), stderr)
}

#[test]
fn a_dead_supervisor_stops_the_agent_which_delivers_what_it_has_and_exits_3() {
    let dir = TempDir::new("fault-supervisor");
    // The supervisor's loop passes once at start, then only when a child or a request wakes it
    // (none here): the first pass panics.
    let agent = start(&dir, "supervisor@1");
    let (code, stdout, stderr) = exit_after_death(agent, "supervisor");
    assert_eq!(code, Some(3));
    assert_eq!(
        stdout.len(),
        collected(&stderr),
        "the stop delivered everything"
    );
}

#[test]
fn dead_signal_handling_stops_the_agent_with_status_3() {
    let dir = TempDir::new("fault-signals");
    let agent = start(&dir, "signals@1");
    agent.wait_stderr("some collections", DEADLINE, |l| collected(l) >= 5);
    agent.signal("HUP");
    let (code, stdout, stderr) = exit_after_death(agent, "signals");
    assert_eq!(code, Some(3));
    assert_eq!(stdout.len(), collected(&stderr));
}

#[test]
fn a_dead_control_socket_stops_the_agent_with_status_3() {
    let dir = TempDir::new("fault-control");
    let agent = start(&dir, "control@1");
    agent.wait_stderr("the socket", DEADLINE, |l| has(l, "listening on"));
    let _ = UnixStream::connect(dir.path().join("pipit.sock"));
    let (code, stdout, stderr) = exit_after_death(agent, "control");
    assert_eq!(code, Some(3));
    assert_eq!(stdout.len(), collected(&stderr));
}

#[test]
fn a_writer_dead_outside_a_write_stops_the_agent_with_status_3() {
    let dir = TempDir::new("fault-writer");
    let agent = start(&dir, "writer.loop@5");
    let (code, stdout, stderr) = exit_after_death(agent, "out/stdout");
    assert_eq!(code, Some(3));
    assert!(
        has(&stderr, "the writer had ended by a panic"),
        "{stderr:#?}"
    );
    // What it held and what its queue held are counted, each under its name.
    let held = number_after(&stderr, "the writer panicked holding ") as usize;
    let queued = number_after(&stderr, "the writer had ended by a panic: ") as usize;
    assert_eq!(
        stdout.len() + held + queued,
        collected(&stderr),
        "printed + held + queued = collected; {stderr:#?}"
    );
}

#[test]
fn a_dead_inotify_poller_stops_the_agent_with_status_3() {
    let dir = TempDir::new("fault-inotify");
    let watched = dir.path().join("watched");
    fs::create_dir(&watched).unwrap();
    let path = dir.path().join("pipit.json");
    let config = format!(
        r#"{{"agent": {{"hostname": "h", "state_dir": "{dir}"}},
            "control": {{"enabled": false}},
            "sources": [{{"type": "watch", "name": "w", "url": "file://{watched}", "interval": "100ms"}}],
            "outputs": [{{"type": "stdout", "batch_timeout": "0s"}}]}}"#,
        dir = dir.path().display(),
        watched = watched.display()
    );
    fs::write(&path, config).unwrap();
    let agent = Agent::start_with(&path, "info", &[("PIPIT_FAULTS", "inotify@1")]);
    agent.wait_stderr("the agent to run", DEADLINE, |l| has(l, "running 1 source"));
    // The poller wakes, and panics, at the first change the kernel reports.
    fs::write(watched.join("new"), "x").unwrap();
    // The poller thread carries its source's name.
    let (code, _, _) = exit_after_death(agent, "src/w");
    assert_eq!(code, Some(3));
}
