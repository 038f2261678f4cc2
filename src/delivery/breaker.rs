//! A circuit breaker per target: after `failures` consecutive failed (or too slow) deliveries the
//! target is open (not contacted), then half-open (one probe batch); a success closes it, a failure
//! opens it again. The first probe comes about a second after the breaker opened, and each failed
//! probe doubles the wait, up to `reset_timeout`, each wait jittered (50–100 %): a backend that
//! comes back after a short outage is found within seconds, a long outage costs few probes, and
//! agents that lost the same backend together do not probe it together. Each change of state is
//! logged once: opening (warn) and closing (info); the probes of an outage and their failures at
//! debug level, so a long outage logs two lines.

use std::time::{Duration, Instant};

use super::backoff::{Backoff, Jitter};

/// The wait before the first probe of an open breaker (jittered), unless `reset_timeout` is
/// shorter.
pub const FIRST_PROBE: Duration = Duration::from_secs(1);

/// The state of a breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Deliveries go through.
    Closed,
    /// The target is not contacted until the reset timeout passes.
    Open,
    /// One probe delivery is allowed; its outcome closes or reopens the breaker.
    HalfOpen,
}

impl BreakerState {
    /// The state's name: `closed`, `open` or `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// Settings of a breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker.
    pub failures: u32,
    /// The longest an open breaker stays open before a probe (the waits grow from
    /// [`FIRST_PROBE`] up to it).
    pub reset_timeout: Duration,
    /// A delivery slower than this counts as a failure, even if it succeeded.
    pub expected_in: Option<Duration>,
}

/// The breaker of one target.
#[derive(Debug)]
pub struct Breaker {
    config: BreakerConfig,
    target: String,
    log_target: String,
    state: BreakerState,
    consecutive: u32,
    opened_at: Option<Instant>,
    /// How long the breaker stays open this time.
    open_for: Duration,
    /// Probes failed since the breaker opened.
    probes_failed: u32,
    jitter: Jitter,
}

impl Breaker {
    /// A closed breaker for `target` (named in log lines under `log_target`).
    pub fn new(config: BreakerConfig, target: &str, log_target: &str) -> Breaker {
        Breaker {
            config,
            target: target.to_owned(),
            log_target: log_target.to_owned(),
            state: BreakerState::Closed,
            consecutive: 0,
            opened_at: None,
            open_for: config.reset_timeout,
            probes_failed: 0,
            jitter: Jitter::new(),
        }
    }

    /// The wait before the next probe after `probes_failed` failed ones.
    fn probe_delay(&mut self) -> Duration {
        let backoff = Backoff {
            initial: FIRST_PROBE.min(self.config.reset_timeout),
            max: self.config.reset_timeout,
        };
        backoff.delay(self.probes_failed, &mut self.jitter)
    }

    /// The current state (an open breaker whose timeout passed reads as half-open).
    pub fn state(&self, now: Instant) -> BreakerState {
        match (self.state, self.opened_at) {
            (BreakerState::Open, Some(at)) if now >= at + self.open_for => BreakerState::HalfOpen,
            (state, _) => state,
        }
    }

    /// How long until an open breaker lets a probe through (zero when not open).
    pub fn until_probe(&self, now: Instant) -> Duration {
        match (self.state, self.opened_at) {
            (BreakerState::Open, Some(at)) => (at + self.open_for).saturating_duration_since(now),
            _ => Duration::ZERO,
        }
    }

    /// Whether a delivery may be tried now; moves an open breaker whose timeout passed to
    /// half-open.
    pub fn allow(&mut self, now: Instant) -> bool {
        let state = self.state(now);
        if state != self.state {
            self.state = state;
            log::debug!(target: &self.log_target, "{}: circuit half-open, probing", self.target);
        }
        state != BreakerState::Open
    }

    /// Records a delivery's outcome and how long it took.
    pub fn record(&mut self, now: Instant, ok: bool, took: Duration) {
        let too_slow = self.config.expected_in.is_some_and(|limit| took > limit);
        if ok && !too_slow {
            if self.state != BreakerState::Closed {
                log::info!(target: &self.log_target, "{}: circuit closed", self.target);
            }
            self.state = BreakerState::Closed;
            self.consecutive = 0;
            self.opened_at = None;
            self.probes_failed = 0;
            return;
        }
        self.consecutive = self.consecutive.saturating_add(1);
        let open = self.state == BreakerState::HalfOpen || self.consecutive >= self.config.failures;
        if open {
            if self.state == BreakerState::HalfOpen {
                self.probes_failed = self.probes_failed.saturating_add(1);
            }
            self.open_for = self.probe_delay();
            if self.state == BreakerState::HalfOpen {
                // A failed probe during an outage: at debug level, so a long outage logs once.
                log::debug!(target: &self.log_target, "{}: probe failed; circuit open again", self.target);
            } else if self.state != BreakerState::Open {
                let why = if too_slow {
                    " (deliveries slower than expected_in)"
                } else {
                    ""
                };
                log::warn!(
                    target: &self.log_target,
                    "{}: circuit open after {} failure(s){why}; probing again from {:.1}s on, then less often, at least every {}s",
                    self.target,
                    self.consecutive,
                    self.open_for.as_secs_f64(),
                    self.config.reset_timeout.as_secs_f64()
                );
            }
            self.state = BreakerState::Open;
            self.opened_at = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(expected_in: Option<Duration>) -> Breaker {
        Breaker::new(
            BreakerConfig {
                failures: 3,
                reset_timeout: Duration::from_secs(10),
                expected_in,
            },
            "t:1",
            "out.test",
        )
    }

    /// Fails every probe of `b` from `t`, returning the successive waits before each probe.
    fn failed_probes(b: &mut Breaker, mut t: Instant, n: usize) -> Vec<Duration> {
        let mut waits = Vec::new();
        for _ in 0..n {
            let wait = b.until_probe(t);
            assert!(!wait.is_zero() && !b.allow(t));
            t += wait;
            assert!(b.allow(t));
            assert_eq!(b.state(t), BreakerState::HalfOpen);
            b.record(t, false, Duration::ZERO);
            waits.push(wait);
        }
        waits
    }

    #[test]
    fn opens_after_consecutive_failures_then_probes_then_closes() {
        let t0 = Instant::now();
        let mut b = breaker(None);
        for _ in 0..2 {
            assert!(b.allow(t0));
            b.record(t0, false, Duration::ZERO);
        }
        assert_eq!(b.state(t0), BreakerState::Closed);
        b.record(t0, false, Duration::ZERO);
        assert_eq!(b.state(t0), BreakerState::Open);
        // The first probe within a second (jittered to half a second at least).
        let wait = b.until_probe(t0);
        assert!(
            (Duration::from_millis(500)..Duration::from_secs(1)).contains(&wait),
            "{wait:?}"
        );
        assert!(!b.allow(t0 + wait / 2));
        assert!(b.allow(t0 + wait));
        assert_eq!(b.state(t0 + wait), BreakerState::HalfOpen);
        b.record(t0 + wait, true, Duration::ZERO);
        assert_eq!(b.state(t0 + wait), BreakerState::Closed);
    }

    #[test]
    fn failed_probes_back_off_up_to_the_reset_timeout_and_a_success_starts_over() {
        let t0 = Instant::now();
        let mut b = breaker(None);
        for _ in 0..3 {
            b.record(t0, false, Duration::ZERO);
        }
        let waits = failed_probes(&mut b, t0, 8);
        for (i, wait) in waits.iter().enumerate() {
            let base = Duration::from_secs(1 << i.min(10)).min(Duration::from_secs(10));
            assert!(
                *wait >= base / 2 && *wait < base,
                "probe {i}: {wait:?} for {base:?}"
            );
        }
        let last = t0 + waits.iter().sum::<Duration>();
        let t = last + b.until_probe(last);
        assert!(b.allow(t));
        b.record(t, true, Duration::ZERO);
        for _ in 0..3 {
            b.record(t, false, Duration::ZERO);
        }
        assert!(b.until_probe(t) < Duration::from_secs(1));
    }

    #[test]
    fn a_slow_success_counts_as_a_failure() {
        let t0 = Instant::now();
        let mut b = breaker(Some(Duration::from_millis(100)));
        for _ in 0..3 {
            b.record(t0, true, Duration::from_millis(150));
        }
        assert_eq!(b.state(t0), BreakerState::Open);
    }

    #[test]
    fn a_success_resets_the_count() {
        let t0 = Instant::now();
        let mut b = breaker(None);
        b.record(t0, false, Duration::ZERO);
        b.record(t0, false, Duration::ZERO);
        b.record(t0, true, Duration::ZERO);
        b.record(t0, false, Duration::ZERO);
        b.record(t0, false, Duration::ZERO);
        assert_eq!(b.state(t0), BreakerState::Closed);
    }
}
