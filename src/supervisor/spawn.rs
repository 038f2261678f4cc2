//! Starting a child: argv without a shell, its own process group, no stdin, piped output, and the
//! user and group it runs as.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};

use super::Command;
use super::account::Account;

/// A started child with the read ends of its stdout and stderr.
#[derive(Debug)]
pub struct Spawned {
    /// The child; its pid is also its process group id.
    pub child: Child,
    /// The read end of its stdout.
    pub stdout: Option<File>,
    /// The read end of its stderr.
    pub stderr: Option<File>,
}

/// Starts `command`; `default_user` applies when pipit is root and the command names no user.
///
/// The child leads a new process group (so the whole group can be signalled), reads an empty
/// stdin, and inherits no descriptor but its three standard ones (std opens all of pipit's
/// close-on-exec, and the supervisor marks the ones pipit inherited at start).
///
/// A daemon, and a check that switches user or group, is killed when the calling thread ends, so
/// a SIGKILLed pipit leaves no daemon behind to be started twice: call it only from the supervisor
/// thread. A check that runs as pipit's own user is not: setting that up in the child would make
/// std fork(2) instead of posix_spawn(3), which costs ten times as much in a process with hundreds
/// of threads (RELIABILITY.md); such a check still ends at its own end.
pub fn spawn(command: &Command, default_user: Option<&Account>, root: bool) -> io::Result<Spawned> {
    let Some((program, args)) = command.argv.split_first() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty command"));
    };
    let mut cmd = std::process::Command::new(program);
    cmd.args(args)
        .envs(&command.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(dir) = &command.cwd {
        cmd.current_dir(dir);
    }
    let user = command
        .user
        .as_ref()
        .or(if root { default_user } else { None });
    if let Some(account) = user {
        // std sets the group first and drops supplementary groups when pipit is root.
        cmd.gid(command.group.unwrap_or(account.gid))
            .uid(account.uid);
    } else if let Some(gid) = command.group {
        cmd.gid(gid);
    }
    let forks_anyway = user.is_some() || command.group.is_some();
    if command.timeout.is_none() || forks_anyway {
        crate::sys::die_with_parent(&mut cmd);
    }
    let mut child = cmd.spawn().map_err(|e| explain(e, command, user, root))?;
    let stdout = child.stdout.take().map(|p| File::from(OwnedFd::from(p)));
    let stderr = child.stderr.take().map(|p| File::from(OwnedFd::from(p)));
    Ok(Spawned {
        child,
        stdout,
        stderr,
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
