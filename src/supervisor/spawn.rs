//! Starting a child: argv without a shell, its own process group, no stdin, piped output, and the
//! user and group it runs as.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};

use super::Command;
use super::account::Account;
use super::trampoline::{self, RunAs};

/// A started child with the read ends of its stdout and stderr.
#[derive(Debug)]
pub struct Spawned {
    /// The child; its pid is also its process group id.
    pub child: Child,
    /// The read end of its stdout.
    pub stdout: Option<File>,
    /// The read end of its stderr.
    pub stderr: Option<File>,
    /// True when it was started through the [`trampoline`], whose failures before the exec
    /// [`not_started`] reads from its stderr.
    pub through_trampoline: bool,
}

/// Starts `command` with a copy of `null` (`/dev/null`, held open by the supervisor: a copy costs
/// less than a path lookup) as its stdin; `default_user` applies when pipit is root and the
/// command names no user.
///
/// The child leads a new process group (so the whole group can be signalled), reads an empty
/// stdin, and inherits no descriptor but its three standard ones (std opens all of pipit's
/// close-on-exec, and the supervisor marks the ones pipit inherited at start).
///
/// Every child is killed when the calling thread ends, so a SIGKILLed pipit leaves no daemon behind
/// to be started twice and no check running on: call it only from the supervisor thread. A check
/// goes through the [`trampoline`], which also switches its user and groups, so that std can
/// posix_spawn(3) it: a tenth of the cost of a fork(2) of a process with hundreds of threads
/// (BENCHMARKS.md). A daemon (started seldom), and a check where the trampoline is not available
/// (a program embedding the supervisor, no `/proc`), asks for both in the child, which makes std
/// fork(2); such a check as pipit's own user is started directly and is not tied to pipit's life.
pub fn spawn(
    command: &Command,
    null: &File,
    default_user: Option<&Account>,
    root: bool,
) -> io::Result<Spawned> {
    let Some((program, args)) = command.argv.split_first() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty command"));
    };
    let user = user(command, default_user, root);
    let run_as = run_as(command, user, root).map_err(|e| explain(e, command, user, root))?;
    let through_trampoline = if command.timeout.is_some() {
        trampoline::wrap(program, args, &run_as)
    } else {
        None
    };
    let trampoline = through_trampoline.is_some();
    let mut cmd = match through_trampoline {
        // Its exec's failures (no such program, not executable, not by this user) come back
        // from the trampoline: see `not_started`.
        Some(cmd) => cmd,
        None => {
            let mut cmd = std::process::Command::new(program);
            cmd.args(args);
            if command.timeout.is_none() || run_as != RunAs::Same {
                crate::sys::die_with_parent(&mut cmd);
            }
            match &run_as {
                RunAs::Same => {}
                RunAs::Group(gid) => {
                    cmd.gid(*gid);
                }
                // std sets the group first and drops supplementary groups when pipit is root.
                RunAs::User { uid, gid, .. } => {
                    cmd.gid(*gid).uid(*uid);
                }
            }
            cmd
        }
    };
    cmd.envs(&command.env)
        .stdin(Stdio::from(null.try_clone()?))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(dir) = &command.cwd {
        cmd.current_dir(dir);
    }
    let mut child = cmd.spawn().map_err(|e| explain(e, command, user, root))?;
    let stdout = child.stdout.take().map(|p| File::from(OwnedFd::from(p)));
    let stderr = child.stderr.take().map(|p| File::from(OwnedFd::from(p)));
    Ok(Spawned {
        child,
        stdout,
        stderr,
        through_trampoline: trampoline,
    })
}

/// The user `command` runs as, when one is to be switched to: its own `user`, else (when pipit is
/// root) the supervisor's default.
fn user<'a>(
    command: &'a Command,
    default_user: Option<&'a Account>,
    root: bool,
) -> Option<&'a Account> {
    command
        .user
        .as_ref()
        .or(if root { default_user } else { None })
}

/// Who `command` runs as. As root: the user (with its primary group unless `group` says
/// otherwise, and no supplementary group), or only the group. Not as root: pipit's own user, or
/// another group of its own; another user is refused here (`PermissionDenied`), before anything
/// is started.
fn run_as(command: &Command, user: Option<&Account>, root: bool) -> io::Result<RunAs> {
    let gid = command.group.or(user.map(|a| a.gid));
    if root {
        return Ok(match (user, gid) {
            (Some(account), Some(gid)) => RunAs::User {
                uid: account.uid,
                gid,
                groups: Vec::new(),
            },
            (None, Some(gid)) => RunAs::Group(gid),
            _ => RunAs::Same,
        });
    }
    if user.is_some_and(|a| a.uid != crate::sys::effective_uid()) {
        return Err(io::Error::from(io::ErrorKind::PermissionDenied));
    }
    Ok(match gid {
        Some(gid) if gid != crate::sys::effective_gid() => RunAs::Group(gid),
        _ => RunAs::Same,
    })
}

/// Why a check started through the trampoline did not run, when it exited [`trampoline::CANNOT_RUN`] saying
/// so on its `stderr`: the user could not be switched to, its program could not be executed, or
/// pipit was gone. `None` when the command itself ran.
pub fn not_started(
    stderr: &[u8],
    command: &Command,
    default_user: Option<&Account>,
    root: bool,
) -> Option<String> {
    let failure = trampoline::failure(stderr)?;
    let user = user(command, default_user, root);
    let program = command.argv.first().map_or("", String::as_str);
    let error = failure.error;
    Some(match failure.step.as_str() {
        "exec" => explain(error, command, user, root).to_string(),
        "parent" => format!("cannot run {program}: pipit ended before it started ({error})"),
        step => {
            let who = match (user, command.group) {
                (Some(a), Some(gid)) => format!("user {} (group id {gid})", a.name),
                (Some(a), None) => format!("user {}", a.name),
                (None, Some(gid)) => format!("group id {gid}"),
                (None, None) => "its user".to_owned(),
            };
            format!("cannot run {program}: cannot switch to {who}: {step} failed: {error}")
        }
    })
}

fn explain(e: io::Error, command: &Command, user: Option<&Account>, root: bool) -> io::Error {
    let program = command.argv.first().map_or("", String::as_str);
    let why = match (e.kind(), user) {
        (io::ErrorKind::NotFound, _) if command.cwd.as_ref().is_some_and(|d| !d.is_dir()) => {
            let dir = command
                .cwd
                .as_ref()
                .map(|d| d.display().to_string())
                .unwrap_or_default();
            format!("the working directory {dir} does not exist")
        }
        (io::ErrorKind::PermissionDenied, Some(a)) if !root => {
            format!("running as user {} needs pipit to run as root", a.name)
        }
        (io::ErrorKind::PermissionDenied, Some(a)) => {
            format!("permission denied (as user {})", a.name)
        }
        (io::ErrorKind::NotFound, _) => "no such file or directory".to_owned(),
        (io::ErrorKind::PermissionDenied, None) => "permission denied".to_owned(),
        _ => e.to_string(),
    };
    io::Error::new(e.kind(), format!("cannot run {program}: {why}"))
}
