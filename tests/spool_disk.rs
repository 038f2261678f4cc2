//! The spool when its disk misbehaves, with the pipit binary and a real carbon-cache: a file
//! system that fills up (a tmpfs of 256 KiB mounted by the test), a spool directory removed while
//! in use, a read-only state directory. Every datapoint has its own timestamp, so whisper tells
//! exactly which arrived; each test checks that what was sent is what carbon stored plus what
//! pipit counted as dropped, by reason, and the log line that says why. Runs as root (mounts).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::disk::{Tmpfs, counter, stop, two_waves};
use common::peers::{CarbonCache, TempDir, wait_until};
use common::pipit::Agent;

/// The config: the generator, pipit's own counters printed every 200 ms, and a graphite output
/// to carbon, quick to retry and probe, with a spool (in `spool`, or the default one under the
/// state directory).
fn config(dir: &TempDir, state: &Path, spool: Option<&Path>, source: &str, port: u16) -> PathBuf {
    let spool = match spool {
        Some(p) => format!(r#"{{"dir": "{}"}}"#, p.display()),
        None => "{}".to_owned(),
    };
    let text = format!(
        r#"{{"agent": {{"hostname": "h", "state_dir": "{}", "shutdown_timeout": "5s"}},
            "control": {{"enabled": false}},
            "sources": [{source}, {{"type": "self", "interval": "200ms"}}],
            "outputs": [
              {{"type": "graphite", "host": "127.0.0.1", "port": {port}, "include": ["test.*"],
                "queue_size": 200000, "batch_timeout": "100ms", "retries": 0,
                "breaker_failures": 1, "breaker_reset": "300ms", "connect_timeout": "500ms",
                "spool": {spool}}},
              {{"type": "stdout", "format": "graphite", "include": ["self.output.graphite.*"]}}]}}"#,
        state.display()
    );
    let path = dir.path().join("pipit.json");
    fs::write(&path, text).unwrap();
    path
}

/// Waits until `ok` holds for the counters.
fn wait_counters(agent: &Agent, what: &str, ok: impl Fn(&dyn Fn(&str) -> u64) -> bool) {
    wait_until(what, Duration::from_secs(60), || {
        ok(&|name| counter(agent, name)).then_some(())
    });
}

/// The counters that must stay 0 when every drop is of the expected reason.
fn assert_no_other_drops(agent: &Agent, except: &[&str]) {
    for name in [
        "failed",
        "dropped",
        "dropped_spool_full",
        "dropped_spool_no_space",
        "dropped_spool_lost",
        "dropped_spool_unavailable",
        "dropped_shutdown",
    ] {
        if !except.contains(&name) {
            assert_eq!(counter(agent, name), 0, "{name}");
        }
    }
}

#[test]
fn a_full_file_system_drops_and_counts_then_spools_again_and_replay_drains_it() {
    const FIRST: u64 = 1_500;
    const SECOND: u64 = 1_000;
    let mut carbon = CarbonCache::start();
    carbon.stop();
    let dir = TempDir::new("spool-full");
    let disk = Tmpfs::mount(&dir.path().join("disk"), "256k");
    // Most of the file system taken by something else, freed during the test.
    let filler = disk.0.join("filler");
    fs::write(&filler, vec![7u8; 160 << 10]).unwrap();
    let trigger = dir.path().join("second-wave");
    let source = two_waves(FIRST, SECOND, &trigger);
    let spool = disk.0.join("spool");
    let config = config(
        &dir,
        &dir.path().join("state"),
        Some(&spool),
        &source,
        carbon.line_port(),
    );
    let agent = Agent::start(&config, "info");

    wait_counters(&agent, "the first wave spooled or dropped", |c| {
        c("spooled") + c("dropped_spool_no_space") == FIRST
    });
    let (spooled, no_space) = (
        counter(&agent, "spooled"),
        counter(&agent, "dropped_spool_no_space"),
    );
    assert!(
        spooled > 0 && no_space > 0,
        "spooled {spooled}, no space {no_space}"
    );
    let full: Vec<String> = agent
        .stderr()
        .into_iter()
        .filter(|l| l.contains("the spool's file system is full"))
        .collect();
    assert_eq!(full.len(), 1, "logged once: {full:?}");

    // Space comes back: the second wave is spooled again, with no restart.
    fs::remove_file(&filler).unwrap();
    fs::write(&trigger, "").unwrap();
    wait_counters(&agent, "the second wave spooled or dropped", |c| {
        c("spooled") + c("dropped_spool_no_space") == FIRST + SECOND
    });
    assert!(counter(&agent, "spooled") > spooled, "spooling resumed");

    // The backend returns: the spool drains to 0, whether or not the disk is full again.
    carbon.restart();
    wait_counters(&agent, "the spool replayed", |c| {
        c("spool_depth") == 0 && c("replayed") == c("spooled")
    });
    let no_space = counter(&agent, "dropped_spool_no_space");
    let delivered = FIRST + SECOND - no_space;
    let points = carbon.wait_for(
        "h.test.n",
        |p| p.len() as u64 >= delivered,
        Duration::from_secs(60),
    );
    assert_eq!(points.len() as u64, delivered);
    assert_eq!(counter(&agent, "replayed"), delivered);
    assert_no_other_drops(&agent, &["dropped_spool_no_space"]);
    assert!(
        fs::read_dir(&spool).unwrap().all(|e| {
            let name = e.unwrap().file_name();
            name == "cursor" || fs::metadata(spool.join(&name)).unwrap().len() == 0
        }),
        "no undelivered segment left"
    );
    eprintln!(
        "full disk: {} sent, {delivered} in whisper, {no_space} dropped_spool_no_space",
        FIRST + SECOND
    );
    stop(agent);
}

#[test]
fn a_spool_directory_removed_while_in_use_is_made_again_with_what_it_held() {
    const FIRST: u64 = 1_000;
    const SECOND: u64 = 500;
    let mut carbon = CarbonCache::start();
    carbon.stop();
    let dir = TempDir::new("spool-removed");
    let trigger = dir.path().join("second-wave");
    let source = two_waves(FIRST, SECOND, &trigger);
    let spool = dir.path().join("spool");
    let config = config(
        &dir,
        &dir.path().join("state"),
        Some(&spool),
        &source,
        carbon.line_port(),
    );
    let agent = Agent::start(&config, "info");
    wait_counters(&agent, "the first wave spooled", |c| c("spooled") == FIRST);

    fs::remove_dir_all(&spool).unwrap();
    fs::write(&trigger, "").unwrap();
    wait_counters(&agent, "the second wave spooled", |c| {
        c("spooled") == FIRST + SECOND && c("spool_depth") == FIRST + SECOND
    });
    let removed = agent
        .stderr()
        .into_iter()
        .filter(|l| l.contains("was removed or replaced while in use"))
        .count();
    assert_eq!(removed, 1);
    assert!(spool.is_dir());

    carbon.restart();
    wait_counters(&agent, "the spool replayed", |c| c("spool_depth") == 0);
    let points = carbon.wait_for(
        "h.test.n",
        |p| p.len() as u64 >= FIRST + SECOND,
        Duration::from_secs(60),
    );
    assert_eq!(points.len() as u64, FIRST + SECOND);
    assert_eq!(counter(&agent, "replayed"), FIRST + SECOND);
    assert_no_other_drops(&agent, &[]);
    stop(agent);
}

#[test]
fn a_read_only_state_directory_degrades_the_output_only_until_it_can_be_written() {
    const FIRST: u64 = 500;
    const SECOND: u64 = 500;
    let mut carbon = CarbonCache::start();
    carbon.stop();
    let dir = TempDir::new("spool-ro");
    let state = Tmpfs::mount(&dir.path().join("state"), "1m");
    state.remount("ro");
    let trigger = dir.path().join("second-wave");
    let source = two_waves(FIRST, SECOND, &trigger);
    let config = config(&dir, &state.0, None, &source, carbon.line_port());
    let agent = Agent::start(&config, "info");
    let spool = state.0.join("spool").join("graphite");

    let refused = agent.wait_stderr(
        "the spool refused, the agent running",
        Duration::from_secs(20),
        |lines| lines.iter().any(|l| l.contains("running without a spool")),
    );
    let line = refused
        .iter()
        .find(|l| l.contains("running without a spool"))
        .unwrap();
    assert!(line.contains("Read-only file system"), "{line}");
    assert!(line.contains(&state.0.display().to_string()), "{line}");
    // Without a spool the output holds what its backend does not take, in memory.
    wait_counters(&agent, "the first wave queued", |c| c("events_in") >= FIRST);
    carbon.restart();
    carbon.wait_for(
        "h.test.n",
        |p| p.len() as u64 >= FIRST,
        Duration::from_secs(60),
    );

    // Writable again: the spool opens by itself and takes the second wave of an outage.
    state.remount("rw");
    agent.wait_stderr("the spool opened", Duration::from_secs(20), |lines| {
        lines.iter().any(|l| l.contains("opened: spooling again"))
    });
    carbon.stop();
    fs::write(&trigger, "").unwrap();
    wait_counters(&agent, "the second wave spooled", |c| {
        c("spooled") == SECOND
    });
    assert!(spool.is_dir());
    carbon.restart();
    wait_counters(&agent, "the spool replayed", |c| c("spool_depth") == 0);
    let points = carbon.wait_for(
        "h.test.n",
        |p| p.len() as u64 >= FIRST + SECOND,
        Duration::from_secs(60),
    );
    assert_eq!(points.len() as u64, FIRST + SECOND);
    assert_no_other_drops(&agent, &[]);
    stop(agent);
}
