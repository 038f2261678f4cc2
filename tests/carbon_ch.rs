//! Consistent-hash placement equals the relays' own:
//! - `carbon_ch` (Python mode) against Debian graphite-carbon's router for 10,000 metric names
//!   over several rings, with and without instances, replication 1 and 2;
//! - `carbon_ch`, `fnv1a_ch` and `jump_fnv1a_ch` (carbon-c-relay mode) against a running
//!   carbon-c-relay: random names (from Unicode services, with and without tags) sent through it
//!   to counting backends, and where each landed compared with where pipit places it;
//! - `carbon_ch` (Python mode) against a running Python carbon-relay in the same way, with
//!   instance names Python's repr escapes, diverse replicas on and off, and tags normalised.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::peers::{CarbonCRelay, CarbonRelay, LineSink, wait_until};
use common::random::Random;
use pipit::Event;
use pipit::delivery::carbon_ch::{Ring, RingHash};
use pipit::outputs::destination::Destination;
use pipit::outputs::graphite::path::{NameMode, Naming};

fn metric_names(n: usize) -> Vec<String> {
    // Shapes real trees have: hosts, sources, instances, unicode, odd characters.
    (0..n)
        .map(|i| match i % 5 {
            0 => format!("servers.host{}.cpu.total.user", i),
            1 => format!("routers.gw-{}.interface.eth0_{}.rx_bytes", i % 97, i),
            2 => format!("app.req.{}.latency_p99", i * 7919),
            3 => format!("ünïcode.{}.température", i),
            _ => format!("a.b-c_d:{}.e@f", i),
        })
        .collect()
}

/// Carbon's placement of every metric, as "host:port:instance" lists.
fn carbon_placement(
    destinations: &[&str],
    replication: usize,
    diverse: bool,
    metrics: &[String],
) -> Vec<Vec<String>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/carbon_ch_reference.py");
    let request = serde_json::json!({
        "destinations": destinations, "replication": replication, "diverse": diverse, "metrics": metrics,
    });
    let mut child = Command::new("/usr/bin/python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect(
            "Debian's /usr/bin/python3 with graphite-carbon (tests/install-deps.sh installs it)",
        );
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the carbon reference failed");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn pipit_placement(
    destinations: &[&str],
    replication: usize,
    diverse: bool,
    metrics: &[String],
) -> Vec<Vec<String>> {
    let parsed: Vec<Destination> = destinations
        .iter()
        .map(|d| Destination::parse(d).unwrap())
        .collect();
    let ring = Ring::new(RingHash::CarbonRelay, &parsed);
    metrics
        .iter()
        .map(|m| {
            ring.place(m, replication, diverse)
                .into_iter()
                .map(|i| {
                    let d = &parsed[i];
                    format!(
                        "{}:{}:{}",
                        d.node.host,
                        d.port,
                        d.node.instance.as_deref().unwrap_or("")
                    )
                })
                .collect()
        })
        .collect()
}

#[test]
fn placement_equals_carbon_relays_own() {
    let metrics = metric_names(10_000);
    let rings: &[&[&str]] = &[
        &["10.0.0.1:2004"],
        &["10.0.0.1:2004", "10.0.0.2:2004"],
        &[
            "10.0.0.1:2004",
            "10.0.0.2:2004",
            "10.0.0.3:2004",
            "10.0.0.4:2004",
            "10.0.0.5:2004",
        ],
        &["127.0.0.1:2104:a", "127.0.0.1:2204:b", "127.0.0.1:2304:c"],
        &[
            "cache-1.example:2004:a",
            "cache-1.example:2104:b",
            "cache-2.example:2004:a",
            "cache-2.example:2104:b",
        ],
        &["[::1]:2004:x", "10.1.1.1:2004", "it's.odd:2004:q\"z"],
    ];
    let mut compared = 0;
    for ring in rings {
        for replication in [1, 2] {
            if replication > ring.len() {
                continue;
            }
            for diverse in [true, false] {
                let expected = carbon_placement(ring, replication, diverse, &metrics);
                let actual = pipit_placement(ring, replication, diverse, &metrics);
                assert_eq!(expected.len(), metrics.len());
                for (i, (e, a)) in expected.iter().zip(&actual).enumerate() {
                    assert_eq!(
                        a, e,
                        "ring {ring:?}, R={replication}, diverse={diverse}, metric {:?}",
                        metrics[i]
                    );
                }
                compared += metrics.len();
            }
        }
    }
    assert_eq!(compared, 10_000 * 22);
}

/// Sends one datapoint of each of `names` to a relay's line port, and waits until `sinks` have
/// received `copies` lines in all.
fn send_through(port: u16, names: &[&str], sinks: &[&LineSink], copies: usize) {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let lines: String = names
        .iter()
        .map(|n| format!("{n} 1 1700000000\n"))
        .collect();
    conn.write_all(lines.as_bytes()).unwrap();
    drop(conn);
    wait_until(
        "the relay to pass every line on",
        Duration::from_secs(60),
        || {
            let got: usize = sinks.iter().map(|s| s.lines().len()).sum();
            (got >= copies).then_some(())
        },
    );
}

/// Per name, the indexes of the sinks that received it; a line of any other name fails the test
/// (a relay that renamed a metric).
fn landed<'a>(
    names: impl Iterator<Item = &'a str>,
    sinks: &[LineSink],
) -> BTreeMap<&'a str, BTreeSet<usize>> {
    let mut landed: BTreeMap<&str, BTreeSet<usize>> =
        names.map(|name| (name, BTreeSet::new())).collect();
    for (member, sink) in sinks.iter().enumerate() {
        for line in sink.lines() {
            let name = line.split(' ').next().unwrap();
            landed
                .get_mut(name)
                .unwrap_or_else(|| panic!("the relay sent a name pipit did not: {line:?}"))
                .insert(member);
        }
    }
    landed
}

/// The cases this file draws from the shared generator.
impl Random {
    /// Text of 1 to 12 characters: ASCII, Latin, CJK, emoji, and the characters Python escapes.
    fn text(&mut self) -> String {
        const POOL: &[char] = &[
            'a', 'b', 'z', 'Q', '0', '7', '-', '_', ':', '#', '+', '@', '~', '%', '/', ' ', 'é',
            'ü', 'ß', '°', '中', '文', '😀', '\u{a0}', '\u{85}', '\u{200b}', '\u{2028}',
        ];
        (0..1 + self.below(12))
            .map(|_| POOL[self.below(POOL.len())])
            .collect()
    }
}

/// A metric name as pipit's `strict` naming writes it for a random Unicode service, with tags
/// (whose values carbon-c-relay leaves as they are) on every other name.
fn random_name(random: &mut Random, tagged: bool) -> String {
    let service: Vec<String> = (0..1 + random.below(4)).map(|_| random.text()).collect();
    let naming = Naming {
        mode: NameMode::Strict,
        ..Naming::default()
    };
    let mut name = naming.path(&Event::new(service.join("."), random.text()));
    if tagged {
        let value: String = random
            .text()
            .chars()
            .filter(|c| *c != ' ' && *c != ';')
            .collect();
        name.push_str(&format!(";dc=eu{};zone=x{}", random.below(9), value));
    }
    name
}

/// A name sent through carbon-c-relay: the name, the hash (config name and pipit's), replication.
type Placed = (String, &'static str, RingHash, usize);

const C_RELAY_HASHES: [(&str, RingHash); 3] = [
    ("carbon_ch", RingHash::CarbonCRelay),
    ("fnv1a_ch", RingHash::Fnv1a),
    ("jump_fnv1a_ch", RingHash::JumpFnv1a),
];

/// One ring: per member, the last byte of its 127.0.0.x address and its instance.
type Members = Vec<(u8, Option<String>)>;

fn rings() -> Vec<Members> {
    let named = |n: usize, host: fn(usize) -> u8, instance: fn(usize) -> Option<String>| {
        (0..n).map(|i| (host(i), instance(i))).collect::<Members>()
    };
    vec![
        // The example: one host, instances a to d.
        named(4, |_| 1, |i| Some(((b'a' + i as u8) as char).to_string())),
        named(1, |_| 1, |_| None),
        named(2, |i| 1 + i as u8, |_| None),
        named(3, |i| 1 + i as u8, |i| Some(format!("{}", 3 - i))),
        named(5, |i| 1 + i as u8, |_| None),
        named(8, |i| 1 + (i / 2) as u8, |i| Some(format!("{}", i * 5))),
        named(
            13,
            |i| 1 + i as u8,
            |i| (i % 3 == 0).then(|| format!("n{i}")),
        ),
        named(24, |i| 1 + (i / 3) as u8, |i| Some(format!("cache{i}"))),
        named(
            24,
            |i| 1 + i as u8,
            |i| (i % 2 == 0).then(|| format!("{i}")),
        ),
    ]
}

/// carbon-c-relay places every name where pipit does, for every hash, ring and replication. One
/// relay holds every ring as clusters of their own; a name's first node picks its cluster.
#[test]
fn placement_equals_carbon_c_relays_own() {
    let mut random = Random(0x5eed_cafe_f00d_d00d);
    let per_cluster = 300;
    let rings = rings();
    let sinks: Vec<Vec<LineSink>> = rings
        .iter()
        .map(|members| {
            members
                .iter()
                .map(|(host, _)| LineSink::start(&format!("127.0.0.{host}")))
                .collect()
        })
        .collect();
    let mut rules = String::new();
    // Per ring: its destinations, and its names with their hash and replication.
    let mut plan: Vec<(Vec<Destination>, Vec<Placed>)> = Vec::new();
    for (g, (members, sinks)) in rings.iter().zip(&sinks).enumerate() {
        let destinations: Vec<Destination> = members
            .iter()
            .zip(sinks)
            .map(|((_, instance), sink)| {
                let mut d = Destination::new(&sink.addr().ip().to_string(), sink.addr().port());
                d.node.instance = instance.clone();
                d
            })
            .collect();
        let relay_members: Vec<String> = destinations
            .iter()
            .map(|d| match &d.node.instance {
                Some(instance) => format!("{}={instance}", d.addr()),
                None => d.addr(),
            })
            .collect();
        let mut names = Vec::new();
        for (h, (kind, hash)) in C_RELAY_HASHES.iter().enumerate() {
            for replication in 1..=members.len().min(3) {
                let cluster = format!("g{g}h{h}r{replication}");
                rules.push_str(&format!(
                    "cluster {cluster} {kind} replication {replication} {};\n\
                     match ^{cluster}\\. send to {cluster} stop;\n",
                    relay_members.join(" ")
                ));
                for i in 0..per_cluster {
                    let name = format!("{cluster}.{}", random_name(&mut random, i % 2 == 1));
                    names.push((name, *kind, *hash, replication));
                }
            }
        }
        plan.push((destinations, names));
    }
    let relay = CarbonCRelay::start(&rules, &[]);
    let all: Vec<&str> = plan
        .iter()
        .flat_map(|(_, names)| names.iter().map(|n| n.0.as_str()))
        .collect();
    let copies: usize = plan
        .iter()
        .flat_map(|(_, names)| names.iter().map(|n| n.3))
        .sum();
    send_through(
        relay.port(),
        &all,
        &sinks.iter().flatten().collect::<Vec<_>>(),
        copies,
    );
    let (mut tried, mut agreed) = (BTreeMap::new(), BTreeMap::new());
    for ((destinations, names), sinks) in plan.iter().zip(&sinks) {
        let landed = landed(names.iter().map(|n| n.0.as_str()), sinks);
        for (kind, hash) in C_RELAY_HASHES {
            let ring = Ring::new(hash, destinations);
            for (name, _, _, replication) in names.iter().filter(|n| n.1 == kind) {
                let pipit: BTreeSet<usize> =
                    ring.place(name, *replication, false).into_iter().collect();
                let relay = &landed[name.as_str()];
                *tried.entry(kind).or_insert(0) += 1;
                if pipit == *relay {
                    *agreed.entry(kind).or_insert(0) += 1;
                } else {
                    eprintln!(
                        "{kind}, ring {destinations:?}, replication {replication}, {name:?}: \
                         carbon-c-relay sent it to members {relay:?}, pipit to {pipit:?}"
                    );
                }
            }
        }
    }
    for (kind, n) in &tried {
        eprintln!(
            "carbon-c-relay {kind}: {} of {n} placements agree ({} rings of 1 to 24 members, \
             replication 1-3)",
            agreed.get(kind).copied().unwrap_or(0),
            rings.len()
        );
    }
    assert_eq!(tried, agreed);
    assert_eq!(
        tried.values().sum::<usize>(),
        expected_names(&rings, per_cluster)
    );
}

/// Names sent: per ring, hash and replication (up to the ring's size), `per_cluster`.
fn expected_names(rings: &[Members], per_cluster: usize) -> usize {
    rings
        .iter()
        .map(|m| C_RELAY_HASHES.len() * m.len().min(3) * per_cluster)
        .sum()
}

/// A name as pipit's `underscore` or `tags` naming writes it for a random Unicode service.
fn random_python_name(random: &mut Random, tagged: bool) -> String {
    let service: Vec<String> = (0..1 + random.below(4)).map(|_| random.text()).collect();
    let mut event = Event::new(service.join("."), random.text());
    if tagged {
        for name in ["a", "a-b", "zone", "if"] {
            if random.below(2) == 0 {
                event.attributes.insert(name.to_owned(), random.text());
            }
        }
    }
    let mode = if tagged {
        NameMode::Tags
    } else {
        NameMode::Underscore
    };
    Naming {
        mode,
        ..Naming::default()
    }
    .path(&event)
}

/// Python carbon-relay places every name where pipit's `carbon_ch` does (its default mode).
#[test]
fn placement_equals_python_carbon_relays_own() {
    let odd = [
        "\u{e9}\u{a0}x",
        "q\u{85}",
        "z\u{200b}",
        "it's",
        "say\"hi\"",
        "\u{2028}",
        "k\\",
    ];
    // (members as (127.0.0.x, instance), replication, diverse replicas, extra settings)
    let configs: Vec<(Members, usize, bool, &str)> = vec![
        (
            (0..4)
                .map(|i| (1, Some(["a", "b", "c", "d"][i].to_owned())))
                .collect(),
            2,
            false,
            "",
        ),
        (
            (0..4).map(|i| (1, Some(format!("{i}")))).collect(),
            2,
            true,
            "",
        ),
        ((0..5).map(|i| (1 + i as u8, None)).collect(), 1, true, ""),
        (
            (0..8)
                .map(|i| {
                    (
                        1 + (i / 2) as u8,
                        Some(format!("{}{i}", odd[i % odd.len()])),
                    )
                })
                .collect(),
            2,
            true,
            "",
        ),
        (
            (0..7).map(|i| (1, Some(odd[i].to_owned()))).collect(),
            3,
            false,
            "",
        ),
        (
            (0..13)
                .map(|i| (1 + (i % 5) as u8, Some(format!("n{i}"))))
                .collect(),
            3,
            true,
            "TAG_RELAY_NORMALIZED = True",
        ),
        (
            (0..24)
                .map(|i| (1 + (i / 3) as u8, Some(format!("c{i}"))))
                .collect(),
            3,
            true,
            "",
        ),
        (
            (0..24)
                .map(|i| (1 + (i / 3) as u8, Some(format!("c{i}"))))
                .collect(),
            2,
            false,
            "",
        ),
    ];
    let mut random = Random(0xc0ff_ee00_1234_5678);
    let per_config = 600;
    let (mut tried, mut agreed) = (0, 0);
    for (members, replication, diverse, extra) in &configs {
        let sinks: Vec<LineSink> = members
            .iter()
            .map(|(host, _)| LineSink::start(&format!("127.0.0.{host}")))
            .collect();
        let destinations: Vec<String> = members
            .iter()
            .zip(&sinks)
            .map(|((_, instance), sink)| match instance {
                Some(instance) => format!("{}:{instance}", sink.addr()),
                None => sink.addr().to_string(),
            })
            .collect();
        let parsed: Vec<Destination> = destinations
            .iter()
            .map(|d| Destination::parse(d).unwrap())
            .collect();
        let names: Vec<String> = (0..per_config)
            .map(|i| random_python_name(&mut random, i % 2 == 1))
            .collect();
        let ring = Ring::new(RingHash::CarbonRelay, &parsed);
        let expected: Vec<BTreeSet<usize>> = names
            .iter()
            .map(|n| ring.place(n, *replication, *diverse).into_iter().collect())
            .collect();
        let relay = CarbonRelay::start(&destinations, *replication, *diverse, extra);
        let all: Vec<&str> = names.iter().map(String::as_str).collect();
        let copies = expected.iter().map(BTreeSet::len).sum();
        send_through(
            relay.port(),
            &all,
            &sinks.iter().collect::<Vec<_>>(),
            copies,
        );
        let landed = landed(all.iter().copied(), &sinks);
        for (name, pipit) in names.iter().zip(&expected) {
            tried += 1;
            let relay = &landed[name.as_str()];
            if relay == pipit {
                agreed += 1;
            } else {
                eprintln!(
                    "ring {destinations:?}, replication {replication}, diverse {diverse}, \
                     {name:?}: carbon-relay sent it to members {relay:?}, pipit to {pipit:?}"
                );
            }
        }
    }
    eprintln!(
        "carbon-relay carbon_ch: {agreed} of {tried} placements agree ({} rings of 4 to 24 \
         members, replication 1-3)",
        configs.len()
    );
    assert_eq!(agreed, tried);
    assert_eq!(tried, configs.len() * per_config);
}
