//! The one thread that runs every instance whose collection is a check run (`exec` in check
//! mode), instead of a thread each.
//!
//! Such a collection only asks the supervisor for a run and reads its answer, so nothing needs to
//! wait on it: this thread starts each instance's run when it is due ([`super::Source::start_check`]),
//! waits for every answer at once, and hands each to its instance ([`super::Source::finish_check`]),
//! which then goes through the same steps as on a thread of its own (`Runner::settle`): the
//! counters, the catalogue, the router, a panic caught and the source rebuilt after a backoff.
//! A thread holds about 12 KiB of touched stack and reserves its whole stack's address space;
//! an instance here holds its state only.

use std::time::{Instant, SystemTime};

use crossbeam_channel::{Receiver, Select, Sender, unbounded};

use super::runner::{Collected, Outcome};
use super::shared::{GRID, Hosted, Lease, Order, SharedThread, next_wake};
use super::{Emitter, RunResult};
use crate::lifeline;
use crate::supervisor::{Answer, Reply, SpawnError};

/// The checks thread, not started yet: it starts with the first instance added.
pub fn thread() -> SharedThread {
    SharedThread::new("checks", run)
}

/// One instance on the thread, and when the run it asked for (if one is pending) started
/// (monotonic and wall clock).
struct Entry {
    hosted: Hosted,
    pending: Option<(Instant, SystemTime)>,
}

impl Entry {
    /// When it next needs the thread without an answer to wake it.
    fn next_due(&self) -> Option<Instant> {
        if self.pending.is_some() {
            return None;
        }
        Some(self.hosted.due())
    }

    /// Starts its run if it is due, its answer to come on `answers` tagged `id`; false when the
    /// instance is to be dropped (the router is gone).
    fn start_if_due(&mut self, now: Instant, answers: &Sender<Answer>, id: u64) -> bool {
        if self.next_due().is_none_or(|due| due > now) {
            return true;
        }
        self.hosted.resume(now);
        self.hosted.runner.mark_started();
        let (started, wall) = (Instant::now(), SystemTime::now());
        let source = &mut self.hosted.source;
        let reply = Reply {
            to: answers.clone(),
            tag: id,
        };
        match lifeline::catch(|| source.start_check(reply)) {
            Ok(Some(Ok(()))) => {
                self.pending = Some((started, wall));
                true
            }
            Ok(Some(Err(e))) => self.finish(Err(e), started, wall, Instant::now()),
            Ok(None) => self.finish(Err(SpawnError::Stopped), started, wall, Instant::now()),
            Err(message) => self.hosted.settle(Collected {
                events: Vec::new(),
                outcome: Err(Outcome::Panicked(message)),
                took: started.elapsed(),
            }),
        }
    }

    /// Hands the answer to the source and settles the collection, which took from `started` to
    /// `ended`; false when the instance is to be dropped.
    fn finish(
        &mut self,
        run: RunResult,
        started: Instant,
        wall: SystemTime,
        ended: Instant,
    ) -> bool {
        self.pending = None;
        let mut emit = Emitter::new(&self.hosted.runner.config.template, wall);
        let source = &mut self.hosted.source;
        let outcome = match lifeline::catch(|| source.finish_check(run, &mut emit)) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Outcome::Failed(e)),
            Err(message) => Err(Outcome::Panicked(message)),
        };
        self.hosted.settle(Collected {
            events: emit.into_events(),
            outcome,
            took: ended.saturating_duration_since(started),
        })
    }
}

/// Hands `answer` to the instance that asked for it, found by its id in `entries` (kept in the
/// order of their ids); an instance removed since it asked has no one to answer.
fn answer(entries: &mut Vec<(u64, Entry)>, answer: Answer) {
    let Ok(i) = entries.binary_search_by_key(&answer.tag, |(id, _)| *id) else {
        return;
    };
    let entry = &mut entries[i].1;
    let Some((started, wall)) = entry.pending.take() else {
        return;
    };
    if !entry.finish(answer.result, started, wall, answer.sent) {
        entries.remove(i);
    }
}

/// The thread: until every handle of its [`SharedThread`] is gone. Its collections never block,
/// so it is never given up.
fn run(orders: Receiver<Order>, _: Lease) {
    let epoch = Instant::now();
    // In the order of their ids, so that an answer finds its instance by a binary search.
    let mut entries: Vec<(u64, Entry)> = Vec::new();
    // Every answer comes on one channel, tagged with its instance's id: the thread finds them
    // queued when it wakes, whatever the number of runs pending (and one wakes it when it is to
    // sleep longer than a grid step).
    let (answers, answered) = unbounded();
    loop {
        for a in answered.try_iter() {
            answer(&mut entries, a);
        }
        let now = Instant::now();
        entries.retain_mut(|(id, e)| e.start_if_due(now, &answers, *id));
        let next = next_wake(
            entries.iter().filter_map(|(_, e)| {
                e.next_due()
                    .map(|due| (due, e.hosted.runner.config.interval))
            }),
            epoch,
        );
        // An answer can wait for a wake-up due within one grid step anyway: the thread listens
        // for answers only when it would sleep longer, so a supervisor ending runs one after
        // another does not wake it for each. What a run took is counted to when its answer was
        // sent, not read.
        let listen = next.is_none_or(|due| due.saturating_duration_since(now) > GRID);
        let mut select = Select::new();
        select.recv(&orders);
        if listen {
            select.recv(&answered);
        }
        let op = match next {
            Some(due) => select.select_deadline(due).ok(),
            None => Some(select.select()),
        };
        let Some(op) = op else {
            continue;
        };
        if op.index() != 0 {
            // The thread holds a sender: the channel never disconnects.
            if let Ok(a) = op.recv(&answered) {
                answer(&mut entries, a);
            }
            continue;
        }
        let order = op.recv(&orders);
        // The answers waiting for a wake-up are settled before the order: a run that ended before
        // its instance was removed is reported, as it would have been had it woken the thread.
        for a in answered.try_iter() {
            answer(&mut entries, a);
        }
        match order {
            Err(_) => return,
            Ok(Order::Add(id, runner, gone)) => {
                let at = entries.partition_point(|(i, _)| *i < id);
                let hosted = Hosted::new(*runner, gone);
                let entry = Entry {
                    hosted,
                    pending: None,
                };
                entries.insert(at, (id, entry));
            }
            Ok(Order::Remove(id)) => entries.retain(|(i, _)| *i != id),
        }
    }
}
