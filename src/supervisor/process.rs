//! One running child and its process group: the timeout, SIGTERM then SIGKILL to the group, and
//! reaping.
//!
//! The order that keeps signals safe: the end of the group's leader is noticed without reaping it
//! ([`sys::has_exited`]), the rest of the group is killed while the leader's id (which is the
//! group's id) is still reserved by its zombie, and only then is the leader reaped. What the group
//! leaves behind is reaped later by group ([`Lingering`]).

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use super::capture::Pipe;
use super::spawn::Spawned;
use crate::sys::{self, GroupLeft, Signal};

/// How often a running child is checked for its end where the kernel cannot notify it (before
/// Linux 5.3), or a killed group for members to reap. A child that ends usually wakes the
/// supervisor at once anyway, by closing its pipes.
pub const EXIT_TICK: Duration = Duration::from_millis(50);
/// How often a child whose end the kernel notifies is checked anyway.
const NOTIFIED_TICK: Duration = Duration::from_secs(1);
/// The check interval just after a child closed its pipes, when its end is imminent.
const CLOSE_TICK: Duration = Duration::from_millis(1);
/// How long after its pipes closed a child is checked at [`CLOSE_TICK`].
const CLOSE_WINDOW: Duration = Duration::from_millis(20);

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this code.
    Code(i32),
    /// A signal ended it.
    Signal(i32),
    /// Its status could not be read (another part of the program reaped it).
    Unknown,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit code {c}"),
            Exit::Signal(s) => write!(f, "signal {s}"),
            Exit::Unknown => f.write_str("an unknown status"),
        }
    }
}

/// What became of a child whose leader has been reaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    /// How it ended.
    pub exit: Exit,
    /// True when it was still running at its timeout and was signalled.
    pub timed_out: bool,
    /// From start to the leader's end.
    pub duration: Duration,
    /// Its process group, which may still hold killed members for a moment.
    pub pgid: u32,
}

/// A running child, the leader of its own process group.
#[derive(Debug)]
pub struct Process {
    pid: u32,
    /// The read end of its stdout.
    pub stdout: Pipe,
    /// The read end of its stderr.
    pub stderr: Pipe,
    started: Instant,
    deadline: Option<Instant>,
    grace: Duration,
    kill_at: Option<Instant>,
    killed: bool,
    timed_out: bool,
    closed_at: Option<Instant>,
    exit_notifier: Option<OwnedFd>,
    /// Set when poll(2) found the exit notifier ready: the child has ended.
    exit_seen: bool,
}

impl Process {
    /// Watches a started child; it is signalled `timeout` after `started` (never, with `None`).
    pub fn new(
        spawned: Spawned,
        started: Instant,
        timeout: Option<Duration>,
        grace: Duration,
    ) -> Process {
        Process {
            pid: spawned.pid,
            stdout: Pipe::new(spawned.stdout),
            stderr: Pipe::new(spawned.stderr),
            started,
            deadline: timeout.map(|t| started + t),
            grace,
            kill_at: None,
            killed: false,
            timed_out: false,
            closed_at: None,
            exit_notifier: spawned.exit_notifier,
            exit_seen: false,
        }
    }

    /// Its process id, which is also its process group's.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// A descriptor that becomes readable when the child ends, where the kernel offers one.
    pub fn exit_fd(&self) -> Option<RawFd> {
        self.exit_notifier.as_ref().map(|fd| fd.as_raw_fd())
    }

    /// Records that poll(2) found [`Process::exit_fd`] ready.
    pub fn exit_seen(&mut self) {
        self.exit_seen = true;
    }

    /// Sends SIGTERM to the group now and SIGKILL after the grace period, or at `latest` if that
    /// comes first. Does nothing if it is already being stopped.
    pub fn terminate(&mut self, now: Instant, latest: Option<Instant>) {
        let kill_at = latest.map_or(now + self.grace, |l| l.min(now + self.grace));
        match self.kill_at {
            Some(at) if at <= kill_at => {}
            Some(_) => self.kill_at = Some(kill_at),
            None if self.killed => {}
            None => {
                self.signal(Signal::Term);
                self.kill_at = Some(kill_at);
            }
        }
    }

    fn signal(&self, signal: Signal) {
        if let Err(e) = sys::signal_group(self.pid, signal) {
            log::warn!(target: "supervisor", "cannot signal process group {}: {e}", self.pid);
        }
    }

    /// Moves the timers on and looks for the leader's end. When it has ended, the rest of its
    /// group is killed, the leader reaped, and what became of it returned; the caller then reads
    /// what is left in the pipes and hands the group to [`Lingering`].
    pub fn check(&mut self, now: Instant) -> Option<Ended> {
        if self.closed_at.is_none() && self.stdout.is_closed() && self.stderr.is_closed() {
            self.closed_at = Some(now);
        }
        // Its end first: a child that ended just before its deadline did not time out. Where the
        // kernel notifies the end, what the last poll saw is enough, unless a timer is due.
        let due = (self.deadline.is_some_and(|d| now >= d) && !self.timed_out)
            || self.kill_at.is_some_and(|k| now >= k);
        let exited = self.exit_seen
            || ((self.exit_notifier.is_none() || due)
                && sys::has_exited(self.pid).unwrap_or_else(|e| {
                    // Only if another part of the program reaped it; the wait below then says so
                    // at once.
                    log::warn!(target: "supervisor", "cannot check child {}: {e}", self.pid);
                    true
                }));
        if !exited {
            if self.deadline.is_some_and(|d| now >= d) && !self.timed_out {
                self.timed_out = true;
                self.terminate(now, None);
            }
            if self.kill_at.is_some_and(|k| now >= k) {
                self.kill_at = None;
                self.killed = true;
                self.signal(Signal::Kill);
            }
            return None;
        }
        let duration = now.saturating_duration_since(self.started);
        // The leader is a zombie: its id still names the group. Nothing may outlive it.
        self.signal(Signal::Kill);
        let exit = match sys::wait_for(self.pid) {
            Ok(status) => status
                .code()
                .map(Exit::Code)
                .or(status.signal().map(Exit::Signal))
                .unwrap_or(Exit::Unknown),
            Err(_) => Exit::Unknown,
        };
        Some(Ended {
            exit,
            timed_out: self.timed_out,
            duration,
            pgid: self.pid,
        })
    }

    /// The latest time the supervisor should call [`Process::check`] again.
    pub fn next_check(&self, now: Instant) -> Instant {
        let tick = match self.closed_at {
            _ if self.exit_notifier.is_some() => NOTIFIED_TICK,
            Some(at) if now.saturating_duration_since(at) < CLOSE_WINDOW => CLOSE_TICK,
            _ => EXIT_TICK,
        };
        let mut next = now + tick;
        if !self.timed_out {
            next = self.deadline.map_or(next, |d| d.min(next));
        }
        self.kill_at.map_or(next, |k| k.min(next))
    }
}

/// Process groups whose leader is reaped but whose killed members may not be yet.
#[derive(Debug, Default)]
pub struct Lingering {
    groups: Vec<u32>,
}

impl Lingering {
    /// Adds a group whose leader was just reaped after the group was sent SIGKILL.
    pub fn add(&mut self, pgid: u32) {
        self.groups.push(pgid);
    }

    /// Reaps what has ended; members still running get SIGKILL again (one may have forked while
    /// the first was on its way). A group with no child of pipit left is forgotten.
    pub fn reap(&mut self) {
        self.groups.retain(|&pgid| match sys::reap_group(pgid) {
            // A running member keeps the id reserved: it cannot be reused while we signal it.
            Ok(GroupLeft::Running) => {
                let _ = sys::signal_group(pgid, Signal::Kill);
                true
            }
            Ok(GroupLeft::Empty) => false,
            Err(e) => {
                log::warn!(target: "supervisor", "cannot reap process group {pgid}: {e}");
                false
            }
        });
    }

    /// Forgets every group: pipit has no child left, so none has a member to reap.
    pub fn clear(&mut self) {
        self.groups.clear();
    }

    /// True when no group is left.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}
