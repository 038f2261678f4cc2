//! The listening endpoint: one thread, every socket non-blocking under poll(2) while a request
//! head arrives, then the answer written with a deadline for the whole of it.

use std::fmt;
use std::io::{self, BufWriter, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use super::HttpServerConfig;
use super::exposition;
#[cfg(feature = "status_page")]
use super::page::{Body, Page};
use super::request::{self, Refusal, Request};
use super::stream::Stream;
use crate::complain::Complaint;
use crate::telemetry::Telemetry;

/// The log target of the endpoint.
const LOG: &str = "http_server";

/// How much of an answer is gathered before it is written to the socket.
const WRITE_BUFFER: usize = 16 * 1024;

/// Why the endpoint could not start. The agent logs it and runs without the endpoint.
#[derive(Debug)]
#[non_exhaustive]
pub enum HttpServerError {
    /// An address could not be bound: another program uses the port, or the address is not on
    /// this host. Free the port or change `http_server.binds`.
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        error: io::Error,
    },
    /// The serving thread or its wake-up channel could not be made: the box is out of memory,
    /// threads or file descriptors. Free some, or leave the endpoint off.
    Io(io::Error),
    /// The certificate or key of `http_server.tls_cert` and `tls_key` cannot be used; the text
    /// says which file and why.
    #[cfg(feature = "tls")]
    Tls(String),
}

impl fmt::Display for HttpServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpServerError::Bind { addr, error } => write!(
                f,
                "cannot listen on {addr}: {error}; free the port or change http_server.binds"
            ),
            HttpServerError::Io(error) => write!(
                f,
                "cannot start: {error}; the box may be out of memory, threads or file descriptors"
            ),
            #[cfg(feature = "tls")]
            HttpServerError::Tls(why) => write!(
                f,
                "cannot serve HTTPS: {why}; fix http_server.tls_cert and tls_key"
            ),
        }
    }
}

impl std::error::Error for HttpServerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HttpServerError::Bind { error, .. } | HttpServerError::Io(error) => Some(error),
            #[cfg(feature = "tls")]
            HttpServerError::Tls(_) => None,
        }
    }
}

/// How one request (or connection) ended; each is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Served,
    NotFound,
    Method,
    Network,
    Unauthorized,
    Busy,
    TooLarge,
    Malformed,
    Timeout,
    CutOff,
    #[cfg(feature = "status_page")]
    Unavailable,
    #[cfg(feature = "tls")]
    NotTls,
}

impl Outcome {
    const ALL: &[Outcome] = &[
        Outcome::Served,
        Outcome::NotFound,
        Outcome::Method,
        Outcome::Network,
        Outcome::Unauthorized,
        Outcome::Busy,
        Outcome::TooLarge,
        Outcome::Malformed,
        Outcome::Timeout,
        Outcome::CutOff,
        #[cfg(feature = "status_page")]
        Outcome::Unavailable,
        #[cfg(feature = "tls")]
        Outcome::NotTls,
    ];

    fn label(self) -> &'static str {
        match self {
            Outcome::Served => "served",
            Outcome::NotFound => "not_found",
            Outcome::Method => "method_not_allowed",
            Outcome::Network => "refused_network",
            Outcome::Unauthorized => "refused_auth",
            Outcome::Busy => "refused_busy",
            Outcome::TooLarge => "refused_too_large",
            Outcome::Malformed => "refused_malformed",
            Outcome::Timeout => "refused_timeout",
            Outcome::CutOff => "answer_cut_off",
            #[cfg(feature = "status_page")]
            Outcome::Unavailable => "status_unavailable",
            #[cfg(feature = "tls")]
            Outcome::NotTls => "refused_not_tls",
        }
    }

    /// The status line and extra headers of the answer.
    fn status(self) -> &'static str {
        match self {
            Outcome::Served => "200 OK",
            Outcome::NotFound => "404 Not Found",
            Outcome::Method => "405 Method Not Allowed\r\nAllow: GET, HEAD",
            Outcome::Network => "403 Forbidden",
            Outcome::Unauthorized => "401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"pipit\"",
            Outcome::Busy => "503 Service Unavailable\r\nRetry-After: 1",
            Outcome::TooLarge => "431 Request Header Fields Too Large",
            Outcome::Malformed => "400 Bad Request",
            Outcome::Timeout => "408 Request Timeout",
            Outcome::CutOff => "500 Internal Server Error",
            #[cfg(feature = "status_page")]
            Outcome::Unavailable => "503 Service Unavailable\r\nRetry-After: 2",
            #[cfg(feature = "tls")]
            Outcome::NotTls => "400 Bad Request",
        }
    }

    /// What the log line says of a refusal.
    fn why(self) -> &'static str {
        match self {
            Outcome::Network => "its address is not in http_server.allowed_networks",
            Outcome::Unauthorized => "missing or wrong basic auth credentials",
            Outcome::Busy => "http_server.max_connections are open",
            Outcome::TooLarge => "its request is over http_server.max_request_bytes or max_headers",
            Outcome::Malformed => "its request is not HTTP/1.x",
            Outcome::Timeout => "its request took longer than http_server.request_timeout",
            Outcome::CutOff => {
                "the answer was not taken within http_server.write_timeout, or the peer left"
            }
            #[cfg(feature = "status_page")]
            Outcome::Unavailable => "the agent did not give its status in time (reloading?)",
            #[cfg(feature = "tls")]
            Outcome::NotTls => "it did not speak TLS to the HTTPS endpoint (plain http://?)",
            Outcome::Served | Outcome::NotFound | Outcome::Method => "",
        }
    }
}

/// The counts of outcomes and a complaint per refusal, owned by the serving thread.
struct Tally {
    counts: [u64; Outcome::ALL.len()],
    complaints: Vec<Complaint>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            counts: [0; Outcome::ALL.len()],
            complaints: Outcome::ALL.iter().map(|_| Complaint::new(LOG)).collect(),
        }
    }

    fn count(&mut self, outcome: Outcome, peer: IpAddr) {
        let i = outcome as usize;
        self.counts[i] += 1;
        if !outcome.why().is_empty() {
            self.complaints[i].fail(&format!("refused a client at {peer}: {}", outcome.why()));
        }
    }

    /// The counts as one counter family, for the end of `/metrics`.
    fn write(&self, out: &mut dyn Write) -> io::Result<()> {
        out.write_all(
            b"# HELP pipit_http_requests_total requests to the http_server endpoint by how they ended\n\
              # TYPE pipit_http_requests_total counter\n",
        )?;
        for &outcome in Outcome::ALL {
            writeln!(
                out,
                "pipit_http_requests_total{{outcome=\"{}\"}} {}",
                outcome.label(),
                self.counts[outcome as usize]
            )?;
        }
        Ok(())
    }
}

/// A connection whose request head is still arriving.
struct Connection {
    stream: Stream,
    peer: IpAddr,
    deadline: Instant,
    head: Vec<u8>,
    /// True until the first bytes arrive.
    #[cfg(feature = "tls")]
    fresh: bool,
}

/// The running endpoint; stops and closes its sockets when dropped.
pub struct Server {
    binds: Vec<SocketAddr>,
    wake: UnixStream,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("binds", &self.binds)
            .finish()
    }
}

impl Server {
    /// Binds every address of `config` and starts serving the catalogue of `telemetry` (and,
    /// with the `status_page` feature, the page with the agent's status from `status`).
    pub fn start(
        config: &HttpServerConfig,
        telemetry: Arc<Telemetry>,
        #[cfg(feature = "status_page")] status: super::StatusSource,
    ) -> Result<Server, HttpServerError> {
        let mut listeners = Vec::with_capacity(config.binds.len());
        let mut binds = Vec::with_capacity(config.binds.len());
        for &addr in &config.binds {
            let bind_error = |error| HttpServerError::Bind { addr, error };
            let listener = TcpListener::bind(addr).map_err(bind_error)?;
            listener.set_nonblocking(true).map_err(bind_error)?;
            binds.push(listener.local_addr().map_err(bind_error)?);
            listeners.push(listener);
        }
        let (wake, woken) = UnixStream::pair().map_err(HttpServerError::Io)?;
        #[cfg(feature = "tls")]
        let tls = match &config.tls {
            Some(files) => Some(super::tls::server_config(files).map_err(HttpServerError::Tls)?),
            None => None,
        };
        let endpoint = Endpoint {
            config: config.clone(),
            telemetry,
            #[cfg(feature = "tls")]
            tls,
            #[cfg(feature = "status_page")]
            page: Page::new(config, status),
        };
        let thread = thread::Builder::new()
            .name("http_server".into())
            .spawn(move || serve(endpoint, &listeners, &woken))
            .map_err(HttpServerError::Io)?;
        #[cfg(feature = "tls")]
        let scheme = if config.tls.is_some() {
            "HTTPS"
        } else {
            "HTTP"
        };
        #[cfg(not(feature = "tls"))]
        let scheme = "HTTP";
        log::info!(target: LOG, "serving {PATHS} over {scheme} on {binds:?}");
        Ok(Server {
            binds,
            wake,
            thread: Some(thread),
        })
    }
}

impl Drop for Server {
    /// Wakes the thread, waits for it to finish the answer it is writing (at most the write
    /// timeout), and closes every socket.
    fn drop(&mut self) {
        let _ = self.wake.write_all(b"x");
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The paths served, for the log.
#[cfg(not(feature = "status_page"))]
const PATHS: &str = "/metrics";
#[cfg(feature = "status_page")]
const PATHS: &str = "/metrics and the status page";

/// What the serving thread answers from.
struct Endpoint {
    config: HttpServerConfig,
    telemetry: Arc<Telemetry>,
    /// The TLS settings, when the endpoint speaks HTTPS.
    #[cfg(feature = "tls")]
    tls: Option<Arc<rustls::ServerConfig>>,
    #[cfg(feature = "status_page")]
    page: Page,
}

/// The serving loop, until `woken` is readable (or closed).
fn serve(endpoint: Endpoint, listeners: &[TcpListener], woken: &UnixStream) {
    // Only the page's history changes as the endpoint serves.
    #[cfg(feature = "status_page")]
    let mut endpoint = endpoint;
    let config = &endpoint.config;
    let mut tally = Tally::new();
    let mut open: Vec<Connection> = Vec::new();
    let mut closing: Vec<Closing> = Vec::new();
    let mut fds = Vec::new();
    loop {
        fds.clear();
        fds.push(crate::sys::readable(woken.as_raw_fd()));
        fds.extend(
            listeners
                .iter()
                .map(|l| crate::sys::readable(l.as_raw_fd())),
        );
        fds.extend(
            open.iter()
                .map(|c| crate::sys::readable(c.stream.tcp().as_raw_fd())),
        );
        fds.extend(
            closing
                .iter()
                .map(|c| crate::sys::readable(c.stream.as_raw_fd())),
        );
        let now = Instant::now();
        let deadlines = open
            .iter()
            .map(|c| c.deadline)
            .chain(closing.iter().map(|c| c.deadline));
        #[cfg(feature = "status_page")]
        let deadlines = deadlines.chain([endpoint.page.next_sample()]);
        let wait = deadlines
            .map(|d| d.saturating_duration_since(now))
            .min()
            .unwrap_or(Duration::from_secs(60));
        if let Err(e) = crate::sys::poll(&mut fds, wait) {
            log::error!(target: LOG, "poll failed: {e}; the endpoint stops");
            return;
        }
        if crate::sys::is_ready(&fds[0]) {
            return;
        }
        #[cfg(feature = "status_page")]
        endpoint.page.tick(&endpoint.telemetry);
        // The entries of `fds` past the listeners are the open connections', then the closing.
        let mut ready = fds[1 + listeners.len()..].iter().map(crate::sys::is_ready);
        let mut waiting = Vec::with_capacity(open.len());
        let mut answered = Vec::new();
        for (mut c, ready) in open.drain(..).zip(&mut ready) {
            let step = if ready {
                read_head(&mut c, config)
            } else {
                Ok(None)
            };
            match step {
                Ok(None) if Instant::now() < c.deadline => waiting.push(c),
                Ok(None) => answered.push(refuse(c.stream, c.peer, Outcome::Timeout, &mut tally)),
                Ok(Some(Some(request))) => {
                    answered.push(answer(c, &request, &endpoint, &mut tally));
                }
                // The peer left before finishing its request: nothing to answer.
                Ok(Some(None)) => {}
                Err(outcome) => answered.push(refuse(c.stream, c.peer, outcome, &mut tally)),
            }
        }
        open = waiting;
        let now = Instant::now();
        let mut lingering = Vec::with_capacity(closing.len());
        for (c, ready) in closing.drain(..).zip(ready) {
            if now < c.deadline && (!ready || drained(&c.stream)) {
                lingering.push(c);
            }
        }
        closing = lingering;
        for (l, fd) in listeners.iter().zip(&fds[1..]) {
            if crate::sys::is_ready(fd) {
                answered.extend(accept_all(l, &endpoint, &mut open, &mut tally));
            }
        }
        for stream in answered {
            // Past the bound a connection is closed at once: a reset may cost that peer the
            // answer, never the endpoint its memory.
            if closing.len() < config.max_connections * 2 {
                closing.push(Closing {
                    stream,
                    deadline: Instant::now() + LINGER,
                });
            }
        }
    }
}

/// A connection answered and shut for writing. What the peer still sends is read and thrown away
/// until it closes (or [`LINGER`] passes): closing a socket with unread bytes would send a reset,
/// which can make the peer lose the answer before reading it.
struct Closing {
    stream: TcpStream,
    deadline: Instant,
}

/// How long an answered connection is read to its end before it is closed regardless.
const LINGER: Duration = Duration::from_secs(2);

/// Reads and discards what is pending on `stream`; false once the peer closed or failed.
fn drained(stream: &TcpStream) -> bool {
    let mut sink = [0u8; 1024];
    loop {
        match (&mut &*stream).read(&mut sink) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

/// Reads what arrived on `c`: `Ok(Some(Some(request)))` once the head is whole, `Ok(Some(None))`
/// when the peer left before finishing it, `Ok(None)` while more is to come.
fn read_head(
    c: &mut Connection,
    config: &HttpServerConfig,
) -> Result<Option<Option<Request>>, Outcome> {
    #[cfg(feature = "tls")]
    if std::mem::take(&mut c.fresh) && c.stream.plain_on_tls() {
        return Err(Outcome::NotTls);
    }
    let mut chunk = [0u8; 2048];
    loop {
        let room = (config.max_request_bytes + 1).saturating_sub(c.head.len());
        let want = room.min(chunk.len());
        match c.stream.read(&mut chunk[..want]) {
            Ok(0) => return Ok(Some(None)),
            Ok(n) => {
                c.head.extend_from_slice(&chunk[..n]);
                match request::parse(&c.head, config.max_request_bytes, config.max_headers) {
                    Ok(Some(request)) => return Ok(Some(Some(request))),
                    Ok(None) => {}
                    Err(Refusal::Malformed) => return Err(Outcome::Malformed),
                    Err(Refusal::TooLarge | Refusal::TooManyHeaders) => {
                        return Err(Outcome::TooLarge);
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Ok(Some(None)),
        }
    }
}

/// Accepts every pending connection on `listener`, refusing those the config does not allow;
/// returns the refused ones, answered.
fn accept_all(
    listener: &TcpListener,
    endpoint: &Endpoint,
    open: &mut Vec<Connection>,
    tally: &mut Tally,
) -> Vec<TcpStream> {
    let config = &endpoint.config;
    let mut refused = Vec::new();
    loop {
        let (tcp, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // WouldBlock ends the round; other errors (out of descriptors, a connection reset
            // while queued) leave it to the next readiness.
            Err(_) => return refused,
        };
        let peer = peer.ip().to_canonical();
        let Some(stream) = endpoint.stream(tcp) else {
            continue;
        };
        if !config.allowed_networks.iter().any(|n| n.contains(peer)) {
            refused.push(refuse(stream, peer, Outcome::Network, tally));
        } else if open.len() >= config.max_connections {
            refused.push(refuse(stream, peer, Outcome::Busy, tally));
        } else if stream.tcp().set_nonblocking(true).is_ok() {
            open.push(Connection {
                stream,
                peer,
                deadline: Instant::now() + config.request_timeout,
                head: Vec::new(),
                #[cfg(feature = "tls")]
                fresh: true,
            });
        }
    }
}

impl Endpoint {
    /// A new client's connection, in TLS when the endpoint speaks HTTPS; `None` when its
    /// session cannot be made.
    fn stream(&self, tcp: TcpStream) -> Option<Stream> {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            let session = rustls::ServerConnection::new(tls.clone()).ok()?;
            return Some(Stream::Tls(Box::new(rustls::StreamOwned::new(
                session, tcp,
            ))));
        }
        Some(Stream::Plain(tcp))
    }
}

/// Counts a refusal and sends its short answer, without waiting for a peer that does not read;
/// returns the socket shut for writing. Over TLS the answer goes out only once the handshake is
/// done: a client refused before it (at accept) sees the connection closed.
fn refuse(mut stream: Stream, peer: IpAddr, outcome: Outcome, tally: &mut Tally) -> TcpStream {
    tally.count(outcome, peer);
    let _ = stream.tcp().set_nonblocking(true);
    #[cfg(feature = "tls")]
    if outcome == Outcome::NotTls {
        // The client speaks plain HTTP: so does the answer.
        let tcp = stream.into_tcp();
        let _ = write_head(&mut &tcp, outcome, "text/plain");
        let _ = tcp.shutdown(std::net::Shutdown::Write);
        return tcp;
    }
    let _ = write_head(&mut stream, outcome, "text/plain");
    stream.finish()
}

fn write_head(out: &mut impl Write, outcome: Outcome, content_type: &str) -> io::Result<()> {
    write!(
        out,
        "HTTP/1.1 {}\r\nContent-Type: {content_type}\r\nConnection: close\r\n{}\r\n",
        outcome.status(),
        if outcome == Outcome::Served {
            ""
        } else {
            "Content-Length: 0\r\n"
        }
    )
}

/// Answers a whole request head; returns the stream shut for writing.
fn answer(
    mut c: Connection,
    request: &Request,
    endpoint: &Endpoint,
    tally: &mut Tally,
) -> TcpStream {
    let config = &endpoint.config;
    let authorized = config.basic_auth.as_ref().is_none_or(|secret| {
        let expected = format!(
            "Basic {}",
            crate::base64::standard(secret.expose().as_bytes())
        );
        request
            .authorization
            .as_deref()
            .is_some_and(|got| request::same_secret(got.as_bytes(), expected.as_bytes()))
    });
    #[cfg(feature = "status_page")]
    let page = if authorized && request.path != "/metrics" {
        endpoint.page.body(&request.path)
    } else {
        None
    };
    #[cfg(not(feature = "status_page"))]
    let page: Option<std::convert::Infallible> = None;
    let outcome = if !authorized {
        Outcome::Unauthorized
    } else if request.method != "GET" && request.method != "HEAD" {
        Outcome::Method
    } else {
        match &page {
            #[cfg(feature = "status_page")]
            Some(Body::Unavailable) => Outcome::Unavailable,
            Some(_) => Outcome::Served,
            None if request.path == "/metrics" => Outcome::Served,
            None => Outcome::NotFound,
        }
    };
    if outcome != Outcome::Served {
        return refuse(c.stream, c.peer, outcome, tally);
    }
    tally.count(outcome, c.peer);
    if c.stream.tcp().set_nonblocking(false).is_err() {
        return c.stream.finish();
    }
    let deadline = Instant::now() + config.write_timeout;
    let mut out = BufWriter::with_capacity(
        WRITE_BUFFER,
        Deadline {
            stream: &mut c.stream,
            deadline,
        },
    );
    let head = request.method == "HEAD";
    let written = match page {
        #[cfg(feature = "status_page")]
        Some(Body::Found(content_type, body)) => write_head(&mut out, outcome, content_type)
            .and_then(|()| if head { Ok(()) } else { out.write_all(&body) }),
        _ => write_head(
            &mut out,
            outcome,
            "text/plain; version=0.0.4; charset=utf-8",
        )
        .and_then(|()| {
            if head {
                return Ok(());
            }
            let catalogue = &endpoint.telemetry.catalogue;
            exposition::write(catalogue, SystemTime::now(), &mut out, |out| {
                tally.write(out)
            })
        }),
    }
    .and_then(|()| out.flush());
    drop(out);
    if let Err(e) = written {
        tally.count(Outcome::CutOff, c.peer);
        log::debug!(target: LOG, "answer to {} cut off: {e}", c.peer);
    }
    let _ = c.stream.tcp().set_nonblocking(true);
    c.stream.finish()
}

/// A socket whose writes all end by one deadline.
struct Deadline<'a> {
    stream: &'a mut Stream,
    deadline: Instant,
}

impl Write for Deadline<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.stream.tcp().set_write_timeout(Some(left))?;
        self.stream.write(buf)
    }

    /// Sends what the TLS session still holds; nothing to do on plain TCP.
    fn flush(&mut self) -> io::Result<()> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.stream.tcp().set_write_timeout(Some(left))?;
        self.stream.flush()
    }
}
