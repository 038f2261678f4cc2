//! Children that do not outlive pipit: each one started by the supervisor asks the kernel for
//! SIGKILL when the thread that started it ends, which the supervisor thread does only when pipit
//! stops or dies (a SIGKILL of pipit included).

use std::io;
use std::os::unix::process::CommandExt;

/// Has the child `command` starts killed when its starting thread (the caller's) ends.
///
/// The kernel sends the signal when the *thread* that forked the child ends, not the process, so
/// call it only from a thread that lives as long as pipit (the supervisor thread). The setting is
/// made after the switch of user and group (which would clear it) and just before the exec; a
/// child whose parent already ended in between refuses to start.
pub fn die_with_parent(command: &mut std::process::Command) {
    let parent = std::process::id();
    // SAFETY: the closure runs in the child between fork and exec, where only async-signal-safe
    // calls are allowed: `die_with` makes two plain system calls taking integers and builds an
    // io::Error from an errno value, which allocates nothing. It touches no memory shared with
    // the parent and holds no lock.
    unsafe {
        command.pre_exec(move || die_with(parent));
    }
}

/// Asks the kernel for SIGKILL when the thread that started the calling process ends, then checks
/// that the parent is still process `parent`: had it died before the request, the signal would
/// never come (the parent is now whoever adopted the caller), and the error is `ESRCH`.
///
/// The request survives execve(2), except into a set-user-ID or set-group-ID program.
pub fn die_with(parent: u32) -> io::Result<()> {
    // SAFETY: prctl(2) with PR_SET_PDEATHSIG reads only its integer arguments and changes only
    // the calling process's own death signal.
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: getppid(2) takes nothing and cannot fail.
    if u32::try_from(unsafe { libc::getppid() }).ok() != Some(parent) {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    Ok(())
}
