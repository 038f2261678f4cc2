//! The one thread that runs every instance whose collection never waits on anything but the
//! running kernel ([`super::Build::NEVER_WAITS`]: `cpu`, `memory`, `interface`, `tcpconns`, ...),
//! instead of a thread each.
//!
//! Such a collection asks `/proc`, `/sys` or netlink, which answer at once, so the instances can
//! take turns: on each wake-up the thread collects every instance that is due, one after another,
//! and only then settles them (the counters, the catalogue, the router; a panic caught and the
//! source rebuilt after a backoff), so that the router and the outputs after it are woken once for
//! the round rather than once per source. Every collection is marked busy while it runs, so the
//! agent's watchdog still sees one that hangs despite all this (a driver stuck under a `/sys`
//! file): it then gives this thread up, starts the hung instance afresh on a thread of its own,
//! and adds the others to a fresh host thread ([`super::runner::SourceHandle::check_hang`]).
//!
//! Each thread costs the kernel a wake-up per collection, and the router one per message: with a
//! router box's 13 host sources collecting every second, 41 context switches a second on their
//! own threads against 13 here, 12 of the sources on this thread and `df` on its own
//! (BENCHMARKS.md, "Host sources on one thread").

use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::runner::Collected;
use super::shared::{Hosted, Lease, Order, SharedThread, next_wake};

/// The host thread, not started yet: it starts with the first instance added.
pub fn thread() -> SharedThread {
    SharedThread::new("host", run)
}

/// The thread: until every handle of its [`SharedThread`] is gone, or it is given up.
fn run(orders: Receiver<Order>, lease: Lease) {
    let epoch = Instant::now();
    let mut entries: Vec<(u64, Hosted)> = Vec::new();
    let mut settling = Vec::new();
    loop {
        // Every instance due, in turn; one that came due while the others were collected too.
        // Each counts and catalogues its own events at once, and leaves them with the round's
        // unsent ones, where the watchdog takes them if a later collection of the round hangs.
        let mut gone = Vec::new();
        let mut given_up = false;
        let mut i = 0;
        while i < entries.len() && !given_up {
            let now = Instant::now();
            let entry = &mut entries[i].1;
            if entry.due() <= now {
                entry.resume(now);
                match entry.runner.collect(entry.source.as_mut()) {
                    Some(Collected {
                        mut events,
                        outcome,
                        took,
                    }) => {
                        entry.runner.record(&events, took);
                        settling.push((i, events.len() as u64, outcome, took));
                        lease.unsent.add(&mut events);
                    }
                    // This collection hung and the thread was given up: what the others
                    // collected before it went to the router then; the thread ends.
                    None if lease.given_up() => given_up = true,
                    // Replaced or stopped meanwhile: its handle has let it go.
                    None => gone.push(i),
                }
            }
            i += 1;
        }
        // Then the round's events, as one message: the router, and the outputs after it, wake
        // once for the round.
        let batch = lease.unsent.take();
        let accepted = match settling.first() {
            Some(&(i, ..)) => entries[i].1.runner.offer(batch),
            None => Some(true),
        };
        for (i, count, outcome, took) in settling.drain(..) {
            let kept = accepted
                .is_some_and(|accepted| entries[i].1.conclude(outcome, count, accepted, took));
            if !kept {
                gone.push(i);
            }
        }
        if given_up {
            return;
        }
        gone.sort_unstable();
        for i in gone.into_iter().rev() {
            entries.remove(i);
        }
        let next = next_wake(
            entries
                .iter()
                .map(|(_, e)| (e.due(), e.runner.config.interval)),
            epoch,
        );
        let order = match next {
            Some(due) => orders.recv_deadline(due),
            None => orders.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        if lease.given_up() {
            return;
        }
        match order {
            Ok(Order::Add(id, runner, gone)) => entries.push((id, Hosted::new(*runner, gone))),
            Ok(Order::Remove(id)) => entries.retain(|(i, _)| *i != id),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}
