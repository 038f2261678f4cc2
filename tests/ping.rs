//! The `ping` source against the real kernel: a veth pair from this namespace to one the test
//! makes, pinged over IPv4 and IPv6, with loss injected by nftables and a blackholed address.
//! Raw sockets are tested in this (root) process; datagram sockets by running `pipit once` as
//! user `nobody` inside the namespace, where the test sets `net.ipv4.ping_group_range`.

mod common;

use std::fs;
use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::netns::{VethPair, ip, run};
use common::peers::TempDir;
use common::pipit::{Agent, binary, text};
use common::sources::{Built, of, value};

/// A veth pair: `host` in this namespace with 10.<n>.0.1 and fd00:<n>::1, its peer in namespace
/// `ns` with .2 and ::2; addresses without duplicate detection so they work at once. Removed on
/// drop, with the blackhole routes the test added here.
struct PingNet {
    host: String,
    ns: String,
    v4: [String; 2],
    v6: [String; 2],
    blackholes: Vec<String>,
}

impl PingNet {
    fn new(tag: &str, n: u8) -> PingNet {
        let pid = std::process::id();
        let net = PingNet {
            host: format!("{tag}{pid}a"),
            ns: format!("pipit-{tag}-{pid}"),
            v4: [format!("10.{n}.0.1"), format!("10.{n}.0.2")],
            v6: [format!("fd00:{n}::1"), format!("fd00:{n}::2")],
            blackholes: Vec::new(),
        };
        ip(&["netns", "add", &net.ns]);
        let peer = format!("{tag}{pid}b");
        ip(&[
            "link", "add", &net.host, "type", "veth", "peer", "name", &peer, "netns", &net.ns,
        ]);
        for (ns, dev, i) in [(None, &net.host, 0), (Some(&net.ns), &peer, 1)] {
            let at = |args: &[&str]| match ns {
                Some(ns) => ip(&[&["-n", ns.as_str()], args].concat()),
                None => ip(args),
            };
            at(&["addr", "add", &format!("{}/24", net.v4[i]), "dev", dev]);
            at(&[
                "addr",
                "add",
                &format!("{}/64", net.v6[i]),
                "dev",
                dev,
                "nodad",
            ]);
            at(&["link", "set", dev, "up"]);
            at(&["link", "set", "lo", "up"]);
        }
        net
    }

    /// Runs `nft` inside the namespace with `script` on its standard input.
    fn nft(&self, script: &str) {
        let mut child = VethPair::command(&self.ns, "nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nft runs (tests/install-deps.sh installs nftables)");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "nft: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Routes `prefix` (in this namespace) into a blackhole until drop.
    fn blackhole(&mut self, prefix: &str) {
        ip(&["route", "add", "blackhole", prefix]);
        self.blackholes.push(prefix.to_owned());
    }
}

impl Drop for PingNet {
    fn drop(&mut self) {
        for prefix in &self.blackholes {
            let _ = Command::new("ip")
                .args(["route", "del", "blackhole", prefix])
                .output();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.host])
            .output();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

/// A ping source to `hosts` with `count` requests in a 1 s interval, waiting 300 ms for each.
fn source(hosts: &[&str], count: u32) -> Built {
    let hosts: Vec<String> = hosts.iter().map(|h| format!("\"{h}\"")).collect();
    Built::new(&format!(
        r#"{{"type": "ping", "interval": "1s", "hosts": [{}], "count": {count},
            "reply_timeout": "300ms"}}"#,
        hosts.join(", ")
    ))
}

/// The host segment of a service name, as pipit writes it.
fn segment(host: &str) -> String {
    host.replace('.', "_")
}

#[test]
fn raw_sockets_measure_both_families_without_loss() {
    let net = PingNet::new("pg", 201);
    let (v4, v6) = (net.v4[1].as_str(), net.v6[1].as_str());
    let mut ping = source(&[v4, v6], 4);
    let started = Instant::now();
    let events = ping.events();
    let took = started.elapsed();
    // Four requests 175 ms apart, the last waited for at most 300 ms: within the 1 s interval.
    assert!(took < Duration::from_secs(1), "the round took {took:?}");
    for host in [v4, v6] {
        let m = |metric: &str| value(&events, &format!("ping.{}.{metric}", segment(host)));
        assert_eq!(
            (m("sent"), m("received"), m("loss")),
            (4.0, 4.0, 0.0),
            "{host}"
        );
        let (min, avg, max) = (m("rtt_min"), m("rtt_avg"), m("rtt_max"));
        assert!(
            min > 0.0 && min <= avg && avg <= max,
            "{host}: {min} {avg} {max}"
        );
        assert!(
            max < 0.3,
            "{host}: a reply counted after its timeout: {max}"
        );
        assert!(m("rtt_stddev") >= 0.0 && m("rtt_stddev") <= max - min);
    }
    // Every metric it declares is emitted for each host, and nothing else.
    let mut emitted: Vec<&str> = events.iter().map(|e| e.service.as_str()).collect();
    emitted.sort_unstable();
    let mut declared: Vec<String> = [v4, v6]
        .iter()
        .flat_map(|h| {
            pipit::sources::ping::TYPE
                .metrics
                .iter()
                .map(|m| m.name.replace("<host>", &segment(h)))
        })
        .collect();
    declared.sort_unstable();
    assert_eq!(emitted, declared);
    // The next round numbers its requests on and still matches every reply.
    let again = ping.events();
    assert_eq!(
        value(&again, &format!("ping.{}.received", segment(v4))),
        4.0
    );
}

#[test]
fn injected_loss_is_measured_exactly() {
    let net = PingNet::new("pl", 202);
    // Inside the namespace, every fourth echo request of each family is dropped: a counter per
    // rule, so exactly 2 of every 8 consecutive requests, whatever the phase.
    net.nft(
        "table inet pipit_loss {\n\
         \x20 chain input {\n\
         \x20   type filter hook input priority 0;\n\
         \x20   icmp type echo-request numgen inc mod 4 == 0 counter drop\n\
         \x20   icmpv6 type echo-request numgen inc mod 4 == 0 counter drop\n\
         \x20 }\n\
         }\n",
    );
    let (v4, v6) = (net.v4[1].as_str(), net.v6[1].as_str());
    let mut ping = source(&[v4, v6], 8);
    for _ in 0..2 {
        let events = ping.events();
        for host in [v4, v6] {
            let m = |metric: &str| value(&events, &format!("ping.{}.{metric}", segment(host)));
            assert_eq!((m("sent"), m("received")), (8.0, 6.0), "{host}");
            assert_eq!(m("loss"), 25.0, "{host}");
            assert!(m("rtt_avg") > 0.0);
        }
    }
    // The kernel's own count of what it dropped: 2 of each family's 8, twice.
    let listed = VethPair::command(&net.ns, "nft")
        .args(["list", "table", "inet", "pipit_loss"])
        .output()
        .unwrap();
    let listed = text(&listed.stdout);
    assert_eq!(listed.matches("counter packets 4 ").count(), 2, "{listed}");
}

#[test]
fn a_blackholed_address_loses_everything() {
    let mut net = PingNet::new("pb", 203);
    net.blackhole("10.203.1.0/24");
    net.blackhole("fd00:203:1::/64");
    let reachable = net.v4[1].clone();
    let mut ping = source(&["10.203.1.7", "fd00:203:1::7", &reachable], 3);
    let events = ping.events();
    for host in ["10.203.1.7", "fd00:203:1::7"] {
        let m = |metric: &str| value(&events, &format!("ping.{}.{metric}", segment(host)));
        assert_eq!(
            (m("sent"), m("received"), m("loss")),
            (3.0, 0.0, 100.0),
            "{host}"
        );
        assert!(
            of(&events, &format!("ping.{}.rtt_avg", segment(host))).is_empty(),
            "no times without replies"
        );
    }
    // The other host of the same round is not held up by the lost ones.
    assert_eq!(
        value(&events, &format!("ping.{}.loss", segment(&reachable))),
        0.0
    );
}

/// Runs `pipit once --json` inside `ns` as user `nobody`, with `config`, and returns its output.
fn once_as_nobody(ns: &str, dir: &TempDir, config: &str) -> Output {
    let path = dir.path().join("pipit.json");
    fs::write(&path, config).unwrap();
    VethPair::command(ns, "setpriv")
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            binary(),
            "once",
            "--json",
            "-c",
        ])
        .arg(&path)
        .env("RUST_LOG", "info")
        .output()
        .expect("setpriv runs")
}

#[test]
fn datagram_sockets_serve_an_unprivileged_user_the_range_allows() {
    let net = PingNet::new("pd", 204);
    let dir = TempDir::new("ping-dgram");
    // pipit runs inside the namespace and pings this end of the pair.
    let (v4, v6) = (net.v4[0].as_str(), net.v6[0].as_str());
    let config = format!(
        r#"{{"sources": [{{"type": "ping", "interval": "1s", "hosts": ["{v4}", "{v6}"],
             "count": 4, "reply_timeout": "300ms"}}],
            "outputs": [{{"type": "stdout"}}]}}"#
    );
    // The range is the namespace's own: the default allows no group.
    run(
        "ip",
        &[
            "netns",
            "exec",
            &net.ns,
            "sysctl",
            "-qw",
            "net.ipv4.ping_group_range=1 0",
        ],
    );
    let refused = once_as_nobody(&net.ns, &dir, &config);
    assert_eq!(refused.status.code(), Some(3), "{}", text(&refused.stderr));
    let stderr = text(&refused.stderr);
    assert!(
        stderr.contains("cannot open an ICMP socket") && stderr.contains("ping_group_range"),
        "{stderr}"
    );

    run(
        "ip",
        &[
            "netns",
            "exec",
            &net.ns,
            "sysctl",
            "-qw",
            "net.ipv4.ping_group_range=0 2147483647",
        ],
    );
    let out = once_as_nobody(&net.ns, &dir, &config);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("pinging with unprivileged ICMP datagram sockets"),
        "{stderr}"
    );
    let events: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let m = |host: &str, metric: &str| {
        let service = format!("ping.{}.{metric}", segment(host));
        let found: Vec<f64> = events
            .iter()
            .filter(|e| e["service"] == service.as_str())
            .map(|e| e["metric"].as_f64().unwrap())
            .collect();
        assert_eq!(found.len(), 1, "{service} in {events:?}");
        found[0]
    };
    for host in [v4, v6] {
        assert_eq!((m(host, "sent"), m(host, "received")), (4.0, 4.0), "{host}");
        assert_eq!(m(host, "loss"), 0.0);
        assert!(m(host, "rtt_min") > 0.0 && m(host, "rtt_max") < 0.3);
    }
}

#[test]
fn a_name_is_resolved_from_the_hosts_file() {
    // Every Debian machine's /etc/hosts names 127.0.0.1 localhost.
    let mut ping = Built::new(
        r#"{"type": "ping", "interval": "1s", "hosts": ["localhost"], "count": 2,
            "reply_timeout": "300ms", "family": "ipv4"}"#,
    );
    let events = ping.events();
    assert_eq!(value(&events, "ping.localhost.sent"), 2.0);
    assert_eq!(value(&events, "ping.localhost.received"), 2.0);
}

#[test]
fn the_agent_stops_at_once_in_the_middle_of_a_round() {
    let dir = TempDir::new("ping-stop");
    let config = dir.path().join("pipit.json");
    fs::write(
        &config,
        format!(
            r#"{{"agent": {{"state_dir": "{}"}},
                "sources": [{{"type": "ping", "interval": "20s", "hosts": ["127.0.0.1"]}}],
                "outputs": [{{"type": "stdout"}}]}}"#,
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    let mut agent = Agent::start(&config, "info");
    agent.wait_stderr("the first round", Duration::from_secs(10), |lines| {
        lines
            .iter()
            .any(|l| l.contains("pinging with raw ICMP sockets"))
    });
    let asked = Instant::now();
    agent.signal("TERM");
    let status = agent.wait_exit(Duration::from_secs(10));
    // A round lasts 19 s; the stop waits for none of it (nor for the 5 s shutdown_timeout).
    assert!(status.success(), "{:?}", agent.stderr());
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "stopped after {:?}",
        asked.elapsed()
    );
    assert!(
        !agent
            .stderr()
            .iter()
            .any(|l| l.contains("still collecting")),
        "{:?}",
        agent.stderr()
    );
}

#[test]
fn a_name_that_does_not_resolve_is_left_out_of_the_round() {
    // `.invalid` never resolves (RFC 6761): the hosts file lacks it and DNS refuses it or is
    // silent, within the round's limit.
    let mut ping = Built::new(
        r#"{"type": "ping", "interval": "1s", "hosts": ["nowhere.invalid", "127.0.0.1"],
            "count": 2, "reply_timeout": "300ms"}"#,
    );
    let started = Instant::now();
    let events = ping.events();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(
        events.iter().all(|e| !e.service.contains("nowhere")),
        "{events:?}"
    );
    assert_eq!(value(&events, "ping.127_0_0_1.received"), 2.0);
}
