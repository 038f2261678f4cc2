//! The `agent` section (settings that apply to everything, with their defaults in one place) and
//! the `hostname` key every section that puts a host on events may set.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use super::reader::{Problems, Table};

/// The `agent` section: settings that apply to everything.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    /// Host name put on events, and the default of the `mqtt` output's; default: the system's
    /// host name.
    pub hostname: String,
    /// Interval of sources that set none; default 10 s.
    pub interval: Duration,
    /// The directory under which `/proc` and `/sys` are read; default `/`.
    pub host_root: PathBuf,
    /// Where state that survives a restart is kept; default `/var/lib/pipit`.
    pub state_dir: PathBuf,
    /// Longest time between two writes of the persistent cache (it is also written at stop);
    /// default 5 min, at least 10 s.
    pub cache_interval: Duration,
    /// How long a stop may take to hand queued events to the outputs; default 5 s.
    pub shutdown_timeout: Duration,
    /// Capacity of the channel from the sources to the router, in collections (each collection's
    /// events travel as one message); default 1,000.
    pub queue_size: usize,
    /// When memory that start-up used and steady running does not is first given back, after
    /// start; default 10 s (after every source's first collection), at least 1 s.
    pub trim_delay: Duration,
}

/// The defaults of the `agent` section, in one place.
impl Default for AgentConfig {
    fn default() -> AgentConfig {
        AgentConfig {
            hostname: system_hostname(),
            interval: Duration::from_secs(10),
            host_root: PathBuf::from("/"),
            state_dir: PathBuf::from("/var/lib/pipit"),
            cache_interval: Duration::from_secs(300),
            shutdown_timeout: Duration::from_secs(5),
            queue_size: 1_000,
            trim_delay: Duration::from_secs(10),
        }
    }
}

/// Reads the `agent` section.
pub fn read(mut t: Table<'_>, problems: &mut Problems) -> AgentConfig {
    let d = AgentConfig::default();
    let agent = AgentConfig {
        hostname: read_hostname(&mut t, problems).unwrap_or(d.hostname),
        interval: t.duration_at_least("interval", d.interval, Duration::from_millis(10), problems),
        host_root: t.get_or("host_root", d.host_root, problems),
        state_dir: t.get_or("state_dir", d.state_dir, problems),
        cache_interval: t.duration_at_least(
            "cache_interval",
            d.cache_interval,
            Duration::from_secs(10),
            problems,
        ),
        shutdown_timeout: t.duration_at_least(
            "shutdown_timeout",
            d.shutdown_timeout,
            Duration::ZERO,
            problems,
        ),
        queue_size: t.number_in("queue_size", d.queue_size as u64, 1, 10_000_000, problems)
            as usize,
        trim_delay: t.duration_at_least(
            "trim_delay",
            d.trim_delay,
            Duration::from_secs(1),
            problems,
        ),
    };
    t.finish(problems);
    agent
}

/// Reads a `hostname` key, refusing an empty one.
pub fn read_hostname(t: &mut Table<'_>, problems: &mut Problems) -> Option<String> {
    let field = t.field("hostname")?;
    match field.as_str() {
        Some(s) if !s.trim().is_empty() => Some(s.to_owned()),
        _ => {
            problems.expected(&field, "a non-empty host name");
            None
        }
    }
}

/// The system's host name, from the kernel (`localhost` when it cannot be read).
pub fn system_hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned())
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}
