//! Pollers: what notices change. The file watcher (inotify, with a polling fallback), the URL
//! poller, a log follower and a command's output lines. Sources in [`crate::sources`] turn what
//! they notice into events.

pub mod command;
pub mod file;
pub mod follow;
pub mod inotify;
pub mod snapshot;
#[cfg(feature = "http")]
pub mod url;
