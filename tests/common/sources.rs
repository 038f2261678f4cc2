//! Building one source from config text and collecting from it, as the agent would.

use std::sync::Arc;

use pipit::cache::Cache;
use pipit::config_file::{self, Config};
use pipit::event::Event;
use pipit::procfs::Procfs;
use pipit::sources::runner::{Outcome, collect_once};
use pipit::sources::{Source, SourceContext};
use pipit::supervisor::SupervisorThread;
use pipit::telemetry::Telemetry;

/// One built source, its config, and the supervisor it may run commands through.
pub struct Built {
    pub config: Config,
    pub source: Box<dyn Source>,
    _supervisor: SupervisorThread,
}

impl Built {
    /// Parses a config holding the single source `source_json` and builds it.
    pub fn new(source_json: &str) -> Built {
        let text = format!(r#"{{"sources": [{source_json}], "outputs": [{{"type": "stdout"}}]}}"#);
        let config = config_file::parse("test.json", &text).unwrap_or_else(|e| panic!("{e}"));
        let supervisor =
            SupervisorThread::start(config.supervisor.clone()).expect("a supervisor thread");
        let ctx = SourceContext::new(
            Procfs::new("/"),
            Arc::new(Telemetry::default()),
            supervisor.handle(),
            Arc::new(Cache::in_memory()),
        );
        let source = config.sources[0]
            .spec
            .build(&ctx.for_source(&config.sources[0]));
        Built {
            config,
            source,
            _supervisor: supervisor,
        }
    }

    /// One collection: its events and its outcome.
    pub fn collect(&mut self) -> (Vec<Event>, Result<(), Outcome>) {
        collect_once(self.source.as_mut(), &self.config.sources[0])
    }

    /// One collection that must succeed.
    pub fn events(&mut self) -> Vec<Event> {
        let (events, outcome) = self.collect();
        if let Err(e) = outcome {
            panic!("the collection {e}: {events:?}");
        }
        events
    }
}

/// The events of `service`.
pub fn of<'a>(events: &'a [Event], service: &str) -> Vec<&'a Event> {
    events.iter().filter(|e| e.service == service).collect()
}

/// The metric of the one event of `service`, as a float.
pub fn value(events: &[Event], service: &str) -> f64 {
    match of(events, service).as_slice() {
        [e] => e
            .metric
            .unwrap_or_else(|| panic!("{service} has no metric"))
            .as_f64(),
        other => panic!("expected one {service}, got {other:?} in {events:?}"),
    }
}

/// The names of the threads of process `pid`, as the kernel shows them (at most 15 bytes).
pub fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("/proc/PID/task lists the process's threads")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|comm| comm.trim_end().to_owned())
        .collect()
}

/// How many threads of process `pid` are named `name` (as the kernel shows it: at most 15
/// bytes).
pub fn threads_named(pid: u32, name: &str) -> usize {
    thread_names(pid).iter().filter(|n| *n == name).count()
}
