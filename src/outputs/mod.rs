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
use std::sync::Arc;
use std::time::Duration;

use crate::config::reader::{Problems, Table};
use crate::event::Event;
use crate::prometheus_name::SourceNames;

/// Opens a TCP connection to the first of `addrs` that takes one within `connect`, with Nagle's
/// algorithm off and `write` as the write timeout.
pub fn connect_tcp(
    addrs: &[std::net::SocketAddr],
    connect: Duration,
    write: Duration,
) -> std::io::Result<std::net::TcpStream> {
    let mut last = std::io::Error::new(
        std::io::ErrorKind::NotFound,
        "the address resolved to nothing",
    );
    for addr in addrs {
        match std::net::TcpStream::connect_timeout(addr, connect) {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                stream.set_write_timeout(Some(write))?;
                return Ok(stream);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The log target of output `name`: `out.<name>` (filter with `RUST_LOG=out.<name>=debug`).
pub fn log_target(name: &str) -> String {
    format!("out.{name}")
}

/// A built output, owned by its writer thread.
pub trait Output: Send {
    /// Delivers a batch; on error none of it counts as delivered (but the events a partial
    /// refusal, [`OutputError::partly_rejected`], did not name), and the error's kind says whether
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
    /// Reads the type's own keys from its config section; `None` (with the problems recorded,
    /// each with its key path) when they are wrong.
    fn read(t: &mut Table<'_>, problems: &mut Problems) -> Option<Self>;
}

/// The registry's reader of output type `S`: its [`OutputType::read`] is `read::<S>`.
pub fn read<S: Settings>(
    t: &mut Table<'_>,
    problems: &mut Problems,
) -> Option<Arc<dyn OutputSpec>> {
    Some(Arc::new(S::read(t, problems)?))
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

/// Why a delivery failed: its kind and words for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// What happened, naming the backend.
    pub message: String,
    /// For [`ErrorKind::Rejected`]: how many events of the batch the backend refused when it
    /// stored the others (InfluxDB's partial write); `None` when it refused the whole batch.
    pub refused: Option<u64>,
}

impl OutputError {
    /// A failure a retry may cure.
    pub fn failed(message: impl Into<String>) -> OutputError {
        OutputError {
            kind: ErrorKind::Failed,
            message: message.into(),
            refused: None,
        }
    }

    /// A step that ran out of time.
    pub fn timeout(message: impl Into<String>) -> OutputError {
        OutputError {
            kind: ErrorKind::Timeout,
            message: message.into(),
            refused: None,
        }
    }

    /// A batch the backend refused as bad.
    pub fn rejected(message: impl Into<String>) -> OutputError {
        OutputError {
            kind: ErrorKind::Rejected,
            message: message.into(),
            refused: None,
        }
    }

    /// A batch of which the backend stored all but `refused` events, and refused those as bad.
    pub fn partly_rejected(refused: u64, message: impl Into<String>) -> OutputError {
        OutputError {
            refused: Some(refused),
            ..OutputError::rejected(message)
        }
    }

    /// A failure caused by the I/O error `e`: a timeout when `e` says so.
    pub fn io(e: &std::io::Error, message: String) -> OutputError {
        match e.kind() {
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
                OutputError::timeout(message)
            }
            _ => OutputError::failed(message),
        }
    }
}

impl fmt::Display for OutputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for OutputError {}

/// An output type in the registry.
#[derive(Debug, Clone, Copy)]
pub struct OutputType {
    /// The config `type`.
    pub name: &'static str,
    /// One line for `--help` and the docs.
    pub description: &'static str,
    /// Reads the type's own keys from its config section: [`read`] of the type's [`Settings`].
    pub read: fn(&mut Table<'_>, &mut Problems) -> Option<Arc<dyn OutputSpec>>,
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
