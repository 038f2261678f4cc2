//! Helpers of the tests of pipit's files and spool against the pipit binary: a generator of
//! numbered datapoints in two waves, the output counters pipit prints, a tmpfs mounted for a test.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::pipit::Agent;

/// An `exec` source printing `first` datapoints `test.n`, then, once the file `trigger` exists,
/// `second` more; datapoint i has the value i and the timestamp base + i, inside carbon's 1 h
/// retention (first + second stays below 3,400).
pub fn two_waves(first: u64, second: u64, trigger: &Path) -> String {
    let base = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 3_400;
    let script = format!(
        "import os, sys, time\n\
         def wave(a, b):\n\
         \x20   for i in range(a, b):\n\
         \x20       sys.stdout.write('test.n %d %d\\n' % (i, {base} + i))\n\
         \x20       if i % 100 == 99:\n\
         \x20           sys.stdout.flush(); time.sleep(0.05)\n\
         \x20   sys.stdout.flush()\n\
         wave(0, {first})\n\
         while not os.path.exists({trigger:?}):\n\
         \x20   time.sleep(0.05)\n\
         wave({first}, {first} + {second})\n\
         time.sleep(100000)\n",
        trigger = trigger.display().to_string()
    );
    let command = serde_json::to_string(&["python3", "-u", "-c", &script]).unwrap();
    format!(
        r#"{{"type": "exec", "name": "gen", "mode": "daemon", "format": "graphite", "interval": "50ms", "command": {command}}}"#
    )
}

/// The latest value of the counter `name` of the output `graphite` that pipit printed (a `self`
/// source and a stdout output in graphite format); 0 before the first.
pub fn counter(agent: &Agent, name: &str) -> u64 {
    let prefix = format!("h.self.output.graphite.{name} ");
    agent
        .stdout()
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix(&prefix)?.split(' ').next()?.parse().ok())
        .unwrap_or(0)
}

/// True when a log line of the agent contains `text`.
pub fn log_has(agent: &Agent, text: &str) -> bool {
    agent.stderr().iter().any(|l| l.contains(text))
}

/// Stops the agent with SIGTERM and checks that it exits 0.
pub fn stop(mut agent: Agent) {
    agent.signal("TERM");
    assert!(agent.wait_exit(Duration::from_secs(10)).success());
}

/// A tmpfs mounted by the test, unmounted (lazily) when dropped, also on failure.
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (mount's syntax: `256k`) at `path`, mode 0700.
    pub fn mount(path: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(path).unwrap();
        mount(
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ],
            path,
        );
        Tmpfs(path.to_owned())
    }

    /// Remounts it `ro` or `rw`.
    pub fn remount(&self, how: &str) {
        mount(&["-o", &format!("remount,{how}")], &self.0);
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn mount(args: &[&str], path: &Path) {
    let status = Command::new("mount").args(args).arg(path).status().unwrap();
    assert!(status.success(), "mount {args:?} {}", path.display());
}
