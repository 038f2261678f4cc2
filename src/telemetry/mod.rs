//! The agent's own counters: what each source and output did (the `self` source reports them),
//! and the metric catalogue the sources record into ([`catalogue`]).

pub mod catalogue;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use catalogue::Catalogue;

/// Counters of one output, shared by the router (which counts in) and its writer (which counts
/// out). They survive a reload that keeps the output.
#[derive(Debug)]
pub struct OutputStats {
    /// The output's name.
    pub name: String,
    /// Events the router queued for this output.
    pub events_in: AtomicU64,
    /// Events the output delivered (and the backend confirmed).
    pub events_out: AtomicU64,
    /// Events whose delivery failed.
    pub failed: AtomicU64,
    /// Panics caught in the output's write or encoding (each a failed delivery attempt).
    pub panics: AtomicU64,
    /// Events dropped because the backend refused their batch as bad (such as an HTTP 4xx).
    pub dropped_rejected: AtomicU64,
    /// Events dropped because the output's queue was full.
    pub dropped_queue_full: AtomicU64,
    /// Events dropped at shutdown because the stop deadline passed before they were delivered.
    pub dropped_shutdown: AtomicU64,
    /// Events lost with a writer that panicked outside a write (what it held in its hands, and
    /// what it had written but the backend had not confirmed).
    pub dropped_panic: AtomicU64,
    /// Events the output left out because it cannot encode them (no metric, a bad name).
    pub dropped_unencodable: AtomicU64,
    /// Events waiting in the queue or in the writer's hands.
    pub queued: AtomicU64,
    /// Events written to the backend and held until it confirms them (Graphite over TCP: its
    /// TCP acknowledgement plus the resend window); they count in `events_out` once confirmed.
    pub unconfirmed: AtomicU64,
    /// Bytes held for those events.
    pub unconfirmed_bytes: AtomicU64,
    /// Estimated bytes of the events in the queue.
    pub queued_bytes: AtomicU64,
    /// Events sent again after a failed attempt (once per retry).
    pub retried: AtomicU64,
    /// Events written to the disk spool.
    pub spooled_events: AtomicU64,
    /// Bytes written to the disk spool.
    pub spooled_bytes: AtomicU64,
    /// Events delivered from the disk spool.
    pub replayed: AtomicU64,
    /// Events handed to the fallback output.
    pub to_fallback: AtomicU64,
    /// Events dropped because the spool was full.
    pub dropped_spool_full: AtomicU64,
    /// Spool records skipped because they were corrupt.
    pub spool_corrupt: AtomicU64,
    /// Events not spooled because the spool's file system was full.
    pub dropped_spool_no_space: AtomicU64,
    /// Events lost from a spool directory removed while in use.
    pub dropped_spool_lost: AtomicU64,
    /// Events not spooled because the spool could not be opened or written.
    pub dropped_spool_unavailable: AtomicU64,
    /// Spool files refused by their checks (another owner, a loose mode, a symlink), never
    /// replayed.
    pub spool_refused: AtomicU64,
    /// Events in the spool waiting for replay.
    pub spool_events: AtomicU64,
    /// Bytes in the spool directory.
    pub spool_bytes: AtomicU64,
    /// The last delivery error, for `status`; empty when none.
    pub last_error: Mutex<String>,
    /// Each target's name and breaker state (`closed`, `open`, `half_open`).
    pub breakers: Mutex<Vec<(String, &'static str)>>,
}

impl OutputStats {
    /// Zeroed counters for the output `name`.
    pub fn new(name: &str) -> OutputStats {
        OutputStats {
            name: name.to_owned(),
            events_in: AtomicU64::new(0),
            events_out: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            panics: AtomicU64::new(0),
            dropped_rejected: AtomicU64::new(0),
            dropped_queue_full: AtomicU64::new(0),
            dropped_shutdown: AtomicU64::new(0),
            dropped_panic: AtomicU64::new(0),
            dropped_unencodable: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            unconfirmed: AtomicU64::new(0),
            unconfirmed_bytes: AtomicU64::new(0),
            queued_bytes: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            spooled_events: AtomicU64::new(0),
            spooled_bytes: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
            to_fallback: AtomicU64::new(0),
            dropped_spool_full: AtomicU64::new(0),
            spool_corrupt: AtomicU64::new(0),
            dropped_spool_no_space: AtomicU64::new(0),
            dropped_spool_lost: AtomicU64::new(0),
            dropped_spool_unavailable: AtomicU64::new(0),
            spool_refused: AtomicU64::new(0),
            spool_events: AtomicU64::new(0),
            spool_bytes: AtomicU64::new(0),
            last_error: Mutex::default(),
            breakers: Mutex::default(),
        }
    }
}

/// Counters of one source instance.
#[derive(Debug)]
pub struct SourceStats {
    /// The instance name.
    pub name: String,
    /// Collections run.
    pub runs: AtomicU64,
    /// Collections that failed.
    pub errors: AtomicU64,
    /// Ticks skipped because a collection overran.
    pub skipped_ticks: AtomicU64,
    /// Panics caught.
    pub panics: AtomicU64,
    /// Restarts after a panic or a hang.
    pub restarts: AtomicU64,
    /// Events dropped because the channel to the router was full.
    pub dropped: AtomicU64,
    /// Duration of the last collection, in microseconds.
    pub last_duration_us: AtomicU64,
    /// When the last collection began, in microseconds since the Unix epoch; 0 before the first.
    pub last_run_us: AtomicU64,
}

impl SourceStats {
    /// Zeroed counters for the instance `name`.
    pub fn new(name: &str) -> SourceStats {
        SourceStats {
            name: name.to_owned(),
            runs: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            skipped_ticks: AtomicU64::new(0),
            panics: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            last_duration_us: AtomicU64::new(0),
            last_run_us: AtomicU64::new(0),
        }
    }
}

/// Counters of the router.
#[derive(Debug, Default)]
pub struct RouterStats {
    /// Panics caught while routing a batch.
    pub panics: AtomicU64,
    /// Events lost with the batch being routed when a panic came.
    pub dropped_panic: AtomicU64,
}

/// All counters of a running agent.
#[derive(Debug)]
pub struct Telemetry {
    /// When the agent started.
    pub started: Instant,
    /// The last value of every metric the sources emitted, for the control socket.
    pub catalogue: Catalogue,
    /// The router's counters.
    pub router: Arc<RouterStats>,
    outputs: Mutex<Vec<Arc<OutputStats>>>,
    sources: Mutex<Vec<Arc<SourceStats>>>,
}

impl Default for Telemetry {
    fn default() -> Telemetry {
        Telemetry {
            started: Instant::now(),
            catalogue: Catalogue::default(),
            router: Arc::default(),
            outputs: Mutex::default(),
            sources: Mutex::default(),
        }
    }
}

impl Telemetry {
    /// The counters of the outputs now running.
    pub fn outputs(&self) -> Vec<Arc<OutputStats>> {
        self.outputs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The counters of the sources now running.
    pub fn sources(&self) -> Vec<Arc<SourceStats>> {
        self.sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the lists after a start or a reload; the catalogue forgets removed sources.
    pub fn set(&self, sources: Vec<Arc<SourceStats>>, outputs: Vec<Arc<OutputStats>>) {
        let names: Vec<&str> = sources.iter().map(|s| s.name.as_str()).collect();
        self.catalogue.prune(&names, true);
        *self.sources.lock().unwrap_or_else(|e| e.into_inner()) = sources;
        *self.outputs.lock().unwrap_or_else(|e| e.into_inner()) = outputs;
    }

    /// Drops catalogue entries of sources no longer running and of metrics no longer seen; does
    /// the work at most every few seconds, so it may be called often.
    pub fn prune_catalogue(&self) {
        let sources = self.sources();
        let names: Vec<&str> = sources.iter().map(|s| s.name.as_str()).collect();
        self.catalogue.prune(&names, false);
    }
}

/// Adds `n` to a counter.
pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Subtracts `n` from a gauge, stopping at zero.
pub fn sub(counter: &AtomicU64, n: u64) {
    let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
        Some(v.saturating_sub(n))
    });
}

/// Reads a counter.
pub fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// Sets a gauge.
pub fn set(gauge: &AtomicU64, n: u64) {
    gauge.store(n, Ordering::Relaxed);
}
