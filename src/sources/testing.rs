//! Helpers for the sources' fixture tests: build a source on a fixture tree, collect at a given
//! time, and render the events as `service value` lines to compare with the expected ones.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{Build, Emitter, Source, SourceContext, Template};
use crate::cache::Cache;
use crate::config::reader::{Field, Problems, Table};
use crate::procfs::Procfs;
use crate::supervisor::Supervisor;
use crate::telemetry::Telemetry;

/// The fixture tree `name` under `tests/fixtures`.
pub fn fixture(name: &str) -> Procfs {
    Procfs::new(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
}

/// A context on the fixture tree `root` for an instance `test` with a 10 s interval.
pub fn context(root: &str, cache: &Arc<Cache>) -> SourceContext {
    let ctx = SourceContext::new(
        fixture(root),
        Arc::new(Telemetry::default()),
        Supervisor::stopped(),
        cache.clone(),
    );
    SourceContext {
        instance: "test".into(),
        interval: Duration::from_secs(10),
        ..ctx
    }
}

/// The template of the fixture tests: host `h`, nothing else.
pub fn template() -> Template {
    Template {
        prefix: String::new(),
        host: "h".into(),
        tags: Vec::new(),
        ttl: Duration::from_secs(20),
        attributes: Default::default(),
    }
}

/// An emitter stamping `template` at `secs` after the epoch.
pub fn emitter(template: &Template, secs: u64) -> Emitter<'_> {
    Emitter::new(template, SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// Collects `source` once at `secs` after the epoch and renders what it emitted.
pub fn collect_with(source: &mut dyn Source, secs: u64) -> String {
    let template = template();
    let mut emit = emitter(&template, secs);
    if let Err(e) = source.collect(&mut emit) {
        panic!("collection failed: {e}");
    }
    render(&emit.into_events())
}

/// Builds a fresh source `S` with `settings` on the fixture tree `root` (sharing counter samples
/// through `cache`, as a restarted instance would) and collects it once at `secs`.
pub fn collect_at<S: Build>(
    settings: &S::Settings,
    root: &str,
    cache: &Arc<Cache>,
    secs: u64,
) -> String {
    collect_with(&mut S::build(settings, &context(root, cache)), secs)
}

/// Collects a fresh source `S` with `settings` once on the fixture tree `root`.
pub fn collect<S: Build>(settings: &S::Settings, root: &str) -> String {
    collect_at::<S>(settings, root, &Arc::new(Cache::in_memory()), 100)
}

/// Reads a source's config section from `json` with `read`, which must find nothing wrong.
pub fn read_config<T>(json: &str, read: impl FnOnce(&mut Table<'_>, &mut Problems) -> T) -> T {
    let doc = crate::config::json::parse(json).unwrap();
    let mut problems = Problems::new("test.json");
    let mut table = Field::root(&doc).table(&mut problems).unwrap();
    let value = read(&mut table, &mut problems);
    table.finish(&mut problems);
    assert!(problems.is_empty(), "{:?}", problems.into_errors());
    value
}

/// One `service value` line per event; a float is rounded to 6 decimals.
pub fn render(events: &[crate::Event]) -> String {
    let mut out = String::new();
    for e in events {
        let value = match e.metric {
            Some(crate::Metric::Float(v)) => format!("{}", (v * 1e6).round() / 1e6),
            Some(m) => m.to_string(),
            None => "-".into(),
        };
        out += &format!("{} {value}\n", e.service);
    }
    out
}

/// `expected` with its lines trimmed of indentation, for comparing with [`render`].
pub fn lines(expected: &str) -> String {
    expected
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn the_docs_list_every_source_and_metric_with_its_unit() {
    // Every source type is documented in one of the Markdown files under docs/.
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/docs");
    let mut docs = String::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            docs += &std::fs::read_to_string(path).unwrap();
        }
    }
    for t in super::REGISTRY.iter().filter(|t| t.name != "self") {
        let heading = |l: &&str| {
            l.starts_with('#')
                && (l.ends_with(&format!(" {}", t.name)) || l.contains(&format!("`{}`", t.name)))
        };
        assert!(
            docs.lines().any(|l| heading(&l)),
            "docs/ has no heading naming {}",
            t.name
        );
        for m in t.metrics {
            let rows: Vec<&str> = docs
                .lines()
                .filter(|l| l.starts_with(&format!("| `{}`", m.name)))
                .collect();
            assert!(!rows.is_empty(), "docs/ has no table row for {}", m.name);
            // An empty unit is an empty cell, written `| |` or `|  |`.
            let unit = format!("| {} ", m.unit);
            let cell = |r: &&str| r.contains(&unit) || (m.unit.is_empty() && r.contains("| |"));
            assert!(
                rows.iter().any(cell),
                "{}: the docs give another unit than {:?}",
                m.name,
                m.unit
            );
        }
    }
}

/// Every metric the built-in sources emit from the fixture tree is declared with a unit and a
/// description, so the catalogue and the docs never list an unexplained name.
#[test]
fn every_emitted_metric_is_declared() {
    // Every source in the build that reads only the fixture tree: not df (its statvfs would
    // read this machine's disks), nor those that need a command, a path or a peer (ping's
    // metrics are checked against its declaration in tests/ping.rs).
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/openwrt");
    let needs_more = ["df", "exec", "watch", "http", "tcp", "ping", "tail", "mqtt"];
    let sources: Vec<String> = super::REGISTRY
        .iter()
        .filter(|t| !needs_more.contains(&t.name))
        .map(|t| format!(r#"{{"type": "{}"}}"#, t.name))
        .collect();
    let config = crate::config_file::parse(
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
        Supervisor::stopped(),
        Arc::new(Cache::in_memory()),
    );
    let mut seen = 0;
    for s in &config.sources {
        let meta = s.catalogue_source();
        let mut built = s.spec.build(&ctx.for_source(s));
        for _ in 0..2 {
            let (events, _) = super::runner::collect_once(built.as_mut(), s);
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
    for t in super::REGISTRY {
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
