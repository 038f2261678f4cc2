//! The `influxdb` output: batches of line protocol POSTed to InfluxDB 1.x (`/write?db=`) or 2.x
//! (`/api/v2/write?org=&bucket=`), or to anything that speaks them, such as VictoriaMetrics.
//!
//! A 2xx answer delivers the batch. A 4xx says the batch itself is bad (a field type conflict, a
//! malformed line): it is logged, counted as rejected and dropped, since sending it again would
//! fail again; when the answer is InfluxDB's partial write, only the lines it refused are (see
//! [`answer`]). Only 401, 403, 404 (no such database), 408 and 429 are not the batch's fault and
//! count, with 5xx answers and timeouts, as failed deliveries.

pub mod answer;
pub mod line;

use std::time::Duration;

use line::{Format, Precision};
use ureq::Agent;

use super::{Output, OutputError, OutputSpec, OutputType, Settings};
use crate::complain::Complaint;
use crate::config::AgentConfig;
use crate::config::reader::{Field, Problems, Table};
use crate::config::secret::Secret;
use crate::event::Event;
use crate::http_client::{HttpTimeouts, describe};
use crate::liveness::Liveness;
use crate::pattern::Pattern;
use crate::quote::quote;

/// The registry entry.
pub const TYPE: OutputType = OutputType {
    name: "influxdb",
    description: "line protocol over HTTP to InfluxDB 1.x or 2.x (or VictoriaMetrics)",
    read: crate::outputs::read::<InfluxSpec>,
};

/// Which write API is spoken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Api {
    /// InfluxDB 1.x `/write?db=`.
    V1 {
        /// The database.
        db: String,
    },
    /// InfluxDB 2.x `/api/v2/write?org=&bucket=`.
    V2 {
        /// The organisation.
        org: String,
        /// The bucket.
        bucket: String,
    },
}

/// Settings of the `influxdb` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfluxSpec {
    /// The servers' base URLs, such as `http://127.0.0.1:8086`: `url` for one, or `targets`.
    pub urls: Vec<String>,
    /// Version 1 or 2 of the write API.
    pub api: Api,
    /// The unit of timestamps; default milliseconds.
    pub precision: Precision,
    /// Whether state and description are written as string fields; default true.
    pub string_fields: bool,
    /// Services whose metric is written as an integer; default none: every metric is a float.
    pub integers: Vec<Pattern>,
    /// Sent as `Authorization: Token <token>` when set (for InfluxDB 1.8+: `user:password`).
    pub token: Option<Secret>,
    /// Time to open a connection; default 5 s.
    pub connect_timeout: Duration,
    /// Time for a whole write, connecting included; default 10 s.
    pub timeout: Duration,
    /// How soon its connections notice a dead path.
    pub liveness: Liveness,
}

impl Settings for InfluxSpec {
    fn read(
        t: &mut Table<'_>,
        _agent: &AgentConfig,
        problems: &mut Problems,
    ) -> Option<InfluxSpec> {
        let urls = read_urls(t, problems);
        let version = t.number_in("version", 1, 1, 2, problems);
        let db = t.get::<String>("db", problems);
        let org = t.get::<String>("org", problems);
        let bucket = t.get::<String>("bucket", problems);
        let api = match (version, db, org, bucket) {
            (1, Some(db), None, None) => Some(Api::V1 { db }),
            (2, None, Some(org), Some(bucket)) => Some(Api::V2 { org, bucket }),
            _ => {
                let message = if version == 1 {
                    "version 1 writes to a database: set \"db\" (and not \"org\" or \"bucket\")"
                } else {
                    "version 2 writes to a bucket: set \"org\" and \"bucket\" (and not \"db\")"
                };
                problems.at(t.as_field(), message);
                None
            }
        };
        let precision = match t.choice("precision", &["s", "ms", "us", "ns"], "ms", problems) {
            "s" => Precision::Seconds,
            "us" => Precision::Micros,
            "ns" => Precision::Nanos,
            _ => Precision::Millis,
        };
        let string_fields = t.get_or("string_fields", true, problems);
        let integers = t
            .get_or::<Vec<String>>("integers", Vec::new(), problems)
            .iter()
            .map(|p| Pattern::new(p))
            .collect();
        let token = t.get::<String>("token", problems).map(Secret::new);
        if let (Some(token), Some(field)) = (&token, t.field("token")) {
            if ureq::http::HeaderValue::from_str(token.expose()).is_err() {
                problems.at(
                    &field,
                    "expected printable ASCII without line breaks or NUL (it is sent in an HTTP header)",
                );
            }
        }
        let min = Duration::from_millis(1);
        let connect_timeout =
            t.duration_at_least("connect_timeout", Duration::from_secs(5), min, problems);
        let timeout = t.duration_at_least("timeout", Duration::from_secs(10), min, problems);
        let liveness = Liveness::read(t, problems);
        Some(InfluxSpec {
            urls: urls?,
            api: api?,
            precision,
            string_fields,
            integers,
            token,
            connect_timeout,
            timeout,
            liveness,
        })
    }
}

/// Reads `url` (one server) or `targets` (a list of base URLs, for the delivery strategies).
fn read_urls(t: &mut Table<'_>, problems: &mut Problems) -> Option<Vec<String>> {
    match (t.field("url"), t.field("targets")) {
        (Some(_), Some(field)) => {
            problems.at(
                &field,
                "set either \"url\" for one server or \"targets\" for several, not both",
            );
            None
        }
        (Some(field), None) => {
            let url = t.require::<String>("url", problems)?;
            base_url(&field, &url, problems).map(|u| vec![u])
        }
        (None, Some(field)) => {
            field.non_empty_list("base URL", problems, |item, problems| match item.as_str() {
                Some(url) => base_url(item, url, problems),
                None => {
                    problems.expected(item, "a base URL such as \"http://127.0.0.1:8086\"");
                    None
                }
            })
        }
        (None, None) => {
            problems.at(
                t.as_field(),
                "missing required key \"url\" (or \"targets\", a list of base URLs)",
            );
            None
        }
    }
}

/// Checks one base URL: http or https, no user, query or fragment; returned without a final `/`.
fn base_url(field: &Field<'_>, url: &str, problems: &mut Problems) -> Option<String> {
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    else {
        problems.expected(field, "an http:// or https:// URL");
        return None;
    };
    if url.starts_with("https://") && !cfg!(feature = "tls") {
        problems.at(
            field,
            "this pipit was built without the \"tls\" feature: use an http:// URL",
        );
    }
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') || url.contains(['?', '#']) {
        problems.at(field, "expected a base URL with no user, query or fragment, such as \"http://127.0.0.1:8086\"; put credentials in \"token\"");
        return None;
    }
    Some(url.trim_end_matches('/').to_owned())
}

impl InfluxSpec {
    /// The URL batches for target `index` are POSTed to.
    pub fn write_url(&self, index: usize) -> Result<String, OutputError> {
        let base = self.urls.get(index).ok_or_else(|| {
            OutputError::BadTarget(format!("no target number {index} in {:?}", self.urls))
        })?;
        Ok(self.write_url_of(base))
    }

    fn write_url_of(&self, base: &str) -> String {
        match &self.api {
            Api::V1 { db } => {
                let precision = match self.precision {
                    Precision::Seconds => "s",
                    Precision::Millis => "ms",
                    Precision::Micros => "u",
                    Precision::Nanos => "n",
                };
                format!(
                    "{base}/write?db={}&precision={precision}",
                    percent_encode(db)
                )
            }
            Api::V2 { org, bucket } => {
                let precision = match self.precision {
                    Precision::Seconds => "s",
                    Precision::Millis => "ms",
                    Precision::Micros => "us",
                    Precision::Nanos => "ns",
                };
                format!(
                    "{base}/api/v2/write?org={}&bucket={}&precision={precision}",
                    percent_encode(org),
                    percent_encode(bucket)
                )
            }
        }
    }
}

/// Percent-encodes all but RFC 3986's unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl OutputSpec for InfluxSpec {
    fn targets(&self) -> Vec<String> {
        self.urls.clone()
    }

    fn build_target(&self, index: usize, log_target: &str) -> Result<Box<dyn Output>, OutputError> {
        // ureq 3 has no timeouts by default and reads *_PROXY variables: both are set here.
        let config = Agent::config_builder()
            .timeout_connect(Some(self.connect_timeout))
            .timeout_global(Some(self.timeout))
            .proxy(None)
            .http_status_as_error(false)
            .build();
        let authorization = self.token.as_ref().map(|t| format!("Token {}", t.expose()));
        let secrets = self.token.iter().flat_map(|t| t.revealing());
        Ok(Box::new(Influx {
            agent: crate::http_client::agent_with(config, self.liveness),
            url: self.write_url(index)?,
            timeouts: HttpTimeouts {
                connect: self.connect_timeout,
                total: self.timeout,
            },
            authorization,
            secrets: secrets.map(str::to_owned).collect(),
            format: Format {
                precision: self.precision,
                string_fields: self.string_fields,
                integers: self.integers.clone(),
            },
            body: String::new(),
            unencodable: 0,
            left_out: Complaint::new(log_target),
        }))
    }

    fn describe(&self) -> String {
        let urls = self.urls.join(", ");
        match &self.api {
            Api::V1 { db } => format!("influxdb line protocol to {urls} database {db:?}"),
            Api::V2 { org, bucket } => {
                format!("influxdb line protocol to {urls} org {org:?} bucket {bucket:?}")
            }
        }
    }
}

struct Influx {
    agent: Agent,
    url: String,
    /// For the words of a timeout.
    timeouts: HttpTimeouts,
    authorization: Option<String>,
    /// What must never be quoted from a server's answer.
    secrets: Vec<String>,
    format: Format,
    body: String,
    /// Events of the last write that no line can carry.
    unencodable: u64,
    /// Logs events left out, once while it goes on.
    left_out: Complaint,
}

impl Output for Influx {
    fn write(&mut self, batch: &[Event]) -> Result<(), OutputError> {
        self.body.clear();
        self.unencodable = 0;
        for event in batch {
            if let Err(why) = line::encode(event, &self.format, &mut self.body) {
                self.unencodable += 1;
                self.left_out.fail(&format!(
                    "leaving out {} on {}: {why}",
                    quote(&event.service),
                    quote(&event.host)
                ));
            }
        }
        if self.body.is_empty() {
            return Ok(());
        }
        let mut request = self
            .agent
            .post(&self.url)
            .header("Content-Type", "text/plain; charset=utf-8");
        if let Some(authorization) = &self.authorization {
            request = request.header("Authorization", authorization);
        }
        let mut response =
            request
                .send(self.body.as_str())
                .map_err(|source| OutputError::Http {
                    url: self.url.clone(),
                    why: describe(&source, self.timeouts),
                    source: Box::new(source),
                })?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let answer = answer::read(response.body_mut().as_reader());
        let reason = crate::http_client::quote_answer(&answer.head, &self.secrets);
        Err(OutputError::Status {
            url: self.url.clone(),
            status,
            reason,
            refused: answer.refused,
        })
    }

    fn take_unencodable(&mut self) -> u64 {
        std::mem::take(&mut self.unencodable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outputs::read_spec;

    fn spec(text: &str) -> Result<InfluxSpec, Vec<String>> {
        read_spec(text)
    }

    #[test]
    fn v1_and_v2_urls() {
        let s = spec(r#"{"url": "http://127.0.0.1:8086/", "db": "my db"}"#).unwrap();
        assert_eq!(
            s.write_url(0).unwrap(),
            "http://127.0.0.1:8086/write?db=my%20db&precision=ms"
        );
        let s = spec(r#"{"url": "http://vm:8428", "version": 2, "org": "o&", "bucket": "b", "precision": "us"}"#).unwrap();
        assert_eq!(
            s.write_url(0).unwrap(),
            "http://vm:8428/api/v2/write?org=o%26&bucket=b&precision=us"
        );
        assert_eq!(
            (s.connect_timeout, s.timeout),
            (Duration::from_secs(5), Duration::from_secs(10))
        );
    }

    #[test]
    fn several_servers_are_targets() {
        let s = spec(r#"{"targets": ["http://a:8086/", "http://b:8086"], "db": "d"}"#).unwrap();
        assert_eq!(s.targets(), vec!["http://a:8086", "http://b:8086"]);
        assert_eq!(
            s.write_url(1).unwrap(),
            "http://b:8086/write?db=d&precision=ms"
        );
        assert!(s.write_url(2).is_err());
        let e = spec(r#"{"url": "http://a:8086", "targets": ["http://b:8086"], "db": "d"}"#)
            .unwrap_err();
        assert!(
            e[0].contains("either \"url\" for one server or \"targets\""),
            "{e:?}"
        );
        let e = spec(r#"{"targets": [], "db": "d"}"#).unwrap_err();
        assert!(e[0].contains("expected at least one base URL"), "{e:?}");
        let e = spec(r#"{"targets": ["http://a:8086", 7, "ftp://c"], "db": "d"}"#).unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].contains("targets[1]: expected a base URL"), "{e:?}");
        assert!(e[1].contains("targets[2]: expected an http://"), "{e:?}");
        let e = spec(r#"{"db": "d"}"#).unwrap_err();
        assert!(e[0].contains("missing required key \"url\""), "{e:?}");
    }

    #[test]
    fn wrong_settings_are_refused() {
        let e = spec(r#"{"url": "http://h:8086", "org": "o", "bucket": "b"}"#).unwrap_err();
        assert!(e[0].contains("version 1 writes to a database"), "{e:?}");
        let e = spec(r#"{"url": "http://h:8086", "version": 2, "db": "d"}"#).unwrap_err();
        assert!(e[0].contains("version 2 writes to a bucket"), "{e:?}");
        let e = spec(r#"{"url": "ftp://h", "db": "d"}"#).unwrap_err();
        assert!(
            e[0].contains("url: expected an http:// or https:// URL"),
            "{e:?}"
        );
        let e = spec(r#"{"url": "http://u:p@h:8086", "db": "d"}"#).unwrap_err();
        assert!(e[0].contains("put credentials in \"token\""), "{e:?}");
        let e = spec(r#"{"db": "d", "precision": "m"}"#).unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
    }

    #[test]
    fn the_token_never_shows() {
        let token = "s3cr3t-t0ken";
        let s = spec(&format!(r#"{{"url": "http://h:8086", "version": 2, "org": "o", "bucket": "b", "token": "{token}"}}"#)).unwrap();
        for shown in [
            format!("{s:?}"),
            format!("{s:#?}"),
            s.describe(),
            s.write_url(0).unwrap(),
        ] {
            assert!(!shown.contains(token), "{shown}");
        }
        let other = spec(r#"{"url": "http://h:8086", "version": 2, "org": "o", "bucket": "b", "token": "other"}"#).unwrap();
        assert_ne!(
            format!("{s:?}"),
            format!("{other:?}"),
            "a changed token must change the fingerprint"
        );
        assert_eq!(format!("{:?}", s.token), format!("{:?}", s.clone().token));
    }
}
