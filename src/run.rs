//! `pipit run`: the agent under signal and control-socket control.
//!
//! SIGTERM or SIGINT (or `stop` on the control socket) stops it gracefully (sources stop, queues
//! drain into the outputs within `agent.shutdown_timeout`); a second signal while stopping exits
//! at once. SIGHUP (or `reload` on the control socket) reloads the config file: a valid one
//! replaces the running config, an invalid one is refused and logged.

use std::path::PathBuf;
use std::process;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{RecvTimeoutError, bounded, select};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::agent::{Agent, AgentError, StopReport};
use crate::config::ConfigErrors;
use crate::config_file::{self, Config};
use crate::control::status::Status;
use crate::control::{Order, Server};
use crate::lifeline::{self, Death};

/// Where the running config comes from, so that a reload reads it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// A file, re-read on every reload.
    File(PathBuf),
    /// The embedded default config (no file existed at start); a reload keeps it.
    Embedded,
}

impl ConfigSource {
    /// Reads and validates the config.
    pub fn load(&self) -> Result<Config, ConfigErrors> {
        match self {
            ConfigSource::File(path) => config_file::load(path),
            ConfigSource::Embedded => {
                config_file::parse(config_file::EMBEDDED_NAME, config_file::EMBEDDED)
            }
        }
    }
}

/// Why `pipit run` ended badly.
#[derive(Debug)]
#[non_exhaustive]
pub enum RunError {
    /// The config is invalid; each error says where and what was expected.
    Config(ConfigErrors),
    /// The agent could not start.
    Agent(AgentError),
    /// Signal handlers could not be installed: the box is out of memory or of threads.
    Signals(std::io::Error),
    /// A thread that should live as long as the agent ended (a panic, say); the agent stopped so
    /// that the init system starts it again.
    ThreadDied(Death),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Config(e) => write!(f, "{e}"),
            RunError::Agent(e) => write!(f, "{e}"),
            RunError::Signals(e) => write!(f, "cannot install signal handlers: {e}"),
            RunError::ThreadDied(death) => write!(f, "{death}"),
        }
    }
}

impl std::error::Error for RunError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RunError::Config(e) => Some(e),
            RunError::Agent(e) => Some(e),
            RunError::Signals(e) => Some(e),
            RunError::ThreadDied(_) => None,
        }
    }
}

/// Runs the agent until SIGTERM, SIGINT or a `stop` over the control socket.
pub fn run(source: ConfigSource) -> Result<StopReport, RunError> {
    crate::sys::one_malloc_arena();
    // Before any thread starts, so that no death goes unseen.
    let deaths = lifeline::watch();
    lifeline::log_panics();
    let config = source.load().map_err(RunError::Config)?;
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP]).map_err(RunError::Signals)?;
    let control = config.control.clone();
    let trim_delay = config.agent.trim_delay;
    let mut agent = Agent::start(config).map_err(RunError::Agent)?;
    let mut loaded = SystemTime::now();

    let (tx, rx) = bounded::<Order>(8);
    let orders = tx.clone();
    // Set by the first stop, whether a signal or the control socket asked for it.
    let stopping = Arc::new(AtomicBool::new(false));
    let stop_seen = stopping.clone();
    lifeline::spawn("signals".into(), move || {
        for signal in signals.forever() {
            crate::fault::point("signals");
            let order = if signal == SIGHUP {
                Order::Reload(None)
            } else {
                if stop_seen.swap(true, Ordering::SeqCst) {
                    log::warn!(target: "agent", "second stop signal: exiting at once");
                    process::exit(128 + signal);
                }
                Order::Stop(if signal == SIGINT {
                    "SIGINT"
                } else {
                    "SIGTERM"
                })
            };
            let _ = tx.send(order);
        }
        // Never without a panic: the signals would go unanswered from now on.
        lifeline::report(Death {
            thread: "signals".into(),
            how: "ended: signals are no longer received".into(),
        });
    })
    .map_err(RunError::Signals)?;
    #[cfg(feature = "http_server")]
    let mut endpoint = Endpoint::start(
        &agent,
        #[cfg(feature = "status_page")]
        orders.clone(),
    );
    let server = if control.enabled {
        Server::start(&control, agent.telemetry().clone(), orders)
            .map_err(|e| log::error!(target: "control", "no control socket: {e}"))
            .ok()
    } else {
        None
    };

    let mut next_watch = Instant::now() + WATCH_EVERY;
    let mut next_trim = Instant::now() + trim_delay;
    let mut died = None;
    loop {
        let order = select! {
            recv(rx) -> order => order.map_err(|_| RecvTimeoutError::Disconnected),
            recv(deaths) -> death => {
                if let Ok(death) = death {
                    log::error!(target: "agent", "{death}; stopping, to exit with status 3 so that the init system starts pipit again");
                    stopping.store(true, Ordering::SeqCst);
                    died = Some(death);
                    break;
                }
                continue;
            }
            default(next_watch.saturating_duration_since(Instant::now())) => Err(RecvTimeoutError::Timeout),
        };
        match order {
            Ok(Order::Reload(reply)) => {
                let outcome = reload(&mut agent, &source);
                if outcome.is_ok() {
                    loaded = SystemTime::now();
                    #[cfg(feature = "http_server")]
                    endpoint.follow(&agent);
                }
                if let Some(reply) = reply {
                    let _ = reply.send(outcome);
                }
            }
            Ok(Order::Status(reply)) => {
                let config = agent.config();
                let status = Status::of(
                    &config.file,
                    &config.sources,
                    &config.outputs,
                    agent.telemetry(),
                    loaded,
                );
                let _ = reply.send(status);
            }
            Ok(Order::Stop(why)) => {
                stopping.store(true, Ordering::SeqCst);
                log::info!(target: "agent", "{why}: stopping (a second stop signal exits at once)");
                break;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if Instant::now() >= next_watch {
            agent.watch();
            next_watch = Instant::now() + WATCH_EVERY;
        }
        if Instant::now() >= next_trim {
            let kib = crate::sys::trim_memory();
            log::debug!(target: "agent", "trimmed memory: {kib} KiB of program pages unmapped");
            next_trim = Instant::now() + TRIM_EVERY;
        }
    }
    drop(server);
    #[cfg(feature = "http_server")]
    drop(endpoint);
    let report = agent.stop();
    match died {
        Some(death) => Err(RunError::ThreadDied(death)),
        None => Ok(report),
    }
}

/// The `http_server` endpoint as the running config asks for it.
#[cfg(feature = "http_server")]
struct Endpoint {
    config: crate::http_server::HttpServerConfig,
    server: Option<crate::http_server::Server>,
    /// The run loop's channel, through which the status page asks for the status.
    #[cfg(feature = "status_page")]
    orders: crossbeam_channel::Sender<Order>,
}

/// How long the status page waits for the run loop's status. The loop answers at once unless it
/// is reloading or stopping; the endpoint's thread waits no longer than this for it then.
#[cfg(feature = "status_page")]
const PAGE_STATUS_TIMEOUT: Duration = Duration::from_secs(2);

#[cfg(feature = "http_server")]
impl Endpoint {
    /// Starts the endpoint if the agent's config enables it; a failure is logged and the agent
    /// runs without it.
    fn start(
        agent: &Agent,
        #[cfg(feature = "status_page")] orders: crossbeam_channel::Sender<Order>,
    ) -> Endpoint {
        let config = agent.config().http_server.clone();
        let server = if config.enabled {
            #[cfg(feature = "status_page")]
            let status: crate::http_server::StatusSource = {
                let orders = orders.clone();
                Box::new(move || crate::control::status_line(&orders, PAGE_STATUS_TIMEOUT).ok())
            };
            crate::http_server::Server::start(
                &config,
                agent.telemetry().clone(),
                #[cfg(feature = "status_page")]
                status,
            )
            .map_err(|e| log::error!(target: "http_server", "no endpoint: {e}"))
            .ok()
        } else {
            None
        };
        Endpoint {
            config,
            server,
            #[cfg(feature = "status_page")]
            orders,
        }
    }

    /// After a reload: restarts the endpoint when its section changed, or when it serves HTTPS
    /// (so that renewed certificate files are read), stopping the old one first so that the same
    /// addresses can be bound again.
    fn follow(&mut self, agent: &Agent) {
        if agent.config().http_server != self.config || self.config.tls.is_some() {
            self.server = None;
            *self = Endpoint::start(
                agent,
                #[cfg(feature = "status_page")]
                self.orders.clone(),
            );
        }
    }
}

/// How often the run loop checks for hung sources.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// How often, after the first time (`agent.trim_delay`, [`crate::sys::trim_memory`]), memory steady running does not use is given back.
const TRIM_EVERY: Duration = Duration::from_secs(60);

/// Reloads the config from `source` into `agent`: the one path of SIGHUP and the control
/// socket's `reload`. Every refusal is logged; the outcome is a summary or the errors.
pub fn reload(agent: &mut Agent, source: &ConfigSource) -> Result<String, Vec<String>> {
    let errors = match source.load() {
        Ok(config) => {
            if config.control != agent.config().control {
                log::warn!(target: "agent", "control.* changes take effect at the next start, not on reload");
            }
            match agent.reload(config) {
                Ok(()) => {
                    let c = agent.config();
                    return Ok(format!(
                        "reloaded {}: {} source(s), {} output(s)",
                        c.file,
                        c.sources.len(),
                        c.outputs.len()
                    ));
                }
                Err(e) => vec![e.to_string()],
            }
        }
        Err(errors) => errors.0.iter().map(|e| e.to_string()).collect(),
    };
    for e in &errors {
        log::error!(target: "agent", "reload refused: {e}");
    }
    log::error!(target: "agent", "the running config stays ({} error(s) in the new one)", errors.len());
    Err(errors)
}
