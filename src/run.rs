//! `pipit run`: the agent under signal control.
//!
//! SIGTERM or SIGINT stops it gracefully (sources stop, queues drain into the outputs within
//! `agent.shutdown_timeout`); a second one while stopping exits at once. SIGHUP reloads the config
//! file: a valid one replaces the running config, an invalid one is refused and logged.

use std::path::PathBuf;
use std::process;
use std::thread;
use std::time::Duration;

use crossbeam_channel::{RecvTimeoutError, bounded};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::agent::{Agent, AgentError, StopReport};
use crate::config::{self, Config, ConfigErrors};

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
            ConfigSource::File(path) => config::load(path),
            ConfigSource::Embedded => config::parse(config::EMBEDDED_NAME, config::EMBEDDED),
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
    /// Signal handlers could not be installed.
    Signals(std::io::Error),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Config(e) => write!(f, "{e}"),
            RunError::Agent(e) => write!(f, "{e}"),
            RunError::Signals(e) => write!(f, "cannot install signal handlers: {e}"),
        }
    }
}

impl std::error::Error for RunError {}

/// Runs the agent until SIGTERM or SIGINT.
pub fn run(source: ConfigSource) -> Result<StopReport, RunError> {
    let config = source.load().map_err(RunError::Config)?;
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP]).map_err(RunError::Signals)?;
    let mut agent = Agent::start(config).map_err(RunError::Agent)?;

    let (tx, rx) = bounded::<i32>(8);
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut stopping = false;
            for signal in signals.forever() {
                if signal != SIGHUP {
                    if stopping {
                        log::warn!(target: "agent", "second stop signal: exiting at once");
                        process::exit(128 + signal);
                    }
                    stopping = true;
                }
                let _ = tx.send(signal);
            }
        })
        .map_err(RunError::Signals)?;

    loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(SIGHUP) => reload(&mut agent, &source),
            Ok(signal) => {
                log::info!(target: "agent", "signal {signal}: stopping (a second one exits at once)");
                break;
            }
            Err(RecvTimeoutError::Timeout) => agent.watch(),
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    Ok(agent.stop())
}

fn reload(agent: &mut Agent, source: &ConfigSource) {
    match source.load() {
        Ok(config) => {
            if let Err(e) = agent.reload(config) {
                log::error!(target: "agent", "reload refused: {e}; the running config stays");
            }
        }
        Err(errors) => {
            for e in &errors.0 {
                log::error!(target: "agent", "reload refused: {e}");
            }
            log::error!(target: "agent", "the running config stays ({} error(s) in the new one)", errors.0.len());
        }
    }
}
