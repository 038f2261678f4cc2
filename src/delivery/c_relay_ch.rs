//! carbon-c-relay's consistent hashing (version 3.7, as Debian ships it): `carbon_ch`, `fnv1a_ch`
//! and `jump_fnv1a_ch`, so pipit places a metric where a carbon-c-relay cluster of the same
//! members would.
//!
//! How carbon-c-relay differs from Python's carbon-relay, and what is reproduced here:
//! - A metric is hashed up to its first `;`: the tags of a tagged series are not part of the key.
//! - `carbon_ch` replica keys are `('host', 'instance'):i` (or `('host', None):i`) written as
//!   they are, without Python's escaping, and cut at 255 bytes like carbon-c-relay's buffer.
//! - Two replicas on the same position are not moved ("+1") as Python carbon does: the ring is
//!   sorted by position, then by member (host, then instance with members without one last, for
//!   `carbon_ch`; host, then port, for `fnv1a_ch`), and the position belongs to the first.
//! - `fnv1a_ch` replica keys are `i-host:port`, or `i-instance` when the member has an instance
//!   (the instance then replaces the address in the hash). The 32-bit FNV-1a hash is folded to
//!   16 bits as `(h >> 16) ^ (h & 0xffff)`. Bytes of 0x80 and above are sign-extended before they
//!   are mixed in, as carbon-c-relay built where `char` is signed (x86, amd64) does them.
//! - `jump_fnv1a_ch` orders the members by instance (as numbers when both are numbers), members
//!   without an instance after them in config order, and picks with Lamping and Veach's jump
//!   hash of the 64-bit FNV-1a of the metric; each further replica re-mixes the hash with
//!   xorshift and picks among the members not yet picked.
//! - Replicas go to distinct members; there is no `DIVERSE_REPLICAS`.

use std::cmp::Ordering;

use super::carbon_ch::RingHash;
use crate::md5;
use crate::outputs::destination::Destination;

/// Replicas per member on the `carbon_ch` and `fnv1a_ch` rings.
const REPLICAS: usize = 100;
/// carbon-c-relay writes replica keys into a 256-byte buffer: longer keys are cut.
const KEY_BUFFER: usize = 256;

/// A carbon-c-relay ring.
#[derive(Debug, Clone)]
pub struct CRelayRing {
    hash: RingHash,
    /// `carbon_ch` and `fnv1a_ch`: (position, member index), sorted, each position's member being
    /// the one that sorts first among those hashed there.
    entries: Vec<(u16, usize)>,
    /// How many members own a position (all of them, unless one lost every position it hashed
    /// to; carbon-c-relay would then wait forever for it, pipit places on the others).
    owners: usize,
    /// `jump_fnv1a_ch`: member indexes in bucket order.
    buckets: Vec<usize>,
}

impl CRelayRing {
    /// The ring of `hash` over `members` (in config order). `hash` is not
    /// [`RingHash::CarbonRelay`].
    pub fn new(hash: RingHash, members: &[Destination]) -> CRelayRing {
        let mut ring = CRelayRing {
            hash,
            entries: Vec::new(),
            owners: 0,
            buckets: Vec::new(),
        };
        if hash == RingHash::JumpFnv1a {
            // Ordered insertion (members are few): ties keep config order.
            for n in 0..members.len() {
                let at = ring
                    .buckets
                    .partition_point(|&b| jump_order(&members[b], &members[n]).is_le());
                ring.buckets.insert(at, n);
            }
            return ring;
        }
        let mut entries: Vec<(u16, usize)> = Vec::with_capacity(members.len() * REPLICAS);
        for (n, m) in members.iter().enumerate() {
            for i in 0..REPLICAS {
                let position = if hash == RingHash::Fnv1a {
                    let key = match &m.node.instance {
                        Some(instance) => format!("{i}-{instance}"),
                        None => format!("{i}-{}:{}", m.node.host, m.port),
                    };
                    fold(fnv1a_32(cut(&key)))
                } else {
                    let key = match &m.node.instance {
                        Some(instance) => format!("('{}', '{instance}'):{i}", m.node.host),
                        None => format!("('{}', None):{i}", m.node.host),
                    };
                    md5_position(cut(&key))
                };
                // Ordered insertion: by position, then member order, then config order.
                let at = entries.partition_point(|&(p, o)| {
                    (p, member_order(hash, &members[o], m), o) <= (position, Ordering::Equal, n)
                });
                entries.insert(at, (position, n));
            }
        }
        for i in 1..entries.len() {
            if entries[i].0 == entries[i - 1].0 {
                entries[i].1 = entries[i - 1].1;
            }
        }
        let mut owns = vec![false; members.len()];
        entries.iter().for_each(|e| owns[e.1] = true);
        ring.owners = owns.iter().filter(|&&o| o).count();
        ring.entries = entries;
        ring
    }

    /// Indexes of the members that take the metric named `name`: `replication` distinct ones (all
    /// of them when there are fewer).
    pub fn place(&self, name: &str, replication: usize) -> Vec<usize> {
        let key = name.split(';').next().unwrap_or(name).as_bytes();
        if self.hash == RingHash::JumpFnv1a {
            return self.place_jump(key, replication);
        }
        let mut out: Vec<usize> = Vec::with_capacity(replication);
        if self.entries.is_empty() {
            return out;
        }
        let position = if self.hash == RingHash::Fnv1a {
            fold(fnv1a_32(key))
        } else {
            md5_position(key)
        };
        let start = self.entries.partition_point(|(p, _)| *p < position);
        let wanted = replication.min(self.owners);
        let len = self.entries.len();
        let mut index = start % len;
        while out.len() < wanted {
            let member = self.entries[index].1;
            if !out.contains(&member) {
                out.push(member);
            }
            index = (index + 1) % len;
        }
        out
    }

    fn place_jump(&self, key: &[u8], replication: usize) -> Vec<usize> {
        let mut left = self.buckets.clone();
        let mut out = Vec::with_capacity(replication.min(left.len()));
        let mut hash = fnv1a_64(key);
        while !left.is_empty() && out.len() < replication {
            let j = jump(hash, left.len());
            out.push(left.swap_remove(j));
            hash ^= hash >> 12;
            hash ^= hash << 25;
            hash ^= hash >> 27;
            hash = hash.wrapping_mul(2_685_821_657_736_338_717);
        }
        out
    }
}

/// The `carbon_ch` ring position of a key, in both relays: the first 16 bits of its MD5.
pub(super) fn md5_position(key: &[u8]) -> u16 {
    let d = md5::digest(key);
    u16::from(d[0]) << 8 | u16::from(d[1])
}

/// A replica key as carbon-c-relay's buffer holds it: at most 255 bytes.
fn cut(key: &str) -> &[u8] {
    &key.as_bytes()[..key.len().min(KEY_BUFFER - 1)]
}

/// A byte as carbon-c-relay mixes it into FNV-1a: a signed `char` widened.
fn widened(b: u8) -> u64 {
    i64::from(b as i8) as u64
}

fn fnv1a_32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(2_166_136_261u32, |h, &b| {
        (h ^ widened(b) as u32).wrapping_mul(16_777_619)
    })
}

fn fnv1a_64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(14_695_981_039_346_656_037u64, |h, &b| {
        (h ^ widened(b)).wrapping_mul(1_099_511_628_211)
    })
}

/// A 32-bit hash folded to a 16-bit ring position.
fn fold(h: u32) -> u16 {
    ((h >> 16) ^ (h & 0xffff)) as u16
}

/// Lamping and Veach's jump consistent hash: a bucket in `0..buckets`, computed in floating point
/// exactly as carbon-c-relay does.
fn jump(mut key: u64, buckets: usize) -> usize {
    let (mut b, mut j): (i64, i64) = (-1, 0);
    while j < buckets as i64 {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1i64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b as usize
}

/// How carbon-c-relay orders two members on the same ring position.
fn member_order(hash: RingHash, l: &Destination, r: &Destination) -> Ordering {
    let by_host = l.node.host.as_bytes().cmp(r.node.host.as_bytes());
    if hash == RingHash::Fnv1a {
        return by_host.then(l.port.cmp(&r.port));
    }
    by_host.then_with(|| match (&l.node.instance, &r.node.instance) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(a), Some(b)) => a.as_bytes().cmp(b.as_bytes()),
    })
}

/// `jump_fnv1a_ch`'s member order: members with an instance first, by instance (as numbers when
/// both are whole numbers as C's `strtol` reads them), then the others in config order (which the
/// caller's tie-break keeps).
fn jump_order(l: &Destination, r: &Destination) -> Ordering {
    match (&l.node.instance, &r.node.instance) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(a), Some(b)) => match (strtol_whole(a), strtol_whole(b)) {
            // carbon-c-relay returns the difference narrowed to an int.
            (Some(x), Some(y)) => (x.wrapping_sub(y) as i32).cmp(&0),
            _ => a.as_bytes().cmp(b.as_bytes()),
        },
    }
}

/// The number C's `strtol(s, &end, 10)` reads when it consumes all of `s` (leading white space,
/// a sign, digits; clamped to the `long` range), or `None` when something is left over.
fn strtol_whole(s: &str) -> Option<i64> {
    if s.is_empty() {
        return Some(0);
    }
    let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (negative, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Accumulated negative, as the range of `long` reaches one further below zero.
    let value = digits.bytes().fold(0i64, |n, b| {
        n.saturating_mul(10).saturating_sub(i64::from(b - b'0'))
    });
    Some(if negative {
        value
    } else {
        value.checked_neg().unwrap_or(i64::MAX)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outputs::destination::Node;

    #[test]
    fn fnv1a_is_the_reference_hash_for_ascii_and_sign_extends_other_bytes() {
        // The FNV-1a test vectors for "a" and "foobar".
        assert_eq!(fnv1a_32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a_32(b"foobar"), 0xbf9c_f968);
        assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a_64(b"foobar"), 0x8594_4171_f739_67e8);
        // 0xc3 mixes in as 0xffffffc3, as carbon-c-relay's signed char does.
        let by_hand = (2_166_136_261u32 ^ 0xffff_ffc3).wrapping_mul(16_777_619);
        assert_eq!(fnv1a_32(&[0xc3]), by_hand);
    }

    #[test]
    fn jump_spreads_over_every_bucket_and_moves_keys_only_to_a_new_one() {
        let mut counts = [0usize; 5];
        for key in 0..5000u64 {
            let hash = fnv1a_64(&key.to_le_bytes());
            let b = jump(hash, 5);
            counts[b] += 1;
            let grown = jump(hash, 6);
            assert!(grown == b || grown == 5, "key {key}: {b} -> {grown}");
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn instances_read_as_numbers_the_way_strtol_does() {
        assert_eq!(strtol_whole("10"), Some(10));
        assert_eq!(strtol_whole(" +7"), Some(7));
        assert_eq!(strtol_whole("-3"), Some(-3));
        assert_eq!(strtol_whole(""), Some(0));
        assert_eq!(strtol_whole("99999999999999999999"), Some(i64::MAX));
        assert_eq!(strtol_whole("-99999999999999999999"), Some(i64::MIN));
        assert_eq!(strtol_whole("-9223372036854775808"), Some(i64::MIN));
        for text in ["a", "1a", "1 ", "-", "0x1"] {
            assert_eq!(strtol_whole(text), None, "{text:?}");
        }
        let d = |instance: &str| Destination {
            node: Node {
                host: "h".into(),
                instance: Some(instance.into()),
            },
            port: 1,
        };
        assert_eq!(jump_order(&d("9"), &d("10")), Ordering::Less);
        assert_eq!(jump_order(&d("b9"), &d("b10")), Ordering::Greater);
    }
}
