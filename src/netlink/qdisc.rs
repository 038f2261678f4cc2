//! Queue disciplines over rtnetlink (`NETLINK_ROUTE`, `RTM_GETQDISC`): every qdisc of every
//! interface with its counters, the way `tc -s qdisc show` and collectd's netlink plugin ask for
//! them.

use std::time::Duration;

use super::{Attributes, Dumper, NetlinkError, text, u32_at, u64_at};
use crate::sys::netlink::{NetlinkSocket, ROUTE};

/// Message type of the dump request (`RTM_GETQDISC`).
const RTM_GETQDISC: u16 = 38;
/// Message type of each qdisc in the answer (`RTM_NEWQDISC`).
pub const RTM_NEWQDISC: u16 = 36;
/// Size of `struct tcmsg`, the fixed part of each message.
const TCMSG: usize = 20;
/// Attribute holding the qdisc's kind, a NUL-terminated name (`TCA_KIND`).
const TCA_KIND: u16 = 1;
/// Attribute nesting the statistics (`TCA_STATS2`).
const TCA_STATS2: u16 = 7;
/// In `TCA_STATS2`: `struct gnet_stats_basic`, bytes (u64) and packets (u32).
const TCA_STATS_BASIC: u16 = 1;
/// In `TCA_STATS2`: `struct gnet_stats_queue`, qlen, backlog, drops, requeues, overlimits (u32).
const TCA_STATS_QUEUE: u16 = 3;
/// In `TCA_STATS2`: the packet count as a u64, sent when it no longer fits the u32 of the basic
/// statistics.
const TCA_STATS_PKT64: u16 = 8;
/// How long the kernel may take to answer one datagram.
const TIMEOUT: Duration = Duration::from_secs(2);

/// One queue discipline and its counters, as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Qdisc {
    /// The index of its interface.
    pub ifindex: u32,
    /// Its handle, major number in the upper 16 bits (`8001:` is `0x8001_0000`).
    pub handle: u32,
    /// The handle of its parent, `0xffff_ffff` for a root qdisc.
    pub parent: u32,
    /// Its kind, such as `fq_codel`, `cake` or `htb`.
    pub kind: String,
    /// Bytes sent (a counter).
    pub bytes: u64,
    /// Packets sent (a counter).
    pub packets: u64,
    /// Packets dropped (a counter).
    pub drops: u32,
    /// Times it was over its limit, shaped or delayed (a counter).
    pub overlimits: u32,
    /// Packets handed back by the driver and queued again (a counter).
    pub requeues: u32,
    /// Bytes queued now.
    pub backlog: u32,
    /// Packets queued now.
    pub qlen: u32,
}

/// The qdisc in one `RTM_NEWQDISC` message; `None` when the message is too short, an attribute
/// runs past its end, or it carries no kind.
pub fn parse(message: &[u8]) -> Option<Qdisc> {
    let mut q = Qdisc {
        ifindex: u32_at(message, 4)?,
        handle: u32_at(message, 8)?,
        parent: u32_at(message, 12)?,
        ..Qdisc::default()
    };
    let mut attrs = Attributes::new(message.get(TCMSG..)?);
    let mut packets64 = None;
    for (kind, payload) in attrs.by_ref() {
        match kind {
            TCA_KIND => q.kind = text(payload),
            TCA_STATS2 => {
                let mut stats = Attributes::new(payload);
                for (kind, s) in stats.by_ref() {
                    match kind {
                        TCA_STATS_BASIC => {
                            q.bytes = u64_at(s, 0)?;
                            q.packets = u32_at(s, 8)?.into();
                        }
                        TCA_STATS_QUEUE => {
                            q.qlen = u32_at(s, 0)?;
                            q.backlog = u32_at(s, 4)?;
                            q.drops = u32_at(s, 8)?;
                            q.requeues = u32_at(s, 12)?;
                            q.overlimits = u32_at(s, 16)?;
                        }
                        TCA_STATS_PKT64 => packets64 = Some(u64_at(s, 0)?),
                        _ => {}
                    }
                }
                if !stats.whole() {
                    return None;
                }
            }
            _ => {}
        }
    }
    if let Some(packets) = packets64 {
        q.packets = packets;
    }
    (attrs.whole() && !q.kind.is_empty()).then_some(q)
}

/// Asks the kernel for its queue disciplines.
#[derive(Debug)]
pub struct Qdiscs {
    dumper: Dumper,
}

impl Qdiscs {
    /// Opens the rtnetlink socket.
    pub fn open() -> Result<Qdiscs, NetlinkError> {
        Ok(Qdiscs {
            dumper: Dumper::new(NetlinkSocket::open(ROUTE, TIMEOUT)?),
        })
    }

    /// Hands every qdisc of every interface to `each`. A message that does not parse fails the
    /// whole listing, so no rate is built from part of an answer.
    pub fn each(&mut self, each: &mut dyn FnMut(Qdisc)) -> Result<(), NetlinkError> {
        let mut malformed = false;
        // A zeroed `struct tcmsg`: every family, every interface.
        self.dumper.dump_answered(
            RTM_GETQDISC,
            RTM_NEWQDISC,
            &[0; TCMSG],
            &mut |m| match parse(m) {
                Some(q) => each(q),
                None => malformed = true,
            },
        )?;
        if malformed {
            return Err(NetlinkError::Malformed(
                "a qdisc message without its kind or with an attribute past its end",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::{Datagram, read_datagram};

    /// An answer captured from a real kernel (6.x, x86_64) by `capture_qdisc.py` (beside the
    /// fixture) in a network namespace holding a veth pair: `qa` (index 3) with an `htb` root
    /// shaping to 1 Mbit/s into a `pfifo` of 5 packets, `qb` (index 2) with `pfifo_fast`; 40
    /// frames of 1000 bytes were sent out of `qa` at once.
    #[test]
    fn a_captured_answer_lists_each_qdisc_with_its_counters() {
        let path = format!(
            "{}/tests/fixtures/netlink/qdisc.bin",
            env!("CARGO_MANIFEST_DIR")
        );
        let datagram = std::fs::read(path).unwrap();
        let mut got = Vec::new();
        let r = read_datagram(&datagram, RTM_NEWQDISC, 7, &mut |m| {
            got.push(parse(m).unwrap())
        });
        assert_eq!(r.unwrap(), Datagram::Done);
        let q = |ifindex, handle, parent, kind: &str, sent, drops, overlimits, queued| Qdisc {
            ifindex,
            handle,
            parent,
            kind: kind.into(),
            bytes: sent * 1000,
            packets: sent,
            drops,
            overlimits,
            requeues: 0,
            backlog: queued as u32 * 1000,
            qlen: queued as u32,
        };
        // Of the 40 frames, 2 were sent, 5 wait in the pfifo and 33 found it full.
        assert_eq!(
            got,
            [
                q(2, 0x8005_0000, u32::MAX, "pfifo_fast", 0, 0, 0, 0),
                q(3, 0x0001_0000, u32::MAX, "htb", 2, 33, 1, 5),
                q(3, 0x0010_0000, 0x0001_0010, "pfifo", 2, 33, 0, 5),
            ]
        );
    }

    fn attribute(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut a = ((payload.len() + 4) as u16).to_ne_bytes().to_vec();
        a.extend(kind.to_ne_bytes());
        a.extend(payload);
        a.resize((a.len() + 3) & !3, 0);
        a
    }

    fn message(stats: &[u8]) -> Vec<u8> {
        let mut m = vec![0u8; TCMSG];
        m.extend(attribute(TCA_KIND, b"fq_codel\0"));
        m.extend(attribute(TCA_STATS2, stats));
        m
    }

    #[test]
    fn a_64_bit_packet_count_replaces_the_32_bit_one() {
        let mut basic = 5000u64.to_ne_bytes().to_vec();
        basic.extend(7u32.to_ne_bytes());
        basic.extend([0; 4]);
        let mut stats = attribute(TCA_STATS_BASIC, &basic);
        stats.extend(attribute(
            TCA_STATS_PKT64,
            &(u64::from(u32::MAX) + 9).to_ne_bytes(),
        ));
        let q = parse(&message(&stats)).unwrap();
        assert_eq!((q.kind.as_str(), q.bytes), ("fq_codel", 5000));
        assert_eq!(q.packets, u64::from(u32::MAX) + 9);
    }

    #[test]
    fn short_or_broken_messages_are_no_qdisc() {
        assert_eq!(parse(&[0; TCMSG - 1]), None, "shorter than tcmsg");
        assert_eq!(parse(&[0; TCMSG]), None, "no kind");
        let short_basic = attribute(TCA_STATS_BASIC, &[0; 8]);
        assert_eq!(parse(&message(&short_basic)), None);
        let short_queue = attribute(TCA_STATS_QUEUE, &[0; 19]);
        assert_eq!(parse(&message(&short_queue)), None);
        let whole = message(&attribute(TCA_STATS_QUEUE, &[0; 20]));
        assert!(parse(&whole).is_some());
        assert_eq!(
            parse(&whole[..whole.len() - 1]),
            None,
            "cut in an attribute"
        );
    }
}
