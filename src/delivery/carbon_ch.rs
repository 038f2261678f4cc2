//! carbon-relay's consistent hashing (`carbon_ch`), so pipit can shard across carbon-caches and
//! place every metric exactly where carbon-relay would.
//!
//! The rules, as carbon implements them:
//! - a destination is `host:port[:instance]`; the ring node is `(host, instance)`: the port is not
//!   hashed;
//! - each node has 100 replicas; replica `i`'s key is Python's repr of the node tuple, a colon and
//!   `i`, such as `('10.0.0.1', None):0` or `('10.0.0.1', 'a'):7`;
//! - a position is the first four hex digits of the MD5 of a key, as an integer; on a collision the
//!   position is increased by one until free (so positions may pass 0xffff);
//! - a metric goes to the first ring entry at or after its own position (the MD5 of its path),
//!   wrapping around; with a replication factor R it also goes to the next distinct nodes
//!   (distinct hosts with `diverse_replicas`, carbon's default).

use crate::md5;

/// Replicas per node, as in carbon.
const REPLICAS: usize = 100;

/// One destination of the ring.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Node {
    /// The host, as written in the destination.
    pub host: String,
    /// The instance name, if the destination has one.
    pub instance: Option<String>,
}

/// A carbon destination, `host:port[:instance]` (an IPv6 host in brackets: `[::1]:2004:a`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// The ring node: host and instance.
    pub node: Node,
    /// The port to connect to; not part of the hash.
    pub port: u16,
}

impl Destination {
    /// A destination without an instance.
    pub fn new(host: &str, port: u16) -> Destination {
        Destination {
            node: Node {
                host: host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned(),
                instance: None,
            },
            port,
        }
    }

    /// `host:port` to connect to, with brackets around an IPv6 address.
    pub fn addr(&self) -> String {
        if self.node.host.contains(':') {
            format!("[{}]:{}", self.node.host, self.port)
        } else {
            format!("{}:{}", self.node.host, self.port)
        }
    }

    /// The destination as written in a config: `host:port[:instance]`.
    pub fn name(&self) -> String {
        match &self.node.instance {
            Some(instance) => format!("{}:{instance}", self.addr()),
            None => self.addr(),
        }
    }

    /// Target number `index` of an output's list, for `OutputSpec::build_target`.
    pub fn nth(
        targets: &[Destination],
        index: usize,
    ) -> Result<&Destination, crate::outputs::OutputError> {
        targets
            .get(index)
            .ok_or_else(|| crate::outputs::OutputError::failed(format!("no target number {index}")))
    }

    /// Parses a destination as carbon does; `None` when the port is missing or not a number.
    pub fn parse(text: &str) -> Option<Destination> {
        let s = text.trim();
        let (host, rest) = match s.strip_prefix('[') {
            Some(inner) => {
                let close = inner.rfind("]:")?;
                (&inner[..close], &inner[close + 2..])
            }
            None => s.split_once(':')?,
        };
        let (port, instance) = match rest.split_once(':') {
            Some((port, instance)) => (port, Some(instance.to_owned())),
            None => (rest, None),
        };
        if host.is_empty() {
            return None;
        }
        Some(Destination {
            node: Node {
                host: host.to_owned(),
                instance,
            },
            port: port.parse().ok()?,
        })
    }
}

/// A hash ring over destinations, in the order they were configured.
#[derive(Debug, Clone)]
pub struct Ring {
    nodes: Vec<Node>,
    /// (position, index into `nodes`), sorted.
    entries: Vec<(u32, usize)>,
}

impl Ring {
    /// A ring over `nodes`, added in order (the order decides collisions, as in carbon).
    pub fn new(nodes: Vec<Node>) -> Ring {
        let mut entries: Vec<(u32, usize)> = Vec::with_capacity(nodes.len() * REPLICAS);
        for (n, node) in nodes.iter().enumerate() {
            let repr = node_repr(node);
            for i in 0..REPLICAS {
                let mut position = position_of(&format!("{repr}:{i}"));
                while entries.iter().any(|(p, _)| *p == position) {
                    position += 1;
                }
                let at = entries.partition_point(|e| *e < (position, n));
                entries.insert(at, (position, n));
            }
        }
        Ring { nodes, entries }
    }

    /// The nodes, in configured order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Indexes (into [`Ring::nodes`]) of the nodes that take `key`, as carbon-relay picks them:
    /// at most `replication` of them, distinct hosts when `diverse`.
    pub fn place(&self, key: &str, replication: usize, diverse: bool) -> Vec<usize> {
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
        while seen.len() < self.nodes.len() && index != last {
            let node = self.entries[index].1;
            if !seen.contains(&node) {
                seen.push(node);
                let host_taken = diverse
                    && out
                        .iter()
                        .any(|&o| self.nodes[o].host == self.nodes[node].host);
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

/// The ring position of a key: the first 16 bits of its MD5.
fn position_of(key: &str) -> u32 {
    let d = md5::digest(key.as_bytes());
    u32::from(d[0]) << 8 | u32::from(d[1])
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
/// quote; backslashes, the chosen quote and non-printable characters escaped.
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
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
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
    }

    #[test]
    fn every_node_gets_its_replicas_and_placement_is_stable() {
        let ring = Ring::new(vec![node("a", None), node("b", None), node("c", Some("x"))]);
        assert_eq!(ring.entries.len(), 300);
        assert!(
            ring.entries.windows(2).all(|w| w[0].0 < w[1].0),
            "positions are unique and sorted"
        );
        let first = ring.place("servers.web1.cpu", 2, true);
        assert_eq!(first.len(), 2);
        assert_ne!(first[0], first[1]);
        assert_eq!(ring.place("servers.web1.cpu", 2, true), first);
        assert_eq!(ring.place("servers.web1.cpu", 1, true), first[..1]);
    }

    #[test]
    fn diverse_replicas_skip_a_second_instance_on_the_same_host() {
        let ring = Ring::new(vec![node("a", Some("1")), node("a", Some("2"))]);
        assert_eq!(ring.place("m", 2, true).len(), 1);
        assert_eq!(ring.place("m", 2, false).len(), 2);
    }

    fn hosts(n: usize) -> Vec<Node> {
        (0..n)
            .map(|i| node(&format!("10.0.0.{i}"), (i % 2 == 1).then_some("a")))
            .collect()
    }

    /// Property: placement is a function of the nodes and the key alone, and adding a node moves a
    /// key only onto the new node, never between the old ones.
    #[test]
    fn adding_a_node_moves_keys_only_to_it() {
        fn prop(keys: Vec<String>, n: u8) -> bool {
            let n = usize::from(n % 6) + 1;
            let (ring, again, grown) = (
                Ring::new(hosts(n)),
                Ring::new(hosts(n)),
                Ring::new(hosts(n + 1)),
            );
            keys.iter().all(|key| {
                let before = ring.place(key, 1, false);
                let after = grown.place(key, 1, false);
                before == again.place(key, 1, false) && (after == before || after == [n])
            })
        }
        quickcheck::quickcheck(prop as fn(Vec<String>, u8) -> bool);
    }

    /// Property: a key goes to `replication` distinct nodes (all of them when there are fewer).
    #[test]
    fn replicas_are_distinct_nodes() {
        fn prop(key: String, n: u8, replication: u8) -> bool {
            let (n, replication) = (usize::from(n % 6) + 1, usize::from(replication % 4));
            let placed = Ring::new(hosts(n)).place(&key, replication, false);
            let mut distinct = placed.clone();
            distinct.sort_unstable();
            distinct.dedup();
            placed.len() == replication.min(n) && distinct.len() == placed.len()
        }
        quickcheck::quickcheck(prop as fn(String, u8, u8) -> bool);
    }
}
