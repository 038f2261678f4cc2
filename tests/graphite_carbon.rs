//! The Graphite output and client against a real carbon-cache, read back from its whisper files.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::peers::{CarbonCache, TempDir, wait_until};
use pipit::Event;
use pipit::outputs::graphite::path::{NameMode, Naming};
use pipit::outputs::graphite::{Datapoint, GraphiteClient, Protocol, Timeouts, decode_path};

const DEADLINE: Duration = Duration::from_secs(20);

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// `n` datapoints over 7 metrics, the 7 of each round sharing a timestamp, as a collection's do
/// (pickle takes a shared timestamp from the frame's memo).
fn points(prefix: &str, n: i64, t: i64) -> Vec<Datapoint> {
    (0..n)
        .map(|i| Datapoint::new(format!("{prefix}.m{}", i % 7), i as f64 + 0.5, t - i / 7).unwrap())
        .collect()
}

/// Sends `n` datapoints over 7 metrics and checks that carbon stored every one.
fn round_trip(protocol: Protocol, port: impl Fn(&CarbonCache) -> u16, n: i64) {
    let carbon = CarbonCache::start();
    let t = now();
    let prefix = format!("rt_{}", protocol.as_str());
    let mut client = GraphiteClient::connect(
        format!("127.0.0.1:{}", port(&carbon)),
        protocol,
        Timeouts::default(),
    )
    .unwrap();
    let sent = points(&prefix, n, t);
    for chunk in sent.chunks(250) {
        client.send_many(chunk).unwrap();
    }
    client.close().unwrap();
    for m in 0..7 {
        let want: Vec<(i64, f64)> = sent
            .iter()
            .filter(|d| d.path().ends_with(&format!(".m{m}")))
            .map(|d| (d.timestamp(), d.value().as_f64()))
            .rev()
            .collect();
        let got = carbon.wait_for(
            &format!("{prefix}.m{m}"),
            |p| p.len() >= want.len(),
            DEADLINE,
        );
        assert_eq!(got, want);
    }
}

#[test]
fn plaintext_over_tcp_arrives() {
    round_trip(Protocol::Plaintext, CarbonCache::line_port, 1200);
}

#[test]
fn plaintext_over_udp_arrives() {
    // Few enough that the loopback never drops a datagram.
    round_trip(Protocol::Udp, CarbonCache::udp_port, 300);
}

#[test]
fn pickle_arrives_in_frames_of_500() {
    round_trip(Protocol::Pickle, CarbonCache::pickle_port, 1200);
}

#[test]
fn integers_and_unicode_paths_arrive_by_pickle() {
    let carbon = CarbonCache::start();
    let t = now();
    let mut client = GraphiteClient::new(
        format!("127.0.0.1:{}", carbon.pickle_port()),
        Protocol::Pickle,
        Timeouts::default(),
    );
    let big = (1i64 << 40) + 1;
    client
        .send_many(&[
            Datapoint::new("pk.big", big, t).unwrap(),
            Datapoint::new("pk.neg", -5i64, t).unwrap(),
            Datapoint::new("pk.ünï", 0.25, t).unwrap(),
        ])
        .unwrap();
    assert_eq!(
        carbon.wait_for("pk.big", |p| !p.is_empty(), DEADLINE),
        [(t, big as f64)]
    );
    assert_eq!(
        carbon.wait_for("pk.neg", |p| !p.is_empty(), DEADLINE),
        [(t, -5.0)]
    );
    assert_eq!(
        carbon.wait_for("pk.ünï", |p| !p.is_empty(), DEADLINE),
        [(t, 0.25)]
    );
}

#[test]
fn percent_paths_are_stored_and_decode_to_the_original() {
    let carbon = CarbonCache::start();
    let t = now();
    let naming = Naming {
        prefix: "lab".into(),
        mode: NameMode::Percent,
        ..Naming::default()
    };
    let event = Event::new("disk./var/log.used %", "gw.exämple.net").with_metric(42i64);
    let path = naming.path(&event);
    let mut client = GraphiteClient::new(
        format!("127.0.0.1:{}", carbon.line_port()),
        Protocol::Plaintext,
        Timeouts::default(),
    );
    client
        .send(&Datapoint::new(path.as_str(), 42i64, t).unwrap())
        .unwrap();
    carbon.wait_for(&path, |p| p == [(t, 42.0)], DEADLINE);
    let stored = carbon.metrics();
    assert_eq!(stored, [path.as_str()]);
    assert_eq!(
        decode_path(&stored[0]).unwrap(),
        ["lab", "gw.exämple.net", "disk", "/var/log", "used %"]
    );
}

#[test]
fn tagged_series_are_stored_under_their_tags() {
    let carbon = CarbonCache::start();
    let t = now();
    let naming = Naming {
        mode: NameMode::Tags,
        ..Naming::default()
    };
    let mut event = Event::new("interface.rx_bytes", "gw.lan").with_metric(7i64);
    event.attributes = BTreeMap::from([
        ("if".to_owned(), "eth0".to_owned()),
        ("dir".to_owned(), "~in x".to_owned()),
    ]);
    let path = naming.path(&event);
    assert_eq!(path, "interface.rx_bytes;dir=_in_x;host=gw.lan;if=eth0");
    let mut client = GraphiteClient::new(
        format!("127.0.0.1:{}", carbon.pickle_port()),
        Protocol::Pickle,
        Timeouts::default(),
    );
    client
        .send(&Datapoint::new(path.as_str(), 7i64, t).unwrap())
        .unwrap();
    // Carbon files a tagged series by the hash of its name with the tags sorted: found only if
    // pipit sent them sorted and valid.
    assert_eq!(
        carbon.wait_for(&path, |p| !p.is_empty(), DEADLINE),
        [(t, 7.0)]
    );
}

#[test]
fn a_batch_after_the_server_closed_the_idle_connection_still_arrives() {
    for protocol in [Protocol::Plaintext, Protocol::Pickle] {
        let mut carbon = CarbonCache::start();
        let port = if protocol == Protocol::Pickle {
            carbon.pickle_port()
        } else {
            carbon.line_port()
        };
        let t = now();
        let mut client =
            GraphiteClient::connect(format!("127.0.0.1:{port}"), protocol, Timeouts::default())
                .unwrap();
        client
            .send(&Datapoint::new("idle.before", 1i64, t).unwrap())
            .unwrap();
        carbon.wait_for("idle.before", |p| !p.is_empty(), DEADLINE);
        // A restart closes every connection while the client sits idle on its own.
        carbon.restart();
        client
            .send(&Datapoint::new("idle.after", 2i64, t).unwrap())
            .unwrap();
        assert_eq!(
            carbon.wait_for("idle.after", |p| !p.is_empty(), DEADLINE),
            [(t, 2.0)],
            "{protocol:?}"
        );
    }
}

#[test]
fn the_agent_delivers_to_carbon_and_drains_its_queue_on_sigterm() {
    let carbon = CarbonCache::start();
    let dir = TempDir::new("agent");
    let config = dir.path().join("pipit.json");
    // Batches that never fill nor time out: only the stop can send them.
    let text = format!(
        r#"{{"agent": {{"hostname": "edge.lab", "interval": "100ms"}},
            "sources": [{{"type": "load"}}, {{"type": "self"}}],
            "outputs": [{{"type": "graphite", "name": "carbon", "host": "127.0.0.1", "port": {},
                          "protocol": "pickle", "prefix": "pipit", "exclude": ["load.5"],
                          "batch_size": 100000, "batch_timeout": "1h"}},
                         {{"type": "stdout", "include": ["self.output.carbon.events_in"],
                          "batch_size": 1}}]}}"#,
        carbon.pickle_port()
    );
    fs::write(&config, text).unwrap();
    let mut agent = Command::new(env!("CARGO_BIN_EXE_pipit"))
        .args(["run", "-c"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The self source, printed by the stdout output, tells when the graphite output holds events.
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = agent.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
            let queued = line.split(' ').nth(1).and_then(|v| v.parse::<f64>().ok());
            let _ = tx.send(queued.unwrap_or(0.0));
        }
    });
    wait_until("the graphite output holds 5 events", DEADLINE, || {
        rx.try_iter().any(|queued| queued >= 5.0).then_some(())
    });
    assert!(
        carbon.metrics().is_empty(),
        "nothing is sent before the batch is due"
    );
    let killed = Command::new("kill")
        .arg("-TERM")
        .arg(agent.id().to_string())
        .status()
        .unwrap();
    assert!(killed.success());
    let status = wait_until("the agent exits", DEADLINE, || agent.try_wait().unwrap());
    let stderr = std::io::read_to_string(agent.stderr.take().unwrap()).unwrap();
    assert!(status.success(), "{status}: {stderr}");
    let load = carbon.wait_for("pipit.edge_lab.load.1", |p| !p.is_empty(), DEADLINE);
    assert!(
        load.iter()
            .all(|&(ts, v)| v >= 0.0 && (ts - now()).abs() < 60),
        "{load:?}"
    );
    carbon.wait_for(
        "pipit.edge_lab.self.output.carbon.queue_depth",
        |p| !p.is_empty(),
        DEADLINE,
    );
    // Every event had a metric and a good name: the per-reason drop counter reports zero.
    let unencodable = carbon.wait_for(
        "pipit.edge_lab.self.output.carbon.dropped_unencodable",
        |p| !p.is_empty(),
        DEADLINE,
    );
    assert!(
        unencodable.iter().all(|&(_, v)| v == 0.0),
        "{unencodable:?}"
    );
    let stored = carbon.metrics();
    assert!(
        !stored.contains(&"pipit.edge_lab.load.5".to_owned()),
        "excluded by the output's selector: {stored:?}"
    );
    assert!(
        stored.contains(&"pipit.edge_lab.load.15".to_owned()),
        "{stored:?}"
    );
}
