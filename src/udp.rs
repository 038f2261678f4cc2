//! UDP sockets connected to one peer: the Graphite and Riemann clients' datagrams and the
//! resolver's queries.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

/// A UDP socket bound to a free local port of `peer`'s address family and connected to `peer`,
/// so that `send` needs no address and only `peer`'s datagrams are received.
pub fn connect(peer: SocketAddr) -> io::Result<UdpSocket> {
    let local = match peer {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let socket = UdpSocket::bind((local, 0))?;
    socket.connect(peer)?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_go_to_the_peer_of_either_family() {
        for any in ["127.0.0.1:0", "[::1]:0"] {
            let Ok(server) = UdpSocket::bind(any) else {
                continue; // no IPv6 on this machine
            };
            let socket = connect(server.local_addr().unwrap()).unwrap();
            socket.send(b"x").unwrap();
            let mut buf = [0u8; 4];
            let (n, from) = server.recv_from(&mut buf).unwrap();
            assert_eq!((&buf[..n], from), (&b"x"[..], socket.local_addr().unwrap()));
        }
    }
}
