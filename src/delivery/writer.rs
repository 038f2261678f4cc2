//! One output's bounded queue and the blocking writer thread that drains it in batches and
//! delivers them: to its targets by strategy, through each target's breaker, with bounded retries
//! and jittered backoff; what no target takes goes to the fallback output or the disk spool, and
//! the spool is replayed, oldest first, alternating with live batches, once a target takes data.
//!
//! The queue outlives its writer: when a reload changes an output's config, the old writer hands
//! the batch in its hands (undelivered) to the new writer, which sends it first and carries on from
//! the same queue, so nothing queued is lost. At shutdown the writer learns the deadline, stops retrying, spools (when it has a spool)
//! what its targets do not take at once, and drains the queue.

use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, after, bounded, never, select, unbounded};

use super::backoff::Jitter;
use super::breaker::BreakerState;
use super::config::OutputConfig;
use super::queue::{self, Route, event_bytes};
use super::rate_limit::TokenBucket;
use super::spool::{Spool, SpoolConfig, SpoolError, WhenFull};
use super::targets::{Part, TargetGroup};
use crate::complain::Complaint;
use crate::event::Event;
use crate::lifeline;
use crate::outputs::{self, ErrorKind, OutputError};
use crate::telemetry::{OutputStats, add, get, set, sub};

/// How often the spool's read position is saved while it is replayed.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(5);

/// How often a writer waiting to retry a batch looks whether its queue is filling up.
const PRESSURE_CHECK: Duration = Duration::from_millis(50);

/// How often a spool that could not be opened is tried again.
const SPOOL_RETRY: Duration = Duration::from_secs(5);

/// How long the spool's file system must take every batch before it counts as no longer full.
const FULL_QUIET: Duration = Duration::from_secs(10);

/// The longest a writer stopped by a reload waits for its targets to confirm what they hold.
const SETTLE: Duration = Duration::from_secs(3);

/// How long an idle writer waits before looking at its spool again.
const IDLE: Duration = Duration::from_secs(1);

/// The fallback output of an output: where batches go that no target takes.
type FallbackSlot = Arc<Mutex<Option<Route>>>;

/// A running output: its queue, its counters and its writer thread.
#[derive(Debug)]
pub struct OutputHandle {
    /// The output's config.
    pub config: OutputConfig,
    /// Its counters, shared with the router and the `self` source.
    pub stats: Arc<OutputStats>,
    queue: Option<Sender<Vec<Event>>>,
    receiver: Receiver<Vec<Event>>,
    stop: Option<Sender<()>>,
    closing: Option<Sender<Instant>>,
    fallback: FallbackSlot,
    /// The writer thread; it gives back the events it was holding when a reload stopped it.
    thread: Option<JoinHandle<Vec<Event>>>,
}

impl OutputHandle {
    /// Builds the output and starts its writer on a fresh queue.
    pub fn start(config: OutputConfig) -> Result<OutputHandle, OutputError> {
        // Unbounded as a channel, so that it allocates only as it fills: the router holds it to
        // `queue_size` events and `queue_max_bytes` (see `queue::offer`).
        let (queue, receiver) = unbounded();
        let stats = Arc::new(OutputStats::new(&config.name));
        let mut handle = OutputHandle {
            config,
            stats,
            queue: Some(queue),
            receiver,
            stop: None,
            closing: None,
            fallback: Arc::default(),
            thread: None,
        };
        let writer = handle.writer(Vec::new())?;
        handle.spawn(writer)?;
        Ok(handle)
    }

    /// Builds a writer for the handle's config: its targets and its spool. It sends `handover`
    /// (what the writer before it was holding) before anything from the queue.
    fn writer(&self, handover: Vec<Event>) -> Result<Writer, OutputError> {
        let config = &self.config;
        let group = TargetGroup::build(config)?;
        let log_target = outputs::log_target(&config.name);
        // A spool that cannot be opened degrades this output only: it runs without one (as an
        // output without a spool does) and tries again every SPOOL_RETRY.
        let (spool, spool_wanted) = match &config.delivery.spool {
            Some(s) => match Spool::open(s.clone()) {
                Ok(spool) => (Some(spool), None),
                Err(e) => {
                    log::error!(
                        target: &log_target,
                        "{e}; running without a spool, trying again every {} s",
                        SPOOL_RETRY.as_secs()
                    );
                    (None, Some(s.clone()))
                }
            },
            None => (None, None),
        };
        let now = Instant::now();
        Ok(Writer {
            group,
            config: config.clone(),
            queue: self.receiver.clone(),
            stop: never(),
            closing: never(),
            stats: self.stats.clone(),
            fallback: self.fallback.clone(),
            spool,
            spool_wanted,
            spool_retry: now + SPOOL_RETRY,
            spool_seen: (0, 0),
            spool_complaint: Complaint::new(log_target.clone()),
            disk_full: Complaint::new(log_target),
            disk_full_at: None,
            bucket: config
                .delivery
                .rate_limit
                .map(|r| TokenBucket::new(r.per_second, r.burst, now)),
            replay_bucket: config
                .delivery
                .replay_rate
                .map(|rate| TokenBucket::new(rate, rate, now)),
            jitter: Jitter::new(),
            deadline: None,
            stopping: false,
            healthy: true,
            next_probe: now,
            last_checkpoint: now,
            complaint: Complaint::new(outputs::log_target(&config.name)),
            fallback_complaint: Complaint::new(outputs::log_target(&config.name)),
            unencodable_complaint: Complaint::new(outputs::log_target(&config.name)),
            handover,
            pending: Vec::new(),
        })
    }

    fn spawn(&mut self, mut writer: Writer) -> Result<(), OutputError> {
        let (stop, stop_rx) = bounded::<()>(0);
        let (closing, closing_rx) = bounded::<Instant>(1);
        writer.stop = stop_rx;
        writer.closing = closing_rx;
        writer.publish();
        let thread = lifeline::spawn(format!("out/{}", self.config.name), move || writer.run())
            .map_err(OutputError::Thread)?;
        self.stop = Some(stop);
        self.closing = Some(closing);
        self.thread = Some(thread);
        Ok(())
    }

    /// A sender into this output's queue, for the router.
    pub fn sender(&self) -> Option<Sender<Vec<Event>>> {
        self.queue.clone()
    }

    /// The route into this output's queue.
    pub fn route(&self) -> Option<Route> {
        Some(Route {
            selector: self.config.selector.clone(),
            queue: self.sender()?,
            max_events: self.config.queue_size as u64,
            max_bytes: self.config.delivery.queue_max_bytes,
            stats: self.stats.clone(),
        })
    }

    /// Replaces the writer with one built from `config`, keeping the queue and the counters. The
    /// new output is built first: on a build error the old writer keeps running untouched. The
    /// batch the old writer holds is handed over, and so is the spool: the old writer saves its
    /// position, the new one opens it again.
    pub fn replace(&mut self, config: OutputConfig) -> Result<(), OutputError> {
        // The spool is opened once the old writer has let go of it (one that cannot be opened
        // leaves the new writer without a spool, trying again).
        TargetGroup::build(&config)?;
        // Stop the old writer: it gives back what it holds and leaves the queue as it is.
        self.stop = None;
        let held = match self.thread.take().map(JoinHandle::join) {
            Some(Ok(held)) => held,
            _ => Vec::new(),
        };
        let old = std::mem::replace(&mut self.config, config);
        match self.writer(Vec::new()) {
            Ok(mut writer) => {
                writer.handover = held;
                self.spawn(writer)
            }
            Err(e) => {
                // The new targets cannot be built after all: carry on with the old config.
                self.config = old;
                let writer = self.writer(held)?;
                self.spawn(writer)?;
                Err(e)
            }
        }
    }

    /// Closes the queue and tells the writer it has until `deadline`: it delivers (or spools)
    /// what is left and exits.
    pub fn close(&mut self, deadline: Instant) {
        self.queue = None;
        if let Some(closing) = self.closing.take() {
            let _ = closing.try_send(deadline);
        }
    }

    /// Waits for the writer until `deadline`; what is still queued then is counted as dropped.
    pub fn join_until(&mut self, deadline: Instant) -> bool {
        let Some(thread) = self.thread.take() else {
            return true;
        };
        while !thread.is_finished() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        if thread.is_finished() {
            if thread.join().is_err() {
                // The writer panicked outside a write (logged as it happened): what it left in
                // the queue is lost.
                let left = get(&self.stats.queued);
                add(&self.stats.dropped_shutdown, left);
                log::error!(target: &outputs::log_target(&self.config.name), "the writer had ended by a panic: {left} queued event(s) lost");
            }
            return true;
        }
        let left = get(&self.stats.queued);
        add(&self.stats.dropped_shutdown, left);
        log::error!(target: &outputs::log_target(&self.config.name), "stop deadline passed with {left} event(s) undelivered");
        false
    }
}

/// Gives each output the route to its `fallback` output (after a start or a reload).
pub fn wire_fallbacks(outputs: &[OutputHandle]) {
    for o in outputs {
        let route = o.config.delivery.fallback.as_ref().and_then(|name| {
            outputs
                .iter()
                .find(|f| &f.config.name == name)
                .and_then(OutputHandle::route)
        });
        *o.fallback.lock().unwrap_or_else(|e| e.into_inner()) = route;
    }
}

struct Writer {
    group: TargetGroup,
    config: OutputConfig,
    queue: Receiver<Vec<Event>>,
    stop: Receiver<()>,
    closing: Receiver<Instant>,
    stats: Arc<OutputStats>,
    fallback: FallbackSlot,
    spool: Option<Spool>,
    /// The spool config while the spool cannot be opened; tried again at `spool_retry`.
    spool_wanted: Option<SpoolConfig>,
    spool_retry: Instant,
    /// The spool's lost events and refused files already counted in `stats`.
    spool_seen: (u64, u64),
    /// The spool's own failures, logged apart from delivery errors.
    spool_complaint: Complaint,
    /// A full file system under the spool, and when it last refused a batch: it ends only after
    /// FULL_QUIET without one, so a disk that has room for a small batch now and then is one
    /// episode, logged once.
    disk_full: Complaint,
    disk_full_at: Option<Instant>,
    bucket: Option<TokenBucket>,
    /// Paces the spool's replay (`replay_rate`).
    replay_bucket: Option<TokenBucket>,
    jitter: Jitter,
    /// The stop deadline, once the agent is stopping.
    deadline: Option<Instant>,
    /// Set when a reload asked this writer to hand over.
    stopping: bool,
    /// Whether the last delivery reached a target; the spool is replayed only then (or when a
    /// probe is due).
    healthy: bool,
    next_probe: Instant,
    last_checkpoint: Instant,
    complaint: Complaint,
    fallback_complaint: Complaint,
    /// Logs events left out as unencodable: once, then as reminders while it goes on.
    unencodable_complaint: Complaint,
    /// Events to send before the queue's (from the writer before this one), and, once a reload
    /// stops this writer, the events it gives to the next.
    handover: Vec<Event>,
    /// Events taken from the queue, oldest first, not yet in a batch (a message of the queue may
    /// hold more than a batch).
    pending: Vec<Event>,
}

impl Drop for Writer {
    /// A writer unwinding from a panic outside a write (one in its write is a failed attempt)
    /// loses what it held: the events in its hands and those written but not yet confirmed.
    /// Counted as `dropped_panic` and said, so the rule holds even then; what its queue holds is
    /// counted at the stop that follows.
    fn drop(&mut self) {
        if !thread::panicking() {
            return;
        }
        let lost = (self.pending.len() + self.handover.len()) as u64 + get(&self.stats.unconfirmed);
        set(&self.stats.unconfirmed, 0);
        set(&self.stats.unconfirmed_bytes, 0);
        add(&self.stats.dropped_panic, lost);
        log::error!(target: &outputs::log_target(&self.stats.name), "the writer panicked holding {lost} event(s): counted as dropped_panic");
    }
}

/// What became of a batch.
enum Outcome {
    /// Every event reached a target (or was refused as bad, or left out as unencodable).
    Delivered,
    /// These events reached no target.
    Undelivered(Vec<Event>),
}

impl Writer {
    /// Drains the queue until it closes or a reload stops the writer; returns what it was holding
    /// then, for the next writer.
    fn run(mut self) -> Vec<Event> {
        // What the writer before this one held goes first, in batches like the queue's events.
        self.pending = std::mem::take(&mut self.handover);
        let mut batch: Vec<Event> = Vec::new();
        while !self.stopping {
            crate::fault::point("writer.loop");
            self.retry_spool();
            self.collect_confirmed();
            if self.replay_due() {
                self.replay_one();
            }
            if self.pending.is_empty() {
                let wait = self.until_replay();
                select! {
                    recv(self.queue) -> msg => match msg {
                        Ok(events) => self.took(events),
                        Err(_) => break,
                    },
                    recv(self.stop) -> _ => {
                        self.stopping = true;
                        break;
                    }
                    recv(self.closing) -> msg => {
                        self.shutdown(msg.ok());
                        continue;
                    }
                    default(wait) => continue,
                }
            }
            let closed = self.fill(&mut batch);
            self.deliver_live(std::mem::take(&mut batch));
            if closed && self.pending.is_empty() {
                break;
            }
        }
        self.settle();
        if self.stopping {
            let pending = std::mem::take(&mut self.pending);
            self.handover.extend(pending);
        } else {
            log::debug!(target: &outputs::log_target(&self.stats.name), "queue closed and drained");
        }
        if let Some(spool) = self.spool.take() {
            if let Err(e) = spool.close() {
                self.spool_complaint.fail(&e.message);
            }
        }
        std::mem::take(&mut self.handover)
    }

    /// Notes the stop deadline: no more retries, no more replays.
    fn shutdown(&mut self, deadline: Option<Instant>) {
        self.closing = never();
        if let Some(d) = deadline {
            self.deadline = Some(d);
        }
    }

    /// Takes a message of the queue into `pending`.
    fn took(&mut self, events: Vec<Event>) {
        sub(&self.stats.queued, events.len() as u64);
        sub(
            &self.stats.queued_bytes,
            events.iter().map(event_bytes).sum::<u64>(),
        );
        if self.pending.is_empty() {
            self.pending = events;
        } else {
            self.pending.extend(events);
        }
    }

    /// Moves pending events into the batch, up to the batch size.
    fn take_pending(&mut self, batch: &mut Vec<Event>) {
        let room = self.config.batch_size.saturating_sub(batch.len());
        if self.pending.len() <= room {
            batch.append(&mut self.pending);
        } else {
            batch.extend(self.pending.drain(..room));
        }
    }

    /// Adds events until the batch is full or its time is up; says whether the queue was closed
    /// (and drained). While the spool is being replayed, a live batch takes only what is queued
    /// already: waiting for it to fill would hold the replay back by up to `batch_timeout`.
    fn fill(&mut self, batch: &mut Vec<Event>) -> bool {
        let deadline = if self.replay_wanted() {
            Instant::now()
        } else {
            Instant::now() + self.config.batch_timeout
        };
        self.take_pending(batch);
        while batch.len() < self.config.batch_size {
            let wait = deadline.saturating_duration_since(Instant::now());
            select! {
                recv(self.queue) -> msg => match msg {
                    Ok(events) => {
                        self.took(events);
                        self.take_pending(batch);
                    }
                    Err(_) => return true,
                },
                recv(self.stop) -> _ => {
                    self.stopping = true;
                    return false;
                }
                recv(self.closing) -> msg => self.shutdown(msg.ok()),
                default(wait) => {
                    // A closed queue may still hold events: keep draining it without waiting.
                    if self.queue.is_empty() {
                        return false;
                    }
                }
            }
        }
        false
    }

    /// Waits up to `d`, cut short by a reload's stop or by the stop deadline; false when cut short.
    fn pause(&mut self, d: Duration) -> bool {
        let d = match self.deadline {
            Some(deadline) => return Instant::now() + d < deadline && self.sleep(d),
            None => d,
        };
        self.sleep(d)
    }

    fn sleep(&mut self, d: Duration) -> bool {
        select! {
            recv(self.stop) -> _ => {
                self.stopping = true;
                false
            }
            recv(self.closing) -> msg => {
                self.shutdown(msg.ok());
                false
            }
            recv(after(d)) -> _ => true,
        }
    }

    /// Delivers a batch from the queue, within the rate limit.
    fn deliver_live(&mut self, mut batch: Vec<Event>) {
        while !batch.is_empty() {
            let take = match &mut self.bucket {
                None => batch.len(),
                Some(bucket) => {
                    let now = Instant::now();
                    let got = bucket.take(batch.len(), now);
                    if got == 0 {
                        let wait = bucket.wait_for(1, now);
                        if self.pause(wait) {
                            continue;
                        }
                        // Stopping: what is left is not held back by the limit.
                        batch.len()
                    } else {
                        got
                    }
                }
            };
            let rest = batch.split_off(take);
            self.deliver_batch(batch);
            batch = rest;
        }
    }

    /// Delivers a live batch. What no target takes goes to the fallback output once every
    /// target's breaker is open, else to the spool; without a spool the batch is held and tried
    /// again when a target may be contacted, while the queue behind it fills up to its bound: a
    /// short outage loses nothing, a long one loses what the queue cannot hold (counted as
    /// `dropped`). A reload takes a held batch over to the next writer.
    fn deliver_batch(&mut self, batch: Vec<Event>) {
        let mut left = if self.handing_over() {
            Outcome::Undelivered(batch)
        } else {
            self.deliver(batch)
        };
        let mut round = 0;
        while let Outcome::Undelivered(events) = left {
            self.publish();
            if self.handing_over() {
                self.handover.extend(events);
                break;
            }
            self.retry_spool();
            let to_fallback = self.has_fallback() && self.group.all_open(Instant::now());
            if to_fallback || self.spool.is_some() || self.deadline.is_some() {
                self.set_aside(events);
                break;
            }
            let wait = self
                .group
                .until_probe(Instant::now())
                .max(self.config.delivery.backoff.delay(round, &mut self.jitter));
            round = round.saturating_add(1);
            if !self.pause(wait) {
                // Cut short by a reload or the stop: the next round hands over or sets aside.
                left = Outcome::Undelivered(events);
                continue;
            }
            add(&self.stats.retried, events.len() as u64);
            left = self.deliver(events);
        }
        self.publish();
    }

    /// Whether a reload stopped this writer (and the agent is not stopping).
    fn handing_over(&self) -> bool {
        self.stopping && self.deadline.is_none()
    }

    fn has_fallback(&self) -> bool {
        self.fallback
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Sends a batch to its targets per the strategy, with retries.
    fn deliver(&mut self, batch: Vec<Event>) -> Outcome {
        let parts = self.group.plan(self.config.spec.as_ref(), batch);
        let mut left = Vec::new();
        for part in parts {
            if let Err(events) = self.attempt(part) {
                left.extend(events);
            }
        }
        self.healthy = left.is_empty();
        if left.is_empty() {
            Outcome::Delivered
        } else {
            Outcome::Undelivered(left)
        }
    }

    /// Tries a part on its targets in turn, in rounds with backoff between them, at most
    /// `retries` rounds after the first. Gives the events back when none took them.
    fn attempt(&mut self, part: Part) -> Result<(), Vec<Event>> {
        let Part { order, events } = part;
        let n = events.len() as u64;
        let retries = if self.deadline.is_some() || self.stopping {
            0
        } else {
            self.config.delivery.retries
        };
        for round in 0..=retries {
            let mut tried = false;
            let mut give_up = false;
            for &i in &order {
                // At shutdown with a spool, the spool is the safe place once the deadline nears.
                if self.spool.is_some() && self.deadline_near() {
                    return Err(events);
                }
                let start = Instant::now();
                if !self.group.targets[i].breaker.allow(start) {
                    continue;
                }
                tried = true;
                let result = self.write_caught(i, &events);
                let target = &mut self.group.targets[i];
                let unencodable = target.output.take_unencodable();
                let reached = !matches!(&result, Err(e) if e.kind() != ErrorKind::Rejected);
                target
                    .breaker
                    .record(Instant::now(), reached, start.elapsed());
                if unencodable > 0 {
                    self.unencodable_complaint.fail(&format!(
                        "left out {unencodable} event(s) it cannot encode (no metric, or a name it cannot send): counted in dropped_unencodable"
                    ));
                }
                match result {
                    Ok(()) => {
                        add(&self.stats.dropped_unencodable, unencodable);
                        if !target.output.confirms_later() {
                            add(&self.stats.events_out, n.saturating_sub(unencodable));
                        }
                        self.collect_confirmed();
                        self.complaint.recover();
                        return Ok(());
                    }
                    Err(e) if e.kind() == ErrorKind::Rejected => {
                        let sent = n.saturating_sub(unencodable);
                        let refused = e.refused().map_or(sent, |r| r.min(sent));
                        add(&self.stats.dropped_unencodable, unencodable);
                        add(&self.stats.dropped_rejected, refused);
                        add(&self.stats.events_out, sent - refused);
                        self.note_error(&format!(
                            "dropped {refused} of {sent} event(s): the backend refused them: {e}"
                        ));
                        return Ok(());
                    }
                    Err(e) => {
                        let timed_out = e.kind() == ErrorKind::Timeout;
                        self.note_error(&format!("delivery of {n} event(s) failed: {e}"));
                        if timed_out && !self.config.delivery.retry_on_timeout {
                            give_up = true;
                            break;
                        }
                    }
                }
            }
            let now = Instant::now();
            let all_open = order
                .iter()
                .all(|&i| self.group.targets[i].breaker.state(now) == BreakerState::Open);
            if !tried || give_up || round == retries || all_open || self.spool_rather_than_wait() {
                break;
            }
            let delay = self.config.delivery.backoff.delay(round, &mut self.jitter);
            if !self.pause_for_retry(delay) {
                break;
            }
            add(&self.stats.retried, n);
        }
        Err(events)
    }

    /// Writes `events` to target `i`. A panic in the output's write or encoding is a failed
    /// delivery like any other (retried, spooled or handed to the fallback), counted in `panics`;
    /// the target's output is built again, since the panic may have left it half-way through.
    fn write_caught(&mut self, i: usize, events: &[Event]) -> Result<(), OutputError> {
        let output = &mut self.group.targets[i].output;
        let panic = match lifeline::catch(|| {
            crate::fault::point("writer.write");
            output.write(events)
        }) {
            Ok(result) => return result,
            Err(panic) => panic,
        };
        add(&self.stats.panics, 1);
        let log_target = outputs::log_target(&self.config.name);
        match self.config.spec.build_target(i, &log_target) {
            Ok(fresh) => self.group.targets[i].output = fresh,
            Err(e) => {
                log::error!(target: &log_target, "cannot rebuild the output after its panic: {e}")
            }
        }
        Err(OutputError::Panicked(panic))
    }

    /// Waits before a retry like [`pause`](Self::pause), also cut short (false) as soon as the
    /// batch should rather go to the spool.
    fn pause_for_retry(&mut self, d: Duration) -> bool {
        if self.spool.is_none() {
            return self.pause(d);
        }
        let end = Instant::now() + d;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            if !self.pause(left.min(PRESSURE_CHECK)) || self.spool_rather_than_wait() {
                return false;
            }
        }
    }

    /// Whether a failed batch should go to the spool now rather than wait for its retries: when
    /// the queue behind it is half full, by events or by bytes. A fast source then loses nothing
    /// to a full queue while the first batches of an outage are retried and the breaker has not
    /// opened yet.
    fn spool_rather_than_wait(&self) -> bool {
        self.spool.is_some()
            && (get(&self.stats.queued) >= self.config.queue_size as u64 / 2
                || get(&self.stats.queued_bytes) >= self.config.delivery.queue_max_bytes / 2)
    }

    /// True when less than 250 ms are left before the stop deadline.
    fn deadline_near(&self) -> bool {
        self.deadline
            .is_some_and(|d| Instant::now() + Duration::from_millis(250) >= d)
    }

    fn note_error(&mut self, message: &str) {
        self.complaint.fail(message);
        self.last_error(message);
    }

    /// Shows `message` as the last error in `status`.
    fn last_error(&self, message: &str) {
        let mut last = self
            .stats
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        last.clear();
        last.push_str(message);
    }

    /// Puts events no target took in the fallback output when every target is open, else in the
    /// spool; at the stop, without a spool, in the fallback output all the same; else counts them
    /// failed.
    fn set_aside(&mut self, events: Vec<Event>) {
        let n = events.len() as u64;
        let fallback = self
            .fallback
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .filter(|_| self.spool.is_none() || self.group.all_open(Instant::now()));
        if let Some(route) = fallback {
            add(&self.stats.to_fallback, n);
            queue::offer(&route, events, &mut self.fallback_complaint);
            return;
        }
        match &mut self.spool {
            Some(spool) => {
                let before = spool.stats();
                match spool.push(&events) {
                    Ok(dropped) => {
                        self.spool_complaint.recover();
                        if self.disk_full_at.is_some_and(|t| t.elapsed() >= FULL_QUIET) {
                            self.disk_full_at = None;
                            self.disk_full.recover();
                        }
                        let after = spool.stats();
                        add(
                            &self.stats.spooled_events,
                            after.written_events - before.written_events,
                        );
                        add(
                            &self.stats.spooled_bytes,
                            after.written_bytes - before.written_bytes,
                        );
                        add(&self.stats.dropped_spool_full, dropped);
                        if dropped > 0 {
                            let which = match spool.when_full() {
                                WhenFull::DropOldest => "the oldest",
                                WhenFull::DropNewest => "the newest",
                            };
                            self.complaint
                                .fail(&format!("spool full: dropped {dropped} event(s), {which}"));
                        }
                    }
                    Err(e) => self.spool_failed(n, &e),
                }
                self.publish();
            }
            None if self.spool_wanted.is_some() => {
                add(&self.stats.dropped_spool_unavailable, n);
                self.spool_complaint.fail(&format!(
                    "the spool could not be opened: dropped {n} event(s) it would have held"
                ));
            }
            None => {
                add(&self.stats.failed, n);
                self.complaint.fail(&format!(
                    "stopping: {n} event(s) no target took and no spool to keep them: counted as failed"
                ));
            }
        }
    }

    /// Counts (by reason) and logs `n` events the spool could not take. A full file system is
    /// said as such; the next batch tries again, so spooling resumes by itself when space returns.
    fn spool_failed(&mut self, n: u64, e: &SpoolError) {
        let message = if e.no_space {
            add(&self.stats.dropped_spool_no_space, n);
            let message = format!(
                "the spool's file system is full: dropped {n} event(s) ({e}); spooling resumes \
                 when there is space"
            );
            self.disk_full_at = Some(Instant::now());
            self.disk_full.fail(&message);
            message
        } else {
            add(&self.stats.dropped_spool_unavailable, n);
            let message = format!("cannot spool {n} event(s): {e}");
            self.spool_complaint.fail(&message);
            message
        };
        self.last_error(&message);
    }

    /// Tries again to open a spool that could not be opened, once every [`SPOOL_RETRY`].
    fn retry_spool(&mut self) {
        let Some(config) = &self.spool_wanted else {
            return;
        };
        if Instant::now() < self.spool_retry {
            return;
        }
        self.spool_retry = Instant::now() + SPOOL_RETRY;
        match Spool::open(config.clone()) {
            Ok(spool) => {
                log::info!(
                    target: &outputs::log_target(&self.stats.name),
                    "spool {} opened: spooling again",
                    spool.dir().display()
                );
                self.spool = Some(spool);
                self.spool_wanted = None;
                self.spool_seen = (0, 0);
                self.spool_complaint.recover();
                self.publish();
            }
            Err(e) => self
                .spool_complaint
                .fail(&format!("{e}; still running without a spool")),
        }
    }

    /// Counts what the targets confirmed since the last look in `events_out`, and publishes what
    /// they still hold unconfirmed.
    fn collect_confirmed(&mut self) {
        let (mut events, mut bytes) = (0, 0);
        for target in &mut self.group.targets {
            add(&self.stats.events_out, target.output.take_confirmed());
            let (e, b) = target.output.unconfirmed();
            (events, bytes) = (events + e, bytes + b);
        }
        set(&self.stats.unconfirmed, events);
        set(&self.stats.unconfirmed_bytes, bytes);
    }

    /// Before the writer exits: waits for the targets to confirm what they hold, until the stop
    /// deadline (at most [`SETTLE`] for a reload); what is still unconfirmed then is counted in
    /// `dropped_shutdown`, with a log line.
    fn settle(&mut self) {
        let end = self.deadline.map_or(Instant::now() + SETTLE, |d| {
            d.checked_sub(Duration::from_millis(250)).unwrap_or(d)
        });
        loop {
            self.collect_confirmed();
            let left = get(&self.stats.unconfirmed);
            if left == 0 {
                return;
            }
            if Instant::now() >= end {
                add(&self.stats.dropped_shutdown, left);
                set(&self.stats.unconfirmed, 0);
                set(&self.stats.unconfirmed_bytes, 0);
                log::error!(target: &outputs::log_target(&self.stats.name), "{left} event(s) written but not confirmed by the backend when the writer stopped; they may be lost");
                return;
            }
            thread::sleep(PRESSURE_CHECK);
        }
    }

    /// Whether the spool holds something to replay, and a target may take it.
    fn replay_wanted(&self) -> bool {
        self.deadline.is_none()
            && !self.stopping
            && self.spool.as_ref().is_some_and(|s| !s.is_empty())
            && (self.healthy || Instant::now() >= self.next_probe)
    }

    /// Whether a spooled batch should be tried now: wanted, within the replay rate.
    fn replay_due(&self) -> bool {
        self.replay_wanted() && self.until_replay().is_zero()
    }

    /// How long the writer may wait for live events before it looks at the spool again.
    fn until_replay(&self) -> Duration {
        if !self.replay_wanted() {
            return IDLE;
        }
        self.replay_bucket
            .as_ref()
            .map_or(Duration::ZERO, |b| b.wait_for(1, Instant::now()).min(IDLE))
    }

    /// Delivers the oldest spooled batch; on failure it stays in the spool and the next try waits.
    fn replay_one(&mut self) {
        let Some(spool) = &mut self.spool else { return };
        let batch = match spool.peek() {
            Ok(Some(batch)) => batch,
            Ok(None) => return,
            Err(e) => {
                self.note_error(&format!("cannot read the spool: {e}"));
                self.healthy = false;
                self.next_probe = Instant::now() + IDLE;
                return;
            }
        };
        let n = batch.len() as u64;
        let retries = self.config.delivery.retries;
        self.config.delivery.retries = 0;
        let outcome = self.deliver(batch);
        self.config.delivery.retries = retries;
        let Some(spool) = &mut self.spool else { return };
        // The read position moves only when something was delivered: an outage writes no cursor.
        let moved = match &outcome {
            Outcome::Delivered => true,
            Outcome::Undelivered(left) => (left.len() as u64) < n,
        };
        let mut requeued = Ok(0);
        let mut kept = 0;
        let result = match outcome {
            Outcome::Delivered => {
                add(&self.stats.replayed, n);
                if let Some(bucket) = &mut self.replay_bucket {
                    bucket.spend(n as usize, Instant::now());
                }
                spool.commit()
            }
            Outcome::Undelivered(left) if (left.len() as u64) < n => {
                // Part went (carbon_ch): keep the rest, at the end of the spool.
                add(&self.stats.replayed, n - left.len() as u64);
                kept = left.len() as u64;
                let committed = spool.commit();
                requeued = spool.push(&left);
                committed
            }
            Outcome::Undelivered(_) => {
                // Tried again when a breaker lets a probe through, or, while none is open, after
                // the first retry delay.
                let now = Instant::now();
                let wait = match self.group.until_probe(now) {
                    d if d.is_zero() => self.config.delivery.backoff.delay(0, &mut self.jitter),
                    d => d,
                };
                self.next_probe = now + wait;
                Ok(())
            }
        };
        if let Err(e) = result {
            self.note_error(&format!("spool: {e}"));
        }
        match requeued {
            Ok(dropped) => add(&self.stats.dropped_spool_full, dropped),
            Err(e) => self.spool_failed(kept, &e),
        }
        if moved && self.last_checkpoint.elapsed() >= CHECKPOINT_EVERY {
            self.last_checkpoint = Instant::now();
            if let Some(Err(e)) = self.spool.as_mut().map(Spool::checkpoint) {
                self.note_error(&format!("spool: {e}"));
            }
        }
        self.publish();
    }

    /// Publishes breaker states and spool depth for `self` and `status`.
    fn publish(&mut self) {
        let states = self.group.states(Instant::now());
        *self
            .stats
            .breakers
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = states;
        if let Some(spool) = &self.spool {
            let s = spool.stats();
            set(&self.stats.spool_events, s.events);
            set(&self.stats.spool_bytes, s.bytes);
            let seen = get(&self.stats.spool_corrupt);
            if s.corrupt_records > seen {
                log::warn!(target: &outputs::log_target(&self.stats.name), "spool: skipped {} corrupt record(s) (a torn write, a power cut); their events are lost, counted in spool_corrupt", s.corrupt_records - seen);
            }
            set(&self.stats.spool_corrupt, s.corrupt_records);
            add(
                &self.stats.dropped_spool_lost,
                s.lost_events - self.spool_seen.0,
            );
            add(
                &self.stats.spool_refused,
                s.refused_files - self.spool_seen.1,
            );
            self.spool_seen = (s.lost_events, s.refused_files);
        }
    }
}
