//! Exponential backoff with jitter, for retries and reconnects.

use std::time::{Duration, SystemTime};

/// Settings of a backoff: the first delay, doubling up to a maximum, each delay jittered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The delay before the first retry.
    pub initial: Duration,
    /// The longest delay.
    pub max: Duration,
}

impl Backoff {
    /// The delay before retry number `attempt` (0 for the first): `initial × 2^attempt`, capped at
    /// `max`, then scaled by a random factor in [0.5, 1.0) so that many agents retrying after the
    /// same outage do not arrive together.
    pub fn delay(&self, attempt: u32, rng: &mut Jitter) -> Duration {
        let base = self
            .initial
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.max);
        base.mul_f64(0.5 + rng.next_unit() / 2.0)
    }
}

/// A small non-cryptographic random source for jitter (xorshift64*).
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    /// Seeded from the clock and the process id, so agents started together still differ.
    pub fn new() -> Jitter {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Jitter::seeded(nanos ^ (u64::from(std::process::id()) << 32))
    }

    /// Seeded explicitly, for tests.
    pub fn seeded(seed: u64) -> Jitter {
        Jitter(seed | 1)
    }

    /// A number in [0, 1).
    pub fn next_unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Default for Jitter {
    fn default() -> Jitter {
        Jitter::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_maximum_with_jitter_in_range() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
        };
        let mut rng = Jitter::seeded(42);
        for attempt in 0..30 {
            let base = Duration::from_millis(100)
                .saturating_mul(1 << attempt.min(20))
                .min(Duration::from_secs(5));
            let d = b.delay(attempt, &mut rng);
            assert!(
                d >= base / 2 && d < base,
                "attempt {attempt}: {d:?} for base {base:?}"
            );
        }
    }

    #[test]
    fn jitter_spreads() {
        let mut rng = Jitter::seeded(7);
        let samples: Vec<f64> = (0..1000).map(|_| rng.next_unit()).collect();
        assert!(samples.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = samples.iter().sum::<f64>() / 1000.0;
        assert!((0.45..0.55).contains(&mean), "mean {mean}");
    }
}
