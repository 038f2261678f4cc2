//! A token bucket: at most `rate` events per second on average, with bursts up to `burst`.

use std::time::{Duration, Instant};

/// The rate limit of one output.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket refilled at `rate` tokens per second, holding at most `burst`.
    pub fn new(rate: f64, burst: f64, now: Instant) -> TokenBucket {
        let burst = burst.max(1.0);
        TokenBucket {
            rate: rate.max(f64::MIN_POSITIVE),
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
    }

    /// Takes up to `wanted` tokens; returns how many it got (possibly 0).
    pub fn take(&mut self, wanted: usize, now: Instant) -> usize {
        self.refill(now);
        let got = (self.tokens.floor() as usize).min(wanted);
        self.tokens -= got as f64;
        got
    }

    /// Spends `n` tokens even when the bucket holds fewer: the debt is paid back (by waiting)
    /// before it has any again.
    pub fn spend(&mut self, n: usize, now: Instant) {
        self.refill(now);
        self.tokens -= n as f64;
    }

    /// How long until `n` tokens (at most the burst) are available.
    pub fn wait_for(&self, n: usize, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        let have = (self.tokens + elapsed * self.rate).min(self.burst);
        let need = (n as f64).min(self.burst) - have;
        if need <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(need / self.rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_to_the_rate_after_the_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(100.0, 50.0, t0);
        assert_eq!(b.take(80, t0), 50, "the burst");
        assert_eq!(b.take(10, t0), 0);
        assert_eq!(b.wait_for(10, t0), Duration::from_millis(100));
        assert_eq!(b.take(10, t0 + Duration::from_millis(100)), 10);
        // Over 10 s at most 100/s pass, whatever is asked.
        let mut passed = 0;
        for ms in (200..=10_100).step_by(10) {
            passed += b.take(1000, t0 + Duration::from_millis(ms));
        }
        assert!((990..=1000).contains(&passed), "{passed}");
    }

    #[test]
    fn spending_more_than_the_bucket_holds_is_paid_back_by_waiting() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000.0, 1000.0, t0);
        assert!(b.wait_for(1, t0).is_zero());
        // A spooled batch of 500 and one of 1,500: 1,000 tokens owed after the burst.
        b.spend(500, t0);
        b.spend(1500, t0);
        assert_eq!(b.wait_for(1, t0), Duration::from_millis(1001));
        assert!(b.wait_for(1, t0 + Duration::from_millis(1001)).is_zero());
    }
}
