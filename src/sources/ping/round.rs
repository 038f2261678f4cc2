//! One round of probes: `count` echo requests to every target, spread evenly over the round,
//! each waited for until its reply timeout; replies matched by identifier, sequence number,
//! sender and data, so that anything not ours is ignored.

use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::echo;
use super::sockets::{Socket, Sockets};
use crate::sys;

/// The longest message read: an IPv4 header with options and an echo of [`DATA_LEN`] bytes fit
/// well within it; anything longer is not a reply to us.
const BUFFER: usize = 1500;
/// Bytes of data in each request, as ping(8) sends by default.
pub const DATA_LEN: usize = 56;

/// How one round is run.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Requests per target.
    pub count: u32,
    /// Time between two requests to one target.
    pub gap: Duration,
    /// How long a request waits for its reply before it counts as lost.
    pub reply_timeout: Duration,
}

/// What one target's round came to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    /// Requests sent, or attempted: one the kernel refused to send counts as lost.
    pub sent: u32,
    /// Replies received in time.
    pub received: u32,
    /// The round-trip times of those replies, in seconds.
    pub rtts: Vec<f64>,
    /// Why the kernel refused a send, if it did (the last reason).
    pub send_error: Option<String>,
}

/// A request waiting for its reply.
struct Probe {
    target: usize,
    seq: u16,
    sent: Instant,
}

/// Runs one round to `targets` (addresses; `None` for a target without one, which gets no
/// requests) over `sockets`, numbering requests from `*seq` on; every request carries `data`.
/// Returns one tally per target, in order. A failure to wait or read ends it early, and so does
/// `stopping` disconnecting: then with the tallies so far, which the runner no longer sends.
pub fn run(
    plan: Plan,
    targets: &[Option<IpAddr>],
    sockets: &Sockets,
    seq: &mut u16,
    data: &[u8],
    stopping: &Receiver<()>,
) -> std::io::Result<Vec<Tally>> {
    let mut tallies = vec![Tally::default(); targets.len()];
    let mut waiting: Vec<Probe> = Vec::new();
    let start = Instant::now();
    let mut next = 0u32;
    let mut buf = vec![0u8; BUFFER];
    let open: Vec<&Socket> = [&sockets.v4, &sockets.v6]
        .into_iter()
        .filter_map(|s| s.as_ref().ok())
        .collect();
    let mut fds: Vec<sys::PollFd> = open
        .iter()
        .map(|s| sys::readable(s.socket.as_raw_fd()))
        .collect();
    loop {
        let now = Instant::now();
        if next < plan.count && now >= start + plan.gap * next {
            for (target, address) in targets.iter().enumerate() {
                if let Some(address) = address {
                    let probe = send(sockets, *address, *seq, data, &mut tallies[target]);
                    if probe {
                        waiting.push(Probe {
                            target,
                            seq: *seq,
                            sent: Instant::now(),
                        });
                    }
                    *seq = seq.wrapping_add(1);
                }
            }
            next += 1;
            continue;
        }
        waiting.retain(|p| now < p.sent + plan.reply_timeout);
        let sends_left = next < plan.count;
        if !sends_left && waiting.is_empty() {
            return Ok(tallies);
        }
        let mut until = waiting.iter().map(|p| p.sent + plan.reply_timeout).min();
        if sends_left {
            let send_at = start + plan.gap * next;
            until = Some(until.map_or(send_at, |u| u.min(send_at)));
        }
        let wait = until.map_or(Duration::ZERO, |u| u.saturating_duration_since(now));
        if waiting.is_empty() {
            // No reply is due before the next requests: wait for them on the stop signal
            // instead, so a stop ends the round now (anything arriving meanwhile stays queued).
            if let Err(RecvTimeoutError::Disconnected) = stopping.recv_timeout(wait) {
                return Ok(tallies);
            }
            continue;
        }
        sys::poll(&mut fds, wait)?;
        for (socket, fd) in open.iter().zip(&fds) {
            if sys::is_ready(fd) {
                receive(socket, targets, data, &mut buf, &mut waiting, &mut tallies)?;
            }
        }
    }
}

/// Sends one request to `address`; false when it could not be sent (counted as sent and lost).
fn send(sockets: &Sockets, address: IpAddr, seq: u16, data: &[u8], tally: &mut Tally) -> bool {
    tally.sent += 1;
    let result = sockets.of(address).map_err(str::to_owned).and_then(|s| {
        let request = echo::request(address.is_ipv6(), s.id, seq, data);
        s.socket
            .send_to(&request, address)
            .map_err(|e| refused(address, &e))
    });
    match result {
        Ok(()) => true,
        Err(e) => {
            tally.send_error = Some(e);
            false
        }
    }
}

/// Why a request to `address` could not be sent, with what most likely caused it.
fn refused(address: IpAddr, e: &std::io::Error) -> String {
    let hint = match e.raw_os_error() {
        // What Linux answers for a blackhole route; a prohibit route or a firewall gives EACCES.
        Some(libc::EINVAL) => " (a blackhole route to it?)",
        Some(libc::EPERM | libc::EACCES) => " (a firewall rule refusing it?)",
        _ => "",
    };
    format!("cannot send to {address}: {e}{hint}")
}

/// Reads every message queued on `socket` and credits the replies that answer a waiting probe.
fn receive(
    socket: &Socket,
    targets: &[Option<IpAddr>],
    data: &[u8],
    buf: &mut [u8],
    waiting: &mut Vec<Probe>,
    tallies: &mut [Tally],
) -> std::io::Result<()> {
    while let Some((len, from)) = socket.socket.recv_from(buf)? {
        let arrived = Instant::now();
        let Some(reply) = echo::parse(&buf[..len], socket.framing) else {
            continue;
        };
        if reply.id != socket.id || reply.data != data {
            continue;
        }
        let answered = waiting
            .iter()
            .position(|p| p.seq == reply.seq && targets[p.target] == Some(from));
        if let Some(i) = answered {
            let probe = waiting.swap_remove(i);
            let tally = &mut tallies[probe.target];
            tally.received += 1;
            tally
                .rtts
                .push(arrived.duration_since(probe.sent).as_secs_f64());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_send_says_what_likely_refused_it() {
        let to = IpAddr::from([192, 0, 2, 9]);
        let blackhole = refused(to, &std::io::Error::from_raw_os_error(libc::EINVAL));
        assert!(
            blackhole.starts_with("cannot send to 192.0.2.9: ")
                && blackhole.ends_with("blackhole route to it?)"),
            "{blackhole}"
        );
        let firewall = refused(to, &std::io::Error::from_raw_os_error(libc::EACCES));
        assert!(
            firewall.ends_with("firewall rule refusing it?)"),
            "{firewall}"
        );
        let other = refused(to, &std::io::Error::from_raw_os_error(libc::ENETDOWN));
        assert!(!other.contains('?'), "{other}");
    }
}
