//! `stdout`: events on standard output, as Graphite plaintext lines or as JSON lines.

use std::io::{self, Write};

use super::graphite::path::Naming;
use super::graphite::plaintext;
use super::{Output, OutputError, OutputSpec, OutputType, Settings};
use crate::config::AgentConfig;
use crate::config::reader::{Problems, Table};
use crate::event::Event;

/// The registry entry.
pub const TYPE: OutputType = OutputType {
    name: "stdout",
    description: "events on standard output, as Graphite lines or JSON lines",
    read: crate::outputs::read::<StdoutSpec>,
};

/// How events are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `path value timestamp`, as carbon takes it; events without a metric are left out.
    Graphite,
    /// One JSON object per event, with every field that is set.
    Json,
}

/// Settings of the `stdout` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StdoutSpec {
    /// The line format; default `graphite`.
    pub format: Format,
    /// How Graphite paths are built (`prefix`, `host_dot`, `naming`).
    pub naming: Naming,
}

impl Settings for StdoutSpec {
    fn read(
        t: &mut Table<'_>,
        _agent: &AgentConfig,
        problems: &mut Problems,
    ) -> Option<StdoutSpec> {
        let format = match t.choice("format", &["graphite", "json"], "graphite", problems) {
            "json" => Format::Json,
            _ => Format::Graphite,
        };
        let naming = Naming::read(t, problems);
        Some(StdoutSpec { format, naming })
    }
}

impl OutputSpec for StdoutSpec {
    fn build_target(&self, _: usize, _: &str) -> Result<Box<dyn Output>, OutputError> {
        Ok(Box::new(Stdout::new(self.clone())))
    }

    fn describe(&self) -> String {
        match self.format {
            Format::Graphite => "graphite lines to standard output".into(),
            Format::Json => "JSON lines to standard output".into(),
        }
    }
}

/// The stdout output, also used by `pipit once` to print.
pub struct Stdout {
    spec: StdoutSpec,
    buf: Vec<u8>,
    path: String,
    unencodable: u64,
}

impl Stdout {
    /// A stdout output with these settings.
    pub fn new(spec: StdoutSpec) -> Stdout {
        Stdout {
            spec,
            buf: Vec::new(),
            path: String::new(),
            unencodable: 0,
        }
    }

    /// Appends the text of `events` to `out`; in the Graphite format, events without a line are
    /// counted (see [`Output::take_unencodable`]).
    pub fn encode(&mut self, events: &[Event], out: &mut Vec<u8>) {
        for event in events {
            match self.spec.format {
                Format::Graphite => {
                    if plaintext::encode(&self.spec.naming, event, &mut self.path, out).is_err() {
                        self.unencodable += 1;
                    }
                }
                Format::Json => {
                    if serde_json::to_writer(&mut *out, event).is_ok() {
                        out.push(b'\n');
                    }
                }
            }
        }
    }
}

impl Output for Stdout {
    fn write(&mut self, batch: &[Event]) -> Result<(), OutputError> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        self.encode(batch, &mut buf);
        let mut out = io::stdout().lock();
        let result = out.write_all(&buf).and_then(|()| out.flush());
        self.buf = buf;
        result.map_err(OutputError::Stdout)
    }

    fn take_unencodable(&mut self) -> u64 {
        std::mem::take(&mut self.unencodable)
    }
}
