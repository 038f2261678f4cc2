//! The supervisor thread: requests in, children started, their pipes read, their ends noticed and
//! reaped, results out. It owns every child; nothing else in pipit waits for one.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};

use super::capture::{Captured, Lines};
use super::process::{EXIT_TICK, Ended, Lingering, Process};
use super::spawn::spawn;
use super::{Command, DaemonEvent, Finished, Reply, Request, SpawnError, SupervisorConfig};
use crate::sys::{self, PollFd};
use crate::telemetry::add;

/// The longest the thread sleeps when nothing is due. Everything that needs it wakes it itself (a
/// request, a pipe with data, a child's end, the next timer), so this only bounds the wait.
const IDLE_WAIT: Duration = Duration::from_secs(3600);
/// How long after the stop deadline the thread gives up on children not yet reaped.
const STOP_SLACK: Duration = Duration::from_millis(150);
/// The first wait before a daemon that ended is started again; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait before a daemon is started again; a daemon that ran this long before it ended
/// starts over from [`FIRST_BACKOFF`].
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Reads of a child's pipes after its end, at most: enough for whatever its last moments left in
/// the pipe buffers, bounded against a member of its group still writing as it is killed.
const MAX_FINAL_READS: usize = 64;
/// How much is read from a pipe at once.
const READ_SIZE: usize = 16 * 1024;
/// Adopted orphans reaped in one pass, at most; the rest wait for the next child's end.
const MAX_ORPHANS_REAPED: usize = 64;

/// Which pipe of a child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Out,
    Err,
}

/// What one poll entry belongs to.
#[derive(Debug, Clone, Copy)]
enum Owner {
    Wake,
    /// A child's exit notifier: being ready says it has ended.
    CheckExit(usize),
    DaemonExit(usize),
    StoppingExit(usize),
    Check(usize, Stream),
    Daemon(usize, Stream),
    Stopping(usize, Stream),
}

struct Queued {
    key: String,
    command: Arc<Command>,
    reply: Reply,
    queued: Instant,
}

impl Queued {
    /// When it stops waiting for a slot: a check that could not start within its timeout is
    /// skipped rather than run late.
    fn expires(&self) -> Option<Instant> {
        self.command.timeout.map(|t| self.queued + t)
    }
}

struct Check {
    key: String,
    reply: Reply,
    process: Process,
    output: Output,
}

/// What a check wrote, each pipe up to the command's `max_output`.
struct Output {
    cap: usize,
    stdout: Captured,
    stderr: Captured,
}

impl Output {
    fn take(&mut self, stream: Stream, bytes: &[u8]) {
        match stream {
            Stream::Out => self.stdout.push(bytes, self.cap),
            Stream::Err => self.stderr.push(bytes, self.cap),
        }
    }
}

struct DaemonEntry {
    id: u64,
    command: Arc<Command>,
    events: Sender<DaemonEvent>,
    dropped: Arc<AtomicU64>,
    backoff: Duration,
    state: DaemonState,
}

enum DaemonState {
    Running(Box<Running>),
    Waiting { until: Instant },
}

/// A daemon's process and what is being read from it.
struct Running {
    process: Process,
    started: Instant,
    lines: Lines,
    stderr: Lines,
    last_error: String,
}

impl DaemonEntry {
    fn send(&self, event: DaemonEvent) {
        if let Err(TrySendError::Full(_)) = self.events.try_send(event) {
            add(&self.dropped, 1);
        }
    }

    /// Takes what was read from one of its pipes, and paces that pipe while a long line's rest is
    /// being discarded.
    fn take(&mut self, stream: Stream, bytes: &[u8]) {
        let DaemonState::Running(running) = &mut self.state else {
            return;
        };
        let Running {
            process,
            lines,
            stderr,
            last_error,
            ..
        } = &mut **running;
        match stream {
            Stream::Out => {
                let events = &self.events;
                let dropped = &self.dropped;
                lines.feed(bytes, |line| {
                    if let Err(TrySendError::Full(_)) = events.try_send(DaemonEvent::Line {
                        line,
                        time: SystemTime::now(),
                    }) {
                        add(dropped, 1);
                    }
                });
            }
            Stream::Err => stderr.feed(bytes, |line| keep_last_error(last_error, &line)),
        }
        let now = Instant::now();
        process.stdout.rest(lines.is_discarding(), now);
        process.stderr.rest(stderr.is_discarding(), now);
    }
}

fn keep_last_error(last: &mut String, line: &Captured) {
    let text = String::from_utf8_lossy(&line.bytes);
    if !text.trim().is_empty() {
        *last = text.trim().to_owned();
    }
}

/// The supervisor thread's state.
pub(super) struct Worker {
    config: SupervisorConfig,
    root: bool,
    /// `/dev/null`, opened for the first child and kept for the supervisor's life: every child's
    /// stdin is a copy.
    null: Option<File>,
    requests: Receiver<Request>,
    /// Readable when a request was sent; `None` once every handle is gone.
    wake: Option<UnixStream>,
    queue: VecDeque<Queued>,
    checks: Vec<Check>,
    daemons: Vec<DaemonEntry>,
    /// Daemons being stopped: their output is read and discarded, so that writing it does not
    /// kill them before they end cleanly.
    stopping: Vec<Process>,
    lingering: Lingering,
    stop_deadline: Option<Instant>,
    fds: Vec<PollFd>,
    owners: Vec<Owner>,
    scratch: Vec<u8>,
}

impl Worker {
    pub(super) fn new(
        config: SupervisorConfig,
        requests: Receiver<Request>,
        wake: UnixStream,
    ) -> Worker {
        Worker {
            config,
            root: sys::is_root(),
            null: None,
            requests,
            wake: Some(wake),
            queue: VecDeque::new(),
            checks: Vec::new(),
            daemons: Vec::new(),
            stopping: Vec::new(),
            lingering: Lingering::default(),
            stop_deadline: None,
            fds: Vec::new(),
            owners: Vec::new(),
            scratch: vec![0; READ_SIZE],
        }
    }

    pub(super) fn run(mut self) {
        loop {
            self.take_requests();
            crate::fault::point("supervisor");
            // Ends first: the slots of checks that just ended are free for the checks started next.
            if self.watch_processes(Instant::now()) {
                self.reap_orphans();
            }
            let now = Instant::now();
            self.start_checks();
            self.start_daemons(now);
            self.lingering.reap();
            if let Some(deadline) = self.stop_deadline {
                if self.is_idle() {
                    break;
                }
                if now > deadline + STOP_SLACK {
                    log::warn!(target: "supervisor", "stop deadline passed with children not yet reaped");
                    break;
                }
            }
            self.wait_and_read(Instant::now());
        }
    }

    fn is_idle(&self) -> bool {
        self.queue.is_empty()
            && self.checks.is_empty()
            && self.daemons.is_empty()
            && self.stopping.is_empty()
            && self.lingering.is_empty()
    }

    fn take_requests(&mut self) {
        loop {
            match self.requests.try_recv() {
                Ok(request) => self.handle(request),
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => {
                    if self.stop_deadline.is_none() {
                        self.handle(Request::Stop {
                            deadline: Instant::now() + Duration::from_secs(1),
                        });
                    }
                    return;
                }
            }
        }
    }

    fn handle(&mut self, request: Request) {
        let now = Instant::now();
        match request {
            Request::Run {
                key,
                command,
                reply,
                queued,
            } => {
                if self.stop_deadline.is_some() {
                    reply.send(Err(SpawnError::Stopped));
                } else if self.checks.iter().any(|c| c.key == key)
                    || self.queue.iter().any(|q| q.key == key)
                {
                    reply.send(Err(SpawnError::Skipped(
                        "the previous run is still going".into(),
                    )));
                } else {
                    self.queue.push_back(Queued {
                        key,
                        command,
                        reply,
                        queued,
                    });
                }
            }
            Request::StartDaemon {
                id,
                command,
                events,
                dropped,
            } => {
                if self.stop_deadline.is_none() {
                    let state = DaemonState::Waiting { until: now };
                    self.daemons.push(DaemonEntry {
                        id,
                        command,
                        events,
                        dropped,
                        backoff: FIRST_BACKOFF,
                        state,
                    });
                }
            }
            Request::StopDaemon { id } => {
                if let Some(i) = self.daemons.iter().position(|d| d.id == id) {
                    let entry = self.daemons.swap_remove(i);
                    self.retire(entry, now);
                }
            }
            Request::Stop { deadline } => {
                self.stop_deadline = Some(deadline);
                for q in self.queue.drain(..) {
                    q.reply.send(Err(SpawnError::Stopped));
                }
                for c in &mut self.checks {
                    c.process.terminate(now, Some(deadline));
                }
                for entry in std::mem::take(&mut self.daemons) {
                    self.retire(entry, now);
                }
            }
        }
    }

    /// Stops a daemon for good: its group is terminated.
    fn retire(&mut self, entry: DaemonEntry, now: Instant) {
        if let DaemonState::Running(running) = entry.state {
            let mut process = running.process;
            process.terminate(now, self.stop_deadline);
            self.stopping.push(process);
        }
    }

    fn start_checks(&mut self) {
        // A check that gets a slot starts, however long the queue took: only waiting for a slot
        // (below) counts against its timeout.
        while self.checks.len() < self.config.max_checks {
            let Some(q) = self.queue.pop_front() else {
                break;
            };
            let started = Instant::now();
            let spawned = open_null(&mut self.null)
                .and_then(|null| spawn(&q.command, null, self.config.user.as_ref(), self.root));
            match spawned {
                Ok(spawned) => {
                    let process =
                        Process::new(spawned, started, q.command.timeout, q.command.kill_grace);
                    let output = Output {
                        cap: q.command.max_output,
                        stdout: Captured::default(),
                        stderr: Captured::default(),
                    };
                    self.checks.push(Check {
                        key: q.key,
                        reply: q.reply,
                        process,
                        output,
                    });
                }
                Err(e) => {
                    q.reply.send(Err(SpawnError::NotStarted(e.to_string())));
                }
            }
        }
        let now = Instant::now();
        if !self
            .queue
            .iter()
            .any(|q| q.expires().is_some_and(|e| now >= e))
        {
            return;
        }
        let (expired, waiting): (VecDeque<Queued>, VecDeque<Queued>) =
            std::mem::take(&mut self.queue)
                .into_iter()
                .partition(|q| q.expires().is_some_and(|e| now >= e));
        self.queue = waiting;
        for q in expired {
            self.skip_waiting(q);
        }
    }

    fn skip_waiting(&self, q: Queued) {
        let why = format!(
            "no free slot within its timeout: {} check(s) running (supervisor.max_checks)",
            self.config.max_checks
        );
        q.reply.send(Err(SpawnError::Skipped(why)));
    }

    fn start_daemons(&mut self, now: Instant) {
        for d in &mut self.daemons {
            let DaemonState::Waiting { until } = d.state else {
                continue;
            };
            if until > now {
                continue;
            }
            let spawned = open_null(&mut self.null)
                .and_then(|null| spawn(&d.command, null, self.config.user.as_ref(), self.root));
            match spawned {
                Ok(spawned) => {
                    let process = Process::new(spawned, now, None, d.command.kill_grace);
                    let cap = d.command.max_output;
                    d.state = DaemonState::Running(Box::new(Running {
                        process,
                        started: now,
                        lines: Lines::new(cap),
                        stderr: Lines::new(cap),
                        last_error: String::new(),
                    }));
                }
                Err(e) => {
                    let restart_in = d.backoff;
                    d.backoff = (d.backoff * 2).min(MAX_BACKOFF);
                    d.state = DaemonState::Waiting {
                        until: now + restart_in,
                    };
                    d.send(DaemonEvent::NotStarted {
                        error: e.to_string(),
                        restart_in,
                    });
                }
            }
        }
    }

    /// Notices the children that ended and settles them; true when any had.
    fn watch_processes(&mut self, now: Instant) -> bool {
        let before = self.checks.len() + self.stopping.len();
        let mut daemons_ended = false;
        let mut i = 0;
        while i < self.checks.len() {
            let Some(ended) = self.checks[i].process.check(now) else {
                i += 1;
                continue;
            };
            let mut check = self.checks.swap_remove(i);
            final_reads(&mut check.process, &mut self.scratch, |stream, bytes| {
                check.output.take(stream, bytes)
            });
            self.lingering.add(ended.pgid);
            let Ended {
                exit,
                timed_out,
                duration,
                pgid,
            } = ended;
            let finished = Finished {
                exit,
                timed_out,
                duration,
                stdout: check.output.stdout,
                stderr: check.output.stderr,
                pgid,
            };
            check.reply.send(Ok(finished));
        }
        for d in &mut self.daemons {
            let DaemonState::Running(running) = &mut d.state else {
                continue;
            };
            let Some(ended) = running.process.check(now) else {
                continue;
            };
            let DaemonState::Running(running) =
                std::mem::replace(&mut d.state, DaemonState::Waiting { until: now })
            else {
                continue;
            };
            let Running {
                mut process,
                started,
                mut lines,
                mut stderr,
                mut last_error,
            } = *running;
            let mut rest = |stream: Stream, bytes: &[u8]| match stream {
                Stream::Out => lines.feed(bytes, |line| {
                    d.send(DaemonEvent::Line {
                        line,
                        time: SystemTime::now(),
                    })
                }),
                Stream::Err => stderr.feed(bytes, |line| keep_last_error(&mut last_error, &line)),
            };
            final_reads(&mut process, &mut self.scratch, &mut rest);
            if let Some(line) = lines.finish() {
                d.send(DaemonEvent::Line {
                    line,
                    time: SystemTime::now(),
                });
            }
            if let Some(line) = stderr.finish() {
                keep_last_error(&mut last_error, &line);
            }
            self.lingering.add(ended.pgid);
            daemons_ended = true;
            let ran = now.saturating_duration_since(started);
            if ran >= MAX_BACKOFF {
                d.backoff = FIRST_BACKOFF;
            }
            let restart_in = d.backoff;
            d.backoff = (d.backoff * 2).min(MAX_BACKOFF);
            d.state = DaemonState::Waiting {
                until: now + restart_in,
            };
            d.send(DaemonEvent::Exited {
                exit: ended.exit,
                ran,
                stderr: last_error,
                restart_in,
            });
        }
        let lingering = &mut self.lingering;
        let scratch = &mut self.scratch;
        self.stopping.retain_mut(|p| match p.check(now) {
            Some(ended) => {
                final_reads(p, scratch, |_, _| {});
                lingering.add(ended.pgid);
                false
            }
            None => true,
        });
        daemons_ended || self.checks.len() + self.stopping.len() < before
    }

    /// Reaps the children pipit did not start: what a check forked and left running outside its
    /// process group (`setsid`), which pipit adopts as the subreaper when the check ends, and which
    /// would otherwise stay a zombie once it ends. Called when a child of pipit's own ended, so
    /// such zombies never outnumber what ended since the last end of a check or daemon. When pipit
    /// has no child left at all, no killed group has a member left to reap either: they are
    /// forgotten without a wait each.
    fn reap_orphans(&mut self) {
        if !super::owns_every_child() {
            return;
        }
        for _ in 0..MAX_ORPHANS_REAPED {
            let pid = match sys::ended_child() {
                Ok(sys::Children::Ended(pid)) => pid,
                Ok(sys::Children::None) => return self.lingering.clear(),
                Ok(sys::Children::Running) | Err(_) => return,
            };
            if self.started(pid) {
                // Its end is settled in the next pass, the kill of its group first.
                return;
            }
            match sys::reap(pid) {
                Ok(()) => {
                    log::debug!(target: "supervisor", "reaped process {pid}, adopted from a check that left it behind")
                }
                Err(e) => {
                    log::warn!(target: "supervisor", "cannot reap adopted process {pid}: {e}");
                    return;
                }
            }
        }
    }

    /// True when `pid` is a check, daemon or stopping daemon this thread started and still owns.
    fn started(&self, pid: u32) -> bool {
        self.checks.iter().any(|c| c.process.pid() == pid)
            || self.stopping.iter().any(|p| p.pid() == pid)
            || self.daemons.iter().any(|d| match &d.state {
                DaemonState::Running(running) => running.process.pid() == pid,
                DaemonState::Waiting { .. } => false,
            })
    }

    /// Sleeps in poll(2) until a pipe has data, a request arrives, or the next timer is due; then
    /// reads what is ready.
    fn wait_and_read(&mut self, now: Instant) {
        let mut next = now + IDLE_WAIT;
        self.fds.clear();
        self.owners.clear();
        if let Some(wake) = &self.wake {
            self.fds.push(sys::readable(wake.as_raw_fd()));
            self.owners.push(Owner::Wake);
        }
        for (i, c) in self.checks.iter().enumerate() {
            next = next.min(c.process.next_check(now));
            let process = &c.process;
            let wake = push_pipes(
                &mut self.fds,
                &mut self.owners,
                process,
                now,
                Owner::CheckExit(i),
                |s| Owner::Check(i, s),
            );
            next = wake.map_or(next, |w| w.min(next));
        }
        for (i, d) in self.daemons.iter().enumerate() {
            match &d.state {
                DaemonState::Running(running) => {
                    next = next.min(running.process.next_check(now));
                    let process = &running.process;
                    let exit = Owner::DaemonExit(i);
                    let wake =
                        push_pipes(&mut self.fds, &mut self.owners, process, now, exit, |s| {
                            Owner::Daemon(i, s)
                        });
                    next = wake.map_or(next, |w| w.min(next));
                }
                DaemonState::Waiting { until } => next = next.min(*until),
            }
        }
        for (i, p) in self.stopping.iter().enumerate() {
            next = next.min(p.next_check(now));
            push_pipes(
                &mut self.fds,
                &mut self.owners,
                p,
                now,
                Owner::StoppingExit(i),
                |s| Owner::Stopping(i, s),
            );
        }
        if !self.lingering.is_empty() {
            next = next.min(now + EXIT_TICK);
        }
        if let Some(deadline) = self.stop_deadline {
            next = next.min(deadline + STOP_SLACK + Duration::from_millis(1));
        }
        if self.checks.len() >= self.config.max_checks {
            if let Some(e) = self.queue.iter().filter_map(Queued::expires).min() {
                next = next.min(e);
            }
        }
        if let Err(e) = sys::poll(&mut self.fds, next.saturating_duration_since(now)) {
            log::error!(target: "supervisor", "poll failed: {e}");
            std::thread::sleep(EXIT_TICK);
            return;
        }
        for (entry, owner) in self.fds.iter().zip(&self.owners) {
            if !sys::is_ready(entry) {
                continue;
            }
            match *owner {
                Owner::CheckExit(i) => self.checks[i].process.exit_seen(),
                Owner::DaemonExit(i) => {
                    if let DaemonState::Running(running) = &mut self.daemons[i].state {
                        running.process.exit_seen();
                    }
                }
                Owner::StoppingExit(i) => self.stopping[i].exit_seen(),
                Owner::Wake => {
                    // Non-blocking: read until the wake-ups are used up (a read that did not
                    // fill the buffer took all there was; one written since makes the socket
                    // ready again). At end of file every handle is gone; requests can no longer
                    // come, so stop waiting for them.
                    let mut buf = [0u8; 64];
                    loop {
                        match self.wake.as_ref().map(|mut w| w.read(&mut buf)) {
                            Some(Ok(0)) => self.wake = None,
                            Some(Ok(n)) if n == buf.len() => continue,
                            _ => {}
                        }
                        break;
                    }
                }
                Owner::Check(i, stream) => {
                    let check = &mut self.checks[i];
                    let pipe = match stream {
                        Stream::Out => &mut check.process.stdout,
                        Stream::Err => &mut check.process.stderr,
                    };
                    let bytes = pipe.read_ready(&mut self.scratch);
                    check.output.take(stream, bytes);
                    let discarding = match stream {
                        Stream::Out => check.output.stdout.truncated,
                        Stream::Err => check.output.stderr.truncated,
                    };
                    pipe.rest(discarding, Instant::now());
                }
                Owner::Daemon(i, stream) => {
                    let d = &mut self.daemons[i];
                    let DaemonState::Running(running) = &mut d.state else {
                        continue;
                    };
                    let pipe = match stream {
                        Stream::Out => &mut running.process.stdout,
                        Stream::Err => &mut running.process.stderr,
                    };
                    let bytes = pipe.read_ready(&mut self.scratch);
                    d.take(stream, bytes);
                }
                Owner::Stopping(i, stream) => {
                    let process = &mut self.stopping[i];
                    let pipe = if stream == Stream::Out {
                        &mut process.stdout
                    } else {
                        &mut process.stderr
                    };
                    pipe.read_ready(&mut self.scratch);
                }
            }
        }
    }
}

/// `/dev/null` as `slot` keeps it, opened there the first time.
fn open_null(slot: &mut Option<File>) -> std::io::Result<&File> {
    match slot {
        Some(file) => Ok(file),
        None => {
            let null = sys::above_stdio(File::open("/dev/null")?.into())?;
            Ok(slot.insert(File::from(null)))
        }
    }
}

/// Adds what to wait on for `process` at `now`: its open pipes that are not resting, and its exit
/// notifier. Returns when the first resting pipe is to be read again.
fn push_pipes(
    fds: &mut Vec<PollFd>,
    owners: &mut Vec<Owner>,
    process: &Process,
    now: Instant,
    exit: Owner,
    owner: impl Fn(Stream) -> Owner,
) -> Option<Instant> {
    let mut wake = None;
    for (pipe, stream) in [
        (&process.stdout, Stream::Out),
        (&process.stderr, Stream::Err),
    ] {
        if let Some(fd) = pipe.fd_to_poll(now) {
            fds.push(sys::readable(fd));
            owners.push(owner(stream));
        }
        wake = wake.into_iter().chain(pipe.resting_until(now)).min();
    }
    if let Some(fd) = process.exit_fd() {
        fds.push(sys::readable(fd));
        owners.push(exit);
    }
    wake
}

/// Reads what an ended child left in its pipes without waiting for more, then closes them.
fn final_reads(process: &mut Process, scratch: &mut [u8], mut sink: impl FnMut(Stream, &[u8])) {
    if process.stdout.fd().is_none() && process.stderr.fd().is_none() {
        // Both read to their end already, as usual.
        return;
    }
    let mut fds: Vec<PollFd> = Vec::with_capacity(2);
    for _ in 0..MAX_FINAL_READS {
        fds.clear();
        let open: Vec<Stream> = [
            (process.stdout.fd(), Stream::Out),
            (process.stderr.fd(), Stream::Err),
        ]
        .into_iter()
        .filter_map(|(fd, s)| {
            fds.push(sys::readable(fd?));
            Some(s)
        })
        .collect();
        if open.is_empty()
            || sys::poll(&mut fds, Duration::ZERO).is_err()
            || !fds.iter().any(sys::is_ready)
        {
            break;
        }
        for (entry, stream) in fds.iter().zip(&open) {
            if sys::is_ready(entry) {
                let pipe = if *stream == Stream::Out {
                    &mut process.stdout
                } else {
                    &mut process.stderr
                };
                sink(*stream, pipe.read_ready(scratch));
            }
        }
    }
    process.stdout.close();
    process.stderr.close();
}
