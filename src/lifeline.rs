//! Long-lived threads that do not die silently.
//!
//! A panic is caught where the thread can survive it ([`catch`]: a source's collection, an
//! output's write, the router's batch). A long-lived thread started with [`spawn`] that panics
//! anyway reports its end to whoever [`watch`]es (the run loop of `pipit run`), which logs it,
//! stops the agent and exits non-zero, so that procd or systemd starts pipit again.

use std::any::Any;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::OnceLock;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, never, unbounded};

/// A long-lived thread that ended when it should not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Death {
    /// The thread's name, such as `router` or `out/graphite`.
    pub thread: String,
    /// How it ended, such as `panicked: attempt to add with overflow`.
    pub how: String,
}

impl std::fmt::Display for Death {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the {} thread {}", self.thread, self.how)
    }
}

static WATCHER: OnceLock<Sender<Death>> = OnceLock::new();

/// Runs `f`, catching a panic; `Err` holds the panic's message.
pub fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| message(payload.as_ref()))
}

/// The message of a panic's payload.
pub fn message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// Starts the long-lived thread `name` running `body`. If `body` panics, the death is reported
/// to the watcher (if any) and the panic goes on, so that joining the thread still sees it.
pub fn spawn<T: Send + 'static>(
    name: String,
    body: impl FnOnce() -> T + Send + 'static,
) -> io::Result<JoinHandle<T>> {
    start(std::thread::Builder::new(), name, body)
}

/// [`spawn`], with a stack of `stack_size` bytes.
pub fn spawn_with_stack<T: Send + 'static>(
    name: String,
    stack_size: usize,
    body: impl FnOnce() -> T + Send + 'static,
) -> io::Result<JoinHandle<T>> {
    start(
        std::thread::Builder::new().stack_size(stack_size),
        name,
        body,
    )
}

fn start<T: Send + 'static>(
    builder: std::thread::Builder,
    name: String,
    body: impl FnOnce() -> T + Send + 'static,
) -> io::Result<JoinHandle<T>> {
    builder
        .name(name.clone())
        .spawn(move || match panic::catch_unwind(AssertUnwindSafe(body)) {
            Ok(value) => value,
            Err(payload) => {
                report(Death {
                    thread: name,
                    how: format!("panicked: {}", message(payload.as_ref())),
                });
                panic::resume_unwind(payload)
            }
        })
}

/// Has every panic logged as one line (target `panic`: the thread, the place, the message)
/// rather than printed to stderr in pieces that other threads' log lines can split.
pub fn log_panics() {
    panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        log::error!(
            target: "panic",
            "thread '{}' panicked{place}: {}",
            thread.name().unwrap_or("unnamed"),
            message(info.payload())
        );
    }));
}

/// Reports the death of a long-lived thread to the watcher, if any. [`spawn`] does it for a panic;
/// a thread whose loop ends where it never should calls it itself.
pub fn report(death: Death) {
    if let Some(watcher) = WATCHER.get() {
        let _ = watcher.send(death);
    }
}

/// The deaths of long-lived threads, from now on. The first call in a process gets them; a later
/// call gets a receiver on which none ever arrive.
pub fn watch() -> Receiver<Death> {
    let (tx, rx) = unbounded();
    match WATCHER.set(tx) {
        Ok(()) => rx,
        Err(_) => never(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caught_panic_gives_its_message() {
        assert_eq!(catch(|| 7), Ok(7));
        assert_eq!(
            catch(|| -> u8 { panic!("boom {}", 1) }),
            Err("boom 1".into())
        );
        assert_eq!(catch(|| -> u8 { panic!("static") }), Err("static".into()));
    }

    #[test]
    fn a_spawned_thread_that_panics_is_still_seen_panicking_when_joined() {
        let handle = spawn("t".into(), || -> u8 { panic!("down") }).unwrap();
        let payload = handle.join().unwrap_err();
        assert_eq!(message(payload.as_ref()), "down");
    }
}
