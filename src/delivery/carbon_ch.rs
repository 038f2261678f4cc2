//! Consistent hashing over carbon destinations, so pipit can shard across carbon-caches and place
//! every metric exactly where the relay of a Graphite cluster would. Four rings, named for what
//! they match ([`RingHash`]):
//!
//! - `carbon_ch` as Python's carbon-relay does it (this file);
//! - `carbon_ch`, `fnv1a_ch` and `jump_fnv1a_ch` as carbon-c-relay does them
//!   ([`super::c_relay_ch`]).
//!
//! Python carbon-relay's `carbon_ch`:
//! - a destination is `host:port[:instance]`; the ring node is `(host, instance)`: the port is not
//!   hashed;
//! - each node has 100 replicas; replica `i`'s key is Python's repr of the node tuple, a colon and
//!   `i`, such as `('10.0.0.1', None):0` or `('10.0.0.1', 'a'):7`;
//! - a position is the first four hex digits of the MD5 of a key, as an integer; on a collision the
//!   position is increased by one until free (so positions may pass 0xffff);
//! - a metric goes to the first ring entry at or after its own position (the MD5 of its whole
//!   name, tags included), wrapping around; with a replication factor R it also goes to the next
//!   distinct nodes (distinct hosts with `diverse_replicas`, carbon's default).

use super::c_relay_ch::{CRelayRing, md5_position};
use super::py_printable::is_printable;
use crate::outputs::destination::{Destination, Node};

/// Replicas per node, as in carbon.
const REPLICAS: usize = 100;

/// Which relay's consistent hashing a ring reproduces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingHash {
    /// `carbon_ch` as Python's carbon-relay places metrics (the default of `carbon_ch`).
    CarbonRelay,
    /// `carbon_ch` as carbon-c-relay places metrics: no "+1" on colliding positions, members
    /// compared to break ties, tags left out of the key.
    CarbonCRelay,
    /// carbon-c-relay's `fnv1a_ch`.
    Fnv1a,
    /// carbon-c-relay's `jump_fnv1a_ch`.
    JumpFnv1a,
}

/// A hash ring over destinations, in the order they were configured.
#[derive(Debug, Clone)]
pub struct Ring {
    destinations: Vec<Destination>,
    /// Python carbon-relay's ring: (position, index into `destinations`), sorted.
    entries: Vec<(u32, usize)>,
    /// carbon-c-relay's ring.
    c_relay: Option<CRelayRing>,
}

impl Ring {
    /// A ring over `destinations`, added in order (the order decides collisions in Python's
    /// carbon-relay and the order of `jump_fnv1a_ch` members without an instance).
    pub fn new(hash: RingHash, destinations: &[Destination]) -> Ring {
        let destinations = destinations.to_vec();
        let mut entries: Vec<(u32, usize)> = Vec::new();
        let mut c_relay = None;
        if hash == RingHash::CarbonRelay {
            entries.reserve(destinations.len() * REPLICAS);
            for (n, d) in destinations.iter().enumerate() {
                let repr = node_repr(&d.node);
                for i in 0..REPLICAS {
                    let mut position = position_of(&format!("{repr}:{i}"));
                    while entries.iter().any(|(p, _)| *p == position) {
                        position += 1;
                    }
                    let at = entries.partition_point(|e| *e < (position, n));
                    entries.insert(at, (position, n));
                }
            }
        } else {
            c_relay = Some(CRelayRing::new(hash, &destinations));
        }
        Ring {
            destinations,
            entries,
            c_relay,
        }
    }

    /// The destinations, in configured order.
    pub fn destinations(&self) -> &[Destination] {
        &self.destinations
    }

    /// Indexes (into [`Ring::destinations`]) of the destinations that take the metric named
    /// `key`, as the relay picks them: at most `replication` of them, distinct hosts when
    /// `diverse` (Python carbon-relay's `DIVERSE_REPLICAS`; carbon-c-relay has no such setting).
    pub fn place(&self, key: &str, replication: usize, diverse: bool) -> Vec<usize> {
        match &self.c_relay {
            Some(ring) => ring.place(key, replication),
            None => self.place_carbon_relay(key, replication, diverse),
        }
    }

    fn place_carbon_relay(&self, key: &str, replication: usize, diverse: bool) -> Vec<usize> {
        let mut out: Vec<usize> = Vec::with_capacity(replication);
        if self.entries.is_empty() || replication == 0 {
            return out;
        }
        let len = self.entries.len();
        let position = position_of(key);
        // Entries compare as (position, node) and carbon searches with (position, ()), which sorts
        // before any node: the first entry whose position is at least the key's.
        let mut index = self.entries.partition_point(|(p, _)| *p < position) % len;
        // Carbon walks until it is back at the entry before the start, which it never visits.
        let last = (index + len - 1) % len;
        let mut seen: Vec<usize> = Vec::new();
        while seen.len() < self.destinations.len() && index != last {
            let node = self.entries[index].1;
            if !seen
                .iter()
                .any(|&s| self.destinations[s].node == self.destinations[node].node)
            {
                seen.push(node);
                let host_taken = diverse
                    && out.iter().any(|&o| {
                        self.destinations[o].node.host == self.destinations[node].node.host
                    });
                if !host_taken {
                    out.push(node);
                    if out.len() == replication {
                        break;
                    }
                }
            }
            index = (index + 1) % len;
        }
        out
    }
}

/// The ring position of a key: the first 16 bits of its MD5 (widened: the "+1" rule may push a
/// position past 0xffff).
fn position_of(key: &str) -> u32 {
    u32::from(md5_position(key.as_bytes()))
}

/// Python's repr of the tuple `(host, instance)`.
fn node_repr(node: &Node) -> String {
    let instance = node
        .instance
        .as_deref()
        .map_or_else(|| "None".to_owned(), py_repr);
    format!("({}, {instance})", py_repr(&node.host))
}

/// Python 3's repr of a string: single quotes unless the text has a single quote and no double
/// quote; backslashes and the chosen quote escaped, and every character Python does not consider
/// printable written as `\xhh`, `\uhhhh` or `\Uhhhhhhhh` (`\t`, `\n`, `\r` for those three).
fn py_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if is_printable(c) => out.push(c),
            c => {
                let n = u32::from(c);
                let escaped = if n < 0x100 {
                    format!("\\x{n:02x}")
                } else if n < 0x10000 {
                    format!("\\u{n:04x}")
                } else {
                    format!("\\U{n:08x}")
                };
                out.push_str(&escaped);
            }
        }
    }
    out.push(quote);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(host: &str, instance: Option<&str>) -> Node {
        Node {
            host: host.into(),
            instance: instance.map(str::to_owned),
        }
    }

    fn dest(host: &str, instance: Option<&str>) -> Destination {
        Destination {
            node: node(host, instance),
            port: 2004,
        }
    }

    const HASHES: [RingHash; 4] = [
        RingHash::CarbonRelay,
        RingHash::CarbonCRelay,
        RingHash::Fnv1a,
        RingHash::JumpFnv1a,
    ];

    #[test]
    fn parses_destinations_like_carbon() {
        let d = Destination::parse("10.0.0.1:2004:a").unwrap();
        assert_eq!(
            (d.node.host.as_str(), d.port, d.node.instance.as_deref()),
            ("10.0.0.1", 2004, Some("a"))
        );
        let d = Destination::parse("[::1]:2104").unwrap();
        assert_eq!(
            (d.node.host.as_str(), d.port, d.node.instance),
            ("::1", 2104, None)
        );
        assert_eq!(Destination::parse("host"), None);
        assert_eq!(Destination::parse("host:port"), None);
        assert_eq!(Destination::parse(":2004"), None);
    }

    #[test]
    fn replica_keys_are_python_reprs() {
        assert_eq!(node_repr(&node("10.0.0.1", None)), "('10.0.0.1', None)");
        assert_eq!(node_repr(&node("10.0.0.1", Some("a"))), "('10.0.0.1', 'a')");
        assert_eq!(py_repr("it's"), "\"it's\"");
        assert_eq!(py_repr("a'b\"c"), "'a\\'b\"c'");
        // What Python 3.11 prints for repr("\xa0\x85\u200b\u2028é\U000e0001\x7f\t").
        assert_eq!(
            py_repr("\u{a0}\u{85}\u{200b}\u{2028}é\u{e0001}\u{7f}\t"),
            "'\\xa0\\x85\\u200b\\u2028é\\U000e0001\\x7f\\t'"
        );
    }

    #[test]
    fn every_node_gets_its_replicas_and_placement_is_stable() {
        let ring = Ring::new(
            RingHash::CarbonRelay,
            &[dest("a", None), dest("b", None), dest("c", Some("x"))],
        );
        assert_eq!(ring.entries.len(), 300);
        assert!(
            ring.entries.windows(2).all(|w| w[0].0 < w[1].0),
            "positions are unique and sorted"
        );
        for hash in HASHES {
            let ring = Ring::new(
                hash,
                &[dest("a", None), dest("b", None), dest("c", Some("x"))],
            );
            let first = ring.place("servers.web1.cpu", 2, false);
            assert_eq!(first.len(), 2, "{hash:?}");
            assert_ne!(first[0], first[1]);
            assert_eq!(ring.place("servers.web1.cpu", 2, false), first);
            assert_eq!(ring.place("servers.web1.cpu", 1, false), first[..1]);
        }
    }

    #[test]
    fn diverse_replicas_skip_a_second_instance_on_the_same_host() {
        let ring = Ring::new(
            RingHash::CarbonRelay,
            &[dest("a", Some("1")), dest("a", Some("2"))],
        );
        assert_eq!(ring.place("m", 2, true).len(), 1);
        assert_eq!(ring.place("m", 2, false).len(), 2);
    }

    /// Two replicas collide on this ring: Python carbon moves one up by one position,
    /// carbon-c-relay keeps the position for the member that sorts first.
    #[test]
    fn the_relays_part_where_positions_collide() {
        let ring: Vec<Destination> = ["a", "b", "c", "d"]
            .iter()
            .enumerate()
            .map(|(i, instance)| Destination {
                node: node("127.0.0.1", Some(instance)),
                port: 2100 + i as u16,
            })
            .collect();
        let metric = "gw12.interface.eth0_0.tx_bytes";
        let python = Ring::new(RingHash::CarbonRelay, &ring);
        let c_relay = Ring::new(RingHash::CarbonCRelay, &ring);
        assert_eq!(python.place(metric, 2, false), [1, 3]);
        assert_eq!(c_relay.place(metric, 2, false), [1, 0]);
    }

    #[test]
    fn carbon_c_relay_leaves_tags_out_of_the_key_and_python_carbon_does_not() {
        let hosts = hosts(8);
        for hash in [RingHash::CarbonCRelay, RingHash::Fnv1a, RingHash::JumpFnv1a] {
            let ring = Ring::new(hash, &hosts);
            for i in 0..200 {
                let name = format!("m{i}.rx");
                assert_eq!(
                    ring.place(&format!("{name};host=gw;if=eth{i}"), 2, false),
                    ring.place(&name, 2, false),
                    "{hash:?}"
                );
            }
        }
        let ring = Ring::new(RingHash::CarbonRelay, &hosts);
        let moved = (0..200)
            .filter(|i| {
                ring.place(&format!("m{i}.rx;host=gw"), 1, false)
                    != ring.place(&format!("m{i}.rx"), 1, false)
            })
            .count();
        assert!(moved > 100, "{moved} of 200 tagged names placed apart");
    }

    fn hosts(n: usize) -> Vec<Destination> {
        (0..n)
            .map(|i| dest(&format!("10.0.0.{i}"), Some(&i.to_string())))
            .collect()
    }

    /// Property: placement is a function of the destinations and the key alone, and adding a
    /// destination moves a key only onto the new one, never between the old ones.
    #[test]
    fn adding_a_node_moves_keys_only_to_it() {
        fn prop(keys: Vec<String>, n: u8) -> bool {
            let n = usize::from(n % 6) + 1;
            HASHES.iter().all(|&hash| {
                let (ring, again, grown) = (
                    Ring::new(hash, &hosts(n)),
                    Ring::new(hash, &hosts(n)),
                    Ring::new(hash, &hosts(n + 1)),
                );
                keys.iter().all(|key| {
                    let before = ring.place(key, 1, false);
                    let after = grown.place(key, 1, false);
                    before == again.place(key, 1, false) && (after == before || after == [n])
                })
            })
        }
        quickcheck::quickcheck(prop as fn(Vec<String>, u8) -> bool);
    }

    /// Property: a key goes to `replication` distinct destinations (all of them when there are
    /// fewer).
    #[test]
    fn replicas_are_distinct_nodes() {
        fn prop(key: String, n: u8, replication: u8) -> bool {
            let (n, replication) = (usize::from(n % 6) + 1, usize::from(replication % 4));
            HASHES.iter().all(|&hash| {
                let placed = Ring::new(hash, &hosts(n)).place(&key, replication, false);
                let mut distinct = placed.clone();
                distinct.sort_unstable();
                distinct.dedup();
                placed.len() == replication.min(n) && distinct.len() == placed.len()
            })
        }
        quickcheck::quickcheck(prop as fn(String, u8, u8) -> bool);
    }
}
