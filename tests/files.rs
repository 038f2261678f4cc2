//! Root-safe files, tried as a local attacker would: pipit runs as root (as CI does), the
//! attacker is the real unprivileged user `nobody`, who owns what the test plants for it. Each
//! test asserts that a root-only file and directory (the victims) do not change, that nothing
//! planted is written through or replayed (to a real carbon-cache), and the log line that says
//! what was refused.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, lchown, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::disk::{counter, log_has, stop, two_waves};
use common::peers::{CarbonCache, TempDir, wait_until};
use common::pipit::Agent;
use pipit::Event;
use pipit::delivery::spool::{Fsync, Spool, SpoolConfig, WhenFull};

/// The uid and gid of `nobody`.
const NOBODY: u32 = 65534;

/// A root-only directory holding a root-only file, as `/root` and `/etc/shadow` are.
struct Victim {
    dir: PathBuf,
    file: PathBuf,
}

impl Victim {
    fn new(test: &TempDir) -> Victim {
        let dir = test.path().join("victim");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        let file = dir.join("shadow");
        fs::write(&file, "root:$6$secret:19000:0:99999:7:::\n").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        Victim { dir, file }
    }

    /// Every name in the directory with its content, mode, owner and link count.
    fn snapshot(&self) -> BTreeMap<String, (Vec<u8>, u32, u32, u64)> {
        fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let meta = fs::symlink_metadata(e.path()).unwrap();
                let content = if meta.is_file() {
                    fs::read(e.path()).unwrap()
                } else {
                    Vec::new()
                };
                (
                    e.file_name().into_string().unwrap(),
                    (content, meta.mode(), meta.uid(), meta.nlink()),
                )
            })
            .collect()
    }
}

/// A symlink at `at` to `to`, owned by nobody.
fn plant_symlink(to: &Path, at: &Path) {
    symlink(to, at).unwrap();
    lchown(at, Some(NOBODY), Some(NOBODY)).unwrap();
}

/// A directory owned by nobody, mode 0755.
fn nobody_dir(path: &Path) {
    fs::create_dir_all(path).unwrap();
    lchown(path, Some(NOBODY), Some(NOBODY)).unwrap();
}

/// A config with pipit's own counters printed every 200 ms, `outputs` and `control`.
fn write_config(dir: &TempDir, state: &Path, sources: &[String], outputs: &[String]) -> PathBuf {
    let mut all = vec![r#"{"type": "self", "interval": "200ms"}"#.to_owned()];
    all.extend_from_slice(sources);
    let mut outs = vec![
        r#"{"type": "stdout", "format": "graphite", "include": ["self.output.graphite.*"]}"#
            .to_owned(),
    ];
    outs.extend_from_slice(outputs);
    let text = format!(
        r#"{{"agent": {{"hostname": "h", "state_dir": "{}", "shutdown_timeout": "5s",
              "cache_interval": "10s"}},
            "control": {{"enabled": false}},
            "sources": [{}], "outputs": [{}]}}"#,
        state.display(),
        all.join(","),
        outs.join(",")
    );
    let path = dir.path().join("pipit.json");
    fs::write(&path, text).unwrap();
    path
}

/// Runs the agent until its log has a line containing every one of `expect`, stops it with
/// SIGTERM (the counter cache is written at the stop) and returns its log.
fn run_until_logged(config: &Path, expect: &[&str]) -> Vec<String> {
    let mut agent = Agent::start(config, "info");
    agent.wait_stderr("the refusal logged", Duration::from_secs(20), |lines| {
        expect
            .iter()
            .all(|want| lines.iter().any(|l| l.contains(want)))
    });
    agent.signal("TERM");
    assert!(agent.wait_exit(Duration::from_secs(10)).success());
    agent.stderr()
}

#[test]
fn a_state_dir_made_by_another_user_with_symlinks_in_it_is_never_written_through() {
    let dir = TempDir::new("files-state-owner");
    let victim = Victim::new(&dir);
    let before = victim.snapshot();
    let state = dir.path().join("state");
    nobody_dir(&state);
    plant_symlink(&victim.file, &state.join("cache.json.tmp"));
    plant_symlink(&victim.file, &state.join("cache.json"));
    let config = write_config(&dir, &state, &[], &[]);
    let want = format!(
        "refusing {}: owned by uid 65534 (nobody), neither this user (uid 0 (root)) nor root",
        state.display()
    );
    let log = run_until_logged(&config, &[&want]);
    assert!(
        log.iter()
            .any(|l| l.contains("cannot save the counters") && l.contains(&want)),
        "{log:#?}"
    );
    assert_eq!(victim.snapshot(), before, "{log:#?}");
    assert!(
        fs::symlink_metadata(state.join("cache.json"))
            .unwrap()
            .is_symlink()
    );
}

#[test]
fn a_state_dir_that_is_a_symlink_to_a_root_directory_is_refused() {
    let dir = TempDir::new("files-state-link");
    let victim = Victim::new(&dir);
    let before = victim.snapshot();
    let state = dir.path().join("state");
    plant_symlink(&victim.dir, &state);
    let config = write_config(&dir, &state, &[], &[]);
    let want = format!(
        "refusing {}: it is a symlink owned by uid 65534 (nobody): pipit follows no symlink",
        state.display()
    );
    let log = run_until_logged(&config, &[&want]);
    assert_eq!(victim.snapshot(), before, "{log:#?}");
}

#[test]
fn a_cache_file_that_is_a_fifo_a_directory_or_a_hard_link_is_refused_without_hanging() {
    let dir = TempDir::new("files-cache-kinds");
    let victim = Victim::new(&dir);
    let before = victim.snapshot();
    let state = dir.path().join("state");
    for (kind, want) in [
        ("fifo", "not a regular file (a FIFO owned by uid 0 (root))"),
        (
            "directory",
            "not a regular file (a directory owned by uid 0 (root))",
        ),
        ("hard link", "it has 2 hard links"),
    ] {
        fs::create_dir_all(&state).unwrap();
        fs::set_permissions(&state, fs::Permissions::from_mode(0o700)).unwrap();
        let cache = state.join("cache.json");
        match kind {
            "fifo" => assert!(
                Command::new("mkfifo")
                    .arg(&cache)
                    .status()
                    .unwrap()
                    .success()
            ),
            "directory" => fs::create_dir(&cache).unwrap(),
            _ => fs::hard_link(&victim.file, &cache).unwrap(),
        }
        let config = write_config(&dir, &state, &[], &[]);
        let want = format!("refusing {}: {want}", cache.display());
        let log = run_until_logged(&config, &[&want]);
        assert_eq!(victim.snapshot(), before, "{kind}: {log:#?}");
        fs::remove_dir_all(&state).unwrap();
    }
}

fn graphite(port: u16, spool: &Path) -> String {
    format!(
        r#"{{"type": "graphite", "host": "127.0.0.1", "port": {port}, "include": ["test.*", "forged.*"],
            "batch_timeout": "100ms", "retries": 0, "breaker_failures": 1, "breaker_reset": "300ms",
            "connect_timeout": "500ms", "spool": {{"dir": "{}"}}}}"#,
        spool.display()
    )
}

/// A real spool segment holding `gw1.forged.by.nobody 1337`, as pipit itself would write it.
fn forged_segment(dir: &TempDir) -> Vec<u8> {
    let scratch = dir.path().join("scratch");
    let mut spool = Spool::open(SpoolConfig {
        dir: scratch.clone(),
        max_bytes: 1 << 20,
        segment_bytes: 1 << 20,
        when_full: WhenFull::DropOldest,
        fsync: Fsync::Never,
    })
    .unwrap();
    spool
        .push(&[Event::new("forged.by.nobody", "gw1").with_metric(1337i64)])
        .unwrap();
    drop(spool);
    fs::read(scratch.join("0000000000000001.seg")).unwrap()
}

#[test]
fn planted_and_forged_spool_files_are_refused_counted_and_never_replayed() {
    const N: u64 = 300;
    let mut carbon = CarbonCache::start();
    carbon.stop();
    let dir = TempDir::new("files-spool-plants");
    let victim = Victim::new(&dir);
    let before = victim.snapshot();
    let forged = forged_segment(&dir);
    let spool = dir.path().join("spool");
    fs::create_dir(&spool).unwrap();
    fs::set_permissions(&spool, fs::Permissions::from_mode(0o700)).unwrap();
    let seg = |i: u64| spool.join(format!("{i:016x}.seg"));
    // 1: forged by nobody (0600, a valid record); 2: the same, root's but mode 0644.
    fs::write(seg(1), &forged).unwrap();
    fs::set_permissions(seg(1), fs::Permissions::from_mode(0o600)).unwrap();
    lchown(seg(1), Some(NOBODY), Some(NOBODY)).unwrap();
    fs::write(seg(2), &forged).unwrap();
    fs::set_permissions(seg(2), fs::Permissions::from_mode(0o644)).unwrap();
    // 3: a hard link to the victim; 4: a FIFO; 5: a directory; the cursor: a symlink to the victim;
    // 6, the name of the next segment: a symlink to the victim.
    fs::hard_link(&victim.file, seg(3)).unwrap();
    assert!(
        Command::new("mkfifo")
            .arg(seg(4))
            .status()
            .unwrap()
            .success()
    );
    fs::create_dir(seg(5)).unwrap();
    plant_symlink(&victim.file, &spool.join("cursor"));
    plant_symlink(&victim.file, &seg(6));
    let before = {
        let mut b = before;
        // The hard link is the victim's second name while planted.
        b.values_mut().for_each(|v| v.3 = 2);
        b
    };

    let config = write_config(
        &dir,
        &dir.path().join("state"),
        &[two_waves(N, 0, &dir.path().join("never"))],
        &[graphite(carbon.line_port(), &spool)],
    );
    let agent = Agent::start(&config, "info");
    wait_until("every datapoint spooled", Duration::from_secs(30), || {
        (counter(&agent, "spooled") == N).then_some(())
    });
    // Five segments, the cursor and the planted next name.
    assert_eq!(counter(&agent, "spool_refused"), 7);
    for want in [
        format!(
            "refusing {}: owned by uid 65534 (nobody), not by this user (uid 0 (root))",
            seg(1).display()
        ),
        format!("refusing {}: mode 0644, not 0600", seg(2).display()),
        format!("refusing {}: it has 2 hard links", seg(3).display()),
        format!("refusing {}: not a regular file (a FIFO", seg(4).display()),
        format!(
            "refusing {}: not a regular file (a directory owned by uid 0 (root))",
            seg(5).display()
        ),
        format!(
            "refusing {}: a symlink owned by uid 65534 (nobody)",
            spool.join("cursor").display()
        ),
        format!(
            "refusing {}: a symlink owned by uid 65534 (nobody)",
            seg(6).display()
        ),
    ] {
        assert!(log_has(&agent, &want), "{want}\n{:#?}", agent.stderr());
    }
    assert_eq!(victim.snapshot(), before);

    carbon.restart();
    let points = carbon.wait_for("h.test.n", |p| p.len() as u64 >= N, Duration::from_secs(60));
    assert_eq!(points.len() as u64, N);
    wait_until("the spool replayed", Duration::from_secs(30), || {
        (counter(&agent, "spool_depth") == 0).then_some(())
    });
    assert_eq!(counter(&agent, "replayed"), N);
    assert!(
        !carbon.metrics().iter().any(|m| m.contains("forged")),
        "{:?}",
        carbon.metrics()
    );
    assert_eq!(fs::read(seg(1)).unwrap(), forged, "left alone");
    stop(agent);
    assert_eq!(victim.snapshot(), before);
}

#[test]
fn a_spool_dir_owned_by_another_user_is_refused_and_the_output_runs_without_it() {
    const N: u64 = 100;
    let carbon = CarbonCache::start();
    let dir = TempDir::new("files-spool-owner");
    let forged = forged_segment(&dir);
    let spool = dir.path().join("spool");
    nobody_dir(&spool);
    fs::write(spool.join("0000000000000001.seg"), &forged).unwrap();
    lchown(
        spool.join("0000000000000001.seg"),
        Some(NOBODY),
        Some(NOBODY),
    )
    .unwrap();
    let config = write_config(
        &dir,
        &dir.path().join("state"),
        &[two_waves(N, 0, &dir.path().join("never"))],
        &[graphite(carbon.line_port(), &spool)],
    );
    let agent = Agent::start(&config, "info");
    let points = carbon.wait_for("h.test.n", |p| p.len() as u64 >= N, Duration::from_secs(60));
    assert_eq!(points.len() as u64, N);
    let want = format!(
        "refusing {}: owned by uid 65534 (nobody), neither this user (uid 0 (root)) nor root",
        spool.display()
    );
    assert!(log_has(&agent, &want), "{:#?}", agent.stderr());
    assert!(log_has(&agent, "running without a spool"));
    assert!(!carbon.metrics().iter().any(|m| m.contains("forged")));
    stop(agent);
}

#[test]
fn a_spool_dir_swapped_for_a_symlink_while_running_is_refused_and_counted() {
    const N: u64 = 200;
    let mut carbon = CarbonCache::start();
    carbon.stop();
    let dir = TempDir::new("files-spool-swap");
    let victim = Victim::new(&dir);
    let before = victim.snapshot();
    let spool = dir.path().join("spool");
    let trigger = dir.path().join("go");
    let source = two_waves(N, N, &trigger);
    let config = write_config(
        &dir,
        &dir.path().join("state"),
        &[source],
        &[graphite(carbon.line_port(), &spool)],
    );
    let agent = Agent::start(&config, "info");
    wait_until("the first wave spooled", Duration::from_secs(30), || {
        (counter(&agent, "spooled") == N).then_some(())
    });
    fs::rename(&spool, dir.path().join("spool.old")).unwrap();
    plant_symlink(&victim.dir, &spool);
    fs::write(&trigger, "").unwrap();
    wait_until("the second wave counted", Duration::from_secs(30), || {
        (counter(&agent, "dropped_spool_unavailable") == N).then_some(())
    });
    // What the swapped directory held is counted as lost; nothing is written into the victim.
    assert_eq!(counter(&agent, "dropped_spool_lost"), N);
    assert_eq!(counter(&agent, "spool_depth"), 0);
    let want = format!(
        "refusing {}: it is a symlink owned by uid 65534 (nobody)",
        spool.display()
    );
    assert!(log_has(&agent, &want), "{:#?}", agent.stderr());
    assert!(log_has(&agent, "was removed or replaced while in use"));
    stop(agent);
    assert_eq!(victim.snapshot(), before);
}

#[test]
fn a_control_socket_directory_that_is_a_symlink_is_refused() {
    let dir = TempDir::new("files-control");
    let victim = Victim::new(&dir);
    let before = victim.snapshot();
    let link = dir.path().join("run");
    plant_symlink(&victim.dir, &link);
    let socket = link.join("pipit.sock");
    let config = dir.path().join("pipit.json");
    fs::write(
        &config,
        format!(
            r#"{{"agent": {{"hostname": "h", "state_dir": "{}"}},
                "control": {{"socket": "{}"}},
                "sources": [{{"type": "uptime", "interval": "1s"}}],
                "outputs": [{{"type": "stdout"}}]}}"#,
            dir.path().join("state").display(),
            socket.display()
        ),
    )
    .unwrap();
    let want = format!(
        "no control socket: socket directory {}: it is a symlink owned by uid 65534 (nobody)",
        link.display()
    );
    let log = run_until_logged(&config, &[&want]);
    assert_eq!(victim.snapshot(), before, "{log:#?}");
}
