//! `openvpn`: the clients of each OpenVPN server and their traffic, from the status file OpenVPN
//! rewrites every minute (`--status FILE`; OpenWrt's init script passes
//! `/var/run/openvpn.<name>.status`), in any of its three formats (`--status-version 1`, 2 and
//! 3); for an OpenVPN client, its link's traffic.
//!
//! Clients are reported one by one up to `max_clients` per server (the rest are counted), or
//! only counted with `per_client: false`. A file not rewritten within `max_age` (OpenVPN stopped
//! and left it) is not reported, said once.

pub mod status;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::bound::Bound;
use super::naming::push_segment;
use super::{Build, Emitter, MetricInfo, Settings, Source, SourceContext, SourceError, SourceType};
use crate::aggregate::Rates;
use crate::cache::lock;
use crate::config::reader::{Problems, Table};
use crate::pattern::Pattern;
use crate::procfs::Procfs;
use status::{Connection, Status, parse};

/// The registry entry.
pub const TYPE: SourceType = SourceType {
    name: "openvpn",
    description: "clients of each OpenVPN server and their traffic, from OpenVPN's status file",
    needs_two_samples: true,
    metrics: &[
        MetricInfo {
            name: "openvpn.<instance>.clients",
            unit: "count",
            description: "clients connected to the server (each connection once)",
        },
        MetricInfo {
            name: "openvpn.<instance>.rx_bytes",
            unit: "bytes_per_second",
            description: "bytes received over the tunnels' links: of every client for a server, from the server for a client",
        },
        MetricInfo {
            name: "openvpn.<instance>.tx_bytes",
            unit: "bytes_per_second",
            description: "bytes sent over the tunnels' links",
        },
        MetricInfo {
            name: "openvpn.<instance>.clients_not_reported",
            unit: "count",
            description: "clients past max_clients, counted in `clients` but not reported one by one",
        },
        MetricInfo {
            name: "openvpn.<instance>.client.<client>.rx_bytes",
            unit: "bytes_per_second",
            description: "bytes received from the client (`<client>` is its certificate's common name, or its user name without one)",
        },
        MetricInfo {
            name: "openvpn.<instance>.client.<client>.tx_bytes",
            unit: "bytes_per_second",
            description: "bytes sent to the client",
        },
        MetricInfo {
            name: "openvpn.<instance>.client.<client>.connected",
            unit: "seconds",
            description: "time since the client connected (status versions 2 and 3)",
        },
    ],
    read: super::read::<Openvpn>,
};

/// Settings of the `openvpn` source.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenvpnSpec {
    /// The status files: absolute paths whose file name may hold `*` and `?`.
    pub status_files: Vec<String>,
    /// Whether clients are reported one by one (default), or only counted.
    pub per_client: bool,
    /// At most this many clients per server are reported one by one (default 64).
    pub max_clients: usize,
    /// A status file older than this is not reported (default 10 minutes).
    pub max_age: Duration,
}

impl Settings for OpenvpnSpec {
    fn read(t: &mut Table<'_>, problems: &mut Problems) -> Option<OpenvpnSpec> {
        let default_files = vec!["/var/run/openvpn.*.status".to_owned()];
        let field = t.field("status_files");
        let status_files: Vec<String> = field
            .as_ref()
            .and_then(|f| f.parse(problems))
            .unwrap_or(default_files);
        let wildcard_in_dir = |p: &String| {
            Path::new(p)
                .parent()
                .is_some_and(|d| d.to_string_lossy().contains(['*', '?']))
        };
        if let Some(field) = field
            && (status_files.is_empty()
                || status_files
                    .iter()
                    .any(|p| !p.starts_with('/') || p.ends_with('/') || wildcard_in_dir(p)))
        {
            problems.expected(
                &field,
                "a list of absolute file paths, with `*` or `?` only in the file name",
            );
        }
        let per_client = t.get_or("per_client", true, problems);
        let max_clients = t.number_in("max_clients", 64, 1, 10_000, problems) as usize;
        let max_age = t.duration_at_least(
            "max_age",
            Duration::from_secs(600),
            Duration::from_secs(1),
            problems,
        );
        Some(OpenvpnSpec {
            status_files,
            per_client,
            max_clients,
            max_age,
        })
    }
}

/// The instance name of a status file: its name without a leading `openvpn.` and a trailing
/// `.status` (OpenWrt's `openvpn.home.status` is `home`).
fn instance_of(file_name: &str) -> &str {
    let name = file_name.strip_prefix("openvpn.").unwrap_or(file_name);
    name.strip_suffix(".status")
        .filter(|n| !n.is_empty())
        .unwrap_or(name)
}

impl Build for Openvpn {
    type Settings = OpenvpnSpec;

    fn build(spec: &OpenvpnSpec, ctx: &SourceContext) -> Openvpn {
        let target = super::log_target(&ctx.instance);
        Openvpn {
            spec: spec.clone(),
            procfs: ctx.procfs.clone(),
            // Samples are timed by the file, rewritten once a minute by default: they must
            // outlive the source's own interval, up to max_age.
            rates: ctx
                .cache
                .rates(&ctx.instance, spec.max_age.max(ctx.interval * 2)),
            bound: Bound::new(spec.max_clients, "clients", "max_clients", &target),
            target,
            stale: BTreeSet::new(),
            written: BTreeMap::new(),
            memo: HashMap::new(),
            memo_before: HashMap::new(),
            buf: String::new(),
            name: String::new(),
        }
    }
}

struct Openvpn {
    spec: OpenvpnSpec,
    procfs: Procfs,
    rates: Arc<Mutex<Rates>>,
    bound: Bound,
    target: String,
    /// Status files found too old, each logged once until it is rewritten.
    stale: BTreeSet<String>,
    /// When each file read was last written.
    written: BTreeMap<String, SystemTime>,
    /// The rates of this collection, and of the one before: a file OpenVPN has not rewritten
    /// since gives the rates it gave then.
    memo: HashMap<String, f64>,
    memo_before: HashMap<String, f64>,
    buf: String,
    /// A reused service name.
    name: String,
}

/// How one file's counters are sampled.
struct Sample<'a> {
    rates: &'a mut Rates,
    /// When OpenVPN wrote the file: the counters' time.
    at: SystemTime,
    /// Whether it was written again since the last collection.
    changed: bool,
}

impl Source for Openvpn {
    fn collect(&mut self, emit: &mut Emitter<'_>) -> Result<(), SourceError> {
        let mut failed = None;
        let rates = Arc::clone(&self.rates);
        let mut rates = lock(&rates);
        self.memo_before = std::mem::take(&mut self.memo);
        let mut written = BTreeMap::new();
        for path in self.files() {
            match self.read_status(&path, emit.time()) {
                Ok(Some((status, at))) => {
                    let changed = self.written.get(&path) != Some(&at);
                    written.insert(path.clone(), at);
                    let file_name = Path::new(&path)
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let mut sample = Sample {
                        rates: &mut rates,
                        at,
                        changed,
                    };
                    self.report(emit, &mut sample, instance_of(&file_name), &status);
                }
                Ok(None) => {}
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        self.written = written;
        self.bound.end_round();
        rates.end_round();
        failed.map_or(Ok(()), Err)
    }
}

impl Openvpn {
    /// The status files there are now, each path once, in order.
    fn files(&self) -> Vec<String> {
        let mut files = BTreeSet::new();
        for configured in &self.spec.status_files {
            let path = Path::new(configured);
            let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
                continue;
            };
            let name = name.to_string_lossy();
            if !name.contains(['*', '?']) {
                if self.procfs.path(configured).is_file() {
                    files.insert(configured.clone());
                }
                continue;
            }
            let pattern = Pattern::new(&name);
            let Ok(entries) = std::fs::read_dir(self.procfs.path(&dir.to_string_lossy())) else {
                continue;
            };
            for entry in entries.flatten() {
                let file = entry.file_name().to_string_lossy().into_owned();
                if pattern.matches(&file) && entry.path().is_file() {
                    files.insert(dir.join(file).to_string_lossy().into_owned());
                }
            }
        }
        files.into_iter().collect()
    }

    /// The status in the file at `path`, with when it was written; `None` for a file not
    /// rewritten within `max_age` of `now` (logged once until it is).
    fn read_status(
        &mut self,
        path: &str,
        now: SystemTime,
    ) -> Result<Option<(Status, SystemTime)>, SourceError> {
        let written = std::fs::metadata(self.procfs.path(path))
            .and_then(|m| m.modified())
            .map_err(|source| SourceError::Read {
                path: self.procfs.path(path),
                source,
            })?;
        let age = now.duration_since(written).unwrap_or_default();
        if age > self.spec.max_age {
            if self.stale.insert(path.to_owned()) {
                log::info!(
                    target: &self.target,
                    "{path}: not rewritten for {} s, more than max_age: not reported until \
                     OpenVPN writes it again",
                    age.as_secs()
                );
            }
            return Ok(None);
        }
        self.stale.remove(path);
        self.procfs.read_into(path, &mut self.buf)?;
        let status = parse(&self.buf).ok_or_else(|| {
            SourceError::missing(
                path,
                "an OpenVPN status file of version 1, 2 or 3 (or a client's); check the \
                 `status` and `status-version` options of that OpenVPN",
            )
        })?;
        Ok(Some((status, written)))
    }

    /// The rate of the counter named `self.name`, now at `value`: since the file's previous
    /// writing, or as the last collection gave it when the file was not written since.
    fn rate(&mut self, sample: &mut Sample<'_>, value: u64) -> Option<f64> {
        let rate = sample.rates.rate(&self.name, value, sample.at);
        let rate = match sample.changed {
            true => rate,
            false => rate.or_else(|| self.memo_before.get(&self.name).copied()),
        };
        if let Some(r) = rate {
            self.memo.insert(self.name.clone(), r);
        }
        rate
    }

    /// Sets the service name to the stem's first `stem` bytes and `metric`.
    fn named(&mut self, stem: usize, metric: &str) -> &str {
        self.name.truncate(stem);
        self.name.push_str(metric);
        &self.name
    }

    /// Emits one file's status as the instance `instance`.
    fn report(
        &mut self,
        emit: &mut Emitter<'_>,
        sample: &mut Sample<'_>,
        instance: &str,
        status: &Status,
    ) {
        self.name.clear();
        self.name.push_str("openvpn.");
        push_segment(&mut self.name, instance);
        self.name.push('.');
        let stem = self.name.len();
        let connections = match status {
            Status::Client { rx_bytes, tx_bytes } => {
                for (metric, value) in [("rx_bytes", *rx_bytes), ("tx_bytes", *tx_bytes)] {
                    self.named(stem, metric);
                    if let Some(r) = self.rate(sample, value) {
                        emit.metric(&self.name, r);
                    }
                }
                return;
            }
            Status::Server(connections) => connections,
        };
        // Rates per connection (a client reconnecting starts new counters), summed per client
        // and for the server.
        let mut per_connection = Vec::with_capacity(connections.len());
        for c in connections {
            let mut both = [None, None];
            for (i, (direction, value)) in [("rx", c.rx_bytes), ("tx", c.tx_bytes)]
                .into_iter()
                .enumerate()
            {
                self.named(stem, "connection.");
                push_segment(&mut self.name, &c.real_address);
                self.name.push('.');
                self.name.push_str(direction);
                both[i] = self.rate(sample, value);
            }
            per_connection.push(both);
        }
        emit.metric(self.named(stem, "clients"), connections.len() as u64);
        let total = match connections.is_empty() {
            true => [Some(0.0), Some(0.0)],
            false => sum(per_connection.iter()),
        };
        for (metric, value) in ["rx_bytes", "tx_bytes"].into_iter().zip(total) {
            if let Some(v) = value {
                emit.metric(self.named(stem, metric), v);
            }
        }
        if !self.spec.per_client {
            return;
        }
        let mut names: Vec<String> = Vec::new();
        for c in connections {
            if !names.contains(&c.name) {
                names.push(c.name.clone());
            }
        }
        let chosen = self.bound.choose(instance, &names);
        let left_out = chosen.iter().filter(|c| !**c).count() as u64;
        emit.metric(self.named(stem, "clients_not_reported"), left_out);
        let now = emit
            .time()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        for (client, _) in names.iter().zip(&chosen).filter(|(_, c)| **c) {
            let mine: Vec<(&Connection, &[Option<f64>; 2])> = connections
                .iter()
                .zip(&per_connection)
                .filter(|(c, _)| &c.name == client)
                .collect();
            self.named(stem, "client.");
            push_segment(&mut self.name, client);
            self.name.push('.');
            let client_stem = self.name.len();
            let from = emit.len();
            let rates = sum(mine.iter().map(|(_, r)| *r));
            for (metric, value) in ["rx_bytes", "tx_bytes"].into_iter().zip(rates) {
                if let Some(v) = value {
                    emit.metric(self.named(client_stem, metric), v);
                }
            }
            if let Some(since) = mine.iter().filter_map(|(c, _)| c.connected_since).min() {
                emit.metric(
                    self.named(client_stem, "connected"),
                    now.saturating_sub(since),
                );
            }
            if let Some((first, _)) = mine.first() {
                emit.attribute_since(from, "real_address", &first.real_address);
                if !first.virtual_address.is_empty() {
                    emit.attribute_since(from, "virtual_address", &first.virtual_address);
                }
            }
        }
    }
}

/// The sums of received and sent rates; `None` for a direction where no rate is known yet.
fn sum<'a>(rates: impl Iterator<Item = &'a [Option<f64>; 2]>) -> [Option<f64>; 2] {
    rates.fold([None, None], |acc, r| {
        [0, 1].map(|i| match (acc[i], r[i]) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{collect_with, context, lines, read_config};
    use super::status::fixture;
    use super::*;
    use crate::cache::Cache;
    use std::fs;
    use std::path::PathBuf;

    #[test]
    fn instances_are_named_after_the_file() {
        assert_eq!(instance_of("openvpn.home.status"), "home");
        assert_eq!(instance_of("server.status"), "server");
        assert_eq!(instance_of("openvpn-status.log"), "openvpn-status.log");
        assert_eq!(instance_of("openvpn..status"), ".status");
    }

    /// A host root of its own holding status files, removed when dropped.
    struct Tree(PathBuf);

    impl Tree {
        fn new(tag: &str) -> Tree {
            let root =
                std::env::temp_dir().join(format!("pipit-openvpn-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&root);
            fs::create_dir_all(root.join("var/run")).unwrap();
            Tree(root)
        }

        /// Writes `text` as `/var/run/openvpn.<instance>.status`, written at `secs`.
        fn write(&self, instance: &str, text: &str, secs: u64) {
            let path = self.0.join(format!("var/run/openvpn.{instance}.status"));
            fs::write(&path, text).unwrap();
            let at = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
            fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(at)
                .unwrap();
        }

        fn source(&self, spec: &OpenvpnSpec) -> Openvpn {
            let ctx = SourceContext {
                procfs: Procfs::new(&self.0),
                ..context("openwrt", &Arc::new(Cache::in_memory()))
            };
            Openvpn::build(spec, &ctx)
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn spec(per_client: bool, max_clients: usize) -> OpenvpnSpec {
        OpenvpnSpec {
            status_files: vec!["/var/run/openvpn.*.status".into()],
            per_client,
            max_clients,
            max_age: Duration::from_secs(600),
        }
    }

    const T0: u64 = 1_796_637_600;

    #[test]
    fn every_file_once_then_rates_from_the_next_writing_kept_until_the_one_after() {
        let tree = Tree::new("rates");
        for instance in ["home", "office", "lab", "uplink"] {
            tree.write(instance, &fixture(instance), T0);
        }
        let mut source = tree.source(&spec(true, 64));
        assert_eq!(
            collect_with(&mut source, T0 + 5),
            lines(
                "openvpn.home.clients 2
                 openvpn.home.clients_not_reported 0
                 openvpn.lab.clients 3
                 openvpn.lab.clients_not_reported 0
                 openvpn.lab.client.carol.connected 7205
                 openvpn.lab.client.dave_example_com.connected 65
                 openvpn.office.clients 2
                 openvpn.office.clients_not_reported 0
                 openvpn.office.client.alice.connected 3605
                 openvpn.office.client.bob.connected 65"
            ),
            "one writing: no rate yet"
        );
        // A minute later OpenVPN writes the files again.
        let more = |text: String| {
            text.replace(",5000000,60000000,", ",5060000,60120000,")
                .replace(",700,800,", ",60700,800,")
                .replace("\t3000\t4000\t", "\t9000\t10000\t")
                .replace("\t100\t200\t", "\t700\t800\t")
                .replace("read bytes,3500", "read bytes,9500")
        };
        for instance in ["office", "lab", "uplink"] {
            tree.write(instance, &more(fixture(instance)), T0 + 60);
        }
        let second = collect_with(&mut source, T0 + 65);
        let expected = lines(
            "openvpn.home.clients 2
             openvpn.home.clients_not_reported 0
             openvpn.lab.clients 3
             openvpn.lab.rx_bytes 110
             openvpn.lab.tx_bytes 110
             openvpn.lab.clients_not_reported 0
             openvpn.lab.client.carol.rx_bytes 110
             openvpn.lab.client.carol.tx_bytes 110
             openvpn.lab.client.carol.connected 7265
             openvpn.lab.client.dave_example_com.rx_bytes 0
             openvpn.lab.client.dave_example_com.tx_bytes 0
             openvpn.lab.client.dave_example_com.connected 125
             openvpn.office.clients 2
             openvpn.office.rx_bytes 2000
             openvpn.office.tx_bytes 2000
             openvpn.office.clients_not_reported 0
             openvpn.office.client.alice.rx_bytes 1000
             openvpn.office.client.alice.tx_bytes 2000
             openvpn.office.client.alice.connected 3665
             openvpn.office.client.bob.rx_bytes 1000
             openvpn.office.client.bob.tx_bytes 0
             openvpn.office.client.bob.connected 125
             openvpn.uplink.rx_bytes 100
             openvpn.uplink.tx_bytes 0",
        );
        assert_eq!(second, expected, "home was not written again: no rate");
        // Not written again since: the same rates, not zeros.
        let third = collect_with(&mut source, T0 + 75);
        assert_eq!(
            third,
            expected
                .replace("carol.connected 7265", "carol.connected 7275")
                .replace(
                    "dave_example_com.connected 125",
                    "dave_example_com.connected 135"
                )
                .replace("alice.connected 3665", "alice.connected 3675")
                .replace("bob.connected 125", "bob.connected 135")
        );
    }

    #[test]
    fn attributes_name_where_a_client_connects_from() {
        let tree = Tree::new("attributes");
        tree.write("office", &fixture("office"), T0);
        let mut source = tree.source(&spec(true, 64));
        let template = super::super::testing::template();
        let mut emit = super::super::testing::emitter(&template, T0 + 5);
        source.collect(&mut emit).unwrap();
        let events = emit.into_events();
        let alice = events
            .iter()
            .find(|e| e.service == "openvpn.office.client.alice.connected")
            .unwrap();
        assert_eq!(alice.attributes["real_address"], "198.51.100.7:40001");
        assert_eq!(alice.attributes["virtual_address"], "10.9.0.2");
        assert!(!events[0].attributes.contains_key("real_address"));
    }

    #[test]
    fn past_max_clients_or_without_per_client_they_are_counted() {
        let tree = Tree::new("bound");
        tree.write("lab", &fixture("lab"), T0);
        let mut bounded = tree.source(&spec(true, 1));
        let got = collect_with(&mut bounded, T0 + 5);
        assert!(got.contains("openvpn.lab.clients 3\n"), "{got}");
        assert!(
            got.contains("openvpn.lab.clients_not_reported 1\n"),
            "{got}"
        );
        assert!(got.contains("carol") && !got.contains("dave"), "{got}");
        let mut counted = tree.source(&spec(false, 64));
        assert_eq!(
            collect_with(&mut counted, T0 + 5),
            "openvpn.lab.clients 3\n"
        );
    }

    #[test]
    fn a_file_not_rewritten_within_max_age_is_left_out_and_garbage_fails_the_round() {
        let tree = Tree::new("stale");
        tree.write("home", &fixture("home"), T0);
        tree.write("office", &fixture("office"), T0 + 700);
        let mut source = tree.source(&spec(false, 64));
        assert_eq!(
            collect_with(&mut source, T0 + 701),
            "openvpn.office.clients 2\n"
        );
        assert!(source.stale.contains("/var/run/openvpn.home.status"));
        tree.write("home", &fixture("home"), T0 + 702);
        assert_eq!(
            collect_with(&mut source, T0 + 703),
            "openvpn.home.clients 2\nopenvpn.office.clients 2\n"
        );
        assert!(source.stale.is_empty(), "fresh again");
        tree.write("home", "not a status file\n", T0 + 704);
        let template = super::super::testing::template();
        let mut emit = super::super::testing::emitter(&template, T0 + 705);
        let e = source.collect(&mut emit).unwrap_err();
        assert!(
            matches!(&e, SourceError::Malformed { what, .. } if what.ends_with("openvpn.home.status")),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .contains("openvpn.home.status: expected an OpenVPN status file"),
            "{e}"
        );
        assert_eq!(emit.len(), 1, "the other file is still reported");
    }

    #[test]
    fn the_config_keys_and_their_checks() {
        let given = read_config(
            r#"{"status_files": ["/tmp/openvpn-*.log"], "per_client": false, "max_clients": 2, "max_age": "2m"}"#,
            OpenvpnSpec::read,
        )
        .unwrap();
        let expected = OpenvpnSpec {
            status_files: vec!["/tmp/openvpn-*.log".into()],
            per_client: false,
            max_clients: 2,
            max_age: Duration::from_secs(120),
        };
        assert_eq!(format!("{given:?}"), format!("{expected:?}"));
        let defaults = read_config("{}", OpenvpnSpec::read).unwrap();
        assert_eq!(format!("{defaults:?}"), format!("{:?}", spec(true, 64)));
        for bad in [
            r#"["relative.status"]"#,
            r#"["/var/*/x.status"]"#,
            "[]",
            r#"["/var/run/"]"#,
        ] {
            let doc = crate::config::json::parse(&format!(r#"{{"status_files": {bad}}}"#)).unwrap();
            let mut problems = Problems::new("pipit.json");
            let mut t = crate::config::reader::Field::root(&doc)
                .table(&mut problems)
                .unwrap();
            OpenvpnSpec::read(&mut t, &mut problems);
            let errors = format!("{:?}", problems.into_errors());
            assert!(
                errors.contains("status_files") && errors.contains("absolute file paths"),
                "{bad}: {errors}"
            );
        }
    }
}
