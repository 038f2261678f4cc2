//! Generic netlink (`NETLINK_GENERIC`): the kernel families without a netlink protocol number of
//! their own, such as `nl80211` (Wi-Fi) and `wireguard`. Each is found by name through the
//! controller family (`nlctrl`, `CTRL_CMD_GETFAMILY`), which gives the message type to address it
//! by; every request and answer then starts with the generic header (`struct genlmsghdr`: a
//! command, a version and two reserved bytes) before its attributes.

use std::time::Duration;

use super::{Attributes, Dumper, NetlinkError, push_attribute, text, u16_at};
use crate::sys::netlink::{GENERIC, NetlinkSocket};

/// The controller's message type (`GENL_ID_CTRL`), the one fixed family id.
const GENL_ID_CTRL: u16 = 0x10;
/// The controller's answer describing a family (`CTRL_CMD_NEWFAMILY`).
const CTRL_CMD_NEWFAMILY: u8 = 1;
/// The controller's command asking for a family (`CTRL_CMD_GETFAMILY`).
const CTRL_CMD_GETFAMILY: u8 = 3;
/// The family's id, a u16 (`CTRL_ATTR_FAMILY_ID`).
const CTRL_ATTR_FAMILY_ID: u16 = 1;
/// The family's name, NUL-terminated (`CTRL_ATTR_FAMILY_NAME`).
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
/// Size of `struct genlmsghdr`.
const GENL_HEADER: usize = 4;
/// How long the kernel may take to answer one datagram.
const TIMEOUT: Duration = Duration::from_secs(2);

/// The generic header and `attributes` of a request: command `command` of version `version`.
fn payload(command: u8, version: u8, attributes: &[u8]) -> Vec<u8> {
    let mut p = vec![command, version, 0, 0];
    p.extend_from_slice(attributes);
    p
}

/// The id of the family `name` in one controller answer; `None` when the message is no
/// description of that family or is cut short.
pub fn parse_family(message: &[u8], name: &str) -> Option<u16> {
    if *message.first()? != CTRL_CMD_NEWFAMILY {
        return None;
    }
    let mut attrs = Attributes::new(message.get(GENL_HEADER..)?);
    let (mut id, mut named) = (None, false);
    for (kind, payload) in attrs.by_ref() {
        match kind {
            CTRL_ATTR_FAMILY_ID => id = u16_at(payload, 0),
            CTRL_ATTR_FAMILY_NAME => named = text(payload) == name,
            _ => {}
        }
    }
    id.filter(|_| named && attrs.whole())
}

/// The attributes of one answer of a generic family, after its generic header; `None` for a
/// message shorter than that header.
pub fn attributes_of(message: &[u8]) -> Option<&[u8]> {
    message.get(GENL_HEADER..)
}

/// A generic netlink socket.
#[derive(Debug)]
pub struct Genl {
    dumper: Dumper,
}

impl Genl {
    /// Opens the socket.
    pub fn open() -> Result<Genl, NetlinkError> {
        Ok(Genl {
            dumper: Dumper::new(NetlinkSocket::open(GENERIC, TIMEOUT)?),
        })
    }

    /// The id of the family `name`, to address its requests with; [`NetlinkError::NoFamily`]
    /// when this kernel has none of that name.
    pub fn family(&mut self, name: &'static str) -> Result<u16, NetlinkError> {
        let mut attributes = Vec::new();
        push_attribute(
            &mut attributes,
            CTRL_ATTR_FAMILY_NAME,
            &[name.as_bytes(), b"\0"].concat(),
        );
        let mut id = None;
        let asked = self.dumper.ask(
            GENL_ID_CTRL,
            &payload(CTRL_CMD_GETFAMILY, 1, &attributes),
            &mut |m| id = id.or(parse_family(m, name)),
        );
        match asked {
            Err(NetlinkError::Refused(libc::ENOENT)) => Err(NetlinkError::NoFamily(name)),
            Err(e) => Err(e),
            Ok(()) => id.ok_or(NetlinkError::Malformed(
                "the controller's answer names no family id",
            )),
        }
    }

    /// Sends the dump request `command` (of the family's `version`) with `attributes` to the
    /// family `family` and hands the attributes of every answer to `each`. A message shorter
    /// than the generic header fails the dump.
    pub fn dump(
        &mut self,
        family: u16,
        command: u8,
        version: u8,
        attributes: &[u8],
        each: &mut dyn FnMut(&[u8]),
    ) -> Result<(), NetlinkError> {
        let mut short = false;
        self.dumper
            .dump(
                family,
                &payload(command, version, attributes),
                &mut |m| match attributes_of(m) {
                    Some(a) => each(a),
                    None => short = true,
                },
            )?;
        if short {
            return Err(NetlinkError::Malformed(
                "an answer shorter than the generic netlink header",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_controller_finds_itself_in_the_running_kernel() {
        let mut genl = Genl::open().unwrap();
        assert_eq!(genl.family("nlctrl").unwrap(), GENL_ID_CTRL);
        // Asked again on the same socket: the first answer was read to its end.
        assert_eq!(genl.family("nlctrl").unwrap(), GENL_ID_CTRL);
    }

    #[test]
    fn a_family_the_kernel_lacks_is_not_supported() {
        let mut genl = Genl::open().unwrap();
        let e = genl.family("pipit-no-such").unwrap_err();
        assert!(
            matches!(e, NetlinkError::NoFamily("pipit-no-such")),
            "{e:?}"
        );
        assert!(e.is_unsupported());
        assert!(
            e.to_string().contains("does not support pipit-no-such"),
            "{e}"
        );
        // The socket still answers after a refusal.
        assert_eq!(genl.family("nlctrl").unwrap(), GENL_ID_CTRL);
    }

    #[test]
    fn a_dump_of_the_controller_lists_its_families() {
        let mut genl = Genl::open().unwrap();
        let mut mine = 0;
        let mut families = 0;
        genl.dump(GENL_ID_CTRL, CTRL_CMD_GETFAMILY, 1, &[], &mut |a| {
            families += 1;
            let mut message = payload(CTRL_CMD_NEWFAMILY, 1, &[]);
            message.extend_from_slice(a);
            if parse_family(&message, "nlctrl") == Some(GENL_ID_CTRL) {
                mine += 1;
            }
        })
        .unwrap();
        assert_eq!(mine, 1, "nlctrl is listed once among {families} families");
        assert!(families > 1);
    }

    #[test]
    fn answers_of_another_command_or_family_or_cut_short_give_no_id() {
        let mut attributes = Vec::new();
        push_attribute(&mut attributes, CTRL_ATTR_FAMILY_ID, &0x1cu16.to_ne_bytes());
        push_attribute(&mut attributes, CTRL_ATTR_FAMILY_NAME, b"nl80211\0");
        let answer = payload(CTRL_CMD_NEWFAMILY, 2, &attributes);
        assert_eq!(parse_family(&answer, "nl80211"), Some(0x1c));
        assert_eq!(parse_family(&answer, "wireguard"), None);
        assert_eq!(parse_family(&answer[..answer.len() - 1], "nl80211"), None);
        assert_eq!(parse_family(&answer[..2], "nl80211"), None);
        assert_eq!(parse_family(&[], "nl80211"), None);
        let other = payload(CTRL_CMD_GETFAMILY, 2, &attributes);
        assert_eq!(parse_family(&other, "nl80211"), None);
        assert_eq!(attributes_of(&answer[..3]), None);
    }
}
