//! `memory`: physical memory use from `/proc/meminfo`.

use super::{Build, Emitter, MetricInfo, Source, SourceContext, SourceError, SourceType};
use crate::procfs::{self, KeptFiles};

/// The registry entry.
pub const TYPE: SourceType = SourceType {
    name: "memory",
    description: "physical memory: total, used, free, buffers, cached, available",
    needs_two_samples: false,
    metrics: &[
        MetricInfo {
            name: "memory.total",
            unit: "bytes",
            description: "usable physical memory",
        },
        MetricInfo {
            name: "memory.used",
            unit: "bytes",
            description: "memory in use: total minus available",
        },
        MetricInfo {
            name: "memory.free",
            unit: "bytes",
            description: "memory not used for anything",
        },
        MetricInfo {
            name: "memory.buffers",
            unit: "bytes",
            description: "block device buffers",
        },
        MetricInfo {
            name: "memory.cached",
            unit: "bytes",
            description: "page cache, without swap cache",
        },
        MetricInfo {
            name: "memory.available",
            unit: "bytes",
            description: "memory available to new programs without swapping",
        },
        MetricInfo {
            name: "memory.percent_used",
            unit: "percent",
            description: "used as a share of total",
        },
    ],
    read: super::read::<Memory>,
};

impl Build for Memory {
    type Settings = ();
    const NEVER_WAITS: bool = true;

    fn build(_: &(), ctx: &SourceContext) -> Memory {
        Memory {
            files: KeptFiles::new(ctx.procfs.clone()),
            buf: String::new(),
        }
    }
}

struct Memory {
    files: KeptFiles,
    buf: String,
}

impl Source for Memory {
    fn collect(&mut self, emit: &mut Emitter<'_>) -> Result<(), SourceError> {
        self.files.read_into("proc/meminfo", &mut self.buf)?;
        let kib = |key| procfs::field_value(&self.buf, key).map(|v| v.saturating_mul(1024));
        let (Some(total), Some(free)) = (kib("MemTotal"), kib("MemFree")) else {
            return Err(SourceError::missing(
                "/proc/meminfo",
                "MemTotal and MemFree",
            ));
        };
        let buffers = kib("Buffers").unwrap_or(0);
        let cached = kib("Cached").unwrap_or(0);
        // Kernels before 3.14 have no MemAvailable: estimate it the way `free` did then.
        let available = kib("MemAvailable")
            .unwrap_or_else(|| free.saturating_add(buffers).saturating_add(cached))
            .min(total);
        let used = total - available;
        emit.metric("memory.total", total);
        emit.metric("memory.used", used);
        emit.metric("memory.free", free);
        emit.metric("memory.buffers", buffers);
        emit.metric("memory.cached", cached);
        emit.metric("memory.available", available);
        if total > 0 {
            emit.metric("memory.percent_used", used as f64 * 100.0 / total as f64);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{collect, lines};
    use super::*;

    #[test]
    fn a_router_s_memory() {
        assert_eq!(
            collect::<Memory>(&(), "openwrt"),
            lines(
                "memory.total 251228160
                 memory.used 97320960
                 memory.free 144588800
                 memory.buffers 4198400
                 memory.cached 23142400
                 memory.available 153907200
                 memory.percent_used 38.738078"
            )
        );
    }

    /// Found by fuzzing (`fuzz/run.sh proc_memory`): sizes near 2^64 bytes, without
    /// `MemAvailable`, overflowed the estimate of what is available.
    #[test]
    fn absurd_sizes_saturate_instead_of_overflowing() {
        let out = collect::<Memory>(&(), "fuzzed");
        assert!(
            out.contains("memory.used 0\n") && out.contains("memory.percent_used 0\n"),
            "{out}"
        );
    }
}
