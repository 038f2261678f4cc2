//! The delivery settings every output shares: targets and strategy, retries, circuit breaker,
//! queue bound in bytes, disk spool, fallback output and rate limit. Read once at load; the
//! defaults live here (see docs/delivery.md).

use std::path::Path;
use std::time::Duration;

use super::backoff::Backoff;
use super::breaker::BreakerConfig;
use super::carbon_ch::{Destination, RingHash};
use super::spool::{Fsync, MAX_SEGMENTS, SpoolConfig, WhenFull};
use crate::config::reader::{Problems, Table};

/// How a batch is spread over an output's targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Every batch to the first target that takes it, in config order (the default).
    Failover,
    /// Each batch starts at the next target in turn; the others are its failover.
    RoundRobin,
    /// Graphite only: every datapoint to the carbon-cache(s) a relay's consistent hashing picks
    /// for its path (`carbon_ch`, `fnv1a_ch` or `jump_fnv1a_ch`); `replication` copies, on
    /// distinct hosts when `diverse`.
    CarbonCh {
        /// Which relay's hashing is reproduced.
        hash: RingHash,
        /// Copies of each datapoint (1 to the number of targets).
        replication: usize,
        /// Replicas on distinct hosts, as carbon's `DIVERSE_REPLICAS` (Python carbon-relay only;
        /// true by default, as in carbon).
        diverse: bool,
    },
}

/// A rate limit: a token bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Events per second on average.
    pub per_second: f64,
    /// The largest burst, in events.
    pub burst: f64,
}

/// The delivery settings of one output.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryConfig {
    /// How batches are spread over the targets.
    pub strategy: Strategy,
    /// Retries of a batch after its first attempt; default 3.
    pub retries: u32,
    /// Delay before the first retry, doubling up to the maximum, jittered; 500 ms to 30 s.
    pub backoff: Backoff,
    /// Whether a batch that timed out is retried (it may have arrived: a retry may duplicate it);
    /// default true.
    pub retry_on_timeout: bool,
    /// The circuit breaker of each target.
    pub breaker: BreakerConfig,
    /// Most bytes (estimated) queued in memory; default 8 MiB.
    pub queue_max_bytes: u64,
    /// The disk spool, if any.
    pub spool: Option<SpoolConfig>,
    /// The output that takes batches no target could take, if any.
    pub fallback: Option<String>,
    /// The rate limit, if any.
    pub rate_limit: Option<RateLimit>,
    /// Most events per second replayed from the spool (`replay_rate`), so that agents that lost
    /// the same backend do not all replay at full speed when it returns; `None`: unbounded.
    pub replay_rate: Option<f64>,
}

/// Default bound of a spool replay, in events per second: a router's two-hour spool (some
/// 700,000 events) drains in about 70 s, and 20 routers together send 200,000 a second.
pub const REPLAY_RATE: u64 = 10_000;

/// Default bound of a spool, in bytes.
pub const SPOOL_MAX_BYTES: u64 = 16 << 20;
/// Default size of a spool segment, in bytes.
pub const SPOOL_SEGMENT_BYTES: u64 = 1 << 20;

impl Default for DeliveryConfig {
    fn default() -> DeliveryConfig {
        DeliveryConfig {
            strategy: Strategy::Failover,
            retries: 3,
            backoff: Backoff {
                initial: Duration::from_millis(500),
                max: Duration::from_secs(30),
            },
            retry_on_timeout: true,
            breaker: BreakerConfig {
                failures: 5,
                // Probes grow from about 1 s up to this: a backend back after an outage is found
                // (and the spool replayed) within 5 s, at the cost of a connection attempt every
                // 5 s at most while it is down.
                reset_timeout: Duration::from_secs(5),
                expected_in: None,
            },
            queue_max_bytes: 8 << 20,
            spool: None,
            fallback: None,
            rate_limit: None,
            replay_rate: Some(REPLAY_RATE as f64),
        }
    }
}

/// Reads the delivery keys of output `name` (of type `kind`).
pub fn read(
    t: &mut Table<'_>,
    name: &str,
    kind: &str,
    state_dir: &Path,
    problems: &mut Problems,
) -> DeliveryConfig {
    let strategy = match t.choice(
        "strategy",
        &[
            "failover",
            "round_robin",
            "carbon_ch",
            "fnv1a_ch",
            "jump_fnv1a_ch",
        ],
        "failover",
        problems,
    ) {
        "round_robin" => Strategy::RoundRobin,
        ring @ ("carbon_ch" | "fnv1a_ch" | "jump_fnv1a_ch") => read_ring(t, ring, kind, problems),
        _ => Strategy::Failover,
    };
    let d = DeliveryConfig::default();
    let ms = Duration::from_millis;
    let initial = t.duration_at_least("retry_delay", d.backoff.initial, ms(1), problems);
    let max = t.duration_at_least("retry_max_delay", d.backoff.max, initial, problems);
    let expected_in = t
        .field("expected_in")
        .is_some()
        .then(|| t.duration_at_least("expected_in", Duration::ZERO, ms(1), problems));
    let spool = t.field("spool").and_then(|field| {
        let mut s = field.table(problems)?;
        let dir = s.get_or("dir", state_dir.join("spool").join(name), problems);
        let max_bytes = s.number_in("max_bytes", SPOOL_MAX_BYTES, 4096, 1 << 40, problems);
        let segment_bytes = s.number_in(
            "segment_bytes",
            SPOOL_SEGMENT_BYTES,
            1024,
            1 << 32,
            problems,
        );
        let when_full = match s.choice(
            "when_full",
            &["drop_oldest", "drop_newest"],
            "drop_oldest",
            problems,
        ) {
            "drop_newest" => WhenFull::DropNewest,
            _ => WhenFull::DropOldest,
        };
        let fsync = match s.choice(
            "fsync",
            &["never", "segment", "always"],
            "segment",
            problems,
        ) {
            "never" => Fsync::Never,
            "always" => Fsync::Always,
            _ => Fsync::Segment,
        };
        s.finish(problems);
        Some(SpoolConfig {
            dir,
            max_bytes,
            segment_bytes: segment_bytes
                .max(max_bytes.div_ceil(MAX_SEGMENTS))
                .min(max_bytes),
            when_full,
            fsync,
        })
    });
    let rate_limit = t.field("rate_limit").is_some().then(|| {
        let per_second = t.number_in("rate_limit", 1, 1, 100_000_000, problems) as f64;
        let burst = t.number_in("rate_burst", per_second as u64, 1, 100_000_000, problems) as f64;
        RateLimit { per_second, burst }
    });
    DeliveryConfig {
        strategy,
        retries: t.number_in("retries", u64::from(d.retries), 0, 100, problems) as u32,
        backoff: Backoff { initial, max },
        retry_on_timeout: t.get_or("retry_on_timeout", d.retry_on_timeout, problems),
        breaker: BreakerConfig {
            failures: t.number_in(
                "breaker_failures",
                u64::from(d.breaker.failures),
                1,
                1000,
                problems,
            ) as u32,
            reset_timeout: t.duration_at_least(
                "breaker_reset",
                d.breaker.reset_timeout,
                ms(10),
                problems,
            ),
            expected_in,
        },
        queue_max_bytes: t.number_in(
            "queue_max_bytes",
            d.queue_max_bytes,
            4096,
            1 << 40,
            problems,
        ),
        spool,
        fallback: t.get::<String>("fallback", problems),
        rate_limit,
        replay_rate: match t.number_in("replay_rate", REPLAY_RATE, 0, 100_000_000, problems) {
            0 => None,
            n => Some(n as f64),
        },
    }
}

/// Reads the keys of a consistent-hashing strategy (`strategy` is `ring`): `relay`, `replication`
/// and `diverse_replicas`.
fn read_ring(t: &mut Table<'_>, ring: &str, kind: &str, problems: &mut Problems) -> Strategy {
    if kind != "graphite" {
        problems.at(
            t.as_field(),
            format!("strategy \"{ring}\" places Graphite paths: only for \"type\": \"graphite\""),
        );
    }
    let relays: &[&'static str] = if ring == "carbon_ch" {
        &["carbon-relay", "carbon-c-relay"]
    } else {
        &["carbon-c-relay"]
    };
    let hash = match (ring, t.choice("relay", relays, relays[0], problems)) {
        ("fnv1a_ch", _) => RingHash::Fnv1a,
        ("jump_fnv1a_ch", _) => RingHash::JumpFnv1a,
        (_, "carbon-c-relay") => RingHash::CarbonCRelay,
        _ => RingHash::CarbonRelay,
    };
    let replication = t.number_in("replication", 1, 1, 16, problems) as usize;
    let diverse = match t.field("diverse_replicas") {
        Some(field) => match field.parse::<bool>(problems) {
            Some(true) if hash != RingHash::CarbonRelay => {
                problems.at(
                    &field,
                    "carbon-c-relay has no diverse replicas: remove \"diverse_replicas\" or set it to false",
                );
                false
            }
            Some(diverse) => diverse,
            None => false,
        },
        // carbon's DIVERSE_REPLICAS defaults to True; carbon-c-relay has no such setting.
        None => hash == RingHash::CarbonRelay,
    };
    Strategy::CarbonCh {
        hash,
        replication,
        diverse,
    }
}

/// Reads an output's destinations: `host` (with `port`, default `default_port`) for one, or
/// `targets`, a list of `"host:port"` (Graphite: `"host:port:instance"` too) for several.
pub fn read_targets(
    t: &mut Table<'_>,
    default_port: u16,
    problems: &mut Problems,
) -> Option<Vec<Destination>> {
    let host = t.field("host");
    let port = t.number_in("port", u64::from(default_port), 1, 65_535, problems) as u16;
    let targets = t.field("targets");
    match (host, targets) {
        (Some(_), Some(field)) => {
            problems.at(
                &field,
                "set either \"host\" (and \"port\") for one target or \"targets\" for several, not both",
            );
            None
        }
        (Some(field), None) => match field.as_str().map(str::trim) {
            Some(h) if !h.is_empty() => Some(vec![Destination::new(h, port)]),
            _ => {
                problems.expected(&field, "a host name or address");
                None
            }
        },
        (None, Some(field)) => field.non_empty_list("\"host:port\"", problems, |item, problems| {
            match item.as_str().and_then(Destination::parse) {
                Some(d) if d.port != 0 => Some(d),
                _ => {
                    problems.expected(item, "\"host:port\" or \"host:port:instance\"");
                    None
                }
            }
        }),
        (None, None) => {
            problems.at(
                t.as_field(),
                "missing required key \"host\" (or \"targets\", a list of \"host:port\")",
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::reader::read_section;

    fn delivery(text: &str) -> Result<DeliveryConfig, Vec<String>> {
        read_section(text, |t, p| {
            Some(read(t, "out", "graphite", Path::new("/state"), p))
        })
    }

    fn targets(text: &str) -> Result<Vec<Destination>, Vec<String>> {
        read_section(text, |t, p| read_targets(t, 2003, p))
    }

    #[test]
    fn defaults_are_bounded_and_without_spool() {
        let d = delivery("{}").unwrap();
        assert_eq!(d.strategy, Strategy::Failover);
        assert_eq!((d.retries, d.retry_on_timeout), (3, true));
        assert_eq!(d.breaker.failures, 5);
        assert_eq!(d.queue_max_bytes, 8 << 20);
        assert!(d.spool.is_none() && d.fallback.is_none() && d.rate_limit.is_none());
        let d = delivery(r#"{"spool": {}, "strategy": "carbon_ch", "replication": 2}"#).unwrap();
        let spool = d.spool.unwrap();
        assert_eq!(spool.dir, Path::new("/state/spool/out"));
        assert_eq!(
            (spool.max_bytes, spool.when_full, spool.fsync),
            (SPOOL_MAX_BYTES, WhenFull::DropOldest, Fsync::Segment)
        );
        assert_eq!(
            d.strategy,
            Strategy::CarbonCh {
                hash: RingHash::CarbonRelay,
                replication: 2,
                diverse: true
            }
        );
    }

    #[test]
    fn each_ring_names_the_relay_it_matches() {
        let ring = |text: &str| delivery(text).map(|d| d.strategy);
        assert_eq!(
            ring(r#"{"strategy": "carbon_ch", "relay": "carbon-c-relay"}"#).unwrap(),
            Strategy::CarbonCh {
                hash: RingHash::CarbonCRelay,
                replication: 1,
                diverse: false
            }
        );
        assert_eq!(
            ring(r#"{"strategy": "fnv1a_ch", "replication": 3}"#).unwrap(),
            Strategy::CarbonCh {
                hash: RingHash::Fnv1a,
                replication: 3,
                diverse: false
            }
        );
        assert_eq!(
            ring(r#"{"strategy": "jump_fnv1a_ch"}"#).unwrap(),
            Strategy::CarbonCh {
                hash: RingHash::JumpFnv1a,
                replication: 1,
                diverse: false
            }
        );
        assert_eq!(
            ring(r#"{"strategy": "carbon_ch", "diverse_replicas": false}"#).unwrap(),
            Strategy::CarbonCh {
                hash: RingHash::CarbonRelay,
                replication: 1,
                diverse: false
            }
        );
        let e = ring(r#"{"strategy": "fnv1a_ch", "relay": "carbon-relay"}"#).unwrap_err();
        assert!(e[0].contains("\"carbon-c-relay\""), "{e:?}");
        let e = ring(
            r#"{"strategy": "carbon_ch", "relay": "carbon-c-relay", "diverse_replicas": true}"#,
        )
        .unwrap_err();
        assert!(e[0].contains("no diverse replicas"), "{e:?}");
    }

    #[test]
    fn bad_delivery_keys_are_refused() {
        let e = delivery(
            r#"{"strategy": "random", "spool": {"fsync": "sometimes", "size": 1}, "retries": -1}"#,
        )
        .unwrap_err();
        assert_eq!(e.len(), 4, "{e:?}");
        let e = read_section(r#"{"strategy": "carbon_ch"}"#, |t, p| {
            Some(read(t, "r", "riemann", Path::new("/s"), p))
        })
        .unwrap_err();
        assert!(e[0].contains("only for \"type\": \"graphite\""), "{e:?}");
    }

    #[test]
    fn one_host_or_a_list_of_targets() {
        let t = targets(r#"{"host": "c1", "port": 2013}"#).unwrap();
        assert_eq!(t, vec![Destination::new("c1", 2013)]);
        let t = targets(r#"{"targets": ["c1:2004:a", "[::1]:2004"]}"#).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].name(), "c1:2004:a");
        assert_eq!(t[1].addr(), "[::1]:2004");
        let e = targets(r#"{"host": "c1", "targets": ["c2:1"]}"#).unwrap_err();
        assert!(e[0].contains("not both"), "{e:?}");
        let e = targets(r#"{"targets": ["c2"]}"#).unwrap_err();
        assert!(e[0].contains("\"host:port\""), "{e:?}");
        let e = targets("{}").unwrap_err();
        assert!(e[0].contains("missing required key \"host\""), "{e:?}");
    }
}
