//! The status page (the `status_page` feature): `/` is one self-contained HTML page (its CSS and
//! script inline, compiled into the binary) that refreshes itself from `/status.json` (the
//! agent's status, as `pipit ctl status --json` prints it) and `/history.json` (the
//! [`History`] of the charted metrics).

use std::borrow::Cow;
use std::time::{Instant, SystemTime};

use super::history::History;
use super::{HttpServerConfig, StatusSource};
use crate::telemetry::Telemetry;

/// The page, as served.
const HTML: &[u8] = include_bytes!("page.html");

/// One answer of the page's paths.
pub enum Body {
    /// The content type and the bytes.
    Found(&'static str, Cow<'static, [u8]>),
    /// The agent did not give its status in time (it was busy reloading, or stopping).
    Unavailable,
}

/// The page's state: where the status comes from, and the history it samples.
pub struct Page {
    status: StatusSource,
    history: History,
    next_sample: Instant,
}

impl Page {
    /// A page asking `status` for the agent's status, charting what `config` names.
    pub fn new(config: &HttpServerConfig, status: StatusSource) -> Page {
        let history = History::new(config.charts.clone(), config.chart_step);
        Page {
            status,
            next_sample: Instant::now() + history.step(),
            history,
        }
    }

    /// When the next sample is due.
    pub fn next_sample(&self) -> Instant {
        self.next_sample
    }

    /// Samples the history if a sample is due.
    pub fn tick(&mut self, telemetry: &Telemetry) {
        let now = Instant::now();
        if now >= self.next_sample {
            self.history.sample(telemetry, SystemTime::now());
            self.next_sample += self.history.step();
            // Late ticks are not made up for: the next comes one step after this one.
            if self.next_sample <= now {
                self.next_sample = now + self.history.step();
            }
        }
    }

    /// The answer to `path`, or `None` when it is not one of the page's.
    pub fn body(&self, path: &str) -> Option<Body> {
        match path {
            "/" => Some(Body::Found("text/html; charset=utf-8", Cow::Borrowed(HTML))),
            "/status.json" => Some(match (self.status)() {
                Some(line) => Body::Found("application/json", Cow::Owned(line.into_bytes())),
                None => Body::Unavailable,
            }),
            "/history.json" => {
                let mut json = Vec::new();
                self.history.write_json(&mut json).ok()?;
                Some(Body::Found("application/json", Cow::Owned(json)))
            }
            _ => None,
        }
    }
}
