//! `self`: the agent's own health: memory, threads, and what each output and source did.

use std::sync::Arc;

use super::{Build, Emitter, MetricInfo, Source, SourceContext, SourceError, SourceType};
use crate::procfs::{self, Procfs};
use crate::telemetry::{Telemetry, get};

/// The registry entry.
pub const TYPE: SourceType = SourceType {
    name: "self",
    description: "the agent's own memory, threads, and per-output and per-source counters",
    needs_two_samples: false,
    metrics: &[
        MetricInfo {
            name: "self.rss",
            unit: "bytes",
            description: "resident memory of the agent",
        },
        MetricInfo {
            name: "self.threads",
            unit: "count",
            description: "threads of the agent",
        },
        MetricInfo {
            name: "self.uptime",
            unit: "seconds",
            description: "time since the agent started",
        },
        MetricInfo {
            name: "self.router.panics",
            unit: "count",
            description: "panics caught while routing a batch",
        },
        MetricInfo {
            name: "self.router.dropped_panic",
            unit: "count",
            description: "events lost with the batch being routed when a panic came",
        },
        MetricInfo {
            name: "self.output.<name>.events_in",
            unit: "count",
            description: "events queued for the output since start",
        },
        MetricInfo {
            name: "self.output.<name>.events_out",
            unit: "count",
            description: "events the output delivered",
        },
        MetricInfo {
            name: "self.output.<name>.failed",
            unit: "count",
            description: "events whose delivery failed",
        },
        MetricInfo {
            name: "self.output.<name>.dropped",
            unit: "count",
            description: "events dropped because the queue was full",
        },
        MetricInfo {
            name: "self.output.<name>.panics",
            unit: "count",
            description: "panics caught in the output's write or encoding, each a failed attempt",
        },
        MetricInfo {
            name: "self.output.<name>.rejected",
            unit: "count",
            description: "events dropped because the backend refused their batch as bad",
        },
        MetricInfo {
            name: "self.output.<name>.dropped_unencodable",
            unit: "count",
            description: "events the output cannot encode (no metric, a bad name)",
        },
        MetricInfo {
            name: "self.output.<name>.queue_depth",
            unit: "count",
            description: "events waiting for the output",
        },
        MetricInfo {
            name: "self.output.<name>.queue_bytes",
            unit: "bytes",
            description: "estimated memory of the events waiting for the output",
        },
        MetricInfo {
            name: "self.output.<name>.retried",
            unit: "count",
            description: "events sent again after a failed attempt, once per retry",
        },
        MetricInfo {
            name: "self.output.<name>.spooled",
            unit: "count",
            description: "events written to the disk spool",
        },
        MetricInfo {
            name: "self.output.<name>.spooled_bytes",
            unit: "bytes",
            description: "bytes written to the disk spool",
        },
        MetricInfo {
            name: "self.output.<name>.replayed",
            unit: "count",
            description: "events delivered from the disk spool",
        },
        MetricInfo {
            name: "self.output.<name>.to_fallback",
            unit: "count",
            description: "events handed to the fallback output",
        },
        MetricInfo {
            name: "self.output.<name>.dropped_spool_full",
            unit: "count",
            description: "events dropped because the spool was full",
        },
        MetricInfo {
            name: "self.output.<name>.dropped_shutdown",
            unit: "count",
            description: "events still undelivered at the stop deadline",
        },
        MetricInfo {
            name: "self.output.<name>.dropped_panic",
            unit: "count",
            description: "events lost with a writer that panicked outside a write",
        },
        MetricInfo {
            name: "self.output.<name>.unconfirmed",
            unit: "count",
            description: "events written to the backend and held until it confirms them",
        },
        MetricInfo {
            name: "self.output.<name>.unconfirmed_bytes",
            unit: "bytes",
            description: "bytes held for the events not yet confirmed",
        },
        MetricInfo {
            name: "self.output.<name>.spool_depth",
            unit: "count",
            description: "events in the spool waiting for replay",
        },
        MetricInfo {
            name: "self.output.<name>.spool_size",
            unit: "bytes",
            description: "bytes in the spool directory",
        },
        MetricInfo {
            name: "self.output.<name>.spool_corrupt",
            unit: "count",
            description: "spool records skipped because they were corrupt",
        },
        MetricInfo {
            name: "self.output.<name>.dropped_spool_no_space",
            unit: "count",
            description: "events not spooled because the spool's file system was full",
        },
        MetricInfo {
            name: "self.output.<name>.dropped_spool_lost",
            unit: "count",
            description: "events lost from a spool directory removed while in use",
        },
        MetricInfo {
            name: "self.output.<name>.dropped_spool_unavailable",
            unit: "count",
            description: "events not spooled because the spool could not be opened or written",
        },
        MetricInfo {
            name: "self.output.<name>.spool_refused",
            unit: "count",
            description: "spool files refused (another owner, a loose mode, a symlink), never replayed",
        },
        MetricInfo {
            name: "self.output.<name>.breaker.<target>",
            unit: "state",
            description: "the target's circuit breaker: 0 closed, 1 half-open, 2 open (dots and colons of the target become _)",
        },
        MetricInfo {
            name: "self.source.<name>.skipped_ticks",
            unit: "count",
            description: "ticks skipped because a collection overran",
        },
        MetricInfo {
            name: "self.source.<name>.errors",
            unit: "count",
            description: "collections that failed",
        },
        MetricInfo {
            name: "self.source.<name>.restarts",
            unit: "count",
            description: "restarts after a panic or a hang",
        },
        MetricInfo {
            name: "self.source.<name>.dropped",
            unit: "count",
            description: "events dropped on the way to the router",
        },
        MetricInfo {
            name: "self.source.<name>.duration",
            unit: "seconds",
            description: "time the last collection took",
        },
    ],
    read: super::read::<SelfStats>,
};

impl Build for SelfStats {
    type Settings = ();
    const NEVER_WAITS: bool = true;

    fn build(_: &(), ctx: &SourceContext) -> SelfStats {
        // The agent's own process is always read from the live /proc, whatever the host root.
        SelfStats {
            own: Procfs::new("/"),
            telemetry: ctx.telemetry.clone(),
            buf: String::new(),
        }
    }
}

struct SelfStats {
    own: Procfs,
    telemetry: Arc<Telemetry>,
    buf: String,
}

impl Source for SelfStats {
    fn collect(&mut self, emit: &mut Emitter<'_>) -> Result<(), SourceError> {
        emit.metric(
            "self.uptime",
            self.telemetry.started.elapsed().as_secs_f64(),
        );
        let router = &self.telemetry.router;
        emit.metric("self.router.panics", get(&router.panics));
        emit.metric("self.router.dropped_panic", get(&router.dropped_panic));
        for o in self.telemetry.outputs() {
            let n = &o.name;
            emit.metric(&format!("self.output.{n}.events_in"), get(&o.events_in));
            emit.metric(&format!("self.output.{n}.events_out"), get(&o.events_out));
            emit.metric(&format!("self.output.{n}.failed"), get(&o.failed));
            emit.metric(
                &format!("self.output.{n}.dropped"),
                get(&o.dropped_queue_full),
            );
            emit.metric(
                &format!("self.output.{n}.rejected"),
                get(&o.dropped_rejected),
            );
            emit.metric(
                &format!("self.output.{n}.dropped_unencodable"),
                get(&o.dropped_unencodable),
            );
            emit.metric(&format!("self.output.{n}.queue_depth"), get(&o.queued));
            let delivery = [
                ("queue_bytes", &o.queued_bytes),
                ("unconfirmed", &o.unconfirmed),
                ("unconfirmed_bytes", &o.unconfirmed_bytes),
                ("retried", &o.retried),
                ("panics", &o.panics),
                ("spooled", &o.spooled_events),
                ("spooled_bytes", &o.spooled_bytes),
                ("replayed", &o.replayed),
                ("to_fallback", &o.to_fallback),
                ("dropped_spool_full", &o.dropped_spool_full),
                ("dropped_shutdown", &o.dropped_shutdown),
                ("dropped_panic", &o.dropped_panic),
                ("spool_depth", &o.spool_events),
                ("spool_size", &o.spool_bytes),
                ("spool_corrupt", &o.spool_corrupt),
                ("dropped_spool_no_space", &o.dropped_spool_no_space),
                ("dropped_spool_lost", &o.dropped_spool_lost),
                ("dropped_spool_unavailable", &o.dropped_spool_unavailable),
                ("spool_refused", &o.spool_refused),
            ];
            for (suffix, counter) in delivery {
                emit.metric(&format!("self.output.{n}.{suffix}"), get(counter));
            }
            let breakers = o.breakers.lock().unwrap_or_else(|e| e.into_inner()).clone();
            for (target, state) in breakers {
                let target = target.replace(['.', ':'], "_");
                let value: i64 = match state {
                    "closed" => 0,
                    "half_open" => 1,
                    _ => 2,
                };
                emit.metric(&format!("self.output.{n}.breaker.{target}"), value);
            }
        }
        for s in self.telemetry.sources() {
            let n = &s.name;
            emit.metric(
                &format!("self.source.{n}.skipped_ticks"),
                get(&s.skipped_ticks),
            );
            emit.metric(&format!("self.source.{n}.errors"), get(&s.errors));
            emit.metric(&format!("self.source.{n}.restarts"), get(&s.restarts));
            emit.metric(&format!("self.source.{n}.dropped"), get(&s.dropped));
            emit.metric(
                &format!("self.source.{n}.duration"),
                get(&s.last_duration_us) as f64 / 1e6,
            );
        }
        self.own.read_into("proc/self/status", &mut self.buf)?;
        if let Some(kib) = procfs::field_value(&self.buf, "VmRSS") {
            emit.metric("self.rss", kib * 1024);
        }
        if let Some(threads) = procfs::field_value(&self.buf, "Threads") {
            emit.metric("self.threads", threads);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::event::Metric;
    use crate::sources::Template;
    use crate::telemetry::{OutputStats, add};

    #[test]
    fn output_counters_are_reported_by_output_name() {
        let telemetry = Arc::new(Telemetry::default());
        let stats = Arc::new(OutputStats::new("influx"));
        add(&stats.failed, 2);
        add(&stats.dropped_rejected, 3);
        telemetry.set(Vec::new(), vec![stats]);
        let mut source = SelfStats {
            own: Procfs::new("/"),
            telemetry,
            buf: String::new(),
        };
        let template = Template {
            prefix: String::new(),
            host: "h".into(),
            tags: Vec::new(),
            ttl: Duration::from_secs(1),
            attributes: BTreeMap::new(),
        };
        let mut emit = Emitter::new(&template, SystemTime::now());
        source.collect(&mut emit).unwrap();
        let events = emit.into_events();
        let metric = |name: &str| {
            events
                .iter()
                .find(|e| e.service == name)
                .and_then(|e| e.metric)
        };
        assert_eq!(metric("self.output.influx.failed"), Some(Metric::Int(2)));
        assert_eq!(metric("self.output.influx.rejected"), Some(Metric::Int(3)));
    }
}
