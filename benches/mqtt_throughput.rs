//! MQTT output throughput: pipit's `mqtt` output against a paho-mqtt publisher script, side by side
//! against one private mosquitto, at QoS 0 and QoS 1.
//!
//! Both publish the same messages (topic `bench/r1/seq/<i>`, payload `<i>`). pipit's output is
//! driven as its writer thread drives it (batches of 500, each returning once delivered: at QoS 1
//! every PUBACK read, at QoS 0 a PINGREQ answered); paho's returns once every message is
//! published. Only the publishers' CPU time is compared.
//!
//! `cargo bench --bench mqtt_throughput` (or benches/mqtt_throughput.sh); under `cargo test` only
//! a short smoke run. `PIPIT_BENCH_EVENTS` sets the count (default 50,000: paho-mqtt slows down
//! far more than linearly as more messages wait in its queue).

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use pipit::Event;

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let events = if measuring {
        std::env::var("PIPIT_BENCH_EVENTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(50_000)
    } else {
        2_000
    };
    let broker = Broker::start();
    println!("mqtt publish throughput, {events} messages, events per CPU-second:");
    for qos in [0, 1] {
        let pipit = events as f64 / pipit_cpu(broker.port, qos, events);
        let paho = events as f64 / paho_cpu(broker.port, qos, events);
        println!(
            "  QoS {qos}: pipit {pipit:>10.0}   paho-mqtt {paho:>10.0}   ({:.1}x)",
            pipit / paho
        );
    }
}

/// CPU seconds pipit's output takes to publish `events` messages.
fn pipit_cpu(port: u16, qos: u8, events: usize) -> f64 {
    let text = format!(
        r#"{{"outputs": [{{"type": "mqtt", "host": "127.0.0.1", "port": {port}, "qos": {qos},
            "prefix": "bench", "clean_session": true, "availability": false}}]}}"#
    );
    let config = pipit::config_file::parse("bench.json", &text).expect("config");
    let mut output = config.outputs[0]
        .spec
        .build_target(0, "out.bench")
        .expect("output");
    let time = SystemTime::now();
    let all: Vec<Event> = (0..events)
        .map(|i| {
            Event::new(format!("seq.{i}"), "r1")
                .with_metric(i as i64)
                .with_time(time)
        })
        .collect();
    let start = cpu_seconds();
    for batch in all.chunks(500) {
        output.write(batch).expect("delivered");
    }
    cpu_seconds() - start
}

/// CPU seconds the paho-mqtt script reports for the same messages.
fn paho_cpu(port: u16, qos: u8, events: usize) -> f64 {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/benches/mqtt_paho_publisher.py"
    );
    let out = Command::new("/usr/bin/python3")
        .args([
            script,
            &port.to_string(),
            &qos.to_string(),
            &events.to_string(),
            "32",
        ])
        .output()
        .expect("python3 with paho-mqtt (tests/install-deps.sh)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("CPU seconds")
}

/// CPU time of this process's main thread so far, in seconds.
fn cpu_seconds() -> f64 {
    let text = std::fs::read_to_string("/proc/self/schedstat").expect("/proc/self/schedstat");
    let ns: f64 = text
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("schedstat");
    ns / 1e9
}

/// A private mosquitto on a free loopback port, anonymous, without persistence.
struct Broker {
    port: u16,
    child: Child,
    dir: std::path::PathBuf,
}

impl Broker {
    fn start() -> Broker {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = std::env::temp_dir().join(format!("pipit-bench-mqtt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("bench dir");
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\nuser root\n"),
        )
        .expect("mosquitto.conf");
        let child = Command::new("/usr/sbin/mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto (tests/install-deps.sh)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Broker { port, child, dir }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
