//! The delivery settings every output shares: targets and strategy, retries, circuit breaker,
//! queue bound in bytes, disk spool, fallback output and rate limit. Read once at load; the
//! defaults live here (see docs/delivery.md).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::backoff::Backoff;
use super::breaker::BreakerConfig;
use super::carbon_ch::RingHash;
use super::spool::{Fsync, MAX_SEGMENTS, SpoolConfig, WhenFull};
use crate::config::AgentConfig;
use crate::config::reader::{self, Field, Problems, Table};
use crate::event::Event;
use crate::outputs::{self, OutputSpec};
use crate::pattern::{Pattern, Selector};

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

/// Reads the delivery keys of output `name`.
pub fn read(
    t: &mut Table<'_>,
    name: &str,
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
        ring @ ("carbon_ch" | "fnv1a_ch" | "jump_fnv1a_ch") => read_ring(t, ring, problems),
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
fn read_ring(t: &mut Table<'_>, ring: &str, problems: &mut Problems) -> Strategy {
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

/// One configured output, with the settings every output shares.
#[derive(Debug, Clone)]
pub struct OutputConfig {
    /// The output's name, unique among outputs; the `type` unless set.
    pub name: String,
    /// The config `type`.
    pub kind: &'static str,
    /// Which events (by service name) this output takes.
    pub selector: Selector,
    /// Capacity of the output's queue, in events; default 10,000.
    pub queue_size: usize,
    /// Most events per write; default 500.
    pub batch_size: usize,
    /// Longest time an event waits for its batch to fill; default 1 s.
    pub batch_timeout: Duration,
    /// Targets, retries, breaker, spool, fallback and rate limit.
    pub delivery: DeliveryConfig,
    /// The type's own settings.
    pub spec: Arc<dyn OutputSpec>,
}

impl OutputConfig {
    /// A text equal for two configs exactly when they would run the same output. A reload keeps an
    /// unchanged output running; a changed one's new writer takes over its queue.
    pub fn fingerprint(&self) -> String {
        format!(
            "{}|{:?}|{}|{}|{:?}|{:?}|{:?}",
            self.kind,
            self.selector,
            self.queue_size,
            self.batch_size,
            self.batch_timeout,
            self.delivery,
            self.spec
        )
    }
}

/// Reads the `outputs` array, with the `agent` section for the defaults it gives: spools under
/// `agent.state_dir`, and what each output type takes from it (`agent.hostname`).
pub fn read_all(
    field: &Field<'_>,
    agent: &AgentConfig,
    problems: &mut Problems,
) -> Vec<OutputConfig> {
    let outputs = reader::named_list(field, problems, |t, p| read_one(t, agent, p), |c| &c.name);
    if let Err(message) = super::check_fallbacks(&outputs) {
        problems.at(field, message);
    }
    outputs
}

fn read_one(
    t: &mut Table<'_>,
    agent: &AgentConfig,
    problems: &mut Problems,
) -> Option<OutputConfig> {
    let kind = reader::registry_type(
        t,
        "output",
        outputs::REGISTRY,
        |e| e.name,
        outputs::LEFT_OUT,
        problems,
    );
    let name = t.get::<String>("name", problems);
    let selector = Selector {
        include: t
            .get_or::<Vec<String>>("include", Vec::new(), problems)
            .iter()
            .map(|p| Pattern::new(p))
            .collect(),
        exclude: t
            .get_or::<Vec<String>>("exclude", Vec::new(), problems)
            .iter()
            .map(|p| Pattern::new(p))
            .collect(),
    };
    let queue_size = t.number_in("queue_size", 10_000, 1, 10_000_000, problems) as usize;
    let batch_size = t.number_in("batch_size", 500, 1, 100_000, problems) as usize;
    let batch_timeout = t.duration_at_least(
        "batch_timeout",
        Duration::from_secs(1),
        Duration::ZERO,
        problems,
    );
    // Without a known type its keys cannot be told from typos: report only the type.
    let kind = kind?;
    let name = name.unwrap_or_else(|| kind.name.to_owned());
    let delivery = read(t, &name, &agent.state_dir, problems);
    let spec = (kind.read)(t, agent, problems);
    t.finish(problems);
    if let (Some(spec), Strategy::CarbonCh { replication, .. }) = (&spec, delivery.strategy) {
        let probe = Event::new("pipit.placement", "pipit").with_metric(1i64);
        if !spec.placement_key(&probe, &mut String::new()) {
            problems.at(
                t.as_field(),
                "a consistent-hashing strategy places events by a key this output type has none of: \
                 use it with an output that places events (\"type\": \"graphite\"), or remove \"strategy\"",
            );
        } else if replication > spec.targets().len() {
            problems.at(
                t.as_field(),
                "replication is larger than the number of targets",
            );
        }
    }
    Some(OutputConfig {
        name,
        kind: kind.name,
        selector,
        queue_size,
        batch_size,
        batch_timeout,
        delivery,
        spec: spec?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::reader::read_section;

    fn delivery(text: &str) -> Result<DeliveryConfig, Vec<String>> {
        read_section(text, |t, p| Some(read(t, "out", Path::new("/state"), p)))
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
        let e = crate::config_file::parse(
            "t.json",
            r#"{"outputs": [{"type": "stdout", "strategy": "carbon_ch"}]}"#,
        )
        .unwrap_err();
        assert!(
            format!("{e}").contains("an output that places events"),
            "{e}"
        );
    }
}
