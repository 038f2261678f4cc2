//! A thread that runs many source instances in turn instead of a thread each: what the checks
//! thread ([`super::checks`]) and the host thread ([`super::host`]) have in common.
//!
//! The instances' handles hold a [`SharedThread`]. The thread is started by the first instance
//! added (again if it ended), and wakes on a grid (a tenth of a second) so that instances due
//! within one step of it share a wake-up. A thread whose collection hangs is given up
//! ([`Registration::give_up`]):
//! the next instance added starts a fresh one, the events the thread had collected in that round
//! and not sent yet (`Unsent`) go to the router from there, and the given-up thread, if its
//! collection ever returns, drops its instances without sending anything more.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded, unbounded};

use super::Source;
use super::runner::{Collected, Outcome, Runner, Settled};
use crate::event::Event;
use crate::lifeline;
use crate::schedule::Schedule;

/// The first wait before an instance that panicked is rebuilt; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait before a rebuild.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A shared thread wakes for due instances on a grid of this step (or a tenth of the shortest
/// interval, if less), so instances due within one step are taken together: one wake-up of the
/// thread (and of the router and the supervisor after it) for all of them instead of one each
/// (BENCHMARKS.md, "Checks due together"). An instance's collection starts at most one step after
/// it is due.
pub(super) const GRID: Duration = Duration::from_millis(100);

/// A shared thread, as the sources' context holds it: started when the first instance is added.
#[derive(Debug, Clone)]
pub struct SharedThread {
    name: &'static str,
    run: fn(Receiver<Order>, Lease),
    /// The running thread; `None` when none runs.
    running: Arc<Mutex<Option<Running>>>,
    next_id: Arc<AtomicU64>,
    /// Bumped each time the running thread is given up.
    generation: Arc<AtomicU64>,
}

/// What the thread is asked.
pub(super) enum Order {
    /// Run this instance from now on; the sender is dropped with it.
    Add(u64, Box<Runner>, Sender<()>),
    /// Drop the instance of this id.
    Remove(u64),
}

/// A running shared thread, as its instances' handles reach it.
#[derive(Debug)]
struct Running {
    /// Where its orders go.
    orders: Sender<Order>,
    /// What it holds unsent.
    unsent: Unsent,
}

/// The thread's knowledge of whether it is still the one its instances' handles count on.
pub(super) struct Lease {
    generation: Arc<AtomicU64>,
    held: u64,
    /// Where the thread keeps the events of a round until it sends them.
    pub(super) unsent: Unsent,
}

/// The events a shared thread has collected in a round and not sent yet, kept where the watchdog
/// can take them: when a later collection of the round hangs, they go to the router when the
/// thread is given up, not whenever (if ever) the hung collection returns.
#[derive(Debug, Default, Clone)]
pub(super) struct Unsent(Arc<Mutex<Vec<Event>>>);

impl Unsent {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Event>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `events` (moved out) with the round's.
    pub(super) fn add(&self, events: &mut Vec<Event>) {
        self.lock().append(events);
    }

    /// Takes every event kept.
    pub(super) fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.lock())
    }
}

impl Lease {
    /// True once the thread has been given up: it is to return without sending anything more.
    pub(super) fn given_up(&self) -> bool {
        self.generation.load(Ordering::SeqCst) != self.held
    }
}

/// An instance's place on a shared thread, as its handle holds it.
#[derive(Debug)]
pub struct Registration {
    id: u64,
    thread: SharedThread,
    /// The thread's generation when the instance was added.
    generation: u64,
    /// Disconnected once the thread has dropped the instance.
    gone: Receiver<()>,
}

impl Registration {
    /// Drops the instance from the thread; what its collection is waiting for (a check's run) is
    /// left to finish on its own.
    pub fn remove(&self) {
        self.thread.send(Order::Remove(self.id));
    }

    /// True when the thread the instance was added to has been given up: the instance no longer
    /// runs and is to be added again.
    pub fn stranded(&self) -> bool {
        self.thread.generation.load(Ordering::SeqCst) != self.generation
    }

    /// Gives up the instance's thread, hung in a collection: the next instance added starts a
    /// fresh one. Returns the events the thread collected in this round before the hung
    /// collection and had not sent, for the caller to send; nothing if the thread was given up
    /// already.
    pub fn give_up(&self) -> Vec<Event> {
        let mut running = self.thread.lock();
        let generation = &self.thread.generation;
        let next = self.generation + 1;
        if generation
            .compare_exchange(self.generation, next, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return Vec::new();
        }
        running
            .take()
            .map_or_else(Vec::new, |running| running.unsent.take())
    }

    /// The shared thread the instance was added to.
    pub fn thread(&self) -> &SharedThread {
        &self.thread
    }

    /// Waits until the thread has dropped the instance, or `deadline`; true when it has (or the
    /// thread was given up, which runs nothing more).
    pub fn wait_removed(&self, deadline: Instant) -> bool {
        self.stranded()
            || !matches!(
                self.gone.recv_deadline(deadline),
                Err(RecvTimeoutError::Timeout)
            )
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // As a thread of its own ends when its handle is dropped.
        self.remove();
    }
}

impl SharedThread {
    /// A shared thread named `name` running `run`, not started yet.
    pub(super) fn new(name: &'static str, run: fn(Receiver<Order>, Lease)) -> SharedThread {
        SharedThread {
            name,
            run,
            running: Arc::default(),
            next_id: Arc::default(),
            generation: Arc::default(),
        }
    }

    /// Adds the instance `runner` runs, starting the thread if it is not running.
    pub(super) fn add(&self, runner: Runner) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (gone_tx, gone) = bounded(0);
        let generation = self.send(Order::Add(id, Box::new(runner), gone_tx));
        Registration {
            id,
            thread: self.clone(),
            generation,
            gone,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends `order` to the thread, starting one if none runs; returns the generation of the
    /// thread it went to.
    fn send(&self, order: Order) -> u64 {
        let mut running = self.lock();
        let generation = self.generation.load(Ordering::SeqCst);
        let order = match running.as_ref() {
            Some(thread) => match thread.orders.send(order) {
                Ok(()) => return generation,
                // The thread ended (it panicked, and the agent is stopping): start another.
                Err(e) => e.into_inner(),
            },
            None => order,
        };
        if matches!(order, Order::Remove(_)) {
            return generation; // No thread: nothing to remove from.
        }
        let (tx, rx) = unbounded();
        let unsent = Unsent::default();
        let lease = Lease {
            generation: self.generation.clone(),
            held: generation,
            unsent: unsent.clone(),
        };
        let run = self.run;
        if let Err(e) = lifeline::spawn(self.name.into(), move || run(rx, lease)) {
            log::error!(target: "agent", "cannot start the {} thread: {e}", self.name);
            return generation;
        }
        let _ = tx.send(order);
        *running = Some(Running { orders: tx, unsent });
        generation
    }
}

/// One instance on a shared thread: its runner, source and schedule, and its backoff after a
/// panic.
pub(super) struct Hosted {
    pub(super) runner: Runner,
    pub(super) source: Box<dyn Source>,
    schedule: Schedule,
    /// After a panic: when the source is rebuilt.
    paused_until: Option<Instant>,
    backoff: Duration,
    /// Dropped with the instance, which tells its handle it is gone.
    _gone: Sender<()>,
}

impl Hosted {
    /// The instance `runner` runs, built.
    pub(super) fn new(runner: Runner, gone: Sender<()>) -> Hosted {
        let source = runner.config.spec.build(&runner.ctx);
        let schedule = Schedule::new(runner.first_due(), runner.config.interval);
        Hosted {
            runner,
            source,
            schedule,
            paused_until: None,
            backoff: FIRST_BACKOFF,
            _gone: gone,
        }
    }

    /// When it is next due (after a panic: when it is rebuilt).
    pub(super) fn due(&self) -> Instant {
        self.paused_until.unwrap_or(self.schedule.due())
    }

    /// Rebuilds the source if a panic paused it and its backoff is over (the caller checked it is
    /// due); its schedule then starts at `now`.
    pub(super) fn resume(&mut self, now: Instant) {
        if self.paused_until.take().is_some() {
            self.source = self.runner.config.spec.build(&self.runner.ctx);
            self.runner.count_restart();
            self.schedule = Schedule::new(now, self.runner.config.interval);
        }
    }

    /// Settles a collection ([`Runner::settle`]) and moves to the next tick, or pauses the
    /// instance for its backoff after a panic. False when the instance is to be dropped (the
    /// router is gone).
    pub(super) fn settle(&mut self, collected: Collected) -> bool {
        let took = collected.took;
        let settled = self.runner.settle(self.source.as_mut(), collected);
        self.after(settled, took)
    }

    /// [`Hosted::settle`] for a collection whose `count` events went to the router with others
    /// and were `accepted` or not (its counters and catalogue already recorded).
    pub(super) fn conclude(
        &mut self,
        outcome: Result<(), Outcome>,
        count: u64,
        accepted: bool,
        took: Duration,
    ) -> bool {
        let settled = self
            .runner
            .conclude(self.source.as_mut(), outcome, count, accepted);
        self.after(settled, took)
    }

    fn after(&mut self, settled: Settled, took: Duration) -> bool {
        match settled {
            Settled::RouterGone => return false,
            Settled::Done { failed } => {
                if !failed {
                    self.backoff = FIRST_BACKOFF;
                }
                let skipped = self.schedule.advance(Instant::now());
                self.runner.count_skipped_ticks(skipped, took);
            }
            Settled::Panicked(message) => {
                log::error!(
                    target: &super::log_target(&self.runner.config.name),
                    "panicked: {message}; restarting in {}s",
                    self.backoff.as_secs()
                );
                self.paused_until = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            }
        }
        true
    }
}

/// When a shared thread next wakes for instances due at `dues`, each with its interval: the
/// earliest due time rounded up to the grid (a whole number of steps after `epoch`); `None`
/// when nothing is due.
pub(super) fn next_wake(
    dues: impl Iterator<Item = (Instant, Duration)>,
    epoch: Instant,
) -> Option<Instant> {
    let (mut first, mut step) = (None::<Instant>, GRID);
    for (due, interval) in dues {
        first = Some(first.map_or(due, |f| f.min(due)));
        step = step.min(interval / 10);
    }
    first.map(|due| on_grid(due, epoch, step))
}

/// The first instant at or after `due` that is a whole number of `step`s after `epoch` (`due`
/// itself when `step` is zero or `due` is not after `epoch`).
fn on_grid(due: Instant, epoch: Instant, step: Duration) -> Instant {
    let step = step.as_nanos();
    let since = due.saturating_duration_since(epoch).as_nanos();
    if step == 0 || since == 0 {
        return due;
    }
    let steps = since.div_ceil(step);
    // Saturates only for a due time centuries away, where the grid no longer matters.
    let on = u64::try_from(steps * step).unwrap_or(u64::MAX);
    epoch.checked_add(Duration::from_nanos(on)).unwrap_or(due)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_times_are_rounded_up_to_the_grid() {
        let epoch = Instant::now();
        let step = Duration::from_millis(100);
        let at = |ms| epoch + Duration::from_millis(ms);
        assert_eq!(on_grid(at(1), epoch, step), at(100));
        assert_eq!(on_grid(at(99), epoch, step), at(100));
        assert_eq!(on_grid(at(100), epoch, step), at(100));
        assert_eq!(on_grid(at(101), epoch, step), at(200));
        // Runs due within one step share one wake-up.
        assert_eq!(
            on_grid(at(9_901), epoch, step),
            on_grid(at(9_999), epoch, step)
        );
        // Never earlier than due; unchanged without a grid or before the epoch.
        assert_eq!(on_grid(at(7), epoch, Duration::ZERO), at(7));
        assert_eq!(on_grid(epoch, epoch, step), epoch);
    }

    #[test]
    fn the_wake_is_the_first_due_on_the_finest_grid() {
        let epoch = Instant::now();
        let at = |ms| epoch + Duration::from_millis(ms);
        let ten_s = Duration::from_secs(10);
        assert_eq!(next_wake([].into_iter(), epoch), None);
        assert_eq!(
            next_wake([(at(250), ten_s), (at(130), ten_s)].into_iter(), epoch),
            Some(at(200))
        );
        // A 200 ms interval makes the step 20 ms.
        assert_eq!(
            next_wake(
                [(at(250), ten_s), (at(130), Duration::from_millis(200))].into_iter(),
                epoch
            ),
            Some(at(140))
        );
    }

    fn never_run(_: Receiver<Order>, _: Lease) {}

    #[test]
    fn removing_from_a_thread_that_never_started_is_nothing() {
        let thread = SharedThread::new("test", never_run);
        thread.send(Order::Remove(3));
        assert!(thread.running.lock().unwrap().is_none());
    }
}
