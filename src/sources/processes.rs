//! `processes`: processes by state, threads, and processes started per second.
//!
//! This is the costliest collection on a small box: it reads one file per process. It reads only
//! `/proc/<pid>/stat`, into one fixed buffer, and keeps each process's file open between
//! collections ([`PidFiles`]), so a process costs one `pread` and a collection does no allocation
//! per process beyond what listing the directory takes.

use std::fs;
use std::io::ErrorKind;
use std::sync::{Arc, Mutex};

use super::{Build, Emitter, MetricInfo, Source, SourceContext, SourceError, SourceType};
use crate::aggregate::Rates;
use crate::cache::lock;
use crate::procfs::{KeptFiles, PidFiles};

/// The registry entry.
pub const TYPE: SourceType = SourceType {
    name: "processes",
    description: "processes by state, total threads, and processes started per second",
    needs_two_samples: true,
    metrics: &[
        MetricInfo {
            name: "processes.running",
            unit: "count",
            description: "processes running or ready to run (R)",
        },
        MetricInfo {
            name: "processes.sleeping",
            unit: "count",
            description: "processes waiting for an event (S)",
        },
        MetricInfo {
            name: "processes.blocked",
            unit: "count",
            description: "processes in uninterruptible sleep, usually I/O (D)",
        },
        MetricInfo {
            name: "processes.zombie",
            unit: "count",
            description: "processes exited but not reaped by their parent (Z)",
        },
        MetricInfo {
            name: "processes.stopped",
            unit: "count",
            description: "processes stopped by a signal or a debugger (T, t)",
        },
        MetricInfo {
            name: "processes.idle",
            unit: "count",
            description: "idle kernel threads (I)",
        },
        MetricInfo {
            name: "processes.total",
            unit: "count",
            description: "all processes",
        },
        MetricInfo {
            name: "processes.threads",
            unit: "count",
            description: "threads of all processes",
        },
        MetricInfo {
            name: "processes.fork_rate",
            unit: "per_second",
            description: "processes started",
        },
    ],
    read: super::read::<Processes>,
};

/// The states counted, by their letter in `/proc/<pid>/stat`, with their metric names.
const STATES: [(&[u8], &str); 6] = [
    (b"R", "processes.running"),
    (b"S", "processes.sleeping"),
    (b"D", "processes.blocked"),
    (b"Z", "processes.zombie"),
    (b"Tt", "processes.stopped"),
    (b"I", "processes.idle"),
];

impl Build for Processes {
    type Settings = ();
    const NEVER_WAITS: bool = true;

    fn build(_: &(), ctx: &SourceContext) -> Processes {
        Processes {
            files: KeptFiles::new(ctx.procfs.clone()),
            pids: PidFiles::new(ctx.procfs.path("proc"), "stat"),
            rates: ctx.rates(),
            buf: [0; 1024],
            stat: String::new(),
        }
    }
}

struct Processes {
    /// `/proc/stat`, for the forks.
    files: KeptFiles,
    pids: PidFiles,
    rates: Arc<Mutex<Rates>>,
    /// One `/proc/<pid>/stat` line; 1 KiB holds any (the command name is at most 64 bytes).
    buf: [u8; 1024],
    stat: String,
}

/// What one collection counted.
#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    states: [u64; STATES.len()],
    total: u64,
    threads: u64,
}

impl Source for Processes {
    fn collect(&mut self, emit: &mut Emitter<'_>) -> Result<(), SourceError> {
        let counts = self.scan()?;
        for ((_, name), count) in STATES.iter().zip(counts.states) {
            emit.metric(name, count);
        }
        emit.metric("processes.total", counts.total);
        emit.metric("processes.threads", counts.threads);
        self.files.read_into("proc/stat", &mut self.stat)?;
        let forks = self
            .stat
            .lines()
            .find_map(|l| l.strip_prefix("processes ")?.trim().parse::<u64>().ok());
        let mut rates = lock(&self.rates);
        if let Some(forks) = forks {
            emit.rate(&mut rates, "processes.fork_rate", forks);
        }
        rates.end_round();
        Ok(())
    }
}

impl Processes {
    fn scan(&mut self) -> Result<Counts, SourceError> {
        let mut counts = Counts::default();
        let dir = self.files.procfs().path("proc");
        let entries = fs::read_dir(&dir).map_err(|source| SourceError::Read {
            path: dir.clone(),
            source,
        })?;
        for entry in entries {
            let Ok(entry) = entry else { continue };
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(pid_of) else {
                continue;
            };
            let n = match self.pids.read(pid, &mut self.buf) {
                Ok(n) => n,
                // The process exited between the listing and the read.
                Err(e)
                    if matches!(e.kind(), ErrorKind::NotFound)
                        || e.raw_os_error() == Some(libc::ESRCH) =>
                {
                    continue;
                }
                Err(e) => {
                    return Err(SourceError::Read {
                        path: dir.join(&name).join("stat"),
                        source: e,
                    });
                }
            };
            let Some((state, threads)) = parse_stat(&self.buf[..n]) else {
                continue;
            };
            counts.total += 1;
            counts.threads = counts.threads.saturating_add(threads);
            if let Some(i) = STATES
                .iter()
                .position(|(letters, _)| letters.contains(&state))
            {
                counts.states[i] += 1;
            }
        }
        self.pids.end_round();
        Ok(counts)
    }
}

/// The pid a `/proc` entry names: all digits, and small enough to be one.
fn pid_of(name: &str) -> Option<u32> {
    if name.bytes().all(|b| b.is_ascii_digit()) {
        name.parse().ok()
    } else {
        None
    }
}

/// The state letter and thread count of a `/proc/<pid>/stat` line. The command name (in
/// parentheses) may hold spaces and parentheses itself, so the fields are counted after the last
/// `)`: state is the first, `num_threads` the eighteenth.
fn parse_stat(line: &[u8]) -> Option<(u8, u64)> {
    let close = line.iter().rposition(|&b| b == b')')?;
    let mut fields = line[close + 1..]
        .split(|&b| b == b' ')
        .filter(|f| !f.is_empty());
    let state = *fields.next()?.first()?;
    let threads = fields.nth(16)?;
    let threads = std::str::from_utf8(threads).ok()?.parse().ok()?;
    Some((state, threads))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{collect, collect_at, lines};
    use super::*;
    use crate::cache::Cache;

    #[test]
    fn counts_a_router_s_processes_by_state() {
        assert_eq!(
            collect::<Processes>(&(), "openwrt"),
            lines(
                "processes.running 1
                 processes.sleeping 7
                 processes.blocked 1
                 processes.zombie 1
                 processes.stopped 1
                 processes.idle 1
                 processes.total 12
                 processes.threads 15"
            )
        );
    }

    #[test]
    fn counts_a_server_s_threads() {
        let out = collect::<Processes>(&(), "debian");
        assert!(
            out.contains("processes.total 8\nprocesses.threads 55\n"),
            "{out}"
        );
        assert!(
            out.starts_with("processes.running 1\nprocesses.sleeping 6\n"),
            "{out}"
        );
    }

    #[test]
    fn fork_rate_comes_from_the_second_sample() {
        let cache = Arc::new(Cache::in_memory());
        let first = collect_at::<Processes>(&(), "openwrt", &cache, 100);
        assert!(!first.contains("fork_rate"));
        let second = collect_at::<Processes>(&(), "openwrt-next", &cache, 110);
        assert!(second.ends_with("processes.fork_rate 5\n"), "{second}");
    }

    #[test]
    fn command_names_with_parentheses_and_spaces_parse() {
        let line =
            b"1400 (my (weird) proc) D 0 1 1 0 -1 4194560 100 0 0 0 10 20 0 0 20 0 3 0 100 1200000";
        assert_eq!(parse_stat(line), Some((b'D', 3)));
        assert_eq!(parse_stat(b"1 (x) S 1 2"), None);
        assert_eq!(parse_stat(b"garbage"), None);
    }

    /// Found by fuzzing (`fuzz/run.sh proc_processes`): thread counts of 2^64 - 1 overflowed the
    /// sum.
    #[test]
    fn absurd_thread_counts_saturate_instead_of_overflowing() {
        let out = collect::<Processes>(&(), "fuzzed");
        assert!(out.contains("processes.total 2\n"), "{out}");
        // Above i64::MAX a count is sent as a float.
        let saturated = format!("processes.threads {}\n", u64::MAX as f64);
        assert!(out.contains(&saturated), "{out}");
    }
}
