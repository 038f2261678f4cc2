//! Running the `pipit` binary from tests: one-shot commands and a long-running agent whose
//! output is read as it comes.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::peers::wait_until;

/// The binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_pipit")
}

/// A fixture tree under tests/fixtures.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Runs `pipit ARGS` to completion with a clean log filter.
pub fn pipit(args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .env("RUST_LOG", "info")
        .output()
        .expect("the pipit binary runs")
}

/// The text of a captured stream.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// How many events the source `l` reported collecting, from its debug log lines (the agent runs
/// with `src.l=debug`).
pub fn collected(stderr: &[String]) -> usize {
    stderr
        .iter()
        .filter_map(|l| {
            l.strip_prefix("DEBUG src.l: collected ")?
                .split(' ')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .sum()
}

/// The number right after `marker` in the first line that holds it.
pub fn number_after(lines: &[String], marker: &str) -> u64 {
    let line = lines
        .iter()
        .find(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("no line holds {marker:?}"));
    line.split(marker)
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after {marker:?} in {line:?}"))
}

/// A `pipit run` process whose stdout and stderr lines are collected as they arrive.
pub struct Agent {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

fn collect(stream: impl Read + Send + 'static, into: Arc<Mutex<Vec<String>>>) {
    thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            match line {
                Ok(line) => into.lock().unwrap().push(line),
                Err(_) => return,
            }
        }
    });
}

/// Waits until the lines collected in `lines` satisfy `ok`; returns them.
fn wait_lines(
    lines: &Mutex<Vec<String>>,
    what: &str,
    deadline: Duration,
    ok: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    wait_until(what, deadline, || {
        let lines = lines.lock().unwrap().clone();
        ok(&lines).then_some(lines)
    })
}

impl Agent {
    /// Starts `pipit run -c CONFIG` with `RUST_LOG` set to `log`.
    pub fn start(config: &Path, log: &str) -> Agent {
        Agent::start_with(config, log, &[])
    }

    /// Starts `pipit run -c CONFIG` with `RUST_LOG` set to `log` and the variables `env` added.
    pub fn start_with(config: &Path, log: &str, env: &[(&str, &str)]) -> Agent {
        Agent::spawn(Command::new(binary()), config, log, env)
    }

    /// Starts `pipit run -c CONFIG` inside the network namespace `netns` (`ip netns exec`, which
    /// execs pipit itself: the pid is pipit's).
    pub fn start_in(netns: &str, config: &Path, log: &str) -> Agent {
        Agent::start_through(&["ip", "netns", "exec", netns], config, log)
    }

    /// Starts `pipit run -c CONFIG` through `prefix`, a command that execs the rest of its
    /// arguments (such as `unshare --mount`), so that the pid is pipit's.
    pub fn start_through(prefix: &[&str], config: &Path, log: &str) -> Agent {
        let mut command = Command::new(prefix[0]);
        command.args(&prefix[1..]).arg(binary());
        Agent::spawn(command, config, log, &[])
    }

    fn spawn(mut command: Command, config: &Path, log: &str, env: &[(&str, &str)]) -> Agent {
        let mut child = command
            .args(["run", "-c"])
            .arg(config)
            .env("RUST_LOG", log)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the pipit binary starts");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        collect(child.stdout.take().unwrap(), stdout.clone());
        collect(child.stderr.take().unwrap(), stderr.clone());
        Agent {
            child,
            stdout,
            stderr,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`TERM`, `HUP`, `INT`, `KILL`).
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name} {} failed", self.pid());
    }

    /// Stdout lines so far.
    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// Stderr lines so far.
    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until the stdout lines satisfy `ok`.
    pub fn wait_stdout(
        &self,
        what: &str,
        deadline: Duration,
        ok: impl Fn(&[String]) -> bool,
    ) -> Vec<String> {
        wait_lines(&self.stdout, what, deadline, ok)
    }

    /// Waits until the stderr lines satisfy `ok`.
    pub fn wait_stderr(
        &self,
        what: &str,
        deadline: Duration,
        ok: impl Fn(&[String]) -> bool,
    ) -> Vec<String> {
        wait_lines(&self.stderr, what, deadline, ok)
    }

    /// Waits for the process to exit, then for its output to be read to the end.
    pub fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        let end = Instant::now() + deadline;
        let status = wait_until("pipit to exit", deadline, || self.child.try_wait().unwrap());
        // The reader threads finish once the pipes close; give them until the same deadline.
        let out = self.stdout.clone();
        let err = self.stderr.clone();
        while Instant::now() < end && (Arc::strong_count(&out) > 2 || Arc::strong_count(&err) > 2) {
            thread::sleep(Duration::from_millis(5));
        }
        status
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
