//! Network interfaces over rtnetlink (`NETLINK_ROUTE`, `RTM_GETLINK`), with their kind (`veth`,
//! `wireguard`, `bridge`, …) as `ip -d link show` gives it, to find the interfaces of one kind.

use std::time::Duration;

use super::{Attributes, Dumper, NetlinkError, text, u32_at};
use crate::sys::netlink::{NetlinkSocket, ROUTE};

/// Message type of the dump request (`RTM_GETLINK`).
const RTM_GETLINK: u16 = 18;
/// Message type of each interface in the answer (`RTM_NEWLINK`).
pub const RTM_NEWLINK: u16 = 16;
/// Size of `struct ifinfomsg`, the fixed part of each message.
const IFINFOMSG: usize = 16;
/// The interface's name, NUL-terminated (`IFLA_IFNAME`).
const IFLA_IFNAME: u16 = 3;
/// What kind of link it is, nested (`IFLA_LINKINFO`).
const IFLA_LINKINFO: u16 = 18;
/// In `IFLA_LINKINFO`: the kind's name, NUL-terminated (`IFLA_INFO_KIND`).
const IFLA_INFO_KIND: u16 = 1;
/// How long the kernel may take to answer one datagram.
const TIMEOUT: Duration = Duration::from_secs(2);

/// One network interface.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Link {
    /// Its index.
    pub index: u32,
    /// Its name.
    pub name: String,
    /// Its kind, such as `wireguard` or `veth`; empty for a physical device or the loopback.
    pub kind: String,
}

/// The interface in one `RTM_NEWLINK` message; `None` when the message is too short or an
/// attribute runs past its end.
pub fn parse(message: &[u8]) -> Option<Link> {
    let mut link = Link {
        index: u32_at(message, 4)?,
        ..Link::default()
    };
    let mut attrs = Attributes::new(message.get(IFINFOMSG..)?);
    for (kind, payload) in attrs.by_ref() {
        match kind {
            IFLA_IFNAME => link.name = text(payload),
            IFLA_LINKINFO => {
                let mut info = Attributes::new(payload);
                for (kind, p) in info.by_ref() {
                    if kind == IFLA_INFO_KIND {
                        link.kind = text(p);
                    }
                }
                if !info.whole() {
                    return None;
                }
            }
            _ => {}
        }
    }
    attrs.whole().then_some(link)
}

/// Asks the kernel for its network interfaces.
#[derive(Debug)]
pub struct Links {
    dumper: Dumper,
}

impl Links {
    /// Opens the rtnetlink socket.
    pub fn open() -> Result<Links, NetlinkError> {
        Ok(Links {
            dumper: Dumper::new(NetlinkSocket::open(ROUTE, TIMEOUT)?),
        })
    }

    /// Calls `each` with every interface, in the kernel's order. A message that does not parse
    /// fails the whole listing (after the interfaces before it were given).
    pub fn each(&mut self, each: &mut dyn FnMut(Link)) -> Result<(), NetlinkError> {
        let mut malformed = false;
        // A zeroed `struct ifinfomsg`: every family, every interface.
        self.dumper.dump_answered(
            RTM_GETLINK,
            RTM_NEWLINK,
            &[0; IFINFOMSG],
            &mut |m| match parse(m) {
                Some(l) => each(l),
                None => malformed = true,
            },
        )?;
        if malformed {
            return Err(NetlinkError::Malformed(
                "a link message with an attribute past its end",
            ));
        }
        Ok(())
    }

    /// The interfaces of kind `kind`, in the kernel's order.
    pub fn of_kind(&mut self, kind: &str) -> Result<Vec<Link>, NetlinkError> {
        let mut links = Vec::new();
        self.each(&mut |l| {
            if l.kind == kind {
                links.push(l);
            }
        })?;
        Ok(links)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::push_attribute;
    use std::process::Command;

    /// A veth pair named after this test's pid, removed when dropped.
    struct Veth(String);

    impl Veth {
        fn new(tag: &str) -> Veth {
            let name = format!("pl{tag}{}", std::process::id());
            let peer = format!("{name}p");
            let status = Command::new("ip")
                .args(["link", "add", &name, "type", "veth", "peer", "name", &peer])
                .status()
                .unwrap();
            assert!(status.success(), "ip link add {name}");
            Veth(name)
        }
    }

    impl Drop for Veth {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["link", "del", &self.0]).status();
        }
    }

    #[test]
    fn the_running_kernel_lists_links_by_kind() {
        let veth = Veth::new("k");
        let mut links = Links::open().unwrap();
        let veths = links.of_kind("veth").unwrap();
        let names: Vec<&str> = veths.iter().map(|l| l.name.as_str()).collect();
        assert!(names.contains(&veth.0.as_str()), "{names:?}");
        assert!(
            names.contains(&format!("{}p", veth.0).as_str()),
            "{names:?}"
        );
        assert!(veths.iter().all(|l| l.index > 1 && l.kind == "veth"));
        // The loopback has no kind; this kernel has no WireGuard.
        assert!(links.of_kind("").unwrap().iter().any(|l| l.name == "lo"));
        assert_eq!(links.of_kind("wireguard").unwrap(), []);
    }

    #[test]
    fn a_link_message_is_read_with_its_nested_kind() {
        let mut m = vec![0u8; IFINFOMSG];
        m[4..8].copy_from_slice(&9u32.to_ne_bytes());
        push_attribute(&mut m, IFLA_IFNAME, b"wg0\0");
        let mut info = Vec::new();
        push_attribute(&mut info, IFLA_INFO_KIND, b"wireguard\0");
        push_attribute(&mut m, IFLA_LINKINFO | 0x8000, &info);
        assert_eq!(
            parse(&m),
            Some(Link {
                index: 9,
                name: "wg0".into(),
                kind: "wireguard".into()
            })
        );
        assert_eq!(parse(&m[..m.len() - 2]), None, "cut in the kind");
        assert_eq!(parse(&m[..IFINFOMSG - 1]), None, "shorter than ifinfomsg");
    }
}
