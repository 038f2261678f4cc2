//! An output's targets, each with its own built output and circuit breaker, and the strategy that
//! says which of them a batch goes to.

use std::time::Instant;

use super::breaker::{Breaker, BreakerState};
use super::carbon_ch::{Destination, Ring};
use super::config::Strategy;
use crate::event::Event;
use crate::outputs::{self, Output, OutputConfig, OutputError};

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
                output: config.spec.build_target(i)?,
                breaker: Breaker::new(config.delivery.breaker, name, &log_target),
            });
        }
        let ring = match config.delivery.strategy {
            Strategy::CarbonCh { .. } => Some(Ring::new(
                names
                    .iter()
                    .map(|n| {
                        Destination::parse(n)
                            .map(|d| d.node)
                            .ok_or_else(|| OutputError::failed(format!("bad destination {n}")))
                    })
                    .collect::<Result<_, _>>()?,
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

    /// True when every target's breaker is open (not to be contacted now).
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
