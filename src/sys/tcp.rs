//! TCP socket options std has no wrapper for: how soon a dead path is noticed (TCP_USER_TIMEOUT,
//! keepalive and its timers) and what the peer's TCP stack has acknowledged (TCP_INFO).

use std::io;
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Sets an integer option on `stream`'s socket.
fn set_int(
    stream: &TcpStream,
    level: libc::c_int,
    name: libc::c_int,
    value: u32,
) -> io::Result<()> {
    let value = libc::c_int::try_from(value).unwrap_or(libc::c_int::MAX);
    // SAFETY: the descriptor belongs to `stream`, borrowed (so open) for the whole call; `value`
    // is a c_int on our stack that outlives the call, and its exact size is passed with it.
    let r = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads an integer option of `stream`'s socket: for tests that check what was set.
#[cfg(test)]
pub fn get_int(stream: &TcpStream, level: libc::c_int, name: libc::c_int) -> io::Result<i64> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the descriptor belongs to `stream`, borrowed (so open) for the whole call; `value`
    // is a writable c_int on our stack and `len` holds its exact size.
    let r = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            level,
            name,
            (&raw mut value).cast(),
            &raw mut len,
        )
    };
    if r == 0 {
        Ok(i64::from(value))
    } else {
        Err(io::Error::last_os_error())
    }
}

fn whole_seconds(d: Duration) -> u32 {
    u32::try_from(d.as_secs().max(1)).unwrap_or(u32::MAX)
}

/// Aborts the connection when data written stays unacknowledged for `timeout` (TCP_USER_TIMEOUT;
/// also bounds how long keepalive probes go unanswered). Zero leaves the kernel's default (about
/// 15 minutes of retransmissions).
pub fn set_user_timeout(stream: &TcpStream, timeout: Duration) -> io::Result<()> {
    let ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
    set_int(stream, libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT, ms)
}

/// Turns keepalive on: the first probe after `idle` without traffic, then one every `interval`,
/// the connection aborted after `count` unanswered probes (each rounded to whole seconds, at
/// least 1).
pub fn set_keepalive(
    stream: &TcpStream,
    idle: Duration,
    interval: Duration,
    count: u32,
) -> io::Result<()> {
    set_int(stream, libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1)?;
    set_int(
        stream,
        libc::IPPROTO_TCP,
        libc::TCP_KEEPIDLE,
        whole_seconds(idle),
    )?;
    set_int(
        stream,
        libc::IPPROTO_TCP,
        libc::TCP_KEEPINTVL,
        whole_seconds(interval),
    )?;
    set_int(stream, libc::IPPROTO_TCP, libc::TCP_KEEPCNT, count.max(1))
}

/// The kernel's `struct tcp_info` up to `tcpi_bytes_received` (Linux 4.1); the kernel fills what
/// fits and says how much.
#[repr(C)]
#[derive(Default)]
struct TcpInfo {
    state: u8,
    ca_state: u8,
    retransmits: u8,
    probes: u8,
    backoff: u8,
    options: u8,
    wscale: u8,
    flags: u8,
    u32s_a: [u32; 24],
    pacing_rate: u64,
    max_pacing_rate: u64,
    bytes_acked: u64,
    bytes_received: u64,
}

/// The state of a TCP connection as its own stack sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpState {
    /// Open both ways.
    Established,
    /// The peer has closed its side (a FIN arrived): it will read nothing more.
    PeerClosed,
    /// The connection is gone: reset, timed out, or closed; `TcpStream::take_error` says why.
    Gone,
    /// Still closing or opening (any other state).
    Other,
}

/// What a connection's TCP stack knows of its progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpProgress {
    /// The state.
    pub state: TcpState,
    /// Bytes the peer's TCP has acknowledged since the connection opened (the SYN may count one).
    pub bytes_acked: u64,
}

/// Reads TCP_INFO of `stream`: state, bytes acknowledged and the peer's window (Linux 4.1 and
/// later for the bytes acknowledged).
pub fn progress(stream: &TcpStream) -> io::Result<TcpProgress> {
    let mut info = TcpInfo::default();
    let mut len = std::mem::size_of::<TcpInfo>() as libc::socklen_t;
    // SAFETY: the descriptor belongs to `stream`, borrowed (so open) for the whole call; `info`
    // is a writable plain-integer struct on our stack and `len` holds its exact size, so the
    // kernel writes at most that many bytes into it, and sets `len` to how many it wrote.
    let r = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    let filled = |end: usize| len as usize >= end;
    if !filled(std::mem::offset_of!(TcpInfo, bytes_received)) {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this kernel's TCP_INFO lacks the bytes acknowledged (Linux 4.1 or later needed)",
        ));
    }
    let state = match i32::from(info.state) {
        1 => TcpState::Established,
        8 => TcpState::PeerClosed,
        7 => TcpState::Gone,
        _ => TcpState::Other,
    };
    Ok(TcpProgress {
        state,
        bytes_acked: info.bytes_acked,
    })
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;

    use super::*;

    #[test]
    fn counts_what_the_peer_acknowledged_and_sees_it_close() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        set_user_timeout(&client, Duration::from_secs(30)).unwrap();
        set_keepalive(&client, Duration::from_secs(10), Duration::from_secs(5), 4).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let base = progress(&client).unwrap();
        assert_eq!(base.state, TcpState::Established);
        client.write_all(&[7u8; 1000]).unwrap();
        server.read_exact(&mut [0u8; 1000]).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while progress(&client).unwrap().bytes_acked < base.bytes_acked + 1000 {
            assert!(std::time::Instant::now() < deadline, "never acknowledged");
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(server);
        while progress(&client).unwrap().state != TcpState::PeerClosed {
            assert!(
                std::time::Instant::now() < deadline,
                "the close never arrived"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
