//! A fixed-rate ticker: ticks at start + k × interval, never drifting, never bursting.
//!
//! When a collection overruns one or more ticks, the missed ticks are skipped and counted; the next
//! tick is the first one still in the future.
//!
//! The tick count is a u64 and its offset from the start is computed in 128-bit nanoseconds, so no
//! interval and no uptime can wrap it: a 1 ns interval reaches the end of a u64 after 584 years.

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
        let offset = offset(self.interval, self.tick);
        // Beyond what an Instant can hold only past the age of the universe; never in a run.
        self.start
            .checked_add(offset)
            .unwrap_or(self.start + MAX_OFFSET)
    }

    /// Moves to the next tick still ahead of `now`; returns how many ticks were skipped to get there.
    pub fn advance(&mut self, now: Instant) -> u64 {
        let next = self.tick.saturating_add(1);
        let elapsed = now.saturating_duration_since(self.start);
        // The first tick that is not in the past.
        let ticks_behind = elapsed.as_nanos() / self.interval.as_nanos().max(1);
        let first_ahead = u64::try_from(ticks_behind)
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let target = next.max(first_ahead);
        self.tick = target;
        target - next
    }
}

/// Where in its interval the first tick of the source `name` falls: a fixed share of the interval
/// picked by a hash of the name, so that many sources of one interval do not all start at once,
/// and each starts at the same phase every time.
pub fn spread(name: &str, interval: Duration) -> Duration {
    let share = u128::from(crate::crc32::checksum(name.as_bytes()));
    let nanos = interval.as_nanos().saturating_mul(share) >> 32;
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// The largest offset [`Schedule::due`] adds to its start: a thousand years.
const MAX_OFFSET: Duration = Duration::from_secs(1000 * 365 * 24 * 3600);

/// `interval × tick`, without wrapping; saturates at [`MAX_OFFSET`].
fn offset(interval: Duration, tick: u64) -> Duration {
    let nanos = interval.as_nanos().saturating_mul(u128::from(tick));
    let secs = u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX);
    let offset = Duration::new(secs, (nanos % 1_000_000_000) as u32);
    offset.min(MAX_OFFSET)
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

    #[test]
    fn a_tick_count_past_u32_does_not_wrap() {
        let t0 = Instant::now();
        let interval = Duration::from_millis(10);
        let mut s = Schedule::new(t0, interval);
        // 2^32 + 3 ticks of 10 ms: 497 days and 30 ms of uptime.
        s.tick = (1u64 << 32) + 3;
        let expected = Duration::from_millis(10 * ((1u64 << 32) + 3));
        assert_eq!(s.due(), t0 + expected);
        // A collection ending 5 ms after that tick: the next is the one just after, none skipped.
        assert_eq!(s.advance(t0 + expected + Duration::from_millis(5)), 0);
        assert_eq!(s.due(), t0 + expected + interval);
        assert!(s.due() > t0 + expected, "the due time went back in time");
    }

    #[test]
    fn no_interval_and_tick_count_overflow() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, Duration::from_secs(u64::MAX / 4));
        s.tick = u64::MAX - 1;
        assert_eq!(s.due(), t0 + MAX_OFFSET);
        // The tick count itself saturates rather than wrapping.
        assert_eq!(s.advance(t0), 0);
        assert_eq!(s.tick, u64::MAX);
    }

    #[test]
    fn first_ticks_spread_evenly_over_the_interval_and_stay_put() {
        let interval = Duration::from_secs(10);
        let offsets: Vec<Duration> = (0..1000)
            .map(|i| spread(&format!("check{i}"), interval))
            .collect();
        assert!(offsets.iter().all(|o| *o < interval));
        // Each second of the interval gets about a tenth of the 1,000 first runs.
        for second in 0..10 {
            let n = offsets.iter().filter(|o| o.as_secs() == second).count();
            assert!((60..=140).contains(&n), "second {second}: {n} first runs");
        }
        assert_eq!(
            spread("check1", interval),
            offsets[1],
            "the same every time"
        );
        assert_eq!(spread("x", Duration::ZERO), Duration::ZERO);
    }
}
