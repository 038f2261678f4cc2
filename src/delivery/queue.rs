//! The queue in front of each output: the router offers each output its share of a collection,
//! and a writer hands batches to its fallback output the same way. Bounded by events and by
//! estimated bytes; what does not fit is dropped, counted and logged, never waited for.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crossbeam_channel::Sender;

use crate::complain::Complaint;
use crate::event::Event;
use crate::pattern::Selector;
use crate::telemetry::{OutputStats, add, sub};

/// Where events for one output go.
#[derive(Debug, Clone)]
pub struct Route {
    /// Which events the output takes.
    pub selector: Selector,
    /// The output's queue, of batches. The channel itself is unbounded, so that it allocates only
    /// as it fills; [`offer`] holds it to `max_events` events and `max_bytes`.
    pub queue: Sender<Vec<Event>>,
    /// The most events the queue may hold.
    pub max_events: u64,
    /// The most bytes (estimated by [`event_bytes`]) the queue may hold.
    pub max_bytes: u64,
    /// The output's counters.
    pub stats: Arc<OutputStats>,
}

/// An estimate of the memory an event holds: its own size and the text it points to. The queue's
/// byte bound counts with it.
pub fn event_bytes(event: &Event) -> u64 {
    let text = event.service.len()
        + event.host.len()
        + event.description.as_ref().map_or(0, String::len)
        + event.tags.iter().map(|t| t.len() + 24).sum::<usize>()
        + event
            .attributes
            .iter()
            .map(|(k, v)| k.len() + v.len() + 64)
            .sum::<usize>();
    (std::mem::size_of::<Event>() + text) as u64
}

/// Puts `events` in the route's queue, as one message, without waiting; the events that do not
/// fit (by count or by bytes) are dropped, counted and logged. Also used to hand batches to a
/// fallback output.
pub fn offer(route: &Route, mut events: Vec<Event>, complaint: &mut Complaint) {
    // Counted as queued before the send, so the writer never takes out what was not yet put in.
    let mut fit = 0;
    let mut fit_bytes = 0;
    for event in &events {
        let bytes = event_bytes(event);
        let before = route.stats.queued_bytes.fetch_add(bytes, Ordering::Relaxed);
        let events_before = route.stats.queued.fetch_add(1, Ordering::Relaxed);
        if events_before >= route.max_events || before + bytes > route.max_bytes {
            sub(&route.stats.queued, 1);
            sub(&route.stats.queued_bytes, bytes);
            break;
        }
        fit += 1;
        fit_bytes += bytes;
    }
    let dropped = (events.len() - fit) as u64;
    events.truncate(fit);
    if !events.is_empty() {
        // A disconnected queue belongs to an output being removed: not a drop worth counting.
        if route.queue.send(events).is_err() {
            sub(&route.stats.queued, fit as u64);
            sub(&route.stats.queued_bytes, fit_bytes);
            return;
        }
        add(&route.stats.events_in, fit as u64);
    }
    if dropped > 0 {
        add(&route.stats.dropped_queue_full, dropped);
        complaint
            .fail("queue full: dropping events (the output cannot keep up or its backend is down)");
    } else {
        complaint.recover();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::get;
    use crossbeam_channel::unbounded;

    fn events(names: &[&str]) -> Vec<Event> {
        names.iter().map(|n| Event::new(*n, "h")).collect()
    }

    #[test]
    fn what_does_not_fit_is_dropped_and_counted() {
        let (queue, rx) = unbounded();
        let r = Route {
            selector: Selector::from_lists(&[], &[]),
            queue,
            max_events: 3,
            max_bytes: u64::MAX,
            stats: Arc::new(OutputStats::new("o")),
        };
        let mut complaint = Complaint::new("out.o");
        offer(&r, events(&["a", "b"]), &mut complaint);
        offer(&r, events(&["c", "d", "e"]), &mut complaint);
        assert_eq!(rx.try_recv().unwrap().len(), 2);
        assert_eq!(rx.try_recv().unwrap().len(), 1, "only c fits");
        assert_eq!(
            (
                get(&r.stats.queued),
                get(&r.stats.events_in),
                get(&r.stats.dropped_queue_full)
            ),
            (3, 3, 2)
        );
    }
}
