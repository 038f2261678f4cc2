//! The thread that runs one source instance: on its schedule, caught when it panics, replaced when
//! it hangs, and stopped on request.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError, bounded};

use super::{Emitter, Source, SourceConfig, SourceContext, SourceError};
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
#[derive(Debug, Clone, PartialEq, Eq)]
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
        };
        let (stop_tx, stop_rx) = bounded(0);
        handle.stop = Some(stop_tx);
        handle.spawn(stop_rx);
        handle
    }

    fn spawn(&mut self, stop: Receiver<()>) {
        let runner = Runner {
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
        };
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
    /// stuck thread behind (it exits when its collection returns) and starts a fresh one.
    pub fn check_hang(&mut self) {
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
        log::error!(
            target: &super::log_target(&self.config.name),
            "collection hung for {}s (timeout {}s): starting a fresh instance",
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

    /// Threads of this instance still running: more than one while a hung collection has not
    /// returned.
    pub fn threads_alive(&self) -> usize {
        self.threads.iter().filter(|t| !t.is_finished()).count()
    }

    /// Asks the thread(s) to stop; they finish the collection in progress first.
    pub fn request_stop(&mut self) {
        self.stop = None;
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Waits for the thread(s) until `deadline`; true when all have exited.
    pub fn join_until(&mut self, deadline: Instant) -> bool {
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

struct Runner {
    config: SourceConfig,
    ctx: SourceContext,
    stats: Arc<SourceStats>,
    shared: Arc<Shared>,
    generation: u64,
    stop: Receiver<()>,
    events: Sender<Vec<Event>>,
    complaint: Complaint,
    queue_complaint: Complaint,
    catalogued: Arc<CatalogueSource>,
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
        let interval = self.config.interval;
        let mut first = Instant::now();
        if self.config.spec.spreads_first_run() {
            first += crate::schedule::spread(&self.config.name, interval);
        }
        let mut schedule = crate::schedule::Schedule::new(first, interval);
        let mut backoff = FIRST_BACKOFF;
        let target = super::log_target(&self.config.name);
        while self.wait(schedule.due()) {
            let started = Instant::now();
            self.stats
                .last_run_us
                .store(unix_micros(SystemTime::now()), Ordering::Relaxed);
            let since = self.shared.base.elapsed().as_millis() as u64 + 1;
            self.shared.busy_since.store(since, Ordering::SeqCst);
            let (events, outcome) = collect_once(source.as_mut(), &self.config);
            if !self.current() {
                // Replaced while hung, or stopped: the replacement owns the schedule now.
                return;
            }
            self.shared.busy_since.store(0, Ordering::SeqCst);
            let took = started.elapsed();
            add(&self.stats.runs, 1);
            self.stats
                .last_duration_us
                .store(took.as_micros() as u64, Ordering::Relaxed);
            log::debug!(target: &target, "collected {} events in {}us", events.len(), took.as_micros());
            self.ctx
                .telemetry
                .catalogue
                .record(&self.catalogued, &events);
            let Some(accepted) = self.send(events) else {
                return;
            };
            source.handed_over(accepted);
            match outcome {
                Ok(()) => {
                    self.complaint.recover();
                    backoff = FIRST_BACKOFF;
                }
                Err(Outcome::Failed(e)) => {
                    add(&self.stats.errors, 1);
                    self.complaint.fail(&format!("collection failed: {e}"));
                }
                Err(Outcome::Panicked(message)) => {
                    add(&self.stats.errors, 1);
                    add(&self.stats.panics, 1);
                    log::error!(target: &target, "panicked: {message}; restarting in {}s", backoff.as_secs());
                    if !self.wait(Instant::now() + backoff) {
                        return;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    source = self.config.spec.build(&self.ctx);
                    add(&self.stats.restarts, 1);
                    schedule = crate::schedule::Schedule::new(Instant::now(), self.config.interval);
                    continue;
                }
            }
            let skipped = schedule.advance(Instant::now());
            if skipped > 0 {
                add(&self.stats.skipped_ticks, skipped);
                log::debug!(target: &target, "collection took {}ms: skipped {skipped} tick(s)", took.as_millis());
            }
        }
    }

    /// Hands the events of one collection to the router, as one message, without ever blocking;
    /// whether the router took them (false: its queue was full, they are dropped and counted), or
    /// `None` when the router is gone.
    fn send(&mut self, events: Vec<Event>) -> Option<bool> {
        if events.is_empty() {
            return Some(true);
        }
        let dropped = match self.events.try_send(events) {
            Ok(()) => 0,
            Err(TrySendError::Full(batch)) => batch.len() as u64,
            Err(TrySendError::Disconnected(_)) => return None,
        };
        if dropped > 0 {
            add(&self.stats.dropped, dropped);
            self.queue_complaint
                .fail(&format!("router queue full: dropped {dropped} event(s)"));
        } else {
            self.queue_complaint.recover();
        }
        Some(dropped == 0)
    }
}
