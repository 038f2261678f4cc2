//! Client networks in CIDR notation (`192.168.1.0/24`, `::1/128`), for the allowlist.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An address block: an address and how many leading bits of it a client must share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    bits: u8,
}

impl Network {
    /// True when `client` is inside the block; an IPv4 client seen as an IPv4-mapped IPv6
    /// address (`::ffff:a.b.c.d`) is compared as IPv4.
    pub fn contains(&self, client: IpAddr) -> bool {
        match (self.addr, client.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(c)) => prefix_equal(&net.octets(), &c.octets(), self.bits),
            (IpAddr::V6(net), IpAddr::V6(c)) => prefix_equal(&net.octets(), &c.octets(), self.bits),
            _ => false,
        }
    }
}

fn prefix_equal(a: &[u8], b: &[u8], bits: u8) -> bool {
    let whole = usize::from(bits / 8);
    let rest = bits % 8;
    a[..whole] == b[..whole] && (rest == 0 || (a[whole] ^ b[whole]) >> (8 - rest) == 0)
}

impl FromStr for Network {
    type Err = String;

    /// `address/bits`, or a bare address for that address alone.
    fn from_str(s: &str) -> Result<Network, String> {
        let (addr, bits) = s.split_once('/').unwrap_or((s, ""));
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| "an IPv4 or IPv6 network such as \"192.168.1.0/24\"".to_owned())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let bits = if bits.is_empty() {
            max
        } else {
            match bits.parse::<u8>() {
                Ok(b) if b <= max => b,
                _ => return Err(format!("a prefix length from 0 to {max} after the /")),
            }
        };
        Ok(Network { addr, bits })
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.bits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn blocks_hold_the_addresses_sharing_their_prefix() {
        let lan: Network = "192.168.1.0/24".parse().unwrap();
        assert!(lan.contains(ip("192.168.1.77")));
        assert!(lan.contains(ip("::ffff:192.168.1.5")));
        assert!(!lan.contains(ip("192.168.2.1")));
        assert!(!lan.contains(ip("::1")));
        let odd: Network = "10.0.0.0/9".parse().unwrap();
        assert!(odd.contains(ip("10.127.255.255")));
        assert!(!odd.contains(ip("10.128.0.0")));
        let all: Network = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        let one: Network = "::1".parse().unwrap();
        assert_eq!(one.to_string(), "::1/128");
        assert!(one.contains(ip("::1")));
        assert!("10.0.0.0/33".parse::<Network>().is_err());
        assert!("lan".parse::<Network>().is_err());
    }
}
