//! Socket diagnostics (`NETLINK_SOCK_DIAG`, `inet_diag`): the kernel's list of TCP sockets with
//! their state and ports, the way `ss` and collectd's tcpconns ask for it. Far cheaper than
//! formatting and parsing `/proc/net/tcp`, and it needs no privilege.

use std::time::Duration;

use super::{Dumper, NetlinkError};
use crate::sys::netlink::{NetlinkSocket, SOCK_DIAG};

/// Message type of an `inet_diag` request and of each socket in the answer.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// Size of `struct inet_diag_msg`, the fixed part of each answer.
const MESSAGE: usize = 72;
/// How long the kernel may take to answer one datagram.
const TIMEOUT: Duration = Duration::from_secs(2);

/// An address family to ask about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// IPv4 (`AF_INET`).
    V4,
    /// IPv6 (`AF_INET6`), which includes dual-stack sockets.
    V6,
}

impl Family {
    fn code(self) -> u8 {
        match self {
            Family::V4 => libc::AF_INET as u8,
            Family::V6 => libc::AF_INET6 as u8,
        }
    }
}

/// One TCP socket as the kernel lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSocket {
    /// The kernel's state number (1 `TCP_ESTABLISHED` … 10 `TCP_LISTEN`, 11 `TCP_CLOSING`).
    pub state: u8,
    /// The local port.
    pub local_port: u16,
}

/// The `inet_diag_req_v2` asking for every TCP socket of `family` in any of `states` (a bit per
/// state number).
fn request(family: Family, states: u32) -> [u8; 56] {
    let mut r = [0u8; 56];
    r[0] = family.code();
    r[1] = libc::IPPROTO_TCP as u8;
    r[4..8].copy_from_slice(&states.to_ne_bytes());
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

/// Asks the kernel for TCP sockets, one address family at a time.
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

    /// Hands every TCP socket of `family` to `each`. A message too short to be a socket fails the
    /// whole listing, so a count is never built from part of an answer.
    pub fn each(
        &mut self,
        family: Family,
        each: &mut dyn FnMut(TcpSocket),
    ) -> Result<(), NetlinkError> {
        let mut malformed = false;
        self.dumper.dump(
            SOCK_DIAG_BY_FAMILY,
            &request(family, u32::MAX),
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

    /// Answers captured from a real kernel (6.x, x86_64) in a network namespace holding: listeners
    /// on 127.0.0.1:22, 127.0.0.1:80 and [::1]:22, one connection to each :22 (both ends), and a
    /// connection to :80 closed by the server (its end in TIME_WAIT).
    fn captured(name: &str) -> Vec<TcpSocket> {
        let path = format!(
            "{}/tests/fixtures/netlink/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let datagram = std::fs::read(path).unwrap();
        let mut sockets = Vec::new();
        // The capture asked with sequence number 7.
        let r = read_datagram(&datagram, SOCK_DIAG_BY_FAMILY, 7, &mut |m| {
            sockets.push(parse(m).unwrap())
        });
        assert_eq!(r.unwrap(), Datagram::Done);
        sockets
    }

    #[test]
    fn captured_ipv4_answer() {
        let sockets = captured("inet_diag_v4.bin");
        let got: Vec<(u8, u16)> = sockets.iter().map(|s| (s.state, s.local_port)).collect();
        assert_eq!(got, [(10, 22), (10, 80), (1, 53300), (6, 80), (1, 22)]);
    }

    #[test]
    fn captured_ipv6_answer() {
        let sockets = captured("inet_diag_v6.bin");
        let got: Vec<(u8, u16)> = sockets.iter().map(|s| (s.state, s.local_port)).collect();
        assert_eq!(got, [(10, 22), (1, 60000), (1, 22)]);
    }

    #[test]
    fn the_request_asks_for_tcp_of_one_family_in_the_states_given() {
        let r = request(Family::V6, 1 << 10);
        assert_eq!(r[0], libc::AF_INET6 as u8);
        assert_eq!(r[1], 6);
        assert_eq!(u32::from_ne_bytes(r[4..8].try_into().unwrap()), 1024);
        assert!(r[8..].iter().all(|b| *b == 0));
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
