//! `dhcp_leases`: how many DHCP leases a router has handed out, from dnsmasq's lease file (IPv4
//! and DHCPv6) and odhcpd's state file (OpenWrt's DHCPv6 and, where configured, DHCPv4 server):
//! in all, by address family, per interface (odhcpd names it) and per configured network.
//!
//! A file that does not exist (that server is not running here) is skipped, said once; a line
//! that is not a lease is skipped and logged (once while it repeats). A lease whose expiry time
//! has passed is not counted, whether or not the server has pruned it from the file yet.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::IpAddr;
use std::time::UNIX_EPOCH;

use super::naming::push_segment;
use super::{Build, Emitter, MetricInfo, Settings, Source, SourceContext, SourceError, SourceType};
use crate::complain::Complaint;
use crate::config::reader::{Problems, Table};
use crate::procfs::Procfs;

/// Where OpenWrt's dnsmasq keeps its leases (`dhcp.@dnsmasq[0].leasefile`).
const DNSMASQ_FILE: &str = "/tmp/dhcp.leases";

/// Where OpenWrt's odhcpd keeps its state (`dhcp.odhcpd.leasefile`).
const ODHCPD_FILE: &str = "/tmp/hosts/odhcpd";

/// The registry entry.
pub const TYPE: SourceType = SourceType {
    name: "dhcp_leases",
    description: "DHCP leases handed out by dnsmasq and odhcpd, in all and per interface and network",
    needs_two_samples: false,
    metrics: &[
        MetricInfo {
            name: "dhcp_leases.total",
            unit: "count",
            description: "leases not yet expired, both servers and both families",
        },
        MetricInfo {
            name: "dhcp_leases.ipv4",
            unit: "count",
            description: "of them, IPv4 addresses",
        },
        MetricInfo {
            name: "dhcp_leases.ipv6",
            unit: "count",
            description: "of them, IPv6 addresses (DHCPv6 IA_NA, and IA_PD prefixes from odhcpd)",
        },
        MetricInfo {
            name: "dhcp_leases.interface.<interface>",
            unit: "count",
            description: "leases on one interface (odhcpd's file names it; dnsmasq's does not)",
        },
        MetricInfo {
            name: "dhcp_leases.network.<network>",
            unit: "count",
            description: "leases whose address is in one of the configured networks",
        },
    ],
    read: super::read::<DhcpLeases>,
};

/// One configured network: a name and an address block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    /// The name in the service, such as `lan`.
    pub name: String,
    /// The first address of the block.
    pub addr: IpAddr,
    /// The prefix length.
    pub prefix: u8,
}

impl Network {
    /// Reads `192.168.1.0/24` or `fd00::/64`; `None` when it is not an address block.
    pub fn parse(name: &str, cidr: &str) -> Option<Network> {
        let (addr, prefix) = cidr.split_once('/')?;
        let addr: IpAddr = addr.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= bits).then(|| Network {
            name: name.to_owned(),
            addr,
            prefix,
        })
    }

    /// Whether `ip` is in the block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (a, b, bits) = match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => (u32::from(a).into(), u32::from(b).into(), 32),
            (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
            _ => return false,
        };
        let shift = bits - u32::from(self.prefix);
        shift >= 128 || (a >> shift) == (b >> shift)
    }
}

/// Settings of the `dhcp_leases` source.
#[derive(Debug, Clone, PartialEq)]
pub struct DhcpLeasesSpec {
    /// dnsmasq's lease file; default `/tmp/dhcp.leases`, empty to not read one.
    pub dnsmasq_file: String,
    /// odhcpd's state file; default `/tmp/hosts/odhcpd`, empty to not read one.
    pub odhcpd_file: String,
    /// Networks counted on their own; default none.
    pub networks: Vec<Network>,
}

impl Settings for DhcpLeasesSpec {
    fn read(t: &mut Table<'_>, problems: &mut Problems) -> Option<DhcpLeasesSpec> {
        let dnsmasq_file = t.get_or("dnsmasq_file", DNSMASQ_FILE.to_owned(), problems);
        let odhcpd_file = t.get_or("odhcpd_file", ODHCPD_FILE.to_owned(), problems);
        let mut networks = Vec::new();
        if let Some(field) = t.field("networks") {
            let map: BTreeMap<String, String> = field.parse(problems).unwrap_or_default();
            for (name, cidr) in &map {
                match Network::parse(name, cidr) {
                    Some(n) if !name.is_empty() => networks.push(n),
                    _ => problems.expected(
                        &field,
                        "an object of network names to address blocks, such as {\"lan\": \"192.168.1.0/24\"}",
                    ),
                }
            }
        }
        Some(DhcpLeasesSpec {
            dnsmasq_file,
            odhcpd_file,
            networks,
        })
    }
}

impl Build for DhcpLeases {
    type Settings = DhcpLeasesSpec;

    fn build(spec: &DhcpLeasesSpec, ctx: &SourceContext) -> DhcpLeases {
        let target = super::log_target(&ctx.instance);
        DhcpLeases {
            spec: spec.clone(),
            procfs: ctx.procfs.clone(),
            complaint: Complaint::new(target.clone()),
            target,
            told_missing: [false; 2],
            buf: String::new(),
            name: String::new(),
        }
    }
}

/// The lease counts of one collection.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// IPv4 leases.
    pub ipv4: u64,
    /// IPv6 leases.
    pub ipv6: u64,
    /// Leases per interface, where the file names it.
    pub interfaces: BTreeMap<String, u64>,
    /// Leases per configured network, in the order of the networks.
    pub networks: Vec<u64>,
    /// Lines that were not leases.
    pub malformed: u64,
    /// The first of them, shortened, for the log.
    pub first_malformed: Option<String>,
}

impl Counts {
    /// Empty counts for `networks` networks.
    pub fn new(networks: usize) -> Counts {
        Counts {
            networks: vec![0; networks],
            ..Counts::default()
        }
    }

    fn lease(&mut self, networks: &[Network], ip: IpAddr, interface: Option<&str>) {
        match ip {
            IpAddr::V4(_) => self.ipv4 += 1,
            IpAddr::V6(_) => self.ipv6 += 1,
        }
        if let Some(i) = interface {
            *self.interfaces.entry(i.to_owned()).or_default() += 1;
        }
        for (n, count) in networks.iter().zip(&mut self.networks) {
            if n.contains(ip) {
                *count += 1;
            }
        }
    }

    fn bad(&mut self, line: &str) {
        self.malformed += 1;
        if self.first_malformed.is_none() {
            self.first_malformed = Some(line.chars().take(80).collect());
        }
    }
}

/// Whether a lease with expiry `expiry` (seconds since the epoch, 0 for never) still holds at
/// `now`.
fn active(expiry: i64, now: i64) -> bool {
    expiry == 0 || expiry > now
}

/// Counts the leases of a dnsmasq lease file: `EXPIRY MAC IP HOSTNAME CLIENTID` per IPv4 lease,
/// and after a `duid SERVER-DUID` line, `EXPIRY IAID IP HOSTNAME CLIENT-DUID` per DHCPv6 lease.
pub fn parse_dnsmasq(text: &str, now: i64, networks: &[Network], counts: &mut Counts) {
    for line in text.lines() {
        let mut f = line.split_ascii_whitespace();
        let Some(first) = f.next() else { continue };
        if first == "duid" {
            continue;
        }
        let (Ok(expiry), Some(_), Some(Ok(ip))) = (
            first.parse::<i64>(),
            f.next(),
            f.next().map(str::parse::<IpAddr>),
        ) else {
            counts.bad(line);
            continue;
        };
        if active(expiry, now) {
            counts.lease(networks, ip, None);
        }
    }
}

/// Counts the leases of an odhcpd state file: one `# IFACE DUID|MAC IAID|ipv4 HOSTNAME EXPIRY
/// ASSIGNED PREFIXLEN ADDR/LEN…` line per client (EXPIRY -1 for never, each ADDR/LEN a lease),
/// among `ADDRESS HOSTNAME` lines for the hosts file that are not counted.
pub fn parse_odhcpd(text: &str, now: i64, networks: &[Network], counts: &mut Counts) {
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# ") else {
            continue;
        };
        let f: Vec<&str> = rest.split_ascii_whitespace().collect();
        let (Some(iface), Some(Ok(expiry))) = (f.first(), f.get(4).map(|e| e.parse::<i64>()))
        else {
            counts.bad(line);
            continue;
        };
        let addrs = f.get(7..).unwrap_or_default();
        let ips: Option<Vec<IpAddr>> = addrs
            .iter()
            .map(|a| a.split_once('/').map_or(*a, |(ip, _)| ip).parse().ok())
            .collect();
        let Some(ips) = ips else {
            counts.bad(line);
            continue;
        };
        // odhcpd writes -1 for a lease that never expires and 0 for one that has.
        if expiry == -1 || expiry > now {
            for ip in ips {
                counts.lease(networks, ip, Some(iface));
            }
        }
    }
}

struct DhcpLeases {
    spec: DhcpLeasesSpec,
    procfs: Procfs,
    target: String,
    complaint: Complaint,
    /// Whether the absence of each file (dnsmasq's, odhcpd's) was logged.
    told_missing: [bool; 2],
    buf: String,
    /// A reused buffer for service names.
    name: String,
}

/// `stem` and `instance` as one segment, in `buf`.
fn named<'a>(buf: &'a mut String, stem: &str, instance: &str) -> &'a str {
    buf.clear();
    buf.push_str(stem);
    push_segment(buf, instance);
    buf
}

type Parser = fn(&str, i64, &[Network], &mut Counts);

impl Source for DhcpLeases {
    fn collect(&mut self, emit: &mut Emitter<'_>) -> Result<(), SourceError> {
        let now = emit
            .time()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let mut counts = Counts::new(self.spec.networks.len());
        let files: [(&str, Parser); 2] = [
            (&self.spec.dnsmasq_file, parse_dnsmasq),
            (&self.spec.odhcpd_file, parse_odhcpd),
        ];
        let mut read_any = false;
        for (i, (file, parse)) in files.into_iter().enumerate() {
            if file.is_empty() {
                continue;
            }
            match self.procfs.read_into(file, &mut self.buf) {
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    if !self.told_missing[i] {
                        log::info!(target: &self.target, "{file} does not exist (its DHCP server is not running here): counting without it");
                        self.told_missing[i] = true;
                    }
                    continue;
                }
                other => other?,
            }
            read_any = true;
            parse(&self.buf, now, &self.spec.networks, &mut counts);
        }
        match &counts.first_malformed {
            Some(line) => self.complaint.fail(&format!(
                "{} lines are not leases and were skipped; the first: {line:?}",
                counts.malformed
            )),
            None => self.complaint.recover(),
        }
        if !read_any {
            return Ok(());
        }
        emit.metric("dhcp_leases.total", counts.ipv4 + counts.ipv6);
        emit.metric("dhcp_leases.ipv4", counts.ipv4);
        emit.metric("dhcp_leases.ipv6", counts.ipv6);
        for (iface, &n) in &counts.interfaces {
            emit.metric(named(&mut self.name, "dhcp_leases.interface.", iface), n);
        }
        for (net, &n) in self.spec.networks.iter().zip(&counts.networks) {
            emit.metric(named(&mut self.name, "dhcp_leases.network.", &net.name), n);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{collect, lines, read_config};
    use super::*;

    fn networks(pairs: &[(&str, &str)]) -> Vec<Network> {
        pairs
            .iter()
            .map(|(name, cidr)| Network::parse(name, cidr).unwrap())
            .collect()
    }

    #[test]
    fn a_router_s_leases_from_both_servers() {
        let spec = DhcpLeasesSpec {
            dnsmasq_file: DNSMASQ_FILE.into(),
            odhcpd_file: ODHCPD_FILE.into(),
            networks: networks(&[("lan", "192.168.1.0/24"), ("ula", "fd00::/64")]),
        };
        assert_eq!(
            collect::<DhcpLeases>(&spec, "openwrt"),
            lines(
                "dhcp_leases.total 8
                 dhcp_leases.ipv4 4
                 dhcp_leases.ipv6 4
                 dhcp_leases.interface.br-guest 1
                 dhcp_leases.interface.br-lan 3
                 dhcp_leases.network.lan 3
                 dhcp_leases.network.ula 2"
            )
        );
    }

    #[test]
    fn one_file_alone_and_none_at_all() {
        let dnsmasq = DhcpLeasesSpec {
            dnsmasq_file: DNSMASQ_FILE.into(),
            odhcpd_file: String::new(),
            networks: Vec::new(),
        };
        assert_eq!(
            collect::<DhcpLeases>(&dnsmasq, "openwrt"),
            lines("dhcp_leases.total 4\n dhcp_leases.ipv4 3\n dhcp_leases.ipv6 1")
        );
        let defaults = read_config("{}", DhcpLeasesSpec::read).unwrap();
        assert_eq!(
            collect::<DhcpLeases>(&defaults, "debian"),
            "",
            "no server here"
        );
    }

    #[test]
    fn expired_and_infinite_leases() {
        let mut counts = Counts::new(0);
        parse_dnsmasq(
            "0 m 10.0.0.1 a *\n99 m 10.0.0.2 b *\n100 m 10.0.0.3 c *\n101 m ::1 d e\n",
            100,
            &[],
            &mut counts,
        );
        assert_eq!((counts.ipv4, counts.ipv6), (1, 1));
        let mut counts = Counts::new(0);
        parse_odhcpd(
            "# lan d ipv4 h -1 1 32 10.0.0.1/32\n# lan d ipv4 h 0 1 32 10.0.0.2/32\n",
            100,
            &[],
            &mut counts,
        );
        assert_eq!(counts.ipv4, 1, "-1 never expires, 0 has expired");
    }

    #[test]
    fn lines_that_are_not_leases_are_counted_and_skipped() {
        let mut counts = Counts::new(0);
        parse_dnsmasq(
            "garbage\n\n1700000000 m not-an-ip h *\n1700000000 m 10.0.0.1 h *\n",
            100,
            &[],
            &mut counts,
        );
        parse_odhcpd(
            "# lan\n# lan d i h soon 1 128 fd00::1/128\n# lan d i h 200 1 128 nope/128\n",
            100,
            &[],
            &mut counts,
        );
        assert_eq!(counts.ipv4, 1);
        assert_eq!(counts.malformed, 5);
        assert_eq!(counts.first_malformed.as_deref(), Some("garbage"));
    }

    #[test]
    fn networks_match_by_prefix() {
        let n = networks(&[
            ("a", "10.1.0.0/16"),
            ("all", "0.0.0.0/0"),
            ("six", "fd00::/8"),
        ]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(n[0].contains(ip("10.1.255.3")));
        assert!(!n[0].contains(ip("10.2.0.1")));
        assert!(n[1].contains(ip("203.0.113.9")));
        assert!(!n[1].contains(ip("fd00::1")), "families never match");
        assert!(n[2].contains(ip("fdff::1")));
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "fd00::/129",
            "lan/24",
            "10.0.0.0/x",
        ] {
            assert_eq!(Network::parse("x", bad), None, "{bad}");
        }
    }

    #[test]
    fn config_keys_and_their_errors() {
        let spec = read_config(
            r#"{"dnsmasq_file": "/var/lib/misc/dnsmasq.leases", "odhcpd_file": "", "networks": {"lan": "192.168.1.0/24"}}"#,
            DhcpLeasesSpec::read,
        )
        .unwrap();
        let text = format!("{spec:?}");
        assert!(
            text.contains("/var/lib/misc/dnsmasq.leases") && text.contains("prefix: 24"),
            "{text}"
        );
        let doc = crate::config::json::parse(r#"{"networks": {"lan": "192.168.1.0"}}"#).unwrap();
        let mut problems = Problems::new("test.json");
        let mut table = crate::config::reader::Field::root(&doc)
            .table(&mut problems)
            .unwrap();
        DhcpLeasesSpec::read(&mut table, &mut problems);
        let errors: Vec<String> = problems
            .into_errors()
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert!(
            errors.len() == 1
                && errors[0].contains("networks")
                && errors[0].contains("192.168.1.0/24"),
            "{errors:?}"
        );
    }
}
