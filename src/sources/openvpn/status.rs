//! OpenVPN's status file, as `--status FILE` has OpenVPN rewrite it: a server's client list in
//! any of the three formats (`--status-version 1`, with commas and a header line; `2`, with commas
//! and `HEADER,CLIENT_LIST,…`; `3`, the same with tabs), read by the column names of its header,
//! or a client's statistics (`OpenVPN STATISTICS`).

/// One connection to a server, as a status file lists it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Connection {
    /// The client's name: its certificate's common name, or its user name where the common name
    /// is `UNDEF` (a server authenticating by user name only).
    pub name: String,
    /// Where it connects from, `address:port`.
    pub real_address: String,
    /// Its address inside the tunnel; empty where the format does not give it (version 1).
    pub virtual_address: String,
    /// Bytes received from it over the link (a counter).
    pub rx_bytes: u64,
    /// Bytes sent to it over the link (a counter).
    pub tx_bytes: u64,
    /// When it connected, seconds since the epoch (versions 2 and 3 only).
    pub connected_since: Option<u64>,
}

/// What one status file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// A server's file: its connections.
    Server(Vec<Connection>),
    /// A client's file (`OpenVPN STATISTICS`): its link's counters.
    Client {
        /// Bytes read from the link (`TCP/UDP read bytes`).
        rx_bytes: u64,
        /// Bytes written to the link (`TCP/UDP write bytes`).
        tx_bytes: u64,
    },
}

/// Where each field is in a client list row, from its header.
#[derive(Debug, Clone, Copy)]
struct Columns {
    name: usize,
    real: usize,
    rx: usize,
    tx: usize,
    virtual_address: Option<usize>,
    username: Option<usize>,
    since: Option<usize>,
}

impl Columns {
    /// The columns named in `header`, whose fields line up with the rows'; `None` without the
    /// name, address and byte counts.
    fn of<'a>(header: impl Iterator<Item = &'a str>) -> Option<Columns> {
        let names: Vec<&str> = header.collect();
        let at = |name: &str| names.iter().position(|n| *n == name);
        Some(Columns {
            name: at("Common Name")?,
            real: at("Real Address")?,
            rx: at("Bytes Received")?,
            tx: at("Bytes Sent")?,
            virtual_address: at("Virtual Address"),
            username: at("Username"),
            since: at("Connected Since (time_t)"),
        })
    }

    /// The connection in `fields`; `None` when a field is missing or a count is no number.
    fn connection(&self, fields: &[&str]) -> Option<Connection> {
        let field = |i: usize| fields.get(i).copied();
        let common = field(self.name)?;
        let user = self.username.and_then(field).unwrap_or("UNDEF");
        let name = if common == "UNDEF" && !user.is_empty() && user != "UNDEF" {
            user
        } else {
            common
        };
        Some(Connection {
            name: name.to_owned(),
            real_address: field(self.real)?.to_owned(),
            virtual_address: self
                .virtual_address
                .and_then(field)
                .unwrap_or_default()
                .to_owned(),
            rx_bytes: field(self.rx)?.parse().ok()?,
            tx_bytes: field(self.tx)?.parse().ok()?,
            connected_since: match self.since {
                Some(i) => Some(field(i)?.parse().ok()?),
                None => None,
            },
        })
    }
}

/// Reads a status file of any version; `None` for text that is no status file, or a client row
/// that does not parse (no part of a file is used).
pub fn parse(text: &str) -> Option<Status> {
    let mut lines = text.lines().map(|l| l.trim_end_matches('\r'));
    let first = lines.next()?;
    match first {
        "OpenVPN STATISTICS" => {
            let (mut rx, mut tx) = (None, None);
            for line in lines {
                match line.split_once(',') {
                    Some(("TCP/UDP read bytes", n)) => rx = Some(n.parse().ok()?),
                    Some(("TCP/UDP write bytes", n)) => tx = Some(n.parse().ok()?),
                    _ => {}
                }
            }
            Some(Status::Client {
                rx_bytes: rx?,
                tx_bytes: tx?,
            })
        }
        // Version 1: a header line, then one row per client until the routing table.
        "OpenVPN CLIENT LIST" => {
            let mut columns = None;
            let mut connections = Vec::new();
            for line in lines {
                if matches!(line, "ROUTING TABLE" | "GLOBAL STATS" | "END") {
                    break;
                }
                if line.starts_with("Updated,") {
                    continue;
                }
                let fields: Vec<&str> = line.split(',').collect();
                match columns {
                    None => columns = Some(Columns::of(fields.into_iter())?),
                    Some(c) => connections.push(c.connection(&fields)?),
                }
            }
            columns.map(|_| Status::Server(connections))
        }
        // Versions 2 (commas) and 3 (tabs): every line starts with its kind.
        _ => {
            let separator = if first.starts_with("TITLE\t") {
                '\t'
            } else if first.starts_with("TITLE,") {
                ','
            } else {
                return None;
            };
            let mut columns = None;
            let mut connections = Vec::new();
            for line in lines {
                let fields: Vec<&str> = line.split(separator).collect();
                match fields[..] {
                    // The header's fields after HEADER line up with a row's.
                    ["HEADER", "CLIENT_LIST", ..] => {
                        columns = Some(Columns::of(fields[1..].iter().copied())?)
                    }
                    ["CLIENT_LIST", ..] => connections.push(columns?.connection(&fields)?),
                    _ => {}
                }
            }
            columns.map(|_| Status::Server(connections))
        }
    }
}

/// The text of a status file in the OpenWrt fixture tree, where OpenWrt's init script has OpenVPN
/// write them: `home` (version 1), `office` (version 2), `lab` (version 3) and `uplink` (a
/// client).
#[cfg(test)]
pub fn fixture(instance: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/openwrt/var/run/openvpn.{instance}.status",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(path).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(
        name: &str,
        real: &str,
        virtual_address: &str,
        rx: u64,
        tx: u64,
        since: Option<u64>,
    ) -> Connection {
        Connection {
            name: name.into(),
            real_address: real.into(),
            virtual_address: virtual_address.into(),
            rx_bytes: rx,
            tx_bytes: tx,
            connected_since: since,
        }
    }

    #[test]
    fn version_1_lists_clients_without_their_tunnel_address() {
        assert_eq!(
            parse(&fixture("home")),
            Some(Status::Server(vec![
                connection(
                    "laptop",
                    "198.51.100.20:51234",
                    "",
                    1_234_567,
                    7_654_321,
                    None
                ),
                connection("phone", "203.0.113.5:1194", "", 2048, 4096, None),
            ]))
        );
    }

    #[test]
    fn version_2_names_a_client_without_a_certificate_by_its_user() {
        assert_eq!(
            parse(&fixture("office")),
            Some(Status::Server(vec![
                connection(
                    "alice",
                    "198.51.100.7:40001",
                    "10.9.0.2",
                    5_000_000,
                    60_000_000,
                    Some(1_796_634_000)
                ),
                connection(
                    "bob",
                    "203.0.113.9:40002",
                    "10.9.0.3",
                    700,
                    800,
                    Some(1_796_637_540)
                ),
            ]))
        );
    }

    #[test]
    fn version_3_of_an_older_openvpn_with_a_name_connected_twice() {
        assert_eq!(
            parse(&fixture("lab")),
            Some(Status::Server(vec![
                connection(
                    "carol",
                    "192.0.2.44:1194",
                    "10.7.0.2",
                    3000,
                    4000,
                    Some(1_796_630_400)
                ),
                connection(
                    "carol",
                    "192.0.2.45:1194",
                    "10.7.0.3",
                    100,
                    200,
                    Some(1_796_636_700)
                ),
                connection(
                    "dave.example.com",
                    "[2001:db8::77]:1194",
                    "10.7.0.4",
                    0,
                    0,
                    Some(1_796_637_540)
                ),
            ]))
        );
    }

    #[test]
    fn a_client_s_file_gives_its_link_counters() {
        assert_eq!(
            parse(&fixture("uplink")),
            Some(Status::Client {
                rx_bytes: 3500,
                tx_bytes: 4500
            })
        );
    }

    #[test]
    fn text_that_is_no_status_file_or_half_of_one_is_refused() {
        for text in [
            "",
            "hello\n",
            "OpenVPN CLIENT LIST\nUpdated,x\n",
            "OpenVPN STATISTICS\nTCP/UDP read bytes,1\n",
            "OpenVPN STATISTICS\nTCP/UDP read bytes,x\nTCP/UDP write bytes,1\n",
            "TITLE,x\nCLIENT_LIST,a,1.2.3.4:5,10.0.0.1,,1,2,t,3,UNDEF,0,0\n",
        ] {
            assert_eq!(parse(text), None, "{text:?}");
        }
        let office = fixture("office");
        assert_eq!(parse(&office.replace(",5000000,", ",5e6,")), None);
        assert_eq!(
            parse(&office.replace(",AES-256-GCM", "")),
            parse(&office),
            "a column pipit does not use may be missing"
        );
        let v1 = fixture("home");
        assert_eq!(
            parse(&v1.replace("phone,203.0.113.5:1194,2048", "phone,203.0.113.5:1194")),
            None
        );
        assert!(parse(&v1.replace('\n', "\r\n")).is_some(), "CRLF line ends");
    }
}
