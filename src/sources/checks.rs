//! The one thread that runs every instance whose collection is a check run (`exec` in check
//! mode), instead of a thread each.
//!
//! Such a collection only asks the supervisor for a run and reads its answer, so nothing needs to
//! wait on it: this thread starts each instance's run when it is due ([`Source::start_check`]),
//! waits for every answer at once, and hands each to its instance ([`Source::finish_check`]),
//! which then goes through the same steps as on a thread of its own (`Runner::settle`): the
//! counters, the catalogue, the router, a panic caught and the source rebuilt after a backoff.
//! A thread holds about 12 KiB of touched stack and reserves its whole stack's address space;
//! an instance here holds its state only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Select, Sender, bounded, unbounded};

use super::runner::{Outcome, Runner, Settled};
use super::{Emitter, RunResult, Source};
use crate::lifeline;
use crate::schedule::Schedule;
use crate::supervisor::SpawnError;

/// The first wait before an instance that panicked is rebuilt; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait before a rebuild.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// The thread wakes for due runs on a grid of this step (or a tenth of the shortest interval, if
/// less), so runs due within one step are asked for together: one wake-up of this thread and of
/// the supervisor for all of them instead of one each, which is most of what a check costs the
/// supervisor beyond its system calls (BENCHMARKS.md, "Checks due together"). A run starts at
/// most one step after it is due.
const START_GRID: Duration = Duration::from_millis(100);

/// The shared thread, as the sources' context holds it: started by the first instance added.
#[derive(Debug, Clone, Default)]
pub struct Host {
    orders: Arc<Mutex<Option<Sender<Order>>>>,
    next_id: Arc<AtomicU64>,
}

enum Order {
    Add(u64, Box<Entry>),
    Remove(u64),
}

/// An instance's place on the shared thread, as its handle holds it.
#[derive(Debug)]
pub struct Registration {
    id: u64,
    host: Host,
    /// Disconnected once the thread has dropped the instance.
    gone: Receiver<()>,
}

impl Registration {
    /// Drops the instance from the thread; a run in progress is left to the supervisor.
    pub fn remove(&self) {
        self.host.send(Order::Remove(self.id));
    }

    /// Waits until the thread has dropped the instance, or `deadline`; true when it has.
    pub fn wait_removed(&self, deadline: Instant) -> bool {
        !matches!(
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

impl Host {
    /// Adds the instance `runner` runs, starting the thread if it is not running.
    pub(super) fn add(&self, runner: Runner) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (gone_tx, gone) = bounded(0);
        let entry = Entry::new(runner, gone_tx);
        self.send(Order::Add(id, Box::new(entry)));
        Registration {
            id,
            host: self.clone(),
            gone,
        }
    }

    fn send(&self, order: Order) {
        let mut orders = self.orders.lock().unwrap_or_else(|e| e.into_inner());
        let order = match orders.as_ref() {
            Some(tx) => match tx.send(order) {
                Ok(()) => return,
                // The thread ended (it panicked, and the agent is stopping): start another.
                Err(e) => e.into_inner(),
            },
            None => order,
        };
        if matches!(order, Order::Remove(_)) {
            return; // No thread: nothing to remove from.
        }
        let (tx, rx) = unbounded();
        if let Err(e) = lifeline::spawn("checks".into(), move || run(rx)) {
            log::error!(target: "agent", "cannot start the checks thread: {e}");
            return;
        }
        let _ = tx.send(order);
        *orders = Some(tx);
    }
}

/// One instance on the thread.
struct Entry {
    runner: Runner,
    source: Box<dyn Source>,
    schedule: Schedule,
    /// The run asked for, when it started (monotonic and wall clock).
    pending: Option<(Receiver<RunResult>, Instant, SystemTime)>,
    /// After a panic: when the source is rebuilt.
    paused_until: Option<Instant>,
    backoff: Duration,
    /// Dropped with the entry, which tells its handle it is gone.
    _gone: Sender<()>,
}

impl Entry {
    fn new(runner: Runner, gone: Sender<()>) -> Entry {
        let source = runner.config.spec.build(&runner.ctx);
        let schedule = Schedule::new(runner.first_due(), runner.config.interval);
        Entry {
            runner,
            source,
            schedule,
            pending: None,
            paused_until: None,
            backoff: FIRST_BACKOFF,
            _gone: gone,
        }
    }

    /// When it next needs the thread without an answer to wake it.
    fn next_due(&self) -> Option<Instant> {
        if self.pending.is_some() {
            return None;
        }
        Some(self.paused_until.unwrap_or(self.schedule.due()))
    }

    /// Starts its run if it is due; false when the instance is to be dropped (the router is gone).
    fn start_if_due(&mut self, now: Instant) -> bool {
        if self.next_due().is_none_or(|due| due > now) {
            return true;
        }
        if self.paused_until.take().is_some() {
            self.source = self.runner.config.spec.build(&self.runner.ctx);
            self.runner.count_restart();
            self.schedule = Schedule::new(now, self.runner.config.interval);
        }
        self.runner.mark_started();
        let (started, wall) = (Instant::now(), SystemTime::now());
        match lifeline::catch(|| self.source.start_check()) {
            Ok(Some(Ok(answer))) => {
                self.pending = Some((answer, started, wall));
                true
            }
            Ok(Some(Err(e))) => self.finish(Err(e), started, wall),
            Ok(None) => self.finish(Err(SpawnError::Stopped), started, wall),
            Err(message) => self.settle(Vec::new(), Err(Outcome::Panicked(message)), started),
        }
    }

    /// Hands the answer to the source and settles the collection; false when the instance is to
    /// be dropped.
    fn finish(&mut self, run: RunResult, started: Instant, wall: SystemTime) -> bool {
        self.pending = None;
        let mut emit = Emitter::new(&self.runner.config.template, wall);
        let source = &mut self.source;
        let outcome = match lifeline::catch(|| source.finish_check(run, &mut emit)) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Outcome::Failed(e)),
            Err(message) => Err(Outcome::Panicked(message)),
        };
        let events = emit.into_events();
        self.settle(events, outcome, started)
    }

    fn settle(
        &mut self,
        events: Vec<crate::event::Event>,
        outcome: Result<(), Outcome>,
        started: Instant,
    ) -> bool {
        let took = started.elapsed();
        match self
            .runner
            .settle(self.source.as_mut(), events, outcome, took)
        {
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

/// What woke the thread.
enum Woken {
    Order(Option<Order>),
    Answer(usize, RunResult),
    Due,
}

/// The thread: until every [`Host`] is gone.
fn run(orders: Receiver<Order>) {
    let epoch = Instant::now();
    let mut entries: Vec<(u64, Entry)> = Vec::new();
    loop {
        let now = Instant::now();
        entries.retain_mut(|(_, e)| e.start_if_due(now));
        let grid = entries
            .iter()
            .map(|(_, e)| e.runner.config.interval / 10)
            .fold(START_GRID, Duration::min);
        let next = entries
            .iter()
            .filter_map(|(_, e)| e.next_due())
            .min()
            .map(|due| on_grid(due, epoch, grid));
        let woken = {
            let mut select = Select::new();
            select.recv(&orders);
            let mut waiting = Vec::new();
            for (i, (_, e)) in entries.iter().enumerate() {
                if let Some((answer, _, _)) = &e.pending {
                    select.recv(answer);
                    waiting.push(i);
                }
            }
            let op = match next {
                Some(due) => select.select_deadline(due).ok(),
                None => Some(select.select()),
            };
            match op {
                None => Woken::Due,
                Some(op) if op.index() == 0 => Woken::Order(op.recv(&orders).ok()),
                Some(op) => {
                    let i = waiting[op.index() - 1];
                    let answer = entries[i].1.pending.as_ref().map(|(a, _, _)| a);
                    let run = answer
                        .and_then(|a| op.recv(a).ok())
                        .unwrap_or(Err(SpawnError::Stopped));
                    Woken::Answer(i, run)
                }
            }
        };
        match woken {
            Woken::Due => {}
            Woken::Order(None) => return,
            Woken::Order(Some(Order::Add(id, entry))) => entries.push((id, *entry)),
            Woken::Order(Some(Order::Remove(id))) => entries.retain(|(i, _)| *i != id),
            Woken::Answer(i, run) => {
                let entry = &mut entries[i].1;
                let Some((_, started, wall)) = entry.pending.take() else {
                    continue;
                };
                if !entry.finish(run, started, wall) {
                    entries.swap_remove(i);
                }
            }
        }
    }
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
    fn removing_from_a_host_that_never_started_is_nothing() {
        let host = Host::default();
        host.send(Order::Remove(3));
        assert!(host.orders.lock().unwrap().is_none());
    }
}
