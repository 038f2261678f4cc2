//! The host sources over the binary: `pipit once` on the OpenWrt fixture tree, and the counter
//! cache across a restart of `pipit run`.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::pipit::{Agent, fixture, pipit, text};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pipit-sources-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn write_config(dir: &Path, state_dir: &Path, sources: &str) -> PathBuf {
    let config = format!(
        r#"{{"agent": {{"hostname": "gw", "host_root": {root:?}, "state_dir": {state:?}}},
            "sources": [{sources}],
            "outputs": [{{"type": "stdout", "format": "graphite"}}]}}"#,
        root = fixture("openwrt").display().to_string(),
        state = state_dir.display().to_string(),
    );
    let path = dir.join("pipit.json");
    fs::write(&path, config).unwrap();
    path
}

/// The `path value` part of each Graphite line, without the timestamp.
fn values(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| l.rsplit_once(' ').map(|(pv, _)| pv.to_owned()))
        .collect()
}

#[test]
fn once_reports_a_router_from_its_fixture_tree() {
    let dir = temp_dir("once");
    let config = write_config(
        &dir,
        &dir.join("state"),
        r#"{"type": "cpu", "per_core": true}, {"type": "load"}, {"type": "memory"}, {"type": "swap"},
           {"type": "uptime"}, {"type": "processes"}, {"type": "interface"}, {"type": "disk"},
           {"type": "thermal"}, {"type": "wireless"}, {"type": "conntrack"},
           {"type": "tcpconns", "local_ports": [22]}"#,
    );
    let out = pipit(&["once", "-c", config.to_str().unwrap()]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let got = values(&text(&out.stdout));
    for expected in [
        "gw.load.1 0.12",
        "gw.memory.total 251228160",
        "gw.swap.total 0",
        "gw.uptime.seconds 4523.17",
        "gw.processes.total 12",
        "gw.processes.threads 15",
        "gw.processes.fork_rate 0.0",
        "gw.interface.eth0_2.rx_bytes 0.0",
        "gw.interface.phy0-ap0.tx_packets 0.0",
        "gw.disk.mtdblock4.in_progress 0",
        "gw.thermal.cpu-thermal.temperature 52.3",
        "gw.thermal.mt7915_phy0_temp1.temperature 48.0",
        "gw.wireless.wlan0.signal -56.0",
        "gw.conntrack.entries 1234",
        "gw.tcpconns.22.listen 2",
    ] {
        assert!(
            got.iter().any(|l| l == expected),
            "{expected} missing from {got:#?}"
        );
    }
    assert!(
        !got.iter().any(|l| l.starts_with("gw.interface.lo.")),
        "lo is left out by default"
    );
    assert!(
        !got.iter().any(|l| l.starts_with("gw.disk.loop0.")),
        "loop devices are left out by default"
    );
    assert!(!dir.join("state").exists(), "once writes no cache");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn counters_survive_a_restart_through_the_cache() {
    let dir = temp_dir("restart");
    let state = dir.join("state");
    // With a 5 s interval, a rate in the first 3 s can only come from the saved samples.
    let config = write_config(&dir, &state, r#"{"type": "interface", "interval": "5s"}"#);
    let mut agent = Agent::start(&config, "debug");
    agent.wait_stderr("the first collection", Duration::from_secs(10), |l| {
        l.iter().any(|l| l.contains("collected 0 events"))
    });
    agent.signal("TERM");
    assert!(agent.wait_exit(Duration::from_secs(10)).success());
    let saved = fs::read_to_string(state.join("cache.json")).unwrap();
    assert!(
        saved.contains(r#""interface.eth0_2.rx_bytes":[3000000000,"#),
        "{saved}"
    );

    let agent = Agent::start(&config, "info");
    let lines = agent.wait_stdout(
        "a rate at the first collection",
        Duration::from_secs(3),
        |l| l.len() >= 32,
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("gw.interface.eth0.rx_bytes 0.0 ")),
        "{lines:#?}"
    );
    drop(agent);

    fs::write(state.join("cache.json"), "{not json").unwrap();
    let mut agent = Agent::start(&config, "info");
    agent.wait_stderr(
        "the warning about the corrupt cache",
        Duration::from_secs(5),
        |l| {
            l.iter().any(|l| {
                l.starts_with("WARN cache:") && l.contains("starting without saved counters")
            })
        },
    );
    agent.signal("TERM");
    assert!(agent.wait_exit(Duration::from_secs(10)).success());
    assert!(
        fs::read_to_string(state.join("cache.json"))
            .unwrap()
            .starts_with(r#"{"version":1,"#),
        "rewritten at stop"
    );
    fs::remove_dir_all(&dir).unwrap();
}
