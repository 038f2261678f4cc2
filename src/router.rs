//! The router: one thread that fans events out from the sources to each output's queue
//! ([`crate::delivery::queue`]).
//!
//! A source's collection arrives as one message and leaves as one message per output that takes
//! any of it, so a writer wakes once per collection, not once per event. The router never blocks:
//! an output whose queue is full loses the events that do not fit (counted and logged once while it
//! repeats), and every other output still gets them. A panic while routing loses only the batch in
//! hand (counted in `self.router.dropped_panic`, logged); the router goes on with the next.

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, select};

use crate::complain::Complaint;
use crate::delivery::queue::{Route, offer};
use crate::event::Event;
use crate::lifeline;
use crate::outputs;
use crate::telemetry::{RouterStats, add};

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
    stats: Arc<RouterStats>,
) -> std::io::Result<JoinHandle<()>> {
    lifeline::spawn("router".into(), move || {
        supervise(&events, &control, routes, &stats)
    })
}

/// What the router works with, kept across a panic.
struct State {
    routes: Vec<Route>,
    complaints: Vec<Complaint>,
    /// Events of the batch being routed.
    in_hand: u64,
    /// Set once the agent asked the router to stop.
    stopping: bool,
}

/// Routes until stopped. A panic while routing a batch loses that batch (counted in
/// `dropped_panic`, logged) and routing goes on with the next: the sources never stop for it.
fn supervise(
    events: &Receiver<Vec<Event>>,
    control: &Receiver<Control>,
    routes: Vec<Route>,
    stats: &RouterStats,
) {
    let mut state = State {
        complaints: complaints_for(&routes),
        routes,
        in_hand: 0,
        stopping: false,
    };
    let mut panics = Complaint::new("router");
    while let Err(panic) = lifeline::catch(|| run(events, control, &mut state)) {
        add(&stats.panics, 1);
        add(&stats.dropped_panic, state.in_hand);
        panics.fail(&format!(
            "panicked routing a batch: {panic}; its {} event(s) are lost, routing goes on",
            state.in_hand
        ));
        state.in_hand = 0;
    }
}

/// Routes until a stop, then routes what is left in the channel and returns. Called again after a
/// panic, it carries on where it was: waiting, or draining after the stop.
fn run(events: &Receiver<Vec<Event>>, control: &Receiver<Control>, state: &mut State) {
    while !state.stopping {
        select! {
            recv(events) -> msg => match msg {
                Ok(batch) => state.route(batch),
                Err(_) => return,
            },
            recv(control) -> msg => match msg {
                Ok(Control::Routes(new)) => {
                    state.complaints = complaints_for(&new);
                    state.routes = new;
                }
                Ok(Control::Stop) | Err(_) => state.stopping = true,
            },
        }
    }
    while let Ok(batch) = events.try_recv() {
        state.route(batch);
    }
}

impl State {
    fn route(&mut self, batch: Vec<Event>) {
        self.in_hand = batch.len() as u64;
        route(batch, &self.routes, &mut self.complaints);
        self.in_hand = 0;
    }
}

fn complaints_for(routes: &[Route]) -> Vec<Complaint> {
    routes
        .iter()
        .map(|r| Complaint::new(outputs::log_target(&r.stats.name)))
        .collect()
}

/// Sorts a batch into one batch per output that takes any of it, and offers each.
fn route(batch: Vec<Event>, routes: &[Route], complaints: &mut [Complaint]) {
    crate::fault::point("router");
    let mut per_route: Vec<Vec<Event>> = routes.iter().map(|_| Vec::new()).collect();
    for event in batch {
        let Some(last) = routes
            .iter()
            .rposition(|r| r.selector.accepts(&event.service))
        else {
            continue;
        };
        for (i, r) in routes.iter().enumerate().take(last) {
            if r.selector.accepts(&event.service) {
                per_route[i].push(event.clone());
            }
        }
        // The last output takes the event itself; the others took copies.
        per_route[last].push(event);
    }
    for ((r, events), complaint) in routes.iter().zip(per_route).zip(complaints) {
        if !events.is_empty() {
            offer(r, events, complaint);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pattern::Selector;
    use crate::telemetry::{OutputStats, get};
    use crossbeam_channel::unbounded;

    fn route_to(include: &[&str], max_events: u64) -> (Route, Receiver<Vec<Event>>) {
        let (queue, receiver) = unbounded();
        let include: Vec<String> = include.iter().map(|s| s.to_string()).collect();
        let route = Route {
            selector: Selector::from_lists(&include, &[]),
            queue,
            max_events,
            max_bytes: u64::MAX,
            stats: Arc::new(OutputStats::new("o")),
        };
        (route, receiver)
    }

    fn events(names: &[&str]) -> Vec<Event> {
        names.iter().map(|n| Event::new(*n, "h")).collect()
    }

    #[test]
    fn a_collection_reaches_each_output_as_one_message_of_what_it_takes() {
        let (cpu, cpu_rx) = route_to(&["cpu.*"], 100);
        let (all, all_rx) = route_to(&[], 100);
        let routes = vec![cpu, all];
        let mut complaints = complaints_for(&routes);
        route(
            events(&["cpu.user", "load.1", "cpu.idle"]),
            &routes,
            &mut complaints,
        );
        let names = |m: Vec<Event>| m.into_iter().map(|e| e.service).collect::<Vec<_>>();
        assert_eq!(names(cpu_rx.try_recv().unwrap()), ["cpu.user", "cpu.idle"]);
        assert_eq!(
            names(all_rx.try_recv().unwrap()),
            ["cpu.user", "load.1", "cpu.idle"]
        );
        assert!(cpu_rx.try_recv().is_err() && all_rx.try_recv().is_err());
        assert_eq!(get(&routes[1].stats.queued), 3);
    }
}
