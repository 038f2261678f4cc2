//! A blocking Riemann client over TCP, UDP or (with the `tls` feature) TLS.
//!
//! Over TCP and TLS every `Msg` goes out behind a 4-byte big-endian length, and the client reads
//! the server's answer to every one of them before it reports success: an answer left unread is
//! how a client loses events without noticing, for example after the server restarts. When the
//! answer does not come within the ack timeout, or is not a well-formed message, the connection is
//! closed (a late answer must never be taken for the next message's) and the next send opens a
//! new one. Over UDP nothing is answered; batches are split into datagrams under
//! [`MAX_DATAGRAM`] bytes.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use super::proto;
use crate::event::Event;
use crate::liveness::Liveness;
use crate::timed_read::{TimedReadError, read_before};
#[cfg(feature = "tls")]
use crate::tls::{TlsSettings, TlsStream};

/// The port Riemann listens on for TCP and UDP.
pub const DEFAULT_PORT: u16 = 5555;

/// The port Riemann listens on for TLS.
pub const DEFAULT_TLS_PORT: u16 = 5554;

/// Every UDP datagram stays strictly under this many bytes, Riemann's UDP buffer size.
pub const MAX_DATAGRAM: usize = 16_384;

/// The longest answer taken from a server, in bytes; a longer length prefix is refused unread. An
/// answer to events is `ok` and at most an error message, a few bytes: the limit only bounds what a
/// broken or hostile server can make the agent hold.
pub const MAX_REPLY: usize = 1024 * 1024;

/// The largest send buffer kept between sends; a bigger one is given back after its batch.
const KEEP_BUFFER: usize = 1024 * 1024;

/// How the client talks to the server.
#[derive(Debug, Clone)]
pub enum Transport {
    /// Length-prefixed messages over TCP, each answered by the server.
    Tcp,
    /// One message per datagram, never answered: events may be lost without notice.
    Udp,
    /// Like [`Transport::Tcp`], inside TLS.
    #[cfg(feature = "tls")]
    Tls(TlsSettings),
}

/// How long each step may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Opening the connection (TCP and TLS handshake included); resolving the name
    /// ([`crate::dns`]) may take as long again.
    pub connect: Duration,
    /// Waiting for the server to take more of a message being written.
    pub write: Duration,
    /// Waiting for the server's answer to one message, from the end of the write.
    pub ack: Duration,
}

impl Default for Timeouts {
    /// Five seconds for each step.
    fn default() -> Timeouts {
        let five = Duration::from_secs(5);
        Timeouts {
            connect: five,
            write: five,
            ack: five,
        }
    }
}

/// Why a send failed. After any of these but [`RiemannError::Refused`] and [`RiemannError::TooLarge`] the
/// connection is closed, and the next send opens a new one.
#[derive(Debug)]
#[non_exhaustive]
pub enum RiemannError {
    /// The address did not resolve, or no address of it took the connection in time: is the
    /// server up, and are host and port right?
    Connect(io::Error),
    /// Writing failed or timed out; some events may have arrived. Usually the server went away.
    Write(io::Error),
    /// The server did not answer within the ack timeout; the events may or may not have been
    /// taken. The server is overloaded or hung, or the ack timeout is too short.
    AckTimeout(Duration),
    /// Reading the answer failed, or the server closed the connection without answering.
    Read(io::Error),
    /// The server answered `ok = false` with this error: it refused the message.
    Refused(String),
    /// The answer was not a Riemann message, or announced more than [`MAX_REPLY`] bytes: the peer
    /// is probably not a Riemann server.
    BadReply(String),
    /// An event alone encodes to this many bytes, too many for one UDP datagram; nothing was sent.
    TooLarge(usize),
}

impl fmt::Display for RiemannError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RiemannError::Connect(e) => write!(
                f,
                "cannot connect: {e}; is the server up, and are host and port right?"
            ),
            RiemannError::Write(e) => write!(f, "cannot write: {e}"),
            RiemannError::AckTimeout(d) => write!(f, "no answer within {} ms", d.as_millis()),
            RiemannError::Read(e) => write!(f, "cannot read the answer: {e}"),
            RiemannError::Refused(e) => write!(f, "the server refused the events: {e}"),
            RiemannError::BadReply(e) => write!(f, "invalid answer from the server: {e}"),
            RiemannError::TooLarge(n) => {
                write!(
                    f,
                    "an event of {n} bytes does not fit in one UDP datagram (under {MAX_DATAGRAM} bytes)"
                )
            }
        }
    }
}

impl std::error::Error for RiemannError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RiemannError::Connect(e) | RiemannError::Write(e) | RiemannError::Read(e) => Some(e),
            _ => None,
        }
    }
}

/// A connection to one Riemann server.
///
/// ```no_run
/// use pipit::Event;
/// use pipit::outputs::riemann::{RiemannClient, Timeouts, Transport};
///
/// let mut client = RiemannClient::connect("127.0.0.1:5555", Transport::Tcp, Timeouts::default())?;
/// client.send(&Event::new("disk.root.used", "r1").with_metric(0.42))?;
/// let events: Vec<Event> = (0..10i64).map(|i| Event::new(format!("queue.{i}"), "r1").with_metric(i)).collect();
/// client.send_many(&events)?;
/// client.close()?;
/// # Ok::<(), pipit::outputs::riemann::RiemannError>(())
/// ```
pub struct RiemannClient {
    addr: String,
    transport: Transport,
    timeouts: Timeouts,
    liveness: Liveness,
    conn: Option<Conn>,
    buf: Vec<u8>,
}

impl fmt::Debug for RiemannClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RiemannClient")
            .field("addr", &self.addr)
            .field("transport", &self.transport)
            .finish()
    }
}

enum Conn {
    Tcp(TcpStream),
    Udp(UdpSocket),
    #[cfg(feature = "tls")]
    Tls(Box<TlsStream>),
}

impl RiemannClient {
    /// Connects to `addr` (`host:port`; every address it resolves to is tried in turn), noticing
    /// a dead path as [`Liveness::DEFAULT`] says.
    pub fn connect(
        addr: &str,
        transport: Transport,
        timeouts: Timeouts,
    ) -> Result<RiemannClient, RiemannError> {
        RiemannClient::connect_with(addr, transport, timeouts, Liveness::DEFAULT)
    }

    /// Connects like [`connect`](Self::connect), noticing a dead path as `liveness` says (TCP and
    /// TLS).
    pub fn connect_with(
        addr: &str,
        transport: Transport,
        timeouts: Timeouts,
        liveness: Liveness,
    ) -> Result<RiemannClient, RiemannError> {
        let mut client = RiemannClient {
            addr: addr.to_owned(),
            transport,
            timeouts,
            liveness,
            conn: None,
            buf: Vec::new(),
        };
        client.conn = Some(client.open()?);
        Ok(client)
    }

    /// Sends one event; over TCP and TLS, returns once the server has taken it.
    pub fn send(&mut self, event: &Event) -> Result<(), RiemannError> {
        self.send_many(std::slice::from_ref(event))
    }

    /// Sends events; over TCP and TLS as one message, returning once the server has taken all of
    /// them. Sending nothing sends nothing.
    pub fn send_many(&mut self, events: &[Event]) -> Result<(), RiemannError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => self.open()?,
        };
        let result = match &mut conn {
            Conn::Udp(socket) => send_datagrams(socket, events, &mut self.buf),
            Conn::Tcp(stream) => exchange(stream, events, &mut self.buf, self.timeouts.ack),
            #[cfg(feature = "tls")]
            Conn::Tls(stream) => {
                exchange(stream.as_mut(), events, &mut self.buf, self.timeouts.ack)
            }
        };
        // Kept only while it is known to be in step with the server.
        if matches!(
            result,
            Ok(()) | Err(RiemannError::Refused(_) | RiemannError::TooLarge(_))
        ) {
            self.conn = Some(conn);
        }
        // A huge batch must not keep its buffer for the life of the client.
        if self.buf.capacity() > KEEP_BUFFER {
            self.buf = Vec::new();
        }
        result
    }

    /// Closes the connection, telling a TLS server so first.
    pub fn close(mut self) -> Result<(), RiemannError> {
        match self.conn.take() {
            Some(Conn::Tcp(stream)) => stream
                .shutdown(Shutdown::Write)
                .map_err(RiemannError::Write),
            #[cfg(feature = "tls")]
            Some(Conn::Tls(mut stream)) => {
                stream.conn.send_close_notify();
                stream.flush().map_err(RiemannError::Write)
            }
            Some(Conn::Udp(_)) | None => Ok(()),
        }
    }

    fn open(&self) -> Result<Conn, RiemannError> {
        let addrs = crate::dns::resolve(&self.addr, self.timeouts.connect)
            .map_err(RiemannError::Connect)?;
        if let Transport::Udp = self.transport {
            return open_udp(&addrs)
                .map(Conn::Udp)
                .map_err(RiemannError::Connect);
        }
        let stream =
            open_tcp(&addrs, &self.timeouts, &self.liveness).map_err(RiemannError::Connect)?;
        match &self.transport {
            #[cfg(feature = "tls")]
            Transport::Tls(settings) => settings
                .handshake(stream)
                .map(|s| Conn::Tls(Box::new(s)))
                .map_err(RiemannError::Connect),
            _ => Ok(Conn::Tcp(stream)),
        }
    }
}

fn open_tcp(
    addrs: &[SocketAddr],
    timeouts: &Timeouts,
    liveness: &Liveness,
) -> io::Result<TcpStream> {
    let stream = liveness.connect(addrs, timeouts.connect, timeouts.write)?;
    // Also bounds a TLS handshake; reads of answers set their own deadline.
    stream.set_read_timeout(Some(timeouts.connect))?;
    Ok(stream)
}

fn open_udp(addrs: &[SocketAddr]) -> io::Result<UdpSocket> {
    let addr = addrs.first().ok_or_else(|| {
        io::Error::new(io::ErrorKind::NotFound, "the address resolved to nothing")
    })?;
    crate::udp::connect(*addr)
}

/// A connected byte stream whose reads can be given a timeout.
trait Stream: Read + Write {
    /// Sets the timeout of the next reads on the socket underneath.
    fn set_read_timeout(&self, timeout: Duration) -> io::Result<()>;
}

impl Stream for TcpStream {
    fn set_read_timeout(&self, timeout: Duration) -> io::Result<()> {
        TcpStream::set_read_timeout(self, Some(timeout))
    }
}

#[cfg(feature = "tls")]
impl Stream for TlsStream {
    fn set_read_timeout(&self, timeout: Duration) -> io::Result<()> {
        self.sock.set_read_timeout(Some(timeout))
    }
}

/// Writes one length-prefixed `Msg` of `events` and reads its answer.
fn exchange(
    stream: &mut impl Stream,
    events: &[Event],
    buf: &mut Vec<u8>,
    ack: Duration,
) -> Result<(), RiemannError> {
    buf.clear();
    buf.extend_from_slice(&[0; 4]);
    for event in events {
        proto::encode_event(event, buf);
    }
    let len = u32::try_from(buf.len() - 4).map_err(|_| {
        RiemannError::Write(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a message over 4 GiB",
        ))
    })?;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    stream
        .write_all(buf)
        .and_then(|()| stream.flush())
        .map_err(RiemannError::Write)?;
    let deadline = Instant::now() + ack;
    let mut head = [0u8; 4];
    read_full(stream, &mut head, deadline, ack)?;
    let len = u32::from_be_bytes(head) as usize;
    if len > MAX_REPLY {
        return Err(RiemannError::BadReply(format!(
            "an answer of {len} bytes announced, over the limit of {MAX_REPLY}"
        )));
    }
    // Grows only as bytes arrive, so a lying length prefix costs nothing.
    buf.clear();
    let mut filled = 0;
    while filled < len {
        buf.resize((filled + 64 * 1024).min(len), 0);
        filled += read_some(stream, &mut buf[filled..], deadline, ack)?;
    }
    let answer = proto::decode_ack(&buf[..len]).map_err(RiemannError::BadReply)?;
    if answer.ok {
        Ok(())
    } else {
        Err(RiemannError::Refused(
            answer.error.unwrap_or_else(|| "no error given".into()),
        ))
    }
}

fn read_full(
    stream: &mut impl Stream,
    out: &mut [u8],
    deadline: Instant,
    ack: Duration,
) -> Result<(), RiemannError> {
    let mut filled = 0;
    while filled < out.len() {
        filled += read_some(stream, &mut out[filled..], deadline, ack)?;
    }
    Ok(())
}

/// One read of at least one byte before `deadline`.
fn read_some(
    stream: &mut impl Stream,
    out: &mut [u8],
    deadline: Instant,
    ack: Duration,
) -> Result<usize, RiemannError> {
    match read_before(stream, out, deadline, |s, left| s.set_read_timeout(left)) {
        Ok(0) => Err(RiemannError::Read(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the server closed the connection",
        ))),
        Ok(n) => Ok(n),
        Err(TimedReadError::TimedOut) => Err(RiemannError::AckTimeout(ack)),
        Err(TimedReadError::Io(e)) => Err(RiemannError::Read(e)),
    }
}

/// Sends `events` in as few datagrams as fit, each strictly under [`MAX_DATAGRAM`] bytes.
fn send_datagrams(
    socket: &UdpSocket,
    events: &[Event],
    buf: &mut Vec<u8>,
) -> Result<(), RiemannError> {
    for run in datagrams(events)? {
        buf.clear();
        for event in run {
            proto::encode_event(event, buf);
        }
        socket.send(buf).map_err(RiemannError::Write)?;
    }
    Ok(())
}

/// `events` cut, in order, into the runs that each make one datagram strictly under
/// [`MAX_DATAGRAM`] bytes, a run ending only where the next event would not fit (no events, one
/// empty run). An event too large for any datagram is an error.
fn datagrams(events: &[Event]) -> Result<Vec<&[Event]>, RiemannError> {
    let mut runs = Vec::new();
    let (mut start, mut size) = (0, 0);
    for (i, event) in events.iter().enumerate() {
        let n = proto::encoded_len(event);
        if n >= MAX_DATAGRAM {
            return Err(RiemannError::TooLarge(n));
        }
        if size + n >= MAX_DATAGRAM {
            runs.push(&events[start..i]);
            (start, size) = (i, 0);
        }
        size += n;
    }
    runs.push(&events[start..]);
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Property: for any batch, the datagrams hold every event once and in order, each is under
    /// the limit, each but the last is full (the next event would not have fit), and only a batch
    /// with an event too large for any datagram is refused.
    #[test]
    fn batches_split_into_full_datagrams_under_the_limit() {
        fn prop(specs: Vec<(String, u16)>) -> bool {
            let events: Vec<Event> = specs
                .iter()
                .map(|(service, pad)| {
                    Event::new(service.as_str(), "h")
                        .with_description("d".repeat(usize::from(*pad) % 17_000))
                })
                .collect();
            let too_large = events.iter().any(|e| proto::encoded_len(e) >= MAX_DATAGRAM);
            let Ok(runs) = datagrams(&events) else {
                return too_large;
            };
            let size = |run: &[Event]| run.iter().map(proto::encoded_len).sum::<usize>();
            let mut encoded = Vec::new();
            let mut next = 0;
            for (i, run) in runs.iter().enumerate() {
                encoded.clear();
                run.iter()
                    .for_each(|e| proto::encode_event(e, &mut encoded));
                next += run.len();
                let full = i + 1 == runs.len()
                    || size(run) + proto::encoded_len(&events[next]) >= MAX_DATAGRAM;
                if encoded.len() >= MAX_DATAGRAM || encoded.len() != size(run) || !full {
                    return false;
                }
            }
            !too_large && next == events.len()
        }
        quickcheck::quickcheck(prop as fn(Vec<(String, u16)>) -> bool);
    }

    #[test]
    fn an_empty_batch_is_one_empty_datagram() {
        assert_eq!(datagrams(&[]).unwrap(), [&[] as &[Event]]);
    }
}
