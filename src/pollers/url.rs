//! The URL poller: fetches an HTTP(S) resource on each tick and says whether it appeared,
//! changed or went away.
//!
//! Requests are conditional (`If-None-Match`, `If-Modified-Since`), so an unchanged resource
//! costs a `304` and no body. A change is judged by the ETag when the server sends one, else by
//! `Last-Modified`, else by a hash of the body; the body itself is never kept.

use ureq::http::{HeaderMap, Request, header};

use super::snapshot::ChangeKind;
use crate::http_client::{self, HttpTimeouts};

/// One change to the resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlChange {
    /// What happened.
    pub kind: ChangeKind,
    /// The status of the response that showed it.
    pub status: u16,
    /// The body size, for a resource that exists.
    pub size: Option<u64>,
    /// The `Last-Modified` header, as sent.
    pub last_modified: Option<String>,
}

/// What identifies the version last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Version {
    etag: Option<String>,
    last_modified: Option<String>,
    hash: u64,
}

impl Version {
    /// True when `newer` is another version: compared by ETag, else Last-Modified, else hash.
    fn differs(&self, newer: &Version) -> bool {
        match (
            &self.etag,
            &newer.etag,
            &self.last_modified,
            &newer.last_modified,
        ) {
            (Some(a), Some(b), _, _) => a != b,
            (_, _, Some(a), Some(b)) => a != b,
            _ => self.hash != newer.hash,
        }
    }
}

/// Polls one URL.
pub struct UrlPoller {
    agent: ureq::Agent,
    url: String,
    timeouts: HttpTimeouts,
    seen: Option<Version>,
}

impl std::fmt::Debug for UrlPoller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UrlPoller")
            .field("url", &self.url)
            .field("seen", &self.seen)
            .finish_non_exhaustive()
    }
}

impl UrlPoller {
    /// A poller for `url` (redirects are followed).
    pub fn new(url: &str, timeouts: HttpTimeouts) -> UrlPoller {
        UrlPoller {
            agent: http_client::agent(timeouts, true),
            url: url.to_owned(),
            timeouts,
            seen: None,
        }
    }

    /// Fetches the resource once: `Some` change, `None` when nothing changed, or why the request
    /// failed (a status other than 2xx, 304, 404 and 410 is a failure).
    pub fn poll(&mut self) -> Result<Option<UrlChange>, String> {
        let mut request = Request::get(&self.url);
        if let Some(seen) = &self.seen {
            if let Some(etag) = &seen.etag {
                request = request.header(header::IF_NONE_MATCH, etag);
            }
            if let Some(lm) = &seen.last_modified {
                request = request.header(header::IF_MODIFIED_SINCE, lm);
            }
        }
        let request = request.body(()).map_err(|e| format!("bad request: {e}"))?;
        let mut response = self
            .agent
            .run(request)
            .map_err(|e| http_client::describe(&e, self.timeouts))?;
        let status = response.status().as_u16();
        match status {
            304 => Ok(None),
            404 | 410 => Ok(self.seen.take().map(|_| UrlChange {
                kind: ChangeKind::Deleted,
                status,
                size: None,
                last_modified: None,
            })),
            200..=299 => {
                let etag = text(response.headers(), header::ETAG);
                let last_modified = text(response.headers(), header::LAST_MODIFIED);
                let body = http_client::summarize(response.body_mut(), 0)
                    .map_err(|e| http_client::describe(&e, self.timeouts))?;
                let version = Version {
                    etag,
                    last_modified: last_modified.clone(),
                    hash: body.hash,
                };
                let kind = match &self.seen {
                    None => Some(ChangeKind::Created),
                    Some(old) if old.differs(&version) => Some(ChangeKind::Modified),
                    Some(_) => None,
                };
                self.seen = Some(version);
                Ok(kind.map(|kind| UrlChange {
                    kind,
                    status,
                    size: Some(body.size),
                    last_modified,
                }))
            }
            _ => Err(format!("unexpected status {status}")),
        }
    }
}

fn text(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(etag: Option<&str>, lm: Option<&str>, hash: u64) -> Version {
        Version {
            etag: etag.map(str::to_owned),
            last_modified: lm.map(str::to_owned),
            hash,
        }
    }

    #[test]
    fn etag_then_last_modified_then_hash_decide() {
        let a = version(Some("\"1\""), Some("Mon"), 1);
        assert!(!a.differs(&version(Some("\"1\""), Some("Tue"), 2)));
        assert!(a.differs(&version(Some("\"2\""), Some("Mon"), 1)));
        let b = version(None, Some("Mon"), 1);
        assert!(!b.differs(&version(None, Some("Mon"), 2)));
        assert!(b.differs(&version(None, Some("Tue"), 1)));
        let c = version(None, None, 1);
        assert!(c.differs(&version(None, None, 2)));
        assert!(!c.differs(&version(None, None, 1)));
    }
}
