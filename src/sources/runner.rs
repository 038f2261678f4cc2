//! The thread that runs one source instance: on its schedule, caught when it panics, replaced when
//! it hangs, and stopped on request.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError, bounded};

use super::shared::Registration;
use super::{Emitter, Placement, Source, SourceConfig, SourceContext, SourceError};
use crate::complain::Complaint;
use crate::event::Event;
use crate::lifeline;
use crate::telemetry::catalogue::CatalogueSource;
use crate::telemetry::{SourceStats, add};

/// The first wait before a source that panicked is rebuilt; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait before a rebuild.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Runs one collection, catching a panic: the events emitted and the outcome.
pub fn collect_once(
    source: &mut dyn Source,
    config: &SourceConfig,
) -> (Vec<Event>, Result<(), Outcome>) {
    let mut emit = Emitter::new(&config.template, SystemTime::now());
    let outcome = match lifeline::catch(|| source.collect(&mut emit)) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Outcome::Failed(e)),
        Err(message) => Err(Outcome::Panicked(message)),
    };
    (emit.into_events(), outcome)
}

/// How a collection went wrong.
#[derive(Debug)]
pub enum Outcome {
    /// The source reported an error; it stays as it is and tries again next tick.
    Failed(SourceError),
    /// The source panicked; it is rebuilt after a backoff.
    Panicked(String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Failed(e) => write!(f, "failed: {e}"),
            Outcome::Panicked(message) => write!(f, "panicked: {message}"),
        }
    }
}

/// A running source instance, as the agent holds it.
#[derive(Debug)]
pub struct SourceHandle {
    /// The instance's config.
    pub config: SourceConfig,
    /// Its counters.
    pub stats: Arc<SourceStats>,
    shared: Arc<Shared>,
    stop: Option<Sender<()>>,
    threads: Vec<JoinHandle<()>>,
    ctx: SourceContext,
    events: Sender<Vec<Event>>,
    /// Set for an instance run by a shared thread (the checks thread or the host thread) rather
    /// than a thread of its own.
    hosted: Option<Registration>,
}

/// What the handle and its thread(s) share.
#[derive(Debug)]
struct Shared {
    base: Instant,
    /// Milliseconds after `base` at which the running collection began, plus one; 0 when idle.
    busy_since: AtomicU64,
    /// Bumped when a hung thread is replaced; a thread whose generation is stale exits.
    generation: AtomicU64,
}

impl SourceHandle {
    /// Starts the instance on its own thread, named `src/<name>`.
    pub fn start(
        config: SourceConfig,
        ctx: SourceContext,
        events: Sender<Vec<Event>>,
    ) -> SourceHandle {
        let stats = Arc::new(SourceStats::new(&config.name));
        let shared = Arc::new(Shared {
            base: Instant::now(),
            busy_since: AtomicU64::new(0),
            generation: AtomicU64::new(0),
        });
        let ctx = ctx.for_source(&config);
        let mut handle = SourceHandle {
            config,
            stats,
            shared,
            stop: None,
            threads: Vec::new(),
            ctx,
            events,
            hosted: None,
        };
        let (stop_tx, stop_rx) = bounded(0);
        handle.stop = Some(stop_tx);
        let shared = match handle.config.spec.placement() {
            Placement::OwnThread => None,
            Placement::Checks => Some(handle.ctx.checks.clone()),
            Placement::Host => Some(handle.ctx.host_thread.clone()),
        };
        match shared {
            Some(thread) => handle.hosted = Some(thread.add(handle.runner(stop_rx))),
            None => handle.spawn(stop_rx),
        }
        handle
    }

    fn runner(&self, stop: Receiver<()>) -> Runner {
        Runner {
            config: self.config.clone(),
            ctx: SourceContext {
                stopping: stop.clone(),
                ..self.ctx.clone()
            },
            stats: self.stats.clone(),
            shared: self.shared.clone(),
            generation: self.shared.generation.load(Ordering::SeqCst),
            stop,
            events: self.events.clone(),
            complaint: Complaint::new(super::log_target(&self.config.name)),
            queue_complaint: Complaint::new(super::log_target(&self.config.name)),
            catalogued: Arc::new(self.config.catalogue_source()),
        }
    }

    fn spawn(&mut self, stop: Receiver<()>) {
        let runner = self.runner(stop);
        // A collection's panic is caught inside; one in the runner itself stops the agent.
        let name = format!("src/{}", self.config.name);
        let spawned = match self.config.spec.stack_size() {
            Some(size) => lifeline::spawn_with_stack(name, size, move || runner.run()),
            None => lifeline::spawn(name, move || runner.run()),
        };
        match spawned {
            Ok(t) => self.threads.push(t),
            Err(e) => {
                log::error!(target: "agent", "cannot start a thread for source {}: {e}", self.config.name)
            }
        }
    }

    /// If the running collection has taken longer than the source's timeout, reports it, leaves the
    /// stuck thread behind (it exits when its collection returns) and starts a fresh instance on a
    /// thread of its own. An instance on a shared thread that was given up so is added to a fresh
    /// one. (A check's collection never marks itself busy: the supervisor times its run out.)
    pub fn check_hang(&mut self) {
        if let Some(hosted) = &self.hosted
            && hosted.stranded()
        {
            let thread = hosted.thread().clone();
            self.shared.generation.fetch_add(1, Ordering::SeqCst);
            let (stop_tx, stop_rx) = bounded(0);
            self.stop = Some(stop_tx);
            self.hosted = Some(thread.add(self.runner(stop_rx)));
            return;
        }
        let since = self.shared.busy_since.load(Ordering::SeqCst);
        if since == 0 {
            return;
        }
        let busy = self
            .shared
            .base
            .elapsed()
            .saturating_sub(Duration::from_millis(since - 1));
        if busy < self.config.timeout {
            return;
        }
        let elsewhere = match &self.hosted {
            Some(hosted) => {
                self.hand_over(hosted.give_up());
                " on a thread of its own; the sources that shared its thread move to a fresh one"
            }
            None => "",
        };
        self.hosted = None;
        log::error!(
            target: &super::log_target(&self.config.name),
            "collection hung for {}s (timeout {}s): starting a fresh instance{elsewhere}",
            busy.as_secs(),
            self.config.timeout.as_secs()
        );
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
        self.shared.busy_since.store(0, Ordering::SeqCst);
        add(&self.stats.restarts, 1);
        // Joined threads are done; the hung one stays in the list, unjoined.
        self.threads.retain(|t| !t.is_finished());
        let (stop_tx, stop_rx) = bounded(0);
        self.stop = Some(stop_tx);
        self.spawn(stop_rx);
    }

    /// Sends the router what the other sources of a shared thread given up under this instance
    /// collected in the round before its hung collection: without this they would wait on the
    /// hung thread, for ever if it never returns. When the router cannot take them they are
    /// counted as dropped by this instance, and said.
    fn hand_over(&self, unsent: Vec<Event>) {
        let count = unsent.len() as u64;
        if count == 0 {
            return;
        }
        let why = match self.events.try_send(unsent) {
            Ok(()) => return,
            Err(TrySendError::Full(_)) => "router queue full",
            Err(TrySendError::Disconnected(_)) => "router gone",
        };
        add(&self.stats.dropped, count);
        log::error!(
            target: &super::log_target(&self.config.name),
            "{why}: dropped {count} event(s) that the sources sharing its hung thread collected before it"
        );
    }

    /// Threads of this instance still running: more than one while a hung collection has not
    /// returned.
    pub fn threads_alive(&self) -> usize {
        self.threads.iter().filter(|t| !t.is_finished()).count()
    }

    /// Asks the thread(s) to stop; they finish the collection in progress first. An instance on
    /// the shared checks thread is dropped from it, its run in progress left to the supervisor.
    pub fn request_stop(&mut self) {
        self.stop = None;
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
        if let Some(hosted) = &self.hosted {
            hosted.remove();
        }
    }

    /// Waits for the thread(s) until `deadline`; true when all have exited.
    pub fn join_until(&mut self, deadline: Instant) -> bool {
        if let Some(hosted) = &self.hosted {
            return hosted.wait_removed(deadline);
        }
        while Instant::now() < deadline {
            if self.threads.iter().all(|t| t.is_finished()) {
                for t in self.threads.drain(..) {
                    let _ = t.join();
                }
                return true;
            }
            thread::sleep(Duration::from_millis(5));
        }
        self.threads.iter().all(|t| t.is_finished())
    }
}

/// One instance's schedule-independent state: its config, context, counters and complaints, and
/// what follows each collection ([`Runner::settle`]).
pub(super) struct Runner {
    pub(super) config: SourceConfig,
    pub(super) ctx: SourceContext,
    stats: Arc<SourceStats>,
    shared: Arc<Shared>,
    generation: u64,
    stop: Receiver<()>,
    events: Sender<Vec<Event>>,
    complaint: Complaint,
    queue_complaint: Complaint,
    catalogued: Arc<CatalogueSource>,
}

/// A collection done and not yet settled ([`Runner::settle`]).
pub(super) struct Collected {
    /// The events it emitted.
    pub(super) events: Vec<Event>,
    /// How it went.
    pub(super) outcome: Result<(), Outcome>,
    /// How long it took.
    pub(super) took: Duration,
}

/// What became of a collection once [`Runner::settle`] dealt with it.
pub(super) enum Settled {
    /// It is done (`failed`: with an error, logged); the next one is due on schedule.
    Done {
        /// True when it failed.
        failed: bool,
    },
    /// It panicked: the source is to be rebuilt after a backoff.
    Panicked(String),
    /// The router is gone: the agent is stopping; so does the instance.
    RouterGone,
}

fn unix_micros(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

impl Runner {
    fn current(&self) -> bool {
        self.shared.generation.load(Ordering::SeqCst) == self.generation
    }

    /// Waits until `until` unless asked to stop first; false when asked to stop.
    fn wait(&self, until: Instant) -> bool {
        matches!(
            self.stop.recv_deadline(until),
            Err(RecvTimeoutError::Timeout)
        ) && self.current()
    }

    fn run(mut self) {
        let mut source = self.config.spec.build(&self.ctx);
        let mut schedule = crate::schedule::Schedule::new(self.first_due(), self.config.interval);
        let mut backoff = FIRST_BACKOFF;
        let target = super::log_target(&self.config.name);
        while self.wait(schedule.due()) {
            let Some(collected) = self.collect(source.as_mut()) else {
                // Replaced while hung, or stopped: the replacement owns the schedule now.
                return;
            };
            let took = collected.took;
            match self.settle(source.as_mut(), collected) {
                Settled::RouterGone => return,
                Settled::Done { failed } => {
                    if !failed {
                        backoff = FIRST_BACKOFF;
                    }
                }
                Settled::Panicked(message) => {
                    log::error!(target: &target, "panicked: {message}; restarting in {}s", backoff.as_secs());
                    if !self.wait(Instant::now() + backoff) {
                        return;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    source = self.config.spec.build(&self.ctx);
                    self.count_restart();
                    schedule = crate::schedule::Schedule::new(Instant::now(), self.config.interval);
                    continue;
                }
            }
            let skipped = schedule.advance(Instant::now());
            self.count_skipped_ticks(skipped, took);
        }
    }

    /// Runs one collection, marked busy while it runs so that the watchdog
    /// ([`SourceHandle::check_hang`]) sees a hang; `None` when the instance was replaced or
    /// stopped meanwhile, whose events are then not sent.
    pub(super) fn collect(&mut self, source: &mut dyn Source) -> Option<Collected> {
        let started = Instant::now();
        self.mark_started();
        let since = self.shared.base.elapsed().as_millis() as u64 + 1;
        self.shared.busy_since.store(since, Ordering::SeqCst);
        let (events, outcome) = collect_once(source, &self.config);
        if !self.current() {
            return None;
        }
        self.shared.busy_since.store(0, Ordering::SeqCst);
        Some(Collected {
            events,
            outcome,
            took: started.elapsed(),
        })
    }

    /// The first collection's time: spread over the interval when the source asks for it.
    pub(super) fn first_due(&self) -> Instant {
        let mut first = Instant::now();
        if self.config.spec.spreads_first_run() {
            first += crate::schedule::spread(&self.config.name, self.config.interval);
        }
        first
    }

    /// Records that a collection starts now.
    pub(super) fn mark_started(&self) {
        self.stats
            .last_run_us
            .store(unix_micros(SystemTime::now()), Ordering::Relaxed);
    }

    /// Counts a rebuild of the source after a panic.
    pub(super) fn count_restart(&self) {
        add(&self.stats.restarts, 1);
    }

    /// Counts ticks skipped because a collection overran its interval.
    pub(super) fn count_skipped_ticks(&self, skipped: u64, took: Duration) {
        if skipped > 0 {
            add(&self.stats.skipped_ticks, skipped);
            log::debug!(target: &super::log_target(&self.config.name), "collection took {}ms: skipped {skipped} tick(s)", took.as_millis());
        }
    }

    /// What follows a collection: the counters, the catalogue, the events to the router (and the
    /// source told whether they were taken), the outcome logged.
    pub(super) fn settle(&mut self, source: &mut dyn Source, collected: Collected) -> Settled {
        let Collected {
            events,
            outcome,
            took,
        } = collected;
        self.record(&events, took);
        let count = events.len() as u64;
        let Some(accepted) = self.offer(events) else {
            return Settled::RouterGone;
        };
        self.conclude(source, outcome, count, accepted)
    }

    /// The first part of settling a collection that took `took`: its counters and the catalogue.
    pub(super) fn record(&self, events: &[Event], took: Duration) {
        add(&self.stats.runs, 1);
        self.stats
            .last_duration_us
            .store(took.as_micros() as u64, Ordering::Relaxed);
        log::debug!(target: &super::log_target(&self.config.name), "collected {} events in {}us", events.len(), took.as_micros());
        self.ctx
            .telemetry
            .catalogue
            .record(&self.catalogued, events);
    }

    /// Hands `events` to the router as one message, without ever blocking: whether the router
    /// took them (false: its queue was full), or `None` when the router is gone. The events may
    /// be those of several instances (the host thread sends a round as one message); each
    /// counts its own in [`Runner::conclude`].
    pub(super) fn offer(&self, events: Vec<Event>) -> Option<bool> {
        if events.is_empty() {
            return Some(true);
        }
        match self.events.try_send(events) {
            Ok(()) => Some(true),
            Err(TrySendError::Full(_)) => Some(false),
            Err(TrySendError::Disconnected(_)) => None,
        }
    }

    /// The last part of settling a collection whose `count` events the router took or, when not
    /// `accepted`, dropped (counted and said): the source told which, the outcome logged.
    pub(super) fn conclude(
        &mut self,
        source: &mut dyn Source,
        outcome: Result<(), Outcome>,
        count: u64,
        accepted: bool,
    ) -> Settled {
        if count > 0 && !accepted {
            add(&self.stats.dropped, count);
            self.queue_complaint
                .fail(&format!("router queue full: dropped {count} event(s)"));
        } else if count > 0 {
            self.queue_complaint.recover();
        }
        source.handed_over(accepted);
        match outcome {
            Ok(()) => {
                self.complaint.recover();
                Settled::Done { failed: false }
            }
            Err(Outcome::Failed(e)) => {
                add(&self.stats.errors, 1);
                self.complaint.fail(&format!("collection failed: {e}"));
                Settled::Done { failed: true }
            }
            Err(Outcome::Panicked(message)) => {
                add(&self.stats.errors, 1);
                add(&self.stats.panics, 1);
                Settled::Panicked(message)
            }
        }
    }
}
