//! The `riemann` output: each batch is one message to a Riemann server, acknowledged before it
//! counts as delivered (except over UDP, where nothing is acknowledged).

use std::time::Duration;

use super::client::{
    DEFAULT_PORT, DEFAULT_TLS_PORT, RiemannClient, RiemannError, Timeouts, Transport,
};
use crate::config::AgentConfig;
use crate::config::reader::{Problems, Table};
use crate::event::Event;
use crate::liveness::Liveness;
use crate::outputs::destination::{Destination, read_targets};
use crate::outputs::{Output, OutputError, OutputSpec, OutputType, Settings};
use crate::tls::TlsFiles;

/// The registry entry.
pub const TYPE: OutputType = OutputType {
    name: "riemann",
    description: "events to a Riemann server over TCP, UDP or TLS (protobuf)",
    read: crate::outputs::read::<RiemannSpec>,
};

/// The transport as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// `tcp`: acknowledged messages.
    Tcp,
    /// `udp`: unacknowledged datagrams.
    Udp,
    /// `tls`: acknowledged messages inside TLS (needs the `tls` feature).
    Tls,
}

/// Settings of the `riemann` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RiemannSpec {
    /// The servers: `host` and `port` (default 5555, or 5554 for TLS), or the `targets` list.
    pub targets: Vec<Destination>,
    /// How events travel; default TCP.
    pub transport: TransportKind,
    /// Connect, write and ack timeouts; 5 s each by default.
    pub timeouts: Timeouts,
    /// Certificates, for TLS.
    pub tls: Option<TlsFiles>,
    /// How a dead path is noticed (TCP and TLS).
    pub liveness: Liveness,
}

impl Settings for RiemannSpec {
    fn read(
        t: &mut Table<'_>,
        _agent: &AgentConfig,
        problems: &mut Problems,
    ) -> Option<RiemannSpec> {
        let transport = match t.choice("transport", &["tcp", "udp", "tls"], "tcp", problems) {
            "udp" => TransportKind::Udp,
            "tls" => TransportKind::Tls,
            _ => TransportKind::Tcp,
        };
        let default_port = if transport == TransportKind::Tls {
            DEFAULT_TLS_PORT
        } else {
            DEFAULT_PORT
        };
        let targets = read_targets(t, default_port, problems);
        let d = Timeouts::default();
        let min = Duration::from_millis(1);
        let timeouts = Timeouts {
            connect: t.duration_at_least("connect_timeout", d.connect, min, problems),
            write: t.duration_at_least("write_timeout", d.write, min, problems),
            ack: t.duration_at_least("ack_timeout", d.ack, min, problems),
        };
        let tls = TlsFiles::read(
            t,
            transport == TransportKind::Tls,
            "\"tcp\" or \"udp\"",
            problems,
        );
        let liveness = Liveness::read(t, problems);
        Some(RiemannSpec {
            targets: targets?,
            transport,
            timeouts,
            tls,
            liveness,
        })
    }
}

impl RiemannSpec {
    /// The first target's `host:port`, with brackets around an IPv6 address.
    pub fn addr(&self) -> String {
        self.targets
            .first()
            .map(Destination::addr)
            .unwrap_or_default()
    }

    fn transport(&self, _host: &str) -> Result<Transport, OutputError> {
        match self.transport {
            TransportKind::Tcp => Ok(Transport::Tcp),
            TransportKind::Udp => Ok(Transport::Udp),
            #[cfg(feature = "tls")]
            TransportKind::Tls => {
                let files = self
                    .tls
                    .as_ref()
                    .ok_or_else(|| OutputError::Tls("TLS without a CA file".to_owned()))?;
                files
                    .load(_host)
                    .map(Transport::Tls)
                    .map_err(OutputError::Tls)
            }
            #[cfg(not(feature = "tls"))]
            TransportKind::Tls => Err(OutputError::Tls(
                "this pipit was built without the \"tls\" feature".to_owned(),
            )),
        }
    }
}

impl OutputSpec for RiemannSpec {
    fn targets(&self) -> Vec<String> {
        self.targets.iter().map(Destination::name).collect()
    }

    fn build_target(&self, index: usize, _: &str) -> Result<Box<dyn Output>, OutputError> {
        let target = Destination::nth(&self.targets, index)?;
        // Certificates are read now, so a reload picks up renewed ones; the server is connected to
        // at the first batch, so the agent starts while Riemann is down.
        let transport = self.transport(&target.node.host)?;
        Ok(Box::new(RiemannOutput {
            addr: target.addr(),
            transport,
            timeouts: self.timeouts,
            liveness: self.liveness,
            client: None,
        }))
    }

    fn describe(&self) -> String {
        let transport = match self.transport {
            TransportKind::Tcp => "TCP",
            TransportKind::Udp => "UDP",
            TransportKind::Tls => "TLS",
        };
        format!(
            "riemann protobuf over {transport} to {}",
            self.targets().join(", ")
        )
    }
}

struct RiemannOutput {
    addr: String,
    transport: Transport,
    timeouts: Timeouts,
    liveness: Liveness,
    client: Option<RiemannClient>,
}

impl Output for RiemannOutput {
    fn write(&mut self, batch: &[Event]) -> Result<(), OutputError> {
        let client = match &mut self.client {
            Some(client) => client,
            None => self.client.insert(
                RiemannClient::connect_with(
                    &self.addr,
                    self.transport.clone(),
                    self.timeouts,
                    self.liveness,
                )
                .map_err(|e| error(&self.addr, e))?,
            ),
        };
        client.send_many(batch).map_err(|e| error(&self.addr, e))
    }
}

/// The delivery error for a client error.
fn error(addr: &str, source: RiemannError) -> OutputError {
    OutputError::Riemann {
        addr: addr.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outputs::read_spec;

    fn spec(text: &str) -> Result<RiemannSpec, Vec<String>> {
        read_spec(text)
    }

    #[test]
    fn defaults_and_ports() {
        let s = spec(r#"{"host": "r.example"}"#).unwrap();
        assert_eq!(
            (s.addr().as_str(), s.transport, s.timeouts),
            ("r.example:5555", TransportKind::Tcp, Timeouts::default())
        );
        let s =
            spec(r#"{"host": "::1", "transport": "udp", "port": 7000, "ack_timeout": "250ms"}"#)
                .unwrap();
        assert_eq!(
            (s.addr().as_str(), s.transport, s.timeouts.ack),
            ("[::1]:7000", TransportKind::Udp, Duration::from_millis(250))
        );
        assert_eq!(s.describe(), "riemann protobuf over UDP to [::1]:7000");
    }

    #[test]
    fn bad_settings_are_refused_with_their_key() {
        let e = spec("{}").unwrap_err();
        assert!(e[0].contains("missing required key \"host\""), "{e:?}");
        let e = spec(r#"{"host": "h", "port": 0, "ack_timeout": "0s", "transport": "sctp"}"#)
            .unwrap_err();
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(
            e.iter()
                .any(|m| m.contains("port: expected a whole number from 1 to 65535")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.contains("ack_timeout: expected a duration of at least 1ms")),
            "{e:?}"
        );
        assert!(
            e.iter().any(|m| m.contains("transport: expected one of")),
            "{e:?}"
        );
        let e = spec(r#"{"host": "h", "tls_ca": "/ca.pem"}"#).unwrap_err();
        assert!(
            e[0].contains("only used with \"transport\": \"tls\""),
            "{e:?}"
        );
        let e = spec(r#"{"host": "h", "colour": 1}"#).unwrap_err();
        assert!(e[0].contains("colour: unknown key"), "{e:?}");
    }

    #[cfg(feature = "tls")]
    #[test]
    fn tls_needs_a_ca_and_both_halves_of_a_client_certificate() {
        let s = spec(r#"{"host": "h", "transport": "tls", "tls_ca": "/ca.pem"}"#).unwrap();
        assert_eq!((s.targets[0].port, s.transport), (5554, TransportKind::Tls));
        let e = spec(r#"{"host": "h", "transport": "tls"}"#).unwrap_err();
        assert!(e[0].contains("missing required key \"tls_ca\""), "{e:?}");
        let e = spec(r#"{"host": "h", "transport": "tls", "tls_ca": "/a", "tls_cert": "/c"}"#)
            .unwrap_err();
        assert!(e[0].contains("tls_cert and tls_key go together"), "{e:?}");
        let missing = spec(r#"{"host": "h", "transport": "tls", "tls_ca": "/nonexistent/ca.pem"}"#)
            .unwrap()
            .build_target(0, "out.riemann");
        assert!(missing.is_err_and(|e| e.to_string().contains("/nonexistent/ca.pem")));
    }
}
