//! The supervisor and the `exec` source against real processes: shell scripts written into a
//! temporary directory, run, timed out, killed and reaped.
//!
//! Every test holds one lock, so that "no child of this process is left" means what it says.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use common::peers::wait_until;
use pipit::event::{Event, Metric};
use pipit::supervisor::{
    Command, DaemonEvent, Exit, SpawnError, SupervisorConfig, SupervisorThread, account,
};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A temporary directory for one test's scripts, removed at the end.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let path =
            std::env::temp_dir().join(format!("pipit-supervisor-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        Dir(path)
    }

    /// Writes an executable shell script and returns its path.
    fn script(&self, name: &str, body: &str) -> String {
        let path = self.0.join(name);
        fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path.display().to_string()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Supervisor settings for tests: checks run as the test's own user.
fn config(max_checks: usize) -> SupervisorConfig {
    SupervisorConfig {
        max_checks,
        user: None,
    }
}

fn command(argv: &[&str], timeout: Duration, grace: Duration) -> Arc<Command> {
    Arc::new(Command {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: BTreeMap::new(),
        cwd: None,
        user: None,
        group: None,
        timeout: Some(timeout),
        kill_grace: grace,
        max_output: 64 * 1024,
    })
}

/// (pid, ppid, pgid, state) of every process on the system.
fn processes() -> Vec<(u32, u32, u32, char)> {
    let mut out = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The command name is in parentheses and may hold spaces: fields resume after the last ')'.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let state = fields[0].chars().next().unwrap_or('?');
        out.push((
            pid,
            fields[1].parse().unwrap(),
            fields[2].parse().unwrap(),
            state,
        ));
    }
    out
}

/// Processes that are children of this test process, or members of one of `groups`.
fn leftovers(groups: &[u32]) -> Vec<(u32, u32, u32, char)> {
    let me = std::process::id();
    processes()
        .into_iter()
        .filter(|&(pid, ppid, pgid, _)| pid != me && (ppid == me || groups.contains(&pgid)))
        .collect()
}

/// Waits until nothing is left of `groups` and this process has no child at all.
fn assert_nothing_left(groups: &[u32]) {
    wait_until(
        "every child and group member to be gone",
        Duration::from_secs(10),
        || leftovers(groups).is_empty().then_some(()),
    );
}

fn open_fds() -> usize {
    fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn a_timed_out_check_and_its_term_ignoring_grandchild_are_killed_and_reaped() {
    let _lock = serial();
    let dir = Dir::new("grandchild");
    let pidfile = dir.path("grandchild.pid");
    let script = dir.script(
        "hang.sh",
        &format!(
            "sh -c 'trap \"\" TERM; echo $$ > {}; exec sleep 1000' &\necho started\nsleep 1000",
            pidfile.display()
        ),
    );
    let mut sup = SupervisorThread::start(config(4)).unwrap();
    let started = Instant::now();
    let run = sup
        .handle()
        .run(
            "hang",
            command(
                &[&script],
                Duration::from_millis(300),
                Duration::from_millis(300),
            ),
        )
        .unwrap();
    assert!(run.timed_out);
    assert_eq!(run.exit, Exit::Signal(15), "the leader dies of SIGTERM");
    assert_eq!(run.stdout.bytes, b"started\n");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let grandchild: u32 = fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_nothing_left(&[run.pgid]);
    assert!(
        !Path::new(&format!("/proc/{grandchild}")).exists(),
        "the grandchild that ignored SIGTERM is gone"
    );
    assert!(sup.stop(Instant::now() + Duration::from_secs(2)));
}

#[test]
fn a_leader_ignoring_term_is_killed_after_the_grace_period() {
    let _lock = serial();
    let dir = Dir::new("ignore");
    let script = dir.script("ignore.sh", "trap '' TERM\nsleep 1000 &\nwait\nwait");
    let mut sup = SupervisorThread::start(config(4)).unwrap();
    let grace = Duration::from_millis(200);
    let run = sup
        .handle()
        .run(
            "ignore",
            command(&[&script], Duration::from_millis(100), grace),
        )
        .unwrap();
    assert!(run.timed_out);
    assert_eq!(run.exit, Exit::Signal(9));
    assert!(
        run.duration >= Duration::from_millis(300),
        "{:?}",
        run.duration
    );
    assert_nothing_left(&[run.pgid]);
    assert!(sup.stop(Instant::now() + Duration::from_secs(2)));
}

/// Asks the agent `pipit` to stop, as its init script does.
fn send_term(pipit: &std::process::Child) {
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pipit.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
}

#[test]
fn a_thousand_timed_out_checks_leave_no_zombie_and_no_orphan() {
    let _lock = serial();
    let dir = Dir::new("thousand");
    // The leader dies of SIGTERM; its child ignores SIGTERM and must be killed with the group.
    let script = dir.script("t.sh", "(trap '' TERM; exec sleep 1000) &\nexec sleep 1000");
    let fds_before = open_fds();
    let mut sup = SupervisorThread::start(config(16)).unwrap();
    let cmd = command(
        &[&script],
        Duration::from_millis(20),
        Duration::from_millis(20),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let groups = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..16)
        .map(|w| {
            let (handle, cmd, next, groups) =
                (sup.handle(), cmd.clone(), next.clone(), groups.clone());
            thread::spawn(move || {
                while next.fetch_add(1, Ordering::SeqCst) < 1000 {
                    let run = handle.run(&format!("check-{w}"), cmd.clone()).unwrap();
                    assert!(run.timed_out, "{run:?}");
                    groups.lock().unwrap().push(run.pgid);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let groups = groups.lock().unwrap().clone();
    assert_eq!(groups.len(), 1000);
    assert_nothing_left(&groups);
    assert!(sup.stop(Instant::now() + Duration::from_secs(2)));
    drop(sup);
    assert_eq!(
        open_fds(),
        fds_before,
        "every pipe and the wake-up socket are closed"
    );
}

#[test]
fn huge_output_on_both_pipes_is_capped_without_deadlock() {
    let _lock = serial();
    let dir = Dir::new("huge");
    let script = dir.script(
        "huge.sh",
        "head -c 5000000 /dev/zero >&2 &\nhead -c 10000000 /dev/zero\nwait",
    );
    let mut sup = SupervisorThread::start(config(4)).unwrap();
    let run = sup
        .handle()
        .run(
            "huge",
            command(
                &[&script],
                Duration::from_secs(20),
                Duration::from_millis(100),
            ),
        )
        .unwrap();
    assert_eq!(run.exit, Exit::Code(0));
    assert!(!run.timed_out);
    assert_eq!(run.stdout.bytes.len(), 64 * 1024);
    assert!(run.stdout.truncated && run.stderr.truncated);
    assert_eq!(run.stderr.bytes.len(), 64 * 1024);
    assert_nothing_left(&[run.pgid]);
    assert!(sup.stop(Instant::now() + Duration::from_secs(2)));
}

#[test]
fn missing_and_non_executable_programs_are_not_started() {
    let _lock = serial();
    let dir = Dir::new("notstarted");
    let plain = dir.path("plain.sh");
    fs::write(&plain, "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(&plain, fs::Permissions::from_mode(0o644)).unwrap();
    let mut sup = SupervisorThread::start(config(4)).unwrap();
    let h = sup.handle();
    let missing = h
        .run(
            "a",
            command(
                &["/nonexistent/check"],
                Duration::from_secs(1),
                Duration::ZERO,
            ),
        )
        .unwrap_err();
    assert_eq!(
        missing,
        SpawnError::NotStarted("cannot run /nonexistent/check: no such file or directory".into())
    );
    let not_exec = h
        .run(
            "b",
            command(
                &[&plain.display().to_string()],
                Duration::from_secs(1),
                Duration::ZERO,
            ),
        )
        .unwrap_err();
    assert_eq!(
        not_exec,
        SpawnError::NotStarted(format!("cannot run {}: permission denied", plain.display()))
    );
    let in_path = h
        .run(
            "c",
            command(
                &["sh", "-c", "exit 3"],
                Duration::from_secs(1),
                Duration::ZERO,
            ),
        )
        .unwrap();
    assert_eq!(
        in_path.exit,
        Exit::Code(3),
        "programs without a slash are looked up in PATH"
    );
    let mut in_missing_dir =
        (*command(&["/bin/true"], Duration::from_secs(1), Duration::ZERO)).clone();
    in_missing_dir.cwd = Some(dir.path("no-such-dir"));
    let no_dir = h.run("d", Arc::new(in_missing_dir)).unwrap_err();
    assert!(
        matches!(&no_dir, SpawnError::NotStarted(why) if why.ends_with("no-such-dir does not exist")),
        "{no_dir:?}"
    );
    assert!(sup.stop(Instant::now() + Duration::from_secs(2)));
    assert_nothing_left(&[]);
}

#[test]
fn stdin_is_empty_and_a_check_may_exit_without_reading_it() {
    let _lock = serial();
    let mut sup = SupervisorThread::start(config(4)).unwrap();
    let h = sup.handle();
    let reader = h
        .run(
            "cat",
            command(&["/bin/cat"], Duration::from_secs(5), Duration::ZERO),
        )
        .unwrap();
    assert_eq!(
        (reader.exit, reader.timed_out, reader.stdout.bytes.len()),
        (Exit::Code(0), false, 0)
    );
    let early = h
        .run(
            "early",
            command(
                &["/bin/sh", "-c", "echo bye; exit 2"],
                Duration::from_secs(5),
                Duration::ZERO,
            ),
        )
        .unwrap();
    assert_eq!(
        (early.exit, early.stdout.bytes.as_slice()),
        (Exit::Code(2), &b"bye\n"[..])
    );
    let fds = h
        .run(
            "fds",
            command(
                &["/bin/sh", "-c", "ls /proc/$$/fd"],
                Duration::from_secs(5),
                Duration::ZERO,
            ),
        )
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&fds.stdout.bytes),
        "0\n1\n2\n",
        "no descriptor of pipit is inherited"
    );
    assert!(sup.stop(Instant::now() + Duration::from_secs(2)));
}

#[test]
fn the_concurrency_limit_holds_and_a_running_check_is_not_started_twice() {
    let _lock = serial();
    let dir = Dir::new("limit");
    let running = dir.path("running");
    let release = dir.path("release");
    fs::create_dir(&running).unwrap();
    // Each run marks itself running under its key, holds its slot until the test releases it,
    // overlaps the others for 0.2 s, prints how many are running, and unmarks itself.
    let script = dir.script(
        "count.sh",
        &format!(
            "d={}\ntouch $d/$1\nuntil [ -e {} ]; do sleep 0.01; done\nsleep 0.2\nls $d | wc -l\nrm $d/$1",
            running.display(),
            release.display()
        ),
    );
    let mut sup = SupervisorThread::start(config(2)).unwrap();
    // A timeout far beyond what the runs take, so that only the limit decides, however loaded
    // the machine: a queued run is skipped once its timeout passes without a slot.
    let cmd = |key: &str| command(&[&script, key], Duration::from_secs(120), Duration::ZERO);
    let threads: Vec<_> = (0..6)
        .map(|i| {
            let (h, key) = (sup.handle(), format!("k{i}"));
            let cmd = cmd(&key);
            thread::spawn(move || h.run(&key, cmd).unwrap())
        })
        .collect();
    // Which two of the six get the slots first is up to the threads' order.
    let first = wait_until("two runs in the two slots", Duration::from_secs(60), || {
        let keys: Vec<String> = fs::read_dir(&running)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        (keys.len() == 2).then(|| keys[0].clone())
    });
    let twice = sup.handle().run(&first, cmd(&first));
    fs::write(&release, "").unwrap();
    let counts: Vec<u32> = threads
        .into_iter()
        .map(|t| {
            String::from_utf8_lossy(&t.join().unwrap().stdout.bytes)
                .trim()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(
        counts.iter().all(|&n| (1..=2).contains(&n)),
        "at most 2 at once: {counts:?}"
    );
    assert!(
        matches!(&twice, Err(SpawnError::Skipped(why)) if why.contains("still going")),
        "{twice:?}"
    );
    assert!(sup.stop(Instant::now() + Duration::from_secs(2)));
}

#[test]
fn a_check_that_finds_no_slot_within_its_timeout_is_skipped() {
    let _lock = serial();
    let dir = Dir::new("no-slot");
    let (started, release) = (dir.path("started"), dir.path("release"));
    // Holds the only slot until the test releases it.
    let script = dir.script(
        "hold.sh",
        &format!(
            "touch {}\nuntil [ -e {} ]; do sleep 0.01; done",
            started.display(),
            release.display()
        ),
    );
    let mut sup = SupervisorThread::start(config(1)).unwrap();
    let h = sup.handle();
    let long = thread::spawn({
        let h = h.clone();
        move || {
            h.run(
                "long",
                command(&[&script], Duration::from_secs(10), Duration::ZERO),
            )
        }
    });
    wait_until("the long check running", Duration::from_secs(10), || {
        started.exists().then_some(())
    });
    let timeout = Duration::from_millis(200);
    let asked = Instant::now();
    let skipped = h.run("short", command(&["/bin/true"], timeout, Duration::ZERO));
    let took = asked.elapsed();
    fs::write(&release, "").unwrap();
    assert!(
        matches!(&skipped, Err(SpawnError::Skipped(why)) if why.contains("supervisor.max_checks")),
        "{skipped:?}"
    );
    // Skipped at its own timeout, not when the slot came free: the margin is for a loaded machine.
    assert!(
        took >= timeout && took < timeout + Duration::from_millis(600),
        "{took:?}"
    );
    assert_eq!(long.join().unwrap().unwrap().exit, Exit::Code(0));
    assert!(sup.stop(Instant::now() + Duration::from_secs(2)));
}

#[test]
fn stopping_kills_what_is_left_within_the_deadline() {
    let _lock = serial();
    let mut sup = SupervisorThread::start(config(4)).unwrap();
    let h = sup.handle();
    let dir = Dir::new("stuck");
    let trapped = dir.path("trapped");
    let script = dir.script(
        "stuck.sh",
        &format!("trap '' TERM\ntouch {}\nsleep 100", trapped.display()),
    );
    let cmd = command(&[&script], Duration::from_secs(60), Duration::from_secs(30));
    let run = thread::spawn(move || h.run("stuck", cmd));
    wait_until("the check ignoring TERM", Duration::from_secs(10), || {
        trapped.exists().then_some(())
    });
    let started = Instant::now();
    assert!(sup.stop(Instant::now() + Duration::from_millis(300)));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let run = run.join().unwrap().unwrap();
    assert_eq!(run.exit, Exit::Signal(9));
    assert_nothing_left(&[run.pgid]);
    let after = sup.handle().run(
        "late",
        command(&["/bin/true"], Duration::from_secs(1), Duration::ZERO),
    );
    assert_eq!(after, Err(SpawnError::Stopped));
}

#[test]
fn checks_drop_to_the_configured_user_when_root() {
    let _lock = serial();
    let Ok(nobody) = account::user("nobody") else {
        return;
    };
    if fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap_or(1)
        != 0
    {
        return; // Only root can change a child's user.
    }
    let mut sup = SupervisorThread::start(SupervisorConfig {
        max_checks: 2,
        user: Some(nobody.clone()),
    })
    .unwrap();
    let h = sup.handle();
    let id = command(
        &["/bin/sh", "-c", "id -u; id -g; id -G"],
        Duration::from_secs(5),
        Duration::ZERO,
    );
    let by_default = h.run("a", id.clone()).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&by_default.stdout.bytes),
        format!("{}\n{}\n{}\n", nobody.uid, nobody.gid, nobody.gid)
    );
    let mut as_root = (*id).clone();
    as_root.user = Some(account::user("root").unwrap());
    let as_root = h.run("b", Arc::new(as_root)).unwrap();
    assert_eq!(String::from_utf8_lossy(&as_root.stdout.bytes), "0\n0\n0\n");
    assert!(sup.stop(Instant::now() + Duration::from_secs(2)));
}

#[test]
fn a_daemon_streams_lines_is_restarted_with_backoff_and_stopped_cleanly() {
    let _lock = serial();
    let dir = Dir::new("daemon");
    let stopped = dir.path("stopped");
    let runs = dir.path("runs");
    let script = dir.script(
        "daemon.sh",
        &format!(
            "echo x >> {runs}\nn=$(wc -l < {runs})\ntrap 'echo clean > {stopped}; exit 0' TERM\nif [ $n -eq 1 ]; then echo 'd.first 1'; echo 'oops' >&2; exit 7; fi\nwhile :; do echo \"d.run $n\"; sleep 0.05; done",
            runs = runs.display(),
            stopped = stopped.display()
        ),
    );
    let mut sup = SupervisorThread::start(config(1)).unwrap();
    let mut cmd = (*command(&[&script], Duration::ZERO, Duration::from_secs(2))).clone();
    cmd.timeout = None;
    let daemon = sup.handle().start_daemon(Arc::new(cmd)).unwrap();
    let next = || daemon.events.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(matches!(next(), DaemonEvent::Line { line, .. } if line.bytes == b"d.first 1"));
    match next() {
        DaemonEvent::Exited {
            exit,
            stderr,
            restart_in,
            ..
        } => {
            assert_eq!(
                (exit, stderr.as_str(), restart_in),
                (Exit::Code(7), "oops", Duration::from_secs(1))
            );
        }
        other => panic!("expected the exit, got {other:?}"),
    }
    let restarted = Instant::now();
    assert!(matches!(next(), DaemonEvent::Line { line, .. } if line.bytes == b"d.run 2"));
    assert!(
        restarted.elapsed() >= Duration::from_millis(800),
        "restarted after its backoff: {:?}",
        restarted.elapsed()
    );
    assert!(matches!(next(), DaemonEvent::Line { line, .. } if line.bytes == b"d.run 2"));
    assert!(sup.stop(Instant::now() + Duration::from_secs(3)));
    assert_eq!(
        fs::read_to_string(&stopped).unwrap(),
        "clean\n",
        "SIGTERM let it end cleanly"
    );
    drop(daemon);
    assert_nothing_left(&[]);
}

#[test]
fn dropping_a_daemon_stops_it() {
    let _lock = serial();
    let mut sup = SupervisorThread::start(config(1)).unwrap();
    let mut cmd = (*command(
        &["/bin/sh", "-c", "while :; do echo tick; sleep 0.05; done"],
        Duration::ZERO,
        Duration::from_millis(100),
    ))
    .clone();
    cmd.timeout = None;
    let daemon = sup.handle().start_daemon(Arc::new(cmd)).unwrap();
    assert!(matches!(
        daemon.events.recv_timeout(Duration::from_secs(5)).unwrap(),
        DaemonEvent::Line { .. }
    ));
    drop(daemon);
    assert_nothing_left(&[]);
    assert!(sup.stop(Instant::now() + Duration::from_secs(2)));
}

#[test]
fn load_of_200_checks_a_second_for_10_seconds_leaks_nothing() {
    let _lock = serial();
    const RATE: u32 = 200;
    const SECONDS: u32 = 10;
    const SUBMITTERS: u32 = 8;
    let fds_before = open_fds();
    let mut sup = SupervisorThread::start(config(4)).unwrap();
    let cmd = command(
        &["/bin/true"],
        Duration::from_secs(5),
        Duration::from_millis(100),
    );
    let start = Instant::now();
    let gap = Duration::from_secs(1) / RATE;
    let workers: Vec<_> = (0..SUBMITTERS)
        .map(|w| {
            let (h, cmd) = (sup.handle(), cmd.clone());
            thread::spawn(move || {
                let mut ok = 0u32;
                for i in (w..RATE * SECONDS).step_by(SUBMITTERS as usize) {
                    // The pacing is the load under test: RATE runs a second, for SECONDS.
                    let due = start + gap * i;
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        thread::sleep(wait);
                    }
                    let run = h.run(&format!("load-{w}"), cmd.clone()).unwrap();
                    ok += u32::from(run.exit == Exit::Code(0));
                }
                ok
            })
        })
        .collect();
    let ok: u32 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    let took = start.elapsed();
    assert_eq!(ok, RATE * SECONDS);
    assert!(
        took < Duration::from_secs(u64::from(SECONDS) + 5),
        "kept up with the rate: {took:?}"
    );
    assert!(sup.stop(Instant::now() + Duration::from_secs(2)));
    drop(sup);
    assert_nothing_left(&[]);
    assert_eq!(open_fds(), fds_before);
}

// The `exec` source end to end, through `pipit once`.

fn once(dir: &Dir, sources: &str) -> Vec<Event> {
    let text = format!(
        r#"{{"supervisor": {{"user": ""}}, "sources": [{sources}], "outputs": [{{"type": "stdout"}}]}}"#
    );
    let path = dir.path("pipit.json");
    fs::write(&path, text).unwrap();
    let config = pipit::config_file::load(&path).unwrap();
    pipit::once::collect(&config).0
}

fn find<'a>(events: &'a [Event], service: &str) -> &'a Event {
    events
        .iter()
        .find(|e| e.service == service)
        .unwrap_or_else(|| panic!("no event {service} in {events:#?}"))
}

fn state(e: &Event) -> &str {
    e.state.as_ref().map_or("", |s| s.as_str())
}

#[test]
fn nagios_checks_report_state_text_perfdata_and_their_own_metrics() {
    let _lock = serial();
    let dir = Dir::new("nagios");
    let warn = dir.script("warn.sh", "echo \"LOAD WARNING - load 3 | 'load 1'=3;2;4;0 time=150ms;;; size=2KB\"\necho 'line two'\nexit 1");
    let bad = dir.script("bad.sh", "echo 'OK - fine | good=1 bad=oops'\nexit 0");
    let binary = dir.script(
        "binary.sh",
        "printf 'OK \\377\\376 | \\001\\002=\\377 ok=1\\n'\nexit 0",
    );
    let random = dir.script(
        "random.sh",
        "head -c 30000 /dev/urandom\nprintf '\\nnet.ok 1\\n'",
    );
    let events = once(
        &dir,
        &format!(
            r#"{{"type": "exec", "name": "load", "command": ["{warn}"]}},
               {{"type": "exec", "name": "bad", "command": ["{bad}"]}},
               {{"type": "exec", "name": "bin", "command": ["{binary}"]}},
               {{"type": "exec", "name": "rand", "command": ["{random}"], "format": "graphite"}}"#
        ),
    );
    let load = find(&events, "load");
    assert_eq!(state(load), "warning");
    assert_eq!(
        load.description.as_deref(),
        Some("LOAD WARNING - load 3\nline two")
    );
    assert_eq!(find(&events, "load.load 1").metric, Some(Metric::Int(3)));
    assert_eq!(find(&events, "load.time").metric, Some(Metric::Float(0.15)));
    assert_eq!(
        find(&events, "load.size").metric,
        Some(Metric::Float(2048.0))
    );
    assert_eq!(
        find(&events, "exec.load.exit_code").metric,
        Some(Metric::Int(1))
    );
    assert_eq!(
        find(&events, "exec.load.timed_out").metric,
        Some(Metric::Int(0))
    );
    assert!(find(&events, "exec.load.duration").metric.is_some());
    let bad = find(&events, "bad");
    assert_eq!(state(bad), "critical");
    assert!(
        bad.description
            .as_deref()
            .unwrap()
            .contains("value is not a number in \"bad=oops\""),
        "{bad:?}"
    );
    assert_eq!(
        find(&events, "bad.good").metric,
        Some(Metric::Int(1)),
        "the good item still counts"
    );
    // Binary output is read as text with replacement characters and never crashes a parser.
    let bin = find(&events, "bin");
    assert_eq!(state(bin), "critical");
    assert!(
        bin.description
            .as_deref()
            .unwrap()
            .contains("in \"\\u{1}\\u{2}=\u{fffd}\""),
        "{bin:?}"
    );
    assert_eq!(find(&events, "bin.ok").metric, Some(Metric::Int(1)));
    let rand = find(&events, "rand");
    assert_eq!(state(rand), "critical");
    assert!(
        rand.description
            .as_deref()
            .unwrap()
            .starts_with("unreadable output: line "),
        "{rand:?}"
    );
    assert_eq!(
        find(&events, "net.ok").metric,
        Some(Metric::Int(1)),
        "the good line after the binary still counts"
    );
}

#[test]
fn graphite_json_and_value_checks_read_good_lines_and_flag_bad_ones() {
    let _lock = serial();
    let dir = Dir::new("formats");
    let graphite = dir.script(
        "g.sh",
        "echo 'net.rx 100 1700000000'\necho 'what-is-this'\necho 'net.tx 5'",
    );
    let json = dir.script(
        "j.sh",
        "echo '{\"service\": \"wifi.clients\", \"metric\": 7, \"tags\": [\"ap\"]}'\necho '{broken'",
    );
    let value = dir.script("v.sh", "echo 21.5");
    let bad_value = dir.script("bv.sh", "echo 'twenty'");
    let events = once(
        &dir,
        &format!(
            r#"{{"type": "exec", "name": "g", "command": ["{graphite}"], "format": "graphite"}},
               {{"type": "exec", "name": "j", "command": ["{json}"], "format": "json"}},
               {{"type": "exec", "name": "v", "command": ["{value}"], "format": "value"}},
               {{"type": "exec", "name": "bv", "command": ["{bad_value}"], "format": "value"}}"#
        ),
    );
    assert_eq!(find(&events, "net.rx").metric, Some(Metric::Int(100)));
    assert_eq!(find(&events, "net.rx").unix_seconds(), 1_700_000_000);
    assert_eq!(find(&events, "net.tx").metric, Some(Metric::Int(5)));
    let g = find(&events, "g");
    assert_eq!(state(g), "critical");
    assert!(
        g.description
            .as_deref()
            .unwrap()
            .contains("line 2: expected \"path value [timestamp]\", got \"what-is-this\""),
        "{g:?}"
    );
    assert_eq!(find(&events, "wifi.clients").metric, Some(Metric::Int(7)));
    assert_eq!(find(&events, "wifi.clients").tags, vec!["ap"]);
    assert_eq!(state(find(&events, "j")), "critical");
    let v = find(&events, "v");
    assert_eq!((state(v), v.metric), ("ok", Some(Metric::Float(21.5))));
    let bv = find(&events, "bv");
    assert_eq!((state(bv), bv.metric), ("critical", None));
    assert!(
        bv.description.as_deref().unwrap().contains("\"twenty\""),
        "{bv:?}"
    );
}

#[test]
fn a_timed_out_or_missing_check_is_critical() {
    let _lock = serial();
    let dir = Dir::new("critical");
    let events = once(
        &dir,
        r#"{"type": "exec", "name": "slow", "command": ["/bin/sleep", "10"], "timeout": "100ms", "kill_grace": "50ms"},
           {"type": "exec", "name": "gone", "command": ["/nonexistent/check_gone"]}"#,
    );
    let slow = find(&events, "slow");
    assert_eq!(state(slow), "critical");
    assert!(
        slow.description
            .as_deref()
            .unwrap()
            .contains("timed out after 100ms"),
        "{slow:?}"
    );
    assert_eq!(
        find(&events, "exec.slow.timed_out").metric,
        Some(Metric::Int(1))
    );
    assert_eq!(
        find(&events, "exec.slow.exit_code").metric,
        Some(Metric::Int(128 + 15))
    );
    let gone = find(&events, "gone");
    assert_eq!(state(gone), "critical");
    assert_eq!(
        gone.description.as_deref(),
        Some("cannot run /nonexistent/check_gone: no such file or directory")
    );
    assert_nothing_left(&[]);
}

#[test]
fn a_plugin_killed_by_a_signal_is_unknown_and_one_exiting_137_is_by_its_code() {
    let _lock = serial();
    let dir = Dir::new("signal");
    let events = once(
        &dir,
        r#"{"type": "exec", "name": "killed", "shell": true, "command": "echo 'CHECK OK - half done | t=1s'; kill -9 $$"},
           {"type": "exec", "name": "segv", "shell": true, "command": "echo 'CHECK OK'; kill -SEGV $$"},
           {"type": "exec", "name": "exit137", "shell": true, "command": "echo 'CHECK CRITICAL - said so'; exit 137"},
           {"type": "exec", "name": "exit2", "shell": true, "command": "echo 'CHECK CRITICAL - said so'; exit 2"}"#,
    );
    for (name, expected, code) in [
        ("killed", "unknown", 137),
        ("segv", "unknown", 139),
        ("exit137", "unknown", 137),
        ("exit2", "critical", 2),
    ] {
        let event = find(&events, name);
        assert_eq!(state(event), expected, "{event:?}");
        assert_eq!(
            find(&events, &format!("exec.{name}.exit_code")).metric,
            Some(Metric::Int(code)),
            "{name}"
        );
        let description = event.description.as_deref().unwrap();
        let by_signal = code > 128 && name != "exit137";
        assert_eq!(
            description.contains(&format!("ended with signal {}", code - 128)),
            by_signal,
            "a signal is named, an exit code is not: {description}"
        );
    }
    assert_eq!(find(&events, "killed.t").metric, Some(Metric::Int(1)));
}

#[test]
fn pipit_run_streams_daemon_lines_skips_busy_checks_and_stops_cleanly_on_sigterm() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command as Process, Stdio};

    let _lock = serial();
    let dir = Dir::new("run");
    let stopped = dir.path("stopped");
    let daemon = dir.script(
        "daemon.sh",
        &format!(
            "trap 'echo clean > {}; exit 0' TERM\ni=0\nwhile :; do i=$((i+1)); echo \"edge.temp $i\"; echo 'not a metric line'; sleep 0.05; done",
            stopped.display()
        ),
    );
    // Takes longer than its interval, and says "overlap" if it ever finds itself running twice.
    let lock = dir.path("slow.lock");
    let slow = dir.script(
        "slow.sh",
        &format!(
            "if [ -e {lock} ]; then echo overlap; exit 2; fi\ntouch {lock}\nsleep 0.35\nrm {lock}\necho 1",
            lock = lock.display()
        ),
    );
    let config = dir.path("pipit.json");
    fs::write(
        &config,
        format!(
            r#"{{"agent": {{"interval": "200ms", "shutdown_timeout": "3s"}}, "supervisor": {{"user": ""}},
  "sources": [{{"type": "exec", "name": "sensor", "mode": "daemon", "format": "graphite", "command": ["{daemon}"]}},
              {{"type": "exec", "name": "answer", "format": "value", "command": ["/bin/echo", "42"]}},
              {{"type": "exec", "name": "slow", "format": "value", "interval": "100ms", "command": ["{slow}"]}},
              {{"type": "self", "interval": "500ms"}}],
  "outputs": [{{"type": "stdout", "format": "json"}}]}}"#
        ),
    )
    .unwrap();
    let mut pipit = Process::new(env!("CARGO_BIN_EXE_pipit"))
        .args(["run", "-c", &config.display().to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(pipit.stdout.take().unwrap()).lines();
    let mut seen = (false, false, false, false);
    while seen != (true, true, true, true) {
        let line = lines.next().expect("pipit ended early").unwrap();
        let event: serde_json::Value = serde_json::from_str(&line).unwrap();
        match event["service"].as_str().unwrap() {
            "edge.temp" => seen.0 = true,
            "sensor" => {
                assert_eq!(event["state"], "critical");
                assert!(
                    event["description"]
                        .as_str()
                        .unwrap()
                        .contains("\"not a metric line\""),
                    "{line}"
                );
                seen.1 = true;
            }
            "answer" => {
                assert_eq!(event["metric"], 42);
                seen.2 = true;
            }
            "slow" => assert_eq!(event["state"], "ok", "never started twice: {line}"),
            "self.source.slow.skipped_ticks" => seen.3 = event["metric"].as_u64().unwrap() > 0,
            _ => {}
        }
    }
    let stopping = Instant::now();
    send_term(&pipit);
    for _ in lines.by_ref() {}
    let status = pipit.wait().unwrap();
    assert!(
        stopping.elapsed() < Duration::from_secs(3),
        "stopped within its deadline: {:?}",
        stopping.elapsed()
    );
    assert!(status.success(), "{status:?}");
    assert_eq!(
        fs::read_to_string(&stopped).unwrap(),
        "clean\n",
        "the daemon got SIGTERM and ended cleanly"
    );
    assert_nothing_left(&[]);
}

/// A daemon that prints far more lines than a collection takes: every line is either an event
/// on stdout or counted in `exec.<name>.dropped_lines`, and the drop is logged once.
#[test]
fn a_daemons_lines_beyond_its_queue_are_counted_and_logged_never_lost_silently() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command as Process, Stdio};

    const PRINTED: u64 = 5000;
    let _lock = serial();
    let dir = Dir::new("flood");
    let daemon = dir.script(
        "flood.sh",
        &format!(
            "awk 'BEGIN {{ for (i = 1; i <= {PRINTED}; i++) print \"flood.n\", i }}'\nexec sleep 1000"
        ),
    );
    let config = dir.path("pipit.json");
    fs::write(
        &config,
        format!(
            r#"{{"agent": {{"interval": "1s", "shutdown_timeout": "3s"}}, "supervisor": {{"user": ""}},
  "sources": [{{"type": "exec", "name": "flood", "mode": "daemon", "format": "graphite", "command": ["{daemon}"]}}],
  "outputs": [{{"type": "stdout", "format": "json"}}]}}"#
        ),
    )
    .unwrap();
    let log = dir.path("pipit.log");
    let mut pipit = Process::new(env!("CARGO_BIN_EXE_pipit"))
        .args(["run", "-c", &config.display().to_string()])
        .stdout(Stdio::piped())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(pipit.stdout.take().unwrap()).lines();
    let (mut delivered, mut dropped) = (0, 0);
    // The source reports its count every second: a line neither delivered nor counted would
    // keep the sum short past the deadline.
    let deadline = Instant::now() + Duration::from_secs(20);
    while delivered + dropped < PRINTED {
        assert!(
            Instant::now() < deadline,
            "{delivered} delivered + {dropped} counted dropped of {PRINTED} printed"
        );
        let line = lines.next().expect("pipit ended early").unwrap();
        let event: serde_json::Value = serde_json::from_str(&line).unwrap();
        match event["service"].as_str().unwrap() {
            "flood.n" => delivered += 1,
            "exec.flood.dropped_lines" => dropped = event["metric"].as_u64().unwrap(),
            _ => {}
        }
    }
    send_term(&pipit);
    for _ in lines.by_ref() {}
    assert!(pipit.wait().unwrap().success());
    assert_eq!(
        delivered + dropped,
        PRINTED,
        "each line delivered or counted, once"
    );
    assert!(
        dropped > 0,
        "the queue of {} lines overflowed",
        pipit::supervisor::DAEMON_QUEUE
    );
    let log = fs::read_to_string(&log).unwrap();
    let told = log
        .lines()
        .filter(|l| l.contains("dropped (counted in exec.flood.dropped_lines)"))
        .count();
    assert_eq!(told, 1, "one log line: {log}");
}
