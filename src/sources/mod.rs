//! Sources: what pipit measures. One file per source type, and the registry that maps a config
//! `type` to its reader.
//!
//! A source instance runs on a thread of its own ([`runner`]), or takes turns with others on a
//! shared one ([`host`] for those that only ask the kernel, [`checks`] for check runs), and knows
//! nothing of outputs: each tick it is asked to [`Source::collect`] into an [`Emitter`], which
//! stamps the instance's prefix, host, tags and ttl on every event.

pub mod bound;
pub mod checks;
pub mod conntrack;
pub mod cpu;
pub mod df;
pub mod dhcp_leases;
pub mod disk;
pub mod emitter;
#[cfg(feature = "exec")]
pub mod exec;
pub mod host;
#[cfg(feature = "http")]
pub mod http;
pub mod interface;
pub mod load;
pub mod memory;
#[cfg(feature = "mqtt")]
pub mod mqtt;
pub mod naming;
pub mod nftables;
pub mod openvpn;
pub mod ping;
pub mod processes;
pub mod qdisc;
pub mod runner;
pub mod self_;
pub mod shared;
pub mod swap;
#[cfg(feature = "watch")]
pub mod tail;
pub mod tcp;
pub mod tcpconns;
#[cfg(test)]
mod testing;
pub mod thermal;
pub mod uptime;
#[cfg(feature = "watch")]
pub mod watch;
pub mod wifi;
pub mod wireguard;
pub mod wireless;

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::Receiver;

pub use crate::telemetry::catalogue::MetricInfo;
pub use emitter::{Emitter, Template};

use crate::aggregate::Rates;
use crate::cache::Cache;
use crate::config::agent::{AgentConfig, read_hostname};
use crate::config::reader::{self, Field, Problems, Table};
use crate::netlink::NetlinkError;
use crate::procfs::{Procfs, ReadError};
pub use crate::supervisor::RunResult;
use crate::supervisor::{Reply, SpawnError, Supervisor};
use crate::telemetry::Telemetry;
use crate::telemetry::catalogue::CatalogueSource;

/// The log target of source instance `name`: `src.<name>` (filter with `RUST_LOG=src.<name>=debug`).
pub fn log_target(name: &str) -> String {
    format!("src.{name}")
}

/// One source instance, ready to collect.
pub trait Source: Send {
    /// Collects one round of events into `emit`.
    ///
    /// An error means the round failed as a whole; it is logged (once while it repeats) and the
    /// next tick tries again. Events emitted before the error are still sent.
    fn collect(&mut self, emit: &mut Emitter<'_>) -> Result<(), SourceError>;

    /// Called once the events of the last collection were offered to the router: `accepted` is
    /// false when its queue was full and they were dropped (and counted). A source that owes
    /// someone an acknowledgement (an MQTT broker) gives it only for accepted events.
    fn handed_over(&mut self, _accepted: bool) {}

    /// For a source whose collection is one check run (an `exec` check): asks the supervisor for
    /// the run without waiting, its end to be sent to `reply`, so that such sources share one
    /// thread ([`checks`]), and one channel for their answers, instead of each waiting on its own.
    /// `None` for the others.
    fn start_check(&mut self, _reply: Reply) -> Option<Result<(), SpawnError>> {
        None
    }

    /// Emits what the run asked for by [`Source::start_check`] came to: the rest of the
    /// collection.
    fn finish_check(
        &mut self,
        _run: RunResult,
        _emit: &mut Emitter<'_>,
    ) -> Result<(), SourceError> {
        Ok(())
    }
}

/// How a source type is built: from its settings ([`Build::Settings`], `()` for a type that has
/// none) and the context. The one shape every source type has; [`read`] turns it into the
/// registry's reader.
pub trait Build: Source + Sized + 'static {
    /// The type's own config keys, read and validated.
    type Settings: Settings;

    /// True for a type whose collection never waits on anything but the running kernel (reads of
    /// `/proc` and `/sys`, netlink requests) and the agent's own counters, which answer at once:
    /// its instances take turns on the one host thread ([`host`]) instead of each holding a
    /// thread. A type that may wait (on the network, a file system, a command) keeps the default.
    const NEVER_WAITS: bool = false;

    /// Builds a fresh instance (again after a panic, with the same settings).
    fn build(settings: &Self::Settings, ctx: &SourceContext) -> Self;
}

/// Which thread runs an instance's collections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// A thread of its own, for a collection that may wait.
    OwnThread,
    /// The checks thread ([`checks`]), for a collection that is a check run
    /// ([`Settings::shares_a_thread`]).
    Checks,
    /// The host thread ([`host`]), for a type that never waits ([`Build::NEVER_WAITS`]).
    Host,
}

/// A source type's own config keys, read once into a typed value.
pub trait Settings: fmt::Debug + Send + Sync + Sized + 'static {
    /// Reads the keys from the type's config section; `None` (with the problems recorded, each
    /// with its key path) when they are wrong.
    fn read(t: &mut Table<'_>, problems: &mut Problems) -> Option<Self>;

    /// The longest one collection may take by design, for a source that bounds its own waits (a
    /// check with a timeout); the hang timeout is raised above it. `None` for most sources.
    fn longest_collection(&self) -> Option<Duration> {
        None
    }

    /// True when many instances starting at once would compete (for the supervisor's check slots,
    /// say): the first collection then comes at a point of the interval fixed by a hash of the
    /// instance's name ([`crate::schedule::spread`]) rather than at once.
    fn spreads_first_run(&self) -> bool {
        false
    }

    /// True for a source whose instances share one thread ([`checks`]) rather than each holding
    /// its own: its collection is [`Source::start_check`] and [`Source::finish_check`], and
    /// never blocks.
    fn shares_a_thread(&self) -> bool {
        false
    }

    /// Checks the settings against the instance's interval, for a source whose timing depends on
    /// it (requests spread over the interval, say); the error says which keys to change. Most
    /// sources fit any interval.
    fn check_interval(&self, _interval: Duration) -> Result<(), String> {
        Ok(())
    }

    /// The stack of an instance's thread, for a source of which there may be hundreds and whose
    /// deepest collection is measured; `None` (most sources) for the default of 2 MiB. It bounds
    /// the address space a thread reserves, not the memory it uses: only the pages a thread has
    /// touched are resident.
    fn stack_size(&self) -> Option<usize> {
        None
    }
}

/// The settings of a source type that has no keys of its own.
impl Settings for () {
    fn read(_: &mut Table<'_>, _: &mut Problems) -> Option<()> {
        Some(())
    }
}

/// The registry's reader of source type `S`: its [`SourceType::read`] is `read::<S>`.
pub fn read<S: Build>(t: &mut Table<'_>, problems: &mut Problems) -> Option<Arc<dyn SourceSpec>> {
    let settings = S::Settings::read(t, problems)?;
    Some(Arc::new(Configured::<S> { settings }))
}

/// Source type `S` with its settings read: what [`read`] hands the config.
struct Configured<S: Build> {
    settings: S::Settings,
}

impl<S: Build> fmt::Debug for Configured<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.settings.fmt(f)
    }
}

impl<S: Build> SourceSpec for Configured<S> {
    fn build(&self, ctx: &SourceContext) -> Box<dyn Source> {
        Box::new(S::build(&self.settings, ctx))
    }

    fn longest_collection(&self) -> Option<Duration> {
        self.settings.longest_collection()
    }

    fn spreads_first_run(&self) -> bool {
        self.settings.spreads_first_run()
    }

    fn check_interval(&self, interval: Duration) -> Result<(), String> {
        self.settings.check_interval(interval)
    }

    fn placement(&self) -> Placement {
        if self.settings.shares_a_thread() {
            Placement::Checks
        } else if S::NEVER_WAITS {
            Placement::Host
        } else {
            Placement::OwnThread
        }
    }

    fn stack_size(&self) -> Option<usize> {
        self.settings.stack_size()
    }
}

/// A source type with its settings, as the config holds it: builds (and after a panic, rebuilds)
/// the source. [`read`] makes one from a [`Build`] type; only tests write their own.
pub trait SourceSpec: Send + Sync + fmt::Debug {
    /// Builds a fresh instance.
    fn build(&self, ctx: &SourceContext) -> Box<dyn Source>;

    /// See [`Settings::longest_collection`].
    fn longest_collection(&self) -> Option<Duration> {
        None
    }

    /// See [`Settings::spreads_first_run`].
    fn spreads_first_run(&self) -> bool {
        false
    }

    /// See [`Settings::check_interval`].
    fn check_interval(&self, _interval: Duration) -> Result<(), String> {
        Ok(())
    }

    /// Which thread runs the instance's collections: see [`Settings::shares_a_thread`] and
    /// [`Build::NEVER_WAITS`].
    fn placement(&self) -> Placement {
        Placement::OwnThread
    }

    /// See [`Settings::stack_size`].
    fn stack_size(&self) -> Option<usize> {
        None
    }
}

/// What a source may use besides its own config.
#[derive(Debug, Clone)]
pub struct SourceContext {
    /// Reads `/proc` and `/sys` under the configured host root.
    pub procfs: Procfs,
    /// The agent's own counters, for the `self` source.
    pub telemetry: Arc<Telemetry>,
    /// Runs child processes, for the `exec` source.
    pub supervisor: Supervisor,
    /// The persistent cache that keeps counter samples across a restart.
    pub cache: Arc<Cache>,
    /// The name of the instance being built; set by [`SourceContext::for_source`].
    pub instance: String,
    /// The interval of the instance being built; set by [`SourceContext::for_source`].
    pub interval: Duration,
    /// Disconnected when the instance is asked to stop or is replaced, so that a collection
    /// that waits long (a round of pings) can wait on it and return early; it never fires
    /// outside a running agent (`pipit once`, tests).
    pub stopping: Receiver<()>,
    /// The thread that runs the check runs ([`Placement::Checks`]), started when the first of
    /// them is.
    pub checks: shared::SharedThread,
    /// The thread that runs the instances that never wait ([`Placement::Host`]), started when
    /// the first of them is.
    pub host_thread: shared::SharedThread,
    /// The host name on the instance's events: its `hostname` key, by default `agent.hostname`
    /// (empty before any instance is known).
    pub hostname: String,
}

impl SourceContext {
    /// A context for the agent as a whole, before any instance is known.
    pub fn new(
        procfs: Procfs,
        telemetry: Arc<Telemetry>,
        supervisor: Supervisor,
        cache: Arc<Cache>,
    ) -> SourceContext {
        SourceContext {
            procfs,
            telemetry,
            supervisor,
            cache,
            instance: String::new(),
            interval: Duration::ZERO,
            stopping: crossbeam_channel::never(),
            checks: checks::thread(),
            host_thread: host::thread(),
            hostname: String::new(),
        }
    }

    /// The context of one instance.
    pub fn for_source(&self, config: &SourceConfig) -> SourceContext {
        SourceContext {
            instance: config.name.clone(),
            interval: config.interval,
            hostname: config.template.host.clone(),
            ..self.clone()
        }
    }

    /// The instance's counter samples, from the cache: a sample counts for a rate while it is
    /// younger than two intervals.
    pub fn rates(&self) -> Arc<Mutex<Rates>> {
        self.cache.rates(&self.instance, self.interval * 2)
    }
}

/// Why a collection failed. The runner logs it under `collection failed: ` (once while it
/// repeats) and tries again at the next tick; what to do is said for each kind.
#[derive(Debug)]
#[non_exhaustive]
pub enum SourceError {
    /// A file the source reads (under `/proc` or `/sys`, a status or leases file) could not be
    /// read. A kernel without the feature has no such file; otherwise check the path and that
    /// pipit's user may read it.
    Read {
        /// The full path, under the host root.
        path: PathBuf,
        /// What opening or reading it answered.
        source: io::Error,
    },
    /// A file or answer did not have the shape the source reads: an unusual kernel, or a file
    /// written by another program than the one the source expects. The text says what was
    /// expected; please report it with the file.
    Malformed {
        /// What was read: a path such as `/proc/stat`.
        what: String,
        /// What the source looks for there.
        expected: &'static str,
        /// The text it found, when it is short enough to show.
        found: Option<String>,
    },
    /// A netlink request to the kernel failed; the next collection opens a fresh socket.
    Netlink(NetlinkError),
    /// The kernel refused a netlink request to a process without `CAP_NET_ADMIN`: run pipit as
    /// root (on OpenWrt, `option user 'root'` in the agent section).
    NotPermitted {
        /// What was refused and what to do, for the log.
        why: &'static str,
        /// The kernel's answer.
        source: NetlinkError,
    },
    /// The supervisor did not run the source's command (it could not be started, the run was
    /// skipped, the supervisor is stopping); the text says which and what to change.
    Command(SpawnError),
    /// The command a source follows has ended or could not start; the supervisor starts it again
    /// after its backoff, and the text says how it ended.
    CommandDown(String),
    /// What the source needs could not be set up (ICMP sockets, TLS files, the connection's
    /// thread); the text says what, and the source tries again only once rebuilt.
    Setup(String),
    /// A request the source makes (a watched URL) failed; the text names the URL and why.
    Request(String),
    /// A thread the source needed could not be started: the box is short of memory or threads.
    Thread {
        /// Which thread.
        what: &'static str,
        /// What the system answered.
        source: io::Error,
    },
    /// Another I/O error (a directory listing, a socket): the text says which.
    Io(io::Error),
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceError::Read { path, source } => write!(f, "{}: {source}", path.display()),
            SourceError::Malformed {
                what,
                expected,
                found: Some(found),
            } => write!(f, "unexpected {what}: {found:?}; expected {expected}"),
            SourceError::Malformed {
                what,
                expected,
                found: None,
            } => write!(f, "{what}: expected {expected}"),
            SourceError::Netlink(e) => write!(f, "{e}"),
            SourceError::NotPermitted { why, .. } => f.write_str(why),
            SourceError::Command(e @ SpawnError::Skipped(_)) => write!(f, "run {e}"),
            SourceError::Command(e) => write!(f, "{e}"),
            SourceError::CommandDown(why) | SourceError::Setup(why) | SourceError::Request(why) => {
                f.write_str(why)
            }
            SourceError::Thread { what, source } => write!(f, "cannot start {what}: {source}"),
            SourceError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for SourceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SourceError::Read { source, .. } | SourceError::Thread { source, .. } => Some(source),
            SourceError::Netlink(e) | SourceError::NotPermitted { source: e, .. } => Some(e),
            SourceError::Command(e) => Some(e),
            SourceError::Io(e) => Some(e),
            SourceError::Malformed { .. }
            | SourceError::CommandDown(_)
            | SourceError::Setup(_)
            | SourceError::Request(_) => None,
        }
    }
}

impl SourceError {
    /// `what` did not hold `expected`; `found` is the text, shown when short.
    pub fn malformed(what: impl Into<String>, expected: &'static str, found: &str) -> SourceError {
        let found = found.trim();
        SourceError::Malformed {
            what: what.into(),
            expected,
            found: (!found.is_empty() && found.len() <= 200).then(|| found.to_owned()),
        }
    }

    /// `what` lacks `expected` (a line, a key), with no text worth showing.
    pub fn missing(what: impl Into<String>, expected: &'static str) -> SourceError {
        SourceError::Malformed {
            what: what.into(),
            expected,
            found: None,
        }
    }
}

impl From<ReadError> for SourceError {
    fn from(e: ReadError) -> SourceError {
        SourceError::Read {
            path: e.path,
            source: e.source,
        }
    }
}

impl From<io::Error> for SourceError {
    fn from(e: io::Error) -> SourceError {
        SourceError::Io(e)
    }
}

impl From<NetlinkError> for SourceError {
    fn from(e: NetlinkError) -> SourceError {
        SourceError::Netlink(e)
    }
}

impl From<SpawnError> for SourceError {
    fn from(e: SpawnError) -> SourceError {
        SourceError::Command(e)
    }
}

/// A source type in the registry.
#[derive(Debug, Clone, Copy)]
pub struct SourceType {
    /// The config `type`.
    pub name: &'static str,
    /// One line for `--help` and the docs.
    pub description: &'static str,
    /// Whether a value needs two samples (a rate); `pipit once` then collects twice.
    pub needs_two_samples: bool,
    /// Everything this type can emit.
    pub metrics: &'static [MetricInfo],
    /// Reads the type's own keys from its config section: [`read`] of the type's [`Build`].
    pub read: fn(&mut Table<'_>, &mut Problems) -> Option<Arc<dyn SourceSpec>>,
}

/// Every source type pipit has, by config `type`.
pub const REGISTRY: &[SourceType] = &[
    cpu::TYPE,
    load::TYPE,
    memory::TYPE,
    swap::TYPE,
    uptime::TYPE,
    processes::TYPE,
    interface::TYPE,
    df::TYPE,
    disk::TYPE,
    thermal::TYPE,
    wireless::TYPE,
    wifi::TYPE,
    wireguard::TYPE,
    openvpn::TYPE,
    conntrack::TYPE,
    dhcp_leases::TYPE,
    qdisc::TYPE,
    nftables::TYPE,
    tcpconns::TYPE,
    #[cfg(feature = "exec")]
    exec::TYPE,
    #[cfg(feature = "watch")]
    watch::TYPE,
    #[cfg(feature = "http")]
    http::TYPE,
    tcp::TYPE,
    ping::TYPE,
    #[cfg(feature = "watch")]
    tail::TYPE,
    #[cfg(feature = "mqtt")]
    mqtt::TYPE,
    self_::TYPE,
];

/// Source types this build leaves out, with the Cargo feature that has each.
pub const LEFT_OUT: &[(&str, &str)] = &[
    #[cfg(not(feature = "exec"))]
    ("exec", "exec"),
    #[cfg(not(feature = "watch"))]
    ("watch", "watch"),
    #[cfg(not(feature = "http"))]
    ("http", "http"),
    #[cfg(not(feature = "watch"))]
    ("tail", "watch"),
    #[cfg(not(feature = "mqtt"))]
    ("mqtt", "mqtt"),
];

/// Finds a source type by its config name.
pub fn lookup(name: &str) -> Option<&'static SourceType> {
    REGISTRY.iter().find(|t| t.name == name)
}

/// One configured source instance.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// The instance name, unique among sources; the `type` unless set.
    pub name: String,
    /// The config `type`.
    pub kind: &'static str,
    /// Time between collections.
    pub interval: Duration,
    /// How long one collection may run before the source is reported hung and restarted.
    pub timeout: Duration,
    /// What every event of this instance carries.
    pub template: Template,
    /// The type's own settings.
    pub spec: Arc<dyn SourceSpec>,
}

impl SourceConfig {
    /// The registry entry of this instance's type.
    pub fn source_type(&self) -> &'static SourceType {
        lookup(self.kind).expect("config only holds registered types")
    }

    /// The catalogue's view of this instance: what all its metrics share, and its type's
    /// declarations.
    pub fn catalogue_source(&self) -> CatalogueSource {
        let kind = self.source_type();
        CatalogueSource {
            name: self.name.clone(),
            kind: kind.name,
            metrics: kind.metrics,
            prefix: self.template.prefix.clone(),
            interval: self.interval,
            ttl: self.template.ttl,
            tags: self.template.tags.clone(),
            host: self.template.host.clone(),
            attributes: self.template.attributes.clone(),
        }
    }

    /// A text equal for two configs exactly when they would run the same source; a reload keeps
    /// an instance whose fingerprint did not change running, with its state.
    pub fn fingerprint(&self) -> String {
        format!(
            "{}|{:?}|{:?}|{:?}|{:?}",
            self.kind, self.interval, self.timeout, self.template, self.spec
        )
    }
}

/// Reads the `sources` array.
pub fn read_all(
    field: &Field<'_>,
    agent: &AgentConfig,
    problems: &mut Problems,
) -> Vec<SourceConfig> {
    reader::named_list(field, problems, |t, p| read_one(t, agent, p), |c| &c.name)
}

fn read_one(
    t: &mut Table<'_>,
    agent: &AgentConfig,
    problems: &mut Problems,
) -> Option<SourceConfig> {
    let kind = reader::registry_type(t, "source", REGISTRY, |e| e.name, LEFT_OUT, problems);
    let name = t.get::<String>("name", problems);
    let interval = t.duration_at_least(
        "interval",
        agent.interval,
        Duration::from_millis(10),
        problems,
    );
    let timeout = t.duration_at_least(
        "timeout",
        (interval * 3).max(Duration::from_secs(30)),
        Duration::from_millis(10),
        problems,
    );
    let template = Template {
        prefix: t.get_or("prefix", String::new(), problems),
        host: read_hostname(t, problems).unwrap_or_else(|| agent.hostname.clone()),
        tags: t.get_or("tags", Vec::new(), problems),
        ttl: t.duration_at_least("ttl", interval * 2, Duration::ZERO, problems),
        attributes: t.get_or("attributes", BTreeMap::new(), problems),
    };
    // Without a known type its keys cannot be told from typos: report only the type.
    let kind = kind?;
    let spec = (kind.read)(t, problems);
    let name = name.unwrap_or_else(|| kind.name.to_owned());
    t.finish(problems);
    let spec = spec?;
    if let Err(message) = spec.check_interval(interval) {
        problems.at(t.as_field(), message);
        return None;
    }
    let timeout = spec
        .longest_collection()
        .map_or(timeout, |longest| timeout.max(longest));
    Some(SourceConfig {
        name,
        kind: kind.name,
        interval,
        timeout,
        template,
        spec,
    })
}
