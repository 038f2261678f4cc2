//! The live metric catalogue: every metric the sources emitted, with its last value and time, the
//! source instance it came from, and its declaration (unit, description) from the source type.
//!
//! Each source thread records a whole collection under one lock. Per metric the catalogue keeps
//! only the name, the last value and time, and two pointers: one to what it shares with the other
//! metrics of its source instance ([`CatalogueSource`]) and one to its static [`MetricInfo`].
//!
//! A metric is *hidden* when it comes from a source of type `self` (the agent's own health); the
//! `hidden` flag of a query decides whether those are listed.
//!
//! Entries are forgotten when their source instance is removed (at a reload) and when a metric
//! has not been seen for [`FORGET_AFTER_INTERVALS`] of its source's intervals.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use crate::event::{Event, Kind, Metric};
use crate::pattern::Pattern;
use crate::sources::{MetricInfo, REGISTRY, SourceConfig, SourceType};

/// A metric not seen for this many intervals of its source is dropped from the catalogue.
pub const FORGET_AFTER_INTERVALS: u32 = 10;

/// The most metrics the catalogue holds (about 12 MB at most); new names beyond it are not
/// listed, and a warning says so once.
pub const MAX_METRICS: usize = 100_000;

/// The source type whose metrics are hidden unless a query asks for them.
pub const HIDDEN_TYPE: &str = "self";

/// How often [`Catalogue::prune`] does its work when not forced, in seconds.
const PRUNE_EVERY_SECS: u64 = 10;

/// What all metrics of one source instance share, kept once per instance.
#[derive(Debug, Clone)]
pub struct CatalogueSource {
    /// The instance name.
    pub name: String,
    /// The source type, with its metric declarations.
    pub kind: &'static SourceType,
    /// The prefix put before its service names (empty for none).
    pub prefix: String,
    /// Time between collections.
    pub interval: Duration,
    /// The time to live of its events.
    pub ttl: Duration,
    /// The tags on its events.
    pub tags: Vec<String>,
    /// The host on its events.
    pub host: String,
    /// The attributes on its events.
    pub attributes: BTreeMap<String, String>,
}

impl CatalogueSource {
    /// The catalogue's view of a configured source instance.
    pub fn of(config: &SourceConfig) -> CatalogueSource {
        CatalogueSource {
            name: config.name.clone(),
            kind: config.source_type(),
            prefix: config.template.prefix.clone(),
            interval: config.interval,
            ttl: config.template.ttl,
            tags: config.template.tags.clone(),
            host: config.template.host.clone(),
            attributes: config.template.attributes.clone(),
        }
    }

    /// True for the metrics of the agent's own health, listed only on request.
    pub fn hidden(&self) -> bool {
        self.kind.name == HIDDEN_TYPE
    }

    /// The declaration `service` (as emitted, with the prefix) matches, if any.
    pub fn info_for(&self, service: &str) -> Option<&'static MetricInfo> {
        let name = if self.prefix.is_empty() {
            service
        } else {
            service
                .strip_prefix(self.prefix.as_str())?
                .strip_prefix('.')?
        };
        self.kind
            .metrics
            .iter()
            .find(|info| declared_pattern(info.name).matches(name))
    }
}

/// The declaration `service` matches, for a reader that does not know which source emitted it
/// (an output): the name, or what follows any run of its leading parts (a source's `prefix`),
/// must match a declaration that begins with a fixed part. Declarations that begin with a
/// placeholder (the `exec` source's `<name>`) would match any name and are left out.
pub fn declaration(service: &str) -> Option<&'static MetricInfo> {
    let mut name = Some(service);
    while let Some(n) = name {
        let first = n.split('.').next().unwrap_or(n);
        let found = REGISTRY
            .iter()
            .flat_map(|t| t.metrics)
            .filter(|info| info.name.split('.').next() == Some(first))
            .find(|info| declared_pattern(info.name).matches(n));
        if found.is_some() {
            return found;
        }
        name = n.split_once('.').map(|(_, rest)| rest);
    }
    None
}

/// A declared name such as `cpu.<core>.user` as a glob: each `<placeholder>` matches one or more
/// characters (dots included: an interface may be called `eth0.100`).
fn declared_pattern(declared: &str) -> Pattern {
    let mut glob = String::with_capacity(declared.len());
    let mut rest = declared;
    while let Some(open) = rest.find('<') {
        let Some(close) = rest[open..].find('>') else {
            break;
        };
        glob.push_str(&rest[..open]);
        glob.push_str("?*");
        rest = &rest[open + close + 1..];
    }
    glob.push_str(rest);
    Pattern::new(&glob)
}

/// The last observation of one metric.
#[derive(Debug)]
struct Entry {
    source: Arc<CatalogueSource>,
    info: Option<&'static MetricInfo>,
    value: Option<Metric>,
    time_us: i64,
}

/// One metric as a query returns it.
#[derive(Debug, Clone)]
pub struct Row {
    /// The service name, as emitted.
    pub name: String,
    /// The source instance it came from.
    pub source: Arc<CatalogueSource>,
    /// Its declaration, when the name matches one of its source type.
    pub info: Option<&'static MetricInfo>,
    /// The last value (none for a state-only event).
    pub value: Option<Metric>,
    /// When the last value was measured, in microseconds since the Unix epoch.
    pub time_us: i64,
}

/// Which names a query selects before the other filters apply.
#[derive(Debug, Clone, Default)]
pub enum Select {
    /// Every name.
    #[default]
    All,
    /// Names in which the regex finds a match (anchor it with `^…$` for whole names).
    Regex(regex_lite::Regex),
    /// Exactly these names.
    Names(Vec<String>),
}

/// A catalogue query: every filter given must pass.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// The regex or exact names.
    pub select: Select,
    /// Names starting with this.
    pub prefix: Option<String>,
    /// Names containing this.
    pub infix: Option<String>,
    /// At most this many rows, the first by name.
    pub limit: Option<usize>,
    /// Whether hidden metrics (those of the `self` source) are listed.
    pub hidden: bool,
}

impl Query {
    fn accepts(&self, name: &str, source: &CatalogueSource) -> bool {
        (self.hidden || !source.hidden())
            && self.prefix.as_deref().is_none_or(|p| name.starts_with(p))
            && self.infix.as_deref().is_none_or(|i| name.contains(i))
            && match &self.select {
                Select::All | Select::Names(_) => true,
                Select::Regex(re) => re.is_match(name),
            }
    }
}

/// What a query found.
#[derive(Debug, Clone)]
pub struct Found {
    /// The matching metrics, sorted by name, at most the query's limit.
    pub rows: Vec<Row>,
    /// How many matched before the limit.
    pub matched: usize,
}

/// The catalogue of a running agent.
#[derive(Debug, Default)]
pub struct Catalogue {
    entries: Mutex<HashMap<Box<str>, Entry>>,
    last_prune_secs: AtomicU64,
    warned_full: AtomicBool,
}

impl Catalogue {
    fn lock(&self) -> MutexGuard<'_, HashMap<Box<str>, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the metric events of one collection of `source`; log lines are not metrics and
    /// are left out.
    pub fn record(&self, source: &Arc<CatalogueSource>, events: &[Event]) {
        let mut entries = self.lock();
        for event in events.iter().filter(|e| e.kind == Kind::Metric) {
            let time_us = event.unix_micros();
            if let Some(entry) = entries.get_mut(event.service.as_str()) {
                if !Arc::ptr_eq(&entry.source, source) {
                    entry.info = source.info_for(&event.service);
                    entry.source = source.clone();
                }
                entry.value = event.metric;
                entry.time_us = time_us;
                continue;
            }
            if entries.len() >= MAX_METRICS {
                if !self.warned_full.swap(true, Ordering::Relaxed) {
                    log::warn!(target: "control", "the metric catalogue is full ({MAX_METRICS} names): new names are not listed");
                }
                continue;
            }
            entries.insert(
                event.service.as_str().into(),
                Entry {
                    source: source.clone(),
                    info: source.info_for(&event.service),
                    value: event.metric,
                    time_us,
                },
            );
        }
    }

    /// Forgets metrics of sources not in `live` and metrics not seen for
    /// [`FORGET_AFTER_INTERVALS`] intervals. Unless `force`d, does nothing if it ran in the last
    /// few seconds.
    pub fn prune(&self, live: &[&str], force: bool) {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let secs = now.as_secs();
        let last = self.last_prune_secs.load(Ordering::Relaxed);
        if !force && secs < last.saturating_add(PRUNE_EVERY_SECS) {
            return;
        }
        self.last_prune_secs.store(secs, Ordering::Relaxed);
        let now_us = now.as_micros() as i64;
        let mut entries = self.lock();
        entries.retain(|_, e| {
            let forget_us = (e.source.interval * FORGET_AFTER_INTERVALS).as_micros() as i64;
            live.contains(&e.source.name.as_str()) && now_us.saturating_sub(e.time_us) <= forget_us
        });
        if entries.len() < MAX_METRICS {
            self.warned_full.store(false, Ordering::Relaxed);
        }
    }

    /// How many metrics the catalogue holds.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no metric was recorded yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The metrics `query` selects, sorted by name, up to its limit.
    pub fn query(&self, query: &Query) -> Found {
        let entries = self.lock();
        let row = |name: &str, e: &Entry| Row {
            name: name.to_owned(),
            source: e.source.clone(),
            info: e.info,
            value: e.value,
            time_us: e.time_us,
        };
        let mut rows: Vec<Row> = match &query.select {
            Select::Names(names) => names
                .iter()
                .filter_map(|n| entries.get_key_value(n.as_str()))
                .filter(|(name, e)| query.accepts(name, &e.source))
                .map(|(name, e)| row(name, e))
                .collect(),
            _ => entries
                .iter()
                .filter(|(name, e)| query.accepts(name, &e.source))
                .map(|(name, e)| row(name, e))
                .collect(),
        };
        drop(entries);
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        rows.dedup_by(|a, b| a.name == b.name);
        let matched = rows.len();
        if let Some(limit) = query.limit {
            rows.truncate(limit);
        }
        Found { rows, matched }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procfs::Procfs;
    use crate::sources::runner::collect_once;
    use crate::sources::{REGISTRY, SourceContext, lookup};
    use crate::telemetry::Telemetry;

    fn source(name: &str, kind: &str, prefix: &str) -> Arc<CatalogueSource> {
        Arc::new(CatalogueSource {
            name: name.into(),
            kind: lookup(kind).unwrap(),
            prefix: prefix.into(),
            interval: Duration::from_secs(10),
            ttl: Duration::from_secs(20),
            tags: vec!["lab".into()],
            host: "h".into(),
            attributes: BTreeMap::new(),
        })
    }

    fn metric(service: &str, value: i64) -> Event {
        Event::new(service, "h").with_metric(value)
    }

    fn names(found: &Found) -> Vec<&str> {
        found.rows.iter().map(|r| r.name.as_str()).collect()
    }

    fn filled() -> Catalogue {
        let c = Catalogue::default();
        c.record(
            &source("cpu", "cpu", ""),
            &[
                metric("cpu.total.user", 1),
                metric("cpu.0.user", 2),
                metric("cpu.1.user", 3),
            ],
        );
        c.record(
            &source("edge", "load", "edge"),
            &[metric("edge.load.1", 4), metric("edge.load.5", 5)],
        );
        c.record(&source("self", "self", ""), &[metric("self.rss", 6)]);
        c
    }

    #[test]
    fn placeholders_match_one_or_more_characters() {
        let p = declared_pattern("cpu.<core>.user");
        assert!(p.matches("cpu.0.user"));
        assert!(p.matches("cpu.eth0.100.user"));
        assert!(!p.matches("cpu..user"));
        assert!(declared_pattern("load.1").matches("load.1"));
        assert!(!declared_pattern("load.1").matches("load.15"));
    }

    #[test]
    fn metrics_are_matched_to_their_declaration_past_the_prefix() {
        let c = filled();
        let found = c.query(&Query {
            hidden: true,
            ..Query::default()
        });
        assert_eq!(found.matched, 6);
        let load = found.rows.iter().find(|r| r.name == "edge.load.1").unwrap();
        assert_eq!(
            load.info.unwrap().description,
            "run-queue length averaged over 1 minute"
        );
        assert_eq!(load.value, Some(Metric::Int(4)));
        let user = found.rows.iter().find(|r| r.name == "cpu.0.user").unwrap();
        assert_eq!(user.info.unwrap().name, "cpu.<core>.<state>");
        assert_eq!(user.info.unwrap().unit, "percent");
    }

    #[test]
    fn an_output_finds_a_declaration_by_name_alone() {
        let unit = |s: &str| declaration(s).map(|i| i.unit);
        assert_eq!(unit("memory.used"), Some("bytes"));
        assert_eq!(
            unit("interface.eth0.100.rx_bytes"),
            Some("bytes_per_second")
        );
        assert_eq!(unit("site.a.memory.percent_used"), Some("percent"));
        assert_eq!(declaration("load.1").unwrap().name, "load.1");
        // Only `exec`'s catch-all `<name>` would match these: no unit is better than a wrong one.
        assert_eq!(unit("my.check"), None);
        assert_eq!(unit("memory.nonesuch"), None);
    }

    #[test]
    fn filters_combine() {
        let c = filled();
        let q = |q: Query| names(&c.query(&q)).join(" ");
        assert_eq!(
            q(Query::default()),
            "cpu.0.user cpu.1.user cpu.total.user edge.load.1 edge.load.5"
        );
        assert_eq!(
            q(Query {
                hidden: true,
                prefix: Some("self.".into()),
                ..Query::default()
            }),
            "self.rss"
        );
        assert_eq!(
            q(Query {
                select: Select::Regex(regex_lite::Regex::new(r"^cpu\.\d+\.").unwrap()),
                ..Query::default()
            }),
            "cpu.0.user cpu.1.user"
        );
        assert_eq!(
            q(Query {
                select: Select::Names(vec![
                    "edge.load.5".into(),
                    "nope".into(),
                    "self.rss".into(),
                    "edge.load.5".into()
                ]),
                ..Query::default()
            }),
            "edge.load.5"
        );
        assert_eq!(
            q(Query {
                infix: Some(".load.".into()),
                prefix: Some("edge".into()),
                ..Query::default()
            }),
            "edge.load.1 edge.load.5"
        );
        let limited = c.query(&Query {
            limit: Some(2),
            ..Query::default()
        });
        assert_eq!(names(&limited), vec!["cpu.0.user", "cpu.1.user"]);
        assert_eq!(limited.matched, 5);
    }

    #[test]
    fn a_new_value_replaces_the_old_and_log_lines_are_left_out() {
        let c = filled();
        let src = source("cpu", "cpu", "");
        let mut log = Event::new("cpu.note", "h");
        log.kind = Kind::Log;
        c.record(&src, &[metric("cpu.0.user", 42), log]);
        let found = c.query(&Query {
            select: Select::Names(vec!["cpu.0.user".into(), "cpu.note".into()]),
            ..Query::default()
        });
        assert_eq!(found.rows.len(), 1);
        assert_eq!(found.rows[0].value, Some(Metric::Int(42)));
        assert!(Arc::ptr_eq(&found.rows[0].source, &src));
    }

    #[test]
    fn removed_sources_and_stale_metrics_are_forgotten() {
        let c = filled();
        c.prune(&["cpu", "edge", "self"], true);
        assert_eq!(c.len(), 6);
        c.prune(&["cpu", "self"], true);
        assert_eq!(c.len(), 4);
        let old = metric("cpu.2.user", 1).with_time(SystemTime::now() - Duration::from_secs(101));
        c.record(&source("cpu", "cpu", ""), &[old]);
        assert_eq!(c.len(), 5);
        c.prune(&["cpu", "self"], true);
        assert_eq!(c.len(), 4);
    }

    /// Every metric the built-in sources emit from the fixture tree is declared with a unit and a
    /// description, so the catalogue and the docs never list an unexplained name.
    #[test]
    fn every_emitted_metric_is_declared() {
        // Every source in the build that reads only the fixture tree: not df (its statvfs would
        // read this machine's disks), nor those that need a command, a path or a peer.
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/openwrt");
        let needs_more = ["df", "exec", "watch", "http", "tcp", "tail", "mqtt"];
        let sources: Vec<String> = REGISTRY
            .iter()
            .filter(|t| !needs_more.contains(&t.name))
            .map(|t| format!(r#"{{"type": "{}"}}"#, t.name))
            .collect();
        let config = crate::config::parse(
            "t.json",
            &format!(
                r#"{{"agent": {{"host_root": "{root}"}}, "sources": [{}], "outputs": [{{"type": "stdout"}}]}}"#,
                sources.join(", ")
            ),
        )
        .unwrap();
        let telemetry = Arc::new(Telemetry::default());
        telemetry.set(
            vec![Arc::new(crate::telemetry::SourceStats::new("s"))],
            vec![Arc::new(crate::telemetry::OutputStats::new("o"))],
        );
        let ctx = SourceContext::new(
            Procfs::new(root),
            telemetry,
            crate::supervisor::Supervisor::stopped(),
            Arc::new(crate::cache::Cache::in_memory()),
        );
        let mut seen = 0;
        for s in &config.sources {
            let meta = CatalogueSource::of(s);
            let mut built = s.spec.build(&ctx.for_source(s));
            for _ in 0..2 {
                let (events, _) = collect_once(built.as_mut(), s);
                for e in events {
                    seen += 1;
                    assert!(
                        meta.info_for(&e.service).is_some(),
                        "{} emits the undeclared metric {}",
                        s.kind,
                        e.service
                    );
                }
            }
        }
        assert!(seen > 10, "only {seen} events were emitted");
        for t in REGISTRY {
            for m in t.metrics {
                assert!(
                    !m.description.is_empty(),
                    "{}: {} has no description",
                    t.name,
                    m.name
                );
            }
        }
    }
}
