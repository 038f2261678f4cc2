//! A long-running command whose standard output is read line by line on its own thread, such as
//! `logread -f` (OpenWrt's log ring).
//!
//! All child handling of the pollers is here: spawning (in its own process group, so a terminal's
//! Ctrl-C does not reach it), noticing that it exited, and killing and reaping it when the owner
//! is dropped.

use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::follow::split;

/// How long a drop waits for the reading thread after killing the command. The thread ends when
/// the pipe closes, which a grandchild that kept the pipe open can delay; it is then left to end
/// on its own.
const JOIN_WAIT: Duration = Duration::from_secs(2);

/// A running command and the thread reading its output.
#[derive(Debug)]
pub struct LineCommand {
    child: Child,
    reader: Option<JoinHandle<()>>,
    label: String,
}

impl LineCommand {
    /// Starts `argv` with stdin and stderr closed, handing each line of its stdout to `line` on a
    /// thread named `thread_name`.
    pub fn spawn(
        argv: &[String],
        thread_name: &str,
        mut line: impl FnMut(&str) + Send + 'static,
    ) -> io::Result<LineCommand> {
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()?;
        let label = argv.join(" ");
        let Some(mut stdout) = child.stdout.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other("no stdout pipe"));
        };
        let spawned = thread::Builder::new()
            .name(thread_name.to_owned())
            .stack_size(crate::pollers::THREAD_STACK)
            .spawn(move || {
                let mut chunk = [0u8; 4096];
                let (mut partial, mut skipping) = (Vec::new(), false);
                loop {
                    match stdout.read(&mut chunk) {
                        Ok(0) => return,
                        Ok(n) => split(&chunk[..n], &mut partial, &mut skipping, &mut line),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => return,
                    }
                }
            });
        match spawned {
            Ok(reader) => Ok(LineCommand {
                child,
                reader: Some(reader),
                label,
            }),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(e)
            }
        }
    }

    /// The command as one string, for messages.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The exit status once the command has exited (it is then reaped), else `None`.
    pub fn exited(&mut self) -> io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for LineCommand {
    fn drop(&mut self) {
        // The command leads its own process group: kill the whole group, so a pipeline or a
        // background child does not outlive the source.
        let _ = crate::sys::signal_group(self.child.id(), crate::sys::Signal::Kill);
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let deadline = Instant::now() + JOIN_WAIT;
            while !reader.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
            if reader.is_finished() {
                let _ = reader.join();
            }
        }
    }
}
