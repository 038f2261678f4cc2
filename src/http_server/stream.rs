//! One client's connection: plain TCP, or (with the `tls` feature) TLS over it.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};

/// A server connection whose TLS session (if any) is kept with its socket.
#[cfg(feature = "tls")]
type TlsStream = rustls::StreamOwned<rustls::ServerConnection, TcpStream>;

/// A client's connection.
pub enum Stream {
    /// HTTP over TCP.
    Plain(TcpStream),
    /// HTTPS: the TLS session over TCP.
    #[cfg(feature = "tls")]
    Tls(Box<TlsStream>),
}

impl Stream {
    /// The TCP socket beneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            #[cfg(feature = "tls")]
            Stream::Tls(tls) => &tls.sock,
        }
    }

    /// Ends the answer: the TLS session's closing alert (sent as far as the socket takes it),
    /// then the socket shut for writing. Returns the socket, to be read to its end.
    // Without the `tls` feature the match has one arm; it stays a match for the builds with it.
    #[cfg_attr(not(feature = "tls"), allow(clippy::infallible_destructuring_match))]
    pub fn finish(self) -> TcpStream {
        let tcp = match self {
            Stream::Plain(tcp) => tcp,
            #[cfg(feature = "tls")]
            Stream::Tls(mut tls) => {
                tls.conn.send_close_notify();
                let _ = tls.flush();
                tls.sock
            }
        };
        let _ = tcp.shutdown(Shutdown::Write);
        tcp
    }

    /// True for a TLS connection whose first bytes (waiting to be read) are not a TLS handshake
    /// record (whose type byte is 22), such as a plain HTTP request: it is answered in plain
    /// HTTP, before the TLS session reads a byte and answers with an alert.
    #[cfg(feature = "tls")]
    pub fn plain_on_tls(&self) -> bool {
        let mut first = [0u8; 1];
        matches!(self, Stream::Tls(tls) if tls.sock.peek(&mut first).is_ok_and(|n| n == 1) && first[0] != 22)
    }

    /// The TCP socket, leaving the TLS session (if any) as it is.
    #[cfg(feature = "tls")]
    pub fn into_tcp(self) -> TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => tls.sock,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.read(buf),
            #[cfg(feature = "tls")]
            Stream::Tls(tls) => tls.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.write(buf),
            #[cfg(feature = "tls")]
            Stream::Tls(tls) => tls.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(tcp) => tcp.flush(),
            #[cfg(feature = "tls")]
            Stream::Tls(tls) => tls.flush(),
        }
    }
}
