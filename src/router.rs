//! The router: one thread that fans events out from the sources to each output's queue.
//!
//! It never blocks: an output whose queue is full loses the event (counted and logged once while
//! it repeats), and every other output still gets it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::{self, JoinHandle};

use crossbeam_channel::{Receiver, Sender, TrySendError, select};

use crate::complain::Complaint;
use crate::event::Event;
use crate::outputs;
use crate::pattern::Selector;
use crate::telemetry::{OutputStats, add, sub};

/// Where events for one output go.
#[derive(Debug, Clone)]
pub struct Route {
    /// Which events the output takes.
    pub selector: Selector,
    /// The output's queue. The channel itself is unbounded, so that it allocates only as it
    /// fills; [`offer`] holds it to `max_events` and `max_bytes`.
    pub queue: Sender<Event>,
    /// The most events the queue may hold.
    pub max_events: u64,
    /// The most bytes (estimated by [`crate::delivery::event_bytes`]) the queue may hold.
    pub max_bytes: u64,
    /// The output's counters.
    pub stats: Arc<OutputStats>,
}

/// Messages from the agent to the router.
#[derive(Debug)]
pub enum Control {
    /// Use these routes from now on (after a reload).
    Routes(Vec<Route>),
    /// Route what is already in the channel, then exit, closing every output queue.
    Stop,
}

/// Starts the router thread.
pub fn spawn(
    events: Receiver<Vec<Event>>,
    control: Receiver<Control>,
    routes: Vec<Route>,
) -> std::io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name("router".into())
        .spawn(move || run(events, control, routes))
}

fn run(events: Receiver<Vec<Event>>, control: Receiver<Control>, mut routes: Vec<Route>) {
    let mut complaints: Vec<Complaint> = complaints_for(&routes);
    loop {
        select! {
            recv(events) -> msg => match msg {
                Ok(batch) => batch.into_iter().for_each(|event| route(event, &routes, &mut complaints)),
                Err(_) => return,
            },
            recv(control) -> msg => match msg {
                Ok(Control::Routes(new)) => {
                    routes = new;
                    complaints = complaints_for(&routes);
                }
                Ok(Control::Stop) | Err(_) => {
                    while let Ok(batch) = events.try_recv() {
                        batch.into_iter().for_each(|event| route(event, &routes, &mut complaints));
                    }
                    return;
                }
            },
        }
    }
}

fn complaints_for(routes: &[Route]) -> Vec<Complaint> {
    routes
        .iter()
        .map(|r| Complaint::new(outputs::log_target(&r.stats.name)))
        .collect()
}

fn route(event: Event, routes: &[Route], complaints: &mut [Complaint]) {
    let Some(last) = routes
        .iter()
        .rposition(|r| r.selector.accepts(&event.service))
    else {
        return;
    };
    for (i, r) in routes.iter().enumerate().take(last) {
        if r.selector.accepts(&event.service) {
            offer(r, event.clone(), &mut complaints[i]);
        }
    }
    // The last output takes the event itself; the others took copies.
    offer(&routes[last], event, &mut complaints[last]);
}

/// Puts `event` in the route's queue without waiting; a full queue (by events or by bytes) drops
/// it, counted and logged. Also used to hand batches to a fallback output.
pub fn offer(route: &Route, event: Event, complaint: &mut Complaint) {
    let bytes = crate::delivery::event_bytes(&event);
    // Counted as queued before the send, so the writer never takes out what was not yet put in.
    let before = route.stats.queued_bytes.fetch_add(bytes, Ordering::Relaxed);
    let events_before = route.stats.queued.fetch_add(1, Ordering::Relaxed);
    let sent = if events_before >= route.max_events || before + bytes > route.max_bytes {
        Err(true)
    } else {
        // A disconnected queue belongs to an output being removed: not a drop worth counting.
        route
            .queue
            .try_send(event)
            .map_err(|e| matches!(e, TrySendError::Full(_)))
    };
    match sent {
        Ok(()) => {
            add(&route.stats.events_in, 1);
            complaint.recover();
        }
        Err(full) => {
            sub(&route.stats.queued, 1);
            sub(&route.stats.queued_bytes, bytes);
            if full {
                add(&route.stats.dropped_queue_full, 1);
                complaint.fail(
                    "queue full: dropping events (the output cannot keep up or its backend is down)",
                );
            }
        }
    }
}
