//! The agent's lifecycle: start every thread, watch the sources, reload, and stop within a deadline.

use std::fmt;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Sender, bounded};

use crate::cache::Cache;
use crate::config_file::Config;
use crate::delivery::queue::Route;
use crate::delivery::{self, OutputHandle};
use crate::event::Event;
use crate::outputs::OutputError;
use crate::procfs::Procfs;
use crate::router::{self, Control};
use crate::sources::SourceContext;
use crate::sources::runner::SourceHandle;
use crate::sources::shared::SharedThread;
use crate::sources::{checks, host};
use crate::supervisor::SupervisorThread;
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
            AgentError::Thread(e) => write!(
                f,
                "cannot start a thread: {e}; the box is out of memory or of threads"
            ),
        }
    }
}

impl std::error::Error for AgentError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AgentError::Output { error, .. } => Some(error),
            AgentError::Thread(e) => Some(e),
        }
    }
}

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
    events: Sender<Vec<Event>>,
    control: Sender<Control>,
    router: Option<JoinHandle<()>>,
    sources: Vec<SourceHandle>,
    outputs: Vec<OutputHandle>,
    supervisor: SupervisorThread,
    /// The thread every `exec` check shares, kept across reloads.
    checks: SharedThread,
    /// The thread every source that never waits shares, kept across reloads.
    host_thread: SharedThread,
}

impl Agent {
    /// Starts everything `config` describes.
    pub fn start(config: Config) -> Result<Agent, AgentError> {
        let telemetry = Arc::new(Telemetry::default());
        let mut outputs = Vec::new();
        for o in &config.outputs {
            let handle = OutputHandle::start(o.clone()).map_err(|error| AgentError::Output {
                name: o.name.clone(),
                error,
            })?;
            outputs.push(handle);
        }
        let (events, events_rx) = bounded(config.agent.queue_size);
        let (control, control_rx) = bounded(4);
        let router = router::spawn(
            events_rx,
            control_rx,
            routes(&outputs),
            telemetry.router.clone(),
        )
        .map_err(AgentError::Thread)?;
        let supervisor =
            SupervisorThread::start(config.supervisor.clone()).map_err(AgentError::Thread)?;
        let cache = Arc::new(Cache::open(&config.agent.state_dir));
        let mut agent = Agent {
            config,
            telemetry,
            cache,
            events,
            control,
            router: Some(router),
            sources: Vec::new(),
            outputs,
            supervisor,
            checks: checks::thread(),
            host_thread: host::thread(),
        };
        let ctx = agent.source_context();
        agent.sources = agent
            .config
            .sources
            .iter()
            .map(|s| SourceHandle::start(s.clone(), ctx.clone(), agent.events.clone()))
            .collect();
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
        SourceContext {
            checks: self.checks.clone(),
            host_thread: self.host_thread.clone(),
            ..SourceContext::new(
                Procfs::new(&self.config.agent.host_root),
                self.telemetry.clone(),
                self.supervisor.handle(),
                self.cache.clone(),
            )
        }
    }

    fn publish(&self) {
        self.telemetry.set(
            self.sources.iter().map(|s| s.stats.clone()).collect(),
            self.outputs.iter().map(|o| o.stats.clone()).collect(),
        );
    }

    /// Restarts any source whose collection has hung past its timeout, writes the cache when
    /// `agent.cache_interval` has passed, and keeps the metric catalogue pruned. Call about once a
    /// second.
    pub fn watch(&mut self) {
        for s in &mut self.sources {
            s.check_hang();
        }
        self.cache.flush_if_due(self.config.agent.cache_interval);
        self.telemetry.prune_catalogue();
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
                let handle =
                    OutputHandle::start(o.clone()).map_err(|error| AgentError::Output {
                        name: o.name.clone(),
                        error,
                    })?;
                fresh.push(handle);
            }
        }
        let mut kept = Vec::new();
        let mut removed = Vec::new();
        for handle in self.outputs.drain(..) {
            match new.outputs.iter().find(|o| o.name == handle.config.name) {
                None => removed.push(handle),
                Some(o) if o.fingerprint() == handle.config.fingerprint() => kept.push(handle),
                Some(o) => {
                    let mut handle = handle;
                    if let Err(error) = handle.replace(o.clone()) {
                        log::error!(target: "agent", "output {}: cannot rebuild ({error}); keeping its old config", o.name);
                    }
                    kept.push(handle);
                }
            }
        }
        kept.extend(fresh);
        // New config order, so that `self` reports outputs as the file lists them.
        kept.sort_by_key(|h| new.outputs.iter().position(|o| o.name == h.config.name));
        self.outputs = kept;
        let _ = self.control.send(Control::Routes(routes(&self.outputs)));
        for mut handle in removed {
            handle.close(deadline);
            handle.join_until(deadline);
        }

        let same_root = new.agent.host_root == self.config.agent.host_root;
        let mut old: Vec<SourceHandle> = self.sources.drain(..).collect();
        let ctx = SourceContext {
            procfs: Procfs::new(&new.agent.host_root),
            ..self.source_context()
        };
        let mut sources = Vec::new();
        for s in &new.sources {
            let keep = old.iter().position(|h| {
                same_root && h.config.name == s.name && h.config.fingerprint() == s.fingerprint()
            });
            match keep {
                Some(i) => sources.push(old.swap_remove(i)),
                None => sources.push(SourceHandle::start(
                    s.clone(),
                    ctx.clone(),
                    self.events.clone(),
                )),
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
        self.cache
            .keep_only(self.sources.iter().map(|s| s.config.name.as_str()));
        if new.agent.queue_size != self.config.agent.queue_size {
            log::warn!(target: "agent", "agent.queue_size changes take effect at the next start, not on reload");
        }
        if new.supervisor != self.config.supervisor {
            log::warn!(target: "agent", "supervisor changes take effect at the next start, not on reload");
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
        // Children are ended now, so that sources waiting on one return in time.
        self.supervisor.begin_stop(deadline);
        for s in &mut self.sources {
            if !s.join_until(deadline) {
                log::warn!(target: "agent", "source {} is still collecting; not waiting for it", s.config.name);
            }
        }
        self.supervisor.stop(deadline);
        // A failure is logged by the cache itself.
        let _ = self.cache.flush();
        let _ = self.control.send(Control::Stop);
        if let Some(router) = self.router.take() {
            let _ = router.join();
        }
        for o in &mut self.outputs {
            o.close(deadline);
        }
        for o in &mut self.outputs {
            o.join_until(deadline);
        }
        let delivered = self.outputs.iter().map(|o| get(&o.stats.events_out)).sum();
        let undelivered = self
            .outputs
            .iter()
            .map(|o| get(&o.stats.dropped_shutdown))
            .sum();
        log::info!(target: "agent", "stopped: {delivered} event(s) delivered, {undelivered} undelivered at the deadline");
        StopReport {
            delivered,
            undelivered,
        }
    }
}

fn routes(outputs: &[OutputHandle]) -> Vec<Route> {
    delivery::wire_fallbacks(outputs);
    outputs.iter().filter_map(OutputHandle::route).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::config::agent::AgentConfig;
    use crate::delivery::OutputConfig;
    use crate::outputs::{Output, OutputSpec};
    use crate::pattern::Selector;
    use crate::sources::{
        Emitter, Placement, Source, SourceConfig, SourceError, SourceSpec, Template,
    };
    use crate::supervisor::SpawnError;

    /// An output that keeps what it is given.
    #[derive(Debug, Default)]
    struct Keep(Arc<Mutex<Vec<Event>>>);

    impl OutputSpec for Keep {
        fn build_target(&self, _: usize, _: &str) -> Result<Box<dyn Output>, OutputError> {
            Ok(Box::new(KeepWriter(self.0.clone())))
        }
        fn describe(&self) -> String {
            "kept in memory".into()
        }
    }

    struct KeepWriter(Arc<Mutex<Vec<Event>>>);

    impl Output for KeepWriter {
        fn write(&mut self, batch: &[Event]) -> Result<(), OutputError> {
            self.0.lock().unwrap().extend_from_slice(batch);
            Ok(())
        }
    }

    /// A source that panics on its first `panics` collections (counted across rebuilds), or hangs
    /// for `hang` in collection `hang_at` (0: the first), and otherwise emits one event named after
    /// itself, its collection's number (counted across rebuilds) as the value.
    #[derive(Debug, Default)]
    struct Scripted {
        panics: u64,
        hang: Duration,
        hang_at: u64,
        runs: Arc<AtomicU64>,
        /// Hangs that are over.
        hangs_over: Arc<AtomicU64>,
    }

    impl SourceSpec for Scripted {
        fn build(&self, _: &crate::sources::SourceContext) -> Box<dyn Source> {
            Box::new(ScriptedSource {
                panics: self.panics,
                hang: self.hang,
                hang_at: self.hang_at,
                runs: self.runs.clone(),
                hangs_over: self.hangs_over.clone(),
            })
        }
    }

    /// [`Scripted`] on a shared thread: as a check on the checks thread (its answer is there as
    /// soon as it is asked for, and its collection is what follows), or on the host thread.
    #[derive(Debug)]
    struct Placed(Placement, Scripted);

    impl SourceSpec for Placed {
        fn build(&self, ctx: &crate::sources::SourceContext) -> Box<dyn Source> {
            self.1.build(ctx)
        }

        fn placement(&self) -> Placement {
            self.0
        }
    }

    struct ScriptedSource {
        panics: u64,
        hang: Duration,
        hang_at: u64,
        runs: Arc<AtomicU64>,
        hangs_over: Arc<AtomicU64>,
    }

    impl Source for ScriptedSource {
        fn collect(&mut self, emit: &mut Emitter<'_>) -> Result<(), SourceError> {
            let run = self.runs.fetch_add(1, Ordering::SeqCst);
            if run < self.panics {
                panic!("scripted panic {run}");
            }
            if run == self.hang_at && !self.hang.is_zero() {
                std::thread::sleep(self.hang);
                self.hangs_over.fetch_add(1, Ordering::SeqCst);
            }
            emit.metric("tick", run as i64);
            Ok(())
        }

        fn start_check(
            &mut self,
            reply: crate::supervisor::Reply,
        ) -> Option<Result<(), SpawnError>> {
            reply
                .to
                .send(crate::supervisor::Answer {
                    tag: reply.tag,
                    result: Err(SpawnError::Stopped),
                    sent: std::time::Instant::now(),
                })
                .unwrap();
            Some(Ok(()))
        }

        fn finish_check(
            &mut self,
            _: crate::sources::RunResult,
            emit: &mut Emitter<'_>,
        ) -> Result<(), SourceError> {
            self.collect(emit)
        }
    }

    fn source(name: &str, interval_ms: u64, spec: Scripted) -> SourceConfig {
        let interval = Duration::from_millis(interval_ms);
        SourceConfig {
            name: name.into(),
            kind: "load",
            interval,
            timeout: Duration::from_millis(300),
            template: Template {
                prefix: name.into(),
                host: "h".into(),
                tags: Vec::new(),
                ttl: interval * 2,
                attributes: BTreeMap::new(),
            },
            spec: Arc::new(spec),
        }
    }

    /// A source that emits one event every 10 ms, counting its collections in `runs`.
    fn steady(name: &str, runs: &Arc<AtomicU64>) -> SourceConfig {
        source(
            name,
            10,
            Scripted {
                panics: 0,
                hang: Duration::ZERO,
                runs: runs.clone(),
                ..Default::default()
            },
        )
    }

    fn config(
        sources: Vec<SourceConfig>,
        kept: &Arc<Mutex<Vec<Event>>>,
        batch_timeout: Duration,
    ) -> Config {
        Config {
            file: "test".into(),
            agent: AgentConfig {
                hostname: "h".into(),
                shutdown_timeout: Duration::from_secs(5),
                ..AgentConfig::default()
            },
            supervisor: Default::default(),
            sources,
            outputs: vec![OutputConfig {
                name: "keep".into(),
                kind: "stdout",
                selector: Selector::default(),
                queue_size: 10_000,
                batch_size: 100_000,
                batch_timeout,
                delivery: crate::delivery::config::DeliveryConfig::default(),
                spec: Arc::new(Keep(kept.clone())),
            }],
            control: crate::control::ControlConfig::default(),
            http_server: crate::http_server::HttpServerConfig::default(),
        }
    }

    fn count(kept: &Mutex<Vec<Event>>, service: &str) -> usize {
        kept.lock()
            .unwrap()
            .iter()
            .filter(|e| e.service == service)
            .count()
    }

    fn wait_for(what: &str, deadline: Duration, mut ok: impl FnMut() -> bool) {
        let end = Instant::now() + deadline;
        while !ok() {
            assert!(Instant::now() < end, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_panicking_source_is_restarted_while_the_others_keep_their_schedule() {
        let kept = Arc::new(Mutex::new(Vec::new()));
        let steady_runs = Arc::new(AtomicU64::new(0));
        let crashy_runs = Arc::new(AtomicU64::new(0));
        let cfg = config(
            vec![
                source(
                    "steady",
                    50,
                    Scripted {
                        panics: 0,
                        hang: Duration::ZERO,
                        runs: steady_runs.clone(),
                        ..Default::default()
                    },
                ),
                source(
                    "crashy",
                    50,
                    Scripted {
                        panics: 1,
                        hang: Duration::ZERO,
                        runs: crashy_runs.clone(),
                        ..Default::default()
                    },
                ),
            ],
            &kept,
            Duration::from_millis(10),
        );
        let agent = Agent::start(cfg).unwrap();
        let crashy_stats = agent.sources[1].stats.clone();
        // The first backoff is 1 s: by the time the crashy source is back, the steady one has
        // kept ticking every 50 ms.
        wait_for(
            "the crashy source to come back",
            Duration::from_secs(10),
            || count(&kept, "crashy.tick") >= 2,
        );
        let steady = count(&kept, "steady.tick");
        assert!(
            steady >= 15,
            "the steady source ticked only {steady} times during the restart"
        );
        assert_eq!(crashy_stats.panics.load(Ordering::SeqCst), 1);
        assert_eq!(crashy_stats.restarts.load(Ordering::SeqCst), 1);
        agent.stop();
    }

    /// A source every 50 ms on the thread `placement` says, as `script` says.
    fn placed(name: &str, placement: Placement, script: Scripted) -> SourceConfig {
        let mut config = source(name, 50, Scripted::default());
        config.spec = Arc::new(Placed(placement, script));
        config
    }

    fn a_panicking_source_on_a_shared_thread_is_rebuilt_while_the_others_keep_their_schedule(
        placement: Placement,
    ) {
        let kept = Arc::new(Mutex::new(Vec::new()));
        let steady_runs = Arc::new(AtomicU64::new(0));
        let crashy_runs = Arc::new(AtomicU64::new(0));
        let cfg = config(
            vec![
                placed(
                    "steady",
                    placement,
                    Scripted {
                        runs: steady_runs,
                        ..Default::default()
                    },
                ),
                placed(
                    "crashy",
                    placement,
                    Scripted {
                        panics: 1,
                        runs: crashy_runs,
                        ..Default::default()
                    },
                ),
            ],
            &kept,
            Duration::from_millis(10),
        );
        let agent = Agent::start(cfg).unwrap();
        assert_eq!(agent.sources[0].threads_alive(), 0, "no thread of its own");
        let crashy_stats = agent.sources[1].stats.clone();
        wait_for(
            "the crashy source to come back",
            Duration::from_secs(10),
            || count(&kept, "crashy.tick") >= 2,
        );
        let steady = count(&kept, "steady.tick");
        assert!(
            steady >= 15,
            "the steady source ticked only {steady} times during the rebuild"
        );
        assert_eq!(crashy_stats.panics.load(Ordering::SeqCst), 1);
        assert_eq!(crashy_stats.restarts.load(Ordering::SeqCst), 1);
        agent.stop();
    }

    #[test]
    fn a_panicking_check_on_the_checks_thread_is_rebuilt_while_the_others_keep_their_schedule() {
        a_panicking_source_on_a_shared_thread_is_rebuilt_while_the_others_keep_their_schedule(
            Placement::Checks,
        );
    }

    #[test]
    fn a_panicking_source_on_the_host_thread_is_rebuilt_while_the_others_keep_their_schedule() {
        a_panicking_source_on_a_shared_thread_is_rebuilt_while_the_others_keep_their_schedule(
            Placement::Host,
        );
    }

    /// The values of the events named `service` that were kept, in order.
    fn values(kept: &Arc<Mutex<Vec<Event>>>, service: &str) -> Vec<i64> {
        kept.lock()
            .unwrap()
            .iter()
            .filter(|e| e.service == service)
            .filter_map(|e| match e.metric {
                Some(crate::Metric::Int(v)) => Some(v),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_source_hung_on_the_host_thread_moves_to_its_own_and_the_others_to_a_fresh_host_thread() {
        let kept = Arc::new(Mutex::new(Vec::new()));
        let hangs_over = Arc::<AtomicU64>::default();
        let steady_runs = Arc::<AtomicU64>::default();
        let slow = Scripted {
            hang: Duration::from_secs(3),
            hang_at: 2,
            hangs_over: hangs_over.clone(),
            ..Default::default()
        };
        let steady = Scripted {
            runs: steady_runs.clone(),
            ..Default::default()
        };
        let cfg = config(
            vec![
                placed("steady", Placement::Host, steady),
                placed("slow", Placement::Host, slow),
            ],
            &kept,
            Duration::from_millis(10),
        );
        let mut agent = Agent::start(cfg).unwrap();
        let slow_stats = agent.sources[1].stats.clone();
        assert_eq!(agent.sources[1].threads_alive(), 0, "on the host thread");
        // The slow source hangs for 3 s in its third collection, holding the host thread (and the
        // steady one's collection of the same round, made before it); past its 300 ms timeout the
        // watchdog moves it to a thread of its own, and the steady one (which waits behind it
        // meanwhile) to a fresh host thread: both tick while the hang lasts.
        wait_for("both to tick again", Duration::from_secs(10), || {
            agent.watch();
            count(&kept, "slow.tick") >= 4 && count(&kept, "steady.tick") >= 15
        });
        assert_eq!(
            hangs_over.load(Ordering::SeqCst),
            0,
            "the hung collection has not returned yet"
        );
        // What the steady source collected in the round the slow one hung in went to the router
        // when the thread was given up, not with the hung collection's return: no tick is missing
        // while it still hangs.
        let mut early = values(&kept, "steady.tick");
        early.sort_unstable();
        let last = *early.last().unwrap();
        assert_eq!(
            early,
            (0..=last).collect::<Vec<_>>(),
            "a tick held by the hung thread"
        );
        assert_eq!(slow_stats.restarts.load(Ordering::SeqCst), 1);
        assert_eq!(agent.sources[1].threads_alive(), 1, "a thread of its own");
        assert_eq!(
            agent.sources[0].threads_alive(),
            0,
            "still on a shared thread"
        );
        // Once the hung collection returns, its event is not sent, nor is anything sent twice,
        // and the given-up thread ends without collecting anything more: the steady source ticks
        // on, once a tick.
        wait_for(
            "the hung collection to return",
            Duration::from_secs(10),
            || hangs_over.load(Ordering::SeqCst) == 1,
        );
        let steady_before = steady_runs.load(Ordering::SeqCst);
        wait_for(
            "the steady source to go on",
            Duration::from_secs(10),
            || steady_runs.load(Ordering::SeqCst) >= steady_before + 10,
        );
        agent.stop();
        let mut steady = values(&kept, "steady.tick");
        steady.sort_unstable();
        let runs = steady_runs.load(Ordering::SeqCst) as i64;
        assert_eq!(
            steady,
            (0..runs).collect::<Vec<_>>(),
            "each collection sent once"
        );
        assert!(
            !values(&kept, "slow.tick").contains(&2),
            "the hung collection's late result was sent"
        );
    }

    #[test]
    fn a_hung_source_is_replaced_and_its_late_result_discarded() {
        let kept = Arc::new(Mutex::new(Vec::new()));
        let runs = Arc::new(AtomicU64::new(0));
        let cfg = config(
            vec![source(
                "slow",
                50,
                Scripted {
                    panics: 0,
                    hang: Duration::from_secs(2),
                    runs: runs.clone(),
                    ..Default::default()
                },
            )],
            &kept,
            Duration::from_millis(10),
        );
        let mut agent = Agent::start(cfg).unwrap();
        let stats = agent.sources[0].stats.clone();
        wait_for("the replacement to emit", Duration::from_secs(10), || {
            agent.watch();
            count(&kept, "slow.tick") >= 3
        });
        assert_eq!(stats.restarts.load(Ordering::SeqCst), 1);
        // Wait until the hung collection has returned: its event (metric 0) must not appear.
        wait_for("the hung thread to finish", Duration::from_secs(10), || {
            agent.sources[0].threads_alive() == 1
        });
        let zeros = kept
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.metric == Some(crate::Metric::Int(0)))
            .count();
        assert_eq!(zeros, 0, "the hung collection's late result was sent");
        agent.stop();
    }

    #[test]
    fn stop_delivers_everything_queued() {
        let kept = Arc::new(Mutex::new(Vec::new()));
        let runs = Arc::new(AtomicU64::new(0));
        // A batch timeout of an hour: nothing is written until a stop or a reload hands it on.
        let cfg = config(vec![steady("s", &runs)], &kept, Duration::from_secs(3600));
        let agent = Agent::start(cfg).unwrap();
        wait_for("some collections", Duration::from_secs(10), || {
            runs.load(Ordering::SeqCst) >= 20
        });
        assert!(kept.lock().unwrap().is_empty());
        let report = agent.stop();
        let collected = runs.load(Ordering::SeqCst) as usize;
        assert_eq!(kept.lock().unwrap().len(), collected);
        assert_eq!(
            report,
            StopReport {
                delivered: collected as u64,
                undelivered: 0
            }
        );
    }

    #[test]
    fn reload_hands_a_changed_outputs_queue_to_its_new_writer() {
        let kept = Arc::new(Mutex::new(Vec::new()));
        let runs = Arc::new(AtomicU64::new(0));
        // A batch timeout of an hour: nothing is written until a stop or a reload hands it on.
        let cfg = config(vec![steady("s", &runs)], &kept, Duration::from_secs(3600));
        let mut agent = Agent::start(cfg).unwrap();
        wait_for("some collections", Duration::from_secs(10), || {
            runs.load(Ordering::SeqCst) >= 10
        });
        // Same source, changed output (batch size): the old writer writes its batch, the new one
        // takes over the queue.
        let mut new = config(
            vec![agent.config().sources[0].clone()],
            &kept,
            Duration::from_secs(3600),
        );
        new.outputs[0].batch_size = 50_000;
        agent.reload(new).unwrap();
        assert_eq!(agent.sources[0].stats.restarts.load(Ordering::SeqCst), 0);
        wait_for("more collections", Duration::from_secs(10), || {
            runs.load(Ordering::SeqCst) >= 20
        });
        agent.stop();
        let collected = runs.load(Ordering::SeqCst) as usize;
        assert_eq!(
            kept.lock().unwrap().len(),
            collected,
            "events were lost across the reload"
        );
    }

    /// An output that keeps what it is given, and panics on its `panic_at`-th write (from 1).
    #[derive(Debug)]
    struct PanicsOnce {
        kept: Arc<Mutex<Vec<Event>>>,
        writes: Arc<AtomicU64>,
        panic_at: u64,
    }

    impl OutputSpec for PanicsOnce {
        fn build_target(&self, _: usize, _: &str) -> Result<Box<dyn Output>, OutputError> {
            Ok(Box::new(PanicsOnceWriter {
                kept: self.kept.clone(),
                writes: self.writes.clone(),
                panic_at: self.panic_at,
            }))
        }
        fn describe(&self) -> String {
            "kept in memory, after one panic".into()
        }
    }

    struct PanicsOnceWriter {
        kept: Arc<Mutex<Vec<Event>>>,
        writes: Arc<AtomicU64>,
        panic_at: u64,
    }

    impl Output for PanicsOnceWriter {
        fn write(&mut self, batch: &[Event]) -> Result<(), OutputError> {
            if self.writes.fetch_add(1, Ordering::SeqCst) + 1 == self.panic_at {
                panic!("an encoder bug");
            }
            self.kept.lock().unwrap().extend_from_slice(batch);
            Ok(())
        }
    }

    #[test]
    fn a_panic_in_an_outputs_write_is_a_failed_attempt_and_the_batch_is_retried() {
        let kept = Arc::new(Mutex::new(Vec::new()));
        let runs = Arc::new(AtomicU64::new(0));
        let mut cfg = config(vec![steady("s", &runs)], &kept, Duration::from_millis(10));
        cfg.outputs[0].spec = Arc::new(PanicsOnce {
            kept: kept.clone(),
            writes: Arc::new(AtomicU64::new(0)),
            panic_at: 2,
        });
        let agent = Agent::start(cfg).unwrap();
        let stats = agent.outputs[0].stats.clone();
        wait_for(
            "the panic and a delivery after it",
            Duration::from_secs(10),
            || get(&stats.panics) == 1 && get(&stats.events_out) > 0 && get(&stats.retried) > 0,
        );
        let report = agent.stop();
        let collected = runs.load(Ordering::SeqCst);
        assert_eq!(kept.lock().unwrap().len() as u64, collected);
        assert_eq!(report.delivered, collected, "every event delivered once");
        assert_eq!((get(&stats.failed), get(&stats.panics)), (0, 1));
    }
}
