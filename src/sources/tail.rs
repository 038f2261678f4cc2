//! `tail`: follows a log file (through rotation and truncation) or a command's output (such as
//! OpenWrt's `logread -f`), counts the lines matching each configured pattern per interval, and
//! can forward the matching lines as log events.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Emitter, MetricInfo, Source, SourceContext, SourceError, SourceSpec, SourceType};
use crate::config::reader::{Problems, Table};
use crate::event::Kind;
use crate::pattern::TextPattern;
use crate::pollers::command::LineCommand;
use crate::pollers::follow::Follower;

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
            name: "tail.<name>.dropped",
            unit: "count",
            description: "with forward: matching lines past max_forward since the last tick, counted but not forwarded",
        },
    ],
    read,
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
    /// A command's standard output, such as `["logread", "-f"]`; restarted when it exits.
    Command(Vec<String>),
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

fn read(t: &mut Table<'_>, problems: &mut Problems) -> Option<Arc<dyn SourceSpec>> {
    let path_field = t.field("path");
    let path: Option<PathBuf> = path_field.as_ref().and_then(|f| f.parse(problems));
    let command_field = t.field("command");
    let command: Option<Vec<String>> = command_field.as_ref().and_then(|f| f.parse(problems));
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
    let from = match (path, command) {
        (Some(path), None) if path.is_absolute() => LineSource::File { path, from_start },
        (Some(_), None) => {
            problems.expected(&path_field?, "an absolute path");
            return None;
        }
        (None, Some(argv)) if !argv.is_empty() => LineSource::Command(argv),
        (None, Some(_)) => {
            problems.expected(
                &command_field?,
                "a command and its arguments, such as [\"logread\", \"-f\"]",
            );
            return None;
        }
        (Some(_), Some(_)) => {
            problems.at(t.as_field(), "set either \"path\" or \"command\", not both");
            return None;
        }
        (None, None) => {
            // A path or command that was given but unreadable has been reported already.
            if path_field.is_none() && command_field.is_none() {
                problems.at(
                    t.as_field(),
                    "missing required key \"path\" (or \"command\")",
                );
            }
            return None;
        }
    };
    Some(Arc::new(TailSpec {
        from,
        patterns,
        forward,
        max_forward,
    }))
}

impl SourceSpec for TailSpec {
    fn build(&self, ctx: &SourceContext) -> Box<dyn Source> {
        let tally = Arc::new(Mutex::new(Tally::new(self)));
        let input = match &self.from {
            LineSource::File { path, from_start } => Input::File(Follower::new(path, *from_start)),
            LineSource::Command(_) => Input::Command(None),
        };
        let service = format!("tail.{}", ctx.instance);
        Box::new(Tail {
            spec: self.clone(),
            instance: ctx.instance.clone(),
            count_names: self
                .patterns
                .keys()
                .map(|label| format!("{service}.{label}.count"))
                .collect(),
            service,
            tally,
            input,
        })
    }
}

/// What was read since the last tick. Behind a mutex: a command's lines arrive on its own thread.
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
    /// `None` until started, and after the command exited.
    Command(Option<LineCommand>),
}

struct Tail {
    spec: TailSpec,
    /// The instance name, naming the command's reader thread.
    instance: String,
    service: String,
    count_names: Vec<String>,
    tally: Arc<Mutex<Tally>>,
    input: Input,
}

fn lock(tally: &Mutex<Tally>) -> MutexGuard<'_, Tally> {
    tally.lock().unwrap_or_else(|e| e.into_inner())
}

impl Tail {
    /// Reads what is new; an error says why the input could not be read, after what could.
    fn read_input(&mut self) -> Result<(), SourceError> {
        match &mut self.input {
            Input::File(follower) => {
                let mut tally = lock(&self.tally);
                follower
                    .read(&mut |line| tally.feed(line))
                    .map_err(|e| SourceError(format!("{}: {e}", follower.path().display())))
            }
            Input::Command(running) => {
                let LineSource::Command(argv) = &self.spec.from else {
                    return Ok(());
                };
                if let Some(cmd) = running {
                    match cmd.exited() {
                        Ok(None) => return Ok(()),
                        Ok(Some(status)) => {
                            let label = cmd.label().to_owned();
                            *running = None;
                            return Err(SourceError(format!(
                                "`{label}` exited ({status}); restarting it on the next tick"
                            )));
                        }
                        Err(e) => return Err(SourceError(format!("`{}`: {e}", cmd.label()))),
                    }
                }
                let tally = self.tally.clone();
                let thread_name = format!("src/{}", self.instance);
                let cmd =
                    LineCommand::spawn(argv, &thread_name, move |line| lock(&tally).feed(line))
                        .map_err(|e| {
                            SourceError(format!("cannot start `{}`: {e}", argv.join(" ")))
                        })?;
                *running = Some(cmd);
                Ok(())
            }
        }
    }
}

impl Source for Tail {
    fn collect(&mut self, emit: &mut Emitter<'_>) -> Result<(), SourceError> {
        let result = self.read_input();
        let mut tally = lock(&self.tally);
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
            emit.metric(
                &format!("{}.dropped", self.service),
                std::mem::take(&mut tally.dropped),
            );
        }
        result
    }
}
