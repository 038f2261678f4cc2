//! Switching a child to the user and groups it runs as, between its start and its exec
//! ([`super::spawn`]).

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

/// Who a child runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// As pipit: its user and groups.
    Same,
    /// pipit's own user, with this group id.
    Group(u32),
    /// This user id and group id, with these supplementary group ids (none: all dropped).
    User {
        /// The user id.
        uid: u32,
        /// The group id.
        gid: u32,
        /// The supplementary group ids.
        groups: Vec<u32>,
    },
}

// The calls that take 32-bit ids: on 32-bit ARM and x86 the plain ones take 16-bit ids.
#[cfg(not(any(target_arch = "arm", target_arch = "x86")))]
use libc::{SYS_setgid as SETGID, SYS_setgroups as SETGROUPS, SYS_setuid as SETUID};
#[cfg(any(target_arch = "arm", target_arch = "x86"))]
use libc::{SYS_setgid32 as SETGID, SYS_setgroups32 as SETGROUPS, SYS_setuid32 as SETUID};

/// Switches the calling process to `credentials`, in the only safe order: the supplementary groups
/// first, then the group, then the user (once the user is no longer root, the groups could not be
/// changed any more). Every step is checked; the first that fails stops the switch and is
/// returned with its errno.
///
/// The calls are made directly, not through the C library's wrappers: in a child that still
/// shares pipit's memory (before its exec) those would try to change every thread of pipit too.
/// Nothing here allocates or takes a lock, so it is safe in such a child.
pub fn switch(credentials: &Credentials) -> Result<(), (SwitchStep, i32)> {
    match credentials {
        Credentials::Same => Ok(()),
        Credentials::Group(gid) => call(SETGID, *gid as libc::c_long, 0, SwitchStep::Group),
        Credentials::User { uid, gid, groups } => {
            call(
                SETGROUPS,
                groups.len() as libc::c_long,
                groups.as_ptr() as libc::c_long,
                SwitchStep::Groups,
            )?;
            call(SETGID, *gid as libc::c_long, 0, SwitchStep::Group)?;
            call(SETUID, *uid as libc::c_long, 0, SwitchStep::User)
        }
    }
}

fn call(
    number: libc::c_long,
    first: libc::c_long,
    second: libc::c_long,
    step: SwitchStep,
) -> Result<(), (SwitchStep, i32)> {
    // SAFETY: setgroups(2) reads `first` ids from the address `second` (the caller's `groups`,
    // u32 like gid_t, alive for the call; nothing is read when `first` is 0); setgid(2) and
    // setuid(2) take one integer and ignore the second. Each changes only the calling process.
    let r = unsafe { libc::syscall(number, first, second) };
    if r == 0 {
        Ok(())
    } else {
        Err((step, super::errno()))
    }
}
