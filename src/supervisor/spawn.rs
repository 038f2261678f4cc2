//! Starting a child: argv without a shell, its own process group, no stdin, piped output, and the
//! user and group it runs as.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use super::Command;
use super::account::Account;
use super::trampoline;

/// Where execvp(3) looks for a program when `PATH` is not set (musl's default, which covers glibc's).
const DEFAULT_PATH: &str = "/usr/local/bin:/bin:/usr/bin";

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
/// Every child is killed when the calling thread ends, so a SIGKILLed pipit leaves no daemon behind
/// to be started twice and no check running on: call it only from the supervisor thread. A daemon,
/// and a check that switches user or group, asks for that in the child, which makes std fork(2).
/// A check that runs as pipit's own user goes through the [`trampoline`] instead, so std can still
/// posix_spawn(3) it, a tenth of the cost in a process with hundreds of threads (BENCHMARKS.md);
/// where that is not available (a program embedding the supervisor, no `/proc`) such a check is
/// started directly and is not tied to pipit's life.
pub fn spawn(command: &Command, default_user: Option<&Account>, root: bool) -> io::Result<Spawned> {
    let Some((program, args)) = command.argv.split_first() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty command"));
    };
    let user = command
        .user
        .as_ref()
        .or(if root { default_user } else { None });
    let forks_anyway = user.is_some() || command.group.is_some();
    let through_trampoline = if command.timeout.is_some() && !forks_anyway {
        trampoline::wrap(program, args)
    } else {
        None
    };
    let mut cmd = match through_trampoline {
        Some(cmd) => {
            runnable(program, command).map_err(|e| explain(e, command, user, root))?;
            cmd
        }
        None => {
            let mut cmd = std::process::Command::new(program);
            cmd.args(args);
            if command.timeout.is_none() || forks_anyway {
                crate::sys::die_with_parent(&mut cmd);
            }
            cmd
        }
    };
    cmd.envs(&command.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(dir) = &command.cwd {
        cmd.current_dir(dir);
    }
    if let Some(account) = user {
        // std sets the group first and drops supplementary groups when pipit is root.
        cmd.gid(command.group.unwrap_or(account.gid))
            .uid(account.uid);
    } else if let Some(gid) = command.group {
        cmd.gid(gid);
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

/// Fails as the exec of `program` would (not found, not executable), for a start through the
/// trampoline, whose own exec cannot fail that way: the program is looked up as execvp(3) does, in
/// the command's `PATH` (else pipit's), relative to its working directory. A program that goes
/// away in between fails in the trampoline, which says so on stderr and exits 127.
fn runnable(program: &str, command: &Command) -> io::Result<()> {
    let cwd = command.cwd.as_deref().unwrap_or(Path::new(""));
    let candidates: Vec<PathBuf> = if program.contains('/') {
        vec![cwd.join(program)]
    } else {
        let path = command
            .env
            .get("PATH")
            .cloned()
            .or_else(|| std::env::var("PATH").ok())
            .unwrap_or_else(|| DEFAULT_PATH.to_owned());
        path.split(':')
            .map(|dir| {
                cwd.join(if dir.is_empty() { "." } else { dir })
                    .join(program)
            })
            .collect()
    };
    let mut denied = false;
    for candidate in candidates {
        match std::fs::metadata(&candidate) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => return Ok(()),
            Ok(_) => denied = true,
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => denied = true,
            Err(_) => {}
        }
    }
    Err(io::Error::from(if denied {
        io::ErrorKind::PermissionDenied
    } else {
        io::ErrorKind::NotFound
    }))
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
