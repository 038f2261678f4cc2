//! The file watcher: inotify where it can, polling where it must, the same changes either way.
//!
//! Both ways share one [`Snapshot`]. Polling looks at the whole tree on every tick and compares
//! full metadata (nanosecond mtime and ctime, size, inode), so it sees what mtime-only pollers
//! miss. Inotify looks only where the kernel said something happened. When inotify cannot be
//! used, or a watch cannot be added, the watcher warns once, naming the limit and the sysctl to
//! raise, and polls from then on, starting from what it already knows: no change is lost or
//! reported twice.

use std::io;
use std::path::{Path, PathBuf};

use super::inotify::{InotifyPoller, WatchGate, open_gate};
use super::snapshot::{Change, ChangeKind, Look, Snapshot, WatchSpec};

/// Which poller to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollerChoice {
    /// Inotify, falling back to polling when it cannot be used.
    Auto,
    /// Inotify only: a failure is an error on every tick until it clears.
    Inotify,
    /// Polling only.
    Polling,
}

impl PollerChoice {
    /// The config words, in the order of the variants.
    pub const NAMES: [&'static str; 3] = ["auto", "inotify", "polling"];

    /// The choice named `word` (one of [`PollerChoice::NAMES`]).
    pub fn from_name(word: &str) -> Option<PollerChoice> {
        match word {
            "auto" => Some(PollerChoice::Auto),
            "inotify" => Some(PollerChoice::Inotify),
            "polling" => Some(PollerChoice::Polling),
            _ => None,
        }
    }
}

/// How the watcher is polling now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollerKind {
    /// Reading inotify events.
    Inotify,
    /// Looking at the whole tree each tick.
    Polling,
}

enum Mode {
    /// Not set up yet: the first poll takes stock.
    Unstarted,
    Inotify(InotifyPoller),
    Polling,
}

/// Watches one path and reports its changes on each [`FileWatcher::poll`].
pub struct FileWatcher {
    snapshot: Snapshot,
    choice: PollerChoice,
    mode: Mode,
    gate: WatchGate,
    thread_name: String,
    log_target: String,
    /// True once stock was taken: a restart then reports what changed meanwhile.
    stocked: bool,
}

impl std::fmt::Debug for FileWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileWatcher")
            .field("spec", self.snapshot.spec())
            .field("choice", &self.choice)
            .field("poller", &self.poller())
            .finish()
    }
}

impl FileWatcher {
    /// A watcher for `spec`; nothing happens until the first [`FileWatcher::poll`]. Its inotify
    /// thread, if any, is named `thread_name`; warnings go to `log_target`.
    pub fn new(
        spec: WatchSpec,
        choice: PollerChoice,
        thread_name: &str,
        log_target: &str,
    ) -> FileWatcher {
        FileWatcher::with_gate(spec, choice, thread_name, log_target, open_gate())
    }

    /// The same, with `gate` deciding whether each inotify watch may be added (for tests).
    pub fn with_gate(
        spec: WatchSpec,
        choice: PollerChoice,
        thread_name: &str,
        log_target: &str,
        gate: WatchGate,
    ) -> FileWatcher {
        FileWatcher {
            snapshot: Snapshot::new(spec),
            choice,
            mode: Mode::Unstarted,
            gate,
            thread_name: thread_name.to_owned(),
            log_target: log_target.to_owned(),
            stocked: false,
        }
    }

    /// The poller in use; `None` before the first poll and while a forced inotify cannot start.
    pub fn poller(&self) -> Option<PollerKind> {
        match self.mode {
            Mode::Unstarted => None,
            Mode::Inotify(_) => Some(PollerKind::Inotify),
            Mode::Polling => Some(PollerKind::Polling),
        }
    }

    /// Appends the changes since the last poll to `out`. The first poll takes stock and reports
    /// nothing. An error is returned after the changes that could still be found.
    pub fn poll(&mut self, out: &mut Vec<Change>) -> io::Result<()> {
        match &self.mode {
            Mode::Unstarted => self.start(out),
            Mode::Polling => done(self.snapshot.rescan(out)),
            Mode::Inotify(_) => self.poll_inotify(out),
        }
    }

    fn start(&mut self, out: &mut Vec<Change>) -> io::Result<()> {
        let root = self.snapshot.spec().path.clone();
        let started = match self.choice {
            PollerChoice::Polling => Ok(Mode::Polling),
            _ => {
                InotifyPoller::start(&self.thread_name, &root, self.gate.clone()).map(Mode::Inotify)
            }
        };
        let failed = match started {
            Ok(mode) => {
                self.mode = mode;
                None
            }
            Err(e) => Some(e),
        };
        // Directories are watched after this look and looked at again on the next tick, so
        // nothing that happens in between is missed.
        let look = if self.stocked {
            self.snapshot.rescan(out)
        } else {
            self.stocked = true;
            self.snapshot.baseline()
        };
        if let Some(e) = failed {
            self.inotify_failed(e, &root)?;
            return done(look);
        }
        self.add_watches(look, out)
    }

    fn poll_inotify(&mut self, out: &mut Vec<Change>) -> io::Result<()> {
        let Mode::Inotify(poller) = &self.mode else {
            return Ok(());
        };
        let mut pending = poller.take();
        let root = &self.snapshot.spec().path;
        // Until the parent of the watched path can be watched, nothing tells when the path
        // appears: look at it on every tick.
        if root.parent().is_some_and(|p| !poller.is_watched(p)) {
            pending.paths.insert(root.clone());
        }
        if let Some(e) = pending.failed {
            let root = self.snapshot.spec().path.clone();
            self.inotify_failed(e, &root)?;
            return done(self.snapshot.rescan(out));
        }
        let mut look = Look::default();
        if pending.rescan {
            look = self.snapshot.rescan(out);
        } else {
            let mut last_dir: Option<PathBuf> = None;
            for path in pending.paths {
                // A directory looked at already covered what is under it.
                if last_dir.as_ref().is_some_and(|d| path.starts_with(d)) {
                    continue;
                }
                let before = out.len();
                let part = self.snapshot.look_at(&path, out);
                if part.dirs.first() == Some(&path) {
                    last_dir = Some(path.clone());
                }
                merge(&mut look, part);
                self.forget_deleted_dirs(&out[before..]);
            }
        }
        self.add_watches(look, out)
    }

    /// Watches the directories `look` found, and the parent of the watched path (where it
    /// appears and goes). A directory watched for the first time is looked at once more on the
    /// next tick, for what happened in it before its watch took hold.
    fn add_watches(&mut self, look: Look, out: &mut Vec<Change>) -> io::Result<()> {
        let root = self.snapshot.spec().path.clone();
        let Mode::Inotify(poller) = &mut self.mode else {
            return done(look);
        };
        let parent = root.parent().filter(|p| !p.as_os_str().is_empty());
        let mut failure = None;
        for dir in parent
            .into_iter()
            .chain(look.dirs.iter().map(PathBuf::as_path))
        {
            match poller.watch(dir) {
                Ok(true) if dir != parent.unwrap_or(Path::new("")) => poller.mark(dir),
                Ok(_) => {}
                // The parent may not exist yet; the watched path then does not either.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    failure = Some((e, dir.to_owned()));
                    break;
                }
            }
        }
        let mut look = look;
        if let Some((e, dir)) = failure {
            self.inotify_failed(e, &dir)?;
            // Polling from here: look at everything now, so nothing between is missed.
            merge(&mut look, self.snapshot.rescan(out));
        }
        done(look)
    }

    fn forget_deleted_dirs(&mut self, changes: &[Change]) {
        let Mode::Inotify(poller) = &mut self.mode else {
            return;
        };
        for c in changes {
            if c.kind == ChangeKind::Deleted && c.stat.is_dir {
                poller.forget(&c.path);
            }
        }
    }

    /// Inotify could not be used for `path`: polls from now on (with one warning) when allowed
    /// to, or returns the error for a forced inotify.
    fn inotify_failed(&mut self, e: io::Error, path: &Path) -> io::Result<()> {
        if self.choice == PollerChoice::Inotify {
            // Drops the poller (stopping its thread); the next poll starts over.
            self.mode = Mode::Unstarted;
            return Err(io::Error::new(e.kind(), explain(&e, path)));
        }
        let root = self.snapshot.spec().path.display();
        log::warn!(target: &self.log_target, "{}; polling {root} instead", explain(&e, path));
        self.mode = Mode::Polling;
        Ok(())
    }
}

/// One line on why inotify failed for `path`, naming the limit and the sysctl to raise when it
/// is one.
pub fn explain(e: &io::Error, path: &Path) -> String {
    let path = path.display();
    match e.raw_os_error() {
        Some(28) => format!(
            "cannot watch {path}: the inotify watch limit is reached \
             (raise fs.inotify.max_user_watches, e.g. `sysctl -w fs.inotify.max_user_watches=65536`)"
        ),
        Some(24) => format!(
            "cannot watch {path}: the inotify instance limit is reached \
             (raise fs.inotify.max_user_instances, e.g. `sysctl -w fs.inotify.max_user_instances=512`)"
        ),
        _ => format!("cannot watch {path} with inotify: {e}"),
    }
}

fn merge(into: &mut Look, part: Look) {
    into.dirs.extend(part.dirs);
    if into.error.is_none() {
        into.error = part.error;
    }
}

fn done(look: Look) -> io::Result<()> {
    match look.error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explains_the_limits_by_their_sysctl() {
        let root = Path::new("/var/log");
        let enospc = explain(&io::Error::from_raw_os_error(28), root);
        assert!(enospc.contains("fs.inotify.max_user_watches"), "{enospc}");
        let emfile = explain(&io::Error::from_raw_os_error(24), root);
        assert!(emfile.contains("fs.inotify.max_user_instances"), "{emfile}");
        let other = explain(&io::Error::from_raw_os_error(13), root);
        assert!(
            other.starts_with("cannot watch /var/log with inotify: "),
            "{other}"
        );
    }

    #[test]
    fn poller_choices_round_trip() {
        for name in PollerChoice::NAMES {
            assert!(PollerChoice::from_name(name).is_some());
        }
        assert_eq!(PollerChoice::from_name("fanotify"), None);
    }
}
