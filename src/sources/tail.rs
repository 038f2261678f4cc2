//! `tail`: follows a log file (through rotation and truncation) or a command's output (such as
//! OpenWrt's `logread -f`), counts the lines matching each configured pattern per interval, and
//! can forward the matching lines as log events.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use super::{Build, Emitter, MetricInfo, Settings, Source, SourceContext, SourceError, SourceType};
use crate::complain::Complaint;
use crate::config::reader::{Problems, Table};
use crate::event::Kind;
use crate::pattern::TextPattern;
use crate::pollers::follow::Follower;
use crate::supervisor::{self, Command, Daemon, DaemonEvent, Supervisor};

/// The registry entry.
pub const TYPE: SourceType = SourceType {
    name: "tail",
    description: "lines of a log file or a command's output matching patterns, counted per interval",
    needs_two_samples: false,
    metrics: &[
        MetricInfo {
            name: "tail.<name>.<label>.count",
            unit: "count",
            description: "lines matching the pattern <label> since the last tick",
        },
        MetricInfo {
            name: "tail.<name>.lines",
            unit: "count",
            description: "lines read since the last tick",
        },
        MetricInfo {
            name: "tail.<name>.line",
            unit: "",
            description: "with forward: a log event per matching line; attribute match names the labels",
        },
        MetricInfo {
            name: "tail.<name>.unread",
            unit: "count",
            description: "with command: lines dropped unread since the last tick, because more than 1024 came between two ticks",
        },
        MetricInfo {
            name: "tail.<name>.dropped",
            unit: "count",
            description: "with forward: matching lines past max_forward since the last tick, counted but not forwarded",
        },
    ],
    read: super::read::<Tail>,
};

/// Where the lines come from.
#[derive(Debug, Clone, PartialEq)]
pub enum LineSource {
    /// A log file, followed by name.
    File {
        /// Its path.
        path: PathBuf,
        /// Read the file from its start when first found, not only what is added later.
        from_start: bool,
    },
    /// A command's standard output, such as `["logread", "-f"]`, kept running by the supervisor.
    Command(Arc<Command>),
}

/// Settings of the `tail` source.
#[derive(Debug, Clone, PartialEq)]
pub struct TailSpec {
    /// Where lines come from: `path` or `command`.
    pub from: LineSource,
    /// Patterns by label: a substring, or a glob over the whole line when it has `*` or `?`.
    pub patterns: BTreeMap<String, TextPattern>,
    /// Forward each matching line as a log event; default false.
    pub forward: bool,
    /// The most lines forwarded per tick; default 100.
    pub max_forward: usize,
}

impl Settings for TailSpec {
    fn read(t: &mut Table<'_>, problems: &mut Problems) -> Option<TailSpec> {
        let path_field = t.field("path");
        let path: Option<PathBuf> = path_field.as_ref().and_then(|f| f.parse(problems));
        let command_given = t.field("command").is_some();
        // The same keys as `exec`'s; a daemon has no timeout.
        let command = command_given
            .then(|| supervisor::read_command(t, problems, None))
            .flatten();
        let from_start = t.get_or("from_start", false, problems);
        let forward = t.get_or("forward", false, problems);
        let max_forward = t.number_in("max_forward", 100, 1, 100_000, problems) as usize;
        let mut patterns = BTreeMap::new();
        if let Some(field) = t.field("patterns") {
            let raw: BTreeMap<String, String> = field.parse(problems).unwrap_or_default();
            for (label, text) in raw {
                if label.is_empty() || label.contains(['.', ' ']) {
                    problems.at(
                        &field,
                        format!("label \"{label}\" must be non-empty, without dots or spaces"),
                    );
                }
                patterns.insert(label, TextPattern::new(&text));
            }
        }
        let from = match (path_field, command_given) {
            (Some(_), true) => {
                problems.at(t.as_field(), "set either \"path\" or \"command\", not both");
                return None;
            }
            (Some(field), false) => match path {
                Some(path) if path.is_absolute() => LineSource::File { path, from_start },
                Some(_) => {
                    problems.expected(&field, "an absolute path");
                    return None;
                }
                // An unreadable path has been reported already.
                None => return None,
            },
            // A wrong command has been reported already.
            (None, true) => LineSource::Command(Arc::new(command?)),
            (None, false) => {
                problems.at(
                    t.as_field(),
                    "missing required key \"path\" (or \"command\")",
                );
                return None;
            }
        };
        Some(TailSpec {
            from,
            patterns,
            forward,
            max_forward,
        })
    }
}

impl Build for Tail {
    type Settings = TailSpec;

    fn build(spec: &TailSpec, ctx: &SourceContext) -> Tail {
        let input = match &spec.from {
            LineSource::File { path, from_start } => Input::File(Follower::new(path, *from_start)),
            LineSource::Command(command) => Input::Command(Lines {
                command: command.clone(),
                supervisor: ctx.supervisor.clone(),
                daemon: None,
                unread_seen: 0,
                down: None,
            }),
        };
        let service = format!("tail.{}", ctx.instance);
        Tail {
            spec: spec.clone(),
            count_names: spec
                .patterns
                .keys()
                .map(|label| format!("{service}.{label}.count"))
                .collect(),
            service,
            tally: Tally::new(spec),
            input,
            losses: Complaint::new(super::log_target(&ctx.instance)),
        }
    }
}

/// What was read since the last tick.
#[derive(Debug)]
struct Tally {
    patterns: Vec<TextPattern>,
    labels: Vec<String>,
    forward: bool,
    max_forward: usize,
    counts: Vec<u64>,
    lines: u64,
    forwarded: Vec<(String, String)>,
    dropped: u64,
    /// Lines of a command dropped unread: they came faster than the ticks drained them.
    unread: u64,
}

impl Tally {
    fn new(spec: &TailSpec) -> Tally {
        Tally {
            labels: spec.patterns.keys().cloned().collect(),
            patterns: spec.patterns.values().cloned().collect(),
            forward: spec.forward,
            max_forward: spec.max_forward,
            counts: vec![0; spec.patterns.len()],
            lines: 0,
            forwarded: Vec::new(),
            dropped: 0,
            unread: 0,
        }
    }

    fn feed(&mut self, line: &str) {
        self.lines += 1;
        let mut matched: Vec<&str> = Vec::new();
        for (i, p) in self.patterns.iter().enumerate() {
            if p.matches(line) {
                self.counts[i] += 1;
                matched.push(&self.labels[i]);
            }
        }
        if !self.forward || matched.is_empty() {
            return;
        }
        if self.forwarded.len() < self.max_forward {
            self.forwarded.push((matched.join(","), line.to_owned()));
        } else {
            self.dropped += 1;
        }
    }
}

enum Input {
    File(Follower),
    Command(Lines),
}

/// A command's output lines, from the daemon the supervisor keeps running for this source.
struct Lines {
    command: Arc<Command>,
    supervisor: Supervisor,
    /// `None` until the first collection; dropping it stops the command.
    daemon: Option<Daemon>,
    /// The daemon's count of lines dropped unread, as of the last tick.
    unread_seen: u64,
    /// Why the command is not running, until it is due to be started again.
    down: Option<(String, Instant)>,
}

impl Lines {
    /// Feeds the lines printed since the last call to `tally`; an error says the command ended
    /// or could not start, and when it is tried again.
    fn read(&mut self, tally: &mut Tally) -> Result<(), SourceError> {
        let daemon = match &self.daemon {
            Some(daemon) => daemon,
            None => {
                let started = self
                    .supervisor
                    .start_daemon(self.command.clone())
                    .map_err(SourceError::Command)?;
                self.daemon.insert(started)
            }
        };
        let now = Instant::now();
        for event in daemon.events.try_iter().take(supervisor::DAEMON_QUEUE) {
            match &event {
                // A line over max_output has been cut: still a line, matched on what was kept.
                DaemonEvent::Line { line, .. } => {
                    tally.feed(&String::from_utf8_lossy(&line.bytes));
                    // Lines after an end come from the command started again.
                    self.down = None;
                }
                DaemonEvent::Exited { restart_in, .. } => {
                    let why = event.trouble().unwrap_or_default();
                    let why = format!("`{}` {why}", self.command.argv.join(" "));
                    self.down = Some((why, now + *restart_in));
                }
                DaemonEvent::NotStarted { restart_in, .. } => {
                    let why = event.trouble().unwrap_or_default();
                    self.down = Some((why, now + *restart_in));
                }
            }
        }
        let dropped = daemon.dropped();
        tally.unread += dropped - self.unread_seen;
        self.unread_seen = dropped;
        match &self.down {
            Some((why, due)) if now < *due => Err(SourceError::CommandDown(why.clone())),
            _ => {
                self.down = None;
                Ok(())
            }
        }
    }
}

struct Tail {
    spec: TailSpec,
    service: String,
    count_names: Vec<String>,
    tally: Tally,
    input: Input,
    /// Logs lines dropped unread or not forwarded, once while it goes on.
    losses: Complaint,
}

impl Tail {
    /// Logs what this tick lost, counted in `unread` and `dropped`: once while losses go on.
    fn tell_losses(&mut self, unread: u64, not_forwarded: u64) {
        let mut lost = Vec::new();
        if unread > 0 {
            lost.push(format!(
                "{unread} line(s) of the command dropped unread (more than {} between two ticks; \
                 counted in {}.unread)",
                supervisor::DAEMON_QUEUE,
                self.service
            ));
        }
        if not_forwarded > 0 {
            lost.push(format!(
                "{not_forwarded} matching line(s) not forwarded (over max_forward {}; counted in \
                 {}.dropped)",
                self.spec.max_forward, self.service
            ));
        }
        if lost.is_empty() {
            self.losses.recover();
        } else {
            self.losses.fail(&lost.join("; "));
        }
    }
}

impl Source for Tail {
    fn collect(&mut self, emit: &mut Emitter<'_>) -> Result<(), SourceError> {
        let tally = &mut self.tally;
        let result = match &mut self.input {
            Input::File(follower) => {
                follower
                    .read(&mut |line| tally.feed(line))
                    .map_err(|source| SourceError::Read {
                        path: follower.path().to_path_buf(),
                        source,
                    })
            }
            Input::Command(lines) => {
                let result = lines.read(tally);
                emit.metric(&format!("{}.unread", self.service), tally.unread);
                result
            }
        };
        let unread = std::mem::take(&mut tally.unread);
        let not_forwarded = std::mem::take(&mut tally.dropped);
        for (name, count) in self.count_names.iter().zip(&mut tally.counts) {
            emit.metric(name, std::mem::take(count));
        }
        emit.metric(
            &format!("{}.lines", self.service),
            std::mem::take(&mut tally.lines),
        );
        if self.spec.forward {
            let line_service = format!("{}.line", self.service);
            for (labels, line) in tally.forwarded.drain(..) {
                let e = emit.event(&line_service, Kind::Log);
                e.description = Some(line);
                e.attributes.insert("match".into(), labels);
            }
            emit.metric(&format!("{}.dropped", self.service), not_forwarded);
        }
        self.tell_losses(unread, not_forwarded);
        result
    }
}
