//! ICMP echo messages: the requests the `ping` source sends and the replies it reads back, for
//! IPv4 (RFC 792) and IPv6 (RFC 4443).
//!
//! A reply arrives in one of three framings: on a raw IPv4 socket with the IP header before it
//! (and a checksum nobody has checked yet: the kernel hands raw sockets what it has not
//! verified), on an IPv4 datagram socket as the bare ICMP message, and on either IPv6 socket as
//! the bare ICMPv6 message (whose checksum the kernel has verified, as it covers a pseudo-header
//! only the kernel knows in full).

/// ICMPv4 echo request.
const V4_REQUEST: u8 = 8;
/// ICMPv4 echo reply.
const V4_REPLY: u8 = 0;
/// ICMPv6 echo request.
const V6_REQUEST: u8 = 128;
/// ICMPv6 echo reply.
const V6_REPLY: u8 = 129;
/// The IPv4 protocol number of ICMP.
const PROTOCOL_ICMP: u8 = 1;
/// Bytes of an echo message before its data: type, code, checksum, identifier, sequence.
const HEADER: usize = 8;

/// How a received message is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// From a raw IPv4 socket: the IPv4 header, then ICMP with an unchecked checksum.
    RawV4,
    /// From an IPv4 datagram socket: the ICMP message alone, checked by the kernel.
    DatagramV4,
    /// From an IPv6 socket of either kind: the ICMPv6 message alone, checked by the kernel.
    V6,
}

/// An echo reply, read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EchoReply<'a> {
    /// The identifier it echoes.
    pub id: u16,
    /// The sequence number it echoes.
    pub seq: u16,
    /// The data it echoes.
    pub data: &'a [u8],
}

/// The echo request with `id`, `seq` and `data`, for IPv6 (`v6`) or IPv4. The IPv4 checksum is
/// filled in; the IPv6 one is left zero for the kernel, which fills it in on every ICMPv6 socket.
pub fn request(v6: bool, id: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(HEADER + data.len());
    message.push(if v6 { V6_REQUEST } else { V4_REQUEST });
    message.push(0);
    message.extend_from_slice(&[0, 0]);
    message.extend_from_slice(&id.to_be_bytes());
    message.extend_from_slice(&seq.to_be_bytes());
    message.extend_from_slice(data);
    if !v6 {
        let sum = checksum(&message);
        message[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    message
}

/// The Internet checksum (RFC 1071) of `bytes`: the one's complement of their one's complement
/// sum in 16-bit words. A message with its checksum in place sums to zero.
pub fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut words = bytes.chunks_exact(2);
    for word in &mut words {
        sum += u32::from(u16::from_be_bytes([word[0], word[1]]));
    }
    if let [last] = words.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Reads `packet` as an echo reply framed as `framing`; `None` for anything else: another ICMP
/// message (an echo request, an error), a truncated or malformed one, or on a raw IPv4 socket a
/// wrong checksum, a fragment or another protocol.
pub fn parse(packet: &[u8], framing: Framing) -> Option<EchoReply<'_>> {
    let (message, reply_type) = match framing {
        Framing::RawV4 => (ipv4_payload(packet)?, V4_REPLY),
        Framing::DatagramV4 => (packet, V4_REPLY),
        Framing::V6 => (packet, V6_REPLY),
    };
    if message.len() < HEADER || message[0] != reply_type || message[1] != 0 {
        return None;
    }
    if framing == Framing::RawV4 && checksum(message) != 0 {
        return None;
    }
    Some(EchoReply {
        id: u16::from_be_bytes([message[4], message[5]]),
        seq: u16::from_be_bytes([message[6], message[7]]),
        data: &message[HEADER..],
    })
}

/// The ICMP message inside an IPv4 packet: after a well-formed header, within the total length,
/// unfragmented, of protocol ICMP.
fn ipv4_payload(packet: &[u8]) -> Option<&[u8]> {
    let first = *packet.first()?;
    let header_len = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || header_len < 20 || packet.len() < header_len {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    // More fragments, or an offset: a piece of a datagram, never a whole reply.
    let fragment = u16::from_be_bytes([packet[6], packet[7]]) & 0x3fff;
    if total < header_len || total > packet.len() || fragment != 0 || packet[9] != PROTOCOL_ICMP {
        return None;
    }
    Some(&packet[header_len..total])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo reply as a raw IPv4 socket hands it over: a 20-byte header from 192.0.2.1, then
    /// the ICMP message with the checksum the sender set.
    fn raw_v4(message: &[u8]) -> Vec<u8> {
        let total = (20 + message.len()) as u16;
        let mut packet = vec![0x45, 0];
        packet.extend_from_slice(&total.to_be_bytes());
        packet.extend_from_slice(&[0, 0, 0x40, 0, 64, PROTOCOL_ICMP, 0, 0]);
        packet.extend_from_slice(&[192, 0, 2, 1, 192, 0, 2, 2]);
        packet.extend_from_slice(message);
        packet
    }

    /// The reply a host gives to `request`: the same message with the reply's type and the
    /// checksum set again.
    fn reply_to(request: &[u8], v6: bool) -> Vec<u8> {
        let mut reply = request.to_vec();
        reply[0] = if v6 { V6_REPLY } else { V4_REPLY };
        reply[2..4].copy_from_slice(&[0, 0]);
        if !v6 {
            let sum = checksum(&reply);
            reply[2..4].copy_from_slice(&sum.to_be_bytes());
        }
        reply
    }

    #[test]
    fn the_checksum_is_rfc_1071s() {
        // RFC 1071's worked example: the sum of these words is ddf2, its complement 220d.
        assert_eq!(
            checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0x220d
        );
        // An odd length counts the last byte as the high half of a word.
        assert_eq!(checksum(&[0xff]), 0x00ff);
        assert_eq!(checksum(&[]), 0xffff);
        let request = request(false, 0x1234, 7, b"pipit");
        assert_eq!(
            checksum(&request),
            0,
            "a request with its checksum sums to zero"
        );
    }

    #[test]
    fn replies_are_read_in_each_framing() {
        let v4 = reply_to(&request(false, 0xbeef, 42, b"data"), false);
        let expected = EchoReply {
            id: 0xbeef,
            seq: 42,
            data: b"data",
        };
        assert_eq!(parse(&raw_v4(&v4), Framing::RawV4), Some(expected));
        assert_eq!(parse(&v4, Framing::DatagramV4), Some(expected));
        let v6 = reply_to(&request(true, 0xbeef, 42, b"data"), true);
        assert_eq!(parse(&v6, Framing::V6), Some(expected));
        // IPv4 options lengthen the header; trailing bytes past the total length are not data.
        let mut with_options = raw_v4(&v4);
        with_options[0] = 0x46;
        with_options.splice(20..20, [1, 1, 1, 1]);
        let total = with_options.len() as u16;
        with_options[2..4].copy_from_slice(&total.to_be_bytes());
        with_options.extend_from_slice(b"padding");
        assert_eq!(parse(&with_options, Framing::RawV4), Some(expected));
    }

    #[test]
    fn what_is_not_an_intact_reply_is_ignored() {
        let reply = reply_to(&request(false, 1, 2, b"data"), false);
        // Our own request, as a raw socket on the loopback sees it go out.
        assert_eq!(
            parse(&raw_v4(&request(false, 1, 2, b"data")), Framing::RawV4),
            None
        );
        assert_eq!(parse(&request(true, 1, 2, b""), Framing::V6), None);
        // A checksum off by a bit.
        let mut bad = raw_v4(&reply);
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(parse(&bad, Framing::RawV4), None);
        // A destination unreachable (type 3) is not a reply.
        let mut unreachable = reply.clone();
        unreachable[0] = 3;
        assert_eq!(parse(&unreachable, Framing::DatagramV4), None);
        // A fragment, another protocol, a total length past the end, a short header.
        let mut fragment = raw_v4(&reply);
        fragment[6] = 0x20;
        assert_eq!(parse(&fragment, Framing::RawV4), None);
        let mut udp = raw_v4(&reply);
        udp[9] = 17;
        assert_eq!(parse(&udp, Framing::RawV4), None);
        let whole = raw_v4(&reply);
        assert_eq!(parse(&whole[..whole.len() - 1], Framing::RawV4), None);
        for cut in 0..28 {
            assert_eq!(parse(&whole[..cut], Framing::RawV4), None, "cut at {cut}");
        }
        assert_eq!(parse(&reply[..7], Framing::DatagramV4), None);
        assert_eq!(parse(&[0x65; 40], Framing::RawV4), None, "IP version 6");
        assert_eq!(
            parse(&[0x44; 40], Framing::RawV4),
            None,
            "a header under 20 bytes"
        );
    }
}
