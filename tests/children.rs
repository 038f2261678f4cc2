//! Children that cannot hurt the agent: a daemon printing one endless line costs a bounded share of
//! a core, and a SIGKILLed agent leaves no daemon behind to be started twice and no check running,
//! whichever user it runs as. Checks run as another user really run as that user, its group and no
//! supplementary group, and a switch that fails is reported without running anything.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::peers::{TempDir, wait_until};
use common::pipit::{Agent, pipit, text};
use common::sources::thread_names;

const DEADLINE: Duration = Duration::from_secs(20);

/// A config with one `exec` daemon source `z` running `command` (as root, in `dir`) every 100 ms,
/// and a stdout output.
fn config(dir: &Path, command: &str, max_output: usize) -> String {
    format!(
        r#"{{"agent": {{"hostname": "h", "state_dir": "{dir}"}},
            "control": {{"enabled": false}},
            "supervisor": {{"user": ""}},
            "sources": [{{"type": "exec", "name": "z", "mode": "daemon", "format": "value",
                          "interval": "100ms", "max_output": {max_output}, "command": {command}}}],
            "outputs": [{{"type": "stdout", "batch_timeout": "0s"}}]}}"#,
        dir = dir.display()
    )
}

/// User plus system CPU time of process `pid` so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields resume after the command name's closing parenthesis; utime and stime are the 12th and
    // 13th after it.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let out = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    let per_second: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    Duration::from_micros(ticks * 1_000_000 / per_second)
}

/// True while `pid` runs (a zombie waiting for its new parent to reap it does not).
fn is_running(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat[stat.rfind(')').unwrap() + 2..].starts_with('Z'),
        Err(_) => false,
    }
}

#[test]
fn an_endless_line_is_cut_counted_logged_once_and_costs_little_cpu() {
    let dir = TempDir::new("endless");
    let path = dir.path().join("pipit.json");
    fs::write(&path, config(dir.path(), r#"["cat", "/dev/zero"]"#, 256)).unwrap();
    let mut agent = Agent::start(&path, "info");
    agent.wait_stdout("the cut line counted", DEADLINE, |l| {
        l.iter().any(|l| l.starts_with("h.exec.z.cut_lines 1 "))
    });
    let window = Duration::from_secs(5);
    let before = cpu_time(agent.pid());
    let started = Instant::now();
    wait_until("the measuring window", window * 2, || {
        (started.elapsed() >= window).then_some(())
    });
    let used = cpu_time(agent.pid()) - before;
    let share = used.as_secs_f64() / started.elapsed().as_secs_f64();
    assert!(
        share < 0.05,
        "the agent used {used:?} of CPU in {:?}",
        started.elapsed()
    );
    agent.signal("TERM");
    assert_eq!(agent.wait_exit(DEADLINE).code(), Some(0));
    let stdout = agent.stdout();
    let counts: Vec<&str> = stdout
        .iter()
        .filter_map(|l| l.strip_prefix("h.exec.z.cut_lines "))
        .map(|rest| rest.split(' ').next().unwrap())
        .collect();
    assert!(
        counts.iter().all(|c| *c == "0" || *c == "1"),
        "one line, cut once: {counts:?}"
    );
    let logged = agent
        .stderr()
        .iter()
        .filter(|l| l.contains("daemon line over max_output (256 bytes)"))
        .count();
    assert_eq!(logged, 1, "{:#?}", agent.stderr());
}

/// Kills, when dropped (the test failed or not), every daemon whose pid is in the file.
struct KillDaemons<'a>(&'a Path);

impl Drop for KillDaemons<'_> {
    fn drop(&mut self) {
        let text = fs::read_to_string(self.0).unwrap_or_default();
        for pid in text.lines().filter_map(|l| l.parse().ok()) {
            drop(KillOnDrop(pid));
        }
    }
}

#[test]
fn a_sigkilled_agents_daemon_dies_with_it_and_a_restart_runs_one_copy() {
    let dir = TempDir::new("sigkill");
    let pids = dir.path().join("pids");
    let script = dir.path().join("daemon.sh");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\necho $$ >> {}\nexec sleep 1000\n",
            pids.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let _cleanup = KillDaemons(&pids);
    let path = dir.path().join("pipit.json");
    let command = format!(r#"["{}"]"#, script.display());
    fs::write(&path, config(dir.path(), &command, 256)).unwrap();
    let started = |n: usize| {
        let pids = pids.clone();
        move || {
            let text = fs::read_to_string(&pids).unwrap_or_default();
            let pids: Vec<u32> = text.lines().map(|l| l.parse().unwrap()).collect();
            (pids.len() >= n).then_some(pids)
        }
    };

    let first_agent = Agent::start(&path, "info");
    let first = wait_until("the daemon to start", DEADLINE, started(1))[0];
    assert!(is_running(first));
    first_agent.signal("KILL");
    wait_until("the daemon to die with the agent", DEADLINE, || {
        (!is_running(first)).then_some(())
    });

    let mut second_agent = Agent::start(&path, "info");
    let pids_now = wait_until("the daemon to start again", DEADLINE, started(2));
    assert_eq!(pids_now.len(), 2, "started once per agent: {pids_now:?}");
    let running: Vec<u32> = pids_now.into_iter().filter(|p| is_running(*p)).collect();
    assert_eq!(running.len(), 1, "one copy runs");
    second_agent.signal("TERM");
    assert_eq!(second_agent.wait_exit(DEADLINE).code(), Some(0));
    wait_until("the daemon to stop with the agent", DEADLINE, || {
        (!is_running(running[0])).then_some(())
    });
}

/// The children of process `parent`: id, command name and state letter of each.
fn children(parent: u32) -> Vec<(u32, String, char)> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let mut fields = stat[close + 2..].split(' ');
        let state = fields.next().and_then(|s| s.chars().next());
        let ppid = fields.next().and_then(|p| p.parse::<u32>().ok());
        if let (Some(state), Some(ppid)) = (state, ppid)
            && ppid == parent
        {
            found.push((pid, stat[open + 1..close].to_owned(), state));
        }
    }
    found
}

/// The children of process `parent` that run `comm`.
fn children_named(parent: u32, comm: &str) -> Vec<u32> {
    children(parent)
        .into_iter()
        .filter(|(_, name, _)| name == comm)
        .map(|(pid, ..)| pid)
        .collect()
}

/// The real, effective, saved and file-system ids of the `Uid:` or `Gid:` line of `pid`'s status,
/// or its `Groups:`.
fn ids(pid: u32, key: &str) -> Vec<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in {status}"));
    line.split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect()
}

/// True when the tests run as root, as CI does: only root can switch a check's user.
fn root() -> bool {
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The uid and gid of `nobody` in /etc/passwd.
fn nobody() -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[0] == "nobody").then(|| (f[2].parse().unwrap(), f[3].parse().unwrap()))
    })
}

/// Starts an agent whose one check hangs, with `supervisor` as its supervisor section (`{}`: as root,
/// checks run as `nobody`), SIGKILLs the agent and waits for the check to be gone. Returns the
/// check's `Uid:`, `Gid:` and `Groups:` ids as it ran.
fn a_hanging_check_dies_with_a_sigkilled_agent(
    name: &str,
    supervisor: &str,
) -> (Vec<u32>, Vec<u32>, Vec<u32>) {
    let dir = TempDir::new(name);
    let path = dir.path().join("pipit.json");
    let config = format!(
        r#"{{"agent": {{"hostname": "h", "state_dir": "{dir}"}},
            "control": {{"enabled": false}},
            "supervisor": {supervisor},
            "sources": [{{"type": "exec", "name": "hang", "interval": "100ms", "timeout": "10m",
                          "command": ["sleep", "1000"]}}],
            "outputs": [{{"type": "stdout"}}]}}"#,
        dir = dir.path().display()
    );
    fs::write(&path, config).unwrap();
    let agent = Agent::start(&path, "info");
    let check = wait_until("the check to start", DEADLINE, || {
        children_named(agent.pid(), "sleep").first().copied()
    });
    // Whatever happens below, the check does not outlive the test.
    let _cleanup = KillOnDrop(check);
    let credentials = (
        ids(check, "Uid:"),
        ids(check, "Gid:"),
        ids(check, "Groups:"),
    );
    agent.signal("KILL");
    wait_until("the check to die with the agent", DEADLINE, || {
        (!is_running(check)).then_some(())
    });
    credentials
}

#[test]
fn a_check_run_as_another_user_dies_with_a_sigkilled_agent() {
    let (uid, gid, groups) = a_hanging_check_dies_with_a_sigkilled_agent("sigkill-check", "{}");
    // The check is the agent's child, found above by its name `sleep`: it switched its user
    // itself before its exec.
    if let (true, Some((nobody_uid, nobody_gid))) = (root(), nobody()) {
        assert_eq!(uid, [nobody_uid; 4]);
        assert_eq!(gid, [nobody_gid; 4]);
        assert_eq!(groups, Vec::<u32>::new(), "no supplementary group");
    }
}

#[test]
fn a_check_run_as_the_agents_own_user_dies_with_a_sigkilled_agent() {
    // No default user: the check runs as the agent's own, and dies with it all the same.
    let (uid, _, _) = a_hanging_check_dies_with_a_sigkilled_agent("sigkill-own", r#"{"user": ""}"#);
    assert_eq!(uid[0], fs::metadata("/proc/self").map(|m| m.uid()).unwrap());
}

#[test]
fn a_check_run_as_the_agents_own_user_keeps_its_environment_directory_output_and_errors() {
    let dir = TempDir::new("own-user-once");
    let plain = dir.path().join("plain");
    fs::write(&plain, "not a program").unwrap();
    let path = dir.path().join("pipit.json");
    let config = format!(
        r#"{{"supervisor": {{"user": ""}},
            "sources": [
              {{"type": "exec", "name": "says", "cwd": "{dir}", "env": {{"GREETING": "hi"}},
                "shell": true, "command": "echo \"WARNING - $GREETING in $(pwd) | v=5\"; exit 1"}},
              {{"type": "exec", "name": "gone", "command": ["/nonexistent/check_gone"]}},
              {{"type": "exec", "name": "plain", "command": ["{plain}"]}},
              {{"type": "exec", "name": "found", "command": ["true"], "env": {{"PATH": "/nonexistent:/bin:/usr/bin"}}}}],
            "outputs": [{{"type": "stdout"}}]}}"#,
        dir = dir.path().display(),
        plain = plain.display()
    );
    fs::write(&path, config).unwrap();
    let out = pipit(&["once", "--json", "-c", path.to_str().unwrap()]);
    let events: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let find = |service: &str| {
        events
            .iter()
            .find(|e| e["service"] == service)
            .unwrap_or_else(|| panic!("no event {service} in {events:#?}"))
    };
    let says = find("says");
    assert_eq!(says["state"], "warning", "{says}");
    assert_eq!(
        says["description"],
        format!("WARNING - hi in {}", dir.path().display())
    );
    assert_eq!(find("says.v")["metric"], 5);
    assert_eq!(find("exec.says.exit_code")["metric"], 1);
    assert_eq!(
        find("gone")["description"],
        "cannot run /nonexistent/check_gone: no such file or directory"
    );
    assert_eq!(
        find("plain")["description"],
        format!("cannot run {}: permission denied", plain.display())
    );
    assert_eq!(find("exec.found.exit_code")["metric"], 0);
}

/// Runs `pipit once --json` on the config `path` through `prefix` (a command such as `setpriv`
/// that starts the rest) and returns its events.
fn once_through(prefix: &[&str], path: &Path) -> Vec<serde_json::Value> {
    let out = Command::new(prefix[0])
        .args(&prefix[1..])
        .args([common::pipit::binary(), "once", "--json", "-c"])
        .arg(path)
        .output()
        .unwrap();
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The event `service` among `events`.
fn event<'a>(events: &'a [serde_json::Value], service: &str) -> &'a serde_json::Value {
    events
        .iter()
        .find(|e| e["service"] == service)
        .unwrap_or_else(|| panic!("no event {service} in {events:#?}"))
}

#[test]
fn a_check_run_as_another_user_runs_as_its_user_and_group_with_no_other_group() {
    let (true, Some((uid, gid))) = (root(), nobody()) else {
        return; // Only root can switch a check's user.
    };
    let dir = TempDir::new("as-nobody");
    let path = dir.path().join("pipit.json");
    let ids = r#""shell": true, "command": "echo \"OK - $(id -u) $(id -g) $(id -G)\"""#;
    let config = format!(
        r#"{{"supervisor": {{"user": "nobody"}},
            "sources": [
              {{"type": "exec", "name": "default", {ids}}},
              {{"type": "exec", "name": "group", "group": "root", {ids}}},
              {{"type": "exec", "name": "root", "user": "root", {ids}}}],
            "outputs": [{{"type": "stdout"}}]}}"#
    );
    fs::write(&path, config).unwrap();
    // The agent has supplementary groups of its own (4 and 20); no check inherits them.
    let events = once_through(&["setpriv", "--groups=0,4,20"], &path);
    let said = |service| event(&events, service)["description"].clone();
    assert_eq!(said("default"), format!("OK - {uid} {gid} {gid}"));
    assert_eq!(said("group"), format!("OK - {uid} 0 0"));
    assert_eq!(said("root"), "OK - 0 0 0");
}

#[test]
fn a_user_switch_that_fails_says_why_and_runs_nothing() {
    if !root() || nobody().is_none() {
        return;
    }
    let dir = TempDir::new("switch-fails");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let ran = dir.path().join("ran");
    let path = dir.path().join("pipit.json");
    let config = format!(
        r#"{{"supervisor": {{"user": "nobody"}},
            "sources": [{{"type": "exec", "name": "c", "user": "nobody",
                          "command": ["touch", "{ran}"]}}],
            "outputs": [{{"type": "stdout"}}]}}"#,
        ran = ran.display()
    );
    fs::write(&path, config).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let not_run = |events: &[serde_json::Value], why: &str| {
        let c = event(events, "c");
        assert_eq!(c["state"], "critical", "{c}");
        assert_eq!(c["description"], why, "{c}");
        assert!(
            events.iter().all(|e| e["service"] != "exec.c.exit_code"),
            "{events:#?}"
        );
        assert!(!ran.exists(), "the command ran");
    };
    // Root in a user namespace of its own, where no other user exists and setgroups(2) is
    // denied: the agent believes it can switch, and the switch fails in the check's starter.
    let namespace = ["unshare", "--user", "--map-root-user"];
    if Command::new(namespace[0])
        .args(&namespace[1..])
        .arg("true")
        .status()
        .is_ok_and(|s| s.success())
    {
        not_run(
            &once_through(&namespace, &path),
            "cannot run touch: cannot switch to user nobody: setgroups failed: Operation not permitted (os error 1)",
        );
    }
    // Another user, from an agent that is not root: refused before anything is started.
    not_run(
        &once_through(
            &["setpriv", "--reuid=1", "--regid=1", "--clear-groups"],
            &path,
        ),
        "cannot run touch: running as user nobody needs pipit to run as root",
    );
}

#[test]
fn an_exec_daemons_smaller_stack_holds_json_nested_as_deep_as_the_parser_takes() {
    // The deepest collection of an `exec` daemon, on its own thread (whose stack is smaller than
    // the default), in the debug build whose frames are the largest: an overflow would abort the
    // agent.
    let dir = TempDir::new("deep-json");
    let depth = 127;
    let objects = format!("{}1{}\n", r#"{"a":"#.repeat(depth), "}".repeat(depth));
    let arrays = format!("{}{}\n", "[".repeat(depth), "]".repeat(depth));
    fs::write(dir.path().join("objects.json"), objects).unwrap();
    fs::write(dir.path().join("arrays.json"), arrays).unwrap();
    let path = dir.path().join("pipit.json");
    let source = |name: &str| {
        let file = dir.path().join(format!("{name}.json"));
        format!(
            r#"{{"type": "exec", "name": "{name}", "interval": "100ms", "format": "json",
                "mode": "daemon", "shell": true,
                "command": "while cat {}; do sleep 0.05; done"}}"#,
            file.display()
        )
    };
    let config = format!(
        r#"{{"agent": {{"hostname": "h", "state_dir": "{dir}"}},
            "control": {{"enabled": false}},
            "supervisor": {{"user": ""}},
            "sources": [{objects}, {arrays}],
            "outputs": [{{"type": "stdout", "batch_timeout": "0s"}}]}}"#,
        dir = dir.path().display(),
        objects = source("objects"),
        arrays = source("arrays"),
    );
    fs::write(&path, config).unwrap();
    let mut agent = Agent::start(&path, "info");
    agent.wait_stdout("five collections of each", DEADLINE, |lines| {
        ["objects", "arrays"].iter().all(|name| {
            let prefix = format!("h.exec.{name}.cut_lines 0 ");
            lines.iter().filter(|l| l.starts_with(&prefix)).count() >= 5
        })
    });
    agent.signal("TERM");
    assert_eq!(agent.wait_exit(DEADLINE).code(), Some(0));
}

#[test]
fn exec_checks_share_one_thread_and_leave_it_on_reload() {
    let dir = TempDir::new("shared-thread");
    let path = dir.path().join("pipit.json");
    let config = |n: usize| {
        let sources: Vec<String> = (1..=n)
            .map(|i| {
                format!(
                    r#"{{"type": "exec", "name": "c{i}", "interval": "100ms", "command": ["true"]}}"#
                )
            })
            .collect();
        format!(
            r#"{{"agent": {{"hostname": "h", "state_dir": "{dir}"}},
                "control": {{"enabled": false}},
                "supervisor": {{"user": ""}},
                "sources": [{sources}],
                "outputs": [{{"type": "stdout", "batch_timeout": "0s"}}]}}"#,
            dir = dir.path().display(),
            sources = sources.join(", ")
        )
    };
    let runs = |lines: &[String], name: &str| {
        let prefix = format!("h.exec.{name}.exit_code 0 ");
        lines.iter().filter(|l| l.starts_with(&prefix)).count()
    };
    fs::write(&path, config(20)).unwrap();
    let mut agent = Agent::start(&path, "info");
    agent.wait_stdout("every check to run", DEADLINE, |lines| {
        (1..=20).all(|i| runs(lines, &format!("c{i}")) > 0)
    });
    let names = thread_names(agent.pid());
    assert_eq!(
        names.iter().filter(|n| *n == "checks").count(),
        1,
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n.starts_with("src/")), "{names:?}");

    fs::write(&path, config(1)).unwrap();
    agent.signal("HUP");
    agent.wait_stderr("the reload", DEADLINE, |lines| {
        lines
            .iter()
            .any(|l| l.contains("reloaded") && l.contains("1 source(s)"))
    });
    let before = agent.stdout();
    let kept = runs(&before, "c1");
    // Time passing is the thing under test: ten intervals in which removed checks must not run.
    std::thread::sleep(Duration::from_secs(1));
    let after = agent.stdout();
    assert!(runs(&after, "c1") > kept, "the kept check runs on");
    let names = thread_names(agent.pid());
    assert_eq!(
        names.iter().filter(|n| *n == "checks").count(),
        1,
        "one for the agent's life: {names:?}"
    );
    for i in 2..=20 {
        let name = format!("c{i}");
        assert!(
            runs(&after, &name) <= runs(&before, &name) + 1,
            "{name} still runs after its removal"
        );
    }
    agent.signal("TERM");
    assert_eq!(agent.wait_exit(DEADLINE).code(), Some(0));
}

/// Kills the process, if it still runs, when dropped.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if is_running(self.0) {
            let _ = Command::new("kill")
                .args(["-KILL", &self.0.to_string()])
                .status();
        }
    }
}

/// An agent running `sh -c SCRIPT` as the check `leaves` every 100 ms (its temporary directory
/// beside it), after `sample` has seen pipit's children after each of its first 30 runs.
fn after_30_runs_of(
    script: &str,
    mut sample: impl FnMut(Vec<(u32, String, char)>),
) -> (TempDir, Agent) {
    let dir = TempDir::new("leaves");
    let path = dir.path().join("pipit.json");
    let config = format!(
        r#"{{"agent": {{"hostname": "h", "state_dir": "{dir}"}},
            "control": {{"enabled": false}},
            "sources": [{{"type": "exec", "name": "leaves", "interval": "100ms",
                          "command": ["sh", "-c", "{script}"]}}],
            "outputs": [{{"type": "stdout", "batch_timeout": "0s"}}]}}"#,
        dir = dir.path().display()
    );
    fs::write(&path, config).unwrap();
    let agent = Agent::start(&path, "info");
    for runs in 1..=30 {
        agent.wait_stdout("the next run", DEADLINE, |lines| {
            lines
                .iter()
                .filter(|l| l.starts_with("h.exec.leaves.exit_code 0 "))
                .count()
                >= runs
        });
        sample(children(agent.pid()));
    }
    (dir, agent)
}

#[test]
fn what_a_check_leaves_outside_its_group_is_reaped_not_left_a_zombie() {
    // Each run leaves a process in a session of its own, which outlives the run by 150 ms: pipit,
    // the subreaper, adopts it, and it ends as pipit's child.
    let mut most_zombies = 0;
    let (_dir, agent) = after_30_runs_of("setsid sleep 0.2 & sleep 0.05", |children| {
        let zombies = children.iter().filter(|(.., state)| *state == 'Z').count();
        most_zombies = most_zombies.max(zombies);
    });
    // Those that ended since the last end of a run wait for the next one; none piles up (without
    // reaping, nearly every one of the 30 would be a zombie by now).
    assert!(most_zombies <= 10, "{most_zombies} zombies at once");
    let adopted = children_named(agent.pid(), "sleep").len();
    assert!(adopted <= 10, "{adopted} adopted processes, running or not");
}

#[test]
fn what_a_check_leaves_in_its_group_is_killed_with_it_and_reaped() {
    // Each run leaves a `sleep` in its process group and ends at once: pipit kills the group at
    // the run's end, adopts the killed `sleep` as the subreaper, and reaps it.
    let (mut most_running, mut most_zombies) = (0, 0);
    after_30_runs_of("sleep 1000 & echo 1", |children| {
        let sleeps: Vec<char> = children
            .into_iter()
            .filter(|(_, name, _)| name == "sleep")
            .map(|(.., state)| state)
            .collect();
        most_zombies = most_zombies.max(sleeps.iter().filter(|&&s| s == 'Z').count());
        most_running = most_running.max(sleeps.iter().filter(|&&s| s != 'Z').count());
    });
    // A sample may catch the `sleep` of a run still going, one killed that has not run to its end
    // yet (a loaded machine), and one ended but not reaped yet; without the kill every one of the
    // 30 would still be running, without reaping a zombie.
    assert!(most_running <= 3, "{most_running} sleeps running at once");
    assert!(most_zombies <= 5, "{most_zombies} zombies at once");
}
