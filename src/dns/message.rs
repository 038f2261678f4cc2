//! The DNS wire format (RFC 1035), as much of it as a stub resolver asking for A and AAAA records
//! needs: one question out, the addresses of one reply in.
//!
//! Replies come from the network: every length and count in one is checked against the bytes that
//! are there, and a reply that does not add up is refused whole (unless the server said it was
//! truncated, when the complete records before the cut are kept).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The record type of an IPv4 address.
pub const TYPE_A: u16 = 1;
/// The record type of an IPv6 address.
pub const TYPE_AAAA: u16 = 28;
/// The Internet class.
const CLASS_IN: u16 = 1;
/// Header length: id, flags and four counts of two bytes each.
const HEADER: usize = 12;
/// The longest name in its wire form, length bytes included.
const MAX_NAME: usize = 255;

/// Flag bits of the header's second word.
const FLAG_RESPONSE: u16 = 0x8000;
const FLAG_TRUNCATED: u16 = 0x0200;
const FLAG_RECURSION_DESIRED: u16 = 0x0100;
const OPCODE_MASK: u16 = 0x7800;
const RCODE_MASK: u16 = 0x000f;
/// Response codes: no error, and no such name.
const RCODE_NOERROR: u16 = 0;
const RCODE_NXDOMAIN: u16 = 3;

/// What a server answered to one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The name exists; these are its addresses of the type asked for (none: it has none of
    /// that type).
    Addresses(Vec<IpAddr>),
    /// The name does not exist (NXDOMAIN).
    NoSuchName,
    /// The server could not answer: a failure code (such as SERVFAIL or REFUSED), or a reply
    /// that does not parse. Another server may do better.
    Failed,
}

/// A query for records of `qtype` of `name` (an absolute name, without the trailing dot), with
/// recursion desired, or `None` when `name` cannot be a DNS name (an empty label, a label over
/// 63 bytes, more than 255 bytes in all, or a byte other than an ASCII letter, digit, `-` or
/// `_`).
pub fn query(id: u16, name: &str, qtype: u16) -> Option<Vec<u8>> {
    let mut q = Vec::with_capacity(HEADER + name.len() + 6);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&FLAG_RECURSION_DESIRED.to_be_bytes());
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        let bytes = label.as_bytes();
        let allowed = |b: &u8| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_';
        if bytes.is_empty() || bytes.len() > 63 || !bytes.iter().all(allowed) {
            return None;
        }
        q.push(bytes.len() as u8);
        q.extend_from_slice(bytes);
    }
    q.push(0);
    if q.len() - HEADER > MAX_NAME {
        return None;
    }
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    Some(q)
}

/// The reply in `packet` to `query` (as built by [`query`]), or `None` when `packet` is not a
/// reply to it: another id, not a response, or another question. Names in the question are
/// compared without regard to ASCII case.
pub fn reply(packet: &[u8], query: &[u8]) -> Option<Reply> {
    let header = packet.get(..HEADER)?;
    let question = query.get(HEADER..)?;
    let flags = word(header, 2)?;
    if header[..2] != query[..2]
        || flags & FLAG_RESPONSE == 0
        || flags & OPCODE_MASK != 0
        || word(header, 4)? != 1
        || !packet
            .get(HEADER..HEADER + question.len())?
            .eq_ignore_ascii_case(question)
    {
        return None;
    }
    match flags & RCODE_MASK {
        RCODE_NOERROR => {}
        RCODE_NXDOMAIN => return Some(Reply::NoSuchName),
        _ => return Some(Reply::Failed),
    }
    let qtype = word(question, question.len().checked_sub(4)?)?;
    let mut addresses = Vec::new();
    let mut at = HEADER + question.len();
    for _ in 0..word(header, 6)? {
        match record(packet, at, qtype) {
            Some((next, address)) => {
                addresses.extend(address);
                at = next;
            }
            None if flags & FLAG_TRUNCATED != 0 => break,
            None => return Some(Reply::Failed),
        }
    }
    Some(Reply::Addresses(addresses))
}

/// The resource record at `at`: where the next one starts, and its address when it is one of
/// type `qtype` in the Internet class. `None` when it runs past the end of `packet`.
fn record(packet: &[u8], at: usize, qtype: u16) -> Option<(usize, Option<IpAddr>)> {
    let at = skip_name(packet, at)?;
    let fixed = packet.get(at..at + 10)?;
    let rtype = word(fixed, 0)?;
    let class = word(fixed, 2)?;
    let len = usize::from(word(fixed, 8)?);
    let data = packet.get(at + 10..at + 10 + len)?;
    let address = match (class == CLASS_IN && rtype == qtype, data.len()) {
        (true, 4) if rtype == TYPE_A => {
            let octets: [u8; 4] = data.try_into().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(octets)))
        }
        (true, 16) if rtype == TYPE_AAAA => {
            let octets: [u8; 16] = data.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(octets)))
        }
        _ => None,
    };
    Some((at + 10 + len, address))
}

/// Where the name at `at` ends. A compression pointer ends a name, so it is never followed.
fn skip_name(packet: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *packet.get(at)?;
        match len & 0xc0 {
            0xc0 => return packet.get(at + 1).map(|_| at + 2),
            0 if len == 0 => return Some(at + 1),
            0 => at += 1 + usize::from(len),
            _ => return None,
        }
    }
}

fn word(bytes: &[u8], at: usize) -> Option<u16> {
    let pair = bytes.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([pair[0], pair[1]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply to `q` with `rcode`, `flags` added, and `answers` as (type, class, data) records
    /// whose owner is a compression pointer to the question's name.
    fn answer(q: &[u8], rcode: u16, flags: u16, answers: &[(u16, u16, &[u8])]) -> Vec<u8> {
        let mut r = q.to_vec();
        let f = FLAG_RESPONSE | FLAG_RECURSION_DESIRED | 0x0080 | flags | rcode;
        r[2..4].copy_from_slice(&f.to_be_bytes());
        r[6..8].copy_from_slice(&(answers.len() as u16).to_be_bytes());
        for (rtype, class, data) in answers {
            r.extend_from_slice(&[0xc0, 12]);
            r.extend_from_slice(&rtype.to_be_bytes());
            r.extend_from_slice(&class.to_be_bytes());
            r.extend_from_slice(&300u32.to_be_bytes());
            r.extend_from_slice(&(data.len() as u16).to_be_bytes());
            r.extend_from_slice(data);
        }
        r
    }

    #[test]
    fn a_query_is_header_question_type_and_class() {
        let q = query(0x1234, "graphite.lan", TYPE_A).unwrap();
        let mut expected = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        expected.extend_from_slice(b"\x08graphite\x03lan\x00\x00\x01\x00\x01");
        assert_eq!(q, expected);
    }

    #[test]
    fn names_that_cannot_be_asked_are_refused() {
        for bad in [
            "",
            "a..b",
            ".a",
            "a.",
            "sp ace.lan",
            "caf\u{e9}.lan",
            "[fe80::1%eth0]",
        ] {
            assert_eq!(query(1, bad, TYPE_A), None, "{bad:?}");
        }
        assert_eq!(query(1, &"a".repeat(64), TYPE_A), None);
        assert!(query(1, &"a".repeat(63), TYPE_A).is_some());
        let long = vec!["a".repeat(63); 4].join(".");
        assert_eq!(
            query(1, &long, TYPE_A),
            None,
            "255 bytes of labels and lengths"
        );
        assert!(query(1, &long[2..], TYPE_A).is_some());
    }

    #[test]
    fn addresses_of_the_type_asked_are_read_and_others_skipped() {
        let q = query(7, "h.lan", TYPE_A).unwrap();
        let cname: &[u8] = b"\x05other\x03lan\x00";
        let r = answer(
            &q,
            0,
            0,
            &[
                (5, 1, cname),
                (TYPE_A, 1, &[192, 0, 2, 1]),
                (TYPE_A, 3, &[192, 0, 2, 9]),
                (TYPE_A, 1, &[192, 0, 2, 2]),
            ],
        );
        let expected = vec![IpAddr::from([192, 0, 2, 1]), IpAddr::from([192, 0, 2, 2])];
        assert_eq!(reply(&r, &q), Some(Reply::Addresses(expected)));

        let q6 = query(8, "h.lan", TYPE_AAAA).unwrap();
        let v6 = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
        let r6 = answer(&q6, 0, 0, &[(TYPE_AAAA, 1, &v6.octets())]);
        assert_eq!(reply(&r6, &q6), Some(Reply::Addresses(vec![v6.into()])));
    }

    #[test]
    fn codes_say_no_such_name_or_failure() {
        let q = query(7, "h.lan", TYPE_A).unwrap();
        assert_eq!(reply(&answer(&q, 3, 0, &[]), &q), Some(Reply::NoSuchName));
        assert_eq!(reply(&answer(&q, 2, 0, &[]), &q), Some(Reply::Failed));
        assert_eq!(reply(&answer(&q, 5, 0, &[]), &q), Some(Reply::Failed));
        assert_eq!(
            reply(&answer(&q, 0, 0, &[]), &q),
            Some(Reply::Addresses(vec![]))
        );
    }

    #[test]
    fn replies_to_another_question_are_not_taken() {
        let q = query(7, "h.lan", TYPE_A).unwrap();
        let good = answer(&q, 0, 0, &[(TYPE_A, 1, &[192, 0, 2, 1])]);

        let mut other_id = good.clone();
        other_id[1] = 8;
        assert_eq!(reply(&other_id, &q), None);

        let mut not_response = good.clone();
        not_response[2] &= 0x7f;
        assert_eq!(reply(&not_response, &q), None);

        let mut other_name = good.clone();
        other_name[13] = b'x';
        assert_eq!(reply(&other_name, &q), None);

        let mut other_type = good.clone();
        other_type[12 + 7 + 1] = 28;
        assert_eq!(reply(&other_type, &q), None);

        let mut upper = good.clone();
        upper[13] = b'H';
        assert!(matches!(reply(&upper, &q), Some(Reply::Addresses(_))));
    }

    #[test]
    fn a_cut_reply_fails_unless_marked_truncated() {
        let q = query(7, "h.lan", TYPE_A).unwrap();
        let two = [
            (TYPE_A, 1, &[192u8, 0, 2, 1][..]),
            (TYPE_A, 1, &[192, 0, 2, 2]),
        ];
        let mut cut = answer(&q, 0, 0, &two);
        cut.truncate(cut.len() - 3);
        assert_eq!(reply(&cut, &q), Some(Reply::Failed));
        let mut truncated = answer(&q, 0, FLAG_TRUNCATED, &two);
        truncated.truncate(truncated.len() - 3);
        assert_eq!(
            reply(&truncated, &q),
            Some(Reply::Addresses(vec![IpAddr::from([192, 0, 2, 1])]))
        );
    }

    #[test]
    fn hostile_replies_never_panic() {
        let q = query(7, "h.lan", TYPE_A).unwrap();
        let good = answer(&q, 0, 0, &[(TYPE_A, 1, &[192, 0, 2, 1])]);
        for cut in 0..good.len() {
            let _ = reply(&good[..cut], &q);
        }
        let mut counts = good.clone();
        counts[6..8].copy_from_slice(&[0xff, 0xff]);
        assert_eq!(reply(&counts, &q), Some(Reply::Failed));
        let mut label = good.clone();
        let owner = 12 + q.len() - 12;
        label[owner] = 0x80;
        assert_eq!(reply(&label, &q), Some(Reply::Failed));
        let mut long = good;
        let rdlen = long.len() - 6;
        long[rdlen..rdlen + 2].copy_from_slice(&[0xff, 0xff]);
        assert_eq!(reply(&long, &q), Some(Reply::Failed));
        assert_eq!(reply(&[], &[]), None);
    }
}
