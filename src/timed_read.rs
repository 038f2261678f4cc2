//! One read from a socket that must bring something before a deadline: the control socket waiting
//! for a request, the Riemann and MQTT clients waiting for an answer. The socket's own timeout is
//! set to the time left, so a slow peer costs at most the deadline.

use std::fmt;
use std::io::{self, Read};
use std::time::{Duration, Instant};

/// Why a read before a deadline brought nothing.
#[derive(Debug)]
#[non_exhaustive]
pub enum TimedReadError {
    /// The deadline passed before a byte arrived: the peer is slow, hung or gone silent. The
    /// caller says which timeout to raise, or takes the peer for dead.
    TimedOut,
    /// The read, or setting its timeout, failed: the connection is broken; open a new one.
    Io(io::Error),
}

impl fmt::Display for TimedReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimedReadError::TimedOut => f.write_str("nothing arrived before the deadline"),
            TimedReadError::Io(e) => write!(f, "cannot read: {e}"),
        }
    }
}

impl std::error::Error for TimedReadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TimedReadError::TimedOut => None,
            TimedReadError::Io(e) => Some(e),
        }
    }
}

/// Reads once into `out`, waiting at most until `deadline`; `Ok(0)` at the end of the stream.
/// `set_timeout` gives the socket the time left; a deadline already past still takes what has
/// arrived (a zero timeout would block forever, so it waits a microsecond). An interrupted read is
/// tried again.
pub fn read_before<S: Read>(
    stream: &mut S,
    out: &mut [u8],
    deadline: Instant,
    set_timeout: impl Fn(&S, Duration) -> io::Result<()>,
) -> Result<usize, TimedReadError> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        set_timeout(stream, left.max(Duration::from_micros(1))).map_err(TimedReadError::Io)?;
        match stream.read(out) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(TimedReadError::TimedOut);
            }
            Err(e) => return Err(TimedReadError::Io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    fn timeout(s: &UnixStream, d: Duration) -> io::Result<()> {
        s.set_read_timeout(Some(d))
    }

    #[test]
    fn bytes_the_end_and_a_silent_peer_are_told_apart() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let mut buf = [0u8; 8];
        b.write_all(b"hi").unwrap();
        let soon = Instant::now() + Duration::from_secs(5);
        assert_eq!(read_before(&mut a, &mut buf, soon, timeout).unwrap(), 2);
        let started = Instant::now();
        let silent = read_before(
            &mut a,
            &mut buf,
            started + Duration::from_millis(50),
            timeout,
        );
        assert!(
            matches!(silent, Err(TimedReadError::TimedOut)),
            "{silent:?}"
        );
        assert!(started.elapsed() >= Duration::from_millis(50));
        b.write_all(b"x").unwrap();
        assert_eq!(
            read_before(&mut a, &mut buf, Instant::now(), timeout).unwrap(),
            1,
            "a past deadline still takes what arrived"
        );
        drop(b);
        assert_eq!(read_before(&mut a, &mut buf, soon, timeout).unwrap(), 0);
    }
}
