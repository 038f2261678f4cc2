//! `pipit once`: collect every source once and print the events; no output is contacted.
//!
//! Sources whose values are rates need two samples: they are collected twice, [`SAMPLE_GAP`] apart,
//! and only the second round is printed. Their samples are kept in memory: `once` neither reads
//! nor writes the persistent cache.

use std::io::Write;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::cache::Cache;
use crate::config_file::Config;
use crate::event::Event;
use crate::outputs::graphite::path::Naming;
use crate::outputs::stdout::{Format, Stdout, StdoutSpec};
use crate::procfs::Procfs;
use crate::sources::runner::{self, Outcome};
use crate::sources::{Source, SourceContext, SourceError};
use crate::supervisor::SupervisorThread;
use crate::telemetry::Telemetry;

/// Time between the two samples of a rate.
pub const SAMPLE_GAP: Duration = Duration::from_secs(1);

/// A source that failed during `once`.
#[derive(Debug)]
pub struct Failure {
    /// The instance name.
    pub source: String,
    /// What went wrong.
    pub outcome: Outcome,
}

/// Collects every source of `config` once (twice for rates) and returns the events, in config
/// order, with the failures.
pub fn collect(config: &Config) -> (Vec<Event>, Vec<Failure>) {
    let mut supervisor = match SupervisorThread::start(config.supervisor.clone()) {
        Ok(s) => s,
        Err(e) => {
            // Every source fails alike; io::Error is not Clone, so each gets its own copy.
            let failures = config.sources.iter().map(|s| Failure {
                source: s.name.clone(),
                outcome: Outcome::Failed(SourceError::Thread {
                    what: "the supervisor thread",
                    source: std::io::Error::new(e.kind(), e.to_string()),
                }),
            });
            return (Vec::new(), failures.collect());
        }
    };
    // Counters are kept in memory only: `once` never writes the cache a running agent uses.
    let cache = Arc::new(Cache::in_memory());
    let ctx = SourceContext::new(
        Procfs::new(&config.agent.host_root),
        Arc::new(Telemetry::default()),
        supervisor.handle(),
        cache,
    );
    let mut built: Vec<Box<dyn Source>> = config
        .sources
        .iter()
        .map(|s| {
            // The two samples are SAMPLE_GAP apart, whatever the interval: both must count.
            let mut ctx = ctx.for_source(s);
            ctx.interval = ctx.interval.max(SAMPLE_GAP);
            s.spec.build(&ctx)
        })
        .collect();
    let mut rounds: Vec<(Vec<Event>, Result<(), Outcome>)> = config
        .sources
        .iter()
        .zip(&mut built)
        .map(|(cfg, src)| runner::collect_once(src.as_mut(), cfg))
        .collect();
    if config
        .sources
        .iter()
        .any(|s| s.source_type().needs_two_samples)
    {
        thread::sleep(SAMPLE_GAP);
        for ((cfg, src), round) in config.sources.iter().zip(&mut built).zip(&mut rounds) {
            if cfg.source_type().needs_two_samples && round.1.is_ok() {
                *round = runner::collect_once(src.as_mut(), cfg);
            }
        }
    }
    // Daemons stop with their sources; what they left running is killed here.
    drop(built);
    supervisor.stop(Instant::now() + config.agent.shutdown_timeout);
    let mut events = Vec::new();
    let mut failures = Vec::new();
    for (cfg, (evs, outcome)) in config.sources.iter().zip(rounds) {
        events.extend(evs);
        if let Err(outcome) = outcome {
            failures.push(Failure {
                source: cfg.name.clone(),
                outcome,
            });
        }
    }
    (events, failures)
}

/// Prints `events` to `out` in `format`, with Graphite paths built the default way.
pub fn print(events: &[Event], format: Format, out: &mut impl Write) -> std::io::Result<()> {
    let mut stdout = Stdout::new(StdoutSpec {
        format,
        naming: Naming::default(),
    });
    let mut buf = Vec::new();
    stdout.encode(events, &mut buf);
    out.write_all(&buf)
}
