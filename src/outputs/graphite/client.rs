//! [`GraphiteClient`]: sends datapoints to carbon over TCP (plaintext or pickle) or UDP, on one
//! reused connection, with a timeout on every step that can block.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, ErrorKind, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use super::batch::Batch;
use super::datapoint::Datapoint;
use crate::complain::Complaint;
use crate::liveness::Liveness;
use crate::sys::{TcpProgress, TcpState};

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
    /// Writing failed or timed out, or the connection was found dead; the connection is dropped
    /// and the next send opens a new one.
    Write {
        /// The address as given.
        addr: String,
        /// What the socket said.
        source: io::Error,
    },
    /// The peer has not confirmed what it was sent, and no more may be held; is carbon reading
    /// (or overloaded)?
    Unconfirmed {
        /// The address as given.
        addr: String,
        /// The bytes held unconfirmed.
        bytes: usize,
        /// How long the send waited for room.
        waited: Duration,
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
            GraphiteError::Unconfirmed {
                addr,
                bytes,
                waited,
            } => write!(
                f,
                "{addr} has not confirmed {bytes} byte(s) already written (waited {}s for room); is carbon reading?",
                waited.as_secs_f64()
            ),
        }
    }
}

impl std::error::Error for GraphiteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            GraphiteError::Resolve { source, .. }
            | GraphiteError::Connect { source, .. }
            | GraphiteError::Write { source, .. } => Some(source),
            GraphiteError::Unconfirmed { .. } => None,
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
/// The connection is opened on the first send (or by [`connect`](Self::connect)) and reused, with
/// TCP_USER_TIMEOUT and keepalive set ([`Liveness`]) so that a path that dies silently is noticed
/// within a bound, busy or quiet.
///
/// Carbon sends no acknowledgements, so a write that succeeded only means the bytes reached the
/// local socket. The client therefore holds every batch it wrote over TCP until it is
/// *confirmed*: the peer's TCP stack has acknowledged its last byte, and the resend window has
/// passed since ([`DEFAULT_RESEND_WINDOW`], see [`set_resend_window`](Self::set_resend_window)),
/// which covers what carbon-cache read but had not yet written to disk when it stops. A connection found
/// dead (reset, timed out, closed by the peer) gets nothing more; everything held is written
/// again on the next connection, before the new batch. Delivery is at least once: a datapoint
/// the server did store may arrive twice, which carbon stores once (same path, same timestamp).
///
/// What is held is bounded ([`set_max_held`](Self::set_max_held)): past the bound a send first
/// waits (up to the write timeout) for confirmations, then fails with
/// [`GraphiteError::Unconfirmed`], so a peer that accepts and never reads ends in failures (and the
/// spool): only what its TCP acknowledged into its receive buffer before the window closed counts
/// as delivered (TCP cannot tell that apart from bytes read). [`take_confirmed`](Self::take_confirmed)
/// says how many datapoints were confirmed; a UDP datagram counts as soon as it is sent.
#[derive(Debug)]
pub struct GraphiteClient {
    addr: String,
    protocol: Protocol,
    timeouts: Timeouts,
    liveness: Liveness,
    connection: Option<Connection>,
    batch: Batch,
    /// Batches written and not yet confirmed, oldest first.
    held: VecDeque<Written>,
    /// How many batches at the front of `held` the peer's TCP was seen to acknowledge (those
    /// with `acked_at` set): a look at the connection marks only the ones after them.
    acked: usize,
    /// Bytes in `held`.
    held_bytes: usize,
    max_held: usize,
    /// Datapoints in `held`.
    held_datapoints: u64,
    /// Datapoints confirmed since [`take_confirmed`](Self::take_confirmed) last looked.
    confirmed: u64,
    /// Bytes written on the current connection.
    sent: u64,
    /// What the current connection's TCP had acknowledged when it opened.
    acked_base: u64,
    resend_window: Duration,
    /// What the client logs goes under this target.
    log_target: String,
    /// Logs connections found dead, without a line per batch.
    dead: Complaint,
    /// Buffers of confirmed batches, for the next ones.
    spare: Vec<Vec<u8>>,
}

/// One batch held until it is confirmed.
#[derive(Debug)]
struct Written {
    bytes: Vec<u8>,
    datapoints: u64,
    /// Where it ends in the bytes written on the current connection.
    end: u64,
    /// When the peer's TCP was first seen to have acknowledged all of it, on the current
    /// connection.
    acked_at: Option<Instant>,
}

/// How long after the peer's TCP acknowledged a batch it is still held, by default: carbon-cache loses what it
/// read in about the last second before a stop (its writer sleeps a second between drains of its
/// cache), plus the time that drain takes; 2 s cover both with room to spare.
pub const DEFAULT_RESEND_WINDOW: Duration = Duration::from_secs(2);

/// The most bytes held unconfirmed by default (8 MiB): at the default resend window, about 4 MiB/s
/// (some 70,000 datapoints/s) keep flowing; a peer that stops reading fills it and sends fail.
pub const DEFAULT_MAX_HELD: usize = 8 << 20;

/// How often a send waiting for room looks again at what the peer confirmed.
const CONFIRM_POLL: Duration = Duration::from_millis(10);

/// Buffers of confirmed batches kept for reuse.
const SPARE_BUFFERS: usize = 8;

/// Where a client logs unless told otherwise ([`GraphiteClient::set_log_target`]).
pub const DEFAULT_LOG_TARGET: &str = "out.graphite";

impl GraphiteClient {
    /// A client for `addr` (`host:port`) that opens no connection until the first send.
    pub fn new(addr: impl Into<String>, protocol: Protocol, timeouts: Timeouts) -> GraphiteClient {
        GraphiteClient {
            addr: addr.into(),
            protocol,
            timeouts,
            liveness: Liveness::DEFAULT,
            connection: None,
            batch: Batch::new(protocol),
            held: VecDeque::new(),
            acked: 0,
            held_bytes: 0,
            max_held: DEFAULT_MAX_HELD,
            held_datapoints: 0,
            confirmed: 0,
            sent: 0,
            acked_base: 0,
            resend_window: DEFAULT_RESEND_WINDOW,
            log_target: DEFAULT_LOG_TARGET.to_owned(),
            dead: Complaint::new(DEFAULT_LOG_TARGET),
            spare: Vec::new(),
        }
    }

    /// Sets how long after the peer's TCP acknowledged a batch it is still held (TCP only); zero
    /// confirms a batch as soon as it is acknowledged.
    pub fn set_resend_window(&mut self, window: Duration) {
        self.resend_window = window;
    }

    /// Sets the most bytes held unconfirmed ([`DEFAULT_MAX_HELD`]); a send may go over it by one
    /// batch when a new connection gets everything held again.
    pub fn set_max_held(&mut self, bytes: usize) {
        self.max_held = bytes;
    }

    /// Sets how new connections notice a dead path (from the next connection on).
    pub fn set_liveness(&mut self, liveness: Liveness) {
        self.liveness = liveness;
    }

    /// Logs under `target` instead of [`DEFAULT_LOG_TARGET`] (an output logs under
    /// `out.<its name>`).
    pub fn set_log_target(&mut self, target: &str) {
        self.log_target = target.to_owned();
        self.dead = Complaint::new(target);
    }

    /// A client for `addr` (`host:port`) with its connection open (for UDP: its socket ready).
    pub fn connect(
        addr: impl Into<String>,
        protocol: Protocol,
        timeouts: Timeouts,
    ) -> Result<GraphiteClient, GraphiteError> {
        let mut client = GraphiteClient::new(addr, protocol, timeouts);
        client.reopen()?;
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

    /// Sends an encoded batch (see [`Batch`]). Over TCP a copy of its bytes is held until
    /// confirmed, in the buffer of a batch confirmed before when there is one.
    pub(crate) fn send_batch(&mut self, batch: &Batch) -> Result<(), GraphiteError> {
        if batch.is_empty() {
            return Ok(());
        }
        if self.protocol == Protocol::Udp {
            return self.send_datagrams(batch);
        }
        self.check()?;
        self.make_room(batch.bytes().len())?;
        if self.connection.is_none() {
            self.reopen()?;
        }
        let Some(Connection::Tcp(stream)) = &mut self.connection else {
            return Ok(());
        };
        match stream.write_all(batch.bytes()) {
            Ok(()) => {
                self.sent += batch.bytes().len() as u64;
                let datapoints = batch.len() as u64;
                // Held as a copy made in one move: encoding straight into the held buffers (one
                // confirmed seconds ago, out of the cache) costs more, line by line, than this.
                let mut bytes = self
                    .spare
                    .pop()
                    .unwrap_or_else(|| Vec::with_capacity(batch.bytes().len()));
                bytes.clear();
                bytes.extend_from_slice(batch.bytes());
                self.held_bytes += bytes.len();
                self.held_datapoints += datapoints;
                self.held.push_back(Written {
                    bytes,
                    datapoints,
                    end: self.sent,
                    acked_at: None,
                });
                Ok(())
            }
            Err(source) => Err(self.write_failed(source)),
        }
    }

    fn send_datagrams(&mut self, batch: &Batch) -> Result<(), GraphiteError> {
        if self.connection.is_none() {
            self.reopen()?;
        }
        let Some(Connection::Udp(socket)) = &self.connection else {
            return Ok(());
        };
        match batch.datagrams().try_for_each(|d| socket.send(d).map(drop)) {
            Ok(()) => {
                self.confirmed += batch.len() as u64;
                Ok(())
            }
            Err(source) => Err(self.write_failed(source)),
        }
    }

    /// Drops the connection after a failed write.
    fn write_failed(&mut self, source: io::Error) -> GraphiteError {
        self.connection = None;
        GraphiteError::Write {
            addr: self.addr.clone(),
            source,
        }
    }

    /// Datapoints confirmed since the last call; looks at the connection first, without
    /// blocking. A dead connection found here is dropped (and logged); what it held is written
    /// again by the next send.
    pub fn take_confirmed(&mut self) -> u64 {
        let _ = self.check();
        std::mem::take(&mut self.confirmed)
    }

    /// Datapoints and bytes written and not yet confirmed.
    pub fn unconfirmed(&self) -> (u64, u64) {
        (self.held_datapoints, self.held_bytes as u64)
    }

    /// Looks at the TCP connection: confirms what the peer acknowledged long enough ago, and drops the
    /// connection when the peer closed it (a restart: no error) or it is dead (an error, so that
    /// the batch at hand fails like any delivery to a dead target).
    fn check(&mut self) -> Result<(), GraphiteError> {
        let Some(Connection::Tcp(stream)) = &self.connection else {
            return Ok(());
        };
        let progress = crate::sys::tcp_progress(stream);
        match progress {
            Ok(p) if p.state == TcpState::Established => {
                self.confirm(p);
                Ok(())
            }
            Ok(p) if p.state == TcpState::PeerClosed => {
                self.confirm(p);
                log::info!(target: &self.log_target, "{} closed the connection; {} datapoint(s) not yet confirmed go again on a new one", self.addr, self.held_datapoints);
                self.connection = None;
                Ok(())
            }
            _ => {
                let why = match progress {
                    Err(e) => e,
                    Ok(_) => stream.take_error().ok().flatten().unwrap_or_else(|| {
                        io::Error::new(ErrorKind::ConnectionAborted, "the connection is gone")
                    }),
                };
                self.dead.fail(&format!(
                    "{}: connection dead ({why}; a path is given up after {}s without acknowledgement); {} datapoint(s) not confirmed go again on the next connection",
                    self.addr,
                    self.liveness.bound().as_secs(),
                    self.held_datapoints
                ));
                Err(self.write_failed(why))
            }
        }
    }

    /// Marks the batches the peer's TCP has acknowledged, and confirms those acknowledged at
    /// least the resend window ago.
    fn confirm(&mut self, p: TcpProgress) {
        let acked = p.bytes_acked.saturating_sub(self.acked_base);
        let now = Instant::now();
        for w in self.held.range_mut(self.acked..) {
            if w.end > acked {
                break;
            }
            w.acked_at = Some(now);
            self.acked += 1;
        }
        let before = self.confirmed;
        while let Some(w) = self.held.front() {
            match w.acked_at {
                Some(at) if now.duration_since(at) >= self.resend_window => {}
                _ => break,
            }
            let Some(w) = self.held.pop_front() else {
                break;
            };
            self.acked -= 1;
            self.held_bytes -= w.bytes.len();
            self.held_datapoints -= w.datapoints;
            self.confirmed += w.datapoints;
            if self.spare.len() < SPARE_BUFFERS {
                self.spare.push(w.bytes);
            }
        }
        if self.confirmed > before {
            self.dead.recover();
        }
    }

    /// Waits, up to the write timeout, until `need` more bytes fit in what is held.
    fn make_room(&mut self, need: usize) -> Result<(), GraphiteError> {
        let deadline = Instant::now() + at_least_1ms(self.timeouts.write);
        while self.held_bytes + need > self.max_held && self.connection.is_some() {
            if self.held.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(GraphiteError::Unconfirmed {
                    addr: self.addr.clone(),
                    bytes: self.held_bytes,
                    waited: self.timeouts.write,
                });
            }
            std::thread::sleep(
                self.until_confirmation()
                    .min(deadline.saturating_duration_since(Instant::now())),
            );
            self.check()?;
        }
        Ok(())
    }

    /// How long until the oldest batch held may be confirmed: the rest of its resend window once
    /// the peer's TCP acknowledged it, else [`CONFIRM_POLL`] (the next look at the connection).
    fn until_confirmation(&self) -> Duration {
        match self.held.front().and_then(|w| w.acked_at) {
            Some(at) => (at + self.resend_window)
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
            None => CONFIRM_POLL,
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

    /// Opens a connection and writes on it everything held.
    fn reopen(&mut self) -> Result<(), GraphiteError> {
        let connection = self.open()?;
        if let Connection::Tcp(stream) = &connection {
            let base =
                crate::sys::tcp_progress(stream).map_err(|source| GraphiteError::Connect {
                    addr: self.addr.clone(),
                    source,
                })?;
            (self.sent, self.acked_base) = (0, base.bytes_acked);
        }
        self.connection = Some(connection);
        if self.held.is_empty() {
            return Ok(());
        }
        let Some(Connection::Tcp(stream)) = &mut self.connection else {
            return Ok(());
        };
        log::debug!(target: &self.log_target, "{}: writing again {} datapoint(s) not confirmed on the previous connection", self.addr, self.held_datapoints);
        // Nothing held is acknowledged on the new connection yet.
        self.acked = 0;
        for w in &mut self.held {
            w.acked_at = None;
        }
        let mut result = Ok(());
        for w in &mut self.held {
            result = stream.write_all(&w.bytes);
            if result.is_err() {
                break;
            }
            self.sent += w.bytes.len() as u64;
            w.end = self.sent;
        }
        result.map_err(|source| self.write_failed(source))
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
        self.liveness.apply(&stream)?;
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

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read};
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

    fn wait(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "{what} never happened");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits until the server's close has reached the client's socket.
    fn wait_closed(client: &GraphiteClient) {
        wait("the close", || {
            matches!(&client.connection, Some(Connection::Tcp(s))
                if crate::sys::tcp_progress(s).unwrap().state == TcpState::PeerClosed)
        });
    }

    #[test]
    fn reconnects_and_sends_again_what_was_not_confirmed() {
        let (listener, mut client, first) = connected();
        client.send(&point("a", 1)).unwrap();
        let mut line = String::new();
        BufReader::new(&first).read_line(&mut line).unwrap();
        assert_eq!(line, "a 1 1700000000\n");
        drop(first);
        wait_closed(&client);
        // Read by the peer, but within the resend window: carbon may not have stored it, so it
        // goes again on the new connection, before the new datapoint.
        client.send(&point("b", 2)).unwrap();
        assert_eq!(client.take_confirmed(), 0);
        let (second, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(&second);
        let mut lines = String::new();
        reader.read_line(&mut lines).unwrap();
        reader.read_line(&mut lines).unwrap();
        assert_eq!(lines, "a 1 1700000000\nb 2 1700000000\n");
        assert_eq!(client.unconfirmed().0, 2);
        client.close().unwrap();
    }

    #[test]
    fn what_the_peer_read_is_confirmed_after_the_window_and_not_sent_again() {
        let (listener, mut client, first) = connected();
        client.set_resend_window(Duration::from_millis(100));
        client.send(&point("a", 1)).unwrap();
        BufReader::new(&first)
            .read_line(&mut String::new())
            .unwrap();
        let mut confirmed = 0;
        wait("the confirmation", || {
            confirmed += client.take_confirmed();
            confirmed == 1
        });
        assert_eq!(client.unconfirmed(), (0, 0));
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
    fn a_peer_that_never_reads_fills_the_bound_then_sends_fail() {
        let (_listener, mut client, _server) = connected();
        client.set_resend_window(Duration::ZERO);
        client.set_max_held(64 << 10);
        client.timeouts.write = Duration::from_millis(300);
        let (mut sent, mut confirmed) = (0u64, 0u64);
        let err = loop {
            let batch: Vec<Datapoint> = (0..10).map(|i| point("router.wan.rx", i)).collect();
            match client.send_many(&batch) {
                Ok(()) => sent += 10,
                Err(e) => break e,
            }
            confirmed += client.take_confirmed();
        };
        assert!(matches!(err, GraphiteError::Unconfirmed { .. }), "{err}");
        // Its TCP acknowledges what fits in its receive buffer, then its window closes: the rest
        // stays held, up to the bound, and nothing past it is written.
        assert_eq!(client.unconfirmed().0, sent - confirmed);
        assert!(client.unconfirmed().1 <= 64 << 10);
        assert!(sent > confirmed, "{sent} sent, {confirmed} confirmed");
    }

    #[test]
    fn a_send_over_the_bound_waits_for_the_window_then_goes_on() {
        let (_listener, mut client, server) = connected();
        let reader = std::thread::spawn(move || {
            let mut lines = 0;
            for line in BufReader::new(server).lines() {
                line.unwrap();
                lines += 1;
            }
            lines
        });
        let window = Duration::from_millis(200);
        client.set_resend_window(window);
        client.set_max_held(1000);
        let batch: Vec<Datapoint> = (0..20).map(|i| point("router.wan.rx", i)).collect();
        let start = Instant::now();
        let mut confirmed = 0;
        for _ in 0..3 {
            // Each batch fills the bound: the next waits until the one before is confirmed.
            client.send_many(&batch).unwrap();
            confirmed += client.take_confirmed();
        }
        assert!(start.elapsed() >= 2 * window, "{:?}", start.elapsed());
        wait("the last confirmation", || {
            confirmed += client.take_confirmed();
            confirmed == 60
        });
        assert_eq!(client.unconfirmed(), (0, 0));
        client.close().unwrap();
        assert_eq!(reader.join().unwrap(), 60);
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
