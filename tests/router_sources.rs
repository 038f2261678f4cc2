//! Router sources against the real thing, in network and mount namespaces each test makes for
//! itself.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, UNIX_EPOCH};

use common::netns::{VethPair, ip, run};
use common::peers::{TempDir, wait_until};
use common::pipit::Agent;
use common::sources::{Built, value};
use pipit::Event;
use pipit::netlink::nftables::{Counter, Nftables};
use pipit::netlink::qdisc::Qdiscs;

/// Seconds between two collections as a rate divides by them: pipit keeps a sample's time to the
/// millisecond, so a rate times this interval gives the counters' delta back exactly.
fn rate_interval(first: &Event, second: &Event) -> f64 {
    let millis = |e: &Event| e.time.duration_since(UNIX_EPOCH).unwrap().as_millis() as f64;
    (millis(second) - millis(first)) / 1000.0
}

/// A process killed and reaped on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Asks for a lease on `iface` in namespace `ns` with busybox's DHCP client, as the MAC address
/// `mac`, running `script` on its events.
fn udhcpc(ns: &str, iface: &str, mac: &str, script: &Path) {
    ip(&["-n", ns, "link", "set", iface, "down"]);
    ip(&["-n", ns, "link", "set", iface, "address", mac]);
    ip(&["-n", ns, "link", "set", iface, "up"]);
    // -q: quit once leased; -n: quit if none after -t 5 tries -T 1 s apart, so it is bounded.
    let mut cmd = VethPair::command(ns, "busybox");
    cmd.args([
        "udhcpc", "-f", "-q", "-n", "-t", "5", "-T", "1", "-i", iface, "-s",
    ]);
    cmd.arg(script);
    let out = cmd
        .output()
        .expect("busybox runs (tests/install-deps.sh installs it)");
    assert!(
        out.status.success(),
        "udhcpc as {mac} got no lease: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn dhcp_leases_counts_what_dnsmasq_hands_out() {
    let dir = TempDir::new("dhcp");
    let leases = dir.path().join("dnsmasq.leases");
    // The client puts its address on the interface once leased, as a router's client would.
    let script = dir.path().join("udhcpc.sh");
    fs::write(
        &script,
        "#!/bin/sh\nip addr flush dev \"$interface\"\n\
         [ \"$1\" = bound ] && ip addr add \"$ip/$mask\" dev \"$interface\"\nexit 0\n",
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let net = VethPair::new("dhcp", "10.199.0.1/24", "");
    let dnsmasq = Killed(
        VethPair::command(&net.a, "/usr/sbin/dnsmasq")
            .args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--port=0",
                "--user=root",
                "--no-ping",
                "--bind-interfaces",
                &format!("--interface={}", net.a_if),
                "--dhcp-range=10.199.0.50,10.199.0.150,1h",
                &format!("--dhcp-leasefile={}", leases.display()),
                &format!("--pid-file={}", dir.path().join("pid").display()),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq starts"),
    );
    wait_until("dnsmasq's lease file", Duration::from_secs(10), || {
        leases.exists().then_some(())
    });
    let mut source = Built::new(&format!(
        r#"{{"type": "dhcp_leases", "dnsmasq_file": "{}", "odhcpd_file": "",
            "networks": {{"test": "10.199.0.0/24", "other": "10.200.0.0/24"}}}}"#,
        leases.display()
    ));
    let mut count = |service: &str| value(&source.events(), service);
    assert_eq!(count("dhcp_leases.total"), 0.0, "no client yet");

    for n in 1..=3 {
        udhcpc(&net.b, &net.b_if, &format!("02:00:00:00:00:0{n}"), &script);
    }
    wait_until("three leases counted", Duration::from_secs(10), || {
        (count("dhcp_leases.total") == 3.0).then_some(())
    });
    assert_eq!(count("dhcp_leases.ipv4"), 3.0);
    assert_eq!(count("dhcp_leases.ipv6"), 0.0);
    assert_eq!(count("dhcp_leases.network.test"), 3.0);
    assert_eq!(count("dhcp_leases.network.other"), 0.0);

    // A client that asks again renews its lease and a new one takes a fourth: four, not five
    // (dnsmasq answers in order, so the fourth lease is written after the renewal).
    udhcpc(&net.b, &net.b_if, "02:00:00:00:00:02", &script);
    udhcpc(&net.b, &net.b_if, "02:00:00:00:00:04", &script);
    wait_until("the fourth lease counted", Duration::from_secs(10), || {
        (count("dhcp_leases.total") == 4.0).then_some(())
    });
    let lines = fs::read_to_string(&leases).unwrap().lines().count();
    assert_eq!(lines, 4, "dnsmasq's own file");
    assert_eq!(count("dhcp_leases.network.test"), 4.0);
    drop(dnsmasq);
}

/// A veth pair made by the test: `host` in this namespace (where the source under test looks),
/// its peer in a namespace of its own. Removed on drop.
struct HostVeth {
    host: String,
    peer: String,
    ns: String,
}

impl HostVeth {
    fn new(tag: &str) -> HostVeth {
        let pid = std::process::id();
        let veth = HostVeth {
            host: format!("{tag}{pid}a"),
            peer: format!("{tag}{pid}b"),
            ns: format!("pipit-{tag}-{pid}"),
        };
        ip(&["netns", "add", &veth.ns]);
        ip(&[
            "link", "add", &veth.host, "type", "veth", "peer", "name", &veth.peer, "netns",
            &veth.ns,
        ]);
        // No IPv6 on it: nothing but the test's own frames goes through its qdisc.
        run(
            "sysctl",
            &[
                "-qw",
                &format!("net.ipv6.conf.{}.disable_ipv6=1", veth.host),
            ],
        );
        ip(&["link", "set", &veth.host, "up"]);
        ip(&["-n", &veth.ns, "link", "set", &veth.peer, "up"]);
        veth
    }
}

impl Drop for HostVeth {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host])
            .output();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

/// Sends `count` Ethernet frames of 1000 bytes, of the local experimental type 0x88b5, out of
/// `dev` through its qdisc (a raw packet socket, so no address is needed), from namespace `ns`
/// or this one; frames the qdisc refuses are its drops.
fn send_frames(ns: Option<&str>, dev: &str, count: u32) {
    let script = "import socket, sys\n\
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n\
        s.bind((sys.argv[1], 0))\n\
        frame = b'\\xff' * 6 + b'\\x02\\x00\\x00\\x00\\x00\\x01\\x88\\xb5' + bytes(986)\n\
        for _ in range(int(sys.argv[2])):\n\
        \x20   try:\n\
        \x20       s.send(frame)\n\
        \x20   except OSError:\n\
        \x20       pass\n";
    let count = count.to_string();
    match ns {
        Some(ns) => run(
            "ip",
            &["netns", "exec", ns, "python3", "-c", script, dev, &count],
        ),
        None => run("python3", &["-c", script, dev, &count]),
    };
}

/// The counters of every qdisc on `dev` as `tc -s -j` decodes them, keyed by kind, in the order
/// bytes, packets, drops, overlimits, requeues, backlog, qlen.
fn tc_counters(dev: &str) -> BTreeMap<String, [u64; 7]> {
    let out = run("tc", &["-s", "-j", "qdisc", "show", "dev", dev]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("tc prints JSON");
    let field =
        |q: &serde_json::Value, k: &str| q[k].as_u64().unwrap_or_else(|| panic!("{k} in {q}"));
    list.as_array()
        .expect("a list of qdiscs")
        .iter()
        .map(|q| {
            let kind = q["kind"].as_str().unwrap().to_owned();
            let keys = [
                "bytes",
                "packets",
                "drops",
                "overlimits",
                "requeues",
                "backlog",
                "qlen",
            ];
            (kind, keys.map(|k| field(q, k)))
        })
        .collect()
}

/// The same counters as pipit's rtnetlink dump reads them.
fn pipit_counters(dev: &str) -> BTreeMap<String, [u64; 7]> {
    let index: u32 = fs::read_to_string(format!("/sys/class/net/{dev}/ifindex"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut found = BTreeMap::new();
    Qdiscs::open()
        .unwrap()
        .each(&mut |q| {
            if q.ifindex == index {
                let c = [
                    q.bytes,
                    q.packets,
                    q.drops.into(),
                    q.overlimits.into(),
                    q.requeues.into(),
                    q.backlog.into(),
                    q.qlen.into(),
                ];
                found.insert(q.kind, c);
            }
        })
        .unwrap();
    found
}

#[test]
fn qdisc_counters_match_tc_and_become_rates() {
    let veth = HostVeth::new("qd");
    let dev = veth.host.as_str();
    // htb shapes to 1 Mbit/s into a pfifo of 5 packets, so a burst is queued, delayed and dropped.
    run(
        "tc",
        &[
            "qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "10",
        ],
    );
    run(
        "tc",
        &[
            "class", "add", "dev", dev, "parent", "1:", "classid", "1:10", "htb", "rate", "1mbit",
            "burst", "1500",
        ],
    );
    run(
        "tc",
        &[
            "qdisc", "add", "dev", dev, "parent", "1:10", "handle", "10:", "pfifo", "limit", "5",
        ],
    );
    let mut source = Built::new(&format!(r#"{{"type": "qdisc", "include": ["{dev}"]}}"#));
    let first = source.events();
    let before = pipit_counters(dev);
    assert_eq!(before.keys().collect::<Vec<_>>(), ["htb", "pfifo"]);

    send_frames(None, dev, 40);
    // Once the queue has drained and two readings of tc agree, pipit's reading between them
    // must be the same, to the byte.
    let after = wait_until(
        "the same counters from tc and pipit",
        Duration::from_secs(10),
        || {
            let tc = tc_counters(dev);
            let pipit = pipit_counters(dev);
            (tc["pfifo"][6] == 0 && tc == tc_counters(dev)).then(|| {
                assert_eq!(pipit, tc, "pipit's dump against tc's");
                pipit
            })
        },
    );
    let delta = |kind: &str, i: usize| after[kind][i] - before[kind][i];
    assert_eq!(
        delta("pfifo", 1) + delta("pfifo", 2),
        40,
        "every frame sent or dropped"
    );
    assert!(
        delta("pfifo", 2) > 0,
        "a burst of 40 overflows a pfifo of 5"
    );
    assert!(delta("htb", 3) > 0, "the shaper held frames back");

    let second = source.events();
    let elapsed = rate_interval(&first[0], &second[0]);
    let rate = |metric: &str| value(&second, &format!("qdisc.{dev}.pfifo-10.{metric}"));
    for (metric, i) in [("bytes", 0), ("packets", 1), ("drops", 2)] {
        let counted = rate(metric) * elapsed;
        let exact = delta("pfifo", i) as f64;
        assert!(
            (counted - exact).abs() <= 0.001,
            "{metric}: {counted} from the rate, {exact} from the counters"
        );
    }
    assert_eq!(value(&second, &format!("qdisc.{dev}.htb-1.qlen")), 0.0);
}

/// An nftables table of this namespace, made by the test from a ruleset and deleted on drop.
struct NftTable {
    family: &'static str,
    name: String,
}

impl NftTable {
    /// Loads `ruleset`, which must make the table `family name` and nothing else.
    fn new(family: &'static str, name: &str, ruleset: &str) -> NftTable {
        let dir = TempDir::new("nft");
        let file = dir.path().join("ruleset.nft");
        fs::write(&file, ruleset).unwrap();
        let table = NftTable {
            family,
            name: name.to_owned(),
        };
        run("nft", &["-f", file.to_str().unwrap()]);
        table
    }

    /// The table listed by `nft -j`: each counter object by name and each rule with a counter
    /// by handle, with the comment, bytes and packets `nft` decodes (the comment empty for none).
    fn counters(&self) -> BTreeMap<String, (String, u64, u64)> {
        let out = run("nft", &["-j", "list", "table", self.family, &self.name]);
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("nft prints JSON");
        let mut found = BTreeMap::new();
        for item in list["nftables"].as_array().expect("a list") {
            if let Some(c) = item.get("counter") {
                let key = format!("counter {}", c["name"].as_str().unwrap());
                let counts = (c["bytes"].as_u64().unwrap(), c["packets"].as_u64().unwrap());
                found.insert(key, (String::new(), counts.0, counts.1));
            }
            let Some(rule) = item.get("rule") else {
                continue;
            };
            let counter = rule["expr"]
                .as_array()
                .unwrap()
                .iter()
                .find_map(|e| e.get("counter").filter(|c| c.get("bytes").is_some()));
            if let Some(c) = counter {
                found.insert(
                    format!("rule {}", rule["handle"]),
                    (
                        rule["comment"].as_str().unwrap_or_default().to_owned(),
                        c["bytes"].as_u64().unwrap(),
                        c["packets"].as_u64().unwrap(),
                    ),
                );
            }
        }
        found
    }

    /// The same counters as pipit's nfnetlink dump reads them.
    fn pipit_counters(&self) -> BTreeMap<String, (String, u64, u64)> {
        let mut found = BTreeMap::new();
        Nftables::open()
            .expect("an nfnetlink socket")
            .each(true, &mut |c: Counter| {
                if c.table != self.name {
                    return;
                }
                let (key, comment) = match c.chain {
                    Some(_) => (format!("rule {}", c.handle), c.name.unwrap_or_default()),
                    None => (format!("counter {}", c.name.unwrap()), String::new()),
                };
                found.insert(key, (comment, c.bytes, c.packets));
            })
            .expect("root may dump nf_tables");
        found
    }
}

impl Drop for NftTable {
    fn drop(&mut self) {
        let _ = Command::new("nft")
            .args(["delete", "table", self.family, &self.name])
            .output();
    }
}

#[test]
fn nftables_counters_match_nft_and_become_rates() {
    let veth = HostVeth::new("nf");
    let dev = veth.host.as_str();
    let table = format!("pipit_{}", std::process::id());
    // Frames from the namespace arrive at `dev`'s ingress hook: a named counter, two rules sharing
    // a comment (summed), and one rule without a comment count them.
    let nft = NftTable::new(
        "netdev",
        &table,
        &format!(
            "table netdev {table} {{
                counter frames {{ comment \"frames from the namespace\" }}
                chain ingress {{
                    type filter hook ingress device \"{dev}\" priority 0; policy accept;
                    ether type 0x88b5 counter name \"frames\"
                    ether type 0x88b5 counter comment \"experimental frames\"
                    ether type 0x88b5 counter comment \"experimental frames\"
                    ether type 0x88b5 counter
                }}
            }}"
        ),
    );
    let mut source = Built::new(&format!(
        r#"{{"type": "nftables", "families": ["netdev"], "tables": ["{table}"],
            "uncommented_rules": true}}"#
    ));
    let first = source.events();
    assert_eq!(value(&first, "nftables.left_out"), 0.0);
    assert_eq!(first.len(), 1, "one sample gives no rate: {first:?}");
    let before = nft.counters();
    assert_eq!(before.len(), 4, "{before:?}");
    assert_eq!(nft.pipit_counters(), before, "pipit's dump against nft's");

    send_frames(Some(&veth.ns), &veth.peer, 40);
    let after = wait_until(
        "nft to count the 40 frames",
        Duration::from_secs(10),
        || {
            let now = nft.counters();
            (now["counter frames"].2 == before["counter frames"].2 + 40).then_some(now)
        },
    );
    assert_eq!(nft.pipit_counters(), after, "pipit's dump against nft's");
    for (key, (_, bytes, packets)) in &after {
        assert_eq!(packets - before[key].2, 40, "{key}: every frame counted");
        assert_eq!(
            bytes - before[key].1,
            40 * 986,
            "{key}: frames without their MAC header"
        );
    }

    let second = source.events();
    let elapsed = rate_interval(&first[0], &second[0]);
    let counted =
        |stem: &str, metric: &str| value(&second, &format!("nftables.{stem}.{metric}")) * elapsed;
    let rule = format!("rule.netdev.{table}.ingress");
    let handle = after
        .iter()
        .find(|(key, (comment, ..))| key.starts_with("rule ") && comment.is_empty())
        .map(|(key, _)| key.trim_start_matches("rule ").to_owned())
        .unwrap();
    for (stem, frames) in [
        (format!("named.netdev.{table}.frames"), 40.0),
        (format!("{rule}.experimental_frames"), 80.0),
        (format!("{rule}.handle-{handle}"), 40.0),
    ] {
        for (metric, exact) in [("packets", frames), ("bytes", frames * 986.0)] {
            let got = counted(&stem, metric);
            assert!(
                (got - exact).abs() <= exact * 1e-9,
                "{stem}.{metric}: {got} from the rate, {exact} sent"
            );
        }
    }
    assert_eq!(value(&second, "nftables.left_out"), 0.0);
    assert_eq!(second.len(), 7, "{second:?}");

    // Without rules, only the named counter is asked for and reported.
    let mut counters_only = Built::new(&format!(
        r#"{{"type": "nftables", "tables": ["{table}"], "rules": false}}"#
    ));
    // A rate needs a second sample at least a millisecond after the first.
    let services = wait_until("a second sample", Duration::from_secs(5), || {
        let events = counters_only.events();
        (events.len() > 1).then(|| events.into_iter().map(|e| e.service).collect::<Vec<_>>())
    });
    let counter = format!("nftables.named.netdev.{table}.frames");
    assert_eq!(
        services,
        [
            format!("{counter}.bytes"),
            format!("{counter}.packets"),
            "nftables.left_out".into()
        ]
    );
}

#[test]
fn nftables_without_cap_net_admin_says_what_to_do() {
    let dir = TempDir::new("nft-user");
    let config = dir.path().join("pipit.json");
    fs::write(
        &config,
        r#"{"sources": [{"type": "nftables"}], "outputs": [{"type": "stdout"}]}"#,
    )
    .unwrap();
    for path in [dir.path(), config.as_path()] {
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out = Command::new("runuser")
        .args(["-u", "nobody", "--", common::pipit::binary(), "once", "-c"])
        .arg(&config)
        .output()
        .expect("runuser runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "a source failed: {stderr}");
    assert!(
        stderr.contains("only a process with CAP_NET_ADMIN")
            && stderr.contains("option user 'root'"),
        "{stderr}"
    );
}

/// A network namespace of the test's own, deleted on drop.
struct Namespace(String);

impl Namespace {
    fn new(tag: &str) -> Namespace {
        let name = format!("pipit-{tag}-{}", std::process::id());
        ip(&["netns", "add", &name]);
        Namespace(name)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

#[test]
fn an_nftables_dump_taken_while_the_ruleset_changes_is_refused_not_reported() {
    // In a namespace of its own: its ruleset's changes interrupt only its own dumps.
    let ns = Namespace::new("nft-intr");
    let dir = TempDir::new("nft-intr");
    // 3,000 commented rules: a dump of many datagrams, long enough to be overtaken by a change.
    let mut ruleset = String::from("table inet pipit_intr {\n chain c {\n");
    for i in 0..3000 {
        ruleset += &format!("  tcp dport {} counter comment \"rule {i}\"\n", 1000 + i);
    }
    ruleset += " }\n}\n";
    let file = dir.path().join("ruleset.nft");
    fs::write(&file, ruleset).unwrap();
    run(
        "ip",
        &["netns", "exec", &ns.0, "nft", "-f", file.to_str().unwrap()],
    );
    // Every change of the ruleset, even of an unrelated counter, moves its generation on. The
    // pauses between changes leave room for whole dumps too, however slow a loaded machine
    // makes the dump against the changes.
    let _changes = Killed(
        VethPair::command(&ns.0, "sh")
            .args([
                "-c",
                "while :; do nft add counter inet pipit_intr flip; \
                 nft delete counter inet pipit_intr flip; sleep 0.02; done",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sh runs"),
    );
    let config = dir.path().join("pipit.json");
    fs::write(
        &config,
        r#"{"sources": [{"type": "nftables", "max_counters": 100000}],
            "outputs": [{"type": "stdout"}]}"#,
    )
    .unwrap();
    let (mut whole, mut refused) = (0, 0);
    wait_until(
        "a dump overtaken by a change, and a whole one",
        Duration::from_secs(60),
        || {
            let out = VethPair::command(&ns.0, common::pipit::binary())
                .args(["once", "-c"])
                .arg(&config)
                .output()
                .expect("pipit runs");
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            let rules = stdout
                .lines()
                .filter(|l| l.contains(".nftables.rule.inet.pipit_intr.c.rule_"))
                .count();
            if stderr.contains("changed during the dump") {
                assert_eq!(out.status.code(), Some(3), "a source failed: {stderr}");
                assert_eq!(rules, 0, "nothing of a refused dump is reported: {stdout}");
                refused += 1;
            } else {
                assert!(out.status.success(), "{stderr}");
                // Every rule once, none missed or repeated: bytes and packets of each.
                assert_eq!(rules, 2 * 3000, "{stdout}");
                whole += 1;
            }
            (refused > 0 && whole > 0).then_some(())
        },
    );
}

#[test]
fn df_reports_a_file_system_mounted_while_it_runs_and_forgets_one_unmounted() {
    let dir = TempDir::new("df-mounts");
    let point = dir.path().join("m");
    fs::create_dir(&point).unwrap();
    let point = point.to_str().unwrap().to_owned();
    let config = dir.path().join("pipit.json");
    fs::write(
        &config,
        format!(
            r#"{{"agent": {{"hostname": "h", "state_dir": "{dir}"}},
                "control": {{"enabled": false}},
                "sources": [{{"type": "df", "interval": "100ms", "include": ["{point}"]}},
                            {{"type": "uptime", "interval": "100ms"}}],
                "outputs": [{{"type": "stdout", "batch_timeout": "0s"}}]}}"#,
            dir = dir.path().display()
        ),
    )
    .unwrap();
    // In a mount namespace of its own: what the test mounts there is seen by nothing else, and
    // goes with pipit.
    let agent = Agent::start_through(
        &["unshare", "--mount", "--propagation", "private"],
        &config,
        "info",
    );
    let pid = agent.pid().to_string();
    let deadline = Duration::from_secs(20);
    let rounds = |lines: &[String]| lines.iter().filter(|l| l.starts_with("h.uptime.")).count();
    let reported = |lines: &[String]| lines.iter().filter(|l| l.starts_with("h.df.")).count();
    let before = agent.wait_stdout("two collections", deadline, |l| rounds(l) >= 2);
    assert_eq!(reported(&before), 0, "nothing is mounted there yet");
    // The table was read at the first collection; a mount now must make pipit read it again.
    let nsenter = ["--target", pid.as_str(), "--mount"];
    run(
        "nsenter",
        &[
            &nsenter[..],
            &["mount", "-t", "tmpfs", "-o", "size=64k", "pipit-df", &point],
        ]
        .concat(),
    );
    agent.wait_stdout("df to report the new mount", deadline, |l| {
        l.iter()
            .any(|l| l.starts_with("h.df.") && l.contains(".free "))
    });
    run("nsenter", &[&nsenter[..], &["umount", &point]].concat());
    // A collection that read the table before the unmount may still report it, however late a
    // loaded machine delivers it; then df goes quiet: five collections of the clock in a row
    // with no df line after them. A df that never read the table again would never go quiet.
    agent.wait_stdout(
        "df to stop reporting the unmounted file system",
        deadline,
        |l| {
            let last_df = l.iter().rposition(|l| l.starts_with("h.df."));
            last_df.is_some_and(|at| rounds(&l[at..]) >= 5)
        },
    );
}
