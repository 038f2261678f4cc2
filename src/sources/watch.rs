//! `watch`: reports each change to a file, a directory tree or a URL as a `created`, `modified`
//! or `deleted` event.
//!
//! The `url` picks the poller: `file://` or a plain path watches the file system (inotify, with a
//! polling fallback), `http://` and `https://` poll the resource. Changes found between two ticks
//! are reported on the next tick; past `max_events` in one tick the rest are only counted, so a
//! storm of changes cannot flood the outputs.

use std::path::PathBuf;
use std::time::SystemTime;

use super::{Build, Emitter, MetricInfo, Settings, Source, SourceContext, SourceError, SourceType};
use crate::config::reader::{Problems, Table};
use crate::event::Kind;
use crate::pattern::{Pattern, Selector};
use crate::pollers::file::{FileWatcher, PollerChoice};
use crate::pollers::snapshot::{Change, ChangeKind, WatchSpec};

/// The registry entry.
pub const TYPE: SourceType = SourceType {
    name: "watch",
    description: "changes to files, directory trees (inotify or polling) and URLs",
    needs_two_samples: false,
    metrics: &[
        MetricInfo {
            name: "watch.<name>",
            unit: "",
            description: "one log event per change: attributes change (created, modified, deleted), path, size and time",
        },
        MetricInfo {
            name: "watch.<name>.changes",
            unit: "count",
            description: "changes found since the last tick",
        },
        MetricInfo {
            name: "watch.<name>.coalesced",
            unit: "count",
            description: "changes past max_events since the last tick, counted but not reported one by one",
        },
    ],
    read: super::read::<Watch>,
};

/// Settings of the `watch` source.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchSourceSpec {
    /// What is watched.
    pub target: Target,
    /// The most changes reported one by one per tick; default 100.
    pub max_events: usize,
}

/// What a `watch` source watches, from its `url`.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// A path on the file system.
    File {
        /// The path, its depth and its patterns.
        spec: WatchSpec,
        /// Which poller; default [`PollerChoice::Auto`].
        poller: PollerChoice,
    },
    /// An HTTP(S) resource.
    #[cfg(feature = "http")]
    Url {
        /// The URL as written.
        url: String,
        /// Request timeouts.
        timeouts: crate::http_client::HttpTimeouts,
    },
}

impl Settings for WatchSourceSpec {
    fn read(t: &mut Table<'_>, problems: &mut Problems) -> Option<WatchSourceSpec> {
        let max_events = t.number_in("max_events", 100, 1, 100_000, problems) as usize;
        let url_field = t.field("url");
        let recursive = t.get_or("recursive", false, problems);
        let poller = t.choice("poller", &PollerChoice::NAMES, "auto", problems);
        let include: Vec<String> = t.get_or("include", Vec::new(), problems);
        let exclude: Vec<String> = t.get_or("exclude", Vec::new(), problems);
        #[cfg(feature = "http")]
        let timeouts = crate::http_client::HttpTimeouts::read(t, problems);
        let Some(url_field) = url_field else {
            problems.at(t.as_field(), "missing required key \"url\"");
            return None;
        };
        let url = url_field.parse::<String>(problems)?;
        let target = if url.starts_with("http://") || url.starts_with("https://") {
            #[cfg(feature = "http")]
            {
                if let Some(problem) = crate::http_client::unsupported(&url) {
                    problems.at(&url_field, problem);
                }
                if recursive || !include.is_empty() || !exclude.is_empty() || poller != "auto" {
                    problems.at(
                        &url_field,
                        "recursive, poller, include and exclude apply to file watches only",
                    );
                }
                Target::Url { url, timeouts }
            }
            #[cfg(not(feature = "http"))]
            {
                problems.at(&url_field, "this pipit was built without HTTP support");
                return None;
            }
        } else {
            let path = PathBuf::from(url.strip_prefix("file://").unwrap_or(&url));
            if !path.is_absolute() {
                problems.expected(
                    &url_field,
                    "an absolute path, file:// URL or http(s):// URL",
                );
                return None;
            }
            Target::File {
                spec: WatchSpec {
                    path,
                    recursive,
                    filter: Selector {
                        include: include.iter().map(|p| Pattern::new(p)).collect(),
                        exclude: exclude.iter().map(|p| Pattern::new(p)).collect(),
                    },
                },
                poller: PollerChoice::from_name(poller).unwrap_or(PollerChoice::Auto),
            }
        };
        Some(WatchSourceSpec { target, max_events })
    }
}

impl Build for Watch {
    type Settings = WatchSourceSpec;

    fn build(spec: &WatchSourceSpec, ctx: &SourceContext) -> Watch {
        let poller = match &spec.target {
            Target::File { spec, poller } => Poller::File(FileWatcher::new(
                spec.clone(),
                *poller,
                &format!("src/{}", ctx.instance),
                &super::log_target(&ctx.instance),
            )),
            #[cfg(feature = "http")]
            Target::Url { url, timeouts } => Poller::Url {
                poller: crate::pollers::url::UrlPoller::new(url, *timeouts),
                url: crate::http_client::shown(url),
            },
        };
        Watch {
            service: format!("watch.{}", ctx.instance),
            max_events: spec.max_events,
            poller,
            changes: Vec::new(),
        }
    }
}

enum Poller {
    File(FileWatcher),
    #[cfg(feature = "http")]
    Url {
        poller: crate::pollers::url::UrlPoller,
        /// The URL as events show it, without a password.
        url: String,
    },
}

struct Watch {
    service: String,
    max_events: usize,
    poller: Poller,
    changes: Vec<Change>,
}

impl Source for Watch {
    fn collect(&mut self, emit: &mut Emitter<'_>) -> Result<(), SourceError> {
        match &mut self.poller {
            Poller::File(watcher) => {
                self.changes.clear();
                let result = watcher.poll(&mut self.changes);
                let shown = self.changes.len().min(self.max_events);
                for c in &self.changes[..shown] {
                    let path = c.path.to_string_lossy();
                    let time = Some(c.stat.modified());
                    report(emit, &self.service, c.kind, &path, Some(c.stat.size), time);
                }
                self.count(emit, self.changes.len());
                result.map_err(SourceError::from)
            }
            #[cfg(feature = "http")]
            Poller::Url { poller, url } => {
                let url_change = poller.poll().map_err(SourceError::Request);
                if let Ok(Some(c)) = &url_change {
                    let e = report(emit, &self.service, c.kind, url, c.size, None);
                    e.attributes.insert("status".into(), c.status.to_string());
                    if let Some(lm) = &c.last_modified {
                        e.attributes.insert("last_modified".into(), lm.clone());
                    }
                }
                let found = matches!(url_change, Ok(Some(_))) as usize;
                self.count(emit, found);
                url_change.map(|_| ())
            }
        }
    }
}

impl Watch {
    /// Emits the per-tick counts: changes found, and those past `max_events`.
    fn count(&self, emit: &mut Emitter<'_>, found: usize) {
        emit.metric(&format!("{}.changes", self.service), found as u64);
        let coalesced = found.saturating_sub(self.max_events);
        emit.metric(&format!("{}.coalesced", self.service), coalesced as u64);
    }
}

/// Emits one change event: a log event `<change> <subject>` with the change, path, size and
/// time (seconds since the epoch, with nanoseconds) as attributes.
fn report<'e>(
    emit: &'e mut Emitter<'_>,
    service: &str,
    kind: ChangeKind,
    subject: &str,
    size: Option<u64>,
    time: Option<SystemTime>,
) -> &'e mut crate::event::Event {
    let e = emit.event(service, Kind::Log);
    e.description = Some(format!("{} {subject}", kind.as_str()));
    e.attributes.insert("change".into(), kind.as_str().into());
    e.attributes.insert("path".into(), subject.into());
    if let Some(size) = size {
        e.attributes.insert("size".into(), size.to_string());
    }
    if let Some(t) = time.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()) {
        e.attributes.insert(
            "time".into(),
            format!("{}.{:09}", t.as_secs(), t.subsec_nanos()),
        );
    }
    e
}
