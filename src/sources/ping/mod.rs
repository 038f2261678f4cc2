//! `ping`: ICMP echo to each configured host, IPv4 and IPv6. Every collection is one round of
//! `count` requests per host spread evenly over the interval, all on this instance's own
//! thread; it reports the round-trip times (min, avg, max, standard deviation) and the share
//! lost, per host.
//!
//! Host names are resolved with pipit's own resolver ([`crate::dns`]) at the first round and
//! again every `resolve_interval`; a name that fails to resolve keeps its last address and is
//! tried again at the next round.

pub mod echo;
mod round;
mod sockets;

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use round::{DATA_LEN, Plan, Tally};
use sockets::Sockets;

use super::naming::ServiceName;
use super::{Build, Emitter, MetricInfo, Settings, Source, SourceContext, SourceError, SourceType};
use crate::complain::Complaint;
use crate::config::duration;
use crate::config::reader::{Field, Problems, Table};
use crate::dns::literal;
use crate::dns::message::TYPE_A;

/// The registry entry.
pub const TYPE: SourceType = SourceType {
    name: "ping",
    description: "ICMP echo to each host: round-trip times and the share of requests lost",
    needs_two_samples: false,
    metrics: &[
        MetricInfo {
            name: "ping.<host>.rtt_min",
            unit: "seconds",
            description: "the shortest round-trip time of the interval's replies",
        },
        MetricInfo {
            name: "ping.<host>.rtt_avg",
            unit: "seconds",
            description: "the mean round-trip time of the interval's replies",
        },
        MetricInfo {
            name: "ping.<host>.rtt_max",
            unit: "seconds",
            description: "the longest round-trip time of the interval's replies",
        },
        MetricInfo {
            name: "ping.<host>.rtt_stddev",
            unit: "seconds",
            description: "the sample standard deviation of the interval's round-trip times (0 for one reply)",
        },
        MetricInfo {
            name: "ping.<host>.loss",
            unit: "percent",
            description: "requests of the interval without a reply within reply_timeout",
        },
        MetricInfo {
            name: "ping.<host>.sent",
            unit: "count",
            description: "requests sent in the interval (one the kernel refused to send counts, as lost)",
        },
        MetricInfo {
            name: "ping.<host>.received",
            unit: "count",
            description: "replies received in the interval within reply_timeout",
        },
    ],
    read: super::read::<Ping>,
};

/// Which addresses of a name are pinged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// The first address the name has: IPv4 before IPv6 ([`crate::dns`]).
    Any,
    /// Only IPv4.
    Ipv4,
    /// Only IPv6.
    Ipv6,
}

impl Family {
    fn admits(self, ip: IpAddr) -> bool {
        match self {
            Family::Any => true,
            Family::Ipv4 => ip.is_ipv4(),
            Family::Ipv6 => ip.is_ipv6(),
        }
    }
}

/// Settings of the `ping` source.
#[derive(Debug, Clone, PartialEq)]
pub struct PingSpec {
    /// Names or addresses to ping.
    pub hosts: Vec<String>,
    /// Requests per host per interval; default 10.
    pub count: u32,
    /// How long a request waits for its reply; default 1 s, at most half the interval.
    pub reply_timeout: Duration,
    /// The IPv4 time to live and IPv6 hop limit of requests; the system's default when unset.
    pub ip_ttl: Option<u8>,
    /// Which addresses of a name to ping; default any.
    pub family: Family,
    /// How often names are resolved again; default 5 min.
    pub resolve_interval: Duration,
}

impl Settings for PingSpec {
    fn read(t: &mut Table<'_>, problems: &mut Problems) -> Option<PingSpec> {
        let count = t.number_in("count", 10, 1, 100, problems) as u32;
        let reply_timeout = t.duration_at_least(
            "reply_timeout",
            Duration::from_secs(1),
            Duration::from_millis(1),
            problems,
        );
        let ip_ttl = t
            .field("ip_ttl")
            .map(|_| t.number_in("ip_ttl", 64, 1, 255, problems) as u8);
        let family = match t.choice("family", &["any", "ipv4", "ipv6"], "any", problems) {
            "ipv4" => Family::Ipv4,
            "ipv6" => Family::Ipv6,
            _ => Family::Any,
        };
        let resolve_interval = t.duration_at_least(
            "resolve_interval",
            Duration::from_secs(300),
            Duration::from_secs(1),
            problems,
        );
        let Some(field) = t.field("hosts") else {
            problems.at(t.as_field(), "missing required key \"hosts\"");
            return None;
        };
        let hosts = field.non_empty_list("host name or address", problems, |f, p| {
            read_host(f, family, p)
        })?;
        if let Some(twice) = hosts
            .iter()
            .enumerate()
            .find_map(|(i, h)| hosts[..i].contains(h).then_some(h))
        {
            problems.expected(
                &field,
                &format!("each host once (\"{twice}\" is listed twice)"),
            );
            return None;
        }
        Some(PingSpec {
            hosts,
            count,
            reply_timeout,
            ip_ttl,
            family,
            resolve_interval,
        })
    }

    fn check_interval(&self, interval: Duration) -> Result<(), String> {
        if self.reply_timeout * 2 > interval {
            return Err(format!(
                "reply_timeout ({}) must be at most half the interval ({}): lower reply_timeout \
                 or raise interval",
                duration::format(self.reply_timeout),
                duration::format(interval)
            ));
        }
        if self.plan(interval).gap < Duration::from_millis(1) {
            return Err(format!(
                "count {} requests do not fit in the interval ({}) at one per millisecond: \
                 lower count or raise interval",
                self.count,
                duration::format(interval)
            ));
        }
        Ok(())
    }
}

/// One host: a name, or an address (IPv6 with or without brackets) of the chosen family.
fn read_host(field: &Field<'_>, family: Family, problems: &mut Problems) -> Option<String> {
    let host = field.parse::<String>(problems)?;
    let fits = match literal(&host) {
        Some(ip) => family.admits(ip),
        None => crate::dns::message::query(0, host.trim_end_matches('.'), TYPE_A).is_some(),
    };
    if !fits {
        let wanted = match family {
            Family::Any => "a host name or an IP address, such as \"192.168.1.1\"",
            Family::Ipv4 => "a host name or an IPv4 address (family is \"ipv4\")",
            Family::Ipv6 => "a host name or an IPv6 address (family is \"ipv6\")",
        };
        problems.expected(field, wanted);
        return None;
    }
    Some(host)
}

impl PingSpec {
    /// Time between two requests to one host over `interval`: the rounds's requests and the last
    /// one's wait fit in the interval with one gap to spare.
    fn plan(&self, interval: Duration) -> Plan {
        Plan {
            count: self.count,
            gap: interval.saturating_sub(self.reply_timeout) / self.count,
            reply_timeout: self.reply_timeout,
        }
    }
}

impl Build for Ping {
    type Settings = PingSpec;

    fn build(spec: &PingSpec, ctx: &SourceContext) -> Ping {
        let target = super::log_target(&ctx.instance);
        let hosts = spec
            .hosts
            .iter()
            .map(|name| Host {
                name: name.clone(),
                address: literal(name),
                resolved: None,
                resolving: Complaint::new(target.clone()),
                sending: Complaint::new(target.clone()),
            })
            .collect();
        // Raw sockets see every echo reply of the host: an identifier and data of this instance's
        // own keep those of other pings (and of an instance before a reload) apart.
        let random = RandomState::new().hash_one(Instant::now());
        let mut data = vec![0u8; DATA_LEN];
        data[..8].copy_from_slice(&random.to_be_bytes());
        Ping {
            spec: spec.clone(),
            plan: spec.plan(ctx.interval),
            hosts,
            sockets: None,
            raw_id: (random >> 48) as u16,
            seq: 0,
            data,
            names: ServiceName::default(),
            target,
            stopping: ctx.stopping.clone(),
        }
    }
}

/// One configured host and what is known of it.
#[derive(Debug)]
struct Host {
    name: String,
    /// The address pinged; `None` until a name resolves.
    address: Option<IpAddr>,
    /// When the name was last resolved; `None` for an address, or before it first resolved.
    resolved: Option<Instant>,
    /// Failures to resolve the name.
    resolving: Complaint,
    /// Requests the kernel refused to send.
    sending: Complaint,
}

struct Ping {
    spec: PingSpec,
    plan: Plan,
    hosts: Vec<Host>,
    sockets: Option<Sockets>,
    raw_id: u16,
    seq: u16,
    data: Vec<u8>,
    names: ServiceName,
    target: String,
    stopping: Receiver<()>,
}

impl Ping {
    /// Resolves the names that are due, all within one gap between requests, or 100 ms if that is
    /// longer (so a slow DNS server delays a round by little); a name that does not resolve keeps
    /// its address and is tried again next round.
    fn resolve(&mut self) {
        let deadline = Instant::now() + self.plan.gap.max(Duration::from_millis(100));
        for host in &mut self.hosts {
            if literal(&host.name).is_some()
                || host
                    .resolved
                    .is_some_and(|at| at.elapsed() < self.spec.resolve_interval)
            {
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let found = crate::dns::lookup(&host.name, 0, left).and_then(|addrs| {
                addrs
                    .into_iter()
                    .map(|a| a.ip())
                    .find(|ip| self.spec.family.admits(*ip))
                    .ok_or_else(|| {
                        std::io::Error::other(format!(
                            "{} has no address of the family asked for",
                            host.name
                        ))
                    })
            });
            match found {
                Ok(ip) => {
                    host.address = Some(ip);
                    host.resolved = Some(Instant::now());
                    host.resolving.recover();
                }
                Err(e) => host
                    .resolving
                    .fail(&format!("cannot resolve {}: {e}", host.name)),
            }
        }
    }

    /// Emits the metrics of one host's round.
    fn emit(&mut self, emit: &mut Emitter<'_>, host: usize, tally: &Tally) {
        self.names.start("ping", &self.hosts[host].name);
        emit.metric(self.names.with("sent"), tally.sent);
        emit.metric(self.names.with("received"), tally.received);
        if tally.sent > 0 {
            let lost = f64::from(tally.sent - tally.received);
            emit.metric(
                self.names.with("loss"),
                100.0 * lost / f64::from(tally.sent),
            );
        }
        let Some(stats) = Rtt::of(&tally.rtts) else {
            return;
        };
        emit.metric(self.names.with("rtt_min"), stats.min);
        emit.metric(self.names.with("rtt_avg"), stats.avg);
        emit.metric(self.names.with("rtt_max"), stats.max);
        emit.metric(self.names.with("rtt_stddev"), stats.stddev);
    }
}

impl Source for Ping {
    fn collect(&mut self, emit: &mut Emitter<'_>) -> Result<(), SourceError> {
        if self.sockets.is_none() {
            let sockets =
                Sockets::open(self.raw_id, self.spec.ip_ttl).map_err(SourceError::Setup)?;
            log::info!(target: &self.target, "{}", sockets.describe());
            self.sockets = Some(sockets);
        }
        self.resolve();
        let targets: Vec<Option<IpAddr>> = self.hosts.iter().map(|h| h.address).collect();
        let sockets = self.sockets.as_ref().expect("opened above");
        let tallies = round::run(
            self.plan,
            &targets,
            sockets,
            &mut self.seq,
            &self.data,
            &self.stopping,
        )?;
        for (i, tally) in tallies.iter().enumerate() {
            if tally.sent == 0 {
                continue;
            }
            match &tally.send_error {
                Some(e) => self.hosts[i].sending.fail(e),
                None => self.hosts[i].sending.recover(),
            }
            self.emit(emit, i, tally);
        }
        Ok(())
    }
}

/// The summary of one round's round-trip times.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Rtt {
    min: f64,
    avg: f64,
    max: f64,
    stddev: f64,
}

impl Rtt {
    /// The summary of `rtts`; `None` when there are none. The standard deviation is the sample
    /// one (divided by n − 1, as collectd's ping plugin does), 0 for a single time.
    fn of(rtts: &[f64]) -> Option<Rtt> {
        let n = rtts.len() as f64;
        let min = rtts.iter().copied().reduce(f64::min)?;
        let max = rtts.iter().copied().fold(min, f64::max);
        let avg = rtts.iter().sum::<f64>() / n;
        let squares: f64 = rtts.iter().map(|r| (r - avg) * (r - avg)).sum();
        let stddev = if rtts.len() > 1 {
            (squares / (n - 1.0)).sqrt()
        } else {
            0.0
        };
        Some(Rtt {
            min,
            avg,
            max,
            stddev,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config_file;

    fn spec(source: &str) -> Result<config_file::Config, String> {
        let text = format!(r#"{{"sources": [{source}], "outputs": [{{"type": "stdout"}}]}}"#);
        config_file::parse("test.json", &text).map_err(|e| e.to_string())
    }

    #[test]
    fn reads_its_keys_with_their_defaults() {
        let c =
            spec(r#"{"type": "ping", "hosts": ["192.0.2.1", "[2001:db8::1]", "gw.lan"]}"#).unwrap();
        let s = format!("{:?}", c.sources[0].spec);
        for part in [
            "count: 10",
            "reply_timeout: 1s",
            "ip_ttl: None",
            "family: Any",
            "resolve_interval: 300s",
        ] {
            assert!(s.contains(part), "{part} in {s}");
        }
        let c = spec(
            r#"{"type": "ping", "hosts": ["::1"], "count": 4, "reply_timeout": "200ms",
                "ip_ttl": 3, "family": "ipv6", "interval": "2s"}"#,
        )
        .unwrap();
        let s = format!("{:?}", c.sources[0].spec);
        assert!(
            s.contains("count: 4") && s.contains("ip_ttl: Some(3)"),
            "{s}"
        );
    }

    #[test]
    fn refuses_what_cannot_work_naming_the_key() {
        for (source, key, what) in [
            (r#""hosts": []"#, "sources[0].hosts", "at least one host"),
            (
                r#""hosts": ["a b"]"#,
                "sources[0].hosts[0]",
                "a host name or an IP",
            ),
            (
                r#""hosts": ["::1"], "family": "ipv4""#,
                "sources[0].hosts[0]",
                "IPv4 address",
            ),
            (
                r#""hosts": ["h"], "count": 0"#,
                "sources[0].count",
                "from 1 to 100",
            ),
            (
                r#""hosts": ["h"], "ip_ttl": 256"#,
                "sources[0].ip_ttl",
                "from 1 to 255",
            ),
            (
                r#""hosts": ["h"], "family": "v4""#,
                "sources[0].family",
                "\"ipv4\"",
            ),
            (
                r#""hosts": ["h"], "reply_timeout": "6s""#,
                "sources[0]",
                "at most half the interval (10s)",
            ),
            (
                r#""count": 2"#,
                "sources[0]",
                "missing required key \"hosts\"",
            ),
        ] {
            let e = spec(&format!(r#"{{"type": "ping", {source}}}"#)).unwrap_err();
            assert!(
                e.contains(&format!("{key}:")) && e.contains(what),
                "{source}: {e}"
            );
        }
    }

    #[test]
    fn requests_are_spread_over_the_interval_with_a_gap_to_spare() {
        let c = spec(r#"{"type": "ping", "hosts": ["h"], "count": 9}"#).unwrap();
        let spec = &c.sources[0].spec;
        assert!(spec.check_interval(Duration::from_secs(10)).is_ok());
        let ping = PingSpec {
            hosts: vec!["h".into()],
            count: 9,
            reply_timeout: Duration::from_secs(1),
            ip_ttl: None,
            family: Family::Any,
            resolve_interval: Duration::from_secs(300),
        };
        let plan = ping.plan(Duration::from_secs(10));
        assert_eq!(plan.gap, Duration::from_secs(1));
        // The last request goes at 8 s and waits until 9 s: one gap before the next round.
        assert_eq!(
            plan.gap * (plan.count - 1) + plan.reply_timeout,
            Duration::from_secs(9)
        );
        assert!(ping.check_interval(Duration::from_millis(1500)).is_err());
    }

    #[test]
    fn a_stop_ends_the_round_at_once() {
        let c = spec(r#"{"type": "ping", "hosts": ["127.0.0.1"], "count": 2, "interval": "20s"}"#)
            .unwrap();
        let (stop, stopping) = crossbeam_channel::bounded::<()>(0);
        let cache = Arc::new(crate::cache::Cache::in_memory());
        let ctx = SourceContext {
            stopping,
            interval: Duration::from_secs(20),
            ..crate::sources::testing::context("minimal", &cache)
        };
        let mut source = c.sources[0].spec.build(&ctx);
        // Asked to stop before it starts: the first request goes, then the round ends at once.
        drop(stop);
        let template = crate::sources::testing::template();
        let mut emit = crate::sources::testing::emitter(&template, 0);
        let started = Instant::now();
        source.collect(&mut emit).unwrap();
        // Otherwise the round would last 10.5 s: its second request is due at 9.5 s.
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn round_trip_times_are_summarised_as_collectd_does() {
        assert_eq!(Rtt::of(&[]), None);
        let one = Rtt::of(&[0.25]).unwrap();
        assert_eq!(
            (one.min, one.avg, one.max, one.stddev),
            (0.25, 0.25, 0.25, 0.0)
        );
        let s = Rtt::of(&[0.002, 0.004, 0.004, 0.004, 0.005, 0.005, 0.007, 0.009]).unwrap();
        assert_eq!((s.min, s.max), (0.002, 0.009));
        assert!((s.avg - 0.005).abs() < 1e-12);
        // Squares sum to 32e-6 over n - 1 = 7.
        assert!(
            (s.stddev - (32e-6f64 / 7.0).sqrt()).abs() < 1e-12,
            "{}",
            s.stddev
        );
    }
}
