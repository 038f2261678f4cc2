//! nf_tables over nfnetlink (`NETLINK_NETFILTER`, subsystem `NFNL_SUBSYS_NFTABLES`): the named
//! counter objects (an `NFT_MSG_GETOBJ` dump) and the rules holding a `counter` expression (an
//! `NFT_MSG_GETRULE` dump), each rule with the comment `nft` keeps in its user data. The kernel
//! answers either dump only to a process with `CAP_NET_ADMIN`.

use std::time::Duration;

use super::{Attributes, Dumper, NetlinkError, u32_at, u64_at};
use crate::sys::netlink::{NETFILTER, NetlinkSocket};

/// The nfnetlink subsystem of nf_tables; a message's type is the subsystem in the upper byte
/// and the nf_tables message in the lower.
const NFNL_SUBSYS_NFTABLES: u16 = 10;
/// Message type of the rule dump request (`NFT_MSG_GETRULE`).
const NFT_MSG_GETRULE: u16 = NFNL_SUBSYS_NFTABLES << 8 | 7;
/// Message type of each rule in the answer (`NFT_MSG_NEWRULE`).
pub const NFT_MSG_NEWRULE: u16 = NFNL_SUBSYS_NFTABLES << 8 | 6;
/// Message type of the stateful object dump request (`NFT_MSG_GETOBJ`).
const NFT_MSG_GETOBJ: u16 = NFNL_SUBSYS_NFTABLES << 8 | 19;
/// Message type of each object in the answer (`NFT_MSG_NEWOBJ`).
pub const NFT_MSG_NEWOBJ: u16 = NFNL_SUBSYS_NFTABLES << 8 | 18;
/// Size of `struct nfgenmsg`, the fixed part of each message: the family (`NFPROTO_*`), a
/// version and a resource id. A request of family 0 (`NFPROTO_UNSPEC`) lists every family.
const NFGENMSG: usize = 4;

/// Attributes of a rule (`NFTA_RULE_*`): its table and chain (NUL-terminated names), its handle
/// (big-endian u64), its expressions (a list) and its user data.
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_HANDLE: u16 = 3;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_RULE_USERDATA: u16 = 7;
/// Each item of a list of expressions (`NFTA_LIST_ELEM`).
const NFTA_LIST_ELEM: u16 = 1;
/// Attributes of an expression (`NFTA_EXPR_*`): its name, such as `counter`, and its data.
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
/// Attributes of a counter's data, in a `counter` expression or a counter object
/// (`NFTA_COUNTER_*`): bytes and packets, big-endian u64.
const NFTA_COUNTER_BYTES: u16 = 1;
const NFTA_COUNTER_PACKETS: u16 = 2;
/// Attributes of a stateful object (`NFTA_OBJ_*`): its table and name (NUL-terminated), its type
/// (big-endian u32), its data and its handle (big-endian u64).
const NFTA_OBJ_TABLE: u16 = 1;
const NFTA_OBJ_NAME: u16 = 2;
const NFTA_OBJ_TYPE: u16 = 3;
const NFTA_OBJ_DATA: u16 = 4;
const NFTA_OBJ_HANDLE: u16 = 6;
/// The type of a counter object (`NFT_OBJECT_COUNTER`).
const NFT_OBJECT_COUNTER: u32 = 1;
/// In user data, which `nft` writes as items of a type byte, a length byte and that many bytes:
/// a rule's comment, NUL-terminated (`NFTNL_UDATA_RULE_COMMENT`).
const UDATA_RULE_COMMENT: u8 = 0;
/// How long the kernel may take to answer one datagram.
const TIMEOUT: Duration = Duration::from_secs(2);

/// The families of nf_tables, by their number (`NFPROTO_*`) and the name `nft` gives them.
pub const FAMILIES: [(u8, &str); 6] = [
    (1, "inet"),
    (2, "ip"),
    (3, "arp"),
    (5, "netdev"),
    (7, "bridge"),
    (10, "ip6"),
];

/// The name `nft` gives the family numbered `family`, such as `inet`; `None` for a number it
/// does not know.
pub fn family_name(family: u8) -> Option<&'static str> {
    FAMILIES
        .iter()
        .find(|(n, _)| *n == family)
        .map(|(_, name)| *name)
}

/// One counter as the kernel lists it: a named counter object, or the `counter` expression of a
/// rule.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Counter {
    /// The family of its table (`NFPROTO_*`, see [`family_name`]).
    pub family: u8,
    /// Its table.
    pub table: String,
    /// The chain of a rule's counter; `None` for a counter object.
    pub chain: Option<String>,
    /// The name of a counter object, or the comment of a rule; `None` for a rule without one.
    pub name: Option<String>,
    /// The handle of the object or rule, unique within its table.
    pub handle: u64,
    /// Bytes counted.
    pub bytes: u64,
    /// Packets counted.
    pub packets: u64,
}

/// A NUL-terminated name.
fn name(payload: &[u8]) -> String {
    let name = payload.split(|&b| b == 0).next().unwrap_or_default();
    String::from_utf8_lossy(name).into_owned()
}

/// A big-endian u64 attribute.
fn be64(payload: &[u8]) -> Result<u64, NetlinkError> {
    u64_at(payload, 0)
        .map(u64::from_be)
        .ok_or(NetlinkError::Malformed(
            "a 64-bit attribute shorter than 8 bytes",
        ))
}

/// The bytes and packets of a counter's data.
fn counts(data: &[u8]) -> Result<(u64, u64), NetlinkError> {
    let (mut bytes, mut packets) = (None, None);
    let mut attrs = Attributes::new(data);
    for (kind, payload) in attrs.by_ref() {
        match kind {
            NFTA_COUNTER_BYTES => bytes = Some(be64(payload)?),
            NFTA_COUNTER_PACKETS => packets = Some(be64(payload)?),
            _ => {}
        }
    }
    match (attrs.whole(), bytes, packets) {
        (true, Some(bytes), Some(packets)) => Ok((bytes, packets)),
        _ => Err(NetlinkError::Malformed(
            "a counter without its bytes and packets",
        )),
    }
}

/// The family of a message and its attributes, after `struct nfgenmsg`.
fn split(message: &[u8]) -> Result<(u8, Attributes<'_>), NetlinkError> {
    match message.get(NFGENMSG..) {
        Some(rest) => Ok((message[0], Attributes::new(rest))),
        None => Err(NetlinkError::Malformed(
            "an nf_tables message shorter than nfgenmsg",
        )),
    }
}

/// Fails a message whose attributes ran past its end or that named no table.
fn check(attrs: &Attributes<'_>, counter: &Counter) -> Result<(), NetlinkError> {
    if !attrs.whole() {
        return Err(NetlinkError::Malformed(
            "an attribute past the message's end",
        ));
    }
    if counter.table.is_empty() {
        return Err(NetlinkError::Malformed(
            "an nf_tables message without its table",
        ));
    }
    Ok(())
}

/// The counter of one `NFT_MSG_NEWOBJ` message; `Ok(None)` for an object of another type (a
/// quota, a limit).
pub fn parse_object(message: &[u8]) -> Result<Option<Counter>, NetlinkError> {
    let (family, mut attrs) = split(message)?;
    let mut c = Counter {
        family,
        ..Counter::default()
    };
    let (mut kind, mut data) = (None, None);
    for (attr, payload) in attrs.by_ref() {
        match attr {
            NFTA_OBJ_TABLE => c.table = name(payload),
            NFTA_OBJ_NAME => c.name = Some(name(payload)),
            NFTA_OBJ_TYPE => kind = u32_at(payload, 0).map(u32::from_be),
            NFTA_OBJ_HANDLE => c.handle = be64(payload)?,
            NFTA_OBJ_DATA => data = Some(payload),
            _ => {}
        }
    }
    check(&attrs, &c)?;
    if c.name.is_none() {
        return Err(NetlinkError::Malformed("an object without its name"));
    }
    if kind != Some(NFT_OBJECT_COUNTER) {
        return Ok(None);
    }
    let data = data.ok_or(NetlinkError::Malformed("a counter object without its data"))?;
    (c.bytes, c.packets) = counts(data)?;
    Ok(Some(c))
}

/// The counter of one `NFT_MSG_NEWRULE` message, named by the rule's comment; `Ok(None)` for a
/// rule without a `counter` expression. Of a rule with several, the first counts.
pub fn parse_rule(message: &[u8]) -> Result<Option<Counter>, NetlinkError> {
    let (family, mut attrs) = split(message)?;
    let mut c = Counter {
        family,
        chain: Some(String::new()),
        ..Counter::default()
    };
    let mut counted = None;
    for (attr, payload) in attrs.by_ref() {
        match attr {
            NFTA_RULE_TABLE => c.table = name(payload),
            NFTA_RULE_CHAIN => c.chain = Some(name(payload)),
            NFTA_RULE_HANDLE => c.handle = be64(payload)?,
            NFTA_RULE_EXPRESSIONS => counted = first_counter(payload)?,
            NFTA_RULE_USERDATA => c.name = comment(payload),
            _ => {}
        }
    }
    check(&attrs, &c)?;
    let Some((bytes, packets)) = counted else {
        return Ok(None);
    };
    (c.bytes, c.packets) = (bytes, packets);
    Ok(Some(c))
}

/// The bytes and packets of the first `counter` in a list of expressions.
fn first_counter(list: &[u8]) -> Result<Option<(u64, u64)>, NetlinkError> {
    let mut elements = Attributes::new(list);
    for (kind, element) in elements.by_ref() {
        if kind != NFTA_LIST_ELEM {
            continue;
        }
        let (mut is_counter, mut data) = (false, None);
        let mut attrs = Attributes::new(element);
        for (attr, payload) in attrs.by_ref() {
            match attr {
                NFTA_EXPR_NAME => is_counter = name(payload) == "counter",
                NFTA_EXPR_DATA => data = Some(payload),
                _ => {}
            }
        }
        if !attrs.whole() {
            return Err(NetlinkError::Malformed("an expression past its end"));
        }
        if is_counter {
            let data = data.ok_or(NetlinkError::Malformed("a counter without its data"))?;
            return counts(data).map(Some);
        }
    }
    if !elements.whole() {
        return Err(NetlinkError::Malformed("an expression past the list's end"));
    }
    Ok(None)
}

/// The comment in a rule's user data; `None` when it has none. An item running past the end
/// ends the walk: user data is whatever the program that wrote the rule put there.
fn comment(udata: &[u8]) -> Option<String> {
    let mut rest = udata;
    while let [kind, len, tail @ ..] = rest {
        let value = tail.get(..usize::from(*len))?;
        if *kind == UDATA_RULE_COMMENT {
            return Some(name(value)).filter(|c| !c.is_empty());
        }
        rest = &tail[value.len()..];
    }
    None
}

/// Asks the kernel for its nf_tables counters.
#[derive(Debug)]
pub struct Nftables {
    dumper: Dumper,
}

impl Nftables {
    /// Opens the nfnetlink socket; fails where the kernel has no nfnetlink.
    pub fn open() -> Result<Nftables, NetlinkError> {
        Ok(Nftables {
            dumper: Dumper::new(NetlinkSocket::open(NETFILTER, TIMEOUT)?),
        })
    }

    /// Hands every counter object of every family to `each`, then, when `rules` is true, the
    /// counter of every rule that has one. A message that does not parse fails the whole
    /// listing, so no rate is built from part of an answer.
    pub fn each(&mut self, rules: bool, each: &mut dyn FnMut(Counter)) -> Result<(), NetlinkError> {
        let dumps: [(u16, u16, Parser); 2] = [
            (NFT_MSG_GETOBJ, NFT_MSG_NEWOBJ, parse_object),
            (NFT_MSG_GETRULE, NFT_MSG_NEWRULE, parse_rule),
        ];
        for (request, answer, parse) in dumps.into_iter().take(if rules { 2 } else { 1 }) {
            let mut failed = None;
            self.dumper.dump_answered(
                request,
                answer,
                &[0; NFGENMSG],
                &mut |m| match parse(m) {
                    Ok(Some(c)) => each(c),
                    Ok(None) => {}
                    Err(e) => {
                        failed.get_or_insert(e);
                    }
                },
            )?;
            if let Some(e) = failed {
                return Err(e);
            }
        }
        Ok(())
    }
}

/// Reads one message of a dump.
type Parser = fn(&[u8]) -> Result<Option<Counter>, NetlinkError>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::{Datagram, read_datagram};

    /// The messages of the dump captured in `tests/fixtures/netlink/<file>`, of type `kind` and
    /// sequence number `seq`, each read by `parse`.
    fn captured(file: &str, kind: u16, seq: u32, parse: Parser) -> Vec<Option<Counter>> {
        let path = format!(
            "{}/tests/fixtures/netlink/{file}",
            env!("CARGO_MANIFEST_DIR")
        );
        let mut got = Vec::new();
        let r = read_datagram(&std::fs::read(path).unwrap(), kind, seq, &mut |m| {
            got.push(parse(m).unwrap())
        });
        assert_eq!(r.unwrap(), Datagram::Done);
        got
    }

    fn counter(family: u8, table: &str, chain: Option<&str>, name: Option<&str>) -> Counter {
        Counter {
            family,
            table: table.into(),
            chain: chain.map(Into::into),
            name: name.map(Into::into),
            ..Counter::default()
        }
    }

    /// Answers captured from a real kernel (6.x, x86_64) by `capture_nftables.py` (beside the
    /// fixtures) in a network namespace holding `nftables.nft`, after 3 UDP datagrams of 100 bytes
    /// (128 with their headers) to the discard port and 2 pings (84 bytes each) on `lo`.
    #[test]
    fn captured_objects_list_the_counters_and_skip_other_types() {
        let got = captured("nftables_objects.bin", NFT_MSG_NEWOBJ, 7, parse_object);
        let lo_udp = Counter {
            handle: 2,
            bytes: 384,
            packets: 3,
            ..counter(1, "pipit", None, Some("lo_udp"))
        };
        let six = Counter {
            handle: 1,
            ..counter(10, "other", None, Some("six"))
        };
        assert_eq!(
            got,
            [Some(lo_udp), None, Some(six)],
            "the quota is no counter"
        );
    }

    #[test]
    fn captured_rules_give_their_counters_with_their_comments() {
        let got = captured("nftables_rules.bin", NFT_MSG_NEWRULE, 8, parse_rule);
        let rule = |handle, name, bytes, packets| Counter {
            handle,
            bytes,
            packets,
            ..counter(1, "pipit", Some("input"), name)
        };
        assert_eq!(
            got,
            [
                None,
                Some(rule(5, Some("Discard on lo"), 384, 3)),
                Some(rule(6, Some("!fw4: ping"), 168, 2)),
                Some(rule(7, None, 1188, 10)),
                None,
            ],
            "a rule naming a counter object has no counter of its own; nor has a commented accept"
        );
        assert_eq!(family_name(got[1].as_ref().unwrap().family), Some("inet"));
        assert_eq!(family_name(10), Some("ip6"));
        assert_eq!(family_name(4), None);
    }

    #[test]
    fn comments_are_found_among_other_user_data_and_cut_items_are_none() {
        assert_eq!(comment(b"\x01\x01x\x00\x04abc\x00"), Some("abc".into()));
        assert_eq!(comment(b"\x00\x05abc"), None, "longer than the data");
        assert_eq!(comment(b"\x01\x01x"), None, "no comment");
        assert_eq!(comment(b"\x00\x01\x00"), None, "an empty comment");
        assert_eq!(comment(b"\x01"), None);
    }

    fn attribute(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut a = ((payload.len() + 4) as u16).to_ne_bytes().to_vec();
        a.extend(kind.to_ne_bytes());
        a.extend(payload);
        a.resize((a.len() + 3) & !3, 0);
        a
    }

    fn counter_data(bytes: u64, packets: u64) -> Vec<u8> {
        let mut d = attribute(NFTA_COUNTER_BYTES, &bytes.to_be_bytes());
        d.extend(attribute(NFTA_COUNTER_PACKETS, &packets.to_be_bytes()));
        d
    }

    fn expression(name: &[u8], data: &[u8]) -> Vec<u8> {
        let mut e = attribute(NFTA_EXPR_NAME, name);
        e.extend(attribute(NFTA_EXPR_DATA, data));
        attribute(NFTA_LIST_ELEM, &e)
    }

    fn rule(expressions: &[u8]) -> Vec<u8> {
        let mut m = vec![2, 0, 0, 0];
        m.extend(attribute(NFTA_RULE_TABLE, b"t\0"));
        m.extend(attribute(NFTA_RULE_CHAIN, b"c\0"));
        m.extend(attribute(NFTA_RULE_EXPRESSIONS, expressions));
        m
    }

    #[test]
    fn the_first_counter_of_a_rule_counts() {
        let mut list = expression(b"payload\0", &[0; 8]);
        list.extend(expression(b"counter\0", &counter_data(u64::MAX, 1 << 40)));
        list.extend(expression(b"counter\0", &counter_data(1, 1)));
        let c = parse_rule(&rule(&list)).unwrap().unwrap();
        assert_eq!((c.family, c.table.as_str()), (2, "t"));
        assert_eq!(c.chain.as_deref(), Some("c"));
        assert_eq!((c.bytes, c.packets, c.name), (u64::MAX, 1 << 40, None));
    }

    #[test]
    fn broken_messages_are_malformed() {
        let malformed = |m: &[u8]| matches!(parse_rule(m), Err(NetlinkError::Malformed(_)));
        assert!(malformed(&[2, 0, 0]), "shorter than nfgenmsg");
        assert!(malformed(&[2, 0, 0, 0]), "no table");
        let short = expression(b"counter\0", &attribute(NFTA_COUNTER_BYTES, &[0; 8]));
        assert!(malformed(&rule(&short)), "no packets");
        let whole = rule(&expression(b"counter\0", &counter_data(1, 2)));
        assert!(parse_rule(&whole).unwrap().is_some());
        assert!(malformed(&whole[..whole.len() - 1]), "cut in an attribute");
        let mut handle = whole.clone();
        handle.extend(attribute(NFTA_RULE_HANDLE, &[0; 4]));
        assert!(malformed(&handle), "a handle of 4 bytes");
        let mut object = vec![1, 0, 0, 0];
        object.extend(attribute(NFTA_OBJ_TABLE, b"t\0"));
        object.extend(attribute(NFTA_OBJ_TYPE, &NFT_OBJECT_COUNTER.to_be_bytes()));
        let malformed = |m: &[u8]| matches!(parse_object(m), Err(NetlinkError::Malformed(_)));
        assert!(malformed(&object), "an object without its name");
        object.extend(attribute(NFTA_OBJ_NAME, b"n\0"));
        assert!(malformed(&object), "a counter object without its data");
        object.extend(attribute(NFTA_OBJ_DATA, &counter_data(3, 4)));
        let c = parse_object(&object).unwrap().unwrap();
        assert_eq!((c.name.as_deref(), c.bytes, c.packets), (Some("n"), 3, 4));
    }
}
