//! Netlink, the kernel's message interface: the header every request and answer carries, a dump
//! (one request answered by many messages, ended by `NLMSG_DONE`) and a single request answered
//! before its acknowledgement. The families pipit asks are in their own files: [`sock_diag`]
//! (sockets by state), [`qdisc`] and [`link`] (queue disciplines and interfaces over rtnetlink),
//! [`nftables`] (nf_tables counters over nfnetlink), [`genl`] (generic netlink, whose families
//! are found by name) with [`nl80211`] (Wi-Fi) and [`wireguard`] on it. The socket itself is
//! `crate::sys::netlink`.

pub mod genl;
pub mod link;
pub mod nftables;
pub mod nl80211;
pub mod qdisc;
pub mod sock_diag;
pub mod wireguard;

use std::fmt;
use std::io;

use crate::sys::netlink::NetlinkSocket;

/// Message type of an error or acknowledgement answer.
const NLMSG_ERROR: u16 = 2;
/// Message type that ends a dump.
const NLMSG_DONE: u16 = 3;
/// Flag of an answer's message: the tables changed while the dump was being taken
/// (`NLM_F_DUMP_INTR`), so it may have missed or repeated entries.
const DUMP_INTERRUPTED: u16 = 0x10;
/// Flags of a dump request: `NLM_F_REQUEST | NLM_F_DUMP`.
const DUMP_REQUEST: u16 = 0x1 | 0x300;
/// Flags of a single request whose answer ends with an acknowledgement: `NLM_F_REQUEST |
/// NLM_F_ACK`.
const ACKED_REQUEST: u16 = 0x1 | 0x4;
/// Size of `struct nlmsghdr`.
const HEADER: usize = 16;
/// Receive buffer: larger than any datagram the kernel sends for a dump (it fills one page, or
/// at most 32 KiB, per datagram).
const BUFFER: usize = 64 * 1024;

/// What went wrong talking netlink.
#[derive(Debug)]
#[non_exhaustive]
pub enum NetlinkError {
    /// The socket failed or the kernel did not answer in time; the source tries again at its next
    /// collection.
    Io(io::Error),
    /// The kernel refused the request with this errno; `ENOENT` or `EOPNOTSUPP` mean it lacks the
    /// family (a module not loaded, such as OpenWrt's `kmod-inet-diag`).
    Refused(i32),
    /// An answer that does not parse; a kernel bug or an unexpected layout. Nothing of it is used.
    Malformed(&'static str),
    /// The kernel has no generic netlink family of this name: its module is not loaded, or the
    /// kernel was built without it (no Wi-Fi driver for `nl80211`, no WireGuard for `wireguard`).
    NoFamily(&'static str),
    /// What was dumped changed during the dump (a firewall or interface reloaded), and the kernel
    /// flagged the answer as possibly missing or repeating entries. The whole answer was read,
    /// but is not to be used; the source asks again at its next collection.
    Interrupted,
}

impl NetlinkError {
    /// True when the kernel does not offer what was asked at all, so asking again is pointless.
    pub fn is_unsupported(&self) -> bool {
        match self {
            NetlinkError::Refused(errno) => {
                [libc::ENOENT, libc::EOPNOTSUPP, libc::EINVAL].contains(errno)
            }
            NetlinkError::Io(e) => e.raw_os_error() == Some(libc::EPROTONOSUPPORT),
            NetlinkError::Malformed(_) | NetlinkError::Interrupted => false,
            NetlinkError::NoFamily(_) => true,
        }
    }
}

impl fmt::Display for NetlinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetlinkError::Io(e) => write!(f, "netlink: {e}"),
            NetlinkError::Refused(errno) => write!(
                f,
                "netlink: the kernel refused the request: {}",
                io::Error::from_raw_os_error(*errno)
            ),
            NetlinkError::Malformed(what) => write!(f, "netlink: malformed answer: {what}"),
            NetlinkError::NoFamily(name) => write!(
                f,
                "netlink: this kernel does not support {name}: it has no generic netlink family \
                 of that name (load its module, or use a kernel built with it)"
            ),
            NetlinkError::Interrupted => f.write_str(
                "netlink: the kernel's tables changed during the dump (a reload?), so it may be \
                 incomplete; this collection is skipped and the next one asks again",
            ),
        }
    }
}

impl std::error::Error for NetlinkError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NetlinkError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for NetlinkError {
    fn from(e: io::Error) -> NetlinkError {
        NetlinkError::Io(e)
    }
}

/// A request of message type `kind` with `flags` and `payload`, numbered `seq`.
fn request(kind: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let len = HEADER + payload.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(payload);
    m
}

/// What one datagram of a dump held.
#[derive(Debug, PartialEq, Eq)]
pub enum Datagram {
    /// More messages follow in another datagram.
    More,
    /// The dump ended.
    Done,
}

/// Reads one datagram of the answer to the request numbered `seq`: hands the payload of every
/// message of type `kind` to `each` (messages of another sequence number are skipped) and says
/// whether the answer ended (the end of a dump, or the acknowledgement of a single request). A
/// message that does not fit the datagram fails it.
pub fn read_datagram(
    datagram: &[u8],
    kind: u16,
    seq: u32,
    each: &mut dyn FnMut(&[u8]),
) -> Result<Datagram, NetlinkError> {
    read_answer(datagram, kind, seq, each, &mut false)
}

/// [`read_datagram`], also setting `interrupted` when a message of the answer is flagged as taken
/// while the tables changed.
fn read_answer(
    datagram: &[u8],
    kind: u16,
    seq: u32,
    each: &mut dyn FnMut(&[u8]),
    interrupted: &mut bool,
) -> Result<Datagram, NetlinkError> {
    let mut rest = datagram;
    while !rest.is_empty() {
        if rest.len() < HEADER {
            return Err(NetlinkError::Malformed("a message shorter than its header"));
        }
        let len = u32::from_ne_bytes(rest[0..4].try_into().unwrap_or_default()) as usize;
        if len < HEADER || len > rest.len() {
            return Err(NetlinkError::Malformed(
                "a message length beyond the datagram",
            ));
        }
        let message_kind = u16::from_ne_bytes([rest[4], rest[5]]);
        let flags = u16::from_ne_bytes([rest[6], rest[7]]);
        let message_seq = u32::from_ne_bytes(rest[8..12].try_into().unwrap_or_default());
        let payload = &rest[HEADER..len];
        if message_seq == seq {
            *interrupted |= flags & DUMP_INTERRUPTED != 0;
            match message_kind {
                NLMSG_DONE => return Ok(Datagram::Done),
                NLMSG_ERROR => {
                    let errno = payload
                        .get(0..4)
                        .map(|b| i32::from_ne_bytes(b.try_into().unwrap_or_default()))
                        .ok_or(NetlinkError::Malformed("an error message without its code"))?;
                    // An error of 0 is the acknowledgement that ends the answer to a single request.
                    if errno != 0 {
                        return Err(NetlinkError::Refused(errno.saturating_neg()));
                    }
                    return Ok(Datagram::Done);
                }
                k if k == kind => each(payload),
                _ => {}
            }
        }
        // Messages are aligned to 4 bytes; the last one of a datagram may lack its padding.
        rest = rest.get((len + 3) & !3..).unwrap_or_default();
    }
    Ok(Datagram::More)
}

/// Dumps over netlink: one socket and one receive buffer, reused for every request.
#[derive(Debug)]
pub struct Dumper {
    socket: NetlinkSocket,
    buf: Vec<u8>,
    seq: u32,
}

impl Dumper {
    /// A dumper on `socket`.
    pub fn new(socket: NetlinkSocket) -> Dumper {
        Dumper {
            socket,
            buf: vec![0; BUFFER],
            seq: 0,
        }
    }

    /// Sends the dump request `kind` with `payload` and hands the payload of every answer of type
    /// `kind` to `each`, until the kernel says the dump is done.
    pub fn dump(
        &mut self,
        kind: u16,
        payload: &[u8],
        each: &mut dyn FnMut(&[u8]),
    ) -> Result<(), NetlinkError> {
        self.dump_answered(kind, kind, payload, each)
    }

    /// Sends the dump request `request` with `payload` and hands the payload of every answer of
    /// type `answer` to `each`, until the kernel says the dump is done. rtnetlink answers a
    /// `RTM_GET…` request with `RTM_NEW…` messages.
    pub fn dump_answered(
        &mut self,
        request: u16,
        answer: u16,
        payload: &[u8],
        each: &mut dyn FnMut(&[u8]),
    ) -> Result<(), NetlinkError> {
        self.exchange(request, answer, DUMP_REQUEST, payload, each)
    }

    /// Sends the single request `kind` with `payload` and hands the payload of every answer of
    /// type `kind` to `each`, until the kernel acknowledges the request.
    pub fn ask(
        &mut self,
        kind: u16,
        payload: &[u8],
        each: &mut dyn FnMut(&[u8]),
    ) -> Result<(), NetlinkError> {
        self.exchange(kind, kind, ACKED_REQUEST, payload, each)
    }

    fn exchange(
        &mut self,
        kind: u16,
        answer: u16,
        flags: u16,
        payload: &[u8],
        each: &mut dyn FnMut(&[u8]),
    ) -> Result<(), NetlinkError> {
        self.seq = self.seq.wrapping_add(1);
        self.socket.send(&request(kind, flags, self.seq, payload))?;
        let mut interrupted = false;
        loop {
            let n = self.socket.recv(&mut self.buf)?;
            let read = read_answer(&self.buf[..n], answer, self.seq, each, &mut interrupted)?;
            if read == Datagram::Done {
                // Read to its end all the same, so the next request's answer starts clean.
                return if interrupted {
                    Err(NetlinkError::Interrupted)
                } else {
                    Ok(())
                };
            }
        }
    }
}

/// Size of `struct nlattr`, the header of an attribute.
const ATTRIBUTE_HEADER: usize = 4;
/// The bits of an attribute's type that are its type; the others are flags (nested, byte order).
const ATTRIBUTE_TYPE: u16 = 0x3fff;

/// The attributes (type, payload) packed in `data`, as netlink messages carry them after their
/// fixed part. Iteration stops at the first attribute that does not fit; [`Attributes::whole`]
/// then says so.
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    rest: &'a [u8],
    broken: bool,
}

impl<'a> Attributes<'a> {
    /// The attributes in `data`.
    pub fn new(data: &'a [u8]) -> Attributes<'a> {
        Attributes {
            rest: data,
            broken: false,
        }
    }

    /// Whether every attribute so far fitted; false once one ran past the end.
    pub fn whole(&self) -> bool {
        !self.broken
    }
}

impl<'a> Iterator for Attributes<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<(u16, &'a [u8])> {
        if self.rest.len() < ATTRIBUTE_HEADER {
            // Padding of fewer bytes than a header may end a message.
            self.rest = &[];
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([self.rest[0], self.rest[1]]));
        let kind = u16::from_ne_bytes([self.rest[2], self.rest[3]]) & ATTRIBUTE_TYPE;
        let Some(payload) = self.rest.get(ATTRIBUTE_HEADER..len) else {
            self.broken = true;
            self.rest = &[];
            return None;
        };
        self.rest = self.rest.get((len + 3) & !3..).unwrap_or_default();
        Some((kind, payload))
    }
}

/// Appends the attribute `kind` holding `payload` to `out`, padded to 4 bytes, as requests carry
/// their arguments.
pub fn push_attribute(out: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = ATTRIBUTE_HEADER + payload.len();
    out.extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(out.len() + (len.next_multiple_of(4) - len), 0);
}

/// The text of a NUL-terminated string attribute (an interface or qdisc name), without the NUL
/// and what may follow it.
pub fn text(payload: &[u8]) -> String {
    let bytes = payload.split(|&b| b == 0).next().unwrap_or_default();
    String::from_utf8_lossy(bytes).into_owned()
}

/// The 2-byte unsigned integer at `offset` of `data`, in the machine's byte order.
pub fn u16_at(data: &[u8], offset: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(
        data.get(offset..offset.checked_add(2)?)?.try_into().ok()?,
    ))
}

/// The 4-byte unsigned integer at `offset` of `data`, in the machine's byte order.
pub fn u32_at(data: &[u8], offset: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(
        data.get(offset..offset.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// The 8-byte unsigned integer at `offset` of `data`, in the machine's byte order.
pub fn u64_at(data: &[u8], offset: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(
        data.get(offset..offset.checked_add(8)?)?.try_into().ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut m = request(kind, DUMP_REQUEST, seq, payload);
        m[6..8].copy_from_slice(&0u16.to_ne_bytes());
        m.resize((m.len() + 3) & !3, 0);
        m
    }

    fn payloads(datagram: &[u8], seq: u32) -> (Result<Datagram, NetlinkError>, Vec<Vec<u8>>) {
        let mut seen = Vec::new();
        let r = read_datagram(datagram, 20, seq, &mut |p| seen.push(p.to_vec()));
        (r, seen)
    }

    #[test]
    fn a_dump_request_has_the_header_the_kernel_expects() {
        let m = request(20, DUMP_REQUEST, 7, &[1, 2, 3, 4]);
        assert_eq!(m.len(), 20);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 20);
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), 20);
        assert_eq!(u16::from_ne_bytes([m[6], m[7]]), 0x301);
        assert_eq!(u32::from_ne_bytes(m[8..12].try_into().unwrap()), 7);
    }

    #[test]
    fn messages_are_read_until_done_and_other_sequences_are_skipped() {
        let mut d = message(20, 5, b"abc");
        d.extend(message(20, 4, b"stale"));
        d.extend(message(21, 5, b"other type"));
        d.extend(message(20, 5, b"defg"));
        let (r, seen) = payloads(&d, 5);
        assert_eq!(r.unwrap(), Datagram::More);
        assert_eq!(seen, vec![b"abc".to_vec(), b"defg".to_vec()]);
        d.extend(message(NLMSG_DONE, 5, &0i32.to_ne_bytes()));
        d.extend(message(20, 5, b"after done"));
        let (r, seen) = payloads(&d, 5);
        assert_eq!(r.unwrap(), Datagram::Done);
        assert_eq!(seen.len(), 2);
    }

    #[test]
    fn a_dump_taken_while_the_tables_changed_is_noticed_on_any_of_its_messages() {
        let flagged = |kind, seq, payload: &[u8]| {
            let mut m = message(kind, seq, payload);
            m[6..8].copy_from_slice(&DUMP_INTERRUPTED.to_ne_bytes());
            m
        };
        let read = |d: &[u8]| {
            let mut interrupted = false;
            let r = read_answer(d, 20, 5, &mut |_| {}, &mut interrupted);
            (r.unwrap(), interrupted)
        };
        let mut d = message(20, 5, b"abc");
        d.extend(message(NLMSG_DONE, 5, &0i32.to_ne_bytes()));
        assert_eq!(read(&d), (Datagram::Done, false));
        let mut d = flagged(20, 5, b"abc");
        d.extend(message(20, 5, b"def"));
        assert_eq!(read(&d), (Datagram::More, true));
        // The kernel may flag only the message that ends the dump.
        let mut d = message(20, 5, b"abc");
        d.extend(flagged(NLMSG_DONE, 5, &0i32.to_ne_bytes()));
        assert_eq!(read(&d), (Datagram::Done, true));
        // Another request's flagged answer is not this one's.
        let mut d = flagged(20, 4, b"stale");
        d.extend(message(NLMSG_DONE, 5, &0i32.to_ne_bytes()));
        assert_eq!(read(&d), (Datagram::Done, false));
        let e = NetlinkError::Interrupted;
        assert!(!e.is_unsupported());
        assert!(e.to_string().contains("changed during the dump"), "{e}");
    }

    #[test]
    fn a_kernel_error_is_returned_with_its_errno() {
        let d = message(NLMSG_ERROR, 1, &(-libc::ENOENT).to_ne_bytes());
        let (r, _) = payloads(&d, 1);
        let e = r.unwrap_err();
        assert!(matches!(e, NetlinkError::Refused(libc::ENOENT)), "{e:?}");
        assert!(e.is_unsupported());
        assert!(e.to_string().contains("refused"), "{e}");
    }

    fn attribute(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        push_attribute(&mut a, kind, payload);
        a
    }

    #[test]
    fn an_acknowledgement_ends_the_answer_to_a_single_request() {
        let mut d = message(20, 3, b"family");
        d.extend(message(NLMSG_ERROR, 3, &0i32.to_ne_bytes()));
        let (r, seen) = payloads(&d, 3);
        assert_eq!(r.unwrap(), Datagram::Done);
        assert_eq!(seen, vec![b"family".to_vec()]);
        let ask = request(16, ACKED_REQUEST, 3, &[]);
        assert_eq!(u16::from_ne_bytes([ask[6], ask[7]]), 0x5);
    }

    #[test]
    fn attributes_built_for_a_request_read_back() {
        let mut d = Vec::new();
        push_attribute(&mut d, 2, b"nl80211\0");
        push_attribute(&mut d, 3, &7u32.to_ne_bytes());
        assert_eq!(d.len(), 12 + 8, "the name is padded to 4 bytes");
        let attrs: Vec<_> = Attributes::new(&d).collect();
        assert_eq!(text(attrs[0].1), "nl80211");
        assert_eq!(u32_at(attrs[1].1, 0), Some(7));
        assert_eq!(u16_at(&[1, 0, 2], 1), Some(u16::from_ne_bytes([0, 2])));
        assert_eq!(u16_at(&[1, 0, 2], 2), None);
        assert_eq!(text(b"wlan0\0\0junk"), "wlan0");
        assert_eq!(text(b"no nul"), "no nul");
    }

    #[test]
    fn attributes_are_read_with_their_padding_and_flags_masked() {
        let mut d = attribute(1, b"fq_codel\0");
        d.extend(attribute(0x8000 | 7, &attribute(1, &[0; 16])));
        d.extend(attribute(2, b""));
        let mut attrs = Attributes::new(&d);
        assert_eq!(attrs.next(), Some((1, &b"fq_codel\0"[..])));
        let (kind, nested) = attrs.next().unwrap();
        assert_eq!(kind, 7, "the nested flag is not part of the type");
        assert_eq!(Attributes::new(nested).next(), Some((1, &[0u8; 16][..])));
        assert_eq!(attrs.next(), Some((2, &b""[..])));
        assert_eq!(attrs.next(), None);
        assert!(attrs.whole());
    }

    #[test]
    fn an_attribute_past_the_end_stops_the_walk() {
        let mut d = attribute(1, b"abcd");
        d.extend(attribute(2, b"efgh"));
        let mut attrs = Attributes::new(&d[..d.len() - 1]);
        assert_eq!(attrs.next(), Some((1, &b"abcd"[..])));
        assert_eq!(attrs.next(), None);
        assert!(!attrs.whole());
        let mut short = Attributes::new(&[2, 0, 1, 0]);
        assert_eq!(short.next(), None, "a length shorter than the header");
        assert!(!short.whole());
    }

    #[test]
    fn integers_at_offsets() {
        let d = [1u8, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(u32_at(&d, 0), Some(u32::from_ne_bytes([1, 0, 0, 0])));
        assert_eq!(
            u64_at(&d, 4),
            Some(u64::from_ne_bytes([2, 0, 0, 0, 0, 0, 0, 0]))
        );
        assert_eq!(u32_at(&d, 10), None);
        assert_eq!(u64_at(&d, usize::MAX), None);
    }

    #[test]
    fn truncated_or_overlong_messages_are_refused_whole() {
        let d = message(20, 1, b"abcd");
        for cut in [3, HEADER - 1, d.len() - 1] {
            let (r, _) = payloads(&d[..cut], 1);
            assert!(matches!(r, Err(NetlinkError::Malformed(_))), "cut at {cut}");
        }
        let mut short = d.clone();
        short[0..4].copy_from_slice(&4u32.to_ne_bytes());
        assert!(matches!(
            payloads(&short, 1).0,
            Err(NetlinkError::Malformed(_))
        ));
        let (r, _) = payloads(&[], 1);
        assert_eq!(r.unwrap(), Datagram::More);
    }
}
