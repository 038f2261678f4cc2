//! `exec`: runs a check command (a small script, a Nagios plugin) every interval, or keeps a
//! daemon running that prints metrics lines, and turns its output into events.
//!
//! The command runs under the supervisor (see `crate::supervisor`): argv without a shell unless
//! `shell` is set, in its own process group, killed as a group at its timeout. The output format
//! is chosen in config; the parsers are in `crate::checks`.

use std::fmt::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{
    Build, Emitter, MetricInfo, RunResult, Settings, Source, SourceContext, SourceError, SourceType,
};
use crate::checks::{Format, Problem, graphite, json, nagios, quote, value};
use crate::complain::Complaint;
use crate::config::duration;
use crate::config::reader::{Problems, Table};
use crate::event::{Kind, State};
use crate::supervisor::{
    self, Command, DAEMON_QUEUE, Daemon, DaemonEvent, Exit, Finished, Reply, SpawnError, Supervisor,
};

/// How long a check may run when the config says nothing.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The stack of a daemon-mode `exec` source's thread (checks have none: they share one). Its
/// deepest collection is a `json` line nested as deep as the parser allows (128 levels; deeper is
/// refused as bad output): parsed, turned into events and dropped, it touched 60 to 72 KiB of
/// stack in a release build and 228 to 268 KiB in a debug build (x86_64), which the tests run. A
/// quarter of the default 2 MiB leaves twice the debug figure, and reserves a quarter of the
/// address space (which a 32-bit router has little of); the memory used is the same.
const STACK_SIZE: usize = 512 * 1024;
/// The most problems quoted in one event; the rest are counted.
const MAX_QUOTED_PROBLEMS: usize = 3;

/// The registry entry.
pub const TYPE: SourceType = SourceType {
    name: "exec",
    description: "runs a check command or a metrics-printing daemon; reads nagios, graphite, json or value output",
    needs_two_samples: false,
    metrics: &[
        MetricInfo {
            name: "<name>",
            unit: "",
            description: "the check's state and message; with format value, also the value",
        },
        MetricInfo {
            name: "<name>.<label>",
            unit: "",
            description: "nagios performance data; times in seconds, sizes in bytes",
        },
        MetricInfo {
            name: "<path>",
            unit: "",
            description: "graphite lines and json events, named as the command prints them",
        },
        MetricInfo {
            name: "exec.<name>.exit_code",
            unit: "",
            description: "the exit code of the run (128 + n when signal n ended it)",
        },
        MetricInfo {
            name: "exec.<name>.duration",
            unit: "seconds",
            description: "how long the run took",
        },
        MetricInfo {
            name: "exec.<name>.timed_out",
            unit: "",
            description: "1 when the run reached its timeout and was killed, else 0",
        },
        MetricInfo {
            name: "exec.<name>.truncated",
            unit: "",
            description: "1 when stdout or stderr was over max_output, else 0",
        },
        MetricInfo {
            name: "exec.<name>.skipped",
            unit: "count",
            description: "runs not started because the last was still going or no slot was free",
        },
        MetricInfo {
            name: "exec.<name>.restarts",
            unit: "count",
            description: "daemon mode: times the daemon ended and was started again",
        },
        MetricInfo {
            name: "exec.<name>.dropped_lines",
            unit: "count",
            description: "daemon mode: lines dropped because they came faster than the interval drains them",
        },
        MetricInfo {
            name: "exec.<name>.cut_lines",
            unit: "count",
            description: "daemon mode: lines over max_output, cut there (the rest discarded) and not read",
        },
    ],
    read: super::read::<Exec>,
};

/// Settings of one `exec` source.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecSpec {
    /// What to run.
    pub command: Arc<Command>,
    /// How to read its output.
    pub format: Format,
    /// Keep it running and read its lines as they come, rather than run it every interval.
    pub daemon: bool,
}

impl Settings for ExecSpec {
    fn read(t: &mut Table<'_>, problems: &mut Problems) -> Option<ExecSpec> {
        // `timeout` is also read (and checked) by the code common to all sources; here it is the
        // check's own timeout.
        let timeout = t
            .field("timeout")
            .and_then(|f| f.as_str().and_then(duration::parse))
            .unwrap_or(DEFAULT_TIMEOUT);
        let format = Format::from_name(t.choice("format", &Format::NAMES, "nagios", problems))
            .unwrap_or(Format::Nagios);
        let daemon = t.choice("mode", &["check", "daemon"], "check", problems) == "daemon";
        if daemon && format == Format::Nagios {
            if let Some(field) = t.field("mode") {
                problems.at(&field, "daemon mode reads lines as they come: use format \"graphite\", \"json\" or \"value\"");
            }
        }
        let command = supervisor::read_command(t, problems, (!daemon).then_some(timeout))?;
        Some(ExecSpec {
            command: Arc::new(command),
            format,
            daemon,
        })
    }

    fn spreads_first_run(&self) -> bool {
        // Checks share `supervisor.max_checks` slots; a daemon starts once and at once.
        !self.daemon
    }

    fn shares_a_thread(&self) -> bool {
        // A check's collection is a request to the supervisor and its answer: no thread of its
        // own need wait for it. A daemon's lines are read on its own.
        !self.daemon
    }

    fn stack_size(&self) -> Option<usize> {
        Some(STACK_SIZE)
    }

    fn longest_collection(&self) -> Option<Duration> {
        // A check may wait up to its timeout for a slot, then run up to its timeout and grace.
        let timeout = self.command.timeout?;
        Some(timeout * 2 + self.command.kill_grace + Duration::from_secs(5))
    }
}

impl Build for Exec {
    type Settings = ExecSpec;

    fn build(spec: &ExecSpec, ctx: &SourceContext) -> Exec {
        Exec {
            name: ctx.instance.clone(),
            spec: spec.clone(),
            supervisor: ctx.supervisor.clone(),
            daemon: None,
            skipped: 0,
            restarts: 0,
            cut_lines: 0,
            cut_off: Complaint::new(super::log_target(&ctx.instance)),
            dropped_seen: 0,
            flooded: Complaint::new(super::log_target(&ctx.instance)),
        }
    }
}

struct Exec {
    /// The instance name, the base of the service names and the supervisor's key for the check.
    name: String,
    spec: ExecSpec,
    supervisor: Supervisor,
    daemon: Option<Daemon>,
    skipped: u64,
    restarts: u64,
    /// Daemon mode: lines cut at `max_output`.
    cut_lines: u64,
    /// Logs output cut off at `max_output`, once while it goes on.
    cut_off: Complaint,
    /// Daemon mode: the dropped lines already told of.
    dropped_seen: u64,
    /// Logs lines dropped for coming faster than collections take them, once while it goes on.
    flooded: Complaint,
}

impl Source for Exec {
    fn collect(&mut self, emit: &mut Emitter<'_>) -> Result<(), SourceError> {
        if self.spec.daemon {
            return self.collect_daemon(emit);
        }
        let (to, answer) = crossbeam_channel::bounded(1);
        let run = match self.start_check(Reply { to, tag: 0 }) {
            Some(Ok(())) => answer
                .recv()
                .map_or(Err(SpawnError::Stopped), |answer| answer.result),
            Some(Err(e)) => Err(e),
            None => Err(SpawnError::Stopped),
        };
        self.finish_check(run, emit)
    }

    fn start_check(&mut self, reply: Reply) -> Option<Result<(), SpawnError>> {
        if self.spec.daemon {
            return None;
        }
        Some(
            self.supervisor
                .submit(&self.name, self.spec.command.clone(), reply),
        )
    }

    fn finish_check(&mut self, run: RunResult, emit: &mut Emitter<'_>) -> Result<(), SourceError> {
        let own = format!("exec.{}", self.name);
        match run {
            Ok(finished) => {
                self.report(&finished, emit);
                if finished.stdout.truncated || finished.stderr.truncated {
                    self.cut_off.fail(&format!(
                        "output over max_output ({} bytes): the rest was discarded",
                        self.spec.command.max_output
                    ));
                } else {
                    self.cut_off.recover();
                }
                emit.metric(&format!("{own}.skipped"), self.skipped);
                Ok(())
            }
            Err(e @ SpawnError::Skipped(_)) => {
                self.skipped += 1;
                emit.metric(&format!("{own}.skipped"), self.skipped);
                Err(SourceError::Command(e))
            }
            Err(SpawnError::NotStarted(why)) => {
                let status = emit.event(&self.name, Kind::Metric);
                status.state = Some(State::new(State::CRITICAL));
                status.description = Some(why.clone());
                Err(SourceError::Command(SpawnError::NotStarted(why)))
            }
            Err(SpawnError::Stopped) => Ok(()),
        }
    }
}

impl Exec {
    /// Emits what one finished run says: its readings, its status event, and its own metrics.
    fn report(&self, run: &Finished, emit: &mut Emitter<'_>) {
        let name = &self.name;
        let stdout = String::from_utf8_lossy(&run.stdout.bytes);
        let mut problems: Vec<Problem> = Vec::new();
        let mut state = match run.exit {
            Exit::Code(0) => State::OK,
            _ => State::CRITICAL,
        };
        let mut text = String::new();
        let mut metric = None;
        match self.spec.format {
            Format::Nagios => {
                let plugin = nagios::parse(&stdout);
                for p in &plugin.perfdata {
                    emit.metric(&format!("{name}.{}", p.label), p.value);
                }
                state = nagios::state(match run.exit {
                    Exit::Code(code) => Some(code),
                    Exit::Signal(_) | Exit::Unknown => None,
                });
                text = plugin.text;
                if !plugin.long_text.is_empty() {
                    text.push('\n');
                    text.push_str(&plugin.long_text);
                }
                problems = plugin.problems;
            }
            Format::Graphite => {
                let mut samples = Vec::new();
                graphite::parse(&stdout, &mut samples, &mut problems);
                for s in samples {
                    emit_sample(emit, s);
                }
            }
            Format::Json => {
                let mut events = Vec::new();
                json::parse(&stdout, &mut events, &mut problems);
                for e in events {
                    emit_json(emit, e, None);
                }
            }
            // A run that failed and printed nothing has nothing to read, rather than bad output.
            Format::Value if stdout.trim().is_empty() && run.exit != Exit::Code(0) => {}
            Format::Value => match value::parse(&stdout) {
                Ok(v) => metric = Some(v),
                Err(message) => problems.push(Problem { line: 0, message }),
            },
        }
        let mut notes: Vec<String> = Vec::new();
        if run.timed_out {
            state = State::CRITICAL;
            let timeout = self
                .spec
                .command
                .timeout
                .map_or_else(String::new, |t| format!(" after {}", duration::format(t)));
            notes.push(format!("timed out{timeout}: killed"));
        } else if run.exit != Exit::Code(0)
            && (self.spec.format != Format::Nagios || !matches!(run.exit, Exit::Code(_)))
        {
            // A plugin's exit code is its state; for the other formats it is news.
            notes.push(format!("ended with {}", run.exit));
        }
        if state != State::OK || text.is_empty() {
            if let Some(line) = String::from_utf8_lossy(&run.stderr.bytes)
                .lines()
                .find(|l| !l.trim().is_empty())
            {
                notes.push(format!("stderr: {}", quote(line.trim())));
            }
        }
        if !problems.is_empty() {
            state = State::CRITICAL;
            notes.push(unreadable(&problems));
        }
        if run.stdout.truncated || run.stderr.truncated {
            notes.push(format!(
                "output over max_output ({} bytes): the rest was discarded",
                self.spec.command.max_output
            ));
        }
        if text.is_empty() && self.spec.format == Format::Nagios {
            text.push_str("(no output)");
        }
        for note in notes {
            if !text.is_empty() {
                text.push_str("; ");
            }
            text.push_str(&note);
        }
        let status = emit.event(name, Kind::Metric);
        status.state = Some(State::new(state));
        status.metric = metric;
        if !text.is_empty() {
            status.description = Some(text);
        }
        let own = format!("exec.{name}");
        match run.exit {
            Exit::Code(code) => emit.metric(&format!("{own}.exit_code"), i64::from(code)),
            Exit::Signal(signal) => {
                emit.metric(&format!("{own}.exit_code"), 128 + i64::from(signal))
            }
            Exit::Unknown => {}
        }
        emit.metric(&format!("{own}.duration"), run.duration.as_secs_f64());
        emit.metric(&format!("{own}.timed_out"), i64::from(run.timed_out));
        emit.metric(
            &format!("{own}.truncated"),
            i64::from(run.stdout.truncated || run.stderr.truncated),
        );
    }

    /// Daemon mode: starts the daemon on the first call, then emits the lines it printed since.
    fn collect_daemon(&mut self, emit: &mut Emitter<'_>) -> Result<(), SourceError> {
        let daemon = match &self.daemon {
            Some(d) => d,
            None => {
                let started = self
                    .supervisor
                    .start_daemon(self.spec.command.clone())
                    .map_err(SourceError::Command)?;
                self.daemon.insert(started)
            }
        };
        let name = &self.name;
        let mut problems: Vec<Problem> = Vec::new();
        let mut cut = 0;
        let mut whole = 0;
        for event in daemon.events.try_iter().take(supervisor::DAEMON_QUEUE) {
            match event {
                DaemonEvent::Line { line, time } => {
                    let text = String::from_utf8_lossy(&line.bytes);
                    if line.truncated {
                        cut += 1;
                        let message = format!(
                            "line over max_output ({} bytes): {}",
                            self.spec.command.max_output,
                            quote(&text)
                        );
                        problems.push(Problem { line: 0, message });
                        continue;
                    }
                    whole += 1;
                    let read = match self.spec.format {
                        Format::Graphite => graphite::parse_line(&text)
                            .map(|s| s.into_iter().for_each(|s| emit_sample(emit, s))),
                        Format::Json => json::parse_line(&text)
                            .map(|e| e.into_iter().for_each(|e| emit_json(emit, e, Some(time)))),
                        Format::Value | Format::Nagios => value::parse(&text).map(|v| {
                            let e = emit.event(name, Kind::Metric);
                            e.state = Some(State::new(State::OK));
                            e.metric = Some(v);
                            e.time = time;
                        }),
                    };
                    if let Err(message) = read {
                        problems.push(Problem { line: 0, message });
                    }
                }
                ended => {
                    if matches!(ended, DaemonEvent::Exited { .. }) {
                        self.restarts += 1;
                    }
                    if let Some(message) = ended.trouble() {
                        problems.push(Problem { line: 0, message });
                    }
                }
            }
        }
        if !problems.is_empty() {
            let status = emit.event(name, Kind::Metric);
            status.state = Some(State::new(State::CRITICAL));
            status.description = Some(unreadable(&problems));
        }
        if cut > 0 {
            self.cut_lines += cut;
            self.cut_off.fail(&format!(
                "daemon line over max_output ({} bytes): cut there, the rest of the line discarded",
                self.spec.command.max_output
            ));
        } else if whole > 0 {
            // Only a whole line says the long one ended: a line without end sends nothing more.
            self.cut_off.recover();
        }
        let own = format!("exec.{name}");
        let dropped = daemon.dropped();
        if dropped > self.dropped_seen {
            self.flooded.fail(&format!(
                "the daemon printed more than {DAEMON_QUEUE} lines between two collections: \
                 {} dropped (counted in {own}.dropped_lines); shorten the interval or print less",
                dropped - self.dropped_seen
            ));
        } else {
            self.flooded.recover();
        }
        self.dropped_seen = dropped;
        emit.metric(&format!("{own}.restarts"), self.restarts);
        emit.metric(&format!("{own}.dropped_lines"), dropped);
        emit.metric(&format!("{own}.cut_lines"), self.cut_lines);
        Ok(())
    }
}

/// The problems as one line: the first few quoted, the rest counted.
fn unreadable(problems: &[Problem]) -> String {
    let mut text = String::from("unreadable output: ");
    for (i, p) in problems.iter().take(MAX_QUOTED_PROBLEMS).enumerate() {
        if i > 0 {
            text.push_str("; ");
        }
        let _ = write!(text, "{p}");
    }
    if problems.len() > MAX_QUOTED_PROBLEMS {
        let _ = write!(text, " (and {} more)", problems.len() - MAX_QUOTED_PROBLEMS);
    }
    text
}

fn emit_sample(emit: &mut Emitter<'_>, s: graphite::Sample) {
    let e = emit.event(&s.path, Kind::Metric);
    e.metric = Some(s.value);
    if let Some(time) = s.time {
        e.time = time;
    }
}

fn emit_json(emit: &mut Emitter<'_>, j: json::JsonEvent, arrived: Option<SystemTime>) {
    let kind = j.kind();
    let e = emit.event(&j.service, kind);
    if let Some(host) = j.host {
        e.host = host;
    }
    e.state = j.state.as_deref().map(State::new);
    e.description = j.description;
    // The parser only gives finite values.
    e.metric = j.metric;
    if j.ttl.is_some() {
        e.ttl = j.ttl;
    }
    e.tags.extend(j.tags);
    e.attributes.extend(j.attributes);
    if let Some(time) = j.time.or(arrived) {
        e.time = time;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::config_file;

    fn load(source: &str) -> Result<config_file::Config, Vec<String>> {
        let text = format!(r#"{{"sources": [{source}], "outputs": [{{"type": "stdout"}}]}}"#);
        config_file::parse("c.json", &text).map_err(|e| e.0.iter().map(|e| e.to_string()).collect())
    }

    fn spec(source: &str) -> ExecSpec {
        let doc = config::json::parse(source).unwrap();
        let mut p = Problems::new("c.json");
        let mut t = config::reader::Field::root(&doc).table(&mut p).unwrap();
        let _ = t.field("type");
        let spec = ExecSpec::read(&mut t, &mut p).unwrap();
        t.finish(&mut p);
        assert!(p.is_empty(), "{:?}", p.into_errors());
        spec
    }

    #[test]
    fn reads_a_check_with_defaults() {
        let s = spec(r#"{"type": "exec", "command": ["/bin/check", "-H", "x"]}"#);
        assert_eq!(s.format, Format::Nagios);
        assert!(!s.daemon);
        assert_eq!(s.command.argv, ["/bin/check", "-H", "x"]);
        assert_eq!(s.command.timeout, Some(DEFAULT_TIMEOUT));
    }

    #[test]
    fn shell_commands_run_through_sh() {
        let s = spec(
            r#"{"type": "exec", "command": "echo 1 | wc -l", "shell": true, "format": "value"}"#,
        );
        assert_eq!(s.command.argv, ["/bin/sh", "-c", "echo 1 | wc -l"]);
        assert_eq!(s.format, Format::Value);
    }

    #[test]
    fn the_hang_timeout_stays_above_the_check_timeout() {
        let c = load(
            r#"{"type": "exec", "command": ["/bin/true"], "timeout": "20s", "kill_grace": "1s"}"#,
        )
        .unwrap();
        assert!(
            c.sources[0].timeout >= Duration::from_secs(41),
            "{:?}",
            c.sources[0].timeout
        );
    }

    #[test]
    fn bad_configs_say_what_is_expected() {
        let e = load(r#"{"type": "exec", "command": "check_ping -H x"}"#).unwrap_err();
        assert!(
            e[0].contains("a single string needs \\\"shell\\\": true")
                || e[0].contains("a single string needs \"shell\": true"),
            "{e:?}"
        );
        let e = load(r#"{"type": "exec", "command": []}"#).unwrap_err();
        assert!(e[0].contains("a non-empty array"), "{e:?}");
        let e = load(r#"{"type": "exec"}"#).unwrap_err();
        assert!(e[0].contains("missing required key \"command\""), "{e:?}");
        let e = load(r#"{"type": "exec", "command": ["x"], "mode": "daemon"}"#).unwrap_err();
        assert!(e[0].contains("daemon mode reads lines"), "{e:?}");
        let e =
            load(r#"{"type": "exec", "command": ["x"], "user": "no-such-user-here"}"#).unwrap_err();
        assert!(
            e[0].ends_with("user: no user \"no-such-user-here\" in /etc/passwd"),
            "{e:?}"
        );
        let e = load(r#"{"type": "exec", "command": ["x"], "format": "xml", "max_output": 1}"#)
            .unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
    }

    #[test]
    fn problems_are_quoted_and_counted() {
        let problems: Vec<Problem> = (1..=5)
            .map(|line| Problem {
                line,
                message: "bad".into(),
            })
            .collect();
        assert_eq!(
            unreadable(&problems),
            "unreadable output: line 1: bad; line 2: bad; line 3: bad (and 2 more)"
        );
    }
}
