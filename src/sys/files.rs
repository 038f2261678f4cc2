//! The system calls behind `crate::files`: opening, making, renaming, linking and removing names
//! relative to an open directory, so that a path is resolved once and a name never passes through
//! a symlink an attacker planted.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// How [`open_at`] opens a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// An existing directory.
    Directory,
    /// An existing directory, following the name if it is a symlink.
    DirectoryFollowing,
    /// An existing file, to read.
    Read,
    /// An existing file, to read and write.
    ReadWrite,
    /// A new file (never an existing one), to read and write, with mode 0600.
    CreateNew,
}

fn name(name: &str) -> io::Result<CString> {
    CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a name with a NUL byte"))
}

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Opens `path` (absolute, symlinks followed) as a directory.
pub fn open_dir_path(path: &std::path::Path) -> io::Result<OwnedFd> {
    use std::os::unix::ffi::OsStrExt;
    let path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))?;
    // SAFETY: `path` is a NUL-terminated string that lives until the call returns; open(2) only
    // reads it.
    let fd = check(unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: the kernel just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens the single name `file` in the directory `dir`. Every mode but
/// [`OpenMode::DirectoryFollowing`] refuses a symlink (`ELOOP`); [`OpenMode::CreateNew`] refuses
/// any existing name (`EEXIST`), symlinks included.
pub fn open_at(dir: BorrowedFd<'_>, file: &str, mode: OpenMode) -> io::Result<OwnedFd> {
    let c = name(file)?;
    let base = libc::O_CLOEXEC | libc::O_NOCTTY;
    let flags = match mode {
        OpenMode::Directory => base | libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        OpenMode::DirectoryFollowing => base | libc::O_RDONLY | libc::O_DIRECTORY,
        // O_NONBLOCK: a FIFO planted in place of a file must not block the open.
        OpenMode::Read => base | libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK,
        OpenMode::ReadWrite => base | libc::O_RDWR | libc::O_NOFOLLOW | libc::O_NONBLOCK,
        OpenMode::CreateNew => {
            base | libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW
        }
    };
    // SAFETY: `c` is a NUL-terminated string that lives until the call returns, and the
    // descriptor is borrowed (so open) for the whole call; openat(2) only reads them. The mode
    // argument is read only with O_CREAT.
    let fd =
        check(unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags, 0o600 as libc::c_uint) })?;
    // SAFETY: the kernel just returned this descriptor; nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    if matches!(mode, OpenMode::Read | OpenMode::ReadWrite) {
        // Back to blocking reads and writes once the open itself could not block.
        // SAFETY: fcntl(2) with F_GETFL and F_SETFL takes and returns plain integers on a
        // descriptor we own.
        unsafe {
            let fl = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
            if fl >= 0 {
                libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl & !libc::O_NONBLOCK);
            }
        }
    }
    Ok(fd)
}

/// Makes the directory `file` in `dir` with `mode` (the umask still applies).
pub fn mkdir_at(dir: BorrowedFd<'_>, file: &str, mode: u32) -> io::Result<()> {
    let c = name(file)?;
    // SAFETY: `c` is a NUL-terminated string that lives until the call returns; the descriptor
    // is borrowed for the call. mkdirat(2) never follows a symlink at the last component.
    check(unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), mode as libc::mode_t) })?;
    Ok(())
}

/// The owner, mode and type of the name `file` in `dir`, not following a symlink.
pub fn stat_at(dir: BorrowedFd<'_>, file: &str) -> io::Result<Stat> {
    let c = name(file)?;
    let mut out = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `c` is a NUL-terminated string and `out` points to writable memory of the size and
    // alignment of `struct stat`, both live for the call, which writes only into `out`.
    check(unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            c.as_ptr(),
            out.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    // SAFETY: fstatat returned 0, so it filled in the whole struct.
    let s = unsafe { out.assume_init() };
    #[allow(clippy::unnecessary_cast)]
    Ok(Stat {
        uid: s.st_uid as u32,
        mode: s.st_mode as u32,
    })
}

/// What [`stat_at`] tells of a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// The owner's uid.
    pub uid: u32,
    /// Type and permission bits, as `st_mode`.
    pub mode: u32,
}

impl Stat {
    /// True for a Unix socket.
    pub fn is_socket(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFSOCK
    }
}

/// Renames `from` to `to`, both in `dir`, replacing `to` (a symlink at `to` is replaced, never
/// followed).
pub fn rename_at(dir: BorrowedFd<'_>, from: &str, to: &str) -> io::Result<()> {
    let (a, b) = (name(from)?, name(to)?);
    // SAFETY: both names are NUL-terminated strings that live until the call returns; the
    // descriptor is borrowed for the call. renameat(2) only reads them.
    check(unsafe { libc::renameat(dir.as_raw_fd(), a.as_ptr(), dir.as_raw_fd(), b.as_ptr()) })?;
    Ok(())
}

/// Links `from` as `to`, both in `dir`; fails with `EEXIST` if `to` exists.
pub fn link_at(dir: BorrowedFd<'_>, from: &str, to: &str) -> io::Result<()> {
    let (a, b) = (name(from)?, name(to)?);
    // SAFETY: both names are NUL-terminated strings that live until the call returns; the
    // descriptor is borrowed for the call. Without AT_SYMLINK_FOLLOW, linkat(2) links a symlink
    // itself, never its target.
    check(unsafe { libc::linkat(dir.as_raw_fd(), a.as_ptr(), dir.as_raw_fd(), b.as_ptr(), 0) })?;
    Ok(())
}

/// Removes the name `file` (not a directory) from `dir`; a symlink is removed, not followed.
pub fn unlink_at(dir: BorrowedFd<'_>, file: &str) -> io::Result<()> {
    let c = name(file)?;
    // SAFETY: `c` is a NUL-terminated string that lives until the call returns; the descriptor is
    // borrowed for the call.
    check(unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) })?;
    Ok(())
}
