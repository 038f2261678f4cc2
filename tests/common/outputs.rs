//! One output run as the agent runs it: built from its JSON config, fed through its own queue,
//! drained by its writer thread, and counted.

use std::time::{Duration, Instant};

use pipit::Event;
use pipit::delivery::OutputHandle;
use pipit::telemetry::{OutputStats, get};

/// Starts the output configured by `json`, one entry of `outputs`.
pub fn start(json: &str) -> OutputHandle {
    let text = format!(r#"{{"outputs": [{json}]}}"#);
    let config = pipit::config::parse("test.json", &text).unwrap_or_else(|e| panic!("{e:?}"));
    OutputHandle::start(config.outputs.into_iter().next().unwrap()).unwrap()
}

/// Puts `events` in the output's queue.
pub fn send(handle: &OutputHandle, events: impl IntoIterator<Item = Event>) {
    let queue = handle.sender().unwrap();
    for e in events {
        queue.send(vec![e]).unwrap();
    }
}

/// Closes the queue and waits for the writer to deliver what is left.
pub fn stop(mut handle: OutputHandle, deadline: Duration) {
    let deadline = Instant::now() + deadline;
    handle.close(deadline);
    assert!(
        handle.join_until(deadline),
        "the writer did not finish in time"
    );
}

/// Events (delivered, failed, rejected).
pub fn counts(stats: &OutputStats) -> (u64, u64, u64) {
    (
        get(&stats.events_out),
        get(&stats.failed),
        get(&stats.dropped_rejected),
    )
}

/// Each target's breaker state, an open breaker whose probe is due (`half_open`, read between two
/// probes) counting as `open`: not closed, not yet tried again.
pub fn breaker_states(stats: &OutputStats) -> Vec<(String, &'static str)> {
    stats
        .breakers
        .lock()
        .unwrap()
        .iter()
        .map(|(target, state)| {
            let state = if *state == "half_open" {
                "open"
            } else {
                *state
            };
            (target.clone(), state)
        })
        .collect()
}
