//! One output run as the agent runs it: built from its JSON config, fed through its own queue,
//! drained by its writer thread, and counted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pipit::Event;
use pipit::delivery::OutputHandle;
use pipit::telemetry::{OutputStats, get};

/// Starts the output configured by `json`, one entry of `outputs`.
pub fn start(json: &str) -> OutputHandle {
    let text = format!(r#"{{"outputs": [{json}]}}"#);
    let config = pipit::config_file::parse("test.json", &text).unwrap_or_else(|e| panic!("{e:?}"));
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

/// `n` events with names drawn (from a fixed seed) out of the characters line protocol treats
/// specially, Unicode and the empty string, each at its own millisecond after `start`, with a
/// metric of its index.
pub fn nasty_events(n: usize, start: std::time::SystemTime) -> Vec<Event> {
    const PIECES: [&str; 25] = [
        "a", "cpu", ".", "#", "\\", ",", "=", " ", "\"", "'", "\n", "\t", "ü", "日本", "\u{a0}",
        "\u{200b}", "time", "db", "host", "tags", "__name__", "_field", "x\\ ", "", "\u{0}",
    ];
    let mut random = super::random::Random(0x9e37_79b9_7f4a_7c15);
    let mut next = move || random.next();
    let name = |next: &mut dyn FnMut() -> u64| -> String {
        let len = next() % 5;
        (0..len)
            .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
            .collect()
    };
    (0..n)
        .map(|i| {
            let mut e = Event::new(name(&mut next), name(&mut next))
                .with_metric(i as f64)
                .with_time(start + Duration::from_millis(i as u64));
            for _ in 0..next() % 3 {
                e.attributes.insert(name(&mut next), name(&mut next));
            }
            if next() % 4 == 0 {
                e.tags = vec![name(&mut next), name(&mut next)];
            }
            e
        })
        .collect()
}

/// Runs the output configured by `json` until each of `events` is delivered, failed, rejected or
/// left out, then stops it; returns its counters.
pub fn account_for(json: &str, events: Vec<Event>, deadline: Duration) -> Arc<OutputStats> {
    let n = events.len() as u64;
    let handle = start(json);
    let stats = handle.stats.clone();
    send(&handle, events);
    super::peers::wait_until("every event is accounted for", deadline, || {
        let (out, failed, rejected) = counts(&stats);
        (out + failed + rejected + get(&stats.dropped_unencodable) == n).then_some(())
    });
    stop(handle, deadline);
    stats
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
