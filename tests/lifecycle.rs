//! `pipit run` under signals: SIGTERM drains the queues, SIGHUP reloads or refuses; and its
//! memory trim, which unmaps the binary's idle pages while it runs.

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::peers::TempDir;
use common::pipit::{Agent, collected, fixture, number_after};
use common::sources::thread_names;

const DEADLINE: Duration = Duration::from_secs(20);

/// A config with one `load` source (prefix `prefix`, every 50 ms) reading the fixture tree, and a
/// stdout output whose batches wait `batch_timeout` (or fill `batch_size`).
fn config(prefix: &str, batch_size: u64, batch_timeout: &str) -> String {
    format!(
        r#"{{"agent": {{"hostname": "h", "host_root": "{}"}},
            "sources": [{{"type": "load", "name": "l", "prefix": "{prefix}", "interval": "50ms"}}],
            "outputs": [{{"type": "stdout", "batch_size": {batch_size}, "batch_timeout": "{batch_timeout}"}}]}}"#,
        fixture("minimal").display()
    )
}

fn write(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
}

#[test]
fn events_queued_at_sigterm_reach_stdout_before_exit() {
    let dir = TempDir::new("sigterm");
    let path = dir.path().join("pipit.json");
    // Batches wait an hour: everything printed is printed by the shutdown drain.
    write(&path, &config("a", 100_000, "1h"));
    let mut agent = Agent::start(&path, "info,src.l=debug");
    agent.wait_stderr("five collections", DEADLINE, |l| collected(l) >= 15);
    assert!(
        agent.stdout().is_empty(),
        "nothing is written before the batch is due"
    );
    agent.signal("TERM");
    let status = agent.wait_exit(DEADLINE);
    assert_eq!(status.code(), Some(0));
    let stdout = agent.stdout();
    let stderr = agent.stderr();
    assert_eq!(
        stdout.len(),
        collected(&stderr),
        "every collected event is printed"
    );
    assert!(
        stdout.iter().all(|l| l.starts_with("h.a.load.")),
        "{stdout:?}"
    );
    assert!(
        stderr
            .iter()
            .any(|l| l.contains("stopped: ") && l.contains("0 undelivered")),
        "{stderr:?}"
    );
}

#[test]
fn sighup_with_a_valid_config_replaces_it_and_an_invalid_one_is_refused() {
    let dir = TempDir::new("sighup");
    let path = dir.path().join("pipit.json");
    write(&path, &config("a", 1, "0s"));
    let mut agent = Agent::start(&path, "info");
    agent.wait_stdout("events from the first config", DEADLINE, |l| {
        l.iter().any(|l| l.starts_with("h.a.load.1 "))
    });

    write(&path, &config("b", 1, "0s"));
    agent.signal("HUP");
    agent.wait_stdout("events from the new config", DEADLINE, |l| {
        l.iter().any(|l| l.starts_with("h.b.load.1 "))
    });
    agent.wait_stderr("the reload log line", DEADLINE, |l| {
        l.iter()
            .any(|l| l.contains("reloaded") && l.contains("1 source(s)"))
    });

    write(
        &path,
        r#"{"sources": [{"type": "load", "interval": "soon"}], "outputs": [{"type": "stdout"}]}"#,
    );
    agent.signal("HUP");
    let stderr = agent.wait_stderr("the refusal", DEADLINE, |l| {
        l.iter().any(|l| l.contains("the running config stays"))
    });
    let refusal = format!(
        "ERROR agent: reload refused: {}:1:43: sources[0].interval: expected a duration",
        path.display()
    );
    assert!(
        stderr.iter().any(|l| l.starts_with(&refusal)),
        "{stderr:#?}"
    );
    // The old config still runs: new "b" events keep coming.
    let seen = agent
        .stdout()
        .iter()
        .filter(|l| l.starts_with("h.b."))
        .count();
    agent.wait_stdout("events after the refusal", DEADLINE, |l| {
        l.iter().filter(|l| l.starts_with("h.b.")).count() > seen + 6
    });

    agent.signal("TERM");
    assert_eq!(agent.wait_exit(DEADLINE).code(), Some(0));
}

#[test]
fn reloads_lose_no_queued_event() {
    let dir = TempDir::new("reload-queue");
    let path = dir.path().join("pipit.json");
    write(&path, &config("a", 100_000, "1h"));
    let mut agent = Agent::start(&path, "info,src.l=debug");
    agent.wait_stderr("collections", DEADLINE, |l| collected(l) >= 15);

    // A changed source: the source restarts, the output (and its queue) is untouched.
    write(&path, &config("b", 100_000, "1h"));
    agent.signal("HUP");
    agent.wait_stderr("the first reload", DEADLINE, |l| {
        l.iter().filter(|l| l.contains("reloaded")).count() == 1
    });
    let before = collected(&agent.stderr());
    agent.wait_stderr("collections", DEADLINE, |l| collected(l) >= before + 15);

    // A changed output: its old writer hands the queue to the new one.
    write(&path, &config("b", 50_000, "1h"));
    agent.signal("HUP");
    agent.wait_stderr("the second reload", DEADLINE, |l| {
        l.iter().filter(|l| l.contains("reloaded")).count() == 2
    });
    let before = collected(&agent.stderr());
    agent.wait_stderr("collections", DEADLINE, |l| collected(l) >= before + 15);

    agent.signal("TERM");
    assert_eq!(agent.wait_exit(DEADLINE).code(), Some(0));
    let stdout = agent.stdout();
    assert_eq!(
        stdout.len(),
        collected(&agent.stderr()),
        "events were lost across reloads"
    );
    assert!(
        stdout.iter().any(|l| l.starts_with("h.a."))
            && stdout.iter().any(|l| l.starts_with("h.b."))
    );
}

#[test]
fn a_second_stop_signal_exits_at_once() {
    // The first stop comes as a signal, or over the control socket; either way a SIGTERM after it
    // is the second one.
    for first in ["signal", "ctl"] {
        let dir = TempDir::new("second-signal");
        // /proc/loadavg as a FIFO with no writer: the load source hangs in open(), so the graceful
        // stop waits the whole shutdown_timeout for it.
        fs::create_dir_all(dir.path().join("proc")).unwrap();
        let fifo = dir.path().join("proc/loadavg");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let path = dir.path().join("pipit.json");
        let config = format!(
            r#"{{"agent": {{"host_root": "{}", "shutdown_timeout": "1h"}},
                "control": {{"socket": "{}"}},
                "sources": [{{"type": "load", "interval": "50ms", "timeout": "1h"}}],
                "outputs": [{{"type": "stdout"}}]}}"#,
            dir.path().display(),
            dir.path().join("run/ctl.sock").display()
        );
        write(&path, &config);
        let mut agent = Agent::start(&path, "info");
        agent.wait_stderr("the start", DEADLINE, |l| {
            l.iter().any(|l| l.contains("running 1 source(s)"))
        });
        if first == "signal" {
            agent.signal("TERM");
        } else {
            let ctl = std::process::Command::new(common::pipit::binary())
                .args(["ctl", "stop", "-c"])
                .arg(&path)
                .output()
                .unwrap();
            assert!(ctl.status.success(), "{ctl:?}");
        }
        agent.wait_stderr("the graceful stop to begin", DEADLINE, |l| {
            l.iter().any(|l| l.contains("stopping"))
        });
        agent.signal("TERM");
        let status = agent.wait_exit(Duration::from_secs(5));
        assert_eq!(status.code(), Some(128 + 15), "first stop by {first}");
        assert!(
            agent
                .stderr()
                .iter()
                .any(|l| l.contains("second stop signal: exiting at once")),
            "first stop by {first}"
        );
    }
}

#[test]
fn idle_program_pages_are_unmapped_after_start_and_the_agent_runs_on() {
    let dir = TempDir::new("trim");
    let path = dir.path().join("pipit.json");
    write(
        &path,
        &config("a", 1, "50ms").replacen(r#""agent": {"#, r#""agent": {"trim_delay": "1s", "#, 1),
    );
    let agent = Agent::start(&path, "info,agent=debug");
    // The first trim comes `agent.trim_delay` after start.
    let stderr = agent.wait_stderr("the first trim", DEADLINE, |lines| {
        lines.iter().any(|l| l.contains("trimmed memory: "))
    });
    let kib = number_after(&stderr, "trimmed memory: ");
    assert!(
        kib > 0,
        "some of the binary's pages were unmapped: {stderr:#?}"
    );
    // Its code comes back as it runs: the source keeps collecting and the output printing.
    let printed = agent.stdout().len();
    agent.wait_stdout("more lines after the trim", DEADLINE, |lines| {
        lines.len() >= printed + 10
    });
}

#[test]
fn sources_that_only_ask_the_kernel_share_one_thread_across_a_reload() {
    let dir = TempDir::new("host-thread");
    let path = dir.path().join("pipit.json");
    let config = |types: &[&str]| {
        let sources: Vec<String> = types
            .iter()
            .map(|t| format!(r#"{{"type": "{t}", "interval": "50ms"}}"#))
            .collect();
        format!(
            r#"{{"agent": {{"hostname": "h", "host_root": "{}", "state_dir": "{}"}},
                "control": {{"enabled": false}},
                "sources": [{}],
                "outputs": [{{"type": "stdout", "batch_timeout": "0s"}}]}}"#,
            fixture("minimal").display(),
            dir.path().display(),
            sources.join(", ")
        )
    };
    let lines = |out: &[String], prefix: &str| out.iter().filter(|l| l.starts_with(prefix)).count();
    write(&path, &config(&["load", "memory", "self"]));
    let mut agent = Agent::start(&path, "info");
    agent.wait_stdout("every source's lines", DEADLINE, |l| {
        ["h.load.", "h.memory.", "h.self."]
            .iter()
            .all(|p| lines(l, p) > 0)
    });
    let names = thread_names(agent.pid());
    assert_eq!(
        names.iter().filter(|n| *n == "host").count(),
        1,
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n.starts_with("src/")), "{names:?}");

    write(&path, &config(&["load"]));
    agent.signal("HUP");
    agent.wait_stderr("the reload", DEADLINE, |l| {
        l.iter()
            .any(|l| l.contains("reloaded") && l.contains("1 source(s)"))
    });
    let before = agent.stdout();
    // Ten more collections of the kept source: ten ticks in which the removed ones must not run.
    agent.wait_stdout("the kept source to go on", DEADLINE, |l| {
        lines(l, "h.load.1 ") >= lines(&before, "h.load.1 ") + 10
    });
    let after = agent.stdout();
    for removed in ["h.memory.", "h.self."] {
        // One collection may have been under way at the reload: its lines, one per name.
        let names: std::collections::BTreeSet<&str> = before
            .iter()
            .filter(|l| l.starts_with(removed))
            .filter_map(|l| l.split(' ').next())
            .collect();
        assert!(
            lines(&after, removed) <= lines(&before, removed) + names.len(),
            "{removed} still collected after its removal"
        );
    }
    let names = thread_names(agent.pid());
    assert_eq!(
        names.iter().filter(|n| *n == "host").count(),
        1,
        "one for the agent's life: {names:?}"
    );
    agent.signal("TERM");
    assert_eq!(agent.wait_exit(DEADLINE).code(), Some(0));
}
