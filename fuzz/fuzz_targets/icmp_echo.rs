//! An ICMP message as the `ping` source receives it: the first byte picks the framing (a raw
//! IPv4 socket's, with the IP header; an IPv4 datagram socket's; IPv6), the rest is the packet.
//! A flag sets the ICMP checksum right, so raw IPv4 input reaches past the checksum check.
#![no_main]

use pipit::sources::ping::echo::{self, Framing};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&pick, packet)) = data.split_first() else {
        return;
    };
    let framing = match pick % 3 {
        0 => Framing::RawV4,
        1 => Framing::DatagramV4,
        _ => Framing::V6,
    };
    let mut packet = packet.to_vec();
    if pick & 0x80 != 0 && framing == Framing::RawV4 && !packet.is_empty() {
        let start = usize::from(packet[0] & 0x0f) * 4;
        let end = packet
            .get(2..4)
            .map_or(0, |t| usize::from(u16::from_be_bytes([t[0], t[1]])))
            .min(packet.len());
        if start + 4 <= end {
            packet[start + 2..start + 4].copy_from_slice(&[0, 0]);
            let sum = echo::checksum(&packet[start..end]);
            packet[start + 2..start + 4].copy_from_slice(&sum.to_be_bytes());
        }
    }
    let Some(reply) = echo::parse(&packet, framing) else {
        return;
    };
    // The data is the tail of the message, after its 8-byte header.
    assert!(reply.data.len() + 8 <= packet.len());
    // A reply echoing a request of ours reads back as what was sent.
    let v6 = framing == Framing::V6;
    let mut answer = echo::request(v6, reply.id, reply.seq, reply.data);
    answer[0] = if v6 { 129 } else { 0 };
    answer[2..4].copy_from_slice(&[0, 0]);
    let sum = echo::checksum(&answer);
    answer[2..4].copy_from_slice(&sum.to_be_bytes());
    let framing = if v6 { Framing::V6 } else { Framing::DatagramV4 };
    assert_eq!(echo::parse(&answer, framing), Some(reply));
});
