//! `wireguard`: each WireGuard device's peers, over generic netlink as `wg show` asks: how long
//! ago each peer's latest handshake was, its traffic, and its endpoint.
//!
//! The devices are every interface of kind `wireguard` (an rtnetlink link dump) unless
//! `interfaces` names them. Peers are reported one by one up to `max_peers` per device (the rest
//! are counted), or only counted with `per_peer: false`. The kernel answers only a caller with
//! `CAP_NET_ADMIN`. A kernel without WireGuard reports nothing, said once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::bound::Bound;
use super::naming::push_segment;
use super::{Build, Emitter, MetricInfo, Settings, Source, SourceContext, SourceError, SourceType};
use crate::aggregate::Rates;
use crate::base64;
use crate::cache::lock;
use crate::config::reader::{Problems, Table};
use crate::netlink::NetlinkError;
use crate::netlink::link::Links;
use crate::netlink::wireguard::{Device, Peer, WireGuard};

/// A handshake younger than this keeps a session in use (WireGuard's `REJECT_AFTER_TIME`): a peer
/// that handshook within it is active.
const ACTIVE: Duration = Duration::from_secs(180);
/// Characters of a key's URL-safe base64 that name its peer.
const SHORT_KEY: usize = 8;

/// The registry entry.
pub const TYPE: SourceType = SourceType {
    name: "wireguard",
    description: "peers of each WireGuard device: latest handshake, traffic and endpoint",
    needs_two_samples: true,
    metrics: &[
        MetricInfo {
            name: "wireguard.<interface>.peers",
            unit: "count",
            description: "peers configured",
        },
        MetricInfo {
            name: "wireguard.<interface>.peers_active",
            unit: "count",
            description: "peers whose latest handshake was less than 180 s ago (a session in use)",
        },
        MetricInfo {
            name: "wireguard.<interface>.peers_not_reported",
            unit: "count",
            description: "peers past max_peers, counted in `peers` but not reported one by one",
        },
        MetricInfo {
            name: "wireguard.<interface>.peer.<peer>.handshake_age",
            unit: "seconds",
            description: "time since the peer's latest handshake, not sent before the first (`<peer>` is the start of its public key, which is also the attribute `public_key`)",
        },
        MetricInfo {
            name: "wireguard.<interface>.peer.<peer>.rx_bytes",
            unit: "bytes_per_second",
            description: "bytes received from the peer",
        },
        MetricInfo {
            name: "wireguard.<interface>.peer.<peer>.tx_bytes",
            unit: "bytes_per_second",
            description: "bytes sent to the peer",
        },
    ],
    read: super::read::<Wireguard>,
};

/// Settings of the `wireguard` source.
#[derive(Debug, Clone, PartialEq)]
pub struct WireguardSpec {
    /// The devices by interface name; empty (the default) for every WireGuard interface.
    pub interfaces: Vec<String>,
    /// Whether peers are reported one by one (default), or only counted.
    pub per_peer: bool,
    /// At most this many peers per device are reported one by one (default 64).
    pub max_peers: usize,
}

impl Settings for WireguardSpec {
    fn read(t: &mut Table<'_>, problems: &mut Problems) -> Option<WireguardSpec> {
        let interfaces = t.get_or("interfaces", Vec::new(), problems);
        let per_peer = t.get_or("per_peer", true, problems);
        let max_peers = t.number_in("max_peers", 64, 1, 10_000, problems) as usize;
        Some(WireguardSpec {
            interfaces,
            per_peer,
            max_peers,
        })
    }
}

impl Build for Wireguard {
    type Settings = WireguardSpec;
    const NEVER_WAITS: bool = true;

    fn build(spec: &WireguardSpec, ctx: &SourceContext) -> Wireguard {
        let target = super::log_target(&ctx.instance);
        Wireguard {
            spec: spec.clone(),
            rates: ctx.rates(),
            bound: Bound::new(spec.max_peers, "peers", "max_peers", &target),
            target,
            wg: None,
            links: None,
            told: false,
            missing: BTreeSet::new(),
            devices: Vec::new(),
            name: String::new(),
        }
    }
}

struct Wireguard {
    spec: WireguardSpec,
    rates: Arc<Mutex<Rates>>,
    bound: Bound,
    target: String,
    /// The sockets, opened at the first collection and kept.
    wg: Option<WireGuard>,
    links: Option<Links>,
    /// Whether a kernel without WireGuard was logged.
    told: bool,
    /// Configured interfaces found missing, each logged once until it is back.
    missing: BTreeSet<String>,
    devices: Vec<Device>,
    /// A reused service name.
    name: String,
}

impl Source for Wireguard {
    fn collect(&mut self, emit: &mut Emitter<'_>) -> Result<(), SourceError> {
        match self.list() {
            Err(e) if e.is_unsupported() => {
                self.wg = None;
                if !self.told {
                    log::info!(target: &self.target, "no WireGuard to report ({e})");
                    self.told = true;
                }
                return Ok(());
            }
            Err(e @ NetlinkError::Refused(libc::EPERM)) => {
                return Err(SourceError::NotPermitted {
                    why: "the kernel lists WireGuard peers only to a process with CAP_NET_ADMIN: \
                          run pipit as root (on OpenWrt, option user 'root' in the agent section)",
                    source: e,
                });
            }
            Err(e) => {
                // Fresh sockets next time: a half-read dump must not confuse the next one.
                self.wg = None;
                self.links = None;
                return Err(SourceError::Netlink(e));
            }
            Ok(()) => {}
        }
        self.report(emit);
        Ok(())
    }
}

impl Wireguard {
    /// Lists the devices with their peers.
    fn list(&mut self) -> Result<(), NetlinkError> {
        self.devices.clear();
        let wg = match &mut self.wg {
            Some(wg) => wg,
            None => self.wg.insert(WireGuard::open()?),
        };
        let names = if self.spec.interfaces.is_empty() {
            let links = match &mut self.links {
                Some(l) => l,
                None => self.links.insert(Links::open()?),
            };
            links
                .of_kind("wireguard")?
                .into_iter()
                .map(|l| l.name)
                .collect()
        } else {
            self.spec.interfaces.clone()
        };
        for name in names {
            match wg.device(&name) {
                // Gone since the link dump, or a configured interface that is down or not
                // WireGuard: the others are still reported.
                Err(NetlinkError::Refused(errno))
                    if [libc::ENODEV, libc::EOPNOTSUPP, libc::ENOENT].contains(&errno) =>
                {
                    if self.missing.insert(name.clone()) {
                        log::info!(
                            target: &self.target,
                            "{name}: no such WireGuard interface ({}); not reported while it is missing",
                            std::io::Error::from_raw_os_error(errno)
                        );
                    }
                }
                Err(e) => return Err(e),
                Ok(device) => {
                    self.missing.remove(&name);
                    self.devices.push(device);
                }
            }
        }
        Ok(())
    }

    /// Emits what was listed.
    fn report(&mut self, emit: &mut Emitter<'_>) {
        let now = emit
            .time()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let mut rates = lock(&self.rates);
        for device in &self.devices {
            self.name.clear();
            self.name.push_str("wireguard.");
            push_segment(&mut self.name, &device.name);
            self.name.push('.');
            let stem = self.name.len();
            let active = device
                .peers
                .iter()
                .filter(|p| {
                    p.last_handshake
                        .is_some_and(|t| now.saturating_sub(t) < ACTIVE)
                })
                .count();
            for (metric, value) in [("peers", device.peers.len()), ("peers_active", active)] {
                self.name.truncate(stem);
                self.name.push_str(metric);
                emit.metric(&self.name, value as u64);
            }
            if !self.spec.per_peer {
                continue;
            }
            let names = peer_names(&device.peers);
            let chosen = self.bound.choose(&device.name, &names);
            self.name.truncate(stem);
            self.name.push_str("peers_not_reported");
            emit.metric(&self.name, chosen.iter().filter(|c| !**c).count() as u64);
            for ((peer, short), _) in device
                .peers
                .iter()
                .zip(&names)
                .zip(&chosen)
                .filter(|(_, c)| **c)
            {
                self.name.truncate(stem);
                self.name.push_str("peer.");
                self.name.push_str(short);
                self.name.push('.');
                let from = emit.len();
                report_peer(emit, &mut rates, &mut self.name, peer, now);
                emit.attribute_since(from, "public_key", &base64::standard(&peer.public_key));
                if let Some(endpoint) = peer.endpoint {
                    emit.attribute_since(from, "endpoint", &endpoint.to_string());
                }
            }
        }
        self.bound.end_round();
        rates.end_round();
    }
}

/// The name of each peer in its service names: the first characters of its key in URL-safe
/// base64, or the whole key for peers of one device whose first characters are the same.
fn peer_names(peers: &[Peer]) -> Vec<String> {
    let full: Vec<String> = peers
        .iter()
        .map(|p| base64::url_safe(&p.public_key))
        .collect();
    let mut starts: BTreeMap<&str, usize> = BTreeMap::new();
    for key in &full {
        *starts.entry(&key[..SHORT_KEY]).or_default() += 1;
    }
    full.iter()
        .map(|key| match starts[&key[..SHORT_KEY]] {
            1 => key[..SHORT_KEY].to_owned(),
            _ => key.clone(),
        })
        .collect()
}

/// Emits one peer's lines, each named `name` (its stem) and the metric.
fn report_peer(
    emit: &mut Emitter<'_>,
    rates: &mut Rates,
    name: &mut String,
    peer: &Peer,
    now: Duration,
) {
    let stem = name.len();
    if let Some(at) = peer.last_handshake {
        name.push_str("handshake_age");
        emit.metric(name, now.saturating_sub(at).as_secs_f64());
    }
    for (metric, value) in [("rx_bytes", peer.rx_bytes), ("tx_bytes", peer.tx_bytes)] {
        name.truncate(stem);
        name.push_str(metric);
        emit.rate(rates, name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{collect_with, context, emitter, lines, read_config, render};
    use super::*;
    use crate::cache::Cache;
    use crate::netlink::wireguard::fixture;

    fn spec(per_peer: bool, max_peers: usize) -> WireguardSpec {
        WireguardSpec {
            interfaces: Vec::new(),
            per_peer,
            max_peers,
        }
    }

    fn on_fixture(spec: WireguardSpec) -> Wireguard {
        let mut source =
            Wireguard::build(&spec, &context("openwrt", &Arc::new(Cache::in_memory())));
        source.devices = vec![fixture()];
        source
    }

    fn report_at(source: &mut Wireguard, secs: u64) -> Vec<crate::Event> {
        let template = super::super::testing::template();
        let mut emit = emitter(&template, secs);
        source.report(&mut emit);
        emit.into_events()
    }

    /// The fixture's keys are bytes counting up from 0x10, 0xfb and 0x20.
    #[test]
    fn peers_with_their_handshake_age_and_rates_from_the_second_collection() {
        let mut source = on_fixture(spec(true, 64));
        let first = report_at(&mut source, 1_700_000_100);
        assert_eq!(
            render(&first),
            lines(
                "wireguard.wg0.peers 3
                 wireguard.wg0.peers_active 1
                 wireguard.wg0.peers_not_reported 0
                 wireguard.wg0.peer.EBESExQV.handshake_age 99.5
                 wireguard.wg0.peer.-_z9_v8A.handshake_age 10099.5"
            ),
            "one sample: no rate yet; the third peer never handshook"
        );
        let first_peer = &first[3];
        assert_eq!(
            first_peer.attributes["public_key"],
            "EBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi8="
        );
        assert_eq!(first_peer.attributes["endpoint"], "192.0.2.7:51820");
        assert_eq!(first[4].attributes["endpoint"], "[2001:db8::1]:443");
        assert!(!first[0].attributes.contains_key("public_key"));

        for p in &mut source.devices[0].peers {
            p.rx_bytes += 40_000;
            p.tx_bytes += 1_000;
        }
        let second = render(&report_at(&mut source, 1_700_000_110));
        assert!(
            second.contains("wireguard.wg0.peer.EBESExQV.rx_bytes 4000\n"),
            "{second}"
        );
        assert!(
            second.contains("wireguard.wg0.peer.EBESExQV.tx_bytes 100\n"),
            "{second}"
        );
        assert!(
            second.contains("wireguard.wg0.peer.ICEiIyQl.rx_bytes 4000\n"),
            "{second}"
        );
        assert!(
            !second.contains("ICEiIyQl.handshake_age"),
            "never handshook"
        );
    }

    #[test]
    fn peers_whose_keys_start_alike_are_named_by_their_whole_key() {
        let mut peers = fixture().peers;
        let start = peers[0].public_key;
        peers[2].public_key[..6].copy_from_slice(&start[..6]);
        let names = peer_names(&peers);
        assert_eq!(names[0], base64::url_safe(&peers[0].public_key));
        assert_eq!(names[0].len(), 43);
        assert_eq!(names[2].len(), 43);
        assert_ne!(names[0], names[2]);
        assert_eq!(names[1], "-_z9_v8A");
    }

    #[test]
    fn past_max_peers_or_without_per_peer_they_are_counted() {
        let mut bounded = on_fixture(spec(true, 1));
        let got = render(&report_at(&mut bounded, 1_700_000_100));
        assert!(
            got.contains("wireguard.wg0.peers_not_reported 2\n"),
            "{got}"
        );
        assert!(
            got.contains("EBESExQV") && !got.contains("-_z9_v8A"),
            "{got}"
        );
        let mut counted = on_fixture(spec(false, 64));
        assert_eq!(
            render(&report_at(&mut counted, 1_700_000_100)),
            lines("wireguard.wg0.peers 3\nwireguard.wg0.peers_active 1")
        );
    }

    #[test]
    fn the_config_keys() {
        let given = read_config(
            r#"{"interfaces": ["wg0"], "per_peer": false, "max_peers": 3}"#,
            WireguardSpec::read,
        )
        .unwrap();
        let expected = WireguardSpec {
            interfaces: vec!["wg0".into()],
            per_peer: false,
            max_peers: 3,
        };
        assert_eq!(format!("{given:?}"), format!("{expected:?}"));
        let defaults = read_config("{}", WireguardSpec::read).unwrap();
        assert_eq!(format!("{defaults:?}"), format!("{:?}", spec(true, 64)));
    }

    #[test]
    fn a_kernel_without_wireguard_reports_nothing_and_says_so_once() {
        let mut source = Wireguard::build(
            &spec(true, 64),
            &context("openwrt", &Arc::new(Cache::in_memory())),
        );
        let template = super::super::testing::template();
        let mut emit = emitter(&template, 100);
        let result = source.collect(&mut emit);
        if WireGuard::open().is_ok() {
            // A kernel with WireGuard (not the one this was written on) answers root.
            assert!(result.is_ok() && !source.told);
            return;
        }
        result.unwrap();
        assert!(emit.is_empty());
        assert!(source.told, "logged");
        assert_eq!(collect_with(&mut source, 110), "");
    }
}
