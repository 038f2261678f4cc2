//! [`GraphiteClient`]: sends datapoints to carbon over TCP (plaintext or pickle) or UDP, on one
//! reused connection, with a timeout on every step that can block.

use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use super::batch::Batch;
use super::datapoint::Datapoint;
use crate::complain::Complaint;

/// How datapoints travel to carbon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `path value timestamp` lines over TCP (carbon's line receiver, port 2003).
    Plaintext,
    /// The same lines in UDP datagrams (carbon's UDP receiver, port 2003 when enabled). Nothing
    /// tells the sender whether they arrived.
    Udp,
    /// Pickle frames over TCP (carbon's pickle receiver, port 2004).
    Pickle,
}

impl Protocol {
    /// The port carbon listens on for this protocol by default.
    pub fn default_port(self) -> u16 {
        match self {
            Protocol::Plaintext | Protocol::Udp => 2003,
            Protocol::Pickle => 2004,
        }
    }

    /// The protocol's config name: `tcp`, `udp` or `pickle`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Plaintext => "tcp",
            Protocol::Udp => "udp",
            Protocol::Pickle => "pickle",
        }
    }
}

/// How long each step may block; no step waits forever (a zero duration counts as 1 ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Longest wait for a TCP connection to open, per address, and for the name to resolve
    /// ([`crate::dns`]); default 5 s.
    pub connect: Duration,
    /// Longest wait for the server to take a batch (TCP) or a datagram (UDP); default 10 s.
    pub write: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(5),
            write: Duration::from_secs(10),
        }
    }
}

/// Why a send failed. The datapoints of a failed send may or may not have arrived.
#[derive(Debug)]
#[non_exhaustive]
pub enum GraphiteError {
    /// The address did not resolve; check the host name and the resolver.
    Resolve {
        /// The address as given.
        addr: String,
        /// What the resolver said.
        source: io::Error,
    },
    /// No connection could be opened to any address of the host; is carbon running and reachable?
    Connect {
        /// The address as given.
        addr: String,
        /// The error for the last address tried.
        source: io::Error,
    },
    /// Writing failed or timed out; the connection is dropped and the next send opens a new one.
    Write {
        /// The address as given.
        addr: String,
        /// What the socket said.
        source: io::Error,
    },
}

impl fmt::Display for GraphiteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GraphiteError::Resolve { addr, source } => write!(f, "cannot resolve {addr}: {source}"),
            GraphiteError::Connect { addr, source } => {
                write!(f, "cannot connect to {addr}: {source}")
            }
            GraphiteError::Write { addr, source } => write!(f, "cannot send to {addr}: {source}"),
        }
    }
}

impl std::error::Error for GraphiteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            GraphiteError::Resolve { source, .. }
            | GraphiteError::Connect { source, .. }
            | GraphiteError::Write { source, .. } => Some(source),
        }
    }
}

#[derive(Debug)]
enum Connection {
    Tcp(TcpStream),
    Udp(UdpSocket),
}

/// A client for carbon: connect, send one, send many, close.
///
/// The connection is opened on the first send (or by [`connect`](Self::connect)) and reused.
/// Before each TCP write the client checks, without blocking, whether the server has closed the
/// connection while it was idle, and if so opens a new one, so that no batch is written into a
/// dead socket. After a failed send the next send opens a new connection.
///
/// Carbon sends no acknowledgements, so a write that succeeded only means the bytes reached the
/// local socket: a server that restarted since may never read them, a connection found alive may
/// still hold unread bytes that die with it, and carbon-cache itself loses the datapoints it read
/// but had not yet written to disk when it is stopped (its writer drains its cache about once a
/// second). The client therefore keeps what it wrote on a connection until a check finds the
/// connection alive at least the resend window after the write ([`DEFAULT_RESEND_WINDOW`], see
/// [`set_resend_window`](Self::set_resend_window)), at most [`MAX_UNCONFIRMED`] bytes, the most
/// recent; when a check finds the connection dead, that is written again on the new connection
/// before the new batch. Delivery is at least once: a datapoint the server did store may arrive
/// twice, which carbon stores once (same path, same timestamp).
#[derive(Debug)]
pub struct GraphiteClient {
    addr: String,
    protocol: Protocol,
    timeouts: Timeouts,
    connection: Option<Connection>,
    batch: Batch,
    unconfirmed: Vec<u8>,
    /// The batches in `unconfirmed`, oldest first.
    written: std::collections::VecDeque<Written>,
    resend_window: Duration,
    /// What the client logs goes under this target.
    log_target: String,
    /// Logs giving up bytes that may be lost, without a line per batch.
    give_ups: Complaint,
}

/// One batch kept for a resend.
#[derive(Debug)]
struct Written {
    /// When it was last written.
    at: Instant,
    /// Where it ends in `unconfirmed`.
    end: usize,
    /// Written again already, after a connection it went over died.
    resent: bool,
}

/// How long after a write a connection must still be alive for the write to count as stored, by
/// default: carbon-cache loses what it read in about the last second before a stop (its writer
/// sleeps a second between drains of its cache), plus the time that drain takes; 2 s cover both
/// with room to spare.
pub const DEFAULT_RESEND_WINDOW: Duration = Duration::from_secs(2);

/// The most bytes kept for a resend after a dead connection: beyond it the oldest batches are
/// forgotten (only a stream faster than 2 MiB/s, such as a spool replay, fills it within the
/// default window), with a warning when they had gone over a connection that died.
pub const MAX_UNCONFIRMED: usize = 4 << 20;

/// Where a client logs unless told otherwise ([`GraphiteClient::set_log_target`]).
pub const DEFAULT_LOG_TARGET: &str = "out.graphite";

impl GraphiteClient {
    /// A client for `addr` (`host:port`) that opens no connection until the first send.
    pub fn new(addr: impl Into<String>, protocol: Protocol, timeouts: Timeouts) -> GraphiteClient {
        GraphiteClient {
            addr: addr.into(),
            protocol,
            timeouts,
            connection: None,
            batch: Batch::new(protocol),
            unconfirmed: Vec::new(),
            written: std::collections::VecDeque::new(),
            resend_window: DEFAULT_RESEND_WINDOW,
            log_target: DEFAULT_LOG_TARGET.to_owned(),
            give_ups: Complaint::new(DEFAULT_LOG_TARGET),
        }
    }

    /// Sets how long after a write the connection must still be seen alive before the bytes
    /// written are forgotten (TCP only); zero keeps nothing, so nothing is ever sent again.
    pub fn set_resend_window(&mut self, window: Duration) {
        self.resend_window = window;
    }

    /// Logs under `target` instead of [`DEFAULT_LOG_TARGET`] (an output logs under
    /// `out.<its name>`).
    pub fn set_log_target(&mut self, target: &str) {
        self.log_target = target.to_owned();
        self.give_ups = Complaint::new(target);
    }

    /// A client for `addr` (`host:port`) with its connection open (for UDP: its socket ready).
    pub fn connect(
        addr: impl Into<String>,
        protocol: Protocol,
        timeouts: Timeouts,
    ) -> Result<GraphiteClient, GraphiteError> {
        let mut client = GraphiteClient::new(addr, protocol, timeouts);
        client.connection = Some(client.open()?);
        Ok(client)
    }

    /// The address as given.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The protocol.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Sends one datapoint.
    pub fn send(&mut self, datapoint: &Datapoint) -> Result<(), GraphiteError> {
        self.send_many(std::slice::from_ref(datapoint))
    }

    /// Sends many datapoints in as few writes as the protocol allows: one for TCP (pickle frames
    /// of at most 500 datapoints and 1 MiB each), datagrams of at most 1472 bytes for UDP.
    pub fn send_many(&mut self, datapoints: &[Datapoint]) -> Result<(), GraphiteError> {
        let mut batch = std::mem::replace(&mut self.batch, Batch::new(self.protocol));
        batch.clear();
        for d in datapoints {
            batch.push(d.path(), d.value(), d.timestamp());
        }
        batch.finish();
        let result = self.send_batch(&batch);
        self.batch = batch;
        result
    }

    /// Sends an encoded batch (see [`Batch`]).
    pub(crate) fn send_batch(&mut self, batch: &Batch) -> Result<(), GraphiteError> {
        if batch.is_empty() {
            return Ok(());
        }
        let opened = self.live_connection()?;
        // A new connection first gets what the previous one may have lost, which then waits for
        // this connection to be seen alive long enough.
        let resend: &[u8] = if opened { &self.unconfirmed } else { &[] };
        if !resend.is_empty() {
            let now = Instant::now();
            for w in &mut self.written {
                (w.at, w.resent) = (now, true);
            }
        }
        let result = match &mut self.connection {
            Some(Connection::Tcp(stream)) => stream
                .write_all(resend)
                .and_then(|()| stream.write_all(batch.bytes())),
            Some(Connection::Udp(socket)) => {
                batch.datagrams().try_for_each(|d| socket.send(d).map(drop))
            }
            None => Ok(()),
        };
        match result {
            Ok(()) => {
                if self.protocol != Protocol::Udp && !self.resend_window.is_zero() {
                    self.unconfirm(batch.bytes());
                }
                Ok(())
            }
            Err(source) => {
                self.connection = None;
                Err(GraphiteError::Write {
                    addr: self.addr.clone(),
                    source,
                })
            }
        }
    }

    /// Forgets the batches written at least the resend window ago: the connection is alive.
    fn confirm(&mut self) {
        let now = Instant::now();
        let young = self
            .written
            .iter()
            .position(|w| now.duration_since(w.at) < self.resend_window);
        self.forget(young.unwrap_or(self.written.len()));
    }

    /// Keeps `bytes` until a check finds the connection they went over alive long enough; over
    /// [`MAX_UNCONFIRMED`], the oldest batches are forgotten first.
    fn unconfirm(&mut self, bytes: &[u8]) {
        self.unconfirmed.extend_from_slice(bytes);
        self.written.push_back(Written {
            at: Instant::now(),
            end: self.unconfirmed.len(),
            resent: false,
        });
        let excess = self.unconfirmed.len().saturating_sub(MAX_UNCONFIRMED);
        if excess > 0 {
            let oldest = self.written.iter().position(|w| w.end >= excess);
            let batches = oldest.map_or(self.written.len(), |i| i + 1);
            // Batches sent again already went over a connection that died: giving them up may
            // lose them. The others only went over this one, which is still alive.
            if self.written.iter().take(batches).any(|w| w.resent) {
                self.give_ups.fail(&format!("{}: giving up bytes written to connections that died before they could be confirmed (more than {MAX_UNCONFIRMED} bytes to send again)", self.addr));
            }
            self.forget(batches);
        }
    }

    /// Forgets the first `batches` batches kept for a resend.
    fn forget(&mut self, batches: usize) {
        let Some(cut) = batches
            .checked_sub(1)
            .and_then(|i| self.written.get(i))
            .map(|w| w.end)
        else {
            return;
        };
        self.unconfirmed.drain(..cut);
        self.written.drain(..batches);
        for w in &mut self.written {
            w.end -= cut;
        }
    }

    /// Closes the connection: TCP is shut down after everything written so far.
    pub fn close(mut self) -> Result<(), GraphiteError> {
        match self.connection.take() {
            Some(Connection::Tcp(stream)) => match stream.shutdown(Shutdown::Write) {
                Err(e) if e.kind() != ErrorKind::NotConnected => Err(GraphiteError::Write {
                    addr: self.addr.clone(),
                    source: e,
                }),
                _ => Ok(()),
            },
            _ => Ok(()),
        }
    }

    /// Makes sure a connection is open, replacing one the server closed; true when it opened one.
    fn live_connection(&mut self) -> Result<bool, GraphiteError> {
        if let Some(Connection::Tcp(stream)) = &self.connection {
            if closed_by_peer(stream) {
                log::debug!(target: &self.log_target, "{} closed the connection; opening a new one and sending again the {} byte(s) written since it was last seen alive", self.addr, self.unconfirmed.len());
                self.connection = None;
            } else {
                self.confirm();
            }
        }
        if self.connection.is_some() {
            return Ok(false);
        }
        self.connection = Some(self.open()?);
        Ok(true)
    }

    fn open(&self) -> Result<Connection, GraphiteError> {
        let addrs = crate::dns::resolve(&self.addr, at_least_1ms(self.timeouts.connect)).map_err(
            |source| GraphiteError::Resolve {
                addr: self.addr.clone(),
                source,
            },
        )?;
        let mut last = io::Error::new(ErrorKind::NotFound, "the name resolved to no address");
        for addr in addrs {
            let opened = match self.protocol {
                Protocol::Plaintext | Protocol::Pickle => self.open_tcp(addr).map(Connection::Tcp),
                Protocol::Udp => self.open_udp(addr).map(Connection::Udp),
            };
            match opened {
                Ok(c) => return Ok(c),
                Err(e) => last = e,
            }
        }
        Err(GraphiteError::Connect {
            addr: self.addr.clone(),
            source: last,
        })
    }

    fn open_tcp(&self, addr: SocketAddr) -> io::Result<TcpStream> {
        let stream = TcpStream::connect_timeout(&addr, at_least_1ms(self.timeouts.connect))?;
        stream.set_write_timeout(Some(at_least_1ms(self.timeouts.write)))?;
        // Whole batches are written at once: nothing gains from waiting to coalesce segments.
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    fn open_udp(&self, addr: SocketAddr) -> io::Result<UdpSocket> {
        let socket = crate::udp::connect(addr)?;
        socket.set_write_timeout(Some(at_least_1ms(self.timeouts.write)))?;
        Ok(socket)
    }
}

fn at_least_1ms(d: Duration) -> Duration {
    d.max(Duration::from_millis(1))
}

/// True when the server has closed (or reset) the connection. Carbon never sends anything, so a
/// readable socket means end of stream or an error; a read that would block means all is well.
fn closed_by_peer(mut stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return true;
    }
    let mut scratch = [0u8; 256];
    let closed = loop {
        match stream.read(&mut scratch) {
            Ok(0) => break true,
            // Unexpected bytes from the server: drop them and look again.
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break true,
        }
    };
    stream.set_nonblocking(false).is_err() || closed
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;

    use super::*;

    fn point(path: &str, v: i64) -> Datapoint {
        Datapoint::new(path, v, 1_700_000_000).unwrap()
    }

    /// A listener on a free port, a plaintext client connected to it, and the server's end.
    fn connected() -> (TcpListener, GraphiteClient, std::net::TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let client =
            GraphiteClient::connect(&addr, Protocol::Plaintext, Timeouts::default()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (listener, client, server)
    }

    #[test]
    fn reconnects_when_the_server_closed_the_idle_connection() {
        let (listener, mut client, first) = connected();
        client.send(&point("a", 1)).unwrap();
        let mut line = String::new();
        BufReader::new(&first).read_line(&mut line).unwrap();
        assert_eq!(line, "a 1 1700000000\n");
        drop(first);
        wait_closed(&client);
        // The client notices the close before writing, so the datapoint goes to a new connection,
        // after what was written since the connection was last seen alive (at least once).
        client.send(&point("b", 2)).unwrap();
        let (second, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(&second);
        let mut lines = String::new();
        reader.read_line(&mut lines).unwrap();
        reader.read_line(&mut lines).unwrap();
        assert_eq!(lines, "a 1 1700000000\nb 2 1700000000\n");
        client.close().unwrap();
    }

    /// Waits (with a deadline) until the server's close has reached the client's socket.
    fn wait_closed(client: &GraphiteClient) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !matches!(&client.connection, Some(Connection::Tcp(s)) if closed_by_peer(s)) {
            assert!(
                std::time::Instant::now() < deadline,
                "the close never arrived"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_zero_resend_window_sends_nothing_again() {
        let (listener, mut client, first) = connected();
        client.set_resend_window(Duration::ZERO);
        client.send(&point("a", 1)).unwrap();
        BufReader::new(&first)
            .read_line(&mut String::new())
            .unwrap();
        drop(first);
        wait_closed(&client);
        client.send(&point("b", 2)).unwrap();
        client.close().unwrap();
        let (second, _) = listener.accept().unwrap();
        let mut lines = String::new();
        BufReader::new(&second).read_to_string(&mut lines).unwrap();
        assert_eq!(lines, "b 2 1700000000\n");
    }

    #[test]
    fn what_is_kept_for_a_resend_is_the_newest_and_bounded() {
        let (_listener, mut client, conn) = connected();
        client.set_resend_window(Duration::from_secs(600));
        let reader = std::thread::spawn(move || std::io::copy(&mut &conn, &mut std::io::sink()));
        // 2,000 batches of 100 lines of 24 bytes: 4.8 MB, all within the window.
        let mut last = Vec::new();
        for b in 0..2_000 {
            let batch: Vec<Datapoint> = (0..100).map(|i| point("x.y.z", b * 100 + i)).collect();
            client.send_many(&batch).unwrap();
            last = client.batch.bytes().to_vec();
        }
        assert!(client.unconfirmed.len() <= MAX_UNCONFIRMED);
        assert!(client.unconfirmed.len() > MAX_UNCONFIRMED - 2 * last.len());
        assert!(client.unconfirmed.ends_with(&last));
        assert_eq!(
            client.written.back().map(|w| w.end),
            Some(client.unconfirmed.len())
        );
        client.close().unwrap();
        reader.join().unwrap().unwrap();
    }

    #[test]
    fn a_refused_connection_is_an_error_that_names_the_address() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let err =
            GraphiteClient::connect(&addr, Protocol::Pickle, Timeouts::default()).unwrap_err();
        assert!(matches!(err, GraphiteError::Connect { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with(&format!("cannot connect to {addr}: ")),
            "{err}"
        );
        let err = GraphiteClient::connect(
            "no-such-host.invalid:2003",
            Protocol::Plaintext,
            Timeouts::default(),
        )
        .unwrap_err();
        assert!(matches!(err, GraphiteError::Resolve { .. }), "{err}");
    }
}
