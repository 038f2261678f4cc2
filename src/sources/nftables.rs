//! `nftables`: bytes and packets per second of nftables' named counters and of the rules that
//! count and carry a comment (fw4, OpenWrt's firewall, names its rules so), read over nfnetlink
//! as `nft list counters` and `nft list ruleset` read them, without running `nft`.
//!
//! A counter is named after its family, table and name; a rule after its family, table, chain and
//! comment, and the rules of one chain that share a comment (one firewall rule that `nft` wrote
//! as several) are summed. A rule without a comment is reported, as `handle-<handle>`, only when
//! asked: its handle changes whenever the firewall is reloaded. At most `max_counters` are
//! reported; the rest are counted in `nftables.left_out` and said once in the log.
//!
//! The kernel lets only a process with `CAP_NET_ADMIN` read the ruleset; a kernel without
//! nf_tables reports nothing, said once.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use super::naming::push_segment;
use super::{Build, Emitter, MetricInfo, Settings, Source, SourceContext, SourceError, SourceType};
use crate::aggregate::Rates;
use crate::cache::lock;
use crate::config::reader::{Problems, Table};
use crate::netlink::NetlinkError;
use crate::netlink::nftables::{Counter, FAMILIES, Nftables, family_name};
use crate::pattern::Selector;

/// The registry entry.
pub const TYPE: SourceType = SourceType {
    name: "nftables",
    description: "bytes and packets per second of nftables' named counters and commented rules",
    needs_two_samples: true,
    metrics: &[
        MetricInfo {
            name: "nftables.named.<family>.<table>.<name>.bytes",
            unit: "bytes_per_second",
            description: "bytes counted by the named counter `<name>`",
        },
        MetricInfo {
            name: "nftables.named.<family>.<table>.<name>.packets",
            unit: "per_second",
            description: "packets counted by the named counter `<name>`",
        },
        MetricInfo {
            name: "nftables.rule.<family>.<table>.<chain>.<name>.bytes",
            unit: "bytes_per_second",
            description: "bytes counted by the rules of `<chain>` whose comment is `<name>`",
        },
        MetricInfo {
            name: "nftables.rule.<family>.<table>.<chain>.<name>.packets",
            unit: "per_second",
            description: "packets counted by the rules of `<chain>` whose comment is `<name>`",
        },
        MetricInfo {
            name: "nftables.left_out",
            unit: "count",
            description: "counters not reported because `max_counters` were reported already",
        },
    ],
    read: super::read::<NftablesSource>,
};

/// Settings of the `nftables` source.
#[derive(Debug, Clone, PartialEq)]
pub struct NftablesSpec {
    /// The families reported, by number (`NFPROTO_*`); empty for all.
    pub families: Vec<u8>,
    /// The tables reported, by name glob: all unless `tables` names some.
    pub tables: Selector,
    /// Whether the counters of rules are reported (default), or only named counters.
    pub rules: bool,
    /// Whether rules without a comment are reported too (not by default).
    pub uncommented_rules: bool,
    /// The most counters reported (default 200).
    pub max_counters: usize,
}

impl Settings for NftablesSpec {
    fn read(t: &mut Table<'_>, problems: &mut Problems) -> Option<NftablesSpec> {
        let mut families = Vec::new();
        if let Some(field) = t.field("families") {
            for item in field.items(problems).unwrap_or_default() {
                match item
                    .as_str()
                    .and_then(|s| FAMILIES.iter().find(|(_, name)| *name == s))
                {
                    Some((number, _)) => families.push(*number),
                    None => {
                        let names: Vec<String> =
                            FAMILIES.iter().map(|(_, n)| format!("\"{n}\"")).collect();
                        problems.expected(&item, &format!("one of {}", names.join(", ")));
                    }
                }
            }
        }
        let tables: Vec<String> = t.get_or("tables", Vec::new(), problems);
        Some(NftablesSpec {
            families,
            tables: Selector::from_lists(&tables, &[]),
            rules: t.get_or("rules", true, problems),
            uncommented_rules: t.get_or("uncommented_rules", false, problems),
            max_counters: t.number_in("max_counters", 200, 1, 100_000, problems) as usize,
        })
    }
}

impl Build for NftablesSource {
    type Settings = NftablesSpec;
    const NEVER_WAITS: bool = true;

    fn build(spec: &NftablesSpec, ctx: &SourceContext) -> NftablesSource {
        NftablesSource {
            spec: spec.clone(),
            rates: ctx.rates(),
            target: super::log_target(&ctx.instance),
            nftables: None,
            told_unsupported: false,
            told_left_out: false,
            list: Vec::new(),
            totals: BTreeMap::new(),
            name: String::new(),
        }
    }
}

struct NftablesSource {
    spec: NftablesSpec,
    rates: Arc<Mutex<Rates>>,
    target: String,
    /// The nfnetlink socket, opened at the first collection and kept.
    nftables: Option<Nftables>,
    /// Whether a kernel without nf_tables was logged.
    told_unsupported: bool,
    /// Whether counters beyond `max_counters` were logged.
    told_left_out: bool,
    /// The counters of this collection, as the kernel listed them.
    list: Vec<Counter>,
    /// Bytes and packets by service stem (`nftables.rule.inet.fw4.input.Allow-Ping.`).
    totals: BTreeMap<String, (u64, u64)>,
    /// A reused buffer for service names.
    name: String,
}

impl Source for NftablesSource {
    fn collect(&mut self, emit: &mut Emitter<'_>) -> Result<(), SourceError> {
        self.list.clear();
        let list = &mut self.list;
        let rules = self.spec.rules;
        let listed = match &mut self.nftables {
            Some(n) => n.each(rules, &mut |c| list.push(c)),
            None => Nftables::open().and_then(|mut n| {
                n.each(rules, &mut |c| list.push(c))?;
                self.nftables = Some(n);
                Ok(())
            }),
        };
        match listed {
            Err(e) if e.is_unsupported() => {
                if !self.told_unsupported {
                    log::info!(target: &self.target, "no nftables counters to report ({e})");
                    self.told_unsupported = true;
                }
                Ok(())
            }
            Err(e @ NetlinkError::Refused(libc::EPERM)) => Err(SourceError::NotPermitted {
                why: "the kernel lets only a process with CAP_NET_ADMIN read nftables' counters: \
                      run pipit as root (on OpenWrt, option user 'root' in the agent section)",
                source: e,
            }),
            Err(e) => {
                // A fresh socket next time: a half-read dump must not confuse the next one.
                self.nftables = None;
                Err(SourceError::Netlink(e))
            }
            Ok(()) => {
                self.report(emit);
                Ok(())
            }
        }
    }
}

impl NftablesSource {
    /// Sums the counters listed by name, within `max_counters`, and emits their rates.
    fn report(&mut self, emit: &mut Emitter<'_>) {
        self.totals.clear();
        let mut left_out = 0u64;
        for c in &self.list {
            if !self.spec.stem(c, &mut self.name) {
                continue;
            }
            if let Some((bytes, packets)) = self.totals.get_mut(&self.name) {
                *bytes = bytes.wrapping_add(c.bytes);
                *packets = packets.wrapping_add(c.packets);
            } else if self.totals.len() < self.spec.max_counters {
                self.totals.insert(self.name.clone(), (c.bytes, c.packets));
            } else {
                left_out += 1;
            }
        }
        if left_out > 0 && !self.told_left_out {
            log::warn!(
                target: &self.target,
                "{left_out} counters beyond max_counters ({}) are left out: raise max_counters, \
                 or name fewer families or tables",
                self.spec.max_counters
            );
            self.told_left_out = true;
        }
        let mut rates = lock(&self.rates);
        for (stem, (bytes, packets)) in &self.totals {
            for (metric, value) in [("bytes", *bytes), ("packets", *packets)] {
                self.name.clear();
                self.name.push_str(stem);
                self.name.push_str(metric);
                emit.rate(&mut rates, &self.name, value);
            }
        }
        rates.end_round();
        emit.metric("nftables.left_out", left_out);
    }
}

impl NftablesSpec {
    /// Writes the service stem of counter `c` into `out` (such as
    /// `nftables.named.inet.fw4.lan_in.`); false when `c` is not reported.
    fn stem(&self, c: &Counter, out: &mut String) -> bool {
        let Some(family) = family_name(c.family) else {
            return false;
        };
        if !(self.families.is_empty() || self.families.contains(&c.family))
            || !self.tables.accepts(&c.table)
        {
            return false;
        }
        out.clear();
        out.push_str(match c.chain {
            None => "nftables.named.",
            Some(_) => "nftables.rule.",
        });
        out.push_str(family);
        out.push('.');
        push_segment(out, &c.table);
        out.push('.');
        if let Some(chain) = &c.chain {
            push_segment(out, chain);
            out.push('.');
        }
        match &c.name {
            Some(name) => push_segment(out, name),
            None if self.uncommented_rules => {
                let _ = write!(out, "handle-{}", c.handle);
            }
            None => return false,
        }
        out.push('.');
        true
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{context, emitter, lines, read_config, render, template};
    use super::*;
    use crate::cache::Cache;
    use crate::config_file;
    use crate::netlink::nftables::{NFT_MSG_NEWOBJ, NFT_MSG_NEWRULE, parse_object, parse_rule};
    use crate::netlink::read_datagram;

    /// The counters of the dumps captured in `tests/fixtures/netlink/` (see
    /// `capture_nftables.py` there): counter objects `inet pipit lo_udp` (384 bytes, 3 packets)
    /// and `ip6 other six` (nothing), then in `inet pipit input` the rules `Discard on lo` (384,
    /// 3), `!fw4: ping` (168, 2) and one without a comment, handle 7 (1188, 10).
    fn captured() -> Vec<Counter> {
        let mut list = Vec::new();
        for (file, kind, seq, parse) in [
            ("objects", NFT_MSG_NEWOBJ, 7, parse_object as fn(&[u8]) -> _),
            ("rules", NFT_MSG_NEWRULE, 8, parse_rule),
        ] {
            let path = format!(
                "{}/tests/fixtures/netlink/nftables_{file}.bin",
                env!("CARGO_MANIFEST_DIR")
            );
            read_datagram(&std::fs::read(path).unwrap(), kind, seq, &mut |m| {
                list.extend(parse(m).unwrap())
            })
            .unwrap();
        }
        list
    }

    /// A source of the config `json`, holding the captured counters.
    fn on_captured(json: &str) -> NftablesSource {
        let spec = read_config(json, NftablesSpec::read).unwrap();
        let mut source =
            NftablesSource::build(&spec, &context("minimal", &Arc::new(Cache::in_memory())));
        source.list = captured();
        source
    }

    fn report_at(source: &mut NftablesSource, secs: u64) -> String {
        let template = template();
        let mut emit = emitter(&template, secs);
        source.report(&mut emit);
        render(&emit.into_events())
    }

    /// Adds `bytes` and `packets` to every counter listed.
    fn count(source: &mut NftablesSource, bytes: u64, packets: u64) {
        for c in &mut source.list {
            c.bytes += bytes;
            c.packets += packets;
        }
    }

    #[test]
    fn named_counters_and_commented_rules_become_rates() {
        let mut source = on_captured("{}");
        assert_eq!(
            source.spec,
            NftablesSpec {
                families: Vec::new(),
                tables: Selector::default(),
                rules: true,
                uncommented_rules: false,
                max_counters: 200,
            }
        );
        assert_eq!(
            report_at(&mut source, 100),
            "nftables.left_out 0\n",
            "one sample: no rate yet"
        );
        count(&mut source, 1280, 10);
        assert_eq!(
            report_at(&mut source, 110),
            lines(
                "nftables.named.inet.pipit.lo_udp.bytes 128
                 nftables.named.inet.pipit.lo_udp.packets 1
                 nftables.named.ip6.other.six.bytes 128
                 nftables.named.ip6.other.six.packets 1
                 nftables.rule.inet.pipit.input.!fw4:_ping.bytes 128
                 nftables.rule.inet.pipit.input.!fw4:_ping.packets 1
                 nftables.rule.inet.pipit.input.Discard_on_lo.bytes 128
                 nftables.rule.inet.pipit.input.Discard_on_lo.packets 1
                 nftables.left_out 0"
            ),
            "the rule without a comment is left out"
        );
    }

    #[test]
    fn families_tables_and_rules_without_a_comment_are_chosen() {
        let mut source =
            on_captured(r#"{"families": ["inet"], "tables": ["pip*"], "uncommented_rules": true}"#);
        assert_eq!(source.spec.families, [1]);
        report_at(&mut source, 100);
        count(&mut source, 0, 20);
        let out = report_at(&mut source, 110);
        assert!(!out.contains(".six."), "ip6 is not asked for: {out}");
        assert!(
            out.contains("nftables.rule.inet.pipit.input.handle-7.packets 2\n"),
            "{out}"
        );
        let mut other = on_captured(r#"{"tables": ["other"]}"#);
        report_at(&mut other, 100);
        count(&mut other, 0, 20);
        assert_eq!(
            report_at(&mut other, 110),
            lines(
                "nftables.named.ip6.other.six.bytes 0
                 nftables.named.ip6.other.six.packets 2
                 nftables.left_out 0"
            )
        );
    }

    #[test]
    fn rules_sharing_a_comment_are_summed_and_counters_beyond_the_bound_left_out() {
        let mut source = on_captured(r#"{"max_counters": 3}"#);
        // A second rule commented `Discard on lo`, as fw4 writes one firewall rule as several.
        let twin = source.list[2].clone();
        assert_eq!(twin.name.as_deref(), Some("Discard on lo"));
        source.list.push(Counter { handle: 9, ..twin });
        report_at(&mut source, 100);
        source.list[5].bytes += 5000;
        source.list[5].packets += 10;
        assert_eq!(
            report_at(&mut source, 110),
            lines(
                "nftables.named.inet.pipit.lo_udp.bytes 0
                 nftables.named.inet.pipit.lo_udp.packets 0
                 nftables.named.ip6.other.six.bytes 0
                 nftables.named.ip6.other.six.packets 0
                 nftables.rule.inet.pipit.input.Discard_on_lo.bytes 500
                 nftables.rule.inet.pipit.input.Discard_on_lo.packets 1
                 nftables.left_out 1"
            ),
            "`!fw4: ping`, the fourth, is left out; the two `Discard on lo` are one"
        );
        assert!(source.told_left_out);
    }

    fn load(source: &str) -> Vec<String> {
        let text = format!(r#"{{"sources": [{source}], "outputs": [{{"type": "stdout"}}]}}"#);
        match config_file::parse("c.json", &text) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn bad_configs_say_what_is_expected() {
        let e = load(r#"{"type": "nftables", "families": ["ip", "ip4"]}"#);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].ends_with(
                "sources[0].families[1]: expected one of \"inet\", \"ip\", \"arp\", \
                 \"netdev\", \"bridge\", \"ip6\", got \"ip4\""
            ),
            "{e:?}"
        );
        let e = load(r#"{"type": "nftables", "max_counters": 0, "rules": "yes"}"#);
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].contains("rules: expected"), "{e:?}");
        assert!(
            e[1].contains("max_counters: expected a whole number from 1 to 100000"),
            "{e:?}"
        );
        assert!(load(r#"{"type": "nftables", "families": []}"#).is_empty());
    }
}
