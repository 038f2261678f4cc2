//! The few system calls std has no safe wrapper for: process groups, reaping and poll(2) for the
//! supervisor, statvfs(3) for the df source, SO_PEERCRED for the control socket, the calls that
//! keep pipit's own resident memory small (`memory`), the `*at` calls that reach names through an
//! open directory (`files`, for `crate::files`), netlink sockets (`netlink`), a child's death with
//! a child's start without a copy of pipit (`spawn`) and its switch to the user and groups it runs
//! as (`credentials`),
//! the TCP options and state std does not reach (`tcp`: user timeout, keepalive, `TCP_INFO`), and
//! ICMP sockets for the ping source (`icmp`). Every `unsafe` block of pipit is in this module,
//! each with the reason it is sound.
//!
//! None of these calls touches memory pipit does not own: they take integers, or pointers to
//! values that live on the caller's stack for the length of the call, or (`memory`) the address
//! range of the program's own code, which they unmap but never change.

mod credentials;
mod files;
pub mod icmp;
mod memory;
pub mod netlink;
mod spawn;
mod tcp;

pub use credentials::{Credentials, SwitchStep};
pub use files::{
    OpenMode, Stat, link_at, mkdir_at, open_at, open_dir_path, rename_at, stat_at, unlink_at,
};
pub use memory::{one_malloc_arena, trim_memory};
pub use spawn::{Plan, StartError, StartStep, Started, start};
#[cfg(test)]
pub use tcp::get_int as tcp_option;
pub use tcp::{TcpProgress, TcpState, progress as tcp_progress, set_keepalive, set_user_timeout};

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

pub use libc::pollfd as PollFd;

/// A signal the supervisor sends to a process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Asks the processes to end.
    Term,
    /// Ends them; cannot be caught or ignored.
    Kill,
}

fn group_id(pgid: u32) -> io::Result<libc::pid_t> {
    // Group 0 would be pipit's own group and group 1 holds init; neither is ever a check's.
    match libc::pid_t::try_from(pgid) {
        Ok(id) if id > 1 => Ok(id),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refusing to signal process group {pgid}"),
        )),
    }
}

/// Sends `signal` to every process of the group `pgid`. A group that no longer exists is not an
/// error.
///
/// The caller must know the group id is still reserved: either its leader is an unreaped child of
/// pipit, or a member is (see [`reap_group`]); otherwise the id might have been reused.
pub fn signal_group(pgid: u32, signal: Signal) -> io::Result<()> {
    let id = group_id(pgid)?;
    let signo = match signal {
        Signal::Term => libc::SIGTERM,
        Signal::Kill => libc::SIGKILL,
    };
    // SAFETY: kill(2) takes plain integers and touches no memory of ours. `id` is above 1, so
    // `-id` names exactly one process group: never pipit's own (0) nor every process (-1).
    let r = unsafe { libc::kill(-id, signo) };
    if r == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ESRCH) {
        Ok(())
    } else {
        Err(e)
    }
}

/// True when the child `pid` has ended, without reaping it: its id (and the id of its process
/// group) stays reserved until it is waited for, so the group can still be signalled safely.
pub fn has_exited(pid: u32) -> io::Result<bool> {
    Ok(peek_ended(libc::P_PID, libc::id_t::from(pid))?.is_some())
}

/// What [`ended_child`] found among pipit's children.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Children {
    /// pipit has no child at all.
    None,
    /// Every child of pipit is still running.
    Running,
    /// This child has ended and is not reaped yet.
    Ended(u32),
}

/// A child of pipit that has ended and is not reaped yet, whichever it is, without reaping it.
pub fn ended_child() -> io::Result<Children> {
    match peek_ended(libc::P_ALL, 0) {
        Err(e) if e.raw_os_error() == Some(libc::ECHILD) => Ok(Children::None),
        Err(e) => Err(e),
        Ok(Some(pid)) => Ok(Children::Ended(pid)),
        Ok(None) => Ok(Children::Running),
    }
}

/// The id of an ended, unreaped child among those `idtype` and `id` select (waitid(2)).
fn peek_ended(idtype: libc::idtype_t, id: libc::id_t) -> io::Result<Option<u32>> {
    // SAFETY: siginfo_t is plain old data, for which all-zero bytes are a valid value.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `info` is a valid, writable siginfo_t that outlives the call; waitid(2) writes
        // only into it. WNOWAIT leaves the child unreaped, so whoever owns it still can.
        let r = unsafe {
            libc::waitid(
                idtype,
                id,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        if r == 0 {
            break;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    // SAFETY: after a successful waitid the kernel has filled in `info`; si_pid reads a field
    // that it sets to the child's id when one changed state and leaves zero otherwise.
    let pid = unsafe { info.si_pid() };
    Ok(u32::try_from(pid).ok().filter(|&p| p != 0))
}

/// Reaps the ended child `pid`, one [`ended_child`] named.
pub fn reap(pid: u32) -> io::Result<()> {
    waitpid(pid, libc::WNOHANG).map(|_| ())
}

/// Waits for the child `pid` to end and reaps it: how it ended.
pub fn wait_for(pid: u32) -> io::Result<std::process::ExitStatus> {
    use std::os::unix::process::ExitStatusExt;
    waitpid(pid, 0).map(std::process::ExitStatus::from_raw)
}

/// waitpid(2) for the one child `pid`, again when a signal interrupts it: its raw status.
fn waitpid(pid: u32, flags: libc::c_int) -> io::Result<libc::c_int> {
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a process id out of range"))?;
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: `status` is a valid, writable c_int that outlives the call; waitpid(2) writes
        // only into it.
        let r = unsafe { libc::waitpid(pid, &mut status, flags) };
        if r >= 0 {
            return Ok(status);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// A pipe, close-on-exec: its read end and its write end, both above the standard descriptors
/// (a child's are made from them with dup2(2), which must not find one already in place).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2(2) writes two descriptors into `fds`, which outlives the call.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just made both descriptors; nothing else owns them.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((above_stdio(read)?, above_stdio(write)?))
}

/// `fd`, or when it is one of the standard descriptors (pipit started with one of them closed) a
/// close-on-exec copy numbered above them, the original closed.
pub fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: fcntl(2) with F_DUPFD_CLOEXEC takes plain integers and returns a new descriptor.
    let copy = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if copy < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just made this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(copy) })
}

/// The calling thread's errno, read without allocating.
fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// What is left of a process group after [`reap_group`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupLeft {
    /// Children of pipit in the group are still running; the group id stays reserved.
    Running,
    /// No child of pipit is left in the group.
    Empty,
}

/// Reaps every child of pipit in the process group `pgid` that has ended.
///
/// Only children in that group are waited for: never `waitpid(-1)`, which would take the exit
/// status of processes other parts of the program started.
pub fn reap_group(pgid: u32) -> io::Result<GroupLeft> {
    let id = group_id(pgid)?;
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: `status` is a valid, writable c_int that outlives the call; waitpid(2) writes
        // only into it. `-id` (id > 1) selects the children in that one group.
        let r = unsafe { libc::waitpid(-id, &mut status, libc::WNOHANG) };
        match r {
            0 => return Ok(GroupLeft::Running),
            r if r > 0 => continue,
            _ => {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::ECHILD) => return Ok(GroupLeft::Empty),
                    Some(libc::EINTR) => continue,
                    _ => return Err(e),
                }
            }
        }
    }
}

/// Makes pipit the reaper of its orphaned descendants: a process that a check forked and left
/// behind becomes pipit's child when the check ends, so [`reap_group`] can collect it instead of
/// leaving a zombie to an init that may not reap.
pub fn become_subreaper() -> io::Result<()> {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER, 1) takes plain integers and touches no memory.
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_CHILD_SUBREAPER,
            1 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Marks every descriptor of pipit above stderr close-on-exec, so that one pipit itself inherited
/// without the flag (from whatever started it) does not reach the commands it runs. Those pipit
/// opens carry the flag already (std sets it on all of them), so once at start is enough.
pub fn no_inherited_descriptors() -> io::Result<()> {
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let Some(fd) = entry?
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<libc::c_int>().ok())
        else {
            continue;
        };
        if fd <= 2 {
            continue;
        }
        // SAFETY: fcntl(2) with F_GETFD and F_SETFD takes and returns plain integers; it changes
        // only the close-on-exec flag. A descriptor closed since the listing (the listing's own)
        // fails harmlessly with EBADF.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
    Ok(())
}

/// A descriptor that becomes readable when the child `pid` ends (pidfd_open(2), Linux 5.3 and
/// later), so poll wakes at once; `None` where the kernel has none.
pub fn exit_notifier(pid: u32) -> Option<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    // SAFETY: pidfd_open(2) takes plain integers. The pid names an unreaped child of pipit, so it
    // cannot have been reused.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = libc::c_int::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: the kernel just returned this descriptor (opened close-on-exec); nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The effective user id of this process.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid(2) has no arguments, always succeeds and touches no memory.
    unsafe { libc::geteuid() }
}

/// The effective group id of this process.
pub fn effective_gid() -> u32 {
    // SAFETY: getegid(2) has no arguments, always succeeds and touches no memory.
    unsafe { libc::getegid() }
}

/// True when pipit runs as root (effective user id 0) and may change a child's user.
pub fn is_root() -> bool {
    effective_uid() == 0
}

/// The uid of the process that connected `stream`, as the kernel recorded it at `connect`.
pub fn peer_uid(stream: &std::os::unix::net::UnixStream) -> io::Result<u32> {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: the descriptor belongs to `stream`, which is borrowed (so open) for the whole call;
    // `cred` is a live, aligned `ucred` and `len` holds its exact size, so the kernel writes at
    // most that many bytes into it and reports in `len` how many it wrote.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast::<libc::c_void>(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if len as usize != std::mem::size_of::<libc::ucred>() {
        return Err(io::Error::other("SO_PEERCRED returned a short answer"));
    }
    Ok(cred.uid)
}

/// Space and inode counts of a file system, from statvfs(3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FsStats {
    /// The unit of the block counts, in bytes.
    pub fragment_size: u64,
    /// Blocks in all.
    pub blocks: u64,
    /// Free blocks, including those reserved for root.
    pub blocks_free: u64,
    /// Free blocks an unprivileged user may take.
    pub blocks_available: u64,
    /// Inodes in all (0 for file systems without a fixed number, such as jffs2).
    pub inodes: u64,
    /// Free inodes.
    pub inodes_free: u64,
}

/// The space and inode counts of the file system holding `path`.
pub fn statvfs(path: &std::path::Path) -> io::Result<FsStats> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))?;
    let mut out = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a NUL-terminated string that lives until the call returns, and `out`
    // points to writable memory of the size and alignment of `struct statvfs`, which is all the
    // call writes to.
    let rc = unsafe { libc::statvfs(path.as_ptr(), out.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled in the whole struct.
    let s = unsafe { out.assume_init() };
    // The field types differ between targets (u32 on 32-bit routers, u64 elsewhere).
    #[allow(clippy::unnecessary_cast)]
    Ok(FsStats {
        fragment_size: s.f_frsize as u64,
        blocks: s.f_blocks as u64,
        blocks_free: s.f_bfree as u64,
        blocks_available: s.f_bavail as u64,
        inodes: s.f_files as u64,
        inodes_free: s.f_ffree as u64,
    })
}

/// True when poll(2) finds an exceptional condition on `fd` now (`POLLPRI` or `POLLERR`), without
/// waiting: how `/proc/self/mounts` says that the mount table changed since the last such poll of
/// that open file.
pub fn exceptional_now(fd: std::os::fd::RawFd) -> io::Result<bool> {
    let mut entry = [PollFd {
        fd,
        events: libc::POLLPRI,
        revents: 0,
    }];
    poll(&mut entry, Duration::ZERO)?;
    Ok(entry[0].revents & (libc::POLLPRI | libc::POLLERR) != 0)
}

/// True when `file` is on a proc file system (fstatfs(2)), false when not or when that cannot be
/// told.
pub fn is_on_procfs(file: &std::fs::File) -> bool {
    use std::os::fd::AsRawFd;
    let mut out = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: the descriptor is open for the borrow of `file`, and `out` points to writable memory
    // of the size and alignment of `struct statfs`, which is all the call writes to.
    let rc = unsafe { libc::fstatfs(file.as_raw_fd(), out.as_mut_ptr()) };
    if rc != 0 {
        return false;
    }
    // SAFETY: fstatfs returned 0, so it filled in the whole struct.
    let s = unsafe { out.assume_init() };
    // The types of f_type and of the constant differ between targets (and with the C library);
    // PROC_SUPER_MAGIC fits in every one of them.
    #[allow(clippy::unnecessary_cast)]
    let (kind, proc) = (s.f_type as i64, libc::PROC_SUPER_MAGIC as i64);
    kind == proc
}

/// A poll entry waiting for `fd` to become readable (or to reach end of file).
pub fn readable(fd: std::os::fd::RawFd) -> PollFd {
    PollFd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

/// True when poll marked the entry readable, closed or failed: a read will not block.
pub fn is_ready(entry: &PollFd) -> bool {
    entry.revents != 0
}

/// Waits until one of `fds` is ready or `timeout` passes. An interrupted wait returns early with
/// nothing marked ready. The timeout is rounded up to whole milliseconds: rounded down, a wait
/// for a timer due in 0.6 ms would return at once, again and again until it is due.
pub fn poll(fds: &mut [PollFd], timeout: Duration) -> io::Result<()> {
    let ms = libc::c_int::try_from(timeout.as_micros().div_ceil(1000)).unwrap_or(libc::c_int::MAX);
    let n = libc::nfds_t::try_from(fds.len()).unwrap_or(libc::nfds_t::MAX);
    for entry in fds.iter_mut() {
        entry.revents = 0;
    }
    // SAFETY: the pointer and length come from one live, exclusively borrowed slice of pollfd, so
    // poll(2) reads and writes only within it. Descriptors that are closed are reported with
    // POLLNVAL, not undefined behaviour.
    let r = unsafe { libc::poll(fds.as_mut_ptr(), n, ms) };
    if r >= 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.kind() == io::ErrorKind::Interrupted {
        Ok(())
    } else {
        Err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_ends_of_a_pair_are_us() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert_eq!(peer_uid(&a).unwrap(), effective_uid());
        assert_eq!(peer_uid(&b).unwrap(), effective_uid());
    }

    #[test]
    fn statvfs_reads_the_root_file_system() {
        let s = statvfs(std::path::Path::new("/")).unwrap();
        assert!(s.fragment_size > 0 && s.blocks > 0);
        assert!(s.blocks_available <= s.blocks_free && s.blocks_free <= s.blocks);
        let missing = statvfs(std::path::Path::new("/nonexistent/pipit")).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn refuses_to_signal_own_group_or_init() {
        assert!(signal_group(0, Signal::Kill).is_err());
        assert!(signal_group(1, Signal::Kill).is_err());
        assert!(reap_group(0).is_err());
    }

    #[test]
    fn a_group_without_children_is_empty() {
        // No child of this process leads a group with pid 2 (kthreadd's id on Linux).
        assert_eq!(reap_group(2).unwrap(), GroupLeft::Empty);
    }

    #[test]
    fn a_wait_shorter_than_a_millisecond_is_not_cut_to_nothing() {
        let start = std::time::Instant::now();
        poll(&mut [], Duration::from_micros(600)).unwrap();
        assert!(start.elapsed() >= Duration::from_micros(600));
    }
}
