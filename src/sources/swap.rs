//! `swap`: swap space use from `/proc/meminfo`, and paging to and from it from `/proc/vmstat`.

use std::sync::{Arc, Mutex};

use super::{Build, Emitter, MetricInfo, Source, SourceContext, SourceError, SourceType};
use crate::aggregate::Rates;
use crate::cache::lock;
use crate::procfs::{self, KeptFiles};

/// The registry entry.
pub const TYPE: SourceType = SourceType {
    name: "swap",
    description: "swap space: total, used, free, cached, and pages swapped in and out per second",
    needs_two_samples: true,
    metrics: &[
        MetricInfo {
            name: "swap.total",
            unit: "bytes",
            description: "swap space configured (0 without swap)",
        },
        MetricInfo {
            name: "swap.used",
            unit: "bytes",
            description: "swap space in use",
        },
        MetricInfo {
            name: "swap.free",
            unit: "bytes",
            description: "swap space not in use",
        },
        MetricInfo {
            name: "swap.cached",
            unit: "bytes",
            description: "memory that is also in swap",
        },
        MetricInfo {
            name: "swap.percent_used",
            unit: "percent",
            description: "used as a share of total (not sent without swap)",
        },
        MetricInfo {
            name: "swap.in",
            unit: "per_second",
            description: "pages read from swap",
        },
        MetricInfo {
            name: "swap.out",
            unit: "per_second",
            description: "pages written to swap",
        },
    ],
    read: super::read::<Swap>,
};

impl Build for Swap {
    type Settings = ();
    const NEVER_WAITS: bool = true;

    fn build(_: &(), ctx: &SourceContext) -> Swap {
        Swap {
            files: KeptFiles::new(ctx.procfs.clone()),
            rates: ctx.rates(),
            buf: String::new(),
        }
    }
}

struct Swap {
    files: KeptFiles,
    rates: Arc<Mutex<Rates>>,
    buf: String,
}

impl Source for Swap {
    fn collect(&mut self, emit: &mut Emitter<'_>) -> Result<(), SourceError> {
        self.files.read_into("proc/meminfo", &mut self.buf)?;
        let kib = |key| procfs::field_value(&self.buf, key).map(|v| v.saturating_mul(1024));
        let (Some(total), Some(free)) = (kib("SwapTotal"), kib("SwapFree")) else {
            return Err(SourceError::missing(
                "/proc/meminfo",
                "SwapTotal and SwapFree",
            ));
        };
        let free = free.min(total);
        emit.metric("swap.total", total);
        emit.metric("swap.used", total - free);
        emit.metric("swap.free", free);
        emit.metric("swap.cached", kib("SwapCached").unwrap_or(0));
        if total > 0 {
            emit.metric(
                "swap.percent_used",
                (total - free) as f64 * 100.0 / total as f64,
            );
        }
        // Kernels without swap support have no pswpin/pswpout: then there is no paging to report.
        self.files.read_into("proc/vmstat", &mut self.buf)?;
        let mut rates = lock(&self.rates);
        for (key, service) in [("pswpin", "swap.in"), ("pswpout", "swap.out")] {
            if let Some(pages) = vmstat_value(&self.buf, key) {
                emit.rate(&mut rates, service, pages);
            }
        }
        rates.end_round();
        Ok(())
    }
}

/// The value of `key` in the `key value` lines of `/proc/vmstat`.
fn vmstat_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        line.strip_prefix(key)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{collect, collect_at, lines};
    use super::*;
    use crate::cache::Cache;

    #[test]
    fn a_router_without_swap_reports_zeros() {
        assert_eq!(
            collect::<Swap>(&(), "openwrt"),
            lines("swap.total 0\n swap.used 0\n swap.free 0\n swap.cached 0")
        );
    }

    #[test]
    fn a_server_reports_use_and_paging() {
        assert_eq!(
            collect::<Swap>(&(), "debian"),
            lines(
                "swap.total 2048000000
                 swap.used 512000000
                 swap.free 1536000000
                 swap.cached 12288000
                 swap.percent_used 25"
            )
        );
    }

    #[test]
    fn paging_rates_across_two_samples() {
        let cache = Arc::new(Cache::in_memory());
        collect_at::<Swap>(&(), "debian", &cache, 100);
        let out = collect_at::<Swap>(&(), "debian-next", &cache, 110);
        assert!(
            out.ends_with("swap.percent_used 25\nswap.in 10\nswap.out 50\n"),
            "{out}"
        );
    }

    #[test]
    fn reads_vmstat_keys_exactly() {
        assert_eq!(vmstat_value("pswpin 4\npswpout 7\n", "pswpout"), Some(7));
        assert_eq!(vmstat_value("pswpinx 4\n", "pswpin"), None);
    }
}
