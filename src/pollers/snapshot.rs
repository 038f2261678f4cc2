//! The change model both file pollers share: what is known of each watched path, and the diff
//! that turns a fresh look at part of the tree into `created`, `modified` and `deleted` changes.
//!
//! The inotify poller only says *where* to look again; the polling poller looks everywhere. Both
//! hand the result to the same [`Snapshot`], so they report the same changes for the same events.

use std::collections::BTreeMap;
use std::fs::{self, Metadata};
use std::io;
use std::ops::Bound;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::pattern::Selector;

/// What happened to a watched subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChangeKind {
    /// It appeared (or reappeared after being deleted).
    Created,
    /// Its content or metadata changed.
    Modified,
    /// It went away.
    Deleted,
}

impl ChangeKind {
    /// The name used in events: `created`, `modified` or `deleted`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Created => "created",
            ChangeKind::Modified => "modified",
            ChangeKind::Deleted => "deleted",
        }
    }
}

/// What a file's metadata says, compared whole: the nanosecond mtime and ctime, size, inode and
/// device. A rewrite within the same second, a same-size rewrite (ctime moves) and a replacement
/// by rename (the inode changes) all show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Device and inode.
    pub id: (u64, u64),
    /// Size in bytes.
    pub size: u64,
    /// Modification time in nanoseconds since the epoch.
    pub mtime: i64,
    /// Status-change time in nanoseconds since the epoch.
    pub ctime: i64,
    /// True for a directory.
    pub is_dir: bool,
}

impl Stat {
    /// The stat of `meta`.
    pub fn of(meta: &Metadata) -> Stat {
        Stat {
            id: (meta.dev(), meta.ino()),
            size: meta.size(),
            mtime: nanos(meta.mtime(), meta.mtime_nsec()),
            ctime: nanos(meta.ctime(), meta.ctime_nsec()),
            is_dir: meta.is_dir(),
        }
    }

    /// The modification time.
    pub fn modified(&self) -> SystemTime {
        let since = Duration::from_nanos(self.mtime.unsigned_abs());
        if self.mtime >= 0 {
            SystemTime::UNIX_EPOCH + since
        } else {
            SystemTime::UNIX_EPOCH - since
        }
    }
}

/// Seconds and nanoseconds as nanoseconds, saturating (at the year 2262).
fn nanos(seconds: i64, nanoseconds: i64) -> i64 {
    seconds
        .saturating_mul(1_000_000_000)
        .saturating_add(nanoseconds)
}

/// One change to one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// What happened.
    pub kind: ChangeKind,
    /// The path, as under the watched path.
    pub path: PathBuf,
    /// The metadata now, or for a deletion the last known.
    pub stat: Stat,
}

/// What to watch: a path, whether to descend, and which entries to report.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchSpec {
    /// A file or a directory; it need not exist yet.
    pub path: PathBuf,
    /// For a directory: watch its whole subtree, not only its entries.
    pub recursive: bool,
    /// Which entries to report, matched against their path relative to the watched directory
    /// (`sub/app.log`); the watched path itself is always reported.
    pub filter: Selector,
}

impl WatchSpec {
    /// How deep below the watched path `path` lies (0 for the path itself), or `None` when it is
    /// not at or under it.
    fn depth(&self, path: &Path) -> Option<usize> {
        path.strip_prefix(&self.path)
            .ok()
            .map(|rel| rel.components().count())
    }

    /// True when entries at `depth` are watched.
    fn covers(&self, depth: usize) -> bool {
        depth <= 1 || self.recursive
    }

    /// True when changes to `path` (at `depth`) are reported.
    fn reports(&self, path: &Path, depth: usize) -> bool {
        if depth == 0 {
            return true;
        }
        match path.strip_prefix(&self.path).ok().and_then(Path::to_str) {
            Some(rel) => self.filter.accepts(rel),
            // A name that is not UTF-8 cannot match a pattern; it is reported only when nothing
            // is asked for.
            None => self.filter.include.is_empty() && self.filter.exclude.is_empty(),
        }
    }
}

/// What is known of every reported path under one [`WatchSpec`].
#[derive(Debug)]
pub struct Snapshot {
    spec: WatchSpec,
    known: BTreeMap<PathBuf, Stat>,
}

/// The result of looking again at part of the tree.
#[derive(Debug, Default)]
pub struct Look {
    /// Directories seen whose entries are watched (the watched directory, and in a recursive
    /// watch every directory under it): where an event-driven poller needs a watch.
    pub dirs: Vec<PathBuf>,
    /// The first error met, other than a path not existing (which is a deletion); the rest of the
    /// tree was still looked at, and what could not be read counts as unchanged.
    pub error: Option<io::Error>,
}

impl Snapshot {
    /// An empty snapshot: the first [`Snapshot::rescan`] takes stock without reporting anything.
    pub fn new(spec: WatchSpec) -> Snapshot {
        Snapshot {
            spec,
            known: BTreeMap::new(),
        }
    }

    /// What is watched.
    pub fn spec(&self) -> &WatchSpec {
        &self.spec
    }

    /// How many paths are known.
    pub fn len(&self) -> usize {
        self.known.len()
    }

    /// True when nothing is known (the watched path does not exist).
    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    /// Looks at the whole tree again and appends what changed to `out`.
    pub fn rescan(&mut self, out: &mut Vec<Change>) -> Look {
        let root = self.spec.path.clone();
        self.look_at(&root, out)
    }

    /// Takes stock of the tree without reporting: the state changes are measured from.
    pub fn baseline(&mut self) -> Look {
        self.known.clear();
        let mut ignored = Vec::new();
        self.rescan(&mut ignored)
    }

    /// Looks again at `path` and everything under it, appending what changed to `out`.
    pub fn look_at(&mut self, path: &Path, out: &mut Vec<Change>) -> Look {
        let mut look = Look::default();
        let Some(depth) = self.spec.depth(path) else {
            return look;
        };
        if !self.spec.covers(depth) {
            return look;
        }
        let mut now = BTreeMap::new();
        self.walk(path, depth, &mut now, &mut look);
        let old = self
            .known
            .range::<Path, _>((Bound::Included(path), Bound::Unbounded))
            .take_while(|(p, _)| p.starts_with(path));
        let mut gone = Vec::new();
        for (p, stat) in old {
            match now.get(p) {
                None => {
                    gone.push(p.clone());
                    out.push(change(ChangeKind::Deleted, p, *stat));
                }
                Some(new) if new.is_dir != stat.is_dir => {
                    // Replaced by something of another kind: the old one went, a new one came.
                    out.push(change(ChangeKind::Deleted, p, *stat));
                    out.push(change(ChangeKind::Created, p, *new));
                }
                Some(new) if !new.is_dir && new != stat => {
                    out.push(change(ChangeKind::Modified, p, *new));
                }
                Some(_) => {}
            }
        }
        for (p, stat) in &now {
            if !self.known.contains_key(p) {
                out.push(change(ChangeKind::Created, p, *stat));
            }
        }
        if path == self.spec.path {
            // The whole tree was looked at: what was found is what is known.
            self.known = now;
        } else {
            for p in gone {
                self.known.remove(&p);
            }
            self.known.extend(now);
        }
        look
    }

    /// Reads `path` (at `depth`) and what is under it into `into`.
    fn walk(&self, path: &Path, depth: usize, into: &mut BTreeMap<PathBuf, Stat>, look: &mut Look) {
        // The watched path itself may be a symlink to follow; below it, links are entries.
        let meta = if depth == 0 {
            fs::metadata(path)
        } else {
            fs::symlink_metadata(path)
        };
        match meta {
            Ok(meta) => self.visit(path, depth, &meta, into, look),
            Err(e) => self.unreadable(e, path, into, look),
        }
    }

    /// Records `path` (at `depth`, with metadata `meta`) and reads what is under it.
    fn visit(
        &self,
        path: &Path,
        depth: usize,
        meta: &Metadata,
        into: &mut BTreeMap<PathBuf, Stat>,
        look: &mut Look,
    ) {
        let stat = Stat::of(meta);
        if self.spec.reports(path, depth) {
            into.insert(path.to_owned(), stat);
        }
        if !stat.is_dir || !(depth == 0 || self.spec.recursive) {
            return;
        }
        look.dirs.push(path.to_owned());
        let entries = match fs::read_dir(path) {
            Ok(entries) => entries,
            Err(e) => return self.unreadable(e, path, into, look),
        };
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    look.error.get_or_insert(with_path(e, path));
                    continue;
                }
            };
            // Read relative to the open directory, without following a link (as lstat).
            let child = entry.path();
            match entry.metadata() {
                Ok(meta) => self.visit(&child, depth + 1, &meta, into, look),
                Err(e) => self.unreadable(e, &child, into, look),
            }
        }
    }

    /// Handles a failure to read `path`: if it is gone, it is left out (and so reported deleted);
    /// otherwise what is known under it counts as unchanged, and the error is kept.
    fn unreadable(
        &self,
        e: io::Error,
        path: &Path,
        into: &mut BTreeMap<PathBuf, Stat>,
        look: &mut Look,
    ) {
        if gone(&e) {
            return;
        }
        for (p, s) in self
            .known
            .range::<Path, _>((Bound::Included(path), Bound::Unbounded))
            .take_while(|(p, _)| p.starts_with(path))
        {
            into.insert(p.clone(), *s);
        }
        look.error.get_or_insert(with_path(e, path));
    }
}

fn change(kind: ChangeKind, path: &Path, stat: Stat) -> Change {
    Change {
        kind,
        path: path.to_owned(),
        stat,
    }
}

/// True for the errors that mean "not there": the path or a directory on the way is missing.
fn gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pattern::Pattern;

    fn temp(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "pipit-snapshot-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn kinds(changes: &[Change], root: &Path) -> Vec<(ChangeKind, String)> {
        changes
            .iter()
            .map(|c| {
                let rel = c.path.strip_prefix(root).unwrap().display().to_string();
                (c.kind, rel)
            })
            .collect()
    }

    #[test]
    fn same_size_rewrite_in_the_same_second_is_seen() {
        let dir = temp("rewrite");
        let file = dir.join("a");
        fs::write(&file, "one").unwrap();
        let mut s = Snapshot::new(WatchSpec {
            path: dir.clone(),
            recursive: false,
            filter: Selector::default(),
        });
        s.baseline();
        fs::write(&file, "two").unwrap();
        let mut out = Vec::new();
        s.rescan(&mut out);
        assert_eq!(kinds(&out, &dir), vec![(ChangeKind::Modified, "a".into())]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn filters_apply_to_entries_not_to_descent() {
        let dir = temp("filter");
        fs::create_dir_all(dir.join("sub")).unwrap();
        let mut s = Snapshot::new(WatchSpec {
            path: dir.clone(),
            recursive: true,
            filter: Selector {
                include: vec![Pattern::new("*.log")],
                exclude: vec![Pattern::new("*debug*")],
            },
        });
        s.baseline();
        fs::write(dir.join("sub/app.log"), "x").unwrap();
        fs::write(dir.join("sub/debug.log"), "x").unwrap();
        fs::write(dir.join("note.txt"), "x").unwrap();
        let mut out = Vec::new();
        let look = s.rescan(&mut out);
        assert_eq!(
            kinds(&out, &dir),
            vec![(ChangeKind::Created, "sub/app.log".into())]
        );
        assert_eq!(look.dirs, vec![dir.clone(), dir.join("sub")]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_path_outside_or_too_deep_is_ignored() {
        let dir = temp("depth");
        fs::create_dir_all(dir.join("a/b")).unwrap();
        fs::write(dir.join("a/b/f"), "x").unwrap();
        let mut s = Snapshot::new(WatchSpec {
            path: dir.clone(),
            recursive: false,
            filter: Selector::default(),
        });
        s.baseline();
        assert_eq!(s.len(), 2, "the directory and its one entry");
        let mut out = Vec::new();
        s.look_at(&dir.join("a/b/f"), &mut out);
        s.look_at(Path::new("/elsewhere"), &mut out);
        assert!(out.is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_modification_time_keeps_nanoseconds() {
        let stat = Stat {
            id: (1, 2),
            size: 0,
            mtime: nanos(1, 500),
            ctime: nanos(1, 500),
            is_dir: false,
        };
        assert_eq!(
            stat.modified(),
            SystemTime::UNIX_EPOCH + Duration::from_nanos(1_000_000_500)
        );
    }
}
