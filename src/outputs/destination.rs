//! Where an output sends: a target address `host:port[:instance]` (an IPv6 host in brackets), as
//! every output with a `host` or a `targets` list reads it. The delivery layer's strategies
//! (failover, round robin, consistent hashing) spread batches over these.

use super::OutputError;
use crate::config::reader::{Problems, Table};

/// The ring node of a destination: host and instance (the port is not hashed).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Node {
    /// The host, as written in the destination.
    pub host: String,
    /// The instance name, if the destination has one.
    pub instance: Option<String>,
}

/// An output's target, `host:port[:instance]` (an IPv6 host in brackets: `[::1]:2004:a`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// The ring node: host and instance.
    pub node: Node,
    /// The port to connect to; not part of the hash.
    pub port: u16,
}

impl Destination {
    /// A destination without an instance.
    pub fn new(host: &str, port: u16) -> Destination {
        Destination {
            node: Node {
                host: host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned(),
                instance: None,
            },
            port,
        }
    }

    /// `host:port` to connect to, with brackets around an IPv6 address.
    pub fn addr(&self) -> String {
        if self.node.host.contains(':') {
            format!("[{}]:{}", self.node.host, self.port)
        } else {
            format!("{}:{}", self.node.host, self.port)
        }
    }

    /// The destination as written in a config: `host:port[:instance]`.
    pub fn name(&self) -> String {
        match &self.node.instance {
            Some(instance) => format!("{}:{instance}", self.addr()),
            None => self.addr(),
        }
    }

    /// Target number `index` of an output's list, for `OutputSpec::build_target`.
    pub fn nth(targets: &[Destination], index: usize) -> Result<&Destination, OutputError> {
        targets
            .get(index)
            .ok_or_else(|| OutputError::BadTarget(format!("no target number {index}")))
    }

    /// Parses a destination as carbon does; `None` when the port is missing or not a number.
    pub fn parse(text: &str) -> Option<Destination> {
        let s = text.trim();
        let (host, rest) = match s.strip_prefix('[') {
            Some(inner) => {
                let close = inner.rfind("]:")?;
                (&inner[..close], &inner[close + 2..])
            }
            None => s.split_once(':')?,
        };
        let (port, instance) = match rest.split_once(':') {
            Some((port, instance)) => (port, Some(instance.to_owned())),
            None => (rest, None),
        };
        if host.is_empty() {
            return None;
        }
        Some(Destination {
            node: Node {
                host: host.to_owned(),
                instance,
            },
            port: port.parse().ok()?,
        })
    }
}

/// Reads an output's destinations: `host` (with `port`, default `default_port`) for one, or
/// `targets`, a list of `"host:port"` (Graphite: `"host:port:instance"` too) for several.
pub fn read_targets(
    t: &mut Table<'_>,
    default_port: u16,
    problems: &mut Problems,
) -> Option<Vec<Destination>> {
    let host = t.field("host");
    let port = t.number_in("port", u64::from(default_port), 1, 65_535, problems) as u16;
    let targets = t.field("targets");
    match (host, targets) {
        (Some(_), Some(field)) => {
            problems.at(
                &field,
                "set either \"host\" (and \"port\") for one target or \"targets\" for several, not both",
            );
            None
        }
        (Some(field), None) => match field.as_str().map(str::trim) {
            Some(h) if !h.is_empty() => Some(vec![Destination::new(h, port)]),
            _ => {
                problems.expected(&field, "a host name or address");
                None
            }
        },
        (None, Some(field)) => field.non_empty_list("\"host:port\"", problems, |item, problems| {
            match item.as_str().and_then(Destination::parse) {
                Some(d) if d.port != 0 => Some(d),
                _ => {
                    problems.expected(item, "\"host:port\" or \"host:port:instance\"");
                    None
                }
            }
        }),
        (None, None) => {
            problems.at(
                t.as_field(),
                "missing required key \"host\" (or \"targets\", a list of \"host:port\")",
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::reader::read_section;

    fn targets(text: &str) -> Result<Vec<Destination>, Vec<String>> {
        read_section(text, |t, p| read_targets(t, 2003, p))
    }

    #[test]
    fn one_host_or_a_list_of_targets() {
        let t = targets(r#"{"host": "c1", "port": 2013}"#).unwrap();
        assert_eq!(t, vec![Destination::new("c1", 2013)]);
        let t = targets(r#"{"targets": ["c1:2004:a", "[::1]:2004"]}"#).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].name(), "c1:2004:a");
        assert_eq!(t[1].addr(), "[::1]:2004");
        let e = targets(r#"{"host": "c1", "targets": ["c2:1"]}"#).unwrap_err();
        assert!(e[0].contains("not both"), "{e:?}");
        let e = targets(r#"{"targets": ["c2"]}"#).unwrap_err();
        assert!(e[0].contains("\"host:port\""), "{e:?}");
        let e = targets("{}").unwrap_err();
        assert!(e[0].contains("missing required key \"host\""), "{e:?}");
    }
}
