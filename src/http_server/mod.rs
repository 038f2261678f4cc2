//! The opt-in local HTTP endpoint: `/metrics` in the Prometheus text format, answered from the
//! catalogue's last values (nothing is collected at scrape time).
//!
//! Off unless the config's `http_server` section enables it: pipit has no network listener the
//! config does not ask for. One thread serves every connection with blocking I/O under poll(2):
//! a bounded number of connections, a size and header limit on requests, a deadline for the whole
//! request head (a slowloris peer is cut off) and for the whole answer. Clients outside
//! `allowed_networks` and, with `basic_auth`, requests without the right credentials are refused;
//! every refusal is counted (`pipit_http_requests_total{outcome}` on `/metrics`) and logged once
//! while it repeats.
//!
//! With the `status_page` feature it also serves a status page at `/` ([`page`]).
//!
//! The section is read in every build; the server itself needs the `http_server` feature.

#[cfg(feature = "http_server")]
pub mod exposition;
#[cfg(feature = "status_page")]
pub mod history;
pub mod network;
#[cfg(feature = "status_page")]
pub mod page;
#[cfg(feature = "http_server")]
pub mod request;
#[cfg(feature = "http_server")]
mod server;
#[cfg(feature = "http_server")]
mod stream;
#[cfg(all(feature = "http_server", feature = "tls"))]
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::reader::{Problems, Table};
use crate::config::secret::Secret;
use crate::pattern::Pattern;
pub use network::Network;
#[cfg(feature = "http_server")]
pub use server::{HttpServerError, Server};

/// Where the status page gets the agent's status: the `status` answer line of the control
/// protocol (as `pipit ctl status --json` prints it), or `None` when the agent did not give it in
/// time.
pub type StatusSource = Box<dyn Fn() -> Option<String> + Send>;

/// The metrics the status page charts unless `http_server.charts` says otherwise.
pub const DEFAULT_CHARTS: [&str; 5] = [
    "load.1",
    "memory.used",
    "interface.*.rx_bytes",
    "interface.*.tx_bytes",
    "pipit.delivered.*",
];

/// The `http_server` section.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpServerConfig {
    /// Whether the endpoint listens; default false.
    pub enabled: bool,
    /// The addresses to listen on; default `127.0.0.1:9101`.
    pub binds: Vec<SocketAddr>,
    /// The client networks served; default loopback only (`127.0.0.0/8`, `::1`).
    pub allowed_networks: Vec<Network>,
    /// `user:password` that requests must present with HTTP basic auth; default none.
    pub basic_auth: Option<Secret>,
    /// Connections open at once; one more is answered 503 and closed. Default 8.
    pub max_connections: usize,
    /// The largest request head, in bytes; default 8192.
    pub max_request_bytes: usize,
    /// The most header lines in a request; default 32.
    pub max_headers: usize,
    /// How long a client may take to send its whole request head; default 5 s.
    pub request_timeout: Duration,
    /// How long the whole answer may take to send; default 10 s.
    pub write_timeout: Duration,
    /// The metrics the status page charts (glob patterns over service names, and
    /// `pipit.delivered.<output>` for each output's deliveries per second); default
    /// [`DEFAULT_CHARTS`].
    pub charts: Vec<Pattern>,
    /// How often the charted metrics are sampled; the page shows the last 120 samples. Default
    /// 30 s (an hour).
    pub chart_step: Duration,
    /// The certificate and key of HTTPS (the `tls` feature); default none: plain HTTP.
    pub tls: Option<TlsFiles>,
}

/// The PEM files of the endpoint's HTTPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// `tls_cert`: the server's certificate, followed by the intermediate certificates that
    /// clients need to reach their trusted root.
    pub cert: PathBuf,
    /// `tls_key`: the certificate's private key.
    pub key: PathBuf,
}

/// The defaults of the `http_server` section, in one place.
impl Default for HttpServerConfig {
    fn default() -> HttpServerConfig {
        HttpServerConfig {
            enabled: false,
            binds: vec![SocketAddr::from(([127, 0, 0, 1], 9101))],
            allowed_networks: ["127.0.0.0/8", "::1/128"]
                .iter()
                .filter_map(|n| n.parse().ok())
                .collect(),
            basic_auth: None,
            max_connections: 8,
            max_request_bytes: 8192,
            max_headers: 32,
            request_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            charts: DEFAULT_CHARTS.iter().map(|p| Pattern::new(p)).collect(),
            chart_step: Duration::from_secs(30),
            tls: None,
        }
    }
}

/// Reads the `http_server` section.
pub fn read_config(mut t: Table<'_>, problems: &mut Problems) -> HttpServerConfig {
    let d = HttpServerConfig::default();
    let enabled = t.get_or("enabled", d.enabled, problems);
    if enabled && !cfg!(feature = "http_server") {
        problems.at(
            t.as_field(),
            "this pipit is built without the http_server feature; use a build with it or remove the section",
        );
    }
    let binds = match t.field("binds") {
        None => d.binds,
        Some(field) => parse_list(
            &field,
            problems,
            "addresses with a port, such as \"127.0.0.1:9101\" or \"[::1]:9101\"",
            |s| s.parse::<SocketAddr>().map_err(|_| String::new()),
        )
        .unwrap_or(d.binds),
    };
    let allowed_networks = match t.field("allowed_networks") {
        None => d.allowed_networks,
        Some(field) => parse_list(
            &field,
            problems,
            "networks such as \"192.168.1.0/24\"",
            |s| s.parse::<Network>(),
        )
        .unwrap_or(d.allowed_networks),
    };
    let basic_auth = t.field("basic_auth").and_then(|field| {
        let mut auth = field.table(problems)?;
        let user: Option<String> = auth.require("username", problems);
        let password: Option<String> = auth.require("password", problems);
        auth.finish(problems);
        match (user, password) {
            (Some(user), _) if user.is_empty() || user.contains(':') => {
                problems.at(&field, "the username must be non-empty and hold no ':'");
                None
            }
            (Some(user), Some(password)) => Some(Secret::new(format!("{user}:{password}"))),
            _ => None,
        }
    });
    let number = |t: &mut Table<'_>, key, default: usize, min, max, problems: &mut Problems| {
        t.number_in(key, default as u64, min, max, problems) as usize
    };
    let max_connections = number(
        &mut t,
        "max_connections",
        d.max_connections,
        1,
        1024,
        problems,
    );
    let max_request_bytes = number(
        &mut t,
        "max_request_bytes",
        d.max_request_bytes,
        256,
        65536,
        problems,
    );
    let max_headers = number(&mut t, "max_headers", d.max_headers, 1, 256, problems);
    let min = Duration::from_millis(10);
    let request_timeout = t.duration_at_least("request_timeout", d.request_timeout, min, problems);
    let write_timeout = t.duration_at_least("write_timeout", d.write_timeout, min, problems);
    if !cfg!(feature = "status_page") {
        if let Some(field) = t.field("charts").or_else(|| t.field("chart_step")) {
            problems.at(
                &field,
                "this pipit is built without the status_page feature; use a build with it or remove the key",
            );
        }
    }
    let charts = t
        .get::<Vec<String>>("charts", problems)
        .map_or(d.charts, |list| {
            list.iter().map(|p| Pattern::new(p)).collect()
        });
    let chart_step =
        t.duration_at_least("chart_step", d.chart_step, Duration::from_secs(1), problems);
    let tls = read_tls(&mut t, problems);
    t.finish(problems);
    HttpServerConfig {
        enabled,
        binds,
        allowed_networks,
        basic_auth,
        max_connections,
        max_request_bytes,
        max_headers,
        request_timeout,
        write_timeout,
        charts,
        chart_step,
        tls,
    }
}

/// `tls_cert` and `tls_key`: both or neither, and only in a build with the `tls` feature.
fn read_tls(t: &mut Table<'_>, problems: &mut Problems) -> Option<TlsFiles> {
    let cert = t.get::<PathBuf>("tls_cert", problems);
    let key = t.get::<PathBuf>("tls_key", problems);
    if (cert.is_some() || key.is_some()) && !cfg!(feature = "tls") {
        problems.at(
            t.as_field(),
            "this pipit is built without the tls feature: remove tls_cert and tls_key, or use a build with it",
        );
    }
    match (cert, key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        (None, None) => None,
        _ => {
            problems.at(
                t.as_field(),
                "tls_cert and tls_key go together: set both (HTTPS) or neither (HTTP)",
            );
            None
        }
    }
}

/// A non-empty list of strings, each parsed by `parse`; records `expected` (with the parser's own
/// words when it has any) at the first bad item.
fn parse_list<T>(
    field: &crate::config::reader::Field<'_>,
    problems: &mut Problems,
    expected: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Option<Vec<T>> {
    let items = field.items(problems)?;
    if items.is_empty() {
        problems.expected(field, &format!("a non-empty list of {expected}"));
        return None;
    }
    let mut out = Vec::with_capacity(items.len());
    for item in &items {
        match item.as_str().map(&parse) {
            Some(Ok(v)) => out.push(v),
            Some(Err(why)) if !why.is_empty() => {
                problems.expected(item, &why);
                return None;
            }
            _ => {
                problems.expected(item, expected);
                return None;
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(section: &str) -> Result<HttpServerConfig, Vec<String>> {
        let text = format!(r#"{{"outputs": [{{"type": "stdout"}}], "http_server": {section}}}"#);
        crate::config_file::parse("t.json", &text)
            .map(|c| c.http_server)
            .map_err(|e| e.0.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn off_by_default_and_every_key_read() {
        assert_eq!(read("{}").unwrap(), HttpServerConfig::default());
        assert!(!HttpServerConfig::default().enabled);
        let c = read(
            r#"{"binds": ["0.0.0.0:9200", "[::1]:9201"], "allowed_networks": ["10.0.0.0/8"],
                "basic_auth": {"username": "prom", "password": "s3cret!"}, "max_connections": 2,
                "max_request_bytes": 1024, "max_headers": 4, "request_timeout": "1s",
                "write_timeout": "2s"}"#,
        )
        .unwrap();
        assert_eq!(c.binds.len(), 2);
        assert_eq!(c.allowed_networks, vec!["10.0.0.0/8".parse().unwrap()]);
        assert_eq!(c.basic_auth.unwrap().expose(), "prom:s3cret!");
        assert_eq!(
            (c.max_connections, c.max_request_bytes, c.max_headers),
            (2, 1024, 4)
        );
        assert_eq!(c.request_timeout, Duration::from_secs(1));
        assert_eq!(c.write_timeout, Duration::from_secs(2));
    }

    #[test]
    fn bad_values_are_refused_with_their_path_and_no_secret() {
        let errors = read(
            r#"{"binds": ["localhost:80"], "allowed_networks": ["10.0.0.0/40"],
                "basic_auth": {"username": "a:b", "password": "hunter22"}, "max_headers": 0,
                "port": 1}"#,
        )
        .unwrap_err()
        .join("\n");
        assert!(
            errors.contains("http_server.binds[0]: expected addresses with a port"),
            "{errors}"
        );
        assert!(
            errors
                .contains("http_server.allowed_networks[0]: expected a prefix length from 0 to 32"),
            "{errors}"
        );
        assert!(
            errors.contains("http_server.basic_auth: the username must be non-empty"),
            "{errors}"
        );
        assert!(
            errors.contains("http_server.max_headers: expected a whole number from 1 to 256"),
            "{errors}"
        );
        assert!(errors.contains("http_server.port: unknown key"), "{errors}");
        assert!(
            !errors.contains("hunter22") && !errors.contains("a:b"),
            "{errors}"
        );
        assert!(read(r#"{"binds": []}"#).is_err());
        assert!(
            read(r#"{"basic_auth": {"username": "u"}}"#).unwrap_err()[0]
                .contains("missing required key \"password\"")
        );
    }

    #[test]
    fn tls_files_go_together_and_page_keys_need_their_features() {
        let both = read(r#"{"tls_cert": "/etc/pipit/c.pem", "tls_key": "/etc/pipit/k.pem"}"#);
        if cfg!(feature = "tls") {
            assert_eq!(
                both.unwrap().tls.unwrap().key,
                PathBuf::from("/etc/pipit/k.pem")
            );
        } else {
            assert!(both.unwrap_err()[0].contains("built without the tls feature"));
        }
        let one = read(r#"{"tls_cert": "/c.pem"}"#).unwrap_err().join("\n");
        assert!(one.contains("tls_cert and tls_key go together"), "{one}");
        let charts = read(r#"{"charts": ["load.*"], "chart_step": "1m"}"#);
        if cfg!(feature = "status_page") {
            let c = charts.unwrap();
            assert_eq!(c.charts, vec![Pattern::new("load.*")]);
            assert_eq!(c.chart_step, Duration::from_secs(60));
        } else {
            let errors = charts.unwrap_err();
            assert!(
                errors[0].contains(
                    "http_server.charts: this pipit is built without the status_page feature"
                ),
                "{errors:?}"
            );
        }
    }
}
