//! [`Liveness`]: how an outbound TCP connection notices that its path died silently (a WAN link
//! that drops, a NAT entry flushed upstream, a cable pulled: no reset, no ICMP), whether it is
//! busy or quiet. Without it the kernel retransmits for about 15 minutes before giving up, and an
//! idle connection never notices at all.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::config::reader::{Problems, Table};

/// The settings of one output's connections: `tcp_user_timeout`, `keepalive_idle`,
/// `keepalive_interval` and `keepalive_count` in its config section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    /// Data written but not acknowledged for this long aborts the connection (TCP_USER_TIMEOUT):
    /// bounds detection while sending; default 30 s.
    pub user_timeout: Duration,
    /// Quiet this long, the connection is probed (keepalive); default 15 s.
    pub keepalive_idle: Duration,
    /// Between probes; default 5 s.
    pub keepalive_interval: Duration,
    /// Unanswered probes that abort the connection; default 3, so a quiet dead path is noticed
    /// after 15 s + 3 × 5 s = 30 s.
    pub keepalive_count: u32,
}

impl Liveness {
    /// The defaults: a dead path noticed within about 30 s, busy or quiet.
    pub const DEFAULT: Liveness = Liveness {
        user_timeout: Duration::from_secs(30),
        keepalive_idle: Duration::from_secs(15),
        keepalive_interval: Duration::from_secs(5),
        keepalive_count: 3,
    };

    /// Reads the four keys from a component's section.
    pub fn read(t: &mut Table<'_>, problems: &mut Problems) -> Liveness {
        let d = Liveness::DEFAULT;
        let second = Duration::from_secs(1);
        Liveness {
            user_timeout: t.duration_at_least("tcp_user_timeout", d.user_timeout, second, problems),
            keepalive_idle: t.duration_at_least(
                "keepalive_idle",
                d.keepalive_idle,
                second,
                problems,
            ),
            keepalive_interval: t.duration_at_least(
                "keepalive_interval",
                d.keepalive_interval,
                second,
                problems,
            ),
            keepalive_count: t.number_in(
                "keepalive_count",
                u64::from(d.keepalive_count),
                1,
                127,
                problems,
            ) as u32,
        }
    }

    /// The longest a dead path may go unnoticed: by the user timeout while data waits for an
    /// acknowledgement, by the probes while the connection is quiet.
    pub fn bound(&self) -> Duration {
        let probes = self.keepalive_idle + self.keepalive_interval * self.keepalive_count;
        self.user_timeout.max(probes)
    }

    /// Opens a TCP connection to the first of `addrs` that takes one within `connect`, with
    /// Nagle's algorithm off, `write` as the write timeout and these options set.
    pub fn connect(
        &self,
        addrs: &[SocketAddr],
        connect: Duration,
        write: Duration,
    ) -> io::Result<TcpStream> {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "the address resolved to nothing");
        for addr in addrs {
            match TcpStream::connect_timeout(addr, connect) {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    stream.set_write_timeout(Some(write))?;
                    self.apply(&stream)?;
                    return Ok(stream);
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Sets the options on a newly opened connection.
    pub fn apply(&self, stream: &TcpStream) -> io::Result<()> {
        crate::sys::set_user_timeout(stream, self.user_timeout)?;
        crate::sys::set_keepalive(
            stream,
            self.keepalive_idle,
            self.keepalive_interval,
            self.keepalive_count,
        )
    }
}

impl Default for Liveness {
    fn default() -> Liveness {
        Liveness::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::json;
    use crate::config::reader::Field;

    fn read(text: &str) -> (Liveness, Vec<String>) {
        let doc = json::parse(text).unwrap();
        let mut p = Problems::new("t.json");
        let mut t = Field::root(&doc).table(&mut p).unwrap();
        let l = Liveness::read(&mut t, &mut p);
        t.finish(&mut p);
        (l, p.into_errors().iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn defaults_notice_a_dead_path_within_30_seconds() {
        let (l, errors) = read("{}");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(l, Liveness::DEFAULT);
        assert_eq!(l.bound(), Duration::from_secs(30));
        let (l, _) = read(
            r#"{"tcp_user_timeout": "5s", "keepalive_idle": "2s", "keepalive_interval": "1s", "keepalive_count": 2}"#,
        );
        assert_eq!(l.bound(), Duration::from_secs(5));
    }

    #[test]
    fn bad_values_are_refused_with_their_key() {
        let (_, errors) = read(r#"{"tcp_user_timeout": "10ms", "keepalive_count": 0}"#);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("tcp_user_timeout: expected a duration of at least 1s"));
        assert!(errors[1].contains("keepalive_count: expected a whole number from 1 to 127"));
    }

    #[test]
    fn a_connection_gets_every_option_and_the_first_address_that_answers() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        // A port nothing listens on, tried first.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed_addr = closed.local_addr().unwrap();
        drop(closed);
        let (l, _) = read(
            r#"{"tcp_user_timeout": "7s", "keepalive_idle": "3s", "keepalive_interval": "2s", "keepalive_count": 4}"#,
        );
        let write = Duration::from_millis(1500);
        let addrs = [closed_addr, listener.local_addr().unwrap()];
        let stream = l.connect(&addrs, Duration::from_secs(2), write).unwrap();
        assert_eq!(stream.peer_addr().unwrap(), addrs[1]);
        assert!(stream.nodelay().unwrap());
        assert_eq!(stream.write_timeout().unwrap(), Some(write));
        let option = |level, name| crate::sys::tcp_option(&stream, level, name).unwrap();
        assert_eq!(option(libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT), 7000);
        assert_eq!(option(libc::SOL_SOCKET, libc::SO_KEEPALIVE), 1);
        assert_eq!(option(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE), 3);
        assert_eq!(option(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL), 2);
        assert_eq!(option(libc::IPPROTO_TCP, libc::TCP_KEEPCNT), 4);
        let refused = l.connect(&[closed_addr], Duration::from_secs(2), write);
        assert_eq!(
            refused.unwrap_err().kind(),
            std::io::ErrorKind::ConnectionRefused
        );
    }
}
