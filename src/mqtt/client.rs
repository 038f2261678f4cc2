//! One MQTT connection of a publisher or a subscriber, over TCP or (with the `tls` feature) TLS:
//! CONNECT and its CONNACK, SUBSCRIBE and its SUBACK, packets out, the broker's packets in, and a
//! keepalive thread that sends PINGREQ while the connection is idle.
//!
//! Reads and writes are bounded by the timeouts; what the broker sends is decoded from a fixed
//! buffer ([`READ_BUFFER`] bytes for a publisher, whose packets [`super::codec`] refuses past a few
//! bytes; the largest message and its header for a subscriber), so a hostile broker costs the
//! agent nothing but a closed connection. Writes (the keepalive thread's,
//! a subscriber's acknowledgements) share the stream under a lock. Plain TCP reads on a clone of
//! the socket; a TLS session cannot be split into a reading and a writing half, so its reads wait
//! for bytes on the clone without the lock and take the lock only to read what arrived.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{RecvTimeoutError, Sender, bounded};

use super::codec::{self, Connect, DecodeError, Incoming, Message, Publish, QoS, Role, Will};
use crate::config::reader::{Problems, Table};
use crate::config::secret::Secret;
use crate::liveness::Liveness;
#[cfg(feature = "tls")]
use crate::tls::{self, TlsSettings, TlsStream};

/// The bytes kept for reading; a packet a broker sends a publisher takes at most
/// `codec::MAX_INCOMING + 5` of them.
pub const READ_BUFFER: usize = 4096;

/// The stack of the keepalive thread: it sleeps and writes two bytes (inside TLS: a record).
const PINGER_STACK: usize = 64 * 1024;

/// The longest a read waits at a time before it looks at its deadline again.
pub const READ_SLICE: Duration = Duration::from_millis(100);

/// How the client reaches the broker.
#[derive(Debug, Clone)]
pub enum Transport {
    /// Plain TCP (port 1883).
    Tcp,
    /// TLS over TCP (port 8883), with these certificates.
    #[cfg(feature = "tls")]
    Tls(TlsSettings),
}

/// How long each step may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Opening the connection, up to the broker's CONNACK.
    pub connect: Duration,
    /// Waiting for the broker to take more of what is written.
    pub write: Duration,
    /// Waiting for a PUBACK or PINGRESP: past it the broker counts as dead.
    pub ack: Duration,
    /// How the connection notices a path that died silently, busy or quiet (TCP_USER_TIMEOUT
    /// and keepalive probes, below MQTT's own keepalive).
    pub liveness: Liveness,
}

/// What the client tells the broker at connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The client identifier.
    pub client_id: String,
    /// The keepalive interval; zero turns keepalive off.
    pub keepalive: Duration,
    /// Whether the broker forgets the session at connect.
    pub clean_session: bool,
    /// The Last Will.
    pub will: Option<Will>,
    /// The user name.
    pub username: Option<String>,
    /// The password; never shown by `Debug`.
    pub password: Option<Secret>,
}

/// Why a step failed. After any of them the connection is closed.
#[derive(Debug)]
#[non_exhaustive]
pub enum MqttError {
    /// The address did not resolve or took no connection in time: is the broker up, are host and
    /// port right?
    Connect(io::Error),
    /// Writing failed or timed out: usually the broker went away.
    Write(io::Error),
    /// Reading failed, or the broker closed the connection.
    Read(io::Error),
    /// The broker did not answer within this time: it is overloaded, hung, or not an MQTT broker.
    AckTimeout(Duration),
    /// The broker refused the connection with this CONNACK code: the message names the reason
    /// (bad user name or password, client id refused); fix the output's config.
    Refused(u8),
    /// The broker sent something this client cannot take: the peer is probably not an MQTT 3.1.1
    /// broker.
    Protocol(DecodeError),
    /// The broker refused a subscription: its ACL does not allow the filter, or the filter is not
    /// valid.
    SubscribeRefused,
    /// A packet could not be encoded (a field too long for MQTT): shorten the topic or the
    /// client id in the config.
    Encode(String),
}

impl fmt::Display for MqttError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MqttError::Connect(e) => write!(
                f,
                "cannot connect: {e}; is the broker up, and are host and port right?"
            ),
            MqttError::Write(e) => write!(f, "cannot write: {e}"),
            MqttError::Read(e) => write!(f, "cannot read from the broker: {e}"),
            MqttError::AckTimeout(d) => write!(
                f,
                "no answer from the broker within {} ms: taken for dead",
                d.as_millis()
            ),
            MqttError::Refused(code) => write!(
                f,
                "the broker refused the connection (code {code}: {})",
                codec::connack_reason(*code)
            ),
            MqttError::Protocol(e) => {
                write!(f, "invalid packet from the broker, connection closed: {e}")
            }
            MqttError::Encode(e) => write!(f, "cannot encode: {e}"),
            MqttError::SubscribeRefused => write!(
                f,
                "the broker refused a subscription: check the filters in \"topics\" and the broker's ACL"
            ),
        }
    }
}

impl std::error::Error for MqttError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            MqttError::Connect(e) | MqttError::Write(e) | MqttError::Read(e) => Some(e),
            MqttError::Protocol(e) => Some(e),
            _ => None,
        }
    }
}

/// The connection's byte stream.
enum Stream {
    Tcp(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<TlsStream>),
}

impl Stream {
    fn socket(&self) -> &TcpStream {
        match self {
            Stream::Tcp(s) => s,
            #[cfg(feature = "tls")]
            Stream::Tls(s) => &s.sock,
        }
    }

    /// Writes all of `bytes` out to the socket (inside TLS: encrypted and flushed).
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.write_all(bytes),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.write_all(bytes).and_then(|()| s.flush()),
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.read(buf),
        }
    }

    /// Ends the writing side (inside TLS: after a close_notify).
    fn finish(&mut self) {
        #[cfg(feature = "tls")]
        if let Stream::Tls(s) = self {
            s.conn.send_close_notify();
            let _ = s.flush();
        }
        let _ = self.socket().shutdown(Shutdown::Write);
    }
}

/// The stream and what the keepalive thread shares with the reader.
struct Shared {
    stream: Stream,
    last_sent: Instant,
    pings_sent: u64,
    last_ping: Instant,
    broken: bool,
}

/// An open, accepted connection.
pub struct Connection {
    shared: Arc<Mutex<Shared>>,
    /// The socket again: plain TCP reads on it, TLS waits on it for bytes without the lock.
    waiter: TcpStream,
    /// Whether the stream is plain TCP.
    plain: bool,
    /// Whether the last read filled the buffer (more may be waiting inside TLS).
    full: bool,
    role: Role,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    pongs: u64,
    next_id: u16,
    /// Whether the broker still had this client's session (always false with a clean session).
    pub session_present: bool,
    /// Dropped with the connection, which stops the keepalive thread.
    _stop: Option<Sender<()>>,
}

impl Connection {
    /// Connects to `addr` (`host:port`, every address tried in turn) over `transport`, sends
    /// CONNECT and waits for the broker's CONNACK; `role` says what the broker may send.
    pub fn open(
        addr: &str,
        session: &Session,
        timeouts: Timeouts,
        transport: &Transport,
        role: Role,
    ) -> Result<Connection, MqttError> {
        let addrs = crate::dns::resolve(addr, timeouts.connect).map_err(MqttError::Connect)?;
        let tcp = timeouts
            .liveness
            .connect(&addrs, timeouts.connect, timeouts.write)
            .map_err(MqttError::Connect)?;
        let waiter = tcp.try_clone().map_err(MqttError::Connect)?;
        let stream = match transport {
            Transport::Tcp => Stream::Tcp(tcp),
            #[cfg(feature = "tls")]
            Transport::Tls(settings) => {
                // Bounds the handshake; reads of packets set their own timeouts.
                tcp.set_read_timeout(Some(timeouts.connect))
                    .map_err(MqttError::Connect)?;
                Stream::Tls(Box::new(
                    settings.handshake(tcp).map_err(MqttError::Connect)?,
                ))
            }
        };
        let keepalive = u16::try_from(session.keepalive.as_secs()).unwrap_or(u16::MAX);
        let mut conn = Connection {
            shared: Arc::new(Mutex::new(Shared {
                stream,
                last_sent: Instant::now(),
                pings_sent: 0,
                last_ping: Instant::now(),
                broken: false,
            })),
            waiter,
            plain: matches!(transport, Transport::Tcp),
            full: false,
            role,
            buf: vec![0; READ_BUFFER.max(role.max_packet() + 5)].into_boxed_slice(),
            start: 0,
            end: 0,
            pongs: 0,
            next_id: 0,
            session_present: false,
            _stop: None,
        };
        let mut out = Vec::with_capacity(128);
        codec::encode_connect(
            &Connect {
                client_id: &session.client_id,
                keepalive,
                clean_session: session.clean_session,
                will: session.will.as_ref(),
                username: session.username.as_deref(),
                password: session.password.as_ref().map(Secret::expose),
            },
            &mut out,
        )
        .map_err(MqttError::Encode)?;
        conn.send(&out)?;
        let deadline = Instant::now() + timeouts.connect;
        let answer = conn.next_packet(deadline, timeouts.connect);
        // A broker that refuses the client certificate says so only now, under TLS 1.3.
        #[cfg(feature = "tls")]
        let answer = answer.map_err(|e| match e {
            MqttError::Read(io) => MqttError::Read(tls::explain(io)),
            e => e,
        });
        match answer? {
            Incoming::ConnAck {
                code: 0,
                session_present,
            } => conn.session_present = session_present,
            Incoming::ConnAck { code, .. } => return Err(MqttError::Refused(code)),
            _ => {
                return Err(MqttError::Protocol(DecodeError::Malformed(
                    "answer to CONNECT (not a CONNACK)",
                )));
            }
        }
        if keepalive > 0 {
            conn._stop = Some(spawn_pinger(&conn.shared, session.keepalive / 2));
        }
        Ok(conn)
    }

    /// The next packet identifier (1 to 65,535, then round again).
    pub fn next_packet_id(&mut self) -> u16 {
        self.next_id = self.next_id.checked_add(1).unwrap_or(1);
        self.next_id
    }

    /// Writes encoded packets.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), MqttError> {
        write(&self.shared, bytes)
    }

    /// A handle through which another thread acknowledges messages on this connection.
    pub fn acknowledger(&self) -> Acknowledger {
        Acknowledger {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Subscribes to `filters` and waits, before the connect timeout, for the broker's SUBACK;
    /// returns the messages that arrived meanwhile (a persistent session's queue, retained
    /// messages), which are the caller's to acknowledge.
    pub fn subscribe(
        &mut self,
        filters: &[(String, QoS)],
        timeouts: Timeouts,
    ) -> Result<Vec<Message>, MqttError> {
        let id = self.next_packet_id();
        let mut out = Vec::with_capacity(64);
        codec::encode_subscribe(id, filters, &mut out).map_err(MqttError::Encode)?;
        self.send(&out)?;
        let deadline = Instant::now() + timeouts.connect;
        let mut early = Vec::new();
        loop {
            match self.next_packet(deadline, timeouts.connect)? {
                Incoming::SubAck {
                    packet_id,
                    refused: false,
                } if packet_id == id => return Ok(early),
                Incoming::SubAck { packet_id, .. } if packet_id == id => {
                    return Err(MqttError::SubscribeRefused);
                }
                Incoming::Publish(m) => early.push(m),
                _ => {}
            }
        }
    }

    /// Encodes and writes one PUBLISH.
    pub fn publish(&mut self, p: &Publish<'_>, scratch: &mut Vec<u8>) -> Result<(), MqttError> {
        scratch.clear();
        codec::encode_publish(p, scratch).map_err(MqttError::Encode)?;
        self.send(scratch)
    }

    /// Sends PINGREQ and waits, before `deadline`, for its PINGRESP; PUBACKs read meanwhile go to
    /// `on_ack`. Since a broker handles a connection's packets in order, the answer also says that
    /// everything written before has been taken.
    pub fn ping(&mut self, ack: Duration, mut on_ack: impl FnMut(u16)) -> Result<(), MqttError> {
        let mine = {
            let mut shared = lock(&self.shared);
            let mut out = Vec::with_capacity(2);
            codec::encode_pingreq(&mut out);
            shared.stream.write_all(&out).map_err(MqttError::Write)?;
            shared.last_sent = Instant::now();
            shared.pings_sent += 1;
            shared.last_ping = shared.last_sent;
            shared.pings_sent
        };
        let deadline = Instant::now() + ack;
        while self.pongs < mine {
            if let Incoming::PubAck(id) = self.next_packet(deadline, ack)? {
                on_ack(id);
            }
        }
        Ok(())
    }

    /// Whether the keepalive thread found the connection broken, or the broker has owed a
    /// PINGRESP for longer than `ack`. What arrived while the connection was idle (a publisher's
    /// late answers) is read first and passed over.
    pub fn is_dead(&mut self, ack: Duration) -> bool {
        loop {
            match self.next_packet(Instant::now(), ack) {
                Ok(_) => {}
                Err(MqttError::AckTimeout(_)) => break,
                Err(_) => return true,
            }
        }
        self.overdue(ack)
    }

    /// Whether the keepalive thread found the connection broken, or the broker has owed a
    /// PINGRESP for longer than `ack`, from what was read so far.
    pub fn overdue(&self, ack: Duration) -> bool {
        let shared = lock(&self.shared);
        shared.broken || (shared.pings_sent > self.pongs && shared.last_ping.elapsed() > ack)
    }

    /// Reads the broker's next packet, waiting until `deadline`; a PINGRESP is counted and also
    /// returned.
    pub fn next_packet(&mut self, deadline: Instant, ack: Duration) -> Result<Incoming, MqttError> {
        loop {
            if let Some((packet, used)) = codec::decode(&self.buf[self.start..self.end], self.role)
                .map_err(MqttError::Protocol)?
            {
                self.start += used;
                if packet == Incoming::PingResp {
                    self.pongs += 1;
                }
                return Ok(packet);
            }
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            // A zero timeout would block forever: a past deadline only takes what already arrived.
            let wait = left.clamp(Duration::from_micros(1), READ_SLICE);
            self.waiter
                .set_read_timeout(Some(wait))
                .map_err(MqttError::Read)?;
            let space = self.buf.len() - self.end;
            let read = if self.plain {
                // Plain TCP reads on its own clone of the socket: there is nothing to share.
                self.waiter.read(&mut self.buf[self.end..])
            } else {
                // Inside TLS, bytes are waited for without the lock, so the keepalive thread and
                // acknowledgements are never held up by an idle read, then read under it; a read
                // that filled the buffer may have left plaintext inside TLS and reads again at once.
                let arrived = if self.full {
                    Ok(1)
                } else {
                    self.waiter.peek(&mut [0u8; 1])
                };
                arrived.and_then(|_| {
                    let mut shared = lock(&self.shared);
                    shared.stream.socket().set_read_timeout(Some(wait))?;
                    shared.stream.read(&mut self.buf[self.end..])
                })
            };
            match read {
                Ok(0) => {
                    return Err(MqttError::Read(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the broker closed the connection",
                    )));
                }
                Ok(n) => {
                    self.end += n;
                    self.full = n == space;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if Instant::now() >= deadline {
                        return Err(MqttError::AckTimeout(ack));
                    }
                }
                Err(e) => return Err(MqttError::Read(e)),
            }
        }
    }

    /// Publishes `bytes` (an encoded packet, such as a retained `offline`) and says goodbye with
    /// DISCONNECT, so the broker drops the Will.
    pub fn close(mut self, last: &[u8]) {
        let mut out = last.to_vec();
        codec::encode_disconnect(&mut out);
        if self.send(&out).is_ok() {
            lock(&self.shared).stream.finish();
        }
    }
}

/// Acknowledges, from any thread, the messages a subscriber's connection delivered; once the
/// connection is gone, writing fails and the broker delivers the messages again to the next one.
#[derive(Clone)]
pub struct Acknowledger {
    shared: Arc<Mutex<Shared>>,
}

impl fmt::Debug for Acknowledger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Acknowledger")
    }
}

impl Acknowledger {
    /// Acknowledges the QoS 1 message with this packet identifier.
    pub fn puback(&self, packet_id: u16) -> Result<(), MqttError> {
        let mut out = Vec::with_capacity(4);
        codec::encode_puback(packet_id, &mut out);
        write(&self.shared, &out)
    }
}

/// Writes `bytes` to the connection, marking it broken when that fails.
fn write(shared: &Mutex<Shared>, bytes: &[u8]) -> Result<(), MqttError> {
    let mut shared = lock(shared);
    let result = shared.stream.write_all(bytes);
    shared.last_sent = Instant::now();
    result.map_err(|e| {
        shared.broken = true;
        MqttError::Write(e)
    })
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts the thread that sends PINGREQ whenever nothing was sent for `every`; it ends when the
/// returned sender is dropped.
fn spawn_pinger(shared: &Arc<Mutex<Shared>>, every: Duration) -> Sender<()> {
    let (stop, stopped) = bounded::<()>(0);
    let shared = Arc::clone(shared);
    let every = every.max(Duration::from_millis(100));
    let run = move || {
        let mut ping = Vec::with_capacity(2);
        codec::encode_pingreq(&mut ping);
        loop {
            let wait = {
                let mut s = lock(&shared);
                let idle = s.last_sent.elapsed();
                if idle >= every {
                    if s.stream.write_all(&ping).is_err() {
                        s.broken = true;
                        return;
                    }
                    s.last_sent = Instant::now();
                    s.last_ping = s.last_sent;
                    s.pings_sent += 1;
                    every
                } else {
                    every - idle
                }
            };
            if stopped.recv_timeout(wait) != Err(RecvTimeoutError::Timeout) {
                return;
            }
        }
    };
    // Without the thread the connection still works; the broker may then close it when idle.
    let _ = thread::Builder::new()
        .name("mqtt-keepalive".into())
        .stack_size(PINGER_STACK)
        .spawn(run);
    stop
}

/// Reads `username` and `password` (a secret, never shown) from a component's section; a
/// password without a user name is refused, as MQTT 3.1.1 sends none alone.
pub fn read_credentials(
    t: &mut Table<'_>,
    problems: &mut Problems,
) -> (Option<String>, Option<Secret>) {
    let username = t.get::<String>("username", problems);
    let password = t.get::<String>("password", problems).map(Secret::new);
    if password.is_some() && username.is_none() {
        problems.at(
            t.as_field(),
            "\"password\" needs a \"username\" (MQTT 3.1.1 sends no password alone)",
        );
    }
    (username, password)
}

/// The default client identifier: `pipit-` and the host name's letters, digits and dashes, at
/// most 23 characters (the length every MQTT 3.1.1 broker must accept).
pub fn default_client_id(host: &str) -> String {
    let mut id = String::from("pipit-");
    id.extend(
        host.chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .take(23 - id.len()),
    );
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_short_and_plain() {
        assert_eq!(default_client_id("r1.lan"), "pipit-r1lan");
        assert_eq!(
            default_client_id("a-very-long-router-name.example.org"),
            "pipit-a-very-long-route"
        );
    }

    #[test]
    fn the_password_never_shows() {
        let s = Session {
            client_id: "c".into(),
            keepalive: Duration::from_secs(30),
            clean_session: false,
            will: None,
            username: Some("u".into()),
            password: Some(Secret::new("hunter2".into())),
        };
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
