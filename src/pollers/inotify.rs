//! The inotify poller: a thread blocked in `read(2)` on an inotify descriptor that notes which
//! paths the kernel said changed. The owner asks it for those paths on each tick and looks at
//! them again through the [`Snapshot`](super::snapshot::Snapshot).
//!
//! The set of noted paths is bounded: past [`MAX_PENDING`] paths, or when the kernel's own queue
//! overflowed (`IN_Q_OVERFLOW`), the poller asks for a full rescan instead, so nothing is missed.
//!
//! The thread is stopped by removing a watch it holds for that purpose: the kernel then queues
//! `IN_IGNORED`, which wakes the blocked read.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};

/// The most paths noted between two ticks before the poller asks for a full rescan instead.
pub const MAX_PENDING: usize = 4096;

/// Read buffer of the thread: room for about 150 events with short names per read.
const BUFFER: usize = 4096;

/// What a directory watch listens for: entries appearing, going, changing, and the directory
/// itself going.
fn dir_mask() -> WatchMask {
    WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::MODIFY
        | WatchMask::ATTRIB
        | WatchMask::CLOSE_WRITE
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF
}

/// Decides whether a watch may be added: the seam through which tests make `inotify_add_watch`
/// fail (with `ENOSPC`, say). The default lets every watch through.
pub type WatchGate = Arc<dyn Fn(&Path) -> io::Result<()> + Send + Sync>;

/// The gate that lets every watch through.
pub fn open_gate() -> WatchGate {
    Arc::new(|_| Ok(()))
}

/// What the thread noted since the last [`InotifyPoller::take`].
#[derive(Debug, Default)]
pub struct Pending {
    /// Paths to look at again, in order (a directory before what is under it).
    pub paths: BTreeSet<PathBuf>,
    /// Everything must be looked at again: the kernel's queue or the noted set overflowed.
    pub rescan: bool,
    /// The thread stopped reading after this error; the poller is no longer usable.
    pub failed: Option<io::Error>,
}

/// What the thread and the owner share.
#[derive(Debug, Default)]
struct Shared {
    pending: Pending,
    /// Watched directory by watch descriptor number.
    by_wd: HashMap<i32, PathBuf>,
    /// The reverse: watch descriptor by directory.
    by_path: HashMap<PathBuf, WatchDescriptor>,
}

/// A running inotify poller for the paths under `root`.
pub struct InotifyPoller {
    shared: Arc<Mutex<Shared>>,
    watches: Watches,
    wake: Option<WatchDescriptor>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    gate: WatchGate,
}

impl std::fmt::Debug for InotifyPoller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InotifyPoller").finish_non_exhaustive()
    }
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

impl InotifyPoller {
    /// Opens an inotify instance and starts its reading thread, named `thread_name`. Events for
    /// paths outside `root` are ignored.
    pub fn start(thread_name: &str, root: &Path, gate: WatchGate) -> io::Result<InotifyPoller> {
        let inotify = Inotify::init()?;
        let mut watches = inotify.watches();
        // The root directory never goes away: a watch on it that hears nothing but its own
        // deletion exists only to be removed, which wakes the thread to stop.
        gate(Path::new("/"))?;
        let wake = watches.add("/", WatchMask::DELETE_SELF)?;
        let shared = Arc::new(Mutex::new(Shared::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = Reader {
            inotify,
            shared: shared.clone(),
            stop: stop.clone(),
            root: root.to_owned(),
        };
        let thread = crate::lifeline::spawn_with_stack(
            thread_name.to_owned(),
            crate::pollers::THREAD_STACK,
            move || reader.run(),
        )?;
        Ok(InotifyPoller {
            shared,
            watches,
            wake: Some(wake),
            stop,
            thread: Some(thread),
            gate,
        })
    }

    /// True when `dir` has a watch.
    pub fn is_watched(&self, dir: &Path) -> bool {
        lock(&self.shared).by_path.contains_key(dir)
    }

    /// Adds a watch on the directory `dir`. Returns true when it was not watched before: what
    /// happened in it before the watch took hold must then be looked at once more.
    pub fn watch(&mut self, dir: &Path) -> io::Result<bool> {
        if self.is_watched(dir) {
            return Ok(false);
        }
        (self.gate)(dir)?;
        let wd = self.watches.add(dir, dir_mask())?;
        let mut shared = lock(&self.shared);
        // The same inode watched under another name (a directory renamed within the tree): the
        // watch now speaks for the new name.
        if let Some(old) = shared
            .by_wd
            .insert(wd.get_watch_descriptor_id(), dir.to_owned())
        {
            shared.by_path.remove(&old);
        }
        shared.by_path.insert(dir.to_owned(), wd);
        Ok(true)
    }

    /// Forgets the watches on `dir` and every directory under it (they were deleted or moved
    /// away); a directory moved within the tree is watched again under its new name.
    pub fn forget(&mut self, dir: &Path) {
        let gone: Vec<(PathBuf, WatchDescriptor)> = {
            let mut shared = lock(&self.shared);
            let paths: Vec<PathBuf> = shared
                .by_path
                .keys()
                .filter(|p| p.starts_with(dir))
                .cloned()
                .collect();
            paths
                .into_iter()
                .filter_map(|p| {
                    let wd = shared.by_path.remove(&p)?;
                    shared.by_wd.remove(&wd.get_watch_descriptor_id());
                    Some((p, wd))
                })
                .collect()
        };
        for (_, wd) in gone {
            // Already gone with its directory, most likely.
            let _ = self.watches.remove(wd);
        }
    }

    /// How many directories are watched.
    pub fn watch_count(&self) -> usize {
        lock(&self.shared).by_path.len()
    }

    /// Notes `path` to be looked at again on the next tick.
    pub fn mark(&self, path: &Path) {
        note(&mut lock(&self.shared).pending, path.to_owned());
    }

    /// What was noted since the last call.
    pub fn take(&self) -> Pending {
        std::mem::take(&mut lock(&self.shared).pending)
    }
}

impl Drop for InotifyPoller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(wake) = self.wake.take() {
            // Queues IN_IGNORED, which ends the thread's blocking read.
            let _ = self.watches.remove(wake);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn note(pending: &mut Pending, path: PathBuf) {
    if pending.rescan {
        return;
    }
    if pending.paths.len() >= MAX_PENDING && !pending.paths.contains(&path) {
        pending.paths.clear();
        pending.rescan = true;
        return;
    }
    pending.paths.insert(path);
}

/// The thread's side.
struct Reader {
    inotify: Inotify,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    root: PathBuf,
}

impl Reader {
    fn run(mut self) {
        let mut buffer = vec![0u8; BUFFER];
        loop {
            let events = match self.inotify.read_events_blocking(&mut buffer) {
                Ok(events) => events,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    lock(&self.shared).pending.failed = Some(e);
                    return;
                }
            };
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            crate::fault::point("inotify");
            let mut shared = lock(&self.shared);
            for event in events {
                let id = event.wd.get_watch_descriptor_id();
                absorb(&mut shared, &self.root, event.mask, id, event.name);
            }
        }
    }
}

/// Notes what one event says must be looked at again.
fn absorb(shared: &mut Shared, root: &Path, mask: EventMask, wd: i32, name: Option<&OsStr>) {
    if mask.contains(EventMask::Q_OVERFLOW) {
        shared.pending.rescan = true;
        return;
    }
    let Some(dir) = shared.by_wd.get(&wd).cloned() else {
        return;
    };
    if mask.contains(EventMask::IGNORED) {
        // The directory is gone or unmounted: look at it again (its deletion, or what replaced
        // it and needs a new watch).
        shared.by_wd.remove(&wd);
        shared.by_path.remove(&dir);
    }
    let path = match name {
        Some(name) => join(&dir, name),
        None => dir,
    };
    if path.starts_with(root) {
        note(&mut shared.pending, path);
    }
}

fn join(dir: &Path, name: &OsStr) -> PathBuf {
    let mut path = dir.to_owned();
    path.push(name);
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_many_noted_paths_become_one_rescan() {
        let mut pending = Pending::default();
        for i in 0..MAX_PENDING {
            note(&mut pending, PathBuf::from(format!("/p/{i}")));
        }
        note(&mut pending, PathBuf::from("/p/0"));
        assert_eq!(pending.paths.len(), MAX_PENDING);
        note(&mut pending, PathBuf::from("/p/new"));
        assert!(pending.rescan);
        assert!(pending.paths.is_empty());
    }

    fn watched(dirs: &[(i32, &str)]) -> Shared {
        let mut shared = Shared::default();
        for (wd, dir) in dirs {
            shared.by_wd.insert(*wd, PathBuf::from(dir));
        }
        shared
    }

    #[test]
    fn a_kernel_queue_overflow_asks_for_a_rescan() {
        let mut shared = watched(&[(1, "/w")]);
        absorb(
            &mut shared,
            Path::new("/w"),
            EventMask::Q_OVERFLOW,
            -1,
            None,
        );
        assert!(shared.pending.rescan);
    }

    #[test]
    fn events_name_paths_under_the_root_only() {
        let mut shared = watched(&[(1, "/"), (2, "/w"), (3, "/w/sub")]);
        let root = Path::new("/w");
        absorb(
            &mut shared,
            root,
            EventMask::CREATE,
            1,
            Some(OsStr::new("other")),
        );
        absorb(
            &mut shared,
            root,
            EventMask::CREATE,
            1,
            Some(OsStr::new("w")),
        );
        absorb(
            &mut shared,
            root,
            EventMask::MODIFY,
            3,
            Some(OsStr::new("f")),
        );
        absorb(
            &mut shared,
            root,
            EventMask::MODIFY,
            9,
            Some(OsStr::new("unknown")),
        );
        let noted: Vec<&Path> = shared.pending.paths.iter().map(PathBuf::as_path).collect();
        assert_eq!(noted, vec![Path::new("/w"), Path::new("/w/sub/f")]);
    }

    #[test]
    fn an_ignored_watch_is_forgotten_and_its_directory_looked_at() {
        let mut shared = watched(&[(3, "/w/sub")]);
        absorb(&mut shared, Path::new("/w"), EventMask::IGNORED, 3, None);
        assert!(shared.by_wd.is_empty());
        assert!(shared.pending.paths.contains(Path::new("/w/sub")));
    }
}
