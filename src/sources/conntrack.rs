//! `conntrack`: how full the connection tracking table is: on a busy router it is the first
//! thing to fill up, and then new connections fail.
//!
//! A box without connection tracking (the `nf_conntrack` module not loaded) reports nothing; that
//! is said once, at the first collection.

use super::{Build, Emitter, MetricInfo, Source, SourceContext, SourceError, SourceType};
use crate::procfs::KeptFiles;

/// Where the count and the limit are, newest kernels first.
const PLACES: [(&str, &str); 2] = [
    (
        "proc/sys/net/netfilter/nf_conntrack_count",
        "proc/sys/net/netfilter/nf_conntrack_max",
    ),
    (
        "proc/sys/net/ipv4/netfilter/ip_conntrack_count",
        "proc/sys/net/ipv4/netfilter/ip_conntrack_max",
    ),
];

/// The registry entry.
pub const TYPE: SourceType = SourceType {
    name: "conntrack",
    description: "entries in the connection tracking table, its size, and how full it is",
    needs_two_samples: false,
    metrics: &[
        MetricInfo {
            name: "conntrack.entries",
            unit: "count",
            description: "connections tracked now",
        },
        MetricInfo {
            name: "conntrack.max",
            unit: "count",
            description: "the most the table holds",
        },
        MetricInfo {
            name: "conntrack.percent_used",
            unit: "percent",
            description: "entries as a share of max",
        },
    ],
    read: super::read::<Conntrack>,
};

impl Build for Conntrack {
    type Settings = ();
    const NEVER_WAITS: bool = true;

    fn build(_: &(), ctx: &SourceContext) -> Conntrack {
        Conntrack {
            files: KeptFiles::new(ctx.procfs.clone()),
            target: super::log_target(&ctx.instance),
            told: false,
            buf: String::new(),
        }
    }
}

struct Conntrack {
    files: KeptFiles,
    target: String,
    /// Whether the absence of connection tracking was logged.
    told: bool,
    buf: String,
}

impl Source for Conntrack {
    fn collect(&mut self, emit: &mut Emitter<'_>) -> Result<(), SourceError> {
        let found = PLACES
            .iter()
            .find_map(|(count, max)| Some((self.number(count)?, self.number(max)?)));
        let Some((entries, max)) = found else {
            if !self.told {
                log::info!(target: &self.target, "no connection tracking here (nf_conntrack is not loaded): nothing to report");
                self.told = true;
            }
            return Ok(());
        };
        emit.metric("conntrack.entries", entries);
        emit.metric("conntrack.max", max);
        if max > 0 {
            emit.metric(
                "conntrack.percent_used",
                entries as f64 * 100.0 / max as f64,
            );
        }
        Ok(())
    }
}

impl Conntrack {
    fn number(&mut self, rel: &str) -> Option<u64> {
        self.files.read_into(rel, &mut self.buf).ok()?;
        self.buf.trim().parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{collect, lines};
    use super::*;

    #[test]
    fn a_router_s_table() {
        assert_eq!(
            collect::<Conntrack>(&(), "openwrt"),
            lines("conntrack.entries 1234\n conntrack.max 16384\n conntrack.percent_used 7.531738")
        );
    }

    #[test]
    fn a_box_without_conntrack_reports_nothing() {
        assert_eq!(collect::<Conntrack>(&(), "debian"), "");
    }
}
