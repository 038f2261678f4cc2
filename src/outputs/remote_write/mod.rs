//! The `prometheus_remote_write` output: batches as snappy-compressed protobuf `WriteRequest`s
//! POSTed to a Prometheus remote-write receiver (Prometheus with
//! `--web.enable-remote-write-receiver`, VictoriaMetrics, Mimir, Thanos, …).
//!
//! A 2xx answer delivers the batch. A 4xx other than 401, 403, 404, 408 and 429 says the batch
//! is bad: it is logged, counted as rejected and dropped. Prometheus refuses a whole request with
//! 400 when one sample in it is out of order, a duplicate with another value, or too old (500 for
//! one older than its out-of-order window, in 2.42), and stores none of it; so on those answers the batch is split in halves, sent again in order, and
//! split further where refused, until each refused sample stands alone: the others are stored
//! and only the refused ones count as rejected ([`OutputError::SamplesRefused`]). 5xx answers,
//! the other 4xx and timeouts count as failed deliveries.

pub mod snappy;
pub mod write_request;

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use ureq::Agent;

use super::{ErrorKind, Output, OutputError, OutputSpec, OutputType, Settings};
use crate::complain::Complaint;
use crate::config::AgentConfig;
use crate::config::reader::{Problems, Table};
use crate::config::secret::Secret;
use crate::event::Event;
use crate::http_client::{HttpTimeouts, describe, shown};
use crate::liveness::Liveness;
use crate::prometheus_name::SourceNames;
use crate::quote::quote;
use snappy::Compressor;
use write_request::Encoder;

/// The registry entry.
pub const TYPE: OutputType = OutputType {
    name: "prometheus_remote_write",
    description: "Prometheus remote write 1.0 (protobuf, snappy) over HTTP",
    read: crate::outputs::read::<RemoteWriteSpec>,
};

/// What Prometheus answers when one sample of a request cannot be stored, with 400 (`too old
/// sample`, beyond an out-of-order window: with 500 in 2.42); it then stores none of the request.
const SAMPLE_REFUSALS: [&str; 4] = [
    "out of order sample",
    "duplicate sample for timestamp",
    "out of bounds",
    "too old sample",
];

/// How requests are authorised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// No `Authorization` header.
    None,
    /// HTTP basic auth: `user:password`.
    Basic(Secret),
    /// `Authorization: Bearer <token>`.
    Bearer(Secret),
}

/// Settings of the `prometheus_remote_write` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteWriteSpec {
    /// The receiver's write URL, such as `http://127.0.0.1:9090/api/v1/write`.
    pub url: String,
    /// How requests are authorised; default not at all.
    pub auth: Auth,
    /// Labels added to every series that does not have them already; default none.
    pub labels: BTreeMap<String, String>,
    /// Time to open a connection; default 5 s.
    pub connect_timeout: Duration,
    /// Time for a whole request, connecting included; default 10 s.
    pub timeout: Duration,
    /// How soon its connections notice a dead path.
    pub liveness: Liveness,
    /// The configured sources' declared metrics, which name the series; none until the config
    /// gives them ([`OutputSpec::with_sources`]).
    pub sources: Vec<SourceNames>,
}

impl Settings for RemoteWriteSpec {
    fn read(
        t: &mut Table<'_>,
        _agent: &AgentConfig,
        problems: &mut Problems,
    ) -> Option<RemoteWriteSpec> {
        let url = read_url(t, problems);
        let auth = read_auth(t, problems);
        let labels = read_labels(t, problems);
        let min = Duration::from_millis(1);
        let connect_timeout =
            t.duration_at_least("connect_timeout", Duration::from_secs(5), min, problems);
        let timeout = t.duration_at_least("timeout", Duration::from_secs(10), min, problems);
        let liveness = Liveness::read(t, problems);
        Some(RemoteWriteSpec {
            url: url?,
            auth: auth?,
            labels,
            connect_timeout,
            timeout,
            liveness,
            sources: Vec::new(),
        })
    }
}

/// Reads `url`: http or https, without a user part (credentials go in their own keys).
fn read_url(t: &mut Table<'_>, problems: &mut Problems) -> Option<String> {
    let field = t.field("url");
    let url = t.require::<String>("url", problems)?;
    let field = field?;
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    else {
        problems.expected(&field, "an http:// or https:// URL");
        return None;
    };
    if url.starts_with("https://") && !cfg!(feature = "tls") {
        problems.at(
            &field,
            "this pipit was built without the \"tls\" feature: use an http:// URL",
        );
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') || url.contains('#') {
        problems.at(&field, "expected a URL with a host and no user or fragment, such as \"http://127.0.0.1:9090/api/v1/write\"; put credentials in \"username\" and \"password\" or \"token\"");
        return None;
    }
    Some(url)
}

/// Reads `username` with `password`, or `token`; `None` when they are set wrongly.
fn read_auth(t: &mut Table<'_>, problems: &mut Problems) -> Option<Auth> {
    let username = t.get::<String>("username", problems);
    let password = t.get::<String>("password", problems);
    let token = t.get::<String>("token", problems);
    let auth = match (username, password, token) {
        (None, None, None) => Auth::None,
        (None, None, Some(token)) => Auth::Bearer(Secret::new(token)),
        (Some(user), Some(password), None) if !user.contains(':') => {
            Auth::Basic(Secret::new(format!("{user}:{password}")))
        }
        (Some(_), Some(_), None) => {
            problems.at(t.as_field(), "the username must not hold ':'");
            return None;
        }
        (_, _, Some(_)) => {
            problems.at(
                t.as_field(),
                "set \"username\" and \"password\" for basic auth, or \"token\" for a bearer token, not both",
            );
            return None;
        }
        _ => {
            problems.at(
                t.as_field(),
                "basic auth needs both \"username\" and \"password\"",
            );
            return None;
        }
    };
    if let (Auth::Bearer(token), Some(field)) = (&auth, t.field("token")) {
        if ureq::http::HeaderValue::from_str(token.expose()).is_err() {
            problems.at(
                &field,
                "expected printable ASCII without line breaks or NUL (it is sent in an HTTP header)",
            );
            return None;
        }
    }
    Some(auth)
}

/// Reads `labels`: names as Prometheus takes them (not starting with `__`), non-empty values.
fn read_labels(t: &mut Table<'_>, problems: &mut Problems) -> BTreeMap<String, String> {
    let labels: BTreeMap<String, String> = t.get_or("labels", BTreeMap::new(), problems);
    let Some(field) = t.field("labels") else {
        return labels;
    };
    for (name, value) in &labels {
        let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with("__");
        if !valid {
            problems.at(&field, format!("label name {}: expected ASCII letters, digits and '_', not starting with a digit or \"__\"", quote(name)));
        } else if value.is_empty() {
            problems.at(&field, format!("label {name}: expected a non-empty value"));
        }
    }
    labels
}

impl OutputSpec for RemoteWriteSpec {
    fn targets(&self) -> Vec<String> {
        vec![shown(&self.url)]
    }

    fn build_target(&self, _: usize, log_target: &str) -> Result<Box<dyn Output>, OutputError> {
        // ureq 3 has no timeouts by default and reads *_PROXY variables: both are set here.
        let config = Agent::config_builder()
            .timeout_connect(Some(self.connect_timeout))
            .timeout_global(Some(self.timeout))
            .proxy(None)
            .http_status_as_error(false)
            .build();
        let (authorization, secrets) = match &self.auth {
            Auth::None => (None, Vec::new()),
            Auth::Basic(s) => (
                Some(format!(
                    "Basic {}",
                    crate::base64::standard(s.expose().as_bytes())
                )),
                s.revealing(),
            ),
            Auth::Bearer(s) => (Some(format!("Bearer {}", s.expose())), s.revealing()),
        };
        let mut secrets: Vec<String> = secrets.into_iter().map(str::to_owned).collect();
        secrets.extend(authorization.clone());
        Ok(Box::new(RemoteWrite {
            agent: crate::http_client::agent_with(config, self.liveness),
            url: self.url.clone(),
            shown_url: shown(&self.url),
            timeouts: HttpTimeouts {
                connect: self.connect_timeout,
                total: self.timeout,
            },
            authorization,
            secrets,
            encoder: Encoder::new(&self.labels, &self.sources),
            compressor: Compressor::default(),
            body: Vec::new(),
            ends: Vec::new(),
            compressed: Vec::new(),
            unencodable: 0,
            left_out: Complaint::new(log_target),
        }))
    }

    fn describe(&self) -> String {
        format!("prometheus remote write to {}", shown(&self.url))
    }

    fn with_sources(&self, sources: &[SourceNames]) -> Option<Arc<dyn OutputSpec>> {
        Some(Arc::new(RemoteWriteSpec {
            sources: sources.to_vec(),
            ..self.clone()
        }))
    }
}

/// What a receiver made of one request.
enum Answer {
    /// It stored every sample (a 2xx).
    Stored,
    /// It refused the request because of one of its samples (Prometheus's 400, or 500, with one
    /// of [`SAMPLE_REFUSALS`]), storing none; what to log.
    SampleRefused(String),
}

struct RemoteWrite {
    agent: Agent,
    url: String,
    /// The URL as it may be logged.
    shown_url: String,
    /// For the words of a timeout.
    timeouts: HttpTimeouts,
    authorization: Option<String>,
    /// What must never be quoted from a server's answer.
    secrets: Vec<String>,
    encoder: Encoder,
    compressor: Compressor,
    /// The `TimeSeries` of the batch, one after another (a `WriteRequest` of them all).
    body: Vec<u8>,
    /// Where each `TimeSeries` of `body` ends: the series `a..b` are `body[ends[a-1]..ends[b-1]]`.
    ends: Vec<usize>,
    compressed: Vec<u8>,
    /// Events of the last write that no sample can carry.
    unencodable: u64,
    /// Logs events left out, once while it goes on.
    left_out: Complaint,
}

impl RemoteWrite {
    /// The bytes of the `WriteRequest` holding the series `range`.
    fn request(&self, range: Range<usize>) -> Range<usize> {
        let start = range.start.checked_sub(1).map_or(0, |i| self.ends[i]);
        start..self.ends[range.end - 1]
    }

    /// POSTs the series `range` as one request.
    fn post(&mut self, range: Range<usize>) -> Result<Answer, OutputError> {
        let bytes = self.request(range);
        self.compressor
            .compress(&self.body[bytes], &mut self.compressed);
        let mut request = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/x-protobuf")
            .header("Content-Encoding", "snappy")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0");
        if let Some(authorization) = &self.authorization {
            request = request.header("Authorization", authorization);
        }
        let mut response =
            request
                .send(&self.compressed[..])
                .map_err(|source| OutputError::Http {
                    url: self.shown_url.clone(),
                    why: describe(&source, self.timeouts),
                    source: Box::new(source),
                })?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(Answer::Stored);
        }
        let answer = crate::http_client::summarize(response.body_mut(), 1024)
            .map(|s| String::from_utf8_lossy(&s.head).into_owned())
            .unwrap_or_default();
        let reason = crate::http_client::quote_answer(&answer, &self.secrets);
        let refusal = OutputError::Status {
            url: self.shown_url.clone(),
            status,
            reason,
            refused: None,
        };
        if matches!(status, 400 | 500) && SAMPLE_REFUSALS.iter().any(|r| answer.contains(r)) {
            Ok(Answer::SampleRefused(refusal.to_string()))
        } else {
            Err(refusal)
        }
    }

    /// Sends the series `range`, which the receiver refused as a whole, again in two halves, in
    /// order, and splits every half refused for a sample further; returns how many series it
    /// refused (a half refused as bad for another reason counts whole).
    fn isolate(&mut self, range: Range<usize>) -> Result<u64, OutputError> {
        if range.len() == 1 {
            return Ok(1);
        }
        let middle = range.start + range.len() / 2;
        let mut refused = 0;
        for half in [range.start..middle, middle..range.end] {
            match self.post(half.clone()) {
                Ok(Answer::Stored) => {}
                Ok(Answer::SampleRefused(_)) => refused += self.isolate(half)?,
                Err(e) if e.kind() == ErrorKind::Rejected => refused += half.len() as u64,
                Err(e) => return Err(e),
            }
        }
        Ok(refused)
    }
}

impl Output for RemoteWrite {
    fn write(&mut self, batch: &[Event]) -> Result<(), OutputError> {
        self.body.clear();
        self.ends.clear();
        self.unencodable = 0;
        for event in batch {
            if self.encoder.push(event, &mut self.body) {
                self.ends.push(self.body.len());
            } else {
                self.unencodable += 1;
                self.left_out.fail(&format!(
                    "leaving out {} on {}: it has no metric",
                    quote(&event.service),
                    quote(&event.host)
                ));
            }
        }
        let n = self.ends.len();
        if n == 0 {
            return Ok(());
        }
        match self.post(0..n)? {
            Answer::Stored => Ok(()),
            Answer::SampleRefused(first) => {
                let refused = self.isolate(0..n)?;
                Err(OutputError::SamplesRefused {
                    answer: first,
                    refused,
                    sent: n,
                })
            }
        }
    }

    fn take_unencodable(&mut self) -> u64 {
        std::mem::take(&mut self.unencodable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outputs::read_spec;

    fn spec(text: &str) -> Result<RemoteWriteSpec, Vec<String>> {
        read_spec(text)
    }

    #[test]
    fn defaults_and_every_key() {
        let s = spec(r#"{"url": "http://127.0.0.1:9090/api/v1/write"}"#).unwrap();
        assert_eq!(s.auth, Auth::None);
        assert!(s.labels.is_empty());
        assert_eq!(
            (s.connect_timeout, s.timeout, s.liveness),
            (
                Duration::from_secs(5),
                Duration::from_secs(10),
                Liveness::DEFAULT
            )
        );
        let s = spec(
            r#"{"url": "https://vm:8428/api/v1/write?extra_label=a=b", "username": "u", "password": "p", "labels": {"site": "lab"}, "connect_timeout": "1s", "timeout": "2s", "tcp_user_timeout": "9s"}"#,
        );
        if cfg!(feature = "tls") {
            let s = s.unwrap();
            assert_eq!(s.auth, Auth::Basic(Secret::new("u:p".into())));
            assert_eq!(s.labels["site"], "lab");
            assert_eq!(s.timeout, Duration::from_secs(2));
            assert_eq!(s.liveness.user_timeout, Duration::from_secs(9));
        } else {
            assert!(s.unwrap_err()[0].contains("without the \"tls\" feature"));
        }
    }

    #[test]
    fn wrong_settings_are_refused_with_their_key() {
        for (text, expected) in [
            (r#"{}"#, "missing required key \"url\""),
            (
                r#"{"url": "ftp://h"}"#,
                "url: expected an http:// or https:// URL",
            ),
            (
                r#"{"url": "http://u:p@h/w"}"#,
                "put credentials in \"username\"",
            ),
            (r#"{"url": "http://h/w", "username": "u"}"#, "needs both"),
            (r#"{"url": "http://h/w", "password": "p"}"#, "needs both"),
            (
                r#"{"url": "http://h/w", "password": "p", "token": "t"}"#,
                "not both",
            ),
            (
                r#"{"url": "http://h/w", "username": "u", "password": "p", "token": "t"}"#,
                "not both",
            ),
            (
                r#"{"url": "http://h/w", "username": "u:v", "password": "p"}"#,
                "must not hold ':'",
            ),
            (
                r#"{"url": "http://h/w", "token": "a\nb"}"#,
                "token: expected printable ASCII",
            ),
            (
                r#"{"url": "http://h/w", "labels": {"__x": "1"}}"#,
                "labels: label name \"__x\"",
            ),
            (
                r#"{"url": "http://h/w", "labels": {"1x": "1"}}"#,
                "labels: label name \"1x\"",
            ),
            (
                r#"{"url": "http://h/w", "labels": {"x": ""}}"#,
                "labels: label x: expected a non-empty value",
            ),
            (r#"{"url": "http://h/w", "labels": {"x": 1}}"#, "labels"),
        ] {
            let e = spec(text).unwrap_err();
            assert!(e.iter().any(|e| e.contains(expected)), "{text}: {e:?}");
        }
    }

    #[test]
    fn secrets_never_show() {
        for (text, secret) in [
            (
                r#"{"url": "http://h/w", "username": "u", "password": "pa55word"}"#,
                "pa55word",
            ),
            (
                r#"{"url": "http://h/w", "token": "t0ken-s3cret"}"#,
                "t0ken-s3cret",
            ),
        ] {
            let s = spec(text).unwrap();
            for shown in [format!("{s:?}"), s.describe(), s.targets().join(" ")] {
                assert!(!shown.contains(secret), "{shown}");
            }
        }
        let e = spec(r#"{"url": "http://h/w", "token": "s3cr3t\n"}"#).unwrap_err();
        assert!(!e.join(" ").contains("s3cr3t"), "{e:?}");
    }
}
