//! Netlink sockets (socket(2), sendto(2) and recv(2) on `AF_NETLINK`), which std does not offer.
//! What travels over them is built and read in `crate::netlink`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// The netlink family that answers socket diagnostics (`NETLINK_SOCK_DIAG`).
pub const SOCK_DIAG: libc::c_int = libc::NETLINK_SOCK_DIAG;

/// The netlink family of routing and link configuration (`NETLINK_ROUTE`): links, addresses,
/// queue disciplines.
pub const ROUTE: libc::c_int = libc::NETLINK_ROUTE;

/// The netlink family of netfilter's subsystems (`NETLINK_NETFILTER`): nf_tables, conntrack.
pub const NETFILTER: libc::c_int = libc::NETLINK_NETFILTER;
/// The netlink family of the kernel's generic families (`NETLINK_GENERIC`), each found by name:
/// nl80211 (Wi-Fi), wireguard, …
pub const GENERIC: libc::c_int = libc::NETLINK_GENERIC;

/// A netlink socket talking to the kernel. Every receive gives up after the timeout it was opened
/// with, so a kernel that never answers cannot hang a source.
#[derive(Debug)]
pub struct NetlinkSocket {
    fd: OwnedFd,
}

impl NetlinkSocket {
    /// Opens a socket of the netlink family `protocol` (such as [`SOCK_DIAG`]) whose receives
    /// time out after `timeout`.
    pub fn open(protocol: libc::c_int, timeout: Duration) -> io::Result<NetlinkSocket> {
        // SAFETY: socket(2) takes plain integers and returns a new descriptor or -1.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                protocol,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just returned this descriptor; nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // A zero timeout would mean "wait for ever".
        let timeout = timeout.max(Duration::from_micros(1));
        let tv = libc::timeval {
            tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
            // Under a million, so it fits suseconds_t on every target (i32 on some).
            tv_usec: timeout.subsec_micros() as libc::suseconds_t,
        };
        // SAFETY: `tv` is a live timeval on this stack frame and the length passed is its exact
        // size, so the kernel reads only within it; the descriptor is owned by `fd`.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast::<libc::c_void>(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(NetlinkSocket { fd })
    }

    /// Sends one request to the kernel.
    pub fn send(&self, message: &[u8]) -> io::Result<()> {
        // SAFETY: sockaddr_nl is plain integers, for which all zeros is a valid value.
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: the message pointer and length come from one live slice, and the address is a
        // live sockaddr_nl passed with its exact size; sendto(2) only reads them.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                message.as_ptr().cast::<libc::c_void>(),
                message.len(),
                0,
                (&kernel as *const libc::sockaddr_nl).cast::<libc::sockaddr>(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        match usize::try_from(sent) {
            Ok(n) if n == message.len() => Ok(()),
            Ok(_) => Err(io::Error::other("netlink: the request was sent short")),
            Err(_) => Err(io::Error::last_os_error()),
        }
    }

    /// Receives one datagram of answers into `buf` and returns its length. A datagram larger than
    /// `buf` is an error (never silently cut), and so is no answer within the timeout
    /// (`ErrorKind::WouldBlock`).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            // SAFETY: the pointer and length come from one live, exclusively borrowed slice, so
            // recv(2) writes only within it. MSG_TRUNC makes it return the datagram's real length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast::<libc::c_void>(),
                    buf.len(),
                    libc::MSG_TRUNC,
                )
            };
            match usize::try_from(n) {
                Ok(n) if n > buf.len() => {
                    return Err(io::Error::other(format!(
                        "netlink: an answer of {n} bytes does not fit the {}-byte buffer",
                        buf.len()
                    )));
                }
                Ok(n) => return Ok(n),
                Err(_) => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
            }
        }
    }
}
