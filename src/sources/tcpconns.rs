//! `tcpconns`: TCP sockets by state, for all local ports and optionally for some. On the live
//! system the kernel lists them over netlink socket diagnostics (as `ss` and collectd do); where
//! it cannot (a kernel without `inet_diag`, or a host root other than `/`), `/proc/net/tcp` and
//! `/proc/net/tcp6` are read instead.

use std::io::ErrorKind;
use std::path::Path;

use super::naming::ServiceName;
use super::{Build, Emitter, MetricInfo, Settings, Source, SourceContext, SourceError, SourceType};
use crate::config::reader::{Problems, Table};
use crate::netlink::NetlinkError;
use crate::netlink::sock_diag::TcpSockets;
use crate::procfs::Procfs;

/// The states, in the kernel's numbering from 1 (`TCP_ESTABLISHED`).
const STATES: [&str; 11] = [
    "established",
    "syn_sent",
    "syn_recv",
    "fin_wait1",
    "fin_wait2",
    "time_wait",
    "close",
    "close_wait",
    "last_ack",
    "listen",
    "closing",
];

/// The kernel's `TCP_NEW_SYN_RECV`, shown as `syn_recv`.
const NEW_SYN_RECV: usize = 12;

/// The registry entry.
pub const TYPE: SourceType = SourceType {
    name: "tcpconns",
    description: "TCP sockets by state, for all local ports and for the ports named",
    needs_two_samples: false,
    metrics: &[
        MetricInfo {
            name: "tcpconns.all.<state>",
            unit: "count",
            description: "sockets in the state (established, listen, time_wait, …), IPv4 and IPv6",
        },
        MetricInfo {
            name: "tcpconns.<port>.<state>",
            unit: "count",
            description: "the same for sockets on one local port, with local_ports",
        },
    ],
    read: super::read::<Tcpconns>,
};

/// Settings of the `tcpconns` source.
#[derive(Debug, Clone, PartialEq)]
pub struct TcpconnsSpec {
    /// Local ports also counted on their own; default none.
    pub local_ports: Vec<u16>,
}

impl Settings for TcpconnsSpec {
    fn read(t: &mut Table<'_>, problems: &mut Problems) -> Option<TcpconnsSpec> {
        let field = t.field("local_ports");
        let ports: Vec<u64> = field
            .as_ref()
            .and_then(|f| f.parse(problems))
            .unwrap_or_default();
        let local_ports: Vec<u16> = ports
            .iter()
            .filter_map(|&p| u16::try_from(p).ok().filter(|&p| p > 0))
            .collect();
        if let (Some(field), true) = (field, local_ports.len() != ports.len()) {
            problems.expected(&field, "a list of port numbers from 1 to 65535");
        }
        Some(TcpconnsSpec { local_ports })
    }
}

impl Build for Tcpconns {
    type Settings = TcpconnsSpec;
    const NEVER_WAITS: bool = true;

    fn build(spec: &TcpconnsSpec, ctx: &SourceContext) -> Tcpconns {
        let target = super::log_target(&ctx.instance);
        // Socket diagnostics describe the running kernel, so they serve only a host root of `/`
        // (fixture trees and a container's view of another root are read as files).
        let diag = if ctx.procfs.root() == Path::new("/") {
            TcpSockets::open()
                .map_err(|e| log::info!(target: &target, "{e}; reading /proc/net/tcp instead"))
                .ok()
        } else {
            None
        };
        Tcpconns {
            procfs: ctx.procfs.clone(),
            ports: spec.local_ports.clone(),
            buf: String::new(),
            diag,
            target,
        }
    }
}

struct Tcpconns {
    procfs: Procfs,
    ports: Vec<u16>,
    buf: String,
    /// The kernel's socket diagnostics; `None` reads `/proc/net/tcp*`.
    diag: Option<TcpSockets>,
    target: String,
}

/// Sockets by state: `[0]` for all ports, `[i + 1]` for the i-th configured port.
type Counts = Vec<[u64; STATES.len()]>;

impl Tcpconns {
    /// Counts one socket in state `state` (the kernel's number) on `port`.
    fn count(ports: &[u16], counts: &mut Counts, port: u16, state: usize) {
        let state = match state {
            NEW_SYN_RECV => 3,
            s => s,
        };
        if !(1..=STATES.len()).contains(&state) {
            return;
        }
        counts[0][state - 1] += 1;
        if let Some(i) = ports.iter().position(|&p| p == port) {
            counts[i + 1][state - 1] += 1;
        }
    }

    /// Counts over netlink.
    fn count_by_netlink(&mut self, counts: &mut Counts) -> Result<(), NetlinkError> {
        let Some(diag) = self.diag.as_mut() else {
            return Ok(());
        };
        let ports = &self.ports;
        diag.each(&mut |s| Self::count(ports, counts, s.local_port, usize::from(s.state)))
    }

    /// Counts from `/proc/net/tcp` and `/proc/net/tcp6`.
    fn count_from_files(&mut self, counts: &mut Counts) -> Result<(), SourceError> {
        for file in ["proc/net/tcp", "proc/net/tcp6"] {
            match self.procfs.read_into(file, &mut self.buf) {
                // A kernel without IPv6 has no tcp6.
                Err(e) if e.kind() == ErrorKind::NotFound && file.ends_with('6') => continue,
                other => other?,
            }
            for line in self.buf.lines().skip(1) {
                if let Some((port, state)) = parse_line(line) {
                    Self::count(&self.ports, counts, port, state);
                }
            }
        }
        Ok(())
    }
}

impl Source for Tcpconns {
    fn collect(&mut self, emit: &mut Emitter<'_>) -> Result<(), SourceError> {
        let mut counts = vec![[0u64; STATES.len()]; self.ports.len() + 1];
        if self.diag.is_some() {
            match self.count_by_netlink(&mut counts) {
                Ok(()) => {}
                Err(e) if e.is_unsupported() => {
                    log::info!(target: &self.target, "{e}; reading /proc/net/tcp from now on");
                    self.diag = None;
                    counts.iter_mut().for_each(|c| *c = [0; STATES.len()]);
                }
                Err(e) => return Err(SourceError::Netlink(e)),
            }
        }
        if self.diag.is_none() {
            self.count_from_files(&mut counts)?;
        }
        let mut name = ServiceName::default();
        for (i, by_state) in counts.iter().enumerate() {
            match i {
                0 => name.start("tcpconns", "all"),
                _ => name.start("tcpconns", &self.ports[i - 1].to_string()),
            }
            for (state, count) in STATES.iter().zip(by_state) {
                emit.metric(name.with(state), *count);
            }
        }
        Ok(())
    }
}

/// The local port and the kernel's state number of one socket line:
/// `sl local_address:port remote_address:port st …`, all in hex.
fn parse_line(line: &str) -> Option<(u16, usize)> {
    let mut fields = line.split_ascii_whitespace().skip(1);
    let (_, port) = fields.next()?.rsplit_once(':')?;
    let state = fields.nth(1)?;
    let port = u16::from_str_radix(port, 16).ok()?;
    Some((port, usize::from_str_radix(state, 16).ok()?))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::testing::{collect, lines};
    use super::*;

    #[test]
    fn a_router_s_sockets_by_state_and_port() {
        let out = collect::<Tcpconns>(
            &TcpconnsSpec {
                local_ports: vec![22, 80],
            },
            "openwrt",
        );
        let all = "tcpconns.all.established 1
            tcpconns.all.syn_sent 0
            tcpconns.all.syn_recv 0
            tcpconns.all.fin_wait1 0
            tcpconns.all.fin_wait2 0
            tcpconns.all.time_wait 2
            tcpconns.all.close 0
            tcpconns.all.close_wait 0
            tcpconns.all.last_ack 0
            tcpconns.all.listen 5
            tcpconns.all.closing 0
            tcpconns.22.established 1
            tcpconns.22.syn_sent 0
            tcpconns.22.syn_recv 0
            tcpconns.22.fin_wait1 0
            tcpconns.22.fin_wait2 0
            tcpconns.22.time_wait 0
            tcpconns.22.close 0
            tcpconns.22.close_wait 0
            tcpconns.22.last_ack 0
            tcpconns.22.listen 2
            tcpconns.22.closing 0
            tcpconns.80.established 0
            tcpconns.80.syn_sent 0
            tcpconns.80.syn_recv 0
            tcpconns.80.fin_wait1 0
            tcpconns.80.fin_wait2 0
            tcpconns.80.time_wait 2
            tcpconns.80.close 0
            tcpconns.80.close_wait 0
            tcpconns.80.last_ack 0
            tcpconns.80.listen 2
            tcpconns.80.closing 0";
        assert_eq!(out, lines(all));
    }

    #[test]
    fn a_server_s_sockets() {
        let out = collect::<Tcpconns>(
            &TcpconnsSpec {
                local_ports: Vec::new(),
            },
            "debian",
        );
        assert!(out.starts_with("tcpconns.all.established 2\n"), "{out}");
        assert!(out.contains("tcpconns.all.close_wait 1\n"), "{out}");
        assert!(out.contains("tcpconns.all.listen 3\n"), "{out}");
        assert_eq!(out.lines().count(), 11);
    }

    /// The live system, both ways: sockets this test opens are counted alike over netlink and
    /// from `/proc`, and enough of them that the netlink answer spans several datagrams.
    #[test]
    fn live_sockets_are_counted_alike_over_netlink_and_from_proc() {
        use std::net::{TcpListener, TcpStream};
        const N: usize = 400;
        // Fewer than the listen backlog: these are never accepted.
        const N6: usize = 50;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let accepted: Vec<TcpStream> = (0..N).map(|_| listener.accept().unwrap().0).collect();
            (listener, accepted)
        });
        let clients: Vec<TcpStream> = (0..N)
            .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
            .collect();
        let (_listener, _accepted) = server.join().unwrap();
        // The same port over IPv6, to show one dump lists both families.
        let listener6 = TcpListener::bind(("::1", port)).unwrap();
        let clients6: Vec<TcpStream> = (0..N6)
            .map(|_| TcpStream::connect(("::1", port)).unwrap())
            .collect();
        let ctx = SourceContext {
            procfs: Procfs::new("/"),
            ..super::super::testing::context("minimal", &Arc::new(crate::cache::Cache::in_memory()))
        };
        let spec = TcpconnsSpec {
            local_ports: vec![port],
        };
        let expected = format!("tcpconns.{port}.established {}\n", N + N6);
        let listening = format!("tcpconns.{port}.listen 2\n");

        let mut by_netlink = Tcpconns::build(&spec, &ctx);
        assert!(by_netlink.diag.is_some(), "socket diagnostics did not open");
        let netlink = super::super::testing::collect_with(&mut by_netlink, 100);
        assert!(
            by_netlink.diag.is_some(),
            "socket diagnostics were given up"
        );

        let mut from_proc = Tcpconns {
            diag: None,
            ..Tcpconns::build(&spec, &ctx)
        };
        let proc = super::super::testing::collect_with(&mut from_proc, 100);
        for out in [&netlink, &proc] {
            assert!(out.contains(&expected), "{out}");
            assert!(out.contains(&listening), "{out}");
        }
        drop((clients, clients6, listener6));
    }

    #[test]
    fn parses_socket_lines() {
        let line = "   3: 0101A8C0:0016 6401A8C0:D431 01 00000000:00000000 02:000A3F2C 00000000     0        0 8123";
        assert_eq!(parse_line(line), Some((22, 1)));
        assert_eq!(parse_line("  sl  local_address rem_address   st"), None);
        assert_eq!(parse_line("0: 00:0016 00:0000 FF"), Some((22, 255)));
        assert_eq!(parse_line("0: 00:0016 00:0000"), None);
    }

    /// Found by fuzzing (`fuzz/run.sh proc_tcpconns`): state 0 underflowed the state index.
    #[test]
    fn a_socket_in_state_zero_is_skipped() {
        let out = collect::<Tcpconns>(
            &TcpconnsSpec {
                local_ports: vec![22],
            },
            "fuzzed",
        );
        assert!(out.contains("tcpconns.all.established 0\n"), "{out}");
        assert!(out.contains("tcpconns.all.listen 1\n"), "{out}");
    }
}
