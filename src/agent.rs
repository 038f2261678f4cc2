//! The agent's lifecycle: start every thread, watch the sources, reload, and stop within a deadline.

use std::fmt;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Sender, bounded};

use crate::cache::Cache;
use crate::config::Config;
use crate::delivery::OutputHandle;
use crate::event::Event;
use crate::outputs::OutputError;
use crate::procfs::Procfs;
use crate::router::{self, Control, Route};
use crate::sources::SourceContext;
use crate::sources::runner::SourceHandle;
use crate::telemetry::{Telemetry, get};

/// Why the agent could not start or reload.
#[derive(Debug)]
#[non_exhaustive]
pub enum AgentError {
    /// An output could not be built (a file it writes could not be opened, say); fix its config.
    Output {
        /// The output's name.
        name: String,
        /// What went wrong.
        error: OutputError,
    },
    /// The operating system refused a thread; the box is out of memory or of threads.
    Thread(std::io::Error),
}

impl fmt::Display for AgentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AgentError::Output { name, error } => write!(f, "output {name}: {error}"),
            AgentError::Thread(e) => write!(f, "cannot start a thread: {e}"),
        }
    }
}

impl std::error::Error for AgentError {}

/// What a stop achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopReport {
    /// Events the outputs delivered over the agent's life.
    pub delivered: u64,
    /// Events still undelivered when the deadline passed.
    pub undelivered: u64,
}

/// A running agent: its sources, router and outputs.
#[derive(Debug)]
pub struct Agent {
    config: Config,
    telemetry: Arc<Telemetry>,
    cache: Arc<Cache>,
    events: Sender<Event>,
    control: Sender<Control>,
    router: Option<JoinHandle<()>>,
    sources: Vec<SourceHandle>,
    outputs: Vec<OutputHandle>,
}

impl Agent {
    /// Starts everything `config` describes.
    pub fn start(config: Config) -> Result<Agent, AgentError> {
        let telemetry = Arc::new(Telemetry::default());
        let mut outputs = Vec::new();
        for o in &config.outputs {
            let handle = OutputHandle::start(o.clone()).map_err(|error| AgentError::Output { name: o.name.clone(), error })?;
            outputs.push(handle);
        }
        let (events, events_rx) = bounded(config.agent.queue_size);
        let (control, control_rx) = bounded(4);
        let router = router::spawn(events_rx, control_rx, routes(&outputs)).map_err(AgentError::Thread)?;
        let cache = Arc::new(Cache::open(&config.agent.state_dir));
        let mut agent = Agent { config, telemetry, cache, events, control, router: Some(router), sources: Vec::new(), outputs };
        let ctx = agent.source_context();
        agent.sources = agent.config.sources.iter().map(|s| SourceHandle::start(s.clone(), ctx.clone(), agent.events.clone())).collect();
        agent.publish();
        log::info!(
            target: "agent",
            "running {} source(s) and {} output(s) from {}",
            agent.sources.len(),
            agent.outputs.len(),
            agent.config.file
        );
        Ok(agent)
    }

    /// The config now running.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The agent's counters.
    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
    }

    fn source_context(&self) -> SourceContext {
        SourceContext::new(Procfs::new(&self.config.agent.host_root), self.telemetry.clone(), self.cache.clone())
    }

    fn publish(&self) {
        self.telemetry.set(
            self.sources.iter().map(|s| s.stats.clone()).collect(),
            self.outputs.iter().map(|o| o.stats.clone()).collect(),
        );
    }

    /// Restarts any source whose collection has hung past its timeout, and writes the cache when
    /// `agent.cache_interval` has passed. Call about once a second.
    pub fn watch(&mut self) {
        for s in &mut self.sources {
            s.check_hang();
        }
        self.cache.flush_if_due(self.config.agent.cache_interval);
    }

    /// Replaces the running config with `new`. Unchanged sources and outputs keep running; a
    /// changed output's new writer takes over its queue, so nothing queued is lost. If an output
    /// of the new config cannot be built, nothing changes and the error is returned.
    pub fn reload(&mut self, new: Config) -> Result<(), AgentError> {
        let deadline = Instant::now() + new.agent.shutdown_timeout;
        // Outputs first: every fallible step happens before anything is torn down.
        let mut fresh = Vec::new();
        for o in &new.outputs {
            let running = self.outputs.iter().any(|h| h.config.name == o.name);
            if !running {
                let handle = OutputHandle::start(o.clone()).map_err(|error| AgentError::Output { name: o.name.clone(), error })?;
                fresh.push(handle);
            }
        }
        let mut kept = Vec::new();
        let mut removed = Vec::new();
        for handle in self.outputs.drain(..) {
            match new.outputs.iter().find(|o| o.name == handle.config.name) {
                None => removed.push(handle),
                Some(o) if o.fingerprint() == handle.config.fingerprint() => kept.push(handle),
                Some(o) => match handle.replace(o.clone()) {
                    Ok(h) => kept.push(h),
                    Err((h, error)) => {
                        log::error!(target: "agent", "output {}: cannot rebuild ({error}); keeping its old config", o.name);
                        kept.push(h);
                    }
                },
            }
        }
        kept.extend(fresh);
        // New config order, so that `self` reports outputs as the file lists them.
        kept.sort_by_key(|h| new.outputs.iter().position(|o| o.name == h.config.name));
        self.outputs = kept;
        let _ = self.control.send(Control::Routes(routes(&self.outputs)));
        for mut handle in removed {
            handle.close();
            handle.join_until(deadline);
        }

        let same_root = new.agent.host_root == self.config.agent.host_root;
        let mut old: Vec<SourceHandle> = self.sources.drain(..).collect();
        let ctx = SourceContext::new(Procfs::new(&new.agent.host_root), self.telemetry.clone(), self.cache.clone());
        let mut sources = Vec::new();
        for s in &new.sources {
            let keep = old.iter().position(|h| same_root && h.config.name == s.name && h.config.fingerprint() == s.fingerprint());
            match keep {
                Some(i) => sources.push(old.swap_remove(i)),
                None => sources.push(SourceHandle::start(s.clone(), ctx.clone(), self.events.clone())),
            }
        }
        for h in &mut old {
            h.request_stop();
        }
        for h in &mut old {
            if !h.join_until(deadline) {
                log::warn!(target: "agent", "source {} did not stop in time; leaving its thread behind", h.config.name);
            }
        }
        self.sources = sources;
        self.cache.keep_only(self.sources.iter().map(|s| s.config.name.as_str()));
        if new.agent.queue_size != self.config.agent.queue_size {
            log::warn!(target: "agent", "agent.queue_size changes take effect at the next start, not on reload");
        }
        log::info!(target: "agent", "reloaded {}: {} source(s), {} output(s)", new.file, self.sources.len(), self.outputs.len());
        self.config = new;
        self.publish();
        Ok(())
    }

    /// Stops the sources, hands every queued event to the outputs, and waits for them until the
    /// config's `shutdown_timeout`.
    pub fn stop(mut self) -> StopReport {
        let deadline = Instant::now() + self.config.agent.shutdown_timeout;
        for s in &mut self.sources {
            s.request_stop();
        }
        for s in &mut self.sources {
            if !s.join_until(deadline) {
                log::warn!(target: "agent", "source {} is still collecting; not waiting for it", s.config.name);
            }
        }
        // A failure is logged by the cache itself.
        let _ = self.cache.flush();
        let _ = self.control.send(Control::Stop);
        if let Some(router) = self.router.take() {
            let _ = router.join();
        }
        for o in &mut self.outputs {
            o.close();
        }
        for o in &mut self.outputs {
            o.join_until(deadline);
        }
        let delivered = self.outputs.iter().map(|o| get(&o.stats.events_out)).sum();
        let undelivered = self.outputs.iter().map(|o| get(&o.stats.dropped_shutdown)).sum();
        log::info!(target: "agent", "stopped: {delivered} event(s) delivered, {undelivered} undelivered at the deadline");
        StopReport { delivered, undelivered }
    }
}

fn routes(outputs: &[OutputHandle]) -> Vec<Route> {
    outputs
        .iter()
        .filter_map(|o| Some(Route { selector: o.config.selector.clone(), queue: o.sender()?, stats: o.stats.clone() }))
        .collect()
}
