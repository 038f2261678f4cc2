//! Counters to rates: the per-second rate of a monotonically increasing counter between two
//! samples, with 32-bit and 64-bit wraparound told apart from a reset.
//!
//! A counter that went backwards wrapped if the distance forward around its width (2^32 when both
//! samples fit in 32 bits, else 2^64) is less than half that width; otherwise it was reset (the
//! interface was re-created, the box rebooted), and no rate is given for that interval. No negative
//! rate ever comes out, and no absurd one from a reset.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

/// One saved sample: the counter's value and when it was read, in milliseconds since the epoch.
pub type Sample = (u64, u64);

#[derive(Debug, Clone, Copy)]
struct Entry {
    value: u64,
    at_ms: u64,
    round: u64,
}

/// The last sample of every counter of one source instance.
#[derive(Debug)]
pub struct Rates {
    entries: HashMap<String, Entry>,
    max_age_ms: u64,
    round: u64,
}

impl Rates {
    /// An empty set whose samples give a rate only while younger than `max_age`.
    pub fn new(max_age: Duration) -> Rates {
        Rates {
            entries: HashMap::new(),
            max_age_ms: max_age.as_millis() as u64,
            round: 1,
        }
    }

    /// A set starting from `saved` samples (as [`Rates::samples`] gave them before a restart).
    pub fn restore(max_age: Duration, saved: impl IntoIterator<Item = (String, Sample)>) -> Rates {
        let mut rates = Rates::new(max_age);
        rates.entries = saved
            .into_iter()
            .map(|(k, (value, at_ms))| {
                (
                    k,
                    Entry {
                        value,
                        at_ms,
                        round: 0,
                    },
                )
            })
            .collect();
        rates
    }

    /// Records `value` of the counter `key` read at `now`, and returns its rate per second since
    /// the previous sample: `None` for the first sample, after a reset, when the previous sample is
    /// older than the maximum age, or when no time passed.
    pub fn rate(&mut self, key: &str, value: u64, now: SystemTime) -> Option<f64> {
        let at_ms = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let entry = Entry {
            value,
            at_ms,
            round: self.round,
        };
        let Some(last) = self.entries.get_mut(key) else {
            self.entries.insert(key.to_owned(), entry);
            return None;
        };
        let previous = std::mem::replace(last, entry);
        let elapsed_ms = at_ms
            .checked_sub(previous.at_ms)
            .filter(|&ms| ms > 0 && ms < self.max_age_ms)?;
        let delta = increase(previous.value, value)?;
        Some(delta as f64 * 1000.0 / elapsed_ms as f64)
    }

    /// Ends a collection: counters not seen since the last call are forgotten (an interface that
    /// went away, a process that exited), so the set never grows without bound.
    pub fn end_round(&mut self) {
        let round = self.round;
        self.entries.retain(|_, e| e.round == round);
        self.round += 1;
    }

    /// Every sample, for the persistent cache.
    pub fn samples(&self) -> impl Iterator<Item = (&str, Sample)> {
        self.entries
            .iter()
            .map(|(k, e)| (k.as_str(), (e.value, e.at_ms)))
    }
}

/// How much a counter grew from `last` to `now`, across a wrap; `None` for a reset.
pub fn increase(last: u64, now: u64) -> Option<u64> {
    if now >= last {
        return Some(now - last);
    }
    let fits_32 = last <= u64::from(u32::MAX);
    let (forward, half) = if fits_32 {
        ((u64::from(u32::MAX) - last) + now + 1, 1u64 << 31)
    } else {
        (
            (u64::MAX - last).wrapping_add(now).wrapping_add(1),
            1u64 << 63,
        )
    };
    (forward < half).then_some(forward)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn a_32_bit_wrap_continues_the_count() {
        assert_eq!(increase(u64::from(u32::MAX) - 99, 900), Some(1000));
    }

    #[test]
    fn a_64_bit_wrap_continues_the_count() {
        assert_eq!(increase(u64::MAX - 99, 900), Some(1000));
    }

    #[test]
    fn a_large_step_backwards_is_a_reset() {
        assert_eq!(
            increase(5_000_000, 100),
            None,
            "32-bit counter far from the top"
        );
        assert_eq!(
            increase(1 << 40, 100),
            None,
            "64-bit counter far from the top"
        );
        assert_eq!(increase(7, 7), Some(0));
    }

    #[test]
    fn rates_are_per_second_and_never_negative() {
        let mut r = Rates::new(Duration::from_secs(20));
        assert_eq!(r.rate("rx", 100, at(100)), None, "first sample");
        assert_eq!(r.rate("rx", 2100, at(110)), Some(200.0));
        assert_eq!(r.rate("rx", 50, at(120)), None, "reset");
        assert_eq!(
            r.rate("rx", 150, at(130)),
            Some(10.0),
            "counting again after the reset"
        );
        assert_eq!(r.rate("rx", 160, at(130)), None, "no time passed");
        assert_eq!(r.rate("rx", 400, at(200)), None, "previous sample too old");
        assert_eq!(r.rate("rx", 410, at(201)), Some(10.0));
    }

    #[test]
    fn counters_not_seen_in_a_round_are_forgotten() {
        let mut r = Rates::new(Duration::from_secs(20));
        r.rate("a", 1, at(1));
        r.rate("b", 1, at(1));
        r.end_round();
        r.rate("a", 2, at(2));
        r.end_round();
        let keys: Vec<&str> = r.samples().map(|(k, _)| k).collect();
        assert_eq!(keys, vec!["a"]);
    }

    #[test]
    fn restored_samples_give_a_rate_at_once() {
        let mut r = Rates::restore(
            Duration::from_secs(20),
            [("rx".to_owned(), (1000, 100_000))],
        );
        assert_eq!(r.rate("rx", 3000, at(110)), Some(200.0));
    }

    /// Property: whatever two samples come in, a rate is finite, never negative, and never more
    /// than the counter could have grown: by less than half its width (a wrap) or by the plain
    /// difference.
    #[test]
    fn any_two_samples_give_a_sane_rate_or_none() {
        fn prop(last: u64, now: u64, ms: u16) -> bool {
            let mut r = Rates::new(Duration::from_secs(120));
            let t0 = at(1_000);
            r.rate("c", last, t0);
            let Some(rate) = r.rate("c", now, t0 + Duration::from_millis(u64::from(ms))) else {
                return true;
            };
            let width_half = if last <= u64::from(u32::MAX) {
                1u64 << 31
            } else {
                1u64 << 63
            };
            let bound = if now >= last { now - last } else { width_half };
            rate.is_finite()
                && rate >= 0.0
                && rate * f64::from(ms) / 1000.0 <= bound as f64 * 1.000_001
        }
        quickcheck::quickcheck(prop as fn(u64, u64, u16) -> bool);
    }

    /// Property: a 32-bit counter that grows by less than 2^31 between samples gives exactly that
    /// growth, from any start and across the wrap; a 64-bit one likewise below 2^63.
    #[test]
    fn growth_across_a_wrap_is_counted_exactly() {
        fn prop(start: u32, step: u32, big_start: u64, big_step: u64) -> bool {
            let step = u64::from(step >> 1);
            let now = (u64::from(start) + step) & u64::from(u32::MAX);
            let big_step = big_step >> 1;
            let big_start = big_start | (1 << 40);
            increase(u64::from(start), now) == Some(step)
                && increase(big_start, big_start.wrapping_add(big_step)) == Some(big_step)
        }
        quickcheck::quickcheck(prop as fn(u32, u32, u64, u64) -> bool);
    }

    /// Property: a 32-bit counter that went back is a wrap when the distance forward around the
    /// width is under half of it, and a reset (no increase) otherwise.
    #[test]
    fn a_step_back_is_a_wrap_only_within_half_the_width() {
        fn prop(last: u32, back: u32) -> bool {
            let (last, back) = (u64::from(last), u64::from(back));
            let Some(now) = last.checked_sub(back).filter(|_| back > 0) else {
                return true;
            };
            let forward = (1u64 << 32) - back;
            increase(last, now) == (forward < 1 << 31).then_some(forward)
        }
        quickcheck::quickcheck(prop as fn(u32, u32) -> bool);
    }
}
