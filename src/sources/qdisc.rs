//! `qdisc`: the counters of every queue discipline (SQM's cake, fq_codel, htb, …) per interface,
//! over rtnetlink as `tc -s qdisc show` and collectd's netlink plugin read them: bytes, packets,
//! drops, overlimits and requeues as rates, backlog and queue length as they are now.
//!
//! Interfaces are named from a link dump over the same socket family, taken again only when a
//! qdisc sits on an interface not yet named or the names are a minute old (an interface can be
//! renamed only while it is down), as collectd's plugin names them from its own link dump.
//!
//! A kernel whose rtnetlink refuses the dump reports nothing, said once.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::naming::push_segment;
use super::{Build, Emitter, MetricInfo, Settings, Source, SourceContext, SourceError, SourceType};
use crate::aggregate::Rates;
use crate::cache::lock;
use crate::config::reader::{Problems, Table};
use crate::netlink::NetlinkError;
use crate::netlink::link::Links;
use crate::netlink::qdisc::{Qdisc, Qdiscs};
use crate::pattern::Selector;

/// How long interface names are trusted before a link dump takes them again.
const NAMES_KEPT: Duration = Duration::from_secs(60);

/// The registry entry.
pub const TYPE: SourceType = SourceType {
    name: "qdisc",
    description: "bytes, packets, drops, overlimits and backlog of each queue discipline",
    needs_two_samples: true,
    metrics: &[
        MetricInfo {
            name: "qdisc.<interface>.<qdisc>.bytes",
            unit: "per_second",
            description: "bytes sent by the qdisc (`<qdisc>` is its kind and major handle, such as `fq_codel-8001`)",
        },
        MetricInfo {
            name: "qdisc.<interface>.<qdisc>.packets",
            unit: "per_second",
            description: "packets sent",
        },
        MetricInfo {
            name: "qdisc.<interface>.<qdisc>.drops",
            unit: "per_second",
            description: "packets dropped (queue full, or dropped by the AQM)",
        },
        MetricInfo {
            name: "qdisc.<interface>.<qdisc>.overlimits",
            unit: "per_second",
            description: "times the qdisc was over its limit (shaped, delayed or marked)",
        },
        MetricInfo {
            name: "qdisc.<interface>.<qdisc>.requeues",
            unit: "per_second",
            description: "packets the driver handed back to be queued again",
        },
        MetricInfo {
            name: "qdisc.<interface>.<qdisc>.backlog",
            unit: "bytes",
            description: "bytes queued now",
        },
        MetricInfo {
            name: "qdisc.<interface>.<qdisc>.qlen",
            unit: "count",
            description: "packets queued now",
        },
    ],
    read: super::read::<QdiscSource>,
};

/// Settings of the `qdisc` source.
#[derive(Debug, Clone, PartialEq)]
pub struct QdiscSpec {
    /// Which interfaces, by name glob: `include` (default: all) minus `exclude` (default `lo`).
    pub select: Selector,
}

impl Settings for QdiscSpec {
    fn read(t: &mut Table<'_>, problems: &mut Problems) -> Option<QdiscSpec> {
        let include: Vec<String> = t.get_or("include", Vec::new(), problems);
        let exclude = t.get_or("exclude", vec!["lo".to_owned()], problems);
        Some(QdiscSpec {
            select: Selector::from_lists(&include, &exclude),
        })
    }
}

impl Build for QdiscSource {
    type Settings = QdiscSpec;
    const NEVER_WAITS: bool = true;

    fn build(spec: &QdiscSpec, ctx: &SourceContext) -> QdiscSource {
        QdiscSource {
            select: spec.select.clone(),
            rates: ctx.rates(),
            target: super::log_target(&ctx.instance),
            qdiscs: None,
            links: None,
            told: false,
            list: Vec::new(),
            names: BTreeMap::new(),
            named_at: None,
            name: String::new(),
        }
    }
}

struct QdiscSource {
    select: Selector,
    rates: Arc<Mutex<Rates>>,
    target: String,
    /// The rtnetlink socket, opened at the first collection and kept.
    qdiscs: Option<Qdiscs>,
    /// The rtnetlink socket that names interfaces, opened when first needed and kept.
    links: Option<Links>,
    /// Whether a kernel that refuses the dump was logged.
    told: bool,
    list: Vec<Qdisc>,
    /// Interface names by index.
    names: BTreeMap<u32, String>,
    /// When `names` was taken; `None` before the first link dump.
    named_at: Option<Instant>,
    /// A reused buffer for the service name.
    name: String,
}

impl Source for QdiscSource {
    fn collect(&mut self, emit: &mut Emitter<'_>) -> Result<(), SourceError> {
        self.list.clear();
        let list = &mut self.list;
        let listed = match &mut self.qdiscs {
            Some(q) => q.each(&mut |q| list.push(q)),
            None => Qdiscs::open().and_then(|mut q| {
                q.each(&mut |q| list.push(q))?;
                self.qdiscs = Some(q);
                Ok(())
            }),
        };
        match listed {
            Err(e) if e.is_unsupported() => {
                if !self.told {
                    log::info!(target: &self.target, "no queue disciplines to report ({e})");
                    self.told = true;
                }
                return Ok(());
            }
            Err(e) => {
                // A fresh socket next time: a half-read dump must not confuse the next one.
                self.qdiscs = None;
                return Err(SourceError::Netlink(e));
            }
            Ok(()) => {}
        }
        if self.names_needed(Instant::now())
            && let Err(e) = self.read_names()
        {
            self.links = None;
            return Err(SourceError::Netlink(e));
        }
        self.report(emit);
        Ok(())
    }
}

impl QdiscSource {
    /// Whether the names must be taken again: never taken, a minute old, or a qdisc listed on an
    /// interface they do not hold.
    fn names_needed(&self, now: Instant) -> bool {
        let fresh = self
            .named_at
            .is_some_and(|at| now.saturating_duration_since(at) < NAMES_KEPT);
        !fresh
            || self
                .list
                .iter()
                .any(|q| !self.names.contains_key(&q.ifindex))
    }

    /// Interface names by index, from a link dump.
    fn read_names(&mut self) -> Result<(), NetlinkError> {
        self.names.clear();
        let links = match &mut self.links {
            Some(links) => links,
            None => self.links.insert(Links::open()?),
        };
        let names = &mut self.names;
        links.each(&mut |link| {
            names.insert(link.index, link.name);
        })?;
        self.named_at = Some(Instant::now());
        Ok(())
    }

    /// Emits the qdiscs listed, on the interfaces selected.
    fn report(&mut self, emit: &mut Emitter<'_>) {
        let mut rates = lock(&self.rates);
        for q in &self.list {
            // `noqueue` queues nothing: it has nothing to count.
            if q.kind == "noqueue" {
                continue;
            }
            let Some(iface) = self.names.get(&q.ifindex) else {
                continue;
            };
            if !self.select.accepts(iface) {
                continue;
            }
            self.name.clear();
            self.name.push_str("qdisc.");
            push_segment(&mut self.name, iface);
            self.name.push('.');
            push_segment(&mut self.name, &q.kind);
            let _ = write!(self.name, "-{:x}.", q.handle >> 16);
            let stem = self.name.len();
            let counters = [
                ("bytes", q.bytes),
                ("packets", q.packets),
                ("drops", q.drops.into()),
                ("overlimits", q.overlimits.into()),
                ("requeues", q.requeues.into()),
            ];
            for (metric, value) in counters {
                self.name.truncate(stem);
                self.name.push_str(metric);
                emit.rate(&mut rates, &self.name, value);
            }
            for (metric, value) in [("backlog", q.backlog), ("qlen", q.qlen)] {
                self.name.truncate(stem);
                self.name.push_str(metric);
                emit.metric(&self.name, value);
            }
        }
        rates.end_round();
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{context, emitter, lines, read_config, render, template};
    use super::*;
    use crate::cache::Cache;
    use crate::netlink::qdisc::{RTM_NEWQDISC, parse};
    use crate::netlink::read_datagram;

    /// The qdiscs of `tests/fixtures/netlink/qdisc.bin`: index 2 (`eth0`) with `pfifo_fast`,
    /// index 3 (`wan`) with `htb` over `pfifo`.
    fn captured() -> Vec<Qdisc> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/netlink/qdisc.bin"
        );
        let mut list = Vec::new();
        read_datagram(&std::fs::read(path).unwrap(), RTM_NEWQDISC, 7, &mut |m| {
            list.push(parse(m).unwrap())
        })
        .unwrap();
        list
    }

    fn report_at(source: &mut QdiscSource, secs: u64) -> String {
        let template = template();
        let mut emit = emitter(&template, secs);
        source.report(&mut emit);
        render(&emit.into_events())
    }

    /// A source holding the captured qdiscs and the names of their interfaces.
    fn on_captured(spec: QdiscSpec) -> QdiscSource {
        let mut source =
            QdiscSource::build(&spec, &context("openwrt", &Arc::new(Cache::in_memory())));
        source.list = captured();
        source.names = BTreeMap::from([(2, "eth0".to_owned()), (3, "wan".to_owned())]);
        source.named_at = Some(Instant::now());
        source
    }

    #[test]
    fn counters_become_rates_and_queues_are_reported_as_they_are() {
        let spec = read_config(r#"{"exclude": ["eth*"]}"#, QdiscSpec::read).unwrap();
        let select = Selector::from_lists(&[], &["eth*".to_owned()]);
        assert_eq!(
            format!("{spec:?}"),
            format!(
                "{:?}",
                QdiscSpec {
                    select: select.clone()
                }
            )
        );
        let mut source = on_captured(QdiscSpec { select });
        assert_eq!(
            report_at(&mut source, 100),
            lines(
                "qdisc.wan.htb-1.backlog 5000
                 qdisc.wan.htb-1.qlen 5
                 qdisc.wan.pfifo-10.backlog 5000
                 qdisc.wan.pfifo-10.qlen 5"
            ),
            "one sample: no rate yet; eth0 is excluded"
        );
        for q in &mut source.list {
            q.bytes += 20_000;
            q.packets += 20;
            q.drops += 10;
            q.backlog = 0;
            q.qlen = 0;
        }
        source.list[1].overlimits += 40;
        assert_eq!(
            report_at(&mut source, 110),
            lines(
                "qdisc.wan.htb-1.bytes 2000
                 qdisc.wan.htb-1.packets 2
                 qdisc.wan.htb-1.drops 1
                 qdisc.wan.htb-1.overlimits 4
                 qdisc.wan.htb-1.requeues 0
                 qdisc.wan.htb-1.backlog 0
                 qdisc.wan.htb-1.qlen 0
                 qdisc.wan.pfifo-10.bytes 2000
                 qdisc.wan.pfifo-10.packets 2
                 qdisc.wan.pfifo-10.drops 1
                 qdisc.wan.pfifo-10.overlimits 0
                 qdisc.wan.pfifo-10.requeues 0
                 qdisc.wan.pfifo-10.backlog 0
                 qdisc.wan.pfifo-10.qlen 0"
            )
        );
    }

    #[test]
    fn qdiscs_without_a_known_interface_or_that_queue_nothing_are_left_out() {
        let mut source = on_captured(QdiscSpec {
            select: Selector::from_lists(&[], &[]),
        });
        source.list[0].kind = "noqueue".into();
        source.list[1].ifindex = 99;
        source.list.truncate(2);
        assert_eq!(report_at(&mut source, 100), "");
    }

    #[test]
    fn names_are_taken_again_when_a_minute_old_or_an_interface_is_not_named() {
        let mut source = on_captured(QdiscSpec {
            select: Selector::from_lists(&[], &[]),
        });
        let taken = source.named_at.unwrap();
        assert!(!source.names_needed(taken + Duration::from_secs(59)));
        assert!(source.names_needed(taken + NAMES_KEPT));
        source.list[1].ifindex = 99;
        assert!(source.names_needed(taken));
        source.named_at = None;
        source.list.clear();
        assert!(source.names_needed(taken), "never taken");
    }

    #[test]
    fn the_running_kernel_names_the_loopbacks_qdisc() {
        let spec = QdiscSpec {
            select: Selector::from_lists(&[], &[]),
        };
        let mut source =
            QdiscSource::build(&spec, &context("openwrt", &Arc::new(Cache::in_memory())));
        source.read_names().unwrap();
        assert_eq!(source.names.get(&1).map(String::as_str), Some("lo"));
    }
}
