//! The `graphite` output: events with a metric become datapoints sent to carbon.

use std::time::Duration;

use super::batch::Batch;
use super::client::{DEFAULT_MAX_HELD, DEFAULT_RESEND_WINDOW, GraphiteClient, Protocol, Timeouts};
use super::path::{Naming, Unencodable};
use crate::complain::Complaint;
use crate::config::AgentConfig;
use crate::config::reader::{Problems, Table};
use crate::event::Event;
use crate::liveness::Liveness;
use crate::outputs::destination::{Destination, read_targets};
use crate::outputs::{Output, OutputError, OutputSpec, OutputType, Settings};
use crate::quote::quote;

/// The registry entry.
pub const TYPE: OutputType = OutputType {
    name: "graphite",
    description: "datapoints to carbon: plaintext over TCP or UDP, or pickle over TCP",
    read: crate::outputs::read::<GraphiteSpec>,
};

/// Settings of the `graphite` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphiteSpec {
    /// Carbon's addresses: `host` and `port` (default 2003 for `tcp` and `udp`, 2004 for
    /// `pickle`), or the `targets` list.
    pub targets: Vec<Destination>,
    /// The protocol; default `tcp` (plaintext).
    pub protocol: Protocol,
    /// How paths are built.
    pub naming: Naming,
    /// Connect and write timeouts.
    pub timeouts: Timeouts,
    /// How long a batch is still held for a resend after carbon's TCP acknowledged it (TCP);
    /// default [`DEFAULT_RESEND_WINDOW`].
    pub resend_window: Duration,
    /// The most bytes held unconfirmed per target (`max_unconfirmed_bytes`); default
    /// [`DEFAULT_MAX_HELD`].
    pub max_unconfirmed: usize,
    /// How a dead path is noticed (TCP).
    pub liveness: Liveness,
}

impl GraphiteSpec {
    /// The first target's `host:port`, with brackets around an IPv6 address.
    pub fn addr(&self) -> String {
        self.targets
            .first()
            .map(Destination::addr)
            .unwrap_or_default()
    }
}

impl Settings for GraphiteSpec {
    fn read(
        t: &mut Table<'_>,
        _agent: &AgentConfig,
        problems: &mut Problems,
    ) -> Option<GraphiteSpec> {
        let protocol = match t.choice("protocol", &["tcp", "udp", "pickle"], "tcp", problems) {
            "udp" => Protocol::Udp,
            "pickle" => Protocol::Pickle,
            _ => Protocol::Plaintext,
        };
        let targets = read_targets(t, protocol.default_port(), problems);
        let naming = Naming::read(t, problems);
        let d = Timeouts::default();
        let min = Duration::from_millis(1);
        let timeouts = Timeouts {
            connect: t.duration_at_least("connect_timeout", d.connect, min, problems),
            write: t.duration_at_least("write_timeout", d.write, min, problems),
        };
        let resend_window = t.duration_at_least(
            "resend_window",
            DEFAULT_RESEND_WINDOW,
            Duration::ZERO,
            problems,
        );
        let max_unconfirmed = t.number_in(
            "max_unconfirmed_bytes",
            DEFAULT_MAX_HELD as u64,
            64 << 10,
            1 << 30,
            problems,
        ) as usize;
        let liveness = Liveness::read(t, problems);
        Some(GraphiteSpec {
            targets: targets?,
            protocol,
            naming,
            timeouts,
            resend_window,
            max_unconfirmed,
            liveness,
        })
    }
}

impl OutputSpec for GraphiteSpec {
    fn targets(&self) -> Vec<String> {
        self.targets.iter().map(Destination::name).collect()
    }

    fn build_target(&self, index: usize, log_target: &str) -> Result<Box<dyn Output>, OutputError> {
        let target = Destination::nth(&self.targets, index)?;
        let mut client = GraphiteClient::new(target.addr(), self.protocol, self.timeouts);
        client.set_resend_window(self.resend_window);
        client.set_max_held(self.max_unconfirmed);
        client.set_liveness(self.liveness);
        client.set_log_target(log_target);
        Ok(Box::new(GraphiteOutput {
            client,
            naming: self.naming.clone(),
            batch: Batch::new(self.protocol),
            path: String::new(),
            unencodable: 0,
            bad_paths: Complaint::new(log_target),
        }))
    }

    fn placement_key(&self, event: &Event, key: &mut String) -> bool {
        self.naming.prepare(event, key).is_ok()
    }

    fn describe(&self) -> String {
        format!(
            "{} to {}",
            self.protocol.as_str(),
            self.targets().join(", ")
        )
    }
}

/// The running output: a client, its naming and a reused batch.
struct GraphiteOutput {
    client: GraphiteClient,
    naming: Naming,
    batch: Batch,
    path: String,
    unencodable: u64,
    bad_paths: Complaint,
}

impl Output for GraphiteOutput {
    fn write(&mut self, events: &[Event]) -> Result<(), OutputError> {
        self.batch.clear();
        self.unencodable = 0;
        for event in events {
            match self.naming.prepare(event, &mut self.path) {
                Ok(metric) => self.batch.push(&self.path, metric, event.unix_seconds()),
                Err(reason) => {
                    self.unencodable += 1;
                    if let Unencodable::Path(e) = reason {
                        self.bad_paths.fail(&format!(
                            "leaving out {} on {}: {e}",
                            quote(&event.service),
                            quote(&event.host)
                        ));
                    }
                }
            }
        }
        self.batch.finish();
        self.client
            .send_batch(&self.batch)
            .map_err(OutputError::Graphite)
    }

    fn take_unencodable(&mut self) -> u64 {
        std::mem::take(&mut self.unencodable)
    }

    fn confirms_later(&self) -> bool {
        true
    }

    fn take_confirmed(&mut self) -> u64 {
        self.client.take_confirmed()
    }

    fn unconfirmed(&self) -> (u64, u64) {
        self.client.unconfirmed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outputs::graphite::path::NameMode;
    use crate::outputs::read_spec;

    fn spec(text: &str) -> Result<GraphiteSpec, Vec<String>> {
        read_spec(text)
    }

    #[test]
    fn defaults_follow_the_protocol() {
        let s = spec(r#"{"host": "carbon.lan"}"#).unwrap();
        assert_eq!(
            (s.addr(), s.protocol, s.naming.mode),
            (
                "carbon.lan:2003".to_owned(),
                Protocol::Plaintext,
                NameMode::Underscore
            )
        );
        assert_eq!(s.timeouts, Timeouts::default());
        assert_eq!(s.resend_window, Duration::from_secs(2));
        let s = spec(
            r#"{"host": "::1", "protocol": "pickle", "naming": "tags", "connect_timeout": "2s", "resend_window": "0s"}"#,
        )
        .unwrap();
        assert_eq!(
            (s.addr(), s.naming.mode, s.timeouts.connect, s.resend_window),
            (
                "[::1]:2004".to_owned(),
                NameMode::Tags,
                Duration::from_secs(2),
                Duration::ZERO
            )
        );
        assert_eq!(
            spec(r#"{"host": "h", "protocol": "udp", "port": 2013}"#)
                .unwrap()
                .addr(),
            "h:2013"
        );
    }

    #[test]
    fn bad_settings_are_refused_with_their_place() {
        let e = spec(r#"{"protocol": "http", "port": 0, "host_dot": " ", "naming": "x", "write_timeout": "0s", "resend_window": "-1s", "hots": 1}"#).unwrap_err();
        assert_eq!(e.len(), 8, "{e:#?}");
        let expected = [
            "protocol: expected one of \"tcp\", \"udp\", \"pickle\"",
            "port: expected a whole number from 1 to 65535",
            "missing required key \"host\"",
            "host_dot: expected letters, digits",
            "naming: expected one of",
            "write_timeout: expected a duration of at least 1ms",
            "resend_window: expected a duration such as",
            "hots: unknown key",
        ];
        for (e, expected) in e.iter().zip(expected) {
            assert!(e.contains(expected), "{e} lacks {expected}");
        }
    }

    #[test]
    fn events_it_cannot_send_are_counted_not_delivered() {
        use std::io::{BufRead, BufReader};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let spec = spec(&format!(r#"{{"host": "127.0.0.1", "port": {port}}}"#)).unwrap();
        let mut output = spec.build_target(0, "out.graphite").unwrap();
        let t = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let events = [
            Event::new("load.1", "r1").with_metric(0.5).with_time(t),
            Event::new("check.state", "r1").with_state("ok"),
            Event::new("x".repeat(20_000), "r1").with_metric(1i64),
        ];
        output.write(&events).unwrap();
        assert_eq!(output.take_unencodable(), 2);
        assert_eq!(output.take_unencodable(), 0, "reading resets it");
        let (conn, _) = listener.accept().unwrap();
        let mut line = String::new();
        BufReader::new(conn).read_line(&mut line).unwrap();
        assert_eq!(line, "r1.load.1 0.5 1700000000\n");
    }
}
