//! The control socket: a local Unix socket on which `pipit ctl` (or any client speaking the
//! [`protocol`]) asks the running agent what it measures, how it is doing, to reload, or to stop.
//!
//! There is no network listener. The socket file is created owner-only (0600) in a directory that
//! must not be open to others, and every peer's uid is checked with `SO_PEERCRED` against
//! `control.allowed_uids` before a byte of its request is read.
//!
//! One thread accepts connections (blocking; woken by a connection to itself at shutdown); each
//! connection is served on its own short-lived thread, at most [`MAX_CONNECTIONS`] at once, with
//! a deadline for every request and a cap on its size, so a slow or hostile client never holds up
//! the agent or the other clients.

pub mod client;
pub mod protocol;
pub mod status;

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, bounded};

use crate::cache::lock;
use crate::complain::Complaint;
use crate::config::reader::{Problems, Table};
use crate::files::{Dir, FilesError, Sharing};
use crate::lifeline;
use crate::telemetry::Telemetry;
use crate::telemetry::catalogue::Query;
use crate::timed_read::{TimedReadError, read_before};
use protocol::{Code, ProtocolError, Request};

/// What the control socket asks of the run loop (which owns the agent), over a channel: the
/// server never sees the agent itself.
#[derive(Debug)]
pub enum Order {
    /// Re-read the config; the outcome (a summary, or every error) goes to the sender if any.
    Reload(Option<Sender<Result<String, Vec<String>>>>),
    /// Send the agent's status.
    Status(Sender<status::Status>),
    /// Stop gracefully; the text says why, for the log.
    Stop(&'static str),
}

/// Connections served at once; one more is answered `busy` and closed.
pub const MAX_CONNECTIONS: usize = 4;

/// How long a connection waits for the run loop to answer a `status` or `reload` (a reload may
/// wait for sources to stop, up to `agent.shutdown_timeout`).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// The longest socket path the kernel takes (`sun_path` holds 108 bytes with the final NUL).
const MAX_PATH_BYTES: usize = 107;

/// The log target of the control socket.
const LOG: &str = "control";

/// The `control` section.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlConfig {
    /// Whether the agent listens on the socket; default true (it is local and owner-only).
    pub enabled: bool,
    /// The socket path; default from [`default_socket`].
    pub socket: PathBuf,
    /// The uids that may connect; default the agent's own uid and root.
    pub allowed_uids: Vec<u32>,
    /// How long a client may take to send a complete request; default 5 s.
    pub request_timeout: Duration,
}

/// The defaults of the `control` section, in one place.
impl Default for ControlConfig {
    fn default() -> ControlConfig {
        let mut allowed_uids = vec![crate::sys::effective_uid(), 0];
        allowed_uids.dedup();
        ControlConfig {
            enabled: true,
            socket: default_socket(),
            allowed_uids,
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// The default socket path: `$RUNTIME_DIRECTORY/pipit.sock` when systemd provides one (its first
/// entry); else `/var/run/pipit/pipit.sock` for root; else `$XDG_RUNTIME_DIR/pipit.sock`; else
/// `/tmp/pipit-<uid>/pipit.sock`.
pub fn default_socket() -> PathBuf {
    default_socket_for(crate::sys::effective_uid())
}

fn default_socket_for(uid: u32) -> PathBuf {
    let env_dir = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .and_then(|p| {
                let first = p.to_string_lossy().split(':').next()?.to_owned();
                Some(PathBuf::from(first))
            })
            .filter(|p| p.is_absolute())
    };
    if let Some(dir) = env_dir("RUNTIME_DIRECTORY") {
        return dir.join("pipit.sock");
    }
    if uid == 0 {
        return PathBuf::from("/var/run/pipit/pipit.sock");
    }
    match env_dir("XDG_RUNTIME_DIR") {
        Some(dir) => dir.join("pipit.sock"),
        None => PathBuf::from(format!("/tmp/pipit-{uid}/pipit.sock")),
    }
}

/// Where `pipit ctl` looks when no socket is named: the default for its own uid, then root's
/// (an allowed non-root operator talking to an agent run by root).
pub fn default_sockets() -> Vec<PathBuf> {
    let mut paths = vec![default_socket(), default_socket_for(0)];
    paths.dedup();
    paths
}

/// Reads the `control` section.
pub fn read_config(mut t: Table<'_>, problems: &mut Problems) -> ControlConfig {
    let d = ControlConfig::default();
    let enabled = t.get_or("enabled", d.enabled, problems);
    let socket = match t.field("socket") {
        None => d.socket,
        Some(field) => match field.as_str() {
            Some(s) if !s.starts_with('/') => {
                problems.expected(&field, "an absolute path");
                d.socket
            }
            Some(s) if s.len() > MAX_PATH_BYTES => {
                problems.at(
                    &field,
                    format!("a socket path may have at most {MAX_PATH_BYTES} bytes"),
                );
                d.socket
            }
            Some(s) if s.ends_with('/') => {
                problems.expected(&field, "the path of a file, not a directory");
                d.socket
            }
            Some(s) => PathBuf::from(s),
            None => {
                problems.expected(&field, "a path");
                d.socket
            }
        },
    };
    let allowed_uids = match t.field("allowed_uids") {
        None => d.allowed_uids,
        Some(field) => {
            let uids: Option<Vec<u64>> = field.parse(problems);
            match uids {
                Some(uids) if uids.iter().all(|&u| u < u64::from(u32::MAX)) => {
                    uids.into_iter().map(|u| u as u32).collect()
                }
                Some(_) => {
                    problems.expected(&field, "uids (numbers below 4294967295)");
                    d.allowed_uids
                }
                None => d.allowed_uids,
            }
        }
    };
    let request_timeout = t.duration_at_least(
        "request_timeout",
        d.request_timeout,
        Duration::from_millis(10),
        problems,
    );
    t.finish(problems);
    ControlConfig {
        enabled,
        socket,
        allowed_uids,
        request_timeout,
    }
}

/// Why the control socket could not be set up. The agent logs it and runs without the socket.
#[derive(Debug)]
#[non_exhaustive]
pub enum ControlError {
    /// The socket's directory is unsafe or cannot be made; fix it or set `control.socket`.
    Directory {
        /// The directory.
        dir: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// Another agent answers on the socket; stop it, or give this one its own `control.socket`.
    InUse(PathBuf),
    /// Something other than a socket is at the path; it is left alone. Move it or pick another path.
    NotASocket(PathBuf),
    /// The socket could not be created: the error says why (permission, no space); fix that or
    /// set `control.socket`.
    Io {
        /// The socket path.
        path: PathBuf,
        /// The error.
        error: io::Error,
    },
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlError::Directory { dir, problem } => {
                write!(f, "socket directory {}: {problem}", dir.display())
            }
            ControlError::InUse(path) => write!(
                f,
                "another agent answers on {}; stop it or set control.socket",
                path.display()
            ),
            ControlError::NotASocket(path) => write!(
                f,
                "{} exists and is not a socket; leaving it alone",
                path.display()
            ),
            ControlError::Io { path, error } => write!(f, "{}: {error}", path.display()),
        }
    }
}

impl std::error::Error for ControlError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ControlError::Io { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// What the accepting thread and the connection threads share.
struct Shared {
    telemetry: Arc<Telemetry>,
    orders: Sender<Order>,
    allowed_uids: Vec<u32>,
    request_timeout: Duration,
    open: AtomicUsize,
    stopping: AtomicBool,
    /// Logs requests refused for their size, once while they go on.
    cut_off: Mutex<Complaint>,
}

/// The listening control socket; closed and removed when dropped.
pub struct Server {
    path: PathBuf,
    inode: u64,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server").field("path", &self.path).finish()
    }
}

impl Server {
    /// Creates the socket and starts accepting; `orders` is the run loop's channel.
    pub fn start(
        config: &ControlConfig,
        telemetry: Arc<Telemetry>,
        orders: Sender<Order>,
    ) -> Result<Server, ControlError> {
        let path = config.socket.clone();
        let (listener, inode) = bind(&path)?;
        let shared = Arc::new(Shared {
            telemetry,
            orders,
            allowed_uids: config.allowed_uids.clone(),
            request_timeout: config.request_timeout,
            open: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            cut_off: Mutex::new(Complaint::new(LOG)),
        });
        let accepting = shared.clone();
        let thread = lifeline::spawn("control".into(), move || accept_loop(listener, &accepting))
            .map_err(|error| ControlError::Io {
            path: path.clone(),
            error,
        })?;
        log::info!(target: LOG, "listening on {} (uids {:?})", path.display(), config.allowed_uids);
        Ok(Server {
            path,
            inode,
            shared,
            thread: Some(thread),
        })
    }
}

impl Drop for Server {
    /// Stops accepting and removes the socket file, if it is still the one this server made.
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // The accepting thread blocks in accept: a connection wakes it to see the flag. If the
        // path no longer leads to it (someone replaced the file), it is left behind, not waited
        // for: the process is about to exit.
        let _ = UnixStream::connect(&self.path);
        let deadline = Instant::now() + Duration::from_secs(1);
        if let Some(t) = self.thread.take() {
            while !t.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
        let ours = fs::symlink_metadata(&self.path).is_ok_and(|m| m.ino() == self.inode);
        if ours {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Checks (or makes) the directory, clears a stale socket, and binds `path` owner-only. The
/// directory is opened once (see [`crate::files`]): a symlink at its path is refused, and the
/// socket is placed through that handle, so swapping the path afterwards changes nothing.
fn bind(path: &Path) -> Result<(UnixListener, u64), ControlError> {
    let io_error = |error| ControlError::Io {
        path: path.to_owned(),
        error,
    };
    let dir = open_dir(path.parent().unwrap_or(Path::new("/")))?;
    let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
        io_error(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the socket needs a UTF-8 file name",
        ))
    })?;
    match dir.stat(name).map_err(files_error)? {
        Some(s) if s.is_socket() => {
            if UnixStream::connect(path).is_ok() {
                return Err(ControlError::InUse(path.to_owned()));
            }
            log::info!(target: LOG, "removing the stale socket {}", path.display());
            dir.remove(name).map_err(files_error)?;
        }
        Some(_) => return Err(ControlError::NotASocket(path.to_owned())),
        None => {}
    }
    match dir.bind_socket(name) {
        Ok(bound) => Ok(bound),
        Err(e) if e.io_kind() == Some(io::ErrorKind::AlreadyExists) => {
            Err(ControlError::InUse(path.to_owned()))
        }
        Err(e) => Err(files_error(e)),
    }
}

/// Opens (making it 0700 if missing) the socket's directory; refuses it if others could replace
/// the socket in it.
fn open_dir(dir: &Path) -> Result<Dir, ControlError> {
    Dir::open(dir, Sharing::Sticky).map_err(files_error)
}

fn files_error(e: FilesError) -> ControlError {
    match e {
        FilesError::Refused { path, problem } => ControlError::Directory { dir: path, problem },
        FilesError::Io { path, error } => ControlError::Io { path, error },
    }
}

fn accept_loop(listener: UnixListener, shared: &Arc<Shared>) {
    let mut refusals = Complaint::new(LOG);
    let mut failures = Complaint::new(LOG);
    for conn in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let stream = match conn {
            Ok(stream) => {
                failures.recover();
                crate::fault::point("control");
                stream
            }
            Err(e) => {
                failures.fail(&format!("cannot accept a connection: {e}"));
                // Out of descriptors, say: do not spin while it lasts.
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        match crate::sys::peer_uid(&stream) {
            Ok(uid) if shared.allowed_uids.contains(&uid) => {}
            Ok(uid) => {
                refusals.fail(&format!(
                    "refused a connection from uid {uid}: not in control.allowed_uids"
                ));
                refuse(
                    stream,
                    Code::Forbidden,
                    &format!("uid {uid} is not in control.allowed_uids"),
                );
                continue;
            }
            Err(e) => {
                refusals.fail(&format!("refused a connection: cannot tell its uid: {e}"));
                refuse(stream, Code::Forbidden, "cannot tell the peer's uid");
                continue;
            }
        }
        if shared.open.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            shared.open.fetch_sub(1, Ordering::SeqCst);
            refuse(
                stream,
                Code::Busy,
                &format!("{MAX_CONNECTIONS} connections are open; try again"),
            );
            continue;
        }
        let serving = shared.clone();
        let spawned = thread::Builder::new()
            .name("control/conn".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                // A panic answering one request closes that connection; the count must still drop.
                if let Err(panic) = lifeline::catch(|| serve(stream, &serving)) {
                    log::error!(target: LOG, "answering a request panicked: {panic}; its connection is closed");
                }
                serving.open.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            shared.open.fetch_sub(1, Ordering::SeqCst);
            failures.fail(&format!("cannot start a thread for a connection: {e}"));
        }
    }
}

/// Answers `code` and closes, without waiting on the peer.
fn refuse(mut stream: UnixStream, code: Code, message: &str) {
    let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
    let _ = stream.write_all(protocol::error_line(&ProtocolError::new(code, message)).as_bytes());
}

/// Why no request could be read.
enum ReadError {
    TooLarge,
    Timeout,
    Io,
}

/// Reads the next request line into a buffer, within `timeout`; `None` at the end of the stream.
/// Bytes after the newline stay in `pending` for the next request.
fn read_request(
    stream: &mut UnixStream,
    pending: &mut Vec<u8>,
    timeout: Duration,
) -> Result<Option<Vec<u8>>, ReadError> {
    let deadline = Instant::now() + timeout;
    let mut chunk = [0u8; 4096];
    loop {
        let end = pending.iter().position(|&b| b == b'\n');
        if end.unwrap_or(pending.len()) > protocol::MAX_REQUEST_BYTES {
            return Err(ReadError::TooLarge);
        }
        if let Some(end) = end {
            let line = pending.drain(..=end).collect();
            return Ok(Some(line));
        }
        if Instant::now() >= deadline {
            return Err(ReadError::Timeout);
        }
        match read_before(stream, &mut chunk, deadline, |s, left| {
            s.set_read_timeout(Some(left))
        }) {
            // The last request may end at the end of the stream instead of a newline.
            Ok(0) if pending.is_empty() => return Ok(None),
            Ok(0) => return Ok(Some(std::mem::take(pending))),
            Ok(n) => pending.extend_from_slice(&chunk[..n]),
            Err(TimedReadError::TimedOut) => return Err(ReadError::Timeout),
            Err(TimedReadError::Io(_)) => return Err(ReadError::Io),
        }
    }
}

/// Serves one connection: requests in, answers out, until the peer closes, errs or is too slow.
fn serve(mut stream: UnixStream, shared: &Shared) {
    let _ = stream.set_write_timeout(Some(shared.request_timeout));
    let mut pending = Vec::new();
    loop {
        let line = match read_request(&mut stream, &mut pending, shared.request_timeout) {
            Ok(Some(line)) => line,
            Ok(None) | Err(ReadError::Io) => return,
            Err(ReadError::TooLarge) => {
                let message = format!(
                    "a request may have at most {} bytes",
                    protocol::MAX_REQUEST_BYTES
                );
                lock(&shared.cut_off).fail(&format!("{message}: refused a longer one and closed"));
                refuse(stream, Code::TooLarge, &message);
                return;
            }
            Err(ReadError::Timeout) => {
                let message = format!(
                    "no complete request within {}",
                    crate::config::duration::format(shared.request_timeout)
                );
                refuse(stream, Code::Timeout, &message);
                return;
            }
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let (answer, last) = answer(&line, shared);
        let written = match answer {
            Answer::Line(line) => stream.write_all(line.as_bytes()),
            Answer::Metrics { query, metadata } => {
                let mut out = io::BufWriter::with_capacity(METRICS_BUFFER, &stream);
                let catalogue = &shared.telemetry.catalogue;
                protocol::write_metrics_result(&mut out, catalogue, &query, metadata)
                    .and_then(|()| out.flush())
            }
        };
        if written.is_err() || last {
            return;
        }
    }
}

/// Bytes of a `get_metrics` answer buffered before they are written to the socket.
const METRICS_BUFFER: usize = 16 * 1024;

/// The answer to one request.
enum Answer {
    /// One whole line.
    Line(String),
    /// The metrics a query selects, written to the socket row by row.
    Metrics {
        /// What to select.
        query: Query,
        /// Whether each row carries its metadata or only its name.
        metadata: bool,
    },
}

/// The answer to one request, and whether it ends the connection (after `stop`).
fn answer(line: &[u8], shared: &Shared) -> (Answer, bool) {
    let request = match protocol::parse_request(line) {
        Ok(request) => request,
        Err(e) => {
            log::debug!(target: LOG, "bad request: {}", e.message);
            return (Answer::Line(protocol::error_line(&e)), false);
        }
    };
    let result = match request {
        Request::GetMetrics { query, metadata } => {
            return (Answer::Metrics { query, metadata }, false);
        }
        Request::Status => status_line(&shared.orders, REPLY_TIMEOUT),
        Request::Reload => match ask(&shared.orders, |tx| Order::Reload(Some(tx)), REPLY_TIMEOUT) {
            Ok(Ok(message)) => Ok(protocol::result_line(&protocol::Reloaded {
                reloaded: true,
                message: &message,
            })),
            Ok(Err(errors)) => Err(ProtocolError::new(
                Code::ReloadFailed,
                format!(
                    "the new config was refused; the running one stays:\n{}",
                    errors.join("\n")
                ),
            )),
            Err(e) => Err(e),
        },
        Request::Stop => {
            let sent = shared.orders.send_timeout(
                Order::Stop("stop requested over the control socket"),
                REPLY_TIMEOUT,
            );
            match sent {
                Ok(()) => {
                    let line = protocol::result_line(&protocol::Stopping { stopping: true });
                    return (Answer::Line(line), true);
                }
                Err(_) => Err(stopping()),
            }
        }
    };
    (
        Answer::Line(result.unwrap_or_else(|e| protocol::error_line(&e))),
        false,
    )
}

fn stopping() -> ProtocolError {
    ProtocolError::new(Code::Unavailable, "the agent is stopping")
}

/// The answer line to `status`, as the control socket sends it (and `pipit ctl status --json`
/// prints it): asked of the run loop through `orders`, waiting for it at most `timeout`.
pub fn status_line(orders: &Sender<Order>, timeout: Duration) -> Result<String, ProtocolError> {
    ask(orders, Order::Status, timeout).map(|s| protocol::result_line(&s))
}

/// Asks the run loop and waits for its answer, at most `timeout` for each of the two steps.
fn ask<T>(
    orders: &Sender<Order>,
    order: impl FnOnce(Sender<T>) -> Order,
    timeout: Duration,
) -> Result<T, ProtocolError> {
    let (tx, rx) = bounded(1);
    orders
        .send_timeout(order(tx), timeout)
        .map_err(|_| stopping())?;
    rx.recv_timeout(timeout).map_err(|e| {
        if e.is_timeout() {
            ProtocolError::new(
                Code::Unavailable,
                format!(
                    "the agent did not answer within {}",
                    crate::config::duration::format(timeout)
                ),
            )
        } else {
            stopping()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::json;
    use std::os::unix::fs::PermissionsExt;

    fn read(text: &str) -> (ControlConfig, Vec<String>) {
        let doc = json::parse(text).unwrap();
        let mut problems = Problems::new("c.json");
        let t = crate::config::reader::Field::root(&doc)
            .table(&mut problems)
            .unwrap();
        let config = read_config(t, &mut problems);
        let errors = problems
            .into_errors()
            .iter()
            .map(|e| e.to_string())
            .collect();
        (config, errors)
    }

    #[test]
    fn the_section_has_defaults_and_checks_its_keys() {
        let (c, errors) = read("{}");
        assert!(errors.is_empty());
        assert_eq!(c, ControlConfig::default());
        assert!(c.allowed_uids.contains(&0));
        let (c, errors) = read(
            r#"{"enabled": false, "socket": "/run/x/p.sock", "allowed_uids": [1000], "request_timeout": "2s"}"#,
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert!(!c.enabled);
        assert_eq!(c.socket, PathBuf::from("/run/x/p.sock"));
        assert_eq!(c.allowed_uids, vec![1000]);
        assert_eq!(c.request_timeout, Duration::from_secs(2));
        let (_, errors) = read(
            r#"{"socket": "p.sock", "allowed_uids": [-1], "request_timeout": "1ms", "port": 1}"#,
        );
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(
            errors[0].contains("socket: expected an absolute path"),
            "{}",
            errors[0]
        );
        let long = format!(r#"{{"socket": "/{}"}}"#, "a".repeat(120));
        assert!(read(&long).1[0].contains("at most 107 bytes"));
    }

    #[test]
    fn requests_are_split_at_newlines_and_capped() {
        let (mut client, mut server) = UnixStream::pair().unwrap();
        let timeout = Duration::from_secs(5);
        let mut pending = Vec::new();
        client.write_all(b"one\ntwo\nthr").unwrap();
        let mut next = |server: &mut UnixStream| {
            read_request(server, &mut pending, timeout).map_err(|e| match e {
                ReadError::TooLarge => "too large",
                ReadError::Timeout => "timeout",
                ReadError::Io => "io",
            })
        };
        assert_eq!(next(&mut server), Ok(Some(b"one\n".to_vec())));
        assert_eq!(next(&mut server), Ok(Some(b"two\n".to_vec())));
        client.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(next(&mut server), Ok(Some(b"thr".to_vec())));
        assert_eq!(next(&mut server), Ok(None));

        let (mut client, mut server) = UnixStream::pair().unwrap();
        let mut line = vec![b' '; protocol::MAX_REQUEST_BYTES + 1];
        line.push(b'\n');
        let writer = std::thread::spawn(move || client.write_all(&line));
        let mut pending = Vec::new();
        assert!(matches!(
            read_request(&mut server, &mut pending, timeout),
            Err(ReadError::TooLarge)
        ));
        drop(server);
        let _ = writer.join();
    }

    #[test]
    fn the_default_socket_depends_on_the_user() {
        assert!(default_socket_for(0).is_absolute());
        assert!(default_socket_for(1234).ends_with("pipit.sock"));
    }

    #[test]
    fn an_open_directory_is_refused() {
        let dir = std::env::temp_dir().join(format!("pipit-control-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        let e = open_dir(&dir).unwrap_err();
        assert!(e.to_string().contains("lets others write in it"), "{e}");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(open_dir(&dir).is_ok());
        let made = dir.join("made");
        open_dir(&made).unwrap();
        assert_eq!(fs::metadata(&made).unwrap().mode() & 0o777, 0o700);
        fs::remove_dir_all(&dir).unwrap();
    }
}
