//! resolv.conf(5): which servers to ask, which domains to try, how long to wait.
//!
//! Read as the C libraries read it: `nameserver` (at most three, in order; none means the local
//! host), `search` and `domain` (the last of them wins), and `options` `ndots:`, `timeout:` and
//! `attempts:`, each clamped to glibc's limits. Other lines and options are ignored, as are the
//! `RES_OPTIONS` and `LOCALDOMAIN` variables.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// The port DNS servers listen on.
const PORT: u16 = 53;
/// At most this many servers are asked (glibc's MAXNS).
const MAX_SERVERS: usize = 3;

/// The resolver's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conf {
    /// The servers asked, in order.
    pub servers: Vec<SocketAddr>,
    /// Domains appended to a name with fewer than `ndots` dots before it is tried alone, or
    /// after it otherwise.
    pub search: Vec<String>,
    /// Dots a name needs to be tried as it is first; 1 by default, at most 15.
    pub ndots: usize,
    /// How long one server is waited for per attempt; 5 s by default, 1 to 30 s.
    pub timeout: Duration,
    /// How many rounds over the servers are made; 2 by default, 1 to 5.
    pub attempts: u32,
}

impl Default for Conf {
    fn default() -> Conf {
        Conf {
            servers: vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), PORT)],
            search: Vec::new(),
            ndots: 1,
            timeout: Duration::from_secs(5),
            attempts: 2,
        }
    }
}

impl Conf {
    /// The settings in resolv.conf `text`; what it leaves out keeps its default.
    pub fn parse(text: &str) -> Conf {
        let mut conf = Conf {
            servers: Vec::new(),
            ..Conf::default()
        };
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or_default();
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    let server = words.next().and_then(|w| w.parse::<IpAddr>().ok());
                    if let Some(ip) = server.filter(|_| conf.servers.len() < MAX_SERVERS) {
                        conf.servers.push(SocketAddr::new(ip, PORT));
                    }
                }
                Some("domain") => conf.search = words.next().map(domain).into_iter().collect(),
                Some("search") => conf.search = words.map(domain).collect(),
                Some("options") => words.for_each(|option| conf.option(option)),
                _ => {}
            }
        }
        if conf.servers.is_empty() {
            conf.servers = Conf::default().servers;
        }
        conf
    }

    fn option(&mut self, option: &str) {
        let Some((name, value)) = option.split_once(':') else {
            return;
        };
        let Ok(value) = value.parse::<u32>() else {
            return;
        };
        match name {
            "ndots" => self.ndots = value.min(15) as usize,
            "timeout" => self.timeout = Duration::from_secs(value.clamp(1, 30).into()),
            "attempts" => self.attempts = value.clamp(1, 5),
            _ => {}
        }
    }

    /// The names tried for `name`, in order: with a trailing dot only the name itself; with at
    /// least `ndots` dots the name and then the name in each search domain; with fewer, the
    /// search domains first.
    pub fn candidates(&self, name: &str) -> Vec<String> {
        if let Some(absolute) = name.strip_suffix('.') {
            return vec![absolute.to_owned()];
        }
        let searched = self.search.iter().map(|d| format!("{name}.{d}"));
        if name.matches('.').count() >= self.ndots {
            std::iter::once(name.to_owned()).chain(searched).collect()
        } else {
            searched.chain(std::iter::once(name.to_owned())).collect()
        }
    }
}

fn domain(word: &str) -> String {
    word.trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(s: &str) -> SocketAddr {
        SocketAddr::new(s.parse().unwrap(), 53)
    }

    #[test]
    fn a_full_file_is_read() {
        let conf = Conf::parse(
            "# written by DHCP\n\
             nameserver 192.168.1.1\n\
             nameserver  fd00::1   # the router\n\
             nameserver not-an-address\n\
             domain old.lan\n\
             search lan. example.org\n\
             options rotate ndots:2 timeout:3 attempts:4 edns0\n\
             sortlist 10.0.0.0\n",
        );
        assert_eq!(
            conf,
            Conf {
                servers: vec![server("192.168.1.1"), server("fd00::1")],
                search: vec!["lan".to_owned(), "example.org".to_owned()],
                ndots: 2,
                timeout: Duration::from_secs(3),
                attempts: 4,
            }
        );
    }

    #[test]
    fn an_empty_file_asks_the_local_host() {
        assert_eq!(Conf::parse(""), Conf::default());
        assert_eq!(Conf::default().servers, vec![server("127.0.0.1")]);
    }

    #[test]
    fn at_most_three_servers_and_options_clamped() {
        let conf = Conf::parse(
            "nameserver 10.0.0.1\nnameserver 10.0.0.2\nnameserver 10.0.0.3\nnameserver 10.0.0.4\n\
             options ndots:99 timeout:0 attempts:9 ndots:x\n",
        );
        assert_eq!(conf.servers.len(), 3);
        assert_eq!(conf.ndots, 15);
        assert_eq!(conf.timeout, Duration::from_secs(1));
        assert_eq!(conf.attempts, 5);
        let high = Conf::parse("options timeout:600 attempts:0");
        assert_eq!(high.timeout, Duration::from_secs(30));
        assert_eq!(high.attempts, 1);
    }

    #[test]
    fn the_last_of_domain_and_search_wins() {
        assert_eq!(Conf::parse("search a b\ndomain c").search, vec!["c"]);
        assert_eq!(Conf::parse("domain c\nsearch a b").search, vec!["a", "b"]);
    }

    #[test]
    fn candidates_follow_ndots() {
        let conf = Conf::parse("search lan example.org");
        assert_eq!(
            conf.candidates("graphite"),
            vec!["graphite.lan", "graphite.example.org", "graphite"]
        );
        assert_eq!(
            conf.candidates("db.site"),
            vec!["db.site", "db.site.lan", "db.site.example.org"]
        );
        assert_eq!(conf.candidates("graphite."), vec!["graphite"]);
        let ndots2 = Conf::parse("search lan\noptions ndots:2");
        assert_eq!(ndots2.candidates("db.site"), vec!["db.site.lan", "db.site"]);
    }
}
