//! Socket diagnostics (`NETLINK_SOCK_DIAG`, `inet_diag`): the kernel's list of TCP sockets with
//! their state and ports, the way `ss` and collectd's tcpconns ask for it. Far cheaper than
//! formatting and parsing `/proc/net/tcp`, and it needs no privilege.

use std::time::Duration;

use super::{Dumper, NetlinkError};
use crate::sys::netlink::{NetlinkSocket, SOCK_DIAG};

/// Message type of the original `inet_diag` request for TCP sockets (`TCPDIAG_GETSOCK`) and of
/// each socket in its answer. Unlike `SOCK_DIAG_BY_FAMILY`, which takes one address family per
/// request, it lists IPv4 and IPv6 sockets in one walk of the kernel's connection table, which
/// is most of the cost; collectd asks the same way.
const TCPDIAG_GETSOCK: u16 = 18;
/// Size of `struct inet_diag_msg`, the fixed part of each answer.
const MESSAGE: usize = 72;
/// How long the kernel may take to answer one datagram.
const TIMEOUT: Duration = Duration::from_secs(2);

/// One TCP socket as the kernel lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSocket {
    /// The kernel's state number (1 `TCP_ESTABLISHED` … 10 `TCP_LISTEN`, 11 `TCP_CLOSING`).
    pub state: u8,
    /// The local port.
    pub local_port: u16,
}

/// The `struct inet_diag_req` asking for every TCP socket, IPv4 and IPv6, in any of `states` (a
/// bit per state number). Its family is ignored: the kernel answers this request for all.
fn request(states: u32) -> [u8; 60] {
    let mut r = [0u8; 60];
    r[52..56].copy_from_slice(&states.to_ne_bytes());
    r
}

/// The state and local port of one `inet_diag_msg`; `None` when it is too short.
pub fn parse(message: &[u8]) -> Option<TcpSocket> {
    if message.len() < MESSAGE {
        return None;
    }
    Some(TcpSocket {
        state: message[1],
        local_port: u16::from_be_bytes([message[4], message[5]]),
    })
}

/// Asks the kernel for its TCP sockets.
#[derive(Debug)]
pub struct TcpSockets {
    dumper: Dumper,
}

impl TcpSockets {
    /// Opens the diagnostics socket; fails where the kernel has no `NETLINK_SOCK_DIAG`.
    pub fn open() -> Result<TcpSockets, NetlinkError> {
        Ok(TcpSockets {
            dumper: Dumper::new(NetlinkSocket::open(SOCK_DIAG, TIMEOUT)?),
        })
    }

    /// Hands every TCP socket, IPv4 and IPv6, to `each`. A message too short to be a socket fails
    /// the whole listing, so a count is never built from part of an answer.
    pub fn each(&mut self, each: &mut dyn FnMut(TcpSocket)) -> Result<(), NetlinkError> {
        let mut malformed = false;
        self.dumper.dump(
            TCPDIAG_GETSOCK,
            &request(u32::MAX),
            &mut |m| match parse(m) {
                Some(socket) => each(socket),
                None => malformed = true,
            },
        )?;
        if malformed {
            return Err(NetlinkError::Malformed(
                "a socket message shorter than 72 bytes",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::{Datagram, read_datagram};

    /// An answer captured from a real kernel (6.x, x86_64) in a network namespace holding:
    /// listeners on 127.0.0.1:22, 127.0.0.1:80 and [::1]:22, one connection to each :22 (both
    /// ends), and a connection to :80 closed by the server (its end in TIME_WAIT).
    #[test]
    fn a_captured_answer_lists_ipv4_and_ipv6_sockets() {
        let path = format!(
            "{}/tests/fixtures/netlink/inet_diag.bin",
            env!("CARGO_MANIFEST_DIR")
        );
        let datagram = std::fs::read(path).unwrap();
        let mut got = Vec::new();
        // The capture asked with sequence number 7.
        let r = read_datagram(&datagram, TCPDIAG_GETSOCK, 7, &mut |m| {
            let s = parse(m).unwrap();
            got.push((s.state, s.local_port))
        });
        assert_eq!(r.unwrap(), Datagram::Done);
        assert_eq!(
            got,
            [
                (10, 80),
                (10, 22),
                (10, 22),
                (1, 22),
                (6, 80),
                (1, 22),
                (1, 56014),
                (1, 43616)
            ]
        );
    }

    #[test]
    fn the_request_asks_for_the_states_given() {
        let r = request(1 << 10);
        assert_eq!(u32::from_ne_bytes(r[52..56].try_into().unwrap()), 1024);
        assert!(r[..52].iter().chain(&r[56..]).all(|b| *b == 0));
    }

    #[test]
    fn a_short_socket_message_is_not_a_socket() {
        assert_eq!(parse(&[0u8; MESSAGE - 1]), None);
        let mut m = [0u8; MESSAGE];
        m[1] = 10;
        m[4..6].copy_from_slice(&8080u16.to_be_bytes());
        assert_eq!(
            parse(&m),
            Some(TcpSocket {
                state: 10,
                local_port: 8080
            })
        );
    }
}
