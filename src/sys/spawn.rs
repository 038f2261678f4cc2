//! Starting a child without copying pipit: clone(2) with the child sharing pipit's memory until
//! its exec, as vfork(2) does, on a stack kept for the purpose.
//!
//! What the child does before its exec (its own process group, its standard descriptors, its
//! directory, its user and groups, death with pipit) is done here by the child itself, with plain
//! system calls: no allocation, no lock, nothing written to memory pipit uses but the one place
//! that says which step failed. posix_spawn(3) cannot switch the user or ask for the death signal,
//! and fork(2) copies the page tables of a process with hundreds of threads (BENCHMARKS.md,
//! "Supervisor").

use std::borrow::Cow;
use std::cell::RefCell;
use std::ffi::{CString, c_void};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::ptr;
use std::sync::atomic::{AtomicI32, AtomicU8, Ordering};

use super::credentials::{self, Credentials, SwitchStep};

/// The size of the stack a child runs on until its exec: what it does there needs a few KiB.
const STACK_BYTES: usize = 64 * 1024;

/// Everything a child needs, prepared by the parent: the child allocates nothing.
#[derive(Debug)]
pub struct Plan<'a> {
    /// The paths to try in turn, as execvp(3) does: the program itself when it names a path,
    /// else the program in each directory of `PATH`. The first that can be executed runs.
    pub programs: Vec<CString>,
    /// Its arguments, the program's name first.
    pub argv: Vec<CString>,
    /// Its whole environment, `NAME=value` each (borrowed where it is pipit's own, made once).
    pub env: Cow<'a, [CString]>,
    /// Its standard input, output and error: descriptors of the parent's, above 2.
    pub stdio: [RawFd; 3],
    /// The directory it starts in; the parent's when `None`.
    pub cwd: Option<CString>,
    /// Who it runs as.
    pub credentials: Credentials,
}

/// The step before the exec that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartStep {
    /// clone(2) itself: no child was made.
    Clone,
    /// Its own process group.
    ProcessGroup,
    /// Its standard descriptors.
    Descriptors,
    /// Its working directory.
    Directory,
    /// A step of the switch of user and groups.
    Switch(SwitchStep),
    /// The death signal, or pipit had already ended.
    Parent,
    /// The exec: no such program, or not executable (by that user).
    Exec,
}

impl StartStep {
    const ALL: [StartStep; 9] = [
        StartStep::Clone,
        StartStep::ProcessGroup,
        StartStep::Descriptors,
        StartStep::Directory,
        StartStep::Switch(SwitchStep::Groups),
        StartStep::Switch(SwitchStep::Group),
        StartStep::Switch(SwitchStep::User),
        StartStep::Parent,
        StartStep::Exec,
    ];

    fn code(self) -> u8 {
        StartStep::ALL.iter().position(|s| *s == self).unwrap_or(0) as u8 + 1
    }

    fn from_code(code: u8) -> Option<StartStep> {
        StartStep::ALL
            .get(usize::from(code).checked_sub(1)?)
            .copied()
    }
}

/// A child that could not be started: which step failed and the system's error.
#[derive(Debug)]
pub struct StartError {
    /// The step.
    pub step: StartStep,
    /// What the system call said.
    pub error: io::Error,
}

/// A started child.
#[derive(Debug)]
pub struct Started {
    /// Its process id, which is also its process group's.
    pub pid: u32,
    /// A descriptor that becomes readable when it ends (Linux 5.2 and later).
    pub exit_notifier: Option<OwnedFd>,
}

/// What the child reads and where it says what failed.
struct Job<'a> {
    plan: &'a Plan<'a>,
    programs: &'a [*const libc::c_char],
    argv: &'a [*const libc::c_char],
    env: &'a [*const libc::c_char],
    parent: libc::pid_t,
    failed: AtomicU8,
    errno: AtomicI32,
}

thread_local! {
    /// The lists of pointers a child's exec takes, kept from one start to the next.
    static POINTERS: RefCell<Vec<*const libc::c_char>> = const { RefCell::new(Vec::new()) };
    /// The stack children of this thread run on until their exec: the parent waits meanwhile, so
    /// one is enough. u128 for the alignment the ABI asks of a stack.
    static STACK: RefCell<Vec<u128>> = const { RefCell::new(Vec::new()) };
}

/// Starts `plan` as a new child of the calling thread, leading a process group of its own, with
/// no signal handler or blocked signal of pipit's, and `SIGKILL` asked for when the calling thread
/// ends (call it only from a thread that lives as long as pipit: the supervisor's). Returns when
/// the child has exec'd its program or failed to; a child that failed has been reaped.
pub fn start(plan: &Plan<'_>) -> Result<Started, StartError> {
    if plan.programs.is_empty() || plan.argv.is_empty() || plan.stdio.iter().any(|fd| *fd <= 2) {
        return Err(StartError {
            step: StartStep::Clone,
            error: io::Error::from(io::ErrorKind::InvalidInput),
        });
    }
    POINTERS.with(|pointers| {
        let mut pointers = pointers.borrow_mut();
        pointers.clear();
        for list in [&plan.programs[..], &plan.argv, &plan.env] {
            pointers.extend(list.iter().map(|s| s.as_ptr()));
            pointers.push(ptr::null());
        }
        let (programs, rest) = pointers.split_at(plan.programs.len() + 1);
        let (argv, env) = rest.split_at(plan.argv.len() + 1);
        start_with(plan, programs, argv, env)
    })
}

/// [`start`] with the null-terminated lists of pointers to the plan's strings.
fn start_with(
    plan: &Plan<'_>,
    programs: &[*const libc::c_char],
    argv: &[*const libc::c_char],
    env: &[*const libc::c_char],
) -> Result<Started, StartError> {
    let job = Job {
        plan,
        programs,
        argv,
        env,
        parent: own_pid(),
        failed: AtomicU8::new(0),
        errno: AtomicI32::new(0),
    };
    let mut pidfd: libc::c_int = -1;
    let pid = STACK.with(|stack| {
        let mut stack = stack.borrow_mut();
        if stack.is_empty() {
            stack.resize(STACK_BYTES / size_of::<u128>(), 0);
        }
        // The stack grows down on every architecture pipit is built for: the child starts at its
        // end.
        let top = stack.as_mut_ptr_range().end.cast::<c_void>();
        // SAFETY: sigset_t is plain old data; sigfillset and pthread_sigmask write only the sets
        // given. Every signal is blocked in this thread while the child shares its memory, so
        // that no handler of pipit's runs in the child before it resets them; the old mask is
        // restored below.
        let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
        let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
        unsafe {
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        }
        // SAFETY: `child` runs on `top`, the end of a live, writable stack of STACK_BYTES that
        // nothing else uses while the child runs (CLONE_VFORK: this thread waits until the
        // child's exec or exit, and the stack is this thread's). The child reads `job` and
        // writes only its two atomics; `job` and what it points to outlive the call. The kernel
        // writes the pidfd into `pidfd`.
        let pid = unsafe {
            libc::clone(
                child,
                top,
                libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD | libc::SIGCHLD,
                (&raw const job).cast_mut().cast::<c_void>(),
                &raw mut pidfd,
            )
        };
        let clone_errno = super::errno();
        // SAFETY: as above; restores the mask saved there.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, ptr::null_mut()) };
        if pid < 0 { Err(clone_errno) } else { Ok(pid) }
    });
    let pid = pid.map_err(|errno| StartError {
        step: StartStep::Clone,
        error: io::Error::from_raw_os_error(errno),
    })?;
    // SAFETY: a pidfd the kernel made for this child, close-on-exec, owned by nothing else. Before
    // Linux 5.2 the flag is ignored and `pidfd` stays -1.
    let exit_notifier = (pidfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(pidfd) });
    let pid = pid as u32;
    if let Some(step) = StartStep::from_code(job.failed.load(Ordering::Acquire)) {
        // It has exited (127) before its exec: reap it, so that nothing is left of it.
        let _ = super::wait_for(pid);
        return Err(StartError {
            step,
            error: io::Error::from_raw_os_error(job.errno.load(Ordering::Acquire)),
        });
    }
    let exit_notifier = exit_notifier.or_else(|| super::exit_notifier(pid));
    Ok(Started { pid, exit_notifier })
}

/// This process's id, asked once: pipit never forks.
fn own_pid() -> libc::pid_t {
    static PID: std::sync::OnceLock<libc::pid_t> = std::sync::OnceLock::new();
    // SAFETY: getpid(2) takes nothing and cannot fail.
    *PID.get_or_init(|| unsafe { libc::getpid() })
}

/// The child, between clone and exec. Only plain system calls; never returns.
extern "C" fn child(job: *mut c_void) -> libc::c_int {
    // SAFETY: `start` passed a pointer to its `Job`, alive until this child execs or exits.
    let job = unsafe { &*job.cast_const().cast::<Job<'_>>() };
    let fail = |step: StartStep, errno: i32| -> ! {
        job.errno.store(errno, Ordering::Release);
        job.failed.store(step.code(), Ordering::Release);
        // SAFETY: _exit(2) ends this child at once, without running anything of pipit's.
        unsafe { libc::_exit(127) }
    };
    // SAFETY: each call below is a system call through its plain C wrapper, taking integers or
    // pointers into `job` (alive, see above) or into this stack frame; none allocates or locks.
    unsafe {
        // pipit's handlers are not the child's: back to the default, and SIGPIPE (which pipit
        // ignores) too; other ignored signals stay ignored, as across any exec.
        for signal in 1..libc::SIGRTMAX() + 1 {
            let mut action: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(signal, ptr::null(), &mut action) != 0 {
                continue;
            }
            let handled =
                action.sa_sigaction != libc::SIG_DFL && action.sa_sigaction != libc::SIG_IGN;
            if handled || (signal == libc::SIGPIPE && action.sa_sigaction == libc::SIG_IGN) {
                let mut default: libc::sigaction = std::mem::zeroed();
                default.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(signal, &default, ptr::null_mut());
            }
        }
        if libc::setpgid(0, 0) != 0 {
            fail(StartStep::ProcessGroup, super::errno());
        }
        for (target, fd) in job.plan.stdio.iter().enumerate() {
            if libc::dup2(*fd, target as libc::c_int) < 0 {
                fail(StartStep::Descriptors, super::errno());
            }
        }
        if let Some(dir) = &job.plan.cwd
            && libc::chdir(dir.as_ptr()) != 0
        {
            fail(StartStep::Directory, super::errno());
        }
        if let Err((step, errno)) = credentials::switch(&job.plan.credentials) {
            fail(StartStep::Switch(step), errno);
        }
        // After the switch, which would clear it.
        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ) != 0
        {
            fail(StartStep::Parent, super::errno());
        }
        // Had pipit ended before the request, the signal would never come.
        if libc::getppid() != job.parent {
            fail(StartStep::Parent, libc::ESRCH);
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, ptr::null_mut());
        // As execvp(3): a program found but not executable is the error, unless a later
        // directory has one that is.
        let mut errno = libc::ENOENT;
        for program in job.programs.iter().take_while(|p| !p.is_null()) {
            libc::execve(*program, job.argv.as_ptr(), job.env.as_ptr());
            match super::errno() {
                libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ELOOP | libc::ENAMETOOLONG => {}
                libc::EACCES => errno = libc::EACCES,
                other => fail(StartStep::Exec, other),
            }
        }
        fail(StartStep::Exec, errno)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    fn c(s: &str) -> CString {
        CString::new(s).unwrap()
    }

    /// A plan for `argv` with pipes for stdout and stderr; the read ends and the write ends
    /// (dropped once the child is started).
    fn planned(programs: &[&str], argv: &[&str]) -> (Plan<'static>, [OwnedFd; 2], Vec<OwnedFd>) {
        let null = super::super::above_stdio(std::fs::File::open("/dev/null").unwrap().into());
        let null = null.unwrap();
        let (out, out_w) = super::super::pipe().unwrap();
        let (err, err_w) = super::super::pipe().unwrap();
        let plan = Plan {
            programs: programs.iter().map(|p| c(p)).collect(),
            argv: argv.iter().map(|a| c(a)).collect(),
            env: vec![c("GREETING=hi"), c("PATH=/bin:/usr/bin")].into(),
            stdio: [null.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()],
            cwd: None,
            credentials: Credentials::Same,
        };
        (plan, [out, err], vec![null, out_w, err_w])
    }

    fn read_all(fd: OwnedFd) -> String {
        let mut text = String::new();
        std::fs::File::from(fd).read_to_string(&mut text).unwrap();
        text
    }

    fn mask() -> libc::sigset_t {
        // SAFETY: as in `start`; a null new set only reads the mask.
        unsafe {
            let mut now: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_SETMASK, ptr::null(), &mut now);
            now
        }
    }

    #[test]
    fn a_child_gets_its_arguments_environment_directory_pipes_and_a_process_group_of_its_own() {
        let (mut plan, [out, err], ends) = planned(
            &["/bin/sh"],
            &[
                "sh",
                "-c",
                "echo \"$GREETING $(pwd) $1\"; cut -d' ' -f5 /proc/$$/stat >&2",
                "sh",
                "one",
            ],
        );
        plan.cwd = Some(c("/tmp"));
        let before = mask();
        let started = start(&plan).unwrap();
        drop(ends);
        assert!(
            started.exit_notifier.is_some(),
            "a pidfd on Linux 5.2 and later"
        );
        assert_eq!(read_all(out), "hi /tmp one\n");
        assert_eq!(
            read_all(err).trim(),
            started.pid.to_string(),
            "its own group"
        );
        let status = super::super::wait_for(started.pid).unwrap();
        assert_eq!(status.code(), Some(0));
        let after = mask();
        // SAFETY: sigset_t is plain data; compared byte for byte.
        let same = unsafe {
            libc::memcmp(
                (&raw const before).cast(),
                (&raw const after).cast(),
                size_of::<libc::sigset_t>(),
            )
        };
        assert_eq!(same, 0, "the caller's signal mask is restored");
    }

    #[test]
    fn a_child_blocks_no_signal_and_takes_sigpipe_by_default() {
        // The test harness, as pipit, ignores SIGPIPE; the child must not inherit that. grep
        // reads its own status: the process started, its program exec'd in place (a shell
        // would read its own while it forks, when it blocks signals itself).
        let (plan, [out, _err], ends) = planned(
            &["/bin/grep", "/usr/bin/grep"],
            &["grep", "-E", "^(SigBlk|SigIgn)", "/proc/self/status"],
        );
        let started = start(&plan).unwrap();
        drop(ends);
        let text = read_all(out);
        super::super::wait_for(started.pid).unwrap();
        let field = |name: &str| {
            let line = text.lines().find(|l| l.starts_with(name)).unwrap();
            u64::from_str_radix(line.rsplit(['\t', ' ']).next().unwrap(), 16).unwrap()
        };
        assert_eq!(field("SigBlk:"), 0, "{text}");
        assert_eq!(field("SigIgn:") & (1 << (libc::SIGPIPE - 1)), 0, "{text}");
    }

    #[test]
    fn the_first_executable_candidate_runs_and_a_missing_or_refused_one_says_so() {
        let dir = std::env::temp_dir().join(format!("pipit-spawn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let plain = dir.join("true");
        std::fs::write(&plain, "not a program").unwrap();
        let plain = plain.to_str().unwrap();
        // Not executable, then missing, then the real one: it runs.
        let (plan, _, ends) = planned(&[plain, "/nonexistent/true", "/bin/true"], &["true"]);
        let started = start(&plan).unwrap();
        drop(ends);
        let status = super::super::wait_for(started.pid).unwrap();
        assert_eq!(status.code(), Some(0));
        // Missing only, and not executable only: which step failed, and why.
        let (plan, _, _ends) = planned(&["/nonexistent/true"], &["true"]);
        let e = start(&plan).unwrap_err();
        assert_eq!(
            (e.step, e.error.kind()),
            (StartStep::Exec, io::ErrorKind::NotFound)
        );
        let (plan, _, _ends) = planned(&["/nonexistent/true", plain], &["true"]);
        let e = start(&plan).unwrap_err();
        if super::super::is_root() {
            // Root may read it, but it has no execute bit.
            assert_eq!(e.step, StartStep::Exec);
        }
        assert_eq!(e.error.kind(), io::ErrorKind::PermissionDenied);
        // A directory that does not exist.
        let (mut plan, _, _ends) = planned(&["/bin/true"], &["true"]);
        plan.cwd = Some(c("/nonexistent"));
        let e = start(&plan).unwrap_err();
        assert_eq!(
            (e.step, e.error.kind()),
            (StartStep::Directory, io::ErrorKind::NotFound)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn as_root_a_child_runs_as_the_user_and_group_asked_for_without_supplementary_groups() {
        if !super::super::is_root() {
            return;
        }
        let (mut plan, [out, _err], ends) =
            planned(&["/bin/sh"], &["sh", "-c", "id -u; id -g; id -G"]);
        plan.credentials = Credentials::User {
            uid: 65534,
            gid: 65534,
            groups: Vec::new(),
        };
        let started = start(&plan).unwrap();
        drop(ends);
        assert_eq!(read_all(out), "65534\n65534\n65534\n");
        let status = super::super::wait_for(started.pid).unwrap();
        assert_eq!((status.code(), status.signal()), (Some(0), None));
        // The parent's own credentials did not move.
        assert!(super::super::is_root());
    }
}
