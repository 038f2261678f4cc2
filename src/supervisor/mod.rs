//! Child processes: one supervisor thread starts, times out, kills and reaps every child pipit has.
//!
//! Sources never touch a process. They ask the supervisor, through its [`Supervisor`] handle, to
//! run a command (the reply comes back on a channel of their own) or to keep a daemon running
//! (its output lines come back on a channel as they are printed). The supervisor thread waits on
//! every child's pipes at once with poll(2), so two pipes never deadlock and a child never blocks
//! on a full one; it enforces timeouts on whole process groups and limits how many checks run at
//! once.

pub mod account;
pub mod capture;
mod command;
mod config;
mod process;
mod spawn;
mod thread;

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};

use crate::config::duration;
use crate::quote::quote;

pub use account::Account;
pub use capture::Captured;
pub use command::read as read_command;
pub use config::{SupervisorConfig, read as read_config};
pub use process::Exit;

/// Set by [`claim_every_child`].
static OWNS_EVERY_CHILD: AtomicBool = AtomicBool::new(false);

/// Call first in pipit's `main`: says that every child of this process is the supervisor's, so a
/// child it does not know is a descendant of one of them that pipit, their subreaper, adopted and
/// may reap. A program embedding the supervisor may start children of its own and does not call it.
pub fn claim_every_child() {
    OWNS_EVERY_CHILD.store(true, Ordering::Relaxed);
}

/// True when [`claim_every_child`] was called.
fn owns_every_child() -> bool {
    OWNS_EVERY_CHILD.load(Ordering::Relaxed)
}

/// What to run and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The program and its arguments; the program is looked up in `PATH` unless it has a `/`.
    pub argv: Vec<String>,
    /// Variables added to (or replacing those of) pipit's environment.
    pub env: BTreeMap<String, String>,
    /// The working directory; pipit's own when `None`.
    pub cwd: Option<PathBuf>,
    /// The user to run as when pipit is root; the supervisor's default user when `None`.
    pub user: Option<Account>,
    /// The group id to run as; the user's primary group when `None`.
    pub group: Option<u32>,
    /// How long a check may run before its group gets SIGTERM; `None` for daemons.
    pub timeout: Option<Duration>,
    /// Time between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
    /// The most bytes kept of each of stdout and stderr (for a daemon: of each line).
    pub max_output: usize,
}

/// A check that ran to its end (or was ended).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// How the process ended.
    pub exit: Exit,
    /// True when it reached its timeout and was signalled.
    pub timed_out: bool,
    /// From start to end.
    pub duration: Duration,
    /// Its standard output, up to `max_output`.
    pub stdout: Captured,
    /// Its standard error, up to `max_output`.
    pub stderr: Captured,
    /// Its process group id (its own pid).
    pub pgid: u32,
}

/// Why the supervisor did not run a command (a check or a daemon) to its end: it could not spawn
/// it, skipped it, or is stopping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpawnError {
    /// It could not be started: the program does not exist, is not executable, the user cannot
    /// be switched to. The text says which; fix the source's `command` or `user`.
    NotStarted(String),
    /// It was not started because the same check is still running, or no slot freed up within
    /// its timeout (`supervisor.max_checks`). The text says which; a check that often overruns
    /// needs a longer interval or more slots.
    Skipped(String),
    /// The supervisor is stopping or gone: pipit is shutting down; nothing to do.
    Stopped,
}

impl std::error::Error for SpawnError {}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpawnError::NotStarted(why) => f.write_str(why),
            SpawnError::Skipped(why) => write!(f, "skipped: {why}"),
            SpawnError::Stopped => f.write_str("the supervisor is stopping"),
        }
    }
}

/// What a daemon's channel carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonEvent {
    /// A line of its stdout (without the newline), at most `max_output` bytes.
    Line {
        /// The line.
        line: Captured,
        /// When it was read.
        time: SystemTime,
    },
    /// It ended; it is started again after `restart_in`.
    Exited {
        /// How it ended.
        exit: Exit,
        /// How long it had run.
        ran: Duration,
        /// The last line it wrote to stderr, if any.
        stderr: String,
        /// When it will be started again.
        restart_in: Duration,
    },
    /// It could not be started; another try comes after `restart_in`.
    NotStarted {
        /// Why.
        error: String,
        /// When the next try comes.
        restart_in: Duration,
    },
}

impl DaemonEvent {
    /// What an end or a failed start says, as one line: how it ended, its last line on stderr,
    /// and when it is started again. `None` for a line of output.
    pub fn trouble(&self) -> Option<String> {
        match self {
            DaemonEvent::Line { .. } => None,
            DaemonEvent::Exited {
                exit,
                ran,
                stderr,
                restart_in,
            } => {
                let mut message = format!("exited with {exit} after {}", duration::format(*ran));
                if !stderr.is_empty() {
                    let _ = write!(message, " (stderr: {})", quote(stderr));
                }
                let _ = write!(message, "; restarting in {}", duration::format(*restart_in));
                Some(message)
            }
            DaemonEvent::NotStarted { error, restart_in } => Some(format!(
                "{error}; trying again in {}",
                duration::format(*restart_in)
            )),
        }
    }
}

/// How many lines a daemon's channel holds between two collections; further lines are dropped
/// and counted.
pub const DAEMON_QUEUE: usize = 1024;

/// A request to the supervisor thread.
#[derive(Debug)]
enum Request {
    Run {
        key: String,
        command: Arc<Command>,
        reply: Reply,
        queued: Instant,
    },
    StartDaemon {
        id: u64,
        command: Arc<Command>,
        events: Sender<DaemonEvent>,
        dropped: Arc<AtomicU64>,
    },
    StopDaemon {
        id: u64,
    },
    Stop {
        deadline: Instant,
    },
}

/// How a check run ended, as the supervisor answers it.
pub type RunResult = Result<Finished, SpawnError>;

/// The end of a run, as sent to a [`Reply`]'s channel.
#[derive(Debug)]
pub struct Answer {
    /// The tag of the [`Reply`] it answers.
    pub tag: u64,
    /// How the run ended.
    pub result: RunResult,
    /// When it was sent: the run is over at this instant, however long the answer then waits
    /// to be read.
    pub sent: Instant,
}

/// Where the end of a run is sent: a channel that may carry the ends of many runs, each with the
/// tag its request gave.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The channel.
    pub to: Sender<Answer>,
    /// What the answer carries back, to tell the runs sharing the channel apart.
    pub tag: u64,
}

impl Reply {
    /// Sends the end of the run; nothing when the asker is gone.
    fn send(self, result: RunResult) {
        let _ = self.to.send(Answer {
            tag: self.tag,
            result,
            sent: Instant::now(),
        });
    }
}

/// The handle through which sources use the supervisor; cheap to clone.
#[derive(Debug, Clone)]
pub struct Supervisor {
    requests: Sender<Request>,
    wake: Arc<UnixStream>,
    next_id: Arc<AtomicU64>,
}

impl Supervisor {
    /// A handle to no supervisor: every request fails with [`SpawnError::Stopped`]. For tests of
    /// sources that run no commands.
    #[cfg(test)]
    pub fn stopped() -> Supervisor {
        let (requests, _) = unbounded();
        let (wake, _) = UnixStream::pair().expect("a socket pair for a test");
        Supervisor {
            requests,
            wake: Arc::new(wake),
            next_id: Arc::new(AtomicU64::new(0)),
        }
    }

    fn send(&self, request: Request) -> Result<(), SpawnError> {
        self.requests
            .send(request)
            .map_err(|_| SpawnError::Stopped)?;
        // The socket is non-blocking: when its buffer is full a wake-up is already pending.
        let _ = (&*self.wake).write(&[1]);
        Ok(())
    }

    /// Runs `command` as the check `key` and waits for it to end. A check whose `key` is still
    /// running (or waiting for a slot) is not started twice: the second request is skipped.
    pub fn run(&self, key: &str, command: Arc<Command>) -> RunResult {
        let (to, result) = bounded(1);
        self.submit(key, command, Reply { to, tag: 0 })?;
        result
            .recv()
            .map_or(Err(SpawnError::Stopped), |answer| answer.result)
    }

    /// Asks for the run of `command` as the check `key`, as [`Supervisor::run`], without waiting:
    /// its end is sent to `reply` (never, when the supervisor is gone: its channel then
    /// disconnects once every other sender is gone too).
    pub fn submit(&self, key: &str, command: Arc<Command>, reply: Reply) -> Result<(), SpawnError> {
        self.send(Request::Run {
            key: key.to_owned(),
            command,
            reply,
            queued: Instant::now(),
        })
    }

    /// Starts `command` as a daemon, restarted with backoff whenever it ends, until the returned
    /// handle is dropped.
    pub fn start_daemon(&self, command: Arc<Command>) -> Result<Daemon, SpawnError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (events, rx) = bounded(DAEMON_QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        self.send(Request::StartDaemon {
            id,
            command,
            events,
            dropped: dropped.clone(),
        })?;
        Ok(Daemon {
            id,
            events: rx,
            dropped,
            supervisor: self.clone(),
        })
    }
}

/// A daemon kept running by the supervisor; dropping it stops the daemon (SIGTERM to its group,
/// SIGKILL after its grace period).
#[derive(Debug)]
pub struct Daemon {
    id: u64,
    /// Its lines and exits, as they happen.
    pub events: Receiver<DaemonEvent>,
    dropped: Arc<AtomicU64>,
    supervisor: Supervisor,
}

impl Daemon {
    /// Lines dropped so far because the channel was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.supervisor.send(Request::StopDaemon { id: self.id });
    }
}

/// The running supervisor thread, as its owner (the agent, or `pipit once`) holds it.
#[derive(Debug)]
pub struct SupervisorThread {
    handle: Supervisor,
    thread: Option<JoinHandle<()>>,
}

impl SupervisorThread {
    /// Starts the supervisor thread.
    pub fn start(config: SupervisorConfig) -> io::Result<SupervisorThread> {
        let (wake_tx, wake_rx) = UnixStream::pair()?;
        wake_tx.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        let (requests, requests_rx) = unbounded();
        if let Err(e) = crate::sys::become_subreaper() {
            log::warn!(target: "supervisor", "cannot become the reaper of orphaned check processes: {e}");
        }
        if let Err(e) = crate::sys::no_inherited_descriptors() {
            log::warn!(target: "supervisor", "cannot keep inherited descriptors from commands: {e}");
        }
        let worker = thread::Worker::new(config, requests_rx, wake_rx);
        let thread = crate::lifeline::spawn("supervisor".into(), move || worker.run())?;
        let handle = Supervisor {
            requests,
            wake: Arc::new(wake_tx),
            next_id: Arc::new(AtomicU64::new(0)),
        };
        Ok(SupervisorThread {
            handle,
            thread: Some(thread),
        })
    }

    /// A handle for sources.
    pub fn handle(&self) -> Supervisor {
        self.handle.clone()
    }

    /// Starts stopping: queued checks are refused, every child gets SIGTERM, and SIGKILL after its
    /// grace period or at `deadline`, whichever comes first.
    pub fn begin_stop(&self, deadline: Instant) {
        let _ = self.handle.send(Request::Stop { deadline });
    }

    /// Stops (if not begun) and waits for the thread until `deadline` (plus a moment to reap what
    /// was killed at the deadline); true when it has ended.
    pub fn stop(&mut self, deadline: Instant) -> bool {
        self.begin_stop(deadline);
        let Some(thread) = self.thread.take() else {
            return true;
        };
        let limit = deadline + Duration::from_millis(200);
        while !thread.is_finished() && Instant::now() < limit {
            std::thread::sleep(Duration::from_millis(2));
        }
        if thread.is_finished() {
            let _ = thread.join();
            true
        } else {
            log::warn!(target: "supervisor", "children still not reaped at the stop deadline; leaving them");
            false
        }
    }
}

impl Drop for SupervisorThread {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop(Instant::now() + Duration::from_secs(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn troubles_say_how_it_ended_and_when_it_starts_again() {
        let exited = DaemonEvent::Exited {
            exit: Exit::Code(1),
            ran: Duration::from_millis(1500),
            stderr: "no \"ubus\"".into(),
            restart_in: Duration::from_secs(2),
        };
        assert_eq!(
            exited.trouble().as_deref(),
            Some(
                "exited with exit code 1 after 1500ms (stderr: \"no \\\"ubus\\\"\"); restarting in 2s"
            )
        );
        let not_started = DaemonEvent::NotStarted {
            error: "cannot run x: permission denied".into(),
            restart_in: Duration::from_secs(1),
        };
        assert_eq!(
            not_started.trouble().as_deref(),
            Some("cannot run x: permission denied; trying again in 1s")
        );
        let line = DaemonEvent::Line {
            line: Captured::default(),
            time: SystemTime::UNIX_EPOCH,
        };
        assert_eq!(line.trouble(), None);
    }
}
