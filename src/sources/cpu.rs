//! `cpu`: CPU time by state as a percentage, from the deltas of `/proc/stat` between two ticks.

use std::sync::{Arc, Mutex};

use super::naming::ServiceName;
use super::{Build, Emitter, MetricInfo, Settings, Source, SourceContext, SourceError, SourceType};
use crate::aggregate::Rates;
use crate::cache::lock;
use crate::config::reader::{Problems, Table};
use crate::procfs::KeptFiles;

/// The CPU states of `/proc/stat`, in the kernel's order. Guest time is already counted in user
/// and nice, so it is left out of the total.
const STATES: [&str; 8] = [
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
];

/// The registry entry.
pub const TYPE: SourceType = SourceType {
    name: "cpu",
    description: "CPU time by state, in percent, for all CPUs and optionally per core",
    needs_two_samples: true,
    metrics: &[
        MetricInfo {
            name: "cpu.total.user",
            unit: "percent",
            description: "time in user space (including guests)",
        },
        MetricInfo {
            name: "cpu.total.nice",
            unit: "percent",
            description: "time in user space at low priority",
        },
        MetricInfo {
            name: "cpu.total.system",
            unit: "percent",
            description: "time in the kernel",
        },
        MetricInfo {
            name: "cpu.total.idle",
            unit: "percent",
            description: "time idle",
        },
        MetricInfo {
            name: "cpu.total.iowait",
            unit: "percent",
            description: "time idle with I/O outstanding",
        },
        MetricInfo {
            name: "cpu.total.irq",
            unit: "percent",
            description: "time serving hardware interrupts",
        },
        MetricInfo {
            name: "cpu.total.softirq",
            unit: "percent",
            description: "time serving software interrupts",
        },
        MetricInfo {
            name: "cpu.total.steal",
            unit: "percent",
            description: "time taken by the hypervisor",
        },
        MetricInfo {
            name: "cpu.total.busy",
            unit: "percent",
            description: "time neither idle nor waiting for I/O",
        },
        MetricInfo {
            name: "cpu.<core>.<state>",
            unit: "percent",
            description: "the same per core, with per_core",
        },
    ],
    read: super::read::<Cpu>,
};

/// Settings of the `cpu` source.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuSpec {
    /// Also report each core as `cpu.<n>.<state>`; default false.
    pub per_core: bool,
}

impl Settings for CpuSpec {
    fn read(t: &mut Table<'_>, problems: &mut Problems) -> Option<CpuSpec> {
        Some(CpuSpec {
            per_core: t.get_or("per_core", false, problems),
        })
    }
}

impl Build for Cpu {
    type Settings = CpuSpec;
    const NEVER_WAITS: bool = true;

    fn build(spec: &CpuSpec, ctx: &SourceContext) -> Cpu {
        Cpu {
            files: KeptFiles::new(ctx.procfs.clone()),
            per_core: spec.per_core,
            rates: ctx.rates(),
            buf: String::new(),
            now: Vec::new(),
            name: ServiceName::default(),
        }
    }
}

/// One line of `/proc/stat`: `None` for the total, `Some(n)` for core n.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Times {
    core: Option<u32>,
    ticks: [u64; 8],
}

struct Cpu {
    files: KeptFiles,
    per_core: bool,
    /// The tick counters of the last sample, kept in the cache so a restart loses no interval.
    rates: Arc<Mutex<Rates>>,
    buf: String,
    now: Vec<Times>,
    name: ServiceName,
}

impl Source for Cpu {
    fn collect(&mut self, emit: &mut Emitter<'_>) -> Result<(), SourceError> {
        self.files.read_into("proc/stat", &mut self.buf)?;
        parse(&self.buf, self.per_core, &mut self.now);
        if self.now.is_empty() {
            return Err(SourceError::missing("/proc/stat", "a cpu line"));
        }
        let mut rates = lock(&self.rates);
        for now in &self.now {
            match now.core {
                None => self.name.start("cpu", "total"),
                Some(n) => self.name.start("cpu", &n.to_string()),
            }
            // Ticks per second of each state; a state without a rate (the first sample, a core
            // that went offline and back) leaves the whole core out of this round.
            let mut per_second = [0.0; 8];
            let mut complete = true;
            for ((state, ticks), slot) in STATES.iter().zip(now.ticks).zip(&mut per_second) {
                match rates.rate(self.name.with(state), ticks, emit.time()) {
                    Some(rate) => *slot = rate,
                    None => complete = false,
                }
            }
            let total: f64 = per_second.iter().sum();
            if !complete || total <= 0.0 {
                continue;
            }
            for (state, rate) in STATES.iter().zip(per_second) {
                emit.metric(self.name.with(state), rate * 100.0 / total);
            }
            emit.metric(
                self.name.with("busy"),
                100.0 - (per_second[3] + per_second[4]) * 100.0 / total,
            );
        }
        rates.end_round();
        Ok(())
    }
}

/// Reads the `cpu` lines of `/proc/stat` into `out` (the total first, then cores when asked).
fn parse(text: &str, per_core: bool, out: &mut Vec<Times>) {
    out.clear();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("cpu") else {
            // The cpu lines come first; stop at the first other line.
            if !out.is_empty() {
                break;
            }
            continue;
        };
        let mut fields = rest.split_ascii_whitespace();
        let core = match fields.next() {
            Some(first) if rest.starts_with(' ') => {
                // The total line: `first` is already the user time.
                let mut ticks = [0u64; 8];
                ticks[0] = first.parse().unwrap_or(0);
                fill(&mut ticks[1..], &mut fields);
                out.push(Times { core: None, ticks });
                continue;
            }
            Some(n) => n.parse::<u32>().ok(),
            None => None,
        };
        if !per_core {
            continue;
        }
        if let Some(core) = core {
            let mut ticks = [0u64; 8];
            fill(&mut ticks, &mut fields);
            out.push(Times {
                core: Some(core),
                ticks,
            });
        }
    }
}

fn fill<'a>(ticks: &mut [u64], fields: &mut impl Iterator<Item = &'a str>) {
    for (slot, field) in ticks.iter_mut().zip(fields) {
        *slot = field.parse().unwrap_or(0);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{collect_at, lines};
    use super::*;
    use crate::cache::Cache;

    const STAT: &str = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 60 0 30 400 10 0 0 0 0 0\ncpu1 40 0 20 400 40 0 0 0 0 0\nintr 1 2 3\n";

    #[test]
    fn parses_total_and_cores() {
        let mut out = Vec::new();
        parse(STAT, true, &mut out);
        assert_eq!(out.len(), 3);
        assert_eq!(
            out[0],
            Times {
                core: None,
                ticks: [100, 0, 50, 800, 50, 0, 0, 0]
            }
        );
        assert_eq!(out[2].core, Some(1));
        parse(STAT, false, &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn per_core_shares_across_two_samples() {
        let cache = Arc::new(Cache::in_memory());
        let spec = CpuSpec { per_core: true };
        assert_eq!(
            collect_at::<Cpu>(&spec, "debian", &cache, 100),
            "",
            "the first sample gives no share"
        );
        let out = collect_at::<Cpu>(&spec, "debian-next", &cache, 110);
        assert_eq!(
            out,
            lines(
                "cpu.total.user 50
                 cpu.total.nice 0
                 cpu.total.system 20
                 cpu.total.idle 25
                 cpu.total.iowait 5
                 cpu.total.irq 0
                 cpu.total.softirq 0
                 cpu.total.steal 0
                 cpu.total.busy 70
                 cpu.0.user 60
                 cpu.0.nice 0
                 cpu.0.system 20
                 cpu.0.idle 20
                 cpu.0.iowait 0
                 cpu.0.irq 0
                 cpu.0.softirq 0
                 cpu.0.steal 0
                 cpu.0.busy 80"
            ),
            "core 1's counters went backwards (it went offline and back): it is left out"
        );
    }
}
