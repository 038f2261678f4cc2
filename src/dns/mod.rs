//! Host names to addresses, with pipit's own stub resolver rather than the C library's.
//!
//! A numeric address is used as it is. A name is looked up in [`HOSTS`] first, then asked of the
//! DNS servers of [`RESOLV_CONF`] over UDP (A and AAAA together), following its `search`,
//! `ndots`, `timeout` and `attempts` (see [`conf`]). IPv4 addresses come before IPv6 ones.
//! Not consulted: nsswitch.conf (no NSS modules, mDNS, LDAP or systemd-resolved's API), host.conf
//! and the `RES_OPTIONS`/`LOCALDOMAIN` variables; a reply cut short (TC) is used for the records
//! it holds rather than asked again over TCP.
//!
//! Why not getaddrinfo(3): in a static glibc binary it costs about 180 KB (the resolver and NSS
//! with its module loader) and still loads glibc's NSS modules at run time, which a root without
//! that glibc lacks; and it has no timeout. This one gives up by the deadline its caller sets.

pub mod conf;
pub mod hosts;
pub mod message;

use std::collections::hash_map::RandomState;
use std::fs;
use std::hash::BuildHasher;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use conf::Conf;
use message::{Reply, TYPE_A, TYPE_AAAA};

/// The file the DNS servers and search domains are read from.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";
/// The file names are looked up in before DNS.
pub const HOSTS: &str = "/etc/hosts";

/// The addresses of `addr`, written `host:port`, `[ipv6]:port` or `ip:port`, found within
/// `limit`. The error says why in words: no port, a name with no address, no server answering.
pub fn resolve(addr: &str, limit: Duration) -> io::Result<Vec<SocketAddr>> {
    if let Ok(numeric) = addr.parse::<SocketAddr>() {
        return Ok(vec![numeric]);
    }
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| invalid(format!("{addr}: no port (host:port)")))?;
    let port = port
        .parse()
        .map_err(|_| invalid(format!("{addr}: the port is not a number from 0 to 65535")))?;
    lookup(host, port, limit)
}

/// The addresses of `host` (a name, an IP address, or an IPv6 address in brackets) with
/// `port`, found within `limit`.
pub fn lookup(host: &str, port: u16, limit: Duration) -> io::Result<Vec<SocketAddr>> {
    let ips = match literal(host) {
        Some(ip) => vec![ip],
        None => Resolver::system().addresses(host, limit)?,
    };
    Ok(ips
        .into_iter()
        .map(|ip| SocketAddr::new(ip, port))
        .collect())
}

/// The address `host` is, when it is one rather than a name: an IP address, or an IPv6 address
/// in brackets.
pub fn literal(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok()
}

/// A resolver: its settings and the text of its hosts file.
#[derive(Debug, Clone, Default)]
pub struct Resolver {
    /// Servers, search domains and timeouts.
    pub conf: Conf,
    /// The hosts file's text.
    pub hosts: String,
}

impl Resolver {
    /// The system's resolver, read afresh from [`RESOLV_CONF`] and [`HOSTS`] (DHCP rewrites
    /// them); a file that cannot be read counts as empty.
    pub fn system() -> Resolver {
        Resolver {
            conf: Conf::parse(&fs::read_to_string(RESOLV_CONF).unwrap_or_default()),
            hosts: fs::read_to_string(HOSTS).unwrap_or_default(),
        }
    }

    /// Every address of `name`, from the hosts file or else DNS, within `limit`. Errors:
    /// `InvalidInput` for a name DNS cannot carry, `NotFound` for a name without addresses,
    /// `TimedOut` (or the network's own error) when no server answered in time, `Other` when
    /// the servers answered only with failures (SERVFAIL, REFUSED).
    pub fn addresses(&self, name: &str, limit: Duration) -> io::Result<Vec<IpAddr>> {
        let found = hosts::lookup(&self.hosts, name);
        if !found.is_empty() {
            return Ok(found);
        }
        let absolute = name.strip_suffix('.').unwrap_or(name);
        if message::query(0, absolute, TYPE_A).is_none() {
            return Err(invalid(format!("\"{name}\" is not a valid host name")));
        }
        let deadline = Instant::now() + limit;
        let mut refused = None;
        for candidate in self.conf.candidates(name) {
            match self.ask(&candidate, deadline) {
                Ok(found) if !found.is_empty() => return Ok(found),
                Ok(_) => {}
                // Another name may fare better, as with glibc; silence would only repeat.
                Err(Unanswered::Refused) => refused = Some(candidate),
                Err(Unanswered::Silent(e)) => return Err(self.unanswered(&candidate, e)),
            }
        }
        Err(match refused {
            Some(candidate) => io::Error::other(format!(
                "the DNS servers ({}) refused or failed to answer for {candidate}",
                self.servers()
            )),
            None => io::Error::new(
                io::ErrorKind::NotFound,
                format!("{name} has no address (in {HOSTS} or DNS)"),
            ),
        })
    }

    /// The addresses the servers give `name`, empty when it has none (or a search domain made
    /// it too long to ask); tries each server in turn, `attempts` times over.
    fn ask(&self, name: &str, deadline: Instant) -> Result<Vec<IpAddr>, Unanswered> {
        let ids = RandomState::new().hash_one(Instant::now());
        let (Some(a), Some(aaaa)) = (
            message::query(ids as u16, name, TYPE_A),
            message::query((ids >> 16) as u16, name, TYPE_AAAA),
        ) else {
            return Ok(Vec::new());
        };
        let queries = [a, aaaa];
        let (mut refused, mut last) = (false, None);
        for _ in 0..self.conf.attempts {
            for &server in &self.conf.servers {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                match exchange(server, &queries, left.min(self.conf.timeout)) {
                    Ok(Exchange::Answered(found)) => return Ok(found),
                    Ok(Exchange::Failed) => refused = true,
                    Ok(Exchange::Silent) => {}
                    Err(e) => last = Some(e),
                }
            }
        }
        Err(if refused {
            Unanswered::Refused
        } else {
            Unanswered::Silent(last)
        })
    }

    fn unanswered(&self, name: &str, cause: Option<io::Error>) -> io::Error {
        let servers = self.servers();
        match cause {
            Some(e) => io::Error::new(
                e.kind(),
                format!("no DNS server answered for {name} ({servers}): {e}"),
            ),
            None => io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no DNS server answered for {name} ({servers}) in time"),
            ),
        }
    }

    fn servers(&self) -> String {
        let servers: Vec<String> = self.conf.servers.iter().map(|s| s.to_string()).collect();
        servers.join(", ")
    }
}

/// Why no server gave an answer about a name.
enum Unanswered {
    /// At least one answered, with a failure code.
    Refused,
    /// None answered in time; the last network error, if there was one.
    Silent(Option<io::Error>),
}

/// What one server made of a name.
enum Exchange {
    /// Its addresses; none when it does not exist or has none.
    Answered(Vec<IpAddr>),
    /// A failure code (SERVFAIL, REFUSED, ...) or a reply that did not parse.
    Failed,
    /// No reply (or only one of the two) in time.
    Silent,
}

/// Asks `server` both `queries` and waits up to `wait` for the replies.
fn exchange(server: SocketAddr, queries: &[Vec<u8>; 2], wait: Duration) -> io::Result<Exchange> {
    let socket = crate::udp::connect(server)?;
    for query in queries {
        socket.send(query)?;
    }
    let until = Instant::now() + wait;
    let mut replies: [Option<Reply>; 2] = [None, None];
    let mut packet = [0u8; 512];
    while replies.iter().any(Option::is_none) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        socket.set_read_timeout(Some(left))?;
        let len = match socket.recv(&mut packet) {
            Ok(len) => len,
            Err(e) if is_wait(&e) => continue,
            Err(e) => return Err(e),
        };
        for (slot, query) in replies.iter_mut().zip(queries) {
            if slot.is_none() {
                *slot = message::reply(&packet[..len], query);
            }
        }
    }
    let mut found = Vec::new();
    let (mut settled, mut failed) = (0, false);
    for reply in replies.into_iter().flatten() {
        match reply {
            Reply::Addresses(addresses) => {
                found.extend(addresses);
                settled += 1;
            }
            Reply::NoSuchName => settled += 2,
            Reply::Failed => failed = true,
        }
    }
    Ok(if !found.is_empty() || (settled >= 2 && !failed) {
        Exchange::Answered(found)
    } else if failed {
        Exchange::Failed
    } else {
        Exchange::Silent
    })
}

fn is_wait(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn numeric_addresses_are_taken_as_they_are() {
        let v4: SocketAddr = "192.0.2.1:2003".parse().unwrap();
        assert_eq!(resolve("192.0.2.1:2003", SECOND).unwrap(), vec![v4]);
        let v6: SocketAddr = "[2001:db8::1]:5555".parse().unwrap();
        assert_eq!(resolve("[2001:db8::1]:5555", SECOND).unwrap(), vec![v6]);
        assert_eq!(lookup("2001:db8::1", 5555, SECOND).unwrap(), vec![v6]);
        assert_eq!(lookup("[2001:db8::1]", 5555, SECOND).unwrap(), vec![v6]);
    }

    #[test]
    fn a_missing_or_bad_port_is_refused() {
        for bad in ["graphite", "graphite:", "graphite:70000", "graphite:x"] {
            let e = resolve(bad, SECOND).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad}");
            assert!(e.to_string().starts_with(bad), "{e}");
        }
    }

    #[test]
    fn the_hosts_file_answers_before_any_server() {
        // A server that never answers: asking it would time out.
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let conf = Conf {
            servers: vec![silent.local_addr().unwrap()],
            ..Conf::default()
        };
        let resolver = Resolver {
            hosts: "192.0.2.7 graphite.lan\n".to_owned(),
            conf,
        };
        assert_eq!(
            resolver.addresses("graphite.lan", SECOND).unwrap(),
            vec![IpAddr::from([192, 0, 2, 7])]
        );
    }

    #[test]
    fn a_name_dns_cannot_carry_is_refused_without_asking() {
        let e = Resolver::default()
            .addresses("bad..name", SECOND)
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let zoned = resolve("[fe80::1%eth0]:22", SECOND).unwrap_err();
        assert_eq!(zoned.kind(), io::ErrorKind::InvalidInput, "{zoned}");
        let numeric_zone = resolve("[fe80::1%2]:22", SECOND).unwrap();
        assert_eq!(numeric_zone, vec!["[fe80::1%2]:22".parse().unwrap()]);
    }

    #[test]
    fn a_silent_server_times_out_by_the_deadline() {
        // A bound socket that never answers.
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut conf = Conf::parse("options timeout:30 attempts:5");
        conf.servers = vec![silent.local_addr().unwrap()];
        let resolver = Resolver {
            conf,
            hosts: String::new(),
        };
        let started = Instant::now();
        let e = resolver
            .addresses("nowhere.example", Duration::from_millis(200))
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
