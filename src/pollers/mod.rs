//! Pollers: what notices change. The file watcher (inotify, with a polling fallback), the URL
//! poller and a log follower. Sources in [`crate::sources`] turn what they notice into events.

pub mod file;
pub mod follow;
pub mod inotify;
pub mod snapshot;
#[cfg(feature = "http")]
pub mod url;

/// Stack size of the pollers' own threads (the inotify reader): they keep their buffers on the
/// heap, so a small stack does, and a router's memory is spared the default 2 MiB reservation per
/// thread.
pub const THREAD_STACK: usize = 128 * 1024;
