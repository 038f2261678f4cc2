//! The file watcher on real files and directories. One suite runs against both pollers: they must
//! report the same changes for the same actions.
#![cfg(feature = "watch")]

mod common;

use std::fs;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::peers::{TempDir, wait_until};
use common::pipit::Agent;
use common::sources::threads_named;
use pipit::pattern::{Pattern, Selector};
use pipit::pollers::file::{FileWatcher, PollerChoice, PollerKind};
use pipit::pollers::inotify::WatchGate;
use pipit::pollers::snapshot::{Change, ChangeKind, WatchSpec};

use ChangeKind::{Created, Deleted, Modified};

const DEADLINE: Duration = Duration::from_secs(10);

fn spec(path: &Path, recursive: bool) -> WatchSpec {
    WatchSpec {
        path: path.to_owned(),
        recursive,
        filter: Selector::default(),
    }
}

fn start(spec: WatchSpec, choice: PollerChoice) -> FileWatcher {
    let mut w = FileWatcher::new(spec, choice, "test/watch", "test");
    let mut first = Vec::new();
    w.poll(&mut first).expect("the first poll takes stock");
    assert_eq!(first, vec![], "taking stock reports nothing");
    w
}

/// Polls until `expected` many changes came (inotify may spread them over ticks), polls once
/// more to catch extras, and returns them as (kind, path relative to `root`) sorted.
fn changes(w: &mut FileWatcher, root: &Path, expected: usize) -> Vec<(ChangeKind, String)> {
    let mut all: Vec<Change> = Vec::new();
    let start = Instant::now();
    while all.len() < expected && start.elapsed() < DEADLINE {
        w.poll(&mut all).expect("poll");
        if all.len() < expected {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // Extras have no condition to wait on: a short window lets a late one show.
    std::thread::sleep(Duration::from_millis(50));
    w.poll(&mut all).expect("poll");
    let mut out: Vec<(ChangeKind, String)> = all
        .iter()
        .map(|c| {
            let rel = c.path.strip_prefix(root).unwrap_or(&c.path);
            (c.kind, rel.display().to_string())
        })
        .collect();
    out.sort();
    out
}

fn expect(list: &[(ChangeKind, &str)]) -> Vec<(ChangeKind, String)> {
    let mut v: Vec<(ChangeKind, String)> = list.iter().map(|(k, p)| (*k, p.to_string())).collect();
    v.sort();
    v
}

/// The suite, once per poller.
macro_rules! suite {
    ($module:ident, $choice:expr, $kind:expr) => {
        mod $module {
            use super::*;

            #[test]
            fn uses_the_poller_asked_for() {
                let dir = TempDir::new("watch-kind");
                let w = start(spec(dir.path(), false), $choice);
                assert_eq!(w.poller(), Some($kind));
            }

            #[test]
            fn create_modify_delete() {
                let dir = TempDir::new("watch-cmd");
                let root = dir.path();
                fs::write(root.join("old"), "x").unwrap();
                let mut w = start(spec(root, false), $choice);
                fs::write(root.join("new"), "hello").unwrap();
                fs::write(root.join("old"), "longer").unwrap();
                assert_eq!(
                    changes(&mut w, root, 2),
                    expect(&[(Created, "new"), (Modified, "old")])
                );
                fs::remove_file(root.join("new")).unwrap();
                assert_eq!(changes(&mut w, root, 1), expect(&[(Deleted, "new")]));
            }

            #[test]
            fn same_size_rewrites_within_one_second_are_each_seen() {
                let dir = TempDir::new("watch-second");
                let root = dir.path();
                let file = root.join("f");
                fs::write(&file, "aaaa").unwrap();
                let mut w = start(spec(root, false), $choice);
                let began = Instant::now();
                for content in ["bbbb", "cccc", "dddd"] {
                    fs::write(&file, content).unwrap();
                    assert_eq!(changes(&mut w, root, 1), expect(&[(Modified, "f")]));
                }
                assert!(began.elapsed() < Duration::from_secs(3));
            }

            #[test]
            fn a_rename_is_a_deletion_and_a_creation_and_replacing_is_a_modification() {
                let dir = TempDir::new("watch-rename");
                let root = dir.path();
                fs::write(root.join("a"), "1").unwrap();
                fs::write(root.join("c"), "3").unwrap();
                let mut w = start(spec(root, false), $choice);
                fs::rename(root.join("a"), root.join("b")).unwrap();
                assert_eq!(
                    changes(&mut w, root, 2),
                    expect(&[(Deleted, "a"), (Created, "b")])
                );
                // The usual atomic replace: write a temp file, rename it over the target.
                fs::write(root.join("b"), "9").unwrap();
                let _ = changes(&mut w, root, 1);
                fs::rename(root.join("b"), root.join("c")).unwrap();
                assert_eq!(
                    changes(&mut w, root, 2),
                    expect(&[(Deleted, "b"), (Modified, "c")])
                );
            }

            #[test]
            fn subdirectories_made_after_the_start_are_watched() {
                let dir = TempDir::new("watch-recursive");
                let root = dir.path();
                let mut w = start(spec(root, true), $choice);
                fs::create_dir(root.join("sub")).unwrap();
                assert_eq!(changes(&mut w, root, 1), expect(&[(Created, "sub")]));
                fs::write(root.join("sub/x"), "x").unwrap();
                assert_eq!(changes(&mut w, root, 1), expect(&[(Created, "sub/x")]));
                // A whole tree at once: what is made before its watch takes hold is found too.
                fs::create_dir_all(root.join("a/b/c")).unwrap();
                fs::write(root.join("a/b/c/deep"), "d").unwrap();
                fs::write(root.join("a/top"), "t").unwrap();
                assert_eq!(
                    changes(&mut w, root, 5),
                    expect(&[
                        (Created, "a"),
                        (Created, "a/b"),
                        (Created, "a/b/c"),
                        (Created, "a/b/c/deep"),
                        (Created, "a/top"),
                    ])
                );
                fs::write(root.join("a/b/c/deep"), "changed").unwrap();
                assert_eq!(
                    changes(&mut w, root, 1),
                    expect(&[(Modified, "a/b/c/deep")])
                );
                fs::remove_dir_all(root.join("a")).unwrap();
                assert_eq!(
                    changes(&mut w, root, 5),
                    expect(&[
                        (Deleted, "a"),
                        (Deleted, "a/b"),
                        (Deleted, "a/b/c"),
                        (Deleted, "a/b/c/deep"),
                        (Deleted, "a/top"),
                    ])
                );
            }

            #[test]
            fn a_directory_renamed_within_the_tree_keeps_being_watched() {
                let dir = TempDir::new("watch-dir-rename");
                let root = dir.path();
                fs::create_dir(root.join("d")).unwrap();
                fs::write(root.join("d/f"), "1").unwrap();
                let mut w = start(spec(root, true), $choice);
                fs::rename(root.join("d"), root.join("e")).unwrap();
                assert_eq!(
                    changes(&mut w, root, 4),
                    expect(&[
                        (Deleted, "d"),
                        (Deleted, "d/f"),
                        (Created, "e"),
                        (Created, "e/f")
                    ])
                );
                fs::write(root.join("e/f"), "22").unwrap();
                assert_eq!(changes(&mut w, root, 1), expect(&[(Modified, "e/f")]));
            }

            #[test]
            fn without_recursion_deeper_changes_are_not_reported() {
                let dir = TempDir::new("watch-flat");
                let root = dir.path();
                fs::create_dir(root.join("sub")).unwrap();
                let mut w = start(spec(root, false), $choice);
                fs::write(root.join("sub/deep"), "x").unwrap();
                fs::write(root.join("top"), "x").unwrap();
                assert_eq!(changes(&mut w, root, 1), expect(&[(Created, "top")]));
            }

            #[test]
            fn a_path_that_does_not_exist_yet_is_picked_up_when_it_appears() {
                let dir = TempDir::new("watch-later");
                let root = dir.path().join("later");
                let mut w = start(spec(&root, false), $choice);
                fs::create_dir(&root).unwrap();
                fs::write(root.join("f"), "x").unwrap();
                assert_eq!(
                    changes(&mut w, dir.path(), 2),
                    expect(&[(Created, "later"), (Created, "later/f")])
                );
                fs::write(root.join("g"), "y").unwrap();
                assert_eq!(
                    changes(&mut w, dir.path(), 1),
                    expect(&[(Created, "later/g")])
                );
            }

            #[test]
            fn a_watched_directory_is_followed_through_deletion_and_recreation() {
                let dir = TempDir::new("watch-root-gone");
                let root = dir.path().join("spool");
                fs::create_dir(&root).unwrap();
                fs::write(root.join("a"), "1").unwrap();
                let mut w = start(spec(&root, false), $choice);
                fs::remove_dir_all(&root).unwrap();
                assert_eq!(
                    changes(&mut w, dir.path(), 2),
                    expect(&[(Deleted, "spool"), (Deleted, "spool/a")])
                );
                fs::create_dir(&root).unwrap();
                fs::write(root.join("b"), "2").unwrap();
                assert_eq!(
                    changes(&mut w, dir.path(), 2),
                    expect(&[(Created, "spool"), (Created, "spool/b")])
                );
                fs::write(root.join("b"), "22").unwrap();
                assert_eq!(
                    changes(&mut w, dir.path(), 1),
                    expect(&[(Modified, "spool/b")])
                );
            }

            #[test]
            fn a_single_file_is_followed_through_deletion_and_recreation() {
                let dir = TempDir::new("watch-file");
                let file = dir.path().join("app.conf");
                fs::write(&file, "a=1").unwrap();
                fs::write(dir.path().join("sibling"), "s").unwrap();
                let mut w = start(spec(&file, false), $choice);
                fs::write(dir.path().join("sibling"), "not watched").unwrap();
                fs::write(&file, "a=2").unwrap();
                assert_eq!(
                    changes(&mut w, dir.path(), 1),
                    expect(&[(Modified, "app.conf")])
                );
                fs::remove_file(&file).unwrap();
                assert_eq!(
                    changes(&mut w, dir.path(), 1),
                    expect(&[(Deleted, "app.conf")])
                );
                fs::write(&file, "a=3").unwrap();
                assert_eq!(
                    changes(&mut w, dir.path(), 1),
                    expect(&[(Created, "app.conf")])
                );
            }

            #[test]
            fn patterns_pick_what_is_reported() {
                let dir = TempDir::new("watch-patterns");
                let root = dir.path();
                let mut s = spec(root, true);
                s.filter = Selector {
                    include: vec![Pattern::new("*.log")],
                    exclude: vec![Pattern::new("*/debug.log")],
                };
                let mut w = start(s, $choice);
                fs::create_dir(root.join("svc")).unwrap();
                fs::write(root.join("svc/app.log"), "x").unwrap();
                fs::write(root.join("svc/debug.log"), "x").unwrap();
                fs::write(root.join("svc/app.pid"), "1").unwrap();
                assert_eq!(
                    changes(&mut w, root, 1),
                    expect(&[(Created, "svc/app.log")])
                );
            }

            #[test]
            fn a_storm_of_changes_is_reported_whole() {
                let dir = TempDir::new("watch-storm");
                let root = dir.path();
                let mut w = start(spec(root, false), $choice);
                // More than the inotify poller notes between ticks: it rescans instead.
                let n = pipit::pollers::inotify::MAX_PENDING + 500;
                for i in 0..n {
                    fs::write(root.join(format!("f{i}")), "x").unwrap();
                }
                let got = changes(&mut w, root, n);
                assert_eq!(got.len(), n);
                assert!(got.iter().all(|(k, _)| *k == Created));
            }
        }
    };
}

suite!(polling, PollerChoice::Polling, PollerKind::Polling);
suite!(inotify, PollerChoice::Inotify, PollerKind::Inotify);

/// A gate that fails with `errno` for paths ending in `name`.
fn failing_gate(name: &'static str, errno: i32) -> WatchGate {
    Arc::new(move |p: &Path| {
        if p.ends_with(name) {
            Err(io::Error::from_raw_os_error(errno))
        } else {
            Ok(())
        }
    })
}

#[test]
fn a_failed_watch_falls_back_to_polling_without_losing_changes() {
    let dir = TempDir::new("watch-enospc");
    let root = dir.path();
    let mut w = FileWatcher::with_gate(
        spec(root, true),
        PollerChoice::Auto,
        "test/enospc",
        "test",
        failing_gate("full", 28),
    );
    w.poll(&mut Vec::new()).unwrap();
    assert_eq!(w.poller(), Some(PollerKind::Inotify));
    fs::write(root.join("before"), "x").unwrap();
    fs::create_dir(root.join("full")).unwrap();
    fs::write(root.join("full/inside"), "x").unwrap();
    let got = changes(&mut w, root, 3);
    assert_eq!(
        got,
        expect(&[
            (Created, "before"),
            (Created, "full"),
            (Created, "full/inside")
        ])
    );
    assert_eq!(w.poller(), Some(PollerKind::Polling));
    fs::write(root.join("full/inside"), "changed").unwrap();
    assert_eq!(
        changes(&mut w, root, 1),
        expect(&[(Modified, "full/inside")])
    );
}

#[test]
fn inotify_failing_at_the_start_polls_from_the_start() {
    let dir = TempDir::new("watch-emfile");
    let root = dir.path();
    // The first watch the poller adds is its own wake-up watch on `/`.
    let gate: WatchGate = Arc::new(|_| Err(io::Error::from_raw_os_error(24)));
    let mut w = FileWatcher::with_gate(spec(root, false), PollerChoice::Auto, "t", "test", gate);
    w.poll(&mut Vec::new()).unwrap();
    assert_eq!(w.poller(), Some(PollerKind::Polling));
    fs::write(root.join("f"), "x").unwrap();
    assert_eq!(changes(&mut w, root, 1), expect(&[(Created, "f")]));
}

#[test]
fn forced_inotify_reports_the_limit_as_an_error_and_loses_nothing() {
    let dir = TempDir::new("watch-forced");
    let root = dir.path();
    fs::create_dir(root.join("full")).unwrap();
    let mut w = FileWatcher::with_gate(
        spec(root, true),
        PollerChoice::Inotify,
        "test/forced",
        "test",
        failing_gate("full", 28),
    );
    let e = w.poll(&mut Vec::new()).unwrap_err();
    assert!(e.to_string().contains("fs.inotify.max_user_watches"), "{e}");
    fs::write(root.join("full/f"), "x").unwrap();
    let mut out = Vec::new();
    let e = w.poll(&mut out).unwrap_err();
    assert!(e.to_string().contains("sysctl"), "{e}");
    assert_eq!(out.len(), 1, "the change is still found: {out:?}");
    assert_eq!(out[0].path, root.join("full/f"));
}

#[test]
fn the_inotify_thread_ends_when_the_watcher_is_dropped() {
    let dir = TempDir::new("watch-threads");
    let name = "leakcheck";
    let watchers: Vec<FileWatcher> = (0..3)
        .map(|_| {
            let mut w = FileWatcher::new(spec(dir.path(), true), PollerChoice::Inotify, name, "t");
            w.poll(&mut Vec::new()).unwrap();
            w
        })
        .collect();
    wait_until("three inotify threads", DEADLINE, || {
        (threads_named(std::process::id(), name) == 3).then_some(())
    });
    drop(watchers);
    assert_eq!(
        threads_named(std::process::id(), name),
        0,
        "dropping joins the threads"
    );
}

#[test]
fn the_watch_source_reports_changes_as_events() {
    let dir = TempDir::new("watch-agent");
    let root = dir.path().join("watched");
    fs::create_dir(&root).unwrap();
    let config = dir.path().join("pipit.json");
    fs::write(
        &config,
        format!(
            r#"{{"sources": [{{"type": "watch", "name": "etc", "url": "file://{}", "interval": "100ms",
                 "recursive": true, "max_events": 2}}],
               "outputs": [{{"type": "stdout", "format": "json"}}]}}"#,
            root.display()
        ),
    )
    .unwrap();
    let agent = Agent::start(&config, "warn");
    // Each tick reports its counts; once one came, stock was taken.
    agent.wait_stdout("a first tick", DEADLINE, |lines| {
        lines.iter().any(|l| l.contains("watch.etc.changes"))
    });
    // Four changes that land at once: a directory of three files moved in.
    let staging = dir.path().join("staging");
    fs::create_dir(&staging).unwrap();
    for name in ["a", "b", "c"] {
        fs::write(staging.join(name), "x").unwrap();
    }
    fs::rename(&staging, root.join("batch")).unwrap();
    let lines = agent.wait_stdout("the coalesced count", DEADLINE, |lines| {
        lines
            .iter()
            .any(|l| l.contains("\"watch.etc.coalesced\"") && l.contains("\"metric\":2"))
    });
    let created: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("\"service\":\"watch.etc\"") && l.contains("\"change\":\"created\""))
        .collect();
    assert_eq!(created.len(), 2, "max_events caps the events: {created:?}");
    assert!(created[0].contains("\"kind\":\"log\""), "{}", created[0]);
    assert!(created[1].contains("\"size\":\"1\""), "{}", created[1]);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"watch.etc.changes\"") && l.contains("\"metric\":4")),
        "{lines:?}"
    );
}

#[test]
fn the_agent_stops_the_inotify_thread_on_reload() {
    let dir = TempDir::new("watch-reload");
    let config = dir.path().join("pipit.json");
    let with_watch = |name: &str| {
        format!(
            r#"{{"sources": [{{"type": "watch", "name": "{name}", "url": "{}", "interval": "100ms"}}],
               "outputs": [{{"type": "stdout", "format": "json"}}]}}"#,
            dir.path().display()
        )
    };
    fs::write(&config, with_watch("w1")).unwrap();
    let agent = Agent::start(&config, "info");
    // The runner's thread and the inotify thread share the name.
    wait_until("the runner and inotify threads", DEADLINE, || {
        (threads_named(agent.pid(), "src/w1") == 2).then_some(())
    });
    fs::write(&config, with_watch("w2")).unwrap();
    agent.signal("HUP");
    // The agent logs the reload once the old source's runner thread has ended; dropping the
    // source on that thread has joined its inotify thread.
    agent.wait_stderr("the reload", DEADLINE, |lines| {
        lines.iter().any(|l| l.contains("reloaded"))
    });
    assert_eq!(
        threads_named(agent.pid(), "src/w1"),
        0,
        "the old threads ended"
    );
    wait_until("the new source's threads", DEADLINE, || {
        (threads_named(agent.pid(), "src/w2") == 2).then_some(())
    });
}
