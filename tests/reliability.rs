//! Delivery that loses nothing, against real peers: a loopback carbon line receiver written here
//! (stopped and started again on the same port, dropping its connections with unread data, as a
//! restarting carbon does), the Riemann peer in its failure modes, and the pipit binary killed
//! during an outage. Every datapoint carries its own number, so the counts are exact.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, ErrorKind};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::disk::counter;
use common::outputs;
use common::peers::{CarbonCache, RiemannPeer, TempDir, free_port, wait_until};
use common::pipit::Agent;
use pipit::Event;
use pipit::delivery::OutputHandle;
use pipit::telemetry::get;

/// What the line receiver has seen, across its restarts.
#[derive(Default)]
struct Seen {
    values: HashSet<u64>,
    lines: u64,
    /// (value, arrival) of lines whose value is a send time in milliseconds.
    latest: Vec<(u64, Instant)>,
}

/// A carbon plaintext receiver on 127.0.0.1:`port` that records the value of every line whose
/// path ends in `test.n`. Stopping it drops every connection at once, unread data and all.
struct LineReceiver {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl LineReceiver {
    fn start(port: u16, seen: Arc<Mutex<Seen>>) -> LineReceiver {
        // Started again on the same port, which a client's connection may hold for a moment as
        // its own (ephemeral) port: wait for it with a deadline.
        let listener =
            wait_until(
                "the receiver's port",
                Duration::from_secs(20),
                || match TcpListener::bind(("127.0.0.1", port)) {
                    Ok(l) => Some(l),
                    Err(e) if e.kind() == ErrorKind::AddrInUse => None,
                    Err(e) => panic!("bind 127.0.0.1:{port}: {e}"),
                },
            );
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            let mut readers = Vec::new();
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (flag, seen) = (flag.clone(), seen.clone());
                        readers.push(thread::spawn(move || read_lines(conn, &flag, &seen)));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        // Polls its stop flag between connections.
                        thread::sleep(Duration::from_millis(5))
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            }
            // Stop listening first, as a server does when it shuts down: a connection left in
            // the backlog would take writes that nobody ever reads.
            drop(listener);
            for r in readers {
                let _ = r.join();
            }
        });
        LineReceiver {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn read_lines(conn: TcpStream, stop: &AtomicBool, seen: &Mutex<Seen>) {
    conn.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    while !stop.load(Ordering::SeqCst) {
        match reader.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) if line.ends_with('\n') => {
                record(&line, seen);
                line.clear();
            }
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
    // Like a server that exits after handling what it read: the lines already read from the
    // socket count; what the kernel still holds unread is lost, and the peer sees a reset.
    line.push_str(&String::from_utf8_lossy(reader.buffer()));
    let complete = line.rfind('\n').map_or("", |end| &line[..end + 1]);
    for l in complete.split_inclusive('\n') {
        record(l, seen);
    }
}

fn record(line: &str, seen: &Mutex<Seen>) {
    let mut parts = line.split_whitespace();
    let (path, value) = (parts.next().unwrap_or(""), parts.next());
    if path.ends_with("test.n") {
        let value: u64 = value.and_then(|v| v.parse().ok()).expect("a number");
        let mut s = seen.lock().unwrap();
        s.values.insert(value);
        s.lines += 1;
        s.latest.push((value, Instant::now()));
    }
}

/// A daemon that prints `test.n <i> 1700000000` for i in 0..n, `per_pause` lines between pauses of
/// 50 ms, then idles. Its lines are handed on every 50 ms, at most 1024 at a time: `per_pause`
/// stays well below.
fn generator(n: u64, per_pause: u64) -> String {
    format!(
        r#"{{"type": "exec", "name": "gen", "mode": "daemon", "format": "graphite", "interval": "50ms", "command": ["python3", "-u", "-c", "import sys, time\nfor i in range({n}):\n    sys.stdout.write('test.n %d 1700000000\\n' % i)\n    if i % {per_pause} == {per_pause} - 1:\n        sys.stdout.flush(); time.sleep(0.05)\nsys.stdout.flush()\ntime.sleep(100000)\n"]}}"#
    )
}

/// A graphite output to 127.0.0.1:`port` with a spool in `spool`, quick to retry and to probe.
fn graphite_output(port: u16, spool: &Path) -> String {
    format!(
        r#"{{"type": "graphite", "host": "127.0.0.1", "port": {port}, "include": ["test.*"],
            "queue_size": 200000, "queue_max_bytes": 268435456, "batch_timeout": "200ms",
            "retries": 1, "retry_delay": "50ms", "breaker_failures": 2, "breaker_reset": "300ms",
            "connect_timeout": "500ms", "write_timeout": "1s",
            "spool": {{"dir": "{}", "max_bytes": 268435456}}}}"#,
        spool.display()
    )
}

fn write_config(dir: &TempDir, sources: &[String], outputs: &[String]) -> std::path::PathBuf {
    let path = dir.path().join("pipit.json");
    let text = format!(
        r#"{{"agent": {{"hostname": "h", "state_dir": "{}", "shutdown_timeout": "5s"}}, "control": {{"enabled": false}},
            "sources": [{}], "outputs": [{}]}}"#,
        dir.path().join("state").display(),
        sources.join(","),
        outputs.join(",")
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// A `self` source and a stdout output printing the graphite output's counters, so that a test
/// can wait on them (`common::disk::counter`) rather than on time.
fn counters() -> [String; 2] {
    [
        r#"{"type": "self", "interval": "100ms"}"#.to_owned(),
        r#"{"type": "stdout", "format": "graphite", "include": ["self.output.graphite.*"]}"#
            .to_owned(),
    ]
}

/// Waits until the graphite output has taken all `n` datapoints of the generator into its queue.
fn wait_taken(agent: &Agent, n: u64) {
    wait_until(
        &format!("{n} datapoints taken by the output"),
        Duration::from_secs(60),
        || (counter(agent, "events_in") >= n).then_some(()),
    );
}

fn unique(seen: &Mutex<Seen>) -> usize {
    seen.lock().unwrap().values.len()
}

/// Waits until all `n` datapoints arrived, checks that nothing else did, and prints the counts.
fn wait_all(scenario: &str, seen: &Mutex<Seen>, n: u64, deadline: Duration) {
    let end = Instant::now() + deadline;
    while (unique(seen) as u64) < n {
        if Instant::now() > end {
            let s = seen.lock().unwrap();
            let missing: Vec<u64> = (0..n).filter(|v| !s.values.contains(v)).collect();
            panic!(
                "{scenario}: {} of {n} arrived; missing {} from {:?} to {:?}",
                s.values.len(),
                missing.len(),
                missing.first(),
                missing.last()
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
    let s = seen.lock().unwrap();
    assert_eq!(s.values.len() as u64, n);
    assert!(s.values.iter().all(|v| *v < n), "a value out of range");
    eprintln!(
        "{scenario}: {n} sent, {n} received, 0 lost, {} duplicate(s)",
        s.lines - n
    );
}

#[test]
fn carbon_restarted_five_times_loses_nothing_of_100000_datapoints() {
    const N: u64 = 100_000;
    let dir = TempDir::new("rel-restarts");
    let port = free_port();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let config = write_config(
        &dir,
        &[
            generator(N, 250),
            r#"{"type": "self", "interval": "1s"}"#.to_owned(),
        ],
        &[
            graphite_output(port, &dir.path().join("spool")),
            r#"{"type": "stdout", "include": ["exec.*", "self.*"]}"#.to_owned(),
        ],
    );
    let mut receiver = Some(LineReceiver::start(port, seen.clone()));
    let agent = Agent::start(&config, "info");
    // Five restarts spread over the stream (about 20 s of it); the third stays down 10 s.
    for (k, down) in [1u64, 1, 10, 1, 1].into_iter().enumerate() {
        let due = (k + 1) * 15_000;
        wait_until(
            "datapoints flowing between restarts",
            Duration::from_secs(30),
            || (unique(&seen) >= due).then_some(()),
        );
        receiver.take().unwrap().stop();
        // The outage itself: its length is what the scenario is about.
        thread::sleep(Duration::from_secs(down));
        receiver = Some(LineReceiver::start(port, seen.clone()));
        eprintln!("restart {}: {} distinct so far", k + 1, unique(&seen));
    }
    let all = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_all("5 restarts", &seen, N, Duration::from_secs(60))
    }));
    if let Err(e) = all {
        eprintln!("{}", agent.stderr().join("\n"));
        eprintln!(
            "{}",
            agent
                .stdout()
                .iter()
                .filter(|l| l.contains("dropped") || l.contains("events_"))
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::panic::resume_unwind(e);
    }
    receiver.take().unwrap().stop();
}

#[test]
fn real_carbon_restarted_between_waves_stores_every_datapoint() {
    const WAVES: u64 = 4;
    const PER_WAVE: u64 = 100;
    let mut carbon = CarbonCache::start();
    let dir = TempDir::new("rel-carbon");
    // Four waves of 100 points, 4 s apart, one second each, all within the 1 h retention.
    let waves = format!(
        r#"{{"type": "exec", "name": "waves", "mode": "daemon", "format": "graphite", "interval": "50ms", "command": ["python3", "-u", "-c", "import sys, time\nbase = int(time.time()) - 1000\nfor k in range({WAVES}):\n    for j in range({PER_WAVE}):\n        print('test.c %d %d' % (k * {PER_WAVE} + j, base + k * {PER_WAVE} + j))\n    sys.stdout.flush(); time.sleep(4)\ntime.sleep(100000)\n"]}}"#
    );
    let output = graphite_output(carbon.line_port(), &dir.path().join("spool"));
    let config = write_config(&dir, &[waves], &[output]);
    let _agent = Agent::start(&config, "warn");
    for k in 1..=WAVES {
        // Carbon keeps points in its cache for about a second and drops them on a stop: wait until
        // the wave is on disk, then restart it while pipit's connection is open.
        carbon.wait_for(
            "h.test.c",
            |p| p.len() as u64 >= k * PER_WAVE,
            Duration::from_secs(30),
        );
        if k < WAVES {
            carbon.restart();
        }
    }
    let points = carbon.read("h.test.c");
    assert_eq!(points.len() as u64, WAVES * PER_WAVE);
    let first = points[0].0;
    for (i, (ts, value)) in points.iter().enumerate() {
        assert_eq!((*ts - first, *value), (i as i64, i as f64));
    }
}

/// What the resend window is for: carbon-cache drops the datapoints in its cache when it stops.
/// 100 datapoints are sent and the connection closed; once carbon has closed its side too it has
/// read them all, and is stopped at once. Its writer drains the cache to whisper once a second, so
/// a drain can come between by chance (a few milliseconds out of a second): three tries.
#[test]
fn carbon_cache_loses_what_it_read_within_a_second_of_a_stop() {
    use std::io::{Read, Write};
    let mut carbon = CarbonCache::start();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut stored = Vec::new();
    for attempt in 0..3 {
        let mut conn = TcpStream::connect(("127.0.0.1", carbon.line_port())).unwrap();
        let lines: String = (0..100)
            .map(|i| format!("lost.a{attempt} {i} {}\n", now - 200 + i))
            .collect();
        conn.write_all(lines.as_bytes()).unwrap();
        conn.shutdown(std::net::Shutdown::Write).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        assert_eq!(conn.read(&mut [0; 1]).unwrap(), 0, "carbon closes its side");
        carbon.restart();
        stored.push(carbon.read(&format!("lost.a{attempt}")).len());
        if stored[attempt] < 100 {
            break;
        }
    }
    eprintln!("carbon-cache stopped right after reading 100 datapoints stored {stored:?}");
    assert!(stored.iter().any(|&n| n < 100), "{stored:?}");
}

/// Datapoints the Graphite client wrote again on new connections, from its debug log.
fn resent_datapoints(agent: &Agent) -> u64 {
    agent
        .stderr()
        .iter()
        .filter_map(|l| {
            let (_, rest) = l.split_once("writing again ")?;
            rest.split(' ').next()?.parse::<u64>().ok()
        })
        .sum()
}

#[test]
fn real_carbon_restarted_five_times_stores_every_one_of_100000_datapoints() {
    // 100 paths x 1,000 timestamps, one timestamp (100 datapoints) every 30 ms: about 33 s of
    // stream. Datapoint i is path p<i % 100> at base + i / 100 with the value i, so every
    // datapoint is a distinct (path, timestamp) of the 1 h retention and its value says which.
    // Then a tick every 100 ms, as an agent's regular metrics: pipit finds a dead connection
    // when it next writes.
    const PATHS: u64 = 100;
    const STAMPS: u64 = 1_000;
    const N: u64 = PATHS * STAMPS;
    let mut carbon = CarbonCache::start();
    let dir = TempDir::new("rel-carbon-restarts");
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 1_500;
    let stream = format!(
        r#"{{"type": "exec", "name": "stream", "mode": "daemon", "format": "graphite", "interval": "50ms", "command": ["python3", "-u", "-c", "import sys, time\nfor t in range({STAMPS}):\n    for p in range({PATHS}):\n        sys.stdout.write('test.p%d %d %d\\n' % (p, t * {PATHS} + p, {base} + t))\n    sys.stdout.flush(); time.sleep(0.03)\nwhile True:\n    print('test.tick 1 %d' % time.time()); time.sleep(0.1)\n"]}}"#
    );
    // The output's resend_window is the default unless RESEND_WINDOW says otherwise (as in
    // `RESEND_WINDOW=500ms cargo test --test reliability real_carbon_restarted_five`), to measure
    // what a window makes of the same run.
    let output = graphite_output(carbon.line_port(), &dir.path().join("spool"));
    let window = std::env::var("RESEND_WINDOW").ok();
    let output = match &window {
        Some(w) => output.replacen('{', &format!(r#"{{"resend_window": "{w}", "#), 1),
        None => output,
    };
    let [self_source, counter_output] = counters();
    let config = write_config(&dir, &[stream, self_source], &[output, counter_output]);
    let agent = Agent::start(&config, "info,out.graphite=debug");
    let started = Instant::now();
    // Five restarts, each once the stream has reached its mark and pipit has delivered more since
    // the last one; the third stays down 10 s (the stream goes to the spool, replayed when carbon
    // is back), the last two come later in the stream. carbon-cache loses on every stop what it read in about the last
    // second (not yet written to whisper): pipit's resend window brings it back.
    let mut delivered = 0;
    for (k, (due, down)) in [
        (12_000, 0),
        (24_000, 0),
        (36_000, 10),
        (80_000, 0),
        (92_000, 0),
    ]
    .into_iter()
    .enumerate()
    {
        wait_until(
            "the stream at its mark, datapoints flowing",
            Duration::from_secs(30),
            || {
                (counter(&agent, "events_in") >= due && counter(&agent, "events_out") > delivered)
                    .then_some(())
            },
        );
        carbon.stop();
        // The outage itself: its length is what the scenario is about.
        thread::sleep(Duration::from_secs(down));
        carbon.restart();
        delivered = counter(&agent, "events_out");
        eprintln!(
            "restart {} at {:.1} s: {} queued, {delivered} delivered",
            k + 1,
            started.elapsed().as_secs_f64(),
            counter(&agent, "events_in"),
        );
    }
    // Everything in whisper: each path holds its 1,000 timestamps, each with its own value.
    let stored = |all: &BTreeMap<String, Vec<(i64, f64)>>| -> u64 {
        all.iter()
            .filter(|(path, _)| path.starts_with("h.test.p"))
            .map(|(_, points)| points.len() as u64)
            .sum()
    };
    let end = Instant::now() + Duration::from_secs(30);
    let all = loop {
        let all = carbon.read_all();
        if stored(&all) >= N || Instant::now() > end {
            break all;
        }
        thread::sleep(Duration::from_millis(500));
    };
    let received = stored(&all);
    let resent = resent_datapoints(&agent);
    eprintln!(
        "real carbon, 5 restarts, resend_window {}: {N} sent, {received} received, {} lost; \
         {} datapoints resent; delivered {}, spooled {}, replayed {}; {:.1} s",
        window.as_deref().unwrap_or("2s (default)"),
        N - received.min(N),
        resent,
        counter(&agent, "events_out"),
        counter(&agent, "spooled"),
        counter(&agent, "replayed"),
        started.elapsed().as_secs_f64()
    );
    for p in 0..PATHS {
        let points = all
            .get(&format!("h.test.p{p}"))
            .map_or(&[][..], Vec::as_slice);
        let expected: Vec<(i64, f64)> = (0..STAMPS)
            .map(|t| ((base + t) as i64, (t * PATHS + p) as f64))
            .collect();
        if points != expected {
            let missing: Vec<u64> = (0..STAMPS)
                .filter(|&t| !points.contains(&expected[t as usize]))
                .collect();
            panic!(
                "path p{p}: {} points stored, {} missing (timestamps base + {:?} ... {:?})",
                points.len(),
                missing.len(),
                missing.first(),
                missing.last()
            );
        }
    }
    assert!(resent > 0, "no restart made pipit send anything again");
    assert_eq!(received, N);
}

#[test]
fn backend_down_at_start_gets_everything_when_it_comes_up() {
    const N: u64 = 20_000;
    let dir = TempDir::new("rel-late");
    let port = free_port();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let [self_source, counter_output] = counters();
    let config = write_config(
        &dir,
        &[generator(N, 250), self_source],
        &[
            graphite_output(port, &dir.path().join("spool")),
            counter_output,
        ],
    );
    let agent = Agent::start(&config, "warn");
    wait_taken(&agent, N);
    let receiver = LineReceiver::start(port, seen.clone());
    wait_all("down at start", &seen, N, Duration::from_secs(30));
    receiver.stop();
}

/// Events in the records of a spool directory's segment files (length, CRC-32, JSON lines).
fn spooled_events(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    for entry in entries.flatten() {
        if entry.path().extension().is_some_and(|e| e == "seg") {
            let bytes = std::fs::read(entry.path()).unwrap_or_default();
            let mut at = 0;
            while at + 8 <= bytes.len() {
                let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
                let end = (at + 8 + len).min(bytes.len());
                n += bytes[at + 8..end].iter().filter(|b| **b == b'\n').count();
                at += 8 + len;
            }
        }
    }
    n
}

#[test]
fn sigkill_during_an_outage_loses_nothing_that_reached_the_spool() {
    const N: u64 = 10_000;
    let dir = TempDir::new("rel-kill");
    let port = free_port();
    let spool = dir.path().join("spool");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let output = graphite_output(port, &spool);
    let config = write_config(&dir, &[generator(N, 250)], std::slice::from_ref(&output));
    let agent = Agent::start(&config, "warn");
    wait_until(
        "every datapoint in the spool",
        Duration::from_secs(30),
        || (spooled_events(&spool) as u64 >= N).then_some(()),
    );
    agent.signal("KILL");
    drop(agent);
    // The next run has no generator: whatever arrives came from the spool.
    let config = write_config(&dir, &[], &[output]);
    let receiver = LineReceiver::start(port, seen.clone());
    let _agent = Agent::start(&config, "warn");
    wait_all("SIGKILL in an outage", &seen, N, Duration::from_secs(30));
    receiver.stop();
}

#[test]
fn sigterm_during_an_outage_spools_what_is_queued_and_exits_0() {
    const N: u64 = 5_000;
    let dir = TempDir::new("rel-term");
    let port = free_port();
    let spool = dir.path().join("spool");
    let seen = Arc::new(Mutex::new(Seen::default()));
    // Long retries and a breaker that never opens: the batches wait in memory, not in the spool.
    let output = graphite_output(port, &spool)
        .replace(r#""retries": 1"#, r#""retries": 100"#)
        .replace(r#""retry_delay": "50ms""#, r#""retry_delay": "20s""#)
        .replace(r#""breaker_failures": 2"#, r#""breaker_failures": 1000"#);
    let [self_source, counter_output] = counters();
    let config = write_config(
        &dir,
        &[generator(N, 250), self_source],
        &[output.clone(), counter_output],
    );
    let mut agent = Agent::start(&config, "info");
    agent.wait_stderr(
        "the first failed delivery",
        Duration::from_secs(20),
        |lines| lines.iter().any(|l| l.contains("delivery of")),
    );
    // Every datapoint taken, none spooled yet.
    wait_taken(&agent, N);
    assert_eq!(spooled_events(&spool), 0);
    agent.signal("TERM");
    let status = agent.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status:?}: {:#?}", agent.stderr());
    assert_eq!(spooled_events(&spool) as u64, N);
    let config = write_config(&dir, &[], &[output]);
    let receiver = LineReceiver::start(port, seen.clone());
    let _agent = Agent::start(&config, "warn");
    wait_all("SIGTERM in an outage", &seen, N, Duration::from_secs(30));
    receiver.stop();
}

#[test]
fn riemann_failures_are_retried_spooled_and_replayed_never_lost() {
    const N: usize = 60;
    for mode in ["close", "fail", "silent"] {
        let mut peer = RiemannPeer::start(mode);
        let dir = TempDir::new("rel-riemann");
        let handle = outputs::start(&format!(
            r#"{{"type": "riemann", "host": "127.0.0.1", "port": {}, "ack_timeout": "300ms",
                "batch_size": 10, "batch_timeout": "50ms", "retries": 1, "retry_delay": "20ms",
                "breaker_failures": 2, "breaker_reset": "200ms",
                "spool": {{"dir": "{}"}}}}"#,
            peer.port(),
            dir.path().join("spool").display()
        ));
        let stats = handle.stats.clone();
        outputs::send(
            &handle,
            (0..N).map(|i| Event::new(format!("svc.{i}"), "h").with_metric(i as i64)),
        );
        wait_until(
            &format!("{mode}: all spooled"),
            Duration::from_secs(20),
            || (get(&stats.spooled_events) == N as u64).then_some(()),
        );
        assert_eq!(get(&stats.events_out), 0, "{mode}");
        assert_eq!(get(&stats.failed), 0, "{mode}");
        let last = stats.last_error.lock().unwrap().clone();
        if mode == "silent" {
            assert!(last.contains("no answer within 300 ms"), "{mode}: {last}");
        }
        peer.restart(Some("ok"));
        wait_until(
            &format!("{mode}: replayed"),
            Duration::from_secs(20),
            || (get(&stats.replayed) == N as u64).then_some(()),
        );
        assert_eq!(get(&stats.events_out), N as u64, "{mode}");
        let services: HashSet<String> = peer
            .events()
            .iter()
            .filter_map(|l| common::peers::json_str(l, "service"))
            .collect();
        assert_eq!(services.len(), N, "{mode}: every event arrived");
        eprintln!(
            "riemann {mode}: {N} sent, {N} received, 0 lost; spooled {}, replayed {}, retried {}",
            get(&stats.spooled_events),
            get(&stats.replayed),
            get(&stats.retried)
        );
        outputs::stop(handle, Duration::from_secs(5));
    }
}

#[test]
fn a_dead_target_does_not_slow_another_output() {
    let dir = TempDir::new("rel-isolation");
    let port = free_port();
    // Accepts connections into its backlog and never reads: writes stall until the timeout.
    let dead = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let clock = r#"{"type": "exec", "name": "clock", "mode": "daemon", "format": "graphite", "interval": "50ms", "command": ["python3", "-u", "-c", "import time\nwhile True:\n    print('test.n %d 1700000000' % int(time.time() * 1000), flush=True)\n    time.sleep(0.01)\n"]}"#;
    let good = format!(
        r#"{{"type": "graphite", "name": "good", "host": "127.0.0.1", "port": {port}, "include": ["test.*"], "batch_timeout": "100ms"}}"#
    );
    let bad = format!(
        r#"{{"type": "graphite", "name": "bad", "host": "127.0.0.1", "port": {dead_port}, "include": ["test.*"],
            "batch_timeout": "100ms", "write_timeout": "3s", "batch_size": 20000,
            "spool": {{"dir": "{}"}}}}"#,
        dir.path().join("spool").display()
    );
    let config = write_config(&dir, &[clock.to_owned()], &[good, bad]);
    let receiver = LineReceiver::start(port, seen.clone());
    let _agent = Agent::start(&config, "warn");
    // Ten seconds with the other output stuck on its dead target.
    wait_until("datapoints arriving", Duration::from_secs(10), || {
        (unique(&seen) > 0).then_some(())
    });
    let start = Instant::now();
    // The window observed: every datapoint sent in it must arrive promptly.
    thread::sleep(Duration::from_secs(10));
    let s = seen.lock().unwrap();
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        - start.elapsed().as_millis() as u64;
    let late: Vec<u64> = s
        .latest
        .iter()
        .filter(|(sent, _)| *sent >= since)
        .map(|(sent, arrived)| {
            let arrived_ms = since + arrived.saturating_duration_since(start).as_millis() as u64;
            arrived_ms.saturating_sub(*sent)
        })
        .collect();
    assert!(late.len() > 500, "only {} datapoints in 10 s", late.len());
    let worst = *late.iter().max().unwrap();
    eprintln!(
        "isolation: {} datapoints in 10 s with the other output stuck, worst latency {worst} ms",
        late.len()
    );
    // Batches wait up to 100 ms; the exec reader and the router add little.
    assert!(
        worst < 1000,
        "worst latency {worst} ms with the other output stuck"
    );
    drop(s);
    receiver.stop();
    drop(dead);
}

#[test]
fn failover_skips_a_dead_target_and_its_breaker_opens() {
    const N: u64 = 1_000;
    let port = free_port();
    let dead = free_port();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let receiver = LineReceiver::start(port, seen.clone());
    let handle = outputs::start(&format!(
        r#"{{"type": "graphite", "targets": ["127.0.0.1:{dead}", "127.0.0.1:{port}"],
            "batch_size": 50, "batch_timeout": "20ms", "retries": 0, "breaker_failures": 2,
            "breaker_reset": "1h"}}"#
    ));
    let stats = handle.stats.clone();
    outputs::send(
        &handle,
        (0..N).map(|i| Event::new("test.n", "h").with_metric(i as i64)),
    );
    wait_all("failover", &seen, N, Duration::from_secs(20));
    wait_until("all counted", Duration::from_secs(5), || {
        (get(&stats.events_out) == N).then_some(())
    });
    assert_eq!(get(&stats.failed), 0);
    assert_eq!(
        outputs::breaker_states(&stats),
        vec![
            (format!("127.0.0.1:{dead}"), "open"),
            (format!("127.0.0.1:{port}"), "closed")
        ]
    );
    outputs::stop(handle, Duration::from_secs(5));
    receiver.stop();
}

#[test]
fn a_full_spool_drops_exactly_what_its_policy_says_and_counts_it() {
    const N: u64 = 400;
    for policy in ["drop_oldest", "drop_newest"] {
        let dir = TempDir::new("rel-full");
        let spool = dir.path().join("spool");
        let handle = outputs::start(&format!(
            r#"{{"type": "graphite", "host": "127.0.0.1", "port": {}, "batch_size": 20,
                "batch_timeout": "10ms", "retries": 0, "breaker_failures": 1, "breaker_reset": "1h",
                "spool": {{"dir": "{}", "max_bytes": 8192, "segment_bytes": 1024, "when_full": "{policy}"}}}}"#,
            free_port(),
            spool.display()
        ));
        let stats = handle.stats.clone();
        outputs::send(
            &handle,
            (0..N).map(|i| Event::new("test.n", "h").with_metric(i as i64)),
        );
        wait_until(
            "every batch spooled or dropped",
            Duration::from_secs(20),
            || {
                let written = get(&stats.spooled_events);
                let dropped = get(&stats.dropped_spool_full);
                let settled = match policy {
                    "drop_newest" => written + dropped == N,
                    _ => written == N,
                };
                settled.then_some(())
            },
        );
        let (written, dropped) = (get(&stats.spooled_events), get(&stats.dropped_spool_full));
        let on_disk = spooled_events(&spool) as u64;
        assert!(dropped > 0, "{policy}: the bound was reached");
        // drop_oldest writes every batch and deletes old segments; drop_newest refuses batches.
        let expected = match policy {
            "drop_oldest" => N - dropped,
            _ => written,
        };
        assert_eq!(on_disk, expected, "{policy}");
        assert_eq!(get(&stats.spool_events), on_disk, "{policy}");
        assert!(get(&stats.spool_bytes) <= 8192, "{policy}");
        outputs::stop(handle, Duration::from_secs(5));
    }
}

#[test]
fn batches_no_target_takes_go_to_the_fallback_output() {
    const N: u64 = 2_000;
    let dir = TempDir::new("rel-fallback");
    let dead = free_port();
    let outputs = [
        format!(
            r#"{{"type": "graphite", "host": "127.0.0.1", "port": {dead}, "include": ["test.*"],
                "batch_timeout": "100ms", "retries": 0, "breaker_failures": 1, "breaker_reset": "1h",
                "fallback": "local"}}"#
        ),
        r#"{"type": "stdout", "name": "local", "include": ["none"]}"#.to_owned(),
    ];
    let config = write_config(&dir, &[generator(N, 250)], &outputs);
    let agent = Agent::start(&config, "warn");
    let lines = agent.wait_stdout(
        "every datapoint at the fallback",
        Duration::from_secs(20),
        |lines| lines.iter().filter(|l| l.starts_with("h.test.n ")).count() as u64 >= N,
    );
    let values: HashSet<u64> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("h.test.n "))
        .filter_map(|l| l.split(' ').next()?.parse().ok())
        .collect();
    assert_eq!(values.len() as u64, N);
    assert!(values.iter().all(|v| *v < N));
}

#[test]
fn the_rate_limit_spreads_delivery_over_time() {
    const N: u64 = 300;
    let port = free_port();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let receiver = LineReceiver::start(port, seen.clone());
    let handle = outputs::start(&format!(
        r#"{{"type": "graphite", "host": "127.0.0.1", "port": {port}, "batch_timeout": "10ms",
            "rate_limit": 200, "rate_burst": 100}}"#
    ));
    let started = Instant::now();
    outputs::send(
        &handle,
        (0..N).map(|i| Event::new("test.n", "h").with_metric(i as i64)),
    );
    wait_all("rate limit", &seen, N, Duration::from_secs(10));
    // A burst of 100 at once, then 200 a second: the other 200 take at least a second.
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
    outputs::stop(handle, Duration::from_secs(5));
    receiver.stop();
}

/// The configs of `outputs`, as the agent reads them.
fn output_configs(outputs: &[String]) -> Vec<pipit::delivery::OutputConfig> {
    let text = format!(r#"{{"outputs": [{}]}}"#, outputs.join(","));
    let config = pipit::config_file::parse("test.json", &text).unwrap_or_else(|e| panic!("{e:?}"));
    config.outputs
}

#[test]
fn a_reload_hands_the_batch_held_for_a_dead_target_to_the_new_writer() {
    const N: u64 = 40;
    let dead = free_port();
    let live = free_port();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let receiver = LineReceiver::start(live, seen.clone());
    // No spool and no fallback: what the dead target does not take is held and retried.
    let settings = r#""batch_timeout": "20ms", "retries": 0, "retry_delay": "50ms",
        "breaker_failures": 1, "breaker_reset": "1h""#;
    let mut handle = outputs::start(&format!(
        r#"{{"type": "graphite", "host": "127.0.0.1", "port": {dead}, {settings}}}"#
    ));
    let stats = handle.stats.clone();
    outputs::send(
        &handle,
        (0..N).map(|i| Event::new("test.n", "h").with_metric(i as i64)),
    );
    wait_until("the batch is held", Duration::from_secs(10), || {
        let failing = !stats.last_error.lock().unwrap().is_empty();
        (failing && get(&stats.queued) == 0).then_some(())
    });
    let new = output_configs(&[format!(
        r#"{{"type": "graphite", "host": "127.0.0.1", "port": {live}, {settings}}}"#
    )]);
    handle.replace(new.into_iter().next().unwrap()).unwrap();
    wait_all(
        "reload of a holding writer",
        &seen,
        N,
        Duration::from_secs(10),
    );
    outputs::stop(handle, Duration::from_secs(5));
    assert_eq!(
        (get(&stats.events_out), get(&stats.failed)),
        (N, 0),
        "every held event delivered by the new writer, none counted failed"
    );
    receiver.stop();
}

#[test]
fn the_fallback_takes_batches_only_once_every_target_is_open() {
    let dead = free_port();
    let local = free_port();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let receiver = LineReceiver::start(local, seen.clone());
    let configs = output_configs(&[
        format!(
            r#"{{"type": "graphite", "host": "127.0.0.1", "port": {dead}, "batch_timeout": "20ms",
                "retries": 0, "retry_delay": "20ms", "retry_max_delay": "20ms",
                "breaker_failures": 3, "breaker_reset": "1h", "fallback": "local"}}"#
        ),
        format!(
            r#"{{"type": "graphite", "name": "local", "host": "127.0.0.1", "port": {local},
                "batch_timeout": "20ms"}}"#
        ),
    ]);
    let handles: Vec<OutputHandle> = configs
        .into_iter()
        .map(|c| OutputHandle::start(c).unwrap())
        .collect();
    let stats = handles[0].stats.clone();
    pipit::delivery::wire_fallbacks(&handles);
    outputs::send(&handles[0], [Event::new("test.n", "h").with_metric(0i64)]);
    wait_all("fallback", &seen, 1, Duration::from_secs(10));
    // Three failures open the breaker; the batch was held and tried until then.
    assert_eq!(get(&stats.to_fallback), 1);
    assert_eq!(get(&stats.retried), 2, "held through two more tries first");
    assert_eq!(
        outputs::breaker_states(&stats),
        vec![(format!("127.0.0.1:{dead}"), "open")]
    );
    for handle in handles {
        outputs::stop(handle, Duration::from_secs(5));
    }
    receiver.stop();
}

#[test]
fn a_fast_source_loses_nothing_to_the_queue_while_the_first_failures_are_retried() {
    const N: u64 = 10_000;
    let dir = TempDir::new("rel-fast-outage");
    let port = free_port();
    let seen = Arc::new(Mutex::new(Seen::default()));
    // 2,000 datapoints a second into a queue of 1,000, the target down: the first batch's
    // retries (after 1 s, 2 s and 4 s, jittered) would hold the queue up for seconds; with a spool
    // they do not.
    let output = format!(
        r#"{{"type": "graphite", "host": "127.0.0.1", "port": {port}, "include": ["test.*"],
            "queue_size": 1000, "batch_timeout": "50ms", "retries": 3, "retry_delay": "1s",
            "breaker_failures": 5, "breaker_reset": "300ms",
            "spool": {{"dir": "{}"}}}}"#,
        dir.path().join("spool").display()
    );
    let [self_source, counter_output] = counters();
    let config = write_config(
        &dir,
        &[generator(N, 100), self_source],
        &[output, counter_output],
    );
    let agent = Agent::start(&config, "warn");
    // The receiver comes up once the whole stream went into the queue.
    wait_taken(&agent, N);
    let receiver = LineReceiver::start(port, seen.clone());
    wait_all("fast source, outage", &seen, N, Duration::from_secs(30));
    receiver.stop();
}
