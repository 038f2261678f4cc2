//! The answer to `status`: version, uptime, config, and what each source and output did.
//!

use std::time::SystemTime;

use serde::Serialize;

use crate::delivery::OutputConfig;
use crate::sources::SourceConfig;
use crate::telemetry::{Telemetry, get};

/// The agent as a whole.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The pipit version.
    pub version: &'static str,
    /// The agent's process id.
    pub pid: u32,
    /// Seconds since the agent started.
    pub uptime: f64,
    /// The running config.
    pub config: ConfigStatus,
    /// Metrics in the catalogue.
    pub metrics: usize,
    /// Every source instance, in config order.
    pub sources: Vec<SourceStatus>,
    /// Every output, in config order.
    pub outputs: Vec<OutputStatus>,
}

/// The running config.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigStatus {
    /// The file it came from.
    pub file: String,
    /// When it was loaded (at start or by the last successful reload), in seconds since the
    /// Unix epoch.
    pub loaded: f64,
}

/// One source instance.
#[derive(Debug, Clone, Serialize)]
pub struct SourceStatus {
    /// The instance name.
    pub name: String,
    /// The source type.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Seconds between collections.
    pub interval: f64,
    /// Collections run.
    pub runs: u64,
    /// When the last collection began, in seconds since the Unix epoch; null before the first.
    pub last_run: Option<f64>,
    /// Seconds the last collection took.
    pub last_duration: f64,
    /// Ticks skipped because a collection overran.
    pub skipped_ticks: u64,
    /// Collections that failed.
    pub errors: u64,
    /// Panics caught.
    pub panics: u64,
    /// Restarts after a panic or a hang.
    pub restarts: u64,
    /// Events dropped on the way to the router.
    pub dropped: u64,
}

/// One output.
#[derive(Debug, Clone, Serialize)]
pub struct OutputStatus {
    /// The output name.
    pub name: String,
    /// The output type.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Events queued for it.
    pub events_in: u64,
    /// Events it delivered.
    pub events_out: u64,
    /// Events whose delivery failed.
    pub failed: u64,
    /// Events dropped because its queue was full.
    pub dropped_queue_full: u64,
    /// Events dropped at a stop deadline.
    pub dropped_shutdown: u64,
    /// Events waiting in its queue.
    pub queue_depth: u64,
    /// Events written to the backend and held until it confirms them.
    pub unconfirmed: u64,
    /// Bytes held for those events.
    pub unconfirmed_bytes: u64,
    /// Events sent again after a failed attempt.
    pub retried: u64,
    /// Events written to its disk spool.
    pub spooled: u64,
    /// Events delivered from its disk spool.
    pub replayed: u64,
    /// Events dropped because its spool was full.
    pub dropped_spool_full: u64,
    /// Events not spooled because the spool's file system was full.
    pub dropped_spool_no_space: u64,
    /// Events lost from a spool directory removed while in use.
    pub dropped_spool_lost: u64,
    /// Events not spooled because the spool could not be opened or written.
    pub dropped_spool_unavailable: u64,
    /// Spool files refused by their checks, never replayed.
    pub spool_refused: u64,
    /// Events in its spool waiting for replay.
    pub spool_depth: u64,
    /// Bytes in its spool directory.
    pub spool_bytes: u64,
    /// Each target and its breaker state (`closed`, `open`, `half_open`).
    pub targets: Vec<TargetStatus>,
    /// The last delivery error; empty when none.
    pub last_error: String,
}

/// One target of an output.
#[derive(Debug, Clone, Serialize)]
pub struct TargetStatus {
    /// `host:port`.
    pub name: String,
    /// Its circuit breaker: `closed`, `open` or `half_open`.
    pub breaker: &'static str,
}

fn seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Status {
    /// The status of an agent running the sources and outputs of the config `file` (loaded at
    /// `loaded`) and counting in `telemetry`.
    pub fn of(
        file: &str,
        sources: &[SourceConfig],
        outputs: &[OutputConfig],
        telemetry: &Telemetry,
        loaded: SystemTime,
    ) -> Status {
        let source_stats = telemetry.sources();
        let output_stats = telemetry.outputs();
        let sources = sources
            .iter()
            .filter_map(|c| {
                let s = source_stats.iter().find(|s| s.name == c.name)?;
                let last_run = get(&s.last_run_us);
                Some(SourceStatus {
                    name: c.name.clone(),
                    kind: c.kind,
                    interval: c.interval.as_secs_f64(),
                    runs: get(&s.runs),
                    last_run: (last_run > 0).then(|| last_run as f64 / 1e6),
                    last_duration: get(&s.last_duration_us) as f64 / 1e6,
                    skipped_ticks: get(&s.skipped_ticks),
                    errors: get(&s.errors),
                    panics: get(&s.panics),
                    restarts: get(&s.restarts),
                    dropped: get(&s.dropped),
                })
            })
            .collect();
        let outputs = outputs
            .iter()
            .filter_map(|c| {
                let o = output_stats.iter().find(|o| o.name == c.name)?;
                Some(OutputStatus {
                    name: c.name.clone(),
                    kind: c.kind,
                    events_in: get(&o.events_in),
                    events_out: get(&o.events_out),
                    failed: get(&o.failed),
                    dropped_queue_full: get(&o.dropped_queue_full),
                    dropped_shutdown: get(&o.dropped_shutdown),
                    queue_depth: get(&o.queued),
                    unconfirmed: get(&o.unconfirmed),
                    unconfirmed_bytes: get(&o.unconfirmed_bytes),
                    retried: get(&o.retried),
                    spooled: get(&o.spooled_events),
                    replayed: get(&o.replayed),
                    dropped_spool_full: get(&o.dropped_spool_full),
                    dropped_spool_no_space: get(&o.dropped_spool_no_space),
                    dropped_spool_lost: get(&o.dropped_spool_lost),
                    dropped_spool_unavailable: get(&o.dropped_spool_unavailable),
                    spool_refused: get(&o.spool_refused),
                    spool_depth: get(&o.spool_events),
                    spool_bytes: get(&o.spool_bytes),
                    targets: o
                        .breakers
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .iter()
                        .map(|(name, breaker)| TargetStatus {
                            name: name.clone(),
                            breaker,
                        })
                        .collect(),
                    last_error: o
                        .last_error
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clone(),
                })
            })
            .collect();
        Status {
            version: env!("CARGO_PKG_VERSION"),
            pid: std::process::id(),
            uptime: telemetry.started.elapsed().as_secs_f64(),
            config: ConfigStatus {
                file: file.to_owned(),
                loaded: seconds(loaded),
            },
            metrics: telemetry.catalogue.len(),
            sources,
            outputs,
        }
    }
}
