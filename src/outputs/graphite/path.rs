//! From an event to a Graphite metric path: `[prefix.]host.service`.
//!
//! Dots in the host name would split it into several path nodes, so they are replaced (with `_`
//! by default). Characters carbon cannot take in a path (white space, control characters) are
//! replaced with `_` in every part.

use crate::event::Event;

/// How paths are built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naming {
    /// Put before every path, without a trailing dot; empty for none.
    pub prefix: String,
    /// Replaces each dot of the host name; default `_`.
    pub host_dot: String,
}

impl Default for Naming {
    fn default() -> Naming {
        Naming {
            prefix: String::new(),
            host_dot: "_".to_owned(),
        }
    }
}

impl Naming {
    /// Writes the path of `event` into `out` (which is cleared first).
    pub fn path_into(&self, event: &Event, out: &mut String) {
        out.clear();
        if !self.prefix.is_empty() {
            push_safe(out, &self.prefix);
            out.push('.');
        }
        for (i, part) in event.host.split('.').enumerate() {
            if i > 0 {
                out.push_str(&self.host_dot);
            }
            push_safe(out, part);
        }
        out.push('.');
        push_safe(out, &event.service);
    }

    /// The path of `event`.
    pub fn path(&self, event: &Event) -> String {
        let mut out = String::new();
        self.path_into(event, &mut out);
        out
    }
}

fn push_safe(out: &mut String, text: &str) {
    out.extend(text.chars().map(|c| {
        if c.is_whitespace() || c.is_control() {
            '_'
        } else {
            c
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_prefix_host_service() {
        let e = Event::new("interface.eth0.rx_bytes", "gw.example.net");
        assert_eq!(
            Naming::default().path(&e),
            "gw_example_net.interface.eth0.rx_bytes"
        );
        let n = Naming {
            prefix: "routers".into(),
            host_dot: "-".into(),
        };
        assert_eq!(n.path(&e), "routers.gw-example-net.interface.eth0.rx_bytes");
    }

    #[test]
    fn never_emits_white_space() {
        let e = Event::new("disk.My Disk\t1", "h\nost");
        assert_eq!(Naming::default().path(&e), "h_ost.disk.My_Disk_1");
    }
}
