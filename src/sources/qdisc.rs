//! `qdisc`: the counters of every queue discipline (SQM's cake, fq_codel, htb, …) per interface,
//! over rtnetlink as `tc -s qdisc show` and collectd's netlink plugin read them: bytes, packets,
//! drops, overlimits and requeues as rates, backlog and queue length as they are now.
//!
//! A kernel whose rtnetlink refuses the dump reports nothing, said once.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use super::naming::push_segment;
use super::{Build, Emitter, MetricInfo, Settings, Source, SourceContext, SourceError, SourceType};
use crate::aggregate::Rates;
use crate::cache::lock;
use crate::config::reader::{Problems, Table};
use crate::netlink::qdisc::{Qdisc, Qdiscs};
use crate::pattern::Selector;
use crate::procfs::Procfs;

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

    fn build(spec: &QdiscSpec, ctx: &SourceContext) -> QdiscSource {
        QdiscSource {
            select: spec.select.clone(),
            procfs: ctx.procfs.clone(),
            rates: ctx.rates(),
            target: super::log_target(&ctx.instance),
            qdiscs: None,
            told: false,
            list: Vec::new(),
            names: BTreeMap::new(),
            name: String::new(),
            buf: String::new(),
        }
    }
}

struct QdiscSource {
    select: Selector,
    procfs: Procfs,
    rates: Arc<Mutex<Rates>>,
    target: String,
    /// The rtnetlink socket, opened at the first collection and kept.
    qdiscs: Option<Qdiscs>,
    /// Whether a kernel that refuses the dump was logged.
    told: bool,
    list: Vec<Qdisc>,
    /// Interface names by index.
    names: BTreeMap<u32, String>,
    /// Reused buffers: a service name, a file's text.
    name: String,
    buf: String,
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
        self.read_names();
        self.report(emit);
        Ok(())
    }
}

impl QdiscSource {
    /// Interface names by index, from `/sys/class/net/<name>/ifindex`.
    fn read_names(&mut self) {
        self.names.clear();
        let Ok(dir) = std::fs::read_dir(self.procfs.path("sys/class/net")) else {
            return;
        };
        for entry in dir.flatten() {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let rel = format!("sys/class/net/{name}/ifindex");
            if self.procfs.read_into(&rel, &mut self.buf).is_ok()
                && let Ok(index) = self.buf.trim().parse()
            {
                self.names.insert(index, name);
            }
        }
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

    /// The qdiscs of `tests/fixtures/netlink/qdisc.bin`: index 2 (`eth0` in the OpenWrt fixture
    /// tree) with `pfifo_fast`, index 3 (`wan`) with `htb` over `pfifo`.
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
        source.read_names();
        source.report(&mut emit);
        render(&emit.into_events())
    }

    /// A source on the OpenWrt fixture tree, holding the captured qdiscs.
    fn on_captured(spec: QdiscSpec) -> QdiscSource {
        let mut source =
            QdiscSource::build(&spec, &context("openwrt", &Arc::new(Cache::in_memory())));
        source.list = captured();
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
}
