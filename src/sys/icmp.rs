//! ICMP sockets (socket(2), bind(2), sendto(2), recvfrom(2) on `IPPROTO_ICMP` and
//! `IPPROTO_ICMPV6`), which std does not offer. The echo messages that travel over them are built
//! and read in `crate::sources::ping::echo`.
//!
//! Two kinds: a raw socket sees every ICMP message the host receives (IPv4 ones with their IP
//! header) and needs CAP_NET_RAW; a datagram ("ping") socket is open to the groups of the sysctl
//! `net.ipv4.ping_group_range`, and the kernel gives it only the echo replies to its own
//! identifier, which it chooses itself (the socket's port).

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// The option of raw IPv4 ICMP sockets that drops messages by type (linux/icmp.h); libc lacks it.
const ICMP_FILTER: libc::c_int = 1;
/// The option of raw ICMPv6 sockets that blocks messages by type (linux/icmpv6.h); libc lacks it.
const ICMP6_FILTER: libc::c_int = 1;
/// The ICMPv4 echo reply type.
const V4_ECHO_REPLY: u8 = 0;
/// The ICMPv6 echo reply type.
const V6_ECHO_REPLY: u8 = 129;

/// Which kind of ICMP socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcmpKind {
    /// `SOCK_RAW`: needs CAP_NET_RAW; IPv4 messages arrive with their IP header.
    Raw,
    /// `SOCK_DGRAM`: allowed by `net.ipv4.ping_group_range`; the kernel sets the identifier.
    Datagram,
}

/// An open, non-blocking ICMP socket of one address family.
#[derive(Debug)]
pub struct IcmpSocket {
    fd: OwnedFd,
    v6: bool,
}

impl IcmpSocket {
    /// Opens a socket of `kind` for IPv6 (`v6`) or IPv4. A datagram socket is bound at once, so
    /// that [`IcmpSocket::local_port`] gives the identifier the kernel will put on its echoes.
    pub fn open(kind: IcmpKind, v6: bool) -> io::Result<IcmpSocket> {
        let (family, protocol) = if v6 {
            (libc::AF_INET6, libc::IPPROTO_ICMPV6)
        } else {
            (libc::AF_INET, libc::IPPROTO_ICMP)
        };
        let ty = match kind {
            IcmpKind::Raw => libc::SOCK_RAW,
            IcmpKind::Datagram => libc::SOCK_DGRAM,
        };
        // SAFETY: socket(2) takes plain integers and returns a new descriptor or -1.
        let fd = unsafe {
            libc::socket(
                family,
                ty | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                protocol,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just returned this descriptor; nothing else owns it.
        let socket = IcmpSocket {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            v6,
        };
        if kind == IcmpKind::Datagram {
            let any = if v6 {
                SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 0)
            } else {
                SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0)
            };
            let (addr, len) = to_sockaddr(any);
            // SAFETY: `addr` is a live sockaddr_storage holding a sockaddr of `len` bytes;
            // bind(2) only reads that many bytes of it.
            let r = unsafe {
                libc::bind(
                    socket.fd.as_raw_fd(),
                    (&raw const addr).cast::<libc::sockaddr>(),
                    len,
                )
            };
            if r != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(socket)
    }

    /// Has the kernel keep every ICMP message but echo replies from this raw socket (ICMP_FILTER,
    /// ICMP6_FILTER), so that the rest of the host's ICMP traffic never wakes it.
    pub fn only_echo_replies(&self) -> io::Result<()> {
        if self.v6 {
            // struct icmp6_filter: one bit per type, set for a type the kernel blocks.
            let mut blocked = [u32::MAX; 8];
            blocked[usize::from(V6_ECHO_REPLY >> 5)] &= !(1 << (V6_ECHO_REPLY & 31));
            self.set_option(libc::IPPROTO_ICMPV6, ICMP6_FILTER, &blocked)
        } else {
            // struct icmp_filter: one bit per type below 32, set for a type the kernel drops.
            let blocked: u32 = !(1 << V4_ECHO_REPLY);
            self.set_option(libc::SOL_RAW, ICMP_FILTER, &blocked)
        }
    }

    /// Sets the socket option `name` at `level` to `value`.
    fn set_option<T>(&self, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
        // SAFETY: `value` is borrowed for the whole call and its exact size is passed with it;
        // setsockopt(2) only reads that many bytes. The descriptor is owned by `self`.
        let r = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                (value as *const T).cast(),
                size_of::<T>() as libc::socklen_t,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// True for an IPv6 socket.
    pub fn is_v6(&self) -> bool {
        self.v6
    }

    /// The port the socket is bound to: for a datagram socket, the identifier of its echoes.
    pub fn local_port(&self) -> io::Result<u16> {
        // SAFETY: sockaddr_storage is plain integers, for which all zeros is a valid value.
        let mut addr: libc::sockaddr_storage = unsafe { zeroed() };
        let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: `addr` is writable and `len` holds its exact size, so getsockname(2) writes at
        // most that many bytes into it and sets `len` to how many it wrote.
        let r = unsafe {
            libc::getsockname(
                self.fd.as_raw_fd(),
                (&raw mut addr).cast::<libc::sockaddr>(),
                &mut len,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        from_sockaddr(&addr)
            .map(|a| a.port())
            .ok_or_else(|| io::Error::other("getsockname gave an address of another family"))
    }

    /// Sets the time to live (IPv4) or hop limit (IPv6) of the echoes sent.
    pub fn set_ttl(&self, ttl: u8) -> io::Result<()> {
        let (level, name) = if self.v6 {
            (libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS)
        } else {
            (libc::IPPROTO_IP, libc::IP_TTL)
        };
        self.set_option(level, name, &libc::c_int::from(ttl))
    }

    /// Sends `message` (an ICMP message, without IP header) to `to`.
    pub fn send_to(&self, message: &[u8], to: IpAddr) -> io::Result<()> {
        let (addr, len) = to_sockaddr(SocketAddr::new(to, 0));
        // SAFETY: the message pointer and length come from one live slice, and `addr` is a live
        // sockaddr_storage holding a sockaddr of `len` bytes; sendto(2) only reads them.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                message.as_ptr().cast::<libc::c_void>(),
                message.len(),
                0,
                (&raw const addr).cast::<libc::sockaddr>(),
                len,
            )
        };
        match usize::try_from(sent) {
            Ok(n) if n == message.len() => Ok(()),
            Ok(_) => Err(io::Error::other("the echo request was sent short")),
            Err(_) => Err(io::Error::last_os_error()),
        }
    }

    /// Receives one message into `buf` without waiting: its length and sender, or `None` when
    /// nothing is queued. A message longer than `buf` is cut to it.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<Option<(usize, IpAddr)>> {
        loop {
            // SAFETY: sockaddr_storage is plain integers, for which all zeros is a valid value.
            let mut addr: libc::sockaddr_storage = unsafe { zeroed() };
            let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            // SAFETY: the buffer pointer and length come from one live, exclusively borrowed
            // slice, and `addr` is writable with `len` its exact size, so recvfrom(2) writes only
            // within them.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast::<libc::c_void>(),
                    buf.len(),
                    0,
                    (&raw mut addr).cast::<libc::sockaddr>(),
                    &mut len,
                )
            };
            match usize::try_from(n) {
                Ok(n) => {
                    let from = from_sockaddr(&addr).map(|a| a.ip());
                    return Ok(from.map(|ip| (n.min(buf.len()), ip)));
                }
                Err(_) => {
                    let e = io::Error::last_os_error();
                    match e.kind() {
                        io::ErrorKind::Interrupted => continue,
                        io::ErrorKind::WouldBlock => return Ok(None),
                        _ => return Err(e),
                    }
                }
            }
        }
    }
}

impl AsRawFd for IcmpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// `addr` as the C structure the socket calls take, with its length.
fn to_sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain integers, for which all zeros is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for every sockaddr type, so a
            // sockaddr_in fits at its start.
            unsafe { (&raw mut storage).cast::<libc::sockaddr_in>().write(sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above, a sockaddr_in6 fits at the start of a sockaddr_storage.
            unsafe { (&raw mut storage).cast::<libc::sockaddr_in6>().write(sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// The address the kernel wrote into `storage`, if it is IPv4 or IPv6.
fn from_sockaddr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the kernel wrote a sockaddr_in, which fits at the start of
            // the (suitably aligned) storage.
            let sin =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddrV4::new(ip, u16::from_be(sin.sin_port)).into())
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the kernel wrote a sockaddr_in6, which fits at the start of
            // the (suitably aligned) storage.
            let sin6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(
                SocketAddrV6::new(
                    ip,
                    u16::from_be(sin6.sin6_port),
                    sin6.sin6_flowinfo,
                    sin6.sin6_scope_id,
                )
                .into(),
            )
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_survive_the_round_trip_through_c() {
        for text in ["192.0.2.7:513", "[2001:db8::1]:7", "[fe80::1%3]:0"] {
            let addr: SocketAddr = text.parse().unwrap();
            let (storage, len) = to_sockaddr(addr);
            assert!(len as usize <= size_of::<libc::sockaddr_storage>());
            assert_eq!(from_sockaddr(&storage), Some(addr));
        }
    }

    #[test]
    fn a_raw_socket_hears_its_own_echo_on_loopback() {
        // The tests run as root, so a raw socket opens; the datagram kind is tested in tests/ping.rs.
        let socket = IcmpSocket::open(IcmpKind::Raw, false).unwrap();
        assert!(!socket.is_v6());
        socket.set_ttl(7).unwrap();
        socket.only_echo_replies().unwrap();
        // An echo request of type 8 with identifier and sequence 0 and a valid checksum.
        let request = [8, 0, 0xf7, 0xff, 0, 0, 0, 0];
        socket
            .send_to(&request, Ipv4Addr::LOCALHOST.into())
            .unwrap();
        let mut buf = [0u8; 128];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let (n, from) = loop {
            let mut fds = [super::super::readable(socket.as_raw_fd())];
            super::super::poll(&mut fds, std::time::Duration::from_millis(100)).unwrap();
            if let Some(got) = socket.recv_from(&mut buf).unwrap() {
                break got;
            }
            assert!(std::time::Instant::now() < deadline, "nothing came back");
        };
        assert_eq!(from, IpAddr::from(Ipv4Addr::LOCALHOST));
        // The IPv4 header first (version 4), then the reply (type 0), not the request the
        // loopback also delivers, which the filter kept away.
        assert_eq!(buf[0] >> 4, 4);
        assert_eq!((n, buf[20]), (28, 0));
    }
}
