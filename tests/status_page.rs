//! The status page of a real `pipit run`, in a real headless Chromium: it shows the config's
//! outputs and sources, turns a target red once its peer is stopped, charts the history, keeps
//! the console clean, fits a phone's screen, and never shows a secret.
#![cfg(feature = "status_page")]

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::browser::Browser;
use common::peers::{MQTT_PASSWORD, MQTT_USER, Mosquitto, TempDir, free_port, wait_until};
use common::pipit::{Agent, binary, fixture};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(30);

/// How often the page refreshes itself (`REFRESH` in src/http_server/page.html).
const REFRESH: Duration = Duration::from_secs(2);

/// The endpoint's basic auth password, which must never be shown.
const AUTH_PASSWORD: &str = "Hunter2-auth-Pw";

/// A running agent with the endpoint, the control socket, two sources and two outputs (MQTT to
/// `broker`, and stdout).
struct Setup {
    dir: TempDir,
    port: u16,
    agent: Agent,
}

fn start(tag: &str, broker: &Mosquitto, auth: bool) -> Setup {
    let dir = TempDir::new(tag);
    let port = free_port();
    let auth = if auth {
        format!(r#", "basic_auth": {{"username": "ops", "password": "{AUTH_PASSWORD}"}}"#)
    } else {
        String::new()
    };
    let text = format!(
        r#"{{"agent": {{"hostname": "gw1", "host_root": "{root}"}},
  "control": {{"socket": "{dir}/pipit.sock"}},
  "http_server": {{"enabled": true, "binds": ["127.0.0.1:{port}"], "chart_step": "1s"{auth}}},
  "sources": [{{"type": "load", "interval": "200ms"}},
    {{"type": "memory", "name": "mem", "interval": "200ms"}}],
  "outputs": [{{"type": "mqtt", "name": "broker", "targets": ["127.0.0.1:{mqtt}"],
      "username": "{MQTT_USER}", "password": "{MQTT_PASSWORD}", "batch_timeout": "50ms",
      "breaker_failures": 1, "connect_timeout": "1s"}},
    {{"type": "stdout", "batch_timeout": "1h", "batch_size": 100000}}]}}"#,
        root = fixture("minimal").display(),
        dir = dir.path().display(),
        mqtt = broker.port(),
    );
    let config = dir.path().join("pipit.json");
    fs::write(&config, text).unwrap();
    let agent = Agent::start(&config, "info");
    wait_until("the endpoint to listen", DEADLINE, || {
        TcpStream::connect(("127.0.0.1", port)).ok()
    });
    Setup { dir, port, agent }
}

/// One GET with `extra` header lines: the status, the head and the body.
fn get(port: u16, path: &str, extra: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

fn status_json(port: u16) -> Value {
    let (status, _, body) = get(port, "/status.json", "");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Where to save the screenshot: `PIPIT_SCREENSHOT` if set, else the test's directory.
fn screenshot_path(dir: &TempDir) -> PathBuf {
    std::env::var_os("PIPIT_SCREENSHOT").map_or_else(|| dir.path().join("page.png"), PathBuf::from)
}

#[test]
fn the_page_shows_the_config_and_turns_a_stopped_target_red() {
    let mut broker = Mosquitto::start();
    let s = start("page-browser", &broker, false);
    wait_until("the broker's target to deliver", DEADLINE, || {
        let status = status_json(s.port);
        (status["result"]["outputs"][0]["events_out"].as_u64()? > 0).then_some(())
    });

    let mut browser = Browser::open(&format!("http://127.0.0.1:{}/", s.port), 412, 900, true);
    let shown = browser.wait_for(
        "the page to list the outputs and sources and draw a chart",
        DEADLINE,
        r##"(() => {
            const names = (sel, key) => [...document.querySelectorAll(sel)].map((e) => e.dataset[key]);
            const outputs = names("#outputs tr", "output"), sources = names("#sources tr", "source");
            const charts = names("#charts [data-chart]", "chart");
            const drawn = document.querySelectorAll("#charts polyline").length;
            const wanted = ["load.1", "memory.used", "pipit.delivered.broker"];
            return outputs.length && sources.length && wanted.every((c) => charts.includes(c)) && drawn
                ? {outputs, sources, charts} : null;
        })()"##,
    );
    assert_eq!(shown["outputs"], serde_json::json!(["broker", "stdout"]));
    assert_eq!(shown["sources"], serde_json::json!(["load", "mem"]));
    let target = format!("127.0.0.1:{}", broker.port());
    let class_of_target = format!(
        r#"(() => {{ const li = document.querySelector('[data-target="{target}"]');
            return li ? li.className + "|" + li.closest("tr").className : null; }})()"#
    );
    assert_eq!(
        browser.eval(&class_of_target),
        "|",
        "a target up is not red"
    );

    // A phone's width: nothing wider than the screen but the tables, which scroll in their box.
    let overflow = browser.eval("document.documentElement.scrollWidth - window.innerWidth");
    assert_eq!(overflow, 0, "the page is wider than a 412 px screen");

    broker.stop();
    let opened = wait_until("the broker's breaker to open", DEADLINE, || {
        let status = status_json(s.port);
        let breaker = status["result"]["outputs"][0]["targets"][0]["breaker"].clone();
        (breaker == "open").then(Instant::now)
    });
    let red = format!(
        r#"(() => {{ const v = {class_of_target}; return v === "bad|bad" ? v : null; }})()"#
    );
    browser.wait_for("the stopped target's row to turn red", REFRESH * 3, &red);
    let took = opened.elapsed();
    assert!(
        took <= REFRESH + Duration::from_secs(1),
        "red {took:?} after the breaker opened"
    );
    assert!(
        browser
            .eval("document.querySelector('[data-output=\"stdout\"]').className")
            .as_str()
            .is_some_and(|c| !c.contains("bad")),
        "an output that is up turned red too"
    );

    let png = browser.screenshot();
    assert_eq!(&png[1..4], b"PNG");
    let path = screenshot_path(&s.dir);
    fs::write(&path, &png).unwrap();
    assert_eq!(
        browser.problems(),
        Vec::<String>::new(),
        "the console shows problems"
    );
}

#[test]
fn status_json_is_the_control_sockets_status_and_no_secret_is_shown() {
    let broker = Mosquitto::start();
    let s = start("page-secrets", &broker, true);
    let auth = format!(
        "Authorization: Basic {}\r\n",
        pipit::base64::standard(format!("ops:{AUTH_PASSWORD}").as_bytes())
    );
    assert_eq!(
        get(s.port, "/", "").0,
        401,
        "the page asks for the credentials"
    );
    wait_until("a sample of the history", DEADLINE, || {
        let (_, _, body) = get(s.port, "/history.json", &auth);
        body.contains("\"load.1\"").then_some(())
    });
    let mut served = String::new();
    for path in ["/", "/status.json", "/history.json"] {
        let (status, head, body) = get(s.port, path, &auth);
        assert_eq!(status, 200, "{path}: {head}");
        let kind = if path == "/" {
            "text/html"
        } else {
            "application/json"
        };
        assert!(
            head.contains(&format!("Content-Type: {kind}")),
            "{path}: {head}"
        );
        served.push_str(&head);
        served.push_str(&body);
    }
    for secret in [AUTH_PASSWORD, MQTT_PASSWORD] {
        assert!(!served.contains(secret), "{secret} is shown:\n{served}");
    }
    assert!(
        served.len() > 5000 && served.contains("\"broker\""),
        "{served}"
    );

    // The same document as `pipit ctl status --json`, down to its keys.
    let ctl = Command::new(binary())
        .args(["ctl", "status", "--json", "--socket"])
        .arg(s.dir.path().join("pipit.sock"))
        .output()
        .unwrap();
    assert!(ctl.status.success(), "{ctl:?}");
    let ctl: Value = serde_json::from_slice(&ctl.stdout).unwrap();
    let page: Value = serde_json::from_str(&get(s.port, "/status.json", &auth).2).unwrap();
    fn shape(v: &Value) -> Value {
        match v {
            Value::Object(m) => m.iter().map(|(k, v)| (k.clone(), shape(v))).collect(),
            Value::Array(a) => a.iter().map(shape).collect(),
            Value::String(_) | Value::Number(_) | Value::Bool(_) | Value::Null => Value::Null,
        }
    }
    assert_eq!(shape(&page), shape(&ctl));
    assert_eq!(page["result"]["pid"], s.agent.pid());
    assert_eq!(
        page["result"]["outputs"][0]["targets"],
        ctl["result"]["outputs"][0]["targets"]
    );
}
