//! A fixed-rate ticker: ticks at start + k × interval, never drifting, never bursting.
//!
//! When a collection overruns one or more ticks, the missed ticks are skipped and counted; the next
//! tick is the first one still in the future.

use std::time::{Duration, Instant};

/// The ticker of one source instance.
#[derive(Debug, Clone)]
pub struct Schedule {
    start: Instant,
    interval: Duration,
    tick: u64,
}

impl Schedule {
    /// A schedule whose first tick is at `start`.
    pub fn new(start: Instant, interval: Duration) -> Schedule {
        Schedule {
            start,
            interval,
            tick: 0,
        }
    }

    /// When the current tick is due.
    pub fn due(&self) -> Instant {
        self.start + self.interval * (self.tick as u32)
    }

    /// Moves to the next tick still ahead of `now`; returns how many ticks were skipped to get there.
    pub fn advance(&mut self, now: Instant) -> u64 {
        let next = self.tick + 1;
        let elapsed = now.saturating_duration_since(self.start);
        // The first tick that is not in the past.
        let first_ahead = (elapsed.as_nanos() / self.interval.as_nanos().max(1)) as u64 + 1;
        let target = next.max(first_ahead);
        self.tick = target;
        target - next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_do_not_drift() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, Duration::from_millis(100));
        // Each collection takes 30 ms: the ticks stay on the 100 ms grid.
        for k in 1..=50u32 {
            let now = s.due() + Duration::from_millis(30);
            assert_eq!(s.advance(now), 0);
            assert_eq!(s.due(), t0 + Duration::from_millis(100) * k);
        }
    }

    #[test]
    fn an_overrun_skips_and_counts_missed_ticks() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, Duration::from_millis(100));
        // A collection started at tick 0 ends at 350 ms: ticks 1, 2 and 3 were missed.
        assert_eq!(s.advance(t0 + Duration::from_millis(350)), 3);
        assert_eq!(s.due(), t0 + Duration::from_millis(400));
        // Ending exactly on a tick skips it too: it is no longer ahead.
        assert_eq!(s.advance(t0 + Duration::from_millis(500)), 1);
        assert_eq!(s.due(), t0 + Duration::from_millis(600));
    }
}
