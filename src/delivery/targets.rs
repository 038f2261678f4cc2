//! An output's targets, each with its own built output and circuit breaker, and the strategy that
//! says which of them a batch goes to.

use std::time::{Duration, Instant};

use super::breaker::{Breaker, BreakerState};
use super::carbon_ch::Ring;
use super::config::OutputConfig;
use super::config::Strategy;
use crate::event::Event;
use crate::outputs::destination::Destination;
use crate::outputs::{self, Output, OutputError};

/// One target: its name, its output and its breaker.
pub struct Target {
    /// `host:port` (or the output's description when it has no address).
    pub name: String,
    /// The output writing to it.
    pub output: Box<dyn Output>,
    /// Its circuit breaker.
    pub breaker: Breaker,
}

/// A part of a batch and the targets to try for it, in order.
pub struct Part {
    /// Indexes into the group's targets: the first is tried first, the others are its failover.
    pub order: Vec<usize>,
    /// The events.
    pub events: Vec<Event>,
}

/// The targets of one output.
pub struct TargetGroup {
    /// The targets, in config order.
    pub targets: Vec<Target>,
    strategy: Strategy,
    ring: Option<Ring>,
    next: usize,
    key: String,
}

impl TargetGroup {
    /// Builds one output per target of `config`.
    pub fn build(config: &OutputConfig) -> Result<TargetGroup, OutputError> {
        let log_target = outputs::log_target(&config.name);
        let names = config.spec.targets();
        let mut targets = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            targets.push(Target {
                name: name.clone(),
                output: config.spec.build_target(i, &log_target)?,
                breaker: Breaker::new(config.delivery.breaker, name, &log_target),
            });
        }
        let ring = match config.delivery.strategy {
            Strategy::CarbonCh { hash, .. } => Some(Ring::new(
                hash,
                &names
                    .iter()
                    .map(|n| {
                        Destination::parse(n)
                            .ok_or_else(|| OutputError::BadTarget(format!("bad destination {n}")))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            )),
            _ => None,
        };
        Ok(TargetGroup {
            targets,
            strategy: config.delivery.strategy,
            ring,
            next: 0,
            key: String::new(),
        })
    }

    /// Splits a batch into the parts that go to different targets: the whole batch for `failover`
    /// and `round_robin` (starting at the next target in turn), one part per target for
    /// `carbon_ch` (an event that cannot be placed goes to the first target, whose output counts
    /// it as unencodable).
    pub fn plan(&mut self, spec: &dyn outputs::OutputSpec, batch: Vec<Event>) -> Vec<Part> {
        let n = self.targets.len();
        match (self.strategy, &self.ring) {
            (
                Strategy::CarbonCh {
                    replication,
                    diverse,
                    ..
                },
                Some(ring),
            ) => {
                let mut parts: Vec<Vec<Event>> = (0..n).map(|_| Vec::new()).collect();
                for event in batch {
                    let places = if spec.placement_key(&event, &mut self.key) {
                        ring.place(&self.key, replication, diverse)
                    } else {
                        vec![0]
                    };
                    if let Some((last, others)) = places.split_last() {
                        for &i in others {
                            parts[i].push(event.clone());
                        }
                        parts[*last].push(event);
                    }
                }
                parts
                    .into_iter()
                    .enumerate()
                    .filter(|(_, events)| !events.is_empty())
                    .map(|(i, events)| Part {
                        order: vec![i],
                        events,
                    })
                    .collect()
            }
            (Strategy::RoundRobin, _) => {
                let start = self.next % n;
                self.next = self.next.wrapping_add(1);
                vec![Part {
                    order: (0..n).map(|i| (start + i) % n).collect(),
                    events: batch,
                }]
            }
            _ => vec![Part {
                order: (0..n).collect(),
                events: batch,
            }],
        }
    }

    /// How long until some target may be contacted again (zero when one may be now).
    pub fn until_probe(&self, now: Instant) -> Duration {
        self.targets
            .iter()
            .map(|t| t.breaker.until_probe(now))
            .min()
            .unwrap_or(Duration::ZERO)
    }

    /// Whether every target's breaker is open (none may be contacted, not even for a probe).
    pub fn all_open(&self, now: Instant) -> bool {
        self.targets
            .iter()
            .all(|t| t.breaker.state(now) == BreakerState::Open)
    }

    /// Each target's name and breaker state.
    pub fn states(&self, now: Instant) -> Vec<(String, &'static str)> {
        self.targets
            .iter()
            .map(|t| (t.name.clone(), t.breaker.state(now).as_str()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config_file;
    use crate::delivery::carbon_ch::RingHash;

    fn group(outputs: &str) -> (TargetGroup, OutputConfig) {
        let text = format!(r#"{{"outputs": [{outputs}]}}"#);
        let config = config_file::parse("t.json", &text).unwrap_or_else(|e| panic!("{e:?}"));
        let output = config.outputs.into_iter().next().unwrap();
        (TargetGroup::build(&output).unwrap(), output)
    }

    fn events(n: usize) -> Vec<Event> {
        (0..n)
            .map(|i| Event::new(format!("m{i}"), "h").with_metric(i as i64))
            .collect()
    }

    #[test]
    fn failover_tries_in_order_and_round_robin_rotates() {
        let targets = r#""targets": ["a:1", "b:2", "c:3"]"#;
        let (mut g, o) = group(&format!(r#"{{"type": "graphite", {targets}}}"#));
        assert_eq!(g.targets.len(), 3);
        for _ in 0..2 {
            let parts = g.plan(o.spec.as_ref(), events(4));
            assert_eq!(parts.len(), 1);
            assert_eq!(
                (parts[0].order.clone(), parts[0].events.len()),
                (vec![0, 1, 2], 4)
            );
        }
        let (mut g, o) = group(&format!(
            r#"{{"type": "graphite", {targets}, "strategy": "round_robin"}}"#
        ));
        let starts: Vec<Vec<usize>> = (0..4)
            .map(|_| g.plan(o.spec.as_ref(), events(1)).remove(0).order)
            .collect();
        assert_eq!(
            starts,
            vec![vec![0, 1, 2], vec![1, 2, 0], vec![2, 0, 1], vec![0, 1, 2]]
        );
    }

    #[test]
    fn carbon_ch_splits_a_batch_as_the_ring_places_each_path() {
        let (mut g, o) = group(
            r#"{"type": "graphite", "targets": ["a:2004:x", "b:2004:y", "c:2004:z"],
                "strategy": "carbon_ch", "replication": 2}"#,
        );
        let ring = Ring::new(
            RingHash::CarbonRelay,
            &["a:2004:x", "b:2004:y", "c:2004:z"].map(|d| Destination::parse(d).unwrap()),
        );
        let parts = g.plan(o.spec.as_ref(), events(300));
        let total: usize = parts.iter().map(|p| p.events.len()).sum();
        assert_eq!(total, 600, "two copies of each");
        for part in &parts {
            assert_eq!(part.order.len(), 1);
            for e in &part.events {
                let places = ring.place(&format!("h.{}", e.service), 2, true);
                assert!(places.contains(&part.order[0]), "{} misplaced", e.service);
            }
        }
        assert_eq!(parts.len(), 3, "300 paths reach every node");
    }
}
