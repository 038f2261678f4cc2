//! The one way pipit creates or replaces a file or directory: the counter cache, the spool's
//! segments and cursor, the control socket and every temporary file go through here.
//!
//! pipit usually runs as root with its state under `/tmp`, which any local user can write. So:
//! - A directory is opened once, walking its path one name at a time, and everything inside it is
//!   then reached through that open handle ([`Dir`]): a name swapped for a symlink after the check
//!   is never followed.
//! - A missing directory is made 0700. The directory itself (made or found) must not be a symlink,
//!   must be owned by pipit's effective user or root, and must not be writable by group or others.
//!   A symlink among its parents is followed only when root or pipit's user owns it, and a parent
//!   writable by others must have the sticky bit (as `/tmp` has).
//! - A file is created only when its name is free (`O_CREAT|O_EXCL`, never through a symlink),
//!   mode 0600. A file is replaced by writing a new one under an unpredictable temporary name,
//!   syncing it, and renaming it over the old one (a symlink at the name is replaced, not
//!   followed).
//! - An existing file is opened only if it is a regular file (not a symlink, FIFO, device or
//!   directory), owned by pipit's user, not readable or writable by anyone else, and has no other
//!   hard link.
//!
//! Every refusal is a [`FilesError::Refused`] naming the path, what is wrong and the owner.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::fs::{File, Metadata};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Component, Path, PathBuf};

use crate::sys::{self, OpenMode};

/// Who else may write into a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// Nobody: not writable by group or others (state and spool directories).
    Private,
    /// Others too, if the sticky bit keeps them from removing or renaming pipit's names (a
    /// control socket placed directly in `/tmp`).
    Sticky,
}

/// A refused or failed file operation; the message names the path and says what to do.
#[derive(Debug)]
pub enum FilesError {
    /// A check failed: the path is left untouched. The problem says what to change (the owner,
    /// the mode, a symlink in the way).
    Refused {
        /// The path refused.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// A system call failed: the error says why (no space, no permission); fix that and try
    /// again.
    Io {
        /// The path it failed on.
        path: PathBuf,
        /// The error.
        error: io::Error,
    },
}

impl FilesError {
    /// The I/O error kind, or `None` for a refusal.
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            FilesError::Io { error, .. } => Some(error.kind()),
            FilesError::Refused { .. } => None,
        }
    }

    /// True when the file system has no space (or quota) left.
    pub fn is_full(&self) -> bool {
        matches!(self, FilesError::Io { error, .. } if is_full(error))
    }
}

/// True when `e` says the file system has no space (or quota) left.
pub fn is_full(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

impl fmt::Display for FilesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FilesError::Refused { path, problem } => {
                write!(f, "refusing {}: {problem}", path.display())
            }
            FilesError::Io { path, error } => write!(f, "{}: {error}", path.display()),
        }
    }
}

impl std::error::Error for FilesError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FilesError::Refused { .. } => None,
            FilesError::Io { error, .. } => Some(error),
        }
    }
}

/// An open, checked directory; every name inside it is reached through this handle.
#[derive(Debug)]
pub struct Dir {
    handle: File,
    path: PathBuf,
}

impl Dir {
    /// Opens the directory `path`, making it and any missing parent (0700) on the way, and checks
    /// it as the module explains. A relative path starts at the working directory.
    pub fn open(path: &Path, sharing: Sharing) -> Result<Dir, FilesError> {
        let start = if path.is_absolute() { "/" } else { "." };
        let fd = sys::open_dir_path(Path::new(start)).map_err(|error| FilesError::Io {
            path: PathBuf::from(start),
            error,
        })?;
        let mut dir = Dir {
            handle: File::from(fd),
            path: PathBuf::from(start),
        };
        let names: Vec<&str> = path
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.to_str()),
                Component::ParentDir => Some(Some("..")),
                _ => None,
            })
            .collect::<Option<_>>()
            .ok_or_else(|| refused(path, "not a UTF-8 path".into()))?;
        let Some((last, parents)) = names.split_last() else {
            dir.check(sharing, true)?;
            return Ok(dir);
        };
        for name in parents {
            dir = dir.step(name, false)?;
            dir.check(Sharing::Sticky, false)?;
        }
        let dir = dir.step(last, true)?;
        dir.check(sharing, true)?;
        Ok(dir)
    }

    /// The path this directory was opened by, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of `name` inside this directory, for messages.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// One name further, making it if missing. A symlink is refused as the directory itself
    /// (`last`) and followed as a parent only when root or pipit's user owns it.
    fn step(&self, name: &str, last: bool) -> Result<Dir, FilesError> {
        let path = self.join(name);
        let io = |error| FilesError::Io {
            path: path.clone(),
            error,
        };
        let fd = match sys::open_at(self.handle.as_fd(), name, OpenMode::Directory) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                match sys::mkdir_at(self.handle.as_fd(), name, 0o700) {
                    Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(io(e)),
                    _ => {}
                }
                let fd = sys::open_at(self.handle.as_fd(), name, OpenMode::Directory)
                    .map_err(|e| self.explain(name, e))?;
                log::info!(target: "files", "made the directory {} (mode 0700)", path.display());
                fd
            }
            // With O_DIRECTORY a symlink fails as "not a directory", without as "a loop".
            Err(e)
                if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR))
                    && !last
                    && self.is_trusted_symlink(name) =>
            {
                sys::open_at(self.handle.as_fd(), name, OpenMode::DirectoryFollowing).map_err(io)?
            }
            Err(e) => return Err(self.explain(name, e)),
        };
        Ok(Dir {
            handle: File::from(fd),
            path,
        })
    }

    /// True when `name` is a symlink that root or pipit's user owns.
    fn is_trusted_symlink(&self, name: &str) -> bool {
        sys::stat_at(self.handle.as_fd(), name)
            .is_ok_and(|s| s.mode & libc::S_IFMT == libc::S_IFLNK && trusted_owner(s.uid))
    }

    /// The error of a failed open of `name`, as a refusal when the name is a symlink or not a
    /// directory.
    fn explain(&self, name: &str, e: io::Error) -> FilesError {
        let path = self.join(name);
        match e.raw_os_error() {
            Some(libc::ELOOP | libc::ENOTDIR) => match sys::stat_at(self.handle.as_fd(), name) {
                Ok(s) if s.mode & libc::S_IFMT == libc::S_IFLNK => refused(
                    &path,
                    format!(
                        "it is a symlink owned by {}: pipit follows no symlink at its own \
                         directory, nor one another user owns above it; remove it",
                        owner(s.uid)
                    ),
                ),
                _ => refused(
                    &path,
                    format!("not a directory ({}): remove it", self.describe(name)),
                ),
            },
            _ => FilesError::Io { path, error: e },
        }
    }

    /// Checks owner and mode: `own` for the directory pipit keeps its files in, else a parent.
    fn check(&self, sharing: Sharing, own: bool) -> Result<(), FilesError> {
        let meta = self.metadata()?;
        if !trusted_owner(meta.uid()) {
            return Err(refused(
                &self.path,
                format!(
                    "owned by {}, neither this user ({}) nor root: remove it, or make it owned by \
                     this user with mode 0700",
                    owner(meta.uid()),
                    owner(sys::effective_uid())
                ),
            ));
        }
        let others_write = meta.mode() & 0o022 != 0;
        let sticky = meta.mode() & 0o1000 != 0;
        let allowed = match (own, sharing) {
            (true, Sharing::Private) => !others_write,
            _ => !others_write || sticky,
        };
        if !allowed {
            return Err(refused(
                &self.path,
                format!(
                    "mode {:04o} lets others write in it (owner {}): chmod 0700 it",
                    meta.mode() & 0o7777,
                    owner(meta.uid())
                ),
            ));
        }
        Ok(())
    }

    fn metadata(&self) -> Result<Metadata, FilesError> {
        self.handle.metadata().map_err(|error| FilesError::Io {
            path: self.path.clone(),
            error,
        })
    }

    /// True when this directory is no longer at its path: removed (a cleanup script, `rm -r`), or
    /// another one mounted or made in its place.
    pub fn is_gone(&self) -> bool {
        let Ok(open) = self.handle.metadata() else {
            return true;
        };
        match std::fs::symlink_metadata(&self.path) {
            Ok(now) => open.nlink() == 0 || now.dev() != open.dev() || now.ino() != open.ino(),
            Err(_) => true,
        }
    }

    /// Makes the new file `name` (mode 0600); fails if the name exists, even as a symlink.
    pub fn create_new(&self, name: &str) -> Result<File, FilesError> {
        sys::open_at(self.handle.as_fd(), name, OpenMode::CreateNew)
            .map(File::from)
            .map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => refused(
                    &self.join(name),
                    format!(
                        "something is already at this name ({})",
                        self.describe(name)
                    ),
                ),
                _ => self.io(name, e),
            })
    }

    /// Opens the existing file `name` to read (or also to write) after checking it: a regular
    /// file, owned by this user, mode 0600 or stricter, one link. A missing file is an
    /// [`io::ErrorKind::NotFound`] error.
    pub fn open_file(&self, name: &str, write: bool) -> Result<File, FilesError> {
        let mode = if write {
            OpenMode::ReadWrite
        } else {
            OpenMode::Read
        };
        let file = match sys::open_at(self.handle.as_fd(), name, mode) {
            Ok(fd) => File::from(fd),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::EISDIR)) => {
                return Err(refused(&self.join(name), self.describe(name)));
            }
            Err(e) => return Err(self.io(name, e)),
        };
        let meta = file.metadata().map_err(|e| self.io(name, e))?;
        let problem = if !meta.is_file() {
            Some(format!("not a regular file ({})", self.describe(name)))
        } else if meta.uid() != sys::effective_uid() {
            Some(format!(
                "owned by {}, not by this user ({}): pipit did not write it",
                owner(meta.uid()),
                owner(sys::effective_uid())
            ))
        } else if meta.permissions().mode() & 0o077 != 0 {
            Some(format!(
                "mode {:04o}, not 0600: others could have read or written it",
                meta.permissions().mode() & 0o7777
            ))
        } else if meta.nlink() != 1 {
            Some(format!(
                "it has {} hard links: another name could change it",
                meta.nlink()
            ))
        } else {
            None
        };
        match problem {
            Some(problem) => Err(refused(&self.join(name), problem)),
            None => Ok(file),
        }
    }

    /// What is at `name`, for a refusal: a symlink, a FIFO, a directory, a file and its owner.
    fn describe(&self, name: &str) -> String {
        let Ok(s) = sys::stat_at(self.handle.as_fd(), name) else {
            return "cannot tell what".into();
        };
        let kind = match s.mode & libc::S_IFMT {
            libc::S_IFLNK => "a symlink",
            libc::S_IFIFO => "a FIFO",
            libc::S_IFDIR => "a directory",
            libc::S_IFREG => "a file",
            libc::S_IFSOCK => "a socket",
            _ => "a device",
        };
        format!("{kind} owned by {}", owner(s.uid))
    }

    /// Replaces `name` with `bytes` so that a crash or power loss leaves the old file or the new
    /// one, never a mix: a new temporary file (mode 0600, unpredictable name), synced, renamed
    /// over `name`.
    pub fn replace(&self, name: &str, bytes: &[u8]) -> Result<(), FilesError> {
        let (tmp, mut file) = self.temporary(name)?;
        let written = file
            .write_all(bytes)
            .and_then(|()| file.sync_all())
            .and_then(|()| sys::rename_at(self.handle.as_fd(), &tmp, name));
        if let Err(e) = written {
            let _ = sys::unlink_at(self.handle.as_fd(), &tmp);
            return Err(self.io(name, e));
        }
        Ok(())
    }

    /// A new file (mode 0600) named `.<name>.<random>`, and its name.
    fn temporary(&self, name: &str) -> Result<(String, File), FilesError> {
        let mut last = None;
        for _ in 0..8 {
            let tmp = format!(".{name}.{:016x}", random());
            match self.create_new(&tmp) {
                Ok(file) => return Ok((tmp, file)),
                Err(e) => last = Some(e),
            }
            if last.as_ref().is_some_and(|e| e.io_kind().is_some()) {
                break;
            }
        }
        Err(last.expect("at least one attempt"))
    }

    /// Removes the name `name` (a file, a symlink: never followed). A missing name is not an
    /// error.
    pub fn remove(&self, name: &str) -> Result<(), FilesError> {
        match sys::unlink_at(self.handle.as_fd(), name) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(self.io(name, e)),
            _ => Ok(()),
        }
    }

    /// The names in this directory (those that are not UTF-8 are left out).
    pub fn names(&self) -> Result<Vec<String>, FilesError> {
        let listing = std::fs::read_dir(self.proc_path()).map_err(|error| FilesError::Io {
            path: self.path.clone(),
            error,
        })?;
        Ok(listing
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .collect())
    }

    /// The type and owner of `name`, not following a symlink; `None` when missing.
    pub fn stat(&self, name: &str) -> Result<Option<sys::Stat>, FilesError> {
        match sys::stat_at(self.handle.as_fd(), name) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io(name, e)),
        }
    }

    /// Binds a Unix socket at `name` (mode 0600) and returns it with its inode. It is bound under
    /// a temporary name, made owner-only, then linked to `name`: it is never reachable with looser
    /// permissions, and the link fails (`AlreadyExists`) if something took the name meanwhile.
    pub fn bind_socket(&self, name: &str) -> Result<(UnixListener, u64), FilesError> {
        let tmp = format!(".{name}.{:016x}", random());
        let at = self.proc_path().join(&tmp);
        let listener = UnixListener::bind(&at).map_err(|e| self.io(name, e))?;
        let placed = std::fs::set_permissions(&at, std::fs::Permissions::from_mode(0o600))
            .and_then(|()| sys::link_at(self.handle.as_fd(), &tmp, name))
            .and_then(|()| std::fs::symlink_metadata(self.proc_path().join(name)));
        let _ = sys::unlink_at(self.handle.as_fd(), &tmp);
        placed
            .map(|m| (listener, m.ino()))
            .map_err(|e| self.io(name, e))
    }

    /// The directory as `/proc/self/fd/N`: a path that leads to this very directory whatever was
    /// done to its own path since it was opened.
    fn proc_path(&self) -> PathBuf {
        use std::os::fd::AsRawFd;
        PathBuf::from(format!("/proc/self/fd/{}", self.handle.as_raw_fd()))
    }

    fn io(&self, name: &str, error: io::Error) -> FilesError {
        FilesError::Io {
            path: self.join(name),
            error,
        }
    }
}

fn refused(path: &Path, problem: String) -> FilesError {
    FilesError::Refused {
        path: path.to_owned(),
        problem,
    }
}

fn trusted_owner(uid: u32) -> bool {
    uid == 0 || uid == sys::effective_uid()
}

/// `uid N (name)`, the name from `/etc/passwd` when it has one.
fn owner(uid: u32) -> String {
    let name = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                (fields.nth(1)?.parse() == Ok(uid)).then(|| name.to_owned())
            })
        });
    match name {
        Some(name) => format!("uid {uid} ({name})"),
        None => format!("uid {uid}"),
    }
}

/// 64 bits no other user can guess: std's per-process random hash keys over the time and a
/// counter.
fn random() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// A directory of its own for a test, removed when the test ends.
#[cfg(test)]
pub(crate) mod scratch {
    use std::path::PathBuf;

    /// The directory, removed on drop.
    pub(crate) struct Scratch(pub(crate) PathBuf);

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A new empty directory under the system's temporary directory, named after `tag`.
    pub(crate) fn scratch(tag: &str) -> Scratch {
        let path = std::env::temp_dir().join(format!("pipit-{tag}-{:x}", super::random()));
        std::fs::create_dir(&path).unwrap();
        Scratch(path)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::scratch::scratch;
    use super::*;

    #[test]
    fn missing_directories_are_made_0700_and_a_symlink_at_the_directory_is_refused() {
        let s = scratch("make");
        let deep = s.0.join("a/b/c");
        let dir = Dir::open(&deep, Sharing::Private).unwrap();
        for p in [s.0.join("a"), s.0.join("a/b"), deep.clone()] {
            assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o700);
        }
        assert!(!dir.is_gone());
        let link = s.0.join("link");
        symlink(&deep, &link).unwrap();
        let e = Dir::open(&link, Sharing::Private).unwrap_err();
        assert!(
            e.to_string().contains("it is a symlink owned by uid"),
            "{e}"
        );
        // A symlink above it, owned by this user (as OpenWrt's /var -> /tmp is root's), is followed.
        assert!(Dir::open(&link.join("d"), Sharing::Private).is_ok());
        assert!(deep.join("d").is_dir());
    }

    #[test]
    fn a_directory_others_can_write_is_refused_unless_sticky_is_allowed() {
        let s = scratch("mode");
        std::fs::set_permissions(&s.0, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let e = Dir::open(&s.0, Sharing::Private).unwrap_err();
        assert!(
            e.to_string().contains("mode 1777 lets others write in it"),
            "{e}"
        );
        assert!(Dir::open(&s.0, Sharing::Sticky).is_ok());
        // As a parent, a sticky directory is fine (as /tmp is).
        assert!(Dir::open(&s.0.join("own"), Sharing::Private).is_ok());
    }

    #[test]
    fn replace_swaps_a_symlink_at_the_name_and_never_writes_through_it() {
        let s = scratch("replace");
        let target = s.0.join("target");
        std::fs::write(&target, "keep").unwrap();
        let dir = Dir::open(&s.0.join("d"), Sharing::Private).unwrap();
        symlink(&target, dir.join("cache.json")).unwrap();
        assert!(dir.open_file("cache.json", false).is_err());
        dir.replace("cache.json", b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        let file = dir.join("cache.json");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "new");
        assert_eq!(std::fs::metadata(&file).unwrap().mode() & 0o777, 0o600);
        assert_eq!(dir.names().unwrap(), vec!["cache.json".to_owned()]);
        let e = dir.create_new("cache.json").unwrap_err();
        assert!(
            e.to_string().contains("something is already at this name"),
            "{e}"
        );
    }

    #[test]
    fn a_directory_swapped_for_a_symlink_after_the_check_is_never_written_through() {
        let s = scratch("swap");
        let path = s.0.join("d");
        let dir = Dir::open(&path, Sharing::Private).unwrap();
        let victim = s.0.join("victim");
        std::fs::create_dir(&victim).unwrap();
        std::fs::rename(&path, s.0.join("moved")).unwrap();
        symlink(&victim, &path).unwrap();
        dir.replace("cache.json", b"x").unwrap();
        dir.create_new("0000000000000001.seg").unwrap();
        assert_eq!(std::fs::read_dir(&victim).unwrap().count(), 0);
        assert_eq!(std::fs::read_dir(s.0.join("moved")).unwrap().count(), 2);
        assert!(dir.is_gone());
    }

    #[test]
    fn a_removed_or_replaced_directory_is_noticed() {
        let s = scratch("gone");
        let path = s.0.join("d");
        let dir = Dir::open(&path, Sharing::Private).unwrap();
        std::fs::remove_dir(&path).unwrap();
        assert!(dir.is_gone());
        std::fs::create_dir(&path).unwrap();
        assert!(dir.is_gone(), "another directory at the same path");
    }
}
