//! Outputs: where events go. One file (or folder) per output type, and the registry that maps a
//! config `type` to its reader.
//!
//! An output is an encoder plus a transport; it knows nothing of sources. Queueing, batching and
//! the writer thread around it are shared by every output ([`crate::delivery`]).

pub mod graphite;
#[cfg(feature = "http")]
pub mod influx;
#[cfg(feature = "mqtt")]
pub mod mqtt;
#[cfg(feature = "riemann")]
pub mod riemann;
pub mod stdout;
#[cfg(any(feature = "riemann", feature = "mqtt"))]
pub mod tls;

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::config::reader::{self, Field, Problems, Table};
use crate::delivery::config::DeliveryConfig;
use crate::event::Event;
use crate::pattern::{Pattern, Selector};

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

/// An output type in the registry.
#[derive(Debug, Clone, Copy)]
pub struct OutputType {
    /// The config `type`.
    pub name: &'static str,
    /// One line for `--help` and the docs.
    pub description: &'static str,
    /// Reads the type's own keys from its config section.
    pub read: fn(&mut Table<'_>, &mut Problems) -> Option<Arc<dyn OutputSpec>>,
}

/// Every output type pipit has, by config `type`.
pub const REGISTRY: &[OutputType] = &[
    stdout::TYPE,
    graphite::output::TYPE,
    #[cfg(feature = "riemann")]
    riemann::TYPE,
    #[cfg(feature = "http")]
    influx::TYPE,
    #[cfg(feature = "mqtt")]
    mqtt::TYPE,
];

/// Output types this build leaves out, with the Cargo feature that has each.
pub const LEFT_OUT: &[(&str, &str)] = &[
    #[cfg(not(feature = "riemann"))]
    ("riemann", "riemann"),
    #[cfg(not(feature = "http"))]
    ("influxdb", "http"),
    #[cfg(not(feature = "mqtt"))]
    ("mqtt", "mqtt"),
];

/// Finds an output type by its config name.
pub fn lookup(name: &str) -> Option<&'static OutputType> {
    REGISTRY.iter().find(|t| t.name == name)
}

/// One configured output, with the settings every output shares.
#[derive(Debug, Clone)]
pub struct OutputConfig {
    /// The output's name, unique among outputs; the `type` unless set.
    pub name: String,
    /// The config `type`.
    pub kind: &'static str,
    /// Which events (by service name) this output takes.
    pub selector: Selector,
    /// Capacity of the output's queue, in events; default 10,000.
    pub queue_size: usize,
    /// Most events per write; default 500.
    pub batch_size: usize,
    /// Longest time an event waits for its batch to fill; default 1 s.
    pub batch_timeout: Duration,
    /// Targets, retries, breaker, spool, fallback and rate limit.
    pub delivery: DeliveryConfig,
    /// The type's own settings.
    pub spec: Arc<dyn OutputSpec>,
}

impl OutputConfig {
    /// A text equal for two configs exactly when they would run the same output. A reload keeps an
    /// unchanged output running; a changed one's new writer takes over its queue.
    pub fn fingerprint(&self) -> String {
        format!(
            "{}|{:?}|{}|{}|{:?}|{:?}|{:?}",
            self.kind,
            self.selector,
            self.queue_size,
            self.batch_size,
            self.batch_timeout,
            self.delivery,
            self.spec
        )
    }
}

/// Reads the `outputs` array; spools default to directories under `state_dir`.
pub fn read_all(field: &Field<'_>, state_dir: &Path, problems: &mut Problems) -> Vec<OutputConfig> {
    let outputs = reader::named_list(
        field,
        problems,
        |t, p| read_one(t, state_dir, p),
        |c| &c.name,
    );
    if let Err(message) = crate::delivery::check_fallbacks(&outputs) {
        problems.at(field, message);
    }
    outputs
}

fn read_one(t: &mut Table<'_>, state_dir: &Path, problems: &mut Problems) -> Option<OutputConfig> {
    let kind = reader::registry_type(t, "output", REGISTRY, |e| e.name, LEFT_OUT, problems);
    let name = t.get::<String>("name", problems);
    let selector = Selector {
        include: t
            .get_or::<Vec<String>>("include", Vec::new(), problems)
            .iter()
            .map(|p| Pattern::new(p))
            .collect(),
        exclude: t
            .get_or::<Vec<String>>("exclude", Vec::new(), problems)
            .iter()
            .map(|p| Pattern::new(p))
            .collect(),
    };
    let queue_size = t.number_in("queue_size", 10_000, 1, 10_000_000, problems) as usize;
    let batch_size = t.number_in("batch_size", 500, 1, 100_000, problems) as usize;
    let batch_timeout = t.duration_at_least(
        "batch_timeout",
        Duration::from_secs(1),
        Duration::ZERO,
        problems,
    );
    // Without a known type its keys cannot be told from typos: report only the type.
    let kind = kind?;
    let name = name.unwrap_or_else(|| kind.name.to_owned());
    let delivery = crate::delivery::config::read(t, &name, kind.name, state_dir, problems);
    let spec = (kind.read)(t, problems);
    t.finish(problems);
    if let (Some(spec), crate::delivery::config::Strategy::CarbonCh { replication, .. }) =
        (&spec, delivery.strategy)
    {
        if replication > spec.targets().len() {
            problems.at(
                t.as_field(),
                "replication is larger than the number of targets",
            );
        }
    }
    Some(OutputConfig {
        name,
        kind: kind.name,
        selector,
        queue_size,
        batch_size,
        batch_timeout,
        delivery,
        spec: spec?,
    })
}
