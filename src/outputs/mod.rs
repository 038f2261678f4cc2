//! Outputs: where events go. One file (or folder) per output type, and the registry that maps a
//! config `type` to its reader.
//!
//! An output is an encoder plus a transport; it knows nothing of sources. Queueing, batching and
//! the writer thread around it are shared by every output ([`crate::delivery`]).

pub mod destination;
pub mod graphite;
#[cfg(feature = "http")]
pub mod influx;
#[cfg(feature = "mqtt")]
pub mod mqtt;
#[cfg(feature = "remote_write")]
pub mod remote_write;
#[cfg(feature = "riemann")]
pub mod riemann;
pub mod stdout;

use std::fmt;
use std::io;
use std::sync::Arc;

use crate::config::AgentConfig;
use crate::config::reader::{Problems, Table};
use crate::event::Event;
use crate::outputs::graphite::GraphiteError;
use crate::prometheus_name::SourceNames;

/// The log target of output `name`: `out.<name>` (filter with `RUST_LOG=out.<name>=debug`).
pub fn log_target(name: &str) -> String {
    format!("out.{name}")
}

/// A built output, owned by its writer thread.
pub trait Output: Send {
    /// Delivers a batch; on error none of it counts as delivered (but the events a partial
    /// refusal, [`OutputError::refused`], did not name), and the error's kind says whether
    /// a retry may help.
    fn write(&mut self, batch: &[Event]) -> Result<(), OutputError>;

    /// How many events of the last write the output left out because it cannot encode them (a
    /// metric-only output given an event without a metric, a name it cannot send); they count as
    /// dropped, not delivered. Reading resets it.
    fn take_unencodable(&mut self) -> u64 {
        0
    }

    /// Whether the events of a successful write count as delivered only once
    /// [`Output::take_confirmed`] says so: a stream whose peer sends no acknowledgements
    /// (Graphite), confirmed by its TCP. Otherwise a successful write is the confirmation.
    fn confirms_later(&self) -> bool {
        false
    }

    /// Events confirmed since the last call; looks without blocking.
    fn take_confirmed(&mut self) -> u64 {
        0
    }

    /// Events and bytes written but not yet confirmed, held for a resend.
    fn unconfirmed(&self) -> (u64, u64) {
        (0, 0)
    }
}

/// An output's validated config, able to build the output.
pub trait OutputSpec: Send + Sync + fmt::Debug {
    /// The names of the output's targets (`host:port`), in config order; one unless the output
    /// takes a `targets` list.
    fn targets(&self) -> Vec<String> {
        vec![self.describe()]
    }

    /// Builds the output that writes to target `index` of [`OutputSpec::targets`] (an output
    /// with one target is built with index 0); what it logs goes under `log_target` (see
    /// [`log_target`]).
    fn build_target(&self, index: usize, log_target: &str) -> Result<Box<dyn Output>, OutputError>;

    /// Writes into `key` what places `event` on a consistent-hash ring (the `carbon_ch`
    /// strategy); false when the event has no such key.
    fn placement_key(&self, event: &Event, key: &mut String) -> bool {
        let _ = (event, key);
        false
    }

    /// A few words for `pipit check`, such as `graphite lines to stdout`.
    fn describe(&self) -> String;

    /// This spec told the declared metrics of the configured sources, for an output that names
    /// series by them as the `/metrics` endpoint does; `None` (the default) for one that does not.
    fn with_sources(&self, sources: &[SourceNames]) -> Option<Arc<dyn OutputSpec>> {
        let _ = sources;
        None
    }
}

/// An output type's config, read once into a typed value: the spec the registry reads for it.
pub trait Settings: OutputSpec + Sized + 'static {
    /// Reads the type's own keys from its config section, with the `agent` section for the
    /// defaults it gives (`agent.hostname`); `None` (with the problems recorded, each with its key
    /// path) when they are wrong.
    fn read(t: &mut Table<'_>, agent: &AgentConfig, problems: &mut Problems) -> Option<Self>;
}

/// The registry's reader of output type `S`: its [`OutputType::read`] is `read::<S>`.
pub fn read<S: Settings>(
    t: &mut Table<'_>,
    agent: &AgentConfig,
    problems: &mut Problems,
) -> Option<Arc<dyn OutputSpec>> {
    Some(Arc::new(S::read(t, agent, problems)?))
}

/// Reads the output section `text` as type `S` under the default `agent` section; the problems
/// as text when it is wrong.
#[cfg(test)]
pub(crate) fn read_spec<S: Settings>(text: &str) -> Result<S, Vec<String>> {
    crate::config::reader::read_section(text, |t, p| S::read(t, &AgentConfig::default(), p))
}

/// What kind of failure a delivery met, which decides what the delivery layer does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The backend could not be reached or the transfer broke: retried, then spooled.
    Failed,
    /// A step ran out of time (connect, write, ack): retried only with `retry_on_timeout`.
    Timeout,
    /// The backend refused the batch itself as bad (an HTTP 4xx, say): dropped, never retried.
    Rejected,
}

/// Why a delivery failed, with the error it wraps. [`OutputError::kind`] says what the delivery
/// layer does next; the text names the backend; what to do is said for each variant.
#[derive(Debug)]
#[non_exhaustive]
pub enum OutputError {
    /// Carbon could not be resolved, connected to or written to, or holds too much unconfirmed:
    /// [`GraphiteError`] says which and what to check. Retried, then spooled.
    Graphite(GraphiteError),
    /// The Riemann server at `addr` could not be reached, did not acknowledge in time, or refused
    /// the events: [`riemann::RiemannError`] says which. Retried, then spooled.
    #[cfg(feature = "riemann")]
    Riemann {
        /// The server's `host:port`.
        addr: String,
        /// What the client met.
        source: riemann::RiemannError,
    },
    /// The MQTT broker at `addr` could not be reached, did not acknowledge in time, or refused
    /// the connection: [`crate::mqtt::client::MqttError`] says which. Retried, then spooled.
    #[cfg(feature = "mqtt")]
    Mqtt {
        /// The broker's `host:port`.
        addr: String,
        /// What the client met.
        source: crate::mqtt::client::MqttError,
    },
    /// The HTTP request to `url` failed before an answer (refused, timed out, TLS): is the
    /// backend up and the URL right? Retried, then spooled.
    #[cfg(feature = "http")]
    Http {
        /// The URL, without credentials.
        url: String,
        /// What failed, with the timeout that ran out.
        why: String,
        /// What ureq met (boxed: with TLS it is large).
        source: Box<ureq::Error>,
    },
    /// The backend answered with an HTTP error status. A 4xx other than 401, 403, 404, 408 and
    /// 429 means it refused the batch as bad: dropped and counted, never retried (fix what the
    /// reason names). Any other status is retried, then spooled.
    Status {
        /// The URL, without credentials.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The start of the answer, quoted, with secrets masked.
        reason: String,
        /// How many events of the batch the backend refused when it stored the others
        /// (InfluxDB's partial write); `None` when the answer does not say.
        refused: Option<u64>,
    },
    /// Prometheus refused `refused` of the `sent` samples as bad and stored the others, sent again
    /// without them: the refused ones are dropped and counted. `answer` is its first refusal.
    SamplesRefused {
        /// The first refusal, as [`OutputError::Status`] words it.
        answer: String,
        /// Samples refused.
        refused: u64,
        /// Samples in the batch.
        sent: usize,
    },
    /// Standard output could not be written: the reader went away or the disk is full.
    Stdout(io::Error),
    /// The TLS files of the output could not be loaded, or this build has no TLS: the text says
    /// which file and why; fix the config (or build with the `tls` feature).
    Tls(String),
    /// A target the config named could not be used: the config was checked, so this is a bug to
    /// report.
    BadTarget(String),
    /// The writer thread could not be started: the box is short of memory or threads.
    Thread(io::Error),
    /// The output panicked during the write; it is rebuilt, and the batch retried.
    Panicked(String),
}

impl OutputError {
    /// What kind of failure this is: what the delivery layer does next.
    pub fn kind(&self) -> ErrorKind {
        let io_kind = |e: &io::Error| match e.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => ErrorKind::Timeout,
            _ => ErrorKind::Failed,
        };
        match self {
            OutputError::Graphite(
                GraphiteError::Connect { source, .. } | GraphiteError::Write { source, .. },
            ) => io_kind(source),
            #[cfg(feature = "riemann")]
            OutputError::Riemann { source, .. } => match source {
                riemann::RiemannError::AckTimeout(_) => ErrorKind::Timeout,
                riemann::RiemannError::Connect(e)
                | riemann::RiemannError::Write(e)
                | riemann::RiemannError::Read(e) => io_kind(e),
                _ => ErrorKind::Failed,
            },
            #[cfg(feature = "mqtt")]
            OutputError::Mqtt { source, .. } => {
                use crate::mqtt::client::MqttError;
                match source {
                    MqttError::AckTimeout(_) => ErrorKind::Timeout,
                    MqttError::Connect(e) | MqttError::Write(e) | MqttError::Read(e) => io_kind(e),
                    _ => ErrorKind::Failed,
                }
            }
            #[cfg(feature = "http")]
            OutputError::Http { source, .. } if matches!(**source, ureq::Error::Timeout(_)) => {
                ErrorKind::Timeout
            }
            OutputError::Status { status, .. }
                if (400..500).contains(status)
                    && !matches!(status, 401 | 403 | 404 | 408 | 429) =>
            {
                ErrorKind::Rejected
            }
            OutputError::SamplesRefused { .. } => ErrorKind::Rejected,
            OutputError::Stdout(e) => io_kind(e),
            _ => ErrorKind::Failed,
        }
    }

    /// For a refusal ([`ErrorKind::Rejected`]): how many events of the batch the backend refused
    /// when it stored the others; `None` when it refused the whole batch.
    pub fn refused(&self) -> Option<u64> {
        match self {
            OutputError::Status { refused, .. } => *refused,
            OutputError::SamplesRefused { refused, sent, .. } => {
                (*refused < *sent as u64).then_some(*refused)
            }
            _ => None,
        }
    }
}

impl fmt::Display for OutputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutputError::Graphite(e) => write!(f, "{e}"),
            #[cfg(feature = "riemann")]
            OutputError::Riemann { addr, source } => write!(f, "{addr}: {source}"),
            #[cfg(feature = "mqtt")]
            OutputError::Mqtt { addr, source } => write!(f, "{addr}: {source}"),
            #[cfg(feature = "http")]
            OutputError::Http { url, why, .. } => write!(f, "{url}: {why}"),
            OutputError::Status {
                url,
                status,
                reason,
                ..
            } => write!(f, "{url}: HTTP {status}: {reason}"),
            OutputError::SamplesRefused {
                answer,
                refused,
                sent,
            } => write!(
                f,
                "{answer} (it refused {refused} of {sent} sample(s); the others were sent again and stored)"
            ),
            OutputError::Stdout(e) => write!(f, "cannot write to standard output: {e}"),
            OutputError::Tls(why) | OutputError::BadTarget(why) => f.write_str(why),
            OutputError::Thread(e) => write!(f, "cannot start the writer thread: {e}"),
            OutputError::Panicked(panic) => write!(f, "the output panicked: {panic}"),
        }
    }
}

impl std::error::Error for OutputError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OutputError::Graphite(e) => Some(e),
            #[cfg(feature = "riemann")]
            OutputError::Riemann { source, .. } => Some(source),
            #[cfg(feature = "mqtt")]
            OutputError::Mqtt { source, .. } => Some(source),
            #[cfg(feature = "http")]
            OutputError::Http { source, .. } => Some(source),
            OutputError::Stdout(e) | OutputError::Thread(e) => Some(e),
            OutputError::Status { .. }
            | OutputError::SamplesRefused { .. }
            | OutputError::Tls(_)
            | OutputError::BadTarget(_)
            | OutputError::Panicked(_) => None,
        }
    }
}

/// An output type in the registry.
#[derive(Debug, Clone, Copy)]
pub struct OutputType {
    /// The config `type`.
    pub name: &'static str,
    /// One line for `--help` and the docs.
    pub description: &'static str,
    /// Reads the type's own keys from its config section, with the `agent` section for the
    /// defaults it gives: [`read`] of the type's [`Settings`].
    pub read: fn(&mut Table<'_>, &AgentConfig, &mut Problems) -> Option<Arc<dyn OutputSpec>>,
}

/// Every output type pipit has, by config `type`.
pub const REGISTRY: &[OutputType] = &[
    stdout::TYPE,
    graphite::TYPE,
    #[cfg(feature = "riemann")]
    riemann::TYPE,
    #[cfg(feature = "http")]
    influx::TYPE,
    #[cfg(feature = "mqtt")]
    mqtt::TYPE,
    #[cfg(feature = "remote_write")]
    remote_write::TYPE,
];

/// Output types this build leaves out, with the Cargo feature that has each.
pub const LEFT_OUT: &[(&str, &str)] = &[
    #[cfg(not(feature = "riemann"))]
    ("riemann", "riemann"),
    #[cfg(not(feature = "http"))]
    ("influxdb", "http"),
    #[cfg(not(feature = "mqtt"))]
    ("mqtt", "mqtt"),
    #[cfg(not(feature = "remote_write"))]
    ("prometheus_remote_write", "remote_write"),
];

/// Finds an output type by its config name.
pub fn lookup(name: &str) -> Option<&'static OutputType> {
    REGISTRY.iter().find(|t| t.name == name)
}
