//! The one place HTTP clients are built, so every HTTP component behaves alike: explicit connect
//! and total timeouts (ureq has none by default), no proxy taken from `*_PROXY` variables, and
//! status codes returned as values rather than errors. Host names are resolved by
//! [`crate::dns`], within the connect timeout, and every connection notices a dead path as its
//! [`Liveness`] says (TCP_USER_TIMEOUT and keepalive).

use std::io::{self, Read};
use std::time::Duration;

use ureq::http::Uri;
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{Connector, NextTimeout};

use crate::config::reader::{Problems, Table};
use crate::liveness::Liveness;

/// How long a request may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpTimeouts {
    /// Resolving and connecting, including TLS; `connect_timeout` in config.
    pub connect: Duration,
    /// The whole request, redirects and response body included; `request_timeout` in config.
    pub total: Duration,
}

impl HttpTimeouts {
    /// The defaults: 5 s to connect, 10 s in all.
    pub const DEFAULT: HttpTimeouts = HttpTimeouts {
        connect: Duration::from_secs(5),
        total: Duration::from_secs(10),
    };

    /// Reads `connect_timeout` and `request_timeout` from a component's section.
    pub fn read(t: &mut Table<'_>, problems: &mut Problems) -> HttpTimeouts {
        let min = Duration::from_millis(1);
        HttpTimeouts {
            connect: t.duration_at_least(
                "connect_timeout",
                HttpTimeouts::DEFAULT.connect,
                min,
                problems,
            ),
            total: t.duration_at_least(
                "request_timeout",
                HttpTimeouts::DEFAULT.total,
                min,
                problems,
            ),
        }
    }
}

/// True for the URLs the HTTP components take: `http://` and `https://`.
pub fn is_http(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

/// `url` as it may be shown in events and logs: its user part (`http://user:secret@host/`), a
/// secret, replaced by `***`.
pub fn shown(url: &str) -> String {
    crate::config::secret::hide_credentials(url)
}

/// The most characters of a server's answer quoted in a log line or an error.
const MAX_QUOTED: usize = 200;

/// A server's answer as it may be quoted in a log line or an error: every one of `secrets` in it
/// replaced by `***` (a server or proxy may echo the request's headers), control characters as
/// spaces, white space trimmed, and cut to 200 characters with `…`.
pub fn quote_answer(answer: &str, secrets: &[String]) -> String {
    let mut text = answer.to_owned();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        text = text.replace(secret.as_str(), "***");
    }
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let text = text.trim();
    match text.char_indices().nth(MAX_QUOTED) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// Why this build cannot fetch `url`, if it cannot: `https://` without the `tls` feature.
pub fn unsupported(url: &str) -> Option<&'static str> {
    (url.starts_with("https://") && !cfg!(feature = "tls"))
        .then_some("this pipit was built without TLS (the \"tls\" feature): use http://")
}

/// An HTTP agent with `timeouts` that follows up to 10 redirects when `follow_redirects` is set
/// and otherwise returns the redirect response itself.
pub fn agent(timeouts: HttpTimeouts, follow_redirects: bool) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .timeout_connect(Some(timeouts.connect))
        .timeout_global(Some(timeouts.total))
        .proxy(None)
        .http_status_as_error(false)
        .max_redirects(if follow_redirects { 10 } else { 0 })
        .max_redirects_will_error(false)
        .user_agent(concat!("pipit/", env!("CARGO_PKG_VERSION")))
        .build();
    agent_with(config, Liveness::DEFAULT)
}

/// An HTTP agent with `config` that resolves names with [`crate::dns`] and sets `liveness` on
/// every connection it opens; over TLS when the `tls` feature is built. No proxy: pipit's agents
/// are all built with `proxy(None)`. Every agent of pipit is built here.
pub fn agent_with(config: ureq::config::Config, liveness: Liveness) -> ureq::Agent {
    let connector = ().chain(crate::http_tcp::LiveTcp(liveness));
    #[cfg(feature = "tls")]
    let connector = connector.chain(ureq::unversioned::transport::RustlsConnector::default());
    ureq::Agent::with_parts(config, connector, Lookup)
}

/// ureq's resolver replaced by [`crate::dns`] (ureq's own calls getaddrinfo(3)). The trait is in
/// ureq's `unversioned` module, outside its semver promise; Cargo.toml pins the exact version.
#[derive(Debug)]
struct Lookup;

impl Resolver for Lookup {
    fn resolve(
        &self,
        uri: &Uri,
        _config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let host = uri.host().ok_or(ureq::Error::HostNotFound)?;
        let port = match (uri.port_u16(), uri.scheme_str()) {
            (Some(port), _) => port,
            (None, Some("https")) => 443,
            (None, _) => 80,
        };
        let found = crate::dns::lookup(host, port, *timeout.after).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ureq::Error::HostNotFound,
            io::ErrorKind::TimedOut => ureq::Error::Timeout(timeout.reason),
            _ => ureq::Error::Io(e),
        })?;
        let mut addrs = self.empty();
        for addr in found {
            if addrs.try_push(addr).is_err() {
                break;
            }
        }
        if addrs.is_empty() {
            return Err(ureq::Error::HostNotFound);
        }
        Ok(addrs)
    }
}

/// A failed request in a few words, such as `timed out after 2s (receiving the response)`.
pub fn describe(e: &ureq::Error, timeouts: HttpTimeouts) -> String {
    use ureq::Timeout;
    match e {
        ureq::Error::Timeout(which) => {
            let (limit, phase) = match which {
                Timeout::Connect | Timeout::Resolve => (timeouts.connect, "connecting"),
                Timeout::SendRequest | Timeout::SendBody => (timeouts.total, "sending the request"),
                Timeout::RecvResponse => (timeouts.total, "waiting for the response"),
                Timeout::RecvBody => (timeouts.total, "reading the response body"),
                _ => (timeouts.total, "in all"),
            };
            format!(
                "timed out after {} ({phase})",
                crate::config::duration::format(limit)
            )
        }
        ureq::Error::Io(io) => io_reason(io),
        ureq::Error::BodyExceedsLimit(limit) => {
            format!("the response body is over {limit} bytes: cut off there")
        }
        ureq::Error::HostNotFound => "host not found (the name does not resolve)".to_owned(),
        other => crate::config::secret::hide_credentials(&other.to_string()),
    }
}

fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        io::ErrorKind::ConnectionReset => "connection reset".to_owned(),
        // ETIMEDOUT on an open connection: TCP_USER_TIMEOUT or keepalive gave the path up.
        io::ErrorKind::TimedOut => {
            "connection dead (the path gave no acknowledgement within tcp_user_timeout, or no answer to keepalive)".to_owned()
        }
        _ => e.to_string(),
    }
}

/// The most bytes of a response body read: past it the body is cut off and the request fails, so
/// an endpoint that streams without end costs neither unbounded time nor traffic.
pub const MAX_BODY: u64 = 16 << 20;

/// What was read of a response body: its size, a hash of all of it, and its first bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodySummary {
    /// Bytes read.
    pub size: u64,
    /// A hash of the whole body, to tell whether it changed.
    pub hash: u64,
    /// The first `keep` bytes.
    pub head: Vec<u8>,
}

/// Reads `body` to the end, keeping only its first `keep` bytes in memory; a body over
/// [`MAX_BODY`] bytes is an error ([`ureq::Error::BodyExceedsLimit`]).
pub fn summarize(body: &mut ureq::Body, keep: usize) -> Result<BodySummary, ureq::Error> {
    use std::hash::Hasher;
    let mut reader = body.with_config().limit(MAX_BODY).reader();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let mut summary = BodySummary {
        size: 0,
        hash: 0,
        head: Vec::new(),
    };
    let mut chunk = [0u8; 4096];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ureq::Error::from(e)),
        };
        hasher.write(&chunk[..n]);
        summary.size += n as u64;
        let room = keep.saturating_sub(summary.head.len());
        summary.head.extend_from_slice(&chunk[..n.min(room)]);
    }
    summary.hash = hasher.finish();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_urls_are_taken() {
        assert!(is_http("http://x/") && is_http("https://x/"));
        assert!(!is_http("ftp://x/") && !is_http("/var/log"));
        assert_eq!(unsupported("http://x/"), None);
        assert_eq!(unsupported("https://x/").is_some(), !cfg!(feature = "tls"));
    }

    #[test]
    fn passwords_in_urls_are_not_shown() {
        assert_eq!(shown("http://u:pw@h:80/p?q=a@b"), "http://***@h:80/p?q=a@b");
        assert_eq!(shown("https://token@h/"), "https://***@h/");
        assert_eq!(shown("http://h/a@b"), "http://h/a@b");
        assert_eq!(shown("/etc/config"), "/etc/config");
    }

    #[test]
    fn answers_are_quoted_short_and_without_secrets() {
        let secrets = vec!["s3cret".to_owned(), String::new()];
        assert_eq!(
            quote_answer(" echo: Authorization: Token s3cret\r\nok\n", &secrets),
            "echo: Authorization: Token ***  ok"
        );
        let long = format!("{}s3cret{}", "é".repeat(198), "x".repeat(100));
        let quoted = quote_answer(&long, &secrets);
        assert_eq!(quoted, format!("{}**…", "é".repeat(198)));
        assert!(!quoted.contains("s3"));
    }

    #[test]
    fn timeouts_name_the_phase_and_the_limit() {
        let t = HttpTimeouts {
            connect: Duration::from_millis(500),
            total: Duration::from_secs(2),
        };
        assert_eq!(
            describe(&ureq::Error::Timeout(ureq::Timeout::Connect), t),
            "timed out after 500ms (connecting)"
        );
        assert_eq!(
            describe(&ureq::Error::Timeout(ureq::Timeout::Global), t),
            "timed out after 2s (in all)"
        );
        let refused = ureq::Error::Io(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert_eq!(describe(&refused, t), "connection refused");
    }
}
