//! The Graphite output through the relays of a Graphite cluster, read back from carbon-cache's
//! whisper files: every event the output counts delivered is stored under the name pipit gave
//! it, in every naming mode each relay keeps, and the modes a relay renames are shown renamed
//! (docs/outputs-graphite.md, "Which naming with which relay").

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::outputs;
use common::peers::{CarbonCRelay, CarbonCache, CarbonRelay, wait_until};
use pipit::Event;
use pipit::outputs::graphite::path::{NameMode, Naming};

const DEADLINE: Duration = Duration::from_secs(30);

const MODES: [(&str, NameMode); 4] = [
    ("underscore", NameMode::Underscore),
    ("strict", NameMode::Strict),
    ("percent", NameMode::Percent),
    ("tags", NameMode::Tags),
];

/// Events with what real sources produce: Unicode, spaces, `+ @ ~ %`, empty sections, a leading
/// `~`, tag names that sort differently by name and by `;name=value`.
fn events(stamp: i64) -> Vec<Event> {
    type Raw<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);
    let raw: [Raw; 8] = [
        (
            "interface.eth0.rx_bytes",
            "gw.example.net",
            &[("if", "eth0")],
        ),
        ("temp.küche °C", "r1", &[("room", "küche")]),
        ("disk./var/log.used", "gw+1", &[("mount", "/var/log")]),
        ("a+b@c~d%e.x", "~edge", &[("a", "2"), ("a-b", "1")]),
        ("empty..section.", "h", &[]),
        (".lead", "h", &[("z", "last")]),
        ("日本.😀", "gw.ä.lan", &[("if", "wlan 0")]),
        ("xn--abc.y", "h", &[]),
    ];
    raw.iter()
        .enumerate()
        .map(|(i, (service, host, attributes))| {
            let mut e = Event::new(*service, *host).with_metric(i as i64 + 1);
            e.time = std::time::UNIX_EPOCH + Duration::from_secs(stamp as u64);
            e.attributes = attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            e
        })
        .collect()
}

/// What carbon-c-relay makes of a name with its default `-c`: each byte of the part before the
/// first `;` outside `[A-Za-z0-9-_:#.]` becomes `_`, plus those of `allowed`.
fn c_relay_rename(path: &str, allowed: &[u8]) -> String {
    let (name, tags) = path.split_at(path.find(';').unwrap_or(path.len()));
    let renamed: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_:#.".contains(&b) || allowed.contains(&b) {
                char::from(b)
            } else {
                '_'
            }
        })
        .collect();
    renamed + tags
}

/// One way to carbon-cache: its name, the port pipit sends to, and what the relay makes of a name.
struct Route {
    name: &'static str,
    port: u16,
    rename: fn(&str) -> String,
}

/// Sends the events through `route` in every naming mode and checks, per mode, that everything
/// counted delivered is stored under pipit's name, or (for the modes the relay renames) under the
/// relay's name and not pipit's. Returns the modes whose names the relay kept.
fn deliver_through(carbon: &CarbonCache, route: &Route, stamp: i64) -> Vec<&'static str> {
    let mut kept = Vec::new();
    for (mode_name, mode) in MODES {
        let prefix = format!("{}_{mode_name}", route.name.replace('-', "_"));
        let naming = Naming {
            prefix: prefix.clone(),
            mode,
            ..Naming::default()
        };
        let handle = outputs::start(&format!(
            r#"{{"type": "graphite", "name": "g", "host": "127.0.0.1", "port": {},
                "prefix": "{prefix}", "naming": "{mode_name}", "batch_timeout": "10ms"}}"#,
            route.port
        ));
        let stats = handle.stats.clone();
        let sent = events(stamp);
        outputs::send(&handle, sent.clone());
        outputs::stop(handle, DEADLINE);
        let (delivered, failed, rejected) = outputs::counts(&stats);
        assert_eq!(
            (delivered, failed, rejected),
            (sent.len() as u64, 0, 0),
            "{} {mode_name}",
            route.name
        );
        let paths: Vec<String> = sent.iter().map(|e| naming.path(e)).collect();
        let renamed: Vec<String> = paths.iter().map(|p| (route.rename)(p)).collect();
        let wanted: Vec<&str> = renamed.iter().map(String::as_str).collect();
        let stored = wait_until(
            &format!("{} {mode_name}: every datapoint in whisper", route.name),
            DEADLINE,
            || {
                let stored = carbon.read_many(&wanted);
                (stored.len() == wanted.len()).then_some(stored)
            },
        );
        for (i, name) in wanted.iter().enumerate() {
            assert_eq!(stored[*name], [(stamp, i as f64 + 1.0)], "{name}");
        }
        if paths == renamed {
            kept.push(mode_name);
        } else {
            let own: Vec<&str> = paths.iter().map(String::as_str).collect();
            let under_own: BTreeMap<_, _> = carbon.read_many(&own);
            assert!(
                under_own.len() < own.len(),
                "{} {mode_name}: renamed, yet found under pipit's names",
                route.name
            );
        }
    }
    kept
}

#[test]
fn what_is_counted_delivered_is_stored_under_its_name_through_each_relay() {
    let carbon = CarbonCache::start();
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        - 5;
    let forward =
        |port: u16| format!("cluster cache forward 127.0.0.1:{port};\nmatch * send to cache;");
    let c_relay = CarbonCRelay::start(&forward(carbon.line_port()), &[]);
    let c_relay_percent = CarbonCRelay::start(&forward(carbon.line_port()), &["-c", "-_:#%"]);
    let python_relay =
        CarbonRelay::start(&[format!("127.0.0.1:{}", carbon.line_port())], 1, true, "");
    let routes = [
        Route {
            name: "direct",
            port: carbon.line_port(),
            rename: |p| p.to_owned(),
        },
        Route {
            name: "carbon-relay",
            port: python_relay.port(),
            rename: |p| p.to_owned(),
        },
        Route {
            name: "carbon-c-relay",
            port: c_relay.port(),
            rename: |p| c_relay_rename(p, b""),
        },
        Route {
            name: "carbon-c-relay-pct",
            port: c_relay_percent.port(),
            rename: |p| c_relay_rename(p, b"%"),
        },
    ];
    let kept: Vec<(&str, Vec<&str>)> = routes
        .iter()
        .map(|route| (route.name, deliver_through(&carbon, route, stamp)))
        .collect();
    // The table of docs/outputs-graphite.md.
    assert_eq!(
        kept,
        [
            ("direct", vec!["underscore", "strict", "percent", "tags"]),
            (
                "carbon-relay",
                vec!["underscore", "strict", "percent", "tags"]
            ),
            ("carbon-c-relay", vec!["strict"]),
            ("carbon-c-relay-pct", vec!["strict", "percent"]),
        ]
    );
}
