//! The ICMP sockets of one `ping` instance: raw ones when pipit may open them (root, or
//! CAP_NET_RAW), unprivileged datagram ones otherwise, chosen once and said once in the log.

use std::io;
use std::net::IpAddr;

use super::echo::Framing;
use crate::sys::icmp::{IcmpKind, IcmpSocket};

/// Where the kernel says which groups may open datagram ICMP sockets.
const PING_GROUP_RANGE: &str = "/proc/sys/net/ipv4/ping_group_range";

/// An open socket with the identifier its echoes carry.
#[derive(Debug)]
pub struct Socket {
    /// The socket.
    pub socket: IcmpSocket,
    /// The identifier of the echoes sent on it, which replies must carry.
    pub id: u16,
    /// How replies arrive on it.
    pub framing: Framing,
}

/// The IPv4 and IPv6 sockets of one instance; a family the kernel lacks has none.
#[derive(Debug)]
pub struct Sockets {
    /// Which kind was opened.
    pub kind: IcmpKind,
    /// IPv4, or why there is none.
    pub v4: Result<Socket, String>,
    /// IPv6, or why there is none.
    pub v6: Result<Socket, String>,
}

impl Sockets {
    /// Opens both families with the first kind the kernel allows: raw, else datagram. `raw_id`
    /// is the identifier of echoes on raw sockets (on a datagram socket the kernel picks it),
    /// `ttl` the time to live to set, if any. The error says what would allow either kind.
    pub fn open(raw_id: u16, ttl: Option<u8>) -> Result<Sockets, String> {
        let raw_refused = match IcmpSocket::open(IcmpKind::Raw, false) {
            Ok(v4) => {
                let v6 = IcmpSocket::open(IcmpKind::Raw, true);
                return Ok(Sockets {
                    kind: IcmpKind::Raw,
                    v4: ready(Ok(v4), Some(raw_id), ttl),
                    v6: ready(v6, Some(raw_id), ttl),
                });
            }
            Err(e) => e,
        };
        match IcmpSocket::open(IcmpKind::Datagram, false) {
            Ok(v4) => Ok(Sockets {
                kind: IcmpKind::Datagram,
                v4: ready(Ok(v4), None, ttl),
                v6: ready(IcmpSocket::open(IcmpKind::Datagram, true), None, ttl),
            }),
            Err(dgram_refused) => Err(neither(&raw_refused, &dgram_refused)),
        }
    }

    /// The socket for `address`'s family, or why there is none.
    pub fn of(&self, address: IpAddr) -> Result<&Socket, &str> {
        let socket = if address.is_ipv6() {
            &self.v6
        } else {
            &self.v4
        };
        socket.as_ref().map_err(String::as_str)
    }

    /// What the log says once: which kind is used.
    pub fn describe(&self) -> &'static str {
        match self.kind {
            IcmpKind::Raw => "pinging with raw ICMP sockets (root or CAP_NET_RAW)",
            IcmpKind::Datagram => {
                "pinging with unprivileged ICMP datagram sockets (net.ipv4.ping_group_range)"
            }
        }
    }
}

/// A freshly opened socket with its identifier (`raw_id`, or the port the kernel bound a
/// datagram socket to) and `ttl` set; the error in words.
fn ready(
    opened: io::Result<IcmpSocket>,
    raw_id: Option<u16>,
    ttl: Option<u8>,
) -> Result<Socket, String> {
    let family = |v6: bool| if v6 { "IPv6" } else { "IPv4" };
    let socket = opened.map_err(|e| format!("no ICMP socket for this family: {e}"))?;
    let v6 = socket.is_v6();
    if let Some(ttl) = ttl {
        socket
            .set_ttl(ttl)
            .map_err(|e| format!("cannot set the {} ttl to {ttl}: {e}", family(v6)))?;
    }
    if raw_id.is_some() {
        socket
            .only_echo_replies()
            .map_err(|e| format!("cannot filter the {} socket's messages: {e}", family(v6)))?;
    }
    let id = match raw_id {
        Some(id) => id,
        None => socket
            .local_port()
            .map_err(|e| format!("cannot read the {} socket's identifier: {e}", family(v6)))?,
    };
    let framing = match (v6, raw_id.is_some()) {
        (true, _) => Framing::V6,
        (false, true) => Framing::RawV4,
        (false, false) => Framing::DatagramV4,
    };
    Ok(Socket {
        socket,
        id,
        framing,
    })
}

/// The error when neither kind of socket opens: both reasons, and how to allow one.
fn neither(raw: &io::Error, dgram: &io::Error) -> String {
    let range = std::fs::read_to_string(PING_GROUP_RANGE)
        .map(|r| r.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unreadable".to_owned());
    format!(
        "cannot open an ICMP socket: a raw one needs root or CAP_NET_RAW ({raw}), a datagram one \
         needs pipit's group ({}) within net.ipv4.ping_group_range (now \"{range}\") ({dgram}); \
         run pipit as root, give it CAP_NET_RAW, or widen the range with \
         sysctl -w net.ipv4.ping_group_range=\"GID GID\"",
        crate::sys::effective_gid()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_gets_raw_sockets_with_the_chosen_identifier() {
        // The tests run as root; the datagram kind is tested in tests/ping.rs as another user.
        let sockets = Sockets::open(0x5151, Some(9)).unwrap();
        assert_eq!(sockets.kind, IcmpKind::Raw);
        let v4 = sockets.of(IpAddr::from([127, 0, 0, 1])).unwrap();
        assert_eq!((v4.id, v4.framing), (0x5151, Framing::RawV4));
        assert!(sockets.describe().contains("raw"));
    }

    #[test]
    fn the_error_names_both_ways_out() {
        let refused = io::Error::from_raw_os_error(libc::EPERM);
        let message = neither(&refused, &io::Error::from_raw_os_error(libc::EACCES));
        for part in ["CAP_NET_RAW", "net.ipv4.ping_group_range", "sysctl -w"] {
            assert!(message.contains(part), "{message}");
        }
    }
}
