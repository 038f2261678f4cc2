//! Real backend servers for integration tests (std only).
//!
//! * [`CarbonCache`]: Debian's `carbon-cache` (graphite-carbon) with whisper
//!   storage, read back through Debian's `/usr/bin/python3` + `whisper`.
//! * [`Influx`]: Debian's `influxd` (InfluxDB 1.x), spoken to over raw HTTP/1.0.
//! * [`RiemannPeer`]: `tests/peers/riemann_peer.py`, a small Riemann server
//!   decoding with the riemann-client package's protobuf module.
//!
//! Every server binds 127.0.0.1 on free ports, lives in its own temp dir
//! (removed on drop, kept when the test is panicking), is stopped by pid
//! (SIGTERM through `kill`, SIGKILL after a deadline) and is stopped on drop.
//! Install the dependencies with `tests/install-deps.sh`; see
//! `tests/peers/README.md`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Interface every server binds to.
pub const LOCALHOST: &str = "127.0.0.1";
/// Debian's python, which has the `whisper` and `carbon` modules.
pub const SYSTEM_PYTHON: &str = "/usr/bin/python3";
/// Debian's carbon-cache entry point (a /usr/bin/python3 script).
pub const CARBON_CACHE_BIN: &str = "/usr/bin/carbon-cache";
/// Debian's InfluxDB 1.x server.
pub const INFLUXD_BIN: &str = "/usr/bin/influxd";

const START_DEADLINE: Duration = Duration::from_secs(30);
const STOP_DEADLINE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(20);
const INSTALL_HINT: &str = "run tests/install-deps.sh to install the test dependencies";

// ------------------------------------------------------------------ misc --

/// Polls `f` about every 20 ms until it returns `Some`, and returns that
/// value. Panics naming `what` once `deadline` has elapsed.
pub fn wait_until<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() >= deadline {
            panic!("timed out after {:?} waiting for {}", deadline, what);
        }
        thread::sleep(POLL);
    }
}

static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());

/// Records `port` as handed out; false if this process handed it out before.
fn claim_port(port: u16) -> bool {
    let mut used = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    if used.contains(&port) {
        false
    } else {
        used.push(port);
        true
    }
}

/// A free TCP port on 127.0.0.1 (bind port 0, read it, drop the listener).
/// Never returns the same port twice within one test process.
pub fn free_port() -> u16 {
    for _ in 0..200 {
        let listener = TcpListener::bind((LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("free_port: cannot bind {}:0: {}", LOCALHOST, e));
        let port = listener.local_addr().expect("free_port: local_addr").port();
        drop(listener);
        if claim_port(port) {
            return port;
        }
    }
    panic!("free_port: no unused TCP port found after 200 attempts");
}

/// A free UDP port on 127.0.0.1 (same scheme as [`free_port`]).
pub fn free_udp_port() -> u16 {
    for _ in 0..200 {
        let sock = UdpSocket::bind((LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("free_udp_port: cannot bind {}:0: {}", LOCALHOST, e));
        let port = sock.local_addr().expect("free_udp_port: local_addr").port();
        drop(sock);
        if claim_port(port) {
            return port;
        }
    }
    panic!("free_udp_port: no unused UDP port found after 200 attempts");
}

/// A unique directory under `std::env::temp_dir()`; removed on drop unless
/// the thread is panicking (then it is kept and its path printed).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "pipit-test-{}-{}-{}-{}",
            tag,
            std::process::id(),
            n,
            nanos
        ));
        fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create temp dir {}: {}", path.display(), e));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "test failed: keeping {} for inspection",
                self.path.display()
            );
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

fn write_file(path: &Path, contents: &str) {
    fs::write(path, contents).unwrap_or_else(|e| panic!("cannot write {}: {}", path.display(), e));
}

/// The last `n` lines of a log file, for panic messages.
fn log_tail(path: &Path, n: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(n);
            format!(
                "--- last lines of {} ---\n{}",
                path.display(),
                lines[from..].join("\n")
            )
        }
        Err(e) => format!("(no log at {}: {})", path.display(), e),
    }
}

fn open_log(path: &Path) -> fs::File {
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot open log {}: {}", path.display(), e))
}

/// Stops a child by pid: SIGTERM via `kill`, poll for exit, SIGKILL after
/// [`STOP_DEADLINE`]. The child is reaped, so its pid cannot be reused
/// before this returns.
fn stop_child(child: &mut Child, name: &str) -> Result<(), String> {
    if let Ok(Some(_)) = child.try_wait() {
        return Ok(());
    }
    let pid = child.id();
    let term = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !matches!(term, Ok(s) if s.success()) {
        // No `kill` binary or it failed: fall back to SIGKILL.
        let _ = child.kill();
    }
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return Ok(()),
            Ok(None) => {}
            Err(e) => return Err(format!("{} (pid {}): wait failed: {}", name, pid, e)),
        }
        if start.elapsed() >= STOP_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{} (pid {}) did not exit within {:?} of SIGTERM; sent SIGKILL",
                name, pid, STOP_DEADLINE
            ));
        }
        thread::sleep(POLL);
    }
}

/// True when process `pid` holds a 127.0.0.1 socket bound to `port`
/// (listening, for "tcp"), per /proc/net/{tcp,udp} and /proc/<pid>/fd.
fn owns_socket(pid: u32, proto: &str, port: u16) -> bool {
    owns_socket_on(pid, proto, LOCALHOST, port)
}

/// Like [`owns_socket`], for a socket bound to the IPv4 address `host`.
fn owns_socket_on(pid: u32, proto: &str, host: &str, port: u16) -> bool {
    let table = match fs::read_to_string(format!("/proc/net/{}", proto)) {
        Ok(t) => t,
        Err(_) => return false,
    };
    let ip: std::net::Ipv4Addr = host.parse().expect("an IPv4 address");
    let [a, b, c, d] = ip.octets();
    let local = format!("{d:02X}{c:02X}{b:02X}{a:02X}:{:04X}", port);
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let listening = proto != "tcp" || cols.get(3) == Some(&"0A");
            (cols.get(1) == Some(&local.as_str()) && listening)
                .then(|| cols.get(9).map(|i| format!("socket:[{}]", i)))
                .flatten()
        })
        .collect();
    if inodes.is_empty() {
        return false;
    }
    let Ok(fds) = fs::read_dir(format!("/proc/{}/fd", pid)) else {
        return false;
    };
    fds.flatten().any(|fd| {
        fs::read_link(fd.path())
            .map(|target| inodes.iter().any(|i| target.as_os_str() == i.as_str()))
            .unwrap_or(false)
    })
}

fn tcp_accepts(port: u16) -> bool {
    tcp_accepts_on(LOCALHOST, port)
}

fn tcp_accepts_on(host: &str, port: u16) -> bool {
    let addr: SocketAddr = format!("{}:{}", host, port).parse().unwrap();
    TcpStream::connect_timeout(&addr, Duration::from_millis(250)).is_ok()
}

/// Why a server did not come up.
struct StartError {
    /// The new log output said a port was taken (worth retrying elsewhere).
    port_in_use: bool,
    message: String,
}

/// Length of a log file now, so that later checks see only new output.
fn log_len(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Log output written after byte `from`.
fn log_since(path: &Path, from: u64) -> String {
    let bytes = fs::read(path).unwrap_or_default();
    let from = (from as usize).min(bytes.len());
    String::from_utf8_lossy(&bytes[from..]).into_owned()
}

/// Waits until `ready()` holds. Fails early if the child exits first, or at
/// the deadline (after stopping the child).
fn wait_ready(
    child: &mut Child,
    name: &str,
    log: &Path,
    log_from: u64,
    mut ready: impl FnMut() -> bool,
) -> Result<(), StartError> {
    let start = Instant::now();
    loop {
        if ready() {
            return Ok(());
        }
        let failure = if let Ok(Some(status)) = child.try_wait() {
            Some(format!("{} exited during startup ({})", name, status))
        } else if start.elapsed() >= START_DEADLINE {
            let pid = child.id();
            let _ = stop_child(child, name);
            Some(format!(
                "{} (pid {}) not ready within {:?}",
                name, pid, START_DEADLINE
            ))
        } else {
            None
        };
        if let Some(what) = failure {
            return Err(StartError {
                port_in_use: log_since(log, log_from)
                    .to_ascii_lowercase()
                    .contains("address already in use"),
                message: format!("{}\n{}", what, log_tail(log, 40)),
            });
        }
        thread::sleep(POLL);
    }
}

/// Attempts at a first start; a port handed out by [`free_port`] can be
/// taken by another process before the server binds it.
const START_ATTEMPTS: usize = 3;

fn spawn(name: &str, cmd: &mut Command) -> Child {
    cmd.spawn()
        .unwrap_or_else(|e| panic!("cannot start {} ({:?}): {}; {}", name, cmd, e, INSTALL_HINT))
}

// ---------------------------------------------------------- carbon-cache --

/// A private carbon-cache (whisper backend) with line (TCP), UDP and
/// pickle receivers on free 127.0.0.1 ports (or another local address).
pub struct CarbonCache {
    dir: TempDir,
    host: String,
    line_port: u16,
    pickle_port: u16,
    udp_port: u16,
    query_port: u16,
    child: Option<Child>,
}

impl CarbonCache {
    /// Starts carbon-cache with a single `1s:1h` archive.
    pub fn start() -> CarbonCache {
        CarbonCache::start_with_retentions("1s:1h")
    }

    /// Starts carbon-cache with the given whisper retentions for every
    /// metric (storage-schemas.conf syntax, e.g. `"1s:1h,1m:1d"`).
    pub fn start_with_retentions(retentions: &str) -> CarbonCache {
        CarbonCache::start_on(LOCALHOST, retentions)
    }

    /// Starts carbon-cache listening on the local IPv4 address `host`
    /// (such as one end of a veth pair) with the given retentions.
    pub fn start_on(host: &str, retentions: &str) -> CarbonCache {
        let dir = TempDir::new("carbon");
        let mut c = CarbonCache {
            dir,
            host: host.to_owned(),
            line_port: free_port(),
            pickle_port: free_port(),
            udp_port: free_udp_port(),
            query_port: free_port(),
            child: None,
        };
        fs::create_dir_all(c.whisper_dir()).expect("create whisper dir");
        for attempt in 1..=START_ATTEMPTS {
            c.write_config(retentions);
            match c.spawn() {
                Ok(()) => return c,
                Err(e) if e.port_in_use && attempt < START_ATTEMPTS => {
                    c.line_port = free_port();
                    c.pickle_port = free_port();
                    c.udp_port = free_udp_port();
                    c.query_port = free_port();
                }
                Err(e) => panic!("{}", e.message),
            }
        }
        unreachable!("carbon-cache start attempts exhausted")
    }

    fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// Directory holding the .wsp files.
    pub fn whisper_dir(&self) -> PathBuf {
        self.storage_dir().join("whisper")
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("carbon.conf")
    }

    fn pid_path(&self) -> PathBuf {
        self.dir.path().join("carbon-cache.pid")
    }

    /// carbon-cache's own output (twistd logs to stdout with --nodaemon).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("carbon-cache.log")
    }

    fn write_config(&self, retentions: &str) {
        let s = self.storage_dir();
        let s = s.display();
        let conf = format!(
            "[cache]\n\
             STORAGE_DIR = {s}\n\
             LOCAL_DATA_DIR = {s}/whisper\n\
             WHITELISTS_DIR = {s}/lists\n\
             LOG_DIR = {s}/log\n\
             PID_DIR = {s}\n\
             USER =\n\
             MAX_CACHE_SIZE = inf\n\
             MAX_UPDATES_PER_SECOND = 100000\n\
             MAX_CREATES_PER_MINUTE = inf\n\
             ENABLE_TAGS = False\n\
             LINE_RECEIVER_INTERFACE = {h}\n\
             LINE_RECEIVER_PORT = {line}\n\
             ENABLE_UDP_LISTENER = True\n\
             UDP_RECEIVER_INTERFACE = {h}\n\
             UDP_RECEIVER_PORT = {udp}\n\
             PICKLE_RECEIVER_INTERFACE = {h}\n\
             PICKLE_RECEIVER_PORT = {pickle}\n\
             CACHE_QUERY_INTERFACE = {h}\n\
             CACHE_QUERY_PORT = {query}\n\
             CARBON_METRIC_INTERVAL = 0\n\
             LOG_LISTENER_CONN_SUCCESS = False\n\
             LOG_UPDATES = False\n\
             LOG_CREATES = False\n\
             LOG_CACHE_HITS = False\n\
             LOG_CACHE_QUEUE_SORTS = False\n",
            s = s,
            h = self.host,
            line = self.line_port,
            udp = self.udp_port,
            pickle = self.pickle_port,
            query = self.query_port,
        );
        write_file(&self.config_path(), &conf);
        write_file(
            &self.dir.path().join("storage-schemas.conf"),
            &format!("[default]\npattern = .*\nretentions = {}\n", retentions),
        );
        write_file(
            &self.dir.path().join("storage-aggregation.conf"),
            "[default]\npattern = .*\nxFilesFactor = 0\naggregationMethod = average\n",
        );
    }

    fn spawn(&mut self) -> Result<(), StartError> {
        assert!(self.child.is_none(), "carbon-cache already running");
        // A pidfile left by a killed instance would make carbon refuse to
        // start if the pid happens to be alive again.
        let _ = fs::remove_file(self.pid_path());
        let log = self.log_path();
        let mut cmd = Command::new(CARBON_CACHE_BIN);
        cmd.arg(format!("--config={}", self.config_path().display()))
            .arg(format!("--pidfile={}", self.pid_path().display()))
            .arg("--nodaemon")
            .arg("start")
            .current_dir(self.dir.path())
            .env_remove("GRAPHITE_ROOT")
            .env_remove("GRAPHITE_CONF_DIR")
            .env_remove("GRAPHITE_STORAGE_DIR")
            .env("PYTHONWARNINGS", "ignore")
            .stdin(Stdio::null())
            .stdout(open_log(&log))
            .stderr(open_log(&log));
        let log_from = log_len(&log);
        let mut child = spawn("carbon-cache", &mut cmd);
        // Ready once this very process owns all three sockets (so a port
        // squatted by someone else is not mistaken for carbon) and the
        // line port accepts connections.
        let pid = child.id();
        let (line, pickle, udp) = (self.line_port, self.pickle_port, self.udp_port);
        let host = self.host.as_str();
        wait_ready(&mut child, "carbon-cache", &log, log_from, || {
            owns_socket_on(pid, "tcp", host, line)
                && owns_socket_on(pid, "tcp", host, pickle)
                && owns_socket_on(pid, "udp", host, udp)
                && tcp_accepts_on(host, line)
        })?;
        self.child = Some(child);
        Ok(())
    }

    pub fn line_port(&self) -> u16 {
        self.line_port
    }

    pub fn pickle_port(&self) -> u16 {
        self.pickle_port
    }

    pub fn udp_port(&self) -> u16 {
        self.udp_port
    }

    /// Pid of the running carbon-cache; panics when stopped.
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .expect("carbon-cache is not running")
            .id()
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGTERM and wait for exit (takes up to ~1 s). carbon-cache does NOT
    /// flush its in-memory cache on shutdown: its writer thread drains the
    /// cache to whisper and then sleeps 1 s, and exits at the stop without
    /// another drain, so points it read up to about a second before are
    /// lost (tests/reliability.rs shows it). It closes its connections at
    /// once. `wait_for` what must survive before stopping. No-op when
    /// already stopped.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Err(e) = stop_child(&mut child, "carbon-cache") {
                panic!("{}\n{}", e, log_tail(&self.log_path(), 20));
            }
        }
    }

    /// Stops (if running) and starts again on the same ports and storage.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.spawn() {
            panic!("carbon-cache restart failed: {}", e.message);
        }
    }

    /// Points `(timestamp, value)` stored for `metric_path` (dotted), non-null
    /// only, oldest first; empty when the .wsp file does not exist yet.
    /// Panics when the file cannot be read (retrying briefly first, as a
    /// file being created can be momentarily incomplete).
    pub fn read(&self, metric_path: &str) -> Vec<(i64, f64)> {
        self.retrying(metric_path, || self.try_read(metric_path))
    }

    /// Every (untagged) metric with its points, as [`read`](Self::read)
    /// gives them, in one run of python.
    pub fn read_all(&self) -> BTreeMap<String, Vec<(i64, f64)>> {
        self.retrying("every metric", || self.dump(&[]))
    }

    /// The points of each of `metrics` (tagged or not) that has a whisper file, in one run of
    /// python.
    pub fn read_many(&self, metrics: &[&str]) -> BTreeMap<String, Vec<(i64, f64)>> {
        self.retrying("metrics", || self.dump(metrics))
    }

    fn retrying<T>(&self, what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
        let start = Instant::now();
        loop {
            match f() {
                Ok(v) => return v,
                Err(e) if start.elapsed() >= Duration::from_secs(3) => {
                    panic!("carbon-cache: cannot read {}: {}", what, e)
                }
                Err(_) => thread::sleep(POLL),
            }
        }
    }

    /// Like [`read`](Self::read) but returns errors instead of panicking.
    pub fn try_read(&self, metric_path: &str) -> Result<Vec<(i64, f64)>, String> {
        Ok(self
            .dump(&[metric_path])?
            .remove(metric_path)
            .unwrap_or_default())
    }

    /// The points of `metrics` (or of every untagged metric when there are none) by metric path.
    fn dump(&self, metrics: &[&str]) -> Result<BTreeMap<String, Vec<(i64, f64)>>, String> {
        // Path mapping as carbon's whisper backend does it: dots become
        // directories; ';'-tagged names go through carbon's own
        // TaggedSeries.encode (default TAG_HASH_FILENAMES=True). Importing
        // carbon costs ~150 ms, so only then.
        const SCRIPT: &str = r#"
import os, sys, time, whisper
root = sys.argv[1]
def dump(name, path):
    (start, end, step), values = whisper.fetch(path, 0, int(time.time()) + 1)
    for i, v in enumerate(values):
        if v is not None:
            print('%s %d %r' % (name, start + i * step, v))
for metric in sys.argv[2:]:
    if ';' in metric:
        from carbon.util import TaggedSeries
        rel = TaggedSeries.encode(metric, os.sep, hash_only=True)
    else:
        rel = metric.replace('.', os.sep).lstrip(os.sep)
    path = os.path.join(root, rel + '.wsp')
    if os.path.exists(path):
        dump(metric, path)
if len(sys.argv) == 2:
    for d, dirs, files in os.walk(root):
        if d == root and '_tagged' in dirs:
            dirs.remove('_tagged')
        for f in sorted(files):
            if f.endswith('.wsp'):
                rel = os.path.relpath(os.path.join(d, f[:-4]), root)
                dump(rel.replace(os.sep, '.'), os.path.join(d, f))
"#;
        let out = Command::new(SYSTEM_PYTHON)
            .arg("-c")
            .arg(SCRIPT)
            .arg(self.whisper_dir())
            .args(metrics)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {}; {}", SYSTEM_PYTHON, e, INSTALL_HINT))?;
        if !out.status.success() {
            return Err(format!(
                "whisper read failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let mut points: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
        for line in stdout.lines() {
            let mut parts = line.rsplitn(3, ' ');
            let v = parts.next().and_then(|v| v.parse::<f64>().ok());
            let ts = parts.next().and_then(|t| t.parse::<i64>().ok());
            match (parts.next(), ts, v) {
                (Some(name), Some(ts), Some(v)) => {
                    points.entry(name.to_owned()).or_default().push((ts, v))
                }
                _ => return Err(format!("unexpected whisper output line {:?}", line)),
            }
        }
        Ok(points)
    }

    /// Polls [`read`](Self::read) until `pred` holds for the points and
    /// returns them; panics at the deadline with the last points seen.
    /// carbon writes to whisper about once a second, so allow a few seconds.
    pub fn wait_for(
        &self,
        metric_path: &str,
        mut pred: impl FnMut(&[(i64, f64)]) -> bool,
        deadline: Duration,
    ) -> Vec<(i64, f64)> {
        let start = Instant::now();
        let mut last: Result<Vec<(i64, f64)>, String>;
        loop {
            last = self.try_read(metric_path);
            if let Ok(points) = &last {
                if pred(points) {
                    return points.clone();
                }
            }
            if start.elapsed() >= deadline {
                panic!(
                    "carbon-cache: metric '{}' did not reach the expected state within {:?}; \
                     last read: {:?}; metrics present: {:?}\n{}",
                    metric_path,
                    deadline,
                    last,
                    self.metrics(),
                    log_tail(&self.log_path(), 20)
                );
            }
            thread::sleep(POLL);
        }
    }

    /// Dotted names of all (untagged) metrics that have a .wsp file.
    pub fn metrics(&self) -> Vec<String> {
        fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) {
            let Ok(entries) = fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let path = entry.path();
                if path.is_dir() {
                    if prefix.is_empty() && name == "_tagged" {
                        continue;
                    }
                    walk(&path, &format!("{}{}.", prefix, name), out);
                } else if let Some(stem) = name.strip_suffix(".wsp") {
                    out.push(format!("{}{}", prefix, stem));
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.whisper_dir(), "", &mut out);
        out.sort();
        out
    }
}

impl Drop for CarbonCache {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Err(e) = stop_child(&mut child, "carbon-cache") {
                eprintln!("{}", e);
            }
        }
    }
}

// -------------------------------------------------------------- InfluxDB --

/// A private InfluxDB 1.x (`influxd run -config ...`) with HTTP on a free
/// 127.0.0.1 port; all other listeners disabled or on free loopback ports.
pub struct Influx {
    dir: TempDir,
    host: String,
    port: u16,
    rpc_port: u16,
    child: Option<Child>,
}

impl Influx {
    pub fn start() -> Influx {
        Influx::start_on(LOCALHOST)
    }

    /// Like [`start`](Self::start), with HTTP on `host` (an address of the root namespace).
    pub fn start_on(host: &str) -> Influx {
        let dir = TempDir::new("influx");
        let mut i = Influx {
            dir,
            host: host.to_owned(),
            port: free_port(),
            rpc_port: free_port(),
            child: None,
        };
        for attempt in 1..=START_ATTEMPTS {
            i.write_config();
            match i.spawn() {
                Ok(()) => return i,
                Err(e) if e.port_in_use && attempt < START_ATTEMPTS => {
                    i.port = free_port();
                    i.rpc_port = free_port();
                }
                Err(e) => panic!("{}", e.message),
            }
        }
        unreachable!("influxd start attempts exhausted")
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("influxdb.conf")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("influxd.log")
    }

    fn write_config(&self) {
        let d = self.dir.path().display();
        let conf = format!(
            "reporting-enabled = false\n\
             bind-address = \"{h}:{rpc}\"\n\
             [meta]\n  dir = \"{d}/meta\"\n  logging-enabled = false\n\
             [data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n\
             [monitor]\n  store-enabled = false\n\
             [subscriber]\n  enabled = false\n\
             [continuous_queries]\n  enabled = false\n\
             [http]\n  enabled = true\n  bind-address = \"{host}:{port}\"\n  log-enabled = false\n  \
             auth-enabled = false\n  unix-socket-enabled = false\n  bind-socket = \"{d}/influxd.sock\"\n\
             [ifql]\n  enabled = false\n\
             [logging]\n  level = \"warn\"\n",
            h = LOCALHOST,
            host = self.host,
            rpc = self.rpc_port,
            port = self.port,
            d = d,
        );
        write_file(&self.config_path(), &conf);
    }

    fn spawn(&mut self) -> Result<(), StartError> {
        assert!(self.child.is_none(), "influxd already running");
        let log = self.log_path();
        let mut cmd = Command::new(INFLUXD_BIN);
        cmd.arg("run")
            .arg("-config")
            .arg(self.config_path())
            .current_dir(self.dir.path())
            .env_remove("INFLUXDB_CONFIG_PATH")
            .stdin(Stdio::null())
            .stdout(open_log(&log))
            .stderr(open_log(&log));
        let log_from = log_len(&log);
        let mut child = spawn("influxd", &mut cmd);
        let (pid, port, host) = (child.id(), self.port, self.host.clone());
        wait_ready(&mut child, "influxd", &log, log_from, || {
            owns_socket_on(pid, "tcp", &host, port)
                && matches!(
                    http_request_on(&host, port, "GET", "/ping", b""),
                    Ok((204, _))
                )
        })?;
        self.child = Some(child);
        Ok(())
    }

    /// HTTP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("influxd is not running").id()
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Err(e) = stop_child(&mut child, "influxd") {
                panic!("{}\n{}", e, log_tail(&self.log_path(), 20));
            }
        }
    }

    /// Stops (if running) and starts again on the same ports and data dirs.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.spawn() {
            panic!("influxd restart failed: {}", e.message);
        }
    }

    /// One raw HTTP/1.0 request; returns (status, body).
    pub fn http(&self, method: &str, target: &str, body: &[u8]) -> Result<(u16, String), String> {
        http_request_on(&self.host, self.port, method, target, body)
    }

    pub fn create_db(&self, name: &str) {
        let q = format!("CREATE DATABASE \"{}\"", name.replace('"', "\\\""));
        let target = format!("/query?q={}", url_encode(&q));
        match self.http("POST", &target, b"") {
            Ok((200, body)) if !body.contains("\"error\"") => {}
            other => panic!("influxd: CREATE DATABASE {} failed: {:?}", name, other),
        }
    }

    /// Raw JSON body of `GET /query?db=..&q=..` (times as RFC3339).
    pub fn query(&self, db: &str, influxql: &str) -> String {
        self.query_target(format!(
            "/query?db={}&q={}",
            url_encode(db),
            url_encode(influxql)
        ))
    }

    /// Like [`query`](Self::query) with `epoch=` (`"ns"`, `"u"`, `"ms"`,
    /// `"s"`, ...), so times come back as integers.
    pub fn query_epoch(&self, db: &str, influxql: &str, epoch: &str) -> String {
        self.query_target(format!(
            "/query?db={}&epoch={}&q={}",
            url_encode(db),
            url_encode(epoch),
            url_encode(influxql)
        ))
    }

    fn query_target(&self, target: String) -> String {
        match self.http("GET", &target, b"") {
            Ok((200, body)) => body,
            other => panic!("influxd: GET {} failed: {:?}", target, other),
        }
    }

    /// POSTs line protocol to `/write?db=..&precision=..`; panics unless 204.
    pub fn write(&self, db: &str, precision: &str, lines: &str) {
        let target = format!(
            "/write?db={}&precision={}",
            url_encode(db),
            url_encode(precision)
        );
        match self.http("POST", &target, lines.as_bytes()) {
            Ok((204, _)) => {}
            other => panic!("influxd: POST {} failed: {:?}", target, other),
        }
    }
}

impl Drop for Influx {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Err(e) = stop_child(&mut child, "influxd") {
                eprintln!("{}", e);
            }
        }
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{:02X}", b)),
        }
    }
    out
}

/// A raw HTTP/1.0 request to 127.0.0.1:`port`; returns (status, body).
pub fn http_request(
    port: u16,
    method: &str,
    target: &str,
    body: &[u8],
) -> Result<(u16, String), String> {
    http_request_on(LOCALHOST, port, method, target, body)
}

/// Like [`http_request`], to `host`:`port`.
pub fn http_request_on(
    host: &str,
    port: u16,
    method: &str,
    target: &str,
    body: &[u8],
) -> Result<(u16, String), String> {
    let addr: SocketAddr = format!("{}:{}", host, port).parse().unwrap();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect {}: {}", addr, e))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    s.set_write_timeout(Some(Duration::from_secs(10))).ok();
    let head = format!(
        "{} {} HTTP/1.0\r\nHost: {}\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\
         Connection: close\r\n\r\n",
        method,
        target,
        addr,
        body.len()
    );
    s.write_all(head.as_bytes())
        .map_err(|e| format!("send: {}", e))?;
    s.write_all(body).map_err(|e| format!("send: {}", e))?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)
        .map_err(|e| format!("read: {}", e))?;
    let text = String::from_utf8_lossy(&resp).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("malformed HTTP response: {:?}", text))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| format!("malformed HTTP status line: {:?}", head.lines().next()))?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:")
            && l.to_ascii_lowercase().contains("chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size_line, rest)) = s.split_once("\r\n") {
        let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        s = rest[size..].strip_prefix("\r\n").unwrap_or(&rest[size..]);
    }
    out
}

// ---------------------------------------------------------------- Riemann --

/// `tests/peers/riemann_peer.py`: a Riemann TCP (and optionally UDP) server
/// recording every received event as a JSON line.
pub struct RiemannPeer {
    dir: TempDir,
    out: PathBuf,
    host: String,
    port: u16,
    mode: String,
    udp: bool,
    tls: Option<PeerTls>,
    child: Option<Child>,
}

/// The TLS files of a [`RiemannPeer`]: its certificate and key (PEM) and, when clients must show
/// a certificate, the CA that signs theirs.
#[derive(Debug, Clone)]
pub struct PeerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

impl RiemannPeer {
    /// TCP only; `mode` is `ok`, `fail`, `silent` or `close`.
    pub fn start(mode: &str) -> RiemannPeer {
        RiemannPeer::start_with(mode, false, 0)
    }

    /// Mode `ok`, TCP and UDP on the same port number.
    pub fn start_udp() -> RiemannPeer {
        RiemannPeer::start_with("ok", true, 0)
    }

    /// Mode `ok`, TCP inside TLS.
    pub fn start_tls(tls: PeerTls) -> RiemannPeer {
        RiemannPeer::start_full("ok", false, 0, Some(tls))
    }

    /// `port` 0 picks a free port.
    pub fn start_with(mode: &str, udp: bool, port: u16) -> RiemannPeer {
        RiemannPeer::start_full(mode, udp, port, None)
    }

    /// Mode `ok`, TCP, listening on the local IPv4 address `host` (such as one end of a veth
    /// pair) instead of 127.0.0.1.
    pub fn start_on(host: &str) -> RiemannPeer {
        let mut p = RiemannPeer::new("ok", false, 0, None);
        p.host = host.to_owned();
        p.spawn();
        p
    }

    fn start_full(mode: &str, udp: bool, port: u16, tls: Option<PeerTls>) -> RiemannPeer {
        let mut p = RiemannPeer::new(mode, udp, port, tls);
        p.spawn();
        p
    }

    fn new(mode: &str, udp: bool, port: u16, tls: Option<PeerTls>) -> RiemannPeer {
        assert!(
            matches!(mode, "ok" | "fail" | "silent" | "close"),
            "RiemannPeer: unknown mode {:?} (ok|fail|silent|close)",
            mode
        );
        let dir = TempDir::new("riemann");
        let out = dir.path().join("events.jsonl");
        RiemannPeer {
            dir,
            out,
            host: LOCALHOST.to_owned(),
            port,
            mode: mode.to_string(),
            udp,
            tls,
            child: None,
        }
    }

    pub fn script_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests")
            .join("peers")
            .join("riemann_peer.py")
    }

    /// Python with riemann-client installed: `$PIPIT_TEST_PYTHON`, else `python3`.
    fn python() -> String {
        std::env::var("PIPIT_TEST_PYTHON").unwrap_or_else(|_| "python3".to_string())
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("riemann_peer.log")
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "riemann peer already running");
        let log = self.log_path();
        let mut cmd = Command::new(Self::python());
        cmd.arg(Self::script_path())
            .arg("--host")
            .arg(&self.host)
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--mode")
            .arg(&self.mode)
            .arg("--out")
            .arg(&self.out)
            .current_dir(self.dir.path())
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(open_log(&log));
        if self.udp {
            cmd.arg("--udp");
        }
        if let Some(tls) = &self.tls {
            cmd.arg("--tls-cert")
                .arg(&tls.cert)
                .arg("--tls-key")
                .arg(&tls.key);
            if let Some(ca) = &tls.client_ca {
                cmd.arg("--tls-ca").arg(ca);
            }
        }
        let mut child = spawn("riemann_peer.py", &mut cmd);
        let stdout = child.stdout.take().expect("riemann peer stdout");
        let (tx, rx) = mpsc::channel::<String>();
        thread::spawn(move || {
            // Forward the first line, then keep draining until EOF.
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let line = match rx.recv_timeout(START_DEADLINE) {
            Ok(line) => line,
            Err(e) => {
                let _ = stop_child(&mut child, "riemann_peer.py");
                panic!(
                    "riemann_peer.py did not print READY ({}); is riemann-client installed for {}? {}\n{}",
                    e,
                    Self::python(),
                    INSTALL_HINT,
                    log_tail(&log, 40)
                );
            }
        };
        let port = line
            .strip_prefix("READY ")
            .and_then(|p| p.trim().parse::<u16>().ok())
            .unwrap_or_else(|| panic!("riemann_peer.py: unexpected first line {:?}", line));
        if self.port != 0 && port != self.port {
            panic!(
                "riemann_peer.py bound port {} instead of {}",
                port, self.port
            );
        }
        claim_port(port);
        self.port = port;
        self.child = Some(child);
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .expect("riemann peer is not running")
            .id()
    }

    pub fn mode(&self) -> &str {
        &self.mode
    }

    /// JSON lines (compact, sorted keys) recorded so far, one per event.
    /// A Msg that failed to decode is recorded as a line with `decode_error`.
    pub fn events(&self) -> Vec<String> {
        let text = match fs::read(&self.out) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(_) => return Vec::new(),
        };
        // Only complete lines: a writer may be mid-line.
        let complete = match text.rfind('\n') {
            Some(i) => &text[..i],
            None => return Vec::new(),
        };
        complete
            .split('\n')
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// Waits until at least `n` events were recorded and returns them all.
    pub fn wait_events(&self, n: usize, deadline: Duration) -> Vec<String> {
        let start = Instant::now();
        loop {
            let events = self.events();
            if events.len() >= n {
                return events;
            }
            if start.elapsed() >= deadline {
                panic!(
                    "riemann peer (port {}, mode {}): expected at least {} events within {:?}, got {}: {:#?}\n{}",
                    self.port,
                    self.mode,
                    n,
                    deadline,
                    events.len(),
                    events,
                    log_tail(&self.log_path(), 20)
                );
            }
            thread::sleep(POLL);
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Err(e) = stop_child(&mut child, "riemann_peer.py") {
                panic!("{}", e);
            }
        }
    }

    /// Stops (if running) and starts again on the same port, keeping the
    /// recorded events, optionally in a different mode.
    pub fn restart(&mut self, mode: Option<&str>) {
        self.stop();
        if let Some(m) = mode {
            self.mode = m.to_string();
        }
        self.spawn();
    }
}

impl Drop for RiemannPeer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Err(e) = stop_child(&mut child, "riemann_peer.py") {
                eprintln!("{}", e);
            }
        }
    }
}

// ------------------------------------------------------------------ JSON --

/// Raw JSON text of top-level member `key` of the object `json`
/// (e.g. `"cpu"` with quotes, `1.5`, `null`, `{"a":"b"}`); nest calls for
/// deeper members: `json_field(json_field(line, "has")?, "ttl")`.
pub fn json_field<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let b = json.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    loop {
        i = skip_ws(b, i);
        match b.get(i)? {
            b'}' => return None,
            b',' => {
                i += 1;
                continue;
            }
            b'"' => {}
            _ => return None,
        }
        let key_end = scan_value(b, i)?;
        let raw_key = &json[i..key_end];
        i = skip_ws(b, key_end);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(b, i + 1);
        let end = scan_value(b, i)?;
        if unescape(&raw_key[1..raw_key.len() - 1]).as_deref() == Some(key) {
            return Some(&json[i..end]);
        }
        i = end;
    }
}

/// Member `key` as a string (unescaped); `None` when absent or not a string.
pub fn json_str(json: &str, key: &str) -> Option<String> {
    let raw = json_field(json, key)?;
    if raw.len() >= 2 && raw.starts_with('"') {
        unescape(&raw[1..raw.len() - 1])
    } else {
        None
    }
}

/// Member `key` as a number; `None` when absent, null or not a number.
pub fn json_f64(json: &str, key: &str) -> Option<f64> {
    json_field(json, key)?.parse::<f64>().ok()
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// End index (exclusive) of the JSON value starting at `i`.
fn scan_value(b: &[u8], mut i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => {
            i += 1;
            while i < b.len() {
                match b[i] {
                    b'\\' => i += 2,
                    b'"' => return Some(i + 1),
                    _ => i += 1,
                }
            }
            None
        }
        b'{' | b'[' => {
            let mut depth = 0usize;
            while i < b.len() {
                match b[i] {
                    b'"' => {
                        i = scan_value(b, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            None
        }
        _ => {
            let start = i;
            while i < b.len() && !matches!(b[i], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            {
                i += 1;
            }
            if i == start { None } else { Some(i) }
        }
    }
}

fn unescape(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            '"' => out.push('"'),
            '\\' => out.push('\\'),
            '/' => out.push('/'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'u' => {
                let hex: String = chars.by_ref().take(4).collect();
                let mut cp = u32::from_str_radix(&hex, 16).ok()?;
                if (0xD800..0xDC00).contains(&cp) {
                    // Surrogate pair: expect \uDC00..\uDFFF next.
                    if chars.next()? != '\\' || chars.next()? != 'u' {
                        return None;
                    }
                    let hex2: String = chars.by_ref().take(4).collect();
                    let lo = u32::from_str_radix(&hex2, 16).ok()?;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo.checked_sub(0xDC00)?);
                }
                out.push(char::from_u32(cp)?);
            }
            _ => return None,
        }
    }
    Some(out)
}

// ------------------------------------------------------- VictoriaMetrics --

/// Debian's VictoriaMetrics (single node).
pub const VICTORIA_METRICS_BIN: &str = "/usr/bin/victoria-metrics";

/// A private VictoriaMetrics with HTTP on a free 127.0.0.1 port, taking
/// InfluxDB line protocol on `/write` and `/api/v2/write`.
pub struct VictoriaMetrics {
    dir: TempDir,
    port: u16,
    child: Option<Child>,
}

impl VictoriaMetrics {
    /// Starts with `extra` flags, such as `-influxSkipSingleField`.
    pub fn start(extra: &[&str]) -> VictoriaMetrics {
        let dir = TempDir::new("victoria");
        let port = free_port();
        let log = dir.path().join("victoria-metrics.log");
        let mut cmd = Command::new(VICTORIA_METRICS_BIN);
        cmd.arg(format!("-httpListenAddr={}:{}", LOCALHOST, port))
            .arg(format!(
                "-storageDataPath={}",
                dir.path().join("data").display()
            ))
            .arg("-loggerLevel=ERROR")
            .args(extra)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(open_log(&log))
            .stderr(open_log(&log));
        let mut child = spawn("victoria-metrics", &mut cmd);
        wait_ready(&mut child, "victoria-metrics", &log, 0, || {
            matches!(http_request(port, "GET", "/health", b""), Ok((200, _)))
        })
        .unwrap_or_else(|e| panic!("{}", e.message));
        VictoriaMetrics {
            dir,
            port,
            child: Some(child),
        }
    }

    /// HTTP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The series matching `selector` (such as `{__name__=~"cpu.*"}`) as
    /// `/api/v1/export` gives them, one JSON line each, once there are `n`.
    pub fn export(&self, selector: &str, n: usize, deadline: Duration) -> Vec<String> {
        let target = format!("/api/v1/export?match[]={}", url_encode(selector));
        wait_until(
            &format!("{} series matching {}", n, selector),
            deadline,
            || {
                // Makes what was just written searchable.
                let _ = http_request(self.port, "GET", "/internal/force_flush", b"");
                let (status, body) = http_request(self.port, "GET", &target, b"").ok()?;
                let lines: Vec<String> = body
                    .lines()
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect();
                (status == 200 && lines.len() >= n).then_some(lines)
            },
        )
    }
}

impl Drop for VictoriaMetrics {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Err(e) = stop_child(&mut child, "victoria-metrics") {
                eprintln!("{}", e);
            }
        }
    }
}

// -------------------------------------------------------- carbon-c-relay --

/// Starts `cmd` (logging to `log`) and waits until the child itself owns TCP `port` on
/// 127.0.0.1 and the port accepts connections.
fn spawn_listening(
    name: &str,
    cmd: &mut Command,
    log: &Path,
    port: u16,
) -> Result<Child, StartError> {
    let log_from = log_len(log);
    let mut child = spawn(name, cmd);
    let pid = child.id();
    wait_ready(&mut child, name, log, log_from, || {
        owns_socket(pid, "tcp", port) && tcp_accepts(port)
    })?;
    Ok(child)
}

/// Debian's carbon-c-relay.
pub const CARBON_C_RELAY_BIN: &str = "/usr/bin/carbon-c-relay";

/// A private carbon-c-relay: a line receiver on a free 127.0.0.1 port (and nowhere else) in front
/// of the clusters and match rules the test gives it.
pub struct CarbonCRelay {
    dir: TempDir,
    port: u16,
    rules: String,
    args: Vec<String>,
    child: Option<Child>,
}

impl CarbonCRelay {
    /// Starts carbon-c-relay with `rules` (clusters and match rules in its config syntax) after a
    /// `listen` block for its port, and `args` on its command line (such as `["-c", "-_:#%"]`).
    pub fn start(rules: &str, args: &[&str]) -> CarbonCRelay {
        let mut relay = CarbonCRelay {
            dir: TempDir::new("c-relay"),
            port: free_port(),
            rules: rules.to_owned(),
            args: args.iter().map(|a| a.to_string()).collect(),
            child: None,
        };
        for attempt in 1..=START_ATTEMPTS {
            match relay.spawn() {
                Ok(()) => return relay,
                Err(e) if e.port_in_use && attempt < START_ATTEMPTS => relay.port = free_port(),
                Err(e) => panic!("{}", e.message),
            }
        }
        unreachable!("carbon-c-relay start attempts exhausted")
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("relay.conf")
    }

    /// carbon-c-relay's own output.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("relay.log")
    }

    fn spawn(&mut self) -> Result<(), StartError> {
        assert!(self.child.is_none(), "carbon-c-relay already running");
        write_file(
            &self.config_path(),
            &format!(
                "listen type linemode {LOCALHOST}:{} proto tcp;\n{}\n",
                self.port, self.rules
            ),
        );
        let log = self.log_path();
        let mut cmd = Command::new(CARBON_C_RELAY_BIN);
        // One worker, small batches (what arrives is sent on at once), and no statistics of its
        // own in the stream (`-s`).
        cmd.arg("-f")
            .arg(self.config_path())
            .args(["-w", "1", "-b", "100", "-s"])
            .args(&self.args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(open_log(&log))
            .stderr(open_log(&log));
        self.child = Some(spawn_listening(
            "carbon-c-relay",
            &mut cmd,
            &log,
            self.port,
        )?);
        Ok(())
    }

    /// The port of its line receiver.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for CarbonCRelay {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Err(e) = stop_child(&mut child, "carbon-c-relay") {
                eprintln!("{}", e);
            }
        }
    }
}

/// A counting carbon backend: a TCP listener on a loopback address that keeps every line it
/// receives, for tests that check where a relay sent each metric.
pub struct LineSink {
    addr: SocketAddr,
    lines: std::sync::Arc<Mutex<Vec<String>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl LineSink {
    /// Listens on `ip` (any 127.x.y.z address; the kernel routes all of 127/8 to loopback) at a
    /// port the kernel picks.
    pub fn start(ip: &str) -> LineSink {
        use std::sync::Arc;
        use std::sync::atomic::AtomicBool;
        let listener = TcpListener::bind((ip, 0))
            .unwrap_or_else(|e| panic!("LineSink: cannot bind {ip}:0: {e}"));
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("local_addr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (l, s) = (lines.clone(), stop.clone());
        thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (l, s) = (l.clone(), s.clone());
                        thread::spawn(move || {
                            let _ = conn.set_nonblocking(false);
                            let _ = conn.set_read_timeout(Some(Duration::from_millis(100)));
                            let mut reader = BufReader::new(conn);
                            let mut line = String::new();
                            while !s.load(Ordering::SeqCst) {
                                match reader.read_line(&mut line) {
                                    Ok(0) => return,
                                    Ok(_) if line.ends_with('\n') => {
                                        l.lock().unwrap().push(line.trim_end().to_owned());
                                        line.clear();
                                    }
                                    Ok(_) => {}
                                    Err(e)
                                        if matches!(
                                            e.kind(),
                                            std::io::ErrorKind::WouldBlock
                                                | std::io::ErrorKind::TimedOut
                                        ) => {}
                                    Err(_) => return,
                                }
                            }
                        });
                    }
                    Err(_) => thread::sleep(POLL),
                }
            }
        });
        LineSink { addr, lines, stop }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The lines received so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

impl Drop for LineSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------- carbon-relay --

/// Debian's Python carbon-relay entry point (graphite-carbon).
pub const CARBON_RELAY_BIN: &str = "/usr/bin/carbon-relay";

/// A private Python carbon-relay with consistent hashing: a line receiver on a free 127.0.0.1
/// port, sending plaintext lines to its destinations.
pub struct CarbonRelay {
    dir: TempDir,
    port: u16,
    pickle_port: u16,
    settings: String,
    child: Option<Child>,
}

impl CarbonRelay {
    /// Starts carbon-relay over `destinations` (`host:port[:instance]`) with `REPLICATION_FACTOR`
    /// `replication`, `DIVERSE_REPLICAS` `diverse`, and `extra` settings lines (`KEY = value`).
    pub fn start(
        destinations: &[String],
        replication: usize,
        diverse: bool,
        extra: &str,
    ) -> CarbonRelay {
        let settings = format!(
            "RELAY_METHOD = consistent-hashing\n\
             REPLICATION_FACTOR = {replication}\n\
             DIVERSE_REPLICAS = {}\n\
             DESTINATIONS = {}\n\
             DESTINATION_PROTOCOL = line\n\
             MAX_QUEUE_SIZE = 1000000\n{extra}\n",
            if diverse { "True" } else { "False" },
            destinations.join(", "),
        );
        let mut relay = CarbonRelay {
            dir: TempDir::new("carbon-relay"),
            port: free_port(),
            pickle_port: free_port(),
            settings,
            child: None,
        };
        for attempt in 1..=START_ATTEMPTS {
            match relay.spawn() {
                Ok(()) => return relay,
                Err(e) if e.port_in_use && attempt < START_ATTEMPTS => {
                    relay.port = free_port();
                    relay.pickle_port = free_port();
                }
                Err(e) => panic!("{}", e.message),
            }
        }
        unreachable!("carbon-relay start attempts exhausted")
    }

    /// carbon-relay's own output.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("carbon-relay.log")
    }

    fn spawn(&mut self) -> Result<(), StartError> {
        assert!(self.child.is_none(), "carbon-relay already running");
        let s = self.dir.path().join("storage");
        fs::create_dir_all(&s).expect("create storage dir");
        let s = s.display();
        let conf = self.dir.path().join("carbon.conf");
        write_file(
            &conf,
            &format!(
                "[relay]\n\
                 STORAGE_DIR = {s}\n\
                 LOCAL_DATA_DIR = {s}/whisper\n\
                 LOG_DIR = {s}/log\n\
                 PID_DIR = {s}\n\
                 USER =\n\
                 LINE_RECEIVER_INTERFACE = {h}\n\
                 LINE_RECEIVER_PORT = {line}\n\
                 PICKLE_RECEIVER_INTERFACE = {h}\n\
                 PICKLE_RECEIVER_PORT = {pickle}\n\
                 CARBON_METRIC_INTERVAL = 0\n\
                 LOG_LISTENER_CONN_SUCCESS = False\n\
                 {settings}",
                h = LOCALHOST,
                line = self.port,
                pickle = self.pickle_port,
                settings = self.settings,
            ),
        );
        write_file(
            &self.dir.path().join("storage-schemas.conf"),
            "[default]\npattern = .*\nretentions = 1s:1h\n",
        );
        let log = self.log_path();
        let mut cmd = Command::new(CARBON_RELAY_BIN);
        cmd.arg(format!("--config={}", conf.display()))
            .arg(format!(
                "--pidfile={}",
                self.dir.path().join("carbon-relay.pid").display()
            ))
            .arg("--nodaemon")
            .arg("start")
            .current_dir(self.dir.path())
            .env_remove("GRAPHITE_ROOT")
            .env_remove("GRAPHITE_CONF_DIR")
            .env_remove("GRAPHITE_STORAGE_DIR")
            // The config file holds UTF-8 (instance names) whatever the caller's locale.
            .env("PYTHONUTF8", "1")
            .env("PYTHONWARNINGS", "ignore")
            .stdin(Stdio::null())
            .stdout(open_log(&log))
            .stderr(open_log(&log));
        self.child = Some(spawn_listening("carbon-relay", &mut cmd, &log, self.port)?);
        Ok(())
    }

    /// The port of its line receiver.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for CarbonRelay {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Err(e) = stop_child(&mut child, "carbon-relay") {
                eprintln!("{}", e);
            }
        }
    }
}

// -------------------------------------------------------------- mosquitto --

/// Debian's MQTT broker.
pub const MOSQUITTO_BIN: &str = "/usr/sbin/mosquitto";

/// The user and password every [`Mosquitto`] requires.
pub const MQTT_USER: &str = "pipit";
/// See [`MQTT_USER`].
pub const MQTT_PASSWORD: &str = "s3cret-Pw";

/// A private mosquitto on a free 127.0.0.1 port, with persistence on (sessions and queued
/// messages survive a restart) and a password file: anonymous clients are refused. It may have
/// TLS listeners too, each on a port of its own.
pub struct Mosquitto {
    dir: TempDir,
    port: u16,
    tls_ports: Vec<u16>,
    child: Option<Child>,
}

impl Mosquitto {
    pub fn start() -> Mosquitto {
        Mosquitto::start_with_tls(&[])
    }

    /// Also listening on `host` (an address of this machine), on the same port as on 127.0.0.1.
    pub fn start_on(host: &str) -> Mosquitto {
        Mosquitto::start_listening(Some(host), &[])
    }

    /// With a TLS listener for each of `listeners` (its certificate and key; with `client_ca`,
    /// clients must show a certificate that CA signed), besides the plain one.
    pub fn start_with_tls(listeners: &[PeerTls]) -> Mosquitto {
        Mosquitto::start_listening(None, listeners)
    }

    fn start_listening(host: Option<&str>, listeners: &[PeerTls]) -> Mosquitto {
        let dir = TempDir::new("mosquitto");
        let passwd = dir.path().join("passwd");
        let status = Command::new("mosquitto_passwd")
            .args(["-b", "-c"])
            .arg(&passwd)
            .args([MQTT_USER, MQTT_PASSWORD])
            .status()
            .unwrap_or_else(|e| panic!("cannot run mosquitto_passwd: {e}; {INSTALL_HINT}"));
        assert!(status.success(), "mosquitto_passwd failed");
        let port = free_port();
        let mut conf = format!(
            "allow_anonymous false\npassword_file {}\n\
             persistence true\npersistence_location {}/\nmax_queued_messages 100000\n\
             user root\nlog_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n\
             listener {port} {LOCALHOST}\n",
            passwd.display(),
            dir.path().display()
        );
        if let Some(host) = host {
            conf.push_str(&format!("listener {port} {host}\n"));
        }
        let mut tls_ports = Vec::new();
        for tls in listeners {
            let tls_port = free_port();
            conf.push_str(&format!(
                "listener {tls_port} {LOCALHOST}\ncertfile {}\nkeyfile {}\n",
                tls.cert.display(),
                tls.key.display()
            ));
            if let Some(ca) = &tls.client_ca {
                conf.push_str(&format!(
                    "cafile {}\nrequire_certificate true\n",
                    ca.display()
                ));
            }
            tls_ports.push(tls_port);
        }
        fs::write(dir.path().join("mosquitto.conf"), conf).expect("write mosquitto.conf");
        let mut broker = Mosquitto {
            dir,
            port,
            tls_ports,
            child: None,
        };
        broker.launch();
        broker
    }

    fn launch(&mut self) {
        let log = self.log_path();
        let from = log_len(&log);
        let mut cmd = Command::new(MOSQUITTO_BIN);
        cmd.arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(open_log(&log))
            .stderr(open_log(&log));
        let mut child = spawn("mosquitto", &mut cmd);
        let ports: Vec<u16> = std::iter::once(self.port)
            .chain(self.tls_ports.iter().copied())
            .collect();
        wait_ready(&mut child, "mosquitto", &log, from, || {
            ports
                .iter()
                .all(|p| TcpStream::connect((LOCALHOST, *p)).is_ok())
        })
        .unwrap_or_else(|e| panic!("{}", e.message));
        self.child = Some(child);
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of the `i`th TLS listener given to [`Mosquitto::start_with_tls`].
    pub fn tls_port(&self, i: usize) -> u16 {
        self.tls_ports[i]
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("mosquitto.log")
    }

    /// Stops the broker (SIGTERM: it saves its persistence file first).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, "mosquitto").unwrap_or_else(|e| panic!("{e}"));
        }
    }

    /// Starts the broker again on the same port, from its persistence file.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Err(e) = stop_child(&mut child, "mosquitto") {
                eprintln!("{}", e);
            }
        }
    }
}

/// An independent subscriber (tests/peers/mqtt_sub.py, on Debian's paho-mqtt) with a persistent
/// session, writing what it receives as JSON lines.
pub struct MqttSubscriber {
    dir: TempDir,
    child: Option<Child>,
}

impl MqttSubscriber {
    /// Subscribes to `filters` at QoS 1 on `broker`; returns once the broker granted them.
    pub fn start(broker: &Mosquitto, filters: &[&str]) -> MqttSubscriber {
        let dir = TempDir::new("mqtt-sub");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/mqtt_sub.py");
        let out = dir.path().join("messages.jsonl");
        let mut cmd = Command::new(SYSTEM_PYTHON);
        cmd.arg(script)
            .arg(broker.port().to_string())
            .args([MQTT_USER, MQTT_PASSWORD])
            .arg(format!("sub-{}-{}", std::process::id(), free_port()))
            .args(filters)
            .stdin(Stdio::null())
            .stdout(open_log(&out))
            .stderr(open_log(&dir.path().join("stderr.log")));
        let child = spawn("mqtt_sub.py", &mut cmd);
        let sub = MqttSubscriber {
            dir,
            child: Some(child),
        };
        wait_until("the subscriber's subscription", START_DEADLINE, || {
            fs::read_to_string(&out)
                .ok()?
                .contains("\"subscribed\"")
                .then_some(())
        });
        sub
    }

    /// Every message received so far, as (topic, payload, retain, dup).
    pub fn messages(&self) -> Vec<(String, String, bool, bool)> {
        let text = fs::read_to_string(self.dir.path().join("messages.jsonl")).unwrap_or_default();
        text.lines()
            .filter(|l| l.contains("\"topic\""))
            .map(|l| {
                (
                    json_str(l, "topic").unwrap_or_default(),
                    json_str(l, "payload").unwrap_or_default(),
                    json_field(l, "retain") == Some("true"),
                    json_field(l, "dup") == Some("true"),
                )
            })
            .collect()
    }

    /// The messages once `done` holds for them; panics after `deadline`.
    pub fn wait(
        &self,
        what: &str,
        deadline: Duration,
        done: impl Fn(&[(String, String, bool, bool)]) -> bool,
    ) -> Vec<(String, String, bool, bool)> {
        wait_until(what, deadline, || {
            let m = self.messages();
            done(&m).then_some(m)
        })
    }
}

impl Drop for MqttSubscriber {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Err(e) = stop_child(&mut child, "mqtt_sub.py") {
                eprintln!("{}", e);
            }
        }
    }
}

// ------------------------------------------------------------ Prometheus --

/// Debian's Prometheus server.
pub const PROMETHEUS_BIN: &str = "/usr/bin/prometheus";

/// A private Prometheus (Debian's 2.42) on a free 127.0.0.1 port, scraping one target every
/// second, with its data in its own temp dir.
pub struct Prometheus {
    dir: TempDir,
    port: u16,
    /// Whether it takes remote writes.
    receiver: bool,
    child: Option<Child>,
}

impl Prometheus {
    /// Starts scraping `target` (`host:port`) at `/metrics`, with basic auth when `auth` is
    /// `Some((user, password))`.
    pub fn start(target: &str, auth: Option<(&str, &str)>) -> Prometheus {
        let auth = auth
            .map(|(u, p)| format!("    basic_auth: {{username: '{u}', password: '{p}'}}\n"))
            .unwrap_or_default();
        Prometheus::start_with(
            &format!(
                "global: {{scrape_interval: 1s, scrape_timeout: 1s}}\n\
                 scrape_configs:\n  - job_name: pipit\n{auth}    static_configs:\n      - targets: ['{target}']\n"
            ),
            false,
        )
    }

    /// Starts a remote-write receiver (`--web.enable-remote-write-receiver`, at
    /// `/api/v1/write`) that scrapes nothing; with `out_of_order_window` (such as `"1h"`) it
    /// takes samples older than the newest of their series by up to that much.
    pub fn start_receiver(out_of_order_window: Option<&str>) -> Prometheus {
        let storage = out_of_order_window
            .map(|w| format!("storage: {{tsdb: {{out_of_order_time_window: {w}}}}}\n"))
            .unwrap_or_default();
        Prometheus::start_with(&format!("global: {{scrape_interval: 1m}}\n{storage}"), true)
    }

    fn start_with(config_text: &str, receiver: bool) -> Prometheus {
        let dir = TempDir::new("prometheus");
        let config = dir.path().join("prometheus.yml");
        write_file(&config, config_text);
        let mut p = Prometheus {
            dir,
            port: free_port(),
            receiver,
            child: None,
        };
        for attempt in 1..=START_ATTEMPTS {
            match p.spawn(&config) {
                Ok(()) => return p,
                Err(e) if e.port_in_use && attempt < START_ATTEMPTS => p.port = free_port(),
                Err(e) => panic!("{}", e.message),
            }
        }
        unreachable!("prometheus start attempts exhausted")
    }

    fn spawn(&mut self, config: &Path) -> Result<(), StartError> {
        let log = self.dir.path().join("prometheus.log");
        let mut cmd = Command::new(PROMETHEUS_BIN);
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={}:{}", LOCALHOST, self.port))
            .args(
                self.receiver
                    .then_some("--web.enable-remote-write-receiver"),
            )
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(open_log(&log))
            .stderr(open_log(&log));
        let log_from = log_len(&log);
        let mut child = spawn("prometheus", &mut cmd);
        let port = self.port;
        wait_ready(&mut child, "prometheus", &log, log_from, || {
            matches!(http_request(port, "GET", "/-/ready", b""), Ok((200, _)))
        })?;
        self.child = Some(child);
        Ok(())
    }

    /// HTTP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops it by pid (SIGTERM, then SIGKILL after a deadline).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Err(e) = stop_child(&mut child, "prometheus") {
                panic!("{e}");
            }
        }
    }

    /// Stops it (if running) and starts it again on the same port and data.
    pub fn restart(&mut self) {
        self.stop();
        let config = self.dir.path().join("prometheus.yml");
        if let Err(e) = self.spawn(&config) {
            panic!("prometheus restart failed: {}", e.message);
        }
    }

    /// The JSON answer of an instant query through `/api/v1/query`.
    pub fn query(&self, expr: &str) -> String {
        let target = format!("/api/v1/query?query={}", url_encode(expr));
        match http_request(self.port, "GET", &target, b"") {
            Ok((200, body)) => body,
            other => panic!("prometheus query {expr}: {other:?}"),
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Err(e) = stop_child(&mut child, "prometheus") {
                eprintln!("{}", e);
            }
        }
    }
}
