//! `tcpconns`: TCP sockets by state, from `/proc/net/tcp` and `/proc/net/tcp6`, for all local
//! ports and optionally for some.

use std::io::ErrorKind;
use std::sync::Arc;

use super::naming::ServiceName;
use super::{Emitter, MetricInfo, Source, SourceContext, SourceError, SourceSpec, SourceType};
use crate::config::reader::{Problems, Table};
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
    read,
};

/// Settings of the `tcpconns` source.
#[derive(Debug, Clone, PartialEq)]
pub struct TcpconnsSpec {
    /// Local ports also counted on their own; default none.
    pub local_ports: Vec<u16>,
}

fn read(t: &mut Table<'_>, problems: &mut Problems) -> Option<Arc<dyn SourceSpec>> {
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
    Some(Arc::new(TcpconnsSpec { local_ports }))
}

impl SourceSpec for TcpconnsSpec {
    fn build(&self, ctx: &SourceContext) -> Box<dyn Source> {
        Box::new(Tcpconns {
            procfs: ctx.procfs.clone(),
            ports: self.local_ports.clone(),
            buf: String::new(),
        })
    }
}

struct Tcpconns {
    procfs: Procfs,
    ports: Vec<u16>,
    buf: String,
}

impl Source for Tcpconns {
    fn collect(&mut self, emit: &mut Emitter<'_>) -> Result<(), SourceError> {
        // counts[0] is all ports; counts[i + 1] is self.ports[i].
        let mut counts = vec![[0u64; STATES.len()]; self.ports.len() + 1];
        for file in ["proc/net/tcp", "proc/net/tcp6"] {
            match self.procfs.read_into(file, &mut self.buf) {
                // A kernel without IPv6 has no tcp6.
                Err(e) if e.kind() == ErrorKind::NotFound && file.ends_with('6') => continue,
                other => other?,
            }
            for line in self.buf.lines().skip(1) {
                let Some((port, state)) = parse_line(line) else {
                    continue;
                };
                counts[0][state] += 1;
                if let Some(i) = self.ports.iter().position(|&p| p == port) {
                    counts[i + 1][state] += 1;
                }
            }
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

/// The local port and the state index of one socket line:
/// `sl local_address:port remote_address:port st …`, all in hex.
fn parse_line(line: &str) -> Option<(u16, usize)> {
    let mut fields = line.split_ascii_whitespace().skip(1);
    let (_, port) = fields.next()?.rsplit_once(':')?;
    let state = fields.nth(1)?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let state = match usize::from_str_radix(state, 16).ok()? {
        NEW_SYN_RECV => 3,
        s => s,
    };
    (1..=STATES.len())
        .contains(&state)
        .then(|| (port, state - 1))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{collect, lines};
    use super::*;

    #[test]
    fn a_router_s_sockets_by_state_and_port() {
        let out = collect(
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
        let out = collect(
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

    #[test]
    fn parses_socket_lines() {
        let line = "   3: 0101A8C0:0016 6401A8C0:D431 01 00000000:00000000 02:000A3F2C 00000000     0        0 8123";
        assert_eq!(parse_line(line), Some((22, 0)));
        assert_eq!(parse_line("  sl  local_address rem_address   st"), None);
        assert_eq!(parse_line("0: 00:0016 00:0000 FF"), None);
    }

    /// Found by fuzzing (`fuzz/run.sh proc_tcpconns`): state 0 underflowed the state index.
    #[test]
    fn a_socket_in_state_zero_is_skipped() {
        let line =
            "   0: 00000000:0016 00000000:0000 00 00000000:00000000 00:00000000 00000000 0 0 1";
        assert_eq!(parse_line(line), None);
        let out = collect(
            &TcpconnsSpec {
                local_ports: vec![22],
            },
            "fuzzed",
        );
        assert!(out.contains("tcpconns.all.established 0\n"), "{out}");
        assert!(out.contains("tcpconns.all.listen 1\n"), "{out}");
    }
}
