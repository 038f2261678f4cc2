//! Starting a check both cheaply and tied to pipit's life, as pipit's own user or as another.
//!
//! Asking the kernel to kill a child with pipit, or switching the child's user, needs code in the
//! child before its exec, which makes std fork(2) the whole agent instead of posix_spawn(3): ten
//! times the cost with hundreds of source threads. So a check is started, with posix_spawn, as
//! pipit's own binary in a hidden mode (argv[0] [`MARKER`]): that tiny, single-threaded process
//! switches to the check's user and groups when asked, makes the request, checks that pipit is
//! still its parent, and execs the command in place, keeping its pid, process group and pipes.
//!
//! Its arguments: `pipit-child PIPIT_PID AS PROGRAM [ARG]...`, where `AS` is `-` (stay as
//! started), a group id (switch the group only), or `UID:GID:GROUPS` (switch the supplementary
//! groups to the comma-separated `GROUPS`, possibly none, then the group, then the user). When a
//! step fails it writes one line `pipit-child: STEP: ERRNO: TEXT` to stderr and exits 127 without
//! running anything; the supervisor reads that line back as the reason the check did not start
//! ([`failure`]).

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// argv[0] that makes pipit's binary start a command instead of running as pipit.
const MARKER: &str = "pipit-child";
/// pipit's own binary as the kernel holds it open: still the right one after an upgrade replaced
/// or removed the file.
const OWN_BINARY: &str = "/proc/self/exe";
/// Exit code of a trampoline that could not run its command, as a shell's for "not found".
pub const CANNOT_RUN: i32 = 127;

/// Set when the running binary is pipit's and has the hidden mode.
static AVAILABLE: AtomicBool = AtomicBool::new(false);
/// Set in pipit's own binary, whatever `/proc` offers.
static PIPIT: AtomicBool = AtomicBool::new(false);

/// Who the command runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunAs {
    /// As the trampoline was started: pipit's own user and groups.
    Same,
    /// pipit's own user, with this group id.
    Group(u32),
    /// This user id and group id, with these supplementary groups (none: all dropped).
    User {
        /// The user id.
        uid: u32,
        /// The group id.
        gid: u32,
        /// The supplementary group ids.
        groups: Vec<u32>,
    },
}

impl RunAs {
    fn to_arg(&self) -> String {
        match self {
            RunAs::Same => "-".to_owned(),
            RunAs::Group(gid) => gid.to_string(),
            RunAs::User { uid, gid, groups } => {
                let groups: Vec<String> = groups.iter().map(u32::to_string).collect();
                format!("{uid}:{gid}:{}", groups.join(","))
            }
        }
    }

    fn from_arg(arg: &str) -> Option<RunAs> {
        if arg == "-" {
            return Some(RunAs::Same);
        }
        let mut parts = arg.split(':');
        let first: u32 = parts.next()?.parse().ok()?;
        let Some(gid) = parts.next() else {
            return Some(RunAs::Group(first));
        };
        let groups = parts.next()?;
        if parts.next().is_some() {
            return None;
        }
        Some(RunAs::User {
            uid: first,
            gid: gid.parse().ok()?,
            groups: if groups.is_empty() {
                Vec::new()
            } else {
                groups
                    .split(',')
                    .map(|g| g.parse().ok())
                    .collect::<Option<_>>()?
            },
        })
    }
}

/// A step of the trampoline that failed before the command ran.
#[derive(Debug)]
pub struct Failure {
    /// `setgroups`, `setgid`, `setuid`, `parent` (pipit had ended) or `exec`.
    pub step: String,
    /// What the system call said.
    pub error: io::Error,
}

/// Call first in pipit's `main`: when this process was started as a trampoline, starts its
/// command and never returns; otherwise records that this binary can serve as one (when
/// `/proc/self/exe` exists) and returns.
///
/// A program that embeds the supervisor without calling this (a test, a benchmark) starts checks
/// directly, forking itself, as it would without `/proc`.
pub fn serve_if_asked() {
    let mut args = std::env::args_os();
    if args.next().as_deref() != Some(OsStr::new(MARKER)) {
        PIPIT.store(true, Ordering::Relaxed);
        // Without /proc (a bare chroot) checks still run, started directly.
        AVAILABLE.store(Path::new(OWN_BINARY).exists(), Ordering::Relaxed);
        return;
    }
    std::process::exit(run(args));
}

/// The trampoline: `args` are pipit's pid, who to run as, the program and its arguments.
fn run(mut args: impl Iterator<Item = OsString>) -> i32 {
    let parent = args
        .next()
        .and_then(|p| p.to_str().and_then(|p| p.parse::<u32>().ok()));
    let run_as = args
        .next()
        .and_then(|a| a.to_str().and_then(RunAs::from_arg));
    let (Some(parent), Some(run_as), Some(program)) = (parent, run_as, args.next()) else {
        eprintln!(
            "pipit: {MARKER} is started by pipit only: {MARKER} PIPIT_PID -|GID|UID:GID:GROUPS PROGRAM [ARG]..."
        );
        return 2;
    };
    let switched = match &run_as {
        RunAs::Same => Ok(()),
        RunAs::Group(gid) => {
            crate::sys::switch_group(*gid).map_err(|e| (crate::sys::SwitchStep::Group, e))
        }
        RunAs::User { uid, gid, groups } => crate::sys::switch_user(*uid, *gid, groups),
    };
    if let Err((step, e)) = switched {
        return fail(step.name(), &e);
    }
    // After the switch: a change of user clears the death signal (prctl(2)).
    if let Err(e) = crate::sys::die_with(parent) {
        return fail("parent", &e);
    }
    let e = std::process::Command::new(&program).args(args).exec();
    fail("exec", &e)
}

/// Says on stderr, in the one line [`failure`] reads, which step failed, and returns the exit
/// code for it.
fn fail(step: &str, e: &io::Error) -> i32 {
    eprintln!(
        "{MARKER}: {step}: {}: {e}",
        e.raw_os_error().unwrap_or_default()
    );
    CANNOT_RUN
}

/// What a trampoline that exited [`CANNOT_RUN`] wrote to `stderr` when one of its steps failed;
/// `None` when the command itself ran (and exited 127 on its own).
pub fn failure(stderr: &[u8]) -> Option<Failure> {
    let text = std::str::from_utf8(stderr).ok()?;
    let line = text.strip_prefix(MARKER)?.strip_prefix(": ")?;
    let line = line.strip_suffix('\n').unwrap_or(line);
    if line.contains('\n') {
        return None;
    }
    let mut parts = line.splitn(3, ": ");
    let step = parts.next()?;
    if !["setgroups", "setgid", "setuid", "parent", "exec"].contains(&step) {
        return None;
    }
    let errno: i32 = parts.next()?.parse().ok()?;
    Some(Failure {
        step: step.to_owned(),
        error: io::Error::from_raw_os_error(errno),
    })
}

/// True in pipit's own binary (which called [`serve_if_asked`]): there the supervisor started every
/// child the process has, so a child it does not know is a descendant of one of them that pipit,
/// their subreaper, adopted. A program embedding the supervisor may start children of its own.
pub fn owns_every_child() -> bool {
    PIPIT.load(Ordering::Relaxed)
}

/// A command that starts `program` with `args` as `run_as` through the trampoline, killed when the
/// calling thread ends (call it from the supervisor thread only); `None` when this binary has no
/// trampoline mode.
pub fn wrap(program: &str, args: &[String], run_as: &RunAs) -> Option<std::process::Command> {
    if !AVAILABLE.load(Ordering::Relaxed) {
        return None;
    }
    static PID: OnceLock<String> = OnceLock::new();
    let mut cmd = std::process::Command::new(OWN_BINARY);
    cmd.arg0(MARKER)
        .arg(PID.get_or_init(|| std::process::id().to_string()))
        .arg(run_as.to_arg())
        .arg(program)
        .args(args);
    Some(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trampoline_without_its_arguments_refuses() {
        assert_eq!(run(std::iter::empty()), 2);
        assert_eq!(
            run(["x".into(), "-".into(), "/bin/true".into()].into_iter()),
            2
        );
        assert_eq!(
            run(["1".into(), "1:2".into(), "/bin/true".into()].into_iter()),
            2
        );
        assert_eq!(run(["1".into(), "-".into()].into_iter()), 2);
    }

    #[test]
    fn who_to_run_as_goes_through_one_argument() {
        for run_as in [
            RunAs::Same,
            RunAs::Group(20),
            RunAs::User {
                uid: 65534,
                gid: 65534,
                groups: Vec::new(),
            },
            RunAs::User {
                uid: 1000,
                gid: 100,
                groups: vec![20, 27],
            },
        ] {
            assert_eq!(RunAs::from_arg(&run_as.to_arg()), Some(run_as));
        }
        for bad in ["", "x", "1:", "1:2", "1:2:3:4", "1:2:x", "1:2:3,", "-1"] {
            assert_eq!(RunAs::from_arg(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_failed_step_is_read_back_and_a_commands_own_output_is_not() {
        let f = failure(b"pipit-child: setgid: 1: Operation not permitted (os error 1)\n").unwrap();
        assert_eq!(f.step, "setgid");
        assert_eq!(f.error.kind(), io::ErrorKind::PermissionDenied);
        let f = failure(b"pipit-child: exec: 13: Permission denied (os error 13)\n").unwrap();
        assert_eq!(f.error.kind(), io::ErrorKind::PermissionDenied);
        assert!(failure(b"sh: 1: nosuch: not found\n").is_none());
        assert!(failure(b"pipit-child: exec: 2: No such file\nmore\n").is_none());
        assert!(failure(b"pipit-child: other: 2: x\n").is_none());
    }
}
