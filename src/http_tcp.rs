//! The TCP connections of pipit's HTTP clients: ureq's own connector keeps its socket to itself,
//! so this one opens each connection, sets the dead-path options of [`Liveness`] on it
//! (TCP_USER_TIMEOUT and keepalive), and carries ureq's requests over it. It implements traits
//! from ureq's `unversioned` module, outside ureq's semver promise; Cargo.toml pins the exact
//! version.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, LazyBuffers, NextTimeout, Transport,
};

use crate::liveness::Liveness;

/// Opens TCP connections with `liveness` set on each; the first link of every agent's chain.
#[derive(Debug)]
pub struct LiveTcp(pub Liveness);

impl Connector for LiveTcp {
    type Out = LiveTcpTransport;

    fn connect(
        &self,
        details: &ConnectionDetails,
        _: Option<()>,
    ) -> Result<Option<LiveTcpTransport>, ureq::Error> {
        let stream = self.open(details)?;
        let config = details.config;
        // No shutdown handle is registered with the agent: pipit never calls `Agent::shutdown`.
        Ok(Some(LiveTcpTransport {
            stream,
            buffers: LazyBuffers::new(config.input_buffer_size(), config.output_buffer_size()),
        }))
    }
}

impl LiveTcp {
    /// Connects to the first of the resolved addresses that answers within what is left of the
    /// connect timeout, and sets the options on it.
    fn open(&self, details: &ConnectionDetails) -> Result<TcpStream, ureq::Error> {
        let start = Instant::now();
        let budget = details.timeout.not_zero().map(|t| *t);
        let mut last = ureq::Error::HostNotFound;
        for addr in &details.addrs {
            let connected = match budget.map(|b| b.saturating_sub(start.elapsed())) {
                Some(left) if left.is_zero() => {
                    return Err(ureq::Error::Timeout(details.timeout.reason));
                }
                Some(left) => TcpStream::connect_timeout(addr, left),
                None => TcpStream::connect(addr),
            };
            match connected {
                Ok(stream) => {
                    stream.set_nodelay(details.config.no_delay())?;
                    self.0.apply(&stream)?;
                    return Ok(stream);
                }
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    last = ureq::Error::Timeout(details.timeout.reason);
                }
                Err(e) => last = ureq::Error::Io(e),
            }
        }
        Err(last)
    }
}

/// One connection opened by [`LiveTcp`].
pub struct LiveTcpTransport {
    stream: TcpStream,
    buffers: LazyBuffers,
}

/// The socket timeout for the next read or write; a budget already spent is ureq's timeout.
fn socket_timeout(timeout: NextTimeout) -> Result<Option<std::time::Duration>, ureq::Error> {
    if timeout.after.is_zero() {
        return Err(ureq::Error::Timeout(timeout.reason));
    }
    Ok(timeout.not_zero().map(|t| *t))
}

/// A failed read or write: a socket timeout that expired (EAGAIN) is ureq's timeout; anything
/// else, such as ETIMEDOUT from TCP_USER_TIMEOUT or keepalive on a dead path, stays an I/O error.
fn io_error(e: io::Error, timeout: NextTimeout) -> ureq::Error {
    if e.kind() == io::ErrorKind::WouldBlock {
        ureq::Error::Timeout(timeout.reason)
    } else {
        ureq::Error::Io(e)
    }
}

impl Transport for LiveTcpTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        let timeout = timeout.for_write();
        self.stream.set_write_timeout(socket_timeout(timeout)?)?;
        let output = &self.buffers.output()[..amount];
        (&self.stream)
            .write_all(output)
            .map_err(|e| io_error(e, timeout))
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        let timeout = timeout.for_read();
        let limit = socket_timeout(timeout)?;
        let start = Instant::now();
        self.stream.set_read_timeout(limit)?;
        let input = self.buffers.input_append_buf();
        let amount = loop {
            match (&self.stream).read(input) {
                // A signal cuts a read with a timeout short (Linux does not restart it): go on
                // with what is left of the time.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    if let Some(limit) = limit {
                        let left = limit.saturating_sub(start.elapsed());
                        if left.is_zero() {
                            return Err(ureq::Error::Timeout(timeout.reason));
                        }
                        self.stream.set_read_timeout(Some(left))?;
                    }
                }
                result => break result.map_err(|e| io_error(e, timeout))?,
            }
        };
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    /// Open when nothing is waiting to be read and the connection has not failed: a pooled
    /// connection that keepalive found dead, or that the server closed, is not reused.
    fn is_open(&mut self) -> bool {
        if self.stream.set_nonblocking(true).is_err() {
            return false;
        }
        let idle = matches!(
            self.stream.peek(&mut [0u8]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock
        );
        self.stream.set_nonblocking(false).is_ok() && idle
    }
}

impl fmt::Debug for LiveTcpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveTcpTransport")
            .field("peer", &self.stream.peer_addr().ok())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::time::Duration;

    use super::*;

    /// Reads one request with a body ending in `end` from `conn`, and answers 204; closes the
    /// connection after it when `close` is set.
    fn answer(conn: &mut TcpStream, end: &str, close: bool) -> String {
        let mut request = Vec::new();
        let mut chunk = [0u8; 1024];
        while !request.ends_with(end.as_bytes()) {
            let n = conn.read(&mut chunk).unwrap();
            assert!(n > 0, "the request ended early: {request:?}");
            request.extend_from_slice(&chunk[..n]);
        }
        conn.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
        if close {
            conn.shutdown(std::net::Shutdown::Both).unwrap();
        }
        String::from_utf8(request).unwrap()
    }

    /// Requests and answers go over the connections it opens; one the server kept is reused, one
    /// it closed is not.
    #[test]
    fn carries_requests_and_reuses_only_open_connections() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/write", listener.local_addr().unwrap());
        let (closed, wait_closed) = std::sync::mpsc::channel();
        let server = std::thread::spawn(move || {
            let (mut first, _) = listener.accept().unwrap();
            let mut seen = vec![answer(&mut first, "one", false)];
            seen.push(answer(&mut first, "two", true));
            closed.send(()).unwrap();
            let (mut second, _) = listener.accept().unwrap();
            seen.push(answer(&mut second, "three", false));
            seen
        });
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .proxy(None)
            .build();
        let agent = crate::http_client::agent_with(config, Liveness::DEFAULT);
        for body in ["one", "two", "three"] {
            let response = agent.post(&url).send(body).unwrap();
            assert_eq!(response.status().as_u16(), 204);
            if body == "two" {
                // The server closes after its answer; a request sent before the close would race
                // it, which no pool can see coming.
                wait_closed.recv_timeout(Duration::from_secs(10)).unwrap();
            }
        }
        let seen = server.join().unwrap();
        assert_eq!(seen.len(), 3);
        for (request, body) in seen.iter().zip(["one", "two", "three"]) {
            assert!(request.starts_with("POST /write HTTP/1.1\r\n"), "{request}");
            assert!(request.ends_with(body), "{request}");
        }
    }

    /// A server that never answers costs the request's own timeout, named as ureq names it.
    #[test]
    fn a_silent_server_times_the_request_out() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/write", listener.local_addr().unwrap());
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_millis(300)))
            .proxy(None)
            .build();
        let agent = crate::http_client::agent_with(config, Liveness::DEFAULT);
        let start = Instant::now();
        let e = agent.post(&url).send("x").unwrap_err();
        assert!(matches!(e, ureq::Error::Timeout(_)), "{e:?}");
        assert!(start.elapsed() < Duration::from_secs(5));
        drop(listener);
    }
}
