//! Outputs: where events go. One file (or folder) per output type, and the registry that maps a
//! config `type` to its reader.
//!
//! An output is an encoder plus a transport; it knows nothing of sources. Queueing, batching and
//! the writer thread around it are shared by every output ([`crate::delivery`]).

pub mod graphite;
#[cfg(feature = "http")]
pub mod influx;
pub mod riemann;
pub mod stdout;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::config::reader::{self, Field, Problems, Table};
use crate::event::Event;
use crate::pattern::{Pattern, Selector};

/// The log target of output `name`: `out.<name>` (filter with `RUST_LOG=out.<name>=debug`).
pub fn log_target(name: &str) -> String {
    format!("out.{name}")
}

/// A built output, owned by its writer thread.
pub trait Output: Send {
    /// Delivers a batch; on error none of it counts as delivered.
    fn write(&mut self, batch: &[Event]) -> Result<(), OutputError>;

    /// True when the last `write` failed because the backend refused the batch itself as bad (an
    /// HTTP 4xx, say): the batch is then counted as rejected and dropped, never retried.
    fn rejected(&self) -> bool {
        false
    }

    /// How many events of the last write the output left out because it cannot encode them (a
    /// metric-only output given an event without a metric, a name it cannot send); they count as
    /// dropped, not delivered. Reading resets it.
    fn take_unencodable(&mut self) -> u64 {
        0
    }
}

/// An output's validated config, able to build the output.
pub trait OutputSpec: Send + Sync + fmt::Debug {
    /// Builds the output (opening what it writes to).
    fn build(&self) -> Result<Box<dyn Output>, OutputError>;

    /// A few words for `pipit check`, such as `graphite lines to stdout`.
    fn describe(&self) -> String;
}

/// Why a delivery failed, in words for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputError(pub String);

impl fmt::Display for OutputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<std::io::Error> for OutputError {
    fn from(e: std::io::Error) -> OutputError {
        OutputError(e.to_string())
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
    riemann::TYPE,
    #[cfg(feature = "http")]
    influx::TYPE,
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
    /// The type's own settings.
    pub spec: Arc<dyn OutputSpec>,
}

impl OutputConfig {
    /// A text equal for two configs exactly when they would run the same output. A reload keeps an
    /// unchanged output running; a changed one's new writer takes over its queue.
    pub fn fingerprint(&self) -> String {
        format!(
            "{}|{:?}|{}|{}|{:?}|{:?}",
            self.kind,
            self.selector,
            self.queue_size,
            self.batch_size,
            self.batch_timeout,
            self.spec
        )
    }
}

/// Reads the `outputs` array.
pub fn read_all(field: &Field<'_>, problems: &mut Problems) -> Vec<OutputConfig> {
    reader::named_list(field, problems, read_one, |c| &c.name)
}

fn read_one(t: &mut Table<'_>, problems: &mut Problems) -> Option<OutputConfig> {
    let kind = reader::registry_type(t, REGISTRY, |e| e.name, problems);
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
    let spec = (kind.read)(t, problems);
    t.finish(problems);
    let name = name.unwrap_or_else(|| kind.name.to_owned());
    Some(OutputConfig {
        name,
        kind: kind.name,
        selector,
        queue_size,
        batch_size,
        batch_timeout,
        spec: spec?,
    })
}
