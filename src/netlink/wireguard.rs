//! WireGuard over generic netlink (the `wireguard` family), the way `wg show` asks: one device's
//! peers with their endpoint, latest handshake and traffic (`WG_CMD_GET_DEVICE`, a dump of one
//! device by its interface name). The kernel answers it only to a caller with `CAP_NET_ADMIN`.
//!
//! A device with many peers does not fit one message: the kernel sends the device's own
//! attributes in the first message only, and a peer whose allowed IPs did not fit comes again at
//! the start of the next message with only its key and more allowed IPs. The keys the kernel
//! sends besides the peers' public keys (the device's private key, the peers' preshared keys)
//! are skipped, never kept.
//!
//! Layouts are those of `include/uapi/linux/wireguard.h`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use super::genl::Genl;
use super::{Attributes, NetlinkError, push_attribute, text, u16_at, u32_at, u64_at};

/// The family's name.
pub const FAMILY: &str = "wireguard";
/// The family's version (`WG_GENL_VERSION`).
const VERSION: u8 = 1;
/// `WG_CMD_GET_DEVICE`.
const CMD_GET_DEVICE: u8 = 0;

/// The device's interface index, u32 (`WGDEVICE_A_IFINDEX`).
const DEVICE_IFINDEX: u16 = 1;
/// The device's interface name, NUL-terminated (`WGDEVICE_A_IFNAME`).
const DEVICE_IFNAME: u16 = 2;
/// Its peers, nested, each nested in turn (`WGDEVICE_A_PEERS`).
const DEVICE_PEERS: u16 = 8;

/// The peer's public key, 32 bytes (`WGPEER_A_PUBLIC_KEY`).
const PEER_PUBLIC_KEY: u16 = 1;
/// Where the peer was last heard from, a `sockaddr_in` or `sockaddr_in6` (`WGPEER_A_ENDPOINT`).
const PEER_ENDPOINT: u16 = 4;
/// When the latest handshake was, a `struct __kernel_timespec` of wall-clock time; all zeros for
/// never (`WGPEER_A_LAST_HANDSHAKE_TIME`).
const PEER_LAST_HANDSHAKE_TIME: u16 = 6;
/// Bytes received from the peer, u64 (`WGPEER_A_RX_BYTES`).
const PEER_RX_BYTES: u16 = 7;
/// Bytes sent to the peer, u64 (`WGPEER_A_TX_BYTES`).
const PEER_TX_BYTES: u16 = 8;

/// One peer of a device.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Peer {
    /// Its public key.
    pub public_key: [u8; 32],
    /// Where it was last heard from; `None` before it ever was, with no endpoint configured.
    pub endpoint: Option<SocketAddr>,
    /// When its latest handshake was, as time since the epoch; `None` for never.
    pub last_handshake: Option<Duration>,
    /// Bytes received from it (a counter).
    pub rx_bytes: u64,
    /// Bytes sent to it (a counter).
    pub tx_bytes: u64,
}

/// One WireGuard device and its peers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Device {
    /// Its interface index.
    pub ifindex: u32,
    /// Its interface name.
    pub name: String,
    /// Its peers, in the kernel's order.
    pub peers: Vec<Peer>,
}

/// A `sockaddr_in` or `sockaddr_in6`; `None` for another family or a short one.
fn endpoint(p: &[u8]) -> Option<SocketAddr> {
    let family = i32::from(u16_at(p, 0)?);
    let port = u16::from_be_bytes(p.get(2..4)?.try_into().ok()?);
    let ip = match family {
        libc::AF_INET => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(p.get(4..8)?).ok()?)),
        libc::AF_INET6 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(p.get(8..24)?).ok()?)),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// One peer's attributes; `None` when it has no key, or an attribute is short or runs past the
/// end. `Some` with only the key for a peer continued from the previous message.
fn parse_peer(attributes: &[u8]) -> Option<Peer> {
    let mut peer = Peer::default();
    let mut key = None;
    let mut attrs = Attributes::new(attributes);
    for (kind, p) in attrs.by_ref() {
        match kind {
            PEER_PUBLIC_KEY => key = Some(p.try_into().ok()?),
            PEER_ENDPOINT => peer.endpoint = endpoint(p),
            PEER_LAST_HANDSHAKE_TIME => {
                let (secs, nanos) = (u64_at(p, 0)?, u64_at(p, 8)?);
                peer.last_handshake = (secs != 0 || nanos != 0).then(|| {
                    Duration::new(secs, u32::try_from(nanos % 1_000_000_000).unwrap_or(0))
                });
            }
            PEER_RX_BYTES => peer.rx_bytes = u64_at(p, 0)?,
            PEER_TX_BYTES => peer.tx_bytes = u64_at(p, 0)?,
            _ => {}
        }
    }
    peer.public_key = key?;
    attrs.whole().then_some(peer)
}

/// Adds what one answer of a device dump holds to `device`; `None` when something in it does
/// not parse (then `device` is not to be used).
pub fn parse_device(attributes: &[u8], device: &mut Device) -> Option<()> {
    let mut attrs = Attributes::new(attributes);
    for (kind, p) in attrs.by_ref() {
        match kind {
            DEVICE_IFINDEX => device.ifindex = u32_at(p, 0)?,
            DEVICE_IFNAME => device.name = text(p),
            DEVICE_PEERS => {
                let mut peers = Attributes::new(p);
                for (_, p) in peers.by_ref() {
                    let peer = parse_peer(p)?;
                    // A peer continued from the previous message is already listed.
                    if device.peers.last().map(|last| last.public_key) != Some(peer.public_key) {
                        device.peers.push(peer);
                    }
                }
                if !peers.whole() {
                    return None;
                }
            }
            _ => {}
        }
    }
    attrs.whole().then_some(())
}

/// Asks the kernel's wireguard family.
#[derive(Debug)]
pub struct WireGuard {
    genl: Genl,
    family: u16,
}

impl WireGuard {
    /// Opens a generic netlink socket and finds the family; [`NetlinkError::NoFamily`] on a
    /// kernel without WireGuard.
    pub fn open() -> Result<WireGuard, NetlinkError> {
        let mut genl = Genl::open()?;
        let family = genl.family(FAMILY)?;
        Ok(WireGuard { genl, family })
    }

    /// The device of the interface `name` with its peers. Without `CAP_NET_ADMIN` the kernel
    /// refuses with `EPERM`; an interface that does not exist with `ENODEV`, and one of another
    /// kind with `EOPNOTSUPP`.
    pub fn device(&mut self, name: &str) -> Result<Device, NetlinkError> {
        let mut attributes = Vec::new();
        push_attribute(
            &mut attributes,
            DEVICE_IFNAME,
            &[name.as_bytes(), b"\0"].concat(),
        );
        let mut device = Device::default();
        let mut whole = true;
        self.genl.dump(
            self.family,
            CMD_GET_DEVICE,
            VERSION,
            &attributes,
            &mut |a| {
                whole &= parse_device(a, &mut device).is_some();
            },
        )?;
        if !whole {
            return Err(NetlinkError::Malformed(
                "a WireGuard device with a peer without its key or an attribute past its end",
            ));
        }
        Ok(device)
    }
}

/// The device in the fixture `tests/fixtures/netlink/wireguard-wg0.bin`, built by
/// `build_wireguard.py` beside it, which must parse whole.
#[cfg(test)]
pub fn fixture() -> Device {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/netlink/wireguard-wg0.bin"
    );
    let mut device = Device::default();
    let r = super::read_datagram(&std::fs::read(path).unwrap(), 0x1d, 7, &mut |m| {
        let attributes = super::genl::attributes_of(m).unwrap();
        parse_device(attributes, &mut device).unwrap();
    });
    assert_eq!(r.unwrap(), super::Datagram::Done);
    device
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(first: u8) -> [u8; 32] {
        std::array::from_fn(|i| first.wrapping_add(i as u8))
    }

    /// Built from `include/uapi/linux/wireguard.h`'s layouts: this machine's kernel has no
    /// wireguard link type to capture from.
    #[test]
    fn a_device_over_two_messages_lists_each_peer_once() {
        let device = fixture();
        assert_eq!(
            device,
            Device {
                ifindex: 4,
                name: "wg0".into(),
                peers: vec![
                    Peer {
                        public_key: key(0x10),
                        endpoint: Some("192.0.2.7:51820".parse().unwrap()),
                        last_handshake: Some(Duration::new(1_700_000_000, 500_000_000)),
                        rx_bytes: 123_456_789,
                        tx_bytes: 98_765_432,
                    },
                    Peer {
                        public_key: key(0xfb),
                        endpoint: Some("[2001:db8::1]:443".parse().unwrap()),
                        last_handshake: Some(Duration::new(1_699_990_000, 500_000_000)),
                        rx_bytes: 1_000,
                        tx_bytes: 2_000,
                    },
                    Peer {
                        public_key: key(0x20),
                        endpoint: None,
                        last_handshake: None,
                        rx_bytes: 0,
                        tx_bytes: 0,
                    },
                ],
            }
        );
    }

    #[test]
    fn peers_without_a_key_or_cut_short_are_refused() {
        let mut peer = Vec::new();
        push_attribute(&mut peer, PEER_RX_BYTES, &5u64.to_ne_bytes());
        let mut peers = Vec::new();
        push_attribute(&mut peers, 0x8000, &peer);
        let mut device = Vec::new();
        push_attribute(&mut device, DEVICE_PEERS | 0x8000, &peers);
        assert_eq!(
            parse_device(&device, &mut Device::default()),
            None,
            "no key"
        );
        let mut short_key = Vec::new();
        push_attribute(&mut short_key, PEER_PUBLIC_KEY, &[1; 31]);
        assert_eq!(parse_peer(&short_key), None);
        let mut with_key = Vec::new();
        push_attribute(&mut with_key, PEER_PUBLIC_KEY, &[1; 32]);
        push_attribute(&mut with_key, PEER_LAST_HANDSHAKE_TIME, &[0; 12]);
        assert_eq!(parse_peer(&with_key), None, "a short timespec");
        let mut ifindex = Vec::new();
        push_attribute(&mut ifindex, DEVICE_IFINDEX, &[4, 0]);
        assert_eq!(parse_device(&ifindex, &mut Device::default()), None);
    }

    #[test]
    fn endpoints_of_either_family_and_no_other() {
        let mut v4 = (libc::AF_INET as u16).to_ne_bytes().to_vec();
        v4.extend(51820u16.to_be_bytes());
        v4.extend([10, 0, 0, 1]);
        v4.extend([0; 8]);
        assert_eq!(endpoint(&v4), Some("10.0.0.1:51820".parse().unwrap()));
        assert_eq!(endpoint(&v4[..7]), None);
        let mut unix = v4.clone();
        unix[..2].copy_from_slice(&(libc::AF_UNIX as u16).to_ne_bytes());
        assert_eq!(endpoint(&unix), None);
    }

    #[test]
    fn a_kernel_without_wireguard_says_so() {
        match WireGuard::open() {
            Err(e) => {
                assert!(matches!(e, NetlinkError::NoFamily(FAMILY)), "{e:?}");
                assert!(e.to_string().contains("does not support wireguard"), "{e}");
            }
            // A kernel with WireGuard (not the one this was written on) finds the family.
            Ok(wg) => assert!(wg.family >= 0x10),
        }
    }
}
