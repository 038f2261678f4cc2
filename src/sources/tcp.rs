//! `tcp`: a TCP connect check. One connection per tick, closed at once; reported as `ok` with the
//! connect time, or `critical` with the reason.

use std::io;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::{Build, Emitter, MetricInfo, Settings, Source, SourceContext, SourceError, SourceType};
use crate::config::duration;
use crate::config::reader::{Problems, Table};
use crate::event::{Metric, State};

/// The registry entry.
pub const TYPE: SourceType = SourceType {
    name: "tcp",
    description: "a TCP connect check: connect time, and ok or critical with the reason",
    needs_two_samples: false,
    metrics: &[MetricInfo {
        name: "tcp.<name>.latency",
        unit: "seconds",
        description: "time to connect (until the failure, if it failed)",
    }],
    read: super::read::<TcpCheck>,
};

/// Settings of the `tcp` source.
#[derive(Debug, Clone, PartialEq)]
pub struct TcpSpec {
    /// `host:port`, such as `192.168.1.1:53` or `[::1]:22`.
    pub address: String,
    /// How long one connection attempt may take; default 5 s.
    pub connect_timeout: Duration,
}

impl Settings for TcpSpec {
    fn read(t: &mut Table<'_>, problems: &mut Problems) -> Option<TcpSpec> {
        let connect_timeout = t.duration_at_least(
            "connect_timeout",
            Duration::from_secs(5),
            Duration::from_millis(1),
            problems,
        );
        let field = t.field("address");
        let address = t.require::<String>("address", problems)?;
        if address
            .rsplit_once(':')
            .is_none_or(|(_, port)| port.parse::<u16>().is_err())
        {
            if let Some(f) = field {
                problems.expected(&f, "host:port, such as \"192.168.1.1:53\"");
            }
            return None;
        }
        Some(TcpSpec {
            address,
            connect_timeout,
        })
    }
}

impl Build for TcpCheck {
    type Settings = TcpSpec;

    fn build(spec: &TcpSpec, ctx: &SourceContext) -> TcpCheck {
        TcpCheck {
            service: format!("tcp.{}.latency", ctx.instance),
            spec: spec.clone(),
        }
    }
}

struct TcpCheck {
    spec: TcpSpec,
    service: String,
}

impl TcpCheck {
    /// Connects to the first address that answers, trying each the name resolves to.
    fn connect(&self) -> Result<(), String> {
        let addrs = crate::dns::resolve(&self.spec.address, self.spec.connect_timeout)
            .map_err(|e| format!("cannot resolve: {e}"))?;
        let mut last = "the name resolves to no address".to_owned();
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, self.spec.connect_timeout) {
                Ok(_) => return Ok(()),
                Err(e) => last = reason(&e, self.spec.connect_timeout),
            }
        }
        Err(last)
    }
}

fn reason(e: &io::Error, timeout: Duration) -> String {
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
            format!("timed out after {}", duration::format(timeout))
        }
        io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        _ => e.to_string(),
    }
}

impl Source for TcpCheck {
    fn collect(&mut self, emit: &mut Emitter<'_>) -> Result<(), SourceError> {
        let started = Instant::now();
        let result = self.connect();
        let latency = Metric::from(started.elapsed().as_secs_f64());
        let address = &self.spec.address;
        let (state, description) = match result {
            Ok(()) => (State::OK, format!("{address}: connected")),
            Err(reason) => (State::CRITICAL, format!("{address}: {reason}")),
        };
        emit.judged(&self.service, latency, state, &description);
        Ok(())
    }
}
