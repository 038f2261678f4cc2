//! `cpu`: CPU time by state as a percentage, from the deltas of `/proc/stat` between two ticks.

use std::sync::Arc;

use super::{Emitter, MetricInfo, Source, SourceContext, SourceError, SourceSpec, SourceType};
use crate::config::reader::{Problems, Table};
use crate::procfs::Procfs;

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
    read,
};

/// Settings of the `cpu` source.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuSpec {
    /// Also report each core as `cpu.<n>.<state>`; default false.
    pub per_core: bool,
}

fn read(t: &mut Table<'_>, problems: &mut Problems) -> Option<Arc<dyn SourceSpec>> {
    Some(Arc::new(CpuSpec {
        per_core: t.get_or("per_core", false, problems),
    }))
}

impl SourceSpec for CpuSpec {
    fn build(&self, ctx: &SourceContext) -> Box<dyn Source> {
        Box::new(Cpu {
            procfs: ctx.procfs.clone(),
            per_core: self.per_core,
            buf: String::new(),
            last: Vec::new(),
            now: Vec::new(),
            name: String::new(),
        })
    }
}

/// One line of `/proc/stat`: `None` for the total, `Some(n)` for core n.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Times {
    core: Option<u32>,
    ticks: [u64; 8],
}

struct Cpu {
    procfs: Procfs,
    per_core: bool,
    buf: String,
    last: Vec<Times>,
    now: Vec<Times>,
    name: String,
}

impl Source for Cpu {
    fn collect(&mut self, emit: &mut Emitter<'_>) -> Result<(), SourceError> {
        self.procfs.read_into("proc/stat", &mut self.buf)?;
        parse(&self.buf, self.per_core, &mut self.now);
        if self.now.is_empty() {
            return Err(SourceError("/proc/stat has no cpu line".into()));
        }
        for now in &self.now {
            let Some(last) = self.last.iter().find(|l| l.core == now.core) else {
                continue;
            };
            let Some(shares) = percentages(&last.ticks, &now.ticks) else {
                continue;
            };
            self.name.clear();
            match now.core {
                None => self.name.push_str("cpu.total."),
                Some(n) => {
                    use std::fmt::Write;
                    let _ = write!(self.name, "cpu.{n}.");
                }
            }
            let base = self.name.len();
            for (state, share) in STATES.iter().zip(shares) {
                self.name.truncate(base);
                self.name.push_str(state);
                emit.metric(&self.name, share);
            }
            self.name.truncate(base);
            self.name.push_str("busy");
            emit.metric(&self.name, 100.0 - shares[3] - shares[4]);
        }
        std::mem::swap(&mut self.last, &mut self.now);
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

/// The share of each state between two samples, or `None` when no time passed or a counter went
/// backwards (a core went offline and back, or the counters were reset).
fn percentages(last: &[u64; 8], now: &[u64; 8]) -> Option<[f64; 8]> {
    if now.iter().zip(last).any(|(n, l)| n < l) {
        return None;
    }
    let total: u64 = now.iter().zip(last).map(|(n, l)| n - l).sum();
    if total == 0 {
        return None;
    }
    let mut out = [0.0; 8];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = (now[i] - last[i]) as f64 * 100.0 / total as f64;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn shares_sum_to_one_hundred() {
        let shares = percentages(
            &[100, 0, 50, 800, 50, 0, 0, 0],
            &[150, 0, 75, 900, 50, 0, 0, 0],
        )
        .unwrap();
        assert_eq!(shares[0], 100.0 * 50.0 / 175.0);
        assert!((shares.iter().sum::<f64>() - 100.0).abs() < 1e-9);
    }

    #[test]
    fn a_counter_going_backwards_gives_no_sample() {
        assert_eq!(
            percentages(
                &[100, 0, 50, 800, 0, 0, 0, 0],
                &[90, 0, 60, 900, 0, 0, 0, 0]
            ),
            None
        );
        assert_eq!(percentages(&[1; 8], &[1; 8]), None);
    }
}
