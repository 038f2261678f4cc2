//! Starting a child: argv without a shell, its own process group, no stdin, piped output, and the
//! user and group it runs as.

use std::borrow::Cow;
use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::sync::OnceLock;

use super::Command;
use super::account::Account;
use crate::sys::{self, Credentials, Plan, StartStep};

/// Where a program without a `/` is looked for when the environment has no `PATH`, as execvp(3).
const DEFAULT_PATH: &str = "/bin:/usr/bin";

/// A started child with the read ends of its stdout and stderr.
#[derive(Debug)]
pub struct Spawned {
    /// Its process id, which is also its process group id.
    pub pid: u32,
    /// A descriptor that becomes readable when it ends, where the kernel offers one.
    pub exit_notifier: Option<OwnedFd>,
    /// The read end of its stdout.
    pub stdout: File,
    /// The read end of its stderr.
    pub stderr: File,
}

/// Starts `command` with `null` (`/dev/null`, held open by the supervisor above the standard
/// descriptors: [`sys::above_stdio`]) as its stdin;
/// `default_user` applies when pipit is root and the command names no user.
///
/// The child leads a new process group (so the whole group can be signalled), reads an empty
/// stdin, and inherits no descriptor but its three standard ones (pipit opens all of its own
/// close-on-exec, and the supervisor marks the ones pipit inherited at start). It is started
/// without a copy of pipit ([`sys::start`]), switches its user and groups itself before its exec,
/// and is killed when the calling thread ends, so a SIGKILLed pipit leaves no daemon behind to be
/// started twice and no check running on: call it only from the supervisor thread.
pub fn spawn(
    command: &Command,
    null: &File,
    default_user: Option<&Account>,
    root: bool,
) -> io::Result<Spawned> {
    let user = user(command, default_user, root);
    let credentials = run_as(command, user, root).map_err(|e| explain(e, command, user, root))?;
    let Some((program, _)) = command.argv.split_first() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty command"));
    };
    let (stdout, stdout_w) = sys::pipe()?;
    let (stderr, stderr_w) = sys::pipe()?;
    let plan = Plan {
        programs: programs(program, command)?,
        argv: command
            .argv
            .iter()
            .map(|a| c_string(a.as_bytes()))
            .collect::<io::Result<_>>()?,
        env: environment(command)?,
        stdio: [null.as_raw_fd(), stdout_w.as_raw_fd(), stderr_w.as_raw_fd()],
        cwd: match &command.cwd {
            Some(dir) => Some(c_string(dir.as_os_str().as_bytes())?),
            None => None,
        },
        credentials,
    };
    let started = sys::start(&plan).map_err(|e| failed(e, command, user, root))?;
    Ok(Spawned {
        pid: started.pid,
        exit_notifier: started.exit_notifier,
        stdout: File::from(stdout),
        stderr: File::from(stderr),
    })
}

/// The paths to try for `program`: itself when it names a path, else the program in each
/// directory of the command's `PATH` (pipit's own unless the command sets it), in order.
fn programs(program: &str, command: &Command) -> io::Result<Vec<CString>> {
    if program.contains('/') {
        return Ok(vec![c_string(program.as_bytes())?]);
    }
    let path = match command.env.get("PATH") {
        Some(path) => OsString::from(path),
        None => std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into()),
    };
    std::env::split_paths(&path)
        .map(|dir| {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir.as_path()
            };
            c_string(dir.join(program).as_os_str().as_bytes())
        })
        .collect()
}

/// pipit's environment with the command's variables added or replaced: pipit's own, made once
/// (pipit never changes its environment), when the command adds none.
fn environment(command: &Command) -> io::Result<Cow<'static, [CString]>> {
    static OWN: OnceLock<Vec<CString>> = OnceLock::new();
    let entry = |name: OsString, value: &OsStr| {
        let name = name.into_vec();
        let mut entry = Vec::with_capacity(name.len() + value.len() + 2);
        entry.extend_from_slice(&name);
        entry.push(b'=');
        entry.extend_from_slice(value.as_bytes());
        c_string(&entry)
    };
    if command.env.is_empty() {
        if let Some(own) = OWN.get() {
            return Ok(Cow::Borrowed(own));
        }
        let own = std::env::vars_os()
            .map(|(name, value)| entry(name, &value))
            .collect::<io::Result<Vec<_>>>()?;
        return Ok(Cow::Borrowed(OWN.get_or_init(|| own)));
    }
    let inherited = std::env::vars_os().filter(|(name, _)| {
        name.to_str()
            .is_none_or(|name| !command.env.contains_key(name))
    });
    let own = command
        .env
        .iter()
        .map(|(name, value)| (OsString::from(name), OsString::from(value)));
    inherited
        .chain(own)
        .map(|(name, value)| entry(name, &value))
        .collect::<io::Result<Vec<_>>>()
        .map(Cow::Owned)
}

/// `bytes` as a C string, made in one allocation (room for the NUL at its end).
fn c_string(bytes: &[u8]) -> io::Result<CString> {
    let mut owned = Vec::with_capacity(bytes.len() + 1);
    owned.extend_from_slice(bytes);
    CString::new(owned).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "an argument, variable or directory holds a NUL byte",
        )
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
fn run_as(command: &Command, user: Option<&Account>, root: bool) -> io::Result<Credentials> {
    let gid = command.group.or(user.map(|a| a.gid));
    if root {
        return Ok(match (user, gid) {
            (Some(account), Some(gid)) => Credentials::User {
                uid: account.uid,
                gid,
                groups: Vec::new(),
            },
            (None, Some(gid)) => Credentials::Group(gid),
            _ => Credentials::Same,
        });
    }
    if user.is_some_and(|a| a.uid != crate::sys::effective_uid()) {
        return Err(io::Error::from(io::ErrorKind::PermissionDenied));
    }
    Ok(match gid {
        Some(gid) if gid != crate::sys::effective_gid() => Credentials::Group(gid),
        _ => Credentials::Same,
    })
}

/// The message for a child that could not be started, saying which step failed.
fn failed(e: sys::StartError, command: &Command, user: Option<&Account>, root: bool) -> io::Error {
    let program = command.argv.first().map_or("", String::as_str);
    let error = e.error;
    let why = match e.step {
        StartStep::Exec | StartStep::Directory => return explain(error, command, user, root),
        StartStep::Parent => format!("pipit ended before it started ({error})"),
        StartStep::Switch(step) => {
            let who = match (user, command.group) {
                (Some(a), Some(gid)) => format!("user {} (group id {gid})", a.name),
                (Some(a), None) => format!("user {}", a.name),
                (None, Some(gid)) => format!("group id {gid}"),
                (None, None) => "its user".to_owned(),
            };
            format!("cannot switch to {who}: {} failed: {error}", step.name())
        }
        StartStep::Clone => format!("no process could be made: {error}"),
        StartStep::ProcessGroup => format!("no process group of its own: {error}"),
        StartStep::Descriptors => format!("its standard descriptors: {error}"),
    };
    io::Error::new(error.kind(), format!("cannot run {program}: {why}"))
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
