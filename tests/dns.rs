//! pipit's stub resolver against a real DNS server: dnsmasq on 127.0.0.1 and a free port,
//! answering from tests/fixtures/dns/hosts (install it with tests/install-deps.sh).

mod common;

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::peers::{free_udp_port, wait_until};
use pipit::dns::Resolver;
use pipit::dns::conf::Conf;

const DNSMASQ: &str = "/usr/sbin/dnsmasq";
const LIMIT: Duration = Duration::from_secs(5);

/// dnsmasq answering for `*.test` only: the fixture's names, `alias.test` as a CNAME of
/// `graphite.test`, no such name for the rest, nothing forwarded.
struct Dnsmasq {
    child: Child,
    addr: SocketAddr,
}

impl Dnsmasq {
    /// Starts dnsmasq on a free port; when it exits at once (another test took the port between
    /// its choice and dnsmasq's bind), starts it again on another.
    fn start() -> Dnsmasq {
        assert!(
            Path::new(DNSMASQ).exists(),
            "{DNSMASQ} missing: run tests/install-deps.sh"
        );
        for _ in 0..5 {
            let mut server = Dnsmasq::spawn(free_udp_port());
            let resolver = server.resolver("");
            let answered = wait_until("dnsmasq to answer or exit", LIMIT, || {
                if resolver
                    .addresses("graphite.test", Duration::from_millis(200))
                    .is_ok()
                {
                    return Some(true);
                }
                matches!(server.child.try_wait(), Ok(Some(_))).then_some(false)
            });
            if answered {
                return server;
            }
        }
        panic!("dnsmasq exited at start five times: is another dnsmasq in the way?");
    }

    /// dnsmasq started on `port`, not yet answering.
    fn spawn(port: u16) -> Dnsmasq {
        let hosts = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/dns/hosts");
        let child = Command::new(DNSMASQ)
            .args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--pid-file=",
                "--user=root",
                "--local=/test/",
                "--cname=alias.test,graphite.test",
            ])
            .arg(format!("--port={port}"))
            .arg(format!("--addn-hosts={hosts}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {DNSMASQ}: {e}"));
        Dnsmasq {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    /// A resolver asking only this server, with resolv.conf `extra` lines.
    fn resolver(&self, extra: &str) -> Resolver {
        Resolver {
            conf: Conf {
                servers: vec![self.addr],
                ..Conf::parse(&format!("options timeout:1\n{extra}"))
            },
            hosts: String::new(),
        }
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn names_resolve_with_ipv4_before_ipv6() {
    let dns = Dnsmasq::start();
    let resolver = dns.resolver("");
    assert_eq!(
        resolver.addresses("graphite.test", LIMIT).unwrap(),
        vec![ip("192.0.2.10")]
    );
    assert_eq!(
        resolver.addresses("DUAL.test.", LIMIT).unwrap(),
        vec![ip("192.0.2.11"), ip("2001:db8::11")]
    );
}

#[test]
fn a_cname_leads_to_its_target_addresses() {
    let dns = Dnsmasq::start();
    assert_eq!(
        dns.resolver("").addresses("alias.test", LIMIT).unwrap(),
        vec![ip("192.0.2.10")]
    );
}

#[test]
fn search_domains_follow_ndots() {
    let dns = Dnsmasq::start();
    let resolver = dns.resolver("search test");
    assert_eq!(
        resolver.addresses("graphite", LIMIT).unwrap(),
        vec![ip("192.0.2.10")]
    );
    // One dot meets ndots 1: tried alone first (no such name), then in the search domain.
    assert_eq!(
        resolver.addresses("db.site", LIMIT).unwrap(),
        vec![ip("192.0.2.12")]
    );
}

#[test]
fn a_refusing_server_is_an_error_not_a_missing_name() {
    let dns = Dnsmasq::start();
    // Outside `test` this dnsmasq forwards nowhere and refuses.
    let e = dns.resolver("").addresses("graphite", LIMIT).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::Other, "{e}");
    assert!(e.to_string().contains("refused"), "{e}");
}

#[test]
fn a_name_that_does_not_exist_is_not_found_at_once() {
    let dns = Dnsmasq::start();
    let started = Instant::now();
    let e = dns
        .resolver("search test")
        .addresses("missing.test", LIMIT)
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("missing.test"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "no timeout waited"
    );
}

#[test]
fn a_silent_first_server_is_passed_over_after_its_timeout() {
    let dns = Dnsmasq::start();
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut resolver = dns.resolver("");
    resolver.conf.servers = vec![silent.local_addr().unwrap(), dns.addr];
    let started = Instant::now();
    assert_eq!(
        resolver.addresses("graphite.test", LIMIT).unwrap(),
        vec![ip("192.0.2.10")]
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1),
        "waited out the first: {took:?}"
    );
}
