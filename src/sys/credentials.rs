//! Switching the calling process to another user and group: what a check's starter does as root,
//! just before it execs the check.

use std::io;

/// The step of a switch that failed, for the message that says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwitchStep {
    /// Replacing the supplementary groups.
    Groups,
    /// Changing the group id.
    Group,
    /// Changing the user id.
    User,
}

impl SwitchStep {
    /// The system call's name.
    pub fn name(self) -> &'static str {
        match self {
            SwitchStep::Groups => "setgroups",
            SwitchStep::Group => "setgid",
            SwitchStep::User => "setuid",
        }
    }
}

/// Makes the calling process run as `uid`, with `gid` as its group and `groups` (possibly none)
/// as its supplementary groups, in the only safe order: the groups first, then the group, then
/// the user (once the user is no longer root, the groups could not be changed any more). Every
/// step is checked; the first that fails stops the switch and is returned with its error.
///
/// Call it only in a process with a single thread (glibc and musl then make each change directly;
/// in a threaded process they would have to signal every thread).
pub fn switch_user(uid: u32, gid: u32, groups: &[u32]) -> Result<(), (SwitchStep, io::Error)> {
    let list: Vec<libc::gid_t> = groups.iter().map(|&g| g as libc::gid_t).collect();
    // SAFETY: the pointer and length describe `list`, which lives until the call returns;
    // setgroups(2) only reads that many ids from it (and reads nothing for an empty list).
    let r = unsafe { libc::setgroups(list.len() as _, list.as_ptr()) };
    check(r).map_err(|e| (SwitchStep::Groups, e))?;
    switch_group(gid).map_err(|e| (SwitchStep::Group, e))?;
    // SAFETY: setuid(2) takes a plain integer and changes only this process's credentials.
    let r = unsafe { libc::setuid(uid as libc::uid_t) };
    check(r).map_err(|e| (SwitchStep::User, e))
}

/// Makes `gid` the calling process's group (real, effective and saved), leaving its user and
/// supplementary groups as they are. Single-threaded processes only, as [`switch_user`].
pub fn switch_group(gid: u32) -> io::Result<()> {
    // SAFETY: setgid(2) takes a plain integer and changes only this process's credentials.
    check(unsafe { libc::setgid(gid as libc::gid_t) })
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
