//! `http`: an HTTP(S) check. One request per tick; the response is judged against the expected
//! status codes and an optional body pattern, and reported as `ok` or `critical` with the reason.

use std::collections::BTreeMap;
use std::time::Instant;

use ureq::http::{HeaderName, HeaderValue, Method, Request};

use super::{Build, Emitter, MetricInfo, Settings, Source, SourceContext, SourceError, SourceType};
use crate::complain::Complaint;
use crate::config::reader::{Problems, Table};
use crate::event::{Metric, State};
use crate::http_client::{self, HttpTimeouts};
use crate::pattern::TextPattern;

/// How much of a body is kept to match `body_pattern` against; the rest is counted, not kept.
pub const MATCH_LIMIT: usize = 64 * 1024;

/// The registry entry.
pub const TYPE: SourceType = SourceType {
    name: "http",
    description: "an HTTP(S) check: latency, status code, size, and ok or critical with the reason",
    needs_two_samples: false,
    metrics: &[
        MetricInfo {
            name: "http.<name>.latency",
            unit: "seconds",
            description: "time for the whole request, body included (until the failure, if it failed)",
        },
        MetricInfo {
            name: "http.<name>.first_byte",
            unit: "seconds",
            description: "time until the response headers arrived",
        },
        MetricInfo {
            name: "http.<name>.status",
            unit: "",
            description: "the response status code",
        },
        MetricInfo {
            name: "http.<name>.size",
            unit: "bytes",
            description: "the response body size",
        },
    ],
    read: super::read::<HttpCheck>,
};

/// Settings of the `http` source.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSpec {
    /// What to request.
    pub url: String,
    /// The request method; default `GET`.
    pub method: Method,
    /// Request headers.
    pub headers: BTreeMap<String, String>,
    /// A request body, sent when set.
    pub body: Option<String>,
    /// Status codes that count as healthy; empty (the default) takes any 2xx.
    pub status: Vec<u16>,
    /// Text the body must contain (or a glob it must match, when it has `*` or `?`).
    pub body_pattern: Option<String>,
    /// Follow redirects (up to 10); default true.
    pub follow_redirects: bool,
    /// Connect and total timeouts.
    pub timeouts: HttpTimeouts,
}

impl Settings for HttpSpec {
    fn read(t: &mut Table<'_>, problems: &mut Problems) -> Option<HttpSpec> {
        let url = t.require::<String>("url", problems);
        let method = t.get_or("method", "GET".to_owned(), problems);
        let method_ok = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).ok();
        if method_ok.is_none() {
            if let Some(f) = t.field("method") {
                problems.expected(&f, "an HTTP method such as \"GET\" or \"POST\"");
            }
        }
        let status_field = t.field("status");
        let status: Vec<u64> = status_field
            .as_ref()
            .and_then(|f| f.parse(problems))
            .unwrap_or_default();
        if let Some(f) = &status_field {
            if status.iter().any(|s| !(100..=599).contains(s)) {
                problems.expected(f, "status codes from 100 to 599");
            }
        }
        let headers: BTreeMap<String, String> = t.get_or("headers", BTreeMap::new(), problems);
        for (k, v) in &headers {
            let valid =
                HeaderName::from_bytes(k.as_bytes()).is_ok() && HeaderValue::from_str(v).is_ok();
            if let (false, Some(f)) = (valid, t.field("headers")) {
                problems.at(
                    &f,
                    format!("\"{k}\" is not a valid HTTP header name and value"),
                );
            }
        }
        let body = t.get("body", problems);
        let body_pattern = t.get("body_pattern", problems);
        let follow_redirects = t.get_or("follow_redirects", true, problems);
        let timeouts = HttpTimeouts::read(t, problems);
        // Every key is read before giving up on a bad one, so none is reported unknown.
        let url = url?;
        let problem = match http_client::unsupported(&url) {
            _ if !http_client::is_http(&url) => Some("expected an http:// or https:// URL"),
            unsupported => unsupported,
        };
        if let Some(problem) = problem {
            if let Some(f) = t.field("url") {
                problems.at(&f, problem);
            }
            return None;
        }
        let spec = HttpSpec {
            url,
            method: method_ok?,
            headers,
            body,
            status: status.iter().map(|&s| s as u16).collect(),
            body_pattern,
            follow_redirects,
            timeouts,
        };
        Some(spec)
    }
}

impl Build for HttpCheck {
    type Settings = HttpSpec;

    fn build(spec: &HttpSpec, ctx: &SourceContext) -> HttpCheck {
        HttpCheck {
            cut_off: Complaint::new(super::log_target(&ctx.instance)),
            agent: http_client::agent(spec.timeouts, spec.follow_redirects),
            shown_url: http_client::shown(&spec.url),
            pattern: spec.body_pattern.as_deref().map(TextPattern::new),
            service: format!("http.{}", ctx.instance),
            spec: spec.clone(),
        }
    }
}

struct HttpCheck {
    spec: HttpSpec,
    /// The URL as events show it, without a password.
    shown_url: String,
    agent: ureq::Agent,
    pattern: Option<TextPattern>,
    service: String,
    /// Logs bodies cut off at [`http_client::MAX_BODY`], once while it goes on.
    cut_off: Complaint,
}

/// What one request showed.
struct Outcome {
    first_byte: Option<f64>,
    status: Option<u16>,
    size: Option<u64>,
    /// `None` when healthy, else why not.
    problem: Option<String>,
    /// Whether the body was cut off at [`http_client::MAX_BODY`].
    cut_off: bool,
}

impl HttpCheck {
    fn request(&self) -> Result<Request<Vec<u8>>, String> {
        let mut builder = Request::builder()
            .method(self.spec.method.clone())
            .uri(&self.spec.url);
        for (k, v) in &self.spec.headers {
            builder = builder.header(k, v);
        }
        let body = self.spec.body.clone().unwrap_or_default().into_bytes();
        builder
            .body(body)
            .map_err(|e| format!("cannot build the request: {e}"))
    }

    fn check(&self, started: Instant) -> Outcome {
        let mut outcome = Outcome {
            first_byte: None,
            status: None,
            size: None,
            problem: None,
            cut_off: false,
        };
        let request = match self.request() {
            Ok(r) => r,
            Err(e) => {
                outcome.problem = Some(e);
                return outcome;
            }
        };
        let result = if self.spec.body.is_some() {
            self.agent.run(request)
        } else {
            let (parts, _) = request.into_parts();
            self.agent.run(Request::from_parts(parts, ()))
        };
        let mut response = match result {
            Ok(r) => r,
            Err(e) => {
                outcome.problem = Some(http_client::describe(&e, self.spec.timeouts));
                return outcome;
            }
        };
        outcome.first_byte = Some(started.elapsed().as_secs_f64());
        let status = response.status().as_u16();
        outcome.status = Some(status);
        let keep = if self.pattern.is_some() {
            MATCH_LIMIT
        } else {
            0
        };
        let body = match http_client::summarize(response.body_mut(), keep) {
            Ok(b) => b,
            Err(e) => {
                outcome.cut_off = matches!(e, ureq::Error::BodyExceedsLimit(_));
                outcome.problem = Some(http_client::describe(&e, self.spec.timeouts));
                return outcome;
            }
        };
        outcome.size = Some(body.size);
        let expected = if self.spec.status.is_empty() {
            (200..300).contains(&status)
        } else {
            self.spec.status.contains(&status)
        };
        if !expected {
            let wanted = if self.spec.status.is_empty() {
                "2xx".to_owned()
            } else {
                let list: Vec<String> = self.spec.status.iter().map(u16::to_string).collect();
                list.join(", ")
            };
            outcome.problem = Some(format!("status {status}, expected {wanted}"));
        } else if let Some(pattern) = &self.pattern {
            if !pattern.matches(&String::from_utf8_lossy(&body.head)) {
                outcome.problem = Some(format!(
                    "body does not match \"{}\" (first {} bytes checked)",
                    pattern.as_str(),
                    body.head.len()
                ));
            }
        }
        outcome
    }
}

impl Source for HttpCheck {
    fn collect(&mut self, emit: &mut Emitter<'_>) -> Result<(), SourceError> {
        let started = Instant::now();
        let outcome = self.check(started);
        let latency = started.elapsed().as_secs_f64();
        let (state, description) = match &outcome.problem {
            None => (
                State::OK,
                format!(
                    "{} {} in {latency:.3}s",
                    outcome.status.unwrap_or_default(),
                    self.shown_url
                ),
            ),
            Some(reason) => (State::CRITICAL, format!("{}: {reason}", self.shown_url)),
        };
        if outcome.cut_off {
            self.cut_off.fail(&description);
        } else {
            self.cut_off.recover();
        }
        let service = &self.service;
        let mut metrics = vec![("latency", Metric::from(latency))];
        if let Some(t) = outcome.first_byte {
            metrics.push(("first_byte", t.into()));
        }
        if let Some(status) = outcome.status {
            metrics.push(("status", u32::from(status).into()));
        }
        if let Some(size) = outcome.size {
            metrics.push(("size", size.into()));
        }
        for (name, value) in metrics {
            let name = format!("{service}.{name}");
            emit.judged(&name, value, state, &description);
        }
        Ok(())
    }
}
