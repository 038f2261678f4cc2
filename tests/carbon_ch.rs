//! carbon_ch placement equals carbon-relay's own, checked against Debian graphite-carbon's router
//! for 10,000 metric names over several rings, with and without instances, replication 1 and 2.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use pipit::delivery::carbon_ch::{Destination, Ring, RingHash};

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
