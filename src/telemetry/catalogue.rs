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

use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use crate::event::{Event, Kind, Metric};
use crate::pattern::Pattern;

/// A metric a source can emit: its name pattern, unit and meaning, for docs and the catalogue.
/// Each source type declares its own next to the code that emits them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricInfo {
    /// The service name, with `<placeholders>` for the parts that vary, such as `cpu.<core>.user`.
    pub name: &'static str,
    /// The unit: `percent`, `bytes`, `count`, `seconds`, `per_second`, or empty for a plain number.
    pub unit: &'static str,
    /// One line saying what it means.
    pub description: &'static str,
}

/// A metric not seen for this many intervals of its source is dropped from the catalogue.
pub const FORGET_AFTER_INTERVALS: u32 = 10;

/// The most metrics the catalogue holds (about 12 MB at most); new names beyond it are not
/// listed, and a warning says so once.
pub const MAX_METRICS: usize = 100_000;

/// The source type whose metrics are hidden unless a query asks for them.
pub const HIDDEN_TYPE: &str = "self";

/// How often [`Catalogue::prune`] does its work when not forced, in seconds.
const PRUNE_EVERY_SECS: u64 = 10;

/// [`Catalogue::walk`] copies out at least this many rows at a time.
const WALK_CHUNK_MIN: usize = 64;
/// [`Catalogue::walk`] copies out rows in at most this many chunks (fewer for fewer metrics), so
/// what it holds beyond the catalogue stays a fraction of it.
const WALK_CHUNKS: usize = 8;

/// What all metrics of one source instance share, kept once per instance.
#[derive(Debug, Clone)]
pub struct CatalogueSource {
    /// The instance name.
    pub name: String,
    /// The source type's config name.
    pub kind: &'static str,
    /// Every metric the source type declares.
    pub metrics: &'static [MetricInfo],
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
    /// True for the metrics of the agent's own health, listed only on request.
    pub fn hidden(&self) -> bool {
        self.kind == HIDDEN_TYPE
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
        self.metrics
            .iter()
            .find(|info| Pattern::declared(info.name).matches(name))
    }
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

/// One metric as the catalogue holds it, borrowed for as long as [`Catalogue::each_held`] holds
/// the lock.
#[derive(Debug, Clone, Copy)]
pub struct HeldRow<'a> {
    /// The service name, as emitted.
    pub name: &'a str,
    /// The source instance it came from.
    pub source: &'a CatalogueSource,
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

    /// The metrics `query` selects, sorted by name, up to its limit, all in memory: for small
    /// answers. [`Catalogue::walk`] gives them without holding them all.
    pub fn query(&self, query: &Query) -> Found {
        let mut rows = Vec::new();
        let matched = self.walk(query, |row| {
            rows.push(row);
            Ok::<(), std::convert::Infallible>(())
        });
        let Ok(matched) = matched;
        Found { rows, matched }
    }

    /// Hands every metric, hidden ones included and in no particular order, to `each` under the
    /// lock, and returns what `each` returns: for a reader that needs every row at once and little
    /// of each (the Prometheus exposition), and keeps the lock no longer than it takes to read them.
    /// Sources that record meanwhile wait.
    pub fn each_held<R>(&self, each: impl FnOnce(&mut dyn Iterator<Item = HeldRow<'_>>) -> R) -> R {
        let entries = self.lock();
        let mut rows = entries.iter().map(|(name, e)| HeldRow {
            name,
            source: &e.source,
            info: e.info,
            value: e.value,
            time_us: e.time_us,
        });
        each(&mut rows)
    }

    /// Calls `each` with the metrics `query` selects, in order of name, up to its limit, and
    /// returns how many matched before the limit; stops at the first error of `each`.
    ///
    /// Rows are copied out a chunk at a time (an eighth of the catalogue, or fewer rows), each
    /// under the lock and handed over after it is released: a slow reader never holds up the
    /// sources, and the rows held at once stay a fraction of the catalogue. Metrics recorded
    /// while a walk goes on are seen if their name is still ahead.
    pub fn walk<E>(
        &self,
        query: &Query,
        mut each: impl FnMut(Row) -> Result<(), E>,
    ) -> Result<usize, E> {
        let names = match &query.select {
            Select::Names(names) => {
                let mut names: Vec<&str> = names.iter().map(String::as_str).collect();
                names.sort_unstable();
                names.dedup();
                Some(names)
            }
            _ => None,
        };
        let limit = query.limit.unwrap_or(usize::MAX);
        let mut matched = None;
        let mut handed = 0;
        let mut after: Option<Box<str>> = None;
        while handed < limit {
            let (chunk, full) = self.chunk(query, names.as_deref(), after.as_deref(), &mut matched);
            after = chunk.last().map(|row| row.name.as_str().into());
            for row in chunk.into_iter().take(limit - handed) {
                each(row)?;
                handed += 1;
            }
            if !full {
                break;
            }
        }
        Ok(matched.unwrap_or(handed))
    }

    /// The next rows of a walk: the first by name after `after`, up to the chunk's size, and
    /// whether the chunk is full (more may follow). Counts every match into `matched` when it is
    /// still `None`.
    fn chunk(
        &self,
        query: &Query,
        names: Option<&[&str]>,
        after: Option<&str>,
        matched: &mut Option<usize>,
    ) -> (Vec<Row>, bool) {
        let entries = self.lock();
        let size = (entries.len() / WALK_CHUNKS).max(WALK_CHUNK_MIN);
        // The `size` smallest names past `after`, the largest on top to be pushed out.
        let mut smallest: BinaryHeap<&str> = BinaryHeap::with_capacity(size.min(entries.len()));
        let mut count = 0;
        let candidates: Box<dyn Iterator<Item = (&Box<str>, &Entry)>> = match names {
            Some(names) => Box::new(names.iter().filter_map(|n| entries.get_key_value(*n))),
            None => Box::new(entries.iter()),
        };
        for (name, entry) in candidates {
            if !query.accepts(name, &entry.source) {
                continue;
            }
            count += 1;
            if after.is_some_and(|a| **name <= *a) {
                continue;
            }
            if smallest.len() == size {
                // Full: most names are past its largest, and one comparison says so.
                if smallest.peek().is_some_and(|largest| **name >= **largest) {
                    continue;
                }
                smallest.pop();
            }
            smallest.push(name);
        }
        matched.get_or_insert(count);
        let full = smallest.len() == size;
        let rows = smallest
            .into_sorted_vec()
            .into_iter()
            .filter_map(|name| {
                let e = entries.get(name)?;
                Some(Row {
                    name: name.to_owned(),
                    source: e.source.clone(),
                    info: e.info,
                    value: e.value,
                    time_us: e.time_us,
                })
            })
            .collect();
        (rows, full)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Declarations as a source type makes them.
    const DECLARED: &[MetricInfo] = &[
        MetricInfo {
            name: "cpu.<core>.<state>",
            unit: "percent",
            description: "share of time a core spent in a state",
        },
        MetricInfo {
            name: "load.1",
            unit: "",
            description: "run-queue length averaged over 1 minute",
        },
    ];

    fn source(name: &str, kind: &'static str, prefix: &str) -> Arc<CatalogueSource> {
        Arc::new(CatalogueSource {
            name: name.into(),
            kind,
            metrics: DECLARED,
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

    /// A catalogue of `n` metrics named `m.<i>` with the number zero-padded, so name order is
    /// number order.
    fn numbered(n: usize) -> Catalogue {
        let c = Catalogue::default();
        let events: Vec<Event> = (0..n)
            .map(|i| metric(&format!("m.{i:06}"), i as i64))
            .collect();
        c.record(&source("m", "exec", ""), &events);
        c
    }

    #[test]
    fn a_walk_over_many_chunks_hands_every_row_once_in_name_order() {
        let n = WALK_CHUNKS * WALK_CHUNK_MIN * 2 + 7;
        let c = numbered(n);
        let mut seen = Vec::new();
        let matched = c.walk(&Query::default(), |row| {
            seen.push(row.value);
            Ok::<(), ()>(())
        });
        assert_eq!(matched, Ok(n));
        let expected: Vec<Option<Metric>> = (0..n).map(|i| Some(Metric::Int(i as i64))).collect();
        assert!(
            seen == expected,
            "{} rows, not in order or not each once",
            seen.len()
        );
    }

    #[test]
    fn a_walk_stops_at_the_limit_or_the_first_error_and_counts_every_match() {
        // Chunks of 375: the limit and the error both fall past the first chunks.
        let c = numbered(3000);
        let count = |query: &Query| {
            let mut handed = 0;
            let matched = c.walk(query, |_| {
                handed += 1;
                Ok::<(), ()>(())
            });
            (matched, handed)
        };
        // m.001000 to m.001099 contain ".0010": 100 matches, fewer than the limit.
        let few = Query {
            infix: Some(".0010".into()),
            limit: Some(1500),
            ..Query::default()
        };
        assert_eq!(count(&few), (Ok(100), 100));
        let many = Query {
            limit: Some(1500),
            ..Query::default()
        };
        assert_eq!(count(&many), (Ok(3000), 1500));
        let mut handed = 0;
        let stopped = c.walk(&Query::default(), |_| {
            handed += 1;
            if handed == 1100 {
                Err("reader gone")
            } else {
                Ok(())
            }
        });
        assert_eq!((stopped, handed), (Err("reader gone"), 1100));
    }

    #[test]
    fn a_walk_by_names_hands_each_named_metric_once() {
        let c = numbered(2100);
        let query = Query {
            select: Select::Names(vec![
                "m.000005".into(),
                "m.002000".into(),
                "m.000005".into(),
                "nope".into(),
            ]),
            ..Query::default()
        };
        let found = c.query(&query);
        assert_eq!(names(&found), ["m.000005", "m.002000"]);
        assert_eq!(found.matched, 2);
    }

    #[test]
    fn a_metric_recorded_during_a_walk_is_handed_when_its_name_is_still_ahead() {
        let c = numbered(3000);
        let late = source("late", "exec", "");
        let mut names = Vec::new();
        let _ = c.walk(&Query::default(), |row| {
            if names.len() == 10 {
                c.record(&late, &[metric("m.000001x", 1), metric("zz", 2)]);
            }
            names.push(row.name);
            Ok::<(), ()>(())
        });
        assert!(names.iter().any(|n| n == "zz"), "zz was ahead of the walk");
        assert!(
            !names.iter().any(|n| n == "m.000001x"),
            "m.000001x was behind it"
        );
        assert!(
            names.windows(2).all(|w| w[0] < w[1]),
            "in name order, each once"
        );
    }
}
