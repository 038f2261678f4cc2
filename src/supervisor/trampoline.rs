//! Starting a check as pipit's own user both cheaply and tied to pipit's life.
//!
//! Asking the kernel to kill a child with pipit needs code in the child before its exec, which
//! makes std fork(2) the whole agent instead of posix_spawn(3): ten times the cost with hundreds
//! of source threads. So such a check is started, with posix_spawn, as pipit's own binary in a
//! hidden mode (argv[0] [`MARKER`]): that tiny process makes the request, checks that pipit is
//! still its parent, and execs the command in place, keeping its pid, process group and pipes.

use std::ffi::{OsStr, OsString};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// argv[0] that makes pipit's binary start a command instead of running as pipit.
const MARKER: &str = "pipit-child";
/// pipit's own binary as the kernel holds it open: still the right one after an upgrade replaced
/// or removed the file.
const OWN_BINARY: &str = "/proc/self/exe";
/// Exit code of a trampoline that could not run its command, as a shell's for "not found".
const CANNOT_RUN: i32 = 127;

/// Set when the running binary is pipit's and has the hidden mode.
static AVAILABLE: AtomicBool = AtomicBool::new(false);

/// Call first in pipit's `main`: when this process was started as a trampoline, starts its
/// command and never returns; otherwise records that this binary can serve as one (when
/// `/proc/self/exe` exists) and returns.
///
/// A program that embeds the supervisor without calling this (a test, a benchmark) starts checks
/// as its own user directly, without the tie to its life.
pub fn serve_if_asked() {
    let mut args = std::env::args_os();
    if args.next().as_deref() != Some(OsStr::new(MARKER)) {
        // Without /proc (a bare chroot) checks still run, started directly.
        AVAILABLE.store(Path::new(OWN_BINARY).exists(), Ordering::Relaxed);
        return;
    }
    std::process::exit(run(args));
}

/// The trampoline: `args` are pipit's pid, the program and its arguments.
fn run(mut args: impl Iterator<Item = OsString>) -> i32 {
    let parent = args
        .next()
        .and_then(|p| p.to_str().and_then(|p| p.parse::<u32>().ok()));
    let (Some(parent), Some(program)) = (parent, args.next()) else {
        eprintln!("pipit: {MARKER} is started by pipit only: {MARKER} PIPIT_PID PROGRAM [ARG]...");
        return 2;
    };
    let program_name = program.to_string_lossy().into_owned();
    if let Err(e) = crate::sys::die_with(parent) {
        eprintln!("cannot run {program_name}: pipit ended before it started ({e})");
        return CANNOT_RUN;
    }
    let e = std::process::Command::new(&program).args(args).exec();
    eprintln!("cannot run {program_name}: {e}");
    CANNOT_RUN
}

/// A command that starts `program` with `args` through the trampoline, killed when the calling
/// thread ends (call it from the supervisor thread only); `None` when this binary has no
/// trampoline mode.
pub fn wrap(program: &str, args: &[String]) -> Option<std::process::Command> {
    if !AVAILABLE.load(Ordering::Relaxed) {
        return None;
    }
    let mut cmd = std::process::Command::new(OWN_BINARY);
    cmd.arg0(MARKER)
        .arg(std::process::id().to_string())
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
        assert_eq!(run(["x".into(), "/bin/true".into()].into_iter()), 2);
    }
}
