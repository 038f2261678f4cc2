//! hosts(5): addresses named in a file, looked at before any server is asked.

use std::net::IpAddr;

/// Every address `name` has in hosts-file `text`, in file order. Names compare without regard
/// to ASCII case and a trailing dot; a line whose address does not parse is skipped.
pub fn lookup(text: &str, name: &str) -> Vec<IpAddr> {
    let name = name.strip_suffix('.').unwrap_or(name);
    let mut found = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default();
        let mut fields = line.split_whitespace();
        let Some(Ok(address)) = fields.next().map(str::parse::<IpAddr>) else {
            continue;
        };
        if fields.any(|n| n.eq_ignore_ascii_case(name)) && !found.contains(&address) {
            found.push(address);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTS: &str = "127.0.0.1\tlocalhost\n\
                         ::1     localhost ip6-localhost\n\
                         # 10.0.0.9 commented\n\
                         192.168.1.10 graphite.lan graphite   # the collector\n\
                         192.168.1.11 Riemann.lan\n\
                         fe80::1%eth0 scoped\n\
                         192.168.1.12 graphite\n";

    #[test]
    fn every_line_naming_the_host_counts() {
        assert_eq!(
            lookup(HOSTS, "graphite"),
            vec![
                IpAddr::from([192, 168, 1, 10]),
                IpAddr::from([192, 168, 1, 12])
            ]
        );
        assert_eq!(
            lookup(HOSTS, "localhost"),
            vec![IpAddr::from([127, 0, 0, 1]), "::1".parse().unwrap()]
        );
    }

    #[test]
    fn names_match_without_case_or_trailing_dot() {
        assert_eq!(
            lookup(HOSTS, "riemann.LAN."),
            vec![IpAddr::from([192, 168, 1, 11])]
        );
    }

    #[test]
    fn comments_and_bad_addresses_are_skipped() {
        assert!(lookup(HOSTS, "commented").is_empty());
        assert!(lookup(HOSTS, "scoped").is_empty());
        assert!(lookup(HOSTS, "192.168.1.10").is_empty());
        assert!(lookup("", "localhost").is_empty());
    }
}
