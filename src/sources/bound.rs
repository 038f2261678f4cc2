//! A bound on the series a source reports one by one within a group: the stations of a Wi-Fi
//! interface, the peers of a WireGuard device, the clients of an OpenVPN server. Past the bound
//! the rest are counted, not reported; which ones are reported stays the same from one
//! collection to the next (those reported before keep their place), so a newcomer never breaks
//! another's series. That the bound was reached is logged once, until the group is back under it.

use std::collections::{BTreeMap, BTreeSet};

/// Which items of each group were reported, and the bound.
#[derive(Debug)]
pub struct Bound {
    max: usize,
    /// What the items are, for the log line: `stations`, `peers`, `clients`.
    what: &'static str,
    /// The config key holding the bound, for the log line.
    key: &'static str,
    target: String,
    reported: BTreeMap<String, BTreeSet<String>>,
    /// Groups over the bound, logged.
    over: BTreeSet<String>,
    /// Groups chosen from since the last [`Bound::end_round`].
    seen: BTreeSet<String>,
}

impl Bound {
    /// At most `max` items per group; `what` names the items and `key` the config key setting
    /// `max`, in the line logged under `target`.
    pub fn new(max: usize, what: &'static str, key: &'static str, target: &str) -> Bound {
        Bound {
            max,
            what,
            key,
            target: target.to_owned(),
            reported: BTreeMap::new(),
            over: BTreeSet::new(),
            seen: BTreeSet::new(),
        }
    }

    /// Which of `keys`, the items `group` has now, to report: `true` at the same place for each
    /// one reported. Those reported last time come first, then the others in the order given,
    /// up to the bound. The number left out is the count of `false`.
    pub fn choose(&mut self, group: &str, keys: &[String]) -> Vec<bool> {
        let before = self.reported.remove(group).unwrap_or_default();
        let mut chosen: Vec<bool> = keys.iter().map(|k| before.contains(k)).collect();
        let mut room = self.max;
        for c in chosen.iter_mut().filter(|c| **c) {
            *c = room > 0;
            room = room.saturating_sub(1);
        }
        for (i, c) in chosen.iter_mut().enumerate() {
            if !*c && room > 0 && !before.contains(&keys[i]) {
                *c = true;
                room -= 1;
            }
        }
        let now: BTreeSet<String> = keys
            .iter()
            .zip(&chosen)
            .filter(|(_, c)| **c)
            .map(|(k, _)| k.clone())
            .collect();
        let left_out = keys.len() - chosen.iter().filter(|c| **c).count();
        if left_out == 0 {
            self.over.remove(group);
        } else if self.over.insert(group.to_owned()) {
            log::warn!(
                target: &self.target,
                "{group}: {} {}, more than {} ({}): the rest are counted, not reported one by \
                 one (logged once while it lasts)",
                keys.len(),
                self.what,
                self.key,
                self.max
            );
        }
        self.reported.insert(group.to_owned(), now);
        self.seen.insert(group.to_owned());
        chosen
    }

    /// Ends a collection: groups not chosen from since the last call are forgotten (an
    /// interface that went away).
    pub fn end_round(&mut self) {
        let seen = std::mem::take(&mut self.seen);
        self.reported.retain(|g, _| seen.contains(g));
        self.over.retain(|g| seen.contains(g));
    }

    /// True while `group` has more items than the bound.
    #[cfg(test)]
    pub fn is_over(&self, group: &str) -> bool {
        self.over.contains(group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(k: &[&str]) -> Vec<String> {
        k.iter().map(|k| (*k).to_owned()).collect()
    }

    #[test]
    fn items_reported_before_keep_their_place_past_the_bound() {
        let mut b = Bound::new(2, "stations", "max_stations", "src.test");
        assert_eq!(b.choose("wlan0", &keys(&["a", "b"])), [true, true]);
        assert!(!b.is_over("wlan0"));
        // A newcomer listed first does not displace a or b.
        assert_eq!(
            b.choose("wlan0", &keys(&["c", "b", "a"])),
            [false, true, true]
        );
        assert!(b.is_over("wlan0"));
        // a left: c takes its place.
        assert_eq!(b.choose("wlan0", &keys(&["c", "b"])), [true, true]);
        assert!(!b.is_over("wlan0"), "back under the bound");
        // Groups are bounded on their own.
        assert_eq!(b.choose("wlan1", &keys(&["a", "b"])), [true, true]);
    }

    #[test]
    fn a_group_that_went_away_is_forgotten() {
        let mut b = Bound::new(1, "peers", "max_peers", "src.test");
        b.choose("wg0", &keys(&["x", "y"]));
        assert!(b.is_over("wg0"));
        b.end_round();
        assert!(b.is_over("wg0"), "chosen from in the round just ended");
        b.end_round();
        assert!(!b.is_over("wg0"));
        assert_eq!(
            b.choose("wg0", &keys(&["y", "x"])),
            [true, false],
            "no memory of x"
        );
    }
}
